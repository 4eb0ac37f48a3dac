//! What the integration tests of this crate share: the numbers of the
//! emulated devices, the feature constants, a device and an address space
//! per test, SIGBUS assertions, the test importer, and a snapshot of what the
//! process holds.

// Each test binary uses its own part of these.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use dmabuf::{AttachmentRef, Importer, ImporterMapping, ResvGuard, Status};
use mm::{probe, AddressSpace};
use vfio::uapi::*;
use vfio::VfioPciDevice;

pub const PAGE: u64 = page::PAGE_SIZE;
pub const MIB: u64 = 1 << 20;
/// The highest page-aligned `u64`.
pub const LAST_PAGE: u64 = !(PAGE - 1);
/// Device-fd offset of BAR1 (`VFIO_PCI_INDEX_TO_OFFSET(1)`).
pub const BAR1: u64 = 1 << 40;
/// edu-plus BAR1: 64 MiB of RAM.
pub const BAR1_LEN: u64 = 64 * MIB;

/// `open_flags` of an export.
pub const RDWR: u32 = (libc::O_RDWR | libc::O_CLOEXEC) as u32;
pub const RDONLY: u32 = (libc::O_RDONLY | libc::O_CLOEXEC) as u32;
pub const WRONLY: u32 = (libc::O_WRONLY | libc::O_CLOEXEC) as u32;

/// `VFIO_DEVICE_FEATURE` flags and feature numbers.
pub const GET: u32 = VFIO_DEVICE_FEATURE_GET;
pub const SET: u32 = VFIO_DEVICE_FEATURE_SET;
pub const PROBE: u32 = VFIO_DEVICE_FEATURE_PROBE;
pub const DMA_BUF: u32 = VFIO_DEVICE_FEATURE_DMA_BUF;
pub const REVOKE: u32 = VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE;
pub const MEMATTR: u32 = VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR;

/// The tests of one binary run as threads of one process and share what the
/// process holds: its buffer handle table, its address space. A test that
/// compares a process-wide count, or that must find an address it unmapped
/// still unmapped, holds this lock for write ([`alone`]); every other test
/// holds it for read ([`quiet`], or through its [`Fixture`]).
static QUIET: RwLock<()> = RwLock::new(());

pub fn quiet() -> RwLockReadGuard<'static, ()> {
    QUIET.read().unwrap_or_else(|e| e.into_inner())
}

pub fn alone() -> RwLockWriteGuard<'static, ()> {
    QUIET.write().unwrap_or_else(|e| e.into_inner())
}

static NEXT_DEVICE: AtomicU32 = AtomicU32::new(0);

/// A device from the catalogue with a character device number and an
/// address of its own: the first is `vfio0` at `0000:00:00.0`.
pub fn device(name: &str) -> Arc<VfioPciDevice> {
    let n = NEXT_DEVICE.fetch_add(1, Ordering::Relaxed);
    let bdf = format!("0000:{:02x}:{:02x}.0", n / 32 % 256, n % 32);
    VfioPciDevice::from_catalogue(n, bdf.parse().unwrap(), name).unwrap()
}

/// One test's world: its own address space and its own device (not opened).
pub struct Fixture {
    pub aspace: AddressSpace,
    pub vdev: Arc<VfioPciDevice>,
    /// Dropped last, after every mapping and buffer of the test is gone.
    _quiet: RwLockReadGuard<'static, ()>,
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        let quiet = quiet();
        Fixture { aspace: AddressSpace::new().unwrap(), vdev: device(name), _quiet: quiet }
    }

    pub fn edu_plus() -> Fixture {
        Fixture::new("edu-plus")
    }
}

/// Bound on waits that only a broken implementation would exceed.
pub const WATCHDOG: Duration = Duration::from_secs(20);
/// How long a call that must still be blocked is given to (wrongly) return.
pub const STILL_BLOCKED: Duration = Duration::from_millis(100);

/// What a store through a revoked mapping tries to write; it must never land.
pub const GARBAGE: u64 = 0xdead_dead_dead_dead;

/// Asserts that a load and a store at `va` both raise SIGBUS `BUS_ADRERR`
/// at `va`: what any access to a revoked BAR mapping gives.
#[track_caller]
pub fn assert_sigbus(va: u64) {
    let e = probe::read_u64(va).expect_err("a load through a revoked mapping must fault");
    assert!(e.is_sigbus() && e.code == libc::BUS_ADRERR && e.addr == va, "load at {va:#x}: {e}");
    let e = probe::write_u64(va, GARBAGE).expect_err("a store through a revoked mapping must fault");
    assert!(e.is_sigbus() && e.code == libc::BUS_ADRERR && e.addr == va, "store at {va:#x}: {e}");
}

/// Importer mappings an importer owns, where its invalidate callback can
/// find them.
#[derive(Debug, Default)]
pub struct HeldMappings(Mutex<Vec<ImporterMapping>>);

impl HeldMappings {
    fn lock(&self) -> MutexGuard<'_, Vec<ImporterMapping>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn hold(&self, mapping: ImporterMapping) {
        self.lock().push(mapping);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Every held mapping, no longer held.
    pub fn take(&self) -> Vec<ImporterMapping> {
        std::mem::take(&mut *self.lock())
    }

    /// Unmaps every held mapping from outside the callback; returns how many.
    pub fn unmap_all(&self) -> usize {
        let mappings = self.take();
        let n = mappings.len();
        for m in mappings {
            m.unmap();
        }
        n
    }

    /// From inside `invalidate_mappings`: unmaps, under the resv the callback
    /// was given, every held mapping of `attachment`; returns how many.
    /// `before_unmap` runs for each of them once it is out of the list and
    /// before it is unmapped, with the list still locked: a thread that then
    /// finds the mapping gone knows `before_unmap` ran.
    pub fn unmap_locked_of(
        &self,
        attachment: &AttachmentRef<'_>,
        resv: &mut ResvGuard<'_>,
        mut before_unmap: impl FnMut(),
    ) -> usize {
        let mine: Vec<ImporterMapping> = {
            let mut held = self.lock();
            let (mine, others) = held.drain(..).partition(|m| {
                // Attachment ids are unique per buffer only.
                m.buffer().id() == attachment.buffer().id() && m.attachment_id() == attachment.id()
            });
            *held = others;
            mine.iter().for_each(|_| before_unmap());
            mine
        };
        let n = mine.len();
        for m in mine {
            m.unmap_locked(resv);
        }
        n
    }
}

/// What the test importer does when told to invalidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInvalidate {
    /// Keep the mappings until the test unmaps them ([`TestImporter::unmap_all`]).
    Hold,
    /// Unmap them right inside the callback, with `unmap_locked`.
    UnmapInside,
}

/// What one invalidate saw, under the buffer's resv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalidation {
    pub buffer: u64,
    pub attachment: u64,
    pub status: Status,
    /// Importer mappings of the buffer left when the callback returned.
    pub mappings_left: usize,
}

/// A test importer: counts and reports invalidates, and owns its mappings.
/// A buffer holds its importers weakly: the test keeps the `Arc`.
#[derive(Debug)]
pub struct TestImporter {
    on_invalidate: OnInvalidate,
    peer2peer: bool,
    revocable: bool,
    invalidations: AtomicUsize,
    events: Mutex<Sender<Invalidation>>,
    /// Never locked by the test while it calls into a buffer (the callback
    /// runs under resv and takes it).
    held: HeldMappings,
}

impl TestImporter {
    /// A peer-to-peer, revocable importer, and where its invalidates are told.
    pub fn new(on_invalidate: OnInvalidate) -> (Arc<TestImporter>, Receiver<Invalidation>) {
        Self::with(on_invalidate, true, true)
    }

    pub fn with(
        on_invalidate: OnInvalidate,
        peer2peer: bool,
        revocable: bool,
    ) -> (Arc<TestImporter>, Receiver<Invalidation>) {
        let (tx, rx) = mpsc::channel();
        let importer = TestImporter {
            on_invalidate,
            peer2peer,
            revocable,
            invalidations: AtomicUsize::new(0),
            events: Mutex::new(tx),
            held: HeldMappings::default(),
        };
        (Arc::new(importer), rx)
    }

    pub fn as_importer(self: &Arc<Self>) -> Arc<dyn Importer> {
        self.clone()
    }

    pub fn hold(&self, mapping: ImporterMapping) {
        self.held.hold(mapping);
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Unmaps every held mapping (from outside the callback); returns how many.
    pub fn unmap_all(&self) -> usize {
        self.held.unmap_all()
    }

    pub fn invalidations(&self) -> usize {
        self.invalidations.load(Ordering::SeqCst)
    }
}

impl Importer for TestImporter {
    fn peer2peer(&self) -> bool {
        self.peer2peer
    }

    fn revocable(&self) -> bool {
        self.revocable
    }

    fn invalidate_mappings(&self, attachment: &AttachmentRef<'_>, resv: &mut ResvGuard<'_>) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        if self.on_invalidate == OnInvalidate::UnmapInside {
            self.held.unmap_locked_of(attachment, resv, || {});
        }
        // Nobody listening is fine: not every test reads the reports.
        let _ = self.events.lock().unwrap_or_else(|e| e.into_inner()).send(Invalidation {
            buffer: attachment.buffer().id(),
            attachment: attachment.id(),
            status: resv.status(),
            mappings_left: resv.importer_mappings(),
        });
    }
}

/// What the process holds that a leak would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessState {
    /// Targets of `/proc/self/fd/*` with their multiplicity (memfds read
    /// `/memfd:<name> (deleted)`).
    pub fd_targets: BTreeMap<String, usize>,
    /// Entries of `/proc/self/task`.
    pub threads: usize,
    /// Lines of the real `/proc/self/maps`.
    pub maps: Vec<String>,
}

impl ProcessState {
    pub fn now() -> ProcessState {
        let mut fd_targets = BTreeMap::new();
        for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
            // The listing's own descriptor may be gone by the time we read
            // it; when it is not, it is there both times.
            let Ok(target) = std::fs::read_link(entry.unwrap().path()) else { continue };
            *fd_targets.entry(target.to_string_lossy().into_owned()).or_insert(0) += 1;
        }
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap().lines().map(str::to_owned).collect();
        let threads = std::fs::read_dir("/proc/self/task").unwrap().count();
        ProcessState { fd_targets, threads, maps }
    }

    pub fn nr_fds(&self) -> usize {
        self.fd_targets.values().sum()
    }

    /// Lines of `maps` that map a BAR's memory (the memfds are named after
    /// the device, `vfio<N>:<bdf>/<bar>`).
    pub fn bar_maps_lines(&self) -> usize {
        self.maps.iter().filter(|l| l.contains("vfio")).count()
    }
}
