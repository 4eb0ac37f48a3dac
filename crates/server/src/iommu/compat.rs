//! The VFIO container calls on `/dev/iommu`
//! (`drivers/iommu/iommufd/vfio_compat.c`): they act on the context's
//! compatibility IOAS, which exists once a group joined the context (or
//! `IOMMU_VFIO_IOAS` named one). Where they differ from Type1: unmapping
//! nothing or cutting through a mapping is `ENOENT` (Type1 `v2`: `EINVAL`
//! or success with size 0), `VFIO_SET_IOMMU` needs no group of its own and
//! may repeat, `VFIO_UPDATE_VADDR` is not offered while `VFIO_NOIOMMU_IOMMU`
//! is (it is built in), `DMA_AVAIL` reports `U32_MAX`, BAR mmaps cannot be
//! mapped, and pages are pinned only once a device is attached. No-IOMMU
//! devices are not modelled, so `VFIO_SET_IOMMU` never accepts that type.

use std::sync::Arc;

use rustix::io::Errno;
use wire::msg::IoctlArg;

use super::arg::{value, Raw, UserStruct};
use super::dma::Prot;
use super::host::{CACHE_COHERENT, NOIOMMU_BUILT};
use super::iommufd::{Ctx, Ioas};
use super::uapi::*;
use super::{IoctlOut, ProcessMemory};

const TYPE1: u64 = VFIO_TYPE1_IOMMU as u64;
const TYPE1V2: u64 = VFIO_TYPE1v2_IOMMU as u64;
const UNMAP_ALL: u64 = VFIO_UNMAP_ALL as u64;
const DMA_CC: u64 = VFIO_DMA_CC_IOMMU as u64;
const NOIOMMU: u64 = VFIO_NOIOMMU_IOMMU as u64;

impl Ctx {
    /// `iommufd_vfio_ioctl`.
    pub(super) fn compat_ioctl(
        &mut self,
        request: u64,
        arg: &IoctlArg,
        caller: &Arc<dyn ProcessMemory>,
    ) -> Result<IoctlOut, Errno> {
        let ret = |ret: i64| IoctlOut { ret, out: Vec::new() };
        match request {
            VFIO_GET_API_VERSION => Ok(ret(i64::from(VFIO_API_VERSION))),
            VFIO_SET_IOMMU => self.compat_set_iommu(value(arg)).map(|()| IoctlOut::default()),
            VFIO_CHECK_EXTENSION => self.compat_check_extension(value(arg)).map(ret),
            VFIO_IOMMU_GET_INFO => self.compat_get_info(arg),
            VFIO_IOMMU_MAP_DMA => self.compat_map_dma(arg, caller),
            VFIO_IOMMU_UNMAP_DMA => self.compat_unmap_dma(arg),
            _ => Err(Errno::NOTTY),
        }
    }

    fn compat_ioas(&mut self) -> Result<&mut Ioas, Errno> {
        let id = self.compat_ioas_id()?;
        self.ioas_mut(id)
    }

    /// `iommufd_vfio_check_extension`.
    ///
    /// # Errors
    ///
    /// `ENODEV` when asked about `VFIO_DMA_CC_IOMMU` with no compatibility
    /// IOAS.
    fn compat_check_extension(&mut self, ext: u64) -> Result<i64, Errno> {
        match ext {
            TYPE1 | TYPE1V2 | UNMAP_ALL => Ok(1),
            NOIOMMU => Ok(i64::from(NOIOMMU_BUILT)),
            // Every HWPT on the IOAS enforces coherency.
            DMA_CC => self.compat_ioas().map(|_| i64::from(CACHE_COHERENT)),
            // Nesting is obsolete; UPDATE_VADDR is not offered.
            _ => Ok(0),
        }
    }

    /// `iommufd_vfio_set_iommu`: Type1 (`v1`) turns off huge pages so
    /// unmaps may split mappings.
    fn compat_set_iommu(&mut self, ty: u64) -> Result<(), Errno> {
        if ty != TYPE1 && ty != TYPE1V2 {
            return Err(Errno::INVAL);
        }
        let ioas = self.compat_ioas()?;
        if ty == TYPE1 {
            ioas.iopt.disable_large_pages()?;
        }
        Ok(())
    }

    /// `iommufd_vfio_map_dma`: at the IOVA given; no permission flag is
    /// needed (the mapping then lets the device do nothing).
    fn compat_map_dma(&mut self, arg: &IoctlArg, caller: &Arc<dyn ProcessMemory>) -> Result<IoctlOut, Errno> {
        let map = UserStruct::new(arg).vfio_copy_in(MAP_MINSZ)?;
        let flags = map.u32(FLAGS);
        if (map.u32(0) as usize) < MAP_MINSZ || flags & !(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE) != 0 {
            return Err(Errno::INVAL);
        }
        let prot = Prot { read: flags & VFIO_DMA_MAP_FLAG_READ != 0, write: flags & VFIO_DMA_MAP_FLAG_WRITE != 0 };
        let ioas = self.compat_ioas()?;
        ioas.iopt.map_user(caller, map.u64(MAP_VADDR), map.u64(MAP_SIZE), Some(map.u64(MAP_IOVA)), prot)?;
        Ok(IoctlOut::default())
    }

    /// `iommufd_vfio_unmap_dma`: `size` is written back even when the
    /// unmap fails.
    fn compat_unmap_dma(&mut self, arg: &IoctlArg) -> Result<IoctlOut, Errno> {
        let user = UserStruct::new(arg);
        let mut unmap = user.vfio_copy_in(UNMAP_MINSZ)?;
        let flags = unmap.u32(FLAGS);
        // The dirty bitmap is obsolete here, and VADDR is not offered.
        if (unmap.u32(0) as usize) < UNMAP_MINSZ || flags & !VFIO_DMA_UNMAP_FLAG_ALL != 0 {
            return Err(Errno::INVAL);
        }
        let (iova, size) = (unmap.u64(UNMAP_IOVA), unmap.u64(UNMAP_SIZE));
        let iopt = &mut self.compat_ioas()?.iopt;
        let (unmapped, rc) = if flags & VFIO_DMA_UNMAP_FLAG_ALL != 0 {
            if iova != 0 || size != 0 {
                return Err(Errno::INVAL);
            }
            (iopt.unmap_all(), Ok(()))
        } else {
            if !iopt.large_pages() {
                // Cut at both ends of the range so it unmaps whole areas;
                // an IOVA of 0 needs no cut below it.
                let cuts = [iova.wrapping_add(size).wrapping_sub(1), iova.wrapping_sub(1)];
                iopt.cut(&cuts[..if iova != 0 { 2 } else { 1 }])?;
            }
            iopt.unmap(iova, size)
        };
        unmap.put_u64(UNMAP_SIZE, unmapped);
        let out = user.copy_out(unmap)?;
        match rc {
            Ok(()) => Ok(out),
            Err(e) => Ok(IoctlOut::copy_then_fail(out.out, e)),
        }
    }

    /// `iommufd_vfio_iommu_get_info`: the capabilities (`DMA_AVAIL`, then
    /// `IOVA_RANGE`) each start 8-byte aligned and are written only as far
    /// as they fit (each range, then the header, whole); `argsz` always
    /// comes back as the size they need.
    fn compat_get_info(&mut self, arg: &IoctlArg) -> Result<IoctlOut, Errno> {
        let user = UserStruct::new(arg);
        let argsz = user.vfio_copy_in(INFO_MINSZ)?.u32(0) as usize;
        if argsz < INFO_MINSZ {
            return Err(Errno::INVAL);
        }
        let minsz = argsz.min(INFO_SIZE);
        let iopt = &self.compat_ioas()?.iopt;
        let ranges = iopt.iova_ranges();

        // Each capability starts 8-byte aligned; the padding is not written.
        let dma_at = INFO_SIZE;
        let iova_at = dma_at + DMA_AVAIL_SIZE.next_multiple_of(8);
        let iova_size = IOVA_CAP_SIZE + ranges.len() * IOVA_RANGE_SIZE;
        let total = iova_at + iova_size;
        let mut out = user.head(argsz.min(total));

        // IOMMU_IOAS has no mapping count: the largest one is reported.
        if argsz >= dma_at + DMA_AVAIL_SIZE {
            let mut cap = Raw::zeroed(DMA_AVAIL_SIZE);
            cap.put_u16(0, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL as u16);
            cap.put_u16(2, 1);
            cap.put_u32(DMA_AVAIL_AVAIL, u32::MAX);
            out.put(dma_at, &cap.into_vec());
        }
        let avail = argsz.saturating_sub(iova_at);
        for (i, &(start, last)) in ranges.iter().enumerate() {
            let at = IOVA_CAP_SIZE + i * IOVA_RANGE_SIZE;
            if avail >= at + IOVA_RANGE_SIZE {
                out.put_u64(iova_at + at, start);
                out.put_u64(iova_at + at + 8, last);
            }
        }
        if avail >= iova_size {
            let mut cap = Raw::zeroed(IOVA_CAP_SIZE);
            cap.put_u16(0, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE as u16);
            cap.put_u16(2, 1);
            cap.put_u32(IOVA_CAP_NR, ranges.len() as u32);
            out.put(iova_at, &cap.into_vec());
        }
        // The link to the second capability is written once the first
        // one's end is inside argsz, whether the second fits or not.
        if argsz >= iova_at {
            out.put_u32(dma_at + CAP_NEXT, iova_at as u32);
        }

        let mut info = Raw::zeroed(INFO_SIZE);
        info.put_u32(0, total as u32);
        info.put_u32(FLAGS, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
        info.put_u64(INFO_PGSIZES, iopt.pgsizes());
        if argsz >= total {
            info.put_u32(INFO_CAP_OFFSET, INFO_SIZE as u32);
        }
        info.truncate(minsz);
        out.put(0, &info.into_vec());
        user.copy_out(out)
    }
}
