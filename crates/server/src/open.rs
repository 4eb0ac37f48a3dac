//! Opens of the device nodes the server serves, and the view of `/dev` and
//! `/sys` a process sees for them (`stat`, `readlink`, `realpath`,
//! `opendir`, and reads of sysfs files).
//!
//! The nodes: `/dev/vfio/vfio` (a new container), `/dev/vfio/<N>` (group
//! `N`, once at a time), `/dev/vfio/devices/vfio<K>` (a cdev file, unbound),
//! `/dev/iommu` (a new iommufd context). The view (exec-arch.md):
//!
//! ```text
//! /sys/bus/pci/devices/<BDF>/            iommu_group -> ../../../../kernel/iommu_groups/<N>
//!                                        vfio-dev/vfio<K>/dev   "MAJ:MIN\n"
//!                                        vendor device class revision subsystem_vendor subsystem_device
//!                                        driver -> ../../../../bus/pci/drivers/vfio-pci
//! /sys/kernel/iommu_groups/<N>/devices/<BDF> -> ../../../../bus/pci/devices/<BDF>
//! /sys/class/vfio-dev/vfio<K>            -> ../../bus/pci/devices/<BDF>/vfio-dev/vfio<K>
//! /dev/vfio/{vfio,<N>...,devices/vfio<K>...}   /dev/iommu     character devices
//! ```
//!
//! Our `<BDF>` directory is not itself a link (as `/sys/bus/pci/devices/<BDF>`
//! is on Linux), so its links climb four levels to `/sys`.

use std::sync::Arc;

use rustix::io::Errno;
use wire::{Node, ObjectKind};

use crate::container::{ContainerFile, IommufdFile};
use crate::device::DeviceFile;
use crate::object::{Access, Object};
use crate::server::{Served, Shared};

/// `/dev/vfio/vfio`: the misc device `vfio`.
const VFIO_CONTAINER_DEV: (u32, u32) = (10, 196);
/// `/dev/iommu`: the misc device `iommu`.
const IOMMU_DEV: (u32, u32) = (10, 123);
/// Major of the group nodes (the kernel's is dynamic); the minor is the
/// group number.
const VFIO_GROUP_MAJOR: u32 = 243;
/// Major of the `vfio-dev` cdevs (dynamic in the kernel); the minor is the
/// cdev number.
const VFIO_DEV_MAJOR: u32 = 237;

/// `open(2)` of `path`: the new open file's kind and the process's end.
///
/// # Errors
///
/// `ENOENT` for a path that is not served; `EISDIR` for a directory;
/// `ENXIO` for a sysfs file or link (read through a lookup instead);
/// `EBUSY` for a group that is open already or has a device bound through
/// its cdev; the socket calls' errno (`EMFILE`).
pub(crate) fn open(shared: &Shared, path: &str, flags: i32) -> Result<(ObjectKind, std::os::fd::OwnedFd), Errno> {
    let path = path.trim_end_matches('/');
    let object = if path == "/dev/vfio/vfio" {
        Object::Container(Arc::new(ContainerFile::default()))
    } else if path == "/dev/iommu" {
        Object::Iommufd(Arc::new(IommufdFile::default()))
    } else if let Some(served) = path.strip_prefix("/dev/vfio/devices/").and_then(|k| cdev_by_name(shared, k)) {
        Object::Device(Arc::new(DeviceFile::cdev(served)))
    } else if let Some(group) = path.strip_prefix("/dev/vfio/").and_then(|n| group_by_name(shared, n)) {
        Object::Group(group.open()?)
    } else {
        return Err(match lookup(shared, path) {
            Node::Missing => Errno::NOENT,
            Node::Dir(_) => Errno::ISDIR,
            _ => Errno::NXIO,
        });
    };
    let kind = object.kind();
    let fd = shared.objects.install(object, Access::from_open_flags(flags))?;
    tracing::debug!(path, ?kind, "opened");
    Ok((kind, fd))
}

/// The group named `n` (decimal, as the node's name).
fn group_by_name<'a>(shared: &'a Shared, n: &str) -> Option<&'a Arc<crate::group::Group>> {
    // Only the canonical decimal spelling names a node ("03" does not).
    let number: u32 = n.parse().ok()?;
    (number.to_string() == n).then_some(())?;
    shared.groups.get(&number)
}

/// The device whose cdev is named `name` (`vfio<K>`).
fn cdev_by_name(shared: &Shared, name: &str) -> Option<Arc<Served>> {
    shared.devices.iter().find(|d| format!("vfio{}", d.cdev_index) == name).cloned()
}

/// The device at PCI address `bdf` (as sysfs spells it).
fn device_by_bdf(shared: &Shared, bdf: &str) -> Option<Arc<Served>> {
    shared.devices.iter().find(|d| d.vdev.bdf().to_string() == bdf).cloned()
}

fn char_dev((major, minor): (u32, u32)) -> Node {
    Node::CharDev { major, minor }
}

fn dir(entries: impl IntoIterator<Item = String>) -> Node {
    Node::Dir(entries.into_iter().collect())
}

/// What `path` is in the served view (absolute, without `.` or `..`).
pub(crate) fn lookup(shared: &Shared, path: &str) -> Node {
    let path = path.trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    match parts.as_slice() {
        ["dev", "iommu"] => char_dev(IOMMU_DEV),
        ["dev", "vfio"] => {
            dir(["vfio".to_owned(), "devices".to_owned()].into_iter().chain(shared.groups.keys().map(u32::to_string)))
        }
        ["dev", "vfio", "vfio"] => char_dev(VFIO_CONTAINER_DEV),
        ["dev", "vfio", "devices"] => dir(shared.devices.iter().map(|d| format!("vfio{}", d.cdev_index))),
        ["dev", "vfio", "devices", name] => match cdev_by_name(shared, name) {
            Some(d) => char_dev((VFIO_DEV_MAJOR, d.cdev_index)),
            None => Node::Missing,
        },
        ["dev", "vfio", n] => match group_by_name(shared, n) {
            Some(g) => char_dev((VFIO_GROUP_MAJOR, g.number)),
            None => Node::Missing,
        },
        ["sys", "bus", "pci", "devices", bdf, rest @ ..] => match device_by_bdf(shared, bdf) {
            Some(d) => device_node(&d, rest),
            None => Node::Missing,
        },
        ["sys", "kernel", "iommu_groups"] => dir(shared.groups.keys().map(u32::to_string)),
        ["sys", "kernel", "iommu_groups", n, rest @ ..] => {
            let Some(g) = group_by_name(shared, n) else { return Node::Missing };
            match rest {
                [] => dir(["devices".to_owned()]),
                ["devices"] => dir(g.devices.iter().map(|d| d.vdev.bdf().to_string())),
                ["devices", bdf] if g.devices.iter().any(|d| d.vdev.bdf().to_string() == *bdf) => {
                    Node::Link(format!("../../../../bus/pci/devices/{bdf}"))
                }
                _ => Node::Missing,
            }
        }
        ["sys", "class", "vfio-dev"] => dir(shared.devices.iter().map(|d| format!("vfio{}", d.cdev_index))),
        ["sys", "class", "vfio-dev", name] => match cdev_by_name(shared, name) {
            Some(d) => Node::Link(format!("../../bus/pci/devices/{}/vfio-dev/{name}", d.vdev.bdf())),
            None => Node::Missing,
        },
        _ => Node::Missing,
    }
}

/// `/sys/bus/pci/devices/<BDF>/<rest>`.
fn device_node(d: &Served, rest: &[&str]) -> Node {
    let cdev = format!("vfio{}", d.cdev_index);
    let hex = |off: u64, width: usize| {
        let mut b = [0u8; 4];
        let v = d.vdev.sysfs_config_read(off, &mut b[..width]).map(|_| u32::from_le_bytes(b)).unwrap_or(0);
        Node::File(format!("{v:#0w$x}\n", w = 2 + 2 * width).into_bytes())
    };
    match rest {
        [] => dir([
            "class",
            "device",
            "driver",
            "iommu_group",
            "revision",
            "subsystem_device",
            "subsystem_vendor",
            "vendor",
            "vfio-dev",
        ]
        .map(str::to_owned)),
        ["iommu_group"] => Node::Link(format!("../../../../kernel/iommu_groups/{}", d.group)),
        ["driver"] => Node::Link("../../../../bus/pci/drivers/vfio-pci".to_owned()),
        ["vendor"] => hex(0x00, 2),
        ["device"] => hex(0x02, 2),
        ["revision"] => hex(0x08, 1),
        ["subsystem_vendor"] => hex(0x2c, 2),
        ["subsystem_device"] => hex(0x2e, 2),
        ["class"] => {
            let mut b = [0u8; 4];
            let v = d.vdev.sysfs_config_read(0x08, &mut b).map(|_| u32::from_le_bytes(b) >> 8).unwrap_or(0);
            Node::File(format!("{v:#08x}\n").into_bytes())
        }
        ["vfio-dev"] => dir([cdev]),
        ["vfio-dev", name] if *name == cdev => dir(["dev".to_owned()]),
        ["vfio-dev", name, "dev"] if *name == cdev => {
            Node::File(format!("{VFIO_DEV_MAJOR}:{}\n", d.cdev_index).into_bytes())
        }
        _ => Node::Missing,
    }
}
