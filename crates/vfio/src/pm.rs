//! Runtime power management of the device: the low-power features
//! (`VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY` = 3, `…_ENTRY_WITH_WAKEUP` = 4,
//! `…_EXIT` = 5). Analogous to the runtime-PM part of Linux's
//! `vfio_pci_core.c` (spec §2.4, §4.8 "runtime-PM low-power entry").
//!
//! Entry revokes every buffer (temporarily) and marks the device engaged:
//! faults SIGBUS while engaged. Exit clears the mark and un-revokes if memory
//! decoding is on. Every call on the device fd first "resumes" the device,
//! as the kernel's runtime-PM wrappers around each ioctl, read, write and
//! mmap do; if the entry gave a wake-up eventfd, that resume signals it and
//! leaves low power — without un-revoking, as the kernel's resume callback
//! does (the next exit, or a memory enable, un-revokes).

use std::os::fd::OwnedFd;

use rustix::io::Errno;

use crate::core::{DeviceFd, FeatureReply, VfioPciDevice};
use crate::error::{fail, VfioError};
use crate::feature::Feature;
use crate::private::MemoryWriteGuard;
use crate::uapi::{u32_at, VFIO_DEVICE_FEATURE_SET};

/// Leaves low power (`__vfio_pci_runtime_pm_exit`): clears the mark and drops
/// the wake-up eventfd. Does not un-revoke.
///
/// Deviation: also zaps every buffer's CPU mappings. Faults taken while
/// engaged left poison markers on buffers that may be Ok (a COMMAND write
/// un-revokes during low power); nothing else would clear them. Faults
/// poison under `memory_lock` (read), so this zap, under the write lock
/// after the mark is cleared, comes after every one of them.
///
/// Preconditions: `memory_lock` held for write (the guard proves it).
pub(crate) fn runtime_pm_exit_locked(mem: &mut MemoryWriteGuard<'_>) {
    if !std::mem::replace(&mut mem.pm_runtime_engaged, false) {
        return;
    }
    mem.pm_wake_eventfd = None;
    let live: Vec<_> = mem.dmabufs.values().filter_map(std::sync::Weak::upgrade).collect();
    for buf in live {
        buf.zap_cpu_mappings();
        mem.defer_drop(buf);
    }
}

/// The resume every device call starts with: with a wake-up eventfd, signal
/// it and leave low power; without one the device stays engaged.
pub(crate) fn runtime_resume(vdev: &VfioPciDevice) {
    if !vdev.lock_memory_read().pm_runtime_engaged {
        return;
    }
    let mut mem = vdev.lock_memory_write();
    if let Some(efd) = mem.pm_wake_eventfd.take() {
        crate::intrs::eventfd_signal(&efd);
        runtime_pm_exit_locked(&mut mem);
    }
}

/// `eventfd_ctx_fdget()`: a reference of our own on eventfd number `fd`.
///
/// The kind is checked on our own reference, so the number being closed or
/// reused meanwhile cannot make us keep something that is not an eventfd.
///
/// # Errors
///
/// `EBADF` when `fd` is not an open descriptor, `EINVAL` when it is not an
/// eventfd.
fn eventfd_ctx_fdget(fd: i32) -> Result<OwnedFd, Errno> {
    crate::intrs::eventfd_ctx_fileget(mm::fd::fdget(fd)?)
}

/// `vfio_pci_runtime_pm_entry()`: lock, revoke, then refuse a second entry
/// (`EINVAL`) or mark the device engaged.
fn runtime_pm_entry(vdev: &VfioPciDevice, wake: Option<std::os::fd::OwnedFd>) -> Result<(), VfioError> {
    let mut mem = vdev.lock_memory_write();
    let revoked = vdev.revoke_bars(&mut mem);
    if mem.pm_runtime_engaged {
        return fail(Errno::INVAL, "the device is already in low power");
    }
    mem.pm_runtime_engaged = true;
    mem.pm_wake_eventfd = wake;
    revoked
}

/// `VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY` (SET, no payload).
pub(crate) const LOW_POWER_ENTRY: Feature =
    Feature { name: "LOW_POWER_ENTRY", supported_ops: VFIO_DEVICE_FEATURE_SET, minsz: 0, run: feature_low_power_entry };

/// `VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP` (SET, `{ s32
/// wakeup_eventfd; u32 reserved; }`).
pub(crate) const LOW_POWER_ENTRY_WITH_WAKEUP: Feature = Feature {
    name: "LOW_POWER_ENTRY_WITH_WAKEUP",
    supported_ops: VFIO_DEVICE_FEATURE_SET,
    minsz: 8,
    run: feature_low_power_entry_with_wakeup,
};

/// `VFIO_DEVICE_FEATURE_LOW_POWER_EXIT` (SET, no payload).
pub(crate) const LOW_POWER_EXIT: Feature =
    Feature { name: "LOW_POWER_EXIT", supported_ops: VFIO_DEVICE_FEATURE_SET, minsz: 0, run: feature_low_power_exit };

/// [`LOW_POWER_ENTRY`]: revoke and enter low power.
fn feature_low_power_entry(fd: &DeviceFd, _data: &[u8]) -> Result<FeatureReply, VfioError> {
    runtime_pm_entry(fd.device(), None).map(|()| FeatureReply::Done)
}

/// [`LOW_POWER_ENTRY_WITH_WAKEUP`]: as [`LOW_POWER_ENTRY`], with an eventfd
/// to signal when a device call wakes the device.
fn feature_low_power_entry_with_wakeup(fd: &DeviceFd, data: &[u8]) -> Result<FeatureReply, VfioError> {
    let efd = u32_at(data, 0) as i32;
    if efd < 0 {
        return fail(Errno::INVAL, "wakeup_eventfd is negative");
    }
    let wake = eventfd_ctx_fdget(efd).map_err(|e| VfioError::new(e, "wakeup_eventfd is not an eventfd"))?;
    runtime_pm_entry(fd.device(), Some(wake)).map(|()| FeatureReply::Done)
}

/// [`LOW_POWER_EXIT`]: leave low power and un-revoke if memory decoding is
/// on. (A wake-up resume may already have left low power; the un-revoke
/// still happens here.)
fn feature_low_power_exit(fd: &DeviceFd, _data: &[u8]) -> Result<FeatureReply, VfioError> {
    let vdev = fd.device();
    let mut mem = vdev.lock_memory_write();
    runtime_pm_exit_locked(&mut mem);
    if mem.pci.memory_enabled() {
        vdev.unrevoke_bars(&mut mem)?;
    }
    Ok(FeatureReply::Done)
}
