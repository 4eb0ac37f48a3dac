//! Buffers vended to other processes (`c/share.c`): a primary exports
//! sub-ranges of edu-plus's RAM BAR1 and edu's register BAR0, passes the
//! fds over `SCM_RIGHTS` to forked clients, and every client's mappings
//! see the one device and follow its revocations; a device fd inherited
//! through `fork` is the same open device in the child.

use super::run_check;

/// edu-plus in group 0 (as the demo) and edu in group 1.
const DEVICES: &str = "[devices.plus]\ncatalogue = \"edu-plus\"\nbdf = \"0000:00:03.0\"\ngroup = 0\n\
                       [devices.edu]\ncatalogue = \"edu\"\nbdf = \"0000:00:04.0\"\ngroup = 1\n";

fn check(name: &str) {
    run_check("share", DEVICES, name);
}

#[test]
fn clients_see_the_primary_s_ram_and_the_primary_and_each_other_see_theirs() {
    check("coherence");
}

#[test]
fn a_client_s_register_accesses_act_on_the_one_device() {
    check("registers");
}

#[test]
fn a_permanent_revoke_returns_after_every_client_lost_its_pages() {
    check("perm-revoke");
}

#[test]
fn command_memory_clear_reaches_every_client_and_set_brings_the_data_back() {
    check("memory");
}

#[test]
fn a_client_s_close_and_exit_leave_the_primary_s_buffer_working() {
    check("close-exit");
}

#[test]
fn a_buffer_outlives_the_exporter_s_fd_in_a_client_and_dies_with_the_device_fd() {
    check("last-close");
}

#[test]
fn a_device_fd_inherited_by_fork_is_the_same_device_in_the_child() {
    check("inherit");
}

#[test]
fn an_inherited_device_fd_holds_the_device_and_the_child_s_close_is_the_last() {
    check("inherit-close");
}

#[test]
fn a_child_s_exit_holding_the_last_device_fd_has_revoked_the_buffer_when_waitpid_returns() {
    check("inherit-exit");
}

#[test]
fn a_reaped_child_s_device_mapping_no_longer_holds_the_group() {
    check("child-mapping-exit");
}
