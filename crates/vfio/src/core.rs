//! The device: open/close lifetime, regions, the ioctls (features through
//! `feature`), device-fd mmap (`core/mmap`), revoke/un-revoke of every BAR
//! mapping, reset and hot reset. Analogous to Linux's
//! `drivers/vfio/pci/vfio_pci_core.c` after the series (v4 04/10, 05/10,
//! 07/10); the fault handler the series shares between both kinds of
//! mapping lives with `find_pfn` in `dmabuf/fault`.

pub(crate) mod irq;
pub(crate) mod mmap;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use dmabuf::DmaBuf;
use mm::{AddressSpace, PhysMemory};
use pci::{BarBacking, Bdf, DeviceSpec, PciFunction, PowerState};
use rustix::io::Errno;

use crate::core_h::{bar_start, index_to_offset, VFIO_PCI_OFFSET_MASK};
use crate::dmabuf as vdmabuf;
use crate::do_mmap::MmapArgs;
use crate::error::{fail, VfioError};
use crate::private::{Bar, BarStore, MemoryReadGuard, MemoryState, MemoryWriteGuard};
use crate::uapi::*;

/// An emulated VFIO-PCI device (the kernel's `vfio_pci_core_device`, "vdev").
///
/// Created bound to the driver; opened with [`VfioPciDevice::open`], which
/// gives a [`DeviceFd`]. See the crate doc for the lock order.
pub struct VfioPciDevice {
    /// Immutable. The cdev name, e.g. `vfio0`.
    cdev_name: String,
    /// Immutable.
    bdf: Bdf,
    /// Immutable. BAR0..BAR5.
    bars: [Option<Bar>; 6],
    /// Immutable; bytes per frame of the RAM BARs' storage.
    frame_size: u64,
    /// The device's memory lock (a reader/writer semaphore in Linux).
    /// Write: memory enable/disable, power and reset transitions, every
    /// buffer status change, buffer list changes. Read: the end of every
    /// fault, BAR region read/write.
    pub(crate) memory_lock: RwLock<MemoryState>,
    /// Protected by: itself. Number of open device files (`open_count`);
    /// lock order: `open_lock` → `memory_lock`.
    open_lock: Mutex<()>,
    /// Written under `open_lock`; read locklessly by hot reset.
    open_count: AtomicU32,
    /// The thread holding `memory_lock` for write, 0 if none; written by
    /// that thread only, read to refuse re-entry (see [`VfioPciDevice::enter`]).
    pub(crate) memory_lock_writer: AtomicU64,
    /// Whether order-0 faults map their neighbours too (default on).
    fault_around: std::sync::atomic::AtomicBool,
    /// Protected by: itself, a leaf lock. Bound on every revoke's importer
    /// wait for this device's buffers; `None` waits forever (the kernel's
    /// behaviour), logging every few seconds while it waits.
    revoke_timeout: Mutex<Option<std::time::Duration>>,
    /// Immutable; the state behind `SET_IRQS`, under its own `igate` (see `intrs`).
    pub(crate) irqs: Arc<crate::intrs::Irqs>,
    /// Immutable; the function's interrupt line, whose sink is `irqs`.
    pub(crate) irq_line: Arc<pci::IrqLine>,
    /// Immutable; the function's bus-master port, where the DMA port plugs in.
    pub(crate) bus_master: Arc<pci::BusMaster>,
}

impl fmt::Debug for VfioPciDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VfioPciDevice").field("cdev", &self.cdev_name).field("bdf", &self.bdf.to_string()).finish()
    }
}

impl VfioPciDevice {
    /// Creates a device bound to vfio-pci: validates the spec, and creates
    /// the fully populated storage of each RAM BAR in 2 MiB frames (memfds
    /// named after the kernel's buffer name, `vfio0:0000:00:03.0/1.<frame>`),
    /// BAR `i` at physical address `i << 40`.
    ///
    /// # Errors
    ///
    /// `EINVAL` for an invalid spec (the message names the BAR and the rule);
    /// `ENOMEM`, before anything is allocated, when the RAM BARs together
    /// need more than the machine has available (see [`mm::budget`]); the
    /// memfd's errno when memory cannot be had.
    pub fn new(cdev_index: u32, bdf: Bdf, spec: DeviceSpec) -> Result<Arc<Self>, VfioError> {
        Self::with_frame_size(cdev_index, bdf, spec, mm::frames::DEFAULT_FRAME_SIZE)
    }

    /// [`VfioPciDevice::new`] with RAM BARs stored in frames of
    /// `frame_size` bytes (see `mm::frames`; a BAR smaller than that is one
    /// frame of its size): a process is given whole frames, so this is the
    /// granularity at which sub-ranges of a BAR can be vended.
    ///
    /// # Errors
    ///
    /// `EINVAL` when `frame_size` is not a power-of-two page multiple; else
    /// as [`VfioPciDevice::new`].
    pub fn with_frame_size(
        cdev_index: u32,
        bdf: Bdf,
        spec: DeviceSpec,
        frame_size: u64,
    ) -> Result<Arc<Self>, VfioError> {
        mm::frames::check_frame_size(frame_size)?;
        let cdev_name = format!("vfio{cdev_index}");
        // Refuse a bad spec (the function validates it), and RAM BARs that
        // cannot fit together, before the first BAR is allocated: a device is
        // never left half-made, and a small BAR0 is not populated only to be
        // freed when BAR2 is refused.
        let pci = PciFunction::new(bdf, spec)?;
        mm::budget::check_budget(pci.spec().ram_bytes(), mm::budget::memory_budget())?;
        let mut bars: [Option<Bar>; 6] = Default::default();
        for (i, bar) in pci.spec().bars() {
            let store = match &bar.backing {
                BarBacking::Ram => {
                    let name = bar_name(&cdev_name, bdf, i as u32);
                    BarStore::Ram(Arc::new(PhysMemory::with_frames(&name, bar_start(i as u32), bar.size, frame_size)?))
                }
                BarBacking::Registers(r) => {
                    // The placeholder is never written; its pages exist only
                    // so that the mapping is a real one whose faults reach us.
                    let name = bar_name(&cdev_name, bdf, i as u32);
                    let len = page::page_align(bar.size).ok_or(VfioError::new(Errno::INVAL, "BAR too large"))?;
                    let placeholder = Arc::new(PhysMemory::new(&name, bar_start(i as u32), len)?);
                    BarStore::Registers { regs: r.clone(), placeholder }
                }
            };
            bars[i] = Some(Bar { len: bar.size, store });
        }
        let irqs = crate::intrs::Irqs::new();
        let irq_line = Arc::clone(pci.irq_line());
        irq_line.set_sink(Some(irqs.clone()));
        let bus_master = Arc::clone(pci.bus_master());
        Ok(Arc::new(Self {
            cdev_name,
            bdf,
            bars,
            frame_size,
            memory_lock: RwLock::new(MemoryState {
                pci,
                dmabufs: HashMap::new(),
                pm_runtime_engaged: false,
                pm_wake_eventfd: None,
            }),
            open_lock: Mutex::new(()),
            open_count: AtomicU32::new(0),
            memory_lock_writer: AtomicU64::new(0),
            fault_around: std::sync::atomic::AtomicBool::new(true),
            revoke_timeout: Mutex::new(None),
            irqs,
            irq_line,
            bus_master,
        }))
    }

    /// Creates a device from the catalogue (`edu-plus`, `multi-bar`, ...).
    ///
    /// # Errors
    ///
    /// `ENOENT` for an unknown name; else as [`VfioPciDevice::new`].
    pub fn from_catalogue(cdev_index: u32, bdf: Bdf, name: &str) -> Result<Arc<Self>, VfioError> {
        let Some(spec) = pci::catalogue::by_name(name) else {
            return Err(VfioError::new(Errno::NOENT, format!("no catalogue device named {name:?}")));
        };
        Self::new(cdev_index, bdf, spec)
    }

    /// Bytes per frame of the RAM BARs' storage (a BAR smaller than that is
    /// one frame of its own size).
    pub fn frame_size(&self) -> u64 {
        self.frame_size
    }

    /// The cdev name (`vfio0`).
    pub fn cdev_name(&self) -> &str {
        &self.cdev_name
    }

    /// The PCI address.
    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// Opens the device (a new device file). The first open enables the
    /// function: D0 and COMMAND.MEMORY set, as `pci_enable_device()` leaves it.
    pub fn open(self: &Arc<Self>) -> DeviceFd {
        let _open = self.open_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.open_count.load(Ordering::Relaxed) == 0 {
            let mut mem = self.lock_memory_write();
            mem.pci.set_power_state(PowerState::D0);
            let cmd = mem.pci.command() | pci::regs::COMMAND_MEMORY;
            // Writing COMMAND through the config space cannot fail.
            let _ = mem.pci.config_write(pci::regs::COMMAND, &cmd.to_le_bytes());
        }
        self.open_count.fetch_add(1, Ordering::Relaxed);
        DeviceFd { file: Arc::new(DeviceFile { vdev: self.clone() }) }
    }

    /// Bounds how long a revoke waits for importers to unmap this device's
    /// buffers (present and future). When the bound expires the revoke still
    /// completes (status set, CPU mappings zapped), logs an error naming the
    /// buffer, and the operation that revoked returns `ETIMEDOUT`. `None`
    /// (the default) waits as long as it takes, like Linux, with a warning
    /// in the log every few seconds.
    pub fn set_revoke_timeout(&self, timeout: Option<std::time::Duration>) {
        // The leaf lock is released before the buffer list is read.
        *self.revoke_timeout.lock().unwrap_or_else(|e| e.into_inner()) = timeout;
        for buf in self.dmabufs() {
            buf.set_revoke_timeout(timeout);
        }
    }

    /// The bound set by [`VfioPciDevice::set_revoke_timeout`].
    pub fn revoke_timeout(&self) -> Option<std::time::Duration> {
        *self.revoke_timeout.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Turns fault-around on (the default) or off for this device's
    /// mappings: off, every order-0 fault maps exactly one page, as Linux
    /// does for a VFIO BAR; on, it maps the pages around it that the same
    /// checks allow (up to [`crate::FAULT_AROUND_BYTES`]).
    pub fn set_fault_around(&self, on: bool) {
        self.fault_around.store(on, Ordering::Relaxed);
    }

    /// Whether fault-around is on.
    pub fn fault_around(&self) -> bool {
        self.fault_around.load(Ordering::Relaxed)
    }

    /// Number of open device files (including those held by mappings).
    pub fn open_count(&self) -> u32 {
        self.open_count.load(Ordering::Relaxed)
    }

    /// Reads config space as the device's sysfs `config` file does: no
    /// device file is opened and nothing is virtualised on the way.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a range past config space.
    pub fn sysfs_config_read(&self, offset: u64, data: &mut [u8]) -> Result<(), VfioError> {
        Ok(self.lock_memory_read().pci.config_read(offset, data)?)
    }

    /// Whether memory decoding is enabled (D0..D2 and COMMAND.MEMORY set).
    pub fn memory_enabled(&self) -> bool {
        self.lock_memory_read().pci.memory_enabled()
    }

    /// Current power state.
    pub fn power_state(&self) -> PowerState {
        self.lock_memory_read().pci.power_state()
    }

    /// Every buffer exported from this device that is still alive (explicit
    /// and per-mapping), in export order.
    pub fn dmabufs(&self) -> Vec<Arc<DmaBuf>> {
        let mem = self.lock_memory_read();
        let mut v: Vec<Arc<DmaBuf>> = mem.dmabufs.values().filter_map(|w| w.upgrade()).collect();
        drop(mem);
        v.sort_by_key(|b| b.id());
        v
    }

    /// The length of BAR `index`, if it exists.
    pub fn bar_len(&self, index: u32) -> Option<u64> {
        self.bar(index).map(|b| b.len)
    }

    /// Whether BAR `index` is RAM (not registers).
    pub fn bar_is_ram(&self, index: u32) -> bool {
        self.bar(index).is_some_and(|b| b.registers().is_none())
    }

    pub(crate) fn bar(&self, index: u32) -> Option<&Bar> {
        self.bars.get(index as usize).and_then(Option::as_ref)
    }

    /// `bar_mmap_supported[index]`: every memory BAR, registers included
    /// (their accesses trap and are emulated; see `dmabuf::fault`).
    pub(crate) fn bar_mmap_len(&self, index: u32) -> Option<u64> {
        self.bar(index).map(|b| b.len)
    }

    pub(crate) fn lock_memory_write(&self) -> MemoryWriteGuard<'_> {
        let guard = self.memory_lock.write().unwrap_or_else(|e| e.into_inner());
        MemoryWriteGuard::new(guard, self)
    }

    pub(crate) fn try_lock_memory_write(&self) -> Option<MemoryWriteGuard<'_>> {
        let guard = self.memory_lock.try_write().ok()?;
        Some(MemoryWriteGuard::new(guard, self))
    }

    /// Refuses a device call made by the thread that holds this device's
    /// `memory_lock` for write — in practice an importer calling back into
    /// the device from `invalidate_mappings` during a revoke. Taking the
    /// lock again would deadlock that thread forever; `EDEADLK` says why.
    ///
    /// Then resumes the device from runtime low power, as the kernel's
    /// runtime-PM wrapper around every device-fd call does.
    pub(crate) fn enter(&self) -> Result<(), VfioError> {
        if self.memory_lock_writer.load(Ordering::Relaxed) == crate::private::this_thread() {
            return fail(Errno::DEADLK, "called back from a revoke of this device (memory_lock held by this thread)");
        }
        crate::pm::runtime_resume(self);
        Ok(())
    }

    /// Whether the device is in runtime low power (faults SIGBUS).
    pub fn low_power(&self) -> bool {
        self.lock_memory_read().pm_runtime_engaged
    }

    pub(crate) fn lock_memory_read(&self) -> MemoryReadGuard<'_> {
        self.memory_lock.read().unwrap_or_else(|e| e.into_inner())
    }

    /// `vfio_pci_revoke_bars()`: temporarily revoke every buffer of this
    /// device (importers invalidated and drained, CPU mappings zapped).
    ///
    /// Preconditions: `memory_lock` held for write (the guard proves it).
    /// No cut frame is restored here: the pass leaves no buffer `Ok`.
    pub(crate) fn revoke_bars(&self, mem: &mut MemoryWriteGuard<'_>) -> Result<(), VfioError> {
        vdmabuf::dma_buf_move(mem, true)
    }

    /// `vfio_pci_unrevoke_bars()`: un-revoke every temporarily revoked buffer.
    ///
    /// Preconditions: `memory_lock` held for write (the guard proves it).
    pub(crate) fn unrevoke_bars(&self, mem: &mut MemoryWriteGuard<'_>) -> Result<(), VfioError> {
        self.restore_frames_to_unrevoke(mem);
        vdmabuf::dma_buf_move(mem, false)
    }

    /// `VFIO_DEVICE_RESET`: take the lock, put the function in D0 first (an
    /// importer may need the device while handling invalidate), revoke,
    /// reset, and un-revoke if memory is enabled afterwards. RAM BAR contents
    /// survive (we model no device that clears its memory on reset).
    /// A revoke whose bounded importer wait expired has still revoked
    /// everything, so the reset goes on and the error is returned after it.
    pub(crate) fn reset(&self) -> Result<(), VfioError> {
        let mut mem = self.lock_memory_write();
        mem.pci.set_power_state(PowerState::D0);
        let revoked = self.revoke_bars(&mut mem);
        mem.pci.reset_function();
        let unrevoked = if mem.pci.memory_enabled() { self.unrevoke_bars(&mut mem) } else { Ok(()) };
        revoked.and(unrevoked)
    }

    /// Last close of a device file (`vfio_pci_core_close_device`): clean up
    /// the buffers first (revoke, then sever each from the device), then
    /// disable the function: interrupts off and their eventfds released,
    /// reset, memory decoding and bus mastering off.
    fn close_device(&self) {
        vdmabuf::dma_buf_cleanup(self);
        let mut mem = self.lock_memory_write();
        crate::pm::runtime_pm_exit_locked(&mut mem);
        self.irqs.close();
        mem.pci.reset_function();
        let cmd = mem.pci.command() & !(pci::regs::COMMAND_MEMORY | pci::regs::COMMAND_MASTER);
        let _ = mem.pci.config_write(pci::regs::COMMAND, &cmd.to_le_bytes());
    }

    fn release_file(&self) {
        let _open = self.open_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.open_count.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.close_device();
        }
    }
}

/// The name of BAR `index`'s buffers and memfd: `"<cdev>:<BDF>/<index in hex>"`.
pub(crate) fn bar_name(cdev: &str, bdf: Bdf, index: u32) -> String {
    format!("{cdev}:{bdf}/{index:x}")
}

/// One open device file. Its last reference closing (every [`DeviceFd`]
/// dup and every per-mapping buffer that owns it) counts as one close.
struct DeviceFile {
    vdev: Arc<VfioPciDevice>,
}

impl Drop for DeviceFile {
    fn drop(&mut self) {
        self.vdev.release_file();
    }
}

/// A handle to an open device file: the VFIO device fd.
///
/// Its methods are the device's ioctls, `pread`/`pwrite` and `mmap`.
/// [`DeviceFd::dup`] shares the file; the file closes when every dup and
/// every device-fd mapping made through it is gone.
///
/// Every call that would take the device's `memory_lock` fails with
/// `EDEADLK` when made by the thread that holds it — an importer calling
/// back into the device from `invalidate_mappings` while this device
/// revokes. (Touching a BAR mapping from there cannot be refused: the fault
/// waits for the revoke, which waits for the importer. Linux deadlocks the
/// same way; importers must not do it.)
pub struct DeviceFd {
    file: Arc<DeviceFile>,
}

impl fmt::Debug for DeviceFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceFd").field("vdev", &self.file.vdev).finish()
    }
}

impl DeviceFd {
    /// The device.
    pub fn device(&self) -> &Arc<VfioPciDevice> {
        &self.file.vdev
    }

    /// `dup(2)`: another handle to the same open file.
    pub fn dup(&self) -> DeviceFd {
        DeviceFd { file: self.file.clone() }
    }

    /// `close(2)`. Mappings made through this file keep it open.
    pub fn close(self) {}

    /// `VFIO_DEVICE_GET_REGION_INFO`.
    ///
    /// BARs: READ|WRITE, plus MMAP for RAM BARs; a missing BAR has size 0 and
    /// no flags. ROM: size 0 and no flags (no device here has a ROM BAR or a
    /// shadow ROM, so `vfio_pci_ioctl_get_region_info()` stops at the
    /// empty resource). CONFIG is 4 KiB, READ|WRITE. `offset` is
    /// `index << 40`.
    ///
    /// # Errors
    ///
    /// `EINVAL` for VGA (the kernel answers it only when `vdev->has_vga`:
    /// a VGA-class function with `CONFIG_VFIO_PCI_VGA`, and no catalogue
    /// device has that class) and for an index past the last region.
    pub fn region_info(&self, index: u32) -> Result<vfio_region_info, VfioError> {
        self.device().enter()?;
        if index >= VFIO_PCI_NUM_REGIONS {
            return fail(Errno::INVAL, "region index out of range");
        }
        if index == VFIO_PCI_VGA_REGION_INDEX {
            return fail(Errno::INVAL, "no VGA region: not a VGA device");
        }
        let vdev = self.device();
        let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        let (size, flags) = match index {
            i if i < VFIO_PCI_ROM_REGION_INDEX => match vdev.bar(i) {
                Some(bar) => (bar.len, rw | VFIO_REGION_INFO_FLAG_MMAP),
                None => (0, 0),
            },
            VFIO_PCI_CONFIG_REGION_INDEX => (pci::regs::CFG_SPACE_EXP_SIZE, rw),
            _ => (0, 0),
        };
        Ok(vfio_region_info {
            argsz: std::mem::size_of::<vfio_region_info>() as u32,
            flags,
            index,
            cap_offset: 0,
            size,
            offset: index_to_offset(index),
        })
    }

    /// `pread(2)` on the device fd at `offset` (`index << 40 | offset in region`).
    /// Returns the number of bytes read (short at the end of a region).
    ///
    /// # Errors
    ///
    /// `EINVAL` for a region that cannot be read or an offset past its end;
    /// `EIO` for a BAR while memory decoding is disabled.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, VfioError> {
        self.device().enter()?;
        crate::rdwr::rw(self.device(), offset, crate::rdwr::Io::Read(buf))
    }

    /// `pwrite(2)` on the device fd. Config-space writes go through the
    /// virtualisation hooks (COMMAND.MEMORY, power state, FLR revoke and
    /// un-revoke BAR mappings).
    ///
    /// # Errors
    ///
    /// As [`DeviceFd::read`]; plus `ETIMEDOUT` when a revoke's importer wait
    /// has a bound and an importer outlives it.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<usize, VfioError> {
        self.device().enter()?;
        crate::rdwr::rw(self.device(), offset, crate::rdwr::Io::Write(data))
    }

    /// Reads a config-space register (`CONFIG` region).
    ///
    /// # Errors
    ///
    /// As [`DeviceFd::read`].
    pub fn config_read(&self, reg: u64, width: usize) -> Result<u32, VfioError> {
        let mut b = [0u8; 4];
        let width = width.min(4);
        self.read(config_offset(reg)?, &mut b[..width])?;
        Ok(u32::from_le_bytes(b))
    }

    /// Writes a config-space register (`CONFIG` region).
    ///
    /// # Errors
    ///
    /// As [`DeviceFd::write`].
    pub fn config_write(&self, reg: u64, width: usize, value: u32) -> Result<(), VfioError> {
        let b = value.to_le_bytes();
        self.write(config_offset(reg)?, &b[..width.min(4)])?;
        Ok(())
    }

    /// Sets or clears COMMAND.MEMORY (a read-modify-write of COMMAND).
    ///
    /// # Errors
    ///
    /// As [`DeviceFd::write`].
    pub fn set_memory_enable(&self, on: bool) -> Result<(), VfioError> {
        let cmd = self.config_read(pci::regs::COMMAND, 2)? as u16;
        let cmd = if on { cmd | pci::regs::COMMAND_MEMORY } else { cmd & !pci::regs::COMMAND_MEMORY };
        self.config_write(pci::regs::COMMAND, 2, u32::from(cmd))
    }

    /// Writes the PM capability's power state (PMCSR bits 1:0).
    ///
    /// # Errors
    ///
    /// As [`DeviceFd::write`].
    pub fn set_power_state(&self, state: PowerState) -> Result<(), VfioError> {
        let ctrl = self.config_read(pci::regs::PM_CTRL, 2)? as u16;
        let ctrl = (ctrl & !pci::regs::PM_CTRL_STATE_MASK) | state.pmcsr_bits();
        self.config_write(pci::regs::PM_CTRL, 2, u32::from(ctrl))
    }

    /// Starts a function-level reset through the `PCIe` Device Control register.
    ///
    /// # Errors
    ///
    /// As [`DeviceFd::write`].
    pub fn flr(&self) -> Result<(), VfioError> {
        let ctl = self.config_read(pci::regs::EXP_DEVCTL, 2)? as u16;
        self.config_write(pci::regs::EXP_DEVCTL, 2, u32::from(ctl | pci::regs::EXP_DEVCTL_BCR_FLR))
    }

    /// `VFIO_DEVICE_RESET`.
    ///
    /// # Errors
    ///
    /// `ETIMEDOUT` only when an importer outlives a bounded revoke wait.
    pub fn reset(&self) -> Result<(), VfioError> {
        self.device().enter()?;
        self.device().reset()
    }

    /// `mmap(2)` of the device fd: a BAR window, backed by a new per-mapping
    /// buffer (`mmap_prep_dmabuf`). The VMA's `vm_pgoff` is exactly
    /// `offset >> 12`, region index included, as `/proc/self/maps` shows.
    ///
    /// # Errors
    ///
    /// `EINVAL`: zero length, unaligned offset, region index past the last
    /// region, ROM/CONFIG/VGA, a BAR that is missing or not mappable,
    /// `MAP_PRIVATE`, or a window past the page-aligned BAR end. `EEXIST`
    /// when `args.addr` is taken; `ENOMEM` when no address range is free.
    pub fn mmap(&self, aspace: &AddressSpace, args: MmapArgs) -> Result<u64, VfioError> {
        self.device().enter()?;
        Ok(mmap::device_mmap(self, crate::dmabuf::mmap::Local::new(aspace), args)?.0)
    }

    /// `VFIO_DEVICE_FEATURE` with the raw payload that follows the 8-byte
    /// header (`argsz` = header + `data.len()`).
    ///
    /// # Errors
    ///
    /// `EINVAL` for bad header flags; `ENOTTY` for an unknown feature; each
    /// feature's own errors (see [`DeviceFd::feature_dma_buf`] and friends).
    pub fn feature(&self, flags: u32, data: &[u8]) -> Result<FeatureReply, VfioError> {
        self.device().enter()?;
        crate::feature::device_feature(self, flags, data)
    }

    /// `VFIO_DEVICE_FEATURE_DMA_BUF` (GET): export `ranges` (offset, length)
    /// of BAR `region_index` as a new buffer fd.
    ///
    /// # Errors
    ///
    /// See spec §4.4: `EINVAL` (no ranges, non-zero flags, zero/unaligned
    /// range, summed overflow, range past the BAR), `ENODEV`
    /// (not a BAR, or no such BAR), `EOVERFLOW` (a range's end overflows).
    pub fn feature_dma_buf(
        &self,
        region_index: u32,
        open_flags: u32,
        ranges: &[(u64, u64)],
    ) -> Result<dmabuf::DmaBufFd, VfioError> {
        let payload = encode_dma_buf_payload(region_index, open_flags, 0, ranges);
        match self.feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF, &payload)? {
            FeatureReply::DmaBuf(fd) => Ok(fd),
            FeatureReply::Done => unreachable!("GET without PROBE returns a buffer"),
        }
    }

    /// `VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE` (SET): permanently revoke the
    /// buffer behind `dmabuf_fd`.
    ///
    /// # Errors
    ///
    /// `EBADF` (not an open fd), `EINVAL` (not a buffer), `ENODEV` (a buffer
    /// of another device, or of a closed one), `EBADFD` (already permanently
    /// revoked).
    pub fn feature_dma_buf_revoke(&self, dmabuf_fd: i32) -> Result<(), VfioError> {
        let data = dmabuf_fd.to_ne_bytes();
        self.feature(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE, &data).map(|_| ())
    }

    /// `VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR` (SET): memory attribute for
    /// future mmaps of the buffer (`..._MEMATTR_NC` or `..._MEMATTR_WC`).
    ///
    /// # Errors
    ///
    /// As the revoke feature for the fd; `ENOENT` for an unknown attribute.
    pub fn feature_dma_buf_memattr(&self, dmabuf_fd: i32, memattr: u32) -> Result<(), VfioError> {
        let mut data = dmabuf_fd.to_ne_bytes().to_vec();
        data.extend_from_slice(&memattr.to_ne_bytes());
        self.feature(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR, &data).map(|_| ())
    }
}

/// The device-fd offset of config register `reg`; past config space (or
/// past any offset) is `EFAULT`, as an access there is.
fn config_offset(reg: u64) -> Result<u64, VfioError> {
    if reg >= VFIO_PCI_OFFSET_MASK {
        return fail(Errno::FAULT, "register offset outside config space");
    }
    Ok(index_to_offset(VFIO_PCI_CONFIG_REGION_INDEX) + reg)
}

/// What a successful `VFIO_DEVICE_FEATURE` returns.
#[derive(Debug)]
pub enum FeatureReply {
    /// 0: done (SET, or a PROBE that found the feature).
    Done,
    /// A new buffer fd (`DMA_BUF` GET).
    DmaBuf(dmabuf::DmaBufFd),
}

/// `VFIO_DEVICE_PCI_HOT_RESET` across a set of open devices: as
/// [`dev_set_hot_reset`] over their devices.
///
/// # Errors
///
/// As [`dev_set_hot_reset`].
pub fn hot_reset(devices: &[&DeviceFd]) -> Result<(), VfioError> {
    let vdevs: Vec<&VfioPciDevice> = devices.iter().map(|d| d.device().as_ref()).collect();
    dev_set_hot_reset(&vdevs)
}

/// `vfio_pci_dev_set_hot_reset()`: reset every device of a set (the
/// `dev_set`, open or not): take every device's `memory_lock` by try-lock,
/// unwinding on contention (locking several devices in a fixed order is
/// prone to deadlock), revoke each, reset each, then un-revoke each device
/// that is open and has memory enabled. Which devices form the set, and
/// whether the caller owns them all, is the caller's business.
///
/// # Errors
///
/// `EBUSY` when some device's `memory_lock` is contended (nothing was
/// changed); `ETIMEDOUT` as for a single reset.
pub fn dev_set_hot_reset(devices: &[&VfioPciDevice]) -> Result<(), VfioError> {
    let mut guards = Vec::with_capacity(devices.len());
    for vdev in devices {
        match vdev.try_lock_memory_write() {
            Some(g) => guards.push((vdev, g)),
            None => return fail(Errno::BUSY, "a device of the set is busy"),
        }
    }
    // As in a single reset, an expired importer wait does not stop the
    // reset: the first error is returned once every device is done.
    let mut result = Ok(());
    for (vdev, mem) in &mut guards {
        result = result.and(vdev.revoke_bars(mem));
    }
    for (_, mem) in &mut guards {
        mem.pci.set_power_state(PowerState::D0);
        mem.pci.reset_function();
    }
    for (vdev, mem) in &mut guards {
        if vdev.open_count() > 0 && mem.pci.memory_enabled() {
            result = result.and(vdev.unrevoke_bars(mem));
        }
    }
    result
}
