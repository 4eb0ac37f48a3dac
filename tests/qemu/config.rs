//! PCI config cycles through the legacy ports 0xcf8/0xcfc, and BAR sizing and placement as
//! QEMU's libqos does them (QEMU v7.2.0 `tests/qtest/libqos/pci-pc.c`, `pci.c`).

use pci::regs;

use super::machine::Machine;

/// The device under test: bus 0, device 1, function 0 (q35 with `-nodefaults` puts the first
/// `-device` there).
pub const DEVFN: u8 = 1 << 3;

/// Config space: the interrupt pin (8 bits; 1 = INTA). Not among `pci::regs`: the model has
/// no interrupts of its own there.
pub const INTERRUPT_PIN: u64 = 0x3d;
/// The MSI capability's ID.
pub const CAP_ID_MSI: u8 = 0x05;

/// COMMAND: I/O, memory decoding and bus mastering, what libqos's `qpci_device_enable` sets.
pub const COMMAND_ENABLE: u16 = regs::COMMAND_IO | regs::COMMAND_MEMORY | regs::COMMAND_MASTER;

/// Where libqos starts placing memory BARs, and where 32-bit memory space ends.
const MMIO_START: u64 = 0xe000_0000;
const MMIO_END: u64 = 1 << 32;
/// Where libqos starts placing I/O BARs, and where the I/O space ends.
const PIO_START: u64 = 0xc000;
const PIO_END: u64 = 0x1_0000;

/// One placed BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Guest-physical (or port) address it now decodes at.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// An I/O BAR.
    pub io: bool,
    /// A memory BAR marked prefetchable.
    pub prefetchable: bool,
    /// A 64-bit memory BAR (it takes two slots).
    pub is_64bit: bool,
}

impl Bar {
    /// A 32-bit memory BAR of `size` bytes, as a layout expectation (`addr` is not compared by
    /// [`Bar::same_shape`]).
    pub fn mem32(size: u64, prefetchable: bool) -> Bar {
        Bar { addr: 0, size, io: false, prefetchable, is_64bit: false }
    }

    /// Equal but for the address.
    pub fn same_shape(&self, other: &Bar) -> bool {
        Bar { addr: 0, ..*self } == Bar { addr: 0, ..*other }
    }
}

/// Asserts that `bars` have the sizes and kinds of `expected`, wherever they were placed.
pub fn assert_bar_shapes(bars: &[Option<Bar>; 6], expected: &[Option<Bar>; 6]) {
    let shapes_match = bars.iter().zip(expected).all(|(bar, want)| match (bar, want) {
        (Some(bar), Some(want)) => bar.same_shape(want),
        (None, None) => true,
        _ => false,
    });
    assert!(shapes_match, "BARs {bars:?}, expected the shapes {expected:?}");
}

/// The 0xcf8 address of the dword holding config `offset`.
fn config_address(offset: u64) -> u32 {
    assert!(offset < 0x100, "config offset {offset:#x} is beyond what 0xcf8 reaches");
    (1 << 31) | u32::from(DEVFN) << 8 | (offset as u32 & !3)
}

impl Machine {
    /// A config read of `width` bytes (1, 2 or 4) at `offset`: the dword's address to 0xcf8,
    /// then the access at 0xcfc plus the offset's low bits.
    pub fn config_read(&mut self, width: u8, offset: u64) -> u32 {
        let data_port = 0xcfc + (offset & 3) as u16;
        let read = (|| {
            self.qtest().port_out(4, 0xcf8, config_address(offset))?;
            self.qtest().port_in(width, data_port)
        })();
        read.unwrap_or_else(|e| self.fail(&format!("config read of {width} bytes at {offset:#x}"), e))
    }

    /// A config write of `width` bytes (1, 2 or 4) at `offset`.
    pub fn config_write(&mut self, width: u8, offset: u64, value: u32) {
        let data_port = 0xcfc + (offset & 3) as u16;
        let written = (|| {
            self.qtest().port_out(4, 0xcf8, config_address(offset))?;
            self.qtest().port_out(width, data_port, value)
        })();
        written.unwrap_or_else(|e| self.fail(&format!("config write of {value:#x} at {offset:#x}"), e));
    }

    /// Sizes every BAR (write all-ones, read back; the size is the lowest set address bit)
    /// and places each at the next address aligned to its size: memory from 0xE0000000, I/O
    /// from 0xc000. Checks that each BAR reads back its address. Decoding is not enabled.
    pub fn place_bars(&mut self) -> [Option<Bar>; 6] {
        let mut bars = [None; 6];
        let (mut mmio, mut pio) = (MMIO_START, PIO_START);
        let mut index = 0;
        while index < 6 {
            let reg = regs::base_address(index);
            self.config_write(4, reg, u32::MAX);
            let low = self.config_read(4, reg);
            if low == 0 {
                index += 1;
                continue;
            }
            let io = low & regs::BASE_ADDRESS_SPACE_IO != 0;
            let is_64bit = !io && low & regs::BASE_ADDRESS_MEM_TYPE_MASK == regs::BASE_ADDRESS_MEM_TYPE_64;
            let flags = low & if io { 0x3 } else { !regs::BASE_ADDRESS_MEM_MASK };
            let mut mask = u64::from(low & !flags);
            if is_64bit {
                self.config_write(4, reg + 4, u32::MAX);
                mask |= u64::from(self.config_read(4, reg + 4)) << 32;
            } else {
                mask |= !u64::from(u32::MAX);
            }
            let size = 1_u64 << mask.trailing_zeros();
            let (cursor, end) = if io { (&mut pio, PIO_END) } else { (&mut mmio, MMIO_END) };
            let addr = cursor.next_multiple_of(size);
            assert!(addr + size <= end, "BAR{index} of {size:#x} bytes does not fit below {end:#x}");
            *cursor = addr + size;
            self.config_write(4, reg, addr as u32);
            if is_64bit {
                self.config_write(4, reg + 4, (addr >> 32) as u32);
            }
            assert_eq!(self.config_read(4, reg), addr as u32 | flags, "BAR{index} reads back its address");
            let prefetchable = !io && low & regs::BASE_ADDRESS_MEM_PREFETCH != 0;
            bars[index] = Some(Bar { addr, size, io, prefetchable, is_64bit });
            index += if is_64bit { 2 } else { 1 };
        }
        bars
    }

    /// Sets COMMAND's `bits` (I/O, memory, bus master...) and reads them back, as libqos's
    /// `qpci_device_enable` does: the device must keep them.
    pub fn command_set(&mut self, bits: u16) {
        let bits = u32::from(bits);
        let command = self.config_read(2, regs::COMMAND) | bits;
        self.config_write(2, regs::COMMAND, command);
        let now = self.config_read(2, regs::COMMAND);
        assert_eq!(now & bits, bits, "COMMAND {now:#06x} keeps the bits {bits:#x} just set");
    }

    /// Clears COMMAND's `bits` and reads back that they are clear.
    pub fn command_clear(&mut self, bits: u16) {
        let bits = u32::from(bits);
        let command = self.config_read(2, regs::COMMAND) & !bits;
        self.config_write(2, regs::COMMAND, command);
        let now = self.config_read(2, regs::COMMAND);
        assert_eq!(now & bits, 0, "COMMAND {now:#06x} has the bits {bits:#x} just cleared");
    }

    /// Places the BARs and enables I/O, memory and bus mastering; returns the BARs.
    pub fn place_and_enable(&mut self) -> [Option<Bar>; 6] {
        let bars = self.place_bars();
        self.command_set(COMMAND_ENABLE);
        bars
    }

    /// The offset of the capability with ID `id`, walking the standard list.
    pub fn find_capability(&mut self, id: u8) -> Option<u64> {
        if self.config_read(2, regs::STATUS) & u32::from(regs::STATUS_CAP_LIST) == 0 {
            return None;
        }
        let mut offset = u64::from(self.config_read(1, regs::CAPABILITY_LIST) & !3);
        // 48 capabilities fill the 192 bytes after the header: a longer walk is a loop.
        for _ in 0..48 {
            if offset == 0 {
                return None;
            }
            if self.config_read(1, offset) as u8 == id {
                return Some(offset);
            }
            offset = u64::from(self.config_read(1, offset + 1) & !3);
        }
        panic!("the capability list loops");
    }
}
