//! Rows of spec §4.9: the permanent revoke feature.

use super::*;

#[test]
fn revoke_with_stdout_is_einval() {
    // Matt's test T17: fd 1 is open but is not a dma-buf.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf_revoke(1)), Errno::INVAL);
}

#[test]
fn revoke_with_a_closed_fd_number_is_ebadf() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf_revoke(closed_fd_number())), Errno::BADF);
}

#[test]
fn revoke_with_a_negative_fd_is_ebadf() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf_revoke(-1)), Errno::BADF);
    assert_eq!(errno(fd.feature_dma_buf_revoke(i32::MIN)), Errno::BADF);
}

#[test]
fn revoke_of_a_buffer_of_another_device_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let other = device("edu-plus");
    let other_fd = other.open();
    let buf = export_bar1(&other_fd, PAGE);
    assert_eq!(errno(fd.feature_dma_buf_revoke(buf.raw_fd())), Errno::NODEV);
    assert_eq!(buf.buffer().status(), Status::Ok, "the foreign buffer is untouched");
    // Its own device can revoke it.
    other_fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(buf.buffer().status(), Status::PermRevoked);
}

#[test]
fn revoke_of_a_buffer_whose_device_was_closed_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.close();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf_revoke(buf.raw_fd())), Errno::NODEV);
}

#[test]
fn revoke_of_a_buffer_of_another_exporter_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let foreign = foreign_buffer_fd();
    assert_eq!(errno(fd.feature_dma_buf_revoke(foreign.raw_fd())), Errno::NODEV);
    assert_eq!(foreign.buffer().status(), Status::Ok);
}

#[test]
fn second_revoke_is_ebadfd() {
    // Matt's test T7.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(errno(fd.feature_dma_buf_revoke(buf.raw_fd())), Errno::BADFD);
}

#[test]
fn revoke_through_a_dup_of_a_revoked_buffer_fd_is_ebadfd() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let dup = buf.dup().unwrap();
    fd.feature_dma_buf_revoke(dup.raw_fd()).unwrap();
    assert_eq!(errno(fd.feature_dma_buf_revoke(buf.raw_fd())), Errno::BADFD);
}

#[test]
fn revoke_of_a_temporarily_revoked_buffer_succeeds_once_then_is_ebadfd() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.set_memory_enable(false).unwrap();
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(errno(fd.feature_dma_buf_revoke(buf.raw_fd())), Errno::BADFD);
    fd.set_memory_enable(true).unwrap();
    assert_eq!(buf.buffer().status(), Status::PermRevoked, "re-enabling memory does not revive it");
}
