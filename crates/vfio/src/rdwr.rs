//! Region read/write through the device fd (`pread`/`pwrite`). Analogous
//! to Linux's `drivers/vfio/pci/vfio_pci_rdwr.c`.

use std::sync::Arc;

use page::PhysAddr;
use rustix::io::Errno;

use crate::core::VfioPciDevice;
use crate::core_h::{bar_start, offset_to_index, VFIO_PCI_OFFSET_MASK};
use crate::error::{fail, VfioError};
use crate::private::BarStore;
use crate::uapi::{VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_ROM_REGION_INDEX};

/// One transfer.
#[derive(Debug)]
pub(crate) enum Io<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Io<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Io::Read(b) => b.len(),
            Io::Write(d) => d.len(),
        }
    }
}

/// Dispatches by region index (`offset >> 40`).
pub(crate) fn rw(vdev: &Arc<VfioPciDevice>, offset: u64, io: Io<'_>) -> Result<usize, VfioError> {
    let index = offset_to_index(offset);
    let pos = offset & VFIO_PCI_OFFSET_MASK;
    match index {
        i if i < u64::from(VFIO_PCI_ROM_REGION_INDEX) => bar_rw(vdev, i as u32, pos, io),
        i if i == u64::from(VFIO_PCI_CONFIG_REGION_INDEX) => crate::config::config_rw(vdev, pos, io),
        // ROM: the catalogue has none; VGA: not a VGA device; no device regions.
        _ => fail(Errno::INVAL, "region cannot be read or written"),
    }
}

/// `vfio_pci_bar_rw()`: refuses while memory decoding is off (the device
/// would not answer), clips at the BAR end.
fn bar_rw(vdev: &VfioPciDevice, index: u32, pos: u64, io: Io<'_>) -> Result<usize, VfioError> {
    let Some(bar) = vdev.bar(index) else {
        return fail(Errno::INVAL, "no such BAR");
    };
    if pos >= bar.len {
        return fail(Errno::INVAL, "offset past the end of the BAR");
    }
    let count = (io.len() as u64).min(bar.len - pos) as usize;
    let mem = vdev.lock_memory_read();
    if !mem.pci.memory_enabled() {
        return fail(Errno::IO, "memory decoding is disabled");
    }
    // pos < bar.len, which is below 2^40: no overflow.
    let paddr = PhysAddr(bar_start(index).0 + pos);
    match (&bar.store, io) {
        (BarStore::Ram(m), Io::Read(buf)) => m.read(paddr, &mut buf[..count])?,
        (BarStore::Ram(m), Io::Write(data)) => m.write(paddr, &data[..count])?,
        (BarStore::Registers { regs: r, .. }, Io::Read(buf)) => {
            for (at, w) in chunks(pos, count, 8) {
                r.read(pos + at as u64, &mut buf[at..at + w]);
            }
        }
        (BarStore::Registers { regs: r, .. }, Io::Write(data)) => {
            for (at, w) in chunks(pos, count, 8) {
                r.write(pos + at as u64, &data[at..at + w]);
            }
        }
    }
    drop(mem);
    Ok(count)
}

/// Splits `[pos, pos + count)` into naturally aligned accesses of at most
/// `max` bytes, as the kernel's region accessors do; yields (offset into the
/// buffer, width).
pub(crate) fn chunks(pos: u64, count: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= count {
            return None;
        }
        let addr = pos + at as u64;
        let mut w = max;
        while w > 1 && (addr % w as u64 != 0 || at + w > count) {
            w /= 2;
        }
        let r = (at, w);
        at += w;
        Some(r)
    })
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn chunks_are_naturally_aligned_and_cover_the_range() {
        let v: Vec<_> = chunks(0x3, 9, 4).collect();
        assert_eq!(v, vec![(0, 1), (1, 4), (5, 4)]);
        let v: Vec<_> = chunks(0x4, 2, 4).collect();
        assert_eq!(v, vec![(0, 2)]);
        assert_eq!(chunks(0, 0, 4).count(), 0);
    }
}
