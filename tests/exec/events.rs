//! The events that revoke a BAR, seen from client processes (`c/events.c`):
//! D3hot, `VFIO_DEVICE_RESET`, a function-level reset and
//! `VFIO_DEVICE_PCI_HOT_RESET` return only when no client can reach the
//! pages, and every client reads exactly what the device holds afterwards
//! (the model keeps RAM BAR contents through all of them); a client stopped
//! through the event does not hold it up (the server cuts it off) and reads
//! its data once continued; a client killed while mapping a buffer costs the
//! next revokes nothing and needs no cut-off.
//!
//! A client stopped through a reset reads its data at once when continued:
//! the notifications it missed apply the server's latest word for each
//! mapping (its status-page slot), so a stale revoke never leaves it
//! refusing faults after the un-revoke returned.
//!
//! Nothing is timed: the program prints how long each call took and only
//! asserts that it returned.

use super::run_check;

/// edu-plus in group 0 with BAR1 in 64 KiB frames, and a short bound so
/// that the stopped checks are quick.
const DEVICES: &str = "[server]\nack-timeout = \"200ms\"\n\
                       [devices.plus]\ncatalogue = \"edu-plus\"\nbdf = \"0000:00:03.0\"\ngroup = 0\nframe-size = \"64K\"\n";

/// The same with a bound far above any answer of a running client: a
/// cut-off under it can only be of a process that never answers.
const PATIENT: &str = "[server]\nack-timeout = \"10s\"\n\
                       [devices.plus]\ncatalogue = \"edu-plus\"\nbdf = \"0000:00:03.0\"\ngroup = 0\nframe-size = \"64K\"\n";

fn check(name: &str) {
    run_check("events", DEVICES, name);
}

/// A check with client 1 stopped through the event: it must have been cut off.
fn check_stopped(name: &str) {
    let out = run_check("events", DEVICES, name);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("process cut off"), "the stopped client is cut off:\n{stderr}");
    for line in
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("stopped:") || l.contains("pass(es)"))
    {
        eprintln!("{line}");
    }
}

#[test]
fn d3hot_revokes_every_client_s_mappings_and_d0_gives_every_word_back() {
    check("d3hot");
}

#[test]
fn after_vfio_device_reset_every_client_reads_what_the_device_holds() {
    check("reset");
}

#[test]
fn after_a_function_level_reset_every_client_reads_what_the_device_holds() {
    check("flr");
}

#[test]
fn after_a_hot_reset_every_client_reads_what_the_device_holds() {
    check("hot-reset");
}

#[test]
fn a_stopped_client_does_not_hold_d3hot_or_d0_and_reads_its_data_once_continued() {
    check_stopped("d3hot-stopped");
}

#[test]
fn a_stopped_client_does_not_hold_vfio_device_reset_and_reads_its_data_once_continued() {
    check_stopped("reset-stopped");
}

#[test]
fn a_stopped_client_does_not_hold_a_function_level_reset_and_reads_its_data_once_continued() {
    check_stopped("flr-stopped");
}

#[test]
fn a_stopped_client_does_not_hold_a_hot_reset_and_reads_its_data_once_continued() {
    check_stopped("hot-reset-stopped");
}

#[test]
fn a_killed_client_holds_no_revoke_and_needs_no_cut_off() {
    let out = run_check("events", PATIENT, "killed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("process cut off"), "nobody is cut off:\n{stderr}");
    assert!(!stderr.contains("client cut-off(s)"), "and none is counted:\n{stderr}");
}
