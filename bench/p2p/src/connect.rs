//! `connect`: how long `Node::connect` takes to give an established connection (QUIC and
//! TLS handshakes done) between two nodes that are already up.
//!
//! One node waits and accepts. For each sample a fresh dialing node is bound (and, with a
//! relay, homed on it) before the clock starts, so every sample is a first contact: the
//! dialer knows nothing of the other node but what it is given (its direct addresses, or
//! its key and the relay's URL). The row gives the median; `again_ms` is the median of a
//! second connect from the same dialer right after the first (what iroh has learnt by
//! then, such as a direct path, is used).

use std::time::Instant;

use anyhow::Context as _;
use atek_core::SecretKey;
use serde_json::{Map, Value, json};

use crate::bare::selected_path;
use crate::util::{Route, emit, node, peer_addr, round, setup};

/// The ALPN the waiting node takes.
const ALPN: &[u8] = b"atek-p2p-bench/connect/1";

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub(crate) async fn run(route: Route, count: u32) -> anyhow::Result<()> {
    let (config, relay) = setup(route).await?;
    let server = node(&SecretKey::generate(), &[ALPN], &config).await?;
    let accepting = {
        let server = server.clone();
        tokio::spawn(async move {
            while let Ok((_, conn)) = server.accept().await {
                // Held until the dialer closes it.
                tokio::spawn(async move { conn.closed().await });
            }
        })
    };
    let to = peer_addr(&server, relay.as_ref()).await?;
    let (mut first, mut again) = (Vec::new(), Vec::new());
    let mut paths: Map<String, Value> = Map::new();
    for _ in 0..count {
        let client = node(&SecretKey::generate(), &[], &config).await?;
        let start = Instant::now();
        let conn = client
            .connect(to.clone(), ALPN)
            .await
            .context("connecting")?;
        first.push(start.elapsed().as_secs_f64() * 1e3);
        let path = selected_path(&conn);
        let seen = paths.entry(path).or_insert(json!(0));
        *seen = json!(seen.as_u64().unwrap_or(0) + 1);
        let start = Instant::now();
        let conn2 = client
            .connect(to.clone(), ALPN)
            .await
            .context("connecting again")?;
        again.push(start.elapsed().as_secs_f64() * 1e3);
        conn.close(0u32.into(), b"done");
        conn2.close(0u32.into(), b"done");
        client.close().await;
    }
    let (min, max) = first
        .iter()
        .fold((f64::INFINITY, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let mut row = Map::new();
    row.insert("row".into(), json!("connect"));
    row.insert("path".into(), json!(route.name()));
    row.insert("unit".into(), json!("ms"));
    row.insert("value".into(), json!(round(median(&mut first), 3)));
    row.insert("samples".into(), json!(count));
    row.insert("min_ms".into(), json!(round(min, 3)));
    row.insert("max_ms".into(), json!(round(max, 3)));
    row.insert("again_ms".into(), json!(round(median(&mut again), 3)));
    // The path each first connection had selected when it was established.
    row.insert("selected_path_at_connect".into(), Value::Object(paths));
    accepting.abort();
    server.close().await;
    emit(row);
    Ok(())
}
