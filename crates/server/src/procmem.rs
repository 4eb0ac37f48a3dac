//! The memory of a process the server serves, by address: where the
//! `vaddr`s of its DMA mappings live, and which of its addresses are BAR
//! mappings of ours (the kernel's `VM_IO | VM_PFNMAP` VMAs).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mm::MapPiece;
use page::PhysAddr;
use rustix::io::Errno;
use vfio::RemoteVma;

use crate::iommu::{PinFlags, ProcessMemory};
use crate::lock;

/// One address range of the process that is (part of) a BAR mapping.
#[derive(Debug, Clone)]
struct BarRange {
    /// The process's id of the mapping.
    mapping: u64,
    /// One past the last address.
    end: u64,
    /// Offset of the range's first byte in the mapping.
    off: u64,
    /// Mapped writable.
    writable: bool,
    /// A register mapping: its pages trap, they hold no memory.
    traps: bool,
    /// The mapping's backing, in VA order from its start.
    pieces: Arc<[MapPiece]>,
}

/// A part of an address range: ordinary memory, or bytes of a BAR mapping.
#[derive(Debug)]
enum Part {
    Plain { vaddr: u64, len: u64 },
    Bar { range: BarRange, off: u64, len: u64 },
}

/// The memory of process `pid` (the peer of a connection, from
/// `SO_PEERCRED`), read and written with `process_vm_readv(2)` and
/// `process_vm_writev(2)`: the kernel checks that the server may access the
/// process and the page permissions of every byte.
///
/// The addresses where the process mapped BARs of ours (it says so with
/// `Request::Mapped`) are never read that way: their pages are faulted in
/// by the process itself, or trap. They are pinned as the kernel pins a
/// `VM_PFNMAP` range (refused by iommufd, accepted by Type1's `follow_pfn`
/// path), and DMA to them goes to the BAR's memory directly (peer to peer).
///
/// The pid names the process as long as it lives; a server that outlives it
/// reads nothing (`ESRCH`), reported as `EFAULT` like any unreachable byte.
#[derive(Debug, Clone)]
pub struct PeerMemory {
    pid: i32,
    /// Protected by: itself, a leaf (taken under an IOMMU lock by pin
    /// checks; nothing is copied while it is held). BAR mappings by first
    /// address.
    bars: Arc<Mutex<BTreeMap<u64, BarRange>>>,
}

impl PeerMemory {
    /// The memory of process `pid`, with no BAR mapping known.
    pub fn new(pid: i32) -> Self {
        Self { pid, bars: Arc::default() }
    }

    /// The process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The process mapped `vma` (its mapping `mapping`) at `addr`. An
    /// earlier address of the same mapping is forgotten (it moved); a range
    /// this one covers is no longer what it was.
    ///
    /// # Errors
    ///
    /// `EINVAL` for an address that is not page aligned or a range that wraps.
    pub(crate) fn mapped(&self, mapping: u64, addr: u64, vma: &RemoteVma) -> Result<(), Errno> {
        let end = addr.checked_add(vma.len).ok_or(Errno::INVAL)?;
        if addr % page::PAGE_SIZE != 0 {
            return Err(Errno::INVAL);
        }
        let range = BarRange {
            mapping,
            end,
            off: 0,
            writable: vma.writable,
            traps: vma.traps,
            pieces: vma.pieces.clone().into(),
        };
        let mut bars = lock(&self.bars);
        bars.retain(|_, r| r.mapping != mapping);
        punch(&mut bars, addr, end);
        bars.insert(addr, range);
        Ok(())
    }

    /// Mapping `mapping` is gone from the process.
    pub(crate) fn unmapped(&self, mapping: u64) {
        lock(&self.bars).retain(|_, r| r.mapping != mapping);
    }

    /// Every mapping is gone (the process is).
    pub(crate) fn clear(&self) {
        lock(&self.bars).clear();
    }

    /// `[vaddr, vaddr + len)` split at the edges of BAR mappings.
    fn parts(&self, vaddr: u64, len: u64) -> Result<Vec<Part>, Errno> {
        let end = vaddr.checked_add(len).ok_or(Errno::FAULT)?;
        let bars = lock(&self.bars);
        let mut parts = Vec::new();
        let mut at = vaddr;
        while at < end {
            let covering = bars.range(..=at).next_back().filter(|(_, r)| r.end > at);
            if let Some((&start, r)) = covering {
                let n = r.end.min(end) - at;
                parts.push(Part::Bar { range: r.clone(), off: r.off + (at - start), len: n });
                at += n;
                continue;
            }
            let next = bars.range(at..end).next().map_or(end, |(&s, _)| s);
            parts.push(Part::Plain { vaddr: at, len: next - at });
            at = next;
        }
        Ok(parts)
    }

    /// Plain memory of the process, without regard to BAR mappings.
    fn plain(&self) -> Plain {
        Plain(self.pid)
    }
}

/// Removes `[start, end)` from the ranges in `bars`, keeping what lies
/// outside it.
fn punch(bars: &mut BTreeMap<u64, BarRange>, start: u64, end: u64) {
    let hit: Vec<u64> = bars.range(..end).filter(|(_, r)| r.end > start).map(|(&s, _)| s).collect();
    for s in hit {
        let Some(r) = bars.remove(&s) else { continue };
        if s < start {
            bars.insert(s, BarRange { end: start, ..r.clone() });
        }
        if r.end > end {
            bars.insert(end, BarRange { off: r.off + (end - s), ..r });
        }
    }
}

/// Copies between `buf` and the BAR memory behind bytes `[off, off +
/// buf.len())` of a mapping.
fn bar_copy(range: &BarRange, mut off: u64, mut buf: Io<'_>) -> Result<(), Errno> {
    if range.traps {
        // Peer-to-peer access to a register BAR would reach the device's
        // emulation from a DMA transfer; not modelled: an IOMMU fault.
        tracing::debug!(mapping = range.mapping, "DMA to a register BAR mapping is not modelled");
        return Err(Errno::FAULT);
    }
    let mut done = 0usize;
    let total = buf.len();
    for p in range.pieces.iter() {
        if done == total {
            break;
        }
        if off >= p.len {
            off -= p.len;
            continue;
        }
        let n = ((p.len - off) as usize).min(total - done);
        let paddr = PhysAddr(p.paddr.0 + off);
        let r = match &mut buf {
            Io::Read(b) => p.memory.read(paddr, &mut b[done..done + n]),
            Io::Write(d) => p.memory.write(paddr, &d[done..done + n]),
        };
        r.map_err(|e| {
            tracing::debug!(%e, "BAR memory unreachable");
            Errno::FAULT
        })?;
        done += n;
        off = 0;
    }
    if done == total {
        Ok(())
    } else {
        Err(Errno::FAULT)
    }
}

enum Io<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Io<'_> {
    fn len(&self) -> usize {
        match self {
            Io::Read(b) => b.len(),
            Io::Write(d) => d.len(),
        }
    }
}

/// Every failure is the IOMMU's fault on that address: `EFAULT`. The cause
/// goes to the log.
fn fault(pid: i32, vaddr: u64, e: Errno) -> Errno {
    if e != Errno::FAULT {
        tracing::debug!(pid, vaddr, %e, "process memory unreachable");
    }
    Errno::FAULT
}

/// The ordinary memory of a process: `process_vm_readv`/`writev`, and the
/// default pin check (every page read).
#[derive(Debug)]
struct Plain(i32);

impl ProcessMemory for Plain {
    fn read(&self, vaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        mm::process_vm::read(self.0, vaddr, buf).map_err(|e| fault(self.0, vaddr, e))
    }

    fn write(&self, vaddr: u64, data: &[u8]) -> Result<(), Errno> {
        mm::process_vm::write(self.0, vaddr, data).map_err(|e| fault(self.0, vaddr, e))
    }
}

impl ProcessMemory for PeerMemory {
    fn read(&self, vaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mut at = 0usize;
        for part in self.parts(vaddr, buf.len() as u64)? {
            match part {
                Part::Plain { vaddr, len } => {
                    self.plain().read(vaddr, &mut buf[at..at + len as usize])?;
                    at += len as usize;
                }
                Part::Bar { range, off, len } => {
                    bar_copy(&range, off, Io::Read(&mut buf[at..at + len as usize]))?;
                    at += len as usize;
                }
            }
        }
        Ok(())
    }

    fn write(&self, vaddr: u64, data: &[u8]) -> Result<(), Errno> {
        let mut at = 0usize;
        for part in self.parts(vaddr, data.len() as u64)? {
            let (n, r) = match part {
                Part::Plain { vaddr, len } => (len, self.plain().write(vaddr, &data[at..at + len as usize])),
                Part::Bar { range, off, len } => (len, bar_copy(&range, off, Io::Write(&data[at..at + len as usize]))),
            };
            r?;
            at += n as usize;
        }
        Ok(())
    }

    /// Type1 lets only the process that made a mapping unmap it: the pid
    /// tells a fork child from its parent.
    fn mm_id(&self) -> Option<u64> {
        Some(self.pid as u64)
    }

    /// Ordinary memory is read through (faulted in, as pinning does); a BAR
    /// mapping is never read (its register pages would trap): it is a
    /// `VM_IO | VM_PFNMAP` range, which `pin_user_pages()` refuses with
    /// `EFAULT` (`check_vma_flags()`; iommufd) and Type1's `follow_pfn`
    /// path accepts unless the device must write a read-only mapping.
    fn pin(&self, vaddr: u64, len: u64, flags: PinFlags) -> Result<(), Errno> {
        for part in self.parts(vaddr, len)? {
            match part {
                Part::Plain { vaddr, len } => self.plain().pin(vaddr, len, flags)?,
                Part::Bar { range, .. } => {
                    if !flags.allow_pfnmap || (flags.write && !range.writable) {
                        tracing::debug!(pid = self.pid, mapping = range.mapping, "BAR mapping not pinned");
                        return Err(Errno::FAULT);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_of_a_process_is_read_and_written_by_address() {
        let me = PeerMemory::new(std::process::id() as i32);
        let src = *b"dma";
        let mut dst = [0u8; 3];
        me.read(src.as_ptr() as u64, &mut dst).unwrap();
        assert_eq!(&dst, b"dma");
        me.write(dst.as_mut_ptr() as u64, b"DMA").unwrap();
        assert_eq!(&dst, b"DMA");
        assert_eq!(me.read(8, &mut dst), Err(Errno::FAULT));
        assert_eq!(me.mm_id(), Some(u64::from(std::process::id())));
    }

    fn range(mapping: u64, end: u64) -> BarRange {
        BarRange { mapping, end, off: 0, writable: true, traps: false, pieces: Arc::from(Vec::new()) }
    }

    #[test]
    fn a_new_mapping_punches_the_ranges_it_covers() {
        let mut bars = BTreeMap::new();
        bars.insert(0x1000, range(1, 0x5000));
        punch(&mut bars, 0x2000, 0x3000);
        let left = &bars[&0x1000];
        let right = &bars[&0x3000];
        assert_eq!((left.end, left.off), (0x2000, 0));
        assert_eq!((right.end, right.off), (0x5000, 0x2000));
        punch(&mut bars, 0, 0x10000);
        assert!(bars.is_empty());
    }

    #[test]
    fn an_address_range_splits_at_the_edges_of_bar_mappings() {
        let me = PeerMemory::new(std::process::id() as i32);
        lock(&me.bars).insert(0x2000, range(7, 0x4000));
        let parts = me.parts(0x1000, 0x4000).unwrap();
        assert!(matches!(parts[0], Part::Plain { vaddr: 0x1000, len: 0x1000 }));
        assert!(matches!(parts[1], Part::Bar { off: 0, len: 0x2000, .. }));
        assert!(matches!(parts[2], Part::Plain { vaddr: 0x4000, len: 0x1000 }));
        let pin = |allow_pfnmap| me.pin(0x2000, 0x1000, PinFlags { write: true, allow_pfnmap });
        assert_eq!(pin(false), Err(Errno::FAULT), "pin_user_pages refuses VM_PFNMAP");
        assert_eq!(pin(true), Ok(()), "Type1 follows the pfn");
        me.unmapped(7);
        assert!(matches!(me.parts(0x2000, 0x1000).unwrap()[0], Part::Plain { .. }));
    }
}
