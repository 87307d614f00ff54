//! A store in a directory: an append-only `log` file that is the only thing fsynced per
//! group, and caches derived from it (`index`, `tree`) made durable now and then under a
//! `checkpoint`. `docs/log-format.md` §6 describes the files; §7 how opening recovers.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::behind::WriteBehind;
use super::{EntryRun, Group, Seal, Storage, StorageStats, check_runs, derive_nodes};
use crate::ranges::RangeSet;
use crate::tree::{Peaks, tree_root};
use crate::wire::{Reader, Writer};
use crate::{ForkEvidence, Hash, LogError, NodeSource, SignedTreeHead, flat, frame};

/// How much of the `log` file is allocated ahead of its end.
const PREALLOCATE: u64 = 4 << 20;
/// Log bytes written between two checkpoints, by default.
const CHECKPOINT_EVERY: u64 = 4 << 20;
/// A sealed group's entries of at least this many bytes start going to disk before the
/// group is sealed (see [`start_writeback`]); below it the extra system call costs more
/// than the overlap gains.
const EARLY_WRITEBACK: usize = 32 << 10;
/// Bytes per `index` record: the entry's offset in `log` (u64 BE) and its length (u32 BE).
const INDEX_RECORD: u64 = 12;
const CHECKPOINT_MAGIC: &[u8; 4] = b"ACKP";
/// The version written; version 1 (dense stores only: no ranges, no extra nodes) is read too.
const CHECKPOINT_VERSION: u8 = 2;

/// A log in a directory. See the module's documentation in `docs/log-format.md`.
///
/// One process at a time: opening takes an exclusive `flock` on `lock`.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    log: File,
    /// The `index` cache, its writes held back until a checkpoint.
    index: WriteBehind,
    /// The `tree` cache, likewise.
    tree: WriteBehind,
    /// Holds the directory's `flock` for as long as the store is open.
    _lock: File,
    log_end: u64,
    /// How far the `log` file is allocated ([`PREALLOCATE`] ahead of `log_end`).
    allocated: u64,
    /// False once the file system refused to preallocate.
    can_preallocate: bool,
    /// The entries held.
    held: RangeSet,
    /// Nodes held that are not over held entries (a replica's proof siblings and the nodes
    /// above them): a node is held when all its entries are, or when it is in this set.
    extra: BTreeSet<u64>,
    head: Option<SignedTreeHead>,
    /// Log bytes appended since the last checkpoint.
    since_checkpoint: u64,
    checkpoint_every: u64,
    /// A write or sync failed mid-append: the files' state is unknown until reopened.
    broken: bool,
    /// A cache sync failed: no checkpoint may vouch for the caches any more this session.
    caches_suspect: bool,
    /// The checkpoint being written in the background, if any: its bytes, or why it failed.
    checkpointing: Option<std::thread::JoinHandle<Result<u64, LogError>>>,
    stats: StorageStats,
}

/// What the `checkpoint` file says.
#[derive(Debug)]
struct Checkpoint {
    log_offset: u64,
    held: RangeSet,
    extra: Vec<u64>,
    head: Option<SignedTreeHead>,
}

impl FileStorage {
    /// Creates an empty store in `dir` (made with mode 0700 if missing; it must not hold a
    /// log already). The caller appends the first group, with the empty head.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = dir.as_ref().to_path_buf();
        match fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
        {
            Ok(()) => {}
            Err(e) => return Err(io_err("create directory", &dir, e)),
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("chmod", &dir, e))?;
        let lock = lock_dir(&dir)?;
        if dir.join("log").exists() {
            return Err(LogError::AlreadyExists { path: dir });
        }
        let storage = Self::with_files(dir, lock, true)?;
        sync_dir(&storage.dir)?;
        Ok(storage)
    }

    /// Opens the store in `dir`, recovering from a crash: trusts the caches up to the
    /// checkpoint, re-derives them from the log's frames after it, and truncates a torn or
    /// damaged last frame (with a warning). Fails if the durable data does not verify.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.join("log").exists() {
            return Err(LogError::NotFound { path: dir });
        }
        let lock = lock_dir(&dir)?;
        let mut storage = Self::with_files(dir, lock, false)?;
        storage.recover()?;
        Ok(storage)
    }

    /// Sets how many log bytes may be appended between two checkpoints (default 4 MiB). A
    /// smaller interval makes opening after a crash read less and appends sync more often.
    pub fn set_checkpoint_interval(&mut self, bytes: u64) {
        self.checkpoint_every = bytes.max(1);
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn with_files(dir: PathBuf, lock: File, create: bool) -> Result<Self, LogError> {
        // The caches are derived data: a missing one is made again.
        let open = |name: &str| -> Result<File, LogError> {
            let path = dir.join(name);
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(create || name != "log")
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io_err("open", &path, e))
        };
        let log = open("log")?;
        let index = open("index")?;
        let tree = open("tree")?;
        let log_end = log
            .metadata()
            .map_err(|e| io_err("stat", &dir.join("log"), e))?
            .len();
        Ok(Self {
            dir,
            log,
            index: WriteBehind::new(index),
            tree: WriteBehind::new(tree),
            _lock: lock,
            log_end,
            allocated: log_end,
            can_preallocate: true,
            held: RangeSet::new(),
            extra: BTreeSet::new(),
            head: None,
            since_checkpoint: 0,
            checkpoint_every: CHECKPOINT_EVERY,
            broken: false,
            caches_suspect: false,
            checkpointing: None,
            stats: StorageStats::default(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    // ---- recovery ----

    fn recover(&mut self) -> Result<(), LogError> {
        let start = match self.read_checkpoint() {
            Some(cp) => {
                let offset = cp.log_offset;
                match self.trust_checkpoint(cp) {
                    Ok(()) => offset,
                    Err(reason) => {
                        tracing::warn!(
                            dir = %self.dir.display(),
                            %reason,
                            "log checkpoint not usable; rebuilding the caches from the whole log"
                        );
                        self.reset_caches()?;
                        0
                    }
                }
            }
            None => {
                self.reset_caches()?;
                0
            }
        };
        // A dense store (a writer's) re-derives its tree with the peaks alone.
        let mut peaks = match self.dense_len() {
            Some(len) => Some(Peaks::load(&*self, len)?),
            None => None,
        };
        self.scan(start, &mut peaks)?;
        let Some(head) = self.head else {
            if self.held.count() == 0 && self.extra.is_empty() {
                // Nothing was ever accepted: a replica before its first head, or a log
                // whose creation stopped before its first frame.
                return Ok(());
            }
            return Err(self.corrupt("the log holds entries but no signed head".to_owned()));
        };
        if let Err(e) = head.verify() {
            return Err(self.corrupt(format!("the last head does not verify: {e}")));
        }
        Ok(())
    }

    /// `Some(len)` when the entries held are exactly `0..len`.
    fn dense_len(&self) -> Option<u64> {
        match self.held.count() {
            0 => Some(0),
            1 if self.held.containing(0).is_some() => Some(self.held.end()),
            _ => None,
        }
    }

    /// Reads `checkpoint`; `None` if it is missing or damaged (then the whole log is read).
    fn read_checkpoint(&self) -> Option<Checkpoint> {
        let path = self.path("checkpoint");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the log checkpoint");
                return None;
            }
        };
        match decode_checkpoint(&bytes) {
            Ok(cp) => Some(cp),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "damaged log checkpoint ignored");
                None
            }
        }
    }

    /// Adopts the checkpoint if the caches and the log back it up: the files are long
    /// enough, and the head it names verifies against the tree read from `tree`.
    fn trust_checkpoint(&mut self, cp: Checkpoint) -> Result<(), String> {
        if cp.log_offset > self.log_end {
            return Err(format!(
                "it covers {} log bytes, the log has {}",
                cp.log_offset, self.log_end
            ));
        }
        let end = cp.held.end();
        let index_len = end * INDEX_RECORD;
        let nodes = cp
            .extra
            .iter()
            .map(|x| x + 1)
            .max()
            .unwrap_or(0)
            .max(flat::node_bound(end));
        let tree_len = nodes * 32;
        let (have_index, have_tree) = (file_len(self.index.file()), file_len(self.tree.file()));
        if have_index < index_len || have_tree < tree_len {
            return Err("the caches are shorter than it says".to_owned());
        }
        self.index.discard();
        self.tree.discard();
        self.index
            .file()
            .set_len(index_len)
            .map_err(|e| format!("truncating index: {e}"))?;
        self.tree
            .file()
            .set_len(tree_len)
            .map_err(|e| format!("truncating tree: {e}"))?;
        let head = cp.head.ok_or_else(|| "it names no head".to_owned())?;
        head.verify().map_err(|e| e.to_string())?;
        self.held = cp.held;
        self.extra = cp.extra.into_iter().collect();
        let root = tree_root(&*self, head.head.length).map_err(|e| e.to_string())?;
        if head.head.root != root {
            return Err("its head does not match the cached tree".to_owned());
        }
        self.head = Some(head);
        Ok(())
    }

    fn reset_caches(&mut self) -> Result<(), LogError> {
        self.index.discard();
        self.tree.discard();
        self.index
            .file()
            .set_len(0)
            .map_err(|e| io_err("truncate", &self.path("index"), e))?;
        self.tree
            .file()
            .set_len(0)
            .map_err(|e| io_err("truncate", &self.path("tree"), e))?;
        self.held = RangeSet::new();
        self.extra.clear();
        self.head = None;
        Ok(())
    }

    /// Reads frames from `offset` to the end of the log, re-deriving the caches. The first
    /// torn or damaged frame ends the log: it and everything after it are cut off.
    fn scan(&mut self, mut offset: u64, peaks: &mut Option<Peaks>) -> Result<(), LogError> {
        let mut log_id = self.head.map(|h| h.head.log_id);
        while offset < self.log_end {
            if self.preallocated_from(offset)? {
                // The zeros the log was preallocated with: its end, not damage.
                self.log
                    .set_len(offset)
                    .map_err(|e| io_err("truncate", &self.path("log"), e))?;
                self.log_end = offset;
                self.allocated = offset;
                break;
            }
            let (frame_len, decoded) = match self.read_frame(offset) {
                Ok(frame) => frame,
                Err(frame::FrameError::Bad(e)) => {
                    return Err(self.corrupt(format!("frame at offset {offset}: {e}")));
                }
                Err(frame::FrameError::Torn(reason)) => {
                    tracing::warn!(
                        path = %self.path("log").display(),
                        offset,
                        bytes_cut = self.log_end - offset,
                        %reason,
                        "the log ends in a torn or damaged frame; truncating it"
                    );
                    self.log
                        .set_len(offset)
                        .map_err(|e| io_err("truncate", &self.path("log"), e))?;
                    self.log
                        .sync_data()
                        .map_err(|e| io_err("fdatasync", &self.path("log"), e))?;
                    self.log_end = offset;
                    break;
                }
            };
            let group = decoded.group;
            check_runs(&self.held, &group.runs)
                .map_err(|e| self.corrupt(format!("frame at offset {offset}: {e}")))?;
            self.absorb(offset, &group, &decoded.entry_spans, peaks)?;
            if let Some(head) = &group.head {
                if *log_id.get_or_insert(head.head.log_id) != head.head.log_id {
                    return Err(self.corrupt(format!(
                        "frame at offset {offset} holds a head of another log"
                    )));
                }
                let root = match peaks {
                    Some(p) if p.len() == head.head.length => Ok(p.root()),
                    _ => tree_root(&*self, head.head.length),
                };
                if root.ok() != Some(head.head.root) {
                    return Err(self.corrupt(format!(
                        "frame at offset {offset}: its head's root is not the root of the tree held"
                    )));
                }
                self.head = group.head;
            }
            offset += frame_len;
            self.since_checkpoint += frame_len;
        }
        Ok(())
    }

    /// Takes in a frame read back from `log` at `offset`: its entries and the nodes they
    /// complete (with the peaks alone while the store stays dense), and its extra nodes.
    fn absorb(
        &mut self,
        offset: u64,
        group: &Group,
        entry_spans: &[(usize, u32)],
        peaks: &mut Option<Peaks>,
    ) -> Result<(), LogError> {
        let mut spans = entry_spans.iter();
        for run in &group.runs {
            let end = run.first_index + run.entries.len() as u64;
            let run_spans: Vec<(u64, (usize, u32))> = (run.first_index..end)
                .zip(spans.by_ref().copied())
                .collect();
            self.write_index(offset, &run_spans)?;
            let leaves: Vec<Hash> = run.entries.iter().map(|e| Hash::leaf(e)).collect();
            let mut nodes = Vec::with_capacity(2 * leaves.len());
            match peaks {
                Some(p) if p.len() == run.first_index => {
                    for leaf in &leaves {
                        p.append(*leaf, |x, h| nodes.push((x, h)));
                    }
                    self.held.insert(run.first_index..end);
                }
                _ => {
                    *peaks = None;
                    self.held.insert(run.first_index..end);
                    nodes = derive_nodes(&*self, &self.held, run.first_index, &leaves)?;
                }
            }
            self.write_nodes(&nodes)?;
        }
        self.write_nodes(&group.extra_nodes)?;
        self.note_extra(&group.extra_nodes);
        Ok(())
    }

    /// Adds to `extra` the nodes that are not over held entries.
    fn note_extra(&mut self, nodes: &[(u64, Hash)]) {
        for (x, _) in nodes {
            let (s, e) = flat::leaf_span(*x);
            if !self.held.covers(s..e) {
                self.extra.insert(*x);
            }
        }
    }

    /// Whether the log holds only zeros from `offset` on: the space
    /// [`FileStorage::append`] preallocated and a crash left behind (a clean close trims
    /// it, so this reads at most [`PREALLOCATE`] bytes, and only after a crash). A frame
    /// never starts with a zero byte.
    fn preallocated_from(&self, offset: u64) -> Result<bool, LogError> {
        let mut first = [0u8; 1];
        self.log
            .read_exact_at(&mut first, offset)
            .map_err(|e| io_err("read", &self.path("log"), e))?;
        if first[0] != 0 {
            return Ok(false);
        }
        let mut block = vec![0u8; 64 << 10];
        let mut at = offset;
        while at < self.log_end {
            let len = ((self.log_end - at) as usize).min(block.len());
            self.log
                .read_exact_at(&mut block[..len], at)
                .map_err(|e| io_err("read", &self.path("log"), e))?;
            if block[..len].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += len as u64;
        }
        Ok(true)
    }

    /// The length and contents of the frame at `offset`, or why there is no complete,
    /// undamaged one. A damaged frame followed by another frame is not a torn tail but
    /// damage in the middle of the log, which is never truncated away.
    fn read_frame(&self, offset: u64) -> Result<(u64, frame::Decoded), frame::FrameError> {
        use frame::FrameError::{Bad, Torn};
        let rest = self.log_end - offset;
        if rest < (frame::HEADER_LEN + frame::TRAILER_LEN) as u64 {
            return Err(Torn(format!("{rest} bytes are too few for a frame")));
        }
        let io = |e: std::io::Error| Bad(io_err("read", &self.path("log"), e));
        let mut header = [0u8; frame::HEADER_LEN];
        self.log.read_exact_at(&mut header, offset).map_err(io)?;
        let body = frame::body_len(&header)?;
        let total = (frame::HEADER_LEN + body + frame::TRAILER_LEN) as u64;
        if total > rest {
            return Err(Torn(format!(
                "the frame needs {total} bytes, {rest} are left"
            )));
        }
        let mut frame = vec![0u8; total as usize];
        self.log.read_exact_at(&mut frame, offset).map_err(io)?;
        match frame::decode(&frame) {
            Ok(decoded) => Ok((total, decoded)),
            Err(Torn(reason)) if total < rest => {
                let mut magic = [0u8; 4];
                self.log
                    .read_exact_at(&mut magic, offset + total)
                    .map_err(io)?;
                if &magic == frame::MAGIC {
                    Err(Bad(LogError::Decode {
                        what: "log frame",
                        reason: format!("{reason}, and another frame follows it"),
                    }))
                } else {
                    Err(Torn(reason))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Allocates the `log` file [`PREALLOCATE`] bytes at a time ahead of `end`, so most
    /// groups write into space the file already has: their fdatasync then does not also
    /// commit a new file size (about 1.3x more syncs per second here). The zeros after the
    /// last frame are the log's end to [`FileStorage::open`]; a clean close trims them.
    fn preallocate(&mut self, end: u64) {
        if end <= self.allocated || !self.can_preallocate {
            return;
        }
        let target = end.next_multiple_of(PREALLOCATE);
        match rustix::fs::fallocate(&self.log, rustix::fs::FallocateFlags::empty(), 0, target) {
            Ok(()) => self.allocated = target,
            Err(e) => {
                tracing::debug!(error = %e, "cannot preallocate the log; appending without");
                self.can_preallocate = false;
            }
        }
    }

    /// Gives back the preallocated space after the last frame.
    fn trim(&mut self) -> Result<(), LogError> {
        if self.allocated > self.log_end {
            self.log
                .set_len(self.log_end)
                .map_err(|e| io_err("truncate", &self.path("log"), e))?;
            self.allocated = self.log_end;
        }
        Ok(())
    }

    fn write_log(&self, bytes: &[u8], offset: u64) -> Result<(), LogError> {
        self.log
            .write_all_at(bytes, offset)
            .map_err(|e| io_err("write", &self.path("log"), e))
    }

    /// The rest of an append once its frame of `written` bytes is in the `log` file at
    /// `offset`: the caches, the one sync that makes the group durable, and the store's
    /// state. `entry_spans` are the frame's, for the entries of `runs` in order.
    #[allow(clippy::too_many_arguments)]
    fn commit_frame(
        &mut self,
        offset: u64,
        written: u64,
        entry_spans: &[(usize, u32)],
        runs: &[EntryRun],
        derived_nodes: &[(u64, Hash)],
        extra_nodes: &[(u64, Hash)],
        head: Option<SignedTreeHead>,
    ) -> Result<(), LogError> {
        let indexes = runs
            .iter()
            .flat_map(|r| r.first_index..r.first_index + r.entries.len() as u64);
        let records: Vec<(u64, (usize, u32))> = indexes.zip(entry_spans.iter().copied()).collect();
        self.write_index(offset, &records)?;
        self.write_nodes(derived_nodes)?;
        self.write_nodes(extra_nodes)?;
        self.log
            .sync_data()
            .map_err(|e| io_err("fdatasync", &self.path("log"), e))?;
        self.broken = false;

        self.log_end += written;
        for run in runs {
            self.held
                .insert(run.first_index..run.first_index + run.entries.len() as u64);
        }
        self.note_extra(extra_nodes);
        if head.is_some() {
            self.head = head;
        }
        self.since_checkpoint += written;
        self.stats.groups += 1;
        self.stats.syncs += 1;
        self.stats.log_bytes += written;
        if self.since_checkpoint >= self.checkpoint_every && !self.caches_suspect {
            // The group is durable whatever happens here; a failed checkpoint only means
            // the next open reads more of the log.
            self.start_background_checkpoint();
        }
        Ok(())
    }

    // ---- caches ----

    /// Writes the index records of entries of a frame at `frame_offset`: per entry, its
    /// index and where its bytes sit in the frame. Held back in memory (see
    /// [`WriteBehind`]) and never synced here: the caches are derived data.
    fn write_index(
        &mut self,
        frame_offset: u64,
        entries: &[(u64, (usize, u32))],
    ) -> Result<(), LogError> {
        let mut i = 0;
        while i < entries.len() {
            // One write per run of consecutive indexes.
            let first = entries[i].0;
            let mut w = Writer::with_capacity((entries.len() - i) * INDEX_RECORD as usize);
            let mut next = first;
            while i < entries.len() && entries[i].0 == next {
                let (off, len) = entries[i].1;
                w.u64(frame_offset + off as u64);
                w.u32(len);
                next += 1;
                i += 1;
            }
            let buf = w.into_vec();
            self.index
                .write_at(&buf, first * INDEX_RECORD)
                .map_err(|e| io_err("write", &self.path("index"), e))?;
            self.stats.cache_bytes += buf.len() as u64;
        }
        Ok(())
    }

    /// Writes nodes to the `tree` cache, held back in memory like the index records.
    fn write_nodes(&mut self, nodes: &[(u64, Hash)]) -> Result<(), LogError> {
        let mut nodes = nodes.to_vec();
        nodes.sort_unstable_by_key(|(x, _)| *x);
        nodes.dedup_by_key(|(x, _)| *x);
        let mut i = 0;
        while i < nodes.len() {
            // One write per run of consecutive indexes.
            let first = nodes[i].0;
            let mut buf = Vec::new();
            while i < nodes.len() && nodes[i].0 == first + (buf.len() / 32) as u64 {
                buf.extend_from_slice(nodes[i].1.as_bytes());
                i += 1;
            }
            self.tree
                .write_at(&buf, first * 32)
                .map_err(|e| io_err("write", &self.path("tree"), e))?;
            self.stats.cache_bytes += buf.len() as u64;
        }
        Ok(())
    }

    /// Starts a checkpoint on a thread of its own, so that its syncs (four of them) never
    /// hold up an append. Only one is written at a time: while the last one is still being
    /// written this does nothing, and the next group tries again.
    fn start_background_checkpoint(&mut self) {
        // A checkpoint that failed in the background leaves the caches suspect.
        if !self.finish_background_checkpoint(false) || self.caches_suspect {
            return;
        }
        let job = match self.prepare_checkpoint() {
            Ok(job) => job,
            Err(e) => {
                tracing::warn!(error = %e, "log checkpoint failed");
                return;
            }
        };
        // Counted from here: the bytes appended while it is written are the next one's.
        self.since_checkpoint = 0;
        match std::thread::Builder::new()
            .name("atek-log-checkpoint".to_owned())
            .spawn(move || job.run())
        {
            Ok(handle) => self.checkpointing = Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a checkpoint thread; checkpoints wait");
                // The job moved into the closure that failed to start: the caches are
                // flushed, so the next checkpoint (soon: nothing was counted) is cheap.
                self.since_checkpoint = self.checkpoint_every;
            }
        }
    }

    /// Takes the result of the checkpoint being written in the background, waiting for it
    /// when `wait` is set. True when none is being written any more.
    fn finish_background_checkpoint(&mut self, wait: bool) -> bool {
        let Some(handle) = self.checkpointing.take() else {
            return true;
        };
        if !wait && !handle.is_finished() {
            self.checkpointing = Some(handle);
            return false;
        }
        let result = handle.join().unwrap_or_else(|_| {
            Err(LogError::Storage {
                reason: "the checkpoint thread panicked".to_owned(),
            })
        });
        if let Err(e) = self.account_checkpoint(result) {
            tracing::warn!(error = %e, "log checkpoint failed");
        }
        true
    }

    /// Writes the held-back cache writes out and encodes the checkpoint of the state they
    /// describe; the returned job makes both durable.
    fn prepare_checkpoint(&mut self) -> Result<CheckpointJob, LogError> {
        let index_path = self.path("index");
        let tree_path = self.path("tree");
        let files = self
            .index
            .flush()
            .map_err(|e| io_err("write", &index_path, e))
            .and_then(|()| {
                self.tree
                    .flush()
                    .map_err(|e| io_err("write", &tree_path, e))
            })
            .and_then(|()| {
                let index = self.index.file().try_clone();
                let tree = self.tree.file().try_clone();
                Ok((
                    index.map_err(|e| io_err("duplicate", &index_path, e))?,
                    tree.map_err(|e| io_err("duplicate", &tree_path, e))?,
                ))
            });
        let (index, tree) = match files {
            Ok(files) => files,
            Err(e) => {
                // After a failed write the kernel may have dropped the pages: never vouch
                // for these caches again; the next open re-derives them from the last
                // checkpoint.
                self.caches_suspect = true;
                return Err(e);
            }
        };
        // Nodes that held entries now cover need no listing.
        let held = &self.held;
        self.extra.retain(|&x| {
            let (s, e) = flat::leaf_span(x);
            !held.covers(s..e)
        });
        let bytes = encode_checkpoint(&Checkpoint {
            log_offset: self.log_end,
            held: self.held.clone(),
            extra: self.extra.iter().copied().collect(),
            head: self.head,
        });
        Ok(CheckpointJob {
            dir: self.dir.clone(),
            index,
            tree,
            bytes,
        })
    }

    /// Counts a checkpoint written, or marks the caches suspect after one failed.
    fn account_checkpoint(&mut self, result: Result<u64, LogError>) -> Result<(), LogError> {
        match result {
            Ok(bytes) => {
                self.stats.cache_bytes += bytes;
                self.stats.checkpoints += 1;
                Ok(())
            }
            Err(e) => {
                // After a failed sync the kernel may have dropped the pages: as above.
                self.caches_suspect = true;
                Err(e)
            }
        }
    }

    fn corrupt(&self, reason: String) -> LogError {
        LogError::Corrupt {
            path: self.dir.clone(),
            reason,
        }
    }

    fn forks_path(&self) -> PathBuf {
        self.path("forks")
    }
}

/// Asks the kernel to start writing `len` bytes of `file` at `offset` to the disk now,
/// without waiting (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that the `fdatasync`
/// that follows finds most of the work done. It promises nothing about durability, so a
/// failure is ignored: the sync then does all of the work.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: usize) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range takes a file descriptor and three integers and touches no
    // memory of this process; the descriptor stays open for the call (borrowed from
    // `file`).
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc != 0 {
        tracing::trace!(error = %std::io::Error::last_os_error(), "sync_file_range failed");
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: usize) {}

impl NodeSource for FileStorage {
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError> {
        let (s, e) = flat::leaf_span(flat_index);
        if !self.held.covers(s..e) && !self.extra.contains(&flat_index) {
            return Ok(None);
        }
        let mut buf = [0u8; 32];
        self.tree
            .read_exact_at(&mut buf, flat_index * 32)
            .map_err(|e| io_err("read", &self.path("tree"), e))?;
        Ok(Some(Hash::from_bytes(buf)))
    }
}

impl Storage for FileStorage {
    fn append(&mut self, group: Group) -> Result<(), LogError> {
        if self.broken {
            return Err(LogError::Poisoned);
        }
        check_runs(&self.held, &group.runs)?;
        let encoded = frame::encode(&group)?;
        let offset = self.log_end;
        // Until the sync returns, the files' state is unknown.
        self.broken = true;
        self.preallocate(offset + encoded.bytes.len() as u64);
        self.write_log(&encoded.bytes, offset)?;
        self.commit_frame(
            offset,
            encoded.bytes.len() as u64,
            &encoded.entry_spans,
            &group.runs,
            &group.derived_nodes,
            &group.extra_nodes,
            group.head,
        )
    }

    /// Writes the frame in two parts: the header and entries first (handed to the disk at
    /// once when they are large), then, once `seal` has hashed them and signed the head,
    /// the head and the trailer. The disk writes the entries while the CPU seals them.
    fn append_sealed(&mut self, runs: Vec<EntryRun>, seal: &mut Seal<'_>) -> Result<(), LogError> {
        if self.broken {
            return Err(LogError::Poisoned);
        }
        check_runs(&self.held, &runs)?;
        let frame::Encoded {
            bytes: mut buf,
            entry_spans,
        } = frame::encode_prefix(&runs, 0, true)?;
        let prefix_len = buf.len();
        let offset = self.log_end;
        let total = prefix_len + frame::tail_len(0, true) + frame::TRAILER_LEN;
        self.broken = true;
        self.preallocate(offset + total as u64);
        // A large group's entries go to the disk while it is sealed; a small one is
        // written whole afterwards, in one system call.
        let early = prefix_len >= EARLY_WRITEBACK;
        if early {
            self.write_log(&buf, offset)?;
            start_writeback(&self.log, offset, prefix_len);
        }
        let mut sum = blake3::Hasher::new();
        sum.update(&buf);
        // A failed seal leaves the store broken: entries written past the log's end are a
        // torn frame to the next open, which cuts it.
        let (derived, head) = seal(&runs)?;
        let tail = frame::encode_tail(&[], Some(&head));
        sum.update(&tail);
        if early {
            buf.clear();
        }
        buf.extend_from_slice(&tail);
        buf.extend_from_slice(sum.finalize().as_bytes());
        if early {
            self.write_log(&buf, offset + prefix_len as u64)?;
        } else {
            self.write_log(&buf, offset)?;
        }
        self.commit_frame(
            offset,
            total as u64,
            &entry_spans,
            &runs,
            &derived,
            &[],
            Some(head),
        )
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, LogError> {
        if self.held.containing(index).is_none() {
            return Ok(None);
        }
        let mut rec = [0u8; INDEX_RECORD as usize];
        self.index
            .read_exact_at(&mut rec, index * INDEX_RECORD)
            .map_err(|e| io_err("read", &self.path("index"), e))?;
        let mut r = Reader::new("index record", &rec);
        let offset = r.u64()?;
        let len = r.u32()? as usize;
        if offset == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; len];
        self.log
            .read_exact_at(&mut buf, offset)
            .map_err(|e| io_err("read", &self.path("log"), e))?;
        Ok(Some(buf))
    }

    fn entries(&self, start: u64, end: u64, max_bytes: usize) -> Result<Vec<Vec<u8>>, LogError> {
        let Some(run) = self.held.containing(start) else {
            return Ok(Vec::new());
        };
        let end = end.min(run.end);
        if start >= end {
            return Ok(Vec::new());
        }
        // The index records in reads of up to 1,024, then one read per stretch of the log
        // where the entries sit back to back (one group's, separated by their 4-byte
        // lengths), up to `max_bytes`.
        let mut spans: Vec<(u64, usize)> = Vec::new();
        let mut bytes = 0usize;
        let mut at = start;
        while at < end && bytes < max_bytes {
            let count = (end - at).min(1024);
            let mut recs = vec![0u8; (count * INDEX_RECORD) as usize];
            self.index
                .read_exact_at(&mut recs, at * INDEX_RECORD)
                .map_err(|e| io_err("read", &self.path("index"), e))?;
            let mut r = Reader::new("index record", &recs);
            for _ in 0..count {
                if bytes >= max_bytes {
                    break;
                }
                let offset = r.u64()?;
                let len = r.u32()? as usize;
                if offset == 0 {
                    return Err(LogError::MissingEntry { index: at });
                }
                bytes += len;
                spans.push((offset, len));
                at += 1;
            }
        }
        let mut out = Vec::with_capacity(spans.len());
        let mut i = 0;
        while i < spans.len() {
            let first = spans[i].0;
            let mut j = i + 1;
            let mut stretch_end = first + spans[i].1 as u64;
            while j < spans.len() && spans[j].0 == stretch_end + 4 {
                stretch_end = spans[j].0 + spans[j].1 as u64;
                j += 1;
            }
            let mut buf = vec![0u8; (stretch_end - first) as usize];
            self.log
                .read_exact_at(&mut buf, first)
                .map_err(|e| io_err("read", &self.path("log"), e))?;
            for &(offset, len) in &spans[i..j] {
                let at = (offset - first) as usize;
                out.push(buf[at..at + len].to_vec());
            }
            i = j;
        }
        Ok(out)
    }

    fn len(&self) -> u64 {
        self.held.end()
    }

    fn held(&self) -> Vec<Range<u64>> {
        self.held.to_vec()
    }

    fn head(&self) -> Option<SignedTreeHead> {
        self.head
    }

    fn record_fork(&mut self, evidence: &ForkEvidence) -> Result<(), LogError> {
        let path = self.forks_path();
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_err("open", &path, e))?;
        let bytes = evidence.encode();
        let mut rec = Vec::with_capacity(4 + bytes.len());
        rec.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        rec.extend_from_slice(&bytes);
        file.write_all(&rec)
            .map_err(|e| io_err("write", &path, e))?;
        file.sync_data()
            .map_err(|e| io_err("fdatasync", &path, e))?;
        sync_dir(&self.dir)
    }

    fn forks(&self) -> Result<Vec<ForkEvidence>, LogError> {
        let path = self.forks_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &path, e)),
        };
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            // A torn last record (a crash while recording) is not evidence yet.
            let Some(record) = rest.get(4..4 + len) else {
                break;
            };
            out.push(ForkEvidence::decode(record)?);
            rest = &rest[4 + len..];
        }
        Ok(out)
    }

    fn checkpoint(&mut self) -> Result<(), LogError> {
        if self.broken {
            return Err(LogError::Poisoned);
        }
        // One in the background is waited for, and the one written here covers the rest.
        self.finish_background_checkpoint(true);
        self.trim()?;
        if self.caches_suspect || self.since_checkpoint == 0 {
            return Ok(());
        }
        let job = self.prepare_checkpoint()?;
        let result = job.run();
        self.account_checkpoint(result)?;
        self.since_checkpoint = 0;
        Ok(())
    }

    fn stats(&self) -> StorageStats {
        self.stats
    }
}

impl Drop for FileStorage {
    fn drop(&mut self) {
        // The checkpoint thread writes into the directory: it must be done before the lock
        // is released and another process may open the store.
        self.finish_background_checkpoint(true);
    }
}

/// What makes a checkpoint durable, off the store's own thread: the caches' files
/// (duplicated handles; their writes up to the checkpoint are already made) and the encoded
/// `checkpoint` file.
struct CheckpointJob {
    dir: PathBuf,
    index: File,
    tree: File,
    bytes: Vec<u8>,
}

impl CheckpointJob {
    /// Syncs the caches, then writes the `checkpoint` file beside the old one and renames
    /// it into place: a crash at any point leaves one complete checkpoint whose caches are
    /// durable. Returns the bytes written.
    fn run(self) -> Result<u64, LogError> {
        let path = |name: &str| self.dir.join(name);
        self.index
            .sync_data()
            .map_err(|e| io_err("fdatasync", &path("index"), e))?;
        self.tree
            .sync_data()
            .map_err(|e| io_err("fdatasync", &path("tree"), e))?;
        let tmp = path("checkpoint.tmp");
        let target = path("checkpoint");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err("open", &tmp, e))?;
        file.write_all(&self.bytes)
            .map_err(|e| io_err("write", &tmp, e))?;
        file.sync_data().map_err(|e| io_err("fdatasync", &tmp, e))?;
        fs::rename(&tmp, &target).map_err(|e| io_err("rename", &target, e))?;
        sync_dir(&self.dir)?;
        Ok(self.bytes.len() as u64)
    }
}

fn encode_checkpoint(cp: &Checkpoint) -> Vec<u8> {
    let mut w = Writer::with_capacity(
        4 + 1
            + 8
            + 1
            + SignedTreeHead::ENCODED_LEN
            + 8
            + 16 * cp.held.count()
            + 8 * cp.extra.len()
            + 32,
    );
    w.bytes(CHECKPOINT_MAGIC);
    w.u8(CHECKPOINT_VERSION);
    w.u64(cp.log_offset);
    match &cp.head {
        None => w.u8(0),
        Some(h) => {
            w.u8(1);
            h.encode_into(&mut w);
        }
    }
    w.u32(cp.held.count() as u32);
    for r in cp.held.iter() {
        w.u64(r.start);
        w.u64(r.end);
    }
    w.u32(cp.extra.len() as u32);
    for x in &cp.extra {
        w.u64(*x);
    }
    let mut bytes = w.into_vec();
    let sum = blake3::hash(&bytes);
    bytes.extend_from_slice(sum.as_bytes());
    bytes
}

fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, LogError> {
    let bad = |reason: &str| LogError::Decode {
        what: "checkpoint",
        reason: reason.to_owned(),
    };
    if bytes.len() < 32 {
        return Err(bad("too short"));
    }
    let (data, sum) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(data).as_bytes()[..] != sum[..] {
        return Err(bad("checksum mismatch"));
    }
    let mut r = Reader::new("checkpoint", data);
    if r.take(4)? != CHECKPOINT_MAGIC {
        return Err(bad("no checkpoint magic"));
    }
    let version = r.u8()?;
    let log_offset = r.u64()?;
    let mut held = RangeSet::new();
    let mut extra = Vec::new();
    let head = match version {
        // Version 1: a dense store of `len` entries.
        1 => {
            held.insert(0..r.u64()?);
            decode_head_flag(&mut r)?
        }
        2 => {
            let head = decode_head_flag(&mut r)?;
            for _ in 0..r.u32()? {
                let (start, end) = (r.u64()?, r.u64()?);
                if start >= end || start < held.end() || end > crate::MAX_LENGTH {
                    return Err(bad("its ranges are not in order"));
                }
                held.insert(start..end);
            }
            for _ in 0..r.u32()? {
                let x = r.u64()?;
                if x >= flat::node_bound(crate::MAX_LENGTH) {
                    return Err(bad("an extra node is out of range"));
                }
                extra.push(x);
            }
            head
        }
        version => {
            return Err(LogError::UnsupportedVersion {
                what: "checkpoint",
                version,
                supported: CHECKPOINT_VERSION,
            });
        }
    };
    r.finish()?;
    Ok(Checkpoint {
        log_offset,
        held,
        extra,
        head,
    })
}

fn decode_head_flag(r: &mut Reader<'_>) -> Result<Option<SignedTreeHead>, LogError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(SignedTreeHead::decode_from(r)?)),
        _ => Err(r.error("bad head flag".to_owned())),
    }
}

fn lock_dir(dir: &Path) -> Result<File, LogError> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io_err("open", &path, e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(LogError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(e) => Err(io_err("flock", &path, e.into())),
    }
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync", dir, e))
}

fn file_len(file: &File) -> u64 {
    file.metadata().map(|m| m.len()).unwrap_or(0)
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> LogError {
    LogError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
