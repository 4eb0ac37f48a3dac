//! Rows of spec §2.5: importer attach and map.

use super::*;

#[test]
fn attach_of_an_importer_without_peer2peer_is_eopnotsupp() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    assert_eq!(dmabuf_errno(buf.buffer().attach(importer(false, true))), Errno::OPNOTSUPP);
    assert_eq!(buf.buffer().attachments(), 0);
}

#[test]
fn attach_to_a_permanently_revoked_buffer_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(dmabuf_errno(buf.buffer().attach(importer(true, true))), Errno::NODEV);
    assert_eq!(buf.buffer().attachments(), 0);
}

#[test]
fn attach_to_a_temporarily_revoked_buffer_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.set_memory_enable(false).unwrap();
    assert_eq!(dmabuf_errno(buf.buffer().attach(importer(true, true))), Errno::NODEV);
    fd.set_memory_enable(true).unwrap();
    buf.buffer().attach(importer(true, true)).unwrap();
}

#[test]
fn attach_of_an_importer_that_cannot_be_revoked_is_eopnotsupp() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    assert_eq!(dmabuf_errno(buf.buffer().attach(importer(true, false))), Errno::OPNOTSUPP);
    assert_eq!(buf.buffer().attachments(), 0);
}

#[test]
fn attach_checks_peer2peer_then_revoked_then_revocable() {
    // §2.5: not p2p (EOPNOTSUPP) before revoked (ENODEV) before
    // non-revocable (EOPNOTSUPP).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(dmabuf_errno(buf.buffer().attach(importer(false, false))), Errno::OPNOTSUPP);
    assert_eq!(dmabuf_errno(buf.buffer().attach(importer(true, false))), Errno::NODEV);
}

#[test]
fn importer_map_of_a_permanently_revoked_buffer_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let attachment = buf.buffer().attach(importer(true, true)).unwrap();
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(dmabuf_errno(attachment.map()), Errno::NODEV);
    assert_eq!(buf.buffer().importer_mappings(), 0);
}

#[test]
fn importer_map_of_a_temporarily_revoked_buffer_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let attachment = buf.buffer().attach(importer(true, true)).unwrap();
    fd.set_memory_enable(false).unwrap();
    assert_eq!(dmabuf_errno(attachment.map()), Errno::NODEV);
    fd.set_memory_enable(true).unwrap();
    let mapping = attachment.map().unwrap();
    assert_eq!(buf.buffer().importer_mappings(), 1);
    mapping.unmap();
}

#[test]
fn importer_map_after_the_device_was_closed_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let attachment = buf.buffer().attach(importer(true, true)).unwrap();
    fd.close();
    assert_eq!(dmabuf_errno(attachment.map()), Errno::NODEV);
}
