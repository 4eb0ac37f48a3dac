//! `VFIO_DEVICE_GET_IRQ_INFO` and `VFIO_DEVICE_SET_IRQS`: the raw structs go
//! to the device core's interrupt calls, with the eventfds a `SET_IRQS`
//! carries received beside them.

use std::os::fd::OwnedFd;

use vfio::DeviceFd;
use wire::msg::IoctlArg;

use super::VFIO_DEVICE_GET_IRQ_INFO;
use crate::args::{sized, u32_at, Answer, ArgFds, IoctlResult, Slot};

/// `VFIO_IRQ_SET_DATA_EVENTFD`.
const DATA_EVENTFD: u32 = 1 << 2;
/// Byte offset of the data of `struct vfio_irq_set`.
const IRQ_SET_DATA: usize = vfio::IRQ_SET_MINSZ;

/// Interrupts of a device: `VFIO_DEVICE_GET_IRQ_INFO` and
/// `VFIO_DEVICE_SET_IRQS` as the core answers them
/// ([`DeviceFd::irq_info_raw`], [`DeviceFd::set_irqs_raw`]). The eventfds
/// of a `DATA_EVENTFD` array are in `fds`, one slot per non-negative
/// entry; a closed one goes to the core as `None` (`EBADF`).
///
/// # Errors
///
/// `EINVAL` for an `argsz` below the struct; `EFAULT` for an argument
/// that is not a struct; else the core's.
pub(crate) fn device_irq_ioctl(fd: &DeviceFd, request: u64, arg: &IoctlArg, fds: &mut ArgFds) -> IoctlResult {
    // The process sends `argsz` bytes: a small `argsz` is judged before the
    // core sees a short copy.
    if request == VFIO_DEVICE_GET_IRQ_INFO {
        let b = sized(arg, 16)?;
        return Ok(Answer::out(fd.irq_info_raw(b)?));
    }
    let b = sized(arg, IRQ_SET_DATA)?;
    let mut eventfds: Vec<Option<OwnedFd>> = Vec::new();
    if u32_at(b, 4) & DATA_EVENTFD != 0 {
        let count = u32_at(b, 16) as usize;
        for i in 0..count {
            let off = IRQ_SET_DATA + 4 * i;
            if off + 4 > b.len() {
                break;
            }
            if (u32_at(b, off) as i32) < 0 {
                continue;
            }
            eventfds.push(match fds.take(off) {
                Slot::Fd(f) => Some(f),
                Slot::Bad | Slot::Absent => None,
            });
        }
    }
    fd.set_irqs_raw(b, eventfds)?;
    Ok(Answer::zero())
}
