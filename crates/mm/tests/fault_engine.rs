//! The fault engine against real memory, real mappings and real CPU faults:
//! orders, fallback, refusal and zap, splits, fault-around, and a continue
//! cut short by a page that is already mapped.

mod common;

use std::sync::atomic::Ordering;

use common::{map, memory, setup, vm_exclusive, vm_shared, word_at, Exporter, Mode, BASE};
use mm::{probe, AddressSpace};
use page::{PhysAddr, HPAGE_PMD_SIZE, PAGE_SIZE};

#[test]
fn first_touch_of_an_aligned_mapping_takes_2mib_faults() {
    let _vm = vm_shared();
    let (aspace, mem, _ops, va) = setup(Mode::Linear, 4 << 20, 0);
    assert_eq!(va % HPAGE_PMD_SIZE, 0);
    mem.write(PhysAddr(BASE + 0x3000), &0x1234_5678u64.to_ne_bytes()).unwrap();
    assert_eq!(probe::read_u64(va + 0x3000).unwrap(), 0x1234_5678);
    probe::touch_pages(va, 4 << 20).unwrap();
    let s = aspace.fault_stats();
    assert_eq!((s.order9, s.order0, s.sigbus), (2, 0, 0));
}

#[test]
fn unaligned_physical_offset_falls_back_to_4k_faults() {
    let _vm = vm_shared();
    let (aspace, _mem, _ops, va) = setup(Mode::Linear, 4 << 20, 0x3000);
    probe::touch_pages(va, 4 << 20).unwrap();
    let s = aspace.fault_stats();
    assert_eq!(s.order9, 0);
    assert_eq!(s.order0, 1024);
    assert!(s.fallback >= 1);
}

#[test]
fn refused_fault_raises_sigbus_and_zap_restores_access() {
    let _vm = vm_shared();
    let (aspace, _mem, ops, va) = setup(Mode::Linear, 8 << 12, 0);
    probe::write_u64(va, 0xfeed).unwrap();
    ops.set(Mode::Refuse);
    aspace.mapping_handle(aspace.vmas()[0].mapping).zap().unwrap();
    let err = probe::read_u64(va).unwrap_err();
    assert!(err.is_sigbus(), "{err}");
    assert_eq!(err.addr, va);
    // Still poisoned: a second access SIGBUSes without a new fault.
    let calls = ops.calls.load(Ordering::SeqCst);
    assert!(probe::read_u64(va).unwrap_err().is_sigbus());
    assert_eq!(ops.calls.load(Ordering::SeqCst), calls);
    ops.set(Mode::Linear);
    aspace.mapping_handle(aspace.vmas()[0].mapping).zap().unwrap();
    assert_eq!(probe::read_u64(va).unwrap(), 0xfeed);
}

#[test]
fn real_proc_maps_shows_the_mmap_offset_and_split_keeps_the_arithmetic() {
    let _vm = vm_exclusive();
    let (aspace, mem, _ops, va) = setup(Mode::Linear, 16 << 12, 0x4000);
    let real = mm::maps::proc_self_maps(va, va + (16 << 12)).unwrap();
    assert_eq!(real.len(), 1);
    assert_eq!(real[0].offset, BASE + 0x4000);
    assert!(real[0].path.contains("mm-test.0"), "frame 0: {}", real[0].path);
    assert!(aspace.maps()[0].contains(" 10000004000 "), "{}", aspace.maps()[0]);
    assert!(aspace.maps()[0].ends_with(" /test:mm"), "{}", aspace.maps()[0]);
    for i in 0..16u64 {
        mem.write(PhysAddr(BASE + 0x4000 + i * PAGE_SIZE), &(i + 100).to_ne_bytes()).unwrap();
    }
    aspace.munmap(va + 3 * PAGE_SIZE, PAGE_SIZE).unwrap();
    let vmas = aspace.vmas();
    assert_eq!(vmas.len(), 2);
    assert_eq!(vmas[1].vm_start, va + 4 * PAGE_SIZE);
    assert_eq!(vmas[1].vm_pgoff, (BASE + 0x4000) / PAGE_SIZE + 4);
    assert_eq!(probe::read_u64(va + 15 * PAGE_SIZE).unwrap(), 115);
    assert_eq!(probe::read_u64(va + 2 * PAGE_SIZE).unwrap(), 102);
    let hole = probe::read_u64(va + 3 * PAGE_SIZE).unwrap_err();
    assert_eq!((hole.signo, hole.code, hole.addr), (libc::SIGSEGV, probe::SEGV_MAPERR, va + 3 * PAGE_SIZE));
}

#[test]
fn fault_around_maps_the_whole_window_in_one_fault() {
    let _vm = vm_shared();
    let pages = 64;
    let (aspace, _mem, ops, va) = setup(Mode::AroundWholeVma, pages * PAGE_SIZE, 0x1000);
    assert_eq!(probe::read_u64(va + 10 * PAGE_SIZE + 8).unwrap(), word_at(BASE + 0x1000 + 10 * PAGE_SIZE + 8));
    // One fault mapped all 64 pages: touching them all faults no more.
    probe::touch(va, pages * PAGE_SIZE, true).unwrap();
    for i in 0..pages {
        assert_eq!(probe::read_u64(va + i * PAGE_SIZE).unwrap(), word_at(BASE + 0x1000 + i * PAGE_SIZE));
    }
    let s = aspace.fault_stats();
    assert_eq!((s.order0, s.around_pages, s.sigbus), (1, pages, 0), "{s:?}");
    assert_eq!(ops.calls.load(Ordering::SeqCst), 1);
}

/// Page 5 is mapped first on its own; then windows over the whole VMA are
/// cut short by it (`EEXIST`). A fault before it keeps the part mapped up to
/// page 5; a fault after it gets exactly its own page, instead of asking for
/// the same window again and faulting forever.
#[test]
fn a_continue_stopped_by_an_already_mapped_page_still_maps_the_faulting_page() {
    let _vm = vm_shared();
    let pages = 8;
    let (aspace, _mem, ops, va) = setup(Mode::Linear, pages * PAGE_SIZE, 0);
    let page = |i: u64| va + i * PAGE_SIZE;
    let want = |i: u64| word_at(BASE + i * PAGE_SIZE);
    assert_eq!(probe::read_u64(page(5)).unwrap(), want(5));
    // Mapped: page 5.
    ops.set(Mode::AroundWholeVma);
    assert_eq!(probe::read_u64(page(2)).unwrap(), want(2));
    // The window [0, 8) stopped at page 5 with pages 0..5 mapped, page 2 among them.
    // Mapped: pages 0..=5.
    for i in [0, 1, 3, 4] {
        assert_eq!(probe::read_u64(page(i)).unwrap(), want(i));
    }
    assert_eq!(aspace.fault_stats().order0, 2, "pages 0..5 came with the fault of page 2");
    assert_eq!(probe::read_u64(page(6)).unwrap(), want(6));
    // The window [0, 8) stopped at page 0 at once; page 6 alone was mapped.
    // Mapped: pages 0..=6.
    assert_eq!(probe::read_u64(page(7)).unwrap(), want(7));
    // Mapped: all.
    let s = aspace.fault_stats();
    assert_eq!((s.order0, s.sigbus), (4, 0), "{s:?}");
    assert_eq!(ops.calls.load(Ordering::SeqCst), 4, "one call per fault, none repeated");
}

#[test]
fn mappings_of_one_address_space_fault_independently() {
    let _vm = vm_shared();
    let aspace = AddressSpace::new().unwrap();
    let mem = memory();
    let refused = Exporter::new(Mode::Refuse);
    let linear = Exporter::new(Mode::Linear);
    let a = map(&aspace, &mem, refused, 0, 4 * PAGE_SIZE);
    let b = map(&aspace, &mem, linear, 0x10_0000, 4 * PAGE_SIZE);
    assert!(probe::read_u64(a).unwrap_err().is_sigbus());
    assert_eq!(probe::read_u64(b + PAGE_SIZE).unwrap(), word_at(BASE + 0x10_0000 + PAGE_SIZE));
}
