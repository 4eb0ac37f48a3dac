//! Descriptors handed in by number.
//!
//! A feature payload or an ioctl argument carries a plain `int`; the kernel
//! resolves it with `fdget()` and, when it keeps the file, takes a reference
//! of its own (`get_file()`). [`fdget`] does both at once: it returns a new
//! descriptor of ours for the same open file, which stays valid whatever the
//! caller does with its number afterwards.

use std::os::fd::OwnedFd;

use rustix::io::Errno;

use crate::sys;

/// `fdget()` plus a reference of our own: a new close-on-exec descriptor for
/// the open file behind descriptor number `raw`.
///
/// Like the kernel, this takes whatever file the number names at the
/// moment of the call; checking what kind of file it is (an eventfd, a
/// buffer) is the caller's business.
///
/// # Errors
///
/// `EBADF` when `raw` is negative or not an open descriptor; `EMFILE` when
/// the process has no descriptor left.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsRawFd;
///
/// let file = std::fs::File::open("/proc/self/maps").unwrap();
/// let ours = mm::fd::fdget(file.as_raw_fd()).unwrap();
/// drop(file);
/// // Still open: it is a reference of our own.
/// assert!(rustix::fs::fstat(&ours).is_ok());
/// assert_eq!(mm::fd::fdget(-1).unwrap_err(), rustix::io::Errno::BADF);
/// ```
pub fn fdget(raw: i32) -> Result<OwnedFd, Errno> {
    sys::dup_raw_cloexec(raw)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn fdget_of_a_number_that_cannot_be_open_is_ebadf() {
        assert_eq!(fdget(i32::MAX).unwrap_err(), Errno::BADF);
        assert_eq!(fdget(-5).unwrap_err(), Errno::BADF);
    }

    #[test]
    fn fdget_takes_a_reference_that_outlives_the_callers_number() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let ours = fdget(b.as_raw_fd()).unwrap();
        assert_ne!(ours.as_raw_fd(), b.as_raw_fd());
        drop(b);
        let mut ours = UnixStream::from(ours);
        ours.write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        a.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
    }
}
