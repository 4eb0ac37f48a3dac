//! Mappings another process makes (`DeviceFd::mmap_remote`,
//! `vfio::mmap_dmabuf_remote`): the same checks and buffers as the local
//! paths, and revokes that reach the caller's zap target.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use dmabuf::{CpuMapping, Status};
use mm::{MmioAddr, Width};
use page::{PgOff, PhysAddr, VirtAddr};
use rustix::io::Errno;
use vfio::{bar_start, mmap_dmabuf_remote, MmapArgs, RemoteVma, VfioDmaBuf};

/// A zap target that records the buffer status it saw at each zap.
#[derive(Debug, Default)]
struct Recorder {
    zaps: AtomicUsize,
    seen: Mutex<Vec<Status>>,
    buffer: Mutex<Option<std::sync::Weak<dmabuf::DmaBuf>>>,
}

impl CpuMapping for Recorder {
    fn zap(&self) {
        self.zaps.fetch_add(1, Ordering::SeqCst);
        let buf = self.buffer.lock().unwrap().as_ref().and_then(std::sync::Weak::upgrade);
        if let Some(buf) = buf {
            self.seen.lock().unwrap().push(buf.status());
        }
    }
}

impl Recorder {
    fn watch(&self, vma: &RemoteVma) {
        *self.buffer.lock().unwrap() = Some(Arc::downgrade(vma.buffer()));
    }
}

#[test]
fn a_remote_device_mapping_plans_the_window_the_local_path_would_map() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let target = Arc::new(Recorder::default());
    let vma = fd.mmap_remote(MmapArgs::shared(BAR1 + 0x4000, 0x2001), target.clone()).unwrap();
    // Rounded to pages; vm_pgoff exactly as passed, and also the adjust.
    assert_eq!(vma.len, 0x3000);
    assert_eq!(vma.vm_pgoff, PgOff::from_bytes(BAR1 + 0x4000));
    assert_eq!(vma.vma_pgoff_adjust, vma.vm_pgoff);
    assert_eq!(vma.ranges.len(), 1);
    assert_eq!(vma.ranges[0].paddr, PhysAddr(bar_start(1).0 + 0x4000));
    assert_eq!(vma.pieces.len(), 1);
    assert_eq!((vma.pieces[0].paddr, vma.pieces[0].len), (PhysAddr(bar_start(1).0 + 0x4000), 0x3000));
    assert!(vma.writable && !vma.traps);
    assert!(vma.path.starts_with("/dmabuf:vfio"), "{}", vma.path);
    assert_eq!(vma.inode, vma.buffer().id());
    assert!(VfioDmaBuf::of(vma.buffer()).is_some_and(VfioDmaBuf::is_mmap_buffer));
    // The per-mapping buffer owns the device file: closing the fd leaves it open.
    drop(fd);
    assert_eq!(fx.vdev.open_count(), 1);
    drop(vma);
    assert_eq!(fx.vdev.open_count(), 0);
    assert_eq!(target.zaps.load(Ordering::SeqCst), 0, "the mapping went before the device closed");
}

#[test]
fn a_revoke_and_an_unrevoke_zap_the_remote_target_with_the_new_status_set() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let target = Arc::new(Recorder::default());
    let vma = fd.mmap_remote(MmapArgs::shared(BAR1, 0x1000), target.clone()).unwrap();
    target.watch(&vma);
    fd.set_memory_enable(false).unwrap();
    // Zapped once, after the status was set.
    assert_eq!(*target.seen.lock().unwrap(), vec![Status::TempRevoked]);
    fd.set_memory_enable(true).unwrap();
    // Zapped again on the way back, so poison markers go.
    assert_eq!(*target.seen.lock().unwrap(), vec![Status::TempRevoked, Status::Ok]);
    drop(vma);
}

#[test]
fn a_remote_device_mapping_is_refused_as_the_local_one_is() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let target: Arc<dyn CpuMapping> = Arc::new(Recorder::default());
    let private = MmapArgs { shared: false, ..MmapArgs::shared(BAR1, 0x1000) };
    let cases = [
        (MmapArgs::shared(BAR1, 0), Errno::INVAL),
        (private, Errno::INVAL),
        (MmapArgs::shared(BAR1 + 0x800, 0x1000), Errno::INVAL),
        (MmapArgs::shared(BAR1 + BAR1_LEN, 0x1000), Errno::INVAL),
        (MmapArgs::shared(7 << 40, 0x1000), Errno::INVAL),
        (MmapArgs::shared(BAR1, u64::MAX), Errno::NOMEM),
    ];
    for (args, errno) in cases {
        let e = fd.mmap_remote(args, target.clone()).unwrap_err();
        assert_eq!(e.errno(), errno, "{args:?}: {e}");
        let local = fd.mmap(&fx.aspace, args).unwrap_err();
        assert_eq!(local.errno(), errno, "the local path agrees for {args:?}");
    }
    // Nothing was left behind: only an mmap holds a per-mapping buffer.
    assert!(fx.vdev.dmabufs().is_empty());
}

#[test]
fn an_exact_address_is_left_to_the_process_that_maps() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let args = MmapArgs { addr: Some(0x1000), ..MmapArgs::shared(BAR1, 0x1000) };
    let vma = fd.mmap_remote(args, Arc::new(Recorder::default())).unwrap();
    assert_eq!(vma.len, 0x1000);
}

#[test]
fn a_remote_buffer_mapping_shows_the_window_from_its_offset() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = fd.feature_dma_buf(1, RDWR, &[(0x10000, 0x2000), (0, 0x1000)]).unwrap();
    let vma = mmap_dmabuf_remote(&buf, MmapArgs::shared(0x1000, 0x2000), Arc::new(Recorder::default())).unwrap();
    assert_eq!(vma.vma_pgoff_adjust, PgOff(0));
    assert_eq!(vma.vm_pgoff, PgOff(1));
    assert_eq!(vma.ranges.len(), 2);
    // Buffer bytes 0x1000..0x3000: the second page of range 0, then range 1.
    let pieces: Vec<_> = vma.pieces.iter().map(|p| (p.paddr.0 - bar_start(1).0, p.len)).collect();
    assert_eq!(pieces, vec![(0x11000, 0x1000), (0, 0x1000)]);
    assert_eq!(vma.path, "/dmabuf:", "an explicit buffer is unnamed");
    // The mapping holds the buffer after the last handle is gone.
    let weak = Arc::downgrade(vma.buffer());
    drop(buf);
    assert!(weak.upgrade().is_some());
    drop(vma);
    assert!(weak.upgrade().is_none());
}

#[test]
fn a_remote_buffer_mapping_is_refused_as_the_local_one_is() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let target: Arc<dyn CpuMapping> = Arc::new(Recorder::default());
    let ro = fd.feature_dma_buf(1, RDONLY, &[(0, 0x2000)]).unwrap();
    let e = mmap_dmabuf_remote(&ro, MmapArgs::shared(0, 0x1000), target.clone()).unwrap_err();
    assert_eq!(e.errno(), Errno::ACCESS, "shared writable mapping of a read-only buffer");
    let rw = fd.feature_dma_buf(1, RDWR, &[(0, 0x2000)]).unwrap();
    let e = mmap_dmabuf_remote(&rw, MmapArgs::shared(0x1000, 0x2000), target.clone()).unwrap_err();
    assert_eq!(e.errno(), Errno::INVAL, "window past the end");
    let private = MmapArgs { shared: false, ..MmapArgs::shared(0, 0x1000) };
    let e = mmap_dmabuf_remote(&rw, private, target.clone()).unwrap_err();
    assert_eq!(e.errno(), Errno::INVAL, "private");
    fd.feature_dma_buf_revoke(rw.raw_fd()).unwrap();
    let e = mmap_dmabuf_remote(&rw, MmapArgs::shared(0, 0x1000), target).unwrap_err();
    assert_eq!(e.errno(), Errno::NODEV, "revoked");
}

#[test]
fn a_remote_register_mapping_traps_and_reaches_the_registers() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let vma = fd.mmap_remote(MmapArgs::shared(0, 0x1000), Arc::new(Recorder::default())).unwrap();
    assert!(vma.traps);
    let at =
        MmioAddr { addr: VirtAddr(0x7f00_0000_0000), vm_start: VirtAddr(0x7f00_0000_0000), vm_pgoff: vma.vm_pgoff };
    let mut id = None;
    vma.mmio().with_registers(&mut |regs| id = regs.read(at, Width::U32).ok().map(|v| v & 0xffff_ffff)).unwrap();
    assert_eq!(id, Some(0x0100_00ed), "edu's identification register");
    fd.set_memory_enable(false).unwrap();
    assert!(vma.mmio().with_registers(&mut |_| {}).is_err(), "no access while memory is off");
}
