//! Region reads and writes on object fds: `pread`/`pwrite` at an offset,
//! `read`/`write` at the file position (which the server keeps, shared by
//! every dup and process, as the kernel's `f_pos`), split into
//! [`wire::MAX_DATA`] chunks. Object fds cannot seek (`ESPIPE`: the VFIO
//! device file has no `llseek`).
//!
//! A chunk that comes back short ends the call with what was done, and an
//! error after some progress returns the progress, as the kernel's loops do.

use std::os::fd::BorrowedFd;

use rustix::io::Errno;
use wire::{Reply, Request};

use crate::abi::UserPtr;
use crate::process::Process;
use crate::{fds, pool, process};

fn ours(fd: BorrowedFd<'_>) -> Option<&'static Process> {
    fds::tag(fd)?;
    process::current()
}

/// Returns the progress if there was any, else the error.
fn partial(done: usize, e: Errno) -> Result<isize, Errno> {
    if done > 0 {
        Ok(done as isize)
    } else {
        Err(e)
    }
}

/// Reads `count` bytes into `buf`, chunk by chunk, with `req` making each
/// chunk's request from (bytes done, chunk length).
fn read_chunks(
    p: &Process,
    fd: BorrowedFd<'_>,
    buf: UserPtr,
    count: usize,
    req: impl Fn(usize, u32) -> Request,
) -> Result<isize, Errno> {
    let mut done = 0;
    loop {
        let len = (count - done).min(wire::MAX_DATA);
        let data = match p.call(&req(done, len as u32), &[fd]) {
            Ok((Reply::Data(d), _)) if d.len() <= len => d,
            Ok((other, _)) => return partial(done, pool::unexpected(&other)),
            Err(e) => return partial(done, e),
        };
        if let Err(e) = buf.add(done).write(&data) {
            return partial(done, e);
        }
        done += data.len();
        if data.len() < len || done == count {
            return Ok(done as isize);
        }
    }
}

/// Writes `count` bytes from `buf`, chunk by chunk.
fn write_chunks(
    p: &Process,
    fd: BorrowedFd<'_>,
    buf: UserPtr,
    count: usize,
    req: impl Fn(usize, Vec<u8>) -> Request,
) -> Result<isize, Errno> {
    let mut done = 0;
    loop {
        let len = (count - done).min(wire::MAX_DATA);
        let mut data = vec![0u8; len];
        match buf.add(done).read(&mut data) {
            Ok(n) if n > 0 || len == 0 => data.truncate(n),
            Ok(_) => return partial(done, Errno::FAULT),
            Err(e) => return partial(done, e),
        }
        let sent = data.len();
        let n = match p.call(&req(done, data), &[fd]) {
            Ok((Reply::Count(n), _)) if n as usize <= sent => n as usize,
            Ok((other, _)) => return partial(done, pool::unexpected(&other)),
            Err(e) => return partial(done, e),
        };
        done += n;
        if n < len || done == count {
            return Ok(done as isize);
        }
    }
}

/// `pread(fd, buf, count, offset)` on an object fd.
pub(crate) fn pread(fd: BorrowedFd<'_>, buf: UserPtr, count: usize, offset: i64) -> Option<Result<isize, Errno>> {
    let p = ours(fd)?;
    if offset < 0 {
        return Some(Err(Errno::INVAL));
    }
    Some(read_chunks(p, fd, buf, count, |done, len| Request::Pread { offset: offset as u64 + done as u64, len }))
}

/// `pwrite(fd, buf, count, offset)` on an object fd.
pub(crate) fn pwrite(fd: BorrowedFd<'_>, buf: UserPtr, count: usize, offset: i64) -> Option<Result<isize, Errno>> {
    let p = ours(fd)?;
    if offset < 0 {
        return Some(Err(Errno::INVAL));
    }
    Some(write_chunks(p, fd, buf, count, |done, data| Request::Pwrite { offset: offset as u64 + done as u64, data }))
}

/// `read(fd, buf, count)` on an object fd, at its file position.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: UserPtr, count: usize) -> Option<Result<isize, Errno>> {
    let p = ours(fd)?;
    Some(read_chunks(p, fd, buf, count, |_, len| Request::Read { len }))
}

/// `write(fd, buf, count)` on an object fd, at its file position.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: UserPtr, count: usize) -> Option<Result<isize, Errno>> {
    let p = ours(fd)?;
    Some(write_chunks(p, fd, buf, count, |_, data| Request::Write { data }))
}

/// `lseek` on an object fd: `ESPIPE`.
pub(crate) fn lseek(fd: BorrowedFd<'_>) -> Option<Result<i64, Errno>> {
    ours(fd)?;
    Some(Err(Errno::SPIPE))
}
