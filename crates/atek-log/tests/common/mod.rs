//! Helpers shared by the log's integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod pipe;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use atek_core::SecretKey;
use atek_log::{
    ForkEvidence, Group, Hash, Log, LogError, NodeSource, SignedTreeHead, Storage, StorageStats,
};

/// RFC 9162's MTH, by its definition.
pub fn mth(d: &[Vec<u8>]) -> Hash {
    match d.len() {
        0 => Hash::empty_root(),
        1 => Hash::leaf(&d[0]),
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            Hash::node(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

pub fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32])
}

/// Checks everything a reader can check of `log` against the model: the head's signature
/// and root, every entry, and an inclusion proof for a few of them.
pub async fn check_against_model(log: &Log, model: &[Vec<u8>]) {
    let head = log.head();
    head.verify().unwrap();
    assert_eq!(head.head.length, model.len() as u64);
    assert_eq!(head.head.root, mth(model));
    for (i, e) in model.iter().enumerate() {
        assert_eq!(&log.get(i as u64).await.unwrap(), e, "entry {i}");
    }
    let n = model.len() as u64;
    for i in [0, n / 2, n.saturating_sub(1)] {
        if i < n {
            let p = log.inclusion_proof(i, n).await.unwrap();
            p.verify(&model[i as usize], &head.head).unwrap();
        }
    }
    assert!(matches!(log.get(n).await, Err(LogError::OutOfRange { .. })));
}

/// When the wrapped store's append number `fail_at` (1-based, counting every group) fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails before anything is written: as if the write failed.
    BeforeWrite,
    /// Lets the inner store write the group, then fails: as if the sync failed after the
    /// write (the group may then be found on reopen, but was never acknowledged).
    AfterWrite,
}

/// Shared view of a [`Faulty`] store, kept by the test.
#[derive(Debug, Default)]
pub struct FaultControl {
    pub appends: AtomicU64,
    /// Signalled when append number `gate_at` starts.
    pub entered: tokio::sync::Notify,
    /// Append number `gate_at` waits for a message on this before going on.
    pub gate: Mutex<Option<mpsc::Receiver<()>>>,
}

/// A store wrapper that counts appends and fails or holds the one the test chose.
pub struct Faulty<S> {
    pub inner: S,
    pub control: Arc<FaultControl>,
    pub fail_at: Option<(u64, Fault)>,
    pub gate_at: Option<u64>,
}

impl<S> Faulty<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            control: Arc::new(FaultControl::default()),
            fail_at: None,
            gate_at: None,
        }
    }
}

impl<S: Storage> NodeSource for Faulty<S> {
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError> {
        self.inner.node(flat_index)
    }
}

impl<S: Storage> Storage for Faulty<S> {
    fn append(&mut self, group: Group) -> Result<(), LogError> {
        let n = self.control.appends.fetch_add(1, Ordering::SeqCst) + 1;
        if self.gate_at == Some(n) {
            self.control.entered.notify_one();
            let gate = self.control.gate.lock().unwrap().take();
            if let Some(gate) = gate {
                let _ = gate.recv();
            }
        }
        match self.fail_at {
            Some((at, Fault::BeforeWrite)) if at == n => Err(injected("write")),
            Some((at, Fault::AfterWrite)) if at == n => {
                self.inner.append(group)?;
                Err(injected("fdatasync"))
            }
            _ => self.inner.append(group),
        }
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, LogError> {
        self.inner.entry(index)
    }

    fn entries(&self, start: u64, end: u64, max_bytes: usize) -> Result<Vec<Vec<u8>>, LogError> {
        self.inner.entries(start, end, max_bytes)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn held(&self) -> Vec<std::ops::Range<u64>> {
        self.inner.held()
    }

    fn head(&self) -> Option<SignedTreeHead> {
        self.inner.head()
    }

    fn record_fork(&mut self, evidence: &ForkEvidence) -> Result<(), LogError> {
        self.inner.record_fork(evidence)
    }

    fn forks(&self) -> Result<Vec<ForkEvidence>, LogError> {
        self.inner.forks()
    }

    fn checkpoint(&mut self) -> Result<(), LogError> {
        self.inner.checkpoint()
    }

    fn stats(&self) -> StorageStats {
        self.inner.stats()
    }
}

fn injected(op: &'static str) -> LogError {
    LogError::Io {
        op,
        path: "injected".into(),
        source: std::io::Error::other("injected fault"),
    }
}
