//! Importers of VFIO buffers: invalidated on every revoke (and only then),
//! waited for before the revoke returns, refused at attach when they cannot
//! take part (spec §2.5, §4.7, §4.9, §5.3).
//!
//! The ordering tests prove "the revoke waits" with channels only: the
//! importer's thread records "unmapped" before it unmaps, the revoking
//! thread records "revoke returned" after its call returns, and the log must
//! read in that order.

mod common;

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;

use common::{device, Invalidation, OnInvalidate, TestImporter, BAR1, RDWR, STILL_BLOCKED, WATCHDOG};
use dmabuf::{DmaBuf, DmaBufFd, Status};
use mm::{probe, AddressSpace};
use rustix::io::Errno;
use vfio::{mmap_dmabuf, DeviceFd, MmapArgs, VfioPciDevice};

const LEN: u64 = 0x4000;

/// A device (edu-plus) with an explicit buffer over a window of BAR1.
struct Fixture {
    aspace: AddressSpace,
    vdev: Arc<VfioPciDevice>,
    fd: DeviceFd,
    buf_fd: DmaBufFd,
}

impl Fixture {
    fn new() -> Fixture {
        let aspace = AddressSpace::new().unwrap();
        let vdev = device("edu-plus");
        let fd = vdev.open();
        let buf_fd = fd.feature_dma_buf(1, RDWR, &[(0x10000, LEN)]).unwrap();
        Fixture { aspace, vdev, fd, buf_fd }
    }

    fn buf(&self) -> &Arc<DmaBuf> {
        self.buf_fd.buffer()
    }
}

/// Receives one invalidation, bounded by the watchdog.
#[track_caller]
fn next_invalidation(rx: &Receiver<Invalidation>) -> Invalidation {
    rx.recv_timeout(WATCHDOG).expect("the revoke calls invalidate_mappings")
}

/// Runs `revoke` on its own thread with a holding importer attached to `buf`
/// and proves it returns only after the importer unmapped. Returns the
/// invalidation the importer saw.
fn assert_revoke_waits_for_the_importer(
    buf: &Arc<DmaBuf>,
    revoke: impl FnOnce() -> Result<(), vfio::VfioError> + Send + 'static,
    expected: Status,
) -> Invalidation {
    let (importer, events) = TestImporter::new(OnInvalidate::Hold);
    let attachment = buf.attach(importer.as_importer()).unwrap();
    importer.hold(attachment.map().unwrap());
    importer.hold(attachment.map().unwrap());
    assert_eq!(buf.importer_mappings(), 2);

    let (log, order) = mpsc::channel::<&'static str>();
    let revoker = {
        let log = log.clone();
        thread::spawn(move || {
            let r = revoke();
            let _ = log.send("revoke returned");
            r
        })
    };
    let inv = next_invalidation(&events);
    assert_eq!(inv.buffer, buf.id());
    assert_eq!(inv.attachment, attachment.id());
    // The status is published before importers are told.
    assert_eq!(inv.status, expected);
    assert_eq!(inv.mappings_left, 2, "a holding importer unmaps nothing in the callback");
    // Blocked: the importer still holds both mappings.
    match order.recv_timeout(STILL_BLOCKED) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("the revoke returned while the importer still held its mappings: {other:?}"),
    }
    // Meanwhile nothing new can attach or map.
    let (late, _late_events) = TestImporter::new(OnInvalidate::Hold);
    assert_eq!(buf.attach(late.as_importer()).unwrap_err().errno(), Errno::NODEV);
    assert_eq!(attachment.map().unwrap_err().errno(), Errno::NODEV);

    // The importer's thread records "unmapped", then unmaps.
    let unmapper = {
        let importer = importer.clone();
        thread::spawn(move || {
            let _ = log.send("unmapped");
            importer.unmap_all()
        })
    };
    let got: Vec<&str> = (0..2).map(|_| order.recv_timeout(WATCHDOG).expect("both threads report")).collect();
    assert_eq!(got, ["unmapped", "revoke returned"]);
    assert_eq!(unmapper.join().unwrap(), 2);
    revoker.join().unwrap().unwrap();
    assert_eq!(buf.importer_mappings(), 0);
    assert_eq!(importer.invalidations(), 1, "one invalidate per revoke");
    assert_eq!(buf.status(), expected);
    inv
}

#[test]
fn memory_disable_invalidates_the_importer_and_memory_enable_does_not() {
    let f = Fixture::new();
    let (importer, events) = TestImporter::new(OnInvalidate::UnmapInside);
    let attachment = f.buf().attach(importer.as_importer()).unwrap();
    importer.hold(attachment.map().unwrap());
    assert_eq!(f.buf().importer_mappings(), 1);

    f.fd.set_memory_enable(false).unwrap();
    // One invalidate, seen with the buffer already TempRevoked.
    assert_eq!(importer.invalidations(), 1);
    let inv = next_invalidation(&events);
    assert_eq!(inv.status, Status::TempRevoked);
    assert_eq!(inv.mappings_left, 0);
    assert_eq!(f.buf().importer_mappings(), 0);
    assert_eq!(attachment.map().unwrap_err().errno(), Errno::NODEV);

    f.fd.set_memory_enable(true).unwrap();
    // Un-revoke: no invalidate (v4), the importer re-maps on its own.
    assert_eq!(importer.invalidations(), 1);
    assert!(matches!(events.try_recv(), Err(mpsc::TryRecvError::Empty)));
    assert_eq!(f.buf().status(), Status::Ok);
}

#[test]
fn memory_disable_from_another_thread_returns_only_after_the_importer_unmaps() {
    let f = Fixture::new();
    let fd = f.fd.dup();
    assert_revoke_waits_for_the_importer(f.buf(), move || fd.set_memory_enable(false), Status::TempRevoked);
    assert!(!f.vdev.memory_enabled());
}

#[test]
fn importer_that_unmaps_inside_invalidate_with_unmap_locked_lets_the_revoke_finish() {
    let f = Fixture::new();
    let (importer, events) = TestImporter::new(OnInvalidate::UnmapInside);
    let attachment = f.buf().attach(importer.as_importer()).unwrap();
    for _ in 0..3 {
        importer.hold(attachment.map().unwrap());
    }
    assert_eq!(f.buf().importer_mappings(), 3);
    // The revoke runs on its own thread only so that a hang is reported, not suffered.
    let fd = f.fd.dup();
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(fd.set_memory_enable(false));
    });
    finished.recv_timeout(WATCHDOG).expect("the revoke finishes").unwrap();
    let inv = next_invalidation(&events);
    assert_eq!(inv.mappings_left, 0, "all three unmapped inside the callback");
    assert_eq!(importer.held(), 0);
    assert_eq!(f.buf().importer_mappings(), 0);
    assert_eq!(f.buf().status(), Status::TempRevoked);
}

#[test]
fn attach_refuses_an_importer_without_peer_to_peer_with_eopnotsupp() {
    let f = Fixture::new();
    let (importer, _events) = TestImporter::with(OnInvalidate::UnmapInside, false, true);
    let e = f.buf().attach(importer.as_importer()).unwrap_err();
    assert_eq!(e.errno(), Errno::OPNOTSUPP, "{e}");
    // Checked before the status: still EOPNOTSUPP on a revoked buffer.
    f.fd.set_memory_enable(false).unwrap();
    let e = f.buf().attach(importer.as_importer()).unwrap_err();
    assert_eq!(e.errno(), Errno::OPNOTSUPP, "{e}");
    assert_eq!(f.buf().attachments(), 0);
}

#[test]
fn attach_refuses_a_non_revocable_importer_with_eopnotsupp() {
    let f = Fixture::new();
    let (importer, _events) = TestImporter::with(OnInvalidate::UnmapInside, true, false);
    let e = f.buf().attach(importer.as_importer()).unwrap_err();
    assert_eq!(e.errno(), Errno::OPNOTSUPP, "{e}");
    assert_eq!(f.buf().attachments(), 0);
}

#[test]
fn attach_refuses_a_revoked_buffer_with_enodev() {
    let f = Fixture::new();
    let (importer, _events) = TestImporter::new(OnInvalidate::UnmapInside);
    // TempRevoked (memory off).
    f.fd.set_memory_enable(false).unwrap();
    assert_eq!(f.buf().attach(importer.as_importer()).unwrap_err().errno(), Errno::NODEV);
    f.fd.set_memory_enable(true).unwrap();
    drop(f.buf().attach(importer.as_importer()).unwrap());
    // PermRevoked.
    f.fd.feature_dma_buf_revoke(f.buf_fd.raw_fd()).unwrap();
    assert_eq!(f.buf().attach(importer.as_importer()).unwrap_err().errno(), Errno::NODEV);
    // A buffer whose device was closed.
    let other = f.fd.feature_dma_buf(1, libc::O_RDWR as u32, &[(0, LEN)]).unwrap();
    let Fixture { aspace, vdev, fd, buf_fd } = f;
    drop(fd);
    assert_eq!(vdev.open_count(), 0);
    assert_eq!(other.buffer().attach(importer.as_importer()).unwrap_err().errno(), Errno::NODEV);
    assert_eq!(buf_fd.buffer().attachments(), 0);
    drop(aspace);
}

#[test]
fn importer_maps_again_after_unrevoke_and_is_invalidated_again() {
    let f = Fixture::new();
    let (importer, events) = TestImporter::new(OnInvalidate::UnmapInside);
    let attachment = f.buf().attach(importer.as_importer()).unwrap();
    importer.hold(attachment.map().unwrap());
    for round in 1..=3 {
        f.fd.set_memory_enable(false).unwrap();
        assert_eq!(importer.invalidations(), round);
        assert_eq!(next_invalidation(&events).status, Status::TempRevoked);
        assert_eq!(attachment.map().unwrap_err().errno(), Errno::NODEV);
        f.fd.set_memory_enable(true).unwrap();
        // The same attachment maps again, and sees the buffer's ranges.
        let m = attachment.map().unwrap();
        assert_eq!(m.ranges(), f.buf().ranges());
        assert_eq!(m.attachment_id(), attachment.id());
        importer.hold(m);
        assert_eq!(f.buf().importer_mappings(), 1);
    }
    // Other events invalidate too, and the CPU mapping is unaffected by the importer's life.
    let va = mmap_dmabuf(&f.aspace, &f.buf_fd, MmapArgs::shared(0, LEN)).unwrap();
    probe::write_u64(va, 42).unwrap();
    f.fd.flr().unwrap();
    assert_eq!(importer.invalidations(), 4);
    f.fd.reset().unwrap();
    assert_eq!(importer.invalidations(), 5);
    assert_eq!(probe::read_u64(va).unwrap(), 42);
}

#[test]
fn permanent_revoke_invalidates_the_importer_and_waits_for_its_unmap() {
    let f = Fixture::new();
    let fd = f.fd.dup();
    let raw = f.buf_fd.raw_fd();
    assert_revoke_waits_for_the_importer(f.buf(), move || fd.feature_dma_buf_revoke(raw), Status::PermRevoked);
    // Never un-revoked: memory disable and enable invalidate no one and map nothing.
    let (importer, events) = TestImporter::new(OnInvalidate::UnmapInside);
    assert_eq!(f.buf().attach(importer.as_importer()).unwrap_err().errno(), Errno::NODEV);
    f.fd.set_memory_enable(false).unwrap();
    f.fd.set_memory_enable(true).unwrap();
    assert_eq!(f.buf().status(), Status::PermRevoked);
    assert_eq!(f.buf().attach(importer.as_importer()).unwrap_err().errno(), Errno::NODEV);
    assert!(events.try_recv().is_err());
}

#[test]
fn permanent_revoke_of_a_temp_revoked_buffer_does_not_invalidate_again() {
    let f = Fixture::new();
    let (importer, events) = TestImporter::new(OnInvalidate::UnmapInside);
    let attachment = f.buf().attach(importer.as_importer()).unwrap();
    importer.hold(attachment.map().unwrap());
    f.fd.set_memory_enable(false).unwrap();
    assert_eq!(next_invalidation(&events).status, Status::TempRevoked);
    // TempRevoked → PermRevoked only tightens the status: everything is already torn down.
    f.fd.feature_dma_buf_revoke(f.buf_fd.raw_fd()).unwrap();
    assert_eq!(f.buf().status(), Status::PermRevoked);
    assert_eq!(importer.invalidations(), 1);
    f.fd.set_memory_enable(true).unwrap();
    assert_eq!(f.buf().status(), Status::PermRevoked);
    assert_eq!(attachment.map().unwrap_err().errno(), Errno::NODEV);
}

#[test]
fn device_reset_waits_for_a_holding_importer() {
    let f = Fixture::new();
    let fd = f.fd.dup();
    // Reset revokes and un-revokes in one call: the importer sees TempRevoked,
    // and the buffer is Ok again once the call returned.
    let buf = f.buf().clone();
    let (importer, events) = TestImporter::new(OnInvalidate::Hold);
    let attachment = buf.attach(importer.as_importer()).unwrap();
    importer.hold(attachment.map().unwrap());
    let (log, order) = mpsc::channel::<&'static str>();
    let revoker = {
        let log = log.clone();
        thread::spawn(move || {
            let r = fd.reset();
            let _ = log.send("revoke returned");
            r
        })
    };
    assert_eq!(next_invalidation(&events).status, Status::TempRevoked);
    assert!(matches!(order.recv_timeout(STILL_BLOCKED), Err(RecvTimeoutError::Timeout)));
    let _ = log.send("unmapped");
    assert_eq!(importer.unmap_all(), 1);
    let got: Vec<&str> = (0..2).map(|_| order.recv_timeout(WATCHDOG).unwrap()).collect();
    assert_eq!(got, ["unmapped", "revoke returned"]);
    revoker.join().unwrap().unwrap();
    assert_eq!(buf.status(), Status::Ok);
    importer.hold(attachment.map().unwrap());
}

#[test]
fn importer_of_a_device_fd_mapping_buffer_is_invalidated_too() {
    let f = Fixture::new();
    let va = f.fd.mmap(&f.aspace, MmapArgs::shared(BAR1, LEN)).unwrap();
    probe::write_u64(va, 7).unwrap();
    let implicit: Vec<Arc<DmaBuf>> = f.vdev.dmabufs().into_iter().filter(|b| b.id() != f.buf().id()).collect();
    assert_eq!(implicit.len(), 1);
    let fd = f.fd.dup();
    assert_revoke_waits_for_the_importer(&implicit[0], move || fd.set_memory_enable(false), Status::TempRevoked);
    let e = probe::read_u64(va).unwrap_err();
    assert!(e.is_sigbus() && e.code == libc::BUS_ADRERR, "{e}");
    f.fd.set_memory_enable(true).unwrap();
    assert_eq!(probe::read_u64(va).unwrap(), 7);
}

#[test]
fn device_close_invalidates_the_importers_of_explicit_buffers() {
    let f = Fixture::new();
    let (importer, events) = TestImporter::new(OnInvalidate::UnmapInside);
    let attachment = f.buf().attach(importer.as_importer()).unwrap();
    importer.hold(attachment.map().unwrap());
    let Fixture { aspace, vdev, fd, buf_fd } = f;
    drop(fd);
    assert_eq!(vdev.open_count(), 0);
    let inv = next_invalidation(&events);
    assert_eq!(inv.status, Status::TempRevoked);
    assert_eq!(buf_fd.buffer().importer_mappings(), 0);
    assert_eq!(attachment.map().unwrap_err().errno(), Errno::NODEV);
    // Re-opening the device does not bring the buffer back.
    let _fd = vdev.open();
    assert_eq!(attachment.map().unwrap_err().errno(), Errno::NODEV);
    assert_eq!(importer.invalidations(), 1);
    drop(aspace);
}
