//! A program that installs its own SIGBUS handler after ours: the next
//! register mapping puts ours back in front, accesses through it are
//! emulated without the program's handler running, and a revoked access
//! reaches the program's handler as SIGBUS `BUS_ADRERR`.
#![cfg(target_arch = "x86_64")]
#![allow(unsafe_code)]

mod common;

use std::arch::asm;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use common::regs::{map_registers, Device};
use mm::{probe, AddressSpace, Width};

static SEEN: AtomicUsize = AtomicUsize::new(0);
static SEEN_CODE: AtomicI64 = AtomicI64::new(0);

/// Records the signal and skips the 2-byte `mov eax, [rdi]` that raised it.
extern "C" fn program_handler(_signo: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes valid siginfo and ucontext to an SA_SIGINFO
    // handler; only the instruction pointer is changed.
    unsafe {
        SEEN.fetch_add(1, Ordering::SeqCst);
        SEEN_CODE.store(i64::from((*info).si_code), Ordering::SeqCst);
        (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RIP as usize] += 2;
    }
}

fn load32(va: u64) -> u64 {
    let out: u64;
    // SAFETY: a load from our register mapping: emulated, or skipped by the
    // program's handler.
    unsafe { asm!("xor eax, eax", "mov eax, dword ptr [rdi]", in("rdi") va, out("rax") out, options(nostack)) };
    out
}

#[test]
fn a_handler_installed_after_ours_is_chained_from_the_next_register_mapping() {
    let aspace = AddressSpace::new().unwrap();
    // SAFETY: sigaction(2) with a zeroed, then filled, struct.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = program_handler as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut act.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut()), 0);
    }
    let dev = Device::new();
    let va = map_registers(&aspace, &dev, 0, 1);
    probe::write(va + 0x10, Width::U32, 0x5a5a).unwrap();
    assert_eq!(load32(va + 0x10), 0x5a5a);
    assert_eq!(SEEN.load(Ordering::SeqCst), 0, "emulated: the program's handler did not run");
    dev.revoked.store(true, Ordering::SeqCst);
    assert_eq!(load32(va + 0x10), 0);
    assert_eq!(SEEN.load(Ordering::SeqCst), 1);
    assert_eq!(SEEN_CODE.load(Ordering::SeqCst), i64::from(libc::BUS_ADRERR));
}
