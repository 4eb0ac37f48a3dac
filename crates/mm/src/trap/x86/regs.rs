//! The x86-64 register set an emulated instruction reads and writes.

use iced_x86::Register;

/// Indices into [`X86Regs::gpr`]: the hardware encoding order of the
/// general registers (the number a `ModRM` or REX field names), which is not
/// the order of `ucontext_t`'s `gregs` (`REG_R8` first).
pub mod gpr {
    /// `rax`.
    pub const RAX: usize = 0;
    /// `rcx`.
    pub const RCX: usize = 1;
    /// `rdx`.
    pub const RDX: usize = 2;
    /// `rbx`.
    pub const RBX: usize = 3;
    /// `rsp`.
    pub const RSP: usize = 4;
    /// `rbp`.
    pub const RBP: usize = 5;
    /// `rsi`.
    pub const RSI: usize = 6;
    /// `rdi`.
    pub const RDI: usize = 7;
    /// `r8`; `r9`…`r15` follow as 9…15.
    pub const R8: usize = 8;
}

/// Carry flag (`X86_EFLAGS_CF`).
pub const EFLAGS_CF: u64 = 1 << 0;
/// Parity flag (`X86_EFLAGS_PF`).
pub const EFLAGS_PF: u64 = 1 << 2;
/// Auxiliary carry flag (`X86_EFLAGS_AF`).
pub const EFLAGS_AF: u64 = 1 << 4;
/// Zero flag (`X86_EFLAGS_ZF`).
pub const EFLAGS_ZF: u64 = 1 << 6;
/// Sign flag (`X86_EFLAGS_SF`).
pub const EFLAGS_SF: u64 = 1 << 7;
/// Direction flag (`X86_EFLAGS_DF`): string instructions count down.
pub const EFLAGS_DF: u64 = 1 << 10;
/// Overflow flag (`X86_EFLAGS_OF`).
pub const EFLAGS_OF: u64 = 1 << 11;
/// The six status flags an arithmetic instruction defines.
pub const EFLAGS_STATUS: u64 = EFLAGS_CF | EFLAGS_PF | EFLAGS_AF | EFLAGS_ZF | EFLAGS_SF | EFLAGS_OF;

/// The user-visible state an emulated access may read or change: the
/// general registers, `rip`, `rflags`, and the 128-bit vector registers
/// with the upper halves of their 256-bit forms.
///
/// A plain value so that the signal handler can fill it from `ucontext_t`
/// (`uc_mcontext.gregs` for the general registers, `rip` and `eflags`;
/// `fpregs->_xmm` for XMM0–15; the XSAVE area's AVX component for
/// `ymm_hi`) and copy it back after emulation. `ymm_hi` matters because a
/// VEX-encoded 128-bit load zeroes bits 255:128 of its destination; a
/// handler on a machine without AVX leaves it zero and never sees a VEX
/// instruction reach memory (it raises `#UD` first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct X86Regs {
    /// `rax`…`r15`, indexed as in [`gpr`].
    pub gpr: [u64; 16],
    /// The instruction pointer: the trapping instruction on entry, where to
    /// resume after emulation.
    pub rip: u64,
    /// `rflags`.
    pub rflags: u64,
    /// XMM0–15 (bits 127:0 of YMM0–15).
    pub xmm: [u128; 16],
    /// Bits 255:128 of YMM0–15.
    pub ymm_hi: [u128; 16],
}

/// Where a general register operand lives: its index in [`X86Regs::gpr`],
/// the bit it starts at (8 for `ah`…`bh`) and its width in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GprSlot {
    index: usize,
    shift: u32,
    size: usize,
}

/// Locates `reg`, or `None` when it is not a general register.
fn gpr_slot(reg: Register) -> Option<GprSlot> {
    if !reg.is_gpr() {
        return None;
    }
    let number = reg.number();
    let size = reg.size();
    // iced numbers the byte registers al…bl 0–3, ah…bh 4–7, spl…dil 8–11,
    // r8b…r15b 12–19; the legacy high-byte registers alias bits 15:8 of
    // rax…rbx, and spl…r15b follow at 4–15 in encoding order.
    let (index, shift) = match (size, number) {
        (1, 4..=7) => (number - 4, 8),
        (1, 8..) => (number - 4, 0),
        _ => (number, 0),
    };
    (index < 16).then_some(GprSlot { index, shift, size })
}

/// A mask of `size` bytes' worth of low bits (`size` ≤ 8).
pub(super) fn mask(size: usize) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

impl X86Regs {
    /// The value of general register `reg`, zero-extended from its width;
    /// `None` when `reg` is not a general register.
    pub fn read_gpr(&self, reg: Register) -> Option<u64> {
        let slot = gpr_slot(reg)?;
        Some((self.gpr[slot.index] >> slot.shift) & mask(slot.size))
    }

    /// Writes the low bits of `value` to general register `reg` as the
    /// processor does: a 32-bit destination zero-extends into the whole
    /// 64-bit register, an 8- or 16-bit one leaves the other bits alone.
    /// Returns `false` (and changes nothing) when `reg` is not a general
    /// register.
    pub fn write_gpr(&mut self, reg: Register, value: u64) -> bool {
        let Some(slot) = gpr_slot(reg) else {
            return false;
        };
        let old = self.gpr[slot.index];
        self.gpr[slot.index] = match slot.size {
            4 => value & mask(4),
            8 => value,
            size => {
                let field = mask(size) << slot.shift;
                (old & !field) | ((value << slot.shift) & field)
            }
        };
        true
    }

    /// The number (0–15) of vector register `reg` when it is one of
    /// XMM0–15.
    pub(super) fn xmm_index(reg: Register) -> Option<usize> {
        (reg.is_xmm() && reg.number() < 16).then(|| reg.number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_registers_address_the_right_bits() {
        let mut regs = X86Regs::default();
        regs.gpr[gpr::RAX] = 0x1122_3344_5566_7788;
        regs.gpr[gpr::RSP] = 0xaaaa_aaaa_aaaa_aaaa;
        assert_eq!(regs.read_gpr(Register::AL), Some(0x88));
        assert_eq!(regs.read_gpr(Register::AH), Some(0x77));
        assert_eq!(regs.read_gpr(Register::SPL), Some(0xaa));
        assert!(regs.write_gpr(Register::AH, 0x1ff));
        assert_eq!(regs.gpr[gpr::RAX], 0x1122_3344_5566_ff88);
        assert!(regs.write_gpr(Register::SPL, 0x01));
        assert_eq!(regs.gpr[gpr::RSP], 0xaaaa_aaaa_aaaa_aa01);
        assert!(regs.write_gpr(Register::R15L, 0x5a));
        assert_eq!(regs.gpr[15], 0x5a);
        assert!(regs.write_gpr(Register::DIL, 0x7e));
        assert_eq!(regs.gpr[gpr::RDI], 0x7e);
        assert!(regs.write_gpr(Register::BH, 0x12));
        assert_eq!(regs.gpr[gpr::RBX], 0x1200);
    }

    #[test]
    fn a_32_bit_write_zero_extends_and_a_16_bit_write_merges() {
        let mut regs = X86Regs { gpr: [u64::MAX; 16], ..X86Regs::default() };
        assert!(regs.write_gpr(Register::R9D, 0x1234_5678));
        assert_eq!(regs.gpr[9], 0x1234_5678);
        assert!(regs.write_gpr(Register::CX, 0xbeef));
        assert_eq!(regs.gpr[gpr::RCX], 0xffff_ffff_ffff_beef);
        assert!(regs.write_gpr(Register::R12, 7));
        assert_eq!(regs.gpr[12], 7);
        assert_eq!(regs.read_gpr(Register::R9W), Some(0x5678));
    }

    #[test]
    fn non_general_registers_are_refused() {
        let mut regs = X86Regs::default();
        assert_eq!(regs.read_gpr(Register::XMM0), None);
        assert!(!regs.write_gpr(Register::ES, 1));
        assert!(!regs.write_gpr(Register::RIP, 1));
        assert_eq!(X86Regs::xmm_index(Register::XMM15), Some(15));
        assert_eq!(X86Regs::xmm_index(Register::XMM16), None);
        assert_eq!(X86Regs::xmm_index(Register::YMM1), None);
        assert_eq!(regs, X86Regs::default());
    }
}
