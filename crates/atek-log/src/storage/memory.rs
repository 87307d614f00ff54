//! A store in memory: for tests, and for logs that need not outlive the process.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use super::{Group, Storage, StorageStats, check_runs};
use crate::ranges::RangeSet;
use crate::{ForkEvidence, Hash, LogError, NodeSource, SignedTreeHead};

/// Entries, nodes and heads in maps; dense or sparse. "Durable" means "until dropped".
#[derive(Debug, Default)]
pub struct MemoryStorage {
    entries: BTreeMap<u64, Vec<u8>>,
    held: RangeSet,
    nodes: HashMap<u64, Hash>,
    head: Option<SignedTreeHead>,
    forks: Vec<ForkEvidence>,
    stats: StorageStats,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl NodeSource for MemoryStorage {
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError> {
        Ok(self.nodes.get(&flat_index).copied())
    }
}

impl Storage for MemoryStorage {
    fn append(&mut self, group: Group) -> Result<(), LogError> {
        check_runs(&self.held, &group.runs)?;
        for (x, h) in group.derived_nodes.iter().chain(&group.extra_nodes) {
            self.nodes.insert(*x, *h);
        }
        for run in group.runs {
            let end = run.first_index + run.entries.len() as u64;
            self.held.insert(run.first_index..end);
            for (i, e) in (run.first_index..).zip(run.entries) {
                self.entries.insert(i, e);
            }
        }
        if group.head.is_some() {
            self.head = group.head;
        }
        self.stats.groups += 1;
        self.stats.syncs += 1;
        Ok(())
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.entries.get(&index).cloned())
    }

    fn entries(&self, start: u64, end: u64, max_bytes: usize) -> Result<Vec<Vec<u8>>, LogError> {
        let Some(run) = self.held.containing(start) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (_, e) in self.entries.range(start..end.min(run.end)) {
            if bytes >= max_bytes {
                break;
            }
            bytes += e.len();
            out.push(e.clone());
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
        self.forks.push(evidence.clone());
        Ok(())
    }

    fn forks(&self) -> Result<Vec<ForkEvidence>, LogError> {
        Ok(self.forks.clone())
    }

    fn stats(&self) -> StorageStats {
        self.stats
    }
}
