//! `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` and `VFIO_DEVICE_PCI_HOT_RESET`:
//! a bus reset of every served device on the caller's bus (the `dev_set`),
//! allowed only when the caller owns them all. Analogous to Linux's
//! `vfio_pci_ioctl_get_pci_hot_reset_info()`,
//! `vfio_pci_ioctl_pci_hot_reset()` and `vfio_pci_dev_set_hot_reset()`;
//! the cdev form is iommufd-cdev.md §1.6.

use std::collections::HashSet;
use std::sync::Arc;

use rustix::io::Errno;
use wire::msg::IoctlArg;

use super::DeviceFile;
use crate::args::{head, put_u32, sized, u32_at, Answer, ArgFds, Failure, IoctlResult, Slot};
use crate::container::IommufdFile;
use crate::object::Object;
use crate::server::{Served, Shared};

const VFIO_PCI_HOT_RESET_FLAG_DEV_ID: u32 = 1 << 0;
const VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED: u32 = 1 << 1;
/// `VFIO_PCI_DEVID_OWNED`: owned through a device of its group bound in
/// the caller's context.
const DEVID_OWNED: u32 = 0;
/// `VFIO_PCI_DEVID_NOT_OWNED`.
const DEVID_NOT_OWNED: u32 = u32::MAX;
/// `sizeof(struct vfio_pci_hot_reset_info)` and of one dependent device.
const INFO_SIZE: usize = 12;
const DEP_SIZE: usize = 8;

/// The devices a bus reset of `served` resets: every served device on
/// its bus.
fn dev_set(shared: &Shared, served: &Served) -> Vec<Arc<Served>> {
    let bdf = served.vdev.bdf();
    shared
        .devices
        .iter()
        .filter(|d| {
            let other = d.vdev.bdf();
            other.domain == bdf.domain && other.bus == bdf.bus
        })
        .cloned()
        .collect()
}

/// `d`'s id in context `ictx`: its devid when bound there, "owned" when
/// another device of its group is, else "not owned".
fn devid_in(shared: &Shared, d: &Served, ictx: &Arc<IommufdFile>) -> u32 {
    let bound_here = |s: &Served| {
        let b = s.binding.lock().unwrap_or_else(|e| e.into_inner()).clone();
        b.and_then(|b| b.iommufd.upgrade().filter(|i| Arc::ptr_eq(i, ictx)).map(|_| b.devid))
    };
    if let Some(devid) = bound_here(d) {
        return devid;
    }
    let group_owned = shared.groups.get(&d.group).is_some_and(|g| g.devices.iter().any(|s| bound_here(s).is_some()));
    if group_owned {
        DEVID_OWNED
    } else {
        DEVID_NOT_OWNED
    }
}

/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`: the affected devices, by group
/// (group path) or by devid in the caller's context (cdev, with
/// `FLAG_DEV_ID` and `FLAG_DEV_ID_OWNED` when all are owned). Too small
/// an array: the header with the needed `count` is copied back, then
/// `ENOSPC`.
pub(super) fn get_info(shared: &Shared, dev: &Arc<DeviceFile>, arg: &IoctlArg) -> IoctlResult {
    let b = sized(arg, INFO_SIZE)?;
    let set = dev_set(shared, &dev.served);
    let room = (u32_at(b, 0) as usize - INFO_SIZE) / DEP_SIZE;
    let mut out = head(b, INFO_SIZE);
    put_u32(&mut out, 8, set.len() as u32);
    let ictx = dev.bound_iommufd().map(|(i, _)| i);
    let mut flags = 0;
    if dev.is_cdev() {
        flags |= VFIO_PCI_HOT_RESET_FLAG_DEV_ID;
    }
    if set.len() > room {
        put_u32(&mut out, 4, flags);
        return Err(Failure::WithOut(Errno::NOSPC, out));
    }
    let mut all_owned = true;
    for d in &set {
        let id = match &ictx {
            Some(i) => devid_in(shared, d, i),
            None => d.group,
        };
        all_owned &= id != DEVID_NOT_OWNED;
        let bdf = d.vdev.bdf();
        out.extend_from_slice(&id.to_ne_bytes());
        out.extend_from_slice(&bdf.domain.to_ne_bytes());
        out.push(bdf.bus);
        out.push((bdf.device << 3) | bdf.function);
    }
    if ictx.is_some() && all_owned {
        flags |= VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED;
    }
    put_u32(&mut out, 4, flags);
    Ok(Answer::out(out))
}

/// `VFIO_DEVICE_PCI_HOT_RESET`: `EINVAL` for flags, for group fds from a
/// cdev file or none from a group-path file, for more fds than devices,
/// for an fd that is not a group, and unless every device of the set is
/// owned (its group among the fds; or, for a cdev, bound in the caller's
/// context or owned through its group); `EBADF` for a closed fd. Then
/// [`vfio::dev_set_hot_reset`] over the set (`EBUSY` on contention).
pub(super) fn reset(shared: &Shared, dev: &Arc<DeviceFile>, arg: &IoctlArg, fds: &mut ArgFds) -> IoctlResult {
    let b = sized(arg, INFO_SIZE)?;
    if u32_at(b, 4) != 0 {
        return Err(Errno::INVAL.into());
    }
    let count = u32_at(b, 8) as usize;
    // A zero-length array is for cdev files only, and only zero for them.
    if (count != 0) == dev.is_cdev() {
        return Err(Errno::INVAL.into());
    }
    let set = dev_set(shared, &dev.served);
    if count > 0 {
        if count > set.len() {
            return Err(Errno::INVAL.into());
        }
        if b.len() < INFO_SIZE + 4 * count {
            return Err(Errno::FAULT.into());
        }
        let mut groups = HashSet::new();
        for i in 0..count {
            match fds.take(INFO_SIZE + 4 * i) {
                Slot::Fd(fd) => match shared.objects.lookup(&fd).map(|f| f.object.clone()) {
                    Some(Object::Group(g)) => groups.insert(g.group.number),
                    _ => return Err(Errno::INVAL.into()),
                },
                Slot::Absent | Slot::Bad => return Err(Errno::BADF.into()),
            };
        }
        if !set.iter().all(|d| groups.contains(&d.group)) {
            return Err(Errno::INVAL.into());
        }
    } else {
        let Some((ictx, _)) = dev.bound_iommufd() else { return Err(Errno::INVAL.into()) };
        if set.iter().any(|d| devid_in(shared, d, &ictx) == DEVID_NOT_OWNED) {
            return Err(Errno::INVAL.into());
        }
    }
    let vdevs: Vec<&vfio::VfioPciDevice> = set.iter().map(|d| d.vdev.as_ref()).collect();
    vfio::dev_set_hot_reset(&vdevs)?;
    Ok(Answer::zero())
}
