//! Mappings made by a process: the plan, the memfds, the notifications a
//! revoke sends and waits for, and register accesses through a mapping.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use wire::msg::MmioAt;
use wire::{Reply, Request};

const BAR1_LEN: u64 = 64 << 20;
const FRAME: u64 = 2 << 20;

#[test]
fn a_device_mapping_of_a_ram_bar_comes_as_a_plan_with_the_frames_it_touches() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let notify = Notifier::acking(&srv, c.token);
    let (_iommufd, dev) = c.bound_device(0);
    let (plan, fds) = c.mmap(&dev, 1, region(1) + 0x4000, 0x2001).unwrap();
    // The first notification (allowed) was acknowledged before the reply.
    assert_eq!(notify.seen.try_recv().ok(), Some(Seen { mapping: 1, allowed: true }));
    assert_eq!(
        (plan.len, plan.vm_pgoff, plan.vma_pgoff_adjust),
        (0x3000, (region(1) + 0x4000) >> 12, (region(1) + 0x4000) >> 12)
    );
    assert!(plan.writable && !plan.traps);
    assert_eq!(plan.ranges, vec![(region(1) + 0x4000, 0x3000)]);
    assert_eq!(plan.pieces.len(), 1);
    assert_eq!((plan.pieces[0].paddr, plan.pieces[0].len), (region(1) + 0x4000, 0x3000));
    assert_eq!(plan.memories.len(), 1);
    let memory = &plan.memories[0];
    assert_eq!(memory.name, "vfio0:0000:00:03.0/1");
    assert_eq!((memory.base, memory.len, memory.frame_size), (region(1), BAR1_LEN, FRAME));
    // Only the frame the range lies in.
    assert_eq!((memory.frames.as_slice(), fds.len()), (&[0][..], 1));
    // The frame's memfd is the BAR: what the device writes, the frame holds.
    c.pwrite(&dev, region(1) + 0x4000, b"shared!!").unwrap();
    let mut got = [0u8; 8];
    rustix::io::pread(&fds[0], &mut got, region(1) + 0x4000).unwrap();
    assert_eq!(&got, b"shared!!");
    // A mapping across a frame boundary names both frames, with their fds
    // again: the process keeps none.
    let (plan2, fds2) = c.mmap(&dev, 2, region(1) + FRAME - 0x1000, 0x2000).unwrap();
    assert_eq!((plan2.memories[0].frames.as_slice(), fds2.len()), (&[0, 1][..], 2));
    assert_eq!(plan2.memories[0].id, memory.id);
    c.pwrite(&dev, region(1) + FRAME, b"frame #1").unwrap();
    rustix::io::pread(&fds2[1], &mut got, region(1) + FRAME).unwrap();
    assert_eq!(&got, b"frame #1");
}

#[test]
fn the_frames_of_a_mapping_can_be_asked_for_again() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let _notify = Notifier::acking(&srv, c.token);
    let (_iommufd, dev) = c.bound_device(0);
    let (plan, fds) = c.mmap(&dev, 4, region(1) + FRAME, 3 * FRAME).unwrap();
    assert_eq!((plan.memories[0].frames.as_slice(), fds.len()), (&[1, 2, 3][..], 3));
    let (reply, again) = c.call(&Request::Frames { mapping: 4, skip: 1 }, &[]);
    assert_eq!((reply, again.len()), (Reply::Count(2), 2));
    let (reply, _) = c.call(&Request::Frames { mapping: 5, skip: 0 }, &[]);
    assert_eq!(reply, Reply::Err { errno: libc::EINVAL });
}

#[test]
fn a_revoke_returns_only_after_the_process_acknowledged_it() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let acked = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&acked);
    // The ack of a revoke is marked just before it is sent.
    let notify = Notifier::start(&srv, c.token, move |s| {
        if !s.allowed {
            flag.store(true, Ordering::SeqCst);
        }
    });
    let (_iommufd, dev) = c.bound_device(0);
    c.mmap(&dev, 7, region(1), 0x1000).unwrap();
    assert_eq!(notify.next(), Seen { mapping: 7, allowed: true });
    c.set_memory(&dev, false);
    // The config write returned: the process had acknowledged by then.
    assert!(acked.load(Ordering::SeqCst));
    assert_eq!(notify.next(), Seen { mapping: 7, allowed: false });
    c.set_memory(&dev, true);
    assert_eq!(notify.next(), Seen { mapping: 7, allowed: true });
}

#[test]
fn a_buffer_mapping_hears_of_its_permanent_revoke() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let notify = Notifier::acking(&srv, c.token);
    let (_iommufd, dev) = c.bound_device(0);
    let buf = c.export(&dev, 1, 0x10000, 0x2000).unwrap();
    let (plan, _) = c.mmap(&buf, 3, 0x1000, 0x1000).unwrap();
    assert_eq!((plan.vm_pgoff, plan.vma_pgoff_adjust, plan.path.as_str()), (1, 0, "/dmabuf:"));
    assert_eq!(notify.next(), Seen { mapping: 3, allowed: true });
    // Closing the buffer fd leaves the mapping.
    c.close(buf.try_clone().unwrap());
    let arg = words(&[12, FEATURE_SET | FEATURE_DMA_BUF_REVOKE, 5]);
    let r =
        c.ioctl_fds(&dev, DEVICE_FEATURE, wire::msg::IoctlArg::Bytes(arg), &[std::os::fd::AsFd::as_fd(&buf)], vec![]);
    assert_eq!(r.map(|r| r.0).map_err(|e| e.0), Ok(0));
    assert_eq!(notify.next(), Seen { mapping: 3, allowed: false });
    // A revoked buffer cannot be mapped again.
    assert_eq!(c.mmap(&buf, 4, 0, 0x1000).unwrap_err(), libc::ENODEV);
}

#[test]
fn mmap_refusals_carry_the_kernels_errnos() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let (_iommufd, dev) = c.bound_device(0);
    assert_eq!(c.mmap(&dev, 1, region(1), 0x1000).unwrap_err(), libc::EPROTO, "no notify connection yet");
    let _notify = Notifier::acking(&srv, c.token);
    assert_eq!(c.mmap(&dev, 1, region(7), 0x1000).unwrap_err(), EINVAL, "config space");
    assert_eq!(c.mmap(&dev, 1, region(1) + BAR1_LEN, 0x1000).unwrap_err(), EINVAL, "past the BAR");
    assert_eq!(c.mmap(&dev, 1, region(1), 0).unwrap_err(), EINVAL, "empty");
    let private = Request::Mmap { mapping: 1, len: 0x1000, offset: region(1), write: true, shared: false };
    assert_eq!(c.call(&private, &[std::os::fd::AsFd::as_fd(&dev)]).0, Reply::Err { errno: EINVAL });
    c.mmap(&dev, 1, region(1), 0x1000).unwrap();
    assert_eq!(c.mmap(&dev, 1, region(1), 0x1000).unwrap_err(), libc::EEXIST, "mapping id in use");
    let ro = c.open_flags("/dev/vfio/devices/vfio0", libc::O_RDONLY).unwrap();
    assert_eq!(c.mmap(&ro, 2, region(1), 0x1000).unwrap_err(), libc::EACCES, "shared writable, read-only file");
}

#[test]
fn a_mapping_keeps_the_device_open_until_it_is_unmapped() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let _notify = Notifier::acking(&srv, c.token);
    let (iommufd, dev) = c.bound_device(0);
    c.mmap(&dev, 1, region(1), 0x1000).unwrap();
    c.close(dev);
    c.close(iommufd);
    let vdev = &srv.devices[0].vdev;
    assert_eq!(vdev.open_count(), 1, "the mapping holds the device file");
    assert_eq!(c.open("/dev/vfio/0").unwrap_err(), libc::EBUSY, "and its cdev binding");
    assert_eq!(c.call(&Request::Unmapped { mapping: 1 }, &[]).0, Reply::Ok);
    assert_eq!(vdev.open_count(), 0);
    assert_eq!(c.call(&Request::Unmapped { mapping: 1 }, &[]).0, Reply::Err { errno: EINVAL });
    c.open("/dev/vfio/0").unwrap();
}

#[test]
fn the_mappings_of_a_process_that_is_gone_go_with_it() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let notify = Notifier::acking(&srv, c.token);
    let (_iommufd, dev) = c.bound_device(0);
    let gone = Client::connect(&srv, token(), wire::Role::Control);
    let gone_notify = Notifier::acking(&srv, gone.token);
    gone.mmap(&dev, 1, region(1), 0x1000).unwrap();
    assert_eq!(srv.devices[0].vdev.dmabufs().len(), 1);
    drop(gone_notify);
    drop(gone);
    // Its last connection closed: once the server has seen that, the
    // mapping's buffer is gone. The other process's Sync orders after it
    // only for hang-ups, so wait for the buffer itself.
    let deadline = std::time::Instant::now() + WATCHDOG;
    while !srv.devices[0].vdev.dmabufs().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the mapping outlived its process");
        std::thread::yield_now();
    }
    // A revoke now has nobody to tell but this process, which has nothing mapped.
    c.set_memory(&dev, false);
    assert!(notify.seen.try_recv().is_err());
}

fn at(vm_pgoff: u64, off: u64) -> MmioAt {
    let base = 0x7f00_0000_0000;
    MmioAt { addr: base + off, vm_start: base, vm_pgoff }
}

#[test]
fn a_register_mapping_serves_held_accesses_until_memory_is_disabled() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let _notify = Notifier::acking(&srv, c.token);
    let (_iommufd, dev) = c.bound_device(0);
    let (plan, _) = c.mmap(&dev, 9, region(0), 0x1000).unwrap();
    assert!(plan.traps);
    let send = |r: &Request| wire::transport::send(&c.conn, r, &[]).unwrap();
    let recv = || wire::transport::recv::<Reply>(&c.conn).unwrap().0;
    send(&Request::MmioBegin { mapping: 9 });
    assert_eq!(recv(), Reply::Ok);
    send(&Request::MmioRead { at: at(plan.vm_pgoff, 0), width: 4 });
    assert_eq!(recv(), Reply::Value(0x0100_00ed), "edu's identification register");
    // The liveness register answers the complement of what is written.
    send(&Request::MmioWrite { at: at(plan.vm_pgoff, 4), width: 4, value: 0x1234_5678 });
    assert_eq!(recv(), Reply::Ok);
    send(&Request::MmioRead { at: at(plan.vm_pgoff, 4), width: 4 });
    assert_eq!(recv(), Reply::Value(!0x1234_5678u32 as u64));
    send(&Request::MmioRead { at: at(plan.vm_pgoff, 0), width: 3 });
    assert_eq!(recv(), Reply::Err { errno: EINVAL }, "no 3-byte access");
    send(&Request::MmioEnd);
    // The connection serves ordinary requests again.
    c.sync();
    c.set_memory(&dev, false);
    send(&Request::MmioBegin { mapping: 9 });
    assert_eq!(recv(), Reply::Err { errno: libc::ENODEV }, "revoked: the process raises SIGBUS");
    send(&Request::MmioBegin { mapping: 77 });
    assert_eq!(recv(), Reply::Err { errno: libc::ENODEV }, "no such mapping");
}
