//! Ioctl arguments as they arrive ([`wire::msg::IoctlArg`] and the fds
//! beside it) and answers as they leave.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use rustix::io::Errno;
use vfio::VfioError;
use wire::msg::IoctlArg;
use wire::shape::{fds_in, shape};
use wire::ObjectKind;

/// A successful ioctl.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// The return value (0 or positive).
    pub(crate) ret: i64,
    /// Bytes to copy back over the start of the argument.
    pub(crate) out: Vec<u8>,
    /// A new fd that is the return value.
    pub(crate) fd: Option<OwnedFd>,
}

impl Answer {
    /// 0, nothing copied back.
    pub(crate) fn zero() -> Self {
        Self::default()
    }

    /// 0, with `out` copied back.
    pub(crate) fn out(out: Vec<u8>) -> Self {
        Self { out, ..Self::default() }
    }
}

/// A failed ioctl.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Fails with this errno.
    Errno(Errno),
    /// Copies bytes back, then fails with this errno.
    WithOut(Errno, Vec<u8>),
}

impl From<Errno> for Failure {
    fn from(e: Errno) -> Self {
        Failure::Errno(e)
    }
}

impl From<VfioError> for Failure {
    fn from(e: VfioError) -> Self {
        Failure::Errno(vfio_errno(e))
    }
}

/// The errno of a core error, its cause logged.
pub(crate) fn vfio_errno(e: VfioError) -> Errno {
    tracing::debug!(%e, "refused by the device core");
    e.errno()
}

/// What an ioctl handler returns.
pub(crate) type IoctlResult = Result<Answer, Failure>;

/// The `N` bytes at byte `off` of `b` (zeros where `b` ends first).
pub(crate) fn bytes_at<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0; N];
    if let Some(src) = b.get(off..off + N) {
        a.copy_from_slice(src);
    }
    a
}

/// Writes `data` at byte `off` of `b`, growing it if needed.
pub(crate) fn put_at(b: &mut Vec<u8>, off: usize, data: &[u8]) {
    if b.len() < off + data.len() {
        b.resize(off + data.len(), 0);
    }
    b[off..off + data.len()].copy_from_slice(data);
}

/// `u32` at byte `off` (the caller checked the length).
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(bytes_at(b, off))
}

/// `u64` at byte `off` (the caller checked the length).
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(bytes_at(b, off))
}

/// Writes `v` at byte `off` of `b`, growing it if needed.
pub(crate) fn put_u32(b: &mut Vec<u8>, off: usize, v: u32) {
    put_at(b, off, &v.to_ne_bytes());
}

/// The bytes of a struct argument whose first `u32` is its size
/// (`argsz`), checked as the kernel checks it: `argsz < minsz` is
/// `EINVAL`; fewer than `minsz` bytes readable is `EFAULT` (the copy
/// faulted).
pub(crate) fn sized(arg: &IoctlArg, minsz: usize) -> Result<&[u8], Errno> {
    let IoctlArg::Bytes(b) = arg else { return Err(Errno::FAULT) };
    if b.len() < 4 {
        return Err(Errno::FAULT);
    }
    if (u32_at(b, 0) as usize) < minsz {
        return Err(Errno::INVAL);
    }
    if b.len() < minsz {
        return Err(Errno::FAULT);
    }
    Ok(b)
}

/// The first `n` bytes of `b`, what the kernel copies back of a struct
/// of `n` bytes (never more than the caller's argument holds).
pub(crate) fn head(b: &[u8], n: usize) -> Vec<u8> {
    b[..n.min(b.len())].to_vec()
}

/// One fd slot of an argument.
#[derive(Debug)]
pub(crate) enum Slot {
    /// Not carried: a negative number, or a slot the argument does not
    /// reach. The number in the argument stands.
    Absent,
    /// The number is not an open fd of the caller (`EBADF` where looked up).
    Bad,
    /// The caller's fd, received.
    Fd(OwnedFd),
}

/// The fds an argument carries, by byte offset, as [`wire::shape`] lays
/// them out.
#[derive(Debug, Default)]
pub(crate) struct ArgFds {
    slots: HashMap<usize, Slot>,
}

impl ArgFds {
    /// Pairs the slots of `arg` with what arrived: `bad` lists the offsets
    /// the process found closed, `attached` the others' fds in order.
    pub(crate) fn new(
        kind: ObjectKind,
        request: u64,
        arg: &IoctlArg,
        bad: &[u32],
        attached: impl IntoIterator<Item = OwnedFd>,
    ) -> Self {
        let mut attached = attached.into_iter();
        let mut slots = HashMap::new();
        if let (Some(sh), IoctlArg::Bytes(bytes)) = (shape(kind, request), arg) {
            for (off, _) in fds_in(sh.fds, bytes) {
                let slot =
                    if bad.contains(&(off as u32)) { Slot::Bad } else { attached.next().map_or(Slot::Bad, Slot::Fd) };
                slots.insert(off, slot);
            }
        }
        for off in bad {
            slots.entry(*off as usize).or_insert(Slot::Bad);
        }
        Self { slots }
    }

    /// The slot at byte `off`.
    pub(crate) fn take(&mut self, off: usize) -> Slot {
        self.slots.remove(&off).unwrap_or(Slot::Absent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_below_the_minimum_is_einval_and_a_short_copy_efault() {
        let arg = IoctlArg::Bytes([8u32, 0].iter().flat_map(|v| v.to_ne_bytes()).collect());
        assert_eq!(sized(&arg, 12).unwrap_err(), Errno::INVAL);
        let arg = IoctlArg::Bytes([16u32, 0].iter().flat_map(|v| v.to_ne_bytes()).collect());
        assert_eq!(sized(&arg, 12).unwrap_err(), Errno::FAULT);
        assert_eq!(sized(&IoctlArg::Value(0), 4).unwrap_err(), Errno::FAULT);
    }
}
