//! The program's own SIGBUS/SIGSEGV handlers behind the library's
//! (`c/signals.c`): a revoked page raises a real SIGBUS `BUS_ADRERR` that
//! reaches them however and whenever they were installed.

use super::{assert_ok, exec, program};

fn case(name: &str) {
    assert_ok(&exec(&program("signals"), &[name]), &[name]);
}

/// The status `exec` gives for a program killed by SIGBUS.
const KILLED_BY_SIGBUS: i32 = 128 + libc::SIGBUS;

#[test]
fn a_handler_installed_before_the_first_mapping_gets_the_sigbus_and_is_reported_as_current() {
    case("before");
}

#[test]
fn a_handler_installed_after_the_first_mapping_gets_the_sigbus_and_is_reported_as_current() {
    case("after");
}

#[test]
fn a_plain_handler_installed_with_signal_gets_the_sigbus() {
    case("plain");
}

#[test]
fn an_sa_nodefer_handler_is_entered_again_by_a_fault_inside_it() {
    case("nodefer");
}

#[test]
fn without_sa_nodefer_a_fault_inside_the_handler_kills_the_process_as_the_kernel_does() {
    let out = exec(&program("signals"), &["deferred"]);
    assert_eq!(out.status.code(), Some(KILLED_BY_SIGBUS), "{out:?}");
}

#[test]
fn an_sa_onstack_handler_runs_on_the_alternate_stack() {
    case("altstack");
}

#[test]
fn an_sa_resethand_handler_runs_once_and_leaves_the_default() {
    case("resethand");
}

#[test]
fn with_no_handler_a_revoked_access_kills_the_process_with_sigbus() {
    let out = exec(&program("signals"), &["default"]);
    assert_eq!(out.status.code(), Some(KILLED_BY_SIGBUS), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ok"), "{out:?}");
}

#[test]
fn a_sigsegv_handler_is_chained_behind_the_library_s() {
    case("segv");
}

#[test]
fn register_accesses_are_emulated_in_a_thread_that_blocks_sigbus() {
    case("blocked-registers");
}

#[test]
fn a_revoked_access_in_a_thread_that_blocks_sigbus_kills_the_process_as_the_kernel_does() {
    let out = exec(&program("signals"), &["blocked-revoked"]);
    assert_eq!(out.status.code(), Some(KILLED_BY_SIGBUS), "{out:?}");
}
