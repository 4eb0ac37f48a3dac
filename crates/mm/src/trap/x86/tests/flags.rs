//! The status flags of the emulated arithmetic, checked against the
//! processor running the same operation: exhaustively on 8-bit operands,
//! by property over the wider ones.
//!
//! AF after `and`/`or`/`xor` is architecturally undefined; the emulation
//! clears it and the comparison leaves it out for those operations.
#![allow(unsafe_code)]

use proptest::prelude::*;

use crate::trap::x86::alu::{compute, AluOp};
use crate::trap::x86::regs::{mask, EFLAGS_AF, EFLAGS_CF, EFLAGS_STATUS};

const OPS: [AluOp; 11] = [
    AluOp::Add,
    AluOp::Adc,
    AluOp::Sub,
    AluOp::Sbb,
    AluOp::And,
    AluOp::Or,
    AluOp::Xor,
    AluOp::Inc,
    AluOp::Dec,
    AluOp::Not,
    AluOp::Neg,
];

/// Runs `op` on the processor: `a` is the destination, `b` the source,
/// `flags_in` the status flags before. Returns the result (cut to `size`)
/// and the status flags after.
fn hardware(op: AluOp, a: u64, b: u64, size: usize, flags_in: u64) -> (u64, u64) {
    // Bit 1 of rflags is always set; IF stays set; TF and DF stay clear.
    let flags_in = (flags_in & EFLAGS_STATUS) | 0x202;
    // Sets the status flags from `flags_in`, runs `$insn` on the given
    // operands, and returns the flags after.
    macro_rules! with_flags {
        ($insn:expr, $($operands:tt)*) => {{
            let mut f = flags_in;
            // SAFETY: register arithmetic only; the push/pop pairs leave the
            // stack as they found it, and no `nostack` is claimed.
            unsafe {
                core::arch::asm!(
                    "push {f}",
                    "popfq",
                    $insn,
                    "pushfq",
                    "pop {f}",
                    f = inout(reg) f,
                    $($operands)*
                )
            }
            f
        }};
    }
    macro_rules! binary {
        ($insn:literal, $m:literal) => {{
            let mut a = a;
            let f = with_flags!(
                concat!($insn, " {a:", $m, "}, {b:", $m, "}"),
                a = inout(reg) a,
                b = in(reg) b
            );
            (a, f)
        }};
    }
    macro_rules! unary {
        ($insn:literal, $m:literal) => {{
            let mut a = a;
            let f = with_flags!(concat!($insn, " {a:", $m, "}"), a = inout(reg) a);
            (a, f)
        }};
    }
    macro_rules! sized {
        ($kind:ident, $insn:literal) => {
            match size {
                1 => $kind!($insn, "l"),
                2 => $kind!($insn, "x"),
                4 => $kind!($insn, "e"),
                _ => $kind!($insn, "r"),
            }
        };
    }
    let (r, f) = match op {
        AluOp::Add => sized!(binary, "add"),
        AluOp::Adc => sized!(binary, "adc"),
        AluOp::Sub => sized!(binary, "sub"),
        AluOp::Sbb => sized!(binary, "sbb"),
        AluOp::And => sized!(binary, "and"),
        AluOp::Or => sized!(binary, "or"),
        AluOp::Xor => sized!(binary, "xor"),
        AluOp::Inc => sized!(unary, "inc"),
        AluOp::Dec => sized!(unary, "dec"),
        AluOp::Not => sized!(unary, "not"),
        AluOp::Neg => sized!(unary, "neg"),
    };
    (r & mask(size), f & EFLAGS_STATUS)
}

/// Asserts that the emulation of `op` agrees with the processor.
fn check(op: AluOp, a: u64, b: u64, size: usize, flags_in: u64) {
    let (hw_r, hw_f) = hardware(op, a, b, size, flags_in);
    // The emulation sees operands cut to their width, as device reads are.
    let (r, f) = compute(op, a & mask(size), b & mask(size), size, 0x202 | flags_in);
    let cared = match op {
        AluOp::And | AluOp::Or | AluOp::Xor => EFLAGS_STATUS & !EFLAGS_AF,
        _ => EFLAGS_STATUS,
    };
    assert_eq!(r, hw_r, "{op:?} {a:#x}, {b:#x} ({size} bytes): result");
    assert_eq!(f & cared, hw_f & cared, "{op:?} {a:#x}, {b:#x} ({size} bytes, flags in {flags_in:#x}): flags");
    // Bits outside the status flags are the caller's, untouched.
    assert_eq!(f & !EFLAGS_STATUS, 0x202);
}

#[test]
fn every_8_bit_operation_matches_the_processor() {
    for op in OPS {
        for a in 0..=255u64 {
            for b in 0..=255u64 {
                // CF in matters to adc/sbb (and must survive inc/dec);
                // the other flags in must not matter.
                check(op, a, b, 1, 0);
                check(op, a, b, 1, EFLAGS_STATUS);
                check(op, a, b, 1, EFLAGS_CF);
            }
        }
    }
}

/// Operands with the edges (0, 1, the sign bit, all ones) overrepresented.
fn operand() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        Just(0),
        Just(1),
        Just(0x7fff),
        Just(0x8000),
        Just(0xffff),
        Just(0x7fff_ffff),
        Just(0x8000_0000),
        Just(0xffff_ffff),
        Just(0x7fff_ffff_ffff_ffff),
        Just(0x8000_0000_0000_0000),
        Just(u64::MAX),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn wider_operations_match_the_processor(
        op in proptest::sample::select(OPS.to_vec()),
        size in proptest::sample::select(vec![2usize, 4, 8]),
        a in operand(),
        b in operand(),
        flags_in in 0u64..=EFLAGS_STATUS,
    ) {
        check(op, a, b, size, flags_in & EFLAGS_STATUS);
    }
}
