//! The errno table of the series, one test per row that applies to this
//! model: `vfio_check_feature` (spec §2.1), device-fd mmap (§2.2), region
//! read/write, importer attach and map (§2.5), explicit export (§4.4), mmap
//! of a buffer fd (§4.5), the revoke and memattr features (§4.9, §4.10), and
//! the SIGBUS row of the summary (§5.3).
//!
//! Every failing call also proves that it left nothing behind: no listed
//! buffer, no VMA, no extra open of the device file. Those counts are per
//! device and per address space, so the tests can run in parallel; the
//! process-wide handle count is checked by one test that runs alone (see
//! [`common::alone`]).

mod attach;
mod buffer_mmap;
mod check_feature;
mod create;
mod device_mmap;
mod export;
mod memattr;
mod region;
mod revoke;
mod sigbus;

#[path = "../common/mod.rs"]
mod common;

use std::fmt::Debug;
use std::sync::Arc;

use common::*;
use dmabuf::{AccessMode, DmaBuf, DmaBufFd, DmaBufOps, ExportInfo, Importer, PhysVec, Status};
use mm::probe;
use pci::PowerState;
use rustix::io::Errno;
use vfio::uapi::*;
use vfio::{mmap_dmabuf, DeviceFd, FeatureReply, MmapArgs, VfioDmaBuf, VfioError};

/// Counts that a failed operation must leave as they were.
fn counts(fx: &Fixture) -> Counts {
    Counts { dmabufs: fx.vdev.dmabufs().len(), vmas: fx.aspace.vmas().len(), open_count: fx.vdev.open_count() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    dmabufs: usize,
    vmas: usize,
    open_count: u32,
}

/// The errno of a call that must fail.
fn errno<T: Debug>(r: Result<T, VfioError>) -> Errno {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.errno(),
    }
}

/// The errno of a buffer-core call that must fail.
fn dmabuf_errno<T: Debug>(r: Result<T, dmabuf::Error>) -> Errno {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.errno(),
    }
}

fn is_done(r: Result<FeatureReply, VfioError>) -> bool {
    matches!(r, Ok(FeatureReply::Done))
}

/// Raw `VFIO_DEVICE_FEATURE` GET of `DMA_BUF` with a hand-made payload.
fn raw_export(fd: &DeviceFd, payload: &[u8]) -> Result<FeatureReply, VfioError> {
    fd.feature(GET | DMA_BUF, payload)
}

/// A read-write buffer over the first `len` bytes of BAR1.
fn export_bar1(fd: &DeviceFd, len: u64) -> DmaBufFd {
    fd.feature_dma_buf(1, RDWR, &[(0, len)]).unwrap()
}

/// A file descriptor number that was open and is now closed, and that no
/// other thread of the process will be given: fds are allocated lowest
/// first, and this one sits just under the process's limit.
fn closed_fd_number() -> i32 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let top = limit.current.unwrap_or(1 << 16).min(1 << 16) - 1;
    let file = std::fs::File::open("/dev/null").unwrap();
    let high = rustix::io::fcntl_dupfd_cloexec(&file, top as i32).unwrap();
    let n = std::os::fd::AsRawFd::as_raw_fd(&high);
    drop(high);
    n
}

/// An exporter that is not VFIO.
#[derive(Debug)]
struct ForeignExporter;

impl DmaBufOps for ForeignExporter {
    fn release(&self, _buf: &DmaBuf) {}
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn foreign_buffer_fd() -> DmaBufFd {
    let buf = DmaBuf::export(ExportInfo {
        ops: Arc::new(ForeignExporter),
        ranges: vec![PhysVec { paddr: page::PhysAddr(0), len: PAGE }],
        name: None,
        mode: AccessMode::ReadWrite,
        initial_status: Status::Ok,
    })
    .unwrap();
    DmaBufFd::new(buf).unwrap()
}

/// An importer with the given peer-to-peer support and revocability.
fn importer(peer2peer: bool, revocable: bool) -> Arc<dyn Importer> {
    TestImporter::with(OnInvalidate::Hold, peer2peer, revocable).0
}
