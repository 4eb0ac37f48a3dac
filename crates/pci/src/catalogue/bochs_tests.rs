use super::*;
use crate::spec::RegisterBar;

fn registers() -> BochsDisplayRegisters {
    BochsDisplayRegisters::new(BOCHS_VRAM_SIZE)
}

fn read(bar: &BochsDisplayRegisters, offset: u64, len: usize) -> u64 {
    let mut data = [0; 8];
    bar.read(offset, &mut data[..len]);
    u64::from_le_bytes(data)
}

fn write(bar: &BochsDisplayRegisters, offset: u64, len: usize, value: u64) {
    bar.write(offset, &value.to_le_bytes()[..len]);
}

fn dispi(index: u16) -> u64 {
    BOCHS_DISPI_OFFSET + 2 * u64::from(index)
}

const BYTEORDER: u64 = BOCHS_QEXT_OFFSET + PCI_VGA_QEXT_REG_BYTEORDER;

#[test]
fn the_device_has_qemus_identity_and_bars() {
    let spec = bochs_display();
    spec.validate().unwrap();
    assert_eq!((spec.vendor_id, spec.device_id, spec.revision), (0x1234, 0x1111, 0x02));
    assert_eq!(spec.class_code, 0x03_80_00);
    let bar0 = spec.bars[0].as_ref().unwrap();
    assert!(bar0.is_ram() && bar0.prefetchable && !bar0.is_64bit);
    assert_eq!(bar0.size, 16 << 20);
    let bar2 = spec.bars[2].as_ref().unwrap();
    assert!(bar2.register_bar().is_some() && !bar2.prefetchable && !bar2.is_64bit);
    assert_eq!(bar2.size, 4096);
    assert!([1, 3, 4, 5].iter().all(|i| spec.bars[*i].is_none()));
}

#[test]
fn vgamem_is_bounded_and_rounded_up_to_a_power_of_two() {
    for (vgamem, vram) in [(4 << 20, 4 << 20), (5 << 20, 8 << 20), (256 << 20, 256 << 20)] {
        let spec = bochs_display_with_vgamem(vgamem).unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.bars[0].as_ref().unwrap().size, vram);
        let bar2 = spec.bars[2].as_ref().unwrap().register_bar().unwrap();
        let mut data = [0; 2];
        bar2.read(dispi(VBE_DISPI_INDEX_VIDEO_MEMORY_64K), &mut data);
        assert_eq!(u64::from(u16::from_le_bytes(data)), vram >> 16);
    }
    for vgamem in [0, (4 << 20) - 1, (256 << 20) + 1] {
        let error = bochs_display_with_vgamem(vgamem).unwrap_err();
        assert_eq!(error, PciError::VgamemOutOfRange { size: vgamem });
        assert_eq!(error.errno(), rustix::io::Errno::INVAL);
    }
}

#[test]
fn the_edid_is_readable_at_any_width_and_ignores_writes() {
    let bar = registers();
    let edid = edid::generate();
    for (offset, byte) in edid.iter().enumerate() {
        assert_eq!(read(&bar, offset as u64, 1), u64::from(*byte));
    }
    assert_eq!(read(&bar, 0, 4), 0xffff_ff00);
    assert_eq!(read(&bar, 4, 4), 0x00ff_ffff);
    assert_eq!(read(&bar, 0, 8), 0x00ff_ffff_ffff_ff00);
    assert_eq!(read(&bar, 0x7e, 2), u64::from(u16::from_le_bytes([edid[0x7e], edid[0x7f]])));
    write(&bar, 0, 4, 0);
    write(&bar, 8, 1, 0);
    assert_eq!(read(&bar, 0, 8), 0x00ff_ffff_ffff_ff00);
    assert_eq!(read(&bar, 8, 1), u64::from(edid[8]));
}

#[test]
fn holes_read_all_ones_and_ignore_writes() {
    let bar = registers();
    for offset in [0x100, 0x400, 0x41a, 0x4fc, 0x516, 0x5fc, 0x608, 0xffc] {
        write(&bar, offset, 4, 0);
        assert_eq!(read(&bar, offset, 4), 0xffff_ffff, "{offset:#x}");
    }
    assert_eq!(read(&bar, 0xff8, 8), u64::MAX);
    // An access running off the EDID's end reads the hole for its second half.
    assert_eq!(read(&bar, 0xfe, 4) >> 16, 0xffff);
}

#[test]
fn the_id_register_reads_b0c5_and_ignores_writes() {
    let bar = registers();
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_ID), 2), 0xb0c5);
    write(&bar, dispi(VBE_DISPI_INDEX_ID), 2, 0xb0c0);
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_ID), 2), u64::from(VBE_DISPI_ID5));
}

#[test]
fn dispi_registers_start_at_zero_and_store_writes_verbatim() {
    let bar = registers();
    for index in VBE_DISPI_INDEX_XRES..=VBE_DISPI_INDEX_Y_OFFSET {
        assert_eq!(read(&bar, dispi(index), 2), 0, "index {index}");
    }
    // Values the standard VGA would fix up (BPP 7, XRES not a multiple of 8 and above 16000,
    // YRES 0, a frame far larger than VRAM) are kept as written, enabled or not.
    let values = [(VBE_DISPI_INDEX_ENABLE, 0x00c3), (VBE_DISPI_INDEX_BPP, 7), (VBE_DISPI_INDEX_XRES, 16_003)];
    let values = values.into_iter().chain([
        (VBE_DISPI_INDEX_YRES, 0),
        (VBE_DISPI_INDEX_BANK, 0xffff),
        (VBE_DISPI_INDEX_VIRT_WIDTH, 3),
        (VBE_DISPI_INDEX_VIRT_HEIGHT, 0x1234),
        (VBE_DISPI_INDEX_X_OFFSET, 0xfff0),
        (VBE_DISPI_INDEX_Y_OFFSET, 60_000),
    ]);
    for (index, value) in values.clone() {
        write(&bar, dispi(index), 2, value);
    }
    for (index, value) in values {
        assert_eq!(read(&bar, dispi(index), 2), value, "index {index}");
    }
}

#[test]
fn video_memory_64k_reads_the_vram_size_and_ignores_writes() {
    let bar = registers();
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_VIDEO_MEMORY_64K), 2), 256);
    write(&bar, dispi(VBE_DISPI_INDEX_VIDEO_MEMORY_64K), 2, 1);
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_VIDEO_MEMORY_64K), 2), 256);
    // A dword there reads the register below and the hole above.
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_VIDEO_MEMORY_64K), 4), 0xffff_0100);
}

#[test]
fn byte_accesses_act_on_the_whole_dispi_register() {
    let bar = registers();
    write(&bar, dispi(VBE_DISPI_INDEX_XRES), 2, 0x0320);
    // Both bytes of the register read its low byte.
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_XRES), 1), 0x20);
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_XRES) + 1, 1), 0x20);
    // A byte write to either byte replaces the whole register with the zero-extended byte.
    write(&bar, dispi(VBE_DISPI_INDEX_XRES) + 1, 1, 0x05);
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_XRES), 2), 0x05);
    write(&bar, dispi(VBE_DISPI_INDEX_YRES), 2, 0x0258);
    write(&bar, dispi(VBE_DISPI_INDEX_YRES), 1, 0x40);
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_YRES), 2), 0x40);
}

#[test]
fn dword_and_qword_dispi_accesses_cover_consecutive_registers() {
    let bar = registers();
    // Aligned dword at XRES's predecessor: ID in the low half, XRES in the high half.
    write(&bar, dispi(VBE_DISPI_INDEX_ID), 4, 0x0400_1234);
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_XRES), 2), 0x0400);
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_ID), 4), 0x0400_b0c5);
    // Unaligned dword: two 16-bit pieces, YRES then BPP.
    write(&bar, dispi(VBE_DISPI_INDEX_YRES), 4, 0x0020_0300);
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_YRES), 2), 0x0300);
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_BPP), 2), 0x0020);
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_ID), 8), 0x0020_0300_0400_b0c5);
    write(&bar, dispi(VBE_DISPI_INDEX_ENABLE), 8, 0x0000_0400_0000_0041);
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_ENABLE), 2), 0x41);
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_VIRT_WIDTH), 2), 0x0400);
}

#[test]
fn the_extended_size_register_reads_eight_and_ignores_writes() {
    let bar = registers();
    assert_eq!(read(&bar, BOCHS_QEXT_OFFSET, 4), 8);
    write(&bar, BOCHS_QEXT_OFFSET, 4, 0x100);
    assert_eq!(read(&bar, BOCHS_QEXT_OFFSET, 4), 8);
}

#[test]
fn the_byte_order_register_accepts_only_its_two_markers() {
    let bar = registers();
    assert_eq!(read(&bar, BYTEORDER, 4), 0x1e1e_1e1e);
    // Other values keep the byte order, whichever it is.
    for ignored in [0, 0x1234_5678, 0x1e1e_1ebe, 0xffff_ffff] {
        write(&bar, BYTEORDER, 4, ignored);
        assert_eq!(read(&bar, BYTEORDER, 4), u64::from(PCI_VGA_QEXT_LITTLE_ENDIAN), "{ignored:#x}");
    }
    write(&bar, BYTEORDER, 4, 0xbebe_bebe);
    assert_eq!(read(&bar, BYTEORDER, 4), 0xbebe_bebe);
    for ignored in [0, 0x1234_5678, 0xbebe_be1e, 0xffff_ffff] {
        write(&bar, BYTEORDER, 4, ignored);
        assert_eq!(read(&bar, BYTEORDER, 4), u64::from(PCI_VGA_QEXT_BIG_ENDIAN), "{ignored:#x}");
    }
    write(&bar, BYTEORDER, 4, 0x1e1e_1e1e);
    assert_eq!(read(&bar, BYTEORDER, 4), u64::from(PCI_VGA_QEXT_LITTLE_ENDIAN));
}

#[test]
fn extended_registers_take_only_dword_accesses() {
    let bar = registers();
    assert_eq!(read(&bar, BOCHS_QEXT_OFFSET, 1), 0);
    assert_eq!(read(&bar, BYTEORDER, 2), 0);
    // The halves of a big-endian marker, written as words, change nothing.
    write(&bar, BYTEORDER, 2, 0xbebe);
    write(&bar, BYTEORDER + 2, 2, 0xbebe);
    assert_eq!(read(&bar, BYTEORDER, 4), u64::from(PCI_VGA_QEXT_LITTLE_ENDIAN));
    // A qword is two dwords: size (ignored) and byte order.
    write(&bar, BOCHS_QEXT_OFFSET, 8, u64::from(PCI_VGA_QEXT_BIG_ENDIAN) << 32);
    assert_eq!(read(&bar, BOCHS_QEXT_OFFSET, 8), (u64::from(PCI_VGA_QEXT_BIG_ENDIAN) << 32) | 8);
}

#[test]
fn reset_keeps_the_mode_and_the_byte_order_as_qemu_does() {
    let bar = registers();
    write(&bar, dispi(VBE_DISPI_INDEX_XRES), 2, 1024);
    write(&bar, dispi(VBE_DISPI_INDEX_ENABLE), 2, 0x41);
    write(&bar, BYTEORDER, 4, u64::from(PCI_VGA_QEXT_BIG_ENDIAN));
    bar.reset();
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_XRES), 2), 1024);
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_ENABLE), 2), 0x41);
    assert_eq!(read(&bar, BYTEORDER, 4), u64::from(PCI_VGA_QEXT_BIG_ENDIAN));
    assert_eq!(read(&bar, dispi(VBE_DISPI_INDEX_ID), 2), 0xb0c5);
}

#[test]
fn accesses_past_the_bar_read_zero_and_do_not_panic() {
    let bar = registers();
    let mut data = [0xee; 8];
    bar.read(BOCHS_MMIO_SIZE - 4, &mut data);
    assert_eq!(data, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    bar.read(u64::MAX, &mut data);
    assert_eq!(data, [0; 8]);
    bar.write(u64::MAX - 1, &[1; 8]);
}
