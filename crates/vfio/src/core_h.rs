//! The region offset encoding of the device fd: what Linux's
//! `include/linux/vfio_pci_core.h` defines (`VFIO_PCI_OFFSET_SHIFT`,
//! `VFIO_PCI_OFFSET_TO_INDEX`, `VFIO_PCI_INDEX_TO_OFFSET`,
//! `VFIO_PCI_OFFSET_MASK`), and where a BAR lives in our physical memory.
//!
//! Our "physical memory": BAR `i` of a device lives in a memfd with the BAR's
//! byte `x` at file offset `(i << 40) + x`. A physical address (`paddr`) is
//! such a file offset and a PFN is `paddr >> PAGE_SHIFT`. So [`bar_start`] is
//! the same value as the region offset [`index_to_offset`], and BARs are
//! naturally aligned to 2 MiB and 1 GiB, as real BARs usually are.
//!
//! Spec §2.1.

use page::{PgOff, PhysAddr, PAGE_SHIFT};

/// `VFIO_PCI_OFFSET_SHIFT`—bit position of the region index in a device-fd
/// file offset.
pub const VFIO_PCI_OFFSET_SHIFT: u32 = 40;
/// `VFIO_PCI_OFFSET_MASK`—selects the offset inside a region from a
/// device-fd file offset.
pub const VFIO_PCI_OFFSET_MASK: u64 = (1 << VFIO_PCI_OFFSET_SHIFT) - 1;

/// Shift from a `vm_pgoff` (in pages) to its region index.
const PGOFF_INDEX_SHIFT: u32 = VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT;
/// Mask selecting the page offset inside a region from a `vm_pgoff`.
const PGOFF_BAR_MASK: u64 = VFIO_PCI_OFFSET_MASK >> PAGE_SHIFT;

/// `VFIO_PCI_OFFSET_TO_INDEX`—the region index encoded in a device-fd offset.
///
/// Returns `u64` because an arbitrary user offset can encode an index that
/// does not fit any real region count; compare before narrowing.
#[must_use]
pub const fn offset_to_index(off: u64) -> u64 {
    off >> VFIO_PCI_OFFSET_SHIFT
}

/// `VFIO_PCI_INDEX_TO_OFFSET`—the device-fd offset at which region `index`
/// starts.
///
/// Like the kernel macro, indices of 2^24 and above lose their high bits; real
/// region indices are single digits.
#[must_use]
pub const fn index_to_offset(index: u32) -> u64 {
    (index as u64) << VFIO_PCI_OFFSET_SHIFT
}

/// The region index encoded in a device-fd mmap's `vm_pgoff`, as
/// `vfio_pci_core_mmap()` takes it from the bits above
/// `VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT`; `u64` for the same reason as
/// [`offset_to_index`].
#[must_use]
pub(crate) const fn pgoff_to_index(vm_pgoff: PgOff) -> u64 {
    vm_pgoff.0 >> PGOFF_INDEX_SHIFT
}

/// The page offset inside its region of a device-fd mmap's `vm_pgoff`.
#[must_use]
pub(crate) const fn pgoff_in_region(vm_pgoff: PgOff) -> u64 {
    vm_pgoff.0 & PGOFF_BAR_MASK
}

/// Physical base of BAR `index` in our memfd model of physical memory.
///
/// Analogous to Linux's `pci_resource_start()`. It equals the region offset,
/// which is what makes `/proc/self/maps` show the kernel's offset column.
#[must_use]
pub const fn bar_start(index: u32) -> PhysAddr {
    PhysAddr(index_to_offset(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn region_offsets_round_trip_through_the_index() {
        assert_eq!(index_to_offset(1), 0x100_0000_0000);
        assert_eq!(offset_to_index(0x100_0000_4000), 1);
        assert_eq!(offset_to_index(index_to_offset(5) | VFIO_PCI_OFFSET_MASK), 5);
        assert_eq!(bar_start(2), PhysAddr(2 << 40));
        assert!(bar_start(1).is_aligned(GIB));
    }

    #[test]
    fn a_device_pgoff_splits_into_region_and_page() {
        let vm_pgoff = PgOff::from_bytes(index_to_offset(3) + 0x5000);
        assert_eq!(pgoff_to_index(vm_pgoff), 3);
        assert_eq!(pgoff_in_region(vm_pgoff), 5);
        assert_eq!(pgoff_to_index(PgOff(u64::MAX)), u64::MAX >> PGOFF_INDEX_SHIFT);
    }
}
