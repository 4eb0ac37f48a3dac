//! Rows of spec §2.2 and §4.1: mmap of a device fd.

use super::*;

/// Asserts a device-fd mmap fails with `expected` and leaves nothing behind.
pub fn assert_device_mmap_fails(fx: &Fixture, fd: &DeviceFd, args: MmapArgs, expected: Errno) {
    let before = counts(fx);
    assert_eq!(errno(fd.mmap(&fx.aspace, args)), expected, "{args:?}");
    assert_eq!(counts(fx), before, "{args:?} left something behind");
}

#[test]
fn device_mmap_of_a_region_index_past_the_last_region_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    for index in [u64::from(VFIO_PCI_NUM_REGIONS), 100, (1 << 24) - 1] {
        assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(index << 40, PAGE), Errno::INVAL);
    }
}

#[test]
fn device_mmap_of_the_rom_region_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = fd.region_info(VFIO_PCI_ROM_REGION_INDEX).unwrap().offset;
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(offset, PAGE), Errno::INVAL);
}

#[test]
fn device_mmap_of_the_config_region_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = fd.region_info(VFIO_PCI_CONFIG_REGION_INDEX).unwrap().offset;
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(offset, PAGE), Errno::INVAL);
}

#[test]
fn device_mmap_of_the_vga_region_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    // No region info for it (not a VGA device); the offset is the index's.
    let offset = u64::from(VFIO_PCI_VGA_REGION_INDEX) << 40;
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(offset, PAGE), Errno::INVAL);
}

#[test]
fn device_mmap_of_a_register_bar_checks_its_span_as_a_ram_bar() {
    // edu-plus BAR0 is the edu register file: mappable (accesses trap and
    // are emulated), with the span and sharing checks of any BAR.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let info = fd.region_info(0).unwrap();
    assert_ne!(info.flags & VFIO_REGION_INFO_FLAG_MMAP, 0);
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(info.offset, info.size + PAGE), Errno::INVAL);
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(info.offset + info.size, PAGE), Errno::INVAL);
    let private = MmapArgs { shared: false, ..MmapArgs::shared(info.offset, PAGE) };
    assert_device_mmap_fails(&fx, &fd, private, Errno::INVAL);
    assert!(fd.mmap(&fx.aspace, MmapArgs::shared(info.offset + info.size - PAGE, PAGE)).is_ok());
}

#[test]
fn device_mmap_of_a_bar_the_device_lacks_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    for index in [2u64, 3, 4, 5] {
        assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(index << 40, PAGE), Errno::INVAL);
    }
}

#[test]
fn device_mmap_with_map_private_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let args = MmapArgs { shared: false, ..MmapArgs::shared(1 << 40, PAGE) };
    assert_device_mmap_fails(&fx, &fd, args, Errno::INVAL);
    let read_only = MmapArgs { write: false, ..args };
    assert_device_mmap_fails(&fx, &fd, read_only, Errno::INVAL);
}

#[test]
fn device_mmap_past_the_page_aligned_bar_end_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let bar1 = fd.region_info(1).unwrap();
    assert_eq!(bar1.size, BAR1_LEN);
    // Matt's test T4: size + 4K at offset 0, and the full size at offset 4K.
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(bar1.offset, BAR1_LEN + PAGE), Errno::INVAL);
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(bar1.offset + PAGE, BAR1_LEN), Errno::INVAL);
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(bar1.offset + BAR1_LEN, PAGE), Errno::INVAL);
    // Up to the end exactly is fine.
    fd.mmap(&fx.aspace, MmapArgs::shared(bar1.offset + BAR1_LEN - PAGE, PAGE)).unwrap();
}

#[test]
fn device_mmap_whose_offset_plus_length_overflows_is_enomem_from_mmap_itself() {
    // Such a length is beyond the address space: get_unmapped_area() refuses
    // it with ENOMEM before the driver's EINVAL (spec §2.2 step 5) is reached.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let len = LAST_PAGE;
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared((1 << 40) + PAGE, len), Errno::NOMEM);
}

#[test]
fn device_mmap_of_zero_length_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(1 << 40, 0), Errno::INVAL);
}

#[test]
fn device_mmap_at_an_unaligned_offset_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    for offset in [(1 << 40) + 1, (1 << 40) + 0x800, (1 << 40) + PAGE + 8] {
        assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(offset, PAGE), Errno::INVAL);
    }
}

#[test]
fn device_mmap_at_a_taken_address_is_eexist_and_releases_its_buffer() {
    // The per-mapping buffer is created before the VMA; when mapping fails
    // it must be released again, with the device-file reference it owned.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let va = fd.mmap(&fx.aspace, MmapArgs::shared(1 << 40, PAGE)).unwrap();
    let args = MmapArgs { addr: Some(va), ..MmapArgs::shared((1 << 40) + PAGE, PAGE) };
    assert_device_mmap_fails(&fx, &fd, args, Errno::EXIST);
    assert_eq!(fx.vdev.dmabufs().len(), 1, "only the live mapping's buffer");
    // Unmapping the live mapping and closing the fd must close the device:
    // no leftover of the failed call still owns the device file.
    fx.aspace.munmap(va, PAGE).unwrap();
    fd.close();
    assert_eq!(fx.vdev.open_count(), 0);
    assert!(fx.vdev.dmabufs().is_empty());
}

#[test]
fn device_mmap_with_memory_disabled_succeeds_and_faults_with_sigbus() {
    // §5.1: the legacy paradigm, map regardless and SIGBUS on access; the
    // buffer starts TEMP_REVOKED (§4.3 step 4).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    fd.set_memory_enable(false).unwrap();
    let va = fd.mmap(&fx.aspace, MmapArgs::shared(1 << 40, PAGE)).unwrap();
    assert_eq!(fx.vdev.dmabufs()[0].status(), Status::TempRevoked);
    assert_sigbus(va);
    fd.set_memory_enable(true).unwrap();
    probe::read_u64(va).unwrap();
}
