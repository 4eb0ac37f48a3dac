//! The status machine: revoke, tighten, un-revoke.
//!
//! Kernel: the generic part of the exporter's `set_status` added by the series (v4 09/10),
//! with `dma_buf_invalidate_mappings()` from drivers/dma-buf/dma-buf.c; spec §4.7 and §6.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use crate::attach::{AttachmentRef, Importer};
use crate::buffer::{lock, ResvState};
use crate::{DmaBuf, Error, ResvGuard, Status, Transition};

/// How often an unbounded revoke wait logs that it is still waiting.
const STALL_WARNING_PERIOD: Duration = Duration::from_secs(5);

impl DmaBuf {
    /// Moves the buffer to status `new`; every (from, to) pair is handled here.
    ///
    /// | from → to | what happens | result |
    /// |---|---|---|
    /// | `PermRevoked` → any | nothing (absorbing) | `NoOp` |
    /// | X → X | nothing | `NoOp` |
    /// | `Ok` → `TempRevoked`/`PermRevoked` | full revoke (below) | `Revoked` |
    /// | `TempRevoked` → `PermRevoked` | status set under `resv`; no invalidate, no wait, no zap | `Tightened` |
    /// | `TempRevoked` → `Ok` | status set under `resv`, then CPU mappings zapped; no invalidate, no wait | `Unrevoked` |
    ///
    /// Full revoke:
    /// 1. Under `resv`, publish the new status. From now on attach, importer map and the
    ///    CPU fault path fail.
    /// 2. Still under `resv`, call every live importer's
    ///    [`Importer::invalidate_mappings`].
    /// 3. Release `resv` (no fences are modelled, so there is nothing to wait for under it).
    /// 4. Wait until every importer mapping is unmapped, on a condition variable paired
    ///    with `resv`, so importers can unmap from any thread meanwhile. Bounded by
    ///    [`DmaBuf::set_revoke_timeout`] if set, else unbounded like the kernel; bounded in
    ///    practice because [`DmaBuf::attach`] admits only revocable importers.
    /// 5. Zap every registered CPU mapping ([`DmaBuf::zap_cpu_mappings`]) with no lock of
    ///    this crate held.
    /// 6. Nothing to re-arm: the wait is a predicate over the live-mapping count, not a
    ///    one-shot completion, so the buffer is already in its post-creation shape.
    ///
    /// Once a revoke has returned `Ok`, no importer mapping exists and none can be made
    /// until an un-revoke; with the caller's lock also held by the fault path, no CPU page
    /// table entry exists either.
    ///
    /// Deviation: un-revoke zaps CPU mappings too. Accesses while revoked left poison
    /// markers (the SIGBUS pages of the memory layer); zapping clears them so the next
    /// access faults and is served. The kernel has no markers to clear.
    ///
    /// Preconditions: the caller holds the exporter's serialising lock for write (the
    /// device's `memory_lock`), which keeps faults from installing entries between the status
    /// change and the zap. This crate cannot see that lock; debug builds only detect two
    /// concurrent `set_status` calls on one buffer. Must not be called with this buffer's
    /// `resv` held.
    ///
    /// An importer that panics in its callback unwinds through this function: the status
    /// stays revoked, but the wait and the zap do not happen.
    ///
    /// # Errors
    ///
    /// - `ETIMEDOUT` ([`Error::ImporterTimeout`]): only with a revoke timeout set, when
    ///   importer mappings are still live when it expires. An error is logged naming the
    ///   buffer and the count; the status stays revoked and CPU mappings are still zapped.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use dmabuf::*;
    /// # #[derive(Debug)] struct Exporter;
    /// # impl DmaBufOps for Exporter {
    /// #     fn release(&self, _buf: &DmaBuf) {}
    /// #     fn as_any(&self) -> &dyn std::any::Any { self }
    /// # }
    /// # let buf = DmaBuf::export(ExportInfo { ops: Arc::new(Exporter),
    /// #     ranges: vec![PhysVec { paddr: page::PhysAddr(0), len: 0x1000 }], name: None,
    /// #     mode: AccessMode::ReadWrite, initial_status: Status::Ok })?;
    /// assert_eq!(buf.set_status(Status::TempRevoked)?, Transition::Revoked);
    /// assert_eq!(buf.set_status(Status::Ok)?, Transition::Unrevoked);
    /// assert_eq!(buf.set_status(Status::PermRevoked)?, Transition::Revoked);
    /// assert_eq!(buf.set_status(Status::Ok)?, Transition::NoOp);
    /// assert_eq!(buf.status(), Status::PermRevoked);
    /// # Ok::<(), dmabuf::Error>(())
    /// ```
    pub fn set_status(&self, new: Status) -> Result<Transition, Error> {
        let _serialised = SetStatusCheck::enter(&self.in_set_status);
        let state = self.lock_state();
        // Stable: we hold resv, the only place status is written.
        let old = self.status();
        match (old, new) {
            (Status::PermRevoked, Status::Ok | Status::TempRevoked | Status::PermRevoked) => Ok(Transition::NoOp),
            (Status::Ok, Status::Ok) | (Status::TempRevoked, Status::TempRevoked) => Ok(Transition::NoOp),
            (Status::Ok, Status::TempRevoked | Status::PermRevoked) => self.revoke(state, new),
            (Status::TempRevoked, Status::PermRevoked) => {
                // Everything was torn down by the revoke that made it temporary.
                self.store_status(&state, new);
                Ok(Transition::Tightened)
            }
            (Status::TempRevoked, Status::Ok) => {
                // Kernel v4: no invalidate on un-revoke; importers re-map on their own.
                self.store_status(&state, new);
                drop(state);
                // Zap after publishing Ok: a fault that poisons a page must have seen the
                // revoked status, i.e. happened before this point, so its marker is
                // cleared here (see the Deviation line above).
                self.zap_cpu_mappings();
                Ok(Transition::Unrevoked)
            }
        }
    }

    /// Bounds the importer wait of a revoke; `None` (the default) waits forever, as the
    /// kernel does. See [`DmaBuf::set_status`] for what happens on expiry.
    pub fn set_revoke_timeout(&self, timeout: Option<Duration>) {
        *lock(&self.revoke_timeout) = timeout;
    }

    /// The bound set by [`DmaBuf::set_revoke_timeout`].
    #[must_use]
    pub fn revoke_timeout(&self) -> Option<Duration> {
        *lock(&self.revoke_timeout)
    }

    /// Steps 1–6 of a full revoke (see [`DmaBuf::set_status`]); `state` is `resv`, held.
    fn revoke(&self, state: MutexGuard<'_, ResvState>, new: Status) -> Result<Transition, Error> {
        // 1. Publish under resv. Attach and map check status under resv, so every attach
        //    either happened before (and is invalidated below) or fails.
        self.store_status(&state, new);

        // 2. Invalidate under resv. Upgraded references are collected first: the callback
        //    gets the guard mutably, so the list cannot stay borrowed.
        let importers: Vec<(u64, Arc<dyn Importer>)> = state
            .attachments
            .iter()
            .filter_map(|entry| entry.importer.upgrade().map(|importer| (entry.id, importer)))
            .collect();
        let mut resv = ResvGuard { buf: self, state };
        for (id, importer) in &importers {
            importer.invalidate_mappings(&AttachmentRef { buf: self, id: *id }, &mut resv);
        }

        // 3. Unlock, and only then drop our importer references: if one was the last, the
        //    importer's destructor unmaps its mappings, which takes resv.
        drop(resv);
        drop(importers);

        // 4. Wait for the importers. Now guaranteed on success: no importer mapping exists,
        //    and none can be made while the status stays revoked.
        let waited = self.wait_for_importers();

        // 5. Zap CPU mappings, whether or not the importers made it in time.
        self.zap_cpu_mappings();

        // 6. Nothing to re-arm (see the function doc).
        waited.map(|()| Transition::Revoked)
    }

    /// Step 4: waits until the importer mapping count is zero, or the revoke timeout.
    /// Kernel: `wait_for_completion()` on the exporter's `comp`.
    fn wait_for_importers(&self) -> Result<(), Error> {
        let timeout = self.revoke_timeout();
        let state = self.lock_state();
        let pending = |state: &mut ResvState| state.importer_mappings > 0;
        let outstanding = match timeout {
            None => {
                // Unbounded, as in the kernel, but never silent: say every
                // few seconds who is being waited for.
                let mut state = state;
                let mut waited = Duration::ZERO;
                loop {
                    let (s, r) = self
                        .unmapped
                        .wait_timeout_while(state, STALL_WARNING_PERIOD, pending)
                        .unwrap_or_else(PoisonError::into_inner);
                    state = s;
                    if !r.timed_out() {
                        break;
                    }
                    waited += STALL_WARNING_PERIOD;
                    tracing::warn!(
                        buffer = self.id,
                        name = %self.display_name(),
                        outstanding = state.importer_mappings,
                        waited_s = waited.as_secs(),
                        "revoke still waiting for importers to unmap (no timeout set)"
                    );
                }
                state.importer_mappings
            }
            Some(timeout) => {
                let (state, _) =
                    self.unmapped.wait_timeout_while(state, timeout, pending).unwrap_or_else(PoisonError::into_inner);
                state.importer_mappings
            }
        };
        if outstanding == 0 {
            return Ok(());
        }
        tracing::error!(
            buffer = self.id,
            name = %self.display_name(),
            outstanding,
            ?timeout,
            "importers did not unmap the buffer in time; revoke proceeds without them"
        );
        Err(Error::ImporterTimeout { id: self.id, outstanding })
    }
}

/// Marks a `set_status` in progress on one buffer. Its precondition (the exporter's
/// serialising lock) is invisible here; two overlapping calls are the symptom of breaking
/// it that we can see, so debug builds assert against them.
struct SetStatusCheck<'a>(&'a AtomicBool);

impl<'a> SetStatusCheck<'a> {
    fn enter(flag: &'a AtomicBool) -> Self {
        let busy = flag.swap(true, Ordering::AcqRel);
        debug_assert!(
            !busy,
            "concurrent set_status on one buffer: the caller must hold the exporter's serialising lock"
        );
        SetStatusCheck(flag)
    }
}

impl Drop for SetStatusCheck<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::export_ok;

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "concurrent set_status")]
    fn overlapping_set_status_calls_are_caught_in_debug_builds() {
        let buf = export_ok();
        // As if another thread were inside set_status on this buffer.
        buf.in_set_status.store(true, Ordering::SeqCst);
        let _ = buf.set_status(Status::TempRevoked);
    }

    #[test]
    fn set_status_leaves_the_busy_flag_clear() {
        let buf = export_ok();
        for status in [Status::TempRevoked, Status::Ok, Status::PermRevoked] {
            assert!(buf.set_status(status).is_ok());
            assert!(!buf.in_set_status.load(Ordering::SeqCst));
        }
    }

    #[test]
    fn revoke_timeout_defaults_to_waiting_forever() {
        let buf = export_ok();
        assert_eq!(buf.revoke_timeout(), None);
        buf.set_revoke_timeout(Some(Duration::from_millis(5)));
        assert_eq!(buf.revoke_timeout(), Some(Duration::from_millis(5)));
    }
}
