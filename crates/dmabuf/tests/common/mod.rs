//! Fixtures shared by the integration tests.

// Each test binary uses a different subset of these fixtures.
#![allow(dead_code)]

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dmabuf::{
    AccessMode, Attachment, AttachmentRef, CpuMapping, DmaBuf, DmaBufOps, ExportInfo, Importer, ImporterMapping,
    PhysVec, ResvGuard, Status,
};

/// An exporter that counts releases and remembers the id it was released for.
#[derive(Debug, Default)]
pub struct Exporter {
    pub releases: AtomicUsize,
    pub released_id: Mutex<Option<u64>>,
}

impl DmaBufOps for Exporter {
    fn release(&self, buf: &DmaBuf) {
        self.releases.fetch_add(1, Ordering::SeqCst);
        *self.released_id.lock().unwrap() = Some(buf.id());
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Exporter {
    pub fn releases(&self) -> usize {
        self.releases.load(Ordering::SeqCst)
    }
}

/// Exports a two-range buffer (three pages) in `status`; returns it and its exporter.
pub fn export(status: Status) -> (Arc<DmaBuf>, Arc<Exporter>) {
    let exporter = Arc::new(Exporter::default());
    let buf = DmaBuf::export(ExportInfo {
        ops: Arc::clone(&exporter) as Arc<dyn DmaBufOps>,
        ranges: vec![
            PhysVec { paddr: page::PhysAddr(0x10_0000), len: 0x2000 },
            PhysVec { paddr: page::PhysAddr(0x4000), len: 0x1000 },
        ],
        name: Some("test-buffer".into()),
        mode: AccessMode::ReadWrite,
        initial_status: status,
    })
    .expect("export");
    (buf, exporter)
}

/// What an importer does when told to invalidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInvalidate {
    /// Nothing: mappings stay until someone else unmaps them.
    Ignore,
    /// Unmap every held mapping right inside the callback (`unmap_locked`).
    UnmapInside,
}

/// A configurable importer that records its invalidations and may hold mappings.
#[derive(Debug)]
pub struct Recorder {
    pub peer2peer: bool,
    pub revocable: bool,
    pub on_invalidate: OnInvalidate,
    pub invalidations: AtomicUsize,
    /// Ids of the attachments invalidated, in call order.
    pub invalidated: Mutex<Vec<u64>>,
    /// Mappings the importer holds (used with `UnmapInside`).
    pub held: Mutex<Vec<ImporterMapping>>,
}

impl Recorder {
    pub fn new(on_invalidate: OnInvalidate) -> Arc<Recorder> {
        Arc::new(Recorder {
            peer2peer: true,
            revocable: true,
            on_invalidate,
            invalidations: AtomicUsize::new(0),
            invalidated: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
        })
    }

    pub fn with_caps(peer2peer: bool, revocable: bool) -> Arc<Recorder> {
        Arc::new(Recorder {
            peer2peer,
            revocable,
            on_invalidate: OnInvalidate::Ignore,
            invalidations: AtomicUsize::new(0),
            invalidated: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
        })
    }

    pub fn invalidations(&self) -> usize {
        self.invalidations.load(Ordering::SeqCst)
    }

    pub fn hold(&self, mapping: ImporterMapping) {
        self.held.lock().unwrap().push(mapping);
    }
}

impl Importer for Recorder {
    fn peer2peer(&self) -> bool {
        self.peer2peer
    }

    fn revocable(&self) -> bool {
        self.revocable
    }

    fn invalidate_mappings(&self, attachment: &AttachmentRef<'_>, resv: &mut ResvGuard<'_>) {
        // The status is published before any importer hears of the revoke.
        assert!(resv.status().is_revoked());
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.invalidated.lock().unwrap().push(attachment.id());
        if self.on_invalidate == OnInvalidate::UnmapInside {
            let held = std::mem::take(&mut *self.held.lock().unwrap());
            for mapping in held {
                mapping.unmap_locked(resv);
            }
        }
    }
}

pub fn as_importer(recorder: &Arc<Recorder>) -> Arc<dyn Importer> {
    Arc::clone(recorder) as Arc<dyn Importer>
}

/// A CPU mapping that counts zaps.
#[derive(Debug, Default)]
pub struct ZapCounter {
    pub zaps: AtomicUsize,
}

impl ZapCounter {
    pub fn zaps(&self) -> usize {
        self.zaps.load(Ordering::SeqCst)
    }

    /// Registers `mapping` with `buf`.
    pub fn register(mapping: &Arc<ZapCounter>, buf: &DmaBuf) {
        let weak: Weak<dyn CpuMapping> = Arc::<ZapCounter>::downgrade(mapping);
        buf.register_cpu_mapping(weak);
    }
}

impl CpuMapping for ZapCounter {
    fn zap(&self) {
        self.zaps.fetch_add(1, Ordering::SeqCst);
    }
}

/// A buffer whose revokes cannot finish on time: one importer that ignores
/// invalidations holds one importer mapping nobody unmaps; one CPU mapping
/// is registered; a revoke waits for the importer at most `timeout`.
pub struct Stuck {
    pub buf: Arc<DmaBuf>,
    pub importer: Arc<Recorder>,
    pub cpu: Arc<ZapCounter>,
    pub attachment: Attachment,
    pub mapping: ImporterMapping,
}

impl Stuck {
    pub fn new(timeout: Duration) -> Stuck {
        let (buf, _) = export(Status::Ok);
        let importer = Recorder::new(OnInvalidate::Ignore);
        let attachment = buf.attach(as_importer(&importer)).unwrap();
        let mapping = attachment.map().unwrap();
        let cpu = Arc::new(ZapCounter::default());
        ZapCounter::register(&cpu, &buf);
        buf.set_revoke_timeout(Some(timeout));
        Stuck { buf, importer, cpu, attachment, mapping }
    }
}
