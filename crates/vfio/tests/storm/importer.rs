//! The importers, and the drain check of the revokes against their mappings.

use super::*;

/// One revoking call that returned `Ok`, in ticks of `Storm::clock`.
pub struct RevokeSpan {
    pub what: &'static str,
    /// The buffer revoked; `None`: every buffer of the device.
    pub buf: Option<u64>,
    /// Taken right before the call.
    pub begins: u64,
    /// Taken right after it returned.
    pub returned: u64,
}

/// One importer mapping's life, in ticks of `Storm::clock`.
pub struct MapSpan {
    pub buf: u64,
    pub label: String,
    /// Taken right after `map` returned the mapping.
    pub mapped: u64,
    /// Taken right before the unmap was called (in the thread or the callback).
    pub unmap_begins: u64,
}

/// The storm's importer: one per cycle, attached to one buffer.
#[derive(Debug)]
pub struct StormImporter {
    /// The buffer it attaches to.
    pub buf: u64,
    /// Whether the callback unmaps the mapping itself when it finds it.
    pub unmap_inside: bool,
    pub clock: Arc<AtomicU64>,
    /// The one mapping, while the importer holds it.
    pub held: HeldMappings,
    /// The tick taken by the callback before it unmapped the mapping: set
    /// while `held` is locked, so the thread that finds the mapping gone
    /// finds the tick.
    pub unmapped_inside_at: Mutex<Option<u64>>,
    /// Raised by the callback; the thread unmaps when it sees it.
    pub invalidated: AtomicBool,
    pub invalidations: AtomicU64,
    /// Set by the thread once its attachment is dropped.
    pub detached: AtomicBool,
    /// What the callback found wrong (it cannot fail the storm itself).
    pub wrong: Mutex<Option<String>>,
}

impl Importer for StormImporter {
    /// Runs under the buffer's resv; takes only `held`, then
    /// `unmapped_inside_at` inside it, neither of which the thread holds
    /// while it calls into the buffer.
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
            self.held.unmap_locked_of(attachment, resv, || {
                *self.unmapped_inside_at.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(self.clock.fetch_add(1, SeqCst));
            });
        }
        self.invalidated.store(true, SeqCst);
    }
}

/// A buffer an importer may attach to.
pub struct Target {
    pub buf: Arc<DmaBuf>,
    pub label: String,
    /// The pool's state of an explicit buffer (its `perm` flag).
    pub state: Option<Arc<BufState>>,
}

/// Attach, map, hold, unmap and detach, `storm.cycles` times.
pub fn importer(storm: &Storm, me: &Progress, index: u64) -> Result<(), String> {
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
pub fn pick_target(storm: &Storm, me: &Progress, rng: &mut Rng, c: u64) -> Option<Target> {
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
pub fn wait_invalidated(storm: &Storm, me: &Progress, imp: &StormImporter, limit: u64) {
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
pub fn revoked_throughout(perm: bool, s0: u64, s1: u64) -> bool {
    perm || (s0 == s1 && s0 % 2 == 1)
}

pub fn import_once(storm: &Storm, me: &Progress, rng: &mut Rng, c: u64, target: Target) -> Result<(), String> {
    let Target { buf, label, state } = target;
    let perm = || state.as_ref().is_some_and(|s| s.perm.load(SeqCst));
    let imp = Arc::new(StormImporter {
        buf: buf.id(),
        unmap_inside: (c / 4) % 2 == 0,
        clock: storm.clock.clone(),
        held: HeldMappings::default(),
        unmapped_inside_at: Mutex::new(None),
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
    imp.held.hold(mapping);

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
    let taken = imp.held.take().pop();
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
            imp.unmapped_inside_at
                .lock()
                .unwrap_or_else(|e| e.into_inner())
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
pub fn finish(storm: &Storm, imp: &Arc<StormImporter>, label: &str) -> Result<(), String> {
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
pub fn check_importer_drain(storm: &Storm) -> u64 {
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
pub fn assert_no_importer_left(storm: &Storm, when: &str) {
    for b in storm.vdev.dmabufs() {
        assert_eq!((b.attachments(), b.importer_mappings()), (0, 0), "buffer {} {when}", b.id());
    }
}
