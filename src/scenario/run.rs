//! Executes a parsed scenario against the real library: real devices, real
//! mappings, real faults. Every `sigbus` expectation is checked by making the
//! access and catching the SIGBUS it raises.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dmabuf::{Attachment, AttachmentRef, DmaBufFd, Importer, ImporterMapping, ResvGuard, Status};
use mm::{probe, AccessFault, AddressSpace, Width};
use rustix::io::Errno;
use vfio::{DeviceFd, MmapArgs, VfioError, VfioPciDevice};

use super::parse::{BufRef, Count, Expect, Scenario, ScenarioError, Step, StepAt};

/// What a step did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Succeeded, maybe with a value.
    Done(Option<u64>),
    /// Succeeded with a text (a status).
    Text(String),
    /// Failed with an errno.
    Errno(Errno, String),
    /// The access raised a signal.
    Fault(AccessFault),
    /// A check found something else than expected.
    Mismatch(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Done(None) => f.write_str("ok"),
            Outcome::Done(Some(v)) => write!(f, "{v:#x}"),
            Outcome::Text(t) => f.write_str(t),
            Outcome::Errno(e, m) => write!(f, "{} ({m})", vfio::errno_name(*e)),
            Outcome::Fault(a) if a.is_sigbus() => write!(f, "sigbus ({a})"),
            Outcome::Fault(a) => write!(f, "segv ({a})"),
            Outcome::Mismatch(m) => write!(f, "mismatch: {m}"),
        }
    }
}

impl From<VfioError> for Outcome {
    fn from(e: VfioError) -> Self {
        Outcome::Errno(e.errno(), e.message().to_owned())
    }
}

impl From<dmabuf::Error> for Outcome {
    fn from(e: dmabuf::Error) -> Self {
        Outcome::Errno(e.errno(), e.to_string())
    }
}

impl From<mm::MmError> for Outcome {
    fn from(e: mm::MmError) -> Self {
        Outcome::Errno(e.errno(), e.to_string())
    }
}

/// Whether `outcome` is what `expect` asked for.
pub fn judge(outcome: &Outcome, expect: &Expect) -> bool {
    match (expect, outcome) {
        (Expect::Ok, Outcome::Done(_)) => true,
        (Expect::Ok, Outcome::Text(t)) => t == "ok",
        (Expect::Value(v), Outcome::Done(Some(x))) => v == x,
        (Expect::Text(t), Outcome::Text(x)) => t == x,
        (Expect::Sigbus, Outcome::Fault(a)) => a.is_sigbus(),
        (Expect::SigbusCode(c), Outcome::Fault(a)) => a.is_sigbus() && a.code == *c,
        (Expect::Segv, Outcome::Fault(a)) => a.signo == libc::SIGSEGV,
        (Expect::Errno(e), Outcome::Errno(x, _)) => e == x,
        _ => false,
    }
}

/// One executed step.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// 1-based position in the scenario.
    pub index: usize,
    /// Line in the file.
    pub line: usize,
    /// The verb.
    pub verb: &'static str,
    /// Narrative, if the step had some.
    pub say: Option<String>,
    /// What was done, in words.
    pub detail: String,
    /// What happened.
    pub outcome: String,
    /// What was expected.
    pub expected: String,
    /// Whether they agree.
    pub pass: bool,
    /// How long it took (revokes that wait for importers show here).
    pub micros: u128,
    /// Extra output (maps lines, the inspect drawing).
    pub output: Vec<String>,
    /// The process it ran in (`primary` or a client's name), in a
    /// scenario with client processes; `None` otherwise.
    pub process: Option<String>,
}

/// A mapping the scenario made.
#[derive(Debug, Clone, Copy)]
pub struct Map {
    /// Start address.
    pub va: u64,
    /// Length.
    pub len: u64,
}

/// The test importer of scenarios: counts invalidations and unmaps on
/// invalidate, right away (`hold-ms = 0`) or from another thread after
/// holding its mapping for a while, which shows a revoke waiting for it.
#[derive(Debug)]
pub struct ScenarioImporter {
    p2p: bool,
    revocable: bool,
    hold: Duration,
    invalidations: AtomicU64,
    mapping: Mutex<Option<ImporterMapping>>,
    attachment: Mutex<Option<Attachment>>,
    holders: Mutex<Vec<JoinHandle<()>>>,
}

impl ScenarioImporter {
    /// Invalidations seen so far.
    pub fn invalidations(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    /// Whether it holds a mapping now.
    pub fn is_mapped(&self) -> bool {
        self.mapping.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    fn join_holders(&self) {
        let holders = std::mem::take(&mut *self.holders.lock().unwrap_or_else(|e| e.into_inner()));
        for h in holders {
            let _ = h.join();
        }
    }
}

impl Importer for ScenarioImporter {
    fn peer2peer(&self) -> bool {
        self.p2p
    }

    fn revocable(&self) -> bool {
        self.revocable
    }

    fn invalidate_mappings(&self, _attachment: &AttachmentRef<'_>, resv: &mut ResvGuard<'_>) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        let Some(m) = self.mapping.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        if self.hold.is_zero() {
            m.unmap_locked(resv);
        } else {
            let hold = self.hold;
            let h = std::thread::spawn(move || {
                // Deliberately late: the revoke must wait for this unmap.
                std::thread::sleep(hold);
                m.unmap();
            });
            self.holders.lock().unwrap_or_else(|e| e.into_inner()).push(h);
        }
    }
}

/// Everything a running scenario has made. Fields drop in order: importers
/// first, client processes (and their server), the address space (all
/// mappings) before the devices.
#[derive(Debug)]
pub struct World {
    /// Client processes and the server they use, when the scenario has any.
    pub clients: Option<super::procs::Clients>,
    /// Test importers by name.
    pub importers: BTreeMap<String, Arc<ScenarioImporter>>,
    /// Buffer fds by name.
    pub bufs: BTreeMap<String, DmaBufFd>,
    /// Device fds by name.
    pub fds: BTreeMap<String, DeviceFd>,
    /// Mappings by name.
    pub maps: BTreeMap<String, Map>,
    /// The process's address space for BAR mappings.
    pub aspace: AddressSpace,
    /// Devices by id.
    pub devices: BTreeMap<String, Arc<VfioPciDevice>>,
}

impl Drop for World {
    fn drop(&mut self) {
        for imp in self.importers.values() {
            imp.join_holders();
            imp.mapping.lock().unwrap_or_else(|e| e.into_inner()).take();
            imp.attachment.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }
}

/// A scenario's result.
#[derive(Debug)]
pub struct Report {
    /// The file.
    pub file: String,
    /// Its title.
    pub name: String,
    /// Every executed step.
    pub records: Vec<StepRecord>,
}

impl Report {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.records.iter().all(|r| r.pass)
    }
}

fn err(sc: &Scenario, line: usize, msg: impl Into<String>) -> ScenarioError {
    ScenarioError { file: sc.file.clone(), line, msg: msg.into() }
}

/// Creates the scenario's devices and an address space, after checking
/// that their RAM BARs fit in the memory available.
///
/// # Errors
///
/// A [`ScenarioError`] at the device's line when it cannot be created, or
/// when its BARs (alone or with the devices before it) need more memory
/// than is available (`ENOMEM`; nothing has been allocated then); the
/// address space's error (e.g. no userfaultfd) at line 1.
pub fn build(sc: &Scenario) -> Result<World, ScenarioError> {
    super::memory::check_fits(sc, mm::budget::memory_budget())?;
    let aspace =
        AddressSpace::new().map_err(|e| err(sc, 1, format!("cannot set up the fault engine: {e} ({})", e.errno())))?;
    let mut devices = BTreeMap::new();
    for d in &sc.devices {
        let vdev = d.create().map_err(|e| err(sc, d.line, format!("device `{}`: {e}", d.id)))?;
        devices.insert(d.id.clone(), vdev);
    }
    let clients = if sc.processes.is_empty() { None } else { Some(super::procs::start(sc, &devices)?) };
    Ok(World {
        clients,
        importers: BTreeMap::new(),
        bufs: BTreeMap::new(),
        fds: BTreeMap::new(),
        maps: BTreeMap::new(),
        aspace,
        devices,
    })
}

/// Runs every step, calling `on_step` after each one.
///
/// # Errors
///
/// A [`ScenarioError`] when a step names something that does not exist
/// (the run stops there); failed expectations are not errors, they are
/// records with `pass == false`.
pub fn run(sc: &Scenario, world: &mut World, mut on_step: impl FnMut(&StepRecord)) -> Result<Report, ScenarioError> {
    let mut records = Vec::new();
    for (i, st) in sc.steps.iter().enumerate() {
        let started = Instant::now();
        let mut output = Vec::new();
        let (detail, outcome) = exec(sc, world, st, &mut output)?;
        let micros = started.elapsed().as_micros();
        let (outcome_text, pass) = match (&st.step, &outcome) {
            (Step::Say, _) => ("ok".to_owned(), true),
            _ => (outcome.to_string(), judge(&outcome, &st.expect)),
        };
        let rec = StepRecord {
            index: i + 1,
            line: st.line,
            verb: st.verb,
            say: st.say.clone(),
            detail,
            outcome: outcome_text,
            expected: st.expect.to_string(),
            pass,
            micros,
            output,
            process: (!sc.processes.is_empty())
                .then(|| st.process.clone().unwrap_or_else(|| super::procs_parse::PRIMARY.to_owned())),
        };
        on_step(&rec);
        records.push(rec);
    }
    Ok(Report { file: sc.file.clone(), name: sc.name.clone(), records })
}

/// The address `at` bytes into mapping `m`, refusing what overflows.
fn addr_in(m: Map, at: u64) -> Option<u64> {
    m.va.checked_add(at)
}

/// Whether a store of `bytes` at `addr` lies wholly inside mapping `m` as
/// our address space has it now: a scenario may never write elsewhere (a
/// stray store could land in the runner's own memory).
fn store_allowed(w: &World, m: Map, addr: u64, bytes: u64) -> bool {
    let Some(end) = addr.checked_add(bytes) else { return false };
    addr >= m.va && end <= m.va + m.len && w.aspace.find_vma(addr).is_some_and(|v| end <= v.vm_end)
}

fn width_of(bits: u32) -> Width {
    match bits {
        8 => Width::U8,
        16 => Width::U16,
        32 => Width::U32,
        _ => Width::U64,
    }
}

fn mask(bits: u32, v: u64) -> u64 {
    if bits >= 64 {
        v
    } else {
        v & ((1u64 << bits) - 1)
    }
}

fn exec(
    sc: &Scenario,
    w: &mut World,
    st: &StepAt,
    output: &mut Vec<String>,
) -> Result<(String, Outcome), ScenarioError> {
    if st.process.is_some() {
        return super::procs::exec(sc, w, st, output);
    }
    let line = st.line;
    let missing = |kind: &str, name: &str| err(sc, line, format!("no {kind} named `{name}` (yet)"));
    macro_rules! fd {
        ($n:expr) => {
            w.fds.get($n).ok_or_else(|| missing("device fd", $n))?
        };
    }
    macro_rules! map {
        ($n:expr) => {
            *w.maps.get($n).ok_or_else(|| missing("mapping", $n))?
        };
    }
    macro_rules! imp {
        ($n:expr) => {
            w.importers.get($n).ok_or_else(|| missing("importer", $n))?.clone()
        };
    }
    let done = |r: Result<(), VfioError>| r.map_or_else(Outcome::from, |()| Outcome::Done(None));
    Ok(match &st.step {
        Step::Say => (String::new(), Outcome::Done(None)),
        Step::Open { device, as_ } => {
            let vdev = w.devices.get(device).ok_or_else(|| missing("device", device))?;
            w.fds.insert(as_.clone(), vdev.open());
            (format!("open {device} ({} at {}) as {as_}", vdev.cdev_name(), vdev.bdf()), Outcome::Done(None))
        }
        Step::Dup { handle, as_ } => {
            if let Some(fd) = w.fds.get(handle) {
                let d = fd.dup();
                w.fds.insert(as_.clone(), d);
                (format!("dup device fd {handle} as {as_}"), Outcome::Done(None))
            } else if let Some(b) = w.bufs.get(handle) {
                match b.dup() {
                    Ok(d) => {
                        let n = d.raw_fd();
                        w.bufs.insert(as_.clone(), d);
                        (format!("dup buffer fd {handle} as {as_} (fd {n})"), Outcome::Done(None))
                    }
                    Err(e) => (format!("dup buffer fd {handle}"), e.into()),
                }
            } else {
                return Err(missing("device fd or buffer fd", handle));
            }
        }
        Step::Close { handle } => {
            if let Some(fd) = w.fds.remove(handle) {
                fd.close();
                (format!("close device fd {handle}"), Outcome::Done(None))
            } else if let Some(b) = w.bufs.remove(handle) {
                let n = b.raw_fd();
                b.close();
                (format!("close buffer fd {handle} (fd {n})"), Outcome::Done(None))
            } else {
                return Err(missing("device fd or buffer fd", handle));
            }
        }
        Step::RegionInfo { fd, region } => {
            let r = fd!(fd).region_info(*region);
            let d = format!("region info of region {region}");
            match r {
                Ok(info) => {
                    output.push(format!("size {:#x} offset {:#x} flags {:#x}", info.size, info.offset, info.flags));
                    (d, Outcome::Done(Some(info.size)))
                }
                Err(e) => (d, e.into()),
            }
        }
        Step::RegionRead { fd, region, at, width } => {
            let mut b = [0u8; 8];
            let n = width_of(*width).bytes();
            let Some(off) = region_offset(*region, *at) else {
                return Ok((format!("pread at region {region} + {at:#x}"), overflow()));
            };
            let d = format!("pread {width} bits at region {region} + {at:#x}");
            match fd!(fd).read(off, &mut b[..n]) {
                Ok(_) => (d, Outcome::Done(Some(u64::from_le_bytes(b)))),
                Err(e) => (d, e.into()),
            }
        }
        Step::RegionWrite { fd, region, at, width, value } => {
            let n = width_of(*width).bytes();
            let Some(off) = region_offset(*region, *at) else {
                return Ok((format!("pwrite at region {region} + {at:#x}"), overflow()));
            };
            let d = format!("pwrite {value:#x} ({width} bits) at region {region} + {at:#x}");
            (d, fd!(fd).write(off, &value.to_le_bytes()[..n]).map_or_else(Outcome::from, |_| Outcome::Done(None)))
        }
        Step::ConfigRead { fd, reg, width } => {
            let d = format!("config read {width} bits at {reg:#x}");
            (
                d,
                fd!(fd)
                    .config_read(*reg, width_of(*width).bytes())
                    .map_or_else(Outcome::from, |v| Outcome::Done(Some(u64::from(v)))),
            )
        }
        Step::ConfigWrite { fd, reg, width, value } => {
            let d = format!("config write {value:#x} ({width} bits) at {reg:#x}");
            // The parser bounds `value` by the width, at most 32 bits.
            match u32::try_from(*value) {
                Ok(v) => (d, done(fd!(fd).config_write(*reg, width_of(*width).bytes(), v))),
                Err(_) => (d, Outcome::Mismatch("value wider than a config register".into())),
            }
        }
        Step::Memory { fd, enable } => {
            let d = format!("{} COMMAND.MEMORY", if *enable { "set" } else { "clear" });
            (d, done(fd!(fd).set_memory_enable(*enable)))
        }
        Step::Power { fd, state } => (format!("PMCSR power state to {state}"), done(fd!(fd).set_power_state(*state))),
        Step::Flr { fd } => ("function-level reset (DEVCTL)".into(), done(fd!(fd).flr())),
        Step::Reset { fd } => ("VFIO_DEVICE_RESET".into(), done(fd!(fd).reset())),
        Step::LowPower { fd } => {
            let flags = vfio::uapi::VFIO_DEVICE_FEATURE_SET | vfio::uapi::VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
            (
                "VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY".into(),
                fd!(fd).feature(flags, &[]).map_or_else(Outcome::from, |_| Outcome::Done(None)),
            )
        }
        Step::LowPowerExit { fd } => {
            let flags = vfio::uapi::VFIO_DEVICE_FEATURE_SET | vfio::uapi::VFIO_DEVICE_FEATURE_LOW_POWER_EXIT;
            (
                "VFIO_DEVICE_FEATURE_LOW_POWER_EXIT".into(),
                fd!(fd).feature(flags, &[]).map_or_else(Outcome::from, |_| Outcome::Done(None)),
            )
        }
        Step::HotReset { fds } => {
            let list: Vec<&DeviceFd> =
                fds.iter().map(|n| w.fds.get(n).ok_or_else(|| missing("device fd", n))).collect::<Result<_, _>>()?;
            (format!("VFIO_DEVICE_PCI_HOT_RESET of {}", fds.join(", ")), done(vfio::hot_reset(&list)))
        }
        Step::Mmap { fd, file_offset, len, write, shared, addr, as_ } => {
            let args = MmapArgs { addr: *addr, len: *len, write: *write, shared: *shared, offset: *file_offset };
            let d = format!(
                "mmap({}, {len:#x}, {}, {}, device fd {fd}, {file_offset:#x})",
                addr_text(*addr),
                prot_text(*write),
                share_text(*shared)
            );
            match fd!(fd).mmap(&w.aspace, args) {
                Ok(va) => {
                    w.maps.insert(as_.clone(), Map { va, len: page_up(*len) });
                    output.push(format!("{as_} = {va:#x}"));
                    (d, Outcome::Done(None))
                }
                Err(e) => (d, e.into()),
            }
        }
        Step::MmapBuf { buf, offset, len, write, shared, addr, as_ } => {
            let b = w.bufs.get(buf).ok_or_else(|| missing("buffer fd", buf))?;
            let args = MmapArgs { addr: *addr, len: *len, write: *write, shared: *shared, offset: *offset };
            let d = format!(
                "mmap({}, {len:#x}, {}, {}, buffer fd {buf}, {offset:#x})",
                addr_text(*addr),
                prot_text(*write),
                share_text(*shared)
            );
            match vfio::mmap_dmabuf(&w.aspace, b, args) {
                Ok(va) => {
                    w.maps.insert(as_.clone(), Map { va, len: page_up(*len) });
                    output.push(format!("{as_} = {va:#x}"));
                    (d, Outcome::Done(None))
                }
                Err(e) => (d, e.into()),
            }
        }
        Step::Munmap { map, at, len } => {
            let m = map!(map);
            let len = len.unwrap_or(m.len.saturating_sub(*at));
            let d = format!("munmap({map} + {at:#x}, {len:#x})");
            // Only inside the mapping: munmap elsewhere could hit anything.
            let inside = addr_in(m, *at).zip(at.checked_add(len)).is_some_and(|(_, end)| end <= m.len);
            if !inside {
                return Ok((d, Outcome::Mismatch("range outside the mapping".into())));
            }
            // The name stays: an access through it after a full munmap must
            // show the SIGSEGV the process would get.
            let r = w.aspace.munmap(m.va + at, len);
            (d, r.map_or_else(Outcome::from, |()| Outcome::Done(None)))
        }
        Step::MadviseHugepage { map } => {
            let m = map!(map);
            (
                format!("madvise({map}, MADV_HUGEPAGE)"),
                w.aspace.madvise_hugepage(m.va, m.len).map_or_else(Outcome::from, |()| Outcome::Done(None)),
            )
        }
        Step::Read { map, at, width } => {
            let m = map!(map);
            let d = format!("load {width} bits at {map} + {at:#x}");
            let Some(addr) = addr_in(m, *at) else { return Ok((d, Outcome::Mismatch("address overflows".into()))) };
            (d, probe::read(addr, width_of(*width)).map_or_else(Outcome::Fault, |v| Outcome::Done(Some(v))))
        }
        Step::Write { map, at, width, value } => {
            let m = map!(map);
            let d = format!("store {value:#x} ({width} bits) at {map} + {at:#x}");
            let addr = addr_in(m, *at).filter(|a| store_allowed(w, m, *a, u64::from(*width / 8)));
            let Some(addr) = addr else {
                return Ok((d, Outcome::Mismatch("store outside the mapping refused".into())));
            };
            (d, probe::write(addr, width_of(*width), *value).map_or_else(Outcome::Fault, |()| Outcome::Done(None)))
        }
        Step::Fill { map, from, len, stride, width, value, xor }
        | Step::Check { map, from, len, stride, width, value, xor } => {
            let m = map!(map);
            let end = len.map_or(m.len, |l| from.saturating_add(l)).min(m.len);
            let filling = matches!(st.step, Step::Fill { .. });
            let pattern = match xor {
                Some(b) => format!("{value:#x} ^ ({b:#x} + offset)"),
                None => format!("{value:#x}"),
            };
            let d = format!(
                "{} {pattern} ({width} bits) every {stride:#x} bytes of {map}[{from:#x}..{end:#x}]",
                if filling { "fill" } else { "check" }
            );
            let mut off = *from;
            let mut outcome = Outcome::Done(Some((end.saturating_sub(*from)).div_ceil(*stride)));
            let bytes = u64::from(*width / 8);
            while off < end {
                let want = mask(*width, xor.map_or(*value, |b| value ^ b.wrapping_add(off)));
                let r = if filling {
                    if !store_allowed(w, m, m.va + off, bytes) {
                        outcome = Outcome::Mismatch(format!("store at {map} + {off:#x} outside the mapping refused"));
                        break;
                    }
                    probe::write(m.va + off, width_of(*width), want).map(|()| want)
                } else {
                    probe::read(m.va + off, width_of(*width))
                };
                match r {
                    Err(f) => {
                        outcome = Outcome::Fault(f);
                        break;
                    }
                    Ok(got) if got != want => {
                        outcome = Outcome::Mismatch(format!("at {map} + {off:#x} read {got:#x}, expected {want:#x}"));
                        break;
                    }
                    Ok(_) => {}
                }
                match off.checked_add(*stride) {
                    Some(next) => off = next,
                    None => break,
                }
            }
            if matches!(outcome, Outcome::Done(_)) {
                outcome = Outcome::Done(None);
            }
            (d, outcome)
        }
        Step::Export { fd, region, ranges, open_flags, flags, as_ } => {
            let list: Vec<String> = ranges.iter().map(|(o, l)| format!("[{o:#x}, +{l:#x})")).collect();
            let d = format!("VFIO_DEVICE_FEATURE_DMA_BUF: region {region}, ranges {}", list.join(" "));
            let payload = vfio::uapi::encode_dma_buf_payload(*region, *open_flags, *flags, ranges);
            match fd!(fd)
                .feature(vfio::uapi::VFIO_DEVICE_FEATURE_GET | vfio::uapi::VFIO_DEVICE_FEATURE_DMA_BUF, &payload)
            {
                Ok(vfio::FeatureReply::DmaBuf(b)) => {
                    output.push(format!(
                        "{as_} = fd {} (buffer {}, {:#x} bytes, {})",
                        b.raw_fd(),
                        b.buffer().id(),
                        b.buffer().size(),
                        b.buffer().status()
                    ));
                    w.bufs.insert(as_.clone(), b);
                    (d, Outcome::Done(None))
                }
                Ok(vfio::FeatureReply::Done) => (d, Outcome::Done(None)),
                Err(e) => (d, e.into()),
            }
        }
        Step::Revoke { fd, target } => {
            let n = raw_fd(sc, w, line, target)?;
            (format!("VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE of fd {n}"), done(fd!(fd).feature_dma_buf_revoke(n)))
        }
        Step::Memattr { fd, target, attr } => {
            let n = raw_fd(sc, w, line, target)?;
            let name = match attr {
                0 => "NC".to_owned(),
                1 => "WC".to_owned(),
                x => format!("{x}"),
            };
            (
                format!("VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR {name} on fd {n}"),
                done(fd!(fd).feature_dma_buf_memattr(n, *attr)),
            )
        }
        Step::Probe { fd, feature, get } => {
            let dir = if *get { vfio::uapi::VFIO_DEVICE_FEATURE_GET } else { vfio::uapi::VFIO_DEVICE_FEATURE_SET };
            let flags = vfio::uapi::VFIO_DEVICE_FEATURE_PROBE | dir | feature;
            (
                format!("VFIO_DEVICE_FEATURE PROBE of feature {feature}"),
                fd!(fd).feature(flags, &[]).map_or_else(Outcome::from, |_| Outcome::Done(None)),
            )
        }
        Step::Attach { buf, as_, p2p, revocable, hold_ms } => {
            let b = w.bufs.get(buf).ok_or_else(|| missing("buffer fd", buf))?;
            let imp = Arc::new(ScenarioImporter {
                p2p: *p2p,
                revocable: *revocable,
                hold: Duration::from_millis(*hold_ms),
                invalidations: AtomicU64::new(0),
                mapping: Mutex::new(None),
                attachment: Mutex::new(None),
                holders: Mutex::new(Vec::new()),
            });
            let d = format!(
                "attach importer {as_} to {buf} (p2p {p2p}, revocable {revocable}, holds its mapping {hold_ms} ms)"
            );
            match b.buffer().attach(imp.clone()) {
                Ok(att) => {
                    *imp.attachment.lock().unwrap_or_else(|e| e.into_inner()) = Some(att);
                    w.importers.insert(as_.clone(), imp);
                    (d, Outcome::Done(None))
                }
                Err(e) => (d, e.into()),
            }
        }
        Step::ImporterMap { importer } => {
            let imp = imp!(importer);
            let att = imp.attachment.lock().unwrap_or_else(|e| e.into_inner());
            let Some(att) = att.as_ref() else {
                return Err(err(sc, line, format!("importer `{importer}` is detached")));
            };
            let r = att.map();
            let d = format!("importer {importer} maps its buffer");
            match r {
                Ok(m) => {
                    *imp.mapping.lock().unwrap_or_else(|e| e.into_inner()) = Some(m);
                    (d, Outcome::Done(None))
                }
                Err(e) => (d, e.into()),
            }
        }
        Step::ImporterUnmap { importer } => {
            let imp = imp!(importer);
            let m = imp.mapping.lock().unwrap_or_else(|e| e.into_inner()).take();
            let d = format!("importer {importer} unmaps");
            match m {
                Some(m) => {
                    m.unmap();
                    (d, Outcome::Done(None))
                }
                None => (d, Outcome::Mismatch("the importer holds no mapping".into())),
            }
        }
        Step::Detach { importer } => {
            let imp = w.importers.remove(importer).ok_or_else(|| missing("importer", importer))?;
            imp.join_holders();
            imp.mapping.lock().unwrap_or_else(|e| e.into_inner()).take();
            imp.attachment.lock().unwrap_or_else(|e| e.into_inner()).take();
            (format!("detach importer {importer}"), Outcome::Done(None))
        }
        Step::Invalidations { importer } => {
            let imp = imp!(importer);
            (format!("invalidations seen by {importer}"), Outcome::Done(Some(imp.invalidations())))
        }
        Step::Status { buf } => {
            let b = w.bufs.get(buf).ok_or_else(|| missing("buffer fd", buf))?;
            let s = b.buffer().status();
            (format!("status of {buf}"), Outcome::Text(status_text(s).to_owned()))
        }
        Step::Maps { contains, proc } => {
            let lines: Vec<String> = if *proc {
                let mut v = Vec::new();
                for m in w.maps.values() {
                    for l in mm::maps::proc_self_maps(m.va, m.va + m.len).unwrap_or_default() {
                        v.push(l.raw);
                    }
                }
                v.sort();
                v.dedup();
                v
            } else {
                w.aspace.maps()
            };
            let found = lines.iter().any(|l| l.contains(contains.as_str()));
            output.extend(lines);
            let d = format!("{} contains {contains:?}", if *proc { "/proc/self/maps" } else { "the maps view" });
            (d, if found { Outcome::Done(None) } else { Outcome::Mismatch(format!("no line contains {contains:?}")) })
        }
        Step::Faults { order0, order9, sigbus } => {
            let s = w.aspace.fault_stats();
            let d = format!("fault counts: {} of order 0, {} of order 9, {} SIGBUS", s.order0, s.order9, s.sigbus);
            let bad: Vec<String> =
                [("order0", order0, s.order0), ("order9", order9, s.order9), ("sigbus", sigbus, s.sigbus)]
                    .into_iter()
                    .filter_map(|(n, want, got)| match want {
                        Some(Count::Eq(x)) if *x != got => Some(format!("{n} is {got}, expected {x}")),
                        Some(Count::AtLeast(x)) if got < *x => Some(format!("{n} is {got}, expected at least {x}")),
                        _ => None,
                    })
                    .collect();
            (d, if bad.is_empty() { Outcome::Done(None) } else { Outcome::Mismatch(bad.join("; ")) })
        }
        Step::Inspect => {
            output.extend(crate::inspect::draw(w).lines().map(str::to_owned));
            ("inspect".into(), Outcome::Done(None))
        }
        Step::Pass { .. } | Step::Stop { .. } | Step::Cont { .. } | Step::Exit { .. } => {
            return super::procs::exec(sc, w, st, output)
        }
    })
}

fn raw_fd(sc: &Scenario, w: &World, line: usize, target: &BufRef) -> Result<i32, ScenarioError> {
    match target {
        BufRef::Raw(n) => Ok(*n),
        BufRef::Named(b) => {
            w.bufs.get(b).map(DmaBufFd::raw_fd).ok_or_else(|| err(sc, line, format!("no buffer fd named `{b}` (yet)")))
        }
    }
}

/// `ok`, `temp-revoked` or `perm-revoked`.
pub fn status_text(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::TempRevoked => "temp-revoked",
        Status::PermRevoked => "perm-revoked",
    }
}

pub(super) fn page_up(len: u64) -> u64 {
    len.div_ceil(4096) * 4096
}

pub(super) fn addr_text(a: Option<u64>) -> String {
    a.map_or("0".into(), |a| format!("{a:#x}"))
}

pub(super) fn prot_text(write: bool) -> &'static str {
    if write {
        "PROT_READ|PROT_WRITE"
    } else {
        "PROT_READ"
    }
}

pub(super) fn share_text(shared: bool) -> &'static str {
    if shared {
        "MAP_SHARED"
    } else {
        "MAP_PRIVATE"
    }
}

/// The device-fd offset of byte `at` of region `region`; `None` when it
/// does not fit in 64 bits.
fn region_offset(region: u32, at: u64) -> Option<u64> {
    vfio::index_to_offset(region).checked_add(at)
}

/// The outcome of a step whose offset overflows.
fn overflow() -> Outcome {
    Outcome::Mismatch("offset overflows".into())
}
