//! The first step of the process-wide SIGBUS handler: an access to a
//! trapping VMA (a register page) is emulated against its exporter and the
//! thread resumes after the instruction.
//!
//! What happens, in the thread that made the access: the page's fault
//! ended in a poison marker, so the access raised SIGBUS with `si_addr` on
//! the page. The handler finds the VMA in the trap table (`traps`), reads
//! the instruction bytes at `rip` with the raw probes (a code page that
//! ends early gives fewer bytes, never a crash), copies the interrupted
//! registers out of the `ucontext_t` into an [`X86Regs`], asks the exporter
//! to hold its device ([`VmMmio::with_registers`]: status checks and locks,
//! once for the whole instruction) and lets the decoder
//! ([`X86Decoder`] behind [`TrapDecoder`]) perform the instruction's
//! accesses: device ones through the exporter, ordinary ones through the
//! raw probes. The registers go back into the context, on success and on a
//! fault alike (a `rep` string instruction keeps the elements it did).
//!
//! Outcomes: resumed; a fault the program must get (the probe fixups use
//! its number, code and address); or not ours to finish: revoked (the
//! real SIGBUS goes on, exactly as an access of a revoked RAM page), an
//! instruction outside the emulated set (one line on stderr, then the
//! SIGBUS), or no trapping VMA at the address.
//!
//! # Signal safety
//!
//! Nothing here allocates: the decoder was built when the handler was
//! installed ([`prepare`]), the register set and the instruction bytes are
//! stack values, the table lookup walks a `BTreeMap`, the diagnostic is
//! formatted into a stack buffer and written with `write(2)`. Locks: the
//! trap table for read (see `traps` for why no holder can be waiting on
//! this thread), and whatever the exporter takes, which are the locks a
//! fault of the same page takes: the interrupted code is the access itself,
//! not a library internal, so it holds them only if it touched a mapping
//! while holding its exporter's locks, which the mapping rules forbid. A
//! fault inside the emulation (an ordinary operand that is unmapped, or the
//! instruction bytes) re-enters the handler; a per-thread flag sends it
//! straight to the probe fixups, so the table is never read twice by one
//! thread. Several threads trap and emulate at once; they share only read
//! locks.
#![cfg(target_arch = "x86_64")]

use std::cell::Cell;
use std::sync::OnceLock;

use page::VirtAddr;

use super::traps::{self, Traps};
use super::{raw, AccessFault, Width};
use crate::mmio::{MmioAddr, MmioRegs, VmMmio};
use crate::trap::{DeviceAccess, Trap, TrapDecoder, TrapError, X86Decoder, X86Regs, MAX_INSN_LEN};

static DECODER: OnceLock<X86Decoder> = OnceLock::new();
/// Byte offset of the AVX (YMM upper halves) component in the standard
/// XSAVE layout of a signal frame, when the processor has AVX enabled.
static YMM_OFFSET: OnceLock<Option<usize>> = OnceLock::new();

thread_local! {
    /// Set while this thread emulates: a nested fault is a probe's.
    static EMULATING: Cell<bool> = const { Cell::new(false) };
}

/// Builds what the handler needs before it can run: the decoder's tables
/// (their first use allocates) and the XSAVE geometry.
pub(super) fn prepare() {
    DECODER.get_or_init(X86Decoder::new);
    YMM_OFFSET.get_or_init(ymm_offset);
}

fn ymm_offset() -> Option<usize> {
    use std::arch::x86_64::__cpuid_count;
    // Leaf 0xD is asked only when leaf 1 reports XSAVE enabled by the OS.
    let leaf1 = __cpuid_count(1, 0);
    let (osxsave, avx) = (leaf1.ecx & (1 << 27) != 0, leaf1.ecx & (1 << 28) != 0);
    if !(osxsave && avx) {
        return None;
    }
    let ymm = __cpuid_count(0xd, 2);
    (ymm.eax == 256).then_some(ymm.ebx as usize)
}

/// What the emulation step decided.
pub(super) enum Outcome {
    /// Done; the context resumes after the instruction.
    Resumed,
    /// The instruction faulted at this access: the registers are those at
    /// the fault, and this is the signal the program must see.
    Fault(AccessFault),
    /// Not emulated: let the signal go on (fixups, then the previous handler).
    Declined,
}

/// Resets the per-thread flag however the emulation ends.
struct Emulating;

impl Emulating {
    fn enter() -> Option<Emulating> {
        EMULATING.with(|e| (!e.replace(true)).then_some(Emulating))
    }
}

impl Drop for Emulating {
    fn drop(&mut self) {
        EMULATING.with(|e| e.set(false));
    }
}

/// Emulates the access that raised this SIGBUS, if it was on a trapping VMA.
///
/// # Safety
///
/// Call only from the SIGBUS handler, with the `siginfo_t` and
/// `ucontext_t` the kernel passed it.
pub(super) unsafe fn on_sigbus(info: *mut libc::siginfo_t, uc: *mut libc::ucontext_t) -> Outcome {
    let Some(_flag) = Emulating::enter() else { return Outcome::Declined };
    let (Some(decoder), Some(&ymm)) = (DECODER.get(), YMM_OFFSET.get()) else { return Outcome::Declined };
    // SAFETY: the kernel passed a valid siginfo_t.
    let fault_addr = unsafe { (*info).si_addr() } as u64;
    let traps = traps::lock_for_trap();
    let Some((_, vma)) = traps.find(fault_addr) else { return Outcome::Declined };
    // SAFETY: the kernel passed a valid ucontext_t; its fpregs pointer is
    // null or points at the saved FPU state of the signal frame.
    let Some(mut context) = (unsafe { Context::load(uc, ymm) }) else { return Outcome::Declined };
    let mut insn = [0u8; MAX_INSN_LEN];
    let insn_len = read_insn(context.regs.rip, &mut insn);
    let trap = Trap { fault_addr, insn: &insn[..insn_len] };
    let mut result = None;
    let held = vma.mmio.with_registers(&mut |regs| {
        let mut access = Access { traps: &traps, home: &*vma.mmio, regs };
        result = Some(decoder.emulate(&mut context.regs, trap, &mut access));
    });
    drop(traps);
    let outcome = match (held, result) {
        (Err(_), _) | (Ok(()), None) => return Outcome::Declined,
        (Ok(()), Some(Ok(_))) => Outcome::Resumed,
        (Ok(()), Some(Err(TrapError::Fault(f)))) => Outcome::Fault(f),
        (Ok(()), Some(Err(TrapError::Unsupported(u)))) => {
            diagnose(&u);
            return Outcome::Declined;
        }
    };
    // SAFETY: the same ucontext_t it was loaded from.
    unsafe { context.store(uc) };
    outcome
}

/// Reads up to 15 bytes at `rip`, stopping at the first that faults.
fn read_insn(rip: u64, out: &mut [u8; MAX_INSN_LEN]) -> usize {
    for (i, b) in out.iter_mut().enumerate() {
        // SAFETY: a one-byte load of code the thread was executing; a fault
        // is reported by the probe (the per-thread flag routes it to the
        // fixups), never taken.
        match unsafe { raw::read(rip.wrapping_add(i as u64), Width::U8) } {
            Ok(v) => *b = v as u8,
            Err(_) => return i,
        }
    }
    MAX_INSN_LEN
}

/// Writes `vfio-dmabuf: cannot emulate <diagnostic>` to stderr, without
/// allocating.
fn diagnose(u: &crate::trap::Unsupported) {
    use std::fmt::Write as _;
    let mut line = Line { buf: [0; 320], len: 0 };
    // Line never fails; a longer diagnostic is cut.
    let _ = write!(line, "vfio-dmabuf: cannot emulate {u}");
    let n = line.len.min(line.buf.len() - 1);
    line.buf[n] = b'\n';
    // SAFETY: write(2) of a stack buffer; async-signal-safe.
    unsafe { libc::write(2, line.buf.as_ptr().cast(), n + 1) };
}

struct Line {
    buf: [u8; 320],
    len: usize,
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for b in s.bytes() {
            if self.len + 1 >= self.buf.len() {
                break;
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// The accesses of one emulated instruction: device addresses of the
/// trapping mapping go to its exporter (already held), ordinary ones to
/// the raw probes.
struct Access<'a> {
    traps: &'a Traps,
    home: &'a dyn VmMmio,
    regs: &'a dyn MmioRegs,
}

impl Access<'_> {
    /// The translation of a device address, when it belongs to the exporter
    /// being held (a VMA of another exporter is not held: its access is
    /// answered as revoked rather than made without its locks).
    fn device(&self, addr: u64) -> Result<MmioAddr, AccessFault> {
        let revoked = AccessFault { signo: libc::SIGBUS, code: libc::BUS_ADRERR, addr };
        let (vm_start, vma) = self.traps.find(addr).ok_or(revoked)?;
        if !std::ptr::addr_eq(std::sync::Arc::as_ptr(&vma.mmio), self.home as *const dyn VmMmio) {
            return Err(revoked);
        }
        Ok(MmioAddr { addr: VirtAddr(addr), vm_start, vm_pgoff: vma.vm_pgoff })
    }
}

impl DeviceAccess for Access<'_> {
    fn is_device(&self, addr: u64) -> bool {
        self.traps.find(addr).is_some()
    }

    fn read(&mut self, addr: u64, width: Width) -> Result<u64, AccessFault> {
        if self.is_device(addr) {
            let at = self.device(addr)?;
            return self.regs.read(at, width).map_err(|_| revoked(addr));
        }
        // SAFETY: the access the program's own instruction makes, at the
        // address and width it named; a fault is reported, not taken.
        unsafe { raw::read(addr, width) }
    }

    fn write(&mut self, addr: u64, width: Width, value: u64) -> Result<(), AccessFault> {
        if self.is_device(addr) {
            let at = self.device(addr)?;
            return self.regs.write(at, width, value).map_err(|_| revoked(addr));
        }
        // SAFETY: as in `read`: the store the program's instruction makes.
        unsafe { raw::write(addr, width, value) }
    }
}

fn revoked(addr: u64) -> AccessFault {
    AccessFault { signo: libc::SIGBUS, code: libc::BUS_ADRERR, addr }
}

/// `ucontext_t` general registers in the order of [`X86Regs::gpr`]
/// (`rax`, `rcx`, `rdx`, `rbx`, `rsp`, `rbp`, `rsi`, `rdi`, `r8`…`r15`).
const GREGS: [libc::c_int; 16] = [
    libc::REG_RAX,
    libc::REG_RCX,
    libc::REG_RDX,
    libc::REG_RBX,
    libc::REG_RSP,
    libc::REG_RBP,
    libc::REG_RSI,
    libc::REG_RDI,
    libc::REG_R8,
    libc::REG_R9,
    libc::REG_R10,
    libc::REG_R11,
    libc::REG_R12,
    libc::REG_R13,
    libc::REG_R14,
    libc::REG_R15,
];
/// Offset of XMM0 in the FXSAVE image `fpregs` points to.
const FX_XMM: usize = 160;
/// Offset of the software-reserved words the kernel fills in a signal
/// frame's FXSAVE image (`struct _fpx_sw_bytes`).
const FX_SW_BYTES: usize = 464;
/// `FP_XSTATE_MAGIC1`: the frame carries an XSAVE area beyond the image.
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
/// Offset of the XSAVE header's `xstate_bv`.
const XSTATE_BV: usize = 512;
/// The AVX component's bit in `xfeatures` and `xstate_bv`.
const XFEATURE_YMM: u64 = 1 << 2;

/// The interrupted registers and where the vector ones live.
struct Context {
    regs: X86Regs,
    original: X86Regs,
    fpregs: *mut u8,
    /// Offset of the YMM upper halves in the frame, when it holds them.
    ymm: Option<usize>,
}

impl Context {
    /// # Safety
    ///
    /// `uc` is the context the kernel passed to the handler.
    unsafe fn load(uc: *mut libc::ucontext_t, ymm_offset: Option<usize>) -> Option<Context> {
        // SAFETY: (for the block) reads of the kernel-written signal frame:
        // gregs inline, the FXSAVE image at `fpregs` (512 bytes), and the
        // XSAVE area after it, whose presence and size the frame's own
        // software words vouch for.
        unsafe {
            let gregs = &(*uc).uc_mcontext.gregs;
            let fpregs = (*uc).uc_mcontext.fpregs.cast::<u8>();
            if fpregs.is_null() {
                return None;
            }
            let mut regs = X86Regs::default();
            for (i, &g) in GREGS.iter().enumerate() {
                regs.gpr[i] = gregs[g as usize] as u64;
            }
            regs.rip = gregs[libc::REG_RIP as usize] as u64;
            regs.rflags = gregs[libc::REG_EFL as usize] as u64;
            for (i, x) in regs.xmm.iter_mut().enumerate() {
                *x = fpregs.add(FX_XMM + 16 * i).cast::<u128>().read_unaligned();
            }
            let ymm = ymm_offset.filter(|&off| {
                let magic = fpregs.add(FX_SW_BYTES).cast::<u32>().read_unaligned();
                let xfeatures = fpregs.add(FX_SW_BYTES + 8).cast::<u64>().read_unaligned();
                let size = fpregs.add(FX_SW_BYTES + 16).cast::<u32>().read_unaligned() as usize;
                (*uc).uc_flags & 1 != 0
                    && magic == FP_XSTATE_MAGIC1
                    && xfeatures & XFEATURE_YMM != 0
                    && size >= off + 256
            });
            if let Some(off) = ymm {
                // A component in its init state reads as zero.
                if fpregs.add(XSTATE_BV).cast::<u64>().read_unaligned() & XFEATURE_YMM != 0 {
                    for (i, y) in regs.ymm_hi.iter_mut().enumerate() {
                        *y = fpregs.add(off + 16 * i).cast::<u128>().read_unaligned();
                    }
                }
            } else if ymm_offset.is_some() {
                // AVX is on but the frame has no room for its state: do not
                // emulate what could not be written back.
                return None;
            }
            Some(Context { regs, original: regs, fpregs, ymm })
        }
    }

    /// # Safety
    ///
    /// `uc` is the context this was loaded from.
    unsafe fn store(&self, uc: *mut libc::ucontext_t) {
        // SAFETY: (for the block) writes to the same kernel-written frame
        // `load` read; sigreturn restores the registers from it.
        unsafe {
            let gregs = &mut (*uc).uc_mcontext.gregs;
            for (i, &g) in GREGS.iter().enumerate() {
                gregs[g as usize] = self.regs.gpr[i] as i64;
            }
            gregs[libc::REG_RIP as usize] = self.regs.rip as i64;
            gregs[libc::REG_EFL as usize] = self.regs.rflags as i64;
            if self.regs.xmm != self.original.xmm {
                for (i, x) in self.regs.xmm.iter().enumerate() {
                    self.fpregs.add(FX_XMM + 16 * i).cast::<u128>().write_unaligned(*x);
                }
            }
            if let Some(off) = self.ymm.filter(|_| self.regs.ymm_hi != self.original.ymm_hi) {
                for (i, y) in self.regs.ymm_hi.iter().enumerate() {
                    self.fpregs.add(off + 16 * i).cast::<u128>().write_unaligned(*y);
                }
                let bv = self.fpregs.add(XSTATE_BV).cast::<u64>();
                bv.write_unaligned(bv.read_unaligned() | XFEATURE_YMM);
            }
        }
    }
}
