//! Ready-made device descriptions.
//!
//! - `edu` is QEMU's teaching device (`hw/misc/edu.c`), the device the series' standalone test
//!   runs against (spec §9.1): a 1 MiB register BAR0 with its identification, liveness,
//!   factorial, interrupt and DMA registers ([`EduRegisters`]).
//! - `edu-plus` adds a 64 MiB prefetchable 64-bit RAM BAR1; its BAR0 is a simplified edu
//!   ([`EduPlusRegisters`]: identification and liveness over scratch storage).
//! - `bochs-display` is QEMU's display controller (`hw/display/bochs-display.c`): a VRAM BAR0
//!   and a 4 KiB register BAR2 with EDID, the bochs dispi registers and QEMU's extended
//!   registers ([`BochsDisplayRegisters`]).
//! - `multi-bar` has RAM BARs of several sizes; `tiny-odd` deliberately fails validation, to
//!   show the error a bad BAR produces.
//!
//! Each function builds a fresh description with its own register state.
//!
//! # Examples
//!
//! ```
//! for name in pci::catalogue::names() {
//!     let spec = pci::catalogue::by_name(name).unwrap();
//!     assert_eq!(spec.validate().is_ok(), *name != "tiny-odd");
//! }
//! ```

mod bochs;
mod edid;
mod edu;
mod edu_dma;
mod edu_plus;
mod mmio;

use std::sync::Arc;

pub use self::bochs::*;
pub use self::edid::{EDID_LEN, EDID_MONITOR_NAME, EDID_PREFERRED_HEIGHT, EDID_PREFERRED_WIDTH};
pub use self::edu::*;
pub use self::edu_plus::EduPlusRegisters;
use crate::irq::InterruptSpec;
use crate::spec::{BarSpec, DeviceSpec, RegisterBar, NUM_BARS};

/// Vendor ID of QEMU's emulated devices, used by every device here.
pub const VENDOR_ID: u16 = 0x1234;

/// Device ID of QEMU's edu device.
pub const EDU_DEVICE_ID: u16 = 0x11e8;
/// Revision of QEMU's edu device.
pub const EDU_REVISION: u8 = 0x10;
/// Class code of QEMU's edu device: base class 0x00, subclass 0xff ("unclassified").
pub const EDU_CLASS_CODE: u32 = 0x00_ff_00;
/// Size of edu-plus's RAM BAR1.
pub const EDU_PLUS_BAR1_SIZE: u64 = 64 << 20;

/// Device ID of `multi-bar` (this model's own).
pub const MULTI_BAR_DEVICE_ID: u16 = 0xb001;
/// Device ID of `tiny-odd` (this model's own).
pub const TINY_ODD_DEVICE_ID: u16 = 0xb002;
/// Class code of the RAM-only devices: memory controller, other.
pub const MEMORY_CLASS_CODE: u32 = 0x05_80_00;

/// The names [`by_name`] knows, in catalogue order.
#[must_use]
pub fn names() -> &'static [&'static str] {
    &["edu", "edu-plus", "bochs-display", "multi-bar", "tiny-odd"]
}

/// Builds the catalogue device called `name`, or `None` for an unknown name.
#[must_use]
pub fn by_name(name: &str) -> Option<DeviceSpec> {
    match name {
        "edu" => Some(edu()),
        "edu-plus" => Some(edu_plus()),
        "bochs-display" => Some(bochs_display()),
        "multi-bar" => Some(multi_bar()),
        "tiny-odd" => Some(tiny_odd()),
        _ => None,
    }
}

/// QEMU's edu: BAR0 is 1 MiB of registers ([`EduRegisters`]), 32-bit, non-prefetchable; it
/// interrupts on `INTA#` or through an MSI capability of one vector with a 64-bit address
/// ([`EDU_INTERRUPTS`]).
#[must_use]
pub fn edu() -> DeviceSpec {
    let mut spec = edu_with(Arc::new(EduRegisters::new()), "edu");
    spec.interrupts = EDU_INTERRUPTS;
    spec
}

/// edu-plus: BAR0 is the simplified edu ([`EduPlusRegisters`]), BAR1 64 MiB of RAM, 64-bit and
/// prefetchable (it takes slots 1 and 2). Its registers never interrupt, so it declares no pin
/// and no MSI.
#[must_use]
pub fn edu_plus() -> DeviceSpec {
    let mut spec = edu_with(Arc::new(EduPlusRegisters::new(EDU_BAR0_SIZE)), "edu-plus");
    spec.bars[1] = Some(BarSpec::ram(EDU_PLUS_BAR1_SIZE).with_64bit().with_prefetchable());
    spec
}

fn edu_with(registers: Arc<dyn RegisterBar>, name: &str) -> DeviceSpec {
    let mut bars = empty_bars();
    bars[0] = Some(BarSpec::registers(EDU_BAR0_SIZE, registers));
    DeviceSpec {
        name: name.into(),
        vendor_id: VENDOR_ID,
        device_id: EDU_DEVICE_ID,
        revision: EDU_REVISION,
        class_code: EDU_CLASS_CODE,
        bars,
        interrupts: InterruptSpec::NONE,
    }
}

/// RAM BARs of several sizes, covering each mapping granularity:
/// - BAR0: 16 KiB, 32-bit: four 4 KiB pages, too small for a 2 MiB page;
/// - BAR1: 4 KiB, 32-bit: the smallest mappable BAR, one page;
/// - BAR2: 2 MiB, 64-bit: exactly one 2 MiB page;
/// - BAR4: 32 MiB, 64-bit, prefetchable: sixteen 2 MiB pages.
#[must_use]
pub fn multi_bar() -> DeviceSpec {
    let mut bars = empty_bars();
    bars[0] = Some(BarSpec::ram(16 << 10));
    bars[1] = Some(BarSpec::ram(4 << 10));
    bars[2] = Some(BarSpec::ram(2 << 20).with_64bit());
    bars[4] = Some(BarSpec::ram(32 << 20).with_64bit().with_prefetchable());
    DeviceSpec {
        name: "multi-bar".into(),
        vendor_id: VENDOR_ID,
        device_id: MULTI_BAR_DEVICE_ID,
        revision: 0,
        class_code: MEMORY_CLASS_CODE,
        bars,
        interrupts: InterruptSpec::NONE,
    }
}

/// A device that fails validation: BAR2 is 12 KiB of RAM, a whole number of pages but not a
/// power of two, so it is rejected with "BAR2 size 0x3000 is not a power of two".
#[must_use]
pub fn tiny_odd() -> DeviceSpec {
    let mut bars = empty_bars();
    bars[0] = Some(BarSpec::ram(16 << 10));
    bars[2] = Some(BarSpec::ram(12 << 10));
    DeviceSpec {
        name: "tiny-odd".into(),
        vendor_id: VENDOR_ID,
        device_id: TINY_ODD_DEVICE_ID,
        revision: 0,
        class_code: MEMORY_CLASS_CODE,
        bars,
        interrupts: InterruptSpec::NONE,
    }
}

pub(crate) fn empty_bars() -> [Option<BarSpec>; NUM_BARS] {
    Default::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PciError;

    /// A 32-bit read of a register BAR, for the tests of every catalogue module.
    pub(super) fn read_u32(bar: &dyn RegisterBar, offset: u64) -> u32 {
        let mut data = [0; 4];
        bar.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn every_catalogue_device_but_tiny_odd_validates() {
        for name in names() {
            let spec = by_name(name).unwrap();
            assert_eq!(spec.name, *name);
            if *name == "tiny-odd" {
                continue;
            }
            spec.validate().unwrap_or_else(|error| panic!("{name}: {error}"));
        }
        assert!(by_name("edu-minus").is_none());
    }

    #[test]
    fn tiny_odd_fails_with_the_non_power_of_two_message() {
        let error = tiny_odd().validate().unwrap_err();
        assert_eq!(error, PciError::BarSizeNotPowerOfTwo { index: 2, size: 0x3000 });
        assert_eq!(error.to_string(), "BAR2 size 0x3000 is not a power of two");
    }

    #[test]
    fn edu_plus_has_the_shape_of_the_series_test_device() {
        let spec = edu_plus();
        assert_eq!((spec.vendor_id, spec.device_id), (0x1234, 0x11e8));
        let bar0 = spec.bars[0].as_ref().unwrap();
        assert_eq!(bar0.size, 1 << 20);
        assert!(!bar0.is_64bit && !bar0.prefetchable && bar0.register_bar().is_some());
        let bar1 = spec.bars[1].as_ref().unwrap();
        assert_eq!(bar1.size, 64 << 20);
        assert!(bar1.is_64bit && bar1.prefetchable && bar1.is_ram());
        assert!(spec.bars[2..].iter().all(Option::is_none));
    }

    #[test]
    fn edu_has_qemus_identity_and_one_register_bar() {
        let spec = edu();
        assert_eq!((spec.vendor_id, spec.device_id, spec.revision), (0x1234, 0x11e8, 0x10));
        assert_eq!(spec.class_code, 0x00_ff_00);
        let bar0 = spec.bars[0].as_ref().unwrap();
        assert_eq!(bar0.size, 1 << 20);
        assert!(!bar0.is_64bit && !bar0.prefetchable);
        let registers = bar0.register_bar().unwrap();
        assert_eq!(read_u32(registers.as_ref(), EDU_REG_ID), EDU_ID_MAGIC);
        // QEMU's edu, not edu-plus's scratch file: unassigned offsets read all-ones.
        assert_eq!(read_u32(registers.as_ref(), 0x100), u32::MAX);
        assert!(spec.bars[1..].iter().all(Option::is_none));
    }

    #[test]
    fn catalogue_devices_do_not_share_register_state() {
        let (a, b) = (edu(), edu());
        let bar = |spec: &DeviceSpec| Arc::clone(spec.bars[0].as_ref().unwrap().register_bar().unwrap());
        bar(&a).write(EDU_REG_LIVENESS, &1_u32.to_le_bytes());
        assert_eq!(read_u32(bar(&b).as_ref(), EDU_REG_LIVENESS), 0);
    }

    #[test]
    fn multi_bar_has_page_only_and_huge_page_capable_bars() {
        let spec = multi_bar();
        let sizes: Vec<(usize, u64)> = spec.bars().map(|(i, bar)| (i, bar.size)).collect();
        assert_eq!(sizes, [(0, 16 << 10), (1, 4 << 10), (2, 2 << 20), (4, 32 << 20)]);
        assert!(spec.bars().all(|(_, bar)| bar.is_ram()));
        let huge = 2 << 20;
        assert!(spec.bars().any(|(_, bar)| bar.size < huge));
        assert!(spec.bars().any(|(_, bar)| bar.size % huge == 0));
    }
}
