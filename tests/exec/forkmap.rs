//! Mappings inherited by `fork` follow revocation (`c/forkmap.c`): the
//! child's copies of a device-fd mapping and a buffer mapping SIGBUS while
//! COMMAND.MEMORY is clear, read the data again once it is set, and a
//! permanent revoke of the buffer reaches the child too.

use super::{assert_ok, exec, program};

#[test]
fn a_fork_childs_inherited_mappings_sigbus_after_a_revoke_and_fault_back_after_an_un_revoke() {
    assert_ok(&exec(&program("forkmap"), &[]), &["child", "parent"]);
}
