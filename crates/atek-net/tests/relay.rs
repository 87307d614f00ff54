//! Our relay (`atek_net::relay`) on loopback with a self-signed certificate: nodes that
//! trust it through `relay_ca` (not by skipping verification) beam through it and learn
//! their address from it; a node that does not trust it cannot use it; bad files and
//! ports in use are errors that say which.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use atek_net::beam::{self, Passphrase};
use atek_net::relay::{self, RelayHandle, RelayListener, RelayOptions, RelayTls};
use atek_net::{NetConfig, NetError, Node};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Every port 0 on 127.0.0.1, a self-signed certificate for the loopback names in `dir`.
fn self_signed(dir: &Path) -> RelayOptions {
    RelayOptions {
        hostnames: vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        http_bind: loopback(),
        https_bind: loopback(),
        quic_bind: Some(loopback()),
        tls: Some(RelayTls::SelfSigned {
            dir: dir.to_owned(),
        }),
    }
}

/// A node's config for `relay` (its QUIC port included), trusting `ca` (if any) and
/// nothing else beyond the public roots, with no public relay or lookup.
fn config(relay: &RelayHandle, ca: Option<&Path>, timeout: Duration) -> NetConfig {
    NetConfig {
        relays: vec![relay.relay_config()],
        // Verified: loopback() alone would trust any certificate.
        insecure_relay_tls: false,
        relay_ca: ca.into_iter().map(Path::to_owned).collect(),
        connect_timeout: timeout,
        ..NetConfig::loopback(Vec::new())
    }
}

/// Waits (briefly) for `what` to hold of the relay's stats.
async fn eventually(relay: &RelayHandle, what: impl Fn(relay::RelayStats) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if what(relay.stats()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    what(relay.stats())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_trusting_the_self_signed_certificate_beam_through_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay::run_relay(self_signed(dir.path())).await.unwrap();
    assert_eq!(relay.url().scheme(), "https");
    assert_eq!(relay.url().host_str(), Some("127.0.0.1"));
    let https = relay.https_addr().unwrap();
    assert_eq!(relay.url().port(), Some(https.port()));
    assert!(relay.made_certificate());
    let ca = relay.ca_file().unwrap().to_owned();
    assert_eq!(ca, dir.path().join(relay::SELF_SIGNED_CERT));
    assert!(relay.quic_addr().unwrap().port() != 0);

    let config = config(&relay, Some(&ca), Duration::from_secs(5));
    let p = Passphrase::generate();
    let a = Node::bind(&p.listener_key(), &[beam::ALPN], &config)
        .await
        .unwrap();
    assert!(a.online().await, "the listener gets a home on our relay");
    assert_eq!(a.addr().relays, vec![relay.url().clone()]);
    let b = Node::bind(&p.connector_key(), &[], &config).await.unwrap();

    let listen = {
        let (a, p) = (a.clone(), p.clone());
        tokio::spawn(async move {
            let beam = beam::accept(&a, &p).await.unwrap();
            let mut out = Vec::new();
            beam.pipe(&b"from a"[..], &mut out).await.unwrap();
            out
        })
    };
    // By key alone: the connector knows only the relay, so the connection starts there.
    let pipe = beam::connect(&b, &p, None).await.unwrap();
    let mut out = Vec::new();
    pipe.pipe(&b"from b"[..], &mut out).await.unwrap();
    assert_eq!(out, b"from a");
    assert_eq!(listen.await.unwrap(), b"from b");

    assert!(
        eventually(&relay, |s| s.clients >= 2 && s.bytes_relayed > 0).await,
        "both nodes used the relay: {:?}",
        relay.stats()
    );
    assert!(
        eventually(&relay, |s| s.address_discoveries >= 1).await,
        "QUIC address discovery worked with the CA file: {:?}",
        relay.stats()
    );
    a.close().await;
    b.close().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_ca_cannot_use_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay::run_relay(self_signed(dir.path())).await.unwrap();
    let node = Node::bind(
        &atek_core::SecretKey::generate(),
        &[],
        &config(&relay, None, Duration::from_secs(2)),
    )
    .await
    .unwrap();
    let started = Instant::now();
    assert!(!node.online().await, "no home on a relay it does not trust");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded");
    assert!(node.addr().relays.is_empty(), "{:?}", node.addr());
    let stats = relay.stats();
    assert_eq!(stats.clients, 0, "{stats:?}");
    assert_eq!(stats.address_discoveries, 0, "{stats:?}");
    node.close().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_self_signed_certificate_is_kept_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = relay::run_relay(self_signed(dir.path())).await.unwrap();
    let cert = std::fs::read(first.ca_file().unwrap()).unwrap();
    let key = dir.path().join(relay::SELF_SIGNED_KEY);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    first.shutdown().await.unwrap();
    let second = relay::run_relay(self_signed(dir.path())).await.unwrap();
    assert!(!second.made_certificate());
    assert_eq!(std::fs::read(second.ca_file().unwrap()).unwrap(), cert);
    second.shutdown().await.unwrap();

    // Half a pair is not papered over.
    std::fs::remove_file(&key).unwrap();
    let err = relay::run_relay(self_signed(dir.path()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("key.pem") && err.contains("remove"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_is_plain_http_without_address_discovery() {
    let relay = relay::run_relay(RelayOptions {
        http_bind: loopback(),
        https_bind: loopback(),
        quic_bind: Some(loopback()),
        ..RelayOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(relay.url().scheme(), "http");
    assert_eq!(relay.url().port(), Some(relay.http_addr().unwrap().port()));
    assert_eq!(relay.https_addr(), None);
    assert_eq!(relay.quic_addr(), None);
    assert_eq!(relay.ca_file(), None);
    let node = Node::bind(
        &atek_core::SecretKey::generate(),
        &[],
        &config(&relay, None, Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert!(
        node.online().await,
        "no certificate to trust over plain HTTP"
    );
    node.close().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ca_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = atek_core::SecretKey::generate();
    let bind = |ca: &Path| {
        let config = NetConfig {
            relay_ca: vec![ca.to_owned()],
            ..NetConfig::loopback(Vec::new())
        };
        let key = key.clone();
        async move { Node::bind(&key, &[], &config).await.unwrap_err() }
    };

    let missing = dir.path().join("missing.pem");
    let err = bind(&missing).await;
    assert!(matches!(err, NetError::RelayCa { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("missing.pem") && text.contains("cannot read"),
        "{text}"
    );

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let text = bind(&empty).await.to_string();
    assert!(
        text.contains("empty.pem") && text.contains("no certificate"),
        "{text}"
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let text = bind(&garbage).await.to_string();
    assert!(text.contains("garbage.pem"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let tcp = std::net::TcpListener::bind(loopback()).unwrap();
    let err = relay::run_relay(RelayOptions {
        https_bind: tcp.local_addr().unwrap(),
        ..self_signed(dir.path())
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::RelayListen {
                listener: RelayListener::Https,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("in use"), "{err}");

    let err = relay::run_relay(RelayOptions {
        http_bind: tcp.local_addr().unwrap(),
        ..self_signed(dir.path())
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::RelayListen {
                listener: RelayListener::Http,
                ..
            }
        ),
        "{err:?}"
    );

    let udp = std::net::UdpSocket::bind(loopback()).unwrap();
    let err = relay::run_relay(RelayOptions {
        quic_bind: Some(udp.local_addr().unwrap()),
        ..self_signed(dir.path())
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::RelayListen {
                listener: RelayListener::Quic,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("QUIC address discovery"), "{err}");
}
