//! The raw probes: one-instruction loads and stores, and a `rep movsb`
//! copy, at any address, whose SIGBUS or SIGSEGV a process-wide handler
//! turns into an [`AccessFault`].
//!
//! Analogous to the kernel's exception tables (`copy_from_user` fixups):
//! each access is one instruction at a known address. The handler, installed
//! once, checks whether the faulting instruction is one of ours; if so it
//! resumes at the instruction after it, with the signal's number, code and
//! address in the return registers. Any other SIGBUS or SIGSEGV goes to the
//! program's recorded action (`chain`: the handler installed before ours,
//! such as Rust's own stack-overflow handler, those the program installs
//! afterwards, or the default action), so real crashes still crash. A
//! SIGBUS it does not take first goes to the emulation of register accesses
//! (`emulate`).
//!
//! # Safety
//!
//! This module uses `unsafe` for the inline assembly, the signal handler and
//! the accesses themselves. The functions here are `unsafe fn`: a fault is
//! caught, but a *successful* store to memory Rust owns (the heap, a stack)
//! is a data race or worse, so the caller must know what lives at the
//! address. The safe wrappers in the parent module check every address
//! against the registry of our own mappings first. No function here forms a
//! Rust reference to the target memory (STYLE §4.6).
#![allow(unsafe_code)]

use std::sync::Once;

use super::{AccessFault, Width};

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct ProbeRet {
    value: u64,
    /// 0 on success; else `1 | code << 8 | signo << 24` and `value` = `si_addr`.
    status: u64,
}

// Each probe clears the status register, performs exactly one access at the
// `_insn` label and returns. The table pairs every access instruction with
// the address to resume at (the `ret` that follows it).
core::arch::global_asm!(
    ".pushsection .text.vfio_dmabuf_probe,\"ax\",@progbits",
    ".p2align 4",
    "vfio_dmabuf_probe_read_u8:",
    "    xor edx, edx",
    "1:  movzx eax, byte ptr [rdi]",
    "2:  ret",
    "vfio_dmabuf_probe_read_u16:",
    "    xor edx, edx",
    "3:  movzx eax, word ptr [rdi]",
    "4:  ret",
    "vfio_dmabuf_probe_read_u32:",
    "    xor edx, edx",
    "5:  mov eax, dword ptr [rdi]",
    "6:  ret",
    "vfio_dmabuf_probe_read_u64:",
    "    xor edx, edx",
    "7:  mov rax, qword ptr [rdi]",
    "8:  ret",
    "vfio_dmabuf_probe_write_u8:",
    "    xor edx, edx",
    "    xor eax, eax",
    "9:  mov byte ptr [rdi], sil",
    "10: ret",
    "vfio_dmabuf_probe_write_u16:",
    "    xor edx, edx",
    "    xor eax, eax",
    "11: mov word ptr [rdi], si",
    "12: ret",
    "vfio_dmabuf_probe_write_u32:",
    "    xor edx, edx",
    "    xor eax, eax",
    "13: mov dword ptr [rdi], esi",
    "14: ret",
    "vfio_dmabuf_probe_write_u64:",
    "    xor edx, edx",
    "    xor eax, eax",
    "15: mov qword ptr [rdi], rsi",
    "16: ret",
    // Bulk copy: rdi = destination, rsi = source, rdx = length. A fault
    // inside `rep movsb` resumes at the `ret` with the fault in rax/rdx.
    "vfio_dmabuf_probe_copy:",
    "    mov rcx, rdx",
    "    xor edx, edx",
    "    xor eax, eax",
    "17: rep movsb",
    "18: ret",
    ".popsection",
    ".pushsection .data.rel.ro.vfio_dmabuf_probe,\"aw\",@progbits",
    ".p2align 3",
    "vfio_dmabuf_probe_table:",
    "    .quad 1b, 2b, 3b, 4b, 5b, 6b, 7b, 8b",
    "    .quad 9b, 10b, 11b, 12b, 13b, 14b, 15b, 16b",
    "    .quad 17b, 18b",
    ".popsection",
);

extern "sysv64" {
    fn vfio_dmabuf_probe_read_u8(addr: usize) -> ProbeRet;
    fn vfio_dmabuf_probe_read_u16(addr: usize) -> ProbeRet;
    fn vfio_dmabuf_probe_read_u32(addr: usize) -> ProbeRet;
    fn vfio_dmabuf_probe_read_u64(addr: usize) -> ProbeRet;
    fn vfio_dmabuf_probe_write_u8(addr: usize, v: u64) -> ProbeRet;
    fn vfio_dmabuf_probe_write_u16(addr: usize, v: u64) -> ProbeRet;
    fn vfio_dmabuf_probe_write_u32(addr: usize, v: u64) -> ProbeRet;
    fn vfio_dmabuf_probe_write_u64(addr: usize, v: u64) -> ProbeRet;
    fn vfio_dmabuf_probe_copy(dst: usize, src: usize, len: usize) -> ProbeRet;
    static vfio_dmabuf_probe_table: [usize; 18];
}

static INSTALL: Once = Once::new();

/// Looks up the resume address for a faulting instruction pointer.
fn fixup_for(rip: usize) -> Option<usize> {
    // SAFETY: the table is immutable data emitted by the assembly above.
    let table = unsafe { &*std::ptr::addr_of!(vfio_dmabuf_probe_table) };
    table.chunks_exact(2).find(|pair| pair[0] == rip).map(|pair| pair[1])
}

extern "C" fn on_fault(signo: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext_t and siginfo_t to an
    // SA_SIGINFO handler; we only read and write register slots.
    unsafe {
        let uc = ctx.cast::<libc::ucontext_t>();
        // (a) An access to a register page: emulate it and resume.
        let mut fault = None;
        if signo == libc::SIGBUS {
            match super::emulate::on_sigbus(info, uc) {
                super::emulate::Outcome::Resumed => return,
                super::emulate::Outcome::Fault(f) => fault = Some(f),
                super::emulate::Outcome::Declined => {}
            }
        }
        // (b) A probe's access: report the fault to it.
        let gregs = &mut (*uc).uc_mcontext.gregs;
        let rip = gregs[libc::REG_RIP as usize] as usize;
        if let Some(resume) = fixup_for(rip) {
            let (signo, code, addr) = match fault {
                Some(f) => (f.signo, f.code as u64 & 0xffff, f.addr),
                None => (signo, (*info).si_code as u64 & 0xffff, (*info).si_addr() as u64),
            };
            gregs[libc::REG_RIP as usize] = resume as i64;
            gregs[libc::REG_RAX as usize] = addr as i64;
            gregs[libc::REG_RDX as usize] = (1 | (code << 8) | ((signo as u64) << 24)) as i64;
            return;
        }
        // (c) Not ours: the program's own action (or whoever handled the
        // signal before us), as the kernel would have run it.
        super::chain::deliver(signo, info, ctx);
    }
}

/// Our action for `signo`.
fn ours(signo: libc::c_int) -> libc::sigaction {
    // SAFETY: a zeroed sigaction then filled fields; the handler is
    // async-signal-safe (see `on_fault` and `emulate`).
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_fault as *const () as usize;
        // SIGBUS runs on the thread's own stack: emulating a register
        // access needs more stack than an alternate signal stack (sized for
        // reporting a stack overflow, which is a SIGSEGV) offers. A
        // program's handler that asked for its alternate stack is moved
        // there when it is called (`chain`).
        act.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
        if signo == libc::SIGSEGV {
            act.sa_flags |= libc::SA_ONSTACK;
        }
        libc::sigemptyset(&mut act.sa_mask);
        act
    }
}

/// Installs the process-wide handler once (idempotent, thread-safe). The
/// actions it replaces become the program's recorded ones (`chain`).
pub fn install_fault_handler() {
    INSTALL.call_once(|| {
        // Before the first trap can reach the handler: building the
        // decoder allocates.
        super::emulate::prepare();
        for signo in [libc::SIGSEGV, libc::SIGBUS] {
            if let Err(e) = super::chain::install(signo, &ours(signo)) {
                tracing::error!(signo, %e, "cannot install the fault handler");
            }
        }
    });
}

/// Puts our SIGBUS handler back in front when something installed another
/// without going through [`super::program_sigaction`] (register mappings
/// need it: their accesses trap), chaining to that one from now on. Called
/// before each register mapping is made.
pub(crate) fn reassert_sigbus_handler() {
    install_fault_handler();
    if let Err(e) = super::chain::install(libc::SIGBUS, &ours(libc::SIGBUS)) {
        tracing::error!(%e, "cannot reinstall the SIGBUS handler");
    }
}

fn finish(r: ProbeRet) -> Result<u64, AccessFault> {
    if r.status == 0 {
        Ok(r.value)
    } else {
        Err(AccessFault { signo: (r.status >> 24) as i32, code: ((r.status >> 8) & 0xffff) as i32, addr: r.value })
    }
}

/// Loads a value of `width` from `addr` with one instruction (never torn,
/// never merged, like a device register access).
///
/// # Safety
///
/// `[addr, addr + width)` must be memory that no Rust reference covers
/// mutably and that no other code relies on staying unread (in practice: a
/// mapping this crate created, or memory the caller owns). An unmapped or
/// poisoned address is fine: it is reported, not dereferenced by Rust.
pub unsafe fn read(addr: u64, width: Width) -> Result<u64, AccessFault> {
    install_fault_handler();
    let a = addr as usize;
    // SAFETY: the access happens inside the assembly probe, whose fault is
    // caught by the handler installed above; the caller vouches for the
    // memory (see # Safety).
    let r = unsafe {
        match width {
            Width::U8 => vfio_dmabuf_probe_read_u8(a),
            Width::U16 => vfio_dmabuf_probe_read_u16(a),
            Width::U32 => vfio_dmabuf_probe_read_u32(a),
            Width::U64 => vfio_dmabuf_probe_read_u64(a),
        }
    };
    finish(r)
}

/// Stores `value` (truncated to `width`) at `addr` with one instruction.
///
/// # Safety
///
/// `[addr, addr + width)` must be memory the caller may write and that no
/// Rust reference covers (see [`read`]); a store into memory Rust owns
/// elsewhere corrupts it.
pub unsafe fn write(addr: u64, width: Width, value: u64) -> Result<(), AccessFault> {
    install_fault_handler();
    let a = addr as usize;
    // SAFETY: as in `read`; the caller vouches that the store may happen.
    let r = unsafe {
        match width {
            Width::U8 => vfio_dmabuf_probe_write_u8(a, value),
            Width::U16 => vfio_dmabuf_probe_write_u16(a, value),
            Width::U32 => vfio_dmabuf_probe_write_u32(a, value),
            Width::U64 => vfio_dmabuf_probe_write_u64(a, value),
        }
    };
    finish(r).map(|_| ())
}

/// Copies `buf.len()` bytes from `src` into `buf` with one `rep movsb`
/// (full bandwidth for large copies). On a fault, the bytes before the
/// faulting address have been copied.
///
/// # Safety
///
/// `[src, src + buf.len())` must be readable as in [`read`].
pub unsafe fn copy_from(src: u64, buf: &mut [u8]) -> Result<(), AccessFault> {
    install_fault_handler();
    // SAFETY: `buf` is a valid, exclusively borrowed destination of its
    // length; the caller vouches for the source.
    let r = unsafe { vfio_dmabuf_probe_copy(buf.as_mut_ptr() as usize, src as usize, buf.len()) };
    finish(r).map(|_| ())
}

/// Copies `data` to `dst` with one `rep movsb`. On a fault, the bytes before
/// the faulting address have been copied.
///
/// # Safety
///
/// `[dst, dst + data.len())` must be writable as in [`write`].
pub unsafe fn copy_to(dst: u64, data: &[u8]) -> Result<(), AccessFault> {
    install_fault_handler();
    // SAFETY: `data` is a valid source of its length; the caller vouches for
    // the destination.
    let r = unsafe { vfio_dmabuf_probe_copy(dst as usize, data.as_ptr() as usize, data.len()) };
    finish(r).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::SEGV_MAPERR;

    #[test]
    fn raw_probes_read_and_write_ordinary_memory() {
        let mut cell = Box::new(0u64);
        let addr = std::ptr::addr_of_mut!(*cell) as u64;
        // SAFETY: `cell` is ours and no reference to it is live across the
        // probes (it is only read through `*cell` afterwards).
        unsafe {
            write(addr, Width::U32, 0xdead_beef_1234).unwrap();
            assert_eq!(read(addr, Width::U64).unwrap(), 0xbeef_1234);
            write(addr, Width::U64, u64::MAX).unwrap();
            assert_eq!(read(addr, Width::U8).unwrap(), 0xff);
            assert_eq!(read(addr, Width::U16).unwrap(), 0xffff);
        }
        *cell = 7;
        assert_eq!(*cell, 7);
    }

    #[test]
    fn raw_bulk_copies_move_bytes_and_report_a_fault_at_its_address() {
        let src: Vec<u8> = (0..=255).collect();
        let mut dst = vec![0u8; 256];
        let mut out = vec![0u8; 16];
        // SAFETY: both vectors are ours; the page at 0x1000 is never mapped
        // (below vm.mmap_min_addr), so the last copy only faults.
        unsafe {
            copy_from(src.as_ptr() as u64, &mut dst).unwrap();
            copy_to(out.as_mut_ptr() as u64, &src[..16]).unwrap();
            let err = copy_from(0x1000, &mut dst).unwrap_err();
            assert_eq!((err.signo, err.code, err.addr), (libc::SIGSEGV, SEGV_MAPERR, 0x1000));
        }
        assert_eq!(src, dst);
        assert_eq!(out, src[..16]);
    }

    #[test]
    fn raw_probe_of_an_unmapped_address_reports_sigsegv_and_the_thread_lives_on() {
        // SAFETY: addresses below vm.mmap_min_addr are never mapped.
        let (r, w) = unsafe { (read(8, Width::U64), write(16, Width::U8, 1)) };
        let err = r.unwrap_err();
        assert_eq!((err.signo, err.code, err.addr), (libc::SIGSEGV, SEGV_MAPERR, 8));
        assert_eq!(w.unwrap_err().to_string(), "SIGSEGV (SEGV_MAPERR) at 0x10");
    }
}
