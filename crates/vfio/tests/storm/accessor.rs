//! The accessors: every access judged (see the crate doc).

use super::*;

/// How one access ended, once judged.
pub enum Verdict {
    Success(u64),
    Sigbus,
    /// The address was being unmapped by the test: anything goes.
    Unjudged,
}

pub struct Accessor<'a> {
    pub storm: &'a Storm,
    pub me: &'a Progress,
    pub index: u64,
    pub rng: Rng,
    /// Last value each of our successful writes stored, by BAR1 offset.
    pub last: HashMap<u64, u64>,
    pub next_value: u64,
}

impl Accessor<'_> {
    pub fn run(mut self) -> HashMap<u64, u64> {
        let storm = self.storm;
        let mut n = 0u64;
        while !storm.stop.load(SeqCst) && !storm.aborted() {
            let slot = &storm.slots[self.rng.pick(storm.slots.len())];
            match self.rng.below(14) {
                0..=5 => self.locked_round(slot),
                6..=8 => self.racy_read(slot),
                9 => self.hole_probe(slot),
                _ => self.register_round(),
            }
            self.me.steps.fetch_add(1, SeqCst);
            n += 1;
            if n % 8 == 0 {
                thread::yield_now();
            }
        }
        self.last
    }

    pub fn word(&self, m: &Mapping, page: usize) -> (u64, u64) {
        let off = self.index * WORD_STRIDE;
        (m.va + page as u64 * PAGE + off, m.pages[page].bar + off)
    }

    /// Read, write, read back, with the slot held so it cannot be unmapped.
    pub fn locked_round(&mut self, slot: &Slot) {
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
    pub fn racy_read(&mut self, slot: &Slot) {
        let Some(m) = slot.read().clone() else { return };
        let page = self.rng.pick(m.pages.len());
        let (va, bar) = self.word(&m, page);
        self.me.doing("read (racing unmaps)");
        self.read_and_check(&m, page, va, bar, "racy read");
    }

    pub fn read_and_check(&mut self, m: &Mapping, page: usize, va: u64, bar: u64, what: &str) {
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
    pub fn judge(
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
        let reg = |c: C| {
            if m.registers {
                storm.counts.add(c);
            }
        };
        reg(C::RegAccesses);
        if in_window {
            storm.counts.add(C::WindowAccesses);
            reg(C::RegWindowAccesses);
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
                reg(C::RegSuccesses);
                Verdict::Success(v)
            }
            Err(e) if e.is_sigbus() && e.code == libc::BUS_ADRERR && e.addr == va => {
                storm.counts.add(C::Sigbus);
                reg(C::RegSigbus);
                if in_window {
                    storm.counts.add(C::WindowSigbus);
                    reg(C::RegWindowSigbus);
                }
                if perm {
                    storm.counts.add(C::PermSigbus);
                    reg(C::RegPermSigbus);
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
    pub fn hole_probe(&mut self, slot: &Slot) {
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
