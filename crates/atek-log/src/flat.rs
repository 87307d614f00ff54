//! Flat-tree (in-order) node indexing.
//!
//! Leaf `i` is node `2i`; the root of a perfect subtree of height `h` (2^h leaves) whose
//! leaves start at `o · 2^h` sits at its in-order middle, `o · 2^(h+1) + 2^h − 1`. A node's
//! height is the number of trailing one bits of its index. Only perfect subtrees have
//! indexes: they never change once complete, so a store of them serves every tree size.
//!
//! The tree of `n` leaves is the right fold of its *peaks*, the perfect subtrees of `n`'s
//! binary decomposition, largest first.

/// The node of leaf `i`.
pub(crate) fn leaf(i: u64) -> u64 {
    2 * i
}

/// The height of node `x` (0 for leaves).
pub(crate) fn height(x: u64) -> u32 {
    x.trailing_ones()
}

/// The node of height `h` whose leaves start at `offset · 2^h`.
pub(crate) fn index(h: u32, offset: u64) -> u64 {
    (offset << (h + 1)) | ((1u64 << h) - 1)
}

/// Which subtree of its height node `x` is, counted from the left.
pub(crate) fn offset(x: u64) -> u64 {
    x >> (height(x) + 1)
}

/// The parent of `x`.
pub(crate) fn parent(x: u64) -> u64 {
    index(height(x) + 1, offset(x) >> 1)
}

/// The two children of `x`, or `None` for a leaf.
#[cfg(test)]
pub(crate) fn children(x: u64) -> Option<(u64, u64)> {
    match height(x) {
        0 => None,
        h => {
            let half = 1u64 << (h - 1);
            Some((x - half, x + half))
        }
    }
}

/// The leaves under `x`: `start..end`.
pub(crate) fn leaf_span(x: u64) -> (u64, u64) {
    let h = height(x);
    let start = offset(x) << h;
    (start, start + (1u64 << h))
}

/// The node over leaves `start..start + size`, if that range is a perfect subtree (`size` a
/// power of two and `start` a multiple of it).
pub(crate) fn perfect(start: u64, size: u64) -> Option<u64> {
    if size.is_power_of_two() && start.is_multiple_of(size) {
        let h = size.trailing_zeros();
        Some(index(h, start >> h))
    } else {
        None
    }
}

/// The largest power of two strictly less than `n` (RFC 9162's split point `k`). `n ≥ 2`.
pub(crate) fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The peaks of the tree of `n` leaves, left to right (largest first).
pub(crate) fn peaks(n: u64) -> impl Iterator<Item = u64> {
    let mut start = 0u64;
    (0..64u32).rev().filter_map(move |h| {
        if n & (1u64 << h) == 0 {
            return None;
        }
        let node = index(h, start >> h);
        start += 1u64 << h;
        Some(node)
    })
}

/// The nodes that appending leaf `i` completes, bottom up: the leaf itself and each parent
/// whose right subtree it closes.
pub(crate) fn completed_by(i: u64) -> impl Iterator<Item = u64> {
    let parents = (i + 1).trailing_zeros();
    let mut node = leaf(i);
    (0..=parents).map(move |k| {
        if k > 0 {
            node = parent(node);
        }
        node
    })
}

/// One past the largest node index of the tree of `n` leaves (0 for the empty tree).
pub(crate) fn node_bound(n: u64) -> u64 {
    if n == 0 { 0 } else { 2 * n - 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every perfect node of the tree of `n` leaves, by brute force over heights and offsets.
    fn perfect_nodes(n: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for h in 0..10u32 {
            let size = 1u64 << h;
            let mut o = 0;
            while (o + 1) * size <= n {
                out.push(index(h, o));
                o += 1;
            }
        }
        out.sort_unstable();
        out
    }

    #[test]
    fn small_indexes_by_hand() {
        //        3
        //    1       5
        //  0   2   4   6   8
        assert_eq!(leaf(3), 6);
        assert_eq!(index(1, 0), 1);
        assert_eq!(index(1, 1), 5);
        assert_eq!(index(2, 0), 3);
        assert_eq!(index(3, 0), 7);
        assert_eq!(parent(0), 1);
        assert_eq!(parent(2), 1);
        assert_eq!(parent(1), 3);
        assert_eq!(parent(5), 3);
        assert_eq!(parent(8), 9);
        assert_eq!(children(3), Some((1, 5)));
        assert_eq!(children(4), None);
        assert_eq!(leaf_span(3), (0, 4));
        assert_eq!(leaf_span(5), (2, 4));
        assert_eq!(peaks(5).collect::<Vec<_>>(), vec![3, 8]);
        assert_eq!(peaks(7).collect::<Vec<_>>(), vec![3, 9, 12]);
        assert_eq!(peaks(0).count(), 0);
        assert_eq!(completed_by(3).collect::<Vec<_>>(), vec![6, 5, 3]);
        assert_eq!(completed_by(4).collect::<Vec<_>>(), vec![8]);
        assert_eq!(split(2), 1);
        assert_eq!(split(3), 2);
        assert_eq!(split(4), 2);
        assert_eq!(split(5), 4);
        assert_eq!(split(1 << 40), 1 << 39);
    }

    #[test]
    fn exhaustive_structure_up_to_256_leaves() {
        let mut completed = Vec::new();
        for n in 0..=256u64 {
            // The nodes appended so far are exactly the perfect nodes of n leaves.
            let mut sorted = completed.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, perfect_nodes(n), "n = {n}");
            for &x in &completed {
                assert!(x < node_bound(n), "n = {n}, x = {x}");
            }

            // Peaks cover 0..n left to right with perfect subtrees of falling size.
            let mut next = 0;
            let mut last_h = u32::MAX;
            for p in peaks(n) {
                let (s, e) = leaf_span(p);
                assert_eq!(s, next);
                assert!(height(p) < last_h);
                assert_eq!(perfect(s, e - s), Some(p));
                last_h = height(p);
                next = e;
            }
            assert_eq!(next, n);

            if n < 256 {
                completed.extend(completed_by(n));
            }
        }
    }

    #[test]
    fn exhaustive_node_relations() {
        for x in 0..1024u64 {
            let (s, e) = leaf_span(x);
            assert_eq!(perfect(s, e - s), Some(x));
            assert_eq!(index(height(x), offset(x)), x);
            let p = parent(x);
            let (l, r) = children(p).unwrap();
            assert!(l == x || r == x);
            let (ps, pe) = leaf_span(p);
            assert!(ps <= s && e <= pe && pe - ps == 2 * (e - s));
            if let Some((l, r)) = children(x) {
                assert_eq!(parent(l), x);
                assert_eq!(parent(r), x);
                assert_eq!(leaf_span(l).0, s);
                assert_eq!(leaf_span(r).1, e);
            } else {
                assert_eq!(x % 2, 0);
            }
        }
        for size in 1..64u64 {
            for start in 0..64u64 {
                let expect = size.is_power_of_two() && start % size == 0;
                assert_eq!(perfect(start, size).is_some(), expect);
            }
        }
        for n in 2..2048u64 {
            let k = split(n);
            assert!(k.is_power_of_two() && k < n && 2 * k >= n, "n = {n}");
        }
    }
}
