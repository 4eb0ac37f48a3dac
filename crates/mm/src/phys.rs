//! "Physical memory": memfd-backed storage for device memory.
//!
//! A [`PhysMemory`] holds `len` bytes at physical address `base`, in FRAMES
//! of a fixed power-of-two size (default 2 MiB, one PMD folio): frame `i`
//! is a memfd of its own holding `[base + i * frame_size, ...)` at those
//! file offsets, sparse before them (see [`crate::frames`], which also cuts a frame off from every
//! process and restores it). A PFN is a physical address divided by the page
//! size. Every page is allocated in the page cache when the memory is
//! created: userfaultfd MINOR faults fire only for pages that exist in the
//! page cache, and a hole would be read straight through, bypassing the
//! fault handler.
//!
//! A process that is sent some frames holds a SPARSE memory
//! ([`PhysMemory::from_frames`]): only those frames, and only until it has
//! mapped them.
//!
//! This type is the one place that answers "which memfd and file offset hold
//! this physical address"; nothing above `mm` should need to know.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use page::{PhysAddr, PAGE_SIZE};

use crate::frames::{self, Frame, DEFAULT_FRAME_SIZE};
use crate::{budget, MmError};

/// Storage of `len` bytes at physical address `base`, in frames of
/// `frame_size` bytes, each its own memfd (see [`crate::frames`]).
#[derive(Debug)]
pub struct PhysMemory {
    name: String,
    base: PhysAddr,
    len: u64,
    frame_size: u64,
    /// Frame `i` holds `[base + i * frame_size, ...)` at those file offsets;
    /// `None` for a frame this process was not given (or no longer holds).
    frames: Vec<Option<Frame>>,
    /// How many frames are cut off now, so that callers can skip looking
    /// for them in the common case of none.
    cut_frames: AtomicUsize,
}

impl PhysMemory {
    /// [`PhysMemory::with_frames`] with the default 2 MiB frame.
    ///
    /// # Errors
    ///
    /// As [`PhysMemory::with_frames`].
    pub fn new(name: &str, base: PhysAddr, len: u64) -> Result<Self, MmError> {
        Self::with_frames(name, base, len, DEFAULT_FRAME_SIZE)
    }

    /// Creates the frames of `[base, base + len)`, each a memfd named
    /// `<name>.<index>` holding `frame_size` bytes at their physical address (a memory smaller than that is
    /// one frame of its own size), and populates every page. Before anything
    /// is created, `len` is checked against the memory available (see
    /// [`crate::budget`]).
    ///
    /// # Errors
    ///
    /// `EINVAL` if `base` or `len` is not page aligned or `len` is 0, the end
    /// overflows, or `frame_size` is not a power-of-two page multiple;
    /// `ENOMEM` ([`MmError::NoMemory`]) if `len` is more than the machine
    /// has available; otherwise the errno of `memfd_create`, `fcntl`,
    /// `ftruncate` or `fallocate` (e.g. `ENOSPC`/`ENOMEM` when the memory
    /// went elsewhere meanwhile).
    pub fn with_frames(name: &str, base: PhysAddr, len: u64, frame_size: u64) -> Result<Self, MmError> {
        let frame_size = geometry(base, len, frame_size)?;
        budget::check_budget(len, budget::memory_budget())?;
        let count = len.div_ceil(frame_size);
        let frames = (0..count)
            .map(|i| {
                let start = base.0 + i * frame_size;
                Frame::create(&frame_name(name, i as usize), start, frame_size.min(len - i * frame_size)).map(Some)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { name: name.to_owned(), base, len, frame_size, frames, cut_frames: AtomicUsize::new(0) })
    }

    /// The process side: the memory as another process created it, holding
    /// only the frames it was sent (`(index, memfd)`); an access to any
    /// other frame is refused. Nothing is allocated or populated here.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a bad geometry (as [`PhysMemory::with_frames`]), a frame
    /// index past the end or given twice, or a file shorter than its frame
    /// (`fstat`'s errno if it cannot be asked).
    pub fn from_frames(
        name: &str,
        base: PhysAddr,
        len: u64,
        frame_size: u64,
        frames: Vec<(usize, OwnedFd)>,
    ) -> Result<Self, MmError> {
        let frame_size = geometry(base, len, frame_size)?;
        let mut mem =
            Self { name: name.to_owned(), base, len, frame_size, frames: Vec::new(), cut_frames: AtomicUsize::new(0) };
        mem.frames.resize_with(mem.frame_count(), || None);
        for (i, fd) in frames {
            let flen = mem.frame_len(i).ok_or(MmError::Invalid("frame index past the memory"))?;
            let size = rustix::fs::fstat(&fd).map_err(MmError::sys("fstat"))?.st_size;
            let start = base.0 + i as u64 * frame_size;
            if u64::try_from(size).map_or(true, |s| s < start + flen) {
                return Err(MmError::Invalid("frame file is shorter than its frame"));
            }
            if mem.frames[i].replace(Frame::adopt(fd, start, flen)).is_some() {
                return Err(MmError::Invalid("frame given twice"));
            }
        }
        Ok(mem)
    }

    /// The same memory (name and geometry) holding no frame at all: what a
    /// mapping remembers of its backing once it is mapped (a VMA keeps the
    /// file mapped, not a descriptor).
    pub fn detached(&self) -> Self {
        let mut frames = Vec::new();
        frames.resize_with(self.frames.len(), || None);
        Self {
            name: self.name.clone(),
            base: self.base,
            len: self.len,
            frame_size: self.frame_size,
            frames,
            cut_frames: AtomicUsize::new(0),
        }
    }

    /// The memfd name prefix (frame `i` is `/memfd:<name>.<i>` in `/proc/self/maps`).
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

    /// Bytes per frame (the last frame may be shorter).
    pub fn frame_size(&self) -> u64 {
        self.frame_size
    }

    /// Number of frames, held or not.
    pub fn frame_count(&self) -> usize {
        self.len.div_ceil(self.frame_size) as usize
    }

    /// The frame holding `paddr` (which must lie in this memory).
    pub fn frame_index(&self, paddr: PhysAddr) -> usize {
        debug_assert!(self.contains(paddr, 0));
        ((paddr.0 - self.base.0) / self.frame_size) as usize
    }

    /// The frames that hold some byte of `[paddr, paddr + len)` (clipped to the memory).
    pub fn frames_of(&self, paddr: PhysAddr, len: u64) -> std::ops::Range<usize> {
        let end = paddr.0.saturating_add(len).min(self.base.0 + self.len);
        let start = paddr.0.max(self.base.0);
        if start >= end {
            return 0..0;
        }
        self.frame_index(PhysAddr(start))..self.frame_index(PhysAddr(end - 1)) + 1
    }

    fn frame_len(&self, i: usize) -> Option<u64> {
        (i < self.frame_count()).then(|| self.frame_size.min(self.len - i as u64 * self.frame_size))
    }

    fn frame(&self, i: usize) -> Option<&Frame> {
        self.frames.get(i).and_then(Option::as_ref)
    }

    /// Frame `i`'s memfd, if this memory holds it.
    pub fn frame_fd(&self, i: usize) -> Option<BorrowedFd<'_>> {
        self.frame(i).map(Frame::fd)
    }

    /// Whether `[paddr, paddr + len)` lies inside this memory.
    pub fn contains(&self, paddr: PhysAddr, len: u64) -> bool {
        paddr >= self.base && paddr.0.checked_add(len).is_some_and(|end| end <= self.base.0 + self.len)
    }

    /// The frame memfd holding physical address `paddr`, the offset in that
    /// file (the physical address itself: a frame's file is sparse before
    /// its bytes), and the bytes from there to the frame's end; `None`
    /// outside the memory or in a frame not held.
    pub fn locate(&self, paddr: PhysAddr) -> Option<(BorrowedFd<'_>, u64, u64)> {
        if !self.contains(paddr, 1) {
            return None;
        }
        let i = self.frame_index(paddr);
        let off = paddr.0 - self.base.0 - i as u64 * self.frame_size;
        let frame = self.frame(i)?;
        Some((frame.fd(), frame.start() + off, self.frame_len(i)? - off))
    }

    /// Cuts frame `i` off from every mapping in every process (see
    /// [`crate::frames`]): `true` if it was not cut before.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a frame not held; the errno of `pipe2`, `fcntl`,
    /// `splice` or `ftruncate`.
    pub fn cut_off(&self, i: usize) -> Result<bool, MmError> {
        self.cut_off_with(i, |_| {})
    }

    pub(crate) fn cut_off_with(&self, i: usize, between: impl FnOnce(BorrowedFd<'_>)) -> Result<bool, MmError> {
        let cut = self.frame(i).ok_or(MmError::Invalid("no such frame held"))?.cut_off(between)?;
        if cut {
            self.cut_frames.fetch_add(1, Ordering::Relaxed);
        }
        Ok(cut)
    }

    /// Regrows cut frame `i` and writes its contents back, so existing
    /// mappings work again: `true` if it was cut.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a frame not held; the errno of `ftruncate`, `fallocate`
    /// (the frame then stays cut), `read` or `pwrite`.
    pub fn restore(&self, i: usize) -> Result<bool, MmError> {
        let restored = self.frame(i).ok_or(MmError::Invalid("no such frame held"))?.restore()?;
        if restored {
            self.cut_frames.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(restored)
    }

    /// Whether any frame is cut off now. Callers that look for cut frames
    /// to restore hold a lock that orders them against the cut-offs they
    /// care about (the device's `memory_lock`).
    pub fn has_cut_frames(&self) -> bool {
        self.cut_frames.load(Ordering::Relaxed) > 0
    }

    /// Whether frame `i` is cut off (`false` for a frame not held).
    pub fn is_cut_off(&self, i: usize) -> bool {
        self.frame(i).is_some_and(Frame::is_cut_off)
    }

    /// Splits `[paddr, paddr + len)` at frame boundaries: `(frame, offset
    /// in it, bytes)` for each part, in order.
    fn parts(&self, paddr: PhysAddr, len: u64) -> Result<Vec<(&Frame, u64, usize)>, MmError> {
        if !self.contains(paddr, len) {
            return Err(MmError::Invalid("access outside physical memory"));
        }
        let mut parts = Vec::new();
        let mut at = paddr.0;
        while at < paddr.0 + len {
            let i = self.frame_index(PhysAddr(at));
            let frame = self.frame(i).ok_or(MmError::Invalid("access to a frame not held"))?;
            let off = at - self.base.0 - i as u64 * self.frame_size;
            let n = (self.frame_size - off).min(paddr.0 + len - at);
            parts.push((frame, off, n as usize));
            at += n;
        }
        Ok(parts)
    }

    /// Reads bytes at a physical address through the frames (not through
    /// any mapping, so it never faults); a cut frame reads its snapshot.
    ///
    /// # Errors
    ///
    /// `EINVAL` when the range is outside this memory or touches a frame
    /// not held; else the errno of `pread`.
    pub fn read(&self, paddr: PhysAddr, buf: &mut [u8]) -> Result<(), MmError> {
        let mut done = 0;
        for (frame, off, n) in self.parts(paddr, buf.len() as u64)? {
            frame.read(off, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Writes bytes at a physical address through the frames; a cut frame's
    /// snapshot takes them.
    ///
    /// # Errors
    ///
    /// `EINVAL` when the range is outside this memory or touches a frame
    /// not held; else the errno of `pwrite`.
    pub fn write(&self, paddr: PhysAddr, data: &[u8]) -> Result<(), MmError> {
        let mut done = 0;
        for (frame, off, n) in self.parts(paddr, data.len() as u64)? {
            frame.write(off, &data[done..done + n])?;
            done += n;
        }
        Ok(())
    }
}

/// Checks a memory's geometry and gives its effective frame size.
fn geometry(base: PhysAddr, len: u64, frame_size: u64) -> Result<u64, MmError> {
    base.0.checked_add(len).ok_or(MmError::Invalid("physical range overflows"))?;
    if len == 0 || !base.is_page_aligned() || len % PAGE_SIZE != 0 {
        return Err(MmError::Invalid("physical memory must be non-empty and page aligned"));
    }
    if frame_size >= len && frame_size % PAGE_SIZE == 0 {
        // One frame of the memory's own size.
        return Ok(len);
    }
    frames::check_frame_size(frame_size)?;
    Ok(frame_size)
}

/// The memfd name of frame `i` of memory `name`.
pub(crate) fn frame_name(name: &str, i: usize) -> String {
    format!("{name}.{i}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::io::Errno;

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

#[cfg(test)]
mod frame_tests {
    use super::*;

    fn pattern(mem: &PhysMemory) -> Vec<u8> {
        let data: Vec<u8> = (0..mem.len()).map(|i| (i * 7 % 251) as u8).collect();
        mem.write(mem.base(), &data).unwrap();
        data
    }

    fn file_size(mem: &PhysMemory, i: usize) -> i64 {
        rustix::fs::fstat(mem.frame_fd(i).unwrap()).unwrap().st_size
    }

    #[test]
    fn a_store_between_the_splice_and_the_truncation_is_kept() {
        let mem = PhysMemory::with_frames("frames-race", PhysAddr(1 << 40), 4 << 16, 1 << 16).unwrap();
        let mut want = pattern(&mem);
        // What a store through a mapping in another process does to the
        // page cache after the pages went into the pipe, before the
        // truncation took them from the file.
        let late = |fd: BorrowedFd<'_>| {
            rustix::io::pwrite(fd, b"late store", (1 << 40) + (1 << 16) + 0x1234).unwrap();
        };
        assert!(mem.cut_off_with(1, late).unwrap());
        assert_eq!(file_size(&mem, 1), 0);
        assert!(mem.restore(1).unwrap());
        assert_eq!(file_size(&mem, 1), (1 << 40) + (2 << 16));
        want[(1 << 16) + 0x1234..(1 << 16) + 0x1234 + 10].copy_from_slice(b"late store");
        let mut got = vec![0u8; want.len()];
        mem.read(mem.base(), &mut got).unwrap();
        assert!(got == want, "restored contents differ");
    }

    #[test]
    fn reads_and_writes_of_a_cut_frame_use_its_snapshot_and_never_regrow_it() {
        let mem = PhysMemory::with_frames("frames-cut-rw", PhysAddr(0), 3 << 16, 1 << 16).unwrap();
        let mut want = pattern(&mem);
        mem.cut_off(1).unwrap();
        // Across the boundary of a live frame and the cut one.
        let mut got = vec![0u8; 0x2000];
        mem.read(PhysAddr((1 << 16) - 0x1000), &mut got).unwrap();
        assert!(got[..] == want[(1 << 16) - 0x1000..(1 << 16) + 0x1000]);
        mem.write(PhysAddr((2 << 16) - 4), b"straddle").unwrap();
        want[(2 << 16) - 4..(2 << 16) + 4].copy_from_slice(b"straddle");
        assert_eq!(file_size(&mem, 1), 0, "a write while cut regrew the frame");
        let mut back = [0u8; 8];
        mem.read(PhysAddr((2 << 16) - 4), &mut back).unwrap();
        assert_eq!(&back, b"straddle");
        mem.restore(1).unwrap();
        let mut all = vec![0u8; want.len()];
        mem.read(mem.base(), &mut all).unwrap();
        assert!(all == want, "the snapshot's changes were not written back");
    }

    #[test]
    fn frames_are_sealed_against_new_seals() {
        let mem = PhysMemory::with_frames("frames-sealed", PhysAddr(0), 1 << 16, 1 << 16).unwrap();
        let e = rustix::fs::fcntl_add_seals(mem.frame_fd(0).unwrap(), rustix::fs::SealFlags::SHRINK).unwrap_err();
        assert_eq!(e, rustix::io::Errno::PERM);
    }

    #[test]
    fn a_memory_smaller_than_a_frame_is_one_frame_of_its_size() {
        let mem = PhysMemory::new("frames-small", PhysAddr(0), 3 * PAGE_SIZE).unwrap();
        assert_eq!((mem.frame_size(), mem.frame_count()), (3 * PAGE_SIZE, 1));
        assert_eq!(file_size(&mem, 0), 3 * PAGE_SIZE as i64);
        let e = PhysMemory::with_frames("frames-bad", PhysAddr(0), 4 << 16, 3 * PAGE_SIZE).unwrap_err();
        assert_eq!(e.errno(), rustix::io::Errno::INVAL);
    }
}
