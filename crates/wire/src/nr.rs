//! Request numbers of the VFIO and iommufd ioctls (`_IO(';', nr)`), named
//! once for both sides: the shapes in [`crate::shape`], the library's
//! interposer and the server's dispatch and log all use these. Numbers
//! overlap between fd kinds (0x3b70 is `VFIO_IOMMU_GET_INFO` on a
//! container and `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` on a device).

/// `_IO(';', nr)`: every VFIO and iommufd request number.
pub const fn vfio_io(nr: u64) -> u64 {
    0x3b00 | nr
}

/// `VFIO_GET_API_VERSION`.
pub const VFIO_GET_API_VERSION: u64 = vfio_io(100);
/// `VFIO_CHECK_EXTENSION`.
pub const VFIO_CHECK_EXTENSION: u64 = vfio_io(101);
/// `VFIO_SET_IOMMU`.
pub const VFIO_SET_IOMMU: u64 = vfio_io(102);
/// `VFIO_GROUP_GET_STATUS`.
pub const VFIO_GROUP_GET_STATUS: u64 = vfio_io(103);
/// `VFIO_GROUP_SET_CONTAINER`.
pub const VFIO_GROUP_SET_CONTAINER: u64 = vfio_io(104);
/// `VFIO_GROUP_UNSET_CONTAINER`.
pub const VFIO_GROUP_UNSET_CONTAINER: u64 = vfio_io(105);
/// `VFIO_GROUP_GET_DEVICE_FD`.
pub const VFIO_GROUP_GET_DEVICE_FD: u64 = vfio_io(106);
/// `VFIO_DEVICE_GET_INFO`.
pub const VFIO_DEVICE_GET_INFO: u64 = vfio_io(107);
/// `VFIO_DEVICE_GET_REGION_INFO`.
pub const VFIO_DEVICE_GET_REGION_INFO: u64 = vfio_io(108);
/// `VFIO_DEVICE_GET_IRQ_INFO`.
pub const VFIO_DEVICE_GET_IRQ_INFO: u64 = vfio_io(109);
/// `VFIO_DEVICE_SET_IRQS`.
pub const VFIO_DEVICE_SET_IRQS: u64 = vfio_io(110);
/// `VFIO_DEVICE_RESET`.
pub const VFIO_DEVICE_RESET: u64 = vfio_io(111);
/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` (on a device fd).
pub const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: u64 = vfio_io(112);
/// `VFIO_IOMMU_GET_INFO` (on a container fd).
pub const VFIO_IOMMU_GET_INFO: u64 = vfio_io(112);
/// `VFIO_DEVICE_PCI_HOT_RESET` (on a device fd).
pub const VFIO_DEVICE_PCI_HOT_RESET: u64 = vfio_io(113);
/// `VFIO_IOMMU_MAP_DMA` (on a container fd).
pub const VFIO_IOMMU_MAP_DMA: u64 = vfio_io(113);
/// `VFIO_DEVICE_QUERY_GFX_PLANE` (on a device fd).
pub const VFIO_DEVICE_QUERY_GFX_PLANE: u64 = vfio_io(114);
/// `VFIO_IOMMU_UNMAP_DMA` (on a container fd).
pub const VFIO_IOMMU_UNMAP_DMA: u64 = vfio_io(114);
/// `VFIO_DEVICE_GET_GFX_DMABUF` (on a device fd).
pub const VFIO_DEVICE_GET_GFX_DMABUF: u64 = vfio_io(115);
/// `VFIO_IOMMU_ENABLE` (sPAPR, on a container fd).
pub const VFIO_IOMMU_ENABLE: u64 = vfio_io(115);
/// `VFIO_DEVICE_IOEVENTFD` (on a device fd).
pub const VFIO_DEVICE_IOEVENTFD: u64 = vfio_io(116);
/// `VFIO_IOMMU_DISABLE` (sPAPR, on a container fd).
pub const VFIO_IOMMU_DISABLE: u64 = vfio_io(116);
/// `VFIO_DEVICE_FEATURE` (on a device fd).
pub const VFIO_DEVICE_FEATURE: u64 = vfio_io(117);
/// `VFIO_IOMMU_DIRTY_PAGES` (on a container fd).
pub const VFIO_IOMMU_DIRTY_PAGES: u64 = vfio_io(117);
/// `VFIO_DEVICE_BIND_IOMMUFD`.
pub const VFIO_DEVICE_BIND_IOMMUFD: u64 = vfio_io(118);
/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` (on a device fd).
pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: u64 = vfio_io(119);
/// `VFIO_IOMMU_SPAPR_REGISTER_MEMORY` (on a container fd).
pub const VFIO_IOMMU_SPAPR_REGISTER_MEMORY: u64 = vfio_io(119);
/// `VFIO_DEVICE_DETACH_IOMMUFD_PT` (on a device fd).
pub const VFIO_DEVICE_DETACH_IOMMUFD_PT: u64 = vfio_io(120);
/// `VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY` (on a container fd).
pub const VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY: u64 = vfio_io(120);

/// `IOMMU_DESTROY`, the first iommufd request.
pub const IOMMU_DESTROY: u64 = vfio_io(0x80);
/// `IOMMU_IOAS_ALLOC`.
pub const IOMMU_IOAS_ALLOC: u64 = vfio_io(0x81);
/// `IOMMU_IOAS_ALLOW_IOVAS`.
pub const IOMMU_IOAS_ALLOW_IOVAS: u64 = vfio_io(0x82);
/// `IOMMU_IOAS_COPY`.
pub const IOMMU_IOAS_COPY: u64 = vfio_io(0x83);
/// `IOMMU_IOAS_IOVA_RANGES`.
pub const IOMMU_IOAS_IOVA_RANGES: u64 = vfio_io(0x84);
/// `IOMMU_IOAS_MAP`.
pub const IOMMU_IOAS_MAP: u64 = vfio_io(0x85);
/// `IOMMU_IOAS_UNMAP`.
pub const IOMMU_IOAS_UNMAP: u64 = vfio_io(0x86);
/// `IOMMU_OPTION`.
pub const IOMMU_OPTION: u64 = vfio_io(0x87);
/// `IOMMU_VFIO_IOAS`.
pub const IOMMU_VFIO_IOAS: u64 = vfio_io(0x88);
/// `IOMMU_HWPT_ALLOC`.
pub const IOMMU_HWPT_ALLOC: u64 = vfio_io(0x89);
/// `IOMMU_GET_HW_INFO`.
pub const IOMMU_GET_HW_INFO: u64 = vfio_io(0x8a);
/// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
pub const IOMMU_HWPT_SET_DIRTY_TRACKING: u64 = vfio_io(0x8b);
/// `IOMMU_HWPT_GET_DIRTY_BITMAP`.
pub const IOMMU_HWPT_GET_DIRTY_BITMAP: u64 = vfio_io(0x8c);
/// `IOMMU_HWPT_INVALIDATE`.
pub const IOMMU_HWPT_INVALIDATE: u64 = vfio_io(0x8d);
/// `IOMMU_FAULT_QUEUE_ALLOC`.
pub const IOMMU_FAULT_QUEUE_ALLOC: u64 = vfio_io(0x8e);
/// `IOMMU_IOAS_MAP_FILE`.
pub const IOMMU_IOAS_MAP_FILE: u64 = vfio_io(0x8f);
/// `IOMMU_VIOMMU_ALLOC`.
pub const IOMMU_VIOMMU_ALLOC: u64 = vfio_io(0x90);
/// `IOMMU_VDEVICE_ALLOC`.
pub const IOMMU_VDEVICE_ALLOC: u64 = vfio_io(0x91);
/// `IOMMU_IOAS_CHANGE_PROCESS`.
pub const IOMMU_IOAS_CHANGE_PROCESS: u64 = vfio_io(0x92);
/// `IOMMU_VEVENTQ_ALLOC`.
pub const IOMMU_VEVENTQ_ALLOC: u64 = vfio_io(0x93);
/// `IOMMU_HW_QUEUE_ALLOC`.
pub const IOMMU_HW_QUEUE_ALLOC: u64 = vfio_io(0x94);
/// The last number the iommufd range reserves (every call there passes a
/// sized struct).
pub const IOMMUFD_LAST: u64 = vfio_io(0x9f);

/// `DMA_BUF_IOCTL_SYNC`: `_IOW('b', 0, struct dma_buf_sync)`.
pub const DMA_BUF_IOCTL_SYNC: u64 = 0x4008_6200;
/// `DMA_BUF_SET_NAME_A`: `_IOW('b', 1, __u32)` (the pointer is the name).
pub const DMA_BUF_SET_NAME_A: u64 = 0x4004_6201;
/// `DMA_BUF_SET_NAME_B`: `_IOW('b', 1, __u64)`.
pub const DMA_BUF_SET_NAME_B: u64 = 0x4008_6201;
/// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`.
pub const DMA_BUF_IOCTL_EXPORT_SYNC_FILE: u64 = 0x4010_6202;
/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`.
pub const DMA_BUF_IOCTL_IMPORT_SYNC_FILE: u64 = 0x4008_6203;
