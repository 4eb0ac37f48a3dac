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
//! [`QUIET`]).

mod attach;
mod buffer_mmap;
mod check_feature;
mod device_mmap;
mod export;
mod memattr;
mod region;
mod revoke;
mod sigbus;

use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dmabuf::{
    AccessMode, AttachmentRef, DmaBuf, DmaBufFd, DmaBufOps, ExportInfo, Importer, PhysVec, ResvGuard, Status,
};
use mm::{probe, AddressSpace};
use pci::PowerState;
use rustix::io::Errno;
use vfio::uapi::*;
use vfio::{mmap_dmabuf, DeviceFd, FeatureReply, MmapArgs, VfioDmaBuf, VfioError, VfioPciDevice};

const PAGE: u64 = 0x1000;
const MIB: u64 = 1 << 20;
/// The highest page-aligned `u64`.
const LAST_PAGE: u64 = !(PAGE - 1);
/// edu-plus BAR1: 64 MiB of RAM.
const BAR1_LEN: u64 = 64 * MIB;
const RDWR: u32 = (libc::O_RDWR | libc::O_CLOEXEC) as u32;
const RDONLY: u32 = (libc::O_RDONLY | libc::O_CLOEXEC) as u32;
const WRONLY: u32 = (libc::O_WRONLY | libc::O_CLOEXEC) as u32;
const GET: u32 = VFIO_DEVICE_FEATURE_GET;
const SET: u32 = VFIO_DEVICE_FEATURE_SET;
const PROBE: u32 = VFIO_DEVICE_FEATURE_PROBE;
const DMA_BUF: u32 = VFIO_DEVICE_FEATURE_DMA_BUF;
const REVOKE: u32 = VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE;
const MEMATTR: u32 = VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR;

/// Tests of this file run as threads of one process and share its buffer
/// handle table. Every test holds this lock for read; the one test that
/// compares the process-wide handle count holds it for write, so no other
/// test creates or closes a handle meanwhile.
static QUIET: RwLock<()> = RwLock::new(());

static NEXT_CDEV: AtomicU32 = AtomicU32::new(0);

/// One test's world: its own address space and its own device.
struct Fixture {
    aspace: AddressSpace,
    vdev: Arc<VfioPciDevice>,
    /// Dropped last, after every mapping and buffer of the test is gone.
    _quiet: RwLockReadGuard<'static, ()>,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let quiet = QUIET.read().unwrap_or_else(|e| e.into_inner());
        Self { aspace: AddressSpace::new().unwrap(), vdev: device(name), _quiet: quiet }
    }

    fn edu_plus() -> Self {
        Self::new("edu-plus")
    }

    /// Counts that a failed operation must leave as they were.
    fn counts(&self) -> Counts {
        Counts {
            dmabufs: self.vdev.dmabufs().len(),
            vmas: self.aspace.vmas().len(),
            open_count: self.vdev.open_count(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    dmabufs: usize,
    vmas: usize,
    open_count: u32,
}

fn device(name: &str) -> Arc<VfioPciDevice> {
    let cdev = NEXT_CDEV.fetch_add(1, Ordering::Relaxed);
    VfioPciDevice::from_catalogue(cdev, "0000:00:03.0".parse().unwrap(), name).unwrap()
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
        ranges: vec![PhysVec { paddr: 0, len: PAGE }],
        name: None,
        mode: AccessMode::ReadWrite,
        initial_status: Status::Ok,
    })
    .unwrap();
    DmaBufFd::new(buf).unwrap()
}

/// An importer with configurable peer-to-peer and revocability.
#[derive(Debug)]
struct TestImporter {
    peer2peer: bool,
    revocable: bool,
}

impl Importer for TestImporter {
    fn peer2peer(&self) -> bool {
        self.peer2peer
    }
    fn revocable(&self) -> bool {
        self.revocable
    }
    fn invalidate_mappings(&self, _attachment: &AttachmentRef<'_>, _resv: &mut ResvGuard<'_>) {}
}

fn importer(peer2peer: bool, revocable: bool) -> Arc<dyn Importer> {
    Arc::new(TestImporter { peer2peer, revocable })
}

fn assert_sigbus(va: u64) {
    let fault = probe::read_u64(va).expect_err("access must fault");
    assert!(fault.is_sigbus(), "{fault}");
    assert_eq!(fault.code, libc::BUS_ADRERR);
}
