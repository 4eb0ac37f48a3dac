//! Buffer handles as real file descriptors, and the fd → buffer lookup.
//!
//! Analogous to Linux's `dma_buf_fd()` and `dma_buf_get()`. A handle owns one real
//! descriptor, an empty sealed memfd named `dmabuf:<name>` that serves only as a token:
//! its number is a real, unique fd that shows in `/proc/self/fd`, so features that carry
//! an `s32 dmabuf_fd` fail exactly as the kernel does for a bad fd (`EBADF`) and for an
//! open fd that is not a dma-buf (`EINVAL`). The buffer's memory is not behind it.
//!
//! A process-wide table maps each live handle's number to its buffer. Every descriptor of
//! ours is created and closed with the table lock held, and entered or removed in the
//! same critical section, so a lookup never sees a number of ours half-installed or
//! already closed. This relies on nothing else in the process closing these descriptors,
//! which holds because [`DmaBufFd`] is their only owner and never lends them out.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, MemfdFlags, SealFlags};

use crate::buffer::lock;
use crate::{DmaBuf, Error};

/// Live handles by descriptor number. A leaf lock: no buffer lock is taken and no buffer
/// is dropped while it is held.
static FD_TABLE: Mutex<BTreeMap<i32, Arc<DmaBuf>>> = Mutex::new(BTreeMap::new());

/// Longest memfd name Linux accepts (`NAME_MAX` minus the `memfd:` prefix).
const MEMFD_NAME_MAX: usize = 249;

/// An installed handle of a buffer: one real file descriptor.
///
/// Closing (dropping) it never affects live mappings or attachments, which hold the
/// buffer themselves; the buffer is released when its last reference of any kind goes.
#[derive(Debug)]
pub struct DmaBufFd {
    /// The token descriptor; `None` only inside `Drop`.
    fd: Option<OwnedFd>,
    /// Its number, kept so `Drop` can remove the table entry.
    raw: i32,
    buf: Arc<DmaBuf>,
}

impl DmaBufFd {
    /// `dma_buf_fd()`—installs a new descriptor for `buf`, close-on-exec.
    ///
    /// # Errors
    ///
    /// - The system's errno ([`Error::Install`]) when no descriptor can be created, e.g.
    ///   `EMFILE`.
    pub fn new(buf: Arc<DmaBuf>) -> Result<DmaBufFd, Error> {
        let name = memfd_name(&buf);
        let mut table = lock(&FD_TABLE);
        let fd =
            rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).map_err(Error::Install)?;
        // The token carries no data; seal it so nobody can give it any.
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SEAL | SealFlags::GROW | SealFlags::SHRINK | SealFlags::WRITE)
            .map_err(Error::Install)?;
        let handle = install_locked(&mut table, fd, buf);
        drop(table);
        Ok(handle)
    }

    /// The descriptor number, e.g. for a feature payload's `dmabuf_fd`.
    #[must_use]
    pub fn raw_fd(&self) -> i32 {
        self.raw
    }

    /// The buffer this handle refers to.
    #[must_use]
    pub fn buffer(&self) -> &Arc<DmaBuf> {
        &self.buf
    }

    /// `dup()`—a second handle, with its own number, for the same buffer (and the same open
    /// file); close-on-exec.
    ///
    /// # Errors
    ///
    /// - The system's errno ([`Error::Install`]) when no descriptor can be created.
    pub fn dup(&self) -> Result<DmaBufFd, Error> {
        let mut table = lock(&FD_TABLE);
        let fd = rustix::io::fcntl_dupfd_cloexec(self.token(), 0).map_err(Error::Install)?;
        let handle = install_locked(&mut table, fd, Arc::clone(&self.buf));
        drop(table);
        Ok(handle)
    }

    /// `close()`—the same as dropping the handle.
    pub fn close(self) {}

    fn token(&self) -> &OwnedFd {
        // Only `Drop` takes the descriptor out.
        self.fd.as_ref().unwrap_or_else(|| unreachable!("handle used after close"))
    }
}

impl Drop for DmaBufFd {
    fn drop(&mut self) {
        let mut table = lock(&FD_TABLE);
        // Remove before closing: once closed, the number may be reused at once.
        let entry = table.remove(&self.raw);
        debug_assert!(entry.as_ref().is_some_and(|buf| Arc::ptr_eq(buf, &self.buf)));
        drop(self.fd.take());
        drop(table);
        // The table's reference goes after the lock; ours goes with the struct. Neither can
        // be the last while `self.buf` lives, but keep release out of the lock regardless.
        drop(entry);
    }
}

/// Enters a freshly created descriptor; `table` is the held table lock.
fn install_locked(table: &mut BTreeMap<i32, Arc<DmaBuf>>, fd: OwnedFd, buf: Arc<DmaBuf>) -> DmaBufFd {
    let raw = fd.as_raw_fd();
    let previous = table.insert(raw, Arc::clone(&buf));
    // A number of ours can only be reused after Drop removed its entry; a previous entry
    // means something else closed one of our descriptors behind our back.
    assert!(previous.is_none(), "dma-buf fd {raw} was closed outside its handle");
    DmaBufFd { fd: Some(fd), raw, buf }
}

/// `dma_buf_get()`—the buffer behind a descriptor number.
///
/// # Errors
///
/// - `EBADF` ([`Error::BadFd`]): `fd` is not an open descriptor.
/// - `EINVAL` ([`Error::NotDmaBuf`]): `fd` is open but is not a buffer handle.
pub fn get(fd: i32) -> Result<Arc<DmaBuf>, Error> {
    let table = lock(&FD_TABLE);
    if let Some(buf) = table.get(&fd) {
        return Ok(Arc::clone(buf));
    }
    if fd < 0 {
        return Err(Error::BadFd { fd });
    }
    // Not ours: tell open from closed. rustix's fcntl needs a borrowed descriptor, which a
    // bare number can only become through `unsafe`, so ask procfs instead: the entry
    // exists exactly while the descriptor is open. We hold the table lock, so none of our
    // own descriptors is created or closed meanwhile. A failure of any kind means we
    // cannot show the descriptor is open, hence EBADF.
    let path = format!("/proc/self/fd/{fd}");
    match rustix::fs::statat(rustix::fs::CWD, path.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Err(Error::NotDmaBuf { fd }),
        Err(_) => Err(Error::BadFd { fd }),
    }
}

/// Number of live handles in the process (for inspection).
#[must_use]
pub fn nr_handles() -> usize {
    lock(&FD_TABLE).len()
}

/// `dmabuf:<name or id>`, cut to what memfd accepts, like the kernel's `/dmabuf:<name>`.
fn memfd_name(buf: &DmaBuf) -> String {
    let mut name = format!("dmabuf:{}", buf.display_name());
    if name.len() > MEMFD_NAME_MAX {
        let mut end = MEMFD_NAME_MAX;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::export_named;

    #[test]
    fn memfd_name_uses_the_buffer_name_or_its_id() {
        let named = export_named(Some("dev0:0000/1"));
        assert_eq!(memfd_name(&named), "dmabuf:dev0:0000/1");
        let anonymous = export_named(None);
        assert_eq!(memfd_name(&anonymous), format!("dmabuf:{}", anonymous.id()));
    }

    #[test]
    fn memfd_name_is_cut_on_a_char_boundary() {
        let buf = export_named(Some(&"é".repeat(200)));
        let name = memfd_name(&buf);
        assert!(name.len() <= MEMFD_NAME_MAX);
        assert!(name.len() >= MEMFD_NAME_MAX - 1);
    }

    #[test]
    fn negative_and_huge_numbers_are_bad_fds() {
        for fd in [-1, i32::MIN, i32::MAX] {
            assert_eq!(get(fd).map_err(|e| e.errno()).err(), Some(rustix::io::Errno::BADF));
        }
    }
}
