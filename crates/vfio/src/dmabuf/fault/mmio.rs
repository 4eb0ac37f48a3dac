//! Trap-and-emulate of register BARs: the exporter's side of an emulated
//! access ([`mm::VmMmio`]).
//!
//! A register page is never mapped (its faults end in SIGBUS, see
//! [`BarVma::huge_fault`](mm::VmOperations::huge_fault)), so every load or
//! store through a mapping of a register BAR raises SIGBUS in the accessing
//! thread; `mm`'s handler decodes the instruction and calls
//! [`BarVma::with_registers`] once for it. That takes the same steps as a
//! fault, in the same order and under the same locks, so an emulated access
//! happens exactly when a fault could have mapped the page: resv, status
//! Ok, the device pinned; resv dropped; `memory_lock` (read), status
//! re-checked, memory decoding on. A revoke (which holds `memory_lock` for
//! write) therefore falls before or after the whole instruction, never
//! between the read and the write of a read-modify-write. Each access is
//! then translated as a fault translates its page ([`find_pfn`] at order 0
//! on the VMA's geometry) and goes to `RegisterBar::read`/`write` at that
//! BAR offset and width.
//!
//! Runs in a signal handler: no allocation on the normal path. The locks
//! are those a fault of the page takes; the interrupted code is the access
//! itself. Dropping the last reference to a device that was closed
//! meanwhile is the one path that may free memory; it cannot interrupt the
//! allocator, since the trapping instruction is the program's own access.

use dmabuf::Status;
use mm::{MmioAddr, MmioRegs, MmioRevoked, VmMmio, Width};
use page::{PhysAddr, VirtAddr, PAGE_SIZE};
use pci::RegisterBar;

use super::{find_pfn, may_insert, BarVma, PfnLookup, VmaGeometry};
use crate::core_h::bar_start;

impl BarVma {
    /// Whether this mapping shows a register BAR, whose accesses trap.
    pub(crate) fn traps(&self) -> bool {
        let index = self.vm_private_data.region_index;
        self.vm_private_data.vdev().is_some_and(|v| v.bar(index).is_some_and(|b| b.registers().is_some()))
    }
}

impl VmMmio for BarVma {
    fn with_registers(&self, access: &mut dyn FnMut(&dyn MmioRegs)) -> Result<(), MmioRevoked> {
        let buf = &self.vm_file;
        let vdev = {
            let resv = buf.resv();
            if resv.status() != Status::Ok {
                return Err(MmioRevoked);
            }
            self.vm_private_data.vdev().ok_or(MmioRevoked)?
        };
        let index = self.vm_private_data.region_index;
        let mem = vdev.lock_memory_read();
        if buf.status() != Status::Ok || !may_insert(&mem) {
            return Err(MmioRevoked);
        }
        let bar = vdev.bar(index).ok_or(MmioRevoked)?;
        let regs = bar.registers().ok_or(MmioRevoked)?;
        access(&Registers { vma: self, regs: regs.as_ref(), bar_start: bar_start(index), bar_len: bar.len });
        drop(mem);
        Ok(())
    }
}

/// One register BAR as one trapped instruction sees it: `memory_lock` is
/// held and the status checked by [`BarVma::with_registers`].
struct Registers<'a> {
    vma: &'a BarVma,
    regs: &'a dyn RegisterBar,
    bar_start: PhysAddr,
    bar_len: u64,
}

impl Registers<'_> {
    /// The BAR offset of an access, translated as a fault of its page is,
    /// and whether the BAR covers it (a BAR smaller than a page leaves the
    /// rest of the page unclaimed: reads all ones, writes dropped).
    fn offset(&self, at: MmioAddr, width: Width) -> Result<Option<u64>, MmioRevoked> {
        let page = at.addr.page_down();
        let geometry = VmaGeometry {
            vm_start: at.vm_start,
            vm_end: VirtAddr(page.0 + PAGE_SIZE),
            vm_pgoff: at.vm_pgoff,
            vma_pgoff_adjust: self.vma.vm_private_data.vma_pgoff_adjust,
        };
        let PfnLookup::Found { pfn, .. } = find_pfn(self.vma.vm_file.ranges(), &geometry, at.addr, 0) else {
            return Err(MmioRevoked);
        };
        let paddr = pfn.phys().ok_or(MmioRevoked)?.0 + (at.addr.0 - page.0);
        let offset = paddr.checked_sub(self.bar_start.0).ok_or(MmioRevoked)?;
        Ok((offset + width.bytes() as u64 <= self.bar_len).then_some(offset))
    }
}

impl MmioRegs for Registers<'_> {
    fn read(&self, at: MmioAddr, width: Width) -> Result<u64, MmioRevoked> {
        let mut bytes = [0xffu8; 8];
        if let Some(offset) = self.offset(at, width)? {
            self.regs.read(offset, &mut bytes[..width.bytes()]);
        }
        Ok(u64::from_le_bytes(bytes))
    }

    fn write(&self, at: MmioAddr, width: Width, value: u64) -> Result<(), MmioRevoked> {
        if let Some(offset) = self.offset(at, width)? {
            self.regs.write(offset, &value.to_le_bytes()[..width.bytes()]);
        }
        Ok(())
    }
}
