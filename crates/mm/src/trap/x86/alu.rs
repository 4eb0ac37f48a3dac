//! Arithmetic and logic with a memory operand: the read-modify-write forms
//! (`add`, `adc`, `sub`, `sbb`, `and`, `or`, `xor`, `inc`, `dec`, `not`,
//! `neg`, `xchg`: one device read, then one device write), the register
//! destination forms (`add r, m` …: one read), and `cmp`/`test` (one read,
//! flags only). The status flags are computed as the processor defines
//! them; the unit tests check them against the processor itself.

use iced_x86::{Instruction, Mnemonic, OpKind};

use super::operand::{self, Abort};
use super::regs::{mask, X86Regs, EFLAGS_AF, EFLAGS_CF, EFLAGS_OF, EFLAGS_PF, EFLAGS_SF, EFLAGS_STATUS, EFLAGS_ZF};
use super::Emulation;
use crate::trap::{DeviceAccess, Reason};

/// An arithmetic or logic operation on `size`-byte operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AluOp {
    Add,
    Adc,
    Sub,
    Sbb,
    And,
    Or,
    Xor,
    Inc,
    Dec,
    Not,
    Neg,
}

/// ZF, SF and PF of a `size`-byte result: the flags every operation here
/// derives from its result alone.
fn result_flags(result: u64, size: usize) -> u64 {
    let mut flags = 0;
    if result == 0 {
        flags |= EFLAGS_ZF;
    }
    if result >> (size * 8 - 1) & 1 == 1 {
        flags |= EFLAGS_SF;
    }
    // PF: even number of set bits in the low byte.
    if (result as u8).count_ones() % 2 == 0 {
        flags |= EFLAGS_PF;
    }
    flags
}

/// `a + b + carry` (or, when `subtract`, `a - b - carry`) on `size` bytes:
/// the result and its six status flags. For a subtraction CF is the
/// borrow.
fn add_sub(a: u64, b: u64, carry: u64, size: usize, subtract: bool) -> (u64, u64) {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let sign = 1u64 << (size * 8 - 1);
    let (r, carried, overflow) = if subtract {
        let r = a.wrapping_sub(b).wrapping_sub(carry) & m;
        // Overflow: the inputs' signs differ and the result's differs
        // from a's.
        (r, u128::from(a) < u128::from(b) + u128::from(carry), (a ^ b) & (a ^ r))
    } else {
        let wide = u128::from(a) + u128::from(b) + u128::from(carry);
        let r = wide as u64 & m;
        // Overflow: both inputs have one sign and the result the other.
        (r, wide > u128::from(m), (a ^ r) & (b ^ r))
    };
    let mut flags = result_flags(r, size);
    if carried {
        flags |= EFLAGS_CF;
    }
    // AF: a carry out of (or borrow into) bit 3, the same test either way.
    if (a ^ b ^ r) & 0x10 != 0 {
        flags |= EFLAGS_AF;
    }
    if overflow & sign != 0 {
        flags |= EFLAGS_OF;
    }
    (r, flags)
}

/// Computes `op` on `a` (the destination) and `b` (the source, ignored by
/// the one-operand operations) and returns the result and the new
/// `rflags`. The logic operations clear CF and OF and leave AF clear
/// (architecturally undefined); `inc`/`dec` keep CF; `not` changes no flag.
pub(super) fn compute(op: AluOp, a: u64, b: u64, size: usize, rflags: u64) -> (u64, u64) {
    let carry_in = rflags & EFLAGS_CF;
    let (r, flags) = match op {
        AluOp::Add => add_sub(a, b, 0, size, false),
        AluOp::Adc => add_sub(a, b, carry_in, size, false),
        AluOp::Sub => add_sub(a, b, 0, size, true),
        AluOp::Sbb => add_sub(a, b, carry_in, size, true),
        AluOp::And | AluOp::Or | AluOp::Xor => {
            let r = match op {
                AluOp::And => a & b,
                AluOp::Or => a | b,
                _ => a ^ b,
            } & mask(size);
            (r, result_flags(r, size))
        }
        AluOp::Inc | AluOp::Dec => {
            let (r, flags) = add_sub(a, 1, 0, size, op == AluOp::Dec);
            (r, (flags & !EFLAGS_CF) | carry_in)
        }
        AluOp::Neg => add_sub(0, a, 0, size, true),
        AluOp::Not => return (!a & mask(size), rflags),
    };
    (r, (rflags & !EFLAGS_STATUS) | flags)
}

/// The operation of `mnemonic` and whether it writes its result back
/// (`cmp` and `test` only set flags).
fn classify(mnemonic: Mnemonic) -> Option<(AluOp, bool)> {
    Some(match mnemonic {
        Mnemonic::Add => (AluOp::Add, true),
        Mnemonic::Adc => (AluOp::Adc, true),
        Mnemonic::Sub => (AluOp::Sub, true),
        Mnemonic::Sbb => (AluOp::Sbb, true),
        Mnemonic::And => (AluOp::And, true),
        Mnemonic::Or => (AluOp::Or, true),
        Mnemonic::Xor => (AluOp::Xor, true),
        Mnemonic::Inc => (AluOp::Inc, true),
        Mnemonic::Dec => (AluOp::Dec, true),
        Mnemonic::Not => (AluOp::Not, true),
        Mnemonic::Neg => (AluOp::Neg, true),
        Mnemonic::Cmp => (AluOp::Sub, false),
        Mnemonic::Test => (AluOp::And, false),
        _ => return None,
    })
}

/// Emulates one arithmetic, logic or exchange instruction with a memory
/// operand; returns where to resume. A `lock` prefix needs nothing more:
/// the caller holds the device's lock across the whole emulation.
///
/// Nothing in `regs` changes unless every device access succeeded; if the
/// write of a read-modify-write faults, the read has happened, as on a bus
/// that saw the read cycle.
pub(super) fn emulate(e: Emulation<'_>) -> Result<u64, Abort> {
    let Emulation { instr, regs, fault_addr, mem } = e;
    let (mem_op, addr, size) = operand::locate(instr, regs, fault_addr)?;
    if instr.mnemonic() == Mnemonic::Xchg {
        return xchg(instr, regs, mem_op, addr, size, mem);
    }
    let (op, writes) = classify(instr.mnemonic()).ok_or(Reason::NotEmulated)?;
    if mem_op == 0 {
        // Memory destination (or the first operand of cmp/test).
        let b = match op {
            AluOp::Inc | AluOp::Dec | AluOp::Not | AluOp::Neg => 0,
            _ => operand::source_value(instr, 1, regs)?,
        };
        let a = operand::read(mem, addr, size)? as u64;
        let (r, rflags) = compute(op, a, b, size, regs.rflags);
        if writes {
            operand::write(mem, addr, size, u128::from(r))?;
        }
        regs.rflags = rflags;
    } else {
        // Register destination, memory source: `add r, m`, `cmp r, m`.
        if instr.op0_kind() != OpKind::Register {
            return Err(Reason::NotEmulated.into());
        }
        let dest = instr.op0_register();
        let a = regs.read_gpr(dest).ok_or(Reason::NotEmulated)?;
        let b = operand::read(mem, addr, size)? as u64;
        let (r, rflags) = compute(op, a, b, size, regs.rflags);
        if writes {
            regs.write_gpr(dest, r);
        }
        regs.rflags = rflags;
    }
    Ok(instr.next_ip())
}

/// `xchg m, r` (either operand order): one read, one write, the old memory
/// value to the register; no flag changes.
fn xchg(
    instr: &Instruction,
    regs: &mut X86Regs,
    mem_op: u32,
    addr: u64,
    size: usize,
    mem: &mut dyn DeviceAccess,
) -> Result<u64, Abort> {
    let reg_op = 1 - mem_op.min(1);
    if instr.op_kind(reg_op) != OpKind::Register {
        return Err(Reason::NotEmulated.into());
    }
    let reg = instr.op_register(reg_op);
    let value = regs.read_gpr(reg).ok_or(Reason::NotEmulated)?;
    let old = operand::read(mem, addr, size)? as u64;
    operand::write(mem, addr, size, u128::from(value))?;
    regs.write_gpr(reg, old);
    Ok(instr.next_ip())
}
