use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rustix::io::Errno;

use super::*;
use crate::dma::{BusMaster, DmaPort};
use crate::irq::{InterruptSink, IrqLine};
use crate::spec::RegisterBar;

use crate::catalogue::tests::read_u32 as read32;

fn read64(edu: &EduRegisters, offset: u64) -> u64 {
    let mut data = [0; 8];
    edu.read(offset, &mut data);
    u64::from_le_bytes(data)
}

fn write32(edu: &EduRegisters, offset: u64, value: u32) {
    edu.write(offset, &value.to_le_bytes());
}

fn write64(edu: &EduRegisters, offset: u64, value: u64) {
    edu.write(offset, &value.to_le_bytes());
}

fn start_dma(edu: &EduRegisters, src: u64, dst: u64, cnt: u64, flags: u64) {
    write64(edu, EDU_REG_DMA_SRC, src);
    write64(edu, EDU_REG_DMA_DST, dst);
    write64(edu, EDU_REG_DMA_CNT, cnt);
    write64(edu, EDU_REG_DMA_CMD, EDU_DMA_RUN | flags);
}

/// What reached the interrupt sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Intx(bool),
    Msi(u32),
}

/// A sink that records events and lets a test wait for them.
#[derive(Debug, Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    changed: Condvar,
    msi: std::sync::atomic::AtomicBool,
}

impl Recorder {
    fn push(&self, event: Event) {
        self.events.lock().unwrap().push(event);
        self.changed.notify_all();
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn set_msi(&self, on: bool) {
        self.msi.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits until `done` holds for the events; the bound only catches a hang.
    fn wait_for(&self, done: impl Fn(&[Event]) -> bool) {
        let events = self.events.lock().unwrap();
        let (events, timeout) =
            self.changed.wait_timeout_while(events, Duration::from_secs(60), |events| !done(events)).unwrap();
        assert!(!timeout.timed_out(), "events so far: {:?}", *events);
    }
}

impl InterruptSink for Recorder {
    fn set_intx(&self, asserted: bool) {
        self.push(Event::Intx(asserted));
    }
    fn msi_notify(&self, vector: u32) {
        self.push(Event::Msi(vector));
    }
    fn msi_enabled(&self) -> bool {
        self.msi.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Bus address of the fake memory.
const WINDOW: u64 = 0x1000;

/// 1 MiB of memory at bus address [`WINDOW`]; anything else faults.
#[derive(Debug)]
struct Memory(Mutex<Vec<u8>>);

impl Memory {
    fn range(iova: u64, len: usize) -> Result<std::ops::Range<usize>, Errno> {
        let at = usize::try_from(iova.checked_sub(WINDOW).ok_or(Errno::FAULT)?).map_err(|_| Errno::FAULT)?;
        let end = at.checked_add(len).filter(|end| *end <= 1 << 20).ok_or(Errno::FAULT)?;
        Ok(at..end)
    }
}

impl DmaPort for Memory {
    fn read(&self, iova: u64, buf: &mut [u8]) -> Result<(), Errno> {
        buf.copy_from_slice(&self.0.lock().unwrap()[Self::range(iova, buf.len())?]);
        Ok(())
    }
    fn write(&self, iova: u64, data: &[u8]) -> Result<(), Errno> {
        self.0.lock().unwrap()[Self::range(iova, data.len())?].copy_from_slice(data);
        Ok(())
    }
}

/// Registers attached as a function attaches them, to a recording sink and fake memory (bus
/// mastering starts off, as after reset).
struct Attached {
    irq: Arc<IrqLine>,
    bus: Arc<BusMaster>,
    sink: Arc<Recorder>,
    port: Arc<Memory>,
}

impl Attached {
    fn new(edu: &EduRegisters) -> Self {
        let (irq, bus) = (Arc::new(IrqLine::new()), Arc::new(BusMaster::new()));
        let sink = Arc::new(Recorder::default());
        irq.set_sink(Some(sink.clone()));
        let port = Arc::new(Memory(Mutex::new(vec![0; 1 << 20])));
        bus.set_port(Some(port.clone()));
        edu.attach(&irq, &bus);
        Self { irq, bus, sink, port }
    }

    fn memory(&self) -> Vec<u8> {
        self.port.0.lock().unwrap().clone()
    }
}

#[test]
fn id_reads_the_magic_and_ignores_writes() {
    let edu = EduRegisters::new();
    assert_eq!(read32(&edu, EDU_REG_ID), 0x0100_00ed);
    write32(&edu, EDU_REG_ID, 0xdead_beef);
    assert_eq!(read32(&edu, EDU_REG_ID), EDU_ID_MAGIC);
}

#[test]
fn liveness_starts_at_zero_and_reads_the_inverse_of_each_write() {
    let edu = EduRegisters::new();
    assert_eq!(read32(&edu, EDU_REG_LIVENESS), 0);
    write32(&edu, EDU_REG_LIVENESS, 0x1234_5678);
    assert_eq!(read32(&edu, EDU_REG_LIVENESS), !0x1234_5678);
    write32(&edu, EDU_REG_LIVENESS, 0);
    assert_eq!(read32(&edu, EDU_REG_LIVENESS), u32::MAX);
}

#[test]
fn byte_and_word_accesses_read_zero_and_drop_writes() {
    let edu = EduRegisters::new();
    let mut byte = [0xee];
    edu.read(EDU_REG_ID, &mut byte);
    assert_eq!(byte, [0]);
    let mut word = [0xee; 2];
    edu.read(EDU_REG_ID, &mut word);
    assert_eq!(word, [0, 0]);
    edu.write(EDU_REG_LIVENESS, &[0x12, 0x34]);
    edu.write(EDU_REG_LIVENESS, &[0x12]);
    assert_eq!(read32(&edu, EDU_REG_LIVENESS), 0);
    edu.write(EDU_REG_DMA_SRC, &[1, 2]);
    assert_eq!(read64(&edu, EDU_REG_DMA_SRC), 0);
}

#[test]
fn aligned_eight_byte_accesses_below_the_dma_registers_read_all_ones_and_write_nothing() {
    let edu = EduRegisters::new();
    assert_eq!(read64(&edu, EDU_REG_ID), u64::MAX);
    write64(&edu, EDU_REG_ID, 0x1111_2222_3333_4444);
    assert_eq!(read32(&edu, EDU_REG_LIVENESS), 0);
    assert_eq!(read64(&edu, EDU_REG_STATUS), u64::MAX);
}

#[test]
fn eight_byte_accesses_at_four_aligned_offsets_act_as_two_dword_accesses() {
    let edu = EduRegisters::new();
    // 0x04 is not 8-aligned: the access reaches liveness (0x04) and factorial (0x08) in turn.
    write64(&edu, EDU_REG_LIVENESS, (5 << 32) | 0xf0f0_f0f0);
    assert_eq!(read32(&edu, EDU_REG_LIVENESS), 0x0f0f_0f0f);
    assert_eq!(read32(&edu, EDU_REG_FACTORIAL), 120);
    assert_eq!(read64(&edu, EDU_REG_LIVENESS), (120 << 32) | 0x0f0f_0f0f);
}

#[test]
fn unassigned_and_write_only_offsets_read_all_ones_and_ignore_writes() {
    let edu = EduRegisters::new();
    for offset in [0x0c, 0x1c, 0x28, EDU_REG_IRQ_RAISE, EDU_REG_IRQ_ACK, 0x84, 0xa0, 0x4_0000, EDU_BAR0_SIZE - 4] {
        assert_eq!(read32(&edu, offset), u32::MAX, "{offset:#x}");
    }
    write32(&edu, 0x0c, 7);
    write32(&edu, 0x4_0000, 7);
    assert_eq!(read32(&edu, 0x0c), u32::MAX);
    assert_eq!(read32(&edu, 0x4_0000), u32::MAX);
}

#[test]
fn accesses_past_the_bar_read_zero_and_do_not_panic() {
    let edu = EduRegisters::new();
    let mut data = [0xee; 8];
    edu.read(EDU_BAR0_SIZE, &mut data);
    assert_eq!(data, [0; 8]);
    edu.read(u64::MAX - 3, &mut data);
    assert_eq!(data, [0; 8]);
    edu.write(u64::MAX - 3, &[1; 8]);
}

#[test]
fn factorial_completes_with_n_factorial_modulo_two_to_the_32() {
    let edu = EduRegisters::new();
    for (n, expected) in [(0, 1), (1, 1), (5, 120), (12, 479_001_600), (13, 1_932_053_504), (34, 0), (u32::MAX, 0)] {
        write32(&edu, EDU_REG_FACTORIAL, n);
        assert_eq!(read32(&edu, EDU_REG_FACTORIAL), expected, "{n}!");
        assert_eq!(read32(&edu, EDU_REG_STATUS) & EDU_STATUS_COMPUTING, 0);
    }
    for n in 0..40_u32 {
        let reference = (2..=u64::from(n)).fold(1_u64, |acc, k| (acc * k) % (1 << 32));
        assert_eq!(u64::from(factorial(n)), reference, "{n}!");
    }
}

#[test]
fn while_computing_the_status_bit_is_set_the_input_reads_back_and_writes_are_ignored() {
    let edu = EduRegisters::with_deferred_factorial();
    write32(&edu, EDU_REG_FACTORIAL, 5);
    assert_eq!(read32(&edu, EDU_REG_STATUS), EDU_STATUS_COMPUTING);
    assert_eq!(read32(&edu, EDU_REG_FACTORIAL), 5);
    write32(&edu, EDU_REG_FACTORIAL, 6);
    // The computing bit is read-only: writing the status cannot clear it.
    write32(&edu, EDU_REG_STATUS, 0);
    assert_eq!(read32(&edu, EDU_REG_STATUS), EDU_STATUS_COMPUTING);
    edu.finish_factorial();
    assert_eq!(read32(&edu, EDU_REG_FACTORIAL), 120);
    assert_eq!(read32(&edu, EDU_REG_STATUS), 0);
    write32(&edu, EDU_REG_FACTORIAL, 4);
    edu.finish_factorial();
    assert_eq!(read32(&edu, EDU_REG_FACTORIAL), 24);
}

#[test]
fn status_keeps_only_irqfact_of_what_is_written() {
    let edu = EduRegisters::new();
    write32(&edu, EDU_REG_STATUS, 0xffff_ffff);
    assert_eq!(read32(&edu, EDU_REG_STATUS), EDU_STATUS_IRQFACT);
    write32(&edu, EDU_REG_STATUS, 0x7f);
    assert_eq!(read32(&edu, EDU_REG_STATUS), 0);
}

#[test]
fn a_factorial_raises_interrupt_one_only_with_irqfact_set_at_completion() {
    let edu = EduRegisters::new();
    write32(&edu, EDU_REG_FACTORIAL, 3);
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), 0);
    // Setting IRQFACT after completion raises nothing.
    write32(&edu, EDU_REG_STATUS, EDU_STATUS_IRQFACT);
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), 0);
    write32(&edu, EDU_REG_FACTORIAL, 3);
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), EDU_IRQ_FACTORIAL);
    assert_eq!(read32(&edu, EDU_REG_STATUS), EDU_STATUS_IRQFACT);

    // IRQFACT is looked at when the computation ends, not when it starts.
    let edu = EduRegisters::with_deferred_factorial();
    write32(&edu, EDU_REG_FACTORIAL, 3);
    write32(&edu, EDU_REG_STATUS, EDU_STATUS_IRQFACT);
    edu.finish_factorial();
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), EDU_IRQ_FACTORIAL);
}

#[test]
fn raise_ors_into_the_interrupt_status_and_acknowledge_clears_bits() {
    let edu = EduRegisters::new();
    write32(&edu, EDU_REG_IRQ_RAISE, 0x5);
    write32(&edu, EDU_REG_IRQ_RAISE, 0x100);
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), 0x105);
    write32(&edu, EDU_REG_IRQ_ACK, 0x4);
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), 0x101);
    // The status itself is read-only.
    write32(&edu, EDU_REG_IRQ_STATUS, 0);
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), 0x101);
    write32(&edu, EDU_REG_IRQ_ACK, u32::MAX);
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), 0);
}

#[test]
fn dma_registers_are_64_bit_and_a_dword_write_clears_the_upper_half() {
    let edu = EduRegisters::new();
    write64(&edu, EDU_REG_DMA_SRC, 0x1_2345_6789);
    write64(&edu, EDU_REG_DMA_DST, 0x4_0000);
    write64(&edu, EDU_REG_DMA_CNT, 100);
    assert_eq!(read64(&edu, EDU_REG_DMA_SRC), 0x1_2345_6789);
    assert_eq!(read32(&edu, EDU_REG_DMA_SRC), 0x2345_6789);
    // The upper halves are not registers of their own.
    assert_eq!(read32(&edu, EDU_REG_DMA_SRC + 4), u32::MAX);
    write32(&edu, EDU_REG_DMA_SRC + 4, 7);
    write32(&edu, EDU_REG_DMA_SRC, 0xabcd);
    assert_eq!(read64(&edu, EDU_REG_DMA_SRC), 0xabcd);
    assert_eq!(read64(&edu, EDU_REG_DMA_DST), 0x4_0000);
    assert_eq!(read64(&edu, EDU_REG_DMA_CNT), 100);
    assert_eq!(edu.pending_dma(), None);
}

#[test]
fn a_dma_command_without_the_start_bit_is_ignored() {
    let edu = EduRegisters::new();
    write64(&edu, EDU_REG_DMA_CMD, EDU_DMA_DIR_TO_RAM | EDU_DMA_IRQ);
    assert_eq!(read64(&edu, EDU_REG_DMA_CMD), 0);
    assert_eq!(edu.pending_dma(), None);
}

#[test]
fn a_started_transfer_locks_its_registers_until_the_engine_completes_it() {
    let edu = EduRegisters::new();
    write64(&edu, EDU_REG_DMA_SRC, 0x4_0000);
    write64(&edu, EDU_REG_DMA_DST, 0x1000);
    write64(&edu, EDU_REG_DMA_CNT, 64);
    let cmd = EDU_DMA_RUN | EDU_DMA_DIR_TO_RAM | EDU_DMA_IRQ;
    write64(&edu, EDU_REG_DMA_CMD, cmd);
    // Not attached to a function: no engine, so the transfer stays in flight.
    let expected = EduDma { src: 0x4_0000, dst: 0x1000, cnt: 64, cmd };
    assert_eq!(edu.pending_dma(), Some(expected));
    for offset in [EDU_REG_DMA_SRC, EDU_REG_DMA_DST, EDU_REG_DMA_CNT] {
        write64(&edu, offset, 0xdead);
    }
    write64(&edu, EDU_REG_DMA_CMD, EDU_DMA_RUN);
    assert_eq!(edu.pending_dma(), Some(expected));
    assert_eq!(read64(&edu, EDU_REG_DMA_CMD), cmd);

    // Attaching starts the engine, which takes the transfer; bus mastering is off, so no byte
    // moves, but it completes all the same.
    let fixture = Attached::new(&edu);
    fixture.sink.wait_for(|events| events.contains(&Event::Intx(true)));
    assert_eq!(edu.pending_dma(), None);
    assert_eq!(read64(&edu, EDU_REG_DMA_CMD), EDU_DMA_DIR_TO_RAM | EDU_DMA_IRQ);
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), EDU_IRQ_DMA);
    assert!(fixture.memory().iter().all(|b| *b == 0));
    // Unlocked again.
    write64(&edu, EDU_REG_DMA_CNT, 8);
    assert_eq!(read64(&edu, EDU_REG_DMA_CNT), 8);
}

#[test]
fn dma_moves_bytes_from_memory_into_the_buffer_and_back_out() {
    let edu = EduRegisters::new();
    let fixture = Attached::new(&edu);
    fixture.bus.set_enabled(true);
    let pattern: Vec<u8> = (0..64_u8).collect();
    fixture.port.write(WINDOW + 0x100, &pattern).unwrap();

    // Memory -> buffer offset 0x10 (direction 0).
    start_dma(&edu, WINDOW + 0x100, EDU_DMA_START + 0x10, 64, EDU_DMA_IRQ);
    fixture.sink.wait_for(|events| events.contains(&Event::Intx(true)));
    assert_eq!(&edu.dma_buffer()[0x10..0x50], &pattern[..]);
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), EDU_IRQ_DMA);
    write32(&edu, EDU_REG_IRQ_ACK, EDU_IRQ_DMA);
    fixture.sink.wait_for(|events| events.ends_with(&[Event::Intx(false)]));

    // Buffer -> memory 0x800 further on (direction 1).
    start_dma(&edu, EDU_DMA_START + 0x10, WINDOW + 0x900, 64, EDU_DMA_DIR_TO_RAM | EDU_DMA_IRQ);
    fixture.sink.wait_for(|events| events.ends_with(&[Event::Intx(true)]));
    assert_eq!(&fixture.memory()[0x900..0x940], &pattern[..]);
    assert_eq!(fixture.sink.events(), [Event::Intx(true), Event::Intx(false), Event::Intx(true)]);
}

#[test]
fn completing_a_transfer_raises_the_dma_interrupt_only_when_asked_and_only_once() {
    // Not attached: the test completes transfers itself, as the engine would.
    let edu = EduRegisters::new();
    edu.lock_map().complete_dma();
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), 0);
    write64(&edu, EDU_REG_DMA_CMD, EDU_DMA_RUN);
    edu.lock_map().complete_dma();
    assert_eq!(read64(&edu, EDU_REG_DMA_CMD), 0);
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), 0);
    write64(&edu, EDU_REG_DMA_CMD, EDU_DMA_RUN | EDU_DMA_IRQ);
    edu.lock_map().complete_dma();
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), EDU_IRQ_DMA);
    write32(&edu, EDU_REG_IRQ_ACK, EDU_IRQ_DMA);
    edu.lock_map().complete_dma();
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), 0);
}

#[test]
fn a_transfer_the_bus_refuses_leaves_zeros_and_still_completes() {
    let edu = EduRegisters::new();
    let fixture = Attached::new(&edu);
    fixture.bus.set_enabled(true);
    fixture.port.write(WINDOW, &[0xaa; 16]).unwrap();
    start_dma(&edu, WINDOW, EDU_DMA_START, 16, EDU_DMA_IRQ);
    fixture.sink.wait_for(|events| events.contains(&Event::Intx(true)));
    assert_eq!(&edu.dma_buffer()[..16], &[0xaa; 16]);
    write32(&edu, EDU_REG_IRQ_ACK, EDU_IRQ_DMA);

    // Past the port's window: an IOMMU fault. The buffer range reads as zeros afterwards.
    start_dma(&edu, WINDOW + 0x10_0000, EDU_DMA_START, 16, EDU_DMA_IRQ);
    fixture.sink.wait_for(|events| events.len() == 3);
    assert_eq!(&edu.dma_buffer()[..16], &[0; 16]);
    assert_eq!(edu.pending_dma(), None);
}

#[test]
fn bus_addresses_lose_the_bits_above_the_dma_mask() {
    let edu = EduRegisters::new();
    let fixture = Attached::new(&edu);
    fixture.bus.set_enabled(true);
    fixture.port.write(WINDOW + 8, &[7; 8]).unwrap();
    start_dma(&edu, (1 << 40) | (WINDOW + 8), EDU_DMA_START, 8, EDU_DMA_IRQ);
    fixture.sink.wait_for(|events| !events.is_empty());
    assert_eq!(&edu.dma_buffer()[..8], &[7; 8]);
    // The register keeps the unmasked value.
    assert_eq!(read64(&edu, EDU_REG_DMA_SRC), (1 << 40) | (WINDOW + 8));
}

#[test]
fn intx_follows_the_pending_bits_as_a_level() {
    let edu = EduRegisters::new();
    let fixture = Attached::new(&edu);
    write32(&edu, EDU_REG_IRQ_RAISE, 0x1);
    write32(&edu, EDU_REG_IRQ_RAISE, 0x2);
    write32(&edu, EDU_REG_IRQ_ACK, 0x1);
    assert!(fixture.irq.intx_asserted(), "0x2 still pending");
    write32(&edu, EDU_REG_IRQ_ACK, 0x2);
    // Raising 0 with nothing pending asserts nothing.
    write32(&edu, EDU_REG_IRQ_RAISE, 0);
    assert_eq!(fixture.sink.events(), [Event::Intx(true), Event::Intx(false)]);
}

#[test]
fn under_msi_every_raise_sends_vector_zero_and_acknowledges_send_nothing() {
    let edu = EduRegisters::new();
    let fixture = Attached::new(&edu);
    fixture.sink.set_msi(true);
    write32(&edu, EDU_REG_IRQ_RAISE, 0x1);
    write32(&edu, EDU_REG_IRQ_RAISE, 0x1);
    // A raise of 0 sends again while a bit is pending.
    write32(&edu, EDU_REG_IRQ_RAISE, 0);
    write32(&edu, EDU_REG_IRQ_ACK, 0x1);
    write32(&edu, EDU_REG_IRQ_RAISE, 0);
    assert_eq!(fixture.sink.events(), [Event::Msi(0), Event::Msi(0), Event::Msi(0)]);
    assert!(!fixture.irq.intx_asserted());
}

#[test]
fn a_factorial_with_irqfact_interrupts_through_the_line() {
    let edu = EduRegisters::new();
    let fixture = Attached::new(&edu);
    write32(&edu, EDU_REG_STATUS, EDU_STATUS_IRQFACT);
    write32(&edu, EDU_REG_FACTORIAL, 4);
    assert_eq!(read32(&edu, EDU_REG_FACTORIAL), 24);
    assert_eq!(fixture.sink.events(), [Event::Intx(true)]);
}

#[test]
fn reset_keeps_every_register_as_qemu_does() {
    let edu = EduRegisters::with_deferred_factorial();
    write32(&edu, EDU_REG_LIVENESS, 1);
    write32(&edu, EDU_REG_STATUS, EDU_STATUS_IRQFACT);
    write32(&edu, EDU_REG_FACTORIAL, 4);
    write32(&edu, EDU_REG_IRQ_RAISE, 0x20);
    write64(&edu, EDU_REG_DMA_CNT, 16);
    write64(&edu, EDU_REG_DMA_CMD, EDU_DMA_RUN);
    edu.reset();
    assert_eq!(read32(&edu, EDU_REG_LIVENESS), !1);
    assert_eq!(read32(&edu, EDU_REG_STATUS), EDU_STATUS_IRQFACT | EDU_STATUS_COMPUTING);
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), 0x20);
    assert_eq!(edu.pending_dma(), Some(EduDma { cnt: 16, cmd: EDU_DMA_RUN, ..EduDma::default() }));
    // The computation started before the reset still completes afterwards.
    edu.finish_factorial();
    assert_eq!(read32(&edu, EDU_REG_FACTORIAL), 24);
    assert_eq!(read32(&edu, EDU_REG_IRQ_STATUS), 0x21);
}

#[test]
fn accesses_from_several_threads_are_each_atomic() {
    let edu = std::sync::Arc::new(EduRegisters::new());
    let threads: Vec<_> = (0..4_u32)
        .map(|t| {
            let edu = std::sync::Arc::clone(&edu);
            std::thread::spawn(move || {
                for i in 0..256_u32 {
                    write32(&edu, EDU_REG_IRQ_RAISE, 1 << (t * 8 + i % 8));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(read32(edu.as_ref(), EDU_REG_IRQ_STATUS), u32::MAX);
}
