//! A store in a directory: an append-only `log` file that is the only thing fsynced per
//! group, and caches derived from it (`index`, `tree`) made durable now and then under a
//! `checkpoint`. `docs/log-format.md` §6 describes the files; §7 how opening recovers.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Group, Storage, StorageStats, check_dense};
use crate::tree::Peaks;
use crate::wire::{Reader, Writer};
use crate::{ForkEvidence, Hash, LogError, NodeSource, SignedTreeHead, flat, frame};

/// Log bytes written between two checkpoints, by default.
const CHECKPOINT_EVERY: u64 = 4 << 20;
/// Bytes per `index` record: the entry's offset in `log` (u64 BE) and its length (u32 BE).
const INDEX_RECORD: u64 = 12;
const CHECKPOINT_MAGIC: &[u8; 4] = b"ACKP";
const CHECKPOINT_VERSION: u8 = 1;

/// A log in a directory. See the module's documentation in `docs/log-format.md`.
///
/// One process at a time: opening takes an exclusive `flock` on `lock`.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    log: File,
    index: File,
    tree: File,
    /// Holds the directory's `flock` for as long as the store is open.
    _lock: File,
    log_end: u64,
    len: u64,
    head: Option<SignedTreeHead>,
    /// Log bytes appended since the last checkpoint.
    since_checkpoint: u64,
    checkpoint_every: u64,
    /// A write or sync failed mid-append: the files' state is unknown until reopened.
    broken: bool,
    /// A cache sync failed: no checkpoint may vouch for the caches any more this session.
    caches_suspect: bool,
    stats: StorageStats,
}

/// What the `checkpoint` file says.
#[derive(Debug)]
struct Checkpoint {
    log_offset: u64,
    len: u64,
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
            index,
            tree,
            _lock: lock,
            log_end,
            len: 0,
            head: None,
            since_checkpoint: 0,
            checkpoint_every: CHECKPOINT_EVERY,
            broken: false,
            caches_suspect: false,
            stats: StorageStats::default(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    // ---- recovery ----

    fn recover(&mut self) -> Result<(), LogError> {
        let start = match self.read_checkpoint() {
            Some(cp) => match self.trust_checkpoint(&cp) {
                Ok(()) => cp.log_offset,
                Err(reason) => {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        %reason,
                        "log checkpoint not usable; rebuilding the caches from the whole log"
                    );
                    self.reset_caches()?;
                    0
                }
            },
            None => {
                self.reset_caches()?;
                0
            }
        };
        let mut peaks = Peaks::load(&*self, self.len)?;
        self.scan(start, &mut peaks)?;
        let Some(head) = self.head else {
            return Err(self
                .corrupt("the log holds no signed head (its creation did not finish)".to_owned()));
        };
        if head.head.length != self.len {
            return Err(self.corrupt(format!(
                "the last head covers {} entries, the log holds {}",
                head.head.length, self.len
            )));
        }
        if let Err(e) = head.verify() {
            return Err(self.corrupt(format!("the last head does not verify: {e}")));
        }
        if head.head.root != peaks.root() {
            return Err(self.corrupt(format!(
                "the last head's root is not the root of the {} entries held",
                self.len
            )));
        }
        Ok(())
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
    /// enough, and the head it names verifies against the peaks read from `tree`.
    fn trust_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), String> {
        if cp.log_offset > self.log_end {
            return Err(format!(
                "it covers {} log bytes, the log has {}",
                cp.log_offset, self.log_end
            ));
        }
        let index_len = cp.len * INDEX_RECORD;
        let tree_len = flat::node_bound(cp.len) * 32;
        let (have_index, have_tree) = (file_len(&self.index), file_len(&self.tree));
        if have_index < index_len || have_tree < tree_len {
            return Err("the caches are shorter than it says".to_owned());
        }
        self.index
            .set_len(index_len)
            .map_err(|e| format!("truncating index: {e}"))?;
        self.tree
            .set_len(tree_len)
            .map_err(|e| format!("truncating tree: {e}"))?;
        self.len = cp.len;
        let head = cp.head.ok_or_else(|| "it names no head".to_owned())?;
        head.verify().map_err(|e| e.to_string())?;
        let peaks = Peaks::load(&*self, cp.len).map_err(|e| e.to_string())?;
        if head.head.length != cp.len || head.head.root != peaks.root() {
            self.len = 0;
            return Err("its head does not match the cached tree".to_owned());
        }
        self.head = Some(head);
        Ok(())
    }

    fn reset_caches(&mut self) -> Result<(), LogError> {
        self.index
            .set_len(0)
            .map_err(|e| io_err("truncate", &self.path("index"), e))?;
        self.tree
            .set_len(0)
            .map_err(|e| io_err("truncate", &self.path("tree"), e))?;
        self.len = 0;
        self.head = None;
        Ok(())
    }

    /// Reads frames from `offset` to the end of the log, re-deriving the caches. The first
    /// torn or damaged frame ends the log: it and everything after it are cut off.
    fn scan(&mut self, mut offset: u64, peaks: &mut Peaks) -> Result<(), LogError> {
        let mut log_id = self.head.map(|h| h.head.log_id);
        while offset < self.log_end {
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
            check_dense(self.len, &group)
                .map_err(|e| self.corrupt(format!("frame at offset {offset}: {e}")))?;
            let mut nodes = group.extra_nodes.clone();
            for run in &group.runs {
                for e in &run.entries {
                    peaks.append(Hash::leaf(e), |x, h| nodes.push((x, h)));
                }
            }
            if let Some(head) = &group.head {
                if *log_id.get_or_insert(head.head.log_id) != head.head.log_id {
                    return Err(self.corrupt(format!(
                        "frame at offset {offset} holds a head of another log"
                    )));
                }
                if head.head.root != peaks.root() {
                    return Err(self.corrupt(format!(
                        "frame at offset {offset}: its head's root is not the root of its entries"
                    )));
                }
            }
            self.write_caches(offset, &decoded.entry_spans, &nodes)?;
            self.len += group.entry_count();
            if group.head.is_some() {
                self.head = group.head;
            }
            offset += frame_len;
            self.since_checkpoint += frame_len;
        }
        Ok(())
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

    // ---- caches ----

    /// Writes the index records of the entries of a frame at `frame_offset` (continuing the
    /// `self.len` entries held) and the given nodes. No sync: the caches are derived data.
    fn write_caches(
        &mut self,
        frame_offset: u64,
        entry_spans: &[(usize, u32)],
        nodes: &[(u64, Hash)],
    ) -> Result<(), LogError> {
        if !entry_spans.is_empty() {
            let mut w = Writer::with_capacity(entry_spans.len() * INDEX_RECORD as usize);
            for (off, len) in entry_spans {
                w.u64(frame_offset + *off as u64);
                w.u32(*len);
            }
            let buf = w.into_vec();
            self.index
                .write_all_at(&buf, self.len * INDEX_RECORD)
                .map_err(|e| io_err("write", &self.path("index"), e))?;
            self.stats.cache_bytes += buf.len() as u64;
        }
        let mut nodes = nodes.to_vec();
        nodes.sort_unstable_by_key(|(x, _)| *x);
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
                .write_all_at(&buf, first * 32)
                .map_err(|e| io_err("write", &self.path("tree"), e))?;
            self.stats.cache_bytes += buf.len() as u64;
        }
        Ok(())
    }

    fn write_checkpoint(&mut self) -> Result<(), LogError> {
        let index_path = self.path("index");
        let tree_path = self.path("tree");
        let synced = self
            .index
            .sync_data()
            .map_err(|e| io_err("fdatasync", &index_path, e))
            .and_then(|()| {
                self.tree
                    .sync_data()
                    .map_err(|e| io_err("fdatasync", &tree_path, e))
            });
        if let Err(e) = synced {
            // After a failed sync the kernel may have dropped the pages: never vouch for
            // these caches again; the next open re-derives them from the last checkpoint.
            self.caches_suspect = true;
            return Err(e);
        }
        let bytes = encode_checkpoint(&Checkpoint {
            log_offset: self.log_end,
            len: self.len,
            head: self.head,
        });
        let tmp = self.path("checkpoint.tmp");
        let path = self.path("checkpoint");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err("open", &tmp, e))?;
        file.write_all(&bytes)
            .map_err(|e| io_err("write", &tmp, e))?;
        file.sync_data().map_err(|e| io_err("fdatasync", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io_err("rename", &path, e))?;
        sync_dir(&self.dir)?;
        self.stats.cache_bytes += bytes.len() as u64;
        self.stats.checkpoints += 1;
        self.since_checkpoint = 0;
        Ok(())
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

impl NodeSource for FileStorage {
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError> {
        // Dense store: a node is held exactly when all its leaves are.
        if flat::leaf_span(flat_index).1 > self.len {
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
        check_dense(self.len, &group)?;
        let encoded = frame::encode(&group)?;
        let offset = self.log_end;
        let log_path = self.path("log");
        // Until the sync returns, the files' state is unknown.
        self.broken = true;
        self.log
            .write_all_at(&encoded.bytes, offset)
            .map_err(|e| io_err("write", &log_path, e))?;
        let mut nodes = group.derived_nodes;
        nodes.extend_from_slice(&group.extra_nodes);
        self.write_caches(offset, &encoded.entry_spans, &nodes)?;
        self.log
            .sync_data()
            .map_err(|e| io_err("fdatasync", &log_path, e))?;
        self.broken = false;

        let written = encoded.bytes.len() as u64;
        self.log_end += written;
        self.len += group
            .runs
            .iter()
            .map(|r| r.entries.len() as u64)
            .sum::<u64>();
        if group.head.is_some() {
            self.head = group.head;
        }
        self.since_checkpoint += written;
        self.stats.groups += 1;
        self.stats.syncs += 1;
        self.stats.log_bytes += written;
        if self.since_checkpoint >= self.checkpoint_every && !self.caches_suspect {
            // The group is durable whatever happens here; a failed checkpoint only means
            // the next open reads more of the log.
            if let Err(e) = self.write_checkpoint() {
                tracing::warn!(error = %e, "log checkpoint failed");
            }
        }
        Ok(())
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, LogError> {
        if index >= self.len {
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

    fn len(&self) -> u64 {
        self.len
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
        if self.caches_suspect || self.since_checkpoint == 0 {
            return Ok(());
        }
        self.write_checkpoint()
    }

    fn stats(&self) -> StorageStats {
        self.stats
    }
}

fn encode_checkpoint(cp: &Checkpoint) -> Vec<u8> {
    let mut w = Writer::with_capacity(4 + 1 + 16 + 1 + SignedTreeHead::ENCODED_LEN + 32);
    w.bytes(CHECKPOINT_MAGIC);
    w.u8(CHECKPOINT_VERSION);
    w.u64(cp.log_offset);
    w.u64(cp.len);
    match &cp.head {
        None => w.u8(0),
        Some(h) => {
            w.u8(1);
            h.encode_into(&mut w);
        }
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
    r.version(CHECKPOINT_VERSION)?;
    let log_offset = r.u64()?;
    let len = r.u64()?;
    let head = match r.u8()? {
        0 => None,
        1 => Some(SignedTreeHead::decode_from(&mut r)?),
        _ => return Err(bad("bad head flag")),
    };
    r.finish()?;
    Ok(Checkpoint {
        log_offset,
        len,
        head,
    })
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
