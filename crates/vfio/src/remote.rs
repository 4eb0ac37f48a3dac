//! Mappings another process makes: the two mmap paths (device fd and buffer
//! fd) with every check and buffer of the in-process ones, ending in a
//! [`RemoteVma`] instead of a mapping in an address space of this process.
//!
//! A server that owns the devices lends BAR memory to the processes it
//! serves: each of them maps the window itself and serves its own faults.
//! Everything the kernel decides at `mmap(2)` time is decided here, by the
//! same functions as [`DeviceFd::mmap`] and [`crate::mmap_dmabuf`] run
//! (`do_mmap` checks, `vfio_pci_core_mmap()`, the per-mapping buffer of
//! `vfio_pci_core_mmap_prep_dmabuf()`, the buffer core's checks,
//! `vfio_pci_dma_buf_mmap()`); only the last step differs. The mapping is
//! registered on the buffer with the caller's zap target, so revoke and
//! un-revoke reach it exactly as they reach a local one. What `mmap(2)`
//! checks against the caller's own address space (`MAP_FIXED_NOREPLACE`)
//! is left to that process: an exact address in the arguments is ignored.

use std::fmt;
use std::sync::Arc;

use dmabuf::{CpuMapping, DmaBuf, DmaBufFd, PhysVec, VmArea};
use mm::{AddressSpace, MapPiece, VmMmio};
use page::PgOff;

use crate::core::DeviceFd;
use crate::dmabuf::fault::{BarVma, ZapHandle};
use crate::dmabuf::mmap::{dma_buf_mmap, MapTarget, Window};
use crate::do_mmap::{MmapArgs, MAX_LFS_FILESIZE};
use crate::error::VfioError;
use crate::VfioDmaBuf;

/// A BAR mapping made by another process: everything that process needs to
/// create the VMA and serve its faults, and the mapping's registration on
/// the buffer.
///
/// Holding it is holding the VMA: it keeps the buffer alive (the VMA's
/// `vm_file`; for a device-fd mapping that buffer owns the device file), and
/// revokes zap the target it was made with. Dropping it is the VMA going
/// away. Drop it with no lock of the device held: the last reference to the
/// buffer runs its release, which takes `memory_lock`.
pub struct RemoteVma {
    /// The mapping's operations: registered on the buffer, holding it.
    ops: Arc<BarVma>,
    /// Length in bytes (whole pages).
    pub len: u64,
    /// `vm_pgoff` exactly as passed to mmap.
    pub vm_pgoff: PgOff,
    /// The `vm_pgoff` value that corresponds to buffer offset 0 (see
    /// [`crate::VmaGeometry`]).
    pub vma_pgoff_adjust: PgOff,
    /// Mapped writable.
    pub writable: bool,
    /// Backing pieces in VA order; their lengths add up to `len`.
    pub pieces: Vec<MapPiece>,
    /// The buffer's ranges, concatenated in order: what [`crate::find_pfn`]
    /// walks.
    pub ranges: Vec<PhysVec>,
    /// A register BAR: no page is ever mapped, every access traps and goes
    /// through [`RemoteVma::mmio`].
    pub traps: bool,
    /// Path column of the maps view (`/dmabuf:<name>`).
    pub path: String,
    /// Inode column of the maps view: the buffer's id.
    pub inode: u64,
}

impl fmt::Debug for RemoteVma {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteVma")
            .field("ops", &self.ops)
            .field("len", &self.len)
            .field("vm_pgoff", &self.vm_pgoff)
            .field("traps", &self.traps)
            .finish_non_exhaustive()
    }
}

impl RemoteVma {
    /// The buffer the mapping shows.
    pub fn buffer(&self) -> &Arc<DmaBuf> {
        self.ops.vm_file()
    }

    /// The copy a `fork` child gets of this mapping (`dup_mmap()`): the same
    /// window of the same buffer, which it keeps alive too, registered on
    /// the buffer with its own zap target, so revokes reach the child as
    /// they reach the parent.
    pub fn inherit(&self, zap: Arc<dyn CpuMapping>) -> RemoteVma {
        let ops = BarVma::registered(
            Arc::clone(self.ops.vm_file()),
            Arc::clone(self.ops.vm_private_data()),
            ZapHandle::Remote(zap),
        );
        RemoteVma {
            ops,
            len: self.len,
            vm_pgoff: self.vm_pgoff,
            vma_pgoff_adjust: self.vma_pgoff_adjust,
            writable: self.writable,
            pieces: self.pieces.clone(),
            ranges: self.ranges.clone(),
            traps: self.traps,
            path: self.path.clone(),
            inode: self.inode,
        }
    }

    /// The register access of the mapping: the same steps and locks as a
    /// fault of it (see [`mm::VmMmio`]). Refuses every access of a mapping
    /// that does not show registers.
    pub fn mmio(&self) -> &dyn VmMmio {
        self.ops.as_ref()
    }
}

/// The last step of a remote mmap: the window becomes a [`RemoteVma`], and
/// revokes zap it through the caller's target.
struct Remote {
    zap: Arc<dyn CpuMapping>,
}

impl MapTarget for Remote {
    type Mapped = RemoteVma;

    fn aspace(&self) -> Option<&AddressSpace> {
        None
    }

    fn zap_handle(&mut self) -> ZapHandle {
        ZapHandle::Remote(Arc::clone(&self.zap))
    }

    fn map(self, ops: Arc<BarVma>, window: Window) -> Result<RemoteVma, VfioError> {
        Ok(RemoteVma {
            len: window.len,
            vm_pgoff: window.vma.vm_pgoff,
            vma_pgoff_adjust: ops.vma_pgoff_adjust(),
            writable: window.vma.writable,
            pieces: window.pieces,
            ranges: ops.vm_file().ranges().to_vec(),
            traps: window.traps,
            path: window.path,
            inode: window.inode,
            ops,
        })
    }
}

impl DeviceFd {
    /// `mmap(2)` of the device fd by another process: the checks and the
    /// per-mapping buffer of [`DeviceFd::mmap`], with the mapping registered
    /// on that buffer so that every revoke and un-revoke calls `zap.zap()`
    /// (with the new status already set). `args.addr` is ignored (the
    /// mapping process checks its own address space).
    ///
    /// # Errors
    ///
    /// As [`DeviceFd::mmap`], except `EEXIST`.
    pub fn mmap_remote(&self, args: MmapArgs, zap: Arc<dyn CpuMapping>) -> Result<RemoteVma, VfioError> {
        self.device().enter()?;
        crate::core::mmap::device_mmap(self, Remote { zap }, MmapArgs { addr: None, ..args })
    }
}

/// `mmap(2)` of a buffer fd by another process: the checks of
/// [`crate::mmap_dmabuf`] (generic, the buffer core's, the exporter's), with
/// the mapping registered on the buffer so that every revoke and un-revoke
/// calls `zap.zap()`. `args.addr` is ignored.
///
/// # Errors
///
/// As [`crate::mmap_dmabuf`], except `EEXIST`.
pub fn mmap_dmabuf_remote(fd: &DmaBufFd, args: MmapArgs, zap: Arc<dyn CpuMapping>) -> Result<RemoteVma, VfioError> {
    let args = MmapArgs { addr: None, ..args };
    let (vm_pgoff, len) = args.generic_checks(None, MAX_LFS_FILESIZE)?;
    let vma = VmArea { addr: None, len, vm_pgoff, shared: args.shared, writable: args.write };
    let buf = fd.buffer();
    buf.mmap_checks(&vma)?;
    // The exporter's mmap: ours, or none (`dma_buf_mmap_internal()` refuses
    // an exporter without one with EINVAL).
    let dma_buf = VfioDmaBuf::arc_of(buf).ok_or(dmabuf::Error::NoMmap)?;
    dma_buf_mmap(dma_buf, buf, Remote { zap }, &vma)
}
