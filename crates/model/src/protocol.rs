//! The revocation protocol, step by step, as `crates/vfio` and
//! `crates/dmabuf` implement it (spec §4.6–§4.9, §6), with each [`Bug`]
//! switch at the step it breaks.
//!
//! Every function names the real function it models. Steps that touch what
//! the invariants talk about are recorded in the books at the instant they
//! happen ([`World::record`]).

use std::ops::{Deref, DerefMut};

use shuttle::sync::atomic::Ordering;
use shuttle::sync::{MutexGuard, RwLockWriteGuard};
use shuttle::thread;

use crate::check::{
    check_not_freed, check_registration_put, check_sever, check_unlink, check_vdev_use, Books, Event, Pte, Status,
    PAGES,
};
use crate::process::{notify_process, restore_frames_to_unrevoke, restore_reachable_frames};
use crate::world::{MemoryState, ResvState, World};
use crate::Bug;

/// What one user access to a buffer's page ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The page was (or became) present: the access reached the device.
    Hit,
    /// SIGBUS: the page is poisoned.
    Sigbus,
    /// Faulted and was zapped again each time; the thread gave up (the
    /// model bounds the retry loop a real thread would keep running).
    Refaulted,
    /// The page is no longer mapped (SIGSEGV): a munmap removed it.
    Unmapped,
}

/// What `set_status` did (`dmabuf::Transition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    NoOp,
    Revoked,
    Tightened,
    Unrevoked,
}

/// Why the permanent-revoke feature refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RevokeRefused {
    /// `ENODEV`: the buffer's device was closed (best-effort lockless check).
    NoDev,
    /// `EBADFD`: already permanently revoked.
    BadFd,
}

/// `memory_lock` held for write (`crates/vfio` `MemoryWriteGuard`). Buffer
/// references taken under the lock are put only after it is released,
/// because the last put runs release, which takes `memory_lock`.
pub(crate) struct MemoryWriteGuard<'a> {
    world: &'a World,
    guard: Option<RwLockWriteGuard<'a, MemoryState>>,
    deferred: Vec<usize>,
}

impl MemoryWriteGuard<'_> {
    fn defer_put(&mut self, buf: usize) {
        self.deferred.push(buf);
    }
}

impl Deref for MemoryWriteGuard<'_> {
    type Target = MemoryState;
    fn deref(&self) -> &MemoryState {
        self.guard.as_ref().expect("held until drop")
    }
}

impl DerefMut for MemoryWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut MemoryState {
        self.guard.as_mut().expect("held until drop")
    }
}

impl Drop for MemoryWriteGuard<'_> {
    fn drop(&mut self) {
        // The pass ends: invariant 7 is judged here, the lock still held.
        self.world.record(|books| {
            books.dev.in_pass = false;
            Ok(())
        });
        self.guard.take();
        // Unwinding from a violation: the execution has failed, so leak the
        // references rather than run release, whose checks would panic again
        // inside this destructor (and abort the whole test binary).
        if std::thread::panicking() {
            return;
        }
        for buf in std::mem::take(&mut self.deferred) {
            dma_buf_put(self.world, buf);
        }
    }
}

pub(crate) fn lock_memory_write(w: &World) -> MemoryWriteGuard<'_> {
    let guard = Some(w.dev.memory_lock.write().expect("no poisoning"));
    w.record(|books| {
        books.dev.in_pass = true;
        Ok(())
    });
    MemoryWriteGuard { world: w, guard, deferred: Vec::new() }
}

// ---------------------------------------------------------------------------
// The page tables (crates/mm).
// ---------------------------------------------------------------------------

/// `UFFDIO_CONTINUE`: maps the page unless something (a page, the PMD or a
/// poison marker) is already there, which is `EEXIST` and changes nothing.
/// On a cut (truncated) frame it fails, and the access is SIGBUS.
fn insert_pfn(w: &World, buf: usize, page: usize) {
    // The ioctl takes the page-table lock: a point where others may run.
    thread::yield_now();
    w.record(|books| {
        let cut = books.dev.frame_cut;
        let b = &mut books.bufs[buf];
        if !cut && !b.pmd && b.ptes[page] == Pte::None {
            b.ptes[page] = Pte::Present;
        }
        Ok(())
    });
}

/// The huge insert (`MADV_COLLAPSE`, as `vmf_insert_pfn_pmd()`): one PMD
/// entry for the whole aligned 2 MiB, if the range is still one VMA (no
/// split) and has no page table under it (no PTE, no marker); otherwise
/// falls back to the PTE of the faulting page.
fn insert_pfn_pmd(w: &World, buf: usize, page: usize) {
    thread::yield_now();
    w.record(|books| {
        let cut = books.dev.frame_cut;
        let b = &mut books.bufs[buf];
        if cut || b.pmd {
            return Ok(());
        }
        if !b.split && b.ptes.iter().all(|&p| p == Pte::None) {
            b.pmd = true;
            books.saw(Event::PmdInstalled);
        } else {
            if b.split {
                books.saw(Event::HugeFellBackToPte);
            }
            let b = &mut books.bufs[buf];
            if b.ptes[page] == Pte::None {
                b.ptes[page] = Pte::Present;
            }
        }
        Ok(())
    });
}

/// `UFFDIO_POISON`: installs a poison marker unless something is there.
fn poison(w: &World, buf: usize, page: usize) {
    thread::yield_now();
    w.record(|books| {
        let b = &mut books.bufs[buf];
        if !b.pmd && b.ptes[page] == Pte::None {
            b.ptes[page] = Pte::Poisoned;
        }
        Ok(())
    });
}

/// Who zaps: only for the coverage events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZapFor {
    Revoke,
    Unrevoke,
}

/// `MappingHandle::zap` (`MADV_DONTNEED`): drops the pages, the PMD and any
/// poison marker. Takes the VMA table lock, never `mmap_lock`, so an
/// exporter may zap under its own locks while a fault holds `mmap_lock`
/// and waits for them.
fn zap(w: &World, buf: usize, why: ZapFor) {
    let clear = |books: &mut Books| {
        let b = &books.bufs[buf];
        let (present, pmd, poisoned) = (b.ptes.contains(&Pte::Present), b.pmd, b.ptes.contains(&Pte::Poisoned));
        match why {
            ZapFor::Revoke if present => books.saw(Event::RevokeZappedPte),
            ZapFor::Unrevoke if poisoned => books.saw(Event::UnrevokeClearedPoison),
            _ => {}
        }
        if pmd && why == ZapFor::Revoke {
            books.saw(Event::RevokeZappedPmd);
        }
        let b = &mut books.bufs[buf];
        b.ptes = [Pte::None; PAGES];
        b.pmd = false;
        Ok(())
    };
    if w.bug == Bug::ZapTakesMmapLock {
        let _mmap = w.aspace.mmap_lock.write().expect("no poisoning");
        w.record(clear);
    } else {
        let _vmas = w.aspace.vmas.lock().expect("no poisoning");
        w.record(clear);
    }
}

/// A user thread touches page `page` of the buffer: a present page (or the
/// PMD) is a hit, a poison marker SIGBUS, an empty entry over a cut frame
/// SIGBUS from the kernel (the file ends before it), and an empty entry
/// otherwise faults into [`huge_fault`] (served by the address space's
/// fault thread; `huge` where the fault may map the 2 MiB) and is retried.
pub(crate) fn cpu_access(w: &World, buf: usize, page: usize, huge: bool) -> Access {
    for _ in 0..3 {
        thread::yield_now();
        let seen = w.record(|books| {
            let cut = books.dev.frame_cut;
            let in_pass = books.dev.in_pass;
            let b = &books.bufs[buf];
            if page != 0 && b.split {
                return Ok(None);
            }
            let entry = if b.mapped(page) { Pte::Present } else { b.ptes[page] };
            if entry == Pte::None && cut {
                if b.status == Status::Ok && in_pass {
                    books.saw(Event::OkAccessMetCutFrameInPass);
                }
                return Ok(Some(Pte::Poisoned));
            }
            Ok(Some(entry))
        });
        match seen {
            None => return Access::Unmapped,
            Some(Pte::Present) => return Access::Hit,
            Some(Pte::Poisoned) => return Access::Sigbus,
            Some(Pte::None) => huge_fault(w, buf, page, huge),
        }
    }
    Access::Refaulted
}

/// A partial `munmap` of page 1 inside the buffer's 2 MiB (`mmap_lock`
/// write, then the VMA table lock): the PMD over the split point goes as a
/// whole, so page 0 faults back in with a PTE.
pub(crate) fn munmap_page1(w: &World, buf: usize) {
    let _mmap = w.aspace.mmap_lock.write().expect("no poisoning");
    let had_pmd = {
        let _vmas = w.aspace.vmas.lock().expect("no poisoning");
        w.record(|books| {
            let b = &mut books.bufs[buf];
            let had = b.pmd;
            b.pmd = false;
            b.ptes[1] = Pte::None;
            b.split = true;
            if had {
                books.saw(Event::SplitDroppedPmd);
            }
            Ok(had)
        })
    };
    if had_pmd && w.bug == Bug::SplitRemapsPmdPages {
        // Keeps page 0 mapped by re-inserting it, outside the fault's checks.
        insert_pfn(w, buf, 0);
    }
}

// ---------------------------------------------------------------------------
// The fault (crates/vfio core.rs `BarVma::huge_fault`, mm `handle_fault`).
// ---------------------------------------------------------------------------

/// Takes a registration on the device (`vfio_device_try_get_registration`):
/// fails once the count is zero. A use of `vdev`.
fn pin(w: &World, buf: usize) -> bool {
    let mut n = w.dev.registrations.lock().expect("no poisoning");
    w.record(|books| check_vdev_use(books, buf, "the fault's registration pin"));
    if *n == 0 {
        return false;
    }
    *n += 1;
    w.record(|books| {
        books.dev.registrations += 1;
        books.bufs[buf].pins += 1;
        Ok(())
    });
    true
}

fn unpin(w: &World, buf: usize) {
    let mut n = w.dev.registrations.lock().expect("no poisoning");
    *n -= 1;
    w.record(|books| {
        books.dev.registrations -= 1;
        books.bufs[buf].pins -= 1;
        Ok(())
    });
    if *n == 0 {
        w.dev.unregistered.notify_all();
    }
}

/// `vfio_pci_mmap_huge_fault()` (spec §4.6), with the fault thread's
/// `mmap_lock` (read) held around it.
///
/// 1. The buffer is alive: the VMA holds it.
/// 2. Under `resv`, a status other than Ok is SIGBUS, poisoned under `resv`.
/// 3. Ok under `resv` ⇒ cleanup has not severed the device; pin it.
///    Now: the device outlives this fault.
/// 4. Drop `resv` (never nested with `memory_lock` here).
/// 5. Under `memory_lock` (read), re-read the status and memory enable, and
///    install the page or poison it. Now: a page is mapped only while Ok and
///    enabled, and no revoke can run until the lock is dropped.
///
/// A `huge` fault maps the whole 2 MiB with one PMD entry under the same
/// checks, or falls back to the faulting page's PTE.
fn huge_fault(w: &World, buf: usize, page: usize, huge: bool) {
    let b = &w.bufs[buf];
    let _mmap = w.aspace.mmap_lock.read().expect("no poisoning");
    // The VMA lookup; the table lock is dropped before the handler runs.
    drop(w.aspace.vmas.lock().expect("no poisoning"));

    // Step 2.
    let resv = b.resv.lock().expect("no poisoning");
    if b.status() != Status::Ok {
        if w.bug == Bug::PoisonOutsideLock {
            drop(resv);
        }
        poison(w, buf, page);
        return;
    }
    // Step 3.
    let pinned = if w.bug == Bug::FaultSkipsPin {
        // Reads the pointer, takes nothing.
        w.record(|books| check_vdev_use(books, buf, "the fault's vdev read"));
        false
    } else if b.vdev_set() && pin(w, buf) {
        true
    } else {
        // "buffer Ok but severed from its device": the real code warns.
        poison(w, buf, page);
        return;
    };
    // Step 4.
    let nested = if w.bug == Bug::FaultNestsResvAndMemoryLock {
        Some(resv)
    } else {
        drop(resv);
        None
    };
    // Step 5. Taking the device's lock is the use: checked once it is taken,
    // since that is the last moment the device could have been freed.
    let mem = w.dev.memory_lock.read().expect("no poisoning");
    w.record(|books| check_vdev_use(books, buf, "fault step 5 (memory_lock)"));
    let ok = w.bug == Bug::FaultSkipsRecheckUnderMemoryLock
        || (huge && w.bug == Bug::PmdInstallSkipsRecheck)
        || b.status() == Status::Ok;
    if !ok {
        w.record(|books| {
            books.saw(Event::RecheckRefusedFault);
            Ok(())
        });
    }
    if ok && mem.enabled {
        if huge {
            insert_pfn_pmd(w, buf, page);
        } else {
            insert_pfn(w, buf, page);
        }
        drop(mem);
    } else if w.bug == Bug::PoisonOutsideLock {
        drop(mem);
        poison(w, buf, page);
    } else {
        poison(w, buf, page);
        drop(mem);
    }
    drop(nested);
    if pinned {
        unpin(w, buf);
    }
}

// ---------------------------------------------------------------------------
// The status machine (crates/dmabuf revoke.rs, crates/vfio dmabuf.rs).
// ---------------------------------------------------------------------------

/// `set_status` (spec §4.7): every (from, to) pair.
///
/// Preconditions: `memory_lock` held for write (except under
/// [`Bug::PermRevokeWithoutMemoryLock`]); `resv` not held.
pub(crate) fn set_status(w: &World, buf: usize, new: Status) -> Transition {
    let b = &w.bufs[buf];
    let resv = b.resv.lock().expect("no poisoning");
    w.record(|books| check_not_freed(&books.bufs[buf], buf, "set_status"));
    let absorbing = w.bug != Bug::PermRevokeNotAbsorbing;
    match (b.status(), new) {
        (Status::PermRevoked, _) if absorbing => Transition::NoOp,
        (old, new) if old == new => Transition::NoOp,
        (Status::Ok, _) => revoke(w, buf, resv, new),
        (_, Status::Ok) => unrevoke(w, buf, resv),
        // Temp → Perm (and, under the bug, Perm → Temp): already torn down.
        (_, _) => {
            w.record(|books| {
                w.store_status(buf, new, books);
                Ok(())
            });
            Transition::Tightened
        }
    }
}

/// Unmaps one importer mapping with `resv` held (`unmap_state`): the last
/// one wakes a waiting revoke. Returns whether there was one to unmap.
fn unmap_locked(w: &World, buf: usize, resv: &mut ResvState, attachment: usize) -> bool {
    if !resv.attachments[attachment].mapped {
        return false;
    }
    resv.attachments[attachment].mapped = false;
    resv.importer_mappings -= 1;
    let left = resv.importer_mappings;
    w.record(|books| {
        books.bufs[buf].importer_mappings = left;
        Ok(())
    });
    if left == 0 {
        w.bufs[buf].unmapped.notify_all();
    }
    true
}

/// Full revoke (`DmaBuf::revoke`), Ok → `new`:
///
/// 1. Publish `new` under `resv`: faults, attaches and maps now fail.
/// 2. Call every importer's `invalidate_mappings`, still under `resv`.
/// 3. Release `resv`.
/// 4. Wait until every importer mapping is unmapped.
/// 5. Zap the CPU mappings. Now: no PTE and no importer mapping exists, and
///    with `memory_lock` held none can be created.
fn revoke<'a>(w: &'a World, buf: usize, mut resv: MutexGuard<'a, ResvState>, new: Status) -> Transition {
    let b = &w.bufs[buf];
    if w.bug == Bug::RevokeZapsBeforeSettingStatus {
        drop(resv);
        zap(w, buf, ZapFor::Revoke);
        resv = b.resv.lock().expect("no poisoning");
    }
    // 1.
    w.record(|books| {
        w.store_status(buf, new, books);
        books.bufs[buf].clean_window = false;
        Ok(())
    });
    // 2.
    for a in 0..resv.attachments.len() {
        resv.attachments[a].invalidated = true;
        if resv.attachments[a].unmaps_in_callback && unmap_locked(w, buf, &mut resv, a) {
            w.record(|books| {
                books.saw(Event::ImporterUnmappedInCallback);
                Ok(())
            });
        }
    }
    // 3.
    drop(resv);
    // 4.
    if w.bug != Bug::NoImporterWait {
        let mut resv = b.resv.lock().expect("no poisoning");
        if resv.importer_mappings > 0 {
            w.record(|books| {
                books.saw(Event::RevokeWaitedForImporter);
                Ok(())
            });
        }
        while resv.importer_mappings > 0 {
            resv = b.unmapped.wait(resv).expect("no poisoning");
        }
    }
    // 5.
    if w.bug != Bug::RevokeZapsBeforeSettingStatus {
        zap(w, buf, ZapFor::Revoke);
    }
    // 6. The other process zaps its own mappings, or is cut off.
    notify_process(w, buf);
    // Returned: the revoked window opens.
    w.record(|books| {
        books.bufs[buf].revoked_window = true;
        Ok(())
    });
    Transition::Revoked
}

/// Un-revoke, `TempRevoked` → Ok: publish Ok under `resv`, then zap to clear
/// the poison markers of faults taken while revoked. A fault that poisoned
/// did so under `resv` or `memory_lock`, so before the publish, so before
/// the zap.
fn unrevoke(w: &World, buf: usize, resv: MutexGuard<'_, ResvState>) -> Transition {
    let b = &w.bufs[buf];
    let publish = |books: &mut Books| {
        w.store_status(buf, Status::Ok, books);
        books.bufs[buf].revoked_window = false;
        Ok(())
    };
    if w.bug == Bug::UnrevokeZapsBeforeSettingOk {
        drop(resv);
        zap(w, buf, ZapFor::Unrevoke);
        let _resv = b.resv.lock().expect("no poisoning");
        w.record(publish);
    } else {
        w.record(publish);
        drop(resv);
        if w.bug != Bug::UnrevokeSkipsZap {
            zap(w, buf, ZapFor::Unrevoke);
        }
    }
    // Returned: the clean window opens.
    w.record(|books| {
        books.bufs[buf].clean_window = true;
        Ok(())
    });
    Transition::Unrevoked
}

// ---------------------------------------------------------------------------
// The device's buffers (crates/vfio dmabuf.rs, core.rs, config.rs).
// ---------------------------------------------------------------------------

/// `get_file_active` (`Weak::upgrade`): a reference unless the count is
/// already zero.
fn get_file_active(w: &World, buf: usize) -> bool {
    let refs = &w.bufs[buf].refs;
    let mut n = refs.load(Ordering::SeqCst);
    while n > 0 {
        match refs.compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return true,
            Err(now) => n = now,
        }
    }
    false
}

/// Drops a buffer reference; the last one runs release.
pub(crate) fn dma_buf_put(w: &World, buf: usize) {
    if w.bufs[buf].refs.fetch_sub(1, Ordering::SeqCst) == 1 {
        w.record(|books| {
            books.bufs[buf].dying = true;
            Ok(())
        });
        release(w, buf);
    }
}

/// `vfio_pci_dma_buf_move()`: every live listed buffer to `TempRevoked`
/// (`revoked`) or Ok. `ignore_refs` is cleanup under
/// [`Bug::CleanupIgnoresDyingBuffers`], which also moves dying buffers.
fn dma_buf_move(w: &World, mem: &mut MemoryWriteGuard<'_>, revoked: bool, ignore_refs: bool) {
    let target = if revoked { Status::TempRevoked } else { Status::Ok };
    if !revoked {
        restore_frames_to_unrevoke(w, mem);
    }
    for buf in mem.dmabufs.clone() {
        let got = get_file_active(w, buf);
        if got || ignore_refs {
            set_status(w, buf, target);
        }
        if got {
            mem.defer_put(buf);
        }
    }
}

/// `vfio_pci_revoke_bars()`.
fn revoke_bars(w: &World, mem: &mut MemoryWriteGuard<'_>) {
    dma_buf_move(w, mem, true, false);
}

/// `vfio_pci_unrevoke_bars()`.
fn unrevoke_bars(w: &World, mem: &mut MemoryWriteGuard<'_>) {
    dma_buf_move(w, mem, false, false);
}

/// A config write to COMMAND.MEMORY (`config_write`): lock, revoke before
/// a write that disables memory, write, un-revoke if enabled afterwards.
pub(crate) fn config_write_memory(w: &World, enable: bool) {
    let mut mem = lock_memory_write(w);
    if !enable {
        revoke_bars(w, &mut mem);
    }
    mem.enabled = enable;
    if mem.enabled {
        unrevoke_bars(w, &mut mem);
    }
}

/// `VFIO_DEVICE_RESET` (`VfioPciDevice::reset`): lock, revoke, reset (memory
/// enable survives, as COMMAND is restored), un-revoke if enabled.
pub(crate) fn reset(w: &World) {
    let mut mem = lock_memory_write(w);
    revoke_bars(w, &mut mem);
    if mem.enabled {
        unrevoke_bars(w, &mut mem);
    }
}

/// Drops a buffer's registration on the device.
fn put_registration(w: &World, buf: usize) {
    let mut n = w.dev.registrations.lock().expect("no poisoning");
    w.record(|books| {
        check_registration_put(&books.bufs[buf], buf)?;
        books.bufs[buf].holds_registration = false;
        books.dev.registrations = books.dev.registrations.saturating_sub(1);
        Ok(())
    });
    *n = n.saturating_sub(1);
    if *n == 0 {
        w.dev.unregistered.notify_all();
    }
}

/// `vfio_pci_dma_buf_cleanup()`: under `memory_lock` (write), revoke every
/// live buffer, then sever each: unlink, clear `vdev` under `resv`, drop its
/// registration. Buffers whose last reference is gone are left to release.
fn dma_buf_cleanup(w: &World) {
    let ignore_refs = w.bug == Bug::CleanupIgnoresDyingBuffers;
    let mut mem = lock_memory_write(w);
    if w.bug != Bug::CleanupSkipsRevoke {
        dma_buf_move(w, &mut mem, true, ignore_refs);
    }
    for buf in mem.dmabufs.clone() {
        let got = get_file_active(w, buf);
        if !got && !ignore_refs {
            continue;
        }
        w.record(|books| {
            check_unlink(&books.bufs[buf], buf, "cleanup")?;
            books.bufs[buf].linked = false;
            books.bufs[buf].unlinks += 1;
            books.saw(Event::CleanupUnlinked);
            Ok(())
        });
        mem.dmabufs.retain(|&b| b != buf);
        {
            let _resv = w.bufs[buf].resv.lock().expect("no poisoning");
            w.record(|books| {
                check_sever(&books.bufs[buf], buf)?;
                if books.bufs[buf].pins > 0 {
                    books.saw(Event::PinOutlivedSever);
                }
                w.clear_vdev(buf, books);
                Ok(())
            });
        }
        put_registration(w, buf);
        if got {
            mem.defer_put(buf);
        }
    }
    w.record(|books| {
        books.dev.closed = true;
        Ok(())
    });
}

/// `vfio_pci_dma_buf_release()`: unlink under `memory_lock` (write) if
/// cleanup has not severed the buffer, then drop its registration.
fn release(w: &World, buf: usize) {
    let unlink = w.bug == Bug::ReleaseUnlinksWithoutCheck || w.bufs[buf].vdev_set();
    if unlink {
        let mut mem = lock_memory_write(w);
        w.record(|books| {
            check_vdev_use(books, buf, "release")?;
            check_unlink(&books.bufs[buf], buf, "release")?;
            books.bufs[buf].linked = false;
            books.bufs[buf].unlinks += 1;
            books.saw(Event::ReleaseUnlinked);
            w.clear_vdev(buf, books);
            Ok(())
        });
        mem.dmabufs.retain(|&b| b != buf);
        drop(mem);
        put_registration(w, buf);
    }
    w.record(|books| {
        books.bufs[buf].released = true;
        Ok(())
    });
}

/// Last close of the device file (`close_device`): cleanup, then disable
/// the function in a second lock hold.
fn close_device(w: &World) {
    dma_buf_cleanup(w);
    let mut mem = lock_memory_write(w);
    mem.enabled = false;
}

/// Driver unbind right after the last close (`vfio_unregister_device`):
/// waits for every registration, then the device is freed.
fn unregister_device(w: &World) {
    let mut n = w.dev.registrations.lock().expect("no poisoning");
    if *n > 0 {
        w.record(|books| {
            books.saw(Event::UnbindWaited);
            Ok(())
        });
    }
    while *n > 0 {
        n = w.dev.unregistered.wait(n).expect("no poisoning");
    }
    w.record(|books| {
        books.dev.freed = true;
        Ok(())
    });
}

/// Drops a reference to the device file (a closed fd, an ioctl that
/// returned); the last one closes the device, and the model then unbinds it.
pub(crate) fn device_file_put(w: &World) {
    if w.dev.file_refs.fetch_sub(1, Ordering::SeqCst) == 1 {
        close_device(w);
        unregister_device(w);
    }
}

/// `VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE` (spec §4.9). The caller holds the
/// buffer fd (a reference) and the device fd, so neither release nor
/// cleanup can run meanwhile.
pub(crate) fn feature_dma_buf_revoke(w: &World, buf: usize) -> Result<(), RevokeRefused> {
    // Lockless, best effort: the device fd is open, so cleanup cannot run.
    if !w.bufs[buf].vdev_set() {
        return Err(RevokeRefused::NoDev);
    }
    let mem = (w.bug != Bug::PermRevokeWithoutMemoryLock).then(|| lock_memory_write(w));
    if w.bufs[buf].status() == Status::PermRevoked {
        return Err(RevokeRefused::BadFd);
    }
    set_status(w, buf, Status::PermRevoked);
    if let Some(mem) = mem {
        restore_reachable_frames(w, &mem);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Importers (crates/dmabuf attach.rs).
// ---------------------------------------------------------------------------

/// `Attachment::map`: under `resv`, refused unless Ok.
pub(crate) fn map_attachment(w: &World, buf: usize, attachment: usize) -> bool {
    let b = &w.bufs[buf];
    let mut resv = b.resv.lock().expect("no poisoning");
    if w.bug != Bug::ImporterMapsWithoutStatusCheck && b.status() != Status::Ok {
        return false;
    }
    let a = &mut resv.attachments[attachment];
    a.mapped = true;
    a.invalidated = false;
    resv.importer_mappings += 1;
    let count = resv.importer_mappings;
    w.record(|books| {
        books.bufs[buf].importer_mappings = count;
        Ok(())
    });
    true
}

/// `ImporterMapping::unmap`: takes `resv`; a no-op if the invalidate
/// callback already unmapped.
pub(crate) fn unmap_attachment(w: &World, buf: usize, attachment: usize) {
    let mut resv = w.bufs[buf].resv.lock().expect("no poisoning");
    unmap_locked(w, buf, &mut resv, attachment);
}

/// Whether the importer was told to drop its mapping (read under `resv`).
pub(crate) fn invalidated(w: &World, buf: usize, attachment: usize) -> bool {
    w.bufs[buf].resv.lock().expect("no poisoning").attachments[attachment].invalidated
}
