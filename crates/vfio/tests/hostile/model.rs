//! Random operation sequences against a reference model of buffer status.

use super::*;

// ---------------------------------------------------------------------------
// Model: random operation sequences against a reference model of status
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub enum Op {
    MmapDevice { page: u64, pages: u64 },
    Export { ranges: Vec<(u64, u64)> },
    MmapBuf { buf: Index, page: Index, pages: u64 },
    Munmap { map: Index, page: Index, pages: u64 },
    CloseBuf { buf: Index },
    Revoke { buf: Index },
    Memory(bool),
    Power(PowerState),
    Reset,
    Flr,
    CloseDevice,
    OpenDevice,
}

impl Op {
    pub fn needs_device_fd(&self) -> bool {
        !matches!(self, Op::Munmap { .. } | Op::CloseBuf { .. } | Op::MmapBuf { .. } | Op::OpenDevice)
    }
}

pub fn op() -> impl Strategy<Value = Op> {
    let range = (0u64..256, 1u64..8);
    prop_oneof![
        2 => (0u64..256, 1u64..8).prop_map(|(page, pages)| Op::MmapDevice { page, pages }),
        3 => prop::collection::vec(range, 1..3).prop_map(|ranges| Op::Export { ranges }),
        3 => (any::<Index>(), any::<Index>(), 1u64..8).prop_map(|(buf, page, pages)| Op::MmapBuf { buf, page, pages }),
        4 => (any::<Index>(), any::<Index>(), 1u64..8).prop_map(|(map, page, pages)| Op::Munmap { map, page, pages }),
        1 => any::<Index>().prop_map(|buf| Op::CloseBuf { buf }),
        2 => any::<Index>().prop_map(|buf| Op::Revoke { buf }),
        2 => prop::bool::ANY.prop_map(Op::Memory),
        1 => prop::sample::select(vec![PowerState::D0, PowerState::D3Hot]).prop_map(Op::Power),
        1 => Just(Op::Reset),
        1 => Just(Op::Flr),
        2 => Just(Op::CloseDevice),
        1 => Just(Op::OpenDevice),
    ]
}

/// The model's view of one buffer.
#[derive(Debug)]
pub struct MBuf {
    pub real: Weak<DmaBuf>,
    pub id: u64,
    /// The handle of an explicit buffer, while open.
    pub fd: Option<DmaBufFd>,
    /// The device file a device-fd mapping's buffer owns.
    pub file: Option<usize>,
    pub status: Status,
    /// Cut off from its device by the last close.
    pub severed: bool,
    pub dead: bool,
    pub size_pages: u64,
}

/// The model's view of one mmap call.
#[derive(Debug)]
pub struct MMap {
    pub buf: usize,
    pub va: u64,
    /// `vm_pgoff` at `va`.
    pub pgoff: u64,
    pub pages: u64,
    /// VA ranges still mapped.
    pub pieces: Vec<(u64, u64)>,
}

/// Reference model (spec §4.7, §4.8, §3.2): a buffer is Ok exactly while
/// its device decodes memory, unless permanently revoked or severed; the
/// last close severs every live buffer after revoking it; a device-fd
/// mapping's buffer keeps its device file, an explicit buffer does not.
pub struct Model {
    pub aspace: AddressSpace,
    pub vdev: Arc<VfioPciDevice>,
    pub fd: Option<DeviceFd>,
    /// Liveness of each device file ever opened; ours is the last one.
    pub files: Vec<bool>,
    pub memory_bit: bool,
    pub d3: bool,
    pub bufs: Vec<MBuf>,
    pub maps: Vec<MMap>,
}

impl Model {
    pub fn new() -> Self {
        let vdev = device("edu-plus");
        let fd = vdev.open();
        Self {
            aspace: AddressSpace::new().unwrap(),
            vdev,
            fd: Some(fd),
            files: vec![true],
            memory_bit: true,
            d3: false,
            bufs: Vec::new(),
            maps: Vec::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.memory_bit && !self.d3
    }

    /// Every listed buffer follows memory decoding (revoke / un-revoke).
    pub fn follow_enable(&mut self) {
        let status = if self.enabled() { Status::Ok } else { Status::TempRevoked };
        for b in self.bufs.iter_mut().filter(|b| !b.dead && !b.severed && b.status != Status::PermRevoked) {
            b.status = status;
        }
    }

    /// Releases what nothing holds any more: buffers, then device files;
    /// the last file's release is the device's close.
    pub fn settle(&mut self) {
        for i in 0..self.bufs.len() {
            let mapped = self.maps.iter().any(|m| m.buf == i && !m.pieces.is_empty());
            if !self.bufs[i].dead && self.bufs[i].fd.is_none() && !mapped {
                self.bufs[i].dead = true;
            }
        }
        let was_open = self.files.iter().any(|f| *f);
        let ours = self.fd.as_ref().map(|_| self.files.len() - 1);
        for f in 0..self.files.len() {
            self.files[f] = ours == Some(f) || self.bufs.iter().any(|b| !b.dead && b.file == Some(f));
        }
        if was_open && !self.files.iter().any(|f| *f) {
            // vfio_pci_core_close_device(): cleanup revokes and severs, then
            // the function is reset and memory decoding turned off.
            for b in self.bufs.iter_mut().filter(|b| !b.dead && !b.severed) {
                if b.status != Status::PermRevoked {
                    b.status = Status::TempRevoked;
                }
                b.severed = true;
            }
            self.memory_bit = false;
            self.d3 = false;
        }
    }

    pub fn known_ids(&self) -> BTreeSet<u64> {
        self.bufs.iter().map(|b| b.id).collect()
    }

    pub fn add_buf(&mut self, real: &Arc<DmaBuf>, fd: Option<DmaBufFd>, file: Option<usize>) {
        let status = if self.enabled() { Status::Ok } else { Status::TempRevoked };
        self.bufs.push(MBuf {
            real: Arc::downgrade(real),
            id: real.id(),
            fd,
            file,
            status,
            severed: false,
            dead: false,
            size_pages: real.size() / PAGE,
        });
    }

    pub fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let op = if self.fd.is_none() && op.needs_device_fd() { &Op::OpenDevice } else { op };
        match op {
            Op::OpenDevice => {
                if self.fd.is_none() {
                    if !self.files.iter().any(|f| *f) {
                        // First open: D0 and memory decoding on.
                        self.memory_bit = true;
                        self.d3 = false;
                    }
                    self.fd = Some(self.vdev.open());
                    self.files.push(true);
                }
            }
            Op::CloseDevice => self.fd = None,
            Op::MmapDevice { page, pages } => {
                let fd = self.fd.as_ref().unwrap();
                let offset = (1 << 40) + page * PAGE;
                let known = self.known_ids();
                let va = fd.mmap(&self.aspace, MmapArgs::shared(offset, pages * PAGE)).unwrap();
                let new: Vec<Arc<DmaBuf>> =
                    self.vdev.dmabufs().into_iter().filter(|b| !known.contains(&b.id())).collect();
                prop_assert_eq!(new.len(), 1);
                let file = self.files.len() - 1;
                self.add_buf(&new[0], None, Some(file));
                let buf = self.bufs.len() - 1;
                self.maps.push(MMap {
                    buf,
                    va,
                    pgoff: offset >> 12,
                    pages: *pages,
                    pieces: vec![(va, va + pages * PAGE)],
                });
            }
            Op::Export { ranges } => {
                let ranges: Vec<(u64, u64)> = ranges.iter().map(|&(p, n)| (p * PAGE, n * PAGE)).collect();
                let b = self.fd.as_ref().unwrap().feature_dma_buf(1, RDWR, &ranges).unwrap();
                let real = b.buffer().clone();
                self.add_buf(&real, Some(b), None);
            }
            Op::MmapBuf { buf, page, pages } => {
                let open: Vec<usize> = (0..self.bufs.len()).filter(|&i| self.bufs[i].fd.is_some()).collect();
                if open.is_empty() {
                    return Ok(());
                }
                let i = open[buf.index(open.len())];
                let size = self.bufs[i].size_pages;
                let first = page.index(size as usize) as u64;
                let n = (*pages).min(size - first);
                let args = MmapArgs::shared(first * PAGE, n * PAGE);
                let got = mmap_dmabuf(&self.aspace, self.bufs[i].fd.as_ref().unwrap(), args);
                if self.bufs[i].status == Status::Ok {
                    let va = got.unwrap();
                    self.maps.push(MMap { buf: i, va, pgoff: first, pages: n, pieces: vec![(va, va + n * PAGE)] });
                } else {
                    prop_assert_eq!(errno_of(&got), Some(Errno::NODEV), "mmap of a revoked buffer");
                }
            }
            Op::Munmap { map, page, pages } => {
                let live: Vec<usize> = (0..self.maps.len()).filter(|&i| !self.maps[i].pieces.is_empty()).collect();
                if live.is_empty() {
                    return Ok(());
                }
                let m = &self.maps[live[map.index(live.len())]];
                let first = page.index(m.pages as usize) as u64;
                let n = (*pages).min(m.pages - first);
                let (from, to) = (m.va + first * PAGE, m.va + (first + n) * PAGE);
                self.aspace.munmap(from, to - from).unwrap();
                // Whatever lives in the range goes, including a later
                // mapping placed in an earlier hole of this one.
                for m in &mut self.maps {
                    m.pieces = m
                        .pieces
                        .iter()
                        .flat_map(|&(s, e)| [(s, e.min(from)), (s.max(to), e)])
                        .filter(|(s, e)| s < e)
                        .collect();
                }
            }
            Op::CloseBuf { buf } => {
                let open: Vec<usize> = (0..self.bufs.len()).filter(|&i| self.bufs[i].fd.is_some()).collect();
                if let Some(&i) = open.get(buf.index(open.len().max(1))) {
                    self.bufs[i].fd = None;
                }
            }
            Op::Revoke { buf } => {
                let open: Vec<usize> = (0..self.bufs.len()).filter(|&i| self.bufs[i].fd.is_some()).collect();
                let Some(&i) = open.get(buf.index(open.len().max(1))) else { return Ok(()) };
                let raw = self.bufs[i].fd.as_ref().unwrap().raw_fd();
                let got = self.fd.as_ref().unwrap().feature_dma_buf_revoke(raw);
                let b = &mut self.bufs[i];
                let want = if b.severed {
                    Some(Errno::NODEV)
                } else if b.status == Status::PermRevoked {
                    Some(Errno::BADFD)
                } else {
                    b.status = Status::PermRevoked;
                    None
                };
                prop_assert_eq!(errno_of(&got), want, "revoke of {:?}", b);
            }
            Op::Memory(on) => {
                self.fd.as_ref().unwrap().set_memory_enable(*on).unwrap();
                self.memory_bit = *on;
                self.follow_enable();
            }
            Op::Power(state) => {
                self.fd.as_ref().unwrap().set_power_state(*state).unwrap();
                self.d3 = *state == PowerState::D3Hot;
                self.follow_enable();
            }
            Op::Reset | Op::Flr => {
                let fd = self.fd.as_ref().unwrap();
                if matches!(op, Op::Reset) { fd.reset() } else { fd.flr() }.unwrap();
                // Both end in D0 with COMMAND restored.
                self.d3 = false;
                self.follow_enable();
            }
        }
        self.settle();
        Ok(())
    }

    /// The real system agrees with the model in every observable.
    pub fn check(&self) -> Result<(), TestCaseError> {
        for b in &self.bufs {
            let real = b.real.upgrade();
            prop_assert_eq!(real.is_none(), b.dead, "liveness of {:?}", b);
            if let Some(real) = real {
                prop_assert_eq!(real.status(), b.status, "status of {:?}", b);
            }
        }
        let listed: BTreeSet<u64> = self.vdev.dmabufs().iter().map(|b| b.id()).collect();
        let want: BTreeSet<u64> = self.bufs.iter().filter(|b| !b.dead && !b.severed).map(|b| b.id).collect();
        prop_assert_eq!(listed, want, "the device's buffer list");
        prop_assert_eq!(self.vdev.open_count() as usize, self.files.iter().filter(|f| **f).count());
        prop_assert_eq!(self.vdev.memory_enabled(), self.enabled());
        let mut vmas: Vec<(u64, u64, u64)> = Vec::new();
        for m in &self.maps {
            for &(s, e) in &m.pieces {
                vmas.push((s, e, m.pgoff + (s - m.va) / PAGE));
                check_access(s, self.bufs[m.buf].status == Status::Ok)?;
            }
        }
        vmas.sort_unstable();
        let real: Vec<(u64, u64, u64)> =
            self.aspace.vmas().iter().map(|v| (v.vm_start, v.vm_end, v.vm_pgoff)).collect();
        prop_assert_eq!(real, vmas, "the VMAs");
        Ok(())
    }
}

/// Random sequences of mmap, munmap, export, close, revoke, memory off/on,
/// D3/D0, reset, FLR and device close/reopen: after every step, buffer
/// liveness and status, the device's list and open count, the VMAs, and
/// whether each mapping works or raises SIGBUS match the model.
#[test]
fn operation_sequences_match_the_status_model() {
    let _q = quiet();
    check(128, prop::collection::vec(op(), 1..32), |ops| {
        let mut model = Model::new();
        for op in &ops {
            model.apply(op)?;
            model.check()?;
        }
        Ok(())
    });
}
