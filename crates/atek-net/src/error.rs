//! What can go wrong on the network, in words a person can act on.

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
}
