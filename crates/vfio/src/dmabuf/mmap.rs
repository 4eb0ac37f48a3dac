//! CPU mappings of VFIO buffers: the exporter's mmap of an explicit buffer
//! fd, and the mapping both kinds of buffer end in.
//!
//! Analogous to Linux's `vfio_pci_dma_buf_mmap()` (the `dma_buf_ops.mmap` of
//! `vfio_pci_dmabuf.c`, series v4 08/10) and to the VMA set-up shared with
//! `vfio_pci_core_mmap()`; spec §4.5.
//!
//! Where the mapping is finally made is a [`MapTarget`]: an address space of
//! this process ([`Local`]), or another process that maps the window itself
//! (`crate::remote`). Every check and the buffer come first, the same for
//! both.

use std::sync::Arc;

use dmabuf::{BufOffset, DmaBuf, PhysVec, Status, VmArea};
use mm::{AddressSpace, MapPiece, MapRequest, MappingId, PhysMemory};
use page::{PhysAddr, VirtAddr};
use rustix::io::Errno;

use super::fault::{BarVma, ZapHandle};
use super::VfioDmaBuf;
use crate::error::VfioError;

/// Where a BAR mapping is made, once every check has passed and the buffer
/// exists: the last step of `mmap(2)`, after the driver's.
pub(crate) trait MapTarget {
    /// What a successful mapping gives back.
    type Mapped;

    /// The address space whose exact-address check (`MAP_FIXED_NOREPLACE`)
    /// `mmap(2)` makes before the driver; `None` when the process that maps
    /// makes it itself.
    fn aspace(&self) -> Option<&AddressSpace>;

    /// The handle a revoke zaps the new mapping through.
    fn zap_handle(&mut self) -> ZapHandle;

    /// Makes the mapping of `window`, whose operations `ops` are already
    /// registered with the buffer.
    ///
    /// # Errors
    ///
    /// What creating the mapping returns (`EEXIST`, `ENOMEM`).
    fn map(self, ops: Arc<BarVma>, window: Window) -> Result<Self::Mapped, VfioError>;
}

/// One window of a buffer, ready to be mapped.
#[derive(Debug)]
pub(crate) struct Window {
    /// Length in bytes (whole pages).
    pub(crate) len: u64,
    /// The VMA as `mmap(2)` prepared it (exact address, `vm_pgoff`, flags).
    pub(crate) vma: VmArea,
    /// Backing pieces in VA order; their lengths add up to `len`.
    pub(crate) pieces: Vec<MapPiece>,
    /// Path column of the maps view.
    pub(crate) path: String,
    /// Inode column of the maps view: the buffer's id.
    pub(crate) inode: u64,
    /// A register BAR: every access traps into the operations.
    pub(crate) traps: bool,
}

/// A mapping in an address space of this process.
pub(crate) struct Local<'a> {
    aspace: &'a AddressSpace,
    mapping: Option<MappingId>,
}

impl<'a> Local<'a> {
    pub(crate) fn new(aspace: &'a AddressSpace) -> Self {
        Self { aspace, mapping: None }
    }
}

impl MapTarget for Local<'_> {
    type Mapped = VirtAddr;

    fn aspace(&self) -> Option<&AddressSpace> {
        Some(self.aspace)
    }

    fn zap_handle(&mut self) -> ZapHandle {
        let mapping = *self.mapping.get_or_insert_with(|| self.aspace.new_mapping());
        ZapHandle::Local(self.aspace.mapping_handle(mapping))
    }

    fn map(mut self, ops: Arc<BarVma>, window: Window) -> Result<VirtAddr, VfioError> {
        let mapping = *self.mapping.get_or_insert_with(|| self.aspace.new_mapping());
        // A register BAR's mapping traps every access into its operations.
        let mmio = window.traps.then(|| Arc::clone(&ops) as Arc<dyn mm::VmMmio>);
        Ok(self.aspace.mmap(MapRequest {
            mapping,
            len: window.len,
            vm_pgoff: window.vma.vm_pgoff,
            writable: window.vma.writable,
            pieces: window.pieces,
            ops,
            path: window.path,
            inode: window.inode,
            addr: window.vma.addr,
            mmio,
        })?)
    }
}

/// `vfio_pci_dma_buf_mmap()`: the exporter's checks of an mmap of an explicit
/// buffer fd, then the mapping. The buffer core has already checked the
/// access mode and that the window lies inside the buffer ([`DmaBuf::mmap`],
/// [`DmaBuf::mmap_checks`]).
///
/// # Errors
///
/// As [`dma_buf_mmap_checks`]; then what creating the mapping returns
/// (`EEXIST`, `ENOMEM`).
pub(crate) fn dma_buf_mmap<T: MapTarget>(
    dma_buf: Arc<VfioDmaBuf>,
    buf: &Arc<DmaBuf>,
    target: T,
    vma: &VmArea,
) -> Result<T::Mapped, VfioError> {
    // Lockless status read: "belt-and-braces" early failure only.
    let offset = dma_buf_mmap_checks(buf.status(), vma).map_err(|e| VfioError::new(e, "buffer mmap refused"))?;
    let memattr = dma_buf.memattr();
    let mapped = map_buffer(target, buf, dma_buf, vma, offset)?;
    tracing::debug!(buffer = buf.id(), memattr, "buffer mapped");
    Ok(mapped)
}

/// The checks of `vfio_pci_dma_buf_mmap()`, in the kernel's order; returns
/// the byte offset into the buffer at which the mapping starts (the VMA's
/// `vma_pgoff_adjust` is 0).
///
/// `status` is a lockless ("belt-and-braces") read of the buffer status:
/// best-effort only, because the fault path re-checks it under `resv` and
/// `memory_lock`. It comes before the sharing check, so a private mapping of
/// a revoked buffer is `ENODEV`, not `EINVAL`.
///
/// # Errors
///
/// - `ENODEV`: the buffer is revoked or its device closed.
/// - `EINVAL`: the mapping is not `MAP_SHARED`.
/// - `EINVAL`: the offset does not fit in bytes (the core's window check
///   makes this impossible for a real buffer).
pub(super) fn dma_buf_mmap_checks(status: Status, vma: &VmArea) -> Result<BufOffset, Errno> {
    // vfio_pci_dma_buf_mmap(): best-effort early failure for a revoked buffer.
    if status != Status::Ok {
        return Err(Errno::NODEV);
    }
    // vfio_pci_dma_buf_mmap(): only shared mappings of device memory.
    if !vma.shared {
        return Err(Errno::INVAL);
    }
    // The core checked vm_pgoff + pages <= size >> PAGE_SHIFT, so this fits.
    vma.vm_pgoff.bytes().map(BufOffset).ok_or(Errno::INVAL)
}

/// Creates `vma`, showing `buf` from byte `offset` on, in `target`:
/// registers it with the buffer first (so a revoke finds it before its first
/// fault can be served), then maps the buffer's pieces. The mapping holds
/// the buffer (its `vm_file`) and the exporter's object, typed.
pub(super) fn map_buffer<T: MapTarget>(
    mut target: T,
    buf: &Arc<DmaBuf>,
    dma_buf: Arc<VfioDmaBuf>,
    vma: &VmArea,
    offset: BufOffset,
) -> Result<T::Mapped, VfioError> {
    let pieces = window_pieces(buf.ranges(), &dma_buf.memory, offset, vma.len);
    let ops = BarVma::registered(Arc::clone(buf), dma_buf, target.zap_handle());
    let traps = ops.traps();
    // Linux shows `/dmabuf:<name>`, empty for an unnamed (explicit) buffer.
    let path = format!("/dmabuf:{}", buf.name().unwrap_or_default());
    target.map(ops, Window { len: vma.len, vma: *vma, pieces, path, inode: buf.id(), traps })
}

/// The physical pieces behind bytes `[offset, offset + len)` of a buffer
/// whose ranges are concatenated in order.
///
/// Preconditions: the window lies inside the buffer ([`DmaBuf::mmap`] or
/// the device-fd mmap's plan checked it), whose ranges were validated at
/// export, so no sum below can overflow.
fn window_pieces(ranges: &[PhysVec], memory: &Arc<PhysMemory>, offset: BufOffset, len: u64) -> Vec<MapPiece> {
    let (from, to) = (offset.0, offset.0 + len);
    let mut pieces = Vec::new();
    let mut range_start = 0u64;
    for r in ranges {
        let range_end = range_start + r.len;
        let (s, e) = (from.max(range_start), to.min(range_end));
        if s < e {
            let paddr = PhysAddr(r.paddr.0 + (s - range_start));
            pieces.push(MapPiece { memory: memory.clone(), paddr, len: e - s });
        }
        range_start = range_end;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    use page::{PgOff, PAGE_SHIFT};

    const GIB: u64 = 1 << 30;

    fn vma(vm_pgoff: u64, len: u64, shared: bool) -> VmArea {
        VmArea { addr: None, len, vm_pgoff: PgOff(vm_pgoff), shared, writable: true }
    }

    #[test]
    fn dmabuf_mmap_returns_the_byte_offset_of_the_window() {
        assert_eq!(dma_buf_mmap_checks(Status::Ok, &vma(3, 0x5000, true)), Ok(BufOffset(0x3000)));
        assert_eq!(dma_buf_mmap_checks(Status::Ok, &vma(0, 0x8000, true)), Ok(BufOffset(0)));
    }

    #[test]
    fn dmabuf_mmap_of_a_revoked_buffer_is_enodev_even_when_private() {
        for status in [Status::TempRevoked, Status::PermRevoked] {
            assert_eq!(dma_buf_mmap_checks(status, &vma(0, 0x1000, true)), Err(Errno::NODEV));
            assert_eq!(dma_buf_mmap_checks(status, &vma(0, 0x1000, false)), Err(Errno::NODEV));
        }
    }

    #[test]
    fn dmabuf_mmap_rejects_a_private_mapping() {
        assert_eq!(dma_buf_mmap_checks(Status::Ok, &vma(0, 0x1000, false)), Err(Errno::INVAL));
    }

    #[test]
    fn dmabuf_mmap_serves_offsets_beyond_one_tebibyte() {
        let pgoff = (2 << 40) >> PAGE_SHIFT;
        assert_eq!(dma_buf_mmap_checks(Status::Ok, &vma(pgoff, GIB, true)), Ok(BufOffset(2 << 40)));
    }
}
