//! A program that installs its own SIGBUS handler after ours: the next
//! register mapping puts ours back in front, accesses through it are
//! emulated without the program's handler running, and a revoked access
//! reaches the program's handler as SIGBUS `BUS_ADRERR`.
#![cfg(target_arch = "x86_64")]

mod common;

use std::sync::atomic::Ordering;

use common::regs::{map_registers, Device};
use common::signals::{install_program_handler, load32, SEEN, SEEN_CODE};
use mm::{probe, AddressSpace, Width};

#[test]
fn a_handler_installed_after_ours_is_chained_from_the_next_register_mapping() {
    let aspace = AddressSpace::new().unwrap();
    install_program_handler();
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
