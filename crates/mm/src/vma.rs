//! Virtual memory areas: the pure bookkeeping half (no syscalls).
//!
//! Analogous to Linux's `struct vm_area_struct`: `[vm_start, vm_end)`, the
//! `vm_pgoff` exactly as passed to mmap, and the operations that serve its
//! faults. A VMA also remembers which physical pieces back it (in VA order)
//! so the fault engine can check every insert against what is really mapped,
//! and which mapping (the original mmap call) it came from, so a zap reaches
//! every fragment left after splits.

use std::fmt;
use std::sync::Arc;

use page::{PgOff, PhysAddr, VirtAddr, HPAGE_PMD_SIZE, PAGE_SIZE};

use crate::fault::VmOperations;
use crate::phys::PhysMemory;

/// Identity of one mmap call; all fragments a split leaves share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MappingId(pub u64);

impl fmt::Display for MappingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// One physically contiguous piece of backing, in VA order.
#[derive(Debug, Clone)]
pub struct MapPiece {
    /// The memory holding this piece.
    pub memory: Arc<PhysMemory>,
    /// Physical address of the piece's first byte.
    pub paddr: PhysAddr,
    /// Length in bytes (page multiple).
    pub len: u64,
}

/// What backs one virtual address of a VMA, from [`Vma::backing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backing {
    /// The physical address behind the virtual one.
    pub paddr: PhysAddr,
    /// One past the last virtual address the same backing piece covers:
    /// physical contiguity ends there.
    pub piece_end: VirtAddr,
}

/// One VMA of an [`AddressSpace`](crate::AddressSpace).
#[derive(Clone)]
pub struct Vma {
    /// First byte.
    pub vm_start: VirtAddr,
    /// One past the last byte.
    pub vm_end: VirtAddr,
    /// Page offset exactly as passed to mmap, advanced by splits as Linux does.
    pub vm_pgoff: PgOff,
    /// Whether the mapping is writable (`rw-s` rather than `r--s`).
    pub writable: bool,
    /// Path column of the maps view, as the exporter named its file.
    pub path: String,
    /// Inode-like number shown in the maps view (the buffer's identity).
    pub inode: u64,
    /// The mmap call this VMA came from.
    pub mapping: MappingId,
    /// Backing pieces in VA order; their lengths add up to the VMA length.
    pub pieces: Vec<MapPiece>,
    /// Fault operations (analogous to `vm_ops` + `vm_private_data`).
    pub ops: Arc<dyn VmOperations>,
}

impl fmt::Debug for Vma {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vma")
            .field("vm_start", &self.vm_start)
            .field("vm_end", &self.vm_end)
            .field("vm_pgoff", &self.vm_pgoff)
            .field("path", &self.path)
            .field("mapping", &self.mapping)
            .field("pieces", &self.pieces.len())
            .finish()
    }
}

impl Vma {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.vm_end.0 - self.vm_start.0
    }

    /// Whether `va` lies inside `[vm_start, vm_end)`.
    pub fn contains(&self, va: VirtAddr) -> bool {
        self.vm_start <= va && va < self.vm_end
    }

    /// What backs `va`: its physical address, and how far the physically
    /// contiguous piece holding it reaches.
    pub fn backing(&self, va: VirtAddr) -> Option<Backing> {
        if !self.contains(va) {
            return None;
        }
        let mut piece_va = self.vm_start.0;
        for p in &self.pieces {
            if va.0 < piece_va + p.len {
                return Some(Backing {
                    paddr: PhysAddr(p.paddr.0 + (va.0 - piece_va)),
                    piece_end: VirtAddr(piece_va + p.len),
                });
            }
            piece_va += p.len;
        }
        None
    }

    /// The part of this VMA around `va` that the kernel holds as one VMA:
    /// one frame of one piece (mappings of different frame files never
    /// merge). A `UFFDIO_CONTINUE` and a PMD must stay inside it.
    pub fn frame_run(&self, va: VirtAddr) -> Option<(VirtAddr, VirtAddr)> {
        if !self.contains(va) {
            return None;
        }
        let mut piece_va = self.vm_start.0;
        for p in &self.pieces {
            if va.0 < piece_va + p.len {
                let paddr = p.paddr.0 + (va.0 - piece_va);
                let (base, fs) = (p.memory.base().0, p.memory.frame_size());
                let frame_start = base + (paddr - base) / fs * fs;
                let start = piece_va.max(va.0 - (paddr - frame_start));
                let end = (piece_va + p.len).min(va.0 + (frame_start + fs - paddr));
                return Some((VirtAddr(start), VirtAddr(end)));
            }
            piece_va += p.len;
        }
        None
    }

    /// Whether the 2 MiB at `huge_va` may be mapped by one PMD as far as its
    /// backing goes: it is aligned, lies in one frame run (one kernel VMA,
    /// so frames of 2 MiB or more) and sits at a 2 MiB-aligned offset of
    /// that frame's file (a frame's file offset is the physical address),
    /// where one 2 MiB folio can hold it.
    pub fn huge_backed(&self, huge_va: VirtAddr) -> bool {
        let end = huge_va.0 + HPAGE_PMD_SIZE;
        let in_one_run = self.frame_run(huge_va).is_some_and(|(_, e)| end <= e.0);
        huge_va.is_aligned(HPAGE_PMD_SIZE)
            && in_one_run
            && self.backing(huge_va).is_some_and(|b| b.paddr.0 % HPAGE_PMD_SIZE == 0)
    }

    /// Cuts `[from, to)` out of this VMA (both page aligned, clipped to the
    /// VMA), returning what remains on each side. The tail's `vm_pgoff`
    /// advances by the pages it skipped, exactly as a Linux VMA split does.
    pub fn cut(&self, from: VirtAddr, to: VirtAddr) -> (Option<Vma>, Option<Vma>) {
        let from = from.clamp(self.vm_start, self.vm_end);
        let to = to.clamp(self.vm_start, self.vm_end);
        let head = (from > self.vm_start).then(|| self.slice(self.vm_start, from));
        let tail = (to < self.vm_end).then(|| self.slice(to, self.vm_end));
        (head, tail)
    }

    /// The part `[from, to)` of this VMA as a VMA of its own.
    fn slice(&self, from: VirtAddr, to: VirtAddr) -> Vma {
        debug_assert!(self.vm_start <= from && from < to && to <= self.vm_end);
        debug_assert!(from.is_page_aligned() && to.is_page_aligned());
        let (from_va, to_va) = (from.0, to.0);
        let mut pieces = Vec::new();
        let mut piece_va = self.vm_start.0;
        for p in &self.pieces {
            let (ps, pe) = (piece_va, piece_va + p.len);
            let (s, e) = (ps.max(from_va), pe.min(to_va));
            if s < e {
                pieces.push(MapPiece { memory: p.memory.clone(), paddr: PhysAddr(p.paddr.0 + (s - ps)), len: e - s });
            }
            piece_va = pe;
        }
        Vma {
            vm_start: from,
            vm_end: to,
            // vm_pgoff is user-chosen and may sit near u64::MAX; Linux's split
            // adds without a check too, and the wrapped value is only shown.
            vm_pgoff: PgOff(self.vm_pgoff.0.wrapping_add((from_va - self.vm_start.0) / PAGE_SIZE)),
            pieces,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{VmFault, VmFaultResult};
    use proptest::prelude::*;

    #[derive(Debug)]
    struct NoFaults;
    impl VmOperations for NoFaults {
        fn huge_fault(&self, _vmf: &mut VmFault<'_>, _order: u32) -> VmFaultResult {
            VmFaultResult::FALLBACK
        }
    }

    fn memory() -> Arc<PhysMemory> {
        Arc::new(PhysMemory::new("vma-test", PhysAddr(0), 64 * PAGE_SIZE).unwrap())
    }

    fn vma(mem: &Arc<PhysMemory>, pieces: &[(u64, u64)]) -> Vma {
        let pieces: Vec<MapPiece> = pieces
            .iter()
            .map(|&(p, l)| MapPiece { memory: mem.clone(), paddr: PhysAddr(p * PAGE_SIZE), len: l * PAGE_SIZE })
            .collect();
        let len: u64 = pieces.iter().map(|p| p.len).sum();
        Vma {
            vm_start: VirtAddr(0x10_0000),
            vm_end: VirtAddr(0x10_0000 + len),
            vm_pgoff: PgOff(0x1000_0030),
            writable: true,
            path: "/t".into(),
            inode: 1,
            mapping: MappingId(1),
            pieces,
            ops: Arc::new(NoFaults),
        }
    }

    #[test]
    fn cutting_a_middle_page_leaves_a_head_and_a_tail_with_advanced_pgoff() {
        let mem = memory();
        let v = vma(&mem, &[(3, 4), (20, 4)]);
        let (head, tail) = v.cut(VirtAddr(0x10_0000 + 3 * PAGE_SIZE), VirtAddr(0x10_0000 + 5 * PAGE_SIZE));
        let (head, tail) = (head.unwrap(), tail.unwrap());
        // head: pages 0..3 of the first piece
        assert_eq!(
            (head.vm_start, head.vm_end, head.vm_pgoff),
            (VirtAddr(0x10_0000), VirtAddr(0x10_0000 + 3 * PAGE_SIZE), PgOff(0x1000_0030))
        );
        // tail: page 5 onwards = second piece from its 2nd page
        assert_eq!(tail.vm_pgoff, PgOff(0x1000_0035));
        assert_eq!(tail.backing(tail.vm_start).unwrap().paddr, PhysAddr(21 * PAGE_SIZE));
        assert_eq!(tail.pieces.len(), 1);
    }

    proptest! {
        /// Whatever is cut out, every page that remains is backed by the same
        /// physical page as before, and vm_pgoff moves with the start.
        #[test]
        fn cut_preserves_every_remaining_translation(
            pieces in prop::collection::vec((0u64..40, 1u64..6), 1..5),
            a in 0u64..30, b in 0u64..30,
        ) {
            let mem = memory();
            let v = vma(&mem, &pieces);
            let pages = v.len() / PAGE_SIZE;
            let (from, to) = (a.min(b).min(pages), a.max(b).min(pages));
            let start = v.vm_start.0;
            let (head, tail) = v.cut(VirtAddr(start + from * PAGE_SIZE), VirtAddr(start + to * PAGE_SIZE));
            for part in [head, tail].into_iter().flatten() {
                prop_assert_eq!(part.vm_pgoff.0 - v.vm_pgoff.0, (part.vm_start.0 - start) / PAGE_SIZE);
                prop_assert_eq!(part.pieces.iter().map(|p| p.len).sum::<u64>(), part.len());
                let mut va = part.vm_start;
                while va < part.vm_end {
                    prop_assert_eq!(part.backing(va).map(|b| b.paddr), v.backing(va).map(|b| b.paddr));
                    prop_assert!(va.0 < start + from * PAGE_SIZE || va.0 >= start + to * PAGE_SIZE);
                    va = VirtAddr(va.0 + PAGE_SIZE);
                }
            }
        }
    }
}
