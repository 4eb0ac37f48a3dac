//! Hostile input to every entry point of the VFIO layer that takes user
//! data: raw `VFIO_DEVICE_FEATURE` payloads, device-fd and buffer-fd mmap
//! arguments, region read/write, config-space writes; and a reference model
//! of buffer status under random sequences of operations.
//!
//! Each property computes its answer from the specification (spec §2.1,
//! §2.2, §4.4, §4.5, §4.9, §4.10, §5.3) and from the generic kernel paths
//! around those drivers (`do_mmap()`, `rw_verify_area()`,
//! `vfio_config_do_rw()`), without asking the code under test, and asserts:
//! no panic, that exact errno, and after an error nothing changed: the
//! device's buffers and their statuses, the address space's VMAs, the
//! device's open count, memory decoding and, for features, the process's
//! buffer handles. Counts are per device and per address space, because the
//! tests of this file run as parallel threads.
//!
//! Each input on which this suite once found the library answering
//! otherwise than the kernel is also pinned by a test of [`fixed_issues`].

mod features;
mod fixed_issues;
mod mmap;
mod model;
mod region;

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};

use common::*;
use dmabuf::{AccessMode, DmaBuf, DmaBufFd, Status};
use mm::{probe, AddressSpace};
use pci::PowerState;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{TestCaseError, TestRunner};
use rustix::io::Errno;
use vfio::uapi::*;
use vfio::{mmap_dmabuf, DeviceFd, FeatureReply, MmapArgs, VfioDmaBuf, VfioError, VfioPciDevice};

/// `TASK_SIZE` on x86-64 with 4-level paging (`TASK_SIZE_MAX`). Generated
/// lengths and addresses stay clear of the band where 5-level paging would
/// answer differently: they are either below 2^40 or above 2^57.
const TASK_SIZE: u64 = (1 << 47) - PAGE;
/// `MAX_LFS_FILESIZE`: `file_mmap_size_max()` of a regular-mode inode.
const MAX_LFS_FILESIZE: u64 = i64::MAX as u64;
/// `KMALLOC_MAX_SIZE` on x86-64 (order-10 pages): `memdup_array_user()` of
/// more fails to allocate (`ENOMEM`) before it can fault (`EFAULT`).
const KMALLOC_MAX_SIZE: u64 = 4 * MIB;
const OFFSET_MASK: u64 = (1 << 40) - 1;
const CONFIG: u64 = 7 << 40;

/// Runs `test` on `n` values of `strategy`; on failure, panics with the
/// shrunk input. The caller owns the world the cases share, so it is
/// dropped at the end of the test, under the caller's [`quiet`] or [`alone`] guard.
fn check<S: Strategy>(n: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    // No regression files: this suite must not write into the source tree.
    let config = ProptestConfig { cases: n, failure_persistence: None, ..ProptestConfig::default() };
    if let Err(e) = TestRunner::new(config).run(&strategy, test) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------
// Devices, as the catalogue documents them (not as the library reports them)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bar {
    Absent,
    Registers(u64),
    Ram(u64),
}

/// edu-plus: BAR0 1 MiB of registers, BAR1 64 MiB of RAM (64-bit, so slot 2
/// is its upper half).
const EDU_PLUS: [Bar; 6] =
    [Bar::Registers(MIB), Bar::Ram(64 * MIB), Bar::Absent, Bar::Absent, Bar::Absent, Bar::Absent];
/// multi-bar: RAM BARs of 16 KiB, 4 KiB, 2 MiB (64-bit) and 32 MiB (64-bit).
const MULTI_BAR: [Bar; 6] =
    [Bar::Ram(16 << 10), Bar::Ram(PAGE), Bar::Ram(2 * MIB), Bar::Absent, Bar::Ram(32 * MIB), Bar::Absent];

fn ram_len(bars: &[Bar; 6], index: u64) -> Option<u64> {
    match bars.get(usize::try_from(index).ok()?)? {
        Bar::Ram(len) => Some(*len),
        _ => None,
    }
}

/// The length of a memory BAR, RAM or registers: what mmap and export
/// accept (a register BAR maps; its accesses trap and are emulated).
fn mem_len(bars: &[Bar; 6], index: u64) -> Option<u64> {
    match bars.get(usize::try_from(index).ok()?)? {
        Bar::Ram(len) | Bar::Registers(len) => Some(*len),
        Bar::Absent => None,
    }
}

fn page_align(x: u64) -> Option<u64> {
    x.checked_add(PAGE - 1).map(|v| v & !(PAGE - 1))
}

// ---------------------------------------------------------------------------
// What must not change
// ---------------------------------------------------------------------------

/// The state a failed call must leave as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    /// (id, status, memattr) of every listed buffer.
    dmabufs: Vec<(u64, Status, u32)>,
    /// (start, end, pgoff) of every VMA.
    vmas: Vec<(u64, u64, u64)>,
    open_count: u32,
    memory_enabled: bool,
}

fn snapshot(vdev: &VfioPciDevice, aspace: Option<&AddressSpace>) -> Snapshot {
    Snapshot {
        dmabufs: vdev
            .dmabufs()
            .iter()
            .map(|b| (b.id(), b.status(), VfioDmaBuf::of(b).map_or(u32::MAX, VfioDmaBuf::memattr)))
            .collect(),
        vmas: aspace.map(|a| a.vmas().iter().map(|v| (v.vm_start, v.vm_end, v.vm_pgoff)).collect()).unwrap_or_default(),
        open_count: vdev.open_count(),
        memory_enabled: vdev.memory_enabled(),
    }
}

fn errno_of<T>(r: &Result<T, VfioError>) -> Option<Errno> {
    r.as_ref().err().map(VfioError::errno)
}

#[track_caller]
fn check_sigbus(r: Result<u64, probe::AccessFault>) -> Result<(), TestCaseError> {
    match r {
        Err(f) if f.is_sigbus() && f.code == libc::BUS_ADRERR => Ok(()),
        other => Err(TestCaseError::fail(format!("expected SIGBUS BUS_ADRERR, got {other:?}"))),
    }
}

/// An access through a BAR mapping: it works exactly when `works`, and
/// raises SIGBUS otherwise.
fn check_access(va: u64, works: bool) -> Result<(), TestCaseError> {
    let r = probe::read_u64(va);
    if works {
        prop_assert!(r.is_ok(), "access at {va:#x} should work: {r:?}");
        Ok(())
    } else {
        check_sigbus(r)
    }
}

/// Values that break arithmetic: zero, around a length, around page and
/// bit boundaries, around `u64::MAX`, and anything.
fn nasty_u64(len: u64) -> BoxedStrategy<u64> {
    prop_oneof![
        4 => (0u64..64).prop_map(|p| p * PAGE),
        2 => prop::sample::select(vec![0, 1, PAGE - 1, len, len - PAGE, len + PAGE, len * 2, 1 << 63, (1 << 63) - PAGE]),
        2 => 0..len * 2,
        2 => (0u64..4, prop::bool::ANY).prop_map(|(k, aligned)| {
            if aligned { LAST_PAGE - k * PAGE } else { u64::MAX - k }
        }),
        1 => any::<u64>(),
    ]
    .boxed()
}
