//! Each checker holds on real sequences of the device and fails on a state
//! broken on purpose (by reaching into the crate's private state, which only
//! these tests do). A broken state is always repaired before `memory_lock`
//! is released: debug builds check the device there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dmabuf::{AttachmentRef, CpuMapping, DmaBuf, DmaBufFd, Importer, ImporterMapping, ResvGuard, Status};
use mm::{probe, AddressSpace};

use super::*;
use crate::{DeviceFd, MmapArgs};

const PAGE: u64 = page::PAGE_SIZE;
/// `O_RDWR`.
const RDWR: u32 = 2;

fn device(index: u32) -> Arc<VfioPciDevice> {
    let bdf = format!("0000:00:{:02x}.0", 3 + index).parse().unwrap();
    VfioPciDevice::from_catalogue(index, bdf, "edu-plus").unwrap()
}

/// An explicit one-page buffer of BAR1.
fn export(fd: &DeviceFd) -> DmaBufFd {
    fd.feature_dma_buf(1, RDWR, &[(0, PAGE)]).unwrap()
}

/// The per-mapping buffer of the one device-fd mapping of `fd`.
fn mmap_buffer(fd: &DeviceFd) -> Arc<DmaBuf> {
    let mut bufs = fd.device().dmabufs();
    bufs.retain(|b| VfioDmaBuf::of(b).is_some_and(VfioDmaBuf::is_mmap_buffer));
    assert_eq!(bufs.len(), 1, "one device-fd mapping");
    bufs.remove(0)
}

/// An importer that keeps its mappings, and gives them up in its
/// invalidate callback only if told to.
#[derive(Debug)]
struct Holder {
    unmap_on_invalidate: bool,
    held: Mutex<Vec<ImporterMapping>>,
}

impl Importer for Holder {
    fn invalidate_mappings(&self, _attachment: &AttachmentRef<'_>, resv: &mut ResvGuard<'_>) {
        if self.unmap_on_invalidate {
            let mine: Vec<ImporterMapping> = self.held.lock().unwrap().drain(..).collect();
            for m in mine {
                m.unmap_locked(resv);
            }
        }
    }
}

/// A CPU mapping whose zap forgets to drop its entries.
#[derive(Debug)]
struct StuckMapping(AtomicBool);

impl CpuMapping for StuckMapping {
    fn zap(&self) {}

    fn has_entries(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[test]
fn status_writer_is_the_buffers_own_device() {
    let (a, b) = (device(0), device(1));
    let (fa, _fb) = (a.open(), b.open());
    let buf = export(&fa);
    assert!(check_status_writer(&a.lock_memory_write(), buf.buffer()));
    // Broken: the lock of another device.
    assert!(!check_status_writer(&b.lock_memory_write(), buf.buffer()));
    // A severed buffer is never moved again; any lock will do.
    fa.close();
    assert!(check_status_writer(&b.lock_memory_write(), buf.buffer()));
}

#[test]
fn ok_buffers_stay_attached_until_cleanup_revokes_them() {
    let vdev = device(0);
    let fd = vdev.open();
    let buf = export(&fd);
    assert!(check_ok_implies_vdev(buf.buffer()));
    let dma_buf = VfioDmaBuf::of(buf.buffer()).unwrap();
    // Broken: severed while Ok, as a cleanup that forgot to revoke would.
    let vdev_ref = dma_buf.vdev.lock().unwrap().take();
    assert!(!check_ok_implies_vdev(buf.buffer()));
    *dma_buf.vdev.lock().unwrap() = vdev_ref;
    // Real: the last close revokes, then severs.
    fd.close();
    assert_eq!(buf.buffer().status(), Status::TempRevoked);
    assert!(dma_buf.vdev().is_none());
    assert!(check_ok_implies_vdev(buf.buffer()));
}

#[test]
fn a_revoke_leaves_no_page_table_entries() {
    let aspace = AddressSpace::new().unwrap();
    let vdev = device(0);
    let fd = vdev.open();
    let bar1 = fd.region_info(1).unwrap();
    let va = fd.mmap(&aspace, MmapArgs::shared(bar1.offset, 4 * PAGE)).unwrap();
    let buf = mmap_buffer(&fd);
    // No fault yet: nothing mapped.
    assert_eq!(buf.cpu_mappings_with_entries(), 0);
    probe::write_u64(va, 7).unwrap();
    // Ok and faulted in: the mapping has entries, as it may.
    assert_eq!(buf.cpu_mappings_with_entries(), 1);
    assert!(check_no_cpu_entries(&buf));
    fd.set_memory_enable(false).unwrap();
    // Revoked and zapped.
    assert_eq!(buf.cpu_mappings_with_entries(), 0);
    assert!(check_no_cpu_entries(&buf));
    // Broken: a mapping whose zap left its entries.
    let stuck = Arc::new(StuckMapping(AtomicBool::new(true)));
    buf.register_cpu_mapping(Arc::<StuckMapping>::downgrade(&stuck) as Weak<dyn CpuMapping>);
    assert!(!check_no_cpu_entries(&buf));
    stuck.0.store(false, Ordering::Relaxed);
    fd.set_memory_enable(true).unwrap();
    assert_eq!(probe::read_u64(va).unwrap(), 7);
}

#[test]
fn a_completed_revoke_leaves_no_importer_mapping() {
    let vdev = device(0);
    let fd = vdev.open();
    for unmap_on_invalidate in [true, false] {
        let buf = export(&fd);
        let holder = Arc::new(Holder { unmap_on_invalidate, held: Mutex::new(Vec::new()) });
        let attachment = buf.buffer().attach(holder.clone()).unwrap();
        holder.held.lock().unwrap().push(attachment.map().unwrap());
        assert!(check_no_importer_mappings(buf.buffer()));
        if unmap_on_invalidate {
            // Real: the importer unmaps, the revoke completes.
            fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
            assert!(check_no_importer_mappings(buf.buffer()));
        } else {
            // Broken: an importer that never unmaps, and a revoke that stops
            // waiting for it at once.
            vdev.set_revoke_timeout(Some(Duration::ZERO));
            assert!(fd.feature_dma_buf_revoke(buf.raw_fd()).is_err());
            assert!(!check_no_importer_mappings(buf.buffer()));
            holder.held.lock().unwrap().clear();
            assert!(check_no_importer_mappings(buf.buffer()));
        }
    }
}

#[test]
fn listed_buffers_point_back_and_attached_buffers_are_listed() {
    let aspace = AddressSpace::new().unwrap();
    let (a, b) = (device(0), device(1));
    let (fa, fb) = (a.open(), b.open());
    let bar1 = fa.region_info(1).unwrap();
    let _va = fa.mmap(&aspace, MmapArgs::shared(bar1.offset, PAGE)).unwrap();
    let ours = mmap_buffer(&fa);
    let theirs = export(&fb);
    {
        let mut mem = a.lock_memory_write();
        assert!(check_buffer_listed(&mem, &ours));
        let live: Vec<Arc<DmaBuf>> = mem.dmabufs.values().filter_map(Weak::upgrade).collect();
        assert!(check_listed_buffers_point_back(&a, &live));
        // Broken: the mmap-created buffer dropped from its device's list.
        mem.dmabufs.remove(&ours.id());
        assert!(!check_buffer_listed(&mem, &ours));
        mem.dmabufs.insert(ours.id(), Arc::downgrade(&ours));
        // Broken: another device's buffer on this device's list.
        let mut live = live;
        live.push(Arc::clone(theirs.buffer()));
        assert!(!check_listed_buffers_point_back(&a, &live));
        for buf in live {
            mem.defer_drop(buf);
        }
    }
}

#[test]
fn no_buffer_is_ok_while_memory_decoding_is_off() {
    let vdev = device(0);
    let fd = vdev.open();
    let buf = export(&fd);
    let live = vec![Arc::clone(buf.buffer())];
    assert!(check_status_follows_memory(&vdev.lock_memory_read(), &live));
    // Real: COMMAND.MEMORY clear, D3hot and back, an FLR, a reset.
    fd.set_memory_enable(false).unwrap();
    assert!(check_status_follows_memory(&vdev.lock_memory_read(), &live));
    fd.set_memory_enable(true).unwrap();
    fd.set_power_state(pci::PowerState::D3Hot).unwrap();
    assert!(check_status_follows_memory(&vdev.lock_memory_read(), &live));
    fd.set_power_state(pci::PowerState::D0).unwrap();
    fd.flr().unwrap();
    fd.reset().unwrap();
    assert!(check_status_follows_memory(&vdev.lock_memory_read(), &live));
    fd.set_memory_enable(false).unwrap();
    // Broken: un-revoked behind the device's back while decoding is off.
    let mem = vdev.lock_memory_write();
    buf.buffer().set_status(Status::Ok).unwrap();
    assert!(!check_status_follows_memory(&mem, &live));
    // Repaired before the release check sees it.
    buf.buffer().set_status(Status::TempRevoked).unwrap();
    drop(mem);
}

#[test]
fn permanently_revoked_buffers_stay_revoked_through_every_event() {
    let vdev = device(0);
    let fd = vdev.open();
    let buf = export(&fd);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    for on in [false, true] {
        let before = buf.buffer().status();
        fd.set_memory_enable(on).unwrap();
        assert!(check_perm_revoked_absorbing(before, buf.buffer()));
    }
    let before = buf.buffer().status();
    fd.reset().unwrap();
    assert!(check_perm_revoked_absorbing(before, buf.buffer()));
    // Broken: a buffer seen permanently revoked that is Ok now.
    let other = export(&fd);
    assert!(!check_perm_revoked_absorbing(Status::PermRevoked, other.buffer()));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "invariant broken at the release of memory_lock")]
fn debug_builds_check_the_device_when_memory_lock_is_released() {
    let vdev = device(0);
    let fd = vdev.open();
    let buf = export(&fd);
    fd.set_memory_enable(false).unwrap();
    let mem = vdev.lock_memory_write();
    buf.buffer().set_status(Status::Ok).unwrap();
    drop(mem);
}
