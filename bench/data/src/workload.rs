//! What every system runs: the workloads, their keys and 1 KiB values, the counts, and the
//! JSON rows they print.
//!
//! Keys, values and the order of random gets come from the same small functions as in
//! `bench/lib/data.mjs`, so hyperbee, hypercore, SQLite and ADB all store the same bytes
//! under the same keys and read them back in the same order.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

/// The size of every value, as JSON text: `{"data":"…"}` with a 1013-character string.
pub(crate) const VALUE_BYTES: usize = 1024;
/// The characters of the string field.
const FIELD_CHARS: usize = VALUE_BYTES - r#"{"data":""}"#.len();
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Writers of the `concurrent32` workload.
pub(crate) const WRITERS: u32 = 32;
/// Entries per batch of the `batch100` workload.
pub(crate) const BATCH: u32 = 100;
/// The seed of the random gets' order.
const GET_SEED: u32 = 42;

/// One workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Workload {
    /// One writer, each write awaited: writes/s, p50 and p99.
    Single,
    /// Bytes on disk per entry after `single`, and bytes handed to write calls.
    Bytes,
    /// 32 writers at once: total writes/s.
    Concurrent32,
    /// Batches of 100: entries/s.
    Batch100,
    /// Random gets over the prefilled records: gets/s.
    Get,
    /// A full range scan of the prefilled records: records/s.
    Scan,
    /// Every workload above.
    All,
}

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Single => "single",
            Workload::Bytes => "bytes",
            Workload::Concurrent32 => "concurrent32",
            Workload::Batch100 => "batch100",
            Workload::Get => "get",
            Workload::Scan => "scan",
            Workload::All => "all",
        }
    }
}

/// The workloads asked for, in the order they run (`all` expanded, duplicates dropped).
pub(crate) fn plan_order(asked: &[Workload]) -> Vec<Workload> {
    let mut out: Vec<Workload> = if asked.contains(&Workload::All) {
        vec![
            Workload::Single,
            Workload::Bytes,
            Workload::Concurrent32,
            Workload::Batch100,
            Workload::Get,
            Workload::Scan,
        ]
    } else {
        asked.to_vec()
    };
    out.sort();
    out.dedup();
    out
}

/// The counts, shared by every system (`--single` …; see `main.rs`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Counts {
    /// Writes of the `single` workload (and so of `bytes`).
    #[arg(long, default_value_t = 2000)]
    pub(crate) single: u32,
    /// Writes of the `concurrent32` workload, shared by the 32 writers.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) concurrent: u32,
    /// Batches of the `batch100` workload.
    #[arg(long, default_value_t = 100)]
    pub(crate) batches: u32,
    /// Records written (untimed) before `get` and `scan`.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) records: u32,
    /// Gets of the `get` workload.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) gets: u32,
    /// Records per page of the `scan` workload, where the API pages (ADB, hyperbee).
    #[arg(long, default_value_t = 1000)]
    pub(crate) page: u32,
    /// Stop any timed loop after this many seconds; the row then says `"cut": true` and
    /// gives the count it did.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) max_seconds: f64,
}

impl Counts {
    /// When a timed loop that starts now must stop.
    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs_f64(self.max_seconds.max(0.001))
    }
}

/// The key of entry `i`: 8 hex digits of `i` times an odd constant (mod 2^32), so a
/// bijection that spreads consecutive entries over the key space.
pub(crate) fn key(i: u32) -> String {
    format!("{:08x}", i.wrapping_mul(0x9e37_79b1))
}

/// xorshift32, the same in `bench/lib/data.mjs`.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u32);

impl Rng {
    pub(crate) fn new(seed: u32) -> Self {
        let s = seed.wrapping_mul(0x85eb_ca6b) ^ 0x2545_f491;
        Rng(if s == 0 { 1 } else { s })
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    pub(crate) fn below(&mut self, n: u32) -> u32 {
        self.next_u32() % n
    }
}

/// The string field of entry `i`'s value: 1013 characters from [a-z0-9].
pub(crate) fn field(i: u32) -> String {
    let mut rng = Rng::new(i);
    (0..FIELD_CHARS)
        .map(|_| char::from(ALPHABET[rng.below(36) as usize]))
        .collect()
}

/// Entry `i`'s value as JSON text: exactly [`VALUE_BYTES`] bytes.
pub(crate) fn value_text(i: u32) -> String {
    format!(r#"{{"data":"{}"}}"#, field(i))
}

/// Entry `i`'s value as a JSON object (for ADB).
pub(crate) fn value_json(i: u32) -> Value {
    json!({ "data": field(i) })
}

/// Entry `i` of `size` bytes (at least 8) of the replication workloads: `i` as a big-endian
/// u64, then the words of `Rng::new(i)`, little-endian (bytes that do not compress).
pub(crate) fn replicate_entry(i: u32, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size.max(8));
    out.extend_from_slice(&u64::from(i).to_be_bytes());
    let mut rng = Rng::new(i);
    while out.len() < size {
        let word = rng.next_u32().to_le_bytes();
        let take = (size - out.len()).min(4);
        out.extend_from_slice(&word[..take]);
    }
    out
}

/// The entries the random gets read, in order: `gets` indexes below `records`.
pub(crate) fn get_order(records: u32, gets: u32) -> Vec<u32> {
    let mut rng = Rng::new(GET_SEED);
    (0..gets).map(|_| rng.below(records.max(1))).collect()
}

/// Hands out entry numbers to concurrent writers until `n` or the deadline.
#[derive(Debug)]
pub(crate) struct Claims {
    next: AtomicU32,
    n: u32,
    deadline: Instant,
}

impl Claims {
    pub(crate) fn new(n: u32, deadline: Instant) -> Self {
        Claims {
            next: AtomicU32::new(0),
            n,
            deadline,
        }
    }

    /// The next entry to write, or `None` once all are claimed or time is up.
    pub(crate) fn claim(&self) -> Option<u32> {
        if Instant::now() >= self.deadline {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.n).then_some(i)
    }

    /// Whether the deadline stopped the writers before `n`.
    pub(crate) fn cut(&self) -> bool {
        self.next.load(Ordering::Relaxed) < self.n
    }
}

/// A fresh, empty directory for one store: `dir/name`.
pub(crate) fn store_dir(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if path.exists() && path.read_dir()?.next().is_some() {
        bail!(
            "{} is not empty: give a fresh --dir, results must not include old data",
            path.display()
        );
    }
    std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok(path)
}

/// The total size of the files under `dir`.
pub(crate) fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += dir_bytes(&entry.path())?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

/// The bytes this process has handed to write calls so far (`wchar` of /proc/self/io), if
/// the kernel says.
pub(crate) fn written_so_far() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Latencies of awaited writes, for p50 and p99.
#[derive(Debug, Default)]
pub(crate) struct Latencies(Vec<Duration>);

impl Latencies {
    pub(crate) fn with_capacity(n: u32) -> Self {
        Latencies(Vec::with_capacity(n as usize))
    }

    pub(crate) fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// The `q` quantile (nearest rank) in µs.
    fn quantile_us(sorted: &[Duration], q: f64) -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1].as_secs_f64() * 1e6
    }

    /// The median (p50) and p99, in µs.
    pub(crate) fn p50_p99(mut self) -> (f64, f64) {
        self.0.sort_unstable();
        (
            Self::quantile_us(&self.0, 0.50),
            Self::quantile_us(&self.0, 0.99),
        )
    }
}

/// Which system a row is about, and how durable its acknowledged writes are.
#[derive(Debug, Clone)]
pub(crate) struct System {
    /// `sqlite-full`, `adb`, ….
    pub(crate) name: String,
    /// `D1: …`, `D0: …` or `none: …`.
    pub(crate) durability: String,
}

impl System {
    /// The fields every row has: `workload` is the row's name (a [`Workload::name`], or
    /// another row such as the log's `open_warm`).
    pub(crate) fn row(&self, workload: &str, unit: &str, value: f64) -> Map<String, Value> {
        let mut row = Map::new();
        row.insert("system".into(), self.name.clone().into());
        row.insert("workload".into(), workload.into());
        row.insert("durability".into(), self.durability.clone().into());
        row.insert("unit".into(), unit.into());
        row.insert("value".into(), round(value).into());
        row.insert("entry_bytes".into(), VALUE_BYTES.into());
        row
    }

    /// A throughput row: `n` operations in `elapsed`.
    pub(crate) fn rate(
        &self,
        workload: Workload,
        unit: &str,
        n: u64,
        elapsed: Duration,
        cut: bool,
    ) -> Map<String, Value> {
        let secs = elapsed.as_secs_f64();
        let mut row = self.row(
            workload.name(),
            unit,
            if secs > 0.0 { n as f64 / secs } else { 0.0 },
        );
        row.insert("n".into(), n.into());
        row.insert("seconds".into(), round(secs).into());
        row.insert("cut".into(), cut.into());
        row
    }

    /// The `single` row (`unit`: writes/s, appends/s), with its latencies.
    pub(crate) fn single(
        &self,
        unit: &str,
        n: u64,
        elapsed: Duration,
        cut: bool,
        latencies: Latencies,
    ) -> Map<String, Value> {
        let mut row = self.rate(Workload::Single, unit, n, elapsed, cut);
        let (p50, p99) = latencies.p50_p99();
        row.insert("p50_us".into(), round(p50).into());
        row.insert("p99_us".into(), round(p99).into());
        row
    }

    /// The `bytes` row: the store's files after `entries` writes and a clean close, and
    /// what the process handed to write calls from the first write to the close.
    pub(crate) fn bytes(
        &self,
        entries: u64,
        file_bytes: u64,
        written: Option<u64>,
    ) -> Map<String, Value> {
        let per = |b: u64| round(b as f64 / entries.max(1) as f64);
        let mut row = self.row(Workload::Bytes.name(), "bytes/entry", per(file_bytes));
        row.insert("n".into(), entries.into());
        row.insert("file_bytes".into(), file_bytes.into());
        if let Some(w) = written {
            row.insert("written_bytes".into(), w.into());
            row.insert("written_per_entry".into(), per(w).into());
        }
        row
    }
}

/// Rounds to 3 decimals, enough for rates and µs.
pub(crate) fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Prints one row as a JSON line, at once.
pub(crate) fn emit(row: Map<String, Value>, extra: &[(&str, Value)]) -> anyhow::Result<()> {
    let mut row = row;
    for (k, v) in extra {
        row.insert((*k).into(), v.clone());
    }
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &Value::Object(row))?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// A progress note on stderr (stdout carries only rows).
pub(crate) fn note(system: &System, what: &str) {
    eprintln!("[{}] {what}", system.name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_one_kib_of_json() {
        for i in [0, 1, 99_999] {
            let text = value_text(i);
            assert_eq!(text.len(), VALUE_BYTES);
            assert_eq!(serde_json::to_string(&value_json(i)).unwrap(), text);
        }
    }

    // The same numbers are checked in bench/lib/data.mjs's self-test: both sides must agree.
    #[test]
    fn keys_and_gets_match_the_javascript_side() {
        assert_eq!(key(0), "00000000");
        assert_eq!(key(1), "9e3779b1");
        assert_eq!(key(2), "3c6ef362");
        assert_eq!(&field(7)[..16], FIELD7_HEAD);
        assert_eq!(get_order(100_000, 3), GET3);
        assert_eq!(value_text(99_999).len(), VALUE_BYTES);
        let e = replicate_entry(7, 1024);
        assert_eq!(e.len(), 1024);
        assert_eq!(
            e[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            REPLICATE7_HEAD
        );
    }

    const FIELD7_HEAD: &str = "agijrvnvwzf6pi0w";
    const GET3: [u32; 3] = [48027, 82048, 49290];
    const REPLICATE7_HEAD: &str = "0000000000000007a079a1142ae93949";

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut l = Latencies::default();
        for us in 1..=100 {
            l.push(Duration::from_micros(us));
        }
        let (p50, p99) = l.p50_p99();
        assert_eq!((p50.round(), p99.round()), (50.0, 99.0));
    }

    #[test]
    fn all_expands_in_running_order() {
        assert_eq!(
            plan_order(&[Workload::Scan, Workload::Single, Workload::Scan]),
            vec![Workload::Single, Workload::Scan]
        );
        assert_eq!(plan_order(&[Workload::All]).len(), 6);
    }
}
