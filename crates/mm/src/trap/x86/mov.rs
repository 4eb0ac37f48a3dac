//! Plain loads and stores through general registers: `mov` in its
//! register, immediate and `moffs` forms, `movnti`, and the widening loads
//! `movzx`, `movsx` and `movsxd`.

use iced_x86::{Mnemonic, OpKind};

use super::operand::{self, Abort};
use super::Emulation;
use crate::trap::Reason;

/// Sign-extends the low `size` bytes of `value` to 64 bits.
pub(super) fn sign_extend(value: u64, size: usize) -> u64 {
    let shift = 64 - 8 * size as u32;
    (((value << shift) as i64) >> shift) as u64
}

/// Emulates one load or store; returns where to resume.
///
/// Nothing in `regs` changes unless the device access succeeded.
pub(super) fn emulate(e: Emulation<'_>) -> Result<u64, Abort> {
    let Emulation { instr, regs, fault_addr, mem } = e;
    let (op, addr, size) = operand::locate(instr, regs, fault_addr)?;
    if op == 0 {
        // A store: `mov`/`movnti` m, r|imm. The source is read before the
        // access so that a segment-register source is refused without a
        // device side effect.
        if !matches!(instr.mnemonic(), Mnemonic::Mov | Mnemonic::Movnti) {
            return Err(Reason::NotEmulated.into());
        }
        let value = operand::source_value(instr, 1, regs)?;
        operand::write(mem, addr, size, u128::from(value))?;
        return Ok(instr.next_ip());
    }
    // A load into the general register named by operand 0.
    if instr.op0_kind() != OpKind::Register {
        return Err(Reason::NotEmulated.into());
    }
    let dest = instr.op0_register();
    if regs.read_gpr(dest).is_none() {
        return Err(Reason::NotEmulated.into());
    }
    let extend = match instr.mnemonic() {
        Mnemonic::Mov | Mnemonic::Movzx => false,
        Mnemonic::Movsx | Mnemonic::Movsxd => true,
        _ => return Err(Reason::NotEmulated.into()),
    };
    let loaded = operand::read(mem, addr, size)? as u64;
    let value = if extend { sign_extend(loaded, size) } else { loaded };
    // write_gpr applies the destination's width: a 32-bit destination
    // zero-extends, an 8/16-bit one merges.
    regs.write_gpr(dest, value);
    Ok(instr.next_ip())
}
