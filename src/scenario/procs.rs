//! Scenarios across processes: the steps of client processes, and the
//! primary's steps that act on them (`pass`, `stop`, `cont`, `exit`).
//!
//! When a scenario declares `[processes.<name>]`, the runner serves its
//! devices to other processes from a server in this process (the `server`
//! crate, on a socket in a private directory) over the SAME device objects
//! its own steps use: an export, a revoke, a COMMAND write or a reset of
//! the primary acts on the one device every client maps. Each client is a
//! worker process (see `client`) under the preload library; `pass` makes a
//! server file of the primary's buffer or device fd and sends it to the
//! worker over `SCM_RIGHTS`, so the worker's mmap of it is the server's
//! remote mapping, which every revocation of the buffer reaches.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::sync::Arc;

use server::{ServedDevice, Server, ServerHandle};
use vfio::VfioPciDevice;

use super::client::{build_worker, Client, Cmd, Op, Reply, MAP_SHARED, MAP_WRITE};
use super::parse::{Scenario, ScenarioError, Step, StepAt};
use super::run::{addr_text, page_up, prot_text, share_text, Map, Outcome, World};

/// The client processes of a running scenario and the server they use.
/// Fields drop in order: the clients end before the server stops, and the
/// directory holding its socket and the worker goes last.
#[derive(Debug)]
pub struct Clients {
    procs: BTreeMap<String, Client>,
    server: Option<ServerHandle>,
    dir: crate::exec::SocketDir,
}

impl Clients {
    /// The client processes: name and pid.
    pub fn list(&self) -> Vec<(String, u32)> {
        self.procs.iter().map(|(n, c)| (n.clone(), c.pid())).collect()
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.procs.clear();
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

/// Starts the server over `devices` and one worker per declared process.
///
/// # Errors
///
/// A [`ScenarioError`] at the first process's line when the preload
/// library, `cc`, the server or a worker cannot be had.
pub(super) fn start(sc: &Scenario, devices: &BTreeMap<String, Arc<VfioPciDevice>>) -> Result<Clients, ScenarioError> {
    let line = sc.processes.first().map_or(1, |p| p.line);
    let fail = |msg: String| ScenarioError { file: sc.file.clone(), line, msg: format!("client processes: {msg}") };
    let preload = crate::exec::preload_library().map_err(|e| fail(error_chain(&e)))?;
    let dir = crate::exec::SocketDir::new().map_err(|e| fail(error_chain(&e)))?;
    let worker = build_worker(dir.path()).map_err(fail)?;
    let served = sc
        .devices
        .iter()
        .filter_map(|d| {
            let vdev = devices.get(&d.id)?;
            Some(ServedDevice { vdev: Arc::clone(vdev), group: d.group, cdev_index: d.cdev })
        })
        .collect();
    let mut server = Server::new(served).map_err(|e| fail(error_chain(&e)))?;
    if let Some(bound) = sc.server.ack_timeout {
        server.set_ack_timeout(bound);
    }
    server.bind(dir.socket()).map_err(|e| fail(error_chain(&e)))?;
    let handle = server.spawn().map_err(|e| fail(error_chain(&e)))?;
    let mut clients = Clients { procs: BTreeMap::new(), server: Some(handle), dir };
    for p in &sc.processes {
        let c = Client::spawn(&worker, &preload, &clients.dir.socket()).map_err(|m| ScenarioError {
            file: sc.file.clone(),
            line: p.line,
            msg: format!("process `{}`: {m}", p.name),
        })?;
        clients.procs.insert(p.name.clone(), c);
    }
    Ok(clients)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        msg.push_str(&format!(": {s}"));
        cur = s.source();
    }
    msg
}

/// Runs a step of a client, or a step of the primary that acts on one.
///
/// # Errors
///
/// A [`ScenarioError`] when the scenario has no client processes running
/// or names something its process does not hold (the parser checks the
/// names, so only a hand-made [`Scenario`] gets here).
pub(super) fn exec(
    sc: &Scenario,
    w: &mut World,
    st: &StepAt,
    output: &mut Vec<String>,
) -> Result<(String, Outcome), ScenarioError> {
    let err = |msg: String| ScenarioError { file: sc.file.clone(), line: st.line, msg };
    let Some(clients) = w.clients.as_mut() else {
        return Err(err("this step needs client processes; none are running".into()));
    };
    if let Step::Pass { fd, to, as_ } = &st.step {
        let server = clients.server.as_ref().ok_or_else(|| err("the server is gone".into()))?;
        let (kind, number, file) = if let Some(b) = w.bufs.get(fd) {
            ("buffer", b.raw_fd(), server.dmabuf_file(b))
        } else if let Some(d) = w.fds.get(fd) {
            ("device", -1, server.device_file(d))
        } else {
            return Err(err(format!("no device fd or buffer fd named `{fd}` (yet)")));
        };
        let held = if number >= 0 { format!(" (fd {number})") } else { String::new() };
        let d = format!("pass {kind} fd {fd}{held} to {to} over SCM_RIGHTS, as {as_}");
        let file = match file {
            Ok(f) => f,
            Err(e) => return Ok((d, Outcome::Errno(e, "cannot make a file to pass".into()))),
        };
        let c = client(clients, to).map_err(err)?;
        let slot = c.new_slot();
        return Ok(match c.call(Op::Recv, Cmd { slot, ..Cmd::default() }, Some(file.as_fd())) {
            Ok(Reply::Done(n)) => {
                c.fds.insert(as_.clone(), slot);
                output.push(format!("{to} holds it as fd {n}"));
                (d, Outcome::Done(None))
            }
            Ok(r) => (d, reply_outcome(r)),
            Err(m) => (d, Outcome::Mismatch(m)),
        });
    }
    if let Step::Stop { process } | Step::Cont { process } | Step::Exit { process } = &st.step {
        let c = client(clients, process).map_err(err)?;
        let d = match &st.step {
            Step::Stop { .. } => format!("SIGSTOP to {process} (pid {})", c.pid()),
            Step::Cont { .. } => format!("SIGCONT to {process} (pid {})", c.pid()),
            _ => format!("{process} (pid {}) exits", c.pid()),
        };
        let outcome = match &st.step {
            Step::Exit { .. } if c.stopped => Outcome::Mismatch(format!("{process} is stopped: `cont` it first")),
            Step::Exit { .. } => match c.exit() {
                Ok(s) => Outcome::Done(s.code().map(|c| c as u64)),
                Err(m) => Outcome::Mismatch(m),
            },
            _ => {
                let stop = matches!(st.step, Step::Stop { .. });
                c.signal(stop).map_or_else(|e| Outcome::Errno(e, "kill".into()), |()| Outcome::Done(None))
            }
        };
        return Ok((d, outcome));
    }
    let name = st.process.as_deref().unwrap_or_default();
    let c = client(clients, name).map_err(err)?;
    if c.stopped {
        return Ok((st.verb.to_owned(), Outcome::Mismatch(format!("{name} is stopped (SIGSTOP): `cont` it first"))));
    }
    client_step(c, st, output).ok_or_else(|| err(format!("process `{name}` holds no such fd or mapping")))
}

/// The client `name`, if it still runs.
fn client<'a>(clients: &'a mut Clients, name: &str) -> Result<&'a mut Client, String> {
    let c = clients.procs.get_mut(name).ok_or_else(|| format!("no process named `{name}`"))?;
    match c.exited {
        Some(s) => Err(format!("process `{name}` has exited ({s})")),
        None => Ok(c),
    }
}

fn reply_outcome(r: Reply) -> Outcome {
    match r {
        Reply::Done(v) => Outcome::Done(Some(v)),
        Reply::Errno(e) => Outcome::Errno(e, "in the client".into()),
        Reply::Fault(f) => Outcome::Fault(f),
    }
}

/// A load or store's outcome: a fault must be at the accessed address, as
/// the kernel reports it (`si_addr`).
fn access_outcome(r: Result<Reply, String>, addr: u64) -> Outcome {
    match r {
        Ok(Reply::Fault(f)) if f.addr != addr => Outcome::Mismatch(format!("{f}, not at the accessed {addr:#x}")),
        Ok(r) => reply_outcome(r),
        Err(m) => Outcome::Mismatch(m),
    }
}

/// A step in client `c`; `None` when it names what `c` does not hold.
fn client_step(c: &mut Client, st: &StepAt, output: &mut Vec<String>) -> Option<(String, Outcome)> {
    let (d, outcome) = match &st.step {
        Step::Mmap { fd, file_offset: off, len, write, shared, addr, as_ }
        | Step::MmapBuf { buf: fd, offset: off, len, write, shared, addr, as_ } => {
            let slot = *c.fds.get(fd)?;
            let kind = if matches!(st.step, Step::Mmap { .. }) { "device" } else { "buffer" };
            let d = format!(
                "mmap({}, {len:#x}, {}, {}, {kind} fd {fd}, {off:#x})",
                addr_text(*addr),
                prot_text(*write),
                share_text(*shared)
            );
            let flags = if *write { MAP_WRITE } else { 0 } | if *shared { MAP_SHARED } else { 0 };
            let cmd = Cmd { slot, flags, addr: addr.unwrap_or(0), len: *len, off: *off, ..Cmd::default() };
            match c.call(Op::Mmap, cmd, None) {
                Ok(Reply::Done(va)) => {
                    c.maps.insert(as_.clone(), (Map { va, len: page_up(*len) }, Vec::new()));
                    output.push(format!("{as_} = {va:#x}"));
                    (d, Outcome::Done(None))
                }
                Ok(r) => (d, reply_outcome(r)),
                Err(m) => (d, Outcome::Mismatch(m)),
            }
        }
        Step::Munmap { map, at, len } => {
            let (m, holes) = c.maps.get_mut(map)?;
            let m = *m;
            let len = len.unwrap_or(m.len.saturating_sub(*at));
            let d = format!("munmap({map} + {at:#x}, {len:#x})");
            if at.checked_add(len).is_none_or(|end| end > m.len) {
                return Some((d, Outcome::Mismatch("range outside the mapping".into())));
            }
            holes.push((m.va + at, m.va + at + len));
            let r = c.call(Op::Munmap, Cmd { addr: m.va + at, len, ..Cmd::default() }, None);
            (
                d,
                r.map_or_else(Outcome::Mismatch, |r| match r {
                    Reply::Done(_) => Outcome::Done(None),
                    other => reply_outcome(other),
                }),
            )
        }
        Step::Read { map, at, width } => {
            let (m, _) = c.maps.get(map)?.clone();
            let d = format!("load {width} bits at {map} + {at:#x}");
            let Some(addr) = m.va.checked_add(*at) else {
                return Some((d, Outcome::Mismatch("address overflows".into())));
            };
            (d, access_outcome(c.call(Op::Load, Cmd { addr, width: *width, ..Cmd::default() }, None), addr))
        }
        Step::Write { map, at, width, value } => {
            let (m, holes) = c.maps.get(map)?.clone();
            let d = format!("store {value:#x} ({width} bits) at {map} + {at:#x}");
            // Only inside the mapping as it is now: a stray store would
            // land in the worker's own memory.
            let addr = m.va.checked_add(*at).filter(|a| {
                let end = a + u64::from(width / 8);
                end <= m.va + m.len && holes.iter().all(|(s, e)| end <= *s || *a >= *e)
            });
            let Some(addr) = addr else {
                return Some((d, Outcome::Mismatch("store outside the mapping refused".into())));
            };
            let cmd = Cmd { addr, width: *width, val: *value, ..Cmd::default() };
            (d, access_outcome(c.call(Op::Store, cmd, None), addr).done_as_none())
        }
        Step::Close { handle } => {
            let slot = c.fds.remove(handle)?;
            let d = format!("close {handle}");
            (
                d,
                match c.call(Op::Close, Cmd { slot, ..Cmd::default() }, None) {
                    Ok(Reply::Done(_)) => Outcome::Done(None),
                    Ok(r) => reply_outcome(r),
                    Err(m) => Outcome::Mismatch(m),
                },
            )
        }
        Step::Say => (String::new(), Outcome::Done(None)),
        _ => return None,
    };
    Some((d, outcome))
}

impl Outcome {
    /// A store yields no value.
    fn done_as_none(self) -> Outcome {
        match self {
            Outcome::Done(_) => Outcome::Done(None),
            o => o,
        }
    }
}
