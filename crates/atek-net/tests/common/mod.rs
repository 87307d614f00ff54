//! What the p2p tests share: a relay on loopback and bytes to send.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use atek_net::NetConfig;

/// Bytes that do not repeat in any short period (xorshift), from `seed`.
pub(crate) fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// iroh's test relay on loopback (self-signed, so trusted without checks), and a
/// loopback-only config that uses it with `connect_timeout`.
pub(crate) struct Relay {
    pub(crate) config: NetConfig,
    /// The relay server; it stops when dropped.
    _server: Box<dyn std::any::Any + Send>,
}

pub(crate) async fn relay(connect_timeout: Duration) -> Relay {
    let (map, _url, server) = iroh::test_utils::run_relay_server().await.unwrap();
    let relays = map
        .relays::<Vec<_>>()
        .iter()
        .map(|r| (**r).clone())
        .collect();
    let mut config = NetConfig::loopback(relays);
    config.connect_timeout = connect_timeout;
    Relay {
        config,
        _server: Box::new(server),
    }
}
