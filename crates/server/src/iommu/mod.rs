//! The IOMMU side of VFIO: the legacy Type1 container and the iommufd
//! context, as state machines over raw ioctl arguments, and DMA through
//! their mappings into the memory of the process that made them.
//!
//! The seam the rest of the server uses is fixed here: [`Container`],
//! [`Iommufd`], [`ProcessMemory`], [`DmaSpace`] and [`IoctlOut`].

use std::fmt;
use std::sync::Arc;

use rustix::io::Errno;
use wire::msg::IoctlArg;

/// What an ioctl answers: its return value and the bytes to copy back over
/// the start of its argument (empty for none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoctlOut {
    /// The return value (0 or positive).
    pub ret: i64,
    /// Bytes to copy back over the argument.
    pub out: Vec<u8>,
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
pub struct Container {}

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
    pub fn ioctl(
        &self,
        request: u64,
        arg: &IoctlArg,
        groups: usize,
        caller: Arc<dyn ProcessMemory>,
    ) -> Result<IoctlOut, Errno> {
        let _ = (request, arg, groups, caller);
        Err(Errno::NOTTY)
    }

    /// Whether `VFIO_SET_IOMMU` succeeded (devices may then be opened).
    pub fn iommu_set(&self) -> bool {
        false
    }

    /// The DMA view of devices in this container's groups.
    pub fn dma_space(&self) -> Option<Arc<dyn DmaSpace>> {
        None
    }

    /// The last group left: the IOMMU is unset and every mapping dropped.
    pub fn groups_gone(&self) {}
}

/// An iommufd context (`/dev/iommu`).
#[derive(Debug, Default)]
pub struct Iommufd {}

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
        let _ = (request, arg, caller);
        Err(Errno::NOTTY)
    }

    /// `VFIO_DEVICE_BIND_IOMMUFD` succeeded: a device object joins the
    /// context; returns its id (`out_devid`).
    pub fn bind_device(&self) -> u32 {
        0
    }

    /// The bound device fd closed: detach it and destroy its object.
    pub fn unbind_device(&self, devid: u32) {
        let _ = devid;
    }

    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`: attach device `devid` to `pt_id`
    /// (an IOAS or a HWPT); returns the HWPT id to write back.
    ///
    /// # Errors
    ///
    /// `ENOENT` for an unknown id, `EINVAL` for an object of another type.
    pub fn attach(&self, devid: u32, pt_id: u32) -> Result<u32, Errno> {
        let _ = (devid, pt_id);
        Err(Errno::NOTTY)
    }

    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
    pub fn detach(&self, devid: u32) {
        let _ = devid;
    }

    /// The DMA view of device `devid` (none while detached).
    pub fn dma_space(&self, devid: u32) -> Option<Arc<dyn DmaSpace>> {
        let _ = devid;
        None
    }
}
