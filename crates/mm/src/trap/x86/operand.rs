//! The memory operand: its effective address from the saved registers,
//! the cross-check against the faulting address, and the device-access
//! policy for width, alignment and page ends.

use iced_x86::{Instruction, OpKind, Register};
use page::PAGE_SIZE;

use super::regs::{mask, X86Regs};
use crate::probe::{AccessFault, Width};
use crate::trap::{DeviceAccess, Reason};

/// Why an emulation stopped short: the access faulted (the program gets
/// that signal) or the emulator refused it (the program gets a diagnostic
/// and SIGBUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Abort {
    Fault(AccessFault),
    Refuse(Reason),
}

impl From<Reason> for Abort {
    fn from(reason: Reason) -> Abort {
        Abort::Refuse(reason)
    }
}

/// The index of the instruction's explicit memory operand, if it has one.
pub(super) fn memory_operand(instr: &Instruction) -> Option<u32> {
    (0..instr.op_count()).find(|&op| instr.op_kind(op) == OpKind::Memory)
}

/// The value of a 64-bit address register; a narrower one means 32-bit
/// addressing, which is refused.
fn address_register(regs: &X86Regs, reg: Register) -> Result<u64, Reason> {
    if !reg.is_gpr64() {
        return Err(if reg.is_gpr32() { Reason::AddressSize } else { Reason::NotEmulated });
    }
    regs.read_gpr(reg).ok_or(Reason::NotEmulated)
}

/// Refuses FS/GS overrides: their bases are not among the saved registers.
/// The other segment overrides have a zero base in 64-bit mode.
pub(super) fn check_segment(instr: &Instruction) -> Result<(), Reason> {
    match instr.segment_prefix() {
        Register::FS | Register::GS => Err(Reason::SegmentBase),
        _ => Ok(()),
    }
}

/// The linear address of the explicit memory operand
/// (`base + index * scale + displacement`, or the absolute target of a
/// RIP-relative or `moffs` operand).
pub(super) fn effective_address(instr: &Instruction, regs: &X86Regs) -> Result<u64, Reason> {
    check_segment(instr)?;
    // The decoder resolves RIP-relative displacements (against the `ip` it
    // was given, the trapping `rip`) and moffs operands to absolute
    // addresses in `memory_displacement64`.
    let mut addr = instr.memory_displacement64();
    match instr.memory_base() {
        Register::RIP | Register::None => {}
        Register::EIP => return Err(Reason::AddressSize),
        base => addr = addr.wrapping_add(address_register(regs, base)?),
    }
    match instr.memory_index() {
        Register::None => {}
        index => {
            let scaled = address_register(regs, index)?.wrapping_mul(u64::from(instr.memory_index_scale()));
            addr = addr.wrapping_add(scaled);
        }
    }
    Ok(addr)
}

/// Checks that the access of `size` bytes at `addr` covers `fault_addr`,
/// the address the trap reported: what ties the decoded instruction to the
/// fault, so that stale or hostile instruction bytes cannot redirect the
/// access.
pub(super) fn check_covers(addr: u64, size: usize, fault_addr: u64) -> Result<(), Reason> {
    if fault_addr.wrapping_sub(addr) < size as u64 {
        Ok(())
    } else {
        Err(Reason::AddressMismatch { computed: addr })
    }
}

/// Finds the explicit memory operand of `instr`, its address and width,
/// and checks it against the fault: the prologue of every family but the
/// string instructions. Returns (operand index, address, width in bytes).
pub(super) fn locate(instr: &Instruction, regs: &X86Regs, fault_addr: u64) -> Result<(u32, u64, usize), Reason> {
    let op = memory_operand(instr).ok_or(Reason::NotEmulated)?;
    let size = instr.memory_size().size();
    let addr = effective_address(instr, regs)?;
    check_covers(addr, size, fault_addr)?;
    Ok((op, addr, size))
}

/// Whether any byte of `[addr, addr + size)` is on a device page.
pub(super) fn touches_device(mem: &dyn DeviceAccess, addr: u64, size: usize) -> bool {
    mem.is_device(addr) || mem.is_device(addr.wrapping_add(size as u64 - 1))
}

/// The device-access policy: an access of `size` bytes to a device page
/// is performed only when it stays inside its page and is aligned to its
/// width, or for 16 bytes to the 8-byte halves it is split into. Registers
/// decode an access by its address and width; an access the device never
/// defined (a 4-byte read at 0x502) or one half on another page gets no
/// guessed meaning.
pub(super) fn check_device_policy(addr: u64, size: usize) -> Result<(), Reason> {
    let width = size as u8;
    if (addr % PAGE_SIZE) + size as u64 > PAGE_SIZE {
        return Err(Reason::CrossesPage { addr, width });
    }
    if addr % size.min(8) as u64 != 0 {
        return Err(Reason::Misaligned { addr, width });
    }
    Ok(())
}

fn width(size: usize) -> Width {
    match size {
        1 => Width::U8,
        2 => Width::U16,
        4 => Width::U32,
        _ => Width::U64,
    }
}

/// Reads `size` bytes (1, 2, 4, 8 or 16) at `addr`. A device access obeys
/// [`check_device_policy`]; 16 bytes are two 8-byte reads, low half first.
/// Bits above `size` are cleared whatever the callback returned.
pub(super) fn read(mem: &mut dyn DeviceAccess, addr: u64, size: usize) -> Result<u128, Abort> {
    if touches_device(mem, addr, size) {
        check_device_policy(addr, size)?;
    }
    if size == 16 {
        let lo = mem.read(addr, Width::U64).map_err(Abort::Fault)?;
        let hi = mem.read(addr.wrapping_add(8), Width::U64).map_err(Abort::Fault)?;
        return Ok(u128::from(lo) | (u128::from(hi) << 64));
    }
    let value = mem.read(addr, width(size)).map_err(Abort::Fault)?;
    Ok(u128::from(value & mask(size)))
}

/// Writes the low `size` bytes (1, 2, 4, 8 or 16) of `value` at `addr`,
/// under the same policy as [`read`]; 16 bytes are two 8-byte writes, low
/// half first.
pub(super) fn write(mem: &mut dyn DeviceAccess, addr: u64, size: usize, value: u128) -> Result<(), Abort> {
    if touches_device(mem, addr, size) {
        check_device_policy(addr, size)?;
    }
    if size == 16 {
        mem.write(addr, Width::U64, value as u64).map_err(Abort::Fault)?;
        return mem.write(addr.wrapping_add(8), Width::U64, (value >> 64) as u64).map_err(Abort::Fault);
    }
    mem.write(addr, width(size), value as u64 & mask(size)).map_err(Abort::Fault)
}

/// The value of source operand `op` when it is a general register or an
/// immediate (sign-extended as the encoding defines); anything else is not
/// emulated.
pub(super) fn source_value(instr: &Instruction, op: u32, regs: &X86Regs) -> Result<u64, Reason> {
    match instr.op_kind(op) {
        OpKind::Register => regs.read_gpr(instr.op_register(op)).ok_or(Reason::NotEmulated),
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => Ok(instr.immediate(op)),
        _ => Err(Reason::NotEmulated),
    }
}

/// Whether the prefixes of `bytes` include the address-size override
/// (`0x67`), which makes every address 32 bits wide. Scanning the bytes is
/// the only way to see it for a `moffs` operand, which names no register.
/// A REX byte before a legacy prefix is ignored by the processor but does
/// not end the prefixes.
pub(super) fn has_address_size_prefix(bytes: &[u8]) -> bool {
    for &b in bytes {
        match b {
            0x67 => return true,
            0x26 | 0x2e | 0x36 | 0x3e | 0x40..=0x4f | 0x64 | 0x65 | 0x66 | 0xf0 | 0xf2 | 0xf3 => {}
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_allows_aligned_accesses_and_refuses_the_rest() {
        assert_eq!(check_device_policy(0x1000, 8), Ok(()));
        assert_eq!(check_device_policy(0x1ff8, 8), Ok(()));
        assert_eq!(check_device_policy(0x1ff0, 16), Ok(()));
        assert_eq!(check_device_policy(0x1008, 16), Ok(()));
        assert_eq!(check_device_policy(0x1fff, 1), Ok(()));
        assert_eq!(check_device_policy(0x1502, 4), Err(Reason::Misaligned { addr: 0x1502, width: 4 }));
        assert_eq!(check_device_policy(0x1004, 16), Err(Reason::Misaligned { addr: 0x1004, width: 16 }));
        assert_eq!(check_device_policy(0x1ffe, 4), Err(Reason::CrossesPage { addr: 0x1ffe, width: 4 }));
        assert_eq!(check_device_policy(0x1ff8, 16), Err(Reason::CrossesPage { addr: 0x1ff8, width: 16 }));
    }

    #[test]
    fn the_fault_must_lie_inside_the_access() {
        assert_eq!(check_covers(0x1000, 4, 0x1000), Ok(()));
        assert_eq!(check_covers(0x1000, 4, 0x1003), Ok(()));
        assert_eq!(check_covers(0x1000, 4, 0x1004), Err(Reason::AddressMismatch { computed: 0x1000 }));
        assert_eq!(check_covers(0x1000, 4, 0xfff), Err(Reason::AddressMismatch { computed: 0x1000 }));
        assert_eq!(check_covers(u64::MAX, 2, 0), Ok(()));
    }

    #[test]
    fn the_address_size_prefix_is_found_among_legacy_prefixes_only() {
        assert!(has_address_size_prefix(&[0x67, 0x8b, 0x07]));
        assert!(has_address_size_prefix(&[0x66, 0x67, 0x89, 0x07]));
        assert!(has_address_size_prefix(&[0x48, 0x67, 0x8b, 0x07]));
        assert!(!has_address_size_prefix(&[0x48, 0x8b, 0x67]));
        assert!(!has_address_size_prefix(&[0xc5, 0xf9, 0x67]));
        assert!(!has_address_size_prefix(&[]));
    }
}
