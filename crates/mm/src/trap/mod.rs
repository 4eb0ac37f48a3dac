//! Trap-and-emulate of accesses to device register pages: the decode and
//! emulate step, as pure code over a saved register set.
//!
//! A register page cannot be plain memory: a read of a status register or
//! a write to a doorbell must reach the device model, with its side
//! effects, at the width the program used. So register pages stay
//! inaccessible, every access traps in the accessing thread, and the trap
//! handler *emulates* the one faulting instruction: it decodes it, performs
//! each of its memory accesses through a callback that routes device
//! addresses to the device, updates the registers as the processor would
//! have, and resumes after the instruction. This module is that middle
//! step; the handler around it copies the interrupted context's registers
//! into an [`X86Regs`], calls [`TrapDecoder::emulate`] with the trap's
//! faulting address (`si_addr`) and the instruction bytes at `rip`, copies
//! the registers back and resumes at the returned `rip`, or prints the
//! [`Unsupported`] diagnostic (its `Display` is one line) and raises
//! SIGBUS, or raises the [`AccessFault`] the device reported.
//!
//! # Interface
//!
//! - [`TrapDecoder`]: one per architecture, with its register set as the
//!   associated `Regs`. [`X86Decoder`] (x86-64, via the `iced-x86`
//!   decoder) is the only one. Another architecture adds a decoder and a
//!   register set; the callback and the outcome types stay.
//! - [`DeviceAccess`]: the caller's side. [`DeviceAccess::is_device`] says
//!   which addresses are on device pages; [`DeviceAccess::read`] and
//!   [`DeviceAccess::write`] perform every memory access the instruction
//!   makes, device or not (a `rep movs` from a device page into ordinary
//!   memory reads the device and writes memory), at element address and
//!   width. The caller routes each by address and holds the device's locks
//!   (and its status check) across the whole call, so a revoke cannot fall
//!   between the read and the write of one instruction.
//! - The outcome: [`Resume`] (registers updated, resume at `rip`),
//!   [`TrapError::Fault`] (the callback's fault; the registers describe
//!   the state at that access, as the processor leaves them for a fault)
//!   or [`TrapError::Unsupported`] (registers untouched, except that a
//!   `rep` string instruction keeps the elements it completed).
//!
//! # Coverage (x86-64)
//!
//! | family | forms | device accesses |
//! |---|---|---|
//! | `mov` | `r/m ← r`, `r ← r/m`, `r/m ← imm`, `moffs` to and from `al`/`ax`/`eax`/`rax`, 8/16/32/64-bit, `ah`…`bh`, REX registers; a 32-bit destination zero-extends | one |
//! | `movnti` | `m32/m64 ← r` | one write |
//! | `movzx`, `movsx`, `movsxd` | every width pair | one read |
//! | `add`, `adc`, `sub`, `sbb`, `and`, `or`, `xor` | `m ← m op r/imm` (imm8 sign-extended forms too), `lock` | one read, one write, CF PF AF ZF SF OF |
//! | the same | `r ← r op m` | one read, flags |
//! | `inc`, `dec`, `neg`, `not` | `m`, `lock` | one read, one write; flags (CF kept by `inc`/`dec`, none for `not`) |
//! | `xchg` | `m, r` either order | one read, one write |
//! | `cmp` | `m, r`, `r, m`, `m, imm` | one read, flags |
//! | `test` | `m, r`, `m, imm` | one read, flags |
//! | `movs`, `stos` | `b`/`w`/`d`/`q`, with or without `rep`, DF up or down | per element: a read (`movs`) and a write; `rsi`/`rdi`/`rcx` exact after each |
//! | `movd`, `movq`, `movss`, `movsd` | loads (zeroing the rest of the XMM register) and stores | one |
//! | `movaps`, `movapd`, `movups`, `movupd`, `movdqa`, `movdqu`, `lddqu`, `movntps`, `movntpd`, `movntdq`, `movntdqa` | 128-bit loads and stores | two 8-byte, low half first |
//! | `movlps`, `movhps`, `movlpd`, `movhpd` | loads (merging) and stores | one 8-byte |
//! | VEX: `vmovd`, `vmovq`, `vmovss`, `vmovsd`, `vmovaps` … `vmovntdqa`, `vmovlps` … `vmovhpd` | the 128-bit (`xmm`) forms; loads zero bits 255:128 | as above |
//!
//! Addresses: the operand's address is computed from the registers (base,
//! index × scale, displacement; RIP-relative from the trapping `rip`;
//! `moffs` absolute; ES/CS/SS/DS overrides have base 0 in 64-bit mode) and
//! must cover the faulting address, or the access is refused: the bytes
//! and the fault must tell the same story. A `rep` string instruction's
//! fault may lie anywhere in its remaining elements (the processor may run
//! ahead); the emulation starts at the registers' element.
//!
//! Width, alignment, page ends: a device access is made at the operand's
//! width when it is aligned to that width (a 16-byte one to 8, as it is
//! split in two). A misaligned device access, or one that runs over its
//! page end, is refused ([`Reason::Misaligned`], [`Reason::CrossesPage`])
//! rather than split into accesses the program never made: a register's
//! meaning is tied to its offset and width. Accesses to ordinary memory
//! (the other side of a `movs`) have no such rule. The property test in
//! `x86/tests/hostile.rs` runs arbitrary instruction bytes over registers
//! aimed anywhere near the device and checks that every outcome is defined:
//! no forbidden device access, no register written by a refusal.
//!
//! # Not covered, and why
//!
//! - FS/GS-relative operands (their bases are not in the saved registers)
//!   and 32-bit addressing (`0x67`): refused. Neither is how 64-bit code
//!   reaches a mapped register.
//! - 256-bit and EVEX (AVX-512) moves, gathers and scatters, MMX moves,
//!   `cmpxchg`, `xadd`, shifts and bit tests, `lods`, `scas`, `cmps`,
//!   `movbe`, `cmovcc`/`setcc` with memory, `push`/`pop`/`call`/`jmp`
//!   through memory, x87 loads: compilers do not emit them for volatile
//!   register accesses; each is refused with its mnemonic, so adding one
//!   is a matter of a table entry and its test.
//! - `#AC` alignment checking and single-step (`rflags.TF`: no debug trap
//!   follows an emulated instruction) are not modelled.
//!
//! # Signal safety
//!
//! The emulate path allocates nothing and takes no lock: the decoder reads
//! a borrowed byte slice and fills a stack `Instruction`; operand widths
//! and register numbers come from `iced-x86`'s static tables; the register
//! set is a plain value; a refusal copies its bytes and its mnemonic (the
//! `Debug` text of iced's `Mnemonic`, from a static string table) into
//! fixed arrays. One exception is built in: `iced-x86` builds its decoder
//! tables on first use, behind a `std::sync::Once` (the first decode of a
//! process makes some 7,700 allocations, the next none). So
//! [`X86Decoder::new`] decodes once, and must run before the first trap,
//! when the handler is installed; afterwards the `Once` is one atomic
//! load.
//!
//! How this is checked: the unit test `emulation_never_allocates`
//! installs a counting global allocator in the test binary, arms it for
//! the emulating thread only, and emulates every supported form (the list
//! in `x86/tests/forms.rs`), refusals (an instruction outside the set, a
//! misaligned access, undecodable bytes), a device fault, and the
//! formatting of a diagnostic into a stack buffer, expecting zero
//! allocations; `the_counter_sees_allocations` shows the counter is live.
//!
//! `iced-x86` is built with `std`, `decoder` and `instr_info` (register
//! numbers and operand sizes) only: no formatter (the mnemonic's `Debug`
//! text is enough for a diagnostic), no encoder (tests carry bytes as GNU
//! `as` encodes them).
//!
//! Preconditions: the caller holds the device's lock and checked its
//! status before calling `emulate`; `insn` holds the bytes at `rip` (up to
//! 15, fewer only when the code mapping ends).

mod diag;
mod x86;

pub use self::diag::{Reason, Unsupported, MAX_INSN_LEN};
pub use self::x86::{
    gpr, X86Decoder, X86Regs, EFLAGS_AF, EFLAGS_CF, EFLAGS_DF, EFLAGS_OF, EFLAGS_PF, EFLAGS_SF, EFLAGS_STATUS,
    EFLAGS_ZF,
};
pub use crate::probe::{AccessFault, Width};

/// The caller's side of an emulated instruction: which addresses are
/// device pages, and every memory access the instruction makes.
///
/// The emulator guarantees that an access it passes here touching a device
/// page is aligned to its width and within one page (see the module doc),
/// and makes the accesses in program order, each exactly once.
pub trait DeviceAccess {
    /// Whether `addr` lies on a device page (one whose accesses trap).
    fn is_device(&self, addr: u64) -> bool;

    /// Reads `width` bytes at `addr` (device or ordinary memory). Bits
    /// above `width` in the result are ignored.
    ///
    /// # Errors
    ///
    /// The fault the program gets for this access: SIGBUS `BUS_ADRERR` for a
    /// revoked device page, SIGSEGV for an unmapped ordinary address.
    fn read(&mut self, addr: u64, width: Width) -> Result<u64, AccessFault>;

    /// Writes the low `width` bytes of `value` at `addr`.
    ///
    /// # Errors
    ///
    /// As for [`DeviceAccess::read`].
    fn write(&mut self, addr: u64, width: Width, value: u64) -> Result<(), AccessFault>;
}

/// What the trap reported, beside the registers.
#[derive(Debug, Clone, Copy)]
pub struct Trap<'a> {
    /// The faulting address (`si_addr`).
    pub fault_addr: u64,
    /// The bytes at the trapping instruction pointer: up to
    /// [`MAX_INSN_LEN`], more are ignored.
    pub insn: &'a [u8],
}

/// Emulation done: resume the program at `rip` (already stored in the
/// register set). For a `rep` string instruction with work left in
/// ordinary memory, `rip` is the instruction itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Where to resume.
    pub rip: u64,
}

/// Why an emulation did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapError {
    /// An access faulted: deliver this signal to the program. The
    /// registers are those of the instruction before the faulting access
    /// (for a `rep` string instruction, after the elements completed).
    Fault(AccessFault),
    /// The instruction or its access is outside what is emulated: print
    /// the diagnostic, deliver SIGBUS.
    Unsupported(Unsupported),
}

/// The architecture-specific step of trap-and-emulate: decode the
/// instruction that trapped and perform it on the saved registers.
pub trait TrapDecoder {
    /// The architecture's saved register set.
    type Regs;

    /// Emulates the instruction `trap.insn` at the register set's
    /// instruction pointer, which faulted at `trap.fault_addr`.
    ///
    /// # Errors
    ///
    /// [`TrapError::Fault`] when `mem` reported a fault,
    /// [`TrapError::Unsupported`] when the instruction, its operand
    /// address or its alignment is outside the emulated set.
    fn emulate(&self, regs: &mut Self::Regs, trap: Trap<'_>, mem: &mut dyn DeviceAccess) -> Result<Resume, TrapError>;
}
