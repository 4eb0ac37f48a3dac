//! The legacy path end to end: container, group, Type1 IOMMU, DMA mappings
//! of the test process's memory, a device opened through the group, edu's
//! DMA engine moving bytes through those mappings with its completion
//! interrupt, and the lifetimes that tie the files together.

mod common;

use common::edu::*;
use common::*;
use server::iommu::ProcessMemory;
use wire::msg::IoctlArg;

fn bytes(w: &[u32]) -> IoctlArg {
    IoctlArg::Bytes(words(w))
}

const EDU: &str = "0000:00:03.0";
const IOVA: u64 = 0x10_0000;

/// `VFIO_IOMMU_GET_INFO` with room for the capability chain: the IOVA
/// range capability (id 1) lists the ranges around the MSI window.
fn check_info(c: &Client, container: &std::os::fd::OwnedFd) {
    // Too small for the chain: argsz says how much is needed, no cap_offset.
    let (_, out, _) = c.ioctl(container, IOMMU_GET_INFO, bytes(&[24, 0, 0, 0, 0, 0])).unwrap();
    let need = u32_at(&out, 0);
    assert!(need > 24, "the chain needs more room: {need}");
    assert_eq!(u32_at(&out, 4) & 3, 3, "PGSIZES | CAPS");
    assert_eq!(u64_at(&out, 8), (1 << 12) | (1 << 21) | (1 << 30));
    assert_eq!(u32_at(&out, 16), 0, "no cap_offset when the chain does not fit");
    let mut arg = words(&[need, 0]);
    arg.resize(need as usize, 0);
    let (_, out, _) = c.ioctl(container, IOMMU_GET_INFO, IoctlArg::Bytes(arg)).unwrap();
    let mut at = u32_at(&out, 16) as usize;
    let mut iova_ranges = None;
    while at != 0 {
        let (id, next) = (u32_at(&out, at) & 0xffff, u32_at(&out, at + 4) as usize);
        if id == 1 {
            iova_ranges = Some(u32_at(&out, at + 8));
        }
        at = next;
    }
    assert_eq!(iova_ranges, Some(2), "below and above the MSI window");
}

#[test]
fn the_legacy_path_maps_process_memory_and_edu_dma_reaches_it() {
    let srv = TestServer::start(&["edu"], &[0]);
    let c = Client::new(&srv);
    let container = c.open("/dev/vfio/vfio").unwrap();
    assert_eq!(c.ioctl(&container, GET_API_VERSION, IoctlArg::Value(0)).map(|r| r.0), Ok(0));
    assert_eq!(c.ioctl(&container, CHECK_EXTENSION, IoctlArg::Value(TYPE1V2)).map(|r| r.0), Ok(1));
    // vfio_ioctl_set_iommu(): no group yet is EINVAL.
    assert_eq!(c.ioctl_errno(&container, SET_IOMMU, IoctlArg::Value(TYPE1V2)), EINVAL);
    let group = c.open("/dev/vfio/0").unwrap();
    let (_, out, _) = c.ioctl(&group, GROUP_GET_STATUS, bytes(&[8, 0])).unwrap();
    assert_eq!(u32_at(&out, 4), 1, "viable");
    set_container(&c, &group, &container);
    assert_eq!(c.ioctl_errno(&group, GROUP_GET_DEVICE_FD, IoctlArg::Str(EDU.into())), EINVAL, "no IOMMU yet");
    assert_eq!(c.ioctl(&container, SET_IOMMU, IoctlArg::Value(TYPE1V2)).map(|r| r.0), Ok(0));
    check_info(&c, &container);

    let mem = Pages::new();
    me().write(mem.addr(0), &pattern(256, 1)).unwrap();
    assert_eq!(map_dma(&c, &container, mem.addr(0), IOVA, 2 * PAGE), Ok(0));
    assert_eq!(map_dma(&c, &container, mem.addr(0), IOVA, 2 * PAGE), Err(libc::EEXIST), "overlapping IOVA");

    let dev = device_fd(&c, &group, EDU).unwrap();
    let (_, out, _) = c.ioctl(&dev, DEVICE_GET_INFO, bytes(&[24, 0, 0, 0, 0, 0])).unwrap();
    assert_eq!((u32_at(&out, 4), u32_at(&out, 8), u32_at(&out, 12)), (3, 9, 5), "PCI|RESET, 9 regions, 5 irqs");
    assert_eq!(c.ioctl_errno(&dev, DEVICE_GET_REGION_INFO, bytes(&[32, 0, 8, 0, 0, 0, 0, 0])), EINVAL, "no VGA");
    let (_, rom, _) = c.ioctl(&dev, DEVICE_GET_REGION_INFO, bytes(&[32, 0, 6, 0, 0, 0, 0, 0])).unwrap();
    assert_eq!((u32_at(&rom, 4), u64_at(&rom, 16), u64_at(&rom, 24)), (0, 0, 6 << 40), "no ROM: size 0");

    enable_bus_master(&c, &dev);
    let efd = intx_eventfd(&c, &dev);
    // Memory → device, then device → the second page.
    edu_dma(&c, &dev, &efd, IOVA, EDU_BUFFER, 256, false);
    edu_dma(&c, &dev, &efd, EDU_BUFFER, IOVA + PAGE, 256, true);
    assert_eq!(peek(mem.addr(PAGE), 256), pattern(256, 1));

    // A device is open: the group cannot leave its container.
    assert_eq!(c.ioctl_errno(&group, GROUP_UNSET_CONTAINER, IoctlArg::Value(0)), libc::EBUSY);
    // Closing the group keeps the device (and its DMA) usable.
    c.close(group);
    assert_eq!(c.open("/dev/vfio/0").unwrap_err(), libc::EBUSY, "held by the device file");
    me().write(mem.addr(0), &pattern(128, 9)).unwrap();
    edu_dma(&c, &dev, &efd, IOVA, EDU_BUFFER, 128, false);
    edu_dma(&c, &dev, &efd, EDU_BUFFER, IOVA + PAGE + 256, 128, true);
    assert_eq!(peek(mem.addr(PAGE + 256), 128), pattern(128, 9));

    // The last close releases the group and, its last group gone, the
    // container's IOMMU: its mappings are gone and the driver calls fail.
    c.close(dev);
    let group = c.open("/dev/vfio/0").unwrap();
    assert_eq!(map_dma(&c, &container, mem.addr(0), IOVA, PAGE), Err(EINVAL), "no IOMMU set any more");
    set_container(&c, &group, &container);
    assert_eq!(c.ioctl(&container, SET_IOMMU, IoctlArg::Value(TYPE1V2)).map(|r| r.0), Ok(0));
    assert_eq!(map_dma(&c, &container, mem.addr(0), IOVA, 2 * PAGE), Ok(0), "the old mapping is gone");
}

#[test]
fn dma_outside_the_mappings_or_after_an_unmap_reaches_nothing() {
    let srv = TestServer::start(&["edu"], &[0]);
    let c = Client::new(&srv);
    let container = c.open("/dev/vfio/vfio").unwrap();
    let group = c.open("/dev/vfio/0").unwrap();
    set_container(&c, &group, &container);
    c.ioctl(&container, SET_IOMMU, IoctlArg::Value(TYPE1V2)).unwrap();
    let mem = Pages::new();
    assert_eq!(map_dma(&c, &container, mem.addr(0), IOVA, PAGE), Ok(0));
    let dev = device_fd(&c, &group, EDU).unwrap();
    enable_bus_master(&c, &dev);
    let efd = intx_eventfd(&c, &dev);
    // An IOVA outside the mapping faults: edu still completes, nothing lands.
    edu_dma(&c, &dev, &efd, EDU_BUFFER, IOVA + PAGE, 64, true);
    assert_eq!(peek(mem.addr(0), PAGE as usize), vec![0; PAGE as usize]);
    // Unmapped: the device no longer reaches the page.
    let mut unmap = words(&[24, 0]);
    unmap.extend_from_slice(&IOVA.to_ne_bytes());
    unmap.extend_from_slice(&PAGE.to_ne_bytes());
    let (_, out, _) = c.ioctl(&container, IOMMU_UNMAP_DMA, IoctlArg::Bytes(unmap)).unwrap();
    assert_eq!(u64_at(&out, 16), PAGE, "the unmapped size comes back");
    me().write(mem.addr(0), &pattern(64, 3)).unwrap();
    edu_dma(&c, &dev, &efd, EDU_BUFFER, IOVA, 64, true);
    assert_eq!(peek(mem.addr(0), 64), pattern(64, 3), "untouched");
}
