//! The SIGBUS row of the summary (spec §5.3): any access to a revoked mapping.

use super::*;

#[test]
fn access_to_a_permanently_revoked_buffer_mapping_raises_sigbus() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let va = mmap_dmabuf(&fx.aspace, &buf, MmapArgs::shared(0, PAGE)).unwrap();
    probe::read_u64(va).unwrap();
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_sigbus(va);
    // Permanent: re-enabling memory decoding does not bring it back.
    fd.set_memory_enable(false).unwrap();
    fd.set_memory_enable(true).unwrap();
    assert_sigbus(va);
}

#[test]
fn access_to_a_buffer_mapping_with_memory_disabled_raises_sigbus() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let va = mmap_dmabuf(&fx.aspace, &buf, MmapArgs::shared(0, PAGE)).unwrap();
    let dev_va = fd.mmap(&fx.aspace, MmapArgs::shared(1 << 40, PAGE)).unwrap();
    probe::write_u64(va, 7).unwrap();
    fd.set_memory_enable(false).unwrap();
    assert_sigbus(va);
    assert_sigbus(dev_va);
    fd.set_memory_enable(true).unwrap();
    assert_eq!(probe::read_u64(dev_va).unwrap(), 7);
}

#[test]
fn access_to_a_mapping_in_d3hot_raises_sigbus() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let va = fd.mmap(&fx.aspace, MmapArgs::shared(1 << 40, PAGE)).unwrap();
    probe::read_u64(va).unwrap();
    fd.set_power_state(PowerState::D3Hot).unwrap();
    assert_sigbus(va);
    fd.set_power_state(PowerState::D0).unwrap();
    probe::read_u64(va).unwrap();
}

#[test]
fn access_to_a_buffer_mapping_after_the_device_was_closed_raises_sigbus() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let va = mmap_dmabuf(&fx.aspace, &buf, MmapArgs::shared(0, PAGE)).unwrap();
    probe::read_u64(va).unwrap();
    fd.close();
    assert_sigbus(va);
}
