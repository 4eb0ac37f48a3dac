//! What the VFIO-PCI files share (analogous to `vfio_pci_priv.h`): the
//! memory-lock guard and the state it protects, and BAR storage.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLockReadGuard, RwLockWriteGuard, Weak};

use dmabuf::DmaBuf;
use mm::PhysMemory;
use pci::{PciFunction, RegisterBar};

use crate::core::VfioPciDevice;

/// What `memory_lock` protects.
#[derive(Debug)]
pub(crate) struct MemoryState {
    /// The PCI function: virtual config space (COMMAND.MEMORY), power state.
    pub(crate) pci: PciFunction,
    /// `vdev->dmabufs`: every buffer exported from this device, explicit and
    /// per-mapping, by buffer id. Weak: the list never keeps a buffer alive
    /// (a dying buffer's release unlinks it).
    pub(crate) dmabufs: HashMap<u64, Weak<DmaBuf>>,
    /// Runtime PM: the user put the device in low power
    /// (`VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY*`); every fault SIGBUSes.
    pub(crate) pm_runtime_engaged: bool,
    /// The eventfd to signal when the device is woken while in low power.
    pub(crate) pm_wake_eventfd: Option<std::os::fd::OwnedFd>,
}

/// `memory_lock` held for write.
///
/// Buffers looked at under the lock are parked in `deferred` and dropped
/// only after the lock is released: dropping the last reference to a buffer
/// runs its release, which takes `memory_lock` itself.
///
/// Every release is a point where the device-wide invariants of spec §6.2
/// must hold; debug builds check them there
/// ([`crate::dmabuf::invariants::check_device`]).
pub(crate) struct MemoryWriteGuard<'a> {
    pub(crate) guard: Option<RwLockWriteGuard<'a, MemoryState>>,
    pub(crate) deferred: Vec<Arc<DmaBuf>>,
    /// The device whose lock this is.
    pub(crate) vdev: &'a VfioPciDevice,
}

impl<'a> MemoryWriteGuard<'a> {
    /// Wraps a freshly taken write guard of `vdev`'s `memory_lock`, recording
    /// this thread as its holder.
    pub(crate) fn new(guard: RwLockWriteGuard<'a, MemoryState>, vdev: &'a VfioPciDevice) -> Self {
        vdev.memory_lock_writer.store(this_thread(), Ordering::Relaxed);
        Self { guard: Some(guard), deferred: Vec::new(), vdev }
    }
}

/// A small number unique to the calling thread (never 0).
pub(crate) fn this_thread() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ME: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ME.with(|me| *me)
}

impl MemoryWriteGuard<'_> {
    /// Keeps `buf` alive until the lock is released.
    pub(crate) fn defer_drop(&mut self, buf: Arc<DmaBuf>) {
        self.deferred.push(buf);
    }
}

impl Deref for MemoryWriteGuard<'_> {
    type Target = MemoryState;
    fn deref(&self) -> &MemoryState {
        self.guard.as_ref().expect("guard held until drop")
    }
}

impl DerefMut for MemoryWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut MemoryState {
        self.guard.as_mut().expect("guard held until drop")
    }
}

impl Drop for MemoryWriteGuard<'_> {
    fn drop(&mut self) {
        self.vdev.memory_lock_writer.store(0, Ordering::Relaxed);
        // The buffers looked at by the check are dropped after the unlock,
        // like the deferred ones.
        let mut live = Vec::new();
        let mut broken = None;
        if cfg!(debug_assertions) && !std::thread::panicking() {
            if let Some(mem) = &self.guard {
                live = mem.dmabufs.values().filter_map(Weak::upgrade).collect();
                broken = crate::dmabuf::invariants::check_device(self.vdev, mem, &live).err();
            }
        }
        self.guard.take();
        drop(live);
        self.deferred.clear();
        if let Some(what) = broken {
            panic!("invariant broken at the release of memory_lock: {what}");
        }
    }
}

impl std::fmt::Debug for MemoryWriteGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryWriteGuard").field("deferred", &self.deferred.len()).finish()
    }
}

/// `memory_lock` held for read.
pub(crate) type MemoryReadGuard<'a> = RwLockReadGuard<'a, MemoryState>;

/// One BAR's storage, immutable after the device is created.
#[derive(Debug, Clone)]
pub(crate) enum BarStore {
    /// RAM: mappable memory in its own memfd.
    Ram(Arc<PhysMemory>),
    /// Registers served by a callback. They map like RAM, but the mapping
    /// shows `placeholder` (a memfd that is never read or written through
    /// it): every fault of a register page ends in SIGBUS and the access is
    /// emulated against `regs` (see `dmabuf::fault`).
    Registers {
        /// The device model's registers.
        regs: Arc<dyn RegisterBar>,
        /// What the VMA maps, page-rounded, at the BAR's physical address.
        placeholder: Arc<PhysMemory>,
    },
}

/// A BAR of the device.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    pub(crate) len: u64,
    pub(crate) store: BarStore,
}

impl Bar {
    /// What a mapping of this BAR maps: its RAM, or a register BAR's
    /// placeholder.
    pub(crate) fn memory(&self) -> &Arc<PhysMemory> {
        match &self.store {
            BarStore::Ram(m) | BarStore::Registers { placeholder: m, .. } => m,
        }
    }

    /// The registers of a register BAR.
    pub(crate) fn registers(&self) -> Option<&Arc<dyn RegisterBar>> {
        match &self.store {
            BarStore::Ram(_) => None,
            BarStore::Registers { regs, .. } => Some(regs),
        }
    }
}
