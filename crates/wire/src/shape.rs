//! How each ioctl's argument travels, by object kind and request number.
//!
//! The process reads the argument out of its own memory as the shape says
//! (a value, a string, a struct whose first `u32` is its size) and attaches
//! the fds the argument carries; the server decodes the same shape to put
//! them back. Both sides use [`shape`] and [`fds_in`], so they agree on
//! every offset. Kinds matter: the same number means different calls on
//! a container and a device (0x3b70 is `VFIO_IOMMU_GET_INFO` on one and
//! `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` on the other).

use crate::msg::ObjectKind;
use crate::nr::{
    DMA_BUF_IOCTL_SYNC, DMA_BUF_SET_NAME_A, DMA_BUF_SET_NAME_B, IOMMUFD_LAST, IOMMU_DESTROY, VFIO_CHECK_EXTENSION,
    VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT, VFIO_DEVICE_FEATURE,
    VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, VFIO_DEVICE_PCI_HOT_RESET,
    VFIO_DEVICE_RESET, VFIO_DEVICE_SET_IRQS, VFIO_GET_API_VERSION, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_GET_STATUS,
    VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_IOMMU_DISABLE, VFIO_IOMMU_ENABLE, VFIO_IOMMU_GET_INFO,
    VFIO_IOMMU_UNMAP_DMA, VFIO_SET_IOMMU,
};

/// How to carry an ioctl's argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgShape {
    /// The argument value itself (an integer, or unused).
    Value,
    /// A pointer to a NUL-terminated string.
    Str,
    /// A pointer to `n` bytes.
    Fixed(usize),
    /// A pointer to a struct whose first `u32` is its size in bytes
    /// (`argsz` of VFIO, `size` of iommufd): that many bytes travel, at
    /// most [`crate::MAX_DATA`]; fewer if the memory ends sooner.
    Sized,
}

/// Where an argument carries fds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdsIn {
    /// Nowhere.
    None,
    /// An `s32` at this byte offset of the argument.
    At(usize),
    /// `struct vfio_irq_set`: with `VFIO_IRQ_SET_DATA_EVENTFD`, `count`
    /// `s32` eventfds from byte 20 (-1 means none).
    IrqSet,
    /// `struct vfio_pci_hot_reset`: `count` group fds from byte 12.
    HotReset,
    /// `struct vfio_device_feature`: for a SET (not a probe) of
    /// `DMA_BUF_REVOKE` or `DMA_BUF_MEMATTR`, the buffer fd at byte 8; of
    /// `LOW_POWER_ENTRY_WITH_WAKEUP`, the wake-up eventfd at byte 8.
    Feature,
}

/// The shape of one ioctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// How the argument travels.
    pub arg: ArgShape,
    /// Where it carries fds.
    pub fds: FdsIn,
}

const fn sh(arg: ArgShape, fds: FdsIn) -> Option<Shape> {
    Some(Shape { arg, fds })
}

const V: ArgShape = ArgShape::Value;
const S: ArgShape = ArgShape::Sized;
const N: FdsIn = FdsIn::None;

/// `VFIO_IRQ_SET_DATA_EVENTFD`.
pub const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
/// `VFIO_DEVICE_FEATURE_PROBE`.
pub const VFIO_DEVICE_FEATURE_PROBE: u32 = 1 << 18;
/// `VFIO_DEVICE_FEATURE_SET`.
pub const VFIO_DEVICE_FEATURE_SET: u32 = 1 << 17;

/// The legacy container calls, which `/dev/iommu` also answers.
const fn container_shape(request: u64) -> Option<Shape> {
    match request {
        VFIO_GET_API_VERSION | VFIO_CHECK_EXTENSION | VFIO_SET_IOMMU => sh(V, N),
        VFIO_IOMMU_GET_INFO..=VFIO_IOMMU_UNMAP_DMA => sh(S, N),
        VFIO_IOMMU_ENABLE | VFIO_IOMMU_DISABLE => sh(V, N),
        _ => None,
    }
}

/// The shape of `request` on an fd of `kind`, or `None` for a call we do
/// not know (it travels as [`ArgShape::Value`] and the server answers it,
/// `ENOTTY` in general).
pub const fn shape(kind: ObjectKind, request: u64) -> Option<Shape> {
    match kind {
        ObjectKind::Container => container_shape(request),
        ObjectKind::Iommufd => match request {
            IOMMU_DESTROY..=IOMMUFD_LAST => sh(S, N),
            _ => container_shape(request),
        },
        ObjectKind::Group => match request {
            VFIO_GROUP_GET_STATUS => sh(S, N),
            VFIO_GROUP_SET_CONTAINER => sh(ArgShape::Fixed(4), FdsIn::At(0)),
            VFIO_GROUP_UNSET_CONTAINER => sh(V, N),
            VFIO_GROUP_GET_DEVICE_FD => sh(ArgShape::Str, N),
            _ => None,
        },
        ObjectKind::Device => match request {
            VFIO_DEVICE_GET_INFO..=VFIO_DEVICE_GET_IRQ_INFO => sh(S, N),
            VFIO_DEVICE_SET_IRQS => sh(S, FdsIn::IrqSet),
            VFIO_DEVICE_RESET => sh(V, N),
            VFIO_DEVICE_GET_PCI_HOT_RESET_INFO => sh(S, N),
            VFIO_DEVICE_PCI_HOT_RESET => sh(S, FdsIn::HotReset),
            VFIO_DEVICE_FEATURE => sh(S, FdsIn::Feature),
            VFIO_DEVICE_BIND_IOMMUFD => sh(S, FdsIn::At(8)),
            VFIO_DEVICE_ATTACH_IOMMUFD_PT | VFIO_DEVICE_DETACH_IOMMUFD_PT => sh(S, N),
            _ => None,
        },
        ObjectKind::DmaBuf => match request {
            DMA_BUF_IOCTL_SYNC => sh(ArgShape::Fixed(8), N),
            DMA_BUF_SET_NAME_A | DMA_BUF_SET_NAME_B => sh(ArgShape::Str, N),
            _ => None,
        },
    }
}

fn u32_at(bytes: &[u8], off: usize) -> Option<u32> {
    let b = bytes.get(off..off + 4)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn i32_at(bytes: &[u8], off: usize) -> Option<i32> {
    u32_at(bytes, off).map(|v| v as i32)
}

/// The fds an argument carries: `(byte offset, fd number)` in attach
/// order, non-negative numbers only (a -1 eventfd means "none" and travels
/// as itself). Slots the bytes do not reach are left out; the server then
/// fails the call on its own checks, as the kernel would on its short copy.
pub fn fds_in(fds: FdsIn, bytes: &[u8]) -> Vec<(usize, i32)> {
    let mut out = Vec::new();
    let mut push = |off: usize| {
        if let Some(fd) = i32_at(bytes, off) {
            if fd >= 0 {
                out.push((off, fd));
            }
        }
    };
    match fds {
        FdsIn::None => {}
        FdsIn::At(off) => push(off),
        FdsIn::IrqSet => {
            let flags = u32_at(bytes, 4).unwrap_or(0);
            if flags & VFIO_IRQ_SET_DATA_EVENTFD != 0 {
                let count = u32_at(bytes, 16).unwrap_or(0) as usize;
                for i in 0..count.min(crate::MAX_FDS) {
                    push(20 + 4 * i);
                }
            }
        }
        FdsIn::HotReset => {
            let count = u32_at(bytes, 8).unwrap_or(0) as usize;
            for i in 0..count.min(crate::MAX_FDS) {
                push(12 + 4 * i);
            }
        }
        FdsIn::Feature => {
            let flags = u32_at(bytes, 4).unwrap_or(0);
            let feature = flags & 0xffff;
            let set = flags & VFIO_DEVICE_FEATURE_SET != 0 && flags & VFIO_DEVICE_FEATURE_PROBE == 0;
            if set && (feature == 4 || feature == 13 || feature == 14) {
                push(8);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn overlapping_numbers_are_told_apart_by_kind() {
        assert_eq!(shape(ObjectKind::Container, 0x3b70), sh(S, N));
        assert_eq!(shape(ObjectKind::Device, 0x3b71), sh(S, FdsIn::HotReset));
        assert_eq!(shape(ObjectKind::Iommufd, 0x3b64), sh(V, N), "iommufd answers the container calls");
        assert_eq!(shape(ObjectKind::Group, 0x3b6b), None);
    }

    #[test]
    fn irq_set_eventfds_are_found_only_with_the_eventfd_flag() {
        let with = words(&[28, 0x24, 0, 0, 2, 7, u32::MAX]);
        assert_eq!(fds_in(FdsIn::IrqSet, &with), vec![(20, 7)]);
        let without = words(&[28, 0x21, 0, 0, 2, 7, 8]);
        assert!(fds_in(FdsIn::IrqSet, &without).is_empty());
    }

    #[test]
    fn a_revoke_carries_its_buffer_fd_but_a_probe_does_not() {
        let revoke = words(&[12, VFIO_DEVICE_FEATURE_SET | 13, 9]);
        assert_eq!(fds_in(FdsIn::Feature, &revoke), vec![(8, 9)]);
        let probe = words(&[12, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE | 13, 9]);
        assert!(fds_in(FdsIn::Feature, &probe).is_empty());
    }

    #[test]
    fn the_feature_flags_are_the_uapi_values() {
        // VFIO_DEVICE_FEATURE_GET is 1 << 16; SET and PROBE follow it.
        assert_eq!(VFIO_DEVICE_FEATURE_SET, 0x2_0000);
        assert_eq!(VFIO_DEVICE_FEATURE_PROBE, 0x4_0000);
    }

    #[test]
    fn a_low_power_entry_with_wakeup_carries_its_eventfd() {
        let entry = words(&[12, VFIO_DEVICE_FEATURE_SET | 4, 5]);
        assert_eq!(fds_in(FdsIn::Feature, &entry), vec![(8, 5)]);
        let plain = words(&[12, VFIO_DEVICE_FEATURE_SET | 3, 5]);
        assert!(fds_in(FdsIn::Feature, &plain).is_empty());
    }

    #[test]
    fn a_short_argument_carries_only_the_fds_it_reaches() {
        let reset = words(&[20, 0, 3, 4, 5]);
        assert_eq!(fds_in(FdsIn::HotReset, &reset), vec![(12, 4), (16, 5)]);
    }
}
