//! `VFIO_DEVICE_FEATURE` payloads: the reference, and the property.

use super::*;

// ---------------------------------------------------------------------------
// Reference: VFIO_DEVICE_FEATURE (spec §2.1, §4.4, §4.9, §4.10)
// ---------------------------------------------------------------------------

/// What one `VFIO_DEVICE_FEATURE` call must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureWant {
    Fail(Errno),
    /// The kernel's answer depends on something the test cannot pin down
    /// (the allocator, or a descriptor number nobody here owns).
    FailOneOf(Vec<Errno>),
    Probe,
    Export {
        phys: Vec<(u64, u64)>,
        status: Status,
        mode: AccessMode,
    },
    Revoke,
    Memattr(u32),
    /// Low-power entry succeeds (the test then exits low power again).
    LowPowerEntry,
    /// Low-power entry with a wake-up eventfd whose number is arbitrary:
    /// `EBADF`, `EINVAL`, or success if it happens to name an eventfd.
    LowPowerEntryMaybe,
    /// Low-power exit succeeds and changes nothing (the device was not in low power).
    LowPowerExit,
}

/// What a payload's `dmabuf_fd` refers to, as the test arranged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdIs {
    Closed,
    NotABuffer,
    ForeignDevice,
    ClosedDevice,
    Mine(Status),
    Unknown,
}

pub fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(d[at..at + 4].try_into().unwrap())
}

pub fn u64_at(d: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(d[at..at + 8].try_into().unwrap())
}

/// `vfio_check_feature()` (spec §2.1): `Ok(true)` for a probe that
/// succeeds, `Ok(false)` to go ahead.
/// `Ok(())` for a successful feature call, else its errno.
pub fn want_kind(got: &Result<FeatureReply, VfioError>) -> Result<(), Errno> {
    match got {
        Ok(_) => Ok(()),
        Err(e) => Err(e.errno()),
    }
}

pub fn vfio_check_feature(flags: u32, argsz: usize, supported: u32, minsz: usize) -> Result<bool, Errno> {
    if flags & (GET | SET) & !supported != 0 {
        return Err(Errno::INVAL);
    }
    if flags & PROBE != 0 {
        return Ok(true);
    }
    if flags & (GET | SET) == 0 || argsz < minsz {
        return Err(Errno::INVAL);
    }
    Ok(false)
}

pub fn feature_want(
    bars: &[Bar; 6],
    memory_on: bool,
    flags: u32,
    data: &[u8],
    fd_is: &dyn Fn(i32) -> FdIs,
) -> FeatureWant {
    use FeatureWant::*;
    // vfio_ioctl_device_feature(): unknown flag bits, then GET with SET.
    if flags & !(VFIO_DEVICE_FEATURE_MASK | GET | SET | PROBE) != 0 {
        return Fail(Errno::INVAL);
    }
    if flags & PROBE == 0 && flags & (GET | SET) == (GET | SET) {
        return Fail(Errno::INVAL);
    }
    let check = |supported, minsz| vfio_check_feature(flags, data.len(), supported, minsz);
    match flags & VFIO_DEVICE_FEATURE_MASK {
        DMA_BUF => match check(GET, 16) {
            Err(e) => Fail(e),
            Ok(true) => Probe,
            Ok(false) => export_want(bars, memory_on, data),
        },
        REVOKE => match check(SET, 4) {
            Err(e) => Fail(e),
            Ok(true) => Probe,
            Ok(false) => match fd_want(fd_is(u32_at(data, 0) as i32)) {
                Err(w) => w,
                Ok(Status::PermRevoked) => Fail(Errno::BADFD),
                Ok(_) => Revoke,
            },
        },
        MEMATTR => match check(SET, 8) {
            Err(e) => Fail(e),
            Ok(true) => Probe,
            Ok(false) => match (fd_want(fd_is(u32_at(data, 0) as i32)), u32_at(data, 4)) {
                (Err(w), _) => w,
                (Ok(_), attr @ (VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC | VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC)) => {
                    Memattr(attr)
                }
                (Ok(_), _) => Fail(Errno::NOENT),
            },
        },
        VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY => match check(SET, 0) {
            Err(e) => Fail(e),
            Ok(true) => Probe,
            Ok(false) => LowPowerEntry,
        },
        VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP => match check(SET, 8) {
            Err(e) => Fail(e),
            Ok(true) => Probe,
            Ok(false) if (u32_at(data, 0) as i32) < 0 => Fail(Errno::INVAL),
            Ok(false) => LowPowerEntryMaybe,
        },
        VFIO_DEVICE_FEATURE_LOW_POWER_EXIT => match check(SET, 0) {
            Err(e) => Fail(e),
            Ok(true) => Probe,
            Ok(false) => LowPowerExit,
        },
        _ => Fail(Errno::NOTTY),
    }
}

/// `dma_buf_get()` and the exporter check of the revoke and memattr
/// features (spec §4.9 steps 2-3): the buffer's status, or the failure.
pub fn fd_want(fd: FdIs) -> Result<Status, FeatureWant> {
    match fd {
        FdIs::Closed => Err(FeatureWant::Fail(Errno::BADF)),
        FdIs::NotABuffer => Err(FeatureWant::Fail(Errno::INVAL)),
        FdIs::ForeignDevice | FdIs::ClosedDevice => Err(FeatureWant::Fail(Errno::NODEV)),
        FdIs::Mine(status) => Ok(status),
        FdIs::Unknown => Err(FeatureWant::FailOneOf(vec![Errno::BADF, Errno::INVAL, Errno::NODEV])),
    }
}

/// `vfio_pci_core_feature_dma_buf()` after the header check (spec §4.4).
pub fn export_want(bars: &[Bar; 6], memory_on: bool, data: &[u8]) -> FeatureWant {
    use FeatureWant::*;
    let (region, open_flags, dma_flags, nr) = (u32_at(data, 0), u32_at(data, 4), u32_at(data, 8), u32_at(data, 12));
    if nr == 0 || dma_flags != 0 {
        return Fail(Errno::INVAL);
    }
    // Not a BAR, or a BAR whose resources cannot be claimed (none here).
    let bar = bars.get(region as usize).copied().unwrap_or(Bar::Absent);
    if bar == Bar::Absent {
        return Fail(Errno::NODEV);
    }
    // memdup_array_user(): argsz is not checked against nr_ranges.
    let bytes = u64::from(nr) * 16;
    if (data.len() as u64) < 16 + bytes {
        return if bytes > KMALLOC_MAX_SIZE { FailOneOf(vec![Errno::NOMEM, Errno::FAULT]) } else { Fail(Errno::FAULT) };
    }
    let ranges: Vec<(u64, u64)> =
        (0..nr as usize).map(|i| (u64_at(data, 16 + i * 16), u64_at(data, 24 + i * 16))).collect();
    // validate_dmabuf_input().
    let mut total = 0u64;
    for &(offset, length) in &ranges {
        if length == 0 || offset % PAGE != 0 || length % PAGE != 0 {
            return Fail(Errno::INVAL);
        }
        let Some(t) = total.checked_add(length) else { return Fail(Errno::INVAL) };
        total = t;
    }
    if total & (1 << 63) != 0 {
        return Fail(Errno::INVAL);
    }
    // A missing BAR was refused earlier (ENODEV); RAM and register BARs
    // both export.
    let (Bar::Ram(bar_len) | Bar::Registers(bar_len)) = bar else { return Fail(Errno::INVAL) };
    // vfio_pci_core_fill_phys_vec(); BAR i lives at physical i << 40.
    let bar_start = u64::from(region) << 40;
    let mut phys = Vec::new();
    for &(offset, length) in &ranges {
        let Some(paddr) = bar_start.checked_add(offset) else { return Fail(Errno::OVERFLOW) };
        let Some(end) = paddr.checked_add(length) else { return Fail(Errno::OVERFLOW) };
        if end > bar_start + bar_len {
            return Fail(Errno::INVAL);
        }
        phys.push((paddr, length));
    }
    // Documented deviation of the dmabuf crate: O_ACCMODE itself is refused.
    let mode = match open_flags & libc::O_ACCMODE as u32 {
        0 => AccessMode::ReadOnly,
        1 => AccessMode::WriteOnly,
        2 => AccessMode::ReadWrite,
        _ => return Fail(Errno::INVAL),
    };
    Export { phys, status: if memory_on { Status::Ok } else { Status::TempRevoked }, mode }
}

// ---------------------------------------------------------------------------
// Property: feature payloads
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub enum FdPick {
    Mine,
    MinePermRevoked,
    Foreign,
    ClosedDevice,
    NotABuffer,
    Negative(i32),
    BeyondNrOpen(u32),
    Number(i32),
}

#[derive(Debug, Clone)]
pub enum Body {
    DmaBuf { region: u32, open_flags: u32, dma_flags: u32, nr: Option<u32>, ranges: Vec<(u64, u64)> },
    Fd { pick: FdPick, memattr: Option<u32> },
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct FeatureCase {
    pub flags: u32,
    pub body: Body,
    /// Cut the payload to this many bytes (an arbitrary `argsz`).
    pub cut: Option<usize>,
    pub memory_on: bool,
}

pub fn op_bits() -> impl Strategy<Value = u32> {
    prop::sample::subsequence(vec![GET, SET, PROBE], 0..=3).prop_map(|v| v.iter().fold(0, |a, b| a | b))
}

pub fn flags_for(feature: u32, right: u32) -> BoxedStrategy<u32> {
    prop_oneof![
        6 => Just(feature | right),
        2 => op_bits().prop_map(move |ops| feature | ops),
        1 => (19u32..32, op_bits()).prop_map(move |(bit, ops)| feature | ops | 1 << bit),
        1 => any::<u32>(),
    ]
    .boxed()
}

pub fn fd_pick() -> impl Strategy<Value = FdPick> {
    prop_oneof![
        4 => Just(FdPick::Mine),
        1 => Just(FdPick::MinePermRevoked),
        1 => Just(FdPick::Foreign),
        1 => Just(FdPick::ClosedDevice),
        1 => Just(FdPick::NotABuffer),
        1 => (i32::MIN..0).prop_map(FdPick::Negative),
        1 => any::<u32>().prop_map(FdPick::BeyondNrOpen),
        1 => prop_oneof![0i32..64, any::<i32>()].prop_map(FdPick::Number),
    ]
}

pub fn dma_buf_body() -> impl Strategy<Value = Body> {
    let region = prop_oneof![6 => Just(1u32), 4 => 0u32..=6, 2 => 0u32..=20, 1 => Just(u32::MAX)];
    let open_flags = prop_oneof![6 => Just(RDWR), 1 => Just(RDONLY), 1 => Just(WRONLY), 1 => any::<u32>()];
    let dma_flags = prop_oneof![8 => Just(0u32), 1 => any::<u32>()];
    let nr = prop_oneof![6 => Just(None), 1 => Just(Some(0)), 2 => (0u32..300).prop_map(Some), 1 => any::<u32>().prop_map(Some)];
    let plausible = (0u64..16384, 1u64..64).prop_map(|(p, n)| (p * PAGE, n * PAGE));
    let range = prop_oneof![3 => plausible, 1 => (nasty_u64(64 * MIB), nasty_u64(64 * MIB))];
    let ranges = prop_oneof![6 => prop::collection::vec(range.clone(), 1..6), 1 => prop::collection::vec(range, 0..40)];
    (region, open_flags, dma_flags, nr, ranges).prop_map(|(region, open_flags, dma_flags, nr, ranges)| Body::DmaBuf {
        region,
        open_flags,
        dma_flags,
        nr,
        ranges,
    })
}

pub fn fd_body() -> impl Strategy<Value = Body> {
    let memattr = prop_oneof![Just(None), Just(Some(0u32)), Just(Some(1)), any::<u32>().prop_map(Some)];
    (fd_pick(), memattr).prop_map(|(pick, memattr)| Body::Fd { pick, memattr })
}

pub fn feature_case() -> impl Strategy<Value = FeatureCase> {
    let body_flags = prop_oneof![
        4 => (flags_for(DMA_BUF, GET), dma_buf_body().boxed()),
        2 => (flags_for(REVOKE, SET), fd_body().boxed()),
        2 => (flags_for(MEMATTR, SET), fd_body().boxed()),
        1 => (prop_oneof![0u32..20, any::<u32>()].prop_flat_map(|f| flags_for(f & 0xffff, GET)), prop_oneof![
            dma_buf_body().boxed(),
            fd_body().boxed(),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Bytes).boxed(),
        ]),
    ];
    let cut = prop_oneof![6 => Just(None), 1 => (0usize..40).prop_map(Some)];
    (body_flags, cut, prop::bool::weighted(0.8)).prop_map(|((flags, body), cut, memory_on)| FeatureCase {
        flags,
        body,
        cut,
        memory_on,
    })
}

/// The long-lived things a feature payload can name.
pub struct FeatureWorld {
    pub vdev: Arc<VfioPciDevice>,
    pub fd: DeviceFd,
    pub _foreign_dev: DeviceFd,
    pub foreign: DmaBufFd,
    pub closed_device: DmaBufFd,
    pub not_a_buffer: std::fs::File,
    pub nr_open: u64,
}

impl FeatureWorld {
    pub fn new() -> Self {
        let vdev = device("edu-plus");
        let fd = vdev.open();
        let foreign_dev = device("multi-bar").open();
        let foreign = foreign_dev.feature_dma_buf(4, RDWR, &[(0, PAGE)]).unwrap();
        let gone = device("multi-bar").open();
        let closed_device = gone.feature_dma_buf(0, RDWR, &[(0, PAGE)]).unwrap();
        drop(gone);
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").unwrap().trim().parse().unwrap();
        let not_a_buffer = std::fs::File::open("/dev/null").unwrap();
        Self { vdev, fd, _foreign_dev: foreign_dev, foreign, closed_device, not_a_buffer, nr_open }
    }

    pub fn run(&self, case: &FeatureCase) -> Result<(), TestCaseError> {
        use std::os::fd::AsRawFd;
        self.fd.set_memory_enable(case.memory_on).unwrap();
        let mine = self.fd.feature_dma_buf(1, RDWR, &[(0, PAGE)]).unwrap();
        let mut mine_status = if case.memory_on { Status::Ok } else { Status::TempRevoked };
        if matches!(case.body, Body::Fd { pick: FdPick::MinePermRevoked, .. }) {
            self.fd.feature_dma_buf_revoke(mine.raw_fd()).unwrap();
            mine_status = Status::PermRevoked;
        }
        prop_assert_eq!(mine.buffer().status(), mine_status);

        let mut data = match &case.body {
            Body::DmaBuf { region, open_flags, dma_flags, nr, ranges } => {
                let mut d = encode_dma_buf_payload(*region, *open_flags, *dma_flags, ranges);
                if let Some(nr) = nr {
                    d[12..16].copy_from_slice(&nr.to_ne_bytes());
                }
                d
            }
            Body::Fd { pick, memattr } => {
                let n = match pick {
                    FdPick::Mine | FdPick::MinePermRevoked => mine.raw_fd(),
                    FdPick::Foreign => self.foreign.raw_fd(),
                    FdPick::ClosedDevice => self.closed_device.raw_fd(),
                    FdPick::NotABuffer => self.not_a_buffer.as_raw_fd(),
                    FdPick::Negative(n) | FdPick::Number(n) => *n,
                    FdPick::BeyondNrOpen(k) => (self.nr_open + u64::from(*k)).min(i32::MAX as u64) as i32,
                };
                let mut d = n.to_ne_bytes().to_vec();
                if let Some(m) = memattr {
                    d.extend_from_slice(&m.to_ne_bytes());
                }
                d
            }
            Body::Bytes(b) => b.clone(),
        };
        if let Some(cut) = case.cut {
            data.truncate(cut);
        }
        let fd_is = |n: i32| -> FdIs {
            if n == mine.raw_fd() {
                FdIs::Mine(mine_status)
            } else if n == self.foreign.raw_fd() {
                FdIs::ForeignDevice
            } else if n == self.closed_device.raw_fd() {
                FdIs::ClosedDevice
            } else if n == self.not_a_buffer.as_raw_fd() {
                FdIs::NotABuffer
            } else if n < 0 || n as u64 >= self.nr_open {
                FdIs::Closed
            } else {
                FdIs::Unknown
            }
        };
        let want = feature_want(&EDU_PLUS, case.memory_on, case.flags, &data, &fd_is);

        let before = snapshot(&self.vdev, None);
        let handles = dmabuf::nr_handles();
        let got = self.fd.feature(case.flags, &data);
        let unchanged = |what: &str| -> Result<(), TestCaseError> {
            prop_assert_eq!(&snapshot(&self.vdev, None), &before, "{} changed the device", what);
            prop_assert_eq!(dmabuf::nr_handles(), handles, "{} changed the handle count", what);
            Ok(())
        };
        match want {
            FeatureWant::Fail(e) => {
                prop_assert_eq!(errno_of(&got), Some(e), "{:?}", got);
                unchanged("a failed feature")?;
            }
            FeatureWant::FailOneOf(set) => {
                let e = errno_of(&got);
                prop_assert!(e.is_some_and(|e| set.contains(&e)), "got {:?}, want one of {:?}", got, set);
                unchanged("a failed feature")?;
            }
            FeatureWant::Probe => {
                prop_assert!(matches!(got, Ok(FeatureReply::Done)), "{:?}", got);
                unchanged("a probe")?;
            }
            FeatureWant::Export { phys, status, mode } => {
                let Ok(FeatureReply::DmaBuf(b)) = got else {
                    return Err(TestCaseError::fail(format!("export should succeed with {phys:?}: {got:?}")));
                };
                let ranges: Vec<(u64, u64)> = b.buffer().ranges().iter().map(|r| (r.paddr.0, r.len)).collect();
                prop_assert_eq!(ranges, phys);
                prop_assert_eq!(b.buffer().status(), status);
                prop_assert_eq!(b.buffer().mode(), mode);
                prop_assert_eq!(dmabuf::nr_handles(), handles + 1);
                prop_assert_eq!(self.vdev.dmabufs().len(), before.dmabufs.len() + 1);
                drop(b);
                unchanged("a closed export")?;
            }
            FeatureWant::Revoke => {
                prop_assert!(matches!(got, Ok(FeatureReply::Done)), "{:?}", got);
                prop_assert_eq!(mine.buffer().status(), Status::PermRevoked);
                let mut after = before.clone();
                for b in &mut after.dmabufs {
                    if b.0 == mine.buffer().id() {
                        b.1 = Status::PermRevoked;
                    }
                }
                prop_assert_eq!(snapshot(&self.vdev, None), after);
            }
            FeatureWant::Memattr(attr) => {
                prop_assert!(matches!(got, Ok(FeatureReply::Done)), "{:?}", got);
                prop_assert_eq!(VfioDmaBuf::of(mine.buffer()).unwrap().memattr(), attr);
            }
            FeatureWant::LowPowerEntry | FeatureWant::LowPowerEntryMaybe => {
                match (&want_kind(&got), self.vdev.low_power()) {
                    (Ok(()), true) => {
                        // In low power: leave it again, and everything is as before.
                        self.fd.feature(SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, &[]).unwrap();
                        prop_assert!(!self.vdev.low_power());
                        unchanged("a low-power entry and exit")?;
                    }
                    (Err(e), false) if matches!(want, FeatureWant::LowPowerEntryMaybe) => {
                        prop_assert!([Errno::BADF, Errno::INVAL].contains(e), "{:?}", got);
                        unchanged("a failed low-power entry")?;
                    }
                    _ => return Err(TestCaseError::fail(format!("low-power entry: {got:?}"))),
                }
            }
            FeatureWant::LowPowerExit => {
                prop_assert!(matches!(got, Ok(FeatureReply::Done)), "{:?}", got);
                unchanged("a low-power exit outside low power")?;
            }
        }
        Ok(())
    }
}

/// Arbitrary flags and payloads of every length reach `VFIO_DEVICE_FEATURE`;
/// each gets the kernel's errno and a failure leaves no trace.
#[test]
fn feature_payloads_get_the_kernel_errno_and_leave_nothing_behind() {
    let _alone = alone();
    let world = FeatureWorld::new();
    check(1024, feature_case(), |case| world.run(&case));
}
