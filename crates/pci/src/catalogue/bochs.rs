//! QEMU's `bochs-display` (`hw/display/bochs-display.c`): a display controller without VGA,
//! the device whose register BAR the series' own test exports and maps.
//!
//! BAR0 is the framebuffer (VRAM, prefetchable RAM, sized like QEMU's `vgamem`); BAR2 is 4 KiB
//! of registers, [`BochsDisplayRegisters`]:
//!
//! | offset | block | accesses |
//! |---|---|---|
//! | 0x000..0x100 | EDID, read-only | 1 to 4 bytes, served byte by byte |
//! | 0x500..0x516 | bochs "dispi" registers, 11 x 16-bit | 1 to 4 bytes; a byte access acts on its whole register |
//! | 0x600..0x608 | QEMU extended registers: size, byte order | 4 bytes only; 1 and 2 read zero and drop writes |
//! | elsewhere | nothing | reads all-ones, writes ignored |
//!
//! An 8-byte access is served as two 4-byte halves. Unlike QEMU's standard VGA, bochs-display
//! stores dispi writes verbatim: no validation, no clamping, no side effect on write (its scanout
//! reads the registers at each refresh and rejects a mode that does not fit). The ID register
//! always reads [`VBE_DISPI_ID5`] and [`VBE_DISPI_INDEX_VIDEO_MEMORY_64K`] reads the VRAM size in
//! 64 KiB units; both ignore writes.
//!
//! Reset: QEMU's bochs-display has no reset handler, so a PCI reset leaves every register (and
//! the byte order) as it was; an enabled mode stays enabled.

use std::fmt;
use std::sync::{Arc, Mutex};

use super::edid::{self, EDID_LEN};
use super::mmio::{AccessRules, Block, BlockMap, LockedBlockMap};
use super::{empty_bars, VENDOR_ID};
use crate::error::PciError;
use crate::irq::InterruptSpec;
use crate::spec::{BarSpec, DeviceSpec};

/// Device ID of QEMU's bochs-display (QEMU's `PCI_DEVICE_ID_QEMU_VGA`, shared with std VGA).
pub const BOCHS_DEVICE_ID: u16 = 0x1111;
/// Revision of bochs-display: 2, the first that has the extended registers.
pub const BOCHS_REVISION: u8 = 0x02;
/// Class code of bochs-display: display controller, other.
pub const BOCHS_CLASS_CODE: u32 = 0x03_80_00;
/// Default VRAM (BAR0) size, QEMU's default `vgamem`.
pub const BOCHS_VRAM_SIZE: u64 = 16 << 20;
/// Smallest VRAM size QEMU accepts.
pub const BOCHS_VRAM_MIN: u64 = 4 << 20;
/// Largest VRAM size QEMU accepts.
pub const BOCHS_VRAM_MAX: u64 = 256 << 20;
/// Size of the register BAR2. QEMU: `PCI_VGA_MMIO_SIZE`.
pub const BOCHS_MMIO_SIZE: u64 = 4 << 10;

/// Offset of the EDID within BAR2.
pub const BOCHS_EDID_OFFSET: u64 = 0x000;
/// Offset of the dispi registers within BAR2; register `i` is at `0x500 + 2 * i`.
pub const BOCHS_DISPI_OFFSET: u64 = 0x500;
/// Offset of QEMU's extended registers within BAR2.
pub const BOCHS_QEXT_OFFSET: u64 = 0x600;

/// dispi index: identification, reads [`VBE_DISPI_ID5`].
pub const VBE_DISPI_INDEX_ID: u16 = 0x0;
/// dispi index: horizontal resolution.
pub const VBE_DISPI_INDEX_XRES: u16 = 0x1;
/// dispi index: vertical resolution.
pub const VBE_DISPI_INDEX_YRES: u16 = 0x2;
/// dispi index: bits per pixel.
pub const VBE_DISPI_INDEX_BPP: u16 = 0x3;
/// dispi index: enable ([`VBE_DISPI_ENABLED`] and flags).
pub const VBE_DISPI_INDEX_ENABLE: u16 = 0x4;
/// dispi index: bank.
pub const VBE_DISPI_INDEX_BANK: u16 = 0x5;
/// dispi index: virtual width (the line length in pixels).
pub const VBE_DISPI_INDEX_VIRT_WIDTH: u16 = 0x6;
/// dispi index: virtual height.
pub const VBE_DISPI_INDEX_VIRT_HEIGHT: u16 = 0x7;
/// dispi index: horizontal offset of the visible area.
pub const VBE_DISPI_INDEX_X_OFFSET: u16 = 0x8;
/// dispi index: vertical offset of the visible area.
pub const VBE_DISPI_INDEX_Y_OFFSET: u16 = 0x9;
/// dispi index: VRAM size in 64 KiB units, read-only.
pub const VBE_DISPI_INDEX_VIDEO_MEMORY_64K: u16 = 0xa;
/// Number of dispi registers.
pub const VBE_DISPI_INDEX_NB: u16 = 0xb;
/// What the ID register reads.
pub const VBE_DISPI_ID5: u16 = 0xb0c5;
/// ENABLE bit 0: scan out the mode.
pub const VBE_DISPI_ENABLED: u16 = 0x01;

/// Extended register: size of the extended register block, reads 8.
pub const PCI_VGA_QEXT_REG_SIZE: u64 = 0x0;
/// Extended register: framebuffer byte order.
pub const PCI_VGA_QEXT_REG_BYTEORDER: u64 = 0x4;
/// Byte order value: little-endian (the power-on value).
pub const PCI_VGA_QEXT_LITTLE_ENDIAN: u32 = 0x1e1e_1e1e;
/// Byte order value: big-endian.
pub const PCI_VGA_QEXT_BIG_ENDIAN: u32 = 0xbebe_bebe;

/// Length of the extended register block, what [`PCI_VGA_QEXT_REG_SIZE`] reads.
const QEXT_SIZE: u64 = 8;

const EDID_BLOCK: usize = 0;
const DISPI_BLOCK: usize = 1;
const QEXT_BLOCK: usize = 2;

const BLOCKS: &[Block] = &[
    Block {
        start: BOCHS_EDID_OFFSET,
        len: EDID_LEN as u64,
        rules: AccessRules { valid_min: 1, valid_max: 4, impl_min: 1, impl_max: 1 },
    },
    Block {
        start: BOCHS_DISPI_OFFSET,
        len: 2 * VBE_DISPI_INDEX_NB as u64,
        rules: AccessRules { valid_min: 1, valid_max: 4, impl_min: 2, impl_max: 2 },
    },
    Block {
        start: BOCHS_QEXT_OFFSET,
        len: QEXT_SIZE,
        rules: AccessRules { valid_min: 4, valid_max: 4, impl_min: 1, impl_max: 4 },
    },
];

/// QEMU's bochs-display with the default 16 MiB of VRAM.
#[must_use]
pub fn bochs_display() -> DeviceSpec {
    build(BOCHS_VRAM_SIZE)
}

/// QEMU's bochs-display with `vgamem` bytes of VRAM, rounded up to a power of two as QEMU does.
///
/// # Errors
///
/// [`PciError::VgamemOutOfRange`] (`EINVAL`) below 4 MiB or above 256 MiB, the sizes QEMU refuses.
pub fn bochs_display_with_vgamem(vgamem: u64) -> Result<DeviceSpec, PciError> {
    if !(BOCHS_VRAM_MIN..=BOCHS_VRAM_MAX).contains(&vgamem) {
        return Err(PciError::VgamemOutOfRange { size: vgamem });
    }
    Ok(build(vgamem.next_power_of_two()))
}

fn build(vram_size: u64) -> DeviceSpec {
    let mut bars = empty_bars();
    bars[0] = Some(BarSpec::ram(vram_size).with_prefetchable());
    let registers = Arc::new(BochsDisplayRegisters::new(vram_size));
    bars[2] = Some(BarSpec::registers(BOCHS_MMIO_SIZE, registers));
    DeviceSpec {
        name: "bochs-display".into(),
        vendor_id: VENDOR_ID,
        device_id: BOCHS_DEVICE_ID,
        revision: BOCHS_REVISION,
        class_code: BOCHS_CLASS_CODE,
        bars,
        // QEMU's bochs-display has no interrupt at all: pin 0, no MSI.
        interrupts: InterruptSpec::NONE,
    }
}

/// The registers and their content.
pub(crate) struct BochsState {
    /// The EDID blob; immutable.
    edid: [u8; EDID_LEN],
    /// What [`VBE_DISPI_INDEX_VIDEO_MEMORY_64K`] reads; immutable.
    vram_64k: u16,
    /// The stored dispi registers, by index; entries 0 (ID) and 10 (VRAM size) are stored but
    /// never read back.
    dispi: [u16; VBE_DISPI_INDEX_NB as usize],
    /// Whether the byte-order register selects big-endian.
    big_endian: bool,
}

impl BlockMap for BochsState {
    fn bar_len(&self) -> u64 {
        BOCHS_MMIO_SIZE
    }

    fn blocks(&self) -> &'static [Block] {
        BLOCKS
    }

    fn block_read(&mut self, block: usize, offset: u64, _size: u64) -> u64 {
        match block {
            // Served byte by byte: `offset` is one EDID byte.
            EDID_BLOCK => self.edid.get(offset as usize).map_or(0, |b| u64::from(*b)),
            // Served 16 bits at a time at any offset; a byte's register is its offset / 2.
            DISPI_BLOCK => match (offset / 2) as u16 {
                VBE_DISPI_INDEX_ID => u64::from(VBE_DISPI_ID5),
                VBE_DISPI_INDEX_VIDEO_MEMORY_64K => u64::from(self.vram_64k),
                index => self.dispi.get(usize::from(index)).map_or(0, |v| u64::from(*v)),
            },
            QEXT_BLOCK => match offset {
                PCI_VGA_QEXT_REG_SIZE => QEXT_SIZE,
                PCI_VGA_QEXT_REG_BYTEORDER if self.big_endian => u64::from(PCI_VGA_QEXT_BIG_ENDIAN),
                PCI_VGA_QEXT_REG_BYTEORDER => u64::from(PCI_VGA_QEXT_LITTLE_ENDIAN),
                // Accesses are 4 bytes wide and aligned, so nothing else arrives here.
                _ => 0,
            },
            _ => 0,
        }
    }

    fn block_write(&mut self, block: usize, offset: u64, _size: u64, value: u64) {
        match block {
            DISPI_BLOCK => {
                // ID and VIDEO_MEMORY_64K take the write too, but their reads answer constants.
                if let Some(register) = self.dispi.get_mut((offset / 2) as usize) {
                    // Stored verbatim; the handler is 16 bits wide, so a byte arrives zero-extended.
                    *register = value as u16;
                }
            }
            QEXT_BLOCK if offset == PCI_VGA_QEXT_REG_BYTEORDER => match value as u32 {
                PCI_VGA_QEXT_LITTLE_ENDIAN => self.big_endian = false,
                PCI_VGA_QEXT_BIG_ENDIAN => self.big_endian = true,
                _ => {}
            },
            // The EDID and the size register are read-only.
            _ => {}
        }
    }
}

/// The register BAR2 of bochs-display (see the module documentation).
pub struct BochsDisplayRegisters {
    /// Protected by: its own mutex; each access holds it throughout, so accesses are atomic.
    state: Mutex<BochsState>,
}

impl BochsDisplayRegisters {
    /// The registers of a bochs-display with `vram_size` bytes of VRAM, at power-on: dispi
    /// registers zero, byte order little-endian.
    #[must_use]
    pub fn new(vram_size: u64) -> Self {
        let vram_64k = u16::try_from(vram_size >> 16).unwrap_or(u16::MAX);
        let state =
            BochsState { edid: edid::generate(), vram_64k, dispi: [0; VBE_DISPI_INDEX_NB as usize], big_endian: false };
        Self { state: Mutex::new(state) }
    }
}

impl fmt::Debug for BochsDisplayRegisters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock_map();
        f.debug_struct("BochsDisplayRegisters")
            .field("vram_64k", &state.vram_64k)
            .field("dispi", &state.dispi)
            .field("big_endian", &state.big_endian)
            .finish_non_exhaustive()
    }
}

/// A register BAR through [`LockedBlockMap`]; its reset keeps every register, since QEMU's
/// bochs-display registers no reset handler.
impl LockedBlockMap for BochsDisplayRegisters {
    type Map = BochsState;

    fn map(&self) -> &Mutex<BochsState> {
        &self.state
    }
}

#[cfg(test)]
#[path = "bochs_tests.rs"]
mod tests;
