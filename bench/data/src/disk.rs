//! `atek-data-bench disk`: what the disk alone does for atek-log's write pattern, the
//! ceiling the `atek-log` row of `bench/log/run.sh` is read against.
//!
//! The log's write targets are absolute, and this shared virtual disk's fdatasync latency
//! is not (it moves by ±40% over minutes). So the disk is measured in the same run, between
//! the other systems, doing only what atek-log's `FileStorage` does to the `log` file for
//! one group: a pwrite of the group's frame at the file's end, then `fdatasync`. The file
//! is allocated 4 MiB at a time ahead of its end with `fallocate` (mode 0), as
//! `FileStorage::preallocate` does, so most syncs commit no new file size. There is no
//! hashing, no signing, no index or tree cache and no writer thread: each write and sync is
//! made and timed on the calling thread.
//!
//! - `single`: `--single` frames of one 1 KiB entry (1,228 bytes), each timed: writes/s,
//!   p50 and p99 (the row's unit is appends/s, to sit in the log's table).
//! - `batch100`: `--batches` frames of 100 such entries (103,000 bytes): entries/s, 100 per
//!   write.
//!
//! The frame bytes are made before the clock starts: a frame's fixed parts, and the
//! benchmark's 1 KiB values ([`value_text`]) where the entries go.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::workload::{
    BATCH, Counts, Latencies, System, VALUE_BYTES, Workload, emit, store_dir, value_text,
};

/// How durable a write is once it returns.
const DURABILITY: &str = "D1: pwrite + fdatasync into a preallocated file (the disk's ceiling for atek-log's write pattern, no hashing, signing or threads)";
/// How far the file is allocated ahead of its end, as atek-log's `FileStorage` does
/// (`PREALLOCATE` in crates/atek-log/src/storage/file.rs).
const PREALLOCATE: u64 = 4 << 20;
/// The bytes of a writer's frame besides its entries (docs/log-format.md §6.1): header 10
/// (magic, version, flags, body length), run count 4, one run's first index and entry
/// count 12, extra node count 4 (none), head flag 1, signed tree head 137, checksum 32.
const FRAME_FIXED: usize = 10 + 4 + 12 + 4 + 1 + 137 + 32;
/// Each entry in a frame: its length (u32) and its bytes.
const ENTRY_IN_FRAME: usize = 4 + VALUE_BYTES;
/// The first frame of a log (no runs, the empty tree's signed head): header 10, run count
/// 4, extra node count 4, head flag 1, head 137, checksum 32. Written untimed, as
/// `Log::create` does.
const FIRST_FRAME: usize = 10 + 4 + 4 + 1 + 137 + 32;

/// The size of a writer's frame of `entries` 1 KiB entries: 1,228 bytes for one, 103,000
/// for 100 (100 × (4 + 1024) + 12 + 10 + 4 + 4 + 1 + 137 + 32).
const fn frame_len(entries: usize) -> usize {
    FRAME_FIXED + entries * ENTRY_IN_FRAME
}

/// One workload of `atek-data-bench disk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum DiskWorkload {
    /// One frame of one 1 KiB entry per write + fdatasync, each timed: appends/s, p50, p99.
    Single,
    /// One frame of 100 entries per write + fdatasync: entries/s.
    Batch100,
}

fn system() -> System {
    System {
        name: "disk".into(),
        durability: DURABILITY.into(),
    }
}

/// A file written as atek-log's `FileStorage` writes its `log`: frames at the end,
/// preallocated ahead, one `fdatasync` per frame.
struct AppendFile {
    file: File,
    end: u64,
    allocated: u64,
    /// False once the file system refused to preallocate (then we append without, as
    /// atek-log does).
    can_preallocate: bool,
    syncs: u64,
}

impl AppendFile {
    /// A new file `store/log`, holding the log's first frame, synced (untimed).
    fn create(store: &Path) -> anyhow::Result<Self> {
        let path = store.join("log");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        File::open(store)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("fsync of {}", store.display()))?;
        let mut f = AppendFile {
            file,
            end: 0,
            allocated: 0,
            can_preallocate: true,
            syncs: 0,
        };
        f.append(&frame(0, 0))?;
        f.syncs = 0;
        Ok(f)
    }

    /// `FileStorage::preallocate`: the file allocated to `end` rounded up to 4 MiB.
    fn preallocate(&mut self, end: u64) {
        if end <= self.allocated || !self.can_preallocate {
            return;
        }
        let target = end.next_multiple_of(PREALLOCATE);
        match rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), 0, target) {
            Ok(()) => self.allocated = target,
            Err(_) => self.can_preallocate = false,
        }
    }

    /// One group: allocate ahead if needed, pwrite `bytes` at the end, fdatasync.
    fn append(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.preallocate(self.end + bytes.len() as u64);
        self.file
            .write_all_at(bytes, self.end)
            .context("pwrite of a frame")?;
        self.file.sync_data().context("fdatasync")?;
        self.end += bytes.len() as u64;
        self.syncs += 1;
        Ok(())
    }

    /// The row fields that say what was written.
    fn fields(&self, frame_bytes: usize) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("frame_bytes", frame_bytes.into()),
            ("syncs", self.syncs.into()),
            ("preallocated", self.can_preallocate.into()),
        ]
    }
}

/// A writer's frame of `entries` entries from entry `first` on: the magic, the entries'
/// lengths and bytes where the encoder puts them, zeros for the other fixed parts (their
/// values do not matter to the disk; their size does). `entries == 0` gives the log's
/// first frame.
fn frame(first: u32, entries: u32) -> Vec<u8> {
    if entries == 0 {
        let mut out = vec![0u8; FIRST_FRAME];
        out[..4].copy_from_slice(b"ALOG");
        return out;
    }
    let len = frame_len(entries as usize);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"ALOG");
    out.resize(10 + 4 + 12, 0);
    for i in first..first + entries {
        let text = value_text(i);
        out.extend_from_slice(&(text.len() as u32).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out.resize(len, 0);
    out
}

/// Runs the workloads, one fresh folder per workload under `dir`.
pub(crate) fn run(dir: &Path, workloads: &[DiskWorkload], counts: &Counts) -> anyhow::Result<()> {
    let system = system();
    let mut plan = workloads.to_vec();
    plan.sort();
    plan.dedup();
    for workload in plan {
        match workload {
            DiskWorkload::Single => single(dir, &system, counts)?,
            DiskWorkload::Batch100 => batch100(dir, &system, counts)?,
        }
    }
    Ok(())
}

fn single(dir: &Path, system: &System, counts: &Counts) -> anyhow::Result<()> {
    let mut file = AppendFile::create(&store_dir(dir, "single")?)?;
    let frames: Vec<Vec<u8>> = (0..counts.single).map(|i| frame(i, 1)).collect();
    let mut latencies = Latencies::with_capacity(counts.single);
    let (n, elapsed, cut) = timed(&mut file, &frames, counts, Some(&mut latencies))?;
    let mut extra = file.fields(frame_len(1));
    extra.push((
        "how",
        "pwrite of a 1-entry frame at the end + fdatasync, each timed".into(),
    ));
    emit(
        system.single("appends/s", n, elapsed, cut, latencies),
        &extra,
    )
}

fn batch100(dir: &Path, system: &System, counts: &Counts) -> anyhow::Result<()> {
    let mut file = AppendFile::create(&store_dir(dir, "batch100")?)?;
    let frames: Vec<Vec<u8>> = (0..counts.batches)
        .map(|b| frame(b * BATCH, BATCH))
        .collect();
    let (writes, elapsed, cut) = timed(&mut file, &frames, counts, None)?;
    let n = writes * u64::from(BATCH);
    let mut extra = file.fields(frame_len(BATCH as usize));
    extra.push((
        "how",
        "pwrite of a 100-entry frame at the end + fdatasync".into(),
    ));
    emit(
        system.rate(Workload::Batch100, "entries/s", n, elapsed, cut),
        &extra,
    )
}

/// Appends `frames` one by one until the deadline: (frames written, time taken, cut).
fn timed(
    file: &mut AppendFile,
    frames: &[Vec<u8>],
    counts: &Counts,
    mut latencies: Option<&mut Latencies>,
) -> anyhow::Result<(u64, Duration, bool)> {
    let deadline = counts.deadline();
    let start = Instant::now();
    let mut n = 0u64;
    for f in frames {
        if Instant::now() >= deadline {
            break;
        }
        let t = Instant::now();
        file.append(f)?;
        if let Some(l) = latencies.as_deref_mut() {
            l.push(t.elapsed());
        }
        n += 1;
    }
    Ok((n, start.elapsed(), n < frames.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_size_of_atek_logs() {
        assert_eq!(frame_len(1), 1_228);
        assert_eq!(frame_len(100), 103_000);
        assert_eq!(frame(3, 1).len(), 1_228);
        assert_eq!(frame(0, 100).len(), 103_000);
        assert_eq!(frame(0, 0).len(), FIRST_FRAME);
    }

    // The sizes above against atek-log's own encoder: a log of one append, then one batch
    // of 100, closed (which trims the preallocated space) is exactly these three frames.
    #[test]
    fn frames_are_as_large_as_atek_log_writes_them() {
        let dir = std::env::temp_dir().join(format!("atek-disk-frames-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let log = atek_log::Log::create(&dir, atek_core::SecretKey::generate()).unwrap();
            log.append(value_text(0).into_bytes()).await.unwrap();
            log.append_batch((1..=BATCH).map(|i| value_text(i).into_bytes()).collect())
                .await
                .unwrap();
            log.close().await.unwrap();
        });
        let len = std::fs::metadata(dir.join("log")).unwrap().len();
        assert_eq!(len, (FIRST_FRAME + frame_len(1) + frame_len(100)) as u64);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writes_frames_at_the_end_and_preallocates() {
        let dir = std::env::temp_dir().join(format!("atek-disk-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = store_dir(&dir, "s").unwrap();
        let mut f = AppendFile::create(&store).unwrap();
        f.append(&frame(0, 1)).unwrap();
        f.append(&frame(1, 1)).unwrap();
        assert_eq!(f.end, (FIRST_FRAME + 2 * frame_len(1)) as u64);
        assert_eq!(f.syncs, 2);
        let mut second = vec![0u8; frame_len(1)];
        f.file
            .read_exact_at(&mut second, (FIRST_FRAME + frame_len(1)) as u64)
            .unwrap();
        assert_eq!(second, frame(1, 1));
        if f.can_preallocate {
            assert_eq!(f.allocated, PREALLOCATE);
            assert_eq!(
                std::fs::metadata(store.join("log")).unwrap().len(),
                PREALLOCATE
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
