//! A program with no SIGBUS handler of its own: an access through a
//! register mapping is emulated, and a revoked access takes the default
//! action — the process dies of SIGBUS, as it would on a revoked mapping of
//! a real device. Run in a child process (this test binary again, told by
//! an environment variable to play the program), so the death is observed
//! rather than suffered.
#![cfg(target_arch = "x86_64")]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::atomic::Ordering;

use common::regs::{map_registers, Device};
use common::signals::load32;
use mm::{probe, AddressSpace, Width};

/// Set in the child: run the program's part.
const CHILD: &str = "VFIO_DMABUF_TRAP_DEFAULT_ACTION_CHILD";
/// What the child prints once the emulated access worked.
const EMULATED: &str = "emulated ok";

/// The program: emulated accesses, then a revoked one with no handler.
/// Run only as the child of the test below (it dies by design).
#[test]
#[ignore = "the child of a_revoked_register_access_with_no_handler_kills_the_process_with_sigbus"]
fn the_program() {
    assert!(std::env::var_os(CHILD).is_some(), "run by the test that watches it die, not directly");
    let aspace = AddressSpace::new().unwrap();
    let dev = Device::new();
    let va = map_registers(&aspace, &dev, 0, 1);
    probe::write(va + 0x10, Width::U32, 0x600d).unwrap();
    assert_eq!(load32(va + 0x10), 0x600d);
    println!("{EMULATED}");
    dev.revoked.store(true, Ordering::SeqCst);
    // No handler of the program's: the default action ends the process here.
    let v = load32(va + 0x10);
    println!("survived a revoked access, read {v:#x}");
}

#[test]
fn a_revoked_register_access_with_no_handler_kills_the_process_with_sigbus() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "the_program", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(EMULATED), "the emulated access must work first: {stdout}");
    assert!(!stdout.contains("survived"), "{stdout}");
    assert_eq!(out.status.signal(), Some(libc::SIGBUS), "{:?}: {stdout}", out.status);
}
