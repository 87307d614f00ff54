//! bind between two nodes in this process through a relay on loopback: 150 TCP
//! connections at once over one QUIC connection, each echoed byte for byte, half-close, a
//! target that refuses, and a peer that cannot be reached.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use atek_core::SecretKey;
use atek_net::Node;
use atek_net::bind::{self, BindEvent};
use common::data;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_and_fifty_tcp_connections_at_once_share_one_p2p_connection() {
    let relay = common::relay(Duration::from_secs(5)).await;
    let config = &relay.config;
    let echo = echo_server().await;

    let server = Node::bind(&SecretKey::generate(), &[bind::ALPN], config)
        .await
        .unwrap();
    server.online().await;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let exposing = {
        let server = server.clone();
        tokio::spawn(async move { bind::expose(&server, echo.to_string(), Some(events_tx)).await })
    };

    let client = Node::bind(&SecretKey::generate(), &[], config)
        .await
        .unwrap();
    let local = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = local.local_addr().unwrap();
    let forwarding = {
        let (client, key) = (client.clone(), server.key());
        tokio::spawn(async move { bind::forward(&client, key.into(), local, None).await })
    };

    // More TCP connections open at once than QUIC's default stream limit (100): each
    // gets its echo, then all wait for each other before they end.
    const OPEN: usize = 150;
    let all_open = std::sync::Arc::new(tokio::sync::Barrier::new(OPEN));
    let tasks: Vec<_> = (0..OPEN as u64)
        .map(|i| {
            let all_open = all_open.clone();
            tokio::spawn(async move {
                let sent = data(i, 1000 + (i as usize) * 997);
                let mut tcp = TcpStream::connect(port).await.unwrap();
                let (mut rd, mut wr) = tcp.split();
                let mut got = vec![0; sent.len()];
                let write = wr.write_all(&sent);
                let read = rd.read_exact(&mut got);
                let (w, r) = tokio::join!(write, read);
                w.unwrap();
                r.unwrap();
                assert!(got == sent, "connection {i} echoed exactly");
                all_open.wait().await;
                // Half-close: the echo ends because our side stopped sending.
                wr.shutdown().await.unwrap();
                let mut rest = Vec::new();
                rd.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty(), "connection {i} echoed nothing more");
            })
        })
        .collect();
    let done = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("150 connections open at once are all carried, none waits for a stream");

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
    // A port nobody listens on: bind one, note it, drop it.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (port, server, client, _relay) = common::forwarded(dead, Some(events_tx)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_fails_forward_at_once_and_later_dials_share_one_wait() {
    let timeout = Duration::from_secs(2);
    let relay = common::relay(timeout).await;
    let config = &relay.config;
    let client = Node::bind(&SecretKey::generate(), &[], config)
        .await
        .unwrap();
    client.online().await;

    // Nobody has this key: forward says so instead of listening in silence.
    let nobody = SecretKey::generate().public();
    let local = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = std::time::Instant::now();
    let err = bind::forward(&client, nobody.into(), local, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, atek_net::NetError::Unreachable { .. }),
        "{err}"
    );
    assert!(started.elapsed() < timeout * 3, "{:?}", started.elapsed());

    // A peer that was reached, then went away: five TCP connections that arrive together
    // wait for one dial, not five in turn, and each is reported and closed.
    let server = Node::bind(&SecretKey::generate(), &[bind::ALPN], config)
        .await
        .unwrap();
    server.online().await;
    let echo = echo_server().await;
    {
        let server = server.clone();
        tokio::spawn(async move { bind::expose(&server, echo.to_string(), None).await });
    }
    let local = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = local.local_addr().unwrap();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    {
        let (client, key) = (client.clone(), server.key());
        tokio::spawn(
            async move { bind::forward(&client, key.into(), local, Some(events_tx)).await },
        );
    }
    assert_eq!(
        events.recv().await.unwrap(),
        BindEvent::Connect(server.key())
    );
    server.close().await;
    let started = std::time::Instant::now();
    let tries: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn(async move {
                let mut tcp = TcpStream::connect(port).await.unwrap();
                let mut got = Vec::new();
                let _ = tcp.read_to_end(&mut got).await;
                assert!(got.is_empty());
            })
        })
        .collect();
    for t in tries {
        t.await.unwrap();
    }
    for _ in 0..5 {
        match events.recv().await.unwrap() {
            BindEvent::Failed { peer, reason } => {
                assert_eq!(peer, server.key());
                assert!(reason.contains("a connection from 127.0.0.1:"), "{reason}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
    let waited = started.elapsed();
    assert!(
        waited < timeout * 2,
        "five connections waited {waited:?}: one dial each, in turn"
    );
    client.close().await;
}
