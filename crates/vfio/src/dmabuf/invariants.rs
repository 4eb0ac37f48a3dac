//! Checkers of the invariants of spec §6.2 (and the status rules of §4.7,
//! §4.8) over the real state of a device and its buffers.
//!
//! Each returns `true` when its invariant holds. Debug builds assert them
//! where they must hold: [`super::set_status`] checks the buffer it moved,
//! cleanup the buffers it severed, the fault path the buffer it serves, and
//! every release of `memory_lock` (write) the whole device
//! ([`check_device`]). The unit tests break each one on purpose.
//!
//! | spec §6.2 | checker |
//! |---|---|
//! | 1. status changes under `memory_lock` (write) and resv | [`check_status_writer`]; resv: `DmaBuf::set_status` writes only under it; the lock: the guard parameter |
//! | 2. status Ok ⇒ `vdev` set | [`check_ok_implies_vdev`] |
//! | 3. no PTE of a revoked buffer | [`check_no_cpu_entries`] |
//! | 4. a revoke returns with no importer mapping | [`check_no_importer_mappings`] |
//! | 5, 6. listed ⇔ attached, and one unlinker | [`check_buffer_listed`], [`check_listed_buffers_point_back`] |
//! | §4.7 `PermRevoked` is terminal | [`check_perm_revoked_absorbing`] |
//! | §4.8 memory decoding off ⇒ every buffer revoked | [`check_status_follows_memory`] |

use std::sync::Arc;

use dmabuf::{DmaBuf, Status};

use super::VfioDmaBuf;
use crate::core::VfioPciDevice;
use crate::private::{MemoryState, MemoryWriteGuard};

/// Invariant 1, the part the guard parameter cannot prove: the
/// `memory_lock` held while `buf`'s status changes is that of `buf`'s own
/// device (a severed buffer is never moved again, so any lock will do).
pub(crate) fn check_status_writer(mem: &MemoryWriteGuard<'_>, buf: &DmaBuf) -> bool {
    VfioDmaBuf::of(buf).is_none_or(|dma_buf| dma_buf.belongs_to(mem.vdev) != Some(false))
}

/// Invariant 2: a buffer whose status is Ok has not been severed from its
/// device (cleanup revokes before it severs).
pub(crate) fn check_ok_implies_vdev(buf: &DmaBuf) -> bool {
    buf.status() != Status::Ok || VfioDmaBuf::of(buf).is_none_or(|p| p.belongs_to_any())
}

/// Invariant 3: a revoked buffer has no CPU mapping that may hold page table
/// entries. A revoke zaps every mapping with `memory_lock` (write) held, and
/// faults map pages only under `memory_lock` (read) after seeing Ok, so this
/// holds whenever `memory_lock` is held for write.
pub(crate) fn check_no_cpu_entries(buf: &DmaBuf) -> bool {
    buf.status() == Status::Ok || buf.cpu_mappings_with_entries() == 0
}

/// Invariant 4: a revoked buffer has no importer mapping. Holds once a
/// revoke has returned successfully; a revoke whose bounded wait expired
/// returned `ETIMEDOUT` and leaves the late importer's mappings counted.
/// Takes `resv`.
pub(crate) fn check_no_importer_mappings(buf: &DmaBuf) -> bool {
    buf.status() == Status::Ok || buf.importer_mappings() == 0
}

/// Invariants 5 and 6, buffer side: a buffer still attached to its device
/// (here: one the fault path or export has just seen attached) is on the
/// device's list, so cleanup will find it.
///
/// Preconditions: `mem` is the state of the device `buf` is attached to,
/// read under its `memory_lock`.
pub(crate) fn check_buffer_listed(mem: &MemoryState, buf: &DmaBuf) -> bool {
    mem.dmabufs.contains_key(&buf.id())
}

/// Invariant 6, device side: every live buffer on `vdev`'s list points back
/// at `vdev`, so cleanup and release agree on who unlinks it.
pub(crate) fn check_listed_buffers_point_back(vdev: &VfioPciDevice, live: &[Arc<DmaBuf>]) -> bool {
    live.iter().all(|b| VfioDmaBuf::of(b).is_some_and(|p| p.belongs_to(vdev) == Some(true)))
}

/// Spec §4.8: while memory decoding is off (COMMAND.MEMORY clear, D3hot, a
/// reset that left it off), no buffer of the device is Ok: every event that
/// turns decoding off revokes first, and export starts buffers revoked.
pub(crate) fn check_status_follows_memory(mem: &MemoryState, live: &[Arc<DmaBuf>]) -> bool {
    mem.pci.memory_enabled() || live.iter().all(|b| b.status() != Status::Ok)
}

/// Spec §4.7: `PermRevoked` is terminal. `before` is the status `buf` had
/// before a transition made under `memory_lock` (write).
pub(crate) fn check_perm_revoked_absorbing(before: Status, buf: &DmaBuf) -> bool {
    before != Status::PermRevoked || buf.status() == Status::PermRevoked
}

/// Every device-wide invariant, as it must hold whenever `memory_lock` is
/// released for write: `live` are the live buffers of `mem.dmabufs`.
///
/// # Errors
///
/// The first invariant that fails, in words.
pub(crate) fn check_device(vdev: &VfioPciDevice, mem: &MemoryState, live: &[Arc<DmaBuf>]) -> Result<(), String> {
    if !check_listed_buffers_point_back(vdev, live) {
        return Err(format!("{}: a listed buffer belongs elsewhere (spec §6.2 invariant 6)", vdev.cdev_name()));
    }
    if !check_status_follows_memory(mem, live) {
        return Err(format!("{}: a buffer is Ok while memory decoding is off (spec §4.8)", vdev.cdev_name()));
    }
    if let Some(b) = live.iter().find(|b| !check_no_cpu_entries(b)) {
        return Err(format!("buffer {} is revoked but keeps page table entries (spec §6.2 invariant 3)", b.id()));
    }
    Ok(())
}

impl VfioDmaBuf {
    /// Whether the buffer is attached to `vdev`; `None` once severed.
    /// Compares without taking a reference, so it is safe under any lock.
    pub(crate) fn belongs_to(&self, vdev: &VfioPciDevice) -> Option<bool> {
        self.vdev.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|v| std::ptr::eq(Arc::as_ptr(v), vdev))
    }

    /// Whether the buffer is attached to some device.
    fn belongs_to_any(&self) -> bool {
        self.vdev.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

#[cfg(test)]
mod tests;
