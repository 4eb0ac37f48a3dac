//! Ioctl names for the log, by the kind of fd they arrive on (the numbers
//! overlap between kinds), and the once-per-call log of unknown ones.

use wire::nr;
use wire::ObjectKind;

use crate::server::Shared;

/// `(number, name)` pairs of the requests named, from [`wire::nr`].
macro_rules! named {
    ($($name:ident,)*) => {
        &[$((nr::$name, stringify!($name)),)*]
    };
}

const CONTAINER: &[(u64, &str)] = named![
    VFIO_GET_API_VERSION,
    VFIO_CHECK_EXTENSION,
    VFIO_SET_IOMMU,
    VFIO_IOMMU_GET_INFO,
    VFIO_IOMMU_MAP_DMA,
    VFIO_IOMMU_UNMAP_DMA,
    VFIO_IOMMU_ENABLE,
    VFIO_IOMMU_DISABLE,
    VFIO_IOMMU_DIRTY_PAGES,
    VFIO_IOMMU_SPAPR_REGISTER_MEMORY,
    VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY,
];

const IOMMUFD: &[(u64, &str)] = named![
    IOMMU_DESTROY,
    IOMMU_IOAS_ALLOC,
    IOMMU_IOAS_ALLOW_IOVAS,
    IOMMU_IOAS_COPY,
    IOMMU_IOAS_IOVA_RANGES,
    IOMMU_IOAS_MAP,
    IOMMU_IOAS_UNMAP,
    IOMMU_OPTION,
    IOMMU_VFIO_IOAS,
    IOMMU_HWPT_ALLOC,
    IOMMU_GET_HW_INFO,
    IOMMU_HWPT_SET_DIRTY_TRACKING,
    IOMMU_HWPT_GET_DIRTY_BITMAP,
    IOMMU_HWPT_INVALIDATE,
    IOMMU_FAULT_QUEUE_ALLOC,
    IOMMU_IOAS_MAP_FILE,
    IOMMU_VIOMMU_ALLOC,
    IOMMU_VDEVICE_ALLOC,
    IOMMU_IOAS_CHANGE_PROCESS,
    IOMMU_VEVENTQ_ALLOC,
    IOMMU_HW_QUEUE_ALLOC,
];

const GROUP: &[(u64, &str)] =
    named![VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_GROUP_GET_DEVICE_FD,];

const DEVICE: &[(u64, &str)] = named![
    VFIO_DEVICE_GET_INFO,
    VFIO_DEVICE_GET_REGION_INFO,
    VFIO_DEVICE_GET_IRQ_INFO,
    VFIO_DEVICE_SET_IRQS,
    VFIO_DEVICE_RESET,
    VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
    VFIO_DEVICE_PCI_HOT_RESET,
    VFIO_DEVICE_QUERY_GFX_PLANE,
    VFIO_DEVICE_GET_GFX_DMABUF,
    VFIO_DEVICE_IOEVENTFD,
    VFIO_DEVICE_FEATURE,
    VFIO_DEVICE_BIND_IOMMUFD,
    VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    VFIO_DEVICE_DETACH_IOMMUFD_PT,
];

const DMA_BUF: &[(u64, &str)] = named![
    DMA_BUF_IOCTL_SYNC,
    DMA_BUF_SET_NAME_A,
    DMA_BUF_SET_NAME_B,
    DMA_BUF_IOCTL_EXPORT_SYNC_FILE,
    DMA_BUF_IOCTL_IMPORT_SYNC_FILE,
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
