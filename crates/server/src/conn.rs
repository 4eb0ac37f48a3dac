//! One connection: `Hello`, then requests and replies (a control
//! connection) or acks (the notify connection), until the process closes
//! it or the server stops.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustix::io::Errno;
use vfio::MmapArgs;
use wire::msg::IoctlArg;
use wire::transport::{self, WireError};
use wire::{Reply, Request, Role};

use crate::args::{Answer, ArgFds, Failure};
use crate::device::check_rw;
use crate::object::{Object, OpenFile};
use crate::process::Process;
use crate::server::Shared;

/// The thread of one accepted connection.
pub(crate) fn serve_connection(shared: &Arc<Shared>, conn: Arc<OwnedFd>) {
    let hello = transport::recv::<Request>(conn.as_ref());
    let (token, role) = match hello {
        Ok((Request::Hello { token, role }, _)) => (token, role),
        Ok((other, _)) => {
            tracing::warn!(?other, "a connection must start with Hello; closed");
            return forget(shared, &conn);
        }
        Err(_) => return forget(shared, &conn),
    };
    let pid = match rustix::net::sockopt::socket_peercred(conn.as_fd()) {
        Ok(cred) => cred.pid.as_raw_nonzero().get(),
        Err(e) => {
            tracing::warn!(%e, "no peer credentials; connection closed");
            return forget(shared, &conn);
        }
    };
    let process = shared.registry.attach(token, pid);
    // The notify connection is in place before the process hears back, so
    // its first mmap finds it; its status page follows the reply.
    let mut status = None;
    let hello = match role {
        Role::Notify => match process.set_notify(Arc::clone(&conn)) {
            Ok(page) => {
                status = Some(page);
                Reply::Hello { server_pid: std::process::id(), bdfs: shared.bdfs() }
            }
            Err(e) => {
                tracing::warn!(pid, %e, "notify connection refused (a second one, or no status page)");
                Reply::Err { errno: e.raw_os_error() }
            }
        },
        Role::Control => Reply::Hello { server_pid: std::process::id(), bdfs: shared.bdfs() },
    };
    let accepted = matches!(hello, Reply::Hello { .. });
    let sent = transport::send(conn.as_ref(), &hello, &[]).and_then(|()| match status {
        Some(page) => {
            let msg = wire::Notify::StatusPage { slots: page.slots() as u32 };
            transport::send(conn.as_ref(), &msg, &[page.fd()])
        }
        None => Ok(()),
    });
    if sent.is_ok() && accepted {
        tracing::debug!(pid, token, ?role, "connection");
        match role {
            Role::Notify => serve_notify(&process, &conn),
            Role::Control => serve_control(shared, &process, &conn),
        }
    } else if role == Role::Notify && accepted {
        process.notify_closed();
    }
    shared.registry.detach(&process);
    forget(shared, &conn);
}

/// Drops a connection from the shutdown list.
fn forget(shared: &Shared, conn: &Arc<OwnedFd>) {
    shared.connections.lock().unwrap_or_else(|e| e.into_inner()).retain(|c| !Arc::ptr_eq(c, conn));
}

/// The notify connection: the server sends on it (from revoking threads);
/// this thread only collects the acks.
fn serve_notify(process: &Arc<Process>, conn: &Arc<OwnedFd>) {
    loop {
        match transport::recv::<Request>(conn.as_ref()) {
            Ok((Request::Ack { seq }, _)) => process.ack(seq),
            Ok((other, _)) => tracing::warn!(pid = process.pid, ?other, "only acks travel on a notify connection"),
            Err(WireError::Malformed) => tracing::warn!(pid = process.pid, "malformed packet on the notify connection"),
            Err(_) => break,
        }
    }
    process.notify_closed();
}

/// A control connection: one reply per request.
fn serve_control(shared: &Shared, process: &Arc<Process>, conn: &OwnedFd) {
    loop {
        let (request, fds) = match transport::recv::<Request>(conn) {
            Ok(r) => r,
            Err(WireError::Malformed) => {
                // Nothing sensible to answer; the process's call fails.
                if transport::send(conn, &Reply::Err { errno: Errno::INVAL.raw_os_error() }, &[]).is_err() {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        let sent = match request {
            Request::MmioBegin { mapping } => crate::mmio::serve(conn, process, mapping),
            // Answers themselves, or the end of an access already over.
            Request::Ack { seq } => {
                process.ack(seq);
                Ok(())
            }
            Request::MmioEnd => Ok(()),
            request => dispatch(shared, process, conn, request, fds),
        };
        if sent.is_err() {
            return;
        }
    }
}

fn errno_reply(e: Errno) -> Reply {
    Reply::Err { errno: e.raw_os_error() }
}

/// The open file a request is about: the first fd attached.
fn object_of(shared: &Shared, fds: &mut Vec<OwnedFd>) -> Result<Arc<OpenFile>, Errno> {
    if fds.is_empty() {
        return Err(Errno::BADF);
    }
    let fd = fds.remove(0);
    shared.objects.lookup(&fd).ok_or(Errno::BADF)
}

/// Handles one request and sends its reply.
fn dispatch(
    shared: &Shared,
    process: &Arc<Process>,
    conn: &OwnedFd,
    request: Request,
    mut fds: Vec<OwnedFd>,
) -> Result<(), WireError> {
    let reply = match request {
        Request::Open { path, flags } => match crate::open::open(shared, &path, flags) {
            Ok((kind, fd)) => return transport::send(conn, &Reply::Opened { kind }, &[fd.as_fd()]),
            Err(e) => errno_reply(e),
        },
        Request::Lookup { path } => Reply::Node(crate::open::lookup(shared, &path)),
        Request::Ioctl { request, arg, bad_fds } => match object_of(shared, &mut fds) {
            Ok(file) => {
                let mut slots = ArgFds::new(file.kind(), request, &arg, &bad_fds, fds.drain(..));
                match ioctl(shared, process, &file, request, &arg, &mut slots) {
                    Ok(Answer { ret, out, fd: Some(fd) }) => {
                        let reply = Reply::Ioctl { ret, out, ret_fd: true };
                        return transport::send(conn, &reply, &[fd.as_fd()]);
                    }
                    Ok(Answer { ret, out, fd: None }) => Reply::Ioctl { ret, out, ret_fd: false },
                    Err(Failure::Errno(e)) => errno_reply(e),
                    Err(Failure::WithOut(e, out)) => Reply::IoctlErr { errno: e.raw_os_error(), out },
                }
            }
            Err(e) => errno_reply(e),
        },
        Request::Pread { offset, len } => match object_of(shared, &mut fds).and_then(|f| check_rw(&f, false)) {
            Ok(dev) => dev.pread(offset, len).map_or_else(errno_reply, Reply::Data),
            Err(e) => errno_reply(e),
        },
        Request::Pwrite { offset, data } => match object_of(shared, &mut fds).and_then(|f| check_rw(&f, true)) {
            Ok(dev) => dev.pwrite(offset, &data).map_or_else(errno_reply, |n| Reply::Count(n as u64)),
            Err(e) => errno_reply(e),
        },
        Request::Read { len } => rw_at_pos(shared, &mut fds, false, |dev, pos| {
            dev.pread(pos, len).map(|d| {
                let n = d.len() as u64;
                (Reply::Data(d), n)
            })
        }),
        Request::Write { data } => rw_at_pos(shared, &mut fds, true, |dev, pos| {
            dev.pwrite(pos, &data).map(|n| (Reply::Count(n as u64), n as u64))
        }),
        Request::Mmap { mapping, len, offset, write, shared: map_shared } => match object_of(shared, &mut fds) {
            Ok(file) => {
                let args = MmapArgs { addr: None, len, write, shared: map_shared, offset };
                match crate::mapping::mmap(process, file, mapping, args) {
                    Ok(planned) => {
                        let memfds = crate::mapping::memfds(&planned, 0);
                        transport::send(conn, &Reply::Map(planned.plan.clone()), &memfds)?;
                        crate::mapping::frames_delivered(process, &planned, 0);
                        return Ok(());
                    }
                    Err(e) => errno_reply(e),
                }
            }
            Err(e) => errno_reply(e),
        },
        Request::Mapped { mapping, addr } => {
            crate::mapping::mapped(process, mapping, addr).map_or_else(errno_reply, |()| Reply::Ok)
        }
        Request::Unmapped { mapping } => {
            crate::mapping::unmapped(process, mapping).map_or_else(errno_reply, |()| Reply::Ok)
        }
        Request::Inherit { parent, mapping } => match shared.registry.get(parent) {
            Some(parent) if !Arc::ptr_eq(&parent, process) => {
                crate::mapping::inherit(process, &parent, mapping).map_or_else(errno_reply, |()| Reply::Ok)
            }
            _ => errno_reply(Errno::SRCH),
        },
        Request::Frames { mapping, skip } => match crate::mapping::replan(process, mapping) {
            Ok(planned) => {
                let skip = usize::try_from(skip).unwrap_or(usize::MAX);
                let memfds = crate::mapping::memfds(&planned, skip);
                transport::send(conn, &Reply::Count(memfds.len() as u64), &memfds)?;
                crate::mapping::frames_delivered(process, &planned, skip);
                return Ok(());
            }
            Err(e) => errno_reply(e),
        },
        Request::Sync => {
            shared.registry.reap_hung_up();
            shared.objects.reap_now();
            Reply::Ok
        }
        Request::Hello { .. } | Request::MmioRead { .. } | Request::MmioWrite { .. } => errno_reply(Errno::INVAL),
        // Handled by the caller.
        Request::MmioBegin { .. } | Request::MmioEnd | Request::Ack { .. } => errno_reply(Errno::INVAL),
    };
    transport::send(conn, &reply, &[])
}

/// `read(2)`/`write(2)`: at the open file's position, which then advances
/// by what was transferred.
fn rw_at_pos(
    shared: &Shared,
    fds: &mut Vec<OwnedFd>,
    write: bool,
    op: impl FnOnce(&crate::device::DeviceFile, u64) -> Result<(Reply, u64), Errno>,
) -> Reply {
    let file = match object_of(shared, fds) {
        Ok(f) => f,
        Err(e) => return errno_reply(e),
    };
    let dev = match check_rw(&file, write) {
        Ok(d) => d,
        Err(e) => return errno_reply(e),
    };
    let mut pos = file.pos.lock().unwrap_or_else(|e| e.into_inner());
    match op(&dev, *pos) {
        Ok((reply, n)) => {
            *pos = pos.saturating_add(n);
            reply
        }
        Err(e) => errno_reply(e),
    }
}

/// An ioctl, by the kind of the open file.
fn ioctl(
    shared: &Shared,
    process: &Process,
    file: &OpenFile,
    request: u64,
    arg: &IoctlArg,
    fds: &mut ArgFds,
) -> crate::args::IoctlResult {
    match &file.object {
        Object::Container(c) => c.ioctl(shared, request, arg, process),
        Object::Iommufd(i) => i.ioctl(shared, request, arg, process),
        Object::Group(g) => g.ioctl(shared, request, arg, fds),
        Object::Device(d) => d.ioctl(shared, request, arg, fds),
        Object::DmaBuf(b) => b.ioctl(shared, request, arg),
    }
}
