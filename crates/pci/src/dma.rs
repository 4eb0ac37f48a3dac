//! A function's DMA: the bus-master port its model reads and writes memory through.
//!
//! The device model moves bytes with [`BusMaster::read`] and [`BusMaster::write`] (QEMU's
//! `pci_dma_read`/`pci_dma_write`), at bus addresses: IOVAs once an IOMMU is in between. The
//! port behind them ([`DmaPort`]) is the platform's: in this project the IOMMU mappings of the
//! container or IOAS the device is attached to. As on PCI, nothing reaches memory while the
//! function's COMMAND.MASTER (Bus Master Enable) is clear; the function mirrors that bit here.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use rustix::io::Errno;

/// Memory as a bus-mastering function reaches it: bus addresses (IOVAs) translated by whatever
/// sits upstream (an IOMMU's mappings).
///
/// May be called from any thread, with no lock of the device model held; it must not call back
/// into the device.
pub trait DmaPort: Send + Sync + fmt::Debug {
    /// Reads `buf.len()` bytes at bus address `iova`.
    ///
    /// # Errors
    ///
    /// The fault the translation or the access met (an IOMMU answers `EFAULT` for an address it
    /// does not map readable); `buf` may then be partly written.
    fn read(&self, iova: u64, buf: &mut [u8]) -> Result<(), Errno>;

    /// Writes `data` at bus address `iova`.
    ///
    /// # Errors
    ///
    /// As [`DmaPort::read`], for an address not mapped writable; part of `data` may have landed.
    fn write(&self, iova: u64, data: &[u8]) -> Result<(), Errno>;
}

/// Why a DMA transfer did not reach memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DmaError {
    /// COMMAND.MASTER is clear: the function may not issue transactions.
    #[error("bus mastering is disabled (COMMAND.MASTER clear)")]
    MasterDisabled,
    /// Nothing is upstream: the device is attached to no IOMMU mappings.
    #[error("no DMA port is attached")]
    NoPort,
    /// The port refused the transfer (an IOMMU fault).
    #[error("the DMA port faulted ({0})")]
    Fault(Errno),
}

/// The bus-master side of one function: Bus Master Enable and the port behind it.
#[derive(Default)]
pub struct BusMaster {
    /// COMMAND.MASTER, mirrored by the function after every config write and reset. A transfer
    /// reads it once at its start, as a transaction is either issued or not.
    enabled: AtomicBool,
    /// Protected by: itself, a leaf lock (held only to clone the pointer). The port.
    port: RwLock<Option<Arc<dyn DmaPort>>>,
}

impl BusMaster {
    /// Bus mastering disabled, no port.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches (or, with `None`, detaches) the port. A transfer already past its start keeps
    /// the port it started with.
    pub fn set_port(&self, port: Option<Arc<dyn DmaPort>>) {
        *self.port.write().unwrap_or_else(PoisonError::into_inner) = port;
    }

    /// Whether a port is attached.
    #[must_use]
    pub fn has_port(&self) -> bool {
        self.port.read().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// Whether COMMAND.MASTER is set.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Mirrors COMMAND.MASTER; the function calls it whenever COMMAND may have changed.
    pub(crate) fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Reads `buf.len()` bytes at bus address `addr` (QEMU's `pci_dma_read`).
    ///
    /// # Errors
    ///
    /// [`DmaError`]: bus mastering off, no port, or the port's fault.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.port()?.read(addr, buf).map_err(DmaError::Fault)
    }

    /// Writes `data` at bus address `addr` (QEMU's `pci_dma_write`).
    ///
    /// # Errors
    ///
    /// As [`BusMaster::read`].
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        self.port()?.write(addr, data).map_err(DmaError::Fault)
    }

    /// The port a transfer may use now.
    fn port(&self) -> Result<Arc<dyn DmaPort>, DmaError> {
        if !self.enabled() {
            return Err(DmaError::MasterDisabled);
        }
        self.port.read().unwrap_or_else(PoisonError::into_inner).clone().ok_or(DmaError::NoPort)
    }
}

impl fmt::Debug for BusMaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusMaster").field("enabled", &self.enabled()).field("port", &self.has_port()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// 64 bytes of memory at bus address 0x1000.
    #[derive(Debug)]
    struct Window(Mutex<Vec<u8>>);

    impl DmaPort for Window {
        fn read(&self, iova: u64, buf: &mut [u8]) -> Result<(), Errno> {
            let at = iova.checked_sub(0x1000).ok_or(Errno::FAULT)? as usize;
            let mem = self.0.lock().unwrap();
            buf.copy_from_slice(mem.get(at..at + buf.len()).ok_or(Errno::FAULT)?);
            Ok(())
        }
        fn write(&self, iova: u64, data: &[u8]) -> Result<(), Errno> {
            let at = iova.checked_sub(0x1000).ok_or(Errno::FAULT)? as usize;
            let mut mem = self.0.lock().unwrap();
            mem.get_mut(at..at + data.len()).ok_or(Errno::FAULT)?.copy_from_slice(data);
            Ok(())
        }
    }

    #[test]
    fn bus_master_enable_follows_command_master_through_writes_and_resets() {
        use crate::{regs, PciFunction};
        let mut function = PciFunction::new("00:03.0".parse().unwrap(), crate::catalogue::edu()).unwrap();
        let bus = Arc::clone(function.bus_master());
        assert!(!bus.enabled());
        let master = regs::COMMAND_MASTER | regs::COMMAND_MEMORY;
        function.config_write(regs::COMMAND, &master.to_le_bytes()).unwrap();
        assert!(bus.enabled());
        // A function-level reset restores COMMAND, and the mirror with it.
        function.reset_function();
        assert!(bus.enabled());
        function.config_write(regs::COMMAND, &regs::COMMAND_MEMORY.to_le_bytes()).unwrap();
        assert!(!bus.enabled());
    }

    #[test]
    fn transfers_need_bus_master_enable_and_a_port() {
        let bus = BusMaster::new();
        let mut buf = [0; 4];
        assert_eq!(bus.read(0x1000, &mut buf), Err(DmaError::MasterDisabled));
        bus.set_enabled(true);
        assert_eq!(bus.write(0x1000, &buf), Err(DmaError::NoPort));
        bus.set_port(Some(Arc::new(Window(Mutex::new(vec![0; 64])))));
        bus.write(0x1004, &[1, 2, 3, 4]).unwrap();
        bus.read(0x1004, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
        assert_eq!(bus.read(0x2000, &mut buf), Err(DmaError::Fault(Errno::FAULT)));
        bus.set_enabled(false);
        assert_eq!(bus.read(0x1004, &mut buf), Err(DmaError::MasterDisabled));
    }
}
