//! Release: exactly once, when the last reference of any kind goes (spec §3.2).

mod common;

use std::any::Any;
use std::sync::Arc;

use common::{as_importer, export, Exporter, OnInvalidate, Recorder};
use dmabuf::{AccessMode, DmaBuf, DmaBufFd, DmaBufOps, ExportInfo, PhysVec, Status};

/// All orders of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut order = rest.clone();
            order.insert(at, n - 1);
            all.push(order);
        }
    }
    all
}

#[test]
fn release_runs_exactly_once_whatever_order_the_holders_go_in() {
    let orders = permutations(5);
    assert_eq!(orders.len(), 120);
    for order in orders {
        let (buf, exporter) = export(Status::Ok);
        let id = buf.id();
        let importer = Recorder::new(OnInvalidate::Ignore);
        let handle = DmaBufFd::new(Arc::clone(&buf)).unwrap();
        let dup = handle.dup().unwrap();
        let attachment = buf.attach(as_importer(&importer)).unwrap();
        let mapping = attachment.map().unwrap();
        // Everything that keeps a buffer alive; the last is what a CPU mapping holds.
        let mut holders: Vec<Option<Box<dyn Any>>> = vec![
            Some(Box::new(handle)),
            Some(Box::new(dup)),
            Some(Box::new(attachment)),
            Some(Box::new(mapping)),
            Some(Box::new(Arc::clone(&buf))),
        ];
        drop(buf);
        for (step, &index) in order.iter().enumerate() {
            assert_eq!(exporter.releases(), 0, "{order:?} step {step}");
            drop(holders[index].take());
        }
        assert_eq!(exporter.releases(), 1, "{order:?}");
        assert_eq!(*exporter.released_id.lock().unwrap(), Some(id));
    }
}

#[test]
fn revoke_does_not_release_and_release_does_not_need_revoke() {
    let (buf, exporter) = export(Status::Ok);
    buf.set_status(Status::PermRevoked).unwrap();
    assert_eq!(exporter.releases(), 0);
    drop(buf);
    assert_eq!(exporter.releases(), 1);
}

#[test]
fn failed_export_leaves_nothing_and_never_calls_release() {
    let exporter = Arc::new(Exporter::default());
    for ranges in [
        vec![],
        vec![PhysVec { paddr: page::PhysAddr(0), len: 0x800 }],
        vec![PhysVec { paddr: page::PhysAddr(0), len: 0 }],
    ] {
        let result = DmaBuf::export(ExportInfo {
            ops: Arc::clone(&exporter) as Arc<dyn DmaBufOps>,
            ranges,
            name: None,
            mode: AccessMode::ReadOnly,
            initial_status: Status::Ok,
        });
        assert_eq!(result.unwrap_err().errno(), rustix::io::Errno::INVAL);
    }
    assert_eq!(exporter.releases(), 0);
    // Only our reference is left: the failed exports dropped theirs.
    assert_eq!(Arc::strong_count(&exporter), 1);
}

#[test]
fn exporter_recognises_its_own_buffers_through_ops() {
    let (buf, exporter) = export(Status::Ok);
    let ours = buf.ops().as_any().downcast_ref::<Exporter>().unwrap();
    assert!(std::ptr::eq(ours, Arc::as_ptr(&exporter)));
    assert_eq!(buf.mode(), AccessMode::ReadWrite);
    assert_eq!(buf.size(), 0x3000);
    assert_eq!(buf.nr_ranges(), 2);
}

#[test]
fn set_name_enforces_dma_buf_name_len() {
    let (buf, _) = export(Status::Ok);
    assert_eq!(buf.name().as_deref(), Some("test-buffer"));
    buf.set_name(&"n".repeat(dmabuf::DMA_BUF_NAME_LEN - 1)).unwrap();
    assert_eq!(buf.name().map(|n| n.len()), Some(31));
    let error = buf.set_name(&"n".repeat(dmabuf::DMA_BUF_NAME_LEN)).unwrap_err();
    assert_eq!(error.errno(), rustix::io::Errno::INVAL);
    // A rejected name leaves the old one.
    assert_eq!(buf.name().map(|n| n.len()), Some(31));
}

#[test]
fn ids_are_unique() {
    let (a, _) = export(Status::Ok);
    let (b, _) = export(Status::Ok);
    assert_ne!(a.id(), b.id());
}
