//! mmap(2) of a device fd and of a buffer fd: the reference, and the properties.

use super::*;

// ---------------------------------------------------------------------------
// Reference: mmap(2) of a device fd (spec §2.2) or a buffer fd (spec §4.5)
// ---------------------------------------------------------------------------

/// Where an exact-address request lands, as the test arranged it.
#[derive(Debug, Clone, Copy)]
pub enum AddrPick {
    Anywhere,
    /// Inside the test's own long-lived mapping, `misalign` bytes past a page.
    Taken {
        page: u64,
        misalign: u64,
    },
    /// Far above the user address space.
    High(u64),
}

pub fn addr_pick() -> impl Strategy<Value = AddrPick> {
    prop_oneof![
        6 => Just(AddrPick::Anywhere),
        2 => (0u64..4, prop_oneof![3 => Just(0u64), 1 => 1u64..PAGE])
            .prop_map(|(page, misalign)| AddrPick::Taken { page, misalign }),
        1 => prop::sample::select(vec![1 << 57, 1 << 62, LAST_PAGE]).prop_map(AddrPick::High),
    ]
}

/// `ksys_mmap_pgoff()` → `do_mmap()` → `get_unmapped_area()` → the file's
/// `mmap`, for a file whose `file_mmap_size_max()` is `file_max`: returns
/// the page-rounded length of a mapping that must succeed.
pub fn mmap_want(
    args: &MmapArgs,
    taken: bool,
    file_max: u64,
    vfs: &dyn Fn() -> Result<(), Errno>,
    driver: &dyn Fn(u64) -> Result<(), Errno>,
) -> Result<u64, Errno> {
    // mmap(2) itself: the offset must be page aligned.
    if args.offset % PAGE != 0 {
        return Err(Errno::INVAL);
    }
    // do_mmap(): empty, then PAGE_ALIGN wrapping to 0. (Its pgoff overflow
    // check cannot fire for a byte offset on 64-bit.)
    if args.len == 0 {
        return Err(Errno::INVAL);
    }
    let len = page_align(args.len).ok_or(Errno::NOMEM)?;
    address_space_checks(args.addr, len, taken)?;
    file_mmap_ok(args.offset >> 12, len, file_max)?;
    vfs()?;
    driver(len)?;
    Ok(len)
}

/// `get_unmapped_area()` and the `MAP_FIXED_NOREPLACE` overlap check.
pub fn address_space_checks(addr: Option<u64>, len: u64, taken: bool) -> Result<(), Errno> {
    if len > TASK_SIZE {
        return Err(Errno::NOMEM);
    }
    if let Some(a) = addr {
        if a > TASK_SIZE - len {
            return Err(Errno::NOMEM);
        }
        if a % PAGE != 0 {
            return Err(Errno::INVAL);
        }
        if taken {
            return Err(Errno::EXIST);
        }
    }
    Ok(())
}

/// `file_mmap_ok()`: the mapping's last byte must fit the file's limit.
pub fn file_mmap_ok(pgoff: u64, len: u64, max: u64) -> Result<(), Errno> {
    if len > max || pgoff > (max - len) >> 12 {
        return Err(Errno::OVERFLOW);
    }
    Ok(())
}

/// `vfio_pci_core_mmap()` (spec §2.2 steps 1-5).
pub fn device_driver(bars: &[Bar; 6], offset: u64, shared: bool, len: u64) -> Result<(), Errno> {
    let index = offset >> 40;
    if index >= u64::from(VFIO_PCI_NUM_REGIONS) || !shared || index >= 6 {
        return Err(Errno::INVAL);
    }
    let bar_len = mem_len(bars, index).ok_or(Errno::INVAL)?;
    match (offset & OFFSET_MASK).checked_add(len) {
        Some(end) if end <= page_align(bar_len).unwrap() => Ok(()),
        _ => Err(Errno::INVAL),
    }
}

/// `do_mmap()`'s access-mode checks for a buffer fd opened with `mode`.
pub fn buffer_vfs(mode: AccessMode, shared: bool, write: bool) -> Result<(), Errno> {
    let writable = matches!(mode, AccessMode::WriteOnly | AccessMode::ReadWrite);
    let readable = matches!(mode, AccessMode::ReadOnly | AccessMode::ReadWrite);
    if (shared && write && !writable) || !readable {
        return Err(Errno::ACCESS);
    }
    Ok(())
}

/// `dma_buf_mmap_internal()` then `vfio_pci_dma_buf_mmap()` (spec §4.5).
pub fn buffer_driver(size: u64, status_ok: bool, offset: u64, shared: bool, len: u64) -> Result<(), Errno> {
    if (offset >> 12) + (len >> 12) > size >> 12 {
        return Err(Errno::INVAL);
    }
    if !status_ok {
        return Err(Errno::NODEV);
    }
    if !shared {
        return Err(Errno::INVAL);
    }
    Ok(())
}

/// Judges one mmap: `Ok(Some(len))` when it must have succeeded.
pub fn judge_mmap(got: &Result<u64, VfioError>, kernel: &[Result<u64, Errno>]) -> Result<Option<u64>, TestCaseError> {
    let got_e = got.as_ref().map(|_| ()).map_err(VfioError::errno);
    let matches = |w: &Result<u64, Errno>| w.map(|_| ()) == got_e;
    if let Some(w) = kernel.iter().find(|w| matches(w)) {
        return Ok(w.ok());
    }
    Err(TestCaseError::fail(format!("got {got:?}, the kernel gives {kernel:?}")))
}

// ---------------------------------------------------------------------------
// Property: device-fd mmap
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct DeviceMmapCase {
    pub multi_bar: bool,
    pub offset: u64,
    pub len: u64,
    pub write: bool,
    pub shared: bool,
    pub addr: AddrPick,
    pub memory_on: bool,
}

pub fn bar_offset() -> BoxedStrategy<u64> {
    let index = prop_oneof![6 => 0u64..7, 2 => 0u64..=20, 1 => Just(u64::from(u32::MAX)), 1 => Just((1 << 24) - 1)];
    let pos = prop_oneof![
        6 => (0u64..64).prop_map(|p| p * PAGE),
        2 => prop::sample::select(vec![PAGE, 16 << 10, 2 * MIB, 32 * MIB, 64 * MIB]).prop_flat_map(|end| {
            prop::sample::select(vec![end - PAGE, end, end + PAGE])
        }),
        1 => 0u64..PAGE,
        1 => 0..=OFFSET_MASK,
    ];
    let plausible = (prop::sample::select(vec![0u64, 1, 2, 4]), 0u64..16).prop_map(|(i, p)| (i << 40) + p * PAGE);
    prop_oneof![
        6 => plausible,
        6 => (index, pos).prop_map(|(i, p)| (i << 40).wrapping_add(p)),
        1 => (0u64..4).prop_map(|k| LAST_PAGE - k * PAGE),
        1 => any::<u64>(),
    ]
    .boxed()
}

pub fn mmap_len() -> BoxedStrategy<u64> {
    prop_oneof![
        6 => prop_oneof![1u64..4, 1u64..40].prop_map(|p| p * PAGE),
        2 => prop::sample::select(vec![0, 1, PAGE - 1, PAGE + 1, 16 << 10, 2 * MIB, 32 * MIB, 64 * MIB, 64 * MIB + PAGE]),
        1 => prop::sample::select(vec![1 << 57, 1 << 63, u64::MAX - PAGE, u64::MAX - (PAGE - 1), u64::MAX - (PAGE - 2), u64::MAX]),
    ]
    .boxed()
}

pub fn device_mmap_case() -> impl Strategy<Value = DeviceMmapCase> {
    (
        prop::bool::ANY,
        bar_offset(),
        mmap_len(),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.85),
        addr_pick(),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(multi_bar, offset, len, write, shared, addr, memory_on)| DeviceMmapCase {
            multi_bar,
            offset,
            len,
            write,
            shared,
            addr,
            memory_on,
        })
}

/// One address space, two devices, and a long-lived mapping whose pages
/// are the "taken" exact addresses.
pub struct MmapWorld {
    pub aspace: AddressSpace,
    pub edu: (Arc<VfioPciDevice>, DeviceFd),
    pub multi: (Arc<VfioPciDevice>, DeviceFd),
    pub taken: u64,
}

impl MmapWorld {
    pub fn new() -> Self {
        let aspace = AddressSpace::new().unwrap();
        let edu = device("edu-plus");
        let multi = device("multi-bar");
        let (edu_fd, multi_fd) = (edu.open(), multi.open());
        let taken = multi_fd.mmap(&aspace, MmapArgs::shared(4 << 40, 4 * PAGE)).unwrap();
        Self { aspace, edu: (edu, edu_fd), multi: (multi, multi_fd), taken }
    }

    pub fn resolve(&self, pick: AddrPick) -> (Option<u64>, bool) {
        match pick {
            AddrPick::Anywhere => (None, false),
            AddrPick::Taken { page, misalign } => (Some(self.taken + page * PAGE + misalign), true),
            AddrPick::High(a) => (Some(a), false),
        }
    }

    pub fn run_device(&self, case: &DeviceMmapCase) -> Result<(), TestCaseError> {
        let ((vdev, fd), bars) = if case.multi_bar { (&self.multi, &MULTI_BAR) } else { (&self.edu, &EDU_PLUS) };
        let base = snapshot(vdev, Some(&self.aspace));
        fd.set_memory_enable(case.memory_on).unwrap();
        let (addr, taken) = self.resolve(case.addr);
        let args = MmapArgs { addr, len: case.len, write: case.write, shared: case.shared, offset: case.offset };
        let vfs = || Ok(());
        let driver = |len| device_driver(bars, case.offset, case.shared, len);
        // The device fd is a character device: file_mmap_size_max() is ULONG_MAX.
        let kernel = [mmap_want(&args, taken, u64::MAX, &vfs, &driver)];

        let before = snapshot(vdev, Some(&self.aspace));
        let got = fd.mmap(&self.aspace, args);
        let Some(len) = judge_mmap(&got, &kernel)? else {
            prop_assert_eq!(snapshot(vdev, Some(&self.aspace)), before, "failed mmap {:?}", got);
            fd.set_memory_enable(true).unwrap();
            return Ok(());
        };
        let va = got.unwrap();
        // The VMA is exactly what was asked for, backed by a new buffer.
        let vma = self.aspace.find_vma(va).unwrap();
        prop_assert_eq!((vma.vm_start, vma.vm_end, vma.vm_pgoff), (va, va + len, case.offset >> 12));
        if let Some(a) = addr {
            prop_assert_eq!(va, a);
        }
        let bufs = vdev.dmabufs();
        prop_assert_eq!(bufs.len(), before.dmabufs.len() + 1);
        let new = bufs.iter().find(|b| !before.dmabufs.iter().any(|s| s.0 == b.id())).unwrap();
        prop_assert_eq!(new.size(), len);
        prop_assert_eq!(new.status(), if case.memory_on { Status::Ok } else { Status::TempRevoked });
        // Both ends work exactly while memory decoding is on; what is
        // written shows at the mmap offset through region read.
        check_access(va, case.memory_on)?;
        check_access(va + len - 8, case.memory_on)?;
        if case.memory_on {
            let w = probe::write_u64(va + len - 8, 0x5eed_0000 ^ va);
            if case.write {
                prop_assert!(w.is_ok(), "{:?}", w);
                let mut b = [0u8; 8];
                fd.read(case.offset + len - 8, &mut b).unwrap();
                prop_assert_eq!(u64::from_ne_bytes(b), 0x5eed_0000 ^ va);
            } else {
                prop_assert!(w.is_err_and(|f| f.signo == libc::SIGSEGV), "store to a read-only map: {:?}", w);
            }
        }
        drop(bufs);
        self.aspace.munmap(va, len).unwrap();
        fd.set_memory_enable(true).unwrap();
        prop_assert_eq!(snapshot(vdev, Some(&self.aspace)), base);
        Ok(())
    }
}

/// Device-fd mmap with any offset (index bits of missing regions, past the
/// BAR, unaligned, near `u64::MAX`), any length, `MAP_PRIVATE` and exact
/// addresses: the kernel's errno, or a mapping that is exactly the window
/// asked for.
#[test]
fn device_mmap_arguments_get_the_kernel_answer() {
    let _q = quiet();
    let world = MmapWorld::new();
    check(512, device_mmap_case(), |case| world.run_device(&case));
}

// ---------------------------------------------------------------------------
// Property: buffer-fd mmap
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    No,
    Temp,
    Perm,
}

#[derive(Debug, Clone)]
pub struct BufferMmapCase {
    /// (BAR page, pages) of each range of BAR4 of multi-bar (8192 pages).
    pub ranges: Vec<(u64, u64)>,
    pub open_flags: u32,
    pub revoked: Revoked,
    pub offset: u64,
    pub len: u64,
    pub write: bool,
    pub shared: bool,
    pub addr: AddrPick,
}

pub fn buffer_mmap_case() -> impl Strategy<Value = BufferMmapCase> {
    let range = (0u64..8000, 1u64..64).prop_map(|(p, n)| (p, n.min(8192 - p)));
    let ranges = prop::collection::vec(range, 1..4);
    let open_flags = prop_oneof![6 => Just(RDWR), 2 => Just(RDONLY), 1 => Just(WRONLY)];
    let revoked = prop_oneof![6 => Just(Revoked::No), 1 => Just(Revoked::Temp), 1 => Just(Revoked::Perm)];
    let offset = prop_oneof![
        6 => (0u64..80).prop_map(|p| p * PAGE),
        1 => 0u64..PAGE,
        1 => prop::sample::select(vec![1 << 40, (1 << 63) - PAGE, 1 << 63, LAST_PAGE]),
        1 => any::<u64>(),
    ];
    (
        ranges,
        open_flags,
        revoked,
        offset,
        mmap_len(),
        prop::bool::weighted(0.7),
        prop::bool::weighted(0.85),
        addr_pick(),
    )
        .prop_map(|(ranges, open_flags, revoked, offset, len, write, shared, addr)| BufferMmapCase {
            ranges,
            open_flags,
            revoked,
            offset,
            len,
            write,
            shared,
            addr,
        })
}

impl MmapWorld {
    pub fn run_buffer(&self, case: &BufferMmapCase) -> Result<(), TestCaseError> {
        let (vdev, fd) = &self.multi;
        let ranges: Vec<(u64, u64)> = case.ranges.iter().map(|&(p, n)| (p * PAGE, n * PAGE)).collect();
        let buf = fd.feature_dma_buf(4, case.open_flags, &ranges).unwrap();
        match case.revoked {
            Revoked::No => {}
            Revoked::Temp => fd.set_memory_enable(false).unwrap(),
            Revoked::Perm => fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap(),
        }
        let size: u64 = ranges.iter().map(|r| r.1).sum();
        let mode = buf.buffer().mode();
        let (addr, taken) = self.resolve(case.addr);
        let args = MmapArgs { addr, len: case.len, write: case.write, shared: case.shared, offset: case.offset };
        let vfs = || buffer_vfs(mode, case.shared, case.write);
        let driver = |len| buffer_driver(size, case.revoked == Revoked::No, case.offset, case.shared, len);
        // A dma-buf file is an anonymous inode: regular-mode since Linux
        // 6.15 (limit MAX_LFS_FILESIZE), modeless before (ULONG_MAX).
        let kernel = [
            mmap_want(&args, taken, MAX_LFS_FILESIZE, &vfs, &driver),
            mmap_want(&args, taken, u64::MAX, &vfs, &driver),
        ];

        let before = snapshot(vdev, Some(&self.aspace));
        let got = mmap_dmabuf(&self.aspace, &buf, args);
        let result = judge_mmap(&got, &kernel);
        let outcome = match result {
            Ok(None) => {
                prop_assert_eq!(snapshot(vdev, Some(&self.aspace)), before.clone(), "failed mmap {:?}", got);
                Ok(())
            }
            Ok(Some(len)) => self.check_buffer_mapping(fd, &buf, &ranges, case, got.unwrap(), len),
            Err(e) => Err(e),
        };
        fd.set_memory_enable(true).unwrap();
        drop(buf);
        outcome
    }

    /// A buffer mapping shows buffer page `offset / PAGE + k` at page `k`.
    pub fn check_buffer_mapping(
        &self,
        fd: &DeviceFd,
        buf: &DmaBufFd,
        ranges: &[(u64, u64)],
        case: &BufferMmapCase,
        va: u64,
        len: u64,
    ) -> Result<(), TestCaseError> {
        let vma = self.aspace.find_vma(va).unwrap();
        prop_assert_eq!((vma.vm_start, vma.vm_end, vma.vm_pgoff), (va, va + len, case.offset >> 12));
        prop_assert_eq!(buf.buffer().status(), Status::Ok);
        let bar_offset_of = |buffer_byte: u64| {
            let mut start = 0;
            for &(off, n) in ranges {
                if buffer_byte < start + n {
                    return off + buffer_byte - start;
                }
                start += n;
            }
            unreachable!("inside the buffer")
        };
        for k in [0, len / PAGE - 1] {
            let at = va + k * PAGE + 8;
            let bar_byte = (4 << 40) + bar_offset_of(case.offset + k * PAGE + 8);
            let mut b = [0u8; 8];
            if case.write {
                probe::write_u64(at, at).unwrap();
                fd.read(bar_byte, &mut b).unwrap();
                prop_assert_eq!(u64::from_ne_bytes(b), at);
            } else {
                fd.read(bar_byte, &mut b).unwrap();
                prop_assert_eq!(probe::read_u64(at).unwrap(), u64::from_ne_bytes(b));
            }
        }
        self.aspace.munmap(va, len).unwrap();
        Ok(())
    }
}

/// Buffer-fd mmap of read-only, write-only and revoked buffers with any
/// offset and length: the kernel's errno, or a window showing the
/// concatenated ranges from the offset on.
#[test]
fn buffer_mmap_arguments_get_the_kernel_answer() {
    let _q = quiet();
    let world = MmapWorld::new();
    check(512, buffer_mmap_case(), |case| world.run_buffer(&case));
}
