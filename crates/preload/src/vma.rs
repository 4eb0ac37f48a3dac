//! Our side of a mapping: the local state the server's notifications
//! change, the fault operations our address space calls, and the register
//! accesses forwarded to the server.
//!
//! # Locks
//!
//! ```text
//! Process::mappings            the table; never held across anything below
//! ClientMapping::allowed       write: a notification (set, then zap)
//!                              read: one fault, until it has mapped or poisoned
//! mmap_lock (mm, read) → allowed (read)      the fault path
//! allowed (write) → vmas (mm)                the zap
//! ```
//!
//! A fault decides and maps (or poisons) under the read lock; a
//! notification that revokes takes the write lock, which waits for the
//! faults in flight, then zaps what they mapped. So once the process has
//! acknowledged a revoke, no page of the mapping is mapped and every later
//! fault sees `allowed == false` (spec §6.2.3, "no PTE outlives a revoke", as
//! the in-process `BarVma` keeps it with `memory_lock`). An un-revoke zaps
//! too, clearing the poison markers earlier faults left.
//!
//! The server's status page adds a second condition that needs nothing
//! from our notify thread: before it sends a notification it writes the
//! mapping's slot, and a fault maps pages only when both `allowed` and the
//! slot allow. So a revoke takes effect in our fault path at once, even
//! while our notify thread is stopped or behind; if the process does not
//! acknowledge in time, the server cuts it off (truncates the frames),
//! which zaps our pages without us, and any later fault is refused here.
//! A fault re-reads the slot after its insert and zaps the mapping if the
//! slot changed meanwhile (a revoke racing the insert): the insert cannot
//! outlive it by more than this check.
//!
//! A register access is not covered by `allowed`: the server's hold
//! (`MmioBegin`) is the authoritative check, and holding our lock across
//! that round trip would deadlock with a revoke that waits for our ack.

use std::cell::Cell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock, RwLock};

use dmabuf::PhysVec;
use mm::{
    MapPiece, MappingId, MmioAddr, MmioRegs, MmioRevoked, StatusView, VmFault, VmFaultResult, VmMmio, VmOperations,
    Width,
};
use page::PgOff;
use vfio::{find_pfn, PfnLookup, VmaGeometry, FAULT_AROUND_BYTES};
use wire::msg::{status_slot, MmioAt};
use wire::transport::{recv_small, send_small};
use wire::{Reply, Request};

use crate::{pool, process};

/// One mapping of ours (one mmap call; splits keep its id).
#[derive(Debug)]
pub(crate) struct ClientMapping {
    /// Immutable. Our id: the number of its `mm::MappingId` and the wire's
    /// `mapping`.
    pub(crate) id: u64,
    /// Whether faults may map pages (the buffer's status is Ok), as the
    /// server last said; `false` until its first notification.
    pub(crate) allowed: RwLock<bool>,
    /// Set once when mapped: what moving it (`mremap`) needs.
    pub(crate) placed: OnceLock<Placed>,
    /// Its slot in the status page, from its first notification (which
    /// comes before any fault can be allowed).
    pub(crate) slot: OnceLock<Slot>,
}

impl ClientMapping {
    pub(crate) fn new(id: u64) -> Self {
        ClientMapping { id, allowed: RwLock::new(false), placed: OnceLock::new(), slot: OnceLock::new() }
    }

    /// The current value of the mapping's status-page slot; `None` before
    /// its first notification.
    pub(crate) fn slot_value(&self) -> Option<u32> {
        self.slot.get().and_then(|s| s.view.get(s.index))
    }
}

/// A mapping's slot in this process's status page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// The page, mapped read-only for the life of the process.
    pub(crate) view: &'static StatusView,
    /// The slot's index.
    pub(crate) index: usize,
}

/// How a mapping was made.
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    /// `vm_pgoff` of its first page.
    pub(crate) vm_pgoff: u64,
    /// Its backing, in VA order from its first page.
    pub(crate) pieces: Vec<MapPiece>,
    pub(crate) ops: Arc<ClientVma>,
    pub(crate) mmio: Option<Arc<dyn VmMmio>>,
    pub(crate) path: String,
    pub(crate) inode: u64,
    /// The plan's memories, each with the geometry-only copy the pieces
    /// name (the frames are asked for again to map more: `mremap`).
    pub(crate) memories: Vec<(wire::MemoryRef, Arc<mm::PhysMemory>)>,
}

impl Placed {
    /// The backing of `len` bytes from page `first` of the mapping.
    pub(crate) fn slice(&self, first: u64, len: u64) -> Vec<MapPiece> {
        let (from, to) = (first * page::PAGE_SIZE, first * page::PAGE_SIZE + len);
        let mut out = Vec::new();
        let mut at = 0;
        for p in &self.pieces {
            let (s, e) = (at.max(from), (at + p.len).min(to));
            if s < e {
                out.push(MapPiece {
                    memory: p.memory.clone(),
                    paddr: page::PhysAddr(p.paddr.0 + (s - at)),
                    len: e - s,
                });
            }
            at += p.len;
        }
        out
    }
}

/// The fault operations of a mapping: the in-process `BarVma`'s, with the
/// status check replaced by the local `allowed` and the status-page slot.
#[derive(Debug)]
pub(crate) struct ClientVma {
    pub(crate) mapping: Arc<ClientMapping>,
    /// Immutable. The buffer's ranges, what `find_pfn` walks.
    pub(crate) ranges: Vec<PhysVec>,
    /// Immutable. The `vm_pgoff` of buffer offset 0.
    pub(crate) vma_pgoff_adjust: PgOff,
    /// Immutable. Register pages: never mapped, every access traps.
    pub(crate) traps: bool,
}

impl VmOperations for ClientVma {
    /// As `vfio_pci_mmap_huge_fault()`: SIGBUS unless both `allowed` and
    /// the slot allow, then `find_pfn` at this order and a fault-around
    /// window, all under the read lock; the slot is read again afterwards
    /// (see the module doc).
    fn huge_fault(&self, vmf: &mut VmFault<'_>, order: u32) -> VmFaultResult {
        let allowed = self.mapping.allowed.read().unwrap_or_else(|e| e.into_inner());
        let before = self.mapping.slot_value();
        if !*allowed || !before.is_some_and(status_slot::allows) {
            return vmf.sigbus();
        }
        let r = self.insert(vmf, order);
        if r.is_nopage() && self.mapping.slot_value() != before {
            // The server changed the slot while we inserted: what we mapped
            // may be revoked already. Zapping makes the retry decide anew.
            self.zap_after_race();
        }
        r
    }
}

impl ClientVma {
    /// The insert of [`ClientVma::huge_fault`], once allowed.
    fn insert(&self, vmf: &mut VmFault<'_>, order: u32) -> VmFaultResult {
        if self.traps {
            return if order > 0 { VmFaultResult::FALLBACK } else { vmf.sigbus() };
        }
        let vma = VmaGeometry {
            vm_start: vmf.vm_start(),
            vm_end: vmf.vm_end(),
            vm_pgoff: vmf.vm_pgoff(),
            vma_pgoff_adjust: self.vma_pgoff_adjust,
        };
        let address = vmf.address();
        match find_pfn(&self.ranges, &vma, address, order) {
            PfnLookup::Found { range, .. } => {
                vmf.insert_pfn_around(range.fault_around(address, order, FAULT_AROUND_BYTES), order)
            }
            PfnLookup::Fallback => VmFaultResult::FALLBACK,
            PfnLookup::Fault => {
                tracing::warn!(%address, order, mapping = self.mapping.id, "fault outside every range of the buffer");
                vmf.sigbus()
            }
        }
    }

    /// Zaps every page of the mapping (from the fault thread, which holds
    /// `mmap_lock` for read and no VMA-table lock: the zap takes only the
    /// latter).
    fn zap_after_race(&self) {
        let aspace = process::current().and_then(|p| p.aspace_if_made());
        if let Some(aspace) = aspace {
            if let Err(e) = aspace.mapping_handle(MappingId(self.mapping.id)).zap() {
                tracing::error!(mapping = self.mapping.id, %e, "zap after a racing status change failed");
            }
        }
    }
}

/// Register accesses of a mapping, forwarded to the server on a pooled
/// connection: `MmioBegin` (the server takes the fault's locks and checks
/// the status), one `MmioRead`/`MmioWrite` per device access of the
/// instruction, `MmioEnd`. Runs in the SIGBUS handler: stack messages
/// only, no allocation, no lock of ours.
#[derive(Debug)]
pub(crate) struct ClientMmio {
    /// Immutable. The mapping's id.
    pub(crate) id: u64,
}

/// The server holding the device for one instruction.
struct RemoteRegs<'a> {
    conn: BorrowedFd<'a>,
    /// Set when the connection broke mid-instruction: it is then closed
    /// (the server releases its hold on the hang-up) instead of pooled.
    broken: Cell<bool>,
}

impl RemoteRegs<'_> {
    fn exchange(&self, req: &Request) -> Result<Reply, MmioRevoked> {
        if self.broken.get() {
            return Err(MmioRevoked);
        }
        let r = send_small(self.conn, req).and_then(|()| recv_small::<Reply>(self.conn));
        r.map_err(|_| {
            self.broken.set(true);
            MmioRevoked
        })
    }
}

fn at(a: MmioAddr) -> MmioAt {
    MmioAt { addr: a.addr.0, vm_start: a.vm_start.0, vm_pgoff: a.vm_pgoff.0 }
}

impl MmioRegs for RemoteRegs<'_> {
    fn read(&self, a: MmioAddr, width: Width) -> Result<u64, MmioRevoked> {
        match self.exchange(&Request::MmioRead { at: at(a), width: width.bytes() as u8 })? {
            Reply::Value(v) => Ok(v),
            _ => Err(MmioRevoked),
        }
    }

    fn write(&self, a: MmioAddr, width: Width, value: u64) -> Result<(), MmioRevoked> {
        match self.exchange(&Request::MmioWrite { at: at(a), width: width.bytes() as u8, value })? {
            Reply::Ok => Ok(()),
            _ => Err(MmioRevoked),
        }
    }
}

impl VmMmio for ClientMmio {
    fn with_registers(&self, access: &mut dyn FnMut(&dyn MmioRegs)) -> Result<(), MmioRevoked> {
        // In a fork child this is the child's generation, whose token the
        // server does not know for this mapping: the access is SIGBUS.
        let p = process::current().ok_or(MmioRevoked)?;
        let conn: OwnedFd = match p.pool.take() {
            Some(c) => c,
            None => pool::connect_small(&p.config.socket, p.token).map_err(|_| MmioRevoked)?,
        };
        let regs = RemoteRegs { conn: conn.as_fd(), broken: Cell::new(false) };
        match regs.exchange(&Request::MmioBegin { mapping: self.id }) {
            Ok(Reply::Ok) => {}
            Ok(_) => {
                p.pool.give(conn);
                return Err(MmioRevoked);
            }
            Err(_) => return Err(MmioRevoked),
        }
        access(&regs);
        let ended = !regs.broken.get() && send_small(conn.as_fd(), &Request::MmioEnd).is_ok();
        if ended {
            p.pool.give(conn);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_of_a_two_piece_mapping_keeps_each_page_on_its_frame() {
        let p4 = 4 * page::PAGE_SIZE;
        let mem = Arc::new(mm::PhysMemory::new("slice-test", page::PhysAddr(0), 4 * p4).unwrap());
        let piece = |paddr: u64, len: u64| MapPiece { memory: mem.clone(), paddr: page::PhysAddr(paddr), len };
        let placed = Placed {
            vm_pgoff: 0,
            pieces: vec![piece(p4, p4), piece(3 * p4, p4)],
            ops: Arc::new(ClientVma {
                mapping: Arc::new(ClientMapping::new(1)),
                ranges: Vec::new(),
                vma_pgoff_adjust: PgOff(0),
                traps: false,
            }),
            mmio: None,
            path: String::new(),
            memories: Vec::new(),
            inode: 0,
        };
        // Pages 2..6: the second half of the first piece, the first half of the second.
        let got: Vec<(u64, u64)> = placed.slice(2, p4).iter().map(|p| (p.paddr.0, p.len)).collect();
        assert_eq!(got, vec![(p4 + p4 / 2, p4 / 2), (3 * p4, p4 / 2)]);
    }
}
