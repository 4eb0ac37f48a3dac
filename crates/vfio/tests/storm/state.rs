//! The storm's shared state: counters, buffers, mappings, slots, the pool,
//! progress reports, and the setup of the device and its stable mappings.

use super::*;

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// xorshift64*: the choices only need to vary, not to be good.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }

    pub fn pick(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
}

/// The storm's counters.
#[derive(Debug, Clone, Copy)]
pub enum C {
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
    RegAccesses,
    RegSuccesses,
    RegSigbus,
    RegWindowAccesses,
    RegWindowSigbus,
    RegPermSigbus,
    RegExports,
    RegPermRevokes,
}

pub const COUNTERS: [C; 43] = [
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
    C::RegAccesses,
    C::RegSuccesses,
    C::RegSigbus,
    C::RegWindowAccesses,
    C::RegWindowSigbus,
    C::RegPermSigbus,
    C::RegExports,
    C::RegPermRevokes,
];

pub struct Counts([AtomicU64; COUNTERS.len()]);

impl Default for Counts {
    fn default() -> Counts {
        Counts(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl Counts {
    pub fn add(&self, c: C) {
        self.add_n(c, 1);
    }

    pub fn add_n(&self, c: C, n: u64) {
        self.0[c as usize].fetch_add(n, SeqCst);
    }

    pub fn get(&self, c: C) -> u64 {
        self.0[c as usize].load(SeqCst)
    }

    pub fn summary(&self) -> String {
        COUNTERS.iter().map(|c| format!("{c:?}={}", self.get(*c))).collect::<Vec<_>>().join(" ")
    }
}

/// What one buffer's accessors need to know about it.
pub struct BufState {
    pub label: String,
    /// Set right after a permanent revoke of the buffer returned.
    pub perm: AtomicBool,
}

impl BufState {
    pub fn new(label: String) -> Arc<BufState> {
        Arc::new(BufState { label, perm: AtomicBool::new(false) })
    }
}

pub struct Page {
    /// BAR1 offset of the page's first byte.
    pub bar: u64,
    /// Set (under the slot's write lock) before the page is unmapped.
    pub hole: AtomicBool,
}

/// One mmap of the test: metadata only; the address space owns the VMAs.
pub struct Mapping {
    pub label: String,
    pub va: u64,
    pub pages: Vec<Page>,
    pub buf: Arc<BufState>,
    /// Set (under the slot's write lock) before the whole range is unmapped.
    pub unmapping: AtomicBool,
    /// A mapping of register BAR0 (`pages[..].bar` are BAR0 offsets).
    pub registers: bool,
}

impl Mapping {
    pub fn new(label: String, va: u64, bars: &[u64], buf: Arc<BufState>) -> Arc<Mapping> {
        let pages = bars.iter().map(|&bar| Page { bar, hole: AtomicBool::new(false) }).collect();
        Arc::new(Mapping { label, va, pages, buf, unmapping: AtomicBool::new(false), registers: false })
    }

    /// A mapping of register pages; `buf` is `None` for a device-fd mapping.
    pub fn registers(label: String, va: u64, bars: &[u64], buf: Option<Arc<BufState>>) -> Arc<Mapping> {
        let pages = bars.iter().map(|&bar| Page { bar, hole: AtomicBool::new(false) }).collect();
        let buf = buf.unwrap_or_else(|| BufState::new(label.clone()));
        Arc::new(Mapping { label, va, pages, buf, unmapping: AtomicBool::new(false), registers: true })
    }

    pub fn len(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    pub fn gone(&self, page: usize) -> bool {
        self.unmapping.load(SeqCst) || self.pages[page].hole.load(SeqCst)
    }
}

pub struct Slot {
    /// Stable slots are mapped before the storm and only unmapped after it.
    pub churn: bool,
    pub live: RwLock<Option<Arc<Mapping>>>,
}

impl Slot {
    pub fn read(&self) -> RwLockReadGuard<'_, Option<Arc<Mapping>>> {
        self.live.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Option<Arc<Mapping>>> {
        self.live.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// An open buffer fd the revoker and exporter share.
pub struct PoolEntry {
    pub fd: DmaBufFd,
    pub state: Arc<BufState>,
    /// BAR1 offset of each page of the buffer (ranges concatenated).
    pub bars: Vec<u64>,
}

/// What the watchdog shows of one thread.
pub struct Progress {
    pub name: String,
    pub steps: AtomicU64,
    pub doing: Mutex<&'static str>,
    pub addr: AtomicU64,
}

impl Progress {
    pub fn doing(&self, what: &'static str) {
        *self.doing.lock().unwrap_or_else(|e| e.into_inner()) = what;
    }
}

pub struct Storm {
    pub aspace: AddressSpace,
    pub vdev: Arc<VfioPciDevice>,
    /// The storm's own handle: keeps the device open throughout.
    pub fd: DeviceFd,
    /// Revocation epoch (see the crate doc); written by the toggler only.
    pub seq: Arc<AtomicU64>,
    pub slots: Vec<Slot>,
    pub pool: Mutex<Vec<PoolEntry>>,
    /// BAR0's register file, which judges every access reaching it.
    pub regs: Arc<RegModel>,
    pub reg_slots: Vec<Slot>,
    /// Open register buffer fds: the exporter adds, the revoker revokes.
    pub reg_pool: Mutex<Vec<PoolEntry>>,
    pub reg_ledger: RegLedger,
    /// 1 + the register slot whose buffer the revoker is about to revoke.
    pub reg_target: std::sync::atomic::AtomicUsize,
    /// Accessors stop when set (the drivers are done).
    pub stop: AtomicBool,
    /// Everyone stops when set (a violation or an error).
    pub abort: AtomicBool,
    pub counts: Counts,
    pub progress: Vec<Progress>,
    pub violations: Mutex<Vec<String>>,
    pub cycles: u64,
    pub seed: u64,
    /// Ticks for the importer drain check: every tick is a `SeqCst`
    /// read-modify-write of this one counter (see [`check_importer_drain`]).
    pub clock: Arc<AtomicU64>,
    /// Every revoking call that returned `Ok`.
    pub revoke_log: Mutex<Vec<RevokeSpan>>,
    /// Every importer mapping, once unmapped.
    pub map_log: Mutex<Vec<MapSpan>>,
}

impl Storm {
    pub fn violate(&self, what: String) {
        self.abort.store(true, SeqCst);
        let mut v = self.violations.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < 20 {
            v.push(what);
        }
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(SeqCst)
    }

    pub fn pool(&self) -> std::sync::MutexGuard<'_, Vec<PoolEntry>> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn reg_pool(&self) -> std::sync::MutexGuard<'_, Vec<PoolEntry>> {
        self.reg_pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an entry to `pool`, closing its oldest fd first if it holds `cap`.
    pub fn pool_push(&self, pool: &Mutex<Vec<PoolEntry>>, cap: usize, entry: PoolEntry) {
        let evicted = {
            let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
            let evicted = if pool.len() >= cap { Some(pool.remove(0)) } else { None };
            pool.push(entry);
            evicted
        };
        // Closed outside the lock: the last close of a buffer takes `memory_lock`.
        if let Some(old) = evicted {
            drop(old);
            self.counts.add(C::BufferFdCloses);
        }
    }

    pub fn tick(&self) -> u64 {
        self.clock.fetch_add(1, SeqCst)
    }

    /// Logs a revoking call that began at tick `begins` and returned at
    /// `returned`; `buf` is the buffer revoked, `None` for all of them.
    pub fn log_revoke(&self, what: &'static str, buf: Option<u64>, begins: u64, returned: u64) {
        let span = RevokeSpan { what, buf, begins, returned };
        self.revoke_log.lock().unwrap_or_else(|e| e.into_inner()).push(span);
    }

    /// Keeps a driver in step with the toggler, the slowest driver (it waits
    /// for accessors twice a cycle), so that every kind of event keeps
    /// happening for the whole storm rather than bunching at its start. The
    /// pace is `seq`, which moves at both ends of a window; a random number of
    /// yields after each release keeps the driver from always acting right at
    /// a window edge. Returns false if the storm aborts.
    pub fn pace(&self, cycle: u64, rng: &mut Rng) -> bool {
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
    pub fn wait_past(&self, c: C, past: u64) -> bool {
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
pub fn buffer_pages(ranges: &[(u64, u64)]) -> Vec<u64> {
    ranges.iter().flat_map(|&(off, len)| (0..len / PAGE).map(move |p| off + p * PAGE)).collect()
}

/// Unmaps `n` pages of `m` from page `first` on, marking them first.
pub fn punch_hole(aspace: &AddressSpace, m: &Mapping, first: usize, n: usize) -> Result<(), String> {
    for p in &m.pages[first..first + n] {
        p.hole.store(true, SeqCst);
    }
    let va = m.va + first as u64 * PAGE;
    aspace.munmap(va, n as u64 * PAGE).map_err(|e| format!("munmap of a hole in {}: {e}", m.label))
}

/// The device and the stable mappings; nothing runs yet.
pub fn setup(cycles: u64, seed: u64) -> Storm {
    let aspace = AddressSpace::new().unwrap();
    // edu-plus with the storm's own register file in BAR0.
    let seq = Arc::new(AtomicU64::new(0));
    let regs = Arc::new(RegModel::new(seq.clone()));
    let mut spec = pci::catalogue::edu_plus();
    spec.bars[0] = Some(pci::BarSpec::registers(REG_BAR_LEN, regs.clone()));
    let vdev = VfioPciDevice::new(0, "0000:00:03.0".parse().unwrap(), spec).unwrap();
    let fd = vdev.open();
    let (reg_slots, reg_pool) = setup_registers(&aspace, &fd, &regs);
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
    let bfd = fd.feature_dma_buf(1, RDWR, &ranges).unwrap();
    let va = mmap_dmabuf(&aspace, &bfd, MmapArgs::shared(0, 8 * PAGE)).unwrap();
    let state = BufState::new("buf-two-ranges".into());
    stable.push(Mapping::new("buf-two-ranges".into(), va, &buffer_pages(&ranges), state.clone()));
    pool.push(PoolEntry { fd: bfd, state, bars: buffer_pages(&ranges) });

    // An explicit buffer mapped from page 4 on, split by a hole.
    let ranges = [(5 << 20, 32 * PAGE)];
    let bfd = fd.feature_dma_buf(1, RDWR, &ranges).unwrap();
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
        seq,
        slots,
        pool: Mutex::new(pool),
        regs,
        reg_slots,
        reg_pool: Mutex::new(reg_pool),
        reg_ledger: RegLedger::default(),
        reg_target: std::sync::atomic::AtomicUsize::new(0),
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
