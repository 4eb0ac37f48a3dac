//! A fault storm on real memory: accessor threads touch pages of several BAR
//! mappings in a loop while other threads revoke and un-revoke them in every
//! way the device offers, and the test judges every single access.
//!
//! # The cast
//!
//! - Three accessors pick a mapping and a page at random and read or write
//!   their own word in it (accessor `a` owns the word at byte `64 * a` of
//!   every page, so no two threads ever write the same word, aliases
//!   included).
//! - The toggler clears and sets COMMAND.MEMORY (`set_memory_enable`),
//!   publishing revocation epochs (below).
//! - The resetter runs `VFIO_DEVICE_RESET`, FLR and a one-device hot reset,
//!   each through a freshly dup'ed device fd that it closes afterwards.
//! - The exporter exports new buffers and maps them, maps existing buffers
//!   again, makes device-fd mappings through dup'ed fds, splits live mappings
//!   by unmapping a page in the middle and unmaps whole mappings.
//! - The revoker permanently revokes buffers (`DMA_BUF_REVOKE`), dups and
//!   closes buffer fds.
//! - Two importers attach a test importer to a live buffer (an explicit one
//!   from the pool, or the buffer behind a device-fd mapping), map it, hold
//!   the mapping for a while, unmap and detach; see "Importers" below.
//! - The test's own thread is the watchdog: a thread that makes no progress
//!   for [`STALL`] fails the test with what every thread was doing.
//!
//! Mappings: five stable ones made before the storm (a 4 MiB device-fd
//! mapping with order-9 faults, a small device-fd one, a two-range explicit
//! buffer, an explicit buffer mapped from an offset, and a device-fd mapping
//! aliasing the two-range buffer; three of them split by a munmap in the
//! middle) and [`CHURN_SLOTS`] slots the exporter fills and empties.
//!
//! # What is judged
//!
//! Every access must end in success or SIGBUS `BUS_ADRERR` at its address. A
//! SIGSEGV is accepted only for an address the test itself unmapped. A
//! success is a violation when the buffer was revoked for the whole access,
//! which the test knows in two ways:
//!
//! 1. Permanent revokes: the revoker sets the buffer's `perm` flag right after
//!    `feature_dma_buf_revoke` returned. An accessor loads the flag before the
//!    access; if it was set, the revoke (status `PermRevoked`, which is
//!    terminal, and the zap of every CPU mapping) happened before the access,
//!    so the access can only fault.
//! 2. Temporary revokes, by epoch. The toggler owns the counter `seq`:
//!    after `set_memory_enable(false)` returns it increments `seq` to an odd
//!    value ("revoked since this value"), and it increments `seq` to the next
//!    even value right before it calls `set_memory_enable(true)` ("un-revoke
//!    begins at this value"). An accessor loads `seq` before (`s0`) and after
//!    (`s1`) each access, all `SeqCst`. An access with `s0 == s1` and `s0` odd
//!    lies entirely inside one revoke window, and its success is a violation.
//!
//! Why that has no false positives. Take such an access and suppose it
//! succeeded. (a) The `s0` load read the toggler's odd store, which follows
//! the return of the revoking call in the toggler's program order, so that
//! call happened before the access: every buffer of the device was
//! `TempRevoked` or `PermRevoked` and every CPU mapping zapped (`madvise`
//! returns only after the TLB shootdown). (b) Nothing but the toggler's next
//! call un-revokes in the window: only COMMAND writes, PM writes, FLR, reset,
//! hot reset and the first open un-revoke, each only when memory decoding is
//! enabled at its end; reset and FLR restore COMMAND as it was (MEMORY clear),
//! no other thread writes COMMAND, nobody uses PM, and the device stays open
//! (the storm's own handle) so it is never opened for the first time again.
//! A buffer exported in the window starts `TempRevoked`. (c) So the access
//! needed a page table entry installed after the zap (one installed before
//! it is gone: the fault path decides and installs under `memory_lock` for
//! read, which the revoke holds for write until its zap is done), and the
//! fault path installs one only after reading status `Ok` under the buffer's
//! resv and `memory_lock`, which is the un-revoke's store, made after the
//! toggler's even store. The fault thread then wakes the accessor (the kernel
//! orders the two), so the even store happened before the `s1` load, which
//! must then read at least the even value: `s1 != s0`, a contradiction.
//! `SeqCst` fences on both sides of the access keep it between the two loads
//! for the compiler and the CPU alike (no store hides in the store buffer
//! past `s1`). This holds however many pages one fault maps. Accesses with
//! `s0` even or `s1 != s0` may overlap an un-revoke, a reset or an enabled
//! period and are not judged; the toggler waits inside every window until
//! an accessor has seen a judged SIGBUS, and inside every enabled period
//! until one has seen a success, so both outcomes are really exercised.
//!
//! Unmaps race with accesses on purpose. The exporter sets the mapping's
//! `unmapping` flag or the page's `hole` flag before it calls munmap, and an
//! accessor loads both after its access: set means the address may already
//! belong to anyone (the outcome is not judged, a SIGSEGV is counted as
//! "ours"); clear means munmap had not started, so the access hit our
//! mapping. Only reads race like that: a write to a range being unmapped
//! could land in whatever the kernel puts there next, so writes hold the
//! slot's read lock, which split and unmap take for write.
//!
//! Lost writes: an accessor records the last value each of its writes
//! stored (a write that raised SIGBUS never executed), and every read that
//! succeeds must return it (zero if never written); at the end every word
//! is read back through the live mappings and through the device fd.
//! Revokes only zap page tables, and reset keeps RAM BAR contents.
//!
//! The quiet epilogue, with every thread joined, then asks each event for
//! its whole effect: memory off must make every word of every live mapping
//! raise SIGBUS, memory on (which must clear the SIGBUS markers just made),
//! reset and FLR must each leave every word not permanently revoked readable
//! with its last value.
//!
//! # Importers
//!
//! Each importer cycle makes a fresh importer (the test keeps its `Arc`: a
//! buffer holds importers weakly), attaches it, maps, holds the mapping for
//! a few yields or until invalidated, and unmaps: from inside
//! `invalidate_mappings` with `unmap_locked` (some importers do), from its
//! own thread once the callback raised its flag (the callback never blocks),
//! or plainly; sometimes it detaches before unmapping, sometimes it waits to
//! be invalidated before it maps. An importer thread holds at most one
//! mapping, and while it holds one it only yields and reads flags: it takes
//! no pool lock (the revoker revokes under it) and no `memory_lock` (no
//! `dmabufs()`, no last drop of a buffer, whose release takes it), so a
//! revoke waiting for it is never waiting for itself.
//!
//! Judged: (1) a `map` that succeeds while the buffer was revoked for the
//! whole call, and (3) an `attach` that does, by the same epoch loads (and
//! the `perm` flag) as a CPU access; the argument above carries over with
//! "the status check under resv" in place of the fault path. A refusal must
//! be `ENODEV`. (2) A revoking call that returns while an importer mapping
//! made before it started is still live: see [`check_importer_drain`].
//! (4) The watchdog covers the importers; after the storm no buffer has an
//! attachment or an importer mapping left, and no buffer still refers to a
//! detached importer.
//!
//! Leaks: the test is its own process; descriptors (by target), threads and
//! the real maps lines naming our memfds are compared before and after.
//!
//! `VFIO_DMABUF_STORM_CYCLES` sets the number of cycles of every driver
//! thread (default [`DEFAULT_CYCLES`]); `VFIO_DMABUF_STORM_SEED` varies the
//! random choices.

use std::collections::{BTreeMap, HashMap};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use dmabuf::{AttachmentRef, DmaBuf, DmaBufFd, Importer, ImporterMapping, ResvGuard};
use mm::probe::{self, AccessFault};
use mm::AddressSpace;
use rustix::io::Errno;
use vfio::{hot_reset, mmap_dmabuf, DeviceFd, MmapArgs, VfioDmaBuf, VfioPciDevice};

const PAGE: u64 = 0x1000;
/// Region offset of BAR1 on the device fd.
const BAR1: u64 = 1 << 40;
/// Size of edu-plus BAR1.
const BAR1_LEN: u64 = 64 << 20;
/// The stable mappings use BAR1 below this; the exporter cycles above it.
const CHURN_START: u64 = 8 << 20;
const ACCESSORS: usize = 3;
const IMPORTERS: usize = 2;
/// Threads before the accessors in `Storm::progress`.
const DRIVERS: usize = 4;
const CHURN_SLOTS: usize = 6;
/// Most buffer fds the pool keeps open at once.
const POOL_CAP: usize = 12;
/// Distance between the words of two accessors in one page.
const WORD_STRIDE: u64 = 64;
const DEFAULT_CYCLES: u64 = 2000;
/// A thread that makes no progress for this long is hung.
const STALL: Duration = Duration::from_secs(60);

fn rw_flags() -> u32 {
    libc::O_RDWR as u32 | libc::O_CLOEXEC as u32
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// xorshift64*: the choices only need to vary, not to be good.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }

    fn pick(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
}

/// The storm's counters.
#[derive(Debug, Clone, Copy)]
enum C {
    Accesses,
    Successes,
    Sigbus,
    WindowAccesses,
    WindowSigbus,
    PermSigbus,
    SegvOfOurUnmap,
    HoleProbes,
    Unjudged,
    Revokes,
    Unrevokes,
    Resets,
    Flrs,
    HotResets,
    HotResetBusy,
    PermRevokes,
    Exports,
    DeviceMmaps,
    BufferMmaps,
    MmapRefused,
    Splits,
    Unmaps,
    BufferFdDups,
    BufferFdCloses,
    DeviceFdCloses,
    Attaches,
    AttachRefused,
    ImporterMaps,
    ImporterMapRefused,
    Invalidations,
    UnmapsInCallback,
    UnmapsAfterInvalidate,
    PlainUnmaps,
    DetachedFirst,
    DrainJudged,
}

const COUNTERS: [C; 35] = [
    C::Accesses,
    C::Successes,
    C::Sigbus,
    C::WindowAccesses,
    C::WindowSigbus,
    C::PermSigbus,
    C::SegvOfOurUnmap,
    C::HoleProbes,
    C::Unjudged,
    C::Revokes,
    C::Unrevokes,
    C::Resets,
    C::Flrs,
    C::HotResets,
    C::HotResetBusy,
    C::PermRevokes,
    C::Exports,
    C::DeviceMmaps,
    C::BufferMmaps,
    C::MmapRefused,
    C::Splits,
    C::Unmaps,
    C::BufferFdDups,
    C::BufferFdCloses,
    C::DeviceFdCloses,
    C::Attaches,
    C::AttachRefused,
    C::ImporterMaps,
    C::ImporterMapRefused,
    C::Invalidations,
    C::UnmapsInCallback,
    C::UnmapsAfterInvalidate,
    C::PlainUnmaps,
    C::DetachedFirst,
    C::DrainJudged,
];

struct Counts([AtomicU64; COUNTERS.len()]);

impl Default for Counts {
    fn default() -> Counts {
        Counts(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl Counts {
    fn add(&self, c: C) {
        self.add_n(c, 1);
    }

    fn add_n(&self, c: C, n: u64) {
        self.0[c as usize].fetch_add(n, SeqCst);
    }

    fn get(&self, c: C) -> u64 {
        self.0[c as usize].load(SeqCst)
    }

    fn summary(&self) -> String {
        COUNTERS.iter().map(|c| format!("{c:?}={}", self.get(*c))).collect::<Vec<_>>().join(" ")
    }
}

/// What one buffer's accessors need to know about it.
struct BufState {
    label: String,
    /// Set right after a permanent revoke of the buffer returned.
    perm: AtomicBool,
}

impl BufState {
    fn new(label: String) -> Arc<BufState> {
        Arc::new(BufState { label, perm: AtomicBool::new(false) })
    }
}

struct Page {
    /// BAR1 offset of the page's first byte.
    bar: u64,
    /// Set (under the slot's write lock) before the page is unmapped.
    hole: AtomicBool,
}

/// One mmap of the test: metadata only; the address space owns the VMAs.
struct Mapping {
    label: String,
    va: u64,
    pages: Vec<Page>,
    buf: Arc<BufState>,
    /// Set (under the slot's write lock) before the whole range is unmapped.
    unmapping: AtomicBool,
}

impl Mapping {
    fn new(label: String, va: u64, bars: &[u64], buf: Arc<BufState>) -> Arc<Mapping> {
        let pages = bars.iter().map(|&bar| Page { bar, hole: AtomicBool::new(false) }).collect();
        Arc::new(Mapping { label, va, pages, buf, unmapping: AtomicBool::new(false) })
    }

    fn len(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    fn gone(&self, page: usize) -> bool {
        self.unmapping.load(SeqCst) || self.pages[page].hole.load(SeqCst)
    }
}

struct Slot {
    /// Stable slots are mapped before the storm and only unmapped after it.
    churn: bool,
    live: RwLock<Option<Arc<Mapping>>>,
}

impl Slot {
    fn read(&self) -> RwLockReadGuard<'_, Option<Arc<Mapping>>> {
        self.live.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Option<Arc<Mapping>>> {
        self.live.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// An open buffer fd the revoker and exporter share.
struct PoolEntry {
    fd: DmaBufFd,
    state: Arc<BufState>,
    /// BAR1 offset of each page of the buffer (ranges concatenated).
    bars: Vec<u64>,
}

/// What the watchdog shows of one thread.
struct Progress {
    name: String,
    steps: AtomicU64,
    doing: Mutex<&'static str>,
    addr: AtomicU64,
}

impl Progress {
    fn doing(&self, what: &'static str) {
        *self.doing.lock().unwrap_or_else(|e| e.into_inner()) = what;
    }
}

struct Storm {
    aspace: AddressSpace,
    vdev: Arc<VfioPciDevice>,
    /// The storm's own handle: keeps the device open throughout.
    fd: DeviceFd,
    /// Revocation epoch (see the crate doc); written by the toggler only.
    seq: AtomicU64,
    slots: Vec<Slot>,
    pool: Mutex<Vec<PoolEntry>>,
    /// Accessors stop when set (the drivers are done).
    stop: AtomicBool,
    /// Everyone stops when set (a violation or an error).
    abort: AtomicBool,
    counts: Counts,
    progress: Vec<Progress>,
    violations: Mutex<Vec<String>>,
    cycles: u64,
    seed: u64,
    /// Ticks for the importer drain check: every tick is a `SeqCst`
    /// read-modify-write of this one counter (see [`check_importer_drain`]).
    clock: Arc<AtomicU64>,
    /// Every revoking call that returned `Ok`.
    revoke_log: Mutex<Vec<RevokeSpan>>,
    /// Every importer mapping, once unmapped.
    map_log: Mutex<Vec<MapSpan>>,
}

impl Storm {
    fn violate(&self, what: String) {
        self.abort.store(true, SeqCst);
        let mut v = self.violations.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < 20 {
            v.push(what);
        }
    }

    fn aborted(&self) -> bool {
        self.abort.load(SeqCst)
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Vec<PoolEntry>> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, SeqCst)
    }

    /// Logs a revoking call that began at tick `begins` and returned at
    /// `returned`; `buf` is the buffer revoked, `None` for all of them.
    fn log_revoke(&self, what: &'static str, buf: Option<u64>, begins: u64, returned: u64) {
        let span = RevokeSpan { what, buf, begins, returned };
        self.revoke_log.lock().unwrap_or_else(|e| e.into_inner()).push(span);
    }

    /// Keeps a driver in step with the toggler, the slowest driver (it waits
    /// for accessors twice a cycle), so that every kind of event keeps
    /// happening for the whole storm rather than bunching at its start. The
    /// pace is `seq`, which moves at both ends of a window; a random number of
    /// yields after each release keeps the driver from always acting right at
    /// a window edge. Returns false if the storm aborts.
    fn pace(&self, cycle: u64, rng: &mut Rng) -> bool {
        while self.seq.load(SeqCst) / 2 + 2 < cycle {
            if self.aborted() {
                return false;
            }
            thread::yield_now();
        }
        for _ in 0..rng.below(32) {
            thread::yield_now();
        }
        !self.aborted()
    }

    /// Waits until counter `c` exceeds `past`; false if the storm aborts.
    fn wait_past(&self, c: C, past: u64) -> bool {
        while self.counts.get(c) <= past {
            if self.aborted() {
                return false;
            }
            thread::yield_now();
        }
        true
    }
}

/// BAR1 offsets of each page of a buffer made of `ranges`.
fn buffer_pages(ranges: &[(u64, u64)]) -> Vec<u64> {
    ranges.iter().flat_map(|&(off, len)| (0..len / PAGE).map(move |p| off + p * PAGE)).collect()
}

/// Unmaps `n` pages of `m` from page `first` on, marking them first.
fn punch_hole(aspace: &AddressSpace, m: &Mapping, first: usize, n: usize) -> Result<(), String> {
    for p in &m.pages[first..first + n] {
        p.hole.store(true, SeqCst);
    }
    let va = m.va + first as u64 * PAGE;
    aspace.munmap(va, n as u64 * PAGE).map_err(|e| format!("munmap of a hole in {}: {e}", m.label))
}

/// The device and the stable mappings; nothing runs yet.
fn setup(cycles: u64, seed: u64) -> Storm {
    let aspace = AddressSpace::new().unwrap();
    let vdev = VfioPciDevice::from_catalogue(0, "0000:00:03.0".parse().unwrap(), "edu-plus").unwrap();
    let fd = vdev.open();
    let mut stable = Vec::new();
    let mut pool = Vec::new();

    // A 4 MiB device-fd mapping: its first 2 MiB fault at order 9; a hole in
    // the second half splits it.
    let huge_len = 4 << 20;
    let va = fd.mmap(&aspace, MmapArgs::shared(BAR1, huge_len)).unwrap();
    assert_eq!(va % (2 << 20), 0, "a 4 MiB mapping is placed 2 MiB aligned");
    aspace.madvise_hugepage(va, huge_len).unwrap();
    let huge = Mapping::new("dev-huge".into(), va, &buffer_pages(&[(0, huge_len)]), BufState::new("dev-huge".into()));
    punch_hole(&aspace, &huge, 768 + 8, 1).unwrap();
    stable.push(huge);

    // A small device-fd mapping made through a dup that is closed at once
    // (the mapping keeps the file open), split by a two-page hole.
    let dup = fd.dup();
    let small_bar = 4 << 20;
    let va = dup.mmap(&aspace, MmapArgs::shared(BAR1 + small_bar, 16 * PAGE)).unwrap();
    drop(dup);
    let small = Mapping::new(
        "dev-small".into(),
        va,
        &buffer_pages(&[(small_bar, 16 * PAGE)]),
        BufState::new("dev-small".into()),
    );
    punch_hole(&aspace, &small, 7, 2).unwrap();
    stable.push(small);

    // A two-range explicit buffer, mapped whole.
    let ranges = [((4 << 20) + 0x10000, 4 * PAGE), ((4 << 20) + 0x20000, 4 * PAGE)];
    let bfd = fd.feature_dma_buf(1, rw_flags(), &ranges).unwrap();
    let va = mmap_dmabuf(&aspace, &bfd, MmapArgs::shared(0, 8 * PAGE)).unwrap();
    let state = BufState::new("buf-two-ranges".into());
    stable.push(Mapping::new("buf-two-ranges".into(), va, &buffer_pages(&ranges), state.clone()));
    pool.push(PoolEntry { fd: bfd, state, bars: buffer_pages(&ranges) });

    // An explicit buffer mapped from page 4 on, split by a hole.
    let ranges = [(5 << 20, 32 * PAGE)];
    let bfd = fd.feature_dma_buf(1, rw_flags(), &ranges).unwrap();
    let va = mmap_dmabuf(&aspace, &bfd, MmapArgs::shared(4 * PAGE, 24 * PAGE)).unwrap();
    let state = BufState::new("buf-offset".into());
    let bars = buffer_pages(&ranges);
    let offset = Mapping::new("buf-offset".into(), va, &bars[4..28], state.clone());
    punch_hole(&aspace, &offset, 10, 1).unwrap();
    stable.push(offset);
    pool.push(PoolEntry { fd: bfd, state, bars });

    // A device-fd mapping over both ranges of the two-range buffer: aliases.
    let alias_bar = (4 << 20) + 0x10000;
    let va = fd.mmap(&aspace, MmapArgs::shared(BAR1 + alias_bar, 32 * PAGE)).unwrap();
    stable.push(Mapping::new(
        "dev-alias".into(),
        va,
        &buffer_pages(&[(alias_bar, 32 * PAGE)]),
        BufState::new("dev-alias".into()),
    ));

    let slots = stable
        .into_iter()
        .map(|m| Slot { churn: false, live: RwLock::new(Some(m)) })
        .chain((0..CHURN_SLOTS).map(|_| Slot { churn: true, live: RwLock::new(None) }))
        .collect();
    let names = ["toggler", "resetter", "exporter", "revoker"]
        .into_iter()
        .map(String::from)
        .chain((0..ACCESSORS).map(|a| format!("accessor{a}")))
        .chain((0..IMPORTERS).map(|i| format!("importer{i}")));
    let progress = names
        .map(|name| Progress { name, steps: AtomicU64::new(0), doing: Mutex::new("starting"), addr: AtomicU64::new(0) })
        .collect();
    Storm {
        aspace,
        vdev,
        fd,
        seq: AtomicU64::new(0),
        slots,
        pool: Mutex::new(pool),
        stop: AtomicBool::new(false),
        abort: AtomicBool::new(false),
        counts: Counts::default(),
        progress,
        violations: Mutex::new(Vec::new()),
        cycles,
        seed,
        clock: Arc::new(AtomicU64::new(0)),
        revoke_log: Mutex::new(Vec::new()),
        map_log: Mutex::new(Vec::new()),
    }
}

// ---------------------------------------------------------------------------
// Drivers

/// Memory off, window, memory on, for every cycle; see the crate doc.
fn toggler(storm: &Storm, me: &Progress) -> Result<(), String> {
    for _ in 0..storm.cycles {
        if storm.aborted() {
            break;
        }
        me.doing("set_memory_enable(false)");
        let begins = storm.tick();
        storm.fd.set_memory_enable(false).map_err(|e| format!("memory disable: {e}"))?;
        storm.log_revoke("memory off", None, begins, storm.tick());
        storm.counts.add(C::Revokes);
        let judged = storm.counts.get(C::WindowSigbus);
        // Revoked since this (odd) value.
        storm.seq.fetch_add(1, SeqCst);
        me.doing("in a revoke window, waiting for a judged SIGBUS");
        if !storm.wait_past(C::WindowSigbus, judged) {
            break;
        }
        // The un-revoke begins at this (even) value.
        storm.seq.fetch_add(1, SeqCst);
        me.doing("set_memory_enable(true)");
        storm.fd.set_memory_enable(true).map_err(|e| format!("memory enable: {e}"))?;
        storm.counts.add(C::Unrevokes);
        let successes = storm.counts.get(C::Successes);
        me.doing("memory on, waiting for a success");
        if !storm.wait_past(C::Successes, successes) {
            break;
        }
        me.steps.fetch_add(1, SeqCst);
    }
    Ok(())
}

/// Reset, FLR and hot reset in turn, each through a dup'ed fd closed after.
fn resetter(storm: &Storm, me: &Progress) -> Result<(), String> {
    let mut rng = Rng::new(storm.seed ^ 0x7265_7365);
    for c in 0..storm.cycles {
        if !storm.pace(c, &mut rng) {
            break;
        }
        let dup = storm.fd.dup();
        // Each of these revokes every buffer of the device first (and
        // un-revokes after): the importer drain check covers them too.
        let begins = storm.tick();
        match c % 3 {
            0 => {
                me.doing("VFIO_DEVICE_RESET");
                dup.reset().map_err(|e| format!("reset: {e}"))?;
                storm.log_revoke("reset", None, begins, storm.tick());
                storm.counts.add(C::Resets);
            }
            1 => {
                me.doing("FLR");
                dup.flr().map_err(|e| format!("FLR: {e}"))?;
                storm.log_revoke("FLR", None, begins, storm.tick());
                storm.counts.add(C::Flrs);
            }
            _ => {
                me.doing("hot reset");
                match hot_reset(&[&dup]) {
                    Ok(()) => {
                        storm.log_revoke("hot reset", None, begins, storm.tick());
                        storm.counts.add(C::HotResets);
                    }
                    // A fault holding memory_lock for read makes the try-lock fail.
                    Err(e) if e.errno() == Errno::BUSY => storm.counts.add(C::HotResetBusy),
                    Err(e) => return Err(format!("hot reset: {e}")),
                }
            }
        }
        drop(dup);
        storm.counts.add(C::DeviceFdCloses);
        me.steps.fetch_add(1, SeqCst);
        thread::yield_now();
    }
    Ok(())
}

/// Where a new mapping in a churn slot comes from.
#[derive(Clone, Copy)]
enum Source {
    NewBuffer,
    DeviceFd,
    PoolBuffer,
}

struct Exporter<'a> {
    storm: &'a Storm,
    me: &'a Progress,
    rng: Rng,
    /// Next BAR1 offset to hand out; wraps (aliasing old words is fine, see
    /// the crate doc: each word has one writer whatever maps it).
    cursor: u64,
}

impl Exporter<'_> {
    fn bar_range(&mut self, pages: u64) -> u64 {
        if self.cursor + pages * PAGE > BAR1_LEN {
            self.cursor = CHURN_START;
        }
        let at = self.cursor;
        // One page gap keeps two ranges of a buffer apart.
        self.cursor += (pages + 1) * PAGE;
        at
    }

    fn churn_slots(&self, live: bool) -> Vec<usize> {
        let s = &self.storm.slots;
        (0..s.len()).filter(|&i| s[i].churn && s[i].read().is_some() == live).collect()
    }

    fn run(&mut self) -> Result<(), String> {
        for c in 0..self.storm.cycles {
            if !self.storm.pace(c, &mut self.rng) {
                break;
            }
            match c % 5 {
                0 => self.fill(Source::NewBuffer)?,
                1 => self.fill(Source::DeviceFd)?,
                2 => self.split()?,
                3 => self.fill(Source::PoolBuffer)?,
                _ => {
                    self.unmap_one()?;
                }
            }
            self.me.steps.fetch_add(1, SeqCst);
            thread::yield_now();
        }
        Ok(())
    }

    fn fill(&mut self, source: Source) -> Result<(), String> {
        let free = self.churn_slots(false);
        let slot = match free.first() {
            Some(&i) => i,
            None => self.unmap_one()?.expect("all churn slots are live"),
        };
        let mapping = match source {
            Source::NewBuffer => self.map_new_buffer()?,
            Source::DeviceFd => Some(self.map_device_fd()?),
            Source::PoolBuffer => self.map_pool_buffer()?,
        };
        if let Some(m) = mapping {
            *self.storm.slots[slot].write() = Some(m);
        }
        Ok(())
    }

    fn map_new_buffer(&mut self) -> Result<Option<Arc<Mapping>>, String> {
        let storm = self.storm;
        self.me.doing("export a buffer");
        let nr = 1 + self.rng.below(2);
        let ranges: Vec<(u64, u64)> = (0..nr)
            .map(|_| {
                let pages = 4 + self.rng.below(5);
                (self.bar_range(pages), pages * PAGE)
            })
            .collect();
        let bfd = storm.fd.feature_dma_buf(1, rw_flags(), &ranges).map_err(|e| format!("export: {e}"))?;
        storm.counts.add(C::Exports);
        let state = BufState::new(format!("buf{}", bfd.buffer().id()));
        let bars = buffer_pages(&ranges);
        let mapping = self.map_buffer(&bfd, &state, &bars)?;
        let evicted = {
            let mut pool = storm.pool();
            let evicted = if pool.len() >= POOL_CAP { Some(pool.remove(0)) } else { None };
            pool.push(PoolEntry { fd: bfd, state, bars });
            evicted
        };
        if let Some(old) = evicted {
            drop(old);
            storm.counts.add(C::BufferFdCloses);
        }
        Ok(mapping)
    }

    fn map_pool_buffer(&mut self) -> Result<Option<Arc<Mapping>>, String> {
        let storm = self.storm;
        self.me.doing("dup a pooled buffer fd");
        let picked = {
            let pool = storm.pool();
            if pool.is_empty() {
                None
            } else {
                let e = &pool[self.rng.pick(pool.len())];
                let dup = e.fd.dup().map_err(|e| format!("buffer fd dup: {e}"))?;
                Some((dup, e.state.clone(), e.bars.clone()))
            }
        };
        let Some((dup, state, bars)) = picked else { return self.map_new_buffer() };
        storm.counts.add(C::BufferFdDups);
        let mapping = self.map_buffer(&dup, &state, &bars);
        drop(dup);
        storm.counts.add(C::BufferFdCloses);
        mapping
    }

    /// mmap of a buffer fd, from page 0 or 1 to the end. A buffer that is
    /// not `Ok` just now (memory off, a reset in progress, permanently
    /// revoked) is refused with `ENODEV`: that is the early check.
    fn map_buffer(
        &mut self,
        bfd: &DmaBufFd,
        state: &Arc<BufState>,
        bars: &[u64],
    ) -> Result<Option<Arc<Mapping>>, String> {
        let skip = self.rng.below(2);
        let len = bars.len() as u64 - skip;
        self.me.doing("mmap a buffer fd");
        match mmap_dmabuf(&self.storm.aspace, bfd, MmapArgs::shared(skip * PAGE, len * PAGE)) {
            Ok(va) => {
                self.storm.counts.add(C::BufferMmaps);
                let label = format!("{}@{skip}", state.label);
                Ok(Some(Mapping::new(label, va, &bars[skip as usize..], state.clone())))
            }
            Err(e) if e.errno() == Errno::NODEV => {
                self.storm.counts.add(C::MmapRefused);
                Ok(None)
            }
            Err(e) => Err(format!("mmap of {}: {e}", state.label)),
        }
    }

    fn map_device_fd(&mut self) -> Result<Arc<Mapping>, String> {
        let storm = self.storm;
        self.me.doing("mmap the device fd");
        let pages = 4 + self.rng.below(9);
        let bar = self.bar_range(pages);
        let dup = storm.fd.dup();
        let va = dup.mmap(&storm.aspace, MmapArgs::shared(BAR1 + bar, pages * PAGE)).map_err(|e| format!("{e}"))?;
        storm.counts.add(C::DeviceMmaps);
        drop(dup);
        storm.counts.add(C::DeviceFdCloses);
        let label = format!("dev@{bar:#x}");
        Ok(Mapping::new(label.clone(), va, &buffer_pages(&[(bar, pages * PAGE)]), BufState::new(label)))
    }

    /// Unmaps one page in the middle of a live churn mapping.
    fn split(&mut self) -> Result<(), String> {
        let live = self.churn_slots(true);
        if live.is_empty() {
            return Ok(());
        }
        let slot = &self.storm.slots[live[self.rng.pick(live.len())]];
        self.me.doing("split a mapping");
        let guard = slot.write();
        let m = guard.as_ref().expect("only the exporter empties churn slots");
        // Holes stay single pages between mapped ones: no mapping of ours
        // (at least four pages with the reservation's slack) fits in one.
        let hole = |p: usize| m.pages[p].hole.load(SeqCst);
        let inner: Vec<usize> = (1..m.pages.len() - 1).filter(|&p| !(p - 1..=p + 1).any(hole)).collect();
        if let Some(&p) = inner.get(self.rng.pick(inner.len().max(1))) {
            punch_hole(&self.storm.aspace, m, p, 1)?;
            self.storm.counts.add(C::Splits);
        }
        Ok(())
    }

    /// Unmaps a whole live churn mapping; returns its slot.
    fn unmap_one(&mut self) -> Result<Option<usize>, String> {
        let live = self.churn_slots(true);
        if live.is_empty() {
            return Ok(None);
        }
        let i = live[self.rng.pick(live.len())];
        self.me.doing("munmap a mapping");
        let mut guard = self.storm.slots[i].write();
        let m = guard.take().expect("only the exporter empties churn slots");
        m.unmapping.store(true, SeqCst);
        self.storm.aspace.munmap(m.va, m.len()).map_err(|e| format!("munmap of {}: {e}", m.label))?;
        self.storm.counts.add(C::Unmaps);
        Ok(Some(i))
    }
}

/// Permanent revokes, buffer fd dups and closes.
fn revoker(storm: &Storm, me: &Progress) -> Result<(), String> {
    let mut rng = Rng::new(storm.seed ^ 0x7265_766f);
    for c in 0..storm.cycles {
        if !storm.pace(c, &mut rng) {
            break;
        }
        // Permanent revokes one cycle in ten: most buffers should stay usable.
        match c % 10 {
            0 => {
                me.doing("DMA_BUF_REVOKE");
                let pool = storm.pool();
                let candidates: Vec<&PoolEntry> = pool.iter().filter(|e| !e.state.perm.load(SeqCst)).collect();
                if !candidates.is_empty() {
                    let e = candidates[rng.pick(candidates.len())];
                    // Through the storm's handle or a dup of it, alternately.
                    let begins = storm.tick();
                    let r = if c % 20 == 0 {
                        storm.fd.feature_dma_buf_revoke(e.fd.raw_fd())
                    } else {
                        let dup = storm.fd.dup();
                        let r = dup.feature_dma_buf_revoke(e.fd.raw_fd());
                        drop(dup);
                        storm.counts.add(C::DeviceFdCloses);
                        r
                    };
                    r.map_err(|err| format!("permanent revoke of {}: {err}", e.state.label))?;
                    storm.log_revoke("DMA_BUF_REVOKE", Some(e.fd.buffer().id()), begins, storm.tick());
                    // Revoked for good from here on.
                    e.state.perm.store(true, SeqCst);
                    storm.counts.add(C::PermRevokes);
                }
            }
            2 | 5 | 8 => {
                me.doing("close a buffer fd");
                let closed = {
                    let mut pool = storm.pool();
                    if pool.is_empty() {
                        None
                    } else {
                        let i = rng.pick(pool.len());
                        Some(pool.remove(i))
                    }
                };
                if let Some(e) = closed {
                    drop(e);
                    storm.counts.add(C::BufferFdCloses);
                }
            }
            _ => {
                me.doing("dup and close a buffer fd");
                let dup = {
                    let pool = storm.pool();
                    if pool.is_empty() {
                        None
                    } else {
                        Some(pool[rng.pick(pool.len())].fd.dup().map_err(|e| format!("buffer fd dup: {e}"))?)
                    }
                };
                if let Some(d) = dup {
                    storm.counts.add(C::BufferFdDups);
                    drop(d);
                    storm.counts.add(C::BufferFdCloses);
                }
            }
        }
        me.steps.fetch_add(1, SeqCst);
        thread::yield_now();
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Accessors

/// How one access ended, once judged.
enum Verdict {
    Success(u64),
    Sigbus,
    /// The address was being unmapped by the test: anything goes.
    Unjudged,
}

struct Accessor<'a> {
    storm: &'a Storm,
    me: &'a Progress,
    index: u64,
    rng: Rng,
    /// Last value each of our successful writes stored, by BAR1 offset.
    last: HashMap<u64, u64>,
    next_value: u64,
}

impl Accessor<'_> {
    fn run(mut self) -> HashMap<u64, u64> {
        let storm = self.storm;
        let mut n = 0u64;
        while !storm.stop.load(SeqCst) && !storm.aborted() {
            let slot = &storm.slots[self.rng.pick(storm.slots.len())];
            match self.rng.below(10) {
                0..=5 => self.locked_round(slot),
                6..=8 => self.racy_read(slot),
                _ => self.hole_probe(slot),
            }
            self.me.steps.fetch_add(1, SeqCst);
            n += 1;
            if n % 8 == 0 {
                thread::yield_now();
            }
        }
        self.last
    }

    fn word(&self, m: &Mapping, page: usize) -> (u64, u64) {
        let off = self.index * WORD_STRIDE;
        (m.va + page as u64 * PAGE + off, m.pages[page].bar + off)
    }

    /// Read, write, read back, with the slot held so it cannot be unmapped.
    fn locked_round(&mut self, slot: &Slot) {
        let guard = slot.read();
        let Some(m) = guard.as_ref() else { return };
        let page = self.rng.pick(m.pages.len());
        if m.pages[page].hole.load(SeqCst) {
            return;
        }
        let (va, bar) = self.word(m, page);
        self.me.doing("read (locked)");
        self.read_and_check(m, page, va, bar, "read");
        self.next_value += 1;
        let value = self.next_value;
        self.me.doing("write (locked)");
        match self.judge(m, page, va, "write", || probe::write_u64(va, value).map(|()| value)) {
            Verdict::Success(_) => {
                self.last.insert(bar, value);
            }
            Verdict::Sigbus => {}
            // Cannot happen under the read lock; the write may have landed.
            Verdict::Unjudged => self.storm.violate(format!("{} changed under its slot's read lock", m.label)),
        }
        self.me.doing("read back (locked)");
        self.read_and_check(m, page, va, bar, "read back");
    }

    /// A read that races with split and unmap on purpose.
    fn racy_read(&mut self, slot: &Slot) {
        let Some(m) = slot.read().clone() else { return };
        let page = self.rng.pick(m.pages.len());
        let (va, bar) = self.word(&m, page);
        self.me.doing("read (racing unmaps)");
        self.read_and_check(&m, page, va, bar, "racy read");
    }

    fn read_and_check(&mut self, m: &Mapping, page: usize, va: u64, bar: u64, what: &str) {
        if let Verdict::Success(got) = self.judge(m, page, va, what, || probe::read_u64(va)) {
            let want = self.last.get(&bar).copied().unwrap_or(0);
            if got != want {
                self.storm.violate(format!(
                    "lost write: {what} of {} page {page} (BAR1 {bar:#x}) by accessor {} returned {got:#x}, \
                     its last successful write stored {want:#x}",
                    m.label, self.index
                ));
            }
        }
    }

    /// Runs one access between the epoch loads and judges it (crate doc).
    fn judge(
        &mut self,
        m: &Mapping,
        page: usize,
        va: u64,
        what: &str,
        access: impl FnOnce() -> Result<u64, AccessFault>,
    ) -> Verdict {
        let storm = self.storm;
        self.me.addr.store(va, SeqCst);
        let perm = m.buf.perm.load(SeqCst);
        let s0 = storm.seq.load(SeqCst);
        // The fences keep the access itself between the two loads, for the
        // compiler and for the CPU (a store must not hide in the store
        // buffer past the `s1` load).
        fence(SeqCst);
        let r = access();
        fence(SeqCst);
        let s1 = storm.seq.load(SeqCst);
        let gone = m.gone(page);
        storm.counts.add(C::Accesses);
        if gone {
            storm.counts.add(C::Unjudged);
            if matches!(r, Err(e) if e.signo == libc::SIGSEGV) {
                storm.counts.add(C::SegvOfOurUnmap);
            }
            return Verdict::Unjudged;
        }
        let in_window = s0 == s1 && s0 % 2 == 1;
        if in_window {
            storm.counts.add(C::WindowAccesses);
        }
        let at = || format!("{what} of {} page {page} at {va:#x} by accessor {}", m.label, self.index);
        match r {
            Ok(v) => {
                if perm {
                    storm.violate(format!("{} succeeded after {} was permanently revoked", at(), m.buf.label));
                }
                if in_window {
                    storm.violate(format!("{} succeeded inside revoke window seq={s0}", at()));
                }
                storm.counts.add(C::Successes);
                Verdict::Success(v)
            }
            Err(e) if e.is_sigbus() && e.code == libc::BUS_ADRERR && e.addr == va => {
                storm.counts.add(C::Sigbus);
                if in_window {
                    storm.counts.add(C::WindowSigbus);
                }
                if perm {
                    storm.counts.add(C::PermSigbus);
                }
                Verdict::Sigbus
            }
            Err(e) => {
                storm.violate(format!("{} raised {e} (seq {s0}..{s1}), not SIGBUS BUS_ADRERR", at()));
                Verdict::Sigbus
            }
        }
    }

    /// A read of a page the test unmapped must raise SIGSEGV. Holes are one
    /// or two pages wide, too small for any mapping of ours, and nothing else
    /// in this process maps so little; still, if the read does not fault,
    /// the real maps are asked whether something lives there now before the
    /// outcome counts as a violation.
    fn hole_probe(&mut self, slot: &Slot) {
        let Some(m) = slot.read().clone() else { return };
        let holes: Vec<usize> = (0..m.pages.len()).filter(|&p| m.pages[p].hole.load(SeqCst)).collect();
        if holes.is_empty() {
            return self.racy_read(slot);
        }
        let page = holes[self.rng.pick(holes.len())];
        let (va, _) = self.word(&m, page);
        self.me.doing("read a hole");
        self.me.addr.store(va, SeqCst);
        let r = probe::read_u64(va);
        fence(SeqCst);
        self.storm.counts.add(C::Accesses);
        self.storm.counts.add(C::HoleProbes);
        if m.unmapping.load(SeqCst) {
            // The whole range may belong to a new mapping by now.
            self.storm.counts.add(C::Unjudged);
            return;
        }
        match r {
            Err(e) if e.signo == libc::SIGSEGV && e.addr == va => self.storm.counts.add(C::SegvOfOurUnmap),
            other => {
                let reused = mm::maps::proc_self_maps(va, va + 8).map(|l| !l.is_empty()).unwrap_or(true);
                if !reused {
                    self.storm.violate(format!(
                        "read of unmapped page {page} of {} at {va:#x} gave {other:?}, and nothing is mapped there",
                        m.label
                    ));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Importers

/// One revoking call that returned `Ok`, in ticks of `Storm::clock`.
struct RevokeSpan {
    what: &'static str,
    /// The buffer revoked; `None`: every buffer of the device.
    buf: Option<u64>,
    /// Taken right before the call.
    begins: u64,
    /// Taken right after it returned.
    returned: u64,
}

/// One importer mapping's life, in ticks of `Storm::clock`.
struct MapSpan {
    buf: u64,
    label: String,
    /// Taken right after `map` returned the mapping.
    mapped: u64,
    /// Taken right before the unmap was called (in the thread or the callback).
    unmap_begins: u64,
}

/// What the importer thread and the callback share about the one mapping.
#[derive(Debug, Default)]
struct Held {
    mapping: Option<ImporterMapping>,
    /// The tick taken by the callback before it unmapped `mapping`.
    unmapped_inside_at: Option<u64>,
}

/// The storm's importer: one per cycle, attached to one buffer.
#[derive(Debug)]
struct StormImporter {
    /// The buffer it attaches to.
    buf: u64,
    /// Whether the callback unmaps the mapping itself when it finds it.
    unmap_inside: bool,
    clock: Arc<AtomicU64>,
    held: Mutex<Held>,
    /// Raised by the callback; the thread unmaps when it sees it.
    invalidated: AtomicBool,
    invalidations: AtomicU64,
    /// Set by the thread once its attachment is dropped.
    detached: AtomicBool,
    /// What the callback found wrong (it cannot fail the storm itself).
    wrong: Mutex<Option<String>>,
}

impl StormImporter {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Importer for StormImporter {
    /// Runs under the buffer's resv; takes only `held`, which the thread
    /// never holds while it calls into the buffer.
    fn invalidate_mappings(&self, attachment: &AttachmentRef<'_>, resv: &mut ResvGuard<'_>) {
        self.invalidations.fetch_add(1, SeqCst);
        let buf = attachment.buffer();
        if buf.id() != self.buf || self.detached.load(SeqCst) || !buf.status().is_revoked() {
            let what = format!(
                "invalidate of buffer {} (attached to {}, detached {}, status {:?})",
                buf.id(),
                self.buf,
                self.detached.load(SeqCst),
                buf.status()
            );
            *self.wrong.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
        }
        if self.unmap_inside {
            let mut held = self.held();
            if let Some(m) = held.mapping.take() {
                held.unmapped_inside_at = Some(self.clock.fetch_add(1, SeqCst));
                m.unmap_locked(resv);
            }
        }
        self.invalidated.store(true, SeqCst);
    }
}

/// A buffer an importer may attach to.
struct Target {
    buf: Arc<DmaBuf>,
    label: String,
    /// The pool's state of an explicit buffer (its `perm` flag).
    state: Option<Arc<BufState>>,
}

/// Attach, map, hold, unmap and detach, `storm.cycles` times.
fn importer(storm: &Storm, me: &Progress, index: u64) -> Result<(), String> {
    let mut rng = Rng::new(storm.seed ^ ((index + 1) << 32) ^ 0x696d_706f);
    for c in 0..storm.cycles {
        if !storm.pace(c, &mut rng) {
            break;
        }
        if let Some(target) = pick_target(storm, me, &mut rng, c) {
            import_once(storm, me, &mut rng, c + index, target)?;
        }
        me.steps.fetch_add(1, SeqCst);
        thread::yield_now();
    }
    Ok(())
}

/// A pooled explicit buffer, or one cycle in four the buffer of a device-fd
/// mapping (`vdev.dmabufs()`, which takes `memory_lock`: nothing is held here).
fn pick_target(storm: &Storm, me: &Progress, rng: &mut Rng, c: u64) -> Option<Target> {
    if c % 4 == 2 {
        me.doing("dmabufs()");
        let mut bufs: Vec<Arc<DmaBuf>> = storm
            .vdev
            .dmabufs()
            .into_iter()
            .filter(|b| VfioDmaBuf::of(b).is_some_and(VfioDmaBuf::is_mmap_buffer))
            .collect();
        if !bufs.is_empty() {
            let buf = bufs.swap_remove(rng.pick(bufs.len()));
            // The others may be last references: dropped here, holding nothing.
            drop(bufs);
            return Some(Target { label: format!("mmap-buf{}", buf.id()), buf, state: None });
        }
    }
    me.doing("pick a pooled buffer");
    let pool = storm.pool();
    if pool.is_empty() {
        return None;
    }
    let e = &pool[rng.pick(pool.len())];
    Some(Target { buf: e.fd.buffer().clone(), label: e.state.label.clone(), state: Some(e.state.clone()) })
}

/// Yields until `imp` is invalidated, at most `limit` times; also stops once
/// the toggler has moved two window edges on, or is done.
fn wait_invalidated(storm: &Storm, me: &Progress, imp: &StormImporter, limit: u64) {
    let start = storm.seq.load(SeqCst);
    let end = 2 * storm.cycles;
    let mut k = 0;
    while k < limit && !imp.invalidated.load(SeqCst) && !storm.aborted() {
        let s = storm.seq.load(SeqCst);
        if s >= start + 3 || s >= end {
            break;
        }
        thread::yield_now();
        k += 1;
        if k % 64 == 0 {
            me.steps.fetch_add(1, SeqCst);
        }
    }
}

/// Whether the buffer was revoked for the whole of a call made between the
/// loads `perm` (before), `s0` and `s1` (crate doc).
fn revoked_throughout(perm: bool, s0: u64, s1: u64) -> bool {
    perm || (s0 == s1 && s0 % 2 == 1)
}

fn import_once(storm: &Storm, me: &Progress, rng: &mut Rng, c: u64, target: Target) -> Result<(), String> {
    let Target { buf, label, state } = target;
    let perm = || state.as_ref().is_some_and(|s| s.perm.load(SeqCst));
    let imp = Arc::new(StormImporter {
        buf: buf.id(),
        unmap_inside: (c / 4) % 2 == 0,
        clock: storm.clock.clone(),
        held: Mutex::new(Held::default()),
        invalidated: AtomicBool::new(false),
        invalidations: AtomicU64::new(0),
        detached: AtomicBool::new(false),
        wrong: Mutex::new(None),
    });

    // (3) attach, judged like an access.
    me.doing("attach");
    let p = perm();
    let s0 = storm.seq.load(SeqCst);
    fence(SeqCst);
    let r = buf.attach(imp.clone());
    fence(SeqCst);
    let s1 = storm.seq.load(SeqCst);
    let att = match r {
        Ok(att) => att,
        Err(e) if e.errno() == Errno::NODEV => {
            storm.counts.add(C::AttachRefused);
            return Ok(());
        }
        Err(e) => return Err(format!("attach to {label}: {e}")),
    };
    storm.counts.add(C::Attaches);
    if revoked_throughout(p, s0, s1) {
        storm.violate(format!("attach to {label} succeeded while revoked (perm {p}, seq {s0})"));
    }

    // Sometimes wait to be invalidated first: the map then usually meets a
    // revoked buffer.
    if c % 8 == 3 {
        me.doing("attached, waiting for an invalidate before map");
        wait_invalidated(storm, me, &imp, u64::MAX);
    }

    // (1) map, judged like an access; the tick right after it dates the
    // mapping for the drain check.
    me.doing("map");
    let p = perm();
    let s0 = storm.seq.load(SeqCst);
    fence(SeqCst);
    let r = att.map();
    let mapped = storm.tick();
    fence(SeqCst);
    let s1 = storm.seq.load(SeqCst);
    let mapping = match r {
        Ok(m) => m,
        Err(e) if e.errno() == Errno::NODEV => {
            storm.counts.add(C::ImporterMapRefused);
            drop(att);
            return finish(storm, &imp, &label);
        }
        Err(e) => return Err(format!("map of {label}: {e}")),
    };
    storm.counts.add(C::ImporterMaps);
    if revoked_throughout(p, s0, s1) {
        storm.violate(format!("map of {label} succeeded while revoked (perm {p}, seq {s0})"));
    }
    // From here to the unmap this thread holds a mapping: only flags and yields.
    imp.held().mapping = Some(mapping);

    let detach_first = c % 16 == 5;
    let att = if detach_first {
        // Allowed: the mapping stays counted, but is never invalidated now,
        // so it is held only briefly (a revoke is waiting for it unasked).
        drop(att);
        imp.detached.store(true, SeqCst);
        storm.counts.add(C::DetachedFirst);
        None
    } else {
        Some(att)
    };
    me.doing("hold an importer mapping");
    let limit = if c % 4 == 1 && !detach_first { u64::MAX } else { rng.below(16) };
    wait_invalidated(storm, me, &imp, limit);

    me.doing("unmap");
    let invalidated = imp.invalidated.load(SeqCst);
    let taken = imp.held().mapping.take();
    let unmap_begins = match taken {
        Some(m) => {
            let at = storm.tick();
            if rng.below(4) == 0 {
                drop(m);
            } else {
                m.unmap();
            }
            storm.counts.add(if invalidated { C::UnmapsAfterInvalidate } else { C::PlainUnmaps });
            at
        }
        None => {
            storm.counts.add(C::UnmapsInCallback);
            imp.held()
                .unmapped_inside_at
                .ok_or_else(|| format!("mapping of {label} gone with no unmap inside the callback"))?
        }
    };
    let span = MapSpan { buf: buf.id(), label: label.clone(), mapped, unmap_begins };
    storm.map_log.lock().unwrap_or_else(|e| e.into_inner()).push(span);
    me.doing("detach");
    drop(att);
    finish(storm, &imp, &label)
}

/// After the detach: the buffer refers to the importer no more, and the
/// callback found nothing wrong. The caller still holds the buffer.
fn finish(storm: &Storm, imp: &Arc<StormImporter>, label: &str) -> Result<(), String> {
    imp.detached.store(true, SeqCst);
    storm.counts.add_n(C::Invalidations, imp.invalidations.load(SeqCst));
    if Arc::weak_count(imp) != 0 {
        storm.violate(format!("{label} still refers to its importer after the detach"));
    }
    if let Some(what) = imp.wrong.lock().unwrap_or_else(|e| e.into_inner()).take() {
        storm.violate(format!("importer of {label}: {what}"));
    }
    Ok(())
}

/// (2) of "Importers" in the crate doc: no revoking call returns while an
/// importer mapping of a buffer it revoked, made before the call began, is
/// still live. Returns how many (mapping, revoke) pairs were judged.
///
/// Violation: a mapping of buffer `b` with `mapped < begins` and
/// `returned < unmap_begins` for a logged call that revoked `b`.
///
/// Why that has no false positives. Every tick is a `SeqCst` fetch-add on
/// one counter, so the ticks are totally ordered, and a tick with a larger
/// value read (through the chain of read-modify-writes) the store of every
/// smaller one: the smaller tick happens before the larger one. `mapped` is
/// taken after `map` returned in the importer's program order, `begins`
/// before the call in the revoker's, `returned` after it returned, and
/// `unmap_begins` before the unmap started (in the thread, or in the
/// callback before `unmap_locked`). So if such a pair exists, the mapping
/// was counted by the buffer (`importer_mappings > 0`) from before the call
/// began until after it returned. The buffer was alive all along (the
/// importer held it) and exported by this device, so on its list: memory
/// off, reset, FLR and hot reset revoke every listed buffer, and
/// `DMA_BUF_REVOKE` revokes `b`. `map` succeeded under resv with status
/// `Ok`, and the only way from `Ok` to revoked is a full revoke, which
/// returns only when the buffer's importer mappings are all gone. If `b`
/// was still `Ok` when the call reached it, the call's own full revoke had
/// to wait for our unmap; if it was already revoked, an earlier full revoke
/// that began after our map (which saw `Ok`) returned before this call
/// did, with our mapping still live. Either way a revoke returned with an
/// importer mapping live: the check never blames a correct implementation.
/// Mappings refused by `map` are not logged, and calls that failed (a
/// busy hot reset revokes nothing) are not either.
fn check_importer_drain(storm: &Storm) -> u64 {
    let mut revokes = std::mem::take(&mut *storm.revoke_log.lock().unwrap());
    revokes.sort_by_key(|r| r.begins);
    let maps = std::mem::take(&mut *storm.map_log.lock().unwrap());
    let mut judged = 0;
    for m in &maps {
        let first = revokes.partition_point(|r| r.begins <= m.mapped);
        for r in revokes[first..].iter().take_while(|r| r.begins < m.unmap_begins) {
            if r.buf.is_some_and(|b| b != m.buf) {
                continue;
            }
            judged += 1;
            if r.returned < m.unmap_begins {
                storm.violate(format!(
                    "{} returned at tick {} while the importer mapping of {} made at tick {} was live \
                     (its unmap began at tick {})",
                    r.what, r.returned, m.label, m.mapped, m.unmap_begins
                ));
            }
        }
    }
    judged
}

/// No buffer still alive has an attachment or an importer mapping left.
fn assert_no_importer_left(storm: &Storm, when: &str) {
    for b in storm.vdev.dmabufs() {
        assert_eq!((b.attachments(), b.importer_mappings()), (0, 0), "buffer {} {when}", b.id());
    }
}

// ---------------------------------------------------------------------------
// The test

/// What the process holds that a leak would change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcessState {
    /// Targets of `/proc/self/fd/*` with their multiplicity.
    fd_targets: BTreeMap<String, usize>,
    /// Entries of `/proc/self/task`.
    threads: usize,
    /// Lines of the real `/proc/self/maps` naming our BAR memfds.
    vfio_maps_lines: usize,
}

impl ProcessState {
    fn now() -> ProcessState {
        let mut fd_targets = BTreeMap::new();
        for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
            // The listing's own descriptor may be gone by the time we read it.
            let Ok(target) = std::fs::read_link(entry.unwrap().path()) else { continue };
            *fd_targets.entry(target.to_string_lossy().into_owned()).or_insert(0) += 1;
        }
        let threads = std::fs::read_dir("/proc/self/task").unwrap().count();
        ProcessState { fd_targets, threads, vfio_maps_lines: vfio_maps_lines() }
    }
}

fn vfio_maps_lines() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().filter(|l| l.contains("vfio")).count()
}

type Outcome = Result<Option<HashMap<u64, u64>>, String>;

fn spawn_all(storm: &Arc<Storm>) -> (Vec<thread::JoinHandle<()>>, mpsc::Receiver<(usize, Outcome)>) {
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for i in 0..storm.progress.len() {
        let storm = storm.clone();
        let tx = tx.clone();
        let handle = thread::Builder::new()
            .name(storm.progress[i].name.clone())
            .spawn(move || {
                let me = &storm.progress[i];
                let body = || -> Outcome {
                    match i {
                        0 => toggler(&storm, me).map(|()| None),
                        1 => resetter(&storm, me).map(|()| None),
                        2 => {
                            let rng = Rng::new(storm.seed ^ 0x6578_706f);
                            Exporter { storm: &storm, me, rng, cursor: CHURN_START }.run().map(|()| None)
                        }
                        3 => revoker(&storm, me).map(|()| None),
                        i if i >= DRIVERS + ACCESSORS => {
                            importer(&storm, me, (i - DRIVERS - ACCESSORS) as u64).map(|()| None)
                        }
                        _ => {
                            let index = (i - DRIVERS) as u64;
                            let rng = Rng::new(storm.seed ^ ((index + 1) << 20));
                            let a = Accessor {
                                storm: &storm,
                                me,
                                index,
                                rng,
                                last: HashMap::new(),
                                next_value: index << 48,
                            };
                            Ok(Some(a.run()))
                        }
                    }
                };
                let outcome = panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|p| {
                    let msg =
                        p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                    Err(format!("panicked: {}", msg.unwrap_or_default()))
                });
                if outcome.is_err() {
                    storm.abort.store(true, SeqCst);
                }
                me.doing("finished");
                let _ = tx.send((i, outcome));
            })
            .unwrap();
        handles.push(handle);
    }
    (handles, rx)
}

/// Waits for every thread; fails if one makes no progress for [`STALL`].
fn watch(storm: &Storm, rx: &mpsc::Receiver<(usize, Outcome)>) -> Vec<Outcome> {
    let n = storm.progress.len();
    let mut outcomes: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
    let mut last_steps = vec![u64::MAX; n];
    let mut last_change = vec![Instant::now(); n];
    while outcomes.iter().any(Option::is_none) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((i, outcome)) => outcomes[i] = Some(outcome),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("every thread reports once"),
        }
        // The four drivers done: accessors may stop (importers stop on
        // their own, after their cycles).
        if outcomes[..DRIVERS].iter().all(Option::is_some) {
            storm.stop.store(true, SeqCst);
        }
        for i in (0..n).filter(|&i| outcomes[i].is_none()) {
            let steps = storm.progress[i].steps.load(SeqCst);
            if steps != last_steps[i] {
                last_steps[i] = steps;
                last_change[i] = Instant::now();
            } else if last_change[i].elapsed() > STALL {
                let report: Vec<String> = storm
                    .progress
                    .iter()
                    .enumerate()
                    .map(|(j, p)| {
                        format!(
                            "  {}: {} after {} steps, last address {:#x}{}",
                            p.name,
                            p.doing.lock().unwrap_or_else(|e| e.into_inner()),
                            p.steps.load(SeqCst),
                            p.addr.load(SeqCst),
                            if outcomes[j].is_some() { " (finished)" } else { "" }
                        )
                    })
                    .collect();
                // The threads keep the storm (and its address space) alive:
                // nothing here waits for them.
                panic!(
                    "{} made no progress for {STALL:?}: hang\n{}\nseq={} {}\nfault stats {:?}",
                    storm.progress[i].name,
                    report.join("\n"),
                    storm.seq.load(SeqCst),
                    storm.counts.summary(),
                    storm.aspace.fault_stats()
                );
            }
        }
    }
    outcomes.into_iter().map(Option::unwrap).collect()
}

/// After the storm, with memory on: every word reads back its last value
/// through every live mapping (or SIGBUS for a permanently revoked buffer),
/// and through the device fd.
fn verify_data(storm: &Storm, last: &[HashMap<u64, u64>]) -> usize {
    assert!(storm.vdev.memory_enabled(), "the toggler ends with memory on");
    let mut checked = 0;
    for slot in &storm.slots {
        let guard = slot.read();
        let Some(m) = guard.as_ref() else { continue };
        for (page, p) in m.pages.iter().enumerate().filter(|(_, p)| !p.hole.load(SeqCst)) {
            for (a, words) in last.iter().enumerate() {
                let off = a as u64 * WORD_STRIDE;
                let va = m.va + page as u64 * PAGE + off;
                let r = probe::read_u64(va);
                if m.buf.perm.load(SeqCst) {
                    let e = r.expect_err("a permanently revoked buffer stays revoked");
                    assert!(e.is_sigbus() && e.code == libc::BUS_ADRERR, "{} page {page}: {e}", m.label);
                } else {
                    let want = words.get(&(p.bar + off)).copied().unwrap_or(0);
                    assert_eq!(r, Ok(want), "{} page {page} word of accessor {a} after the storm", m.label);
                }
                checked += 1;
            }
        }
    }
    for words in last {
        for (&bar, &want) in words {
            let mut b = [0u8; 8];
            storm.fd.read(BAR1 + bar, &mut b).unwrap();
            assert_eq!(u64::from_ne_bytes(b), want, "BAR1 {bar:#x} through the device fd");
            checked += 1;
        }
    }
    checked
}

/// Every word of every live mapping raises SIGBUS `BUS_ADRERR`.
fn assert_all_revoked(storm: &Storm, when: &str) -> usize {
    let mut checked = 0;
    for slot in &storm.slots {
        let guard = slot.read();
        let Some(m) = guard.as_ref() else { continue };
        for (page, _) in m.pages.iter().enumerate().filter(|(_, p)| !p.hole.load(SeqCst)) {
            for a in 0..ACCESSORS as u64 {
                let va = m.va + page as u64 * PAGE + a * WORD_STRIDE;
                let e = probe::read_u64(va).expect_err(when);
                assert!(e.is_sigbus() && e.code == libc::BUS_ADRERR && e.addr == va, "{} page {page}: {e}", m.label);
                checked += 1;
            }
        }
    }
    checked
}

/// The quiet epilogue: with nothing else running, each event must have its
/// whole effect on every page. Memory off revokes everything; memory on
/// brings back every page not permanently revoked, with its data (the pages
/// just touched carry SIGBUS markers, which the un-revoke must clear); a
/// reset and an FLR with memory on leave everything usable.
fn epilogue(storm: &Storm, last: &[HashMap<u64, u64>]) -> usize {
    let mut checked = verify_data(storm, last);
    storm.fd.set_memory_enable(false).unwrap();
    checked += assert_all_revoked(storm, "memory is off after the storm");
    storm.fd.set_memory_enable(true).unwrap();
    checked += verify_data(storm, last);
    storm.fd.reset().unwrap();
    checked += verify_data(storm, last);
    storm.fd.flr().unwrap();
    checked + verify_data(storm, last)
}

/// Unmaps every mapping and closes every buffer fd.
fn tear_down(storm: &Storm) {
    for slot in &storm.slots {
        if let Some(m) = slot.write().take() {
            m.unmapping.store(true, SeqCst);
            storm.aspace.munmap(m.va, m.len()).unwrap();
        }
    }
    let pool = std::mem::take(&mut *storm.pool());
    drop(pool);
}

#[test]
fn fault_storm_never_lets_a_revoked_access_through_loses_no_write_and_leaks_nothing() {
    let cycles = env_u64("VFIO_DMABUF_STORM_CYCLES", DEFAULT_CYCLES).max(1);
    let seed = env_u64("VFIO_DMABUF_STORM_SEED", 0x5707_4d00);
    // Lazily initialised process state (the probe's signal handler) first.
    drop(AddressSpace::new().unwrap());
    let before = ProcessState::now();
    let started = Instant::now();

    let storm = Arc::new(setup(cycles, seed));
    let vdev = Arc::downgrade(&storm.vdev);
    assert_eq!(storm.aspace.vmas().len(), 8, "five stable mappings, three of them split in two");
    assert!(vfio_maps_lines() > before.vfio_maps_lines);
    // Fault the huge mapping in once: the first 2 MiB at order 9.
    let huge = storm.slots[0].read().as_ref().unwrap().va;
    probe::touch_pages(huge, 2 << 20).unwrap();
    assert!(storm.aspace.fault_stats().order9 > 0, "{:?}", storm.aspace.fault_stats());

    let (handles, rx) = spawn_all(&storm);
    let outcomes = watch(&storm, &rx);
    for h in handles {
        h.join().unwrap();
    }
    let storm_time = started.elapsed();
    let c = &storm.counts;
    let drain_judged = check_importer_drain(&storm);
    c.add_n(C::DrainJudged, drain_judged);
    // Every importer thread is joined: its attachments and mappings are gone.
    assert_no_importer_left(&storm, "after the storm");
    let violations = storm.violations.lock().unwrap().clone();
    let errors: Vec<String> = outcomes
        .iter()
        .zip(&storm.progress)
        .filter_map(|(o, p)| o.as_ref().err().map(|e| format!("{}: {e}", p.name)))
        .collect();
    assert!(violations.is_empty() && errors.is_empty(), "violations: {violations:#?}\nerrors: {errors:#?}");
    let last: Vec<HashMap<u64, u64>> = outcomes.into_iter().filter_map(|o| o.unwrap()).collect();
    assert_eq!(last.len(), ACCESSORS);

    let checked = epilogue(&storm, &last);
    let stats = storm.aspace.fault_stats();
    let vmas_in_storm = storm.aspace.vmas().len();
    eprintln!(
        "storm: {cycles} cycles, seed {seed:#x}, {:.2?}\n\
         accesses {} (successes {}, SIGBUS {}, of which in revoke windows {} of {} judged there, \
         after a permanent revoke {}; SIGSEGV on our unmaps {}; hole probes {}; unjudged {})\n\
         revokes {} un-revokes {} resets {} FLRs {} hot resets {} (+{} EBUSY) permanent revokes {}\n\
         exports {} buffer mmaps {} (+{} ENODEV) device-fd mmaps {} splits {} unmaps {}\n\
         closes: buffer fds {} (dups {}), device fds {}\n\
         importers: attaches {} (+{} ENODEV) maps {} (+{} ENODEV) invalidations {} unmaps inside the \
         callback {}, from the thread after an invalidate {}, plain {} (detached first {}); \
         revokes judged against a live mapping {}\n\
         faults {stats:?}\n\
         words checked after the storm {checked}, VMAs at the end {vmas_in_storm}",
        storm_time,
        c.get(C::Accesses),
        c.get(C::Successes),
        c.get(C::Sigbus),
        c.get(C::WindowSigbus),
        c.get(C::WindowAccesses),
        c.get(C::PermSigbus),
        c.get(C::SegvOfOurUnmap),
        c.get(C::HoleProbes),
        c.get(C::Unjudged),
        c.get(C::Revokes),
        c.get(C::Unrevokes),
        c.get(C::Resets),
        c.get(C::Flrs),
        c.get(C::HotResets),
        c.get(C::HotResetBusy),
        c.get(C::PermRevokes),
        c.get(C::Exports),
        c.get(C::BufferMmaps),
        c.get(C::MmapRefused),
        c.get(C::DeviceMmaps),
        c.get(C::Splits),
        c.get(C::Unmaps),
        c.get(C::BufferFdCloses),
        c.get(C::BufferFdDups),
        c.get(C::DeviceFdCloses),
        c.get(C::Attaches),
        c.get(C::AttachRefused),
        c.get(C::ImporterMaps),
        c.get(C::ImporterMapRefused),
        c.get(C::Invalidations),
        c.get(C::UnmapsInCallback),
        c.get(C::UnmapsAfterInvalidate),
        c.get(C::PlainUnmaps),
        c.get(C::DetachedFirst),
        c.get(C::DrainJudged),
    );
    // The storm was real: the toggler saw a judged SIGBUS in every window and
    // a success after every un-revoke; every driver ran all its cycles.
    assert_eq!(c.get(C::Revokes), cycles);
    assert_eq!(c.get(C::Unrevokes), cycles);
    assert!(c.get(C::WindowSigbus) >= cycles, "{}", c.summary());
    assert!(c.get(C::Successes) >= cycles, "{}", c.summary());
    assert_eq!(c.get(C::Resets) + c.get(C::Flrs) + c.get(C::HotResets) + c.get(C::HotResetBusy), cycles);
    assert!(c.get(C::PermRevokes) > 0 && c.get(C::Exports) > 0 && c.get(C::Unmaps) > 0, "{}", c.summary());
    assert!(c.get(C::HoleProbes) > 0 && c.get(C::Splits) > 0, "{}", c.summary());
    assert!(stats.order9 > 1 && stats.sigbus > 0, "{stats:?}");
    // Importers met every outcome, and revokes really waited for them.
    for n in [
        C::ImporterMaps,
        C::ImporterMapRefused,
        C::AttachRefused,
        C::Invalidations,
        C::UnmapsInCallback,
        C::UnmapsAfterInvalidate,
        C::DrainJudged,
    ] {
        assert!(c.get(n) > 0, "no {n:?}: {}", c.summary());
    }

    // Leaks: unmap and close everything, then drop the storm.
    assert_no_importer_left(&storm, "before the teardown");
    tear_down(&storm);
    assert!(storm.aspace.vmas().is_empty(), "{:#?}", storm.aspace.vmas());
    assert_eq!(vfio_maps_lines(), before.vfio_maps_lines, "a BAR memfd is still mapped");
    assert!(storm.vdev.dmabufs().is_empty(), "buffers outlived their fds and mappings");
    assert_eq!(dmabuf::nr_handles(), 0, "a buffer fd is still installed");
    assert_eq!(storm.vdev.open_count(), 1, "only the storm's own handle is open");
    let storm = Arc::try_unwrap(storm).unwrap_or_else(|_| panic!("a thread still holds the storm"));
    drop(storm);
    assert!(vdev.upgrade().is_none(), "the device outlived the storm");
    // A joined thread can linger in /proc/self/task for a moment while the
    // kernel reaps it; there is no event to wait for, so poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = ProcessState::now();
    while after.threads != before.threads && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
        after = ProcessState::now();
    }
    assert_eq!(after, before, "leaked descriptors, threads or mappings");
    eprintln!(
        "storm: total {:.2?}; before and after: {} fds, {} threads, {} vfio maps lines",
        started.elapsed(),
        before.fd_targets.values().sum::<usize>(),
        before.threads,
        before.vfio_maps_lines
    );
}
