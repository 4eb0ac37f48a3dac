//! The protocol between the vfio-dmabuf server (the kernel's part: device
//! models, BAR storage, buffers, lifetimes) and the processes it serves
//! (through the preload library).
//!
//! # Shape
//!
//! - **Object fds.** Every container, group, device, iommufd and DMA-buffer
//!   fd a program holds is one end of a `SOCK_SEQPACKET` socket pair whose
//!   other end the server keeps. `dup`, `fork` and `SCM_RIGHTS` therefore
//!   keep their meaning without help, and the server learns of the last
//!   close from the hang-up of its end. The program's end carries one
//!   unread packet, the [`tag`]: a peek at it says "this fd is ours, of this
//!   kind", with no server round trip and no table that could go stale.
//! - **Requests** go over *connections* to the server's listening socket,
//!   never over the object fds: a process (any thread of it, a signal
//!   handler included) takes a connection, sends one [`Request`] with the
//!   object fd attached (`SCM_RIGHTS`, so the server knows the caller holds
//!   it), reads one [`Reply`], and gives the connection back.
//! - **Notifications** (server → process) go over the one *notify*
//!   connection each process opens: the server tells the process the new
//!   state of each of its mappings ([`Notify`]) and waits for the
//!   [`Request::Ack`] before a revoke returns.
//!
//! Messages are [`postcard`]-encoded, one per packet ([`transport`]). The
//! register-access messages ([`Request::MmioBegin`] and friends, and their
//! replies) own no heap data, so a signal handler encodes and decodes them
//! on its stack without allocating.
#![forbid(unsafe_code)]

pub mod msg;
pub mod nr;
pub mod shape;
pub mod tag;
pub mod transport;

pub use msg::{MapPlan, MemoryRef, Node, Notify, ObjectKind, Piece, Reply, Request, Role};

/// Environment variable naming the server's listening socket, set by
/// `vfio-dmabuf exec` for the program it runs.
pub const SOCKET_ENV: &str = "VFIO_DMABUF_SOCKET";

/// Largest packet either side sends or accepts. Bulk data (a region read
/// or write) is split into [`MAX_DATA`] chunks by the caller.
pub const MAX_PACKET: usize = 128 * 1024;

/// Largest data payload of one [`Request::Pwrite`] or [`Reply::Data`].
pub const MAX_DATA: usize = 64 * 1024;

/// Largest number of fds attached to one packet (a `SET_IRQS` with many
/// eventfds, a hot reset with many groups).
pub const MAX_FDS: usize = 64;
