//! Nothing leaks: after a full scenario is torn down, the process has the
//! same descriptors (by target), the same number of mappings and the same
//! threads as before.
//!
//! A single test in its own binary, so that the process-wide counts are
//! this test's alone.

mod common;

use std::sync::{Arc, Weak};
use std::thread;

use common::{assert_sigbus, device, OnInvalidate, ProcessState, TestImporter, PAGE, RDWR, WATCHDOG};
use dmabuf::{DmaBuf, Status};
use mm::{probe, AddressSpace};
use pci::PowerState;
use vfio::{hot_reset, mmap_dmabuf, MmapArgs, VfioPciDevice};

/// Everything the crate offers, used at once; returns weak references to the
/// devices and buffers so the caller can check they died.
fn scenario() -> (Vec<Weak<VfioPciDevice>>, Vec<Weak<DmaBuf>>) {
    let rw = RDWR;
    let aspace = AddressSpace::new().unwrap();
    let second = AddressSpace::new().unwrap();
    let edu = device("edu-plus");
    let multi = device("multi-bar");
    let edu_fd = edu.open();
    let multi_fd = multi.open();
    let multi_dup = multi_fd.dup();
    let mut weak_bufs = Vec::new();

    // Device-fd mappings: a huge one (order-9 faults), small ones on several BARs.
    let bar1 = edu_fd.region_info(1).unwrap();
    let huge = edu_fd.mmap(&aspace, MmapArgs::shared(bar1.offset, 8 << 20)).unwrap();
    aspace.madvise_hugepage(huge, 8 << 20).unwrap();
    probe::touch_pages(huge, 8 << 20).unwrap();
    assert!(aspace.fault_stats().order9 > 0, "{:?}", aspace.fault_stats());
    let mut multi_vas = Vec::new();
    for index in [0u32, 1, 2, 4] {
        let info = multi_fd.region_info(index).unwrap();
        let len = info.size.min(64 * PAGE);
        let va = multi_dup.mmap(&second, MmapArgs::shared(info.offset, len)).unwrap();
        probe::write_u64(va, u64::from(index) + 1).unwrap();
        multi_vas.push((va, len, index));
    }
    // Split the huge mapping: a hole in the middle, both halves still work.
    aspace.munmap(huge + (3 << 20), PAGE).unwrap();
    probe::write_u64(huge + (4 << 20), 0xfeed).unwrap();
    probe::write_u64(huge + PAGE, 0xf00d).unwrap();
    // Region read/write.
    let mut b = [0u8; 8];
    edu_fd.read(bar1.offset + (4 << 20), &mut b).unwrap();
    assert_eq!(u64::from_ne_bytes(b), 0xfeed);
    edu_fd.write(0, &0x1234u32.to_ne_bytes()).unwrap();

    // Explicit buffers: single and multi-range, dup'ed fds, mappings in both
    // address spaces, an aliasing pair, a WC one.
    let single = edu_fd.feature_dma_buf(1, rw, &[(0, 16 * PAGE)]).unwrap();
    let multi_range = edu_fd.feature_dma_buf(1, rw, &[(3 * PAGE, 4 * PAGE), (12 * PAGE, 4 * PAGE)]).unwrap();
    let single_dup = single.dup().unwrap();
    let v1 = mmap_dmabuf(&aspace, &single, MmapArgs::shared(0, 16 * PAGE)).unwrap();
    let v2 = mmap_dmabuf(&second, &single_dup, MmapArgs::shared(4 * PAGE, 12 * PAGE)).unwrap();
    let v3 = mmap_dmabuf(&aspace, &multi_range, MmapArgs::shared(0, 8 * PAGE)).unwrap();
    probe::write_u64(v1 + 12 * PAGE, 0xab).unwrap();
    assert_eq!(probe::read_u64(v3 + 4 * PAGE).unwrap(), 0xab);
    assert_eq!(probe::read_u64(v2 + 8 * PAGE).unwrap(), 0xab);
    edu_fd.feature_dma_buf_memattr(multi_range.raw_fd(), vfio::uapi::VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC).unwrap();
    let v3wc = mmap_dmabuf(&second, &multi_range, MmapArgs::shared(4 * PAGE, 4 * PAGE)).unwrap();
    assert_eq!(probe::read_u64(v3wc).unwrap(), 0xab);
    let on_multi = multi_fd.feature_dma_buf(4, rw, &[(2 << 20, 2 << 20)]).unwrap();
    let v4 = mmap_dmabuf(&second, &on_multi, MmapArgs::shared(0, 2 << 20)).unwrap();
    probe::touch_pages(v4, 2 << 20).unwrap();
    // Split a buffer mapping too.
    second.munmap(v4 + 5 * PAGE, 2 * PAGE).unwrap();
    for buf in [&single, &multi_range, &on_multi] {
        weak_bufs.push(Arc::downgrade(buf.buffer()));
    }
    weak_bufs.extend(edu.dmabufs().iter().chain(multi.dmabufs().iter()).map(Arc::downgrade));

    // Importers: one unmaps inside invalidate, one is unmapped from another thread.
    let (unmapper, _) = TestImporter::new(OnInvalidate::UnmapInside);
    let att1 = single.buffer().attach(unmapper.as_importer()).unwrap();
    let att2 = on_multi.buffer().attach(unmapper.as_importer()).unwrap();
    for m in [att1.map().unwrap(), att1.map().unwrap(), att2.map().unwrap()] {
        unmapper.hold(m);
    }
    // The buffer keeps only a weak reference to an importer: keep ours.
    let (holder, rx) = TestImporter::new(OnInvalidate::Hold);
    let att3 = multi_range.buffer().attach(holder.as_importer()).unwrap();
    let held = att3.map().unwrap();
    let disable = {
        let fd = edu_fd.dup();
        thread::spawn(move || fd.set_memory_enable(false))
    };
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap().buffer, multi_range.buffer().id());
    let unmap_thread = thread::spawn(move || held.unmap());
    unmap_thread.join().unwrap();
    disable.join().unwrap().unwrap();
    assert_sigbus(v1);
    assert_sigbus(huge);
    assert_eq!(unmapper.invalidations(), 1);
    edu_fd.set_memory_enable(true).unwrap();
    assert_eq!(probe::read_u64(v1 + 12 * PAGE).unwrap(), 0xab);
    // Importers re-map after the un-revoke; this one unmaps at once, since
    // nobody would unmap it during the events below.
    att3.map().unwrap().unmap();

    // Every revoking event on both devices.
    multi_fd.set_power_state(PowerState::D3Hot).unwrap();
    assert_sigbus(multi_vas[0].0);
    multi_fd.set_power_state(PowerState::D0).unwrap();
    assert_eq!(probe::read_u64(multi_vas[0].0).unwrap(), 1);
    edu_fd.flr().unwrap();
    edu_fd.reset().unwrap();
    hot_reset(&[&edu_fd, &multi_fd]).unwrap();
    assert_eq!(probe::read_u64(huge + (4 << 20)).unwrap(), 0xfeed);
    multi_fd.feature_dma_buf_revoke(on_multi.raw_fd()).unwrap();
    assert_eq!(on_multi.buffer().status(), Status::PermRevoked);
    assert_sigbus(v4);
    drop((att1, att2, att3, holder, unmapper));

    // Close the multi-bar device for good: unmap its device-fd mappings and
    // close both fds; its explicit buffers die with it.
    for (va, len, _) in &multi_vas {
        second.munmap(*va, *len).unwrap();
    }
    drop(multi_dup);
    drop(multi_fd);
    assert_eq!(multi.open_count(), 0);
    assert_sigbus(v4);

    // Close the edu fd while its mappings live: the device-fd mapping keeps it open.
    drop(edu_fd);
    assert_eq!(edu.open_count(), 1);
    assert_eq!(probe::read_u64(v1 + 12 * PAGE).unwrap(), 0xab);
    // Closing a buffer fd leaves its mappings alone.
    drop(single);
    assert_eq!(probe::read_u64(v2 + 8 * PAGE).unwrap(), 0xab);
    // Unmapping the huge mapping's pieces closes the device.
    aspace.munmap(huge, 8 << 20).unwrap();
    assert_eq!(edu.open_count(), 0);
    assert_sigbus(v2);

    let devices = vec![Arc::downgrade(&edu), Arc::downgrade(&multi)];
    // Tear down: the rest goes with the scope, address spaces included.
    drop((single_dup, multi_range, on_multi));
    drop((aspace, second));
    drop((edu, multi));
    (devices, weak_bufs)
}

/// Runs the scenario once between two measurements and prints them.
fn measure_one_run(label: &str) -> (ProcessState, ProcessState) {
    let before = ProcessState::now();
    let (devices, buffers) = scenario();
    let after = ProcessState::now();
    println!(
        "{label}: before {} fds, {} maps lines, {} threads; after {} fds, {} maps lines, {} threads",
        before.nr_fds(),
        before.maps.len(),
        before.threads,
        after.nr_fds(),
        after.maps.len(),
        after.threads
    );
    assert!(devices.iter().all(|d| d.upgrade().is_none()), "{label}: a device outlived the scenario");
    assert!(buffers.iter().all(|b| b.upgrade().is_none()), "{label}: a buffer outlived the scenario");
    assert_eq!(dmabuf::nr_handles(), 0, "{label}: a buffer fd is still installed");
    (before, after)
}

#[test]
fn a_full_scenario_leaves_no_descriptor_mapping_or_thread_behind() {
    // Lazily initialised process state (the probe signal handler, the
    // harness's own threads) is in place after one throwaway address space.
    drop(AddressSpace::new().unwrap());

    // Descriptors and threads are exact from the first run on.
    let (before, after) = measure_one_run("first run");
    assert_eq!(after.fd_targets, before.fd_targets);
    assert_eq!(after.threads, before.threads);

    // Mappings: the C library keeps the stacks of joined threads and the
    // malloc arenas they used mapped, for reuse (each is a pair of lines in
    // /proc/self/maps). The first run leaves those caches as large as the
    // scenario needs; from the second run on, a leaked mapping is growth.
    let (before, after) = measure_one_run("second run");
    assert_eq!(after.fd_targets, before.fd_targets);
    assert_eq!(after.threads, before.threads);
    let gone: Vec<&String> = before.maps.iter().filter(|l| !after.maps.contains(l)).collect();
    let new: Vec<&String> = after.maps.iter().filter(|l| !before.maps.contains(l)).collect();
    assert_eq!(after.maps.len(), before.maps.len(), "gone: {gone:#?}\nnew: {new:#?}");
}
