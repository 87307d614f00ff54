//! `tcp`: plain TCP on 127.0.0.1, one connection, for scale: the client writes `mib` MiB in
//! 1 MiB writes and shuts its side down; the clock runs from the connect call until the
//! server has read everything up to the end of input.

use std::time::Instant;

use anyhow::{Context as _, ensure};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::util::{Cpu, MIB, block, emit, rate, round};

pub(crate) async fn run(mib: u64) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await?;
        let mut buf = vec![0u8; MIB as usize];
        let mut n = 0u64;
        loop {
            let k = tcp.read(&mut buf).await?;
            if k == 0 {
                return Ok::<_, std::io::Error>((n, Instant::now()));
            }
            n += k as u64;
        }
    });
    let data = block();
    let cpu = Cpu::now()?;
    let start = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.context("connecting")?;
    for _ in 0..mib {
        tcp.write_all(&data).await.context("writing")?;
    }
    tcp.shutdown().await.context("shutting down")?;
    let (n, end) = server.await?.context("the server's side")?;
    let cpu = Cpu::now()?.own_since(cpu);
    ensure!(n == mib * MIB, "the server read {n} bytes of {}", mib * MIB);
    let seconds = end.duration_since(start).as_secs_f64();
    let mut row = rate("tcp", "loopback", mib, seconds);
    row.insert("cpu_s".into(), json!(round(cpu, 2)));
    emit(row);
    Ok(())
}
