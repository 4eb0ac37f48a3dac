//! Read-modify-write, register-destination, compare and exchange forms:
//! which device accesses each makes, what it leaves in memory, registers
//! and flags. The flag arithmetic itself is checked against the processor
//! in `flags`.

use super::*;
use crate::trap::x86::gpr::{RAX, RCX};
use crate::trap::x86::regs::{EFLAGS_AF, EFLAGS_CF, EFLAGS_OF, EFLAGS_PF, EFLAGS_SF, EFLAGS_STATUS, EFLAGS_ZF};

const D: u64 = DEV + 0x100;

/// Runs `insn` with `mem` at the operand and `rflags` in; returns the
/// registers and the bus.
fn rmw(insn: &[u8], mem: u64, size: usize, r: X86Regs) -> (X86Regs, FakeBus) {
    let mut bus = FakeBus::new();
    bus.poke(D, size, u128::from(mem));
    let after = run_ok(insn, r, D, &mut bus);
    (after, bus)
}

/// The read and write a read-modify-write of `size` bytes makes.
fn read_then_write(size: usize, old: u64, new: u64) -> Vec<Access> {
    vec![Access::Read { addr: D, size, value: old }, Access::Write { addr: D, size, value: new }]
}

#[test]
fn memory_destination_arithmetic_reads_once_and_writes_once() {
    let mut r = regs();
    r.gpr[RAX] = 0x7f;
    r.gpr[RCX] = 0x10;
    // (bytes, assembly, width, memory before, memory after)
    let cases: [(&[u8], &str, usize, u64, u64); 17] = [
        (&[0x00, 0x07], "add byte [rdi], al", 1, 0x01, 0x80),
        (&[0x66, 0x01, 0x07], "add word [rdi], ax", 2, 0xff90, 0x000f),
        (&[0x01, 0x07], "add dword [rdi], eax", 4, 1, 0x80),
        (&[0x48, 0x01, 0x07], "add qword [rdi], rax", 8, u64::MAX, 0x7e),
        (&[0x83, 0x07, 0x10], "add dword [rdi], 0x10", 4, 0xfffffff0, 0),
        (&[0x48, 0x83, 0x07, 0xff], "add qword [rdi], -1", 8, 5, 4),
        (&[0x81, 0x07, 0x45, 0x23, 0x01, 0x00], "add dword [rdi], 0x12345", 4, 1, 0x12346),
        (&[0x80, 0x07, 0x80], "add byte [rdi], 0x80", 1, 0x80, 0),
        (&[0x29, 0x0f], "sub dword [rdi], ecx", 4, 0x10, 0),
        (&[0x83, 0x0f, 0x04], "or dword [rdi], 4", 4, 0x1, 0x5),
        (&[0x66, 0x81, 0x0f, 0x00, 0x01], "or word [rdi], 0x100", 2, 0x1, 0x101),
        (&[0x83, 0x27, 0xfb], "and dword [rdi], ~4", 4, 0xff, 0xfb),
        (&[0x31, 0x0f], "xor dword [rdi], ecx", 4, 0x11, 0x01),
        (&[0xff, 0x07], "inc dword [rdi]", 4, 0xffff_ffff, 0),
        (&[0xfe, 0x0f], "dec byte [rdi]", 1, 0, 0xff),
        (&[0xf7, 0x17], "not dword [rdi]", 4, 0x0f0f_0f0f, 0xf0f0_f0f0),
        (&[0xf7, 0x1f], "neg dword [rdi]", 4, 1, 0xffff_ffff),
    ];
    for (insn, asm, size, old, new) in cases {
        let (after, bus) = rmw(insn, old, size, r);
        assert_eq!(bus.log, read_then_write(size, old, new), "{asm}");
        assert_eq!(after.gpr, r.gpr, "{asm}: no register but rflags changes");
    }
}

#[test]
fn lock_prefixed_forms_are_one_read_and_one_write_too() {
    // lock or dword [rdi], 1; lock inc dword [rdi]
    let (_, bus) = rmw(&[0xf0, 0x83, 0x0f, 0x01], 0x10, 4, regs());
    assert_eq!(bus.log, read_then_write(4, 0x10, 0x11));
    let (_, bus) = rmw(&[0xf0, 0xff, 0x07], 0x10, 4, regs());
    assert_eq!(bus.log, read_then_write(4, 0x10, 0x11));
}

#[test]
fn arithmetic_sets_each_status_flag() {
    let r = |rcx: u64, cf: bool| {
        let mut r = regs();
        r.gpr[RCX] = rcx;
        r.rflags = 0x202 | if cf { EFLAGS_CF } else { 0 };
        r
    };
    // add dword [rdi], ecx: 0x7fffffff + 1 overflows into the sign bit;
    // the low nibble carries (AF); PF looks at the low byte only, 0x00.
    let (after, _) = rmw(&[0x01, 0x0f], 0x7fff_ffff, 4, r(1, false));
    assert_eq!(after.rflags & EFLAGS_STATUS, EFLAGS_OF | EFLAGS_SF | EFLAGS_AF | EFLAGS_PF);
    // 0xffffffff + 1 = 0 with a carry out: CF, ZF, AF, PF.
    let (after, _) = rmw(&[0x01, 0x0f], 0xffff_ffff, 4, r(1, false));
    assert_eq!(after.rflags & EFLAGS_STATUS, EFLAGS_CF | EFLAGS_ZF | EFLAGS_AF | EFLAGS_PF);
    // adc dword [rdi], ecx with CF set: 1 + 1 + 1 = 3 (PF: two bits).
    let (after, bus) = rmw(&[0x11, 0x0f], 1, 4, r(1, true));
    assert_eq!(bus.peek(D, 4), 3);
    assert_eq!(after.rflags & EFLAGS_STATUS, EFLAGS_PF);
    // sbb dword [rdi], ecx with CF set: 0 - 0 - 1 borrows.
    let (after, bus) = rmw(&[0x19, 0x0f], 0, 4, r(0, true));
    assert_eq!(bus.peek(D, 4), 0xffff_ffff);
    assert_eq!(after.rflags & EFLAGS_STATUS, EFLAGS_CF | EFLAGS_SF | EFLAGS_AF | EFLAGS_PF);
    // inc keeps CF whatever the result.
    let (after, _) = rmw(&[0xff, 0x07], 0xffff_ffff, 4, r(0, true));
    assert_eq!(after.rflags & EFLAGS_STATUS, EFLAGS_CF | EFLAGS_ZF | EFLAGS_AF | EFLAGS_PF);
    // Logic clears CF and OF.
    let (after, _) = rmw(&[0x31, 0x0f], 0x8000_0000, 4, r(0, true));
    assert_eq!(after.rflags & (EFLAGS_CF | EFLAGS_OF), 0);
    assert_ne!(after.rflags & EFLAGS_SF, 0);
    // not changes no flag.
    let mut all = r(0, false);
    all.rflags = 0x202 | EFLAGS_STATUS;
    let (after, _) = rmw(&[0xf7, 0x17], 0, 4, all);
    assert_eq!(after.rflags, all.rflags);
}

#[test]
fn register_destination_forms_read_once_and_write_the_register() {
    let mut r = regs();
    r.gpr[RAX] = 0xffff_ffff_0000_0001;
    r.gpr[9] = 0xff00;
    // add eax, [rdi]: 32-bit result zero-extends.
    let (after, bus) = rmw(&[0x03, 0x07], 2, 4, r);
    assert_eq!(after.gpr[RAX], 3);
    assert_eq!(bus.log, vec![Access::Read { addr: D, size: 4, value: 2 }]);
    // or eax, [rdi]
    let (after, _) = rmw(&[0x0b, 0x07], 0x10, 4, r);
    assert_eq!(after.gpr[RAX], 0x11);
    // and r9, [rdi]
    let (after, _) = rmw(&[0x4c, 0x23, 0x0f], 0x0f00, 8, r);
    assert_eq!(after.gpr[9], 0x0f00);
    // sub ecx, [rdi]: ecx - mem, borrow when mem is larger.
    let mut r2 = regs();
    r2.gpr[RCX] = 1;
    let (after, _) = rmw(&[0x2b, 0x0f], 2, 4, r2);
    assert_eq!(after.gpr[RCX], 0xffff_ffff);
    assert_ne!(after.rflags & EFLAGS_CF, 0);
}

#[test]
fn compare_and_test_read_once_and_set_only_flags() {
    let mut r = regs();
    r.gpr[RCX] = 5;
    // (bytes, assembly, width, memory, flags expected among CF|ZF|SF)
    let cases: [(&[u8], &str, usize, u64, u64); 8] = [
        (&[0x39, 0x0f], "cmp dword [rdi], ecx", 4, 5, EFLAGS_ZF),
        (&[0x39, 0x0f], "cmp dword [rdi], ecx", 4, 4, EFLAGS_CF | EFLAGS_SF),
        (&[0x3b, 0x0f], "cmp ecx, dword [rdi]", 4, 6, EFLAGS_CF | EFLAGS_SF),
        (&[0x80, 0x3f, 0x7f], "cmp byte [rdi], 0x7f", 1, 0x80, 0),
        (&[0x48, 0x83, 0x3f, 0x00], "cmp qword [rdi], 0", 8, 0, EFLAGS_ZF),
        (&[0x85, 0x0f], "test dword [rdi], ecx", 4, 0x2, EFLAGS_ZF),
        (&[0xf6, 0x07, 0x80], "test byte [rdi], 0x80", 1, 0x80, EFLAGS_SF),
        (&[0xf7, 0x07, 0x00, 0x00, 0x01, 0x00], "test dword [rdi], 0x10000", 4, 0x10000, 0),
    ];
    for (insn, asm, size, mem, flags) in cases {
        let (after, bus) = rmw(insn, mem, size, r);
        assert_eq!(bus.log, vec![Access::Read { addr: D, size, value: mem }], "{asm}");
        assert_eq!(after.gpr, r.gpr, "{asm}");
        assert_eq!(after.rflags & (EFLAGS_CF | EFLAGS_ZF | EFLAGS_SF), flags, "{asm}");
    }
    // cmp byte [rdi], 0x7f with 0x80: -128 - 127 overflows.
    let (after, _) = rmw(&[0x80, 0x3f, 0x7f], 0x80, 1, r);
    assert_ne!(after.rflags & EFLAGS_OF, 0);
}

#[test]
fn xchg_swaps_with_one_read_and_one_write() {
    let mut r = regs();
    r.gpr[RCX] = 0xaaaa_bbbb_1234_5678;
    // xchg dword [rdi], ecx: ecx gets the old value, zero-extended.
    let (after, bus) = rmw(&[0x87, 0x0f], 0x99, 4, r);
    assert_eq!(bus.log, read_then_write(4, 0x99, 0x1234_5678));
    assert_eq!(after.gpr[RCX], 0x99);
    assert_eq!(after.rflags, r.rflags);
    // xchg r8w, word [rdi]: the 16-bit register merges.
    r.gpr[8] = 0x1111_2222_3333_4444;
    let (after, bus) = rmw(&[0x66, 0x44, 0x87, 0x07], 0xbeef, 2, r);
    assert_eq!(bus.log, read_then_write(2, 0xbeef, 0x4444));
    assert_eq!(after.gpr[8], 0x1111_2222_3333_beef);
}

#[test]
fn a_faulting_write_after_the_read_leaves_registers_as_before() {
    let mut bus = FakeBus::new();
    bus.poke(D, 4, 1);
    bus.fault_write_at = Some(D);
    let mut r = regs();
    r.gpr[RCX] = 1;
    let before = r;
    // add dword [rdi], ecx: the read happened, the write faulted.
    assert_eq!(run(&[0x01, 0x0f], &mut r, D, &mut bus), Err(TrapError::Fault(sigbus(D))));
    assert_eq!(r, before, "flags are not updated by a faulting instruction");
    assert_eq!(bus.log, vec![Access::Read { addr: D, size: 4, value: 1 }]);
    // xchg: the register keeps its value.
    assert_eq!(run(&[0x87, 0x0f], &mut r, D, &mut bus), Err(TrapError::Fault(sigbus(D))));
    assert_eq!(r, before);
}

#[test]
fn misaligned_read_modify_write_is_refused_before_any_access() {
    let mut r = regs();
    r.gpr[crate::trap::x86::gpr::RDI] = D + 1;
    assert_refused(&[0x01, 0x0f], r, D + 1, Reason::Misaligned { addr: D + 1, width: 4 });
    assert_refused(&[0x87, 0x0f], r, D + 1, Reason::Misaligned { addr: D + 1, width: 4 });
}
