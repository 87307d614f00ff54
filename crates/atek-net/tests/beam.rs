//! beam between two nodes in this process, through a relay the test starts on loopback:
//! both directions with half-close, refused keys, a wrong passphrase, a peer that leaves,
//! a peer that vanishes without closing.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use atek_core::SecretKey;
use atek_net::beam::{self, Passphrase};
use atek_net::{NetError, Node};
use common::{Relay, data};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn relay() -> Relay {
    common::relay(Duration::from_secs(5)).await
}

async fn listener(relay: &Relay, p: &Passphrase) -> Node {
    let node = Node::bind(&p.listener_key(), &[beam::ALPN], &relay.config)
        .await
        .unwrap();
    node.online().await;
    node
}

async fn connector(relay: &Relay, key: &SecretKey) -> Node {
    Node::bind(key, &[], &relay.config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ways_with_half_close() {
    let relay = relay().await;
    let p = Passphrase::generate();
    let a = listener(&relay, &p).await;
    let b = connector(&relay, &p.connector_key()).await;

    let to_b = data(1, 1 << 20);
    let to_a = data(2, 300 << 10);

    // A's input is short and ends first. B only starts sending once it has seen A's end
    // of input: the direction B -> A must still work after A -> B is closed.
    let listen = {
        let (a, p, to_b) = (a.clone(), p.clone(), to_b.clone());
        tokio::spawn(async move {
            let beam = beam::accept(&a, &p).await.unwrap();
            let mut out = Vec::new();
            let stats = beam.pipe(&to_b[..], &mut out).await.unwrap();
            (stats, out)
        })
    };
    let beam = beam::connect(&b, &p, None).await.unwrap();
    assert_eq!(beam.peer(), p.listener_key().public());
    let (mut b_in_tx, b_in) = tokio::io::duplex(64 << 10);
    let (b_out, mut b_out_rx) = tokio::io::duplex(64 << 10);
    let feeder = {
        let to_a = to_a.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            b_out_rx.read_to_end(&mut got).await.unwrap();
            // A's input has ended here; now B sends.
            b_in_tx.write_all(&to_a).await.unwrap();
            b_in_tx.shutdown().await.unwrap();
            got
        })
    };
    let b_stats = beam.pipe(b_in, b_out).await.unwrap();
    let b_got = feeder.await.unwrap();
    let (a_stats, a_got) = listen.await.unwrap();

    assert_eq!(b_got, to_b, "B received exactly what A sent");
    assert_eq!(
        a_got, to_a,
        "A received exactly what B sent after A's end of input"
    );
    assert_eq!(a_stats.sent, to_b.len() as u64);
    assert_eq!(a_stats.received, to_a.len() as u64);
    assert_eq!(b_stats.sent, to_a.len() as u64);
    assert_eq!(b_stats.received, to_b.len() as u64);
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_the_passphrase_is_refused_and_the_right_one_still_gets_in() {
    let relay = relay().await;
    let p = Passphrase::generate();
    let a = listener(&relay, &p).await;
    let listen = {
        let (a, p) = (a.clone(), p.clone());
        tokio::spawn(async move {
            let beam = beam::accept(&a, &p).await.unwrap();
            let peer = beam.peer();
            let mut out = Vec::new();
            beam.pipe(&b"from a"[..], &mut out).await.unwrap();
            (peer, out)
        })
    };

    // Someone who knows the listener's key (it is public) but not the passphrase.
    let stranger = connector(&relay, &SecretKey::generate()).await;
    let conn = stranger
        .connect(p.listener_key().public(), beam::ALPN)
        .await
        .unwrap();
    let reason = conn.closed().await;
    assert!(
        reason.to_string().contains("not the beam's other end")
            || format!("{reason:?}").contains("403"),
        "refused with a reason: {reason}"
    );

    let b = connector(&relay, &p.connector_key()).await;
    let beam = beam::connect(&b, &p, None).await.unwrap();
    let mut out = Vec::new();
    beam.pipe(&b"from b"[..], &mut out).await.unwrap();
    assert_eq!(out, b"from a");
    let (peer, got) = listen.await.unwrap();
    assert_eq!(peer, p.connector_key().public());
    assert_eq!(got, b"from b");
    for n in [a, b, stranger] {
        n.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passphrase_finds_nobody_within_the_timeout() {
    let mut relay = relay().await;
    relay.config.connect_timeout = Duration::from_secs(2);
    let p = Passphrase::generate();
    let a = listener(&relay, &p).await;
    let wrong = Passphrase::generate();
    let b = connector(&relay, &wrong.connector_key()).await;
    let started = std::time::Instant::now();
    let err = beam::connect(&b, &wrong, None).await.unwrap_err();
    assert!(
        matches!(err, NetError::Unreachable { .. } | NetError::Connect { .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    assert!(
        err.to_string()
            .contains(&wrong.listener_key().public().to_string())
    );
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_leaves_mid_stream_ends_the_pipe_with_an_error() {
    let relay = relay().await;
    let p = Passphrase::generate();
    let a = listener(&relay, &p).await;
    let b = connector(&relay, &p.connector_key()).await;
    let listen = {
        let (a, p) = (a.clone(), p.clone());
        tokio::spawn(async move { beam::accept(&a, &p).await.unwrap() })
    };
    let beam = beam::connect(&b, &p, None).await.unwrap();
    let a_beam = listen.await.unwrap();
    // B's input never ends; A goes away.
    let (_keep_open, b_in) = tokio::io::duplex(1024);
    let pipe = tokio::spawn(beam.pipe(b_in, tokio::io::sink()));
    drop(a_beam);
    a.close().await;
    let result = tokio::time::timeout(Duration::from_secs(20), pipe)
        .await
        .expect("the pipe ends once the peer is gone")
        .unwrap();
    assert!(matches!(result, Err(NetError::Lost { .. })), "{result:?}");
    b.close().await;
}

/// A peer that vanishes without a word (as a killed process does: no QUIC close goes out)
/// is noticed after the idle timeout, and the pipe ends with an error instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_vanishes_without_closing_ends_the_pipe_after_the_idle_timeout() {
    let mut relay = relay().await;
    let idle = Duration::from_secs(2);
    relay.config.idle_timeout = idle;
    let p = Passphrase::generate();

    // A lives on a runtime of its own, which is shut down mid-stream: its tasks stop
    // where they are, so its node is never closed and its connection never says goodbye.
    let vanishing = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (listening_tx, listening) = tokio::sync::oneshot::channel();
    {
        let (config, p) = (relay.config.clone(), p.clone());
        vanishing.spawn(async move {
            let a = Node::bind(&p.listener_key(), &[beam::ALPN], &config)
                .await
                .unwrap();
            a.online().await;
            listening_tx.send(a.clone()).unwrap();
            let a_beam = beam::accept(&a, &p).await.unwrap();
            // Sends forever, and never returns.
            let _ = a_beam.pipe(tokio::io::repeat(7), tokio::io::sink()).await;
        });
    }
    let a = listening.await.unwrap();
    let b = connector(&relay, &p.connector_key()).await;
    let beam = beam::connect(&b, &p, None).await.unwrap();
    let (b_out, mut received) = tokio::io::duplex(64 << 10);
    let pipe = tokio::spawn(beam.pipe(tokio::io::repeat(1), b_out));
    // Mid-stream: bytes are flowing from A when it vanishes.
    let mut buf = vec![0u8; 256 << 10];
    received.read_exact(&mut buf).await.unwrap();
    assert!(buf.iter().all(|&b| b == 7));
    tokio::spawn(async move { tokio::io::copy(&mut received, &mut tokio::io::sink()).await });
    drop(a);
    vanishing.shutdown_background();
    let started = std::time::Instant::now();

    let result = tokio::time::timeout(idle + Duration::from_secs(5), pipe)
        .await
        .expect("the pipe ends within the idle timeout (plus margin) once the peer is gone")
        .unwrap();
    let waited = started.elapsed();
    eprintln!("the pipe ended {waited:?} after A vanished: {result:?}");
    assert!(matches!(result, Err(NetError::Lost { .. })), "{result:?}");
    // Not at once: nothing told B, so this is the idle timeout at work (a close sent by A
    // would end it in milliseconds and prove nothing about a vanished peer).
    assert!(waited >= idle / 2, "ended after {waited:?}");
    b.close().await;
}

#[test]
fn passphrases_round_trip_and_bad_ones_say_why() {
    let p = Passphrase::generate();
    let text = p.to_text();
    assert_eq!(text.len(), 52);
    assert_eq!(text, text.to_ascii_lowercase());
    let q = Passphrase::parse(&format!("  {}\n", text.to_ascii_uppercase())).unwrap();
    assert_eq!(q.listener_key().public(), p.listener_key().public());
    assert_ne!(p.listener_key().public(), p.connector_key().public());
    assert_eq!(format!("{p:?}"), "Passphrase(<redacted>)");

    let short = Passphrase::parse(&text[..40]).unwrap_err().to_string();
    assert!(short.contains("52 characters"), "{short}");
    let mut bad = text.clone();
    bad.replace_range(0..1, "1");
    let bad = Passphrase::parse(&bad).unwrap_err().to_string();
    assert!(bad.contains("a-z and the digits 2-7"), "{bad}");
}

/// Two nodes on one machine start through the relay and move to a direct path; the route
/// says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_goes_direct_when_it_can() {
    let relay = relay().await;
    let p = Passphrase::generate();
    let a = listener(&relay, &p).await;
    let b = connector(&relay, &p.connector_key()).await;
    let listen = {
        let (a, p) = (a.clone(), p.clone());
        tokio::spawn(async move { beam::accept(&a, &p).await.unwrap() })
    };
    let beam = beam::connect(&b, &p, None).await.unwrap();
    let _other = listen.await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(atek_net::Route::watch(beam.connection(), move |r| {
        let _ = tx.send(r.clone());
    }));
    let direct = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(route) = rx.recv().await {
            if let atek_net::Route::Direct(addr) = route {
                return addr;
            }
        }
        panic!("the connection closed before going direct");
    })
    .await
    .expect("a direct path within 10 s on loopback");
    assert!(direct.ip().is_loopback(), "{direct}");
    assert_eq!(
        atek_net::Route::of(&beam.connection()),
        atek_net::Route::Direct(direct)
    );
    a.close().await;
    b.close().await;
}
