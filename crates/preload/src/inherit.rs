//! Mappings a `fork` child inherits, made to follow revocation.
//!
//! `fork` copies our mappings into the child as plain shared mappings of
//! the BAR memfds: the child's copies lose their userfaultfd registration
//! (we do not ask for `UFFD_FEATURE_EVENT_FORK`), and no revoke would reach
//! them. So the `pthread_atfork` child handler, which runs in the child's
//! only thread before `fork` returns there, takes them over before the
//! program can touch them:
//!
//! 1. the child's generation gets its address space (new userfaultfd, new
//!    fault thread) and its notify connection;
//! 2. for each mapping of the parent's generation, a new local state
//!    (`allowed == false`) and fault operations over the same buffer
//!    ranges; each VMA is adopted: its pages are zapped and the range is
//!    registered with the child's userfaultfd, so every first touch faults
//!    into the child's engine;
//! 3. `Request::Inherit{parent, mapping}` gives the child a registration of
//!    its own on the buffer; the server notifies the child of the status
//!    before it answers, so when `fork` returns the child maps exactly what
//!    the buffer allows, and later revokes and un-revokes reach it.
//!
//! Register mappings need nothing more: the trap table is process memory
//! (copied), and their accesses name the mapping id, which the child keeps.
//! A mapping the server would not register for the child stays disallowed:
//! its accesses are SIGBUS, never a stale view.
//!
//! # Locks
//!
//! A thread of the parent that held the parent's mapping table or VMA
//! table at the moment of the fork would leave it locked in the child; the
//! `prepare` handler therefore takes them (in the forking thread) and the
//! parent and child handlers release them. Order: `Process::mappings` →
//! `mmap_lock` (write) → the VMA table (`AddressSpace::lock_for_fork`) →
//! the C library's fork locks. Nothing holds `mappings` while it waits for
//! the others, so this order is consistent with every other path.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, MutexGuard};

use mm::{MapRequest, MappingId};
use page::{PgOff, VirtAddr, PAGE_SIZE};
use wire::Request;

use crate::process::Process;
use crate::vma::{ClientMapping, ClientVma, Placed};

/// What the forking thread holds across `fork`.
struct Held {
    mappings: MutexGuard<'static, HashMap<u64, Arc<ClientMapping>>>,
    vmas: Option<mm::ForkGuard<'static>>,
}

thread_local! {
    /// The parent generation's tables, held across `fork` by the forking
    /// thread.
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// `pthread_atfork` prepare: holds the tables of `p` across the fork.
pub(crate) fn before_fork(p: &'static Process) {
    let mappings = p.mappings();
    let vmas = p.aspace_if_made().map(mm::AddressSpace::lock_for_fork);
    HELD.with(|h| *h.borrow_mut() = Some(Held { mappings, vmas }));
}

/// `pthread_atfork` parent: the fork is done.
pub(crate) fn after_fork_in_parent() {
    HELD.with(|h| drop(h.borrow_mut().take()));
}

/// The parent's mappings and VMAs as the child found them, read from the
/// tables the prepare handler held (or locked now, when none ran).
fn parent_tables(parent: &'static Process) -> (HashMap<u64, Arc<ClientMapping>>, Vec<mm::VmaInfo>) {
    let held = HELD.with(|h| h.borrow_mut().take());
    match held {
        Some(Held { mappings, vmas }) => (mappings.clone(), vmas.map(|g| g.vmas()).unwrap_or_default()),
        None => (parent.mappings().clone(), parent.aspace_if_made().map(|a| a.vmas()).unwrap_or_default()),
    }
}

/// In the child, after its generation started: takes over every mapping
/// of the parent's generation `parent` (see the module doc).
pub(crate) fn inherit(parent: &'static Process, child: &'static Process) {
    let (mappings, parent_vmas) = parent_tables(parent);
    let mut vmas: BTreeMap<u64, Vec<mm::VmaInfo>> = BTreeMap::new();
    for v in parent_vmas {
        vmas.entry(v.mapping.0).or_default().push(v);
    }
    if vmas.is_empty() {
        return;
    }
    if let Err(e) = child.ensure_notify() {
        tracing::error!(%e, "fork child: no notify connection; inherited mappings stay revoked");
    }
    let aspace = match child.aspace() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(%e, "fork child: no address space; inherited mappings are not served");
            return;
        }
    };
    aspace.skip_mapping_ids(vmas.keys().max().map_or(0, |&id| id + 1));
    for (id, vmas) in vmas {
        let Some(placed) = mappings.get(&id).and_then(|m| m.placed.get()) else { continue };
        let mapping = Arc::new(ClientMapping::new(id));
        let ops = Arc::new(ClientVma {
            mapping: mapping.clone(),
            ranges: placed.ops.ranges.clone(),
            vma_pgoff_adjust: placed.ops.vma_pgoff_adjust,
            traps: placed.ops.traps,
        });
        let _ = mapping.placed.set(Placed { ops: ops.clone(), ..placed.clone() });
        child.mappings().insert(id, mapping);
        for v in &vmas {
            let first = v.vm_pgoff.wrapping_sub(placed.vm_pgoff);
            let req = MapRequest {
                mapping: MappingId(id),
                len: v.vm_end - v.vm_start,
                vm_pgoff: PgOff(v.vm_pgoff),
                writable: v.writable,
                pieces: placed.slice(first, v.vm_end - v.vm_start),
                ops: ops.clone(),
                path: v.path.clone(),
                inode: v.inode,
                addr: Some(VirtAddr(v.vm_start)),
                mmio: placed.mmio.clone(),
            };
            if let Err(e) = aspace.adopt(req) {
                tracing::error!(mapping = id, %e, "fork child cannot take over an inherited mapping");
            }
        }
        match child.call_ok(&Request::Inherit { parent: parent.token, mapping: id }, &[]) {
            Ok(()) => {
                // Where the mapping's first page is (or would be).
                let v = &vmas[0];
                let first = v.vm_pgoff.wrapping_sub(placed.vm_pgoff);
                crate::maps::report_placed(child, id, v.vm_start.wrapping_sub(first.wrapping_mul(PAGE_SIZE)));
            }
            Err(e) => tracing::error!(mapping = id, %e, "the server refused an inherited mapping; it stays revoked"),
        }
    }
}
