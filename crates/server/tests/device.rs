//! Device files: the cdev bind rules, the vfio-pci ioctls, region reads and
//! writes, features and buffers, hot reset, and the group path's rules.

mod common;

use common::*;
use wire::msg::IoctlArg;

fn bytes(w: &[u32]) -> IoctlArg {
    IoctlArg::Bytes(words(w))
}

#[test]
fn an_unbound_cdev_refuses_everything_but_the_bind_with_einval() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let dev = c.open("/dev/vfio/devices/vfio0").unwrap();
    assert_eq!(c.ioctl_errno(&dev, DEVICE_GET_INFO, bytes(&[24, 0, 0, 0, 0, 0])), EINVAL);
    assert_eq!(c.ioctl_errno(&dev, 0x1234, IoctlArg::Value(0)), EINVAL, "even an unknown call");
    assert_eq!(c.pread(&dev, CONFIG, 4), Err(EINVAL));
    assert_eq!(c.pwrite(&dev, CONFIG + 4, &[0, 0]), Err(EINVAL));
    let _n = Notifier::acking(&srv, c.token);
    assert_eq!(c.mmap(&dev, 1, region(1), 0x1000).unwrap_err(), EINVAL);
}

#[test]
fn the_bind_checks_come_in_the_kernels_order() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let iommufd = c.open("/dev/iommu").unwrap();
    let dev = c.open("/dev/vfio/devices/vfio0").unwrap();
    let bind = |arg: Vec<u32>, fds: &[&std::os::fd::OwnedFd], bad: Vec<u32>| {
        use std::os::fd::AsFd;
        let extra: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        c.ioctl_fds(&dev, DEVICE_BIND_IOMMUFD, bytes(&arg), &extra, bad).map(|_| ()).unwrap_err().0
    };
    assert_eq!(bind(vec![12, 0, 9, 0], &[&iommufd], vec![]), EINVAL, "argsz below 16");
    assert_eq!(bind(vec![32, 0, 9, 0, 0, 0, 1, 0], &[&iommufd], vec![]), libc::E2BIG, "non-zero tail");
    assert_eq!(bind(vec![24, 0, u32::MAX, 0, 0, 0], &[], vec![]), EINVAL, "negative iommufd");
    assert_eq!(bind(vec![24, 2, 9, 0, 0, 0], &[&iommufd], vec![]), EINVAL, "unknown flag");
    assert_eq!(bind(vec![24, 1, 9, 0, 0, 0], &[&iommufd], vec![]), EINVAL, "a token this device does not take");
    assert_eq!(bind(vec![24, 0, 9, 0, 0, 0], &[], vec![8]), libc::EBADF, "a closed fd");
    let group_like = c.open("/dev/vfio/vfio").unwrap();
    assert_eq!(bind(vec![24, 0, 9, 0, 0, 0], &[&group_like], vec![]), libc::EBADFD, "not an iommufd");
    // Bound: out_devid comes back, and a second bind is EINVAL.
    let (_, out, _) = c.bind(&dev, &iommufd).unwrap();
    assert_eq!(out.len(), 16);
    assert_eq!(c.bind(&dev, &iommufd).map(|_| ()).unwrap_err().0, EINVAL);
}

#[test]
fn a_cdev_and_its_group_exclude_each_other() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let iommufd = c.open("/dev/iommu").unwrap();
    let group = c.open("/dev/vfio/0").unwrap();
    let dev = c.open("/dev/vfio/devices/vfio0").unwrap();
    assert_eq!(c.bind(&dev, &iommufd).map(|_| ()).unwrap_err().0, libc::EBUSY, "group open");
    c.close(group);
    c.bind(&dev, &iommufd).unwrap();
    assert_eq!(c.open("/dev/vfio/0").unwrap_err(), libc::EBUSY, "a device bound through its cdev");
    // A second cdev file of the same device cannot bind: one open per cdev.
    let other = c.open("/dev/vfio/devices/vfio0").unwrap();
    assert_eq!(c.bind(&other, &iommufd).map(|_| ()).unwrap_err().0, EINVAL);
    // Last close of the bound file, then the group opens again.
    c.close(dev);
    c.close(other);
    c.open("/dev/vfio/0").unwrap();
}

#[test]
fn attach_and_detach_check_size_flags_and_pasid() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let (_iommufd, dev) = c.bound_device(0);
    assert_eq!(c.ioctl_errno(&dev, DEVICE_ATTACH_IOMMUFD_PT, bytes(&[8, 0, 1])), EINVAL);
    assert_eq!(c.ioctl_errno(&dev, DEVICE_ATTACH_IOMMUFD_PT, bytes(&[16, 2, 1, 0])), EINVAL);
    assert_eq!(c.ioctl_errno(&dev, DEVICE_ATTACH_IOMMUFD_PT, bytes(&[16, 1, 1, 0])), libc::EOPNOTSUPP);
    assert_eq!(c.ioctl_errno(&dev, DEVICE_DETACH_IOMMUFD_PT, bytes(&[4, 0])), EINVAL);
    assert_eq!(c.ioctl_errno(&dev, DEVICE_DETACH_IOMMUFD_PT, bytes(&[12, 1, 0])), libc::EOPNOTSUPP);
    assert_eq!(c.ioctl(&dev, DEVICE_DETACH_IOMMUFD_PT, bytes(&[8, 0])).map(|r| r.0), Ok(0));
}

#[test]
fn get_info_and_region_info_describe_the_device() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let (_iommufd, dev) = c.bound_device(0);
    let (_, out, _) = c.ioctl(&dev, DEVICE_GET_INFO, bytes(&[24, 0, 0, 0, 0, 0])).unwrap();
    assert_eq!((u32_at(&out, 4), u32_at(&out, 8), u32_at(&out, 12)), (3, 9, 5), "PCI|RESET, 9 regions, 5 irqs");
    assert_eq!(c.ioctl_errno(&dev, DEVICE_GET_INFO, bytes(&[12, 0, 0])), EINVAL);
    let (_, out, _) = c.ioctl(&dev, DEVICE_GET_REGION_INFO, bytes(&[32, 0, 1, 0, 0, 0, 0, 0])).unwrap();
    assert_eq!(u32_at(&out, 4), 7, "READ|WRITE|MMAP");
    assert_eq!((u64_at(&out, 16), u64_at(&out, 24)), (64 << 20, region(1)));
    assert_eq!(c.ioctl_errno(&dev, DEVICE_GET_REGION_INFO, bytes(&[32, 0, 9, 0, 0, 0, 0, 0])), EINVAL);
    assert_eq!(c.ioctl_errno(&dev, DEVICE_GET_REGION_INFO, bytes(&[16, 0, 1, 0])), EINVAL);
}

#[test]
fn config_space_reads_and_writes_through_the_device_fd() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let (_iommufd, dev) = c.bound_device(0);
    assert_eq!(c.pread(&dev, CONFIG, 4).unwrap(), vec![0x34, 0x12, 0xe8, 0x11], "vendor and device");
    c.set_memory(&dev, false);
    assert_eq!(c.pread(&dev, CONFIG + 4, 2).unwrap()[0] & 2, 0);
    assert_eq!(c.pread(&dev, region(1), 8), Err(libc::EIO), "BAR access with memory off");
    c.set_memory(&dev, true);
    assert_eq!(c.pwrite(&dev, region(1) + 0x10, b"bar1 ram"), Ok(8));
    assert_eq!(c.pread(&dev, region(1) + 0x10, 8).unwrap(), b"bar1 ram");
    assert_eq!(c.pread(&dev, region(8), 4), Err(EINVAL), "VGA");
    // read(2) at the file position of the open file, which advances.
    let read = |len| match c.call(&wire::Request::Read { len }, &[std::os::fd::AsFd::as_fd(&dev)]) {
        (wire::Reply::Data(d), _) => d,
        other => panic!("{other:?}"),
    };
    c.pwrite(&dev, region(0) + 0x20, &[0; 0]).unwrap();
    let first = read(4);
    let second = read(4);
    assert_eq!(first, c.pread(&dev, region(0), 4).unwrap());
    assert_eq!(second, c.pread(&dev, region(0) + 4, 4).unwrap());
}

#[test]
fn a_file_opened_read_only_cannot_be_written() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let group = c.open_flags("/dev/vfio/0", libc::O_RDONLY).unwrap();
    assert_eq!(c.pwrite(&group, 0, &[0]), Err(libc::EBADF));
}

#[test]
fn reset_and_the_interrupt_calls_answer_as_the_core_offers() {
    // QEMU's edu: an INTx line (and MSI).
    let srv = TestServer::start(&["edu"], &[0]);
    let c = Client::new(&srv);
    let (_iommufd, dev) = c.bound_device(0);
    assert_eq!(c.ioctl(&dev, DEVICE_RESET, IoctlArg::Value(0)).map(|r| r.0), Ok(0));
    let (_, out, _) = c.ioctl(&dev, DEVICE_GET_IRQ_INFO, bytes(&[16, 0, 0, 0])).unwrap();
    assert_eq!((u32_at(&out, 4), u32_at(&out, 12)), (7, 1), "INTx: EVENTFD|MASKABLE|AUTOMASKED, one line");
    assert_eq!(c.ioctl_errno(&dev, DEVICE_GET_IRQ_INFO, bytes(&[16, 0, 5, 0])), EINVAL);
    assert_eq!(c.ioctl_errno(&dev, DEVICE_GET_IRQ_INFO, bytes(&[8, 0])), EINVAL);
    assert_eq!(c.ioctl_errno(&dev, DEVICE_SET_IRQS, bytes(&[20, 0x100, 0, 0, 0])), EINVAL, "unknown flags");
    assert_eq!(c.ioctl_errno(&dev, DEVICE_SET_IRQS, bytes(&[16, 0x21, 0, 0])), EINVAL, "argsz below the header");
    // An eventfd trigger for INTx travels attached; a closed one is EBADF.
    let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    let arg = bytes(&[24, 0x24, 0, 0, 1, 3]);
    let set = c.ioctl_fds(&dev, DEVICE_SET_IRQS, arg.clone(), &[std::os::fd::AsFd::as_fd(&efd)], vec![]);
    assert_eq!(set.map(|r| r.0).map_err(|e| e.0), Ok(0));
    let bad = c.ioctl_fds(&dev, DEVICE_SET_IRQS, arg, &[], vec![20]);
    assert_eq!(bad.map(|r| r.0).map_err(|e| e.0), Err(libc::EBADF));
    assert_eq!(c.ioctl(&dev, DEVICE_SET_IRQS, bytes(&[20, 0x21, 0, 0, 0])).map(|r| r.0), Ok(0), "disable");
}

#[test]
fn a_cdev_hot_reset_covers_the_devices_its_context_owns() {
    let srv = TestServer::start(&["edu-plus", "edu"], &[0, 1]);
    let c = Client::new(&srv);
    let (iommufd, dev) = c.bound_device(0);
    // Both devices sit on bus 0; only one is bound in the context.
    let (errno, out) = c.ioctl(&dev, DEVICE_GET_PCI_HOT_RESET_INFO, bytes(&[12, 0, 0])).unwrap_err();
    assert_eq!((errno, u32_at(&out, 8)), (libc::ENOSPC, 2), "the needed count comes back with ENOSPC");
    let (_, out, _) = c.ioctl(&dev, DEVICE_GET_PCI_HOT_RESET_INFO, bytes(&[28, 0, 0, 0, 0, 0, 0])).unwrap();
    assert_eq!(u32_at(&out, 4), 1, "DEV_ID, not all owned");
    assert_eq!(u32_at(&out, 20), u32::MAX, "the second device is not owned");
    assert_eq!(c.ioctl_errno(&dev, DEVICE_PCI_HOT_RESET, bytes(&[12, 0, 0])), EINVAL, "not all owned");
    let other = c.open("/dev/vfio/devices/vfio1").unwrap();
    c.bind(&other, &iommufd).unwrap();
    let (_, out, _) = c.ioctl(&dev, DEVICE_GET_PCI_HOT_RESET_INFO, bytes(&[28, 0, 0, 0, 0, 0, 0])).unwrap();
    assert_eq!(u32_at(&out, 4), 3, "DEV_ID|DEV_ID_OWNED");
    assert_eq!(c.ioctl(&dev, DEVICE_PCI_HOT_RESET, bytes(&[12, 0, 0])).map(|r| r.0), Ok(0));
    assert_eq!(c.ioctl_errno(&dev, DEVICE_PCI_HOT_RESET, bytes(&[12, 1, 0])), EINVAL, "flags");
    let group = c.open("/dev/vfio/vfio").unwrap();
    let arg = bytes(&[16, 0, 1, 3]);
    let e = c.ioctl_fds(&dev, DEVICE_PCI_HOT_RESET, arg, &[std::os::fd::AsFd::as_fd(&group)], vec![]);
    assert_eq!(e.map(|_| ()).unwrap_err().0, EINVAL, "group fds from a cdev file");
}

#[test]
fn an_exported_buffer_is_a_tagged_fd_that_revoke_and_memattr_find() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let (_iommufd, dev) = c.bound_device(0);
    let buf = c.export(&dev, 1, 0, 0x2000).unwrap();
    assert_eq!(tag_kind(&buf), Some(wire::ObjectKind::DmaBuf));
    let revoke = |fd: Option<&std::os::fd::OwnedFd>, bad: Vec<u32>| {
        let arg = bytes(&[12, FEATURE_SET | FEATURE_DMA_BUF_REVOKE, 5]);
        let extra: Vec<_> = fd.iter().map(|f| std::os::fd::AsFd::as_fd(*f)).collect();
        c.ioctl_fds(&dev, DEVICE_FEATURE, arg, &extra, bad).map(|r| r.0).map_err(|e| e.0)
    };
    assert_eq!(revoke(None, vec![8]), Err(libc::EBADF), "a closed fd");
    let not_a_buffer = c.open("/dev/vfio/vfio").unwrap();
    assert_eq!(revoke(Some(&not_a_buffer), vec![]), Err(EINVAL), "an open fd that is not a buffer");
    assert_eq!(revoke(Some(&buf), vec![]), Ok(0));
    assert_eq!(revoke(Some(&buf), vec![]), Err(libc::EBADFD), "already permanently revoked");
    // The header's own size, an unknown feature, a probe.
    assert_eq!(c.ioctl_errno(&dev, DEVICE_FEATURE, bytes(&[4, FEATURE_GET | 11])), EINVAL);
    assert_eq!(c.ioctl_errno(&dev, DEVICE_FEATURE, bytes(&[8, FEATURE_GET | 99])), libc::ENOTTY);
    assert_eq!(c.ioctl(&dev, DEVICE_FEATURE, bytes(&[8, FEATURE_PROBE | FEATURE_GET | 11])).map(|r| r.0), Ok(0));
    assert_eq!(c.export(&dev, 7, 0, 0x1000).unwrap_err(), libc::ENODEV, "not a BAR");
}

#[test]
fn a_buffer_fd_answers_sync_and_set_name() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let (_iommufd, dev) = c.bound_device(0);
    let buf = c.export(&dev, 1, 0, 0x1000).unwrap();
    let sync = wire::nr::DMA_BUF_IOCTL_SYNC;
    assert_eq!(c.ioctl(&buf, sync, IoctlArg::Bytes(3u64.to_ne_bytes().to_vec())).map(|r| r.0), Ok(0));
    assert_eq!(c.ioctl_errno(&buf, sync, IoctlArg::Bytes(0u64.to_ne_bytes().to_vec())), EINVAL, "no direction");
    assert_eq!(c.ioctl_errno(&buf, sync, IoctlArg::Bytes(8u64.to_ne_bytes().to_vec())), EINVAL, "unknown flag");
    let name = wire::nr::DMA_BUF_SET_NAME_B;
    assert_eq!(c.ioctl(&buf, name, IoctlArg::Str("frame".into())).map(|r| r.0), Ok(0));
    assert_eq!(c.ioctl_errno(&buf, name, IoctlArg::Str("x".repeat(64))), EINVAL, "too long");
    assert_eq!(c.pread(&buf, 0, 4), Err(EINVAL), "a buffer has no read");
}

#[test]
fn the_group_path_refuses_a_device_fd_until_an_iommu_is_set() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let group = c.open("/dev/vfio/0").unwrap();
    let (_, out, _) = c.ioctl(&group, GROUP_GET_STATUS, bytes(&[8, 0])).unwrap();
    assert_eq!(u32_at(&out, 4), 1, "viable, no container");
    assert_eq!(c.ioctl_errno(&group, GROUP_GET_STATUS, bytes(&[4])), EINVAL);
    assert_eq!(c.ioctl_errno(&group, GROUP_UNSET_CONTAINER, IoctlArg::Value(0)), EINVAL, "not attached");
    let get_fd = |name: &str| c.ioctl_errno(&group, GROUP_GET_DEVICE_FD, IoctlArg::Str(name.into()));
    assert_eq!(get_fd("0000:00:03.0"), EINVAL, "no container");
    // SET_CONTAINER: a closed fd, a file that is neither container nor iommufd.
    let set = |fd: Option<&std::os::fd::OwnedFd>, bad: Vec<u32>| {
        let extra: Vec<_> = fd.iter().map(|f| std::os::fd::AsFd::as_fd(*f)).collect();
        c.ioctl_fds(&group, GROUP_SET_CONTAINER, bytes(&[5]), &extra, bad).map(|r| r.0).map_err(|e| e.0)
    };
    assert_eq!(set(None, vec![0]), Err(libc::EBADF));
    let iommufd = c.open("/dev/iommu").unwrap();
    let dev = c.open("/dev/vfio/devices/vfio0").unwrap();
    assert_eq!(set(Some(&dev), vec![]), Err(libc::EBADFD));
    let container = c.open("/dev/vfio/vfio").unwrap();
    assert_eq!(set(Some(&container), vec![]), Ok(0));
    let (_, out, _) = c.ioctl(&group, GROUP_GET_STATUS, bytes(&[8, 0])).unwrap();
    assert_eq!(u32_at(&out, 4), 3, "viable, container set");
    assert_eq!(set(Some(&iommufd), vec![]), Err(EINVAL), "already attached");
    assert_eq!(get_fd("0000:00:04.0"), libc::ENODEV, "not a device of the group");
    assert_eq!(get_fd("0000:00:03.0 vf_token=00000000-0000-0000-0000-000000000000"), EINVAL);
    assert_eq!(get_fd("0000:00:03.0"), EINVAL, "no IOMMU set on the container");
    assert_eq!(c.ioctl(&group, GROUP_UNSET_CONTAINER, IoctlArg::Value(0)).map(|r| r.0), Ok(0));
    // Through an iommufd (the compatibility path) a device fd comes at once.
    assert_eq!(set(Some(&iommufd), vec![]), Ok(0));
    let (_, _, devfd) = c.ioctl(&group, GROUP_GET_DEVICE_FD, IoctlArg::Str("0000:00:03.0".into())).unwrap();
    let devfd = devfd.expect("a device fd");
    assert_eq!(tag_kind(&devfd), Some(wire::ObjectKind::Device));
    assert_eq!(c.ioctl_errno(&group, GROUP_UNSET_CONTAINER, IoctlArg::Value(0)), libc::EBUSY, "a device is open");
    assert_eq!(c.bind(&devfd, &iommufd).map(|_| ()).unwrap_err().0, EINVAL, "bind is for cdev files");
    assert_eq!(c.ioctl_errno(&devfd, DEVICE_ATTACH_IOMMUFD_PT, bytes(&[12, 0, 1])), libc::ENOTTY);
    // Closing the group keeps it open through the device file.
    c.close(group);
    assert_eq!(c.open("/dev/vfio/0").unwrap_err(), libc::EBUSY);
    c.close(devfd);
    c.open("/dev/vfio/0").unwrap();
}

#[test]
fn a_group_path_hot_reset_needs_the_group_fds_of_the_whole_set() {
    use std::os::fd::AsFd;
    let srv = TestServer::start(&["edu-plus"], &[4]);
    let c = Client::new(&srv);
    let group = c.open("/dev/vfio/4").unwrap();
    let iommufd = c.open("/dev/iommu").unwrap();
    c.ioctl_fds(&group, GROUP_SET_CONTAINER, bytes(&[5]), &[iommufd.as_fd()], vec![]).unwrap();
    let (_, _, dev) = c.ioctl(&group, GROUP_GET_DEVICE_FD, IoctlArg::Str("0000:00:03.0".into())).unwrap();
    let dev = dev.unwrap();
    let (_, out, _) = c.ioctl(&dev, DEVICE_GET_PCI_HOT_RESET_INFO, bytes(&[20, 0, 0, 0, 0])).unwrap();
    assert_eq!((u32_at(&out, 4), u32_at(&out, 8), u32_at(&out, 12)), (0, 1, 4), "one device, by group");
    assert_eq!(out[18..20], [0, 3 << 3], "bus 0, devfn 00:03.0");
    let reset = |count: u32, fds: &[&std::os::fd::OwnedFd], bad: Vec<u32>| {
        let extra: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let arg = bytes(&[12 + 4 * count, 0, count, 3, 3]);
        c.ioctl_fds(&dev, DEVICE_PCI_HOT_RESET, arg, &extra, bad).map(|r| r.0).map_err(|e| e.0)
    };
    assert_eq!(reset(0, &[], vec![]), Err(EINVAL), "a group-path file must pass groups");
    assert_eq!(reset(2, &[&group, &group], vec![]), Err(EINVAL), "more fds than devices");
    assert_eq!(reset(1, &[], vec![12]), Err(libc::EBADF));
    assert_eq!(reset(1, &[&iommufd], vec![]), Err(EINVAL), "not a group");
    assert_eq!(reset(1, &[&group], vec![]), Ok(0));
}
