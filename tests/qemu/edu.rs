//! Checks of an edu device (1234:11e8) through a guest's eyes: config cycles, its register
//! BAR at a guest-physical address, interrupts and DMA. Each check runs against QEMU's own edu
//! (the ground truth) and against ours served through vfio-pci; the expected values are QEMU's
//! (its `hw/misc/edu.c`, as the project's reference on the devices describes it).

use std::time::Instant;

use pci::catalogue::{
    EDU_BAR0_SIZE, EDU_DMA_DIR_TO_RAM, EDU_DMA_IRQ, EDU_DMA_RUN, EDU_IRQ_DMA, EDU_REG_DMA_CMD, EDU_REG_DMA_CNT,
    EDU_REG_DMA_DST, EDU_REG_DMA_SRC, EDU_REG_FACTORIAL, EDU_REG_ID, EDU_REG_IRQ_ACK, EDU_REG_IRQ_RAISE,
    EDU_REG_IRQ_STATUS, EDU_REG_LIVENESS, EDU_REG_STATUS, EDU_STATUS_COMPUTING,
};
use pci::regs;

use super::config::{assert_bar_shapes, Bar, CAP_ID_MSI, COMMAND_ENABLE, INTERRUPT_PIN};
use super::machine::{Backend, Device, GuestRam, Machine, Options};
use super::WATCHDOG;

/// The identification register's value (major 1, minor 0), written out as QEMU documents it.
const ID_MAGIC: u32 = 0x0100_00ed;
/// The device address of edu's 4 KiB DMA buffer.
const DMA_BUFFER: u64 = 0x4_0000;
/// The GSI q35 routes INTA of 00:01.0 to (QEMU 7.2: `IRQ raise 21`).
const INTA_GSI: u32 = 21;

fn start(backend: Backend) -> (Machine, u64) {
    start_with(backend, Options::default())
}

fn start_with(backend: Backend, options: Options) -> (Machine, u64) {
    let mut m = Machine::start(Device::Edu, backend, options);
    let bars = m.place_and_enable();
    let bar0 = bars[0].unwrap_or_else(|| panic!("edu has a BAR0: {bars:?}"));
    (m, bar0.addr)
}

/// Vendor and device ID, class and revision by config cycles; one 1 MiB 32-bit register
/// BAR0, placed and enabled; the ID register there, which ignores writes.
pub fn identity(backend: Backend) {
    let mut m = Machine::start(Device::Edu, backend, Options::default());
    assert_eq!(m.config_read(2, regs::VENDOR_ID), 0x1234);
    assert_eq!(m.config_read(2, regs::DEVICE_ID), 0x11e8);
    assert_eq!(m.config_read(4, regs::VENDOR_ID), 0x11e8_1234);
    assert_eq!(m.config_read(4, regs::REVISION_ID), 0x00ff_0010, "class 00ff, revision 0x10");
    let bars = m.place_and_enable();
    assert_bar_shapes(&bars, &[Some(Bar::mem32(EDU_BAR0_SIZE, false)), None, None, None, None, None]);
    let bar0 = bars[0].map_or(0, |bar| bar.addr);
    assert_eq!(bar0, 0xe000_0000, "the first memory BAR goes to 0xE0000000");
    assert_eq!(m.readl(bar0 + EDU_REG_ID), ID_MAGIC);
    m.writel(bar0 + EDU_REG_ID, 0xdead_beef);
    assert_eq!(m.readl(bar0 + EDU_REG_ID), ID_MAGIC, "the ID register is read-only");
}

/// Liveness stores the inverse of what is written; the factorial unit computes n! and clears
/// its computing bit.
pub fn liveness_and_factorial(backend: Backend) {
    let (mut m, bar0) = start(backend);
    assert_eq!(m.readl(bar0 + EDU_REG_LIVENESS), 0);
    for v in [0x1234_5678, 0, u32::MAX, 0x8000_0001] {
        m.writel(bar0 + EDU_REG_LIVENESS, v);
        assert_eq!(m.readl(bar0 + EDU_REG_LIVENESS), !v, "liveness after writing {v:#x}");
    }
    // Below 0x80 only 32-bit accesses act: a 64-bit read gives all-ones.
    assert_eq!(m.readq(bar0 + EDU_REG_ID), u64::MAX);
    m.writel(bar0 + EDU_REG_FACTORIAL, 10);
    m.poll_until("factorial done", |m| m.readl(bar0 + EDU_REG_STATUS) & EDU_STATUS_COMPUTING == 0);
    assert_eq!(m.readl(bar0 + EDU_REG_FACTORIAL), 3_628_800);
    m.writel(bar0 + EDU_REG_FACTORIAL, 0);
    m.poll_until("factorial done", |m| m.readl(bar0 + EDU_REG_STATUS) & EDU_STATUS_COMPUTING == 0);
    assert_eq!(m.readl(bar0 + EDU_REG_FACTORIAL), 1, "0! = 1");
}

/// With COMMAND.MEMORY clear QEMU takes the BAR out of the guest's address space: reads give 0
/// and writes are lost. Set again, the registers are as they were.
pub fn memory_decode_off_hides_the_registers(backend: Backend) {
    let (mut m, bar0) = start(backend);
    m.writel(bar0 + EDU_REG_LIVENESS, 0xa5a5_0000);
    m.command_clear(regs::COMMAND_MEMORY);
    assert_eq!(m.readl(bar0 + EDU_REG_ID), 0);
    assert_eq!(m.readl(bar0 + EDU_REG_LIVENESS), 0);
    m.writel(bar0 + EDU_REG_LIVENESS, 0x1111_1111);
    m.command_set(regs::COMMAND_MEMORY);
    assert_eq!(m.readl(bar0 + EDU_REG_ID), ID_MAGIC);
    assert_eq!(m.readl(bar0 + EDU_REG_LIVENESS), !0xa5a5_0000, "the write while decoding was off was lost");
}

/// QMP `system_reset`: COMMAND is cleared and the BARs are unassigned (the guest must place
/// them again); edu has no reset handler of its own, so its registers survive.
pub fn system_reset_unassigns_the_bars_and_keeps_the_registers(backend: Backend) {
    let (mut m, bar0) = start(backend);
    m.writel(bar0 + EDU_REG_LIVENESS, 0x0f0f_0f0f);
    m.system_reset();
    let command = m.config_read(2, regs::COMMAND);
    assert_eq!(command & u32::from(COMMAND_ENABLE), 0, "COMMAND {command:#06x} after reset");
    assert_eq!(m.config_read(4, regs::base_address(0)) & !0xf, 0, "BAR0 is unassigned after reset");
    assert_eq!(m.readl(bar0 + EDU_REG_ID), 0, "nothing decodes at the old address");
    let placed = m.place_and_enable()[0].map(|bar| bar.addr);
    assert_eq!(placed, Some(bar0));
    assert_eq!(m.readl(bar0 + EDU_REG_ID), ID_MAGIC);
    assert_eq!(m.readl(bar0 + EDU_REG_LIVENESS), 0xf0f0_f0f0, "edu keeps its registers across a reset");
}

/// A raise asserts INTA (level): QEMU reports the line up; the acknowledge that leaves the
/// status zero takes it down. The status is not read in between: under vfio that read would
/// end the interrupt (QEMU's EOI) and let a re-assertion race with the acknowledge.
pub fn intx_follows_raise_and_acknowledge(backend: Backend) {
    let (mut m, bar0) = start(backend);
    assert_eq!(m.config_read(1, INTERRUPT_PIN), 1, "INTA");
    let intercepted = m.qtest().irq_intercept_in("ioapic");
    intercepted.unwrap_or_else(|e| m.fail("irq_intercept_in", e));
    m.writel(bar0 + EDU_REG_IRQ_RAISE, 0x1);
    let raised = m.qtest().wait_irq(INTA_GSI, true, Instant::now() + WATCHDOG);
    raised.unwrap_or_else(|e| m.fail("INTx after a raise", e));
    m.writel(bar0 + EDU_REG_IRQ_ACK, 0x1);
    let lowered = m.qtest().wait_irq(INTA_GSI, false, Instant::now() + WATCHDOG);
    lowered.unwrap_or_else(|e| m.fail("INTx after the acknowledge", e));
    assert_eq!(m.readl(bar0 + EDU_REG_IRQ_STATUS), 0);
    assert_eq!(m.qtest().irq_level(INTA_GSI), Some(false), "the line stays down");
}

/// With MSI enabled, every raise sends one message: the data value written to the MSI address,
/// which here is guest RAM, where `readl` sees it.
pub fn msi_writes_its_message_to_guest_ram(backend: Backend) {
    const MSI_ADDR: u64 = 0x10_0000;
    const MSI_DATA: u32 = 0x4242;
    let (mut m, bar0) = start(backend);
    let cap = m.find_capability(CAP_ID_MSI).unwrap_or_else(|| panic!("edu has an MSI capability"));
    let control = m.config_read(2, cap + 2);
    let is_64bit = control & 0x80 != 0;
    m.config_write(4, cap + 4, MSI_ADDR as u32);
    let data_offset = if is_64bit {
        m.config_write(4, cap + 8, 0);
        cap + 12
    } else {
        cap + 8
    };
    m.config_write(2, data_offset, MSI_DATA);
    // One vector (Multiple Message Enable 0), MSI Enable.
    m.config_write(2, cap + 2, (control & !0x70) | 0x1);
    assert_eq!(m.config_read(2, cap + 2) & 0x1, 0x1, "MSI is enabled");
    for round in 0..2 {
        m.writel(MSI_ADDR, 0);
        m.writel(bar0 + EDU_REG_IRQ_RAISE, 0x8);
        m.poll_until(&format!("MSI message {round}"), |m| m.readl(MSI_ADDR) == MSI_DATA);
        assert_eq!(m.readl(bar0 + EDU_REG_IRQ_STATUS), 0x8);
        m.writel(bar0 + EDU_REG_IRQ_ACK, 0x8);
    }
    assert_eq!(m.readl(bar0 + EDU_REG_IRQ_STATUS), 0);
}

/// An edu DMA from guest RAM into the device's buffer and back out to another guest address
/// moves the bytes, and the completion interrupt bit is set when asked for.
pub fn dma_moves_bytes_through_guest_ram(backend: Backend, ram: GuestRam) {
    const SRC: u64 = 0x20_0000;
    const DST: u64 = 0x30_0000;
    const LEN: usize = 256;
    // QEMU's edu completes a transfer on a timer of the guest's clock: let the VM run.
    let (mut m, bar0) = start_with(backend, Options { ram, running: true });
    let pattern: Vec<u8> = (0..LEN).map(|i| (i * 7 + 3) as u8).collect();
    m.b64write(SRC, &pattern);
    m.write_bytes(DST, &[0; LEN + 2]);

    let transfer = |m: &mut Machine, src: u64, dst: u64, cmd: u64| {
        m.writeq(bar0 + EDU_REG_DMA_SRC, src);
        m.writeq(bar0 + EDU_REG_DMA_DST, dst);
        m.writeq(bar0 + EDU_REG_DMA_CNT, LEN as u64);
        m.writeq(bar0 + EDU_REG_DMA_CMD, cmd | EDU_DMA_RUN);
        m.poll_until("DMA done", |m| m.readq(bar0 + EDU_REG_DMA_CMD) & EDU_DMA_RUN == 0);
        assert_eq!(m.readq(bar0 + EDU_REG_DMA_CMD), cmd, "only the running bit is cleared");
    };
    // RAM to device buffer, then the buffer to RAM one byte past DST, interrupting when done.
    transfer(&mut m, SRC, DMA_BUFFER, 0);
    transfer(&mut m, DMA_BUFFER, DST + 1, EDU_DMA_DIR_TO_RAM | EDU_DMA_IRQ);

    let out = m.read_bytes(DST, LEN + 2);
    assert_eq!(out[0], 0, "nothing written before the destination");
    assert_eq!(&out[1..=LEN], &pattern[..], "the bytes made the round trip");
    assert_eq!(out[LEN + 1], 0, "nothing written past the count");
    assert_eq!(m.readl(bar0 + EDU_REG_IRQ_STATUS) & EDU_IRQ_DMA, EDU_IRQ_DMA, "completion raised 0x100");
}

/// QMP `quit` ends every process of the run (QEMU, and `exec` with its server): the child we
/// started exits successfully and its process group is empty.
pub fn quit_ends_every_process(backend: Backend) {
    let (m, _) = start(backend);
    let (status, group_empty) = m.quit();
    assert!(status.success(), "exit status {status}");
    assert!(group_empty, "a process of the run is still alive after the child exited");
}
