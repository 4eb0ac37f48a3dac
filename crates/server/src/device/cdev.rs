//! The cdev's own ioctls: `VFIO_DEVICE_BIND_IOMMUFD`,
//! `VFIO_DEVICE_ATTACH_IOMMUFD_PT`, `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
//! Analogous to Linux's `drivers/vfio/device_cdev.c`; the checks and their
//! order are iommufd-cdev.md §1.4–1.5.

use std::sync::Arc;

use rustix::io::Errno;
use wire::msg::IoctlArg;

use super::{CdevBinding, DeviceFile, DeviceState, VFIO_DEVICE_ATTACH_IOMMUFD_PT};
use crate::args::{head, put_u32, sized, u32_at, Answer, ArgFds, IoctlResult, Slot};
use crate::lock;
use crate::object::Object;
use crate::server::Shared;

const VFIO_DEVICE_BIND_FLAG_TOKEN: u32 = 1 << 0;
/// `VFIO_DEVICE_ATTACH_PASID` and `VFIO_DEVICE_DETACH_PASID`.
const PASID: u32 = 1 << 0;
/// `sizeof(struct vfio_device_bind_iommufd)`.
const BIND_SIZE: usize = 24;
/// `offsetofend(struct vfio_device_bind_iommufd, out_devid)`.
const BIND_MINSZ: usize = 16;

/// `vfio_df_ioctl_bind_iommufd()`: binds a cdev file to an iommufd
/// context and opens the device (the first open enables the function).
///
/// # Errors
///
/// In the kernel's order: `EINVAL` for `argsz < 16`; `E2BIG` for non-zero
/// bytes past the struct; `EINVAL` for a negative `iommufd` or unknown
/// flags; `EINVAL` on a file from `VFIO_GROUP_GET_DEVICE_FD`; `EBUSY` while
/// the device's group is open; `EINVAL` when this file is bound already or
/// the device is open through another file; `EINVAL` for a VF token (these
/// devices take none); `EBADF` when `iommufd` is not an open fd, `EBADFD`
/// when it is not an iommufd.
pub(super) fn bind(dev: &Arc<DeviceFile>, shared: &Shared, arg: &IoctlArg, fds: &mut ArgFds) -> IoctlResult {
    let b = sized(arg, BIND_MINSZ)?;
    // copy_struct_from_user(): a longer struct must be zero past ours.
    let end = (u32_at(b, 0) as usize).min(b.len());
    if b.get(BIND_SIZE..end).is_some_and(|tail| tail.iter().any(|x| *x != 0)) {
        return Err(Errno::TOOBIG.into());
    }
    let flags = u32_at(b, 4);
    if (u32_at(b, 8) as i32) < 0 || flags & !VFIO_DEVICE_BIND_FLAG_TOKEN != 0 {
        return Err(Errno::INVAL.into());
    }
    let Some(group) = shared.groups.get(&dev.served.group) else { return Err(Errno::INVAL.into()) };
    // BIND_IOMMUFD is only for cdev files, and only once; a bound file's
    // group is blocked by itself, so the group check cannot come first.
    if !matches!(&*lock(&dev.state), DeviceState::Unbound) {
        return Err(Errno::INVAL.into());
    }
    group.block()?;
    let result = (|| {
        if dev.served.vdev.open_count() > 0 {
            // vfio_df_open(): a cdev allows one open of the device.
            return Err(Errno::INVAL);
        }
        if flags & VFIO_DEVICE_BIND_FLAG_TOKEN != 0 {
            // Neither a PF nor a VF: a token is refused.
            return Err(Errno::INVAL);
        }
        let iommufd = match fds.take(8) {
            Slot::Fd(fd) => match shared.objects.lookup(&fd).map(|f| f.object.clone()) {
                Some(Object::Iommufd(i)) => i,
                _ => return Err(Errno::BADFD),
            },
            Slot::Absent | Slot::Bad => return Err(Errno::BADF),
        };
        let mut state = lock(&dev.state);
        if !matches!(&*state, DeviceState::Unbound) {
            return Err(Errno::INVAL);
        }
        let fd = dev.served.vdev.open();
        let devid = iommufd.ctx.bind_device();
        *lock(&dev.served.binding) = Some(CdevBinding { iommufd: Arc::downgrade(&iommufd), devid });
        *state = DeviceState::Bound { fd, iommufd, devid, group: Arc::clone(group) };
        Ok(devid)
    })();
    match result {
        Ok(devid) => {
            let mut out = head(b, BIND_MINSZ);
            put_u32(&mut out, 12, devid);
            tracing::debug!(device = %dev.served.vdev.bdf(), devid, "cdev bound");
            Ok(Answer::out(out))
        }
        Err(e) => {
            group.unblock();
            Err(e.into())
        }
    }
}

/// `vfio_df_ioctl_attach_pt()` / `vfio_df_ioctl_detach_pt()` on a bound
/// cdev file (an unbound one never gets here).
///
/// # Errors
///
/// `EINVAL` for a size below the minimum (12 attach, 8 detach) or unknown
/// flags; `EOPNOTSUPP` for a PASID (these devices have no PASID
/// support); attach: the context's `ENOENT`/`EINVAL` for `pt_id`.
pub(super) fn attach_detach(dev: &Arc<DeviceFile>, request: u64, arg: &IoctlArg) -> IoctlResult {
    let attach = request == VFIO_DEVICE_ATTACH_IOMMUFD_PT;
    let b = sized(arg, if attach { 12 } else { 8 })?;
    let flags = u32_at(b, 4);
    if flags & !PASID != 0 {
        return Err(Errno::INVAL.into());
    }
    if flags & PASID != 0 {
        return Err(Errno::OPNOTSUPP.into());
    }
    let Some((iommufd, devid)) = dev.bound_iommufd() else { return Err(Errno::INVAL.into()) };
    if !attach {
        iommufd.ctx.detach(devid);
        dev.dma_detached();
        return Ok(Answer::zero());
    }
    let hwpt = iommufd.ctx.attach(devid, u32_at(b, 8))?;
    dev.dma_attached(&iommufd, devid);
    let mut out = head(b, 12);
    put_u32(&mut out, 8, hwpt);
    Ok(Answer::out(out))
}
