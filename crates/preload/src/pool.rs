//! Control connections to the server, kept in a lock-free pool.
//!
//! A request takes a connection out of a slot (an atomic swap), uses it for
//! one request and its reply, and puts it back into an empty slot; with no
//! idle connection it opens a new one, and one that finds no empty slot is
//! closed. A signal handler (an emulated register access) takes and gives
//! back the same way, and when it must open a connection it uses
//! [`connect_small`], which allocates nothing. Our descriptors live at
//! numbers from [`HIGH_FD`] on, out of the way of the numbers a program
//! uses and expects the kernel to hand out.

use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SocketAddrUnix, SocketFlags, SocketType};
use wire::transport::WireError;
use wire::{Reply, Request, Role};

use crate::abi::FdSlot;

/// Idle connections kept per process.
const SLOTS: usize = 8;

/// Our descriptors are moved to this number or above.
pub(crate) const HIGH_FD: i32 = 512;

/// The idle control connections of one process.
#[derive(Debug)]
pub(crate) struct Pool {
    slots: [FdSlot; SLOTS],
}

impl Pool {
    pub(crate) const fn new() -> Pool {
        Pool { slots: [const { FdSlot::empty() }; SLOTS] }
    }

    /// An idle connection, if there is one. Async-signal-safe.
    pub(crate) fn take(&self) -> Option<OwnedFd> {
        self.slots.iter().find_map(FdSlot::take)
    }

    /// Puts a connection back, or closes it when every slot is full.
    /// Async-signal-safe.
    pub(crate) fn give(&self, mut conn: OwnedFd) {
        for s in &self.slots {
            match s.put(conn) {
                Ok(()) => return,
                Err(c) => conn = c,
            }
        }
    }

    /// Whether an idle slot holds descriptor `raw`.
    pub(crate) fn holds(&self, raw: i32) -> bool {
        self.slots.iter().any(|s| s.holds(raw))
    }

    /// Takes out (and closes) connection `raw`, which the program closes.
    pub(crate) fn forget(&self, raw: i32) -> Option<OwnedFd> {
        self.slots.iter().find(|s| s.holds(raw)).and_then(FdSlot::take)
    }

    /// Closes every idle connection (a fork child's copies of the parent's).
    pub(crate) fn drain(&self) {
        while self.take().is_some() {}
    }
}

/// Moves `fd` to [`HIGH_FD`] or above (close-on-exec); keeps it where it
/// is when that fails.
pub(crate) fn move_high(fd: OwnedFd) -> OwnedFd {
    if std::os::fd::AsRawFd::as_raw_fd(&fd) >= HIGH_FD {
        return fd;
    }
    rustix::io::fcntl_dupfd_cloexec(&fd, HIGH_FD).unwrap_or(fd)
}

/// A connected, not yet greeted, socket to the server. Raw system calls
/// only, and no log (the caller logs where it may): async-signal-safe.
///
/// # Errors
///
/// The errno of `socket` or `connect` (`ENOENT`, `ECONNREFUSED` when the
/// server is gone).
pub(crate) fn connect(addr: &SocketAddrUnix) -> Result<OwnedFd, Errno> {
    let sock = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    loop {
        match rustix::net::connect(&sock, addr) {
            Ok(()) => return Ok(move_high(sock)),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A greeted control connection opened from a signal handler: no
/// allocation (the `Hello` reply is read into a small buffer and only its
/// arrival matters; a longer packet is cut, which `SOCK_SEQPACKET`
/// allows).
pub(crate) fn connect_small(addr: &SocketAddrUnix, token: u64) -> Result<OwnedFd, Errno> {
    let conn = connect(addr)?;
    wire::transport::send_small(conn.as_fd(), &Request::Hello { token, role: Role::Control }).map_err(|_| Errno::IO)?;
    let mut buf = [0u8; 16];
    loop {
        match rustix::net::recv(&conn, &mut buf, RecvFlags::empty()) {
            Ok((0, _)) => return Err(Errno::IO),
            Ok(_) => return Ok(conn),
            Err(Errno::INTR) => continue,
            Err(_) => return Err(Errno::IO),
        }
    }
}

/// The errno a failed exchange with the server gives the program.
pub(crate) fn wire_errno(e: WireError) -> Errno {
    match e {
        WireError::Sys(Errno::INTR) => Errno::INTR,
        WireError::Sys(e) => {
            tracing::warn!(%e, "request to the server failed");
            Errno::IO
        }
        WireError::Closed | WireError::Malformed => {
            tracing::warn!(%e, "the server's answer was lost");
            Errno::IO
        }
    }
}

/// A reply of the wrong kind: a server bug, reported as `EIO`.
pub(crate) fn unexpected(r: &Reply) -> Errno {
    tracing::error!(reply = ?r, "unexpected reply from the server");
    Errno::IO
}
