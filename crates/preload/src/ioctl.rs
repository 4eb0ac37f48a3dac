//! `ioctl(2)` on object fds, carried to the server as [`wire::shape`] says.
//!
//! The argument is read out of the program's memory by its shape (a
//! value, a string, a fixed struct, or a struct whose first `u32` is its
//! size), the fds it carries are attached in order (a number that is not
//! open travels as a "bad fd" offset, for the server's `EBADF`), the object
//! fd itself first. The reply's bytes are copied back over the start of the
//! argument, and an fd it returns (`VFIO_GROUP_GET_DEVICE_FD`, a
//! DMA-buffer export) becomes the call's return value.

use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd};

use rustix::io::{Errno, FdFlags};
use wire::msg::IoctlArg;
use wire::nr::VFIO_DEVICE_FEATURE;
use wire::shape::{self, ArgShape};
use wire::{ObjectKind, Reply, Request};

use crate::abi::UserPtr;
use crate::{fds, pool, process};

/// `FIONCLEX`, `FIOCLEX`, `FIONBIO`, `FIOASYNC`: the VFS answers these for
/// every file before its driver sees them, so they go to the C library.
const VFS_GENERIC: [u64; 4] = [0x5450, 0x5451, 0x5421, 0x5452];

/// Longest string argument (a device name).
const MAX_STR: usize = 4096;

/// The feature of `VFIO_DEVICE_FEATURE` that returns a buffer fd.
const VFIO_DEVICE_FEATURE_DMA_BUF: u32 = 11;

/// `ioctl(fd, request, arg)` when `fd` is an object fd.
pub(crate) fn ioctl(fd: BorrowedFd<'_>, request: u64, arg: UserPtr) -> Option<Result<i32, Errno>> {
    let tag = fds::tag(fd)?;
    if VFS_GENERIC.contains(&request) {
        return None;
    }
    Some(call(fd, tag.kind, request, arg))
}

/// Reads the argument as its shape says: what travels.
fn read_arg(shape: Option<ArgShape>, arg: UserPtr) -> Result<IoctlArg, Errno> {
    Ok(match shape {
        None | Some(ArgShape::Value) => IoctlArg::Value(arg.addr()),
        Some(ArgShape::Str) => {
            let s = arg.read_cstr(MAX_STR)?;
            IoctlArg::Str(String::from_utf8_lossy(&s).into_owned())
        }
        Some(ArgShape::Fixed(n)) => {
            let mut b = vec![0u8; n];
            arg.read_exact(&mut b)?;
            IoctlArg::Bytes(b)
        }
        Some(ArgShape::Sized) => {
            let mut head = [0u8; 4];
            arg.read_exact(&mut head)?;
            // Below 4 the server still sees the size and refuses it.
            let size = (u32::from_ne_bytes(head) as usize).clamp(4, wire::MAX_DATA);
            let mut b = vec![0u8; size];
            let n = arg.read(&mut b)?;
            b.truncate(n);
            IoctlArg::Bytes(b)
        }
    })
}

fn call(fd: BorrowedFd<'_>, kind: ObjectKind, request: u64, arg: UserPtr) -> Result<i32, Errno> {
    let p = process::current().ok_or(Errno::IO)?;
    let shape = shape::shape(kind, request);
    let wire_arg = read_arg(shape.map(|s| s.arg), arg)?;
    // The bytes in which fds are found (none for a value or a string).
    let bytes: &[u8] = match &wire_arg {
        IoctlArg::Bytes(b) => b,
        _ => &[],
    };
    let cloexec = returns_cloexec(kind, request, bytes);
    let mut carried: Vec<OwnedFd> = Vec::new();
    let mut bad_fds = Vec::new();
    if let Some(s) = shape {
        for (off, raw) in shape::fds_in(s.fds, bytes) {
            match mm::fd::fdget(raw) {
                Ok(f) => carried.push(f),
                Err(_) => bad_fds.push(off as u32),
            }
        }
    }
    let mut attach = vec![fd];
    attach.extend(carried.iter().map(AsFd::as_fd));
    let (reply, got) = p.call(&Request::Ioctl { request, arg: wire_arg, bad_fds }, &attach)?;
    drop(carried);
    match reply {
        Reply::Ioctl { ret, out, ret_fd } => {
            arg.write(&out)?;
            if !ret_fd {
                return i32::try_from(ret).map_err(|_| Errno::IO);
            }
            let fd = got.into_iter().next().ok_or(Errno::IO)?;
            if !cloexec {
                rustix::io::fcntl_setfd(&fd, FdFlags::empty())?;
            }
            let raw = fd.into_raw_fd();
            fds::mark(raw);
            Ok(raw)
        }
        Reply::IoctlErr { errno, out } => {
            arg.write(&out)?;
            Err(Errno::from_raw_os_error(errno))
        }
        other => Err(pool::unexpected(&other)),
    }
}

/// Whether the fd an ioctl returns is close-on-exec: always, as the
/// kernel's `get_unused_fd_flags(O_CLOEXEC)`, except a DMA-buffer export,
/// which takes the `open_flags` of its argument (byte 12).
fn returns_cloexec(kind: ObjectKind, request: u64, bytes: &[u8]) -> bool {
    let word = |off: usize| bytes.get(off..off + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    if kind == ObjectKind::Device
        && request == VFIO_DEVICE_FEATURE
        && word(4).is_some_and(|flags| flags & 0xffff == VFIO_DEVICE_FEATURE_DMA_BUF)
    {
        return word(12).is_some_and(|open_flags| open_flags & libc::O_CLOEXEC as u32 != 0);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn only_a_buffer_export_can_return_an_fd_without_close_on_exec() {
        let export = words(&[32, (1 << 17) | 11, 1, libc::O_RDWR as u32]);
        assert!(!returns_cloexec(ObjectKind::Device, VFIO_DEVICE_FEATURE, &export));
        let export_cloexec = words(&[32, (1 << 17) | 11, 1, (libc::O_RDWR | libc::O_CLOEXEC) as u32]);
        assert!(returns_cloexec(ObjectKind::Device, VFIO_DEVICE_FEATURE, &export_cloexec));
        assert!(returns_cloexec(ObjectKind::Group, wire::nr::VFIO_GROUP_GET_DEVICE_FD, &[]));
    }
}
