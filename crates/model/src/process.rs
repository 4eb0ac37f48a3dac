//! A second process and the cut-off (`crates/server` `process.rs`,
//! `backstop.rs`; `crates/mm` `frames.rs`; `crates/vfio` `reconcile.rs`).
//!
//! The second process maps one buffer's page 0 through the same frame as
//! the primary (every buffer of the model lies in one frame). A revoke of
//! that buffer, after zapping the primary, sends the process a
//! notification and waits a bounded time for its acknowledgement; the
//! process's notify thread zaps its own entry and acks, or, when it has
//! stopped answering, never does. Without an ack the revoke cuts the frame
//! off: truncation zaps every process's entries of the frame, and a later
//! access finds the file ended (SIGBUS) whatever the process does. The
//! device gives the frame back as soon as a page of it is reachable again:
//! after a permanent revoke when an Ok buffer reaches it, and before an
//! un-revoke pass for the buffers the pass makes Ok.
//!
//! The process's own fault (its library) reads the buffer's status slot,
//! inserts, then re-reads the slot and zaps if it changed: the narrow hole
//! of `docs/clients.md`, which the books exempt from invariant 1 only
//! between the insert and that re-check.

use shuttle::thread;

use crate::check::{Event, Pte, Status};
use crate::protocol::{Access, MemoryWriteGuard};
use crate::world::World;
use crate::Bug;

/// Server side of a revoke of `buf` (`Process::notify` and the bounded ack
/// wait): with `memory_lock` (write) held, notify the process that maps
/// `buf`, give it a bounded number of steps to acknowledge, then cut it off
/// (`backstop::cut_off`).
pub(crate) fn notify_process(w: &World, buf: usize) {
    let Some(p) = w.process.as_ref().filter(|p| p.buf == buf) else { return };
    let seq = {
        let mut n = p.notify.lock().expect("no poisoning");
        n.sent += 1;
        n.sent
    };
    // The bound: a few scheduling points, each a chance for the ack.
    for _ in 0..2 {
        thread::yield_now();
        if p.notify.lock().expect("no poisoning").acked >= seq {
            return;
        }
    }
    if w.bug != Bug::SkipCutOff {
        cut_off(w);
    }
}

/// `PhysMemory::cut_off` of the frame: truncation zaps the frame's present
/// entries in every process (the primary's PTEs and PMDs of every buffer
/// in it, the second process's entry) before it returns.
fn cut_off(w: &World) {
    let _frame = w.frame.lock().expect("no poisoning");
    w.record(|books| {
        books.dev.frame_cut = true;
        books.saw(Event::ProcessCutOff);
        for b in &mut books.bufs {
            for pte in &mut b.ptes {
                if *pte == Pte::Present {
                    *pte = Pte::None;
                }
            }
            b.pmd = false;
            if b.client == Pte::Present {
                b.client = Pte::None;
            }
        }
        Ok(())
    });
}

/// `PhysMemory::restore` of the frame, if it is cut.
fn restore(w: &World) {
    let _frame = w.frame.lock().expect("no poisoning");
    w.record(|books| {
        if books.dev.frame_cut {
            books.dev.frame_cut = false;
            books.saw(Event::CutFrameRestored);
        }
        Ok(())
    });
}

/// Whether a listed, live buffer whose status passes `wanted` exists (the
/// real code upgrades the list's weak references: a dying buffer is gone).
fn any_listed(w: &World, mem: &MemoryWriteGuard<'_>, wanted: impl Fn(Status) -> bool) -> bool {
    mem.dmabufs
        .iter()
        .any(|&b| w.bufs[b].refs.load(shuttle::sync::atomic::Ordering::SeqCst) > 0 && wanted(w.bufs[b].status()))
}

/// `restore_reachable_frames`: after a permanent revoke, the cut frame comes
/// back if an Ok buffer reaches it.
pub(crate) fn restore_reachable_frames(w: &World, mem: &MemoryWriteGuard<'_>) {
    if w.bug != Bug::SkipRestoreAfterRevoke && any_listed(w, mem, |s| s == Status::Ok) {
        restore(w);
    }
}

/// `restore_frames_to_unrevoke`: before an un-revoke pass, the cut frame
/// comes back if the pass makes a buffer Ok (any but `PermRevoked`).
pub(crate) fn restore_frames_to_unrevoke(w: &World, mem: &MemoryWriteGuard<'_>) {
    if w.bug != Bug::SkipRestoreBeforeUnrevoke && any_listed(w, mem, |s| s != Status::PermRevoked) {
        restore(w);
    }
}

/// The process's notify thread: answers every notification sent so far by
/// zapping its entry and acknowledging, for a bounded number of polls.
pub(crate) fn answer_notifications(w: &World) {
    let Some(p) = w.process.as_ref() else { return };
    for _ in 0..4 {
        thread::yield_now();
        let mut n = p.notify.lock().expect("no poisoning");
        if n.sent > n.acked {
            let _ptl = p.ptl.lock().expect("no poisoning");
            w.record(|books| {
                books.bufs[p.buf].client = Pte::None;
                Ok(())
            });
            n.acked = n.sent;
        }
    }
}

/// A thread of the second process touches its buffer's page 0: a present
/// entry is a hit, a cut frame SIGBUS, and an empty entry faults into the
/// process's own fault thread (slot check, insert, re-check).
pub(crate) fn process_access(w: &World) -> Access {
    let Some(p) = w.process.as_ref() else { return Access::Unmapped };
    let buf = p.buf;
    for _ in 0..3 {
        let (entry, cut) = w.record(|books| Ok((books.bufs[buf].client, books.dev.frame_cut)));
        if entry == Pte::Present {
            return Access::Hit;
        }
        if cut {
            w.record(|books| {
                books.saw(Event::CutFrameRefusedAccess);
                Ok(())
            });
            return Access::Sigbus;
        }
        // The status slot, written by the server before any notification.
        if w.bufs[buf].status() != Status::Ok {
            return Access::Sigbus;
        }
        // `UFFDIO_CONTINUE`: fails on a truncated frame.
        drop(p.ptl.lock().expect("no poisoning"));
        w.record(|books| {
            let cut = books.dev.frame_cut;
            let b = &mut books.bufs[buf];
            if !cut && b.client == Pte::None {
                b.client = Pte::Present;
                b.client_recheck_pending = true;
            }
            Ok(())
        });
        // The re-check of the slot after the insert.
        drop(p.ptl.lock().expect("no poisoning"));
        w.record(|books| {
            let b = &mut books.bufs[buf];
            if b.client_recheck_pending && w.bufs[buf].status() != Status::Ok {
                b.client = Pte::None;
                books.saw(Event::ClientRecheckZapped);
            }
            books.bufs[buf].client_recheck_pending = false;
            Ok(())
        });
    }
    Access::Refaulted
}
