//! A node: one iroh endpoint with an Atek key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use atek_core::{PublicKey, SecretKey};
use iroh::endpoint::{Connection, PortmapperConfig, presets};
use iroh::{Endpoint, EndpointAddr, RelayConfig, RelayMap, RelayMode, RelayUrl, TransportAddr};

use crate::NetError;

/// The QUIC close code of a connection refused for who the peer is.
pub(crate) const REFUSED: iroh::endpoint::VarInt = iroh::endpoint::VarInt::from_u32(403);

/// How long a dial may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a connection may go without a packet from the peer before it counts as lost,
/// by default: QUIC's usual 30 s. A peer that vanishes without closing (killed, unplugged)
/// is noticed only then; one that closes is noticed at once.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a quiet connection is kept alive at most (iroh's own heartbeat).
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How many streams a peer may have open to this node at once on one connection (QUIC's
/// default is 100): each TCP connection carried by `bind` or the gateway is one. Memory
/// stays bounded by the connection's receive window, whatever the count.
pub const MAX_STREAMS: u32 = 1024;

/// How a node reaches the network.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The relays this node keeps a home on and dials peers through when it knows no
    /// better address for them (each with the port of its QUIC address discovery, by
    /// default 7842). Empty: no relay at all (direct addresses only).
    pub relays: Vec<RelayConfig>,
    /// With no `relays`: use iroh's public relays and address lookup (n0's relays, DNS and
    /// pkarr), so that a peer can be dialed by its key alone on the internet. False: no
    /// relay and no lookup at all. Ignored when `relays` are given (then no public lookup).
    pub public: bool,
    /// Accept any TLS certificate from the relays. Only for a relay started by a test or a
    /// throwaway local setup: it gives up knowing that the relay is the one named.
    pub insecure_relay_tls: bool,
    /// PEM files whose certificates are trusted for the relays' TLS (a self-hosted relay's
    /// self-signed certificate, or a private CA), in addition to the usual public roots.
    /// Without it such a relay can be used neither for relaying nor for QUIC address
    /// discovery, and hole punching silently falls back to relaying. A file that is missing
    /// or does not parse fails [`Node::bind`], naming the file.
    pub relay_ca: Vec<PathBuf>,
    /// The UDP address to bind; `None` binds every interface on a random port.
    pub bind: Option<SocketAddr>,
    /// Ask the home router for a port mapping (UPnP, NAT-PMP, PCP). It talks to the local
    /// gateway, so tests turn it off.
    pub port_mapping: bool,
    /// How long [`Node::connect`] tries before giving up.
    pub connect_timeout: Duration,
    /// How long a connection may go without a packet from the peer before it is taken for
    /// lost (the lower of both sides' settings applies; QUIC waits at least three of its
    /// retransmission timeouts, which matters only on a slow path). Keep-alives go out at a
    /// third of it (at most every 5 s), so a quiet but live peer is never cut off. At
    /// least 1 s.
    pub idle_timeout: Duration,
    /// How peers given by their key alone are found, besides the relays: DNS with pkarr,
    /// the mainline DHT, mDNS on the LAN. Each publishes this node too.
    pub lookup: Lookup,
}

/// How peers are found by their key alone (and how this node is found by others). With
/// none of these, a bare key is dialed through this node's own relays, which finds the peer
/// only when it is homed on one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// Publish this node's relay to a pkarr relay and look peers up with DNS: what iroh's
    /// public lookup does, on servers of your choice.
    pub dns: Option<DnsLookup>,
    /// Publish this node's relay to the BitTorrent mainline DHT and look peers up there.
    pub dht: Option<DhtLookup>,
    /// Announce this node's direct addresses on the local network with mDNS and find peers'
    /// there: no relay and no internet needed on a LAN.
    pub mdns: bool,
}

/// Address lookup through DNS, with records published through a pkarr relay. n0's public
/// service is `https://dns.iroh.link/pkarr` with the origin `dns.iroh.link`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsLookup {
    /// The pkarr relay this node publishes its signed address record to.
    pub pkarr_relay: url::Url,
    /// The DNS zone under which peers' records are looked up (`_iroh.<key in z-base-32>.<origin>`).
    pub origin: String,
    /// The DNS server to ask; `None`: the system's resolvers.
    pub nameserver: Option<SocketAddr>,
}

/// Address lookup on the BitTorrent mainline DHT (records signed by the node's key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhtLookup {
    /// DHT nodes to join through (`host:port`); empty: the DHT's usual public bootstrap
    /// nodes.
    pub bootstrap: Vec<String>,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            relays: Vec::new(),
            public: true,
            insecure_relay_tls: false,
            relay_ca: Vec::new(),
            bind: None,
            port_mapping: true,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            lookup: Lookup::default(),
        }
    }
}

impl NetConfig {
    /// A configuration that stays on loopback: bound to 127.0.0.1, no port mapping, and
    /// `relays` (a relay the caller started) trusted whatever their certificate.
    pub fn loopback(relays: Vec<RelayConfig>) -> Self {
        Self {
            relays,
            public: false,
            insecure_relay_tls: true,
            relay_ca: Vec::new(),
            bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            port_mapping: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            lookup: Lookup::default(),
        }
    }

    /// Parses a relay URL as given on a command line or in a config file (its QUIC
    /// address discovery on the default port).
    pub fn parse_relay(url: &str) -> Result<RelayConfig, NetError> {
        let parsed = url.parse::<RelayUrl>().map_err(|e| NetError::RelayUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(parsed.into())
    }
}

/// Where a peer can be reached: its key, and any relay or direct addresses known for it.
/// A bare key is dialed through this node's own relays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    /// The peer's key: its identity, checked by the connection's handshake.
    pub key: PublicKey,
    /// Relays the peer is known to be homed on.
    pub relays: Vec<RelayUrl>,
    /// UDP addresses the peer is known to listen on.
    pub direct: Vec<SocketAddr>,
}

impl From<PublicKey> for PeerAddr {
    fn from(key: PublicKey) -> Self {
        Self {
            key,
            relays: Vec::new(),
            direct: Vec::new(),
        }
    }
}

/// A p2p node: an iroh endpoint whose identity is an Atek key.
///
/// It takes connections for the ALPNs it was bound with ([`Node::accept`]) and dials
/// peers by key ([`Node::connect`]). Every connection is end-to-end encrypted and
/// authenticated by both keys (QUIC with TLS 1.3 raw public keys): a relay sees only
/// ciphertext.
#[derive(Debug, Clone)]
pub struct Node {
    endpoint: Endpoint,
    key: PublicKey,
    relays: Vec<RelayUrl>,
    /// Whether it has any relay (its own or the public ones) to be online with.
    has_relays: bool,
    connect_timeout: Duration,
}

impl Node {
    /// Starts an endpoint for `key` that accepts connections for `alpns`.
    pub async fn bind(
        key: &SecretKey,
        alpns: &[&[u8]],
        config: &NetConfig,
    ) -> Result<Self, NetError> {
        let seed = key.to_seed();
        let public = config.public && config.relays.is_empty();
        let mut builder = if public {
            Endpoint::builder(presets::N0)
        } else {
            Endpoint::builder(presets::Minimal)
        }
        .secret_key(iroh::SecretKey::from_bytes(&seed))
        .alpns(alpns.iter().map(|a| a.to_vec()).collect());
        builder = if public {
            builder
        } else if config.relays.is_empty() {
            builder.relay_mode(RelayMode::Disabled)
        } else {
            builder.relay_mode(RelayMode::Custom(RelayMap::from_iter(
                config.relays.iter().cloned(),
            )))
        };
        if !config.relay_ca.is_empty() {
            builder = builder.ca_tls_config(crate::relay::ca_tls_config(&config.relay_ca)?);
        }
        if config.insecure_relay_tls {
            builder = insecure_relay_tls(builder)?;
        }
        if !config.port_mapping {
            builder = builder.portmapper_config(PortmapperConfig::Disabled);
        }
        builder = config.lookup.apply(builder);
        // A peer that vanishes without a word is noticed after the idle timeout; keep-alives
        // well within it keep a quiet connection to a live peer open.
        let idle = config.idle_timeout.max(Duration::from_secs(1));
        let idle_timeout =
            iroh::endpoint::IdleTimeout::try_from(idle).map_err(|e| NetError::Bind {
                reason: format!("idle timeout {idle:?}: {e}"),
            })?;
        // Many TCP connections of `bind` share one QUIC connection, a stream each: QUIC's
        // default of 100 concurrent streams would make the 101st wait.
        builder = builder.transport_config(
            iroh::endpoint::QuicTransportConfig::builder()
                .max_concurrent_bidi_streams(MAX_STREAMS.into())
                .max_idle_timeout(Some(idle_timeout))
                .keep_alive_interval((idle / 3).min(KEEP_ALIVE))
                .build(),
        );
        // iroh's QUIC flow-control windows are kept on purpose: larger stream windows made
        // copies on loopback slower and, from 8 MiB, got connections aborted by the
        // receiver ("too many gaps in stream buffer"); bench/README.md has the numbers.
        if let Some(addr) = config.bind {
            builder = builder.bind_addr(addr).map_err(|e| NetError::Bind {
                reason: e.to_string(),
            })?;
        }
        let endpoint = builder.bind().await.map_err(|e| NetError::Bind {
            reason: e.to_string(),
        })?;
        Ok(Self {
            endpoint,
            key: key.public(),
            relays: config.relays.iter().map(|r| r.url.clone()).collect(),
            has_relays: public || !config.relays.is_empty(),
            connect_timeout: config.connect_timeout,
        })
    }

    /// How long [`Node::connect`] tries before giving up.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// This node's key.
    pub fn key(&self) -> PublicKey {
        self.key
    }

    /// Where this node can be reached now: its relay (once it has one) and its direct
    /// addresses.
    pub fn addr(&self) -> PeerAddr {
        let addr = self.endpoint.addr();
        PeerAddr {
            key: self.key(),
            relays: addr.relay_urls().cloned().collect(),
            direct: addr.ip_addrs().copied().collect(),
        }
    }

    /// Waits until the node has a home relay, for at most the connect timeout (at once
    /// when it has no relays). False when it is still not online then: it can still be
    /// reached directly, and the relay may come later.
    pub async fn online(&self) -> bool {
        if !self.has_relays {
            return true;
        }
        tokio::time::timeout(self.connect_timeout, self.endpoint.online())
            .await
            .is_ok()
    }

    /// Dials `peer` for `alpn`, within the configured timeout. A peer given by its key
    /// alone is looked for on this node's relays.
    pub async fn connect(
        &self,
        peer: impl Into<PeerAddr>,
        alpn: &[u8],
    ) -> Result<Connection, NetError> {
        let peer = peer.into();
        let key = peer.key;
        let id = to_iroh(key)?;
        let mut addrs: Vec<TransportAddr> =
            peer.direct.iter().map(|a| TransportAddr::Ip(*a)).collect();
        let relays = if peer.relays.is_empty() {
            &self.relays
        } else {
            &peer.relays
        };
        addrs.extend(relays.iter().cloned().map(TransportAddr::Relay));
        let addr = EndpointAddr::from_parts(id, addrs);
        match tokio::time::timeout(self.connect_timeout, self.endpoint.connect(addr, alpn)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(NetError::Connect {
                peer: key,
                reason: e.to_string(),
            }),
            Err(_) => Err(NetError::Unreachable {
                peer: key,
                timeout: self.connect_timeout,
            }),
        }
    }

    /// The next connection a peer made to this node, once its handshake is done, with the
    /// peer's key. Connections that fail their handshake are skipped (and logged).
    /// [`NetError::Closed`] once the node is closed.
    pub async fn accept(&self) -> Result<(PublicKey, Connection), NetError> {
        loop {
            let incoming = self.endpoint.accept().await.ok_or(NetError::Closed)?;
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(error = %e, "an incoming connection failed its handshake");
                    continue;
                }
            };
            match PublicKey::from_bytes(conn.remote_id().as_bytes()) {
                Ok(peer) => return Ok((peer, conn)),
                Err(e) => {
                    // A small-order point: iroh takes it, Atek never does.
                    tracing::debug!(error = %e, "refused a peer whose key Atek does not accept");
                    conn.close(REFUSED, b"key not accepted");
                }
            }
        }
    }

    /// Closes every connection and the endpoint.
    pub async fn close(&self) {
        self.endpoint.close().await;
    }
}

impl Lookup {
    /// Adds these lookups to an endpoint being built.
    fn apply(&self, mut builder: iroh::endpoint::Builder) -> iroh::endpoint::Builder {
        use iroh::address_lookup::{DnsAddressLookup, PkarrPublisher};
        if let Some(dns) = &self.dns {
            builder = builder
                .address_lookup(PkarrPublisher::builder(dns.pkarr_relay.clone()))
                .address_lookup(DnsAddressLookup::builder(dns.origin.clone()));
            if let Some(nameserver) = dns.nameserver {
                builder = builder.dns_resolver(iroh::dns::DnsResolver::with_nameserver(nameserver));
            }
        }
        if let Some(dht) = &self.dht {
            let mut dht_builder = n0_mainline::DhtBuilder::default();
            if !dht.bootstrap.is_empty() {
                dht_builder.bootstrap(&dht.bootstrap);
            }
            builder = builder.address_lookup(
                iroh_mainline_address_lookup::DhtAddressLookup::builder().dht_builder(dht_builder),
            );
        }
        if self.mdns {
            builder =
                builder.address_lookup(iroh_mdns_address_lookup::MdnsAddressLookup::builder());
        }
        builder
    }
}

fn to_iroh(key: PublicKey) -> Result<iroh::EndpointId, NetError> {
    iroh::EndpointId::from_bytes(key.as_bytes()).map_err(|e| NetError::Connect {
        peer: key,
        reason: format!("the key is not an Ed25519 point iroh accepts: {e}"),
    })
}

/// Trusts any relay certificate: only in builds for tests (feature `insecure-relay-tls`,
/// which iroh keeps behind its test utilities).
#[cfg(feature = "insecure-relay-tls")]
fn insecure_relay_tls(
    builder: iroh::endpoint::Builder,
) -> Result<iroh::endpoint::Builder, NetError> {
    Ok(builder.ca_tls_config(iroh::tls::CaTlsConfig::insecure_skip_verify()))
}

#[cfg(not(feature = "insecure-relay-tls"))]
fn insecure_relay_tls(_: iroh::endpoint::Builder) -> Result<iroh::endpoint::Builder, NetError> {
    Err(NetError::Bind {
        reason: "this build cannot skip the relays' certificate checks (it is for tests); \
                 trust a relay's own certificate with --relay-ca FILE instead"
            .to_owned(),
    })
}
