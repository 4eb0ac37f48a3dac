//! `movs` and `stos`: element by element, in the direction DF gives, with
//! `rsi`/`rdi`/`rcx` describing the remaining work after each element, a
//! fault, or a hand-back to the processor.

use super::*;
use crate::trap::x86::gpr::{RAX, RCX, RDI, RSI};
use crate::trap::x86::regs::{mask, EFLAGS_DF};

/// (bytes, assembly, element size) of the `rep` forms.
const REP_MOVS: [(&[u8], &str, usize); 4] = [
    (&[0xf3, 0xa4], "rep movsb", 1),
    (&[0x66, 0xf3, 0xa5], "rep movsw", 2),
    (&[0xf3, 0xa5], "rep movsd", 4),
    (&[0xf3, 0x48, 0xa5], "rep movsq", 8),
];
const REP_STOS: [(&[u8], &str, usize); 4] = [
    (&[0xf3, 0xaa], "rep stosb", 1),
    (&[0x66, 0xf3, 0xab], "rep stosw", 2),
    (&[0xf3, 0xab], "rep stosd", 4),
    (&[0xf3, 0x48, 0xab], "rep stosq", 8),
];

fn string_regs(rsi: u64, rdi: u64, rcx: u64, down: bool) -> X86Regs {
    let mut r = regs();
    r.gpr[RSI] = rsi;
    r.gpr[RDI] = rdi;
    r.gpr[RCX] = rcx;
    if down {
        r.rflags |= EFLAGS_DF;
    }
    r
}

#[test]
fn rep_stos_fills_the_device_element_by_element_in_both_directions() {
    for (insn, asm, size) in REP_STOS {
        for down in [false, true] {
            let start = DEV + 0x200;
            let r = string_regs(0, start, 4, down);
            let mut bus = FakeBus::new();
            let after = run_ok(insn, r, start, &mut bus);
            let step = if down { (size as u64).wrapping_neg() } else { size as u64 };
            let value = r.gpr[RAX] & mask(size);
            let expected: Vec<Access> = (0..4u64)
                .map(|i| Access::Write { addr: start.wrapping_add(step.wrapping_mul(i)), size, value })
                .collect();
            assert_eq!(bus.log, expected, "{asm} down={down}");
            assert_eq!(after.gpr[RDI], start.wrapping_add(step.wrapping_mul(4)), "{asm}");
            assert_eq!(after.gpr[RCX], 0, "{asm}");
            assert_eq!(after.gpr[RSI], 0, "{asm}: stos leaves rsi");
        }
    }
}

#[test]
fn rep_movs_copies_between_device_and_memory_in_both_directions() {
    for (insn, asm, size) in REP_MOVS {
        for down in [false, true] {
            // Memory to device (a memcpy into registers).
            let (src, dst) = (RAM + 0x200, DEV + 0x200);
            let r = string_regs(src, dst, 3, down);
            let mut bus = FakeBus::new();
            for i in 0..0x40 {
                bus.poke(RAM + 0x1e0 + i, 1, u128::from(i as u8 + 1));
            }
            let after = run_ok(insn, r, dst, &mut bus);
            let step = if down { (size as u64).wrapping_neg() } else { size as u64 };
            let mut expected = Vec::new();
            for i in 0..3u64 {
                let s = src.wrapping_add(step.wrapping_mul(i));
                let d = dst.wrapping_add(step.wrapping_mul(i));
                let value = bus.peek(s, size) as u64;
                expected.push(Access::Read { addr: s, size, value });
                expected.push(Access::Write { addr: d, size, value });
            }
            assert_eq!(bus.log, expected, "{asm} down={down}");
            assert_eq!(after.gpr[RSI], src.wrapping_add(step.wrapping_mul(3)));
            assert_eq!(after.gpr[RDI], dst.wrapping_add(step.wrapping_mul(3)));
            assert_eq!(after.gpr[RCX], 0);
            // Device to memory (a memcpy out of registers): the fault is
            // on the source side.
            let r = string_regs(dst, src, 3, down);
            let mut bus = FakeBus::new();
            let after = run_ok(insn, r, dst, &mut bus);
            assert_eq!(bus.device_log().len(), 3, "{asm}: three device reads");
            assert_eq!(after.gpr[RCX], 0);
        }
    }
}

#[test]
fn single_movs_and_stos_move_one_element_and_leave_rcx() {
    let cases: [(&[u8], &str, usize, bool); 8] = [
        (&[0xa4], "movsb", 1, true),
        (&[0x66, 0xa5], "movsw", 2, true),
        (&[0xa5], "movsd", 4, true),
        (&[0x48, 0xa5], "movsq", 8, true),
        (&[0xaa], "stosb", 1, false),
        (&[0x66, 0xab], "stosw", 2, false),
        (&[0xab], "stosd", 4, false),
        (&[0x48, 0xab], "stosq", 8, false),
    ];
    for (insn, asm, size, movs) in cases {
        let r = string_regs(RAM, DEV, 7, false);
        let mut bus = FakeBus::new();
        let after = run_ok(insn, r, DEV, &mut bus);
        assert_eq!(bus.log.len(), if movs { 2 } else { 1 }, "{asm}");
        assert_eq!(after.gpr[RCX], 7, "{asm}: no rep, rcx untouched");
        assert_eq!(after.gpr[RDI], DEV + size as u64, "{asm}");
        assert_eq!(after.gpr[RSI], if movs { RAM + size as u64 } else { RAM }, "{asm}");
    }
}

#[test]
fn a_fault_mid_way_leaves_the_registers_at_the_faulting_element() {
    for (insn, asm, size) in REP_STOS {
        let start = DEV;
        let r = string_regs(0, start, 8, false);
        let mut bus = FakeBus::new();
        // The third element's page was revoked.
        let faulting = start + 2 * size as u64;
        bus.fault_write_at = Some(faulting);
        let mut after = r;
        let res = run(insn, &mut after, start, &mut bus);
        assert_eq!(res, Err(TrapError::Fault(sigbus(faulting))), "{asm}");
        assert_eq!(bus.log.len(), 2, "{asm}: two elements done");
        assert_eq!(after.gpr[RDI], faulting, "{asm}");
        assert_eq!(after.gpr[RCX], 6, "{asm}: six elements left");
        assert_eq!(after.rip, RIP, "{asm}: rip stays at the instruction");
    }
    // movs whose source read faults: the element is not written.
    let r = string_regs(DEV + 0x10, RAM, 4, false);
    let mut bus = FakeBus::new();
    bus.fault_read_at = Some(DEV + 0x14);
    let mut after = r;
    let res = run(&[0xf3, 0xa5], &mut after, DEV + 0x10, &mut bus);
    assert_eq!(res, Err(TrapError::Fault(sigbus(DEV + 0x14))));
    assert_eq!((after.gpr[RSI], after.gpr[RDI], after.gpr[RCX]), (DEV + 0x14, RAM + 4, 3));
    assert_eq!(bus.log.len(), 2, "one read and one write");
}

#[test]
fn work_in_ordinary_memory_past_the_device_is_handed_back_to_the_processor() {
    // rep stosd over the last 2 device elements and 3 ordinary ones.
    let start = DEV + 0x2000 - 8;
    let r = string_regs(0, start, 5, false);
    let mut bus = FakeBus::new();
    let mut after = r;
    let res = run(&[0xf3, 0xab], &mut after, start, &mut bus);
    assert_eq!(res, Ok(Resume { rip: RIP }), "resume at the instruction itself");
    assert_eq!(after.rip, RIP);
    assert_eq!(bus.log.len(), 2);
    assert_eq!((after.gpr[RDI], after.gpr[RCX]), (RAM, 3));
    // Going down from the first device page into the page before it.
    let r = string_regs(0, DEV + 4, 5, true);
    let mut after = r;
    let mut bus = FakeBus::new();
    assert_eq!(run(&[0xf3, 0xab], &mut after, DEV, &mut bus), Ok(Resume { rip: RIP }));
    assert_eq!((after.gpr[RDI], after.gpr[RCX]), (DEV - 4, 3));
}

#[test]
fn ordinary_elements_before_the_faulting_device_element_are_done_first() {
    // The processor may report the fault ahead of rdi: rdi still in the
    // ordinary page, the fault on the device page after 2 elements.
    let start = DEV - 8;
    let r = string_regs(0, start, 4, false);
    let mut bus = FakeBus::new();
    let after = run_ok(&[0xf3, 0xab], r, DEV, &mut bus);
    assert_eq!(bus.log.len(), 4);
    assert_eq!(bus.device_log().len(), 2);
    assert_eq!((after.gpr[RDI], after.gpr[RCX]), (DEV + 8, 0));
}

#[test]
fn the_fault_must_lie_in_the_remaining_elements() {
    // rep stosd of 4 from DEV + 0x100: [0x100, 0x110) up.
    let r = string_regs(0, DEV + 0x100, 4, false);
    assert_refused(&[0xf3, 0xab], r, DEV + 0x110, Reason::AddressMismatch { computed: DEV + 0x100 });
    let mut bus = FakeBus::new();
    run_ok(&[0xf3, 0xab], r, DEV + 0x10c, &mut bus);
    // Down: [0xf4, 0x104).
    let r = string_regs(0, DEV + 0x100, 4, true);
    assert_refused(&[0xf3, 0xab], r, DEV + 0x104, Reason::AddressMismatch { computed: DEV + 0x100 });
    let mut bus = FakeBus::new();
    run_ok(&[0xf3, 0xab], r, DEV + 0xf4, &mut bus);
    // Nothing left to do cannot have faulted.
    let r = string_regs(0, DEV, 0, false);
    assert_refused(&[0xf3, 0xab], r, DEV, Reason::AddressMismatch { computed: DEV });
}

#[test]
fn misaligned_device_elements_are_refused_and_ordinary_ones_are_not() {
    // rep stosd to a misaligned device address: refused before anything.
    let r = string_regs(0, DEV + 2, 4, false);
    assert_refused(&[0xf3, 0xab], r, DEV + 2, Reason::Misaligned { addr: DEV + 2, width: 4 });
    // rep movsd from misaligned ordinary memory to an aligned device
    // address: the ordinary side has no rule.
    let r = string_regs(RAM + 1, DEV, 2, false);
    let mut bus = FakeBus::new();
    let after = run_ok(&[0xf3, 0xa5], r, DEV, &mut bus);
    assert_eq!(after.gpr[RCX], 0);
}

#[test]
fn other_prefixes_and_segments_are_refused() {
    let r = string_regs(RAM, DEV, 4, false);
    // repne stosb
    assert_refused(&[0xf2, 0xaa], r, DEV, Reason::NotEmulated);
    // rep stosd [edi] (32-bit addressing)
    assert_refused(&[0x67, 0xf3, 0xab], r, DEV, Reason::AddressSize);
    // rep movsb from fs:[rsi]
    assert_refused(&[0x64, 0xf3, 0xa4], r, DEV, Reason::SegmentBase);
}
