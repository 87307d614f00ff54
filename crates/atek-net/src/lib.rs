//! Atek's p2p layer on [iroh]: every node is an Ed25519 key, and peers dial each other by
//! that key, hole punching through NATs or going through a relay when they cannot.
//!
//! - [`Node`] is an iroh endpoint with Atek's identity ([`atek_core::SecretKey`]), the
//!   relays chosen in a [`NetConfig`] (never iroh's public ones unless asked for) and no
//!   public address lookup unless asked for: tests and private setups stay off the internet.
//! - [`bind`] carries TCP connections to a peer's exposed port, many over one QUIC
//!   connection; a port that speaks HTTP/1 learns each caller's key from [`caller`]'s
//!   header.
//! - [`gateway`] maps `{key}.{domain}` to that peer over HTTP, WebSockets included.
//! - [`beam`] is the encrypted pipe between two machines that share a passphrase (Spork's
//!   and hyperbeam's `beam`): the passphrase derives the listener's and the connector's keys,
//!   and the listener accepts only the connector.
//! - [`relay`] runs iroh's relay server (`atek relay`), so that a community can host its own
//!   relay; nodes trust its self-signed certificate through [`NetConfig::relay_ca`].
//!
//! This crate knows nothing of logs, tables or the host.
//!
//! [iroh]: https://docs.rs/iroh

pub mod beam;
pub mod bind;
pub mod caller;
mod copy;
mod error;
pub mod gateway;
pub mod keyfile;
mod node;
pub mod relay;
mod route;

pub use error::NetError;
pub use node::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DhtLookup, DnsLookup, Lookup, MAX_STREAMS,
    NetConfig, Node, PeerAddr,
};
pub use route::Route;

/// The iroh types a caller of this crate meets (streams, relay URLs), re-exported so that
/// callers need not depend on iroh's exact version themselves.
pub mod iroh {
    pub use iroh::endpoint::{Connection, RecvStream, SendStream};
    pub use iroh::{RelayConfig, RelayMap, RelayUrl};
    pub use iroh_relay::RelayQuicConfig;
}
