//! Registry of the buffer's CPU mappings, so a revoke can zap every one of them.
//!
//! The kernel finds a dma-buf's PTEs through its file's `address_space` and zaps them with
//! `unmap_mapping_range()`. Here the memory layer registers each mapping of the buffer
//! (its VMA) and the buffer calls it back, in the manner of gVisor's `memmap.MappingSet`
//! with `MappingSpace.Invalidate`.

use std::fmt;
use std::sync::{Arc, Weak};

use crate::buffer::lock;
use crate::DmaBuf;

/// One CPU mapping of a buffer, as registered by the memory layer.
pub trait CpuMapping: Send + Sync + fmt::Debug {
    /// Drop every page table entry of the mapping (and any poison marker a SIGBUS left),
    /// so that the next access faults again. Analogous to `unmap_mapping_range()` over the
    /// mapping.
    ///
    /// Called with no lock of this crate held; the caller of [`DmaBuf::set_status`] may
    /// still hold its own serialising lock, so a zap must not take that lock.
    fn zap(&self);

    /// Starts a zap and returns what is left to wait for, so that a buffer with many
    /// mappings waits for all of them together: a mapping whose zap is a message to
    /// another process and its answer costs one round trip for the lot instead of one
    /// each. The zap is complete only once the returned [`PendingZap`] is finished. The
    /// default does the whole zap here and leaves nothing to wait for.
    fn start_zap(&self) -> Option<Box<dyn PendingZap + '_>> {
        self.zap();
        None
    }

    /// Whether the mapping may hold page table entries: a page was mapped since its last
    /// zap. Used to check that a revoked buffer has none (spec §6.2 invariant 3). The
    /// default, for mappings that cannot tell, is `false`.
    fn has_entries(&self) -> bool {
        false
    }
}

/// The second half of a zap begun by [`CpuMapping::start_zap`].
pub trait PendingZap {
    /// Waits until the mapping has no page table entry left.
    fn finish(self: Box<Self>);
}

impl DmaBuf {
    /// Records a CPU mapping of this buffer. The buffer holds it weakly: a mapping that
    /// goes away needs no unregistration, its entry is pruned later.
    pub fn register_cpu_mapping(&self, mapping: Weak<dyn CpuMapping>) {
        let mut mappings = lock(&self.cpu_mappings);
        // Prune only when the vector would otherwise grow, which keeps registration
        // amortised O(1) however many dead entries accumulate.
        if mappings.len() == mappings.capacity() {
            mappings.retain(|m| m.strong_count() > 0);
        }
        mappings.push(mapping);
    }

    /// Zaps every live CPU mapping of the buffer; returns how many were zapped.
    ///
    /// The zaps run after the registry lock is released. A mapping registered while this
    /// runs may be missed, which is harmless: a new mapping has no page table entries yet
    /// and its faults check the status. Every zap is started before any is waited for
    /// ([`CpuMapping::start_zap`]); all have finished when this returns.
    pub fn zap_cpu_mappings(&self) -> usize {
        let live: Vec<Arc<dyn CpuMapping>> = {
            let mut mappings = lock(&self.cpu_mappings);
            mappings.retain(|m| m.strong_count() > 0);
            mappings.iter().filter_map(Weak::upgrade).collect()
        };
        let pending: Vec<Box<dyn PendingZap + '_>> = live.iter().filter_map(|m| m.start_zap()).collect();
        for zap in pending {
            zap.finish();
        }
        live.len()
    }

    /// Number of live registered CPU mappings that may hold page table entries (see
    /// [`CpuMapping::has_entries`]).
    #[must_use]
    pub fn cpu_mappings_with_entries(&self) -> usize {
        let live: Vec<Arc<dyn CpuMapping>> = lock(&self.cpu_mappings).iter().filter_map(Weak::upgrade).collect();
        live.iter().filter(|m| m.has_entries()).count()
    }

    /// Number of live registered CPU mappings.
    #[must_use]
    pub fn cpu_mappings(&self) -> usize {
        lock(&self.cpu_mappings).iter().filter(|m| m.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::test_support::{export_ok, ZapCounter};

    #[test]
    fn registration_prunes_dead_entries_before_growing() {
        let buf = export_ok();
        let keep = Arc::new(ZapCounter::default());
        let weak_keep: Weak<dyn CpuMapping> = Arc::<ZapCounter>::downgrade(&keep);
        buf.register_cpu_mapping(weak_keep);
        for _ in 0..100 {
            let temporary = Arc::new(ZapCounter::default());
            let weak: Weak<dyn CpuMapping> = Arc::<ZapCounter>::downgrade(&temporary);
            buf.register_cpu_mapping(weak);
        }
        // 101 registered, 100 dead: pruning at each full capacity keeps the list short.
        let stored = lock(&buf.cpu_mappings).len();
        assert!(stored < 101, "stored {stored}");
        assert_eq!(buf.cpu_mappings(), 1);
    }

    #[test]
    fn zap_reaches_only_live_mappings_and_drops_dead_entries() {
        let buf = export_ok();
        let live = Arc::new(ZapCounter::default());
        let dead = Arc::new(ZapCounter::default());
        let dead_zaps = Arc::clone(&dead.zaps);
        buf.register_cpu_mapping(Arc::<ZapCounter>::downgrade(&live) as Weak<dyn CpuMapping>);
        buf.register_cpu_mapping(Arc::<ZapCounter>::downgrade(&dead) as Weak<dyn CpuMapping>);
        drop(dead);
        assert_eq!(buf.cpu_mappings(), 1);

        assert_eq!(buf.zap_cpu_mappings(), 1);
        assert_eq!(live.zaps.load(Ordering::SeqCst), 1);
        assert_eq!(dead_zaps.load(Ordering::SeqCst), 0);
        assert_eq!(lock(&buf.cpu_mappings).len(), 1);
    }

    #[test]
    fn every_zap_starts_before_any_is_waited_for() {
        /// Logs its start and its finish in a shared journal.
        #[derive(Debug)]
        struct TwoPhase {
            id: usize,
            journal: Arc<std::sync::Mutex<Vec<(char, usize)>>>,
        }
        struct Waiting<'a>(&'a TwoPhase);
        impl PendingZap for Waiting<'_> {
            fn finish(self: Box<Self>) {
                self.0.journal.lock().unwrap().push(('f', self.0.id));
            }
        }
        impl CpuMapping for TwoPhase {
            fn zap(&self) {
                unreachable!("zapped through start_zap");
            }
            fn start_zap(&self) -> Option<Box<dyn PendingZap + '_>> {
                self.journal.lock().unwrap().push(('s', self.id));
                Some(Box::new(Waiting(self)))
            }
        }
        let buf = export_ok();
        let journal = Arc::new(std::sync::Mutex::new(Vec::new()));
        let maps: Vec<Arc<TwoPhase>> =
            (0..3).map(|id| Arc::new(TwoPhase { id, journal: Arc::clone(&journal) })).collect();
        for m in &maps {
            buf.register_cpu_mapping(Arc::<TwoPhase>::downgrade(m) as Weak<dyn CpuMapping>);
        }
        assert_eq!(buf.zap_cpu_mappings(), 3);
        let journal = journal.lock().unwrap();
        let phases: String = journal.iter().map(|(p, _)| *p).collect();
        assert_eq!(phases, "sssfff", "{journal:?}");
        let mut finished: Vec<usize> = journal.iter().filter(|(p, _)| *p == 'f').map(|(_, id)| *id).collect();
        finished.sort_unstable();
        assert_eq!(finished, [0, 1, 2]);
    }

    #[test]
    fn zap_runs_without_the_registry_lock() {
        /// Registers another mapping from inside its zap: deadlocks if the lock is held.
        #[derive(Debug)]
        struct Reentrant {
            buf: Arc<DmaBuf>,
            zaps: AtomicUsize,
        }
        impl CpuMapping for Reentrant {
            fn zap(&self) {
                self.zaps.fetch_add(1, Ordering::SeqCst);
                self.buf.register_cpu_mapping(Weak::<ZapCounter>::new());
            }
        }
        let buf = export_ok();
        let mapping = Arc::new(Reentrant { buf: Arc::clone(&buf), zaps: AtomicUsize::new(0) });
        buf.register_cpu_mapping(Arc::<Reentrant>::downgrade(&mapping) as Weak<dyn CpuMapping>);
        assert_eq!(buf.zap_cpu_mappings(), 1);
        assert_eq!(mapping.zaps.load(Ordering::SeqCst), 1);
    }
}
