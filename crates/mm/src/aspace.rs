//! The address space: one userfaultfd, a VMA table, and the thread of its
//! fault engine (`fault_engine.rs`). Analogous to Linux's `struct mm_struct`.
//!
//! # Locks
//!
//! ```text
//! probe registry (write)        mmap, munmap, teardown (see probe::mapped)
//!   mmap_lock (RwLock)          write: mmap, munmap   read: one fault, end to end
//!     └─ vmas (Mutex)           the VMA table; held across the munmap syscall
//! exporter locks (e.g. memory_lock, resv) → vmas          (zap)
//! mmap_lock(read) → exporter locks                        (fault → VmOperations)
//! ```
//!
//! The fault thread holds `mmap_lock` for read from the VMA lookup until the
//! page is mapped, so no munmap/mmap can swap the VMA under a fault that has
//! already validated it (the reason Linux holds `mmap_lock` across a fault).
//! A zap needs only `vmas`, never `mmap_lock`, so an exporter may zap while
//! holding its own locks, which faults take after `mmap_lock` (the same
//! shape as `unmap_mapping_range()`, which needs no `mmap_lock`). Nothing is
//! ever dropped (which could release a buffer and call back into the
//! exporter) while `vmas` or `mmap_lock` is held.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::thread::JoinHandle;

use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;

use page::{PgOff, VirtAddr, HPAGE_PMD_SIZE, PAGE_SIZE};

use crate::fault::VmOperations;
use crate::fault_engine::{Engine, FaultStats};
use crate::mmio::VmMmio;
use crate::probe;
use crate::sys::{self, Reservation};
use crate::vma::{MapPiece, MappingId, Vma};
use crate::MmError;

/// What to map, for [`AddressSpace::mmap`].
#[derive(Debug)]
pub struct MapRequest {
    /// The mapping identity, from [`AddressSpace::new_mapping`]; register it
    /// with whoever must be able to zap this mapping *before* calling mmap.
    pub mapping: MappingId,
    /// Length in bytes (page multiple, non-zero).
    pub len: u64,
    /// `vm_pgoff` exactly as passed to mmap.
    pub vm_pgoff: PgOff,
    /// Map read-write (else read-only).
    pub writable: bool,
    /// Backing pieces in VA order; lengths must add up to `len`.
    pub pieces: Vec<MapPiece>,
    /// Fault operations.
    pub ops: Arc<dyn VmOperations>,
    /// The path column of the maps view, shown exactly as given: Linux
    /// prints the path of the VMA's file, and the exporter names that file.
    pub path: String,
    /// Inode-like number for the maps view.
    pub inode: u64,
    /// Exact address wanted (fails with `EEXIST` if anything is there);
    /// `None` lets us choose, 2 MiB aligned when `len` is at least 2 MiB so
    /// that huge faults are possible.
    pub addr: Option<VirtAddr>,
    /// Set for a mapping of device registers: the VMA never maps a page
    /// (its operations end every fault in SIGBUS) and every access to it is
    /// emulated against this, in the accessing thread (see [`VmMmio`]).
    pub mmio: Option<Arc<dyn VmMmio>>,
}

/// A read-only view of one VMA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmaInfo {
    /// First byte.
    pub vm_start: u64,
    /// One past the last byte.
    pub vm_end: u64,
    /// Page offset as passed to mmap (advanced by splits).
    pub vm_pgoff: u64,
    /// Read-write?
    pub writable: bool,
    /// Path column of the maps view, as the mapping's creator chose it.
    pub path: String,
    /// Inode-like number.
    pub inode: u64,
    /// The mmap call it came from.
    pub mapping: MappingId,
    /// Backing pieces as (memfd name, physical address, length).
    pub pieces: Vec<(String, u64, u64)>,
}

impl VmaInfo {
    /// The line Linux would print in `/proc/<pid>/maps` for this VMA after the
    /// series: `start-end perms offset dev inode path`.
    pub fn maps_line(&self) -> String {
        crate::maps::format_line(self.vm_start, self.vm_end, self.writable, self.vm_pgoff, self.inode, &self.path)
    }
}

#[derive(Debug, Default)]
pub(crate) struct VmaTable {
    by_start: BTreeMap<VirtAddr, Vma>,
    by_mapping: HashMap<MappingId, BTreeSet<VirtAddr>>,
}

impl VmaTable {
    fn insert(&mut self, vma: Vma) {
        self.by_mapping.entry(vma.mapping).or_default().insert(vma.vm_start);
        self.by_start.insert(vma.vm_start, vma);
    }

    fn remove(&mut self, start: VirtAddr) -> Option<Vma> {
        let vma = self.by_start.remove(&start)?;
        if let Some(set) = self.by_mapping.get_mut(&vma.mapping) {
            set.remove(&start);
            if set.is_empty() {
                self.by_mapping.remove(&vma.mapping);
            }
        }
        Some(vma)
    }

    pub(crate) fn find(&self, addr: VirtAddr) -> Option<&Vma> {
        self.by_start.range(..=addr).next_back().map(|(_, v)| v).filter(|v| addr < v.vm_end)
    }

    /// Starts of the VMAs intersecting `[from, to)`.
    fn intersecting(&self, from: VirtAddr, to: VirtAddr) -> Vec<VirtAddr> {
        let first = self.find(from).map_or(from, |v| v.vm_start);
        self.by_start.range(first..to).filter(|(_, v)| v.vm_end > from).map(|(s, _)| *s).collect()
    }

    fn overlaps(&self, from: VirtAddr, to: VirtAddr) -> bool {
        !self.intersecting(from, to).is_empty()
    }
}

pub(crate) struct Inner {
    /// The userfaultfd and what serves it. Immutable after creation.
    pub(crate) engine: Engine,
    /// Analogous to `mm->mmap_lock`; guards no data of its own (see module doc).
    pub(crate) mmap_lock: RwLock<()>,
    /// Protected by: itself. The VMA table.
    vmas: Mutex<VmaTable>,
    next_mapping: AtomicU64,
}

/// An address space whose device-memory mappings are served by our fault handler.
///
/// Dropping it stops the fault thread and unmaps every VMA left.
#[derive(Debug)]
pub struct AddressSpace {
    inner: Arc<Inner>,
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("engine", &self.engine).finish_non_exhaustive()
    }
}

/// A handle that zaps every VMA of one mapping, usable from any thread and
/// under exporter locks; it does not keep the address space alive.
#[derive(Debug, Clone)]
pub struct MappingHandle {
    id: MappingId,
    inner: Weak<Inner>,
}

impl MappingHandle {
    /// The mapping's identity.
    pub fn id(&self) -> MappingId {
        self.id
    }

    /// Drops every PTE (and poison marker) of every VMA of this mapping, with
    /// `MADV_DONTNEED`; the data stays in the backing memory. A mapping that
    /// is gone, or not mapped yet, has nothing to zap.
    ///
    /// # Errors
    ///
    /// The errno of `madvise`, which cannot fail on ranges we own.
    pub fn zap(&self) -> Result<(), MmError> {
        let Some(inner) = self.inner.upgrade() else { return Ok(()) };
        let table = inner.lock_vmas();
        let Some(starts) = table.by_mapping.get(&self.id) else { return Ok(()) };
        for start in starts {
            let vma = &table.by_start[start];
            sys::zap_owned(vma.vm_start.0 as usize, vma.len() as usize)
                .map_err(MmError::sys("madvise(MADV_DONTNEED)"))?;
        }
        Ok(())
    }
}

impl Inner {
    pub(crate) fn lock_vmas(&self) -> MutexGuard<'_, VmaTable> {
        // A panic while holding the table cannot leave it half-updated in a
        // way that matters more than losing the process's mappings; go on.
        self.vmas.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AddressSpace {
    /// Opens a userfaultfd with MINOR (shmem) and POISON support and starts
    /// the fault-handling thread.
    ///
    /// # Errors
    ///
    /// [`MmError::Unsupported`] when the kernel lacks userfaultfd, MINOR
    /// faults on shmem (5.14) or `UFFDIO_POISON` (6.6); the errno of the
    /// failing call otherwise.
    pub fn new() -> Result<Self, MmError> {
        crate::probe::install_fault_handler();
        let uffd = sys::userfaultfd_open().map_err(|e| match e {
            Errno::NOSYS => MmError::Unsupported("userfaultfd"),
            e => MmError::Sys { call: "userfaultfd", errno: e },
        })?;
        let wanted = sys::UFFD_FEATURE_MINOR_SHMEM | sys::UFFD_FEATURE_POISON;
        let got = sys::uffdio_api(uffd.as_fd(), wanted).map_err(|e| match e {
            Errno::INVAL => MmError::Unsupported("userfaultfd MINOR_SHMEM and POISON features"),
            e => MmError::Sys { call: "UFFDIO_API", errno: e },
        })?;
        if got & wanted != wanted {
            return Err(MmError::Unsupported("userfaultfd MINOR_SHMEM and POISON features"));
        }
        let stop = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(MmError::sys("eventfd"))?;
        let inner = Arc::new(Inner {
            engine: Engine::new(uffd),
            mmap_lock: RwLock::new(()),
            vmas: Mutex::new(VmaTable::default()),
            next_mapping: AtomicU64::new(1),
        });
        let thread_inner = inner.clone();
        let thread_stop = stop
            .try_clone()
            .map_err(|e| MmError::Sys { call: "dup", errno: Errno::from_io_error(&e).unwrap_or(Errno::IO) })?;
        let thread = std::thread::Builder::new()
            .name("vfio-dmabuf-fault".into())
            .spawn(move || thread_inner.engine.run(&thread_inner, &thread_stop))
            .map_err(|_| MmError::Sys { call: "pthread_create", errno: Errno::AGAIN })?;
        Ok(Self { inner, stop, thread: Some(thread) })
    }

    /// Allocates the identity of a future mapping. Register
    /// [`AddressSpace::mapping_handle`] with the exporter first, then mmap:
    /// that way no PTE can exist that a revoke would not find.
    pub fn new_mapping(&self) -> MappingId {
        MappingId(self.inner.next_mapping.fetch_add(1, Ordering::Relaxed))
    }

    /// A zap handle for a mapping of this address space.
    pub fn mapping_handle(&self, id: MappingId) -> MappingHandle {
        MappingHandle { id, inner: Arc::downgrade(&self.inner) }
    }

    /// Creates a VMA: reserves an aligned virtual range, maps each backing
    /// piece of its memfd shared at its physical (file) offset, and registers
    /// the range with the userfaultfd in MINOR mode. No page is mapped yet;
    /// every first touch faults into `req.ops`.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a zero or unaligned length, pieces that do not add up to
    /// it or lie outside their memory; `EEXIST` when `req.addr` is taken;
    /// `ENOMEM` when no virtual range is free. On error nothing is left mapped.
    pub fn mmap(&self, req: MapRequest) -> Result<VirtAddr, MmError> {
        if req.len == 0 || req.len % PAGE_SIZE != 0 {
            return Err(MmError::Invalid("mapping length must be a non-zero page multiple"));
        }
        let total = req.pieces.iter().try_fold(0u64, |acc, p| acc.checked_add(p.len));
        if total != Some(req.len) {
            return Err(MmError::Invalid("backing pieces do not add up to the mapping length"));
        }
        if req.pieces.iter().any(|p| {
            p.len == 0 || !p.paddr.is_page_aligned() || p.len % PAGE_SIZE != 0 || !p.memory.contains(p.paddr, p.len)
        }) {
            return Err(MmError::Invalid("backing piece outside its memory or unaligned"));
        }
        if let Some(a) = req.addr {
            if !a.is_page_aligned() || a.checked_add(req.len).is_none() {
                return Err(MmError::Invalid("mapping address must be page aligned"));
            }
        }
        if req.mmio.is_some() {
            // Its accesses must reach our handler, even if the program
            // installed its own SIGBUS handler after ours.
            probe::reassert_sigbus_handler();
        }
        let mut mapped = probe::lock_for_update();
        let _mmap = self.inner.mmap_lock.write().unwrap_or_else(|e| e.into_inner());
        let align = if req.len >= HPAGE_PMD_SIZE { HPAGE_PMD_SIZE } else { PAGE_SIZE };
        let res =
            Reservation::new(req.len as usize, align as usize, req.addr.map(|a| a.0 as usize)).map_err(
                |e| match e {
                    Errno::EXIST => MmError::Sys { call: "mmap(MAP_FIXED_NOREPLACE)", errno: Errno::EXIST },
                    e => MmError::Sys { call: "mmap", errno: e },
                },
            )?;
        let start = res.start() as u64;
        let mut va = start;
        for p in &req.pieces {
            map_frames(&res, va, p, req.writable)?;
            va += p.len;
        }
        sys::uffdio_register_minor(self.inner.engine.uffd(), start, req.len)
            .map_err(MmError::sys("UFFDIO_REGISTER"))?;
        debug_assert_eq!(res.len() as u64, req.len);
        let (start, _) = res.into_owned_range();
        let start = VirtAddr(start as u64);
        let (len, vm_pgoff) = (req.len, req.vm_pgoff);
        let (vma, mmio) = vma_at(start, req);
        self.inner.lock_vmas().insert(vma);
        // Safe probes may touch it from now on, and its traps are emulated.
        mapped.insert(start.0, start.0 + len);
        if let Some(mmio) = mmio {
            probe::traps::lock_for_update().insert(start.0, start.0 + len, vm_pgoff, mmio);
        }
        Ok(start)
    }

    /// Takes over a mapping this process inherited through `fork` (a VMA of
    /// its parent's address space, at `req.addr`, backed by `req.pieces`):
    /// the child's copy is a plain shared mapping of the same memfds with
    /// no userfaultfd registration (`fork` drops MINOR registrations), so
    /// its pages are zapped and the range is registered with this address
    /// space's userfaultfd. From then on every first touch faults into
    /// `req.ops`, as for a mapping made here. The probe registry and the
    /// trap table are process memory, copied by `fork`: they already hold
    /// the range.
    ///
    /// # Errors
    ///
    /// `EINVAL` without an address, for an unaligned or overflowing range,
    /// or pieces that do not add up to the length; `EEXIST` when a VMA of
    /// ours is there; `madvise` and `UFFDIO_REGISTER` errors.
    pub fn adopt(&self, req: MapRequest) -> Result<VirtAddr, MmError> {
        let start = req.addr.ok_or(MmError::Invalid("an inherited mapping has an address"))?;
        let end = start.checked_add(req.len).ok_or(MmError::Invalid("mapping range overflows"))?;
        let total = req.pieces.iter().try_fold(0u64, |acc, p| acc.checked_add(p.len));
        if req.len == 0 || req.len % PAGE_SIZE != 0 || !start.is_page_aligned() || total != Some(req.len) {
            return Err(MmError::Invalid("inherited mapping must be page aligned and fully backed"));
        }
        let _mmap = self.inner.mmap_lock.write().unwrap_or_else(|e| e.into_inner());
        let mut table = self.inner.lock_vmas();
        if table.overlaps(start, end) {
            return Err(MmError::Sys { call: "adopt", errno: Errno::EXIST });
        }
        // One madvise spans the frame runs (each a kernel VMA) of the range.
        sys::zap_owned(start.0 as usize, req.len as usize).map_err(MmError::sys("madvise(MADV_DONTNEED)"))?;
        sys::uffdio_register_minor(self.inner.engine.uffd(), start.0, req.len)
            .map_err(MmError::sys("UFFDIO_REGISTER"))?;
        table.insert(vma_at(start, req).0);
        Ok(start)
    }

    /// Holds the VMA table still (`mmap_lock` for write, then the table)
    /// until the guard goes: across a `fork`, so that the child finds both
    /// unlocked and the table as it was at the fork, whatever the parent's
    /// other threads were doing.
    pub fn lock_for_fork(&self) -> ForkGuard<'_> {
        let mmap = self.inner.mmap_lock.write().unwrap_or_else(|e| e.into_inner());
        ForkGuard { table: self.inner.lock_vmas(), _mmap: mmap }
    }

    /// Makes mapping ids from `next` on: a `fork` child's address space
    /// keeps the ids of the mappings it inherited.
    pub fn skip_mapping_ids(&self, next: u64) {
        self.inner.next_mapping.fetch_max(next, Ordering::Relaxed);
    }

    /// Whether `[addr, addr + len)` is free in the whole process (the
    /// `MAP_FIXED_NOREPLACE` check, made before a driver sees an mmap).
    ///
    /// # Errors
    ///
    /// `EEXIST` when anything is mapped there; `EINVAL` for an unaligned
    /// address or length.
    pub fn check_free(&self, addr: u64, len: u64) -> Result<(), MmError> {
        if addr % PAGE_SIZE != 0 || len == 0 || len % PAGE_SIZE != 0 {
            return Err(MmError::Invalid("address range must be page aligned"));
        }
        let _mmap = self.inner.mmap_lock.read().unwrap_or_else(|e| e.into_inner());
        // A trial reservation: the kernel itself says whether anything is there.
        Reservation::new(len as usize, PAGE_SIZE as usize, Some(addr as usize))
            .map(drop)
            .map_err(|e| MmError::Sys { call: "mmap(MAP_FIXED_NOREPLACE)", errno: e })
    }

    /// Unmaps `[addr, addr + len)`: every VMA of ours in it is removed, and
    /// VMAs partly inside are split, the tail keeping the right `vm_pgoff`.
    /// Addresses in the range that hold no VMA of ours are left alone.
    ///
    /// # Errors
    ///
    /// `EINVAL` for an unaligned address, a zero length or an overflowing range.
    pub fn munmap(&self, addr: u64, len: u64) -> Result<(), MmError> {
        if addr % PAGE_SIZE != 0 || len == 0 {
            return Err(MmError::Invalid("munmap needs a page-aligned address and a non-zero length"));
        }
        let end = addr
            .checked_add(len)
            .and_then(page::page_align)
            .map(VirtAddr)
            .ok_or(MmError::Invalid("munmap range overflows"))?;
        let addr = VirtAddr(addr);
        let mut dropped = Vec::new();
        let mut dropped_mmio = Vec::new();
        {
            // Taking the registry waits for every safe probe in flight, and
            // the range leaves it before it is unmapped: no probe can be
            // inside when its addresses go back to the kernel.
            let mut mapped = probe::lock_for_update();
            let _mmap = self.inner.mmap_lock.write().unwrap_or_else(|e| e.into_inner());
            let mut table = self.inner.lock_vmas();
            for start in table.intersecting(addr, end) {
                let Some(vma) = table.remove(start) else { continue };
                let (from, to) = (addr.max(vma.vm_start), end.min(vma.vm_end));
                mapped.remove(from.0, to.0);
                if let Err(e) = sys::unmap_owned(from.0 as usize, (to.0 - from.0) as usize) {
                    // Cannot happen for a range we own; keep the table truthful.
                    tracing::error!(%from, %to, %e, "munmap of an owned range failed");
                    mapped.insert(from.0, to.0);
                    table.insert(vma);
                    return Err(MmError::Sys { call: "munmap", errno: e });
                }
                dropped_mmio.extend(probe::traps::lock_for_update().remove(from.0, to.0));
                let (head, tail) = vma.cut(from, to);
                if let Some(h) = head {
                    table.insert(h);
                }
                if let Some(t) = tail {
                    table.insert(t);
                }
                dropped.push(vma);
            }
        }
        // Dropping the VMAs may release buffers and call into the exporter:
        // do it with no lock of ours held.
        drop(dropped);
        drop(dropped_mmio);
        Ok(())
    }

    /// `madvise(MADV_HUGEPAGE)` over the parts of `[addr, addr+len)` that are
    /// our VMAs (a hint; our huge faults do not depend on it).
    ///
    /// # Errors
    ///
    /// `ENOMEM` when the range holds no VMA of ours, as Linux reports for an
    /// unmapped range.
    pub fn madvise_hugepage(&self, addr: u64, len: u64) -> Result<(), MmError> {
        let end = addr.checked_add(len).map(VirtAddr).ok_or(MmError::Invalid("range overflows"))?;
        let addr = VirtAddr(addr);
        let table = self.inner.lock_vmas();
        let starts = table.intersecting(addr, end);
        if starts.is_empty() {
            return Err(MmError::Sys { call: "madvise(MADV_HUGEPAGE)", errno: Errno::NOMEM });
        }
        for s in starts {
            let v = &table.by_start[&s];
            let (from, to) = (addr.max(v.vm_start), end.min(v.vm_end));
            sys::madvise_hugepage_owned(from.0 as usize, (to.0 - from.0) as usize)
                .map_err(MmError::sys("madvise(MADV_HUGEPAGE)"))?;
        }
        Ok(())
    }

    /// Every VMA, in address order.
    pub fn vmas(&self) -> Vec<VmaInfo> {
        self.inner.lock_vmas().by_start.values().map(info).collect()
    }

    /// The VMA containing `addr`, if any.
    pub fn find_vma(&self, addr: u64) -> Option<VmaInfo> {
        self.inner.lock_vmas().find(VirtAddr(addr)).map(info)
    }

    /// Kernel-style maps lines for every VMA (see [`VmaInfo::maps_line`]).
    pub fn maps(&self) -> Vec<String> {
        self.vmas().iter().map(VmaInfo::maps_line).collect()
    }

    /// The parts of our VMAs that the kernel maps with PMDs now, from
    /// `/proc/self/smaps` (`ShmemPmdMapped`): one entry per kernel VMA
    /// inside ours with any, in address order. A kernel VMA is one backing
    /// piece of ours (or what is left of it after a split).
    ///
    /// # Errors
    ///
    /// I/O errors reading procfs.
    pub fn pmd_mapped(&self) -> std::io::Result<Vec<crate::maps::SmapsEntry>> {
        let ranges: Vec<(u64, u64)> =
            self.inner.lock_vmas().by_start.values().map(|v| (v.vm_start.0, v.vm_end.0)).collect();
        let (Some(from), Some(to)) = (ranges.first().map(|r| r.0), ranges.last().map(|r| r.1)) else {
            return Ok(Vec::new());
        };
        let entries = crate::maps::proc_self_smaps(from, to)?;
        Ok(entries
            .into_iter()
            .filter(|e| e.shmem_pmd_mapped > 0 && ranges.iter().any(|&(s, end)| e.start < end && s < e.end))
            .collect())
    }

    /// Fault counters since creation.
    pub fn fault_stats(&self) -> FaultStats {
        self.inner.engine.counters.snapshot()
    }

    /// Whether `[addr, addr+len)` overlaps any VMA of ours.
    pub fn is_mapped(&self, addr: u64, len: u64) -> bool {
        self.inner.lock_vmas().overlaps(VirtAddr(addr), VirtAddr(addr.saturating_add(len)))
    }
}

/// The VMA table held across a `fork` ([`AddressSpace::lock_for_fork`]).
#[derive(Debug)]
pub struct ForkGuard<'a> {
    table: MutexGuard<'a, VmaTable>,
    _mmap: std::sync::RwLockWriteGuard<'a, ()>,
}

impl ForkGuard<'_> {
    /// Every VMA, in address order.
    pub fn vmas(&self) -> Vec<VmaInfo> {
        self.table.by_start.values().map(info).collect()
    }
}

/// Maps piece `p` at `va` inside `res`, frame by frame: adjacent mappings
/// of different files never merge, so each frame run is a kernel VMA.
///
/// # Errors
///
/// `EINVAL` when a frame of the piece is not held; the errno of `mmap`.
pub(crate) fn map_frames(res: &Reservation, va: u64, p: &MapPiece, writable: bool) -> Result<(), MmError> {
    let mut va = va;
    let (mut at, end) = (p.paddr.0, p.paddr.0 + p.len);
    while at < end {
        let (fd, file_offset, to_frame_end) =
            p.memory.locate(page::PhysAddr(at)).ok_or(MmError::Invalid("mapping of a frame not held"))?;
        let len = to_frame_end.min(end - at);
        sys::map_shared_fixed(res, va as usize, len as usize, fd, file_offset, writable)
            .map_err(MmError::sys("mmap(MAP_SHARED|MAP_FIXED)"))?;
        va += len;
        at += len;
    }
    Ok(())
}

/// The VMA `req` makes at `start`, and its register access. The VMA keeps
/// its backing's geometry, not its frame descriptors (as a kernel VMA holds
/// the mapped file, not an fd): a process closes every frame it was sent
/// once its mapping calls are done.
fn vma_at(start: VirtAddr, mut req: MapRequest) -> (Vma, Option<Arc<dyn VmMmio>>) {
    let mut detached: Vec<(*const crate::PhysMemory, Arc<crate::PhysMemory>)> = Vec::new();
    for p in &mut req.pieces {
        let key = Arc::as_ptr(&p.memory);
        let shell = match detached.iter().find(|(k, _)| *k == key) {
            Some((_, d)) => d.clone(),
            None => {
                let d = Arc::new(p.memory.detached());
                detached.push((key, d.clone()));
                d
            }
        };
        p.memory = shell;
    }
    let vma = Vma {
        vm_start: start,
        vm_end: VirtAddr(start.0 + req.len),
        vm_pgoff: req.vm_pgoff,
        writable: req.writable,
        path: req.path,
        inode: req.inode,
        mapping: req.mapping,
        pieces: req.pieces,
        ops: req.ops,
    };
    (vma, req.mmio)
}

fn info(v: &Vma) -> VmaInfo {
    VmaInfo {
        vm_start: v.vm_start.0,
        vm_end: v.vm_end.0,
        vm_pgoff: v.vm_pgoff.0,
        writable: v.writable,
        path: v.path.clone(),
        inode: v.inode,
        mapping: v.mapping,
        pieces: v.pieces.iter().map(|p| (p.memory.name().to_owned(), p.paddr.0, p.len)).collect(),
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // 1. Withdraw every mapping from the probe registry. Taking it waits
        //    for the probes in flight, which may still need the fault thread;
        //    afterwards no new probe can enter our ranges.
        let mut dropped_mmio = Vec::new();
        {
            let mut mapped = probe::lock_for_update();
            for v in self.inner.lock_vmas().by_start.values() {
                mapped.remove(v.vm_start.0, v.vm_end.0);
                dropped_mmio.extend(probe::traps::lock_for_update().remove(v.vm_start.0, v.vm_end.0));
            }
        }
        drop(dropped_mmio);
        // 2. Stop the fault thread: nothing of ours can fault any more.
        if let Err(e) = rustix::io::write(&self.stop, &1u64.to_ne_bytes()) {
            tracing::error!(%e, "cannot signal the fault thread to stop");
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the fault thread panicked");
            }
        }
        // 3. Unmap what is left, and drop the VMAs with no lock held.
        let vmas: Vec<Vma> = {
            let _mmap = self.inner.mmap_lock.write().unwrap_or_else(|e| e.into_inner());
            let mut table = self.inner.lock_vmas();
            let starts: Vec<VirtAddr> = table.by_start.keys().copied().collect();
            starts
                .into_iter()
                .filter_map(|s| table.remove(s))
                .inspect(|v| {
                    if let Err(e) = sys::unmap_owned(v.vm_start.0 as usize, v.len() as usize) {
                        tracing::error!(start = %v.vm_start, %e, "munmap at teardown failed");
                    }
                })
                .collect()
        };
        drop(vmas);
    }
}
