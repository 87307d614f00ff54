//! bind between two nodes in this process through a relay on loopback: 100 TCP
//! connections at once over one QUIC connection, each echoed byte for byte, half-close, and
//! a target that refuses.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use atek_core::SecretKey;
use atek_net::bind::{self, BindEvent};
use atek_net::{NetConfig, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

async fn relay_config() -> (NetConfig, Box<dyn std::any::Any + Send>) {
    let (map, _url, server) = iroh::test_utils::run_relay_server().await.unwrap();
    let relays = map
        .relays::<Vec<_>>()
        .iter()
        .map(|r| (**r).clone())
        .collect();
    let mut config = NetConfig::loopback(relays);
    config.connect_timeout = Duration::from_secs(5);
    (config, Box::new(server))
}

/// A TCP server that echoes everything back, then closes its side after the client's end
/// of input (so half-close is what ends each echo).
async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut rd, mut wr) = tcp.split();
                tokio::io::copy(&mut rd, &mut wr).await.unwrap();
                wr.shutdown().await.unwrap();
            });
        }
    });
    addr
}

fn data(seed: u64, len: usize) -> Vec<u8> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_tcp_connections_share_one_p2p_connection() {
    let (config, _relay) = relay_config().await;
    let echo = echo_server().await;

    let server = Node::bind(&SecretKey::generate(), &[bind::ALPN], &config)
        .await
        .unwrap();
    server.online().await;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let exposing = {
        let server = server.clone();
        tokio::spawn(async move { bind::expose(&server, echo.to_string(), Some(events_tx)).await })
    };

    let client = Node::bind(&SecretKey::generate(), &[], &config)
        .await
        .unwrap();
    let local = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = local.local_addr().unwrap();
    let forwarding = {
        let (client, key) = (client.clone(), server.key());
        tokio::spawn(async move { bind::forward(&client, key.into(), local).await })
    };

    let tasks: Vec<_> = (0..100u64)
        .map(|i| {
            tokio::spawn(async move {
                let sent = data(i, 1000 + (i as usize) * 997);
                let mut tcp = TcpStream::connect(port).await.unwrap();
                let (mut rd, mut wr) = tcp.split();
                let write = async {
                    wr.write_all(&sent).await.unwrap();
                    // Half-close: the echo ends because our side stopped sending.
                    wr.shutdown().await.unwrap();
                };
                let mut got = Vec::new();
                let read = rd.read_to_end(&mut got);
                let ((), n) = tokio::join!(write, read);
                n.unwrap();
                assert!(got == sent, "connection {i} echoed exactly");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    // One peer connected once, whatever the number of TCP connections.
    let first = events.recv().await.unwrap();
    assert_eq!(first, BindEvent::Connect(client.key()));
    assert!(
        events.try_recv().is_err(),
        "no second connection, no failure"
    );

    client.close().await;
    assert_eq!(events.recv().await.unwrap(), BindEvent::Close(client.key()));
    forwarding.abort();
    server.close().await;
    exposing.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_closes_the_tcp_connection_and_is_reported() {
    let (config, _relay) = relay_config().await;
    // A port nobody listens on: bind one, note it, drop it.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let server = Node::bind(&SecretKey::generate(), &[bind::ALPN], &config)
        .await
        .unwrap();
    server.online().await;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    {
        let server = server.clone();
        tokio::spawn(async move { bind::expose(&server, dead.to_string(), Some(events_tx)).await });
    }
    let client = Node::bind(&SecretKey::generate(), &[], &config)
        .await
        .unwrap();
    let local = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = local.local_addr().unwrap();
    {
        let (client, key) = (client.clone(), server.key());
        tokio::spawn(async move { bind::forward(&client, key.into(), local).await });
    }
    let mut tcp = TcpStream::connect(port).await.unwrap();
    tcp.write_all(b"hello").await.unwrap();
    let mut got = Vec::new();
    // The connection ends (reset or closed) instead of hanging.
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got))
        .await
        .expect("the TCP connection is closed, not left hanging");
    assert!(got.is_empty());
    assert_eq!(
        events.recv().await.unwrap(),
        BindEvent::Connect(client.key())
    );
    match events.recv().await.unwrap() {
        BindEvent::Failed { peer, reason } => {
            assert_eq!(peer, client.key());
            assert!(reason.contains("cannot connect to"), "{reason}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    client.close().await;
    server.close().await;
}
