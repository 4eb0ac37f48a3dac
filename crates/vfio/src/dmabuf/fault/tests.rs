//! Tests of `find_pfn` and fault-around: the worked examples of spec §4.6a,
//! the table of spec §9.4, and properties against a page-by-page reference.

use dmabuf::PhysVec;
use mm::PfnWindow;
use page::{Pfn, PgOff, PhysAddr, VirtAddr, PMD_ORDER, PUD_ORDER};
use proptest::prelude::*;

use super::*;
use crate::core_h::index_to_offset;

/// What [`find_pfn`] answered, without the range span, in plain numbers:
/// what the tables below expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    Found(u64),
    Fallback,
    Fault,
}

fn lookup(ranges: &[PhysVec], vma: &VmaGeometry, fault_addr: u64, order: u32) -> Got {
    match find_pfn(ranges, vma, VirtAddr(fault_addr), order) {
        PfnLookup::Found { pfn, .. } => Got::Found(pfn.0),
        PfnLookup::Fallback => Got::Fallback,
        PfnLookup::Fault => Got::Fault,
    }
}

/// The fault-around window of a fault that `find_pfn` serves at `order`.
fn window(ranges: &[PhysVec], vma: &VmaGeometry, fault_addr: u64, order: u32, max_bytes: u64) -> Option<PfnWindow> {
    match find_pfn(ranges, vma, VirtAddr(fault_addr), order) {
        PfnLookup::Found { range, .. } => Some(range.fault_around(VirtAddr(fault_addr), order, max_bytes)),
        PfnLookup::Fallback | PfnLookup::Fault => None,
    }
}

fn win(start: u64, len: u64, pfn: u64) -> PfnWindow {
    PfnWindow { start: VirtAddr(start), len, pfn: Pfn(pfn) }
}

#[test]
fn fault_around_stays_inside_the_vma_the_range_and_the_2mib_block() {
    let two_m = 2 << 20;
    // One range of 4 MiB at BAR offset 4K, device-fd style mapping of 4 MiB.
    let ranges = [pv((1 << 40) + 0x1000, 4 << 20)];
    let base = 0x7000_0000_0000;
    let m = vma(base + 0x1000, base + 0x1000 + (4 << 20), 0x1000_0001, 0x1000_0001);
    let w = window(&ranges, &m, base + 0x6123, 0, two_m).unwrap();
    assert_eq!(w.start, m.vm_start, "clipped to the VMA start");
    assert_eq!(w.start.0 + w.len, base + two_m, "ends at the 2 MiB boundary");
    assert_eq!(w.pfn, Pfn(((1 << 40) + 0x1000) >> 12));
    // Every page of the window translates as find_pfn says.
    let mut va = w.start.0;
    while va < w.start.0 + w.len {
        assert_eq!(lookup(&ranges, &m, va, 0), Got::Found(w.pfn.0 + (va - w.start.0) / PAGE_SIZE));
        va += PAGE_SIZE;
    }
}

#[test]
fn fault_around_never_crosses_a_range_boundary() {
    // Two ranges back to back in the buffer, far apart physically.
    let ranges = [pv(0x10_0000, 0x3000), pv(0x80_0000, 0x5000)];
    let m = vma(0x4000_0000, 0x4000_8000, 0, 0);
    assert_eq!(window(&ranges, &m, 0x4000_1000, 0, 2 << 20), Some(win(0x4000_0000, 0x3000, 0x100)));
    assert_eq!(window(&ranges, &m, 0x4000_6000, 0, 2 << 20), Some(win(0x4000_3000, 0x5000, 0x800)));
    assert_eq!(window(&ranges, &m, 0x4000_8000, 0, 2 << 20), None);
}

#[test]
fn fault_around_of_a_huge_fault_holds_the_huge_page() {
    let mib = 1 << 20;
    // A 64 MiB range at a 2 MiB-aligned VA, mapped from buffer offset 6 MiB.
    let ranges = [pv(1 << 40, 64 * mib)];
    let vm_start = 0x7f00_0060_0000;
    let m = vma(vm_start, vm_start + 40 * mib, 0x600, 0);
    let fault = vm_start + 27 * mib + 0x123;
    let w = window(&ranges, &m, fault, PMD_ORDER, 32 * mib).unwrap();
    let page = fault & !(2 * mib - 1);
    assert!(w.start.0 <= page && page + 2 * mib <= w.start.0 + w.len, "{w:?}");
    assert!(w.start.is_aligned(32 * mib), "starts at the 32 MiB block");
    assert_eq!(Got::Found(w.pfn.0), lookup(&ranges, &m, w.start.0, 0));
}

proptest! {
    #[test]
    fn fault_around_windows_agree_with_find_pfn_page_by_page(
        lens in proptest::collection::vec(1u64..40, 1..4),
        paddrs in proptest::collection::vec(0u64..1000, 4),
        head in 0u64..20, pgoff in 0u64..30, fault in 0u64..100, block_shift in 0u32..6,
    ) {
        let ranges: Vec<PhysVec> = lens.iter().zip(&paddrs).map(|(l, p)| pv(p * PAGE_SIZE, l * PAGE_SIZE)).collect();
        let total: u64 = lens.iter().sum();
        let pgoff = pgoff % total;
        let pages = (total - pgoff).min(head + 20).max(1);
        let vm_start = 0x1_0000_0000 + head * PAGE_SIZE;
        let m = vma(vm_start, vm_start + pages * PAGE_SIZE, pgoff, 0);
        let addr = vm_start + (fault % pages) * PAGE_SIZE;
        let w = window(&ranges, &m, addr, 0, PAGE_SIZE << block_shift).unwrap();
        let (start, end) = (w.start.0, w.start.0 + w.len);
        prop_assert!(start <= addr && addr < end && start >= vm_start && end <= m.vm_end.0);
        let mut va = start;
        while va < end {
            prop_assert_eq!(lookup(&ranges, &m, va, 0), Got::Found(w.pfn.0 + (va - start) / PAGE_SIZE));
            va += PAGE_SIZE;
        }
    }
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// A 1 GiB-aligned user virtual address for test VMAs.
const V: u64 = 0x7f00_0000_0000;

fn pv(paddr: u64, len: u64) -> PhysVec {
    PhysVec { paddr: PhysAddr(paddr), len }
}

fn vma(vm_start: u64, vm_end: u64, vm_pgoff: u64, vma_pgoff_adjust: u64) -> VmaGeometry {
    VmaGeometry {
        vm_start: VirtAddr(vm_start),
        vm_end: VirtAddr(vm_end),
        vm_pgoff: PgOff(vm_pgoff),
        vma_pgoff_adjust: PgOff(vma_pgoff_adjust),
    }
}

/// The start of BAR `index`, in bytes.
fn bar_start(index: u32) -> u64 {
    crate::core_h::bar_start(index).0
}

fn found(paddr: u64) -> Got {
    Got::Found(paddr >> PAGE_SHIFT)
}

/// `vm_pgoff` of a device-fd mmap of BAR `index` at byte `off`.
fn dev_pgoff(index: u32, off: u64) -> u64 {
    (index_to_offset(index) + off) >> PAGE_SHIFT
}

// --- find_pfn: spec §4.6a worked examples ---------------------------------

/// §4.6a device-fd example with the spec's literal BAR base 0xfe000000:
/// `find_pfn` only sees the ranges, so the base is irrelevant to it.
#[test]
fn worked_example_device_map_with_literal_bar_base() {
    let pgoff = 0x1000_0030;
    let ranges = [pv(0xfe03_0000, 0x3fd_0000)];
    let whole = vma(V, V + 0x3fd_0000, pgoff, pgoff);
    assert_eq!(lookup(&ranges, &whole, V + 0x5123, 0), Got::Found(0xfe035));
    // BAR offset 0x30000 is not 2 MiB aligned, so never huge.
    assert_eq!(lookup(&ranges, &whole, V + 0x5123, PMD_ORDER), Got::Fallback);
    // munmap(V + 0x3000, 0x1000): the tail VMA starts at V + 0x4000 with
    // vm_pgoff advanced by 4 pages; the adjust is unchanged.
    let tail = vma(V + 0x4000, V + 0x3fd_0000, 0x1000_0034, pgoff);
    assert_eq!(lookup(&ranges, &tail, V + 0x4000, 0), Got::Found(0xfe034));
}

#[test]
fn worked_example_device_map_in_our_physical_model() {
    // mmap(len = 0x3fd0000, offset = (1 << 40) + 0x30000).
    let pgoff = dev_pgoff(1, 0x3_0000);
    assert_eq!(pgoff, 0x1000_0030);
    let ranges = [pv(bar_start(1) + 0x3_0000, 0x3fd_0000)];
    let whole = vma(V, V + 0x3fd_0000, pgoff, pgoff);
    assert_eq!(lookup(&ranges, &whole, V + 0x5123, 0), Got::Found(0x1000_0035));
    assert_eq!(lookup(&ranges, &whole, V + 0x5123, PMD_ORDER), Got::Fallback);
    let tail = vma(V + 0x4000, V + 0x3fd_0000, pgoff + 4, pgoff);
    assert_eq!(lookup(&ranges, &tail, V + 0x4000, 0), found(bar_start(1) + 0x3_4000));
}

#[test]
fn worked_example_explicit_two_range_buffer_at_offset_l() {
    let l = 4 * MIB;
    let bar = bar_start(1);
    let ranges = [pv(bar + 0x3000, l), pv(bar + 0x3000 + l + 0x5000, l)];
    // mmap(len = L - 0x1000, offset = L): adjust 0, so vma_off = L.
    let m = vma(V, V + l - 0x1000, l >> PAGE_SHIFT, 0);
    assert_eq!(lookup(&ranges, &m, V, 0), found(bar + 0x3000 + l + 0x5000));
    // Last page of the mapping is the second-to-last page of R1.
    assert_eq!(lookup(&ranges, &m, V + l - 0x1001, 0), found(bar + 0x3000 + l + 0x5000 + l - 0x2000));
}

#[test]
fn huge_page_straddling_physically_adjacent_ranges_falls_back() {
    // R0 and R1 are contiguous in the BAR, but the buffer keeps them
    // apart: the 2 MiB page at V spans both and is never served whole.
    let bar = bar_start(1);
    let ranges = [pv(bar, MIB), pv(bar + MIB, 3 * MIB)];
    let m = vma(V, V + 4 * MIB, 0, 0);
    assert_eq!(lookup(&ranges, &m, V + 0x1000, PMD_ORDER), Got::Fallback);
    assert_eq!(lookup(&ranges, &m, V + MIB, 0), found(bar + MIB));
    // The second 2 MiB page lies inside R1 and is aligned.
    assert_eq!(lookup(&ranges, &m, V + 2 * MIB, PMD_ORDER), found(bar + 2 * MIB));
}

// --- find_pfn: table tests (spec §9.4) ------------------------------------

#[test]
fn single_range_without_offset_serves_base_and_huge_pages() {
    let pgoff = dev_pgoff(1, 0);
    let ranges = [pv(bar_start(1), 4 * MIB)];
    let m = vma(V, V + 4 * MIB, pgoff, pgoff);
    assert_eq!(lookup(&ranges, &m, V + 0x1234, 0), found(bar_start(1) + 0x1000));
    assert_eq!(lookup(&ranges, &m, V + 2 * MIB + 5, PMD_ORDER), found(bar_start(1) + 2 * MIB));
    // Too small for a 1 GiB page.
    assert_eq!(lookup(&ranges, &m, V, PUD_ORDER), Got::Fallback);
}

#[test]
fn single_range_with_huge_aligned_bar_offset_serves_huge_pages() {
    let pgoff = dev_pgoff(1, 2 * MIB);
    let ranges = [pv(bar_start(1) + 2 * MIB, 4 * MIB)];
    let m = vma(V, V + 4 * MIB, pgoff, pgoff);
    assert_eq!(lookup(&ranges, &m, V + 3 * MIB, PMD_ORDER), found(bar_start(1) + 4 * MIB));
    assert_eq!(lookup(&ranges, &m, V + 3 * MIB, 0), found(bar_start(1) + 5 * MIB));
}

#[test]
fn split_vma_translates_through_the_pgoff_shift() {
    let pgoff = dev_pgoff(2, 0);
    let ranges = [pv(bar_start(2), 8 * MIB)];
    // Tail of a split at V + 2 MiB + 12 KiB.
    let delta = 2 * MIB + 0x3000;
    let tail = vma(V + delta, V + 8 * MIB, pgoff + (delta >> PAGE_SHIFT), pgoff);
    assert_eq!(lookup(&ranges, &tail, V + delta, 0), found(bar_start(2) + delta));
    assert_eq!(lookup(&ranges, &tail, V + 7 * MIB, 0), found(bar_start(2) + 7 * MIB));
    // The tail's head is shorter than 2 MiB; the next window is whole.
    assert_eq!(lookup(&ranges, &tail, V + delta, PMD_ORDER), Got::Fallback);
    assert_eq!(lookup(&ranges, &tail, V + 4 * MIB, PMD_ORDER), found(bar_start(2) + 4 * MIB));
    // The head of the split keeps the original pgoff.
    let head = vma(V, V + delta, pgoff, pgoff);
    assert_eq!(lookup(&ranges, &head, V + delta - 1, 0), found(bar_start(2) + delta - PAGE_SIZE));
    assert_eq!(lookup(&ranges, &head, V + 2 * MIB, PMD_ORDER), Got::Fallback);
}

#[test]
fn multi_range_buffer_maps_each_page_to_its_range() {
    let b = bar_start(0);
    let ranges = [pv(b + 0x10_0000, 0x2000), pv(b + 0x50_0000, 0x1000), pv(b, 0x3000)];
    let m = vma(V, V + 0x6000, 0, 0);
    let expect = [b + 0x10_0000, b + 0x10_1000, b + 0x50_0000, b, b + 0x1000, b + 0x2000];
    for (i, paddr) in expect.into_iter().enumerate() {
        assert_eq!(lookup(&ranges, &m, V + i as u64 * PAGE_SIZE + 7, 0), found(paddr), "page {i}");
    }
}

#[test]
fn aliasing_ranges_map_two_buffer_offsets_to_the_same_pfn() {
    let p = bar_start(3) + 0x4000;
    let ranges = [pv(p, 0x2000), pv(p, 0x2000)];
    let m = vma(V, V + 0x4000, 0, 0);
    assert_eq!(lookup(&ranges, &m, V + 0x1000, 0), found(p + 0x1000));
    assert_eq!(lookup(&ranges, &m, V + 0x3000, 0), found(p + 0x1000));
}

#[test]
fn ranges_in_reversed_physical_order_follow_buffer_order() {
    let b = bar_start(1);
    let ranges = [pv(b + 2 * MIB, 2 * MIB), pv(b, 2 * MIB)];
    let m = vma(V, V + 4 * MIB, 0, 0);
    assert_eq!(lookup(&ranges, &m, V, PMD_ORDER), found(b + 2 * MIB));
    assert_eq!(lookup(&ranges, &m, V + 2 * MIB, PMD_ORDER), found(b));
    assert_eq!(lookup(&ranges, &m, V + 2 * MIB - 1, 0), found(b + 4 * MIB - PAGE_SIZE));
}

#[test]
fn huge_page_starting_exactly_at_a_range_boundary_is_served() {
    let b = bar_start(1);
    let ranges = [pv(b + 8 * MIB, 2 * MIB), pv(b, 2 * MIB)];
    let m = vma(V, V + 4 * MIB, 0, 0);
    // Window [V + 2 MiB, V + 4 MiB) is exactly R1.
    assert_eq!(lookup(&ranges, &m, V + 4 * MIB - 1, PMD_ORDER), found(b));
}

#[test]
fn huge_page_crossing_a_range_boundary_falls_back() {
    let b = bar_start(1);
    // Boundary at buffer offset 2 MiB + 4 KiB.
    let ranges = [pv(b, 2 * MIB + PAGE_SIZE), pv(b + 4 * MIB, 4 * MIB)];
    let m = vma(V, V + 6 * MIB, 0, 0);
    // [V + 2 MiB, V + 4 MiB) crosses the boundary.
    assert_eq!(lookup(&ranges, &m, V + 3 * MIB, PMD_ORDER), Got::Fallback);
    // [V, V + 2 MiB) is inside R0.
    assert_eq!(lookup(&ranges, &m, V, PMD_ORDER), found(b));
    assert_eq!(lookup(&ranges, &m, V + 2 * MIB, 0), found(b + 2 * MIB));
    assert_eq!(lookup(&ranges, &m, V + 2 * MIB + PAGE_SIZE, 0), found(b + 4 * MIB));
}

#[test]
fn huge_page_with_unaligned_pfn_falls_back() {
    let b = bar_start(1) + PAGE_SIZE;
    let ranges = [pv(b, 4 * MIB)];
    let m = vma(V, V + 4 * MIB, 0, 0);
    assert_eq!(lookup(&ranges, &m, V, PMD_ORDER), Got::Fallback);
    assert_eq!(lookup(&ranges, &m, V, 0), found(b));
}

#[test]
fn vma_head_and_tail_smaller_than_a_huge_page_fall_back() {
    let b = bar_start(1);
    let ranges = [pv(b, 8 * MIB)];
    // VMA [V + 1 MiB, V + 5 MiB) over buffer offsets [1 MiB, 5 MiB).
    let m = vma(V + MIB, V + 5 * MIB, MIB >> PAGE_SHIFT, 0);
    assert_eq!(lookup(&ranges, &m, V + MIB, PMD_ORDER), Got::Fallback);
    assert_eq!(lookup(&ranges, &m, V + 5 * MIB - 1, PMD_ORDER), Got::Fallback);
    assert_eq!(lookup(&ranges, &m, V + 3 * MIB, PMD_ORDER), found(b + 2 * MIB));
    assert_eq!(lookup(&ranges, &m, V + MIB, 0), found(b + MIB));
}

#[test]
fn vma_shorter_than_a_huge_page_falls_back() {
    let ranges = [pv(bar_start(1), 2 * MIB)];
    let m = vma(V, V + MIB, 0, 0);
    assert_eq!(lookup(&ranges, &m, V, PMD_ORDER), Got::Fallback);
    assert_eq!(lookup(&ranges, &m, V, 0), found(bar_start(1)));
}

#[test]
fn base_page_outside_every_range_is_a_fault() {
    let ranges = [pv(bar_start(1), 0x2000)];
    // A VMA longer than the buffer cannot come from mmap; the page past
    // the end is the "cannot happen" case.
    let m = vma(V, V + 0x4000, 0, 0);
    assert_eq!(lookup(&ranges, &m, V + 0x2000, 0), Got::Fault);
    assert_eq!(lookup(&[], &m, V, 0), Got::Fault);
    assert_eq!(lookup(&[], &m, V, PMD_ORDER), Got::Fallback);
}

#[test]
fn address_outside_the_vma_faults_at_order_zero_and_falls_back_above() {
    let ranges = [pv(bar_start(1), 4 * MIB)];
    let m = vma(V, V + 4 * MIB, 0, 0);
    assert_eq!(lookup(&ranges, &m, V - 1, 0), Got::Fault);
    assert_eq!(lookup(&ranges, &m, V + 4 * MIB, 0), Got::Fault);
    assert_eq!(lookup(&ranges, &m, V + 4 * MIB, PMD_ORDER), Got::Fallback);
}

#[test]
fn pud_order_serves_gigabyte_pages_when_everything_aligns() {
    let b = bar_start(1);
    let ranges = [pv(b, 2 * GIB)];
    let m = vma(V, V + 2 * GIB, dev_pgoff(1, 0), dev_pgoff(1, 0));
    let r = lookup(&ranges, &m, V + GIB + 12345, PUD_ORDER);
    assert_eq!(r, found(b + GIB));
    if let Got::Found(pfn) = r {
        assert_eq!(pfn % (1 << PUD_ORDER), 0);
    }
    // Same VMA over a BAR offset of 2 MiB: PMD yes, PUD no.
    let shifted = [pv(b + 2 * MIB, 2 * GIB)];
    assert_eq!(lookup(&shifted, &m, V, PUD_ORDER), Got::Fallback);
    assert_eq!(lookup(&shifted, &m, V, PMD_ORDER), found(b + 2 * MIB));
}

#[test]
fn overflowing_inputs_fault_instead_of_panicking() {
    let ranges = [pv(bar_start(1), 4 * MIB)];
    // Fault address near u64::MAX, VMA reaching the top of the space.
    let top = vma(u64::MAX - 4 * MIB + 1 - (PAGE_SIZE - 1), u64::MAX, 0, 0);
    assert_eq!(lookup(&ranges, &top, u64::MAX, 0), Got::Fault);
    assert_eq!(lookup(&ranges, &top, u64::MAX, PMD_ORDER), Got::Fallback);
    // vm_pgoff below the adjust.
    let below = vma(V, V + 4 * MIB, 5, 6);
    assert_eq!(lookup(&ranges, &below, V, 0), Got::Fault);
    // vm_pgoff - adjust does not survive the shift to bytes.
    let huge = vma(V, V + 4 * MIB, 1 << 52, 0);
    assert_eq!(lookup(&ranges, &huge, V, 0), Got::Fault);
    // vma_off fits but fault_offset + pagesize does not.
    let edge = vma(V, V + 4 * MIB, (u64::MAX >> PAGE_SHIFT) - 1, 0);
    assert_eq!(lookup(&ranges, &edge, V + 0x1000, 0), Got::Fault);
    // Range lengths whose sum overflows before the walk reaches the page.
    let wide = [pv(0, 1 << 63), pv(0, 1 << 63)];
    let past = vma(V, V + 0x2000, (1 << 63) >> PAGE_SHIFT, 0);
    assert_eq!(lookup(&wide, &past, V, 0), Got::Fault);
    // paddr + offset overflows.
    let high = [pv(u64::MAX - 0xfff, 0x10_0000)];
    let m = vma(V, V + 0x10_0000, 0, 0);
    assert_eq!(lookup(&high, &m, V + 0x5000, 0), Got::Fault);
    // Orders whose page size is not representable.
    for order in [52, 63, 64, u32::MAX] {
        assert_eq!(lookup(&ranges, &m, V, order), Got::Fallback);
    }
}

// --- property tests ----------------------------------------------------------

/// A buffer for property tests: ranges in pages, plus the reference
/// page table (buffer page → (pfn, range number)).
#[derive(Debug, Clone)]
struct Buffer {
    ranges: Vec<PhysVec>,
    pages: Vec<(u64, usize)>,
}

impl Buffer {
    /// The simple reference walk: list every page of every range.
    fn new(ranges: Vec<PhysVec>) -> Self {
        let mut pages = Vec::new();
        for (i, r) in ranges.iter().enumerate() {
            for k in 0..r.len >> PAGE_SHIFT {
                pages.push(((r.paddr.0 >> PAGE_SHIFT) + k, i));
            }
        }
        Self { ranges, pages }
    }
}

/// One range: in BAR 0..6, at a page offset that is often huge-aligned,
/// with a length that is often a few huge pages; aliasing comes from
/// reusing an earlier range's start (see `buffer`).
fn range() -> impl Strategy<Value = PhysVec> {
    let bar = 0u32..6;
    let start = prop_oneof![2 => (0u64..64).prop_map(|p| p * 512), 1 => 0u64..32768];
    let pages = prop_oneof![1 => 1u64..8, 1 => 1u64..1100, 2 => (1u64..4).prop_map(|n| n * 512)];
    (bar, start, pages).prop_map(|(bar, start, pages)| pv(bar_start(bar) + (start << PAGE_SHIFT), pages << PAGE_SHIFT))
}

fn buffer() -> impl Strategy<Value = Buffer> {
    (prop::collection::vec(range(), 1..6), prop::collection::vec(any::<Option<prop::sample::Index>>(), 6)).prop_map(
        |(mut ranges, alias)| {
            for i in 1..ranges.len() {
                if let Some(j) = &alias[i] {
                    let j = j.index(i);
                    ranges[i].paddr = ranges[j].paddr;
                }
            }
            Buffer::new(ranges)
        },
    )
}

/// A buffer, a mapping of part of it and the split VMAs of that mapping.
#[derive(Debug, Clone)]
struct Mapping {
    buf: Buffer,
    /// First buffer page the mapping shows.
    first_page: u64,
    vmas: Vec<VmaGeometry>,
}

fn mapping() -> impl Strategy<Value = Mapping> {
    buffer()
        .prop_flat_map(|buf| {
            let n = buf.pages.len() as u64;
            // Starting the mapping at a range's first page (with a VA
            // shift of 0) is what makes huge pages possible at all.
            let starts: Vec<u64> = buf
                .ranges
                .iter()
                .scan(0, |start, r| {
                    let this = *start;
                    *start += r.len >> PAGE_SHIFT;
                    Some(this)
                })
                .collect();
            (Just(buf), prop_oneof![1 => 0..n, 3 => prop::sample::select(starts)])
        })
        .prop_flat_map(|(buf, first_page)| {
            let n = buf.pages.len() as u64;
            let len_pages = 1..=n - first_page;
            // VA of the mapping: 1 GiB aligned plus a page shift, often 0.
            let va_shift = prop_oneof![3 => Just(0u64), 1 => 0u64..1024];
            // vma_pgoff_adjust: 0 for an explicit DMA-buf map, a
            // device-fd style base, or any base that cannot overflow.
            let adjust = prop_oneof![Just(0u64), (0u32..6).prop_map(|i| dev_pgoff(i, 0)), 0u64..(1 << 51),];
            let splits = prop::collection::vec(any::<prop::sample::Index>(), 0..4);
            (Just(buf), Just(first_page), len_pages, va_shift, adjust, splits)
        })
        .prop_map(|(buf, first_page, len_pages, va_shift, adjust, splits)| {
            let vm_pgoff = adjust + first_page;
            let vm_start = V + (va_shift << PAGE_SHIFT);
            let mut cuts: Vec<u64> = splits.iter().map(|s| s.index(len_pages as usize) as u64).collect();
            cuts.push(0);
            cuts.push(len_pages);
            cuts.sort_unstable();
            cuts.dedup();
            let vmas = cuts
                .windows(2)
                .map(|w| vma(vm_start + (w[0] << PAGE_SHIFT), vm_start + (w[1] << PAGE_SHIFT), vm_pgoff + w[0], adjust))
                .collect();
            Mapping { buf, first_page, vmas }
        })
}

/// Buffer page shown at `va` of the mapping (before it was split).
fn buffer_page(m: &Mapping, va: u64) -> usize {
    (m.first_page + ((va - m.vmas[0].vm_start.0) >> PAGE_SHIFT)) as usize
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn order_zero_matches_the_reference_walk_on_every_page(m in mapping(), low in 0u64..PAGE_SIZE) {
        for v in &m.vmas {
            let mut va = v.vm_start.0;
            while va < v.vm_end.0 {
                let (pfn, _) = m.buf.pages[buffer_page(&m, va)];
                prop_assert_eq!(lookup(&m.buf.ranges, v, va + low, 0), Got::Found(pfn));
                va += PAGE_SIZE;
            }
        }
    }

    #[test]
    fn huge_pages_are_served_exactly_when_vma_range_and_pfn_allow(m in mapping(), order in prop_oneof![2 => Just(PMD_ORDER), 1 => 1u32..4]) {
        let pages = 1u64 << order;
        let size = PAGE_SIZE << order;
        for v in &m.vmas {
            // Every huge window touching the VMA, probed once.
            let mut win = v.vm_start.0 & !(size - 1);
            while win < v.vm_end.0 {
                let got = lookup(&m.buf.ranges, v, win.max(v.vm_start.0), order);
                let inside_vma = win >= v.vm_start.0 && win + size <= v.vm_end.0;
                let expect = if inside_vma {
                    let first = buffer_page(&m, win);
                    let span = &m.buf.pages[first..first + pages as usize];
                    let (pfn, range) = span[0];
                    let one_range = span.iter().all(|&(_, r)| r == range);
                    let contiguous = span.iter().enumerate().all(|(k, &(p, _))| p == pfn + k as u64);
                    if one_range && contiguous && pfn % pages == 0 {
                        Got::Found(pfn)
                    } else {
                        Got::Fallback
                    }
                } else {
                    Got::Fallback
                };
                prop_assert_eq!(got, expect);
                if let Got::Found(pfn) = got {
                    prop_assert!(inside_vma);
                    prop_assert_eq!(pfn % pages, 0);
                    for k in 0..pages {
                        let sub = lookup(&m.buf.ranges, v, win + (k << PAGE_SHIFT), 0);
                        prop_assert_eq!(sub, Got::Found(pfn + k));
                    }
                }
                win += size;
            }
        }
    }

    #[test]
    fn find_pfn_never_panics_on_arbitrary_input(
        ranges in prop::collection::vec((any::<u64>(), any::<u64>()).prop_map(|(p, l)| pv(p, l)), 0..5),
        vm_start in any::<u64>(),
        vm_end in any::<u64>(),
        vm_pgoff in any::<u64>(),
        adjust in any::<u64>(),
        fault_addr in any::<u64>(),
        order in prop_oneof![0u32..20, any::<u32>()],
    ) {
        let v = vma(vm_start, vm_end, vm_pgoff, adjust);
        let r = lookup(&ranges, &v, fault_addr, order);
        if let Got::Found(pfn) = r {
            prop_assert!(order < 64 && pfn.trailing_zeros() >= order);
        }
        // Fallback is only for pages that have a smaller order to try.
        if order == 0 {
            prop_assert_ne!(r, Got::Fallback);
        }
    }
}
