//! Mappings a process makes of device and buffer fds: the server runs every
//! check and makes the buffer (`vfio`'s remote mmap paths), keeps the VMA's
//! references (the mapped file, the buffer), and tells the process whenever
//! the buffer's status changes, waiting for it to apply that before a
//! revoke returns. The process maps the plan itself and serves its own
//! faults.
//!
//! ```text
//! process                                  server
//! Mmap{mapping,len,offset,...} + fd  ───▶  checks, buffer, RemoteMapping registered on it
//!                                  ◀───  Notify{seq,mapping,allowed}   (notify connection)
//! Ack{seq}                           ───▶
//!                                  ◀───  Map(plan) + the frames its pieces touch
//! Frames{mapping,skip}               ───▶  (more frames than one message holds)
//!                                  ◀───  Count(n) + n frame memfds
//! Mapped{mapping,addr}               ───▶  its addresses are a BAR mapping (DMA pin checks)
//! ... revoke / un-revoke of the buffer (any thread of the server, memory_lock held):
//!                                  ◀───  Notify{seq,mapping,allowed}
//! zap own pages, Ack{seq}            ───▶  the revoke goes on
//! Unmapped{mapping}                  ───▶  the VMA's references go
//! ```
//!
//! A `fork` child that inherited a mapping sends `Inherit{parent, mapping}`
//! with its own token: it gets its own registration on the same buffer,
//! and its first notification, exactly as if it had made the mapping.

use std::sync::{Arc, Mutex, OnceLock, Weak};

use dmabuf::{DmaBuf, Status};
use mm::PhysMemory;
use rustix::io::Errno;
use vfio::{MmapArgs, RemoteVma};
use wire::{MapPlan, MemoryRef, Piece};

use crate::args::vfio_errno;
use crate::object::{Object, OpenFile};
use crate::process::{Acked, Process, Sent};

/// The zap target of one remote mapping: a zap is a notification to the
/// process that made it, acknowledged before the zap returns, or, when the
/// process does not answer within the bound, a cut-off
/// ([`crate::backstop::cut_off`]).
#[derive(Debug)]
pub(crate) struct RemoteMapping {
    /// Immutable. The process (weak: a process that is gone counts as
    /// having acknowledged).
    process: Weak<Process>,
    /// Immutable. The process's id of the mapping.
    mapping: u64,
    /// Immutable. The mapping's slot in the process's status page, given
    /// back when this registration goes.
    slot: u32,
    /// Set once the mapping exists. Weak: the VMA holds the buffer, and
    /// every caller of a zap holds it too, so a zap never drops the last
    /// reference under the device's locks.
    buffer: OnceLock<Weak<DmaBuf>>,
    /// Held while one notification of this mapping is sent and
    /// acknowledged, with the status read under it: whichever notification
    /// goes last carries the status that is current then.
    notify_lock: Mutex<()>,
}

impl RemoteMapping {
    /// Tells the process the buffer's current status; what is left is to
    /// wait for its ack, returned unless nothing is. Before the mapping
    /// exists there is nothing to tell: the first notification, sent when
    /// it does, reads the status then.
    fn start(&self) -> Option<Pending<'_>> {
        let buf = self.buffer.get().and_then(Weak::upgrade)?;
        let process = self.process.upgrade()?;
        let serial = self.notify_lock.lock().unwrap_or_else(|e| e.into_inner());
        let allowed = buf.status() == Status::Ok;
        match process.send_notification(self.mapping, self.slot, allowed) {
            Sent::Done(acked) => {
                self.after(&process, &buf, allowed, acked);
                None
            }
            Sent::Waiting { seq, deadline } => {
                Some(Pending { target: self, _serial: serial, process, buf, allowed, seq, deadline })
            }
        }
    }

    /// What an ended notification leaves to do: a revoke the process did
    /// not acknowledge within the bound cuts it off from the buffer's
    /// frames; an un-revoke it did not acknowledge needs nothing (its
    /// status-page slot already allows, and its faults find the pages once
    /// it applies the message).
    fn after(&self, process: &Process, buf: &DmaBuf, allowed: bool, acked: Acked) {
        match acked {
            Acked::Yes | Acked::Gone => {}
            Acked::TimedOut if allowed => {
                tracing::warn!(
                    pid = process.pid,
                    mapping = self.mapping,
                    "a process did not acknowledge an un-revoke in time; it maps the pages again once it does"
                );
            }
            Acked::TimedOut => crate::backstop::cut_off(process, self.mapping, buf),
        }
    }

    /// Tells the process the buffer's current status and waits for its
    /// ack (or cuts it off, see [`RemoteMapping::after`]).
    fn notify(&self) {
        if let Some(p) = self.start() {
            p.wait();
        }
    }
}

/// A notification sent and not yet acknowledged, holding the mapping's
/// `notify_lock` (the next notification of the mapping waits for it).
struct Pending<'a> {
    target: &'a RemoteMapping,
    _serial: std::sync::MutexGuard<'a, ()>,
    process: Arc<Process>,
    /// Held by every caller of a zap as well: never the last reference.
    buf: Arc<DmaBuf>,
    allowed: bool,
    seq: u64,
    deadline: std::time::Instant,
}

impl Pending<'_> {
    fn wait(self) {
        let acked = self.process.wait_ack(self.seq, self.deadline);
        self.target.after(&self.process, &self.buf, self.allowed, acked);
    }
}

impl dmabuf::PendingZap for Pending<'_> {
    fn finish(self: Box<Self>) {
        self.wait();
    }
}

impl Drop for RemoteMapping {
    fn drop(&mut self) {
        if let Some(p) = self.process.upgrade() {
            p.free_slot(self.slot);
        }
    }
}

impl dmabuf::CpuMapping for RemoteMapping {
    fn zap(&self) {
        self.notify();
    }

    /// The notification goes out now and its ack is waited for in
    /// `finish`: a revoke reaching several processes waits for all of them
    /// together, and a stopped one costs the bound once, not once each.
    fn start_zap(&self) -> Option<Box<dyn dmabuf::PendingZap + '_>> {
        self.start().map(|p| Box::new(p) as Box<dyn dmabuf::PendingZap + '_>)
    }
}

/// One live mapping of a process: the VMA's references.
#[derive(Debug)]
pub(crate) struct MappingRecord {
    /// The mapping, registered on its buffer; holds the buffer.
    pub(crate) vma: RemoteVma,
    /// The mapped file (`vm_file`): a device file keeps its device, group
    /// and container as long as it is mapped.
    file: Arc<OpenFile>,
}

/// What the reply to an mmap carries: the plan and the memfds it attaches.
#[derive(Debug)]
pub(crate) struct Planned {
    pub(crate) plan: MapPlan,
    /// Each memory of the plan, in the plan's order (`plan.memories[i]`
    /// names the frames of `attach[i]` it attaches).
    pub(crate) attach: Vec<Arc<PhysMemory>>,
}

impl Planned {
    /// The attached frames from the `skip`-th in the plan's order, at most
    /// [`wire::MAX_FDS`] of them: each with its memory and index.
    fn attached(&self, skip: usize) -> impl Iterator<Item = (&Arc<PhysMemory>, u64)> {
        self.attach
            .iter()
            .zip(&self.plan.memories)
            .flat_map(|(m, r)| r.frames.iter().map(move |&i| (m, i)))
            .skip(skip)
            .take(wire::MAX_FDS)
    }
}

/// The id of a memory: its address, stable while it lives (BAR memory
/// lives as long as its device, which is as long as the server).
pub(crate) fn memory_id(m: &Arc<PhysMemory>) -> u64 {
    Arc::as_ptr(m) as usize as u64
}

/// `mmap(2)` of `file` by `process` as its mapping `mapping`.
///
/// # Errors
///
/// `EPROTO` when the process has no notify connection (it could not be told
/// of a revoke); `EEXIST` for a mapping id in use; `ENOMEM` when its status
/// page has no free slot; `ENODEV` for a file
/// without mmap; `EACCES` when the file's open mode does not allow the
/// mapping; else the device's or the buffer's mmap errors.
pub(crate) fn mmap(
    process: &Arc<Process>,
    file: Arc<OpenFile>,
    mapping: u64,
    args: MmapArgs,
) -> Result<Planned, Errno> {
    let target = new_target(process, mapping)?;
    let vma = match &file.object {
        Object::Device(dev) => {
            // do_mmap(): a file must be open for reading, and for writing
            // to be mapped shared and writable.
            if !file.access.read || (args.shared && args.write && !file.access.write) {
                return Err(Errno::ACCESS);
            }
            let fd = dev.fd()?;
            check_process(process, mapping)?;
            fd.mmap_remote(args, target.clone()).map_err(vfio_errno)?
        }
        Object::DmaBuf(b) => {
            check_process(process, mapping)?;
            vfio::mmap_dmabuf_remote(b.handle(), args, target.clone()).map_err(vfio_errno)?
        }
        _ => return Err(Errno::NODEV),
    };
    let planned = plan(&vma);
    register(process, mapping, target, MappingRecord { vma, file });
    Ok(planned)
}

/// Records `record` as `process`'s mapping `mapping` and sends its first
/// notification: the status at this moment, applied before the process
/// learns the mapping exists.
fn register(process: &Process, mapping: u64, target: Arc<RemoteMapping>, record: MappingRecord) {
    let _ = target.buffer.set(Arc::downgrade(record.vma.buffer()));
    process.mappings.lock().unwrap_or_else(|e| e.into_inner()).insert(mapping, Arc::new(record));
    target.notify();
}

/// The zap target of `process`'s new mapping `mapping`, with its slot.
///
/// # Errors
///
/// `ENOMEM` when the process's status page has no free slot.
fn new_target(process: &Arc<Process>, mapping: u64) -> Result<Arc<RemoteMapping>, Errno> {
    Ok(Arc::new(RemoteMapping {
        process: Arc::downgrade(process),
        mapping,
        slot: process.alloc_slot()?,
        buffer: OnceLock::new(),
        notify_lock: Mutex::new(()),
    }))
}

/// `Request::Inherit`: `process`, a fork child of `parent`, holds the
/// parent's mapping `mapping` at the same addresses. It gets a mapping of
/// its own of the same buffer (holding the buffer and the mapped file, as
/// `dup_mmap()` does), under the same id.
///
/// # Errors
///
/// `EINVAL` when the parent has no such mapping; else as [`check_process`].
pub(crate) fn inherit(process: &Arc<Process>, parent: &Process, mapping: u64) -> Result<(), Errno> {
    let from = parent.mappings.lock().unwrap_or_else(|e| e.into_inner()).get(&mapping).cloned();
    let from = from.ok_or(Errno::INVAL)?;
    check_process(process, mapping)?;
    let target = new_target(process, mapping)?;
    let vma = from.vma.inherit(target.clone());
    register(process, mapping, target, MappingRecord { vma, file: Arc::clone(&from.file) });
    Ok(())
}

/// Whether `process` can hold mapping `mapping`: it must be able to hear
/// of revokes, and the id must be free.
fn check_process(process: &Process, mapping: u64) -> Result<(), Errno> {
    if !process.has_notify() {
        tracing::warn!(pid = process.pid, "mmap from a process without a notify connection");
        return Err(Errno::PROTO);
    }
    if process.mappings.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&mapping) {
        return Err(Errno::EXIST);
    }
    Ok(())
}

/// The plan of `vma`: per memory, only the frames its pieces touch.
fn plan(vma: &RemoteVma) -> Planned {
    let mut memories: Vec<MemoryRef> = Vec::new();
    let mut attach: Vec<Arc<PhysMemory>> = Vec::new();
    for p in &vma.pieces {
        let id = memory_id(&p.memory);
        let at = match memories.iter().position(|m| m.id == id) {
            Some(at) => at,
            None => {
                let m = &p.memory;
                memories.push(MemoryRef {
                    id,
                    name: m.name().to_owned(),
                    base: m.base().0,
                    len: m.len(),
                    frame_size: m.frame_size(),
                    frames: Vec::new(),
                });
                attach.push(Arc::clone(m));
                memories.len() - 1
            }
        };
        memories[at].frames.extend(p.memory.frames_of(p.paddr, p.len).map(|i| i as u64));
    }
    for m in &mut memories {
        m.frames.sort_unstable();
        m.frames.dedup();
    }
    let plan = MapPlan {
        len: vma.len,
        vm_pgoff: vma.vm_pgoff.0,
        vma_pgoff_adjust: vma.vma_pgoff_adjust.0,
        writable: vma.writable,
        pieces: vma
            .pieces
            .iter()
            .map(|p| Piece { memory: memory_id(&p.memory), paddr: p.paddr.0, len: p.len })
            .collect(),
        ranges: vma.ranges.iter().map(|r| (r.paddr.0, r.len)).collect(),
        memories,
        traps: vma.traps,
        path: vma.path.clone(),
        inode: vma.inode,
    };
    Planned { plan, attach }
}

/// The reply carrying `planned`'s frames from the `skip`-th on went out:
/// the process was given those frames (a cut-off must reach them).
pub(crate) fn frames_delivered(process: &Process, planned: &Planned, skip: usize) {
    let mut sent = process.frames_sent.lock().unwrap_or_else(|e| e.into_inner());
    sent.extend(planned.attached(skip).map(|(m, i)| (memory_id(m), i)));
}

/// The frame memfds to attach, from the `skip`-th in the plan's order, at
/// most [`wire::MAX_FDS`] of them, borrowed from their memories.
pub(crate) fn memfds(planned: &Planned, skip: usize) -> Vec<std::os::fd::BorrowedFd<'_>> {
    planned.attached(skip).filter_map(|(m, i)| m.frame_fd(i as usize)).collect()
}

/// `Request::Frames`: the plan of `process`'s mapping `mapping` again (its
/// frames are attached from the caller's `skip`).
///
/// # Errors
///
/// `EINVAL` for a mapping the process does not have.
pub(crate) fn replan(process: &Process, mapping: u64) -> Result<Planned, Errno> {
    let record = process.mappings.lock().unwrap_or_else(|e| e.into_inner()).get(&mapping).cloned();
    Ok(plan(&record.ok_or(Errno::INVAL)?.vma))
}

/// `Request::Mapped`: the process placed mapping `mapping` at `addr`.
///
/// # Errors
///
/// `EINVAL` for a mapping the process does not have, or an address that is
/// not page aligned.
pub(crate) fn mapped(process: &Process, mapping: u64, addr: u64) -> Result<(), Errno> {
    let record = process.mappings.lock().unwrap_or_else(|e| e.into_inner()).get(&mapping).cloned();
    let record = record.ok_or(Errno::INVAL)?;
    process.memory.mapped(mapping, addr, &record.vma)
}

/// `Request::Unmapped`: the last VMA of the mapping is gone from the
/// process; its references go.
///
/// # Errors
///
/// `EINVAL` for a mapping the process does not have.
pub(crate) fn unmapped(process: &Process, mapping: u64) -> Result<(), Errno> {
    let record = process.mappings.lock().unwrap_or_else(|e| e.into_inner()).remove(&mapping);
    process.memory.unmapped(mapping);
    match record {
        // Dropped here, with no lock held: it may release the buffer and
        // close the device.
        Some(r) => {
            drop(r);
            Ok(())
        }
        None => Err(Errno::INVAL),
    }
}
