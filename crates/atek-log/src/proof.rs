//! RFC 9162 inclusion and consistency proofs over the BLAKE3 tree.

use crate::tree::{NodeSource, range_root};
use crate::wire::{Reader, Writer};
use crate::{Hash, LogError, TreeHead, flat};

/// The most hashes a proof path may hold. A log holds at most 2^62 entries, so an audit path
/// has at most 62 hashes and a consistency path at most 63, plus the optional seed.
pub const MAX_PATH: usize = 64;

/// The format version of encoded proofs.
const PROOF_VERSION: u8 = 1;

/// Proof that the entry at `index` is in the tree of `tree_size` entries: RFC 9162 §2.1.3's
/// audit path, the sibling hashes from the leaf up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The entry's index.
    pub index: u64,
    /// The size of the tree it is proven against.
    pub tree_size: u64,
    /// The audit path, leaf level first.
    pub path: Vec<Hash>,
}

/// Proof that the tree of `new_size` entries extends the tree of `old_size`: RFC 9162
/// §2.1.4's consistency path.
///
/// When `old_size` is a power of two the RFC path leaves out the old tree's root, which the
/// verifier supplies. Such a path may instead start with that subtree's root as the newer
/// tree holds it (the *seed*, see [`ConsistencyProof::generate_seeded`]): verification treats
/// both forms alike, and only the seeded one can show a fork at such a size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The older tree's size.
    pub old_size: u64,
    /// The newer tree's size.
    pub new_size: u64,
    /// The consistency path.
    pub path: Vec<Hash>,
}

impl InclusionProof {
    /// The audit path of entry `index` in the tree of `tree_size` entries, from the nodes in
    /// `src` (which may hold a longer tree).
    pub fn generate(src: &impl NodeSource, index: u64, tree_size: u64) -> Result<Self, LogError> {
        if index >= tree_size {
            return Err(LogError::OutOfRange {
                index,
                length: tree_size,
            });
        }
        let mut path = Vec::new();
        audit_path(src, index, 0, tree_size, &mut path)?;
        Ok(Self {
            index,
            tree_size,
            path,
        })
    }

    /// Checks that `entry` is entry `index` of the tree `head` describes. The proof's size
    /// must be the head's length: a root only means something with its size.
    pub fn verify(&self, entry: &[u8], head: &TreeHead) -> Result<(), LogError> {
        self.verify_leaf(&Hash::leaf(entry), head.length, &head.root)
    }

    /// [`InclusionProof::verify`] from a leaf hash and a bare size and root (RFC 9162
    /// §2.1.3.2).
    pub fn verify_leaf(&self, leaf: &Hash, tree_size: u64, root: &Hash) -> Result<(), LogError> {
        let bad = |reason| LogError::BadProof {
            what: "inclusion proof",
            reason,
        };
        if self.tree_size != tree_size {
            return Err(bad("its tree size is not the head's"));
        }
        if self.index >= self.tree_size {
            return Err(bad("the index is not below the tree size"));
        }
        let mut fn_ = self.index;
        let mut sn = self.tree_size - 1;
        let mut r = *leaf;
        for p in &self.path {
            if sn == 0 {
                return Err(bad("the path is too long"));
            }
            if fn_ & 1 == 1 || fn_ == sn {
                r = Hash::node(p, &r);
                if fn_ & 1 == 0 {
                    while fn_ & 1 == 0 && fn_ != 0 {
                        fn_ >>= 1;
                        sn >>= 1;
                    }
                }
            } else {
                r = Hash::node(&r, p);
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        if sn != 0 {
            return Err(bad("the path is too short"));
        }
        if r != *root {
            return Err(bad("the path does not lead to the root"));
        }
        Ok(())
    }

    /// The binary form: version (1), index (u64 BE), tree size (u64 BE), path length (u8),
    /// the path's hashes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(18 + 32 * self.path.len());
        w.u8(PROOF_VERSION);
        w.u64(self.index);
        w.u64(self.tree_size);
        encode_path(&mut w, &self.path);
        w.into_vec()
    }

    /// Reads [`InclusionProof::encode`]'s form; the input must be exactly one proof.
    pub fn decode(bytes: &[u8]) -> Result<Self, LogError> {
        let what = "inclusion proof";
        let mut r = Reader::new(what, bytes);
        r.version(PROOF_VERSION)?;
        let index = r.u64()?;
        let tree_size = r.u64()?;
        let path = decode_path(&mut r)?;
        r.finish()?;
        Ok(Self {
            index,
            tree_size,
            path,
        })
    }
}

impl ConsistencyProof {
    /// RFC 9162's consistency path from the tree of `old_size` entries to the tree of
    /// `new_size`, from the nodes in `src` (which may hold a longer tree). Empty when the
    /// sizes are equal or `old_size` is 0 (every tree extends the empty one).
    pub fn generate(src: &impl NodeSource, old_size: u64, new_size: u64) -> Result<Self, LogError> {
        if old_size > new_size {
            return Err(LogError::OutOfRange {
                index: old_size,
                length: new_size,
            });
        }
        let mut path = Vec::new();
        if old_size > 0 && old_size < new_size {
            subproof(src, old_size, 0, new_size, true, &mut path)?;
        }
        Ok(Self {
            old_size,
            new_size,
            path,
        })
    }

    /// Like [`ConsistencyProof::generate`], but when `old_size` is a power of two (and the
    /// sizes differ) the path starts with the newer tree's root of its first `old_size`
    /// entries. The holder of the newer tree uses this form to show a fork at such a size.
    pub fn generate_seeded(
        src: &impl NodeSource,
        old_size: u64,
        new_size: u64,
    ) -> Result<Self, LogError> {
        let mut proof = Self::generate(src, old_size, new_size)?;
        if old_size.is_power_of_two() && old_size < new_size {
            let seed = range_root(src, 0, old_size)?;
            proof.path.insert(0, seed);
        }
        Ok(proof)
    }

    /// Checks that the tree `new` describes extends the tree `old` describes (RFC 9162
    /// §2.1.4.2). The proof's sizes must be the heads' lengths.
    pub fn verify(&self, old: &TreeHead, new: &TreeHead) -> Result<(), LogError> {
        match self.evaluate(old.length, &old.root, new.length, &new.root)? {
            Evaluation::Consistent => Ok(()),
            Evaluation::OldRootDiffers => Err(LogError::BadProof {
                what: "consistency proof",
                reason: "the newer tree does not extend the older root",
            }),
        }
    }

    /// Runs the RFC 9162 §2.1.4.2 computation. `Ok(OldRootDiffers)` means the path
    /// reproduces the newer root (so it is the newer tree's own) but yields an older root
    /// other than `old_root`: the two trees are not consistent. Any other failure is an
    /// error: a bad proof, which proves nothing.
    pub(crate) fn evaluate(
        &self,
        old_size: u64,
        old_root: &Hash,
        new_size: u64,
        new_root: &Hash,
    ) -> Result<Evaluation, LogError> {
        let bad = |reason| LogError::BadProof {
            what: "consistency proof",
            reason,
        };
        if self.old_size != old_size || self.new_size != new_size {
            return Err(bad("its sizes are not the heads' lengths"));
        }
        if old_size > new_size {
            return Err(bad("the older size is larger than the newer"));
        }
        if old_size == new_size || old_size == 0 {
            if !self.path.is_empty() {
                return Err(bad("the path should be empty"));
            }
            if old_size == 0 {
                // Heads of length 0 carry the empty root (checked by head verification).
                return Ok(Evaluation::Consistent);
            }
            return Ok(if old_root == new_root {
                Evaluation::Consistent
            } else {
                Evaluation::OldRootDiffers
            });
        }
        let expected = consistency_path_len(old_size, new_size);
        let mut path: Vec<Hash> = Vec::with_capacity(self.path.len() + 1);
        if old_size.is_power_of_two() {
            if self.path.len() == expected + 1 {
                // Seeded: the newer tree's own root of the first old_size entries.
            } else {
                path.push(*old_root);
            }
        }
        path.extend_from_slice(&self.path);
        let Some((first, rest)) = path.split_first() else {
            return Err(bad("the path is empty"));
        };
        let mut fn_ = old_size - 1;
        let mut sn = new_size - 1;
        while fn_ & 1 == 1 {
            fn_ >>= 1;
            sn >>= 1;
        }
        let mut fr = *first;
        let mut sr = *first;
        for c in rest {
            if sn == 0 {
                return Err(bad("the path is too long"));
            }
            if fn_ & 1 == 1 || fn_ == sn {
                fr = Hash::node(c, &fr);
                sr = Hash::node(c, &sr);
                if fn_ & 1 == 0 {
                    while fn_ & 1 == 0 && fn_ != 0 {
                        fn_ >>= 1;
                        sn >>= 1;
                    }
                }
            } else {
                sr = Hash::node(&sr, c);
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        if sn != 0 {
            return Err(bad("the path is too short"));
        }
        if sr != *new_root {
            return Err(bad("the path does not lead to the newer root"));
        }
        Ok(if fr == *old_root {
            Evaluation::Consistent
        } else {
            Evaluation::OldRootDiffers
        })
    }

    /// The binary form: version (1), old size (u64 BE), new size (u64 BE), path length
    /// (u8), the path's hashes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(18 + 32 * self.path.len());
        self.encode_into(&mut w);
        w.into_vec()
    }

    pub(crate) fn encode_into(&self, w: &mut Writer) {
        w.u8(PROOF_VERSION);
        w.u64(self.old_size);
        w.u64(self.new_size);
        encode_path(w, &self.path);
    }

    /// Reads [`ConsistencyProof::encode`]'s form; the input must be exactly one proof.
    pub fn decode(bytes: &[u8]) -> Result<Self, LogError> {
        let mut r = Reader::new("consistency proof", bytes);
        let proof = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(proof)
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, LogError> {
        r.version(PROOF_VERSION)?;
        let old_size = r.u64()?;
        let new_size = r.u64()?;
        let path = decode_path(r)?;
        Ok(Self {
            old_size,
            new_size,
            path,
        })
    }
}

/// What a consistency path says about two roots, when it is the newer tree's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evaluation {
    /// The newer tree extends the older root.
    Consistent,
    /// The newer tree's prefix has another root: the trees are not consistent.
    OldRootDiffers,
}

/// RFC 9162's PATH(m, D[start:end]), appended to `out` leaf level first.
fn audit_path(
    src: &impl NodeSource,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), LogError> {
    if end - start <= 1 {
        return Ok(());
    }
    let k = flat::split(end - start);
    if m < start + k {
        audit_path(src, m, start, start + k, out)?;
        out.push(range_root(src, start + k, end)?);
    } else {
        audit_path(src, m, start + k, end, out)?;
        out.push(range_root(src, start, start + k)?);
    }
    Ok(())
}

/// RFC 9162's SUBPROOF(m, D[start:end], b), with `m` the absolute old size.
fn subproof(
    src: &impl NodeSource,
    m: u64,
    start: u64,
    end: u64,
    b: bool,
    out: &mut Vec<Hash>,
) -> Result<(), LogError> {
    if m == end {
        if !b {
            out.push(range_root(src, start, end)?);
        }
        return Ok(());
    }
    let k = flat::split(end - start);
    if m <= start + k {
        subproof(src, m, start, start + k, b, out)?;
        out.push(range_root(src, start + k, end)?);
    } else {
        subproof(src, m, start + k, end, false, out)?;
        out.push(range_root(src, start, start + k)?);
    }
    Ok(())
}

/// The length of RFC 9162's consistency path for `0 < m < n`.
fn consistency_path_len(m: u64, n: u64) -> usize {
    let (mut start, mut end, mut b, mut len) = (0u64, n, true, 0usize);
    loop {
        if m == end {
            return len + usize::from(!b);
        }
        let k = flat::split(end - start);
        len += 1;
        if m <= start + k {
            end = start + k;
        } else {
            start += k;
            b = false;
        }
    }
}

fn encode_path(w: &mut Writer, path: &[Hash]) {
    // Paths longer than MAX_PATH are never generated; a u8 holds the length.
    w.u8(u8::try_from(path.len()).unwrap_or(u8::MAX));
    for h in path {
        w.bytes(h.as_bytes());
    }
}

fn decode_path(r: &mut Reader<'_>) -> Result<Vec<Hash>, LogError> {
    let len = usize::from(r.u8()?);
    if len > MAX_PATH {
        return Err(r.error(format!(
            "path of {len} hashes is longer than the limit of {MAX_PATH}"
        )));
    }
    (0..len).map(|_| r.hash()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_lengths_match_generation() {
        let mut nodes: Vec<Option<Hash>> = Vec::new();
        let mut peaks = crate::tree::Peaks::default();
        for i in 0..70u64 {
            peaks.append(Hash::leaf(&i.to_be_bytes()), |x, h| {
                let x = usize::try_from(x).unwrap();
                if nodes.len() <= x {
                    nodes.resize(x + 1, None);
                }
                nodes[x] = Some(h);
            });
        }
        for n in 2..=70 {
            for m in 1..n {
                let p = ConsistencyProof::generate(&nodes, m, n).unwrap();
                assert_eq!(p.path.len(), consistency_path_len(m, n), "{m} {n}");
            }
        }
    }
}
