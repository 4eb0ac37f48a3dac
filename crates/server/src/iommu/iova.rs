//! An interval map of IOVA ranges: what the kernel keeps in the rb-tree of
//! `vfio_dma` (Type1, `vfio_find_dma`) and in the interval trees of an
//! `io_pagetable` (iommufd, `iopt_area_iter_first`).
//!
//! Ranges are inclusive (`[start, last]`), as the kernel writes them, so a
//! mapping that ends at the top of the 64-bit space needs no exclusive end
//! that would wrap to 0.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included};

/// One entry: its inclusive range and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span<'a, T> {
    /// First IOVA.
    pub start: u64,
    /// Last IOVA (inclusive).
    pub last: u64,
    /// The value.
    pub val: &'a T,
}

impl<T> Span<'_, T> {
    /// Bytes covered (at most 2^64 - 1: no entry covers the whole space).
    pub fn len(&self) -> u64 {
        self.last - self.start + 1
    }
}

/// Non-overlapping inclusive ranges mapped to values, ordered by start.
#[derive(Debug, Clone)]
pub(crate) struct IovaMap<T> {
    /// start → (last, value). Invariant: no two entries intersect.
    map: BTreeMap<u64, (u64, T)>,
}

impl<T> Default for IovaMap<T> {
    fn default() -> Self {
        Self { map: BTreeMap::new() }
    }
}

impl<T> IovaMap<T> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds `[start, last]`.
    ///
    /// Preconditions: `start <= last` and no entry intersects the range
    /// (the callers check for `EEXIST` first).
    pub fn insert(&mut self, start: u64, last: u64, val: T) {
        debug_assert!(start <= last);
        debug_assert!(self.first_overlap(start, last).is_none(), "overlapping insert");
        self.map.insert(start, (last, val));
    }

    /// Removes the entry that starts at `start`.
    pub fn remove(&mut self, start: u64) -> Option<(u64, T)> {
        self.map.remove(&start)
    }

    /// Mutable access to the value of the entry that starts at `start`.
    pub fn get_mut(&mut self, start: u64) -> Option<&mut T> {
        self.map.get_mut(&start).map(|(_, v)| v)
    }

    /// The entry containing `iova`.
    pub fn find(&self, iova: u64) -> Option<Span<'_, T>> {
        let (&start, (last, val)) = self.map.range(..=iova).next_back()?;
        (iova <= *last).then_some(Span { start, last: *last, val })
    }

    /// The lowest entry intersecting `[start, last]`.
    pub fn first_overlap(&self, start: u64, last: u64) -> Option<Span<'_, T>> {
        self.overlapping(start, last).next()
    }

    /// Every entry intersecting `[start, last]`, in IOVA order.
    pub fn overlapping(&self, start: u64, last: u64) -> impl Iterator<Item = Span<'_, T>> + '_ {
        // An entry that starts below `start` can still reach into the range;
        // only the highest such entry can, as entries do not intersect.
        let below = self.find(start);
        let rest = self.map.range((Excluded(start), Included(last.max(start)))).map(|(&s, (l, v))| Span {
            start: s,
            last: *l,
            val: v,
        });
        below.into_iter().chain(rest).filter(move |s| s.start <= last)
    }

    /// Every entry, in IOVA order.
    pub fn iter(&self) -> impl Iterator<Item = Span<'_, T>> + '_ {
        self.map.iter().map(|(&s, (l, v))| Span { start: s, last: *l, val: v })
    }

    /// The ranges of every entry, in IOVA order.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&s, (l, _))| (s, *l))
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.map.clear();
    }
}

/// The holes between `used` ranges inside `[lo, hi]`, in order.
///
/// `used` may overlap and come in any order (reserved ranges of several
/// devices cover the same MSI window, as the kernel's reserved interval
/// tree allows).
pub(crate) fn holes(used: impl IntoIterator<Item = (u64, u64)>, lo: u64, hi: u64) -> Vec<(u64, u64)> {
    let mut used: Vec<(u64, u64)> = used.into_iter().filter(|&(s, l)| l >= lo && s <= hi).collect();
    used.sort_unstable();
    let mut out = Vec::new();
    // `next` is the lowest IOVA not yet known to be used; `None` once the
    // used ranges reach past `hi`.
    let mut next = Some(lo);
    for (s, l) in used {
        let Some(n) = next else { break };
        if s > n {
            out.push((n, s - 1));
        }
        if l >= n {
            next = if l >= hi { None } else { Some(l + 1) };
        }
    }
    if let Some(n) = next {
        out.push((n, hi));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(u64, u64)]) -> IovaMap<u32> {
        let mut m = IovaMap::new();
        for (i, &(s, l)) in entries.iter().enumerate() {
            m.insert(s, l, i as u32);
        }
        m
    }

    #[test]
    fn overlapping_finds_an_entry_that_starts_below_the_range() {
        let m = map(&[(0x1000, 0x2fff), (0x4000, 0x4fff), (0x8000, 0x8fff)]);
        let got: Vec<_> = m.overlapping(0x2000, 0x4000).map(|s| (s.start, s.last)).collect();
        assert_eq!(got, vec![(0x1000, 0x2fff), (0x4000, 0x4fff)]);
        assert!(m.first_overlap(0x3000, 0x3fff).is_none());
        assert_eq!(m.find(0x8fff).map(|s| *s.val), Some(2));
        assert!(m.find(0x9000).is_none());
    }

    #[test]
    fn an_entry_at_the_top_of_the_space_is_found_without_wrapping() {
        let m = map(&[(u64::MAX - 0xfff, u64::MAX)]);
        assert_eq!(m.find(u64::MAX).map(|s| s.len()), Some(0x1000));
        assert_eq!(m.overlapping(0, u64::MAX).count(), 1);
        assert_eq!(m.overlapping(u64::MAX, u64::MAX).count(), 1);
    }

    #[test]
    fn holes_merge_overlapping_used_ranges() {
        let used = [(0xfee0_0000, 0xfeef_ffff), (0xfee0_0000, 0xfeef_ffff), (1 << 48, u64::MAX)];
        assert_eq!(holes(used, 0, u64::MAX), vec![(0, 0xfedf_ffff), (0xfef0_0000, (1 << 48) - 1)]);
        assert_eq!(holes([], 0, u64::MAX), vec![(0, u64::MAX)]);
        assert_eq!(holes([(0, u64::MAX)], 0, u64::MAX), vec![]);
        assert_eq!(holes([(0x10, 0x1f)], 0x18, 0x30), vec![(0x20, 0x30)]);
    }
}
