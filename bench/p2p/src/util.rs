//! What the rows share: the relay on loopback, the routes, the data each copy moves, the
//! clocks (wall and CPU) and the JSON line.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use atek_net::iroh::RelayUrl;
use atek_net::{NetConfig, Node, PeerAddr};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes in a MiB.
pub(crate) const MIB: u64 = 1 << 20;

/// How long a node waits for its peer or its relay before the row fails.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the two ends of a row reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Route {
    /// No relay at all: the dialer is given the other node's direct (UDP) addresses.
    Direct,
    /// Both nodes are homed on a relay the row starts on loopback, and the dialer is given
    /// only the relay's URL: the connection starts through the relay, and iroh moves it to a
    /// direct path if it finds one (on one machine it does). The row says how many bytes
    /// the relay carried.
    Relay,
    /// Through the relay only: endpoints without any IP transport (iroh's
    /// `clear_ip_transports()`), so nothing can go direct. atek-net has no such setting, so
    /// only the bare iroh row can take this route.
    RelayOnly,
}

impl Route {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Relay => "relay",
            Route::RelayOnly => "relay-only",
        }
    }
}

/// A relay server on 127.0.0.1 (iroh's test relay, self-signed TLS, QUIC address discovery
/// on a random port). It stops when dropped.
pub(crate) struct Relay {
    pub(crate) url: RelayUrl,
    pub(crate) map: iroh::RelayMap,
    /// Bytes of datagrams the relay has taken from its clients so far. It owns the server.
    /// None for a relay in another process, whose count is not known here.
    received: Option<Box<dyn Fn() -> u64 + Send + Sync>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("url", &self.url).finish()
    }
}

impl Relay {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let (map, url, server) = iroh::test_utils::run_relay_server()
            .await
            .context("starting the relay on 127.0.0.1")?;
        Ok(Self {
            url,
            map,
            received: Some(Box::new(move || server.metrics().server.bytes_recv.get())),
        })
    }

    /// A relay another process serves (`atek relay`), at `url`.
    pub(crate) fn external(url: RelayUrl) -> Self {
        Self {
            map: iroh::RelayMap::from_iter([url.clone()]),
            url,
            received: None,
        }
    }

    /// The UDP port of the relay's QUIC address discovery (iroh's test relay picks one; a
    /// client that probes another waits for its probe to time out before it is online).
    pub(crate) fn quic_port(&self) -> Option<u16> {
        self.map
            .relays::<Vec<_>>()
            .iter()
            .find_map(|r| r.quic.as_ref().map(|q| q.port))
    }

    /// Bytes of datagrams the relay has taken from its clients so far (0 when not known).
    pub(crate) fn received(&self) -> u64 {
        self.received.as_ref().map_or(0, |received| received())
    }

    /// The loopback configuration of a node homed on this relay.
    pub(crate) fn config(&self) -> NetConfig {
        let relays = self
            .map
            .relays::<Vec<_>>()
            .iter()
            .map(|r| (**r).clone())
            .collect();
        let mut config = NetConfig::loopback(relays);
        config.connect_timeout = CONNECT_TIMEOUT;
        config
    }
}

/// The nodes' configuration for `route`, and the relay it needs (started here).
pub(crate) async fn setup(route: Route) -> anyhow::Result<(NetConfig, Option<Relay>)> {
    match route {
        Route::Direct => {
            let mut config = NetConfig::loopback(Vec::new());
            config.connect_timeout = CONNECT_TIMEOUT;
            Ok((config, None))
        }
        Route::Relay => {
            let relay = Relay::start().await?;
            Ok((relay.config(), Some(relay)))
        }
        Route::RelayOnly => {
            bail!("atek-net has no relay-only setting: only the iroh row can go relay-only")
        }
    }
}

/// Binds a node and, when it has a relay, waits until it is homed there.
pub(crate) async fn node(
    key: &atek_core::SecretKey,
    alpns: &[&[u8]],
    config: &NetConfig,
) -> anyhow::Result<Node> {
    let node = Node::bind(key, alpns, config).await?;
    if !config.relays.is_empty() && !node.online().await {
        bail!("the node did not reach the relay within {CONNECT_TIMEOUT:?}");
    }
    Ok(node)
}

/// How the dialer is told where `target` is: its direct addresses (direct), or its key and
/// the relay's URL only (relay). Waits (a few seconds at most) for the node to know its
/// direct addresses.
pub(crate) async fn peer_addr(target: &Node, relay: Option<&Relay>) -> anyhow::Result<PeerAddr> {
    match relay {
        None => {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let addr = target.addr();
                if !addr.direct.is_empty() {
                    return Ok(PeerAddr {
                        key: addr.key,
                        relays: Vec::new(),
                        direct: addr.direct,
                    });
                }
                if Instant::now() > deadline {
                    bail!("the node has no direct address to give the dialer");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Some(relay) => Ok(PeerAddr {
            key: target.key(),
            relays: vec![relay.url.clone()],
            direct: Vec::new(),
        }),
    }
}

/// The data every copy sends: 1 MiB of bytes that do not repeat in any short period
/// (xorshift), sent over and over. Nothing on the way compresses, but nothing should be able
/// to.
pub(crate) fn block() -> bytes::Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(MIB as usize);
    while out.len() < MIB as usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.into()
}

/// An input of `len` bytes made of [`block`]s, as a file or stdin would be read.
#[derive(Debug)]
pub(crate) struct Source {
    block: bytes::Bytes,
    left: u64,
    at: usize,
}

impl Source {
    pub(crate) fn new(len: u64) -> Self {
        Self {
            block: block(),
            left: len,
            at: 0,
        }
    }
}

impl AsyncRead for Source {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let n = (this.block.len() - this.at)
            .min(buf.remaining())
            .min(usize::try_from(this.left).unwrap_or(usize::MAX));
        buf.put_slice(&this.block[this.at..this.at + n]);
        this.at = (this.at + n) % this.block.len();
        this.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// An output that counts what it is given and when it was shut down.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counter(Arc<std::sync::Mutex<Counted>>);

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counted {
    pub(crate) bytes: u64,
    pub(crate) first: Option<Instant>,
    pub(crate) shut: Option<Instant>,
}

impl Counter {
    pub(crate) fn get(&self) -> Counted {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Counted)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl AsyncWrite for Counter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.update(|c| {
            c.first.get_or_insert_with(Instant::now);
            c.bytes += buf.len() as u64;
        });
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.update(|c| c.shut = Some(Instant::now()));
        Poll::Ready(Ok(()))
    }
}

/// CPU time (user + system) of this process and of its children that were waited for, in
/// seconds, from /proc/self/stat (clock ticks).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cpu {
    pub(crate) own: f64,
    pub(crate) children: f64,
}

impl Cpu {
    pub(crate) fn now() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
        // The fields after the command name (which may hold spaces), from field 3 on.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("no ')' in /proc/self/stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> anyhow::Result<f64> {
            let text = fields.get(n - 3).context("a short /proc/self/stat")?;
            Ok(text.parse::<u64>().context("a field of /proc/self/stat")? as f64)
        };
        let hz = rustix::param::clock_ticks_per_second() as f64;
        Ok(Self {
            own: (field(14)? + field(15)?) / hz,
            children: (field(16)? + field(17)?) / hz,
        })
    }

    /// The CPU seconds of this process since `earlier`.
    pub(crate) fn own_since(self, earlier: Cpu) -> f64 {
        self.own - earlier.own
    }
}

/// Rounds to `digits` decimals, for the JSON line.
pub(crate) fn round(v: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (v * k).round() / k
}

/// A throughput row: `mib` MiB in `seconds`.
pub(crate) fn rate(row: &str, route: &str, mib: u64, seconds: f64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("row".into(), json!(row));
    m.insert("path".into(), json!(route));
    m.insert("unit".into(), json!("MiB/s"));
    m.insert("value".into(), json!(round(mib as f64 / seconds, 1)));
    m.insert("mib".into(), json!(mib));
    m.insert("seconds".into(), json!(round(seconds, 4)));
    m
}

/// The share of `payload` bytes the relay took from its clients between two readings
/// (QUIC framing and acknowledgements included: a copy wholly through the relay is a
/// little above 1).
pub(crate) fn relayed(relay: Option<&Relay>, before: u64, payload: u64) -> Value {
    match relay {
        None | Some(Relay { received: None, .. }) => Value::Null,
        Some(relay) => json!(round(
            relay.received().saturating_sub(before) as f64 / payload as f64,
            4
        )),
    }
}

/// Prints one row as one JSON line on stdout.
pub(crate) fn emit(row: Map<String, Value>) {
    println!("{}", Value::Object(row));
}

/// Progress on stderr.
pub(crate) fn note(text: &str) {
    eprintln!("atek-p2p-bench: {text}");
}
