//! Full revoke: invalidate, the importer wait, CPU zaps, and the timeout.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::Duration;

use common::{as_importer, export, OnInvalidate, Recorder, Stuck, ZapCounter};
use dmabuf::{AttachmentRef, Error, Importer, ImporterMapping, ResvGuard, Status, Transition};
use rustix::io::Errno;

/// Tells another thread, through a channel, that it must unmap.
#[derive(Debug)]
struct Notifier {
    tx: Mutex<Sender<u64>>,
}

impl Importer for Notifier {
    fn invalidate_mappings(&self, attachment: &AttachmentRef<'_>, _resv: &mut ResvGuard<'_>) {
        self.tx.lock().unwrap().send(attachment.id()).unwrap();
    }
}

#[test]
fn revoke_waits_until_a_mapping_held_by_another_thread_is_unmapped() {
    let (buf, _) = export(Status::Ok);
    let (invalidate_tx, invalidate_rx) = mpsc::channel();
    let importer: Arc<dyn Importer> = Arc::new(Notifier { tx: Mutex::new(invalidate_tx) });
    let attachment = buf.attach(Arc::clone(&importer)).unwrap();
    let mapping = attachment.map().unwrap();
    let returned = Arc::new(AtomicBool::new(false));
    let (event_tx, event_rx) = mpsc::channel();

    let holder = {
        let returned = Arc::clone(&returned);
        let buf = Arc::clone(&buf);
        thread::spawn(move || {
            let id: u64 = invalidate_rx.recv().unwrap();
            assert_eq!(id, mapping.attachment_id());
            // The status was published before the importer was told.
            assert_eq!(buf.status(), Status::TempRevoked);
            // The revoke cannot have returned: this mapping is still live.
            assert!(!returned.load(Ordering::SeqCst));
            event_tx.send("about to unmap").unwrap();
            mapping.unmap();
        })
    };

    assert_eq!(buf.set_status(Status::TempRevoked), Ok(Transition::Revoked));
    returned.store(true, Ordering::SeqCst);
    // Sent before the unmap, so it must be there once the revoke has returned.
    assert_eq!(event_rx.try_recv(), Ok("about to unmap"));
    assert_eq!(buf.importer_mappings(), 0);
    holder.join().unwrap();
}

#[test]
fn importer_may_unmap_inside_invalidate_mappings() {
    let (buf, _) = export(Status::Ok);
    let first = Recorder::new(OnInvalidate::UnmapInside);
    let second = Recorder::new(OnInvalidate::UnmapInside);
    let a = buf.attach(as_importer(&first)).unwrap();
    let b = buf.attach(as_importer(&second)).unwrap();
    first.hold(a.map().unwrap());
    second.hold(b.map().unwrap());
    second.hold(b.map().unwrap());
    assert_eq!(buf.importer_mappings(), 3);

    assert_eq!(buf.set_status(Status::TempRevoked), Ok(Transition::Revoked));
    // Each attachment was invalidated once, with its own id.
    assert_eq!(*first.invalidated.lock().unwrap(), [a.id()]);
    assert_eq!(*second.invalidated.lock().unwrap(), [b.id()]);
    assert_eq!(buf.importer_mappings(), 0);
    assert_eq!(buf.attachments(), 2);
}

#[test]
fn importer_dropped_while_attached_is_skipped_by_revoke() {
    let (buf, _) = export(Status::Ok);
    let importer = Recorder::new(OnInvalidate::Ignore);
    let attachment = buf.attach(as_importer(&importer)).unwrap();
    drop(importer);
    // The buffer held the importer weakly; nothing to invalidate, nothing to wait for.
    assert_eq!(buf.set_status(Status::PermRevoked), Ok(Transition::Revoked));
    drop(attachment);
    assert_eq!(buf.attachments(), 0);
}

/// Owns its mapping; dropping the importer unmaps it.
#[derive(Debug)]
struct Owning {
    mapping: Mutex<Option<ImporterMapping>>,
    /// Called from invalidate; returns once another thread dropped its reference to us.
    handshake: Mutex<(Sender<()>, Receiver<()>)>,
}

impl Importer for Owning {
    fn invalidate_mappings(&self, _: &AttachmentRef<'_>, _: &mut ResvGuard<'_>) {
        let handshake = self.handshake.lock().unwrap();
        handshake.0.send(()).unwrap();
        handshake.1.recv().unwrap();
    }
}

#[test]
fn importer_whose_last_reference_goes_during_revoke_unmaps_from_its_destructor() {
    let (buf, _) = export(Status::Ok);
    let (to_owner, owner_rx) = mpsc::channel();
    let (owner_tx, from_owner) = mpsc::channel();
    let importer = Arc::new(Owning { mapping: Mutex::new(None), handshake: Mutex::new((to_owner, from_owner)) });
    let attachment = buf.attach(Arc::clone(&importer) as Arc<dyn Importer>).unwrap();
    *importer.mapping.lock().unwrap() = Some(attachment.map().unwrap());
    let weak: Weak<Owning> = Arc::downgrade(&importer);

    // Another thread holds the only strong reference and drops it during invalidate, so
    // the revoke's own reference becomes the last one. The revoke must drop it after
    // releasing resv, because the destructor unmaps (and takes resv).
    let owner = thread::spawn(move || {
        owner_rx.recv().unwrap();
        drop(importer);
        owner_tx.send(()).unwrap();
    });

    assert_eq!(buf.set_status(Status::TempRevoked), Ok(Transition::Revoked));
    owner.join().unwrap();
    assert!(weak.upgrade().is_none());
    assert_eq!(buf.importer_mappings(), 0);
}

#[test]
fn revoke_timeout_fails_with_etimedout_but_still_revokes_and_zaps() {
    let Stuck { buf, attachment, mapping, cpu, .. } = Stuck::new(Duration::from_millis(1));

    let error = buf.set_status(Status::TempRevoked).unwrap_err();
    assert_eq!(error.errno(), Errno::TIMEDOUT);
    assert_eq!(error, Error::ImporterTimeout { id: buf.id(), outstanding: 1 });
    assert_eq!(buf.status(), Status::TempRevoked);
    assert_eq!(cpu.zaps(), 1);
    assert_eq!(attachment.map().unwrap_err().errno(), Errno::NODEV);

    // The straggler unmaps late; the buffer can then come back.
    mapping.unmap();
    assert_eq!(buf.importer_mappings(), 0);
    assert_eq!(buf.set_status(Status::Ok), Ok(Transition::Unrevoked));
    assert!(attachment.map().is_ok());
}

#[test]
fn revoke_and_un_revoke_zap_every_live_cpu_mapping() {
    let (buf, _) = export(Status::Ok);
    let live: Vec<Arc<ZapCounter>> = (0..3).map(|_| Arc::new(ZapCounter::default())).collect();
    for mapping in &live {
        ZapCounter::register(mapping, &buf);
    }
    let dead = Arc::new(ZapCounter::default());
    ZapCounter::register(&dead, &buf);
    drop(dead);
    assert_eq!(buf.cpu_mappings(), 3);

    assert_eq!(buf.set_status(Status::TempRevoked), Ok(Transition::Revoked));
    assert!(live.iter().all(|m| m.zaps() == 1));
    // Un-revoke zaps again: it clears the poison markers faults left meanwhile.
    assert_eq!(buf.set_status(Status::Ok), Ok(Transition::Unrevoked));
    assert!(live.iter().all(|m| m.zaps() == 2));
    // A no-op does not zap.
    assert_eq!(buf.set_status(Status::Ok), Ok(Transition::NoOp));
    assert!(live.iter().all(|m| m.zaps() == 2));
    assert_eq!(buf.cpu_mappings(), 3);
}

/// A CPU mapping whose zap checks that the importers are already gone and that no lock
/// of the buffer is held (it takes resv itself).
#[derive(Debug)]
struct CheckingZap {
    buf: Weak<dmabuf::DmaBuf>,
    seen_mappings: Mutex<Vec<usize>>,
}

impl dmabuf::CpuMapping for CheckingZap {
    fn zap(&self) {
        let buf = self.buf.upgrade().unwrap();
        self.seen_mappings.lock().unwrap().push(buf.importer_mappings());
    }
}

#[test]
fn cpu_zap_runs_after_the_importers_drained_and_without_resv() {
    let (buf, _) = export(Status::Ok);
    let importer = Recorder::new(OnInvalidate::UnmapInside);
    let attachment = buf.attach(as_importer(&importer)).unwrap();
    importer.hold(attachment.map().unwrap());
    let zap = Arc::new(CheckingZap { buf: Arc::downgrade(&buf), seen_mappings: Mutex::new(Vec::new()) });
    buf.register_cpu_mapping(Arc::<CheckingZap>::downgrade(&zap) as Weak<dyn dmabuf::CpuMapping>);

    assert_eq!(buf.set_status(Status::PermRevoked), Ok(Transition::Revoked));
    assert_eq!(*zap.seen_mappings.lock().unwrap(), [0]);
}
