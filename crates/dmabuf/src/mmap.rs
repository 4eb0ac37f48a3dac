//! CPU mappings of a buffer through its file: the request, the core's checks, and the hand-off
//! to the exporter.
//!
//! Analogous to Linux's `dma_buf_mmap_internal()` (drivers/dma-buf/dma-buf.c), the file's
//! mmap operation, with the file-access check `do_mmap()` (mm/mmap.c) makes before it: here
//! the buffer and its file are one object, so that check is made here too.

use std::sync::Arc;

use mm::AddressSpace;
use page::{PgOff, VirtAddr, PAGE_SIZE};

use crate::{DmaBuf, Error};

/// One `mmap(2)` of a buffer, as the system call has prepared it before the buffer sees it.
///
/// Analogous to the fresh `vm_area_struct` that `do_mmap()` hands a file's mmap: where, how
/// long, at which page offset and with which flags. The length is already rounded up to
/// pages and the generic checks of `mmap(2)` (length, offset overflow, address) are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmArea {
    /// The exact address asked for (`MAP_FIXED_NOREPLACE`), or `None`.
    pub addr: Option<VirtAddr>,
    /// Length in bytes, a non-zero multiple of [`PAGE_SIZE`].
    pub len: u64,
    /// The mmap offset in pages: a page offset into the buffer's concatenated ranges.
    pub vm_pgoff: PgOff,
    /// `MAP_SHARED` (`VM_SHARED`) rather than `MAP_PRIVATE`.
    pub shared: bool,
    /// `PROT_WRITE` (`VM_WRITE`).
    pub writable: bool,
}

impl DmaBuf {
    /// `mmap(2)` of the buffer's file: the access check of `do_mmap()`, the window check of
    /// `dma_buf_mmap_internal()`, then the exporter's [`crate::DmaBufOps::mmap`]. Returns
    /// the mapping's start address.
    ///
    /// # Errors
    ///
    /// Checked in this order:
    /// - `EACCES` ([`Error::MmapAccess`]): the file is write-only (mapping needs read
    ///   access), or the mapping is shared and writable on a read-only file. A private
    ///   writable mapping of a read-only file passes here: it is copy-on-write, so the
    ///   exporter decides.
    /// - `EINVAL` ([`Error::MmapPastEnd`]): the window reaches past the buffer's last page.
    /// - The exporter's errors ([`Error::NoMmap`] for an exporter without mmap).
    pub fn mmap(self: &Arc<Self>, aspace: &AddressSpace, vma: &VmArea) -> Result<VirtAddr, Error> {
        self.mmap_checks(vma)?;
        Arc::clone(&self.ops).mmap(self, aspace, vma)
    }

    /// The checks of [`DmaBuf::mmap`] before the exporter's, for an exporter that maps a
    /// buffer by another route than [`DmaBuf::mmap`] (into another process) and must
    /// refuse exactly what it refuses.
    ///
    /// # Errors
    ///
    /// As [`DmaBuf::mmap`], before the exporter's errors.
    pub fn mmap_checks(&self, vma: &VmArea) -> Result<(), Error> {
        // do_mmap(): a file must be readable to be mapped, and writable for a shared
        // writable mapping.
        if !self.mode.can_read() || (vma.shared && vma.writable && !self.mode.can_write()) {
            return Err(Error::MmapAccess);
        }
        // dma_buf_mmap_internal(): vm_pgoff + vma_pages() > size >> PAGE_SHIFT.
        let buffer_pages = self.size / PAGE_SIZE;
        if vma.vm_pgoff.checked_add(vma.len / PAGE_SIZE).is_none_or(|end| end.0 > buffer_pages) {
            return Err(Error::MmapPastEnd);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Exporter;
    use crate::{AccessMode, ExportInfo, PhysVec, Status};

    /// An eight-page buffer whose file was opened with `mode`.
    fn buffer(mode: AccessMode) -> Arc<DmaBuf> {
        DmaBuf::export(ExportInfo {
            ops: Arc::new(Exporter::default()),
            ranges: vec![PhysVec { paddr: page::PhysAddr(0x10_0000), len: 8 * PAGE_SIZE }],
            name: None,
            mode,
            initial_status: Status::Ok,
        })
        .unwrap_or_else(|e| panic!("export failed: {e}"))
    }

    fn vma(vm_pgoff: u64, pages: u64, shared: bool, writable: bool) -> VmArea {
        VmArea { addr: None, len: pages * PAGE_SIZE, vm_pgoff: PgOff(vm_pgoff), shared, writable }
    }

    #[test]
    fn a_window_inside_the_buffer_passes_to_the_exporter() {
        let buf = buffer(AccessMode::ReadWrite);
        assert_eq!(buf.mmap_checks(&vma(3, 5, true, true)), Ok(()));
        assert_eq!(buf.mmap_checks(&vma(0, 8, true, true)), Ok(()));
    }

    #[test]
    fn shared_write_of_a_read_only_file_is_eacces_before_the_window_check() {
        let buf = buffer(AccessMode::ReadOnly);
        assert_eq!(buf.mmap_checks(&vma(100, 1, true, true)), Err(Error::MmapAccess));
        assert_eq!(buf.mmap_checks(&vma(0, 1, true, false)), Ok(()));
        // A private writable mapping is copy-on-write: the exporter decides.
        assert_eq!(buf.mmap_checks(&vma(0, 1, false, true)), Ok(()));
    }

    #[test]
    fn a_write_only_file_cannot_be_mapped_at_all() {
        let buf = buffer(AccessMode::WriteOnly);
        assert_eq!(buf.mmap_checks(&vma(0, 1, true, false)), Err(Error::MmapAccess));
    }

    #[test]
    fn a_window_past_the_last_page_is_einval() {
        let buf = buffer(AccessMode::ReadWrite);
        assert_eq!(buf.mmap_checks(&vma(4, 5, true, true)), Err(Error::MmapPastEnd));
        assert_eq!(buf.mmap_checks(&vma(8, 1, true, true)), Err(Error::MmapPastEnd));
        assert_eq!(buf.mmap_checks(&vma(u64::MAX, 1, true, true)), Err(Error::MmapPastEnd));
    }

    #[test]
    fn an_exporter_without_mmap_refuses_with_einval() {
        let aspace = AddressSpace::new().unwrap_or_else(|e| panic!("no address space: {e}"));
        let buf = buffer(AccessMode::ReadWrite);
        assert_eq!(buf.mmap(&aspace, &vma(0, 1, true, true)).map_err(|e| e.errno()), Err(rustix::io::Errno::INVAL));
    }
}
