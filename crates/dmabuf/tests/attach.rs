//! Importer attach, map and unmap (spec §2.5, §2.6).

mod common;

use std::sync::Arc;

use common::{as_importer, export, OnInvalidate, Recorder};
use dmabuf::{Error, Status};
use rustix::io::Errno;

#[test]
fn attach_checks_peer2peer_then_revoked_then_revocable() {
    // (buffer status, peer2peer, revocable, expected error)
    let table = [
        (Status::TempRevoked, false, false, Error::NotPeerToPeer, Errno::OPNOTSUPP),
        (Status::Ok, false, true, Error::NotPeerToPeer, Errno::OPNOTSUPP),
        (Status::TempRevoked, true, false, Error::Revoked, Errno::NODEV),
        (Status::PermRevoked, true, true, Error::Revoked, Errno::NODEV),
        (Status::Ok, true, false, Error::NotRevocable, Errno::OPNOTSUPP),
    ];
    for (status, peer2peer, revocable, error, errno) in table {
        let (buf, _) = export(status);
        let importer = Recorder::with_caps(peer2peer, revocable);
        let got = buf.attach(as_importer(&importer)).unwrap_err();
        let row = format!("{status} p2p={peer2peer} revocable={revocable}");
        assert_eq!(got, error, "{row}");
        assert_eq!(got.errno(), errno, "{row}");
        assert_eq!(buf.attachments(), 0, "{row}: nothing left behind");
    }
}

#[test]
fn attach_succeeds_on_an_ok_buffer_and_detach_removes_it() {
    let (buf, _) = export(Status::Ok);
    let importer = Recorder::new(OnInvalidate::Ignore);
    let first = buf.attach(as_importer(&importer)).unwrap();
    let second = buf.attach(as_importer(&importer)).unwrap();
    assert_ne!(first.id(), second.id());
    assert!(Arc::ptr_eq(first.buffer(), &buf));
    assert_eq!(buf.attachments(), 2);
    drop(first);
    assert_eq!(buf.attachments(), 1);
    drop(second);
    assert_eq!(buf.attachments(), 0);
}

#[test]
fn map_on_a_revoked_buffer_fails_with_enodev() {
    let (buf, _) = export(Status::Ok);
    let importer = Recorder::new(OnInvalidate::UnmapInside);
    let attachment = buf.attach(as_importer(&importer)).unwrap();
    for status in [Status::TempRevoked, Status::PermRevoked] {
        buf.set_status(status).unwrap();
        assert_eq!(attachment.map().unwrap_err(), Error::Revoked);
        let mut resv = buf.resv();
        assert_eq!(attachment.map_locked(&mut resv).unwrap_err().errno(), Errno::NODEV);
        assert_eq!(resv.importer_mappings(), 0);
    }
}

#[test]
fn mappings_are_counted_from_map_to_unmap_in_every_form() {
    let (buf, _) = export(Status::Ok);
    let importer = Recorder::new(OnInvalidate::Ignore);
    let attachment = buf.attach(as_importer(&importer)).unwrap();
    let plain = attachment.map().unwrap();
    let locked = {
        let mut resv = buf.resv();
        let mapping = attachment.map_locked(&mut resv).unwrap();
        assert_eq!(resv.importer_mappings(), 2);
        mapping
    };
    let dropped = attachment.map().unwrap();
    assert_eq!(buf.importer_mappings(), 3);
    assert_eq!(plain.ranges(), buf.ranges());
    assert_eq!(plain.attachment_id(), attachment.id());

    plain.unmap();
    assert_eq!(buf.importer_mappings(), 2);
    {
        let mut resv = buf.resv();
        locked.unmap_locked(&mut resv);
        assert_eq!(resv.importer_mappings(), 1);
    }
    drop(dropped);
    assert_eq!(buf.importer_mappings(), 0);
}

#[test]
fn a_mapping_outlives_its_detached_attachment_and_still_counts() {
    let (buf, exporter) = export(Status::Ok);
    let importer = Recorder::new(OnInvalidate::Ignore);
    let attachment = buf.attach(as_importer(&importer)).unwrap();
    let mapping = attachment.map().unwrap();
    drop(attachment);
    drop(buf);
    assert_eq!(mapping.buffer().attachments(), 0);
    assert_eq!(mapping.buffer().importer_mappings(), 1);
    assert_eq!(exporter.releases(), 0);
    drop(mapping);
    assert_eq!(exporter.releases(), 1);
}

#[test]
#[should_panic(expected = "passed where buffer")]
fn map_locked_with_another_buffers_resv_panics() {
    let (buf, _) = export(Status::Ok);
    let (other, _) = export(Status::Ok);
    let importer = Recorder::new(OnInvalidate::Ignore);
    let attachment = buf.attach(as_importer(&importer)).unwrap();
    let mut wrong = other.resv();
    let _ = attachment.map_locked(&mut wrong);
}
