//! The writer side of a log: a cloneable handle to one writer thread that owns the store
//! and the secret key, and commits appends in groups.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use atek_core::{PublicKey, SecretKey};
use tokio::sync::{mpsc, oneshot, watch};

use crate::storage::{EntryRun, FileStorage, Group, MemoryStorage, Storage, StorageStats};
use crate::tree::Peaks;
use crate::{
    ConsistencyProof, Hash, InclusionProof, LogError, MAX_ENTRY_SIZE, MAX_LENGTH, SignedTreeHead,
    TreeHead,
};

/// Requests waiting for the writer, at most.
const CHANNEL_CAPACITY: usize = 1024;
/// A group stops taking appends once it holds this many bytes of entries.
const MAX_GROUP_BYTES: usize = 64 << 20;
/// An append of fewer bytes than this has its leaves hashed by its caller before it is
/// sent (many small appends from many callers hash in parallel). A larger one is hashed by
/// two threads at once while the disk writes its entries: see [`Leaves`].
const CALLER_HASHES_BELOW: usize = 16 << 10;
/// A large append of fewer entries than this is hashed by the writer alone (a few large
/// entries hash fast in one thread: BLAKE3 works across an entry's own chunks).
const SPLIT_FROM_ENTRIES: usize = 8;
/// After a group, how long the writer keeps looking for the next request before it sleeps
/// (on a machine with more than one CPU), yielding its CPU to any thread that wants it in
/// between. A caller that awaits its appends one after another sends the next one within
/// this and finds the writer awake: waking a sleeping thread costs tens of microseconds,
/// more on a virtual machine. On the log benchmark, this makes batches of 100 about 5%
/// faster, and single awaited appends about 3% slower.
const POLL_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// A log that this process writes: a handle (cheap to clone, `Send + Sync`) to its writer
/// thread.
///
/// Appends resolve only once the group that holds them is durable. The thread takes every
/// request waiting on its channel, builds one group of all the appends among them, signs one
/// head, writes one frame and syncs once, then answers them all: concurrent appenders share
/// syncs and signatures. Reads see only durable, signed state.
///
/// After a failed write the log stops accepting appends ([`LogError::Poisoned`]); reopen it.
/// The writer thread ends, after a checkpoint, when [`Log::close`] is called or the last
/// handle is dropped.
///
/// To serve the log to replicas, hand [`Log::source`] to a
/// [`ServerSession`](crate::sync::ServerSession), and wake it with [`Log::watch`] when
/// appends land.
#[derive(Clone)]
pub struct Log {
    tx: mpsc::Sender<Request>,
    log_id: PublicKey,
    head: watch::Receiver<SignedTreeHead>,
    store: SharedStore,
}

/// The writer's store, shared with the log's [`LogSource`]s. `None` once the log is
/// closed (the store, and a file store's lock, are released then).
pub(crate) type SharedStore = Arc<Mutex<Option<Box<dyn Storage>>>>;

pub(crate) fn lock(store: &SharedStore) -> MutexGuard<'_, Option<Box<dyn Storage>>> {
    // The store's own state stays consistent across a panic elsewhere (each call is one
    // store operation), so a poisoned lock is taken over.
    store.lock().unwrap_or_else(|e| e.into_inner())
}

enum Request {
    Append {
        entries: Vec<Vec<u8>>,
        leaves: Leaves,
        reply: oneshot::Sender<Result<Range<u64>, LogError>>,
    },
    Get {
        index: u64,
        reply: oneshot::Sender<Result<Vec<u8>, LogError>>,
    },
    Inclusion {
        index: u64,
        tree_size: u64,
        reply: oneshot::Sender<Result<InclusionProof, LogError>>,
    },
    Consistency {
        old_size: u64,
        new_size: u64,
        reply: oneshot::Sender<Result<ConsistencyProof, LogError>>,
    },
    Stats {
        reply: oneshot::Sender<StorageStats>,
    },
    Close {
        reply: oneshot::Sender<Result<(), LogError>>,
    },
}

impl Log {
    /// Creates a log in `dir` (see [`FileStorage::create`]) whose writer is `key`. Its first
    /// durable state is the signed empty head. This does blocking file I/O.
    pub fn create(dir: impl AsRef<Path>, key: SecretKey) -> Result<Self, LogError> {
        Self::with_storage(FileStorage::create(dir)?, key)
    }

    /// Opens the log in `dir`, recovering from a crash (see [`FileStorage::open`]). Refuses a
    /// key that is not the log's. This does blocking file I/O (a short read after a clean
    /// close, up to a few MiB after a crash).
    pub fn open(dir: impl AsRef<Path>, key: SecretKey) -> Result<Self, LogError> {
        Self::with_storage(FileStorage::open(dir)?, key)
    }

    /// A new log held in memory.
    pub fn open_memory(key: SecretKey) -> Result<Self, LogError> {
        Self::with_storage(MemoryStorage::new(), key)
    }

    /// A log on any store. An empty store gets the signed empty head; a store with a head
    /// must be of `key`'s log, and its head must verify against the stored tree.
    pub fn with_storage<S: Storage>(storage: S, key: SecretKey) -> Result<Self, LogError> {
        Self::with_boxed_storage(Box::new(storage), key)
    }

    fn with_boxed_storage(mut storage: Box<dyn Storage>, key: SecretKey) -> Result<Self, LogError> {
        let log_id = key.public();
        let head = match storage.head() {
            Some(head) => {
                if head.head.log_id != log_id {
                    return Err(LogError::WrongKey {
                        log_id: head.head.log_id,
                        key: log_id,
                    });
                }
                head.verify()?;
                head
            }
            None if storage.is_empty() => {
                let head = TreeHead::empty(log_id).sign(&key)?;
                storage.append(Group {
                    head: Some(head),
                    ..Group::default()
                })?;
                head
            }
            None => {
                return Err(LogError::Storage {
                    reason: "the store holds entries but no signed head".to_owned(),
                });
            }
        };
        let length = head.head.length;
        let dense: Vec<_> = (length > 0).then_some(0..length).into_iter().collect();
        if storage.held() != dense {
            return Err(LogError::Storage {
                reason: format!(
                    "the store does not hold exactly the {length} entries of its last head \
                     (a replica's sparse store cannot be written to)"
                ),
            });
        }
        let peaks = Peaks::load(&&*storage, length)?;
        if peaks.root() != head.head.root || storage.len() != length {
            return Err(LogError::Storage {
                reason: format!(
                    "the stored tree of {} entries does not match the last signed head",
                    storage.len()
                ),
            });
        }
        let (head_tx, head_rx) = watch::channel(head);
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let store: SharedStore = Arc::new(Mutex::new(Some(storage)));
        let writer = Writer {
            storage: Arc::clone(&store),
            key,
            peaks,
            head: head_tx,
            poisoned: false,
        };
        std::thread::Builder::new()
            .name(format!("atek-log-{}", log_id.fmt_short()))
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::Storage {
                reason: format!("cannot start the log's writer thread: {e}"),
            })?;
        Ok(Self {
            tx,
            log_id,
            head: head_rx,
            store,
        })
    }

    /// The log's id: its writer's public key.
    pub fn id(&self) -> PublicKey {
        self.log_id
    }

    /// The last durable signed head.
    pub fn head(&self) -> SignedTreeHead {
        *self.head.borrow()
    }

    /// A receiver that sees every new durable signed head (as groups land; a slow
    /// receiver sees the latest). Its `changed()` fails once the writer has stopped.
    pub fn watch(&self) -> watch::Receiver<SignedTreeHead> {
        self.head.clone()
    }

    /// A synchronous, read-only view of the log's durable state, for serving it to
    /// replicas ([`Source`](crate::sync::Source)). It shares the writer's store: a read
    /// waits while a group is being written and synced. Once the log is closed its reads
    /// fail with [`LogError::Closed`].
    pub fn source(&self) -> LogSource {
        LogSource {
            log_id: self.log_id,
            head: self.head.clone(),
            store: Arc::clone(&self.store),
        }
    }

    /// The number of durable entries.
    pub fn len(&self) -> u64 {
        self.head().head.length
    }

    /// True when the log has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one entry; resolves with its index once it is durable.
    pub async fn append(&self, entry: Vec<u8>) -> Result<u64, LogError> {
        Ok(self.append_batch(vec![entry]).await?.start)
    }

    /// Appends entries in order, all in the same group; resolves with their indexes once
    /// they are durable. An empty batch resolves at once with an empty range.
    pub async fn append_batch(&self, entries: Vec<Vec<u8>>) -> Result<Range<u64>, LogError> {
        if let Some(e) = entries.iter().find(|e| e.len() > MAX_ENTRY_SIZE) {
            return Err(LogError::EntryTooLarge {
                size: e.len(),
                max: MAX_ENTRY_SIZE,
            });
        }
        if entries.is_empty() {
            let len = self.len();
            return Ok(len..len);
        }
        let bytes: usize = entries.iter().map(Vec::len).sum();
        if bytes < CALLER_HASHES_BELOW {
            let leaves = Leaves::Ready(entries.iter().map(|e| Hash::leaf(e)).collect());
            return self
                .ask(|reply| Request::Append {
                    entries,
                    leaves,
                    reply,
                })
                .await?;
        }
        if entries.len() < SPLIT_FROM_ENTRIES {
            return self
                .ask(|reply| Request::Append {
                    entries,
                    leaves: Leaves::Writer,
                    reply,
                })
                .await?;
        }
        // The writer hashes the first quarter after writing the entries out; this task
        // hashes the rest (from a copy: the entries travel to the writer) meanwhile.
        let from = entries.len() / 4;
        let copy = entries[from..].to_vec();
        let (leaves_tx, rest) = oneshot::channel();
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::Append {
                entries,
                leaves: Leaves::Split { from, rest },
                reply,
            })
            .await
            .map_err(|_| LogError::Closed)?;
        let _ = leaves_tx.send(copy.iter().map(|e| Hash::leaf(e)).collect());
        drop(copy);
        answer.await.map_err(|_| LogError::Closed)?
    }

    /// Entry `index`.
    pub async fn get(&self, index: u64) -> Result<Vec<u8>, LogError> {
        self.ask(|reply| Request::Get { index, reply }).await?
    }

    /// Proof that entry `index` is in the tree of the first `tree_size` entries.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, LogError> {
        self.ask(|reply| Request::Inclusion {
            index,
            tree_size,
            reply,
        })
        .await?
    }

    /// Proof that the tree of `new_size` entries extends the tree of `old_size`.
    pub async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, LogError> {
        self.ask(|reply| Request::Consistency {
            old_size,
            new_size,
            reply,
        })
        .await?
    }

    /// The store's counters (syncs, bytes written).
    pub async fn storage_stats(&self) -> Result<StorageStats, LogError> {
        self.ask(|reply| Request::Stats { reply }).await
    }

    /// Stops the writer after the requests already sent, checkpoints the store and releases
    /// it. Every handle of this log is closed.
    pub async fn close(&self) -> Result<(), LogError> {
        self.ask(|reply| Request::Close { reply }).await?
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, LogError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("id", &self.log_id)
            .field("len", &self.len())
            .finish()
    }
}

/// The writer thread's state.
struct Writer {
    storage: SharedStore,
    key: SecretKey,
    /// The durable tree's peaks.
    peaks: Peaks,
    head: watch::Sender<SignedTreeHead>,
    poisoned: bool,
}

type AppendReply = oneshot::Sender<Result<Range<u64>, LogError>>;

/// An append taken from the channel, waiting for its group.
struct Pending {
    entries: Vec<Vec<u8>>,
    leaves: Leaves,
    reply: AppendReply,
}

/// Who hashes an append's leaves.
enum Leaves {
    /// The caller did, before sending it.
    Ready(Vec<Hash>),
    /// The writer does, while the disk writes the entries.
    Writer,
    /// The writer hashes the entries before `from`; the caller hashes the rest at the same
    /// time and sends their leaves. Should the caller be gone, the writer hashes them too.
    Split {
        from: usize,
        rest: oneshot::Receiver<Vec<Hash>>,
    },
}

impl Leaves {
    /// Hands `leaf` the leaves of `entries` (this append's, all of which it consumes), in
    /// order.
    fn resolve<'e>(
        self,
        mut entries: impl Iterator<Item = &'e Vec<u8>>,
        mut leaf: impl FnMut(Hash),
    ) {
        match self {
            Leaves::Ready(leaves) => {
                leaves.into_iter().for_each(leaf);
                // Consumed all the same: the caller's iterator goes on after them.
                entries.for_each(drop);
            }
            Leaves::Writer => entries.for_each(|e| leaf(Hash::leaf(e))),
            Leaves::Split { from, rest } => {
                for e in entries.by_ref().take(from) {
                    leaf(Hash::leaf(e));
                }
                let rest_entries: Vec<&Vec<u8>> = entries.collect();
                match rest.blocking_recv() {
                    Ok(leaves) if leaves.len() == rest_entries.len() => {
                        leaves.into_iter().for_each(leaf);
                    }
                    _ => rest_entries.into_iter().for_each(|e| leaf(Hash::leaf(e))),
                }
            }
        }
    }
}

impl Writer {
    /// Runs `f` on the store, or fails with [`LogError::Closed`] once it is released.
    fn with_store<T>(
        &self,
        f: impl FnOnce(&mut dyn Storage) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        match lock(&self.storage).as_mut() {
            Some(store) => f(&mut **store),
            None => Err(LogError::Closed),
        }
    }

    /// Checkpoints the store and releases it (and a file store's lock).
    fn release(&self) -> Result<(), LogError> {
        let store = lock(&self.storage).take();
        match store {
            Some(mut store) => store.checkpoint(),
            None => Ok(()),
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let poll = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
        let mut after_group = false;
        while let Some(first) = next_request(&mut rx, poll && after_group) {
            after_group = true;
            let mut appends = Vec::new();
            let mut bytes = 0usize;
            let mut close = None;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Append {
                        entries,
                        leaves,
                        reply,
                    } => {
                        bytes += entries.iter().map(Vec::len).sum::<usize>();
                        appends.push(Pending {
                            entries,
                            leaves,
                            reply,
                        });
                    }
                    Request::Close { reply } => {
                        close = Some(reply);
                        break;
                    }
                    other => self.answer(other),
                }
                if bytes < MAX_GROUP_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(appends);
            if let Some(reply) = close {
                // Release the store (and its lock) before saying it is closed.
                let result = self.release();
                drop(self);
                // Refuse new requests before answering: a caller that sends one once
                // `close` returns must see the channel closed. (Were the receiver only
                // dropped after the reply, a request sent in between could land in the
                // channel after the receiver drained it and wait forever.) Requests
                // already queued are dropped, which answers them `Closed`.
                rx.close();
                while let Ok(request) = rx.try_recv() {
                    drop(request);
                }
                let _ = reply.send(result);
                return;
            }
        }
        if let Err(e) = self.release() {
            tracing::warn!(error = %e, "log checkpoint at close failed");
        }
    }

    fn answer(&self, request: Request) {
        let len = self.peaks.len();
        match request {
            Request::Get { index, reply } => {
                let result = if index >= len {
                    Err(LogError::OutOfRange { index, length: len })
                } else {
                    self.with_store(|s| s.entry(index))
                        .and_then(|e| e.ok_or(LogError::MissingEntry { index }))
                };
                let _ = reply.send(result);
            }
            Request::Inclusion {
                index,
                tree_size,
                reply,
            } => {
                let result = if tree_size > len {
                    Err(LogError::OutOfRange {
                        index: tree_size,
                        length: len,
                    })
                } else {
                    self.with_store(|s| InclusionProof::generate(&&*s, index, tree_size))
                };
                let _ = reply.send(result);
            }
            Request::Consistency {
                old_size,
                new_size,
                reply,
            } => {
                let result = if new_size > len {
                    Err(LogError::OutOfRange {
                        index: new_size,
                        length: len,
                    })
                } else {
                    self.with_store(|s| ConsistencyProof::generate(&&*s, old_size, new_size))
                };
                let _ = reply.send(result);
            }
            Request::Stats { reply } => {
                let _ = reply.send(self.with_store(|s| Ok(s.stats())).unwrap_or_default());
            }
            Request::Append { .. } | Request::Close { .. } => {}
        }
    }

    /// Writes every append as one group with one signed head and one sync, then answers.
    ///
    /// The head is signed (and the leaves of large appends hashed) here, inside
    /// [`Storage::append_sealed`]: a file store has already handed a large group's entries
    /// to the disk by then, so the hashing overlaps the write.
    fn commit(&mut self, appends: Vec<Pending>) {
        if appends.is_empty() {
            return;
        }
        if self.poisoned {
            for Pending { reply, .. } in appends {
                let _ = reply.send(Err(LogError::Poisoned));
            }
            return;
        }
        let start = self.peaks.len();
        let mut end = start;
        let mut entries = Vec::new();
        let mut waiters: Vec<(Range<u64>, AppendReply)> = Vec::new();
        // Per append kept, its entry count and who hashes its leaves.
        let mut hashed: Vec<(usize, Leaves)> = Vec::new();
        for Pending {
            entries: batch,
            leaves,
            reply,
        } in appends
        {
            let n = batch.len() as u64;
            if end + n > MAX_LENGTH {
                let _ = reply.send(Err(LogError::LogFull { max: MAX_LENGTH }));
                continue;
            }
            waiters.push((end..end + n, reply));
            hashed.push((batch.len(), leaves));
            end += n;
            entries.extend(batch);
        }
        if entries.is_empty() {
            return;
        }
        let mut peaks = self.peaks.clone();
        let mut signed = None;
        let key = &self.key;
        let mut seal = |runs: &[EntryRun]| {
            let mut derived = Vec::new();
            let mut all = runs.iter().flat_map(|r| &r.entries);
            for (n, leaves) in hashed.drain(..) {
                leaves.resolve(all.by_ref().take(n), |leaf| {
                    peaks.append(leaf, |x, h| derived.push((x, h)));
                });
            }
            let head = TreeHead {
                log_id: key.public(),
                length: peaks.len(),
                root: peaks.root(),
            }
            .sign(key)?;
            signed = Some(head);
            Ok((derived, head))
        };
        let runs = vec![EntryRun {
            first_index: start,
            entries,
        }];
        let result = self.with_store(|s| s.append_sealed(runs, &mut seal));
        match (result, signed) {
            (Ok(()), Some(head)) => {
                self.peaks = peaks;
                self.head.send_replace(head);
                for (range, reply) in waiters {
                    let _ = reply.send(Ok(range));
                }
            }
            (result, _) => {
                let e = result.err().unwrap_or_else(|| LogError::Storage {
                    reason: "the store wrote a group without sealing it".to_owned(),
                });
                tracing::error!(error = %e, "log group write failed; the log stops taking appends");
                self.poisoned = true;
                let e = Arc::new(e);
                for (_, reply) in waiters {
                    let _ = reply.send(Err(LogError::GroupFailed {
                        source: Arc::clone(&e),
                    }));
                }
            }
        }
    }
}

/// The next request, or `None` once every handle is gone. With `poll`, looks for one for
/// [`POLL_BEFORE_SLEEP`] before sleeping until one comes.
fn next_request(rx: &mut mpsc::Receiver<Request>, poll: bool) -> Option<Request> {
    if poll {
        let start = Instant::now();
        loop {
            match rx.try_recv() {
                Ok(request) => return Some(request),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) if start.elapsed() < POLL_BEFORE_SLEEP => {
                    std::thread::yield_now();
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
            }
        }
    }
    rx.blocking_recv()
}

/// A read-only, synchronous view of a [`Log`]'s durable state: see [`Log::source`].
#[derive(Clone)]
pub struct LogSource {
    log_id: PublicKey,
    head: watch::Receiver<SignedTreeHead>,
    store: SharedStore,
}

impl LogSource {
    /// The log's id.
    pub fn id(&self) -> PublicKey {
        self.log_id
    }

    /// The last durable signed head.
    pub fn head(&self) -> SignedTreeHead {
        *self.head.borrow()
    }

    /// Runs `f` on the store, or fails with [`LogError::Closed`] once the log is closed.
    pub(crate) fn with_store<T>(
        &self,
        f: impl FnOnce(&dyn Storage) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        match lock(&self.store).as_ref() {
            Some(store) => f(&**store),
            None => Err(LogError::Closed),
        }
    }
}

impl std::fmt::Debug for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSource")
            .field("id", &self.log_id)
            .field("len", &self.head().head.length)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<Log>();
        check::<LogSource>();
    }
}
