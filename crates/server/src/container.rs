//! The container (`/dev/vfio/vfio`) and iommufd (`/dev/iommu`) files: the
//! glue between the VFIO files and the IOMMU side ([`crate::iommu`]).
//!
//! Analogous to Linux's `drivers/vfio/container.c` (the container file, its
//! group list, the IOMMU driver's release when the last group leaves) and
//! the iommufd file of `drivers/iommu/iommufd/main.c`.

use std::sync::{Arc, Mutex};

use rustix::io::Errno;
use wire::msg::IoctlArg;
use wire::ObjectKind;

use crate::args::{Answer, Failure, IoctlResult};
use crate::iommu::{self, IoctlOut, ProcessMemory};
use crate::process::Process;
use crate::server::Shared;

/// An open container. Groups attached to it hold it (`vfio_container_get()`).
#[derive(Debug, Default)]
pub(crate) struct ContainerFile {
    /// The Type1 IOMMU state.
    pub(crate) iommu: iommu::Container,
    /// Protected by: itself, a leaf below `GroupFile::state`. Attached
    /// groups.
    groups: Mutex<usize>,
}

impl ContainerFile {
    /// `vfio_container_attach_group()`: a group joins (a container whose
    /// IOMMU is set takes more groups: its driver attaches each).
    pub(crate) fn attach_group(&self) {
        *self.groups.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    /// `vfio_group_detach_container()`: a group leaves; with the last one
    /// the IOMMU driver is released (the IOMMU unset, every mapping gone),
    /// even while the container fd stays open.
    pub(crate) fn detach_group(&self) {
        let last = {
            let mut n = self.groups.lock().unwrap_or_else(|e| e.into_inner());
            *n = n.saturating_sub(1);
            *n == 0
        };
        if last {
            self.iommu.groups_gone();
        }
    }

    /// Attached groups.
    pub(crate) fn groups(&self) -> usize {
        *self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An ioctl on the container fd.
    pub(crate) fn ioctl(&self, shared: &Shared, request: u64, arg: &IoctlArg, caller: &Process) -> IoctlResult {
        let memory: Arc<dyn ProcessMemory> = caller.memory.clone();
        answer(shared, ObjectKind::Container, request, self.iommu.ioctl(request, arg, self.groups(), memory))
    }
}

/// An open iommufd context.
#[derive(Debug, Default)]
pub(crate) struct IommufdFile {
    /// The context.
    pub(crate) ctx: iommu::Iommufd,
}

impl IommufdFile {
    /// An ioctl on the iommufd fd (its own calls, and the container calls
    /// of the compatibility layer).
    pub(crate) fn ioctl(&self, shared: &Shared, request: u64, arg: &IoctlArg, caller: &Process) -> IoctlResult {
        let memory: Arc<dyn ProcessMemory> = caller.memory.clone();
        answer(shared, ObjectKind::Iommufd, request, self.ctx.ioctl(request, arg, memory))
    }
}

/// The IOMMU side's answer as the wire carries it: a call that copies back
/// and then fails (`IOMMU_IOAS_IOVA_RANGES`'s `EMSGSIZE` with `num_iovas`,
/// the compatibility `VFIO_IOMMU_UNMAP_DMA` with `size`) goes out as
/// `Reply::IoctlErr`, never as a negative return value.
fn answer(shared: &Shared, kind: ObjectKind, request: u64, r: Result<IoctlOut, Errno>) -> IoctlResult {
    match r {
        Ok(o) => match o.errno() {
            Some(e) => Err(Failure::WithOut(e, o.out)),
            None => Ok(Answer { ret: o.ret, out: o.out, fd: None }),
        },
        Err(Errno::NOTTY) => {
            crate::names::log_unknown(shared, kind, request);
            Err(Errno::NOTTY.into())
        }
        Err(e) => Err(e.into()),
    }
}
