//! `vfio-dmabuf bench`: fault, revoke, access and setup costs, each measured
//! in the same run as the kernel's own path it is compared with (a plain
//! shared mapping of a memfd, `MADV_POPULATE_READ`, `MADV_DONTNEED`, a bare
//! userfaultfd handler, a bare trapped access). Every figure is the median
//! of several runs, with the min and max beside it. Section 7, register
//! access, lives in [`register`]; section 8, a program under `exec`, in
//! [`exec`].

pub mod exec;
mod pmd;
pub mod register;

use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mm::baseline::{self, PlainMapping};
use mm::{probe, AddressSpace, PhysMemory};
use page::{PhysAddr, HPAGE_PMD_SIZE, PAGE_SIZE};
use pci::{BarSpec, Bdf, DeviceSpec};
use serde_json::json;
use vfio::{DeviceFd, MmapArgs, VfioPciDevice};

/// How big and how many.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Bytes of the big mappings (1 GiB, or 128 MiB with `--quick`).
    pub size: u64,
    /// Bytes for the 4 KiB-per-fault measurements (each fault is a thread wake-up).
    pub small: u64,
    /// Runs per measurement (the median is reported).
    pub runs: usize,
    /// Largest number of unrelated buffers in the scale test.
    pub scale_max: usize,
    /// Register accesses per run in the register-access section.
    pub register_accesses: u64,
}

impl Options {
    /// The full suite.
    pub fn full() -> Self {
        Self { size: 1 << 30, small: 32 << 20, runs: 7, scale_max: 10_000, register_accesses: 100_000 }
    }

    /// Under a minute.
    pub fn quick() -> Self {
        Self { size: 128 << 20, small: 8 << 20, runs: 5, scale_max: 1_000, register_accesses: 20_000 }
    }
}

/// Several samples of one quantity.
#[derive(Debug, Clone)]
pub struct Stat {
    /// Unit of the samples.
    pub unit: &'static str,
    /// The samples, sorted.
    pub samples: Vec<f64>,
}

impl Stat {
    fn new(unit: &'static str, mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        Self { unit, samples }
    }

    /// The median.
    pub fn median(&self) -> f64 {
        let n = self.samples.len();
        if n == 0 {
            return f64::NAN;
        }
        if n % 2 == 1 {
            self.samples[n / 2]
        } else {
            (self.samples[n / 2 - 1] + self.samples[n / 2]) / 2.0
        }
    }

    fn text(&self) -> String {
        let (lo, hi) =
            (self.samples.first().copied().unwrap_or(f64::NAN), self.samples.last().copied().unwrap_or(f64::NAN));
        format!("{} {} [{}–{}]", fmt(self.median()), self.unit, fmt(lo), fmt(hi))
    }
}

fn fmt(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A target: the ratio must be at least or at most a value.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// ratio ≥ x.
    AtLeast(f64),
    /// ratio ≤ x.
    AtMost(f64),
}

/// One line of the results: ours against a baseline.
#[derive(Debug, Clone)]
pub struct Row {
    /// Section number of the suite (1–8, see [`section_name`]).
    pub section: u32,
    /// What is measured.
    pub what: String,
    /// Ours.
    pub ours: Stat,
    /// The kernel's path (or the reference point).
    pub baseline: Stat,
    /// Name of the baseline.
    pub baseline_name: String,
    /// How the ratio is formed, e.g. "baseline / ours".
    pub ratio_is: &'static str,
    /// The ratio of medians.
    pub ratio: f64,
    /// The target, if the suite sets one.
    pub target: Option<Target>,
}

impl Row {
    /// Whether the target is met; `None` for an informative row.
    pub fn met(&self) -> Option<bool> {
        self.target.map(|t| match t {
            Target::AtLeast(x) => self.ratio >= x,
            Target::AtMost(x) => self.ratio <= x,
        })
    }
}

struct Progress {
    done: usize,
    total: usize,
    tty: bool,
}

impl Progress {
    fn step(&mut self, what: &str) {
        self.done += 1;
        let width = 30;
        let filled = self.done * width / self.total.max(1);
        if self.tty {
            eprint!(
                "\r[{}{}] {:>3}/{} {:<58}",
                "#".repeat(filled),
                ".".repeat(width - filled),
                self.done,
                self.total,
                what
            );
            if self.done == self.total {
                eprintln!();
            }
        } else {
            eprintln!("-i- [{:>3}/{}] {what}", self.done, self.total);
        }
        let _ = std::io::stderr().flush();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ns_per(d: Duration, n: u64) -> f64 {
    d.as_secs_f64() * 1e9 / n.max(1) as f64
}

type Result<T> = std::result::Result<T, String>;

fn ram_device(cdev: u32, size: u64) -> Result<Arc<VfioPciDevice>> {
    let mut spec = DeviceSpec {
        name: "bench".into(),
        vendor_id: 0x1234,
        device_id: 0xbe9c,
        revision: 0,
        class_code: 0xff00,
        bars: Default::default(),
        interrupts: pci::InterruptSpec::NONE,
    };
    spec.bars[0] = Some(BarSpec::ram(size).with_64bit().with_prefetchable());
    let bdf = Bdf::new(0, 0, 4 + (cdev % 28) as u8, 0).map_err(|e| e.to_string())?;
    VfioPciDevice::new(cdev, bdf, spec).map_err(|e| e.to_string())
}

fn map(fd: &DeviceFd, aspace: &AddressSpace, offset: u64, len: u64) -> Result<u64> {
    fd.mmap(aspace, MmapArgs::shared(offset, len)).map_err(|e| e.to_string())
}

fn touch(va: u64, len: u64, write: bool) -> Result<()> {
    probe::touch(va, len, write).map_err(|e| e.to_string())
}

fn timed(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

/// Runs the suite; progress on stderr.
///
/// # Errors
///
/// The first failure of a step (as text).
pub fn run(opts: Options) -> Result<Vec<Row>> {
    let mut p = Progress {
        done: 0,
        total: 14 + pmd::STEPS + register::STEPS + register::EMULATED_STEPS + exec::STEPS,
        tty: std::io::stderr().is_terminal(),
    };
    // (the step count above must match the `p.step` calls below)
    let mut rows = Vec::new();
    let aspace = AddressSpace::new().map_err(|e| format!("{e} ({})", e.errno()))?;
    let size = opts.size;
    let pages = size / PAGE_SIZE;
    let plain_mem = Arc::new(PhysMemory::new("bench-baseline", PhysAddr(0), size).map_err(|e| e.to_string())?);
    let vdev = ram_device(0, size)?;
    let fd = vdev.open();

    // 1. First touch, huge-aligned.
    for write in [false, true] {
        let kind = if write { "write" } else { "read" };
        p.step(&format!("first touch {kind}: ours, 2 MiB aligned"));
        let mut ours = Vec::new();
        for _ in 0..opts.runs {
            let va = map(&fd, &aspace, 0, size)?;
            ours.push(ns_per(timed(|| touch(va, size, write))?, pages));
            aspace.munmap(va, size).map_err(|e| e.to_string())?;
        }
        p.step(&format!("first touch {kind}: kernel, plain MAP_SHARED"));
        let mut kernel = Vec::new();
        for _ in 0..opts.runs {
            let m = PlainMapping::new(&plain_mem, PhysAddr(0), size, true).map_err(|e| e.to_string())?;
            kernel.push(ns_per(timed(|| touch(m.addr(), size, write))?, pages));
        }
        let (ours, kernel) = (Stat::new("ns/page", ours), Stat::new("ns/page", kernel));
        if write {
            rows.push(row(
                1,
                format!("first touch {kind}, {} MiB, huge-aligned", size >> 20),
                ours.clone(),
                kernel.clone(),
                // The same storage as ours, 2 MiB folios, so the kernel maps
                // it with PMDs too; the target against it is the PMD row's.
                "kernel write first touch of the same storage (2 MiB folios, PMD-mapped)",
                "baseline / ours",
                None,
            ));
        } else {
            rows.push(row(
                1,
                format!("first touch {kind}, {} MiB, huge-aligned", size >> 20),
                ours.clone(),
                kernel,
                "kernel read first touch",
                "baseline / ours",
                None,
            ));
        }
        if !write {
            p.step("first touch: MADV_POPULATE_READ floor");
            let mut floor = Vec::new();
            for _ in 0..opts.runs {
                let m = PlainMapping::new(&plain_mem, PhysAddr(0), size, true).map_err(|e| e.to_string())?;
                floor.push(ns_per(
                    timed(|| m.populate_read().map_err(|e| e.to_string()).and_then(|()| touch(m.addr(), size, false)))?,
                    pages,
                ));
            }
            rows.push(row(
                1,
                format!("first touch read, {} MiB, huge-aligned", size >> 20),
                ours,
                Stat::new("ns/page", floor),
                "MADV_POPULATE_READ + touch",
                "ours / baseline",
                Some(Target::AtMost(2.0)),
            ));
        }
    }

    // BAR 0's folios exist now: every 2 MiB was faulted above.
    rows.extend(pmd::first_touch(opts, &mut p, &fd, &aspace)?);

    // 2. First touch, 4 KiB only (BAR offset 4 KiB: no PFN is 512-aligned).
    let small = opts.small;
    p.step("4 KiB first touch: bare userfaultfd round trip");
    let mut bare = Vec::new();
    for _ in 0..opts.runs {
        let (d, faults) =
            baseline::bare_minor_first_touch(&plain_mem, PhysAddr(PAGE_SIZE), small).map_err(|e| e.to_string())?;
        bare.push(ns_per(d, faults));
    }
    let bare = Stat::new("ns/fault", bare);
    p.step("4 KiB first touch: ours without fault-around");
    vdev.set_fault_around(false);
    let mut per_fault = Vec::new();
    for _ in 0..opts.runs {
        let va = map(&fd, &aspace, PAGE_SIZE, small)?;
        let before = aspace.fault_stats();
        let d = timed(|| touch(va, small, false))?;
        let faults = aspace.fault_stats().order0 - before.order0;
        per_fault.push(ns_per(d, faults));
        aspace.munmap(va, small).map_err(|e| e.to_string())?;
    }
    vdev.set_fault_around(true);
    rows.push(row(
        2,
        format!("4 KiB faults, {} MiB, one page per fault", small >> 20),
        Stat::new("ns/fault", per_fault),
        bare,
        "bare userfaultfd MINOR round trip",
        "ours / baseline",
        Some(Target::AtMost(1.3)),
    ));
    p.step("4 KiB first touch: ours with fault-around");
    let len4k = size - HPAGE_PMD_SIZE;
    let mut around = Vec::new();
    for _ in 0..opts.runs {
        let va = map(&fd, &aspace, PAGE_SIZE, len4k)?;
        around.push(ns_per(timed(|| touch(va, len4k, true))?, len4k / PAGE_SIZE));
        aspace.munmap(va, len4k).map_err(|e| e.to_string())?;
    }
    p.step("4 KiB first touch: kernel write first touch");
    let mut kernel = Vec::new();
    for _ in 0..opts.runs {
        let m = PlainMapping::new(&plain_mem, PhysAddr(PAGE_SIZE), len4k, true).map_err(|e| e.to_string())?;
        kernel.push(ns_per(timed(|| touch(m.addr(), len4k, true))?, len4k / PAGE_SIZE));
    }
    rows.push(row(
        2,
        format!("first touch write, {} MiB, 4 KiB faults + fault-around", len4k >> 20),
        Stat::new("ns/page", around),
        Stat::new("ns/page", kernel),
        "kernel write first touch of the same storage (PTEs over 2 MiB folios)",
        "ours / baseline",
        Some(Target::AtMost(1.0)),
    ));

    // 3. Revoke.
    p.step("revoke by size");
    for len in [1u64 << 20, 64 << 20, size] {
        let mut ours = Vec::new();
        let mut unrevoke = Vec::new();
        let mut retouch = Vec::new();
        let va = map(&fd, &aspace, 0, len)?;
        for _ in 0..opts.runs {
            touch(va, len, false)?;
            ours.push(ms(timed(|| fd.set_memory_enable(false).map_err(|e| e.to_string()))?));
            unrevoke.push(ms(timed(|| fd.set_memory_enable(true).map_err(|e| e.to_string()))?));
            retouch.push(ms(timed(|| touch(va, len, false))?));
        }
        aspace.munmap(va, len).map_err(|e| e.to_string())?;
        let m = PlainMapping::new(&plain_mem, PhysAddr(0), len, true).map_err(|e| e.to_string())?;
        let mut zap = Vec::new();
        for _ in 0..opts.runs {
            m.populate_read().map_err(|e| e.to_string())?;
            zap.push(ms(timed(|| m.zap().map_err(|e| e.to_string()))?));
        }
        let zap = Stat::new("ms", zap);
        rows.push(row(
            3,
            format!("revoke (COMMAND.MEMORY clear), {} MiB faulted", len >> 20),
            Stat::new("ms", ours),
            zap.clone(),
            "MADV_DONTNEED",
            "ours / baseline",
            Some(Target::AtMost(1.2)),
        ));
        rows.push(row(
            3,
            format!("un-revoke (COMMAND.MEMORY set), {} MiB mapped", len >> 20),
            Stat::new("ms", unrevoke),
            zap.clone(),
            "MADV_DONTNEED (reference)",
            "ours / baseline",
            None,
        ));
        rows.push(row(
            3,
            format!("first re-touch after un-revoke, {} MiB", len >> 20),
            Stat::new("ms", retouch),
            zap,
            "MADV_DONTNEED (reference)",
            "ours / baseline",
            None,
        ));
    }
    rows.extend(pmd::revoke(opts, &mut p, &fd, &aspace)?);
    p.step("revoke by number of VMAs");
    // 1 MiB each, or less if 256 of them would not fit the BAR (--quick).
    let each = (size / 256).min(1 << 20);
    for n in [1u64, 16, 256] {
        let vas: Vec<u64> = (0..n).map(|i| map(&fd, &aspace, i * each, each)).collect::<Result<_>>()?;
        let mut ours = Vec::new();
        for _ in 0..opts.runs {
            for va in &vas {
                touch(*va, each, false)?;
            }
            ours.push(ms(timed(|| fd.set_memory_enable(false).map_err(|e| e.to_string()))?));
            fd.set_memory_enable(true).map_err(|e| e.to_string())?;
        }
        for va in &vas {
            aspace.munmap(*va, each).map_err(|e| e.to_string())?;
        }
        let plain: Vec<PlainMapping> = (0..n)
            .map(|i| PlainMapping::new(&plain_mem, PhysAddr(i * each), each, true))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let mut zap = Vec::new();
        for _ in 0..opts.runs {
            for m in &plain {
                m.populate_read().map_err(|e| e.to_string())?;
            }
            zap.push(ms(timed(|| plain.iter().try_for_each(|m| m.zap().map_err(|e| e.to_string())))?));
        }
        rows.push(row(
            3,
            format!("revoke, {n} VMAs of {} KiB", each >> 10),
            Stat::new("ms", ours),
            Stat::new("ms", zap),
            "MADV_DONTNEED of each",
            "ours / baseline",
            Some(Target::AtMost(1.2)),
        ));
    }

    // 4. Steady state.
    p.step("steady-state copy bandwidth");
    let copy_len = (64u64 << 20).min(size);
    let va = map(&fd, &aspace, 0, copy_len)?;
    touch(va, copy_len, true)?;
    let m = PlainMapping::new(&plain_mem, PhysAddr(0), copy_len, true).map_err(|e| e.to_string())?;
    m.populate_read().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; copy_len as usize];
    for (dir, read) in [("read", true), ("write", false)] {
        let (mut ours, mut plain) = (Vec::new(), Vec::new());
        for _ in 0..opts.runs {
            for (addr, out) in [(va, &mut ours), (m.addr(), &mut plain)] {
                let d = timed(|| {
                    if read { probe::copy_from(addr, &mut buf) } else { probe::copy_to(addr, &buf) }
                        .map_err(|e| e.to_string())
                })?;
                out.push(copy_len as f64 / d.as_secs_f64() / 1e9);
            }
        }
        rows.push(row(
            4,
            format!("memcpy {dir} bandwidth, {} MiB", copy_len >> 20),
            Stat::new("GB/s", ours),
            Stat::new("GB/s", plain),
            "plain mapping of a memfd",
            "ours / baseline",
            Some(Target::AtLeast(0.97)),
        ));
    }
    drop(m);
    aspace.munmap(va, copy_len).map_err(|e| e.to_string())?;

    // 5. Setup.
    p.step("mmap + munmap of a BAR window");
    let reps = 200u64;
    let window = 64 << 10;
    let (mut ours, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..opts.runs {
        ours.push(
            ns_per(
                timed(|| {
                    (0..reps).try_for_each(|_| {
                        map(&fd, &aspace, 0, window).and_then(|va| aspace.munmap(va, window).map_err(|e| e.to_string()))
                    })
                })?,
                reps,
            ) / 1e3,
        );
        plain.push(
            ns_per(
                timed(|| {
                    (0..reps).try_for_each(|_| {
                        PlainMapping::new(&plain_mem, PhysAddr(0), window, true).map(drop).map_err(|e| e.to_string())
                    })
                })?,
                reps,
            ) / 1e3,
        );
    }
    rows.push(row(
        5,
        "mmap + munmap of a 64 KiB window".into(),
        Stat::new("µs", ours),
        Stat::new("µs", plain),
        "plain mmap + munmap of a memfd",
        "ours / baseline",
        None,
    ));

    rows.extend(pmd::creation(opts, &mut p)?);

    // 6. Scale: cost of one fault and one revoke as unrelated buffers grow.
    p.step("scale: unrelated buffers");
    let scale = scale(opts, &fd, &aspace)?;
    rows.extend(scale);

    // 7. Register access: the floors, then emulated accesses held to them.
    let mut regs = register::section(opts, &mut p)?;
    register::emulated_rows(&mut regs, &mut p)?;
    rows.extend(regs.into_rows());

    // 8. A program under `exec`: intercepted calls against the kernel's.
    rows.extend(exec::section(opts, &mut p)?);
    Ok(rows)
}

fn scale(opts: Options, fd: &DeviceFd, aspace: &AddressSpace) -> Result<Vec<Row>> {
    let mut counts = vec![0usize];
    let mut n = 100;
    while n <= opts.scale_max {
        counts.push(n);
        n *= 10;
    }
    let mut unrelated: Vec<u64> = Vec::new();
    let mut fault_at = Vec::new();
    let mut revoke_at = Vec::new();
    let rdwr = (libc::O_RDWR | libc::O_CLOEXEC) as u32;
    for &n in &counts {
        while unrelated.len() < n {
            let i = unrelated.len() as u64;
            // 4 KiB windows spread over the BAR, each its own buffer and VMA.
            unrelated.push(map(fd, aspace, (i * PAGE_SIZE) % (opts.size - HPAGE_PMD_SIZE), PAGE_SIZE)?);
        }
        let (mut f, mut r) = (Vec::new(), Vec::new());
        for _ in 0..opts.runs.max(5) {
            // One 2 MiB fault on a fresh mapping.
            let va = map(fd, aspace, 0, HPAGE_PMD_SIZE)?;
            f.push(timed(|| touch(va, PAGE_SIZE, false))?.as_secs_f64() * 1e6);
            aspace.munmap(va, HPAGE_PMD_SIZE).map_err(|e| e.to_string())?;
            // Permanent revoke of one faulted 1 MiB buffer.
            let b = fd.feature_dma_buf(0, rdwr, &[(0, 1 << 20)]).map_err(|e| e.to_string())?;
            let bva = vfio::mmap_dmabuf(aspace, &b, MmapArgs::shared(0, 1 << 20)).map_err(|e| e.to_string())?;
            touch(bva, 1 << 20, false)?;
            r.push(timed(|| fd.feature_dma_buf_revoke(b.raw_fd()).map_err(|e| e.to_string()))?.as_secs_f64() * 1e6);
            aspace.munmap(bva, 1 << 20).map_err(|e| e.to_string())?;
        }
        fault_at.push((n, Stat::new("µs", f)));
        revoke_at.push((n, Stat::new("µs", r)));
    }
    for va in unrelated {
        aspace.munmap(va, PAGE_SIZE).map_err(|e| e.to_string())?;
    }
    let mut rows = Vec::new();
    let (_, f0) = fault_at[0].clone();
    let (_, r0) = revoke_at[0].clone();
    for ((n, f), (_, r)) in fault_at.into_iter().zip(revoke_at).skip(1) {
        rows.push(row(
            6,
            format!("one 2 MiB fault, {n} unrelated buffers"),
            f,
            f0.clone(),
            "same with none",
            "ours / baseline",
            Some(Target::AtMost(1.5)),
        ));
        rows.push(row(
            6,
            format!("permanent revoke of one buffer, {n} unrelated"),
            r,
            r0.clone(),
            "same with none",
            "ours / baseline",
            Some(Target::AtMost(1.5)),
        ));
    }
    Ok(rows)
}

fn row(
    section: u32,
    what: String,
    ours: Stat,
    baseline: Stat,
    baseline_name: &str,
    ratio_is: &'static str,
    target: Option<Target>,
) -> Row {
    let ratio = if ratio_is == "baseline / ours" {
        baseline.median() / ours.median()
    } else {
        ours.median() / baseline.median()
    };
    Row { section, what, ours, baseline, baseline_name: baseline_name.into(), ratio_is, ratio, target }
}

/// The machine the numbers come from, as Markdown.
pub fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().trim().to_owned();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let kernel = read("/proc/sys/kernel/osrelease");
    let shmem = read("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("- CPU: {cpu}, {cores} cores\n- kernel: {kernel}\n- shmem THP (`/sys/kernel/mm/transparent_hugepage/shmem_enabled`): {shmem}\n")
}

/// The results as a Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from("| # | measurement | ours: median [min–max] | baseline: median [min–max] | ratio | target |\n|---|---|---|---|---|---|\n");
    for r in rows {
        let target = match (r.target, r.met()) {
            (Some(Target::AtLeast(x)), Some(m)) => format!("≥ {x} {}", if m { "met" } else { "**missed**" }),
            (Some(Target::AtMost(x)), Some(m)) => format!("≤ {x} {}", if m { "met" } else { "**missed**" }),
            _ => "—".into(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} ({}) | {} = {:.2} | {} |\n",
            r.section,
            r.what,
            r.ours.text(),
            r.baseline.text(),
            r.baseline_name,
            r.ratio_is,
            r.ratio,
            target
        ));
    }
    out
}

/// The name of a section of the suite.
pub fn section_name(section: u32) -> &'static str {
    match section {
        1 => "first touch, huge-aligned",
        2 => "first touch, 4 KiB",
        3 => "revoke",
        4 => "steady state",
        5 => "setup",
        6 => "scale",
        7 => "register access",
        8 => "a program under exec",
        _ => "other",
    }
}

/// The results as JSON records, one per row (printed one per line).
///
/// Every record has `section` (number), `section_name`, `measurement`,
/// `unit`, `ours` and `baseline` (medians, numbers), `baseline_name`,
/// `ratio` and `ratio_is` (how it is formed), `target` (`{"op": "<=" or
/// ">=", "value": x}`, or null for an informative row), `met` (true, false,
/// or null without a target), and the sorted samples as `ours_samples` and
/// `baseline_samples`. A median or ratio that is not a number is null.
pub fn json_rows(rows: &[Row]) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|r| {
            let target = r.target.map(|t| match t {
                Target::AtLeast(x) => json!({"op": ">=", "value": x}),
                Target::AtMost(x) => json!({"op": "<=", "value": x}),
            });
            json!({
                "section": r.section, "section_name": section_name(r.section), "measurement": r.what,
                "unit": r.ours.unit, "ours": r.ours.median(), "baseline": r.baseline.median(),
                "baseline_name": r.baseline_name, "ratio": r.ratio, "ratio_is": r.ratio_is,
                "target": target, "met": r.met(),
                "ours_samples": r.ours.samples, "baseline_samples": r.baseline.samples,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
