//! Region read/write and region info.

use super::*;

#[test]
fn region_info_past_the_last_region_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.region_info(VFIO_PCI_NUM_REGIONS)), Errno::INVAL);
    assert_eq!(errno(fd.region_info(u32::MAX)), Errno::INVAL);
}

#[test]
fn region_read_past_the_bar_end_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let mut buf = [0u8; 8];
    assert_eq!(errno(fd.read((1 << 40) + BAR1_LEN, &mut buf)), Errno::INVAL);
    assert_eq!(errno(fd.read(1 << 20, &mut buf)), Errno::INVAL, "BAR0 is 1 MiB");
    // A read that starts inside and runs past the end is short, not an error.
    assert_eq!(fd.read((1 << 40) + BAR1_LEN - 4, &mut buf).unwrap(), 4);
}

#[test]
fn region_write_past_the_bar_end_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.write((1 << 40) + BAR1_LEN, &[1; 8])), Errno::INVAL);
}

#[test]
fn region_read_and_write_of_a_missing_bar_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let mut buf = [0u8; 4];
    assert_eq!(errno(fd.read(3 << 40, &mut buf)), Errno::INVAL);
    assert_eq!(errno(fd.write(3 << 40, &buf)), Errno::INVAL);
}

#[test]
fn region_read_and_write_of_the_rom_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = u64::from(VFIO_PCI_ROM_REGION_INDEX) << 40;
    let mut buf = [0u8; 4];
    assert_eq!(errno(fd.read(offset, &mut buf)), Errno::INVAL);
    assert_eq!(errno(fd.write(offset, &buf)), Errno::INVAL);
}

#[test]
fn region_read_and_write_of_vga_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = u64::from(VFIO_PCI_VGA_REGION_INDEX) << 40;
    let mut buf = [0u8; 4];
    assert_eq!(errno(fd.read(offset, &mut buf)), Errno::INVAL);
    assert_eq!(errno(fd.write(offset, &buf)), Errno::INVAL);
}

#[test]
fn region_read_past_the_config_space_is_efault() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let size = fd.region_info(VFIO_PCI_CONFIG_REGION_INDEX).unwrap().size;
    let offset = (u64::from(VFIO_PCI_CONFIG_REGION_INDEX) << 40) + size;
    let mut buf = [0u8; 4];
    // vfio_config_do_rw(): an access not wholly inside config space is EFAULT.
    assert_eq!(errno(fd.read(offset, &mut buf)), Errno::FAULT);
}

#[test]
fn region_read_and_write_of_a_ram_bar_while_memory_is_disabled_is_eio() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    fd.set_memory_enable(false).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(errno(fd.read(1 << 40, &mut buf)), Errno::IO);
    assert_eq!(errno(fd.write(1 << 40, &buf)), Errno::IO);
    fd.set_memory_enable(true).unwrap();
    assert_eq!(fd.read(1 << 40, &mut buf).unwrap(), 8);
}

#[test]
fn region_read_and_write_of_a_register_bar_while_memory_is_disabled_is_eio() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    fd.set_memory_enable(false).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(errno(fd.read(0, &mut buf)), Errno::IO);
    assert_eq!(errno(fd.write(4, &buf)), Errno::IO);
}

#[test]
fn region_read_of_a_bar_in_d3hot_is_eio() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    fd.set_power_state(PowerState::D3Hot).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(errno(fd.read(1 << 40, &mut buf)), Errno::IO);
}

#[test]
fn region_info_of_vga_is_einval_on_a_device_that_is_not_vga() {
    // vfio_pci_ioctl_get_region_info(): the VGA index answers only when
    // vdev->has_vga.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.region_info(VFIO_PCI_VGA_REGION_INDEX)), Errno::INVAL);
}

#[test]
fn region_info_of_a_missing_rom_has_size_zero_and_no_flags() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let info = fd.region_info(VFIO_PCI_ROM_REGION_INDEX).unwrap();
    assert_eq!((info.size, info.flags), (0, 0));
    assert_eq!(info.offset, u64::from(VFIO_PCI_ROM_REGION_INDEX) << 40);
}
