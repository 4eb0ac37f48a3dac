//! The fault path of every BAR mapping: the VMA's operations, `find_pfn`,
//! and the fault-around window, which comes out of the same range walk.
//!
//! Analogous to Linux's `vfio_pci_mmap_huge_fault()`,
//! `vfio_pci_vmf_insert_pfn()` and `vfio_pci_dma_buf_find_pfn()` as the
//! series leaves them in `vfio_pci_dmabuf.c` (v4 03/10, 05/10, 08/10);
//! spec §4.6, §4.6a. One fault handler serves device-fd and buffer-fd
//! mappings alike.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dmabuf::{BufOffset, DmaBuf, PhysVec, Status};
use mm::{PfnWindow, VmFault, VmFaultResult, VmOperations};
use page::{order_size, Pfn, PgOff, PhysAddr, VirtAddr, PAGE_SHIFT, PAGE_SIZE};

use super::VfioDmaBuf;
use crate::private::MemoryReadGuard;

/// How far a fault maps around itself (see [`RangeSpan::fault_around`]):
/// the aligned 32 MiB block, clipped to the VMA and the range. Each
/// userfault round trip costs a cross-thread wake-up (tens of µs here),
/// which a 2 MiB fault pays per 512 pages; a 32 MiB window pays it per 8192,
/// and a mapping that can never take 2 MiB faults costs the same.
pub const FAULT_AROUND_BYTES: u64 = 32 << 20;

/// How the pages of one BAR mapping are zapped.
///
/// A revoke (and an un-revoke, which clears poison markers) reaches every
/// mapping of a buffer through this, wherever the mapping lives.
pub(crate) enum ZapHandle {
    /// A mapping in an address space of this process: `MADV_DONTNEED` of
    /// every VMA of the mapping (splits included).
    Local(mm::MappingHandle),
    /// A mapping another process made from a [`crate::RemoteVma`]: the
    /// caller's target forwards the zap to that process and returns once it
    /// is done there.
    Remote(Arc<dyn dmabuf::CpuMapping>),
}

/// The VMA side of a BAR mapping, with the kernel's names for what it holds:
/// the buffer as `vm_file` (the VMA keeps it alive), the exporter's object as
/// `vm_private_data` (typed), and the zap handle of the mapping.
pub(crate) struct BarVma {
    /// Immutable. The buffer, kept alive by the mapping as a VMA keeps its
    /// file.
    vm_file: Arc<DmaBuf>,
    /// Immutable. The exporter's object of that buffer.
    vm_private_data: Arc<VfioDmaBuf>,
    /// Immutable. Zaps every VMA of this mapping (splits included), here
    /// or in the process that made it.
    mapping: ZapHandle,
    /// Whether a page may be mapped: set by a fault that mapped something,
    /// cleared by a zap. Written under `memory_lock` (read by faults, write
    /// by every revoke and un-revoke, which zap), read under it for write by
    /// the invariant checks; the atomic only makes the two faults that may
    /// run at once agree.
    has_entries: AtomicBool,
}

impl BarVma {
    /// The operations of a new mapping of `vm_file`, with nothing mapped
    /// yet, registered on the buffer as one of its CPU mappings (which the
    /// buffer holds weakly, so revokes reach it while the mapping lives).
    pub(crate) fn registered(vm_file: Arc<DmaBuf>, vm_private_data: Arc<VfioDmaBuf>, mapping: ZapHandle) -> Arc<Self> {
        let buf = Arc::clone(&vm_file);
        let ops = Arc::new(Self { vm_file, vm_private_data, mapping, has_entries: AtomicBool::new(false) });
        let as_cpu: Arc<dyn dmabuf::CpuMapping> = ops.clone();
        buf.register_cpu_mapping(Arc::downgrade(&as_cpu));
        ops
    }

    /// The buffer this mapping shows (and keeps alive).
    pub(crate) fn vm_file(&self) -> &Arc<DmaBuf> {
        &self.vm_file
    }

    /// The exporter's object of the buffer.
    pub(crate) fn vm_private_data(&self) -> &Arc<VfioDmaBuf> {
        &self.vm_private_data
    }

    /// The `vm_pgoff` value that corresponds to buffer offset 0.
    pub(crate) fn vma_pgoff_adjust(&self) -> PgOff {
        self.vm_private_data.vma_pgoff_adjust
    }
}

impl fmt::Debug for BarVma {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("BarVma");
        d.field("dmabuf", &self.vm_file.id());
        match &self.mapping {
            ZapHandle::Local(h) => d.field("mapping", &h.id()),
            ZapHandle::Remote(target) => d.field("remote", target),
        };
        d.finish()
    }
}

impl dmabuf::CpuMapping for BarVma {
    fn zap(&self) {
        let handle = match &self.mapping {
            ZapHandle::Local(h) => h,
            // The remote side keeps its own account of what it maps.
            ZapHandle::Remote(target) => return target.zap(),
        };
        // Cleared first: a page mapped while the zap runs sets it again.
        self.has_entries.store(false, Ordering::Relaxed);
        if let Err(e) = handle.zap() {
            // MADV_DONTNEED on our own mapping cannot fail; if it did, the
            // PTEs might survive a revoke, so say it loudly (and the
            // invariant check after the revoke will too).
            self.has_entries.store(true, Ordering::Relaxed);
            tracing::error!(buffer = self.vm_file.id(), %e, "zap of a revoked mapping failed");
        }
    }

    fn has_entries(&self) -> bool {
        match &self.mapping {
            ZapHandle::Local(_) => self.has_entries.load(Ordering::Relaxed),
            ZapHandle::Remote(target) => target.has_entries(),
        }
    }
}

impl VmOperations for BarVma {
    /// `vfio_pci_mmap_huge_fault()` (series v4 05/10, 08/10; spec §4.6).
    ///
    /// 1. The buffer is alive: this VMA holds it.
    /// 2. Under the buffer's resv, a status other than Ok is SIGBUS. The
    ///    poison is installed under resv, so an un-revoke (which sets Ok
    ///    under resv and then zaps) always clears it.
    /// 3. Status Ok under resv ⇒ cleanup has not severed the device; pin it
    ///    (an `Arc`, our registration). Now: the device outlives this fault.
    /// 4. Drop resv: resv and `memory_lock` are never nested here, so no
    ///    ABBA with revoke (which holds `memory_lock` and then takes resv).
    /// 5. Under `memory_lock` (read), re-read the status (a revoke may have
    ///    run in between), then `find_pfn` and insert, which also requires
    ///    memory decoding enabled. Now: a page is mapped only while Ok and
    ///    enabled, and no revoke can run until we let go of the lock.
    fn huge_fault(&self, vmf: &mut VmFault<'_>, order: u32) -> VmFaultResult {
        let buf = &self.vm_file;
        // Steps 2-3.
        let vdev = {
            let resv = buf.resv();
            if resv.status() != Status::Ok {
                return vmf.sigbus();
            }
            match self.vm_private_data.vdev() {
                Some(v) => v,
                None => {
                    tracing::warn!(buffer = buf.id(), "buffer Ok but severed from its device");
                    return vmf.sigbus();
                }
            }
        };
        // Step 5.
        let mem = vdev.lock_memory_read();
        if buf.status() != Status::Ok {
            return vmf.sigbus();
        }
        debug_assert!(super::invariants::check_buffer_listed(&mem, buf), "buffer {} Ok but not listed", buf.id());
        if vdev.bar(self.vm_private_data.region_index).is_some_and(|b| b.registers().is_some()) {
            // Register pages are never mapped: every access must trap so
            // that it reaches the device (emulated by `VmMmio`). No huge
            // page either, so the marker covers only the faulting page.
            let r = if order > 0 { VmFaultResult::FALLBACK } else { vmf.sigbus() };
            drop(mem);
            return r;
        }
        let vma = VmaGeometry {
            vm_start: vmf.vm_start(),
            vm_end: vmf.vm_end(),
            vm_pgoff: vmf.vm_pgoff(),
            vma_pgoff_adjust: self.vm_private_data.vma_pgoff_adjust,
        };
        let address = vmf.address();
        let r = match find_pfn(buf.ranges(), &vma, address, order) {
            PfnLookup::Found { pfn, range } => {
                let around = vdev.fault_around().then(|| range.fault_around(address, order, FAULT_AROUND_BYTES));
                self.vmf_insert_pfn(&mem, vmf, pfn, around, order)
            }
            PfnLookup::Fallback => VmFaultResult::FALLBACK,
            PfnLookup::Fault => {
                tracing::warn!(%address, order, "fault outside every range of the buffer");
                vmf.sigbus()
            }
        };
        drop(mem);
        tracing::trace!(%address, order, ?r, "BAR fault");
        r
    }
}

impl BarVma {
    /// `vfio_pci_vmf_insert_pfn()`: SIGBUS unless [`may_insert`]; otherwise
    /// map the page of `order` at `pfn`, or the whole fault-around window
    /// `around` when there is one.
    ///
    /// Preconditions: `memory_lock` held (the guard proves it).
    fn vmf_insert_pfn(
        &self,
        mem: &MemoryReadGuard<'_>,
        vmf: &mut VmFault<'_>,
        pfn: Pfn,
        around: Option<PfnWindow>,
        order: u32,
    ) -> VmFaultResult {
        if !may_insert(mem) {
            return vmf.sigbus();
        }
        let r = match around {
            Some(w) => vmf.insert_pfn_around(w, order),
            None => vmf.insert_pfn(pfn, order),
        };
        if r.is_nopage() {
            self.has_entries.store(true, Ordering::Relaxed);
        }
        r
    }
}

/// Whether a fault may map anything now: memory decoding on (D0..D2 and
/// COMMAND.MEMORY) and the device not in runtime low power. The condition
/// of Linux's `vfio_pci_vmf_insert_pfn()`.
///
/// Preconditions: `memory_lock` held (the guard proves it).
fn may_insert(mem: &MemoryReadGuard<'_>) -> bool {
    !mem.pm_runtime_engaged && mem.pci.memory_enabled()
}

/// Geometry of one VMA as the fault path sees it.
///
/// `vm_pgoff` is exactly what the user passed to `mmap` (in pages, region
/// index included for device-fd maps), advanced by the kernel's rules when the
/// VMA is split. `vma_pgoff_adjust` rebases it to 0 at the buffer's first
/// byte: the full `vm_pgoff` at mmap time for a device-fd map, 0 for an mmap of
/// an explicit DMA-buf fd.
///
/// Deviation: v4 records only the BAR page offset as the adjust and masks the
/// result to 40 bits; we use the later (WIP) full form, which gives the same
/// answer for device-fd maps and does not truncate explicit DMA-buf offsets of
/// 1 TiB or more (spec §4.2, §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmaGeometry {
    /// First virtual address of the VMA (page aligned).
    pub vm_start: VirtAddr,
    /// One past the last virtual address of the VMA (page aligned).
    pub vm_end: VirtAddr,
    /// Page offset of `vm_start` as mmap/split recorded it.
    pub vm_pgoff: PgOff,
    /// The `vm_pgoff` value that corresponds to buffer offset 0.
    pub vma_pgoff_adjust: PgOff,
}

/// Outcome of [`find_pfn`].
///
/// An internal outcome, never an errno sentinel (STYLE §5.5): the kernel
/// spelled "retry smaller" as `-EAGAIN` in v3/v4 and `-ERANGE` in the WIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PfnLookup {
    /// Map the page of the requested order starting at `pfn`.
    Found {
        /// First PFN of the page; a multiple of `1 << order`.
        pfn: Pfn,
        /// The range the page lies in, as the VMA shows it: what
        /// fault-around may map besides the page.
        range: RangeSpan,
    },
    /// A page of this order cannot be used here; retry with a smaller order
    /// (`VM_FAULT_FALLBACK`). Never returned for order 0.
    Fallback,
    /// The address cannot be translated. mmap bounds-checks against the
    /// buffer size, so this "cannot happen": the caller raises SIGBUS and logs
    /// a rate-limited warning.
    Fault,
}

impl PfnLookup {
    /// The PFN found, if any.
    #[must_use]
    pub fn pfn(&self) -> Option<Pfn> {
        match self {
            PfnLookup::Found { pfn, .. } => Some(*pfn),
            PfnLookup::Fallback | PfnLookup::Fault => None,
        }
    }
}

/// The part of one range that a VMA shows: `[va_start, va_end)`, clipped to
/// the VMA, and the PFN behind `va_start`. Every page in it translates at
/// order 0 by the same arithmetic [`find_pfn`] used for the faulting page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeSpan {
    va_start: VirtAddr,
    va_end: VirtAddr,
    pfn: Pfn,
}

impl RangeSpan {
    /// The fault-around window of a fault at `fault_addr` served at `order`:
    /// the naturally aligned block of `max_bytes` (at least the page of
    /// `order`) around the fault, clipped to this span. It holds the page of
    /// `order` around the fault, and every page of it passes exactly the
    /// checks `find_pfn` applied to that page.
    ///
    /// Deviation: Linux maps one page per order-0 fault of a VFIO BAR VMA
    /// (PFN maps have no fault-around). Mapping the neighbours that the same
    /// checks allow changes no outcome (each would be mapped by its own
    /// fault), but turns 512 userfault round trips into one.
    ///
    /// Preconditions: `fault_addr` and `order` are those this span was found
    /// for; `max_bytes` is a power of two.
    #[must_use]
    pub fn fault_around(&self, fault_addr: VirtAddr, order: u32, max_bytes: u64) -> PfnWindow {
        debug_assert!(max_bytes.is_power_of_two());
        // find_pfn() checked that the page of this order fits in 64 bits.
        let block_size = max_bytes.max(order_size(order).unwrap_or(PAGE_SIZE));
        let block = fault_addr.align_down(block_size);
        let start = block.max(self.va_start);
        let end = VirtAddr(block.0.saturating_add(block_size)).min(self.va_end);
        // The span starts at or before the faulting page and ends after it,
        // so neither difference can wrap.
        let pages = (start.0 - self.va_start.0) >> PAGE_SHIFT;
        PfnWindow { start, len: end.0 - start.0, pfn: Pfn(self.pfn.0 + pages) }
    }
}

/// `vfio_pci_dma_buf_find_pfn()`—translate a faulting address of `vma` to
/// the first PFN of the page of size `PAGE_SIZE << order` that contains it.
///
/// The VMA shows the buffer's ranges back to back: buffer byte `o` is byte
/// `o - Σ(lengths of earlier ranges)` of the range it falls in. A page of
/// order > 0 is usable only if it lies wholly inside the VMA, wholly inside
/// one range, and its PFN is a multiple of `1 << order`; otherwise the answer
/// is [`PfnLookup::Fallback`]. Neighbouring ranges are never merged, even if
/// physically contiguous, so a huge page cannot straddle them. The virtual
/// address is aligned by construction (the page is `fault_addr` rounded down).
/// The answer also carries the span of the range the page lies in, which is
/// all fault-around needs ([`RangeSpan::fault_around`]): one walk serves both.
///
/// Every caller-influenced addition and shift is checked; an overflow means
/// the geometry cannot be real and gives [`PfnLookup::Fault`], never a panic.
///
/// Kernel: `vfio_pci_dma_buf_find_pfn()`, series v4 03/10 (it subsumes the old
/// `is_aligned_for_order()`); spec §4.6 steps 1–5, worked examples §4.6a.
///
/// Preconditions: the caller holds `memory_lock` (read) and has seen the
/// buffer's status as `Ok` under it; `ranges` is the buffer's `phys_vec`,
/// immutable after export. This function reads nothing else, so it needs no
/// guard parameter.
///
/// # Examples
///
/// ```
/// use dmabuf::PhysVec;
/// use page::{PgOff, Pfn, PhysAddr, VirtAddr};
/// use vfio::{bar_start, find_pfn, VmaGeometry};
///
/// // mmap(len = 4 MiB, offset = BAR1 + 2 MiB) on the device fd.
/// let vm_pgoff = PgOff((1 << 28) | 0x200);
/// let vma = VmaGeometry {
///     vm_start: VirtAddr(0x7f00_0000_0000),
///     vm_end: VirtAddr(0x7f00_0040_0000),
///     vm_pgoff,
///     vma_pgoff_adjust: vm_pgoff,
/// };
/// let paddr = PhysAddr(bar_start(1).0 + 0x20_0000);
/// let ranges = [PhysVec { paddr, len: 0x40_0000 }];
/// let fault = VirtAddr(0x7f00_0000_1234);
/// assert_eq!(find_pfn(&ranges, &vma, fault, 0).pfn(), Some(Pfn(paddr.pfn().0 + 1)));
/// assert_eq!(find_pfn(&ranges, &vma, fault, 9).pfn(), Some(paddr.pfn()));
/// ```
#[must_use]
pub fn find_pfn(ranges: &[PhysVec], vma: &VmaGeometry, fault_addr: VirtAddr, order: u32) -> PfnLookup {
    // What to say when a page of this order cannot be served: a huge page
    // can always fall back, a base page has nowhere left to go.
    let not_here = if order > 0 { PfnLookup::Fallback } else { PfnLookup::Fault };

    // Step 1: the naturally aligned page of this order around the address.
    // An order whose page does not fit in 64 bits cannot fit in any VMA
    // either, so it is treated like a page that sticks out of the VMA.
    let Some(pagesize) = order_size(order) else {
        return not_here;
    };
    let page_va = fault_addr.align_down(pagesize);
    let Some(page_end) = page_va.checked_add(pagesize) else {
        return not_here;
    };

    // Step 2: the page must lie inside the VMA. For order 0 it always does
    // for a genuine fault, so failing here at order 0 is the impossible case.
    if page_va < vma.vm_start || page_end > vma.vm_end {
        return not_here;
    }

    // Step 3: the VMA's byte 0 is buffer byte `vma_off` (non-zero after a
    // split or for an explicit mmap at an offset). A pgoff below the adjust,
    // or one that does not survive the shift to bytes, cannot come from a
    // real mmap.
    let Some(vma_off) = vma.vm_pgoff.checked_sub(vma.vma_pgoff_adjust.0).and_then(PgOff::bytes).map(BufOffset) else {
        return PfnLookup::Fault;
    };
    // page_va >= vm_start was established in step 2.
    let Some(fault_offset) = page_va.offset_from(vma.vm_start).and_then(|d| vma_off.checked_add(d)) else {
        return PfnLookup::Fault;
    };
    let Some(fault_offset_end) = fault_offset.checked_add(pagesize) else {
        return PfnLookup::Fault;
    };

    // Step 4: walk the ranges in buffer order. `range_start_offset` is where
    // the current range begins in the buffer (the sum of earlier lengths).
    let mut range_start_offset = BufOffset(0);
    for range in ranges {
        // Buffer offsets only grow along the walk: once the page ends at or
        // before this range, no later range can contain it.
        if fault_offset_end <= range_start_offset {
            break;
        }
        // Validated ranges sum to less than 2^63; anything else is not a
        // buffer we exported.
        let Some(range_end_offset) = range_start_offset.checked_add(range.len) else {
            return PfnLookup::Fault;
        };
        if fault_offset >= range_start_offset && fault_offset_end <= range_end_offset {
            let into_range = fault_offset.0 - range_start_offset.0;
            let Some(paddr) = range.paddr.checked_add(into_range) else {
                return PfnLookup::Fault;
            };
            let pfn = paddr.pfn();
            // The whole page is in this range; it is usable only if the
            // physical side is aligned too (always true at order 0).
            if !pfn.is_aligned_to_order(order) {
                return PfnLookup::Fallback;
            }
            // The range as the VMA shows it. Its first shown byte lies at or
            // after vma_off and at or before the page (so no subtraction
            // below can wrap, and its paddr is at most `paddr`); its end lies
            // past the page, possibly far past the VMA.
            let shown = range_start_offset.max(vma_off);
            let range = RangeSpan {
                va_start: VirtAddr(vma.vm_start.0 + (shown.0 - vma_off.0)),
                va_end: VirtAddr(vma.vm_start.0.saturating_add(range_end_offset.0 - vma_off.0)).min(vma.vm_end),
                pfn: PhysAddr(range.paddr.0 + (shown.0 - range_start_offset.0)).pfn(),
            };
            return PfnLookup::Found { pfn, range };
        }
        range_start_offset = range_end_offset;
    }

    // Step 5: no single range holds the page. At order > 0 it straddles a
    // range boundary or the buffer's end; at order 0 the VMA reaches past the
    // buffer, which mmap's size check rules out.
    not_here
}

mod mmio;
#[cfg(test)]
mod tests;
