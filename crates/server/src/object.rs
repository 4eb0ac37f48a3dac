//! The object table: every open file a process holds is one end of a
//! `SOCK_SEQPACKET` socket pair; the server keeps the other end here, keyed
//! by the inode of the process's end, with a tag packet left unread in that
//! end. A watcher thread sees the hang-up of the server's end when the last
//! reference to the process's end is closed (in any process) and runs the
//! kernel's release then.
//!
//! Analogous to the file table and `fput()`: the open file is an
//! [`OpenFile`] in an `Arc`; the table holds one reference for as long as
//! the process's end lives, a request in progress holds another (as
//! `fdget()` does), and objects hold each other as the kernel's files do
//! (a device file holds its group file, a group file its container). The
//! release of each object is its `Drop`.

use std::collections::HashMap;
use std::fmt;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;
use rustix::net::{socketpair, AddressFamily, SendFlags, SocketFlags, SocketType};
use wire::tag::Tag;
use wire::ObjectKind;

use crate::container::{ContainerFile, IommufdFile};
use crate::device::DeviceFile;
use crate::dmabuf::DmaBufFile;
use crate::group::GroupFile;

/// What an open file is.
#[derive(Debug, Clone)]
pub(crate) enum Object {
    /// `/dev/vfio/vfio`.
    Container(Arc<ContainerFile>),
    /// `/dev/vfio/<N>`.
    Group(Arc<GroupFile>),
    /// A device file (group path or cdev).
    Device(Arc<DeviceFile>),
    /// `/dev/iommu`.
    Iommufd(Arc<IommufdFile>),
    /// A DMA-buffer.
    DmaBuf(Arc<DmaBufFile>),
}

impl Object {
    pub(crate) fn kind(&self) -> ObjectKind {
        match self {
            Object::Container(_) => ObjectKind::Container,
            Object::Group(_) => ObjectKind::Group,
            Object::Device(_) => ObjectKind::Device,
            Object::Iommufd(_) => ObjectKind::Iommufd,
            Object::DmaBuf(_) => ObjectKind::DmaBuf,
        }
    }
}

/// The access mode an open file was opened with (`f_mode`'s read and write
/// bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access {
    pub(crate) read: bool,
    pub(crate) write: bool,
}

impl Access {
    /// Read and write (`O_RDWR`).
    pub(crate) const RDWR: Access = Access { read: true, write: true };

    /// From `O_*` open flags.
    pub(crate) fn from_open_flags(flags: i32) -> Access {
        match flags & libc::O_ACCMODE {
            libc::O_RDONLY => Access { read: true, write: false },
            libc::O_WRONLY => Access { read: false, write: true },
            _ => Access::RDWR,
        }
    }
}

/// One open file of a process (the kernel's `struct file`).
#[derive(Debug)]
pub(crate) struct OpenFile {
    /// Immutable. The server's id, in the tag.
    pub(crate) id: u64,
    /// Immutable.
    pub(crate) object: Object,
    /// Immutable.
    pub(crate) access: Access,
    /// The file position (`f_pos`) of `read(2)` and `write(2)`; held
    /// across one of them, as the kernel's `f_pos_lock`.
    pub(crate) pos: Mutex<u64>,
}

impl OpenFile {
    pub(crate) fn kind(&self) -> ObjectKind {
        self.object.kind()
    }
}

/// One entry: the server's end of the pair, and the open file.
struct Entry {
    /// Kept open for its hang-up; closing it takes it out of the epoll set.
    _server_end: OwnedFd,
    /// The inode of the process's end.
    ino: u64,
    file: Arc<OpenFile>,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<u64, Entry>,
    by_ino: HashMap<u64, u64>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.by_id.remove(&id)?;
        if self.by_ino.get(&entry.ino) == Some(&id) {
            self.by_ino.remove(&entry.ino);
        }
        Some(entry)
    }
}

/// The epoll data of the watcher's stop eventfd; object ids start at 1.
const STOP: u64 = 0;

/// Every open file of every process.
pub(crate) struct ObjectTable {
    /// Protected by: itself, a leaf (entries are dropped after it is
    /// released).
    table: Mutex<Table>,
    /// Immutable. Watches every server end for hang-up.
    epoll: OwnedFd,
    /// Immutable. Wakes the watcher to stop.
    stop: OwnedFd,
    /// Serialises hang-up processing: held while releases run, so a
    /// [`ObjectTable::reap_now`] returns only once every hang-up pending
    /// at its call is fully handled.
    reap: Mutex<()>,
    next_id: AtomicU64,
}

impl fmt::Debug for ObjectTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectTable").field("open", &self.lock().by_id.len()).finish()
    }
}

impl ObjectTable {
    pub(crate) fn new() -> Result<Self, Errno> {
        let epoll = epoll::create(CreateFlags::CLOEXEC)?;
        let stop = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(&epoll, &stop, EventData::new_u64(STOP), EventFlags::IN)?;
        Ok(Self {
            table: Mutex::new(Table::default()),
            epoll,
            stop,
            reap: Mutex::new(()),
            next_id: AtomicU64::new(STOP + 1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `anon_inode_getfile()` + `fd_install()`: a new open file of
    /// `object`, returned as the process's end of its socket pair, with
    /// the tag left in it. The server's end is watched for the hang-up
    /// that means the last close.
    ///
    /// # Errors
    ///
    /// The errno of `socketpair` (`EMFILE`, `ENFILE`) or of the calls after
    /// it; nothing is left behind then (the object is dropped).
    pub(crate) fn install(&self, object: Object, access: Access) -> Result<OwnedFd, Errno> {
        let (server_end, program_end) =
            socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let kind = object.kind();
        rustix::net::send(&server_end, &Tag { kind, id }.encode(), SendFlags::empty())?;
        let ino = rustix::fs::fstat(&program_end)?.st_ino;
        // Only the hang-up is watched: what the process's end might send is
        // never read.
        epoll::add(&self.epoll, &server_end, EventData::new_u64(id), EventFlags::RDHUP)?;
        let file = Arc::new(OpenFile { id, object, access, pos: Mutex::new(0) });
        let stale = {
            let mut table = self.lock();
            // A socket inode number is only reused once the socket is
            // gone: an entry still holding it is a hang-up not yet seen.
            let stale = table.by_ino.insert(ino, id).and_then(|old| table.remove(old));
            table.by_id.insert(id, Entry { _server_end: server_end, ino, file });
            stale
        };
        drop(stale);
        tracing::debug!(?kind, id, ino, "open file installed");
        Ok(program_end)
    }

    /// `fdget()`: the open file behind an fd a process attached to a
    /// request, or `None` for an fd that is not one of ours.
    pub(crate) fn lookup(&self, fd: &OwnedFd) -> Option<Arc<OpenFile>> {
        let stat = rustix::fs::fstat(fd).ok()?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Socket {
            return None;
        }
        let file = {
            let table = self.lock();
            let id = table.by_ino.get(&stat.st_ino)?;
            Arc::clone(&table.by_id.get(id)?.file)
        };
        // The inode alone could be a reused number of a foreign socket
        // whose predecessor's hang-up is not handled yet: the tag decides.
        (wire::tag::peek(fd.as_fd()) == Some(Tag { kind: file.kind(), id: file.id })).then_some(file)
    }

    /// Handles every hang-up pending now: each open file whose process end
    /// is closed everywhere leaves the table and is released (its last
    /// reference, unless a request in progress or another object holds
    /// it). Returns once all of them are done.
    pub(crate) fn reap_now(&self) {
        let _reap = self.reap.lock().unwrap_or_else(|e| e.into_inner());
        let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        loop {
            let mut buf = [MaybeUninit::<Event>::uninit(); 32];
            let ids: Vec<u64> = match epoll::wait(&self.epoll, &mut buf, Some(&zero)) {
                Ok((events, _)) => events.iter().map(|e| e.data.u64()).filter(|id| *id != STOP).collect(),
                Err(Errno::INTR) => continue,
                Err(e) => {
                    tracing::error!(%e, "epoll_wait on the object table failed");
                    return;
                }
            };
            if ids.is_empty() {
                return;
            }
            let gone: Vec<Entry> = {
                let mut table = self.lock();
                ids.iter().filter_map(|id| table.remove(*id)).collect()
            };
            for entry in gone {
                tracing::debug!(kind = ?entry.file.kind(), id = entry.file.id, "last close");
                // Closing the server end takes it out of the epoll set;
                // dropping the file runs the release if nothing else holds it.
                drop(entry);
            }
        }
    }

    /// The watcher thread: waits for hang-ups and handles them, until
    /// [`ObjectTable::stop_watching`].
    pub(crate) fn watch(&self) {
        loop {
            let mut buf = [MaybeUninit::<Event>::uninit(); 8];
            match epoll::wait(&self.epoll, &mut buf, None) {
                Ok((events, _)) => {
                    if events.iter().any(|e| e.data.u64() == STOP) {
                        return;
                    }
                }
                Err(Errno::INTR) => continue,
                Err(e) => {
                    tracing::error!(%e, "the hang-up watcher stops: epoll_wait failed");
                    return;
                }
            }
            self.reap_now();
        }
    }

    /// Stops the watcher thread.
    pub(crate) fn stop_watching(&self) {
        let _ = rustix::io::write(&self.stop, &1u64.to_ne_bytes());
    }

    /// Releases every open file (the server stops: every process's end is
    /// as good as closed).
    pub(crate) fn release_all(&self) {
        let _reap = self.reap.lock().unwrap_or_else(|e| e.into_inner());
        let all: Vec<Entry> = {
            let mut table = self.lock();
            table.by_ino.clear();
            table.by_id.drain().map(|(_, e)| e).collect()
        };
        drop(all);
    }
}
