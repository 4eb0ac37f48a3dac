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
//!
//! This module is the crate's only `unsafe`, split by area: this file (the
//! C library's definitions, entering, the program's memory, descriptor
//! slots, start and fork), `files` (paths and directory streams) and
//! `memory` (object fds, mappings, signals).
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
    fn madvise(addr: *mut c_void, len: size_t, advice: c_int) -> c_int;
    fn fork() -> pid_t;
    fn wait(status: *mut c_int) -> pid_t;
    fn waitpid(pid: pid_t, status: *mut c_int, options: c_int) -> pid_t;
    fn wait3(status: *mut c_int, options: c_int, usage: *mut libc::rusage) -> pid_t;
    fn wait4(pid: pid_t, status: *mut c_int, options: c_int, usage: *mut libc::rusage) -> pid_t;
    fn waitid(idtype: libc::idtype_t, id: libc::id_t, info: *mut libc::siginfo_t, options: c_int) -> c_int;
    fn pthread_sigmask(how: c_int, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> c_int;
    fn sigprocmask(how: c_int, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> c_int;
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
        mm::process_vm::read_some(std::process::id() as i32, self.0, buf).map_err(|_| Errno::FAULT)
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
        mm::process_vm::write(std::process::id() as i32, self.0, data).map_err(|_| Errno::FAULT)
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

/// `madvise(2)` of a range that holds none of our mappings, for a call the
/// program made over a range that also meets ours.
pub(crate) fn madvise_foreign(addr: u64, len: u64, advice: c_int) -> Result<(), Errno> {
    // SAFETY: the program asked for this advice on this range, and
    // madvise::madvise passes only the parts of it that are not ours.
    let r = unsafe { next::madvise(addr as *mut c_void, len as size_t, advice) };
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
    // SAFETY: registers handlers that are sound in their places: prepare
    // and parent take and release one lock of ours in the forking thread;
    // child runs in the child's only thread (see `process::after_fork_in_child`).
    unsafe { libc::pthread_atfork(Some(prepare_fork), Some(parent_after_fork), Some(child_after_fork)) };
    let _inside = enter();
    crate::process::init();
}

extern "C" fn prepare_fork() {
    if let Some(_inside) = enter() {
        let _ = catch_unwind(crate::process::before_fork);
    }
}

extern "C" fn parent_after_fork() {
    crate::inherit::after_fork_in_parent();
}

extern "C" fn child_after_fork() {
    // A fork from inside the library (never made) would have nothing to take over.
    let _inside = enter();
    // A panic must not unwind into the C library.
    let _ = catch_unwind(crate::process::after_fork_in_child);
}

/// `vfork` runs as `fork`: POSIX allows it, and a child that shares our
/// memory could not get its own connections without taking the parent's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn vfork() -> pid_t {
    // SAFETY: fork(2) takes no arguments.
    unsafe { next::fork() }
}

/// After a wait that may have reaped a child: the kernel runs an exiting
/// task's file releases before its parent can reap it, so a last close the
/// child's exit made (its object fds hung up) has taken effect when the
/// wait returns. As after `close`, the server handles every pending
/// hang-up before it answers.
fn after_wait(reaped: bool) {
    let Some(_inside) = enter() else { return };
    if reaped {
        let e = errno();
        guarded(|| {
            crate::fds::after_reap();
            None::<Result<(), Errno>>
        });
        set_errno(e);
    }
}

/// Interposed: see [`after_wait`].
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn wait(status: *mut c_int) -> pid_t {
    // SAFETY: the program's arguments, unchanged.
    let r = unsafe { next::wait(status) };
    after_wait(r > 0);
    r
}

/// Interposed: see [`after_wait`].
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn waitpid(pid: pid_t, status: *mut c_int, options: c_int) -> pid_t {
    // SAFETY: the program's arguments, unchanged.
    let r = unsafe { next::waitpid(pid, status, options) };
    after_wait(r > 0);
    r
}

/// Interposed: see [`after_wait`].
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn wait3(status: *mut c_int, options: c_int, usage: *mut libc::rusage) -> pid_t {
    // SAFETY: the program's arguments, unchanged.
    let r = unsafe { next::wait3(status, options, usage) };
    after_wait(r > 0);
    r
}

/// Interposed: see [`after_wait`].
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn wait4(pid: pid_t, status: *mut c_int, options: c_int, usage: *mut libc::rusage) -> pid_t {
    // SAFETY: the program's arguments, unchanged.
    let r = unsafe { next::wait4(pid, status, options, usage) };
    after_wait(r > 0);
    r
}

/// Interposed: see [`after_wait`]; `WNOWAIT` reaps nothing.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn waitid(
    idtype: libc::idtype_t,
    id: libc::id_t,
    info: *mut libc::siginfo_t,
    options: c_int,
) -> c_int {
    // SAFETY: the program's arguments, unchanged.
    let r = unsafe { next::waitid(idtype, id, info, options) };
    after_wait(r == 0 && options & libc::WNOWAIT == 0);
    r
}

// The interposers (after the macros above, which they use).
mod files;
mod memory;
