//! SSE and AVX moves between XMM registers and memory, scalar and 128-bit:
//! `movd`/`movq`, `movss`/`movsd`, `movaps`/`movapd`/`movups`/`movupd`,
//! `movdqa`/`movdqu`, `lddqu`, the non-temporal `movntps`/`movntpd`/
//! `movntdq`/`movntdqa`, the half moves `movlps`/`movhps`/`movlpd`/`movhpd`,
//! and the VEX-encoded 128-bit form of each.
//!
//! What happens to the bits a load does not write is architectural: a
//! legacy SSE scalar load (`movd`, `movq`, `movss`, `movsd`) clears bits
//! 127:size of the XMM register and leaves bits 255:128 of the YMM register
//! alone; a legacy half load (`movlps`, `movhps`, …) merges; any VEX
//! 128-bit load clears bits 255:128 as well. A 16-byte access is two
//! 8-byte device accesses (see `operand::read`).

use iced_x86::{Code, Instruction};

use super::operand::{self, Abort};
use super::regs::X86Regs;
use super::Emulation;
use crate::trap::Reason;

/// What a vector move does with its register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Load into the low bits of the register, zeroing the rest of the XMM
    /// register (and, when `vex`, of the YMM register).
    Load { vex: bool },
    /// Legacy half load: replace bits 63:0 (`high` false) or 127:64.
    LoadHalf { high: bool },
    /// VEX half load `vmovlps x1, x2, m64`: x1 = x2 with one half from
    /// memory, bits 255:128 zeroed.
    VexLoadHalf { high: bool },
    /// Store the low bits of the register.
    Store,
    /// Store bits 127:64 (`movhps`/`movhpd`).
    StoreHigh,
}

/// The kind of `code` and whether it needs 16-byte alignment (the
/// processor raises `#GP` otherwise, so such an access never reaches a
/// device page misaligned; refusing it keeps that rule).
fn classify(code: Code) -> Option<(Kind, bool)> {
    use Code::*;
    const LOAD: Kind = Kind::Load { vex: false };
    const VLOAD: Kind = Kind::Load { vex: true };
    Some(match code {
        Movd_xmm_rm32 | Movq_xmm_rm64 | Movq_xmm_xmmm64 | Movss_xmm_xmmm32 | Movsd_xmm_xmmm64 | Movups_xmm_xmmm128
        | Movupd_xmm_xmmm128 | Movdqu_xmm_xmmm128 | Lddqu_xmm_m128 => (LOAD, false),
        Movaps_xmm_xmmm128 | Movapd_xmm_xmmm128 | Movdqa_xmm_xmmm128 | Movntdqa_xmm_m128 => (LOAD, true),
        VEX_Vmovd_xmm_rm32
        | VEX_Vmovq_xmm_rm64
        | VEX_Vmovq_xmm_xmmm64
        | VEX_Vmovss_xmm_m32
        | VEX_Vmovsd_xmm_m64
        | VEX_Vmovups_xmm_xmmm128
        | VEX_Vmovupd_xmm_xmmm128
        | VEX_Vmovdqu_xmm_xmmm128
        | VEX_Vlddqu_xmm_m128 => (VLOAD, false),
        VEX_Vmovaps_xmm_xmmm128 | VEX_Vmovapd_xmm_xmmm128 | VEX_Vmovdqa_xmm_xmmm128 | VEX_Vmovntdqa_xmm_m128 => {
            (VLOAD, true)
        }
        Movlps_xmm_m64 | Movlpd_xmm_m64 => (Kind::LoadHalf { high: false }, false),
        Movhps_xmm_m64 | Movhpd_xmm_m64 => (Kind::LoadHalf { high: true }, false),
        VEX_Vmovlps_xmm_xmm_m64 | VEX_Vmovlpd_xmm_xmm_m64 => (Kind::VexLoadHalf { high: false }, false),
        VEX_Vmovhps_xmm_xmm_m64 | VEX_Vmovhpd_xmm_xmm_m64 => (Kind::VexLoadHalf { high: true }, false),
        Movd_rm32_xmm
        | Movq_rm64_xmm
        | Movq_xmmm64_xmm
        | Movss_xmmm32_xmm
        | Movsd_xmmm64_xmm
        | Movlps_m64_xmm
        | Movlpd_m64_xmm
        | Movups_xmmm128_xmm
        | Movupd_xmmm128_xmm
        | Movdqu_xmmm128_xmm
        | VEX_Vmovd_rm32_xmm
        | VEX_Vmovq_rm64_xmm
        | VEX_Vmovq_xmmm64_xmm
        | VEX_Vmovss_m32_xmm
        | VEX_Vmovsd_m64_xmm
        | VEX_Vmovlps_m64_xmm
        | VEX_Vmovlpd_m64_xmm
        | VEX_Vmovups_xmmm128_xmm
        | VEX_Vmovupd_xmmm128_xmm
        | VEX_Vmovdqu_xmmm128_xmm => (Kind::Store, false),
        Movaps_xmmm128_xmm
        | Movapd_xmmm128_xmm
        | Movdqa_xmmm128_xmm
        | Movntps_m128_xmm
        | Movntpd_m128_xmm
        | Movntdq_m128_xmm
        | VEX_Vmovaps_xmmm128_xmm
        | VEX_Vmovapd_xmmm128_xmm
        | VEX_Vmovdqa_xmmm128_xmm
        | VEX_Vmovntps_m128_xmm
        | VEX_Vmovntpd_m128_xmm
        | VEX_Vmovntdq_m128_xmm => (Kind::Store, true),
        Movhps_m64_xmm | Movhpd_m64_xmm | VEX_Vmovhps_m64_xmm | VEX_Vmovhpd_m64_xmm => (Kind::StoreHigh, false),
        _ => return None,
    })
}

/// Whether `code` is a vector move emulated here.
pub(super) fn is_vector_move(code: Code) -> bool {
    classify(code).is_some()
}

/// The XMM0–15 register named by operand `op`.
fn xmm(instr: &Instruction, op: u32) -> Result<usize, Reason> {
    X86Regs::xmm_index(instr.op_register(op)).ok_or(Reason::NotEmulated)
}

/// Emulates one vector move; returns where to resume. Registers change
/// only after the device access succeeded.
pub(super) fn emulate(e: Emulation<'_>) -> Result<u64, Abort> {
    let Emulation { instr, regs, fault_addr, mem } = e;
    let (kind, aligned) = classify(instr.code()).ok_or(Reason::NotEmulated)?;
    // The register forms of these codes have no memory operand and never
    // trap on data: `locate` refuses them.
    let (_, addr, size) = operand::locate(instr, regs, fault_addr)?;
    if aligned && addr % 16 != 0 {
        return Err(Reason::Misaligned { addr, width: size as u8 }.into());
    }
    match kind {
        Kind::Load { vex } => {
            let dest = xmm(instr, 0)?;
            let value = operand::read(mem, addr, size)?;
            regs.xmm[dest] = value;
            if vex {
                regs.ymm_hi[dest] = 0;
            }
        }
        Kind::LoadHalf { high } => {
            let dest = xmm(instr, 0)?;
            let half = operand::read(mem, addr, size)?;
            regs.xmm[dest] = merge_half(regs.xmm[dest], half, high);
        }
        Kind::VexLoadHalf { high } => {
            let (dest, src) = (xmm(instr, 0)?, xmm(instr, 1)?);
            let half = operand::read(mem, addr, size)?;
            regs.xmm[dest] = merge_half(regs.xmm[src], half, high);
            regs.ymm_hi[dest] = 0;
        }
        Kind::Store => {
            let src = xmm(instr, 1)?;
            operand::write(mem, addr, size, regs.xmm[src])?;
        }
        Kind::StoreHigh => {
            let src = xmm(instr, 1)?;
            operand::write(mem, addr, size, regs.xmm[src] >> 64)?;
        }
    }
    Ok(instr.next_ip())
}

/// `old` with its low (or, when `high`, its high) 64 bits replaced by
/// `half`.
fn merge_half(old: u128, half: u128, high: bool) -> u128 {
    let low_mask = u128::from(u64::MAX);
    if high {
        (old & low_mask) | (half << 64)
    } else {
        (old & !low_mask) | (half & low_mask)
    }
}
