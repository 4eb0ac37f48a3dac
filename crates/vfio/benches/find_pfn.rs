//! The pure arithmetic on the fault path, `find_pfn` and the fault-around
//! window it yields, per call. The whole fault path (through userfaultfd,
//! against the kernel's own) is measured by `vfio-dmabuf bench`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use dmabuf::PhysVec;
use page::{PgOff, PhysAddr, VirtAddr};
use vfio::{find_pfn, PfnLookup, VmaGeometry, FAULT_AROUND_BYTES};

fn bench(c: &mut Criterion) {
    let one = [PhysVec { paddr: PhysAddr(1 << 40), len: 64 << 20 }];
    let many: Vec<PhysVec> =
        (0..16).map(|i| PhysVec { paddr: PhysAddr((1 << 40) + i * (8 << 20)), len: 4 << 20 }).collect();
    let vma = VmaGeometry {
        vm_start: VirtAddr(0x7f00_0000_0000),
        vm_end: VirtAddr(0x7f00_0400_0000),
        vm_pgoff: PgOff(0x1000_0000),
        vma_pgoff_adjust: PgOff(0x1000_0000),
    };
    let addr = VirtAddr(vma.vm_start.0 + (37 << 20) + 0x1234);
    c.bench_function("find_pfn, one range, order 9", |b| {
        b.iter(|| find_pfn(black_box(&one), &vma, black_box(addr), 9))
    });
    c.bench_function("find_pfn, 16 ranges, order 0", |b| {
        b.iter(|| find_pfn(black_box(&many), &vma, black_box(addr), 0))
    });
    c.bench_function("find_pfn and its fault-around window, 16 ranges", |b| {
        b.iter(|| match find_pfn(black_box(&many), &vma, black_box(addr), 0) {
            PfnLookup::Found { range, .. } => Some(range.fault_around(addr, 0, FAULT_AROUND_BYTES)),
            PfnLookup::Fallback | PfnLookup::Fault => None,
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
