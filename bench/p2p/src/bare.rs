//! `iroh`: the ceiling. One QUIC stream between two endpoints that are already connected:
//! the dialer writes `mib` MiB as 1 MiB chunks (`write_chunk`, no copy) and finishes; the
//! other side takes them with `read_chunk` (no copy) and counts. The clock runs from opening
//! the stream until the reader has seen the end of the stream.
//!
//! `direct` and `relay` are two `atek_net::Node`s (`NetConfig::loopback`), as bind and beam
//! use them; `relay-only` is two iroh endpoints set up as `Node::bind` does but without
//! any IP transport (`clear_ip_transports()`), so that every byte goes through the relay.

use std::time::Instant;

use anyhow::{Context as _, bail, ensure};
use atek_core::SecretKey;
use atek_net::iroh::{Connection, RelayUrl};
use iroh::endpoint::{PortmapperConfig, presets};
use iroh::{Endpoint, EndpointAddr, RelayMode, TransportAddr};
use serde_json::{Map, Value, json};

use crate::util::{
    CONNECT_TIMEOUT, Cpu, MIB, Relay, Route, block, emit, node, peer_addr, rate, relayed, round,
    setup,
};

/// The ALPN of the copy.
const ALPN: &[u8] = b"atek-p2p-bench/copy/1";

pub(crate) async fn run(route: Route, mib: u64, external: Option<RelayUrl>) -> anyhow::Result<()> {
    if external.is_some() && route != Route::RelayOnly {
        bail!("--relay goes with --path relay-only");
    }
    let row = match route {
        Route::Direct | Route::Relay => {
            let (config, relay) = setup(route).await?;
            let server = node(&SecretKey::generate(), &[ALPN], &config).await?;
            let client = node(&SecretKey::generate(), &[], &config).await?;
            let accepting = {
                let server = server.clone();
                tokio::spawn(async move { server.accept().await.map(|(_, conn)| conn) })
            };
            let to = peer_addr(&server, relay.as_ref()).await?;
            let client_conn = client.connect(to, ALPN).await?;
            let server_conn = accepting.await??;
            let row = copy(route, &client_conn, &server_conn, relay.as_ref(), mib).await;
            client.close().await;
            server.close().await;
            row?
        }
        Route::RelayOnly => {
            let relay = match external {
                Some(url) => Relay::external(url),
                None => Relay::start().await?,
            };
            let server = relay_only_endpoint(&relay, &[ALPN]).await?;
            let client = relay_only_endpoint(&relay, &[]).await?;
            let accepting = {
                let server = server.clone();
                tokio::spawn(async move {
                    let incoming = server.accept().await.context("the endpoint closed")?;
                    incoming.await.context("the handshake")
                })
            };
            let to =
                EndpointAddr::from_parts(server.id(), [TransportAddr::Relay(relay.url.clone())]);
            let client_conn = tokio::time::timeout(CONNECT_TIMEOUT, client.connect(to, ALPN))
                .await
                .context("connecting through the relay timed out")?
                .context("connecting through the relay")?;
            let server_conn = accepting.await??;
            let row = copy(route, &client_conn, &server_conn, Some(&relay), mib).await;
            client.close().await;
            server.close().await;
            row?
        }
    };
    emit(row);
    Ok(())
}

/// An endpoint as `atek_net::Node::bind` makes one for a loopback relay (Minimal preset,
/// only this relay, its certificate not checked, no port mapping), without IP transports.
async fn relay_only_endpoint(relay: &Relay, alpns: &[&[u8]]) -> anyhow::Result<Endpoint> {
    let seed = SecretKey::generate().to_seed();
    let endpoint = Endpoint::builder(presets::Minimal)
        .secret_key(iroh::SecretKey::from_bytes(&seed))
        .alpns(alpns.iter().map(|a| a.to_vec()).collect())
        .relay_mode(RelayMode::Custom(relay.map.clone()))
        .ca_tls_config(iroh::tls::CaTlsConfig::insecure_skip_verify())
        .portmapper_config(PortmapperConfig::Disabled)
        .clear_ip_transports()
        .bind()
        .await
        .context("binding a relay-only endpoint")?;
    tokio::time::timeout(CONNECT_TIMEOUT, endpoint.online())
        .await
        .context("the relay-only endpoint did not reach the relay")?;
    Ok(endpoint)
}

/// The selected path of a connection now: `direct`, `relay` or `none`.
pub(crate) fn selected_path(conn: &Connection) -> &'static str {
    let paths = conn.paths();
    let selected = paths.iter().find(|p| p.is_selected());
    match selected {
        Some(p) if p.is_ip() => "direct",
        Some(p) if p.is_relay() => "relay",
        Some(_) => "other",
        None => "none",
    }
}

async fn copy(
    route: Route,
    client: &Connection,
    server: &Connection,
    relay: Option<&Relay>,
    mib: u64,
) -> anyhow::Result<Map<String, Value>> {
    let reading = {
        let server = server.clone();
        tokio::spawn(async move {
            let (_send, mut recv) = server.accept_bi().await?;
            let mut n = 0u64;
            while let Some(chunk) = recv.read_chunk(usize::MAX).await? {
                n += chunk.len() as u64;
            }
            Ok::<_, anyhow::Error>((n, Instant::now()))
        })
    };
    let data = block();
    let relay_before = relay.map_or(0, |r| r.received());
    let cpu = Cpu::now()?;
    let start = Instant::now();
    let (mut send, _recv) = client.open_bi().await.context("opening the stream")?;
    for _ in 0..mib {
        send.write_chunk(data.clone()).await.context("sending")?;
    }
    send.finish().context("finishing the stream")?;
    let (n, end) = reading.await?.context("the reading side")?;
    let cpu = Cpu::now()?.own_since(cpu);
    ensure!(n == mib * MIB, "the reader got {n} bytes of {}", mib * MIB);
    let path = selected_path(client);
    match (route, path) {
        (Route::Direct, "direct") | (Route::RelayOnly, "relay") | (Route::Relay, _) => {}
        _ => bail!("the copy meant to go {} went {path}", route.name()),
    }
    let seconds = end.duration_since(start).as_secs_f64();
    let mut row = rate("iroh", route.name(), mib, seconds);
    row.insert("cpu_s".into(), json!(round(cpu, 2)));
    row.insert("relayed".into(), relayed(relay, relay_before, mib * MIB));
    row.insert("selected_path_at_end".into(), json!(path));
    Ok(row)
}
