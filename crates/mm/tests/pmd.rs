//! Huge faults that install real PMDs (`MADV_COLLAPSE` from the fault
//! path), checked against the kernel's own account in `/proc/self/smaps`:
//! a 2 MiB fault is PMD-mapped with its data, a zap drops the PMD and a
//! refused fault then SIGBUSes, a partial munmap splits the PMD and the pages
//! left fault one by one, a poison marker inside a 2 MiB keeps its SIGBUS
//! while the rest maps with PTEs, and fault-around PMD-maps the aligned
//! 2 MiB pieces of its window that have aligned backing.

mod common;

use std::sync::Arc;

use common::{map, memory_in_frames, setup, vm_exclusive, vm_shared, word_at, Exporter, Mode, BASE, MEM_LEN};
use mm::{probe, AddressSpace};
use page::{PhysAddr, HPAGE_PMD_SIZE, PAGE_SIZE};

/// Bytes the kernel maps with PMDs in the kernel VMAs inside `[from, to)`.
fn pmd_bytes(aspace: &AddressSpace, from: u64, to: u64) -> u64 {
    aspace.pmd_mapped().unwrap().iter().filter(|e| from <= e.start && e.end <= to).map(|e| e.shmem_pmd_mapped).sum()
}

/// Every word of `[va, va + len)` holds the pattern of the memory behind it.
fn assert_pattern(va: u64, len: u64, paddr: u64) {
    for off in (0..len).step_by(PAGE_SIZE as usize) {
        for word in [0, PAGE_SIZE - 8] {
            assert_eq!(probe::read_u64(va + off + word).unwrap(), word_at(paddr + off + word), "at +{:#x}", off + word);
        }
    }
}

#[test]
fn a_2mib_fault_of_an_aligned_mapping_is_pmd_mapped_with_its_data() {
    let _vm = vm_shared();
    let (aspace, mem, _ops, va) = setup(Mode::Linear, 4 << 20, 0);
    assert_eq!(va % HPAGE_PMD_SIZE, 0);
    assert_pattern(va, 4 << 20, BASE);
    let s = aspace.fault_stats();
    // Fault counts by order as before: one order-9 fault per 2 MiB.
    assert_eq!((s.order9, s.order0, s.sigbus), (2, 0, 0), "{s:?}");
    assert_eq!((s.pmd_mapped, s.pmd_fallback.total()), (2, 0), "{s:?}");
    assert_eq!(pmd_bytes(&aspace, va, va + (4 << 20)), 4 << 20);
    // The PMD maps the file's page cache: a store shows through the file and back.
    probe::write_u64(va + HPAGE_PMD_SIZE + 0x1238, 0xdead_beef).unwrap();
    let mut got = [0u8; 8];
    mem.read(PhysAddr(BASE + HPAGE_PMD_SIZE + 0x1238), &mut got).unwrap();
    assert_eq!(u64::from_ne_bytes(got), 0xdead_beef);
    mem.write(PhysAddr(BASE + 0x10), &7u64.to_ne_bytes()).unwrap();
    assert_eq!(probe::read_u64(va + 0x10).unwrap(), 7);
    assert_eq!(aspace.fault_stats().order9, 2, "no fault after the PMDs are in");
}

#[test]
fn a_zap_drops_the_pmd_a_refused_fault_then_sigbuses_and_a_later_one_maps_it_again() {
    let _vm = vm_shared();
    let (aspace, _mem, ops, va) = setup(Mode::Linear, 2 << 20, 0);
    probe::write_u64(va + 0x5000, 0xfeed).unwrap();
    assert_eq!(pmd_bytes(&aspace, va, va + (2 << 20)), 2 << 20);
    // A revoke: the exporter refuses from now on, then zaps.
    ops.set(Mode::Refuse);
    aspace.mapping_handle(aspace.vmas()[0].mapping).zap().unwrap();
    assert_eq!(pmd_bytes(&aspace, va, va + (2 << 20)), 0);
    let err = probe::read_u64(va + 0x1_0008).unwrap_err();
    assert!(err.is_sigbus(), "{err}");
    assert_eq!(err.addr, va + 0x1_0008);
    // An un-revoke: the exporter allows again, then zaps (clearing the marker).
    ops.set(Mode::Linear);
    aspace.mapping_handle(aspace.vmas()[0].mapping).zap().unwrap();
    assert_eq!(probe::read_u64(va + 0x5000).unwrap(), 0xfeed);
    assert_eq!(probe::read_u64(va + 0x1_0008).unwrap(), word_at(BASE + 0x1_0008));
    let s = aspace.fault_stats();
    assert_eq!((s.order9, s.sigbus, s.pmd_mapped), (2, 1, 2), "{s:?}");
    assert_eq!(pmd_bytes(&aspace, va, va + (2 << 20)), 2 << 20);
}

#[test]
fn a_partial_munmap_splits_the_pmd_and_the_pages_left_fault_as_4k() {
    let _vm = vm_exclusive();
    let (aspace, _mem, _ops, va) = setup(Mode::Linear, 4 << 20, 0);
    probe::touch_pages(va, 4 << 20).unwrap();
    assert_eq!(pmd_bytes(&aspace, va, va + (4 << 20)), 4 << 20);
    let hole = va + (1 << 20);
    aspace.munmap(hole, PAGE_SIZE).unwrap();
    // The kernel drops the PMD over the split point; the other 2 MiB keeps its own.
    assert_eq!(pmd_bytes(&aspace, va, hole), 0);
    assert_eq!(pmd_bytes(&aspace, hole + PAGE_SIZE, va + (4 << 20)), 2 << 20);
    let before = aspace.fault_stats();
    // Both sides of the hole, and the hole itself.
    assert_pattern(va, 1 << 20, BASE);
    assert_pattern(hole + PAGE_SIZE, HPAGE_PMD_SIZE - (1 << 20) - PAGE_SIZE, BASE + (1 << 20) + PAGE_SIZE);
    let gone = probe::read_u64(hole).unwrap_err();
    assert_eq!((gone.signo, gone.addr), (libc::SIGSEGV, hole));
    let s = aspace.fault_stats();
    // No 2 MiB fits either side of the hole: every page left faults alone.
    assert_eq!(s.order9, before.order9, "{s:?}");
    assert_eq!(s.order0 - before.order0, 511, "{s:?}");
    assert_eq!(s.pmd_mapped, before.pmd_mapped);
    // The untouched 2 MiB still needs no fault.
    assert_pattern(va + HPAGE_PMD_SIZE, HPAGE_PMD_SIZE, BASE + HPAGE_PMD_SIZE);
    assert_eq!(aspace.fault_stats().order0, s.order0);
}

/// A poison marker left inside a 2 MiB whose page cache is one 2 MiB folio
/// (the first fault built it) makes the collapse fail (`EINVAL`): the 2 MiB
/// is mapped with PTEs instead, and the continue replaces the marker, as it
/// did before collapses: the exporter, under its locks, allowed every page
/// of the 2 MiB, which is what the kernel's own refault of the poisoned page
/// would find. (Over 4 KiB pages the collapse replaces the marker itself.)
#[test]
fn a_stale_poison_marker_inside_a_2mib_makes_it_fall_back_to_ptes() {
    let _vm = vm_shared();
    let (aspace, _mem, ops, va) = setup(Mode::Linear, 2 << 20, 0);
    probe::touch_pages(va, 2 << 20).unwrap();
    assert_eq!(aspace.fault_stats().pmd_mapped, 1);
    ops.set(Mode::Refuse);
    aspace.mapping_handle(aspace.vmas()[0].mapping).zap().unwrap();
    let poisoned = va + 0x3_0000;
    assert!(probe::read_u64(poisoned).unwrap_err().is_sigbus());
    // Allowed again, but without the zap that would clear the marker.
    ops.set(Mode::Linear);
    assert_eq!(probe::read_u64(va + 0x8).unwrap(), word_at(BASE + 0x8));
    let s = aspace.fault_stats();
    assert_eq!((s.order9, s.pmd_mapped, s.pmd_fallback.invalid), (2, 1, 1), "{s:?}");
    assert_eq!(pmd_bytes(&aspace, va, va + (2 << 20)), 0);
    assert_pattern(va, 2 << 20, BASE);
    assert_eq!(probe::read_u64(poisoned).unwrap(), word_at(BASE + 0x3_0000));
    assert_pattern(va + 0x3_1000, (2 << 20) - 0x3_1000, BASE + 0x3_1000);
}

/// One 8 MiB frame: the whole mapping is one kernel VMA, so one window.
fn one_frame_setup(mode: Mode, len: u64, offset: u64) -> (AddressSpace, Arc<Exporter>, u64) {
    let aspace = AddressSpace::new().unwrap();
    let mem = memory_in_frames(MEM_LEN);
    let ops = Exporter::new(mode);
    let va = map(&aspace, &mem, ops.clone(), offset, len);
    (aspace, ops, va)
}

#[test]
fn fault_around_pmd_maps_the_aligned_2mib_pieces_of_its_window() {
    let _vm = vm_shared();
    let len = (6 << 20) + 0x5000;
    let (aspace, _ops, va) = one_frame_setup(Mode::AroundWholeVma, len, 0);
    assert_eq!(probe::read_u64(va + (5 << 20)).unwrap(), word_at(BASE + (5 << 20)));
    assert_pattern(va, len, BASE);
    let s = aspace.fault_stats();
    assert_eq!((s.order0, s.around_pages, s.pmd_mapped, s.pmd_fallback.total()), (1, len / PAGE_SIZE, 3, 0), "{s:?}");
    assert_eq!(pmd_bytes(&aspace, va, va + len), 6 << 20);
}

/// In 2 MiB frames (one kernel VMA each) one window still takes one fault:
/// a collapse per frame, a continue for the partial frame at the end.
#[test]
fn a_window_across_2mib_frames_is_one_fault_with_a_pmd_per_frame() {
    let _vm = vm_shared();
    let len = (6 << 20) + 0x5000;
    let (aspace, _mem, _ops, va) = setup(Mode::AroundWholeVma, len, 0);
    assert_eq!(probe::read_u64(va + 0x1000).unwrap(), word_at(BASE + 0x1000));
    assert_pattern(va, len, BASE);
    let s = aspace.fault_stats();
    assert_eq!((s.order0, s.around_pages, s.pmd_mapped, s.pmd_fallback.total()), (1, len / PAGE_SIZE, 3, 0), "{s:?}");
    assert_eq!(pmd_bytes(&aspace, va, va + len), 6 << 20);
}

#[test]
fn unaligned_backing_is_mapped_with_ptes_and_counted() {
    let _vm = vm_shared();
    let (aspace, _ops, va) = one_frame_setup(Mode::AroundWholeVma, 4 << 20, 0x1000);
    assert_pattern(va, 4 << 20, BASE + 0x1000);
    let s = aspace.fault_stats();
    assert_eq!((s.order0, s.pmd_mapped, s.pmd_fallback.unaligned), (1, 0, 2), "{s:?}");
    assert_eq!(pmd_bytes(&aspace, va, va + (4 << 20)), 0);
}

/// Frames are created with one 2 MiB folio per aligned 2 MiB, and a cut-off
/// frame is restored with them again: the data comes back, and the next
/// fault maps it with one PMD.
#[test]
fn frames_are_created_and_restored_with_2mib_folios() {
    let _vm = vm_shared();
    let before = mm::frames::huge_folio_stats();
    let (aspace, mem, _ops, va) = setup(Mode::Linear, 4 << 20, 0);
    let made = mm::frames::huge_folio_stats();
    assert!(made.huge >= before.huge + MEM_LEN / HPAGE_PMD_SIZE, "{before:?} -> {made:?}");
    probe::write_u64(va + HPAGE_PMD_SIZE + 0x48, 0xabcd).unwrap();
    assert_eq!(aspace.fault_stats().pmd_mapped, 1);
    assert!(mem.cut_off(1).unwrap());
    let gone = probe::read_u64(va + HPAGE_PMD_SIZE).unwrap_err();
    assert!(gone.is_sigbus(), "{gone}");
    assert!(mem.restore(1).unwrap());
    assert!(mm::frames::huge_folio_stats().huge > made.huge);
    assert_eq!(probe::read_u64(va + HPAGE_PMD_SIZE + 0x48).unwrap(), 0xabcd);
    assert_pattern(va + HPAGE_PMD_SIZE + 0x1000, HPAGE_PMD_SIZE - 0x1000, BASE + HPAGE_PMD_SIZE + 0x1000);
    let s = aspace.fault_stats();
    assert_eq!((s.order9, s.pmd_mapped, s.pmd_fallback.total()), (2, 2, 0), "{s:?}");
    assert_eq!(pmd_bytes(&aspace, va + HPAGE_PMD_SIZE, va + (4 << 20)), 2 << 20);
}
