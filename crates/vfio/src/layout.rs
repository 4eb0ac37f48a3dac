//! Pure integer arithmetic of the VFIO-PCI layer: region offset encoding, the
//! device-feature header check, DMA-buf export range validation, mmap request
//! sizing, and the fault-time translation `find_pfn`.
//!
//! Nothing here makes a syscall or takes a lock, so every rule can be tested
//! without a kernel (STYLE §1.5). The callers in `core.rs` and `dmabuf.rs` own
//! the state and the locks; they hand this module plain integers and act on the
//! answer.
//!
//! Our "physical memory": BAR `i` of a device lives in a memfd with the BAR's
//! byte `x` at file offset `(i << 40) + x`. A physical address (`paddr`) is such
//! a file offset and a PFN is `paddr >> PAGE_SHIFT`. So [`bar_start`] is the
//! same value as the region offset [`index_to_offset`], and BARs are naturally
//! aligned to 2 MiB and 1 GiB, as real BARs usually are.
//!
//! Kernel: `include/linux/vfio_pci_core.h` (offset macros), `vfio_check_feature()`
//! (`include/linux/vfio.h`), `vfio_pci_core_mmap()`, `validate_dmabuf_input()`,
//! `vfio_pci_core_fill_phys_vec()`, `vfio_pci_dma_buf_mmap()` and
//! `vfio_pci_dma_buf_find_pfn()` (series v4 03/10, 05/10, 08/10); spec §2.1,
//! §2.2, §4.2, §4.4–§4.6.
//!
//! Errors are bare [`Errno`] values: for these checks the errno *is* the
//! result, and the caller wraps it in its own error type with context.

use dmabuf::PhysVec;
use mm::PfnWindow;
use page::{page_align, page_aligned, Pfn, PgOff, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use rustix::io::Errno;
use vfio_bindings::bindings::vfio::{
    VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET, VFIO_PCI_ROM_REGION_INDEX,
};

/// Bit position of the region index in a device-fd file offset.
pub const VFIO_PCI_OFFSET_SHIFT: u32 = 40;
/// Mask selecting the offset inside a region from a device-fd file offset.
pub const VFIO_PCI_OFFSET_MASK: u64 = (1 << VFIO_PCI_OFFSET_SHIFT) - 1;

/// Shift from a `vm_pgoff` (in pages) to its region index.
const PGOFF_INDEX_SHIFT: u32 = VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT;
/// Mask selecting the page offset inside a region from a `vm_pgoff`.
const PGOFF_BAR_MASK: u64 = VFIO_PCI_OFFSET_MASK >> PAGE_SHIFT;

/// `VFIO_PCI_OFFSET_TO_INDEX`—the region index encoded in a device-fd offset.
///
/// Returns `u64` because an arbitrary user offset can encode an index that
/// does not fit any real region count; compare before narrowing.
#[must_use]
pub const fn offset_to_index(off: u64) -> u64 {
    off >> VFIO_PCI_OFFSET_SHIFT
}

/// `VFIO_PCI_INDEX_TO_OFFSET`—the device-fd offset at which region `index`
/// starts.
///
/// Like the kernel macro, indices of 2^24 and above lose their high bits; real
/// region indices are single digits.
#[must_use]
pub const fn index_to_offset(index: u32) -> u64 {
    (index as u64) << VFIO_PCI_OFFSET_SHIFT
}

/// Physical base of BAR `index` in our memfd model of physical memory.
///
/// Analogous to Linux's `pci_resource_start()`. It equals the region offset,
/// which is what makes `/proc/self/maps` show the kernel's offset column.
#[must_use]
pub const fn bar_start(index: u32) -> u64 {
    index_to_offset(index)
}

// ---------------------------------------------------------------------------
// find_pfn
// ---------------------------------------------------------------------------

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
    pub vm_start: u64,
    /// One past the last virtual address of the VMA (page aligned).
    pub vm_end: u64,
    /// Page offset of `vm_start` as mmap/split recorded it.
    pub vm_pgoff: u64,
    /// The `vm_pgoff` value that corresponds to buffer offset 0.
    pub vma_pgoff_adjust: u64,
}

/// Outcome of [`find_pfn`].
///
/// An internal outcome, never an errno sentinel (STYLE §5.5): the kernel
/// spelled "retry smaller" as `-EAGAIN` in v3/v4 and `-ERANGE` in the WIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PfnLookup {
    /// Map the page of the requested order starting at this PFN.
    Found {
        /// First PFN of the page; a multiple of `1 << order`.
        pfn: u64,
    },
    /// A page of this order cannot be used here; retry with a smaller order
    /// (`VM_FAULT_FALLBACK`). Never returned for order 0.
    Fallback,
    /// The address cannot be translated. mmap bounds-checks against the
    /// buffer size, so this "cannot happen": the caller raises SIGBUS and logs
    /// a rate-limited warning.
    Fault,
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
/// use vfio::layout::{bar_start, find_pfn, PfnLookup, VmaGeometry};
///
/// // mmap(len = 4 MiB, offset = BAR1 + 2 MiB) on the device fd.
/// let vm_pgoff = (1 << 28) | 0x200;
/// let vma = VmaGeometry {
///     vm_start: 0x7f00_0000_0000,
///     vm_end: 0x7f00_0040_0000,
///     vm_pgoff,
///     vma_pgoff_adjust: vm_pgoff,
/// };
/// let ranges = [PhysVec { paddr: bar_start(1) + 0x20_0000, len: 0x40_0000 }];
/// let pfn = (bar_start(1) + 0x20_0000) >> 12;
/// assert_eq!(find_pfn(&ranges, &vma, 0x7f00_0000_1234, 0), PfnLookup::Found { pfn: pfn + 1 });
/// assert_eq!(find_pfn(&ranges, &vma, 0x7f00_0000_1234, 9), PfnLookup::Found { pfn });
/// ```
#[must_use]
pub fn find_pfn(ranges: &[PhysVec], vma: &VmaGeometry, fault_addr: u64, order: u32) -> PfnLookup {
    // What to say when a page of this order cannot be served: a huge page
    // can always fall back, a base page has nowhere left to go.
    let not_here = if order > 0 { PfnLookup::Fallback } else { PfnLookup::Fault };

    // Step 1: the naturally aligned page of this order around the address.
    // An order whose page does not fit in 64 bits cannot fit in any VMA
    // either, so it is treated like a page that sticks out of the VMA.
    if order >= u64::BITS - PAGE_SHIFT {
        return not_here;
    }
    let pagesize = PAGE_SIZE << order;
    let page_va = fault_addr & !(pagesize - 1);
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
    let Some(vma_off) = vma.vm_pgoff.checked_sub(vma.vma_pgoff_adjust).and_then(|p| PgOff(p).bytes()) else {
        return PfnLookup::Fault;
    };
    // page_va >= vm_start was established in step 2.
    let Some(fault_offset) = (page_va - vma.vm_start).checked_add(vma_off) else {
        return PfnLookup::Fault;
    };
    let Some(fault_offset_end) = fault_offset.checked_add(pagesize) else {
        return PfnLookup::Fault;
    };

    // Step 4: walk the ranges in buffer order. `range_start_offset` is where
    // the current range begins in the buffer (the sum of earlier lengths).
    let mut range_start_offset: u64 = 0;
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
            let Some(paddr) = range.paddr.checked_add(fault_offset - range_start_offset) else {
                return PfnLookup::Fault;
            };
            let pfn = paddr >> PAGE_SHIFT;
            // The whole page is in this range; it is usable only if the
            // physical side is aligned too (always true at order 0).
            return if pfn & ((1 << order) - 1) == 0 { PfnLookup::Found { pfn } } else { PfnLookup::Fallback };
        }
        range_start_offset = range_end_offset;
    }

    // Step 5: no single range holds the page. At order > 0 it straddles a
    // range boundary or the buffer's end; at order 0 the VMA reaches past the
    // buffer, which mmap's size check rules out.
    not_here
}

// ---------------------------------------------------------------------------
// VFIO_DEVICE_FEATURE header check
// ---------------------------------------------------------------------------

/// What the caller of [`check_feature`] should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureCheck {
    /// A `VFIO_DEVICE_FEATURE_PROBE` request for a supported operation: the
    /// ioctl returns 0 without doing anything.
    Probe,
    /// Perform the requested GET or SET.
    Go,
}

/// `vfio_check_feature()`—validate the flags and payload size of one
/// `VFIO_DEVICE_FEATURE` request against the operations a feature supports.
///
/// `flags` is the header's flags word (the feature number in its low 16 bits
/// is ignored here), `argsz` the payload size after the 8-byte header,
/// `supported_ops` the subset of `VFIO_DEVICE_FEATURE_GET | _SET` the feature
/// implements and `minsz` its minimum payload size. The checks run in the
/// kernel's order, so PROBE of a supported operation succeeds even with a
/// short payload, but PROBE of an unsupported one fails.
///
/// Kernel: `vfio_check_feature()`, `include/linux/vfio.h`; spec §2.1.
///
/// # Errors
///
/// - `EINVAL`: GET or SET is requested but not in `supported_ops`.
/// - `EINVAL`: not a probe, and neither GET nor SET is requested.
/// - `EINVAL`: not a probe, and `argsz < minsz`.
pub fn check_feature(flags: u32, argsz: usize, supported_ops: u32, minsz: usize) -> Result<FeatureCheck, Errno> {
    let requested = flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET);
    // vfio_check_feature(): an operation the feature lacks is refused even
    // when only probing for it.
    if requested & !supported_ops != 0 {
        return Err(Errno::INVAL);
    }
    // vfio_check_feature(): a probe of supported operations answers yes.
    if flags & VFIO_DEVICE_FEATURE_PROBE != 0 {
        return Ok(FeatureCheck::Probe);
    }
    // vfio_check_feature(): a real request must say which way data flows.
    if requested == 0 {
        return Err(Errno::INVAL);
    }
    // vfio_check_feature(): the payload must hold the feature's fixed part.
    if argsz < minsz {
        return Err(Errno::INVAL);
    }
    Ok(FeatureCheck::Go)
}

// ---------------------------------------------------------------------------
// VFIO_DEVICE_FEATURE_DMA_BUF export
// ---------------------------------------------------------------------------

/// One user range of the `VFIO_DEVICE_FEATURE_DMA_BUF` payload: `offset` and
/// `length` in bytes, relative to the BAR.
///
/// This is the UAPI struct itself (`struct vfio_region_dma_range`), so the
/// payload parser needs no conversion.
pub type DmaRange = vfio_bindings::bindings::vfio::vfio_region_dma_range;

/// The top bit of a DMA length, which the DMA-mapping API reserves
/// (`DMA_IOVA_USE_SWIOTLB`); a buffer's total size must leave it clear.
const DMA_IOVA_USE_SWIOTLB: u64 = 1 << 63;

/// `validate_dmabuf_input()`—check the user's ranges of an explicit export and
/// return the buffer's total size in bytes.
///
/// Ranges may overlap each other and other buffers (aliasing is allowed); only
/// their shape and their sum are checked here. Whether they fit in the BAR is
/// [`fill_phys_vec`]'s job.
///
/// Kernel: `validate_dmabuf_input()`, `vfio_pci_dmabuf.c`; spec §4.4 step 7.
///
/// Preconditions: the caller has already rejected `nr_ranges == 0` and
/// `flags != 0` (step 4) before the region checks (step 5, `ENODEV`), as the
/// kernel does. An empty slice is still refused here, with the same errno, so
/// a zero-sized buffer can never be built.
///
/// # Errors
///
/// - `EINVAL`: `ranges` is empty.
/// - `EINVAL`: a range has length 0.
/// - `EINVAL`: a range's offset or length is not page aligned.
/// - `EINVAL`: the lengths' running total overflows `u64` (EINVAL, not
///   EOVERFLOW: the kernel function says so).
/// - `EINVAL`: the total has bit 63 set.
pub fn validate_dmabuf_input(ranges: &[DmaRange]) -> Result<u64, Errno> {
    // Mirrors the nr_ranges == 0 rule of vfio_pci_core_feature_dma_buf().
    if ranges.is_empty() {
        return Err(Errno::INVAL);
    }
    let mut length_total: u64 = 0;
    for range in ranges {
        // validate_dmabuf_input(): an empty range has no pages to map.
        if range.length == 0 {
            return Err(Errno::INVAL);
        }
        // validate_dmabuf_input(): mappings and PFNs work in whole pages.
        if !page_aligned(range.offset) || !page_aligned(range.length) {
            return Err(Errno::INVAL);
        }
        // validate_dmabuf_input(): check_add_overflow() on the running total.
        length_total = length_total.checked_add(range.length).ok_or(Errno::INVAL)?;
    }
    // validate_dmabuf_input(): the size must be a valid DMA length.
    if length_total & DMA_IOVA_USE_SWIOTLB != 0 {
        return Err(Errno::INVAL);
    }
    Ok(length_total)
}

/// The core `get_dmabuf_phys` operation (`vfio_pci_core_fill_phys_vec()`):
/// turn BAR-relative ranges into physical ranges, checking each lies inside
/// the BAR `[bar_start, bar_start + bar_len)`.
///
/// The result has one [`PhysVec`] per input range, in the same order; this is
/// the buffer's `phys_vec`.
///
/// Kernel: `vfio_pci_core_fill_phys_vec()`, `vfio_pci_core.c`; spec §4.4
/// step 9. Whether the BAR is a memory BAR at all (no p2pdma provider,
/// `EINVAL`) is the caller's check.
///
/// Preconditions: `ranges` passed [`validate_dmabuf_input`].
///
/// # Errors
///
/// - `EOVERFLOW`: `bar_start + offset` overflows.
/// - `EOVERFLOW`: `bar_start + offset + length` overflows.
/// - `EINVAL`: the range ends past the end of the BAR.
pub fn fill_phys_vec(bar_start: u64, bar_len: u64, ranges: &[DmaRange]) -> Result<Vec<PhysVec>, Errno> {
    ranges
        .iter()
        .map(|range| {
            // vfio_pci_core_fill_phys_vec(): check_add_overflow() on the
            // start, then on the end, each reported as EOVERFLOW.
            let paddr = bar_start.checked_add(range.offset).ok_or(Errno::OVERFLOW)?;
            let end = paddr.checked_add(range.length).ok_or(Errno::OVERFLOW)?;
            // vfio_pci_core_fill_phys_vec(): end > bar_start + bar_len is
            // EINVAL. Compared relative to bar_start (end >= bar_start here)
            // so an implausible bar_len cannot overflow the comparison.
            if end - bar_start > bar_len {
                return Err(Errno::INVAL);
            }
            Ok(PhysVec { paddr, len: range.length })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// mmap(2) generic checks shared by both kinds of mapping
// ---------------------------------------------------------------------------

/// The checks `do_mmap()` makes on every file mapping before the driver sees
/// it; returns the page-rounded length.
///
/// Mirrors `do_mmap()` in `mm/mmap.c`: length 0 is `EINVAL`, a length that
/// overflows when rounded up to pages is `ENOMEM`, and a page offset whose end
/// overflows is `EOVERFLOW`. The offset itself arrives in pages, so its page
/// alignment (`EINVAL` in `mmap(2)`) holds by construction.
/// Top of the user address space on x86-64 with 4-level paging
/// (`TASK_SIZE`): no mapping may reach past it.
pub const TASK_SIZE: u64 = (1 << 47) - PAGE_SIZE;

/// The checks `mmap(2)` makes before it looks at the address space or the
/// file, in the kernel's order (`do_mmap()`, `get_unmapped_area()`): zero
/// length `EINVAL`; the page-rounded length wrapping `ENOMEM`; the page
/// offset plus pages wrapping `EOVERFLOW`; a length beyond `TASK_SIZE`
/// `ENOMEM`; an exact address that is unaligned `EINVAL` or reaches past
/// `TASK_SIZE` `ENOMEM`. Returns the page-rounded length. Next come the
/// `EEXIST` check of an exact address, then [`file_mmap_ok`].
///
/// # Errors
///
/// As listed.
pub fn mmap_generic_checks(offset: u64, len: u64, addr: Option<u64>) -> Result<u64, Errno> {
    let len = mmap_len_checks(offset >> PAGE_SHIFT, len)?;
    if len > TASK_SIZE {
        return Err(Errno::NOMEM);
    }
    if let Some(a) = addr {
        if a % PAGE_SIZE != 0 {
            return Err(Errno::INVAL);
        }
        if a.checked_add(len).is_none_or(|end| end > TASK_SIZE) {
            return Err(Errno::NOMEM);
        }
    }
    Ok(len)
}

/// `file_mmap_ok()`: the file window `[offset, offset + len)` must end
/// within `file_limit`, the largest offset the file type allows (any 64-bit
/// offset for the device fd, `MAX_LFS_FILESIZE` for a buffer fd).
///
/// # Errors
///
/// `EOVERFLOW` past the limit.
pub fn file_mmap_ok(offset: u64, len: u64, file_limit: u64) -> Result<(), Errno> {
    match offset.checked_add(len) {
        Some(end) if end <= file_limit => Ok(()),
        _ => Err(Errno::OVERFLOW),
    }
}

fn mmap_len_checks(vm_pgoff: u64, len: u64) -> Result<u64, Errno> {
    // do_mmap(): an empty mapping is invalid.
    if len == 0 {
        return Err(Errno::INVAL);
    }
    // do_mmap(): PAGE_ALIGN(len) wrapping to 0 is ENOMEM.
    let len = page_align(len).ok_or(Errno::NOMEM)?;
    // do_mmap(): "offset overflow?" check on pgoff + pages.
    vm_pgoff.checked_add(len >> PAGE_SHIFT).ok_or(Errno::OVERFLOW)?;
    Ok(len)
}

// ---------------------------------------------------------------------------
// Device-fd mmap
// ---------------------------------------------------------------------------

/// One `mmap(len, offset)` request on the device fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMmapRequest {
    /// The mmap offset in pages, exactly as passed (region index included).
    pub vm_pgoff: u64,
    /// The length passed to mmap in bytes, not necessarily page aligned; it
    /// is rounded up to pages as `mmap(2)` does.
    pub len: u64,
    /// `MAP_SHARED` (`VM_SHARED`) rather than `MAP_PRIVATE`.
    pub shared: bool,
}

/// What a valid device-fd mmap maps: the per-mapping buffer's single range
/// and the VMA's `vma_pgoff_adjust`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMmapPlan {
    /// Region (BAR) index, from the high bits of `vm_pgoff`.
    pub index: u32,
    /// Page offset inside the BAR (`vm_pgoff` with the index stripped).
    pub bar_pgoff: u64,
    /// Byte offset inside the BAR where the mapping starts.
    pub req_start: u64,
    /// Page-rounded length of the mapping in bytes; also the buffer's size.
    pub req_len: u64,
    /// The one range of the per-mapping buffer: `bar_start(index) +
    /// req_start`, `req_len` bytes. VMA byte 0 is buffer byte 0 is this byte.
    pub phys: PhysVec,
    /// The VMA's `vma_pgoff_adjust`: the full `vm_pgoff` (WIP form, see
    /// [`VmaGeometry`]), so an unsplit VMA translates to buffer offset 0.
    pub vma_pgoff_adjust: u64,
}

/// `vfio_pci_core_mmap()` validation and `vfio_pci_core_mmap_prep_dmabuf()`
/// sizing for one device-fd mmap.
///
/// `num_regions` is the device's region count (`VFIO_PCI_NUM_REGIONS` = 9
/// plus device-specific regions). `bar_mmap_len(i)` is `Some(pci_resource_len)`
/// for a BAR whose mmap is supported (`bar_mmap_supported[i]`, a memory BAR)
/// and `None` for a missing or register-only BAR. The mapping may extend to
/// `PAGE_ALIGN(bar_len)`, as in the kernel.
///
/// Checks run in the order the kernel makes them: `do_mmap()`'s generic
/// length checks first, then the driver's. Device-specific regions (index ≥ 9)
/// have no mmap operation in this model, so they fall under the "index ≥ ROM"
/// rule.
///
/// Kernel: `vfio_pci_core_mmap()` (steps 1–5) and
/// `vfio_pci_core_mmap_prep_dmabuf()` (sizing), series v4 04/10–05/10; spec
/// §2.2, §4.1, §4.2.
///
/// # Errors
///
/// - `EINVAL`: `len` is 0 (`do_mmap()`).
/// - `ENOMEM`: `len` rounded up to pages overflows (`do_mmap()`).
/// - `EOVERFLOW`: `vm_pgoff` plus the length in pages overflows (`do_mmap()`).
/// - `EINVAL`: the region index is `>= num_regions`.
/// - `EINVAL`: the mapping is not `MAP_SHARED`.
/// - `EINVAL`: the index is ROM, config, VGA or device-specific (`>= 6`).
/// - `EINVAL`: the BAR is missing or not mmappable.
/// - `EINVAL`: the mapping ends past `PAGE_ALIGN(bar_len)`.
pub fn plan_device_mmap(
    req: &DeviceMmapRequest,
    num_regions: u32,
    bar_mmap_len: impl Fn(u32) -> Option<u64>,
) -> Result<DeviceMmapPlan, Errno> {
    let req_len = mmap_len_checks(req.vm_pgoff, req.len)?;

    // vfio_pci_core_mmap(): the index must name an existing region. Compared
    // as u64 first: a user pgoff can encode an index beyond u32.
    let index = req.vm_pgoff >> PGOFF_INDEX_SHIFT;
    if index >= u64::from(num_regions) {
        return Err(Errno::INVAL);
    }
    let index = u32::try_from(index).map_err(|_| Errno::INVAL)?;
    // vfio_pci_core_mmap(): private (COW) mappings of device memory are
    // refused.
    if !req.shared {
        return Err(Errno::INVAL);
    }
    // vfio_pci_core_mmap(): ROM, config space and VGA are never mmappable,
    // and we model no device-specific region with its own mmap op.
    if index >= VFIO_PCI_ROM_REGION_INDEX {
        return Err(Errno::INVAL);
    }
    // vfio_pci_core_mmap(): !bar_mmap_supported[index].
    let bar_len = bar_mmap_len(index).ok_or(Errno::INVAL)?;
    // vfio_pci_core_mmap(): phys_len = PAGE_ALIGN(bar_len); a BAR length
    // that cannot be rounded is not a mappable BAR.
    let phys_len = page_align(bar_len).ok_or(Errno::INVAL)?;
    let bar_pgoff = req.vm_pgoff & PGOFF_BAR_MASK;
    // bar_pgoff < 2^28, so the shift cannot lose bits.
    let req_start = bar_pgoff << PAGE_SHIFT;
    // vfio_pci_core_mmap(): req_start + req_len > phys_len.
    let req_end = req_start.checked_add(req_len).ok_or(Errno::INVAL)?;
    if req_end > phys_len {
        return Err(Errno::INVAL);
    }

    Ok(DeviceMmapPlan {
        index,
        bar_pgoff,
        req_start,
        req_len,
        // vfio_pci_core_mmap_prep_dmabuf(): the buffer covers exactly the
        // mapped window; bar_start(index) + req_start < 2^40 * 7, no overflow.
        phys: PhysVec { paddr: bar_start(index) + req_start, len: req_len },
        vma_pgoff_adjust: req.vm_pgoff,
    })
}

// ---------------------------------------------------------------------------
// mmap of an explicit DMA-buf fd
// ---------------------------------------------------------------------------

/// One `mmap(len, offset)` request on an explicit DMA-buf fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaBufMmapRequest {
    /// The mmap offset in pages: a page offset into the buffer's
    /// concatenated ranges.
    pub vm_pgoff: u64,
    /// The length passed to mmap in bytes; rounded up to pages as `mmap(2)`
    /// does.
    pub len: u64,
    /// `MAP_SHARED` (`VM_SHARED`) rather than `MAP_PRIVATE`.
    pub shared: bool,
    /// `prot` includes `PROT_WRITE`.
    pub writable_prot: bool,
    /// The DMA-buf fd was opened without write access (`O_RDONLY`).
    pub readonly_file: bool,
    /// The DMA-buf fd was opened without read access (`O_WRONLY`).
    pub writeonly_file: bool,
}

/// Validation of an mmap of an explicit DMA-buf fd, through every layer the
/// kernel passes: VFS, dma-buf core, then `vfio_pci_dma_buf_mmap()`. Returns
/// the byte offset into the buffer at which the mapping starts (the VMA's
/// `vma_pgoff_adjust` is 0).
///
/// `size` is the buffer size in bytes. `status_ok` is the exporter's lockless
/// ("belt-and-braces") read of the buffer status: best-effort only, because
/// the fault path re-checks the status under `resv` and `memory_lock`. It is a
/// parameter so that the errno order matches the kernel's, where the status
/// check sits between the size check and the `MAP_SHARED` check (a private
/// mapping of a revoked buffer is `ENODEV`, not `EINVAL`).
///
/// The VFS `EACCES` rule comes first, before the exporter runs, because
/// `do_mmap()` checks file access before calling the file's mmap operation.
/// A write-only file cannot be mapped at all (`EACCES`, whatever the
/// protection): `do_mmap()` requires read access to map a file.
///
/// Kernel: `do_mmap()` (`mm/mmap.c`), `dma_buf_mmap_internal()`
/// (`drivers/dma-buf/dma-buf.c`), `vfio_pci_dma_buf_mmap()` (series v4 08/10);
/// spec §4.5, §5.3.
///
/// # Errors
///
/// - `EINVAL`: `len` is 0 (`do_mmap()`).
/// - `ENOMEM`: `len` rounded up to pages overflows (`do_mmap()`).
/// - `EOVERFLOW`: `vm_pgoff` plus the length in pages overflows (`do_mmap()`).
/// - `EACCES`: a write-only file, or `MAP_SHARED` with `PROT_WRITE` on a
///   read-only file (`do_mmap()`).
/// - `EINVAL`: the mapping reaches past the buffer's last page (dma-buf core).
/// - `ENODEV`: `status_ok` is false: the buffer is revoked or its device closed.
/// - `EINVAL`: the mapping is not `MAP_SHARED`.
pub fn plan_dmabuf_mmap(size: u64, req: &DmaBufMmapRequest, status_ok: bool) -> Result<u64, Errno> {
    let len = mmap_len_checks(req.vm_pgoff, req.len)?;
    // do_mmap(): a shared writable mapping needs a file opened for writing;
    // a private one is copy-on-write and does not (the exporter refuses it
    // below instead).
    if req.writeonly_file || (req.shared && req.writable_prot && req.readonly_file) {
        return Err(Errno::ACCESS);
    }
    // dma_buf_mmap_internal(): vm_pgoff + vma_pages() > size >> PAGE_SHIFT.
    // mmap_len_checks() already proved the sum fits.
    let end_pgoff = req.vm_pgoff.checked_add(len >> PAGE_SHIFT).ok_or(Errno::INVAL)?;
    if end_pgoff > size >> PAGE_SHIFT {
        return Err(Errno::INVAL);
    }
    // vfio_pci_dma_buf_mmap(): best-effort early failure for a revoked buffer.
    if !status_ok {
        return Err(Errno::NODEV);
    }
    // vfio_pci_dma_buf_mmap(): only shared mappings of device memory.
    if !req.shared {
        return Err(Errno::INVAL);
    }
    // end_pgoff <= size >> PAGE_SHIFT, so vm_pgoff << PAGE_SHIFT fits.
    PgOff(req.vm_pgoff).bytes().ok_or(Errno::INVAL)
}

/// The fault-around window of an order-0 fault (spec §4.6 extended, see
/// below): the naturally aligned `max_bytes` block of VA around the fault,
/// clipped to the VMA and to the one range the faulting page lies in, so
/// that every page of it passes exactly the checks `find_pfn` applies to the
/// faulting page. Returns the window as [`PfnWindow`], or `None` when the
/// fault is outside every range (the caller has already failed it).
///
/// Deviation: Linux maps one page per order-0 fault of a VFIO BAR VMA
/// (PFN maps have no fault-around). Mapping the neighbours that the same
/// checks allow changes no outcome (each would be mapped by its own fault),
/// but turns 512 userfault round trips into one.
pub fn fault_around_window(
    ranges: &[PhysVec],
    vma: &VmaGeometry,
    fault_addr: u64,
    max_bytes: u64,
) -> Option<PfnWindow> {
    debug_assert!(max_bytes.is_power_of_two() && max_bytes >= PAGE_SIZE);
    if fault_addr < vma.vm_start || fault_addr >= vma.vm_end {
        return None;
    }
    let page_va = fault_addr & !(PAGE_SIZE - 1);
    let vma_off = vma.vm_pgoff.checked_sub(vma.vma_pgoff_adjust)?.checked_mul(PAGE_SIZE)?;
    let fault_offset = (page_va - vma.vm_start).checked_add(vma_off)?;
    let mut range_start = 0u64;
    for r in ranges {
        let range_end = range_start.checked_add(r.len)?;
        if fault_offset >= range_start && fault_offset < range_end {
            // Range bounds in VA terms (may lie outside the VMA; clipped below).
            let range_va_start = (vma.vm_start + range_start).saturating_sub(vma_off).max(vma.vm_start);
            let range_va_end = vma.vm_start.saturating_add(range_end - vma_off.min(range_end)).min(vma.vm_end);
            let block = page_va & !(max_bytes - 1);
            let start = block.max(range_va_start);
            let end = block.saturating_add(max_bytes).min(range_va_end);
            let pfn = (r.paddr + (fault_offset - range_start) - (page_va - start)) >> PAGE_SHIFT;
            return Some(PfnWindow { start: VirtAddr(start), len: end - start, pfn: Pfn(pfn) });
        }
        range_start = range_end;
    }
    None
}

#[cfg(test)]
mod tests {

    #[test]
    fn fault_around_stays_inside_the_vma_the_range_and_the_2mib_block() {
        let two_m = 2 << 20;
        // One range of 8 MiB at BAR offset 4K, device-fd style mapping of 4 MiB.
        let ranges = [PhysVec { paddr: (1 << 40) + 0x1000, len: 4 << 20 }];
        let vma = VmaGeometry {
            vm_start: 0x7000_0000_0000 + 0x1000,
            vm_end: 0x7000_0000_0000 + 0x1000 + (4 << 20),
            vm_pgoff: 0x1000_0001,
            vma_pgoff_adjust: 0x1000_0001,
        };
        let fault = vma.vm_start + 0x5123;
        let PfnWindow { start: VirtAddr(start), len, pfn: Pfn(pfn) } =
            fault_around_window(&ranges, &vma, fault, two_m).unwrap();
        assert_eq!(start, vma.vm_start, "clipped to the VMA start");
        assert_eq!(start + len, 0x7000_0000_0000 + two_m, "ends at the 2 MiB boundary");
        assert_eq!(pfn, ((1 << 40) + 0x1000) >> 12);
        // Every page of the window translates as find_pfn says.
        let mut va = start;
        while va < start + len {
            assert_eq!(find_pfn(&ranges, &vma, va, 0), PfnLookup::Found { pfn: pfn + (va - start) / PAGE_SIZE });
            va += PAGE_SIZE;
        }
    }

    #[test]
    fn fault_around_never_crosses_a_range_boundary() {
        // Two ranges back to back in the buffer, far apart physically.
        let ranges = [PhysVec { paddr: 0x10_0000, len: 0x3000 }, PhysVec { paddr: 0x80_0000, len: 0x5000 }];
        let vma = VmaGeometry { vm_start: 0x4000_0000, vm_end: 0x4000_8000, vm_pgoff: 0, vma_pgoff_adjust: 0 };
        let w0 = fault_around_window(&ranges, &vma, 0x4000_1000, 2 << 20).unwrap();
        assert_eq!(w0, PfnWindow { start: VirtAddr(0x4000_0000), len: 0x3000, pfn: Pfn(0x100) });
        let w1 = fault_around_window(&ranges, &vma, 0x4000_6000, 2 << 20).unwrap();
        assert_eq!(w1, PfnWindow { start: VirtAddr(0x4000_3000), len: 0x5000, pfn: Pfn(0x800) });
        assert_eq!(fault_around_window(&ranges, &vma, 0x4000_8000, 2 << 20), None);
    }

    proptest! {
        #[test]
        fn fault_around_windows_agree_with_find_pfn_page_by_page(
            lens in proptest::collection::vec(1u64..40, 1..4),
            paddrs in proptest::collection::vec(0u64..1000, 4),
            head in 0u64..20, pgoff in 0u64..30, fault in 0u64..100, block_shift in 0u32..6,
        ) {
            let ranges: Vec<PhysVec> = lens.iter().zip(&paddrs).map(|(l, p)| PhysVec { paddr: p * PAGE_SIZE, len: l * PAGE_SIZE }).collect();
            let total: u64 = lens.iter().sum();
            let pgoff = pgoff % total;
            let pages = (total - pgoff).min(head + 20).max(1);
            let vm_start = 0x1_0000_0000 + head * PAGE_SIZE;
            let vma = VmaGeometry { vm_start, vm_end: vm_start + pages * PAGE_SIZE, vm_pgoff: pgoff, vma_pgoff_adjust: 0 };
            let addr = vm_start + (fault % pages) * PAGE_SIZE;
            let PfnWindow { start: VirtAddr(start), len, pfn: Pfn(pfn) } =
                fault_around_window(&ranges, &vma, addr, PAGE_SIZE << block_shift).unwrap();
            prop_assert!(start <= addr && addr < start + len && start >= vma.vm_start && start + len <= vma.vm_end);
            let mut va = start;
            while va < start + len {
                prop_assert_eq!(find_pfn(&ranges, &vma, va, 0), PfnLookup::Found { pfn: pfn + (va - start) / PAGE_SIZE });
                va += PAGE_SIZE;
            }
        }
    }
    use super::*;
    use page::{PMD_ORDER, PUD_ORDER};
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    /// A 1 GiB-aligned user virtual address for test VMAs.
    const V: u64 = 0x7f00_0000_0000;

    fn pv(paddr: u64, len: u64) -> PhysVec {
        PhysVec { paddr, len }
    }

    fn vma(vm_start: u64, vm_end: u64, vm_pgoff: u64, vma_pgoff_adjust: u64) -> VmaGeometry {
        VmaGeometry { vm_start, vm_end, vm_pgoff, vma_pgoff_adjust }
    }

    fn found(paddr: u64) -> PfnLookup {
        PfnLookup::Found { pfn: paddr >> PAGE_SHIFT }
    }

    /// `vm_pgoff` of a device-fd mmap of BAR `index` at byte `off`.
    fn dev_pgoff(index: u32, off: u64) -> u64 {
        (index_to_offset(index) + off) >> PAGE_SHIFT
    }

    fn dr(offset: u64, length: u64) -> DmaRange {
        DmaRange { offset, length }
    }

    // --- offsets -----------------------------------------------------------

    #[test]
    fn region_offsets_round_trip_through_the_index() {
        assert_eq!(index_to_offset(1), 0x100_0000_0000);
        assert_eq!(offset_to_index(0x100_0000_4000), 1);
        assert_eq!(offset_to_index(index_to_offset(5) | VFIO_PCI_OFFSET_MASK), 5);
        assert_eq!(bar_start(2), 2 << 40);
        assert_eq!(bar_start(1) % GIB, 0);
    }

    // --- find_pfn: spec §4.6a worked examples ---------------------------------

    /// §4.6a device-fd example with the spec's literal BAR base 0xfe000000:
    /// `find_pfn` only sees the ranges, so the base is irrelevant to it.
    #[test]
    fn worked_example_device_map_with_literal_bar_base() {
        let pgoff = 0x1000_0030;
        let ranges = [pv(0xfe03_0000, 0x3fd_0000)];
        let whole = vma(V, V + 0x3fd_0000, pgoff, pgoff);
        assert_eq!(find_pfn(&ranges, &whole, V + 0x5123, 0), PfnLookup::Found { pfn: 0xfe035 });
        // BAR offset 0x30000 is not 2 MiB aligned, so never huge.
        assert_eq!(find_pfn(&ranges, &whole, V + 0x5123, PMD_ORDER), PfnLookup::Fallback);
        // munmap(V + 0x3000, 0x1000): the tail VMA starts at V + 0x4000 with
        // vm_pgoff advanced by 4 pages; the adjust is unchanged.
        let tail = vma(V + 0x4000, V + 0x3fd_0000, 0x1000_0034, pgoff);
        assert_eq!(find_pfn(&ranges, &tail, V + 0x4000, 0), PfnLookup::Found { pfn: 0xfe034 });
    }

    #[test]
    fn worked_example_device_map_in_our_physical_model() {
        // mmap(len = 0x3fd0000, offset = (1 << 40) + 0x30000).
        let pgoff = dev_pgoff(1, 0x3_0000);
        assert_eq!(pgoff, 0x1000_0030);
        let ranges = [pv(bar_start(1) + 0x3_0000, 0x3fd_0000)];
        let whole = vma(V, V + 0x3fd_0000, pgoff, pgoff);
        assert_eq!(find_pfn(&ranges, &whole, V + 0x5123, 0), PfnLookup::Found { pfn: 0x1000_0035 });
        assert_eq!(find_pfn(&ranges, &whole, V + 0x5123, PMD_ORDER), PfnLookup::Fallback);
        let tail = vma(V + 0x4000, V + 0x3fd_0000, pgoff + 4, pgoff);
        assert_eq!(find_pfn(&ranges, &tail, V + 0x4000, 0), found(bar_start(1) + 0x3_4000));
    }

    #[test]
    fn worked_example_explicit_two_range_buffer_at_offset_l() {
        let l = 4 * MIB;
        let bar = bar_start(1);
        let ranges = [pv(bar + 0x3000, l), pv(bar + 0x3000 + l + 0x5000, l)];
        // mmap(len = L - 0x1000, offset = L): adjust 0, so vma_off = L.
        let m = vma(V, V + l - 0x1000, l >> PAGE_SHIFT, 0);
        assert_eq!(find_pfn(&ranges, &m, V, 0), found(bar + 0x3000 + l + 0x5000));
        // Last page of the mapping is the second-to-last page of R1.
        assert_eq!(find_pfn(&ranges, &m, V + l - 0x1001, 0), found(bar + 0x3000 + l + 0x5000 + l - 0x2000));
    }

    #[test]
    fn huge_page_straddling_physically_adjacent_ranges_falls_back() {
        // R0 and R1 are contiguous in the BAR, but the buffer keeps them
        // apart: the 2 MiB page at V spans both and is never served whole.
        let bar = bar_start(1);
        let ranges = [pv(bar, MIB), pv(bar + MIB, 3 * MIB)];
        let m = vma(V, V + 4 * MIB, 0, 0);
        assert_eq!(find_pfn(&ranges, &m, V + 0x1000, PMD_ORDER), PfnLookup::Fallback);
        assert_eq!(find_pfn(&ranges, &m, V + MIB, 0), found(bar + MIB));
        // The second 2 MiB page lies inside R1 and is aligned.
        assert_eq!(find_pfn(&ranges, &m, V + 2 * MIB, PMD_ORDER), found(bar + 2 * MIB));
    }

    // --- find_pfn: table tests (spec §9.4) ------------------------------------

    #[test]
    fn single_range_without_offset_serves_base_and_huge_pages() {
        let pgoff = dev_pgoff(1, 0);
        let ranges = [pv(bar_start(1), 4 * MIB)];
        let m = vma(V, V + 4 * MIB, pgoff, pgoff);
        assert_eq!(find_pfn(&ranges, &m, V + 0x1234, 0), found(bar_start(1) + 0x1000));
        assert_eq!(find_pfn(&ranges, &m, V + 2 * MIB + 5, PMD_ORDER), found(bar_start(1) + 2 * MIB));
        // Too small for a 1 GiB page.
        assert_eq!(find_pfn(&ranges, &m, V, PUD_ORDER), PfnLookup::Fallback);
    }

    #[test]
    fn single_range_with_huge_aligned_bar_offset_serves_huge_pages() {
        let pgoff = dev_pgoff(1, 2 * MIB);
        let ranges = [pv(bar_start(1) + 2 * MIB, 4 * MIB)];
        let m = vma(V, V + 4 * MIB, pgoff, pgoff);
        assert_eq!(find_pfn(&ranges, &m, V + 3 * MIB, PMD_ORDER), found(bar_start(1) + 4 * MIB));
        assert_eq!(find_pfn(&ranges, &m, V + 3 * MIB, 0), found(bar_start(1) + 5 * MIB));
    }

    #[test]
    fn split_vma_translates_through_the_pgoff_shift() {
        let pgoff = dev_pgoff(2, 0);
        let ranges = [pv(bar_start(2), 8 * MIB)];
        // Tail of a split at V + 2 MiB + 12 KiB.
        let delta = 2 * MIB + 0x3000;
        let tail = vma(V + delta, V + 8 * MIB, pgoff + (delta >> PAGE_SHIFT), pgoff);
        assert_eq!(find_pfn(&ranges, &tail, V + delta, 0), found(bar_start(2) + delta));
        assert_eq!(find_pfn(&ranges, &tail, V + 7 * MIB, 0), found(bar_start(2) + 7 * MIB));
        // The tail's head is shorter than 2 MiB; the next window is whole.
        assert_eq!(find_pfn(&ranges, &tail, V + delta, PMD_ORDER), PfnLookup::Fallback);
        assert_eq!(find_pfn(&ranges, &tail, V + 4 * MIB, PMD_ORDER), found(bar_start(2) + 4 * MIB));
        // The head of the split keeps the original pgoff.
        let head = vma(V, V + delta, pgoff, pgoff);
        assert_eq!(find_pfn(&ranges, &head, V + delta - 1, 0), found(bar_start(2) + delta - PAGE_SIZE));
        assert_eq!(find_pfn(&ranges, &head, V + 2 * MIB, PMD_ORDER), PfnLookup::Fallback);
    }

    #[test]
    fn multi_range_buffer_maps_each_page_to_its_range() {
        let b = bar_start(0);
        let ranges = [pv(b + 0x10_0000, 0x2000), pv(b + 0x50_0000, 0x1000), pv(b, 0x3000)];
        let m = vma(V, V + 0x6000, 0, 0);
        let expect = [b + 0x10_0000, b + 0x10_1000, b + 0x50_0000, b, b + 0x1000, b + 0x2000];
        for (i, paddr) in expect.into_iter().enumerate() {
            assert_eq!(find_pfn(&ranges, &m, V + i as u64 * PAGE_SIZE + 7, 0), found(paddr), "page {i}");
        }
    }

    #[test]
    fn aliasing_ranges_map_two_buffer_offsets_to_the_same_pfn() {
        let p = bar_start(3) + 0x4000;
        let ranges = [pv(p, 0x2000), pv(p, 0x2000)];
        let m = vma(V, V + 0x4000, 0, 0);
        assert_eq!(find_pfn(&ranges, &m, V + 0x1000, 0), found(p + 0x1000));
        assert_eq!(find_pfn(&ranges, &m, V + 0x3000, 0), found(p + 0x1000));
    }

    #[test]
    fn ranges_in_reversed_physical_order_follow_buffer_order() {
        let b = bar_start(1);
        let ranges = [pv(b + 2 * MIB, 2 * MIB), pv(b, 2 * MIB)];
        let m = vma(V, V + 4 * MIB, 0, 0);
        assert_eq!(find_pfn(&ranges, &m, V, PMD_ORDER), found(b + 2 * MIB));
        assert_eq!(find_pfn(&ranges, &m, V + 2 * MIB, PMD_ORDER), found(b));
        assert_eq!(find_pfn(&ranges, &m, V + 2 * MIB - 1, 0), found(b + 4 * MIB - PAGE_SIZE));
    }

    #[test]
    fn huge_page_starting_exactly_at_a_range_boundary_is_served() {
        let b = bar_start(1);
        let ranges = [pv(b + 8 * MIB, 2 * MIB), pv(b, 2 * MIB)];
        let m = vma(V, V + 4 * MIB, 0, 0);
        // Window [V + 2 MiB, V + 4 MiB) is exactly R1.
        assert_eq!(find_pfn(&ranges, &m, V + 4 * MIB - 1, PMD_ORDER), found(b));
    }

    #[test]
    fn huge_page_crossing_a_range_boundary_falls_back() {
        let b = bar_start(1);
        // Boundary at buffer offset 2 MiB + 4 KiB.
        let ranges = [pv(b, 2 * MIB + PAGE_SIZE), pv(b + 4 * MIB, 4 * MIB)];
        let m = vma(V, V + 6 * MIB, 0, 0);
        // [V + 2 MiB, V + 4 MiB) crosses the boundary.
        assert_eq!(find_pfn(&ranges, &m, V + 3 * MIB, PMD_ORDER), PfnLookup::Fallback);
        // [V, V + 2 MiB) is inside R0.
        assert_eq!(find_pfn(&ranges, &m, V, PMD_ORDER), found(b));
        assert_eq!(find_pfn(&ranges, &m, V + 2 * MIB, 0), found(b + 2 * MIB));
        assert_eq!(find_pfn(&ranges, &m, V + 2 * MIB + PAGE_SIZE, 0), found(b + 4 * MIB));
    }

    #[test]
    fn huge_page_with_unaligned_pfn_falls_back() {
        let b = bar_start(1) + PAGE_SIZE;
        let ranges = [pv(b, 4 * MIB)];
        let m = vma(V, V + 4 * MIB, 0, 0);
        assert_eq!(find_pfn(&ranges, &m, V, PMD_ORDER), PfnLookup::Fallback);
        assert_eq!(find_pfn(&ranges, &m, V, 0), found(b));
    }

    #[test]
    fn vma_head_and_tail_smaller_than_a_huge_page_fall_back() {
        let b = bar_start(1);
        let ranges = [pv(b, 8 * MIB)];
        // VMA [V + 1 MiB, V + 5 MiB) over buffer offsets [1 MiB, 5 MiB).
        let m = vma(V + MIB, V + 5 * MIB, MIB >> PAGE_SHIFT, 0);
        assert_eq!(find_pfn(&ranges, &m, V + MIB, PMD_ORDER), PfnLookup::Fallback);
        assert_eq!(find_pfn(&ranges, &m, V + 5 * MIB - 1, PMD_ORDER), PfnLookup::Fallback);
        assert_eq!(find_pfn(&ranges, &m, V + 3 * MIB, PMD_ORDER), found(b + 2 * MIB));
        assert_eq!(find_pfn(&ranges, &m, V + MIB, 0), found(b + MIB));
    }

    #[test]
    fn vma_shorter_than_a_huge_page_falls_back() {
        let ranges = [pv(bar_start(1), 2 * MIB)];
        let m = vma(V, V + MIB, 0, 0);
        assert_eq!(find_pfn(&ranges, &m, V, PMD_ORDER), PfnLookup::Fallback);
        assert_eq!(find_pfn(&ranges, &m, V, 0), found(bar_start(1)));
    }

    #[test]
    fn base_page_outside_every_range_is_a_fault() {
        let ranges = [pv(bar_start(1), 0x2000)];
        // A VMA longer than the buffer cannot come from mmap; the page past
        // the end is the "cannot happen" case.
        let m = vma(V, V + 0x4000, 0, 0);
        assert_eq!(find_pfn(&ranges, &m, V + 0x2000, 0), PfnLookup::Fault);
        assert_eq!(find_pfn(&[], &m, V, 0), PfnLookup::Fault);
        assert_eq!(find_pfn(&[], &m, V, PMD_ORDER), PfnLookup::Fallback);
    }

    #[test]
    fn address_outside_the_vma_faults_at_order_zero_and_falls_back_above() {
        let ranges = [pv(bar_start(1), 4 * MIB)];
        let m = vma(V, V + 4 * MIB, 0, 0);
        assert_eq!(find_pfn(&ranges, &m, V - 1, 0), PfnLookup::Fault);
        assert_eq!(find_pfn(&ranges, &m, V + 4 * MIB, 0), PfnLookup::Fault);
        assert_eq!(find_pfn(&ranges, &m, V + 4 * MIB, PMD_ORDER), PfnLookup::Fallback);
    }

    #[test]
    fn pud_order_serves_gigabyte_pages_when_everything_aligns() {
        let b = bar_start(1);
        let ranges = [pv(b, 2 * GIB)];
        let m = vma(V, V + 2 * GIB, dev_pgoff(1, 0), dev_pgoff(1, 0));
        let r = find_pfn(&ranges, &m, V + GIB + 12345, PUD_ORDER);
        assert_eq!(r, found(b + GIB));
        if let PfnLookup::Found { pfn } = r {
            assert_eq!(pfn % (1 << PUD_ORDER), 0);
        }
        // Same VMA over a BAR offset of 2 MiB: PMD yes, PUD no.
        let shifted = [pv(b + 2 * MIB, 2 * GIB)];
        assert_eq!(find_pfn(&shifted, &m, V, PUD_ORDER), PfnLookup::Fallback);
        assert_eq!(find_pfn(&shifted, &m, V, PMD_ORDER), found(b + 2 * MIB));
    }

    #[test]
    fn overflowing_inputs_fault_instead_of_panicking() {
        let ranges = [pv(bar_start(1), 4 * MIB)];
        // Fault address near u64::MAX, VMA reaching the top of the space.
        let top = vma(u64::MAX - 4 * MIB + 1 - (PAGE_SIZE - 1), u64::MAX, 0, 0);
        assert_eq!(find_pfn(&ranges, &top, u64::MAX, 0), PfnLookup::Fault);
        assert_eq!(find_pfn(&ranges, &top, u64::MAX, PMD_ORDER), PfnLookup::Fallback);
        // vm_pgoff below the adjust.
        let below = vma(V, V + 4 * MIB, 5, 6);
        assert_eq!(find_pfn(&ranges, &below, V, 0), PfnLookup::Fault);
        // vm_pgoff - adjust does not survive the shift to bytes.
        let huge = vma(V, V + 4 * MIB, 1 << 52, 0);
        assert_eq!(find_pfn(&ranges, &huge, V, 0), PfnLookup::Fault);
        // vma_off fits but fault_offset + pagesize does not.
        let edge = vma(V, V + 4 * MIB, (u64::MAX >> PAGE_SHIFT) - 1, 0);
        assert_eq!(find_pfn(&ranges, &edge, V + 0x1000, 0), PfnLookup::Fault);
        // Range lengths whose sum overflows before the walk reaches the page.
        let wide = [pv(0, 1 << 63), pv(0, 1 << 63)];
        let past = vma(V, V + 0x2000, (1 << 63) >> PAGE_SHIFT, 0);
        assert_eq!(find_pfn(&wide, &past, V, 0), PfnLookup::Fault);
        // paddr + offset overflows.
        let high = [pv(u64::MAX - 0xfff, 0x10_0000)];
        let m = vma(V, V + 0x10_0000, 0, 0);
        assert_eq!(find_pfn(&high, &m, V + 0x5000, 0), PfnLookup::Fault);
        // Orders whose page size is not representable.
        for order in [52, 63, 64, u32::MAX] {
            assert_eq!(find_pfn(&ranges, &m, V, order), PfnLookup::Fallback);
        }
    }

    // --- check_feature ---------------------------------------------------------

    const GET: u32 = VFIO_DEVICE_FEATURE_GET;
    const SET: u32 = VFIO_DEVICE_FEATURE_SET;
    const PROBE: u32 = VFIO_DEVICE_FEATURE_PROBE;
    /// `VFIO_DEVICE_FEATURE_DMA_BUF`, to show the feature bits are ignored.
    const DMA_BUF: u32 = 11;

    #[test]
    fn check_feature_rejects_set_on_a_get_only_feature() {
        assert_eq!(check_feature(DMA_BUF | SET, 16, GET, 16), Err(Errno::INVAL));
    }

    #[test]
    fn check_feature_rejects_get_on_a_set_only_feature() {
        assert_eq!(check_feature(GET, 16, SET, 16), Err(Errno::INVAL));
    }

    #[test]
    fn check_feature_rejects_probe_of_an_unsupported_operation() {
        assert_eq!(check_feature(DMA_BUF | PROBE | SET, 16, GET, 16), Err(Errno::INVAL));
    }

    #[test]
    fn check_feature_answers_probe_even_with_a_short_payload() {
        assert_eq!(check_feature(DMA_BUF | PROBE | GET, 0, GET, 16), Ok(FeatureCheck::Probe));
        assert_eq!(check_feature(PROBE, 0, GET, 16), Ok(FeatureCheck::Probe));
    }

    #[test]
    fn check_feature_rejects_a_request_without_direction() {
        assert_eq!(check_feature(DMA_BUF, 16, GET | SET, 16), Err(Errno::INVAL));
    }

    #[test]
    fn check_feature_rejects_a_short_payload() {
        assert_eq!(check_feature(DMA_BUF | GET, 15, GET, 16), Err(Errno::INVAL));
    }

    #[test]
    fn check_feature_goes_ahead_with_a_full_payload() {
        assert_eq!(check_feature(DMA_BUF | GET, 16, GET, 16), Ok(FeatureCheck::Go));
        assert_eq!(check_feature(SET, 100, GET | SET, 16), Ok(FeatureCheck::Go));
    }

    // --- validate_dmabuf_input -------------------------------------------------

    #[test]
    fn validate_rejects_an_empty_range_list() {
        assert_eq!(validate_dmabuf_input(&[]), Err(Errno::INVAL));
    }

    #[test]
    fn validate_rejects_a_zero_length_range() {
        assert_eq!(validate_dmabuf_input(&[dr(0, 0x1000), dr(0, 0)]), Err(Errno::INVAL));
    }

    #[test]
    fn validate_rejects_an_unaligned_offset() {
        assert_eq!(validate_dmabuf_input(&[dr(0x800, 0x1000)]), Err(Errno::INVAL));
    }

    #[test]
    fn validate_rejects_an_unaligned_length() {
        assert_eq!(validate_dmabuf_input(&[dr(0, 0x1800)]), Err(Errno::INVAL));
    }

    #[test]
    fn validate_reports_total_overflow_as_einval() {
        let half = 1 << 63;
        assert_eq!(validate_dmabuf_input(&[dr(0, half), dr(0, half)]), Err(Errno::INVAL));
    }

    #[test]
    fn validate_rejects_a_total_with_bit_63_set() {
        assert_eq!(validate_dmabuf_input(&[dr(0, 1 << 63)]), Err(Errno::INVAL));
        let below = (1 << 62) - PAGE_SIZE;
        assert_eq!(validate_dmabuf_input(&[dr(0, 1 << 62), dr(0, below + (1 << 62))]), Err(Errno::INVAL));
    }

    #[test]
    fn validate_returns_the_total_of_aliasing_ranges() {
        let largest = (1 << 63) - PAGE_SIZE;
        assert_eq!(validate_dmabuf_input(&[dr(0, largest)]), Ok(largest));
        assert_eq!(validate_dmabuf_input(&[dr(0x3000, 0x2000), dr(0x3000, 0x2000)]), Ok(0x4000));
    }

    // --- fill_phys_vec ---------------------------------------------------------

    #[test]
    fn fill_phys_vec_reports_start_overflow_as_eoverflow() {
        assert_eq!(fill_phys_vec(bar_start(1), 64 * MIB, &[dr(u64::MAX - 0xfff, 0x1000)]), Err(Errno::OVERFLOW));
    }

    #[test]
    fn fill_phys_vec_reports_end_overflow_as_eoverflow() {
        let start = u64::MAX - 0x1fff - bar_start(1);
        assert_eq!(fill_phys_vec(bar_start(1), 64 * MIB, &[dr(start, 0x3000)]), Err(Errno::OVERFLOW));
    }

    #[test]
    fn fill_phys_vec_rejects_a_range_past_the_bar_end_with_einval() {
        assert_eq!(
            fill_phys_vec(bar_start(1), 64 * MIB, &[dr(0, 0x1000), dr(64 * MIB - 0x1000, 0x2000)]),
            Err(Errno::INVAL)
        );
    }

    #[test]
    fn fill_phys_vec_accepts_a_range_ending_at_the_bar_end() {
        let b = bar_start(4);
        assert_eq!(
            fill_phys_vec(b, 64 * MIB, &[dr(64 * MIB - 0x2000, 0x2000), dr(0, 0x1000), dr(0, 0x1000)]),
            Ok(vec![pv(b + 64 * MIB - 0x2000, 0x2000), pv(b, 0x1000), pv(b, 0x1000)])
        );
    }

    #[test]
    fn fill_phys_vec_bar_end_check_survives_an_implausible_bar_length() {
        let b = bar_start(1);
        assert_eq!(fill_phys_vec(b, u64::MAX, &[dr(0x1000, 0x1000)]), Ok(vec![pv(b + 0x1000, 0x1000)]));
    }

    // --- plan_device_mmap ------------------------------------------------------

    /// BAR0 16 KiB, BAR1 64 MiB, BAR2 register-only, BAR3 2 KiB, others absent.
    fn bars(i: u32) -> Option<u64> {
        match i {
            0 => Some(0x4000),
            1 => Some(64 * MIB),
            3 => Some(0x800),
            _ => None,
        }
    }

    fn dev_req(vm_pgoff: u64, len: u64) -> DeviceMmapRequest {
        DeviceMmapRequest { vm_pgoff, len, shared: true }
    }

    #[test]
    fn device_mmap_plans_the_worked_example() {
        let plan = plan_device_mmap(&dev_req(0x1000_0030, 0x3fd_0000), 9, bars);
        assert_eq!(
            plan,
            Ok(DeviceMmapPlan {
                index: 1,
                bar_pgoff: 0x30,
                req_start: 0x3_0000,
                req_len: 0x3fd_0000,
                phys: pv(bar_start(1) + 0x3_0000, 0x3fd_0000),
                vma_pgoff_adjust: 0x1000_0030,
            })
        );
    }

    #[test]
    fn device_mmap_rounds_the_length_up_to_pages() {
        let plan = plan_device_mmap(&dev_req(dev_pgoff(0, 0), 0x1001), 9, bars).map(|p| p.req_len);
        assert_eq!(plan, Ok(0x2000));
    }

    #[test]
    fn device_mmap_may_reach_the_page_aligned_end_of_a_small_bar() {
        let plan = plan_device_mmap(&dev_req(dev_pgoff(3, 0), PAGE_SIZE), 9, bars).map(|p| p.phys);
        assert_eq!(plan, Ok(pv(bar_start(3), PAGE_SIZE)));
    }

    #[test]
    fn device_mmap_rejects_zero_length_with_einval() {
        assert_eq!(plan_device_mmap(&dev_req(dev_pgoff(1, 0), 0), 9, bars), Err(Errno::INVAL));
    }

    #[test]
    fn device_mmap_rejects_unroundable_length_with_enomem() {
        assert_eq!(plan_device_mmap(&dev_req(dev_pgoff(1, 0), u64::MAX), 9, bars), Err(Errno::NOMEM));
    }

    #[test]
    fn device_mmap_rejects_pgoff_end_overflow_with_eoverflow() {
        assert_eq!(plan_device_mmap(&dev_req(u64::MAX, PAGE_SIZE), 9, bars), Err(Errno::OVERFLOW));
    }

    #[test]
    fn device_mmap_rejects_an_index_beyond_the_regions() {
        assert_eq!(plan_device_mmap(&dev_req(dev_pgoff(9, 0), PAGE_SIZE), 9, bars), Err(Errno::INVAL));
        assert_eq!(plan_device_mmap(&dev_req(1 << 60, PAGE_SIZE), 9, bars), Err(Errno::INVAL));
    }

    #[test]
    fn device_mmap_rejects_a_private_mapping() {
        let req = DeviceMmapRequest { shared: false, ..dev_req(dev_pgoff(1, 0), PAGE_SIZE) };
        assert_eq!(plan_device_mmap(&req, 9, bars), Err(Errno::INVAL));
    }

    #[test]
    fn device_mmap_rejects_rom_config_vga_and_device_specific_regions() {
        for index in 6..10 {
            let r = plan_device_mmap(&dev_req(dev_pgoff(index, 0), PAGE_SIZE), 10, |_| Some(GIB));
            assert_eq!(r, Err(Errno::INVAL), "index {index}");
        }
    }

    #[test]
    fn device_mmap_rejects_a_bar_that_is_not_mmappable() {
        assert_eq!(plan_device_mmap(&dev_req(dev_pgoff(2, 0), PAGE_SIZE), 9, bars), Err(Errno::INVAL));
        assert_eq!(plan_device_mmap(&dev_req(dev_pgoff(5, 0), PAGE_SIZE), 9, bars), Err(Errno::INVAL));
    }

    #[test]
    fn device_mmap_rejects_a_window_past_the_bar_end() {
        assert_eq!(plan_device_mmap(&dev_req(dev_pgoff(0, 0x1000), 0x4000), 9, bars), Err(Errno::INVAL));
        assert_eq!(
            plan_device_mmap(&dev_req(dev_pgoff(1, VFIO_PCI_OFFSET_MASK & !0xfff), PAGE_SIZE), 9, bars),
            Err(Errno::INVAL)
        );
        assert_eq!(plan_device_mmap(&dev_req(dev_pgoff(0, 0), 0x4000), 9, bars).map(|p| p.req_len), Ok(0x4000));
    }

    #[test]
    fn device_mmap_rejects_an_unroundable_bar_length() {
        assert_eq!(plan_device_mmap(&dev_req(dev_pgoff(0, 0), PAGE_SIZE), 9, |_| Some(u64::MAX)), Err(Errno::INVAL));
    }

    // --- plan_dmabuf_mmap ------------------------------------------------------

    fn buf_req(vm_pgoff: u64, len: u64) -> DmaBufMmapRequest {
        DmaBufMmapRequest {
            vm_pgoff,
            len,
            shared: true,
            writable_prot: true,
            readonly_file: false,
            writeonly_file: false,
        }
    }

    #[test]
    fn dmabuf_mmap_returns_the_byte_offset_of_a_window_that_fits() {
        assert_eq!(plan_dmabuf_mmap(0x8000, &buf_req(3, 0x5000), true), Ok(0x3000));
        assert_eq!(plan_dmabuf_mmap(0x8000, &buf_req(0, 0x7001), true), Ok(0));
    }

    #[test]
    fn dmabuf_mmap_rejects_zero_length_with_einval() {
        assert_eq!(plan_dmabuf_mmap(0x8000, &buf_req(0, 0), true), Err(Errno::INVAL));
    }

    #[test]
    fn dmabuf_mmap_rejects_unroundable_length_with_enomem() {
        assert_eq!(plan_dmabuf_mmap(0x8000, &buf_req(0, u64::MAX), true), Err(Errno::NOMEM));
    }

    #[test]
    fn dmabuf_mmap_rejects_pgoff_end_overflow_with_eoverflow() {
        assert_eq!(plan_dmabuf_mmap(0x8000, &buf_req(u64::MAX, PAGE_SIZE), true), Err(Errno::OVERFLOW));
    }

    #[test]
    fn dmabuf_mmap_rejects_shared_write_of_a_read_only_file_first() {
        let req = DmaBufMmapRequest { readonly_file: true, ..buf_req(100, 0x1000) };
        // EACCES wins over the size (EINVAL) and status (ENODEV) checks.
        assert_eq!(plan_dmabuf_mmap(0x8000, &req, false), Err(Errno::ACCESS));
        let read_only = DmaBufMmapRequest { writable_prot: false, ..req };
        assert_eq!(plan_dmabuf_mmap(0x8000, &DmaBufMmapRequest { vm_pgoff: 0, ..read_only }, true), Ok(0));
    }

    #[test]
    fn dmabuf_mmap_private_write_of_a_read_only_file_is_einval_not_eacces() {
        let req = DmaBufMmapRequest { shared: false, readonly_file: true, ..buf_req(0, 0x1000) };
        assert_eq!(plan_dmabuf_mmap(0x8000, &req, true), Err(Errno::INVAL));
    }

    #[test]
    fn dmabuf_mmap_rejects_a_window_past_the_end() {
        assert_eq!(plan_dmabuf_mmap(0x8000, &buf_req(4, 0x5000), true), Err(Errno::INVAL));
        assert_eq!(plan_dmabuf_mmap(0x8000, &buf_req(8, 0x1000), true), Err(Errno::INVAL));
        // The size check precedes the status check.
        assert_eq!(plan_dmabuf_mmap(0x8000, &buf_req(8, 0x1000), false), Err(Errno::INVAL));
    }

    #[test]
    fn dmabuf_mmap_of_a_revoked_buffer_is_enodev_even_when_private() {
        assert_eq!(plan_dmabuf_mmap(0x8000, &buf_req(0, 0x1000), false), Err(Errno::NODEV));
        let private = DmaBufMmapRequest { shared: false, ..buf_req(0, 0x1000) };
        assert_eq!(plan_dmabuf_mmap(0x8000, &private, false), Err(Errno::NODEV));
    }

    #[test]
    fn dmabuf_mmap_rejects_a_private_mapping() {
        let private = DmaBufMmapRequest { shared: false, ..buf_req(0, 0x1000) };
        assert_eq!(plan_dmabuf_mmap(0x8000, &private, true), Err(Errno::INVAL));
    }

    #[test]
    fn dmabuf_mmap_serves_offsets_beyond_one_tebibyte() {
        let size = 3 << 40;
        let pgoff = (2 << 40) >> PAGE_SHIFT;
        assert_eq!(plan_dmabuf_mmap(size, &buf_req(pgoff, GIB), true), Ok(2 << 40));
    }

    // --- property tests ----------------------------------------------------------

    /// A buffer for property tests: ranges in pages, plus the reference
    /// page table (buffer page → (pfn, range number)).
    #[derive(Debug, Clone)]
    struct Buffer {
        ranges: Vec<PhysVec>,
        pages: Vec<(u64, usize)>,
    }

    impl Buffer {
        /// The simple reference walk: list every page of every range.
        fn new(ranges: Vec<PhysVec>) -> Self {
            let mut pages = Vec::new();
            for (i, r) in ranges.iter().enumerate() {
                for k in 0..r.len >> PAGE_SHIFT {
                    pages.push(((r.paddr >> PAGE_SHIFT) + k, i));
                }
            }
            Self { ranges, pages }
        }
    }

    /// One range: in BAR 0..6, at a page offset that is often huge-aligned,
    /// with a length that is often a few huge pages; aliasing comes from
    /// reusing an earlier range's start (see `buffer`).
    fn range() -> impl Strategy<Value = PhysVec> {
        let bar = 0u32..6;
        let start = prop_oneof![2 => (0u64..64).prop_map(|p| p * 512), 1 => 0u64..32768];
        let pages = prop_oneof![1 => 1u64..8, 1 => 1u64..1100, 2 => (1u64..4).prop_map(|n| n * 512)];
        (bar, start, pages)
            .prop_map(|(bar, start, pages)| pv(bar_start(bar) + (start << PAGE_SHIFT), pages << PAGE_SHIFT))
    }

    fn buffer() -> impl Strategy<Value = Buffer> {
        (prop::collection::vec(range(), 1..6), prop::collection::vec(any::<Option<prop::sample::Index>>(), 6)).prop_map(
            |(mut ranges, alias)| {
                for i in 1..ranges.len() {
                    if let Some(j) = &alias[i] {
                        let j = j.index(i);
                        ranges[i].paddr = ranges[j].paddr;
                    }
                }
                Buffer::new(ranges)
            },
        )
    }

    /// A buffer, a mapping of part of it and the split VMAs of that mapping.
    #[derive(Debug, Clone)]
    struct Mapping {
        buf: Buffer,
        /// First buffer page the mapping shows.
        first_page: u64,
        vmas: Vec<VmaGeometry>,
    }

    fn mapping() -> impl Strategy<Value = Mapping> {
        buffer()
            .prop_flat_map(|buf| {
                let n = buf.pages.len() as u64;
                // Starting the mapping at a range's first page (with a VA
                // shift of 0) is what makes huge pages possible at all.
                let starts: Vec<u64> = buf
                    .ranges
                    .iter()
                    .scan(0, |start, r| {
                        let this = *start;
                        *start += r.len >> PAGE_SHIFT;
                        Some(this)
                    })
                    .collect();
                (Just(buf), prop_oneof![1 => 0..n, 3 => prop::sample::select(starts)])
            })
            .prop_flat_map(|(buf, first_page)| {
                let n = buf.pages.len() as u64;
                let len_pages = 1..=n - first_page;
                // VA of the mapping: 1 GiB aligned plus a page shift, often 0.
                let va_shift = prop_oneof![3 => Just(0u64), 1 => 0u64..1024];
                // vma_pgoff_adjust: 0 for an explicit DMA-buf map, a
                // device-fd style base, or any base that cannot overflow.
                let adjust = prop_oneof![Just(0u64), (0u32..6).prop_map(|i| dev_pgoff(i, 0)), 0u64..(1 << 51),];
                let splits = prop::collection::vec(any::<prop::sample::Index>(), 0..4);
                (Just(buf), Just(first_page), len_pages, va_shift, adjust, splits)
            })
            .prop_map(|(buf, first_page, len_pages, va_shift, adjust, splits)| {
                let vm_pgoff = adjust + first_page;
                let vm_start = V + (va_shift << PAGE_SHIFT);
                let mut cuts: Vec<u64> = splits.iter().map(|s| s.index(len_pages as usize) as u64).collect();
                cuts.push(0);
                cuts.push(len_pages);
                cuts.sort_unstable();
                cuts.dedup();
                let vmas = cuts
                    .windows(2)
                    .map(|w| {
                        vma(vm_start + (w[0] << PAGE_SHIFT), vm_start + (w[1] << PAGE_SHIFT), vm_pgoff + w[0], adjust)
                    })
                    .collect();
                Mapping { buf, first_page, vmas }
            })
    }

    /// Buffer page shown at `va` of the mapping (before it was split).
    fn buffer_page(m: &Mapping, va: u64) -> usize {
        (m.first_page + ((va - m.vmas[0].vm_start) >> PAGE_SHIFT)) as usize
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn order_zero_matches_the_reference_walk_on_every_page(m in mapping(), low in 0u64..PAGE_SIZE) {
            for v in &m.vmas {
                let mut va = v.vm_start;
                while va < v.vm_end {
                    let (pfn, _) = m.buf.pages[buffer_page(&m, va)];
                    prop_assert_eq!(find_pfn(&m.buf.ranges, v, va + low, 0), PfnLookup::Found { pfn });
                    va += PAGE_SIZE;
                }
            }
        }

        #[test]
        fn huge_pages_are_served_exactly_when_vma_range_and_pfn_allow(m in mapping(), order in prop_oneof![2 => Just(PMD_ORDER), 1 => 1u32..4]) {
            let pages = 1u64 << order;
            let size = PAGE_SIZE << order;
            for v in &m.vmas {
                // Every huge window touching the VMA, probed once.
                let mut win = v.vm_start & !(size - 1);
                while win < v.vm_end {
                    let got = find_pfn(&m.buf.ranges, v, win.max(v.vm_start), order);
                    let inside_vma = win >= v.vm_start && win + size <= v.vm_end;
                    let expect = if inside_vma {
                        let first = buffer_page(&m, win);
                        let span = &m.buf.pages[first..first + pages as usize];
                        let (pfn, range) = span[0];
                        let one_range = span.iter().all(|&(_, r)| r == range);
                        let contiguous = span.iter().enumerate().all(|(k, &(p, _))| p == pfn + k as u64);
                        if one_range && contiguous && pfn % pages == 0 {
                            PfnLookup::Found { pfn }
                        } else {
                            PfnLookup::Fallback
                        }
                    } else {
                        PfnLookup::Fallback
                    };
                    prop_assert_eq!(got, expect);
                    if let PfnLookup::Found { pfn } = got {
                        prop_assert!(inside_vma);
                        prop_assert_eq!(pfn % pages, 0);
                        for k in 0..pages {
                            let sub = find_pfn(&m.buf.ranges, v, win + (k << PAGE_SHIFT), 0);
                            prop_assert_eq!(sub, PfnLookup::Found { pfn: pfn + k });
                        }
                    }
                    win += size;
                }
            }
        }

        #[test]
        fn find_pfn_never_panics_on_arbitrary_input(
            ranges in prop::collection::vec((any::<u64>(), any::<u64>()).prop_map(|(p, l)| pv(p, l)), 0..5),
            vm_start in any::<u64>(),
            vm_end in any::<u64>(),
            vm_pgoff in any::<u64>(),
            adjust in any::<u64>(),
            fault_addr in any::<u64>(),
            order in prop_oneof![0u32..20, any::<u32>()],
        ) {
            let v = vma(vm_start, vm_end, vm_pgoff, adjust);
            let r = find_pfn(&ranges, &v, fault_addr, order);
            if let PfnLookup::Found { pfn } = r {
                prop_assert!(order < 64 && pfn.trailing_zeros() >= order);
            }
            // Fallback is only for pages that have a smaller order to try.
            if order == 0 {
                prop_assert_ne!(r, PfnLookup::Fallback);
            }
        }

        #[test]
        fn device_mmap_plan_never_panics_and_stays_inside_the_bar(
            vm_pgoff in prop_oneof![
                (0u32..12, 0u64..(1 << 16)).prop_map(|(i, p)| dev_pgoff(i, p << PAGE_SHIFT)),
                any::<u64>(),
            ],
            len in prop_oneof![0u64..(1 << 30), any::<u64>()],
            shared in any::<bool>(),
            num_regions in 0u32..12,
            lens in prop::collection::vec(prop_oneof![Just(None), (0u64..(1 << 32)).prop_map(Some), any::<u64>().prop_map(Some)], 12),
        ) {
            let req = DeviceMmapRequest { vm_pgoff, len, shared };
            let bar = |i: u32| lens.get(i as usize).copied().flatten();
            if let Ok(plan) = plan_device_mmap(&req, num_regions, bar) {
                let bar_len = bar(plan.index).unwrap_or(0);
                let base = bar_start(plan.index);
                prop_assert!(plan.index < 6 && plan.index < num_regions);
                prop_assert!(plan.phys.len > 0 && plan.phys.len >= len);
                prop_assert!(plan.phys.paddr >= base);
                prop_assert!(plan.phys.paddr - base + plan.phys.len <= page_align(bar_len).unwrap_or(0));
                prop_assert_eq!(plan.vma_pgoff_adjust, vm_pgoff);
                prop_assert_eq!(plan.phys.paddr, base + (plan.bar_pgoff << PAGE_SHIFT));
            }
        }

        #[test]
        fn plan_and_find_pfn_agree_on_a_whole_device_mapping(
            index in 0u32..6,
            bar_pages in 1u64..2048,
            start in 0u64..2048,
            pages in 1u64..2048,
        ) {
            let req = dev_req(dev_pgoff(index, start << PAGE_SHIFT), pages << PAGE_SHIFT);
            let Ok(plan) = plan_device_mmap(&req, 9, |_| Some(bar_pages << PAGE_SHIFT)) else {
                prop_assert!(start + pages > bar_pages);
                return Ok(());
            };
            let v = vma(V, V + plan.req_len, req.vm_pgoff, plan.vma_pgoff_adjust);
            for k in [0, pages / 2, pages - 1] {
                let got = find_pfn(&[plan.phys], &v, V + (k << PAGE_SHIFT), 0);
                prop_assert_eq!(got, found(bar_start(index) + ((start + k) << PAGE_SHIFT)));
            }
        }
    }
}
