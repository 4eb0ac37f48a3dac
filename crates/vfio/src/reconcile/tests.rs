//! A frame cut off (as the server does when a process does not acknowledge
//! a revoke in time) comes back exactly when a page of it is reachable again.

use std::sync::Arc;

use dmabuf::Status;
use mm::PhysMemory;
use page::PhysAddr;

use crate::core_h::bar_start;
use crate::{DeviceFd, VfioPciDevice};

const FRAME: u64 = 64 << 10;
/// `O_RDWR`.
const RDWR: u32 = 2;

fn device() -> (Arc<VfioPciDevice>, DeviceFd) {
    let spec = pci::catalogue::by_name("edu-plus").unwrap();
    let vdev = VfioPciDevice::with_frame_size(0, "0000:00:03.0".parse().unwrap(), spec, FRAME).unwrap();
    let fd = vdev.open();
    (vdev, fd)
}

/// BAR1's memory (RAM).
fn bar1(vdev: &VfioPciDevice) -> Arc<PhysMemory> {
    vdev.bar(1).unwrap().memory().clone()
}

#[test]
fn a_device_stores_its_ram_bars_in_frames_of_its_frame_size() {
    let (vdev, _fd) = device();
    let m = bar1(&vdev);
    assert_eq!((m.frame_size(), m.frame_count() as u64), (FRAME, m.len() / FRAME));
    let spec = pci::catalogue::by_name("edu-plus").unwrap();
    let e = VfioPciDevice::with_frame_size(1, "0000:00:04.0".parse().unwrap(), spec, 3 << 12).unwrap_err();
    assert_eq!(e.errno(), rustix::io::Errno::INVAL);
}

#[test]
fn a_permanent_revoke_of_one_buffer_restores_the_frames_another_ok_buffer_covers() {
    let (vdev, fd) = device();
    let m = bar1(&vdev);
    // Two buffers over frame 0; only `gone` covers frame 2.
    let gone = fd.feature_dma_buf(1, RDWR, &[(0, 0x1000), (2 * FRAME, 0x1000)]).unwrap();
    let kept = fd.feature_dma_buf(1, RDWR, &[(0x1000, 0x1000)]).unwrap();
    m.write(bar_start(1), b"kept ok!").unwrap();
    // The revoke of `gone` timed out for some process: its frames are cut.
    assert!(m.cut_off(0).unwrap() && m.cut_off(2).unwrap());
    fd.feature_dma_buf_revoke(gone.raw_fd()).unwrap();
    assert_eq!((gone.buffer().status(), kept.buffer().status()), (Status::PermRevoked, Status::Ok));
    assert!(!m.is_cut_off(0), "an Ok buffer still reaches frame 0");
    assert!(m.is_cut_off(2), "nothing Ok reaches frame 2");
    let mut got = [0u8; 8];
    m.write(bar_start(1), b"kept ok!").unwrap();
    m.read(bar_start(1), &mut got).unwrap();
    assert_eq!(&got, b"kept ok!");
}

#[test]
fn a_range_exported_again_after_a_cut_off_gets_its_frame_back_with_the_data() {
    let (vdev, fd) = device();
    let m = bar1(&vdev);
    let gone = fd.feature_dma_buf(1, RDWR, &[(2 * FRAME, FRAME)]).unwrap();
    m.write(PhysAddr(bar_start(1).0 + 2 * FRAME), b"survives").unwrap();
    assert!(m.cut_off(2).unwrap());
    fd.feature_dma_buf_revoke(gone.raw_fd()).unwrap();
    assert!(m.is_cut_off(2), "nothing Ok reaches frame 2");
    // The same range exported again: frame 2 is whole before anyone maps it.
    let again = fd.feature_dma_buf(1, RDWR, &[(2 * FRAME, FRAME)]).unwrap();
    assert_eq!(again.buffer().status(), Status::Ok);
    assert!(!m.is_cut_off(2));
    let mut got = [0u8; 8];
    m.read(PhysAddr(bar_start(1).0 + 2 * FRAME), &mut got).unwrap();
    assert_eq!(&got, b"survives");
}

#[test]
fn a_frame_cut_while_memory_is_off_stays_cut_until_memory_is_on_again() {
    let (vdev, fd) = device();
    let m = bar1(&vdev);
    let buf = fd.feature_dma_buf(1, RDWR, &[(FRAME, 0x1000)]).unwrap();
    m.write(page::PhysAddr(bar_start(1).0 + FRAME), b"survives").unwrap();
    fd.set_memory_enable(false).unwrap();
    assert_eq!(buf.buffer().status(), Status::TempRevoked);
    // The revoke's wait for some process ran out: the frame is cut.
    assert!(m.cut_off(1).unwrap());
    // Another revoke pass while off (a reset): nothing is Ok, it stays cut.
    fd.reset().unwrap();
    assert!(m.is_cut_off(1));
    fd.set_memory_enable(true).unwrap();
    assert_eq!(buf.buffer().status(), Status::Ok);
    assert!(!m.is_cut_off(1), "restored before the buffer became Ok");
    let mut got = [0u8; 8];
    m.read(page::PhysAddr(bar_start(1).0 + FRAME), &mut got).unwrap();
    assert_eq!(&got, b"survives");
}

#[test]
fn cut_frames_of_a_closed_device_stay_cut() {
    let (vdev, fd) = device();
    let m = bar1(&vdev);
    let _buf = fd.feature_dma_buf(1, RDWR, &[(0, 0x1000)]).unwrap();
    assert!(m.cut_off(0).unwrap());
    fd.close();
    assert!(m.is_cut_off(0));
}
