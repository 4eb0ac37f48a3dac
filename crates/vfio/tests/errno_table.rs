//! The errno table of the series, one test per row that applies to this
//! model: `vfio_check_feature` (spec §2.1), device-fd mmap (§2.2), region
//! read/write, importer attach and map (§2.5), explicit export (§4.4), mmap
//! of a buffer fd (§4.5), the revoke and memattr features (§4.9, §4.10), and
//! the SIGBUS row of the summary (§5.3).
//!
//! Every failing call also proves that it left nothing behind: no listed
//! buffer, no VMA, no extra open of the device file. Those counts are per
//! device and per address space, so the tests can run in parallel; the
//! process-wide handle count is checked by one test that runs alone (see
//! [`QUIET`]).

use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dmabuf::{
    AccessMode, AttachmentRef, DmaBuf, DmaBufFd, DmaBufOps, ExportInfo, Importer, PhysVec, ResvGuard, Status,
};
use mm::{probe, AddressSpace};
use pci::PowerState;
use rustix::io::Errno;
use vfio::uapi::*;
use vfio::{mmap_dmabuf, DeviceFd, FeatureReply, MmapArgs, VfioDmaBuf, VfioError, VfioPciDevice};

const PAGE: u64 = 0x1000;
const MIB: u64 = 1 << 20;
/// The highest page-aligned `u64`.
const LAST_PAGE: u64 = !(PAGE - 1);
/// edu-plus BAR1: 64 MiB of RAM.
const BAR1_LEN: u64 = 64 * MIB;
const RDWR: u32 = (libc::O_RDWR | libc::O_CLOEXEC) as u32;
const RDONLY: u32 = (libc::O_RDONLY | libc::O_CLOEXEC) as u32;
const WRONLY: u32 = (libc::O_WRONLY | libc::O_CLOEXEC) as u32;
const GET: u32 = VFIO_DEVICE_FEATURE_GET;
const SET: u32 = VFIO_DEVICE_FEATURE_SET;
const PROBE: u32 = VFIO_DEVICE_FEATURE_PROBE;
const DMA_BUF: u32 = VFIO_DEVICE_FEATURE_DMA_BUF;
const REVOKE: u32 = VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE;
const MEMATTR: u32 = VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR;

/// Tests of this file run as threads of one process and share its buffer
/// handle table. Every test holds this lock for read; the one test that
/// compares the process-wide handle count holds it for write, so no other
/// test creates or closes a handle meanwhile.
static QUIET: RwLock<()> = RwLock::new(());

static NEXT_CDEV: AtomicU32 = AtomicU32::new(0);

/// One test's world: its own address space and its own device.
struct Fixture {
    aspace: AddressSpace,
    vdev: Arc<VfioPciDevice>,
    /// Dropped last, after every mapping and buffer of the test is gone.
    _quiet: RwLockReadGuard<'static, ()>,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let quiet = QUIET.read().unwrap_or_else(|e| e.into_inner());
        Self { aspace: AddressSpace::new().unwrap(), vdev: device(name), _quiet: quiet }
    }

    fn edu_plus() -> Self {
        Self::new("edu-plus")
    }

    /// Counts that a failed operation must leave as they were.
    fn counts(&self) -> Counts {
        Counts {
            dmabufs: self.vdev.dmabufs().len(),
            vmas: self.aspace.vmas().len(),
            open_count: self.vdev.open_count(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    dmabufs: usize,
    vmas: usize,
    open_count: u32,
}

fn device(name: &str) -> Arc<VfioPciDevice> {
    let cdev = NEXT_CDEV.fetch_add(1, Ordering::Relaxed);
    VfioPciDevice::from_catalogue(cdev, "0000:00:03.0".parse().unwrap(), name).unwrap()
}

/// The errno of a call that must fail.
fn errno<T: Debug>(r: Result<T, VfioError>) -> Errno {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.errno(),
    }
}

/// The errno of a buffer-core call that must fail.
fn dmabuf_errno<T: Debug>(r: Result<T, dmabuf::Error>) -> Errno {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.errno(),
    }
}

fn is_done(r: Result<FeatureReply, VfioError>) -> bool {
    matches!(r, Ok(FeatureReply::Done))
}

/// Raw `VFIO_DEVICE_FEATURE` GET of `DMA_BUF` with a hand-made payload.
fn raw_export(fd: &DeviceFd, payload: &[u8]) -> Result<FeatureReply, VfioError> {
    fd.feature(GET | DMA_BUF, payload)
}

/// A read-write buffer over the first `len` bytes of BAR1.
fn export_bar1(fd: &DeviceFd, len: u64) -> DmaBufFd {
    fd.feature_dma_buf(1, RDWR, &[(0, len)]).unwrap()
}

/// A file descriptor number that was open and is now closed, and that no
/// other thread of the process will be given: fds are allocated lowest
/// first, and this one sits just under the process's limit.
fn closed_fd_number() -> i32 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let top = limit.current.unwrap_or(1 << 16).min(1 << 16) - 1;
    let file = std::fs::File::open("/dev/null").unwrap();
    let high = rustix::io::fcntl_dupfd_cloexec(&file, top as i32).unwrap();
    let n = std::os::fd::AsRawFd::as_raw_fd(&high);
    drop(high);
    n
}

/// An exporter that is not VFIO.
#[derive(Debug)]
struct ForeignExporter;

impl DmaBufOps for ForeignExporter {
    fn release(&self, _buf: &DmaBuf) {}
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn foreign_buffer_fd() -> DmaBufFd {
    let buf = DmaBuf::export(ExportInfo {
        ops: Arc::new(ForeignExporter),
        ranges: vec![PhysVec { paddr: 0, len: PAGE }],
        name: None,
        mode: AccessMode::ReadWrite,
        initial_status: Status::Ok,
    })
    .unwrap();
    DmaBufFd::new(buf).unwrap()
}

/// An importer with configurable peer-to-peer and revocability.
#[derive(Debug)]
struct TestImporter {
    peer2peer: bool,
    revocable: bool,
}

impl Importer for TestImporter {
    fn peer2peer(&self) -> bool {
        self.peer2peer
    }
    fn revocable(&self) -> bool {
        self.revocable
    }
    fn invalidate_mappings(&self, _attachment: &AttachmentRef<'_>, _resv: &mut ResvGuard<'_>) {}
}

fn importer(peer2peer: bool, revocable: bool) -> Arc<dyn Importer> {
    Arc::new(TestImporter { peer2peer, revocable })
}

fn assert_sigbus(va: u64) {
    let fault = probe::read_u64(va).expect_err("access must fault");
    assert!(fault.is_sigbus(), "{fault}");
    assert_eq!(fault.code, libc::BUS_ADRERR);
}

// ---------------------------------------------------------------------------
// §2.1 vfio_check_feature and the VFIO_DEVICE_FEATURE header
// ---------------------------------------------------------------------------

#[test]
fn dma_buf_feature_with_set_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE)]);
    assert_eq!(errno(fd.feature(SET | DMA_BUF, &payload)), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn dma_buf_feature_probe_get_is_done() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert!(is_done(fd.feature(PROBE | GET | DMA_BUF, &[])));
    assert_eq!(fx.vdev.dmabufs().len(), 0, "a probe exports nothing");
}

#[test]
fn dma_buf_feature_probe_set_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature(PROBE | SET | DMA_BUF, &[])), Errno::INVAL);
}

#[test]
fn dma_buf_feature_without_get_or_set_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE)]);
    assert_eq!(errno(fd.feature(DMA_BUF, &payload)), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn dma_buf_feature_with_argsz_below_its_header_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(1, RDWR, 0, &[]);
    assert_eq!(errno(raw_export(&fd, &payload[..DMA_BUF_FEATURE_MINSZ - 1])), Errno::INVAL);
    assert_eq!(errno(raw_export(&fd, &[])), Errno::INVAL);
}

#[test]
fn unknown_feature_number_is_enotty() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature(GET | 99, &[0; 16])), Errno::NOTTY);
    assert_eq!(errno(fd.feature(PROBE | GET | VFIO_DEVICE_FEATURE_MASK, &[])), Errno::NOTTY);
}

#[test]
fn unknown_feature_flag_bits_are_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE)]);
    assert_eq!(errno(fd.feature(GET | DMA_BUF | (1 << 19), &payload)), Errno::INVAL);
    assert_eq!(errno(fd.feature(GET | DMA_BUF | (1 << 31), &payload)), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn get_and_set_together_without_probe_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE)]);
    assert_eq!(errno(fd.feature(GET | SET | DMA_BUF, &payload)), Errno::INVAL);
}

#[test]
fn revoke_feature_with_get_is_einval_and_probe_set_is_done() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let payload = buf.raw_fd().to_ne_bytes();
    assert_eq!(errno(fd.feature(GET | REVOKE, &payload)), Errno::INVAL);
    assert_eq!(errno(fd.feature(PROBE | GET | REVOKE, &[])), Errno::INVAL);
    assert!(is_done(fd.feature(PROBE | SET | REVOKE, &[])));
    assert_eq!(buf.buffer().status(), Status::Ok, "neither call revoked");
}

#[test]
fn revoke_feature_with_argsz_below_four_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let payload = buf.raw_fd().to_ne_bytes();
    assert_eq!(errno(fd.feature(SET | REVOKE, &payload[..3])), Errno::INVAL);
    assert_eq!(buf.buffer().status(), Status::Ok);
}

#[test]
fn memattr_feature_with_get_is_einval_and_probe_set_is_done() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let mut payload = buf.raw_fd().to_ne_bytes().to_vec();
    payload.extend_from_slice(&VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC.to_ne_bytes());
    assert_eq!(errno(fd.feature(GET | MEMATTR, &payload)), Errno::INVAL);
    assert!(is_done(fd.feature(PROBE | SET | MEMATTR, &[])));
    let memattr = VfioDmaBuf::of(buf.buffer()).unwrap().memattr();
    assert_eq!(memattr, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC, "neither call set WC");
}

#[test]
fn memattr_feature_with_argsz_below_eight_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let mut payload = buf.raw_fd().to_ne_bytes().to_vec();
    payload.extend_from_slice(&VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC.to_ne_bytes());
    assert_eq!(errno(fd.feature(SET | MEMATTR, &payload[..7])), Errno::INVAL);
    assert_eq!(VfioDmaBuf::of(buf.buffer()).unwrap().memattr(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC);
}

// ---------------------------------------------------------------------------
// §4.4 explicit export, checks in the kernel's order
// ---------------------------------------------------------------------------

#[test]
fn export_with_zero_ranges_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[])), Errno::INVAL);
    assert_eq!(errno(raw_export(&fd, &encode_dma_buf_payload(1, RDWR, 0, &[]))), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_with_nonzero_flags_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    for flags in [1, 1 << 28, u32::MAX] {
        let payload = encode_dma_buf_payload(1, RDWR, flags, &[(0, PAGE)]);
        assert_eq!(errno(raw_export(&fd, &payload)), Errno::INVAL, "flags {flags:#x}");
    }
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_with_zero_ranges_of_a_non_bar_is_einval_before_enodev() {
    // §4.4 step 4 (nr_ranges, flags) runs before step 5 (region index).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(VFIO_PCI_ROM_REGION_INDEX, RDWR, &[])), Errno::INVAL);
    let payload = encode_dma_buf_payload(VFIO_PCI_VGA_REGION_INDEX, RDWR, 1, &[(0, PAGE)]);
    assert_eq!(errno(raw_export(&fd, &payload)), Errno::INVAL);
}

#[test]
fn export_of_the_rom_region_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(VFIO_PCI_ROM_REGION_INDEX, RDWR, &[(0, PAGE)])), Errno::NODEV);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_the_config_region_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(VFIO_PCI_CONFIG_REGION_INDEX, RDWR, &[(0, PAGE)])), Errno::NODEV);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_the_vga_region_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(VFIO_PCI_VGA_REGION_INDEX, RDWR, &[(0, PAGE)])), Errno::NODEV);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_a_region_index_past_the_last_region_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    for index in [VFIO_PCI_NUM_REGIONS, 1000, u32::MAX] {
        assert_eq!(errno(fd.feature_dma_buf(index, RDWR, &[(0, PAGE)])), Errno::NODEV, "index {index}");
    }
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_a_bar_the_device_lacks_is_enodev() {
    // edu-plus has BAR0 and BAR1 (64-bit, so slot 2 is its upper half).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    for index in [2, 3, 4, 5] {
        assert_eq!(errno(fd.feature_dma_buf(index, RDWR, &[(0, PAGE)])), Errno::NODEV, "BAR{index}");
    }
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_a_register_bar_is_einval() {
    // §4.4 step 9: a BAR without a p2pdma provider (not memory) is EINVAL.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(0, RDWR, &[(0, PAGE)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_with_an_unaligned_range_offset_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0x800, PAGE)])), Errno::INVAL);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, PAGE), (PAGE + 8, PAGE)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_with_an_unaligned_range_length_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, PAGE + 1)])), Errno::INVAL);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, 0x800)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_with_a_zero_length_range_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, 0)])), Errno::INVAL);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, PAGE), (PAGE, 0)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_a_range_past_the_bar_end_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(BAR1_LEN - PAGE, 2 * PAGE)])), Errno::INVAL);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(BAR1_LEN, PAGE)])), Errno::INVAL);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, BAR1_LEN + PAGE)])), Errno::INVAL);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, PAGE), (BAR1_LEN, PAGE)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
    // The last page is still exportable: the check is `end > bar end`.
    let buf = fd.feature_dma_buf(1, RDWR, &[(BAR1_LEN - PAGE, PAGE)]).unwrap();
    assert_eq!(buf.buffer().size(), PAGE);
}

#[test]
fn export_of_a_range_whose_start_overflows_is_eoverflow() {
    // bar_start + offset wraps (§4.4 step 9).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = LAST_PAGE;
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(offset, PAGE)])), Errno::OVERFLOW);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_a_range_whose_end_overflows_is_eoverflow() {
    // bar_start + offset fits, + length wraps (§4.4 step 9). BAR1 lives at
    // 1 << 40 in this model's physical space.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = 0u64.wrapping_sub(1 << 40).wrapping_sub(PAGE);
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(offset, 2 * PAGE)])), Errno::OVERFLOW);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_with_summed_lengths_overflowing_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let half = 1u64 << 63;
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, half), (0, half)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_with_total_size_having_bit_63_set_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let quarter = 1u64 << 62;
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(0, quarter), (0, quarter)])), Errno::INVAL);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_summed_length_check_runs_before_the_per_range_overflow_check() {
    // §4.4 step 7 (EINVAL) precedes step 9 (EOVERFLOW).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = LAST_PAGE;
    let half = 1u64 << 63;
    assert_eq!(errno(fd.feature_dma_buf(1, RDWR, &[(offset, half), (0, half)])), Errno::INVAL);
}

#[test]
fn export_with_payload_shorter_than_nr_ranges_says_is_efault() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE), (PAGE, PAGE)]);
    assert_eq!(errno(raw_export(&fd, &payload[..payload.len() - DMA_RANGE_SIZE])), Errno::FAULT);
    assert_eq!(errno(raw_export(&fd, &payload[..payload.len() - 1])), Errno::FAULT);
    assert_eq!(errno(raw_export(&fd, &payload[..DMA_BUF_FEATURE_MINSZ])), Errno::FAULT);
    assert_eq!(fx.vdev.dmabufs().len(), 0);
}

#[test]
fn export_of_a_non_bar_with_a_short_payload_is_enodev_before_efault() {
    // §4.4 step 5 (region) precedes step 6 (copy of the ranges).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let payload = encode_dma_buf_payload(VFIO_PCI_CONFIG_REGION_INDEX, RDWR, 0, &[(0, PAGE)]);
    assert_eq!(errno(raw_export(&fd, &payload[..DMA_BUF_FEATURE_MINSZ])), Errno::NODEV);
}

#[test]
fn export_with_longer_payload_than_nr_ranges_says_ignores_the_rest() {
    // argsz is not cross-checked against nr_ranges (spec §4.4 step 6, §12).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let mut payload = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE)]);
    payload.extend_from_slice(&[0xff; DMA_RANGE_SIZE]);
    let Ok(FeatureReply::DmaBuf(buf)) = raw_export(&fd, &payload) else { panic!("export must succeed") };
    assert_eq!(buf.buffer().size(), PAGE);
    assert_eq!(fx.vdev.dmabufs().len(), 1);
}

/// Every failing export of the table, through the raw feature call.
fn failing_exports() -> Vec<(&'static str, Vec<u8>, Errno)> {
    let ok_range = [(0, PAGE)];
    let mut short = encode_dma_buf_payload(1, RDWR, 0, &[(0, PAGE), (PAGE, PAGE)]);
    short.truncate(short.len() - DMA_RANGE_SIZE);
    vec![
        ("zero ranges", encode_dma_buf_payload(1, RDWR, 0, &[]), Errno::INVAL),
        ("non-zero flags", encode_dma_buf_payload(1, RDWR, 1, &ok_range), Errno::INVAL),
        ("ROM", encode_dma_buf_payload(6, RDWR, 0, &ok_range), Errno::NODEV),
        ("CONFIG", encode_dma_buf_payload(7, RDWR, 0, &ok_range), Errno::NODEV),
        ("VGA", encode_dma_buf_payload(8, RDWR, 0, &ok_range), Errno::NODEV),
        ("missing BAR", encode_dma_buf_payload(3, RDWR, 0, &ok_range), Errno::NODEV),
        ("register BAR", encode_dma_buf_payload(0, RDWR, 0, &ok_range), Errno::INVAL),
        ("unaligned", encode_dma_buf_payload(1, RDWR, 0, &[(8, PAGE)]), Errno::INVAL),
        ("zero length", encode_dma_buf_payload(1, RDWR, 0, &[(0, 0)]), Errno::INVAL),
        ("past end", encode_dma_buf_payload(1, RDWR, 0, &[(BAR1_LEN, PAGE)]), Errno::INVAL),
        ("start overflow", encode_dma_buf_payload(1, RDWR, 0, &[(LAST_PAGE, PAGE)]), Errno::OVERFLOW),
        ("sum overflow", encode_dma_buf_payload(1, RDWR, 0, &[(0, 1 << 63), (0, 1 << 63)]), Errno::INVAL),
        ("short payload", short, Errno::FAULT),
    ]
}

#[test]
fn every_failed_export_leaves_no_handle_and_no_buffer_behind() {
    // The one test that compares the process-wide handle count: it holds
    // QUIET for write, so no other test of this file runs meanwhile.
    let _alone: RwLockWriteGuard<'static, ()> = QUIET.write().unwrap_or_else(|e| e.into_inner());
    let vdev = device("edu-plus");
    let fd = vdev.open();
    let handles = dmabuf::nr_handles();
    for (what, payload, expected) in failing_exports() {
        assert_eq!(errno(raw_export(&fd, &payload)), expected, "{what}");
        assert_eq!(dmabuf::nr_handles(), handles, "{what}: a handle was left behind");
        assert_eq!(vdev.dmabufs().len(), 0, "{what}: a buffer was left behind");
        assert_eq!(vdev.open_count(), 1, "{what}");
    }
    // A successful export adds exactly one handle, and closing it removes it.
    let buf = export_bar1(&fd, PAGE);
    assert_eq!(dmabuf::nr_handles(), handles + 1);
    drop(buf);
    assert_eq!(dmabuf::nr_handles(), handles);
    assert_eq!(vdev.dmabufs().len(), 0);
}

// ---------------------------------------------------------------------------
// §2.2 / §4.1 device-fd mmap
// ---------------------------------------------------------------------------

/// Asserts a device-fd mmap fails with `expected` and leaves nothing behind.
fn assert_device_mmap_fails(fx: &Fixture, fd: &DeviceFd, args: MmapArgs, expected: Errno) {
    let before = fx.counts();
    assert_eq!(errno(fd.mmap(&fx.aspace, args)), expected, "{args:?}");
    assert_eq!(fx.counts(), before, "{args:?} left something behind");
}

#[test]
fn device_mmap_of_a_region_index_past_the_last_region_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    for index in [u64::from(VFIO_PCI_NUM_REGIONS), 100, (1 << 24) - 1] {
        assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(index << 40, PAGE), Errno::INVAL);
    }
}

#[test]
fn device_mmap_of_the_rom_region_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = fd.region_info(VFIO_PCI_ROM_REGION_INDEX).unwrap().offset;
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(offset, PAGE), Errno::INVAL);
}

#[test]
fn device_mmap_of_the_config_region_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = fd.region_info(VFIO_PCI_CONFIG_REGION_INDEX).unwrap().offset;
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(offset, PAGE), Errno::INVAL);
}

#[test]
fn device_mmap_of_the_vga_region_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = fd.region_info(VFIO_PCI_VGA_REGION_INDEX).unwrap().offset;
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(offset, PAGE), Errno::INVAL);
}

#[test]
fn device_mmap_of_a_register_bar_is_einval() {
    // edu-plus BAR0 is the edu register file: READ|WRITE but no MMAP flag.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let info = fd.region_info(0).unwrap();
    assert_eq!(info.flags & VFIO_REGION_INFO_FLAG_MMAP, 0);
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(info.offset, PAGE), Errno::INVAL);
}

#[test]
fn device_mmap_of_a_bar_the_device_lacks_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    for index in [2u64, 3, 4, 5] {
        assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(index << 40, PAGE), Errno::INVAL);
    }
}

#[test]
fn device_mmap_with_map_private_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let args = MmapArgs { shared: false, ..MmapArgs::shared(1 << 40, PAGE) };
    assert_device_mmap_fails(&fx, &fd, args, Errno::INVAL);
    let read_only = MmapArgs { write: false, ..args };
    assert_device_mmap_fails(&fx, &fd, read_only, Errno::INVAL);
}

#[test]
fn device_mmap_past_the_page_aligned_bar_end_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let bar1 = fd.region_info(1).unwrap();
    assert_eq!(bar1.size, BAR1_LEN);
    // Matt's test T4: size + 4K at offset 0, and the full size at offset 4K.
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(bar1.offset, BAR1_LEN + PAGE), Errno::INVAL);
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(bar1.offset + PAGE, BAR1_LEN), Errno::INVAL);
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(bar1.offset + BAR1_LEN, PAGE), Errno::INVAL);
    // Up to the end exactly is fine.
    fd.mmap(&fx.aspace, MmapArgs::shared(bar1.offset + BAR1_LEN - PAGE, PAGE)).unwrap();
}

#[test]
fn device_mmap_whose_offset_plus_length_overflows_is_enomem_from_mmap_itself() {
    // Such a length is beyond the address space: get_unmapped_area() refuses
    // it with ENOMEM before the driver's EINVAL (spec §2.2 step 5) is reached.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let len = LAST_PAGE;
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared((1 << 40) + PAGE, len), Errno::NOMEM);
}

#[test]
fn device_mmap_of_zero_length_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(1 << 40, 0), Errno::INVAL);
}

#[test]
fn device_mmap_at_an_unaligned_offset_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    for offset in [(1 << 40) + 1, (1 << 40) + 0x800, (1 << 40) + PAGE + 8] {
        assert_device_mmap_fails(&fx, &fd, MmapArgs::shared(offset, PAGE), Errno::INVAL);
    }
}

#[test]
fn device_mmap_at_a_taken_address_is_eexist_and_releases_its_buffer() {
    // The per-mapping buffer is created before the VMA; when mapping fails
    // it must be released again, with the device-file reference it owned.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let va = fd.mmap(&fx.aspace, MmapArgs::shared(1 << 40, PAGE)).unwrap();
    let args = MmapArgs { addr: Some(va), ..MmapArgs::shared((1 << 40) + PAGE, PAGE) };
    assert_device_mmap_fails(&fx, &fd, args, Errno::EXIST);
    assert_eq!(fx.vdev.dmabufs().len(), 1, "only the live mapping's buffer");
    // Unmapping the live mapping and closing the fd must close the device:
    // no leftover of the failed call still owns the device file.
    fx.aspace.munmap(va, PAGE).unwrap();
    fd.close();
    assert_eq!(fx.vdev.open_count(), 0);
    assert!(fx.vdev.dmabufs().is_empty());
}

#[test]
fn device_mmap_with_memory_disabled_succeeds_and_faults_with_sigbus() {
    // §5.1: the legacy paradigm, map regardless and SIGBUS on access; the
    // buffer starts TEMP_REVOKED (§4.3 step 4).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    fd.set_memory_enable(false).unwrap();
    let va = fd.mmap(&fx.aspace, MmapArgs::shared(1 << 40, PAGE)).unwrap();
    assert_eq!(fx.vdev.dmabufs()[0].status(), Status::TempRevoked);
    assert_sigbus(va);
    fd.set_memory_enable(true).unwrap();
    probe::read_u64(va).unwrap();
}

// ---------------------------------------------------------------------------
// Region read/write and region info
// ---------------------------------------------------------------------------

#[test]
fn region_info_past_the_last_region_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.region_info(VFIO_PCI_NUM_REGIONS)), Errno::INVAL);
    assert_eq!(errno(fd.region_info(u32::MAX)), Errno::INVAL);
}

#[test]
fn region_read_past_the_bar_end_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let mut buf = [0u8; 8];
    assert_eq!(errno(fd.read((1 << 40) + BAR1_LEN, &mut buf)), Errno::INVAL);
    assert_eq!(errno(fd.read(1 << 20, &mut buf)), Errno::INVAL, "BAR0 is 1 MiB");
    // A read that starts inside and runs past the end is short, not an error.
    assert_eq!(fd.read((1 << 40) + BAR1_LEN - 4, &mut buf).unwrap(), 4);
}

#[test]
fn region_write_past_the_bar_end_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.write((1 << 40) + BAR1_LEN, &[1; 8])), Errno::INVAL);
}

#[test]
fn region_read_and_write_of_a_missing_bar_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let mut buf = [0u8; 4];
    assert_eq!(errno(fd.read(3 << 40, &mut buf)), Errno::INVAL);
    assert_eq!(errno(fd.write(3 << 40, &buf)), Errno::INVAL);
}

#[test]
fn region_read_and_write_of_the_rom_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = u64::from(VFIO_PCI_ROM_REGION_INDEX) << 40;
    let mut buf = [0u8; 4];
    assert_eq!(errno(fd.read(offset, &mut buf)), Errno::INVAL);
    assert_eq!(errno(fd.write(offset, &buf)), Errno::INVAL);
}

#[test]
fn region_read_and_write_of_vga_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let offset = u64::from(VFIO_PCI_VGA_REGION_INDEX) << 40;
    let mut buf = [0u8; 4];
    assert_eq!(errno(fd.read(offset, &mut buf)), Errno::INVAL);
    assert_eq!(errno(fd.write(offset, &buf)), Errno::INVAL);
}

#[test]
fn region_read_past_the_config_space_is_efault() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let size = fd.region_info(VFIO_PCI_CONFIG_REGION_INDEX).unwrap().size;
    let offset = (u64::from(VFIO_PCI_CONFIG_REGION_INDEX) << 40) + size;
    let mut buf = [0u8; 4];
    // vfio_config_do_rw(): an access not wholly inside config space is EFAULT.
    assert_eq!(errno(fd.read(offset, &mut buf)), Errno::FAULT);
}

#[test]
fn region_read_and_write_of_a_ram_bar_while_memory_is_disabled_is_eio() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    fd.set_memory_enable(false).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(errno(fd.read(1 << 40, &mut buf)), Errno::IO);
    assert_eq!(errno(fd.write(1 << 40, &buf)), Errno::IO);
    fd.set_memory_enable(true).unwrap();
    assert_eq!(fd.read(1 << 40, &mut buf).unwrap(), 8);
}

#[test]
fn region_read_and_write_of_a_register_bar_while_memory_is_disabled_is_eio() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    fd.set_memory_enable(false).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(errno(fd.read(0, &mut buf)), Errno::IO);
    assert_eq!(errno(fd.write(4, &buf)), Errno::IO);
}

#[test]
fn region_read_of_a_bar_in_d3hot_is_eio() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    fd.set_power_state(PowerState::D3Hot).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(errno(fd.read(1 << 40, &mut buf)), Errno::IO);
}

// ---------------------------------------------------------------------------
// §4.5 mmap of a buffer fd
// ---------------------------------------------------------------------------

/// Asserts a buffer mmap fails with `expected` and leaves nothing behind.
fn assert_buffer_mmap_fails(fx: &Fixture, buf: &DmaBufFd, args: MmapArgs, expected: Errno) {
    let before = fx.counts();
    assert_eq!(errno(mmap_dmabuf(&fx.aspace, buf, args)), expected, "{args:?}");
    assert_eq!(fx.counts(), before, "{args:?} left something behind");
}

#[test]
fn buffer_mmap_longer_than_the_buffer_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, 16 * PAGE);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, 17 * PAGE), Errno::INVAL);
}

#[test]
fn buffer_mmap_at_an_offset_that_runs_past_the_end_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, 16 * PAGE);
    // Matt's test T3: full size at offset 4K.
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(PAGE, 16 * PAGE), Errno::INVAL);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(16 * PAGE, PAGE), Errno::INVAL);
    // An offset past MAX_LFS_FILESIZE: file_mmap_ok() says EOVERFLOW first.
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(LAST_PAGE, PAGE), Errno::OVERFLOW);
    // The last page alone is fine.
    mmap_dmabuf(&fx.aspace, &buf, MmapArgs::shared(15 * PAGE, PAGE)).unwrap();
}

#[test]
fn buffer_mmap_of_zero_length_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, 0), Errno::INVAL);
}

#[test]
fn buffer_mmap_at_an_unaligned_offset_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, 4 * PAGE);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(8, PAGE), Errno::INVAL);
}

#[test]
fn buffer_mmap_with_map_private_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let args = MmapArgs { shared: false, ..MmapArgs::shared(0, PAGE) };
    assert_buffer_mmap_fails(&fx, &buf, args, Errno::INVAL);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs { write: false, ..args }, Errno::INVAL);
}

#[test]
fn buffer_mmap_of_a_permanently_revoked_buffer_is_enodev() {
    // Matt's test T8.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::NODEV);
}

#[test]
fn buffer_mmap_of_a_temporarily_revoked_buffer_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.set_memory_enable(false).unwrap();
    assert_eq!(buf.buffer().status(), Status::TempRevoked);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::NODEV);
    // Un-revoked by re-enabling memory: mmap works again.
    fd.set_memory_enable(true).unwrap();
    mmap_dmabuf(&fx.aspace, &buf, MmapArgs::shared(0, PAGE)).unwrap();
}

#[test]
fn buffer_mmap_of_a_buffer_exported_while_memory_was_disabled_is_enodev() {
    // §4.3 step 4: the initial status follows memory enable.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    fd.set_memory_enable(false).unwrap();
    let buf = export_bar1(&fd, PAGE);
    assert_eq!(buf.buffer().status(), Status::TempRevoked);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::NODEV);
}

#[test]
fn buffer_mmap_after_the_device_was_closed_is_enodev() {
    // Matt's test T18, second half: the explicit buffer holds no device file.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.close();
    assert_eq!(fx.vdev.open_count(), 0);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::NODEV);
}

#[test]
fn buffer_mmap_private_of_a_revoked_buffer_is_enodev_before_einval() {
    // §4.5: the status check (step 2) precedes the VM_SHARED check (step 3).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    let args = MmapArgs { shared: false, ..MmapArgs::shared(0, PAGE) };
    assert_buffer_mmap_fails(&fx, &buf, args, Errno::NODEV);
}

#[test]
fn buffer_mmap_past_the_end_of_a_revoked_buffer_is_einval_before_enodev() {
    // §4.5: the dma-buf core's size check (step 1) precedes the status check.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, 2 * PAGE), Errno::INVAL);
}

#[test]
fn buffer_mmap_writable_shared_of_a_read_only_buffer_is_eacces() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = fd.feature_dma_buf(1, RDONLY, &[(0, PAGE)]).unwrap();
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::ACCESS);
    // Read-only shared is fine.
    let va = mmap_dmabuf(&fx.aspace, &buf, MmapArgs { write: false, ..MmapArgs::shared(0, PAGE) }).unwrap();
    probe::read_u64(va).unwrap();
}

#[test]
fn buffer_mmap_writable_shared_of_a_revoked_read_only_buffer_is_eacces_before_enodev() {
    // The VFS permission check runs before the exporter's mmap op.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = fd.feature_dma_buf(1, RDONLY, &[(0, PAGE)]).unwrap();
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::ACCESS);
}

#[test]
fn buffer_mmap_writable_private_of_a_read_only_buffer_is_einval() {
    // MAP_PRIVATE never needs FMODE_WRITE, so the VFS lets it through and
    // the exporter refuses the private mapping.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = fd.feature_dma_buf(1, RDONLY, &[(0, PAGE)]).unwrap();
    let args = MmapArgs { shared: false, ..MmapArgs::shared(0, PAGE) };
    assert_buffer_mmap_fails(&fx, &buf, args, Errno::INVAL);
}

#[test]
fn buffer_mmap_of_a_write_only_buffer_is_eacces() {
    // The same generic VFS rule (spec §5.3, "[R]"): do_mmap() refuses every
    // mapping of a file not opened for reading, shared or private.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = fd.feature_dma_buf(1, WRONLY, &[(0, PAGE)]).unwrap();
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs::shared(0, PAGE), Errno::ACCESS);
    assert_buffer_mmap_fails(&fx, &buf, MmapArgs { write: false, ..MmapArgs::shared(0, PAGE) }, Errno::ACCESS);
}

#[test]
fn buffer_mmap_at_a_taken_address_is_eexist_and_leaves_no_vma() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, 2 * PAGE);
    let va = mmap_dmabuf(&fx.aspace, &buf, MmapArgs::shared(0, PAGE)).unwrap();
    let args = MmapArgs { addr: Some(va), ..MmapArgs::shared(PAGE, PAGE) };
    assert_buffer_mmap_fails(&fx, &buf, args, Errno::EXIST);
    // The first mapping is untouched.
    probe::write_u64(va, 0x5eed).unwrap();
    assert_eq!(probe::read_u64(va).unwrap(), 0x5eed);
}

// ---------------------------------------------------------------------------
// §4.9 the permanent revoke feature
// ---------------------------------------------------------------------------

#[test]
fn revoke_with_stdout_is_einval() {
    // Matt's test T17: fd 1 is open but is not a dma-buf.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf_revoke(1)), Errno::INVAL);
}

#[test]
fn revoke_with_a_closed_fd_number_is_ebadf() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf_revoke(closed_fd_number())), Errno::BADF);
}

#[test]
fn revoke_with_a_negative_fd_is_ebadf() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf_revoke(-1)), Errno::BADF);
    assert_eq!(errno(fd.feature_dma_buf_revoke(i32::MIN)), Errno::BADF);
}

#[test]
fn revoke_of_a_buffer_of_another_device_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let other = device("edu-plus");
    let other_fd = other.open();
    let buf = export_bar1(&other_fd, PAGE);
    assert_eq!(errno(fd.feature_dma_buf_revoke(buf.raw_fd())), Errno::NODEV);
    assert_eq!(buf.buffer().status(), Status::Ok, "the foreign buffer is untouched");
    // Its own device can revoke it.
    other_fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(buf.buffer().status(), Status::PermRevoked);
}

#[test]
fn revoke_of_a_buffer_whose_device_was_closed_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.close();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf_revoke(buf.raw_fd())), Errno::NODEV);
}

#[test]
fn revoke_of_a_buffer_of_another_exporter_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let foreign = foreign_buffer_fd();
    assert_eq!(errno(fd.feature_dma_buf_revoke(foreign.raw_fd())), Errno::NODEV);
    assert_eq!(foreign.buffer().status(), Status::Ok);
}

#[test]
fn second_revoke_is_ebadfd() {
    // Matt's test T7.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(errno(fd.feature_dma_buf_revoke(buf.raw_fd())), Errno::BADFD);
}

#[test]
fn revoke_through_a_dup_of_a_revoked_buffer_fd_is_ebadfd() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let dup = buf.dup().unwrap();
    fd.feature_dma_buf_revoke(dup.raw_fd()).unwrap();
    assert_eq!(errno(fd.feature_dma_buf_revoke(buf.raw_fd())), Errno::BADFD);
}

#[test]
fn revoke_of_a_temporarily_revoked_buffer_succeeds_once_then_is_ebadfd() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.set_memory_enable(false).unwrap();
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(errno(fd.feature_dma_buf_revoke(buf.raw_fd())), Errno::BADFD);
    fd.set_memory_enable(true).unwrap();
    assert_eq!(buf.buffer().status(), Status::PermRevoked, "re-enabling memory does not revive it");
}

// ---------------------------------------------------------------------------
// §4.10 the memory-attribute feature
// ---------------------------------------------------------------------------

fn memattr_of(buf: &DmaBufFd) -> u32 {
    VfioDmaBuf::of(buf.buffer()).unwrap().memattr()
}

#[test]
fn memattr_with_an_unknown_value_is_enoent() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    for value in [2, 3, 0x100, u32::MAX] {
        assert_eq!(errno(fd.feature_dma_buf_memattr(buf.raw_fd(), value)), Errno::NOENT, "memattr {value}");
    }
    assert_eq!(memattr_of(&buf), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC);
}

#[test]
fn memattr_with_stdout_is_einval() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf_memattr(1, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC)), Errno::INVAL);
}

#[test]
fn memattr_with_a_closed_fd_number_is_ebadf() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let n = closed_fd_number();
    assert_eq!(errno(fd.feature_dma_buf_memattr(n, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC)), Errno::BADF);
    assert_eq!(errno(fd.feature_dma_buf_memattr(-1, VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC)), Errno::BADF);
}

#[test]
fn memattr_of_a_buffer_of_another_device_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let other = device("edu-plus");
    let other_fd = other.open();
    let buf = export_bar1(&other_fd, PAGE);
    assert_eq!(errno(fd.feature_dma_buf_memattr(buf.raw_fd(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC)), Errno::NODEV);
    assert_eq!(memattr_of(&buf), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC);
}

#[test]
fn memattr_of_a_buffer_whose_device_was_closed_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.close();
    let fd = fx.vdev.open();
    assert_eq!(errno(fd.feature_dma_buf_memattr(buf.raw_fd(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC)), Errno::NODEV);
}

#[test]
fn memattr_of_a_buffer_of_another_exporter_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let foreign = foreign_buffer_fd();
    let r = fd.feature_dma_buf_memattr(foreign.raw_fd(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC);
    assert_eq!(errno(r), Errno::NODEV);
}

#[test]
fn memattr_with_a_known_value_succeeds() {
    // The control for the rows above: both values of the enum are accepted.
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_memattr(buf.raw_fd(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC).unwrap();
    assert_eq!(memattr_of(&buf), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC);
    fd.feature_dma_buf_memattr(buf.raw_fd(), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC).unwrap();
    assert_eq!(memattr_of(&buf), VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC);
}

// ---------------------------------------------------------------------------
// §2.5 importers: attach and map
// ---------------------------------------------------------------------------

#[test]
fn attach_of_an_importer_without_peer2peer_is_eopnotsupp() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    assert_eq!(dmabuf_errno(buf.buffer().attach(importer(false, true))), Errno::OPNOTSUPP);
    assert_eq!(buf.buffer().attachments(), 0);
}

#[test]
fn attach_to_a_permanently_revoked_buffer_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(dmabuf_errno(buf.buffer().attach(importer(true, true))), Errno::NODEV);
    assert_eq!(buf.buffer().attachments(), 0);
}

#[test]
fn attach_to_a_temporarily_revoked_buffer_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.set_memory_enable(false).unwrap();
    assert_eq!(dmabuf_errno(buf.buffer().attach(importer(true, true))), Errno::NODEV);
    fd.set_memory_enable(true).unwrap();
    buf.buffer().attach(importer(true, true)).unwrap();
}

#[test]
fn attach_of_an_importer_that_cannot_be_revoked_is_eopnotsupp() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    assert_eq!(dmabuf_errno(buf.buffer().attach(importer(true, false))), Errno::OPNOTSUPP);
    assert_eq!(buf.buffer().attachments(), 0);
}

#[test]
fn attach_checks_peer2peer_then_revoked_then_revocable() {
    // §2.5: not p2p (EOPNOTSUPP) before revoked (ENODEV) before
    // non-revocable (EOPNOTSUPP).
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(dmabuf_errno(buf.buffer().attach(importer(false, false))), Errno::OPNOTSUPP);
    assert_eq!(dmabuf_errno(buf.buffer().attach(importer(true, false))), Errno::NODEV);
}

#[test]
fn importer_map_of_a_permanently_revoked_buffer_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let attachment = buf.buffer().attach(importer(true, true)).unwrap();
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_eq!(dmabuf_errno(attachment.map()), Errno::NODEV);
    assert_eq!(buf.buffer().importer_mappings(), 0);
}

#[test]
fn importer_map_of_a_temporarily_revoked_buffer_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let attachment = buf.buffer().attach(importer(true, true)).unwrap();
    fd.set_memory_enable(false).unwrap();
    assert_eq!(dmabuf_errno(attachment.map()), Errno::NODEV);
    fd.set_memory_enable(true).unwrap();
    let mapping = attachment.map().unwrap();
    assert_eq!(buf.buffer().importer_mappings(), 1);
    mapping.unmap();
}

#[test]
fn importer_map_after_the_device_was_closed_is_enodev() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let attachment = buf.buffer().attach(importer(true, true)).unwrap();
    fd.close();
    assert_eq!(dmabuf_errno(attachment.map()), Errno::NODEV);
}

// ---------------------------------------------------------------------------
// §5.3 "any access to a mapping ... SIGBUS"
// ---------------------------------------------------------------------------

#[test]
fn access_to_a_permanently_revoked_buffer_mapping_raises_sigbus() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let va = mmap_dmabuf(&fx.aspace, &buf, MmapArgs::shared(0, PAGE)).unwrap();
    probe::read_u64(va).unwrap();
    fd.feature_dma_buf_revoke(buf.raw_fd()).unwrap();
    assert_sigbus(va);
    // Permanent: re-enabling memory decoding does not bring it back.
    fd.set_memory_enable(false).unwrap();
    fd.set_memory_enable(true).unwrap();
    assert_sigbus(va);
}

#[test]
fn access_to_a_buffer_mapping_with_memory_disabled_raises_sigbus() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let va = mmap_dmabuf(&fx.aspace, &buf, MmapArgs::shared(0, PAGE)).unwrap();
    let dev_va = fd.mmap(&fx.aspace, MmapArgs::shared(1 << 40, PAGE)).unwrap();
    probe::write_u64(va, 7).unwrap();
    fd.set_memory_enable(false).unwrap();
    assert_sigbus(va);
    assert_sigbus(dev_va);
    fd.set_memory_enable(true).unwrap();
    assert_eq!(probe::read_u64(dev_va).unwrap(), 7);
}

#[test]
fn access_to_a_mapping_in_d3hot_raises_sigbus() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let va = fd.mmap(&fx.aspace, MmapArgs::shared(1 << 40, PAGE)).unwrap();
    probe::read_u64(va).unwrap();
    fd.set_power_state(PowerState::D3Hot).unwrap();
    assert_sigbus(va);
    fd.set_power_state(PowerState::D0).unwrap();
    probe::read_u64(va).unwrap();
}

#[test]
fn access_to_a_buffer_mapping_after_the_device_was_closed_raises_sigbus() {
    let fx = Fixture::edu_plus();
    let fd = fx.vdev.open();
    let buf = export_bar1(&fd, PAGE);
    let va = mmap_dmabuf(&fx.aspace, &buf, MmapArgs::shared(0, PAGE)).unwrap();
    probe::read_u64(va).unwrap();
    fd.close();
    assert_sigbus(va);
}
