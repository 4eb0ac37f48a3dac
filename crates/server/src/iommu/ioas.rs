//! The page table of an IOAS (`struct io_pagetable`,
//! `drivers/iommu/iommufd/io_pagetable.c`): areas mapping IOVA ranges to
//! process memory, the reserved ranges of attached devices and domains,
//! the user's allowed ranges, and the IOVA alignment the domains impose.

use std::sync::Arc;

use rustix::io::Errno;

use super::dma::{Prot, Target};
use super::host::{APERTURE_LAST, DOMAIN_PGSIZES, MSI_WINDOW, PAGE_SIZE};
use super::iova::{holes, IovaMap};
use super::{PinFlags, ProcessMemory};

/// `struct iopt_area`: one mapped IOVA range.
#[derive(Debug, Clone)]
struct Area {
    /// The process the pages belong to (`iopt_pages::source_mm`).
    mm: Arc<dyn ProcessMemory>,
    /// The process address of the area's first IOVA.
    vaddr: u64,
    /// The pages were mapped writable (`iopt_pages::writable`); a copy of
    /// them may not add write permission.
    writable: bool,
    prot: Prot,
}

/// Who reserved an IOVA range (the owner of an `iopt_reserved`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// An attached device's reserved regions (the MSI window).
    Device(u32),
    /// A domain's aperture: everything it cannot address.
    Domain(u32),
}

/// A run of process pages to map (`struct iopt_pages_list`).
#[derive(Debug, Clone)]
pub(crate) struct Pages {
    /// Whose memory.
    pub mm: Arc<dyn ProcessMemory>,
    /// Its first byte.
    pub vaddr: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Mapped writable at first.
    pub writable: bool,
}

/// `struct io_pagetable`.
#[derive(Debug)]
pub(crate) struct IoPageTable {
    /// Mapped ranges (`area_itree`).
    areas: IovaMap<Area>,
    /// The user's allow list for IOVA allocation (`allowed_itree`); empty
    /// allows everything.
    allowed: IovaMap<()>,
    /// Reserved ranges (`reserved_itree`); owners may overlap.
    reserved: Vec<(u64, u64, Owner)>,
    /// Every area's IOVA, length and page offset are multiples of this.
    iova_alignment: u64,
    /// `IOMMU_OPTION_HUGE_PAGES` off (or `VFIO_TYPE1_IOMMU` through the
    /// compatibility layer): areas may then be split.
    disable_large_pages: bool,
    /// The paging HWPTs whose domains this table fills.
    domains: Vec<u32>,
}

impl Default for IoPageTable {
    fn default() -> Self {
        // A table starts as a software table over the whole 64-bit space
        // with no alignment restriction (`iopt_init_table`).
        Self {
            areas: IovaMap::new(),
            allowed: IovaMap::new(),
            reserved: Vec::new(),
            iova_alignment: 1,
            disable_large_pages: false,
            domains: Vec::new(),
        }
    }
}

/// `ALIGN(x, a) | page_offset`, `None` when it leaves the 64-bit space.
fn align_or(x: u64, a: u64, page_offset: u64) -> Option<u64> {
    Some(x.checked_add(a - 1)? & !(a - 1) | page_offset)
}

/// Whether a run of `length` bytes fits `[start, last]` once its start is
/// aligned; returns that start (`__alloc_iova_check_hole`).
fn fit(start: u64, last: u64, length: u64, align: u64, page_offset: u64) -> Option<u64> {
    if last - start < length - 1 {
        return None;
    }
    let s = align_or(start, align, page_offset)?;
    (s <= last && last - s >= length - 1).then_some(s)
}

impl IoPageTable {
    /// `out_iova_alignment`.
    pub fn iova_alignment(&self) -> u64 {
        self.iova_alignment
    }

    /// Whether a domain is filled from this table.
    pub fn has_domains(&self) -> bool {
        !self.domains.is_empty()
    }

    /// `IOMMU_OPTION_HUGE_PAGES` as read back.
    pub fn large_pages(&self) -> bool {
        !self.disable_large_pages
    }

    /// The usable IOVA ranges: the holes between reserved ranges.
    pub fn iova_ranges(&self) -> Vec<(u64, u64)> {
        holes(self.reserved.iter().map(|&(s, l, _)| (s, l)), 0, u64::MAX)
    }

    /// `iommufd_get_pagesizes` (compatibility `VFIO_IOMMU_GET_INFO`).
    pub fn pgsizes(&self) -> u64 {
        let mut bitmap = if self.has_domains() { DOMAIN_PGSIZES } else { u64::MAX };
        // Sizes below a page are hidden behind PAGE_SIZE, as Type1 does.
        if bitmap & (PAGE_SIZE - 1) != 0 {
            bitmap = (bitmap & !(PAGE_SIZE - 1)) | PAGE_SIZE;
        }
        bitmap.max(self.iova_alignment)
    }

    fn reserved_hit(&self, start: u64, last: u64) -> bool {
        self.reserved.iter().any(|&(s, l, _)| s <= last && start <= l)
    }

    /// `iopt_check_iova`: a fixed IOVA for `length` bytes; returns its last.
    fn check_iova(&self, iova: u64, length: u64) -> Result<u64, Errno> {
        if iova & (self.iova_alignment - 1) != 0 {
            return Err(Errno::INVAL);
        }
        let last = iova.checked_add(length - 1).ok_or(Errno::OVERFLOW)?;
        if self.reserved_hit(iova, last) {
            return Err(Errno::INVAL);
        }
        if self.areas.first_overlap(iova, last).is_some() {
            return Err(Errno::EXIST);
        }
        Ok(last)
    }

    /// `iopt_alloc_iova`: finds a free IOVA (never 0) inside the allowed
    /// ranges, aligned as `uptr` and the length suggest so huge pages can
    /// be used, keeping `uptr`'s offset in its page.
    fn alloc_iova(&self, uptr: u64, length: u64) -> Result<u64, Errno> {
        let page_offset = uptr % PAGE_SIZE;
        if length == 0 || length >= u64::MAX / 2 {
            return Err(Errno::OVERFLOW);
        }
        let pow = length.next_power_of_two();
        let align = if uptr == 0 { pow } else { pow.min(1 << uptr.trailing_zeros()) };
        if align < self.iova_alignment {
            return Err(Errno::INVAL);
        }
        let (lo, hi) = (PAGE_SIZE, u64::MAX - PAGE_SIZE);
        let spans = if self.allowed.is_empty() {
            vec![(lo, hi)]
        } else {
            // The allowed ranges merged where they touch: the complement of
            // the complement.
            holes(holes(self.allowed.ranges(), lo, hi), lo, hi)
        };
        for (s, l) in spans {
            let Some(s) = fit(s, l, length, align, page_offset) else { continue };
            let used = self.reserved.iter().map(|&(s, l, _)| (s, l)).chain(self.areas.ranges());
            for (hs, hl) in holes(used, s, l) {
                if let Some(iova) = fit(hs, hl, length, align, page_offset) {
                    return Ok(iova);
                }
            }
        }
        Err(Errno::NOSPC)
    }

    /// `iopt_map_user_pages`: maps `length` bytes at `uptr` of `mm`, at
    /// `iova` or (for `None`) at an allocated IOVA, which is returned.
    ///
    /// # Errors
    ///
    /// As [`IoPageTable::map_pages`]; `EOVERFLOW` when the user range
    /// wraps, then `EINVAL` for a length of 0 or within a page of 2^64.
    pub fn map_user(
        &mut self,
        mm: &Arc<dyn ProcessMemory>,
        uptr: u64,
        length: u64,
        iova: Option<u64>,
        prot: Prot,
    ) -> Result<u64, Errno> {
        // iopt_alloc_user_pages, then iopt_alloc_pages.
        uptr.checked_add(length).ok_or(Errno::OVERFLOW)?;
        if length == 0 || length > u64::MAX - PAGE_SIZE {
            return Err(Errno::INVAL);
        }
        let pages = Pages { mm: Arc::clone(mm), vaddr: uptr, len: length, writable: prot.write };
        self.map_pages(vec![pages], length, iova, prot)
    }

    /// `iopt_map_pages`: maps the runs back to back.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a length, IOVA or page offset off the alignment, or an
    /// IOVA touching a reserved range; `EOVERFLOW` when the range wraps;
    /// `EEXIST` over a mapping; `ENOSPC` when no IOVA is free; `EPERM` for
    /// write permission on pages mapped read-only; `EFAULT` when pages
    /// cannot be pinned into the attached domains.
    pub fn map_pages(&mut self, runs: Vec<Pages>, length: u64, iova: Option<u64>, prot: Prot) -> Result<u64, Errno> {
        if length == 0 || length & (self.iova_alignment - 1) != 0 {
            return Err(Errno::INVAL);
        }
        let start = match iova {
            None => self.alloc_iova(runs.first().map_or(0, |r| r.vaddr), length)?,
            Some(iova) => {
                self.check_iova(iova, length)?;
                iova
            }
        };
        // iopt_insert_area, for each run.
        let mut planned = Vec::with_capacity(runs.len());
        let mut at = start;
        for run in runs {
            if prot.write && !run.writable {
                return Err(Errno::PERM);
            }
            if (run.vaddr % PAGE_SIZE) & (self.iova_alignment - 1) != 0 {
                return Err(Errno::INVAL);
            }
            let last = at.checked_add(run.len - 1).ok_or(Errno::OVERFLOW)?;
            planned.push((at, last, run));
            at = last.wrapping_add(1);
        }
        // With a domain attached the pages are pinned now; otherwise
        // lazily, when a domain is added.
        if self.has_domains() {
            for (_, _, run) in &planned {
                run.mm.pin(run.vaddr, run.len, PinFlags { write: run.writable, allow_pfnmap: false })?;
            }
        }
        for (s, l, run) in planned {
            self.areas.insert(s, l, Area { mm: run.mm, vaddr: run.vaddr, writable: run.writable, prot });
        }
        Ok(start)
    }

    /// `iopt_get_pages`: the runs behind `[iova, iova + length)`, which
    /// contiguous areas must cover (`IOMMU_IOAS_COPY`'s source).
    ///
    /// # Errors
    ///
    /// `EINVAL` for length 0, `EOVERFLOW` when the range wraps, `ENOENT`
    /// for a gap.
    pub fn get_pages(&self, iova: u64, length: u64) -> Result<Vec<Pages>, Errno> {
        if length == 0 {
            return Err(Errno::INVAL);
        }
        let last = iova.checked_add(length - 1).ok_or(Errno::OVERFLOW)?;
        let mut runs = Vec::new();
        let mut cur = iova;
        loop {
            let a = self.areas.find(cur).ok_or(Errno::NOENT)?;
            // After the first, each area must start where the last ended.
            if cur != iova && a.start != cur {
                return Err(Errno::NOENT);
            }
            let end = a.last.min(last);
            runs.push(Pages {
                mm: Arc::clone(&a.val.mm),
                vaddr: a.val.vaddr.wrapping_add(cur - a.start),
                len: end - cur + 1,
                writable: a.val.writable,
            });
            if end == last {
                return Ok(runs);
            }
            cur = end + 1;
        }
    }

    /// `iopt_unmap_iova`: removes the areas inside `[iova, iova + length)`.
    /// Returns the bytes unmapped, which are also reported on failure (the
    /// areas before a cut one are gone by then).
    ///
    /// # Errors
    ///
    /// `EINVAL` for length 0, `EOVERFLOW` when the range wraps, `ENOENT`
    /// when nothing is mapped there or an area reaches out of the range
    /// (areas are never split here).
    pub fn unmap(&mut self, iova: u64, length: u64) -> (u64, Result<(), Errno>) {
        if length == 0 {
            return (0, Err(Errno::INVAL));
        }
        match iova.checked_add(length - 1) {
            None => (0, Err(Errno::OVERFLOW)),
            Some(last) => self.unmap_range(iova, last),
        }
    }

    /// `iopt_unmap_iova_range`.
    fn unmap_range(&mut self, start: u64, last: u64) -> (u64, Result<(), Errno>) {
        let spans: Vec<(u64, u64)> = self.areas.overlapping(start, last).map(|s| (s.start, s.last)).collect();
        let mut unmapped = 0u64;
        for (s, l) in spans {
            if s < start || l > last {
                return (unmapped, Err(Errno::NOENT));
            }
            self.areas.remove(s);
            unmapped = unmapped.wrapping_add(l - s + 1);
        }
        if unmapped == 0 {
            return (0, Err(Errno::NOENT));
        }
        (unmapped, Ok(()))
    }

    /// `iopt_unmap_all`: succeeds even when nothing is mapped.
    pub fn unmap_all(&mut self) -> u64 {
        let unmapped = self.areas.iter().fold(0u64, |n, s| n.wrapping_add(s.len()));
        self.areas.clear();
        unmapped
    }

    /// `iopt_cut_iova`: splits the areas holding these IOVAs so that each
    /// becomes the last byte of an area (the compatibility layer's `v1`
    /// hole punching).
    ///
    /// # Errors
    ///
    /// `EINVAL` when a cut is off the alignment, or the area may be mapped
    /// with huge pages.
    pub fn cut(&mut self, iovas: &[u64]) -> Result<(), Errno> {
        for &iova in iovas {
            let Some(a) = self.areas.find(iova) else { continue };
            let (start, last) = (a.start, a.last);
            if iova == start || iova == last {
                continue;
            }
            let new_start = iova + 1;
            let new_vaddr = a.val.vaddr.wrapping_add(new_start - start);
            let mask = self.iova_alignment - 1;
            if new_start & mask != 0 || (new_vaddr % PAGE_SIZE) & mask != 0 {
                return Err(Errno::INVAL);
            }
            if self.has_domains() && !self.disable_large_pages {
                return Err(Errno::INVAL);
            }
            let Some((_, area)) = self.areas.remove(start) else { continue };
            let rhs = Area { vaddr: new_vaddr, ..area.clone() };
            self.areas.insert(start, iova, area);
            self.areas.insert(new_start, last, rhs);
        }
        Ok(())
    }

    /// `iopt_set_allow_iova`: replaces the allow list.
    ///
    /// # Errors
    ///
    /// `EADDRINUSE` when an allowed range touches a reserved one.
    pub fn set_allowed(&mut self, ranges: IovaMap<()>) -> Result<(), Errno> {
        if ranges.iter().any(|r| self.reserved_hit(r.start, r.last)) {
            return Err(Errno::ADDRINUSE);
        }
        self.allowed = ranges;
        Ok(())
    }

    /// `iopt_reserve_iova`.
    fn reserve(&mut self, start: u64, last: u64, owner: Owner) -> Result<(), Errno> {
        if self.areas.first_overlap(start, last).is_some() || self.allowed.first_overlap(start, last).is_some() {
            return Err(Errno::ADDRINUSE);
        }
        self.reserved.push((start, last, owner));
        Ok(())
    }

    fn unreserve(&mut self, owner: Owner) {
        self.reserved.retain(|&(_, _, o)| o != owner);
    }

    /// `iopt_table_enforce_dev_resv_regions` for device `devid`.
    ///
    /// # Errors
    ///
    /// `EADDRINUSE` when a mapping or allowed range covers the device's
    /// reserved regions.
    pub fn add_device(&mut self, devid: u32) -> Result<(), Errno> {
        self.reserve(MSI_WINDOW.0, MSI_WINDOW.1, Owner::Device(devid))
    }

    /// The device's reserved regions go with it.
    pub fn remove_device(&mut self, devid: u32) {
        self.unreserve(Owner::Device(devid));
    }

    /// `iopt_check_iova_alignment`.
    fn check_alignment(&self, align: u64) -> Result<(), Errno> {
        let mask = align - 1;
        let bad = self
            .areas
            .iter()
            .any(|a| a.start & mask != 0 || a.len() & mask != 0 || (a.val.vaddr % PAGE_SIZE) & mask != 0);
        if bad {
            return Err(Errno::ADDRINUSE);
        }
        Ok(())
    }

    /// `iopt_calculate_iova_alignment`.
    fn recalculate_alignment(&mut self) -> Result<(), Errno> {
        let mut align = if self.disable_large_pages { PAGE_SIZE } else { 1 };
        if self.has_domains() {
            align = align.max(1 << DOMAIN_PGSIZES.trailing_zeros());
        }
        if align > self.iova_alignment {
            self.check_alignment(align)?;
        }
        self.iova_alignment = align;
        Ok(())
    }

    /// `iopt_table_add_domain` for paging HWPT `hwpt`: the alignment rises
    /// to the domain's page, IOVA past its aperture is reserved, and the
    /// first domain pins every area.
    ///
    /// # Errors
    ///
    /// `EADDRINUSE` for an area off the new alignment or past the
    /// aperture; `EFAULT` when an area cannot be pinned.
    pub fn add_domain(&mut self, hwpt: u32) -> Result<(), Errno> {
        let align = self.iova_alignment.max(1 << DOMAIN_PGSIZES.trailing_zeros());
        if align > PAGE_SIZE {
            return Err(Errno::INVAL);
        }
        if align != self.iova_alignment {
            self.check_alignment(align)?;
        }
        self.reserve(APERTURE_LAST + 1, u64::MAX, Owner::Domain(hwpt))?;
        // A second domain copies the PFNs from the first: no new pinning.
        if !self.has_domains() {
            let pinned = self.areas.iter().try_for_each(|a| {
                a.val.mm.pin(a.val.vaddr, a.len(), PinFlags { write: a.val.writable, allow_pfnmap: false })
            });
            if let Err(e) = pinned {
                self.unreserve(Owner::Domain(hwpt));
                return Err(e);
            }
        }
        self.iova_alignment = align;
        self.domains.push(hwpt);
        Ok(())
    }

    /// `iopt_table_remove_domain`.
    pub fn remove_domain(&mut self, hwpt: u32) {
        self.domains.retain(|&d| d != hwpt);
        self.unreserve(Owner::Domain(hwpt));
        // The alignment can only fall here, which cannot fail.
        let fell = self.recalculate_alignment();
        debug_assert!(fell.is_ok());
    }

    /// `iopt_disable_large_pages`.
    ///
    /// # Errors
    ///
    /// `EINVAL` once a domain holds mappings (they may be huge already);
    /// `EADDRINUSE` for an area off page alignment.
    pub fn disable_large_pages(&mut self) -> Result<(), Errno> {
        if self.disable_large_pages {
            return Ok(());
        }
        if self.has_domains() && !self.areas.is_empty() {
            return Err(Errno::INVAL);
        }
        self.disable_large_pages = true;
        self.recalculate_alignment().inspect_err(|_| self.disable_large_pages = false)
    }

    /// `iopt_enable_large_pages`.
    pub fn enable_large_pages(&mut self) {
        self.disable_large_pages = false;
        // As in remove_domain: the alignment can only fall.
        let fell = self.recalculate_alignment();
        debug_assert!(fell.is_ok());
    }

    /// The area containing `iova`, for DMA.
    pub fn target(&self, iova: u64) -> Option<Target<'_>> {
        let a = self.areas.find(iova)?;
        Some(Target { start: a.start, last: a.last, mm: &a.val.mm, vaddr: a.val.vaddr, prot: a.val.prot })
    }
}
