//! The trap table: which of our VMAs trap every access, and what each
//! access is emulated against.
//!
//! Kept apart from the registry of mappings (`mapped`) because a safe probe
//! holds that registry for read across its access, and the access of a
//! probe on a register page traps into the handler, which reads this table:
//! reading one `std` `RwLock` twice from one thread can deadlock behind a
//! queued writer. This table is written only with the registry held for
//! write (so never while a probe of ours is inside a mapping), and only for
//! a few map operations at a time, by a thread that cannot trap meanwhile.
//!
//! # Lock order
//!
//! ```text
//! MAPPED (write) → TRAPS (write)       mmap, munmap, teardown: a few inserts
//! TRAPS (read) → exporter locks        the signal handler, across one emulation
//! ```
//!
//! Why the handler's read is safe: the only writers are map operations,
//! which hold it for a few tree updates and never wait for another thread
//! meanwhile; the handler runs in the thread that made the access, so that
//! thread holds no guard of this table (the handler does not trap again
//! while it holds one: a nested fault in it skips the table, see
//! `emulate`). Lookups in a `BTreeMap` do not allocate.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use page::{PgOff, VirtAddr, PAGE_SIZE};

use crate::mmio::VmMmio;

/// One trapping VMA: `[start, end)` with its geometry and its exporter.
#[derive(Debug, Clone)]
pub(crate) struct TrapVma {
    pub(crate) end: u64,
    pub(crate) vm_pgoff: PgOff,
    pub(crate) mmio: Arc<dyn VmMmio>,
}

/// The trapping VMAs of the process, keyed by `vm_start`.
#[derive(Debug, Default)]
pub(crate) struct Traps {
    vmas: BTreeMap<u64, TrapVma>,
}

static TRAPS: RwLock<Traps> = RwLock::new(Traps { vmas: BTreeMap::new() });

/// Takes the table for an update. Hold the registry of mappings for write
/// first.
pub(crate) fn lock_for_update() -> RwLockWriteGuard<'static, Traps> {
    // Updates are single inserts and removals; a poisoned lock is still
    // consistent.
    TRAPS.write().unwrap_or_else(|e| e.into_inner())
}

/// Takes the table for one emulation (the signal handler).
pub(crate) fn lock_for_trap() -> RwLockReadGuard<'static, Traps> {
    TRAPS.read().unwrap_or_else(|e| e.into_inner())
}

/// A found VMA: its start and entry.
pub(crate) type Found<'a> = (VirtAddr, &'a TrapVma);

impl Traps {
    /// Enters the VMA `[start, end)` at `vm_pgoff`, trapping into `mmio`.
    pub(crate) fn insert(&mut self, start: u64, end: u64, vm_pgoff: PgOff, mmio: Arc<dyn VmMmio>) {
        debug_assert!(start < end && self.find(start).is_none());
        self.vmas.insert(start, TrapVma { end, vm_pgoff, mmio });
    }

    /// Removes `[from, to)` from the VMAs it meets, keeping the parts
    /// outside it with their geometry as a VMA split leaves it (the tail's
    /// `vm_pgoff` advanced by the pages cut). Returns the exporters of
    /// entries removed whole, to be dropped with no lock held.
    pub(crate) fn remove(&mut self, from: u64, to: u64) -> Vec<Arc<dyn VmMmio>> {
        let first = self.find(from).map_or(from, |(s, _)| s.0);
        let hit: Vec<u64> = self.vmas.range(first..to).map(|(&s, _)| s).collect();
        let mut gone = Vec::new();
        for s in hit {
            let Some(v) = self.vmas.remove(&s) else { continue };
            if s < from {
                self.vmas.insert(s, TrapVma { end: from, ..v.clone() });
            }
            if v.end > to {
                let pgoff = PgOff(v.vm_pgoff.0.wrapping_add((to - s) / PAGE_SIZE));
                self.vmas.insert(to, TrapVma { end: v.end, vm_pgoff: pgoff, mmio: v.mmio.clone() });
            }
            gone.push(v.mmio);
        }
        gone
    }

    /// The trapping VMA holding `addr`.
    pub(crate) fn find(&self, addr: u64) -> Option<Found<'_>> {
        self.vmas.range(..=addr).next_back().filter(|(_, v)| addr < v.end).map(|(&s, v)| (VirtAddr(s), v))
    }

    /// Every entry as `(start, end, vm_pgoff)`, in address order (tests).
    #[cfg(test)]
    fn geometry(&self) -> Vec<(u64, u64, u64)> {
        self.vmas.iter().map(|(&s, v)| (s, v.end, v.vm_pgoff.0)).collect()
    }
}

/// The geometry of the trapping VMA holding `addr`, as the handler would
/// translate it: `(vm_start, vm_end, vm_pgoff)`.
pub fn trap_geometry(addr: u64) -> Option<(u64, u64, u64)> {
    let traps = lock_for_trap();
    traps.find(addr).map(|(s, v)| (s.0, v.end, v.vm_pgoff.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::{MmioRegs, MmioRevoked};

    #[derive(Debug)]
    struct Nothing;
    impl VmMmio for Nothing {
        fn with_registers(&self, _access: &mut dyn FnMut(&dyn MmioRegs)) -> Result<(), MmioRevoked> {
            Err(MmioRevoked)
        }
    }

    const P: u64 = PAGE_SIZE;

    #[test]
    fn cutting_the_middle_keeps_a_head_and_a_tail_with_advanced_pgoff() {
        let mut t = Traps::default();
        t.insert(0x10 * P, 0x18 * P, PgOff(0x100), Arc::new(Nothing));
        let gone = t.remove(0x12 * P, 0x15 * P);
        assert_eq!(gone.len(), 1);
        assert_eq!(t.geometry(), vec![(0x10 * P, 0x12 * P, 0x100), (0x15 * P, 0x18 * P, 0x105)]);
        assert!(t.find(0x13 * P).is_none());
        assert_eq!(t.find(0x17 * P + 5).map(|(s, v)| (s.0, v.vm_pgoff.0)), Some((0x15 * P, 0x105)));
        // A cut across both pieces and past them removes what it covers.
        t.remove(0x11 * P, 0x16 * P);
        assert_eq!(t.geometry(), vec![(0x10 * P, 0x11 * P, 0x100), (0x16 * P, 0x18 * P, 0x106)]);
        t.remove(0, u64::MAX);
        assert!(t.geometry().is_empty());
    }

    #[test]
    fn cutting_the_head_advances_the_remaining_pgoff() {
        let mut t = Traps::default();
        t.insert(0x20 * P, 0x24 * P, PgOff(7), Arc::new(Nothing));
        t.insert(0x24 * P, 0x26 * P, PgOff(50), Arc::new(Nothing));
        t.remove(0x20 * P, 0x21 * P);
        assert_eq!(t.geometry(), vec![(0x21 * P, 0x24 * P, 8), (0x24 * P, 0x26 * P, 50)]);
        assert!(t.find(0x20 * P).is_none());
        assert!(t.find(0x26 * P).is_none());
    }
}
