//! Trap-and-emulate seen by a program with its own SIGBUS handler,
//! installed before ours: plain loads, stores and vector moves through a
//! register mapping are emulated (the program's handler never runs, the
//! destination registers hold the device's values, a VEX load clears the
//! upper half of its YMM register); a revoked access and an instruction
//! outside the emulated set reach the program's handler as SIGBUS
//! `BUS_ADRERR` at the accessed address.
#![cfg(target_arch = "x86_64")]
#![allow(unsafe_code)]

mod common;

use std::arch::asm;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Once};

use common::regs::{map_registers, Device};
use common::signals::{install_program_handler, load32, SEEN, SEEN_ADDR, SEEN_CODE, SKIP};
use mm::probe;
use mm::{AddressSpace, Width};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Installs the program's handler, then ours (by creating an address
/// space), once; serialises the tests, which share the counters.
fn setup() -> (MutexGuard<'static, ()>, AddressSpace, Arc<Device>, u64) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        install_program_handler();
    });
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let aspace = AddressSpace::new().unwrap();
    let dev = Device::new();
    let va = map_registers(&aspace, &dev, 0, 1);
    SEEN.store(0, Ordering::SeqCst);
    (guard, aspace, dev, va)
}

#[test]
fn plain_loads_and_stores_are_emulated_without_the_programs_handler() {
    let (_g, _aspace, dev, va) = setup();
    probe::write(va + 0x10, Width::U32, 0xcafe_f00d).unwrap();
    assert_eq!(load32(va + 0x10), 0xcafe_f00d);
    // `mov qword ptr [rdi], rsi` then `add dword ptr [rdi], 1` (a
    // read-modify-write: one read, one write).
    // SAFETY: stores to our register mapping, emulated.
    unsafe {
        asm!("mov qword ptr [rdi], rsi", "add dword ptr [rdi], 1", in("rdi") va + 0x20, in("rsi") 0x1111_2222_ffff_ffffu64, options(nostack));
    }
    assert_eq!(probe::read(va + 0x20, Width::U64).unwrap(), 0x1111_2222_0000_0000);
    assert_eq!(SEEN.load(Ordering::SeqCst), 0, "the program's handler never ran");
    assert!(dev.accesses.load(Ordering::SeqCst) >= 5);
}

#[test]
fn vector_loads_fill_the_register_and_clear_what_the_instruction_clears() {
    let (_g, _aspace, _dev, va) = setup();
    probe::write(va + 0x40, Width::U64, 0x0123_4567_89ab_cdef).unwrap();
    probe::write(va + 0x48, Width::U64, 0xfedc_ba98_7654_3210).unwrap();
    let (lo, hi): (u64, u64);
    // SAFETY: a 128-bit load from our register mapping, emulated; the
    // other instructions only move between registers.
    unsafe {
        asm!(
            "pcmpeqb xmm0, xmm0",
            "movdqu xmm0, xmmword ptr [rdi]",
            "movq {lo}, xmm0",
            "punpckhqdq xmm0, xmm0",
            "movq {hi}, xmm0",
            in("rdi") va + 0x40, lo = out(reg) lo, hi = out(reg) hi, out("xmm0") _, options(nostack),
        );
    }
    assert_eq!((lo, hi), (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210));
    // `movq xmm0, [m]` zeroes bits 127:64.
    let (lo, hi): (u64, u64);
    // SAFETY: as above.
    unsafe {
        asm!(
            "pcmpeqb xmm0, xmm0",
            "movq xmm0, qword ptr [rdi]",
            "movq {lo}, xmm0",
            "punpckhqdq xmm0, xmm0",
            "movq {hi}, xmm0",
            in("rdi") va + 0x48, lo = out(reg) lo, hi = out(reg) hi, out("xmm0") _, options(nostack),
        );
    }
    assert_eq!((lo, hi), (0xfedc_ba98_7654_3210, 0));
    if std::arch::is_x86_feature_detected!("avx2") {
        // A VEX load zeroes bits 255:128 of the YMM register: the state in
        // the signal frame's XSAVE area is written back.
        let (lo, upper): (u64, u64);
        // SAFETY: as above, with AVX2 present.
        unsafe {
            asm!(
                "vpcmpeqb ymm0, ymm0, ymm0",
                "vmovq xmm0, qword ptr [rdi]",
                "vmovq {lo}, xmm0",
                "vextracti128 xmm1, ymm0, 1",
                "vmovq {upper}, xmm1",
                "vzeroupper",
                in("rdi") va + 0x40, lo = out(reg) lo, upper = out(reg) upper,
                out("xmm0") _, out("xmm1") _, options(nostack),
            );
        }
        assert_eq!((lo, upper), (0x0123_4567_89ab_cdef, 0));
    }
    assert_eq!(SEEN.load(Ordering::SeqCst), 0);
}

#[test]
fn a_revoked_access_reaches_the_programs_handler_as_bus_adrerr() {
    let (_g, _aspace, dev, va) = setup();
    dev.revoked.store(true, Ordering::SeqCst);
    SKIP.store(2, Ordering::SeqCst);
    assert_eq!(load32(va + 0x30), 0, "the program's handler skipped the load");
    assert_eq!(SEEN.load(Ordering::SeqCst), 1);
    assert_eq!(SEEN_CODE.load(Ordering::SeqCst), i64::from(libc::BUS_ADRERR));
    assert_eq!(SEEN_ADDR.load(Ordering::SeqCst), va + 0x30);
    dev.revoked.store(false, Ordering::SeqCst);
    assert_eq!(load32(va + 0x30), 0);
    assert_eq!(SEEN.load(Ordering::SeqCst), 1, "emulated again once un-revoked");
}

#[test]
fn an_instruction_outside_the_set_raises_sigbus_and_touches_no_register() {
    let (_g, _aspace, dev, va) = setup();
    let before = dev.accesses.load(Ordering::SeqCst);
    // `lock cmpxchg dword ptr [rdi], ecx` (f0 0f b1 0f): not emulated.
    SKIP.store(4, Ordering::SeqCst);
    // SAFETY: an access to our register mapping that the program's handler
    // skips.
    unsafe {
        asm!("lock cmpxchg dword ptr [rdi], ecx", in("rdi") va + 0x50, in("ecx") 7, inout("eax") 0 => _, options(nostack));
    }
    assert_eq!(SEEN.load(Ordering::SeqCst), 1);
    assert_eq!(SEEN_CODE.load(Ordering::SeqCst), i64::from(libc::BUS_ADRERR));
    assert_eq!(SEEN_ADDR.load(Ordering::SeqCst), va + 0x50);
    assert_eq!(dev.accesses.load(Ordering::SeqCst), before, "no device access was made");
}
