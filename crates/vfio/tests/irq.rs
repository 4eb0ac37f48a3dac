//! Interrupts and DMA of the device through the device fd: `VFIO_DEVICE_GET_IRQ_INFO`,
//! `VFIO_DEVICE_SET_IRQS` with real eventfds, edu raising its interrupt as `INTx` and MSI, and
//! edu's DMA engine moving bytes through a DMA port.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use common::{device, WATCHDOG};
use pci::catalogue::{
    EDU_DMA_DIR_TO_RAM, EDU_DMA_IRQ, EDU_DMA_RUN, EDU_DMA_START, EDU_IRQ_DMA, EDU_REG_DMA_CMD, EDU_REG_DMA_CNT,
    EDU_REG_DMA_DST, EDU_REG_DMA_SRC, EDU_REG_FACTORIAL, EDU_REG_IRQ_ACK, EDU_REG_IRQ_RAISE, EDU_REG_IRQ_STATUS,
    EDU_REG_STATUS, EDU_STATUS_IRQFACT,
};
use pci::regs;
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use vfio::uapi::*;
use vfio::{DeviceFd, IrqData, VfioPciDevice, IRQ_SET_MINSZ};

const INTX: u32 = VFIO_PCI_INTX_IRQ_INDEX;
const MSI: u32 = VFIO_PCI_MSI_IRQ_INDEX;
const MSIX: u32 = VFIO_PCI_MSIX_IRQ_INDEX;
const ERR: u32 = VFIO_PCI_ERR_IRQ_INDEX;
const REQ: u32 = VFIO_PCI_REQ_IRQ_INDEX;
const NONE: u32 = VFIO_IRQ_SET_DATA_NONE;
const BOOL: u32 = VFIO_IRQ_SET_DATA_BOOL;
const EVENTFD: u32 = VFIO_IRQ_SET_DATA_EVENTFD;
const MASK: u32 = VFIO_IRQ_SET_ACTION_MASK;
const UNMASK: u32 = VFIO_IRQ_SET_ACTION_UNMASK;
const TRIGGER: u32 = VFIO_IRQ_SET_ACTION_TRIGGER;

/// A non-blocking eventfd, so that reading an unsignalled one answers at once.
fn efd() -> OwnedFd {
    eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap()
}

/// Reads and clears the counter: how many signals arrived since the last read.
fn take(fd: &OwnedFd) -> u64 {
    let mut count = [0; 8];
    match rustix::io::read(fd, &mut count) {
        Ok(8) => u64::from_ne_bytes(count),
        Err(Errno::AGAIN) => 0,
        other => panic!("eventfd read: {other:?}"),
    }
}

/// Waits for a signal (the watchdog only catches a hang), then reads the counter.
fn wait(fd: &OwnedFd) -> u64 {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let timeout = Timespec { tv_sec: WATCHDOG.as_secs() as i64, tv_nsec: 0 };
    assert_eq!(poll(&mut fds, Some(&timeout)).unwrap(), 1, "no interrupt within the watchdog");
    take(fd)
}

fn dup(fd: &OwnedFd) -> OwnedFd {
    fd.as_fd().try_clone_to_owned().unwrap()
}

fn edu() -> (Arc<VfioPciDevice>, DeviceFd) {
    let vdev = device("edu");
    let fd = vdev.open();
    (vdev, fd)
}

fn write32(fd: &DeviceFd, reg: u64, value: u32) {
    fd.write(reg, &value.to_le_bytes()).unwrap();
}

fn write64(fd: &DeviceFd, reg: u64, value: u64) {
    fd.write(reg, &value.to_le_bytes()).unwrap();
}

fn read32(fd: &DeviceFd, reg: u64) -> u32 {
    let mut b = [0; 4];
    fd.read(reg, &mut b).unwrap();
    u32::from_le_bytes(b)
}

fn set(fd: &DeviceFd, flags: u32, index: u32, start: u32, count: u32, data: IrqData) -> Result<(), Errno> {
    fd.set_irqs(flags, index, start, count, data).map_err(|e| e.errno())
}

/// Enables `INTx` with a trigger eventfd; returns a handle on it.
fn enable_intx(fd: &DeviceFd) -> OwnedFd {
    let trigger = efd();
    set(fd, EVENTFD | TRIGGER, INTX, 0, 1, IrqData::Eventfds(vec![Some(dup(&trigger))])).unwrap();
    trigger
}

fn enable_msi(fd: &DeviceFd) -> OwnedFd {
    let trigger = efd();
    set(fd, EVENTFD | TRIGGER, MSI, 0, 1, IrqData::Eventfds(vec![Some(dup(&trigger))])).unwrap();
    trigger
}

fn status_interrupt(fd: &DeviceFd) -> bool {
    fd.config_read(regs::STATUS, 2).unwrap() as u16 & regs::STATUS_INTERRUPT != 0
}

#[test]
fn irq_info_reports_what_each_device_declares() {
    let (_vdev, fd) = edu();
    let automasked = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
    let fixed = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE;
    let info: Vec<(u32, u32)> = (0..5).map(|i| fd.irq_info(i).map(|info| (info.flags, info.count)).unwrap()).collect();
    assert_eq!(info, [(automasked, 1), (fixed, 1), (fixed, 0), (fixed, 1), (fixed, 1)]);
    assert_eq!(fd.irq_info(5).unwrap_err().errno(), Errno::INVAL);

    let plus = device("edu-plus").open();
    let counts: Vec<u32> = (0..5).map(|i| plus.irq_info(i).unwrap().count).collect();
    assert_eq!(counts, [0, 0, 0, 1, 1], "no pin, no MSI; PCI Express and REQ");

    // The raw form: argsz below the struct is EINVAL, a buffer shorter than it EFAULT; argsz
    // comes back as given.
    let arg = |argsz: u32, index: u32| [argsz.to_ne_bytes(), [0; 4], index.to_ne_bytes(), [0; 4]].concat();
    let out = fd.irq_info_raw(&arg(64, MSI)).unwrap();
    assert_eq!(out, [64_u32, fixed, MSI, 1].iter().flat_map(|v| v.to_ne_bytes()).collect::<Vec<_>>());
    assert_eq!(fd.irq_info_raw(&arg(15, MSI)).unwrap_err().errno(), Errno::INVAL);
    assert_eq!(fd.irq_info_raw(&arg(16, MSI)[..15]).unwrap_err().errno(), Errno::FAULT);
}

/// One `SET_IRQS` call and what it must return: flags, index, start, count, data.
type Row = (u32, u32, u32, u32, IrqData, Result<(), Errno>);

#[test]
fn set_irqs_refuses_bad_requests_with_the_kernels_errnos() {
    let (_vdev, fd) = edu();
    let pipe = rustix::pipe::pipe().unwrap().0;
    let efd1 = || IrqData::Eventfds(vec![Some(efd())]);
    // (flags, index, start, count, data, errno), in order: each row runs on the state the rows
    // before it left (INTx is enabled from the row that enables it on).
    let (inval, notty) = (Err(Errno::INVAL), Err(Errno::NOTTY));
    let rows: Vec<Row> = vec![
        (NONE | TRIGGER | 0x40, INTX, 0, 1, IrqData::None, inval),
        (NONE | TRIGGER, 5, 0, 0, IrqData::None, inval),
        (EVENTFD | TRIGGER, MSIX, 0, 1, efd1(), inval),
        (NONE | TRIGGER, MSI, 1, 0, IrqData::None, inval),
        (NONE | TRIGGER, MSI, 0, 2, IrqData::None, inval),
        (TRIGGER, INTX, 0, 1, IrqData::None, inval),
        (NONE | BOOL | TRIGGER, INTX, 0, 1, IrqData::None, inval),
        (BOOL | TRIGGER, INTX, 0, 1, IrqData::Bool(vec![]), inval),
        (BOOL | TRIGGER, INTX, 0, 1, IrqData::None, inval),
        (NONE | TRIGGER | MASK, INTX, 0, 1, IrqData::None, notty),
        (NONE, INTX, 0, 1, IrqData::None, notty),
        (NONE | MASK, MSI, 0, 1, IrqData::None, notty),
        (NONE | UNMASK, ERR, 0, 1, IrqData::None, notty),
        (NONE | UNMASK, INTX, 0, 1, IrqData::None, inval),
        (NONE | TRIGGER, INTX, 0, 1, IrqData::None, inval),
        (NONE | TRIGGER, MSI, 0, 1, IrqData::None, inval),
        (EVENTFD | TRIGGER, INTX, 0, 1, IrqData::Eventfds(vec![Some(pipe)]), inval),
        (NONE | TRIGGER, ERR, 0, 1, IrqData::None, inval),
        (BOOL | TRIGGER, REQ, 0, 0, IrqData::Bool(vec![]), inval),
        (EVENTFD | TRIGGER, INTX, 0, 0, IrqData::Eventfds(vec![]), inval),
        // INTx on: from here, MSI and its loopback are refused, so is masking by eventfd.
        (EVENTFD | TRIGGER, INTX, 0, 1, efd1(), Ok(())),
        (EVENTFD | TRIGGER, MSI, 0, 1, efd1(), inval),
        (EVENTFD | MASK, INTX, 0, 1, efd1(), notty),
        (NONE | MASK, INTX, 0, 0, IrqData::None, inval),
        (EVENTFD | UNMASK, INTX, 0, 1, efd1(), Ok(())),
        (EVENTFD | UNMASK, INTX, 0, 1, efd1(), Err(Errno::BUSY)),
        (NONE | TRIGGER, INTX, 0, 0, IrqData::None, Ok(())),
        (NONE | UNMASK, INTX, 0, 1, IrqData::None, inval),
    ];
    for (i, (flags, index, start, count, data, expected)) in rows.into_iter().enumerate() {
        let got = set(&fd, flags, index, start, count, data);
        assert_eq!(got, expected, "row {i}: flags {flags:#x} index {index} start {start} count {count}");
    }
}

#[test]
fn the_raw_form_decodes_the_struct_and_takes_eventfds_in_order() {
    let (vdev, fd) = edu();
    let raw = |flags: u32, index: u32, count: u32, data: &[i32]| {
        let argsz = (IRQ_SET_MINSZ + 4 * data.len()) as u32;
        let mut v: Vec<u8> = [argsz, flags, index, 0, count].iter().flat_map(|w| w.to_ne_bytes()).collect();
        v.extend(data.iter().flat_map(|d| d.to_ne_bytes()));
        v
    };
    // A program's fd number that was not open: EBADF where the kernel looks it up.
    let err = fd.set_irqs_raw(&raw(EVENTFD | TRIGGER, MSI, 1, &[9]), vec![None]).unwrap_err();
    assert_eq!(err.errno(), Errno::BADF);
    assert_eq!(vdev.irq_type(), None, "the enable was undone");
    // Too short for the header, or for the data argsz announces: EFAULT.
    assert_eq!(fd.set_irqs_raw(&[0; 19], vec![]).unwrap_err().errno(), Errno::FAULT);
    let short = raw(EVENTFD | TRIGGER, MSI, 1, &[9]);
    assert_eq!(fd.set_irqs_raw(&short[..22], vec![]).unwrap_err().errno(), Errno::FAULT);
    // The number itself means nothing here; the received descriptor is used.
    let trigger = efd();
    fd.set_irqs_raw(&raw(EVENTFD | TRIGGER, MSI, 1, &[1234]), vec![Some(dup(&trigger))]).unwrap();
    assert_eq!(vdev.irq_type(), Some(MSI));
    fd.set_irqs_raw(&raw(NONE | TRIGGER, MSI, 1, &[]), vec![]).unwrap();
    assert_eq!(take(&trigger), 1, "loopback");
    // Any non-zero byte of DATA_BOOL counts as true.
    let mut v = raw(BOOL | TRIGGER, MSI, 1, &[]);
    v[0] = 21;
    v.push(7);
    fd.set_irqs_raw(&v, vec![]).unwrap();
    assert_eq!(take(&trigger), 1);
}

#[test]
fn intx_automasks_until_unmasked_and_re_fires_while_still_asserted() {
    let (_vdev, fd) = edu();
    let trigger = enable_intx(&fd);
    write32(&fd, EDU_REG_IRQ_RAISE, 0x1);
    // Asserted: one signal, then masked.
    assert_eq!(take(&trigger), 1);
    assert!(status_interrupt(&fd));
    write32(&fd, EDU_REG_IRQ_RAISE, 0x2);
    write32(&fd, EDU_REG_IRQ_ACK, 0x1);
    write32(&fd, EDU_REG_IRQ_RAISE, 0x1);
    assert_eq!(take(&trigger), 0, "masked: nothing more");
    // Unmasking while the pin is still asserted stays masked and signals again.
    set(&fd, NONE | UNMASK, INTX, 0, 1, IrqData::None).unwrap();
    assert_eq!(take(&trigger), 1);
    // Acknowledge everything (deasserted), then unmask: unmasked for real.
    write32(&fd, EDU_REG_IRQ_ACK, u32::MAX);
    assert!(!status_interrupt(&fd));
    set(&fd, BOOL | UNMASK, INTX, 0, 1, IrqData::Bool(vec![true])).unwrap();
    assert_eq!(take(&trigger), 0);
    write32(&fd, EDU_REG_IRQ_RAISE, 0x4);
    assert_eq!(take(&trigger), 1);
    // A user mask keeps the next interrupt away; loopback still signals.
    write32(&fd, EDU_REG_IRQ_ACK, u32::MAX);
    set(&fd, NONE | UNMASK, INTX, 0, 1, IrqData::None).unwrap();
    set(&fd, BOOL | MASK, INTX, 0, 1, IrqData::Bool(vec![true])).unwrap();
    write32(&fd, EDU_REG_IRQ_RAISE, 0x4);
    assert_eq!(take(&trigger), 0);
    set(&fd, NONE | TRIGGER, INTX, 0, 1, IrqData::None).unwrap();
    assert_eq!(take(&trigger), 1);
}

#[test]
fn intx_disable_in_command_masks_and_clearing_it_delivers_what_is_pending() {
    let (_vdev, fd) = edu();
    let trigger = enable_intx(&fd);
    let cmd = fd.config_read(regs::COMMAND, 2).unwrap();
    fd.config_write(regs::COMMAND, 2, cmd | u32::from(regs::COMMAND_INTX_DISABLE)).unwrap();
    write32(&fd, EDU_REG_IRQ_RAISE, 0x1);
    assert_eq!(take(&trigger), 0);
    // The pin is asserted all the same (STATUS shows it), and the ioctl cannot unmask.
    assert!(status_interrupt(&fd));
    set(&fd, NONE | UNMASK, INTX, 0, 1, IrqData::None).unwrap();
    assert_eq!(take(&trigger), 0);
    fd.config_write(regs::COMMAND, 2, cmd).unwrap();
    assert_eq!(take(&trigger), 1);
}

#[test]
fn an_unmask_eventfd_unmasks_each_time_it_is_signalled() {
    let (_vdev, fd) = edu();
    let trigger = enable_intx(&fd);
    let unmask = efd();
    set(&fd, EVENTFD | UNMASK, INTX, 0, 1, IrqData::Eventfds(vec![Some(dup(&unmask))])).unwrap();
    for round in 0..3 {
        write32(&fd, EDU_REG_IRQ_RAISE, 0x1);
        assert_eq!(wait(&trigger), 1, "round {round}");
        write32(&fd, EDU_REG_IRQ_ACK, 0x1);
        // Whether the watcher unmasks before or after the next raise, that raise is delivered:
        // an unmask with the pin asserted signals too.
        rustix::io::write(&unmask, &1_u64.to_ne_bytes()).unwrap();
    }
    // Watching stops with a negative number.
    set(&fd, EVENTFD | UNMASK, INTX, 0, 1, IrqData::Eventfds(vec![None])).unwrap();
}

#[test]
fn msi_signals_its_vector_on_every_raise_and_disabling_stops_it() {
    let (vdev, fd) = edu();
    let trigger = enable_msi(&fd);
    assert_eq!(vdev.irq_type(), Some(MSI));
    write32(&fd, EDU_REG_IRQ_RAISE, 0x1);
    write32(&fd, EDU_REG_IRQ_RAISE, 0x1);
    assert_eq!(take(&trigger), 2, "a message per raise, pending or not");
    write32(&fd, EDU_REG_IRQ_ACK, 0x1);
    assert_eq!(take(&trigger), 0, "acknowledges send nothing");
    assert!(!status_interrupt(&fd), "under MSI the pin stays deasserted");
    // INTx cannot be enabled beside it.
    assert_eq!(set(&fd, EVENTFD | TRIGGER, INTX, 0, 1, IrqData::Eventfds(vec![Some(efd())])), Err(Errno::INVAL));
    // -1 detaches the vector: MSI stays on, nothing is signalled.
    set(&fd, EVENTFD | TRIGGER, MSI, 0, 1, IrqData::Eventfds(vec![None])).unwrap();
    write32(&fd, EDU_REG_IRQ_RAISE, 0x1);
    assert_eq!(take(&trigger), 0);
    assert_eq!(vdev.irq_type(), Some(MSI));
    set(&fd, NONE | TRIGGER, MSI, 0, 0, IrqData::None).unwrap();
    assert_eq!(vdev.irq_type(), None);
    // Back on INTx: the pending bit asserts the pin at the next raise.
    let intx = enable_intx(&fd);
    write32(&fd, EDU_REG_IRQ_RAISE, 0x1);
    assert_eq!(take(&intx), 1);
}

/// A device with MSI (4 vectors) and MSI-X (8 entries in BAR1).
fn msix_device() -> DeviceFd {
    let mut spec = pci::catalogue::multi_bar();
    spec.interrupts = pci::InterruptSpec {
        pin: 1,
        msi: Some(pci::MsiSpec { vectors: 4, is_64bit: true, per_vector_mask: true }),
        msix: Some(pci::MsixSpec { table_size: 8, table_bar: 1, table_offset: 0, pba_bar: 1, pba_offset: 0x800 }),
    };
    VfioPciDevice::new(900, "0000:0f:00.0".parse().unwrap(), spec).unwrap().open()
}

#[test]
fn msix_vectors_are_set_in_blocks_and_cannot_grow_past_the_enable() {
    let fd = msix_device();
    assert_eq!(fd.irq_info(MSI).unwrap().count, 4);
    assert_eq!(fd.irq_info(MSIX).unwrap().count, 8);
    let triggers: Vec<OwnedFd> = (0..4).map(|_| efd()).collect();
    let fds = |range: std::ops::Range<usize>| IrqData::Eventfds(triggers[range].iter().map(|t| Some(dup(t))).collect());
    // Enable vectors 0..3 with eventfds on 1 and 2 only.
    let data = IrqData::Eventfds(vec![None, Some(dup(&triggers[1])), Some(dup(&triggers[2]))]);
    set(&fd, EVENTFD | TRIGGER, MSIX, 0, 3, data).unwrap();
    set(&fd, NONE | TRIGGER, MSIX, 0, 3, IrqData::None).unwrap();
    let counts: Vec<u64> = triggers.iter().map(take).collect();
    assert_eq!(counts, [0, 1, 1, 0]);
    // Vector 3 was not allocated by the enable: refused, and the block is undone.
    assert_eq!(set(&fd, EVENTFD | TRIGGER, MSIX, 2, 2, fds(2..4)), Err(Errno::INVAL));
    set(&fd, BOOL | TRIGGER, MSIX, 0, 3, IrqData::Bool(vec![true, true, true])).unwrap();
    let counts: Vec<u64> = triggers.iter().map(take).collect();
    assert_eq!(counts, [0, 1, 0, 0], "vector 2 was detached with the failed block");
    // MSI cannot come on beside MSI-X.
    assert_eq!(set(&fd, EVENTFD | TRIGGER, MSI, 0, 1, fds(0..1)), Err(Errno::INVAL));
    set(&fd, NONE | TRIGGER, MSIX, 0, 0, IrqData::None).unwrap();
    set(&fd, EVENTFD | TRIGGER, MSI, 0, 4, fds(0..4)).unwrap();
    set(&fd, NONE | TRIGGER, MSI, 3, 1, IrqData::None).unwrap();
    assert_eq!(take(&triggers[3]), 1);
}

#[test]
fn err_and_req_hold_one_eventfd_for_loopback() {
    let (_vdev, fd) = edu();
    for index in [ERR, REQ] {
        let trigger = efd();
        set(&fd, EVENTFD | TRIGGER, index, 0, 1, IrqData::Eventfds(vec![Some(dup(&trigger))])).unwrap();
        set(&fd, NONE | TRIGGER, index, 0, 1, IrqData::None).unwrap();
        set(&fd, BOOL | TRIGGER, index, 0, 1, IrqData::Bool(vec![true])).unwrap();
        set(&fd, BOOL | TRIGGER, index, 0, 1, IrqData::Bool(vec![false])).unwrap();
        assert_eq!(take(&trigger), 2);
        // DATA_NONE with count 0 releases it; then DATA_NONE has nothing to act on.
        set(&fd, NONE | TRIGGER, index, 0, 0, IrqData::None).unwrap();
        assert_eq!(set(&fd, NONE | TRIGGER, index, 0, 1, IrqData::None), Err(Errno::INVAL));
        set(&fd, BOOL | TRIGGER, index, 0, 1, IrqData::Bool(vec![true])).unwrap();
        assert_eq!(take(&trigger), 0);
    }
}

#[test]
fn a_factorial_with_irqfact_interrupts() {
    let (_vdev, fd) = edu();
    let trigger = enable_msi(&fd);
    write32(&fd, EDU_REG_STATUS, EDU_STATUS_IRQFACT);
    write32(&fd, EDU_REG_FACTORIAL, 5);
    assert_eq!(take(&trigger), 1);
    assert_eq!(read32(&fd, EDU_REG_FACTORIAL), 120);
}

/// Bus address of [`Ram`].
const RAM_IOVA: u64 = 0x10_0000;

/// 64 KiB of memory at bus address [`RAM_IOVA`], as an IOMMU mapping would show it.
#[derive(Debug)]
struct Ram(Mutex<Vec<u8>>);

impl Ram {
    fn range(iova: u64, len: usize) -> Result<std::ops::Range<usize>, Errno> {
        let at = iova.checked_sub(RAM_IOVA).ok_or(Errno::FAULT)? as usize;
        let end = at.checked_add(len).filter(|end| *end <= 0x1_0000).ok_or(Errno::FAULT)?;
        Ok(at..end)
    }
}

impl pci::DmaPort for Ram {
    fn read(&self, iova: u64, buf: &mut [u8]) -> Result<(), Errno> {
        buf.copy_from_slice(&self.0.lock().unwrap()[Self::range(iova, buf.len())?]);
        Ok(())
    }
    fn write(&self, iova: u64, data: &[u8]) -> Result<(), Errno> {
        self.0.lock().unwrap()[Self::range(iova, data.len())?].copy_from_slice(data);
        Ok(())
    }
}

fn start_dma(fd: &DeviceFd, src: u64, dst: u64, cnt: u64, cmd: u64) {
    write64(fd, EDU_REG_DMA_SRC, src);
    write64(fd, EDU_REG_DMA_DST, dst);
    write64(fd, EDU_REG_DMA_CNT, cnt);
    write64(fd, EDU_REG_DMA_CMD, EDU_DMA_RUN | cmd);
}

fn bus_master_on(fd: &DeviceFd) {
    let cmd = fd.config_read(regs::COMMAND, 2).unwrap();
    fd.config_write(regs::COMMAND, 2, cmd | u32::from(regs::COMMAND_MASTER)).unwrap();
}

#[test]
fn edu_dma_moves_bytes_both_ways_and_interrupts_when_done() {
    let (vdev, fd) = edu();
    let ram = Arc::new(Ram(Mutex::new(vec![0; 0x1_0000])));
    vdev.set_dma_port(Some(ram.clone()));
    bus_master_on(&fd);
    let trigger = enable_msi(&fd);
    let pattern: Vec<u8> = (0..=255).collect();
    ram.0.lock().unwrap()[..256].copy_from_slice(&pattern);

    // Memory -> device buffer.
    start_dma(&fd, RAM_IOVA, EDU_DMA_START + 0x100, 256, EDU_DMA_IRQ);
    assert_eq!(wait(&trigger), 1);
    assert_eq!(read32(&fd, EDU_REG_IRQ_STATUS), EDU_IRQ_DMA);
    assert_eq!(read32(&fd, EDU_REG_DMA_CMD) as u64 & EDU_DMA_RUN, 0);
    write32(&fd, EDU_REG_IRQ_ACK, EDU_IRQ_DMA);

    // Device buffer -> memory, elsewhere.
    start_dma(&fd, EDU_DMA_START + 0x100, RAM_IOVA + 0x8000, 256, EDU_DMA_DIR_TO_RAM | EDU_DMA_IRQ);
    assert_eq!(wait(&trigger), 1);
    assert_eq!(&ram.0.lock().unwrap()[0x8000..0x8100], &pattern[..]);
}

#[test]
fn edu_dma_without_bus_mastering_or_a_port_moves_nothing_but_completes() {
    let (vdev, fd) = edu();
    let ram = Arc::new(Ram(Mutex::new(vec![0; 0x1_0000])));
    vdev.set_dma_port(Some(ram.clone()));
    let trigger = enable_intx(&fd);
    // COMMAND.MASTER is clear after open, as the kernel leaves it.
    start_dma(&fd, EDU_DMA_START, RAM_IOVA, 16, EDU_DMA_DIR_TO_RAM | EDU_DMA_IRQ);
    assert_eq!(wait(&trigger), 1);
    write32(&fd, EDU_REG_IRQ_ACK, EDU_IRQ_DMA);
    set(&fd, NONE | UNMASK, INTX, 0, 1, IrqData::None).unwrap();
    bus_master_on(&fd);
    vdev.set_dma_port(None);
    start_dma(&fd, EDU_DMA_START, RAM_IOVA, 16, EDU_DMA_DIR_TO_RAM | EDU_DMA_IRQ);
    assert_eq!(wait(&trigger), 1);
    assert!(ram.0.lock().unwrap().iter().all(|b| *b == 0));
}

#[test]
fn the_last_close_disables_interrupts_and_releases_the_eventfds() {
    let (vdev, fd) = edu();
    let trigger = enable_msi(&fd);
    let err = efd();
    set(&fd, EVENTFD | TRIGGER, ERR, 0, 1, IrqData::Eventfds(vec![Some(dup(&err))])).unwrap();
    fd.close();
    assert_eq!(vdev.irq_type(), None);
    let fd = vdev.open();
    write32(&fd, EDU_REG_IRQ_RAISE, 0x1);
    assert_eq!(take(&trigger), 0);
    assert_eq!(set(&fd, NONE | TRIGGER, ERR, 0, 1, IrqData::None), Err(Errno::INVAL), "ERR trigger released");
}

#[test]
fn resets_keep_the_interrupt_setup_and_deassert_the_pin() {
    let (vdev, fd) = edu();
    let trigger = enable_intx(&fd);
    write32(&fd, EDU_REG_IRQ_RAISE, 0x1);
    assert_eq!(take(&trigger), 1);
    // VFIO_DEVICE_RESET: the pin goes low (edu keeps its status bit), INTx stays enabled.
    fd.reset().unwrap();
    assert!(!status_interrupt(&fd));
    assert_eq!(read32(&fd, EDU_REG_IRQ_STATUS), 0x1);
    assert_eq!(vdev.irq_type(), Some(INTX));
    set(&fd, NONE | UNMASK, INTX, 0, 1, IrqData::None).unwrap();
    assert_eq!(take(&trigger), 0, "nothing asserted any more");
    write32(&fd, EDU_REG_IRQ_RAISE, 0x1);
    assert_eq!(take(&trigger), 1, "the next raise re-asserts");
    // FLR and hot reset the same.
    fd.flr().unwrap();
    assert!(!status_interrupt(&fd));
    set(&fd, NONE | UNMASK, INTX, 0, 1, IrqData::None).unwrap();
    assert_eq!(take(&trigger), 0);
    vfio::hot_reset(&[&fd]).unwrap();
    assert_eq!(vdev.irq_type(), Some(INTX));
    write32(&fd, EDU_REG_IRQ_RAISE, 0x2);
    assert_eq!(take(&trigger), 1);
}
