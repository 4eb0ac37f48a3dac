//! The x86-64 implementation of [`TrapDecoder`]: decode with `iced-x86`,
//! check the operand against the fault, emulate, advance `rip`.
//!
//! Files: `regs` (the register set), `operand` (effective address, the
//! fault cross-check, the device-access policy), `mov` (general-register
//! loads and stores), `alu` (arithmetic and logic, with the flags), `sse`
//! (vector moves), `string` (`movs`/`stos`).

mod alu;
mod mov;
mod operand;
mod regs;
mod sse;
mod string;
#[cfg(test)]
mod tests;

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};

use self::operand::Abort;
pub use self::regs::{
    gpr, X86Regs, EFLAGS_AF, EFLAGS_CF, EFLAGS_DF, EFLAGS_OF, EFLAGS_PF, EFLAGS_SF, EFLAGS_STATUS, EFLAGS_ZF,
};
use crate::trap::diag::MAX_INSN_LEN;
use crate::trap::{DeviceAccess, Reason, Resume, Trap, TrapDecoder, TrapError, Unsupported};

/// Decodes and emulates trapped x86-64 (64-bit mode) accesses.
///
/// Constructing one builds the decoder's lookup tables, which `iced-x86`
/// creates lazily, with allocation, on first use: build the decoder
/// before the first trap (when the signal handler is installed), never in
/// the handler.
#[derive(Debug, Clone, Copy)]
pub struct X86Decoder {
    _tables_built: (),
}

impl X86Decoder {
    /// A decoder whose tables are built.
    pub fn new() -> X86Decoder {
        // One decode forces the decoder's lazily built tables.
        let _ = Decoder::new(64, &[0x90], DecoderOptions::NONE).decode();
        X86Decoder { _tables_built: () }
    }
}

impl Default for X86Decoder {
    fn default() -> X86Decoder {
        X86Decoder::new()
    }
}

impl TrapDecoder for X86Decoder {
    type Regs = X86Regs;

    fn emulate(&self, regs: &mut X86Regs, trap: Trap<'_>, mem: &mut dyn DeviceAccess) -> Result<Resume, TrapError> {
        let bytes = &trap.insn[..trap.insn.len().min(MAX_INSN_LEN)];
        let ip = regs.rip;
        let refuse = |reason: Reason, bytes: &[u8], mnemonic: Mnemonic| {
            TrapError::Unsupported(Unsupported::new(ip, trap.fault_addr, reason, bytes, &mnemonic))
        };
        let instr = match Decoder::try_with_ip(64, bytes, ip, DecoderOptions::NONE) {
            Ok(mut decoder) => decoder.decode(),
            Err(_) => Instruction::default(),
        };
        if instr.is_invalid() {
            return Err(refuse(Reason::Undecodable, bytes, Mnemonic::INVALID));
        }
        let bytes = &bytes[..instr.len()];
        match dispatch(&instr, bytes, regs, trap.fault_addr, mem) {
            Ok(rip) => {
                regs.rip = rip;
                Ok(Resume { rip })
            }
            Err(Abort::Fault(fault)) => Err(TrapError::Fault(fault)),
            Err(Abort::Refuse(reason)) => Err(refuse(reason, bytes, instr.mnemonic())),
        }
    }
}

/// One trapped instruction being emulated: what each family's `emulate`
/// works on.
struct Emulation<'a> {
    instr: &'a Instruction,
    regs: &'a mut X86Regs,
    fault_addr: u64,
    mem: &'a mut dyn DeviceAccess,
}

/// Routes `instr` to the emulation of its family.
fn dispatch(
    instr: &Instruction,
    bytes: &[u8],
    regs: &mut X86Regs,
    fault_addr: u64,
    mem: &mut dyn DeviceAccess,
) -> Result<u64, Abort> {
    if !mem.is_device(fault_addr) {
        return Err(Reason::NotDevice.into());
    }
    if operand::has_address_size_prefix(bytes) {
        return Err(Reason::AddressSize.into());
    }
    let code = instr.code();
    let e = Emulation { instr, regs, fault_addr, mem };
    if string::is_string(code) {
        return string::emulate(e);
    }
    if sse::is_vector_move(code) {
        return sse::emulate(e);
    }
    match instr.mnemonic() {
        Mnemonic::Mov | Mnemonic::Movnti | Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd => mov::emulate(e),
        Mnemonic::Add
        | Mnemonic::Adc
        | Mnemonic::Sub
        | Mnemonic::Sbb
        | Mnemonic::And
        | Mnemonic::Or
        | Mnemonic::Xor
        | Mnemonic::Inc
        | Mnemonic::Dec
        | Mnemonic::Not
        | Mnemonic::Neg
        | Mnemonic::Cmp
        | Mnemonic::Test
        | Mnemonic::Xchg => alu::emulate(e),
        _ => Err(Reason::NotEmulated.into()),
    }
}
