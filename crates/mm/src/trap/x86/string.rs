//! String moves and stores: `movs` and `stos` of 1, 2, 4 and 8 bytes, with
//! or without `rep`, element by element.
//!
//! The processor keeps `rsi`, `rdi` and `rcx` exact at each element
//! boundary, so a fault part-way leaves them describing the remaining work,
//! and resuming at the same instruction finishes it. The emulation does the
//! same: each element is one read (for `movs`) and one write, after which
//! the registers advance; a faulting element leaves them at that element
//! and `rip` at the instruction.
//!
//! Only elements that touch a device page are emulated. Once at least one
//! has been (so every trap makes progress), the first element wholly in
//! ordinary memory ends the emulation and `rip` stays at the instruction:
//! the processor does the rest of a long `rep` at its own speed and traps
//! again at the next device page.

use iced_x86::{Code, OpKind};

use super::operand::{self, Abort};
use super::regs::{gpr, mask, EFLAGS_DF};
use super::Emulation;
use crate::trap::Reason;

/// Which string instruction, and its element size in bytes.
fn classify(code: Code) -> Option<(bool, usize)> {
    Some(match code {
        Code::Movsb_m8_m8 => (true, 1),
        Code::Movsw_m16_m16 => (true, 2),
        Code::Movsd_m32_m32 => (true, 4),
        Code::Movsq_m64_m64 => (true, 8),
        Code::Stosb_m8_AL => (false, 1),
        Code::Stosw_m16_AX => (false, 2),
        Code::Stosd_m32_EAX => (false, 4),
        Code::Stosq_m64_RAX => (false, 8),
        _ => return None,
    })
}

/// Whether `code` is one of the string instructions emulated here.
pub(super) fn is_string(code: Code) -> bool {
    classify(code).is_some()
}

/// Whether `fault_addr` lies in the `count` elements of `size` bytes that
/// start at `first` and move by `size` towards lower addresses when `down`.
/// Addresses wrap at 2^64 as the processor's do.
fn in_remaining(first: u64, count: u64, size: usize, down: bool, fault_addr: u64) -> bool {
    let span = u128::from(count) * size as u128;
    let Ok(span) = u64::try_from(span) else {
        // More bytes than the address space: every address is covered.
        return true;
    };
    let offset = if down {
        // Elements at first, first - size, …: the range ends at the last
        // byte of the first element.
        first.wrapping_add(size as u64 - 1).wrapping_sub(fault_addr)
    } else {
        fault_addr.wrapping_sub(first)
    };
    offset < span
}

/// Emulates a `movs` or `stos`; returns where to resume (the next
/// instruction when done, this one when work is left for the processor).
pub(super) fn emulate(e: Emulation<'_>) -> Result<u64, Abort> {
    let Emulation { instr, regs, fault_addr, mem } = e;
    let (is_movs, size) = classify(instr.code()).ok_or(Reason::NotEmulated)?;
    if instr.has_repne_prefix() {
        // `repne` on movs/stos is undefined on AMD; refuse rather than guess.
        return Err(Reason::NotEmulated.into());
    }
    let rep = instr.has_rep_prefix();
    // 32-bit addressing shows as esi/edi operands (and ecx as count).
    let dest_kind = instr.op0_kind();
    if dest_kind != OpKind::MemoryESRDI {
        return Err(if dest_kind == OpKind::MemoryESEDI { Reason::AddressSize } else { Reason::NotEmulated }.into());
    }
    if is_movs {
        // Only the source can take a segment override.
        operand::check_segment(instr)?;
    }
    let down = regs.rflags & EFLAGS_DF != 0;
    let step = if down { (size as u64).wrapping_neg() } else { size as u64 };
    let count = if rep { regs.gpr[gpr::RCX] } else { 1 };
    let covered = in_remaining(regs.gpr[gpr::RDI], count, size, down, fault_addr)
        || (is_movs && in_remaining(regs.gpr[gpr::RSI], count, size, down, fault_addr));
    if !covered {
        return Err(Reason::AddressMismatch { computed: regs.gpr[gpr::RDI] }.into());
    }
    let mut done_device = false;
    let mut left = count;
    while left > 0 {
        let src = regs.gpr[gpr::RSI];
        let dst = regs.gpr[gpr::RDI];
        let device = operand::touches_device(mem, dst, size) || (is_movs && operand::touches_device(mem, src, size));
        if !device && done_device {
            break;
        }
        let value = if is_movs { operand::read(mem, src, size)? } else { u128::from(regs.gpr[gpr::RAX] & mask(size)) };
        operand::write(mem, dst, size, value)?;
        // The element is done: the registers move past it.
        done_device |= device;
        if is_movs {
            regs.gpr[gpr::RSI] = src.wrapping_add(step);
        }
        regs.gpr[gpr::RDI] = dst.wrapping_add(step);
        if rep {
            regs.gpr[gpr::RCX] -= 1;
        }
        left -= 1;
    }
    Ok(if left == 0 { instr.next_ip() } else { instr.ip() })
}

#[cfg(test)]
mod tests {
    use super::in_remaining;

    #[test]
    fn the_remaining_range_follows_the_direction_flag() {
        // Up: 4 elements of 4 bytes from 0x1000 cover [0x1000, 0x1010).
        assert!(in_remaining(0x1000, 4, 4, false, 0x1000));
        assert!(in_remaining(0x1000, 4, 4, false, 0x100f));
        assert!(!in_remaining(0x1000, 4, 4, false, 0x1010));
        assert!(!in_remaining(0x1000, 4, 4, false, 0xfff));
        // Down: from 0x1000 they cover [0xff4, 0x1004).
        assert!(in_remaining(0x1000, 4, 4, true, 0x1003));
        assert!(in_remaining(0x1000, 4, 4, true, 0xff4));
        assert!(!in_remaining(0x1000, 4, 4, true, 0xff3));
        assert!(!in_remaining(0x1000, 4, 4, true, 0x1004));
        // Nothing left, nothing covered.
        assert!(!in_remaining(0x1000, 0, 4, false, 0x1000));
        // A range that wraps past the top of the address space.
        assert!(in_remaining(u64::MAX - 3, 2, 4, false, 2));
    }
}
