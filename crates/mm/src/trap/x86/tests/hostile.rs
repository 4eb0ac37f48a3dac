//! Hostile input: arbitrary instruction bytes over registers that point at
//! the device (aligned or not, near a page end or not). Whatever the bytes,
//! the emulation ends with a defined outcome, never a device access the
//! policy forbids, and never a register write on a refusal.

use proptest::prelude::*;

use super::*;
use crate::trap::x86::operand::check_device_policy;

/// Leading bytes that make memory-operand instructions likely: the
/// families emulated, their neighbours, and prefixes.
const LEADS: &[&[u8]] = &[
    &[0x88],
    &[0x89],
    &[0x8a],
    &[0x8b],
    &[0xc6],
    &[0xc7],
    &[0x00],
    &[0x01],
    &[0x03],
    &[0x11],
    &[0x19],
    &[0x21],
    &[0x29],
    &[0x31],
    &[0x39],
    &[0x3b],
    &[0x80],
    &[0x81],
    &[0x83],
    &[0x84],
    &[0x85],
    &[0x86],
    &[0x87],
    &[0xf6],
    &[0xf7],
    &[0xfe],
    &[0xff],
    &[0xa0],
    &[0xa1],
    &[0xa2],
    &[0xa3],
    &[0xa4],
    &[0xa5],
    &[0xaa],
    &[0xab],
    &[0xac],
    &[0x0f, 0xb6],
    &[0x0f, 0xb7],
    &[0x0f, 0xbe],
    &[0x0f, 0xbf],
    &[0x63],
    &[0x0f, 0xc3],
    &[0x0f, 0x10],
    &[0x0f, 0x11],
    &[0x0f, 0x28],
    &[0x0f, 0x29],
    &[0x0f, 0x12],
    &[0x0f, 0x17],
    &[0x66],
    &[0x67],
    &[0xf2],
    &[0xf3],
    &[0xf0],
    &[0x48],
    &[0x4c],
    &[0x64],
    &[0xc5],
    &[0xc4],
    &[0x62],
    &[0x0f, 0x6f],
    &[0x0f, 0x7f],
    &[0x0f, 0xe7],
    &[0x0f, 0x6e],
    &[0x0f, 0x7e],
    &[0x0f, 0xd6],
];

fn insn() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(proptest::sample::select(LEADS.to_vec()), 1..3),
        proptest::collection::vec(any::<u8>(), 0..14),
    )
        .prop_map(|(leads, tail)| {
            let mut v: Vec<u8> = leads.concat();
            v.extend(tail);
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_a_defined_outcome(
        insn in insn(),
        // Where every general register points: near the start, the middle
        // or the end of the device, any alignment.
        target in prop_oneof![DEV..DEV + 0x20, DEV + 0xff0..DEV + 0x1010, DEV + 0x1fe0..DEV + 0x2000],
        fault_delta in 0u64..8,
        rcx in 0u64..40,
        down in any::<bool>(),
    ) {
        let mut r = regs();
        r.gpr = [target; 16];
        r.gpr[crate::trap::x86::gpr::RCX] = rcx;
        if down {
            r.rflags |= crate::trap::x86::regs::EFLAGS_DF;
        }
        let before = r;
        let mut bus = FakeBus::new();
        let fault_addr = target + fault_delta;
        let res = run(&insn, &mut r, fault_addr, &mut bus);
        // Every access touching the device obeyed the policy.
        for access in &bus.log {
            let (Access::Read { addr, size, .. } | Access::Write { addr, size, .. }) = *access;
            if bus.is_device(addr) || bus.is_device(addr + size as u64 - 1) {
                prop_assert_eq!(check_device_policy(addr, size), Ok(()), "{:02x?}", insn);
            }
        }
        match res {
            Ok(resume) => {
                prop_assert_eq!(resume.rip, r.rip);
                prop_assert!(r.rip > before.rip && r.rip <= before.rip + 15 || r.rip == before.rip);
                prop_assert!(!bus.log.is_empty(), "{:02x?} emulated without an access", insn);
            }
            Err(TrapError::Unsupported(d)) => {
                prop_assert_eq!(d.ip, before.rip);
                if bus.log.is_empty() {
                    prop_assert_eq!(r, before, "{:02x?}: refused but changed registers", insn);
                }
            }
            Err(TrapError::Fault(f)) => {
                // The fake faults only outside its window.
                prop_assert_eq!(f.signo, libc::SIGSEGV, "{:02x?}", insn);
            }
        }
    }
}
