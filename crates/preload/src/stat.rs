//! `struct stat` and `struct statx` of a served path, as the host's
//! `/dev` (devtmpfs) and `/sys` (sysfs) would describe them: directories
//! `0755`, links `0777`, sysfs attributes `0444` of size 4096, device
//! nodes `0600` (`/dev/vfio/vfio` and `/dev/iommu` `0666`), owned by the
//! calling user (so that permission checks a program makes on its own pass),
//! times zero, inode numbers a hash of the path.
//!
//! The layouts are the x86-64 ones, written field by field at the offsets
//! the `libc` crate gives.

use std::mem::{offset_of, size_of};

use wire::Node;

/// `STATX_BASIC_STATS`.
const STATX_BASIC_STATS: u32 = 0x7ff;

/// What both structs say about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attrs {
    pub(crate) mode: u32,
    pub(crate) nlink: u64,
    pub(crate) size: u64,
    pub(crate) ino: u64,
    /// `(major, minor)` of the node itself.
    pub(crate) rdev: (u32, u32),
    /// `(major, minor)` of the filesystem holding it.
    pub(crate) dev: (u32, u32),
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The inode number of a served path: an FNV-1a hash, never 0.
pub(crate) fn ino(path: &str) -> u64 {
    let h = path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    h.max(1)
}

/// The attributes of `node` at canonical `path`.
pub(crate) fn attrs(path: &str, node: &Node) -> Attrs {
    let (mode, nlink, size, rdev) = match node {
        Node::Dir(entries) => (libc::S_IFDIR | 0o755, 2 + entries.len() as u64, 0, (0, 0)),
        Node::Link(t) => (libc::S_IFLNK | 0o777, 1, t.len() as u64, (0, 0)),
        Node::File(_) => (libc::S_IFREG | 0o444, 1, 4096, (0, 0)),
        Node::CharDev { major, minor } => {
            let perm = if path == "/dev/vfio/vfio" || path == "/dev/iommu" { 0o666 } else { 0o600 };
            (libc::S_IFCHR | perm, 1, 0, (*major, *minor))
        }
        Node::Missing => (0, 0, 0, (0, 0)),
    };
    // devtmpfs is 0:5 on most hosts; sysfs some other anonymous device.
    let dev = if path.starts_with("/dev") { (0, 5) } else { (0, 22) };
    Attrs {
        mode,
        nlink,
        size,
        ino: ino(path),
        rdev,
        dev,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    }
}

/// glibc's `makedev`.
fn makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0xff)
}

fn put<const N: usize>(out: &mut [u8], off: usize, v: [u8; N]) {
    out[off..off + N].copy_from_slice(&v);
}

/// A `struct stat` (the same as `struct stat64` on x86-64).
pub(crate) fn encode_stat((path, node): &(String, Node)) -> [u8; size_of::<libc::stat>()] {
    let a = attrs(path, node);
    let mut out = [0u8; size_of::<libc::stat>()];
    put(&mut out, offset_of!(libc::stat, st_dev), makedev(a.dev.0, a.dev.1).to_ne_bytes());
    put(&mut out, offset_of!(libc::stat, st_ino), a.ino.to_ne_bytes());
    put(&mut out, offset_of!(libc::stat, st_nlink), a.nlink.to_ne_bytes());
    put(&mut out, offset_of!(libc::stat, st_mode), a.mode.to_ne_bytes());
    put(&mut out, offset_of!(libc::stat, st_uid), a.uid.to_ne_bytes());
    put(&mut out, offset_of!(libc::stat, st_gid), a.gid.to_ne_bytes());
    put(&mut out, offset_of!(libc::stat, st_rdev), makedev(a.rdev.0, a.rdev.1).to_ne_bytes());
    put(&mut out, offset_of!(libc::stat, st_size), (a.size as i64).to_ne_bytes());
    put(&mut out, offset_of!(libc::stat, st_blksize), 4096i64.to_ne_bytes());
    out
}

/// A `struct statx` with the basic fields.
pub(crate) fn encode_statx((path, node): &(String, Node)) -> [u8; size_of::<libc::statx>()] {
    let a = attrs(path, node);
    let mut out = [0u8; size_of::<libc::statx>()];
    put(&mut out, offset_of!(libc::statx, stx_mask), STATX_BASIC_STATS.to_ne_bytes());
    put(&mut out, offset_of!(libc::statx, stx_blksize), 4096u32.to_ne_bytes());
    put(&mut out, offset_of!(libc::statx, stx_nlink), (a.nlink as u32).to_ne_bytes());
    put(&mut out, offset_of!(libc::statx, stx_uid), a.uid.to_ne_bytes());
    put(&mut out, offset_of!(libc::statx, stx_gid), a.gid.to_ne_bytes());
    put(&mut out, offset_of!(libc::statx, stx_mode), (a.mode as u16).to_ne_bytes());
    put(&mut out, offset_of!(libc::statx, stx_ino), a.ino.to_ne_bytes());
    put(&mut out, offset_of!(libc::statx, stx_size), a.size.to_ne_bytes());
    put(&mut out, offset_of!(libc::statx, stx_rdev_major), a.rdev.0.to_ne_bytes());
    put(&mut out, offset_of!(libc::statx, stx_rdev_minor), a.rdev.1.to_ne_bytes());
    put(&mut out, offset_of!(libc::statx, stx_dev_major), a.dev.0.to_ne_bytes());
    put(&mut out, offset_of!(libc::statx, stx_dev_minor), a.dev.1.to_ne_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
        b[off..off + N].try_into().unwrap()
    }

    #[test]
    fn a_group_node_is_a_character_device_with_its_numbers() {
        let st = encode_stat(&("/dev/vfio/3".to_owned(), Node::CharDev { major: 243, minor: 3 }));
        let mode = u32::from_ne_bytes(field(&st, offset_of!(libc::stat, st_mode)));
        assert_eq!(mode & libc::S_IFMT, libc::S_IFCHR);
        let rdev = u64::from_ne_bytes(field(&st, offset_of!(libc::stat, st_rdev)));
        assert_eq!((libc::major(rdev), libc::minor(rdev)), (243, 3));
    }

    #[test]
    fn a_link_has_the_length_of_its_target_and_statx_agrees() {
        let node = ("/sys/bus/pci/devices/0000:00:03.0/iommu_group".to_owned(), Node::Link("../x/7".to_owned()));
        let st = encode_stat(&node);
        assert_eq!(i64::from_ne_bytes(field(&st, offset_of!(libc::stat, st_size))), 6);
        let stx = encode_statx(&node);
        let mode = u16::from_ne_bytes(field(&stx, offset_of!(libc::statx, stx_mode)));
        assert_eq!(u32::from(mode) & libc::S_IFMT, libc::S_IFLNK);
        assert_eq!(u64::from_ne_bytes(field(&stx, offset_of!(libc::statx, stx_ino))), ino(&node.0));
    }
}
