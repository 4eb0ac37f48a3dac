//! `VFIO_DEVICE_GET_IRQ_INFO` and `VFIO_DEVICE_SET_IRQS`, answered as the
//! device core offers interrupts today: it offers none, so every index
//! reports a count of 0 and every `SET_IRQS` fails the kernel's range check.
//!
//! This is the one place the interrupt ioctls reach; when the core gains
//! interrupts (eventfd triggers), it is replaced by calls into it.

use rustix::io::Errno;
use vfio::DeviceFd;
use wire::msg::IoctlArg;

use super::ioctl::NUM_IRQS;
use super::VFIO_DEVICE_GET_IRQ_INFO;
use crate::args::{head, put_u32, sized, u32_at, Answer, ArgFds, IoctlResult};

const VFIO_IRQ_INFO_EVENTFD: u32 = 1 << 0;
const VFIO_IRQ_INFO_MASKABLE: u32 = 1 << 1;
const VFIO_IRQ_INFO_AUTOMASKED: u32 = 1 << 2;
const VFIO_IRQ_INFO_NORESIZE: u32 = 1 << 3;
const VFIO_PCI_INTX_IRQ_INDEX: u32 = 0;
const VFIO_PCI_ERR_IRQ_INDEX: u32 = 3;
/// `VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK`.
const IRQ_SET_FLAGS: u32 = 0x3f;
/// The PCI Express capability id.
const PCI_CAP_ID_EXP: u8 = 0x10;

/// Interrupts of a device: `VFIO_DEVICE_GET_IRQ_INFO` and
/// `VFIO_DEVICE_SET_IRQS`, with the kernel's checks
/// (`vfio_pci_ioctl_get_irq_info()`, `vfio_set_irqs_validate_and_prepare()`)
/// over a count of 0 for every index. The eventfds a `SET_IRQS` carries are
/// in `fds`.
///
/// # Errors
///
/// `EINVAL` for a short `argsz`, an index past the last (or ERR on a
/// conventional PCI device), unknown flags, and every `SET_IRQS` range
/// (no interrupt exists to set).
pub(crate) fn device_irq_ioctl(fd: &DeviceFd, request: u64, arg: &IoctlArg, fds: &mut ArgFds) -> IoctlResult {
    let _ = fds;
    if request == VFIO_DEVICE_GET_IRQ_INFO {
        let b = sized(arg, 16)?;
        let index = u32_at(b, 8);
        if index >= NUM_IRQS || (index == VFIO_PCI_ERR_IRQ_INDEX && !is_pcie(fd)) {
            return Err(Errno::INVAL.into());
        }
        let mut flags = VFIO_IRQ_INFO_EVENTFD;
        if index == VFIO_PCI_INTX_IRQ_INDEX {
            flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
        } else {
            flags |= VFIO_IRQ_INFO_NORESIZE;
        }
        let mut out = head(b, 16);
        put_u32(&mut out, 4, flags);
        put_u32(&mut out, 12, 0);
        return Ok(Answer::out(out));
    }
    let b = sized(arg, 20)?;
    let (flags, index, start, count) = (u32_at(b, 4), u32_at(b, 8), u32_at(b, 12), u32_at(b, 16));
    if index >= NUM_IRQS || count >= u32::MAX - start || flags & !IRQ_SET_FLAGS != 0 {
        return Err(Errno::INVAL.into());
    }
    // start >= num_irqs, with no interrupt of any index.
    Err(Errno::INVAL.into())
}

/// Whether the device has a PCI Express capability (the ERR index exists
/// only then).
fn is_pcie(fd: &DeviceFd) -> bool {
    let read = |off: u64| {
        let mut b = [0u8; 1];
        fd.device().sysfs_config_read(off, &mut b).map(|_| b[0]).unwrap_or(0)
    };
    let mut pos = read(0x34) & !3;
    for _ in 0..48 {
        if pos < 0x40 {
            return false;
        }
        if read(u64::from(pos)) == PCI_CAP_ID_EXP {
            return true;
        }
        pos = read(u64::from(pos) + 1) & !3;
    }
    false
}
