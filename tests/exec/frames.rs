//! What a process holds of device memory (`c/frames.c`): no memfd at all
//! once its mappings are made (and after `mremap` maps one again), and in
//! its maps only the frames its ranges touch.

use super::{assert_ok, exec, program};

#[test]
fn a_process_holds_no_frame_fd_and_maps_only_the_frames_of_its_ranges() {
    let checks =
        ["no frame fd after mmap", "maps show frames 1 2 3 only", "mremap maps again and holds no frame fd", "data"];
    assert_ok(&exec(&program("frames"), &[]), &checks);
}
