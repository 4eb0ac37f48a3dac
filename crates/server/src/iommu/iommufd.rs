//! An iommufd context (`drivers/iommu/iommufd/main.c`): one table of
//! objects (devices, IOAS, HWPT) with ids from 1, the `IOMMU_*` calls on
//! them (`ioas.c`), and device attach with automatic HWPTs (`device.c`).
//!
//! Deviations: `IOMMU_HWPT_ALLOC`, `IOMMU_GET_HW_INFO`, the dirty-tracking
//! calls, `IOMMU_IOAS_MAP_FILE` (its fd does not travel) and the vIOMMU
//! calls are `ENOTTY`; `IOMMU_OPTION_RLIMIT_MODE` is set as if the caller
//! had `CAP_SYS_RESOURCE`, and nothing is accounted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rustix::io::Errno;
use wire::msg::IoctlArg;

use super::arg::{iommufd_respond, Raw, UserStruct};
use super::dma::{self, Dir, Prot};
use super::ioas::IoPageTable;
use super::iova::IovaMap;
use super::uapi::*;
use super::{lock, DmaSpace, IoctlOut, ProcessMemory};

/// Object ids are allocated below 2^31 (`xa_limit_31b`).
const ID_LIMIT: u32 = i32::MAX as u32;

/// How many `struct iommu_iova_range` one `IOMMU_IOAS_ALLOW_IOVAS` read
/// fetches from the program at a time.
const RANGES_PER_READ: u64 = 256;

/// `struct iommufd_ctx`.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    /// Every object by id (`objects`, `XA_FLAGS_ALLOC1`).
    objects: BTreeMap<u32, Object>,
    /// The IOAS the VFIO compatibility calls act on (`vfio_ioas`).
    pub(super) vfio_ioas: Option<u32>,
    /// `IOMMU_OPTION_RLIMIT_MODE` is 1 (per-process accounting).
    account_mm: bool,
    /// Bindings made so far: tells a device object from a later one that
    /// reuses its id, so a stale [`DeviceDma`] does not reach the new one.
    binds: u64,
}

/// One object of the context.
#[derive(Debug)]
pub(super) enum Object {
    /// `IOMMUFD_OBJ_DEVICE`: a bound VFIO device.
    Device(Device),
    /// `IOMMUFD_OBJ_IOAS`.
    Ioas(Ioas),
    /// `IOMMUFD_OBJ_HWPT_PAGING`: a domain filled from an IOAS.
    Hwpt(Hwpt),
}

/// `struct iommufd_device`.
#[derive(Debug)]
pub(super) struct Device {
    /// Which binding this is (`Ctx::binds` when it was made).
    bind: u64,
    /// The HWPT it is attached to.
    hwpt: Option<u32>,
}

/// `struct iommufd_ioas`.
#[derive(Debug, Default)]
pub(super) struct Ioas {
    /// Its page table.
    pub(super) iopt: IoPageTable,
    /// The HWPTs built on it (`hwpt_list`); each keeps it from being
    /// destroyed.
    pub(super) hwpts: Vec<u32>,
}

/// `struct iommufd_hwpt_paging`.
#[derive(Debug)]
pub(super) struct Hwpt {
    /// The IOAS it maps.
    ioas: u32,
    /// Made by an attach to an IOAS (`auto_domain`): destroyed when its
    /// last device leaves.
    auto_domain: bool,
    /// The devices attached to it; each keeps it from being destroyed.
    devices: Vec<u32>,
}

impl Ctx {
    /// `xa_alloc`: the lowest free id from 1.
    fn alloc_id(&self) -> Result<u32, Errno> {
        let mut want = 1u32;
        for &id in self.objects.keys() {
            if id != want {
                break;
            }
            want += 1;
        }
        if want > ID_LIMIT {
            return Err(Errno::BUSY);
        }
        Ok(want)
    }

    /// `iommufd_get_ioas`.
    pub(super) fn ioas_mut(&mut self, id: u32) -> Result<&mut Ioas, Errno> {
        match self.objects.get_mut(&id) {
            Some(Object::Ioas(ioas)) => Ok(ioas),
            _ => Err(Errno::NOENT),
        }
    }

    fn hwpt_mut(&mut self, id: u32) -> Option<&mut Hwpt> {
        match self.objects.get_mut(&id) {
            Some(Object::Hwpt(h)) => Some(h),
            _ => None,
        }
    }

    fn device_mut(&mut self, id: u32) -> Option<&mut Device> {
        match self.objects.get_mut(&id) {
            Some(Object::Device(d)) => Some(d),
            _ => None,
        }
    }

    /// `iommufd_fops_ioctl`.
    pub(crate) fn ioctl(
        &mut self,
        request: u64,
        arg: &IoctlArg,
        caller: &Arc<dyn ProcessMemory>,
    ) -> Result<IoctlOut, Errno> {
        // Numbers below the iommufd base are the VFIO container calls.
        if request & 0xff < 0x80 {
            return self.compat_ioctl(request, arg, caller);
        }
        let cmd = match request {
            IOMMU_DESTROY => DESTROY,
            IOMMU_IOAS_ALLOC => IOAS_ALLOC,
            IOMMU_IOAS_ALLOW_IOVAS => ALLOW_IOVAS,
            IOMMU_IOAS_COPY => IOAS_COPY,
            IOMMU_IOAS_IOVA_RANGES => IOVA_RANGES,
            IOMMU_IOAS_MAP => IOAS_MAP,
            IOMMU_IOAS_UNMAP => IOAS_UNMAP,
            IOMMU_OPTION => OPTION,
            IOMMU_VFIO_IOAS => VFIO_IOAS,
            _ => return Err(Errno::NOTTY),
        };
        let user = UserStruct::new(arg);
        // get_user(size).
        if !user.readable(4) {
            return Err(Errno::FAULT);
        }
        let (raw, size) = user.iommufd_copy_in(cmd.min, cmd.size)?;
        match request {
            IOMMU_DESTROY => self.destroy(raw.u32(4)).map(|()| IoctlOut::default()),
            IOMMU_IOAS_ALLOC => self.ioas_alloc(raw, size),
            IOMMU_IOAS_ALLOW_IOVAS => self.allow_iovas(&raw, caller).map(|()| IoctlOut::default()),
            IOMMU_IOAS_COPY => self.ioas_copy(raw, size),
            IOMMU_IOAS_IOVA_RANGES => self.iova_ranges(raw, size, caller),
            IOMMU_IOAS_MAP => self.ioas_map(raw, size, caller),
            IOMMU_IOAS_UNMAP => self.ioas_unmap(raw, size),
            IOMMU_OPTION => self.option(raw),
            _ => self.vfio_ioas_cmd(raw, size),
        }
    }

    /// `IOMMU_DESTROY` (`iommufd_object_remove`): only an object nothing
    /// else holds goes.
    fn destroy(&mut self, id: u32) -> Result<(), Errno> {
        match self.objects.get(&id) {
            None => Err(Errno::NOENT),
            // VFIO holds its device objects until unbind.
            Some(Object::Device(_)) => Err(Errno::BUSY),
            Some(Object::Ioas(ioas)) if !ioas.hwpts.is_empty() => Err(Errno::BUSY),
            Some(Object::Hwpt(h)) if !h.devices.is_empty() => Err(Errno::BUSY),
            Some(Object::Ioas(_)) => {
                self.objects.remove(&id);
                if self.vfio_ioas == Some(id) {
                    self.vfio_ioas = None;
                }
                Ok(())
            }
            Some(Object::Hwpt(_)) => {
                self.destroy_hwpt(id);
                Ok(())
            }
        }
    }

    /// Removes HWPT `id` and its domain from its IOAS.
    fn destroy_hwpt(&mut self, id: u32) {
        let Some(Object::Hwpt(h)) = self.objects.remove(&id) else { return };
        if let Ok(ioas) = self.ioas_mut(h.ioas) {
            ioas.hwpts.retain(|&x| x != id);
            ioas.iopt.remove_domain(id);
        }
    }

    /// `IOMMU_IOAS_ALLOC`.
    fn ioas_alloc(&mut self, mut raw: Raw, size: usize) -> Result<IoctlOut, Errno> {
        if raw.u32(4) != 0 {
            return Err(Errno::OPNOTSUPP);
        }
        let id = self.alloc_id()?;
        self.objects.insert(id, Object::Ioas(Ioas::default()));
        raw.put_u32(8, id);
        Ok(iommufd_respond(raw, size))
    }

    /// `IOMMU_IOAS_IOVA_RANGES`: the usable ranges go to the program's
    /// array, as many as fit; the struct says how many there are.
    fn iova_ranges(&mut self, mut raw: Raw, size: usize, caller: &Arc<dyn ProcessMemory>) -> Result<IoctlOut, Errno> {
        if raw.u32(12) != 0 {
            return Err(Errno::OPNOTSUPP);
        }
        let ioas = self.ioas_mut(raw.u32(4))?;
        let max = u64::from(raw.u32(8));
        let array = raw.u64(16);
        let ranges = ioas.iopt.iova_ranges();
        for (i, &(start, last)) in ranges.iter().enumerate().take(max as usize) {
            let at = array.checked_add(i as u64 * IOMMU_IOVA_RANGE_SIZE).ok_or(Errno::FAULT)?;
            let mut elm = [0u8; IOMMU_IOVA_RANGE_SIZE as usize];
            elm[..8].copy_from_slice(&start.to_ne_bytes());
            elm[8..].copy_from_slice(&last.to_ne_bytes());
            caller.write(at, &elm)?;
        }
        raw.put_u32(8, ranges.len() as u32);
        raw.put_u64(24, ioas.iopt.iova_alignment());
        let out = iommufd_respond(raw, size);
        if ranges.len() as u64 > max {
            return Ok(IoctlOut::copy_then_fail(out.out, Errno::MSGSIZE));
        }
        Ok(out)
    }

    /// `IOMMU_IOAS_ALLOW_IOVAS`: replaces the allow list with the
    /// program's array.
    fn allow_iovas(&mut self, raw: &Raw, caller: &Arc<dyn ProcessMemory>) -> Result<(), Errno> {
        if raw.u32(12) != 0 {
            return Err(Errno::OPNOTSUPP);
        }
        let ioas_id = raw.u32(4);
        self.ioas_mut(ioas_id)?;
        let allowed = load_iovas(caller, raw.u64(16), u64::from(raw.u32(8)))?;
        self.ioas_mut(ioas_id)?.iopt.set_allowed(allowed)
    }

    /// `IOMMU_IOAS_MAP`.
    fn ioas_map(&mut self, mut raw: Raw, size: usize, caller: &Arc<dyn ProcessMemory>) -> Result<IoctlOut, Errno> {
        let flags = raw.u32(4);
        if flags & !IOMMU_IOAS_MAP_FLAGS != 0 || raw.u32(12) != 0 {
            return Err(Errno::OPNOTSUPP);
        }
        let (length, iova) = (raw.u64(24), raw.u64(32));
        if iova == u64::MAX || length == u64::MAX {
            return Err(Errno::OVERFLOW);
        }
        let prot = map_prot(flags)?;
        let fixed = (flags & IOMMU_IOAS_MAP_FIXED_IOVA != 0).then_some(iova);
        let ioas = self.ioas_mut(raw.u32(8))?;
        let iova = ioas.iopt.map_user(caller, raw.u64(16), length, fixed, prot)?;
        raw.put_u64(32, iova);
        Ok(iommufd_respond(raw, size))
    }

    /// `IOMMU_IOAS_COPY`: maps, in one IOAS, pages another already maps.
    fn ioas_copy(&mut self, mut raw: Raw, size: usize) -> Result<IoctlOut, Errno> {
        let flags = raw.u32(4);
        if flags & !IOMMU_IOAS_MAP_FLAGS != 0 {
            return Err(Errno::OPNOTSUPP);
        }
        let (length, dst_iova, src_iova) = (raw.u64(16), raw.u64(24), raw.u64(32));
        if length == u64::MAX || src_iova == u64::MAX || dst_iova == u64::MAX {
            return Err(Errno::OVERFLOW);
        }
        let prot = map_prot(flags)?;
        let runs = self.ioas_mut(raw.u32(12))?.iopt.get_pages(src_iova, length)?;
        let fixed = (flags & IOMMU_IOAS_MAP_FIXED_IOVA != 0).then_some(dst_iova);
        let dst = self.ioas_mut(raw.u32(8))?;
        let iova = dst.iopt.map_pages(runs, length, fixed, prot)?;
        raw.put_u64(24, iova);
        Ok(iommufd_respond(raw, size))
    }

    /// `IOMMU_IOAS_UNMAP`: `iova` 0 with `length` `U64_MAX` unmaps all.
    fn ioas_unmap(&mut self, mut raw: Raw, size: usize) -> Result<IoctlOut, Errno> {
        let ioas = self.ioas_mut(raw.u32(4))?;
        let (iova, length) = (raw.u64(8), raw.u64(16));
        let unmapped = if iova == 0 && length == u64::MAX {
            ioas.iopt.unmap_all()
        } else {
            if iova == u64::MAX || length == u64::MAX {
                return Err(Errno::OVERFLOW);
            }
            let (unmapped, rc) = ioas.iopt.unmap(iova, length);
            rc?;
            unmapped
        };
        raw.put_u64(16, unmapped);
        Ok(iommufd_respond(raw, size))
    }

    /// `IOMMU_OPTION`: only `val64` goes back.
    fn option(&mut self, mut raw: Raw) -> Result<IoctlOut, Errno> {
        if raw.u16(10) != 0 {
            return Err(Errno::OPNOTSUPP);
        }
        let (op, object_id, val) = (raw.u16(8), raw.u32(12), raw.u64(16));
        let out = match raw.u32(4) {
            IOMMU_OPTION_RLIMIT_MODE => {
                if object_id != 0 {
                    return Err(Errno::OPNOTSUPP);
                }
                match op {
                    IOMMU_OPTION_OP_GET => u64::from(self.account_mm),
                    IOMMU_OPTION_OP_SET => {
                        if !self.objects.is_empty() {
                            return Err(Errno::BUSY);
                        }
                        self.account_mm = match val {
                            0 => false,
                            1 => true,
                            _ => return Err(Errno::INVAL),
                        };
                        val
                    }
                    _ => return Err(Errno::OPNOTSUPP),
                }
            }
            IOMMU_OPTION_HUGE_PAGES => {
                let iopt = &mut self.ioas_mut(object_id)?.iopt;
                match (op, val) {
                    (IOMMU_OPTION_OP_GET, _) => u64::from(iopt.large_pages()),
                    (IOMMU_OPTION_OP_SET, 0) => iopt.disable_large_pages().map(|()| val)?,
                    (IOMMU_OPTION_OP_SET, 1) => {
                        iopt.enable_large_pages();
                        val
                    }
                    (IOMMU_OPTION_OP_SET, _) => return Err(Errno::INVAL),
                    _ => return Err(Errno::OPNOTSUPP),
                }
            }
            _ => return Err(Errno::OPNOTSUPP),
        };
        raw.put_u64(16, out);
        raw.truncate(OPTION.size);
        Ok(IoctlOut { ret: 0, out: raw.into_vec() })
    }

    /// `IOMMU_VFIO_IOAS`: which IOAS the compatibility calls act on.
    fn vfio_ioas_cmd(&mut self, mut raw: Raw, size: usize) -> Result<IoctlOut, Errno> {
        if raw.u16(10) != 0 {
            return Err(Errno::OPNOTSUPP);
        }
        match raw.u16(8) {
            IOMMU_VFIO_IOAS_GET => {
                let id = self.compat_ioas_id()?;
                raw.put_u32(4, id);
                Ok(iommufd_respond(raw, size))
            }
            IOMMU_VFIO_IOAS_SET => {
                let id = raw.u32(4);
                self.ioas_mut(id)?;
                self.vfio_ioas = Some(id);
                Ok(IoctlOut::default())
            }
            IOMMU_VFIO_IOAS_CLEAR => {
                self.vfio_ioas = None;
                Ok(IoctlOut::default())
            }
            _ => Err(Errno::OPNOTSUPP),
        }
    }

    /// The compatibility IOAS (`get_compat_ioas`).
    ///
    /// # Errors
    ///
    /// `ENODEV` when there is none.
    pub(crate) fn compat_ioas_id(&self) -> Result<u32, Errno> {
        match self.vfio_ioas {
            Some(id) if matches!(self.objects.get(&id), Some(Object::Ioas(_))) => Ok(id),
            _ => Err(Errno::NODEV),
        }
    }

    /// `iommufd_vfio_compat_ioas_create`.
    pub(crate) fn compat_ioas_create(&mut self) -> u32 {
        if let Ok(id) = self.compat_ioas_id() {
            return id;
        }
        match self.alloc_id() {
            Ok(id) => {
                self.objects.insert(id, Object::Ioas(Ioas::default()));
                self.vfio_ioas = Some(id);
                id
            }
            Err(e) => {
                tracing::error!("iommufd: no object id left for the compatibility IOAS: {e}");
                0
            }
        }
    }

    /// `iommufd_device_bind`.
    pub(crate) fn bind_device(&mut self) -> u32 {
        match self.alloc_id() {
            Ok(id) => {
                self.binds += 1;
                self.objects.insert(id, Object::Device(Device { bind: self.binds, hwpt: None }));
                id
            }
            Err(e) => {
                tracing::error!("iommufd: no object id left for a device: {e}");
                0
            }
        }
    }

    /// `iommufd_device_unbind`, after VFIO detached it.
    pub(crate) fn unbind_device(&mut self, devid: u32) {
        self.detach(devid);
        if self.device_mut(devid).is_some() {
            self.objects.remove(&devid);
        }
    }

    /// The binding of device `devid`, when it is attached.
    pub(crate) fn attached(&mut self, devid: u32) -> Option<u64> {
        self.device_mut(devid).filter(|d| d.hwpt.is_some()).map(|d| d.bind)
    }

    /// `vfio_iommufd_physical_attach_ioas`: attach, or replace.
    pub(crate) fn attach(&mut self, devid: u32, pt_id: u32) -> Result<u32, Errno> {
        if self.device_mut(devid).is_none() {
            return Err(Errno::NOENT);
        }
        match self.objects.get(&pt_id) {
            None => Err(Errno::NOENT),
            Some(Object::Hwpt(_)) => self.attach_hwpt(devid, pt_id).map(|()| pt_id),
            Some(Object::Ioas(_)) => self.attach_ioas(devid, pt_id),
            Some(Object::Device(_)) => Err(Errno::INVAL),
        }
    }

    /// The IOAS behind the device's current HWPT.
    fn current_ioas(&mut self, devid: u32) -> Option<u32> {
        let hwpt = self.device_mut(devid)?.hwpt?;
        Some(self.hwpt_mut(hwpt)?.ioas)
    }

    /// Attaches to HWPT `hwpt`; a device moving to another IOAS reserves
    /// its regions there first.
    fn attach_hwpt(&mut self, devid: u32, hwpt: u32) -> Result<(), Errno> {
        let old = self.device_mut(devid).and_then(|d| d.hwpt);
        if old == Some(hwpt) {
            return Ok(());
        }
        let ioas_id = self.hwpt_mut(hwpt).ok_or(Errno::NOENT)?.ioas;
        let moving = self.current_ioas(devid) != Some(ioas_id);
        if moving {
            self.ioas_mut(ioas_id)?.iopt.add_device(devid)?;
        }
        if let Some(h) = self.hwpt_mut(hwpt) {
            h.devices.push(devid);
        }
        self.switch(devid, Some(hwpt), old, moving);
        Ok(())
    }

    /// `iommufd_device_auto_get_domain`: reuses the IOAS's automatic HWPT
    /// or makes one (its domain added to the IOAS).
    fn attach_ioas(&mut self, devid: u32, ioas_id: u32) -> Result<u32, Errno> {
        let hwpts = self.ioas_mut(ioas_id)?.hwpts.clone();
        let reuse = hwpts
            .into_iter()
            .find(|h| matches!(self.objects.get(h), Some(Object::Hwpt(Hwpt { auto_domain: true, .. }))));
        if let Some(hwpt) = reuse {
            self.attach_hwpt(devid, hwpt)?;
            return Ok(hwpt);
        }
        let id = self.alloc_id()?;
        let old = self.device_mut(devid).and_then(|d| d.hwpt);
        let moving = self.current_ioas(devid) != Some(ioas_id);
        let iopt = &mut self.ioas_mut(ioas_id)?.iopt;
        if moving {
            iopt.add_device(devid)?;
        }
        if let Err(e) = iopt.add_domain(id) {
            if moving {
                iopt.remove_device(devid);
            }
            return Err(e);
        }
        self.ioas_mut(ioas_id)?.hwpts.push(id);
        self.objects.insert(id, Object::Hwpt(Hwpt { ioas: ioas_id, auto_domain: true, devices: vec![devid] }));
        self.switch(devid, Some(id), old, moving);
        Ok(id)
    }

    /// Points the device at `new` and lets go of `old`, whose IOAS keeps
    /// the device's reserved regions unless the device moved away.
    fn switch(&mut self, devid: u32, new: Option<u32>, old: Option<u32>, moved: bool) {
        if let Some(d) = self.device_mut(devid) {
            d.hwpt = new;
        }
        let Some(old) = old else { return };
        let Some(h) = self.hwpt_mut(old) else { return };
        h.devices.retain(|&d| d != devid);
        let (ioas, gone) = (h.ioas, h.auto_domain && h.devices.is_empty());
        if moved {
            if let Ok(ioas) = self.ioas_mut(ioas) {
                ioas.iopt.remove_device(devid);
            }
        }
        if gone {
            self.destroy_hwpt(old);
        }
    }

    /// `vfio_iommufd_physical_detach_ioas`: nothing to do when detached.
    pub(crate) fn detach(&mut self, devid: u32) {
        let old = self.device_mut(devid).and_then(|d| d.hwpt);
        self.switch(devid, None, old, true);
    }

    /// Translates a DMA of device `devid` as bound by `bind`.
    fn translate(
        &mut self,
        devid: u32,
        bind: u64,
        iova: u64,
        len: usize,
        dir: Dir,
    ) -> Result<Vec<dma::Segment>, Errno> {
        if self.device_mut(devid).map(|d| d.bind) != Some(bind) {
            return Err(Errno::FAULT);
        }
        let ioas = self.current_ioas(devid).ok_or(Errno::FAULT)?;
        let iopt = &self.ioas_mut(ioas).map_err(|_| Errno::FAULT)?.iopt;
        dma::translate(iova, len, dir, |i| iopt.target(i))
    }
}

/// The protection of map flags; one of them is required.
fn map_prot(flags: u32) -> Result<Prot, Errno> {
    let prot = Prot { read: flags & IOMMU_IOAS_MAP_READABLE != 0, write: flags & IOMMU_IOAS_MAP_WRITEABLE != 0 };
    if !prot.read && !prot.write {
        return Err(Errno::INVAL);
    }
    Ok(prot)
}

/// `iommufd_ioas_load_iovas`: reads `num` ranges from the program's array
/// at `ptr`, checking each in order.
///
/// # Errors
///
/// `EFAULT` for an unreadable range, `EINVAL` for one whose start is not
/// below its last or that overlaps an earlier one.
fn load_iovas(caller: &Arc<dyn ProcessMemory>, ptr: u64, num: u64) -> Result<IovaMap<()>, Errno> {
    let mut allowed = IovaMap::new();
    let mut i = 0u64;
    while i < num {
        // Whole batches are read when readable; a batch that faults is
        // read range by range so earlier ranges are still checked first,
        // as the kernel reads them one at a time.
        let n = RANGES_PER_READ.min(num - i);
        let at = ptr.checked_add(i * IOMMU_IOVA_RANGE_SIZE).ok_or(Errno::FAULT)?;
        let mut buf = vec![0u8; (n * IOMMU_IOVA_RANGE_SIZE) as usize];
        let got = match caller.read(at, &mut buf) {
            Ok(()) => n,
            Err(_) => {
                let mut got = 0;
                for (k, chunk) in buf.chunks_mut(IOMMU_IOVA_RANGE_SIZE as usize).enumerate() {
                    let a = at.checked_add(k as u64 * IOMMU_IOVA_RANGE_SIZE).ok_or(Errno::FAULT)?;
                    if caller.read(a, chunk).is_err() {
                        break;
                    }
                    got += 1;
                }
                got
            }
        };
        for chunk in buf.chunks(IOMMU_IOVA_RANGE_SIZE as usize).take(got as usize) {
            let range = Raw::from_slice(chunk);
            let (start, last) = (range.u64(0), range.u64(8));
            if start >= last || allowed.first_overlap(start, last).is_some() {
                return Err(Errno::INVAL);
            }
            allowed.insert(start, last, ());
        }
        if got < n {
            return Err(Errno::FAULT);
        }
        i += n;
    }
    Ok(allowed)
}

/// DMA of one device bound to a context.
#[derive(Debug)]
pub(crate) struct DeviceDma {
    /// The context (its lock is the context's).
    pub(crate) ctx: Arc<Mutex<Ctx>>,
    /// The device's object id.
    pub(crate) devid: u32,
    /// Its binding: once unbound, the id may name another device.
    pub(crate) bind: u64,
}

impl DmaSpace for DeviceDma {
    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let segs = lock(&self.ctx).translate(self.devid, self.bind, iova, buf.len(), Dir::Read)?;
        dma::read_segments(&segs, buf)
    }

    fn dma_write(&self, iova: u64, data: &[u8]) -> Result<(), Errno> {
        let segs = lock(&self.ctx).translate(self.devid, self.bind, iova, data.len(), Dir::Write)?;
        dma::write_segments(&segs, data)
    }
}
