//! Frames: the fixed-size memfds a [`PhysMemory`](crate::PhysMemory) keeps
//! its pages in, and how one is cut off from every process and restored.
//!
//! A frame is one memfd holding its bytes at their physical address as the
//! file offset (the file is sparse before them, so `/proc/<pid>/maps`
//! shows the physical address, i.e. the mmap offset, as for a single
//! memfd). It is created with `MFD_ALLOW_SEALING` and sealed
//! `F_SEAL_SEAL` at once: nobody who receives it can add `F_SEAL_SHRINK` or
//! `F_SEAL_GROW` later and so block the truncation a cut-off needs.
//!
//! CUT-OFF is the one zap userspace can force on mappings in other
//! processes. The frame's pages are first spliced into pipes (the pipes
//! take references to the page-cache pages, so a store through any mapping
//! that races the truncation lands in a page the pipe holds and is kept),
//! then the file is truncated to 0: the kernel zaps every process's PTEs of
//! the frame before `ftruncate` returns, and any later access is beyond EOF,
//! hence SIGBUS, whatever the process's own fault handler would do.
//!
//! Each aligned 2 MiB of a frame is created as one 2 MiB folio (one page
//! allocated, then `MADV_COLLAPSE` of a temporary mapping: cheaper than
//! allocating 512 pages), so a fault maps it with one PMD at once; where
//! that fails the piece gets 4 KiB pages, counted ([`huge_folio_stats`]).
//!
//! RESTORE regrows the file (`ftruncate`, 2 MiB folios, `fallocate`: populated again, as
//! userfaultfd MINOR faults need) and writes the snapshot back: mappings
//! that still exist in any process work again without a remap (their next
//! fault finds the page in the page cache).
//!
//! While a frame is cut, reads and writes through the memory see and change
//! the snapshot; the first such access turns the pipes into a private copy.
//! Nothing ever writes the file while it is cut (a `pwrite` beyond EOF would
//! regrow it).
//!
//! # Locks
//!
//! `Frame::cut` (a `Mutex`) is held across every file access of its frame:
//! `read`, `write`, `cut_off` and `restore` of that frame are serialized, so
//! a `pwrite` never races a truncation. It is a leaf lock.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, SpliceFlags};

use crate::MmError;

/// Default frame size: one 2 MiB folio, so a frame can be PMD-mapped.
pub const DEFAULT_FRAME_SIZE: u64 = 2 << 20;

/// One frame: its memfd, where its bytes lie in the file, and, while cut,
/// its snapshot.
#[derive(Debug)]
pub(crate) struct Frame {
    fd: OwnedFd,
    /// File offset of the frame's first byte: its physical address (the
    /// file is sparse before it), so that the offset column of
    /// `/proc/<pid>/maps` is the physical address, as for one memfd.
    start: u64,
    len: u64,
    /// Protected by itself; held across every file access (module doc).
    cut: Mutex<Option<Snapshot>>,
}

/// The contents of a cut frame.
#[derive(Debug)]
enum Snapshot {
    /// The frame's own pages, referenced by pipes (read end, bytes in it).
    Piped(Vec<(OwnedFd, usize)>),
    /// A private copy, made at the first read or write while cut.
    Copy(Vec<u8>),
}

impl Frame {
    /// Creates and populates a frame of `len` bytes at file offset `start`,
    /// named `name`.
    pub(crate) fn create(name: &str, start: u64, len: u64) -> Result<Self, MmError> {
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .map_err(MmError::sys("memfd_create"))?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SEAL).map_err(MmError::sys("fcntl(F_ADD_SEALS)"))?;
        grow(fd.as_fd(), start, len)?;
        Ok(Self::adopt(fd, start, len))
    }

    /// A frame another process created (received with `SCM_RIGHTS`).
    pub(crate) fn adopt(fd: OwnedFd, start: u64, len: u64) -> Self {
        Self { fd, start, len, cut: Mutex::new(None) }
    }

    /// File offset of the frame's first byte.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Snapshot>> {
        // Every section leaves the snapshot whole or absent; go on after a panic.
        self.cut.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_cut_off(&self) -> bool {
        self.lock().is_some()
    }

    /// Cuts the frame off (module doc); `between` runs after the pages are
    /// in the pipes and before the truncation (tests race a store there).
    pub(crate) fn cut_off(&self, between: impl FnOnce(BorrowedFd<'_>)) -> Result<bool, MmError> {
        let mut cut = self.lock();
        if cut.is_some() {
            return Ok(false);
        }
        let pipes = self.splice_out()?;
        between(self.fd.as_fd());
        rustix::fs::ftruncate(&self.fd, 0).map_err(MmError::sys("ftruncate"))?;
        *cut = Some(Snapshot::Piped(pipes));
        Ok(true)
    }

    /// The frame's pages, by reference, in as many pipes as it takes.
    fn splice_out(&self) -> Result<Vec<(OwnedFd, usize)>, MmError> {
        let capacity = pipe_max_size();
        let mut pipes = Vec::new();
        let mut off = self.start;
        let end = self.start + self.len;
        while off < end {
            let (rd, wr) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(MmError::sys("pipe2"))?;
            let want = (end - off).min(capacity as u64) as usize;
            let got = rustix::pipe::fcntl_setpipe_size(&wr, want).map_err(MmError::sys("fcntl(F_SETPIPE_SZ)"))?;
            let chunk = want.min(got);
            let mut filled = 0;
            while filled < chunk {
                let mut at = off + filled as u64;
                let n = rustix::pipe::splice(&self.fd, Some(&mut at), &wr, None, chunk - filled, SpliceFlags::NONBLOCK)
                    .map_err(MmError::sys("splice"))?;
                if n == 0 {
                    return Err(MmError::Sys { call: "splice", errno: Errno::IO });
                }
                filled += n;
            }
            pipes.push((rd, chunk));
            off += chunk as u64;
        }
        Ok(pipes)
    }

    /// Regrows the frame and writes its snapshot back; `false` if it was not cut.
    pub(crate) fn restore(&self) -> Result<bool, MmError> {
        let mut cut = self.lock();
        let Some(snapshot) = cut.take() else { return Ok(false) };
        if let Err(e) = grow(self.fd.as_fd(), self.start, self.len) {
            // Keep the frame cut (and the data) rather than half restored.
            let _ = rustix::fs::ftruncate(&self.fd, 0);
            *cut = Some(snapshot);
            return Err(e);
        }
        let copy = match snapshot {
            Snapshot::Copy(copy) => copy,
            Snapshot::Piped(pipes) => drain(pipes, self.len)?,
        };
        pwrite_all(&self.fd, &copy, self.start)?;
        Ok(true)
    }

    /// Reads `buf.len()` bytes at `off` from the frame's start (file or snapshot).
    pub(crate) fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), MmError> {
        let mut cut = self.lock();
        if let Some(copy) = private_copy(&mut cut, self.len)? {
            buf.copy_from_slice(&copy[off as usize..off as usize + buf.len()]);
            return Ok(());
        }
        let mut done = 0;
        while done < buf.len() {
            let at = self.start + off + done as u64;
            let n = rustix::io::pread(&self.fd, &mut buf[done..], at).map_err(MmError::sys("pread"))?;
            if n == 0 {
                return Err(MmError::Sys { call: "pread", errno: Errno::IO });
            }
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at `off` from the frame's start (file or snapshot).
    pub(crate) fn write(&self, off: u64, data: &[u8]) -> Result<(), MmError> {
        let mut cut = self.lock();
        if let Some(copy) = private_copy(&mut cut, self.len)? {
            copy[off as usize..off as usize + data.len()].copy_from_slice(data);
            return Ok(());
        }
        pwrite_all(&self.fd, data, self.start + off)
    }
}

/// How the aligned 2 MiB pieces of frames got their page cache (see
/// [`huge_folio_stats`]).
static HUGE_FOLIOS: AtomicU64 = AtomicU64::new(0);
static HUGE_FOLIO_FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// Counts of the aligned 2 MiB pieces of frames created or restored in this
/// process: how many got one 2 MiB folio, and how many fell back to 4 KiB
/// pages (a failed collapse: memory pressure, THP disabled for the process).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HugeFolioStats {
    /// Pieces now held by one 2 MiB folio each.
    pub huge: u64,
    /// Pieces populated with 4 KiB pages instead.
    pub fallback: u64,
}

/// The counts so far (process-wide).
pub fn huge_folio_stats() -> HugeFolioStats {
    HugeFolioStats { huge: HUGE_FOLIOS.load(Ordering::Relaxed), fallback: HUGE_FOLIO_FALLBACKS.load(Ordering::Relaxed) }
}

/// Gives each aligned 2 MiB of the frame `[start, start + len)` of `fd` (a
/// file sized but not yet populated there) one 2 MiB folio, so that faults
/// can map it with one PMD at once: a fault's collapse over 4 KiB pages
/// would copy them (milliseconds per 2 MiB). A piece that cannot have one
/// is left to the `fallocate` that follows, which fills every hole with
/// 4 KiB pages; counted either way.
fn build_huge_folios(fd: BorrowedFd<'_>, start: u64, len: u64) {
    const HUGE: u64 = 2 << 20;
    let mut off = start.next_multiple_of(HUGE);
    while off + HUGE <= start + len {
        match crate::sys::build_huge_folio(fd, off) {
            Ok(()) => HUGE_FOLIOS.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!(offset = off, %e, "no 2 MiB folio for a frame piece; 4 KiB pages instead");
                HUGE_FOLIO_FALLBACKS.fetch_add(1, Ordering::Relaxed)
            }
        };
        off += HUGE;
    }
}

/// The snapshot as a private copy (made from the pipes on first use), or
/// `None` when the frame is not cut.
fn private_copy(cut: &mut Option<Snapshot>, len: u64) -> Result<Option<&mut Vec<u8>>, MmError> {
    if let Some(Snapshot::Piped(_)) = cut {
        let Some(Snapshot::Piped(pipes)) = cut.take() else { unreachable!() };
        *cut = Some(Snapshot::Copy(drain(pipes, len)?));
    }
    Ok(match cut {
        Some(Snapshot::Copy(copy)) => Some(copy),
        _ => None,
    })
}

/// Reads every pipe to its end: the frame's bytes in order.
fn drain(pipes: Vec<(OwnedFd, usize)>, len: u64) -> Result<Vec<u8>, MmError> {
    let mut copy = vec![0u8; len as usize];
    let mut at = 0;
    for (rd, n) in pipes {
        let end = at + n;
        while at < end {
            let got = rustix::io::read(&rd, &mut copy[at..end]).map_err(MmError::sys("read(pipe)"))?;
            if got == 0 {
                return Err(MmError::Sys { call: "read(pipe)", errno: Errno::IO });
            }
            at += got;
        }
    }
    Ok(copy)
}

fn pwrite_all(fd: &OwnedFd, data: &[u8], off: u64) -> Result<(), MmError> {
    let mut done = 0;
    while done < data.len() {
        done += rustix::io::pwrite(fd, &data[done..], off + done as u64).map_err(MmError::sys("pwrite"))?;
    }
    Ok(())
}

/// Sizes a frame's file to end at `start + len` and populates
/// `[start, start + len)`, each aligned 2 MiB as one folio where it can be:
/// at creation, and when a cut frame is restored.
fn grow(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), MmError> {
    rustix::fs::ftruncate(fd, start + len).map_err(MmError::sys("ftruncate"))?;
    build_huge_folios(fd, start, len);
    rustix::fs::fallocate(fd, FallocateFlags::empty(), start, len).map_err(MmError::sys("fallocate"))
}

/// The most a pipe may hold for us (`/proc/sys/fs/pipe-max-size`, read
/// once: a cut-off runs on a revoke's path); the default pipe size when it
/// cannot be read.
fn pipe_max_size() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|&n| n >= page::PAGE_SIZE as usize)
            .unwrap_or(16 * page::PAGE_SIZE as usize)
    })
}

/// Checks a frame size: a power of two and a page multiple.
///
/// # Errors
///
/// `EINVAL` otherwise.
pub fn check_frame_size(frame_size: u64) -> Result<(), MmError> {
    if !frame_size.is_power_of_two() || frame_size % page::PAGE_SIZE != 0 {
        return Err(MmError::Invalid("frame size must be a power of two and a page multiple"));
    }
    Ok(())
}
