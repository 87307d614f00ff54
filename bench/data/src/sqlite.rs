//! SQLite (bundled, WAL mode), one table `kv(k TEXT PRIMARY KEY, v BLOB)`: the reference
//! the issue measures ADB against.
//!
//! Every write is `INSERT OR REPLACE` with a cached prepared statement. Alone, each write is
//! its own transaction; `concurrent32` is 32 threads sharing one connection behind a mutex
//! (as in data-notes: SQLite has one writer at a time anyway); `batch100` is one
//! transaction per 100 writes. Gets and scans read the value as bytes, without parsing
//! the JSON.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context as _, bail};
use rusqlite::{Connection, params};
use serde_json::Value;

use crate::workload::{
    BATCH, Claims, Counts, Latencies, System, WRITERS, Workload, dir_bytes, emit, get_order, key,
    note, plan_order, store_dir, value_text, written_so_far,
};

/// `PRAGMA synchronous` in WAL mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Synchronous {
    /// The WAL is synced at every commit: a commit that returned survives a power loss.
    Full,
    /// The WAL is synced only at checkpoints: a commit that returned survives a crash of
    /// the process, not of the machine.
    Normal,
}

impl Synchronous {
    fn system(self) -> System {
        match self {
            Synchronous::Full => System {
                name: "sqlite-full".into(),
                durability: "D1: acknowledged after fsync (WAL, synchronous=FULL syncs the WAL at every commit)".into(),
            },
            Synchronous::Normal => System {
                name: "sqlite-normal".into(),
                durability: "D0: acknowledged after write(), no fsync (WAL, synchronous=NORMAL syncs only at checkpoints)".into(),
            },
        }
    }

    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

const INSERT: &str = "INSERT OR REPLACE INTO kv(k, v) VALUES (?1, ?2)";

/// Runs the workloads against SQLite, one fresh database per write workload under `dir`.
pub(crate) fn run(
    sync: Synchronous,
    dir: &Path,
    workloads: &[Workload],
    counts: &Counts,
) -> anyhow::Result<()> {
    let system = sync.system();
    let plan = plan_order(workloads);
    let version = rusqlite::version();
    let extra = [("sqlite_version", Value::from(version))];
    note(&system, &format!("SQLite {version}"));

    if plan.contains(&Workload::Single) || plan.contains(&Workload::Bytes) {
        let store = store_dir(dir, "single")?;
        let conn = open(&store, sync)?;
        let values: Vec<(String, String)> = (0..counts.single)
            .map(|i| (key(i), value_text(i)))
            .collect();
        let written_before = written_so_far();
        let mut latencies = Latencies::with_capacity(counts.single);
        let deadline = counts.deadline();
        let start = Instant::now();
        let mut n = 0u64;
        {
            let mut insert = conn.prepare_cached(INSERT)?;
            for (k, v) in &values {
                if Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                insert.execute(params![k, v.as_bytes()])?;
                latencies.push(t.elapsed());
                n += 1;
            }
        }
        let elapsed = start.elapsed();
        let cut = n < u64::from(counts.single);
        if plan.contains(&Workload::Single) {
            emit(
                system.single("writes/s", n, elapsed, cut, latencies),
                &extra,
            )?;
        }
        close(conn)?;
        if plan.contains(&Workload::Bytes) {
            let written = written_before.zip(written_so_far()).map(|(a, b)| b - a);
            emit(system.bytes(n, dir_bytes(&store)?, written), &extra)?;
        }
    }

    if plan.contains(&Workload::Concurrent32) {
        let store = store_dir(dir, "concurrent32")?;
        let conn = Mutex::new(open(&store, sync)?);
        let values: Vec<(String, String)> = (0..counts.concurrent)
            .map(|i| (key(i), value_text(i)))
            .collect();
        let claims = Claims::new(counts.concurrent, counts.deadline());
        let start = Instant::now();
        let done: Vec<anyhow::Result<u64>> = std::thread::scope(|s| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|_| {
                    s.spawn(|| -> anyhow::Result<u64> {
                        let mut n = 0;
                        while let Some(i) = claims.claim() {
                            let (k, v) = &values[i as usize];
                            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                            conn.prepare_cached(INSERT)?
                                .execute(params![k, v.as_bytes()])?;
                            n += 1;
                        }
                        Ok(n)
                    })
                })
                .collect();
            writers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a writer panicked")))
                })
                .collect()
        });
        let elapsed = start.elapsed();
        let n = done.into_iter().sum::<anyhow::Result<u64>>()?;
        let row = system.rate(Workload::Concurrent32, "writes/s", n, elapsed, claims.cut());
        emit(
            row,
            &[
                extra[0].clone(),
                ("how", "32 threads sharing one connection behind a mutex, each write its own transaction".into()),
            ],
        )?;
        close(conn.into_inner().unwrap_or_else(|e| e.into_inner()))?;
    }

    if plan.contains(&Workload::Batch100) {
        let store = store_dir(dir, "batch100")?;
        let mut conn = open(&store, sync)?;
        let total = counts.batches * BATCH;
        let values: Vec<(String, String)> = (0..total).map(|i| (key(i), value_text(i))).collect();
        let deadline = counts.deadline();
        let start = Instant::now();
        let mut n = 0u64;
        for batch in values.chunks(BATCH as usize) {
            if Instant::now() >= deadline {
                break;
            }
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(INSERT)?;
                for (k, v) in batch {
                    insert.execute(params![k, v.as_bytes()])?;
                }
            }
            tx.commit()?;
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
            &[
                extra[0].clone(),
                ("how", "one transaction per 100 writes".into()),
            ],
        )?;
        close(conn)?;
    }

    if plan.contains(&Workload::Get) || plan.contains(&Workload::Scan) {
        let store = store_dir(dir, "read")?;
        let mut conn = open(&store, sync)?;
        note(
            &system,
            &format!("prefilling {} records (untimed)", counts.records),
        );
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(INSERT)?;
            for i in 0..counts.records {
                insert.execute(params![key(i), value_text(i).as_bytes()])?;
            }
        }
        tx.commit()?;

        if plan.contains(&Workload::Get) {
            let keys: Vec<String> = get_order(counts.records, counts.gets)
                .into_iter()
                .map(key)
                .collect();
            let deadline = counts.deadline();
            let mut get = conn.prepare_cached("SELECT v FROM kv WHERE k = ?1")?;
            let start = Instant::now();
            let mut n = 0u64;
            let mut bytes = 0usize;
            for k in &keys {
                if n.is_multiple_of(64) && Instant::now() >= deadline {
                    break;
                }
                let v: Vec<u8> = get
                    .query_row(params![k], |r| r.get(0))
                    .with_context(|| format!("get {k}"))?;
                bytes += v.len();
                n += 1;
            }
            let elapsed = start.elapsed();
            check_bytes(bytes, n)?;
            let mut row = system.rate(
                Workload::Get,
                "gets/s",
                n,
                elapsed,
                n < u64::from(counts.gets),
            );
            row.insert("records".into(), counts.records.into());
            emit(row, &extra)?;
        }

        if plan.contains(&Workload::Scan) {
            let deadline = counts.deadline();
            let mut scan = conn.prepare("SELECT k, v FROM kv ORDER BY k")?;
            let start = Instant::now();
            let mut rows = scan.query([])?;
            let mut n = 0u64;
            let mut bytes = 0usize;
            let mut cut = false;
            while let Some(row) = rows.next()? {
                let k: String = row.get(0)?;
                let v: Vec<u8> = row.get(1)?;
                std::hint::black_box(&k);
                bytes += v.len();
                n += 1;
                if n.is_multiple_of(1024) && Instant::now() >= deadline {
                    cut = true;
                    break;
                }
            }
            let elapsed = start.elapsed();
            check_bytes(bytes, n)?;
            if !cut && n != u64::from(counts.records) {
                bail!("scan found {n} records, not {}", counts.records);
            }
            let mut row = system.rate(Workload::Scan, "records/s", n, elapsed, cut);
            row.insert("records".into(), counts.records.into());
            emit(
                row,
                &[
                    extra[0].clone(),
                    ("how", "one SELECT k, v ORDER BY k, values as bytes".into()),
                ],
            )?;
        }
        drop(conn);
    }
    Ok(())
}

fn open(dir: &Path, sync: Synchronous) -> anyhow::Result<Connection> {
    let path = dir.join("kv.sqlite");
    let conn = Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("SQLite did not switch to WAL mode (journal_mode is {mode})");
    }
    conn.execute_batch(&format!("PRAGMA synchronous={};", sync.pragma()))?;
    conn.execute_batch("CREATE TABLE kv(k TEXT PRIMARY KEY, v BLOB);")?;
    Ok(conn)
}

fn close(conn: Connection) -> anyhow::Result<()> {
    conn.close().map_err(|(_, e)| e)?;
    Ok(())
}

/// Every value read was a whole one.
fn check_bytes(bytes: usize, n: u64) -> anyhow::Result<()> {
    let want = n as usize * crate::workload::VALUE_BYTES;
    if bytes != want {
        bail!("read {bytes} bytes of values for {n} records, not {want}");
    }
    Ok(())
}
