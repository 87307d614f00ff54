//! Sets of entry indexes held as disjoint, coalesced ranges: what a sparse store holds.

use std::collections::BTreeMap;
use std::ops::Range;

/// Disjoint, non-adjacent half-open ranges of `u64`, keyed by start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RangeSet {
    /// start → end; no two ranges overlap or touch.
    map: BTreeMap<u64, u64>,
}

impl RangeSet {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The set holding `0..len` (empty when `len` is 0).
    #[cfg(test)]
    pub(crate) fn dense(len: u64) -> Self {
        let mut set = Self::new();
        set.insert(0..len);
        set
    }

    /// Adds `range`, merging it with the ranges it overlaps or touches.
    pub(crate) fn insert(&mut self, range: Range<u64>) {
        if range.start >= range.end {
            return;
        }
        let (mut start, mut end) = (range.start, range.end);
        // A range that starts at or before `start` and reaches it.
        if let Some((&s, &e)) = self.map.range(..=start).next_back()
            && e >= start
        {
            start = s;
            end = end.max(e);
        }
        // Every range that starts inside (or right at the end of) the new one.
        let inside: Vec<(u64, u64)> = self.map.range(start..=end).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in inside {
            self.map.remove(&s);
            end = end.max(e);
        }
        self.map.insert(start, end);
    }

    /// The range that holds `index`, if any.
    pub(crate) fn containing(&self, index: u64) -> Option<Range<u64>> {
        let (&s, &e) = self.map.range(..=index).next_back()?;
        (index < e).then_some(s..e)
    }

    /// True when every index of `range` is held (an empty range is).
    pub(crate) fn covers(&self, range: Range<u64>) -> bool {
        if range.start >= range.end {
            return true;
        }
        self.containing(range.start)
            .is_some_and(|r| r.end >= range.end)
    }

    /// True when some index of `range` is held.
    pub(crate) fn overlaps(&self, range: Range<u64>) -> bool {
        if range.start >= range.end {
            return false;
        }
        if self.containing(range.start).is_some() {
            return true;
        }
        self.map.range(range.start..range.end).next().is_some()
    }

    /// The first held range that ends after `from`, clipped to start at `from` or later.
    pub(crate) fn next_from(&self, from: u64) -> Option<Range<u64>> {
        if let Some(r) = self.containing(from) {
            return Some(from..r.end);
        }
        self.map.range(from..).next().map(|(&s, &e)| s..e)
    }

    /// The parts of `range` that are not held, in order.
    pub(crate) fn missing(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut at = range.start;
        while at < range.end {
            match self.next_from(at) {
                Some(r) if r.start < range.end => {
                    if r.start > at {
                        out.push(at..r.start);
                    }
                    at = r.end;
                }
                _ => {
                    out.push(at..range.end);
                    break;
                }
            }
        }
        out
    }

    /// One past the last held index (0 when empty).
    pub(crate) fn end(&self) -> u64 {
        self.map.values().next_back().copied().unwrap_or(0)
    }

    /// The number of ranges.
    pub(crate) fn count(&self) -> usize {
        self.map.len()
    }

    /// The ranges, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.map.iter().map(|(&s, &e)| s..e)
    }

    pub(crate) fn to_vec(&self) -> Vec<Range<u64>> {
        self.iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same set as a bitmap over 0..64.
    fn bits(set: &RangeSet) -> u64 {
        let mut b = 0u64;
        for r in set.iter() {
            for i in r {
                b |= 1 << i;
            }
        }
        b
    }

    #[test]
    fn matches_a_bitmap() {
        // Deterministic pseudo-random inserts, checked against a bitmap after each.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200 {
            let mut set = RangeSet::new();
            let mut model = 0u64;
            for _ in 0..12 {
                let a = next() % 64;
                let b = (a + next() % 10).min(64);
                set.insert(a..b);
                for i in a..b {
                    model |= 1 << i;
                }
                assert_eq!(bits(&set), model);
                // Coalesced: no two ranges touch.
                let v = set.to_vec();
                for w in v.windows(2) {
                    assert!(w[0].end < w[1].start, "{v:?}");
                }
                for i in 0..64u64 {
                    assert_eq!(set.containing(i).is_some(), model >> i & 1 == 1);
                }
                let (c, d) = (next() % 64, next() % 64);
                let (c, d) = (c.min(d), c.max(d));
                let mask = (c..d).fold(0u64, |m, i| m | 1 << i);
                assert_eq!(set.covers(c..d), model & mask == mask);
                assert_eq!(set.overlaps(c..d), model & mask != 0);
                let miss = set.missing(c..d);
                let miss_bits = miss
                    .iter()
                    .flat_map(|r| r.clone())
                    .fold(0u64, |m, i| m | 1 << i);
                assert_eq!(miss_bits, mask & !model);
                assert_eq!(set.end(), 64 - model.leading_zeros() as u64);
            }
        }
        assert_eq!(RangeSet::dense(0).count(), 0);
        assert_eq!(RangeSet::dense(5).to_vec(), vec![0..5]);
    }
}
