//! `mov`, `movnti`, `movzx`, `movsx`, `movsxd`, and the refusals shared by
//! every family (address checks, prefixes, undecodable bytes).

use super::*;
use crate::trap::x86::gpr::{RAX, RBP, RBX, RCX, RDI, RDX, RSI, RSP};

const D: u64 = DEV + 0x100;

#[test]
fn stores_of_every_width_write_the_register_once() {
    // (bytes, assembly, width, value stored from regs())
    let r = regs();
    let cases: [(&[u8], &str, usize, u64); 8] = [
        (&[0x88, 0x07], "mov [rdi], al", 1, r.gpr[RAX] & 0xff),
        (&[0x88, 0x27], "mov [rdi], ah", 1, (r.gpr[RAX] >> 8) & 0xff),
        (&[0x88, 0x3f], "mov [rdi], bh", 1, (r.gpr[RBX] >> 8) & 0xff),
        (&[0x40, 0x88, 0x37], "mov [rdi], sil", 1, r.gpr[RSI] & 0xff),
        (&[0x44, 0x88, 0x0f], "mov [rdi], r9b", 1, r.gpr[9] & 0xff),
        (&[0x66, 0x89, 0x0f], "mov [rdi], cx", 2, r.gpr[RCX] & 0xffff),
        (&[0x89, 0x17], "mov [rdi], edx", 4, r.gpr[RDX] & 0xffff_ffff),
        (&[0x48, 0x89, 0x1f], "mov [rdi], rbx", 8, r.gpr[RBX]),
    ];
    for (insn, asm, size, value) in cases {
        let mut bus = FakeBus::new();
        let after = run_ok(insn, regs(), D, &mut bus);
        assert_eq!(bus.log, vec![Access::Write { addr: D, size, value }], "{asm}");
        assert_eq!(after.gpr, regs().gpr, "{asm}: a store changes no register");
        assert_eq!(after.rflags, regs().rflags, "{asm}");
    }
    // The high-byte registers name other bits than the low ones.
    assert_ne!(r.gpr[RAX] & 0xff, (r.gpr[RAX] >> 8) & 0xff);
}

#[test]
fn a_store_through_r13_uses_the_disp8_form() {
    // mov [r13+0], r14: r13 as base always carries a displacement.
    let mut r = regs();
    r.gpr[13] = D;
    let mut bus = FakeBus::new();
    run_ok(&[0x4d, 0x89, 0x75, 0x00], r, D, &mut bus);
    assert_eq!(bus.log, vec![Access::Write { addr: D, size: 8, value: r.gpr[14] }]);
}

#[test]
fn loads_zero_extend_32_bit_destinations_and_merge_narrower_ones() {
    let value = 0x8877_6655_4433_2211u64;
    // (bytes, assembly, destination index, width, expected register)
    let r = regs();
    let cases: [(&[u8], &str, usize, usize, u64); 9] = [
        (&[0x8a, 0x07], "mov al, [rdi]", RAX, 1, (r.gpr[RAX] & !0xff) | 0x11),
        (&[0x8a, 0x2f], "mov ch, [rdi]", RCX, 1, (r.gpr[RCX] & !0xff00) | 0x1100),
        (&[0x40, 0x8a, 0x3e], "mov dil, [rsi]", RDI, 1, (r.gpr[RDI] & !0xff) | 0x11),
        (&[0x44, 0x8a, 0x17], "mov r10b, [rdi]", 10, 1, (r.gpr[10] & !0xff) | 0x11),
        (&[0x66, 0x8b, 0x07], "mov ax, [rdi]", RAX, 2, (r.gpr[RAX] & !0xffff) | 0x2211),
        (&[0x66, 0x44, 0x8b, 0x1f], "mov r11w, [rdi]", 11, 2, (r.gpr[11] & !0xffff) | 0x2211),
        (&[0x8b, 0x07], "mov eax, [rdi]", RAX, 4, 0x4433_2211),
        (&[0x44, 0x8b, 0x27], "mov r12d, [rdi]", 12, 4, 0x4433_2211),
        (&[0x48, 0x8b, 0x07], "mov rax, [rdi]", RAX, 8, value),
    ];
    for (insn, asm, dest, size, expected) in cases {
        let mut r = regs();
        // `mov dil, [rsi]` loads through rsi: point it at the device.
        let addr = if insn == [0x40, 0x8a, 0x3e] {
            r.gpr[RSI] = D;
            D
        } else {
            D
        };
        let mut bus = FakeBus::new();
        bus.poke(addr, 8, u128::from(value));
        let after = run_ok(insn, r, addr, &mut bus);
        assert_eq!(after.gpr[dest], expected, "{asm}");
        assert_eq!(bus.log, vec![Access::Read { addr, size, value: value & super::super::regs::mask(size) }], "{asm}");
        let mut others = after.gpr;
        others[dest] = r.gpr[dest];
        assert_eq!(others, r.gpr, "{asm}: only the destination changes");
    }
}

#[test]
fn sib_and_displacement_forms_compute_the_address() {
    // mov r15, [rdi + rcx*8 + 0x10]
    let mut r = regs();
    r.gpr[RDI] = DEV;
    r.gpr[RCX] = 3;
    let addr = DEV + 3 * 8 + 0x10;
    let mut bus = FakeBus::new();
    bus.poke(addr, 8, 0xfeed);
    let after = run_ok(&[0x4c, 0x8b, 0x7c, 0xcf, 0x10], r, addr, &mut bus);
    assert_eq!(after.gpr[15], 0xfeed);
    // mov [rbp-8], esi and mov [rsp+4], esi
    let mut r = regs();
    r.gpr[RBP] = D + 8;
    r.gpr[RSP] = D - 4;
    let mut bus = FakeBus::new();
    run_ok(&[0x89, 0x75, 0xf8], r, D, &mut bus);
    run_ok(&[0x89, 0x74, 0x24, 0x04], r, D, &mut bus);
    let esi = r.gpr[RSI] & 0xffff_ffff;
    assert_eq!(
        bus.log,
        vec![Access::Write { addr: D, size: 4, value: esi }, Access::Write { addr: D, size: 4, value: esi }]
    );
}

#[test]
fn rip_relative_operands_are_relative_to_the_next_instruction() {
    // mov eax, [rip+0x100] (6 bytes): target = rip + 6 + 0x100.
    let mut r = regs();
    r.rip = D - 6 - 0x100;
    let mut bus = FakeBus::new();
    bus.poke(D, 4, 0xcafe);
    let after = run_ok(&[0x8b, 0x05, 0x00, 0x01, 0x00, 0x00], r, D, &mut bus);
    assert_eq!(after.gpr[RAX], 0xcafe);
    // mov [rip-0x20], ecx
    let mut r = regs();
    r.rip = D - 6 + 0x20;
    let mut bus = FakeBus::new();
    run_ok(&[0x89, 0x0d, 0xe0, 0xff, 0xff, 0xff], r, D, &mut bus);
    assert_eq!(bus.log, vec![Access::Write { addr: D, size: 4, value: r.gpr[RCX] & 0xffff_ffff }]);
}

/// `mov` with a 64-bit absolute address (`moffs`): opcode, then the
/// address.
fn moffs(prefix: &[u8], opcode: u8, addr: u64) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.push(opcode);
    v.extend_from_slice(&addr.to_le_bytes());
    v
}

#[test]
fn moffs_forms_load_and_store_the_accumulator() {
    let value = 0x0102_0304_0506_0708u64;
    let r = regs();
    // Loads: mov al/ax/eax/rax, [moffs]
    let loads: [(Vec<u8>, u64); 4] = [
        (moffs(&[], 0xa0, D), (r.gpr[RAX] & !0xff) | 0x08),
        (moffs(&[0x66], 0xa1, D), (r.gpr[RAX] & !0xffff) | 0x0708),
        (moffs(&[], 0xa1, D), 0x0506_0708),
        (moffs(&[0x48], 0xa1, D), value),
    ];
    for (insn, expected) in loads {
        let mut bus = FakeBus::new();
        bus.poke(D, 8, u128::from(value));
        let after = run_ok(&insn, r, D, &mut bus);
        assert_eq!(after.gpr[RAX], expected, "{insn:02x?}");
    }
    // Stores: mov [moffs], al/ax/eax/rax
    let stores: [(Vec<u8>, usize); 4] = [
        (moffs(&[], 0xa2, D), 1),
        (moffs(&[0x66], 0xa3, D), 2),
        (moffs(&[], 0xa3, D), 4),
        (moffs(&[0x48], 0xa3, D), 8),
    ];
    for (insn, size) in stores {
        let mut bus = FakeBus::new();
        run_ok(&insn, r, D, &mut bus);
        let value = r.gpr[RAX] & super::super::regs::mask(size);
        assert_eq!(bus.log, vec![Access::Write { addr: D, size, value }], "{insn:02x?}");
    }
}

#[test]
fn immediate_stores_sign_extend_as_encoded() {
    let cases: [(&[u8], &str, usize, u64); 5] = [
        (&[0xc6, 0x07, 0x5a], "mov byte [rdi], 0x5a", 1, 0x5a),
        (&[0x66, 0xc7, 0x07, 0x34, 0x12], "mov word [rdi], 0x1234", 2, 0x1234),
        (&[0xc7, 0x07, 0xef, 0xcd, 0xab, 0x89], "mov dword [rdi], 0x89abcdef", 4, 0x89ab_cdef),
        (&[0x48, 0xc7, 0x07, 0xfe, 0xff, 0xff, 0xff], "mov qword [rdi], -2", 8, (-2i64) as u64),
        (&[0x48, 0xc7, 0x07, 0xff, 0xff, 0xff, 0x7f], "mov qword [rdi], 0x7fffffff", 8, 0x7fff_ffff),
    ];
    for (insn, asm, size, value) in cases {
        let mut bus = FakeBus::new();
        run_ok(insn, regs(), D, &mut bus);
        assert_eq!(bus.log, vec![Access::Write { addr: D, size, value }], "{asm}");
    }
}

#[test]
fn widening_loads_extend_by_their_kind() {
    // Memory holds 0x80 / 0x8000 / 0x80000000 patterns: sign bits set.
    let value = 0x8000_8080u64;
    let r = regs();
    let cases: [(&[u8], &str, u64); 11] = [
        (&[0x0f, 0xb6, 0x07], "movzx eax, byte [rdi]", 0x80),
        (&[0x66, 0x0f, 0xb6, 0x07], "movzx ax, byte [rdi]", (r.gpr[RAX] & !0xffff) | 0x80),
        (&[0x48, 0x0f, 0xb6, 0x07], "movzx rax, byte [rdi]", 0x80),
        (&[0x0f, 0xb7, 0x07], "movzx eax, word [rdi]", 0x8080),
        (&[0x48, 0x0f, 0xb7, 0x07], "movzx rax, word [rdi]", 0x8080),
        (&[0x0f, 0xbe, 0x07], "movsx eax, byte [rdi]", 0xffff_ff80),
        (&[0x66, 0x0f, 0xbe, 0x07], "movsx ax, byte [rdi]", (r.gpr[RAX] & !0xffff) | 0xff80),
        (&[0x48, 0x0f, 0xbe, 0x07], "movsx rax, byte [rdi]", 0xffff_ffff_ffff_ff80),
        (&[0x0f, 0xbf, 0x07], "movsx eax, word [rdi]", 0xffff_8080),
        (&[0x48, 0x0f, 0xbf, 0x07], "movsx rax, word [rdi]", 0xffff_ffff_ffff_8080),
        (&[0x48, 0x63, 0x07], "movsxd rax, dword [rdi]", 0xffff_ffff_8000_8080),
    ];
    for (insn, asm, expected) in cases {
        let mut bus = FakeBus::new();
        bus.poke(D, 4, u128::from(value));
        let after = run_ok(insn, r, D, &mut bus);
        assert_eq!(after.gpr[RAX], expected, "{asm}");
        assert_eq!(bus.log.len(), 1, "{asm}: one read");
    }
}

#[test]
fn movnti_stores_like_mov() {
    let r = regs();
    let mut bus = FakeBus::new();
    run_ok(&[0x0f, 0xc3, 0x07], r, D, &mut bus);
    run_ok(&[0x48, 0x0f, 0xc3, 0x07], r, D, &mut bus);
    assert_eq!(
        bus.log,
        vec![
            Access::Write { addr: D, size: 4, value: r.gpr[RAX] & 0xffff_ffff },
            Access::Write { addr: D, size: 8, value: r.gpr[RAX] },
        ]
    );
}

#[test]
fn the_fault_address_must_be_inside_the_operand() {
    // mov eax, [rdi] with the fault 4 bytes on: the bytes and the fault
    // disagree.
    assert_refused(&[0x8b, 0x07], regs(), D + 4, Reason::AddressMismatch { computed: D });
    // Any byte of the operand may be the reported one.
    let mut bus = FakeBus::new();
    run_ok(&[0x8b, 0x07], regs(), D + 3, &mut bus);
}

#[test]
fn a_fault_outside_device_pages_is_not_ours() {
    let mut r = regs();
    r.gpr[RDI] = RAM;
    assert_refused(&[0x8b, 0x07], r, RAM, Reason::NotDevice);
}

#[test]
fn segment_and_address_size_overrides_are_refused_or_ignored() {
    assert_refused(&[0x64, 0x8b, 0x07], regs(), D, Reason::SegmentBase);
    assert_refused(&[0x65, 0x8b, 0x07], regs(), D, Reason::SegmentBase);
    assert_refused(&[0x67, 0x8b, 0x07], regs(), D, Reason::AddressSize);
    // 32-bit moffs: a0 with 0x67 takes a 4-byte address.
    let mut insn = vec![0x67, 0xa0];
    insn.extend_from_slice(&(D as u32).to_le_bytes());
    assert_refused(&insn, regs(), D, Reason::AddressSize);
    // es: has base 0 in 64-bit mode.
    let mut bus = FakeBus::new();
    bus.poke(D, 4, 7);
    assert_eq!(run_ok(&[0x26, 0x8b, 0x07], regs(), D, &mut bus).gpr[RAX], 7);
}

#[test]
fn instructions_outside_the_set_are_refused_with_their_mnemonic() {
    // (bytes, mnemonic) — prefetcht0 [rdi]; shl dword [rdi], 1;
    // cmpxchg [rdi], ecx; mov [rdi], ds; mov ds, [rdi]; lodsb;
    // vmovdqu ymm1, [rdi]; vmovdqu32 xmm1, [rdi] (EVEX); movq mm1, [rdi].
    let cases: [(&[u8], &str); 9] = [
        (&[0x0f, 0x18, 0x0f], "prefetcht0"),
        (&[0xd1, 0x27], "shl"),
        (&[0x0f, 0xb1, 0x0f], "cmpxchg"),
        (&[0x8c, 0x1f], "mov"),
        (&[0x8e, 0x1f], "mov"),
        (&[0xac], "lodsb"),
        (&[0xc5, 0xfe, 0x6f, 0x0f], "vmovdqu"),
        (&[0x62, 0xf1, 0x7e, 0x08, 0x6f, 0x0f], "vmovdqu32"),
        (&[0x0f, 0x6f, 0x0f], "movq"),
    ];
    for (insn, name) in cases {
        let mut r = regs();
        r.gpr[RSI] = D;
        let mut bus = FakeBus::new();
        let before = r;
        match run(insn, &mut r, D, &mut bus) {
            Err(TrapError::Unsupported(d)) => {
                assert_eq!(d.reason, Reason::NotEmulated, "{name}");
                assert_eq!(d.mnemonic(), name);
                assert_eq!(d.bytes(), insn);
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(r, before);
        assert!(bus.log.is_empty(), "{name}");
    }
}

#[test]
fn undecodable_and_truncated_bytes_are_refused() {
    // ud2 decodes but is not emulated; 0x06 (push es) is invalid in 64-bit
    // mode; 8b alone lacks its ModRM byte.
    for insn in [&[0x06][..], &[0x8b][..], &[][..], &[0x48][..]] {
        let mut r = regs();
        let mut bus = FakeBus::new();
        match run(insn, &mut r, D, &mut bus) {
            Err(TrapError::Unsupported(d)) => {
                assert_eq!(d.reason, Reason::Undecodable);
                assert_eq!(d.mnemonic(), "invalid");
                assert_eq!(d.bytes(), insn);
            }
            other => panic!("{insn:02x?}: {other:?}"),
        }
    }
    assert_refused(&[0x0f, 0x0b], regs(), D, Reason::NotEmulated);
}

#[test]
fn only_the_first_fifteen_bytes_are_decoded() {
    // Sixteen bytes: 14 operand-size prefixes and mov eax, [rdi] would be
    // 16 long, past the architectural limit.
    let mut insn = vec![0x66; 14];
    insn.extend_from_slice(&[0x8b, 0x07]);
    assert_refused(&insn, regs(), D, Reason::Undecodable);
    // Trailing bytes after a whole instruction are ignored.
    let mut bus = FakeBus::new();
    let mut r = regs();
    let res = run(&[0x8b, 0x07, 0xff, 0xff, 0xff], &mut r, D, &mut bus);
    assert_eq!(res, Ok(Resume { rip: RIP + 2 }));
}

#[test]
fn misaligned_and_page_crossing_device_accesses_are_refused() {
    let mut r = regs();
    r.gpr[RDI] = DEV + 0x502;
    assert_refused(&[0x8b, 0x07], r, DEV + 0x502, Reason::Misaligned { addr: DEV + 0x502, width: 4 });
    // From the device's last bytes into the ordinary page after it.
    r.gpr[RDI] = DEV + 0x1ffe;
    assert_refused(&[0x8b, 0x07], r, DEV + 0x1ffe, Reason::CrossesPage { addr: DEV + 0x1ffe, width: 4 });
    // From an ordinary page into the device: the fault is the device's
    // first byte.
    r.gpr[RDI] = DEV - 2;
    assert_refused(&[0x89, 0x07], r, DEV, Reason::CrossesPage { addr: DEV - 2, width: 4 });
    // Between the two device pages.
    r.gpr[RDI] = DEV + 0xffc;
    assert_refused(&[0x48, 0x8b, 0x07], r, DEV + 0xffc, Reason::CrossesPage { addr: DEV + 0xffc, width: 8 });
    // Byte accesses are always aligned.
    let mut bus = FakeBus::new();
    r.gpr[RDI] = DEV + 0x1fff;
    run_ok(&[0x8a, 0x07], r, DEV + 0x1fff, &mut bus);
}

#[test]
fn a_faulting_device_access_changes_no_register() {
    let mut bus = FakeBus::new();
    bus.fault_read_at = Some(D);
    let mut r = regs();
    let before = r;
    assert_eq!(run(&[0x48, 0x8b, 0x07], &mut r, D, &mut bus), Err(TrapError::Fault(sigbus(D))));
    assert_eq!(r, before);
    bus.fault_write_at = Some(D);
    assert_eq!(run(&[0x89, 0x17], &mut r, D, &mut bus), Err(TrapError::Fault(sigbus(D))));
    assert_eq!(r, before);
}
