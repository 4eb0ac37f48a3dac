//! Ioctl names for the log, by the kind of fd they arrive on (the numbers
//! overlap between kinds), and the once-per-call log of unknown ones.

use wire::shape::{vfio_io, DMA_BUF_IOCTL_SYNC, DMA_BUF_SET_NAME_A, DMA_BUF_SET_NAME_B};
use wire::ObjectKind;

use crate::server::Shared;

const CONTAINER: &[(u64, &str)] = &[
    (vfio_io(100), "VFIO_GET_API_VERSION"),
    (vfio_io(101), "VFIO_CHECK_EXTENSION"),
    (vfio_io(102), "VFIO_SET_IOMMU"),
    (vfio_io(112), "VFIO_IOMMU_GET_INFO"),
    (vfio_io(113), "VFIO_IOMMU_MAP_DMA"),
    (vfio_io(114), "VFIO_IOMMU_UNMAP_DMA"),
    (vfio_io(115), "VFIO_IOMMU_ENABLE"),
    (vfio_io(116), "VFIO_IOMMU_DISABLE"),
    (vfio_io(117), "VFIO_IOMMU_DIRTY_PAGES"),
    (vfio_io(119), "VFIO_IOMMU_SPAPR_REGISTER_MEMORY"),
    (vfio_io(120), "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY"),
];

const IOMMUFD: &[(u64, &str)] = &[
    (vfio_io(0x80), "IOMMU_DESTROY"),
    (vfio_io(0x81), "IOMMU_IOAS_ALLOC"),
    (vfio_io(0x82), "IOMMU_IOAS_ALLOW_IOVAS"),
    (vfio_io(0x83), "IOMMU_IOAS_COPY"),
    (vfio_io(0x84), "IOMMU_IOAS_IOVA_RANGES"),
    (vfio_io(0x85), "IOMMU_IOAS_MAP"),
    (vfio_io(0x86), "IOMMU_IOAS_UNMAP"),
    (vfio_io(0x87), "IOMMU_OPTION"),
    (vfio_io(0x88), "IOMMU_VFIO_IOAS"),
    (vfio_io(0x89), "IOMMU_HWPT_ALLOC"),
    (vfio_io(0x8a), "IOMMU_GET_HW_INFO"),
    (vfio_io(0x8b), "IOMMU_HWPT_SET_DIRTY_TRACKING"),
    (vfio_io(0x8c), "IOMMU_HWPT_GET_DIRTY_BITMAP"),
    (vfio_io(0x8d), "IOMMU_HWPT_INVALIDATE"),
    (vfio_io(0x8e), "IOMMU_FAULT_QUEUE_ALLOC"),
    (vfio_io(0x8f), "IOMMU_IOAS_MAP_FILE"),
    (vfio_io(0x90), "IOMMU_VIOMMU_ALLOC"),
    (vfio_io(0x91), "IOMMU_VDEVICE_ALLOC"),
    (vfio_io(0x92), "IOMMU_IOAS_CHANGE_PROCESS"),
    (vfio_io(0x93), "IOMMU_VEVENTQ_ALLOC"),
    (vfio_io(0x94), "IOMMU_HW_QUEUE_ALLOC"),
];

const GROUP: &[(u64, &str)] = &[
    (vfio_io(103), "VFIO_GROUP_GET_STATUS"),
    (vfio_io(104), "VFIO_GROUP_SET_CONTAINER"),
    (vfio_io(105), "VFIO_GROUP_UNSET_CONTAINER"),
    (vfio_io(106), "VFIO_GROUP_GET_DEVICE_FD"),
];

const DEVICE: &[(u64, &str)] = &[
    (vfio_io(107), "VFIO_DEVICE_GET_INFO"),
    (vfio_io(108), "VFIO_DEVICE_GET_REGION_INFO"),
    (vfio_io(109), "VFIO_DEVICE_GET_IRQ_INFO"),
    (vfio_io(110), "VFIO_DEVICE_SET_IRQS"),
    (vfio_io(111), "VFIO_DEVICE_RESET"),
    (vfio_io(112), "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO"),
    (vfio_io(113), "VFIO_DEVICE_PCI_HOT_RESET"),
    (vfio_io(114), "VFIO_DEVICE_QUERY_GFX_PLANE"),
    (vfio_io(115), "VFIO_DEVICE_GET_GFX_DMABUF"),
    (vfio_io(116), "VFIO_DEVICE_IOEVENTFD"),
    (vfio_io(117), "VFIO_DEVICE_FEATURE"),
    (vfio_io(118), "VFIO_DEVICE_BIND_IOMMUFD"),
    (vfio_io(119), "VFIO_DEVICE_ATTACH_IOMMUFD_PT"),
    (vfio_io(120), "VFIO_DEVICE_DETACH_IOMMUFD_PT"),
];

const DMA_BUF: &[(u64, &str)] = &[
    (DMA_BUF_IOCTL_SYNC, "DMA_BUF_IOCTL_SYNC"),
    (DMA_BUF_SET_NAME_A, "DMA_BUF_SET_NAME_A"),
    (DMA_BUF_SET_NAME_B, "DMA_BUF_SET_NAME_B"),
    (0x4010_6202, "DMA_BUF_IOCTL_EXPORT_SYNC_FILE"),
    (0x4008_6203, "DMA_BUF_IOCTL_IMPORT_SYNC_FILE"),
];

/// The name of `request` on an fd of `kind`, if it is one we know of.
pub(crate) fn ioctl_name(kind: ObjectKind, request: u64) -> Option<&'static str> {
    let find = |t: &[(u64, &'static str)]| t.iter().find(|(r, _)| *r == request).map(|(_, n)| *n);
    match kind {
        ObjectKind::Container => find(CONTAINER),
        // /dev/iommu answers the container calls below its own numbers.
        ObjectKind::Iommufd => find(IOMMUFD).or_else(|| find(CONTAINER)),
        ObjectKind::Group => find(GROUP),
        ObjectKind::Device => find(DEVICE),
        ObjectKind::DmaBuf => find(DMA_BUF),
    }
}

/// Logs, once per server and (kind, request), an ioctl answered `ENOTTY`
/// because it is not implemented.
pub(crate) fn log_unknown(shared: &Shared, kind: ObjectKind, request: u64) {
    let first = shared.unknown_logged.lock().unwrap_or_else(|e| e.into_inner()).insert((kind, request));
    if first {
        match ioctl_name(kind, request) {
            Some(name) => {
                tracing::warn!(?kind, request = format_args!("{request:#x}"), name, "ioctl not implemented: ENOTTY")
            }
            None => tracing::warn!(?kind, request = format_args!("{request:#x}"), "unknown ioctl: ENOTTY"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_number_has_a_name_per_kind() {
        assert_eq!(ioctl_name(ObjectKind::Container, 0x3b70), Some("VFIO_IOMMU_GET_INFO"));
        assert_eq!(ioctl_name(ObjectKind::Device, 0x3b70), Some("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO"));
        assert_eq!(ioctl_name(ObjectKind::Iommufd, 0x3b66), Some("VFIO_SET_IOMMU"));
        assert_eq!(ioctl_name(ObjectKind::Group, 0x3b6b), None);
    }
}
