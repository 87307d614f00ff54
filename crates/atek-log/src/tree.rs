//! The Merkle tree over the entries: where its nodes come from, its peaks, and the root of
//! any of the subtrees RFC 9162's proofs need.

use std::collections::BTreeMap;

use crate::{Hash, LogError, flat};

/// Where the tree's stored nodes come from: a file, memory, a replica's sparse store.
///
/// Nodes are addressed by flat-tree index (leaf `i` is node `2i`; a perfect subtree's root
/// sits at its in-order middle). Only roots of perfect subtrees are ever asked for; they
/// never change once the tree has grown past them, so a source holding a longer tree
/// answers for every shorter one.
pub trait NodeSource {
    /// The node at `flat_index`, or `None` if this source does not hold it.
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError>;
}

impl<T: NodeSource + ?Sized> NodeSource for &T {
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError> {
        (**self).node(flat_index)
    }
}

impl<T: NodeSource + ?Sized> NodeSource for Box<T> {
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError> {
        (**self).node(flat_index)
    }
}

/// A `Vec` indexed by flat index, as built by appending (holes are `None`).
impl NodeSource for Vec<Option<Hash>> {
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError> {
        Ok(usize::try_from(flat_index)
            .ok()
            .and_then(|i| self.get(i).copied().flatten()))
    }
}

/// A sparse map of nodes, as a replica holding only what it verified would keep.
impl NodeSource for BTreeMap<u64, Hash> {
    fn node(&self, flat_index: u64) -> Result<Option<Hash>, LogError> {
        Ok(self.get(&flat_index).copied())
    }
}

/// Reads a node the caller knows must be there.
pub(crate) fn need(src: &impl NodeSource, flat_index: u64) -> Result<Hash, LogError> {
    src.node(flat_index)?
        .ok_or(LogError::MissingNode { flat_index })
}

/// RFC 9162's MTH(D[start:end]): the stored node when the range is a perfect subtree, else
/// split at the largest power of two below its size and hash the two halves. Every range
/// RFC 9162's proofs visit starts on a boundary of its own left half, so the left half is
/// always a stored node and only the right spine is computed (O(log n) reads).
pub(crate) fn range_root(src: &impl NodeSource, start: u64, end: u64) -> Result<Hash, LogError> {
    let size = end - start;
    if size == 0 {
        return Ok(Hash::empty_root());
    }
    if let Some(node) = flat::perfect(start, size) {
        return need(src, node);
    }
    let k = flat::split(size);
    let left = range_root(src, start, start + k)?;
    let right = range_root(src, start + k, end)?;
    Ok(Hash::node(&left, &right))
}

/// The root of the tree of the first `len` entries, from the stored nodes in `src` (which
/// may hold a longer tree): RFC 9162's MTH, computed as the right fold of the peaks.
pub fn tree_root(src: &impl NodeSource, len: u64) -> Result<Hash, LogError> {
    range_root(src, 0, len)
}

/// The tree's growing edge: its length and the hashes of its peaks. Enough to append and
/// to compute the root without reading anything else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Peaks {
    len: u64,
    /// Largest subtree first; heights are the set bits of `len`, falling.
    hashes: Vec<Hash>,
}

impl Peaks {
    /// The peaks of the tree of `len` leaves, read from `src`.
    pub(crate) fn load(src: &impl NodeSource, len: u64) -> Result<Self, LogError> {
        let hashes = flat::peaks(len)
            .map(|x| need(src, x))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { len, hashes })
    }

    /// The number of leaves.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends a leaf, calling `emit(flat_index, hash)` for the leaf and for every parent it
    /// completes, bottom up.
    pub(crate) fn append(&mut self, leaf: Hash, mut emit: impl FnMut(u64, Hash)) {
        let i = self.len;
        let mut nodes = flat::completed_by(i);
        let mut hash = leaf;
        if let Some(x) = nodes.next() {
            emit(x, hash);
        }
        for x in nodes {
            // Each parent joins the last peak (its left child) and the node just made.
            let left = self.hashes.pop().unwrap_or(hash);
            hash = Hash::node(&left, &hash);
            emit(x, hash);
        }
        self.hashes.push(hash);
        self.len += 1;
    }

    /// The root hash (`blake3("")` for the empty tree).
    pub(crate) fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        let Some(last) = iter.next() else {
            return Hash::empty_root();
        };
        iter.fold(*last, |right, left| Hash::node(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_root_equals_range_root() {
        let mut nodes: Vec<Option<Hash>> = Vec::new();
        let mut peaks = Peaks::default();
        assert_eq!(peaks.root(), Hash::empty_root());
        for i in 0..200u64 {
            peaks.append(Hash::leaf(&i.to_be_bytes()), |x, h| {
                let x = usize::try_from(x).unwrap();
                if nodes.len() <= x {
                    nodes.resize(x + 1, None);
                }
                assert!(nodes[x].is_none(), "node {x} written twice");
                nodes[x] = Some(h);
            });
            let n = i + 1;
            assert_eq!(peaks.len(), n);
            assert_eq!(peaks.root(), tree_root(&nodes, n).unwrap(), "n = {n}");
            assert_eq!(Peaks::load(&nodes, n).unwrap(), peaks);
            // A prefix's root is computable from the longer tree's nodes.
            let m = n / 2;
            assert_eq!(
                Peaks::load(&nodes, m).unwrap().root(),
                tree_root(&nodes, m).unwrap()
            );
        }
    }

    /// RFC 9162's MTH over leaf hashes, by its definition.
    fn naive_mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Hash::empty_root(),
            1 => leaves[0],
            n => {
                let k = flat::split(n as u64) as usize;
                Hash::node(&naive_mth(&leaves[..k]), &naive_mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn appended_nodes_are_the_perfect_subtrees() {
        let mut peaks = Peaks::default();
        let mut leaves = Vec::new();
        for i in 0..130u64 {
            let leaf = Hash::leaf(&i.to_le_bytes());
            leaves.push(leaf);
            peaks.append(leaf, |x, h| {
                let (s, e) = flat::leaf_span(x);
                assert_eq!(h, naive_mth(&leaves[s as usize..e as usize]), "node {x}");
            });
            assert_eq!(peaks.root(), naive_mth(&leaves));
        }
    }

    #[test]
    fn missing_nodes_are_named() {
        let empty: Vec<Option<Hash>> = Vec::new();
        assert!(matches!(
            tree_root(&empty, 3),
            Err(LogError::MissingNode { flat_index: 1 })
        ));
    }
}
