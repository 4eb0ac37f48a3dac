//! Config-space access with the virtualisation hooks that revoke and
//! un-revoke BAR mappings (COMMAND.MEMORY, PM power state, FLR) and emulate
//! `INTx` disable (`COMMAND.INTX_DISABLE`). Analogous
//! to Linux's `drivers/vfio/pci/vfio_pci_config.c` (spec §4.8).

use std::sync::Arc;

use rustix::io::Errno;

use crate::core::VfioPciDevice;
use crate::error::{fail, VfioError};
use crate::rdwr::{chunks, Io};

/// Reads or writes the config region, split into aligned accesses of at
/// most 4 bytes.
pub(crate) fn config_rw(vdev: &Arc<VfioPciDevice>, pos: u64, io: Io<'_>) -> Result<usize, VfioError> {
    let size = pci::regs::CFG_SPACE_EXP_SIZE;
    // vfio_pci_config_rw(): nothing to do for 0 bytes, wherever; otherwise
    // vfio_config_do_rw() refuses (EFAULT) an access not wholly inside
    // config space instead of clipping it.
    let len = io.len();
    if len == 0 {
        return Ok(0);
    }
    if pos.checked_add(len as u64).is_none_or(|end| end > size) {
        return fail(Errno::FAULT, "access outside config space");
    }
    match io {
        Io::Read(buf) => {
            let mem = vdev.lock_memory_read();
            for (at, w) in chunks(pos, len, 4) {
                mem.pci.config_read(pos + at as u64, &mut buf[at..at + w])?;
            }
            Ok(len)
        }
        Io::Write(data) => {
            for (at, w) in chunks(pos, len, 4) {
                config_write(vdev, pos + at as u64, &data[at..at + w])?;
            }
            Ok(len)
        }
    }
}

/// One config write, with the event table of spec §4.8:
///
/// | write                         | before                 | after                       |
/// |-------------------------------|------------------------|-----------------------------|
/// | COMMAND clearing MEMORY       | lock + revoke          | un-revoke if enabled        |
/// | COMMAND keeping/setting MEMORY| lock                   | un-revoke if enabled        |
/// | PMCSR to D3hot                | lock + revoke          | un-revoke if enabled        |
/// | PMCSR to D0..D2               | lock                   | un-revoke if enabled        |
/// | DEVCTL Initiate FLR           | lock + revoke, reset   | un-revoke if enabled        |
///
/// Every write takes `memory_lock` for write, because the PCI function's
/// state lives under it; writes that touch none of these registers neither
/// revoke nor un-revoke.
fn config_write(vdev: &VfioPciDevice, pos: u64, data: &[u8]) -> Result<(), VfioError> {
    let mut mem = vdev.lock_memory_write();
    let effect = mem.pci.classify_config_write(pos, data)?;
    // A revoke that could not drain its importers (a bounded wait that
    // expired) has still revoked and zapped everything; the write itself
    // must happen all the same, so the error is reported after it.
    let revoked = if effect.revokes() { vdev.revoke_bars(&mut mem) } else { Ok(()) };
    mem.pci.config_write(pos, data)?;
    let hooked = overlaps(pos, data.len(), pci::regs::COMMAND, 2)
        || overlaps(pos, data.len(), pci::regs::PM_CTRL, 2)
        || effect.flr;
    // Un-revoking is idempotent, so it follows every write of a hooked
    // register that leaves memory enabled, not only those that changed it:
    // that also restores what an interrupted revoke left behind.
    let unrevoked = if hooked && mem.pci.memory_enabled() { vdev.unrevoke_bars(&mut mem) } else { Ok(()) };
    // Emulated INTx disable: a write reaching COMMAND masks or unmasks INTx as the bit says.
    if overlaps(pos, data.len(), pci::regs::COMMAND, 2) {
        vdev.irqs.set_virq_disabled(mem.pci.command() & pci::regs::COMMAND_INTX_DISABLE != 0);
    }
    revoked.and(unrevoked)
}

/// Whether `[pos, pos+len)` touches the register `[reg, reg+width)`.
fn overlaps(pos: u64, len: usize, reg: u64, width: u64) -> bool {
    pos < reg + width && reg < pos + len as u64
}
