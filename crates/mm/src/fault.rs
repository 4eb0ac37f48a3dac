//! The fault side of a VMA: the operations trait (analogous to
//! `vm_operations_struct`), the per-fault context handed to it (analogous to
//! `struct vm_fault`), and the outcomes.
//!
//! Installing a translation is an action on the context, as
//! `vmf_insert_pfn()` is in Linux, so that the exporter can do it while it
//! still holds the locks that made the translation valid. Every insert is
//! checked against what the VMA really maps before anything is mapped. The
//! engine (`fault_engine.rs`) then maps the page(s): each aligned 2 MiB of
//! the insert whose file backing is 2 MiB aligned with one PMD
//! (`MADV_COLLAPSE`, as `vmf_insert_pfn_pmd()` maps one), the rest, and any
//! 2 MiB the collapse refuses, with `UFFDIO_CONTINUE`; or, for SIGBUS, it
//! installs a poison marker with `UFFDIO_POISON`.

use std::fmt;
use std::sync::atomic::Ordering;

use page::{Pfn, PgOff, VirtAddr, HPAGE_PMD_SIZE, PAGE_SIZE, PMD_ORDER};
use rustix::io::Errno;

use crate::fault_engine::{Collapse, Engine, PmdFallback};
use crate::sys;
use crate::vma::Vma;

/// Fault operations of a VMA, analogous to `vm_operations_struct`.
///
/// `huge_fault` is called with `order` 9 first where the 2 MiB page around
/// the fault lies inside the VMA, then with 0 (the plain `.fault`). It must
/// end every call by returning one of: [`VmFault::insert_pfn`]'s result,
/// [`VmFault::sigbus`]'s result, or [`VmFaultResult::FALLBACK`] ("try a
/// smaller order"). Never fall back at order 0: end the fault with
/// [`VmFault::sigbus`] under the lock that decided it. (The engine does turn
/// an order-0 fallback into SIGBUS as a last resort, but the poison it then
/// installs is outside the operations' locks, so a racing un-revoke could
/// miss it and leave the page poisoned.)
///
/// A panic in `huge_fault` is caught by the engine: that fault ends in
/// SIGBUS, the engine logs it once and keeps serving every mapping.
pub trait VmOperations: Send + Sync + fmt::Debug {
    /// Serves a fault of `order` for `vmf`.
    fn huge_fault(&self, vmf: &mut VmFault<'_>, order: u32) -> VmFaultResult;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    NoPage,
    Fallback,
    Sigbus,
}

/// Outcome of a fault operation (analogous to `vm_fault_t`). Only
/// [`VmFault`] can make the success and SIGBUS values, so an operation cannot
/// claim to have mapped a page it did not map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmFaultResult(Outcome);

impl VmFaultResult {
    /// `VM_FAULT_FALLBACK`: retry with a smaller order.
    pub const FALLBACK: VmFaultResult = VmFaultResult(Outcome::Fallback);

    /// Whether the fault was resolved by mapping memory.
    pub fn is_nopage(self) -> bool {
        self.0 == Outcome::NoPage
    }

    /// Whether the fault ended in SIGBUS.
    pub fn is_sigbus(self) -> bool {
        self.0 == Outcome::Sigbus
    }

    /// Whether a smaller order should be tried.
    pub fn is_fallback(self) -> bool {
        self.0 == Outcome::Fallback
    }
}

/// A fault-around window: `len` bytes of virtual addresses from `start`,
/// backed by consecutive page frames from `pfn` on. Passed to
/// [`VmFault::insert_pfn_around`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PfnWindow {
    /// First virtual address of the window (page aligned).
    pub start: VirtAddr,
    /// Length in bytes (a page multiple).
    pub len: u64,
    /// The frame backing `start`; each following page takes the next frame.
    pub pfn: Pfn,
}

/// One fault being served, analogous to `struct vm_fault`.
pub struct VmFault<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) vma: &'a Vma,
    pub(crate) address: VirtAddr,
    pub(crate) write: bool,
    /// What to wake once the operations have returned (and so released
    /// their locks): the faulting thread must not run again while the fault
    /// path still holds a lock it could want (e.g. a try-lock in hot reset).
    pub(crate) wake: Option<(VirtAddr, u64)>,
}

impl fmt::Debug for VmFault<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmFault")
            .field("address", &self.address)
            .field("write", &self.write)
            .field("vma", self.vma)
            .finish()
    }
}

impl VmFault<'_> {
    /// The faulting address.
    pub fn address(&self) -> VirtAddr {
        self.address
    }

    /// Whether the access was a write.
    pub fn is_write(&self) -> bool {
        self.write
    }

    /// `vm_start` of the faulting VMA.
    pub fn vm_start(&self) -> VirtAddr {
        self.vma.vm_start
    }

    /// `vm_end` of the faulting VMA.
    pub fn vm_end(&self) -> VirtAddr {
        self.vma.vm_end
    }

    /// `vm_pgoff` of the faulting VMA (as passed to mmap, advanced by splits).
    pub fn vm_pgoff(&self) -> PgOff {
        self.vma.vm_pgoff
    }

    /// Maps the page of `order` that contains the fault address, backed by
    /// page frame `pfn` (analogous to `vmf_insert_pfn()`/`vmf_insert_pfn_pmd()`).
    ///
    /// The engine checks that `pfn` is what this VMA really maps at that
    /// address, over the whole page: a mismatch means the translation and the
    /// mapping disagree, which is a bug; it is logged and the fault SIGBUSes
    /// rather than exposing the wrong memory. Orders other than 0 and 9
    /// return [`VmFaultResult::FALLBACK`], as Linux does for orders the
    /// architecture cannot map.
    pub fn insert_pfn(&mut self, pfn: Pfn, order: u32) -> VmFaultResult {
        if order != 0 && order != PMD_ORDER {
            return VmFaultResult::FALLBACK;
        }
        let size = PAGE_SIZE << order;
        self.map_range(PfnWindow { start: self.address.align_down(size), len: size, pfn }, order)
    }

    /// A fault of `order` with fault-around: maps the whole `window` (which
    /// must contain the page of `order` around the fault address and lie
    /// inside one backing piece of the VMA) in one `UFFDIO_CONTINUE`.
    /// Analogous to Linux's `do_fault_around()` for file mappings; the
    /// caller vouches, under the same locks as for a single page, that every
    /// page of the window may be mapped. Counted as one fault of `order`.
    pub fn insert_pfn_around(&mut self, window: PfnWindow, order: u32) -> VmFaultResult {
        if order != 0 && order != PMD_ORDER {
            return VmFaultResult::FALLBACK;
        }
        self.map_range(window, order)
    }

    /// Maps `window` after checking it against the mapping, and counts one
    /// fault of `order`. (A continue stopped early by a page a racing fault
    /// mapped still maps the faulting page: see `Engine::map_window`.)
    fn map_range(&mut self, window: PfnWindow, order: u32) -> VmFaultResult {
        let page_va = self.address.page_down();
        let size = PAGE_SIZE << order;
        let order_va = self.address.align_down(size);
        // The kernel VMA holding the fault (one frame run).
        let run = self.vma.frame_run(page_va);
        if run.is_some_and(|(run_start, run_end)| order_va < run_start || order_va.0 + size > run_end.0) {
            // A PMD over frames smaller than it: the kernel cannot map it
            // (it would span VMAs); the order-0 fault comes next.
            return VmFaultResult::FALLBACK;
        }
        let PfnWindow { start, len, pfn } = window;
        let consistent = start.is_page_aligned()
            && len % PAGE_SIZE == 0
            && start <= order_va
            && start.checked_add(len).is_some_and(|end| order_va.0 + size <= end.0 && end <= self.vma.vm_end)
            && start >= self.vma.vm_start
            && self.vma.backing(start).is_some_and(|b| Some(b.paddr) == pfn.phys() && start.0 + len <= b.piece_end.0);
        if !consistent {
            tracing::error!(
                address = %self.address,
                start = %start,
                len,
                pfn = %pfn,
                order,
                "fault translation disagrees with the mapping; raising SIGBUS"
            );
            return self.sigbus();
        }
        // The aligned 2 MiB pieces wholly inside the window, each mapped with
        // one PMD where its backing allows (each lies in one frame run, and
        // a collapse needs nothing more); the rest with PTEs, frame run by
        // frame run, as one UFFDIO_CONTINUE cannot span two kernel VMAs.
        let (huge, unaligned) = self.huge_pieces(start, VirtAddr(start.0 + len));
        if !huge.is_empty() {
            return self.map_huge(window, &huge, unaligned, order);
        }
        // No PMD: one continue, inside the frame run of the fault
        // (fault-around stops at its ends).
        let (mut start, mut len) = (start, len);
        if let Some((run_start, run_end)) = run {
            let end = start.0 + len;
            let (s, e) = (start.max(run_start), end.min(run_end.0));
            if s.0 < e {
                (start, len) = (s, e - s.0);
            }
        }
        // None of the window's aligned 2 MiB pieces could have a PMD (above).
        let unaligned = (start.0 + len).saturating_sub(start.0.next_multiple_of(HPAGE_PMD_SIZE)) / HPAGE_PMD_SIZE;
        match self.engine.map_window(start, len, page_va) {
            Ok(mapped) => {
                // Counted before the wake, which lets the faulting thread
                // read the counters at once. A retried fault whose page was
                // mapped meanwhile is not one the kernel would have taken.
                if mapped.fresh {
                    self.count_fresh(len, order, unaligned);
                } else {
                    self.engine.counters.spurious.fetch_add(1, Ordering::Relaxed);
                }
                self.wake(mapped.start, mapped.len);
                VmFaultResult(Outcome::NoPage)
            }
            Err(e) => self.continue_failed(start, len, e),
        }
    }

    /// The aligned 2 MiB pieces wholly inside `[start, end)` that may have a
    /// PMD, and how many others there are.
    fn huge_pieces(&self, start: VirtAddr, end: VirtAddr) -> (Vec<VirtAddr>, u64) {
        let (mut huge, mut unaligned) = (Vec::new(), 0);
        let mut h = start.0.next_multiple_of(HPAGE_PMD_SIZE);
        while h + HPAGE_PMD_SIZE <= end.0 {
            if self.vma.huge_backed(VirtAddr(h)) {
                huge.push(VirtAddr(h));
            } else {
                unaligned += 1;
            }
            h += HPAGE_PMD_SIZE;
        }
        (huge, unaligned)
    }

    /// Counts a new fault of `order` that mapped `len` bytes, `unaligned` of
    /// whose 2 MiB pieces could not be PMD-mapped for their backing.
    fn count_fresh(&self, len: u64, order: u32, unaligned: u64) {
        let counters = &self.engine.counters;
        let counter = if order == 0 { &counters.order0 } else { &counters.order9 };
        counter.fetch_add(1, Ordering::Relaxed);
        if len > PAGE_SIZE << order {
            counters.around_pages.fetch_add(len / PAGE_SIZE, Ordering::Relaxed);
        }
        counters.pmd_fallback[PmdFallback::Unaligned as usize].fetch_add(unaligned, Ordering::Relaxed);
    }

    /// Maps `window`, whose 2 MiB pieces `huge` may be PMD-mapped: each by
    /// `MADV_COLLAPSE` (falling back to `UFFDIO_CONTINUE` of that 2 MiB on
    /// any failure), the rest of the window by `UFFDIO_CONTINUE`; then one
    /// wake of the whole window. Still one fault of `order`: the kernel's
    /// `vmf_insert_pfn_pmd()` is one fault too.
    ///
    /// A collapse cannot report that the page was mapped already, so a
    /// retried fault is told apart first, by the page tables themselves.
    fn map_huge(&mut self, window: PfnWindow, huge: &[VirtAddr], unaligned: u64, order: u32) -> VmFaultResult {
        let PfnWindow { start, len, .. } = window;
        let page_va = self.address.page_down();
        let engine = self.engine;
        // Unreadable tables: the fault counts as new.
        if engine.page_in_tables(page_va) == Some(true) {
            engine.counters.spurious.fetch_add(1, Ordering::Relaxed);
            self.wake(page_va, PAGE_SIZE);
            return VmFaultResult(Outcome::NoPage);
        }
        let mut cursor = start;
        let mut mapped = Ok(());
        for &h in huge {
            mapped = mapped.and_then(|()| self.continue_part(cursor, h, page_va));
            if mapped.is_err() {
                break;
            }
            let holds_fault = h <= page_va && page_va.0 < h.0 + HPAGE_PMD_SIZE;
            let collapsed = engine.collapse(h);
            // The faulting page must be mapped before its thread is woken,
            // whatever the collapse said (else it would fault again at once).
            let collapsed = match collapsed {
                // Unreadable tables: the continue check of the collapse is
                // then the only one.
                Ok(()) if holds_fault && engine.page_in_tables(page_va) == Some(false) => {
                    Err(Collapse::Failed(PmdFallback::Empty))
                }
                other => other,
            };
            mapped = match collapsed {
                Ok(()) => {
                    engine.counters.pmd_mapped.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(Collapse::Continued) => {
                    engine.counters.count_pmd_fallback(PmdFallback::Empty);
                    Ok(())
                }
                Err(Collapse::Failed(cause)) => {
                    tracing::debug!(address = %h, ?cause, "2 MiB not PMD-mapped; mapping PTEs");
                    engine.counters.count_pmd_fallback(cause);
                    self.continue_part(h, VirtAddr(h.0 + HPAGE_PMD_SIZE), page_va)
                }
            };
            cursor = VirtAddr(h.0 + HPAGE_PMD_SIZE);
        }
        let end = VirtAddr(start.0 + len);
        match mapped.and_then(|()| self.continue_part(cursor, end, page_va)) {
            Ok(()) => {
                self.count_fresh(len, order, unaligned);
                self.wake(start, len);
                VmFaultResult(Outcome::NoPage)
            }
            Err(e) => self.continue_failed(start, len, e),
        }
    }

    /// `UFFDIO_CONTINUE` of `[from, to)` (possibly empty) within a window,
    /// one call per frame run (kernel VMA) it crosses: where it holds the
    /// faulting page, that page ends up mapped (see
    /// `Engine::map_window`); elsewhere a part a racing fault mapped first
    /// is left as it is.
    fn continue_part(&self, from: VirtAddr, to: VirtAddr, page_va: VirtAddr) -> Result<(), Errno> {
        let mut from = from;
        while from < to {
            let run_end = self.vma.frame_run(from).map_or(to, |(_, e)| e.min(to));
            self.continue_run(from, run_end, page_va)?;
            from = run_end;
        }
        Ok(())
    }

    /// [`Self::continue_part`] inside one frame run.
    fn continue_run(&self, from: VirtAddr, to: VirtAddr, page_va: VirtAddr) -> Result<(), Errno> {
        if from <= page_va && page_va < to {
            return self.engine.map_window(from, to.0 - from.0, page_va).map(drop);
        }
        match sys::uffdio_continue(self.engine.uffd(), from.0, to.0 - from.0) {
            Ok(()) | Err((Errno::EXIST | Errno::AGAIN, _)) => Ok(()),
            Err((e, _)) => Err(e),
        }
    }

    fn continue_failed(&mut self, start: VirtAddr, len: u64, e: Errno) -> VmFaultResult {
        tracing::error!(start = %start, len, %e, "UFFDIO_CONTINUE failed; raising SIGBUS");
        self.sigbus()
    }

    /// Ends the fault in SIGBUS (analogous to returning `VM_FAULT_SIGBUS`):
    /// poisons the faulting page so the access raises SIGBUS.
    ///
    /// Call it while holding whatever lock made the decision, so that a
    /// later un-revoke (which zaps, clearing poison) is ordered after it.
    pub fn sigbus(&mut self) -> VmFaultResult {
        let page_va = self.address.page_down();
        // Counted before the wake lets the thread run (see insert_pfn).
        self.engine.counters.sigbus.fetch_add(1, Ordering::Relaxed);
        self.engine.poison(page_va);
        self.wake(page_va, PAGE_SIZE);
        VmFaultResult(Outcome::Sigbus)
    }

    /// Schedules a wake of `[start, start + len)` for when the operations
    /// have returned.
    fn wake(&mut self, start: VirtAddr, len: u64) {
        self.wake = Some(match self.wake {
            None => (start, len),
            Some((s, l)) => {
                let (lo, hi) = (s.0.min(start.0), (s.0 + l).max(start.0 + len));
                (VirtAddr(lo), hi - lo)
            }
        });
    }
}
