//! Register accesses through a process's mapping of a register BAR: the
//! process traps the access (its own SIGBUS handler decodes it) and
//! forwards it here. `MmioBegin` takes the locks a fault of the mapping
//! takes ([`vfio::RemoteVma::mmio`]); the reads and writes of the one
//! instruction follow on the same connection, and `MmioEnd` lets go. A
//! receive time-out bounds how long a process that stopped answering can
//! hold the device's `memory_lock`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use mm::{MmioAddr, Width};
use page::{PgOff, VirtAddr};
use rustix::io::Errno;
use rustix::net::sockopt;
use wire::msg::MmioAt;
use wire::transport::WireError;
use wire::{Reply, Request};

use crate::process::Process;

/// How long the server waits for the next access of a held instruction.
const HOLD_TIMEOUT: Duration = Duration::from_secs(1);

fn width(w: u8) -> Option<Width> {
    match w {
        1 => Some(Width::U8),
        2 => Some(Width::U16),
        4 => Some(Width::U32),
        8 => Some(Width::U64),
        _ => None,
    }
}

fn mmio_addr(at: MmioAt) -> MmioAddr {
    MmioAddr { addr: VirtAddr(at.addr), vm_start: VirtAddr(at.vm_start), vm_pgoff: PgOff(at.vm_pgoff) }
}

fn err(e: Errno) -> Reply {
    Reply::Err { errno: e.raw_os_error() }
}

/// One held instruction on `conn`, after `MmioBegin{mapping}`: `Ok` then
/// the accesses until `MmioEnd`; or `ENODEV` at once when the mapping is
/// revoked, the device does not decode memory, or the mapping is not the
/// process's (the process raises SIGBUS).
///
/// # Errors
///
/// The connection failed or broke the protocol (a request other than an
/// access, or none within the time-out): the caller closes it.
pub(crate) fn serve(conn: &OwnedFd, process: &Process, mapping: u64) -> Result<(), WireError> {
    let record = process.mappings.lock().unwrap_or_else(|e| e.into_inner()).get(&mapping).cloned();
    let Some(record) = record else {
        return wire::transport::send(conn, &err(Errno::NODEV), &[]);
    };
    sockopt::set_socket_timeout(conn.as_fd(), sockopt::Timeout::Recv, Some(HOLD_TIMEOUT)).map_err(WireError::Sys)?;
    let mut outcome = Ok(());
    let held = record.vma.mmio().with_registers(&mut |regs| {
        if let Err(e) = wire::transport::send(conn, &Reply::Ok, &[]) {
            outcome = Err(e);
            return;
        }
        loop {
            let reply = match wire::transport::recv::<Request>(conn) {
                Ok((Request::MmioRead { at, width: w }, _)) => match width(w) {
                    Some(w) => match regs.read(mmio_addr(at), w) {
                        // The low `width` bytes are the value.
                        Ok(v) => Reply::Value(if w == Width::U64 { v } else { v & ((1u64 << (8 * w.bytes())) - 1) }),
                        Err(_) => err(Errno::NODEV),
                    },
                    None => err(Errno::INVAL),
                },
                Ok((Request::MmioWrite { at, width: w, value }, _)) => match width(w) {
                    Some(w) => match regs.write(mmio_addr(at), w, value) {
                        Ok(()) => Reply::Ok,
                        Err(_) => err(Errno::NODEV),
                    },
                    None => err(Errno::INVAL),
                },
                Ok((Request::MmioEnd, _)) => return,
                Ok((other, _)) => {
                    tracing::warn!(
                        pid = process.pid,
                        ?other,
                        "request inside a held register access; connection closed"
                    );
                    outcome = Err(WireError::Malformed);
                    return;
                }
                Err(e) => {
                    if matches!(e, WireError::Sys(Errno::AGAIN)) {
                        tracing::error!(
                            pid = process.pid,
                            mapping,
                            "process held a register access past {HOLD_TIMEOUT:?}; released and connection closed"
                        );
                    }
                    outcome = Err(e);
                    return;
                }
            };
            if let Err(e) = wire::transport::send(conn, &reply, &[]) {
                outcome = Err(e);
                return;
            }
        }
    });
    let _ = sockopt::set_socket_timeout(conn.as_fd(), sockopt::Timeout::Recv, None);
    drop(record);
    match held {
        Ok(()) => outcome,
        Err(_) => wire::transport::send(conn, &err(Errno::NODEV), &[]),
    }
}
