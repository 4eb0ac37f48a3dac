//! A PCI function: its virtualised config space, power state and function-level reset.

use std::sync::Arc;

use crate::bdf::Bdf;
use crate::config::{check_access, ConfigSpace};
use crate::dma::BusMaster;
use crate::error::PciError;
use crate::irq::IrqLine;
use crate::power::PowerState;
use crate::regs;
use crate::spec::{BarSpec, DeviceSpec, RegisterBar};

/// What a config write does beyond storing bits: the events a memory-mapping owner must react
/// to. Produced by [`PciFunction::classify_config_write`] before the write and by
/// [`PciFunction::config_write`] when it is applied; both agree for the same state and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConfigWriteEffect {
    /// COMMAND.MEMORY goes from 1 to 0: memory BARs stop decoding.
    pub memory_disable: bool,
    /// COMMAND.MEMORY goes from 0 to 1.
    pub memory_enable: bool,
    /// The PMCSR power state changes, as (from, to).
    pub power: Option<(PowerState, PowerState)>,
    /// Initiate Function-Level Reset is written as 1.
    pub flr: bool,
}

impl ConfigWriteEffect {
    /// Whether the write takes the BARs away: memory decoding turned off, a move to D3hot, or a
    /// function-level reset. The kernel revokes every BAR mapping before such a write (spec §4.8).
    #[must_use]
    pub fn revokes(&self) -> bool {
        self.memory_disable || matches!(self.power, Some((_, PowerState::D3Hot))) || self.flr
    }
}

/// An emulated PCI function: a validated [`DeviceSpec`] plus its live config space.
///
/// Not synchronised: whoever shares it wraps it in a lock (a device's `memory_lock`), so the
/// look-ahead of [`Self::classify_config_write`] and the write itself see the same state.
///
/// # Examples
///
/// ```
/// use pci::{catalogue, regs, Bdf, PciFunction, PowerState};
///
/// let mut function = PciFunction::new("00:03.0".parse()?, catalogue::edu_plus())?;
/// assert!(!function.memory_enabled()); // Fresh from reset: decoding is off.
///
/// let effect = function.config_write(regs::COMMAND, &regs::COMMAND_MEMORY.to_le_bytes())?;
/// assert!(effect.memory_enable && function.memory_enabled());
///
/// let to_d3 = PowerState::D3Hot.pmcsr_bits().to_le_bytes();
/// assert!(function.classify_config_write(regs::PM_CTRL, &to_d3)?.revokes());
/// # Ok::<(), pci::PciError>(())
/// ```
#[derive(Debug)]
pub struct PciFunction {
    /// Immutable after creation.
    bdf: Bdf,
    /// Immutable after creation; register-BAR callbacks have their own interior locking.
    spec: DeviceSpec,
    /// The virtualised config space. Changed only through `&mut self`.
    config: ConfigSpace,
    /// Immutable after creation (the line has its own lock): where the model's interrupts go.
    irq: Arc<IrqLine>,
    /// Immutable after creation (interior state): where the model's DMA goes. Its Bus Master
    /// Enable follows COMMAND.MASTER after every change of COMMAND.
    bus_master: Arc<BusMaster>,
}

impl PciFunction {
    /// Creates the function at `bdf`, in its reset state: COMMAND 0 (memory decoding off), BAR
    /// addresses 0, power state D0.
    ///
    /// Each register BAR is attached to the function's interrupt line and bus-master port
    /// ([`RegisterBar::attach`]).
    ///
    /// # Errors
    ///
    /// `EINVAL`: `spec` breaks a rule of [`DeviceSpec::validate`] (the error names which).
    pub fn new(bdf: Bdf, spec: DeviceSpec) -> Result<Self, PciError> {
        spec.validate()?;
        let config = ConfigSpace::new(&spec);
        let (irq, bus_master) = (Arc::new(IrqLine::new()), Arc::new(BusMaster::new()));
        for registers in spec.bars().filter_map(|(_, bar)| bar.register_bar()) {
            registers.attach(&irq, &bus_master);
        }
        Ok(Self { bdf, spec, config, irq, bus_master })
    }

    /// The line the function's interrupts go out on.
    #[must_use]
    pub fn irq_line(&self) -> &Arc<IrqLine> {
        &self.irq
    }

    /// The port the function's DMA goes through.
    #[must_use]
    pub fn bus_master(&self) -> &Arc<BusMaster> {
        &self.bus_master
    }

    /// The function's address.
    #[must_use]
    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// The description the function was built from.
    #[must_use]
    pub fn spec(&self) -> &DeviceSpec {
        &self.spec
    }

    /// BAR `index`, if described (the upper slot of a 64-bit BAR is not).
    #[must_use]
    pub fn bar(&self, index: usize) -> Option<&BarSpec> {
        self.spec.bars.get(index)?.as_ref()
    }

    /// The callbacks serving BAR `index`, if it is a register BAR.
    #[must_use]
    pub fn register_bar(&self, index: usize) -> Option<&Arc<dyn RegisterBar>> {
        self.bar(index)?.register_bar()
    }

    /// The bus address last programmed into BAR `index` (both halves for a 64-bit BAR), without
    /// flag bits; `None` for an undescribed slot. Addresses are only stored, never decoded.
    #[must_use]
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let bar = self.bar(index)?;
        let reg = regs::base_address(index);
        let low = u64::from(self.config.u32_at(reg) & regs::BASE_ADDRESS_MEM_MASK);
        let high = if bar.is_64bit { u64::from(self.config.u32_at(reg + 4)) } else { 0 };
        Some((high << 32) | low)
    }

    /// Reads `data.len()` bytes of config space at `offset`. Any offset is allowed, even one
    /// that straddles registers; unimplemented registers read 0.
    ///
    /// # Errors
    ///
    /// - `EINVAL` ([`PciError::ConfigAccessWidth`]): `data.len()` is not 1, 2 or 4.
    /// - `EINVAL` ([`PciError::ConfigAccessOutOfRange`]): the access ends past 4096 bytes.
    pub fn config_read(&self, offset: u64, data: &mut [u8]) -> Result<(), PciError> {
        let offset = check_access(offset, data.len())?;
        self.config.read(offset, data);
        // STATUS.INTERRUPT is not stored: it shows the pin's level as the model drives it.
        let status = regs::STATUS as usize;
        if let Some(byte) = status.checked_sub(offset).and_then(|at| data.get_mut(at)) {
            if self.irq.intx_asserted() {
                *byte |= regs::STATUS_INTERRUPT as u8;
            }
        }
        Ok(())
    }

    /// Says what writing `data` at `offset` would do, without doing it.
    ///
    /// The caller uses it to decide, before the write, whether it must first revoke the BAR
    /// mappings (see [`ConfigWriteEffect::revokes`]).
    ///
    /// # Errors
    ///
    /// As [`Self::config_read`].
    pub fn classify_config_write(&self, offset: u64, data: &[u8]) -> Result<ConfigWriteEffect, PciError> {
        let offset = check_access(offset, data.len())?;
        Ok(self.effect_of_write(offset, data))
    }

    /// [`Self::classify_config_write`] for an access already checked.
    fn effect_of_write(&self, offset: usize, data: &[u8]) -> ConfigWriteEffect {
        let memory = u32::from(regs::COMMAND_MEMORY);
        let command_before = u32::from(self.command()) & memory;
        let command_after = self.config.value_after_write(regs::COMMAND, 2, offset, data) & memory;

        let power_before = self.power_state();
        // Truncation intended: a 2-byte register fits in 16 bits.
        let pmcsr_after = self.config.value_after_write(regs::PM_CTRL, 2, offset, data) as u16;
        let power_after = PowerState::from_pmcsr(pmcsr_after);

        let devctl_written = ConfigSpace::written_bits(regs::EXP_DEVCTL, 2, offset, data);

        ConfigWriteEffect {
            memory_disable: command_before != 0 && command_after == 0,
            memory_enable: command_before == 0 && command_after != 0,
            power: (power_before != power_after).then_some((power_before, power_after)),
            flr: devctl_written & u32::from(regs::EXP_DEVCTL_BCR_FLR) != 0,
        }
    }

    /// Writes `data` at `offset` through the write masks, then performs a function-level reset
    /// ([`Self::reset_function`]) if the write initiated one. Returns what the write did, equal to
    /// what [`Self::classify_config_write`] predicted.
    ///
    /// Writable: the COMMAND bits [`regs::COMMAND_IO`], [`regs::COMMAND_MEMORY`],
    /// [`regs::COMMAND_MASTER`] and [`regs::COMMAND_INTX_DISABLE`]; the address bits of
    /// described BARs; the PMCSR power state; Interrupt Line; the software-owned fields of the
    /// MSI and MSI-X capabilities (enable, enabled vectors, address, data, masks). DEVCTL's
    /// Initiate FLR acts and reads back 0. Everything else ignores writes.
    ///
    /// # Errors
    ///
    /// As [`Self::config_read`]; nothing is written on error.
    pub fn config_write(&mut self, offset: u64, data: &[u8]) -> Result<ConfigWriteEffect, PciError> {
        let offset = check_access(offset, data.len())?;
        let effect = self.effect_of_write(offset, data);
        self.config.write(offset, data);
        self.bus_master.set_enabled(self.command() & regs::COMMAND_MASTER != 0);
        if effect.flr {
            self.reset_function();
        }
        Ok(effect)
    }

    /// The COMMAND register.
    #[must_use]
    pub fn command(&self) -> u16 {
        self.config.u16_at(regs::COMMAND)
    }

    /// The power state held in PMCSR.
    #[must_use]
    pub fn power_state(&self) -> PowerState {
        PowerState::from_pmcsr(self.config.u16_at(regs::PM_CTRL))
    }

    /// Sets the PMCSR power state directly, as the platform does (no effect is reported).
    pub fn set_power_state(&mut self, state: PowerState) {
        let pmcsr = self.config.u16_at(regs::PM_CTRL);
        let pmcsr = (pmcsr & !regs::PM_CTRL_STATE_MASK) | state.pmcsr_bits();
        self.config.set_u16(regs::PM_CTRL, pmcsr);
    }

    /// Whether memory BARs decode: the power state is above D3hot (D0, D1 or D2) and
    /// COMMAND.MEMORY is set.
    ///
    /// Analogous to the kernel's memory-enabled test for a passed-through function (spec §2.3);
    /// this model has no function without a COMMAND.MEMORY bit.
    #[must_use]
    pub fn memory_enabled(&self) -> bool {
        self.power_state() < PowerState::D3Hot && self.command() & regs::COMMAND_MEMORY != 0
    }

    /// Function-level reset. Analogous to Linux's `pci_reset_function()`: save the config state,
    /// bring the function to D0, reset it (every register BAR's [`RegisterBar::reset`], config
    /// back to power-on values), then restore the saved writable registers (COMMAND, BAR
    /// addresses). The power state ends at D0.
    ///
    /// RAM BAR contents are not touched: they are not held here.
    pub fn reset_function(&mut self) {
        let saved = self.config.clone();
        for (index, registers) in self.spec.bars().filter_map(|(i, bar)| Some((i, bar.register_bar()?))) {
            tracing::trace!(bdf = %self.bdf, index, "resetting register BAR");
            registers.reset();
        }
        self.config = ConfigSpace::new(&self.spec);
        // The power state is not restored: the reset leaves the function in D0.
        let pmcsr = regs::PM_CTRL as usize;
        self.config.restore_writable(&saved, pmcsr..pmcsr + 2);
        // The reset deasserts the pin (QEMU's PCI core does it for every device); whatever the
        // model keeps pending raises it again with its next interrupt.
        self.irq.set_intx(false);
        self.bus_master.set_enabled(self.command() & regs::COMMAND_MASTER != 0);
        tracing::debug!(bdf = %self.bdf, command = self.command(), "function reset");
    }
}

#[cfg(test)]
mod tests;
