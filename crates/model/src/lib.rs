//! A concurrency model of vfio-dmabuf's revocation protocol, checked with
//! [shuttle](https://docs.rs/shuttle) (STYLE §6.7; spec §4.6–§4.9, §6).
//!
//! The protocol spans four objects and three locks: a CPU fault checks a
//! buffer's status under its `resv`, pins the device, drops `resv`, and
//! re-checks under the device's `memory_lock`; a revoke takes `memory_lock`
//! for write, then per buffer `resv`, publishes the status, invalidates
//! importers, waits for them and zaps the page tables; device close revokes
//! and then severs each buffer from the device; a dying buffer's release
//! unlinks it unless cleanup did. This crate restates those steps as small
//! functions over shuttle locks, runs them as concurrent actors under
//! shuttle's scheduler, and judges every step against the invariants of
//! spec §6.2.
//!
//! It is **not** the real code: it does not call `crates/vfio`,
//! `crates/dmabuf` or `crates/mm`, and it cannot prove that they follow it.
//! It shows that the *protocol* they implement is sound at this level of
//! detail, and that each lock and ordering in it is load-bearing. Each
//! modelled function names the real one it restates (in [`mod@check`] and
//! the private `protocol` module):
//!
//! | model | real code |
//! |---|---|
//! | `huge_fault`, `cpu_access` | `vfio` `BarVma::huge_fault`; `mm` `handle_fault` (`mmap_lock` read across the fault) |
//! | `set_status`, `revoke`, `unrevoke` | `dmabuf` `DmaBuf::set_status` and its full revoke; `vfio` `dmabuf::set_status` |
//! | `dma_buf_move`, `revoke_bars`, `unrevoke_bars` | `vfio` `dma_buf_move`, `VfioPciDevice::{revoke_bars, unrevoke_bars}` |
//! | `config_write_memory`, `reset` | `vfio` `config_write` (COMMAND.MEMORY), `VfioPciDevice::reset` |
//! | `dma_buf_cleanup`, `close_device` | `vfio` `dma_buf_cleanup`, `VfioPciDevice::close_device` |
//! | `release`, `get_file_active` | `vfio` `VfioDmaBuf::release`; `Weak::upgrade` of the device's list |
//! | `feature_dma_buf_revoke` | `vfio` `feature_dma_buf_revoke` |
//! | `map_attachment`, `unmap_attachment` | `dmabuf` `Attachment::map`, `ImporterMapping::unmap` |
//! | `zap` | `mm` `MappingHandle::zap` (VMA-table lock, not `mmap_lock`) |
//! | `insert_pfn`, `insert_pfn_pmd` | `mm` `VmFault` inserts: `UFFDIO_CONTINUE` of a page; `MADV_COLLAPSE` of an aligned 2 MiB (one PMD), falling back to the page's PTE |
//! | `munmap_page1` | `mm` munmap inside a PMD-mapped 2 MiB: the whole PMD is dropped, the rest faults back with PTEs |
//! | `notify_process`, `answer_notifications` | `server` `Process` notification and bounded ack wait; the client library's notify thread (zap, ack) |
//! | `cut_off`, `restore` (private `process` module) | `server` `backstop::cut_off`; `mm` `PhysMemory::{cut_off, restore}` (frame truncation and snapshot) |
//! | `restore_reachable_frames`, `restore_frames_to_unrevoke` | `vfio` `reconcile.rs` (after a permanent revoke; before an un-revoke pass) |
//! | `process_access` | a client thread's access and its library's fault (status slot, insert, re-check of the slot) |
//!
//! # Why shuttle, not loom
//!
//! The interesting races need four to eight actors at once (two faults, an
//! importer, a memory toggle, a reset, a permanent revoke, a release and a
//! close). Loom explores every interleaving, which is exact but grows
//! beyond reach past about three threads with this many lock operations.
//! Shuttle samples schedules with the PCT scheduler (Burckhardt et al.,
//! ASPLOS 2010), which finds any bug that needs `d - 1` particular
//! preemptions with a probability bounded below, runs thousands of
//! executions per second, and reports deadlocks itself. The price is that a
//! pass is evidence, not proof; the bug switches ([`Bug`]) measure how good
//! the evidence is: run with each of 50 seeds, every harmful switch was
//! caught with every seed, both in the scenario its test uses and in
//! [`Scenario::Everything`], within at most 294 executions (151 in the
//! scenarios the tests use), while the default test run gives the correct
//! protocol 2,000 executions per scenario. The switches of the PMD path and
//! of the cut-off ([`Bug::needs_own_scenario`]) are measured in their own
//! scenarios only, which have what [`Scenario::Everything`] lacks (two
//! pages, a second process), and with the tests' four seeds. Fixed seeds make every run
//! repeatable.
//!
//! # Invariants
//!
//! Each is a `check_*` function in [`mod@check`] (STYLE §3.7), evaluated
//! after every recorded step, plus a final check once all actors joined:
//!
//! 1. No PTE or PMD entry is present for a buffer after a revoke of it
//!    returned and before the next un-revoke began, in the primary or in
//!    the second process, responsive or not (its one exemption is the
//!    documented hole of `docs/clients.md`: between its fault's insert and
//!    that fault's re-check of the status slot).
//!    ([`check::check_no_pte_while_revoked`])
//! 2. `vdev` is used only through a live registration: a fault pins the
//!    device before it drops `resv`, nothing uses the device after unbind
//!    freed it, a buffer is severed only after it was revoked, and an Ok
//!    buffer still has its device. ([`check::check_vdev_use`],
//!    [`check::check_sever`], [`check::check_ok_implies_vdev`],
//!    [`check::check_registration_put`])
//! 3. Exactly one of cleanup and release unlinks a buffer, and neither
//!    touches a freed one. ([`check::check_unlink`],
//!    [`check::check_unlinked_once`], [`check::check_not_freed`])
//! 4. `PermRevoked` is absorbing. ([`check::check_perm_revoked_absorbing`])
//! 5. A revoke returns only after every importer mapping is unmapped, and no
//!    importer maps until the next un-revoke. ([`check::check_importers_drained`])
//! 6. No poison marker survives an un-revoke: from its return until the next
//!    revoke, the Ok buffer's page is never poisoned, so a fault is served.
//!    ([`check::check_no_poison_after_unrevoke`])
//! 7. No Ok buffer meets a cut frame: when the pass (`memory_lock` write
//!    hold) that cut a frame off ends, no live Ok buffer reaches it, so a
//!    legitimate access never finds its frame truncated once the revoke,
//!    un-revoke or export returned. ([`check::check_no_cut_frame_for_ok`])
//!
//! And no deadlock: shuttle fails an execution in which every thread is
//! blocked.
//!
//! Invariants 1, 5 and 6 are judged over *windows*: the revoked window opens
//! when a revoke returns and closes when an un-revoke publishes Ok; the
//! clean window opens when an un-revoke returns and closes when a revoke
//! publishes. [`Event`] counts show that the racy situations are reached
//! (faults refused by the re-check, poison cleared by un-revoke, a fault's
//! pin outliving cleanup's sever, both cleanup and release unlinking, ...),
//! so the invariants are not passed vacuously.
//!
//! # Lock order in the model
//!
//! ```text
//! memory_lock (write)            revoke, un-revoke, reset, cleanup, release, permanent revoke
//!   resv (per buffer)            status writes, importer list and count, sever
//!     registrations              cleanup's put
//!   vmas                         zap
//!   notify (second process)      the notification and the bounded ack wait
//!   frame                        cut-off and restore (truncation zaps all
//!                                processes' entries of the frame)
//! mmap_lock (read)               one fault, end to end
//!   vmas                         VMA lookup, released at once
//!   resv                         fault steps 2-3
//!     registrations              the fault's pin
//!   memory_lock (read)           fault step 5, after resv is dropped
//! mmap_lock (write)              a partial munmap
//!   vmas                         dropping the PMD and the unmapped page
//! ptl (second process)           its fault's insert and re-check, its
//!                                notify thread's zap; a leaf
//! ```
//!
//! # Assumptions and what is abstracted away
//!
//! - One device, one or two explicit buffers, each one aligned 2 MiB of
//!   two pages. Each page's entry is explicit: none, present, or a poison
//!   marker, plus one PMD entry per buffer that maps both pages. A huge
//!   fault ([`Scenario::Huge`]) installs the PMD under the same checks as a
//!   PTE when the 2 MiB is unsplit and has no entry, else the page's PTE; a
//!   munmap of page 1 drops the PMD and splits the 2 MiB for good. The
//!   older scenarios touch page 0 with 4 KiB faults only. `find_pfn`, PUDs
//!   and fault-around are not modelled.
//! - The second process ([`Scenario::SilentProcess`],
//!   [`Scenario::AnsweringProcess`]) maps buffer 0's page 0; every buffer
//!   lies in one frame, so a cut-off for buffer 0 also zaps the primary's
//!   entries of buffer 1, which stays Ok and gets the frame back. The ack
//!   bound is two scheduling points of the revoking thread. Its fault path
//!   is its library's (status slot, `UFFDIO_CONTINUE`, re-check), not the
//!   server's; exports, and so the restore for a newly exported buffer, are
//!   not modelled. An access through an Ok buffer that meets the frame cut
//!   *during* the pass that cut it (the kernel's end-of-file SIGBUS, before
//!   the pass restores it) is counted ([`Event::OkAccessMetCutFrameInPass`]),
//!   not judged: the real protocol has that window too.
//! - A user access and the fault thread serving it are one actor, which
//!   retries at most three times. Faults run concurrently with each other
//!   (the kernel allows that; `crates/mm` serialises them on one thread per
//!   address space, a subset of the modelled schedules).
//! - A buffer's status and `vdev` words are `SeqCst` atomics that shuttle does
//!   not interleave; the model, like the real code, relies on the locks
//!   around their writes. Of the lockless reads, only the permanent-revoke
//!   feature's `vdev` test is modelled (the buffer fd's early `ENODEV` check
//!   at mmap is not).
//! - The registration is a counter. The device is unbound and freed right
//!   after its last close, once the count reaches zero: the worst case for
//!   `vdev`'s lifetime.
//! - An ioctl in flight holds a reference to the device file, so the last
//!   close (`close_device`) runs only after every ioctl returned, as `fdget`
//!   ensures in Linux. Faults, importers and releases race the close.
//! - Importers are revocable and unmap within a bounded number of steps,
//!   from their own thread or inside the invalidate callback. No fences
//!   (nothing to wait for under `resv`) and no bound on the importer wait:
//!   `crates/dmabuf`'s optional revoke timeout deliberately relaxes
//!   invariant 5 and is outside the model.
//! - Device-fd (per-mapping) buffers are not modelled separately: they
//!   differ from explicit ones only in owning the device file, which delays
//!   the close and is covered by the file references above.
//! - Not modelled: export (its initial status is decided under
//!   `memory_lock`), mmap, munmap other than the split above, fork, hot reset's
//!   try-lock, power states other than "memory enabled", the memory
//!   attribute feature, several devices.
//! - The books ([`check::Books`]) sit in a std mutex that is never held
//!   across a shuttle operation, so a step and its record are atomic.
//!
//! # Running
//!
//! `cargo test -p model` runs the standard budget ([`Budget::standard`]:
//! 4 seeds × 500 executions per scenario at PCT depth 3) in about ten
//! seconds. `cargo test -p model --release --features long` runs 16 seeds ×
//! 5,000. `cargo run --release -p model --example survey` prints, for every
//! switch and scenario, what is found and after how many executions. A
//! failure of the correct protocol prints shuttle's schedule, which
//! `shuttle::replay` replays.
#![forbid(unsafe_code)]

mod bug;
pub mod check;
mod explore;
mod process;
mod protocol;
mod scenario;
mod world;

pub use crate::bug::Bug;
pub use crate::check::{Event, Invariant, Violation};
pub use crate::explore::{explore, Budget, Counterexample, Exploration};
pub use crate::scenario::Scenario;
