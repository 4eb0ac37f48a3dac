//! Real mappings and the fault engine of vfio-dmabuf.
//!
//! This layer is what Linux's mm is to a driver: it owns virtual address
//! ranges, the VMAs in them, and the page-fault entry point, and it calls a
//! VMA's fault operations ([`VmOperations`], analogous to
//! `vm_operations_struct`) to decide what a fault maps. It also owns the
//! "physical memory" that device memory lives in ([`PhysMemory`], a row of
//! memfd frames per region of device memory). Addresses and page geometry come from the
//! `page` crate ([`page::VirtAddr`], [`page::PhysAddr`], [`page::Pfn`],
//! [`page::PgOff`], `PAGE_SIZE`, `PMD_ORDER`).
//!
//! Mechanism: every VMA is a real shared mapping of the backing frames,
//! registered with a userfaultfd in MINOR mode. The first touch of each page
//! stops in the kernel and reaches the address space's fault engine
//! (`fault_engine.rs`), which asks the VMA's operations; success is
//! `UFFDIO_CONTINUE` (4 KiB, or a fault-around window) and `MADV_COLLAPSE`
//! for each 2 MiB of it that may be mapped by one PMD, SIGBUS is
//! `UFFDIO_POISON`. A zap (`MADV_DONTNEED`) removes the PTEs again,
//! so the next touch faults once more. The engine survives a broken
//! exporter: a panic or a wrong translation ends that access in SIGBUS. See
//! `README.md` beside this file.
//!
//! Modules: `aspace` (the address space and its VMA table, analogous to
//! `mm_struct`), `vma` (`vm_area_struct`), `fault` (the operations seam and
//! `struct vm_fault`), `fault_engine` (the userfaultfd handler), `phys`
//! (memfd "physical memory"), [`frames`] (its memfds, cut off and restored), [`probe`] (accesses that report SIGBUS, safe
//! on our own mappings only), [`fd`] (descriptors handed in by number),
//! [`maps`] (`/proc/<pid>/maps` lines), [`budget`] (whether memory fits),
//! [`process_vm`] (another process's memory by address), `status` (sealed
//! status words other processes only read),
//! [`baseline`] (the kernel's own paths, for benchmarks), [`trap`] (decode
//! and emulation of an access that trapped on a register page), `sys` (raw
//! syscalls and the userfaultfd UAPI).
//!
//! What it is not: it knows nothing of buses, devices or buffers; the
//! exporter above implements the fault operations and names its mappings.
//! All `unsafe` of the project lives here: in the `sys`, `probe` and
//! `status` modules, in `baseline::bare_trap` (the bare trapped access the
//! benchmarks compare against), and in test-only code of `trap` (a counting
//! allocator and the processor's own flags as an oracle).
#![deny(unsafe_code)]

mod aspace;
pub mod baseline;
pub mod budget;
mod fault;
mod fault_engine;
pub mod fd;
pub mod frames;
pub mod maps;
mod mmio;
mod phys;
pub mod probe;
pub mod process_vm;
mod status;
mod sys;
pub mod trap;
mod vma;

pub use aspace::{AddressSpace, ForkGuard, MapRequest, MappingHandle, VmaInfo};
pub use fault::{PfnWindow, VmFault, VmFaultResult, VmOperations};
pub use fault_engine::{FaultStats, PmdFallbacks};
pub use mmio::{MmioAddr, MmioRegs, MmioRevoked, VmMmio};
pub use phys::PhysMemory;
pub use probe::{AccessFault, Width};
pub use status::{StatusPage, StatusView};
pub use vma::{MapPiece, MappingId};

use rustix::io::Errno;

/// Errors of the mm layer.
#[derive(Debug, thiserror::Error)]
pub enum MmError {
    /// Bad argument.
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// The kernel lacks a feature we need.
    #[error("the kernel lacks {0}")]
    Unsupported(&'static str),
    /// More memory asked for than the machine has available (see [`budget`]).
    #[error(
        "need {} but only {} is available; set {}=1 to try anyway",
        budget::format_bytes(*need),
        budget::format_bytes(*available),
        budget::ALLOW_OVERCOMMIT_ENV
    )]
    NoMemory {
        /// Bytes asked for.
        need: u64,
        /// Bytes available (`MemAvailable`).
        available: u64,
    },
    /// A system call failed.
    #[error("{call} failed")]
    Sys {
        /// The call.
        call: &'static str,
        /// Its errno.
        #[source]
        errno: Errno,
    },
}

impl MmError {
    /// The errno this error stands for.
    pub fn errno(&self) -> Errno {
        match self {
            MmError::Invalid(_) => Errno::INVAL,
            MmError::Unsupported(_) => Errno::OPNOTSUPP,
            MmError::NoMemory { .. } => Errno::NOMEM,
            MmError::Sys { errno, .. } => *errno,
        }
    }

    pub(crate) fn sys(call: &'static str) -> impl FnOnce(Errno) -> MmError {
        move |errno| MmError::Sys { call, errno }
    }
}
