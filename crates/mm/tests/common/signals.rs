//! A program's own SIGBUS handler for the signal tests: it records what it
//! saw and skips the faulting instruction, and a load the tests trap with.
#![allow(unsafe_code)]

use std::arch::asm;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Signals the program's handler saw, and what the last one said.
pub static SEEN: AtomicUsize = AtomicUsize::new(0);
pub static SEEN_CODE: AtomicI64 = AtomicI64::new(0);
pub static SEEN_ADDR: AtomicU64 = AtomicU64::new(0);
/// How many bytes the program's handler skips (the faulting instruction).
pub static SKIP: AtomicU64 = AtomicU64::new(2);

/// The program's own handler: records the signal and skips the instruction.
pub extern "C" fn program_handler(_signo: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes valid siginfo and ucontext to an SA_SIGINFO
    // handler; only the instruction pointer is changed.
    unsafe {
        SEEN.fetch_add(1, Ordering::SeqCst);
        SEEN_CODE.store(i64::from((*info).si_code), Ordering::SeqCst);
        SEEN_ADDR.store((*info).si_addr() as u64, Ordering::SeqCst);
        let uc = ctx.cast::<libc::ucontext_t>();
        (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] += SKIP.load(Ordering::SeqCst) as i64;
    }
}

/// Installs [`program_handler`] for SIGBUS, replacing whatever is there.
pub fn install_program_handler() {
    // SAFETY: sigaction(2) with a zeroed, then filled, struct.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = program_handler as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut act.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut()), 0);
    }
}

/// `mov eax, dword ptr [rdi]` (8b 07, 2 bytes); 0 when the program's
/// handler skipped it.
pub fn load32(va: u64) -> u64 {
    let out: u64;
    // SAFETY: a load from a register mapping of the test: emulated, or
    // skipped by the program's handler.
    unsafe { asm!("xor eax, eax", "mov eax, dword ptr [rdi]", in("rdi") va, out("rax") out, options(nostack)) };
    out
}
