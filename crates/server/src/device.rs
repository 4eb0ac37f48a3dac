//! Device files: opened through a group (`VFIO_GROUP_GET_DEVICE_FD`) or as a
//! cdev (`/dev/vfio/devices/vfio<K>`, usable after
//! `VFIO_DEVICE_BIND_IOMMUFD`), their ioctls, reads and writes.
//!
//! Analogous to Linux's `vfio_device_fops` (`drivers/vfio/vfio_main.c`,
//! `device_cdev.c`): a cdev file is unbound until bound, and every call but
//! the bind is `EINVAL` until then (iommufd-cdev.md §1.3); the ioctls of a
//! usable file go to the vfio-pci core (`ioctl`, `hot_reset`, `irq`), and
//! the cdev's own to `cdev`. The release closes the device (the vfio core's
//! last-close path when it is the last file), then unbinds, then lets go of
//! the group.

mod cdev;
mod dma;
mod hot_reset;
mod ioctl;
mod irq;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use rustix::io::Errno;
use vfio::DeviceFd;
use wire::msg::IoctlArg;
use wire::nr::{
    VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT, VFIO_DEVICE_FEATURE,
    VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, VFIO_DEVICE_GET_REGION_INFO,
    VFIO_DEVICE_PCI_HOT_RESET, VFIO_DEVICE_RESET, VFIO_DEVICE_SET_IRQS,
};
use wire::ObjectKind;

use crate::args::{vfio_errno, ArgFds, IoctlResult};
use crate::container::IommufdFile;
use crate::group::{Group, GroupFile, GroupIommu};
use crate::lock;
use crate::object::OpenFile;
use crate::server::{Served, Shared};

pub(crate) use self::dma::DmaUsers;
pub(crate) use self::irq::device_irq_ioctl;

/// The cdev file of a device bound to an iommufd context.
#[derive(Debug, Clone)]
pub(crate) struct CdevBinding {
    /// The context (weak: the device file holds it).
    pub(crate) iommufd: Weak<IommufdFile>,
    /// The device's object id in it.
    pub(crate) devid: u32,
}

/// How a device file is open.
#[derive(Debug, Default)]
enum DeviceState {
    /// A cdev open, not bound: only `VFIO_DEVICE_BIND_IOMMUFD` works.
    #[default]
    Unbound,
    /// Opened through its group; holds the group file. `compat` is the
    /// device's object in the iommufd the group is attached to, if any.
    Group { fd: DeviceFd, group: Arc<GroupFile>, compat: Option<(Arc<IommufdFile>, u32)> },
    /// A cdev bound to `iommufd` as `devid`; blocks `group`.
    Bound { fd: DeviceFd, iommufd: Arc<IommufdFile>, devid: u32, group: Arc<Group> },
    /// A file of a device the serving process holds open itself (see
    /// `local`): usable, with no group or context of the server's.
    Local { fd: DeviceFd },
}

/// An open device file.
#[derive(Debug)]
pub(crate) struct DeviceFile {
    /// Immutable.
    pub(crate) served: Arc<Served>,
    /// Immutable. Names this file among the device's DMA users.
    key: usize,
    /// Protected by: itself, a leaf (calls into the device run on a dup of
    /// the device handle, with it released).
    state: Mutex<DeviceState>,
}

impl DeviceFile {
    /// A cdev open: not bound yet.
    pub(crate) fn cdev(served: Arc<Served>) -> Self {
        Self { served, key: next_key(), state: Mutex::new(DeviceState::Unbound) }
    }

    /// `vfio_df_group_open()`: the device opened through `group` (the
    /// first open enables the function), reaching memory through what the
    /// group is attached to (`iommu`): the container's Type1 IOMMU, or an
    /// iommufd context, where the device is bound and attached to the
    /// compatibility IOAS (`vfio_iommufd_compat_attach_ioas()`).
    ///
    /// Deviation: each such file binds its own device object; the kernel
    /// binds once per device open count.
    ///
    /// # Errors
    ///
    /// `ENODEV` when the context has no compatibility IOAS (the program
    /// destroyed or cleared it); the attach's errors (`EADDRINUSE`,
    /// `EFAULT`). The device is closed and unbound again then.
    pub(crate) fn from_group(served: Arc<Served>, group: Arc<GroupFile>, iommu: &GroupIommu) -> Result<Self, Errno> {
        let key = next_key();
        let fd = served.vdev.open();
        let (compat, space) = match iommu {
            GroupIommu::Container(c) => (None, c.iommu.dma_space()),
            GroupIommu::Iommufd(i) => {
                let devid = i.ctx.bind_device();
                if let Err(e) = i.ctx.compat_ioas_id().and_then(|ioas| i.ctx.attach(devid, ioas)) {
                    drop(fd);
                    i.ctx.unbind_device(devid);
                    return Err(e);
                }
                (Some((Arc::clone(i), devid)), i.ctx.dma_space(devid))
            }
        };
        if let Some(space) = space {
            served.dma.attach(&served, key, space);
        }
        Ok(Self { served, key, state: Mutex::new(DeviceState::Group { fd, group, compat }) })
    }

    /// A file of the device `fd` the serving process opened in-process.
    pub(crate) fn local(served: Arc<Served>, fd: DeviceFd) -> Self {
        Self { served, key: next_key(), state: Mutex::new(DeviceState::Local { fd }) }
    }

    /// This bound cdev file was attached to a page table: the device's DMA
    /// goes through it.
    pub(crate) fn dma_attached(&self, iommufd: &IommufdFile, devid: u32) {
        match iommufd.ctx.dma_space(devid) {
            Some(space) => self.served.dma.attach(&self.served, self.key, space),
            None => self.served.dma.detach(&self.served, self.key),
        }
    }

    /// This bound cdev file was detached: the device's DMA reaches nothing.
    pub(crate) fn dma_detached(&self) {
        self.served.dma.detach(&self.served, self.key);
    }

    /// The device handle of a usable file.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a cdev file not bound yet.
    pub(crate) fn fd(&self) -> Result<DeviceFd, Errno> {
        match &*lock(&self.state) {
            DeviceState::Unbound => Err(Errno::INVAL),
            DeviceState::Group { fd, .. } | DeviceState::Bound { fd, .. } | DeviceState::Local { fd } => Ok(fd.dup()),
        }
    }

    /// Whether this is a cdev file (bound or not).
    pub(crate) fn is_cdev(&self) -> bool {
        matches!(&*lock(&self.state), DeviceState::Unbound | DeviceState::Bound { .. })
    }

    /// The context a bound cdev file is bound to.
    pub(crate) fn bound_iommufd(&self) -> Option<(Arc<IommufdFile>, u32)> {
        match &*lock(&self.state) {
            DeviceState::Bound { iommufd, devid, .. } => Some((Arc::clone(iommufd), *devid)),
            _ => None,
        }
    }

    /// An ioctl on the device fd.
    pub(crate) fn ioctl(
        self: &Arc<Self>,
        shared: &Shared,
        request: u64,
        arg: &IoctlArg,
        fds: &mut ArgFds,
    ) -> IoctlResult {
        // vfio_device_fops_unl_ioctl(): the bind first, then nothing but
        // EINVAL until the file is usable.
        if request == VFIO_DEVICE_BIND_IOMMUFD {
            return cdev::bind(self, shared, arg, fds);
        }
        let fd = self.fd()?;
        match request {
            VFIO_DEVICE_GET_INFO => ioctl::get_info(arg),
            VFIO_DEVICE_GET_REGION_INFO => ioctl::get_region_info(&fd, arg),
            VFIO_DEVICE_GET_IRQ_INFO | VFIO_DEVICE_SET_IRQS => device_irq_ioctl(&fd, request, arg, fds),
            VFIO_DEVICE_RESET => ioctl::reset(&fd),
            VFIO_DEVICE_GET_PCI_HOT_RESET_INFO => hot_reset::get_info(shared, self, arg),
            VFIO_DEVICE_PCI_HOT_RESET => hot_reset::reset(shared, self, arg, fds),
            VFIO_DEVICE_FEATURE => ioctl::feature(shared, &fd, arg, fds),
            VFIO_DEVICE_ATTACH_IOMMUFD_PT | VFIO_DEVICE_DETACH_IOMMUFD_PT if self.is_cdev() => {
                cdev::attach_detach(self, request, arg)
            }
            _ => {
                // The group path's device file passes the cdev calls to the
                // driver, which does not know them.
                crate::names::log_unknown(shared, ObjectKind::Device, request);
                Err(Errno::NOTTY.into())
            }
        }
    }

    /// `pread(2)`: a region read at device-fd offset `offset` (short at the
    /// end of a region).
    ///
    /// # Errors
    ///
    /// `EINVAL` before bind; the core's errors.
    pub(crate) fn pread(&self, offset: u64, len: u32) -> Result<Vec<u8>, Errno> {
        let fd = self.fd()?;
        let mut buf = vec![0u8; (len as usize).min(wire::MAX_DATA)];
        let n = fd.read(offset, &mut buf).map_err(vfio_errno)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// `pwrite(2)`: a region write; returns the bytes written.
    ///
    /// # Errors
    ///
    /// As [`DeviceFile::pread`].
    pub(crate) fn pwrite(&self, offset: u64, data: &[u8]) -> Result<usize, Errno> {
        let fd = self.fd()?;
        fd.write(offset, &data[..data.len().min(wire::MAX_DATA)]).map_err(vfio_errno)
    }
}

impl Drop for DeviceFile {
    /// `vfio_device_fops_release()`: the device file closes (the device
    /// itself when it was the last file and no mapping holds one), then the
    /// device leaves its iommufd context, then the group is let go.
    fn drop(&mut self) {
        self.served.dma.detach(&self.served, self.key);
        match std::mem::take(&mut *lock(&self.state)) {
            DeviceState::Unbound => {}
            DeviceState::Local { fd } => drop(fd),
            DeviceState::Group { fd, group, compat } => {
                drop(fd);
                if let Some((iommufd, devid)) = compat {
                    iommufd.ctx.unbind_device(devid);
                }
                group.device_closed();
                drop(group);
            }
            DeviceState::Bound { fd, iommufd, devid, group } => {
                drop(fd);
                iommufd.ctx.unbind_device(devid);
                lock(&self.served.binding).take();
                group.unblock();
            }
        }
    }
}

/// A key no other device file has.
fn next_key() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Where reads and writes of an open file land.
///
/// # Errors
///
/// `EBADF` when the file was not opened for it; `EINVAL` for a file that
/// cannot be read or written (no such operation); else as the device's.
pub(crate) fn check_rw(file: &OpenFile, write: bool) -> Result<Arc<DeviceFile>, Errno> {
    // vfs_read()/vfs_write(): the open mode first, then the operation.
    let allowed = if write { file.access.write } else { file.access.read };
    if !allowed {
        return Err(Errno::BADF);
    }
    match &file.object {
        crate::object::Object::Device(d) => Ok(Arc::clone(d)),
        _ => Err(Errno::INVAL),
    }
}
