//! QEMU's edu teaching device (`hw/misc/edu.c`, `docs/specs/edu.rst`): the registers of its
//! 1 MiB BAR0.
//!
//! Register map (all 32-bit unless noted; offsets within BAR0):
//!
//! | offset | register | behaviour |
//! |---|---|---|
//! | 0x00 | ID | reads [`EDU_ID_MAGIC`]; writes ignored |
//! | 0x04 | liveness | a write of `v` makes it read `!v` |
//! | 0x08 | factorial | a write of `n` (ignored while computing) starts computing `n!` modulo 2^32 |
//! | 0x20 | status | bit 0 computing (read-only); bit 7 raise interrupt 0x1 when a factorial completes |
//! | 0x24 | interrupt status | pending interrupt bits (read-only) |
//! | 0x60 | interrupt raise | write-only: ORs the value into the interrupt status |
//! | 0x64 | interrupt acknowledge | write-only: clears the value's bits from the interrupt status |
//! | 0x80, 0x88, 0x90 | DMA source, destination, count | 64-bit; writes ignored while a transfer runs |
//! | 0x98 | DMA command | 64-bit; bit 0 start/running, bit 1 direction, bit 2 raise 0x100 when done |
//!
//! Access widths as QEMU delivers them: 4 and 8 bytes are accepted, 1 and 2 read zero and drop
//! writes. Below 0x80 only 4-byte accesses act (an aligned 8-byte one reads all-ones and writes
//! nothing); from 0x80 on, a 4-byte access reads the low half of a DMA register or stores the
//! zero-extended value. Every other offset, write-only registers included, reads all-ones.
//!
//! Interrupts, as QEMU's edu sends them through its function's [`IrqLine`]: a raise (a write of
//! 0x60, a completed factorial with bit 7 set, a completed transfer with command bit 2 set) that
//! leaves the interrupt status non-zero asserts `INTA#`, or, while MSI is on, sends the message
//! of vector 0 every time; an acknowledge that leaves it zero deasserts the pin (and sends
//! nothing under MSI). The function declares pin A and an MSI capability of one vector with a
//! 64-bit address ([`EDU_INTERRUPTS`]).
//!
//! DMA: a command write with bit 0 starts a transfer between the 4 KiB buffer at device address
//! [`EDU_DMA_START`] and bus memory, reached through the function's [`BusMaster`]; the engine
//! (see `edu_dma`) moves the bytes on a thread of its own, then clears bit 0 and raises 0x100 if
//! bit 2 asks for it. Bus addresses keep only the bits of [`EDU_DMA_MASK`], as QEMU's default
//! `dma_mask` does. Registers not attached to a function (see [`RegisterBar::attach`]) have no
//! engine: a started transfer then stays in flight.
//!
//! Deviation: a factorial completes within the write that starts it (QEMU computes it on a
//! worker thread, so a driver polls the computing bit and may find it already clear, as here).
//!
//! Reset: QEMU's edu has no reset handler, so a PCI reset leaves every register here as it was
//! (the function deasserts the pin; the interrupt status stays, and a transfer in flight still
//! completes).

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::mmio::{self, AccessRules, Block, BlockMap};
use crate::dma::BusMaster;
use crate::irq::{InterruptSpec, IrqLine, MsiSpec};
use crate::spec::RegisterBar;

/// Size of edu's register BAR0.
pub const EDU_BAR0_SIZE: u64 = 1 << 20;

/// edu register: identification, read-only, reads [`EDU_ID_MAGIC`].
pub const EDU_REG_ID: u64 = 0x00;
/// edu register: liveness check; reads back the bitwise inverse of the last value written.
pub const EDU_REG_LIVENESS: u64 = 0x04;
/// edu register: factorial input and result.
pub const EDU_REG_FACTORIAL: u64 = 0x08;
/// edu register: status ([`EDU_STATUS_COMPUTING`], [`EDU_STATUS_IRQFACT`]).
pub const EDU_REG_STATUS: u64 = 0x20;
/// edu register: interrupt status, the pending interrupt bits.
pub const EDU_REG_IRQ_STATUS: u64 = 0x24;
/// edu register: interrupt raise (write-only).
pub const EDU_REG_IRQ_RAISE: u64 = 0x60;
/// edu register: interrupt acknowledge (write-only).
pub const EDU_REG_IRQ_ACK: u64 = 0x64;
/// edu register: DMA source address (64-bit).
pub const EDU_REG_DMA_SRC: u64 = 0x80;
/// edu register: DMA destination address (64-bit).
pub const EDU_REG_DMA_DST: u64 = 0x88;
/// edu register: DMA transfer count in bytes (64-bit).
pub const EDU_REG_DMA_CNT: u64 = 0x90;
/// edu register: DMA command (64-bit).
pub const EDU_REG_DMA_CMD: u64 = 0x98;

/// Value of [`EDU_REG_ID`]: major version 1, minor 0, and `0xed`.
pub const EDU_ID_MAGIC: u32 = 0x0100_00ed;
/// Status bit 0: a factorial is being computed (read-only).
pub const EDU_STATUS_COMPUTING: u32 = 0x01;
/// Status bit 7: raise [`EDU_IRQ_FACTORIAL`] when a factorial completes.
pub const EDU_STATUS_IRQFACT: u32 = 0x80;
/// Interrupt status bit of a completed factorial.
pub const EDU_IRQ_FACTORIAL: u32 = 0x001;
/// Interrupt status bit of a completed DMA transfer.
pub const EDU_IRQ_DMA: u32 = 0x100;
/// DMA command bit 0: start; reads set while the transfer runs.
pub const EDU_DMA_RUN: u64 = 0x1;
/// DMA command bit 1: direction, set for device to RAM.
pub const EDU_DMA_DIR_TO_RAM: u64 = 0x2;
/// DMA command bit 2: raise [`EDU_IRQ_DMA`] when the transfer completes.
pub const EDU_DMA_IRQ: u64 = 0x4;

/// Device address of the DMA buffer (QEMU's `DMA_START`).
pub const EDU_DMA_START: u64 = 0x4_0000;
/// Size of the DMA buffer (QEMU's `DMA_SIZE`).
pub const EDU_DMA_SIZE: usize = 4096;
/// The bus-address bits a transfer keeps: QEMU's default `dma_mask` (28 bits); higher bits are
/// dropped, with a log line, not refused.
pub const EDU_DMA_MASK: u64 = 0x0fff_ffff;

/// How edu interrupts: `INTA#`, and an MSI capability of one vector with a 64-bit address and
/// no per-vector masking.
pub const EDU_INTERRUPTS: InterruptSpec =
    InterruptSpec { pin: 1, msi: Some(MsiSpec { vectors: 1, is_64bit: true, per_vector_mask: false }), msix: None };

/// Registers below this offset act only on 4-byte accesses; the DMA registers start here.
const DMA_REGS_START: u64 = 0x80;

/// The whole BAR is one block: 4- and 8-byte accesses, handlers of the same widths.
const BLOCKS: &[Block] = &[Block {
    start: 0,
    len: EDU_BAR0_SIZE,
    rules: AccessRules { valid_min: 4, valid_max: 8, impl_min: 4, impl_max: 8 },
}];

/// The DMA registers: a transfer's parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EduDma {
    /// Source address ([`EDU_REG_DMA_SRC`]).
    pub src: u64,
    /// Destination address ([`EDU_REG_DMA_DST`]).
    pub dst: u64,
    /// Byte count ([`EDU_REG_DMA_CNT`]).
    pub cnt: u64,
    /// Command ([`EDU_REG_DMA_CMD`]).
    pub cmd: u64,
}

/// The register state; every register starts at zero.
pub(crate) struct EduState {
    /// What the liveness register reads: the inverse of the last value written.
    liveness: u32,
    /// The factorial input while computing, the result afterwards.
    fact: u32,
    /// The status register.
    status: u32,
    /// The pending interrupt bits.
    irq_status: u32,
    /// The DMA registers.
    pub(super) dma: EduDma,
    /// Leave a started factorial computing until [`EduRegisters::finish_factorial`] (tests only:
    /// it makes the computing window of QEMU's worker thread observable).
    defer_factorial: bool,
    /// The DMA buffer at [`EDU_DMA_START`]; not visible through BAR0. Never cleared.
    pub(super) buffer: Box<[u8; EDU_DMA_SIZE]>,
    /// The function's interrupt line, once attached.
    irq: Option<Arc<IrqLine>>,
    /// The function's bus-master port, once attached.
    pub(super) bus: Option<Arc<BusMaster>>,
    /// Whether the DMA engine thread runs (started by the first attach).
    engine: bool,
    /// The registers are gone: the engine stops.
    pub(super) closed: bool,
}

impl Default for EduState {
    fn default() -> Self {
        Self {
            liveness: 0,
            fact: 0,
            status: 0,
            irq_status: 0,
            dma: EduDma::default(),
            defer_factorial: false,
            buffer: Box::new([0; EDU_DMA_SIZE]),
            irq: None,
            bus: None,
            engine: false,
            closed: false,
        }
    }
}

impl fmt::Debug for EduState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EduState")
            .field("liveness", &self.liveness)
            .field("fact", &self.fact)
            .field("status", &self.status)
            .field("irq_status", &self.irq_status)
            .field("dma", &self.dma)
            .field("attached", &self.irq.is_some())
            .finish_non_exhaustive()
    }
}

/// `n!` modulo 2^32. From 34! on the product holds 2^32 as a factor, so it is 0.
fn factorial(n: u32) -> u32 {
    if n >= 34 {
        return 0;
    }
    (2..=n).fold(1_u32, u32::wrapping_mul)
}

impl EduState {
    /// QEMU's `edu_raise_irq`: set the bits, then, if any bit is pending, send the MSI message
    /// (every time) or assert the pin (a level: asserting it again changes nothing).
    fn raise_irq(&mut self, bits: u32) {
        self.irq_status |= bits;
        if self.irq_status == 0 {
            return;
        }
        if let Some(irq) = &self.irq {
            if irq.msi_enabled() {
                irq.msi_notify(0);
            } else {
                irq.set_intx(true);
            }
        }
    }

    /// QEMU's `edu_lower_irq`: clear the bits, then deassert the pin once nothing is pending;
    /// under MSI an acknowledge sends nothing and leaves the pin alone.
    fn lower_irq(&mut self, bits: u32) {
        self.irq_status &= !bits;
        if self.irq_status != 0 {
            return;
        }
        if let Some(irq) = &self.irq {
            if !irq.msi_enabled() {
                irq.set_intx(false);
            }
        }
    }

    /// Ends the transfer in flight, as the engine does once the bytes have moved: clears the
    /// running bit (the other command bits stay) and raises [`EDU_IRQ_DMA`] if the command asked
    /// for it. Without a transfer in flight nothing happens.
    pub(super) fn complete_dma(&mut self) {
        if self.dma.cmd & EDU_DMA_RUN == 0 {
            return;
        }
        self.dma.cmd &= !EDU_DMA_RUN;
        if self.dma.cmd & EDU_DMA_IRQ != 0 {
            self.raise_irq(EDU_IRQ_DMA);
        }
    }

    fn finish_factorial(&mut self) {
        if self.status & EDU_STATUS_COMPUTING == 0 {
            return;
        }
        self.fact = factorial(self.fact);
        self.status &= !EDU_STATUS_COMPUTING;
        if self.status & EDU_STATUS_IRQFACT != 0 {
            self.raise_irq(EDU_IRQ_FACTORIAL);
        }
    }

    /// Stores a DMA register, unless a transfer runs (its parameters are then fixed).
    fn dma_write(&mut self, offset: u64, value: u64) {
        if self.dma.cmd & EDU_DMA_RUN != 0 {
            return;
        }
        match offset {
            EDU_REG_DMA_SRC => self.dma.src = value,
            EDU_REG_DMA_DST => self.dma.dst = value,
            EDU_REG_DMA_CNT => self.dma.cnt = value,
            // A command without the start bit is ignored, so it cannot clear a command either.
            EDU_REG_DMA_CMD if value & EDU_DMA_RUN != 0 => self.dma.cmd = value,
            _ => {}
        }
    }
}

impl BlockMap for EduState {
    fn bar_len(&self) -> u64 {
        EDU_BAR0_SIZE
    }

    fn blocks(&self) -> &'static [Block] {
        BLOCKS
    }

    fn block_read(&mut self, _block: usize, offset: u64, size: u64) -> u64 {
        if offset < DMA_REGS_START && size != 4 {
            return u64::MAX;
        }
        match offset {
            EDU_REG_ID => u64::from(EDU_ID_MAGIC),
            EDU_REG_LIVENESS => u64::from(self.liveness),
            EDU_REG_FACTORIAL => u64::from(self.fact),
            EDU_REG_STATUS => u64::from(self.status),
            EDU_REG_IRQ_STATUS => u64::from(self.irq_status),
            EDU_REG_DMA_SRC => self.dma.src,
            EDU_REG_DMA_DST => self.dma.dst,
            EDU_REG_DMA_CNT => self.dma.cnt,
            EDU_REG_DMA_CMD => self.dma.cmd,
            _ => u64::MAX,
        }
    }

    fn block_write(&mut self, _block: usize, offset: u64, size: u64, value: u64) {
        if offset < DMA_REGS_START && size != 4 {
            return;
        }
        // The 32-bit registers keep the low half of what is written.
        let value32 = value as u32;
        match offset {
            EDU_REG_LIVENESS => self.liveness = !value32,
            EDU_REG_FACTORIAL => {
                if self.status & EDU_STATUS_COMPUTING != 0 {
                    return;
                }
                self.fact = value32;
                self.status |= EDU_STATUS_COMPUTING;
                if !self.defer_factorial {
                    self.finish_factorial();
                }
            }
            EDU_REG_STATUS => {
                // Only IRQFACT is writable: set when the value has it, cleared when not.
                if value32 & EDU_STATUS_IRQFACT != 0 {
                    self.status |= EDU_STATUS_IRQFACT;
                } else {
                    self.status &= !EDU_STATUS_IRQFACT;
                }
            }
            EDU_REG_IRQ_RAISE => self.raise_irq(value32),
            EDU_REG_IRQ_ACK => self.lower_irq(value32),
            EDU_REG_DMA_SRC | EDU_REG_DMA_DST | EDU_REG_DMA_CNT | EDU_REG_DMA_CMD => self.dma_write(offset, value),
            _ => {}
        }
    }
}

/// What the registers and their DMA engine share.
pub(super) struct EduShared {
    /// Protected by: itself; each access holds it throughout, so accesses are atomic. Lock
    /// order: the device layer's locks (a BAR access holds `memory_lock` for read) → this → the
    /// interrupt line → the line's sink. The engine drops it around every bus transfer.
    state: Mutex<EduState>,
    /// Wakes the engine: a transfer started, or the registers are gone.
    pub(super) kick: Condvar,
}

impl EduShared {
    /// Locks the state. Each access leaves it consistent before it could panic, so a poisoned
    /// lock still guards valid registers.
    pub(super) fn lock(&self) -> MutexGuard<'_, EduState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The edu register file behind BAR0, as QEMU defines it (see the module documentation).
pub struct EduRegisters {
    /// The state, shared with the DMA engine thread once attached.
    shared: Arc<EduShared>,
}

impl EduRegisters {
    /// The registers at power-on: every stored register zero, so liveness reads 0; not attached
    /// to a function yet.
    #[must_use]
    pub fn new() -> Self {
        Self::with_state(EduState::default())
    }

    fn with_state(state: EduState) -> Self {
        Self { shared: Arc::new(EduShared { state: Mutex::new(state), kick: Condvar::new() }) }
    }

    fn lock_map(&self) -> MutexGuard<'_, EduState> {
        self.shared.lock()
    }

    /// The transfer in flight (command bit 0 set), if any.
    #[must_use]
    pub fn pending_dma(&self) -> Option<EduDma> {
        let state = self.lock_map();
        (state.dma.cmd & EDU_DMA_RUN != 0).then_some(state.dma)
    }

    /// A copy of the 4 KiB DMA buffer (it is not visible through BAR0).
    #[must_use]
    pub fn dma_buffer(&self) -> Box<[u8; EDU_DMA_SIZE]> {
        self.lock_map().buffer.clone()
    }

    /// Registers whose factorial stays computing until [`Self::finish_factorial`].
    #[cfg(test)]
    fn with_deferred_factorial() -> Self {
        Self::with_state(EduState { defer_factorial: true, ..EduState::default() })
    }

    /// Completes a deferred factorial.
    #[cfg(test)]
    fn finish_factorial(&self) {
        self.lock_map().finish_factorial();
    }
}

impl Default for EduRegisters {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for EduRegisters {
    /// Stops the engine; a transfer it is moving still completes first.
    fn drop(&mut self) {
        self.lock_map().closed = true;
        self.shared.kick.notify_all();
    }
}

impl fmt::Debug for EduRegisters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EduRegisters").field("state", &*self.lock_map()).finish()
    }
}

/// Accesses go through the block map (see `mmio`); reset keeps every register, since QEMU's edu
/// registers no reset handler (a running factorial or transfer, pending interrupt bits, all stay).
impl RegisterBar for EduRegisters {
    fn read(&self, offset: u64, data: &mut [u8]) {
        mmio::read(&mut *self.lock_map(), offset, data);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let mut state = self.lock_map();
        mmio::write(&mut *state, offset, data);
        // Cheap when nothing waits; the engine re-checks the command bit anyway.
        if state.dma.cmd & EDU_DMA_RUN != 0 {
            self.shared.kick.notify_one();
        }
    }

    /// Wires the registers to the function and starts the DMA engine (once).
    fn attach(&self, irq: &Arc<IrqLine>, dma: &Arc<BusMaster>) {
        let mut state = self.lock_map();
        state.irq = Some(Arc::clone(irq));
        state.bus = Some(Arc::clone(dma));
        if !state.engine {
            state.engine = super::edu_dma::spawn(&self.shared);
        }
        // A transfer started before the attach is moved now.
        self.shared.kick.notify_one();
    }
}

#[cfg(test)]
#[path = "edu_tests.rs"]
mod tests;
