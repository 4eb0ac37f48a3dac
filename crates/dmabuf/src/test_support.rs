//! Fixtures shared by the unit tests.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::{AccessMode, CpuMapping, DmaBuf, DmaBufOps, ExportInfo, PhysVec, Status};

/// An exporter that counts releases.
#[derive(Debug, Default)]
pub(crate) struct Exporter {
    pub(crate) releases: AtomicUsize,
}

impl DmaBufOps for Exporter {
    fn release(&self, _buf: &DmaBuf) {
        self.releases.fetch_add(1, Ordering::SeqCst);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A CPU mapping that counts zaps.
#[derive(Debug, Default)]
pub(crate) struct ZapCounter {
    pub(crate) zaps: Arc<AtomicUsize>,
}

impl CpuMapping for ZapCounter {
    fn zap(&self) {
        self.zaps.fetch_add(1, Ordering::SeqCst);
    }
}

/// A one-page buffer with the given name, status `Ok`.
pub(crate) fn export_named(name: Option<&str>) -> Arc<DmaBuf> {
    DmaBuf::export(ExportInfo {
        ops: Arc::new(Exporter::default()),
        ranges: vec![PhysVec { paddr: page::PhysAddr(0x1000), len: 0x1000 }],
        name: name.map(str::to_owned),
        mode: AccessMode::ReadWrite,
        initial_status: Status::Ok,
    })
    .unwrap_or_else(|e| panic!("export failed: {e}"))
}

/// A one-page unnamed buffer, status `Ok`.
pub(crate) fn export_ok() -> Arc<DmaBuf> {
    export_named(None)
}
