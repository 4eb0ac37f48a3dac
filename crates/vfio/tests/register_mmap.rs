//! Register BARs map and export like RAM BARs, and every access through
//! such a mapping traps in the accessing thread and is emulated against the
//! device model: reads see the registers' values, writes have their side
//! effects, at the width the program used. Revocation applies unchanged.
#![cfg(target_arch = "x86_64")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use common::{assert_sigbus, Fixture, PAGE, RDWR};
use mm::{probe, Width};
use vfio::uapi::{VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE};
use vfio::{mmap_dmabuf, DeviceFd, MmapArgs};

/// Device-fd offset of BAR0 (`VFIO_PCI_INDEX_TO_OFFSET(0)`).
const BAR0: u64 = 0;
/// Device-fd offset of BAR2.
const BAR2: u64 = 2 << 40;
// The edu register layout (edu-plus shares its ID and liveness registers).
const EDU_ID: u64 = pci::catalogue::EDU_REG_ID;
const EDU_LIVENESS: u64 = pci::catalogue::EDU_REG_LIVENESS;
const EDU_FACTORIAL: u64 = pci::catalogue::EDU_REG_FACTORIAL;
const EDU_STATUS: u64 = pci::catalogue::EDU_REG_STATUS;
const EDU_ID_MAGIC: u64 = pci::catalogue::EDU_ID_MAGIC as u64;

/// An open device with BAR0's first two pages mapped through the device fd
/// and through an exported buffer.
struct Regs {
    f: Fixture,
    fd: DeviceFd,
    dev_va: u64,
    buf_fd: dmabuf::DmaBufFd,
    buf_va: u64,
}

impl Regs {
    fn new(name: &str) -> Regs {
        let f = Fixture::new(name);
        let fd = f.vdev.open();
        let dev_va = fd.mmap(&f.aspace, MmapArgs::shared(BAR0, 2 * PAGE)).unwrap();
        let buf_fd = fd.feature_dma_buf(0, RDWR, &[(0, 2 * PAGE)]).unwrap();
        let buf_va = mmap_dmabuf(&f.aspace, &buf_fd, MmapArgs::shared(0, 2 * PAGE)).unwrap();
        Regs { f, fd, dev_va, buf_fd, buf_va }
    }

    fn both(&self) -> [u64; 2] {
        [self.dev_va, self.buf_va]
    }
}

fn read32(va: u64) -> u64 {
    probe::read(va, Width::U32).unwrap_or_else(|e| panic!("read at {va:#x}: {e}"))
}

fn write32(va: u64, v: u64) {
    probe::write(va, Width::U32, v).unwrap_or_else(|e| panic!("write at {va:#x}: {e}"));
}

#[test]
fn register_bars_report_mmap_in_region_info() {
    for (name, index) in [("edu-plus", 0), ("edu", 0), ("bochs-display", 2)] {
        let f = Fixture::new(name);
        let fd = f.vdev.open();
        assert!(!f.vdev.bar_is_ram(index), "{name} BAR{index} is registers");
        let info = fd.region_info(index).unwrap();
        let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        assert_eq!(info.flags, rw | VFIO_REGION_INFO_FLAG_MMAP, "{name} BAR{index}");
    }
}

#[test]
fn the_id_register_reads_through_both_mappings_and_liveness_inverts() {
    for name in ["edu-plus", "edu"] {
        let r = Regs::new(name);
        for va in r.both() {
            assert_eq!(read32(va + EDU_ID), EDU_ID_MAGIC, "{name} ID at {va:#x}");
            write32(va + EDU_LIVENESS, 0x1234_5678);
            assert_eq!(read32(va + EDU_LIVENESS), !0x1234_5678u32 as u64, "{name} liveness");
            // The ID register ignores writes.
            write32(va + EDU_ID, 0);
            assert_eq!(read32(va + EDU_ID), EDU_ID_MAGIC);
        }
    }
}

#[test]
fn the_region_and_the_mappings_see_one_device() {
    let r = Regs::new("edu-plus");
    write32(r.dev_va + EDU_LIVENESS, 0xa5a5_0f0f);
    assert_eq!(read32(r.buf_va + EDU_LIVENESS), !0xa5a5_0f0fu32 as u64);
    let mut b = [0u8; 4];
    r.fd.read(BAR0 + EDU_LIVENESS, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b), !0xa5a5_0f0f);
    r.fd.write(BAR0 + 0x40, &0x600d_f00du32.to_le_bytes()).unwrap();
    assert_eq!(read32(r.dev_va + 0x40), 0x600d_f00d);
    // A second device-fd mapping of the same page aliases the same registers.
    let again = r.fd.mmap(&r.f.aspace, MmapArgs::shared(BAR0, PAGE)).unwrap();
    assert_eq!(read32(again + 0x40), 0x600d_f00d);
    let _ = &r.buf_fd;
}

#[test]
fn every_width_reaches_edu_plus_at_that_width() {
    let r = Regs::new("edu-plus");
    for va in r.both() {
        let s = va + 0x100;
        probe::write(s, Width::U64, 0x0102_0304_0506_0708).unwrap();
        assert_eq!(probe::read(s, Width::U64).unwrap(), 0x0102_0304_0506_0708);
        assert_eq!(probe::read(s, Width::U8).unwrap(), 0x08);
        assert_eq!(probe::read(s + 1, Width::U8).unwrap(), 0x07);
        assert_eq!(probe::read(s + 2, Width::U16).unwrap(), 0x0506);
        assert_eq!(probe::read(s + 4, Width::U32).unwrap(), 0x0102_0304);
        probe::write(s + 6, Width::U16, 0xbeef).unwrap();
        probe::write(s, Width::U8, 0xaa).unwrap();
        assert_eq!(probe::read(s, Width::U64).unwrap(), 0xbeef_0304_0506_07aa);
        // The liveness register inverts at every width.
        probe::write(va + EDU_LIVENESS, Width::U16, 0x00ff).unwrap();
        assert_eq!(probe::read(va + EDU_LIVENESS, Width::U8).unwrap(), 0x00);
        assert_eq!(probe::read(va + EDU_LIVENESS + 1, Width::U8).unwrap(), 0xff);
    }
}

#[test]
fn register_pages_are_never_mapped_every_fault_ends_in_sigbus() {
    let r = Regs::new("edu-plus");
    for va in r.both() {
        for off in [0x80, 0x90, PAGE + 0x10] {
            write32(va + off, 0x77);
            assert_eq!(read32(va + off), 0x77);
        }
    }
    let stats = r.f.aspace.fault_stats();
    assert_eq!((stats.order0, stats.order9, stats.around_pages), (0, 0, 0), "{stats:?}");
    assert!(stats.sigbus >= 4, "each register page's first touch is poisoned: {stats:?}");
}

#[test]
fn qemu_edu_computes_a_factorial_through_the_mapping() {
    let r = Regs::new("edu");
    let va = r.dev_va;
    write32(va + EDU_FACTORIAL, 5);
    // The status bit clears when the result is ready; the model computes
    // it at once or on the next read of the status.
    while read32(va + EDU_STATUS) & 1 != 0 {
        thread::yield_now();
    }
    assert_eq!(read32(va + EDU_FACTORIAL), 120);
}

#[test]
fn bulk_copies_over_registers_go_element_by_element() {
    let r = Regs::new("edu-plus");
    for va in r.both() {
        let data: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(7)).collect();
        probe::copy_to(va + 0x200, &data).unwrap();
        let mut back = vec![0u8; 64];
        probe::copy_from(va + 0x200, &mut back).unwrap();
        assert_eq!(back, data);
        // Over the ID register, a byte copy sees its bytes.
        let mut id = [0u8; 4];
        probe::copy_from(va + EDU_ID, &mut id).unwrap();
        assert_eq!(u32::from_le_bytes(id) as u64, EDU_ID_MAGIC);
    }
}

#[test]
fn memory_off_raises_sigbus_and_memory_on_keeps_the_state() {
    let r = Regs::new("edu-plus");
    for va in r.both() {
        write32(va + 0x80, 0x1357_9bdf);
    }
    r.fd.set_memory_enable(false).unwrap();
    for va in r.both() {
        assert_sigbus(va + 0x80);
        assert_sigbus(va + PAGE);
    }
    r.fd.set_memory_enable(true).unwrap();
    for va in r.both() {
        assert_eq!(read32(va + 0x80), 0x1357_9bdf);
        assert_eq!(read32(va + EDU_ID), EDU_ID_MAGIC);
    }
}

#[test]
fn a_permanent_revoke_raises_sigbus_forever() {
    let r = Regs::new("edu-plus");
    assert_eq!(read32(r.buf_va + EDU_ID), EDU_ID_MAGIC);
    r.fd.feature_dma_buf_revoke(r.buf_fd.raw_fd()).unwrap();
    assert_sigbus(r.buf_va + EDU_ID);
    r.fd.set_memory_enable(false).unwrap();
    r.fd.set_memory_enable(true).unwrap();
    r.fd.reset().unwrap();
    assert_sigbus(r.buf_va + EDU_ID);
    assert_sigbus(r.buf_va + PAGE);
    // The device-fd mapping is a buffer of its own and still works.
    assert_eq!(read32(r.dev_va + EDU_ID), EDU_ID_MAGIC);
}

#[test]
fn a_reset_clears_the_registers_seen_through_the_mapping() {
    let r = Regs::new("edu-plus");
    write32(r.dev_va + 0x80, 0xffff_0000);
    r.fd.reset().unwrap();
    for va in r.both() {
        assert_eq!(read32(va + 0x80), 0, "edu-plus clears its bytes at reset");
        assert_eq!(read32(va + EDU_ID), EDU_ID_MAGIC);
    }
}

#[test]
fn two_threads_poke_registers_at_once() {
    let r = Regs::new("edu-plus");
    let both = r.both();
    let start = Arc::new(Barrier::new(2));
    let workers: Vec<_> = (0..2u64)
        .map(|t| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                let va = both[t as usize] + 0x300 + t * 8;
                for i in 0..2000u64 {
                    let v = (t << 60) | i;
                    probe::write(va, Width::U64, v).unwrap();
                    assert_eq!(probe::read(va, Width::U64).unwrap(), v);
                    assert_eq!(read32(both[1 - t as usize] + EDU_ID), EDU_ID_MAGIC);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(probe::read(r.dev_va + 0x300, Width::U64).unwrap(), 1999);
    assert_eq!(probe::read(r.buf_va + 0x308, Width::U64).unwrap(), (1 << 60) | 1999);
}

#[test]
fn bochs_display_registers_map_through_bar2() {
    let f = Fixture::new("bochs-display");
    let fd = f.vdev.open();
    let va = fd.mmap(&f.aspace, MmapArgs::shared(BAR2, PAGE)).unwrap();
    // dispi index 0 (ID) at 0x500, 16 bits wide.
    let id = probe::read(va + 0x500, Width::U16).unwrap();
    let mut b = [0u8; 2];
    fd.read(BAR2 + 0x500, &mut b).unwrap();
    assert_eq!(id, u64::from(u16::from_le_bytes(b)));
    assert_eq!(id & 0xfff0, 0xb0c0);
}

#[test]
fn misaligned_and_page_straddling_accesses_raise_sigbus_and_touch_no_register() {
    let r = Regs::new("edu-plus");
    for va in r.both() {
        write32(va + 0x100, 0x1122_3344);
        write32(va + PAGE - 4, 0x5566_7788);
        for (at, w) in [(va + 0x101, Width::U32), (va + 0x103, Width::U16), (va + PAGE - 2, Width::U32)] {
            let e = probe::read(at, w).unwrap_err();
            assert!(e.is_sigbus(), "{w:?} read at {at:#x}: {e}");
            let e = probe::write(at, w, 0).unwrap_err();
            assert!(e.is_sigbus(), "{w:?} write at {at:#x}: {e}");
        }
        assert_eq!(read32(va + 0x100), 0x1122_3344);
        assert_eq!(read32(va + PAGE - 4), 0x5566_7788);
        assert_eq!(read32(va + PAGE), 0);
    }
}

#[test]
fn a_read_only_register_mapping_reads_and_refuses_stores() {
    let r = Regs::new("edu-plus");
    let ro = r.fd.mmap(&r.f.aspace, MmapArgs { write: false, ..MmapArgs::shared(BAR0, PAGE) }).unwrap();
    assert_eq!(read32(ro + EDU_ID), EDU_ID_MAGIC);
    let e = probe::write(ro + 0x100, Width::U32, 1).unwrap_err();
    assert_eq!((e.signo, e.code), (libc::SIGSEGV, probe::SEGV_ACCERR), "{e}");
    assert_eq!(read32(r.dev_va + 0x100), 0, "the refused store did not reach the device");
}

/// A register file that counts the accesses that reach it, and those that
/// reach it while the test says memory decoding is off.
#[derive(Debug, Default)]
struct Counting {
    accesses: AtomicU64,
    off: AtomicBool,
    while_off: AtomicU64,
}

impl pci::RegisterBar for Counting {
    fn read(&self, _offset: u64, data: &mut [u8]) {
        self.count();
        data.fill(0);
    }

    fn write(&self, _offset: u64, _data: &[u8]) {
        self.count();
    }
}

impl Counting {
    fn count(&self) {
        self.accesses.fetch_add(1, Ordering::SeqCst);
        if self.off.load(Ordering::SeqCst) {
            self.while_off.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_storm_of_register_accesses_across_revokes_loses_none_and_lands_none_while_revoked() {
    let _q = common::quiet();
    let regs = Arc::new(Counting::default());
    let mut spec = pci::catalogue::edu();
    spec.bars[0] = Some(pci::BarSpec::registers(1 << 20, regs.clone()));
    let aspace = mm::AddressSpace::new().unwrap();
    let vdev = vfio::VfioPciDevice::new(4000, "0000:7f:1f.0".parse().unwrap(), spec).unwrap();
    let fd = vdev.open();
    let dev_va = fd.mmap(&aspace, MmapArgs::shared(BAR0, PAGE)).unwrap();
    let buf_fd = fd.feature_dma_buf(0, RDWR, &[(0, PAGE)]).unwrap();
    let buf_va = mmap_dmabuf(&aspace, &buf_fd, MmapArgs::shared(0, PAGE)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Shared tallies, so that each phase below can wait for accesses to
    // happen in it instead of hoping the workers were scheduled.
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..3u64)
        .map(|t| {
            let (stop, ok, refused) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&refused));
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    for va in [dev_va, buf_va] {
                        let r = if t % 2 == 0 {
                            probe::write(va + 8 * t, Width::U32, t).map(|_| 0)
                        } else {
                            probe::read(va + 8 * t, Width::U32)
                        };
                        match r {
                            Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                            Err(e) => {
                                assert!(e.is_sigbus() && e.code == libc::BUS_ADRERR, "{e}");
                                refused.fetch_add(1, Ordering::SeqCst)
                            }
                        };
                    }
                }
            })
        })
        .collect();
    // Waits until `tally` has grown past `from` (the watchdog only stops a
    // hang; it never judges speed).
    let wait_past = |tally: &AtomicU64, from: u64, what: &str| {
        let deadline = std::time::Instant::now() + common::WATCHDOG;
        while tally.load(Ordering::SeqCst) <= from {
            assert!(std::time::Instant::now() < deadline, "no access {what} within the watchdog");
            thread::yield_now();
        }
    };
    for _ in 0..20 {
        wait_past(&ok, ok.load(Ordering::SeqCst), "was emulated while memory was on");
        fd.set_memory_enable(false).unwrap();
        // From here until memory is on again, no access may reach the device.
        regs.off.store(true, Ordering::SeqCst);
        wait_past(&refused, refused.load(Ordering::SeqCst), "was refused while memory was off");
        regs.off.store(false, Ordering::SeqCst);
        fd.set_memory_enable(true).unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(regs.while_off.load(Ordering::SeqCst), 0, "an access reached the device while revoked");
    assert_eq!(
        regs.accesses.load(Ordering::SeqCst),
        ok.load(Ordering::SeqCst),
        "every emulated access reached the device once"
    );
}
