//! The IOMMU side of VFIO: the legacy Type1 container and the iommufd
//! context, as state machines over raw ioctl arguments, and DMA through
//! their mappings into the memory of the process that made them.
//!
//! The seam the rest of the server uses is fixed here: [`Container`],
//! [`Iommufd`], [`ProcessMemory`], [`DmaSpace`] and [`IoctlOut`].
//!
//! # What it mirrors
//!
//! - [`Container`]: `drivers/vfio/container.c` with the Type1 driver of
//!   `drivers/vfio/vfio_iommu_type1.c` (the only driver an x86 host
//!   registers that answers: SPAPR is not built, no-IOMMU mode is off).
//! - [`Iommufd`]: `drivers/iommu/iommufd/{main.c, ioas.c, io_pagetable.c}`
//!   for objects, IOAS and page tables, `device.c` for attach and the
//!   automatic HWPT, and `vfio_compat.c` for the container calls on
//!   `/dev/iommu`.
//! - The host is an x86-64 machine with a 48-bit VT-d IOMMU (`host`).
//!
//! Pages are not pinned: a mapping records the process memory and address
//! it was made from, and DMA copies through [`ProcessMemory`] at transfer
//! time. Where the kernel pins (Type1 map, iommufd map with a domain
//! attached, attach filling a domain) [`ProcessMemory::pin`] checks the
//! range, so a hole fails the call with the kernel's errno.
//!
//! # Locks
//!
//! One mutex per container (`Container`'s state: the kernel's container
//! `group_lock` and `vfio_iommu::lock` in one) and one per iommufd context
//! (its object table and every IOAS in it: `ictx->objects`, the IOAS
//! `iova_rwsem` and `domains_rwsem` in one). Both are leaves:
//!
//! ```text
//! device model locks (a DMA engine running)
//!   └── Container state  |  Iommufd context      (never both)
//!         └── ProcessMemory of the *calling* process (pin checks,
//!             IOMMU_IOAS_IOVA_RANGES / ALLOW_IOVAS array copies)
//! ```
//!
//! Nothing here calls into device code, and DMA copies run with no lock
//! held (see `dma`). Deadlock-freedom needs only that a device model calls
//! [`DmaSpace`] without holding a lock that a [`ProcessMemory`]
//! implementation takes.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::{Arc, Mutex};

use rustix::io::Errno;
use wire::msg::IoctlArg;

use crate::lock;

mod arg;
mod compat;
mod dma;
mod host;
mod ioas;
mod iommufd;
mod iova;
mod type1;
mod uapi;

#[cfg(test)]
mod tests;

/// What an ioctl answers: its return value and the bytes to copy back over
/// the start of its argument (empty for none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoctlOut {
    /// The return value (0 or positive). Negative only as made by
    /// [`IoctlOut::copy_then_fail`]: copy `out` back, then fail the call
    /// with the errno `-ret` (see [`IoctlOut::errno`]).
    pub ret: i64,
    /// Bytes to copy back over the argument.
    pub out: Vec<u8>,
}

impl IoctlOut {
    /// A call the kernel answers by copying `out` back and then failing
    /// with `errno`: `IOMMU_IOAS_IOVA_RANGES` writes `num_iovas` before it
    /// returns `EMSGSIZE` (programs size their array from it), and the
    /// compatibility `VFIO_IOMMU_UNMAP_DMA` writes `size` back on failure.
    pub fn copy_then_fail(out: Vec<u8>, errno: Errno) -> Self {
        Self { ret: -i64::from(errno.raw_os_error()), out }
    }

    /// The errno to fail with after copying `out` back, for a result of
    /// [`IoctlOut::copy_then_fail`]; `None` for a success.
    pub fn errno(&self) -> Option<Errno> {
        (self.ret < 0).then(|| Errno::from_raw_os_error((-self.ret) as i32))
    }
}

/// How the kernel pins a mapping's pages (`pin_user_pages` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinFlags {
    /// `FOLL_WRITE`: the device may write, so the pages must be writable.
    pub write: bool,
    /// A `VM_PFNMAP` range (a BAR mmap) is accepted: Type1 falls back to
    /// `follow_pfn` for it; iommufd's GUP refuses it (`EFAULT`).
    pub allow_pfnmap: bool,
}

/// The memory of the process that made a DMA mapping: where its `vaddr`s
/// live.
pub trait ProcessMemory: Send + Sync + fmt::Debug {
    /// Reads `buf.len()` bytes at `vaddr`.
    ///
    /// # Errors
    ///
    /// `EFAULT` when the range is not readable in that process.
    fn read(&self, vaddr: u64, buf: &mut [u8]) -> Result<(), Errno>;

    /// Writes `data` at `vaddr`.
    ///
    /// # Errors
    ///
    /// `EFAULT` when the range is not writable in that process.
    fn write(&self, vaddr: u64, data: &[u8]) -> Result<(), Errno>;

    /// Which address space this is (the kernel's `mm_struct`): Type1 lets
    /// only the process that made a mapping unmap it. `None` (the default)
    /// when unknown; every caller then counts as that process.
    fn mm_id(&self) -> Option<u64> {
        None
    }

    /// Pins `[vaddr, vaddr + len)` for DMA, as map calls do.
    ///
    /// The default reads the whole range (faulting every page in, as
    /// pinning does) and so cannot tell a read-only range from a writable
    /// one, nor a BAR mmap from ordinary memory: an implementation that
    /// knows the process's mappings should refuse those as the kernel does.
    ///
    /// # Errors
    ///
    /// `EFAULT` when some page cannot be pinned.
    fn pin(&self, vaddr: u64, len: u64, flags: PinFlags) -> Result<(), Errno> {
        let _ = flags;
        dma::probe_readable(self, vaddr, len)
    }
}

/// DMA as a device sees it: IOVAs translated through the mappings of its
/// container or IOAS, with the permissions they were made with.
pub trait DmaSpace: Send + Sync + fmt::Debug {
    /// Device reads `buf.len()` bytes at `iova`.
    ///
    /// # Errors
    ///
    /// `EFAULT` for an IOVA that is not mapped readable (an IOMMU fault).
    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<(), Errno>;

    /// Device writes `data` at `iova`.
    ///
    /// # Errors
    ///
    /// `EFAULT` for an IOVA that is not mapped writable.
    fn dma_write(&self, iova: u64, data: &[u8]) -> Result<(), Errno>;
}

/// A legacy container (`/dev/vfio/vfio`).
#[derive(Debug, Default)]
pub struct Container {
    /// The container and, once `VFIO_SET_IOMMU` succeeded, its Type1
    /// IOMMU. Shared with the [`DmaSpace`] handed out.
    state: Arc<Mutex<type1::ContainerState>>,
}

impl Container {
    /// A new container with no IOMMU set.
    pub fn new() -> Self {
        Self::default()
    }

    /// One ioctl on the container. `groups` is how many groups are attached
    /// now (`VFIO_SET_IOMMU` needs one); `caller` is the memory of the
    /// calling process (where `VFIO_IOMMU_MAP_DMA`'s `vaddr` lives).
    ///
    /// # Errors
    ///
    /// As the kernel's Type1 driver; `ENOTTY` for a request it does not know.
    /// Before `VFIO_SET_IOMMU` every call but the version, extension and
    /// set calls is `EINVAL` (the container has no driver to pass it to).
    pub fn ioctl(
        &self,
        request: u64,
        arg: &IoctlArg,
        groups: usize,
        caller: Arc<dyn ProcessMemory>,
    ) -> Result<IoctlOut, Errno> {
        lock(&self.state).ioctl(request, arg, groups, &caller)
    }

    /// Whether `VFIO_SET_IOMMU` succeeded (devices may then be opened).
    pub fn iommu_set(&self) -> bool {
        lock(&self.state).iommu_set()
    }

    /// The DMA view of devices in this container's groups (`None` before
    /// `VFIO_SET_IOMMU`). It follows the container: unmapped or dropped
    /// mappings fault from then on.
    pub fn dma_space(&self) -> Option<Arc<dyn DmaSpace>> {
        if !self.iommu_set() {
            return None;
        }
        Some(Arc::new(type1::ContainerDma { state: Arc::clone(&self.state) }))
    }

    /// The last group left: the IOMMU is unset and every mapping dropped.
    pub fn groups_gone(&self) {
        lock(&self.state).release();
    }
}

/// An iommufd context (`/dev/iommu`).
#[derive(Debug, Default)]
pub struct Iommufd {
    /// Its objects. Shared with the [`DmaSpace`]s handed out.
    ctx: Arc<Mutex<iommufd::Ctx>>,
}

impl Iommufd {
    /// A new context with no objects.
    pub fn new() -> Self {
        Self::default()
    }

    /// One ioctl on the context: the `IOMMU_*` calls, and the legacy
    /// container calls as the kernel's compatibility layer answers them.
    ///
    /// # Errors
    ///
    /// As the kernel's iommufd; `ENOTTY` for a request it does not know.
    pub fn ioctl(&self, request: u64, arg: &IoctlArg, caller: Arc<dyn ProcessMemory>) -> Result<IoctlOut, Errno> {
        lock(&self.ctx).ioctl(request, arg, &caller)
    }

    /// `VFIO_DEVICE_BIND_IOMMUFD` succeeded: a device object joins the
    /// context; returns its id (`out_devid`).
    pub fn bind_device(&self) -> u32 {
        lock(&self.ctx).bind_device()
    }

    /// The bound device fd closed: detach it and destroy its object.
    pub fn unbind_device(&self, devid: u32) {
        lock(&self.ctx).unbind_device(devid);
    }

    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`: attach device `devid` to `pt_id`
    /// (an IOAS or a HWPT); returns the HWPT id to write back. Attaching an
    /// attached device replaces its page table, as VFIO does.
    ///
    /// # Errors
    ///
    /// `ENOENT` for an unknown id, `EINVAL` for an object of another type;
    /// `EADDRINUSE` when the IOAS has mappings (or allowed ranges) where
    /// the device reserves IOVA or where the domain cannot reach, or
    /// mappings not aligned to its pages; `EFAULT` when a mapping cannot be
    /// pinned into the new domain.
    pub fn attach(&self, devid: u32, pt_id: u32) -> Result<u32, Errno> {
        lock(&self.ctx).attach(devid, pt_id)
    }

    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
    pub fn detach(&self, devid: u32) {
        lock(&self.ctx).detach(devid);
    }

    /// The DMA view of device `devid` (none while detached). It follows the
    /// device: after a detach or replace, DMA faults or goes to the new
    /// page table; after unbind it faults for good, even when a later
    /// device gets the same id.
    pub fn dma_space(&self, devid: u32) -> Option<Arc<dyn DmaSpace>> {
        let bind = lock(&self.ctx).attached(devid)?;
        Some(Arc::new(iommufd::DeviceDma { ctx: Arc::clone(&self.ctx), devid, bind }))
    }

    /// A group joined this context as its container
    /// (`VFIO_GROUP_SET_CONTAINER` with a `/dev/iommu` fd): the kernel's
    /// `iommufd_vfio_compat_ioas_create` makes the compatibility IOAS, the
    /// one the container calls act on, unless it exists. Returns its id; a
    /// device of that group opened later is bound and attached to it.
    pub fn compat_ioas_create(&self) -> u32 {
        lock(&self.ctx).compat_ioas_create()
    }

    /// The compatibility IOAS a group-path device attaches to when it is
    /// opened (`iommufd_vfio_compat_ioas_get_id`).
    ///
    /// # Errors
    ///
    /// `ENODEV` when there is none (the program destroyed it, or cleared
    /// it with `IOMMU_VFIO_IOAS`): the device open fails with it.
    pub fn compat_ioas_id(&self) -> Result<u32, Errno> {
        lock(&self.ctx).compat_ioas_id()
    }
}
