//! `madvise` where it meets our mappings: answered as the kernel answers
//! for a VMA that `vfio_pci_core_mmap()` or a dma-buf mmap made
//! (`VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP`, shared, with a file
//! that is no regular file), never passed to the real shared mapping of a
//! frame underneath.
//!
//! Passing them on would be wrong twice: `MADV_REMOVE` would punch a hole
//! in the frame (every process's data, the primary's included),
//! `MADV_DONTNEED` would succeed where the kernel refuses, and
//! `MADV_COLLAPSE` would install huge PTEs without a userfault (so without
//! our status check). Kernel: mm/madvise.c (`madvise_vma_behavior()` and
//! the checks it calls), mm/gup.c for `MADV_POPULATE_*`.
//!
//! Parts of the range that are not ours go to the C library as they are;
//! like `madvise_walk_vmas()`, the walk stops at the first error, and a
//! hole anywhere in the range makes the answer `ENOMEM` once the rest was
//! applied.

use page::{page_align, PAGE_SIZE};
use rustix::io::Errno;
use rustix::thread::CapabilitySet;

use crate::{abi, process};

/// Advice values the kernel has had since 6.13 (glibc's headers may lack
/// the newest).
mod advice {
    pub(super) const DONTNEED_LOCKED: i32 = 24;
    pub(super) const COLLAPSE: i32 = 25;
    pub(super) const GUARD_INSTALL: i32 = 102;
    pub(super) const GUARD_REMOVE: i32 = 103;
}

/// The kernel's answer for one of our VMAs (`writable`: mapped with
/// `PROT_WRITE`); `None` for advice we leave to the kernel's own checks
/// (values it does not know: `EINVAL` before any VMA is looked at).
fn answer_for_ours(advice: i32, writable: bool) -> Option<Result<(), Errno>> {
    Some(match advice {
        // Read-ahead hints set VMA flags, or do nothing for a file without
        // page cache to read (`vfs_fadvise()` on a pseudo file system).
        libc::MADV_NORMAL | libc::MADV_RANDOM | libc::MADV_SEQUENTIAL | libc::MADV_WILLNEED => Ok(()),
        // madvise_dontneed_free_valid_vma(): VM_PFNMAP is forbidden.
        libc::MADV_DONTNEED | libc::MADV_FREE | advice::DONTNEED_LOCKED => Err(Errno::INVAL),
        // madvise_remove(): a shared writable mapping is needed, then
        // vfs_fallocate() of a file that is not regular is ENODEV.
        libc::MADV_REMOVE if !writable => Err(Errno::ACCESS),
        libc::MADV_REMOVE => Err(Errno::NODEV),
        // Deviation: the kernel sets VM_DONTCOPY; a fork child here still
        // takes the mapping over (inherit), which a program asking this
        // cannot tell apart unless it looks in the child.
        libc::MADV_DONTFORK => Ok(()),
        // VM_IO may not be copied into a child.
        libc::MADV_DOFORK => Err(Errno::INVAL),
        // WIPEONFORK is for anonymous memory only.
        libc::MADV_WIPEONFORK => Err(Errno::INVAL),
        libc::MADV_KEEPONFORK => Ok(()),
        // KSM ignores VM_PFNMAP | VM_IO areas; THP hints only set flags.
        libc::MADV_MERGEABLE | libc::MADV_UNMERGEABLE | libc::MADV_HUGEPAGE | libc::MADV_NOHUGEPAGE => Ok(()),
        libc::MADV_DONTDUMP => Ok(()),
        // VM_SPECIAL areas are never dumped.
        libc::MADV_DODUMP => Err(Errno::INVAL),
        // can_madv_lru_vma(): not for VM_PFNMAP.
        libc::MADV_COLD | libc::MADV_PAGEOUT => Err(Errno::INVAL),
        // faultin_page_range(): VM_IO | VM_PFNMAP is an incompatible mapping.
        libc::MADV_POPULATE_READ | libc::MADV_POPULATE_WRITE => Err(Errno::INVAL),
        // VM_NO_KHUGEPAGED; guard regions refuse VM_SPECIAL.
        advice::COLLAPSE | advice::GUARD_INSTALL | advice::GUARD_REMOVE => Err(Errno::INVAL),
        _ => return None,
    })
}

/// `madvise(2)`: ours when `[addr, addr + len)` meets one of our mappings.
pub(crate) fn madvise(addr: u64, len: u64, advice: i32) -> Option<Result<(), Errno>> {
    let p = process::current()?;
    let aspace = p.aspace_if_made()?;
    // The kernel's own argument checks come first and need nothing of ours.
    let plen = page_align(len)?;
    if addr % PAGE_SIZE != 0 || plen == 0 {
        return None;
    }
    let end = addr.checked_add(plen)?;
    if !aspace.is_mapped(addr, plen) {
        return None;
    }
    if advice == libc::MADV_HWPOISON || advice == libc::MADV_SOFT_OFFLINE {
        // madvise_inject_error(): CAP_SYS_ADMIN, then a page reference that
        // a VM_PFNMAP area never gives. Never a real poison of a frame page.
        let admin = rustix::thread::capabilities(None).is_ok_and(|c| c.effective.contains(CapabilitySet::SYS_ADMIN));
        return Some(Err(if admin { Errno::FAULT } else { Errno::PERM }));
    }
    // Advice the kernel does not know is its own EINVAL.
    answer_for_ours(advice, true)?.ok();
    let mut vmas: Vec<_> = aspace.vmas().into_iter().filter(|v| v.vm_end > addr && v.vm_start < end).collect();
    vmas.sort_by_key(|v| v.vm_start);
    let mut unmapped = false;
    let mut at = addr;
    let foreign = |from: u64, to: u64, unmapped: &mut bool| match abi::madvise_foreign(from, to - from, advice) {
        Ok(()) => Ok(()),
        Err(Errno::NOMEM) => {
            *unmapped = true;
            Ok(())
        }
        Err(e) => Err(e),
    };
    for v in &vmas {
        if v.vm_start > at {
            if let Err(e) = foreign(at, v.vm_start, &mut unmapped) {
                return Some(Err(e));
            }
        }
        if let Some(Err(e)) = answer_for_ours(advice, v.writable) {
            return Some(Err(e));
        }
        at = v.vm_end.min(end);
    }
    if at < end {
        if let Err(e) = foreign(at, end, &mut unmapped) {
            return Some(Err(e));
        }
    }
    Some(if unmapped { Err(Errno::NOMEM) } else { Ok(()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_that_would_free_or_punch_device_memory_is_refused_as_the_kernel_refuses_it() {
        assert_eq!(answer_for_ours(libc::MADV_DONTNEED, true), Some(Err(Errno::INVAL)));
        assert_eq!(answer_for_ours(libc::MADV_FREE, true), Some(Err(Errno::INVAL)));
        assert_eq!(answer_for_ours(libc::MADV_REMOVE, true), Some(Err(Errno::NODEV)));
        assert_eq!(answer_for_ours(libc::MADV_REMOVE, false), Some(Err(Errno::ACCESS)));
        assert_eq!(answer_for_ours(libc::MADV_PAGEOUT, true), Some(Err(Errno::INVAL)));
        assert_eq!(answer_for_ours(advice::COLLAPSE, true), Some(Err(Errno::INVAL)));
        assert_eq!(answer_for_ours(libc::MADV_DOFORK, true), Some(Err(Errno::INVAL)));
        assert_eq!(answer_for_ours(libc::MADV_WILLNEED, true), Some(Ok(())));
        assert_eq!(answer_for_ours(libc::MADV_HUGEPAGE, true), Some(Ok(())));
        assert_eq!(answer_for_ours(77, true), None);
    }
}
