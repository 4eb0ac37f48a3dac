//! The safe probes touch nothing but our own mappings: an address outside
//! them is answered `SEGV_MAPERR` without an access, a copy past a mapping's
//! end stops at its first byte outside, and a probe in flight keeps its
//! mapping mapped until it is over.

mod common;

use std::sync::mpsc;

use common::{setup, vm_exclusive, vm_shared, word_at, Exporter, Mode, BASE};
use mm::probe::{self, Width, SEGV_MAPERR};
use mm::AddressSpace;
use page::{PhysAddr, PAGE_SIZE};

fn assert_maperr(r: Result<impl std::fmt::Debug, probe::AccessFault>, addr: u64) {
    let err = r.unwrap_err();
    assert_eq!((err.signo, err.code, err.addr), (libc::SIGSEGV, SEGV_MAPERR, addr), "{err}");
}

#[test]
fn a_safe_probe_of_the_heap_is_segv_maperr_and_leaves_the_heap_untouched() {
    let heap = vec![0x5au8; 4 * PAGE_SIZE as usize];
    let addr = heap.as_ptr() as u64;
    assert_maperr(probe::write_u64(addr, 0), addr);
    assert_maperr(probe::write(addr + 1, Width::U8, 0), addr + 1);
    assert_maperr(probe::copy_to(addr, &[0u8; 64]), addr);
    assert_maperr(probe::touch(addr, 4 * PAGE_SIZE, true), addr);
    assert_maperr(probe::read_u64(addr), addr);
    let mut out = [0u8; 16];
    assert_maperr(probe::copy_from(addr, &mut out), addr);
    assert_eq!(out, [0u8; 16], "nothing was read");
    assert!(heap.iter().all(|&b| b == 0x5a), "the heap is as it was");
}

#[test]
fn empty_copies_touch_nothing_and_succeed_anywhere() {
    let heap = [1u8; 8];
    probe::copy_to(heap.as_ptr() as u64, &[]).unwrap();
    probe::copy_from(heap.as_ptr() as u64, &mut []).unwrap();
    probe::touch(heap.as_ptr() as u64, 0, true).unwrap();
    assert_eq!(heap, [1u8; 8]);
}

/// A mapping of 3 pages whose last page is unmapped again, so that what
/// follows page 2 is a hole nobody else may fill (the test is exclusive).
fn two_pages_then_a_hole() -> (AddressSpace, std::sync::Arc<mm::PhysMemory>, u64) {
    let (aspace, mem, _ops, va) = setup(Mode::Linear, 3 * PAGE_SIZE, 0);
    aspace.munmap(va + 2 * PAGE_SIZE, PAGE_SIZE).unwrap();
    (aspace, mem, va)
}

#[test]
fn a_copy_across_the_end_of_a_mapping_stops_at_the_first_byte_outside() {
    let _vm = vm_exclusive();
    let (_aspace, mem, va) = two_pages_then_a_hole();
    let end = va + 2 * PAGE_SIZE;

    let mut buf = [0u8; 16];
    assert_maperr(probe::copy_from(end - 8, &mut buf), end);
    // The 8 bytes inside were copied, as copy_from_user() leaves them.
    assert_eq!(u64::from_ne_bytes(buf[..8].try_into().unwrap()), word_at(BASE + 2 * PAGE_SIZE - 8));
    assert_eq!(buf[8..], [0u8; 8]);

    assert_maperr(probe::copy_to(end - 8, &[0xee; 16]), end);
    let mut inside = [0u8; 8];
    mem.read(PhysAddr(BASE + 2 * PAGE_SIZE - 8), &mut inside).unwrap();
    assert_eq!(inside, [0xee; 8]);
    // What lies behind the hole in the memory was not written.
    let mut behind = [0u8; 8];
    mem.read(PhysAddr(BASE + 2 * PAGE_SIZE), &mut behind).unwrap();
    assert_eq!(u64::from_ne_bytes(behind), word_at(BASE + 2 * PAGE_SIZE));
}

#[test]
fn an_access_straddling_the_end_of_a_mapping_is_refused_whole() {
    let _vm = vm_exclusive();
    let (_aspace, mem, va) = two_pages_then_a_hole();
    let end = va + 2 * PAGE_SIZE;
    assert_maperr(probe::write_u64(end - 4, u64::MAX), end);
    assert_maperr(probe::read(end - 2, Width::U32), end);
    let mut last = [0u8; 8];
    mem.read(PhysAddr(BASE + 2 * PAGE_SIZE - 8), &mut last).unwrap();
    assert_eq!(u64::from_ne_bytes(last), word_at(BASE + 2 * PAGE_SIZE - 8), "no partial store");
    assert_maperr(probe::touch_pages(va, 3 * PAGE_SIZE), end);
    assert_eq!(probe::read(end - 4, Width::U32).unwrap(), (word_at(BASE + 2 * PAGE_SIZE - 8) >> 32));
}

#[test]
fn a_copy_runs_across_two_adjacent_mappings_of_ours() {
    let _vm = vm_exclusive();
    let (aspace, mem, _ops, a) = setup(Mode::Linear, 8 * PAGE_SIZE, 0);
    // Free the upper half, then map another mapping exactly there: two VMAs
    // of two mmap calls, back to back.
    aspace.munmap(a + 4 * PAGE_SIZE, 4 * PAGE_SIZE).unwrap();
    let b = aspace
        .mmap(mm::MapRequest {
            mapping: aspace.new_mapping(),
            len: 4 * PAGE_SIZE,
            vm_pgoff: page::PgOff((BASE + 4 * PAGE_SIZE) / PAGE_SIZE),
            writable: true,
            pieces: vec![mm::MapPiece {
                memory: mem.clone(),
                paddr: PhysAddr(BASE + 4 * PAGE_SIZE),
                len: 4 * PAGE_SIZE,
            }],
            ops: Exporter::new(Mode::Linear),
            path: "/test:next".into(),
            inode: 8,
            addr: Some(page::VirtAddr(a + 4 * PAGE_SIZE)),
            mmio: None,
        })
        .unwrap();
    assert_eq!(b.0, a + 4 * PAGE_SIZE);
    let mut buf = vec![0u8; 2 * PAGE_SIZE as usize];
    probe::copy_from(b.0 - PAGE_SIZE, &mut buf).unwrap();
    let mut want = vec![0u8; buf.len()];
    mem.read(PhysAddr(BASE + 3 * PAGE_SIZE), &mut want).unwrap();
    assert_eq!(buf, want);
}

/// Is thread `tid` asleep in `futex(2)`, i.e. waiting on a lock?
fn waiting_on_a_lock(tid: i32) -> bool {
    let path = format!("/proc/self/task/{tid}/syscall");
    std::fs::read_to_string(path).is_ok_and(|s| s.split_whitespace().next() == Some("202"))
}

/// A copy over two pages faults twice; each fault is held in the exporter
/// until a munmap of the same mapping is waiting. The munmap must wait for
/// the whole copy: the copy succeeds with the right bytes (had the munmap
/// gone first, the second page would be SIGSEGV), and then the mapping is
/// gone.
#[test]
fn a_munmap_waits_for_a_probe_in_flight_on_its_mapping() {
    let _vm = vm_shared();
    let (entered_tx, entered) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let aspace = AddressSpace::new().unwrap();
    let mem = common::memory();
    let va = common::map(&aspace, &mem, Exporter::gated(Mode::Linear, entered_tx, go_rx), 0, 2 * PAGE_SIZE);
    std::thread::scope(|s| {
        let copier = s.spawn(|| {
            let mut buf = vec![0u8; 2 * PAGE_SIZE as usize];
            probe::copy_from(va, &mut buf).map(|()| buf)
        });
        // The copy is inside its first fault.
        entered.recv().unwrap();
        let (tid_tx, tid_rx) = mpsc::channel();
        let aspace = &aspace;
        let unmapper = s.spawn(move || {
            tid_tx.send(rustix::thread::gettid().as_raw_nonzero().get()).unwrap();
            aspace.munmap(va, 2 * PAGE_SIZE)
        });
        let tid = tid_rx.recv().unwrap();
        while !waiting_on_a_lock(tid) {
            std::thread::yield_now();
        }
        // The munmap is waiting; let both faults through.
        go.send(()).unwrap();
        go.send(()).unwrap();
        let buf = copier.join().unwrap().expect("the mapping stayed mapped for the whole copy");
        let mut want = vec![0u8; buf.len()];
        mem.read(PhysAddr(BASE), &mut want).unwrap();
        assert_eq!(buf, want);
        unmapper.join().unwrap().unwrap();
    });
    assert!(aspace.vmas().is_empty());
}
