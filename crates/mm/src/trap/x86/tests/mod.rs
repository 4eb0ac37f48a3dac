//! Tests of the x86-64 emulation, from real encodings (each written next
//! to its assembly, as GNU `as` encodes it).
//!
//! The fixture is a four-page window of fake memory: page 0 ordinary,
//! pages 1–2 a device, page 3 ordinary. Every access the emulator makes is
//! logged, so a test states exactly which device accesses an instruction
//! made.

mod alloc;
mod alu;
mod flags;
mod forms;
mod hostile;
mod mov;
mod sse;
mod string;

use super::{X86Decoder, X86Regs};
use crate::probe::{AccessFault, Width, SEGV_MAPERR};
use crate::trap::{DeviceAccess, Reason, Resume, Trap, TrapDecoder, TrapError};

/// Start of the window (ordinary page).
pub(super) const WINDOW: u64 = 0x7f00_0000_0000;
/// First device page.
pub(super) const DEV: u64 = WINDOW + 0x1000;
/// The ordinary page after the device pages.
pub(super) const RAM: u64 = WINDOW + 0x3000;
/// Where the instruction under test sits.
pub(super) const RIP: u64 = 0x40_1000;

/// One access the emulator made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    Read { addr: u64, size: usize, value: u64 },
    Write { addr: u64, size: usize, value: u64 },
}

/// Fake memory: ordinary and device pages, an access log, and addresses
/// at which an access faults as a revoked page does.
#[derive(Debug)]
pub(super) struct FakeBus {
    pub bytes: Vec<u8>,
    pub log: Vec<Access>,
    /// A read whose first byte is here raises SIGBUS.
    pub fault_read_at: Option<u64>,
    /// A write whose first byte is here raises SIGBUS.
    pub fault_write_at: Option<u64>,
}

pub(super) fn sigbus(addr: u64) -> AccessFault {
    AccessFault { signo: libc::SIGBUS, code: libc::BUS_ADRERR, addr }
}

impl FakeBus {
    pub fn new() -> FakeBus {
        // Room for the longest test's log, so logging never allocates.
        FakeBus { bytes: vec![0; 0x4000], log: Vec::with_capacity(4096), fault_read_at: None, fault_write_at: None }
    }

    fn offset(addr: u64, size: usize) -> Result<usize, AccessFault> {
        let off = addr.wrapping_sub(WINDOW);
        if off.checked_add(size as u64).is_some_and(|end| end <= 0x4000) {
            Ok(off as usize)
        } else {
            Err(AccessFault { signo: libc::SIGSEGV, code: SEGV_MAPERR, addr })
        }
    }

    /// Stores `value` (little-endian, `size` bytes) without logging.
    pub fn poke(&mut self, addr: u64, size: usize, value: u128) {
        let off = addr as usize - WINDOW as usize;
        self.bytes[off..off + size].copy_from_slice(&value.to_le_bytes()[..size]);
    }

    /// Loads `size` bytes without logging.
    pub fn peek(&self, addr: u64, size: usize) -> u128 {
        let off = addr as usize - WINDOW as usize;
        let mut buf = [0u8; 16];
        buf[..size].copy_from_slice(&self.bytes[off..off + size]);
        u128::from_le_bytes(buf)
    }

    /// The logged accesses that touched a device page.
    pub fn device_log(&self) -> Vec<Access> {
        self.log
            .iter()
            .copied()
            .filter(|a| match *a {
                Access::Read { addr, .. } | Access::Write { addr, .. } => self.is_device(addr),
            })
            .collect()
    }
}

impl DeviceAccess for FakeBus {
    fn is_device(&self, addr: u64) -> bool {
        (DEV..DEV + 0x2000).contains(&addr)
    }

    fn read(&mut self, addr: u64, width: Width) -> Result<u64, AccessFault> {
        if self.fault_read_at == Some(addr) {
            return Err(sigbus(addr));
        }
        let size = width.bytes();
        FakeBus::offset(addr, size)?;
        let value = self.peek(addr, size) as u64;
        self.log.push(Access::Read { addr, size, value });
        Ok(value)
    }

    fn write(&mut self, addr: u64, width: Width, value: u64) -> Result<(), AccessFault> {
        if self.fault_write_at == Some(addr) {
            return Err(sigbus(addr));
        }
        let size = width.bytes();
        FakeBus::offset(addr, size)?;
        self.poke(addr, size, u128::from(value));
        self.log.push(Access::Write { addr, size, value });
        Ok(())
    }
}

/// Registers with `rip` at [`RIP`], `rdi` on the device, `rsi` in
/// ordinary memory, and recognisable values elsewhere.
pub(super) fn regs() -> X86Regs {
    let mut regs = X86Regs { rip: RIP, rflags: 0x202, ..X86Regs::default() };
    for (i, r) in regs.gpr.iter_mut().enumerate() {
        // Distinct per register and per byte, so that al and ah differ.
        *r = ((i as u64) << 60) | 0x0877_6655_4433_2200 | (i as u64 + 1);
    }
    regs.gpr[super::gpr::RDI] = DEV + 0x100;
    regs.gpr[super::gpr::RSI] = RAM + 0x100;
    for (i, x) in regs.xmm.iter_mut().enumerate() {
        *x = 0x0101_0101_0101_0101_0101_0101_0101_0101 * (i as u128 + 1);
    }
    regs.ymm_hi = [u128::MAX; 16];
    regs
}

/// Emulates `insn` faulting at `fault_addr`.
pub(super) fn run(insn: &[u8], regs: &mut X86Regs, fault_addr: u64, bus: &mut FakeBus) -> Result<Resume, TrapError> {
    X86Decoder::new().emulate(regs, Trap { fault_addr, insn }, bus)
}

/// Emulates `insn`, expecting success; returns the registers after.
#[track_caller]
pub(super) fn run_ok(insn: &[u8], mut regs: X86Regs, fault_addr: u64, bus: &mut FakeBus) -> X86Regs {
    let before = regs.rip;
    match run(insn, &mut regs, fault_addr, bus) {
        Ok(resume) => {
            assert_eq!(resume.rip, regs.rip);
            assert_eq!(regs.rip, before + insn.len() as u64, "resumes after the instruction");
            regs
        }
        Err(e) => panic!("{insn:02x?} was not emulated: {e:?}"),
    }
}

/// Emulates `insn`, expecting a refusal for `reason`, with no access made
/// and the registers untouched.
#[track_caller]
pub(super) fn assert_refused(insn: &[u8], mut regs: X86Regs, fault_addr: u64, reason: Reason) {
    let mut bus = FakeBus::new();
    let before = regs;
    match run(insn, &mut regs, fault_addr, &mut bus) {
        Err(TrapError::Unsupported(d)) => {
            assert_eq!(d.reason, reason, "{d}");
            assert_eq!(d.ip, before.rip);
            assert_eq!(d.fault_addr, fault_addr);
        }
        other => panic!("{insn:02x?}: expected a refusal, got {other:?}"),
    }
    assert_eq!(bus.log, vec![], "a refused instruction made no access");
    assert_eq!(regs, before, "a refused instruction changed no register");
}
