//! atek-log's file log (`atek_log::Log`) on the workloads of `bench/log/run.sh`.
//!
//! Each store is a log made by `Log::create` in a fresh folder with a fresh writer key.
//! Entries are the benchmark's 1 KiB values as JSON text ([`value_text`], the bytes of
//! [`value_json`](crate::workload::value_json)), made before the clock starts. `single`
//! awaits each `Log::append`; `concurrent32` is 32 tokio tasks, each awaiting its own
//! appends (the writer thread commits whatever is waiting as one group: one signed head,
//! one fdatasync); `batch100` awaits one `Log::append_batch` of 100 entries at a time.
//! `open` builds a log (untimed, in large batches), closes it and times `Log::open`, with
//! the log's files in the page cache (warm) and just evicted from it (cold).
//! `replicate1k` and `replicate64k` replicate a whole log into a durable replica over
//! loopback TCP (`replicate.rs`).
//!
//! The rows carry the store's counters (`StorageStats`: groups, syncs, bytes written to the
//! log file and to its caches) of the timed workload.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use atek_core::SecretKey;
use atek_log::{Log, StorageStats};
use serde_json::{Map, Value};

use crate::replicate::ReplicateCounts;
use crate::workload::{
    BATCH, Claims, Counts, Latencies, System, WRITERS, Workload, dir_bytes, emit, note, round,
    store_dir, value_text, written_so_far,
};

/// How durable an append is once it resolves.
const DURABILITY: &str = "D1: acknowledged after fdatasync (atek-log file log, group commit)";
/// Entries per `append_batch` while `open` builds its log (about 10 MiB per group).
const BUILD_BATCH: u32 = 10_000;
/// Where a store keeps its log: a folder of its own, so the store's folder holds only it.
const LOG_DIR: &str = "log";

/// One workload of `atek-data-bench log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum LogWorkload {
    /// One writer, each append awaited: appends/s, p50 and p99.
    Single,
    /// Bytes on disk per entry after `single`, and bytes handed to write calls.
    Bytes,
    /// 32 writers at once: total appends/s.
    Concurrent32,
    /// `append_batch` of 100 entries: entries/s.
    Batch100,
    /// Opening a log of `--open-entries` entries, warm and cold: rows `open_warm` and
    /// `open_cold`, in ms.
    Open,
    /// Verified replication of a log of `--replicate-mib` MiB of 1 KiB entries into a
    /// durable replica over loopback TCP: MB/s.
    #[value(name = "replicate1k")]
    Replicate1k,
    /// The same with 64 KiB entries.
    #[value(name = "replicate64k")]
    Replicate64k,
    /// Every workload above.
    All,
}

/// The counts of the `open` workload.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct OpenCounts {
    /// Entries of the log that `open` builds (untimed) and opens again.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) open_entries: u32,
    /// Timed opens of `open`, warm and as many cold (at least 1 each).
    #[arg(long, default_value_t = 3)]
    pub(crate) open_repeats: u32,
}

/// The workloads asked for, in the order they run (`all` expanded, duplicates dropped).
fn plan_order(asked: &[LogWorkload]) -> Vec<LogWorkload> {
    let mut out: Vec<LogWorkload> = if asked.contains(&LogWorkload::All) {
        vec![
            LogWorkload::Single,
            LogWorkload::Bytes,
            LogWorkload::Concurrent32,
            LogWorkload::Batch100,
            LogWorkload::Open,
            LogWorkload::Replicate1k,
            LogWorkload::Replicate64k,
        ]
    } else {
        asked.to_vec()
    };
    out.sort();
    out.dedup();
    out
}

/// Runs the workloads against atek-log, one fresh log per workload under `dir`.
pub(crate) fn run(
    dir: &Path,
    workloads: &[LogWorkload],
    counts: &Counts,
    open: &OpenCounts,
    replicate: &ReplicateCounts,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(run_all(
        dir,
        &plan_order(workloads),
        counts,
        open,
        replicate,
    ))
}

fn system() -> System {
    System {
        name: "atek-log".into(),
        durability: DURABILITY.into(),
    }
}

/// A new log in `dir/log`, with a fresh writer key.
fn create(store: &Path) -> anyhow::Result<(Log, SecretKey)> {
    let key = SecretKey::generate();
    let log = Log::create(store.join(LOG_DIR), key.clone())
        .with_context(|| format!("creating a log in {}", store.display()))?;
    Ok((log, key))
}

fn entry(i: u32) -> Vec<u8> {
    value_text(i).into_bytes()
}

/// The store's counters, as row fields.
fn stats_fields(stats: &StorageStats) -> Vec<(&'static str, Value)> {
    vec![
        ("groups", stats.groups.into()),
        ("syncs", stats.syncs.into()),
        ("log_bytes", stats.log_bytes.into()),
        ("cache_bytes", stats.cache_bytes.into()),
        ("checkpoints", stats.checkpoints.into()),
    ]
}

/// What the store did between two readings of its counters.
fn stats_diff(before: &StorageStats, after: &StorageStats) -> StorageStats {
    StorageStats {
        groups: after.groups - before.groups,
        syncs: after.syncs - before.syncs,
        log_bytes: after.log_bytes - before.log_bytes,
        cache_bytes: after.cache_bytes - before.cache_bytes,
        checkpoints: after.checkpoints - before.checkpoints,
    }
}

/// The log holds exactly `n` entries.
fn check_len(log: &Log, n: u64) -> anyhow::Result<()> {
    if log.len() != n {
        bail!("the log holds {} entries, not {n}", log.len());
    }
    Ok(())
}

async fn run_all(
    dir: &Path,
    plan: &[LogWorkload],
    counts: &Counts,
    open: &OpenCounts,
    replicate: &ReplicateCounts,
) -> anyhow::Result<()> {
    let system = system();

    if plan.contains(&LogWorkload::Single) || plan.contains(&LogWorkload::Bytes) {
        let store = store_dir(dir, "single")?;
        let (log, _) = create(&store)?;
        let entries: Vec<Vec<u8>> = (0..counts.single).map(entry).collect();
        let stats_before = log.storage_stats().await?;
        let written_before = written_so_far();
        let mut latencies = Latencies::with_capacity(counts.single);
        let deadline = counts.deadline();
        let start = Instant::now();
        let mut n = 0u64;
        for e in entries {
            if Instant::now() >= deadline {
                break;
            }
            let t = Instant::now();
            log.append(e).await?;
            latencies.push(t.elapsed());
            n += 1;
        }
        let elapsed = start.elapsed();
        let cut = n < u64::from(counts.single);
        let stats = stats_diff(&stats_before, &log.storage_stats().await?);
        check_len(&log, n)?;
        if plan.contains(&LogWorkload::Single) {
            let mut extra = stats_fields(&stats);
            extra.push(("how", "Log::append awaited, one at a time".into()));
            emit(
                system.single("appends/s", n, elapsed, cut, latencies),
                &extra,
            )?;
        }
        log.close().await?;
        drop(log);
        if plan.contains(&LogWorkload::Bytes) {
            let written = written_before.zip(written_so_far()).map(|(a, b)| b - a);
            emit(
                system.bytes(n, dir_bytes(&store)?, written),
                &stats_fields(&stats),
            )?;
        }
    }

    if plan.contains(&LogWorkload::Concurrent32) {
        let store = store_dir(dir, "concurrent32")?;
        let (log, _) = create(&store)?;
        let entries: Arc<Vec<Vec<u8>>> = Arc::new((0..counts.concurrent).map(entry).collect());
        let claims = Arc::new(Claims::new(counts.concurrent, counts.deadline()));
        let stats_before = log.storage_stats().await?;
        let start = Instant::now();
        let mut writers = tokio::task::JoinSet::new();
        for _ in 0..WRITERS {
            let (log, entries, claims) = (log.clone(), entries.clone(), claims.clone());
            writers.spawn(async move {
                let mut n = 0u64;
                while let Some(i) = claims.claim() {
                    log.append(entries[i as usize].clone()).await?;
                    n += 1;
                }
                anyhow::Ok(n)
            });
        }
        let mut n = 0;
        while let Some(done) = writers.join_next().await {
            n += done.context("a writer task failed")??;
        }
        let elapsed = start.elapsed();
        let stats = stats_diff(&stats_before, &log.storage_stats().await?);
        check_len(&log, n)?;
        let row = system.rate(
            Workload::Concurrent32,
            "appends/s",
            n,
            elapsed,
            claims.cut(),
        );
        let mut extra = stats_fields(&stats);
        extra.push(("how", "32 tokio tasks, each awaiting its appends".into()));
        emit(row, &extra)?;
        log.close().await?;
    }

    if plan.contains(&LogWorkload::Batch100) {
        let store = store_dir(dir, "batch100")?;
        let (log, _) = create(&store)?;
        let total = counts.batches * BATCH;
        let batches: Vec<Vec<Vec<u8>>> = (0..counts.batches)
            .map(|b| (b * BATCH..(b + 1) * BATCH).map(entry).collect())
            .collect();
        let stats_before = log.storage_stats().await?;
        let deadline = counts.deadline();
        let start = Instant::now();
        let mut n = 0u64;
        for batch in batches {
            if Instant::now() >= deadline {
                break;
            }
            let range = log.append_batch(batch).await?;
            n += range.end - range.start;
        }
        let elapsed = start.elapsed();
        let stats = stats_diff(&stats_before, &log.storage_stats().await?);
        check_len(&log, n)?;
        let row = system.rate(
            Workload::Batch100,
            "entries/s",
            n,
            elapsed,
            n < u64::from(total),
        );
        let mut extra = stats_fields(&stats);
        extra.push(("how", "Log::append_batch of 100 entries, awaited".into()));
        emit(row, &extra)?;
        log.close().await?;
    }

    if plan.contains(&LogWorkload::Open) {
        measure_open(dir, &system, open).await?;
    }

    let replica_system = System {
        name: system.name.clone(),
        durability: crate::replicate::DURABILITY.into(),
    };
    for (workload, name, size) in [
        (LogWorkload::Replicate1k, "replicate1k", 1 << 10),
        (LogWorkload::Replicate64k, "replicate64k", 64 << 10),
    ] {
        if plan.contains(&workload) {
            crate::replicate::measure(dir, &replica_system, name, size, counts, replicate).await?;
        }
    }
    Ok(())
}

/// `open`: builds a log of `open.open_entries` entries, closes it, then times `Log::open`
/// warm and cold, `open.open_repeats` times each, after one unmeasured open.
async fn measure_open(dir: &Path, system: &System, open: &OpenCounts) -> anyhow::Result<()> {
    let store = store_dir(dir, "open")?;
    let entries = open.open_entries;
    let (log, key) = create(&store)?;
    note(
        system,
        &format!("building a log of {entries} entries (untimed)"),
    );
    let mut i = 0;
    while i < entries {
        let end = i.saturating_add(BUILD_BATCH).min(entries);
        log.append_batch((i..end).map(entry).collect()).await?;
        i = end;
    }
    check_len(&log, entries.into())?;
    log.close().await?;
    drop(log);
    let log_dir = store.join(LOG_DIR);
    let store_bytes = dir_bytes(&log_dir)?;

    // The first open in a process pays for more than opening (code paged in, the first
    // thread): not measured.
    let first = Log::open(&log_dir, key.clone())?;
    first.close().await?;
    drop(first);

    for (row_name, cold) in [("open_warm", false), ("open_cold", true)] {
        let mut times = Vec::new();
        for _ in 0..open.open_repeats.max(1) {
            if cold {
                evict_from_page_cache(&log_dir)?;
            }
            let start = Instant::now();
            let log = Log::open(&log_dir, key.clone())
                .with_context(|| format!("opening the log in {}", log_dir.display()))?;
            times.push(start.elapsed());
            check_len(&log, entries.into())?;
            log.close().await?;
        }
        let row = open_row(system, row_name, entries, &times, store_bytes);
        let how = if cold {
            "the same after fsync + POSIX_FADV_DONTNEED on every file of the log; median of the repeats"
        } else {
            "Log::open(dir, key) until it returns, files in the page cache; median of the repeats"
        };
        emit(row, &[("how", how.into())])?;
    }
    Ok(())
}

/// A row of `open`: the median of `times` in ms, each time, and the log's size.
fn open_row(
    system: &System,
    name: &str,
    entries: u32,
    times: &[Duration],
    store_bytes: u64,
) -> Map<String, Value> {
    let mut latencies = Latencies::with_capacity(times.len() as u32);
    for t in times {
        latencies.push(*t);
    }
    let (p50_us, _) = latencies.p50_p99();
    let mut row = system.row(name, "ms", p50_us / 1000.0);
    row.insert("n".into(), entries.into());
    row.insert("records".into(), entries.into());
    row.insert("repeats".into(), times.len().into());
    let runs_ms: Vec<Value> = times
        .iter()
        .map(|t| round(t.as_secs_f64() * 1000.0).into())
        .collect();
    row.insert("runs_ms".into(), runs_ms.into());
    row.insert("store_bytes".into(), store_bytes.into());
    row
}

/// Drops the files under `dir` from the page cache: `fsync` (dirty pages cannot be
/// dropped) then `posix_fadvise(POSIX_FADV_DONTNEED)` on each. Nothing else on the machine
/// is touched; a virtual disk may still hold them in the host's cache.
fn evict_from_page_cache(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            evict_from_page_cache(&path)?;
            continue;
        }
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        file.sync_all()
            .with_context(|| format!("fsync of {}", path.display()))?;
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)
            .with_context(|| format!("posix_fadvise of {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_expands_in_running_order() {
        assert_eq!(
            plan_order(&[LogWorkload::Open, LogWorkload::Single, LogWorkload::Open]),
            vec![LogWorkload::Single, LogWorkload::Open]
        );
        assert_eq!(plan_order(&[LogWorkload::All]).len(), 7);
    }

    #[test]
    fn entries_are_the_values_as_json_text() {
        let e = entry(7);
        assert_eq!(e.len(), crate::workload::VALUE_BYTES);
        assert_eq!(
            serde_json::from_slice::<Value>(&e).unwrap(),
            crate::workload::value_json(7)
        );
    }

    #[test]
    fn open_rows_give_the_median_in_ms() {
        let times = [3, 1, 2].map(Duration::from_millis);
        let row = open_row(&system(), "open_warm", 10, &times, 123);
        assert_eq!(row["workload"], "open_warm");
        assert_eq!(row["unit"], "ms");
        assert_eq!(row["value"], 2.0);
        assert_eq!(row["records"], 10);
        assert_eq!(row["runs_ms"], serde_json::json!([3.0, 1.0, 2.0]));
    }
}
