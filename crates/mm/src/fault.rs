//! The fault side of a VMA: the operations trait (analogous to
//! `vm_operations_struct`), the per-fault context handed to it (analogous to
//! `struct vm_fault`), and the outcomes.
//!
//! Installing a translation is an action on the context, as
//! `vmf_insert_pfn()` is in Linux, so that the exporter can do it while it
//! still holds the locks that made the translation valid. Success maps the
//! page(s) with `UFFDIO_CONTINUE`; SIGBUS installs a poison marker with
//! `UFFDIO_POISON`, so the access raises SIGBUS.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::io::Errno;

use crate::sys;
use crate::vma::Vma;
use crate::PAGE_SIZE;

/// Order of a 2 MiB (PMD) page with 4 KiB base pages.
pub const PMD_ORDER: u32 = 9;

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

/// Counters of the fault engine of one address space.
#[derive(Debug, Default)]
pub(crate) struct FaultCounters {
    pub order0: AtomicU64,
    pub order9: AtomicU64,
    pub fallback: AtomicU64,
    pub sigbus: AtomicU64,
    pub spurious: AtomicU64,
    pub around_pages: AtomicU64,
}

/// A snapshot of the fault counters of an address space.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultStats {
    /// Faults resolved by mapping one 4 KiB page.
    pub order0: u64,
    /// Faults resolved by mapping a whole 2 MiB page (512 pages at once).
    pub order9: u64,
    /// Huge attempts the operations refused (`VM_FAULT_FALLBACK`).
    pub fallback: u64,
    /// Faults that ended in SIGBUS.
    pub sigbus: u64,
    /// Faults for addresses no VMA covers any more, or already resolved.
    pub spurious: u64,
    /// Pages mapped by faults with fault-around (including the faulting
    /// pages themselves).
    pub around_pages: u64,
}

impl FaultCounters {
    pub(crate) fn snapshot(&self) -> FaultStats {
        FaultStats {
            order0: self.order0.load(Ordering::Relaxed),
            order9: self.order9.load(Ordering::Relaxed),
            fallback: self.fallback.load(Ordering::Relaxed),
            sigbus: self.sigbus.load(Ordering::Relaxed),
            spurious: self.spurious.load(Ordering::Relaxed),
            around_pages: self.around_pages.load(Ordering::Relaxed),
        }
    }
}

/// One fault being served, analogous to `struct vm_fault`.
pub struct VmFault<'a> {
    pub(crate) uffd: BorrowedFd<'a>,
    pub(crate) vma: &'a Vma,
    pub(crate) address: u64,
    pub(crate) write: bool,
    pub(crate) counters: &'a FaultCounters,
    /// What to wake once the operations have returned (and so released
    /// their locks): the faulting thread must not run again while the fault
    /// path still holds a lock it could want (e.g. a try-lock in hot reset).
    pub(crate) wake: Option<(u64, u64)>,
}

impl fmt::Debug for VmFault<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmFault")
            .field("address", &format_args!("{:#x}", self.address))
            .field("write", &self.write)
            .field("vma", self.vma)
            .finish()
    }
}

impl VmFault<'_> {
    /// The faulting address.
    pub fn address(&self) -> u64 {
        self.address
    }

    /// Whether the access was a write.
    pub fn is_write(&self) -> bool {
        self.write
    }

    /// `vm_start` of the faulting VMA.
    pub fn vm_start(&self) -> u64 {
        self.vma.vm_start
    }

    /// `vm_end` of the faulting VMA.
    pub fn vm_end(&self) -> u64 {
        self.vma.vm_end
    }

    /// `vm_pgoff` of the faulting VMA (as passed to mmap, advanced by splits).
    pub fn vm_pgoff(&self) -> u64 {
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
    pub fn insert_pfn(&mut self, pfn: u64, order: u32) -> VmFaultResult {
        if order != 0 && order != PMD_ORDER {
            return VmFaultResult::FALLBACK;
        }
        let size = PAGE_SIZE << order;
        self.map_range(self.address & !(size - 1), pfn, size, order)
    }

    /// A fault of `order` with fault-around: maps `[start, start + len)`
    /// (which must contain the page of `order` around the fault address and
    /// lie inside one backing piece of the VMA), backed from page frame `pfn`
    /// on, in one `UFFDIO_CONTINUE`. Analogous to Linux's
    /// `do_fault_around()` for file mappings; the caller vouches, under the
    /// same locks as for a single page, that every page of the window may be
    /// mapped. Counted as one fault of `order`.
    pub fn insert_pfn_around(&mut self, start: u64, pfn: u64, len: u64, order: u32) -> VmFaultResult {
        if order != 0 && order != PMD_ORDER {
            return VmFaultResult::FALLBACK;
        }
        if len > PAGE_SIZE << order {
            self.counters.around_pages.fetch_add(len / PAGE_SIZE, Ordering::Relaxed);
        }
        self.map_range(start, pfn, len, order)
    }

    /// Maps `[start, start + len)` from page frame `pfn` on, after checking
    /// it against the mapping, and counts one fault of `order`.
    ///
    /// Pages a racing fault already mapped end a continue early (`EEXIST`).
    /// If that leaves the faulting page unmapped, exactly that 4 KiB page is
    /// mapped next: asking again for the whole range would stop at the same
    /// mapped page, and the access would fault forever.
    fn map_range(&mut self, start: u64, pfn: u64, len: u64, order: u32) -> VmFaultResult {
        let page_va = self.address & !(PAGE_SIZE - 1);
        let size = PAGE_SIZE << order;
        let order_va = self.address & !(size - 1);
        let consistent = start % PAGE_SIZE == 0
            && len % PAGE_SIZE == 0
            && start <= order_va
            && start.checked_add(len).is_some_and(|end| order_va + size <= end && end <= self.vma.vm_end)
            && start >= self.vma.vm_start
            && self.vma.backing(start).is_some_and(|(paddr, _, _, piece_end)| {
                paddr == pfn.wrapping_mul(PAGE_SIZE) && start + len <= piece_end
            });
        if !consistent {
            tracing::error!(
                address = format_args!("{:#x}", self.address),
                start = format_args!("{start:#x}"),
                len,
                pfn = format_args!("{pfn:#x}"),
                order,
                "fault translation disagrees with the mapping; raising SIGBUS"
            );
            return self.sigbus();
        }
        // Counted before the wake, which lets the faulting thread read the
        // counters at once.
        let counter = if order == 0 { &self.counters.order0 } else { &self.counters.order9 };
        counter.fetch_add(1, Ordering::Relaxed);
        let (start, len) = match sys::uffdio_continue(self.uffd, start, len) {
            Ok(()) => (start, len),
            // Stopped by a page already mapped: fine if ours is mapped now,
            // else map just ours. (EAGAIN: the address space is changing;
            // the same answer is safe, the access retries anyway.)
            Err((Errno::EXIST | Errno::AGAIN, mapped)) if start + u64::try_from(mapped).unwrap_or(0) > page_va => {
                (start, len)
            }
            Err((Errno::EXIST | Errno::AGAIN, _)) => match sys::uffdio_continue(self.uffd, page_va, PAGE_SIZE) {
                Ok(()) | Err((Errno::EXIST | Errno::AGAIN, _)) => (page_va, PAGE_SIZE),
                Err((e, _)) => return self.continue_failed(counter, page_va, PAGE_SIZE, e),
            },
            Err((e, _)) => return self.continue_failed(counter, start, len, e),
        };
        self.wake(start, len);
        VmFaultResult(Outcome::NoPage)
    }

    fn continue_failed(&mut self, counter: &AtomicU64, start: u64, len: u64, e: Errno) -> VmFaultResult {
        counter.fetch_sub(1, Ordering::Relaxed);
        tracing::error!(start = format_args!("{start:#x}"), len, %e, "UFFDIO_CONTINUE failed; raising SIGBUS");
        self.sigbus()
    }

    /// Ends the fault in SIGBUS (analogous to returning `VM_FAULT_SIGBUS`):
    /// poisons the faulting page so the access raises SIGBUS.
    ///
    /// Call it while holding whatever lock made the decision, so that a
    /// later un-revoke (which zaps, clearing poison) is ordered after it.
    pub fn sigbus(&mut self) -> VmFaultResult {
        let page_va = self.address & !(PAGE_SIZE - 1);
        // Counted before the ioctl wakes the thread (see insert_pfn).
        self.counters.sigbus.fetch_add(1, Ordering::Relaxed);
        match sys::uffdio_poison(self.uffd, page_va, PAGE_SIZE) {
            Ok(()) => self.wake(page_va, PAGE_SIZE),
            // Mapped meanwhile by a racing fault that saw the buffer usable:
            // that fault was ordered before the revoke (which zaps), so the
            // access may proceed; wake the thread.
            Err((Errno::EXIST, _)) | Err((Errno::AGAIN, _)) => self.wake(page_va, PAGE_SIZE),
            Err((e, _)) => {
                tracing::error!(address = format_args!("{page_va:#x}"), %e, "UFFDIO_POISON failed");
                self.wake(page_va, PAGE_SIZE);
            }
        }
        VmFaultResult(Outcome::Sigbus)
    }

    /// Schedules a wake of `[start, start + len)` for when the operations
    /// have returned.
    fn wake(&mut self, start: u64, len: u64) {
        self.wake = Some(match self.wake {
            None => (start, len),
            Some((s, l)) => {
                let (lo, hi) = (s.min(start), (s + l).max(start + len));
                (lo, hi - lo)
            }
        });
    }

    /// Wakes what the fault resolved (called by the engine after the
    /// operations returned).
    pub(crate) fn wake_now(&mut self) {
        if let Some((start, len)) = self.wake.take() {
            if let Err(e) = sys::uffdio_wake(self.uffd, start, len) {
                tracing::warn!(address = format_args!("{start:#x}"), %e, "UFFDIO_WAKE failed");
            }
        }
    }
}
