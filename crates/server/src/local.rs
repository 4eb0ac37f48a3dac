//! Open files of objects the serving process itself holds: a process that
//! runs the server in a thread and uses the same devices in-process (the
//! scenario runner) hands such a file to a process it serves over
//! `SCM_RIGHTS`, as a VFIO user passes its buffer or device fd to a client.
//!
//! The file is a new open file of the same buffer or device (as if the
//! holder had `dup`ed its handle into a file of the server's): closing it
//! anywhere never affects the holder's handle, and the holder's close
//! never affects it. Everything a process does with it (mmap, ioctls,
//! reads, writes) is the server's usual path, so its mappings follow every
//! revocation of the one device.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use dmabuf::DmaBufFd;
use rustix::io::Errno;
use vfio::DeviceFd;

use crate::device::DeviceFile;
use crate::dmabuf::DmaBufFile;
use crate::object::{Access, Object};
use crate::server::Shared;

/// A buffer file of `buf`'s buffer, with the buffer's access mode.
///
/// # Errors
///
/// `EMFILE`/`ENFILE` when no handle or socket pair can be made.
pub(crate) fn dmabuf_file(shared: &Shared, buf: &DmaBufFd) -> Result<OwnedFd, Errno> {
    let handle = buf.dup().map_err(|e| e.errno())?;
    let mode = handle.buffer().mode();
    let access = Access { read: mode.can_read(), write: mode.can_write() };
    shared.objects.install(Object::DmaBuf(Arc::new(DmaBufFile::new(handle))), access)
}

/// A device file of `fd`'s open device, usable at once (the device is
/// already open and enabled in the holder).
///
/// # Errors
///
/// `ENODEV` when this server does not serve `fd`'s device; `EMFILE` or
/// `ENFILE` when no socket pair can be made.
pub(crate) fn device_file(shared: &Shared, fd: &DeviceFd) -> Result<OwnedFd, Errno> {
    let served = shared.devices.iter().find(|d| Arc::ptr_eq(&d.vdev, fd.device())).ok_or(Errno::NODEV)?;
    let file = DeviceFile::local(Arc::clone(served), fd.dup());
    shared.objects.install(Object::Device(Arc::new(file)), Access::RDWR)
}
