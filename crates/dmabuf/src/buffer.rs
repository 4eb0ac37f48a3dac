//! The buffer object: export, immutable description, name, reservation lock, release.
//!
//! Analogous to Linux's `struct dma_buf` with `dma_buf_export()`, `dma_buf_set_name()` and
//! the release half of `dma_buf_file_release()` (drivers/dma-buf/dma-buf.c).

use std::any::Any;
use std::fmt;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use mm::AddressSpace;
use page::VirtAddr;

use crate::attach::Importer;
use crate::cpu::CpuMapping;
use crate::mmap::VmArea;
use crate::types::{validate_exporter_name, validate_ranges, validate_user_name};
use crate::{AccessMode, Error, PhysVec, Status};

/// Exporter operations, called by the buffer core.
///
/// Implemented by the exporter's private object (the `priv` of the kernel's exporters).
/// Analogous to Linux's `struct dma_buf_ops`, reduced to what the core calls.
pub trait DmaBufOps: Send + Sync + fmt::Debug + 'static {
    /// The last reference to the buffer is gone: no handle, attachment, importer mapping or
    /// CPU mapping holding it is left. Called exactly once, from `Drop`, with no lock of
    /// this crate held. Analogous to `dma_buf_ops.release`.
    fn release(&self, buf: &DmaBuf);

    /// Maps `vma` of `buf` into `aspace` and returns its start address. Called by
    /// [`DmaBuf::mmap`] once the core's checks passed (access mode, window inside the
    /// buffer); the exporter makes its own (status, sharing) and then creates the mapping,
    /// which should register itself with [`DmaBuf::register_cpu_mapping`] so a revoke
    /// finds it. The receiver is the exporter's own object, typed, so the mapping it
    /// creates can hold it without a downcast. Analogous to `dma_buf_ops.mmap`.
    ///
    /// The default is an exporter without CPU mappings.
    ///
    /// # Errors
    ///
    /// - `EINVAL` ([`Error::NoMmap`]) by default, as `dma_buf_mmap_internal()` answers for
    ///   an exporter without an mmap operation.
    /// - The exporter's own errno ([`Error::Exporter`]).
    fn mmap(self: Arc<Self>, buf: &Arc<DmaBuf>, aspace: &AddressSpace, vma: &VmArea) -> Result<VirtAddr, Error> {
        let _ = (buf, aspace, vma);
        Err(Error::NoMmap)
    }

    /// The exporter's private object, so the exporter can recognise its own buffers (the
    /// kernel compares `dmabuf->ops`) and reach its data by downcasting.
    fn as_any(&self) -> &dyn Any;
}

/// Everything an exporter supplies to create a buffer. Analogous to `struct
/// dma_buf_export_info`.
#[derive(Debug)]
pub struct ExportInfo {
    /// The exporter's operations and private data.
    pub ops: Arc<dyn DmaBufOps>,
    /// The buffer's ranges, concatenated in order (the exporter's `phys_vec`).
    pub ranges: Vec<PhysVec>,
    /// Name shown for the buffer, e.g. `dev0:0000/1`; `None` shows the id.
    pub name: Option<String>,
    /// Access mode of the buffer's file.
    pub mode: AccessMode,
    /// Status the buffer starts in; the exporter decides it under its serialising lock.
    pub initial_status: Status,
}

/// Source of [`DmaBuf::id`]: never reused within a process, like an inode number.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What the reservation lock protects, besides the status writes.
#[derive(Debug, Default)]
pub(crate) struct ResvState {
    /// Live attachments, in attach order.
    pub(crate) attachments: Vec<AttachmentEntry>,
    /// Source of attachment ids.
    pub(crate) next_attachment: u64,
    /// Live importer mappings of all attachments. A revoke waits for this to reach zero.
    /// Kernel: the exporter's `kref`, without its base reference (see
    /// [`DmaBuf::set_status`]).
    pub(crate) importer_mappings: usize,
}

/// One attachment as the buffer sees it.
#[derive(Debug)]
pub(crate) struct AttachmentEntry {
    pub(crate) id: u64,
    /// Weak, because the importer owns its attachment and mappings (which own the buffer);
    /// a strong reference here would close the cycle importer → mapping → buffer →
    /// importer and leak all three.
    pub(crate) importer: Weak<dyn Importer>,
}

/// A DMA buffer; the object and its "file" are one thing here.
///
/// Always lives in an `Arc`: handles ([`crate::DmaBufFd`]), attachments, importer mappings
/// and the exporter's CPU mappings each hold a reference, and dropping the last one calls
/// [`DmaBufOps::release`]. Analogous to Linux's `struct dma_buf` together with its file.
pub struct DmaBuf {
    /// Immutable after export.
    pub(crate) id: u64,
    /// Immutable after export.
    pub(crate) ops: Arc<dyn DmaBufOps>,
    /// Immutable after export.
    pub(crate) ranges: Box<[PhysVec]>,
    /// Immutable after export; sum of the range lengths.
    pub(crate) size: u64,
    /// Immutable after export.
    pub(crate) mode: AccessMode,
    /// Protected by: itself (the kernel's `name_lock`), a leaf lock.
    pub(crate) name: Mutex<Option<String>>,
    /// A [`Status`] as `u8`. Written only under `resv` (and, by contract, the exporter's
    /// serialising lock); read locklessly by [`DmaBuf::status`].
    pub(crate) status: AtomicU8,
    /// The reservation lock (the kernel's `dmabuf->resv`, without fences).
    pub(crate) resv: Mutex<ResvState>,
    /// Paired with `resv`: signalled when `importer_mappings` drops to zero.
    pub(crate) unmapped: Condvar,
    /// Protected by: itself, a leaf lock. Bound on a revoke's importer wait.
    pub(crate) revoke_timeout: Mutex<Option<Duration>>,
    /// Protected by: itself, a leaf lock. Every CPU mapping ever registered; dead entries
    /// are pruned lazily.
    pub(crate) cpu_mappings: Mutex<Vec<Weak<dyn CpuMapping>>>,
    /// Set while a `set_status` runs; detects callers that break its serialisation
    /// precondition (debug builds only).
    pub(crate) in_set_status: AtomicBool,
}

/// The held reservation lock of one buffer. Analogous to holding `dma_resv_lock()`.
///
/// Functions that need the lock held take `&mut ResvGuard` (the `_locked` variants), so
/// the compiler checks what the kernel asserts with `dma_resv_assert_held()`.
pub struct ResvGuard<'a> {
    pub(crate) buf: &'a DmaBuf,
    pub(crate) state: MutexGuard<'a, ResvState>,
}

impl DmaBuf {
    /// `dma_buf_export()`—creates a buffer over `info.ranges`.
    ///
    /// The size is the sum of the range lengths. Nothing is created when validation fails,
    /// and [`DmaBufOps::release`] is then not called: the exporter still owns its object.
    /// From success on, dropping the last `Arc` is the only way the buffer goes away.
    ///
    /// # Errors
    ///
    /// - `EINVAL`: no ranges, a zero-length or unaligned range, a size that overflows, or
    ///   a name containing NUL.
    /// - `EOVERFLOW`: a range whose end overflows.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use dmabuf::{AccessMode, DmaBuf, DmaBufOps, ExportInfo, PhysVec, Status};
    /// use page::PhysAddr;
    ///
    /// #[derive(Debug)]
    /// struct Exporter;
    /// impl DmaBufOps for Exporter {
    ///     fn release(&self, _buf: &DmaBuf) {}
    ///     fn as_any(&self) -> &dyn std::any::Any { self }
    /// }
    ///
    /// let buf = DmaBuf::export(ExportInfo {
    ///     ops: Arc::new(Exporter),
    ///     ranges: vec![PhysVec { paddr: PhysAddr(0x10_0000), len: 0x2000 }, PhysVec { paddr: PhysAddr(0), len: 0x1000 }],
    ///     name: Some("dev0:0000/1".into()),
    ///     mode: AccessMode::ReadWrite,
    ///     initial_status: Status::Ok,
    /// })?;
    /// assert_eq!(buf.size(), 0x3000);
    /// assert_eq!(buf.nr_ranges(), 2);
    /// # Ok::<(), dmabuf::Error>(())
    /// ```
    pub fn export(info: ExportInfo) -> Result<Arc<DmaBuf>, Error> {
        let size = validate_ranges(&info.ranges)?;
        if let Some(name) = &info.name {
            validate_exporter_name(name)?;
        }
        Ok(Arc::new(DmaBuf {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ops: info.ops,
            ranges: info.ranges.into_boxed_slice(),
            size,
            mode: info.mode,
            name: Mutex::new(info.name),
            status: AtomicU8::new(info.initial_status as u8),
            resv: Mutex::new(ResvState::default()),
            unmapped: Condvar::new(),
            revoke_timeout: Mutex::new(None),
            cpu_mappings: Mutex::new(Vec::new()),
            in_set_status: AtomicBool::new(false),
        }))
    }

    /// Size in bytes, the sum of the range lengths.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The ranges, in buffer-offset order (the exporter's `phys_vec`).
    #[must_use]
    pub fn ranges(&self) -> &[PhysVec] {
        &self.ranges
    }

    /// Number of ranges.
    #[must_use]
    pub fn nr_ranges(&self) -> usize {
        self.ranges.len()
    }

    /// The buffer's name, if any.
    #[must_use]
    pub fn name(&self) -> Option<String> {
        lock(&self.name).clone()
    }

    /// `DMA_BUF_SET_NAME`—sets the name shown for the buffer.
    ///
    /// # Errors
    ///
    /// - `EINVAL`: the name needs more than [`crate::DMA_BUF_NAME_LEN`] bytes with its NUL,
    ///   or contains NUL.
    pub fn set_name(&self, name: &str) -> Result<(), Error> {
        validate_user_name(name)?;
        *lock(&self.name) = Some(name.to_owned());
        Ok(())
    }

    /// The name if set, else the id: what user-visible views show.
    #[must_use]
    pub fn display_name(&self) -> String {
        self.name().unwrap_or_else(|| self.id.to_string())
    }

    /// Access mode of the buffer's file.
    #[must_use]
    pub fn mode(&self) -> AccessMode {
        self.mode
    }

    /// The exporter's operations (compare or downcast them to recognise own buffers).
    #[must_use]
    pub fn ops(&self) -> &Arc<dyn DmaBufOps> {
        &self.ops
    }

    /// Process-unique number of the buffer, like the inode number of a dma-buf file.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Current status, read without a lock.
    ///
    /// Stable while the caller holds the exporter's serialising lock (`memory_lock`)
    /// or this buffer's `resv`; otherwise best-effort, good for an early failure only. The
    /// authoritative checks are [`ResvGuard::status`] (attach, importer map, the start of a
    /// CPU fault) and a re-read under the exporter's lock (the end of a CPU fault).
    #[must_use]
    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Acquire))
    }

    /// Takes the buffer's reservation lock. Analogous to `dma_resv_lock(dmabuf->resv)`.
    ///
    /// Must not be called while this thread already holds it (it is not recursive), in
    /// particular not from [`crate::Importer::invalidate_mappings`].
    pub fn resv(&self) -> ResvGuard<'_> {
        ResvGuard { buf: self, state: self.lock_state() }
    }

    /// Number of live attachments. Takes `resv`.
    #[must_use]
    pub fn attachments(&self) -> usize {
        self.lock_state().attachments.len()
    }

    /// Number of live importer mappings. Takes `resv`.
    #[must_use]
    pub fn importer_mappings(&self) -> usize {
        self.lock_state().importer_mappings
    }

    /// Locks `resv`. A panic under the lock (say, in an importer's callback) leaves the
    /// counters consistent, because each update is a single statement, so poisoning is
    /// ignored rather than spread to every later user of the buffer.
    pub(crate) fn lock_state(&self) -> MutexGuard<'_, ResvState> {
        lock(&self.resv)
    }

    /// Publishes a new status; the guard proves `resv` is held.
    pub(crate) fn store_status(&self, _resv: &MutexGuard<'_, ResvState>, status: Status) {
        self.status.store(status as u8, Ordering::Release);
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        // Every attachment and importer mapping holds an Arc, so none can be left.
        debug_assert_eq!(self.lock_state().importer_mappings, 0);
        self.ops.release(self);
    }
}

impl fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuf")
            .field("id", &self.id)
            .field("name", &self.name())
            .field("size", &format_args!("{:#x}", self.size))
            .field("nr_ranges", &self.ranges.len())
            .field("mode", &self.mode)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl<'a> ResvGuard<'a> {
    /// The buffer whose lock this is.
    #[must_use]
    pub fn buffer(&self) -> &'a DmaBuf {
        self.buf
    }

    /// The status, stable while this guard lives.
    #[must_use]
    pub fn status(&self) -> Status {
        self.buf.status()
    }

    /// Number of live attachments.
    #[must_use]
    pub fn attachments(&self) -> usize {
        self.state.attachments.len()
    }

    /// Number of live importer mappings.
    #[must_use]
    pub fn importer_mappings(&self) -> usize {
        self.state.importer_mappings
    }

    /// Panics unless this guard is `buf`'s lock: passing another buffer's guard to a
    /// `_locked` function is a bug in the caller (the kernel's lockdep would fire).
    pub(crate) fn assert_held_for(&self, buf: &DmaBuf) {
        assert!(ptr::eq(self.buf, buf), "resv of buffer {} passed where buffer {} is locked", self.buf.id, buf.id);
    }
}

impl fmt::Debug for ResvGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResvGuard")
            .field("buffer", &self.buf.id)
            .field("attachments", &self.state.attachments.len())
            .field("importer_mappings", &self.state.importer_mappings)
            .finish()
    }
}

/// Locks a mutex, ignoring poisoning: every lock of this crate guards data that is
/// consistent between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
