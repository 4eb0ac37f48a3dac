//! The server: its devices and groups, the listening socket, the threads
//! (one accept loop, one hang-up watcher, one thread per connection), and
//! shutdown.

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rustix::io::Errno;
use rustix::net::{AddressFamily, Shutdown, SocketAddrUnix, SocketFlags, SocketType};
use vfio::VfioPciDevice;

use crate::device::CdevBinding;
use crate::group::Group;
use crate::object::ObjectTable;
use crate::process::Registry;

/// One device the server offers, with where it sits in the VFIO world.
#[derive(Debug, Clone)]
pub struct ServedDevice {
    /// The emulated device (not opened: the server opens it when a process
    /// opens it).
    pub vdev: Arc<VfioPciDevice>,
    /// Its IOMMU group number (`/dev/vfio/<group>`); devices may share one.
    pub group: u32,
    /// Its cdev number (`/dev/vfio/devices/vfio<cdev_index>`).
    pub cdev_index: u32,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Two devices at one PCI address, or with one cdev number.
    #[error("{0}")]
    Devices(String),
    /// The socket could not be made.
    #[error("cannot listen on {path}")]
    Listen {
        /// The socket's path.
        path: PathBuf,
        /// The errno of the failing call (`EADDRINUSE` when a live server
        /// answers there).
        #[source]
        errno: Errno,
    },
    /// [`Server::serve`] or [`Server::spawn`] before [`Server::bind`].
    #[error("the server is not bound to a socket")]
    NotBound,
    /// A thread could not be started.
    #[error("cannot start a thread")]
    Thread(#[source] std::io::Error),
}

/// A device as the server keeps it.
#[derive(Debug)]
pub(crate) struct Served {
    /// Immutable.
    pub(crate) vdev: Arc<VfioPciDevice>,
    /// Immutable.
    pub(crate) group: u32,
    /// Immutable.
    pub(crate) cdev_index: u32,
    /// Protected by: itself, a leaf. The cdev file bound to an iommufd
    /// (`VFIO_DEVICE_BIND_IOMMUFD`), for hot-reset ownership.
    pub(crate) binding: Mutex<Option<CdevBinding>>,
    /// The IOMMU views its usable files reach; the newest is the device's
    /// DMA port.
    pub(crate) dma: crate::device::DmaUsers,
}

/// What every thread of the server shares.
pub(crate) struct Shared {
    /// Immutable. The devices, in the order given.
    pub(crate) devices: Vec<Arc<Served>>,
    /// Immutable. The groups by number.
    pub(crate) groups: BTreeMap<u32, Arc<Group>>,
    /// The object fds of every process.
    pub(crate) objects: ObjectTable,
    /// The processes by token.
    pub(crate) registry: Registry,
    /// Protected by: itself, a leaf. (kind, request) pairs already logged
    /// as unknown.
    pub(crate) unknown_logged: Mutex<std::collections::HashSet<(wire::ObjectKind, u64)>>,
    /// Set by shutdown: connection threads stop at their next request.
    pub(crate) stopping: AtomicBool,
    /// Protected by: itself, a leaf. Every live connection, so shutdown can
    /// wake its thread.
    pub(crate) connections: Mutex<Vec<Arc<OwnedFd>>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("devices", &self.devices).finish_non_exhaustive()
    }
}

impl Shared {
    /// The PCI addresses served, as `DDDD:BB:DD.F`.
    pub(crate) fn bdfs(&self) -> Vec<String> {
        self.devices.iter().map(|d| d.vdev.bdf().to_string()).collect()
    }
}

/// A server over a set of devices.
///
/// # Examples
///
/// ```no_run
/// use server::{ServedDevice, Server};
/// let vdev = vfio::VfioPciDevice::from_catalogue(0, "0000:00:03.0".parse()?, "edu-plus")?;
/// let mut server = Server::new(vec![ServedDevice { vdev, group: 0, cdev_index: 0 }])?;
/// server.bind("/tmp/vfio-dmabuf.sock")?;
/// let handle = server.spawn()?;
/// // ... processes connect with VFIO_DMABUF_SOCKET=/tmp/vfio-dmabuf.sock ...
/// handle.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    listener: Option<(OwnedFd, PathBuf)>,
}

impl Server {
    /// A server offering `devices`.
    ///
    /// # Errors
    ///
    /// [`ServerError::Devices`] when two devices share a PCI address or a
    /// cdev number.
    pub fn new(devices: Vec<ServedDevice>) -> Result<Self, ServerError> {
        let mut bdfs = std::collections::HashSet::new();
        let mut cdevs = std::collections::HashSet::new();
        for d in &devices {
            if !bdfs.insert(d.vdev.bdf()) {
                return Err(ServerError::Devices(format!("two devices at {}", d.vdev.bdf())));
            }
            if !cdevs.insert(d.cdev_index) {
                return Err(ServerError::Devices(format!("two devices with cdev vfio{}", d.cdev_index)));
            }
        }
        let devices: Vec<Arc<Served>> = devices
            .into_iter()
            .map(|d| {
                Arc::new(Served {
                    vdev: d.vdev,
                    group: d.group,
                    cdev_index: d.cdev_index,
                    binding: Mutex::new(None),
                    dma: Default::default(),
                })
            })
            .collect();
        let mut members: BTreeMap<u32, Vec<Arc<Served>>> = BTreeMap::new();
        for d in &devices {
            members.entry(d.group).or_default().push(Arc::clone(d));
        }
        let groups = members.into_iter().map(|(n, devs)| (n, Arc::new(Group::new(n, devs)))).collect();
        let shared = Arc::new(Shared {
            devices,
            groups,
            objects: ObjectTable::new().map_err(|e| ServerError::Listen { path: PathBuf::new(), errno: e })?,
            registry: Registry::default(),
            unknown_logged: Mutex::new(std::collections::HashSet::new()),
            stopping: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
        });
        Ok(Self { shared, listener: None })
    }

    /// How long a revoke waits for each process that maps the buffer to
    /// acknowledge it ([`DEFAULT_ACK_TIMEOUT`](crate::DEFAULT_ACK_TIMEOUT)
    /// unless set) before it cuts the process off from the buffer's frames
    /// and goes on. Set it before [`Server::spawn`]; zero cuts off every
    /// process that has not answered at once.
    pub fn set_ack_timeout(&mut self, timeout: std::time::Duration) {
        self.shared.registry.backstop.set_ack_timeout(timeout);
    }

    /// Creates the listening socket at `path` (`SOCK_SEQPACKET`). A socket
    /// file left there by a server that is gone is replaced.
    ///
    /// # Errors
    ///
    /// [`ServerError::Listen`]: `EADDRINUSE` when a live server answers at
    /// `path` or something else is there; the errno of socket, bind or
    /// listen otherwise.
    pub fn bind(&mut self, path: impl AsRef<Path>) -> Result<(), ServerError> {
        let path = path.as_ref().to_owned();
        let fail = |errno| ServerError::Listen { path: path.clone(), errno };
        let addr = SocketAddrUnix::new(&path).map_err(fail)?;
        let sock = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
            .map_err(fail)?;
        match rustix::net::bind(&sock, &addr) {
            Ok(()) => {}
            Err(Errno::ADDRINUSE) if stale_socket(&path, &addr) => {
                tracing::info!(path = %path.display(), "replacing the socket of a server that is gone");
                std::fs::remove_file(&path).map_err(|_| fail(Errno::ADDRINUSE))?;
                rustix::net::bind(&sock, &addr).map_err(fail)?;
            }
            Err(e) => return Err(fail(e)),
        }
        rustix::net::listen(&sock, 64).map_err(fail)?;
        self.listener = Some((sock, path));
        Ok(())
    }

    /// Serves in the calling thread until the process ends (or the socket
    /// fails).
    ///
    /// # Errors
    ///
    /// [`ServerError::NotBound`]; [`ServerError::Thread`].
    pub fn serve(self) -> Result<(), ServerError> {
        self.spawn()?.wait();
        Ok(())
    }

    /// Serves from threads of its own; the handle stops them.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotBound`]; [`ServerError::Thread`].
    pub fn spawn(self) -> Result<ServerHandle, ServerError> {
        let (listener, path) = self.listener.ok_or(ServerError::NotBound)?;
        let listener = Arc::new(listener);
        let watcher = {
            let shared = Arc::clone(&self.shared);
            std::thread::Builder::new()
                .name("vfio-dmabuf-hangup".into())
                .spawn(move || shared.objects.watch())
                .map_err(ServerError::Thread)?
        };
        let accept = {
            let shared = Arc::clone(&self.shared);
            let listener = Arc::clone(&listener);
            std::thread::Builder::new()
                .name("vfio-dmabuf-accept".into())
                .spawn(move || accept_loop(&shared, &listener))
                .map_err(ServerError::Thread)?
        };
        tracing::info!(socket = %path.display(), devices = ?self.shared.bdfs(), "serving");
        Ok(ServerHandle { shared: self.shared, listener, path, accept: Some(accept), watcher: Some(watcher) })
    }
}

/// Whether the socket file at `path` belongs to no live server.
fn stale_socket(path: &Path, addr: &SocketAddrUnix) -> bool {
    let is_socket =
        std::fs::symlink_metadata(path).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
    let Ok(probe) = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
    else {
        return false;
    };
    is_socket && rustix::net::connect(&probe, addr) == Err(Errno::CONNREFUSED)
}

/// Accepts connections until shutdown, one thread each.
fn accept_loop(shared: &Arc<Shared>, listener: &OwnedFd) -> Vec<JoinHandle<()>> {
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let conn = match rustix::net::accept_with(listener, SocketFlags::CLOEXEC) {
            Ok(c) => c,
            Err(Errno::INTR) | Err(Errno::CONNABORTED) => continue,
            Err(e) => {
                if !shared.stopping.load(Ordering::Relaxed) {
                    tracing::error!(%e, "accept failed; no more connections are served");
                }
                break;
            }
        };
        if shared.stopping.load(Ordering::Relaxed) {
            break;
        }
        threads.retain(|t| !t.is_finished());
        let conn = Arc::new(conn);
        shared.connections.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::clone(&conn));
        let thread_shared = Arc::clone(shared);
        match std::thread::Builder::new()
            .name("vfio-dmabuf-conn".into())
            .spawn(move || crate::conn::serve_connection(&thread_shared, conn))
        {
            Ok(t) => threads.push(t),
            Err(e) => tracing::error!(%e, "cannot start a connection thread; the connection is dropped"),
        }
    }
    threads
}

/// A running server: [`ServerHandle::shutdown`] stops it.
#[derive(Debug)]
pub struct ServerHandle {
    shared: Arc<Shared>,
    listener: Arc<OwnedFd>,
    path: PathBuf,
    accept: Option<JoinHandle<Vec<JoinHandle<()>>>>,
    watcher: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The listening socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// A new open file of buffer `buf`, which the serving process holds
    /// in-process, for passing to a process this server serves (over
    /// `SCM_RIGHTS`): there it is a buffer fd like one its own export
    /// returned, on the same buffer.
    ///
    /// # Errors
    ///
    /// `EMFILE`/`ENFILE` when no handle or socket pair can be made.
    pub fn dmabuf_file(&self, buf: &dmabuf::DmaBufFd) -> Result<OwnedFd, Errno> {
        crate::local::dmabuf_file(&self.shared, buf)
    }

    /// A new open file of device fd `fd`, which the serving process holds
    /// in-process, for passing to a process this server serves: there it
    /// is a usable device fd of the same open device.
    ///
    /// # Errors
    ///
    /// `ENODEV` when `fd`'s device is not one this server serves;
    /// `EMFILE`/`ENFILE` when no socket pair can be made.
    pub fn device_file(&self, fd: &vfio::DeviceFd) -> Result<OwnedFd, Errno> {
        crate::local::device_file(&self.shared, fd)
    }

    /// How many times a process was cut off because it did not acknowledge
    /// a revoke within the bound (each is also logged as a warning).
    pub fn cut_offs(&self) -> u64 {
        self.shared.registry.backstop.cut_offs()
    }

    /// Blocks until the server stops on its own (the listening socket
    /// failed).
    fn wait(mut self) {
        if let Some(accept) = self.accept.take() {
            for t in accept.join().unwrap_or_default() {
                let _ = t.join();
            }
        }
        self.stop();
    }

    /// Stops accepting, ends every connection (processes see their server
    /// gone), releases every object as its last close would, and removes
    /// the socket file.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        // A listening socket shut down wakes its accept with EINVAL.
        let _ = rustix::net::shutdown(self.listener.as_fd(), Shutdown::Both);
        let threads = self.accept.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default();
        let live: Vec<Arc<OwnedFd>> =
            std::mem::take(&mut *self.shared.connections.lock().unwrap_or_else(|e| e.into_inner()));
        for conn in &live {
            let _ = rustix::net::shutdown(conn.as_fd(), Shutdown::Both);
        }
        drop(live);
        for t in threads {
            let _ = t.join();
        }
        self.shared.objects.stop_watching();
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        // Every process is gone now: release what they held.
        self.shared.registry.clear();
        self.shared.objects.release_all();
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %e, "cannot remove the socket file");
        }
        let cut_offs = self.shared.registry.backstop.cut_offs();
        if cut_offs > 0 {
            tracing::warn!(cut_offs, "processes were cut off for not acknowledging a revoke in time");
        }
        tracing::info!(socket = %self.path.display(), cut_offs, "stopped");
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.stop();
        }
    }
}
