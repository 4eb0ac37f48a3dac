//! The backstop: what the server does about a process that does not
//! acknowledge a revoke within the bound (stopped with SIGSTOP, hung,
//! slow, or hostile).
//!
//! The only zap one process can force on another's page tables is a
//! truncation of the file those pages belong to: every PTE of the file's
//! truncated range, in every process, is gone before `ftruncate` returns,
//! and a later access beyond the end of the file is SIGBUS, whatever that
//! process's fault handler would have done. BAR RAM lives in fixed-size
//! frames, one memfd each, so the server can truncate exactly the frames a
//! revoked buffer covers (`mm::PhysMemory::cut_off`, which snapshots the
//! frame first so that a temporary revoke loses no data). The vfio core
//! restores, after the revoke pass, every cut frame some buffer that is
//! still Ok needs (the primary's own mapping of the same pages through
//! another buffer), and before an un-revoke, every frame it makes
//! reachable again.
//!
//! What the cut-off process sees: its PTEs of the frames are gone. A later
//! access is SIGBUS when the frame is still cut, or a minor fault that its
//! fault thread refuses because the mapping's status-page slot says
//! revoked (written before the notification went out), which is SIGBUS
//! too. The narrow hole that remains is documented in `docs/clients.md`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use dmabuf::DmaBuf;
use mm::PhysMemory;
use page::PhysAddr;

use crate::process::Process;

/// Cuts `process` off from `buffer` after it let the revoke notification
/// of its mapping `mapping` time out: every frame it was sent that lies in
/// the buffer's ranges is cut off, then the cut-off is logged and counted.
///
/// Called by the revoking thread with the device's `memory_lock` held
/// (write), like the zap it replaces; it takes no lock of the server but
/// the process's leaves.
pub(crate) fn cut_off(process: &Process, mapping: u64, buffer: &DmaBuf) {
    let started = Instant::now();
    let memories = memories_of(process);
    let sent = process.frames_sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut frames = 0;
    for r in buffer.ranges() {
        for (&id, m) in &memories {
            frames += cut_off_range(m, r.paddr, r.len, |i| sent.contains(&(id, i as u64)));
        }
    }
    let took = started.elapsed();
    let total = process.backstop().count_cut_off();
    tracing::warn!(
        pid = process.pid,
        mapping,
        buffer = %buffer.display_name(),
        frames,
        took_us = took.as_micros() as u64,
        cut_offs = total,
        "process cut off: it did not acknowledge a revoke within {:?}",
        process.backstop().ack_timeout()
    );
}

/// The device memories of `process`'s mappings, by the id its plans give
/// them (the memory's address).
fn memories_of(process: &Process) -> HashMap<u64, Arc<PhysMemory>> {
    let records: Vec<_> = process.mappings.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
    let mut out = HashMap::new();
    for r in records {
        for p in &r.vma.pieces {
            out.entry(crate::mapping::memory_id(&p.memory)).or_insert_with(|| Arc::clone(&p.memory));
        }
    }
    out
}

/// Cuts off every frame of `memory` that `[paddr, paddr + len)` touches and
/// `sent` names (frames the process never received are not in its page
/// tables); returns how many were newly cut. A range outside the memory
/// touches none. A frame that cannot be cut is logged: its pages stay
/// reachable by the process until its own notify thread zaps them.
fn cut_off_range(memory: &PhysMemory, paddr: PhysAddr, len: u64, sent: impl Fn(usize) -> bool) -> usize {
    let mut n = 0;
    for i in memory.frames_of(paddr, len).filter(|&i| sent(i)) {
        match memory.cut_off(i) {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => tracing::error!(memory = memory.name(), frame = i, %e, "cannot cut a frame off"),
        }
    }
    n
}
