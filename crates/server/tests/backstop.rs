//! The bound on a process's answer to a revoke, and the cut-off of one
//! that does not answer: its frames of the revoked range are truncated
//! (every mapping of them, in every process, is zapped), the revoke goes
//! on, the frames come back with the un-revoke, and a late answer changes
//! nothing.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const FRAME: u64 = 2 << 20;

/// The length of a frame's file: its bytes sit at their physical address,
/// so a frame that holds them ends at the frame's end; a cut one is empty.
fn frame_len(fd: &std::os::fd::OwnedFd) -> u64 {
    rustix::fs::fstat(fd).unwrap().st_size as u64
}

#[test]
fn a_process_that_does_not_acknowledge_a_revoke_is_cut_off_and_its_late_answer_changes_nothing() {
    let srv = TestServer::start_with(&["edu-plus"], &[0], Some(Duration::from_millis(50)));
    let c = Client::new(&srv);
    // While `hold` is set, the process takes a revoke but does not answer
    // until `release` says so: a stopped client.
    let hold = Arc::new(AtomicBool::new(true));
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let held = Arc::clone(&hold);
    let notify = Notifier::start(&srv, c.token, move |s| {
        if !s.allowed && held.load(Ordering::SeqCst) {
            let _ = gate.lock().unwrap().recv_timeout(WATCHDOG);
        }
    });
    let (_iommufd, dev) = c.bound_device(0);
    let (_plan, frames) = c.mmap(&dev, 1, region(1), 0x1000).unwrap();
    assert_eq!(notify.next(), Seen { mapping: 1, allowed: true });
    assert_eq!(frame_len(&frames[0]), region(1) + FRAME);
    // COMMAND.MEMORY clear returns although the process never answered: its
    // frame was cut off (truncated), counted once.
    c.set_memory(&dev, false);
    assert_eq!(srv.cut_offs(), 1);
    assert_eq!(frame_len(&frames[0]), 0, "the frame the process maps is truncated");
    // The un-revoke restores the frame with its data, without waiting for
    // the silent process.
    c.set_memory(&dev, true);
    assert_eq!(frame_len(&frames[0]), region(1) + FRAME);
    c.pwrite(&dev, region(1) + 8, b"restored").unwrap();
    // The process answers at last (late): nothing breaks, and it sees the
    // messages in order.
    hold.store(false, Ordering::SeqCst);
    release.send(()).unwrap();
    assert_eq!(notify.next(), Seen { mapping: 1, allowed: false });
    assert_eq!(notify.next(), Seen { mapping: 1, allowed: true });
    // Once the server has taken its late answer, revokes wait for it
    // again and no more cut-offs happen (a revoke before that cuts it off
    // at once, without a wait).
    let mut rounds = 0;
    loop {
        let before = srv.cut_offs();
        c.set_memory(&dev, false);
        assert_eq!(notify.next(), Seen { mapping: 1, allowed: false });
        c.set_memory(&dev, true);
        assert_eq!(notify.next(), Seen { mapping: 1, allowed: true });
        if srv.cut_offs() == before {
            break;
        }
        rounds += 1;
        assert!(rounds < 1000, "the process answers but is still cut off");
    }
    let mut got = [0u8; 8];
    rustix::io::pread(&frames[0], &mut got, region(1) + 8).unwrap();
    assert_eq!(&got, b"restored");
}

#[test]
fn the_status_page_slot_of_a_mapping_changes_before_its_notification_and_cannot_be_written() {
    use wire::msg::status_slot;
    use wire::{Notify, Request, Role};
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let n = Client::connect(&srv, c.token, Role::Notify);
    // The status page comes first on the notify connection, sealed.
    let (msg, fds) = wire::transport::recv::<Notify>(&n.conn).unwrap();
    let Notify::StatusPage { slots } = msg else { panic!("{msg:?}") };
    let view = mm::StatusView::map(std::os::fd::AsFd::as_fd(&fds[0]), slots as usize).unwrap();
    assert_eq!(rustix::io::pwrite(&fds[0], b"x", 0).unwrap_err(), rustix::io::Errno::PERM);
    assert_eq!(rustix::fs::ftruncate(&fds[0], 0).unwrap_err(), rustix::io::Errno::PERM);
    // Each notification finds its slot already saying what it says.
    let notify = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let Ok((Notify::Mapping { seq, allowed, slot, .. }, _)) = wire::transport::recv::<Notify>(&n.conn) else {
                break;
            };
            let value = view.get(slot as usize).unwrap();
            seen.push((allowed, status_slot::allows(value), value));
            wire::transport::send(&n.conn, &Request::Ack { seq }, &[]).unwrap();
        }
        seen
    });
    let (_iommufd, dev) = c.bound_device(0);
    c.mmap(&dev, 1, region(1), 0x1000).unwrap();
    c.set_memory(&dev, false);
    c.set_memory(&dev, true);
    let seen = notify.join().unwrap();
    assert_eq!(seen.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(), vec![(true, true), (false, false), (true, true)]);
    // Every write of the slot changes it, so a fault sees any change.
    assert!(seen[0].2 != seen[2].2);
    assert_eq!(srv.cut_offs(), 0);
}

#[test]
fn a_revoke_reaching_two_silent_processes_cuts_off_both_and_returns() {
    let srv = TestServer::start_with(&["edu-plus"], &[0], Some(Duration::from_millis(50)));
    let owner = Client::new(&srv);
    let _owner_notify = Notifier::acking(&srv, owner.token);
    let (_iommufd, dev) = owner.bound_device(0);
    let buf = owner.export(&dev, 1, 0, 0x2000).unwrap();
    // Two processes map the buffer and never answer a revoke.
    let (release, gate) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    let mut silent = Vec::new();
    for _ in 0..2 {
        let c = Client::new(&srv);
        let g = Arc::clone(&gate);
        let n = Notifier::start(&srv, c.token, move |s| {
            if !s.allowed {
                let _ = g.lock().unwrap().recv_timeout(WATCHDOG);
            }
        });
        c.mmap(&buf, 1, 0, 0x2000).unwrap();
        assert_eq!(n.next(), Seen { mapping: 1, allowed: true });
        silent.push((c, n));
    }
    owner.set_memory(&dev, false);
    assert_eq!(srv.cut_offs(), 2);
    drop(release);
}
