//! Trapping VMAs end to end in mm: every access to a mapping whose request
//! carries a `VmMmio` raises SIGBUS, is emulated against that exporter at
//! the program's width and resumes; the trap table follows munmap splits
//! with the geometry a split gives; a revoked exporter lets the SIGBUS
//! through.
#![cfg(target_arch = "x86_64")]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;

use common::regs::{map_registers, Device};
use common::{vm_exclusive, vm_shared, BASE};
use mm::probe::{self, trap_geometry, SEGV_MAPERR};
use mm::{AddressSpace, Width};
use page::PAGE_SIZE;

#[test]
fn every_width_reaches_the_device_at_its_offset_and_width() {
    let _vm = vm_shared();
    let aspace = AddressSpace::new().unwrap();
    let dev = Device::new();
    let va = map_registers(&aspace, &dev, 2, 4);
    for (i, w) in [Width::U8, Width::U16, Width::U32, Width::U64].into_iter().enumerate() {
        let at = va + PAGE_SIZE + 0x40 * i as u64;
        let v = 0x8877_6655_4433_2211u64 >> (64 - 8 * w.bytes() as u32);
        probe::write(at, w, v).unwrap();
        let off = 3 * PAGE_SIZE + 0x40 * i as u64;
        assert_eq!(dev.last.load(Ordering::SeqCst), off << 8 | w.bytes() as u64);
        assert_eq!(probe::read(at, w).unwrap(), v);
    }
    // The stores landed in the device, at their offsets.
    assert_eq!(dev.bytes.lock().unwrap()[3 * PAGE_SIZE as usize], 0x88);
    let mut buf = [0u8; 24];
    probe::copy_from(va + PAGE_SIZE + 0x40, &mut buf).unwrap();
    assert_eq!(&buf[..2], &[0x77, 0x88]);
    let before = dev.accesses.load(Ordering::SeqCst);
    probe::copy_to(va + 0x10, &[1, 2, 3, 4, 5]).unwrap();
    assert_eq!(dev.accesses.load(Ordering::SeqCst) - before, 5, "a byte copy is one access per byte");
    assert_eq!(&dev.bytes.lock().unwrap()[2 * PAGE_SIZE as usize + 0x10..][..5], &[1, 2, 3, 4, 5]);
}

#[test]
fn a_revoked_exporter_lets_the_sigbus_through() {
    let _vm = vm_shared();
    let aspace = AddressSpace::new().unwrap();
    let dev = Device::new();
    let va = map_registers(&aspace, &dev, 0, 1);
    probe::write(va + 8, Width::U64, 5).unwrap();
    dev.revoked.store(true, Ordering::SeqCst);
    let e = probe::read(va + 8, Width::U64).unwrap_err();
    assert_eq!((e.signo, e.code, e.addr), (libc::SIGBUS, libc::BUS_ADRERR, va + 8));
    let e = probe::write(va + 8, Width::U32, 9).unwrap_err();
    assert!(e.is_sigbus());
    dev.revoked.store(false, Ordering::SeqCst);
    assert_eq!(probe::read(va + 8, Width::U64).unwrap(), 5);
}

#[test]
fn the_trap_table_follows_munmap_splits() {
    let _vm = vm_exclusive();
    let aspace = AddressSpace::new().unwrap();
    let dev = Device::new();
    let va = map_registers(&aspace, &dev, 4, 8);
    let pgoff = BASE / PAGE_SIZE + 4;
    assert_eq!(trap_geometry(va + 5 * PAGE_SIZE), Some((va, va + 8 * PAGE_SIZE, pgoff)));
    // Cut pages 2..5: a head of 2 pages and a tail of 3 whose pgoff moved on.
    aspace.munmap(va + 2 * PAGE_SIZE, 3 * PAGE_SIZE).unwrap();
    assert_eq!(trap_geometry(va + PAGE_SIZE), Some((va, va + 2 * PAGE_SIZE, pgoff)));
    assert_eq!(trap_geometry(va + 3 * PAGE_SIZE), None);
    assert_eq!(trap_geometry(va + 6 * PAGE_SIZE), Some((va + 5 * PAGE_SIZE, va + 8 * PAGE_SIZE, pgoff + 5)));
    // Accesses on both sides reach the device at the offset they had before.
    probe::write(va + 7 * PAGE_SIZE + 0x18, Width::U32, 0xfeed).unwrap();
    assert_eq!(dev.last.load(Ordering::SeqCst), (11 * PAGE_SIZE + 0x18) << 8 | 4);
    probe::write(va + 0x20, Width::U16, 0xbeef).unwrap();
    assert_eq!(dev.last.load(Ordering::SeqCst), (4 * PAGE_SIZE + 0x20) << 8 | 2);
    let e = probe::read(va + 3 * PAGE_SIZE, Width::U8).unwrap_err();
    assert_eq!((e.signo, e.code), (libc::SIGSEGV, SEGV_MAPERR));
    // Cutting the tail's first page moves its pgoff again; unmapping all
    // leaves nothing in the table.
    aspace.munmap(va + 5 * PAGE_SIZE, PAGE_SIZE).unwrap();
    assert_eq!(trap_geometry(va + 7 * PAGE_SIZE), Some((va + 6 * PAGE_SIZE, va + 8 * PAGE_SIZE, pgoff + 6)));
    assert_eq!(probe::read(va + 7 * PAGE_SIZE + 0x18, Width::U32).unwrap(), 0xfeed);
    aspace.munmap(va, 8 * PAGE_SIZE).unwrap();
    assert_eq!(trap_geometry(va), None);
    assert_eq!(trap_geometry(va + 7 * PAGE_SIZE), None);
}

#[test]
fn dropping_the_address_space_empties_the_trap_table() {
    let _vm = vm_exclusive();
    let dev = Device::new();
    let va = {
        let aspace = AddressSpace::new().unwrap();
        let va = map_registers(&aspace, &dev, 0, 2);
        assert!(trap_geometry(va).is_some());
        va
    };
    assert_eq!(trap_geometry(va), None);
    assert_eq!(Arc::strong_count(&dev), 1, "the table let go of the exporter");
}

#[test]
fn several_threads_trap_at_once() {
    let _vm = vm_shared();
    let aspace = AddressSpace::new().unwrap();
    let dev = Device::new();
    let va = map_registers(&aspace, &dev, 0, 2);
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            thread::spawn(move || {
                let at = va + t * 0x408;
                for i in 0..1000u64 {
                    probe::write(at, Width::U64, t << 32 | i).unwrap();
                    assert_eq!(probe::read(at, Width::U64).unwrap(), t << 32 | i);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(dev.accesses.load(Ordering::SeqCst), 4 * 2000);
}
