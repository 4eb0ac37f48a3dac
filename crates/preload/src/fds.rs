//! Which descriptors are ours, and what `close` does with them.
//!
//! An object fd is recognised by its tag ([`wire::tag::peek`]: one
//! `recv(MSG_PEEK | MSG_DONTWAIT)`), however it reached the process. That
//! costs a system call, which the calls that only matter on object fds
//! (`ioctl`, `mmap`, `pread`, `close`) pay on every descriptor. `read`,
//! `write` and `lseek` are too frequent for that: they look first at a
//! bitmap of descriptor numbers we handed out ourselves (by `open` or an
//! ioctl that returns an fd), and peek only at those. A number in the map
//! that now names something else is peeked and passed on; an object fd the
//! map does not know (a `dup`, one received over a socket) reaches the
//! C library's `read`, which consumes its tag: see the crate docs.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use wire::tag::Tag;
use wire::Request;

use crate::process::{self, Internal};

const MAP_FDS: usize = 1 << 16;
static MAYBE_OURS: [AtomicU64; MAP_FDS / 64] = [const { AtomicU64::new(0) }; MAP_FDS / 64];

fn bit(fd: i32) -> Option<(&'static AtomicU64, u64)> {
    let fd = usize::try_from(fd).ok().filter(|&f| f < MAP_FDS)?;
    Some((&MAYBE_OURS[fd / 64], 1 << (fd % 64)))
}

/// Notes that we handed out object fd `fd`.
pub(crate) fn mark(fd: i32) {
    if let Some((w, b)) = bit(fd) {
        w.fetch_or(b, Ordering::Relaxed);
    }
}

/// Whether `fd` may be one of ours (see the module doc): `false` is
/// certain only for the calls that consult the map.
pub(crate) fn maybe_ours(fd: i32) -> bool {
    bit(fd).is_some_and(|(w, b)| w.load(Ordering::Relaxed) & b != 0)
}

fn unmark(fd: i32) {
    if let Some((w, b)) = bit(fd) {
        w.fetch_and(!b, Ordering::Relaxed);
    }
}

/// The tag of `fd` when the library is active and `fd` is an object fd.
pub(crate) fn tag(fd: BorrowedFd<'_>) -> Option<Tag> {
    process::current()?;
    wire::tag::peek(fd)
}

/// What `close` must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// A descriptor of no interest: close it.
    Foreign,
    /// An object fd: close it, then let the server run the release.
    Object,
    /// Our notify connection: pretend (closing it would leave our mappings
    /// deaf to revocation).
    Keep,
}

/// Decides before `close(fd)`.
pub(crate) fn before_close(fd: i32) -> Option<Closing> {
    let p = process::current()?;
    match p.is_internal(fd) {
        Internal::Notify => return Some(Closing::Keep),
        Internal::Pooled => {
            // The program closes a number it thinks is free: let the pool
            // forget it, and the C library close it.
            std::mem::forget(p.pool.forget(fd));
            return Some(Closing::Foreign);
        }
        Internal::No => {}
    }
    let borrowed = crate::abi::borrowed(fd)?;
    Some(if wire::tag::peek(borrowed).is_some() { Closing::Object } else { Closing::Foreign })
}

/// After a successful `close` of an object fd: the server handles every
/// pending hang-up before it answers, so a last close has taken effect
/// (the device released, the group free to open again) when we return.
pub(crate) fn after_close(fd: i32) {
    unmark(fd);
    sync_releases();
}

/// After a wait reaped a child: its exit closed its object fds, and a last
/// close among them takes effect before the wait returns.
pub(crate) fn after_reap() {
    sync_releases();
}

/// Waits until the server has handled every pending hang-up.
fn sync_releases() {
    if let Some(p) = process::current() {
        if let Err(e) = p.call_ok(&Request::Sync, &[]) {
            tracing::warn!(%e, "cannot wait for the server to release a closed object");
        }
    }
}
