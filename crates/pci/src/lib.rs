#![forbid(unsafe_code)]
//! The emulated PCI function model.
//!
//! What it is: a PCI Express endpoint as software sees it through config space. A
//! [`DeviceSpec`] describes a device (IDs, class, up to six memory BARs, its interrupts);
//! [`PciFunction`] is a live function at a [`Bdf`], with a 4 KiB type-0 config space whose
//! registers are virtualised: COMMAND, BAR size probing, a power-management capability
//! (D0..D3hot in PMCSR), a PCI Express capability offering function-level reset, and the
//! interrupt pin and MSI/MSI-X capabilities the device declares. A function's model raises
//! interrupts on its [`IrqLine`] and masters the bus through its [`BusMaster`]; what lies
//! beyond them (an interrupt controller, IOMMU mappings) plugs in as an [`InterruptSink`] and a
//! [`DmaPort`]. [`catalogue`] holds ready-made devices,
//! among them edu-plus, the device the series' standalone test uses, and QEMU's edu and
//! bochs-display with their register semantics; [`regs`] names the registers.
//!
//! What it is not: it holds no BAR memory (a RAM BAR is only described; its bytes live in
//! memory-backed storage provided by another layer) and it does not decide what happens to
//! mappings. It reports the events that matter to them instead: [`ConfigWriteEffect`] says
//! whether a config write turns memory decoding off, enters D3hot or resets the function, and
//! [`PciFunction::memory_enabled`] says whether BARs decode now. It is pure Rust: no `unsafe`,
//! no syscalls; the function itself has no locking of its own (the owner serialises access),
//! while device models lock their own registers and edu runs its DMA engine on a thread.
//!
//! What it mirrors: the register layout and names of Linux's `include/uapi/linux/pci_regs.h`;
//! `pci_reset_function()` and the power states of `drivers/pci/pci.c`; the per-byte write masks
//! of QEMU's `hw/pci/pci.c`; the edu and bochs-display devices of QEMU's `hw/misc/edu.c` and
//! `hw/display/bochs-display.c`, and how QEMU's memory core delivers accesses of each width to
//! them.
//!
//! # Examples
//!
//! ```
//! use pci::{catalogue, regs, Bdf, PciFunction};
//!
//! let mut function = PciFunction::new(Bdf::new(0, 0, 3, 0)?, catalogue::edu_plus())?;
//!
//! // Size BAR1 (64 MiB, 64-bit, prefetchable) the way firmware does.
//! function.config_write(regs::base_address(1), &u32::MAX.to_le_bytes())?;
//! let mut low = [0; 4];
//! function.config_read(regs::base_address(1), &mut low)?;
//! assert_eq!(u32::from_le_bytes(low), 0xfc00_000c);
//! # Ok::<(), pci::PciError>(())
//! ```

mod bdf;
pub mod catalogue;
mod config;
mod dma;
mod error;
mod function;
mod irq;
mod power;
pub mod regs;
mod spec;

pub use bdf::Bdf;
pub use dma::{BusMaster, DmaError, DmaPort};
pub use error::PciError;
pub use function::{ConfigWriteEffect, PciFunction};
pub use irq::{InterruptSink, InterruptSpec, IrqLine, MsiSpec, MsixSpec};
pub use power::PowerState;
pub use spec::{BarBacking, BarSpec, DeviceSpec, RegisterBar, MAX_BAR32_SIZE, MAX_BAR_SIZE, MIN_BAR_SIZE, NUM_BARS};
