//! The drivers: the toggler, the resetter, the exporter and the revoker.

use super::*;

/// Memory off, window, memory on, for every cycle; see the crate doc.
pub fn toggler(storm: &Storm, me: &Progress) -> Result<(), String> {
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
pub fn resetter(storm: &Storm, me: &Progress) -> Result<(), String> {
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
pub enum Source {
    NewBuffer,
    DeviceFd,
    PoolBuffer,
}

pub struct Exporter<'a> {
    pub storm: &'a Storm,
    pub me: &'a Progress,
    pub rng: Rng,
    /// Next BAR1 offset to hand out; wraps (aliasing old words is fine, see
    /// the crate doc: each word has one writer whatever maps it).
    pub cursor: u64,
    /// Next BAR0 page for a register buffer; never wraps.
    pub reg_cursor: u64,
}

impl Exporter<'_> {
    pub fn bar_range(&mut self, pages: u64) -> u64 {
        if self.cursor + pages * PAGE > BAR1_LEN {
            self.cursor = CHURN_START;
        }
        let at = self.cursor;
        // One page gap keeps two ranges of a buffer apart.
        self.cursor += (pages + 1) * PAGE;
        at
    }

    pub fn churn_slots(&self, live: bool) -> Vec<usize> {
        let s = &self.storm.slots;
        (0..s.len()).filter(|&i| s[i].churn && s[i].read().is_some() == live).collect()
    }

    pub fn run(&mut self) -> Result<(), String> {
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
            if c % 5 == 2 {
                self.churn_registers()?;
            }
            self.me.steps.fetch_add(1, SeqCst);
            thread::yield_now();
        }
        Ok(())
    }

    pub fn fill(&mut self, source: Source) -> Result<(), String> {
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

    pub fn map_new_buffer(&mut self) -> Result<Option<Arc<Mapping>>, String> {
        let storm = self.storm;
        self.me.doing("export a buffer");
        let nr = 1 + self.rng.below(2);
        let ranges: Vec<(u64, u64)> = (0..nr)
            .map(|_| {
                let pages = 4 + self.rng.below(5);
                (self.bar_range(pages), pages * PAGE)
            })
            .collect();
        let bfd = storm.fd.feature_dma_buf(1, RDWR, &ranges).map_err(|e| format!("export: {e}"))?;
        storm.counts.add(C::Exports);
        let state = BufState::new(format!("buf{}", bfd.buffer().id()));
        let bars = buffer_pages(&ranges);
        let mapping = self.map_buffer(&bfd, &state, &bars)?;
        storm.pool_push(&storm.pool, POOL_CAP, PoolEntry { fd: bfd, state, bars });
        Ok(mapping)
    }

    pub fn map_pool_buffer(&mut self) -> Result<Option<Arc<Mapping>>, String> {
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
    pub fn map_buffer(
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

    pub fn map_device_fd(&mut self) -> Result<Arc<Mapping>, String> {
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
    pub fn split(&mut self) -> Result<(), String> {
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
    pub fn unmap_one(&mut self) -> Result<Option<usize>, String> {
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
pub fn revoker(storm: &Storm, me: &Progress) -> Result<(), String> {
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
            1 | 6 => {
                me.doing("DMA_BUF_REVOKE of a register buffer");
                revoke_registers(storm, &mut rng)?;
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
