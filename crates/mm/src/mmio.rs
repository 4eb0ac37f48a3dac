//! The exporter's side of a trapping mapping: what an access to a register
//! page is emulated against.
//!
//! A VMA whose [`MapRequest`](crate::MapRequest) carries a [`VmMmio`] never
//! has a readable page: its faults end in SIGBUS (the exporter's
//! `huge_fault` poisons every page), and the process-wide signal handler
//! emulates the instruction that trapped, calling back here for each
//! device access (see [`crate::trap`] for the decode step and
//! `probe::emulate` for the handler). Analogous to what a hypervisor's MMIO
//! exit path is to a device model: the access arrives with its address and
//! width, and the device answers it.

use std::fmt;

use page::{PgOff, VirtAddr};

use crate::probe::Width;

/// Where one emulated device access lands: the address and the geometry of
/// the VMA holding it (as splits left it), which is all the exporter needs
/// to translate it, exactly as a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioAddr {
    /// The accessed address (aligned to the access width, inside one page).
    pub addr: VirtAddr,
    /// `vm_start` of the VMA holding `addr`.
    pub vm_start: VirtAddr,
    /// `vm_pgoff` of that VMA.
    pub vm_pgoff: PgOff,
}

/// The device is not there for this access (revoked, memory decoding off,
/// or an address the exporter cannot translate): the program gets SIGBUS
/// `BUS_ADRERR`, as a fault of the same page would give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioRevoked;

/// The registers of one trapping mapping while the exporter holds them.
pub trait MmioRegs {
    /// Reads `width` bytes of the device at `at` (little-endian in the low
    /// bits of the result).
    ///
    /// # Errors
    ///
    /// [`MmioRevoked`] when `at` does not translate.
    fn read(&self, at: MmioAddr, width: Width) -> Result<u64, MmioRevoked>;

    /// Writes the low `width` bytes of `value` to the device at `at`.
    ///
    /// # Errors
    ///
    /// As [`MmioRegs::read`].
    fn write(&self, at: MmioAddr, width: Width, value: u64) -> Result<(), MmioRevoked>;
}

/// The MMIO operations of a trapping VMA (the trap-and-emulate counterpart
/// of [`VmOperations`](crate::VmOperations)).
///
/// Called from the SIGBUS handler, in the thread that made the access,
/// synchronously: the interrupted code is that access itself, so the locks
/// an implementation takes are the ones a fault of the same mapping takes
/// (and the same rule applies: do not touch a mapping while holding the
/// exporter's locks). It must not allocate on its normal path and must not
/// panic (a panic cannot unwind out of a signal handler).
pub trait VmMmio: Send + Sync + fmt::Debug {
    /// Checks that the device may be accessed through this mapping, takes
    /// the locks that keep it so, runs `access` once with the registers, and
    /// releases them: every device access of one instruction happens under
    /// one hold, so a revoke cannot fall between the read and the write of
    /// a read-modify-write.
    ///
    /// # Errors
    ///
    /// [`MmioRevoked`] (and `access` not run) when the mapping is revoked or
    /// the device does not decode memory.
    fn with_registers(&self, access: &mut dyn FnMut(&dyn MmioRegs)) -> Result<(), MmioRevoked>;
}
