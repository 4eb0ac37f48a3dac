//! Trapping VMAs end to end in mm: every access to a mapping whose request
//! carries a `VmMmio` raises SIGBUS, is emulated against that exporter at
//! the program's width and resumes; the trap table follows munmap splits
//! with the geometry a split gives; a revoked exporter lets the SIGBUS
//! through.
#![cfg(target_arch = "x86_64")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::{memory, vm_exclusive, vm_shared, Exporter, Mode, BASE};
use mm::probe::{self, trap_geometry, SEGV_MAPERR};
use mm::{AddressSpace, MapPiece, MapRequest, MmioAddr, MmioRegs, MmioRevoked, VmMmio, Width};
use page::{PgOff, PhysAddr, PAGE_SIZE};

/// A register file of 16 pages at device offset 0, that a test may revoke.
/// Device offset of an access: `vm_pgoff` pages past `BASE`, plus the
/// distance from `vm_start`, as a device-fd mapping translates.
#[derive(Debug)]
struct Device {
    bytes: Mutex<Vec<u8>>,
    revoked: AtomicBool,
    accesses: AtomicU64,
    last: AtomicU64,
}

impl Device {
    fn new() -> Arc<Device> {
        Arc::new(Device {
            bytes: Mutex::new(vec![0; 16 * PAGE_SIZE as usize]),
            revoked: AtomicBool::new(false),
            accesses: AtomicU64::new(0),
            last: AtomicU64::new(0),
        })
    }

    fn offset(at: MmioAddr) -> usize {
        (at.vm_pgoff.0 * PAGE_SIZE - BASE + (at.addr.0 - at.vm_start.0)) as usize
    }
}

impl MmioRegs for Device {
    fn read(&self, at: MmioAddr, width: Width) -> Result<u64, MmioRevoked> {
        let off = Device::offset(at);
        self.accesses.fetch_add(1, Ordering::SeqCst);
        self.last.store((off as u64) << 8 | width.bytes() as u64, Ordering::SeqCst);
        let bytes = self.bytes.lock().unwrap();
        let mut v = [0u8; 8];
        v[..width.bytes()].copy_from_slice(&bytes[off..off + width.bytes()]);
        Ok(u64::from_le_bytes(v))
    }

    fn write(&self, at: MmioAddr, width: Width, value: u64) -> Result<(), MmioRevoked> {
        let off = Device::offset(at);
        self.accesses.fetch_add(1, Ordering::SeqCst);
        self.last.store((off as u64) << 8 | width.bytes() as u64, Ordering::SeqCst);
        self.bytes.lock().unwrap()[off..off + width.bytes()].copy_from_slice(&value.to_le_bytes()[..width.bytes()]);
        Ok(())
    }
}

impl VmMmio for Device {
    fn with_registers(&self, access: &mut dyn FnMut(&dyn MmioRegs)) -> Result<(), MmioRevoked> {
        if self.revoked.load(Ordering::SeqCst) {
            return Err(MmioRevoked);
        }
        access(self);
        Ok(())
    }
}

/// Maps `pages` register pages from device page `first`.
fn map_registers(aspace: &AddressSpace, dev: &Arc<Device>, first: u64, pages: u64) -> u64 {
    let mem = memory();
    let len = pages * PAGE_SIZE;
    let paddr = PhysAddr(BASE + first * PAGE_SIZE);
    aspace
        .mmap(MapRequest {
            mapping: aspace.new_mapping(),
            len,
            vm_pgoff: PgOff(paddr.0 / PAGE_SIZE),
            writable: true,
            pieces: vec![MapPiece { memory: mem, paddr, len }],
            // Register pages are never mapped: every fault is SIGBUS.
            ops: Exporter::new(Mode::Refuse),
            path: "/test:regs".into(),
            inode: 9,
            addr: None,
            mmio: Some(dev.clone() as Arc<dyn VmMmio>),
        })
        .unwrap()
        .0
}

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
