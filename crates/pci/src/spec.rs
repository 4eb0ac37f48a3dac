//! Device descriptions: what a function looks like before it exists.
//!
//! A [`DeviceSpec`] names the IDs and up to six BARs. A BAR is described, never stored: a RAM BAR's
//! bytes live in whatever memory the layers above provide; a register BAR is served by a
//! [`RegisterBar`] implementation, the emulated analogue of MMIO registers with side effects.

use std::fmt;
use std::sync::Arc;

use page::PAGE_SIZE;

use crate::dma::BusMaster;
use crate::error::PciError;
use crate::irq::{InterruptSpec, IrqLine};

/// Number of BAR slots in a type-0 header. Kernel: `PCI_STD_NUM_BARS`.
pub const NUM_BARS: usize = 6;

/// Smallest memory BAR PCI can describe: bits 3:0 of the register are flags, so the lowest
/// size bit is bit 4.
pub const MIN_BAR_SIZE: u64 = 16;

/// Largest 32-bit memory BAR: the size is the lowest writable address bit, and bit 31 is the
/// highest a 32-bit register has, so 2 GiB (not 4 GiB) is the PCI limit.
pub const MAX_BAR32_SIZE: u64 = 1 << 31;

/// Largest BAR of any kind this model accepts (1 TiB).
///
/// Deviation: PCI allows 64-bit BARs up to 2^63 bytes. Emulated BARs are held in memory-backed
/// files with one 1 TiB window per BAR, so larger ones are refused up front.
pub const MAX_BAR_SIZE: u64 = 1 << 40;

/// A BAR whose accesses are served by callbacks instead of memory (device registers).
///
/// Such a BAR is never mappable: every access has to reach the device model. Implementations are
/// shared between threads, so they keep their state behind a `Mutex` or atomics.
///
/// Preconditions (the caller checks them): `offset + data.len()` lies within the BAR, and
/// `data.len()` is 1, 2, 4 or 8. Implementations must still not panic if they are broken: reads
/// outside the registers return zeros, writes there are dropped. Multi-byte values are
/// little-endian, as on the PCI bus.
pub trait RegisterBar: Send + Sync + fmt::Debug {
    /// Reads `data.len()` bytes at byte `offset` within the BAR.
    fn read(&self, offset: u64, data: &mut [u8]);

    /// Writes `data` at byte `offset` within the BAR.
    fn write(&self, offset: u64, data: &[u8]);

    /// Returns the device-internal state to its power-on value, as a function-level reset does.
    /// Stateless register sets need not override it.
    fn reset(&self) {}

    /// Connects the registers to the function they serve: the line their interrupts go out on
    /// and the bus-master port their DMA goes through. [`crate::PciFunction::new`] calls it once
    /// per register BAR; a register set serves one function (attaching it again rewires it).
    /// Devices that neither interrupt nor master the bus need not override it.
    fn attach(&self, irq: &Arc<IrqLine>, dma: &Arc<BusMaster>) {
        let _ = (irq, dma);
    }
}

/// What serves a BAR's accesses.
#[derive(Debug, Clone)]
pub enum BarBacking {
    /// Plain memory: reads return what was written. The layer above stores the bytes and may map
    /// them into a process.
    Ram,
    /// Device registers served by callbacks. The layer above may map them, but never as memory:
    /// every access through a mapping traps and is emulated against these callbacks.
    Registers(Arc<dyn RegisterBar>),
}

/// Description of one memory BAR.
///
/// # Examples
///
/// ```
/// use pci::BarSpec;
///
/// let bar = BarSpec::ram(64 << 20).with_64bit().with_prefetchable();
/// assert!(bar.is_ram() && bar.is_64bit && bar.prefetchable);
/// ```
#[derive(Debug, Clone)]
pub struct BarSpec {
    /// Size in bytes: a power of two, at least 16, and for RAM a whole number of pages.
    pub size: u64,
    /// What serves accesses to the BAR.
    pub backing: BarBacking,
    /// Whether the BAR register pair is 64-bit (it then also takes the next slot).
    pub is_64bit: bool,
    /// Whether the BAR is marked prefetchable (reads have no side effects).
    pub prefetchable: bool,
}

impl BarSpec {
    /// A 32-bit, non-prefetchable RAM BAR of `size` bytes.
    #[must_use]
    pub fn ram(size: u64) -> Self {
        Self { size, backing: BarBacking::Ram, is_64bit: false, prefetchable: false }
    }

    /// A 32-bit, non-prefetchable BAR of `size` bytes served by `registers`.
    #[must_use]
    pub fn registers(size: u64, registers: Arc<dyn RegisterBar>) -> Self {
        Self { size, backing: BarBacking::Registers(registers), is_64bit: false, prefetchable: false }
    }

    /// The same BAR, made 64-bit.
    #[must_use]
    pub fn with_64bit(self) -> Self {
        Self { is_64bit: true, ..self }
    }

    /// The same BAR, marked prefetchable.
    #[must_use]
    pub fn with_prefetchable(self) -> Self {
        Self { prefetchable: true, ..self }
    }

    /// Whether plain memory backs the BAR.
    #[must_use]
    pub fn is_ram(&self) -> bool {
        matches!(self.backing, BarBacking::Ram)
    }

    /// The callbacks serving the BAR, if it is a register BAR.
    #[must_use]
    pub fn register_bar(&self) -> Option<&Arc<dyn RegisterBar>> {
        match &self.backing {
            BarBacking::Ram => None,
            BarBacking::Registers(registers) => Some(registers),
        }
    }

    /// Checks the rules that concern this BAR alone, in the order a reader would: size shape
    /// first, then the limits of the BAR's kind.
    fn validate(&self, index: usize) -> Result<(), PciError> {
        let size = self.size;
        if size < MIN_BAR_SIZE {
            return Err(PciError::BarTooSmall { index, size });
        }
        if !size.is_power_of_two() {
            return Err(PciError::BarSizeNotPowerOfTwo { index, size });
        }
        // A power of two at least one page long is a whole number of pages.
        if self.is_ram() && size < PAGE_SIZE {
            return Err(PciError::RamBarNotPageMultiple { index, size });
        }
        if !self.is_64bit && size > MAX_BAR32_SIZE {
            return Err(PciError::Bar32TooLarge { index, size });
        }
        if size > MAX_BAR_SIZE {
            return Err(PciError::BarTooLarge { index, size });
        }
        Ok(())
    }
}

/// Description of an emulated PCI function: IDs, class and BARs.
///
/// Cloning shares the register-BAR callbacks (they sit behind an `Arc`); build a fresh spec, e.g.
/// from [`crate::catalogue::by_name`], for an independent device.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// Short model name, e.g. `edu-plus`.
    pub name: String,
    /// PCI vendor ID.
    pub vendor_id: u16,
    /// PCI device ID.
    pub device_id: u16,
    /// Revision ID.
    pub revision: u8,
    /// Class code (base class, subclass, programming interface), 24 bits.
    pub class_code: u32,
    /// BAR slots 0..=5. The slot after a 64-bit BAR holds its upper half and must be `None`.
    pub bars: [Option<BarSpec>; NUM_BARS],
    /// How the function interrupts: its pin and MSI/MSI-X capabilities.
    pub interrupts: InterruptSpec,
}

impl DeviceSpec {
    /// Checks the description against the PCI rules and this model's limits.
    ///
    /// # Errors
    ///
    /// All `EINVAL`:
    /// - [`PciError::ClassCodeTooWide`]: `class_code` above 24 bits.
    /// - [`PciError::NoBars`]: every slot is empty.
    /// - [`PciError::BarTooSmall`]: a BAR below 16 bytes.
    /// - [`PciError::BarSizeNotPowerOfTwo`]: a size that is not a power of two (including a RAM
    ///   BAR of, say, 3 pages).
    /// - [`PciError::RamBarNotPageMultiple`]: a RAM BAR smaller than a 4 KiB page.
    /// - [`PciError::Bar32TooLarge`]: a 32-bit BAR above 2 GiB.
    /// - [`PciError::BarTooLarge`]: a BAR above [`MAX_BAR_SIZE`].
    /// - [`PciError::Bar64InLastSlot`]: BAR5 marked 64-bit.
    /// - [`PciError::Bar64UpperSlotTaken`]: a 64-bit BAR whose next slot is described.
    /// - [`PciError::InvalidInterrupts`]: a pin above 4, an MSI vector count that is not a power
    ///   of two up to 32, or an MSI-X table outside the limits or outside its BAR.
    pub fn validate(&self) -> Result<(), PciError> {
        if self.class_code > 0x00ff_ffff {
            return Err(PciError::ClassCodeTooWide { class_code: self.class_code });
        }
        if self.bars.iter().all(Option::is_none) {
            return Err(PciError::NoBars { name: self.name.clone() });
        }
        for (index, bar) in self.bars() {
            bar.validate(index)?;
            if bar.is_64bit {
                let upper = index + 1;
                if upper == NUM_BARS {
                    return Err(PciError::Bar64InLastSlot { index });
                }
                if self.bars[upper].is_some() {
                    return Err(PciError::Bar64UpperSlotTaken { index, upper });
                }
            }
        }
        self.interrupts.validate(&self.bars)
    }

    /// The described BARs with their indexes, in slot order.
    pub fn bars(&self) -> impl Iterator<Item = (usize, &BarSpec)> {
        self.bars.iter().enumerate().filter_map(|(index, bar)| bar.as_ref().map(|bar| (index, bar)))
    }

    /// Bytes of memory the RAM BARs need together (register BARs hold none);
    /// saturates rather than wrapping for a description that cannot be real.
    #[must_use]
    pub fn ram_bytes(&self) -> u64 {
        self.bars().filter(|(_, bar)| bar.is_ram()).fold(0, |sum, (_, bar)| sum.saturating_add(bar.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct NoRegisters;

    impl RegisterBar for NoRegisters {
        fn read(&self, _offset: u64, data: &mut [u8]) {
            data.fill(0);
        }
        fn write(&self, _offset: u64, _data: &[u8]) {}
    }

    fn spec_with(bars: [Option<BarSpec>; NUM_BARS]) -> DeviceSpec {
        DeviceSpec {
            name: "test".into(),
            vendor_id: 0x1234,
            device_id: 0x5678,
            revision: 0,
            class_code: 0xff_0000,
            bars,
            interrupts: InterruptSpec::NONE,
        }
    }

    fn one_bar(index: usize, bar: BarSpec) -> DeviceSpec {
        let mut bars: [Option<BarSpec>; NUM_BARS] = Default::default();
        bars[index] = Some(bar);
        spec_with(bars)
    }

    #[test]
    fn well_formed_bars_validate() {
        one_bar(0, BarSpec::ram(PAGE_SIZE)).validate().unwrap();
        one_bar(0, BarSpec::registers(16, Arc::new(NoRegisters))).validate().unwrap();
        one_bar(3, BarSpec::ram(MAX_BAR32_SIZE)).validate().unwrap();
        one_bar(4, BarSpec::ram(MAX_BAR_SIZE).with_64bit().with_prefetchable()).validate().unwrap();
    }

    #[test]
    fn a_device_without_bars_is_rejected() {
        let error = spec_with(Default::default()).validate().unwrap_err();
        assert_eq!(error, PciError::NoBars { name: "test".into() });
        assert_eq!(error.errno(), rustix::io::Errno::INVAL);
    }

    #[test]
    fn a_class_code_wider_than_24_bits_is_rejected() {
        let mut spec = one_bar(0, BarSpec::ram(PAGE_SIZE));
        spec.class_code = 0x0100_0000;
        assert_eq!(spec.validate().unwrap_err(), PciError::ClassCodeTooWide { class_code: 0x0100_0000 });
    }

    #[test]
    fn non_power_of_two_sizes_are_rejected_for_both_kinds() {
        let error = one_bar(2, BarSpec::ram(3 * PAGE_SIZE)).validate().unwrap_err();
        assert_eq!(error, PciError::BarSizeNotPowerOfTwo { index: 2, size: 0x3000 });
        assert_eq!(error.to_string(), "BAR2 size 0x3000 is not a power of two");
        let error = one_bar(1, BarSpec::ram(0x1800)).validate().unwrap_err();
        assert_eq!(error, PciError::BarSizeNotPowerOfTwo { index: 1, size: 0x1800 });
        let error = one_bar(0, BarSpec::registers(0x30, Arc::new(NoRegisters))).validate().unwrap_err();
        assert_eq!(error, PciError::BarSizeNotPowerOfTwo { index: 0, size: 0x30 });
    }

    #[test]
    fn bars_below_sixteen_bytes_are_rejected() {
        for size in [0, 1, 8] {
            let error = one_bar(0, BarSpec::registers(size, Arc::new(NoRegisters))).validate().unwrap_err();
            assert_eq!(error, PciError::BarTooSmall { index: 0, size });
        }
    }

    #[test]
    fn ram_bars_below_a_page_are_rejected_but_register_bars_are_not() {
        let error = one_bar(4, BarSpec::ram(0x800)).validate().unwrap_err();
        assert_eq!(error, PciError::RamBarNotPageMultiple { index: 4, size: 0x800 });
        assert!(error.to_string().contains("BAR4 size 0x800"));
        one_bar(4, BarSpec::registers(0x800, Arc::new(NoRegisters))).validate().unwrap();
    }

    #[test]
    fn thirty_two_bit_bars_stop_at_two_gib() {
        let error = one_bar(0, BarSpec::ram(MAX_BAR32_SIZE << 1)).validate().unwrap_err();
        assert_eq!(error, PciError::Bar32TooLarge { index: 0, size: 1 << 32 });
        one_bar(0, BarSpec::ram(MAX_BAR32_SIZE << 1).with_64bit()).validate().unwrap();
    }

    #[test]
    fn bars_above_the_model_limit_are_rejected() {
        let error = one_bar(0, BarSpec::ram(MAX_BAR_SIZE << 1).with_64bit()).validate().unwrap_err();
        assert_eq!(error, PciError::BarTooLarge { index: 0, size: 1 << 41 });
    }

    #[test]
    fn a_64bit_bar_needs_its_next_slot_empty() {
        let mut bars: [Option<BarSpec>; NUM_BARS] = Default::default();
        bars[0] = Some(BarSpec::ram(PAGE_SIZE).with_64bit());
        bars[1] = Some(BarSpec::ram(PAGE_SIZE));
        let error = spec_with(bars).validate().unwrap_err();
        assert_eq!(error, PciError::Bar64UpperSlotTaken { index: 0, upper: 1 });
        assert_eq!(error.to_string(), "BAR0 is 64-bit, so BAR1 must be empty (it holds the upper address half)");
    }

    #[test]
    fn bar5_cannot_be_64bit() {
        let error = one_bar(5, BarSpec::ram(PAGE_SIZE).with_64bit()).validate().unwrap_err();
        assert_eq!(error, PciError::Bar64InLastSlot { index: 5 });
    }

    #[test]
    fn bars_iterates_described_slots_in_order() {
        let mut bars: [Option<BarSpec>; NUM_BARS] = Default::default();
        bars[1] = Some(BarSpec::ram(PAGE_SIZE));
        bars[4] = Some(BarSpec::registers(16, Arc::new(NoRegisters)));
        let spec = spec_with(bars);
        let indexes: Vec<usize> = spec.bars().map(|(index, _)| index).collect();
        assert_eq!(indexes, [1, 4]);
        assert!(spec.bars[4].as_ref().unwrap().register_bar().is_some());
        assert!(spec.bars[1].as_ref().unwrap().register_bar().is_none());
    }
}
