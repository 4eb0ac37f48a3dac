//! DMA through container and IOAS mappings.

use std::sync::Arc;

use rustix::io::Errno;
use wire::msg::IoctlArg;

use super::{caller, Buf, FakeMem, BASE};
use crate::iommu::uapi::*;
use crate::iommu::{Container, Iommufd};

const PAGE: u64 = 4096;
const IOVA: u64 = 0x20_0000;

fn type1_map(c: &Container, mem: &Arc<FakeMem>, flags: u32, vaddr: u64, iova: u64, size: u64) {
    let arg = Buf::new(32).u32(0, 32).u32(4, flags).u64(8, vaddr).u64(16, iova).u64(24, size).arg();
    c.ioctl(VFIO_IOMMU_MAP_DMA, &arg, 1, caller(mem)).unwrap();
}

fn container(mem: &Arc<FakeMem>) -> Container {
    let c = Container::new();
    c.ioctl(VFIO_SET_IOMMU, &IoctlArg::Value(VFIO_TYPE1v2_IOMMU.into()), 1, caller(mem)).unwrap();
    c
}

#[test]
fn a_transfer_spans_adjacent_mappings_of_two_processes() {
    let a = FakeMem::new(BASE, 2 * PAGE as usize);
    let b = FakeMem::new(0x5555_0000_0000, 2 * PAGE as usize);
    let c = container(&a);
    let rw = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    type1_map(&c, &a, rw, BASE, IOVA, PAGE);
    type1_map(&c, &b, rw, 0x5555_0000_0000 + PAGE, IOVA + PAGE, PAGE);
    let space = c.dma_space().unwrap();
    space.dma_write(IOVA + PAGE - 2, b"abcd").unwrap();
    assert_eq!(a.peek(BASE + PAGE - 2, 2), b"ab");
    assert_eq!(b.peek(0x5555_0000_0000 + PAGE, 2), b"cd");
    let mut back = [0u8; 4];
    space.dma_read(IOVA + PAGE - 2, &mut back).unwrap();
    assert_eq!(&back, b"abcd");
    space.dma_read(IOVA, &mut []).unwrap();
}

#[test]
fn a_gap_or_a_missing_permission_faults_before_any_byte_moves() {
    let mem = FakeMem::new(BASE, 4 * PAGE as usize);
    let c = container(&mem);
    type1_map(&c, &mem, VFIO_DMA_MAP_FLAG_READ, BASE, IOVA, PAGE);
    type1_map(&c, &mem, VFIO_DMA_MAP_FLAG_WRITE, BASE + PAGE, IOVA + PAGE, PAGE);
    type1_map(&c, &mem, VFIO_DMA_MAP_FLAG_WRITE, BASE + 3 * PAGE, IOVA + 3 * PAGE, PAGE);
    let space = c.dma_space().unwrap();
    // Device writes need IOMMU_WRITE: the read-only first page refuses.
    assert_eq!(space.dma_write(IOVA, &[1; 8]), Err(Errno::FAULT));
    // Device reads need IOMMU_READ: the write-only second page refuses.
    assert_eq!(space.dma_read(IOVA + PAGE, &mut [0; 8]), Err(Errno::FAULT));
    // Writable, then a hole: nothing is written at all.
    assert_eq!(space.dma_write(IOVA + 2 * PAGE - 4, &[7; 8]), Err(Errno::FAULT));
    assert_eq!(mem.peek(BASE + 2 * PAGE - 4, 4), [0; 4]);
    assert_eq!(space.dma_write(u64::MAX - 1, &[0; 4]), Err(Errno::FAULT), "wraps");
}

#[test]
fn device_dma_follows_attach_detach_and_copies() {
    let fd = Iommufd::new();
    let mem = FakeMem::new(BASE, 2 * PAGE as usize);
    let call = |req, arg: Buf| fd.ioctl(req, &arg.arg(), caller(&mem)).unwrap().out;
    let ioas = super::u32_at(&call(IOMMU_IOAS_ALLOC, Buf::new(12).u32(0, 12)), 8);
    let other = super::u32_at(&call(IOMMU_IOAS_ALLOC, Buf::new(12).u32(0, 12)), 8);
    let rw = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    let map = Buf::new(40).u32(0, 40).u32(4, rw).u32(8, ioas).u64(16, BASE).u64(24, 2 * PAGE).u64(32, IOVA);
    call(IOMMU_IOAS_MAP, map);
    let dev = fd.bind_device();
    assert!(fd.dma_space(dev).is_none(), "not attached");
    fd.attach(dev, ioas).unwrap();
    let space = fd.dma_space(dev).unwrap();
    space.dma_write(IOVA + 8, b"dma").unwrap();
    assert_eq!(mem.peek(BASE + 8, 3), b"dma");
    // IOMMU_IOAS_COPY maps the same pages into another IOAS.
    let copy = Buf::new(40).u32(0, 40).u32(4, rw).u32(8, other).u32(12, ioas).u64(16, PAGE).u64(24, 0x9000_0000);
    call(IOMMU_IOAS_COPY, copy.u64(32, IOVA));
    fd.attach(dev, other).unwrap();
    let mut b = [0u8; 3];
    space.dma_read(0x9000_0008, &mut b).unwrap();
    assert_eq!(&b, b"dma", "the same handle now sees the new IOAS");
    assert_eq!(space.dma_read(IOVA, &mut b), Err(Errno::FAULT));
    fd.detach(dev);
    assert_eq!(space.dma_read(0x9000_0008, &mut b), Err(Errno::FAULT), "detached");
    assert!(fd.dma_space(dev).is_none());
}

#[test]
fn a_handle_of_an_unbound_device_does_not_reach_the_next_one_with_its_id() {
    let fd = Iommufd::new();
    let mem = FakeMem::new(BASE, PAGE as usize);
    let out = fd.ioctl(IOMMU_IOAS_ALLOC, &Buf::new(12).u32(0, 12).arg(), caller(&mem)).unwrap().out;
    let ioas = super::u32_at(&out, 8);
    let rw = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    let map = Buf::new(40).u32(0, 40).u32(4, rw).u32(8, ioas).u64(16, BASE).u64(24, PAGE).u64(32, IOVA);
    fd.ioctl(IOMMU_IOAS_MAP, &map.arg(), caller(&mem)).unwrap();
    let old = fd.bind_device();
    fd.attach(old, ioas).unwrap();
    let stale = fd.dma_space(old).unwrap();
    fd.unbind_device(old);
    let new = fd.bind_device();
    assert_eq!(new, old, "the id is reused");
    fd.attach(new, ioas).unwrap();
    assert_eq!(stale.dma_read(IOVA, &mut [0; 4]), Err(Errno::FAULT));
    fd.dma_space(new).unwrap().dma_read(IOVA, &mut [0; 4]).unwrap();
}
