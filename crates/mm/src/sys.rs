//! Raw system calls of the `mm` layer: mmap, munmap, madvise, the
//! userfaultfd ioctls, and `process_vm_readv`/`process_vm_writev`.
//!
//! # Safety
//!
//! This is one of the two modules of the crate allowed to use `unsafe` (the
//! other is `probe`). Every function here is safe to call: each one either
//! works on memory that the caller proves it owns through the type it passes
//! (a [`Reservation`] or a range inside one), or performs an ioctl whose
//! argument is a plain struct on our own stack, or copies between a slice
//! the caller borrows and another process's memory (which the kernel
//! checks and which never aliases ours). `MAP_FIXED` is used only to
//! place mappings inside a reservation this module created, never over memory
//! that someone else might own.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::null_mut;

use rustix::io::Errno;
use rustix::ioctl::{ioctl, opcode, Updater};
use rustix::mm::{Advice, MapFlags, ProtFlags, UserfaultfdFlags};

use page::PAGE_SIZE;

/// A range of virtual address space that this crate reserved with an
/// inaccessible anonymous mapping, and therefore owns.
///
/// Dropping it unmaps whatever is left of it. Pieces are handed out and
/// returned with [`Reservation::release`] as the VMA table changes.
#[derive(Debug)]
pub(crate) struct Reservation {
    start: usize,
    len: usize,
}

impl Reservation {
    /// Reserves `len` bytes aligned to `align` (a power of two, at least a
    /// page). When `hint` is given, the reservation must start exactly there
    /// (the kernel refuses with EEXIST if anything already lives there).
    pub(crate) fn new(len: usize, align: usize, hint: Option<usize>) -> Result<Self, Errno> {
        debug_assert!(align.is_power_of_two() && align >= PAGE_SIZE as usize);
        if let Some(addr) = hint {
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping;
            // the kernel fails with EEXIST instead, so no foreign memory is
            // touched. The new mapping is inaccessible anonymous memory.
            let p = unsafe {
                rustix::mm::mmap_anonymous(
                    addr as *mut c_void,
                    len,
                    ProtFlags::empty(),
                    MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::FIXED_NOREPLACE,
                )
            }?;
            if p as usize != addr {
                // Very old kernels ignore FIXED_NOREPLACE and treat it as a hint.
                // SAFETY: `p` is the mapping we just created, of length `len`.
                unsafe { rustix::mm::munmap(p, len) }?;
                return Err(Errno::EXIST);
            }
            return Ok(Self { start: addr, len });
        }
        let padded = len.checked_add(align).ok_or(Errno::NOMEM)?;
        // SAFETY: a fresh inaccessible anonymous mapping chosen by the kernel;
        // it overlaps nothing we or anyone else own.
        let p = unsafe {
            rustix::mm::mmap_anonymous(null_mut(), padded, ProtFlags::empty(), MapFlags::PRIVATE | MapFlags::NORESERVE)
        }? as usize;
        let start = (p + align - 1) & !(align - 1);
        // Trim the slack on both sides so the reservation is exactly [start, start+len).
        if start > p {
            // SAFETY: [p, start) is the head of the mapping created above.
            unsafe { rustix::mm::munmap(p as *mut c_void, start - p) }?;
        }
        let tail = p + padded - (start + len);
        if tail > 0 {
            // SAFETY: [start+len, p+padded) is the tail of the mapping created above.
            unsafe { rustix::mm::munmap((start + len) as *mut c_void, tail) }?;
        }
        Ok(Self { start, len })
    }

    pub(crate) fn start(&self) -> usize {
        self.start
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Gives up ownership without unmapping: the range now belongs to the
    /// VMA table, which unmaps each piece when the VMA goes.
    pub(crate) fn into_owned_range(self) -> (usize, usize) {
        let r = (self.start, self.len);
        std::mem::forget(self);
        r
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the reservation owns [start, start+len) and nothing else
        // was placed there without going through `into_owned_range`... except
        // the file pieces of a half-built VMA, which are ours too and are
        // exactly what an error path wants gone.
        if let Err(e) = unsafe { rustix::mm::munmap(self.start as *mut c_void, self.len) } {
            tracing::error!(start = self.start, len = self.len, %e, "munmap of a reservation failed");
        }
    }
}

/// Maps `len` bytes of `fd` at file offset `file_offset` shared, exactly at
/// `addr`, which must lie inside `res`.
pub(crate) fn map_shared_fixed(
    res: &Reservation,
    addr: usize,
    len: usize,
    fd: BorrowedFd<'_>,
    file_offset: u64,
    writable: bool,
) -> Result<(), Errno> {
    assert!(addr >= res.start && addr + len <= res.start + res.len, "piece outside its reservation");
    let prot = if writable { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
    // SAFETY: [addr, addr+len) lies inside a reservation this crate created
    // and still owns (asserted above), so MAP_FIXED replaces only our own
    // inaccessible placeholder.
    let p = unsafe {
        rustix::mm::mmap(addr as *mut c_void, len, prot, MapFlags::SHARED | MapFlags::FIXED, fd, file_offset)
    }?;
    debug_assert_eq!(p as usize, addr);
    Ok(())
}

/// Unmaps `[addr, addr+len)`.
///
/// Preconditions: the caller owns that range through its VMA table (the
/// range was mapped by this crate and is being removed from the table).
pub(crate) fn unmap_owned(addr: usize, len: usize) -> Result<(), Errno> {
    // SAFETY: by the precondition the range is ours; no Rust reference points
    // into device-memory mappings (STYLE §4.6), so nothing dangles afterwards.
    unsafe { rustix::mm::munmap(addr as *mut c_void, len) }
}

/// `MADV_DONTNEED` over an owned shared file mapping: drops its PTEs (and
/// any poison markers) while the page cache, hence the data, stays.
pub(crate) fn zap_owned(addr: usize, len: usize) -> Result<(), Errno> {
    // SAFETY: the range is a shared mapping owned by the caller's VMA table;
    // DONTNEED on a shared file mapping loses no data, it only unmaps PTEs.
    unsafe { rustix::mm::madvise(addr as *mut c_void, len, Advice::LinuxDontNeed) }
}

/// `MADV_POPULATE_READ` over an owned range: maps every page now.
pub(crate) fn populate_read_owned(addr: usize, len: usize) -> Result<(), Errno> {
    // SAFETY: the range is a mapping owned by the caller; populating only
    // installs PTEs for pages that exist, it changes no data.
    unsafe { rustix::mm::madvise(addr as *mut c_void, len, Advice::LinuxPopulateRead) }
}

/// `MADV_HUGEPAGE` over an owned range (a hint; harmless on shmem).
pub(crate) fn madvise_hugepage_owned(addr: usize, len: usize) -> Result<(), Errno> {
    // SAFETY: the range is owned by the caller's VMA table; the advice only
    // changes THP policy and never frees data.
    unsafe { rustix::mm::madvise(addr as *mut c_void, len, Advice::LinuxHugepage) }
}

/// `MADV_COLLAPSE` (include/uapi/asm-generic/mman-common.h); spelled out
/// here because not every libc target names it.
const MADV_COLLAPSE: i32 = 25;

/// `MADV_COLLAPSE` over an owned, 2 MiB-aligned range of a shared memfd
/// mapping: the kernel makes the page cache behind each aligned 2 MiB one
/// 2 MiB folio (copying 4 KiB pages into a new one when it is not yet) and
/// maps it with one PMD. It raises no userfault in a MINOR-registered range.
pub(crate) fn collapse_owned(addr: usize, len: usize) -> Result<(), Errno> {
    // The raw system call, not libc's `madvise`: in a process under the
    // preload library that symbol is the library's own, which answers for
    // the kernel's VFIO VMAs and would refuse a collapse of our mappings.
    // SAFETY: the range is a shared mapping owned by the caller (through
    // its VMA table, or a reservation of its own). A collapse keeps every
    // byte of the file (a copy when it builds a new folio, under the folio
    // locks that order it against writers) and only changes how the pages
    // are held and mapped; no Rust reference points into device-memory
    // mappings (STYLE §4.6).
    let r = unsafe { libc::syscall(libc::SYS_madvise, addr, len, MADV_COLLAPSE) };
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// Makes the page cache of `fd` at `[offset, offset + 2 MiB)` (offset 2 MiB
/// aligned, inside the file, no page cached there yet) one 2 MiB folio: one
/// page allocated (`fallocate` of its first 4 KiB), a temporary 2 MiB-aligned
/// shared mapping of the range, `MADV_COLLAPSE` of it (which builds the
/// folio from that one page without copying 511 others), and the mapping
/// gone again. The rest of the range reads as zeroes, as after `fallocate`.
pub(crate) fn build_huge_folio(fd: BorrowedFd<'_>, offset: u64) -> Result<(), Errno> {
    const HUGE: usize = 2 << 20;
    debug_assert_eq!(offset % HUGE as u64, 0);
    rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), offset, PAGE_SIZE)?;
    let res = Reservation::new(HUGE, HUGE, None)?;
    map_shared_fixed(&res, res.start(), HUGE, fd, offset, true)?;
    collapse_owned(res.start(), HUGE)
    // Dropping `res` unmaps the temporary mapping; the folio stays cached.
}

/// Whether the page at `va` is present in this process's page tables (bit
/// 63 of its `/proc/self/pagemap` entry; a PMD counts for each of its pages,
/// a poison marker does not).
pub(crate) fn page_present(pagemap: BorrowedFd<'_>, va: u64) -> Result<bool, Errno> {
    let mut entry = [0u8; 8];
    let n = rustix::io::pread(pagemap, &mut entry, va / PAGE_SIZE * 8)?;
    if n != entry.len() {
        return Err(Errno::IO);
    }
    Ok(u64::from_ne_bytes(entry) >> 63 == 1)
}

// ---------------------------------------------------------------------------
// userfaultfd UAPI (include/uapi/linux/userfaultfd.h). Plain data, laid out
// as the kernel expects.

pub(crate) const UFFD_API: u64 = 0xaa;
pub(crate) const UFFD_FEATURE_MINOR_SHMEM: u64 = 1 << 10;
pub(crate) const UFFD_FEATURE_POISON: u64 = 1 << 14;
pub(crate) const UFFDIO_REGISTER_MODE_MINOR: u64 = 1 << 2;
pub(crate) const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
pub(crate) const UFFD_EVENT_FORK: u8 = 0x13;
pub(crate) const UFFD_EVENT_REMAP: u8 = 0x14;
pub(crate) const UFFD_EVENT_REMOVE: u8 = 0x15;
pub(crate) const UFFD_EVENT_UNMAP: u8 = 0x16;
pub(crate) const UFFD_PAGEFAULT_FLAG_WRITE: u64 = 1 << 0;
/// `UFFD_USER_MODE_ONLY`: lets an unprivileged process create a userfaultfd
/// when `vm.unprivileged_userfaultfd` is 0; only user-mode faults are reported.
const UFFD_USER_MODE_ONLY: u32 = 1;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct UffdioRange {
    pub start: u64,
    pub len: u64,
}

#[repr(C)]
#[derive(Debug, Default)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Debug, Default)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Debug, Default)]
struct UffdioContinue {
    range: UffdioRange,
    mode: u64,
    mapped: i64,
}

#[repr(C)]
#[derive(Debug, Default)]
struct UffdioPoison {
    range: UffdioRange,
    mode: u64,
    updated: i64,
}

/// One `struct uffd_msg` (32 bytes), decoded for page faults.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct UffdMsg {
    pub event: u8,
    _reserved1: u8,
    _reserved2: u16,
    _reserved3: u32,
    /// For `UFFD_EVENT_PAGEFAULT`: flags.
    pub arg0: u64,
    /// For `UFFD_EVENT_PAGEFAULT`: address.
    pub arg1: u64,
    _arg2: u64,
}

const UFFDIO_API: rustix::ioctl::Opcode = opcode::read_write::<UffdioApi>(0xaa, 0x3f);
const UFFDIO_REGISTER: rustix::ioctl::Opcode = opcode::read_write::<UffdioRegister>(0xaa, 0x00);
const UFFDIO_WAKE: rustix::ioctl::Opcode = opcode::read::<UffdioRange>(0xaa, 0x02);
const UFFDIO_CONTINUE: rustix::ioctl::Opcode = opcode::read_write::<UffdioContinue>(0xaa, 0x07);
const UFFDIO_POISON: rustix::ioctl::Opcode = opcode::read_write::<UffdioPoison>(0xaa, 0x08);

/// Opens a userfaultfd (close-on-exec, non-blocking). Falls back to
/// `UFFD_USER_MODE_ONLY` when the kernel refuses an unprivileged caller.
pub(crate) fn userfaultfd_open() -> Result<OwnedFd, Errno> {
    let flags = UserfaultfdFlags::CLOEXEC | UserfaultfdFlags::NONBLOCK;
    // SAFETY: userfaultfd(2) has no memory-safety preconditions; the fd it
    // returns is owned by the caller.
    match unsafe { rustix::mm::userfaultfd(flags) } {
        Err(Errno::PERM) | Err(Errno::ACCESS) => {
            let user_only = flags | UserfaultfdFlags::from_bits_retain(UFFD_USER_MODE_ONLY);
            // SAFETY: as above.
            unsafe { rustix::mm::userfaultfd(user_only) }
        }
        other => other,
    }
}

/// The `UFFDIO_API` handshake asking for `features`; returns the features the
/// kernel granted.
pub(crate) fn uffdio_api(fd: BorrowedFd<'_>, features: u64) -> Result<u64, Errno> {
    let mut arg = UffdioApi { api: UFFD_API, features, ioctls: 0 };
    // SAFETY: UFFDIO_API reads and writes exactly one `UffdioApi`, which is
    // laid out as `struct uffdio_api`.
    unsafe { ioctl(fd, Updater::<UFFDIO_API, _>::new(&mut arg)) }?;
    Ok(arg.features)
}

/// Registers `[start, start+len)` in MINOR mode.
pub(crate) fn uffdio_register_minor(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), Errno> {
    let mut arg = UffdioRegister { range: UffdioRange { start, len }, mode: UFFDIO_REGISTER_MODE_MINOR, ioctls: 0 };
    // SAFETY: UFFDIO_REGISTER reads and writes one `struct uffdio_register`.
    unsafe { ioctl(fd, Updater::<UFFDIO_REGISTER, _>::new(&mut arg)) }
}

/// Wakes threads waiting on faults in a range.
pub(crate) fn uffdio_wake(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), Errno> {
    let mut arg = UffdioRange { start, len };
    // SAFETY: UFFDIO_WAKE reads one `struct uffdio_range`.
    unsafe { ioctl(fd, Updater::<UFFDIO_WAKE, _>::new(&mut arg)) }
}

/// `UFFDIO_CONTINUE_MODE_DONTWAKE` / `UFFDIO_POISON_MODE_DONTWAKE`.
const MODE_DONTWAKE: u64 = 1 << 0;

/// `UFFDIO_CONTINUE`: maps the page-cache pages behind `[start, start+len)`
/// without waking the faulting threads (the engine wakes them once the
/// fault path has released its locks). Returns the kernel's error and how many
/// bytes it mapped before the error (EEXIST with a partial count is normal
/// when a racing fault mapped part of the range first).
pub(crate) fn uffdio_continue(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), (Errno, i64)> {
    let mut arg = UffdioContinue { range: UffdioRange { start, len }, mode: MODE_DONTWAKE, mapped: 0 };
    // SAFETY: UFFDIO_CONTINUE reads and writes one `struct uffdio_continue`.
    unsafe { ioctl(fd, Updater::<UFFDIO_CONTINUE, _>::new(&mut arg)) }.map_err(|e| (e, arg.mapped))
}

/// `UFFDIO_POISON`: installs poison markers so that accesses raise SIGBUS,
/// without waking the faulting threads (see `uffdio_continue`).
pub(crate) fn uffdio_poison(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), (Errno, i64)> {
    let mut arg = UffdioPoison { range: UffdioRange { start, len }, mode: MODE_DONTWAKE, updated: 0 };
    // SAFETY: UFFDIO_POISON reads and writes one `struct uffdio_poison`.
    unsafe { ioctl(fd, Updater::<UFFDIO_POISON, _>::new(&mut arg)) }.map_err(|e| (e, arg.updated))
}

/// Reads as many pending `uffd_msg`s as fit in `buf` (non-blocking fd).
pub(crate) fn uffd_read(fd: BorrowedFd<'_>, buf: &mut [UffdMsg]) -> Result<usize, Errno> {
    let bytes = std::mem::size_of_val(buf);
    // SAFETY: `UffdMsg` is plain old data for which every bit pattern is
    // valid, so viewing the slice as bytes for the kernel to fill is sound.
    let raw = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), bytes) };
    let n = rustix::io::read(fd, raw)?;
    Ok(n / std::mem::size_of::<UffdMsg>())
}

/// `fcntl(raw, F_DUPFD_CLOEXEC, 0)` on a descriptor *number* the caller got
/// from outside (e.g. a feature payload), returning a new descriptor we own.
///
/// Works on the bare number, not a `BorrowedFd`: nothing vouches that the
/// number is open, and the kernel itself answers `EBADF` if it is not.
pub(crate) fn dup_raw_cloexec(raw: i32) -> Result<OwnedFd, Errno> {
    if raw < 0 {
        return Err(Errno::BADF);
    }
    // SAFETY: F_DUPFD_CLOEXEC takes no pointer; on a closed number the
    // kernel fails with EBADF and nothing else happens.
    let new = unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EBADF)));
    }
    // SAFETY: `new` is a descriptor the kernel just created for us; nobody
    // else knows its number, so this is its only owner.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(new) })
}

/// `process_vm_readv()` of one range of process `pid` into `buf`; returns
/// the bytes copied (short at the first unreadable page).
pub(crate) fn process_vm_readv(pid: i32, remote: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast::<c_void>(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: remote as usize as *mut c_void, iov_len: buf.len() };
    // SAFETY: the local iovec describes `buf`, which we borrow mutably for the
    // call; the remote one names memory of process `pid` (possibly this one),
    // which the kernel checks page by page and which is not `buf`.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    usize::try_from(n).map_err(|_| last_errno())
}

/// `process_vm_writev()` of `data` into one range of process `pid`; returns
/// the bytes copied (short at the first unwritable page).
pub(crate) fn process_vm_writev(pid: i32, remote: u64, data: &[u8]) -> Result<usize, Errno> {
    let local = libc::iovec { iov_base: data.as_ptr().cast_mut().cast::<c_void>(), iov_len: data.len() };
    let remote = libc::iovec { iov_base: remote as usize as *mut c_void, iov_len: data.len() };
    // SAFETY: the local iovec describes `data`, which the kernel only reads;
    // the remote one names memory of process `pid` (possibly this one),
    // which the kernel checks page by page.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    usize::try_from(n).map_err(|_| last_errno())
}

fn last_errno() -> Errno {
    Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
}
