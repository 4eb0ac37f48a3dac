//! The error of every public VFIO operation: one errno plus a short cause.
//!
//! Errno is the public currency (STYLE §5.1): the tests compare errnos, and
//! the message only says which check fired.

use std::borrow::Cow;

use rustix::io::Errno;

/// An errno and the check that produced it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg} ({name})", name = errno_name(*errno))]
pub struct VfioError {
    errno: Errno,
    msg: Cow<'static, str>,
}

impl VfioError {
    /// An error with a fixed message.
    pub fn new(errno: Errno, msg: impl Into<Cow<'static, str>>) -> Self {
        Self { errno, msg: msg.into() }
    }

    /// The errno the kernel returns for this cause.
    pub fn errno(&self) -> Errno {
        self.errno
    }

    /// The cause, without the errno.
    pub fn message(&self) -> &str {
        &self.msg
    }
}

impl From<dmabuf::Error> for VfioError {
    fn from(e: dmabuf::Error) -> Self {
        Self::new(e.errno(), e.to_string())
    }
}

impl From<mm::MmError> for VfioError {
    fn from(e: mm::MmError) -> Self {
        let msg = match &e {
            mm::MmError::Sys { call, .. } => format!("{call} failed"),
            other => other.to_string(),
        };
        Self::new(e.errno(), msg)
    }
}

impl From<pci::PciError> for VfioError {
    fn from(e: pci::PciError) -> Self {
        Self::new(e.errno(), e.to_string())
    }
}

/// The symbolic name of an errno (`EINVAL`), as the kernel's headers spell it.
pub fn errno_name(e: Errno) -> &'static str {
    const NAMES: &[(Errno, &str)] = &[
        (Errno::PERM, "EPERM"),
        (Errno::NOENT, "ENOENT"),
        (Errno::IO, "EIO"),
        (Errno::BADF, "EBADF"),
        (Errno::AGAIN, "EAGAIN"),
        (Errno::NOMEM, "ENOMEM"),
        (Errno::ACCESS, "EACCES"),
        (Errno::FAULT, "EFAULT"),
        (Errno::BUSY, "EBUSY"),
        (Errno::EXIST, "EEXIST"),
        (Errno::NODEV, "ENODEV"),
        (Errno::INVAL, "EINVAL"),
        (Errno::MFILE, "EMFILE"),
        (Errno::NOTTY, "ENOTTY"),
        (Errno::NOSPC, "ENOSPC"),
        (Errno::RANGE, "ERANGE"),
        (Errno::DEADLK, "EDEADLK"),
        (Errno::NOSYS, "ENOSYS"),
        (Errno::OVERFLOW, "EOVERFLOW"),
        (Errno::BADFD, "EBADFD"),
        (Errno::OPNOTSUPP, "EOPNOTSUPP"),
        (Errno::TIMEDOUT, "ETIMEDOUT"),
    ];
    NAMES.iter().find(|(x, _)| *x == e).map_or("E?", |(_, n)| n)
}

/// Parses an errno name (`"EINVAL"`, case-insensitive) back to the errno.
pub fn errno_from_name(name: &str) -> Option<Errno> {
    let upper = name.to_ascii_uppercase();
    (1..=133).map(Errno::from_raw_os_error).find(|e| errno_name(*e) == upper)
}

/// Shorthand for `Err(VfioError::new(errno, msg))`.
pub(crate) fn fail<T>(errno: Errno, msg: &'static str) -> Result<T, VfioError> {
    Err(VfioError::new(errno, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_round_trip() {
        for e in [Errno::INVAL, Errno::BADFD, Errno::OPNOTSUPP, Errno::NOTTY, Errno::OVERFLOW] {
            assert_eq!(errno_from_name(errno_name(e)), Some(e));
        }
        assert_eq!(VfioError::new(Errno::NODEV, "buffer revoked").to_string(), "buffer revoked (ENODEV)");
    }
}
