//! The iommufd side wired to devices: copy-then-fail answers, the group
//! path through `/dev/iommu` (the compatibility IOAS), cdev attach and
//! detach moving the device's DMA, and BAR mappings as DMA sources
//! (refused by iommufd, peer to peer through Type1).

mod common;

use std::os::fd::OwnedFd;

use common::edu::*;
use common::*;
use server::iommu::ProcessMemory;
use wire::msg::IoctlArg;
use wire::{Reply, Request};

fn bytes(w: &[u32]) -> IoctlArg {
    IoctlArg::Bytes(words(w))
}

const IOVA: u64 = 0x20_0000;

/// `IOMMU_IOAS_IOVA_RANGES` with an array of `n` entries at `array`.
fn iova_ranges(c: &Client, iommufd: &OwnedFd, ioas: u32, n: u32, array: u64) -> Result<Vec<u8>, (i32, Vec<u8>)> {
    let mut arg = words(&[32, ioas, n, 0]);
    arg.extend_from_slice(&array.to_ne_bytes());
    arg.extend_from_slice(&0u64.to_ne_bytes());
    c.ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, IoctlArg::Bytes(arg)).map(|r| r.1)
}

#[test]
fn iova_ranges_into_too_small_an_array_is_emsgsize_with_the_count_copied_back() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let iommufd = c.open("/dev/iommu").unwrap();
    let ioas = ioas_alloc(&c, &iommufd);
    let (errno, out) = iova_ranges(&c, &iommufd, ioas, 0, 0).unwrap_err();
    assert_eq!(errno, libc::EMSGSIZE);
    assert_eq!(u32_at(&out, 8), 1, "num_iovas: the whole space, nothing attached");
    // Sized from that count, the array is filled.
    let mem = Pages::new();
    let out = iova_ranges(&c, &iommufd, ioas, 1, mem.addr(0)).unwrap();
    assert_eq!(u32_at(&out, 8), 1);
    let range = peek(mem.addr(0), 16);
    assert_eq!((u64_at(&range, 0), u64_at(&range, 8)), (0, u64::MAX));
}

#[test]
fn a_group_on_an_iommufd_opens_devices_attached_to_the_compatibility_ioas() {
    let srv = TestServer::start(&["edu"], &[0]);
    let c = Client::new(&srv);
    let iommufd = c.open("/dev/iommu").unwrap();
    let group = c.open("/dev/vfio/0").unwrap();
    set_container(&c, &group, &iommufd);
    // The compatibility IOAS exists now: the container calls reach it.
    let (_, out, _) = c.ioctl(&iommufd, IOMMU_VFIO_IOAS, bytes(&[12, 0, 0])).unwrap();
    let compat = u32_at(&out, 4);
    assert_ne!(compat, 0);
    let mem = Pages::new();
    me().write(mem.addr(0), &pattern(512, 5)).unwrap();
    assert_eq!(map_dma(&c, &iommufd, mem.addr(0), IOVA, 2 * PAGE), Ok(0));
    let dev = device_fd(&c, &group, "0000:00:03.0").unwrap();
    enable_bus_master(&c, &dev);
    let efd = intx_eventfd(&c, &dev);
    edu_dma(&c, &dev, &efd, IOVA, EDU_BUFFER, 512, false);
    edu_dma(&c, &dev, &efd, EDU_BUFFER, IOVA + PAGE, 512, true);
    assert_eq!(peek(mem.addr(PAGE), 512), pattern(512, 5));
}

#[test]
fn without_a_compatibility_ioas_the_group_path_open_is_enodev() {
    let srv = TestServer::start(&["edu"], &[0]);
    let c = Client::new(&srv);
    let iommufd = c.open("/dev/iommu").unwrap();
    let group = c.open("/dev/vfio/0").unwrap();
    set_container(&c, &group, &iommufd);
    // IOMMU_VFIO_IOAS_CLEAR: vfio_iommufd_compat_attach_ioas() finds none.
    c.ioctl(&iommufd, IOMMU_VFIO_IOAS, bytes(&[12, 0, 2])).unwrap();
    assert_eq!(device_fd(&c, &group, "0000:00:03.0").unwrap_err(), libc::ENODEV);
    // The failed open left no device open behind: the group may leave.
    assert_eq!(c.ioctl(&group, GROUP_UNSET_CONTAINER, IoctlArg::Value(0)).map(|r| r.0), Ok(0));
    set_container(&c, &group, &iommufd);
    let dev = device_fd(&c, &group, "0000:00:03.0").unwrap();
    assert_eq!(tag_kind(&dev), Some(wire::ObjectKind::Device));
}

#[test]
fn a_cdev_reaches_memory_while_attached_and_nothing_after_detach() {
    let srv = TestServer::start(&["edu"], &[0]);
    let c = Client::new(&srv);
    let (iommufd, dev) = c.bound_device(0);
    let ioas = ioas_alloc(&c, &iommufd);
    let mem = Pages::new();
    me().write(mem.addr(0), &pattern(64, 11)).unwrap();
    assert_eq!(ioas_map(&c, &iommufd, ioas, mem.addr(0), IOVA, 2 * PAGE), Ok(0));
    enable_bus_master(&c, &dev);
    let efd = intx_eventfd(&c, &dev);
    // Bound, not attached: DMA reaches nothing.
    edu_dma(&c, &dev, &efd, IOVA, EDU_BUFFER, 64, false);
    edu_dma(&c, &dev, &efd, EDU_BUFFER, IOVA + PAGE, 64, true);
    assert_eq!(peek(mem.addr(PAGE), 64), vec![0; 64]);
    c.ioctl(&dev, DEVICE_ATTACH_IOMMUFD_PT, bytes(&[12, 0, ioas])).unwrap();
    edu_dma(&c, &dev, &efd, IOVA, EDU_BUFFER, 64, false);
    edu_dma(&c, &dev, &efd, EDU_BUFFER, IOVA + PAGE, 64, true);
    assert_eq!(peek(mem.addr(PAGE), 64), pattern(64, 11));
    c.ioctl(&dev, DEVICE_DETACH_IOMMUFD_PT, bytes(&[8, 0])).unwrap();
    me().write(mem.addr(PAGE), &[0; 64]).unwrap();
    edu_dma(&c, &dev, &efd, EDU_BUFFER, IOVA + PAGE, 64, true);
    assert_eq!(peek(mem.addr(PAGE), 64), vec![0; 64], "detached");
}

/// `Request::Mapped` of mapping `mapping` at `addr`.
fn mapped(c: &Client, mapping: u64, addr: u64) -> Reply {
    c.call(&Request::Mapped { mapping, addr }, &[]).0
}

#[test]
fn a_bar_mapping_is_refused_by_iommufd_as_a_pfnmap_range() {
    let srv = TestServer::start(&["edu", "edu-plus"], &[0, 1]);
    let c = Client::new(&srv);
    let _n = Notifier::acking(&srv, c.token);
    let (iommufd, edu) = c.bound_device(0);
    let plus = c.open("/dev/vfio/devices/vfio1").unwrap();
    c.bind(&plus, &iommufd).unwrap();
    let ioas = ioas_alloc(&c, &iommufd);
    c.ioctl(&edu, DEVICE_ATTACH_IOMMUFD_PT, bytes(&[12, 0, ioas])).unwrap();
    // The process maps BAR1 of edu-plus and says where.
    c.mmap(&plus, 1, region(1), 2 * PAGE).unwrap();
    let place = Pages::new();
    assert_eq!(mapped(&c, 2, place.addr(0)), Reply::Err { errno: EINVAL }, "no such mapping");
    assert_eq!(mapped(&c, 1, place.addr(1)), Reply::Err { errno: EINVAL }, "not page aligned");
    assert_eq!(mapped(&c, 1, place.addr(0)), Reply::Ok);
    // pin_user_pages() refuses VM_PFNMAP: EFAULT; ordinary memory beside it maps.
    assert_eq!(ioas_map(&c, &iommufd, ioas, place.addr(0), IOVA, 2 * PAGE), Err(libc::EFAULT));
    assert_eq!(ioas_map(&c, &iommufd, ioas, place.addr(PAGE), IOVA, 2 * PAGE), Err(libc::EFAULT), "overlaps it");
    assert_eq!(ioas_map(&c, &iommufd, ioas, place.addr(2 * PAGE), IOVA, 2 * PAGE), Ok(0));
    // Unmapped: the addresses are ordinary memory again.
    assert_eq!(c.call(&Request::Unmapped { mapping: 1 }, &[]).0, Reply::Ok);
    assert_eq!(ioas_map(&c, &iommufd, ioas, place.addr(0), IOVA + 2 * PAGE, 2 * PAGE), Ok(0));
}

#[test]
fn type1_maps_a_bar_mapping_and_dma_goes_peer_to_peer() {
    let srv = TestServer::start(&["edu", "edu-plus"], &[0, 1]);
    let c = Client::new(&srv);
    let _n = Notifier::acking(&srv, c.token);
    let container = c.open("/dev/vfio/vfio").unwrap();
    let g0 = c.open("/dev/vfio/0").unwrap();
    let g1 = c.open("/dev/vfio/1").unwrap();
    set_container(&c, &g0, &container);
    set_container(&c, &g1, &container);
    assert_eq!(c.ioctl(&container, SET_IOMMU, IoctlArg::Value(TYPE1V2)).map(|r| r.0), Ok(0));
    let edu = device_fd(&c, &g0, "0000:00:03.0").unwrap();
    let plus = device_fd(&c, &g1, "0000:00:04.0").unwrap();
    c.mmap(&plus, 1, region(1), 2 * PAGE).unwrap();
    let place = Pages::new();
    assert_eq!(mapped(&c, 1, place.addr(0)), Reply::Ok);
    // vaddr_get_pfns() follows the pfns of a VM_PFNMAP range.
    assert_eq!(map_dma(&c, &container, place.addr(0), IOVA, 2 * PAGE), Ok(0));
    enable_bus_master(&c, &edu);
    let efd = intx_eventfd(&c, &edu);
    // The edu buffer gets a pattern from BAR1 (peer to peer), then writes it
    // back one page further into BAR1.
    assert_eq!(c.pwrite(&plus, region(1), &pattern(128, 21)), Ok(128));
    edu_dma(&c, &edu, &efd, IOVA, EDU_BUFFER, 128, false);
    edu_dma(&c, &edu, &efd, EDU_BUFFER, IOVA + PAGE, 128, true);
    assert_eq!(c.pread(&plus, region(1) + PAGE, 128), Ok(pattern(128, 21)));
    assert_eq!(peek(place.addr(PAGE), 128), vec![0; 128], "the process's own pages are not what DMA reached");
}
