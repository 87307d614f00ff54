//! What can go wrong on the network, in words a person can act on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use atek_core::PublicKey;

/// An error of the p2p layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The local endpoint could not start (a UDP port in use, no network at all).
    #[error("cannot start the p2p endpoint: {reason}")]
    Bind {
        /// iroh's reason.
        reason: String,
    },
    /// A relay URL that does not parse.
    #[error("'{url}' is not a relay URL ({reason}); give one like https://relay.example.com")]
    RelayUrl {
        /// The text given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// No connection to the peer in time.
    #[error(
        "could not reach the peer {peer} within {}s: it may be offline, behind a relay this node does not use, or the key may be wrong",
        timeout.as_secs()
    )]
    Unreachable {
        /// Whom we dialed.
        peer: PublicKey,
        /// How long we tried.
        timeout: Duration,
    },
    /// The peer could not be dialed or the connection failed while being set up.
    #[error("connecting to {peer} failed: {reason}")]
    Connect {
        /// Whom we dialed.
        peer: PublicKey,
        /// iroh's reason.
        reason: String,
    },
    /// The peer closed the connection or it broke.
    #[error("the connection to {peer} was lost: {reason}")]
    Lost {
        /// The peer.
        peer: PublicKey,
        /// iroh's reason.
        reason: String,
    },
    /// The peer allows no more streams at once on the connection, and none ended in time.
    #[error(
        "{peer} allows no more than {limit} connections at once and none ended in time; close some and try again"
    )]
    Busy {
        /// The peer.
        peer: PublicKey,
        /// Its limit of concurrent streams.
        limit: u32,
    },
    /// The endpoint was closed.
    #[error("the p2p endpoint is closed")]
    Closed,
    /// A passphrase that is not 32 bytes in base32.
    #[error("'{text}' is not a beam passphrase: {reason}")]
    Passphrase {
        /// The text given (a passphrase is not a secret once it is wrong).
        text: String,
        /// Why not.
        reason: String,
    },
    /// Local I/O of a pipe (stdin, stdout, a socket) failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A relay CA file (`relay_ca`) that cannot be used.
    #[error(
        "cannot use {} as a relay CA: {reason}; give the PEM certificate file of the relay (or of its CA) that its operator handed out",
        path.display()
    )]
    RelayCa {
        /// The file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A relay's own certificate or key file that cannot be used.
    #[error("cannot use {} for the relay's TLS: {reason}", path.display())]
    RelayCert {
        /// The file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A relay that cannot listen where it was asked to.
    #[error("{}", crate::relay::listen_message(*listener, addr, source))]
    RelayListen {
        /// Which of its sockets.
        listener: crate::relay::RelayListener,
        /// The address it was to bind.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Relay options that do not make a relay.
    #[error("cannot start the relay: {reason}")]
    RelayOptions {
        /// Why not.
        reason: String,
    },
    /// A running relay stopped by itself.
    #[error("the relay stopped: {reason}")]
    RelayStopped {
        /// Why.
        reason: String,
    },
}

impl NetError {
    /// The same error once more, for everyone who waited on the one attempt that made it
    /// (the error itself is not `Clone`: it may hold an I/O error).
    pub(crate) fn retell(&self) -> NetError {
        match self {
            NetError::Unreachable { peer, timeout } => NetError::Unreachable {
                peer: *peer,
                timeout: *timeout,
            },
            NetError::Connect { peer, reason } => NetError::Connect {
                peer: *peer,
                reason: reason.clone(),
            },
            NetError::Lost { peer, reason } => NetError::Lost {
                peer: *peer,
                reason: reason.clone(),
            },
            NetError::Closed => NetError::Closed,
            other => NetError::Bind {
                reason: other.to_string(),
            },
        }
    }
}
