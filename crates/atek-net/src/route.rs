//! Which way a connection's packets go: straight to the peer (after hole punching, or on a
//! LAN) or through a relay. iroh starts through the relay when it has no better address and
//! moves to a direct path once one works.

use std::fmt;
use std::net::SocketAddr;

use futures_util::StreamExt;
use iroh::endpoint::Connection;
use iroh::{RelayUrl, TransportAddr};

/// The path a connection sends on now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Straight to the peer's address.
    Direct(SocketAddr),
    /// Through this relay.
    Relayed(RelayUrl),
    /// No path is selected (yet), or one of a kind this code does not name.
    Unknown,
}

impl Route {
    /// The selected path of `conn` now.
    pub fn of(conn: &Connection) -> Self {
        let paths = conn.paths();
        let selected = paths.iter().find(|p| p.is_selected());
        match selected.map(|p| p.remote_addr().clone()) {
            Some(TransportAddr::Ip(addr)) => Route::Direct(addr),
            Some(TransportAddr::Relay(url)) => Route::Relayed(url),
            _ => Route::Unknown,
        }
    }

    /// Calls `on_change` with the route now and at every change, until the connection
    /// closes.
    pub async fn watch(conn: Connection, mut on_change: impl FnMut(&Route)) {
        let mut last = None;
        let mut snapshots = conn.paths_stream();
        while snapshots.next().await.is_some() {
            let now = Route::of(&conn);
            if last.as_ref() != Some(&now) {
                on_change(&now);
                last = Some(now);
            }
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Direct(addr) => write!(f, "direct to {addr}"),
            Route::Relayed(url) => write!(f, "relayed through {url}"),
            Route::Unknown => f.write_str("not chosen yet"),
        }
    }
}
