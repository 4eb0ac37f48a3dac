//! The vfio-dmabuf server: the kernel's part of VFIO for the processes it
//! serves (device models, BAR storage, buffers, statuses, lifetimes, the
//! revoke protocol), over the [`wire`] protocol.
//!
//! What it is: a library that owns emulated devices ([`ServedDevice`]),
//! listens on a `SOCK_SEQPACKET` socket ([`Server`]) and answers the
//! requests of the processes that connect (through the preload library):
//! opens of `/dev/vfio/...` and `/dev/iommu`, lookups of the sysfs view,
//! ioctls, region reads and writes, mmaps and register accesses. Every
//! object a process holds is a real fd (one end of a socket pair whose other
//! end the server keeps); its last close is seen as a hang-up and runs the
//! kernel's release. What it is not: the syscall layer of the processes,
//! nor the fault handling of their mappings, which each process does itself
//! from the plan the server gives ([`wire::MapPlan`]).
//!
//! It mirrors the kernel's VFIO core: `drivers/vfio/group.c` (`group`),
//! `container.c` and `iommufd.c` glue (`container`), `device_cdev.c` and
//! `vfio_main.c` device-file dispatch (`device`), `vfio_pci_core.c` ioctls
//! (`device::ioctl`), the dma-buf file (`dmabuf`), and the file-table and
//! `fput` machinery that makes a last close run a release (`object`).
//!
//! Modules: `server` (bind, accept, threads, shutdown), `conn` (one thread
//! per connection, request dispatch), `process` (the processes by token,
//! their notify connection), `object` (the object table, tags, hang-up
//! watcher), `open` (opens and the sysfs/dev view), `group`, `container`,
//! `device`, `dmabuf`, `mapping` (remote CPU mappings and their
//! notifications), `backstop` (cutting off a process that does not
//! answer), `mmio` (register accesses), `procmem` (the memory of a
//! process, for DMA), `local` (files of objects the serving process
//! holds), `args` (ioctl argument helpers), `names` (ioctl names
//! for the log), and `iommu` (the IOMMU side: Type1 container, iommufd).
//!
//! # Lock order
//!
//! ```text
//! objects.reap (hang-up processing)        held while releases run
//!   vfio's locks (open_lock → memory_lock → resv)   in releases and ioctls
//!     RemoteMapping.notify_lock            one zap of one remote mapping (a buffer's zap holds
//!                                          those of all its mappings until every ack is in; a
//!                                          mapping belongs to one buffer, so the sets never cross)
//!       Process.notify_send, Process.acks  send one notification, wait for its ack
//! objects.table, registry, Process.mappings, Process.frames_sent, Process.slots,
//! GroupFile.state → ContainerFile.groups, Group.state, Served.binding      leaves:
//!   nothing is dropped and no vfio call is made while one of them is held
//! Served.dma (a device's DMA users)
//!   the device's bus-master port lock      (set_dma_port; a leaf)
//! iommu's Container state | Iommufd context   (map calls, DMA translation)
//!   PeerMemory.bars                        (a process's BAR mappings; a leaf)
//! ```
//!
//! A device's DMA port holds its container's or context's state, never the
//! device: a transfer takes the port, then the IOMMU lock, then copies with
//! no lock of the device held.
//!
//! A zap of a remote mapping waits (bounded) for a process while the
//! revoking thread holds the device's `memory_lock` (write); the process
//! answers from its notify thread, which never waits for the server. A
//! process that does not answer within the bound ([`Server::set_ack_timeout`])
//! is cut off (`backstop`): the frames of the revoked buffer it was sent
//! are truncated, which zaps its page tables without its help.
#![forbid(unsafe_code)]

mod args;
mod backstop;
mod conn;
mod container;
mod device;
mod dmabuf;
mod group;
pub mod iommu;
mod local;
mod mapping;
mod mmio;
mod names;
mod object;
mod open;
mod process;
mod procmem;
mod server;

pub use crate::process::DEFAULT_ACK_TIMEOUT;
pub use crate::procmem::PeerMemory;

/// Locks `m`. A thread that panicked while holding one of the server's
/// locks left no half-made state that matters more than going on.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
pub use crate::server::{ServedDevice, Server, ServerError, ServerHandle};
