//! The iommufd context: objects, IOAS calls, attach.

use std::sync::Arc;

use rustix::io::Errno;
use wire::msg::IoctlArg;

use super::{caller, errno, u32_at, u64_at, Buf, FakeMem, BASE, LAST_PAGE};
use crate::iommu::uapi::*;
use crate::iommu::{IoctlOut, Iommufd};

const PAGE: u64 = 4096;
const IOVA: u64 = 0x10_0000;
const R: u32 = IOMMU_IOAS_MAP_READABLE;
const W: u32 = IOMMU_IOAS_MAP_WRITEABLE;
const FIXED: u32 = IOMMU_IOAS_MAP_FIXED_IOVA;
const RW: u32 = R | W;
/// Where the program's `struct iommu_iova_range` arrays live.
const ARRAY: u64 = BASE + 0x8000;

/// A context and the memory of the process calling it.
struct Ctx {
    fd: Iommufd,
    mem: Arc<FakeMem>,
}

impl Ctx {
    fn new() -> Self {
        Self { fd: Iommufd::new(), mem: FakeMem::new(BASE, 16 * PAGE as usize) }
    }

    fn call(&self, req: u64, arg: Buf) -> Result<IoctlOut, Errno> {
        self.fd.ioctl(req, &arg.arg(), caller(&self.mem))
    }

    fn ioas(&self) -> u32 {
        u32_at(&self.call(IOMMU_IOAS_ALLOC, Buf::new(12).u32(0, 12)).unwrap().out, 8)
    }

    fn destroy(&self, id: u32) -> Result<IoctlOut, Errno> {
        self.call(IOMMU_DESTROY, Buf::new(8).u32(0, 8).u32(4, id))
    }

    fn map_arg(flags: u32, ioas: u32, va: u64, len: u64, iova: u64) -> Buf {
        Buf::new(40).u32(0, 40).u32(4, flags).u32(8, ioas).u64(16, va).u64(24, len).u64(32, iova)
    }

    /// Maps and returns the IOVA written back.
    fn map(&self, flags: u32, ioas: u32, va: u64, len: u64, iova: u64) -> Result<u64, Errno> {
        self.call(IOMMU_IOAS_MAP, Self::map_arg(flags, ioas, va, len, iova)).map(|o| u64_at(&o.out, 32))
    }

    /// Unmaps and returns the length written back.
    fn unmap(&self, ioas: u32, iova: u64, len: u64) -> Result<u64, Errno> {
        let arg = Buf::new(24).u32(0, 24).u32(4, ioas).u64(8, iova).u64(16, len);
        self.call(IOMMU_IOAS_UNMAP, arg).map(|o| u64_at(&o.out, 16))
    }

    fn ranges(&self, ioas: u32, num: u32) -> Result<IoctlOut, Errno> {
        self.call(IOMMU_IOAS_IOVA_RANGES, Buf::new(32).u32(0, 32).u32(4, ioas).u32(8, num).u64(16, ARRAY))
    }

    fn allow(&self, ioas: u32, ranges: &[(u64, u64)]) -> Result<IoctlOut, Errno> {
        for (i, &(s, l)) in ranges.iter().enumerate() {
            self.mem.poke(ARRAY + 16 * i as u64, &[s.to_ne_bytes(), l.to_ne_bytes()].concat());
        }
        let arg = Buf::new(24).u32(0, 24).u32(4, ioas).u32(8, ranges.len() as u32).u64(16, ARRAY);
        self.call(IOMMU_IOAS_ALLOW_IOVAS, arg)
    }

    fn option(&self, option: u32, op: u16, object: u32, val: u64) -> Result<IoctlOut, Errno> {
        let arg = Buf::new(24).u32(0, 24).u32(4, option).u16(8, op).u32(12, object).u64(16, val);
        self.call(IOMMU_OPTION, arg)
    }
}

#[test]
fn the_size_field_rules_every_call() {
    let c = Ctx::new();
    let alloc = |arg: Buf| c.call(IOMMU_IOAS_ALLOC, arg);
    assert_eq!(errno(alloc(Buf::new(12).u32(0, 8))), Errno::INVAL, "size below the minimum");
    assert_eq!(errno(alloc(Buf::new(0))), Errno::INVAL, "size 0, nothing travelled");
    assert_eq!(errno(alloc(Buf::new(4).u32(0, 12))), Errno::FAULT, "memory ends");
    assert_eq!(errno(alloc(Buf::new(16).u32(0, 16).u32(12, 1))), Errno::TOOBIG, "unknown tail");
    let out = alloc(Buf::new(16).u32(0, 16)).unwrap().out;
    assert_eq!(out.len(), 12, "the kernel struct goes back, no more");
    assert_eq!(u32_at(&out, 8), 1);
    let value = c.fd.ioctl(IOMMU_IOAS_ALLOC, &IoctlArg::Value(0), caller(&c.mem));
    assert_eq!(value, Err(Errno::FAULT), "get_user(size) faults");
}

#[test]
fn calls_it_does_not_know_are_enotty() {
    let c = Ctx::new();
    // HWPT_ALLOC, GET_HW_INFO, MAP_FILE, the end of the range, another
    // type with a known number, an unknown container call, DIRTY_PAGES.
    for req in [0x3b89, 0x3b8a, 0x3b8f, 0x3b9f, 0x4b81, 0x3b60, 0x3b75] {
        assert_eq!(errno(c.call(req, Buf::new(64).u32(0, 64))), Errno::NOTTY, "{req:#x}");
    }
    // Past the iommufd numbers the argument travels as a value.
    assert_eq!(c.fd.ioctl(0x3ba0, &IoctlArg::Value(0), caller(&c.mem)), Err(Errno::NOTTY));
}

#[test]
fn objects_share_one_id_space_from_1_and_reuse_the_lowest_free() {
    let c = Ctx::new();
    let ioas = c.ioas();
    let dev = c.fd.bind_device();
    let hwpt = c.fd.attach(dev, ioas).unwrap();
    assert_eq!((ioas, dev, hwpt), (1, 2, 3), "IOAS alloc, bind, auto HWPT");
    let spare = c.ioas();
    assert_eq!(spare, 4);
    c.destroy(spare).unwrap();
    assert_eq!(c.ioas(), 4, "the lowest free id again");
    // Binding first, as older selftests do.
    let c = Ctx::new();
    let dev = c.fd.bind_device();
    let ioas = c.ioas();
    assert_eq!((dev, ioas, c.fd.attach(dev, ioas).unwrap()), (1, 2, 3));
}

#[test]
fn destroy_refuses_objects_in_use() {
    let c = Ctx::new();
    assert_eq!(errno(c.destroy(0)), Errno::NOENT);
    assert_eq!(errno(c.destroy(99)), Errno::NOENT);
    let ioas = c.ioas();
    let dev = c.fd.bind_device();
    let hwpt = c.fd.attach(dev, ioas).unwrap();
    assert_eq!(errno(c.destroy(dev)), Errno::BUSY, "VFIO owns the device object");
    assert_eq!(errno(c.destroy(hwpt)), Errno::BUSY, "a device is attached");
    assert_eq!(errno(c.destroy(ioas)), Errno::BUSY, "a HWPT is built on it");
    c.fd.detach(dev);
    assert_eq!(errno(c.destroy(hwpt)), Errno::NOENT, "the automatic HWPT went with its device");
    c.map(FIXED | RW, ioas, BASE, PAGE, IOVA).unwrap();
    c.destroy(ioas).unwrap();
    assert_eq!(errno(c.destroy(ioas)), Errno::NOENT);
    assert_eq!(errno(c.call(IOMMU_IOAS_ALLOC, Buf::new(12).u32(0, 12).u32(4, 1))), Errno::OPNOTSUPP, "flags");
}

#[test]
fn ioas_map_checks_in_kernel_order() {
    let c = Ctx::new();
    let ioas = c.ioas();
    let m = |flags, id, va, len, iova| c.map(flags, id, va, len, iova).unwrap_err();
    assert_eq!(m(FIXED | RW | 8, ioas, BASE, PAGE, IOVA), Errno::OPNOTSUPP, "unknown flag");
    let reserved = Ctx::map_arg(FIXED | RW, ioas, BASE, PAGE, IOVA).u32(12, 1);
    assert_eq!(errno(c.call(IOMMU_IOAS_MAP, reserved)), Errno::OPNOTSUPP, "__reserved");
    assert_eq!(m(FIXED | RW, ioas, BASE, PAGE, u64::MAX), Errno::OVERFLOW, "iova >= ULONG_MAX");
    assert_eq!(m(FIXED | RW, ioas, BASE, u64::MAX, IOVA), Errno::OVERFLOW, "length >= ULONG_MAX");
    assert_eq!(m(FIXED, ioas, BASE, PAGE, IOVA), Errno::INVAL, "neither readable nor writeable");
    assert_eq!(m(FIXED | RW, 99, BASE, PAGE, IOVA), Errno::NOENT, "no such IOAS");
    assert_eq!(m(FIXED | RW, ioas, BASE, 0, IOVA), Errno::INVAL, "length 0");
    assert_eq!(m(FIXED | RW, ioas, u64::MAX - PAGE, 2 * PAGE, IOVA), Errno::OVERFLOW, "user range wraps");
    assert_eq!(m(FIXED | RW, ioas, 0x2000, u64::MAX - 0x10, IOVA), Errno::OVERFLOW, "wraps before too long");
    assert_eq!(m(FIXED | RW, ioas, 0, u64::MAX - 0x10, IOVA), Errno::INVAL, "too long");
    assert_eq!(m(FIXED | RW, ioas, BASE, 2 * PAGE, LAST_PAGE), Errno::OVERFLOW, "IOVA range wraps");
    c.map(FIXED | RW, ioas, BASE, 2 * PAGE, IOVA).unwrap();
    assert_eq!(m(FIXED | RW, ioas, BASE, PAGE, IOVA + PAGE), Errno::EXIST, "FIXED_IOVA never replaces");
    // A fresh IOAS has no reserved ranges and byte alignment.
    c.map(FIXED | R, ioas, BASE + 3, 5, 0xfee0_0003).unwrap();
    c.map(FIXED | R, ioas, BASE, PAGE, u64::MAX - PAGE + 1).unwrap();
}

#[test]
fn an_attached_device_imposes_page_alignment_and_its_reserved_ranges() {
    let c = Ctx::new();
    let ioas = c.ioas();
    let dev = c.fd.bind_device();
    c.fd.attach(dev, ioas).unwrap();
    let m = |va, len, iova| c.map(FIXED | RW, ioas, va, len, iova).unwrap_err();
    assert_eq!(m(BASE, PAGE, IOVA + 1), Errno::INVAL, "iova off the page");
    assert_eq!(m(BASE, PAGE + 1, IOVA), Errno::INVAL, "length off the page");
    assert_eq!(m(BASE + 1, PAGE, IOVA), Errno::INVAL, "page offset");
    assert_eq!(m(BASE, PAGE, 0xfee0_0000), Errno::INVAL, "MSI window");
    assert_eq!(m(BASE, PAGE, 1 << 48), Errno::INVAL, "past the aperture");
    assert_eq!(m(BASE + 16 * PAGE, PAGE, IOVA), Errno::FAULT, "pinned now, and not mapped");
    c.map(FIXED | RW, ioas, BASE, PAGE, (1 << 48) - PAGE).unwrap();
}

#[test]
fn pages_are_pinned_when_a_domain_arrives() {
    let c = Ctx::new();
    let ioas = c.ioas();
    let dev = c.fd.bind_device();
    c.map(FIXED | RW, ioas, BASE + 64 * PAGE, PAGE, IOVA).unwrap();
    assert_eq!(c.fd.attach(dev, ioas), Err(Errno::FAULT), "filling the domain pins");
    assert!(c.fd.dma_space(dev).is_none());
    c.unmap(ioas, IOVA, PAGE).unwrap();
    assert_eq!(c.fd.attach(dev, ioas), Ok(3), "the failed HWPT's id came back");
}

#[test]
fn attach_refuses_an_ioas_whose_mappings_the_domain_cannot_take() {
    for (va, len, iova) in [(BASE, PAGE, 0xfee0_0000), (BASE, PAGE, 1 << 48), (BASE + 1, PAGE, IOVA), (BASE, 5, IOVA)] {
        let c = Ctx::new();
        let ioas = c.ioas();
        let dev = c.fd.bind_device();
        c.map(FIXED | RW, ioas, va, len, iova).unwrap();
        assert_eq!(c.fd.attach(dev, ioas), Err(Errno::ADDRINUSE), "{va:#x}+{len:#x} at {iova:#x}");
        c.unmap(ioas, iova, len).unwrap();
        c.fd.attach(dev, ioas).unwrap();
    }
}

#[test]
fn attach_resolves_ids_reuses_automatic_hwpts_and_replaces() {
    let c = Ctx::new();
    let ioas = c.ioas();
    let other = c.ioas();
    let (a, b) = (c.fd.bind_device(), c.fd.bind_device());
    assert_eq!(c.fd.attach(a, 99), Err(Errno::NOENT));
    assert_eq!(c.fd.attach(a, u32::MAX), Err(Errno::NOENT));
    assert_eq!(c.fd.attach(a, b), Err(Errno::INVAL), "a device is no page table");
    let hwpt = c.fd.attach(a, ioas).unwrap();
    assert_eq!(c.fd.attach(b, ioas), Ok(hwpt), "the IOAS's automatic HWPT is shared");
    assert_eq!(c.fd.attach(b, hwpt), Ok(hwpt), "by id too");
    assert_eq!(c.fd.attach(a, hwpt), Ok(hwpt), "attaching again is a no-op");
    // Replace: a moves to the other IOAS; the HWPT stays for b.
    let hwpt2 = c.fd.attach(a, other).unwrap();
    assert_ne!(hwpt2, hwpt);
    assert_eq!(errno(c.destroy(hwpt)), Errno::BUSY);
    c.fd.unbind_device(b);
    assert_eq!(errno(c.destroy(hwpt)), Errno::NOENT, "its last device left");
    c.destroy(ioas).unwrap();
    // a's reserved range went with it from the first IOAS and holds in the second.
    assert_eq!(c.map(FIXED | RW, other, BASE, PAGE, 0xfee0_0000), Err(Errno::INVAL));
    c.fd.detach(a);
    c.fd.detach(a);
    c.map(FIXED | RW, other, BASE, PAGE, 0xfee0_0000).unwrap();
}

#[test]
fn map_without_fixed_iova_allocates_and_writes_it_back() {
    let c = Ctx::new();
    let ioas = c.ioas();
    let a = c.map(RW, ioas, BASE, 2 * PAGE, 0).unwrap();
    let b = c.map(RW, ioas, BASE, 2 * PAGE, 0).unwrap();
    assert!(a != 0 && b != 0, "never IOVA 0");
    assert!(a + 2 * PAGE <= b || b + 2 * PAGE <= a, "no overlap");
    assert_eq!(a % (2 * PAGE), 0, "aligned as the length suggests");
    let off = c.map(R, ioas, BASE + 0x123, 0x10, 0).unwrap();
    assert_eq!(off % PAGE, 0x123, "the page offset is kept");
    // Inside the allowed ranges only.
    c.allow(ioas, &[(0x4000_0000, 0x4000_3fff)]).unwrap();
    assert_eq!(c.map(RW, ioas, BASE, 4 * PAGE, 0), Ok(0x4000_0000));
    assert_eq!(c.map(RW, ioas, BASE, PAGE, 0), Err(Errno::NOSPC));
}

#[test]
fn ioas_unmap_takes_whole_areas_only() {
    let c = Ctx::new();
    let ioas = c.ioas();
    assert_eq!(c.unmap(ioas, 0, u64::MAX), Ok(0), "unmap all succeeds on nothing");
    assert_eq!(c.unmap(99, 0, u64::MAX), Err(Errno::NOENT));
    c.map(FIXED | RW, ioas, BASE, 2 * PAGE, IOVA).unwrap();
    c.map(FIXED | RW, ioas, BASE, 2 * PAGE, IOVA + 2 * PAGE).unwrap();
    assert_eq!(c.unmap(ioas, IOVA, 0), Err(Errno::INVAL));
    assert_eq!(c.unmap(ioas, u64::MAX, PAGE), Err(Errno::OVERFLOW));
    assert_eq!(c.unmap(ioas, IOVA, u64::MAX), Err(Errno::OVERFLOW));
    assert_eq!(c.unmap(ioas, LAST_PAGE, 2 * PAGE), Err(Errno::OVERFLOW));
    assert_eq!(c.unmap(ioas, 0x9000_0000, PAGE), Err(Errno::NOENT), "nothing there");
    assert_eq!(c.unmap(ioas, IOVA + PAGE, PAGE), Err(Errno::NOENT), "inside an area");
    // The first area goes, the second is cut through: ENOENT, first gone.
    assert_eq!(c.unmap(ioas, IOVA, 3 * PAGE), Err(Errno::NOENT));
    assert_eq!(c.unmap(ioas, IOVA, 2 * PAGE), Err(Errno::NOENT));
    c.map(FIXED | RW, ioas, BASE, PAGE, IOVA + 8 * PAGE).unwrap();
    assert_eq!(c.unmap(ioas, IOVA, 16 * PAGE), Ok(3 * PAGE), "two areas and a hole");
    c.map(FIXED | RW, ioas, BASE, PAGE, IOVA).unwrap();
    assert_eq!(c.unmap(ioas, 0, u64::MAX), Ok(PAGE));
}

#[test]
fn iova_ranges_copies_the_struct_back_before_emsgsize() {
    let c = Ctx::new();
    let ioas = c.ioas();
    let reserved = Buf::new(32).u32(0, 32).u32(4, ioas).u32(12, 1);
    assert_eq!(errno(c.call(IOMMU_IOAS_IOVA_RANGES, reserved)), Errno::OPNOTSUPP);
    assert_eq!(errno(c.ranges(99, 0)), Errno::NOENT);
    let probe = c.ranges(ioas, 0).unwrap();
    assert_eq!(probe.errno(), Some(Errno::MSGSIZE));
    assert_eq!((u32_at(&probe.out, 8), u64_at(&probe.out, 24)), (1, 1), "one range, byte alignment");
    let got = c.ranges(ioas, 1).unwrap();
    assert_eq!(got.errno(), None);
    assert_eq!(u64_at(&c.mem.peek(ARRAY, 16), 8), u64::MAX, "[0, ULONG_MAX]");
    // A device narrows it: two ranges, page alignment.
    let dev = c.fd.bind_device();
    c.fd.attach(dev, ioas).unwrap();
    let one = c.ranges(ioas, 1).unwrap();
    assert_eq!(one.errno(), Some(Errno::MSGSIZE));
    assert_eq!((u32_at(&one.out, 8), u64_at(&one.out, 24)), (2, PAGE));
    c.ranges(ioas, 2).unwrap();
    let array = c.mem.peek(ARRAY, 32);
    assert_eq!((u64_at(&array, 0), u64_at(&array, 8)), (0, 0xfedf_ffff));
    assert_eq!((u64_at(&array, 16), u64_at(&array, 24)), (0xfef0_0000, (1 << 48) - 1));
    let bad = Buf::new(32).u32(0, 32).u32(4, ioas).u32(8, 2).u64(16, 0x1000);
    assert_eq!(errno(c.call(IOMMU_IOAS_IOVA_RANGES, bad)), Errno::FAULT);
}

#[test]
fn allow_iovas_checks_each_range_and_the_reserved_ones() {
    let c = Ctx::new();
    let ioas = c.ioas();
    let reserved = Buf::new(24).u32(0, 24).u32(4, ioas).u32(12, 1);
    assert_eq!(errno(c.call(IOMMU_IOAS_ALLOW_IOVAS, reserved)), Errno::OPNOTSUPP);
    assert_eq!(errno(c.allow(99, &[])), Errno::NOENT);
    assert_eq!(errno(c.allow(ioas, &[(0x2000, 0x2000)])), Errno::INVAL, "start not below last");
    assert_eq!(errno(c.allow(ioas, &[(0x1000, 0x2fff), (0x2000, 0x3fff)])), Errno::INVAL, "overlap");
    let far = Buf::new(24).u32(0, 24).u32(4, ioas).u32(8, 1).u64(16, 0x1000);
    assert_eq!(errno(c.call(IOMMU_IOAS_ALLOW_IOVAS, far)), Errno::FAULT);
    let dev = c.fd.bind_device();
    c.fd.attach(dev, ioas).unwrap();
    assert_eq!(errno(c.allow(ioas, &[(0xfe00_0000, 0xfeff_ffff)])), Errno::ADDRINUSE);
    // Two touching ranges hold a run aligned to its own size across both.
    c.allow(ioas, &[(0x4000, 0x5fff), (0x6000, 0x7fff)]).unwrap();
    assert_eq!(c.map(RW, ioas, BASE, 4 * PAGE, 0), Ok(0x4000), "touching ranges merge");
    c.allow(ioas, &[]).unwrap();
}

#[test]
fn allow_iovas_checks_ranges_in_order_where_the_array_runs_off() {
    let c = Ctx::new();
    let ioas = c.ioas();
    // The array starts 10 ranges in, so the memory ends inside a batch.
    let ptr = ARRAY + 16 * 10;
    let readable = (BASE + 16 * PAGE - ptr) / 16;
    for i in 0..readable {
        c.mem.poke(ptr + 16 * i, &[(i << 16).to_ne_bytes(), ((i << 16) + 0xfff).to_ne_bytes()].concat());
    }
    let arg = |num: u64| Buf::new(24).u32(0, 24).u32(4, ioas).u32(8, num as u32).u64(16, ptr);
    assert_eq!(errno(c.call(IOMMU_IOAS_ALLOW_IOVAS, arg(readable + 1))), Errno::FAULT);
    c.call(IOMMU_IOAS_ALLOW_IOVAS, arg(readable)).unwrap();
    // A bad range before the unreadable ones is found first.
    c.mem.poke(ptr + 16 * (readable - 5), &[5u64.to_ne_bytes(), 5u64.to_ne_bytes()].concat());
    assert_eq!(errno(c.call(IOMMU_IOAS_ALLOW_IOVAS, arg(readable + 100))), Errno::INVAL);
}

#[test]
fn an_allowed_range_over_a_device_reserved_one_blocks_the_attach() {
    let c = Ctx::new();
    let ioas = c.ioas();
    c.allow(ioas, &[(0xfe00_0000, 0xfeff_ffff)]).unwrap();
    let dev = c.fd.bind_device();
    assert_eq!(c.fd.attach(dev, ioas), Err(Errno::ADDRINUSE));
}

#[test]
fn option_rlimit_mode_and_huge_pages() {
    let c = Ctx::new();
    let (rlimit, huge) = (IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_HUGE_PAGES);
    let (set, get) = (IOMMU_OPTION_OP_SET, IOMMU_OPTION_OP_GET);
    let reserved = Buf::new(24).u32(0, 24).u16(10, 1);
    assert_eq!(errno(c.call(IOMMU_OPTION, reserved)), Errno::OPNOTSUPP);
    assert_eq!(errno(c.option(7, get, 0, 0)), Errno::OPNOTSUPP, "unknown option");
    assert_eq!(errno(c.option(rlimit, get, 1, 0)), Errno::OPNOTSUPP, "object_id");
    assert_eq!(errno(c.option(rlimit, 2, 0, 0)), Errno::OPNOTSUPP, "unknown op");
    assert_eq!(errno(c.option(rlimit, set, 0, 2)), Errno::INVAL);
    c.option(rlimit, set, 0, 1).unwrap();
    let out = c.option(rlimit, get, 0, 0).unwrap().out;
    assert_eq!((out.len(), u64_at(&out, 16)), (24, 1), "only val64 changes");
    let ioas = c.ioas();
    assert_eq!(errno(c.option(rlimit, set, 0, 0)), Errno::BUSY, "objects exist");
    assert_eq!(errno(c.option(huge, get, 99, 0)), Errno::NOENT);
    assert_eq!(u64_at(&c.option(huge, get, ioas, 0).unwrap().out, 16), 1);
    assert_eq!(errno(c.option(huge, set, ioas, 2)), Errno::INVAL);
    assert_eq!(errno(c.option(huge, 2, ioas, 0)), Errno::OPNOTSUPP);
    c.map(FIXED | RW, ioas, BASE + 1, PAGE, IOVA + 1).unwrap();
    assert_eq!(errno(c.option(huge, set, ioas, 0)), Errno::ADDRINUSE, "an area off the page");
    c.unmap(ioas, 0, u64::MAX).unwrap();
    c.option(huge, set, ioas, 0).unwrap();
    assert_eq!(u64_at(&c.option(huge, get, ioas, 0).unwrap().out, 16), 0);
    assert_eq!(u64_at(&c.ranges(ioas, 1).unwrap().out, 24), PAGE, "pages only now");
    c.option(huge, set, ioas, 1).unwrap();
    // With a domain holding mappings, huge pages cannot be turned off.
    let dev = c.fd.bind_device();
    c.fd.attach(dev, ioas).unwrap();
    c.map(FIXED | RW, ioas, BASE, PAGE, IOVA).unwrap();
    assert_eq!(errno(c.option(huge, set, ioas, 0)), Errno::INVAL);
}

#[test]
fn ioas_copy_maps_the_same_pages_elsewhere() {
    let c = Ctx::new();
    let (src, dst) = (c.ioas(), c.ioas());
    let copy = |flags: u32, dst_ioas: u32, src_ioas: u32, len: u64, dst_iova: u64, src_iova: u64| {
        let arg = Buf::new(40).u32(0, 40).u32(4, flags).u32(8, dst_ioas).u32(12, src_ioas);
        c.call(IOMMU_IOAS_COPY, arg.u64(16, len).u64(24, dst_iova).u64(32, src_iova)).map(|o| u64_at(&o.out, 24))
    };
    c.map(FIXED | RW, src, BASE, PAGE, IOVA).unwrap();
    c.map(FIXED | R, src, BASE + PAGE, PAGE, IOVA + PAGE).unwrap();
    assert_eq!(copy(RW | 8, dst, src, PAGE, IOVA, IOVA), Err(Errno::OPNOTSUPP));
    assert_eq!(copy(RW, dst, src, u64::MAX, IOVA, IOVA), Err(Errno::OVERFLOW));
    assert_eq!(copy(RW, dst, src, PAGE, IOVA, u64::MAX), Err(Errno::OVERFLOW));
    assert_eq!(copy(FIXED, dst, src, PAGE, IOVA, IOVA), Err(Errno::INVAL), "no permission");
    assert_eq!(copy(FIXED | R, dst, 99, PAGE, IOVA, IOVA), Err(Errno::NOENT), "source IOAS");
    assert_eq!(copy(FIXED | R, dst, src, 0, IOVA, IOVA), Err(Errno::INVAL), "length 0");
    assert_eq!(copy(FIXED | R, dst, src, 3 * PAGE, IOVA, IOVA), Err(Errno::NOENT), "runs past the areas");
    assert_eq!(copy(FIXED | R, dst, src, PAGE, IOVA, IOVA - PAGE), Err(Errno::NOENT), "starts in a hole");
    assert_eq!(copy(FIXED | R, 99, src, PAGE, IOVA, IOVA), Err(Errno::NOENT), "destination IOAS");
    assert_eq!(copy(FIXED | RW, dst, src, 2 * PAGE, IOVA, IOVA), Err(Errno::PERM), "read-only pages");
    assert_eq!(copy(FIXED | R, dst, src, 2 * PAGE, 0x5000_0000, IOVA), Ok(0x5000_0000));
    assert_eq!(copy(FIXED | R, dst, src, PAGE, 0x5000_0000, IOVA), Err(Errno::EXIST));
    let got = copy(R, dst, src, PAGE, 0, IOVA + PAGE).unwrap();
    assert_ne!(got, 0, "allocated");
    // Two areas went to the fixed place: unmapping one alone cuts nothing.
    assert_eq!(c.unmap(dst, 0x5000_0000, PAGE), Ok(PAGE));
}

#[test]
fn vfio_ioas_names_the_compatibility_ioas() {
    let c = Ctx::new();
    let cmd = |id: u32, op: u16| c.call(IOMMU_VFIO_IOAS, Buf::new(12).u32(0, 12).u32(4, id).u16(8, op));
    assert_eq!(errno(cmd(0, IOMMU_VFIO_IOAS_GET)), Errno::NODEV);
    assert_eq!(errno(cmd(0, 3)), Errno::OPNOTSUPP);
    let reserved = Buf::new(12).u32(0, 12).u16(10, 1);
    assert_eq!(errno(c.call(IOMMU_VFIO_IOAS, reserved)), Errno::OPNOTSUPP);
    assert_eq!(errno(cmd(5, IOMMU_VFIO_IOAS_SET)), Errno::NOENT);
    let ioas = c.ioas();
    cmd(ioas, IOMMU_VFIO_IOAS_SET).unwrap();
    assert_eq!(u32_at(&cmd(0, IOMMU_VFIO_IOAS_GET).unwrap().out, 4), ioas);
    assert_eq!(c.fd.compat_ioas_create(), ioas, "it exists already");
    cmd(0, IOMMU_VFIO_IOAS_CLEAR).unwrap();
    assert_eq!(errno(cmd(0, IOMMU_VFIO_IOAS_GET)), Errno::NODEV);
    let made = c.fd.compat_ioas_create();
    assert_ne!(made, ioas);
    c.destroy(made).unwrap();
    assert_eq!(errno(cmd(0, IOMMU_VFIO_IOAS_GET)), Errno::NODEV, "destroyed with it");
}
