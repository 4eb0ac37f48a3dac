//! IOMMU groups (`/dev/vfio/<N>`): the group, its one open file, and the
//! group ioctls.
//!
//! Analogous to Linux's `drivers/vfio/group.c`: a group is opened once at a
//! time (`EBUSY`), and not while a device of it is bound through its cdev;
//! `VFIO_GROUP_SET_CONTAINER` attaches a container (or an iommufd, the
//! compatibility path); `VFIO_GROUP_GET_DEVICE_FD` opens a device, whose
//! file then holds the group file, so closing the group fd keeps the group
//! (and its container) as long as a device file lives.

use std::sync::{Arc, Mutex};

use rustix::io::Errno;
use wire::msg::IoctlArg;
use wire::nr::{VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER};
use wire::ObjectKind;

use crate::args::{head, put_u32, sized, Answer, ArgFds, IoctlResult, Slot};
use crate::container::{ContainerFile, IommufdFile};
use crate::device::DeviceFile;
use crate::lock;
use crate::object::{Access, Object};
use crate::server::{Served, Shared};

const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;
const VFIO_GROUP_FLAGS_CONTAINER_SET: u32 = 1 << 1;

/// Who opened the group, and how.
#[derive(Debug, Default)]
struct GroupState {
    /// The group file is open (`group->opened_file`).
    opened: bool,
    /// Devices of the group bound through their cdev
    /// (`group->cdev_device_open_cnt`).
    cdev_open: usize,
}

/// An IOMMU group.
#[derive(Debug)]
pub(crate) struct Group {
    /// Immutable. Its number.
    pub(crate) number: u32,
    /// Immutable. Its devices.
    pub(crate) devices: Vec<Arc<Served>>,
    /// Protected by: itself, a leaf (`group->group_lock` for these fields).
    state: Mutex<GroupState>,
}

impl Group {
    pub(crate) fn new(number: u32, devices: Vec<Arc<Served>>) -> Self {
        Self { number, devices, state: Mutex::new(GroupState::default()) }
    }

    /// `vfio_group_fops_open()`: the group's one open file.
    ///
    /// # Errors
    ///
    /// `EBUSY` when the group is open already, or a device of it is bound
    /// through its cdev.
    pub(crate) fn open(self: &Arc<Self>) -> Result<Arc<GroupFile>, Errno> {
        let mut state = lock(&self.state);
        if state.cdev_open > 0 || state.opened {
            return Err(Errno::BUSY);
        }
        state.opened = true;
        Ok(Arc::new(GroupFile { group: Arc::clone(self), state: Mutex::new(GroupFileState::default()) }))
    }

    /// `vfio_device_block_group()`: a device of the group is being bound
    /// through its cdev; the group may not be opened until
    /// [`Group::unblock`].
    ///
    /// # Errors
    ///
    /// `EBUSY` while the group is open.
    pub(crate) fn block(&self) -> Result<(), Errno> {
        let mut state = lock(&self.state);
        if state.opened {
            return Err(Errno::BUSY);
        }
        state.cdev_open += 1;
        Ok(())
    }

    /// `vfio_device_unblock_group()`.
    pub(crate) fn unblock(&self) {
        let mut state = lock(&self.state);
        state.cdev_open = state.cdev_open.saturating_sub(1);
    }
}

/// What a group is attached to (`group->container` or `group->iommufd`).
#[derive(Debug, Clone)]
pub(crate) enum GroupIommu {
    Container(Arc<ContainerFile>),
    Iommufd(Arc<IommufdFile>),
}

#[derive(Debug, Default)]
struct GroupFileState {
    iommu: Option<GroupIommu>,
    /// Device files opened through this group and not released
    /// (`container_users - 1`).
    devices_open: usize,
}

/// The open group file.
#[derive(Debug)]
pub(crate) struct GroupFile {
    /// Immutable.
    pub(crate) group: Arc<Group>,
    /// Protected by: itself; above `ContainerFile::groups`.
    state: Mutex<GroupFileState>,
}

impl Drop for GroupFile {
    /// `vfio_group_fops_release()`: device files hold the group file, so
    /// none is open now; the container is detached (its last group
    /// releases the IOMMU), and the group may be opened again.
    fn drop(&mut self) {
        let iommu = lock(&self.state).iommu.take();
        if let Some(GroupIommu::Container(c)) = &iommu {
            c.detach_group();
        }
        drop(iommu);
        lock(&self.group.state).opened = false;
        tracing::debug!(group = self.group.number, "group released");
    }
}

impl GroupFile {
    /// A device file opened through this group was released.
    pub(crate) fn device_closed(&self) {
        let mut state = lock(&self.state);
        state.devices_open = state.devices_open.saturating_sub(1);
    }

    /// An ioctl on the group fd.
    pub(crate) fn ioctl(
        self: &Arc<Self>,
        shared: &Shared,
        request: u64,
        arg: &IoctlArg,
        fds: &mut ArgFds,
    ) -> IoctlResult {
        match request {
            VFIO_GROUP_GET_STATUS => self.get_status(arg),
            VFIO_GROUP_SET_CONTAINER => self.set_container(shared, arg, fds),
            VFIO_GROUP_UNSET_CONTAINER => self.unset_container(),
            VFIO_GROUP_GET_DEVICE_FD => self.get_device_fd(shared, arg),
            _ => {
                crate::names::log_unknown(shared, ObjectKind::Group, request);
                Err(Errno::NOTTY.into())
            }
        }
    }

    /// `VFIO_GROUP_GET_STATUS`: always viable (no other owner of the
    /// group's DMA exists here); `CONTAINER_SET` once attached.
    fn get_status(&self, arg: &IoctlArg) -> IoctlResult {
        let b = sized(arg, 8)?;
        let mut flags = VFIO_GROUP_FLAGS_VIABLE;
        if lock(&self.state).iommu.is_some() {
            flags |= VFIO_GROUP_FLAGS_CONTAINER_SET;
        }
        let mut out = head(b, 8);
        put_u32(&mut out, 4, flags);
        Ok(Answer::out(out))
    }

    /// `VFIO_GROUP_SET_CONTAINER` (`vfio_group_ioctl_set_container()`),
    /// checks in the kernel's order: the fd (`EBADF`), a group already
    /// attached (`EINVAL`), then what the fd is: a container is joined, an
    /// iommufd is used through its compatibility layer, anything else is
    /// `EBADFD`.
    fn set_container(&self, shared: &Shared, arg: &IoctlArg, fds: &mut ArgFds) -> IoctlResult {
        let IoctlArg::Bytes(b) = arg else { return Err(Errno::FAULT.into()) };
        if b.len() < 4 {
            return Err(Errno::FAULT.into());
        }
        let fd = match fds.take(0) {
            Slot::Fd(fd) => fd,
            Slot::Absent | Slot::Bad => return Err(Errno::BADF.into()),
        };
        let target = shared.objects.lookup(&fd);
        let mut state = lock(&self.state);
        if state.iommu.is_some() {
            return Err(Errno::INVAL.into());
        }
        match target.as_ref().map(|f| &f.object) {
            Some(Object::Container(c)) => {
                c.attach_group();
                state.iommu = Some(GroupIommu::Container(Arc::clone(c)));
            }
            Some(Object::Iommufd(i)) => {
                // iommufd_vfio_compat_ioas_create(): the IOAS the container
                // calls act on, and the group's devices attach to.
                i.ctx.compat_ioas_create();
                state.iommu = Some(GroupIommu::Iommufd(Arc::clone(i)));
            }
            _ => return Err(Errno::BADFD.into()),
        }
        drop(state);
        tracing::debug!(group = self.group.number, "group attached");
        Ok(Answer::zero())
    }

    /// `VFIO_GROUP_UNSET_CONTAINER`: `EINVAL` when not attached, `EBUSY`
    /// while a device file of the group is open.
    fn unset_container(&self) -> IoctlResult {
        let iommu = {
            let mut state = lock(&self.state);
            if state.iommu.is_none() {
                return Err(Errno::INVAL.into());
            }
            if state.devices_open > 0 {
                return Err(Errno::BUSY.into());
            }
            state.iommu.take()
        };
        if let Some(GroupIommu::Container(c)) = &iommu {
            c.detach_group();
        }
        Ok(Answer::zero())
    }

    /// `VFIO_GROUP_GET_DEVICE_FD`: the device named by its PCI address
    /// (`ENODEV` for none of this group, `EINVAL` for options after the
    /// name, such as a VF token this device does not take), then `EINVAL`
    /// until the group's container has an IOMMU set. Returns a new device
    /// file, which holds this group file.
    fn get_device_fd(self: &Arc<Self>, shared: &Shared, arg: &IoctlArg) -> IoctlResult {
        let IoctlArg::Str(name) = arg else { return Err(Errno::FAULT.into()) };
        let served = find_device(&self.group.devices, name)?;
        let iommu = {
            let mut state = lock(&self.state);
            let iommu = match &state.iommu {
                Some(GroupIommu::Container(c)) if c.iommu.iommu_set() => GroupIommu::Container(Arc::clone(c)),
                Some(GroupIommu::Iommufd(i)) => GroupIommu::Iommufd(Arc::clone(i)),
                _ => return Err(Errno::INVAL.into()),
            };
            state.devices_open += 1;
            iommu
        };
        let file = match DeviceFile::from_group(served, Arc::clone(self), &iommu) {
            Ok(file) => file,
            Err(e) => {
                self.device_closed();
                return Err(e.into());
            }
        };
        let fd = shared.objects.install(Object::Device(Arc::new(file)), Access::RDWR)?;
        Ok(Answer { ret: 0, out: Vec::new(), fd: Some(fd) })
    }
}

/// `vfio_device_get_from_name()` with `vfio_pci_core_match()`: the device
/// whose PCI address is `name`, or is followed by options after a space.
fn find_device(devices: &[Arc<Served>], name: &str) -> Result<Arc<Served>, Errno> {
    for d in devices {
        let bdf = d.vdev.bdf().to_string();
        if let Some(rest) = name.strip_prefix(bdf.as_str()) {
            if rest.is_empty() {
                return Ok(Arc::clone(d));
            }
            if rest.starts_with(' ') {
                // Only a VF token is defined after the name, and none of
                // these devices is a PF or VF that takes one.
                return Err(Errno::INVAL);
            }
        }
    }
    Err(Errno::NODEV)
}
