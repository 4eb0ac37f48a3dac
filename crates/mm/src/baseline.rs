//! The kernel's own paths, for benchmarks to measure ours against in the
//! same run: a plain shared mapping of the same memfd (the kernel's page
//! cache faults, fault-around, `MADV_POPULATE_READ`, `MADV_DONTNEED`), and a
//! bare userfaultfd MINOR handler that does nothing but `UFFDIO_CONTINUE`
//! each 4 KiB page — the floor for any userspace fault handler here; and a
//! bare trapped access ([`bare_trap_ns`]), the floor for emulating a register
//! access through a mapping.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use rustix::io::Errno;

use crate::sys::{self, Reservation, UffdMsg};
use page::{PhysAddr, HPAGE_PMD_SIZE, PAGE_SIZE};

use crate::{probe, MmError, PhysMemory};

mod bare_trap;
pub use bare_trap::bare_trap_ns;

/// A plain `MAP_SHARED` mapping of physical memory, served by the kernel
/// alone (no userfaultfd). Unmapped on drop.
#[derive(Debug)]
pub struct PlainMapping {
    start: u64,
    len: u64,
    _memory: Arc<PhysMemory>,
}

impl PlainMapping {
    /// Maps `len` bytes of `memory` from physical address `paddr`, at a
    /// 2 MiB-aligned address when `len` is at least 2 MiB.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a range outside the memory or unaligned; the errno of
    /// `mmap` otherwise.
    pub fn new(memory: &Arc<PhysMemory>, paddr: PhysAddr, len: u64, writable: bool) -> Result<Self, MmError> {
        if len == 0 || len % PAGE_SIZE != 0 || !paddr.is_page_aligned() || !memory.contains(paddr, len) {
            return Err(MmError::Invalid("plain mapping outside its memory or unaligned"));
        }
        let align = if len >= HPAGE_PMD_SIZE { HPAGE_PMD_SIZE } else { PAGE_SIZE };
        let mut mapped = probe::lock_for_update();
        let res = Reservation::new(len as usize, align as usize, None).map_err(MmError::sys("mmap"))?;
        let piece = crate::MapPiece { memory: memory.clone(), paddr, len };
        crate::aspace::map_frames(&res, res.start() as u64, &piece, writable)?;
        let (start, _) = res.into_owned_range();
        // Ours from now on, so the safe probes may touch it.
        mapped.insert(start as u64, start as u64 + len);
        Ok(Self { start: start as u64, len, _memory: memory.clone() })
    }

    /// First byte.
    pub fn addr(&self) -> u64 {
        self.start
    }

    /// Length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Never empty; present for API completeness.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `MADV_POPULATE_READ`: maps every page now.
    ///
    /// # Errors
    ///
    /// The errno of `madvise`.
    pub fn populate_read(&self) -> Result<(), MmError> {
        sys::populate_read_owned(self.start as usize, self.len as usize)
            .map_err(MmError::sys("madvise(MADV_POPULATE_READ)"))
    }

    /// `MADV_COLLAPSE` of every aligned 2 MiB: the page cache behind them
    /// becomes 2 MiB folios (by a copy where it held 4 KiB pages), each
    /// mapped by one PMD; the kernel's own later faults of that memory map
    /// PMDs again. The baseline of PMD-mapped first touch and zap.
    ///
    /// # Errors
    ///
    /// The errno of `madvise` (`EINVAL` where the mapping has no aligned
    /// 2 MiB, e.g. an unaligned file offset).
    pub fn collapse(&self) -> Result<(), MmError> {
        sys::collapse_owned(self.start as usize, self.len as usize).map_err(MmError::sys("madvise(MADV_COLLAPSE)"))
    }

    /// `MADV_DONTNEED`: drops every PTE (the data stays).
    ///
    /// # Errors
    ///
    /// The errno of `madvise`.
    pub fn zap(&self) -> Result<(), MmError> {
        sys::zap_owned(self.start as usize, self.len as usize).map_err(MmError::sys("madvise(MADV_DONTNEED)"))
    }
}

impl Drop for PlainMapping {
    fn drop(&mut self) {
        // Out of the probe registry first (waiting for probes in flight),
        // then back to the kernel.
        let mut mapped = probe::lock_for_update();
        mapped.remove(self.start, self.start + self.len);
        if let Err(e) = sys::unmap_owned(self.start as usize, self.len as usize) {
            tracing::error!(%e, "munmap of a plain mapping failed");
        }
    }
}

/// Frames of `frame_size` for `len` bytes made as before 2 MiB folios:
/// each a sealed memfd sized and populated by `fallocate` alone (4 KiB pages
/// while shmem THP is off), which a fault's collapse then has to copy. The
/// baseline of the creation cost of [`PhysMemory`]'s frames.
///
/// # Errors
///
/// The errno of `memfd_create`, `fcntl`, `ftruncate` or `fallocate`.
pub fn flat_frames(len: u64, frame_size: u64) -> Result<Vec<OwnedFd>, MmError> {
    use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};
    (0..len.div_ceil(frame_size))
        .map(|i| {
            let fd = rustix::fs::memfd_create("bench-flat-frame", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                .map_err(MmError::sys("memfd_create"))?;
            rustix::fs::fcntl_add_seals(&fd, SealFlags::SEAL).map_err(MmError::sys("fcntl(F_ADD_SEALS)"))?;
            let n = frame_size.min(len - i * frame_size);
            rustix::fs::ftruncate(&fd, n).map_err(MmError::sys("ftruncate"))?;
            rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, n).map_err(MmError::sys("fallocate"))?;
            Ok(fd)
        })
        .collect()
}

/// The first-touch time of `len` bytes of `memory` from `paddr` through a
/// bare userfaultfd MINOR handler: one thread, `UFFDIO_CONTINUE` of exactly
/// the faulting 4 KiB page, nothing else. Returns the time of the touch pass
/// and the number of faults served.
///
/// # Errors
///
/// The errno of any setup call; a fault during the touch pass.
pub fn bare_minor_first_touch(memory: &Arc<PhysMemory>, paddr: PhysAddr, len: u64) -> Result<(Duration, u64), MmError> {
    let map = PlainMapping::new(memory, paddr, len, true)?;
    let uffd = sys::userfaultfd_open().map_err(MmError::sys("userfaultfd"))?;
    sys::uffdio_api(uffd.as_fd(), sys::UFFD_FEATURE_MINOR_SHMEM).map_err(MmError::sys("UFFDIO_API"))?;
    sys::uffdio_register_minor(uffd.as_fd(), map.addr(), len).map_err(MmError::sys("UFFDIO_REGISTER"))?;
    let stop = eventfd(0, EventfdFlags::CLOEXEC).map_err(MmError::sys("eventfd"))?;
    let served = std::thread::scope(|scope| -> Result<(Duration, u64), MmError> {
        let handler = scope.spawn(|| minimal_handler(&uffd, &stop));
        let t = Instant::now();
        let touched = probe::touch_pages(map.addr(), len);
        let elapsed = t.elapsed();
        let _ = rustix::io::write(&stop, &1u64.to_ne_bytes());
        let faults = handler.join().unwrap_or(0);
        touched.map_err(|_| MmError::Sys { call: "touch", errno: Errno::FAULT })?;
        Ok((elapsed, faults))
    })?;
    drop(map);
    Ok(served)
}

fn minimal_handler(uffd: &OwnedFd, stop: &OwnedFd) -> u64 {
    let mut msgs = [UffdMsg::default(); 16];
    let mut served = 0;
    loop {
        let mut fds = [PollFd::new(uffd, PollFlags::IN), PollFd::new(stop, PollFlags::IN)];
        if poll(&mut fds, None).is_err() || !fds[1].revents().is_empty() {
            return served;
        }
        let Ok(n) = sys::uffd_read(uffd.as_fd(), &mut msgs) else { continue };
        for m in &msgs[..n] {
            if m.event == sys::UFFD_EVENT_PAGEFAULT {
                let page = m.arg1 & !(PAGE_SIZE - 1);
                let _ = sys::uffdio_continue(uffd.as_fd(), page, PAGE_SIZE);
                let _ = sys::uffdio_wake(uffd.as_fd(), page, PAGE_SIZE);
                served += 1;
            }
        }
    }
}
