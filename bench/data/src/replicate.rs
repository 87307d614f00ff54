//! `replicate1k` and `replicate64k`: verified replication of a whole log over loopback TCP,
//! inside one process.
//!
//! A writer log of `--replicate-mib` MiB of entries of one size (1 KiB or 64 KiB,
//! [`replicate_entry`]) is built untimed in large batches. A second, empty store, a durable
//! replica (`Replica` on a `FileStorage`, which fdatasyncs each verified batch), then asks for
//! every entry over a TCP connection on 127.0.0.1: a [`ServerSession`] task serves
//! `Log::source` on the accepted stream, a [`ReaderSession`] drives the replica on the
//! connecting one. The clock runs from the connection made to the want answered in full
//! (`ReaderEvent::WantDone(0..n)`): every entry verified against the writer's signed head
//! and stored. The transport is plain TCP (no encryption).
//!
//! The row gives MB/s of entry bytes (1e6), entries/s, and the bytes that crossed the
//! connection (both ways) per entry byte.

use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use atek_core::SecretKey;
use atek_log::sync::{CloseReason, ReaderEvent, ReaderSession, ServerEvent, ServerSession};
use atek_log::{FileStorage, Log, LogSource, Replica, SignedTreeHead, Storage};
use serde_json::Value;
use tokio::io::AsyncReadExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::workload::{Counts, Rng, System, emit, note, replicate_entry, round};

/// How durable the replica is: what an entry it reports stored survives.
pub(crate) const DURABILITY: &str =
    "D1: the replica fdatasyncs each verified batch (atek-log FileStorage)";
/// Bytes taken from the socket per read, on both sides.
const READ_BUFFER: usize = 1 << 20;
/// Entry bytes per `append_batch` while the writer's log is built.
const BUILD_BATCH_BYTES: usize = 8 << 20;

/// The counts of the replication workloads.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ReplicateCounts {
    /// MiB of entries in the log that `replicate1k` and `replicate64k` replicate.
    #[arg(long, default_value_t = 64)]
    pub(crate) replicate_mib: u32,
}

/// What the serving side did.
#[derive(Debug)]
struct Served {
    bytes_sent: u64,
    frames: u64,
    closed: Option<CloseReason>,
}

/// One replication workload: `name` (`replicate1k`, `replicate64k`) with entries of
/// `entry_size` bytes, in a fresh folder `dir/name`.
pub(crate) async fn measure(
    dir: &Path,
    system: &System,
    name: &str,
    entry_size: usize,
    counts: &Counts,
    replicate: &ReplicateCounts,
) -> anyhow::Result<()> {
    let store = crate::workload::store_dir(dir, name)?;
    let total_bytes = u64::from(replicate.replicate_mib) << 20;
    let n = u32::try_from((total_bytes / entry_size as u64).max(1))
        .context("too many entries for --replicate-mib")?;
    let log = Log::create(store.join("writer"), SecretKey::generate())
        .with_context(|| format!("creating the writer's log in {}", store.display()))?;
    note(
        system,
        &format!("{name}: building a log of {n} entries of {entry_size} bytes (untimed)"),
    );
    let per_batch = u32::try_from((BUILD_BATCH_BYTES / entry_size).max(1)).unwrap_or(u32::MAX);
    let mut i = 0;
    while i < n {
        let end = i.saturating_add(per_batch).min(n);
        log.append_batch((i..end).map(|j| replicate_entry(j, entry_size)).collect())
            .await?;
        i = end;
    }
    ensure!(
        log.len() == u64::from(n),
        "the writer holds {} entries, not {n}",
        log.len()
    );

    let mut replica = Replica::with_storage(FileStorage::create(store.join("replica"))?, log.id())
        .context("creating the replica")?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let (source, heads) = (log.source(), log.watch());
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.context("accepting")?;
        serve(stream, source, heads).await
    });

    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let start = Instant::now();
    let deadline = counts.deadline();
    let pulled = pull(&mut stream, &mut replica, 0..u64::from(n), deadline.into()).await?;
    let elapsed = start.elapsed();
    let served = server.await.context("the server task failed")??;
    match &served.closed {
        Some(CloseReason::Remote {
            code: atek_log::sync::ReasonCode::Done,
            ..
        }) => {}
        other => bail!("the server's session ended with {other:?}, not the reader's close"),
    }

    // What the replica holds: the entries stored, each verified, and a few equal to the
    // writer's.
    let stored = pulled.stored;
    let held = replica.held();
    let expected: Vec<Range<u64>> = (stored > 0).then_some(0..stored).into_iter().collect();
    ensure!(
        held == expected,
        "the replica holds {held:?}, not {expected:?}"
    );
    if !pulled.cut {
        ensure!(stored == u64::from(n), "{stored} entries stored, not {n}");
        let head: Option<SignedTreeHead> = replica.head();
        ensure!(
            head == Some(log.head()),
            "the replica's head is not the writer's"
        );
    }
    let mut rng = Rng::new(stored as u32);
    let mut spot: Vec<u64> = vec![0, stored / 2, stored.saturating_sub(1)];
    spot.extend((0..5).map(|_| u64::from(rng.below(stored.max(1) as u32))));
    for &k in spot.iter().filter(|&&k| k < stored) {
        let got = replica.get(k)?;
        let want = replicate_entry(k as u32, entry_size);
        ensure!(
            got == want,
            "the replica's entry {k} differs from the writer's"
        );
    }
    let stats = replica.storage().stats();

    let secs = elapsed.as_secs_f64();
    let entry_bytes = stored * entry_size as u64;
    let wire = pulled.bytes_in + pulled.bytes_out;
    let rate = |x: f64| if secs > 0.0 { x / secs } else { 0.0 };
    let mut row = system.row(name, "MB/s", rate(entry_bytes as f64 / 1e6));
    for (k, v) in [
        ("entry_bytes", Value::from(entry_size)),
        ("n", stored.into()),
        ("seconds", round(secs).into()),
        ("cut", pulled.cut.into()),
        ("entries_per_s", round(rate(stored as f64)).into()),
        ("data_bytes", entry_bytes.into()),
        ("wire_bytes", wire.into()),
        ("wire_bytes_to_reader", pulled.bytes_in.into()),
        ("wire_bytes_to_server", pulled.bytes_out.into()),
        (
            "wire_per_entry_byte",
            (wire as f64 / entry_bytes.max(1) as f64).into(),
        ),
        ("frames_served", served.frames.into()),
        ("server_bytes_sent", served.bytes_sent.into()),
        ("batches_stored", pulled.batches.into()),
        ("replica_syncs", stats.syncs.into()),
        ("replica_log_bytes", stats.log_bytes.into()),
        ("replica_cache_bytes", stats.cache_bytes.into()),
    ] {
        row.insert(k.into(), v);
    }
    emit(
        row,
        &[(
            "how",
            "a ReaderSession pulls 0..n into Replica<FileStorage> from a ServerSession on \
             Log::source, over plain TCP on 127.0.0.1; from connect to WantDone(0..n)"
                .into(),
        )],
    )?;
    replica.close()?;
    log.close().await?;
    Ok(())
}

/// What the reading side did.
#[derive(Debug)]
struct Pulled {
    /// Entries stored, from 0.
    stored: u64,
    batches: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// The deadline stopped it before the want was done.
    cut: bool,
}

/// Asks for `want` and drives `replica` until every entry of it is stored (or the deadline
/// passes), then closes the session and reads the stream to its end.
async fn pull<S: Storage>(
    stream: &mut TcpStream,
    replica: &mut Replica<S>,
    want: Range<u64>,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Pulled> {
    let mut reader = ReaderSession::new(replica);
    reader.want(want.clone());
    let mut buf = vec![0u8; READ_BUFFER];
    let mut out = Pulled {
        stored: 0,
        batches: 0,
        bytes_in: 0,
        bytes_out: 0,
        cut: false,
    };
    loop {
        while let Some(frame) = reader.poll_transmit() {
            stream.write_all(&frame).await?;
            out.bytes_out += frame.len() as u64;
        }
        let mut done = false;
        while let Some(event) = reader.poll_event() {
            match event {
                ReaderEvent::Stored { range, .. } => {
                    out.stored += range.end - range.start;
                    out.batches += 1;
                }
                ReaderEvent::WantDone(r) if r == want => done = true,
                ReaderEvent::Closed(reason) => bail!("the session closed: {reason}"),
                ReaderEvent::Refused { range, reason, .. } => {
                    bail!("the server refused {range:?}: {reason:?}")
                }
                _ => {}
            }
        }
        if done {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            out.cut = true;
            break;
        }
        let read = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(read) => read.context("reading from the server")?,
            Err(_) => {
                out.cut = true;
                break;
            }
        };
        if read == 0 {
            reader.handle_eof();
            continue;
        }
        out.bytes_in += read as u64;
        reader.handle_input(&buf[..read], replica);
    }

    // A clean end: our Close, then whatever the server still sends, until it hangs up.
    reader.close();
    while let Some(frame) = reader.poll_transmit() {
        stream.write_all(&frame).await?;
    }
    stream.shutdown().await?;
    let drain_until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(drain_until, stream.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e).context("reading the rest from the server"),
            Err(_) => bail!("the server did not hang up after the close"),
        }
    }
    Ok(out)
}

/// Serves `source` on `stream` until the session ends: sends every frame the session has,
/// taking the reader's bytes between frames without waiting; when there is nothing to send,
/// waits for the reader or for a new head of the log.
async fn serve(
    mut stream: TcpStream,
    source: LogSource,
    mut heads: watch::Receiver<SignedTreeHead>,
) -> anyhow::Result<Served> {
    stream.set_nodelay(true)?;
    let mut session = ServerSession::new(source.id());
    let mut buf = vec![0u8; READ_BUFFER];
    let mut served = Served {
        bytes_sent: 0,
        frames: 0,
        closed: None,
    };
    let mut watching = true;
    let mut eof = false;
    loop {
        // The reader's bytes that are there already (a want, a close).
        while !eof && !session.is_closed() {
            match stream.try_read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    session.handle_eof();
                }
                Ok(k) => session.handle_input(&buf[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).context("reading from the reader"),
            }
        }
        if let Some(frame) = session.poll_transmit(&source) {
            stream.write_all(&frame).await?;
            served.frames += 1;
            served.bytes_sent += frame.len() as u64;
            continue;
        }
        if session.is_closed() || eof {
            break;
        }
        tokio::select! {
            ready = stream.readable() => ready?,
            changed = heads.changed(), if watching => watching = changed.is_ok(),
        }
    }
    while let Some(event) = session.poll_event() {
        let ServerEvent::Closed(reason) = event;
        served.closed = Some(reason);
    }
    stream.shutdown().await?;
    Ok(served)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer's memory log, served over loopback TCP to a memory replica: the session's
    /// result and the server's.
    async fn replicate_memory(entries: u32, deadline: tokio::time::Instant) -> (Pulled, Served) {
        let log = Log::open_memory(SecretKey::generate()).unwrap();
        log.append_batch((0..entries).map(|i| replicate_entry(i, 1024)).collect())
            .await
            .unwrap();
        let mut replica = Replica::memory(log.id());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (source, heads) = (log.source(), log.watch());
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            serve(stream, source, heads).await.unwrap()
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let pulled = pull(&mut stream, &mut replica, 0..entries.into(), deadline)
            .await
            .unwrap();
        let served = server.await.unwrap();
        let held = replica.held();
        if pulled.stored > 0 {
            assert_eq!(held.len(), 1);
            assert_eq!(held[0], 0..pulled.stored);
            let last = pulled.stored - 1;
            assert_eq!(
                replica.get(last).unwrap(),
                replicate_entry(last as u32, 1024)
            );
        } else {
            assert!(held.is_empty());
        }
        (pulled, served)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_whole_log_crosses_tcp_verified_and_the_reader_closes() {
        let far = tokio::time::Instant::now() + Duration::from_secs(60);
        let (pulled, served) = replicate_memory(3000, far).await;
        assert!(!pulled.cut);
        assert_eq!(pulled.stored, 3000);
        assert!(pulled.batches >= 3, "1 MiB per batch: {}", pulled.batches);
        assert!(pulled.bytes_in > 3000 * 1024);
        assert_eq!(served.bytes_sent, pulled.bytes_in);
        assert!(matches!(
            served.closed,
            Some(CloseReason::Remote {
                code: atek_log::sync::ReasonCode::Done,
                ..
            })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_passed_deadline_cuts_and_still_ends_cleanly() {
        let (pulled, served) = replicate_memory(3000, tokio::time::Instant::now()).await;
        assert!(pulled.cut);
        assert!(pulled.stored < 3000);
        assert!(served.closed.is_some());
    }
}
