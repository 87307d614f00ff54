//! Where a log's groups live: the [`Storage`] trait and its two backends.

mod file;
mod memory;

pub use file::FileStorage;
pub use memory::MemoryStorage;

use crate::{ForkEvidence, Hash, LogError, NodeSource, SignedTreeHead};

/// Consecutive entries starting at an explicit index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRun {
    /// The index of the first entry.
    pub first_index: u64,
    /// The entries, in order.
    pub entries: Vec<Vec<u8>>,
}

/// What one durable write adds to a store: entries, tree nodes and the signed head that
/// covers them.
///
/// The writer's groups hold one run that continues the log, the nodes that run completes
/// (`derived_nodes`, which a file store does not write to its log file because it can
/// compute them again from the entries) and the new head. A replica that holds only part of
/// a log (a later use) also carries the proof nodes it verified, as `extra_nodes`, which are
/// written out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// The entries, in runs with explicit indexes.
    pub runs: Vec<EntryRun>,
    /// Nodes computed from this group's entries (and the tree before them), by flat index.
    pub derived_nodes: Vec<(u64, Hash)>,
    /// Nodes that cannot be computed from the entries the store holds, by flat index.
    pub extra_nodes: Vec<(u64, Hash)>,
    /// The signed head that covers the log once this group is in.
    pub head: Option<SignedTreeHead>,
}

impl Group {
    /// The number of entries in all runs.
    pub fn entry_count(&self) -> u64 {
        self.runs.iter().map(|r| r.entries.len() as u64).sum()
    }
}

/// Counters a store keeps about its own work, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Groups appended.
    pub groups: u64,
    /// fdatasync calls made for appends (a memory store counts one per group, as if).
    pub syncs: u64,
    /// Bytes written to the log file.
    pub log_bytes: u64,
    /// Bytes written to the caches (entry index, tree nodes, checkpoint).
    pub cache_bytes: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
}

/// A log's store. Blocking; the log calls it from its one writer thread only.
///
/// It holds entries, the tree's perfect-subtree nodes by flat index ([`NodeSource`]), the last
/// durable signed head and any fork evidence. `append` is the one durable step: when it
/// returns `Ok`, the whole group survives a crash; when it fails, the store may or may not
/// hold the group, and the log stops writing to it.
pub trait Storage: NodeSource + Send + 'static {
    /// Makes `group` durable. Runs must continue the stored entries without a gap (the
    /// backends do not yet hold sparse logs; the format does).
    fn append(&mut self, group: Group) -> Result<(), LogError>;

    /// Entry `index`, or `None` if the store does not hold it.
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, LogError>;

    /// The number of entries held (they are `0..len`).
    fn len(&self) -> u64;

    /// True when no entry is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last durable signed head, if any group carried one.
    fn head(&self) -> Option<SignedTreeHead>;

    /// Keeps fork evidence durably.
    fn record_fork(&mut self, evidence: &ForkEvidence) -> Result<(), LogError>;

    /// The fork evidence kept so far.
    fn forks(&self) -> Result<Vec<ForkEvidence>, LogError>;

    /// Makes derived data durable so that a later open reads less (a file store's caches and
    /// checkpoint). The log calls it when it closes.
    fn checkpoint(&mut self) -> Result<(), LogError> {
        Ok(())
    }

    /// The store's counters.
    fn stats(&self) -> StorageStats {
        StorageStats::default()
    }
}

/// Refuses a group whose runs do not continue a dense store of `len` entries.
pub(crate) fn check_dense(len: u64, group: &Group) -> Result<(), LogError> {
    let mut next = len;
    for run in &group.runs {
        if run.first_index != next {
            return Err(LogError::Storage {
                reason: format!(
                    "a run starting at entry {} does not continue the {next} entries held \
                     (sparse stores are not supported yet)",
                    run.first_index
                ),
            });
        }
        next += run.entries.len() as u64;
    }
    if let Some(head) = &group.head
        && head.head.length != next
    {
        return Err(LogError::Storage {
            reason: format!(
                "the group's head has length {}, the store would hold {next} entries",
                head.head.length
            ),
        });
    }
    Ok(())
}
