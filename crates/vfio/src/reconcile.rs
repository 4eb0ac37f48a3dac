//! Cut frames and buffer statuses. A frame of a RAM BAR may be CUT OFF
//! (see `mm::frames`): every process's mappings of it are zapped and any
//! later access is SIGBUS, e.g. when a process does not acknowledge a
//! revoke in time. The core, which knows every buffer and its status, gives
//! the frame back as soon as any page of it is reachable again:
//!
//! - after a permanent revoke of one buffer, each cut frame that an `Ok`
//!   buffer's ranges intersect is restored (the primary still maps the
//!   pages through another buffer); a revoke of every buffer leaves none
//!   `Ok`, so nothing comes back until its un-revoke;
//! - before an un-revoke pass makes buffers `Ok`, the cut frames their
//!   ranges touch are restored (a mapping that faults once the status is
//!   `Ok` finds its pages);
//! - a buffer exported `Ok` (an explicit export, or the per-mapping buffer
//!   of a device-fd mmap) restores the cut frames its ranges touch before
//!   anyone can map it (a range re-exported after a permanent revoke that
//!   cut a process off).
//!
//! Cut frames of a closed device stay cut: its memory goes with it.
//!
//! Preconditions of everything here: `memory_lock` held for write (the
//! guard proves a lock is held), so no status changes meanwhile.

use dmabuf::{PhysVec, Status};

use crate::core::VfioPciDevice;
use crate::private::{BarStore, MemoryWriteGuard};

impl VfioPciDevice {
    /// After a permanent revoke: restores the cut frames an `Ok` buffer reaches.
    pub(crate) fn restore_reachable_frames(&self, mem: &mut MemoryWriteGuard<'_>) {
        self.restore_frames_of(mem, |s| s == Status::Ok);
    }

    /// Before an un-revoke pass: restores the cut frames of every buffer
    /// that the pass makes `Ok` (all but the permanently revoked).
    pub(crate) fn restore_frames_to_unrevoke(&self, mem: &mut MemoryWriteGuard<'_>) {
        self.restore_frames_of(mem, |s| s != Status::PermRevoked);
    }

    /// A buffer about to be listed `Ok`: restores the cut frames it touches.
    pub(crate) fn restore_frames_of_new(&self, buf: &dmabuf::DmaBuf) {
        if self.has_cut_frames() {
            self.restore_ranges(buf.ranges());
        }
    }

    /// Whether a frame of any RAM BAR is cut off.
    fn has_cut_frames(&self) -> bool {
        (0..6).filter_map(|i| self.bar(i)).any(|bar| matches!(&bar.store, BarStore::Ram(m) if m.has_cut_frames()))
    }

    fn restore_frames_of(&self, mem: &mut MemoryWriteGuard<'_>, wanted: impl Fn(Status) -> bool) {
        // Nearly always nothing is cut: a revoke then costs nothing here,
        // however many buffers the device has.
        if !self.has_cut_frames() {
            return;
        }
        let bufs: Vec<_> = mem.dmabufs.values().filter_map(std::sync::Weak::upgrade).collect();
        for buf in bufs {
            if wanted(buf.status()) {
                self.restore_ranges(buf.ranges());
            }
            // Its release takes this lock: never the last reference here.
            mem.defer_drop(buf);
        }
    }

    /// Restores every cut frame of a RAM BAR that `ranges` touch.
    fn restore_ranges(&self, ranges: &[PhysVec]) {
        for r in ranges {
            for bar in (0..6).filter_map(|i| self.bar(i)) {
                let BarStore::Ram(m) = &bar.store else { continue };
                for i in m.frames_of(r.paddr, r.len) {
                    match m.restore(i) {
                        Ok(true) => tracing::debug!(memory = m.name(), frame = i, "cut frame restored"),
                        Ok(false) => {}
                        Err(e) => tracing::error!(memory = m.name(), frame = i, %e, "cannot restore a cut frame"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
