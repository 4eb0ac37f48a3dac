//! The processes the server serves, by token: their connections, their
//! notify connection (notifications out, acks in), their mappings and the
//! memories they were given.
//!
//! A process is known from its first connection (`Request::Hello`) until its
//! last one closes; then it is gone, and everything it mapped is unmapped
//! as the kernel unmaps the VMAs of an exiting process.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};

use crate::lock;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use wire::Notify;

use crate::mapping::MappingRecord;
use crate::procmem::PeerMemory;

/// How long a revoke waits for a process to acknowledge a notification
/// before it goes on without it (and says so loudly). A process that never
/// answers is cut off by the backstop of the sharing work, not here.
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Notification sequence numbers and the acks that came back.
#[derive(Debug, Default)]
struct Acks {
    next_seq: u64,
    /// Acked sequence numbers nobody has collected yet.
    acked: BTreeSet<u64>,
    /// The notify connection is closed: nothing will be acked again, and
    /// a process that is gone counts as having acked.
    gone: bool,
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
    /// Protected by: `Registry::procs`. Live connections.
    connections: Mutex<usize>,
    /// Protected by: itself; held while one notification is sent, so they
    /// leave in sequence order. The notify connection.
    notify: Mutex<Option<Arc<OwnedFd>>>,
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
    fn new(token: u64, pid: i32) -> Self {
        Self {
            token,
            pid,
            memory: Arc::new(PeerMemory::new(pid)),
            connections: Mutex::new(0),
            notify: Mutex::new(None),
            acks: Mutex::new(Acks::default()),
            acked: Condvar::new(),
            mappings: Mutex::new(HashMap::new()),
            frames_sent: Mutex::new(HashSet::new()),
        }
    }

    /// Makes `conn` the process's notify connection.
    ///
    /// # Errors
    ///
    /// `EBUSY` when it has one already.
    pub(crate) fn set_notify(&self, conn: Arc<OwnedFd>) -> Result<(), Errno> {
        let mut notify = lock(&self.notify);
        if notify.is_some() || lock(&self.acks).gone {
            return Err(Errno::BUSY);
        }
        *notify = Some(conn);
        Ok(())
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

    /// `Request::Ack{seq}` arrived.
    pub(crate) fn ack(&self, seq: u64) {
        lock(&self.acks).acked.insert(seq);
        self.acked.notify_all();
    }

    /// Tells the process that mapping `mapping` may (`allowed`) or may not
    /// map pages from now on, and waits until it has applied that and
    /// zapped its pages of the mapping (its ack). A process that is gone,
    /// or has no notify connection, counts as having acked; one that does
    /// not answer within [`ACK_TIMEOUT`] is logged and left behind.
    pub(crate) fn notify_mapping(&self, mapping: u64, allowed: bool) {
        let seq = {
            let notify = lock(&self.notify);
            let Some(conn) = notify.as_ref() else { return };
            let seq = {
                let mut acks = lock(&self.acks);
                if acks.gone {
                    return;
                }
                acks.next_seq += 1;
                acks.next_seq
            };
            match wire::transport::send(conn.as_ref(), &Notify::Mapping { seq, mapping, allowed }, &[]) {
                Ok(()) => seq,
                Err(e) => {
                    tracing::debug!(pid = self.pid, %e, "notify connection gone; counted as acked");
                    drop(notify);
                    self.notify_closed();
                    return;
                }
            }
        };
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut acks = lock(&self.acks);
        loop {
            if acks.acked.remove(&seq) || acks.gone {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::error!(
                    pid = self.pid,
                    mapping,
                    allowed,
                    seq,
                    "PROCESS DID NOT ACKNOWLEDGE A MAPPING CHANGE within {ACK_TIMEOUT:?}: it may still access a revoked mapping"
                );
                return;
            }
            acks = self.acked.wait_timeout(acks, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// The process is gone: nothing will be acked, and its mappings go as
    /// an exiting process's VMAs do.
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
}

impl Registry {
    /// A new connection of process `token` (pid `pid`).
    pub(crate) fn attach(&self, token: u64, pid: i32) -> Arc<Process> {
        let mut procs = lock(&self.procs);
        let p = procs.entry(token).or_insert_with(|| Arc::new(Process::new(token, pid)));
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

    /// Every process is gone (the server stops).
    pub(crate) fn clear(&self) {
        let all: Vec<Arc<Process>> = lock(&self.procs).drain().map(|(_, p)| p).collect();
        for p in all {
            p.gone();
        }
    }
}
