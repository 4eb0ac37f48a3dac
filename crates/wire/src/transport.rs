//! One message per `SOCK_SEQPACKET` packet, with fds beside it.
//!
//! Two forms: [`send`]/[`recv`] for the ordinary path (allocating, any
//! message, fds attached), and [`send_small`]/[`recv_small`] for a signal
//! handler (a stack buffer, no fds, no allocation: only for messages that
//! own no heap data, such as the register-access ones).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{MAX_FDS, MAX_PACKET};

/// Why a packet could not be exchanged.
#[derive(Debug)]
pub enum WireError {
    /// The system call failed.
    Sys(Errno),
    /// The peer closed the connection.
    Closed,
    /// The packet did not decode, or was larger than [`MAX_PACKET`].
    Malformed,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Sys(e) => write!(f, "{e}"),
            WireError::Closed => f.write_str("the peer closed the connection"),
            WireError::Malformed => f.write_str("malformed packet"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<WireError> for io::Error {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Sys(e) => e.into(),
            WireError::Closed => io::Error::from(io::ErrorKind::UnexpectedEof),
            WireError::Malformed => io::Error::from(io::ErrorKind::InvalidData),
        }
    }
}

/// Sends `msg` as one packet with `fds` attached.
///
/// # Errors
///
/// [`WireError::Malformed`] if it encodes to more than [`MAX_PACKET`] bytes
/// or `fds` has more than [`MAX_FDS`]; the errno of `sendmsg` otherwise
/// (`EPIPE` when the peer is gone).
pub fn send<T: Serialize>(sock: impl AsFd, msg: &T, fds: &[BorrowedFd<'_>]) -> Result<(), WireError> {
    let bytes = postcard::to_allocvec(msg).map_err(|_| WireError::Malformed)?;
    if bytes.len() > MAX_PACKET || fds.len() > MAX_FDS {
        return Err(WireError::Malformed);
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(WireError::Malformed);
    }
    send_all(sock.as_fd(), &bytes, &mut control, SendFlags::empty())
}

fn send_all(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    control: &mut SendAncillaryBuffer<'_, '_, '_>,
    flags: SendFlags,
) -> Result<(), WireError> {
    loop {
        match rustix::net::sendmsg(sock, &[io::IoSlice::new(bytes)], control, SendFlags::NOSIGNAL | flags) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(_) => return Err(WireError::Malformed),
            Err(Errno::INTR) => continue,
            Err(Errno::PIPE) | Err(Errno::CONNRESET) => return Err(WireError::Closed),
            Err(e) => return Err(WireError::Sys(e)),
        }
    }
}

/// Receives one packet and the fds beside it.
///
/// # Errors
///
/// [`WireError::Closed`] at end of stream; [`WireError::Malformed`] for a
/// packet that does not decode as `T` or was truncated (its fds are
/// closed); the errno of `recvmsg` otherwise (`EAGAIN` after a receive
/// time-out).
pub fn recv<T: DeserializeOwned>(sock: impl AsFd) -> Result<(T, Vec<OwnedFd>), WireError> {
    let mut buf = vec![0u8; MAX_PACKET];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match rustix::net::recvmsg(
            sock.as_fd(),
            &mut [io::IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(r) => break r,
            Err(Errno::INTR) => continue,
            Err(Errno::CONNRESET) => return Err(WireError::Closed),
            Err(e) => return Err(WireError::Sys(e)),
        }
    };
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(iter) = m {
            fds.extend(iter);
        }
    }
    if got.bytes == 0 && fds.is_empty() {
        return Err(WireError::Closed);
    }
    if got.flags.contains(rustix::net::ReturnFlags::TRUNC) || got.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(WireError::Malformed);
    }
    let msg = postcard::from_bytes(&buf[..got.bytes]).map_err(|_| WireError::Malformed)?;
    Ok((msg, fds))
}

/// Size of the stack buffer of [`send_small`] and [`recv_small`].
pub const SMALL_PACKET: usize = 64;

/// Sends `msg` (which must own no heap data) as one packet, encoded on the
/// stack: usable in a signal handler.
///
/// # Errors
///
/// As [`send`].
pub fn send_small<T: Serialize>(sock: BorrowedFd<'_>, msg: &T) -> Result<(), WireError> {
    let mut buf = [0u8; SMALL_PACKET];
    let bytes = postcard::to_slice(msg, &mut buf).map_err(|_| WireError::Malformed)?;
    let mut none: [MaybeUninit<u8>; 0] = [];
    send_all(sock, bytes, &mut SendAncillaryBuffer::new(&mut none), SendFlags::empty())
}

/// [`send_small`] that never waits: `EAGAIN` when the peer's queue is
/// full (a peer that reads nothing must not hold the sender).
///
/// # Errors
///
/// As [`send`], and `EAGAIN`.
pub fn send_small_nowait<T: Serialize>(sock: BorrowedFd<'_>, msg: &T) -> Result<(), WireError> {
    let mut buf = [0u8; SMALL_PACKET];
    let bytes = postcard::to_slice(msg, &mut buf).map_err(|_| WireError::Malformed)?;
    let mut none: [MaybeUninit<u8>; 0] = [];
    send_all(sock, bytes, &mut SendAncillaryBuffer::new(&mut none), SendFlags::DONTWAIT)
}

/// Receives one packet of at most [`SMALL_PACKET`] bytes into a stack
/// buffer and decodes it; `T` must own no heap data (decoding then does
/// not allocate). Attached fds are not accepted.
///
/// # Errors
///
/// As [`recv`].
pub fn recv_small<T: DeserializeOwned>(sock: BorrowedFd<'_>) -> Result<T, WireError> {
    let mut buf = [0u8; SMALL_PACKET];
    let n = loop {
        match rustix::net::recv(sock, &mut buf, RecvFlags::empty()) {
            Ok((n, total)) if n == total => break n,
            Ok(_) => return Err(WireError::Malformed),
            Err(Errno::INTR) => continue,
            Err(Errno::CONNRESET) => return Err(WireError::Closed),
            Err(e) => return Err(WireError::Sys(e)),
        }
    };
    if n == 0 {
        return Err(WireError::Closed);
    }
    postcard::from_bytes(&buf[..n]).map_err(|_| WireError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{IoctlArg, MmioAt, Reply, Request, Role};
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
            .unwrap_or_else(|e| panic!("socketpair: {e}"))
    }

    #[test]
    fn a_request_with_fds_arrives_whole() {
        let (a, b) = pair();
        let (x, _y) = pair();
        let req = Request::Ioctl { request: 0x3b75, arg: IoctlArg::Bytes(vec![1, 2, 3]), bad_fds: vec![] };
        send(&a, &req, &[x.as_fd(), x.as_fd()]).unwrap_or_else(|e| panic!("send: {e}"));
        let (got, fds): (Request, _) = recv(&b).unwrap_or_else(|e| panic!("recv: {e}"));
        assert_eq!(got, req);
        assert_eq!(fds.len(), 2);
    }

    #[test]
    fn small_messages_round_trip_on_the_stack() {
        let (a, b) = pair();
        let req =
            Request::MmioWrite { at: MmioAt { addr: u64::MAX, vm_start: 1, vm_pgoff: 2 }, width: 8, value: u64::MAX };
        send_small(a.as_fd(), &req).unwrap_or_else(|e| panic!("send: {e}"));
        assert_eq!(recv_small::<Request>(b.as_fd()).unwrap_or_else(|e| panic!("recv: {e}")), req);
        send_small(b.as_fd(), &Reply::Value(7)).unwrap_or_else(|e| panic!("send: {e}"));
        assert_eq!(recv_small::<Reply>(a.as_fd()).unwrap_or_else(|e| panic!("recv: {e}")), Reply::Value(7));
    }

    #[test]
    fn a_closed_peer_is_reported_as_closed() {
        let (a, b) = pair();
        drop(b);
        assert!(matches!(send(&a, &Request::Hello { token: 1, role: Role::Control }, &[]), Err(WireError::Closed)));
        assert!(matches!(recv::<Request>(&a), Err(WireError::Closed)));
    }

    #[test]
    fn a_packet_that_is_not_a_message_is_malformed() {
        let (a, b) = pair();
        rustix::net::send(&a, &[0xff; 9], SendFlags::empty()).unwrap_or_else(|e| panic!("send: {e}"));
        assert!(matches!(recv::<Request>(&b), Err(WireError::Malformed)));
    }
}
