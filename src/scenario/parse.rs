//! Scenario files: TOML, read into [`Scenario`] with an error that names
//! the file, the line and the problem for anything malformed.

use std::collections::BTreeMap;
use std::fmt;

use pci::{BarSpec, Bdf, DeviceSpec, PowerState};
use rustix::io::Errno;
use toml::{Spanned, Table, Value};

pub use super::fields::parse_number;
use super::fields::{number, Bounds, Ctx, Fields};
pub use super::procs_parse::{parse_duration, ProcessDecl, ServerDecl};

/// A malformed scenario: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {msg}")]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The problem.
    pub msg: String,
}

/// A device declared under `[devices.<id>]`.
#[derive(Debug)]
pub struct DeviceDecl {
    /// The id steps use.
    pub id: String,
    /// The cdev number (`vfio<N>`).
    pub cdev: u32,
    /// PCI address.
    pub bdf: Bdf,
    /// What the device is.
    pub spec: DeviceSpec,
    /// Line of the declaration.
    pub line: usize,
    /// Whether order-0 faults map their neighbours (`fault-around`, default
    /// true; false gives Linux's one page per fault).
    pub fault_around: bool,
    /// Bound on a revoke's wait for importers (`revoke-timeout-ms`; none
    /// by default: wait as long as it takes, as Linux does).
    pub revoke_timeout_ms: Option<u64>,
    /// The IOMMU group number (`group`, default the device's position):
    /// `/dev/vfio/<group>` when the device is served to other processes.
    pub group: u32,
    /// Bytes per frame of its RAM BAR storage (`frame-size`, default 2 MiB;
    /// a power-of-two page multiple): a process is given whole frames.
    pub frame_size: Option<u64>,
}

impl DeviceDecl {
    /// The emulated device this declares, with its fault-around and
    /// revoke-timeout settings.
    ///
    /// # Errors
    ///
    /// As [`vfio::VfioPciDevice::new`].
    pub fn create(&self) -> Result<std::sync::Arc<vfio::VfioPciDevice>, vfio::VfioError> {
        let frame_size = self.frame_size.unwrap_or(mm::frames::DEFAULT_FRAME_SIZE);
        let vdev = vfio::VfioPciDevice::with_frame_size(self.cdev, self.bdf, self.spec.clone(), frame_size)?;
        vdev.set_fault_around(self.fault_around);
        vdev.set_revoke_timeout(self.revoke_timeout_ms.map(std::time::Duration::from_millis));
        Ok(vdev)
    }
}

/// What a step expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Success (the default).
    Ok,
    /// The access raises SIGBUS.
    Sigbus,
    /// The access raises SIGBUS with this `si_code` (`"sigbus BUS_ADRERR"`).
    SigbusCode(i32),
    /// The access raises SIGSEGV (nothing mapped).
    Segv,
    /// The call fails with this errno.
    Errno(Errno),
    /// The call succeeds and yields this value.
    Value(u64),
    /// The call succeeds and yields this text (a status).
    Text(String),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Ok => f.write_str("ok"),
            Expect::Sigbus => f.write_str("sigbus"),
            Expect::SigbusCode(c) => write!(f, "sigbus {}", bus_code_name(*c)),
            Expect::Segv => f.write_str("segv"),
            Expect::Errno(e) => f.write_str(vfio::errno_name(*e)),
            Expect::Value(v) => write!(f, "{v:#x}"),
            Expect::Text(t) => f.write_str(t),
        }
    }
}

/// The `si_code`s of SIGBUS an expectation may name.
const BUS_CODES: &[(&str, i32)] = &[
    ("BUS_ADRALN", libc::BUS_ADRALN),
    ("BUS_ADRERR", libc::BUS_ADRERR),
    ("BUS_OBJERR", libc::BUS_OBJERR),
    ("BUS_MCEERR_AR", libc::BUS_MCEERR_AR),
];

/// The name of SIGBUS `si_code` `code`.
fn bus_code_name(code: i32) -> String {
    BUS_CODES.iter().find(|(_, c)| *c == code).map_or_else(|| code.to_string(), |(n, _)| (*n).to_owned())
}

/// How a fault counter must compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Exactly.
    Eq(u64),
    /// At least.
    AtLeast(u64),
}

/// One step. Its fields are the step's keys, each documented with its verb
/// in `docs/scenarios.md` (`as_` is the key `as`).
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Step {
    /// Prints a line of narrative.
    Say,
    /// Opens a device: a device fd named `as_`.
    Open { device: String, as_: String },
    /// `dup()` of a device fd or buffer fd.
    Dup { handle: String, as_: String },
    /// `close()` of a device fd or buffer fd.
    Close { handle: String },
    /// `VFIO_DEVICE_GET_REGION_INFO`; yields the size.
    RegionInfo { fd: String, region: u32 },
    /// `pread` of `width` bits at `at` in `region`.
    RegionRead { fd: String, region: u32, at: u64, width: u32 },
    /// `pwrite` of `value`.
    RegionWrite { fd: String, region: u32, at: u64, width: u32, value: u64 },
    /// Config read of a named register.
    ConfigRead { fd: String, reg: u64, width: u32 },
    /// Config write of a named register.
    ConfigWrite { fd: String, reg: u64, width: u32, value: u64 },
    /// COMMAND.MEMORY on or off.
    Memory { fd: String, enable: bool },
    /// PMCSR power state.
    Power { fd: String, state: PowerState },
    /// FLR through DEVCTL.
    Flr { fd: String },
    /// `VFIO_DEVICE_RESET`.
    Reset { fd: String },
    /// `VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY`.
    LowPower { fd: String },
    /// `VFIO_DEVICE_FEATURE_LOW_POWER_EXIT`.
    LowPowerExit { fd: String },
    /// `VFIO_DEVICE_PCI_HOT_RESET` across these device fds.
    HotReset { fds: Vec<String> },
    /// mmap of a device fd at `file_offset`.
    Mmap { fd: String, file_offset: u64, len: u64, write: bool, shared: bool, addr: Option<u64>, as_: String },
    /// mmap of a buffer fd at `offset` into the buffer.
    MmapBuf { buf: String, offset: u64, len: u64, write: bool, shared: bool, addr: Option<u64>, as_: String },
    /// munmap of part of a mapping (offsets relative to its start).
    Munmap { map: String, at: u64, len: Option<u64> },
    /// `madvise(MADV_HUGEPAGE)` over a mapping.
    MadviseHugepage { map: String },
    /// A load through a mapping.
    Read { map: String, at: u64, width: u32 },
    /// A store through a mapping.
    Write { map: String, at: u64, width: u32, value: u64 },
    /// Stores `value ^ (xor_base + offset)` (or `value`) every `stride` bytes of `[from, from+len)`.
    Fill { map: String, from: u64, len: Option<u64>, stride: u64, width: u32, value: u64, xor: Option<u64> },
    /// Checks what `Fill` would have stored.
    Check { map: String, from: u64, len: Option<u64>, stride: u64, width: u32, value: u64, xor: Option<u64> },
    /// `VFIO_DEVICE_FEATURE_DMA_BUF` (GET).
    Export { fd: String, region: u32, ranges: Vec<(u64, u64)>, open_flags: u32, flags: u32, as_: String },
    /// `VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE` of a buffer (by name) or a raw fd number.
    Revoke { fd: String, target: BufRef },
    /// `VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR`.
    Memattr { fd: String, target: BufRef, attr: u32 },
    /// `VFIO_DEVICE_FEATURE` PROBE of a feature number.
    Probe { fd: String, feature: u32, get: bool },
    /// Attaches a test importer to a buffer.
    Attach { buf: String, as_: String, p2p: bool, revocable: bool, hold_ms: u64 },
    /// The importer maps the buffer.
    ImporterMap { importer: String },
    /// The importer unmaps.
    ImporterUnmap { importer: String },
    /// The importer detaches.
    Detach { importer: String },
    /// How many invalidations the importer saw (yields the count).
    Invalidations { importer: String },
    /// A buffer's status (yields `ok`/`temp-revoked`/`perm-revoked`).
    Status { buf: String },
    /// Our maps view, or the real `/proc/self/maps`, contains a text.
    Maps { contains: String, proc: bool },
    /// Fault counters since the start.
    Faults { order0: Option<Count>, order9: Option<Count>, sigbus: Option<Count> },
    /// Draws the live state.
    Inspect,
    /// Sends a device or buffer fd of the primary to a client process over
    /// `SCM_RIGHTS`, named `as_` there.
    Pass { fd: String, to: String, as_: String },
    /// `SIGSTOP` to a client process.
    Stop { process: String },
    /// `SIGCONT` to a client process.
    Cont { process: String },
    /// A client process exits (`exit(2)`), and is waited for.
    Exit { process: String },
}

/// A buffer named in the scenario, or a raw fd number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BufRef {
    /// A buffer fd the scenario made.
    Named(String),
    /// A raw fd number (e.g. 1, to show `EINVAL`).
    Raw(i32),
}

/// A step with where it stands and what it expects.
#[derive(Debug, Clone)]
pub struct StepAt {
    /// 1-based line of the step in its file.
    pub line: usize,
    /// The verb, as written.
    pub verb: &'static str,
    /// Narrative printed before the step.
    pub say: Option<String>,
    /// The step.
    pub step: Step,
    /// Its expectation.
    pub expect: Expect,
    /// The client process it runs in (`process = "<name>"`); `None`: the
    /// primary, the runner itself.
    pub process: Option<String>,
}

/// A parsed scenario.
#[derive(Debug)]
pub struct Scenario {
    /// File name (for messages).
    pub file: String,
    /// Title.
    pub name: String,
    /// What it shows.
    pub description: Option<String>,
    /// Devices, in order of their ids (which numbers their default cdev and BDF).
    pub devices: Vec<DeviceDecl>,
    /// Client processes (`[processes.<name>]`), in order of their names.
    pub processes: Vec<ProcessDecl>,
    /// The server's settings (`[server]`), for client processes and `exec`.
    pub server: ServerDecl,
    /// Steps, in order.
    pub steps: Vec<StepAt>,
}

/// Every verb, in the order the documentation lists them.
pub const VERBS: &[&str] = &[
    "say",
    "open",
    "dup",
    "close",
    "region-info",
    "region-read",
    "region-write",
    "config-read",
    "config-write",
    "memory",
    "power",
    "flr",
    "reset",
    "low-power",
    "low-power-exit",
    "hot-reset",
    "mmap",
    "mmap-buf",
    "munmap",
    "madvise-hugepage",
    "read",
    "write",
    "fill",
    "check",
    "export",
    "revoke",
    "memattr",
    "probe",
    "attach",
    "importer-map",
    "importer-unmap",
    "detach",
    "invalidations",
    "status",
    "maps",
    "faults",
    "inspect",
    "pass",
    "stop",
    "cont",
    "exit",
];

/// `region` of a step that forms a file offset (`region << 40 | at`): the
/// largest index whose offset still fits 64 bits.
const REGION_IN_OFFSET: Bounds = Bounds::hex(0, u64::MAX >> vfio::VFIO_PCI_OFFSET_SHIFT);
/// `region` of `region-info` and `export`: the UAPI's `__u32` index.
const REGION_INDEX: Bounds = Bounds::U32;
/// `cdev`: Linux numbers a VFIO cdev by its minor, below `MINORMASK` (20 bits).
const CDEV: Bounds = Bounds::dec(0, (1 << 20) - 1);
/// `group`: a group node's number is a non-negative C `int`.
const GROUP: Bounds = Bounds::dec(0, 0x7fff_ffff);
/// BAR `index`: the six slots of a type-0 header.
const BAR_INDEX: Bounds = Bounds::dec(0, 5);
/// `raw-fd`: an fd number is a non-negative C `int`.
const RAW_FD: Bounds = Bounds::dec(0, 0x7fff_ffff);
/// `feature`: the low 16 bits of the feature header's flags
/// (`VFIO_DEVICE_FEATURE_MASK`); the bits above are GET, SET and PROBE.
const FEATURE: Bounds = Bounds::hex(0, 0xffff);
/// Longest `hold-ms`: a minute. A hold shows a revoke waiting for an
/// importer, which any wait of a second or so does; the bound keeps a typo
/// (`500000`) from stalling a run for many minutes while looking hung.
pub const MAX_HOLD_MS: u64 = 60_000;

/// Parses scenario text read from `file`.
///
/// # Errors
///
/// A [`ScenarioError`] naming the line and the problem.
pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let cx = Ctx { file, text };
    let doc: Doc = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| cx.line_of(s.start));
        cx.err(line, e.message().trim_end().to_owned())
    })?;
    let mut devices = Vec::new();
    for (i, (id, t)) in doc.devices.into_iter().enumerate() {
        let line = cx.line_of(t.span().start);
        let index = u32::try_from(i).map_err(|_| cx.err(line, "too many devices"))?;
        devices.push(parse_device(&cx, id, t.into_inner(), line, index)?);
    }
    let mut processes = Vec::new();
    for (name, t) in doc.processes {
        processes.push(super::procs_parse::parse_process(&cx, name, t)?);
    }
    let mut steps = Vec::new();
    for t in doc.steps {
        let line = cx.line_of(t.span().start);
        steps.push(parse_step(&cx, t.into_inner(), line)?);
    }
    super::procs_parse::check_places(&cx, &processes, &steps)?;
    let server = super::procs_parse::parse_server(&cx, doc.server)?;
    Ok(Scenario {
        file: file.to_owned(),
        name: doc.name.unwrap_or_else(|| file.to_owned()),
        description: doc.description,
        devices,
        processes,
        server,
        steps,
    })
}

/// The file's top level.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    devices: BTreeMap<String, Spanned<Table>>,
    #[serde(default)]
    processes: BTreeMap<String, Spanned<Table>>,
    server: Option<Spanned<Table>>,
    #[serde(default)]
    steps: Vec<Spanned<Table>>,
}

fn parse_expect(f: &mut Fields<'_>) -> Result<Expect, ScenarioError> {
    match f.take("expect") {
        None => Ok(Expect::Ok),
        Some(v @ Value::Integer(_)) => number(&v).map(Expect::Value).map_err(|m| f.err(format!("`expect`: {m}"))),
        Some(Value::String(s)) => match s.as_str() {
            "ok" => Ok(Expect::Ok),
            "sigbus" => Ok(Expect::Sigbus),
            e if e.starts_with("sigbus ") => BUS_CODES
                .iter()
                .find(|(n, _)| *n == e["sigbus ".len()..].trim())
                .map(|(_, c)| Expect::SigbusCode(*c))
                .ok_or_else(|| {
                    let names: Vec<&str> = BUS_CODES.iter().map(|(n, _)| *n).collect();
                    f.err(format!("`expect`: {e:?}: the si_code of a SIGBUS is one of {}", names.join(", ")))
                }),
            "segv" | "sigsegv" => Ok(Expect::Segv),
            e if e.starts_with('E') => vfio::errno_from_name(e)
                .map(Expect::Errno)
                .ok_or_else(|| f.err(format!("`expect`: unknown errno {e:?}"))),
            "temp-revoked" | "perm-revoked" => Ok(Expect::Text(s)),
            other => match parse_number(other) {
                Ok(v) => Ok(Expect::Value(v)),
                Err(_) => Err(f.err(format!(
                    "`expect` must be ok, sigbus (or \"sigbus BUS_ADRERR\"), segv, an errno name like EINVAL, a number, or a status \
                     (ok, temp-revoked, perm-revoked); not {other:?}"
                ))),
            },
        },
        Some(v) => Err(f.err(format!("`expect` must be a string or a number, not {}", v.type_str()))),
    }
}

fn parse_count(v: &Value) -> Result<Count, String> {
    match v {
        Value::String(s) if s.trim_start().starts_with(">=") => {
            parse_number(s.trim_start()[2..].trim()).map(Count::AtLeast)
        }
        other => number(other).map(Count::Eq),
    }
}

fn parse_device(cx: &Ctx<'_>, id: String, t: Table, line: usize, index: u32) -> Result<DeviceDecl, ScenarioError> {
    let mut f = Fields { cx, line, what: format!("device `{id}`"), t };
    let bdf = match f.opt_str("bdf")? {
        Some(s) => s.parse::<Bdf>().map_err(|e| f.err(e.to_string()))?,
        None => {
            // Default slots 00:03.0, 00:04.0, ... up to the last device number.
            let slot = u8::try_from(3 + index)
                .ok()
                .filter(|d| *d <= 0x1f)
                .ok_or_else(|| f.err(format!("no default PCI slot left for device number {index}; give it a `bdf`")))?;
            Bdf::new(0, 0, slot, 0).map_err(|e| f.err(e.to_string()))?
        }
    };
    let cdev = f.int_or("cdev", CDEV, index)?;
    let group = f.int_or("group", GROUP, index)?;
    let fault_around = f.bool_or("fault-around", true)?;
    let revoke_timeout_ms = f.opt_num("revoke-timeout-ms")?;
    let frame_size = f.frame_size()?;
    let catalogue = f.opt_str("catalogue")?;
    let vgamem = f.opt_num("vgamem")?;
    let bars = f.take("bars");
    // QEMU's `vgamem` property: bochs-display's VRAM size.
    if vgamem.is_some() && catalogue.as_deref() != Some("bochs-display") {
        return Err(f.err("`vgamem` is the VRAM size of `catalogue = \"bochs-display\"` only"));
    }
    let spec = match (catalogue, bars) {
        (Some(name), None) => match vgamem {
            Some(size) => pci::catalogue::bochs_display_with_vgamem(size).map_err(|e| f.err(e.to_string()))?,
            None => pci::catalogue::by_name(&name).ok_or_else(|| {
                f.err(format!("no catalogue device {name:?} (known: {})", pci::catalogue::names().join(", ")))
            })?,
        },
        (None, Some(Value::Array(list))) => {
            let mut spec = DeviceSpec {
                name: id.clone(),
                vendor_id: f.int_or("vendor", Bounds::U16, 0x1234)?,
                device_id: f.int_or("device", Bounds::U16, 0x0001)?,
                revision: 0,
                class_code: 0x00ff00,
                bars: Default::default(),
                interrupts: pci::InterruptSpec::NONE,
            };
            for b in list {
                let Value::Table(bt) = b else { return Err(f.err("each of `bars` must be a table")) };
                let mut bf = Fields { cx, line, what: format!("device `{id}` BAR"), t: bt };
                let index: usize = bf.int_req("index", BAR_INDEX)?;
                let size = bf.num("size")?;
                let kind = bf.opt_str("kind")?.unwrap_or_else(|| "ram".into());
                let bits = bf.num_or("bits", 32)?;
                let prefetchable = bf.bool_or("prefetchable", false)?;
                if kind != "ram" {
                    return Err(bf.err(format!(
                        "`kind` {kind:?}: scenario BARs are \"ram\" (register BARs come from the catalogue)"
                    )));
                }
                let mut bar = BarSpec::ram(size);
                if bits == 64 {
                    bar = bar.with_64bit();
                } else if bits != 32 {
                    return Err(bf.err("`bits` must be 32 or 64"));
                }
                if prefetchable {
                    bar = bar.with_prefetchable();
                }
                bf.finish()?;
                spec.bars[index] = Some(bar);
            }
            spec
        }
        (None, Some(_)) => return Err(f.err("`bars` must be an array of tables")),
        (Some(_), Some(_)) => return Err(f.err("give either `catalogue` or `bars`, not both")),
        (None, None) => return Err(f.err("needs `catalogue` (one of: edu-plus, multi-bar, ...) or `bars`")),
    };
    spec.validate().map_err(|e| f.err(e.to_string()))?;
    f.finish()?;
    Ok(DeviceDecl { id, cdev, bdf, spec, line, fault_around, revoke_timeout_ms, group, frame_size })
}

fn parse_step(cx: &Ctx<'_>, mut t: Table, line: usize) -> Result<StepAt, ScenarioError> {
    let say = match t.remove("say") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(cx.err(line, "`say` must be a string")),
    };
    let process = match t.remove("process") {
        None => None,
        Some(Value::String(p)) if p == super::procs_parse::PRIMARY => None,
        Some(Value::String(p)) => Some(p),
        Some(_) => return Err(cx.err(line, "`process` must be a string (a name under [processes])")),
    };
    let verbs: Vec<&'static str> = VERBS.iter().copied().filter(|v| t.contains_key(*v)).collect();
    let verb = match verbs.as_slice() {
        [] if say.is_some() => "say",
        [] => {
            let keys: Vec<&String> = t.keys().collect();
            return Err(cx.err(line, format!("step has no verb (keys: {keys:?}); verbs are: {}", VERBS.join(", "))));
        }
        [v] => *v,
        many => return Err(cx.err(line, format!("step has several verbs: {}", many.join(", ")))),
    };
    let target = t.remove(verb);
    let mut f = Fields { cx, line, what: format!("step `{verb}`"), t };
    let target_str = |f: &Fields<'_>| -> Result<String, ScenarioError> {
        match &target {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(f.err(format!("`{verb} = \"<name>\"` names what it acts on"))),
        }
    };
    let step = match verb {
        "say" => Step::Say,
        "open" => Step::Open { device: target_str(&f)?, as_: f.str("as")? },
        "dup" => Step::Dup { handle: target_str(&f)?, as_: f.str("as")? },
        "close" => Step::Close { handle: target_str(&f)? },
        "region-info" => Step::RegionInfo { fd: target_str(&f)?, region: f.int_req("region", REGION_INDEX)? },
        "region-read" => Step::RegionRead {
            fd: target_str(&f)?,
            region: f.int_req("region", REGION_IN_OFFSET)?,
            at: f.num_or("at", 0)?,
            width: f.width(32)?,
        },
        "region-write" => {
            let width = f.width(32)?;
            Step::RegionWrite {
                fd: target_str(&f)?,
                region: f.int_req("region", REGION_IN_OFFSET)?,
                at: f.num_or("at", 0)?,
                width,
                value: f.value(width)?,
            }
        }
        "config-read" | "config-write" => {
            let fd = target_str(&f)?;
            let (reg, default_width) = match f.take("reg") {
                Some(Value::String(name)) if parse_number(&name).is_err() => match pci::regs::register_by_name(&name) {
                    Some(r) => (r.offset, u32::from(r.width) * 8),
                    None => return Err(f.err(format!("unknown register {name:?}"))),
                },
                Some(v) => (f.value_in("reg", "", &v, Bounds::U64)?, 32),
                None => return Err(f.err("needs `reg` (a name like COMMAND or PMCSR, or an offset)")),
            };
            let width = f.width(default_width)?;
            if width == 64 {
                return Err(f.err("config accesses are 8, 16 or 32 bits"));
            }
            if verb == "config-read" {
                Step::ConfigRead { fd, reg, width }
            } else {
                Step::ConfigWrite { fd, reg, width, value: f.value(width)? }
            }
        }
        "memory" => Step::Memory { fd: target_str(&f)?, enable: f.bool_or("enable", true)? },
        "power" => {
            let fd = target_str(&f)?;
            let s = f.str("state")?;
            let state = s.parse::<PowerState>().map_err(|e| f.err(e.to_string()))?;
            Step::Power { fd, state }
        }
        "flr" => Step::Flr { fd: target_str(&f)? },
        "reset" => Step::Reset { fd: target_str(&f)? },
        "low-power" => Step::LowPower { fd: target_str(&f)? },
        "low-power-exit" => Step::LowPowerExit { fd: target_str(&f)? },
        "hot-reset" => match &target {
            Some(Value::Array(a)) => Step::HotReset {
                fds: a
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| f.err("names device fds as strings")))
                    .collect::<Result<_, _>>()?,
            },
            _ => return Err(f.err("`hot-reset = [\"fd1\", \"fd2\"]` lists the device fds")),
        },
        "mmap" => {
            let fd = target_str(&f)?;
            let file_offset = match (f.opt_num("file-offset")?, f.int("region", REGION_IN_OFFSET)?) {
                (Some(o), None) => o,
                (None, Some(r)) => {
                    let off = f.num_or("offset", 0)?;
                    vfio::index_to_offset(r)
                        .checked_add(off)
                        .ok_or_else(|| f.err(format!("region {r} + offset {off:#x} overflows 64 bits")))?
                }
                (None, None) => return Err(f.err("needs `region` (+ `offset`) or `file-offset`")),
                (Some(_), Some(_)) => return Err(f.err("give `region` or `file-offset`, not both")),
            };
            let (write, shared) = prot_and_sharing(&mut f)?;
            Step::Mmap {
                fd,
                file_offset,
                len: f.num("len")?,
                write,
                shared,
                addr: f.opt_num("addr")?,
                as_: f.str("as")?,
            }
        }
        "mmap-buf" => {
            let buf = target_str(&f)?;
            let (write, shared) = prot_and_sharing(&mut f)?;
            Step::MmapBuf {
                buf,
                offset: f.num_or("offset", 0)?,
                len: f.num("len")?,
                write,
                shared,
                addr: f.opt_num("addr")?,
                as_: f.str("as")?,
            }
        }
        "munmap" => Step::Munmap { map: target_str(&f)?, at: f.num_or("at", 0)?, len: f.opt_num("len")? },
        "madvise-hugepage" => Step::MadviseHugepage { map: target_str(&f)? },
        "read" => Step::Read { map: target_str(&f)?, at: f.num_or("at", 0)?, width: f.width(64)? },
        "write" => {
            let (map, at, width) = (target_str(&f)?, f.num_or("at", 0)?, f.width(64)?);
            Step::Write { map, at, width, value: f.value(width)? }
        }
        "fill" | "check" => {
            let map = target_str(&f)?;
            let from = f.num_or("from", 0)?;
            let len = f.opt_num("len")?;
            let stride = f.num_or("stride", 4096)?;
            let width = f.width(32)?;
            let value = f.value(width)?;
            let xor = f.opt_num("xor")?;
            if stride == 0 {
                return Err(f.err("`stride` must not be 0"));
            }
            if verb == "fill" {
                Step::Fill { map, from, len, stride, width, value, xor }
            } else {
                Step::Check { map, from, len, stride, width, value, xor }
            }
        }
        "export" => {
            let fd = target_str(&f)?;
            let region = f.int_req("region", REGION_INDEX)?;
            let ranges = match f.take("ranges") {
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|r| match r {
                        Value::Array(pair) if pair.len() == 2 => Ok((number(&pair[0])?, number(&pair[1])?)),
                        _ => Err("each range is [offset, length]".to_owned()),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|m| f.err(format!("`ranges`: {m}")))?,
                Some(_) => return Err(f.err("`ranges` is a list of [offset, length]")),
                None => return Err(f.err("needs `ranges = [[offset, length], ...]`")),
            };
            let open_flags = match f.take("open-flags") {
                None => (libc::O_RDWR | libc::O_CLOEXEC).unsigned_abs(),
                Some(Value::String(s)) if s == "rdwr" => (libc::O_RDWR | libc::O_CLOEXEC).unsigned_abs(),
                Some(Value::String(s)) if s == "rdonly" => (libc::O_RDONLY | libc::O_CLOEXEC).unsigned_abs(),
                Some(Value::String(s)) if s == "wronly" => (libc::O_WRONLY | libc::O_CLOEXEC).unsigned_abs(),
                Some(v) => f.value_in("open-flags", " (rdwr, rdonly, wronly or a number)", &v, Bounds::U32)?,
            };
            let flags = f.int_or("flags", Bounds::U32, 0)?;
            Step::Export { fd, region, ranges, open_flags, flags, as_: f.str("as")? }
        }
        "revoke" | "memattr" => {
            let fd = target_str(&f)?;
            let target = match (f.opt_str("buf")?, f.int("raw-fd", RAW_FD)?) {
                (Some(b), None) => BufRef::Named(b),
                (None, Some(n)) => BufRef::Raw(n),
                _ => return Err(f.err("needs exactly one of `buf = \"<name>\"` or `raw-fd = <number>`")),
            };
            if verb == "revoke" {
                Step::Revoke { fd, target }
            } else {
                let attr = match f.take("attr") {
                    Some(Value::String(s)) if s == "nc" => 0,
                    Some(Value::String(s)) if s == "wc" => 1,
                    Some(v) => f.value_in("attr", " (nc, wc or a number)", &v, Bounds::U32)?,
                    None => return Err(f.err("needs `attr` (nc or wc)")),
                };
                Step::Memattr { fd, target, attr }
            }
        }
        "probe" => {
            let fd = target_str(&f)?;
            let feature = match f.take("feature") {
                Some(Value::String(s)) if s == "dma-buf" => 11,
                Some(Value::String(s)) if s == "dma-buf-revoke" => 13,
                Some(Value::String(s)) if s == "dma-buf-memattr" => 14,
                Some(v) => f.value_in("feature", "", &v, FEATURE)?,
                None => return Err(f.err("needs `feature` (dma-buf, dma-buf-revoke, dma-buf-memattr or a number)")),
            };
            Step::Probe { fd, feature, get: f.bool_or("get", feature == 11)? }
        }
        "attach" => Step::Attach {
            buf: target_str(&f)?,
            as_: f.str("as")?,
            p2p: f.bool_or("p2p", true)?,
            revocable: f.bool_or("revocable", true)?,
            hold_ms: f.int_or("hold-ms", Bounds::dec(0, MAX_HOLD_MS), 0)?,
        },
        "importer-map" => Step::ImporterMap { importer: target_str(&f)? },
        "importer-unmap" => Step::ImporterUnmap { importer: target_str(&f)? },
        "detach" => Step::Detach { importer: target_str(&f)? },
        "invalidations" => Step::Invalidations { importer: target_str(&f)? },
        "status" => Step::Status { buf: target_str(&f)? },
        "maps" => Step::Maps { contains: target_str(&f)?, proc: f.bool_or("proc", false)? },
        "faults" => match &target {
            Some(Value::Table(ct)) => {
                let mut counts = Fields { cx, line, what: "step `faults`".into(), t: ct.clone() };
                let mut get = |k: &str| -> Result<Option<Count>, ScenarioError> {
                    match counts.take(k) {
                        None => Ok(None),
                        Some(v) => parse_count(&v).map(Some).map_err(|m| counts.err(format!("`{k}`: {m}"))),
                    }
                };
                let (order0, order9, sigbus) = (get("order0")?, get("order9")?, get("sigbus")?);
                counts.finish()?;
                Step::Faults { order0, order9, sigbus }
            }
            _ => return Err(f.err("`faults = { order0 = N, order9 = \">=1\", sigbus = N }`")),
        },
        "inspect" => Step::Inspect,
        "pass" => Step::Pass { fd: target_str(&f)?, to: f.str("to")?, as_: f.str("as")? },
        "stop" => Step::Stop { process: target_str(&f)? },
        "cont" => Step::Cont { process: target_str(&f)? },
        "exit" => Step::Exit { process: target_str(&f)? },
        _ => unreachable!("every verb is handled"),
    };
    let expect = parse_expect(&mut f)?;
    f.finish()?;
    Ok(StepAt { line, verb, say, step, expect, process })
}

fn prot_and_sharing(f: &mut Fields<'_>) -> Result<(bool, bool), ScenarioError> {
    let write = match f.opt_str("prot")?.as_deref() {
        None | Some("rw") => true,
        Some("r") => false,
        Some(p) => return Err(f.err(format!("`prot` is \"rw\" or \"r\", not {p:?}"))),
    };
    let shared = match f.opt_str("flags")?.as_deref() {
        None | Some("shared") => true,
        Some("private") => false,
        Some(p) => return Err(f.err(format!("`flags` is \"shared\" or \"private\", not {p:?}"))),
    };
    Ok((write, shared))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_step_names_file_line_and_problem() {
        let text = "name = \"x\"\n[devices.dev]\ncatalogue = \"edu-plus\"\n\n[[steps]]\nopen = \"dev\"\nas = \"fd\"\n\n[[steps]]\nmmap = \"fd\"\nregion = 1\n";
        let e = parse("bad.toml", text).unwrap_err();
        assert_eq!(e.file, "bad.toml");
        assert_eq!(e.line, 9, "{e}");
        assert!(e.msg.contains("needs `len`"), "{e}");
    }

    #[test]
    fn a_toml_syntax_error_names_its_line() {
        let e = parse("s.toml", "name = \"x\"\nsteps = [ { open = } ]\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn unknown_keys_and_verbs_are_refused() {
        let e = parse("s.toml", "[[steps]]\nopen = \"d\"\nas = \"fd\"\ncolour = 1\n").unwrap_err();
        assert!(e.msg.contains("unknown key `colour`"), "{e}");
        let e = parse("s.toml", "[[steps]]\nfrobnicate = 1\n").unwrap_err();
        assert!(e.msg.contains("no verb"), "{e}");
        let e = parse("s.toml", "bogus = 1\n").unwrap_err();
        assert!(e.msg.contains("bogus"), "{e}");
    }

    #[test]
    fn vgamem_sizes_the_bochs_display_vram_and_nothing_else() {
        let sc = parse("v.toml", "[devices.d]\ncatalogue = \"bochs-display\"\nvgamem = \"5M\"\n").unwrap();
        assert_eq!(sc.devices[0].spec.bars[0].as_ref().map(|b| b.size), Some(8 << 20), "rounded up as QEMU does");
        let e = parse("v.toml", "[devices.d]\ncatalogue = \"bochs-display\"\nvgamem = \"1M\"\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        let e = parse("v.toml", "[devices.d]\ncatalogue = \"edu-plus\"\nvgamem = \"16M\"\n").unwrap_err();
        assert!(e.msg.contains("`vgamem` is the VRAM size of"), "{e}");
    }
}
