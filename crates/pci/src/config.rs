//! The config-space byte array and its per-byte write masks.
//!
//! Every register is plain bytes plus a write mask (1 = writable bit), the way QEMU's
//! `hw/pci/pci.c` keeps `config` and `wmask`. A write merges each byte through its mask, so a
//! write may span registers, read-only bits keep their value, and BAR size probing falls out of
//! the masks: a BAR's address bits below its size are read-only zeros, so writing all-ones reads
//! back the size mask with the flag bits. Side effects (FLR) are not here but in
//! [`crate::PciFunction`], which asks [`ConfigSpace::written_bits`] what a write carries.

use std::fmt;

use crate::error::PciError;
use crate::irq::InterruptSpec;
use crate::regs;
use crate::spec::{BarSpec, DeviceSpec};

/// Config-space size in bytes.
const SIZE: usize = regs::CFG_SPACE_EXP_SIZE as usize;

/// Writable COMMAND bits; the rest read 0.
const COMMAND_WMASK: u16 = regs::COMMAND_IO | regs::COMMAND_MEMORY | regs::COMMAND_MASTER | regs::COMMAND_INTX_DISABLE;

/// PMC as this model advertises it: PM version 3, D1 and D2 supported, no PME.
const PM_PMC_VALUE: u16 = regs::PM_CAP_VER_3 | regs::PM_CAP_D1 | regs::PM_CAP_D2;

/// A type-0 config space with write masks.
#[derive(Clone)]
pub(crate) struct ConfigSpace {
    /// Current register contents.
    data: Box<[u8; SIZE]>,
    /// Writable bits of each byte.
    wmask: Box<[u8; SIZE]>,
}

impl ConfigSpace {
    /// The config space of `spec` fresh from reset: COMMAND 0 (decoding off), BAR addresses 0,
    /// power state D0. `spec` must have passed [`DeviceSpec::validate`].
    pub(crate) fn new(spec: &DeviceSpec) -> Self {
        let mut space = Self { data: Box::new([0; SIZE]), wmask: Box::new([0; SIZE]) };

        space.set_u16(regs::VENDOR_ID, spec.vendor_id);
        space.set_u16(regs::DEVICE_ID, spec.device_id);
        space.set_u32(regs::REVISION_ID, (spec.class_code << 8) | u32::from(spec.revision));
        space.set_u16(regs::STATUS, regs::STATUS_CAP_LIST);
        space.set_wmask_u16(regs::COMMAND, COMMAND_WMASK);

        for (index, bar) in spec.bars() {
            space.init_bar(index, bar);
        }

        // Capability list: PM at 0x40, then PCI Express at 0x50, then MSI and MSI-X if declared.
        space.set_u8(regs::CAPABILITY_LIST, regs::PM_CAP as u8);
        space.set_u8(regs::PM_CAP, regs::CAP_ID_PM);
        space.set_u8(regs::PM_CAP + 1, regs::EXP_CAP as u8);
        space.set_u16(regs::PM_PMC, PM_PMC_VALUE);
        // No_Soft_Reset: leaving D3hot keeps the config registers, so whoever moves the
        // function between states need not restore them.
        space.set_u16(regs::PM_CTRL, regs::PM_CTRL_NO_SOFT_RESET);
        space.set_wmask_u16(regs::PM_CTRL, regs::PM_CTRL_STATE_MASK);

        space.set_u8(regs::EXP_CAP, regs::CAP_ID_EXP);
        // Port type 0 = endpoint.
        space.set_u16(regs::EXP_FLAGS, regs::EXP_FLAGS_VERS_2);
        space.set_u32(regs::EXP_DEVCAP, regs::EXP_DEVCAP_FLR);
        // DEVCTL keeps a zero write mask: Initiate FLR reads 0 and is acted on, not stored.

        space.init_interrupts(&spec.interrupts);
        space
    }

    /// The Interrupt Pin and Line registers, then the MSI and MSI-X capabilities the spec
    /// declares, chained after the PCI Express capability (which ends the list otherwise).
    fn init_interrupts(&mut self, irq: &InterruptSpec) {
        self.set_u8(regs::INTERRUPT_PIN, irq.pin);
        self.wmask[index(regs::INTERRUPT_LINE)] = 0xff;
        let mut next = regs::EXP_CAP + 1;
        if let Some(msi) = &irq.msi {
            let cap = regs::MSI_CAP;
            self.set_u8(next, cap as u8);
            next = cap + 1;
            self.set_u8(cap, regs::CAP_ID_MSI);
            self.set_u16(cap + regs::MSI_FLAGS, InterruptSpec::msi_flags(msi));
            // Enable and Multiple Message Enable are written by software; the rest is fixed.
            self.set_wmask_u16(cap + regs::MSI_FLAGS, regs::MSI_FLAGS_ENABLE | regs::MSI_FLAGS_QSIZE);
            // Message Address (dword aligned), its upper half if 64-bit, then Message Data.
            self.set_wmask_u32(cap + regs::MSI_ADDRESS_LO, !0x3);
            let mut data = cap + regs::MSI_ADDRESS_LO + 4;
            if msi.is_64bit {
                self.set_wmask_u32(data, u32::MAX);
                data += 4;
            }
            self.set_wmask_u16(data, u16::MAX);
            if msi.per_vector_mask {
                // Mask bits follow the data register and two reserved bytes, one per vector.
                let vectors = u32::from(msi.vectors);
                let mask = if vectors == 32 { u32::MAX } else { (1 << vectors) - 1 };
                self.set_wmask_u32(data + 4, mask);
            }
        }
        if let Some(msix) = &irq.msix {
            let cap = regs::MSIX_CAP;
            self.set_u8(next, cap as u8);
            self.set_u8(cap, regs::CAP_ID_MSIX);
            self.set_u16(cap + regs::MSIX_FLAGS, msix.table_size - 1);
            self.set_wmask_u16(cap + regs::MSIX_FLAGS, regs::MSIX_FLAGS_ENABLE | regs::MSIX_FLAGS_MASKALL);
            self.set_u32(cap + regs::MSIX_TABLE, msix.table_offset | u32::from(msix.table_bar));
            self.set_u32(cap + regs::MSIX_PBA, msix.pba_offset | u32::from(msix.pba_bar));
        }
    }

    /// Writes the flag bits of BAR `index` and the masks that make size probing work.
    fn init_bar(&mut self, index: usize, bar: &BarSpec) {
        let offset = regs::base_address(index);
        // Address bits at and above the size are writable; lower ones read 0.
        let address_mask = !(bar.size - 1);
        let mut flags = 0; // Bit 0 clear: memory BAR.
        if bar.is_64bit {
            flags |= regs::BASE_ADDRESS_MEM_TYPE_64;
        }
        if bar.prefetchable {
            flags |= regs::BASE_ADDRESS_MEM_PREFETCH;
        }
        self.set_u32(offset, flags);
        // Truncation intended: the low dword of the mask.
        self.set_wmask_u32(offset, address_mask as u32 & regs::BASE_ADDRESS_MEM_MASK);
        if bar.is_64bit {
            self.set_wmask_u32(offset + 4, (address_mask >> 32) as u32);
        }
    }

    /// Copies `data.len()` bytes at `offset` into `data`.
    ///
    /// Preconditions: the access was checked by [`check_access`].
    pub(crate) fn read(&self, offset: usize, data: &mut [u8]) {
        data.copy_from_slice(&self.data[offset..offset + data.len()]);
    }

    /// Writes `data` at `offset`, each byte through its write mask.
    ///
    /// Preconditions: the access was checked by [`check_access`].
    pub(crate) fn write(&mut self, offset: usize, data: &[u8]) {
        for (at, &value) in (offset..).zip(data) {
            self.data[at] = merge(self.data[at], self.wmask[at], value);
        }
    }

    /// The value register `reg` (of `width` bytes) would hold after [`Self::write`] of `data` at
    /// `offset`; bytes the write does not cover keep their current value.
    pub(crate) fn value_after_write(&self, reg: u64, width: usize, offset: usize, data: &[u8]) -> u32 {
        fold_bytes(reg, width, |at| match byte_of_write(at, offset, data) {
            Some(value) => merge(self.data[at], self.wmask[at], value),
            None => self.data[at],
        })
    }

    /// The raw bits `data` written at `offset` puts over register `reg`, masks not applied;
    /// bytes outside the write are 0. Used for bits that act instead of being stored.
    pub(crate) fn written_bits(reg: u64, width: usize, offset: usize, data: &[u8]) -> u32 {
        fold_bytes(reg, width, |at| byte_of_write(at, offset, data).unwrap_or(0))
    }

    /// Reads a 16-bit register.
    pub(crate) fn u16_at(&self, reg: u64) -> u16 {
        // At most two bytes are folded, so the value fits.
        fold_bytes(reg, 2, |at| self.data[at]) as u16
    }

    /// Reads a 32-bit register.
    pub(crate) fn u32_at(&self, reg: u64) -> u32 {
        fold_bytes(reg, 4, |at| self.data[at])
    }

    /// Sets the value of a 16-bit register, ignoring its write mask (device-side update).
    pub(crate) fn set_u16(&mut self, reg: u64, value: u16) {
        self.set_bytes(reg, &value.to_le_bytes());
    }

    /// Restores every writable bit from `saved`, except the bytes in `skip` (a byte range).
    /// Read-only bits keep their current (reset) value.
    pub(crate) fn restore_writable(&mut self, saved: &Self, skip: std::ops::Range<usize>) {
        for at in (0..SIZE).filter(|at| !skip.contains(at)) {
            self.data[at] = merge(self.data[at], self.wmask[at], saved.data[at]);
        }
    }

    fn set_u8(&mut self, reg: u64, value: u8) {
        self.set_bytes(reg, &[value]);
    }

    fn set_u32(&mut self, reg: u64, value: u32) {
        self.set_bytes(reg, &value.to_le_bytes());
    }

    fn set_bytes(&mut self, reg: u64, bytes: &[u8]) {
        let start = index(reg);
        self.data[start..start + bytes.len()].copy_from_slice(bytes);
    }

    fn set_wmask_u16(&mut self, reg: u64, mask: u16) {
        let start = index(reg);
        self.wmask[start..start + 2].copy_from_slice(&mask.to_le_bytes());
    }

    fn set_wmask_u32(&mut self, reg: u64, mask: u32) {
        let start = index(reg);
        self.wmask[start..start + 4].copy_from_slice(&mask.to_le_bytes());
    }

    /// Whether byte `at` has any writable bit; for tests that check read-only bytes.
    #[cfg(test)]
    pub(crate) fn is_read_only(&self, at: usize) -> bool {
        self.wmask[at] == 0
    }

    /// The raw byte at `at`; for tests.
    #[cfg(test)]
    pub(crate) fn byte(&self, at: usize) -> u8 {
        self.data[at]
    }
}

impl fmt::Debug for ConfigSpace {
    /// Shows the 64-byte header only; the other 4 KiB are mostly zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigSpace").field("header", &&self.data[..64]).finish_non_exhaustive()
    }
}

/// Checks a config access: width 1, 2 or 4 and entirely inside the space. Returns the offset
/// as an index.
///
/// # Errors
///
/// - `EINVAL` ([`PciError::ConfigAccessWidth`]): `len` is not 1, 2 or 4.
/// - `EINVAL` ([`PciError::ConfigAccessOutOfRange`]): the access ends past 4096 bytes.
pub(crate) fn check_access(offset: u64, len: usize) -> Result<usize, PciError> {
    if !matches!(len, 1 | 2 | 4) {
        return Err(PciError::ConfigAccessWidth { len });
    }
    match offset.checked_add(len as u64) {
        Some(end) if end <= regs::CFG_SPACE_EXP_SIZE => Ok(index(offset)),
        _ => Err(PciError::ConfigAccessOutOfRange { offset, len }),
    }
}

/// Merges a written byte into a stored one through the byte's write mask.
fn merge(old: u8, wmask: u8, value: u8) -> u8 {
    (old & !wmask) | (value & wmask)
}

/// The byte `data` (written at `offset`) puts at `at`, if the write covers `at`.
fn byte_of_write(at: usize, offset: usize, data: &[u8]) -> Option<u8> {
    at.checked_sub(offset).and_then(|i| data.get(i)).copied()
}

/// Assembles a little-endian register of `width` bytes at `reg` from a per-byte source.
fn fold_bytes(reg: u64, width: usize, byte: impl Fn(usize) -> u8) -> u32 {
    let start = index(reg);
    (start..start + width).rev().fold(0, |value, at| (value << 8) | u32::from(byte(at)))
}

/// Converts a register offset already known to lie inside the space to an index.
fn index(reg: u64) -> usize {
    debug_assert!(reg < regs::CFG_SPACE_EXP_SIZE);
    // Below 4096 by the precondition, so the conversion is lossless.
    reg as usize
}
