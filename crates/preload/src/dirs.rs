//! Directory streams of served directories (`opendir`/`readdir`).
//!
//! The listing is taken once, at `opendir`, from the server's view, with
//! `.` and `..` first as the kernel lists them, and each entry's type
//! looked up so that `d_type` is exact. `dirfd` gives a read-only
//! descriptor of `/` as a stand-in: the served directory has no descriptor
//! of its own (a call relative to it with a relative path passes through
//! to the host's `/`).
//!
//! Not interposed: `scandir`, `ftw`/`nftw` and `fdopendir`, which the C
//! library runs on its own internal open and getdents, so they list the
//! host's directories.

use std::os::fd::{AsRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use wire::Node;

use crate::{paths, pool, stat};

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Its name.
    pub(crate) name: Vec<u8>,
    /// `DT_*`.
    pub(crate) d_type: u8,
    /// The inode number `stat` gives it.
    pub(crate) ino: u64,
}

/// An open directory stream.
#[derive(Debug)]
pub(crate) struct Stream {
    entries: Vec<Entry>,
    pos: usize,
    stand_in: OwnedFd,
}

impl Stream {
    /// The next entry, if any.
    pub(crate) fn next_entry(&mut self) -> Option<&Entry> {
        let e = self.entries.get(self.pos)?;
        self.pos += 1;
        Some(e)
    }

    /// The position (`telldir`).
    pub(crate) fn tell(&self) -> usize {
        self.pos
    }

    /// Moves to a position (`seekdir`, `rewinddir`).
    pub(crate) fn seek(&mut self, pos: usize) {
        self.pos = pos.min(self.entries.len());
    }

    /// The stand-in descriptor (`dirfd`).
    pub(crate) fn fd(&self) -> i32 {
        self.stand_in.as_raw_fd()
    }
}

fn d_type(node: &Node) -> u8 {
    match node {
        Node::Dir(_) => libc::DT_DIR,
        Node::Link(_) => libc::DT_LNK,
        Node::File(_) => libc::DT_REG,
        Node::CharDev { .. } => libc::DT_CHR,
        Node::Missing => libc::DT_UNKNOWN,
    }
}

/// `opendir` of a served path.
pub(crate) fn open(path: &[u8]) -> Option<Result<Stream, Errno>> {
    let listed = paths::list(path)?;
    Some(listed.and_then(|(dir, nodes)| {
        let dir_ino = stat::ino(&dir);
        let mut entries = vec![
            Entry { name: b".".to_vec(), d_type: libc::DT_DIR, ino: dir_ino },
            Entry { name: b"..".to_vec(), d_type: libc::DT_DIR, ino: stat::ino(paths::parent(&dir)) },
        ];
        for (name, node) in nodes {
            let ino = stat::ino(&format!("{}/{name}", dir.trim_end_matches('/')));
            entries.push(Entry { d_type: d_type(&node), name: name.into_bytes(), ino });
        }
        let stand_in = rustix::fs::open("/", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Stream { entries, pos: 0, stand_in: pool::move_high(stand_in) })
    }))
}
