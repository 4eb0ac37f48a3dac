//! Status words one process writes and others only read: a small sealed
//! memfd of 32-bit slots.
//!
//! The writer ([`StatusPage`]) creates the memfd, maps it shared and
//! writable, then seals it with `F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK |
//! F_SEAL_GROW | F_SEAL_SEAL`: its own mapping keeps writing, while nobody
//! who receives the fd can `write` it, map it writable (`mmap` and
//! `mprotect` answer `EPERM`), resize it, or add or remove seals. A
//! reader ([`StatusView`]) maps it read-only and may close the fd at once.
//!
//! Each slot is an `AtomicU32`: a store by the writer is seen by every
//! reader's next load, with no system call on either side.
//!
//! # Safety
//!
//! Both types own one shared mapping of the whole file and never hand out
//! a reference into it: every access is an atomic load or store through a
//! raw pointer to a 4-byte aligned slot inside the mapping. The file's size
//! is checked against the mapping before it is made and is sealed, so no
//! access can fall beyond its end.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use page::PAGE_SIZE;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::MmError;

/// Bytes of the file holding `slots` slots: whole pages.
fn file_len(slots: usize) -> Option<usize> {
    let bytes = slots.checked_mul(4)?;
    let pages = bytes.checked_add(PAGE_SIZE as usize - 1)? / PAGE_SIZE as usize;
    Some(pages.max(1) * PAGE_SIZE as usize)
}

/// One shared mapping of a status file, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    base: NonNull<AtomicU32>,
    slots: usize,
    len: usize,
}

// SAFETY: the mapping is process-wide memory reached only through atomics;
// moving or sharing the owner between threads changes nothing about it.
unsafe impl Send for Mapping {}
// SAFETY: as above: every access is an atomic operation.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, slots: usize, writable: bool) -> Result<Self, MmError> {
        let len = file_len(slots).ok_or(MmError::Invalid("too many status slots"))?;
        let size = rustix::fs::fstat(fd).map_err(MmError::sys("fstat"))?.st_size;
        if u64::try_from(size).map_or(true, |s| s < len as u64) {
            return Err(MmError::Invalid("status file shorter than its slots"));
        }
        let prot = if writable { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
        // SAFETY: a new shared mapping at an address the kernel picks, of a
        // file at least `len` bytes long (checked above, and sealed against
        // shrinking before any other process sees it): it overlaps nothing
        // of ours and every byte of it is backed.
        let p = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0) }
            .map_err(MmError::sys("mmap"))?;
        let base = NonNull::new(p.cast::<AtomicU32>()).ok_or(MmError::Invalid("mmap returned NULL"))?;
        Ok(Self { base, slots, len })
    }

    fn slot(&self, slot: usize) -> Option<&AtomicU32> {
        // SAFETY: `slot < slots` and `slots * 4 <= len`, so the pointer is a
        // 4-byte aligned (page-aligned base) word inside our live mapping;
        // an `AtomicU32` has the layout of a `u32` and may alias memory
        // another process changes, since every access is atomic.
        (slot < self.slots).then(|| unsafe { &*self.base.as_ptr().add(slot) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and no reference into it outlives us
        // (`slot` borrows `self`).
        if let Err(e) = unsafe { rustix::mm::munmap(self.base.as_ptr().cast::<c_void>(), self.len) } {
            tracing::error!(%e, "munmap of a status page failed");
        }
    }
}

/// The writer's side: the sealed memfd and a writable mapping of it.
#[derive(Debug)]
pub struct StatusPage {
    fd: OwnedFd,
    map: Mapping,
}

impl StatusPage {
    /// Creates a status file named `name` with `slots` slots, all 0, mapped
    /// writable here and sealed against every other writer.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a count whose size overflows; the errno of
    /// `memfd_create`, `ftruncate`, `mmap` or `F_ADD_SEALS` otherwise.
    pub fn new(name: &str, slots: usize) -> Result<Self, MmError> {
        let len = file_len(slots).ok_or(MmError::Invalid("too many status slots"))?;
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .map_err(MmError::sys("memfd_create"))?;
        rustix::fs::ftruncate(&fd, len as u64).map_err(MmError::sys("ftruncate"))?;
        // Mapped writable before the seal: F_SEAL_FUTURE_WRITE lets an
        // existing writable mapping go on writing, and refuses every new one.
        let map = Mapping::new(fd.as_fd(), slots, true)?;
        let seals = SealFlags::FUTURE_WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
        rustix::fs::fcntl_add_seals(&fd, seals).map_err(MmError::sys("fcntl(F_ADD_SEALS)"))?;
        Ok(Self { fd, map })
    }

    /// How many slots it has.
    pub fn slots(&self) -> usize {
        self.map.slots
    }

    /// The sealed file, to send to a reader.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Stores `value` in `slot` (release: what the writer did before is
    /// visible to a reader that loads it). A slot out of range is ignored.
    pub fn set(&self, slot: usize, value: u32) {
        if let Some(s) = self.map.slot(slot) {
            s.store(value, Ordering::Release);
        }
    }

    /// The value of `slot` (0 out of range).
    pub fn get(&self, slot: usize) -> u32 {
        self.map.slot(slot).map_or(0, |s| s.load(Ordering::Acquire))
    }
}

/// The reader's side: a read-only mapping of a status file; the fd is
/// not kept.
#[derive(Debug)]
pub struct StatusView {
    map: Mapping,
}

impl StatusView {
    /// Maps the status file `fd` of `slots` slots read-only. The caller
    /// may close `fd` afterwards.
    ///
    /// # Errors
    ///
    /// `EINVAL` when the file is shorter than `slots` slots need; the errno
    /// of `fstat` or `mmap` otherwise.
    pub fn map(fd: BorrowedFd<'_>, slots: usize) -> Result<Self, MmError> {
        Ok(Self { map: Mapping::new(fd, slots, false)? })
    }

    /// How many slots it has.
    pub fn slots(&self) -> usize {
        self.map.slots
    }

    /// The value of `slot` (acquire), or `None` out of range.
    pub fn get(&self, slot: usize) -> Option<u32> {
        self.map.slot(slot).map(|s| s.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_the_writer_s_stores_and_cannot_write_resize_or_reseal() {
        let page = StatusPage::new("status-test", 100).unwrap();
        let view = StatusView::map(page.fd(), 100).unwrap();
        assert_eq!(view.get(7), Some(0));
        page.set(7, 0x2b);
        assert_eq!(view.get(7), Some(0x2b));
        assert_eq!(view.get(100), None);
        let fd = page.fd();
        // SAFETY: a fresh mapping at a kernel-chosen address; it fails.
        let rw = unsafe {
            rustix::mm::mmap(std::ptr::null_mut(), 4096, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, fd, 0)
        };
        assert_eq!(rw.unwrap_err(), rustix::io::Errno::PERM);
        assert_eq!(rustix::io::pwrite(fd, b"x", 0).unwrap_err(), rustix::io::Errno::PERM);
        assert_eq!(rustix::fs::ftruncate(fd, 0).unwrap_err(), rustix::io::Errno::PERM);
        assert_eq!(rustix::fs::fcntl_add_seals(fd, SealFlags::WRITE).unwrap_err(), rustix::io::Errno::PERM);
    }
}
