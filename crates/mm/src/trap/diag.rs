//! The diagnostic of an access the emulator will not perform.
//!
//! Built only on the refusal path and without allocation: the instruction
//! bytes and the mnemonic are copied into fixed arrays, so a signal handler
//! can keep the value and print it with `write(2)` from a stack buffer.

use std::fmt::{self, Write as _};

/// The longest x86 instruction, and so the most bytes a diagnostic keeps.
pub const MAX_INSN_LEN: usize = 15;
/// Room for a mnemonic; longer names are cut (none of the decoder's is).
const MNEMONIC_CAP: usize = 24;

/// Why an access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The bytes at the instruction pointer are not a valid instruction,
    /// or are cut short.
    Undecodable,
    /// A valid instruction outside the emulated set.
    NotEmulated,
    /// The faulting address is not on a device page: the trap is not ours.
    NotDevice,
    /// The memory operand computed from the registers does not cover the
    /// faulting address (or the instruction could not have faulted there).
    AddressMismatch {
        /// Where the operand's access starts, by the registers.
        computed: u64,
    },
    /// An FS- or GS-relative operand: its base lives outside the saved
    /// registers.
    SegmentBase,
    /// 32-bit addressing (the `0x67` prefix).
    AddressSize,
    /// A device access not aligned to its width (or, for 16 bytes, to the
    /// 8-byte halves it is split into; or a `movaps`-class access not
    /// aligned to 16, which the processor itself refuses).
    Misaligned {
        /// First byte of the access.
        addr: u64,
        /// Width in bytes.
        width: u8,
    },
    /// A device access that runs over the end of its page.
    CrossesPage {
        /// First byte of the access.
        addr: u64,
        /// Width in bytes.
        width: u8,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reason::Undecodable => f.write_str("undecodable instruction"),
            Reason::NotEmulated => f.write_str("instruction not emulated"),
            Reason::NotDevice => f.write_str("not a device page"),
            Reason::AddressMismatch { computed } => {
                write!(f, "operand address {computed:#x} does not cover the fault")
            }
            Reason::SegmentBase => f.write_str("fs/gs-relative operand"),
            Reason::AddressSize => f.write_str("32-bit addressing"),
            Reason::Misaligned { addr, width } => {
                write!(f, "misaligned {width}-byte access at {addr:#x}")
            }
            Reason::CrossesPage { addr, width } => {
                write!(f, "{width}-byte access at {addr:#x} crosses a page end")
            }
        }
    }
}

/// An access the emulator refused: what the signal handler prints in one
/// line before it raises SIGBUS.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Unsupported {
    /// Address of the instruction.
    pub ip: u64,
    /// The faulting address the trap reported.
    pub fault_addr: u64,
    /// Why.
    pub reason: Reason,
    bytes: [u8; MAX_INSN_LEN],
    len: u8,
    mnemonic: [u8; MNEMONIC_CAP],
    mnemonic_len: u8,
}

/// Collects formatted text into a fixed array, dropping what does not fit.
struct FixedBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for FixedBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if self.len == self.buf.len() {
                break;
            }
            self.buf[self.len] = b.to_ascii_lowercase();
            self.len += 1;
        }
        Ok(())
    }
}

impl Unsupported {
    /// A diagnostic for the instruction `bytes` (at most
    /// [`MAX_INSN_LEN`] are kept) at `ip`, naming it by the `Debug` form of
    /// `mnemonic` in lower case.
    pub fn new(ip: u64, fault_addr: u64, reason: Reason, bytes: &[u8], mnemonic: &dyn fmt::Debug) -> Unsupported {
        let mut kept = [0u8; MAX_INSN_LEN];
        let len = bytes.len().min(MAX_INSN_LEN);
        kept[..len].copy_from_slice(&bytes[..len]);
        let mut name = [0u8; MNEMONIC_CAP];
        let mut out = FixedBuf { buf: &mut name, len: 0 };
        // FixedBuf never fails; a Debug impl that does leaves a shorter name.
        let _ = write!(out, "{mnemonic:?}");
        let mnemonic_len = out.len as u8;
        Unsupported { ip, fault_addr, reason, bytes: kept, len: len as u8, mnemonic: name, mnemonic_len }
    }

    /// The instruction's bytes (as many as were available, at most 15).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The instruction's mnemonic in lower case (`"invalid"` when the
    /// bytes did not decode).
    pub fn mnemonic(&self) -> &str {
        // Only ASCII is ever stored (lower-cased Debug text cut at a byte
        // boundary of an ASCII name), so this cannot fail in practice.
        std::str::from_utf8(&self.mnemonic[..usize::from(self.mnemonic_len)]).unwrap_or("?")
    }
}

impl fmt::Debug for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unsupported")
            .field("ip", &format_args!("{:#x}", self.ip))
            .field("fault_addr", &format_args!("{:#x}", self.fault_addr))
            .field("reason", &self.reason)
            .field("bytes", &self.bytes())
            .field("mnemonic", &self.mnemonic())
            .finish()
    }
}

/// One line: `ip 0x… (mnemonic, bytes 48 8b 07) accessing 0x…: reason`.
impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ip {:#x} ({}, bytes", self.ip, self.mnemonic())?;
        for b in self.bytes() {
            write!(f, " {b:02x}")?;
        }
        write!(f, ") accessing {:#x}: {}", self.fault_addr, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_address_bytes_mnemonic_and_reason() {
        let d = Unsupported::new(
            0x40_1000,
            0x7f00_0000_0500,
            Reason::NotEmulated,
            &[0x0f, 0x18, 0x07],
            &iced_x86::Mnemonic::Prefetcht0,
        );
        assert_eq!(d.bytes(), &[0x0f, 0x18, 0x07]);
        assert_eq!(d.mnemonic(), "prefetcht0");
        assert_eq!(
            d.to_string(),
            "ip 0x401000 (prefetcht0, bytes 0f 18 07) accessing 0x7f0000000500: \
             instruction not emulated"
        );
    }

    #[test]
    fn more_than_fifteen_bytes_keep_the_first_fifteen() {
        let bytes = [0x66u8; 20];
        let d = Unsupported::new(0, 0, Reason::Undecodable, &bytes, &"x");
        assert_eq!(d.bytes().len(), MAX_INSN_LEN);
    }

    #[test]
    fn a_long_name_is_cut_to_the_buffer() {
        let d = Unsupported::new(0, 0, Reason::Undecodable, &[], &"A".repeat(40));
        // Debug of a str adds quotes; the cut keeps the first 24 bytes.
        assert_eq!(d.mnemonic().len(), MNEMONIC_CAP);
        assert!(d.mnemonic().starts_with("\"aaa"));
    }
}
