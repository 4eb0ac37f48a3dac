//! Shared fixture of the mm integration tests: physical memory with a known
//! pattern, an exporter whose behaviour each test picks, and the lock that
//! keeps tests asserting on unmapped holes alone in the process.

// Each test binary uses its own part of the fixture.
#![allow(dead_code)]

pub mod regs;
#[cfg(target_arch = "x86_64")]
pub mod signals;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use mm::{AddressSpace, MapPiece, MapRequest, PfnWindow, PhysMemory, VmFault, VmFaultResult, VmOperations};
use page::{Pfn, PgOff, PhysAddr, PAGE_SIZE};

/// Physical base of the test memory (a BAR-like 1 TiB offset in the memfd).
pub const BASE: u64 = 1 << 40;
/// Size of the test memory.
pub const MEM_LEN: u64 = 8 << 20;

/// Tests that assert SIGSEGV on an address they unmapped must be alone in
/// this process: any other test's mmap could reuse the hole meanwhile. They
/// take this lock for write; every other test takes it for read.
static ADDRESS_SPACE_USERS: RwLock<()> = RwLock::new(());

pub fn vm_shared() -> RwLockReadGuard<'static, ()> {
    ADDRESS_SPACE_USERS.read().unwrap_or_else(|e| e.into_inner())
}

pub fn vm_exclusive() -> RwLockWriteGuard<'static, ()> {
    ADDRESS_SPACE_USERS.write().unwrap_or_else(|e| e.into_inner())
}

/// What the exporter does on a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Map the page the linear translation gives (`vm_pgoff` is the frame of
    /// `vm_start`, like a device-fd mapping), at the order asked if aligned.
    Linear,
    /// Map the whole VMA around the fault in one window (order 0 only).
    AroundWholeVma,
    /// End every fault in SIGBUS (a revoked exporter).
    Refuse,
    /// Panic inside the fault operation.
    Panic,
    /// Insert the frame after the right one (a translation bug).
    WrongPfn,
    /// Offer a fault-around window that does not contain the fault.
    WindowMissingTheFault,
}

/// Faults an exporter serves before it gives up with SIGBUS: a regression
/// that refaults forever then shows up as SIGBUS instead of a hung test.
pub const FAULT_BUDGET: u64 = 1 << 16;

/// A gate that holds each fault inside the exporter until the test lets it
/// go: `entered` gets a message per fault, then the fault waits on `go`.
#[derive(Debug)]
pub struct Gate {
    pub entered: Mutex<Sender<()>>,
    pub go: Mutex<Receiver<()>>,
}

/// The exporter of the tests.
#[derive(Debug)]
pub struct Exporter {
    pub mode: Mutex<Mode>,
    pub calls: AtomicU64,
    pub gate: Option<Gate>,
}

impl Exporter {
    pub fn new(mode: Mode) -> Arc<Self> {
        Arc::new(Self { mode: Mutex::new(mode), calls: AtomicU64::new(0), gate: None })
    }

    pub fn gated(mode: Mode, entered: Sender<()>, go: Receiver<()>) -> Arc<Self> {
        let gate = Gate { entered: Mutex::new(entered), go: Mutex::new(go) };
        Arc::new(Self { mode: Mutex::new(mode), calls: AtomicU64::new(0), gate: Some(gate) })
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

/// The frame a linear mapping puts at `va`.
fn linear_pfn(vmf: &VmFault<'_>, va: page::VirtAddr) -> Pfn {
    Pfn(vmf.vm_pgoff().0 + (va.0 - vmf.vm_start().0) / PAGE_SIZE)
}

impl VmOperations for Exporter {
    fn huge_fault(&self, vmf: &mut VmFault<'_>, order: u32) -> VmFaultResult {
        if self.calls.fetch_add(1, Ordering::SeqCst) >= FAULT_BUDGET {
            return vmf.sigbus();
        }
        if let Some(gate) = &self.gate {
            let _ = gate.entered.lock().unwrap().send(());
            let _ = gate.go.lock().unwrap().recv();
        }
        let mode = *self.mode.lock().unwrap();
        let size = PAGE_SIZE << order;
        let page_va = vmf.address().align_down(size);
        match mode {
            Mode::Linear => {
                let pfn = linear_pfn(vmf, page_va);
                if !pfn.is_aligned_to_order(order) {
                    return VmFaultResult::FALLBACK;
                }
                vmf.insert_pfn(pfn, order)
            }
            Mode::AroundWholeVma if order == 0 => {
                let start = vmf.vm_start();
                let window = PfnWindow { start, len: vmf.vm_end().0 - start.0, pfn: linear_pfn(vmf, start) };
                vmf.insert_pfn_around(window, 0)
            }
            Mode::AroundWholeVma => VmFaultResult::FALLBACK,
            Mode::Refuse => vmf.sigbus(),
            Mode::Panic => panic!("test exporter panics inside huge_fault on purpose"),
            Mode::WrongPfn => {
                let pfn = linear_pfn(vmf, page_va);
                vmf.insert_pfn(Pfn(pfn.0 + (1 << order)), order)
            }
            Mode::WindowMissingTheFault => {
                let here = vmf.address().page_down();
                let start = if here == vmf.vm_start() { page::VirtAddr(here.0 + PAGE_SIZE) } else { vmf.vm_start() };
                let window = PfnWindow { start, len: PAGE_SIZE, pfn: linear_pfn(vmf, start) };
                vmf.insert_pfn_around(window, 0)
            }
        }
    }
}

/// The test memory, each 8-byte word holding its own physical address.
pub fn memory() -> Arc<PhysMemory> {
    memory_in_frames(mm::frames::DEFAULT_FRAME_SIZE)
}

/// [`memory`] held in frames of `frame_size`.
pub fn memory_in_frames(frame_size: u64) -> Arc<PhysMemory> {
    let mem = Arc::new(PhysMemory::with_frames("mm-test", PhysAddr(BASE), MEM_LEN, frame_size).unwrap());
    let words: Vec<u8> = (0..MEM_LEN / 8).flat_map(|i| (BASE + i * 8).to_ne_bytes()).collect();
    mem.write(PhysAddr(BASE), &words).unwrap();
    mem
}

/// The word the pattern of [`memory`] holds at physical address `paddr`.
pub fn word_at(paddr: u64) -> u64 {
    paddr & !7
}

/// Maps `len` bytes of `mem` from `BASE + offset`, device-fd style.
pub fn map(aspace: &AddressSpace, mem: &Arc<PhysMemory>, ops: Arc<Exporter>, offset: u64, len: u64) -> u64 {
    let mapping = aspace.new_mapping();
    let va = aspace
        .mmap(MapRequest {
            mapping,
            len,
            vm_pgoff: PgOff((BASE + offset) / PAGE_SIZE),
            writable: true,
            pieces: vec![MapPiece { memory: mem.clone(), paddr: PhysAddr(BASE + offset), len }],
            ops,
            path: "/test:mm".into(),
            inode: 7,
            addr: None,
            mmio: None,
        })
        .unwrap();
    va.0
}

/// An address space with one mapping of `len` bytes from `BASE + offset`.
pub fn setup(mode: Mode, len: u64, offset: u64) -> (AddressSpace, Arc<PhysMemory>, Arc<Exporter>, u64) {
    let aspace = AddressSpace::new().expect("userfaultfd with MINOR_SHMEM and POISON");
    let mem = memory();
    let ops = Exporter::new(mode);
    let va = map(&aspace, &mem, ops.clone(), offset, len);
    (aspace, mem, ops, va)
}
