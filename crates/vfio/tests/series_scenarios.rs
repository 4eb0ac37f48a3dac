//! The series' own test scenarios (spec §9.1, Matt's standalone
//! `vfio_dmabuf_mmap_test.c`, T2–T18 and the "TODO in the test" items),
//! replayed through real mappings, real page faults and real SIGBUS.
//!
//! Adaptation: the original ran on QEMU's edu device, whose BAR0 is MMIO and
//! checks itself (write x to register 0x04, read back !x). Our edu-plus has
//! the same register BAR0, mappable (each access traps and is emulated);
//! T2 checks it through an exported mapping as the original does, and every
//! other mapping scenario uses BAR1, 64 MiB of RAM, and checks that data
//! written through one path (a mapping, or `pwrite` on the device fd) reads
//! back through another. Where the original caught SIGBUS with `sigsetjmp`,
//! we use `mm::probe`, which reports the real signal as an `AccessFault`.
//!
//! Every test has its own address space and its own device, so fault
//! counters and buffer lists belong to that test alone.

mod common;

use std::sync::Arc;

use common::{alone, assert_sigbus, device, quiet, BAR1, MIB, PAGE, RDWR};
use dmabuf::{DmaBufFd, Status};
use mm::probe::{self, Width};
use mm::AddressSpace;
use page::HPAGE_PMD_SIZE;
use rustix::io::Errno;
use vfio::uapi::*;
use vfio::{mmap_dmabuf, DeviceFd, MmapArgs, VfioDmaBuf, VfioError, VfioPciDevice};

/// Size of edu-plus's RAM BAR1.
const BAR1_SIZE: u64 = 64 * MIB;
/// Device-fd file offset of BAR0, the edu registers.
const BAR0: u64 = 0;
/// edu register 0x00: identification.
const EDU_REG_ID: u64 = 0x00;
/// What the identification register reads.
const EDU_MAGIC: u32 = 0x0100_00ed;
/// edu register 0x04: reads back the inverse of what was written.
const EDU_REG_LIVENESS: u64 = 0x04;
/// The value the original T13 stores at each page, xor-ed with the offset.
const MAGIC: u32 = 0xca77_face;
/// Alignment of the VAs the original asked for in T13 and T15.
const ALIGN_32M: u64 = 32 * MIB;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A fresh address space and a freshly opened edu-plus.
///
/// Tests that assert SIGSEGV on an address they unmapped must be alone in
/// this process: any other test's mmap could reuse the hole meanwhile. They
/// hold [`alone`]; every other test holds [`quiet`].
fn setup() -> (AddressSpace, Arc<VfioPciDevice>, DeviceFd) {
    let aspace = AddressSpace::new().expect("userfaultfd with MINOR and POISON");
    let vdev = device("edu-plus");
    // The series' rules exactly: one page per order-0 fault (Linux maps a
    // BAR page by page), so fault counts below are the kernel's.
    vdev.set_fault_around(false);
    let fd = vdev.open();
    (aspace, vdev, fd)
}

/// Exports `ranges` of BAR1 as in the original (`O_RDWR|O_CLOEXEC`, flags 0).
fn export(fd: &DeviceFd, ranges: &[(u64, u64)]) -> DmaBufFd {
    fd.feature_dma_buf(1, RDWR, ranges).expect("export of BAR1 ranges")
}

/// A read-write shared mapping of `len` bytes of a buffer from byte `offset`.
fn map_buf(aspace: &AddressSpace, buf: &DmaBufFd, offset: u64, len: u64) -> u64 {
    mmap_dmabuf(aspace, buf, MmapArgs::shared(offset, len)).expect("mmap of the buffer")
}

/// The same, at exactly `addr`.
fn map_buf_at(aspace: &AddressSpace, buf: &DmaBufFd, offset: u64, len: u64, addr: u64) -> Result<u64, VfioError> {
    mmap_dmabuf(aspace, buf, MmapArgs { addr: Some(addr), ..MmapArgs::shared(offset, len) })
}

/// A read-write shared device-fd mapping of BAR1 from BAR offset `bar_off`.
fn map_bar1(aspace: &AddressSpace, fd: &DeviceFd, bar_off: u64, len: u64) -> u64 {
    fd.mmap(aspace, MmapArgs::shared(BAR1 + bar_off, len)).expect("device-fd mmap of BAR1")
}

/// The pattern the original T13 writes: `0xca77face ^ offset`.
fn pattern(bar_off: u64) -> u32 {
    MAGIC ^ u32::try_from(bar_off).expect("BAR1 offsets fit in 32 bits")
}

fn read_u32(va: u64) -> u32 {
    match probe::read(va, Width::U32) {
        Ok(v) => v as u32,
        Err(e) => panic!("read at {va:#x}: {e}"),
    }
}

fn write_u32(va: u64, v: u32) {
    if let Err(e) = probe::write(va, Width::U32, u64::from(v)) {
        panic!("write at {va:#x}: {e}");
    }
}

/// `pread` of a u32 on the device fd at `offset` (`index << 40 | pos`).
fn region_read_u32(fd: &DeviceFd, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    assert_eq!(fd.read(offset, &mut b).unwrap(), 4);
    u32::from_le_bytes(b)
}

/// `pwrite` of a u32 on the device fd at `offset`.
fn region_write_u32(fd: &DeviceFd, offset: u64, v: u32) {
    assert_eq!(fd.write(offset, &v.to_le_bytes()).unwrap(), 4);
}

/// Asserts that a load at `va` raises SIGSEGV: nothing is mapped there.
fn assert_sigsegv(va: u64) {
    let e = probe::read(va, Width::U32).expect_err("load from an unmapped address must fault");
    assert_eq!(e.signo, libc::SIGSEGV, "load at {va:#x}: {e}");
}

fn errno_of<T: std::fmt::Debug>(r: Result<T, VfioError>) -> Errno {
    r.expect_err("the call must fail").errno()
}

/// Writes `pattern(bar_off + i)` at the start of every page of a mapping of
/// `len` bytes whose byte 0 is BAR offset `bar_off`.
fn fill_pattern(va: u64, bar_off: u64, len: u64) {
    for i in (0..len).step_by(PAGE as usize) {
        write_u32(va + i, pattern(bar_off + i));
    }
}

/// Checks what [`fill_pattern`] wrote, through any mapping.
fn check_pattern(va: u64, bar_off: u64, len: u64) {
    for i in (0..len).step_by(PAGE as usize) {
        assert_eq!(read_u32(va + i), pattern(bar_off + i), "page {i:#x} of the mapping at {va:#x}");
    }
}

/// Maps something at a VA `head` bytes below a free `align`-aligned address,
/// through `map(addr)`. The address is taken from the middle of the largest
/// hole in the real `/proc/self/maps`; when another test took it meanwhile
/// (`EEXIST`, the mapping asks with `MAP_FIXED_NOREPLACE`), it looks again.
/// Returns the VA of the mapping, which is exactly the chosen one.
fn map_at_aligned(len: u64, align: u64, head: u64, map: impl Fn(u64) -> Result<u64, VfioError>) -> u64 {
    // Stay clear of the stack and of the low addresses the binary lives at.
    const LOW: u64 = 1 << 32;
    const HIGH: u64 = 0x7f00_0000_0000;
    let need = head + len + align;
    for attempt in 0..16u64 {
        let mut lines = mm::maps::proc_self_maps(0, u64::MAX).expect("read /proc/self/maps");
        lines.sort_by_key(|l| l.start);
        let mut best = (0, 0);
        let mut prev_end = LOW;
        for l in lines.iter().map(|l| (l.start.clamp(LOW, HIGH), l.end.clamp(LOW, HIGH))).chain([(HIGH, HIGH)]) {
            if l.0 > prev_end && l.0 - prev_end > best.1 - best.0 {
                best = (prev_end, l.0);
            }
            prev_end = prev_end.max(l.1);
        }
        assert!(best.1 - best.0 >= need * 4, "no hole of {need:#x} bytes in the address space");
        // The middle of the hole, moved a little on every retry.
        let mid = best.0 + (best.1 - best.0) / 2 + attempt * 4 * need;
        let aligned = mid.next_multiple_of(align);
        assert!(aligned - head >= best.0 && aligned + len <= best.1);
        match map(aligned - head) {
            Ok(va) => {
                assert_eq!(va, aligned - head, "an exact-address mapping must land where asked");
                return va;
            }
            Err(e) if e.errno() == Errno::EXIST => continue,
            Err(e) => panic!("mapping at {:#x}: {e}", aligned - head),
        }
    }
    panic!("no free {align:#x}-aligned address after 16 attempts");
}

// ---------------------------------------------------------------------------
// T2–T18
// ---------------------------------------------------------------------------

/// T2. Original: export BAR0 `[0, size)` with `O_RDWR|O_CLOEXEC`, mmap it at
/// offset 0, check the edu magic and the invert register through the
/// mapping. Done as such on BAR0 (its accesses trap and are emulated), then
/// also on BAR1, whose data must agree between the mapping and
/// `pread`/`pwrite` in both directions.
#[test]
fn t02_export_of_whole_bar1_maps_and_agrees_with_region_read_write() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    // The edu registers of BAR0, through the device fd.
    assert_eq!(region_read_u32(&fd, BAR0 + EDU_REG_ID), EDU_MAGIC);
    region_write_u32(&fd, BAR0 + EDU_REG_LIVENESS, 0x1234_5678);
    assert_eq!(region_read_u32(&fd, BAR0 + EDU_REG_LIVENESS), !0x1234_5678);
    // The original: export BAR0 whole, map the buffer, check through it.
    let bar0 = fd.region_info(0).unwrap();
    assert_ne!(bar0.flags & VFIO_REGION_INFO_FLAG_MMAP, 0);
    let regs = fd.feature_dma_buf(0, RDWR, &[(0, bar0.size)]).expect("export of BAR0");
    let rva = map_buf(&aspace, &regs, 0, bar0.size);
    assert_eq!(read_u32(rva + EDU_REG_ID), EDU_MAGIC);
    write_u32(rva + EDU_REG_LIVENESS, 0x0bad_cafe);
    assert_eq!(read_u32(rva + EDU_REG_LIVENESS), !0x0bad_cafe);
    assert_eq!(region_read_u32(&fd, BAR0 + EDU_REG_LIVENESS), !0x0bad_cafe);

    let bar1 = fd.region_info(1).unwrap();
    assert_eq!(bar1.size, BAR1_SIZE);
    assert_ne!(bar1.flags & VFIO_REGION_INFO_FLAG_MMAP, 0);
    let buf = export(&fd, &[(0, BAR1_SIZE)]);
    assert_eq!(buf.buffer().size(), BAR1_SIZE);
    assert_eq!(buf.buffer().status(), Status::Ok);
    let va = map_buf(&aspace, &buf, 0, BAR1_SIZE);
    // pwrite → mapping, at the first, a middle and the last word.
    for off in [0, 0x12_3454, BAR1_SIZE - 4] {
        region_write_u32(&fd, BAR1 + off, pattern(off));
        assert_eq!(read_u32(va + off), pattern(off));
    }
    // mapping → pread.
    for off in [8, 0x20_0000, BAR1_SIZE - 8] {
        write_u32(va + off, !pattern(off));
        assert_eq!(region_read_u32(&fd, BAR1 + off), !pattern(off));
    }
}

/// T3. Original: mmap of the buffer with `size + 4K`, and at offset 4K with
/// the full size, both fail. Adapted: the same on a whole-BAR1 buffer; the
/// failures must be `EINVAL` (`dma_buf_mmap_internal`'s bounds check) and
/// leave no VMA behind, and the buffer still maps with the right size.
#[test]
fn t03_buffer_mmap_past_its_end_fails_with_einval() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let buf = export(&fd, &[(0, BAR1_SIZE)]);
    let too_long = mmap_dmabuf(&aspace, &buf, MmapArgs::shared(0, BAR1_SIZE + PAGE));
    assert_eq!(errno_of(too_long), Errno::INVAL);
    let shifted = mmap_dmabuf(&aspace, &buf, MmapArgs::shared(PAGE, BAR1_SIZE));
    assert_eq!(errno_of(shifted), Errno::INVAL);
    assert!(aspace.vmas().is_empty(), "a refused mmap leaves no VMA: {:?}", aspace.maps());
    // The exact window and the shifted one that ends at the end are fine.
    let va = map_buf(&aspace, &buf, 0, BAR1_SIZE);
    let tail = map_buf(&aspace, &buf, PAGE, BAR1_SIZE - PAGE);
    write_u32(va + PAGE + 0x10, 0xfeed);
    assert_eq!(read_u32(tail + 0x10), 0xfeed);
}

/// T4. Original: with the buffer in place, a device-fd mmap of BAR0 works;
/// with `size + 4K`, or at `offset + 4K` with the full size, it fails.
/// Adapted: BAR1; the device-fd mapping sees what the buffer mapping wrote,
/// and the failures are `EINVAL` (`req_start + req_len > phys_len`).
#[test]
fn t04_device_fd_mmap_works_beside_a_buffer_and_fails_past_the_bar_end() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let buf = export(&fd, &[(0, BAR1_SIZE)]);
    let bva = map_buf(&aspace, &buf, 0, BAR1_SIZE);
    let dva = map_bar1(&aspace, &fd, 0, BAR1_SIZE);
    write_u32(bva + 0x40_0004, 0xabcd_0001);
    assert_eq!(read_u32(dva + 0x40_0004), 0xabcd_0001);
    write_u32(dva + BAR1_SIZE - 4, 0xabcd_0002);
    assert_eq!(read_u32(bva + BAR1_SIZE - 4), 0xabcd_0002);

    let vmas = aspace.vmas().len();
    assert_eq!(errno_of(fd.mmap(&aspace, MmapArgs::shared(BAR1, BAR1_SIZE + PAGE))), Errno::INVAL);
    assert_eq!(errno_of(fd.mmap(&aspace, MmapArgs::shared(BAR1 + PAGE, BAR1_SIZE))), Errno::INVAL);
    assert_eq!(aspace.vmas().len(), vmas, "a refused mmap leaves no VMA");
}

/// T5. Original: permanently revoke the first buffer; any access through its
/// mapping faults. Adapted: pages touched before the revoke (their PTEs must
/// be zapped) and a page never touched both raise a real SIGBUS
/// (`BUS_ADRERR`) for loads and stores; the data itself is untouched.
#[test]
fn t05_permanent_revoke_makes_every_access_sigbus() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let buf = export(&fd, &[(0, BAR1_SIZE)]);
    let va = map_buf(&aspace, &buf, 0, BAR1_SIZE);
    for off in [0, 0x1000, 0x20_0000, BAR1_SIZE - PAGE] {
        write_u32(va + off, pattern(off));
    }
    let sigbus_before = aspace.fault_stats().sigbus;

    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    // Now: PermRevoked, every PTE of the mapping zapped.
    assert_eq!(buf.buffer().status(), Status::PermRevoked);
    for off in [0, 0x1000, 0x20_0000, BAR1_SIZE - PAGE, 0x3ff_0000] {
        assert_sigbus(va + off);
    }
    assert!(aspace.fault_stats().sigbus > sigbus_before, "the SIGBUS came from our fault handler");
    // The BAR memory is intact, only this door is shut.
    assert_eq!(region_read_u32(&fd, BAR1 + 0x20_0000), pattern(0x20_0000));
}

/// T6. Original: after T5's revoke, the device-fd mapping of the same BAR
/// still works. Adapted: a device-fd mapping made before the revoke keeps
/// reading what was written through the now dead buffer, and writes through
/// it reach the BAR.
#[test]
fn t06_device_fd_mapping_survives_the_revoke_of_a_buffer_over_the_same_bar() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let buf = export(&fd, &[(0, BAR1_SIZE)]);
    let bva = map_buf(&aspace, &buf, 0, BAR1_SIZE);
    let dva = map_bar1(&aspace, &fd, 0, BAR1_SIZE);
    write_u32(bva + 0x8000, 0x600d_0006);
    assert_eq!(read_u32(dva + 0x8000), 0x600d_0006);

    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_sigbus(bva + 0x8000);
    // The device-fd mapping's own buffer is a different one, still Ok.
    assert_eq!(read_u32(dva + 0x8000), 0x600d_0006);
    write_u32(dva + 0x9000, 0x600d_0007);
    assert_eq!(region_read_u32(&fd, BAR1 + 0x9000), 0x600d_0007);
    // A page the device-fd mapping never touched faults in fine too.
    assert_eq!(read_u32(dva + BAR1_SIZE - PAGE), 0);
}

/// T7. Original: a second revoke of the same fd gives `-1/EBADFD`.
/// Adapted: unchanged; the buffer stays `PermRevoked`.
#[test]
fn t07_second_revoke_of_the_same_buffer_fails_with_ebadfd() {
    let _vm = quiet();
    let (_aspace, _vdev, fd) = setup();
    let buf = export(&fd, &[(0, BAR1_SIZE)]);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(errno_of(fd.feature_dma_buf_revoke(buf.raw_fd())), Errno::BADFD);
    assert_eq!(buf.buffer().status(), Status::PermRevoked);
}

/// T8. Original: mmap of the revoked buffer fails. Adapted: with `ENODEV`
/// (the v3/v4 early check), and no VMA is left.
#[test]
fn t08_mmap_of_a_revoked_buffer_fails_with_enodev() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let buf = export(&fd, &[(0, BAR1_SIZE)]);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(errno_of(mmap_dmabuf(&aspace, &buf, MmapArgs::shared(0, BAR1_SIZE))), Errno::NODEV);
    assert_eq!(errno_of(mmap_dmabuf(&aspace, &buf, MmapArgs::shared(PAGE, PAGE))), Errno::NODEV);
    assert!(aspace.vmas().is_empty(), "{:?}", aspace.maps());
}

/// T9. Original: a new buffer for the same range works after the revoke.
/// Adapted: the fresh buffer maps, shows the data written through the dead
/// one, and can write; the dead one stays dead.
#[test]
fn t09_new_export_over_a_revoked_range_works() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let old = export(&fd, &[(0, BAR1_SIZE)]);
    let old_va = map_buf(&aspace, &old, 0, BAR1_SIZE);
    write_u32(old_va + 0x1_0000, 0x0009_0001);
    fd.feature_dma_buf_revoke(old.raw_fd()).unwrap();

    let new = export(&fd, &[(0, BAR1_SIZE)]);
    assert_eq!(new.buffer().status(), Status::Ok);
    let va = map_buf(&aspace, &new, 0, BAR1_SIZE);
    assert_eq!(read_u32(va + 0x1_0000), 0x0009_0001);
    write_u32(va + 0x1_0004, 0x0009_0002);
    assert_eq!(region_read_u32(&fd, BAR1 + 0x1_0004), 0x0009_0002);
    assert_sigbus(old_va + 0x1_0000);
}

/// T10. Original: two overlapping buffers alias: write a value through one,
/// read its inverse (MMIO invert register) through the other. Adapted: a
/// whole-BAR buffer and a 1 MiB buffer at BAR offset 64 KiB; a write through
/// either mapping reads back through the other at the matching offset.
#[test]
fn t10_two_overlapping_buffers_alias_the_same_bar_memory() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let whole = export(&fd, &[(0, BAR1_SIZE)]);
    let part = export(&fd, &[(0x1_0000, MIB)]);
    let wva = map_buf(&aspace, &whole, 0, BAR1_SIZE);
    let pva = map_buf(&aspace, &part, 0, MIB);
    write_u32(wva + 0x1_0040, 0x0010_0001);
    assert_eq!(read_u32(pva + 0x40), 0x0010_0001);
    write_u32(pva + MIB - 4, 0x0010_0002);
    assert_eq!(read_u32(wva + 0x1_0000 + MIB - 4), 0x0010_0002);
    // A third path agrees.
    assert_eq!(region_read_u32(&fd, BAR1 + 0x1_0040), 0x0010_0001);
}

/// T11. Original: a second mmap of the same buffer fd sees the same device
/// state. Adapted: two mappings of one buffer share the data both ways.
#[test]
fn t11_second_mmap_of_the_same_buffer_fd_sees_the_same_data() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let buf = export(&fd, &[(0, BAR1_SIZE)]);
    let a = map_buf(&aspace, &buf, 0, BAR1_SIZE);
    write_u32(a + 0x30_0000, 0x0011_0001);
    let b = map_buf(&aspace, &buf, 0, BAR1_SIZE);
    assert_ne!(a, b);
    assert_eq!(read_u32(b + 0x30_0000), 0x0011_0001);
    write_u32(b + 0x30_0004, 0x0011_0002);
    assert_eq!(read_u32(a + 0x30_0004), 0x0011_0002);
}

/// T12. Original: revoke through a `dup()`ed fd; *both* mappings of that
/// buffer fault, while another buffer over the same range still works.
/// Adapted: one mapping made through the original fd, one through the dup;
/// the revoke names the dup. Both SIGBUS; the other buffer's mapping still
/// reads, and a store through it reads back through it and the device fd;
/// a new mmap through the original fd is refused.
#[test]
fn t12_revoke_through_a_dup_kills_every_mapping_of_that_buffer_only() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let buf = export(&fd, &[(0, BAR1_SIZE)]);
    let dup = buf.dup().unwrap();
    assert_ne!(dup.raw_fd(), buf.raw_fd());
    let other = export(&fd, &[(0, BAR1_SIZE)]);
    let m1 = map_buf(&aspace, &buf, 0, BAR1_SIZE);
    let m2 = map_buf(&aspace, &dup, 0, BAR1_SIZE);
    let m3 = map_buf(&aspace, &other, 0, BAR1_SIZE);
    write_u32(m1 + 0x100, 0x0012_0001);
    assert_eq!(read_u32(m2 + 0x100), 0x0012_0001);
    assert_eq!(read_u32(m3 + 0x100), 0x0012_0001);

    fd.feature_dma_buf_revoke(dup.raw_fd()).unwrap();
    // Now: one buffer behind both fds, PermRevoked; `other` untouched.
    assert_sigbus(m1 + 0x100);
    assert_sigbus(m2 + 0x100);
    assert_eq!(other.buffer().status(), Status::Ok);
    // The other buffer works both ways: it shows the data, and a store
    // through it reads back through it and lands in BAR1.
    assert_eq!(read_u32(m3 + 0x100), 0x0012_0001);
    write_u32(m3 + 0x100, 0x0012_0002);
    assert_eq!(read_u32(m3 + 0x100), 0x0012_0002);
    assert_eq!(region_read_u32(&fd, BAR1 + 0x100), 0x0012_0002);
    assert_eq!(errno_of(mmap_dmabuf(&aspace, &buf, MmapArgs::shared(0, PAGE))), Errno::NODEV);
    // The revoke is seen through the original fd too.
    assert_eq!(errno_of(fd.feature_dma_buf_revoke(buf.raw_fd())), Errno::BADFD);
}

/// T13. Original (BAR1 of edu-plus): device-fd mmap at BAR offset 0x30000 to
/// the end; export all of BAR1; memattr probe and SET WC; mmap the buffer at
/// a 32 MiB-aligned VA with `MADV_HUGEPAGE`; write `0xca77face ^ offset` at
/// each page; verify through the buffer mapping and the device-fd mapping
/// (whose byte 0 is BAR offset 0x30000); split the device-fd VMA by
/// unmapping one page in the middle, read near the end of the tail part;
/// after a full munmap, access faults. Adapted: as is, plus the fault
/// counts the original could only hope for: the buffer mapping (2 MiB
/// aligned VA, BAR offset 0) is served by order-9 faults only, the device-fd
/// mapping (PFNs never 512-aligned) by none. The tail of the split VMA is
/// first touched after the split, so its faults go through the advanced
/// `vm_pgoff`.
#[test]
fn t13_bar1_huge_mappings_device_fd_vma_split_and_full_munmap() {
    let _vm = alone();
    let (aspace_dev, _vdev, fd) = setup();
    let aspace_buf = AddressSpace::new().unwrap();
    const DEV_OFF: u64 = 0x3_0000;
    let dev_len = BAR1_SIZE - DEV_OFF;
    let dva = map_bar1(&aspace_dev, &fd, DEV_OFF, dev_len);
    assert_eq!(dva % HPAGE_PMD_SIZE, 0, "a mapping of 2 MiB or more gets a 2 MiB-aligned VA");

    let buf = export(&fd, &[(0, BAR1_SIZE)]);
    // memattr: PROBE (SET-only feature), then SET WC; GET is gone since v3.
    let probe_set = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR;
    fd.feature(probe_set, &[]).expect("memattr PROBE|SET");
    let probe_get = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR;
    assert_eq!(errno_of(fd.feature(probe_get, &[])), Errno::INVAL);
    fd.feature_dma_buf_memattr(buf.raw_fd(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC).unwrap();
    assert_eq!(VfioDmaBuf::of(buf.buffer()).unwrap().memattr(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC);

    // The buffer mapping at an exact 32 MiB-aligned VA, with MADV_HUGEPAGE.
    let bva = map_at_aligned(BAR1_SIZE, ALIGN_32M, 0, |addr| map_buf_at(&aspace_buf, &buf, 0, BAR1_SIZE, addr));
    assert_eq!(bva % ALIGN_32M, 0);
    aspace_buf.madvise_hugepage(bva, BAR1_SIZE).unwrap();

    fill_pattern(bva, 0, BAR1_SIZE);
    check_pattern(bva, 0, BAR1_SIZE);
    let s = aspace_buf.fault_stats();
    assert_eq!(s.order9, BAR1_SIZE / HPAGE_PMD_SIZE, "one order-9 fault per 2 MiB: {s:?}");
    assert_eq!(s.order0, 0, "{s:?}");

    // The device-fd mapping: byte 0 is BAR offset 0x30000. Check the head
    // half now; the tail half is first touched after the split below.
    assert_eq!(read_u32(dva), MAGIC ^ 0x3_0000);
    let mid = (dev_len / 2) & !(PAGE - 1);
    check_pattern(dva, DEV_OFF, mid);
    let s = aspace_dev.fault_stats();
    assert_eq!(s.order9, 0, "BAR offset 0x30000 is never 2 MiB-aligned: {s:?}");
    assert!(s.fallback > 0, "order 9 was tried at aligned VAs and refused: {s:?}");
    assert_eq!(s.order0, mid / PAGE, "{s:?}");

    // Split: unmap one page in the middle. Now two VMAs; the tail's vm_pgoff
    // moved on by the head and the hole.
    aspace_dev.munmap(dva + mid, PAGE).unwrap();
    let vmas = aspace_dev.vmas();
    assert_eq!(vmas.len(), 2, "{:?}", aspace_dev.maps());
    let tail = dva + mid + PAGE;
    assert_eq!((vmas[0].vm_start, vmas[0].vm_end), (dva, dva + mid));
    assert_eq!((vmas[1].vm_start, vmas[1].vm_end), (tail, dva + dev_len));
    assert_eq!(vmas[1].vm_pgoff, (BAR1 + DEV_OFF + mid + PAGE) / PAGE);
    let real = mm::maps::proc_self_maps(tail, tail + PAGE).unwrap();
    assert_eq!(real[0].offset, BAR1 + DEV_OFF + mid + PAGE, "{}", real[0].raw);
    assert_sigsegv(dva + mid);
    // The original's read near the end of the tail part: BAR offset size - 0x4000.
    let near_end = BAR1_SIZE - DEV_OFF - 0x4000;
    assert_eq!(read_u32(dva + near_end), pattern(BAR1_SIZE - 0x4000));
    check_pattern(tail, DEV_OFF + mid + PAGE, dev_len - mid - PAGE);
    assert_eq!(read_u32(dva + mid - PAGE), pattern(DEV_OFF + mid - PAGE));
    assert_eq!(aspace_dev.fault_stats().order9, 0);

    // Full munmap of both: nothing is mapped any more, so SIGSEGV.
    aspace_dev.munmap(dva, dev_len).unwrap();
    aspace_buf.munmap(bva, BAR1_SIZE).unwrap();
    assert!(aspace_dev.vmas().is_empty() && aspace_buf.vmas().is_empty());
    assert_sigsegv(dva);
    assert_sigsegv(dva + near_end);
    assert_sigsegv(bva);
}

/// The layout of T14–T16: range0 at `3 * PAGE` of length `L`, a gap of five
/// pages, range1 of length `L`.
const L: u64 = 4 * MIB;
const RANGE0_OFF: u64 = 3 * PAGE;
const RANGE1_OFF: u64 = RANGE0_OFF + L + 5 * PAGE;

/// Fills BAR1 with the T13 pattern through a whole-BAR buffer (left mapped
/// in `aspace`) and exports the two-range buffer. Returns (whole-BAR
/// mapping, whole-BAR buffer, two-range buffer).
fn two_range_setup(aspace: &AddressSpace, fd: &DeviceFd) -> (u64, DmaBufFd, DmaBufFd) {
    let whole = export(fd, &[(0, BAR1_SIZE)]);
    let wva = map_buf(aspace, &whole, 0, BAR1_SIZE);
    fill_pattern(wva, 0, RANGE1_OFF + L + PAGE);
    let two = export(fd, &[(RANGE0_OFF, L), (RANGE1_OFF, L)]);
    assert_eq!(two.buffer().size(), 2 * L);
    (wva, whole, two)
}

/// T14. Original: a two-range buffer (range0 at `3*PAGE`, length L, a gap of
/// five pages, range1 of length L) mapped as `2L` contiguous bytes: page
/// `i < L` reads BAR offset `3*PAGE + i`, page `i >= L` reads
/// `range1_offset + (i - L)`; a write through the whole-BAR buffer at
/// `range0_offset + 4` shows at byte 4 of the two-range map. Adapted: the
/// pattern replaces the MMIO contents; also the reverse direction at the
/// start of range1.
#[test]
fn t14_two_range_buffer_maps_its_ranges_back_to_back() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let (wva, _whole, two) = two_range_setup(&aspace, &fd);
    let tva = map_buf(&aspace, &two, 0, 2 * L);
    for i in (0..2 * L).step_by(PAGE as usize) {
        let bar_off = if i < L { RANGE0_OFF + i } else { RANGE1_OFF + (i - L) };
        assert_eq!(read_u32(tva + i), pattern(bar_off), "page {i:#x} of the two-range map");
    }
    write_u32(wva + RANGE0_OFF + 4, 0x0014_0001);
    assert_eq!(read_u32(tva + 4), 0x0014_0001);
    write_u32(tva + L + 8, 0x0014_0002);
    assert_eq!(region_read_u32(&fd, BAR1 + RANGE1_OFF + 8), 0x0014_0002);
    // The gap between the ranges is not part of the buffer.
    write_u32(wva + RANGE0_OFF + L, 0x0014_0003);
    assert_ne!(read_u32(tva + L), 0x0014_0003);
}

/// T15. Original: mmap the two-range buffer at file offset L (length
/// `L - 4K`, at a 32 MiB-aligned VA): byte i reads BAR offset
/// `range1_offset + i`. Adapted: checked at every page start and at an odd
/// byte offset; range1's PFNs are not 512-aligned, so even at this VA no
/// order-9 fault is taken.
#[test]
fn t15_two_range_buffer_mapped_at_offset_l_shows_range1() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let (_wva, _whole, two) = two_range_setup(&aspace, &fd);
    let aspace2 = AddressSpace::new().unwrap();
    let len = L - PAGE;
    let va = map_at_aligned(len, ALIGN_32M, 0, |addr| map_buf_at(&aspace2, &two, L, len, addr));
    assert_eq!(va % ALIGN_32M, 0);
    check_pattern(va, RANGE1_OFF, len);
    region_write_u32(&fd, BAR1 + RANGE1_OFF + 0x1233, 0x0015_0001);
    assert_eq!(read_u32(va + 0x1233), 0x0015_0001);
    let s = aspace2.fault_stats();
    assert_eq!(s.order9, 0, "{s:?}");
    assert_eq!(s.order0, len / PAGE, "{s:?}");
}

/// T16. Original: close the two-range buffer fd; its mapping keeps working.
/// Adapted: the mapping still reads and writes after the last fd is gone
/// (the VMA holds the buffer); the buffer leaves the device's list only when
/// the mapping goes.
#[test]
fn t16_closing_the_two_range_buffer_fd_keeps_its_mapping_alive() {
    let _vm = quiet();
    let (aspace, vdev, fd) = setup();
    let (_wva, _whole, two) = two_range_setup(&aspace, &fd);
    let tva = map_buf(&aspace, &two, 0, 2 * L);
    let id = two.buffer().id();
    two.close();
    // Now: no fd, one VMA holds the buffer.
    assert!(vdev.dmabufs().iter().any(|b| b.id() == id));
    assert_eq!(read_u32(tva + PAGE), pattern(RANGE0_OFF + PAGE));
    assert_eq!(read_u32(tva + L + PAGE), pattern(RANGE1_OFF + PAGE));
    write_u32(tva + L + 0x10, 0x0016_0001);
    assert_eq!(region_read_u32(&fd, BAR1 + RANGE1_OFF + 0x10), 0x0016_0001);
    aspace.munmap(tva, 2 * L).unwrap();
    // Now: the last reference went with the VMA; the buffer is released.
    assert!(!vdev.dmabufs().iter().any(|b| b.id() == id));
}

/// T17. Original: the revoke feature with fd 1 (stdout) gives `-1/EINVAL`:
/// an open fd that is not a dma-buf. Adapted: unchanged.
#[test]
fn t17_revoke_of_a_non_buffer_fd_fails_with_einval() {
    let _vm = quiet();
    let (_aspace, _vdev, fd) = setup();
    assert_eq!(errno_of(fd.feature_dma_buf_revoke(1)), Errno::INVAL);
}

/// T18. Original: close the device fd (and the container fd) while a
/// device-fd BAR mapping and a buffer mapping exist: both still work, the
/// device-fd VMA keeps the device open. Unmap the device-fd mapping: the
/// device really closes, the buffer mapping now faults and a new mmap of the
/// buffer fd fails. Adapted: no container; `open_count` shows the device
/// file's life, the fault is a real SIGBUS and the mmap error `ENODEV`.
#[test]
fn t18_device_closes_only_when_its_last_mapping_goes_and_kills_the_buffer() {
    let _vm = quiet();
    let (aspace, vdev, fd) = setup();
    let buf = export(&fd, &[(0, BAR1_SIZE)]);
    let bva = map_buf(&aspace, &buf, 0, BAR1_SIZE);
    let dva = map_bar1(&aspace, &fd, 0, BAR1_SIZE);
    write_u32(bva + 0x2000, 0x0018_0001);
    assert_eq!(read_u32(dva + 0x2000), 0x0018_0001);

    fd.close();
    // Now: no device fd, but the device-fd VMA holds the device file.
    assert_eq!(vdev.open_count(), 1);
    assert!(vdev.memory_enabled());
    assert_eq!(buf.buffer().status(), Status::Ok);
    write_u32(dva + 0x3000, 0x0018_0002);
    assert_eq!(read_u32(bva + 0x3000), 0x0018_0002);
    write_u32(bva + 0x4000, 0x0018_0003);
    assert_eq!(read_u32(dva + 0x4000), 0x0018_0003);

    aspace.munmap(dva, BAR1_SIZE).unwrap();
    // Now: the last close ran: every buffer revoked and severed.
    assert_eq!(vdev.open_count(), 0);
    assert!(!vdev.memory_enabled());
    assert_ne!(buf.buffer().status(), Status::Ok);
    assert_sigbus(bva + 0x2000);
    assert_sigbus(bva + 0x3000);
    assert_sigbus(bva + BAR1_SIZE - PAGE);
    assert_eq!(errno_of(mmap_dmabuf(&aspace, &buf, MmapArgs::shared(0, BAR1_SIZE))), Errno::NODEV);

    // Reopening the device does not bring the severed buffer back: it no
    // longer belongs to any device (spec §4.9 step 3), and stays unmappable.
    let fd = vdev.open();
    assert_eq!(vdev.open_count(), 1);
    assert_eq!(errno_of(fd.feature_dma_buf_revoke(buf.raw_fd())), Errno::NODEV);
    assert_eq!(errno_of(mmap_dmabuf(&aspace, &buf, MmapArgs::shared(0, PAGE))), Errno::NODEV);
    assert_sigbus(bva + 0x2000);
    // The BAR memory kept what was written before the close.
    assert_eq!(region_read_u32(&fd, BAR1 + 0x4000), 0x0018_0003);
}

// ---------------------------------------------------------------------------
// The "TODO in the test" items of §9.1
// ---------------------------------------------------------------------------

/// TODO item 1: huge pages denied at an unaligned VMA head and tail. A
/// window of 4 MiB + 8K whose middle 4 MiB is 2 MiB aligned in both VA and
/// BAR offset: the two aligned 2 MiB blocks take one order-9 fault each; the
/// head and tail pages, whose 2 MiB blocks stick out of the VMA, take order
/// 0 without even trying order 9.
#[test]
fn huge_pages_are_denied_at_an_unaligned_vma_head_and_tail_only() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let len = 4 * MIB + 2 * PAGE;
    let bar_off = 2 * MIB - PAGE;
    let va = map_at_aligned(len, HPAGE_PMD_SIZE, PAGE, |addr| {
        fd.mmap(&aspace, MmapArgs { addr: Some(addr), ..MmapArgs::shared(BAR1 + bar_off, len) })
    });
    assert_eq!((va + PAGE) % HPAGE_PMD_SIZE, 0);
    fill_pattern(va, bar_off, len);
    check_pattern(va, bar_off, len);
    let s = aspace.fault_stats();
    assert_eq!(s.order9, 2, "{s:?}");
    assert_eq!(s.order0, 2, "the head and the tail page: {s:?}");
    assert_eq!(s.fallback, 0, "no aligned 2 MiB block was refused: {s:?}");
    assert_eq!(region_read_u32(&fd, BAR1 + bar_off), pattern(bar_off));
    assert_eq!(region_read_u32(&fd, BAR1 + bar_off + len - PAGE), pattern(bar_off + len - PAGE));
}

/// TODO item 2: a VMA smaller than 2 MiB never takes an order-9 fault, even
/// at a 2 MiB-aligned VA over a 2 MiB-aligned BAR offset.
#[test]
fn a_vma_smaller_than_2mib_never_takes_an_order_9_fault() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let buf = export(&fd, &[(0, BAR1_SIZE)]);
    let len = HPAGE_PMD_SIZE - PAGE;
    let va = map_at_aligned(len, HPAGE_PMD_SIZE, 0, |addr| map_buf_at(&aspace, &buf, 2 * MIB, len, addr));
    assert_eq!(va % HPAGE_PMD_SIZE, 0);
    fill_pattern(va, 2 * MIB, len);
    check_pattern(va, 2 * MIB, len);
    let s = aspace.fault_stats();
    assert_eq!(s.order9, 0, "{s:?}");
    assert_eq!(s.fallback, 0, "no 2 MiB block fits, so none was tried: {s:?}");
    assert_eq!(s.order0, len / PAGE, "{s:?}");
}

/// TODO item 3: BAR offsets that are not huge-aligned give no huge mappings
/// even when the VA is 2 MiB aligned. Control: the same mapping one page
/// lower in the BAR (2 MiB aligned) is served by order-9 faults.
#[test]
fn bar_offsets_not_huge_aligned_get_no_huge_mappings_even_at_an_aligned_va() {
    let _vm = quiet();
    let (aspace, _vdev, fd) = setup();
    let len = 8 * MIB;
    let shifted = export(&fd, &[(PAGE, len)]);
    let va = map_buf(&aspace, &shifted, 0, len);
    assert_eq!(va % HPAGE_PMD_SIZE, 0, "a mapping of 2 MiB or more gets a 2 MiB-aligned VA");
    fill_pattern(va, PAGE, len);
    check_pattern(va, PAGE, len);
    let s = aspace.fault_stats();
    assert_eq!(s.order9, 0, "{s:?}");
    assert!(s.fallback > 0, "order 9 was tried and refused: {s:?}");
    assert_eq!(s.order0, len / PAGE, "{s:?}");

    let control_aspace = AddressSpace::new().unwrap();
    let aligned = export(&fd, &[(0, len)]);
    let cva = map_buf(&control_aspace, &aligned, 0, len);
    assert_eq!(read_u32(cva + PAGE), pattern(PAGE));
    check_pattern(cva + PAGE, PAGE, len - PAGE);
    let s = control_aspace.fault_stats();
    assert_eq!(s.order9, len / HPAGE_PMD_SIZE, "{s:?}");
    assert_eq!(s.order0, 0, "{s:?}");
}

/// Fault-around (our addition, off above): an order-0 fault maps the pages
/// around it that the same checks allow, so a mapping that can never take a
/// 2 MiB fault still costs about one fault per 2 MiB — and every page still
/// reads the right BAR bytes, ranges are never crossed.
#[test]
fn fault_around_maps_a_4k_only_window_in_few_faults_with_the_same_translation() {
    let _vm = quiet();
    let (aspace, vdev, fd) = setup();
    vdev.set_fault_around(true);
    let len = 8 * MIB;
    let shifted = export(&fd, &[(PAGE, len)]);
    let va = map_buf(&aspace, &shifted, 0, len);
    fill_pattern(va, PAGE, len);
    check_pattern(va, PAGE, len);
    let s = aspace.fault_stats();
    assert_eq!(s.order9, 0, "{s:?}");
    // A window stops at the end of its 2 MiB frame of BAR storage: the
    // shifted buffer touches 5 frames (its last page alone in the fifth),
    // and a 32 MiB block boundary of the VA may split one more window.
    assert!(s.order0 <= 6, "8 MiB in at most one fault per frame (+1 for the block): {s:?}");
    assert!(s.around_pages >= len / PAGE - 2, "{s:?}");

    // Two ranges: a window never crosses from one range into the next.
    let two_aspace = AddressSpace::new().unwrap();
    let two = export(&fd, &[(0x3000, 16 * PAGE), (0x40_0000, 16 * PAGE)]);
    let tva = map_buf(&two_aspace, &two, 0, 32 * PAGE);
    for i in 0..32 {
        let bar_off = if i < 16 { 0x3000 + i * PAGE } else { 0x40_0000 + (i - 16) * PAGE };
        region_write_u32(&fd, BAR1 + bar_off, pattern(bar_off));
    }
    for i in 0..32 {
        let bar_off = if i < 16 { 0x3000 + i * PAGE } else { 0x40_0000 + (i - 16) * PAGE };
        assert_eq!(read_u32(tva + i * PAGE), pattern(bar_off), "page {i}");
    }
    // One fault per range, or per piece of a range where a naturally aligned
    // fault-around block boundary happens to cut it: the mapping is only
    // page aligned, so where the boundaries fall depends on its address.
    let pieces: std::collections::BTreeSet<(bool, u64)> =
        (0..32).map(|i| (i < 16, (tva + i * PAGE) / vfio::FAULT_AROUND_BYTES)).collect();
    assert_eq!(two_aspace.fault_stats().order0, pieces.len() as u64, "one fault per range piece");
}
