//! `beam`: an end-to-end encrypted, bidirectional pipe between two machines that share a
//! passphrase (Spork's and hyperbeam 2's flow, on iroh instead of HyperDHT).
//!
//! A [`Passphrase`] is 32 random bytes, written as 52 lowercase base32 characters. Both
//! sides derive two keys from it with BLAKE3's key derivation under distinct contexts:
//! the **listener's** (whose node announces itself and waits) and the **connector's** (the
//! node that dials). The listener takes a connection only from the connector's key, and the
//! connector checks (through the QUIC handshake) that it reached the listener's key, so a
//! third party that does not know the passphrase can neither join nor impersonate either
//! end. The two ends never share a key, so two endpoints never share one id on a relay.
//!
//! The pipe is one QUIC stream each way. The connector opens it with a short header (a QUIC
//! stream is announced to the peer only once data is written on it). End of input on one
//! side finishes that direction only (half-close): the other direction goes on until its
//! own input ends. [`Beam::pipe`] returns once both directions are done and the peer has
//! read everything sent.

use std::fmt;

use atek_core::{PublicKey, SecretKey};
use iroh::endpoint::{Connection, RecvStream, SendStream, VarInt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::copy::{self, CopyError};
use crate::node::REFUSED;
use crate::{NetError, Node, PeerAddr};

/// The ALPN of beam connections.
pub const ALPN: &[u8] = b"atek/beam/1";
/// What the connector writes first on the stream.
const HEADER: &[u8; 8] = b"ATEKBEAM";
/// The QUIC close code of a pipe that ended normally.
const DONE: VarInt = VarInt::from_u32(0);

/// A beam passphrase: 32 secret bytes. `Debug` does not show them.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<[u8; 32]>);

impl Passphrase {
    /// A new passphrase from the operating system's random source.
    pub fn generate() -> Self {
        // A fresh key's seed is 32 bytes from the OS's random source.
        Self(SecretKey::generate().to_seed())
    }

    /// Parses the 52-character base32 form (any case, surrounding spaces ignored).
    pub fn parse(text: &str) -> Result<Self, NetError> {
        let trimmed = text.trim();
        let bad = |reason: &str| NetError::Passphrase {
            text: trimmed.to_owned(),
            reason: reason.to_owned(),
        };
        if trimmed.len() != 52 {
            return Err(bad(&format!(
                "a passphrase has 52 characters, this one has {}; copy the whole `atek beam …` line the other side printed",
                trimmed.len()
            )));
        }
        let bytes = data_encoding::BASE32_NOPAD
            .decode(trimmed.to_ascii_uppercase().as_bytes())
            .map_err(|_| bad("only the letters a-z and the digits 2-7 occur in a passphrase"))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("it does not decode to 32 bytes"))?;
        Ok(Self(Zeroizing::new(seed)))
    }

    /// The 52-character lowercase base32 form.
    pub fn to_text(&self) -> String {
        data_encoding::BASE32_NOPAD
            .encode(self.0.as_slice())
            .to_ascii_lowercase()
    }

    /// The key of the side that waits for the other.
    pub fn listener_key(&self) -> SecretKey {
        SecretKey::from_seed(blake3::derive_key(
            "atek beam v1 listener key",
            self.0.as_slice(),
        ))
    }

    /// The key of the side that dials.
    pub fn connector_key(&self) -> SecretKey {
        SecretKey::from_seed(blake3::derive_key(
            "atek beam v1 connector key",
            self.0.as_slice(),
        ))
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// An established beam: the connection and its pair of streams.
#[derive(Debug)]
pub struct Beam {
    peer: PublicKey,
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
}

/// What a pipe moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeStats {
    /// Bytes read from the local input and sent.
    pub sent: u64,
    /// Bytes received and written to the local output.
    pub received: u64,
}

/// Waits on `node` (bound with [`Passphrase::listener_key`] and [`ALPN`]) for the
/// connector of `passphrase`. Connections from any other key are refused and the wait goes
/// on; each refusal is logged.
pub async fn accept(node: &Node, passphrase: &Passphrase) -> Result<Beam, NetError> {
    let connector = passphrase.connector_key().public();
    loop {
        let (peer, conn) = node.accept().await?;
        if peer != connector || conn.alpn() != ALPN {
            tracing::warn!(%peer, "refused a beam connection from a key that does not hold the passphrase");
            conn.close(REFUSED, b"not the beam's other end");
            continue;
        }
        let (send, mut recv) = match conn.accept_bi().await {
            Ok(streams) => streams,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "the beam's other end left before opening the pipe");
                continue;
            }
        };
        let mut header = [0u8; HEADER.len()];
        if let Err(e) = recv.read_exact(&mut header).await {
            tracing::warn!(%peer, error = %e, "the beam's other end left before its header");
            continue;
        }
        if &header != HEADER {
            conn.close(REFUSED, b"not a beam header");
            continue;
        }
        return Ok(Beam {
            peer,
            conn,
            send,
            recv,
        });
    }
}

/// Dials the listener of `passphrase` from `node` (bound with
/// [`Passphrase::connector_key`]); `listener` says where it is (its key alone is looked for
/// on the node's relays).
pub async fn connect(
    node: &Node,
    passphrase: &Passphrase,
    listener: Option<PeerAddr>,
) -> Result<Beam, NetError> {
    let key = passphrase.listener_key().public();
    let addr = listener.unwrap_or_else(|| PeerAddr::from(key));
    let conn = node.connect(addr, ALPN).await?;
    let lost = |e: &dyn fmt::Display| NetError::Lost {
        peer: key,
        reason: e.to_string(),
    };
    let (mut send, recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
    send.write_all(HEADER).await.map_err(|e| lost(&e))?;
    Ok(Beam {
        peer: key,
        conn,
        send,
        recv,
    })
}

impl Beam {
    /// The other end's key.
    pub fn peer(&self) -> PublicKey {
        self.peer
    }

    /// The connection, to watch its [`Route`](crate::Route).
    pub fn connection(&self) -> Connection {
        self.conn.clone()
    }

    /// Copies `input` to the peer and the peer's bytes to `output` until both directions
    /// are done: the local input ended (the peer then sees end of input) and the peer's
    /// did (`output` is then shut down). Returns once the peer has read all that was sent;
    /// then closes the connection.
    pub async fn pipe<I, O>(self, mut input: I, mut output: O) -> Result<PipeStats, NetError>
    where
        I: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
    {
        let Beam {
            peer,
            conn,
            mut send,
            mut recv,
        } = self;
        let lost = |e: &dyn fmt::Display| NetError::Lost {
            peer,
            reason: e.to_string(),
        };
        // A copy's failure: the local side's (doing `what`) or the peer's.
        let failed = |e: CopyError, what: &'static str| match e {
            CopyError::Local(source) => NetError::Io { what, source },
            CopyError::Peer(reason) => lost(&reason),
        };
        let up = async {
            let n = copy::send_from(&mut input, &mut send)
                .await
                .map_err(|e| failed(e, "reading the input"))?;
            send.finish().map_err(|e| lost(&e))?;
            // The peer has read everything (or stopped reading).
            let _ = send.stopped().await;
            Ok::<u64, NetError>(n)
        };
        let down = async {
            let n = copy::recv_into(&mut recv, &mut output)
                .await
                .map_err(|e| failed(e, "writing what the peer sent"))?;
            output.flush().await.map_err(|e| NetError::Io {
                what: "writing what the peer sent",
                source: e,
            })?;
            output.shutdown().await.map_err(|e| NetError::Io {
                what: "closing the output",
                source: e,
            })?;
            Ok::<u64, NetError>(n)
        };
        let (sent, received) = tokio::try_join!(up, down)?;
        conn.close(DONE, b"done");
        Ok(PipeStats { sent, received })
    }
}
