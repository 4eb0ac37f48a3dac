//! The messages.
//!
//! Every request is answered by exactly one [`Reply`] on the same
//! connection, except [`Request::MmioEnd`] (none: the access is over) and
//! [`Request::Ack`] (itself the answer to a [`Notify`]). fds travel as
//! `SCM_RIGHTS` beside the packet, in the order the message says.

use serde::{Deserialize, Serialize};

/// Which side of the process a connection serves, said once in
/// [`Request::Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Requests and replies.
    Control,
    /// The one connection per process on which the server sends
    /// [`Notify`] and the process answers [`Request::Ack`].
    Notify,
}

/// The kind of an object fd, as its [`tag`](crate::tag) says and the
/// server's table confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    /// `/dev/vfio/vfio`.
    Container,
    /// `/dev/vfio/<N>`.
    Group,
    /// A device fd, from `VFIO_GROUP_GET_DEVICE_FD` or a cdev open.
    Device,
    /// `/dev/iommu`.
    Iommufd,
    /// A DMA-buffer fd from `VFIO_DEVICE_FEATURE_DMA_BUF`.
    DmaBuf,
}

impl ObjectKind {
    /// One byte for the tag.
    pub const fn code(self) -> u8 {
        match self {
            ObjectKind::Container => b'C',
            ObjectKind::Group => b'G',
            ObjectKind::Device => b'D',
            ObjectKind::Iommufd => b'I',
            ObjectKind::DmaBuf => b'B',
        }
    }

    /// The kind a tag byte names.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            b'C' => Some(ObjectKind::Container),
            b'G' => Some(ObjectKind::Group),
            b'D' => Some(ObjectKind::Device),
            b'I' => Some(ObjectKind::Iommufd),
            b'B' => Some(ObjectKind::DmaBuf),
            _ => None,
        }
    }
}

/// A request from a process to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// First message on every connection. `token` names the process (a
    /// fresh random value after `fork`), so the server can tell which
    /// connections and mappings belong together. Reply: [`Reply::Hello`].
    Hello {
        /// The process's token.
        token: u64,
        /// What the connection is for.
        role: Role,
    },
    /// `open(2)` of a path the server serves (`/dev/vfio/...`,
    /// `/dev/iommu`). `flags` are the open flags as given. Reply:
    /// [`Reply::Opened`] with the new object fd attached, or an error.
    Open {
        /// The path as the program gave it (absolute).
        path: String,
        /// `O_*` flags.
        flags: i32,
    },
    /// What a served path is, for `stat`, `readlink`, `realpath`,
    /// `opendir` and opens of sysfs files. Reply: [`Reply::Node`].
    Lookup {
        /// The path, absolute and without `.`/`..` components.
        path: String,
    },
    /// `ioctl(2)` on the attached object fd (first attached fd); further
    /// attached fds are those the argument carries, in the order
    /// [`crate::shape`] gives. Reply: [`Reply::Ioctl`].
    Ioctl {
        /// The request number.
        request: u64,
        /// The argument as the shape says to carry it.
        arg: IoctlArg,
        /// Byte offsets of fd slots ([`crate::shape::fds_in`]) whose fd is
        /// not open in the caller: not attached, and `EBADF` where the
        /// server looks them up. The others are attached in order.
        bad_fds: Vec<u32>,
    },
    /// `pread(2)` on the attached fd. Reply: [`Reply::Data`].
    Pread {
        /// File offset.
        offset: u64,
        /// Bytes wanted, at most [`crate::MAX_DATA`].
        len: u32,
    },
    /// `pwrite(2)` on the attached fd. Reply: [`Reply::Count`].
    Pwrite {
        /// File offset.
        offset: u64,
        /// The bytes, at most [`crate::MAX_DATA`].
        data: Vec<u8>,
    },
    /// `mmap(2)` of the attached fd. `mapping` is the process's own name
    /// for the new mapping; notifications about it carry it back. Reply:
    /// [`Reply::Map`], with the first [`crate::MAX_FDS`] frame memfds it
    /// announces attached (the rest: [`Request::Frames`]).
    Mmap {
        /// The process's id for this mapping.
        mapping: u64,
        /// Length as passed (not yet rounded to pages).
        len: u64,
        /// File offset as passed.
        offset: u64,
        /// `PROT_WRITE`.
        write: bool,
        /// `MAP_SHARED`.
        shared: bool,
    },
    /// The last part of mapping `mapping` is gone from the process (the
    /// VMA's file reference is dropped). Reply: [`Reply::Ok`].
    Unmapped {
        /// The process's id of the mapping.
        mapping: u64,
    },
    /// Process every hang-up of an object end, and every exit of a process
    /// whose notify connection has hung up, that is pending now, then
    /// answer: sent after `close(2)` of an object fd, so that a last close
    /// has taken effect before `close` returns, and after a `wait` that
    /// reaped a child, so that the child's mappings are gone too. Reply:
    /// [`Reply::Ok`].
    Sync,
    /// The answer to [`Notify::Mapping`] number `seq`.
    Ack {
        /// The notification's sequence number.
        seq: u64,
    },
    /// Start an emulated register access through mapping `mapping`: the
    /// server takes the locks a fault takes and checks the status. Reply:
    /// [`Reply::Ok`] (held: send reads and writes, then [`Request::MmioEnd`])
    /// or [`Reply::Err`] with `ENODEV` (revoked: the program gets SIGBUS).
    MmioBegin {
        /// The process's id of the mapping.
        mapping: u64,
    },
    /// One device read while held. Reply: [`Reply::Value`] or an error.
    MmioRead {
        /// Where, as the process's VMA sees it.
        at: MmioAt,
        /// 1, 2, 4 or 8 bytes.
        width: u8,
    },
    /// One device write while held. Reply: [`Reply::Ok`] or an error.
    MmioWrite {
        /// Where, as the process's VMA sees it.
        at: MmioAt,
        /// 1, 2, 4 or 8 bytes.
        width: u8,
        /// The value in the low `width` bytes.
        value: u64,
    },
    /// The instruction is done: release the hold. No reply.
    MmioEnd,
    /// `read(2)` on the attached fd at the file position of its open file
    /// (kept by the server, shared by every dup and process), which then
    /// advances. Reply: [`Reply::Data`].
    Read {
        /// Bytes wanted, at most [`crate::MAX_DATA`].
        len: u32,
    },
    /// `write(2)` on the attached fd at the file position of its open
    /// file, which then advances. Reply: [`Reply::Count`].
    Write {
        /// The bytes, at most [`crate::MAX_DATA`].
        data: Vec<u8>,
    },
    /// Mapping `mapping` (made with [`Request::Mmap`]) now starts at
    /// `addr` in the process: sent once the process has reserved it, and
    /// again with the new address whenever it moves (`mremap`). The server
    /// learns which addresses are BAR mappings, so DMA map calls treat them
    /// as the kernel treats `VM_PFNMAP` ranges and never read them as
    /// ordinary memory. Reply: [`Reply::Ok`], or [`Reply::Err`] with
    /// `EINVAL` for a mapping the process does not have or an address that
    /// is not page aligned.
    Mapped {
        /// The process's id of the mapping.
        mapping: u64,
        /// Its first address in the process.
        addr: u64,
    },
    /// The process is a `fork` child of process `parent` (the parent's
    /// token) and inherited its mapping `mapping` at the same addresses:
    /// the server registers a mapping of the same buffer for this process,
    /// under the same id, as `dup_mmap()` gives the child a VMA of the same
    /// file, and notifies it of the buffer's status before it replies.
    /// Reply: [`Reply::Ok`], or [`Reply::Err`] with `ESRCH` for an unknown
    /// parent, `EINVAL` for a mapping the parent does not have, `EEXIST`
    /// for an id this process uses, `EPROTO` without a notify connection.
    Inherit {
        /// The parent's token.
        parent: u64,
        /// The parent's (and now this process's) id of the mapping.
        mapping: u64,
    },
    /// The frame memfds of mapping `mapping`'s plan again, from the
    /// `skip`-th on (in the plan's order: memory by memory, frame by
    /// frame): a plan whose frames do not fit one message
    /// ([`crate::MAX_FDS`]), or a process that must map a mapping again
    /// (`mremap`) after it closed the frames. Reply: [`Reply::Count`] with
    /// the number attached (at most `MAX_FDS`), or `EINVAL` for a mapping
    /// the process does not have.
    Frames {
        /// The process's id of the mapping.
        mapping: u64,
        /// Frames already received.
        skip: u64,
    },
}

/// The address of an emulated access and the geometry of the VMA holding
/// it, which is all the server needs to translate it (as a fault does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmioAt {
    /// The accessed virtual address.
    pub addr: u64,
    /// `vm_start` of the VMA holding it.
    pub vm_start: u64,
    /// `vm_pgoff` of that VMA.
    pub vm_pgoff: u64,
}

/// How an ioctl's argument travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IoctlArg {
    /// The raw argument value (an integer argument, or none).
    Value(u64),
    /// The bytes the argument points to (`argsz`/`size` of them for the
    /// VFIO and iommufd structs). fds embedded in them are also attached.
    Bytes(Vec<u8>),
    /// A NUL-terminated string the argument points to (without the NUL).
    Str(String),
}

/// The server's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Done.
    Ok,
    /// Failed with this errno (positive). The server logs why.
    Err {
        /// The errno the call returns.
        errno: i32,
    },
    /// Answer to [`Request::Hello`].
    Hello {
        /// The server's pid (object fds' peer).
        server_pid: u32,
        /// The PCI addresses the server serves, as `DDDD:BB:DD.F`, so the
        /// process knows which sysfs paths to ask about.
        bdfs: Vec<String>,
    },
    /// Answer to [`Request::Open`]: the object fd is attached.
    Opened {
        /// Its kind.
        kind: ObjectKind,
    },
    /// Answer to [`Request::Lookup`].
    Node(Node),
    /// Answer to [`Request::Ioctl`].
    Ioctl {
        /// The return value (0 or positive; an fd number is replaced by
        /// the process with the attached fd's number when `ret_fd`).
        ret: i64,
        /// Bytes to copy back over the start of the argument.
        out: Vec<u8>,
        /// The return value is the attached fd.
        ret_fd: bool,
    },
    /// Bytes read.
    Data(Vec<u8>),
    /// Bytes written.
    Count(u64),
    /// One register value.
    Value(u64),
    /// Answer to [`Request::Mmap`].
    Map(MapPlan),
    /// Answer to [`Request::Ioctl`] for a call that fails after writing
    /// back part of its argument (`VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`'s
    /// `ENOSPC` with the needed count, `IOMMU_IOAS_IOVA_RANGES`'s
    /// `EMSGSIZE`): copy `out` over the start of the argument, then fail
    /// with `errno`.
    IoctlErr {
        /// The errno the call returns (positive).
        errno: i32,
        /// Bytes to copy back over the argument first.
        out: Vec<u8>,
    },
}

/// What a served path is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    /// Nothing there (`ENOENT`).
    Missing,
    /// A directory with these entry names.
    Dir(Vec<String>),
    /// A symbolic link to this target (as `readlink` returns it).
    Link(String),
    /// A regular (sysfs) file with this content.
    File(Vec<u8>),
    /// A character device node (`/dev/vfio/...`, `/dev/iommu`).
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

/// Everything a process needs to create a mapping of a buffer window
/// itself and serve its faults without asking the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapPlan {
    /// Page-rounded length.
    pub len: u64,
    /// `vm_pgoff` exactly as passed to mmap.
    pub vm_pgoff: u64,
    /// The `vm_pgoff` value that corresponds to buffer offset 0.
    pub vma_pgoff_adjust: u64,
    /// Mapped writable.
    pub writable: bool,
    /// Backing pieces in VA order; their lengths add up to `len`.
    pub pieces: Vec<Piece>,
    /// The buffer's ranges `(paddr, len)`, concatenated in order: what
    /// `find_pfn` walks.
    pub ranges: Vec<(u64, u64)>,
    /// The memories the pieces name, each with the frames the pieces touch
    /// (their memfds attached, memory by memory, frame by frame).
    pub memories: Vec<MemoryRef>,
    /// A register mapping: every access traps and is forwarded.
    pub traps: bool,
    /// Path column of the maps view (`/dmabuf:<name>`).
    pub path: String,
    /// The buffer's identity (inode column).
    pub inode: u64,
}

/// One physically contiguous piece of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// The memory ([`MemoryRef::id`]).
    pub memory: u64,
    /// Physical address of the first byte.
    pub paddr: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Device memory, held in frames of `frame_size` bytes, each a memfd of
/// its own: frame `i` holds physical addresses `[base + i * frame_size,
/// ...)` at those file offsets (the file is sparse before them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryRef {
    /// The server's id of the memory, stable for its life.
    pub id: u64,
    /// Its name (frame `i` shows as `/memfd:<name>.<i>`).
    pub name: String,
    /// First physical address.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// Bytes per frame (the memory's length when it is one smaller frame).
    pub frame_size: u64,
    /// The frames the plan's pieces touch, ascending; their memfds are
    /// attached to the message in this order (after those of the memories
    /// before this one). The process closes them once it has mapped them.
    pub frames: Vec<u64>,
}

/// A notification from the server on a process's notify connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notify {
    /// The process's status page: the first message on the notify
    /// connection, right after [`Reply::Hello`], with the page's sealed
    /// memfd attached. The process maps it read-only and closes the fd. No
    /// ack.
    StatusPage {
        /// Its number of slots ([`status_slot`] values).
        slots: u32,
    },
    /// Mapping `mapping` may (`allowed`) or may not map pages from now on.
    /// The process applies it under the lock its faults take, zaps every
    /// page of the mapping (so revoked pages go and poison markers are
    /// cleared), then answers [`Request::Ack`] with `seq`.
    ///
    /// The server wrote the mapping's slot of the status page before it
    /// sent this (see [`status_slot`]): a fault checks the slot as well as
    /// what the notifications said, so a revoke takes effect in the
    /// process's fault path even before it reads this message.
    Mapping {
        /// Sequence number of this notification on this connection.
        seq: u64,
        /// The process's id of the mapping.
        mapping: u64,
        /// Whether faults may map pages (the buffer's status is Ok).
        allowed: bool,
        /// The mapping's slot in the status page (the same in every
        /// notification of the mapping).
        slot: u32,
    },
}

/// The value of a status-page slot: bit 0 says whether the mapping may map
/// pages, the bits above count the server's writes of the slot, so a
/// fault that reads it before and after its insert sees any change in
/// between (even a revoke and an un-revoke).
pub mod status_slot {
    /// The mapping may map pages.
    pub const ALLOWED: u32 = 1;

    /// The value following `old` with `allowed`.
    pub const fn next(old: u32, allowed: bool) -> u32 {
        ((old >> 1).wrapping_add(1) << 1) | allowed as u32
    }

    /// Whether `value` allows mapping pages.
    pub const fn allows(value: u32) -> bool {
        value & ALLOWED != 0
    }
}
