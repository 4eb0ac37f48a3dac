//! The checks `mmap(2)` makes on every file mapping before the file's own
//! mmap sees it, shared by device-fd and buffer-fd mappings.
//!
//! Analogous to Linux's `do_mmap()` and `get_unmapped_area()` (mm/mmap.c)
//! and `file_mmap_ok()`. There is no VFS here: the mmap entry points of this
//! crate ([`crate::DeviceFd::mmap`], [`crate::mmap_dmabuf`]) play the system
//! call and run these first.

use dmabuf::{DmaBufFd, VmArea};
use mm::AddressSpace;
use page::{page_align, page_aligned, PgOff, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use rustix::io::Errno;

use crate::error::{fail, VfioError};

/// Arguments of one `mmap(2)` call on a device fd or a buffer fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmapArgs {
    /// Exact address wanted (`MAP_FIXED_NOREPLACE`), or `None`.
    pub addr: Option<u64>,
    /// Length in bytes (rounded up to pages, as mmap(2) does).
    pub len: u64,
    /// `PROT_WRITE` requested (`PROT_READ` is implied).
    pub write: bool,
    /// `MAP_SHARED` (true) or `MAP_PRIVATE` (false).
    pub shared: bool,
    /// File offset in bytes (must be page aligned).
    pub offset: u64,
}

impl MmapArgs {
    /// A read-write shared mapping of `len` bytes at file offset `offset`.
    pub fn shared(offset: u64, len: u64) -> Self {
        Self { addr: None, len, write: true, shared: true, offset }
    }

    /// The checks mmap(2) makes before any driver sees the call
    /// ([`mmap_generic_checks`], `EEXIST` for an exact address that is taken,
    /// [`file_mmap_ok`]); returns `vm_pgoff` and the page-rounded length.
    /// `file_limit` is the largest file offset the file type allows. With no
    /// `aspace` (a mapping another process makes), that process checks the
    /// exact address itself.
    pub(crate) fn generic_checks(
        &self,
        aspace: Option<&AddressSpace>,
        file_limit: u64,
    ) -> Result<(PgOff, u64), VfioError> {
        if !page_aligned(self.offset) {
            return fail(Errno::INVAL, "mmap offset is not page aligned");
        }
        let len = mmap_generic_checks(self.offset, self.len, self.addr)
            .map_err(|e| VfioError::new(e, "mmap refused before the driver"))?;
        if let (Some(a), Some(aspace)) = (self.addr, aspace) {
            aspace.check_free(a, len)?;
        }
        file_mmap_ok(self.offset, len, file_limit)
            .map_err(|e| VfioError::new(e, "mmap window ends past the largest file offset"))?;
        Ok((PgOff::from_bytes(self.offset), len))
    }
}

/// `mmap(2)` of a buffer fd: the generic checks, then the buffer's own
/// ([`dmabuf::DmaBuf::mmap`]: access mode, window) and its exporter's
/// (for a VFIO buffer `vfio_pci_dma_buf_mmap()`, spec §4.5). The mapping
/// shows the concatenated ranges from byte `offset` on.
///
/// # Errors
///
/// `EACCES` for a writable shared mapping of a read-only fd; `EINVAL` for a
/// window past the end, an unaligned offset, a zero length or `MAP_PRIVATE`;
/// `ENODEV` when the buffer is revoked or its device was closed (a
/// best-effort early check: the fault path is authoritative); `EINVAL` for
/// a buffer whose exporter cannot be mapped.
pub fn mmap_dmabuf(aspace: &AddressSpace, fd: &DmaBufFd, args: MmapArgs) -> Result<u64, VfioError> {
    // A buffer fd is a regular-mode file: offsets up to MAX_LFS_FILESIZE.
    let (vm_pgoff, len) = args.generic_checks(Some(aspace), MAX_LFS_FILESIZE)?;
    let vma = VmArea { addr: args.addr.map(VirtAddr), len, vm_pgoff, shared: args.shared, writable: args.write };
    Ok(fd.buffer().mmap(aspace, &vma)?.0)
}

/// `MAX_LFS_FILESIZE`: the largest offset of a regular-mode file such as a
/// buffer fd.
pub(crate) const MAX_LFS_FILESIZE: u64 = i64::MAX as u64;

/// Top of the user address space on x86-64 with 4-level paging
/// (`TASK_SIZE`): no mapping may reach past it.
pub(crate) const TASK_SIZE: u64 = (1 << 47) - PAGE_SIZE;

/// The checks `mmap(2)` makes before it looks at the address space or the
/// file, in the kernel's order (`do_mmap()`, `get_unmapped_area()`): zero
/// length `EINVAL`; the page-rounded length wrapping `ENOMEM`; the page
/// offset plus pages wrapping `EOVERFLOW`; a length beyond `TASK_SIZE`
/// `ENOMEM`; an exact address that is unaligned `EINVAL` or reaches past
/// `TASK_SIZE` `ENOMEM`. Returns the page-rounded length. Next come the
/// `EEXIST` check of an exact address, then [`file_mmap_ok`].
///
/// # Errors
///
/// As listed.
pub(crate) fn mmap_generic_checks(offset: u64, len: u64, addr: Option<u64>) -> Result<u64, Errno> {
    let len = mmap_len_checks(PgOff::from_bytes(offset), len)?;
    if len > TASK_SIZE {
        return Err(Errno::NOMEM);
    }
    if let Some(a) = addr {
        if !page_aligned(a) {
            return Err(Errno::INVAL);
        }
        if a.checked_add(len).is_none_or(|end| end > TASK_SIZE) {
            return Err(Errno::NOMEM);
        }
    }
    Ok(len)
}

/// `file_mmap_ok()`: the file window `[offset, offset + len)` must end
/// within `file_limit`, the largest offset the file type allows (any 64-bit
/// offset for the device fd, `MAX_LFS_FILESIZE` for a buffer fd).
///
/// # Errors
///
/// `EOVERFLOW` past the limit.
pub(crate) fn file_mmap_ok(offset: u64, len: u64, file_limit: u64) -> Result<(), Errno> {
    match offset.checked_add(len) {
        Some(end) if end <= file_limit => Ok(()),
        _ => Err(Errno::OVERFLOW),
    }
}

/// The length checks of `do_mmap()` (mm/mmap.c); returns the page-rounded
/// length. The offset arrives in pages, so its page alignment (`EINVAL` in
/// `mmap(2)`) holds by construction.
///
/// # Errors
///
/// `EINVAL` for length 0, `ENOMEM` for a length that overflows when rounded
/// up to pages, `EOVERFLOW` for a page offset whose end overflows.
pub(crate) fn mmap_len_checks(vm_pgoff: PgOff, len: u64) -> Result<u64, Errno> {
    // do_mmap(): an empty mapping is invalid.
    if len == 0 {
        return Err(Errno::INVAL);
    }
    // do_mmap(): PAGE_ALIGN(len) wrapping to 0 is ENOMEM.
    let len = page_align(len).ok_or(Errno::NOMEM)?;
    // do_mmap(): "offset overflow?" check on pgoff + pages.
    vm_pgoff.checked_add(len >> PAGE_SHIFT).ok_or(Errno::OVERFLOW)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_checks_come_in_the_kernels_order() {
        assert_eq!(mmap_len_checks(PgOff(0), 0), Err(Errno::INVAL));
        assert_eq!(mmap_len_checks(PgOff(0), u64::MAX), Err(Errno::NOMEM));
        assert_eq!(mmap_len_checks(PgOff(u64::MAX), PAGE_SIZE), Err(Errno::OVERFLOW));
        assert_eq!(mmap_len_checks(PgOff(7), 0x1001), Ok(0x2000));
    }

    #[test]
    fn generic_checks_bound_the_length_and_an_exact_address_by_task_size() {
        assert_eq!(mmap_generic_checks(0, TASK_SIZE + PAGE_SIZE, None), Err(Errno::NOMEM));
        assert_eq!(mmap_generic_checks(0, PAGE_SIZE, Some(0x1234)), Err(Errno::INVAL));
        assert_eq!(mmap_generic_checks(0, PAGE_SIZE, Some(TASK_SIZE)), Err(Errno::NOMEM));
        assert_eq!(mmap_generic_checks(0, PAGE_SIZE, Some(TASK_SIZE - PAGE_SIZE)), Ok(PAGE_SIZE));
    }

    #[test]
    fn file_window_must_end_within_the_file_limit() {
        assert_eq!(file_mmap_ok(u64::MAX - 0xfff, 0x2000, u64::MAX), Err(Errno::OVERFLOW));
        assert_eq!(file_mmap_ok(i64::MAX as u64 - 0xfff, 0x2000, i64::MAX as u64), Err(Errno::OVERFLOW));
        assert_eq!(file_mmap_ok(0, 0x2000, i64::MAX as u64), Ok(()));
    }
}
