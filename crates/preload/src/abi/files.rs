//! The interposers of paths and directory streams: opens, `close`, the
//! `stat` family, `access`, `readlink`, `realpath`, `opendir` and friends.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_long, c_uint, c_void};
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{mode_t, size_t, ssize_t};
use rustix::io::Errno;

use super::{answer, enter, errno, guarded, next, path_arg, set_errno, UserPtr};
use crate::{dirs, fds, paths, stat};

// ---------------------------------------------------------------------------
// Opens.

fn do_open(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> Option<Result<c_int, Errno>> {
    let path = path_arg(path)?;
    paths::open(dirfd, &path, flags, mode).map(|r| r.map(|fd| fd.into_raw_fd()))
}

macro_rules! open_fns {
    ($($name:ident ($($arg:ident : $t:ty),*) => ($dirfd:expr, $path:expr, $flags:expr, $mode:expr);)*) => {$(
        /// Interposed: an open of a served path is answered by the server.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $t),*) -> c_int {
            // SAFETY: the program's arguments, unchanged (the mode is read
            // only with O_CREAT/O_TMPFILE, see the module doc).
            interpose!(inside => unsafe { next::$name($($arg),*) }, do_open($dirfd, $path, $flags, $mode), -1)
        }
    )*};
}

open_fns! {
    open(path: *const c_char, flags: c_int, mode: mode_t) => (libc::AT_FDCWD, path, flags, mode);
    open64(path: *const c_char, flags: c_int, mode: mode_t) => (libc::AT_FDCWD, path, flags, mode);
    __open_2(path: *const c_char, flags: c_int) => (libc::AT_FDCWD, path, flags, 0);
    __open64_2(path: *const c_char, flags: c_int) => (libc::AT_FDCWD, path, flags, 0);
    openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) => (dirfd, path, flags, mode);
    openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) => (dirfd, path, flags, mode);
    __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) => (dirfd, path, flags, 0);
    __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) => (dirfd, path, flags, 0);
    creat(path: *const c_char, mode: mode_t) => (libc::AT_FDCWD, path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, mode);
    creat64(path: *const c_char, mode: mode_t) => (libc::AT_FDCWD, path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, mode);
}

macro_rules! fopen_fns {
    ($($name:ident;)*) => {$(
        /// Interposed: a served (sysfs) file is opened by us, then wrapped.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
            let Some(inside) = enter() else {
                // SAFETY: the program's arguments, unchanged.
                return unsafe { next::$name(path, mode) };
            };
            let flags = path_arg(mode).map(|m| paths::fopen_flags(&m));
            let opened = flags.and_then(|f| guarded(|| do_open(libc::AT_FDCWD, path, f, 0o666)));
            match opened {
                None => {
                    inside.pass();
                    drop(inside);
                    // SAFETY: as above.
                    unsafe { next::$name(path, mode) }
                }
                Some(Err(e)) => {
                    set_errno(e.raw_os_error());
                    std::ptr::null_mut()
                }
                Some(Ok(fd)) => {
                    // SAFETY: `fd` is the descriptor just opened for this
                    // stream; `mode` is the program's mode string.
                    let f = unsafe { next::fdopen(fd, mode) };
                    if f.is_null() {
                        let e = errno();
                        // SAFETY: closes the descriptor nobody else knows.
                        unsafe { next::close(fd) };
                        set_errno(e);
                    }
                    f
                }
            }
        }
    )*};
}

fopen_fns! { fopen; fopen64; }

/// Interposed: after the last close of an object fd, the server runs the
/// release before `close` returns; our own connections are taken back.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    let Some(inside) = enter() else {
        // SAFETY: the program's argument, unchanged.
        return unsafe { next::close(fd) };
    };
    let before = guarded(|| fds::before_close(fd).map(Ok));
    if let Some(Ok(fds::Closing::Keep)) = before {
        return 0;
    }
    inside.pass();
    // SAFETY: as above.
    let r = unsafe { next::close(fd) };
    let e = errno();
    if let (0, Some(Ok(fds::Closing::Object))) = (r, before) {
        guarded(|| {
            fds::after_close(fd);
            None::<Result<(), Errno>>
        });
    }
    set_errno(e);
    r
}

// ---------------------------------------------------------------------------
// Paths: stat, access, readlink, realpath.

/// Writes a `struct stat` of a served path.
fn do_stat(dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> Option<Result<c_int, Errno>> {
    let path = path_arg(path)?;
    let st = paths::stat(dirfd, &path, flags & libc::AT_SYMLINK_NOFOLLOW == 0)?;
    // SAFETY: the program passed `buf` for the result.
    let out = unsafe { UserPtr::new(buf) };
    Some(st.and_then(|st| out.write(&stat::encode_stat(&st))).map(|()| 0))
}

macro_rules! stat_fns {
    ($($name:ident ($($arg:ident : $t:ty),*) => ($dirfd:expr, $path:expr, $buf:expr, $flags:expr);)*) => {$(
        /// Interposed: a served path is described by the server.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $t),*) -> c_int {
            // SAFETY: the program's arguments, unchanged.
            interpose!(inside => unsafe { next::$name($($arg),*) }, do_stat($dirfd, $path, $buf, $flags), -1)
        }
    )*};
}

const NOFOLLOW: c_int = libc::AT_SYMLINK_NOFOLLOW;

stat_fns! {
    stat(path: *const c_char, buf: *mut libc::stat) => (libc::AT_FDCWD, path, buf, 0);
    stat64(path: *const c_char, buf: *mut libc::stat) => (libc::AT_FDCWD, path, buf, 0);
    lstat(path: *const c_char, buf: *mut libc::stat) => (libc::AT_FDCWD, path, buf, NOFOLLOW);
    lstat64(path: *const c_char, buf: *mut libc::stat) => (libc::AT_FDCWD, path, buf, NOFOLLOW);
    fstatat(dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) => (dirfd, path, buf, flags);
    fstatat64(dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) => (dirfd, path, buf, flags);
    __xstat(ver: c_int, path: *const c_char, buf: *mut libc::stat) => (libc::AT_FDCWD, path, buf, 0);
    __xstat64(ver: c_int, path: *const c_char, buf: *mut libc::stat) => (libc::AT_FDCWD, path, buf, 0);
    __lxstat(ver: c_int, path: *const c_char, buf: *mut libc::stat) => (libc::AT_FDCWD, path, buf, NOFOLLOW);
    __lxstat64(ver: c_int, path: *const c_char, buf: *mut libc::stat) => (libc::AT_FDCWD, path, buf, NOFOLLOW);
    __fxstatat(ver: c_int, dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) => (dirfd, path, buf, flags);
    __fxstatat64(ver: c_int, dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) => (dirfd, path, buf, flags);
}

/// Interposed: `statx` of a served path.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn statx(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: c_uint,
    buf: *mut c_void,
) -> c_int {
    // SAFETY: the program's arguments, unchanged.
    interpose!(inside => unsafe { next::statx(dirfd, path, flags, mask, buf) }, {
        let path = path_arg(path)?;
        let st = paths::stat(dirfd, &path, flags & libc::AT_SYMLINK_NOFOLLOW == 0)?;
        // SAFETY: the program passed `buf` for the result.
        let out = unsafe { UserPtr::new(buf) };
        Some(st.and_then(|st| out.write(&stat::encode_statx(&st))).map(|()| 0))
    }, -1)
}

/// Interposed: `access` of a served path (exists or not).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn access(path: *const c_char, mode: c_int) -> c_int {
    // SAFETY: the program's arguments, unchanged.
    interpose!(inside => unsafe { next::access(path, mode) },
        paths::access(libc::AT_FDCWD, &path_arg(path)?, 0).map(|r| r.map(|()| 0)), -1)
}

/// Interposed: `faccessat` of a served path.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn faccessat(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_int {
    // SAFETY: the program's arguments, unchanged.
    interpose!(inside => unsafe { next::faccessat(dirfd, path, mode, flags) },
        paths::access(dirfd, &path_arg(path)?, flags).map(|r| r.map(|()| 0)), -1)
}

fn do_readlink(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: size_t) -> Option<Result<ssize_t, Errno>> {
    let target = paths::readlink(dirfd, &path_arg(path)?)?;
    // SAFETY: the program passed `buf` (of `size` bytes) for the result.
    let out = unsafe { UserPtr::new(buf) };
    Some(target.and_then(|t| {
        let n = t.len().min(size);
        out.write(&t[..n]).map(|()| n as ssize_t)
    }))
}

/// Interposed: `readlink` of a served path.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t {
    // SAFETY: the program's arguments, unchanged.
    interpose!(inside => unsafe { next::readlink(path, buf, size) }, do_readlink(libc::AT_FDCWD, path, buf, size), -1)
}

/// Interposed: `readlinkat` of a served path.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t {
    // SAFETY: the program's arguments, unchanged.
    interpose!(inside => unsafe { next::readlinkat(dirfd, path, buf, size) }, do_readlink(dirfd, path, buf, size), -1)
}

/// The canonical form of a served path, in the program's buffer or in one
/// it must `free`.
fn do_realpath(path: *const c_char, resolved: *mut c_char) -> Option<Result<*mut c_char, Errno>> {
    let canonical = paths::realpath(&path_arg(path)?)?;
    Some(canonical.and_then(|c| {
        if c.len() >= libc::PATH_MAX as usize {
            return Err(Errno::NAMETOOLONG);
        }
        let mut bytes = c.into_bytes();
        bytes.push(0);
        let out = if resolved.is_null() {
            // SAFETY: malloc(3); the program frees the result, as realpath's
            // contract says.
            let p = unsafe { libc::malloc(bytes.len()) }.cast::<c_char>();
            if p.is_null() {
                return Err(Errno::NOMEM);
            }
            p
        } else {
            resolved
        };
        // SAFETY: `out` is the program's buffer of PATH_MAX bytes, or ours.
        unsafe { UserPtr::new(out) }.write(&bytes).map(|()| out)
    }))
}

/// Interposed: `realpath` of a served path.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char {
    // SAFETY: the program's arguments, unchanged.
    interpose!(inside => unsafe { next::realpath(path, resolved) }, do_realpath(path, resolved), std::ptr::null_mut())
}

/// Interposed: the fortified `realpath` (the check aborts as the C library's).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __realpath_chk(path: *const c_char, resolved: *mut c_char, len: size_t) -> *mut c_char {
    if len < libc::PATH_MAX as size_t {
        // SAFETY: the program's arguments: the C library reports the overflow.
        return unsafe { next::__realpath_chk(path, resolved, len) };
    }
    // SAFETY: the program's arguments, unchanged.
    interpose!(inside => unsafe { next::__realpath_chk(path, resolved, len) }, do_realpath(path, resolved), std::ptr::null_mut())
}

/// Interposed: `canonicalize_file_name`, `realpath` with a buffer of ours.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn canonicalize_file_name(path: *const c_char) -> *mut c_char {
    // SAFETY: the program's argument, unchanged.
    interpose!(inside => unsafe { next::canonicalize_file_name(path) }, do_realpath(path, std::ptr::null_mut()), std::ptr::null_mut())
}

// ---------------------------------------------------------------------------
// Directory streams of served directories.

/// What a `DIR *` of ours points to. The C library never sees it: every
/// directory call checks the registry first.
struct OurDir {
    /// The entry `readdir` returned last (valid until the next call).
    entry: libc::dirent64,
    stream: dirs::Stream,
}

/// Addresses of our live `DIR`s; `DIR_COUNT` lets calls skip the lock
/// while there are none.
static DIRS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());
static DIR_COUNT: AtomicUsize = AtomicUsize::new(0);

fn is_our_dir(dir: *mut libc::DIR) -> bool {
    DIR_COUNT.load(Ordering::Acquire) > 0 && DIRS.lock().unwrap_or_else(|e| e.into_inner()).contains(&(dir as usize))
}

/// Our stream behind `dir`.
///
/// # Safety
///
/// `dir` is one of ours (`is_our_dir`) and not closed concurrently
/// (`closedir` on a stream in use is undefined for the C library too).
unsafe fn our_dir<'a>(dir: *mut libc::DIR) -> &'a mut OurDir {
    // SAFETY: registered addresses are `Box<OurDir>`s leaked by `opendir`.
    unsafe { &mut *dir.cast::<OurDir>() }
}

/// Interposed: a served directory is listed from the server's answer.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn opendir(path: *const c_char) -> *mut libc::DIR {
    // SAFETY: the program's argument, unchanged.
    interpose!(inside => unsafe { next::opendir(path) }, {
        let stream = dirs::open(&path_arg(path)?)?;
        Some(stream.map(|stream| {
            // SAFETY: all-zero is a valid dirent64.
            let entry = unsafe { std::mem::zeroed() };
            let p = Box::into_raw(Box::new(OurDir { entry, stream }));
            DIRS.lock().unwrap_or_else(|e| e.into_inner()).push(p as usize);
            DIR_COUNT.fetch_add(1, Ordering::AcqRel);
            p.cast::<libc::DIR>()
        }))
    }, std::ptr::null_mut())
}

fn fill_entry(d: &mut OurDir) -> bool {
    let Some(e) = d.stream.next_entry().cloned() else { return false };
    let name_max = d.entry.d_name.len() - 1;
    let n = e.name.len().min(name_max);
    d.entry.d_ino = e.ino;
    d.entry.d_off = d.stream.tell() as i64;
    d.entry.d_type = e.d_type;
    for (dst, &src) in d.entry.d_name.iter_mut().zip(&e.name[..n]) {
        *dst = src as c_char;
    }
    d.entry.d_name[n] = 0;
    let reclen = std::mem::offset_of!(libc::dirent64, d_name) + n + 1;
    d.entry.d_reclen = reclen.next_multiple_of(8) as u16;
    true
}

/// Interposed: the next entry of one of our streams.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn readdir64(dir: *mut libc::DIR) -> *mut libc::dirent64 {
    if !is_our_dir(dir) {
        // SAFETY: the program's argument, unchanged.
        return unsafe { next::readdir64(dir) };
    }
    // SAFETY: `dir` is ours and in use by this call.
    let d = unsafe { our_dir(dir) };
    if fill_entry(d) {
        &mut d.entry
    } else {
        std::ptr::null_mut()
    }
}

/// Interposed: `readdir` (the same layout as `readdir64` on x86-64).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn readdir(dir: *mut libc::DIR) -> *mut libc::dirent {
    if !is_our_dir(dir) {
        // SAFETY: the program's argument, unchanged.
        return unsafe { next::readdir(dir) };
    }
    // SAFETY: as in readdir64; `dirent` and `dirent64` are the same struct
    // on x86-64.
    unsafe { readdir64(dir).cast() }
}

/// Interposed: closes one of our streams.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn closedir(dir: *mut libc::DIR) -> c_int {
    let ours = {
        let mut dirs = DIRS.lock().unwrap_or_else(|e| e.into_inner());
        let at = dirs.iter().position(|&p| p == dir as usize);
        at.map(|i| dirs.swap_remove(i)).is_some()
    };
    if !ours {
        // SAFETY: the program's argument, unchanged.
        return unsafe { next::closedir(dir) };
    }
    DIR_COUNT.fetch_sub(1, Ordering::AcqRel);
    // SAFETY: the Box leaked by opendir, now out of the registry.
    drop(unsafe { Box::from_raw(dir.cast::<OurDir>()) });
    0
}

/// Interposed: the descriptor of one of our streams (a stand-in: see `dirs`).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dirfd(dir: *mut libc::DIR) -> c_int {
    if !is_our_dir(dir) {
        // SAFETY: the program's argument, unchanged.
        return unsafe { next::dirfd(dir) };
    }
    // SAFETY: `dir` is ours.
    unsafe { our_dir(dir) }.stream.fd()
}

/// Interposed: rewinds one of our streams.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn rewinddir(dir: *mut libc::DIR) {
    if !is_our_dir(dir) {
        // SAFETY: the program's argument, unchanged.
        return unsafe { next::rewinddir(dir) };
    }
    // SAFETY: `dir` is ours.
    unsafe { our_dir(dir) }.stream.seek(0);
}

/// Interposed: the position in one of our streams.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn telldir(dir: *mut libc::DIR) -> c_long {
    if !is_our_dir(dir) {
        // SAFETY: the program's argument, unchanged.
        return unsafe { next::telldir(dir) };
    }
    // SAFETY: `dir` is ours.
    unsafe { our_dir(dir) }.stream.tell() as c_long
}

/// Interposed: moves to a position `telldir` gave.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn seekdir(dir: *mut libc::DIR, pos: c_long) {
    if !is_our_dir(dir) {
        // SAFETY: the program's arguments, unchanged.
        return unsafe { next::seekdir(dir, pos) };
    }
    // SAFETY: `dir` is ours.
    unsafe { our_dir(dir) }.stream.seek(pos.max(0) as usize);
}
