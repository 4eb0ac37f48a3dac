//! The registry of our own mappings: the address ranges a safe probe may
//! touch.
//!
//! Every mapping this crate creates (a VMA of an
//! [`AddressSpace`](crate::AddressSpace), a baseline
//! [`PlainMapping`](crate::baseline::PlainMapping)) is entered here when it
//! is mapped and removed before it is unmapped. A safe probe takes the
//! registry for read, checks its range, and keeps holding it across the
//! access, so the range cannot be unmapped (and its addresses handed to the
//! allocator) between the check and the access.
//!
//! Analogous to the kernel's `access_ok()` plus `mmap_lock` held across
//! `copy_from_user()`: the check and the access see the same mappings.
//!
//! # Lock order
//!
//! ```text
//! MAPPED (write)          mmap, munmap, address-space teardown, plain mappings
//!   mmap_lock (write)     (per address space)
//!     vmas
//! MAPPED (read)           one safe probe, across its access
//!   … the access may fault: the fault thread takes mmap_lock (read) and the
//!     exporter's locks, never MAPPED
//! ```
//!
//! Why it cannot deadlock: a probe holding `MAPPED` for read waits only for
//! the fault thread, and the fault thread never takes `MAPPED`, so a writer
//! queued on `MAPPED` waits for the probe, the probe for the fault thread,
//! and the fault thread for nothing of ours. The rule that keeps it so:
//! nobody probes, maps or unmaps while holding an exporter lock or
//! `mmap_lock` (a probe there could already wait on a fault that waits on
//! that lock).

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Disjoint `[start, end)` ranges of our mappings, keyed by start.
#[derive(Debug, Default)]
pub(crate) struct Mapped {
    ranges: BTreeMap<u64, u64>,
}

static MAPPED: RwLock<Mapped> = RwLock::new(Mapped { ranges: BTreeMap::new() });

/// Takes the registry for an update (mmap, munmap, teardown). Take it before
/// the address space's `mmap_lock`.
pub(crate) fn lock_for_update() -> RwLockWriteGuard<'static, Mapped> {
    // The map is updated by single inserts and removals that cannot panic
    // half-way in a way that matters; a poisoned lock is still consistent.
    MAPPED.write().unwrap_or_else(|e| e.into_inner())
}

/// Takes the registry for one probe.
pub(crate) fn lock_for_access() -> RwLockReadGuard<'static, Mapped> {
    MAPPED.read().unwrap_or_else(|e| e.into_inner())
}

impl Mapped {
    /// Enters `[start, end)`, which must not overlap a registered range
    /// (the kernel just mapped it, so nothing else of ours is there).
    pub(crate) fn insert(&mut self, start: u64, end: u64) {
        debug_assert!(start < end);
        debug_assert_eq!(self.reach(start), 0, "mapping {start:#x} registered twice");
        self.ranges.insert(start, end);
    }

    /// Removes `[from, to)` from whatever ranges it meets, keeping the parts
    /// outside it (a partial munmap).
    pub(crate) fn remove(&mut self, from: u64, to: u64) {
        let first = self.ranges.range(..=from).next_back().filter(|&(_, &e)| e > from).map_or(from, |(&s, _)| s);
        let hit: Vec<(u64, u64)> = self.ranges.range(first..to).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in hit {
            self.ranges.remove(&s);
            if s < from {
                self.ranges.insert(s, from);
            }
            if e > to {
                self.ranges.insert(to, e);
            }
        }
    }

    /// How many bytes from `addr` on are ours without a gap (adjacent
    /// mappings count as one run); 0 when `addr` is in none.
    pub(crate) fn reach(&self, addr: u64) -> u64 {
        let Some((_, &end)) = self.ranges.range(..=addr).next_back().filter(|&(_, &e)| e > addr) else {
            return 0;
        };
        let mut end = end;
        while let Some(&next_end) = self.ranges.get(&end) {
            end = next_end;
        }
        end - addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_runs_through_adjacent_ranges_and_stops_at_a_gap() {
        let mut m = Mapped::default();
        m.insert(0x1000, 0x3000);
        m.insert(0x3000, 0x4000);
        m.insert(0x6000, 0x7000);
        assert_eq!(m.reach(0x1800), 0x2800);
        assert_eq!(m.reach(0x4000), 0);
        assert_eq!(m.reach(0x6fff), 1);
        assert_eq!(m.reach(0x0fff), 0);
    }

    #[test]
    fn removing_the_middle_of_a_range_keeps_both_ends() {
        let mut m = Mapped::default();
        m.insert(0x1000, 0x9000);
        m.remove(0x3000, 0x5000);
        assert_eq!(m.reach(0x1000), 0x2000);
        assert_eq!(m.reach(0x3000), 0);
        assert_eq!(m.reach(0x5000), 0x4000);
        m.remove(0, u64::MAX);
        assert!(m.ranges.is_empty());
    }
}
