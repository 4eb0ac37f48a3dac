//! UAPI of the series that is not upstream yet, beside what `vfio-bindings`
//! provides (spec §4.9, §4.10). Field names and numbers as posted in v4.

pub use vfio_bindings::bindings::vfio::{
    vfio_device_feature_dma_buf, vfio_irq_info, vfio_region_dma_range, vfio_region_info, VFIO_DEVICE_FEATURE_DMA_BUF,
    VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP,
    VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, VFIO_DEVICE_FEATURE_MASK, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET,
    VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_NUM_REGIONS, VFIO_PCI_ROM_REGION_INDEX,
    VFIO_PCI_VGA_REGION_INDEX, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};
pub use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE, VFIO_IRQ_INFO_NORESIZE,
    VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_TYPE_MASK, VFIO_IRQ_SET_ACTION_UNMASK,
    VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_TYPE_MASK,
    VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX,
    VFIO_PCI_NUM_IRQS, VFIO_PCI_REQ_IRQ_INDEX,
};

/// `VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE` (SET): permanently revoke a buffer.
pub const VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE: u32 = 13;
/// `VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR` (SET): memory attribute of future mmaps.
pub const VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR: u32 = 14;
/// Non-cached (the default; `pgprot_noncached`).
pub const VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC: u32 = 0;
/// Write-combining (`pgprot_writecombine`).
pub const VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC: u32 = 1;

/// Payload of `VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_device_feature_dma_buf_revoke {
    /// The buffer's fd.
    pub dmabuf_fd: i32,
}

/// Payload of `VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_device_feature_dma_buf_memattr {
    /// The buffer's fd.
    pub dmabuf_fd: i32,
    /// `..._MEMATTR_NC` or `..._MEMATTR_WC`.
    pub memattr: u32,
}

/// Size of the fixed part of `struct vfio_device_feature_dma_buf`.
pub const DMA_BUF_FEATURE_MINSZ: usize = 16;
/// Size of one `struct vfio_region_dma_range`.
pub const DMA_RANGE_SIZE: usize = 16;

/// Encodes a `DMA_BUF` feature payload (fixed part and ranges), as userspace
/// lays it out after the 8-byte feature header.
pub fn encode_dma_buf_payload(region_index: u32, open_flags: u32, flags: u32, ranges: &[(u64, u64)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(DMA_BUF_FEATURE_MINSZ + ranges.len() * DMA_RANGE_SIZE);
    v.extend_from_slice(&region_index.to_ne_bytes());
    v.extend_from_slice(&open_flags.to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&(ranges.len() as u32).to_ne_bytes());
    for (offset, length) in ranges {
        v.extend_from_slice(&offset.to_ne_bytes());
        v.extend_from_slice(&length.to_ne_bytes());
    }
    v
}

pub(crate) fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(data[at..at + 8].try_into().expect("8 bytes"))
}
