//! The status machine of spec §4.7: every (from, to) pair, and a model check.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{as_importer, export, OnInvalidate, Recorder, Stuck, ZapCounter};
use dmabuf::{Attachment, DmaBuf, ImporterMapping, Status, Transition};
use proptest::prelude::*;
use rustix::io::Errno;

/// A [`Stuck`] buffer brought to a given state, its counts back at zero.
struct Fixture {
    buf: Arc<DmaBuf>,
    importer: Arc<Recorder>,
    cpu: Arc<ZapCounter>,
    _stuck: (Attachment, ImporterMapping),
}

impl Fixture {
    fn new(from: Status) -> Fixture {
        // A zero timeout turns "the revoke waits" into an immediate ETIMEDOUT, because the
        // importer mapping is never unmapped.
        let Stuck { buf, importer, cpu, attachment, mapping } = Stuck::new(Duration::ZERO);
        if from != Status::Ok {
            let result = buf.set_status(from);
            assert_eq!(result.map_err(|e| e.errno()), Err(Errno::TIMEDOUT));
        }
        assert_eq!(buf.status(), from);
        importer.invalidations.store(0, Ordering::SeqCst);
        cpu.zaps.store(0, Ordering::SeqCst);
        Fixture { buf, importer, cpu, _stuck: (attachment, mapping) }
    }
}

#[test]
fn every_status_pair_does_exactly_what_the_table_says() {
    use Status::{Ok, PermRevoked as Perm, TempRevoked as Temp};
    use Transition::{NoOp, Tightened, Unrevoked};
    /// `Err(ETIMEDOUT)`: the call waited for the importer mapping (and gave up at once).
    const WAITED: Result<Transition, Errno> = Err(Errno::TIMEDOUT);
    // (from, to, result, invalidated, zapped)
    let table = [
        (Ok, Ok, Result::Ok(NoOp), false, false),
        (Ok, Temp, WAITED, true, true),
        (Ok, Perm, WAITED, true, true),
        (Temp, Ok, Result::Ok(Unrevoked), false, true),
        (Temp, Temp, Result::Ok(NoOp), false, false),
        (Temp, Perm, Result::Ok(Tightened), false, false),
        (Perm, Ok, Result::Ok(NoOp), false, false),
        (Perm, Temp, Result::Ok(NoOp), false, false),
        (Perm, Perm, Result::Ok(NoOp), false, false),
    ];
    for (from, to, result, invalidated, zapped) in table {
        let fixture = Fixture::new(from);
        let got = fixture.buf.set_status(to).map_err(|e| e.errno());
        let row = format!("{from} -> {to}");
        assert_eq!(got, result, "{row}: result");
        assert_eq!(fixture.importer.invalidations(), usize::from(invalidated), "{row}: invalidate");
        assert_eq!(fixture.cpu.zaps(), usize::from(zapped), "{row}: zap");
        // Absorbing PERM; otherwise the requested state.
        let expected = if from == Perm { Perm } else { to };
        assert_eq!(fixture.buf.status(), expected, "{row}: status");
    }
}

#[test]
fn full_revoke_returns_revoked_once_importers_have_unmapped() {
    let (buf, _) = export(Status::Ok);
    let importer = Recorder::new(OnInvalidate::UnmapInside);
    let attachment = buf.attach(as_importer(&importer)).unwrap();
    importer.hold(attachment.map().unwrap());
    importer.hold(attachment.map().unwrap());
    assert_eq!(buf.importer_mappings(), 2);

    assert_eq!(buf.set_status(Status::PermRevoked), Ok(Transition::Revoked));
    // The importer unmapped both inside its callback, so the revoke did not block.
    assert_eq!(buf.importer_mappings(), 0);
    assert_eq!(importer.invalidations(), 1);
}

#[test]
fn perm_revoked_is_absorbing_whatever_is_requested() {
    let (buf, _) = export(Status::PermRevoked);
    for status in [Status::Ok, Status::TempRevoked, Status::Ok, Status::PermRevoked] {
        assert_eq!(buf.set_status(status), Ok(Transition::NoOp));
        assert_eq!(buf.status(), Status::PermRevoked);
    }
}

#[test]
fn un_revoke_allows_mapping_again_and_does_not_invalidate() {
    let (buf, _) = export(Status::TempRevoked);
    let importer = Recorder::new(OnInvalidate::UnmapInside);
    assert_eq!(buf.attach(as_importer(&importer)).unwrap_err().errno(), Errno::NODEV);

    assert_eq!(buf.set_status(Status::Ok), Ok(Transition::Unrevoked));
    let attachment = buf.attach(as_importer(&importer)).unwrap();
    let mapping = attachment.map().unwrap();
    assert_eq!(mapping.ranges(), buf.ranges());
    assert_eq!(importer.invalidations(), 0);
}

/// Reference model: the §4.7 table, written independently of the implementation.
fn model(from: Status, to: Status) -> (Status, Transition) {
    match (from, to) {
        (Status::PermRevoked, _) => (Status::PermRevoked, Transition::NoOp),
        (a, b) if a == b => (a, Transition::NoOp),
        (Status::Ok, revoked) => (revoked, Transition::Revoked),
        (Status::TempRevoked, Status::PermRevoked) => (Status::PermRevoked, Transition::Tightened),
        (Status::TempRevoked, _) => (Status::Ok, Transition::Unrevoked),
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Set(Status),
    Map,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::sample::select(Status::ALL.to_vec()).prop_map(Op::Set),
        1 => Just(Op::Map),
    ]
}

proptest! {
    #[test]
    fn random_status_sequences_follow_the_reference_model(
        initial in prop::sample::select(Status::ALL.to_vec()),
        ops in prop::collection::vec(op(), 0..40),
    ) {
        let (buf, exporter) = export(initial);
        let importer = Recorder::new(OnInvalidate::UnmapInside);
        let cpu = Arc::new(ZapCounter::default());
        ZapCounter::register(&cpu, &buf);
        // Attached at the first Map that finds the buffer Ok.
        let mut attachment: Option<Attachment> = None;

        let mut status = initial;
        let mut mappings = 0usize;
        let (mut invalidations, mut zaps) = (0usize, 0usize);
        for op in ops {
            match op {
                Op::Set(to) => {
                    let (next, transition) = model(status, to);
                    prop_assert_eq!(buf.set_status(to), Ok(transition));
                    if status == Status::PermRevoked {
                        prop_assert_eq!(next, Status::PermRevoked);
                    }
                    if transition == Transition::Revoked {
                        invalidations += usize::from(attachment.is_some());
                        mappings = 0;
                    }
                    if matches!(transition, Transition::Revoked | Transition::Unrevoked) {
                        zaps += 1;
                    }
                    status = next;
                }
                Op::Map => {
                    if attachment.is_none() {
                        let attached = buf.attach(as_importer(&importer));
                        prop_assert_eq!(attached.is_ok(), status == Status::Ok);
                        attachment = attached.ok();
                    }
                    if let Some(attachment) = &attachment {
                        let mapped = attachment.map();
                        prop_assert_eq!(mapped.is_ok(), status == Status::Ok);
                        if let Ok(mapping) = mapped {
                            importer.hold(mapping);
                            mappings += 1;
                        }
                    }
                }
            }
            prop_assert_eq!(buf.status(), status);
            prop_assert_eq!(buf.importer_mappings(), mappings);
            prop_assert_eq!(importer.invalidations(), invalidations);
            prop_assert_eq!(cpu.zaps(), zaps);
        }
        drop(attachment);
        importer.held.lock().unwrap().clear();
        drop(buf);
        prop_assert_eq!(exporter.releases(), 1);
    }
}
