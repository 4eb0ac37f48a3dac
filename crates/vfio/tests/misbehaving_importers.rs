//! Importers that misbehave: late, never, and re-entrant. A revoke must
//! never hang silently and never deadlock on a call it can refuse.

mod common;

use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{device, OnInvalidate, TestImporter, BAR1, RDWR};
use dmabuf::{AttachmentRef, DmaBufFd, Importer, ResvGuard, Status};
use mm::{probe, AddressSpace};
use rustix::io::Errno;
use vfio::{DeviceFd, MmapArgs, VfioPciDevice};

/// Calls back into the device from its invalidate callback and records
/// what the device answered.
#[derive(Debug)]
struct Reentrant {
    fd: DeviceFd,
    answers: Mutex<Vec<Errno>>,
}

impl Importer for Reentrant {
    fn invalidate_mappings(&self, _a: &AttachmentRef<'_>, _resv: &mut ResvGuard<'_>) {
        let mut buf = [0u8; 4];
        let mut answers = self.answers.lock().unwrap();
        answers.push(self.fd.read(BAR1, &mut buf).unwrap_err().errno());
        answers.push(self.fd.config_read(pci::regs::COMMAND, 2).unwrap_err().errno());
        answers.push(self.fd.reset().unwrap_err().errno());
        answers.push(self.fd.feature_dma_buf(1, RDWR, &[(0, 0x1000)]).unwrap_err().errno());
    }
}

fn setup() -> (AddressSpace, Arc<VfioPciDevice>, DeviceFd, DmaBufFd, u64) {
    let aspace = AddressSpace::new().unwrap();
    let vdev = device("edu-plus");
    let fd = vdev.open();
    let buf = fd.feature_dma_buf(1, RDWR, &[(0, 0x10000)]).unwrap();
    let va = vfio::mmap_dmabuf(&aspace, &buf, MmapArgs::shared(0, 0x10000)).unwrap();
    probe::write_u64(va, 0x5eed).unwrap();
    (aspace, vdev, fd, buf, va)
}

#[test]
fn an_importer_that_unmaps_late_delays_the_revoke_until_it_unmaps() {
    let (_aspace, _vdev, fd, buf, va) = setup();
    let (holder, rx) = TestImporter::new(OnInvalidate::Hold);
    let att = buf.buffer().attach(holder.as_importer()).unwrap();
    holder.hold(att.map().unwrap());
    let (done_tx, done_rx) = channel();
    let revoker = std::thread::spawn(move || {
        let r = fd.set_memory_enable(false);
        done_tx.send(()).unwrap();
        (fd, r)
    });
    // The revoke has invalidated the importer and now waits for it.
    rx.recv_timeout(Duration::from_secs(10)).expect("invalidate is called");
    assert_eq!(buf.buffer().status(), Status::TempRevoked);
    assert!(done_rx.try_recv().is_err(), "the revoke returned while a mapping was held");
    assert_eq!(holder.unmap_all(), 1);
    done_rx.recv_timeout(Duration::from_secs(10)).expect("the revoke finishes once the importer unmaps");
    let (fd, r) = revoker.join().unwrap();
    r.unwrap();
    assert!(probe::read_u64(va).unwrap_err().is_sigbus());
    fd.set_memory_enable(true).unwrap();
    assert_eq!(probe::read_u64(va).unwrap(), 0x5eed);
}

#[test]
fn an_importer_that_never_unmaps_makes_a_bounded_revoke_fail_with_etimedout_but_revoked() {
    let (_aspace, vdev, fd, buf, va) = setup();
    vdev.set_revoke_timeout(Some(Duration::from_millis(50)));
    let (holder, _) = TestImporter::new(OnInvalidate::Hold);
    let att = buf.buffer().attach(holder.as_importer()).unwrap();
    holder.hold(att.map().unwrap());
    // The wait expires: the caller hears about it, and nothing stays reachable.
    assert_eq!(fd.set_memory_enable(false).unwrap_err().errno(), Errno::TIMEDOUT);
    assert!(!vdev.memory_enabled(), "the config write itself still happened");
    assert_eq!(buf.buffer().status(), Status::TempRevoked);
    assert!(probe::read_u64(va).unwrap_err().is_sigbus());
    // Re-enabling works once the importer is gone; the data is intact.
    assert_eq!(holder.unmap_all(), 1);
    fd.set_memory_enable(true).unwrap();
    assert_eq!(probe::read_u64(va).unwrap(), 0x5eed);
}

#[test]
fn an_importer_calling_back_into_the_device_from_invalidate_gets_edeadlk_not_a_hang() {
    let (_aspace, vdev, fd, buf, va) = setup();
    let imp = Arc::new(Reentrant { fd: fd.dup(), answers: Mutex::new(Vec::new()) });
    let _att = buf.buffer().attach(imp.clone()).unwrap();
    fd.set_memory_enable(false).unwrap();
    assert_eq!(*imp.answers.lock().unwrap(), vec![Errno::DEADLK; 4]);
    assert!(probe::read_u64(va).unwrap_err().is_sigbus());
    // Outside a revoke the same calls work.
    fd.set_memory_enable(true).unwrap();
    assert_eq!(
        fd.config_read(pci::regs::COMMAND, 2).unwrap() as u16 & pci::regs::COMMAND_MEMORY,
        pci::regs::COMMAND_MEMORY
    );
    assert!(vdev.memory_enabled());
}
