//! The processes the server serves, by token: their connections, their
//! notify connection (notifications out, acks in), their mappings and the
//! memories they were given.
//!
//! A process is known from its first connection (`Request::Hello`) until its
//! last one closes; then it is gone, and everything it mapped is unmapped
//! as the kernel unmaps the VMAs of an exiting process.
//!
//! Each process has a status page (`mm::StatusPage`, sent once on its
//! notify connection), one slot per mapping, written before every
//! notification of that mapping; and every notification waits at most the
//! ack timeout ([`Backstop`]). A process that lets one time out is
//! `Acked::TimedOut` for the caller (which cuts it off, see `backstop`),
//! and its revokes are not waited for again until it answers; a late ack
//! only says it answers again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mm::StatusPage;
use rustix::io::Errno;
use wire::msg::status_slot;
use wire::Notify;

use crate::lock;
use crate::mapping::MappingRecord;
use crate::procmem::PeerMemory;

/// How long a revoke waits for a process to acknowledge a notification
/// unless the server is told otherwise ([`Server::set_ack_timeout`](crate::Server::set_ack_timeout)).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(1);

/// Slots of a process's status page: how many mappings it can hold at
/// once (a further mmap is `ENOMEM`, as at `vm.max_map_count`). 64 KiB of
/// memfd, of which only the pages of slots in use are ever touched.
pub(crate) const STATUS_SLOTS: usize = 16 * 1024;

/// The bound on a process's answer, and what the server did when it was
/// not met: shared by every process.
#[derive(Debug)]
pub(crate) struct Backstop {
    /// The ack wait in nanoseconds (set before serving; read per wait).
    ack_timeout_ns: AtomicU64,
    /// Processes cut off from a revoked buffer's frames, counted once per
    /// (notification, process).
    cut_offs: AtomicU64,
}

impl Default for Backstop {
    fn default() -> Self {
        Self { ack_timeout_ns: AtomicU64::new(DEFAULT_ACK_TIMEOUT.as_nanos() as u64), cut_offs: AtomicU64::new(0) }
    }
}

impl Backstop {
    /// The ack wait.
    pub(crate) fn ack_timeout(&self) -> Duration {
        Duration::from_nanos(self.ack_timeout_ns.load(Ordering::Relaxed))
    }

    /// Sets the ack wait.
    pub(crate) fn set_ack_timeout(&self, d: Duration) {
        self.ack_timeout_ns.store(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts one cut-off; returns the total.
    pub(crate) fn count_cut_off(&self) -> u64 {
        self.cut_offs.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Cut-offs so far.
    pub(crate) fn cut_offs(&self) -> u64 {
        self.cut_offs.load(Ordering::Relaxed)
    }
}

/// How a notification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acked {
    /// The process applied it.
    Yes,
    /// The process is gone, or cannot be told (no notify connection): as
    /// good as acknowledged, its mappings go with it.
    Gone,
    /// No answer within the bound (or the notification could not even be
    /// queued): the caller cuts the process off where it must.
    TimedOut,
}

/// A notification on its way ([`Process::send_notification`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Nothing to wait for: this is how it ended.
    Done(Acked),
    /// Sent as `seq`; its ack is waited for until `deadline`.
    Waiting {
        /// Its sequence number.
        seq: u64,
        /// When the wait gives up.
        deadline: Instant,
    },
}

/// Notification sequence numbers and the acks that came back.
#[derive(Debug, Default)]
struct Acks {
    next_seq: u64,
    /// Sequence numbers a revoking thread waits for; an ack removes its
    /// number. One that is not here any more (given up on) is a late ack.
    waiting: BTreeSet<u64>,
    /// The process let a notification time out and has acked nothing
    /// since: nothing waits for it until it answers again. Revokes cut it
    /// off at once; un-revokes need no answer, since its status-page slot
    /// lets its faults map again as soon as it runs.
    unresponsive: bool,
    /// The notify connection is closed: nothing will be acked again, and
    /// a process that is gone counts as having acked.
    gone: bool,
}

/// Free slots of a status page.
#[derive(Debug, Default)]
struct Slots {
    /// Slots handed out and released, reused first.
    free: Vec<u32>,
    /// Slots below this were handed out at some point.
    high: u32,
}

/// One process.
#[derive(Debug)]
pub(crate) struct Process {
    /// Immutable. Its token.
    pub(crate) token: u64,
    /// Immutable. Its pid (`SO_PEERCRED` of its first connection).
    pub(crate) pid: i32,
    /// Immutable. Its memory, for DMA.
    pub(crate) memory: Arc<PeerMemory>,
    /// Immutable. The bound and the cut-off count, shared by every process.
    backstop: Arc<Backstop>,
    /// Protected by: `Registry::procs`. Live connections.
    connections: Mutex<usize>,
    /// Protected by: itself; held while one notification is sent, so they
    /// leave in sequence order. The notify connection.
    notify: Mutex<Option<Arc<OwnedFd>>>,
    /// Set with the notify connection: one slot per mapping, written
    /// before each notification of it (atomic stores; no lock).
    status: OnceLock<StatusPage>,
    /// Protected by: itself, a leaf. The status page's free slots.
    slots: Mutex<Slots>,
    /// Protected by: itself, a leaf; paired with `acked`.
    acks: Mutex<Acks>,
    acked: Condvar,
    /// Protected by: itself, a leaf. Live mappings by the process's id.
    pub(crate) mappings: Mutex<HashMap<u64, Arc<MappingRecord>>>,
    /// Protected by: itself, a leaf. Frames whose memfd the process was
    /// given, as (memory id, frame index): those a cut-off must reach.
    pub(crate) frames_sent: Mutex<HashSet<(u64, u64)>>,
}

impl Process {
    fn new(token: u64, pid: i32, backstop: Arc<Backstop>) -> Self {
        Self {
            token,
            pid,
            memory: Arc::new(PeerMemory::new(pid)),
            backstop,
            connections: Mutex::new(0),
            notify: Mutex::new(None),
            status: OnceLock::new(),
            slots: Mutex::new(Slots::default()),
            acks: Mutex::new(Acks::default()),
            acked: Condvar::new(),
            mappings: Mutex::new(HashMap::new()),
            frames_sent: Mutex::new(HashSet::new()),
        }
    }

    /// Makes `conn` the process's notify connection and creates its status
    /// page; returns the page, to be sent on `conn` after the `Hello`
    /// reply. Sends on `conn` give up after the ack wait (`SO_SNDTIMEO`),
    /// so a process that reads nothing cannot block a revoke on a full
    /// socket either.
    ///
    /// # Errors
    ///
    /// `EBUSY` when it has one already; the errno of creating the page.
    pub(crate) fn set_notify(&self, conn: Arc<OwnedFd>) -> Result<&StatusPage, Errno> {
        let mut notify = lock(&self.notify);
        if notify.is_some() || lock(&self.acks).gone {
            return Err(Errno::BUSY);
        }
        let name = format!("vfio-dmabuf-status:{}", self.pid);
        let page = match self.status.get() {
            Some(p) => p,
            None => {
                let p = StatusPage::new(&name, STATUS_SLOTS).map_err(|e| e.errno())?;
                self.status.get_or_init(|| p)
            }
        };
        // SO_SNDTIMEO of zero would mean "wait for ever".
        let timeout = Some(self.backstop.ack_timeout().max(Duration::from_millis(1)));
        if let Err(e) =
            rustix::net::sockopt::set_socket_timeout(conn.as_ref(), rustix::net::sockopt::Timeout::Send, timeout)
        {
            tracing::warn!(pid = self.pid, %e, "cannot bound sends on the notify connection");
        }
        *notify = Some(conn);
        Ok(page)
    }

    /// Whether the process can be told about its mappings.
    pub(crate) fn has_notify(&self) -> bool {
        lock(&self.notify).is_some() && !lock(&self.acks).gone
    }

    /// The notify connection closed: every wait for an ack ends.
    pub(crate) fn notify_closed(&self) {
        lock(&self.acks).gone = true;
        self.acked.notify_all();
    }

    /// `Request::Ack{seq}` arrived. One that nobody waits for any more is
    /// late (the process was cut off meanwhile): it only says the process
    /// answers again.
    pub(crate) fn ack(&self, seq: u64) {
        let mut acks = lock(&self.acks);
        if !acks.waiting.remove(&seq) {
            tracing::debug!(pid = self.pid, seq, "late acknowledgement of a notification given up on");
        }
        acks.unresponsive = false;
        drop(acks);
        self.acked.notify_all();
    }

    /// A slot of the status page for a new mapping.
    ///
    /// # Errors
    ///
    /// `ENOMEM` when every slot is in use (the process holds
    /// [`STATUS_SLOTS`] mappings).
    pub(crate) fn alloc_slot(&self) -> Result<u32, Errno> {
        let mut slots = lock(&self.slots);
        if let Some(s) = slots.free.pop() {
            return Ok(s);
        }
        if slots.high as usize >= STATUS_SLOTS {
            return Err(Errno::NOMEM);
        }
        slots.high += 1;
        Ok(slots.high - 1)
    }

    /// Gives a mapping's slot back (its registration is gone).
    pub(crate) fn free_slot(&self, slot: u32) {
        lock(&self.slots).free.push(slot);
    }

    /// The bound and the cut-off count.
    pub(crate) fn backstop(&self) -> &Backstop {
        &self.backstop
    }

    /// Tells the process that mapping `mapping` may (`allowed`) or may not
    /// map pages from now on; the caller then waits ([`Process::wait_ack`])
    /// until it has applied that and zapped its pages of the mapping (its
    /// ack).
    ///
    /// The mapping's status-page slot is written first, so the process's
    /// fault path refuses (or allows) from that moment, whether or not it
    /// ever reads the notification. A process that is gone, or has no
    /// notify connection, counts as having acked ([`Acked::Gone`]). One
    /// that does not answer within the ack wait, or whose connection
    /// cannot take the message within it, is [`Acked::TimedOut`]; after
    /// that, until it answers again, nothing waits for it: not its revokes
    /// (it was cut off), nor its un-revokes (the slot lets its faults map
    /// again as soon as it runs, and a notification it reads late applies
    /// the slot's current word, not its own).
    ///
    /// This is the first half: the slot written and the notification sent;
    /// what is left is to wait for its ack ([`Process::wait_ack`]) until
    /// the deadline, which is already running, so that waits for several
    /// processes overlap.
    pub(crate) fn send_notification(&self, mapping: u64, slot: u32, allowed: bool) -> Sent {
        if let Some(page) = self.status.get() {
            let s = slot as usize;
            page.set(s, status_slot::next(page.get(s), allowed));
        }
        let (seq, wait) = {
            let notify = lock(&self.notify);
            let Some(conn) = notify.as_ref() else { return Sent::Done(Acked::Gone) };
            let (seq, wait) = {
                let mut acks = lock(&self.acks);
                if acks.gone {
                    return Sent::Done(Acked::Gone);
                }
                acks.next_seq += 1;
                let seq = acks.next_seq;
                acks.waiting.insert(seq);
                (seq, if acks.unresponsive { Duration::ZERO } else { self.backstop.ack_timeout() })
            };
            let msg = Notify::Mapping { seq, mapping, allowed, slot };
            // One that is not waited for is not waited on a full queue
            // either; otherwise the send gives up after the ack wait.
            let sent = if wait.is_zero() {
                wire::transport::send_small_nowait(std::os::fd::AsFd::as_fd(conn.as_ref()), &msg)
            } else {
                wire::transport::send(conn.as_ref(), &msg, &[])
            };
            match sent {
                Ok(()) => (seq, wait),
                Err(wire::transport::WireError::Sys(Errno::AGAIN)) => {
                    // Its queue is full and stayed full for the whole wait.
                    self.give_up(seq);
                    return Sent::Done(Acked::TimedOut);
                }
                Err(e) => {
                    tracing::debug!(pid = self.pid, %e, "notify connection gone; counted as acked");
                    drop(notify);
                    self.notify_closed();
                    return Sent::Done(Acked::Gone);
                }
            }
        };
        Sent::Waiting { seq, deadline: Instant::now() + wait }
    }

    /// The second half of [`Process::send_notification`]: waits for the
    /// ack of `seq` until `deadline`.
    pub(crate) fn wait_ack(&self, seq: u64, deadline: Instant) -> Acked {
        let mut acks = lock(&self.acks);
        loop {
            if acks.gone {
                acks.waiting.remove(&seq);
                return Acked::Gone;
            }
            if !acks.waiting.contains(&seq) {
                return Acked::Yes;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(acks);
                self.give_up(seq);
                return Acked::TimedOut;
            }
            acks = self.acked.wait_timeout(acks, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Stops waiting for `seq`: the process is unresponsive until it acks.
    fn give_up(&self, seq: u64) {
        let mut acks = lock(&self.acks);
        acks.waiting.remove(&seq);
        acks.unresponsive = true;
    }

    /// Whether the process's notify connection has hung up: the process
    /// exited (the kernel closes an exiting process's files before it can
    /// be reaped), though the thread serving the connection may not have
    /// seen it yet.
    fn notify_hung_up(&self) -> bool {
        let notify = lock(&self.notify);
        let Some(conn) = notify.as_ref() else { return false };
        let mut fds = [rustix::event::PollFd::new(conn.as_ref(), rustix::event::PollFlags::RDHUP)];
        let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
            && fds[0].revents().intersects(rustix::event::PollFlags::HUP | rustix::event::PollFlags::RDHUP)
    }

    /// The process is gone: nothing will be acked, and its mappings go as
    /// an exiting process's VMAs do. Idempotent.
    fn gone(&self) {
        self.notify_closed();
        lock(&self.notify).take();
        let mappings: Vec<Arc<MappingRecord>> = lock(&self.mappings).drain().map(|(_, m)| m).collect();
        self.memory.clear();
        if !mappings.is_empty() {
            tracing::debug!(pid = self.pid, n = mappings.len(), "process gone; its mappings are unmapped");
        }
        drop(mappings);
    }
}

/// Every process, by token.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Protected by: itself, a leaf (a process that leaves is cleaned up
    /// after it is released).
    procs: Mutex<HashMap<u64, Arc<Process>>>,
    /// The bound every process is held to, and the cut-off count.
    pub(crate) backstop: Arc<Backstop>,
}

impl Registry {
    /// A new connection of process `token` (pid `pid`).
    pub(crate) fn attach(&self, token: u64, pid: i32) -> Arc<Process> {
        let mut procs = lock(&self.procs);
        let p = procs.entry(token).or_insert_with(|| Arc::new(Process::new(token, pid, Arc::clone(&self.backstop))));
        if p.pid != pid {
            // A token names one process; a fork child draws a new one.
            tracing::warn!(token, first = p.pid, now = pid, "one token used by two processes");
        }
        *lock(&p.connections) += 1;
        Arc::clone(p)
    }

    /// The live process of token `token`.
    pub(crate) fn get(&self, token: u64) -> Option<Arc<Process>> {
        lock(&self.procs).get(&token).cloned()
    }

    /// A connection of `p` closed; its last one means the process is gone.
    pub(crate) fn detach(&self, p: &Arc<Process>) {
        let last = {
            let mut procs = lock(&self.procs);
            let mut n = lock(&p.connections);
            *n = n.saturating_sub(1);
            let last = *n == 0;
            if last && procs.get(&p.token).is_some_and(|q| Arc::ptr_eq(q, p)) {
                procs.remove(&p.token);
            }
            last
        };
        if last {
            p.gone();
        }
    }

    /// Lets every process whose notify connection has hung up go now, as
    /// its exit did: its mappings stop holding their files (a device it
    /// mapped closes when nothing else holds it). The wait family's sync
    /// calls this, so a parent that has reaped a child sees the child's
    /// mappings gone, as the kernel guarantees. The connection's own thread
    /// finds the hang-up later and only has the bookkeeping left.
    pub(crate) fn reap_hung_up(&self) {
        let procs: Vec<Arc<Process>> = lock(&self.procs).values().cloned().collect();
        for p in procs.into_iter().filter(|p| p.notify_hung_up()) {
            tracing::debug!(pid = p.pid, "process gone (its notify connection hung up)");
            p.gone();
        }
    }

    /// Every process is gone (the server stops).
    pub(crate) fn clear(&self) {
        let all: Vec<Arc<Process>> = lock(&self.procs).drain().map(|(_, p)| p).collect();
        for p in all {
            p.gone();
        }
    }
}
