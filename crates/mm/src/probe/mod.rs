//! Probed accesses: loads, stores and copies to our mappings of device
//! memory that report a SIGBUS (or SIGSEGV) instead of dying from it.
//!
//! This is what lets tests and the command line *observe* a SIGBUS for
//! real, in a multi-threaded process, without forking and without `longjmp`
//! over Rust frames: the access runs in a one-instruction assembly probe
//! whose fault a process-wide handler turns into an [`AccessFault`] (see the
//! `raw` module, the kernel's exception-table idea).
//!
//! The functions here are safe because they touch only mappings of ours:
//! each checks its whole range against the registry of mappings this crate
//! created (`mapped`) and keeps the registry held across the access, so no
//! munmap can hand the addresses back to the allocator mid-access. An
//! address outside every mapping of ours is answered as the kernel would
//! answer an access to an unmapped address, `SIGSEGV`/`SEGV_MAPERR` at the
//! first byte outside, without touching memory. So a stray address can
//! never write into the heap. No Rust reference to mapped memory is ever
//! formed (STYLE §4.6).
//!
//! Preconditions: do not probe while holding `mmap_lock` or an exporter's
//! lock; the access may fault, and the fault path takes those locks.
//!
//! # Safety
//!
//! This module uses `unsafe` only to call the raw probes, and only on a
//! range the registry lists as a mapping of ours, with the registry held
//! until the access is over: what the raw probes' `# Safety` sections ask.
#![allow(unsafe_code)]

mod chain;
mod emulate;
mod mapped;
pub(crate) mod raw;
pub(crate) mod traps;

pub use chain::{program_blocks, program_sigaction, set_program_blocks, use_sigaction, SigactionFn};
pub(crate) use mapped::lock_for_update;
pub use raw::install_fault_handler;
pub(crate) use raw::reassert_sigbus_handler;
pub use traps::trap_geometry;

/// `si_code` of a SIGSEGV for an address with no mapping.
pub const SEGV_MAPERR: i32 = 1;
/// `si_code` of a SIGSEGV for a mapping without the needed permission.
pub const SEGV_ACCERR: i32 = 2;

/// What a probed access ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessFault {
    /// `SIGBUS` or `SIGSEGV`.
    pub signo: i32,
    /// `si_code`, e.g. `BUS_ADRERR`, `BUS_MCEERR_AR` or `SEGV_MAPERR`.
    pub code: i32,
    /// `si_addr`: the faulting address.
    pub addr: u64,
}

impl AccessFault {
    /// Whether this was a SIGBUS.
    pub fn is_sigbus(&self) -> bool {
        self.signo == libc::SIGBUS
    }
}

impl std::fmt::Display for AccessFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sig = match self.signo {
            libc::SIGBUS => "SIGBUS",
            libc::SIGSEGV => "SIGSEGV",
            _ => "signal",
        };
        let code = match (self.signo, self.code) {
            (libc::SIGBUS, libc::BUS_ADRERR) => "BUS_ADRERR",
            (libc::SIGBUS, libc::BUS_ADRALN) => "BUS_ADRALN",
            (libc::SIGBUS, libc::BUS_OBJERR) => "BUS_OBJERR",
            (libc::SIGBUS, libc::BUS_MCEERR_AR) => "BUS_MCEERR_AR",
            (libc::SIGSEGV, SEGV_MAPERR) => "SEGV_MAPERR",
            (libc::SIGSEGV, SEGV_ACCERR) => "SEGV_ACCERR",
            _ => "?",
        };
        write!(f, "{sig} ({code}) at {:#x}", self.addr)
    }
}

impl std::error::Error for AccessFault {}

/// Width of one probed access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// 1 byte.
    U8,
    /// 2 bytes.
    U16,
    /// 4 bytes.
    U32,
    /// 8 bytes.
    U64,
}

impl Width {
    /// The width in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Width::U8 => 1,
            Width::U16 => 2,
            Width::U32 => 4,
            Width::U64 => 8,
        }
    }
}

/// An access at `addr` that is not inside a mapping of ours: what the kernel
/// reports for an unmapped address.
fn not_ours(addr: u64) -> AccessFault {
    AccessFault { signo: libc::SIGSEGV, code: SEGV_MAPERR, addr }
}

/// Checks that `[addr, addr + len)` is ours and runs `access` on it with the
/// registry held. A range that runs past our mappings faults at its first
/// byte outside, before anything is touched.
fn with_mapped<T>(addr: u64, len: u64, access: impl FnOnce() -> Result<T, AccessFault>) -> Result<T, AccessFault> {
    let mapped = mapped::lock_for_access();
    let reach = mapped.reach(addr);
    if reach < len {
        return Err(not_ours(addr.saturating_add(reach)));
    }
    let r = access();
    drop(mapped);
    r
}

/// Loads a value of `width` from `addr`, reporting a SIGBUS/SIGSEGV as an
/// error instead of dying. The access is performed by one instruction, so it
/// behaves like a device register access (never torn, never merged).
///
/// # Errors
///
/// The signal the access raised: `SIGBUS` for a revoked page,
/// `SIGSEGV`/`SEGV_MAPERR` for an address outside our mappings (checked
/// first, without touching it).
pub fn read(addr: u64, width: Width) -> Result<u64, AccessFault> {
    // SAFETY: `with_mapped` runs the access only on a mapping of ours, held
    // mapped for its duration; nothing of Rust's lives there.
    with_mapped(addr, width.bytes() as u64, || unsafe { raw::read(addr, width) })
}

/// Stores `value` (truncated to `width`) at `addr`, reporting a
/// SIGBUS/SIGSEGV as an error instead of dying.
///
/// # Errors
///
/// As [`read`]; a store to a read-only mapping is `SIGSEGV`/`SEGV_ACCERR`.
pub fn write(addr: u64, width: Width, value: u64) -> Result<(), AccessFault> {
    // SAFETY: as in `read`.
    with_mapped(addr, width.bytes() as u64, || unsafe { raw::write(addr, width, value) })
}

/// Reads a u64 (shorthand for [`read`] with [`Width::U64`]).
///
/// # Errors
///
/// As [`read`].
pub fn read_u64(addr: u64) -> Result<u64, AccessFault> {
    read(addr, Width::U64)
}

/// Writes a u64 (shorthand for [`write()`] with [`Width::U64`]).
///
/// # Errors
///
/// As [`write()`].
pub fn write_u64(addr: u64, value: u64) -> Result<(), AccessFault> {
    write(addr, Width::U64, value)
}

/// Copies `buf.len()` bytes from `src` into `buf` with one `rep movsb`
/// (full bandwidth for large copies). On a fault, the bytes before the
/// faulting address have been copied, as with `copy_from_user()`; a copy
/// that runs past the end of our mappings copies what is ours and then
/// faults at the first byte outside.
///
/// # Errors
///
/// As [`read`], at the first byte that could not be read.
pub fn copy_from(src: u64, buf: &mut [u8]) -> Result<(), AccessFault> {
    // SAFETY: `with_mapped_prefix` runs the copy only on the first `n`
    // bytes, which are ours and stay mapped while it holds the registry.
    with_mapped_prefix(src, buf.len(), |n| unsafe { raw::copy_from(src, &mut buf[..n]) })
}

/// Copies `data` to `dst` with one `rep movsb`, reporting a SIGBUS/SIGSEGV
/// instead of dying; like [`copy_from`], a copy past the end of our mappings
/// stores what is ours and faults at the first byte outside.
///
/// # Errors
///
/// As [`write()`], at the first byte that could not be written.
pub fn copy_to(dst: u64, data: &[u8]) -> Result<(), AccessFault> {
    // SAFETY: as in `copy_from`.
    with_mapped_prefix(dst, data.len(), |n| unsafe { raw::copy_to(dst, &data[..n]) })
}

/// Runs `copy` on the first `n` bytes of `[addr, addr + len)` that are ours,
/// with the registry held; a range that runs past our mappings then faults
/// at its first byte outside, as `copy_from_user()` stops short.
fn with_mapped_prefix(
    addr: u64,
    len: usize,
    copy: impl FnOnce(usize) -> Result<(), AccessFault>,
) -> Result<(), AccessFault> {
    let mapped = mapped::lock_for_access();
    let n = clip(mapped.reach(addr), len);
    copy(n)?;
    drop(mapped);
    if n < len {
        return Err(not_ours(addr + n as u64));
    }
    Ok(())
}

/// The part of a `len`-byte access that lies within `reach` bytes.
fn clip(reach: u64, len: usize) -> usize {
    usize::try_from(reach).map_or(len, |r| r.min(len))
}

/// Touches (reads one byte of) every 4 KiB page of `[addr, addr+len)`,
/// stopping at the first fault.
///
/// # Errors
///
/// As [`read`], for the first page that faulted.
pub fn touch_pages(addr: u64, len: u64) -> Result<(), AccessFault> {
    touch(addr, len, false)
}

/// Touches every 4 KiB page of `[addr, addr + len)`: a one-byte load each,
/// followed by a one-byte store of the loaded value when `write`; stops at
/// the first fault. A page outside our mappings faults (`SEGV_MAPERR`)
/// without being touched.
///
/// # Errors
///
/// As [`read`]/[`write()`], for the first page that faulted.
pub fn touch(addr: u64, len: u64, write: bool) -> Result<(), AccessFault> {
    let mapped = mapped::lock_for_access();
    let ours_end = addr.saturating_add(mapped.reach(addr));
    let end = addr.saturating_add(len);
    let mut a = addr;
    while a < end {
        if a >= ours_end {
            return Err(not_ours(a));
        }
        // SAFETY: `a` is inside a mapping of ours, held mapped by `mapped`.
        let v = unsafe { raw::read(a, Width::U8) }?;
        if write {
            // SAFETY: as above; the store writes back the byte just read.
            unsafe { raw::write(a, Width::U8, v) }?;
        }
        a = a.saturating_add(page::PAGE_SIZE);
    }
    drop(mapped);
    Ok(())
}
