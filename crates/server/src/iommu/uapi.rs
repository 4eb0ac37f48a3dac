//! Request numbers, struct layouts and flags of the VFIO container calls
//! (`include/uapi/linux/vfio.h`, through `vfio-bindings`) and of iommufd
//! (`include/uapi/linux/iommufd.h`, which `vfio-bindings` lacks: offsets
//! below are those of x86-64).

use std::mem::{offset_of, size_of};

pub(crate) use vfio_bindings::bindings::vfio::{
    vfio_info_cap_header, vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info,
    vfio_iommu_type1_info_cap_iova_range, vfio_iommu_type1_info_dma_avail, vfio_iova_range, VFIO_TYPE1v2_IOMMU,
    VFIO_API_VERSION, VFIO_DMA_CC_IOMMU, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_VADDR, VFIO_DMA_MAP_FLAG_WRITE,
    VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, VFIO_DMA_UNMAP_FLAG_VADDR, VFIO_IOMMU_INFO_CAPS,
    VFIO_IOMMU_INFO_PGSIZES, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, VFIO_NOIOMMU_IOMMU,
    VFIO_TYPE1_IOMMU, VFIO_UNMAP_ALL, VFIO_UPDATE_VADDR,
};
pub(crate) use wire::nr::{
    IOMMU_DESTROY, IOMMU_IOAS_ALLOC, IOMMU_IOAS_ALLOW_IOVAS, IOMMU_IOAS_COPY, IOMMU_IOAS_IOVA_RANGES, IOMMU_IOAS_MAP,
    IOMMU_IOAS_UNMAP, IOMMU_OPTION, IOMMU_VFIO_IOAS, VFIO_CHECK_EXTENSION, VFIO_GET_API_VERSION, VFIO_IOMMU_GET_INFO,
    VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA, VFIO_SET_IOMMU,
};

/// `offsetofend(struct vfio_iommu_type1_info, iova_pgsizes)`: its `minsz`.
pub(crate) const INFO_MINSZ: usize = offset_of!(vfio_iommu_type1_info, iova_pgsizes) + 8;
/// `sizeof(struct vfio_iommu_type1_info)`, up to `cap_offset` and its pad.
pub(crate) const INFO_SIZE: usize = size_of::<vfio_iommu_type1_info>();
/// Offset of `flags` (every VFIO struct has it right after `argsz`).
pub(crate) const FLAGS: usize = offset_of!(vfio_iommu_type1_info, flags);
/// Offset of `iova_pgsizes`.
pub(crate) const INFO_PGSIZES: usize = offset_of!(vfio_iommu_type1_info, iova_pgsizes);
/// Offset of `cap_offset`.
pub(crate) const INFO_CAP_OFFSET: usize = offset_of!(vfio_iommu_type1_info, cap_offset);
/// Offset of a capability header's `next`.
pub(crate) const CAP_NEXT: usize = offset_of!(vfio_info_cap_header, next);
/// `sizeof(struct vfio_iommu_type1_info_dma_avail)`: 12, not a multiple of 8.
pub(crate) const DMA_AVAIL_SIZE: usize = size_of::<vfio_iommu_type1_info_dma_avail>();
/// Offset of `avail`.
pub(crate) const DMA_AVAIL_AVAIL: usize = offset_of!(vfio_iommu_type1_info_dma_avail, avail);
/// `sizeof(struct vfio_iommu_type1_info_cap_iova_range)` without ranges.
pub(crate) const IOVA_CAP_SIZE: usize = size_of::<vfio_iommu_type1_info_cap_iova_range>();
/// Offset of `nr_iovas`.
pub(crate) const IOVA_CAP_NR: usize = offset_of!(vfio_iommu_type1_info_cap_iova_range, nr_iovas);
/// `sizeof(struct vfio_iova_range)`.
pub(crate) const IOVA_RANGE_SIZE: usize = size_of::<vfio_iova_range>();

/// `offsetofend(struct vfio_iommu_type1_dma_map, size)`.
pub(crate) const MAP_MINSZ: usize = offset_of!(vfio_iommu_type1_dma_map, size) + 8;
/// Offset of `vaddr`.
pub(crate) const MAP_VADDR: usize = offset_of!(vfio_iommu_type1_dma_map, vaddr);
/// Offset of `iova`.
pub(crate) const MAP_IOVA: usize = offset_of!(vfio_iommu_type1_dma_map, iova);
/// Offset of `size`.
pub(crate) const MAP_SIZE: usize = offset_of!(vfio_iommu_type1_dma_map, size);
/// `offsetofend(struct vfio_iommu_type1_dma_unmap, size)`.
pub(crate) const UNMAP_MINSZ: usize = offset_of!(vfio_iommu_type1_dma_unmap, size) + 8;
/// Offset of `iova`.
pub(crate) const UNMAP_IOVA: usize = offset_of!(vfio_iommu_type1_dma_unmap, iova);
/// Offset of `size`.
pub(crate) const UNMAP_SIZE: usize = offset_of!(vfio_iommu_type1_dma_unmap, size);

/// `IOMMU_IOAS_MAP_FIXED_IOVA`.
pub(crate) const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1 << 0;
/// `IOMMU_IOAS_MAP_WRITEABLE`.
pub(crate) const IOMMU_IOAS_MAP_WRITEABLE: u32 = 1 << 1;
/// `IOMMU_IOAS_MAP_READABLE`.
pub(crate) const IOMMU_IOAS_MAP_READABLE: u32 = 1 << 2;
/// Every map flag this kernel knows.
pub(crate) const IOMMU_IOAS_MAP_FLAGS: u32 =
    IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;

/// `IOMMU_OPTION_RLIMIT_MODE`.
pub(crate) const IOMMU_OPTION_RLIMIT_MODE: u32 = 0;
/// `IOMMU_OPTION_HUGE_PAGES`.
pub(crate) const IOMMU_OPTION_HUGE_PAGES: u32 = 1;
/// `IOMMU_OPTION_OP_SET`.
pub(crate) const IOMMU_OPTION_OP_SET: u16 = 0;
/// `IOMMU_OPTION_OP_GET`.
pub(crate) const IOMMU_OPTION_OP_GET: u16 = 1;

/// `IOMMU_VFIO_IOAS_GET`.
pub(crate) const IOMMU_VFIO_IOAS_GET: u16 = 0;
/// `IOMMU_VFIO_IOAS_SET`.
pub(crate) const IOMMU_VFIO_IOAS_SET: u16 = 1;
/// `IOMMU_VFIO_IOAS_CLEAR`.
pub(crate) const IOMMU_VFIO_IOAS_CLEAR: u16 = 2;

/// Layout of one iommufd struct: its size (`sizeof`, what the kernel
/// copies) and minimum (`offsetofend` of its last original field; all of
/// those used here have never grown, so the two agree).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cmd {
    /// `sizeof`.
    pub size: usize,
    /// The smallest `size` the kernel accepts.
    pub min: usize,
}

/// `struct iommu_destroy { size, id }`.
pub(crate) const DESTROY: Cmd = Cmd { size: 8, min: 8 };
/// `struct iommu_ioas_alloc { size, flags, out_ioas_id@8 }`.
pub(crate) const IOAS_ALLOC: Cmd = Cmd { size: 12, min: 12 };
/// `struct iommu_ioas_allow_iovas { size, ioas_id, num_iovas, __reserved, allowed_iovas@16 }`.
pub(crate) const ALLOW_IOVAS: Cmd = Cmd { size: 24, min: 24 };
/// `struct iommu_ioas_copy { size, flags, dst_ioas_id, src_ioas_id, length@16, dst_iova@24, src_iova@32 }`.
pub(crate) const IOAS_COPY: Cmd = Cmd { size: 40, min: 40 };
/// `struct iommu_ioas_iova_ranges { size, ioas_id, num_iovas, __reserved, allowed_iovas@16, out_iova_alignment@24 }`.
pub(crate) const IOVA_RANGES: Cmd = Cmd { size: 32, min: 32 };
/// `struct iommu_ioas_map { size, flags, ioas_id, __reserved, user_va@16, length@24, iova@32 }`.
pub(crate) const IOAS_MAP: Cmd = Cmd { size: 40, min: 40 };
/// `struct iommu_ioas_unmap { size, ioas_id, iova@8, length@16 }`.
pub(crate) const IOAS_UNMAP: Cmd = Cmd { size: 24, min: 24 };
/// `struct iommu_option { size, option_id, op u16@8, __reserved u16@10, object_id@12, val64@16 }`.
pub(crate) const OPTION: Cmd = Cmd { size: 24, min: 24 };
/// `struct iommu_vfio_ioas { size, ioas_id, op u16@8, __reserved u16@10 }`.
pub(crate) const VFIO_IOAS: Cmd = Cmd { size: 12, min: 12 };
/// `sizeof(struct iommu_iova_range)`: `start`, `last`.
pub(crate) const IOMMU_IOVA_RANGE_SIZE: u64 = 16;
