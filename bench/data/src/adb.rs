//! ADB (`atek_db::Db`) on the journal [`open_journal`] gives, with its redb view in a file.
//!
//! Records are plain (no table, so no schema check) at `/bench/kv/{key}`. Each write parses
//! its path and awaits `Db::put`; `concurrent32` is 32 tokio tasks; `batch100` is 100 puts
//! awaited together (ADB has no batch call: its writer thread turns whatever is waiting into
//! one group commit). Gets go through `Db::get`, the scan through `Db::list` in pages, and
//! both hand back parsed JSON.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use atek_db::{Db, Journal, ListOpts, RecordPath, ViewLocation};
use futures_util::future::try_join_all;
use serde_json::Value;

use crate::workload::{
    BATCH, Claims, Counts, Latencies, System, WRITERS, Workload, dir_bytes, emit, get_order, key,
    note, plan_order, store_dir, value_json, written_so_far,
};

/// The log under every database this benchmark opens, and how durable an append is once
/// it returns (the label every row prints): atek-log's file log in `dir/log`, with a fresh
/// writer key. `dir` is a fresh, empty directory per store; everything written under it
/// counts in the `bytes` row.
fn open_journal(dir: &Path) -> anyhow::Result<(Arc<dyn Journal>, &'static str)> {
    let log = atek_log::Log::create(dir.join("log"), atek_core::SecretKey::generate())
        .with_context(|| format!("creating a log in {}", dir.display()))?;
    Ok((
        Arc::new(atek_db::LogJournal::new(log)),
        "D1: acknowledged after fdatasync (atek-log file log, group commit)",
    ))
}

/// Where a store keeps its view: beside its log.
const VIEW_FILE: &str = "view.redb";
/// The folder of the benchmark's records.
const PREFIX: &str = "/bench/kv";

/// Runs the workloads against ADB, one fresh database per write workload under `dir`.
pub(crate) fn run(dir: &Path, workloads: &[Workload], counts: &Counts) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(run_all(dir, &plan_order(workloads), counts))
}

fn open(store: &Path) -> anyhow::Result<(Db, System)> {
    let (journal, durability) = open_journal(store)?;
    let db = Db::open(journal, ViewLocation::File(store.join(VIEW_FILE)))
        .with_context(|| format!("opening a database in {}", store.display()))?;
    let system = System {
        name: "adb".into(),
        durability: durability.into(),
    };
    Ok((db, system))
}

fn path_of(i: u32) -> String {
    format!("{PREFIX}/{}", key(i))
}

async fn put(db: &Db, path: &str, value: Value) -> anyhow::Result<()> {
    let path = RecordPath::parse(path)?;
    db.put(&path, value).await?;
    Ok(())
}

async fn run_all(dir: &Path, plan: &[Workload], counts: &Counts) -> anyhow::Result<()> {
    if plan.contains(&Workload::Single) || plan.contains(&Workload::Bytes) {
        let store = store_dir(dir, "single")?;
        let (db, system) = open(&store)?;
        let writes: Vec<(String, Value)> = (0..counts.single)
            .map(|i| (path_of(i), value_json(i)))
            .collect();
        let written_before = written_so_far();
        let mut latencies = Latencies::with_capacity(counts.single);
        let deadline = counts.deadline();
        let start = Instant::now();
        let mut n = 0u64;
        for (path, value) in writes {
            if Instant::now() >= deadline {
                break;
            }
            let t = Instant::now();
            put(&db, &path, value).await?;
            latencies.push(t.elapsed());
            n += 1;
        }
        let elapsed = start.elapsed();
        let cut = n < u64::from(counts.single);
        if plan.contains(&Workload::Single) {
            emit(system.single("writes/s", n, elapsed, cut, latencies), &[])?;
        }
        db.close().await?;
        drop(db);
        if plan.contains(&Workload::Bytes) {
            let written = written_before.zip(written_so_far()).map(|(a, b)| b - a);
            emit(system.bytes(n, dir_bytes(&store)?, written), &[])?;
        }
    }

    if plan.contains(&Workload::Concurrent32) {
        let store = store_dir(dir, "concurrent32")?;
        let (db, system) = open(&store)?;
        let writes: Arc<Vec<(String, Value)>> = Arc::new(
            (0..counts.concurrent)
                .map(|i| (path_of(i), value_json(i)))
                .collect(),
        );
        let claims = Arc::new(Claims::new(counts.concurrent, counts.deadline()));
        let start = Instant::now();
        let mut writers = tokio::task::JoinSet::new();
        for _ in 0..WRITERS {
            let (db, writes, claims) = (db.clone(), writes.clone(), claims.clone());
            writers.spawn(async move {
                let mut n = 0u64;
                while let Some(i) = claims.claim() {
                    let (path, value) = &writes[i as usize];
                    put(&db, path, value.clone()).await?;
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
        let row = system.rate(Workload::Concurrent32, "writes/s", n, elapsed, claims.cut());
        emit(
            row,
            &[("how", "32 tokio tasks, each awaiting its puts".into())],
        )?;
        db.close().await?;
    }

    if plan.contains(&Workload::Batch100) {
        let store = store_dir(dir, "batch100")?;
        let (db, system) = open(&store)?;
        let total = counts.batches * BATCH;
        let writes: Vec<(String, Value)> =
            (0..total).map(|i| (path_of(i), value_json(i))).collect();
        let deadline = counts.deadline();
        let start = Instant::now();
        let mut n = 0u64;
        for batch in writes.chunks(BATCH as usize) {
            if Instant::now() >= deadline {
                break;
            }
            try_join_all(batch.iter().map(|(p, v)| put(&db, p, v.clone()))).await?;
            n += batch.len() as u64;
        }
        let elapsed = start.elapsed();
        let row = system.rate(
            Workload::Batch100,
            "entries/s",
            n,
            elapsed,
            n < u64::from(total),
        );
        emit(
            row,
            &[(
                "how",
                "100 puts awaited together (no batch API; the writer groups them)".into(),
            )],
        )?;
        db.close().await?;
    }

    if plan.contains(&Workload::Get) || plan.contains(&Workload::Scan) {
        let store = store_dir(dir, "read")?;
        let (db, system) = open(&store)?;
        note(
            &system,
            &format!("prefilling {} records (untimed)", counts.records),
        );
        let mut i = 0;
        while i < counts.records {
            let end = (i + 1000).min(counts.records);
            let db = &db;
            try_join_all(
                (i..end).map(|j| async move { put(db, &path_of(j), value_json(j)).await }),
            )
            .await?;
            i = end;
        }

        if plan.contains(&Workload::Get) {
            let paths: Vec<String> = get_order(counts.records, counts.gets)
                .into_iter()
                .map(path_of)
                .collect();
            let deadline = counts.deadline();
            let start = Instant::now();
            let mut n = 0u64;
            for p in &paths {
                if n.is_multiple_of(64) && Instant::now() >= deadline {
                    break;
                }
                let record = db
                    .get(&RecordPath::parse(p)?)?
                    .with_context(|| format!("get {p} found nothing"))?;
                check_value(&record.value)?;
                n += 1;
            }
            let elapsed = start.elapsed();
            let mut row = system.rate(
                Workload::Get,
                "gets/s",
                n,
                elapsed,
                n < u64::from(counts.gets),
            );
            row.insert("records".into(), counts.records.into());
            emit(row, &[])?;
        }

        if plan.contains(&Workload::Scan) {
            let prefix = RecordPath::parse(PREFIX)?;
            let deadline = counts.deadline();
            let start = Instant::now();
            let mut n = 0u64;
            let mut last: Option<String> = None;
            let mut cut = false;
            loop {
                let opts = ListOpts {
                    gt: last.take(),
                    limit: Some(counts.page.max(1) as usize),
                    ..ListOpts::default()
                };
                let page = db.list(&prefix, &opts)?;
                let Some(tail) = page.last() else { break };
                last = Some(tail.key.clone());
                for record in &page {
                    check_value(&record.value)?;
                }
                n += page.len() as u64;
                if Instant::now() >= deadline {
                    cut = n < u64::from(counts.records);
                    break;
                }
            }
            let elapsed = start.elapsed();
            if !cut && n != u64::from(counts.records) {
                bail!("scan found {n} records, not {}", counts.records);
            }
            let mut row = system.rate(Workload::Scan, "records/s", n, elapsed, cut);
            row.insert("records".into(), counts.records.into());
            emit(
                row,
                &[(
                    "how",
                    format!("Db::list in pages of {} (gt = last key)", counts.page).into(),
                )],
            )?;
        }
        db.close().await?;
    }
    Ok(())
}

/// A record read back is one of ours, whole.
fn check_value(value: &Value) -> anyhow::Result<()> {
    match value.get("data").and_then(Value::as_str) {
        Some(s) if s.len() + r#"{"data":""}"#.len() == crate::workload::VALUE_BYTES => Ok(()),
        _ => bail!("a record read back is not a benchmark value"),
    }
}
