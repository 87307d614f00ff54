//! Where a log's groups live: the [`Storage`] trait and its two backends.

mod behind;
mod file;
mod memory;

pub use file::FileStorage;
pub use memory::MemoryStorage;

use std::collections::HashMap;
use std::ops::Range;

use crate::ranges::RangeSet;
use crate::{ForkEvidence, Hash, LogError, NodeSource, SignedTreeHead, flat};

/// Consecutive entries starting at an explicit index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRun {
    /// The index of the first entry.
    pub first_index: u64,
    /// The entries, in order.
    pub entries: Vec<Vec<u8>>,
}

/// What one durable write adds to a store: entries, tree nodes and a signed head.
///
/// The writer's groups hold one run that continues the log, the nodes that run completes
/// and the new head. A replica's groups hold the runs it verified (anywhere in the log),
/// the nodes it verified with them, or a newly accepted head and the nodes that proved it.
///
/// Nodes come in two kinds. `derived_nodes` are perfect subtrees all of whose entries the
/// store holds once the group is in (the leaves of the runs and every node they complete,
/// alone or with entries held before): a file store does not write them to its log file,
/// since it computes them again from the entries. `extra_nodes` are every other node (a
/// replica's proof siblings, and the nodes above them that it computed): they are written
/// out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// The entries, in runs with explicit indexes, in order; they must not overlap each
    /// other or the entries held.
    pub runs: Vec<EntryRun>,
    /// Nodes over entries held once the group is in, by flat index.
    pub derived_nodes: Vec<(u64, Hash)>,
    /// Other nodes, by flat index.
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

/// A log's store. Blocking; one owner at a time writes to it (the writer thread of a
/// [`Log`](crate::Log), or a [`Replica`](crate::Replica)).
///
/// It holds entries, the tree's perfect-subtree nodes by flat index ([`NodeSource`]), the last
/// durable signed head and any fork evidence. A writer's store is dense (entries `0..len`);
/// a replica's may be sparse (only the ranges it asked for, and the nodes that proved them).
/// `append` is the one durable step: when it returns `Ok`, the whole group survives a crash;
/// when it fails, the store may or may not hold the group, and its owner stops writing to
/// it.
pub trait Storage: NodeSource + Send + 'static {
    /// Makes `group` durable. Its runs must not overlap each other or the entries held.
    fn append(&mut self, group: Group) -> Result<(), LogError>;

    /// Makes durable a writer's group whose nodes and head are made from its entries:
    /// `seal` gets the runs and returns the nodes they derive and the new signed head; the
    /// group is then `runs` with those nodes and that head, as with [`Storage::append`].
    ///
    /// A store may start writing the entries before it calls `seal`, so that the disk
    /// works while the entries are hashed and the head signed. When `seal` fails, nothing
    /// of the group counts: the store is as after a failed `append`.
    fn append_sealed(&mut self, runs: Vec<EntryRun>, seal: &mut Seal<'_>) -> Result<(), LogError> {
        let (derived_nodes, head) = seal(&runs)?;
        self.append(Group {
            runs,
            derived_nodes,
            extra_nodes: Vec::new(),
            head: Some(head),
        })
    }

    /// Entry `index`, or `None` if the store does not hold it.
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, LogError>;

    /// Consecutive held entries from `start`: up to `end`, stopping before the first entry
    /// not held, and after the entry that brings their total size to `max_bytes` or more
    /// (so at least one entry when `start` is held). Empty when `start` is not held.
    fn entries(&self, start: u64, end: u64, max_bytes: usize) -> Result<Vec<Vec<u8>>, LogError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut i = start;
        while i < end && bytes < max_bytes {
            let Some(e) = self.entry(i)? else { break };
            bytes += e.len();
            out.push(e);
            i += 1;
        }
        Ok(out)
    }

    /// One past the last entry held: for a dense store, the number of entries.
    fn len(&self) -> u64;

    /// True when no entry is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ranges of entries held, in order, disjoint and not touching. A dense store
    /// holds `0..len`.
    fn held(&self) -> Vec<Range<u64>> {
        match self.len() {
            0 => Vec::new(),
            n => std::iter::once(0..n).collect(),
        }
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

/// What [`Storage::append_sealed`] calls with a group's runs: it returns the nodes they
/// derive (as [`Group::derived_nodes`]) and the head that covers the log once they are in.
pub type Seal<'a> =
    dyn FnMut(&[EntryRun]) -> Result<(Vec<(u64, Hash)>, SignedTreeHead), LogError> + 'a;

/// A boxed store is a store, so that the backend can be picked at run time.
impl<S: Storage + ?Sized> Storage for Box<S> {
    fn append(&mut self, group: Group) -> Result<(), LogError> {
        (**self).append(group)
    }
    fn append_sealed(&mut self, runs: Vec<EntryRun>, seal: &mut Seal<'_>) -> Result<(), LogError> {
        (**self).append_sealed(runs, seal)
    }
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, LogError> {
        (**self).entry(index)
    }
    fn entries(&self, start: u64, end: u64, max_bytes: usize) -> Result<Vec<Vec<u8>>, LogError> {
        (**self).entries(start, end, max_bytes)
    }
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn held(&self) -> Vec<Range<u64>> {
        (**self).held()
    }
    fn head(&self) -> Option<SignedTreeHead> {
        (**self).head()
    }
    fn record_fork(&mut self, evidence: &ForkEvidence) -> Result<(), LogError> {
        (**self).record_fork(evidence)
    }
    fn forks(&self) -> Result<Vec<ForkEvidence>, LogError> {
        (**self).forks()
    }
    fn checkpoint(&mut self) -> Result<(), LogError> {
        (**self).checkpoint()
    }
    fn stats(&self) -> StorageStats {
        (**self).stats()
    }
}

/// Refuses a group whose runs overlap each other or the entries `held`, are out of order,
/// or reach past the log's length limit.
pub(crate) fn check_runs(held: &RangeSet, runs: &[EntryRun]) -> Result<(), LogError> {
    let mut after = 0u64;
    for run in runs {
        let end = run
            .first_index
            .checked_add(run.entries.len() as u64)
            .filter(|&e| e <= crate::MAX_LENGTH)
            .ok_or(LogError::LogFull {
                max: crate::MAX_LENGTH,
            })?;
        if run.first_index < after || held.overlaps(run.first_index..end) {
            return Err(LogError::Storage {
                reason: format!(
                    "a run of entries {}..{end} overlaps entries already held or an earlier run",
                    run.first_index
                ),
            });
        }
        after = end;
    }
    Ok(())
}

/// The nodes that a run of leaves starting at entry `start` completes, given `held` (the
/// entries held with the run in) and `src` (the nodes held before): the leaves, and every
/// node whose entries are all held once the run is in and which holds at least one of the
/// run's entries. Bottom up, left to right.
pub(crate) fn derive_nodes(
    src: &impl NodeSource,
    held: &RangeSet,
    start: u64,
    leaves: &[Hash],
) -> Result<Vec<(u64, Hash)>, LogError> {
    let end = start + leaves.len() as u64;
    let mut new: HashMap<u64, Hash> = HashMap::with_capacity(2 * leaves.len());
    let mut out = Vec::with_capacity(2 * leaves.len());
    for (i, leaf) in (start..).zip(leaves) {
        let mut x = flat::leaf(i);
        let mut hash = *leaf;
        new.insert(x, hash);
        out.push((x, hash));
        while flat::height(x) < 62 {
            let parent = flat::parent(x);
            let (ps, pe) = flat::leaf_span(parent);
            if !held.covers(ps..pe) {
                break;
            }
            let is_left = x < parent;
            // The children of `parent` sit at equal distances on either side of it.
            let sibling = 2 * parent - x;
            if is_left && flat::leaf_span(sibling).0 < end {
                // The right sibling still waits for entries of this run: the parent is made
                // when its last entry comes.
                break;
            }
            let other = match new.get(&sibling) {
                Some(h) => *h,
                None => src.node(sibling)?.ok_or(LogError::MissingNode {
                    flat_index: sibling,
                })?,
            };
            hash = if is_left {
                Hash::node(&hash, &other)
            } else {
                Hash::node(&other, &hash)
            };
            x = parent;
            new.insert(x, hash);
            out.push((x, hash));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Peaks;

    #[test]
    fn derived_nodes_of_runs_in_any_order_are_the_trees() {
        // The full tree of 64 entries, for reference.
        let mut full: Vec<Option<Hash>> = Vec::new();
        let mut peaks = Peaks::default();
        let leaves: Vec<Hash> = (0..64u64).map(|i| Hash::leaf(&i.to_be_bytes())).collect();
        for leaf in &leaves {
            peaks.append(*leaf, |x, h| {
                let x = x as usize;
                if full.len() <= x {
                    full.resize(x + 1, None);
                }
                full[x] = Some(h);
            });
        }
        let mut seed = 0x1234_5678_9abc_def1u64;
        for _ in 0..300 {
            let mut held = RangeSet::new();
            let mut nodes: HashMap<u64, Hash> = HashMap::new();
            for _ in 0..20 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let a = seed % 64;
                let b = (a + 1 + (seed >> 8) % 9).min(64);
                let Some(gap) = held.missing(a..b).into_iter().next() else {
                    continue;
                };
                held.insert(gap.clone());
                let src: BTreeMapSource = nodes.iter().map(|(&x, &h)| (x, h)).collect();
                let run = &leaves[gap.start as usize..gap.end as usize];
                for (x, h) in derive_nodes(&src, &held, gap.start, run).unwrap() {
                    assert_eq!(Some(h), full[x as usize], "node {x}");
                    assert!(nodes.insert(x, h).is_none(), "node {x} made twice");
                }
                // Exactly the nodes over held entries are made.
                for x in 0..full.len() as u64 {
                    let (s, e) = flat::leaf_span(x);
                    assert_eq!(nodes.contains_key(&x), held.covers(s..e), "node {x}");
                }
            }
        }
    }

    type BTreeMapSource = std::collections::BTreeMap<u64, Hash>;
}
