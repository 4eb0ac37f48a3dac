//! The modelled objects: one device, its buffers, one address space, and
//! the books the checker reads.
//!
//! Locks that the real protocol takes are shuttle locks, so every
//! acquisition is a point where shuttle may switch threads. Plain words that
//! the real code reads without a lock (a buffer's status, its `vdev`) are std
//! atomics, which shuttle does not interleave: the model relies on the locks
//! around their writes, as the real code does. The books sit in a std mutex
//! that is never held across a shuttle operation, so an update and its check
//! happen in one step.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering as StdOrdering};

use shuttle::sync::atomic::AtomicUsize;
use shuttle::sync::{Condvar, Mutex, RwLock};

use crate::check::{check_state, Books, Status, Violation};
use crate::Bug;

/// What `memory_lock` protects.
#[derive(Debug)]
pub(crate) struct MemoryState {
    /// `COMMAND.MEMORY` set and the function in D0..D2
    /// (`__vfio_pci_memory_enabled`).
    pub(crate) enabled: bool,
    /// `vdev->dmabufs`: indices of listed buffers.
    pub(crate) dmabufs: Vec<usize>,
}

/// The device (`vfio_pci_core_device`).
#[derive(Debug)]
pub(crate) struct Device {
    /// `memory_lock`. Write: memory enable/disable, reset, every status
    /// change, list changes. Read: fault step 5.
    pub(crate) memory_lock: RwLock<MemoryState>,
    /// Protected by: itself, a leaf lock. Registration count (the buffers'
    /// and the faults' pins); unregistering waits for it to reach zero.
    pub(crate) registrations: Mutex<usize>,
    /// Paired with `registrations`: signalled when it reaches zero.
    pub(crate) unregistered: Condvar,
    /// References to the open device file (the fd and every ioctl in
    /// flight); the last put runs `close_device`.
    pub(crate) file_refs: AtomicUsize,
}

/// What a buffer's `resv` protects besides the status writes.
#[derive(Debug, Default)]
pub(crate) struct ResvState {
    /// Live importer mappings (the exporter's `kref` less its base count).
    pub(crate) importer_mappings: usize,
    /// The importers' attachments, by index.
    pub(crate) attachments: Vec<AttachmentState>,
}

/// One importer attachment as the buffer sees it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AttachmentState {
    /// `invalidate_mappings` was called since the importer last mapped.
    pub(crate) invalidated: bool,
    /// The importer has a mapping through this attachment.
    pub(crate) mapped: bool,
    /// The importer unmaps from inside its invalidate callback (as iommufd
    /// does) rather than later from its own thread.
    pub(crate) unmaps_in_callback: bool,
}

/// One buffer (`vfio_pci_dma_buf` with its `dma_buf`).
#[derive(Debug)]
pub(crate) struct Buffer {
    /// `dmabuf->resv`.
    pub(crate) resv: Mutex<ResvState>,
    /// Paired with `resv`: signalled when `importer_mappings` reaches zero
    /// (the exporter's completion).
    pub(crate) unmapped: Condvar,
    /// Written under `memory_lock` (write) and `resv`; read under either.
    status: AtomicU8,
    /// `priv->vdev != NULL`. Cleared by cleanup (under `memory_lock` write
    /// and `resv`) or by release (under `memory_lock` write).
    vdev: AtomicBool,
    /// The file's reference count; `get_file_active` fails once it is zero,
    /// and the put that takes it to zero runs release.
    pub(crate) refs: AtomicUsize,
}

impl Buffer {
    pub(crate) fn status(&self) -> Status {
        match self.status.load(StdOrdering::SeqCst) {
            0 => Status::Ok,
            1 => Status::TempRevoked,
            _ => Status::PermRevoked,
        }
    }

    pub(crate) fn vdev_set(&self) -> bool {
        self.vdev.load(StdOrdering::SeqCst)
    }
}

/// The address space the buffers are mapped in.
#[derive(Debug)]
pub(crate) struct AddressSpace {
    /// `mmap_lock`: read across one fault, end to end.
    pub(crate) mmap_lock: RwLock<()>,
    /// The VMA table lock: a fault's lookup, and every zap.
    pub(crate) vmas: Mutex<()>,
}

/// The notify connection to the second process, as the server sees it.
#[derive(Debug, Default)]
pub(crate) struct NotifyState {
    /// Revoke notifications sent.
    pub(crate) sent: u32,
    /// Notifications the process acknowledged (after zapping its entries).
    pub(crate) acked: u32,
}

/// The second process: it maps one buffer's page 0 through frames of its
/// own mapping, answers revoke notifications (or never does), and is cut
/// off when it does not answer within the bound.
#[derive(Debug)]
pub(crate) struct Process {
    /// The buffer it maps.
    pub(crate) buf: usize,
    /// Protected by: itself, a leaf.
    pub(crate) notify: Mutex<NotifyState>,
    /// The process's page-table lock: its fault's insert and re-check and
    /// its notify thread's zap take it (a leaf; the kernel's truncation
    /// takes the page-table locks too, modelled inside the frame lock).
    pub(crate) ptl: Mutex<()>,
}

/// One execution's world.
#[derive(Debug)]
pub(crate) struct World {
    /// The switch in force.
    pub(crate) bug: Bug,
    pub(crate) dev: Device,
    pub(crate) bufs: Vec<Buffer>,
    pub(crate) aspace: AddressSpace,
    /// The second process, if the scenario has one.
    pub(crate) process: Option<Process>,
    /// The frame's lock (`mm` frame state): cut-off and restore, taken
    /// under `memory_lock` (write) only; a leaf.
    pub(crate) frame: Mutex<()>,
    /// Protected by: itself, never held across a shuttle operation.
    books: std::sync::Mutex<Books>,
}

impl World {
    /// `nr_bufs` buffers exported from an open, enabled device, each with
    /// one reference (its mapping) and importer attachments as given.
    pub(crate) fn new(bug: Bug, nr_bufs: usize, attachments: &[(usize, bool)], file_refs: usize) -> Self {
        let bufs = (0..nr_bufs)
            .map(|i| {
                let attachments = attachments
                    .iter()
                    .filter(|(b, _)| *b == i)
                    .map(|&(_, unmaps_in_callback)| AttachmentState { unmaps_in_callback, ..Default::default() })
                    .collect();
                Buffer {
                    resv: Mutex::new(ResvState { importer_mappings: 0, attachments }),
                    unmapped: Condvar::new(),
                    status: AtomicU8::new(0),
                    vdev: AtomicBool::new(true),
                    refs: AtomicUsize::new(1),
                }
            })
            .collect();
        Self {
            bug,
            dev: Device {
                memory_lock: RwLock::new(MemoryState { enabled: true, dmabufs: (0..nr_bufs).collect() }),
                registrations: Mutex::new(nr_bufs),
                unregistered: Condvar::new(),
                file_refs: AtomicUsize::new(file_refs),
            },
            bufs,
            aspace: AddressSpace { mmap_lock: RwLock::new(()), vmas: Mutex::new(()) },
            process: None,
            frame: Mutex::new(()),
            books: std::sync::Mutex::new(Books::new(nr_bufs)),
        }
    }

    /// Gives the world a second process mapping `buf`.
    pub(crate) fn with_process(mut self, buf: usize) -> Self {
        self.process = Some(Process { buf, notify: Mutex::new(NotifyState::default()), ptl: Mutex::new(()) });
        self
    }

    /// Records one modelled step: `step` updates the books and may report an
    /// event violation; then every state invariant is checked. A violation
    /// panics (after the books are unlocked), which fails the execution and
    /// makes shuttle report its schedule.
    ///
    /// While the thread is already unwinding from a violation, the state is
    /// not checked again: a second panic there would abort the process.
    pub(crate) fn record<R>(&self, step: impl FnOnce(&mut Books) -> Result<R, Violation>) -> R {
        let outcome = {
            let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
            let unwinding = std::thread::panicking();
            step(&mut books).and_then(|r| if unwinding { Ok(r) } else { check_state(&books).map(|()| r) })
        };
        match outcome {
            Ok(r) => r,
            Err(v) => panic!("{v}"),
        }
    }

    /// Publishes a buffer's status (the real code's store under `resv`) and
    /// records it in the same step.
    pub(crate) fn store_status(&self, buf: usize, status: Status, books: &mut Books) {
        let v = match status {
            Status::Ok => 0,
            Status::TempRevoked => 1,
            Status::PermRevoked => 2,
        };
        self.bufs[buf].status.store(v, StdOrdering::SeqCst);
        let b = &mut books.bufs[buf];
        b.status = status;
        b.perm_seen |= status == Status::PermRevoked;
    }

    /// Clears a buffer's `vdev` and records it in the same step.
    pub(crate) fn clear_vdev(&self, buf: usize, books: &mut Books) {
        self.bufs[buf].vdev.store(false, StdOrdering::SeqCst);
        books.bufs[buf].vdev_set = false;
    }

    /// A copy of the books (for the final check).
    pub(crate) fn books(&self) -> Books {
        self.books.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
