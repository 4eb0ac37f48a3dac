//! "Physical memory": memfd-backed storage for device memory.
//!
//! A [`PhysMemory`] is one memfd holding `len` bytes at file offset `base`
//! (the file is sparse before that). A physical address in this system is a
//! file offset of such a memfd, and a PFN is that offset divided by the page
//! size. Every page of `[base, base+len)` is allocated in the page cache when
//! the memory is created: userfaultfd MINOR faults fire only for pages that
//! exist in the page cache, and a hole would be read straight through,
//! bypassing the fault handler.
//!
//! This type is the one place that answers "which memfd and file offset hold
//! this physical address"; nothing above `mm` should need to know.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FallocateFlags, MemfdFlags};
use rustix::io::Errno;

use page::{PhysAddr, PAGE_SIZE};

use crate::{budget, MmError};

/// memfd-backed storage of `len` bytes at physical (file) address `base`.
#[derive(Debug)]
pub struct PhysMemory {
    fd: OwnedFd,
    name: String,
    base: PhysAddr,
    len: u64,
}

impl PhysMemory {
    /// Creates the memfd named `name`, sized to `base + len`, and populates
    /// every page of `[base, base + len)`. Before anything is created, `len`
    /// is checked against the memory available (see [`crate::budget`]).
    ///
    /// # Errors
    ///
    /// `EINVAL` if `base` or `len` is not page aligned or `len` is 0, or the
    /// end overflows; `ENOMEM` ([`MmError::NoMemory`]) if `len` is more than
    /// the machine has available; otherwise the errno of `memfd_create`,
    /// `ftruncate` or `fallocate` (e.g. `ENOSPC`/`ENOMEM` when the memory
    /// went elsewhere meanwhile).
    pub fn new(name: &str, base: PhysAddr, len: u64) -> Result<Self, MmError> {
        let end = base.0.checked_add(len).ok_or(MmError::Invalid("physical range overflows"))?;
        if len == 0 || !base.is_page_aligned() || len % PAGE_SIZE != 0 {
            return Err(MmError::Invalid("physical memory must be non-empty and page aligned"));
        }
        budget::check_budget(len, budget::memory_budget())?;
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC).map_err(MmError::sys("memfd_create"))?;
        rustix::fs::ftruncate(&fd, end).map_err(MmError::sys("ftruncate"))?;
        rustix::fs::fallocate(&fd, FallocateFlags::empty(), base.0, len).map_err(MmError::sys("fallocate"))?;
        Ok(Self { fd, name: name.to_owned(), base, len })
    }

    /// Adopts a memfd that another process created and populated (received
    /// with `SCM_RIGHTS`): `[base, base + len)` are its pages. Nothing is
    /// allocated or populated here; the creator did that.
    ///
    /// # Errors
    ///
    /// `EINVAL` if `base` or `len` is not page aligned, `len` is 0, the end
    /// overflows, or the file is shorter than `base + len` (`fstat`'s
    /// errno if it cannot be asked).
    pub fn from_fd(fd: OwnedFd, name: &str, base: PhysAddr, len: u64) -> Result<Self, MmError> {
        let end = base.0.checked_add(len).ok_or(MmError::Invalid("physical range overflows"))?;
        if len == 0 || !base.is_page_aligned() || len % PAGE_SIZE != 0 {
            return Err(MmError::Invalid("physical memory must be non-empty and page aligned"));
        }
        let size = rustix::fs::fstat(&fd).map_err(MmError::sys("fstat"))?.st_size;
        if u64::try_from(size).map_or(true, |s| s < end) {
            return Err(MmError::Invalid("memory file is shorter than the range it holds"));
        }
        Ok(Self { fd, name: name.to_owned(), base, len })
    }

    /// The memfd's name (shown as `/memfd:<name>` in `/proc/self/maps`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// First physical address held.
    pub fn base(&self) -> PhysAddr {
        self.base
    }

    /// Number of bytes held.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Never empty (creation refuses 0); present for API completeness.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `[paddr, paddr + len)` lies inside this memory.
    pub fn contains(&self, paddr: PhysAddr, len: u64) -> bool {
        paddr >= self.base && paddr.0.checked_add(len).is_some_and(|end| end <= self.base.0 + self.len)
    }

    /// The memfd and file offset that hold physical address `paddr`.
    pub fn locate(&self, paddr: PhysAddr) -> (BorrowedFd<'_>, u64) {
        (self.fd.as_fd(), paddr.0)
    }

    /// Reads bytes at a physical address through the file (not through any
    /// mapping, so it never faults).
    ///
    /// # Errors
    ///
    /// `EINVAL` when the range is outside this memory; else the errno of `pread`.
    pub fn read(&self, paddr: PhysAddr, buf: &mut [u8]) -> Result<(), MmError> {
        if !self.contains(paddr, buf.len() as u64) {
            return Err(MmError::Invalid("read outside physical memory"));
        }
        let mut done = 0;
        while done < buf.len() {
            let n =
                rustix::io::pread(&self.fd, &mut buf[done..], paddr.0 + done as u64).map_err(MmError::sys("pread"))?;
            if n == 0 {
                return Err(MmError::Sys { call: "pread", errno: Errno::IO });
            }
            done += n;
        }
        Ok(())
    }

    /// Writes bytes at a physical address through the file.
    ///
    /// # Errors
    ///
    /// `EINVAL` when the range is outside this memory; else the errno of `pwrite`.
    pub fn write(&self, paddr: PhysAddr, data: &[u8]) -> Result<(), MmError> {
        if !self.contains(paddr, data.len() as u64) {
            return Err(MmError::Invalid("write outside physical memory"));
        }
        let mut done = 0;
        while done < data.len() {
            let n =
                rustix::io::pwrite(&self.fd, &data[done..], paddr.0 + done as u64).map_err(MmError::sys("pwrite"))?;
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memfds of this process whose name contains `name`.
    fn memfds_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().contains(name))
            .count()
    }

    #[test]
    fn memory_beyond_what_is_available_is_refused_before_a_memfd_exists() {
        // 1 TiB: more than any machine these tests run on has available.
        let name = format!("phys-budget-test-{}", std::process::id());
        let e = PhysMemory::new(&name, PhysAddr(0), 1 << 40).unwrap_err();
        assert_eq!(e.errno(), Errno::NOMEM, "{e}");
        assert!(e.to_string().starts_with("need 1 TiB but only "), "{e}");
        assert_eq!(memfds_named(&name), 0);
        // The same name at a size that fits is created (so the count above
        // would have seen it).
        let small = PhysMemory::new(&name, PhysAddr(0), PAGE_SIZE).unwrap();
        assert_eq!(memfds_named(&name), 1);
        drop(small);
    }
}
