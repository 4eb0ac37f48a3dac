//! Register pages in the storm: BAR0 is replaced by [`RegModel`], a register
//! file that judges every access reaching it, and accessors read and write
//! their own words through register mappings while the drivers revoke and
//! un-revoke (see "Register pages" in the crate doc).

use std::cell::Cell;
use std::sync::{OnceLock, Weak};

use dmabuf::Status;

use super::*;

/// Device-fd offset of BAR0.
pub const BAR0: u64 = 0;
/// The model's BAR0: 4096 register pages.
pub const REG_BAR_LEN: u64 = 16 << 20;
pub const REG_PAGES: usize = (REG_BAR_LEN / PAGE) as usize;
/// Pages 0..4 are mapped through the device fd, 4..8 by a stable buffer;
/// every later buffer gets pages never used before.
pub const REG_DEV_PAGES: u64 = 4;
pub const REG_CHURN_START: u64 = 8;
pub const REG_SLOTS: usize = 6;
const REG_POOL_CAP: usize = 6;
/// One register access in this many is slow: it yields while it holds
/// `memory_lock` (see [`RegModel::land`]).
const SLOW_EVERY: u64 = 8;
const SLOW_YIELDS: u32 = 32;

thread_local! {
    /// Set by an accessor around the accesses of its register rounds. The
    /// model runs in the trapping thread, so it tells those apart from racy
    /// RAM reads whose address was reused by a register mapping meanwhile
    /// (unjudged, and not in the accessor's counts).
    static IN_REGISTER_ROUND: Cell<bool> = const { Cell::new(false) };
}

/// The register file of the storm's device. Each accessor owns the 64-bit
/// word at byte `64 * a` of every page. Every access that reaches the model
/// is judged on arrival, in the trapping thread (inside the signal handler,
/// so nothing here allocates): it must not arrive while memory is off
/// (`seq` odd), on a page whose buffer was permanently revoked (flag set
/// after the revoke returned), nor while its buffer's status is not `Ok`.
#[derive(Debug)]
pub struct RegModel {
    seq: Arc<AtomicU64>,
    value: Vec<AtomicU64>,
    writes: Vec<AtomicU64>,
    /// Every access of a register round that reached the model.
    pub landed: AtomicU64,
    /// Reads from elsewhere: racy RAM reads of an address reused meanwhile.
    pub landed_racing: AtomicU64,
    pub in_window: AtomicU64,
    pub after_perm: AtomicU64,
    pub while_revoked: AtomicU64,
    /// Accesses to a byte no accessor owns, or not 8 bytes wide.
    pub stray: AtomicU64,
    /// BAR0 offset + 1 of the first access judged bad, 0 if none.
    pub first_bad: AtomicU64,
    perm: Vec<AtomicBool>,
    bufs: Vec<OnceLock<Weak<DmaBuf>>>,
}

impl RegModel {
    pub fn new(seq: Arc<AtomicU64>) -> RegModel {
        let words = REG_PAGES * ACCESSORS;
        RegModel {
            seq,
            value: (0..words).map(|_| AtomicU64::new(0)).collect(),
            writes: (0..words).map(|_| AtomicU64::new(0)).collect(),
            landed: AtomicU64::new(0),
            landed_racing: AtomicU64::new(0),
            in_window: AtomicU64::new(0),
            after_perm: AtomicU64::new(0),
            while_revoked: AtomicU64::new(0),
            stray: AtomicU64::new(0),
            first_bad: AtomicU64::new(0),
            perm: (0..REG_PAGES).map(|_| AtomicBool::new(false)).collect(),
            bufs: (0..REG_PAGES).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Records the buffer that owns `page` (pages are never reused).
    pub fn own(&self, page: u64, buf: &Arc<DmaBuf>) {
        let _ = self.bufs[page as usize].set(Arc::downgrade(buf));
    }

    /// Called right after a permanent revoke of the buffer owning `page`
    /// returned.
    pub fn mark_perm(&self, page: u64) {
        self.perm[page as usize].store(true, SeqCst);
    }

    /// Judges one arriving access; returns the word it addresses.
    fn land(&self, offset: u64, len: usize) -> Option<usize> {
        if IN_REGISTER_ROUND.with(Cell::get) {
            self.landed.fetch_add(1, SeqCst);
        } else {
            self.landed_racing.fetch_add(1, SeqCst);
        }
        let page = (offset / PAGE) as usize;
        let mut bad = false;
        // The landing holds `memory_lock` for read: a revoke (which holds it
        // for write) either finished before it, and then `seq` or the perm
        // flag may show it, or starts after it, and then cannot have
        // published anything yet.
        if self.seq.load(SeqCst) % 2 == 1 {
            self.in_window.fetch_add(1, SeqCst);
            bad = true;
        }
        if self.perm.get(page).is_some_and(|p| p.load(SeqCst)) {
            self.after_perm.fetch_add(1, SeqCst);
            bad = true;
        }
        // The mapping being accessed holds the buffer: this is never the
        // last reference.
        let buf = self.bufs.get(page).and_then(OnceLock::get).and_then(Weak::upgrade);
        if buf.is_some_and(|b| b.status() != Status::Ok) {
            self.while_revoked.fetch_add(1, SeqCst);
            bad = true;
        }
        if bad {
            let _ = self.first_bad.compare_exchange(0, offset + 1, SeqCst, SeqCst);
        }
        // A slow register now and then, as real ones are: a revoke that
        // comes meanwhile waits for `memory_lock`, and the accesses that
        // passed their first status check queue behind it, so the check
        // under the lock really has something to refuse.
        if self.landed.load(SeqCst) % SLOW_EVERY == 0 {
            for _ in 0..SLOW_YIELDS {
                thread::yield_now();
            }
        }
        let in_page = offset % PAGE;
        if len != 8 || page >= REG_PAGES || in_page % WORD_STRIDE != 0 || in_page / WORD_STRIDE >= ACCESSORS as u64 {
            self.stray.fetch_add(1, SeqCst);
            return None;
        }
        Some(page * ACCESSORS + (in_page / WORD_STRIDE) as usize)
    }

    /// Writes that reached the model for one word, and its value.
    pub fn word(&self, w: usize) -> (u64, u64) {
        (self.writes[w].load(SeqCst), self.value[w].load(SeqCst))
    }
}

impl pci::RegisterBar for RegModel {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let v = self.land(offset, data.len()).map_or(!0, |w| self.value[w].load(SeqCst));
        let bytes = v.to_le_bytes();
        let n = data.len().min(8);
        data[..n].copy_from_slice(&bytes[..n]);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        if !IN_REGISTER_ROUND.with(Cell::get) {
            // Writes hold their slot: one from elsewhere is a stray.
            self.stray.fetch_add(1, SeqCst);
        }
        if let Some(w) = self.land(offset, data.len()) {
            let mut b = [0u8; 8];
            b.copy_from_slice(data);
            self.value[w].store(u64::from_le_bytes(b), SeqCst);
            self.writes[w].fetch_add(1, SeqCst);
        }
    }

    // Like RAM, the words survive resets: what a reset must do to them is
    // not the subject here, losing none is.
}

/// What the accessors know they did: per word, the writes that returned
/// success and the last value one stored (each word has one writer).
pub struct RegLedger {
    pub acked: Vec<AtomicU64>,
    pub last: Vec<AtomicU64>,
}

impl Default for RegLedger {
    fn default() -> RegLedger {
        let words = REG_PAGES * ACCESSORS;
        RegLedger {
            acked: (0..words).map(|_| AtomicU64::new(0)).collect(),
            last: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

pub fn word_index(bar0: u64, accessor: u64) -> usize {
    (bar0 / PAGE) as usize * ACCESSORS + accessor as usize
}

/// The register mappings made before the storm: a device-fd mapping of
/// pages 0..4 and a buffer over pages 4..8, mapped whole.
pub fn setup_registers(aspace: &AddressSpace, fd: &DeviceFd, model: &RegModel) -> (Vec<Slot>, Vec<PoolEntry>) {
    let va = fd.mmap(aspace, MmapArgs::shared(BAR0, REG_DEV_PAGES * PAGE)).unwrap();
    let dev = Mapping::registers("dev-regs".into(), va, &buffer_pages(&[(0, REG_DEV_PAGES * PAGE)]), None);
    let ranges = [(REG_DEV_PAGES * PAGE, 4 * PAGE)];
    let bfd = fd.feature_dma_buf(0, RDWR, &ranges).unwrap();
    for p in REG_DEV_PAGES..REG_CHURN_START {
        model.own(p, bfd.buffer());
    }
    let va = mmap_dmabuf(aspace, &bfd, MmapArgs::shared(0, 4 * PAGE)).unwrap();
    let state = BufState::new("buf-regs".into());
    let bars = buffer_pages(&ranges);
    let buf = Mapping::registers("buf-regs".into(), va, &bars, Some(state.clone()));
    let slots = [dev, buf]
        .into_iter()
        .map(|m| Slot { churn: false, live: RwLock::new(Some(m)) })
        .chain((0..REG_SLOTS).map(|_| Slot { churn: true, live: RwLock::new(None) }))
        .collect();
    (slots, vec![PoolEntry { fd: bfd, state, bars }])
}

impl Accessor<'_> {
    /// Read, write, read back one of our register words, the slot held.
    pub fn register_round(&mut self) {
        let storm = self.storm;
        let target = storm.reg_target.load(SeqCst);
        let i = if target > 0 && self.rng.below(4) != 0 { target - 1 } else { self.rng.pick(storm.reg_slots.len()) };
        let slot = &storm.reg_slots[i];
        let guard = slot.read();
        let Some(m) = guard.as_ref() else { return };
        let page = self.rng.pick(m.pages.len());
        let (va, bar) = self.word(m, page);
        let w = word_index(bar - self.index * WORD_STRIDE, self.index);
        IN_REGISTER_ROUND.with(|f| f.set(true));
        self.me.doing("register read");
        self.register_read(m, page, va, w, "register read");
        self.next_value += 1;
        let value = self.next_value;
        self.me.doing("register write");
        if let Verdict::Success(_) =
            self.judge(m, page, va, "register write", || probe::write_u64(va, value).map(|()| value))
        {
            storm.reg_ledger.last[w].store(value, SeqCst);
            storm.reg_ledger.acked[w].fetch_add(1, SeqCst);
        }
        self.me.doing("register read back");
        self.register_read(m, page, va, w, "register read back");
        IN_REGISTER_ROUND.with(|f| f.set(false));
    }

    fn register_read(&mut self, m: &Mapping, page: usize, va: u64, w: usize, what: &str) {
        if let Verdict::Success(got) = self.judge(m, page, va, what, || probe::read_u64(va)) {
            let want = self.storm.reg_ledger.last[w].load(SeqCst);
            if got != want {
                self.storm.violate(format!(
                    "lost register write: {what} of {} page {page} by accessor {} returned {got:#x}, \
                     its last successful write stored {want:#x}",
                    m.label, self.index
                ));
            }
        }
    }
}

impl Exporter<'_> {
    /// Exports a register buffer over pages never used before and maps it
    /// into a churn slot, unmapping a live one if none is free.
    pub fn churn_registers(&mut self) -> Result<(), String> {
        let storm = self.storm;
        // Four pages, like every mapping of ours: the holes punched in RAM
        // mappings must stay too small for one (see `hole_probe`).
        let pages = 4;
        if self.reg_cursor + pages > REG_PAGES as u64 {
            return Ok(());
        }
        let ranges = [(self.reg_cursor * PAGE, pages * PAGE)];
        self.reg_cursor += pages;
        self.me.doing("export a register buffer");
        let bfd = storm.fd.feature_dma_buf(0, RDWR, &ranges).map_err(|e| format!("register export: {e}"))?;
        storm.counts.add(C::RegExports);
        for p in 0..pages {
            storm.regs.own(ranges[0].0 / PAGE + p, bfd.buffer());
        }
        let state = BufState::new(format!("regbuf{}", bfd.buffer().id()));
        let bars = buffer_pages(&ranges);
        // A permanently revoked mapping goes first: live buffers keep the
        // revoker's race with the accessors going.
        let live: Vec<usize> = (0..storm.reg_slots.len())
            .filter(|&i| storm.reg_slots[i].churn && storm.reg_slots[i].read().is_some())
            .collect();
        let dead =
            live.iter().copied().find(|&i| storm.reg_slots[i].read().as_ref().is_some_and(|m| m.buf.perm.load(SeqCst)));
        let free =
            (0..storm.reg_slots.len()).find(|&i| storm.reg_slots[i].churn && storm.reg_slots[i].read().is_none());
        let slot = match free {
            Some(i) => i,
            None => {
                let i = dead.unwrap_or_else(|| live[self.rng.pick(live.len())]);
                self.me.doing("munmap a register mapping");
                let mut guard = storm.reg_slots[i].write();
                if let Some(m) = guard.take() {
                    m.unmapping.store(true, SeqCst);
                    storm.aspace.munmap(m.va, m.len()).map_err(|e| format!("munmap of {}: {e}", m.label))?;
                    storm.counts.add(C::Unmaps);
                }
                i
            }
        };
        self.me.doing("mmap a register buffer");
        match mmap_dmabuf(&storm.aspace, &bfd, MmapArgs::shared(0, pages * PAGE)) {
            Ok(va) => {
                storm.counts.add(C::BufferMmaps);
                let m = Mapping::registers(state.label.clone(), va, &bars, Some(state.clone()));
                *storm.reg_slots[slot].write() = Some(m);
            }
            Err(e) if e.errno() == Errno::NODEV => storm.counts.add(C::MmapRefused),
            Err(e) => return Err(format!("mmap of {}: {e}", state.label)),
        }
        storm.pool_push(&storm.reg_pool, REG_POOL_CAP, PoolEntry { fd: bfd, state, bars });
        Ok(())
    }
}

/// Permanently revokes a pooled register buffer not revoked yet, one the
/// accessors are using if there is one.
pub fn revoke_registers(storm: &Storm, rng: &mut Rng) -> Result<(), String> {
    let pool = storm.reg_pool();
    let mapped = |e: &PoolEntry| {
        storm.reg_slots.iter().any(|s| s.read().as_ref().is_some_and(|m| Arc::ptr_eq(&m.buf, &e.state)))
    };
    let mut candidates: Vec<&PoolEntry> = pool.iter().filter(|e| !e.state.perm.load(SeqCst) && mapped(e)).collect();
    if candidates.is_empty() {
        candidates = pool.iter().filter(|e| !e.state.perm.load(SeqCst)).collect();
    }
    if candidates.is_empty() {
        return Ok(());
    }
    let e = candidates[rng.pick(candidates.len())];
    // Draw the accessors to the buffer about to be revoked, so that some of
    // them are inside an access to it when the revoke comes.
    let slot = storm.reg_slots.iter().position(|s| s.read().as_ref().is_some_and(|m| Arc::ptr_eq(&m.buf, &e.state)));
    if let Some(i) = slot {
        storm.reg_target.store(i + 1, SeqCst);
        for _ in 0..rng.below(16) {
            thread::yield_now();
        }
    }
    let begins = storm.tick();
    let r = storm.fd.feature_dma_buf_revoke(e.fd.raw_fd());
    storm.reg_target.store(0, SeqCst);
    r.map_err(|err| format!("permanent revoke of {}: {err}", e.state.label))?;
    storm.log_revoke("DMA_BUF_REVOKE", Some(e.fd.buffer().id()), begins, storm.tick());
    for &bar in &e.bars {
        storm.regs.mark_perm(bar / PAGE);
    }
    e.state.perm.store(true, SeqCst);
    storm.counts.add(C::RegPermRevokes);
    Ok(())
}

/// After the storm, before the epilogue: nothing reached the model that
/// should not have, and every acknowledged write did, exactly once.
/// Returns the number of words compared.
pub fn check_registers(storm: &Storm) -> usize {
    let m = &storm.regs;
    let bad = [
        ("while memory was off", m.in_window.load(SeqCst)),
        ("after a permanent revoke returned", m.after_perm.load(SeqCst)),
        ("while the buffer's status was not Ok", m.while_revoked.load(SeqCst)),
        ("at a byte nobody owns, at another width or from outside a round", m.stray.load(SeqCst)),
    ];
    let report: Vec<String> = bad.iter().filter(|(_, n)| *n > 0).map(|(when, n)| format!("{n} {when}")).collect();
    assert!(
        report.is_empty(),
        "register accesses reached the device: {} (first at BAR0 {:#x})",
        report.join(", "),
        m.first_bad.load(SeqCst).wrapping_sub(1)
    );
    for w in 0..REG_PAGES * ACCESSORS {
        let (writes, value) = m.word(w);
        let acked = storm.reg_ledger.acked[w].load(SeqCst);
        let last = storm.reg_ledger.last[w].load(SeqCst);
        assert_eq!((writes, value), (acked, last), "register word {w}: writes that reached the device and its value");
    }
    assert_eq!(
        m.landed.load(SeqCst),
        storm.counts.get(C::RegSuccesses),
        "every register access that returned success reached the device, and no other did"
    );
    assert!(
        m.landed_racing.load(SeqCst) <= storm.counts.get(C::Unjudged),
        "reads from outside the register rounds can only be unjudged racy reads"
    );
    REG_PAGES * ACCESSORS
}

/// With memory on: every register word of a live mapping reads its last
/// acknowledged value, or raises SIGBUS if its buffer was permanently revoked.
pub fn verify_registers(storm: &Storm) -> usize {
    IN_REGISTER_ROUND.with(|f| f.set(true));
    let mut checked = 0;
    for slot in &storm.reg_slots {
        let guard = slot.read();
        let Some(m) = guard.as_ref() else { continue };
        for (page, p) in m.pages.iter().enumerate() {
            for a in 0..ACCESSORS as u64 {
                let va = m.va + page as u64 * PAGE + a * WORD_STRIDE;
                let r = probe::read_u64(va);
                if m.buf.perm.load(SeqCst) {
                    let e = r.expect_err("a permanently revoked register buffer stays revoked");
                    assert!(
                        e.is_sigbus() && e.code == libc::BUS_ADRERR && e.addr == va,
                        "{} page {page}: {e}",
                        m.label
                    );
                } else {
                    let want = storm.reg_ledger.last[word_index(p.bar, a)].load(SeqCst);
                    assert_eq!(r, Ok(want), "{} page {page} register word of accessor {a}", m.label);
                }
                checked += 1;
            }
        }
    }
    IN_REGISTER_ROUND.with(|f| f.set(false));
    checked
}
