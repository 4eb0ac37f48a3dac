//! Vector moves: widths, which bits of the XMM and YMM register a load
//! writes or zeroes, 16-byte accesses as two 8-byte halves, and the
//! alignment `movaps`-class moves demand.

use super::*;

const D: u64 = DEV + 0x100;
const LO: u64 = 0x1122_3344_5566_7788;
const HI: u64 = 0x99aa_bbcc_ddee_ff00;
const MEM: u128 = (HI as u128) << 64 | LO as u128;

/// Loads `insn` with [`MEM`] at the operand; returns the registers after
/// and the device accesses.
fn load(insn: &[u8]) -> (X86Regs, Vec<Access>) {
    let mut bus = FakeBus::new();
    bus.poke(D, 16, MEM);
    let after = run_ok(insn, regs(), D, &mut bus);
    (after, bus.log)
}

fn low(size: usize) -> u128 {
    if size == 16 {
        MEM
    } else {
        MEM & ((1u128 << (size * 8)) - 1)
    }
}

/// The device reads of a `size`-byte load at `D`.
fn reads(size: usize) -> Vec<Access> {
    match size {
        16 => vec![Access::Read { addr: D, size: 8, value: LO }, Access::Read { addr: D + 8, size: 8, value: HI }],
        _ => vec![Access::Read { addr: D, size, value: low(size) as u64 }],
    }
}

#[test]
fn legacy_loads_zero_the_rest_of_the_xmm_register_and_keep_the_ymm_half() {
    // (bytes, assembly, destination, width)
    let cases: [(&[u8], &str, usize, usize); 13] = [
        (&[0x66, 0x0f, 0x6e, 0x0f], "movd xmm1, [rdi]", 1, 4),
        (&[0xf3, 0x0f, 0x7e, 0x17], "movq xmm2, [rdi]", 2, 8),
        (&[0x66, 0x48, 0x0f, 0x6e, 0x17], "movq xmm2, [rdi] (66 REX.W 6e)", 2, 8),
        (&[0xf3, 0x0f, 0x10, 0x1f], "movss xmm3, [rdi]", 3, 4),
        (&[0xf2, 0x0f, 0x10, 0x27], "movsd xmm4, [rdi]", 4, 8),
        (&[0x0f, 0x28, 0x2f], "movaps xmm5, [rdi]", 5, 16),
        (&[0x66, 0x0f, 0x28, 0x37], "movapd xmm6, [rdi]", 6, 16),
        (&[0x0f, 0x10, 0x3f], "movups xmm7, [rdi]", 7, 16),
        (&[0x66, 0x44, 0x0f, 0x10, 0x07], "movupd xmm8, [rdi]", 8, 16),
        (&[0x66, 0x44, 0x0f, 0x6f, 0x0f], "movdqa xmm9, [rdi]", 9, 16),
        (&[0xf3, 0x44, 0x0f, 0x6f, 0x3f], "movdqu xmm15, [rdi]", 15, 16),
        (&[0xf2, 0x0f, 0xf0, 0x0f], "lddqu xmm1, [rdi]", 1, 16),
        (&[0x66, 0x0f, 0x38, 0x2a, 0x17], "movntdqa xmm2, [rdi]", 2, 16),
    ];
    for (insn, asm, dest, size) in cases {
        let (after, log) = load(insn);
        assert_eq!(after.xmm[dest], low(size), "{asm}");
        assert_eq!(after.ymm_hi, regs().ymm_hi, "{asm}: legacy SSE keeps bits 255:128");
        assert_eq!(log, reads(size), "{asm}");
        let mut others = after.xmm;
        others[dest] = regs().xmm[dest];
        assert_eq!(others, regs().xmm, "{asm}: only the destination changes");
        assert_eq!(after.gpr, regs().gpr, "{asm}");
    }
}

#[test]
fn vex_loads_also_zero_the_upper_ymm_half() {
    let cases: [(&[u8], &str, usize, usize); 13] = [
        (&[0xc5, 0xf9, 0x6e, 0x0f], "vmovd xmm1, [rdi]", 1, 4),
        (&[0xc5, 0xfa, 0x7e, 0x17], "vmovq xmm2, [rdi]", 2, 8),
        (&[0xc4, 0xe1, 0xf9, 0x6e, 0x17], "vmovq xmm2, [rdi] (VEX.W 6e)", 2, 8),
        (&[0xc5, 0xfa, 0x10, 0x1f], "vmovss xmm3, [rdi]", 3, 4),
        (&[0xc5, 0xfb, 0x10, 0x27], "vmovsd xmm4, [rdi]", 4, 8),
        (&[0xc5, 0xf8, 0x28, 0x2f], "vmovaps xmm5, [rdi]", 5, 16),
        (&[0xc5, 0xf9, 0x28, 0x37], "vmovapd xmm6, [rdi]", 6, 16),
        (&[0xc5, 0xf8, 0x10, 0x3f], "vmovups xmm7, [rdi]", 7, 16),
        (&[0xc5, 0x79, 0x10, 0x07], "vmovupd xmm8, [rdi]", 8, 16),
        (&[0xc5, 0x79, 0x6f, 0x0f], "vmovdqa xmm9, [rdi]", 9, 16),
        (&[0xc5, 0x7a, 0x6f, 0x3f], "vmovdqu xmm15, [rdi]", 15, 16),
        (&[0xc5, 0xfb, 0xf0, 0x0f], "vlddqu xmm1, [rdi]", 1, 16),
        (&[0xc4, 0xe2, 0x79, 0x2a, 0x17], "vmovntdqa xmm2, [rdi]", 2, 16),
    ];
    for (insn, asm, dest, size) in cases {
        let (after, log) = load(insn);
        assert_eq!(after.xmm[dest], low(size), "{asm}");
        assert_eq!(after.ymm_hi[dest], 0, "{asm}: VEX zeroes bits 255:128");
        let mut others = after.ymm_hi;
        others[dest] = u128::MAX;
        assert_eq!(others, regs().ymm_hi, "{asm}");
        assert_eq!(log, reads(size), "{asm}");
    }
}

#[test]
fn half_loads_merge_and_their_vex_forms_take_the_other_half_from_a_register() {
    let r = regs();
    let keep_hi = r.xmm[3] & !u128::from(u64::MAX);
    let keep_lo = r.xmm[3] & u128::from(u64::MAX);
    // movlps/movlpd replace bits 63:0, movhps/movhpd bits 127:64.
    for (insn, asm) in [(&[0x0f, 0x12, 0x1f][..], "movlps"), (&[0x66, 0x0f, 0x12, 0x1f][..], "movlpd")] {
        let (after, log) = load(insn);
        assert_eq!(after.xmm[3], keep_hi | u128::from(LO), "{asm}");
        assert_eq!(after.ymm_hi[3], u128::MAX, "{asm}");
        assert_eq!(log, reads(8), "{asm}");
    }
    for (insn, asm) in [(&[0x0f, 0x16, 0x1f][..], "movhps"), (&[0x66, 0x0f, 0x16, 0x1f][..], "movhpd")] {
        let (after, _) = load(insn);
        assert_eq!(after.xmm[3], keep_lo | (u128::from(LO) << 64), "{asm}");
    }
    // vmovlps xmm3, xmm4, [rdi]: xmm3 = xmm4's high half with memory low.
    let x4 = r.xmm[4];
    for (insn, asm, expected) in [
        (&[0xc5, 0xd8, 0x12, 0x1f][..], "vmovlps", (x4 & !u128::from(u64::MAX)) | u128::from(LO)),
        (&[0xc5, 0xd9, 0x12, 0x1f][..], "vmovlpd", (x4 & !u128::from(u64::MAX)) | u128::from(LO)),
        (&[0xc5, 0xd8, 0x16, 0x1f][..], "vmovhps", (x4 & u128::from(u64::MAX)) | (u128::from(LO) << 64)),
        (&[0xc5, 0xd9, 0x16, 0x1f][..], "vmovhpd", (x4 & u128::from(u64::MAX)) | (u128::from(LO) << 64)),
    ] {
        let (after, _) = load(insn);
        assert_eq!(after.xmm[3], expected, "{asm}");
        assert_eq!(after.ymm_hi[3], 0, "{asm}");
        assert_eq!(after.xmm[4], x4, "{asm}");
    }
}

#[test]
fn stores_write_the_low_bits_or_the_high_half() {
    let r = regs();
    // (bytes, assembly, source, width, which half: 0 low bits, 1 high 64)
    let cases: [(&[u8], &str, usize, usize, bool); 34] = [
        (&[0x66, 0x0f, 0x7e, 0x0f], "movd [rdi], xmm1", 1, 4, false),
        (&[0x66, 0x0f, 0xd6, 0x17], "movq [rdi], xmm2", 2, 8, false),
        (&[0x66, 0x48, 0x0f, 0x7e, 0x17], "movq [rdi], xmm2 (REX.W 7e)", 2, 8, false),
        (&[0xf3, 0x0f, 0x11, 0x1f], "movss [rdi], xmm3", 3, 4, false),
        (&[0xf2, 0x0f, 0x11, 0x27], "movsd [rdi], xmm4", 4, 8, false),
        (&[0x0f, 0x29, 0x2f], "movaps [rdi], xmm5", 5, 16, false),
        (&[0x66, 0x0f, 0x29, 0x37], "movapd [rdi], xmm6", 6, 16, false),
        (&[0x0f, 0x11, 0x3f], "movups [rdi], xmm7", 7, 16, false),
        (&[0x66, 0x44, 0x0f, 0x11, 0x07], "movupd [rdi], xmm8", 8, 16, false),
        (&[0x66, 0x44, 0x0f, 0x7f, 0x0f], "movdqa [rdi], xmm9", 9, 16, false),
        (&[0xf3, 0x44, 0x0f, 0x7f, 0x3f], "movdqu [rdi], xmm15", 15, 16, false),
        (&[0x0f, 0x2b, 0x0f], "movntps [rdi], xmm1", 1, 16, false),
        (&[0x66, 0x0f, 0x2b, 0x0f], "movntpd [rdi], xmm1", 1, 16, false),
        (&[0x66, 0x0f, 0xe7, 0x0f], "movntdq [rdi], xmm1", 1, 16, false),
        (&[0x0f, 0x13, 0x1f], "movlps [rdi], xmm3", 3, 8, false),
        (&[0x66, 0x0f, 0x13, 0x1f], "movlpd [rdi], xmm3", 3, 8, false),
        (&[0x0f, 0x17, 0x1f], "movhps [rdi], xmm3", 3, 8, true),
        (&[0x66, 0x0f, 0x17, 0x1f], "movhpd [rdi], xmm3", 3, 8, true),
        (&[0xc5, 0xf9, 0x7e, 0x0f], "vmovd [rdi], xmm1", 1, 4, false),
        (&[0xc5, 0xf9, 0xd6, 0x17], "vmovq [rdi], xmm2", 2, 8, false),
        (&[0xc4, 0xe1, 0xf9, 0x7e, 0x17], "vmovq [rdi], xmm2 (VEX.W 7e)", 2, 8, false),
        (&[0xc5, 0xfa, 0x11, 0x1f], "vmovss [rdi], xmm3", 3, 4, false),
        (&[0xc5, 0xfb, 0x11, 0x27], "vmovsd [rdi], xmm4", 4, 8, false),
        (&[0xc5, 0xf8, 0x29, 0x2f], "vmovaps [rdi], xmm5", 5, 16, false),
        (&[0xc5, 0xf9, 0x29, 0x37], "vmovapd [rdi], xmm6", 6, 16, false),
        (&[0xc5, 0xf8, 0x11, 0x3f], "vmovups [rdi], xmm7", 7, 16, false),
        (&[0xc5, 0x79, 0x11, 0x07], "vmovupd [rdi], xmm8", 8, 16, false),
        (&[0xc5, 0x79, 0x7f, 0x0f], "vmovdqa [rdi], xmm9", 9, 16, false),
        (&[0xc5, 0x7a, 0x7f, 0x3f], "vmovdqu [rdi], xmm15", 15, 16, false),
        (&[0xc5, 0xf8, 0x2b, 0x0f], "vmovntps [rdi], xmm1", 1, 16, false),
        (&[0xc5, 0xf9, 0x2b, 0x0f], "vmovntpd [rdi], xmm1", 1, 16, false),
        (&[0xc5, 0xf9, 0xe7, 0x0f], "vmovntdq [rdi], xmm1", 1, 16, false),
        (&[0xc5, 0xf8, 0x13, 0x1f], "vmovlps [rdi], xmm3", 3, 8, false),
        (&[0xc5, 0xf8, 0x17, 0x1f], "vmovhps [rdi], xmm3", 3, 8, true),
    ];
    for (insn, asm, src, size, high) in cases {
        let mut bus = FakeBus::new();
        let after = run_ok(insn, r, D, &mut bus);
        assert_eq!(after, X86Regs { rip: after.rip, ..r }, "{asm}: a store changes no register");
        let x = if high { r.xmm[src] >> 64 } else { r.xmm[src] };
        let expected = match size {
            16 => vec![
                Access::Write { addr: D, size: 8, value: x as u64 },
                Access::Write { addr: D + 8, size: 8, value: (x >> 64) as u64 },
            ],
            _ => vec![Access::Write { addr: D, size, value: (x as u64) & super::super::regs::mask(size) }],
        };
        assert_eq!(bus.log, expected, "{asm}");
    }
    // vmovlpd/vmovhpd stores, by their own encodings.
    let mut bus = FakeBus::new();
    run_ok(&[0xc5, 0xf9, 0x13, 0x1f], r, D, &mut bus);
    run_ok(&[0xc5, 0xf9, 0x17, 0x1f], r, D, &mut bus);
    assert_eq!(
        bus.log,
        vec![
            Access::Write { addr: D, size: 8, value: r.xmm[3] as u64 },
            Access::Write { addr: D, size: 8, value: (r.xmm[3] >> 64) as u64 },
        ]
    );
}

#[test]
fn sixteen_byte_moves_need_eight_byte_alignment_and_aligned_kinds_sixteen() {
    let mut r = regs();
    // movups at an 8-aligned address: two aligned halves, emulated.
    r.gpr[crate::trap::x86::gpr::RDI] = D + 8;
    let mut bus = FakeBus::new();
    run_ok(&[0x0f, 0x10, 0x3f], r, D + 8, &mut bus);
    assert_eq!(bus.log.len(), 2);
    // movaps there: the processor would raise #GP; refused.
    assert_refused(&[0x0f, 0x28, 0x2f], r, D + 8, Reason::Misaligned { addr: D + 8, width: 16 });
    assert_refused(&[0xc5, 0xf9, 0xe7, 0x0f], r, D + 8, Reason::Misaligned { addr: D + 8, width: 16 });
    // movups at a 4-aligned address: halves would be misaligned.
    r.gpr[crate::trap::x86::gpr::RDI] = D + 4;
    assert_refused(&[0x0f, 0x10, 0x3f], r, D + 4, Reason::Misaligned { addr: D + 4, width: 16 });
    // movdqu over the end of the device: refused as crossing.
    r.gpr[crate::trap::x86::gpr::RDI] = DEV + 0x1ff8;
    assert_refused(&[0xf3, 0x0f, 0x6f, 0x07], r, DEV + 0x1ff8, Reason::CrossesPage { addr: DEV + 0x1ff8, width: 16 });
}

#[test]
fn a_fault_on_the_second_half_leaves_the_register_unwritten() {
    let mut bus = FakeBus::new();
    bus.poke(D, 16, MEM);
    bus.fault_read_at = Some(D + 8);
    let mut r = regs();
    let before = r;
    // movdqu xmm15, [rdi]
    let res = run(&[0xf3, 0x44, 0x0f, 0x6f, 0x3f], &mut r, D, &mut bus);
    assert_eq!(res, Err(TrapError::Fault(sigbus(D + 8))));
    assert_eq!(r, before);
}

#[test]
fn register_forms_and_wider_vectors_are_not_emulated() {
    // movss xmm1, xmm2 (no memory); vmovdqu ymm1, [rdi] (256-bit).
    assert_refused(&[0xf3, 0x0f, 0x10, 0xca], regs(), D, Reason::NotEmulated);
    assert_refused(&[0xc5, 0xfe, 0x6f, 0x0f], regs(), D, Reason::NotEmulated);
}
