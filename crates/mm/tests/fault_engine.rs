//! The fault engine against real memory, real mappings and real CPU faults.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mm::{probe, AddressSpace, MapPiece, MapRequest, PhysMemory, VmFault, VmFaultResult, VmOperations};
use page::{Pfn, PgOff, PhysAddr, HPAGE_PMD_SIZE, PAGE_SIZE};

/// Translates like a device-fd mapping whose `vm_pgoff` is the physical page.
#[derive(Debug)]
struct Linear {
    allowed: AtomicBool,
}

impl VmOperations for Linear {
    fn huge_fault(&self, vmf: &mut VmFault<'_>, order: u32) -> VmFaultResult {
        if !self.allowed.load(Ordering::SeqCst) {
            return vmf.sigbus();
        }
        let size = PAGE_SIZE << order;
        let page_va = vmf.address().align_down(size);
        let pfn = Pfn(vmf.vm_pgoff().0 + (page_va.0 - vmf.vm_start().0) / PAGE_SIZE);
        if !pfn.is_aligned_to_order(order) {
            return VmFaultResult::FALLBACK;
        }
        vmf.insert_pfn(pfn, order)
    }
}

/// Tests that assert SIGSEGV on an address they unmapped must be alone in
/// this process: any other test's mmap could reuse the hole meanwhile. They
/// take this lock for write; every other test takes it for read.
static ADDRESS_SPACE_USERS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn vm_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    ADDRESS_SPACE_USERS.read().unwrap_or_else(|e| e.into_inner())
}

fn vm_exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    ADDRESS_SPACE_USERS.write().unwrap_or_else(|e| e.into_inner())
}

const BASE: u64 = 1 << 40;

fn setup(len: u64, offset: u64) -> (AddressSpace, Arc<PhysMemory>, Arc<Linear>, u64) {
    let aspace = AddressSpace::new().expect("userfaultfd with MINOR_SHMEM and POISON");
    let mem = Arc::new(PhysMemory::new("test-bar", PhysAddr(BASE), 8 << 20).unwrap());
    let ops = Arc::new(Linear { allowed: AtomicBool::new(true) });
    let mapping = aspace.new_mapping();
    let va = aspace
        .mmap(MapRequest {
            mapping,
            len,
            vm_pgoff: PgOff((BASE + offset) / PAGE_SIZE),
            writable: true,
            pieces: vec![MapPiece { memory: mem.clone(), paddr: PhysAddr(BASE + offset), len }],
            ops: ops.clone(),
            path: "/test:1".into(),
            inode: 7,
            addr: None,
        })
        .unwrap();
    (aspace, mem, ops, va.0)
}

#[test]
fn first_touch_of_an_aligned_mapping_takes_2mib_faults() {
    let _vm = vm_shared();
    let (aspace, mem, _ops, va) = setup(4 << 20, 0);
    assert_eq!(va % HPAGE_PMD_SIZE, 0);
    mem.write(PhysAddr(BASE + 0x3000), &0x1234_5678u64.to_ne_bytes()).unwrap();
    assert_eq!(probe::read_u64(va + 0x3000).unwrap(), 0x1234_5678);
    probe::touch_pages(va, 4 << 20).unwrap();
    let s = aspace.fault_stats();
    assert_eq!((s.order9, s.order0, s.sigbus), (2, 0, 0));
}

#[test]
fn unaligned_physical_offset_falls_back_to_4k_faults() {
    let _vm = vm_shared();
    let (aspace, _mem, _ops, va) = setup(4 << 20, 0x3000);
    probe::touch_pages(va, 4 << 20).unwrap();
    let s = aspace.fault_stats();
    assert_eq!(s.order9, 0);
    assert_eq!(s.order0, 1024);
    assert!(s.fallback >= 1);
}

#[test]
fn refused_fault_raises_sigbus_and_zap_restores_access() {
    let _vm = vm_shared();
    let (aspace, _mem, ops, va) = setup(8 << 12, 0);
    probe::write_u64(va, 0xfeed).unwrap();
    ops.allowed.store(false, Ordering::SeqCst);
    aspace.mapping_handle(aspace.vmas()[0].mapping).zap().unwrap();
    let err = probe::read_u64(va).unwrap_err();
    assert!(err.is_sigbus(), "{err}");
    assert_eq!(err.addr, va);
    eprintln!("revoked access: {err}");
    // Still poisoned: a second access SIGBUSes without a new fault.
    assert!(probe::read_u64(va).unwrap_err().is_sigbus());
    ops.allowed.store(true, Ordering::SeqCst);
    aspace.mapping_handle(aspace.vmas()[0].mapping).zap().unwrap();
    assert_eq!(probe::read_u64(va).unwrap(), 0xfeed);
}

#[test]
fn real_proc_maps_shows_the_mmap_offset_and_split_keeps_the_arithmetic() {
    let _vm = vm_exclusive();
    let (aspace, mem, _ops, va) = setup(16 << 12, 0x4000);
    let real = mm::maps::proc_self_maps(va, va + (16 << 12)).unwrap();
    assert_eq!(real.len(), 1);
    assert_eq!(real[0].offset, BASE + 0x4000);
    assert!(real[0].path.contains("test-bar"), "{}", real[0].path);
    assert!(aspace.maps()[0].contains(" 10000004000 "), "{}", aspace.maps()[0]);
    for i in 0..16u64 {
        mem.write(PhysAddr(BASE + 0x4000 + i * PAGE_SIZE), &(i + 100).to_ne_bytes()).unwrap();
    }
    aspace.munmap(va + 3 * PAGE_SIZE, PAGE_SIZE).unwrap();
    let vmas = aspace.vmas();
    assert_eq!(vmas.len(), 2);
    assert_eq!(vmas[1].vm_start, va + 4 * PAGE_SIZE);
    assert_eq!(vmas[1].vm_pgoff, (BASE + 0x4000) / PAGE_SIZE + 4);
    assert_eq!(probe::read_u64(va + 15 * PAGE_SIZE).unwrap(), 115);
    assert_eq!(probe::read_u64(va + 2 * PAGE_SIZE).unwrap(), 102);
    assert_eq!(probe::read_u64(va + 3 * PAGE_SIZE).unwrap_err().signo, libc::SIGSEGV);
}
