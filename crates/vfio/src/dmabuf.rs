//! The VFIO side of DMA-buffers: the exporter's private object, explicit
//! export, the per-mapping buffer of a device-fd mmap, mmap of a buffer fd,
//! the status transitions of every buffer of a device, cleanup on close,
//! and the revoke and memory-attribute features. Analogous to Linux's
//! `drivers/vfio/pci/vfio_pci_dmabuf.c` after the series (v4 03/10–10/10).

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use dmabuf::{AccessMode, DmaBuf, DmaBufFd, DmaBufOps, ExportInfo, PhysVec, Status, Transition};
use mm::{AddressSpace, MapPiece, MapRequest, PhysMemory};
use page::{PgOff, PhysAddr, VirtAddr};
use rustix::io::Errno;

use crate::core::{bar_name, BarVma, DeviceFd, FeatureReply, MmapArgs, VfioPciDevice};
use crate::error::{fail, VfioError};
use crate::layout::{self, DeviceMmapRequest, DmaBufMmapRequest, DmaRange, FeatureCheck};
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
    pub(crate) vma_pgoff_adjust: u64,
    /// Immutable. The BAR the ranges belong to.
    pub(crate) region_index: u32,
    /// Immutable. That BAR's memory.
    memory: Arc<PhysMemory>,
    /// Attribute of future mmaps (NC or WC); a plain atomic, no lock, as in v4.
    memattr: AtomicU32,
}

impl fmt::Debug for VfioDmaBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VfioDmaBuf")
            .field("region_index", &self.region_index)
            .field("vma_pgoff_adjust", &format_args!("{:#x}", self.vma_pgoff_adjust))
            .field("memattr", &self.memattr.load(Ordering::Relaxed))
            .finish()
    }
}

impl VfioDmaBuf {
    /// Our private object of `buf`, or `None` for a buffer of another exporter.
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
    pub fn vma_pgoff_adjust(&self) -> u64 {
        self.vma_pgoff_adjust
    }

    /// The memory attribute future mmaps get.
    pub fn memattr(&self) -> u32 {
        self.memattr.load(Ordering::Relaxed)
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
            *self.vdev.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        let vfile = self.vfile.lock().unwrap_or_else(|e| e.into_inner()).take();
        // May be the last reference to the device file: closes the device.
        drop(vfile);
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
    dma_buf: VfioDmaBuf,
    ranges: Vec<PhysVec>,
    name: Option<String>,
    mode: AccessMode,
) -> Result<Arc<DmaBuf>, VfioError> {
    let mut mem = vdev.lock_memory_write();
    let initial_status = if mem.pci.memory_enabled() { Status::Ok } else { Status::TempRevoked };
    let buf = DmaBuf::export(ExportInfo { ops: Arc::new(dma_buf), ranges, name, mode, initial_status })?;
    buf.set_revoke_timeout(vdev.revoke_timeout());
    mem.dmabufs.insert(buf.id(), Arc::downgrade(&buf));
    debug_assert!(check_listed_buffers_point_back(vdev, &mut mem), "a listed buffer belongs elsewhere");
    Ok(buf)
}

/// `vfio_pci_dma_buf_set_status()` (spec §4.7) for one buffer: the
/// transitions themselves live in [`DmaBuf::set_status`]; this wrapper is
/// where the precondition is proved.
///
/// Preconditions: `memory_lock` held for write (the guard proves it).
pub(crate) fn set_status(_mem: &MemoryWriteGuard<'_>, buf: &DmaBuf, status: Status) -> Result<Transition, VfioError> {
    Ok(buf.set_status(status)?)
}

/// Invariant 2 of spec §6.2: a buffer whose status is Ok has not been
/// severed from its device (cleanup revokes before it severs).
pub(crate) fn check_ok_implies_vdev(buf: &DmaBuf) -> bool {
    buf.status() != Status::Ok || VfioDmaBuf::of(buf).is_none_or(|p| p.vdev().is_some())
}

/// Invariant 6 of spec §6.2 (the half we can see from the device): every
/// live buffer on a device's list points back at that device, so cleanup and
/// release agree on who unlinks it.
///
/// Preconditions: `memory_lock` held for write (the guard proves it; the
/// buffers looked at are parked in it, never dropped under the lock).
pub(crate) fn check_listed_buffers_point_back(vdev: &VfioPciDevice, mem: &mut MemoryWriteGuard<'_>) -> bool {
    let live: Vec<Arc<DmaBuf>> = mem.dmabufs.values().filter_map(std::sync::Weak::upgrade).collect();
    let ok = live
        .iter()
        .all(|b| VfioDmaBuf::of(b).and_then(VfioDmaBuf::vdev).is_some_and(|v| std::ptr::eq(Arc::as_ptr(&v), vdev)));
    for b in live {
        mem.defer_drop(b);
    }
    ok
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
        debug_assert!(check_ok_implies_vdev(&buf), "buffer {} is Ok but severed", buf.id());
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
    debug_assert!(check_listed_buffers_point_back(vdev, &mut mem), "a listed buffer belongs elsewhere");
    if let Err(e) = dma_buf_move(&mut mem, true) {
        tracing::error!(%e, "revoke at device close did not complete");
    }
    let live: Vec<(u64, Arc<DmaBuf>)> =
        mem.dmabufs.iter().filter_map(|(id, w)| w.upgrade().map(|b| (*id, b))).collect();
    for (id, buf) in live {
        mem.dmabufs.remove(&id);
        if let Some(dma_buf) = VfioDmaBuf::of(&buf) {
            let _resv = buf.resv();
            *dma_buf.vdev.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        mem.defer_drop(buf);
    }
}

/// `VFIO_DEVICE_FEATURE_DMA_BUF` (spec §4.4), checks in the kernel's order.
pub(crate) fn feature_dma_buf(fd: &DeviceFd, flags: u32, data: &[u8]) -> Result<FeatureReply, VfioError> {
    let vdev = fd.device();
    // vfio_check_feature(GET only, minsz 16).
    match layout::check_feature(flags, data.len(), VFIO_DEVICE_FEATURE_GET, DMA_BUF_FEATURE_MINSZ) {
        Ok(FeatureCheck::Probe) => return Ok(FeatureReply::Done),
        Ok(FeatureCheck::Go) => {}
        Err(e) => return fail(e, "DMA_BUF is GET-only and needs its 16-byte header"),
    }
    let region_index = u32_at(data, 0);
    let open_flags = u32_at(data, 4);
    let dma_flags = u32_at(data, 8);
    let nr_ranges = u32_at(data, 12) as usize;
    if nr_ranges == 0 {
        return fail(Errno::INVAL, "nr_ranges is zero");
    }
    if dma_flags != 0 {
        return fail(Errno::INVAL, "flags must be zero");
    }
    let Some(bar) = vdev.bar(region_index).filter(|_| region_index < VFIO_PCI_ROM_REGION_INDEX) else {
        return fail(Errno::NODEV, "region is not a BAR of this device");
    };
    // memdup_array_user(): the ranges are copied from nr_ranges alone (argsz
    // is not cross-checked, as upstream); reading past what the caller gave
    // is the copy fault.
    let need = DMA_BUF_FEATURE_MINSZ + nr_ranges * DMA_RANGE_SIZE;
    if data.len() < need {
        return fail(Errno::FAULT, "ranges extend past the payload");
    }
    let ranges: Vec<DmaRange> = (0..nr_ranges)
        .map(|i| {
            let at = DMA_BUF_FEATURE_MINSZ + i * DMA_RANGE_SIZE;
            DmaRange { offset: u64_at(data, at), length: u64_at(data, at + 8) }
        })
        .collect();
    layout::validate_dmabuf_input(&ranges).map_err(|e| VfioError::new(e, "invalid range"))?;
    // get_dmabuf_phys(): a BAR without memory behind it has no provider.
    let Some(memory) = bar.memory() else {
        return fail(Errno::INVAL, "BAR has no mappable memory (register BAR)");
    };
    let phys = layout::fill_phys_vec(layout::bar_start(region_index), bar.len, &ranges)
        .map_err(|e| VfioError::new(e, "range outside the BAR"))?;
    let mode = AccessMode::from_open_flags(open_flags)?;
    let dma_buf = VfioDmaBuf {
        vdev: Mutex::new(Some(vdev.clone())),
        vfile: Mutex::new(None),
        vma_pgoff_adjust: 0,
        region_index,
        memory: memory.clone(),
        memattr: AtomicU32::new(VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC),
    };
    let buf = dmabuf_export(vdev, dma_buf, phys, None, mode)?;
    // dma_buf_fd(); on failure dropping `buf` releases it.
    Ok(FeatureReply::DmaBuf(DmaBufFd::new(buf)?))
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

/// `VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE` (spec §4.9).
pub(crate) fn feature_dma_buf_revoke(fd: &DeviceFd, flags: u32, data: &[u8]) -> Result<FeatureReply, VfioError> {
    match layout::check_feature(flags, data.len(), VFIO_DEVICE_FEATURE_SET, 4) {
        Ok(FeatureCheck::Probe) => return Ok(FeatureReply::Done),
        Ok(FeatureCheck::Go) => {}
        Err(e) => return fail(e, "DMA_BUF_REVOKE is SET-only and needs a 4-byte payload"),
    }
    let buf = dmabuf_of_device(fd, u32_at(data, 0) as i32)?;
    let vdev = fd.device();
    let mut mem = vdev.lock_memory_write();
    let r = if buf.status() == Status::PermRevoked {
        fail(Errno::BADFD, "buffer is already permanently revoked")
    } else {
        set_status(&mem, &buf, Status::PermRevoked).map(|_| FeatureReply::Done)
    };
    mem.defer_drop(buf);
    r
}

/// `VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR` (spec §4.10).
pub(crate) fn feature_dma_buf_memattr(fd: &DeviceFd, flags: u32, data: &[u8]) -> Result<FeatureReply, VfioError> {
    match layout::check_feature(flags, data.len(), VFIO_DEVICE_FEATURE_SET, 8) {
        Ok(FeatureCheck::Probe) => return Ok(FeatureReply::Done),
        Ok(FeatureCheck::Go) => {}
        Err(e) => return fail(e, "DMA_BUF_MEMATTR is SET-only and needs an 8-byte payload"),
    }
    let buf = dmabuf_of_device(fd, u32_at(data, 0) as i32)?;
    let memattr = u32_at(data, 4);
    if memattr != VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC && memattr != VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC {
        // ENOENT: chosen upstream because EINVAL and EOPNOTSUPP are overloaded.
        return fail(Errno::NOENT, "unknown memory attribute");
    }
    VfioDmaBuf::of(&buf).expect("checked above").memattr.store(memattr, Ordering::Relaxed);
    Ok(FeatureReply::Done)
}

/// `vfio_pci_core_mmap()` + `vfio_pci_core_mmap_prep_dmabuf()` (spec §4.1,
/// §4.2): validate, create the narrow per-mapping buffer over exactly the
/// mapped window (owning the device file), then map it.
pub(crate) fn device_mmap(fd: &DeviceFd, aspace: &AddressSpace, args: MmapArgs) -> Result<u64, VfioError> {
    let vdev = fd.device();
    // A device fd takes any 64-bit offset (the region index lives in it).
    let vm_pgoff = args.generic_checks(aspace, u64::MAX)?;
    let plan = layout::plan_device_mmap(
        &DeviceMmapRequest { vm_pgoff, len: args.len, shared: args.shared },
        VFIO_PCI_NUM_REGIONS,
        |i| vdev.bar_mmap_len(i),
    )
    .map_err(|e| VfioError::new(e, "device mmap refused"))?;
    let memory = vdev.bar(plan.index).and_then(|b| b.memory()).expect("planned BARs are RAM").clone();
    let name = bar_name(vdev.cdev_name(), vdev.bdf(), plan.index);
    let dma_buf = VfioDmaBuf {
        vdev: Mutex::new(Some(vdev.clone())),
        // The mapping's reference on the device file moves into the buffer.
        vfile: Mutex::new(Some(fd.dup())),
        vma_pgoff_adjust: plan.vma_pgoff_adjust,
        region_index: plan.index,
        memory,
        memattr: AtomicU32::new(VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC),
    };
    let buf = dmabuf_export(vdev, dma_buf, vec![plan.phys], Some(name), AccessMode::ReadWrite)?;
    // From here the buffer belongs to the VMA; on error dropping it releases it.
    map_buffer(aspace, buf, vm_pgoff, 0, plan.req_len, args)
}

/// mmap of a buffer fd (`vfio_pci_dma_buf_mmap`, spec §4.5): the mapping
/// shows the concatenated ranges from byte `offset` on.
///
/// # Errors
///
/// `EACCES` for a writable shared mapping of a read-only fd; `EINVAL` for a
/// window past the end, an unaligned offset, a zero length or `MAP_PRIVATE`;
/// `ENODEV` when the buffer is revoked or its device was closed (a
/// best-effort early check: the fault path is authoritative).
pub fn mmap_dmabuf(aspace: &AddressSpace, fd: &DmaBufFd, args: MmapArgs) -> Result<u64, VfioError> {
    let buf = fd.buffer();
    let Some(dma_buf) = VfioDmaBuf::of(buf) else {
        return fail(Errno::NODEV, "not a VFIO buffer");
    };
    // A buffer fd is a regular-mode file: offsets up to MAX_LFS_FILESIZE.
    let vm_pgoff = args.generic_checks(aspace, i64::MAX as u64)?;
    let req = DmaBufMmapRequest {
        vm_pgoff,
        len: args.len,
        shared: args.shared,
        writable_prot: args.write,
        readonly_file: !buf.mode().can_write(),
        writeonly_file: !buf.mode().can_read(),
    };
    // Lockless status read: "belt-and-braces" early failure only.
    let offset = layout::plan_dmabuf_mmap(buf.size(), &req, buf.status() == Status::Ok)
        .map_err(|e| VfioError::new(e, "buffer mmap refused"))?;
    let len = page::page_align(args.len).expect("checked by plan_dmabuf_mmap");
    let memattr = dma_buf.memattr();
    map_buffer(aspace, buf.clone(), vm_pgoff, offset, len, MmapArgs { ..args }).inspect(|_| {
        tracing::debug!(buffer = buf.id(), memattr, "buffer mapped");
    })
}

/// Creates the VMA of `len` bytes showing `buf` from byte `offset` on:
/// registers it with the buffer first (so a revoke finds it before its
/// first fault can be served), then maps the buffer's pieces.
fn map_buffer(
    aspace: &AddressSpace,
    buf: Arc<DmaBuf>,
    vm_pgoff: u64,
    offset: u64,
    len: u64,
    args: MmapArgs,
) -> Result<u64, VfioError> {
    let dma_buf = VfioDmaBuf::of(&buf).expect("VFIO buffer");
    let pieces = window_pieces(buf.ranges(), &dma_buf.memory, offset, len);
    let mapping = aspace.new_mapping();
    let vma = Arc::new(BarVma { dmabuf: buf.clone(), mapping: aspace.mapping_handle(mapping) });
    let as_cpu: Arc<dyn dmabuf::CpuMapping> = vma.clone();
    buf.register_cpu_mapping(Arc::downgrade(&as_cpu));
    // Linux shows `/dmabuf:<name>`, empty for an unnamed (explicit) buffer.
    let path = format!("/dmabuf:{}", buf.name().unwrap_or_default());
    let start = aspace.mmap(MapRequest {
        mapping,
        len,
        vm_pgoff: PgOff(vm_pgoff),
        writable: args.write,
        pieces,
        ops: vma,
        path,
        inode: buf.id(),
        addr: args.addr.map(VirtAddr),
    })?;
    Ok(start.0)
}

/// The physical pieces behind bytes `[offset, offset + len)` of a buffer
/// whose ranges are concatenated in order.
fn window_pieces(ranges: &[PhysVec], memory: &Arc<PhysMemory>, offset: u64, len: u64) -> Vec<MapPiece> {
    let (from, to) = (offset, offset + len);
    let mut pieces = Vec::new();
    let mut range_start = 0u64;
    for r in ranges {
        let range_end = range_start + r.len;
        let (s, e) = (from.max(range_start), to.min(range_end));
        if s < e {
            pieces.push(MapPiece { memory: memory.clone(), paddr: PhysAddr(r.paddr + (s - range_start)), len: e - s });
        }
        range_start = range_end;
    }
    pieces
}
