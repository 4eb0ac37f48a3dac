//! Rows of spec §4.5: mmap of a buffer fd.

use super::*;

/// Asserts a buffer mmap fails with `expected` and leaves nothing behind.
pub fn assert_buffer_mmap_fails(fx: &Fixture, buf: &DmaBufFd, args: MmapArgs, expected: Errno) {
    let before = counts(fx);
    assert_eq!(errno(mmap_dmabuf(&fx.aspace, buf, args)), expected, "{args:?}");
    assert_eq!(counts(fx), before, "{args:?} left something behind");
}

#[test]
fn buffer_mmap_longer_than_the_buffer_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, 16 * PAGE);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, 17 * PAGE), Errno::INVAL);
}

#[test]
fn buffer_mmap_at_an_offset_that_runs_past_the_end_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, 16 * PAGE);
    // Matt's test T3: full size at offset 4K.
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(PAGE, 16 * PAGE), Errno::INVAL);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(16 * PAGE, PAGE), Errno::INVAL);
    // An offset past MAX_LFS_FILESIZE: file_mmap_ok() says EOVERFLOW first.
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(LAST_PAGE, PAGE), Errno::OVERFLOW);
    // The last page alone is fine.
    mmap_dmabuf(&fx.aspace, &buf, MmapArgs::shared(15 * PAGE, PAGE)).unwrap();
}

#[test]
fn buffer_mmap_of_zero_length_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, 0), Errno::INVAL);
}

#[test]
fn buffer_mmap_at_an_unaligned_offset_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, 4 * PAGE);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(8, PAGE), Errno::INVAL);
}

#[test]
fn buffer_mmap_with_map_private_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let args = MmapArgs { shared: false, ..MmapArgs::shared(0, PAGE) };
    assert_buffer_mmap_fails(&fx, &buf, args, Errno::INVAL);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs { write: false, ..args }, Errno::INVAL);
}

#[test]
fn buffer_mmap_of_a_permanently_revoked_buffer_is_enodev() {
    // Matt's test T8.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::NODEV);
}

#[test]
fn buffer_mmap_of_a_temporarily_revoked_buffer_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.set_memory_enable(false).unwrap();
    assert_eq!(buf.buffer().status(), Status::TempRevoked);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::NODEV);
    // Un-revoked by re-enabling memory: mmap works again.
    fd.set_memory_enable(true).unwrap();
    mmap_dmabuf(&fx.aspace, &buf, MmapArgs::shared(0, PAGE)).unwrap();
}

#[test]
fn buffer_mmap_of_a_buffer_exported_while_memory_was_disabled_is_enodev() {
    // §4.3 step 4: the initial status follows memory enable.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    fd.set_memory_enable(false).unwrap();
    let buf = export_bar1(&fd, PAGE);
    assert_eq!(buf.buffer().status(), Status::TempRevoked);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::NODEV);
}

#[test]
fn buffer_mmap_after_the_device_was_closed_is_enodev() {
    // Matt's test T18, second half: the explicit buffer holds no device file.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.close();
    assert_eq!(fx.vdev.open_count(), 0);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::NODEV);
}

#[test]
fn buffer_mmap_private_of_a_revoked_buffer_is_enodev_before_einval() {
    // §4.5: the status check (step 2) precedes the VM_SHARED check (step 3).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    let args = MmapArgs { shared: false, ..MmapArgs::shared(0, PAGE) };
    assert_buffer_mmap_fails(&fx, &buf, args, Errno::NODEV);
}

#[test]
fn buffer_mmap_past_the_end_of_a_revoked_buffer_is_einval_before_enodev() {
    // §4.5: the dma-buf core's size check (step 1) precedes the status check.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, 2 * PAGE), Errno::INVAL);
}

#[test]
fn buffer_mmap_writable_shared_of_a_read_only_buffer_is_eacces() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = fd.feature_dma_buf(1, RDONLY, &[(0, PAGE)]).unwrap();
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::ACCESS);
    // Read-only shared is fine.
    let va = mmap_dmabuf(&fx.aspace, &buf, MmapArgs { write: false, ..MmapArgs::shared(0, PAGE) }).unwrap();
    probe::read_u64(va).unwrap();
}

#[test]
fn buffer_mmap_writable_shared_of_a_revoked_read_only_buffer_is_eacces_before_enodev() {
    // The VFS permission check runs before the exporter's mmap op.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = fd.feature_dma_buf(1, RDONLY, &[(0, PAGE)]).unwrap();
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::ACCESS);
}

#[test]
fn buffer_mmap_writable_private_of_a_read_only_buffer_is_einval() {
    // MAP_PRIVATE never needs FMODE_WRITE, so the VFS lets it through and
    // the exporter refuses the private mapping.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = fd.feature_dma_buf(1, RDONLY, &[(0, PAGE)]).unwrap();
    let args = MmapArgs { shared: false, ..MmapArgs::shared(0, PAGE) };
    assert_buffer_mmap_fails(&fx, &buf, args, Errno::INVAL);
}

#[test]
fn buffer_mmap_of_a_write_only_buffer_is_eacces() {
    // The same generic VFS rule (spec §5.3, "[R]"): do_mmap() refuses every
    // mapping of a file not opened for reading, shared or private.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = fd.feature_dma_buf(1, WRONLY, &[(0, PAGE)]).unwrap();
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::ACCESS);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs { write: false, ..MmapArgs::shared(0, PAGE) }, Errno::ACCESS);
}

#[test]
fn buffer_mmap_at_a_taken_address_is_eexist_and_leaves_no_vma() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, 2 * PAGE);
    let va = mmap_dmabuf(&fx.aspace, &buf, MmapArgs::shared(0, PAGE)).unwrap();
    let args = MmapArgs { addr: Some(va), ..MmapArgs::shared(PAGE, PAGE) };
    assert_buffer_mmap_fails(&fx, &buf, args, Errno::EXIST);
    // The first mapping is untouched.
    probe::write_u64(va, 0x5eed).unwrap();
    assert_eq!(probe::read_u64(va).unwrap(), 0x5eed);
}
