//! One client process of a scenario: the C worker (`worker.c`, compiled
//! with the system's `cc`), run under the preload library against the
//! runner's in-process server, and the control socket it takes its steps
//! from.
//!
//! The worker's stdin is its control socket (`SOCK_SEQPACKET`): one fixed
//! command per packet, with the fd of a `pass` attached (`SCM_RIGHTS`),
//! one fixed reply per command. A reply that does not come within
//! [`REPLY_TIMEOUT`] ends the step with an error instead of hanging the run.

use std::collections::BTreeMap;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{
    socketpair, sockopt, AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags,
    SocketType,
};
use rustix::process::{Pid, Signal, WaitOptions};

use super::run::Map;

/// The worker's source.
pub(super) const WORKER_SOURCE: &str = include_str!("worker.c");

/// How long a step of a client may take: generous, a watchdog against a
/// worker that hangs, never a timing assertion.
pub(super) const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Commands (`enum op` of `worker.c`).
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub(super) enum Op {
    Recv = 1,
    Mmap,
    Munmap,
    Load,
    Store,
    Close,
    Exit,
}

/// `mmap` flags of a command.
pub(super) const MAP_WRITE: u32 = 1;
pub(super) const MAP_SHARED: u32 = 2;

/// One command (`struct cmd` of `worker.c`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Cmd {
    pub(super) slot: u32,
    pub(super) width: u32,
    pub(super) flags: u32,
    pub(super) addr: u64,
    pub(super) len: u64,
    pub(super) off: u64,
    pub(super) val: u64,
}

impl Cmd {
    fn encode(&self, op: Op) -> [u8; 48] {
        let mut b = [0u8; 48];
        for (i, v) in [op as u32, self.slot, self.width, self.flags].into_iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        for (i, v) in [self.addr, self.len, self.off, self.val].into_iter().enumerate() {
            b[16 + i * 8..24 + i * 8].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }
}

/// What a command did (`struct reply` of `worker.c`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Reply {
    /// Done, with a value (a load's, a mapping's address, an fd number).
    Done(u64),
    /// The call failed with this errno.
    Errno(Errno),
    /// The access raised this signal.
    Fault(mm::AccessFault),
}

impl Reply {
    fn decode(b: &[u8; 32]) -> Reply {
        let i32_at = |o: usize| i32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        match i32_at(0) {
            0 => Reply::Done(u64_at(16)),
            1 => Reply::Errno(Errno::from_raw_os_error(i32_at(4))),
            _ => Reply::Fault(mm::AccessFault { signo: i32_at(8), code: i32_at(12), addr: u64_at(24) }),
        }
    }
}

/// A running client process and what it holds, by the scenario's names.
#[derive(Debug)]
pub(super) struct Client {
    child: Child,
    ctl: OwnedFd,
    /// Stopped by `stop`, not continued yet.
    pub(super) stopped: bool,
    /// Its exit status once `exit` ended it.
    pub(super) exited: Option<std::process::ExitStatus>,
    /// Received fds: the worker's slot of each.
    pub(super) fds: BTreeMap<String, u32>,
    next_slot: u32,
    /// Its mappings, and the ranges of each unmapped since.
    pub(super) maps: BTreeMap<String, (Map, Vec<(u64, u64)>)>,
}

/// Compiles the worker into `dir`.
pub(super) fn build_worker(dir: &Path) -> Result<std::path::PathBuf, String> {
    crate::cc::compile(dir, "scenario-client", WORKER_SOURCE, "the scenario client worker")
}

impl Client {
    /// Starts `worker` under `preload`, served by the server at `socket`.
    pub(super) fn spawn(worker: &Path, preload: &Path, socket: &Path) -> Result<Client, String> {
        let (ctl, theirs) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
            .map_err(|e| format!("socketpair: {e}"))?;
        sockopt::set_socket_timeout(&ctl, sockopt::Timeout::Recv, Some(REPLY_TIMEOUT))
            .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
        let child = Command::new(worker)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .env(wire::SOCKET_ENV, socket)
            .env("LD_PRELOAD", preload)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", worker.display()))?;
        Ok(Client {
            child,
            ctl,
            stopped: false,
            exited: None,
            fds: BTreeMap::new(),
            next_slot: 0,
            maps: BTreeMap::new(),
        })
    }

    /// Its process id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A free fd slot of the worker.
    pub(super) fn new_slot(&mut self) -> u32 {
        self.next_slot += 1;
        self.next_slot - 1
    }

    /// Sends `op` (with `fd` attached) and waits for the reply.
    pub(super) fn call(&mut self, op: Op, cmd: Cmd, fd: Option<BorrowedFd<'_>>) -> Result<Reply, String> {
        let bytes = cmd.encode(op);
        let fds = fd.map(|f| [f]);
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if let Some(f) = &fds {
            control.push(SendAncillaryMessage::ScmRights(f));
        }
        loop {
            match rustix::net::sendmsg(&self.ctl, &[IoSlice::new(&bytes)], &mut control, SendFlags::NOSIGNAL) {
                Ok(_) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(format!("the client's control socket: {e} ({})", self.gone())),
            }
        }
        if matches!(op, Op::Exit) {
            return Ok(Reply::Done(0));
        }
        let mut reply = [0u8; 32];
        loop {
            match rustix::net::recv(&self.ctl, &mut reply, RecvFlags::empty()) {
                Ok((32, _)) => return Ok(Reply::decode(&reply)),
                Ok(_) => return Err(format!("the client ended or answered garbage ({})", self.gone())),
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => {
                    return Err(format!("the client did not answer within {} s", REPLY_TIMEOUT.as_secs()))
                }
                Err(e) => return Err(format!("the client's control socket: {e}")),
            }
        }
    }

    /// What became of the worker, for a message.
    fn gone(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(s)) => format!("it exited: {s}"),
            _ => "it still runs".into(),
        }
    }

    /// `SIGSTOP` or `SIGCONT`, returning once the worker is stopped or
    /// running again (`waitpid` with `WUNTRACED` or `WCONTINUED`).
    pub(super) fn signal(&mut self, stop: bool) -> Result<(), Errno> {
        let pid = Pid::from_raw(self.pid() as i32).ok_or(Errno::SRCH)?;
        let (sig, wait) =
            if stop { (Signal::STOP, WaitOptions::UNTRACED) } else { (Signal::CONT, WaitOptions::CONTINUED) };
        rustix::process::kill_process(pid, sig)?;
        loop {
            match rustix::process::waitpid(Some(pid), wait) {
                Ok(Some((_, s))) if (stop && s.stopped()) || (!stop && s.continued()) => break,
                Ok(Some((_, s))) if s.exited() || s.signaled() => return Err(Errno::SRCH),
                Ok(_) | Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
            }
        }
        self.stopped = stop;
        Ok(())
    }

    /// `exit(0)` in the worker, waited for.
    pub(super) fn exit(&mut self) -> Result<std::process::ExitStatus, String> {
        self.call(Op::Exit, Cmd::default(), None)?;
        let status = self.child.wait().map_err(|e| format!("waitpid: {e}"))?;
        self.exited = Some(status);
        Ok(status)
    }
}

impl Client {
    /// Waits up to `limit` for the worker to end (its pidfd becomes
    /// readable); true once it has been reaped.
    fn wait_exit(&mut self, limit: Duration) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let Some(pid) = Pid::from_raw(self.pid() as i32) else { return false };
        if let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            let deadline = Instant::now() + limit;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let t = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
                match poll(&mut [PollFd::new(&pidfd, PollFlags::IN)], Some(&t)) {
                    Err(Errno::INTR) => continue,
                    Ok(0) => return false,
                    _ => break,
                }
            }
        }
        self.child.wait().is_ok()
    }
}

impl Drop for Client {
    /// Continues a stopped worker and closes its control socket, which
    /// ends it; one that does not end within [`REPLY_TIMEOUT`] is killed.
    fn drop(&mut self) {
        if self.exited.is_some() {
            return;
        }
        if self.stopped {
            let _ = self.signal(false);
        }
        let _ = rustix::net::shutdown(self.ctl.as_fd(), rustix::net::Shutdown::Both);
        if self.wait_exit(REPLY_TIMEOUT) {
            return;
        }
        tracing::warn!(pid = self.pid(), "a scenario client did not end; killed");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
