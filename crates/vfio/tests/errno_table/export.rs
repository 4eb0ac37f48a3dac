//! Rows of spec §4.4: explicit export, checks in the kernel's order.

use super::*;

#[test]
fn export_with_zero_ranges_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[])), Errno::INVAL);
    assert_eq!(errno(raw_export(&fd, &encode_dma_buf_payload(1, RDWR, 0, &[]))), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_with_nonzero_flags_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    for flags in [1, 1 << 28, u32::MAX] {
        let payload = encode_dma_buf_payload(1, RDWR, flags, &[(0, PAGE)]);
        assert_eq!(errno(raw_export(&fd, &payload)), Errno::INVAL, "flags {flags:#x}");
    }
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_with_zero_ranges_of_a_non_bar_is_einval_before_enodev() {
    // §4.4 step 4 (nr_ranges, flags) runs before step 5 (region index).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(VFIO_PCI_ROM_REGION_INDEX, RDWR, &[])), Errno::INVAL);
    let payload = encode_dma_buf_payload(VFIO_PCI_VGA_REGION_INDEX, RDWR, 1, &[(0, PAGE)]);
    assert_eq!(errno(raw_export(&fd, &payload)), Errno::INVAL);
}

#[test]
fn export_of_the_rom_region_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(VFIO_PCI_ROM_REGION_INDEX, RDWR, &[(0, PAGE)])), Errno::NODEV);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_the_config_region_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(VFIO_PCI_CONFIG_REGION_INDEX, RDWR, &[(0, PAGE)])), Errno::NODEV);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_the_vga_region_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(VFIO_PCI_VGA_REGION_INDEX, RDWR, &[(0, PAGE)])), Errno::NODEV);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_a_region_index_past_the_last_region_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    for index in [VFIO_PCI_NUM_REGIONS, 1000, u32::MAX] {
        assert_eq!(errno(fd.feature_dma_buf(index, RDWR, &[(0, PAGE)])), Errno::NODEV, "index {index}");
    }
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_a_bar_the_device_lacks_is_enodev() {
    // edu-plus has BAR0 and BAR1 (64-bit, so slot 2 is its upper half).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    for index in [2, 3, 4, 5] {
        assert_eq!(errno(fd.feature_dma_buf(index, RDWR, &[(0, PAGE)])), Errno::NODEV, "BAR{index}");
    }
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_a_register_bar_checks_its_ranges_as_a_ram_bar() {
    // Register BARs export (their accesses trap and are emulated); §4.4
    // step 9's bounds check applies unchanged: edu-plus BAR0 is 1 MiB.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(0, RDWR, &[(MIB, PAGE)])), Errno::INVAL);
    assert_eq!(errno(fd.feature_dma_buf(0, RDWR, &[(0, PAGE), (MIB - PAGE, 2 * PAGE)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
    let ok = fd.feature_dma_buf(0, RDWR, &[(MIB - PAGE, PAGE), (0, PAGE)]).unwrap();
    assert_eq!(fx.vdev.dmabufs().len(), 1);
    drop(ok);
}

#[test]
fn export_with_an_unaligned_range_offset_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0x800, PAGE)])), Errno::INVAL);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, PAGE), (PAGE + 8, PAGE)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_with_an_unaligned_range_length_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, PAGE + 1)])), Errno::INVAL);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, 0x800)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_with_a_zero_length_range_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, 0)])), Errno::INVAL);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, PAGE), (PAGE, 0)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_a_range_past_the_bar_end_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(BAR1_LEN - PAGE, 2 * PAGE)])), Errno::INVAL);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(BAR1_LEN, PAGE)])), Errno::INVAL);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, BAR1_LEN + PAGE)])), Errno::INVAL);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, PAGE), (BAR1_LEN, PAGE)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
    // The last page is still exportable: the check is `end > bar end`.
    let buf = fd.feature_dma_buf(1, RDWR, &[(BAR1_LEN - PAGE, PAGE)]).unwrap();
    assert_eq!(buf.buffer().size(), PAGE);
}

#[test]
fn export_of_a_range_whose_start_overflows_is_eoverflow() {
    // bar_start + offset wraps (§4.4 step 9).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = LAST_PAGE;
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(offset, PAGE)])), Errno::OVERFLOW);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_a_range_whose_end_overflows_is_eoverflow() {
    // bar_start + offset fits, + length wraps (§4.4 step 9). BAR1 lives at
    // 1 << 40 in this model's physical space.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = 0u64.wrapping_sub(1 << 40).wrapping_sub(PAGE);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(offset, 2 * PAGE)])), Errno::OVERFLOW);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_with_summed_lengths_overflowing_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let half = 1u64 << 63;
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, half), (0, half)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_with_total_size_having_bit_63_set_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let quarter = 1u64 << 62;
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, quarter), (0, quarter)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_summed_length_check_runs_before_the_per_range_overflow_check() {
    // §4.4 step 7 (EINVAL) precedes step 9 (EOVERFLOW).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = LAST_PAGE;
    let half = 1u64 << 63;
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(offset, half), (0, half)])), Errno::INVAL);
}

#[test]
fn export_with_payload_shorter_than_nr_ranges_says_is_efault() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE), (PAGE, PAGE)]);
    assert_eq!(errno(raw_export(&fd, &payload[..payload.len() - DMA_RANGE_SIZE])), Errno::FAULT);
    assert_eq!(errno(raw_export(&fd, &payload[..payload.len() - 1])), Errno::FAULT);
    assert_eq!(errno(raw_export(&fd, &payload[..DMA_BUF_FEATURE_MINSZ])), Errno::FAULT);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_a_non_bar_with_a_short_payload_is_enodev_before_efault() {
    // §4.4 step 5 (region) precedes step 6 (copy of the ranges).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(VFIO_PCI_CONFIG_REGION_INDEX, RDWR, 0, &[(0, PAGE)]);
    assert_eq!(errno(raw_export(&fd, &payload[..DMA_BUF_FEATURE_MINSZ])), Errno::NODEV);
}

#[test]
fn export_with_longer_payload_than_nr_ranges_says_ignores_the_rest() {
    // argsz is not cross-checked against nr_ranges (spec §4.4 step 6, §12).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let mut payload = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE)]);
    payload.extend_from_slice(&[0xff; DMA_RANGE_SIZE]);
    let Ok(FeatureReply::DmaBuf(buf)) = raw_export(&fd, &payload) else { panic!("export must succeed") };
    assert_eq!(buf.buffer().size(), PAGE);
    assert_eq!(fx.vdev.dmabufs().len(), 1);
}

/// Every failing export of the table, through the raw feature call.
pub fn failing_exports() -> Vec<(&'static str, Vec<u8>, Errno)> {
    let ok_range = [(0, PAGE)];
    let mut short = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE), (PAGE, PAGE)]);
    short.truncate(short.len() - DMA_RANGE_SIZE);
    vec![
        ("zero ranges", encode_dma_buf_payload(1, RDWR, 0, &[]), Errno::INVAL),
        ("non-zero flags", encode_dma_buf_payload(1, RDWR, 1, &ok_range), Errno::INVAL),
        ("ROM", encode_dma_buf_payload(6, RDWR, 0, &ok_range), Errno::NODEV),
        ("CONFIG", encode_dma_buf_payload(7, RDWR, 0, &ok_range), Errno::NODEV),
        ("VGA", encode_dma_buf_payload(8, RDWR, 0, &ok_range), Errno::NODEV),
        ("missing BAR", encode_dma_buf_payload(3, RDWR, 0, &ok_range), Errno::NODEV),
        ("register BAR past end", encode_dma_buf_payload(0, RDWR, 0, &[(MIB, PAGE)]), Errno::INVAL),
        ("unaligned", encode_dma_buf_payload(1, RDWR, 0, &[(8, PAGE)]), Errno::INVAL),
        ("zero length", encode_dma_buf_payload(1, RDWR, 0, &[(0, 0)]), Errno::INVAL),
        ("past end", encode_dma_buf_payload(1, RDWR, 0, &[(BAR1_LEN, PAGE)]), Errno::INVAL),
        ("start overflow", encode_dma_buf_payload(1, RDWR, 0, &[(LAST_PAGE, PAGE)]), Errno::OVERFLOW),
        ("sum overflow", encode_dma_buf_payload(1, RDWR, 0, &[(0, 1 << 63), (0, 1 << 63)]), Errno::INVAL),
        ("short payload", short, Errno::FAULT),
    ]
}

#[test]
fn every_failed_export_leaves_no_handle_and_no_buffer_behind() {
    // The one test that compares the process-wide handle count: it holds
    // the quiet lock for write, so no other test of this file runs meanwhile.
    let _alone = alone();
    let vdev = device("edu-plus");
    let fd = vdev.open();
    let handles = dmabuf::nr_handles();
    for (what, payload, expected) in failing_exports() {
        assert_eq!(errno(raw_export(&fd, &payload)), expected, "{what}");
        assert_eq!(dmabuf::nr_handles(), handles, "{what}: a handle was left behind");
        assert_eq!(vdev.dmabufs().len(), 0, "{what}: a buffer was left behind");
        assert_eq!(vdev.open_count(), 1, "{what}");
    }
    // A successful export adds exactly one handle, and closing it removes it.
    let buf = export_bar1(&fd, PAGE);
    assert_eq!(dmabuf::nr_handles(), handles + 1);
    drop(buf);
    assert_eq!(dmabuf::nr_handles(), handles);
    assert_eq!(vdev.dmabufs().len(), 0);
}
