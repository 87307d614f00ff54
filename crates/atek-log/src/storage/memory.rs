//! A store in memory: for tests, and for logs that need not outlive the process.

use super::{Group, Storage, StorageStats, check_dense};
use crate::{ForkEvidence, Hash, LogError, NodeSource, SignedTreeHead};

/// Entries, nodes and heads in `Vec`s. "Durable" means "until dropped".
#[derive(Debug, Default)]
pub struct MemoryStorage {
    entries: Vec<Vec<u8>>,
    nodes: Vec<Option<Hash>>,
    head: Option<SignedTreeHead>,
    forks: Vec<ForkEvidence>,
    stats: StorageStats,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn put_node(&mut self, x: u64, h: Hash) -> Result<(), LogError> {
        let i = usize::try_from(x).map_err(|_| LogError::Storage {
            reason: format!("node {x} is beyond a memory store"),
        })?;
        if self.nodes.len() <= i {
            self.nodes.resize(i + 1, None);
        }
        self.nodes[i] = Some(h);
        Ok(())
    }
}

impl NodeSource for MemoryStorage {
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError> {
        self.nodes.node(flat_index)
    }
}

impl Storage for MemoryStorage {
    fn append(&mut self, group: Group) -> Result<(), LogError> {
        check_dense(self.len(), &group)?;
        for (x, h) in group.derived_nodes.iter().chain(&group.extra_nodes) {
            self.put_node(*x, *h)?;
        }
        for run in group.runs {
            self.entries.extend(run.entries);
        }
        if group.head.is_some() {
            self.head = group.head;
        }
        self.stats.groups += 1;
        self.stats.syncs += 1;
        Ok(())
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, LogError> {
        Ok(usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i).cloned()))
    }

    fn len(&self) -> u64 {
        self.entries.len() as u64
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
