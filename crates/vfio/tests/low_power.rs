//! Runtime-PM low power (features 3, 4, 5): entry revokes, exit restores,
//! a wake-up eventfd is signalled when the device is used while in low power.

mod common;

use std::os::fd::AsRawFd;

use common::{device, BAR1, RDWR};
use mm::{probe, AddressSpace};
use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;
use vfio::uapi::*;
use vfio::{mmap_dmabuf, DeviceFd, MmapArgs, VfioPciDevice};

fn setup() -> (AddressSpace, std::sync::Arc<VfioPciDevice>, DeviceFd, dmabuf::DmaBufFd, u64, u64) {
    let aspace = AddressSpace::new().unwrap();
    let vdev = device("edu-plus");
    let fd = vdev.open();
    let dev_va = fd.mmap(&aspace, MmapArgs::shared(BAR1, 0x4000)).unwrap();
    let buf = fd.feature_dma_buf(1, RDWR, &[(0x10000, 0x4000)]).unwrap();
    let buf_va = mmap_dmabuf(&aspace, &buf, MmapArgs::shared(0, 0x4000)).unwrap();
    probe::write_u64(dev_va, 0xd0).unwrap();
    probe::write_u64(buf_va, 0xb0).unwrap();
    (aspace, vdev, fd, buf, dev_va, buf_va)
}

fn set(feature: u32) -> u32 {
    VFIO_DEVICE_FEATURE_SET | feature
}

#[test]
fn low_power_entry_revokes_every_mapping_and_exit_restores_them() {
    let (_aspace, vdev, fd, buf, dev_va, buf_va) = setup();
    fd.feature(set(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY), &[]).unwrap();
    assert!(vdev.low_power());
    assert_eq!(buf.buffer().status(), dmabuf::Status::TempRevoked);
    assert!(probe::read_u64(dev_va).unwrap_err().is_sigbus());
    assert!(probe::read_u64(buf_va).unwrap_err().is_sigbus());
    // Without a wake-up eventfd, using the device does not leave low power.
    let mut b = [0u8; 8];
    fd.read(BAR1, &mut b).unwrap();
    assert!(vdev.low_power());
    assert!(probe::read_u64(dev_va).unwrap_err().is_sigbus());
    fd.feature(set(VFIO_DEVICE_FEATURE_LOW_POWER_EXIT), &[]).unwrap();
    assert!(!vdev.low_power());
    assert_eq!(probe::read_u64(dev_va).unwrap(), 0xd0);
    assert_eq!(probe::read_u64(buf_va).unwrap(), 0xb0);
}

#[test]
fn faults_sigbus_in_low_power_even_when_memory_is_enabled_again() {
    let (_aspace, vdev, fd, _buf, dev_va, _buf_va) = setup();
    fd.feature(set(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY), &[]).unwrap();
    // A COMMAND write that keeps MEMORY set un-revokes, but the device is
    // still in low power: the fault path refuses.
    fd.set_memory_enable(true).unwrap();
    assert!(vdev.low_power());
    assert!(probe::read_u64(dev_va).unwrap_err().is_sigbus());
    fd.feature(set(VFIO_DEVICE_FEATURE_LOW_POWER_EXIT), &[]).unwrap();
    assert_eq!(probe::read_u64(dev_va).unwrap(), 0xd0);
}

#[test]
fn a_second_low_power_entry_is_einval() {
    let (_aspace, _vdev, fd, ..) = setup();
    fd.feature(set(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY), &[]).unwrap();
    let e = fd.feature(set(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY), &[]).unwrap_err();
    assert_eq!(e.errno(), Errno::INVAL);
}

#[test]
fn using_the_device_in_low_power_signals_the_wakeup_eventfd_and_leaves_low_power() {
    let (_aspace, vdev, fd, buf, dev_va, buf_va) = setup();
    let efd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap();
    let mut payload = efd.as_raw_fd().to_ne_bytes().to_vec();
    payload.extend_from_slice(&0u32.to_ne_bytes());
    fd.feature(set(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP), &payload).unwrap();
    assert!(vdev.low_power());
    let mut counter = [0u8; 8];
    assert_eq!(rustix::io::read(&efd, &mut counter), Err(Errno::AGAIN), "not signalled yet");
    // Any device call wakes it: the eventfd is signalled, low power is left,
    // but nothing is un-revoked until the exit (or a memory enable).
    let mut b = [0u8; 4];
    fd.read(BAR1, &mut b).unwrap();
    assert!(!vdev.low_power());
    rustix::io::read(&efd, &mut counter).unwrap();
    assert_eq!(u64::from_ne_bytes(counter), 1);
    assert_eq!(buf.buffer().status(), dmabuf::Status::TempRevoked);
    assert!(probe::read_u64(buf_va).unwrap_err().is_sigbus());
    fd.feature(set(VFIO_DEVICE_FEATURE_LOW_POWER_EXIT), &[]).unwrap();
    assert_eq!(probe::read_u64(dev_va).unwrap(), 0xd0);
    assert_eq!(probe::read_u64(buf_va).unwrap(), 0xb0);
}

#[test]
fn low_power_feature_errnos_match_the_kernel() {
    let (_aspace, vdev, fd, ..) = setup();
    let efd = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
    let payload = |n: i32| {
        let mut v = n.to_ne_bytes().to_vec();
        v.extend_from_slice(&0u32.to_ne_bytes());
        v
    };
    let errno = |r: Result<vfio::FeatureReply, vfio::VfioError>| r.unwrap_err().errno();
    // GET on a SET-only feature; a short payload; PROBE works.
    assert_eq!(errno(fd.feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, &[])), Errno::INVAL);
    assert_eq!(errno(fd.feature(set(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP), &[0; 4])), Errno::INVAL);
    for f in [
        VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
        VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP,
        VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
    ] {
        fd.feature(VFIO_DEVICE_FEATURE_PROBE | set(f), &[]).unwrap();
    }
    // The eventfd: negative, not an eventfd (stdout), closed.
    let wakeup = set(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP);
    assert_eq!(errno(fd.feature(wakeup, &payload(-1))), Errno::INVAL);
    assert_eq!(errno(fd.feature(wakeup, &payload(1))), Errno::INVAL);
    let closed = {
        let tmp = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        tmp.as_raw_fd()
    };
    if std::fs::read_link(format!("/proc/self/fd/{closed}")).is_err() {
        assert_eq!(errno(fd.feature(wakeup, &payload(closed))), Errno::BADF);
    }
    // None of that entered low power; a valid one does.
    assert!(!vdev.low_power());
    fd.feature(wakeup, &payload(efd.as_raw_fd())).unwrap();
    assert!(vdev.low_power());
}

#[test]
fn closing_the_device_leaves_low_power() {
    let (aspace, vdev, fd, buf, dev_va, buf_va) = setup();
    fd.feature(set(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY), &[]).unwrap();
    aspace.munmap(dev_va, 0x4000).unwrap();
    drop(fd);
    assert_eq!(vdev.open_count(), 0);
    assert!(!vdev.low_power());
    assert!(probe::read_u64(buf_va).unwrap_err().is_sigbus(), "explicit buffers die with the device");
    drop(buf);
}
