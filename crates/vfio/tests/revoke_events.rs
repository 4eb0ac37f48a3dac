//! Every event of spec §4.8 that revokes or un-revokes BAR mappings, and the
//! close orderings of §9.3, observed through real mappings: a revoked mapping
//! raises a real SIGBUS (`BUS_ADRERR`), an un-revoked one shows the data that
//! was written before the revoke.
//!
//! Each test has its own address space and device. The fixture maps a window
//! of edu-plus BAR1 through the device fd and an explicit buffer over another
//! window of BAR1, and writes a marker into the first two pages of each; the
//! last two pages stay untouched, so a probe there is always a first touch.
//!
//! Events that revoke and un-revoke inside one call (FLR, reset, hot reset)
//! are watched from the middle: a holding importer on every buffer stops the
//! revoke at its importer wait, where the buffer is already revoked; the test
//! probes a first-touch page of that buffer's mapping, then lets the revoke go
//! on by unmapping.

mod common;

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{assert_sigbus, device, OnInvalidate, TestImporter, BAR1, PAGE, RDWR, STILL_BLOCKED, WATCHDOG};
use dmabuf::{DmaBuf, DmaBufFd, ImporterMapping, Status};
use mm::{probe, AddressSpace};
use pci::PowerState;
use rustix::io::Errno;
use vfio::{hot_reset, mmap_dmabuf, DeviceFd, MmapArgs, VfioDmaBuf, VfioPciDevice};

/// Length of each mapping: pages 0 and 1 get markers, pages 2 and 3 stay untouched.
const WINDOW: u64 = 4 * PAGE;
/// BAR1 offset of the device-fd mapping.
const DEV_BAR_OFFSET: u64 = 0x10000;
/// BAR1 offset of the explicit buffer.
const BUF_BAR_OFFSET: u64 = 0x20000;

/// Asserts that every page of the window at `va` raises SIGBUS.
#[track_caller]
fn assert_window_sigbus(va: u64) {
    for page in 0..WINDOW / PAGE {
        assert_sigbus(va + page * PAGE + 8);
    }
}

/// One device with a device-fd mapping and a mapped explicit buffer, both
/// written.
struct Fixture {
    aspace: AddressSpace,
    vdev: Arc<VfioPciDevice>,
    fd: DeviceFd,
    dev_va: u64,
    buf_fd: DmaBufFd,
    buf_va: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let aspace = AddressSpace::new().unwrap();
        let vdev = device("edu-plus");
        // One page per fault, as Linux maps a BAR: `watch_revoke` relies on
        // an untouched page still being unmapped while a revoke is halfway.
        vdev.set_fault_around(false);
        let fd = vdev.open();
        let dev_va = fd.mmap(&aspace, MmapArgs::shared(BAR1 + DEV_BAR_OFFSET, WINDOW)).unwrap();
        let buf_fd = fd.feature_dma_buf(1, RDWR, &[(BUF_BAR_OFFSET, WINDOW)]).unwrap();
        let buf_va = mmap_dmabuf(&aspace, &buf_fd, MmapArgs::shared(0, WINDOW)).unwrap();
        let f = Fixture { aspace, vdev, fd, dev_va, buf_fd, buf_va };
        f.write_markers();
        f.assert_markers();
        f
    }

    /// Pages 0 and 1 of both mappings, at byte 8, with the value each holds:
    /// distinct per address, so a page shown at the wrong place is caught.
    fn marked(&self) -> [(u64, u64); 4] {
        let m = |va: u64| (va, 0x5eed_0000_0000_0000 ^ va);
        [m(self.dev_va + 8), m(self.dev_va + PAGE + 8), m(self.buf_va + 8), m(self.buf_va + PAGE + 8)]
    }

    fn write_markers(&self) {
        for (va, value) in self.marked() {
            probe::write_u64(va, value).unwrap();
        }
    }

    /// The markers read back through the mappings: the data survived, and no
    /// write attempted while revoked landed.
    #[track_caller]
    fn assert_markers(&self) {
        for (va, value) in self.marked() {
            assert_eq!(probe::read_u64(va).unwrap(), value, "marker at {va:#x}");
        }
    }

    /// The per-mapping buffer of the device-fd mapping.
    fn dev_buffer(&self) -> Arc<DmaBuf> {
        let mut bufs: Vec<Arc<DmaBuf>> =
            self.vdev.dmabufs().into_iter().filter(|b| VfioDmaBuf::of(b).unwrap().is_mmap_buffer()).collect();
        assert_eq!(bufs.len(), 1, "one device-fd mapping");
        bufs.pop().unwrap()
    }

    fn buf(&self) -> &Arc<DmaBuf> {
        self.buf_fd.buffer()
    }

    /// Both mappings fault on every page; the buffers have the given states.
    #[track_caller]
    fn assert_revoked(&self, dev_status: Status, buf_status: Status) {
        assert_eq!(self.dev_buffer().status(), dev_status);
        assert_eq!(self.buf().status(), buf_status);
        assert_window_sigbus(self.dev_va);
        assert_window_sigbus(self.buf_va);
    }

    /// Both buffers Ok, every page readable, markers intact.
    #[track_caller]
    fn assert_restored(&self) {
        assert_eq!(self.dev_buffer().status(), Status::Ok);
        assert_eq!(self.buf().status(), Status::Ok);
        probe::touch_pages(self.dev_va, WINDOW).unwrap();
        probe::touch_pages(self.buf_va, WINDOW).unwrap();
        self.assert_markers();
    }

    /// The first-touch page of each mapping, by buffer id.
    fn untouched_pages(&self) -> Vec<(Arc<DmaBuf>, u64)> {
        vec![(self.dev_buffer(), self.dev_va + 3 * PAGE), (self.buf().clone(), self.buf_va + 3 * PAGE)]
    }
}

/// Runs `event` on its own thread while a holding importer sits on every
/// buffer of `watch`. At each invalidate, the buffer must already be
/// `TempRevoked` and a first touch of its page must raise SIGBUS; then the test
/// unmaps, which lets the revoke go on. Returns the event's result, after
/// checking that the un-revoke invalidated nobody.
fn watch_revoke<R: Send + 'static>(watch: &[(Arc<DmaBuf>, u64)], event: impl FnOnce() -> R + Send + 'static) -> R {
    let (gate, rx) = TestImporter::new(OnInvalidate::Hold);
    let mut attachments = Vec::new();
    let mut held: HashMap<u64, (ImporterMapping, u64)> = HashMap::new();
    for (buf, va) in watch {
        let att = buf.attach(gate.as_importer()).unwrap();
        held.insert(buf.id(), (att.map().unwrap(), *va));
        attachments.push(att);
    }
    let (done_tx, done_rx) = mpsc::channel();
    // Not scoped: if an assertion below fails, the mappings unwind, the event
    // finishes on its own and nobody waits for it.
    thread::spawn(move || {
        let _ = done_tx.send(event());
    });
    for _ in 0..watch.len() {
        let inv = rx.recv_timeout(WATCHDOG).expect("the event revokes every watched buffer");
        let (id, status) = (inv.buffer, inv.status);
        assert_eq!(status, Status::TempRevoked, "buffer {id} invalidated before being revoked");
        let (mapping, va) = held.remove(&id).expect("each buffer is invalidated once");
        // Revoked, not yet zapped: a first touch already faults.
        assert_sigbus(va);
        // Still blocked on the importer: give a revoke that does not wait
        // the time to (wrongly) return.
        match done_rx.recv_timeout(STILL_BLOCKED) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => panic!("the event returned before its importers unmapped"),
        }
        mapping.unmap();
    }
    let r = done_rx.recv_timeout(WATCHDOG).expect("the event finishes once the importers unmapped");
    assert!(matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty)), "un-revoke must not invalidate");
    r
}

#[test]
fn clearing_command_memory_revokes_both_mappings_and_setting_it_restores_them() {
    let f = Fixture::new();
    let cmd = f.fd.config_read(pci::regs::COMMAND, 2).unwrap();
    assert_ne!(cmd & u32::from(pci::regs::COMMAND_MEMORY), 0);

    f.fd.config_write(pci::regs::COMMAND, 2, cmd & !u32::from(pci::regs::COMMAND_MEMORY)).unwrap();
    // Memory off: both buffers TempRevoked, every page SIGBUS.
    assert!(!f.vdev.memory_enabled());
    f.assert_revoked(Status::TempRevoked, Status::TempRevoked);

    f.fd.config_write(pci::regs::COMMAND, 2, cmd).unwrap();
    // Memory on: both Ok, the data written before is back, the garbage never landed.
    assert!(f.vdev.memory_enabled());
    f.assert_restored();
}

#[test]
fn command_write_that_keeps_memory_set_revokes_nothing() {
    let f = Fixture::new();
    let faults_before = f.aspace.fault_stats();
    let cmd = f.fd.config_read(pci::regs::COMMAND, 2).unwrap();
    f.fd.config_write(pci::regs::COMMAND, 2, cmd ^ u32::from(pci::regs::COMMAND_MASTER)).unwrap();
    assert_eq!(f.fd.config_read(pci::regs::COMMAND, 2).unwrap(), cmd ^ u32::from(pci::regs::COMMAND_MASTER));
    // Nothing revoked, nothing zapped: the marked pages are still mapped and
    // reading them takes no new fault.
    assert_eq!(f.dev_buffer().status(), Status::Ok);
    assert_eq!(f.buf().status(), Status::Ok);
    f.assert_markers();
    let faults_after = f.aspace.fault_stats();
    assert_eq!(faults_after.order0, faults_before.order0, "{faults_before:?} -> {faults_after:?}");
    assert_eq!(faults_after.sigbus, 0);
}

#[test]
fn command_write_keeping_memory_set_unrevokes_what_a_timed_out_revoke_left_behind() {
    // Spec §4.8: a COMMAND write that keeps or sets MEMORY un-revokes after
    // the write whenever memory is enabled. A revoke whose bounded importer
    // wait expires reaches a state where that matters: it revoked every
    // buffer ("proceeds without them") and reported ETIMEDOUT.
    let f = Fixture::new();
    f.buf().set_revoke_timeout(Some(Duration::from_millis(50)));
    let (gate, _rx) = TestImporter::new(OnInvalidate::Hold);
    let attachment = f.buf().attach(gate.as_importer()).unwrap();
    let stuck = attachment.map().unwrap();
    let e = f.fd.set_memory_enable(false).unwrap_err();
    assert_eq!(e.errno(), Errno::TIMEDOUT, "{e}");
    // The revoke went ahead without the importer.
    assert_eq!(f.buf().status(), Status::TempRevoked);
    assert_window_sigbus(f.buf_va);
    stuck.unmap();
    drop(attachment);

    // Setting MEMORY (whatever the failed write left in COMMAND) must leave
    // memory on and both mappings usable again.
    f.fd.set_memory_enable(true).unwrap();
    assert!(f.vdev.memory_enabled());
    f.assert_restored();
}

#[test]
fn command_write_while_memory_is_off_restores_nothing() {
    let f = Fixture::new();
    f.fd.set_memory_enable(false).unwrap();
    let cmd = f.fd.config_read(pci::regs::COMMAND, 2).unwrap();
    f.fd.config_write(pci::regs::COMMAND, 2, cmd | u32::from(pci::regs::COMMAND_MASTER)).unwrap();
    // MEMORY still clear: still revoked.
    f.assert_revoked(Status::TempRevoked, Status::TempRevoked);
    f.fd.set_memory_enable(true).unwrap();
    f.assert_restored();
}

#[test]
fn pm_ctrl_to_d3hot_revokes_and_back_to_d0_restores() {
    let f = Fixture::new();
    f.fd.set_power_state(PowerState::D3Hot).unwrap();
    // D3hot: both TempRevoked, SIGBUS everywhere; COMMAND.MEMORY is untouched.
    assert_eq!(f.vdev.power_state(), PowerState::D3Hot);
    assert_ne!(f.fd.config_read(pci::regs::COMMAND, 2).unwrap() & u32::from(pci::regs::COMMAND_MEMORY), 0);
    f.assert_revoked(Status::TempRevoked, Status::TempRevoked);

    f.fd.set_power_state(PowerState::D0).unwrap();
    // D0 with memory on: restored.
    assert_eq!(f.vdev.power_state(), PowerState::D0);
    f.assert_restored();
}

#[test]
fn pm_ctrl_back_to_d0_restores_nothing_while_memory_is_off() {
    let f = Fixture::new();
    f.fd.set_power_state(PowerState::D3Hot).unwrap();
    f.fd.set_memory_enable(false).unwrap();
    f.fd.set_power_state(PowerState::D0).unwrap();
    // D0 but MEMORY clear: still revoked.
    f.assert_revoked(Status::TempRevoked, Status::TempRevoked);
    f.fd.set_memory_enable(true).unwrap();
    f.assert_restored();
}

#[test]
fn flr_through_devctl_revokes_during_the_reset_and_restores_after() {
    let f = Fixture::new();
    let fd = f.fd.dup();
    watch_revoke(&f.untouched_pages(), move || fd.flr()).unwrap();
    // After the FLR: COMMAND was restored, memory is on, both Ok, data kept.
    assert!(f.vdev.memory_enabled());
    f.assert_restored();
}

#[test]
fn flr_while_memory_is_off_leaves_the_mappings_revoked() {
    let f = Fixture::new();
    f.fd.set_memory_enable(false).unwrap();
    f.fd.flr().unwrap();
    f.assert_revoked(Status::TempRevoked, Status::TempRevoked);
    f.fd.set_memory_enable(true).unwrap();
    f.assert_restored();
}

#[test]
fn device_reset_revokes_during_the_reset_and_restores_after() {
    let f = Fixture::new();
    let fd = f.fd.dup();
    watch_revoke(&f.untouched_pages(), move || fd.reset()).unwrap();
    assert!(f.vdev.memory_enabled());
    f.assert_restored();
}

#[test]
fn device_reset_from_d3hot_puts_the_device_in_d0_and_restores() {
    let f = Fixture::new();
    f.fd.set_power_state(PowerState::D3Hot).unwrap();
    f.assert_revoked(Status::TempRevoked, Status::TempRevoked);
    f.fd.reset().unwrap();
    // The reset set D0 first; memory is on afterwards, so it un-revoked.
    assert_eq!(f.vdev.power_state(), PowerState::D0);
    f.assert_restored();
}

#[test]
fn device_reset_while_memory_is_off_leaves_the_mappings_revoked() {
    let f = Fixture::new();
    f.fd.set_memory_enable(false).unwrap();
    f.fd.reset().unwrap();
    f.assert_revoked(Status::TempRevoked, Status::TempRevoked);
    f.fd.set_memory_enable(true).unwrap();
    f.assert_restored();
}

#[test]
fn hot_reset_revokes_both_devices_during_the_reset_and_restores_both() {
    let a = Fixture::new();
    let b = Fixture::new();
    let mut watch = a.untouched_pages();
    watch.extend(b.untouched_pages());
    let (fd1, fd2) = (a.fd.dup(), b.fd.dup());
    watch_revoke(&watch, move || hot_reset(&[&fd1, &fd2])).unwrap();
    a.assert_restored();
    b.assert_restored();
}

#[test]
fn hot_reset_restores_only_the_devices_with_memory_enabled() {
    let a = Fixture::new();
    let b = Fixture::new();
    b.fd.set_memory_enable(false).unwrap();
    hot_reset(&[&a.fd, &b.fd]).unwrap();
    // a: open and enabled, restored. b: memory off, still revoked.
    a.assert_restored();
    b.assert_revoked(Status::TempRevoked, Status::TempRevoked);
    b.fd.set_memory_enable(true).unwrap();
    b.assert_restored();
}

/// `hot_reset(&[&first, &second])` on its own thread; a reset that blocks
/// instead of trying the locks fails the test instead of hanging it.
fn hot_reset_bounded(first: DeviceFd, second: DeviceFd) -> Result<(), vfio::VfioError> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(hot_reset(&[&first, &second]));
    });
    rx.recv_timeout(WATCHDOG).expect("a hot reset must not wait for a contended memory_lock")
}

#[test]
fn hot_reset_with_a_contended_memory_lock_fails_with_ebusy_and_changes_nothing() {
    let a = Fixture::new();
    let b = Fixture::new();
    // Hold b's memory_lock: a memory disable on b stops at its importer wait
    // with the lock held for write, until the importer unmaps.
    let (gate, rx) = TestImporter::new(OnInvalidate::Hold);
    let attachment = b.buf().attach(gate.as_importer()).unwrap();
    let mapping = attachment.map().unwrap();
    let b_fd = b.fd.dup();
    let disable = thread::spawn(move || b_fd.set_memory_enable(false));
    let inv = rx.recv_timeout(WATCHDOG).expect("the memory disable reaches the importer");
    assert_eq!(inv.buffer, b.buf().id());

    // b's lock is held: the hot reset unwinds with EBUSY, in either order,
    // without waiting for the lock.
    let e = hot_reset_bounded(a.fd.dup(), b.fd.dup()).unwrap_err();
    assert_eq!(e.errno(), Errno::BUSY, "{e}");
    let e = hot_reset_bounded(b.fd.dup(), a.fd.dup()).unwrap_err();
    assert_eq!(e.errno(), Errno::BUSY, "{e}");
    // a was left alone: still Ok and mapped, markers intact, no new faults.
    let faults_before = a.aspace.fault_stats();
    a.assert_markers();
    assert_eq!(a.aspace.fault_stats().order0, faults_before.order0);
    assert_eq!(a.dev_buffer().status(), Status::Ok);
    assert_eq!(a.buf().status(), Status::Ok);

    mapping.unmap();
    disable.join().unwrap().unwrap();
    drop(attachment);
    b.assert_revoked(Status::TempRevoked, Status::TempRevoked);
    // Lock free again: the hot reset goes through.
    b.fd.set_memory_enable(true).unwrap();
    hot_reset(&[&a.fd, &b.fd]).unwrap();
    a.assert_restored();
    b.assert_restored();
}

#[test]
fn last_device_close_revokes_explicit_buffers_for_good() {
    let f = Fixture::new();
    let marks = f.marked();
    let Fixture { aspace, vdev, fd, dev_va, buf_fd, buf_va } = f;
    // Closing every device fd: the device-fd mapping keeps the device open,
    // and both mappings keep working.
    let dup = fd.dup();
    drop(fd);
    drop(dup);
    assert_eq!(vdev.open_count(), 1, "the device-fd mapping holds the device file");
    assert!(vdev.memory_enabled());
    assert_eq!(buf_fd.buffer().status(), Status::Ok);
    assert_eq!(probe::read_u64(marks[0].0).unwrap(), marks[0].1);
    assert_eq!(probe::read_u64(marks[2].0).unwrap(), marks[2].1);

    // Unmapping the device-fd mapping is the last close.
    aspace.munmap(dev_va, WINDOW).unwrap();
    assert_eq!(vdev.open_count(), 0);
    assert!(vdev.dmabufs().is_empty(), "cleanup severed every buffer");
    assert_eq!(buf_fd.buffer().status(), Status::TempRevoked);
    assert_window_sigbus(buf_va);
    let e = mmap_dmabuf(&aspace, &buf_fd, MmapArgs::shared(0, WINDOW)).unwrap_err();
    assert_eq!(e.errno(), Errno::NODEV, "{e}");

    // Forever: re-opening the device enables memory, the severed buffer stays dead.
    let fd = vdev.open();
    assert!(vdev.memory_enabled());
    assert_window_sigbus(buf_va);
    let e = mmap_dmabuf(&aspace, &buf_fd, MmapArgs::shared(0, WINDOW)).unwrap_err();
    assert_eq!(e.errno(), Errno::NODEV, "{e}");
    let e = fd.feature_dma_buf_revoke(buf_fd.raw_fd()).unwrap_err();
    assert_eq!(e.errno(), Errno::NODEV, "{e}");
    fd.set_memory_enable(false).unwrap();
    fd.set_memory_enable(true).unwrap();
    assert_window_sigbus(buf_va);
    // The BAR memory itself kept the data: a fresh buffer over the same range shows it.
    let fresh = fd.feature_dma_buf(1, RDWR, &[(BUF_BAR_OFFSET, WINDOW)]).unwrap();
    let va = mmap_dmabuf(&aspace, &fresh, MmapArgs::shared(0, WINDOW)).unwrap();
    assert_eq!(probe::read_u64(va + 8).unwrap(), marks[2].1);
}

#[test]
fn explicit_permanent_revoke_is_never_undone() {
    let f = Fixture::new();
    f.fd.feature_dma_buf_revoke(f.buf_fd.raw_fd()).unwrap();
    // The explicit buffer is dead; the device-fd mapping is untouched.
    assert_eq!(f.buf().status(), Status::PermRevoked);
    assert_window_sigbus(f.buf_va);
    assert_eq!(f.dev_buffer().status(), Status::Ok);
    assert_eq!(probe::read_u64(f.dev_va + 8).unwrap(), f.marked()[0].1);

    // Memory disable and enable un-revoke the device-fd mapping only.
    f.fd.set_memory_enable(false).unwrap();
    assert_eq!(f.buf().status(), Status::PermRevoked);
    assert_window_sigbus(f.dev_va);
    f.fd.set_memory_enable(true).unwrap();
    assert_eq!(f.buf().status(), Status::PermRevoked);
    assert_window_sigbus(f.buf_va);
    assert_eq!(probe::read_u64(f.dev_va + 8).unwrap(), f.marked()[0].1);
    // Nor do D3hot/D0, FLR or reset.
    f.fd.set_power_state(PowerState::D3Hot).unwrap();
    f.fd.set_power_state(PowerState::D0).unwrap();
    f.fd.flr().unwrap();
    f.fd.reset().unwrap();
    assert_eq!(f.buf().status(), Status::PermRevoked);
    assert_window_sigbus(f.buf_va);
    // A second revoke is EBADFD; a new mmap is ENODEV.
    assert_eq!(f.fd.feature_dma_buf_revoke(f.buf_fd.raw_fd()).unwrap_err().errno(), Errno::BADFD);
    let e = mmap_dmabuf(&f.aspace, &f.buf_fd, MmapArgs::shared(0, WINDOW)).unwrap_err();
    assert_eq!(e.errno(), Errno::NODEV, "{e}");
    // The device-fd mapping still works and the BAR kept the buffer's data.
    probe::touch_pages(f.dev_va, WINDOW).unwrap();
    let fresh = f.fd.feature_dma_buf(1, RDWR, &[(BUF_BAR_OFFSET, WINDOW)]).unwrap();
    let va = mmap_dmabuf(&f.aspace, &fresh, MmapArgs::shared(0, WINDOW)).unwrap();
    assert_eq!(probe::read_u64(va + PAGE + 8).unwrap(), f.marked()[3].1);
}

/// Drops `fd` on another thread and waits (bounded) for the close to finish.
#[track_caller]
fn close_without_hanging(fd: DeviceFd) {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        drop(fd);
        let _ = tx.send(());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(()) => {}
        Err(RecvTimeoutError::Timeout) => panic!("the last close hangs"),
        Err(RecvTimeoutError::Disconnected) => panic!("the last close panicked"),
    }
}

#[test]
fn closing_a_device_left_in_d3hot_keeps_its_temp_revoked_buffer_and_does_not_hang() {
    let f = Fixture::new();
    let Fixture { aspace, vdev, fd, dev_va, buf_fd, buf_va } = f;
    fd.set_power_state(PowerState::D3Hot).unwrap();
    assert_eq!(buf_fd.buffer().status(), Status::TempRevoked);
    assert_window_sigbus(buf_va);
    aspace.munmap(dev_va, WINDOW).unwrap();
    // Last close: cleanup's revoke of an already TempRevoked buffer is a no-op.
    close_without_hanging(fd);
    assert_eq!(vdev.open_count(), 0);
    assert_eq!(buf_fd.buffer().status(), Status::TempRevoked);
    assert!(VfioDmaBuf::of(buf_fd.buffer()).unwrap().vdev().is_none(), "cleanup severed the buffer");
    assert_window_sigbus(buf_va);
    let e = mmap_dmabuf(&aspace, &buf_fd, MmapArgs::shared(0, WINDOW)).unwrap_err();
    assert_eq!(e.errno(), Errno::NODEV, "{e}");
    // Re-opening brings the device back to D0 with memory on; the buffer stays dead.
    let fd = vdev.open();
    assert!(vdev.memory_enabled());
    assert_window_sigbus(buf_va);
    drop(fd);
}

#[test]
fn closing_a_device_after_a_permanent_revoke_keeps_the_buffer_perm_revoked() {
    let f = Fixture::new();
    let Fixture { aspace, vdev, fd, dev_va, buf_fd, buf_va } = f;
    fd.feature_dma_buf_revoke(buf_fd.raw_fd()).unwrap();
    assert_eq!(buf_fd.buffer().status(), Status::PermRevoked);
    aspace.munmap(dev_va, WINDOW).unwrap();
    // Last close: cleanup's TempRevoked request on a PermRevoked buffer is a no-op.
    close_without_hanging(fd);
    assert_eq!(vdev.open_count(), 0);
    assert_eq!(buf_fd.buffer().status(), Status::PermRevoked);
    assert_window_sigbus(buf_va);
    let e = mmap_dmabuf(&aspace, &buf_fd, MmapArgs::shared(0, WINDOW)).unwrap_err();
    assert_eq!(e.errno(), Errno::NODEV, "{e}");
}

#[test]
fn device_fd_mapping_made_while_memory_is_off_starts_revoked_and_works_once_enabled() {
    let aspace = AddressSpace::new().unwrap();
    let vdev = device("edu-plus");
    let fd = vdev.open();
    let early = fd.mmap(&aspace, MmapArgs::shared(BAR1, WINDOW)).unwrap();
    probe::write_u64(early + 8, 0x0123_4567).unwrap();
    fd.set_memory_enable(false).unwrap();
    // mmap with memory off succeeds (the legacy device-fd path never refuses);
    // its buffer starts TempRevoked and every page faults.
    let va = fd.mmap(&aspace, MmapArgs::shared(BAR1, WINDOW)).unwrap();
    let bufs = vdev.dmabufs();
    assert_eq!(bufs.len(), 2);
    assert!(bufs.iter().all(|b| b.status() == Status::TempRevoked), "{bufs:?}");
    assert_window_sigbus(va);
    fd.set_memory_enable(true).unwrap();
    assert!(vdev.dmabufs().iter().all(|b| b.status() == Status::Ok));
    probe::touch_pages(va, WINDOW).unwrap();
    assert_eq!(probe::read_u64(va + 8).unwrap(), 0x0123_4567);
    // The same happens in D3hot.
    fd.set_power_state(PowerState::D3Hot).unwrap();
    let d3 = fd.mmap(&aspace, MmapArgs::shared(BAR1 + WINDOW, WINDOW)).unwrap();
    assert_window_sigbus(d3);
    fd.set_power_state(PowerState::D0).unwrap();
    probe::touch_pages(d3, WINDOW).unwrap();
}

#[test]
fn explicit_buffer_exported_while_memory_is_off_starts_revoked_and_maps_once_enabled() {
    let aspace = AddressSpace::new().unwrap();
    let vdev = device("edu-plus");
    let fd = vdev.open();
    fd.write(BAR1 + BUF_BAR_OFFSET + 8, &0x89ab_cdefu64.to_ne_bytes()).unwrap();
    fd.set_memory_enable(false).unwrap();
    let buf_fd = fd.feature_dma_buf(1, RDWR, &[(BUF_BAR_OFFSET, WINDOW)]).unwrap();
    // Exported with memory off: TempRevoked. The series refuses an mmap of a
    // revoked buffer early with ENODEV (spec §4.5 step 2, §12).
    assert_eq!(buf_fd.buffer().status(), Status::TempRevoked);
    let e = mmap_dmabuf(&aspace, &buf_fd, MmapArgs::shared(0, WINDOW)).unwrap_err();
    assert_eq!(e.errno(), Errno::NODEV, "{e}");
    fd.set_memory_enable(true).unwrap();
    // Enabled: Ok, mappable, showing the BAR's data.
    assert_eq!(buf_fd.buffer().status(), Status::Ok);
    let va = mmap_dmabuf(&aspace, &buf_fd, MmapArgs::shared(0, WINDOW)).unwrap();
    assert_eq!(probe::read_u64(va + 8).unwrap(), 0x89ab_cdef);
    probe::touch_pages(va, WINDOW).unwrap();
}

#[test]
fn bar_region_read_and_write_fail_with_eio_while_memory_is_off() {
    let aspace = AddressSpace::new().unwrap();
    let vdev = device("edu-plus");
    let fd = vdev.open();
    let va = fd.mmap(&aspace, MmapArgs::shared(BAR1, WINDOW)).unwrap();
    probe::write_u64(va + 16, 0x7777).unwrap();
    let mut b = [0u8; 8];
    fd.set_memory_enable(false).unwrap();
    for region in [0u64, BAR1] {
        assert_eq!(fd.read(region + 16, &mut b).unwrap_err().errno(), Errno::IO);
        assert_eq!(fd.write(region + 16, &[1; 8]).unwrap_err().errno(), Errno::IO);
    }
    fd.set_memory_enable(true).unwrap();
    fd.set_power_state(PowerState::D3Hot).unwrap();
    assert_eq!(fd.read(BAR1 + 16, &mut b).unwrap_err().errno(), Errno::IO);
    fd.set_power_state(PowerState::D0).unwrap();
    // Back on: the data written through the mapping is there, the refused write did not land.
    assert_eq!(fd.read(BAR1 + 16, &mut b).unwrap(), 8);
    assert_eq!(u64::from_ne_bytes(b), 0x7777);
    // Config space stays readable throughout.
    fd.set_memory_enable(false).unwrap();
    assert_eq!(fd.config_read(pci::regs::COMMAND, 2).unwrap() & u32::from(pci::regs::COMMAND_MEMORY), 0);
}
