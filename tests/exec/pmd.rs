//! PMD mappings in a program under exec (`c/pmd.c`): its first touch maps
//! each 2 MiB of a huge-aligned BAR window with one PMD (the preload
//! library's fault path is the engine's), a revoke zaps them and raises
//! SIGBUS, an un-revoke maps them again with the data kept.

use super::{assert_ok, exec, program};

#[test]
fn a_program_under_exec_gets_pmds_that_a_revoke_zaps() {
    let checks = ["first touch maps PMDs", "data", "revoke zaps the PMDs", "un-revoke maps them again"];
    assert_ok(&exec(&program("pmd"), &[]), &checks);
}
