//! Rows of spec §4.10: the memory-attribute feature.

use super::*;

pub fn memattr_of(buf: &DmaBufFd) -> u32 {
    VfioDmaBuf::of(buf.buffer()).unwrap().memattr()
}

#[test]
fn memattr_with_an_unknown_value_is_enoent() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    for value in [2, 3, 0x100, u32::MAX] {
        assert_eq!(errno(fd.feature_dma_buf_memattr(buf.raw_fd(), value)), Errno::NOENT, "memattr {value}");
    }
    assert_eq!(memattr_of(&buf), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC);
}

#[test]
fn memattr_with_stdout_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf_memattr(1, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC)), Errno::INVAL);
}

#[test]
fn memattr_with_a_closed_fd_number_is_ebadf() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let n = closed_fd_number();
    assert_eq!(errno(fd.feature_dma_buf_memattr(n, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC)), Errno::BADF);
    assert_eq!(errno(fd.feature_dma_buf_memattr(-1, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC)), Errno::BADF);
}

#[test]
fn memattr_of_a_buffer_of_another_device_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let other = device("edu-plus");
    let other_fd = other.open();
    let buf = export_bar1(&other_fd, PAGE);
    assert_eq!(errno(fd.feature_dma_buf_memattr(buf.raw_fd(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC)), Errno::NODEV);
    assert_eq!(memattr_of(&buf), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC);
}

#[test]
fn memattr_of_a_buffer_whose_device_was_closed_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.close();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf_memattr(buf.raw_fd(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC)), Errno::NODEV);
}

#[test]
fn memattr_of_a_buffer_of_another_exporter_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let foreign = foreign_buffer_fd();
    let r = fd.feature_dma_buf_memattr(foreign.raw_fd(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC);
    assert_eq!(errno(r), Errno::NODEV);
}

#[test]
fn memattr_with_a_known_value_succeeds() {
    // The control for the rows above: both values of the enum are accepted.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_memattr(buf.raw_fd(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC).unwrap();
    assert_eq!(memattr_of(&buf), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC);
    fd.feature_dma_buf_memattr(buf.raw_fd(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC).unwrap();
    assert_eq!(memattr_of(&buf), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC);
}
