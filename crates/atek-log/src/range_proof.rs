//! Batch proofs: consecutive entries proven against a head with one set of sibling nodes.
//!
//! The siblings are the perfect subtrees that cover the rest of the tree: the flat-tree
//! nodes met when walking down from the tree's peaks, stopping at every node that lies
//! wholly outside the range (a sibling, sent) or wholly inside it (computed from the
//! entries). Every node the proof names is a perfect subtree, so a replica stores it under
//! its flat index like any other node, and it never changes as the log grows.

use std::collections::HashMap;

use crate::tree::{NodeSource, need};
use crate::wire::{Reader, Writer};
use crate::{Hash, LogError, MAX_LENGTH, TreeHead, flat};

/// The most siblings a range proof may carry. A range in a log of at most 2^62 entries
/// needs at most 62 peaks plus one sibling per level on each side of the range.
pub const MAX_SIBLINGS: usize = 192;

/// Proof that consecutive entries are entries `start..end` of the tree of `tree_size`
/// entries: the perfect subtrees that cover `0..start` and `end..tree_size`, in walk order
/// (left to right).
///
/// With `start == end` it proves no entry but still pins the tree's structure at `start`:
/// the siblings left of `start` are the peaks of the tree of `start` entries *as the newer
/// tree holds them*. The replication protocol uses that form as its consistency proof (see
/// [`RangeProof::prefix_root`]).
///
/// It costs about `2·log2(tree_size)` hashes per batch, against `log2(tree_size)` per entry
/// for one RFC 9162 audit path each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeProof {
    /// The first entry proven.
    pub start: u64,
    /// One past the last entry proven.
    pub end: u64,
    /// The size of the tree the entries are proven against.
    pub tree_size: u64,
    /// The covering subtrees' hashes, left to right.
    pub siblings: Vec<Hash>,
}

/// The nodes a verified range proof computed or took from its siblings, all of them the
/// tree's own (they hash up to its signed root).
#[derive(Debug, Clone, Default)]
pub struct ProvenNodes {
    nodes: HashMap<u64, Hash>,
}

impl ProvenNodes {
    /// Every proven node, by flat index, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Hash)> + '_ {
        self.nodes.iter().map(|(&x, &h)| (x, h))
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there are none (the proof of an empty tree).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl NodeSource for ProvenNodes {
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError> {
        Ok(self.nodes.get(&flat_index).copied())
    }
}

/// Where a node lies against the range `start..end`.
enum Place {
    Outside,
    Inside,
    Across,
}

fn place(x: u64, start: u64, end: u64) -> Place {
    let (s, e) = flat::leaf_span(x);
    if e <= start || s >= end {
        Place::Outside
    } else if start <= s && e <= end {
        Place::Inside
    } else {
        Place::Across
    }
}

fn bad(reason: &'static str) -> LogError {
    LogError::BadProof {
        what: "range proof",
        reason,
    }
}

fn check_bounds(start: u64, end: u64, tree_size: u64) -> Result<(), LogError> {
    if start > end || end > tree_size || tree_size > MAX_LENGTH {
        return Err(bad("its range is not within its tree"));
    }
    Ok(())
}

impl RangeProof {
    /// The proof for `start..end` in the tree of `tree_size` entries, from the nodes in
    /// `src` (which may hold a longer tree). Only the siblings are read.
    pub fn generate(
        src: &impl NodeSource,
        start: u64,
        end: u64,
        tree_size: u64,
    ) -> Result<Self, LogError> {
        if start > end || end > tree_size {
            return Err(LogError::OutOfRange {
                index: end.max(start),
                length: tree_size,
            });
        }
        let mut siblings = Vec::new();
        for peak in flat::peaks(tree_size) {
            collect(src, peak, start, end, &mut siblings)?;
        }
        Ok(Self {
            start,
            end,
            tree_size,
            siblings,
        })
    }

    /// Checks that `entries` are entries `start..end` of the tree `head` describes. The
    /// proof's tree size must be the head's length.
    pub fn verify<E: AsRef<[u8]>>(
        &self,
        entries: &[E],
        head: &TreeHead,
    ) -> Result<ProvenNodes, LogError> {
        let leaves: Vec<Hash> = entries.iter().map(|e| Hash::leaf(e.as_ref())).collect();
        self.verify_leaves(&leaves, head.length, &head.root)
    }

    /// [`RangeProof::verify`] from leaf hashes and a bare size and root. On success, the
    /// nodes it computed and the siblings, all proven to be the tree's own.
    pub fn verify_leaves(
        &self,
        leaves: &[Hash],
        tree_size: u64,
        root: &Hash,
    ) -> Result<ProvenNodes, LogError> {
        if self.tree_size != tree_size {
            return Err(bad("its tree size is not the head's"));
        }
        check_bounds(self.start, self.end, self.tree_size)?;
        if leaves.len() as u64 != self.end - self.start {
            return Err(bad("the number of entries is not the range's size"));
        }
        if self.siblings.len() > MAX_SIBLINGS {
            return Err(bad("too many siblings"));
        }
        let mut walk = Walk {
            start: self.start,
            end: self.end,
            leaves,
            siblings: self.siblings.iter(),
            nodes: HashMap::with_capacity(2 * leaves.len() + self.siblings.len() + 64),
        };
        let mut peaks = Vec::new();
        for peak in flat::peaks(self.tree_size) {
            peaks.push(walk.visit(peak)?);
        }
        if walk.siblings.next().is_some() {
            return Err(bad("the proof has more siblings than the range needs"));
        }
        let computed = fold(&peaks);
        if computed != *root {
            return Err(bad("the entries and siblings do not lead to the root"));
        }
        Ok(ProvenNodes { nodes: walk.nodes })
    }

    /// The root of the tree of the first `start` entries, from nodes that
    /// [`RangeProof::verify_leaves`] proved: that prefix of the proven tree, as the proven
    /// tree holds it. Comparing it with an older head's root checks the older head against
    /// the newer (equal is consistent; different, with both heads signed, is a fork).
    pub fn prefix_root(&self, proven: &ProvenNodes) -> Result<Hash, LogError> {
        crate::tree_root(proven, self.start)
    }

    /// The binary form: version (1), start, end and tree size (u64 BE each), sibling count
    /// (u16 BE), the siblings' hashes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(27 + 32 * self.siblings.len());
        w.u8(RANGE_PROOF_VERSION);
        w.u64(self.start);
        w.u64(self.end);
        w.u64(self.tree_size);
        self.encode_siblings(&mut w);
        w.into_vec()
    }

    /// The sibling count and hashes alone, as the protocol's frames carry them.
    pub(crate) fn encode_siblings(&self, w: &mut Writer) {
        // Never more than MAX_SIBLINGS are generated.
        w.u16(u16::try_from(self.siblings.len()).unwrap_or(u16::MAX));
        for h in &self.siblings {
            w.bytes(h.as_bytes());
        }
    }

    /// Reads [`RangeProof::encode`]'s form; the input must be exactly one proof. It does
    /// not verify it.
    pub fn decode(bytes: &[u8]) -> Result<Self, LogError> {
        let mut r = Reader::new("range proof", bytes);
        r.version(RANGE_PROOF_VERSION)?;
        let start = r.u64()?;
        let end = r.u64()?;
        let tree_size = r.u64()?;
        let siblings = decode_siblings(&mut r)?;
        r.finish()?;
        Ok(Self {
            start,
            end,
            tree_size,
            siblings,
        })
    }
}

/// The format version of encoded range proofs.
const RANGE_PROOF_VERSION: u8 = 1;

pub(crate) fn decode_siblings(r: &mut Reader<'_>) -> Result<Vec<Hash>, LogError> {
    let n = usize::from(r.u16()?);
    if n > MAX_SIBLINGS {
        return Err(r.error(format!(
            "{n} siblings are more than the limit of {MAX_SIBLINGS}"
        )));
    }
    (0..n).map(|_| r.hash()).collect()
}

/// The right fold of peak hashes: the root.
fn fold(peaks: &[Hash]) -> Hash {
    let mut iter = peaks.iter().rev();
    let Some(last) = iter.next() else {
        return Hash::empty_root();
    };
    iter.fold(*last, |right, left| Hash::node(left, &right))
}

fn collect(
    src: &impl NodeSource,
    x: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), LogError> {
    match place(x, start, end) {
        Place::Outside => out.push(need(src, x)?),
        Place::Inside => {}
        Place::Across => {
            let half = 1u64 << (flat::height(x) - 1);
            collect(src, x - half, start, end, out)?;
            collect(src, x + half, start, end, out)?;
        }
    }
    Ok(())
}

struct Walk<'a> {
    start: u64,
    end: u64,
    leaves: &'a [Hash],
    siblings: std::slice::Iter<'a, Hash>,
    nodes: HashMap<u64, Hash>,
}

impl Walk<'_> {
    fn visit(&mut self, x: u64) -> Result<Hash, LogError> {
        let hash = match place(x, self.start, self.end) {
            Place::Outside => *self
                .siblings
                .next()
                .ok_or_else(|| bad("the proof has fewer siblings than the range needs"))?,
            Place::Inside if flat::height(x) == 0 => {
                // Inside the range: `x / 2 - start` indexes `leaves` (checked by the caller).
                self.leaves[usize::try_from(x / 2 - self.start)
                    .map_err(|_| bad("its range is not within its tree"))?]
            }
            Place::Inside | Place::Across => {
                // A leaf is never across a range's edge, so `x` has children.
                let half = 1u64 << (flat::height(x) - 1);
                let left = self.visit(x - half)?;
                let right = self.visit(x + half)?;
                Hash::node(&left, &right)
            }
        };
        self.nodes.insert(x, hash);
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Peaks;

    fn tree(n: u64) -> (Vec<Option<Hash>>, Vec<Hash>) {
        let mut nodes: Vec<Option<Hash>> = Vec::new();
        let mut peaks = Peaks::default();
        let mut leaves = Vec::new();
        for i in 0..n {
            let leaf = Hash::leaf(&i.to_be_bytes());
            leaves.push(leaf);
            peaks.append(leaf, |x, h| {
                let x = usize::try_from(x).unwrap();
                if nodes.len() <= x {
                    nodes.resize(x + 1, None);
                }
                nodes[x] = Some(h);
            });
        }
        (nodes, leaves)
    }

    #[test]
    fn every_range_of_small_trees() {
        let (nodes, leaves) = tree(40);
        for n in 0..=40u64 {
            let root = crate::tree_root(&nodes, n).unwrap();
            for start in 0..=n {
                for end in start..=n {
                    let p = RangeProof::generate(&nodes, start, end, n).unwrap();
                    let l = &leaves[start as usize..end as usize];
                    let proven = p.verify_leaves(l, n, &root).unwrap();
                    // Every proven node is the tree's own.
                    for (x, h) in proven.iter() {
                        assert_eq!(Some(h), nodes.node(x).unwrap(), "{start}..{end} of {n}");
                    }
                    // The prefix root is the root of the tree of `start` entries.
                    assert_eq!(
                        p.prefix_root(&proven).unwrap(),
                        crate::tree_root(&nodes, start).unwrap()
                    );
                    assert_eq!(RangeProof::decode(&p.encode()).unwrap(), p);

                    // Any change is refused.
                    if let Some(first) = l.first() {
                        let mut wrong = l.to_vec();
                        wrong[0] = Hash::node(first, first);
                        assert!(p.verify_leaves(&wrong, n, &root).is_err());
                        assert!(p.verify_leaves(&l[1..], n, &root).is_err());
                    }
                    for i in 0..p.siblings.len() {
                        let mut q = p.clone();
                        q.siblings[i] = Hash::leaf(b"x");
                        assert!(q.verify_leaves(l, n, &root).is_err());
                        let mut q = p.clone();
                        q.siblings.remove(i);
                        assert!(q.verify_leaves(l, n, &root).is_err());
                    }
                    let mut q = p.clone();
                    q.siblings.push(Hash::leaf(b"x"));
                    assert!(q.verify_leaves(l, n, &root).is_err());
                    if n > 0 {
                        let other = crate::tree_root(&nodes, n - 1).unwrap();
                        assert!(p.verify_leaves(l, n, &other).is_err());
                    }
                }
            }
        }
    }

    #[test]
    fn an_empty_range_yields_the_rfc_consistency_path() {
        // The nodes an empty range proof at `m` proves are enough to build RFC 9162's
        // (seeded) consistency path from `m` to `n`: what fork evidence carries.
        let (nodes, _) = tree(70);
        for n in 1..=70u64 {
            let root = crate::tree_root(&nodes, n).unwrap();
            for m in 0..=n {
                let p = RangeProof::generate(&nodes, m, m, n).unwrap();
                let proven = p.verify_leaves(&[], n, &root).unwrap();
                let from_proven = crate::ConsistencyProof::generate_seeded(&proven, m, n).unwrap();
                let from_tree = crate::ConsistencyProof::generate_seeded(&nodes, m, n).unwrap();
                assert_eq!(from_proven, from_tree, "{m} -> {n}");
            }
        }
    }

    fn count_siblings(n: u64, a: u64, b: u64) -> usize {
        fn walk(x: u64, a: u64, b: u64, count: &mut usize) {
            match place(x, a, b) {
                Place::Outside => *count += 1,
                Place::Inside => {}
                Place::Across => {
                    let half = 1u64 << (flat::height(x) - 1);
                    walk(x - half, a, b, count);
                    walk(x + half, a, b, count);
                }
            }
        }
        let mut count = 0;
        for p in flat::peaks(n) {
            walk(p, a, b, &mut count);
        }
        count
    }

    #[test]
    fn sibling_counts_stay_under_the_limit() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x >> 2).max(1);
            let a = x.rotate_left(17) % n;
            let b = a + (x.rotate_left(33) % (n - a + 1));
            let count = count_siblings(n, a, b);
            assert!(count <= MAX_SIBLINGS, "{a}..{b} of {n}: {count}");
        }
        // The worst case: a tree of 2^62 - 1 entries (62 peaks) and a short range inside
        // its largest peak, away from both of its edges: 61 other peaks and up to one
        // sibling per level on each side.
        let n = MAX_LENGTH - 1;
        let count = count_siblings(n, (1 << 60) - 1, (1 << 60) + 1);
        assert_eq!(count, 61 + 2 * 61 - 2);
        assert!(count <= MAX_SIBLINGS);
    }
}
