//! The legacy container (`drivers/vfio/container.c`) and its Type1 IOMMU
//! driver (`drivers/vfio/vfio_iommu_type1.c`), as of the kernels that check
//! map and unmap ranges for overflow with `EOVERFLOW` (the upstream VFIO
//! selftests expect it) and answer `VFIO_UPDATE_VADDR` only once an IOMMU
//! is set.
//!
//! Deviations: no dirty-page tracking (`VFIO_IOMMU_DIRTY_PAGES` is
//! `ENOTTY`, `VFIO_IOMMU_GET_INFO` has no migration capability, and an
//! unmap asking for the dirty bitmap is `EINVAL`, which is what the kernel
//! answers while tracking is off); no locked-memory accounting.

use std::sync::{Arc, Mutex};

use rustix::io::Errno;
use wire::msg::IoctlArg;

use super::arg::{value, Raw, UserStruct};
use super::dma::{self, Dir, Prot, Target};
use super::host::{CACHE_COHERENT, DMA_ENTRY_LIMIT, DOMAIN_PGSIZES, PAGE_SIZE, TYPE1_IOVA_RANGES};
use super::iova::IovaMap;
use super::uapi::*;
use super::{lock, DmaSpace, IoctlOut, PinFlags, ProcessMemory};

const TYPE1: u64 = VFIO_TYPE1_IOMMU as u64;
const TYPE1V2: u64 = VFIO_TYPE1v2_IOMMU as u64;
const UNMAP_ALL: u64 = VFIO_UNMAP_ALL as u64;
const UPDATE_VADDR: u64 = VFIO_UPDATE_VADDR as u64;
const DMA_CC: u64 = VFIO_DMA_CC_IOMMU as u64;

/// A container (`struct vfio_container`).
#[derive(Debug, Default)]
pub(crate) struct ContainerState {
    /// The Type1 IOMMU, once `VFIO_SET_IOMMU` succeeded
    /// (`container->iommu_driver` and `iommu_data`).
    iommu: Option<Type1>,
}

/// `struct vfio_iommu`.
#[derive(Debug)]
struct Type1 {
    /// Opened as `VFIO_TYPE1v2_IOMMU`: unmaps may not bisect a mapping.
    v2: bool,
    /// The user's mappings, by IOVA (`dma_list`).
    dmas: IovaMap<Dma>,
    /// How many more mappings may be made (`dma_avail`).
    dma_avail: u32,
}

/// `struct vfio_dma`.
#[derive(Debug)]
struct Dma {
    /// The process address the first IOVA maps.
    vaddr: u64,
    prot: Prot,
    /// The process that made (or last re-pointed) the mapping (`task`).
    mm: Arc<dyn ProcessMemory>,
    /// Unmapped with `VFIO_DMA_UNMAP_FLAG_VADDR` and not yet given a new
    /// `vaddr`. The pages stay pinned, so the device keeps reaching the
    /// memory it reached before.
    vaddr_invalid: bool,
}

/// Whether two process memories are one address space (`task->mm ==
/// current->mm`); unknown counts as the same.
fn same_mm(a: &Arc<dyn ProcessMemory>, b: &Arc<dyn ProcessMemory>) -> bool {
    match (a.mm_id(), b.mm_id()) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

/// `VFIO_CHECK_EXTENSION` as an x86 host answers: before `VFIO_SET_IOMMU`
/// the question goes to every registered driver with no IOMMU (only Type1
/// says yes to anything), afterwards to the container's Type1 IOMMU.
/// `VFIO_TYPE1_NESTING_IOMMU` is no longer offered; no-IOMMU mode is off.
fn check_extension(set: bool, ext: u64) -> i64 {
    match ext {
        TYPE1 | TYPE1V2 | UNMAP_ALL => 1,
        // No emulated (mdev) device shares the container.
        UPDATE_VADDR => i64::from(set),
        DMA_CC => i64::from(set && CACHE_COHERENT),
        _ => 0,
    }
}

impl ContainerState {
    /// `vfio_fops_unl_ioctl`.
    pub(crate) fn ioctl(
        &mut self,
        request: u64,
        arg: &IoctlArg,
        groups: usize,
        caller: &Arc<dyn ProcessMemory>,
    ) -> Result<IoctlOut, Errno> {
        match request {
            VFIO_GET_API_VERSION => Ok(IoctlOut { ret: i64::from(VFIO_API_VERSION), out: Vec::new() }),
            VFIO_CHECK_EXTENSION => {
                Ok(IoctlOut { ret: check_extension(self.iommu.is_some(), value(arg)), out: Vec::new() })
            }
            VFIO_SET_IOMMU => self.set_iommu(value(arg), groups).map(|()| IoctlOut::default()),
            // Everything else goes to the driver; with none set the
            // container itself answers EINVAL.
            _ => match &mut self.iommu {
                None => Err(Errno::INVAL),
                Some(iommu) => iommu.ioctl(request, arg, caller),
            },
        }
    }

    /// `vfio_ioctl_set_iommu`.
    fn set_iommu(&mut self, ty: u64, groups: usize) -> Result<(), Errno> {
        // Only a group's owner may enable an IOMMU, and only once.
        if groups == 0 || self.iommu.is_some() {
            return Err(Errno::INVAL);
        }
        let v2 = match ty {
            TYPE1 => false,
            TYPE1V2 => true,
            // Type1 reports this extension, so it is asked to open with it,
            // and refuses.
            UNMAP_ALL => return Err(Errno::INVAL),
            // No driver reports the extension.
            _ => return Err(Errno::NODEV),
        };
        self.iommu = Some(Type1 { v2, dmas: IovaMap::new(), dma_avail: DMA_ENTRY_LIMIT });
        Ok(())
    }

    /// Whether an IOMMU is set.
    pub(crate) fn iommu_set(&self) -> bool {
        self.iommu.is_some()
    }

    /// The last group left (`vfio_group_detach_container`): the driver is
    /// released with every mapping, and the container is unset again.
    pub(crate) fn release(&mut self) {
        self.iommu = None;
    }
}

impl Type1 {
    /// `vfio_iommu_type1_ioctl`.
    fn ioctl(&mut self, request: u64, arg: &IoctlArg, caller: &Arc<dyn ProcessMemory>) -> Result<IoctlOut, Errno> {
        match request {
            VFIO_IOMMU_GET_INFO => self.get_info(arg),
            VFIO_IOMMU_MAP_DMA => self.map_dma(arg, caller),
            VFIO_IOMMU_UNMAP_DMA => self.unmap_dma(arg, caller),
            _ => Err(Errno::NOTTY),
        }
    }

    /// The capability chain of `VFIO_IOMMU_GET_INFO`, offsets relative to
    /// its start (`vfio_info_cap_add`: each capability padded to 8 bytes
    /// and linked from the one before).
    fn caps(&self) -> Vec<u8> {
        let mut dma_avail = Raw::zeroed(DMA_AVAIL_SIZE);
        dma_avail.put_u16(0, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL as u16);
        dma_avail.put_u16(2, 1);
        dma_avail.put_u32(DMA_AVAIL_AVAIL, self.dma_avail);

        let mut iova = Raw::zeroed(IOVA_CAP_SIZE);
        iova.put_u16(0, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE as u16);
        iova.put_u16(2, 1);
        iova.put_u32(IOVA_CAP_NR, TYPE1_IOVA_RANGES.len() as u32);
        for (i, (start, last)) in TYPE1_IOVA_RANGES.iter().enumerate() {
            let at = IOVA_CAP_SIZE + i * IOVA_RANGE_SIZE;
            iova.put_u64(at, *start);
            iova.put_u64(at + 8, *last);
        }

        let mut chain = Raw::zeroed(0);
        let mut prev: Option<usize> = None;
        for cap in [dma_avail, iova] {
            let at = chain.len();
            if let Some(p) = prev {
                chain.put_u32(p + CAP_NEXT, at as u32);
            }
            let mut bytes = cap.into_vec();
            bytes.resize(bytes.len().next_multiple_of(8), 0);
            chain.put(at, &bytes);
            prev = Some(at);
        }
        chain.into_vec()
    }

    /// `vfio_iommu_type1_get_info`.
    fn get_info(&self, arg: &IoctlArg) -> Result<IoctlOut, Errno> {
        let user = UserStruct::new(arg);
        let head = user.vfio_copy_in(INFO_MINSZ)?;
        let argsz = head.u32(0) as usize;
        if argsz < INFO_MINSZ {
            return Err(Errno::INVAL);
        }
        // The whole (zeroed) struct goes back, cut to argsz: programs from
        // before capabilities pass 16 bytes and get no cap_offset.
        let minsz = argsz.min(INFO_SIZE);
        let caps = self.caps();
        let mut info = Raw::zeroed(INFO_SIZE);
        info.put_u32(0, argsz as u32);
        info.put_u32(FLAGS, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
        info.put_u64(INFO_PGSIZES, DOMAIN_PGSIZES);
        let mut out = if argsz < INFO_SIZE + caps.len() {
            // Too small for the chain: say how much is needed.
            info.put_u32(0, (INFO_SIZE + caps.len()) as u32);
            user.head(minsz)
        } else {
            let mut chain = Raw::from_slice(&caps);
            shift_chain(&mut chain, INFO_SIZE);
            info.put_u32(INFO_CAP_OFFSET, INFO_SIZE as u32);
            let mut out = user.head(INFO_SIZE + caps.len());
            out.put(INFO_SIZE, &chain.into_vec());
            out
        };
        info.truncate(minsz);
        out.put(0, &info.into_vec());
        user.copy_out(out)
    }

    /// `vfio_iommu_type1_map_dma`.
    fn map_dma(&mut self, arg: &IoctlArg, caller: &Arc<dyn ProcessMemory>) -> Result<IoctlOut, Errno> {
        let map = UserStruct::new(arg).vfio_copy_in(MAP_MINSZ)?;
        let known = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR;
        if (map.u32(0) as usize) < MAP_MINSZ || map.u32(FLAGS) & !known != 0 {
            return Err(Errno::INVAL);
        }
        self.do_map(map.u32(FLAGS), map.u64(MAP_VADDR), map.u64(MAP_IOVA), map.u64(MAP_SIZE), caller)?;
        Ok(IoctlOut::default())
    }

    /// `vfio_dma_do_map`.
    fn do_map(
        &mut self,
        flags: u32,
        vaddr: u64,
        iova: u64,
        size: u64,
        caller: &Arc<dyn ProcessMemory>,
    ) -> Result<(), Errno> {
        if size == 0 {
            return Err(Errno::INVAL);
        }
        let (Some(last), Some(_)) = (iova.checked_add(size - 1), vaddr.checked_add(size - 1)) else {
            return Err(Errno::OVERFLOW);
        };
        let set_vaddr = flags & VFIO_DMA_MAP_FLAG_VADDR != 0;
        let prot = Prot { read: flags & VFIO_DMA_MAP_FLAG_READ != 0, write: flags & VFIO_DMA_MAP_FLAG_WRITE != 0 };
        let any_prot = prot.read || prot.write;
        // A new mapping needs a permission; re-pointing one takes none.
        if any_prot == set_vaddr {
            return Err(Errno::INVAL);
        }
        if (size | iova | vaddr) & (PAGE_SIZE - 1) != 0 {
            return Err(Errno::INVAL);
        }
        let overlap = self.dmas.first_overlap(iova, last).map(|s| (s.start, s.len()));
        if set_vaddr {
            // VFIO_DMA_MAP_FLAG_VADDR: give an invalidated mapping its new
            // address, and make the caller its owner.
            let (start, len) = overlap.ok_or(Errno::NOENT)?;
            let dma = self.dmas.get_mut(start).ok_or(Errno::NOENT)?;
            if !dma.vaddr_invalid || start != iova || len != size {
                return Err(Errno::INVAL);
            }
            dma.vaddr = vaddr;
            dma.mm = Arc::clone(caller);
            dma.vaddr_invalid = false;
            return Ok(());
        }
        if overlap.is_some() {
            return Err(Errno::EXIST);
        }
        if self.dma_avail == 0 {
            return Err(Errno::NOSPC);
        }
        // The whole range must lie in one usable IOVA range.
        if !TYPE1_IOVA_RANGES.iter().any(|&(s, l)| iova >= s && last <= l) {
            return Err(Errno::INVAL);
        }
        caller.pin(vaddr, size, PinFlags { write: prot.write, allow_pfnmap: true })?;
        self.dmas.insert(iova, last, Dma { vaddr, prot, mm: Arc::clone(caller), vaddr_invalid: false });
        self.dma_avail -= 1;
        Ok(())
    }

    /// `vfio_iommu_type1_unmap_dma`.
    fn unmap_dma(&mut self, arg: &IoctlArg, caller: &Arc<dyn ProcessMemory>) -> Result<IoctlOut, Errno> {
        let user = UserStruct::new(arg);
        let mut unmap = user.vfio_copy_in(UNMAP_MINSZ)?;
        let flags = unmap.u32(FLAGS);
        let known = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR;
        if (unmap.u32(0) as usize) < UNMAP_MINSZ || flags & !known != 0 {
            return Err(Errno::INVAL);
        }
        // The dirty bitmap is refused with ALL or VADDR, and otherwise
        // because dirty tracking was never started.
        if flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP != 0 {
            return Err(Errno::INVAL);
        }
        let unmapped = self.do_unmap(flags, unmap.u64(UNMAP_IOVA), unmap.u64(UNMAP_SIZE), caller)?;
        unmap.put_u64(UNMAP_SIZE, unmapped);
        user.copy_out(unmap)
    }

    /// `vfio_dma_do_unmap`: returns the bytes unmapped (or invalidated).
    fn do_unmap(&mut self, flags: u32, iova: u64, size: u64, caller: &Arc<dyn ProcessMemory>) -> Result<u64, Errno> {
        let all = flags & VFIO_DMA_UNMAP_FLAG_ALL != 0;
        let invalidate = flags & VFIO_DMA_UNMAP_FLAG_VADDR != 0;
        if iova & (PAGE_SIZE - 1) != 0 {
            return Err(Errno::INVAL);
        }
        let last = if all {
            if iova != 0 || size != 0 {
                return Err(Errno::INVAL);
            }
            u64::MAX
        } else {
            if size == 0 || size & (PAGE_SIZE - 1) != 0 {
                return Err(Errno::INVAL);
            }
            iova.checked_add(size - 1).ok_or(Errno::OVERFLOW)?
        };
        // v2: the range may cover several mappings but must not bisect one.
        if self.v2 && !all {
            if self.dmas.find(iova).is_some_and(|d| d.start != iova) {
                return Err(Errno::INVAL);
            }
            if self.dmas.find(last).is_some_and(|d| d.last != last) {
                return Err(Errno::INVAL);
            }
        }
        let spans: Vec<(u64, u64)> = self.dmas.overlapping(iova, last).map(|s| (s.start, s.len())).collect();
        let mut unmapped = 0u64;
        let mut invalidated = Vec::new();
        for (start, len) in spans {
            // v1: a mapping that starts below the range stops the unmap
            // with what was done so far (a "zero sized unmap"); one that
            // starts inside goes whole, even past the range's end.
            if !self.v2 && iova > start {
                break;
            }
            let Some(dma) = self.dmas.get_mut(start) else { break };
            // Only the process that mapped a range may unmap it.
            if !same_mm(&dma.mm, caller) {
                break;
            }
            if invalidate {
                if dma.vaddr_invalid {
                    // Already invalid: undo this call's marks and fail.
                    for s in invalidated {
                        if let Some(d) = self.dmas.get_mut(s) {
                            d.vaddr_invalid = false;
                        }
                    }
                    return Err(Errno::INVAL);
                }
                dma.vaddr_invalid = true;
                invalidated.push(start);
            } else {
                self.dmas.remove(start);
                self.dma_avail += 1;
            }
            unmapped = unmapped.wrapping_add(len);
        }
        Ok(unmapped)
    }

    /// The mapping containing `iova`, for DMA.
    fn target(&self, iova: u64) -> Option<Target<'_>> {
        let s = self.dmas.find(iova)?;
        Some(Target { start: s.start, last: s.last, mm: &s.val.mm, vaddr: s.val.vaddr, prot: s.val.prot })
    }
}

/// `vfio_info_cap_shift`: the chain moves to `offset` within the argument,
/// so every link but the last (0) grows by it.
fn shift_chain(chain: &mut Raw, offset: usize) {
    let mut at = 0usize;
    loop {
        let next = chain.u32(at + CAP_NEXT) as usize;
        if next == 0 {
            return;
        }
        chain.put_u32(at + CAP_NEXT, (next + offset) as u32);
        at = next;
    }
}

/// DMA of the devices in a container's groups.
#[derive(Debug)]
pub(crate) struct ContainerDma {
    /// The container's state (its lock is the container's).
    pub(crate) state: Arc<Mutex<ContainerState>>,
}

impl ContainerDma {
    fn translate(&self, iova: u64, len: usize, dir: Dir) -> Result<Vec<dma::Segment>, Errno> {
        let state = lock(&self.state);
        let iommu = state.iommu.as_ref().ok_or(Errno::FAULT)?;
        dma::translate(iova, len, dir, |i| iommu.target(i))
    }
}

impl DmaSpace for ContainerDma {
    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let segs = self.translate(iova, buf.len(), Dir::Read)?;
        dma::read_segments(&segs, buf)
    }

    fn dma_write(&self, iova: u64, data: &[u8]) -> Result<(), Errno> {
        let segs = self.translate(iova, data.len(), Dir::Write)?;
        dma::write_segments(&segs, data)
    }
}
