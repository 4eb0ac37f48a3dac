//! The program's SIGBUS action recorded behind ours through
//! `probe::program_sigaction` (what a preload library's `sigaction` calls):
//! the kernel's action stays ours, the recorded one is reported back as the
//! old action, and a SIGBUS we do not take (a real one, from a mapping of a
//! file cut short) reaches it with the kernel's `siginfo_t`.
#![cfg(target_arch = "x86_64")]

mod common;

use std::sync::atomic::Ordering;

use common::signals::{load32, program_handler, SEEN, SEEN_ADDR, SEEN_CODE};
use mm::{probe, AddressSpace};

fn zeroed_action() -> libc::sigaction {
    // SAFETY: all-zero is a valid sigaction (SIG_DFL, no flags, empty mask).
    unsafe { std::mem::zeroed() }
}

fn kernel_action() -> usize {
    let mut cur = zeroed_action();
    // SAFETY: sigaction(2) only reading the current action into our struct.
    assert_eq!(unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut cur) }, 0);
    cur.sa_sigaction
}

#[test]
fn a_recorded_handler_is_reported_back_and_gets_the_sigbus_we_do_not_take() {
    // Ours goes in; the action it replaced (Rust's stack-overflow handler
    // in a test binary) is the program's.
    let before = kernel_action();
    let _aspace = AddressSpace::new().unwrap();
    let ours = kernel_action();
    assert_ne!(ours, before);
    let mut old = zeroed_action();
    probe::program_sigaction(libc::SIGBUS, None, Some(&mut old)).unwrap();
    assert_eq!(old.sa_sigaction, before, "the program never sees ours");

    // The program installs its handler: recorded, the kernel's stays ours.
    let mut act = zeroed_action();
    act.sa_sigaction = program_handler as *const () as usize;
    act.sa_flags = libc::SA_SIGINFO;
    probe::program_sigaction(libc::SIGBUS, Some(&act), Some(&mut old)).unwrap();
    assert_eq!(old.sa_sigaction, before);
    assert_eq!(kernel_action(), ours);
    probe::program_sigaction(libc::SIGBUS, None, Some(&mut old)).unwrap();
    assert_eq!(old.sa_sigaction, act.sa_sigaction);

    // A real SIGBUS that is not ours: a shared mapping of a file cut to 0.
    let fd = rustix::fs::memfd_create("recorded-sigbus", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 4096).unwrap();
    // SAFETY: a fresh shared mapping of our own memfd; only the probe-free
    // load below touches it, and it is unmapped before the test ends.
    let p = unsafe {
        rustix::mm::mmap(std::ptr::null_mut(), 4096, rustix::mm::ProtFlags::READ, rustix::mm::MapFlags::SHARED, &fd, 0)
    }
    .unwrap();
    rustix::fs::ftruncate(&fd, 0).unwrap();
    assert_eq!(load32(p as u64), 0, "the program's handler skipped the load");
    assert_eq!(SEEN.load(Ordering::SeqCst), 1);
    assert_eq!(SEEN_CODE.load(Ordering::SeqCst), i64::from(libc::BUS_ADRERR));
    assert_eq!(SEEN_ADDR.load(Ordering::SeqCst), p as u64);
    // SAFETY: the mapping made above, no longer used.
    unsafe { rustix::mm::munmap(p, 4096) }.unwrap();
}
