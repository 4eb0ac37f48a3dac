//! The notify thread: the server's `Notify::Mapping` messages, applied.
//!
//! One per process (per fork generation), started before the first mmap
//! (the server notifies a mapping as soon as it registers it, before it
//! replies to the mmap). For each message: take the mapping's lock for
//! write, set `allowed`, zap the mapping's pages in our address space
//! (`MADV_DONTNEED`: revoked pages go, poison markers of earlier SIGBUSes
//! go), release, acknowledge. The server's revoke returns only after every
//! process that maps the buffer acknowledged, so a revoke that returned
//! left no page mapped here (see `vma` for why).
//!
//! The thread blocks every signal: the program's handlers run on the
//! program's threads. It ends when the server closes the connection.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;

use mm::MappingId;
use rustix::io::Errno;
use wire::transport::WireError;
use wire::{Notify, Request, Role};

use crate::process::Process;

/// Connects the notify connection and starts the thread.
pub(crate) fn start(p: &'static Process) -> Result<(), Errno> {
    let conn = p.connect(Role::Notify)?;
    p.notify_fd.store(conn.as_raw_fd(), Ordering::Release);
    std::thread::Builder::new()
        .name("vfio-dmabuf-notify".into())
        .spawn(move || {
            crate::abi::block_signals();
            run(p, &conn);
            p.notify_fd.store(-1, Ordering::Release);
        })
        .map(drop)
        .map_err(|e| {
            tracing::error!(%e, "cannot start the notify thread");
            Errno::AGAIN
        })
}

fn run(p: &Process, conn: &OwnedFd) {
    loop {
        match wire::transport::recv::<Notify>(conn) {
            Ok((Notify::Mapping { seq, mapping, allowed }, _)) => {
                apply(p, mapping, allowed);
                if let Err(e) = wire::transport::send(conn, &Request::Ack { seq }, &[]) {
                    tracing::warn!(%e, "cannot acknowledge a notification");
                    return;
                }
            }
            Err(WireError::Sys(Errno::INTR)) => {}
            Err(WireError::Closed) => return,
            Err(e) => {
                tracing::warn!(%e, "notify connection failed; mappings no longer follow revocation");
                return;
            }
        }
    }
}

/// Applies one notification (see the module doc).
fn apply(p: &Process, mapping: u64, allowed: bool) {
    let Some(m) = p.mappings().get(&mapping).cloned() else {
        // Unmapped meanwhile: nothing left to zap.
        return;
    };
    let mut a = m.allowed.write().unwrap_or_else(|e| e.into_inner());
    *a = allowed;
    if let Some(aspace) = p.aspace_if_made() {
        if let Err(e) = aspace.mapping_handle(MappingId(mapping)).zap() {
            tracing::error!(mapping, %e, "zap after a notification failed");
        }
    }
    drop(a);
    p.notified.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(mapping, allowed, "notified");
}
