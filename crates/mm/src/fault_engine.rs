//! The fault engine: the thread that serves an address space's userfaultfd.
//!
//! Every VMA is registered in MINOR mode, so the first touch of each page
//! (and the first after a zap) stops in the kernel and queues a message on
//! the userfaultfd. One thread per address space runs this loop:
//!
//! 1. **Wait** in `poll` for the userfaultfd or the stop eventfd.
//! 2. **Drain** every pending message (non-blocking reads) before waiting
//!    again, so a burst of faults costs one wake-up of this thread.
//! 3. **Classify** each message ([`classify`]): a page fault is served; every
//!    other event kind is named and ignored, with the reason below.
//! 4. **Serve** a fault ([`Engine::serve`]): under `mmap_lock` (read), find
//!    the VMA and call its operations, huge order first where the aligned
//!    2 MiB fits the VMA, then order 0. The operations end the fault through
//!    [`VmFault`]: `MADV_COLLAPSE` of each 2 MiB that may have a PMD
//!    ([`Engine::collapse`]), `UFFDIO_CONTINUE` of the rest
//!    ([`Engine::map_window`]), or `UFFDIO_POISON` ([`Engine::poison`]),
//!    all without waking (a collapse raises no userfault and wakes nobody).
//! 5. **Wake** the faulting thread (`UFFDIO_WAKE`) only after the operations
//!    returned, i.e. after they released their locks.
//!
//! Why the loop ends: only when the stop eventfd fires, which the address
//! space's `Drop` does after the last safe probe of its mappings is over.
//! Nothing on a fault ends it: a panicking exporter is caught and its fault
//! becomes SIGBUS; an errno from an ioctl becomes SIGBUS for that page plus a
//! log line; failed reads and polls are retried. A dead handler would leave
//! every thread that touches any mapping of this address space asleep in
//! the kernel forever.
//!
//! Kernel: `handle_userfault()` and the `UFFDIO_*` ioctls in
//! `fs/userfaultfd.c`; the serving order follows `__handle_mm_fault()`
//! (`create_huge_pmd()` before `handle_pte_fault()`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use page::{VirtAddr, HPAGE_PMD_SIZE, PAGE_SIZE, PMD_ORDER};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::aspace::Inner;
use crate::fault::VmFault;
use crate::sys::{self, UffdMsg};

/// Counters of the fault engine of one address space.
#[derive(Debug, Default)]
pub(crate) struct FaultCounters {
    pub order0: AtomicU64,
    pub order9: AtomicU64,
    pub fallback: AtomicU64,
    pub sigbus: AtomicU64,
    pub spurious: AtomicU64,
    pub around_pages: AtomicU64,
    pub panics: AtomicU64,
    pub pmd_mapped: AtomicU64,
    /// Indexed by [`PmdFallback`].
    pub pmd_fallback: [AtomicU64; PmdFallback::COUNT],
}

/// What [`Engine::map_window`] mapped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mapped {
    /// First byte mapped (and to wake).
    pub(crate) start: VirtAddr,
    /// Bytes mapped.
    pub(crate) len: u64,
    /// Whether the faulting page was mapped by this call rather than
    /// already present.
    pub(crate) fresh: bool,
}

/// Why [`Engine::collapse`] did not map a PMD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collapse {
    /// Nothing mapped by the collapse: continue the 2 MiB with PTEs.
    Failed(PmdFallback),
    /// The collapse installed nothing and its check mapped the 2 MiB with
    /// PTEs instead: done (counted as [`PmdFallback::Empty`]).
    Continued,
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
    /// Fault operations that panicked (each one's fault ended in SIGBUS).
    pub panics: u64,
    /// 2 MiB pieces that faults mapped with one PMD (`MADV_COLLAPSE`): an
    /// order-9 fault's page, or an aligned 2 MiB of a fault-around window.
    pub pmd_mapped: u64,
    /// 2 MiB pieces that faults mapped with 512 PTEs instead, by cause.
    pub pmd_fallback: PmdFallbacks,
}

/// Why a 2 MiB piece of a fault was mapped with PTEs rather than one PMD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PmdFallback {
    Unaligned = 0,
    Invalid,
    Busy,
    NoMemory,
    Empty,
    Other,
}

impl PmdFallback {
    const COUNT: usize = 6;

    /// The cause of a failed `MADV_COLLAPSE`, by its errno.
    fn of(e: Errno) -> Self {
        match e {
            Errno::INVAL => PmdFallback::Invalid,
            Errno::AGAIN => PmdFallback::Busy,
            Errno::NOMEM | Errno::BUSY => PmdFallback::NoMemory,
            _ => PmdFallback::Other,
        }
    }
}

/// 2 MiB pieces mapped with PTEs instead of a PMD, by cause (see
/// [`FaultStats::pmd_fallback`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PmdFallbacks {
    /// The piece's file offset is not 2 MiB aligned, or the piece does not
    /// lie in one file: no 2 MiB folio can back it.
    pub unaligned: u64,
    /// `MADV_COLLAPSE` said `EINVAL`: a poison marker inside, a VMA split
    /// inside (mprotect), THP disabled for the process, a truncated file.
    pub invalid: u64,
    /// `EAGAIN`: pages held by someone else (e.g. a pipe), or locked.
    pub busy: u64,
    /// `ENOMEM` or `EBUSY`: no 2 MiB folio could be allocated or charged.
    pub no_memory: u64,
    /// The collapse succeeded but installed no PMD (seen where no whole
    /// aligned 2 MiB could be mapped); the pages were continued instead.
    pub empty: u64,
    /// Any other errno.
    pub other: u64,
}

impl PmdFallbacks {
    /// All causes together.
    pub fn total(&self) -> u64 {
        self.unaligned + self.invalid + self.busy + self.no_memory + self.empty + self.other
    }
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
            panics: self.panics.load(Ordering::Relaxed),
            pmd_mapped: self.pmd_mapped.load(Ordering::Relaxed),
            pmd_fallback: {
                let n = |c: PmdFallback| self.pmd_fallback[c as usize].load(Ordering::Relaxed);
                PmdFallbacks {
                    unaligned: n(PmdFallback::Unaligned),
                    invalid: n(PmdFallback::Invalid),
                    busy: n(PmdFallback::Busy),
                    no_memory: n(PmdFallback::NoMemory),
                    empty: n(PmdFallback::Empty),
                    other: n(PmdFallback::Other),
                }
            },
        }
    }

    pub(crate) fn count_pmd_fallback(&self, cause: PmdFallback) {
        self.pmd_fallback[cause as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The serving half of an address space: its userfaultfd, its counters and
/// the once-only log flags.
#[derive(Debug)]
pub(crate) struct Engine {
    uffd: OwnedFd,
    /// `/proc/self/pagemap`, to tell a retried fault from a new one where a
    /// collapse, which cannot say so itself, maps the page. `None` where
    /// procfs is not mounted: every such fault then counts as new.
    pagemap: Option<OwnedFd>,
    pub(crate) counters: FaultCounters,
    /// Whether a panicking fault operation was logged (once per engine: a
    /// broken exporter would otherwise flood the log, one line per touch).
    panic_logged: AtomicBool,
    /// Whether an event we did not ask for was logged (once per engine).
    odd_event_logged: AtomicBool,
}

/// One message, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// A thread is waiting on a page of a registered range.
    PageFault { address: VirtAddr, write: bool },
    /// A kind we do not serve; see [`classify`] for why each is safe to drop.
    Ignored(&'static str),
}

/// Names a message.
///
/// We ask only for `UFFD_FEATURE_MINOR_SHMEM` and `UFFD_FEATURE_POISON`, so
/// only `UFFD_EVENT_PAGEFAULT` can arrive; the kernel blocks the thread that
/// raised a non-cooperative event until the message is *read*, so reading
/// and dropping one never leaves anyone waiting. Why we do not ask for them:
/// - `FORK` (`UFFD_FEATURE_EVENT_FORK`): a child would inherit our ranges
///   only with a second userfaultfd to serve. Without it the child's copies
///   are plain shared mappings until the child adopts them into an address
///   space of its own (`AddressSpace::adopt`).
/// - `REMAP` (`…_EVENT_REMAP`): mremap of our ranges is not offered; the
///   VMA table is changed only by our own mmap and munmap.
/// - `REMOVE` (`…_EVENT_REMOVE`): our zap *is* `MADV_DONTNEED`, issued under
///   exporter locks; with the event, the zap would block until this thread
///   read it, while this thread may be waiting on those very locks.
/// - `UNMAP` (`…_EVENT_UNMAP`): munmap runs under `mmap_lock` (write); with
///   the event it would wait on this thread, which may be waiting on
///   `mmap_lock` (read) for a fault.
///
/// Every page fault in a MINOR range is a minor fault (the page is in the
/// page cache, as `PhysMemory` guarantees); a fault without the MINOR flag
/// cannot occur, and would be served the same way (a continue of a page
/// that is not there fails, which ends in SIGBUS).
fn classify(msg: &UffdMsg) -> Event {
    match msg.event {
        sys::UFFD_EVENT_PAGEFAULT => {
            Event::PageFault { address: VirtAddr(msg.arg1), write: msg.arg0 & sys::UFFD_PAGEFAULT_FLAG_WRITE != 0 }
        }
        sys::UFFD_EVENT_FORK => Event::Ignored("UFFD_EVENT_FORK"),
        sys::UFFD_EVENT_REMAP => Event::Ignored("UFFD_EVENT_REMAP"),
        sys::UFFD_EVENT_REMOVE => Event::Ignored("UFFD_EVENT_REMOVE"),
        sys::UFFD_EVENT_UNMAP => Event::Ignored("UFFD_EVENT_UNMAP"),
        _ => Event::Ignored("an unknown userfaultfd event"),
    }
}

impl Engine {
    pub(crate) fn new(uffd: OwnedFd) -> Self {
        let pagemap = rustix::fs::open("/proc/self/pagemap", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| tracing::warn!(%e, "cannot open /proc/self/pagemap; retried huge faults count as new"))
            .ok();
        Self {
            uffd,
            pagemap,
            counters: FaultCounters::default(),
            panic_logged: AtomicBool::new(false),
            odd_event_logged: AtomicBool::new(false),
        }
    }

    pub(crate) fn uffd(&self) -> BorrowedFd<'_> {
        self.uffd.as_fd()
    }

    /// The thread's body: wait, drain, classify, serve, wake, until `stop`
    /// fires (see the module doc for why nothing else ends it).
    pub(crate) fn run(&self, aspace: &Inner, stop: &OwnedFd) {
        let mut msgs = [UffdMsg::default(); 64];
        loop {
            let mut fds = [PollFd::new(&self.uffd, PollFlags::IN), PollFd::new(stop, PollFlags::IN)];
            match poll(&mut fds, None) {
                Ok(_) => {}
                // EINTR: a signal; ENOMEM: the kernel could not allocate its
                // poll table this time. Both are worth another try.
                Err(Errno::INTR | Errno::NOMEM) => continue,
                Err(e) => {
                    // EFAULT/EINVAL cannot happen for two fds on our stack.
                    // Retrying keeps the engine alive if one ever does.
                    tracing::error!(%e, "poll on the userfaultfd failed; retrying");
                    std::thread::yield_now();
                    continue;
                }
            }
            if !fds[1].revents().is_empty() {
                return;
            }
            self.drain(aspace, &mut msgs);
        }
    }

    /// Reads and handles every pending message, until the non-blocking read
    /// says there are none (`EAGAIN`).
    fn drain(&self, aspace: &Inner, msgs: &mut [UffdMsg]) {
        loop {
            let n = match sys::uffd_read(self.uffd(), msgs) {
                Ok(0) | Err(Errno::AGAIN) => return,
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => {
                    // Cannot happen on an API-initialised userfaultfd; back to
                    // poll, which reports it again if it persists.
                    tracing::error!(%e, "read from the userfaultfd failed");
                    return;
                }
            };
            for m in &msgs[..n] {
                match classify(m) {
                    Event::PageFault { address, write } => self.serve(aspace, address, write),
                    Event::Ignored(kind) => {
                        if !self.odd_event_logged.swap(true, Ordering::Relaxed) {
                            tracing::warn!(kind, "userfaultfd event we did not ask for; ignored");
                        }
                    }
                }
            }
        }
    }

    /// Serves one fault: huge order first where the aligned 2 MiB lies in the
    /// VMA, then order 0; then wakes the faulting thread.
    fn serve(&self, aspace: &Inner, address: VirtAddr, write: bool) {
        let _mmap = aspace.mmap_lock.read().unwrap_or_else(|e| e.into_inner());
        let Some(vma) = aspace.lock_vmas().find(address).cloned() else {
            // Unmapped meanwhile: wake the thread; its retry finds no mapping
            // and takes SIGSEGV from the kernel.
            self.counters.spurious.fetch_add(1, Ordering::Relaxed);
            self.wake(address.page_down(), PAGE_SIZE);
            return;
        };
        let huge_start = address.align_down(HPAGE_PMD_SIZE);
        let huge_fits = huge_start >= vma.vm_start && huge_start.0 + HPAGE_PMD_SIZE <= vma.vm_end.0;
        let orders: &[u32] = if huge_fits { &[PMD_ORDER, 0] } else { &[0] };
        for &order in orders {
            let mut vmf = VmFault { engine: self, vma: &vma, address, write, wake: None };
            // The exporter's code runs here. A panic in it must not end this
            // thread: its fault becomes SIGBUS and serving goes on. Unwind
            // safety: `vmf` is discarded after this fault, and the exporter's
            // own state is its business (its mutexes report the poisoning).
            let r = catch_unwind(AssertUnwindSafe(|| vma.ops.huge_fault(&mut vmf, order)));
            let r = match r {
                Ok(r) => r,
                Err(_) => {
                    self.counters.panics.fetch_add(1, Ordering::Relaxed);
                    if !self.panic_logged.swap(true, Ordering::Relaxed) {
                        tracing::error!(%address, order, vma = ?vma, "fault operation panicked; raising SIGBUS (logged once)");
                    }
                    // The operations' locks were released by the unwind, so
                    // this poison is not ordered against an un-revoke; the
                    // un-revoke's zap clears it if it comes later, and an
                    // earlier one leaves the page poisoned until the next zap.
                    vmf.sigbus()
                }
            };
            if r.is_fallback() {
                self.counters.fallback.fetch_add(u64::from(order > 0), Ordering::Relaxed);
                if order == 0 {
                    tracing::warn!(%address, "order-0 fault fell back; raising SIGBUS");
                    vmf.sigbus();
                }
            }
            // The operations have returned, so their locks are released: only
            // now may the faulting thread run again.
            if let Some((start, len)) = vmf.wake.take() {
                self.wake(start, len);
            }
            if !r.is_fallback() {
                return;
            }
        }
        // `vma` is a clone, but it cannot hold the last reference to the ops:
        // the table's copy lives at least until we release `mmap_lock`.
    }

    /// `UFFDIO_CONTINUE` of `[start, start + len)` without waking, making
    /// sure the page at `page_va` ends up mapped; returns the range mapped
    /// and whether this call mapped `page_va` itself.
    ///
    /// A racing fault may have mapped part of the range already: the
    /// continue stops there with `EEXIST` (and `EAGAIN` when the address
    /// space is changing under it; the access retries either way). If that
    /// leaves `page_va` unmapped, exactly that page is continued next:
    /// asking again for the whole range would stop at the same mapped page,
    /// and the access would fault forever. When `page_va` was mapped
    /// already, the message was a retry of a fault served meanwhile (a
    /// thread whose wait a signal or a wider wake-up ended faults again
    /// before the first continue lands): the kernel would not have faulted.
    pub(crate) fn map_window(&self, start: VirtAddr, len: u64, page_va: VirtAddr) -> Result<Mapped, Errno> {
        match sys::uffdio_continue(self.uffd(), start.0, len) {
            Ok(()) => Ok(Mapped { start, len, fresh: true }),
            Err((Errno::EXIST | Errno::AGAIN, mapped)) => {
                // A negative count is an errno, not a length (STYLE §5.11).
                let mapped = u64::try_from(mapped).unwrap_or(0);
                if start.0 + mapped > page_va.0 {
                    return Ok(Mapped { start, len, fresh: true });
                }
                match sys::uffdio_continue(self.uffd(), page_va.0, PAGE_SIZE) {
                    Ok(()) => Ok(Mapped { start: page_va, len: PAGE_SIZE, fresh: true }),
                    Err((Errno::EXIST | Errno::AGAIN, _)) => {
                        Ok(Mapped { start: page_va, len: PAGE_SIZE, fresh: false })
                    }
                    Err((e, _)) => Err(e),
                }
            }
            Err((e, _)) => Err(e),
        }
    }

    /// `UFFDIO_POISON` of the page at `page_va` without waking, so the access
    /// raises SIGBUS.
    pub(crate) fn poison(&self, page_va: VirtAddr) {
        match sys::uffdio_poison(self.uffd(), page_va.0, PAGE_SIZE) {
            Ok(()) => {}
            // Mapped meanwhile by a racing fault that saw the memory usable:
            // that fault was ordered before the revoke (which zaps), so the
            // access may proceed.
            Err((Errno::EXIST | Errno::AGAIN, _)) => {}
            Err((e, _)) => tracing::error!(address = %page_va, %e, "UFFDIO_POISON failed"),
        }
    }

    /// What the page tables say of `page_va`: mapped or not (see
    /// `pagemap`); `None` where they cannot be read, which is logged.
    pub(crate) fn page_in_tables(&self, page_va: VirtAddr) -> Option<bool> {
        let pagemap = self.pagemap.as_ref()?;
        sys::page_present(pagemap.as_fd(), page_va.0)
            .inspect_err(|e| tracing::warn!(address = %page_va, %e, "pagemap read failed"))
            .ok()
    }

    /// Maps the 2 MiB at `huge_va` (aligned, whole inside one shared memfd
    /// mapping at a 2 MiB-aligned file offset) with one PMD, by
    /// `MADV_COLLAPSE`, without waking. Returns why not when it did not.
    ///
    /// A collapse that reports success is checked with a `UFFDIO_CONTINUE`
    /// of the same 2 MiB: over a PMD it stops at once with `EEXIST`; where
    /// the collapse installed nothing it maps the PTEs itself, so the
    /// faulting thread is never woken to an unmapped page (which would
    /// fault, collapse and wake forever).
    pub(crate) fn collapse(&self, huge_va: VirtAddr) -> Result<(), Collapse> {
        debug_assert!(huge_va.is_aligned(HPAGE_PMD_SIZE));
        let (addr, len) = (huge_va.0 as usize, HPAGE_PMD_SIZE as usize);
        if let Err(e) = sys::collapse_owned(addr, len) {
            return Err(Collapse::Failed(PmdFallback::of(e)));
        }
        match sys::uffdio_continue(self.uffd(), huge_va.0, HPAGE_PMD_SIZE) {
            Err((Errno::EXIST, mapped)) if mapped <= 0 => Ok(()),
            Ok(()) => Err(Collapse::Continued),
            // Part of it mapped by PTEs, or the range changing: the caller
            // continues the 2 MiB as for a failed collapse.
            Err(_) => Err(Collapse::Failed(PmdFallback::Empty)),
        }
    }

    /// `UFFDIO_WAKE` of `[start, start + len)`.
    fn wake(&self, start: VirtAddr, len: u64) {
        if let Err(e) = sys::uffdio_wake(self.uffd(), start.0, len) {
            tracing::warn!(address = %start, %e, "UFFDIO_WAKE failed");
        }
    }
}
