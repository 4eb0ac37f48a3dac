//! The notify thread: the server's `Notify::Mapping` messages, applied.
//!
//! One per process (per fork generation), started before the first mmap
//! (the server notifies a mapping as soon as it registers it, before it
//! replies to the mmap). The first message on the connection is the
//! process's status page (`Notify::StatusPage`, its sealed memfd
//! attached), received before the thread starts: it is mapped read-only
//! and the fd closed, so nothing the program can find in `/proc/self/fd`
//! leads to it. For each later message: record the mapping's status-page
//! slot, take the mapping's lock for
//! write, set `allowed`, zap the mapping's pages in our address space
//! (`MADV_DONTNEED`: revoked pages go, poison markers of earlier SIGBUSes
//! go), release, acknowledge. The server's revoke returns only after every
//! process that maps the buffer acknowledged, so a revoke that returned
//! left no page mapped here (see `vma` for why).
//!
//! The thread blocks every signal: the program's handlers run on the
//! program's threads. It ends when the server closes the connection.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;

use mm::{MappingId, StatusView};
use rustix::io::Errno;
use wire::transport::WireError;
use wire::{Notify, Request, Role};

use crate::process::Process;

/// Connects the notify connection, maps the status page that comes first
/// on it, and starts the thread.
pub(crate) fn start(p: &'static Process) -> Result<(), Errno> {
    let conn = p.connect(Role::Notify)?;
    receive_status_page(p, &conn)?;
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

/// The status page: mapped read-only, its fd closed on return.
fn receive_status_page(p: &Process, conn: &OwnedFd) -> Result<(), Errno> {
    match wire::transport::recv::<Notify>(conn) {
        Ok((Notify::StatusPage { slots }, fds)) => {
            let fd = fds.into_iter().next().ok_or(Errno::PROTO)?;
            let view = StatusView::map(fd.as_fd(), slots as usize).map_err(|e| {
                tracing::error!(%e, "cannot map the status page");
                e.errno()
            })?;
            drop(fd);
            let _ = p.status.set(view);
            Ok(())
        }
        Ok((other, _)) => {
            tracing::error!(?other, "the notify connection did not start with the status page");
            Err(Errno::PROTO)
        }
        Err(e) => Err(crate::pool::wire_errno(e)),
    }
}

fn run(p: &'static Process, conn: &OwnedFd) {
    loop {
        match wire::transport::recv::<Notify>(conn) {
            Ok((Notify::Mapping { seq, mapping, allowed, slot }, _)) => {
                apply(p, mapping, allowed, slot);
                if let Err(e) = wire::transport::send(conn, &Request::Ack { seq }, &[]) {
                    tracing::warn!(%e, "cannot acknowledge a notification");
                    return;
                }
            }
            Ok((Notify::StatusPage { .. }, _)) => tracing::warn!("a second status page; ignored"),
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
fn apply(p: &'static Process, mapping: u64, allowed: bool, slot: u32) {
    let Some(m) = p.mappings().get(&mapping).cloned() else {
        // Unmapped meanwhile: nothing left to zap.
        return;
    };
    if let Some(view) = p.status.get() {
        let _ = m.slot.set(crate::vma::Slot { view, index: slot as usize });
    }
    let mut a = m.allowed.write().unwrap_or_else(|e| e.into_inner());
    // The slot holds the server's latest word for the mapping (written
    // before each notification goes out). A notification that waited in
    // the queue while the process was stopped may be older than that: a
    // revoke followed by its un-revoke must not leave the mapping refusing
    // faults until the second one is read. Zapping is right either way.
    *a = m.slot_value().map_or(allowed, wire::msg::status_slot::allows);
    if let Some(aspace) = p.aspace_if_made() {
        if let Err(e) = aspace.mapping_handle(MappingId(mapping)).zap() {
            tracing::error!(mapping, %e, "zap after a notification failed");
        }
    }
    drop(a);
    p.notified.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(mapping, allowed, "notified");
}
