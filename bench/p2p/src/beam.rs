//! `beam`: the `atek beam` binary twice, end to end, start-up included; `beam-lib`: the
//! same pipe in this process with `atek_net::beam` (no process start-up).
//!
//! Both move `mib` MiB from the connector's input to the listener's output; the other
//! direction is empty (its input ends at once), as in `producer | atek beam PASS` on one
//! machine and `atek beam > file` on the other.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use atek_net::beam::{self, Passphrase};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStderr, Command};

use crate::util::{
    Counter, Cpu, MIB, Relay, Route, Source, block, emit, node, note, peer_addr, rate, relayed,
    round, setup,
};

/// `beam-lib`: two nodes in this process, the listener's and the connector's keys of one
/// passphrase. The clock runs from `beam::connect` (the connection's handshake included)
/// until the listener's output has taken everything and been shut down.
pub(crate) async fn run_lib(route: Route, mib: u64) -> anyhow::Result<()> {
    let (config, relay) = setup(route).await?;
    let passphrase = Passphrase::generate();
    let listener = node(&passphrase.listener_key(), &[beam::ALPN], &config).await?;
    let connector = node(&passphrase.connector_key(), &[], &config).await?;
    let output = Counter::default();
    let listening = {
        let (listener, passphrase, output) = (listener.clone(), passphrase.clone(), output.clone());
        tokio::spawn(async move {
            let pipe = beam::accept(&listener, &passphrase).await?;
            pipe.pipe(tokio::io::empty(), output).await
        })
    };
    let to = peer_addr(&listener, relay.as_ref()).await?;
    let relay_before = relay.as_ref().map_or(0, |r| r.received());
    let cpu = Cpu::now()?;
    let start = Instant::now();
    let pipe = beam::connect(&connector, &passphrase, Some(to)).await?;
    let connected = start.elapsed();
    let sent = pipe.pipe(Source::new(mib * MIB), tokio::io::sink()).await?;
    let received = listening.await??;
    let cpu = Cpu::now()?.own_since(cpu);
    let counted = output.get();
    ensure!(
        sent.sent == mib * MIB && received.received == mib * MIB && counted.bytes == mib * MIB,
        "sent {} bytes, the listener received {} and wrote {}, of {}",
        sent.sent,
        received.received,
        counted.bytes,
        mib * MIB
    );
    let end = counted
        .shut
        .context("the listener's output was not shut down")?;
    let seconds = end.duration_since(start).as_secs_f64();
    let mut row = rate("beam-lib", route.name(), mib, seconds);
    row.insert(
        "connect_ms".into(),
        json!(round(connected.as_secs_f64() * 1e3, 2)),
    );
    row.insert("cpu_s".into(), json!(round(cpu, 2)));
    row.insert(
        "relayed".into(),
        relayed(relay.as_ref(), relay_before, mib * MIB),
    );
    connector.close().await;
    listener.close().await;
    emit(row);
    Ok(())
}

/// Status lines of one `atek beam` process, each with when it came.
#[derive(Debug, Clone, Default)]
struct Lines(Arc<Mutex<Vec<(Instant, String)>>>);

impl Lines {
    /// Reads `stderr` to its end, keeping every line; `first` (if any) gets the first line
    /// that `pick` returns something for, as soon as it comes.
    fn drain(
        &self,
        stderr: ChildStderr,
        pick: impl Fn(&str) -> Option<String> + Send + 'static,
        first: Option<tokio::sync::oneshot::Sender<(Instant, String)>>,
    ) {
        let lines = self.clone();
        tokio::spawn(async move {
            let mut first = first;
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let at = Instant::now();
                if let Some(found) = pick(&line)
                    && let Some(tx) = first.take()
                {
                    let _ = tx.send((at, found));
                }
                lines.lock().push((at, line));
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, String)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the first line containing `text` came.
    fn when(&self, text: &str) -> Option<Instant> {
        self.lock()
            .iter()
            .find(|(_, l)| l.contains(text))
            .map(|(at, _)| *at)
    }

    fn text(&self) -> String {
        self.lock()
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The passphrase in the listener's line `  atek beam <passphrase>`.
fn passphrase_in(line: &str) -> Option<String> {
    let rest = line
        .trim_start_matches('▶')
        .trim()
        .strip_prefix("atek beam ")?;
    Passphrase::parse(rest).ok().map(|p| p.to_text())
}

/// Waits for `child` (whose output has ended) for at most `limit`, then the CPU its process
/// used, from this process's waited-for children's times.
async fn reap(
    child: &mut Child,
    name: &str,
    lines: &Lines,
    limit: Duration,
) -> anyhow::Result<f64> {
    let before = Cpu::now()?.children;
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => status.with_context(|| format!("waiting for the {name}"))?,
        Err(_) => {
            let _ = child.kill().await;
            bail!(
                "the {name} did not exit within {limit:?}:\n{}",
                lines.text()
            );
        }
    };
    if !status.success() {
        bail!("the {name} failed ({status}):\n{}", lines.text());
    }
    Ok(Cpu::now()?.children - before)
}

/// `beam`: the `atek` binary at `atek`, twice, through a relay this process starts on
/// 127.0.0.1: `atek beam --relay URL --relay-quic-port PORT --relay-insecure --no-public`
/// (the listener: it makes the passphrase, waits, and writes what it receives to its stdout, which is counted
/// here), then `atek beam PASSPHRASE …` (the connector: its stdin is fed `mib` MiB from
/// here). The clock runs from starting the listener until its stdout ends; both must then
/// exit with status 0.
pub(crate) async fn run_cli(atek: &Path, mib: u64, limit: Duration) -> anyhow::Result<()> {
    let relay = Relay::start().await?;
    let url = relay.url.to_string();
    // The relay's own QUIC port for address discovery, as a user would pass it for a relay
    // not on the default one.
    let quic_port = relay
        .quic_port()
        .context("the relay serves no QUIC address discovery")?
        .to_string();
    let net = [
        "--relay",
        url.as_str(),
        "--relay-quic-port",
        quic_port.as_str(),
        "--relay-insecure",
        "--no-public",
    ];
    let relay_before = relay.received();
    let cpu = Cpu::now()?;

    let start = Instant::now();
    let mut listener = Command::new(atek)
        .arg("beam")
        .args(net)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", atek.display()))?;
    let listener_lines = Lines::default();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    listener_lines.drain(
        listener.stderr.take().context("the listener's stderr")?,
        passphrase_in,
        Some(ready_tx),
    );
    let mut stdout = listener.stdout.take().context("the listener's stdout")?;
    let counting = tokio::spawn(async move {
        let mut buf = vec![0u8; MIB as usize];
        let (mut n, mut first) = (0u64, None);
        loop {
            let k = stdout.read(&mut buf).await?;
            if k == 0 {
                return Ok::<_, std::io::Error>((n, first, Instant::now()));
            }
            first.get_or_insert_with(Instant::now);
            n += k as u64;
        }
    });
    let (ready, passphrase) = match tokio::time::timeout(limit, ready_rx).await {
        Ok(Ok(found)) => found,
        _ => {
            let _ = listener.kill().await;
            bail!(
                "the listener printed no passphrase:\n{}",
                listener_lines.text()
            );
        }
    };

    let mut connector = Command::new(atek)
        .arg("beam")
        .arg(&passphrase)
        .args(net)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", atek.display()))?;
    let connector_started = Instant::now();
    let connector_lines = Lines::default();
    connector_lines.drain(
        connector.stderr.take().context("the connector's stderr")?,
        |_| None,
        None,
    );
    let mut stdin = connector.stdin.take().context("the connector's stdin")?;
    let feeding = tokio::spawn(async move {
        let data = block();
        for _ in 0..mib {
            stdin.write_all(&data).await?;
        }
        stdin.shutdown().await
        // Dropping stdin closes the pipe: the connector's end of input.
    });

    let counted = tokio::time::timeout(limit, counting).await;
    let (n, first, end) = match counted {
        Ok(counted) => counted?.context("reading the listener's stdout")?,
        Err(_) => bail!(
            "the beam did not end within {limit:?}; listener:\n{}\nconnector:\n{}",
            listener_lines.text(),
            connector_lines.text()
        ),
    };
    let listener_cpu = reap(&mut listener, "listener", &listener_lines, limit).await?;
    let connector_cpu = reap(&mut connector, "connector", &connector_lines, limit).await?;
    let exited = Instant::now();
    if let Err(e) = feeding.await? {
        note(&format!("feeding the connector: {e}"));
    }
    let own_cpu = Cpu::now()?.own_since(cpu);
    ensure!(
        n == mib * MIB,
        "the listener wrote {n} bytes of {}; listener:\n{}\nconnector:\n{}",
        mib * MIB,
        listener_lines.text(),
        connector_lines.text()
    );

    let since = |at: Instant| round(at.duration_since(start).as_secs_f64(), 3);
    let seconds = end.duration_since(start).as_secs_f64();
    let mut row = rate("beam", "relay", mib, seconds);
    let first = first.unwrap_or(end);
    row.insert(
        "transfer_mib_s".into(),
        json!(round(
            mib as f64 / end.duration_since(first).as_secs_f64(),
            1
        )),
    );
    // When each step came, in seconds after the listener was started.
    row.insert(
        "phases".into(),
        json!({
            "listener_ready": since(ready),
            "connector_started": since(connector_started),
            "connector_connected": connector_lines.when("Success!").map(since),
            "listener_connected": listener_lines.when("Success!").map(since),
            "first_byte": since(first),
            "last_byte": since(end),
            "both_exited": since(exited),
        }),
    );
    row.insert(
        "cpu_s".into(),
        json!({
            "listener": round(listener_cpu, 2),
            "connector": round(connector_cpu, 2),
            "bench": round(own_cpu, 2),
        }),
    );
    row.insert(
        "relayed".into(),
        relayed(Some(&relay), relay_before, mib * MIB),
    );
    emit(row);
    Ok(())
}
