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

/// Two nodes through a relay on loopback, the first exposing `target` (reporting to
/// `events`, if given), the second forwarding a local port to it: that port, and both
/// nodes and the relay (kept alive by the caller).
pub(crate) async fn forwarded(
    target: std::net::SocketAddr,
    events: Option<tokio::sync::mpsc::UnboundedSender<atek_net::bind::BindEvent>>,
) -> (std::net::SocketAddr, atek_net::Node, atek_net::Node, Relay) {
    use atek_core::SecretKey;
    use atek_net::{Node, bind};

    let relay = relay(Duration::from_secs(5)).await;
    let server = Node::bind(&SecretKey::generate(), &[bind::ALPN], &relay.config)
        .await
        .unwrap();
    server.online().await;
    {
        let server = server.clone();
        tokio::spawn(async move { bind::expose(&server, target.to_string(), events).await });
    }
    let client = Node::bind(&SecretKey::generate(), &[], &relay.config)
        .await
        .unwrap();
    let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = local.local_addr().unwrap();
    {
        let (client, key) = (client.clone(), server.key());
        tokio::spawn(async move { bind::forward(&client, key.into(), local, None).await });
    }
    (port, server, client, relay)
}
