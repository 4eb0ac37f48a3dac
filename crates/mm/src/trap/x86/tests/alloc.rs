//! The emulate path allocates nothing: a counting global allocator for
//! this test binary counts the allocations of a thread while armed.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;

use super::forms::supported_forms;
use super::*;

/// The system allocator, counting per thread while armed.
struct Counting;

thread_local! {
    // Const-initialised and without destructors, so using them never
    // allocates (and never recurses into the allocator).
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours; the counting touches only
// thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded as received; see the impl's SAFETY.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as for `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    COUNT.with(|c| c.get())
}

/// A fixed buffer to format a diagnostic into, as the signal handler will.
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = (self.len + s.len()).min(self.buf.len());
        self.buf[self.len..end].copy_from_slice(&s.as_bytes()[..end - self.len]);
        self.len = end;
        Ok(())
    }
}

#[test]
fn the_counter_sees_allocations() {
    // Without this the zero below could come from a dead counter.
    assert_eq!(allocations(|| drop(std::hint::black_box(Box::new(1u64)))), 1);
}

#[test]
fn emulation_never_allocates() {
    let decoder = X86Decoder::new();
    let forms = supported_forms();
    // Refusals and faults: an unknown instruction, a misaligned access, a
    // fault from the device, undecodable bytes.
    let mut misaligned = regs();
    misaligned.gpr[crate::trap::x86::gpr::RDI] = DEV + 2;
    let refusals: Vec<(Vec<u8>, X86Regs, u64, Option<u64>)> = vec![
        (vec![0x0f, 0x18, 0x0f], regs(), DEV + 0x100, None),
        (vec![0x8b, 0x07], misaligned, DEV + 2, None),
        (vec![0x8b, 0x07], regs(), DEV + 0x100, Some(DEV + 0x100)),
        (vec![0x06], regs(), DEV + 0x100, None),
    ];
    let mut buses: Vec<FakeBus> = (0..forms.len() + refusals.len()).map(|_| FakeBus::new()).collect();
    let mut outcomes = Vec::with_capacity(buses.len());
    let mut line = Line { buf: [0; 256], len: 0 };
    let count = allocations(|| {
        for (form, bus) in forms.iter().zip(buses.iter_mut()) {
            let mut r = form.regs;
            let trap = Trap { fault_addr: form.fault_addr, insn: &form.insn };
            outcomes.push(decoder.emulate(&mut r, trap, bus).is_ok());
        }
        for ((insn, r, fault_addr, revoked), bus) in refusals.iter().zip(buses.iter_mut().skip(forms.len())) {
            bus.fault_read_at = *revoked;
            let mut r = *r;
            let res = decoder.emulate(&mut r, Trap { fault_addr: *fault_addr, insn }, bus);
            if let Err(TrapError::Unsupported(d)) = res {
                // The signal handler's one line, formatted in place.
                line.len = 0;
                let _ = write!(line, "{d}");
            }
            outcomes.push(res.is_ok());
        }
    });
    assert_eq!(count, 0, "the emulate path allocated");
    assert_eq!(outcomes[..forms.len()].iter().filter(|ok| **ok).count(), forms.len());
    assert!(outcomes[forms.len()..].iter().all(|ok| !ok));
    assert!(std::str::from_utf8(&line.buf[..line.len]).is_ok_and(|l| l.contains("invalid")));
}
