//! Frames: the layout a mapping shows, mappings across frame boundaries,
//! and cutting a frame off from every process (this one and a forked
//! child) and restoring it.

mod common;

use std::sync::Arc;

use common::*;
use mm::baseline::PlainMapping;
use mm::{probe, PhysMemory};
use page::{PhysAddr, PAGE_SIZE};

const FRAME: u64 = 2 << 20;

#[test]
fn each_frame_is_its_own_memfd_in_the_maps_view() {
    let _vm = vm_shared();
    let (aspace, mem, _ops, va) = setup(Mode::Linear, MEM_LEN, 0);
    assert_eq!((mem.frame_size(), mem.frame_count()), (FRAME, 4));
    let real = mm::maps::proc_self_maps(va, va + MEM_LEN).unwrap();
    let paths: Vec<&str> = real.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/memfd:mm-test.0 (deleted)",
            "/memfd:mm-test.1 (deleted)",
            "/memfd:mm-test.2 (deleted)",
            "/memfd:mm-test.3 (deleted)"
        ]
    );
    // Each frame file holds its bytes at their physical address.
    let offsets: Vec<u64> = real.iter().map(|l| l.offset).collect();
    assert_eq!(offsets, [BASE, BASE + FRAME, BASE + 2 * FRAME, BASE + 3 * FRAME]);
    assert!(real.iter().all(|l| l.end - l.start == FRAME), "{real:?}");
    // Our own view is still the one VMA the program made.
    assert_eq!(aspace.vmas().len(), 1);
}

#[test]
fn small_frames_split_a_mapping_into_one_kernel_vma_per_frame() {
    let _vm = vm_shared();
    let mem = Arc::new(PhysMemory::with_frames("mm-small", PhysAddr(BASE), 1 << 20, 64 << 10).unwrap());
    assert_eq!(mem.frame_count(), 16);
    let map = PlainMapping::new(&mem, PhysAddr(BASE + 0x8000), 0x20000, true).unwrap();
    let real = mm::maps::proc_self_maps(map.addr(), map.addr() + 0x20000).unwrap();
    let got: Vec<(String, u64)> = real.iter().map(|l| (l.path.clone(), l.offset)).collect();
    let want: Vec<(String, u64)> = [(0, 0x8000), (1, 0x10000), (2, 0x20000)]
        .iter()
        .map(|&(i, off)| (format!("/memfd:mm-small.{i} (deleted)"), BASE + off))
        .collect();
    assert_eq!(got, want);
    mem.write(PhysAddr(BASE + 0x10000), b"frame 1!").unwrap();
    assert_eq!(probe::read_u64(map.addr() + 0x8000).unwrap(), u64::from_ne_bytes(*b"frame 1!"));
}

#[test]
fn a_mapping_across_frames_faults_with_the_same_orders() {
    let _vm = vm_shared();
    // From the middle of frame 0 to the middle of frame 3: the first and
    // last 1 MiB are order-0 faults, the whole frames 1 and 2 huge ones.
    let (aspace, _mem, _ops, va) = setup(Mode::Linear, 6 << 20, 1 << 20);
    for off in (0..6u64 << 20).step_by(PAGE_SIZE as usize) {
        assert_eq!(probe::read_u64(va + off).unwrap(), word_at(BASE + (1 << 20) + off));
    }
    let s = aspace.fault_stats();
    assert_eq!(s.order9, 0, "an unaligned VA cannot take PMDs");
    let (aspace, _mem, _ops, va) = setup(Mode::Linear, 4 << 20, 2 << 20);
    for off in (0..4u64 << 20).step_by(PAGE_SIZE as usize) {
        assert_eq!(probe::read_u64(va + off).unwrap(), word_at(BASE + (2 << 20) + off));
    }
    assert_eq!(aspace.fault_stats().order9, 2, "one PMD per frame");
}

#[test]
fn a_cut_frame_sigbuses_here_and_a_restore_brings_the_data_back() {
    let _vm = vm_shared();
    let (_aspace, mem, _ops, va) = setup(Mode::Linear, 2 * FRAME, FRAME);
    mem.write(PhysAddr(BASE + FRAME + 0x40), b"before!!").unwrap();
    assert_eq!(probe::read_u64(va + 0x40).unwrap(), u64::from_ne_bytes(*b"before!!"));
    assert_eq!(probe::read_u64(va + FRAME).unwrap(), word_at(BASE + 2 * FRAME));
    assert!(!mem.has_cut_frames());
    assert!(mem.cut_off(1).unwrap());
    assert!(!mem.cut_off(1).unwrap(), "already cut");
    assert!(mem.is_cut_off(1) && !mem.is_cut_off(2) && mem.has_cut_frames());
    let e = probe::read_u64(va + 0x40).unwrap_err();
    assert!(e.is_sigbus(), "{e}");
    // The next frame of the same mapping is untouched.
    assert_eq!(probe::read_u64(va + FRAME).unwrap(), word_at(BASE + 2 * FRAME));
    assert!(mem.restore(1).unwrap());
    assert!(!mem.restore(1).unwrap(), "not cut any more");
    assert!(!mem.has_cut_frames());
    // The same mapping works again, without a remap, with every word back.
    assert_eq!(probe::read_u64(va + 0x40).unwrap(), u64::from_ne_bytes(*b"before!!"));
    for off in (0x1000..FRAME).step_by(0x1000) {
        assert_eq!(probe::read_u64(va + off).unwrap(), word_at(BASE + FRAME + off));
    }
}

/// Forks a child that reads `addr` once before and once after the parent
/// tells it to (a byte on a pipe); the parent cuts the frame in between.
/// Returns what the first read saw and how the child ended.
fn child_reads_around(addr: u64, between: impl FnOnce()) -> (u64, i32) {
    let (rd, wr) = rustix::pipe::pipe().unwrap();
    let (res_rd, res_wr) = rustix::pipe::pipe().unwrap();
    // SAFETY: the child calls only async-signal-safe functions (signal,
    // read, write, _exit) and reads a mapping the parent keeps alive until
    // the child is reaped.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        use std::os::fd::AsRawFd;
        // SAFETY: see above; `addr` is a live shared mapping inherited from
        // the parent, read volatile as a device access would be.
        unsafe {
            libc::signal(libc::SIGBUS, libc::SIG_DFL);
            let v = std::ptr::read_volatile(addr as *const u64);
            libc::write(res_wr.as_raw_fd(), (&v as *const u64).cast(), 8);
            let mut b = 0u8;
            libc::read(rd.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
            let _ = std::ptr::read_volatile(addr as *const u64);
            libc::_exit(0);
        }
    }
    drop(res_wr);
    let mut first = [0u8; 8];
    rustix::io::read(&res_rd, &mut first).unwrap();
    between();
    rustix::io::write(&wr, &[1]).unwrap();
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    (u64::from_ne_bytes(first), status)
}

#[test]
fn a_cut_off_zaps_the_frame_in_a_forked_child_too() {
    let _vm = vm_shared();
    let mem = Arc::new(PhysMemory::with_frames("mm-fork", PhysAddr(BASE), 2 * FRAME, FRAME).unwrap());
    mem.write(PhysAddr(BASE + FRAME), b"inherit!").unwrap();
    let map = PlainMapping::new(&mem, PhysAddr(BASE), 2 * FRAME, true).unwrap();
    let (first, status) = child_reads_around(map.addr() + FRAME, || assert!(mem.cut_off(1).unwrap()));
    assert_eq!(first, u64::from_ne_bytes(*b"inherit!"));
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS, "status {status:#x}");
    // Restored, a child's read succeeds again.
    mem.restore(1).unwrap();
    let (first, status) = child_reads_around(map.addr() + FRAME, || {});
    assert_eq!(first, u64::from_ne_bytes(*b"inherit!"));
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status:#x}");
}

#[test]
fn a_process_side_memory_holds_only_the_frames_it_was_sent() {
    let _vm = vm_shared();
    let mem = PhysMemory::with_frames("mm-sparse", PhysAddr(BASE), 4 << 16, 1 << 16).unwrap();
    mem.write(PhysAddr(BASE + (2 << 16)), b"frame 2!").unwrap();
    let fd = mem.frame_fd(2).unwrap().try_clone_to_owned().unwrap();
    let sparse =
        Arc::new(PhysMemory::from_frames("mm-sparse", PhysAddr(BASE), 4 << 16, 1 << 16, vec![(2, fd)]).unwrap());
    assert!(sparse.frame_fd(2).is_some() && sparse.frame_fd(1).is_none());
    assert!(sparse.locate(PhysAddr(BASE + (1 << 16))).is_none());
    let (_, off, left) = sparse.locate(PhysAddr(BASE + (2 << 16) + 0x1000)).unwrap();
    assert_eq!((off, left), (BASE + (2 << 16) + 0x1000, 0xf000));
    let mut got = [0u8; 8];
    sparse.read(PhysAddr(BASE + (2 << 16)), &mut got).unwrap();
    assert_eq!(&got, b"frame 2!");
    let e = sparse.read(PhysAddr(BASE + (1 << 16)), &mut got).unwrap_err();
    assert_eq!(e.errno(), rustix::io::Errno::INVAL);
    // A write that runs from a held frame into a missing one is refused whole.
    let e = sparse.write(PhysAddr(BASE + (3 << 16) - 4), b"spill!!!").unwrap_err();
    assert_eq!(e.errno(), rustix::io::Errno::INVAL);
    let e = PlainMapping::new(&sparse, PhysAddr(BASE + (1 << 16)), 2 << 16, false).unwrap_err();
    assert_eq!(e.errno(), rustix::io::Errno::INVAL);
    let ok = PlainMapping::new(&sparse, PhysAddr(BASE + (2 << 16)), 1 << 16, false).unwrap();
    assert_eq!(probe::read_u64(ok.addr()).unwrap(), u64::from_ne_bytes(*b"frame 2!"));
    // Bad sparse sets: a frame past the end, or given twice.
    let fd = || mem.frame_fd(0).unwrap().try_clone_to_owned().unwrap();
    assert!(PhysMemory::from_frames("x", PhysAddr(BASE), 4 << 16, 1 << 16, vec![(4, fd())]).is_err());
    assert!(PhysMemory::from_frames("x", PhysAddr(BASE), 4 << 16, 1 << 16, vec![(0, fd()), (0, fd())]).is_err());
}

#[test]
fn frames_smaller_than_a_pmd_take_order_0_faults_only() {
    let _vm = vm_shared();
    let aspace = mm::AddressSpace::new().unwrap();
    let mem = Arc::new(PhysMemory::with_frames("mm-test", PhysAddr(BASE), MEM_LEN, 64 << 10).unwrap());
    let words: Vec<u8> = (0..MEM_LEN / 8).flat_map(|i| (BASE + i * 8).to_ne_bytes()).collect();
    mem.write(PhysAddr(BASE), &words).unwrap();
    let va = map(&aspace, &mem, Exporter::new(Mode::Linear), 0, 4 << 20);
    for off in (0..4u64 << 20).step_by(PAGE_SIZE as usize) {
        assert_eq!(probe::read_u64(va + off).unwrap(), word_at(BASE + off));
    }
    let s = aspace.fault_stats();
    assert_eq!((s.order9, s.order0, s.sigbus), (0, 1024, 0), "{s:?}");
    // Every fault tries the PMD first, as Linux does, and falls back.
    assert_eq!(s.fallback, 1024, "{s:?}");
}
