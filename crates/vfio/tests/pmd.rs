//! BAR mappings mapped by real PMDs: a huge-aligned device-fd mapping's
//! first touch (one order-9 fault with fault-around) installs one PMD per
//! 2 MiB (the kernel says so in
//! `/proc/self/smaps`), a revoke (COMMAND.MEMORY clear) zaps the PMDs and
//! every access then raises SIGBUS `BUS_ADRERR`, and the un-revoke brings
//! the data back, PMD-mapped again; a permanent revoke of an explicit
//! buffer whose mapping is PMD-mapped too.

mod common;

use common::{assert_sigbus, Fixture, BAR1, RDWR};
use mm::{probe, AddressSpace};
use page::{HPAGE_PMD_SIZE, PAGE_SIZE};
use vfio::{mmap_dmabuf, MmapArgs};

const LEN: u64 = 8 << 20;

/// Bytes the kernel maps with PMDs in `[va, va + len)`.
fn pmd_bytes(aspace: &AddressSpace, va: u64, len: u64) -> u64 {
    aspace.pmd_mapped().unwrap().iter().filter(|e| va <= e.start && e.end <= va + len).map(|e| e.shmem_pmd_mapped).sum()
}

/// Writes a value per page that names the page.
fn write_pattern(va: u64, len: u64, seed: u64) {
    for off in (0..len).step_by(PAGE_SIZE as usize) {
        probe::write_u64(va + off + 16, seed ^ off).unwrap();
    }
}

#[track_caller]
fn assert_pattern(va: u64, len: u64, seed: u64) {
    for off in (0..len).step_by(PAGE_SIZE as usize) {
        assert_eq!(probe::read_u64(va + off + 16).unwrap(), seed ^ off, "page +{off:#x}");
    }
}

#[test]
fn a_revoke_zaps_the_pmds_and_the_unrevoke_brings_them_back() {
    let f = Fixture::edu_plus();
    let fd = f.vdev.open();
    // At an address aligned to the fault-around block (32 MiB), so that one
    // fault's window is the whole mapping wherever the allocator would have
    // put it (a window stops at a block boundary).
    let at = 0x5400_0000_0000;
    assert_eq!(at % vfio::FAULT_AROUND_BYTES, 0);
    let va = fd.mmap(&f.aspace, MmapArgs { addr: Some(at), ..MmapArgs::shared(BAR1, LEN) }).unwrap();
    assert_eq!(va, at);
    write_pattern(va, LEN, 0x1111);
    // One order-9 fault whose fault-around window is the whole mapping.
    let s = f.aspace.fault_stats();
    assert_eq!((s.order9, s.order0, s.around_pages), (1, 0, LEN / PAGE_SIZE), "{s:?}");
    assert_eq!((s.pmd_mapped, s.pmd_fallback.total()), (LEN / HPAGE_PMD_SIZE, 0), "{s:?}");
    assert_eq!(pmd_bytes(&f.aspace, va, LEN), LEN);

    fd.set_memory_enable(false).unwrap();
    assert_eq!(pmd_bytes(&f.aspace, va, LEN), 0, "the revoke zapped every PMD");
    for off in [0, HPAGE_PMD_SIZE + 0x3000, LEN - PAGE_SIZE] {
        assert_sigbus(va + off + 8);
    }

    fd.set_memory_enable(true).unwrap();
    assert_pattern(va, LEN, 0x1111);
    assert_eq!(pmd_bytes(&f.aspace, va, LEN), LEN);
    f.aspace.munmap(va, LEN).unwrap();
}

#[test]
fn a_permanent_revoke_of_a_pmd_mapped_buffer_sigbuses_every_page() {
    let f = Fixture::edu_plus();
    let fd = f.vdev.open();
    let buf = fd.feature_dma_buf(1, RDWR, &[(4 << 20, 4 << 20)]).unwrap();
    let va = mmap_dmabuf(&f.aspace, &buf, MmapArgs::shared(0, 4 << 20)).unwrap();
    write_pattern(va, 4 << 20, 0x2222);
    assert_eq!(pmd_bytes(&f.aspace, va, 4 << 20), 4 << 20);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(pmd_bytes(&f.aspace, va, 4 << 20), 0);
    for off in [0, 0x20_0000, 0x3f_f000] {
        assert_sigbus(va + off + 8);
    }
    // The data stayed in the BAR: the device-fd view shows it.
    let dev_va = fd.mmap(&f.aspace, MmapArgs::shared(BAR1 + (4 << 20), 4 << 20)).unwrap();
    assert_pattern(dev_va, 4 << 20, 0x2222);
    f.aspace.munmap(dev_va, 4 << 20).unwrap();
    f.aspace.munmap(va, 4 << 20).unwrap();
}
