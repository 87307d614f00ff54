//! The tree's hash: BLAKE3 with RFC 9162's domain separation between leaves and nodes.

use std::fmt;

/// A 32-byte BLAKE3 hash: a leaf, an inner node or a tree's root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash([u8; 32]);

impl Hash {
    /// Length in bytes.
    pub const LENGTH: usize = 32;

    /// Wraps 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash of the leaf holding `entry`: `blake3(0x00 ‖ entry)`.
    pub fn leaf(entry: &[u8]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(&[0x00]);
        h.update(entry);
        Self(*h.finalize().as_bytes())
    }

    /// The hash of an inner node: `blake3(0x01 ‖ left ‖ right)`.
    pub fn node(left: &Hash, right: &Hash) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(&[0x01]);
        h.update(&left.0);
        h.update(&right.0);
        Self(*h.finalize().as_bytes())
    }

    /// The root of the empty tree: `blake3("")`.
    pub fn empty_root() -> Self {
        Self(*blake3::hash(b"").as_bytes())
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_separated() {
        // A leaf whose entry looks like two hashes is not the node of those hashes.
        let a = Hash::leaf(b"a");
        let b = Hash::leaf(b"b");
        let mut both = Vec::new();
        both.extend_from_slice(a.as_bytes());
        both.extend_from_slice(b.as_bytes());
        assert_ne!(Hash::leaf(&both), Hash::node(&a, &b));
        assert_eq!(
            Hash::empty_root().to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let mut pre = vec![0u8];
        pre.extend_from_slice(b"a");
        assert_eq!(Hash::leaf(b"a").as_bytes(), blake3::hash(&pre).as_bytes());
    }
}
