//! Rows of PMD-mapped BAR memory (issue 12): huge-aligned first touch and
//! revoke against the kernel's own PMD-mapped mapping of a memfd whose page
//! cache holds 2 MiB folios (no userfaultfd), and the latency of the first
//! 2 MiB fault of a new device (whose collapse may have to build the folio by
//! copying 4 KiB pages) against the same fault once the folio exists.

use std::sync::Arc;
use std::time::Instant;

use mm::baseline::{self, PlainMapping};
use mm::{probe, AddressSpace, PhysMemory};
use page::{PhysAddr, HPAGE_PMD_SIZE};
use vfio::DeviceFd;

use super::{map, ms, ns_per, ram_device, row, timed, touch, Options, Progress, Result, Row, Stat, Target};

/// `p.step` calls of this module.
pub(super) const STEPS: usize = 4;

/// First cdev number of the devices made here (one per cold sample).
const FIRST_CDEV: u32 = 910;

/// The kernel's own mapping of `size` bytes whose page cache is 2 MiB
/// folios, PMD-mapped by `MADV_COLLAPSE` once.
fn kernel_pmd_mapping(size: u64) -> Result<PlainMapping> {
    let mem = Arc::new(PhysMemory::new("bench-baseline-pmd", PhysAddr(0), size).map_err(|e| e.to_string())?);
    let m = PlainMapping::new(&mem, PhysAddr(0), size, true).map_err(|e| e.to_string())?;
    m.collapse().map_err(|e| e.to_string())?;
    Ok(m)
}

/// Section 1 rows: huge-aligned first touch against the kernel's PMD-mapped
/// first touch, and the first 2 MiB fault cold and warm. `fd` is a device of
/// `opts.size` whose BAR 0 was faulted before (its folios exist).
pub(super) fn first_touch(opts: Options, p: &mut Progress, fd: &DeviceFd, aspace: &AddressSpace) -> Result<Vec<Row>> {
    let size = opts.size;
    let pages = size / page::PAGE_SIZE;
    p.step("first touch: ours PMD-mapped against the kernel's PMD-mapped memfd");
    let kernel_map = kernel_pmd_mapping(size)?;
    let (mut ours, mut kernel, mut pmds) = (Vec::new(), Vec::new(), 0);
    for _ in 0..opts.runs {
        let va = map(fd, aspace, 0, size)?;
        let before = aspace.fault_stats().pmd_mapped;
        ours.push(ns_per(timed(|| touch(va, size, true))?, pages));
        pmds = aspace.fault_stats().pmd_mapped - before;
        aspace.munmap(va, size).map_err(|e| e.to_string())?;
    }
    for _ in 0..opts.runs {
        kernel_map.zap().map_err(|e| e.to_string())?;
        kernel.push(ns_per(timed(|| touch(kernel_map.addr(), size, true))?, pages));
    }
    let mut rows = vec![row(
        1,
        format!("first touch write, {} MiB, huge-aligned ({pmds} of {} 2 MiB PMD-mapped)", size >> 20, size >> 21),
        Stat::new("ns/page", ours),
        Stat::new("ns/page", kernel),
        "kernel write first touch, memfd of 2 MiB folios, no userfaultfd",
        "ours / baseline",
        Some(Target::AtMost(1.5)),
    )];
    drop(kernel_map);

    p.step("first touch: the first 2 MiB fault of a new device, and once its folio exists");
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for i in 0..opts.runs {
        let vdev = ram_device(FIRST_CDEV + i as u32, HPAGE_PMD_SIZE)?;
        let fd = vdev.open();
        for samples in [&mut cold, &mut warm] {
            let va = map(&fd, aspace, 0, HPAGE_PMD_SIZE)?;
            let t = Instant::now();
            probe::read_u64(va).map_err(|e| e.to_string())?;
            samples.push(t.elapsed().as_secs_f64() * 1e6);
            aspace.munmap(va, HPAGE_PMD_SIZE).map_err(|e| e.to_string())?;
        }
    }
    rows.push(row(
        1,
        "first 2 MiB fault of a new device".into(),
        Stat::new("µs", cold),
        Stat::new("µs", warm),
        "the same fault once the 2 MiB folio exists",
        "ours / baseline",
        None,
    ));
    Ok(rows)
}

/// Section 3 row: revoke of `opts.size` PMD-mapped against `MADV_DONTNEED`
/// of the kernel's own PMD-mapped mapping.
pub(super) fn revoke(opts: Options, p: &mut Progress, fd: &DeviceFd, aspace: &AddressSpace) -> Result<Vec<Row>> {
    let size = opts.size;
    p.step("revoke: PMD-mapped, against the kernel's PMD-mapped zap");
    let va = map(fd, aspace, 0, size)?;
    let kernel_map = kernel_pmd_mapping(size)?;
    let (mut ours, mut kernel) = (Vec::new(), Vec::new());
    for _ in 0..opts.runs {
        touch(va, size, false)?;
        ours.push(ms(timed(|| fd.set_memory_enable(false).map_err(|e| e.to_string()))?));
        fd.set_memory_enable(true).map_err(|e| e.to_string())?;
        touch(kernel_map.addr(), size, false)?;
        kernel.push(ms(timed(|| kernel_map.zap().map_err(|e| e.to_string()))?));
    }
    aspace.munmap(va, size).map_err(|e| e.to_string())?;
    Ok(vec![row(
        3,
        format!("revoke (COMMAND.MEMORY clear), {} MiB PMD-mapped", size >> 20),
        Stat::new("ms", ours),
        Stat::new("ms", kernel),
        "MADV_DONTNEED of the kernel's PMD-mapped mapping",
        "ours / baseline",
        Some(Target::AtMost(1.2)),
    )])
}

/// Section 5 row: creating `opts.size` of BAR storage in 2 MiB frames, each
/// aligned 2 MiB one 2 MiB folio (ours), against the same frames populated
/// by `fallocate` alone (4 KiB pages), per GiB.
pub(super) fn creation(opts: Options, p: &mut Progress) -> Result<Vec<Row>> {
    let size = opts.size;
    let per_gib = |d: std::time::Duration| ms(d) * (1u64 << 30) as f64 / size as f64;
    p.step("setup: BAR storage with and without 2 MiB folios");
    let (mut ours, mut flat) = (Vec::new(), Vec::new());
    let before = mm::frames::huge_folio_stats();
    for _ in 0..opts.runs {
        let t = Instant::now();
        let mem = PhysMemory::new("bench-create", PhysAddr(0), size).map_err(|e| e.to_string())?;
        ours.push(per_gib(t.elapsed()));
        drop(mem);
        let t = Instant::now();
        let frames = baseline::flat_frames(size, mm::frames::DEFAULT_FRAME_SIZE).map_err(|e| e.to_string())?;
        flat.push(per_gib(t.elapsed()));
        drop(frames);
    }
    let after = mm::frames::huge_folio_stats();
    Ok(vec![row(
        5,
        format!(
            "BAR storage creation, 2 MiB frames of 2 MiB folios ({} folios, {} fell back)",
            after.huge - before.huge,
            after.fallback - before.fallback
        ),
        Stat::new("ms/GiB", ours),
        Stat::new("ms/GiB", flat),
        "the same frames by fallocate alone (4 KiB pages)",
        "ours / baseline",
        None,
    )])
}
