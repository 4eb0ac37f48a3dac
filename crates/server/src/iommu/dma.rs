//! DMA as a device performs it: an IOVA range translated through the
//! mappings of a container or IOAS, each piece landing in the memory of
//! the process that made the mapping.
//!
//! Translation and copy are two steps. The whole range is translated under
//! the owner's lock (an unmapped or wrongly permitted page fails the
//! transfer before any byte moves, as the IOMMU faults the access); the
//! bytes are then copied with no lock held, so a slow or stuck process
//! memory never blocks map and unmap calls. A mapping removed between the
//! two steps is the race a real device has with an unmap that is not
//! fenced by its driver.

use std::sync::Arc;

use rustix::io::Errno;

use super::ProcessMemory;

/// What a mapping lets the device do (`IOMMU_READ`, `IOMMU_WRITE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Prot {
    /// The device may read the memory.
    pub read: bool,
    /// The device may write it.
    pub write: bool,
}

/// The direction of a transfer, from the device's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// The device reads memory (needs `IOMMU_READ`).
    Read,
    /// The device writes memory (needs `IOMMU_WRITE`).
    Write,
}

/// One mapping as translation sees it: the process memory behind its first
/// IOVA.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// First IOVA of the mapping.
    pub start: u64,
    /// Last IOVA of the mapping (inclusive).
    pub last: u64,
    /// The process memory.
    pub mm: &'a Arc<dyn ProcessMemory>,
    /// The virtual address `start` translates to.
    pub vaddr: u64,
    /// Its permissions.
    pub prot: Prot,
}

/// One piece of a translated transfer.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    mm: Arc<dyn ProcessMemory>,
    vaddr: u64,
    /// Offset of the piece in the transfer's buffer.
    off: usize,
    len: usize,
}

/// Translates `[iova, iova + len)` for a transfer in direction `dir`;
/// `lookup` gives the mapping containing an IOVA.
///
/// # Errors
///
/// `EFAULT` when some byte is not mapped, or mapped without the permission
/// `dir` needs.
pub(crate) fn translate<'a>(
    iova: u64,
    len: usize,
    dir: Dir,
    mut lookup: impl FnMut(u64) -> Option<Target<'a>>,
) -> Result<Vec<Segment>, Errno> {
    let mut segs = Vec::new();
    if len == 0 {
        return Ok(segs);
    }
    let last = iova.checked_add(len as u64 - 1).ok_or(Errno::FAULT)?;
    let mut cur = iova;
    let mut off = 0usize;
    loop {
        let t = lookup(cur).ok_or(Errno::FAULT)?;
        debug_assert!(t.start <= cur && cur <= t.last);
        let allowed = match dir {
            Dir::Read => t.prot.read,
            Dir::Write => t.prot.write,
        };
        if !allowed {
            return Err(Errno::FAULT);
        }
        let seg_last = t.last.min(last);
        let n = (seg_last - cur + 1) as usize;
        let vaddr = t.vaddr.checked_add(cur - t.start).ok_or(Errno::FAULT)?;
        segs.push(Segment { mm: Arc::clone(t.mm), vaddr, off, len: n });
        if seg_last == last {
            return Ok(segs);
        }
        cur = seg_last + 1;
        off += n;
    }
}

/// Reads the translated pieces into `buf`.
///
/// # Errors
///
/// `EFAULT` from a process memory that no longer holds the pages.
pub(crate) fn read_segments(segs: &[Segment], buf: &mut [u8]) -> Result<(), Errno> {
    for s in segs {
        s.mm.read(s.vaddr, &mut buf[s.off..s.off + s.len])?;
    }
    Ok(())
}

/// Writes `data` through the translated pieces.
///
/// # Errors
///
/// `EFAULT` from a process memory that no longer holds the pages.
pub(crate) fn write_segments(segs: &[Segment], data: &[u8]) -> Result<(), Errno> {
    for s in segs {
        s.mm.write(s.vaddr, &data[s.off..s.off + s.len])?;
    }
    Ok(())
}

/// How much one probe read covers: large enough that pinning a guest's RAM
/// takes few calls, small enough to keep the scratch buffer cheap.
const PROBE_CHUNK: u64 = 256 * 1024;

/// The default pin check: reads all of `[vaddr, vaddr + len)`, so every
/// page is faulted in (as pinning does) and a hole fails.
///
/// # Errors
///
/// `EFAULT` when some page is not readable, or the range wraps.
pub(crate) fn probe_readable<M: ProcessMemory + ?Sized>(mem: &M, vaddr: u64, len: u64) -> Result<(), Errno> {
    let end = vaddr.checked_add(len).ok_or(Errno::FAULT)?;
    let mut buf = vec![0u8; PROBE_CHUNK.min(len) as usize];
    let mut at = vaddr;
    while at < end {
        let n = PROBE_CHUNK.min(end - at) as usize;
        mem.read(at, &mut buf[..n])?;
        at += n as u64;
    }
    Ok(())
}
