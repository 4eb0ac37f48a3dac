//! Rows of spec §2.1: `vfio_check_feature` and the `VFIO_DEVICE_FEATURE` header.

use super::*;

#[test]
fn dma_buf_feature_with_set_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE)]);
    assert_eq!(errno(fd.feature(SET | DMA_BUF, &payload)), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn dma_buf_feature_probe_get_is_done() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert!(is_done(fd.feature(PROBE | GET | DMA_BUF, &[])));
    assert_eq!(fx.vdev.dmabufs().len(), 0, "a probe exports nothing");
}

#[test]
fn dma_buf_feature_probe_set_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature(PROBE | SET | DMA_BUF, &[])), Errno::INVAL);
}

#[test]
fn dma_buf_feature_without_get_or_set_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE)]);
    assert_eq!(errno(fd.feature(DMA_BUF, &payload)), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn dma_buf_feature_with_argsz_below_its_header_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(1, RDWR, 0, &[]);
    assert_eq!(errno(raw_export(&fd, &payload[..DMA_BUF_FEATURE_MINSZ - 1])), Errno::INVAL);
    assert_eq!(errno(raw_export(&fd, &[])), Errno::INVAL);
}

#[test]
fn unknown_feature_number_is_enotty() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature(GET | 99, &[0; 16])), Errno::NOTTY);
    assert_eq!(errno(fd.feature(PROBE | GET | VFIO_DEVICE_FEATURE_MASK, &[])), Errno::NOTTY);
}

#[test]
fn unknown_feature_flag_bits_are_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE)]);
    assert_eq!(errno(fd.feature(GET | DMA_BUF | (1 << 19), &payload)), Errno::INVAL);
    assert_eq!(errno(fd.feature(GET | DMA_BUF | (1 << 31), &payload)), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn get_and_set_together_without_probe_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE)]);
    assert_eq!(errno(fd.feature(GET | SET | DMA_BUF, &payload)), Errno::INVAL);
}

#[test]
fn revoke_feature_with_get_is_einval_and_probe_set_is_done() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let payload = buf.raw_fd().to_ne_bytes();
    assert_eq!(errno(fd.feature(GET | REVOKE, &payload)), Errno::INVAL);
    assert_eq!(errno(fd.feature(PROBE | GET | REVOKE, &[])), Errno::INVAL);
    assert!(is_done(fd.feature(PROBE | SET | REVOKE, &[])));
    assert_eq!(buf.buffer().status(), Status::Ok, "neither call revoked");
}

#[test]
fn revoke_feature_with_argsz_below_four_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let payload = buf.raw_fd().to_ne_bytes();
    assert_eq!(errno(fd.feature(SET | REVOKE, &payload[..3])), Errno::INVAL);
    assert_eq!(buf.buffer().status(), Status::Ok);
}

#[test]
fn memattr_feature_with_get_is_einval_and_probe_set_is_done() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let mut payload = buf.raw_fd().to_ne_bytes().to_vec();
    payload.extend_from_slice(&VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC.to_ne_bytes());
    assert_eq!(errno(fd.feature(GET | MEMATTR, &payload)), Errno::INVAL);
    assert!(is_done(fd.feature(PROBE | SET | MEMATTR, &[])));
    let memattr = VfioDmaBuf::of(buf.buffer()).unwrap().memattr();
    assert_eq!(memattr, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC, "neither call set WC");
}

#[test]
fn memattr_feature_with_argsz_below_eight_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let mut payload = buf.raw_fd().to_ne_bytes().to_vec();
    payload.extend_from_slice(&VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC.to_ne_bytes());
    assert_eq!(errno(fd.feature(SET | MEMATTR, &payload[..7])), Errno::INVAL);
    assert_eq!(VfioDmaBuf::of(buf.buffer()).unwrap().memattr(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC);
}
