//! Wake-up eventfds handed in by number (as a feature payload carries them).
//!
//! # Safety
//!
//! This module uses `unsafe` once, to borrow a caller-supplied fd number
//! long enough to duplicate it; the number is checked to be open first.
#![allow(unsafe_code)]

use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::Errno;

/// Takes a reference of our own on eventfd number `fd`, as the kernel's
/// `eventfd_ctx_fdget()` does.
///
/// # Errors
///
/// `EBADF` when `fd` is not an open descriptor, `EINVAL` when it is not an
/// eventfd.
pub fn eventfd_get(fd: i32) -> Result<OwnedFd, Errno> {
    if fd < 0 {
        return Err(Errno::BADF);
    }
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|_| Errno::BADF)?;
    if target.to_string_lossy() != "anon_inode:[eventfd]" {
        return Err(Errno::INVAL);
    }
    // SAFETY: the number was an open descriptor a moment ago and we only
    // duplicate it; had it been closed meanwhile, `dup` fails with EBADF
    // (and a reused number is checked by nothing more than the kernel is).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_dupfd_cloexec(borrowed, 0)
}

/// Signals an eventfd (adds 1 to its counter), as `eventfd_signal()`.
///
/// # Errors
///
/// The errno of `write` (`EAGAIN` only when the counter is saturated).
pub fn eventfd_signal(fd: &OwnedFd) -> Result<(), Errno> {
    rustix::io::write(fd, &1u64.to_ne_bytes()).map(|_| ())
}
