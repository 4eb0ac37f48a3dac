//! `mmap(2)` of the device fd: validation and sizing of the request, then a
//! per-mapping buffer over exactly the mapped window.
//!
//! Analogous to Linux's `vfio_pci_core_mmap()` (`vfio_pci_core.c`), whose
//! sizing this file also does for `vfio_pci_core_mmap_prep_dmabuf()`; the
//! buffer itself is made by [`crate::dmabuf::mmap_prep_dmabuf`], as in
//! `vfio_pci_dmabuf.c`. Series v4 04/10–05/10; spec §2.2, §4.1, §4.2.

use dmabuf::PhysVec;
use page::{page_align, PgOff, PhysAddr, PAGE_SHIFT};
use rustix::io::Errno;

use crate::core::DeviceFd;
use crate::core_h::{bar_start, pgoff_in_region, pgoff_to_index};
use crate::dmabuf::mmap::MapTarget;
use crate::do_mmap::{mmap_len_checks, MmapArgs};
use crate::error::VfioError;
use crate::uapi::{VFIO_PCI_NUM_REGIONS, VFIO_PCI_ROM_REGION_INDEX};

/// `vfio_pci_core_mmap()`: validate, create the narrow per-mapping buffer
/// over exactly the mapped window (owning the device file), then map it in
/// `target`.
pub(crate) fn device_mmap<T: MapTarget>(fd: &DeviceFd, target: T, args: MmapArgs) -> Result<T::Mapped, VfioError> {
    let vdev = fd.device();
    // A device fd takes any 64-bit offset (the region index lives in it).
    let (vm_pgoff, _) = args.generic_checks(target.aspace(), u64::MAX)?;
    let plan = plan_device_mmap(
        &DeviceMmapRequest { vm_pgoff, len: args.len, shared: args.shared },
        VFIO_PCI_NUM_REGIONS,
        |i| vdev.bar_mmap_len(i),
    )
    .map_err(|e| VfioError::new(e, "device mmap refused"))?;
    crate::dmabuf::mmap_prep_dmabuf(fd, target, &plan, args)
}

/// One `mmap(len, offset)` request on the device fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeviceMmapRequest {
    /// The mmap offset in pages, exactly as passed (region index included).
    pub(crate) vm_pgoff: PgOff,
    /// The length passed to mmap in bytes, not necessarily page aligned; it
    /// is rounded up to pages as `mmap(2)` does.
    pub(crate) len: u64,
    /// `MAP_SHARED` (`VM_SHARED`) rather than `MAP_PRIVATE`.
    pub(crate) shared: bool,
}

/// What a valid device-fd mmap maps: the per-mapping buffer's single range
/// and the VMA's `vma_pgoff_adjust`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeviceMmapPlan {
    /// Region (BAR) index, from the high bits of `vm_pgoff`.
    pub(crate) index: u32,
    /// Page offset inside the BAR (`vm_pgoff` with the index stripped).
    pub(crate) bar_pgoff: u64,
    /// Byte offset inside the BAR where the mapping starts.
    pub(crate) req_start: u64,
    /// Page-rounded length of the mapping in bytes; also the buffer's size.
    pub(crate) req_len: u64,
    /// The one range of the per-mapping buffer: `bar_start(index) +
    /// req_start`, `req_len` bytes. VMA byte 0 is buffer byte 0 is this byte.
    pub(crate) phys: PhysVec,
    /// The mmap's `vm_pgoff`, which is also the VMA's `vma_pgoff_adjust` (the
    /// full form, see [`crate::VmaGeometry`]): an unsplit VMA translates to
    /// buffer offset 0.
    pub(crate) vm_pgoff: PgOff,
}

/// `vfio_pci_core_mmap()` validation and `vfio_pci_core_mmap_prep_dmabuf()`
/// sizing for one device-fd mmap.
///
/// `num_regions` is the device's region count (`VFIO_PCI_NUM_REGIONS` = 9
/// plus device-specific regions). `bar_mmap_len(i)` is `Some(pci_resource_len)`
/// for a BAR whose mmap is supported (`bar_mmap_supported[i]`, a memory BAR)
/// and `None` for a missing one (RAM and register BARs both map). The mapping may extend to
/// `PAGE_ALIGN(bar_len)`, as in the kernel.
///
/// Checks run in the order the kernel makes them: `do_mmap()`'s generic
/// length checks first, then the driver's. Device-specific regions (index ≥ 9)
/// have no mmap operation in this model, so they fall under the "index ≥ ROM"
/// rule.
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
pub(crate) fn plan_device_mmap(
    req: &DeviceMmapRequest,
    num_regions: u32,
    bar_mmap_len: impl Fn(u32) -> Option<u64>,
) -> Result<DeviceMmapPlan, Errno> {
    let req_len = mmap_len_checks(req.vm_pgoff, req.len)?;

    // vfio_pci_core_mmap(): the index must name an existing region. Compared
    // as u64 first: a user pgoff can encode an index beyond u32.
    let index = pgoff_to_index(req.vm_pgoff);
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
    let bar_pgoff = pgoff_in_region(req.vm_pgoff);
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
        phys: PhysVec { paddr: PhysAddr(bar_start(index).0 + req_start), len: req_len },
        vm_pgoff: req.vm_pgoff,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_h::{index_to_offset, VFIO_PCI_OFFSET_MASK};
    use crate::dmabuf::fault::{find_pfn, VmaGeometry};
    use page::{Pfn, VirtAddr, PAGE_SIZE};
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    /// A 1 GiB-aligned user virtual address for test VMAs.
    const V: u64 = 0x7f00_0000_0000;

    fn pv(paddr: u64, len: u64) -> PhysVec {
        PhysVec { paddr: PhysAddr(paddr), len }
    }

    /// `vm_pgoff` of a device-fd mmap of BAR `index` at byte `off`.
    fn dev_pgoff(index: u32, off: u64) -> PgOff {
        PgOff::from_bytes(index_to_offset(index) + off)
    }

    /// The start of BAR `index`, in bytes.
    fn bar_base(index: u32) -> u64 {
        bar_start(index).0
    }

    /// BAR0 16 KiB, BAR1 64 MiB, BAR2 register-only, BAR3 2 KiB, others absent.
    fn bars(i: u32) -> Option<u64> {
        match i {
            0 => Some(0x4000),
            1 => Some(64 * MIB),
            3 => Some(0x800),
            _ => None,
        }
    }

    fn dev_req(vm_pgoff: PgOff, len: u64) -> DeviceMmapRequest {
        DeviceMmapRequest { vm_pgoff, len, shared: true }
    }

    #[test]
    fn device_mmap_plans_the_worked_example() {
        let plan = plan_device_mmap(&dev_req(PgOff(0x1000_0030), 0x3fd_0000), 9, bars);
        assert_eq!(
            plan,
            Ok(DeviceMmapPlan {
                index: 1,
                bar_pgoff: 0x30,
                req_start: 0x3_0000,
                req_len: 0x3fd_0000,
                phys: pv(bar_base(1) + 0x3_0000, 0x3fd_0000),
                vm_pgoff: PgOff(0x1000_0030),
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
        assert_eq!(plan, Ok(pv(bar_base(3), PAGE_SIZE)));
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
        assert_eq!(plan_device_mmap(&dev_req(PgOff(u64::MAX), PAGE_SIZE), 9, bars), Err(Errno::OVERFLOW));
    }

    #[test]
    fn device_mmap_rejects_an_index_beyond_the_regions() {
        assert_eq!(plan_device_mmap(&dev_req(dev_pgoff(9, 0), PAGE_SIZE), 9, bars), Err(Errno::INVAL));
        assert_eq!(plan_device_mmap(&dev_req(PgOff(1 << 60), PAGE_SIZE), 9, bars), Err(Errno::INVAL));
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

    proptest! {
        #[test]
        fn device_mmap_plan_never_panics_and_stays_inside_the_bar(
            vm_pgoff in prop_oneof![
                (0u32..12, 0u64..(1 << 16)).prop_map(|(i, p)| dev_pgoff(i, p << PAGE_SHIFT)),
                any::<u64>().prop_map(PgOff),
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
                let base = bar_base(plan.index);
                prop_assert!(plan.index < 6 && plan.index < num_regions);
                prop_assert!(plan.phys.len > 0 && plan.phys.len >= len);
                prop_assert!(plan.phys.paddr.0 >= base);
                prop_assert!(plan.phys.paddr.0 - base + plan.phys.len <= page_align(bar_len).unwrap_or(0));
                prop_assert_eq!(plan.vm_pgoff, vm_pgoff);
                prop_assert_eq!(plan.phys.paddr.0, base + (plan.bar_pgoff << PAGE_SHIFT));
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
            let v = VmaGeometry { vm_start: VirtAddr(V), vm_end: VirtAddr(V + plan.req_len), vm_pgoff: req.vm_pgoff, vma_pgoff_adjust: plan.vm_pgoff };
            for k in [0, pages / 2, pages - 1] {
                let got = find_pfn(&[plan.phys], &v, VirtAddr(V + (k << PAGE_SHIFT)), 0).pfn();
                prop_assert_eq!(got, Some(Pfn((bar_base(index) >> PAGE_SHIFT) + start + k)));
            }
        }
    }
}
