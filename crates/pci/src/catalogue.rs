//! Ready-made device descriptions.
//!
//! `edu` and `edu-plus` are shaped like QEMU's teaching device (`hw/misc/edu.c`), the device the
//! series' standalone test runs against (spec §9.1): a 1 MiB register BAR0 whose first register
//! reads a magic number and whose second reads back the inverse of what was written, and, for
//! `edu-plus`, a 64 MiB prefetchable 64-bit RAM BAR1. `multi-bar` has RAM BARs of several sizes;
//! `tiny-odd` deliberately fails validation, to show the error a bad BAR produces.
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

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::spec::{BarSpec, DeviceSpec, RegisterBar, NUM_BARS};

/// Vendor ID of QEMU's emulated test devices, used by every device here.
pub const VENDOR_ID: u16 = 0x1234;

/// Device ID of QEMU's edu device.
pub const EDU_DEVICE_ID: u16 = 0x11e8;
/// Revision of QEMU's edu device.
pub const EDU_REVISION: u8 = 0x10;
/// Class code of QEMU's edu device: base class 0x00, subclass 0xff ("unclassified").
pub const EDU_CLASS_CODE: u32 = 0x00_ff_00;
/// Size of edu's register BAR0.
pub const EDU_BAR0_SIZE: u64 = 1 << 20;
/// Size of edu-plus's RAM BAR1.
pub const EDU_PLUS_BAR1_SIZE: u64 = 64 << 20;

/// edu register: identification, read-only, reads [`EDU_ID_MAGIC`].
pub const EDU_REG_ID: u64 = 0x00;
/// edu register: liveness check; reads back the bitwise inverse of the last value written.
pub const EDU_REG_LIVENESS: u64 = 0x04;
/// Value of [`EDU_REG_ID`]: major version 1, minor 0, and `0xed`.
pub const EDU_ID_MAGIC: u32 = 0x0100_00ed;

/// Device ID of `multi-bar` (this model's own).
pub const MULTI_BAR_DEVICE_ID: u16 = 0xb001;
/// Device ID of `tiny-odd` (this model's own).
pub const TINY_ODD_DEVICE_ID: u16 = 0xb002;
/// Class code of the RAM-only devices: memory controller, other.
pub const MEMORY_CLASS_CODE: u32 = 0x05_80_00;

/// The names [`by_name`] knows, in catalogue order.
#[must_use]
pub fn names() -> &'static [&'static str] {
    &["edu", "edu-plus", "multi-bar", "tiny-odd"]
}

/// Builds the catalogue device called `name`, or `None` for an unknown name.
#[must_use]
pub fn by_name(name: &str) -> Option<DeviceSpec> {
    match name {
        "edu" => Some(edu()),
        "edu-plus" => Some(edu_plus()),
        "multi-bar" => Some(multi_bar()),
        "tiny-odd" => Some(tiny_odd()),
        _ => None,
    }
}

/// QEMU's edu: BAR0 is 1 MiB of registers ([`EduRegisters`]), 32-bit, non-prefetchable.
#[must_use]
pub fn edu() -> DeviceSpec {
    let mut bars = empty_bars();
    bars[0] = Some(BarSpec::registers(EDU_BAR0_SIZE, Arc::new(EduRegisters::new(EDU_BAR0_SIZE))));
    DeviceSpec {
        name: "edu".into(),
        vendor_id: VENDOR_ID,
        device_id: EDU_DEVICE_ID,
        revision: EDU_REVISION,
        class_code: EDU_CLASS_CODE,
        bars,
    }
}

/// edu plus BAR1: 64 MiB of RAM, 64-bit and prefetchable (it takes slots 1 and 2).
#[must_use]
pub fn edu_plus() -> DeviceSpec {
    let mut spec = edu();
    spec.name = "edu-plus".into();
    spec.bars[1] = Some(BarSpec::ram(EDU_PLUS_BAR1_SIZE).with_64bit().with_prefetchable());
    spec
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
    }
}

fn empty_bars() -> [Option<BarSpec>; NUM_BARS] {
    Default::default()
}

/// The edu register file behind BAR0.
///
/// Every byte is modelled on its own, so accesses of any width and alignment combine naturally:
/// - bytes 0x00..0x04 ([`EDU_REG_ID`]) read [`EDU_ID_MAGIC`] and ignore writes;
/// - bytes 0x04..0x08 ([`EDU_REG_LIVENESS`]) store what is written and read it inverted;
/// - every other byte is plain scratch storage.
///
/// Deviation: QEMU's edu also has a factorial unit, interrupt and DMA registers; here those
/// offsets are scratch storage.
pub struct EduRegisters {
    /// Raw stored bytes, one per BAR byte (the liveness bytes hold the uninverted value).
    /// Protected by: its own mutex; each access takes it once, so accesses are atomic.
    bytes: Mutex<Vec<u8>>,
}

impl EduRegisters {
    /// A register file of `size` bytes, all stored bytes zero (so liveness reads all-ones).
    #[must_use]
    pub fn new(size: u64) -> Self {
        // A size past the address space cannot be stored; keep what can be.
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        Self { bytes: Mutex::new(vec![0; len]) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic elsewhere cannot leave the bytes inconsistent: every byte is valid on its own.
        self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for EduRegisters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EduRegisters").field("size", &self.lock().len()).finish_non_exhaustive()
    }
}

/// Where BAR byte `at` falls in the register map.
enum EduByte {
    /// Byte `n` of the identification register.
    Id(usize),
    /// A liveness byte (stored, read inverted).
    Liveness,
    /// Scratch storage.
    Scratch,
}

fn classify(at: usize) -> EduByte {
    const ID: usize = EDU_REG_ID as usize;
    const LIVENESS: usize = EDU_REG_LIVENESS as usize;
    // Both registers are 32 bits wide: ID covers bytes 0..4, liveness 4..8.
    match at {
        ID..4 => EduByte::Id(at - ID),
        LIVENESS..8 => EduByte::Liveness,
        _ => EduByte::Scratch,
    }
}

/// The byte offsets of an access starting at `offset`, as indexes; `None` once they no longer
/// fit (only a caller breaking the [`RegisterBar`] contract gets there).
fn byte_offsets(offset: u64) -> impl Iterator<Item = Option<usize>> {
    (0..).map(move |i| offset.checked_add(i).and_then(|at| usize::try_from(at).ok()))
}

impl RegisterBar for EduRegisters {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let bytes = self.lock();
        for (at, out) in byte_offsets(offset).zip(data.iter_mut()) {
            // Outside the BAR the caller broke the contract: read zeros rather than panic.
            let Some(at) = at else {
                *out = 0;
                continue;
            };
            *out = match (classify(at), bytes.get(at).copied()) {
                (EduByte::Id(n), _) => EDU_ID_MAGIC.to_le_bytes()[n],
                (EduByte::Liveness, Some(stored)) => !stored,
                (EduByte::Scratch, Some(stored)) => stored,
                (_, None) => 0,
            };
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let mut bytes = self.lock();
        for (at, &value) in byte_offsets(offset).zip(data) {
            // Outside the BAR the write is dropped.
            let Some(at) = at else { continue };
            if matches!(classify(at), EduByte::Id(_)) {
                continue;
            }
            if let Some(stored) = bytes.get_mut(at) {
                *stored = value;
            }
        }
    }

    fn reset(&self) {
        self.lock().fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PciError;

    fn read_u32(bar: &dyn RegisterBar, offset: u64) -> u32 {
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
    fn multi_bar_has_page_only_and_huge_page_capable_bars() {
        let spec = multi_bar();
        let sizes: Vec<(usize, u64)> = spec.bars().map(|(i, bar)| (i, bar.size)).collect();
        assert_eq!(sizes, [(0, 16 << 10), (1, 4 << 10), (2, 2 << 20), (4, 32 << 20)]);
        assert!(spec.bars().all(|(_, bar)| bar.is_ram()));
        let huge = 2 << 20;
        assert!(spec.bars().any(|(_, bar)| bar.size < huge));
        assert!(spec.bars().any(|(_, bar)| bar.size % huge == 0));
    }

    #[test]
    fn edu_id_register_reads_the_magic_and_ignores_writes() {
        let edu = EduRegisters::new(EDU_BAR0_SIZE);
        assert_eq!(read_u32(&edu, EDU_REG_ID), 0x0100_00ed);
        edu.write(EDU_REG_ID, &0xdead_beef_u32.to_le_bytes());
        assert_eq!(read_u32(&edu, EDU_REG_ID), EDU_ID_MAGIC);
        let mut byte = [0];
        edu.read(EDU_REG_ID, &mut byte);
        assert_eq!(byte, [0xed]);
    }

    #[test]
    fn edu_liveness_register_reads_back_the_inverse() {
        let edu = EduRegisters::new(EDU_BAR0_SIZE);
        assert_eq!(read_u32(&edu, EDU_REG_LIVENESS), 0xffff_ffff);
        edu.write(EDU_REG_LIVENESS, &0x1234_5678_u32.to_le_bytes());
        assert_eq!(read_u32(&edu, EDU_REG_LIVENESS), !0x1234_5678);
        // An 8-byte read at 0 sees both registers.
        let mut data = [0; 8];
        edu.read(0, &mut data);
        assert_eq!(u64::from_le_bytes(data), (u64::from(!0x1234_5678_u32) << 32) | 0x0100_00ed);
    }

    #[test]
    fn edu_other_offsets_are_scratch_storage_and_reset_clears_them() {
        let edu = EduRegisters::new(EDU_BAR0_SIZE);
        edu.write(0x100, &0x0102_0304_0506_0708_u64.to_le_bytes());
        edu.write(EDU_BAR0_SIZE - 2, &[0xaa, 0xbb]);
        let mut data = [0; 8];
        edu.read(0x100, &mut data);
        assert_eq!(u64::from_le_bytes(data), 0x0102_0304_0506_0708);
        edu.write(EDU_REG_LIVENESS, &[1, 2, 3, 4]);
        edu.reset();
        edu.read(0x100, &mut data);
        assert_eq!(data, [0; 8]);
        assert_eq!(read_u32(&edu, EDU_REG_LIVENESS), 0xffff_ffff);
        assert_eq!(read_u32(&edu, EDU_REG_ID), EDU_ID_MAGIC);
    }

    #[test]
    fn edu_accesses_past_the_bar_read_zero_and_do_not_panic() {
        let edu = EduRegisters::new(0x10);
        edu.write(0xe, &[1, 2, 3, 4]);
        let mut data = [0xff; 4];
        edu.read(0xe, &mut data);
        assert_eq!(data, [1, 2, 0, 0]);
        edu.read(u64::MAX - 1, &mut data);
        assert_eq!(data, [0; 4]);
    }

    #[test]
    fn edu_registers_are_shared_safely_between_threads() {
        let edu = Arc::new(EduRegisters::new(EDU_BAR0_SIZE));
        let threads: Vec<_> = (0..4_u64)
            .map(|t| {
                let edu = Arc::clone(&edu);
                std::thread::spawn(move || {
                    for i in 0..256_u64 {
                        let offset = 0x1000 * (t + 1) + 8 * i;
                        edu.write(offset, &(t * 1000 + i).to_le_bytes());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        for t in 0..4_u64 {
            for i in 0..256_u64 {
                let mut data = [0; 8];
                edu.read(0x1000 * (t + 1) + 8 * i, &mut data);
                assert_eq!(u64::from_le_bytes(data), t * 1000 + i);
            }
        }
    }
}
