//! Dialing a peer by its key alone, through lookups the test starts on loopback: DNS with a
//! pkarr relay, and a mainline DHT of its own. The two nodes are homed on different relays,
//! so a bare key dialed through the dialer's own relay does not find the peer: only the
//! lookup does.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use atek_core::SecretKey;
use atek_net::{DhtLookup, DnsLookup, Lookup, NetConfig, NetError, Node};
use common::Relay;
use iroh::test_utils::DnsPkarrServer;

const ALPN: &[u8] = b"atek/test/lookup";

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32])
}

async fn relay() -> Relay {
    common::relay(Duration::from_secs(20)).await
}

fn with_lookup(relay: &Relay, lookup: Lookup) -> NetConfig {
    let mut config = relay.config.clone();
    config.lookup = lookup;
    config
}

/// A listens for one stream and echoes its first line back; B dials A by key alone.
async fn dial_by_key(a_config: &NetConfig, b_config: &NetConfig, wait: impl Future<Output = ()>) {
    let a = Node::bind(&key(1), &[ALPN], a_config).await.unwrap();
    assert!(a.online().await, "A never reached its relay");
    wait.await;
    let server = {
        let a = a.clone();
        tokio::spawn(async move {
            let (peer, conn) = a.accept().await.unwrap();
            let (mut send, mut recv) = conn.accept_bi().await.unwrap();
            let got = recv.read_to_end(1024).await.unwrap();
            send.write_all(&got).await.unwrap();
            send.finish().unwrap();
            conn.closed().await;
            peer
        })
    };
    let b = Node::bind(&key(2), &[], b_config).await.unwrap();
    let conn = b.connect(a.key(), ALPN).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(b"found you").await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(1024).await.unwrap(), b"found you");
    conn.close(0u32.into(), b"done");
    assert_eq!(server.await.unwrap(), key(2).public());
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_key_is_found_through_dns_and_pkarr() {
    let (relay_a, relay_b) = (relay().await, relay().await);
    let dns = DnsPkarrServer::run().await.unwrap();
    let lookup = Lookup {
        dns: Some(DnsLookup {
            pkarr_relay: dns.pkarr_url().clone(),
            origin: "dns.iroh.test".to_owned(),
            nameserver: Some(dns_nameserver(&dns)),
        }),
        ..Lookup::default()
    };
    let a_id = iroh::EndpointId::from_bytes(key(1).public().as_bytes()).unwrap();
    let a_relay = relay_a.config.relays[0].url.clone();
    dial_by_key(
        &with_lookup(&relay_a, lookup.clone()),
        &with_lookup(&relay_b, lookup),
        async {
            // A's record, naming its relay, is served by the DNS server before B looks it
            // up. Not `dns.on_endpoint`: it checks the record and only then starts waiting
            // for the next upload, so an upload that lands in between is missed, and A
            // uploads its record once per change (again only after 5 minutes): the wait
            // then runs out although the record is there.
            tokio::time::timeout(Duration::from_secs(20), async {
                while !serves_relay(&dns, a_id, &a_relay).await {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .expect("A's record never named its relay on the DNS server");
        },
    )
    .await;
}

/// Whether `dns` answers a lookup of `id` with a record that names `relay`, as B's lookup
/// will ask it.
async fn serves_relay(dns: &DnsPkarrServer, id: iroh::EndpointId, relay: &iroh::RelayUrl) -> bool {
    // A fresh resolver each time: an answer without the record would be cached.
    match dns
        .dns_resolver()
        .lookup_endpoint_by_id(&id, "dns.iroh.test")
        .await
    {
        Ok(info) => info.data.relay_urls().any(|url| url == relay),
        Err(_) => false,
    }
}

/// The address of the DNS server `dns` runs (iroh's test server keeps it private; its
/// resolver's configuration names it).
fn dns_nameserver(dns: &DnsPkarrServer) -> std::net::SocketAddr {
    let text = format!("{dns:?}");
    let at = text.find("nameserver: ").unwrap() + "nameserver: ".len();
    text[at..]
        .split([',', ' ', '}'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_key_is_found_on_the_dht() {
    let (relay_a, relay_b) = (relay().await, relay().await);
    let testnet = n0_mainline::Testnet::new(5).await.unwrap();
    let lookup = Lookup {
        dht: Some(DhtLookup {
            bootstrap: testnet.bootstrap.clone(),
        }),
        ..Lookup::default()
    };
    let a_key = key(1).public();
    let probe = &testnet.nodes[0];
    dial_by_key(
        &with_lookup(&relay_a, lookup.clone()),
        &with_lookup(&relay_b, lookup),
        async {
            // A's record is on the DHT before B looks it up (a DHT put takes a few
            // round trips once A is online).
            tokio::time::timeout(Duration::from_secs(20), async {
                while probe
                    .get_mutable_most_recent(a_key.as_bytes(), None)
                    .await
                    .unwrap()
                    .is_none()
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .expect("A's record never reached the DHT");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_lookup_a_bare_key_on_another_relay_is_not_found() {
    let (relay_a, relay_b) = (relay().await, relay().await);
    let a = Node::bind(&key(1), &[ALPN], &relay_a.config).await.unwrap();
    assert!(a.online().await);
    let mut config = relay_b.config.clone();
    config.connect_timeout = Duration::from_secs(2);
    let b = Node::bind(&key(2), &[], &config).await.unwrap();
    match b.connect(a.key(), ALPN).await {
        Err(NetError::Unreachable { peer, .. } | NetError::Connect { peer, .. }) => {
            assert_eq!(peer, a.key());
        }
        other => panic!("expected the peer not to be found, got {other:?}"),
    }
    a.close().await;
    b.close().await;
}
