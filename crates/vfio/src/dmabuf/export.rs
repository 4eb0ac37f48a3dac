//! Explicit export: `VFIO_DEVICE_FEATURE_DMA_BUF` (GET), the user's ranges
//! checked and turned into the buffer's physical ranges.
//!
//! Analogous to Linux's `vfio_pci_core_feature_dma_buf()`,
//! `validate_dmabuf_input()` and `vfio_pci_core_fill_phys_vec()`
//! (`vfio_pci_dmabuf.c`); spec §4.4.

use dmabuf::{AccessMode, DmaBufFd, PhysVec};
use page::{page_aligned, PgOff, PhysAddr};
use rustix::io::Errno;

use super::{dmabuf_export, VfioDmaBuf};
use crate::core::{DeviceFd, FeatureReply};
use crate::core_h::bar_start;
use crate::error::{fail, VfioError};
use crate::feature::Feature;
use crate::uapi::*;

/// `VFIO_DEVICE_FEATURE_DMA_BUF`: GET only, a 16-byte fixed part before the
/// ranges.
pub(crate) const DMA_BUF: Feature = Feature {
    name: "DMA_BUF",
    supported_ops: VFIO_DEVICE_FEATURE_GET,
    minsz: DMA_BUF_FEATURE_MINSZ,
    run: feature_dma_buf,
};

/// `VFIO_DEVICE_FEATURE_DMA_BUF` (spec §4.4), checks in the kernel's order.
fn feature_dma_buf(fd: &DeviceFd, data: &[u8]) -> Result<FeatureReply, VfioError> {
    let vdev = fd.device();
    let region_index = u32_at(data, 0);
    let open_flags = u32_at(data, 4);
    let dma_flags = u32_at(data, 8);
    let nr_ranges = u32_at(data, 12) as usize;
    if nr_ranges == 0 {
        return fail(Errno::INVAL, "nr_ranges is zero");
    }
    if dma_flags != 0 {
        return fail(Errno::INVAL, "flags must be zero");
    }
    let Some(bar) = vdev.bar(region_index).filter(|_| region_index < VFIO_PCI_ROM_REGION_INDEX) else {
        return fail(Errno::NODEV, "region is not a BAR of this device");
    };
    // memdup_array_user(): the ranges are copied from nr_ranges alone (argsz
    // is not cross-checked, as upstream); reading past what the caller gave
    // is the copy fault.
    let need = DMA_BUF_FEATURE_MINSZ + nr_ranges * DMA_RANGE_SIZE;
    if data.len() < need {
        return fail(Errno::FAULT, "ranges extend past the payload");
    }
    let ranges: Vec<DmaRange> = (0..nr_ranges)
        .map(|i| {
            let at = DMA_BUF_FEATURE_MINSZ + i * DMA_RANGE_SIZE;
            DmaRange { offset: u64_at(data, at), length: u64_at(data, at + 8) }
        })
        .collect();
    validate_dmabuf_input(&ranges).map_err(|e| VfioError::new(e, "invalid range"))?;
    let memory = bar.memory();
    let phys = fill_phys_vec(bar_start(region_index), bar.len, &ranges)
        .map_err(|e| VfioError::new(e, "range outside the BAR"))?;
    let mode = AccessMode::from_open_flags(open_flags)?;
    let dma_buf = VfioDmaBuf::new(vdev, None, PgOff(0), region_index, memory.clone());
    let buf = dmabuf_export(vdev, dma_buf, phys, None, mode)?;
    // dma_buf_fd(); on failure dropping `buf` releases it.
    Ok(FeatureReply::DmaBuf(DmaBufFd::new(buf)?))
}

/// One user range of the `VFIO_DEVICE_FEATURE_DMA_BUF` payload: `offset` and
/// `length` in bytes, relative to the BAR.
///
/// This is the UAPI struct itself (`struct vfio_region_dma_range`), so the
/// payload parser needs no conversion.
pub(crate) type DmaRange = vfio_bindings::bindings::vfio::vfio_region_dma_range;

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
pub(crate) fn validate_dmabuf_input(ranges: &[DmaRange]) -> Result<u64, Errno> {
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
pub(crate) fn fill_phys_vec(bar_start: PhysAddr, bar_len: u64, ranges: &[DmaRange]) -> Result<Vec<PhysVec>, Errno> {
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
            if end.0 - bar_start.0 > bar_len {
                return Err(Errno::INVAL);
            }
            Ok(PhysVec { paddr, len: range.length })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use page::PAGE_SIZE;

    const MIB: u64 = 1 << 20;

    fn pv(paddr: PhysAddr, len: u64) -> PhysVec {
        PhysVec { paddr, len }
    }

    fn dr(offset: u64, length: u64) -> DmaRange {
        DmaRange { offset, length }
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
        let start = u64::MAX - 0x1fff - bar_start(1).0;
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
            Ok(vec![pv(PhysAddr(b.0 + 64 * MIB - 0x2000), 0x2000), pv(b, 0x1000), pv(b, 0x1000)])
        );
    }

    #[test]
    fn fill_phys_vec_bar_end_check_survives_an_implausible_bar_length() {
        let b = bar_start(1);
        assert_eq!(fill_phys_vec(b, u64::MAX, &[dr(0x1000, 0x1000)]), Ok(vec![pv(PhysAddr(b.0 + 0x1000), 0x1000)]));
    }
}
