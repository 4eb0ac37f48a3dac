//! The legacy container with the Type1 driver.

use std::sync::Arc;

use rustix::io::Errno;
use wire::msg::IoctlArg;

use super::{caller, errno, u16_at, u32_at, u64_at, Buf, FakeMem, BASE, LAST_PAGE};
use crate::iommu::uapi::*;
use crate::iommu::{Container, IoctlOut};

const PAGE: u64 = 4096;
/// An IOVA well inside the first usable range.
const IOVA: u64 = 0x10_0000;
const R: u32 = VFIO_DMA_MAP_FLAG_READ;
const W: u32 = VFIO_DMA_MAP_FLAG_WRITE;
const RW: u32 = R | W;

fn val(v: u64) -> IoctlArg {
    IoctlArg::Value(v)
}

fn map_arg(flags: u32, vaddr: u64, iova: u64, size: u64) -> IoctlArg {
    Buf::new(32).u32(0, 32).u32(4, flags).u64(8, vaddr).u64(16, iova).u64(24, size).arg()
}

fn unmap_arg(flags: u32, iova: u64, size: u64) -> IoctlArg {
    Buf::new(24).u32(0, 24).u32(4, flags).u64(8, iova).u64(16, size).arg()
}

fn info_arg(argsz: u32) -> IoctlArg {
    Buf::new(argsz as usize).u32(0, argsz).arg()
}

/// A container with `pages` of process memory, Type1 set (`v2` or not).
fn setup(v2: bool, pages: usize) -> (Container, Arc<FakeMem>) {
    let c = Container::new();
    let mem = FakeMem::new(BASE, pages * PAGE as usize);
    let ty = if v2 { VFIO_TYPE1v2_IOMMU } else { VFIO_TYPE1_IOMMU };
    c.ioctl(VFIO_SET_IOMMU, &val(ty.into()), 1, caller(&mem)).unwrap();
    (c, mem)
}

fn call(c: &Container, mem: &Arc<FakeMem>, req: u64, arg: &IoctlArg) -> Result<IoctlOut, Errno> {
    c.ioctl(req, arg, 1, caller(mem))
}

fn map(c: &Container, mem: &Arc<FakeMem>, flags: u32, vaddr: u64, iova: u64, size: u64) -> Result<IoctlOut, Errno> {
    call(c, mem, VFIO_IOMMU_MAP_DMA, &map_arg(flags, vaddr, iova, size))
}

/// Unmaps and returns the size written back.
fn unmap(c: &Container, mem: &Arc<FakeMem>, flags: u32, iova: u64, size: u64) -> Result<u64, Errno> {
    call(c, mem, VFIO_IOMMU_UNMAP_DMA, &unmap_arg(flags, iova, size)).map(|o| u64_at(&o.out, 16))
}

#[test]
fn api_version_is_0_and_extensions_follow_the_driver() {
    let c = Container::new();
    let mem = FakeMem::new(BASE, 4096);
    let ext = |c: &Container, e: u64| c.ioctl(VFIO_CHECK_EXTENSION, &val(e), 1, caller(&mem)).unwrap().ret;
    assert_eq!(c.ioctl(VFIO_GET_API_VERSION, &val(0), 0, caller(&mem)).unwrap().ret, 0);
    // No driver set: every registered driver is asked with no IOMMU.
    let before: Vec<i64> = (0..=11).map(|e| ext(&c, e)).collect();
    //                   0  T1 SP T1v2 CC EEH NEST SP2 NOIOMMU ALL VADDR 11
    assert_eq!(before, [0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(ext(&c, (1 << 32) | 1), 0, "the whole unsigned long is compared");
    c.ioctl(VFIO_SET_IOMMU, &val(VFIO_TYPE1v2_IOMMU.into()), 1, caller(&mem)).unwrap();
    // Now the container's Type1 IOMMU answers.
    let after: Vec<i64> = (0..=11).map(|e| ext(&c, e)).collect();
    assert_eq!(after, [0, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0]);
}

#[test]
fn set_iommu_needs_a_group_a_known_type_and_happens_once() {
    let c = Container::new();
    let mem = FakeMem::new(BASE, 4096);
    let set = |ty: u64, groups: usize| c.ioctl(VFIO_SET_IOMMU, &val(ty), groups, caller(&mem));
    assert_eq!(set(VFIO_TYPE1v2_IOMMU.into(), 0), Err(Errno::INVAL), "no group");
    // Type1 reports UNMAP_ALL, is asked to open with it and refuses.
    assert_eq!(set(VFIO_UNMAP_ALL.into(), 1), Err(Errno::INVAL));
    for ty in [0, 2, 4, 5, 6, 7, 8, 10, 99, (1 << 32) | 3] {
        assert_eq!(set(ty, 1), Err(Errno::NODEV), "type {ty}: no driver reports it");
    }
    assert!(!c.iommu_set());
    assert!(c.dma_space().is_none());
    set(VFIO_TYPE1_IOMMU.into(), 1).unwrap();
    assert!(c.iommu_set());
    assert!(c.dma_space().is_some());
    assert_eq!(set(VFIO_TYPE1_IOMMU.into(), 1), Err(Errno::INVAL), "already set");
}

#[test]
fn without_an_iommu_the_container_answers_einval_and_with_one_the_driver_enotty() {
    let c = Container::new();
    let mem = FakeMem::new(BASE, 4096);
    for req in [VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA, 0x3b73, 0x3b74, 0x3b75, 0x3bff] {
        assert_eq!(c.ioctl(req, &val(0), 1, caller(&mem)), Err(Errno::INVAL), "{req:#x}");
    }
    let (c, mem) = setup(true, 1);
    // VFIO_IOMMU_ENABLE/DISABLE are sPAPR's; dirty tracking is not modelled.
    for req in [0x3b73, 0x3b74, 0x3b75, 0x3bff, 0x1234] {
        assert_eq!(call(&c, &mem, req, &val(0)), Err(Errno::NOTTY), "{req:#x}");
    }
}

#[test]
fn get_info_lays_out_dma_avail_then_iova_ranges() {
    let (c, mem) = setup(true, 1);
    let out = call(&c, &mem, VFIO_IOMMU_GET_INFO, &info_arg(128)).unwrap().out;
    // struct vfio_iommu_type1_info.
    assert_eq!(out.len(), 88, "info 24 + dma_avail 16 + iova_range 48");
    assert_eq!(u32_at(&out, 0), 128, "argsz stays when the chain fits");
    assert_eq!(u32_at(&out, 4), VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
    assert_eq!(u64_at(&out, 8), 0x4020_1000, "4 KiB | 2 MiB | 1 GiB");
    assert_eq!(u32_at(&out, 16), 24, "cap_offset");
    // DMA_AVAIL at 24: 12 bytes padded to 16.
    assert_eq!((u16_at(&out, 24), u16_at(&out, 26), u32_at(&out, 28)), (3, 1, 40));
    assert_eq!(u32_at(&out, 32), 65535);
    // IOVA_RANGE at 40: two ranges around the MSI window, 48-bit aperture.
    assert_eq!((u16_at(&out, 40), u16_at(&out, 42), u32_at(&out, 44)), (1, 1, 0));
    assert_eq!(u32_at(&out, 48), 2);
    assert_eq!((u64_at(&out, 56), u64_at(&out, 64)), (0, 0xfedf_ffff));
    assert_eq!((u64_at(&out, 72), u64_at(&out, 80)), (0xfef0_0000, 0xffff_ffff_ffff));
}

#[test]
fn get_info_too_small_for_the_chain_says_how_much_is_needed() {
    let (c, mem) = setup(true, 1);
    let out = call(&c, &mem, VFIO_IOMMU_GET_INFO, &Buf::new(24).u32(0, 24).u64(16, !0).arg()).unwrap().out;
    // The whole zeroed struct: cap_offset 0 and the pad cleared.
    assert_eq!(out.len(), 24);
    assert_eq!((u32_at(&out, 0), u32_at(&out, 4), u32_at(&out, 16), u32_at(&out, 20)), (88, 3, 0, 0));
    let out = call(&c, &mem, VFIO_IOMMU_GET_INFO, &info_arg(20)).unwrap().out;
    assert_eq!(out.len(), 20, "cut to argsz");
    let old = call(&c, &mem, VFIO_IOMMU_GET_INFO, &info_arg(16)).unwrap().out;
    assert_eq!(old.len(), 16, "a pre-capability caller gets no cap_offset");
    assert_eq!((u32_at(&old, 0), u64_at(&old, 8)), (88, 0x4020_1000));
    assert_eq!(call(&c, &mem, VFIO_IOMMU_GET_INFO, &info_arg(12)), Err(Errno::INVAL));
    let short = Buf::new(8).u32(0, 88).arg();
    assert_eq!(call(&c, &mem, VFIO_IOMMU_GET_INFO, &short), Err(Errno::FAULT), "memory ends");
}

#[test]
fn dma_avail_counts_down_with_mappings() {
    let (c, mem) = setup(true, 2);
    let avail = || u32_at(&call(&c, &mem, VFIO_IOMMU_GET_INFO, &info_arg(88)).unwrap().out, 32);
    map(&c, &mem, RW, BASE, IOVA, PAGE).unwrap();
    map(&c, &mem, R, BASE + PAGE, IOVA + PAGE, PAGE).unwrap();
    assert_eq!(avail(), 65533);
    assert_eq!(unmap(&c, &mem, 0, IOVA, PAGE), Ok(PAGE));
    assert_eq!(avail(), 65534);
}

#[test]
fn map_dma_checks_in_kernel_order() {
    let (c, mem) = setup(true, 4);
    let m = |flags, vaddr, iova, size| errno(map(&c, &mem, flags, vaddr, iova, size));
    assert_eq!(errno(call(&c, &mem, VFIO_IOMMU_MAP_DMA, &Buf::new(16).u32(0, 32).arg())), Errno::FAULT);
    let small = Buf::new(32).u32(0, 24).u32(4, RW).u64(8, BASE).u64(16, IOVA).u64(24, PAGE).arg();
    assert_eq!(errno(call(&c, &mem, VFIO_IOMMU_MAP_DMA, &small)), Errno::INVAL, "argsz < minsz");
    assert_eq!(m(RW | 8, BASE, IOVA, PAGE), Errno::INVAL, "unknown flag");
    assert_eq!(m(RW, BASE, IOVA, 0), Errno::INVAL, "size 0");
    assert_eq!(m(RW, BASE, LAST_PAGE, 2 * PAGE), Errno::OVERFLOW, "iova wraps");
    assert_eq!(m(RW, LAST_PAGE, IOVA, 2 * PAGE), Errno::OVERFLOW, "vaddr wraps");
    assert_eq!(m(0, BASE, IOVA, PAGE), Errno::INVAL, "no permission");
    assert_eq!(m(R | VFIO_DMA_MAP_FLAG_VADDR, BASE, IOVA, PAGE), Errno::INVAL, "VADDR takes none");
    assert_eq!(m(RW, BASE + 1, IOVA, PAGE), Errno::INVAL, "vaddr unaligned");
    assert_eq!(m(RW, BASE, IOVA + 1, PAGE), Errno::INVAL, "iova unaligned");
    assert_eq!(m(RW, BASE, IOVA, PAGE + 1), Errno::INVAL, "size unaligned");
    assert_eq!(m(VFIO_DMA_MAP_FLAG_VADDR, BASE, IOVA, PAGE), Errno::NOENT, "nothing to re-point");
    map(&c, &mem, RW, BASE, IOVA, 2 * PAGE).unwrap();
    assert_eq!(m(RW, BASE, IOVA + PAGE, 2 * PAGE), Errno::EXIST);
    assert_eq!(m(RW, BASE, IOVA - PAGE, 2 * PAGE), Errno::EXIST);
    assert_eq!(m(VFIO_DMA_MAP_FLAG_VADDR, BASE, IOVA, 2 * PAGE), Errno::INVAL, "not invalidated");
    assert_eq!(m(RW, BASE, 0xfee0_0000, PAGE), Errno::INVAL, "MSI window");
    assert_eq!(m(RW, BASE, 0xfedf_f000, 2 * PAGE), Errno::INVAL, "straddles into it");
    assert_eq!(m(RW, BASE, 1 << 48, PAGE), Errno::INVAL, "past the aperture");
    assert_eq!(m(RW, BASE + 4 * PAGE, 0x100_0000, PAGE), Errno::FAULT, "vaddr not mapped");
    assert_eq!(m(RW, BASE + 3 * PAGE, 0x100_0000, 2 * PAGE), Errno::FAULT, "runs off the end");
    // The last page of the highest range maps.
    map(&c, &mem, RW, BASE, (1 << 48) - PAGE, PAGE).unwrap();
}

#[test]
fn the_mapping_limit_is_enospc() {
    let (c, mem) = setup(true, 1);
    for i in 0..65535u64 {
        map(&c, &mem, R, BASE, IOVA + i * PAGE, PAGE).unwrap();
    }
    assert_eq!(errno(map(&c, &mem, R, BASE, 0x4000_0000, PAGE)), Errno::NOSPC);
    assert_eq!(unmap(&c, &mem, 0, IOVA, PAGE), Ok(PAGE));
    map(&c, &mem, R, BASE, 0x4000_0000, PAGE).unwrap();
}

#[test]
fn unmap_dma_checks_flags_alignment_and_overflow() {
    let (c, mem) = setup(true, 1);
    let u = |flags, iova, size| unmap(&c, &mem, flags, iova, size).unwrap_err();
    assert_eq!(errno(call(&c, &mem, VFIO_IOMMU_UNMAP_DMA, &Buf::new(8).u32(0, 24).arg())), Errno::FAULT);
    let small = Buf::new(24).u32(0, 16).u64(8, IOVA).u64(16, PAGE).arg();
    assert_eq!(errno(call(&c, &mem, VFIO_IOMMU_UNMAP_DMA, &small)), Errno::INVAL);
    assert_eq!(u(8, IOVA, PAGE), Errno::INVAL, "unknown flag");
    assert_eq!(u(VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, IOVA, PAGE), Errno::INVAL, "not tracking");
    let dirty_all = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL;
    assert_eq!(u(dirty_all, 0, 0), Errno::INVAL);
    assert_eq!(u(0, IOVA + 1, PAGE), Errno::INVAL, "iova unaligned");
    assert_eq!(u(VFIO_DMA_UNMAP_FLAG_ALL, IOVA, 0), Errno::INVAL, "ALL with an iova");
    assert_eq!(u(VFIO_DMA_UNMAP_FLAG_ALL, 0, PAGE), Errno::INVAL, "ALL with a size");
    assert_eq!(u(0, IOVA, 0), Errno::INVAL, "size 0");
    assert_eq!(u(0, IOVA, PAGE + 1), Errno::INVAL, "size unaligned");
    assert_eq!(u(0, LAST_PAGE, 2 * PAGE), Errno::OVERFLOW);
    assert_eq!(unmap(&c, &mem, 0, IOVA, PAGE), Ok(0), "nothing there is success");
}

#[test]
fn v2_unmaps_whole_mappings_and_refuses_to_bisect() {
    let (c, mem) = setup(true, 4);
    map(&c, &mem, RW, BASE, IOVA, 2 * PAGE).unwrap();
    map(&c, &mem, RW, BASE + 2 * PAGE, IOVA + 2 * PAGE, 2 * PAGE).unwrap();
    assert_eq!(unmap(&c, &mem, 0, IOVA + PAGE, 3 * PAGE), Err(Errno::INVAL), "starts inside");
    assert_eq!(unmap(&c, &mem, 0, IOVA, 3 * PAGE), Err(Errno::INVAL), "ends inside");
    // Both go in one call covering them (and a hole after).
    let out = call(&c, &mem, VFIO_IOMMU_UNMAP_DMA, &unmap_arg(0, IOVA, 8 * PAGE)).unwrap().out;
    assert_eq!(out.len(), 24);
    assert_eq!((u32_at(&out, 0), u64_at(&out, 8), u64_at(&out, 16)), (24, IOVA, 4 * PAGE));
}

#[test]
fn v1_unmaps_whole_mappings_that_start_inside_and_nothing_from_inside_one() {
    let (c, mem) = setup(false, 4);
    map(&c, &mem, RW, BASE, IOVA, 2 * PAGE).unwrap();
    map(&c, &mem, RW, BASE + 2 * PAGE, IOVA + 2 * PAGE, 2 * PAGE).unwrap();
    // From inside the first mapping: a "zero sized unmap".
    assert_eq!(unmap(&c, &mem, 0, IOVA + PAGE, 3 * PAGE), Ok(0));
    // Covering the first IOVA of the second: all of it, past the range.
    assert_eq!(unmap(&c, &mem, 0, IOVA + 2 * PAGE, PAGE), Ok(2 * PAGE));
    assert_eq!(unmap(&c, &mem, 0, IOVA, PAGE), Ok(2 * PAGE));
}

#[test]
fn unmap_all_returns_the_total_and_stops_at_another_process_mappings() {
    let c = Container::new();
    let a = FakeMem::with_mm(BASE, 4 * PAGE as usize, 1);
    let b = FakeMem::with_mm(BASE, 4 * PAGE as usize, 2);
    c.ioctl(VFIO_SET_IOMMU, &val(VFIO_TYPE1v2_IOMMU.into()), 1, caller(&a)).unwrap();
    map(&c, &a, RW, BASE, IOVA, PAGE).unwrap();
    map(&c, &b, RW, BASE, IOVA + PAGE, PAGE).unwrap();
    map(&c, &a, RW, BASE, IOVA + 2 * PAGE, PAGE).unwrap();
    // a unmaps its first mapping, then meets b's and stops.
    assert_eq!(unmap(&c, &a, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0), Ok(PAGE));
    assert_eq!(unmap(&c, &b, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0), Ok(PAGE));
    assert_eq!(unmap(&c, &a, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0), Ok(PAGE));
    assert_eq!(unmap(&c, &a, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0), Ok(0));
}

#[test]
fn vaddr_invalidation_keeps_dma_on_the_old_pages_until_re_pointed() {
    let (c, old) = setup(true, 2);
    let new = FakeMem::new(BASE + 0x10_0000, 2 * PAGE as usize);
    let space = c.dma_space().unwrap();
    map(&c, &old, RW, BASE, IOVA, 2 * PAGE).unwrap();
    let inval = VFIO_DMA_UNMAP_FLAG_VADDR;
    assert_eq!(unmap(&c, &old, inval, IOVA, 2 * PAGE), Ok(2 * PAGE));
    assert_eq!(unmap(&c, &old, inval, IOVA, 2 * PAGE), Err(Errno::INVAL), "already invalid");
    assert_eq!(unmap(&c, &old, inval | VFIO_DMA_UNMAP_FLAG_ALL, 0, 0), Err(Errno::INVAL));
    // The pages stay pinned: DMA still reaches the old memory.
    space.dma_write(IOVA, b"old").unwrap();
    assert_eq!(old.peek(BASE, 3), b"old");
    let vaddr = VFIO_DMA_MAP_FLAG_VADDR;
    assert_eq!(errno(map(&c, &new, vaddr, BASE + 0x10_0000, IOVA, PAGE)), Errno::INVAL, "size differs");
    assert_eq!(errno(map(&c, &new, vaddr, BASE + 0x10_0000, IOVA + PAGE, 2 * PAGE)), Errno::INVAL, "iova differs");
    map(&c, &new, vaddr, BASE + 0x10_0000, IOVA, 2 * PAGE).unwrap();
    space.dma_write(IOVA + PAGE, b"new").unwrap();
    assert_eq!(new.peek(BASE + 0x10_0000 + PAGE, 3), b"new");
    // The new owner unmaps it.
    assert_eq!(unmap(&c, &new, 0, IOVA, 2 * PAGE), Ok(2 * PAGE));
}

#[test]
fn a_failed_invalidation_undoes_its_own_marks() {
    let (c, mem) = setup(true, 2);
    map(&c, &mem, RW, BASE, IOVA, PAGE).unwrap();
    map(&c, &mem, RW, BASE + PAGE, IOVA + PAGE, PAGE).unwrap();
    let inval = VFIO_DMA_UNMAP_FLAG_VADDR;
    assert_eq!(unmap(&c, &mem, inval, IOVA + PAGE, PAGE), Ok(PAGE));
    // The first is marked, the second already was: the call fails and the
    // first is valid again.
    assert_eq!(unmap(&c, &mem, inval, IOVA, 2 * PAGE), Err(Errno::INVAL));
    assert_eq!(errno(map(&c, &mem, VFIO_DMA_MAP_FLAG_VADDR, BASE, IOVA, PAGE)), Errno::INVAL);
    map(&c, &mem, VFIO_DMA_MAP_FLAG_VADDR, BASE + PAGE, IOVA + PAGE, PAGE).unwrap();
}

#[test]
fn the_last_group_leaving_unsets_the_iommu_and_drops_every_mapping() {
    let (c, mem) = setup(true, 1);
    map(&c, &mem, RW, BASE, IOVA, PAGE).unwrap();
    let space = c.dma_space().unwrap();
    c.groups_gone();
    assert!(!c.iommu_set());
    assert_eq!(space.dma_read(IOVA, &mut [0; 4]), Err(Errno::FAULT));
    assert_eq!(errno(map(&c, &mem, RW, BASE, IOVA, PAGE)), Errno::INVAL, "no driver any more");
    // It can be set again, and is empty.
    c.ioctl(VFIO_SET_IOMMU, &val(VFIO_TYPE1_IOMMU.into()), 1, caller(&mem)).unwrap();
    map(&c, &mem, RW, BASE, IOVA, PAGE).unwrap();
}
