//! The state of this process as the server knows it: its token, its
//! connections, the PCI addresses served, and (lazily) its address space,
//! mappings and notify thread.
//!
//! A process is one *generation* of that state. The child of a `fork`
//! starts the next generation (new token, new connections, its own address
//! space) from the `pthread_atfork` child handler, and takes over the
//! mappings it inherited (`inherit`); the parent's generation is otherwise
//! left as it was (its locks may have been held by threads that do not
//! exist in the child). A child the
//! handler did not see (a raw `fork` system call, `_Fork`) is recognised
//! by its pid on the next request. Generations are slots of a fixed table,
//! so nothing is freed or reset in place; a chain of more forks than
//! [`MAX_GENERATIONS`] leaves the last children unserved (every call
//! passes through, and a one-line warning says why).
//!
//! Without `VFIO_DMABUF_SOCKET` in the environment the library is inert:
//! [`current`] is `None` and every call passes through.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use mm::{AddressSpace, PhysMemory, StatusView};
use rustix::io::Errno;
use rustix::net::SocketAddrUnix;
use rustix::process::Pid;
use wire::{Reply, Request, Role};

use crate::pool::{self, Pool};
use crate::vma::ClientMapping;

/// How many generations (fork depth) are served.
pub(crate) const MAX_GENERATIONS: usize = 64;

/// What the environment said, read once.
#[derive(Debug)]
pub(crate) struct Config {
    /// The server's listening socket.
    pub(crate) socket: SocketAddrUnix,
}

static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
static GENERATION: AtomicUsize = AtomicUsize::new(0);
static PROCESSES: [OnceLock<Process>; MAX_GENERATIONS] = [const { OnceLock::new() }; MAX_GENERATIONS];
static EXHAUSTED: AtomicBool = AtomicBool::new(false);

fn config() -> Option<&'static Config> {
    CONFIG
        .get_or_init(|| {
            let path = std::env::var_os(wire::SOCKET_ENV)?;
            match SocketAddrUnix::new(path.as_os_str()) {
                Ok(socket) => Some(Config { socket }),
                Err(e) => {
                    tracing::error!(?path, %e, "{} names no usable socket; passing every call through", wire::SOCKET_ENV);
                    None
                }
            }
        })
        .as_ref()
}

/// Whether the library is active (a server is named in the environment).
pub(crate) fn active() -> bool {
    config().is_some()
}

/// Called from the library's constructor: reads the environment and starts
/// logging (to stderr, filtered by `VFIO_DMABUF_LOG`, default `warn`).
pub(crate) fn init() {
    if config().is_some() {
        let filter = tracing_subscriber::EnvFilter::try_from_env("VFIO_DMABUF_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        // Another subscriber of this library's own copy cannot exist yet.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let _ =
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
    }
}

/// The `pthread_atfork` prepare handler (see `inherit`).
pub(crate) fn before_fork() {
    if let Some(p) = current() {
        crate::inherit::before_fork(p);
    }
}

/// The `pthread_atfork` child handler: starts the next generation. The old
/// generation's connections are the parent's (shared sockets), so the
/// child closes its copies of them; then it takes over the mappings it
/// inherited (`inherit`), touching of the old generation only its mapping
/// table (held across the fork) and its address space's VMA list.
pub(crate) fn after_fork_in_child() {
    let gen = GENERATION.fetch_add(1, Ordering::AcqRel);
    let Some(old) = PROCESSES.get(gen).and_then(OnceLock::get) else { return };
    old.pool.drain();
    if let Some(child) = current() {
        crate::inherit::inherit(old, child);
    }
}

/// This process's state, or `None` when the library is inert.
pub(crate) fn current() -> Option<&'static Process> {
    let config = config()?;
    let pid = rustix::process::getpid();
    loop {
        let gen = GENERATION.load(Ordering::Acquire);
        let Some(slot) = PROCESSES.get(gen) else {
            if !EXHAUSTED.swap(true, Ordering::Relaxed) {
                tracing::warn!("more than {MAX_GENERATIONS} nested forks: this process passes every call through");
            }
            return None;
        };
        let p = slot.get_or_init(|| Process::new(config, pid));
        if p.pid == pid {
            return Some(p);
        }
        // A child that no fork handler announced.
        if GENERATION.compare_exchange(gen, gen + 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            p.pool.drain();
        }
    }
}

/// One generation of the process's state.
#[derive(Debug)]
pub(crate) struct Process {
    /// Immutable. The process this generation belongs to.
    pid: Pid,
    /// Immutable. Names this process to the server.
    pub(crate) token: u64,
    /// Immutable.
    pub(crate) config: &'static Config,
    /// Control connections (lock-free, see `pool`).
    pub(crate) pool: Pool,
    /// The PCI addresses served (from the first `Hello` reply).
    pub(crate) bdfs: OnceLock<Vec<String>>,
    /// The address space of our mappings, made at the first mmap.
    aspace: OnceLock<Result<AddressSpace, Errno>>,
    /// Protected by itself. Our mappings by id (`MappingId` numbers of
    /// `aspace`). Lock order: `mappings` → a mapping's `allowed`.
    mappings: Mutex<HashMap<u64, Arc<ClientMapping>>>,
    /// Whether the notify thread runs (set once it is connected).
    notify_started: Mutex<bool>,
    /// The notify connection's number, so `close` can refuse to close it.
    pub(crate) notify_fd: AtomicI32,
    /// The status page the server sent on the notify connection, mapped
    /// read-only (its fd is closed at once).
    pub(crate) status: OnceLock<StatusView>,
    /// Sequence numbers of notifications applied (tests and logs).
    pub(crate) notified: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a map update that cannot stop half-way in a
    // way that matters; a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn new_token() -> u64 {
    let mut b = [0u8; 8];
    match rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()) {
        Ok(8) => u64::from_ne_bytes(b),
        // No entropy source: still distinct per process and generation.
        _ => {
            let pid = rustix::process::getpid().as_raw_nonzero().get() as u64;
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            pid << 40 ^ t as u64
        }
    }
}

impl Process {
    fn new(config: &'static Config, pid: Pid) -> Process {
        Process {
            pid,
            token: new_token(),
            config,
            pool: Pool::new(),
            bdfs: OnceLock::new(),
            aspace: OnceLock::new(),
            mappings: Mutex::new(HashMap::new()),
            notify_started: Mutex::new(false),
            notify_fd: AtomicI32::new(-1),
            status: OnceLock::new(),
            notified: AtomicU64::new(0),
        }
    }

    /// Sends `req` with `fds` attached on a pooled connection and returns
    /// the reply with the fds beside it; a [`Reply::Err`] becomes its errno.
    ///
    /// # Errors
    ///
    /// The server's errno; `EIO` when the server cannot be reached or
    /// answers something that does not decode.
    pub(crate) fn call(
        &self,
        req: &Request,
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> Result<(Reply, Vec<OwnedFd>), Errno> {
        let conn = match self.pool.take() {
            Some(c) => c,
            None => self.connect(Role::Control)?,
        };
        wire::transport::send(&conn, req, fds).map_err(pool::wire_errno)?;
        let (reply, fds) = wire::transport::recv::<Reply>(&conn).map_err(pool::wire_errno)?;
        self.pool.give(conn);
        match reply {
            Reply::Err { errno } => Err(Errno::from_raw_os_error(errno)),
            r => Ok((r, fds)),
        }
    }

    /// Like [`Process::call`] for a request answered by [`Reply::Ok`].
    pub(crate) fn call_ok(&self, req: &Request, fds: &[std::os::fd::BorrowedFd<'_>]) -> Result<(), Errno> {
        match self.call(req, fds)?.0 {
            Reply::Ok => Ok(()),
            other => Err(pool::unexpected(&other)),
        }
    }

    /// A new connection of `role`, greeted.
    pub(crate) fn connect(&self, role: Role) -> Result<OwnedFd, Errno> {
        let conn = pool::connect(&self.config.socket).map_err(|e| {
            tracing::warn!(%e, "cannot connect to the server");
            Errno::IO
        })?;
        wire::transport::send(&conn, &Request::Hello { token: self.token, role }, &[]).map_err(pool::wire_errno)?;
        match wire::transport::recv::<Reply>(&conn).map_err(pool::wire_errno)?.0 {
            Reply::Hello { bdfs, .. } => {
                let _ = self.bdfs.set(bdfs);
                Ok(conn)
            }
            Reply::Err { errno } => Err(Errno::from_raw_os_error(errno)),
            other => Err(pool::unexpected(&other)),
        }
    }

    /// The served PCI addresses (asking the server once).
    pub(crate) fn served_bdfs(&self) -> &[String] {
        if self.bdfs.get().is_none() {
            match self.connect(Role::Control) {
                Ok(c) => self.pool.give(c),
                Err(e) => tracing::warn!(%e, "cannot reach the server"),
            }
        }
        self.bdfs.get().map_or(&[], Vec::as_slice)
    }

    /// The address space of this process's mappings, made once.
    pub(crate) fn aspace(&self) -> Result<&AddressSpace, Errno> {
        let r = self.aspace.get_or_init(|| {
            AddressSpace::new().map_err(|e| {
                tracing::error!(%e, "cannot create the address space for device mappings");
                e.errno()
            })
        });
        r.as_ref().map_err(|&e| e)
    }

    /// The address space, if one was made.
    pub(crate) fn aspace_if_made(&self) -> Option<&AddressSpace> {
        self.aspace.get().and_then(|r| r.as_ref().ok())
    }

    /// Starts the notify thread if it does not run yet (before the first
    /// mmap: the server notifies a mapping as soon as it registers it).
    pub(crate) fn ensure_notify(&'static self) -> Result<(), Errno> {
        let mut started = lock(&self.notify_started);
        if !*started {
            crate::notify::start(self)?;
            *started = true;
        }
        Ok(())
    }

    /// The mapping table.
    pub(crate) fn mappings(&self) -> MutexGuard<'_, HashMap<u64, Arc<ClientMapping>>> {
        lock(&self.mappings)
    }

    /// The memories of mapping `mapping`'s plan, each holding only the
    /// frames the plan names: `fds` came with the plan, the rest are asked
    /// for ([`Request::Frames`], from the `skip`-th frame). The caller maps
    /// them and drops them: the process keeps no frame open.
    ///
    /// # Errors
    ///
    /// `EIO` when the server sends fewer frames than its plan names or a
    /// frame that does not fit; the server's errno.
    pub(crate) fn frame_memories(
        &self,
        mapping: u64,
        memories: &[wire::MemoryRef],
        mut fds: Vec<OwnedFd>,
    ) -> Result<Vec<(u64, Arc<PhysMemory>)>, Errno> {
        let total: usize = memories.iter().map(|m| m.frames.len()).sum();
        while fds.len() < total {
            let req = Request::Frames { mapping, skip: fds.len() as u64 };
            let (_, more) = self.call(&req, &[])?;
            if more.is_empty() {
                tracing::error!(mapping, "the server sent fewer frames than its plan names");
                return Err(Errno::IO);
            }
            fds.extend(more);
        }
        let mut fds = fds.into_iter();
        memories
            .iter()
            .map(|r| {
                let frames = r.frames.iter().map(|&i| Ok((i as usize, fds.next().ok_or(Errno::IO)?)));
                let frames = frames.collect::<Result<Vec<_>, Errno>>()?;
                let mem = PhysMemory::from_frames(&r.name, page::PhysAddr(r.base), r.len, r.frame_size, frames)
                    .map_err(|e| {
                        tracing::error!(memory = r.id, %e, "a memory the server sent does not fit its plan");
                        Errno::IO
                    })?;
                Ok((r.id, Arc::new(mem)))
            })
            .collect()
    }

    /// Whether `raw` is one of our own connections (which `close` of the
    /// program must not break).
    pub(crate) fn is_internal(&self, raw: i32) -> Internal {
        if self.notify_fd.load(Ordering::Acquire) == raw {
            Internal::Notify
        } else if self.pool.holds(raw) {
            Internal::Pooled
        } else {
            Internal::No
        }
    }
}

/// What [`Process::is_internal`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Internal {
    /// Not ours.
    No,
    /// An idle pooled connection.
    Pooled,
    /// The notify connection.
    Notify,
}
