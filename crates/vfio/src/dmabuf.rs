//! The VFIO side of DMA-buffers: the exporter's private object, the common
//! export helper, the per-mapping buffer of a device-fd mmap, the status
//! transitions of every buffer of a device, cleanup on close, and the revoke
//! and memory-attribute features. Analogous to Linux's
//! `drivers/vfio/pci/vfio_pci_dmabuf.c` after the series (v4 03/10–10/10).
//!
//! The rest of that file lives beside this one: explicit export
//! (`export`), the fault path with `find_pfn` (`fault`), the exporter's mmap
//! (`mmap`), and the checkers of the invariants of spec §6.2 (`invariants`).

mod export;
pub(crate) mod fault;
pub(crate) mod invariants;
pub(crate) mod mmap;

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use dmabuf::{AccessMode, BufOffset, DmaBuf, DmaBufOps, ExportInfo, PhysVec, Status, Transition, VmArea};
use mm::{AddressSpace, PhysMemory};
use page::{PgOff, VirtAddr};

use self::mmap::{Local, MapTarget};
use rustix::io::Errno;

pub(crate) use self::export::DMA_BUF;
use crate::core::mmap::DeviceMmapPlan;
use crate::core::{bar_name, DeviceFd, FeatureReply, VfioPciDevice};
use crate::do_mmap::MmapArgs;
use crate::error::{fail, VfioError};
use crate::feature::Feature;
use crate::private::MemoryWriteGuard;
use crate::uapi::*;

/// The exporter's private object of one buffer (the kernel's
/// `struct vfio_pci_dma_buf`, "priv"). The generic half (ranges, status,
/// resv, importers) lives in [`DmaBuf`].
pub struct VfioDmaBuf {
    /// The exporting device: our registration on it. Set at export; set to
    /// `None` only by cleanup (under `memory_lock` write and resv, after the
    /// buffer was revoked) or by release. Hence: status Ok ⇒ `Some`.
    vdev: Mutex<Option<Arc<VfioPciDevice>>>,
    /// The device file a per-mapping buffer owns (`vfile`); `None` for
    /// explicit buffers. Dropped at release, which may close the device.
    vfile: Mutex<Option<DeviceFd>>,
    /// Immutable. Page offset subtracted from `vm_pgoff` to index the buffer:
    /// the whole mmap `vm_pgoff` for a device-fd mapping (the full-pgoff form
    /// the spec recommends), 0 for explicit buffers.
    pub(crate) vma_pgoff_adjust: PgOff,
    /// Immutable. The BAR the ranges belong to.
    pub(crate) region_index: u32,
    /// Immutable. That BAR's memory.
    memory: Arc<PhysMemory>,
    /// Attribute of future mmaps (NC or WC); a plain atomic, no lock, as in v4.
    memattr: AtomicU32,
    /// Immutable. This object itself, so a mapping made outside the buffer
    /// core's mmap (`crate::remote`) can hold it typed.
    this: Weak<VfioDmaBuf>,
}

impl fmt::Debug for VfioDmaBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VfioDmaBuf")
            .field("region_index", &self.region_index)
            .field("vma_pgoff_adjust", &self.vma_pgoff_adjust)
            .field("memattr", &self.memattr.load(Ordering::Relaxed))
            .finish()
    }
}

impl VfioDmaBuf {
    /// A new private object for a buffer of BAR `region_index` of `vdev`;
    /// `vfile` is the device file a per-mapping buffer owns.
    fn new(
        vdev: &Arc<VfioPciDevice>,
        vfile: Option<DeviceFd>,
        vma_pgoff_adjust: PgOff,
        region_index: u32,
        memory: Arc<PhysMemory>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            vdev: Mutex::new(Some(Arc::clone(vdev))),
            vfile: Mutex::new(vfile),
            vma_pgoff_adjust,
            region_index,
            memory,
            memattr: AtomicU32::new(VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC),
            this: this.clone(),
        })
    }

    /// Our private object of `buf`, as the mappings hold it, or `None` for a
    /// buffer of another exporter.
    pub(crate) fn arc_of(buf: &DmaBuf) -> Option<Arc<VfioDmaBuf>> {
        Self::of(buf).and_then(|d| d.this.upgrade())
    }

    /// Our private object of `buf`, or `None` for a buffer of another
    /// exporter. Analogous to the kernel's `dmabuf->ops ==
    /// &vfio_pci_dmabuf_ops` check followed by `dmabuf->priv`: the features
    /// that take a buffer fd use it to recognise their own buffers. Mappings
    /// never need it: they hold their object typed.
    pub fn of(buf: &DmaBuf) -> Option<&VfioDmaBuf> {
        buf.ops().as_any().downcast_ref::<VfioDmaBuf>()
    }

    /// The exporting device, unless cleanup severed it.
    pub fn vdev(&self) -> Option<Arc<VfioPciDevice>> {
        self.vdev.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether this buffer was made by a device-fd mmap (owns the device file).
    pub fn is_mmap_buffer(&self) -> bool {
        self.vfile.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// The BAR the buffer's ranges belong to.
    pub fn region_index(&self) -> u32 {
        self.region_index
    }

    /// `vma_pgoff_adjust`.
    pub fn vma_pgoff_adjust(&self) -> PgOff {
        self.vma_pgoff_adjust
    }

    /// The memory attribute future mmaps get.
    pub fn memattr(&self) -> u32 {
        self.memattr.load(Ordering::Relaxed)
    }

    /// Severs the buffer from its device (cleanup and release).
    ///
    /// Preconditions: `memory_lock` held for write (the guard proves it),
    /// and the buffer is revoked or dying.
    fn sever(&self, _mem: &MemoryWriteGuard<'_>) {
        *self.vdev.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl DmaBufOps for VfioDmaBuf {
    /// `vfio_pci_dma_buf_release()`: unlink from the device if cleanup has
    /// not, then drop the device file a per-mapping buffer owned. Exactly one
    /// of cleanup and release unlinks: cleanup skips buffers it cannot
    /// revive (their last reference is gone), and release unlinks only while
    /// `vdev` is still set.
    fn release(&self, buf: &DmaBuf) {
        if let Some(vdev) = self.vdev() {
            let mut mem = vdev.lock_memory_write();
            mem.dmabufs.remove(&buf.id());
            self.sever(&mem);
        }
        let vfile = self.vfile.lock().unwrap_or_else(|e| e.into_inner()).take();
        // May be the last reference to the device file: closes the device.
        drop(vfile);
    }

    /// `vfio_pci_dma_buf_mmap()`: a best-effort status check (`ENODEV`), shared
    /// mappings only (`EINVAL`), then the mapping, which holds this object.
    fn mmap(
        self: Arc<Self>,
        buf: &Arc<DmaBuf>,
        aspace: &AddressSpace,
        vma: &VmArea,
    ) -> Result<VirtAddr, dmabuf::Error> {
        mmap::dma_buf_mmap(self, buf, Local::new(aspace), vma)
            .map_err(|e| dmabuf::Error::Exporter { errno: e.errno(), reason: e.message().to_owned() })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `vfio_pci_dmabuf_export()`, the common export helper (spec §4.3): under
/// `memory_lock` (write), the initial status follows memory enable (Ok or
/// `TempRevoked`), and the buffer joins the device's list. From the moment it
/// returns, dropping the last reference releases the buffer.
fn dmabuf_export(
    vdev: &Arc<VfioPciDevice>,
    dma_buf: Arc<VfioDmaBuf>,
    ranges: Vec<PhysVec>,
    name: Option<String>,
    mode: AccessMode,
) -> Result<Arc<DmaBuf>, VfioError> {
    let mut mem = vdev.lock_memory_write();
    let initial_status = if mem.pci.memory_enabled() { Status::Ok } else { Status::TempRevoked };
    let buf = DmaBuf::export(ExportInfo { ops: dma_buf, ranges, name, mode, initial_status })?;
    buf.set_revoke_timeout(vdev.revoke_timeout());
    if initial_status == Status::Ok {
        // A frame cut off from a process that missed an earlier revoke is
        // reachable again through this buffer.
        vdev.restore_frames_of_new(&buf);
    }
    mem.dmabufs.insert(buf.id(), Arc::downgrade(&buf));
    debug_assert!(invariants::check_buffer_listed(&mem, &buf), "exported buffer {} is not listed", buf.id());
    Ok(buf)
}

/// `vfio_pci_core_mmap_prep_dmabuf()` (spec §4.2): the narrow per-mapping
/// buffer over exactly the window `plan` describes, owning a reference on
/// the device file, then its mapping in `target`.
pub(crate) fn mmap_prep_dmabuf<T: MapTarget>(
    fd: &DeviceFd,
    target: T,
    plan: &DeviceMmapPlan,
    args: MmapArgs,
) -> Result<T::Mapped, VfioError> {
    let vdev = fd.device();
    let Some(memory) = vdev.bar(plan.index).map(|b| b.memory()) else {
        return fail(Errno::INVAL, "no such BAR");
    };
    let name = bar_name(vdev.cdev_name(), vdev.bdf(), plan.index);
    // The mapping's reference on the device file moves into the buffer.
    let dma_buf = VfioDmaBuf::new(vdev, Some(fd.dup()), plan.vm_pgoff, plan.index, memory.clone());
    let buf = dmabuf_export(vdev, Arc::clone(&dma_buf), vec![plan.phys], Some(name), AccessMode::ReadWrite)?;
    // From here the buffer belongs to the VMA; on error dropping it releases it.
    let vma = VmArea {
        addr: args.addr.map(VirtAddr),
        len: plan.req_len,
        vm_pgoff: plan.vm_pgoff,
        shared: true,
        writable: args.write,
    };
    mmap::map_buffer(target, &buf, dma_buf, &vma, BufOffset(0))
}

/// `vfio_pci_dma_buf_set_status()` (spec §4.7) for one buffer: the
/// transitions themselves live in [`DmaBuf::set_status`]; this wrapper is
/// where the precondition is proved and the invariants of the transition
/// are checked (debug builds).
///
/// Preconditions: `memory_lock` of the buffer's device held for write (the
/// guard proves a lock is held; the first check, that it is the right one).
pub(crate) fn set_status(mem: &MemoryWriteGuard<'_>, buf: &DmaBuf, status: Status) -> Result<Transition, VfioError> {
    debug_assert!(invariants::check_status_writer(mem, buf), "buffer {} moved under another device's lock", buf.id());
    let before = buf.status();
    let r = buf.set_status(status);
    debug_assert!(invariants::check_perm_revoked_absorbing(before, buf), "buffer {} left PermRevoked", buf.id());
    debug_assert!(invariants::check_no_cpu_entries(buf), "revoked buffer {} keeps page table entries", buf.id());
    if matches!(r, Ok(Transition::Revoked)) {
        debug_assert!(invariants::check_no_importer_mappings(buf), "revoke of {} left importer mappings", buf.id());
    }
    Ok(r?)
}

/// `vfio_pci_dma_buf_move()`: every live buffer of the device to
/// `TempRevoked` (`revoked`) or back to `Ok`. Permanently revoked buffers stay
/// so (the status machine makes that a no-op). Every buffer is moved even if
/// one fails; the first error is returned.
///
/// Preconditions: `memory_lock` held for write.
pub(crate) fn dma_buf_move(mem: &mut MemoryWriteGuard<'_>, revoked: bool) -> Result<(), VfioError> {
    let target = if revoked { Status::TempRevoked } else { Status::Ok };
    let bufs: Vec<Arc<DmaBuf>> = mem.dmabufs.values().filter_map(|w| w.upgrade()).collect();
    let mut first_err = None;
    for buf in bufs {
        if let Err(e) = set_status(mem, &buf, target) {
            first_err.get_or_insert(e);
        }
        debug_assert!(invariants::check_ok_implies_vdev(&buf), "buffer {} is Ok but severed", buf.id());
        mem.defer_drop(buf);
    }
    first_err.map_or(Ok(()), Err)
}

/// `vfio_pci_dma_buf_cleanup()`: on the last close of the device, revoke
/// every buffer, then sever each live one from the device (unlink, drop
/// `vdev`). Buffers whose last reference is already gone are left to their
/// release, which unlinks them.
pub(crate) fn dma_buf_cleanup(vdev: &VfioPciDevice) {
    let mut mem = vdev.lock_memory_write();
    if let Err(e) = dma_buf_move(&mut mem, true) {
        tracing::error!(%e, "revoke at device close did not complete");
    }
    let live: Vec<(u64, Arc<DmaBuf>)> =
        mem.dmabufs.iter().filter_map(|(id, w)| w.upgrade().map(|b| (*id, b))).collect();
    for (id, buf) in live {
        mem.dmabufs.remove(&id);
        if let Some(dma_buf) = VfioDmaBuf::of(&buf) {
            let _resv = buf.resv();
            dma_buf.sever(&mem);
        }
        debug_assert!(invariants::check_ok_implies_vdev(&buf), "cleanup severed Ok buffer {}", buf.id());
        mem.defer_drop(buf);
    }
}

/// Resolves the `dmabuf_fd` of the revoke and memattr features to one of
/// this device's buffers (spec §4.9 steps 2–3).
fn dmabuf_of_device(fd: &DeviceFd, dmabuf_fd: i32) -> Result<Arc<DmaBuf>, VfioError> {
    let buf = dmabuf::get(dmabuf_fd)?;
    let Some(dma_buf) = VfioDmaBuf::of(&buf) else {
        return fail(Errno::NODEV, "not a VFIO buffer");
    };
    // Lockless comparison: a racing cleanup yields None, still a mismatch.
    match dma_buf.vdev() {
        Some(v) if Arc::ptr_eq(&v, fd.device()) => Ok(buf),
        Some(_) => fail(Errno::NODEV, "buffer belongs to another device"),
        None => fail(Errno::NODEV, "buffer's device was closed"),
    }
}

/// `VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE` (SET, `{ s32 dmabuf_fd; }`).
pub(crate) const DMA_BUF_REVOKE: Feature =
    Feature { name: "DMA_BUF_REVOKE", supported_ops: VFIO_DEVICE_FEATURE_SET, minsz: 4, run: feature_dma_buf_revoke };

/// `VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR` (SET, `{ s32 dmabuf_fd; u32
/// memattr; }`).
pub(crate) const DMA_BUF_MEMATTR: Feature =
    Feature { name: "DMA_BUF_MEMATTR", supported_ops: VFIO_DEVICE_FEATURE_SET, minsz: 8, run: feature_dma_buf_memattr };

/// [`DMA_BUF_REVOKE`] (spec §4.9).
fn feature_dma_buf_revoke(fd: &DeviceFd, data: &[u8]) -> Result<FeatureReply, VfioError> {
    let buf = dmabuf_of_device(fd, u32_at(data, 0) as i32)?;
    let vdev = fd.device();
    let mut mem = vdev.lock_memory_write();
    let r = if buf.status() == Status::PermRevoked {
        fail(Errno::BADFD, "buffer is already permanently revoked")
    } else {
        set_status(&mem, &buf, Status::PermRevoked).map(|_| FeatureReply::Done)
    };
    vdev.restore_reachable_frames(&mut mem);
    mem.defer_drop(buf);
    r
}

/// [`DMA_BUF_MEMATTR`] (spec §4.10).
fn feature_dma_buf_memattr(fd: &DeviceFd, data: &[u8]) -> Result<FeatureReply, VfioError> {
    let buf = dmabuf_of_device(fd, u32_at(data, 0) as i32)?;
    let memattr = u32_at(data, 4);
    if memattr != VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC && memattr != VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC {
        // ENOENT: chosen upstream because EINVAL and EOPNOTSUPP are overloaded.
        return fail(Errno::NOENT, "unknown memory attribute");
    }
    if let Some(dma_buf) = VfioDmaBuf::of(&buf) {
        dma_buf.memattr.store(memattr, Ordering::Relaxed);
    }
    Ok(FeatureReply::Done)
}
