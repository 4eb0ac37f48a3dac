//! The C-ABI boundary: every symbol the library interposes, the C
//! library's own definitions behind them, and the few primitives safe code
//! needs that cannot be written without `unsafe` (the program's memory,
//! descriptor slots, directory streams).
//!
//! Each interposer converts its raw arguments at once and calls safe code
//! (which answers `None` for "not ours"), then either returns that answer
//! or calls the C library's function with the arguments unchanged and the
//! `errno` it found on entry. The C library's functions are found with
//! `dlsym(RTLD_NEXT)` on first use and cached in atomics, so they work
//! before our constructor has run and in the child after `fork`.
//!
//! Recursion: the Rust code behind the boundary calls C library functions
//! that are now ours (std opens, closes and writes through them). A
//! per-thread flag marks "inside the library"; an interposer entered with
//! it set goes straight to the C library. Raw system calls (rustix) do not
//! reach us at all.
//!
//! Variadic C functions (`open`, `openat`, `ioctl`, `mremap`) are defined
//! with their variadic argument as one more fixed integer or pointer
//! argument: sound on x86-64 (System V), where variadic integer arguments
//! travel in the same registers as fixed ones, and a caller that passed
//! none leaves a value we read only when the flags say it is there.
//!
//! A panic behind the boundary cannot unwind into C: it is caught and the
//! call fails with `EIO`.
#![allow(unsafe_code)]
// Unit tests build the module but export nothing (no interposition).
#![cfg_attr(test, allow(dead_code))]

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use libc::{mode_t, off_t, pid_t, size_t, ssize_t};
use rustix::io::Errno;

use crate::{dirs, fds, ioctl, maps, paths, rw, stat};

// ---------------------------------------------------------------------------
// The C library's definitions.

/// The value a C function returns on failure, for a missing definition.
trait Failure {
    const FAILED: Self;
}
impl Failure for c_int {
    const FAILED: Self = -1;
}
impl Failure for ssize_t {
    const FAILED: Self = -1;
}
impl Failure for off_t {
    const FAILED: Self = -1;
}
impl<T> Failure for *mut T {
    const FAILED: Self = std::ptr::null_mut();
}
impl Failure for () {
    const FAILED: Self = ();
}
impl Failure for libc::sighandler_t {
    const FAILED: Self = libc::SIG_ERR;
}

fn resolve(slot: &AtomicUsize, name: &'static str) -> usize {
    let p = slot.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: dlsym(3) with a NUL-terminated name; RTLD_NEXT finds the
    // next definition after this library (the C library's).
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) } as usize;
    slot.store(p, Ordering::Relaxed);
    p
}

macro_rules! next_fns {
    ($( fn $name:ident ( $($arg:ident : $t:ty),* ) -> $ret:ty ; )*) => {
        /// The C library's definitions of the functions we interpose.
        mod next {
            #[allow(clippy::wildcard_imports)]
            use super::*;
            $(
                pub(super) unsafe fn $name($($arg: $t),*) -> $ret {
                    static SLOT: AtomicUsize = AtomicUsize::new(0);
                    let p = resolve(&SLOT, concat!(stringify!($name), "\0"));
                    if p == 0 {
                        set_errno(libc::ENOSYS);
                        return <$ret as Failure>::FAILED;
                    }
                    // SAFETY: `p` is the C library's definition of this
                    // very function, whose prototype is the one written
                    // here; the caller passes the program's arguments.
                    unsafe { std::mem::transmute::<usize, unsafe extern "C" fn($($t),*) -> $ret>(p)($($arg),*) }
                }
            )*
        }
    };
}

next_fns! {
    fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    fn open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    fn __open_2(path: *const c_char, flags: c_int) -> c_int;
    fn __open64_2(path: *const c_char, flags: c_int) -> c_int;
    fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    fn openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    fn creat(path: *const c_char, mode: mode_t) -> c_int;
    fn creat64(path: *const c_char, mode: mode_t) -> c_int;
    fn fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE;
    fn fopen64(path: *const c_char, mode: *const c_char) -> *mut libc::FILE;
    fn fdopen(fd: c_int, mode: *const c_char) -> *mut libc::FILE;
    fn close(fd: c_int) -> c_int;
    fn stat(path: *const c_char, buf: *mut libc::stat) -> c_int;
    fn stat64(path: *const c_char, buf: *mut libc::stat) -> c_int;
    fn lstat(path: *const c_char, buf: *mut libc::stat) -> c_int;
    fn lstat64(path: *const c_char, buf: *mut libc::stat) -> c_int;
    fn fstatat(dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int;
    fn fstatat64(dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int;
    fn __xstat(ver: c_int, path: *const c_char, buf: *mut libc::stat) -> c_int;
    fn __xstat64(ver: c_int, path: *const c_char, buf: *mut libc::stat) -> c_int;
    fn __lxstat(ver: c_int, path: *const c_char, buf: *mut libc::stat) -> c_int;
    fn __lxstat64(ver: c_int, path: *const c_char, buf: *mut libc::stat) -> c_int;
    fn __fxstatat(ver: c_int, dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int;
    fn __fxstatat64(ver: c_int, dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int;
    fn statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: c_uint, buf: *mut c_void) -> c_int;
    fn access(path: *const c_char, mode: c_int) -> c_int;
    fn faccessat(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_int;
    fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t;
    fn readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t;
    fn realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char;
    fn __realpath_chk(path: *const c_char, resolved: *mut c_char, len: size_t) -> *mut c_char;
    fn canonicalize_file_name(path: *const c_char) -> *mut c_char;
    fn opendir(path: *const c_char) -> *mut libc::DIR;
    fn readdir(dir: *mut libc::DIR) -> *mut libc::dirent;
    fn readdir64(dir: *mut libc::DIR) -> *mut libc::dirent64;
    fn closedir(dir: *mut libc::DIR) -> c_int;
    fn dirfd(dir: *mut libc::DIR) -> c_int;
    fn rewinddir(dir: *mut libc::DIR) -> ();
    fn telldir(dir: *mut libc::DIR) -> c_long;
    fn seekdir(dir: *mut libc::DIR, pos: c_long) -> ();
    fn ioctl(fd: c_int, request: c_ulong, arg: usize) -> c_int;
    fn pread(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t) -> ssize_t;
    fn pread64(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t) -> ssize_t;
    fn __pread_chk(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t, buflen: size_t) -> ssize_t;
    fn __pread64_chk(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t, buflen: size_t) -> ssize_t;
    fn pwrite(fd: c_int, buf: *const c_void, count: size_t, offset: off_t) -> ssize_t;
    fn pwrite64(fd: c_int, buf: *const c_void, count: size_t, offset: off_t) -> ssize_t;
    fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t;
    fn __read_chk(fd: c_int, buf: *mut c_void, count: size_t, buflen: size_t) -> ssize_t;
    fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t;
    fn lseek(fd: c_int, offset: off_t, whence: c_int) -> off_t;
    fn lseek64(fd: c_int, offset: off_t, whence: c_int) -> off_t;
    fn mmap(addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, offset: off_t) -> *mut c_void;
    fn mmap64(addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, offset: off_t) -> *mut c_void;
    fn munmap(addr: *mut c_void, len: size_t) -> c_int;
    fn mremap(old: *mut c_void, old_len: size_t, new_len: size_t, flags: c_int, new: *mut c_void) -> *mut c_void;
    fn mprotect(addr: *mut c_void, len: size_t, prot: c_int) -> c_int;
    fn fork() -> pid_t;
    fn sigaction(signo: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int;
    fn signal(signo: c_int, handler: libc::sighandler_t) -> libc::sighandler_t;
    fn bsd_signal(signo: c_int, handler: libc::sighandler_t) -> libc::sighandler_t;
    fn sysv_signal(signo: c_int, handler: libc::sighandler_t) -> libc::sighandler_t;
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e };
}

// ---------------------------------------------------------------------------
// Entering the library.

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// This thread is running the library's own code; dropped on the way out.
struct Inside {
    /// The caller's errno, for a call that passes through.
    errno: c_int,
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.with(|c| c.set(false));
    }
}

/// Enters the library, unless this thread is inside it already (then the
/// call is one of ours and goes straight to the C library).
fn enter() -> Option<Inside> {
    let errno = errno();
    INSIDE.with(|c| (!c.replace(true)).then_some(Inside { errno }))
}

impl Inside {
    /// Restores the caller's errno before a call passes through.
    fn pass(&self) {
        set_errno(self.errno);
    }
}

/// Runs safe code, turning a panic into `EIO`.
fn guarded<T>(f: impl FnOnce() -> Option<Result<T, Errno>>) -> Option<Result<T, Errno>> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(Some(Err(Errno::IO)))
}

/// The result of an answered call: the value, or -1 (or `failed`) with errno.
fn answer<T>(r: Result<T, Errno>, failed: T) -> T {
    r.unwrap_or_else(|e| {
        set_errno(e.raw_os_error());
        failed
    })
}

macro_rules! interpose {
    ($inside:ident => $pass:expr, $call:expr, $failed:expr) => {{
        let Some($inside) = enter() else { return $pass };
        match guarded(|| $call) {
            None => {
                $inside.pass();
                drop($inside);
                $pass
            }
            Some(r) => answer(r, $failed),
        }
    }};
}

/// A descriptor number the program passed: borrowed for this call.
pub(crate) fn borrowed<'a>(fd: c_int) -> Option<BorrowedFd<'a>> {
    // SAFETY: the program passed `fd` to this call, so for its duration
    // the number names the file it means; if it is closed meanwhile, our
    // system calls on it fail with EBADF (or act on what the number then
    // names), exactly as the call itself would.
    (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
}

// ---------------------------------------------------------------------------
// The program's memory.

/// An address the program passed to an interposed call, for that call to
/// read or write as the kernel would (`copy_from_user`/`copy_to_user`):
/// through `process_vm_readv`/`process_vm_writev` on our own process, so
/// an address that is not mapped is `EFAULT`, never a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserPtr(u64);

impl UserPtr {
    /// # Safety
    ///
    /// `addr` comes from the program, for the call being interposed to
    /// read or write the way the kernel would on the program's behalf.
    unsafe fn new<T>(addr: *const T) -> Self {
        UserPtr(addr as u64)
    }

    /// The address.
    pub(crate) fn addr(self) -> u64 {
        self.0
    }

    /// Whether it is NULL.
    pub(crate) fn is_null(self) -> bool {
        self.0 == 0
    }

    /// `n` bytes further on.
    pub(crate) fn add(self, n: usize) -> UserPtr {
        UserPtr(self.0.wrapping_add(n as u64))
    }

    /// Reads up to `buf.len()` bytes; fewer when the memory ends sooner.
    ///
    /// # Errors
    ///
    /// `EFAULT` when not even the first byte is readable.
    pub(crate) fn read(self, buf: &mut [u8]) -> Result<usize, Errno> {
        if buf.is_empty() {
            return Ok(0);
        }
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let remote = libc::iovec { iov_base: self.0 as *mut c_void, iov_len: buf.len() };
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`
        // and reads the program's memory with fault checking.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        usize::try_from(n).map_err(|_| Errno::FAULT)
    }

    /// Reads exactly `buf.len()` bytes.
    ///
    /// # Errors
    ///
    /// `EFAULT` when any of them is not readable.
    pub(crate) fn read_exact(self, buf: &mut [u8]) -> Result<(), Errno> {
        (self.read(buf)? == buf.len()).then_some(()).ok_or(Errno::FAULT)
    }

    /// Writes `data` whole.
    ///
    /// # Errors
    ///
    /// `EFAULT` when any byte is not writable (those before it may have
    /// been written, as with `copy_to_user`).
    pub(crate) fn write(self, data: &[u8]) -> Result<(), Errno> {
        if data.is_empty() {
            return Ok(());
        }
        let local = libc::iovec { iov_base: data.as_ptr() as *mut c_void, iov_len: data.len() };
        let remote = libc::iovec { iov_base: self.0 as *mut c_void, iov_len: data.len() };
        // SAFETY: the kernel reads `data` and writes the program's memory
        // at the address it handed us, with fault checking.
        let n = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
        (usize::try_from(n) == Ok(data.len())).then_some(()).ok_or(Errno::FAULT)
    }

    /// Reads a NUL-terminated string of at most `max` bytes.
    ///
    /// # Errors
    ///
    /// `EFAULT` when unreadable before the NUL, `ENAMETOOLONG` without a
    /// NUL in `max` bytes.
    pub(crate) fn read_cstr(self, max: usize) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; max];
        let n = self.read(&mut buf)?;
        match buf[..n].iter().position(|&b| b == 0) {
            Some(end) => {
                buf.truncate(end);
                Ok(buf)
            }
            None if n < max => Err(Errno::FAULT),
            None => Err(Errno::NAMETOOLONG),
        }
    }
}

/// A path argument as bytes, or `None` (not ours to judge: NULL or
/// unreadable, which the C library reports itself).
fn path_arg(p: *const c_char) -> Option<Vec<u8>> {
    // SAFETY: the program passed `p` as a path for this call to read.
    let p = unsafe { UserPtr::new(p) };
    (!p.is_null()).then(|| p.read_cstr(libc::PATH_MAX as usize).ok()).flatten()
}

// ---------------------------------------------------------------------------
// Descriptor slots.

/// A descriptor slot that a signal handler may fill or empty: the slot owns
/// the descriptor it holds (moved in by [`FdSlot::put`], out by
/// [`FdSlot::take`], each exactly once thanks to the atomic swap).
#[derive(Debug)]
pub(crate) struct FdSlot(AtomicI32);

impl FdSlot {
    /// An empty slot.
    pub(crate) const fn empty() -> Self {
        FdSlot(AtomicI32::new(-1))
    }

    /// Takes the descriptor out, leaving the slot empty.
    pub(crate) fn take(&self) -> Option<OwnedFd> {
        let fd = self.0.swap(-1, Ordering::AcqRel);
        // SAFETY: a non-negative value was moved in by `put` from an
        // `OwnedFd`, and the swap gives it to exactly one taker.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Moves `fd` into the slot if it is empty; gives it back otherwise.
    pub(crate) fn put(&self, fd: OwnedFd) -> Result<(), OwnedFd> {
        let raw = fd.into_raw_fd();
        match self.0.compare_exchange(-1, raw, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => Ok(()),
            // SAFETY: `raw` came from `into_raw_fd` just above and was not
            // stored: we still own it.
            Err(_) => Err(unsafe { OwnedFd::from_raw_fd(raw) }),
        }
    }

    /// Whether the slot holds descriptor number `raw`.
    pub(crate) fn holds(&self, raw: c_int) -> bool {
        raw >= 0 && self.0.load(Ordering::Acquire) == raw
    }
}

// ---------------------------------------------------------------------------
// What safe code may ask of the C library.

/// `munmap(2)` of a range that holds none of our mappings, for a call the
/// program made that unmaps or replaces it (`munmap`, `MAP_FIXED`).
pub(crate) fn unmap_foreign(addr: u64, len: u64) -> Result<(), Errno> {
    // SAFETY: the program asked for this range to be unmapped (or replaced)
    // and maps::* passes only the parts of it that are not ours.
    let r = unsafe { next::munmap(addr as *mut c_void, len as size_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(errno()))
    }
}

/// Blocks every signal that can be blocked in the calling thread (our own
/// threads: the program's handlers do not run there).
pub(crate) fn block_signals() {
    // SAFETY: pthread_sigmask(3) with a full set on our stack.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

/// `sigaction(2)` itself, for mm's own installs.
unsafe extern "C" fn real_sigaction(signo: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    // SAFETY: forwarded unchanged from mm, which passes valid pointers.
    unsafe { next::sigaction(signo, act, old) }
}

// ---------------------------------------------------------------------------
// Start and fork.

#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    // SAFETY: `real_sigaction` is sigaction(2).
    unsafe { mm::probe::use_sigaction(real_sigaction) };
    // SAFETY: registers a child handler that only touches atomics and
    // closes descriptors (see `process::after_fork_in_child`).
    unsafe { libc::pthread_atfork(None, None, Some(child_after_fork)) };
    let _inside = enter();
    crate::process::init();
}

extern "C" fn child_after_fork() {
    crate::process::after_fork_in_child();
}

/// `vfork` runs as `fork`: POSIX allows it, and a child that shares our
/// memory could not get its own connections without taking the parent's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn vfork() -> pid_t {
    // SAFETY: fork(2) takes no arguments.
    unsafe { next::fork() }
}

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
pub unsafe extern "C" fn statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: c_uint, buf: *mut c_void) -> c_int {
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

// ---------------------------------------------------------------------------
// Object fds: ioctl, pread/pwrite, read/write/lseek.

/// Interposed: an ioctl on an object fd is carried to the server.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: usize) -> c_int {
    // SAFETY: the program's arguments, unchanged (the third is read as the
    // request's shape says, see the module doc).
    interpose!(inside => unsafe { next::ioctl(fd, request, arg) }, {
        // SAFETY: the argument of an ioctl is a pointer the kernel reads and
        // writes when the request's shape says so.
        let arg_ptr = unsafe { UserPtr::new(arg as *const u8) };
        ioctl::ioctl(borrowed(fd)?, request as u64, arg_ptr)
    }, -1)
}

macro_rules! pread_fns {
    ($($name:ident;)*) => {$(
        /// Interposed: a region read of a device fd.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t) -> ssize_t {
            // SAFETY: the program's arguments; `buf` receives the data.
            interpose!(inside => unsafe { next::$name(fd, buf, count, offset) },
                rw::pread(borrowed(fd)?, unsafe { UserPtr::new(buf) }, count, offset), -1)
        }
    )*};
}

pread_fns! { pread; pread64; }

macro_rules! pread_chk_fns {
    ($($name:ident => $plain:ident;)*) => {$(
        /// Interposed: the fortified form; the size check aborts as the C
        /// library's does.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t, buflen: size_t) -> ssize_t {
            if count > buflen {
                // SAFETY: the program's arguments: the C library reports it.
                return unsafe { next::$name(fd, buf, count, offset, buflen) };
            }
            // SAFETY: as above; the plain form with the same arguments.
            unsafe { $plain(fd, buf, count, offset) }
        }
    )*};
}

pread_chk_fns! { __pread_chk => pread; __pread64_chk => pread64; }

macro_rules! pwrite_fns {
    ($($name:ident;)*) => {$(
        /// Interposed: a region write of a device fd.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, buf: *const c_void, count: size_t, offset: off_t) -> ssize_t {
            // SAFETY: the program's arguments; `buf` holds the data.
            interpose!(inside => unsafe { next::$name(fd, buf, count, offset) },
                rw::pwrite(borrowed(fd)?, unsafe { UserPtr::new(buf) }, count, offset), -1)
        }
    )*};
}

pwrite_fns! { pwrite; pwrite64; }

/// Interposed: a read at the file position of a device fd.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    if !fds::maybe_ours(fd) {
        // SAFETY: the program's arguments, unchanged.
        return unsafe { next::read(fd, buf, count) };
    }
    // SAFETY: as above; `buf` receives the data.
    interpose!(inside => unsafe { next::read(fd, buf, count) },
        rw::read(borrowed(fd)?, unsafe { UserPtr::new(buf) }, count), -1)
}

/// Interposed: the fortified `read`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __read_chk(fd: c_int, buf: *mut c_void, count: size_t, buflen: size_t) -> ssize_t {
    if count > buflen || !fds::maybe_ours(fd) {
        // SAFETY: the program's arguments, unchanged.
        return unsafe { next::__read_chk(fd, buf, count, buflen) };
    }
    // SAFETY: as above.
    unsafe { read(fd, buf, count) }
}

/// Interposed: a write at the file position of a device fd.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    if !fds::maybe_ours(fd) {
        // SAFETY: the program's arguments, unchanged.
        return unsafe { next::write(fd, buf, count) };
    }
    // SAFETY: as above; `buf` holds the data.
    interpose!(inside => unsafe { next::write(fd, buf, count) },
        rw::write(borrowed(fd)?, unsafe { UserPtr::new(buf) }, count), -1)
}

macro_rules! lseek_fns {
    ($($name:ident;)*) => {$(
        /// Interposed: object fds cannot seek.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, offset: off_t, whence: c_int) -> off_t {
            if !fds::maybe_ours(fd) {
                // SAFETY: the program's arguments, unchanged.
                return unsafe { next::$name(fd, offset, whence) };
            }
            // SAFETY: as above.
            interpose!(inside => unsafe { next::$name(fd, offset, whence) }, rw::lseek(borrowed(fd)?), -1)
        }
    )*};
}

lseek_fns! { lseek; lseek64; }

// ---------------------------------------------------------------------------
// Mappings.

macro_rules! mmap_fns {
    ($($name:ident;)*) => {$(
        /// Interposed: a mapping of an object fd is made by our address
        /// space from the server's plan.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, offset: off_t) -> *mut c_void {
            // SAFETY: the program's arguments, unchanged.
            interpose!(inside => unsafe { next::$name(addr, len, prot, flags, fd, offset) }, {
                let call = maps::MmapCall { addr: addr as u64, len: len as u64, prot, flags, offset };
                let fd = if flags & libc::MAP_ANONYMOUS != 0 { None } else { borrowed(fd) };
                maps::mmap(&call, fd).map(|r| r.map(|va| va as *mut c_void))
            }, libc::MAP_FAILED)
        }
    )*};
}

mmap_fns! { mmap; mmap64; }

/// Interposed: unmaps our mappings in the range ourselves, the rest as asked.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: size_t) -> c_int {
    // SAFETY: the program's arguments, unchanged.
    interpose!(inside => unsafe { next::munmap(addr, len) },
        maps::munmap(addr as u64, len as u64).map(|r| r.map(|()| 0)), -1)
}

/// Interposed: a resize or move of one of our mappings.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mremap(old: *mut c_void, old_len: size_t, new_len: size_t, flags: c_int, new: *mut c_void) -> *mut c_void {
    // SAFETY: the program's arguments, unchanged (`new` is read only with
    // MREMAP_FIXED, see the module doc).
    interpose!(inside => unsafe { next::mremap(old, old_len, new_len, flags, new) },
        maps::mremap(old as u64, old_len as u64, new_len as u64, flags, new as u64).map(|r| r.map(|va| va as *mut c_void)),
        libc::MAP_FAILED)
}

/// Interposed: refuses to make a read-only mapping of ours writable.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mprotect(addr: *mut c_void, len: size_t, prot: c_int) -> c_int {
    // SAFETY: the program's arguments, unchanged.
    interpose!(inside => unsafe { next::mprotect(addr, len, prot) },
        maps::mprotect(addr as u64, len as u64, prot).map(|r| r.map(|()| 0)), -1)
}

// ---------------------------------------------------------------------------
// Signals.

/// Reads a `struct sigaction` from the program.
fn read_sigaction(p: *const libc::sigaction) -> Result<Option<libc::sigaction>, Errno> {
    if p.is_null() {
        return Ok(None);
    }
    let mut bytes = [0u8; std::mem::size_of::<libc::sigaction>()];
    // SAFETY: the program passed `p` for sigaction to read.
    unsafe { UserPtr::new(p) }.read_exact(&mut bytes)?;
    // SAFETY: every field of `sigaction` is an integer, a signal set or an
    // optional function pointer: any bit pattern is a valid value.
    Ok(Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<libc::sigaction>()) }))
}

fn write_sigaction(p: *mut libc::sigaction, a: &libc::sigaction) -> Result<(), Errno> {
    // SAFETY: `a` is a plain struct of `size_of` bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts((a as *const libc::sigaction).cast::<u8>(), std::mem::size_of::<libc::sigaction>())
    };
    // SAFETY: the program passed `p` for sigaction to fill.
    unsafe { UserPtr::new(p) }.write(bytes)
}

fn is_fault_signal(signo: c_int) -> bool {
    signo == libc::SIGBUS || signo == libc::SIGSEGV
}

/// Interposed: the program's SIGBUS and SIGSEGV actions are recorded behind
/// our handler once it is installed (mm's `probe::program_sigaction`).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sigaction(signo: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    if !is_fault_signal(signo) {
        // SAFETY: the program's arguments, unchanged.
        return unsafe { next::sigaction(signo, act, old) };
    }
    let r = read_sigaction(act).and_then(|act| {
        // SAFETY: all-zero is a valid sigaction for mm to fill.
        let mut prev: libc::sigaction = unsafe { std::mem::zeroed() };
        mm::probe::program_sigaction(signo, act.as_ref(), (!old.is_null()).then_some(&mut prev))?;
        if old.is_null() {
            Ok(())
        } else {
            write_sigaction(old, &prev)
        }
    });
    answer(r.map(|()| 0), -1)
}

/// `signal` and its variants as `sigaction` with their flags.
fn fault_signal(signo: c_int, handler: libc::sighandler_t, flags: c_int, defer: bool) -> libc::sighandler_t {
    // SAFETY: all-zero is a valid sigaction, then filled.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = flags;
    if defer {
        // SAFETY: a set on our stack and a valid signal number.
        unsafe { libc::sigaddset(&mut act.sa_mask, signo) };
    }
    // SAFETY: as above.
    let mut prev: libc::sigaction = unsafe { std::mem::zeroed() };
    match mm::probe::program_sigaction(signo, Some(&act), Some(&mut prev)) {
        Ok(()) => prev.sa_sigaction,
        Err(e) => {
            set_errno(e.raw_os_error());
            libc::SIG_ERR
        }
    }
}

/// Interposed: `signal` (BSD semantics, as the C library's).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn signal(signo: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if !is_fault_signal(signo) {
        // SAFETY: the program's arguments, unchanged.
        return unsafe { next::signal(signo, handler) };
    }
    fault_signal(signo, handler, libc::SA_RESTART, true)
}

/// Interposed: `bsd_signal`, the same as `signal`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn bsd_signal(signo: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if !is_fault_signal(signo) {
        // SAFETY: the program's arguments, unchanged.
        return unsafe { next::bsd_signal(signo, handler) };
    }
    fault_signal(signo, handler, libc::SA_RESTART, true)
}

/// Interposed: `sysv_signal` (one-shot, not deferred).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sysv_signal(signo: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if !is_fault_signal(signo) {
        // SAFETY: the program's arguments, unchanged.
        return unsafe { next::sysv_signal(signo, handler) };
    }
    fault_signal(signo, handler, libc::SA_RESETHAND | libc::SA_NODEFER, false)
}
