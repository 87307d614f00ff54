//! `bind`: `atek_net::bind::expose` in front of a local TCP sink, `atek_net::bind::forward`
//! on a local port, and a TCP client writing `mib` MiB into that port in 1 MiB writes.
//!
//! One small connection goes first, unmeasured, so that the forward's QUIC connection is
//! up (it is made on the first TCP connection). The clock runs from the measured TCP
//! connection's connect call until the sink has read everything up to the end of input:
//! TCP into the forward, a QUIC stream to the exposing node, TCP again into the sink.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use atek_core::SecretKey;
use atek_net::bind;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::util::{Cpu, MIB, Route, block, emit, node, peer_addr, rate, relayed, round, setup};

/// How long the unmeasured first connection may take to reach the sink.
const WARM_UP: Duration = Duration::from_secs(15);

/// A TCP server on 127.0.0.1 that reads each connection to its end and reports how many
/// bytes it read and when it saw the end.
async fn sink() -> anyhow::Result<(SocketAddr, mpsc::UnboundedReceiver<(u64, Instant)>)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; MIB as usize];
                let mut n = 0u64;
                while let Ok(k) = tcp.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                }
                let _ = tx.send((n, Instant::now()));
            });
        }
    });
    Ok((addr, rx))
}

pub(crate) async fn run(route: Route, mib: u64) -> anyhow::Result<()> {
    let (config, relay) = setup(route).await?;
    let (sink_addr, mut done) = sink().await?;
    let server = node(&SecretKey::generate(), &[bind::ALPN], &config).await?;
    let exposing = {
        let server = server.clone();
        tokio::spawn(async move { bind::expose(&server, sink_addr.to_string(), None).await })
    };
    let client = node(&SecretKey::generate(), &[], &config).await?;
    let local = TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening on 127.0.0.1")?;
    let port = local.local_addr()?;
    let to = peer_addr(&server, relay.as_ref()).await?;
    let forwarding = {
        let client = client.clone();
        tokio::spawn(async move { bind::forward(&client, to, local, None).await })
    };

    // Unmeasured: the forward's QUIC connection is made on its first TCP connection.
    let mut tcp = TcpStream::connect(port).await.context("connecting")?;
    tcp.write_all(b"x").await?;
    tcp.shutdown().await?;
    match tokio::time::timeout(WARM_UP, done.recv()).await {
        Ok(Some((1, _))) => {}
        Ok(other) => bail!("the first connection reached the sink as {other:?}"),
        Err(_) => bail!("the first connection did not reach the sink within {WARM_UP:?}"),
    }
    drop(tcp);

    let data = block();
    let relay_before = relay.as_ref().map_or(0, |r| r.received());
    let cpu = Cpu::now()?;
    let start = Instant::now();
    let mut tcp = TcpStream::connect(port).await.context("connecting")?;
    for _ in 0..mib {
        tcp.write_all(&data)
            .await
            .context("writing into the forward")?;
    }
    tcp.shutdown().await.context("shutting down")?;
    let (n, end) = done.recv().await.context("the sink stopped")?;
    let cpu = Cpu::now()?.own_since(cpu);
    ensure!(n == mib * MIB, "the sink read {n} bytes of {}", mib * MIB);

    let seconds = end.duration_since(start).as_secs_f64();
    let mut row = rate("bind", route.name(), mib, seconds);
    row.insert("cpu_s".into(), json!(round(cpu, 2)));
    row.insert(
        "relayed".into(),
        relayed(relay.as_ref(), relay_before, mib * MIB),
    );
    forwarding.abort();
    client.close().await;
    server.close().await;
    exposing.abort();
    emit(row);
    Ok(())
}
