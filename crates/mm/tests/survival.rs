//! The fault engine outlives a broken exporter: a panic or a wrong
//! translation inside the fault operations ends that one access in SIGBUS,
//! and every mapping, old and new, keeps faulting in.

mod common;

use common::{map, memory, vm_shared, word_at, Exporter, Mode, BASE};
use mm::{probe, AddressSpace};
use page::PAGE_SIZE;

/// An address space with a mapping served by `mode` and a sane neighbour.
fn broken_and_sane(mode: Mode) -> (AddressSpace, std::sync::Arc<mm::PhysMemory>, u64, u64) {
    let aspace = AddressSpace::new().unwrap();
    let mem = memory();
    let broken = map(&aspace, &mem, Exporter::new(mode), 0, 4 * PAGE_SIZE);
    let sane = map(&aspace, &mem, Exporter::new(Mode::Linear), 0x20_0000, 4 * PAGE_SIZE);
    (aspace, mem, broken, sane)
}

#[test]
fn a_panicking_exporter_gets_sigbus_and_the_engine_keeps_serving() {
    let _vm = vm_shared();
    let (aspace, mem, broken, sane) = broken_and_sane(Mode::Panic);
    let err = probe::read_u64(broken + 8).unwrap_err();
    assert!(err.is_sigbus(), "{err}");
    assert_eq!(err.addr, broken + 8);
    // The same engine serves the other mapping, and a second panic.
    assert_eq!(probe::read_u64(sane).unwrap(), word_at(BASE + 0x20_0000));
    assert!(probe::read_u64(broken + PAGE_SIZE).unwrap_err().is_sigbus());
    let s = aspace.fault_stats();
    assert_eq!((s.panics, s.sigbus, s.order0), (2, 2, 1), "{s:?}");
    // A mapping made after the panics faults in as usual.
    let later = map(&aspace, &mem, Exporter::new(Mode::Linear), 0x40_0000, 2 * PAGE_SIZE);
    probe::write_u64(later + PAGE_SIZE, 0xabcd).unwrap();
    assert_eq!(probe::read_u64(later + PAGE_SIZE).unwrap(), 0xabcd);
}

#[test]
fn inserting_a_frame_the_vma_does_not_map_is_sigbus_and_nothing_is_mapped() {
    let _vm = vm_shared();
    let (aspace, mem, broken, sane) = broken_and_sane(Mode::WrongPfn);
    let err = probe::read_u64(broken + 2 * PAGE_SIZE).unwrap_err();
    assert!(err.is_sigbus(), "{err}");
    assert_eq!(aspace.fault_stats().order0, 0, "the wrong frame was never mapped");
    assert_eq!(probe::read_u64(sane + 3 * PAGE_SIZE).unwrap(), word_at(BASE + 0x20_0000 + 3 * PAGE_SIZE));
    let later = map(&aspace, &mem, Exporter::new(Mode::Linear), 0x40_0000, PAGE_SIZE);
    assert_eq!(probe::read_u64(later).unwrap(), word_at(BASE + 0x40_0000));
}

#[test]
fn a_fault_around_window_without_the_faulting_page_is_sigbus() {
    let _vm = vm_shared();
    let (aspace, _mem, broken, sane) = broken_and_sane(Mode::WindowMissingTheFault);
    assert!(probe::read_u64(broken + PAGE_SIZE).unwrap_err().is_sigbus());
    assert!(probe::read_u64(broken).unwrap_err().is_sigbus());
    let s = aspace.fault_stats();
    assert_eq!((s.order0, s.around_pages, s.sigbus), (0, 0, 2), "{s:?}");
    assert_eq!(probe::read_u64(sane).unwrap(), word_at(BASE + 0x20_0000));
}

#[test]
fn a_panic_in_one_address_space_leaves_the_others_alone() {
    let _vm = vm_shared();
    let (_panicky, _mem, broken, _sane) = broken_and_sane(Mode::Panic);
    assert!(probe::read_u64(broken).unwrap_err().is_sigbus());
    let other = AddressSpace::new().unwrap();
    let va = map(&other, &memory(), Exporter::new(Mode::Linear), 0, 2 * PAGE_SIZE);
    assert_eq!(probe::read_u64(va + PAGE_SIZE).unwrap(), word_at(BASE + PAGE_SIZE));
    assert_eq!(other.fault_stats().panics, 0);
}
