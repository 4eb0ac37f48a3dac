//! Checks of a bochs-display (1234:1111) through a guest's eyes: config cycles, its VRAM BAR0
//! (plain memory: under vfio, QEMU's own mapping of our buffer serves every access) and its
//! register BAR2 (under vfio, each access traps in QEMU and is emulated by our device). Each
//! check runs against QEMU's own bochs-display (the ground truth) and against ours; the
//! expected values are QEMU's (its `hw/display/bochs-display.c`).

use pci::catalogue::{BOCHS_DISPI_OFFSET, BOCHS_MMIO_SIZE, BOCHS_QEXT_OFFSET, BOCHS_VRAM_SIZE};
use pci::catalogue::{PCI_VGA_QEXT_REG_BYTEORDER, PCI_VGA_QEXT_REG_SIZE};
use pci::catalogue::{VBE_DISPI_INDEX_BPP, VBE_DISPI_INDEX_ID, VBE_DISPI_INDEX_VIDEO_MEMORY_64K, VBE_DISPI_INDEX_XRES};
use pci::regs;

use super::config::{assert_bar_shapes, Bar};
use super::machine::{Backend, Device, Machine, Options};

/// BAR2 offset of the 16-bit dispi register `index`.
const fn dispi(index: u16) -> u64 {
    BOCHS_DISPI_OFFSET + 2 * index as u64
}

const DISPI_ID: u64 = dispi(VBE_DISPI_INDEX_ID);
const DISPI_XRES: u64 = dispi(VBE_DISPI_INDEX_XRES);
const DISPI_BPP: u64 = dispi(VBE_DISPI_INDEX_BPP);
const DISPI_VIDEO_MEMORY_64K: u64 = dispi(VBE_DISPI_INDEX_VIDEO_MEMORY_64K);
const QEXT_SIZE: u64 = BOCHS_QEXT_OFFSET + PCI_VGA_QEXT_REG_SIZE;
const QEXT_BYTEORDER: u64 = BOCHS_QEXT_OFFSET + PCI_VGA_QEXT_REG_BYTEORDER;
/// BAR2: a byte between the register blocks (Linux's blanking register on std VGA).
const HOLE: u64 = 0x400;

/// QEMU's values, written out: the dispi ID and the byte-order markers.
const DISPI_ID5: u16 = 0xb0c5;
const BYTEORDER_LITTLE: u32 = 0x1e1e_1e1e;
const BYTEORDER_BIG: u32 = 0xbebe_bebe;

/// Starts QEMU, places and enables the BARs; returns VRAM's and the registers' addresses.
fn start(backend: Backend) -> (Machine, u64, u64) {
    let mut m = Machine::start(Device::BochsDisplay, backend, Options::default());
    let bars = m.place_and_enable();
    let (Some(vram), Some(mmio)) = (bars[0], bars[2]) else {
        panic!("bochs-display has BAR0 and BAR2: {bars:?}");
    };
    (m, vram.addr, mmio.addr)
}

/// A pattern that differs at every offset of a short run.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed)).collect()
}

/// Vendor and device ID, class and revision by config cycles; BAR0 16 MiB of prefetchable
/// VRAM, BAR2 4 KiB of registers; the dispi ID and VRAM size registers.
pub fn identity(backend: Backend) {
    let mut m = Machine::start(Device::BochsDisplay, backend, Options::default());
    assert_eq!(m.config_read(4, regs::VENDOR_ID), 0x1111_1234);
    assert_eq!(m.config_read(4, regs::REVISION_ID), 0x0380_0002, "class 0380, revision 2");
    let bars = m.place_and_enable();
    let expected =
        [Some(Bar::mem32(BOCHS_VRAM_SIZE, true)), None, Some(Bar::mem32(BOCHS_MMIO_SIZE, false)), None, None, None];
    assert_bar_shapes(&bars, &expected);
    let mmio = bars[2].map_or(0, |bar| bar.addr);
    assert_eq!(mmio, 0xe100_0000, "BAR2 follows the 16 MiB BAR0");
    assert_eq!(m.readw(mmio + DISPI_ID), DISPI_ID5);
    assert_eq!(m.readw(mmio + DISPI_VIDEO_MEMORY_64K), (BOCHS_VRAM_SIZE >> 16) as u16);
    assert_eq!(m.readl(mmio + QEXT_SIZE), 8);
}

/// VRAM is plain memory: stores of every width and qtest's block transfers (which split into
/// unaligned 8-byte accesses) read back exactly, up to the last byte of the BAR.
pub fn vram_is_plain_memory(backend: Backend) {
    let (mut m, vram, _) = start(backend);
    m.writeq(vram + 0x10, 0x0123_4567_89ab_cdef);
    assert_eq!(m.readq(vram + 0x10), 0x0123_4567_89ab_cdef);
    assert_eq!(m.readl(vram + 0x14), 0x0123_4567);
    assert_eq!(m.read(1, vram + 0x17), 0x01);
    m.writew(vram + 0x12, 0xbeef);
    assert_eq!(m.readq(vram + 0x10), 0x0123_4567_beef_cdef);

    let block = pattern(100, 0x41);
    m.b64write(vram + 0x1001, &block);
    assert_eq!(m.b64read(vram + 0x1001, block.len()), block);
    let around = m.read_bytes(vram + 0x1000, block.len() + 2);
    assert_eq!((around[0], around[block.len() + 1]), (0, 0), "nothing written around the block");
    assert_eq!(&around[1..=block.len()], &block[..]);

    let hex = pattern(24, 0x90);
    m.write_bytes(vram + 0x2003, &hex);
    assert_eq!(m.b64read(vram + 0x2003, hex.len()), hex);

    let last = vram + BOCHS_VRAM_SIZE - 8;
    m.writeq(last, 0xfeed_face_cafe_f00d);
    assert_eq!(m.readq(last), 0xfeed_face_cafe_f00d);
}

/// The registers behave as QEMU's: dispi registers store 16-bit values as written, the
/// byte-order register takes only its two markers, holes read all-ones.
pub fn registers_store_and_filter(backend: Backend) {
    let (mut m, _, mmio) = start(backend);
    m.writew(mmio + DISPI_XRES, 1024);
    m.writew(mmio + DISPI_BPP, 32);
    assert_eq!(m.readw(mmio + DISPI_XRES), 1024);
    assert_eq!(m.readl(mmio + DISPI_XRES + 2) >> 16, 32, "a 32-bit read covers two registers");
    assert_eq!(m.readw(mmio + DISPI_ID), DISPI_ID5, "ID reads 0xb0c5 whatever was written");

    assert_eq!(m.readl(mmio + QEXT_BYTEORDER), BYTEORDER_LITTLE);
    m.writel(mmio + QEXT_BYTEORDER, 0x1234_5678);
    assert_eq!(m.readl(mmio + QEXT_BYTEORDER), BYTEORDER_LITTLE, "any other value is ignored");
    m.writel(mmio + QEXT_BYTEORDER, BYTEORDER_BIG);
    assert_eq!(m.readl(mmio + QEXT_BYTEORDER), BYTEORDER_BIG);
    m.writel(mmio + QEXT_BYTEORDER, 0);
    assert_eq!(m.readl(mmio + QEXT_BYTEORDER), BYTEORDER_BIG);
    m.writel(mmio + QEXT_BYTEORDER, BYTEORDER_LITTLE);
    assert_eq!(m.readl(mmio + QEXT_BYTEORDER), BYTEORDER_LITTLE);

    assert_eq!(m.read(1, mmio + HOLE), 0xff);
    assert_eq!(m.readl(mmio + 0x608), u32::MAX);
}

/// With COMMAND.MEMORY clear neither BAR is in the guest's address space (reads give 0,
/// writes are lost); set again, VRAM and registers are as they were.
pub fn memory_decode_off_hides_both_bars(backend: Backend) {
    let (mut m, vram, mmio) = start(backend);
    let block = pattern(64, 7);
    m.b64write(vram, &block);
    m.writel(mmio + QEXT_BYTEORDER, BYTEORDER_BIG);
    m.command_clear(regs::COMMAND_MEMORY);
    assert_eq!(m.readq(vram), 0);
    assert_eq!(m.readw(mmio + DISPI_ID), 0);
    assert_eq!(m.readl(mmio + QEXT_BYTEORDER), 0);
    m.writeq(vram, u64::MAX);
    m.writel(mmio + QEXT_BYTEORDER, BYTEORDER_LITTLE);
    m.command_set(regs::COMMAND_MEMORY);
    assert_eq!(m.b64read(vram, block.len()), block, "VRAM intact, the write while off lost");
    assert_eq!(m.readw(mmio + DISPI_ID), DISPI_ID5);
    assert_eq!(m.readl(mmio + QEXT_BYTEORDER), BYTEORDER_BIG);
}

/// QMP `system_reset`: COMMAND cleared, BARs unassigned; bochs-display has no reset handler of
/// its own, so VRAM, the mode registers and the byte order survive.
pub fn system_reset_unassigns_the_bars_and_keeps_vram(backend: Backend) {
    let (mut m, vram, mmio) = start(backend);
    let block = pattern(40, 0xc3);
    m.b64write(vram + 0x8000, &block);
    m.writew(mmio + DISPI_XRES, 800);
    m.writel(mmio + QEXT_BYTEORDER, BYTEORDER_BIG);
    m.system_reset();
    assert_eq!(m.config_read(2, regs::COMMAND) & u32::from(regs::COMMAND_MEMORY), 0);
    assert_eq!(m.config_read(4, regs::base_address(0)) & !0xf, 0, "BAR0 is unassigned after reset");
    assert_eq!(m.config_read(4, regs::base_address(2)) & !0xf, 0, "BAR2 is unassigned after reset");
    assert_eq!(m.readw(mmio + DISPI_ID), 0, "nothing decodes at the old address");
    let bars = m.place_and_enable();
    assert_eq!((bars[0].map(|b| b.addr), bars[2].map(|b| b.addr)), (Some(vram), Some(mmio)));
    assert_eq!(m.b64read(vram + 0x8000, block.len()), block);
    assert_eq!(m.readw(mmio + DISPI_XRES), 800);
    assert_eq!(m.readl(mmio + QEXT_BYTEORDER), BYTEORDER_BIG);
}
