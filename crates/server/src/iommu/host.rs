//! The IOMMU of the host we answer as: an x86-64 machine with Intel VT-d
//! (4-level, 48-bit address width, 2 MiB and 1 GiB superpages, snoop
//! control). Every emulated device sits behind it with the same reserved
//! regions: the interrupt (MSI) window only, no RMRR.

/// `PAGE_SIZE`.
pub(crate) const PAGE_SIZE: u64 = 4096;

/// `domain->pgsize_bitmap`: 4 KiB, 2 MiB and 1 GiB IOPTEs.
pub(crate) const DOMAIN_PGSIZES: u64 = (1 << 12) | (1 << 21) | (1 << 30);

/// Last IOVA of the domain aperture (`geometry.aperture_end`, 48 bits).
pub(crate) const APERTURE_LAST: u64 = (1 << 48) - 1;

/// The interrupt window every device reserves (`IOMMU_RESV_MSI`,
/// `IOAPIC_RANGE_START`..`IOAPIC_RANGE_END` on VT-d), inclusive.
pub(crate) const MSI_WINDOW: (u64, u64) = (0xfee0_0000, 0xfeef_ffff);

/// `dma_entry_limit`: the Type1 module parameter's default (`U16_MAX`).
pub(crate) const DMA_ENTRY_LIMIT: u32 = u16::MAX as u32;

/// A domain of this IOMMU enforces cache coherency (`IOMMU_CACHE` on
/// every domain, so `VFIO_DMA_CC_IOMMU` answers 1).
pub(crate) const CACHE_COHERENT: bool = true;

/// The kernel is built with `CONFIG_VFIO_NOIOMMU` (as distribution
/// kernels are) but runs with no-IOMMU mode off.
pub(crate) const NOIOMMU_BUILT: bool = true;

/// The IOVA ranges a Type1 container offers once a group is attached: the
/// aperture minus the reserved regions (`vfio_iommu_aper_resize`,
/// `vfio_iommu_resv_exclude`).
pub(crate) const TYPE1_IOVA_RANGES: [(u64, u64); 2] = [(0, MSI_WINDOW.0 - 1), (MSI_WINDOW.1 + 1, APERTURE_LAST)];
