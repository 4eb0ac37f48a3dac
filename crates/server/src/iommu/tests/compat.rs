//! The VFIO container calls on `/dev/iommu`.

use std::sync::Arc;

use rustix::io::Errno;
use wire::msg::IoctlArg;

use super::{caller, errno, u16_at, u32_at, u64_at, Buf, FakeMem, BASE, LAST_PAGE};
use crate::iommu::uapi::*;
use crate::iommu::{Container, IoctlOut, Iommufd};

const PAGE: u64 = 4096;
const IOVA: u64 = 0x10_0000;
const RW: u32 = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

struct Ctx {
    fd: Iommufd,
    mem: Arc<FakeMem>,
}

impl Ctx {
    fn new() -> Self {
        Self { fd: Iommufd::new(), mem: FakeMem::new(BASE, 8 * PAGE as usize) }
    }

    /// With the compatibility IOAS a group joining makes.
    fn with_group() -> Self {
        let c = Self::new();
        c.fd.compat_ioas_create();
        c
    }

    fn call(&self, req: u64, arg: &IoctlArg) -> Result<IoctlOut, Errno> {
        self.fd.ioctl(req, arg, caller(&self.mem))
    }

    fn value(&self, req: u64, v: u64) -> Result<i64, Errno> {
        self.call(req, &IoctlArg::Value(v)).map(|o| o.ret)
    }

    fn map(&self, flags: u32, vaddr: u64, iova: u64, size: u64) -> Result<IoctlOut, Errno> {
        let arg = Buf::new(32).u32(0, 32).u32(4, flags).u64(8, vaddr).u64(16, iova).u64(24, size);
        self.call(VFIO_IOMMU_MAP_DMA, &arg.arg())
    }

    fn unmap(&self, flags: u32, iova: u64, size: u64) -> Result<IoctlOut, Errno> {
        self.call(VFIO_IOMMU_UNMAP_DMA, &Buf::new(24).u32(0, 24).u32(4, flags).u64(8, iova).u64(16, size).arg())
    }

    fn info(&self, argsz: u32) -> Vec<u8> {
        self.call(VFIO_IOMMU_GET_INFO, &Buf::new(argsz as usize).u32(0, argsz).arg()).unwrap().out
    }

    /// A device of the group, opened: bound and attached to the
    /// compatibility IOAS.
    fn open_device(&self) -> u32 {
        let dev = self.fd.bind_device();
        self.fd.attach(dev, self.fd.compat_ioas_create()).unwrap();
        dev
    }
}

#[test]
fn before_a_group_joins_only_version_and_extensions_answer() {
    let c = Ctx::new();
    assert_eq!(c.value(VFIO_GET_API_VERSION, 0), Ok(0));
    // NOIOMMU is built in, UPDATE_VADDR and nesting are not offered.
    let ext: Vec<_> = [1, 3, 9, 8, 6, 10, 2, 0].iter().map(|&e| c.value(VFIO_CHECK_EXTENSION, e)).collect();
    assert_eq!(ext, [Ok(1), Ok(1), Ok(1), Ok(1), Ok(0), Ok(0), Ok(0), Ok(0)]);
    assert_eq!(c.value(VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU.into()), Err(Errno::NODEV));
    assert_eq!(c.value(VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU.into()), Err(Errno::NODEV));
    assert_eq!(c.value(VFIO_SET_IOMMU, VFIO_UNMAP_ALL.into()), Err(Errno::INVAL), "not a type");
    assert_eq!(errno(c.call(VFIO_IOMMU_GET_INFO, &Buf::new(16).u32(0, 16).arg())), Errno::NODEV);
    assert_eq!(errno(c.map(RW, BASE, IOVA, PAGE)), Errno::NODEV);
    assert_eq!(errno(c.unmap(0, IOVA, PAGE)), Errno::NODEV);
}

#[test]
fn with_a_group_set_iommu_may_repeat_and_cc_is_reported() {
    let c = Ctx::with_group();
    assert_eq!(c.value(VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU.into()), Ok(1));
    assert_eq!(c.value(VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU.into()), Ok(0));
    assert_eq!(c.value(VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU.into()), Ok(0));
    assert_eq!(c.value(VFIO_SET_IOMMU, 8), Err(Errno::INVAL));
}

#[test]
fn get_info_aligns_each_capability_to_8_bytes() {
    let c = Ctx::with_group();
    let out = c.info(200);
    // No domain yet: every page size, one range over the whole space.
    assert_eq!(out.len(), 72, "info 24 + dma_avail 12 (+4) + iova_range 16 + 16");
    assert_eq!((u32_at(&out, 0), u32_at(&out, 4)), (72, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS));
    assert_eq!((u64_at(&out, 8), u32_at(&out, 16)), (0xffff_ffff_ffff_f000, 24));
    assert_eq!((u16_at(&out, 24), u16_at(&out, 26), u32_at(&out, 28), u32_at(&out, 32)), (3, 1, 40, u32::MAX));
    assert_eq!((u16_at(&out, 40), u16_at(&out, 42), u32_at(&out, 44), u32_at(&out, 48)), (1, 1, 0, 1));
    assert_eq!((u64_at(&out, 56), u64_at(&out, 64)), (0, u64::MAX));
    // A device narrows the ranges and fixes the page sizes.
    c.open_device();
    let out = c.info(200);
    assert_eq!((out.len(), u32_at(&out, 0), u64_at(&out, 8)), (88, 88, 0x4020_1000));
    assert_eq!(u32_at(&out, 48), 2);
    assert_eq!((u64_at(&out, 56), u64_at(&out, 64)), (0, 0xfedf_ffff));
    assert_eq!((u64_at(&out, 72), u64_at(&out, 80)), (0xfef0_0000, 0xffff_ffff_ffff));
}

#[test]
fn get_info_writes_what_fits_and_always_the_size_needed() {
    let c = Ctx::with_group();
    c.open_device();
    // Room for DMA_AVAIL only: it is written and linked to where
    // IOVA_RANGE would be; cap_offset stays 0.
    let out = c.info(40);
    assert_eq!(out.len(), 40);
    assert_eq!((u32_at(&out, 0), u32_at(&out, 16)), (88, 0));
    assert_eq!((u16_at(&out, 24), u32_at(&out, 28)), (3, 40));
    // One byte short of the link: DMA_AVAIL without it.
    let out = c.info(39);
    assert_eq!((u16_at(&out, 24), u32_at(&out, 28)), (3, 0));
    // Room for one of two ranges: that range, but no header.
    let out = c.info(72);
    assert_eq!((u32_at(&out, 0), u32_at(&out, 16)), (88, 0));
    assert_eq!((u16_at(&out, 40), u64_at(&out, 64)), (0, 0xfedf_ffff));
    let out = c.info(20);
    assert_eq!((out.len(), u32_at(&out, 0), u32_at(&out, 16)), (20, 88, 0));
    assert_eq!(errno(c.call(VFIO_IOMMU_GET_INFO, &Buf::new(16).u32(0, 8).arg())), Errno::INVAL);
    assert_eq!(errno(c.call(VFIO_IOMMU_GET_INFO, &Buf::new(8).u32(0, 88).arg())), Errno::FAULT);
}

#[test]
fn map_and_unmap_go_to_the_compatibility_ioas() {
    let c = Ctx::with_group();
    c.open_device();
    assert_eq!(errno(c.map(RW | VFIO_DMA_MAP_FLAG_VADDR, BASE, IOVA, PAGE)), Errno::INVAL, "no VADDR");
    let small = Buf::new(32).u32(0, 16).u32(4, RW);
    assert_eq!(errno(c.call(VFIO_IOMMU_MAP_DMA, &small.arg())), Errno::INVAL);
    assert_eq!(errno(c.map(RW, BASE, LAST_PAGE, 2 * PAGE)), Errno::OVERFLOW);
    assert_eq!(errno(c.map(RW, BASE, IOVA, 0)), Errno::INVAL);
    assert_eq!(errno(c.map(RW, BASE, 0xfee0_0000, PAGE)), Errno::INVAL, "reserved");
    c.map(RW, BASE, IOVA, 2 * PAGE).unwrap();
    c.map(0, BASE, IOVA + 2 * PAGE, PAGE).unwrap();
    assert_eq!(errno(c.map(RW, BASE, IOVA + PAGE, PAGE)), Errno::EXIST);
    assert_eq!(errno(c.unmap(VFIO_DMA_UNMAP_FLAG_VADDR, IOVA, PAGE)), Errno::INVAL);
    assert_eq!(errno(c.unmap(VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, IOVA, PAGE)), Errno::INVAL);
    assert_eq!(errno(c.unmap(VFIO_DMA_UNMAP_FLAG_ALL, IOVA, 0)), Errno::INVAL);
    assert_eq!(errno(c.unmap(0, LAST_PAGE, 2 * PAGE)), Errno::OVERFLOW);
    // Type1v2 semantics: no splitting; the size goes back even then.
    let cut = c.unmap(0, IOVA, PAGE).unwrap();
    assert_eq!((cut.errno(), u64_at(&cut.out, 16)), (Some(Errno::NOENT), 0));
    assert_eq!(c.unmap(0, 0x9000_0000, PAGE).unwrap().errno(), Some(Errno::NOENT), "nothing there");
    let all = c.unmap(VFIO_DMA_UNMAP_FLAG_ALL, 0, 0).unwrap();
    assert_eq!((all.errno(), u64_at(&all.out, 16)), (None, 3 * PAGE));
    assert_eq!(u64_at(&c.unmap(VFIO_DMA_UNMAP_FLAG_ALL, 0, 0).unwrap().out, 16), 0);
}

#[test]
fn type1_v1_punches_holes_by_splitting_areas() {
    let c = Ctx::with_group();
    assert_eq!(c.value(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU.into()), Ok(0));
    let dev = c.open_device();
    c.map(RW, BASE, IOVA, 4 * PAGE).unwrap();
    let hole = c.unmap(0, IOVA + PAGE, 2 * PAGE).unwrap();
    assert_eq!((hole.errno(), u64_at(&hole.out, 16)), (None, 2 * PAGE));
    let space = c.fd.dma_space(dev).unwrap();
    space.dma_write(IOVA + 3 * PAGE, b"tail").unwrap();
    assert_eq!(c.mem.peek(BASE + 3 * PAGE, 4), b"tail", "the right part keeps its offset");
    assert_eq!(space.dma_read(IOVA + PAGE, &mut [0; 4]), Err(Errno::FAULT));
    assert_eq!(u64_at(&c.unmap(0, IOVA, PAGE).unwrap().out, 16), PAGE);
}

#[test]
fn type1_v1_cannot_be_chosen_once_a_domain_holds_mappings() {
    let c = Ctx::with_group();
    c.open_device();
    c.map(RW, BASE, IOVA, PAGE).unwrap();
    assert_eq!(c.value(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU.into()), Err(Errno::INVAL));
}

#[test]
fn a_bar_mmap_maps_through_type1_but_not_through_iommufd() {
    let bar = (BASE + 2 * PAGE, 2 * PAGE);
    let mem = FakeMem::with_pfnmap(BASE, 8 * PAGE as usize, bar);
    let map = Buf::new(32).u32(0, 32).u32(4, RW).u64(8, bar.0).u64(16, IOVA).u64(24, PAGE).arg();
    let container = Container::new();
    container.ioctl(VFIO_SET_IOMMU, &IoctlArg::Value(VFIO_TYPE1v2_IOMMU.into()), 1, caller(&mem)).unwrap();
    container.ioctl(VFIO_IOMMU_MAP_DMA, &map, 1, caller(&mem)).unwrap();
    let c = Ctx { fd: Iommufd::new(), mem };
    c.fd.compat_ioas_create();
    c.open_device();
    assert_eq!(errno(c.call(VFIO_IOMMU_MAP_DMA, &map)), Errno::FAULT);
    assert_eq!(c.unmap(0, IOVA, PAGE).unwrap().errno(), Some(Errno::NOENT), "and there is nothing to unmap");
}

#[test]
fn destroying_the_compatibility_ioas_takes_the_container_calls_with_it() {
    let c = Ctx::with_group();
    let id = c.fd.compat_ioas_create();
    assert_eq!(c.fd.compat_ioas_id(), Ok(id));
    c.call(IOMMU_DESTROY, &Buf::new(8).u32(0, 8).u32(4, id).arg()).unwrap();
    assert_eq!(errno(c.map(RW, BASE, IOVA, PAGE)), Errno::NODEV);
    assert_eq!(c.fd.compat_ioas_id(), Err(Errno::NODEV), "a device opened now fails");
}
