//! The paths the server serves, and the calls on them: open, stat,
//! access, readlink, realpath.
//!
//! Served: `/dev/vfio` and everything below, `/dev/iommu`,
//! `/sys/kernel/iommu_groups/**`, `/sys/class/vfio-dev/**`, and
//! `/sys/bus/pci/devices/<BDF>/**` for the addresses the server names in
//! its `Hello`. Under those prefixes the server's view replaces the host's
//! entirely ([`wire::Request::Lookup`]); every other path passes through.
//!
//! Paths are taken as the program wrote them when absolute, with `.`, `..`
//! and repeated slashes folded (lexically, as the server's links never
//! lead out of the view). A relative path, or one relative to a directory
//! fd, passes through: the served directories cannot be a working
//! directory, since the host does not have them.
//!
//! Symbolic links of the view (`<BDF>/iommu_group`) are followed as the
//! kernel follows them, at most 40 deep (`ELOOP`). The view shows
//! `/sys/bus/pci/devices/<BDF>` as a directory (on a host it is a link
//! into `/sys/devices`), so its relative links count their `..` from there.

use std::os::fd::OwnedFd;

use rustix::fs::{MemfdFlags, OFlags};
use rustix::io::Errno;
use wire::{Node, Reply, Request};

use crate::process::{self, Process};
use crate::{fds, pool};

/// Symbolic links followed in one resolution (`MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// `path` with `.`, `..` and empty components folded, when absolute.
pub(crate) fn normalize(path: &[u8]) -> Option<String> {
    let path = std::str::from_utf8(path).ok()?;
    if !path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether a normalized path belongs to the served view, given the served
/// PCI addresses (asked for only when the path could be one of theirs).
pub(crate) fn is_served(path: &str, bdfs: impl FnOnce() -> Vec<String>) -> bool {
    if ["/dev/vfio", "/dev/iommu", "/sys/kernel/iommu_groups", "/sys/class/vfio-dev"].iter().any(|p| under(path, p)) {
        return true;
    }
    let Some(rest) = path.strip_prefix("/sys/bus/pci/devices/") else { return false };
    let bdf = rest.split('/').next().unwrap_or("");
    !bdf.is_empty() && bdfs().iter().any(|b| b == bdf)
}

/// The served path a call names, with the process that serves it.
fn served(dirfd: i32, path: &[u8]) -> Option<(&'static Process, String)> {
    if dirfd != libc::AT_FDCWD && path.first() != Some(&b'/') {
        return None;
    }
    if !(path.starts_with(b"/dev/") || path.starts_with(b"/sys/") || path.starts_with(b"//")) {
        return None;
    }
    let p = process::current()?;
    let path = normalize(path)?;
    is_served(&path, || p.served_bdfs().to_vec()).then_some((p, path))
}

fn lookup(p: &Process, path: &str) -> Result<Node, Errno> {
    match p.call(&Request::Lookup { path: path.to_owned() }, &[])?.0 {
        Reply::Node(n) => Ok(n),
        other => Err(pool::unexpected(&other)),
    }
}

/// The directory holding `path` (`/` for a top-level entry).
pub(crate) fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// `target` of a link at `link`, as a normalized absolute path.
fn link_target(link: &str, target: &str) -> String {
    let joined = if target.starts_with('/') { target.to_owned() } else { format!("{}/{target}", parent(link)) };
    normalize(joined.as_bytes()).unwrap_or(joined)
}

/// Resolves `path` within the view: its canonical path and node. The last
/// component's link is followed when `follow`.
///
/// # Errors
///
/// `ENOENT` for a missing component (or a link leading out of the view),
/// `ENOTDIR` for a component that is not a directory, `ELOOP` for too
/// many links; the server's errno.
fn resolve(p: &Process, path: &str, follow: bool) -> Result<(String, Node), Errno> {
    let mut path = path.to_owned();
    let mut links = 0;
    'restart: loop {
        let node = lookup(p, &path)?;
        match node {
            Node::Link(ref t) if follow => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::LOOP);
                }
                path = link_target(&path, t);
                continue 'restart;
            }
            Node::Missing => {}
            node => return Ok((path, node)),
        }
        // Missing as a whole: a link or a file may sit in the middle.
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for i in 1..comps.len() {
            let prefix = format!("/{}", comps[..i].join("/"));
            match lookup(p, &prefix)? {
                Node::Dir(_) => {}
                Node::Link(t) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Errno::LOOP);
                    }
                    let target = link_target(&prefix, &t);
                    path = format!("{target}/{}", comps[i..].join("/"));
                    continue 'restart;
                }
                Node::Missing => return Err(Errno::NOENT),
                Node::File(_) | Node::CharDev { .. } => return Err(Errno::NOTDIR),
            }
        }
        return Err(Errno::NOENT);
    }
}

/// What a served path is, for `stat`: its canonical path and node.
pub(crate) fn stat(dirfd: i32, path: &[u8], follow: bool) -> Option<Result<(String, Node), Errno>> {
    let (p, path) = served(dirfd, path)?;
    Some(resolve(p, &path, follow))
}

/// `access`/`faccessat`: whether a served path exists (the view has no
/// permissions to check beyond that).
pub(crate) fn access(dirfd: i32, path: &[u8], flags: i32) -> Option<Result<(), Errno>> {
    let (p, path) = served(dirfd, path)?;
    Some(resolve(p, &path, flags & libc::AT_SYMLINK_NOFOLLOW == 0).map(drop))
}

/// `readlink`: the target of a served link.
///
/// # Errors
///
/// `EINVAL` when the path is not a link; as [`resolve`] otherwise.
pub(crate) fn readlink(dirfd: i32, path: &[u8]) -> Option<Result<Vec<u8>, Errno>> {
    let (p, path) = served(dirfd, path)?;
    Some(resolve(p, &path, false).and_then(|(_, n)| match n {
        Node::Link(t) => Ok(t.into_bytes()),
        _ => Err(Errno::INVAL),
    }))
}

/// `realpath`: the canonical form of a served path.
pub(crate) fn realpath(path: &[u8]) -> Option<Result<String, Errno>> {
    let (p, path) = served(libc::AT_FDCWD, path)?;
    Some(resolve(p, &path, true).map(|(c, _)| c))
}

/// A directory's canonical path and its entries' names and nodes.
pub(crate) type Listing = (String, Vec<(String, Node)>);

/// The entries of a served directory: its canonical path and, for each
/// entry, its name and node (links not followed).
///
/// # Errors
///
/// `ENOTDIR` when the path is not a directory; as [`resolve`] otherwise.
pub(crate) fn list(path: &[u8]) -> Option<Result<Listing, Errno>> {
    let (p, path) = served(libc::AT_FDCWD, path)?;
    Some(resolve(p, &path, true).and_then(|(dir, node)| {
        let Node::Dir(names) = node else { return Err(Errno::NOTDIR) };
        let entries = names
            .into_iter()
            .map(|name| {
                let node = lookup(p, &format!("{}/{name}", dir.trim_end_matches('/')))?;
                Ok((name, node))
            })
            .collect::<Result<Vec<_>, Errno>>()?;
        Ok((dir, entries))
    }))
}

/// The open flags of an `fopen` mode string.
pub(crate) fn fopen_flags(mode: &[u8]) -> i32 {
    let plus = mode.contains(&b'+');
    let base = match (mode.first(), plus) {
        (Some(b'r'), false) => libc::O_RDONLY,
        (Some(b'r'), true) => libc::O_RDWR,
        (Some(b'w'), false) => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        (Some(b'w'), true) => libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
        (Some(b'a'), false) => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
        (Some(b'a'), true) => libc::O_RDWR | libc::O_CREAT | libc::O_APPEND,
        _ => libc::O_RDONLY,
    };
    let cloexec = if mode.contains(&b'e') { libc::O_CLOEXEC } else { 0 };
    let excl = if mode.contains(&b'x') { libc::O_EXCL } else { 0 };
    base | cloexec | excl
}

/// `open` of a served path: a device node is opened by the server (an
/// object fd); a sysfs file becomes a memfd holding its content; a
/// directory a read-only descriptor of `/` (a stand-in: reading entries
/// goes through `opendir`, which we serve).
///
/// # Errors
///
/// `EEXIST` with `O_CREAT|O_EXCL` on an existing path; `ELOOP` with
/// `O_NOFOLLOW` on a link; `ENOTDIR` with `O_DIRECTORY` on a non-directory;
/// `EISDIR` when a directory is opened for writing; as [`resolve`]
/// otherwise, and the server's errno for a device open.
pub(crate) fn open(dirfd: i32, path: &[u8], flags: i32, _mode: u32) -> Option<Result<OwnedFd, Errno>> {
    let (p, path) = served(dirfd, path)?;
    Some(open_served(p, &path, flags))
}

fn open_served(p: &Process, path: &str, flags: i32) -> Result<OwnedFd, Errno> {
    let (path, node) = match resolve(p, path, flags & libc::O_NOFOLLOW == 0) {
        Ok(r) => r,
        Err(Errno::NOENT) if flags & libc::O_CREAT != 0 => return Err(Errno::ACCESS),
        Err(e) => return Err(e),
    };
    if flags & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL {
        return Err(Errno::EXIST);
    }
    let cloexec = flags & libc::O_CLOEXEC != 0;
    let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
    if flags & libc::O_DIRECTORY != 0 && !matches!(node, Node::Dir(_)) {
        return Err(Errno::NOTDIR);
    }
    match node {
        Node::Link(_) => Err(Errno::LOOP),
        Node::Missing => Err(Errno::NOENT),
        Node::Dir(_) if writes => Err(Errno::ISDIR),
        Node::Dir(_) => {
            let o = OFlags::RDONLY | OFlags::DIRECTORY | if cloexec { OFlags::CLOEXEC } else { OFlags::empty() };
            Ok(rustix::fs::open("/", o, rustix::fs::Mode::empty())?)
        }
        Node::File(content) => {
            let mf = if cloexec { MemfdFlags::CLOEXEC } else { MemfdFlags::empty() };
            let fd = rustix::fs::memfd_create(path.as_str(), mf)?;
            let mut done = 0;
            while done < content.len() {
                done += rustix::io::write(&fd, &content[done..])?;
            }
            rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(0))?;
            Ok(fd)
        }
        Node::CharDev { .. } => {
            let (reply, mut got) = p.call(&Request::Open { path: path.clone(), flags }, &[])?;
            let Reply::Opened { kind } = reply else { return Err(pool::unexpected(&reply)) };
            let fd = got.drain(..).next().ok_or_else(|| pool::unexpected(&Reply::Opened { kind }))?;
            if !cloexec {
                rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty())?;
            }
            tracing::debug!(%path, ?kind, "opened");
            Ok(fd)
        }
    }
    .inspect(|fd| {
        let raw = std::os::fd::AsRawFd::as_raw_fd(fd);
        fds::mark(raw);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_and_slashes_fold_and_relative_paths_are_not_ours() {
        assert_eq!(normalize(b"/dev//vfio/./3").as_deref(), Some("/dev/vfio/3"));
        assert_eq!(
            normalize(b"/sys/bus/pci/devices/0000:00:03.0/../0000:00:04.0/").as_deref(),
            Some("/sys/bus/pci/devices/0000:00:04.0")
        );
        assert_eq!(normalize(b"/..").as_deref(), Some("/"));
        assert_eq!(normalize(b"dev/vfio"), None);
    }

    #[test]
    fn only_the_view_and_served_addresses_are_served() {
        let bdfs = || vec!["0000:00:03.0".to_owned()];
        assert!(is_served("/dev/vfio", bdfs));
        assert!(is_served("/dev/vfio/devices/vfio0", bdfs));
        assert!(is_served("/dev/iommu", bdfs));
        assert!(!is_served("/dev/iommufd", bdfs));
        assert!(!is_served("/dev/vfiox", bdfs));
        assert!(is_served("/sys/kernel/iommu_groups/7/devices/0000:00:03.0", bdfs));
        assert!(is_served("/sys/bus/pci/devices/0000:00:03.0/iommu_group", bdfs));
        assert!(!is_served("/sys/bus/pci/devices/0000:00:04.0", bdfs));
        assert!(!is_served("/sys/bus/pci/devices", || panic!("not asked for the list itself")));
    }

    #[test]
    fn links_resolve_against_their_directory() {
        assert_eq!(
            link_target("/sys/bus/pci/devices/0000:00:03.0/iommu_group", "../../../../kernel/iommu_groups/3"),
            "/sys/kernel/iommu_groups/3"
        );
        assert_eq!(link_target("/a/b", "/c/d"), "/c/d");
    }

    #[test]
    fn fopen_modes_map_to_open_flags() {
        assert_eq!(fopen_flags(b"r"), libc::O_RDONLY);
        assert_eq!(fopen_flags(b"re"), libc::O_RDONLY | libc::O_CLOEXEC);
        assert_eq!(fopen_flags(b"w+"), libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    }
}
