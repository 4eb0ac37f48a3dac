//! A register file for trapping mappings: what the trap tests emulate
//! against, and how they map it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mm::{AddressSpace, MapPiece, MapRequest, MmioAddr, MmioRegs, MmioRevoked, VmMmio, Width};
use page::{PgOff, PhysAddr, PAGE_SIZE};

use super::{memory, Exporter, Mode, BASE};

/// A register file of 16 pages at device offset 0, that a test may revoke.
/// Device offset of an access: `vm_pgoff` pages past `BASE`, plus the
/// distance from `vm_start`, as a device-fd mapping translates.
#[derive(Debug)]
pub struct Device {
    pub bytes: Mutex<Vec<u8>>,
    pub revoked: AtomicBool,
    pub accesses: AtomicU64,
    pub last: AtomicU64,
}

impl Device {
    pub fn new() -> Arc<Device> {
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
pub fn map_registers(aspace: &AddressSpace, dev: &Arc<Device>, first: u64, pages: u64) -> u64 {
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
