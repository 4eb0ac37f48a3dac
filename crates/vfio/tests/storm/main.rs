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
//! # Register pages
//!
//! BAR0 is the storm's own register file ([`RegModel`]): every access
//! through a register mapping traps and is emulated against it, under the
//! buffer's status and `memory_lock` checks. Mappings: a stable device-fd
//! mapping and a stable buffer (four pages each), and churn slots the
//! exporter fills with new four-page buffers every fifth cycle, each over
//! BAR0 pages never used before (so a page belongs to one buffer forever).
//! Accessors spend two rounds in seven reading, writing and reading
//! back their own word of a register page, with the slot held; the revoker
//! permanently revokes a register buffer two cycles in ten, after drawing
//! the accessors to it; every revoke of the drivers above applies too.
//! Each access is judged by the accessor exactly as a RAM access (epochs,
//! the `perm` flag) and, which is what makes the count exact, by the model
//! itself on arrival, under `memory_lock`: an arrival with `seq` odd, on a
//! page whose buffer's permanent revoke has returned, or while that
//! buffer's status is not `Ok` is a violation (the revoking calls hold
//! `memory_lock` for write, so an arrival cannot straddle one). After the
//! storm the model's count of arrivals from register rounds must equal the
//! accessors' count of successes, and for every word the writes that
//! arrived and the last value must equal the accessor's acknowledged
//! writes and last value: nothing landed that returned SIGBUS, nothing
//! that returned success was lost. One access in eight holds `memory_lock`
//! a little longer (a slow register), so revokes queue behind it while
//! other accesses wait between their two status checks. The epilogue reads
//! every register word back after each event, and a permanently revoked
//! register buffer must raise SIGBUS throughout.
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

#[path = "../common/mod.rs"]
mod common;

mod accessor;
mod drivers;
mod harness;
mod importer;
mod regs;
mod state;

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use dmabuf::{AttachmentRef, DmaBuf, DmaBufFd, Importer, ResvGuard};
use mm::probe::{self, AccessFault};
use mm::AddressSpace;
use rustix::io::Errno;
use vfio::{hot_reset, mmap_dmabuf, DeviceFd, MmapArgs, VfioDmaBuf, VfioPciDevice};

use accessor::*;
use common::{HeldMappings, ProcessState, BAR1, BAR1_LEN, PAGE, RDWR};
use drivers::*;
use harness::*;
use importer::*;
use regs::*;
use state::*;

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

// ---------------------------------------------------------------------------
// The test

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
    assert_eq!(
        storm.aspace.vmas().len(),
        10,
        "five stable RAM mappings, three of them split in two, and two register mappings"
    );
    assert!(ProcessState::now().bar_maps_lines() > before.bar_maps_lines());
    // Fault the huge mapping in once: the first 2 MiB at order 9, mapped by
    // one PMD; the storm then revokes and re-faults it, PMD and all.
    let huge = storm.slots[0].read().as_ref().unwrap().va;
    probe::touch_pages(huge, 2 << 20).unwrap();
    let s = storm.aspace.fault_stats();
    assert!(s.order9 > 0 && s.pmd_mapped > 0, "{s:?}");
    let pmd = storm.aspace.pmd_mapped().unwrap();
    assert!(pmd.iter().any(|e| e.start == huge && e.shmem_pmd_mapped == 2 << 20), "{pmd:?}");

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

    let reg_words = check_registers(&storm);
    let reg_landed = storm.regs.landed.load(SeqCst);
    let reg_racing = storm.regs.landed_racing.load(SeqCst);
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
         registers: accesses {} (successes {}, SIGBUS {}, of which in revoke windows {} of {} judged \
         there, after a permanent revoke {}); reached the device {reg_landed} (+{reg_racing} racy RAM reads \
         of a reused address; while revoked 0); register buffers exported {}, permanently revoked {}; \
         words balanced {reg_words}\n\
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
        c.get(C::RegAccesses),
        c.get(C::RegSuccesses),
        c.get(C::RegSigbus),
        c.get(C::RegWindowSigbus),
        c.get(C::RegWindowAccesses),
        c.get(C::RegPermSigbus),
        c.get(C::RegExports),
        c.get(C::RegPermRevokes),
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
    assert!(stats.order9 > 1 && stats.pmd_mapped > 1 && stats.sigbus > 0, "{stats:?}");
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

    // Register pages met every outcome: emulated, refused in a window,
    // refused after a permanent revoke.
    for n in [C::RegSuccesses, C::RegWindowSigbus, C::RegPermSigbus, C::RegExports, C::RegPermRevokes] {
        assert!(c.get(n) > 0, "no {n:?}: {}", c.summary());
    }

    // Leaks: unmap and close everything, then drop the storm.
    assert_no_importer_left(&storm, "before the teardown");
    tear_down(&storm);
    assert!(storm.aspace.vmas().is_empty(), "{:#?}", storm.aspace.vmas());
    assert_eq!(ProcessState::now().bar_maps_lines(), before.bar_maps_lines(), "a BAR memfd is still mapped");
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
    // Other maps lines may change: the C library keeps the stacks and malloc
    // arenas of joined threads for reuse.
    assert_eq!(after.fd_targets, before.fd_targets, "leaked descriptors");
    assert_eq!(after.threads, before.threads, "leaked threads");
    assert_eq!(after.bar_maps_lines(), before.bar_maps_lines(), "leaked BAR mappings");
    eprintln!(
        "storm: total {:.2?}; before and after: {} fds, {} threads, {} vfio maps lines",
        started.elapsed(),
        before.nr_fds(),
        before.threads,
        before.bar_maps_lines()
    );
}
