//! Errors of the PCI function model.
//!
//! Every variant maps to exactly one errno through [`PciError::errno`]. All of them are bad input
//! (a malformed address, an impossible BAR layout, a config access outside the space), so they are
//! all `EINVAL`, as the kernel answers a malformed config-space access or device description.

use rustix::io::Errno;

use crate::spec::{MAX_BAR32_SIZE, MAX_BAR_SIZE};

/// Why an operation of the PCI function model failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PciError {
    /// A PCI address string does not have the `[dddd:]bb:dd.f` shape.
    #[error("invalid PCI address {input:?}: expected [domain:]bus:device.function in hex")]
    BdfSyntax {
        /// The rejected text.
        input: String,
    },

    /// A PCI device number above 0x1f (a bus has 32 device slots).
    #[error("PCI device number {device:#04x} is out of range (at most 0x1f)")]
    BdfDeviceOutOfRange {
        /// The rejected device number.
        device: u8,
    },

    /// A PCI function number above 7 (a device has 8 functions).
    #[error("PCI function number {function} is out of range (at most 7)")]
    BdfFunctionOutOfRange {
        /// The rejected function number.
        function: u8,
    },

    /// A device description with every BAR slot empty.
    #[error("device {name:?} has no BARs")]
    NoBars {
        /// The device's name.
        name: String,
    },

    /// A class code that does not fit the 24-bit class register.
    #[error("class code {class_code:#x} does not fit in 24 bits")]
    ClassCodeTooWide {
        /// The rejected class code.
        class_code: u32,
    },

    /// A BAR whose size is not a power of two; PCI sizes a BAR by its lowest writable address bit,
    /// so no other size can be described. A RAM BAR of a whole but non-power-of-two number of pages
    /// (12 KiB, say) lands here.
    #[error("BAR{index} size {size:#x} is not a power of two")]
    BarSizeNotPowerOfTwo {
        /// The BAR index (0..=5).
        index: usize,
        /// The rejected size in bytes.
        size: u64,
    },

    /// A BAR smaller than 16 bytes, the smallest memory BAR PCI can describe (bits 3:0 are flags).
    #[error("BAR{index} size {size:#x} is below the PCI minimum of 0x10 bytes")]
    BarTooSmall {
        /// The BAR index (0..=5).
        index: usize,
        /// The rejected size in bytes.
        size: u64,
    },

    /// A RAM BAR smaller than a page: it could never be mapped, since a mapping covers whole pages.
    #[error("BAR{index} size {size:#x} is not a multiple of the 4 KiB page size, so RAM cannot back it")]
    RamBarNotPageMultiple {
        /// The BAR index (0..=5).
        index: usize,
        /// The rejected size in bytes.
        size: u64,
    },

    /// A 32-bit BAR above 2 GiB: its highest address bit (31) is the largest size it can decode.
    #[error("BAR{index} size {size:#x} exceeds {max:#x}, the largest a 32-bit BAR can decode", max = MAX_BAR32_SIZE)]
    Bar32TooLarge {
        /// The BAR index (0..=5).
        index: usize,
        /// The rejected size in bytes.
        size: u64,
    },

    /// A BAR above the largest size this model supports.
    #[error("BAR{index} size {size:#x} exceeds {max:#x}, the largest BAR this model supports", max = MAX_BAR_SIZE)]
    BarTooLarge {
        /// The BAR index (0..=5).
        index: usize,
        /// The rejected size in bytes.
        size: u64,
    },

    /// A 64-bit BAR in the last slot, which has no next slot for its upper address half.
    #[error("BAR{index} cannot be 64-bit: a 64-bit BAR takes two slots and BAR{index} is the last")]
    Bar64InLastSlot {
        /// The BAR index (always 5).
        index: usize,
    },

    /// A 64-bit BAR whose next slot is described too; that slot holds its upper address half.
    #[error("BAR{index} is 64-bit, so BAR{upper} must be empty (it holds the upper address half)")]
    Bar64UpperSlotTaken {
        /// The 64-bit BAR's index.
        index: usize,
        /// The slot that should have been empty.
        upper: usize,
    },

    /// A config-space access whose width is not 1, 2 or 4 bytes.
    #[error("config access of {len} bytes is not 1, 2 or 4 bytes wide")]
    ConfigAccessWidth {
        /// The rejected access width in bytes.
        len: usize,
    },

    /// A config-space access that does not fit inside the 4096-byte space.
    #[error("config access of {len} bytes at {offset:#x} ends past the 0x1000-byte config space")]
    ConfigAccessOutOfRange {
        /// The byte offset of the access.
        offset: u64,
        /// The access width in bytes.
        len: usize,
    },

    /// A bochs-display VRAM size outside the range QEMU accepts for `vgamem`.
    #[error("bochs-display vgamem {size:#x} is outside 0x400000..=0x10000000 (4 MiB to 256 MiB)")]
    VgamemOutOfRange {
        /// The rejected size in bytes.
        size: u64,
    },

    /// An interrupt description PCI cannot express (see [`crate::InterruptSpec`]).
    #[error("invalid interrupts: {reason}")]
    InvalidInterrupts {
        /// Which rule the description breaks.
        reason: &'static str,
    },

    /// A power-state name that is not one of `D0`, `D1`, `D2`, `D3hot`.
    #[error("unknown power state {input:?} (expected D0, D1, D2 or D3hot)")]
    InvalidPowerState {
        /// The rejected text.
        input: String,
    },
}

impl PciError {
    /// The errno this error stands for.
    ///
    /// Every cause is malformed input, so every variant is `EINVAL`; the match is written out
    /// so that a new variant has to choose its errno.
    #[must_use]
    pub fn errno(&self) -> Errno {
        match self {
            Self::BdfSyntax { .. }
            | Self::BdfDeviceOutOfRange { .. }
            | Self::BdfFunctionOutOfRange { .. }
            | Self::NoBars { .. }
            | Self::ClassCodeTooWide { .. }
            | Self::BarSizeNotPowerOfTwo { .. }
            | Self::BarTooSmall { .. }
            | Self::RamBarNotPageMultiple { .. }
            | Self::Bar32TooLarge { .. }
            | Self::BarTooLarge { .. }
            | Self::Bar64InLastSlot { .. }
            | Self::Bar64UpperSlotTaken { .. }
            | Self::ConfigAccessWidth { .. }
            | Self::ConfigAccessOutOfRange { .. }
            | Self::VgamemOutOfRange { .. }
            | Self::InvalidInterrupts { .. }
            | Self::InvalidPowerState { .. } => Errno::INVAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_name_the_bar_and_have_no_trailing_period() {
        let errors = [
            PciError::BarSizeNotPowerOfTwo { index: 2, size: 0x3000 },
            PciError::Bar32TooLarge { index: 0, size: 1 << 32 },
            PciError::Bar64UpperSlotTaken { index: 0, upper: 1 },
            PciError::ConfigAccessOutOfRange { offset: 0xffe, len: 4 },
        ];
        for error in errors {
            let message = error.to_string();
            assert!(!message.ends_with('.'), "{message}");
            assert_eq!(error.errno(), Errno::INVAL);
        }
        assert_eq!(
            PciError::BarSizeNotPowerOfTwo { index: 2, size: 0x3000 }.to_string(),
            "BAR2 size 0x3000 is not a power of two"
        );
        assert_eq!(
            PciError::Bar32TooLarge { index: 0, size: 1 << 32 }.to_string(),
            "BAR0 size 0x100000000 exceeds 0x80000000, the largest a 32-bit BAR can decode"
        );
    }
}
