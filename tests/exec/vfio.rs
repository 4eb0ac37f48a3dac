//! The VFIO calls the library carries to the server, and the mappings it
//! makes from the server's plans (`c/vfio.c`).

use super::{assert_ok, exec, program};

fn check(name: &str) {
    assert_ok(&exec(&program("vfio"), &[name]), &[name]);
}

#[test]
fn a_ram_bar_mapping_is_written_and_read_back_through_two_mappings_and_the_region() {
    check("ram-bar");
}

#[test]
fn clearing_command_memory_gives_sigbus_at_the_address_and_setting_it_brings_the_data_back() {
    check("revoke");
}

#[test]
fn the_edu_id_and_liveness_registers_answer_through_a_mapping() {
    check("registers");
}

#[test]
fn a_last_close_has_taken_effect_when_close_returns() {
    check("reopen");
}

#[test]
fn munmap_mmap_mremap_and_mprotect_treat_our_mappings_as_the_kernel_treats_pfn_mappings() {
    check("maps");
}

#[test]
fn a_fork_child_gets_its_own_connections_and_an_exec_keeps_the_library() {
    check("fork");
}

#[test]
fn an_exported_buffer_maps_through_its_fd_is_revoked_with_the_device_and_outlives_its_fd() {
    check("dmabuf");
}
