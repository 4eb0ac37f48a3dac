//! The tag an object fd carries: one unread packet in the program's end of
//! the socket pair, saying "vfio-dmabuf object, this kind, this id".
//!
//! A process identifies an fd with one `recv(MSG_PEEK | MSG_DONTWAIT)`: on
//! anything that is not a socket it fails at once (`ENOTSOCK`), on a
//! foreign socket it finds no tag (peeking consumes nothing), and on ours
//! it finds the tag however the fd reached the process (`dup`, `fork`,
//! `SCM_RIGHTS`). Nothing is cached, so nothing goes stale when fd numbers
//! or socket inodes are reused. The tag only routes the call: the server
//! identifies the fd attached to every request by itself, from its table.

use std::os::fd::BorrowedFd;

use rustix::net::RecvFlags;

use crate::msg::ObjectKind;

const MAGIC: &[u8; 12] = b"vfio-dmabuf\0";

/// Length of a tag packet.
pub const TAG_LEN: usize = MAGIC.len() + 1 + 8;

/// What an object fd's tag says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// The object's kind.
    pub kind: ObjectKind,
    /// The server's id of the object.
    pub id: u64,
}

impl Tag {
    /// The packet the server leaves in the program's end.
    pub fn encode(self) -> [u8; TAG_LEN] {
        let mut out = [0u8; TAG_LEN];
        out[..MAGIC.len()].copy_from_slice(MAGIC);
        out[MAGIC.len()] = self.kind.code();
        out[MAGIC.len() + 1..].copy_from_slice(&self.id.to_le_bytes());
        out
    }

    /// The tag in `bytes`, if they are one.
    pub fn decode(bytes: &[u8]) -> Option<Tag> {
        if bytes.len() != TAG_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return None;
        }
        let kind = ObjectKind::from_code(bytes[MAGIC.len()])?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[MAGIC.len() + 1..]);
        Some(Tag { kind, id: u64::from_le_bytes(id) })
    }
}

/// The tag of `fd`, if it is one of our object fds. One system call, no
/// allocation, safe in a signal handler; never blocks and never consumes.
pub fn peek(fd: BorrowedFd<'_>) -> Option<Tag> {
    let mut buf = [0u8; TAG_LEN + 1];
    match rustix::net::recv(fd, &mut buf, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((n, total)) if n == TAG_LEN && total == TAG_LEN => Tag::decode(&buf[..n]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{socketpair, AddressFamily, SendFlags, SocketFlags, SocketType};
    use std::os::fd::AsFd;

    #[test]
    fn a_tagged_end_is_recognised_every_time_and_others_are_not() {
        let (server, program) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
            .unwrap_or_else(|e| panic!("socketpair: {e}"));
        let tag = Tag { kind: ObjectKind::Device, id: 42 };
        rustix::net::send(&server, &tag.encode(), SendFlags::empty()).unwrap_or_else(|e| panic!("send: {e}"));
        assert_eq!(peek(program.as_fd()), Some(tag));
        assert_eq!(peek(program.as_fd()), Some(tag), "peeking consumes nothing");
        assert_eq!(peek(server.as_fd()), None, "the server's end holds no tag");
        let file = std::fs::File::open("/proc/self/status").unwrap_or_else(|e| panic!("open: {e}"));
        assert_eq!(peek(file.as_fd()), None);
    }

    #[test]
    fn a_packet_that_only_resembles_a_tag_is_not_one() {
        let mut bytes = Tag { kind: ObjectKind::Group, id: 1 }.encode();
        assert!(Tag::decode(&bytes).is_some());
        bytes[MAGIC.len()] = b'?';
        assert_eq!(Tag::decode(&bytes), None);
        assert_eq!(Tag::decode(&bytes[..TAG_LEN - 1]), None);
    }
}
