//! A function's interrupts: what it declares in config space (the `INTx` pin, an MSI and an MSI-X
//! capability) and the line through which its model raises them.
//!
//! The device model speaks QEMU's device-side vocabulary on an [`IrqLine`]: it sets the level of
//! its `INTx` pin ([`IrqLine::set_intx`], QEMU's `pci_set_irq`), sends an MSI message
//! ([`IrqLine::msi_notify`]) and asks whether message signalling is on
//! ([`IrqLine::msi_enabled`]). The line mirrors the pin's level into STATUS.INTERRUPT and passes
//! every level change and message on to an [`InterruptSink`], the platform's interrupt
//! controller: in this project the VFIO layer, which turns them into eventfd signals the way
//! `vfio_pci_intrs.c` does for a real device's interrupt handler.
//!
//! Whether MSI is on is the sink's answer, not the MSI capability's Enable bit: with VFIO, the
//! capability a user reads and writes is virtual, and the function sends messages exactly when
//! the host side enabled them (`VFIO_DEVICE_SET_IRQS` on the MSI or MSI-X index).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::PciError;
use crate::function::PciFunction;
use crate::regs;
use crate::spec::BarSpec;

/// An MSI capability, as the function declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiSpec {
    /// Vectors the function can send (Multiple Message Capable): a power of two, 1 to 32.
    pub vectors: u8,
    /// Whether the message address is 64-bit.
    pub is_64bit: bool,
    /// Whether the capability has per-vector mask and pending bits.
    pub per_vector_mask: bool,
}

/// An MSI-X capability, as the function declares it. Only the capability is modelled: the table
/// and the pending-bit array are the BAR's own bytes, and messages go wherever the sink routes
/// each vector, whatever the table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixSpec {
    /// Table entries, 1 to 2048.
    pub table_size: u16,
    /// BAR holding the table.
    pub table_bar: u8,
    /// Offset of the table in that BAR (8-byte aligned).
    pub table_offset: u32,
    /// BAR holding the pending-bit array.
    pub pba_bar: u8,
    /// Offset of the pending-bit array in that BAR (8-byte aligned).
    pub pba_offset: u32,
}

/// How a function can interrupt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterruptSpec {
    /// Interrupt Pin: 0 for none, 1..=4 for `INTA#`..`INTD#`.
    pub pin: u8,
    /// The MSI capability, if any (placed at [`regs::MSI_CAP`]).
    pub msi: Option<MsiSpec>,
    /// The MSI-X capability, if any (placed at [`regs::MSIX_CAP`]).
    pub msix: Option<MsixSpec>,
}

impl InterruptSpec {
    /// No interrupt at all: pin 0, no capability.
    pub const NONE: Self = Self { pin: 0, msi: None, msix: None };

    /// Checks the description against PCI's limits and the BARs it points into.
    pub(crate) fn validate(&self, bars: &[Option<BarSpec>]) -> Result<(), PciError> {
        let bad = |reason| Err(PciError::InvalidInterrupts { reason });
        if self.pin > 4 {
            return bad("the interrupt pin is above 4 (INTD#)");
        }
        if let Some(msi) = self.msi {
            if !msi.vectors.is_power_of_two() || msi.vectors > 32 {
                return bad("MSI vectors must be a power of two from 1 to 32");
            }
        }
        if let Some(msix) = self.msix {
            if !(1..=2048).contains(&msix.table_size) {
                return bad("the MSI-X table size must be 1 to 2048");
            }
            let fits = |bar: u8, offset: u32, len: u64| {
                offset % 8 == 0
                    && bars
                        .get(usize::from(bar))
                        .and_then(Option::as_ref)
                        .is_some_and(|b| u64::from(offset) + len <= b.size)
            };
            if !fits(msix.table_bar, msix.table_offset, 16 * u64::from(msix.table_size)) {
                return bad("the MSI-X table is unaligned or not inside a described BAR");
            }
            if !fits(msix.pba_bar, msix.pba_offset, u64::from(msix.table_size).div_ceil(64) * 8) {
                return bad("the MSI-X pending-bit array is unaligned or not inside a described BAR");
            }
        }
        Ok(())
    }

    /// Message Control of the MSI capability at reset: capable vectors and the flag bits.
    pub(crate) fn msi_flags(msi: &MsiSpec) -> u16 {
        // trailing_zeros of a power of two up to 32 is at most 5: it fits the 3-bit field.
        let mut flags = (msi.vectors.trailing_zeros() as u16) << 1;
        if msi.is_64bit {
            flags |= regs::MSI_FLAGS_64BIT;
        }
        if msi.per_vector_mask {
            flags |= regs::MSI_FLAGS_MASKBIT;
        }
        flags
    }
}

impl PciFunction {
    /// The config offset of the first capability with ID `id`, walking the list from
    /// `CAPABILITY_LIST`. Analogous to Linux's `pci_find_capability()` (which also bounds the walk,
    /// so a looping list ends).
    #[must_use]
    pub fn find_capability(&self, id: u8) -> Option<u64> {
        let byte = |offset: u64| {
            let mut b = [0];
            self.config_read(offset, &mut b).ok().map(|()| b[0])
        };
        let mut pos = byte(regs::CAPABILITY_LIST)?;
        // 48 entries at most fit between 0x40 and 0x100.
        for _ in 0..48 {
            if pos < 0x40 {
                return None;
            }
            let at = u64::from(pos & !3);
            if byte(at)? == id {
                return Some(at);
            }
            pos = byte(at + 1)?;
        }
        None
    }
}

/// The platform side of a function's interrupts: where level changes and messages go.
///
/// Called with the [`IrqLine`]'s own lock held, so calls arrive in the order the device made
/// them; an implementation must not call back into the line or the device model.
pub trait InterruptSink: Send + Sync + fmt::Debug {
    /// The `INTx` pin changed level (`true`: asserted). Only changes are reported.
    fn set_intx(&self, asserted: bool);
    /// The function sent the message of `vector` (MSI, or MSI-X when that is what is on).
    fn msi_notify(&self, vector: u32);
    /// Whether message signalling (MSI or MSI-X) is on; while it is, the function does not use
    /// its pin.
    fn msi_enabled(&self) -> bool;
}

/// The interrupt line of one function: what its model raises interrupts through.
///
/// Shared between the device model (which raises), the function (STATUS.INTERRUPT shows the
/// pin's level) and whoever installs the sink. Without a sink the pin level is still kept, and
/// messages go nowhere, as on a bus with no interrupt controller.
#[derive(Default)]
pub struct IrqLine {
    /// Protected by: itself. The sink; held while a change is passed on, so the sink sees changes
    /// in order. Lock order: the device model's register lock → this → the sink's locks.
    sink: Mutex<Option<Arc<dyn InterruptSink>>>,
    /// The pin's level; written under `sink`, read locklessly for STATUS (a snapshot).
    asserted: AtomicBool,
}

impl IrqLine {
    /// A line with the pin deasserted and no sink.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs (or, with `None`, removes) the sink. The sink learns nothing of the current pin
    /// level: a line is wired before its device can raise anything.
    pub fn set_sink(&self, sink: Option<Arc<dyn InterruptSink>>) {
        *self.lock() = sink;
    }

    /// Sets the `INTx` pin's level (QEMU's `pci_set_irq`); only a change reaches the sink.
    pub fn set_intx(&self, asserted: bool) {
        let sink = self.lock();
        if self.asserted.swap(asserted, Ordering::Relaxed) == asserted {
            return;
        }
        if let Some(sink) = &*sink {
            sink.set_intx(asserted);
        }
    }

    /// Sends the message of `vector` (QEMU's `msi_notify`).
    pub fn msi_notify(&self, vector: u32) {
        if let Some(sink) = &*self.lock() {
            sink.msi_notify(vector);
        }
    }

    /// Whether message signalling is on (QEMU's `msi_enabled`); `false` without a sink.
    #[must_use]
    pub fn msi_enabled(&self) -> bool {
        self.lock().as_ref().is_some_and(|sink| sink.msi_enabled())
    }

    /// Whether the pin is asserted (what STATUS.INTERRUPT shows).
    #[must_use]
    pub fn intx_asserted(&self) -> bool {
        self.asserted.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<dyn InterruptSink>>> {
        // The guarded value is a plain pointer: always valid, even after a panic elsewhere.
        self.sink.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for IrqLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IrqLine").field("asserted", &self.intx_asserted()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that records what reaches it.
    #[derive(Debug, Default)]
    struct Recorder {
        events: Mutex<Vec<String>>,
        msi: AtomicBool,
    }

    impl InterruptSink for Recorder {
        fn set_intx(&self, asserted: bool) {
            self.events.lock().unwrap().push(format!("intx {asserted}"));
        }
        fn msi_notify(&self, vector: u32) {
            self.events.lock().unwrap().push(format!("msi {vector}"));
        }
        fn msi_enabled(&self) -> bool {
            self.msi.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn only_level_changes_reach_the_sink() {
        let line = IrqLine::new();
        let sink = Arc::new(Recorder::default());
        line.set_sink(Some(sink.clone()));
        line.set_intx(true);
        line.set_intx(true);
        assert!(line.intx_asserted());
        line.set_intx(false);
        line.set_intx(false);
        line.msi_notify(3);
        assert_eq!(*sink.events.lock().unwrap(), ["intx true", "intx false", "msi 3"]);
    }

    #[test]
    fn without_a_sink_the_level_is_kept_and_msi_is_off() {
        let line = IrqLine::new();
        line.set_intx(true);
        line.msi_notify(0);
        assert!(line.intx_asserted());
        assert!(!line.msi_enabled());
        let sink = Arc::new(Recorder::default());
        sink.msi.store(true, Ordering::Relaxed);
        line.set_sink(Some(sink));
        assert!(line.msi_enabled());
    }

    #[test]
    fn interrupt_descriptions_are_checked_against_pci_limits() {
        let bars: Vec<Option<BarSpec>> = vec![Some(BarSpec::ram(0x1000)), None];
        let msi = |vectors| MsiSpec { vectors, is_64bit: true, per_vector_mask: false };
        let msix = |table_size, table_offset| MsixSpec {
            table_size,
            table_bar: 0,
            table_offset,
            pba_bar: 0,
            pba_offset: 0x800,
        };
        let ok = InterruptSpec { pin: 1, msi: Some(msi(32)), msix: Some(msix(64, 0)) };
        ok.validate(&bars).unwrap();
        for bad in [
            InterruptSpec { pin: 5, ..InterruptSpec::NONE },
            InterruptSpec { msi: Some(msi(3)), ..InterruptSpec::NONE },
            InterruptSpec { msi: Some(msi(64)), ..InterruptSpec::NONE },
            InterruptSpec { msix: Some(msix(0, 0)), ..InterruptSpec::NONE },
            InterruptSpec { msix: Some(msix(257, 0)), ..InterruptSpec::NONE },
            InterruptSpec { msix: Some(msix(1, 4)), ..InterruptSpec::NONE },
            InterruptSpec { msix: Some(MsixSpec { table_bar: 1, ..msix(1, 0) }), ..InterruptSpec::NONE },
        ] {
            let error = bad.validate(&bars).unwrap_err();
            assert_eq!(error.errno(), rustix::io::Errno::INVAL, "{bad:?}");
        }
    }

    fn edu() -> PciFunction {
        PciFunction::new("00:03.0".parse().unwrap(), crate::catalogue::edu()).unwrap()
    }

    fn read(function: &PciFunction, offset: u64, width: usize) -> u32 {
        let mut data = [0; 4];
        function.config_read(offset, &mut data[..width]).unwrap();
        u32::from_le_bytes(data)
    }

    #[test]
    fn edu_declares_pin_a_and_one_64_bit_msi_vector_after_pci_express() {
        let mut function = edu();
        assert_eq!(read(&function, regs::INTERRUPT_PIN, 1), 1);
        assert_eq!(function.find_capability(regs::CAP_ID_MSI), Some(regs::MSI_CAP));
        assert_eq!(read(&function, regs::EXP_CAP + 1, 1), regs::MSI_CAP as u32, "PCIe links to MSI");
        assert_eq!(read(&function, regs::MSI_CAP + 1, 1), 0, "MSI ends the list");
        assert_eq!(function.find_capability(regs::CAP_ID_MSIX), None);
        let flags = regs::MSI_CAP + regs::MSI_FLAGS;
        assert_eq!(read(&function, flags, 2), 0x0080);
        // Software owns Enable and Multiple Message Enable; the rest is read-only.
        function.config_write(flags, &0xffff_u16.to_le_bytes()).unwrap();
        assert_eq!(read(&function, flags, 2), 0x00f1);
        function.config_write(regs::MSI_CAP + 4, &u32::MAX.to_le_bytes()).unwrap();
        assert_eq!(read(&function, regs::MSI_CAP + 4, 4), 0xffff_fffc);
        function.config_write(regs::MSI_CAP + 12, &u32::MAX.to_le_bytes()).unwrap();
        assert_eq!(read(&function, regs::MSI_CAP + 12, 4), 0xffff, "16-bit Message Data");
        function.config_write(regs::INTERRUPT_LINE, &[11]).unwrap();
        assert_eq!(read(&function, regs::INTERRUPT_LINE, 2), 0x010b);
        // Devices that do not interrupt say so.
        let plus = PciFunction::new("00:04.0".parse().unwrap(), crate::catalogue::edu_plus()).unwrap();
        assert_eq!(read(&plus, regs::INTERRUPT_PIN, 1), 0);
        assert_eq!(plus.find_capability(regs::CAP_ID_MSI), None);
        assert_eq!(plus.find_capability(regs::CAP_ID_EXP), Some(regs::EXP_CAP));
    }

    #[test]
    fn an_msix_capability_follows_msi_with_its_table_size_and_locations() {
        let mut spec = crate::catalogue::multi_bar();
        spec.interrupts = InterruptSpec {
            pin: 2,
            msi: Some(MsiSpec { vectors: 4, is_64bit: false, per_vector_mask: true }),
            msix: Some(MsixSpec { table_size: 16, table_bar: 0, table_offset: 0x2000, pba_bar: 1, pba_offset: 0 }),
        };
        let function = PciFunction::new("00:05.0".parse().unwrap(), spec).unwrap();
        assert_eq!(read(&function, regs::MSI_CAP + 1, 1), regs::MSIX_CAP as u32);
        assert_eq!(function.find_capability(regs::CAP_ID_MSIX), Some(regs::MSIX_CAP));
        assert_eq!(read(&function, regs::MSIX_CAP + regs::MSIX_FLAGS, 2), 15);
        assert_eq!(read(&function, regs::MSIX_CAP + regs::MSIX_TABLE, 4), 0x2000);
        assert_eq!(read(&function, regs::MSIX_CAP + regs::MSIX_PBA, 4), 1);
    }

    #[test]
    fn status_interrupt_shows_the_pin_and_a_reset_deasserts_it() {
        let mut function = edu();
        let sink = Arc::new(Recorder::default());
        function.irq_line().set_sink(Some(sink.clone()));
        assert_eq!(read(&function, regs::STATUS, 2) & u32::from(regs::STATUS_INTERRUPT), 0);
        function.irq_line().set_intx(true);
        assert_ne!(read(&function, regs::STATUS, 2) & u32::from(regs::STATUS_INTERRUPT), 0);
        assert_ne!(read(&function, regs::COMMAND, 4) & (u32::from(regs::STATUS_INTERRUPT) << 16), 0);
        // Read-only: writing STATUS cannot clear it.
        function.config_write(regs::STATUS, &0xffff_u16.to_le_bytes()).unwrap();
        assert_ne!(read(&function, regs::STATUS, 1) & u32::from(regs::STATUS_INTERRUPT), 0);
        function.reset_function();
        assert_eq!(read(&function, regs::STATUS, 2) & u32::from(regs::STATUS_INTERRUPT), 0);
        assert_eq!(*sink.events.lock().unwrap(), ["intx true", "intx false"]);
    }

    #[test]
    fn msi_flags_encode_the_capable_vectors_and_the_flag_bits() {
        let flags = InterruptSpec::msi_flags(&MsiSpec { vectors: 1, is_64bit: true, per_vector_mask: false });
        assert_eq!(flags, 0x0080, "QEMU's edu: one vector, 64-bit");
        let flags = InterruptSpec::msi_flags(&MsiSpec { vectors: 8, is_64bit: false, per_vector_mask: true });
        assert_eq!(flags, 0x0106);
    }
}
