//! `mmap`, `munmap`, `mremap` and `mprotect` where they meet our mappings.
//!
//! An mmap of an object fd asks the server (`Request::Mmap`: every check
//! of the in-process core, the buffer, the remote CPU mapping), then maps
//! the plan it answers with in this process's address space
//! (`mm::AddressSpace`: reservation, shared mappings of the received BAR
//! memfds, userfaultfd registration), with [`ClientVma`] serving its
//! faults and, for register pages, [`ClientMmio`] its trapped accesses.
//!
//! Our mappings are real mappings, so calls on other ranges need nothing;
//! a call whose range meets ours is handled here: `munmap` removes ours
//! through the address space (which splits VMAs as Linux does) and the
//! rest with the C library; a foreign `MAP_FIXED` over ours removes ours
//! first; when no part of a mapping is left, the server hears
//! `Request::Unmapped` and lets the buffer go. `mremap` answers as the
//! kernel does for a `VM_PFNMAP | VM_DONTEXPAND` mapping (shrink and move
//! work, growth is `EFAULT`, `MREMAP_DONTUNMAP` is `EINVAL`); `mprotect`
//! refuses to make a read-only mapping writable (`EACCES`).

use std::collections::BTreeSet;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use dmabuf::PhysVec;
use mm::{AddressSpace, MapPiece, MapRequest, MappingId, VmMmio};
use page::{page_align, PgOff, PhysAddr, VirtAddr, PAGE_SIZE};
use rustix::io::Errno;
use wire::{MapPlan, Reply, Request};

use crate::process::{self, Process};
use crate::vma::{ClientMapping, ClientMmio, ClientVma, Placed};
use crate::{abi, fds, pool};

/// The arguments of one `mmap` call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MmapCall {
    pub(crate) addr: u64,
    pub(crate) len: u64,
    pub(crate) prot: i32,
    pub(crate) flags: i32,
    pub(crate) offset: i64,
}

/// `mmap`: ours when `fd` is an object fd; a foreign `MAP_FIXED` first
/// removes our mappings in its range.
pub(crate) fn mmap(call: &MmapCall, fd: Option<BorrowedFd<'_>>) -> Option<Result<u64, Errno>> {
    let p = process::current()?;
    match fd.filter(|&fd| fds::tag(fd).is_some()) {
        Some(fd) => Some(map(p, call, fd)),
        None => {
            if call.flags & libc::MAP_FIXED != 0 {
                if let (Some(aspace), Some(len)) = (p.aspace_if_made(), page_align(call.len)) {
                    if call.addr % PAGE_SIZE == 0 && aspace.is_mapped(call.addr, len) {
                        if let Err(e) = unmap_ours(p, aspace, call.addr, len) {
                            return Some(Err(e));
                        }
                    }
                }
            }
            None
        }
    }
}

fn map(p: &'static Process, call: &MmapCall, fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    // The checks mmap(2) makes before it looks at the address space.
    if call.len == 0 || call.offset < 0 || call.offset as u64 % PAGE_SIZE != 0 {
        return Err(Errno::INVAL);
    }
    let len = page_align(call.len).ok_or(Errno::NOMEM)?;
    let fixed = call.flags & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE) != 0;
    if fixed && call.addr % PAGE_SIZE != 0 {
        return Err(Errno::INVAL);
    }
    p.ensure_notify()?;
    let aspace = p.aspace()?;
    if call.flags & libc::MAP_FIXED_NOREPLACE != 0 {
        aspace.check_free(call.addr, len).map_err(|e| e.errno())?;
    }
    let id = aspace.new_mapping();
    let mapping = Arc::new(ClientMapping::new(id.0));
    p.mappings().insert(id.0, mapping.clone());
    let req = Request::Mmap {
        mapping: id.0,
        len: call.len,
        offset: call.offset as u64,
        write: call.prot & libc::PROT_WRITE != 0,
        shared: call.flags & libc::MAP_SHARED != 0,
    };
    let (plan, memfds) = match p.call(&req, &[fd]) {
        Ok((Reply::Map(plan), fds)) => (plan, fds),
        Ok((other, _)) => {
            p.mappings().remove(&id.0);
            return Err(pool::unexpected(&other));
        }
        Err(e) => {
            p.mappings().remove(&id.0);
            return Err(e);
        }
    };
    let placed = place(p, aspace, call, &mapping, plan, memfds);
    match placed {
        Ok(va) => {
            report_placed(p, id.0, va);
            Ok(va)
        }
        Err(e) => {
            release(p, id.0);
            Err(e)
        }
    }
}

/// Maps the server's plan and records how (for `mremap`).
fn place(
    p: &Process,
    aspace: &AddressSpace,
    call: &MmapCall,
    mapping: &Arc<ClientMapping>,
    plan: MapPlan,
    memfds: Vec<std::os::fd::OwnedFd>,
) -> Result<u64, Errno> {
    // Held for the mapping calls only: dropped (closed) when this returns.
    let memories = p.frame_memories(mapping.id, &plan.memories, memfds)?;
    let pieces = plan
        .pieces
        .iter()
        .map(|pc| {
            let memory = memories.iter().find(|(id, _)| *id == pc.memory).map(|(_, m)| m.clone()).ok_or(Errno::IO)?;
            Ok(MapPiece { memory, paddr: PhysAddr(pc.paddr), len: pc.len })
        })
        .collect::<Result<Vec<_>, Errno>>()?;
    let ops = Arc::new(ClientVma {
        mapping: mapping.clone(),
        ranges: plan.ranges.iter().map(|&(paddr, len)| PhysVec { paddr: PhysAddr(paddr), len }).collect(),
        vma_pgoff_adjust: PgOff(plan.vma_pgoff_adjust),
        traps: plan.traps,
    });
    let mmio: Option<Arc<dyn VmMmio>> = plan.traps.then(|| Arc::new(ClientMmio { id: mapping.id }) as _);
    let req = |addr: Option<u64>| MapRequest {
        mapping: MappingId(mapping.id),
        len: plan.len,
        vm_pgoff: PgOff(plan.vm_pgoff),
        writable: plan.writable,
        pieces: pieces.clone(),
        ops: ops.clone() as Arc<dyn mm::VmOperations>,
        path: plan.path.clone(),
        inode: plan.inode,
        addr: addr.map(VirtAddr),
        mmio: mmio.clone(),
    };
    let va = if call.flags & libc::MAP_FIXED != 0 {
        unmap_range(p, aspace, call.addr, plan.len)?;
        aspace.mmap(req(Some(call.addr)))
    } else if call.flags & libc::MAP_FIXED_NOREPLACE != 0 {
        aspace.mmap(req(Some(call.addr)))
    } else if call.addr != 0 {
        // A hint: taken when free, as get_unmapped_area() does.
        let hint = page_align(call.addr).filter(|h| h.checked_add(plan.len).is_some());
        match hint.map(|h| aspace.mmap(req(Some(h)))) {
            Some(Ok(va)) => Ok(va),
            _ => aspace.mmap(req(None)),
        }
    } else {
        aspace.mmap(req(None))
    }
    .map_err(|e| e.errno())?;
    let detached: Vec<_> = memories.iter().map(|(_, m)| Arc::new(m.detached())).collect();
    let pieces = pieces
        .into_iter()
        .map(|mut pc| {
            if let Some(at) = memories.iter().position(|(_, m)| Arc::ptr_eq(m, &pc.memory)) {
                pc.memory = detached[at].clone();
            }
            pc
        })
        .collect();
    let memories = plan.memories.into_iter().zip(detached).collect();
    let placed = Placed { vm_pgoff: plan.vm_pgoff, pieces, ops, mmio, path: plan.path, inode: plan.inode, memories };
    let _ = mapping.placed.set(placed);
    tracing::debug!(va = format_args!("{:#x}", va.0), len = plan.len, mapping = mapping.id, "mapped");
    Ok(va.0)
}

/// Tells the server where mapping `id` starts, so its DMA-map checks treat
/// those addresses as a BAR mapping (`VM_PFNMAP`) and never read them as
/// ordinary memory. A failure only costs that knowledge: logged.
pub(crate) fn report_placed(p: &Process, id: u64, addr: u64) {
    if let Err(e) = p.call_ok(&Request::Mapped { mapping: id, addr }, &[]) {
        tracing::warn!(mapping = id, %e, "cannot tell the server where a mapping is");
    }
}

/// Forgets mapping `id` and tells the server its buffer may go.
fn release(p: &Process, id: u64) {
    p.mappings().remove(&id);
    if let Err(e) = p.call_ok(&Request::Unmapped { mapping: id }, &[]) {
        tracing::warn!(mapping = id, %e, "cannot tell the server a mapping is gone");
    }
}

/// The mapping ids with a VMA in `[addr, addr + len)`, and the parts of the
/// range that are not ours.
fn survey(aspace: &AddressSpace, addr: u64, len: u64) -> (BTreeSet<u64>, Vec<(u64, u64)>) {
    let end = addr + len;
    let mut ids = BTreeSet::new();
    let mut gaps = Vec::new();
    let mut at = addr;
    for v in aspace.vmas().iter().filter(|v| v.vm_end > addr && v.vm_start < end) {
        ids.insert(v.mapping.0);
        if v.vm_start > at {
            gaps.push((at, v.vm_start - at));
        }
        at = at.max(v.vm_end);
    }
    if at < end {
        gaps.push((at, end - at));
    }
    (ids, gaps)
}

/// Tells the server about every mapping of `ids` that has no VMA left.
fn released_after_unmap(p: &Process, aspace: &AddressSpace, ids: BTreeSet<u64>) {
    let left: BTreeSet<u64> = aspace.vmas().iter().map(|v| v.mapping.0).collect();
    for id in ids.difference(&left) {
        release(p, *id);
    }
}

/// Removes our mappings from `[addr, addr + len)` (page aligned).
fn unmap_ours(p: &Process, aspace: &AddressSpace, addr: u64, len: u64) -> Result<(), Errno> {
    let (ids, _) = survey(aspace, addr, len);
    aspace.munmap(addr, len).map_err(|e| e.errno())?;
    released_after_unmap(p, aspace, ids);
    Ok(())
}

/// Removes everything from `[addr, addr + len)`: ours here, the rest with
/// the C library.
fn unmap_range(p: &Process, aspace: &AddressSpace, addr: u64, len: u64) -> Result<(), Errno> {
    let (ids, gaps) = survey(aspace, addr, len);
    aspace.munmap(addr, len).map_err(|e| e.errno())?;
    for (a, l) in gaps {
        abi::unmap_foreign(a, l)?;
    }
    released_after_unmap(p, aspace, ids);
    Ok(())
}

/// Our address space, when `[addr, addr + len)` (page-rounded) meets one
/// of our mappings.
fn meets_ours(addr: u64, len: u64) -> Option<(&'static Process, &'static AddressSpace, u64)> {
    let p = process::current()?;
    let aspace = p.aspace_if_made()?;
    let len = page_align(len.max(1))?;
    addr.checked_add(len)?;
    aspace.is_mapped(addr, len).then_some((p, aspace, len))
}

/// `munmap`.
pub(crate) fn munmap(addr: u64, len: u64) -> Option<Result<(), Errno>> {
    if len == 0 {
        return None;
    }
    let (p, aspace, len) = meets_ours(addr, len)?;
    if addr % PAGE_SIZE != 0 {
        return Some(Err(Errno::INVAL));
    }
    Some(unmap_range(p, aspace, addr, len))
}

/// `mprotect`: `EACCES` when adding write access to a read-only mapping
/// of ours; otherwise the C library's.
pub(crate) fn mprotect(addr: u64, len: u64, prot: i32) -> Option<Result<(), Errno>> {
    let (_, aspace, len) = meets_ours(addr, len)?;
    let end = addr + len;
    let read_only = aspace.vmas().iter().any(|v| v.vm_end > addr && v.vm_start < end && !v.writable);
    (prot & libc::PROT_WRITE != 0 && read_only).then_some(Err(Errno::ACCESS))
}

/// `mremap` of one of our mappings, as the kernel answers for a
/// `VM_PFNMAP | VM_DONTEXPAND` VMA (`mremap()`, `mremap_to()`,
/// `vma_to_resize()` in mm/mremap.c).
pub(crate) fn mremap(old: u64, old_len: u64, new_len: u64, flags: i32, new: u64) -> Option<Result<u64, Errno>> {
    let (p, aspace, _) = meets_ours(old, old_len)?;
    Some(remap(p, aspace, old, old_len, new_len, flags, new))
}

fn remap(
    p: &Process,
    aspace: &AddressSpace,
    old: u64,
    old_len: u64,
    new_len: u64,
    flags: i32,
    new: u64,
) -> Result<u64, Errno> {
    let known = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP;
    let maymove = flags & libc::MREMAP_MAYMOVE != 0;
    if flags & !known != 0
        || (flags & libc::MREMAP_FIXED != 0 && !maymove)
        || (flags & libc::MREMAP_DONTUNMAP != 0 && (!maymove || old_len != new_len))
        || old % PAGE_SIZE != 0
    {
        return Err(Errno::INVAL);
    }
    let (old_len, new_len) = (page_align(old_len).ok_or(Errno::INVAL)?, page_align(new_len).ok_or(Errno::INVAL)?);
    if new_len == 0 {
        return Err(Errno::INVAL);
    }
    if aspace.find_vma(old).is_none() {
        return Err(Errno::FAULT);
    }
    if flags & (libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP) != 0 {
        return remap_to(p, aspace, old, old_len, new_len, flags, new);
    }
    if old_len >= new_len {
        if old_len > new_len {
            unmap_range(p, aspace, old + new_len, old_len - new_len)?;
        }
        return Ok(old);
    }
    // Growth: VM_DONTEXPAND | VM_PFNMAP (and a range past the VMA) is EFAULT.
    Err(Errno::FAULT)
}

fn remap_to(
    p: &Process,
    aspace: &AddressSpace,
    old: u64,
    mut old_len: u64,
    new_len: u64,
    flags: i32,
    new: u64,
) -> Result<u64, Errno> {
    const TASK_SIZE: u64 = (1 << 47) - PAGE_SIZE;
    if new % PAGE_SIZE != 0 || new_len > TASK_SIZE || new > TASK_SIZE - new_len {
        return Err(Errno::INVAL);
    }
    if old + old_len > new && new + new_len > old {
        return Err(Errno::INVAL);
    }
    if flags & libc::MREMAP_FIXED != 0 {
        unmap_range(p, aspace, new, new_len)?;
    }
    if old_len > new_len {
        unmap_range(p, aspace, old + new_len, old_len - new_len)?;
        old_len = new_len;
    }
    if flags & libc::MREMAP_DONTUNMAP != 0 {
        return Err(Errno::INVAL);
    }
    let vma = aspace.find_vma(old).ok_or(Errno::FAULT)?;
    if old_len > vma.vm_end - old || new_len != old_len {
        return Err(Errno::FAULT);
    }
    let m = p.mappings().get(&vma.mapping.0).cloned().ok_or(Errno::FAULT)?;
    let placed = m.placed.get().ok_or(Errno::FAULT)?;
    let vm_pgoff = vma.vm_pgoff.wrapping_add((old - vma.vm_start) / PAGE_SIZE);
    let first = vm_pgoff.wrapping_sub(placed.vm_pgoff);
    // The process holds no frame: ask for them again to map the new range.
    let refs: Vec<wire::MemoryRef> = placed.memories.iter().map(|(r, _)| r.clone()).collect();
    let fresh = p.frame_memories(m.id, &refs, Vec::new())?;
    let pieces = placed
        .slice(first, new_len)
        .into_iter()
        .map(|mut pc| {
            let at = placed.memories.iter().position(|(_, d)| Arc::ptr_eq(d, &pc.memory)).ok_or(Errno::IO)?;
            pc.memory = fresh[at].1.clone();
            Ok(pc)
        })
        .collect::<Result<Vec<_>, Errno>>()?;
    let req = MapRequest {
        mapping: vma.mapping,
        len: new_len,
        vm_pgoff: PgOff(vm_pgoff),
        writable: vma.writable,
        pieces,
        ops: placed.ops.clone() as Arc<dyn mm::VmOperations>,
        path: placed.path.clone(),
        inode: placed.inode,
        addr: Some(VirtAddr(new)),
        mmio: placed.mmio.clone(),
    };
    aspace.mmap(req).map_err(|e| e.errno())?;
    aspace.munmap(old, old_len).map_err(|e| e.errno())?;
    // The server records a mapping by the address of its first page; the
    // moved part lands where that page would now be.
    report_placed(p, m.id, new.wrapping_sub(first.wrapping_mul(PAGE_SIZE)));
    Ok(new)
}
