//! A test client that speaks the wire protocol directly (no preload
//! library): a server per test, control connections, a notify connection
//! that acknowledges, and helpers for the VFIO structs.

// Each test binary uses its own part of these.
#![allow(dead_code)]

pub mod edu;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use server::{ServedDevice, Server, ServerHandle};
use wire::msg::IoctlArg;
use wire::{Notify, ObjectKind, Reply, Request, Role};

pub const EINVAL: i32 = libc::EINVAL;
/// Generous bound on waits that only a broken server would exceed.
pub const WATCHDOG: Duration = Duration::from_secs(30);

/// Device-fd offset of region `index`.
pub const fn region(index: u64) -> u64 {
    index << 40
}

pub const CONFIG: u64 = region(7);

pub const fn io(nr: u64) -> u64 {
    0x3b00 | nr
}

pub const GET_API_VERSION: u64 = io(100);
pub const SET_IOMMU: u64 = io(102);
pub const GROUP_GET_STATUS: u64 = io(103);
pub const GROUP_SET_CONTAINER: u64 = io(104);
pub const GROUP_UNSET_CONTAINER: u64 = io(105);
pub const GROUP_GET_DEVICE_FD: u64 = io(106);
pub const DEVICE_GET_INFO: u64 = io(107);
pub const DEVICE_GET_REGION_INFO: u64 = io(108);
pub const DEVICE_GET_IRQ_INFO: u64 = io(109);
pub const DEVICE_SET_IRQS: u64 = io(110);
pub const DEVICE_RESET: u64 = io(111);
pub const DEVICE_GET_PCI_HOT_RESET_INFO: u64 = io(112);
pub const DEVICE_PCI_HOT_RESET: u64 = io(113);
pub const DEVICE_FEATURE: u64 = io(117);
pub const DEVICE_BIND_IOMMUFD: u64 = io(118);
pub const DEVICE_ATTACH_IOMMUFD_PT: u64 = io(119);
pub const DEVICE_DETACH_IOMMUFD_PT: u64 = io(120);

pub const FEATURE_GET: u32 = 1 << 16;
pub const FEATURE_SET: u32 = 1 << 17;
pub const FEATURE_PROBE: u32 = 1 << 18;
pub const FEATURE_DMA_BUF: u32 = 11;
pub const FEATURE_DMA_BUF_REVOKE: u32 = 13;

/// Little structs as bytes.
pub fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

pub fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
}

pub fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

static NEXT: AtomicU32 = AtomicU32::new(0);
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// A fresh process token.
pub fn token() -> u64 {
    NEXT_TOKEN.fetch_add(1, Ordering::Relaxed) | (u64::from(std::process::id()) << 32)
}

/// One server on a socket of its own, stopped when dropped.
pub struct TestServer {
    pub path: PathBuf,
    pub devices: Vec<ServedDevice>,
    handle: Option<ServerHandle>,
}

impl TestServer {
    /// `names[i]` from the catalogue at `0000:00:0(3+i).0`, cdev `vfio<i>`,
    /// group `groups[i]`.
    pub fn start(names: &[&str], groups: &[u32]) -> TestServer {
        TestServer::start_with(names, groups, None)
    }

    /// As [`TestServer::start`], with the revoke's ack wait set.
    pub fn start_with(names: &[&str], groups: &[u32], ack_timeout: Option<std::time::Duration>) -> TestServer {
        let devices: Vec<ServedDevice> = names
            .iter()
            .zip(groups)
            .enumerate()
            .map(|(i, (name, group))| {
                let bdf = format!("0000:00:{:02x}.0", 3 + i).parse().unwrap();
                let vdev = vfio::VfioPciDevice::from_catalogue(i as u32, bdf, name).unwrap();
                ServedDevice { vdev, group: *group, cdev_index: i as u32 }
            })
            .collect();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vfio-dmabuf-srv-{}-{n}.sock", std::process::id()));
        let mut server = Server::new(devices.clone()).unwrap();
        if let Some(t) = ack_timeout {
            server.set_ack_timeout(t);
        }
        server.bind(&path).unwrap();
        let handle = server.spawn().unwrap();
        TestServer { path, devices, handle: Some(handle) }
    }

    /// One edu-plus in group 0.
    pub fn edu_plus() -> TestServer {
        TestServer::start(&["edu-plus"], &[0])
    }

    /// Processes cut off so far.
    pub fn cut_offs(&self) -> u64 {
        self.handle.as_ref().map_or(0, ServerHandle::cut_offs)
    }

    pub fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

/// A connection of a test "process".
pub struct Client {
    pub conn: OwnedFd,
    pub token: u64,
}

/// What a call failed with: an errno, with bytes copied back for
/// `IoctlErr`.
pub type CallErr = (i32, Vec<u8>);

impl Client {
    pub fn connect(server: &TestServer, token: u64, role: Role) -> Client {
        let conn =
            rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap();
        rustix::net::connect(&conn, &SocketAddrUnix::new(&server.path).unwrap()).unwrap();
        wire::transport::send(&conn, &Request::Hello { token, role }, &[]).unwrap();
        let (reply, _): (Reply, _) = wire::transport::recv(&conn).unwrap();
        assert!(matches!(reply, Reply::Hello { .. }), "{reply:?}");
        Client { conn, token }
    }

    /// A control connection of a new process.
    pub fn new(server: &TestServer) -> Client {
        Client::connect(server, token(), Role::Control)
    }

    pub fn call(&self, req: &Request, fds: &[BorrowedFd<'_>]) -> (Reply, Vec<OwnedFd>) {
        wire::transport::send(&self.conn, req, fds).unwrap();
        wire::transport::recv(&self.conn).unwrap()
    }

    pub fn open(&self, path: &str) -> Result<OwnedFd, i32> {
        match self.call(&Request::Open { path: path.into(), flags: libc::O_RDWR }, &[]) {
            (Reply::Opened { .. }, mut fds) => Ok(fds.remove(0)),
            (Reply::Err { errno }, _) => Err(errno),
            (other, _) => panic!("open {path}: {other:?}"),
        }
    }

    pub fn open_flags(&self, path: &str, flags: i32) -> Result<OwnedFd, i32> {
        match self.call(&Request::Open { path: path.into(), flags }, &[]) {
            (Reply::Opened { .. }, mut fds) => Ok(fds.remove(0)),
            (Reply::Err { errno }, _) => Err(errno),
            (other, _) => panic!("open {path}: {other:?}"),
        }
    }

    pub fn lookup(&self, path: &str) -> wire::Node {
        match self.call(&Request::Lookup { path: path.into() }, &[]) {
            (Reply::Node(n), _) => n,
            (other, _) => panic!("lookup {path}: {other:?}"),
        }
    }

    /// An ioctl with extra fds; `bad` lists fd slots the caller found closed.
    pub fn ioctl_fds(
        &self,
        fd: &OwnedFd,
        request: u64,
        arg: IoctlArg,
        extra: &[BorrowedFd<'_>],
        bad: Vec<u32>,
    ) -> Result<(i64, Vec<u8>, Option<OwnedFd>), CallErr> {
        let mut fds = vec![fd.as_fd()];
        fds.extend_from_slice(extra);
        match self.call(&Request::Ioctl { request, arg, bad_fds: bad }, &fds) {
            (Reply::Ioctl { ret, out, ret_fd }, mut fds) => {
                let new = ret_fd.then(|| fds.remove(0));
                Ok((ret, out, new))
            }
            (Reply::Err { errno }, _) => Err((errno, Vec::new())),
            (Reply::IoctlErr { errno, out }, _) => Err((errno, out)),
            (other, _) => panic!("ioctl {request:#x}: {other:?}"),
        }
    }

    pub fn ioctl(&self, fd: &OwnedFd, request: u64, arg: IoctlArg) -> Result<(i64, Vec<u8>, Option<OwnedFd>), CallErr> {
        self.ioctl_fds(fd, request, arg, &[], Vec::new())
    }

    /// The errno of an ioctl that must fail.
    pub fn ioctl_errno(&self, fd: &OwnedFd, request: u64, arg: IoctlArg) -> i32 {
        self.ioctl(fd, request, arg).map(|_| ()).expect_err("the call must fail").0
    }

    pub fn pread(&self, fd: &OwnedFd, offset: u64, len: u32) -> Result<Vec<u8>, i32> {
        match self.call(&Request::Pread { offset, len }, &[fd.as_fd()]) {
            (Reply::Data(d), _) => Ok(d),
            (Reply::Err { errno }, _) => Err(errno),
            (other, _) => panic!("pread: {other:?}"),
        }
    }

    pub fn pwrite(&self, fd: &OwnedFd, offset: u64, data: &[u8]) -> Result<u64, i32> {
        match self.call(&Request::Pwrite { offset, data: data.to_vec() }, &[fd.as_fd()]) {
            (Reply::Count(n), _) => Ok(n),
            (Reply::Err { errno }, _) => Err(errno),
            (other, _) => panic!("pwrite: {other:?}"),
        }
    }

    pub fn sync(&self) {
        assert_eq!(self.call(&Request::Sync, &[]).0, Reply::Ok);
    }

    /// `close(fd)` as the preload does it: close, then Sync.
    pub fn close(&self, fd: OwnedFd) {
        drop(fd);
        self.sync();
    }

    /// Reads COMMAND, sets or clears MEMORY, writes it back.
    pub fn set_memory(&self, dev: &OwnedFd, on: bool) {
        let cmd = self.pread(dev, CONFIG + 4, 2).unwrap();
        let mut cmd = u16::from_le_bytes([cmd[0], cmd[1]]);
        if on {
            cmd |= 2;
        } else {
            cmd &= !2;
        }
        assert_eq!(self.pwrite(dev, CONFIG + 4, &cmd.to_le_bytes()), Ok(2));
    }

    /// `/dev/iommu` and the cdev of device `index`, bound to it.
    pub fn bound_device(&self, index: u32) -> (OwnedFd, OwnedFd) {
        let iommufd = self.open("/dev/iommu").unwrap();
        let dev = self.open(&format!("/dev/vfio/devices/vfio{index}")).unwrap();
        self.bind(&dev, &iommufd).unwrap();
        (iommufd, dev)
    }

    /// `VFIO_DEVICE_BIND_IOMMUFD` of `dev` to `iommufd`.
    pub fn bind(&self, dev: &OwnedFd, iommufd: &OwnedFd) -> Result<(i64, Vec<u8>, Option<OwnedFd>), CallErr> {
        let arg = IoctlArg::Bytes(words(&[24, 0, 9, 0, 0, 0]));
        self.ioctl_fds(dev, DEVICE_BIND_IOMMUFD, arg, &[iommufd.as_fd()], Vec::new())
    }

    /// `VFIO_DEVICE_FEATURE_DMA_BUF` of one range of BAR `index`.
    pub fn export(&self, dev: &OwnedFd, index: u32, offset: u64, len: u64) -> Result<OwnedFd, i32> {
        let mut arg = words(&[40, FEATURE_GET | FEATURE_DMA_BUF, index, libc::O_RDWR as u32, 0, 1]);
        arg.extend_from_slice(&offset.to_ne_bytes());
        arg.extend_from_slice(&len.to_ne_bytes());
        match self.ioctl(dev, DEVICE_FEATURE, IoctlArg::Bytes(arg)) {
            Ok((_, _, Some(fd))) => Ok(fd),
            Ok(other) => panic!("export returned no fd: {other:?}"),
            Err((e, _)) => Err(e),
        }
    }

    /// `mmap` of `fd` as mapping `mapping`: the plan and the memfds.
    pub fn mmap(
        &self,
        fd: &OwnedFd,
        mapping: u64,
        offset: u64,
        len: u64,
    ) -> Result<(wire::MapPlan, Vec<OwnedFd>), i32> {
        let req = Request::Mmap { mapping, len, offset, write: true, shared: true };
        match self.call(&req, &[fd.as_fd()]) {
            (Reply::Map(plan), fds) => Ok((plan, fds)),
            (Reply::Err { errno }, _) => Err(errno),
            (other, _) => panic!("mmap: {other:?}"),
        }
    }
}

/// The kind the tag of `fd` names.
pub fn tag_kind(fd: &OwnedFd) -> Option<ObjectKind> {
    wire::tag::peek(fd.as_fd()).map(|t| t.kind)
}

/// What the notify thread of a test process saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub mapping: u64,
    pub allowed: bool,
}

/// The notify connection of a test process: a thread receives each
/// notification, runs `before_ack` on it, reports it, and acknowledges it.
pub struct Notifier {
    pub seen: Receiver<Seen>,
    thread: Option<JoinHandle<()>>,
    conn: Arc<OwnedFd>,
}

impl Notifier {
    pub fn start(server: &TestServer, token: u64, before_ack: impl Fn(Seen) + Send + 'static) -> Notifier {
        let conn = Arc::new(Client::connect(server, token, Role::Notify).conn);
        let (tx, seen) = mpsc::channel();
        let thread_conn = Arc::clone(&conn);
        let thread = std::thread::spawn(move || loop {
            let (seq, mapping, allowed) = match wire::transport::recv::<Notify>(thread_conn.as_ref()) {
                Ok((Notify::Mapping { seq, mapping, allowed, .. }, _)) => (seq, mapping, allowed),
                // The status page comes first; these tests need only the messages.
                Ok((Notify::StatusPage { .. }, _)) => continue,
                Err(_) => return,
            };
            let s = Seen { mapping, allowed };
            before_ack(s);
            // Reported before the ack: whatever the server does once acked
            // (reply to an mmap, return from a revoke) finds it reported.
            let _ = tx.send(s);
            if wire::transport::send(thread_conn.as_ref(), &Request::Ack { seq }, &[]).is_err() {
                return;
            }
        });
        Notifier { seen, thread: Some(thread), conn }
    }

    /// One that acknowledges at once.
    pub fn acking(server: &TestServer, token: u64) -> Notifier {
        Notifier::start(server, token, |_| {})
    }

    pub fn next(&self) -> Seen {
        self.seen.recv_timeout(WATCHDOG).expect("a notification")
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let _ = rustix::net::shutdown(self.conn.as_fd(), rustix::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
