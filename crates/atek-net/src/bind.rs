//! `bind`: TCP ports over p2p (Spork's `bind`).
//!
//! - [`expose`] serves a node's inbound p2p streams by connecting each to a local TCP
//!   address (`atek bind -p PORT [--host HOST]`): the port is then reachable by this node's
//!   key.
//! - [`forward`] listens on a local TCP port and carries each accepted connection to a peer
//!   that exposes a port (`atek bind KEY -p PORT`).
//!
//! An exposed port that speaks HTTP/1 gets `Atek-Remote-Public-Key` with the caller's key on
//! every request (see [`crate::caller`]); other protocols pass byte for byte.
//!
//! Many TCP connections share one QUIC connection per peer, a bidirectional stream each,
//! opened with a short header (a QUIC stream reaches the peer only once something is
//! written on it). Half-close carries over: when one side's TCP connection stops sending,
//! the stream finishes in that direction only.

use std::sync::Arc;
use std::time::Instant;

use atek_core::PublicKey;
use iroh::endpoint::{Connection, RecvStream, SendStream, VarInt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

use crate::caller::{self, Kind};
use crate::copy::{self, CopyError};
use crate::node::MAX_STREAMS;
use crate::{NetError, Node, PeerAddr};

/// The ALPN of TCP streams.
pub const ALPN: &[u8] = b"atek/tcp/1";
/// What the opener writes first on each stream.
const HEADER: &[u8; 8] = b"ATEKTCP1";
/// The stream error code when the far side could not reach its TCP target.
const TARGET_UNREACHABLE: VarInt = VarInt::from_u32(502);

/// What happens on an exposed port, for status lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindEvent {
    /// A peer connected (once per QUIC connection, however many TCP connections it
    /// carries).
    Connect(PublicKey),
    /// A peer's connection ended.
    Close(PublicKey),
    /// A stream could not be served (the target refused the TCP connection, ...).
    Failed {
        /// Whose stream.
        peer: PublicKey,
        /// Why, in words.
        reason: String,
    },
}

/// A stream a peer opened to an exposed port, its header read: bytes both ways, as a TCP
/// connection would carry them.
pub type PeerStream = tokio::io::Join<RecvStream, SendStream>;

/// Hands every stream `node` accepts on [`ALPN`] (its header checked) to `serve`, with the
/// key of the peer that opened it, each on a task of its own; for a server that speaks the
/// stream's protocol itself (the host answering HTTP over p2p). Runs until the node closes.
pub async fn serve_streams<F, Fut>(
    node: &Node,
    serve: F,
    events: Option<mpsc::UnboundedSender<BindEvent>>,
) -> Result<(), NetError>
where
    F: Fn(PublicKey, PeerStream) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let (peer, conn) = match node.accept().await {
            Ok(accepted) => accepted,
            Err(NetError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        if conn.alpn() != ALPN {
            continue;
        }
        let (serve, events) = (serve.clone(), events.clone());
        tokio::spawn(async move {
            send_event(&events, BindEvent::Connect(peer));
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let serve = serve.clone();
                let events = events.clone();
                tokio::spawn(async move {
                    let mut header = [0u8; HEADER.len()];
                    match recv.read_exact(&mut header).await {
                        Ok(()) if &header == HEADER => {
                            serve(peer, tokio::io::join(recv, send)).await;
                        }
                        _ => {
                            let _ = send.reset(TARGET_UNREACHABLE);
                            let reason = "a stream without the bind header".to_owned();
                            send_event(&events, BindEvent::Failed { peer, reason });
                        }
                    }
                });
            }
            send_event(&events, BindEvent::Close(peer));
        });
    }
}

/// Serves every p2p stream `node` accepts on [`ALPN`] by opening a TCP connection to
/// `target` (`host:port`) and copying both ways. Runs until the node closes. `events` (if
/// any) hears of peers coming and going.
pub async fn expose(
    node: &Node,
    target: String,
    events: Option<mpsc::UnboundedSender<BindEvent>>,
) -> Result<(), NetError> {
    let target: Arc<str> = target.into();
    let failures = events.clone();
    let serve = move |peer, stream: PeerStream| {
        let (target, failures) = (Arc::clone(&target), failures.clone());
        async move {
            let (mut recv, mut send) = stream.into_inner();
            let result = match TcpStream::connect(&*target).await {
                Ok(tcp) => carry_to(peer, &target, tcp, send, recv).await,
                Err(e) => {
                    let _ = send.reset(TARGET_UNREACHABLE);
                    let _ = recv.stop(TARGET_UNREACHABLE);
                    Err(format!("cannot connect to {target}: {e}"))
                }
            };
            if let Err(reason) = result {
                send_event(&failures, BindEvent::Failed { peer, reason });
            }
        }
    };
    serve_streams(node, serve, events).await
}

/// Carries a peer's stream to its TCP connection on the exposed port: HTTP request by
/// request with the caller named (see [`crate::caller`]), anything else byte for byte.
async fn carry_to(
    peer: PublicKey,
    target: &Arc<str>,
    mut tcp: TcpStream,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<(), String> {
    let (kind, head) = match caller::sniff(&mut recv, &tcp).await {
        Ok(sniffed) => sniffed,
        Err(e) => {
            let _ = send.reset(VarInt::from_u32(1));
            return Err(format!("stream to TCP: {e}"));
        }
    };
    match kind {
        Kind::Http => caller::serve_http(peer, head, recv, send, Arc::clone(target), tcp).await,
        Kind::Raw => {
            if let Err(e) = tcp.write_all(&head).await {
                let _ = send.reset(VarInt::from_u32(1));
                let _ = recv.stop(VarInt::from_u32(1));
                return Err(format!("stream to TCP: {e}"));
            }
            splice(tcp, send, &mut recv).await
        }
    }
}

/// Carries each TCP connection `listener` accepts to `peer`'s exposed port, all over one
/// QUIC connection. It dials the peer first and fails if the peer cannot be reached then;
/// once running, a lost connection is dialed again by the next TCP connection, and each
/// TCP connection that cannot be carried is told to `events` (if any) and closed. Runs
/// until the listener fails.
pub async fn forward(
    node: &Node,
    peer: PeerAddr,
    listener: TcpListener,
    events: Option<mpsc::UnboundedSender<BindEvent>>,
) -> Result<(), NetError> {
    let key = peer.key;
    let link = Arc::new(Link::new(node.clone(), peer));
    link.connection().await?;
    send_event(&events, BindEvent::Connect(key));
    loop {
        let (tcp, from) = listener.accept().await.map_err(|e| NetError::Io {
            what: "accepting a TCP connection",
            source: e,
        })?;
        let (link, events) = (Arc::clone(&link), events.clone());
        tokio::spawn(async move {
            if let Err(e) = link.carry(tcp).await {
                tracing::debug!(%from, error = %e, "a forwarded TCP connection failed");
                let reason = format!("a connection from {from}: {e}");
                send_event(&events, BindEvent::Failed { peer: key, reason });
            }
        });
    }
}

/// The one QUIC connection to a peer's exposed port, made on first use and again when
/// lost; each [`Link::open`] is a new stream on it.
///
/// One dial at a time: TCP connections that arrive while a dial is under way wait for it
/// and share its outcome, a failure included, so a peer that cannot be reached costs one
/// connect timeout for all of them, not one each in turn.
#[derive(Debug)]
pub(crate) struct Link {
    node: Node,
    peer: PeerAddr,
    conn: Mutex<Dialed>,
}

/// What the last dial of a [`Link`] gave.
#[derive(Debug, Default)]
struct Dialed {
    conn: Option<Connection>,
    /// When the last failed dial gave up, and why.
    failed: Option<(Instant, NetError)>,
}

impl Link {
    pub(crate) fn new(node: Node, peer: PeerAddr) -> Self {
        Self {
            node,
            peer,
            conn: Mutex::new(Dialed::default()),
        }
    }

    /// A new stream to the peer's exposed port, its header written. Fails after the
    /// node's connect timeout when the peer allows no more streams at once.
    pub(crate) async fn open(&self) -> Result<(SendStream, RecvStream), NetError> {
        let conn = self.connection().await?;
        let lost = |e: &dyn std::fmt::Display| NetError::Lost {
            peer: self.peer.key,
            reason: e.to_string(),
        };
        let (mut send, recv) = tokio::time::timeout(self.node.connect_timeout(), conn.open_bi())
            .await
            .map_err(|_| NetError::Busy {
                peer: self.peer.key,
                limit: MAX_STREAMS,
            })?
            .map_err(|e| lost(&e))?;
        send.write_all(HEADER).await.map_err(|e| lost(&e))?;
        Ok((send, recv))
    }

    /// The connection to the peer: the live one, or a new dial. Whoever waited for a dial
    /// that failed gets its error instead of dialing again.
    pub(crate) async fn connection(&self) -> Result<Connection, NetError> {
        let asked = Instant::now();
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.conn.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(conn.clone());
        }
        if let Some((at, e)) = &slot.failed
            && *at >= asked
        {
            return Err(e.retell());
        }
        match self.node.connect(self.peer.clone(), ALPN).await {
            Ok(conn) => {
                *slot = Dialed {
                    conn: Some(conn.clone()),
                    failed: None,
                };
                Ok(conn)
            }
            Err(e) => {
                let told = e.retell();
                *slot = Dialed {
                    conn: None,
                    failed: Some((Instant::now(), e)),
                };
                Err(told)
            }
        }
    }

    async fn carry(&self, tcp: TcpStream) -> Result<(), NetError> {
        let (send, mut recv) = self.open().await?;
        splice(tcp, send, &mut recv)
            .await
            .map_err(|reason| NetError::Lost {
                peer: self.peer.key,
                reason,
            })
    }
}

/// Copies a TCP connection and a QUIC stream pair into each other until both directions
/// are done; an end of input in one direction finishes only that one.
async fn splice(tcp: TcpStream, mut send: SendStream, recv: &mut RecvStream) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let (mut tcp_rd, mut tcp_wr) = tcp.into_split();
    let up = async {
        match copy::send_from(&mut tcp_rd, &mut send).await {
            Ok(_) => {
                let _ = send.finish();
                Ok(())
            }
            Err(CopyError::Local(e)) => {
                let _ = send.reset(VarInt::from_u32(1));
                Err(format!("TCP to stream: {e}"))
            }
            Err(CopyError::Peer(e)) => Err(format!("TCP to stream: {e}")),
        }
    };
    let down = async {
        let copied = copy::recv_into(recv, &mut tcp_wr).await;
        if let Err(CopyError::Local(_)) = copied {
            let _ = recv.stop(VarInt::from_u32(1));
        }
        let _ = tcp_wr.shutdown().await;
        match copied {
            Ok(_) => Ok(()),
            Err(CopyError::Local(e)) => Err(format!("stream to TCP: {e}")),
            Err(CopyError::Peer(e)) => Err(format!("stream to TCP: {e}")),
        }
    };
    let (up, down) = tokio::join!(up, down);
    up.and(down)
}

fn send_event(events: &Option<mpsc::UnboundedSender<BindEvent>>, event: BindEvent) {
    if let Some(events) = events {
        let _ = events.send(event);
    }
}
