//! The floor of trap-and-emulate: the cost of one access that faults into a
//! signal handler which does nothing but step over the instruction.
//!
//! The page is a one-page shared memfd mapping carrying a userfaultfd poison
//! marker, the very marker a revoked or register page carries, so the kernel
//! path (fault, marker, SIGBUS delivery, `rt_sigreturn`) is the one an
//! emulated register access pays before any decoding or device work.
//!
//! It runs in a forked child so that the child may replace the process-wide
//! SIGBUS handler of [`crate::probe`] without disturbing the parent's
//! threads. Between `fork` and `_exit` the child only makes system calls and
//! reads the clock: no allocation and no lock, since another parent thread
//! may have held either at the moment of the fork.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use page::{PhysAddr, PAGE_SIZE};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{waitpid, Pid, WaitOptions};

use super::PlainMapping;
use crate::{sys, MmError, PhysMemory};

// Two accesses of known extent: the handler resumes at the label after the
// faulting instruction, so no decoding is needed.
core::arch::global_asm!(
    ".pushsection .text.vfio_dmabuf_bare_trap,\"ax\",@progbits",
    ".p2align 4",
    ".globl vfio_dmabuf_bare_trap_load",
    ".hidden vfio_dmabuf_bare_trap_load",
    ".globl vfio_dmabuf_bare_trap_load_resume",
    ".hidden vfio_dmabuf_bare_trap_load_resume",
    ".globl vfio_dmabuf_bare_trap_store",
    ".hidden vfio_dmabuf_bare_trap_store",
    ".globl vfio_dmabuf_bare_trap_store_resume",
    ".hidden vfio_dmabuf_bare_trap_store_resume",
    "vfio_dmabuf_bare_trap_load:",
    "    mov eax, dword ptr [rdi]",
    "vfio_dmabuf_bare_trap_load_resume:",
    "    ret",
    "vfio_dmabuf_bare_trap_store:",
    "    mov dword ptr [rdi], esi",
    "vfio_dmabuf_bare_trap_store_resume:",
    "    ret",
    ".popsection",
);

extern "sysv64" {
    fn vfio_dmabuf_bare_trap_load(addr: usize) -> u32;
    fn vfio_dmabuf_bare_trap_load_resume();
    fn vfio_dmabuf_bare_trap_store(addr: usize, value: u32);
    fn vfio_dmabuf_bare_trap_store_resume();
}

/// Traps taken by the child's handler, checked against the accesses made so
/// that a page that stopped trapping cannot pass for a fast trap.
static TRAPS: AtomicU64 = AtomicU64::new(0);

extern "C" fn skip_instruction(signo: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let load = vfio_dmabuf_bare_trap_load as *const () as usize;
    let store = vfio_dmabuf_bare_trap_store as *const () as usize;
    // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler;
    // only the saved RIP slot is read and written.
    let gregs = unsafe { &mut (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let rip = gregs[libc::REG_RIP as usize] as usize;
    let resume = if rip == load {
        vfio_dmabuf_bare_trap_load_resume as *const () as usize
    } else if rip == store {
        vfio_dmabuf_bare_trap_store_resume as *const () as usize
    } else {
        // Not one of ours: the default action ends the child when the
        // instruction faults again, and the parent reports the lost child.
        // SAFETY: signal(2) is async-signal-safe and takes plain integers.
        unsafe { libc::signal(signo, libc::SIG_DFL) };
        return;
    };
    gregs[libc::REG_RIP as usize] = resume as i64;
    TRAPS.fetch_add(1, Ordering::Relaxed);
}

/// Nanoseconds per trapped 32-bit access (a load, or a store when `write`),
/// averaged over `iterations` accesses after a short warm-up, measured in a
/// forked child.
///
/// # Errors
///
/// `EINVAL` for zero iterations; the errno of any setup call (memfd, mmap,
/// pipe, fork, userfaultfd, `UFFDIO_POISON`, `sigaction`); `EIO` when the
/// child dies or its page does not trap on every access.
pub fn bare_trap_ns(iterations: u64, write: bool) -> Result<f64, MmError> {
    if iterations == 0 {
        return Err(MmError::Invalid("a bare trap measurement needs at least one access"));
    }
    let memory = Arc::new(PhysMemory::new("bench-bare-trap", PhysAddr(0), PAGE_SIZE)?);
    let map = PlainMapping::new(&memory, PhysAddr(0), PAGE_SIZE, true)?;
    let (rx, tx) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(MmError::sys("pipe2"))?;
    // SAFETY: the child runs `child` only, which makes system calls and
    // never returns (it ends in `_exit`); the parent continues normally.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(MmError::Sys { call: "fork", errno: Errno::from_raw_os_error(last_errno()) });
    }
    if pid == 0 {
        child(map.addr() as usize, write, iterations, tx);
    }
    drop(tx);
    let mut reply = [0u8; 16];
    let mut got = 0;
    while got < reply.len() {
        match rustix::io::read(&rx, &mut reply[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(MmError::Sys { call: "read from the bare trap child", errno: e }),
        }
    }
    let child_pid = Pid::from_raw(pid).ok_or(MmError::Invalid("fork returned no pid"))?;
    let status = waitpid(Some(child_pid), WaitOptions::empty()).map_err(MmError::sys("waitpid"))?;
    let exited_cleanly = status.is_some_and(|(_, s)| s.exit_status() == Some(0));
    if got < reply.len() || !exited_cleanly {
        return Err(MmError::Sys { call: "bare trap child", errno: Errno::IO });
    }
    let (code, value) = reply.split_at(8);
    let code = u64::from_ne_bytes(code.try_into().unwrap_or_default());
    let value = f64::from_ne_bytes(value.try_into().unwrap_or_default());
    match code {
        0 => Ok(value),
        CHILD_MISSED_TRAPS => Err(MmError::Sys { call: "bare trap child (an access did not trap)", errno: Errno::IO }),
        errno => Err(MmError::Sys { call: "bare trap child setup", errno: Errno::from_raw_os_error(errno as i32) }),
    }
}

/// Reply code of a child whose handler ran fewer times than it accessed.
const CHILD_MISSED_TRAPS: u64 = u64::MAX;

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// The child: poison the page, install the skipping handler, time the
/// accesses, send `[code, ns per access]` and exit.
fn child(addr: usize, write: bool, iterations: u64, tx: OwnedFd) -> ! {
    let (code, value) = match measure(addr, write, iterations) {
        Ok(ns) => (0, ns),
        Err(errno) => (errno, 0.0),
    };
    let mut reply = [0u8; 16];
    reply[..8].copy_from_slice(&code.to_ne_bytes());
    reply[8..].copy_from_slice(&value.to_ne_bytes());
    let _ = rustix::io::write(&tx, &reply);
    // SAFETY: _exit ends the child without running the parent's atexit
    // handlers or destructors, which is what a forked child must do.
    unsafe { libc::_exit(0) }
}

fn measure(addr: usize, write: bool, iterations: u64) -> Result<f64, u64> {
    let raw = |e: Errno| e.raw_os_error() as u64;
    // The child inherits no userfaultfd registration: give the page its own
    // and place the poison marker.
    let uffd = sys::userfaultfd_open().map_err(raw)?;
    sys::uffdio_api(uffd.as_fd(), sys::UFFD_FEATURE_MINOR_SHMEM | sys::UFFD_FEATURE_POISON).map_err(raw)?;
    sys::uffdio_register_minor(uffd.as_fd(), addr as u64, PAGE_SIZE).map_err(raw)?;
    sys::uffdio_poison(uffd.as_fd(), addr as u64, PAGE_SIZE).map_err(|(e, _)| raw(e))?;
    // SAFETY: a zeroed sigaction is a valid starting point; the handler is
    // an `extern "C"` function of the SA_SIGINFO shape; SIGBUS is unblocked
    // because a blocked synchronous SIGBUS would kill the child instead.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = skip_instruction as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) != 0 {
            return Err(last_errno() as u64);
        }
        let mut unblock: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut unblock);
        libc::sigaddset(&mut unblock, libc::SIGBUS);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &unblock, std::ptr::null_mut());
    }
    let access = |n: u64| {
        for i in 0..n {
            // SAFETY: `addr` is the poisoned page of this child; every
            // access faults and the handler resumes after the instruction,
            // so no memory is read or written.
            unsafe {
                if write {
                    vfio_dmabuf_bare_trap_store(addr, i as u32);
                } else {
                    vfio_dmabuf_bare_trap_load(addr);
                }
            }
        }
    };
    let warm_up = iterations.min(64);
    access(warm_up);
    let t = Instant::now();
    access(iterations);
    let elapsed = t.elapsed();
    if TRAPS.load(Ordering::Relaxed) != warm_up + iterations {
        return Err(CHILD_MISSED_TRAPS);
    }
    Ok(elapsed.as_secs_f64() * 1e9 / iterations as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_access_traps_and_costs_a_positive_time() {
        // The child checks that each access trapped; a page that did not
        // trap would come back as EIO.
        for write in [false, true] {
            let ns = bare_trap_ns(200, write).unwrap_or_else(|e| panic!("write={write}: {e}"));
            assert!(ns.is_finite() && ns > 0.0, "write={write}: {ns}");
        }
    }

    #[test]
    fn zero_iterations_are_refused() {
        assert_eq!(bare_trap_ns(0, false).map_err(|e| e.errno()).err(), Some(Errno::INVAL));
    }
}
