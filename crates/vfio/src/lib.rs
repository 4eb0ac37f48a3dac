//! The VFIO-PCI layer of vfio-dmabuf: emulated devices whose every BAR
//! mapping is backed by a revocable DMA-buffer.
//!
//! This is where the generic layers meet, as `vfio_pci_dmabuf.c` is where
//! dma-buf meets PCI in Linux: [`pci`] gives the function (config space,
//! power, FLR), [`::dmabuf`] the buffers and their status machine, [`mm`] the
//! real mappings and the fault engine. The files mirror the kernel's:
//!
//! | module | kernel |
//! |---|---|
//! | `core` (`core/mmap`: device-fd mmap; `core/irq`: the interrupt ioctls, the DMA port) | `vfio_pci_core.c` (`vfio_pci_core_mmap()`, `vfio_pci_ioctl_set_irqs()`) |
//! | `intrs` (what each `SET_IRQS` action does; the device's interrupts to eventfds) | `vfio_pci_intrs.c` |
//! | `virqfd` (the `INTx` unmask eventfd) | `drivers/vfio/virqfd.c` |
//! | `dmabuf` (`dmabuf/export`, `dmabuf/fault` with `find_pfn`, `dmabuf/mmap`, `dmabuf/invariants`) | `vfio_pci_dmabuf.c` |
//! | `config` | `vfio_pci_config.c` |
//! | `rdwr` | `vfio_pci_rdwr.c` |
//! | `pm` | the runtime-PM part of `vfio_pci_core.c` |
//! | `private` | `vfio_pci_priv.h` |
//! | `core_h` (region offset encoding) | `include/linux/vfio_pci_core.h` |
//! | `feature` (`vfio_check_feature()`, dispatch) | `include/linux/vfio.h`, `vfio_main.c` |
//! | `do_mmap` (checks before the driver, mmap of a buffer fd) | `mm/mmap.c` (`do_mmap()`) |
//! | `remote` (the two mmap paths for a mapping another process makes) | — |
//!
//! It follows the final (v3/v4) semantics of the series "vfio/pci: Add
//! `mmap()` for DMABUFs" (see the specification in the repository docs).
//!
//! # Lock order
//!
//! ```text
//! open_lock (per device)                        first open / last close
//!   memory_lock (write)                         config hooks, reset, export, revoke, cleanup
//!     resv (per buffer)                         status writes, importer list and counts
//!       importer invalidate_mappings callbacks  (resv held)
//!     vmas (per address space)                  zap of a revoked buffer's mappings
//!     device model register lock                BAR register access (edu's state)
//!       IrqLine (per function)                  an interrupt the model raises
//!         igate (per device)                    SET_IRQS, INTx mask/unmask, eventfd signals
//! mmap_lock (read, per address space)           one fault, held by the fault thread
//!   resv                                        fault step 2: status check, pin the device
//!   memory_lock (read)                          fault step 5, after resv is dropped
//! ```
//!
//! Exceptions and rules:
//! - `igate` is a leaf: taken under `memory_lock` (read for a BAR register
//!   access, write for a COMMAND write's `INTx`-disable emulation, a reset or
//!   the last close), under a device model's register lock or under the
//!   function's `IrqLine`, it takes nothing itself. `SET_IRQS` reads the
//!   interrupt counts under `memory_lock` (read) and releases it before
//!   `igate`. edu's DMA engine holds no device lock while bytes move.
//! - The fault path never nests resv and `memory_lock`: it takes resv,
//!   drops it, then takes `memory_lock` (read). Revoke nests them the other
//!   way round, so nesting them in the fault path would deadlock (ABBA).
//! - Hot reset takes several devices' `memory_lock` by try-lock and unwinds
//!   with `EBUSY` on contention.
//! - No buffer is dropped while `memory_lock` is held: the last drop runs the
//!   buffer's release, which takes `memory_lock`. Buffers met under the lock
//!   are parked in the guard and dropped after it is released.
//! - A revoke waits for importers with `memory_lock` (write) held; an
//!   importer that touches a BAR mapping from its invalidate callback would
//!   wait on a fault that waits on that lock.
//!
//! # Lifetimes
//!
//! A device-fd mapping's buffer owns the device file (a [`DeviceFd`] dup), so
//! the device stays open until that mapping is gone even when every handle
//! was closed. An explicit buffer holds only a reference to the device
//! (`vdev`), which the last close severs after revoking the buffer: its
//! mappings then raise SIGBUS and new mmaps fail with `ENODEV`.
//!
//! # Examples
//!
//! Map BAR1 of an emulated device through the device fd, write through the
//! mapping, then watch a memory-disable revoke it for real:
//!
//! ```
//! use mm::{probe, AddressSpace};
//! use vfio::{MmapArgs, VfioPciDevice};
//!
//! let aspace = AddressSpace::new()?;
//! let vdev = VfioPciDevice::from_catalogue(0, "0000:00:03.0".parse()?, "edu-plus")?;
//! let fd = vdev.open();
//! let bar1 = fd.region_info(1)?;
//! let va = fd.mmap(&aspace, MmapArgs::shared(bar1.offset + 0x4000, 0x1000))?;
//! probe::write_u64(va, 0xca77_face)?;
//! fd.set_memory_enable(false)?;
//! assert!(probe::read_u64(va).unwrap_err().is_sigbus());
//! fd.set_memory_enable(true)?;
//! assert_eq!(probe::read_u64(va)?, 0xca77_face);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod config;
mod core;
mod core_h;
mod dmabuf;
mod do_mmap;
mod error;
mod feature;
mod intrs;
mod pm;
mod private;
mod rdwr;
mod reconcile;
mod remote;
pub mod uapi;
mod virqfd;

pub use crate::core::irq::{IrqData, IRQ_SET_MINSZ};
pub use crate::core::{dev_set_hot_reset, hot_reset, DeviceFd, FeatureReply, VfioPciDevice};
pub use crate::core_h::{bar_start, index_to_offset, offset_to_index, VFIO_PCI_OFFSET_MASK, VFIO_PCI_OFFSET_SHIFT};
pub use crate::dmabuf::fault::{find_pfn, PfnLookup, RangeSpan, VmaGeometry, FAULT_AROUND_BYTES};
pub use crate::dmabuf::VfioDmaBuf;
pub use crate::do_mmap::{mmap_dmabuf, MmapArgs};
pub use crate::error::{errno_from_name, errno_name, VfioError};
pub use crate::remote::{mmap_dmabuf_remote, RemoteVma};
