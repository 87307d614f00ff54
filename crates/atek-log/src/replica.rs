//! A replica: a log held without its secret key, holding only what it verified.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use atek_core::PublicKey;

use crate::ranges::RangeSet;
use crate::storage::{EntryRun, Group, derive_nodes};
use crate::tree::{NodeSource, tree_root};
use crate::{
    Consistency, ConsistencyProof, FileStorage, ForkEvidence, Hash, InclusionProof, LogError,
    MAX_ENTRY_SIZE, MemoryStorage, RangeProof, SignedTreeHead, Storage, check_heads, flat,
};

/// A log held by someone other than its writer: it takes signed heads and entries from any
/// holder of the log and stores them only once they verify.
///
/// What it holds:
/// - the newest signed head it accepted (each accepted head extends the one before, checked
///   by a proof; every accepted head stays in the store's frames);
/// - entries, only the ranges it asked for (sparse), with the tree nodes that proved them:
///   enough to prove those entries again to others, against its own newest head;
/// - fork evidence, once a second history signed by the writer shows up. Then it refuses
///   everything further from this log ([`LogError::Forked`]); it never merges.
///
/// It keeps everything in a [`Storage`], a [`FileStorage`] (which opens again after a
/// restart, as it was at its last durable write) or a [`MemoryStorage`]. Its methods block
/// on that storage. The replication protocol drives it through
/// [`ReaderSession`](crate::sync::ReaderSession); [`Replica::check_head`] and
/// [`Replica::add_entries`] are the two steps it takes, usable without the protocol too.
#[derive(Debug)]
pub struct Replica<S: Storage = FileStorage> {
    storage: S,
    log_id: PublicKey,
    head: Option<SignedTreeHead>,
    held: RangeSet,
    forked: bool,
}

/// A head that [`Replica::check_head`] found consistent with everything the replica
/// accepted: newer (and now stored), the same, or older. Entries are added against one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedHead {
    head: SignedTreeHead,
    kind: HeadKind,
}

/// How a checked head relates to the replica's newest head when it was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// Longer: it is now the replica's newest head.
    Newer,
    /// The replica's newest head.
    Same,
    /// Shorter, and the prefix of the replica's tree (checked from the nodes it holds).
    Older,
}

impl CheckedHead {
    /// The head.
    pub fn head(&self) -> &SignedTreeHead {
        &self.head
    }

    /// How it related to the replica's newest head.
    pub fn kind(&self) -> HeadKind {
        self.kind
    }
}

impl Replica<FileStorage> {
    /// Creates a replica of log `log_id` in `dir` (see [`FileStorage::create`]). It holds
    /// nothing until it accepts a head.
    pub fn create(dir: impl AsRef<Path>, log_id: PublicKey) -> Result<Self, LogError> {
        Self::with_storage(FileStorage::create(dir)?, log_id)
    }

    /// Opens the replica in `dir`, recovering from a crash as a log does (see
    /// [`FileStorage::open`]). Refuses a store of another log.
    pub fn open(dir: impl AsRef<Path>, log_id: PublicKey) -> Result<Self, LogError> {
        Self::with_storage(FileStorage::open(dir)?, log_id)
    }
}

impl Replica<MemoryStorage> {
    /// A replica of log `log_id` held in memory.
    pub fn memory(log_id: PublicKey) -> Self {
        Self {
            storage: MemoryStorage::new(),
            log_id,
            head: None,
            held: RangeSet::new(),
            forked: false,
        }
    }
}

impl<S: Storage> Replica<S> {
    /// A replica of `log_id` on any store. A store that holds a head must hold one of this
    /// log that verifies against the stored tree.
    pub fn with_storage(storage: S, log_id: PublicKey) -> Result<Self, LogError> {
        let head = storage.head();
        if let Some(head) = &head {
            if head.head.log_id != log_id {
                return Err(LogError::WrongLog {
                    expected: log_id,
                    found: head.head.log_id,
                });
            }
            head.verify()?;
            if tree_root(&Computing(&storage), head.head.length)? != head.head.root {
                return Err(LogError::Storage {
                    reason: "the stored tree does not match the replica's last head".to_owned(),
                });
            }
        }
        let mut held = RangeSet::new();
        for r in storage.held() {
            held.insert(r);
        }
        if head.is_none() && held.count() > 0 {
            return Err(LogError::Storage {
                reason: "the store holds entries but no signed head".to_owned(),
            });
        }
        let forked = storage.forks()?.iter().any(|e| e.a.head.log_id == log_id);
        Ok(Self {
            storage,
            log_id,
            head,
            held,
            forked,
        })
    }

    /// The log's id.
    pub fn log_id(&self) -> PublicKey {
        self.log_id
    }

    /// The newest head accepted, if any.
    pub fn head(&self) -> Option<SignedTreeHead> {
        self.head
    }

    /// The length of the newest head accepted (0 before the first).
    pub fn len(&self) -> u64 {
        self.head.map_or(0, |h| h.head.length)
    }

    /// True before any entry is known to exist.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ranges of entries held, in order.
    pub fn held(&self) -> Vec<Range<u64>> {
        self.held.to_vec()
    }

    /// True when entry `index` is held.
    pub fn holds(&self, index: u64) -> bool {
        self.held.containing(index).is_some()
    }

    /// The parts of `range` not held, in order.
    pub fn missing(&self, range: Range<u64>) -> Vec<Range<u64>> {
        self.held.missing(range)
    }

    /// Entry `index`, if held: [`LogError::NotHeld`] for an entry this replica did not ask
    /// for (or that does not exist yet).
    pub fn get(&self, index: u64) -> Result<Vec<u8>, LogError> {
        if !self.holds(index) {
            return Err(LogError::NotHeld {
                index,
                length: self.len(),
            });
        }
        self.storage
            .entry(index)?
            .ok_or(LogError::MissingEntry { index })
    }

    /// Proof that held entry `index` is in the tree of `tree_size` entries (at most the
    /// newest head's length), from the nodes held.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<InclusionProof, LogError> {
        if tree_size > self.len() {
            return Err(LogError::OutOfRange {
                index: tree_size,
                length: self.len(),
            });
        }
        InclusionProof::generate(&Computing(&self.storage), index, tree_size)
    }

    /// The fork evidence the store keeps.
    pub fn forks(&self) -> Result<Vec<ForkEvidence>, LogError> {
        self.storage.forks()
    }

    /// True once the replica has fork evidence for its log: it accepts nothing more.
    pub fn is_forked(&self) -> bool {
        self.forked
    }

    /// The store.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Makes derived data durable (see [`Storage::checkpoint`]) and gives the store back.
    pub fn close(mut self) -> Result<S, LogError> {
        self.storage.checkpoint()?;
        Ok(self.storage)
    }

    /// Checks a signed head against everything accepted, and accepts it if it is newer.
    ///
    /// The head must be signed by the log ([`LogError::BadSignature`],
    /// [`LogError::WrongLog`]). Then, with `m` the length of the newest head accepted (0
    /// before the first) and `n` the new head's:
    /// - `n > m`: `proof` must be the [`RangeProof`] of the empty range at `m` in the new
    ///   tree (`start = end = m`, `tree_size = n`). It must lead to the new root
    ///   ([`LogError::BadProof`] if not: that proves nothing about the writer). The tree it
    ///   proves must hold the accepted tree as its first `m` entries: then the head and
    ///   the proof's nodes are stored, and the head is the replica's newest. If it holds
    ///   another tree there, the writer signed two histories.
    /// - `n = m`: the roots must be equal, or the writer signed two histories.
    /// - `n < m`: the head's root must be the root of the first `n` entries of the
    ///   replica's tree, computed from the nodes it holds ([`LogError::CannotCheck`] when
    ///   they are not enough; nothing is stored); another root is a fork.
    ///
    /// On a fork, the evidence (both heads and the RFC 9162 consistency path that shows
    /// it, which anyone can check) is stored and returned as
    /// [`LogError::ForkDetected`], and the replica refuses everything after
    /// ([`LogError::Forked`]). Nothing is stored when any check fails.
    pub fn check_head(
        &mut self,
        head: &SignedTreeHead,
        proof: Option<&RangeProof>,
    ) -> Result<CheckedHead, LogError> {
        if self.forked {
            return Err(LogError::Forked {
                log_id: self.log_id,
            });
        }
        if head.head.log_id != self.log_id {
            return Err(LogError::WrongLog {
                expected: self.log_id,
                found: head.head.log_id,
            });
        }
        head.verify()?;
        let n = head.head.length;
        let m = self.len();
        let latest = self.head;
        if n > m {
            let proof = proof.ok_or(LogError::BadProof {
                what: "range proof",
                reason: "a longer head needs a proof from the accepted length",
            })?;
            if proof.start != m || proof.end != m {
                return Err(LogError::BadProof {
                    what: "range proof",
                    reason: "the proof is not of the empty range at the accepted length",
                });
            }
            let proven = proof.verify_leaves(&[], n, &head.head.root)?;
            if let Some(latest) = latest {
                let prefix = proof.prefix_root(&proven)?;
                if prefix != latest.head.root {
                    // The new tree's own first `m` entries are not the accepted tree.
                    let rfc = ConsistencyProof::generate_seeded(&proven, m, n)?;
                    return Err(self.fork(&latest, head, Some(&rfc)));
                }
            }
            // Store the head with the nodes it brought that are not held yet.
            let extra: Vec<(u64, Hash)> = proven.iter().filter(|(x, _)| !self.stores(*x)).collect();
            self.storage.append(Group {
                extra_nodes: extra,
                head: Some(*head),
                ..Group::default()
            })?;
            self.head = Some(*head);
            return Ok(CheckedHead {
                head: *head,
                kind: HeadKind::Newer,
            });
        }
        let Some(latest) = latest else {
            // n = m = 0, before any head: the empty head (its root was checked by verify).
            return Ok(CheckedHead {
                head: *head,
                kind: HeadKind::Same,
            });
        };
        if n == m {
            if head.head.root == latest.head.root {
                return Ok(CheckedHead {
                    head: *head,
                    kind: HeadKind::Same,
                });
            }
            return Err(self.fork(&latest, head, None));
        }
        // n < m: the replica's own tree decides.
        let own = tree_root(&Computing(&self.storage), n).map_err(|e| match e {
            LogError::MissingNode { .. } => LogError::CannotCheck {
                length: n,
                accepted: m,
            },
            e => e,
        })?;
        if own == head.head.root {
            return Ok(CheckedHead {
                head: *head,
                kind: HeadKind::Older,
            });
        }
        let rfc = ConsistencyProof::generate_seeded(&Computing(&self.storage), n, m)?;
        Err(self.fork(head, &latest, Some(&rfc)))
    }

    /// Records a fork between `older` and `newer` shown by `proof` and stops the replica;
    /// the error to return. Anything but a fork (which cannot happen for a path made from
    /// nodes that lead to `newer`'s root) is returned as is.
    fn fork(
        &mut self,
        older: &SignedTreeHead,
        newer: &SignedTreeHead,
        proof: Option<&ConsistencyProof>,
    ) -> LogError {
        match check_heads(older, newer, proof) {
            Ok(Consistency::Fork(evidence)) => {
                if let Err(e) = self.storage.record_fork(&evidence) {
                    return e;
                }
                self.forked = true;
                tracing::warn!(
                    log = %self.log_id.fmt_short(),
                    a = evidence.a.head.length,
                    b = evidence.b.head.length,
                    "the log's writer signed two histories; fork evidence kept, the replica \
                     accepts nothing more from this log"
                );
                LogError::ForkDetected(evidence)
            }
            Ok(Consistency::Consistent) => LogError::BadProof {
                what: "consistency proof",
                reason: "the heads were found both consistent and not",
            },
            Err(e) => e,
        }
    }

    /// True when the store holds node `x`.
    fn stores(&self, x: u64) -> bool {
        matches!(self.storage.node(x), Ok(Some(_)))
    }

    /// Verifies entries `start..start + entries.len()` against a checked head with a range
    /// proof, then stores those not held yet with the nodes that prove them. Returns the
    /// range verified.
    ///
    /// Nothing is stored if any check fails: entries over
    /// [`MAX_ENTRY_SIZE`](crate::MAX_ENTRY_SIZE), a proof of another range or tree size, or
    /// entries and siblings that do not lead to the head's root
    /// ([`LogError::BadProof`]).
    pub fn add_entries(
        &mut self,
        head: &CheckedHead,
        start: u64,
        entries: Vec<Vec<u8>>,
        proof: &RangeProof,
    ) -> Result<Range<u64>, LogError> {
        if self.forked {
            return Err(LogError::Forked {
                log_id: self.log_id,
            });
        }
        if head.head.head.log_id != self.log_id {
            return Err(LogError::WrongLog {
                expected: self.log_id,
                found: head.head.head.log_id,
            });
        }
        if let Some(e) = entries.iter().find(|e| e.len() > MAX_ENTRY_SIZE) {
            return Err(LogError::EntryTooLarge {
                size: e.len(),
                max: MAX_ENTRY_SIZE,
            });
        }
        let end = start
            .checked_add(entries.len() as u64)
            .ok_or(LogError::BadProof {
                what: "range proof",
                reason: "its range is not within its tree",
            })?;
        if proof.start != start || proof.end != end {
            return Err(LogError::BadProof {
                what: "range proof",
                reason: "the proof is of another range than the entries",
            });
        }
        let leaves: Vec<Hash> = entries.iter().map(|e| Hash::leaf(e)).collect();
        let tree = &head.head.head;
        let proven = proof.verify_leaves(&leaves, tree.length, &tree.root)?;

        // Verified: store the entries not held yet, the nodes they complete, and the
        // proof's other nodes that the store does not hold.
        let mut held = self.held.clone();
        let mut runs = Vec::new();
        let mut derived: HashMap<u64, Hash> = HashMap::new();
        let mut entries: Vec<Option<Vec<u8>>> = entries.into_iter().map(Some).collect();
        for gap in self.held.missing(start..end) {
            let (a, b) = ((gap.start - start) as usize, (gap.end - start) as usize);
            held.insert(gap.clone());
            // Nodes come from this call's earlier runs, the proof, or the store (which
            // holds every node over the entries held before).
            let known = Overlay {
                first: &derived,
                then: &Overlay {
                    first: &proven,
                    then: &self.storage,
                },
            };
            let made = derive_nodes(&known, &held, gap.start, &leaves[a..b])?;
            derived.extend(made);
            runs.push(EntryRun {
                first_index: gap.start,
                entries: entries[a..b].iter_mut().filter_map(Option::take).collect(),
            });
        }
        let extra: Vec<(u64, Hash)> = proven
            .iter()
            .filter(|(x, _)| {
                let (s, e) = flat::leaf_span(*x);
                !held.covers(s..e) && !self.stores(*x)
            })
            .collect();
        if runs.is_empty() && extra.is_empty() {
            return Ok(start..end);
        }
        self.storage.append(Group {
            runs,
            derived_nodes: derived.into_iter().collect(),
            extra_nodes: extra,
            head: None,
        })?;
        self.held = held;
        Ok(start..end)
    }

    /// The newest head, for serving.
    pub(crate) fn served_head(&self) -> Option<SignedTreeHead> {
        if self.forked { None } else { self.head }
    }

    /// Up to `max_bytes` of consecutive held entries from `start` (below `end`) with their
    /// range proof in the tree of `tree_size` entries.
    pub(crate) fn read_range(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
        tree_size: u64,
    ) -> Result<(Vec<Vec<u8>>, RangeProof), LogError> {
        let entries = self.storage.entries(start, end, max_bytes)?;
        let proof = RangeProof::generate(
            &Computing(&self.storage),
            start,
            start + entries.len() as u64,
            tree_size,
        )?;
        Ok((entries, proof))
    }

    /// The first held range at or after `from`, clipped to start there.
    pub(crate) fn next_held(&self, from: u64) -> Option<Range<u64>> {
        self.held.next_from(from)
    }

    /// The empty-range proof at `old` in the tree of `new` entries.
    pub(crate) fn extension(&self, old: u64, new: u64) -> Result<RangeProof, LogError> {
        RangeProof::generate(&Computing(&self.storage), old, old, new)
    }
}

/// A node source that computes a node it does not hold from its children, when it holds
/// (or can compute) them: a replica's store holds nodes over its entries and the proofs'
/// siblings, and those compose into the nodes in between.
pub(crate) struct Computing<'a, S: ?Sized>(pub(crate) &'a S);

impl<S: NodeSource + ?Sized> NodeSource for Computing<'_, S> {
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError> {
        if let Some(h) = self.0.node(flat_index)? {
            return Ok(Some(h));
        }
        let h = flat::height(flat_index);
        if h == 0 {
            return Ok(None);
        }
        let half = 1u64 << (h - 1);
        let Some(left) = self.node(flat_index - half)? else {
            return Ok(None);
        };
        let Some(right) = self.node(flat_index + half)? else {
            return Ok(None);
        };
        Ok(Some(Hash::node(&left, &right)))
    }
}

/// Nodes from `first`, else from `then`.
struct Overlay<'a, A: ?Sized, B: ?Sized> {
    first: &'a A,
    then: &'a B,
}

impl NodeSource for HashMap<u64, Hash> {
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError> {
        Ok(self.get(&flat_index).copied())
    }
}

impl<A: NodeSource + ?Sized, B: NodeSource + ?Sized> NodeSource for Overlay<'_, A, B> {
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError> {
        match self.first.node(flat_index)? {
            Some(h) => Ok(Some(h)),
            None => self.then.node(flat_index),
        }
    }
}
