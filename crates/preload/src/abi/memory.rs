//! The interposers of object fds, mappings and signals: `ioctl`, region
//! reads and writes, `mmap` and friends, `madvise`, `sigaction` and
//! `signal`.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_ulong, c_void};

use libc::{off_t, size_t, ssize_t};
use rustix::io::Errno;

use super::{answer, borrowed, enter, errno, guarded, next, set_errno, UserPtr};
use crate::{fds, ioctl, maps, rw};

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
        ioctl::ioctl(borrowed(fd)?, request, arg_ptr)
    }, -1)
}

macro_rules! pread_fns {
    ($($name:ident;)*) => {$(
        /// Interposed: a region read of a device fd.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t) -> ssize_t {
            // SAFETY: the program's arguments; `buf` receives the data.
            interpose!(inside => unsafe { next::$name(fd, buf, count, offset) },
                {
                // SAFETY: the program passed `buf`, which receives the data.
                let buf = unsafe { UserPtr::new(buf) };
                rw::pread(borrowed(fd)?, buf, count, offset)
            }, -1)
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
                {
                // SAFETY: the program passed `buf`, which holds the data.
                let buf = unsafe { UserPtr::new(buf) };
                rw::pwrite(borrowed(fd)?, buf, count, offset)
            }, -1)
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
        {
                // SAFETY: the program passed `buf`, which receives the data.
                let buf = unsafe { UserPtr::new(buf) };
                rw::read(borrowed(fd)?, buf, count)
            }, -1)
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
        {
                // SAFETY: the program passed `buf`, which holds the data.
                let buf = unsafe { UserPtr::new(buf) };
                rw::write(borrowed(fd)?, buf, count)
            }, -1)
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
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: size_t,
    new_len: size_t,
    flags: c_int,
    new: *mut c_void,
) -> *mut c_void {
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

/// Interposed: advice on our mappings is answered as for a VFIO or
/// dma-buf VMA (`madvise`), never applied to the frames beneath.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn madvise(addr: *mut c_void, len: size_t, advice: c_int) -> c_int {
    // SAFETY: the program's arguments, unchanged.
    interpose!(inside => unsafe { next::madvise(addr, len, advice) },
        crate::madvise::madvise(addr as u64, len as u64, advice).map(|r| r.map(|()| 0)), -1)
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

/// `pthread_sigmask`/`sigprocmask` with SIGBUS kept deliverable: a register
/// access traps with a synchronous SIGBUS, which the kernel would turn into
/// a kill in a thread that blocks it. The program's wish is recorded per
/// thread instead (`mm::probe::set_program_blocks`) and reported back in
/// the old set; mm's delivery gives a SIGBUS the program believes blocked
/// the default action, as the kernel does. `real` and the result give 0 or
/// an error number.
fn keep_sigbus(
    how: c_int,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
    real: impl FnOnce(c_int, *const libc::sigset_t, *mut libc::sigset_t) -> c_int,
) -> c_int {
    let mut local: Option<libc::sigset_t> = None;
    let mut wants = None;
    if !set.is_null() {
        let mut bytes = [0u8; std::mem::size_of::<libc::sigset_t>()];
        // SAFETY: the program passed `set` for the call to read.
        if unsafe { UserPtr::new(set) }.read_exact(&mut bytes).is_ok() {
            // SAFETY: a sigset_t is plain bits: any pattern is valid.
            let mut copy = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<libc::sigset_t>()) };
            // SAFETY: `copy` is a valid set on our stack.
            wants = Some(unsafe { libc::sigismember(&copy, libc::SIGBUS) } == 1);
            if how != libc::SIG_UNBLOCK {
                // SAFETY: as above.
                unsafe { libc::sigdelset(&mut copy, libc::SIGBUS) };
            }
            local = Some(copy);
        }
    }
    // An unreadable set goes to the C library as it is (EFAULT).
    let set_ptr = local.as_ref().map_or(set, |l| l as *const libc::sigset_t);
    let was = mm::probe::program_blocks(libc::SIGBUS);
    // SAFETY: as above.
    let mut prev: libc::sigset_t = unsafe { std::mem::zeroed() };
    let r = real(how, set_ptr, if old.is_null() { std::ptr::null_mut() } else { &mut prev });
    if r != 0 {
        return r;
    }
    if !old.is_null() {
        if was {
            // SAFETY: `prev` is a valid set on our stack.
            unsafe { libc::sigaddset(&mut prev, libc::SIGBUS) };
        }
        // SAFETY: `prev` is plain bits of its size.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&prev as *const libc::sigset_t).cast::<u8>(),
                std::mem::size_of::<libc::sigset_t>(),
            )
        };
        // SAFETY: the program passed `old` for the call to fill.
        if unsafe { UserPtr::new(old) }.write(bytes).is_err() {
            return libc::EFAULT;
        }
    }
    if let Some(wants) = wants {
        let blocked = match how {
            libc::SIG_BLOCK => was || wants,
            libc::SIG_UNBLOCK => was && !wants,
            _ => wants,
        };
        mm::probe::set_program_blocks(libc::SIGBUS, blocked);
    }
    0
}

/// Interposed: `pthread_sigmask`, SIGBUS kept deliverable (see `keep_sigbus`).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_sigmask(how: c_int, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> c_int {
    if !crate::process::active() {
        // SAFETY: the program's arguments, unchanged.
        return unsafe { next::pthread_sigmask(how, set, old) };
    }
    // SAFETY: `keep_sigbus` passes valid sets (ours or the program's);
    // pthread_sigmask returns the error number itself.
    keep_sigbus(how, set, old, |h, s, o| unsafe { next::pthread_sigmask(h, s, o) })
}

/// Interposed: `sigprocmask`, SIGBUS kept deliverable (see `keep_sigbus`).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sigprocmask(how: c_int, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> c_int {
    if !crate::process::active() {
        // SAFETY: the program's arguments, unchanged.
        return unsafe { next::sigprocmask(how, set, old) };
    }
    // SAFETY: `keep_sigbus` passes valid sets (ours or the program's).
    let e = keep_sigbus(how, set, old, |h, s, o| if unsafe { next::sigprocmask(h, s, o) } == 0 { 0 } else { errno() });
    if e == 0 {
        0
    } else {
        set_errno(e);
        -1
    }
}
