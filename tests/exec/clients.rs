//! Clients that do not cooperate (`c/clients.c`): a client stopped with SIGSTOP does
//! not hold up a permanent revoke or a COMMAND.MEMORY clear (the server
//! cuts it off from the buffer's frames after the bound) and faults on
//! every page once continued; a hostile client cannot map past its buffer,
//! truncate, grow, punch, seal, discard or reopen what it holds, and the
//! primary's data and another client's view stay intact.
//!
//! The bound is short here (200 ms) so the tests are quick; nothing is
//! timed: the program only asserts that the revoke returned.

use super::run_check;

/// edu-plus in group 0 with BAR1 in 64 KiB frames, and a short bound.
const DEVICES: &str = "[server]\nack-timeout = \"200ms\"\n\
                       [devices.plus]\ncatalogue = \"edu-plus\"\nbdf = \"0000:00:03.0\"\ngroup = 0\nframe-size = \"64K\"\n";

fn check(name: &str) -> std::process::Output {
    run_check("clients", DEVICES, name)
}

#[test]
fn a_stopped_client_does_not_hold_a_permanent_revoke_and_faults_on_every_page_once_continued() {
    let out = check("stopped");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("process cut off"), "the cut-off is logged:\n{stderr}");
    assert!(stderr.contains("client cut-off(s)"), "and counted at the end:\n{stderr}");
}

#[test]
fn a_stopped_client_does_not_hold_a_command_memory_clear_and_gets_its_pages_back_on_set() {
    check("stopped-memory");
}

#[test]
fn a_hostile_client_can_neither_reach_beyond_its_buffer_nor_damage_what_others_map() {
    check("hostile");
}
