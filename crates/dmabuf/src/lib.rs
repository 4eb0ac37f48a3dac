//! The generic DMA-buffer core: revocable buffers over physical ranges.
//!
//! What it is: a buffer object ([`DmaBuf`]) made of page-aligned ranges ([`PhysVec`]), with
//! a name, an access mode, a reservation lock ([`ResvGuard`]), the revocation status
//! machine of the series ([`Status`], [`DmaBuf::set_status`]), importers that attach, map
//! and must unmap when revoked ([`Importer`], [`Attachment`], [`ImporterMapping`]), a
//! registry of CPU mappings that a revoke zaps ([`CpuMapping`]), and handles that are real
//! file descriptors ([`DmaBufFd`], [`get`]).
//!
//! What it is not: it knows no device, bus or driver, and maps no memory itself. The exporter
//! (the layer above) decides what the ranges mean, when to revoke, and serialises status
//! changes. An mmap of a buffer ([`DmaBuf::mmap`]) is checked here and handed to the
//! exporter's [`DmaBufOps::mmap`], which creates the mapping in an `mm` address space and
//! registers it here. It uses `mm` only to name that address space, as the kernel's
//! dma-buf core uses `vm_area_struct`. No fences are modelled: the reservation lock is a
//! plain mutex.
//!
//! What it mirrors: Linux's `drivers/dma-buf/dma-buf.c` (`dma_buf_export`, `dma_buf_fd`,
//! `dma_buf_get`, `dma_buf_mmap_internal`, attach/map/unmap, `dma_buf_invalidate_mappings`, `DMA_BUF_SET_NAME`),
//! `include/linux/dma-buf.h` (`struct dma_buf_ops`, `struct dma_buf_attach_ops`), and the
//! generic half of the exporter's revoke added by the series (its `set_status` and the
//! kref/completion wait; v4 09/10). Spec §2.5, §2.6, §3.1, §4.7, §6.
//!
//! # Lock order
//!
//! ```text
//! exporter's serialising lock (memory_lock, write)        held by callers of set_status
//!   resv (DmaBuf::resv)        status writes, attachment list, importer-mapping count
//!     name, revoke_timeout, cpu_mappings registry          leaves
//! FD_TABLE (fd.rs)             leaf; no buffer lock taken, no buffer dropped under it
//! ```
//!
//! Exceptions and callbacks:
//! - [`Importer::invalidate_mappings`] runs with `resv` held. It may unmap with
//!   [`ImporterMapping::unmap_locked`]; anything that takes `resv` (map, unmap, dropping a
//!   mapping or an attachment) deadlocks there.
//! - The revoke's importer wait releases `resv` while it sleeps (a condition variable
//!   paired with it), so importers unmap from other threads.
//! - [`CpuMapping::zap`], [`DmaBufOps::release`] and [`DmaBufOps::mmap`] run with no lock
//!   of this crate held.
//!   The caller of `set_status` still holds its serialising lock during the zap.
//! - `status` is an atomic: written only under `resv`, read locklessly (best-effort) by
//!   [`DmaBuf::status`]; [`ResvGuard::status`] is the stable read.

#![forbid(unsafe_code)]

mod attach;
mod buffer;
mod cpu;
mod error;
mod fd;
mod mmap;
mod revoke;
mod types;

pub use attach::{Attachment, AttachmentRef, Importer, ImporterMapping};
pub use buffer::{DmaBuf, DmaBufOps, ExportInfo, ResvGuard};
pub use cpu::{CpuMapping, PendingZap};
pub use error::Error;
pub use fd::{get, nr_handles, DmaBufFd};
pub use mmap::VmArea;
pub use types::{
    validate_ranges, validate_user_name, AccessMode, BufOffset, PhysVec, Status, Transition, DMA_BUF_NAME_LEN,
};

#[cfg(test)]
mod test_support;
