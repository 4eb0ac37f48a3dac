//! edu's DMA engine driven through the wire protocol: bus mastering, the
//! `INTx` eventfd, the DMA registers, and the test process's own memory as
//! the memory DMA mappings are made from.

use std::os::fd::{AsFd, OwnedFd};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use server::iommu::ProcessMemory;
use server::PeerMemory;
use wire::msg::IoctlArg;

use super::{region, words, Client, CONFIG, DEVICE_SET_IRQS, GROUP_GET_DEVICE_FD, GROUP_SET_CONTAINER, WATCHDOG};

pub const PAGE: u64 = 4096;
pub const CHECK_EXTENSION: u64 = super::io(101);
pub const IOMMU_GET_INFO: u64 = super::io(112);
pub const IOMMU_MAP_DMA: u64 = super::io(113);
pub const IOMMU_UNMAP_DMA: u64 = super::io(114);
pub const IOMMU_IOAS_ALLOC: u64 = super::io(0x81);
pub const IOMMU_IOAS_IOVA_RANGES: u64 = super::io(0x84);
pub const IOMMU_IOAS_MAP: u64 = super::io(0x85);
pub const IOMMU_VFIO_IOAS: u64 = super::io(0x88);
pub const TYPE1V2: u64 = 3;

/// edu's DMA buffer, as a device address.
pub const EDU_BUFFER: u64 = 0x4_0000;

/// Four pages of the test process, page aligned: DMA mappings are made of
/// them. Touched only through [`me`] (as the server reaches them), never
/// through references, so no access of ours races with a transfer.
#[repr(C, align(4096))]
pub struct Pages(pub [u8; 4 * PAGE as usize]);

impl Pages {
    pub fn new() -> Box<Pages> {
        Box::new(Pages([0; 4 * PAGE as usize]))
    }

    /// The address of byte `off`.
    pub fn addr(&self, off: u64) -> u64 {
        self.0.as_ptr() as u64 + off
    }
}

/// This process's memory, as the server reaches it.
pub fn me() -> PeerMemory {
    PeerMemory::new(std::process::id() as i32)
}

/// `n` bytes at `vaddr` of this process.
pub fn peek(vaddr: u64, n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    me().read(vaddr, &mut b).unwrap();
    b
}

/// A recognisable pattern of `n` bytes.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

/// `VFIO_IOMMU_MAP_DMA` (read and write) on a container or an iommufd.
pub fn map_dma(c: &Client, fd: &OwnedFd, vaddr: u64, iova: u64, size: u64) -> Result<i64, i32> {
    let mut arg = words(&[32, 3]);
    for v in [vaddr, iova, size] {
        arg.extend_from_slice(&v.to_ne_bytes());
    }
    c.ioctl(fd, IOMMU_MAP_DMA, IoctlArg::Bytes(arg)).map(|r| r.0).map_err(|e| e.0)
}

/// `IOMMU_IOAS_MAP` at a fixed IOVA, readable and writable.
pub fn ioas_map(c: &Client, iommufd: &OwnedFd, ioas: u32, vaddr: u64, iova: u64, len: u64) -> Result<i64, i32> {
    // FIXED_IOVA | WRITEABLE | READABLE
    let mut arg = words(&[40, 7, ioas, 0]);
    for v in [vaddr, len, iova] {
        arg.extend_from_slice(&v.to_ne_bytes());
    }
    c.ioctl(iommufd, IOMMU_IOAS_MAP, IoctlArg::Bytes(arg)).map(|r| r.0).map_err(|e| e.0)
}

/// `IOMMU_IOAS_ALLOC`: the new IOAS's id.
pub fn ioas_alloc(c: &Client, iommufd: &OwnedFd) -> u32 {
    let (_, out, _) = c.ioctl(iommufd, IOMMU_IOAS_ALLOC, IoctlArg::Bytes(words(&[12, 0, 0]))).unwrap();
    super::u32_at(&out, 8)
}

/// Sets COMMAND.MEMORY and COMMAND.MASTER: the function may issue DMA.
pub fn enable_bus_master(c: &Client, dev: &OwnedFd) {
    let cmd = c.pread(dev, CONFIG + 4, 2).unwrap();
    let cmd = u16::from_le_bytes([cmd[0], cmd[1]]) | 0x6;
    assert_eq!(c.pwrite(dev, CONFIG + 4, &cmd.to_le_bytes()), Ok(2));
}

/// An eventfd that `INTx` of `dev` triggers.
pub fn intx_eventfd(c: &Client, dev: &OwnedFd) -> OwnedFd {
    let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    // DATA_EVENTFD | ACTION_TRIGGER, INTx, one vector.
    let arg = IoctlArg::Bytes(words(&[24, 0x24, 0, 0, 1, 0]));
    assert_eq!(c.ioctl_fds(dev, DEVICE_SET_IRQS, arg, &[efd.as_fd()], vec![]).map(|r| r.0).map_err(|e| e.0), Ok(0));
    efd
}

/// Waits for `efd` to be signalled (the watchdog only catches a hang) and
/// consumes the count.
pub fn wait(efd: &OwnedFd) {
    let mut fds = [PollFd::new(efd, PollFlags::IN)];
    let timeout = Timespec { tv_sec: WATCHDOG.as_secs() as i64, tv_nsec: 0 };
    assert_eq!(poll(&mut fds, Some(&timeout)).unwrap(), 1, "no interrupt within the watchdog");
    let mut count = [0; 8];
    assert_eq!(rustix::io::read(efd, &mut count), Ok(8));
}

fn reg(c: &Client, dev: &OwnedFd, off: u64, value: u64) {
    assert_eq!(c.pwrite(dev, region(0) + off, &value.to_le_bytes()), Ok(8));
}

/// One edu transfer of `cnt` bytes with the completion interrupt: from bus
/// address `src` into the DMA buffer, or (`to_ram`) from the buffer to
/// `dst`. Waits for the interrupt, acknowledges it at the device, and
/// unmasks `INTx` (it masks itself when it fires).
pub fn edu_dma(c: &Client, dev: &OwnedFd, efd: &OwnedFd, src: u64, dst: u64, cnt: u64, to_ram: bool) {
    reg(c, dev, 0x80, src);
    reg(c, dev, 0x88, dst);
    reg(c, dev, 0x90, cnt);
    // RUN | IRQ, and the direction.
    reg(c, dev, 0x98, 0x5 | if to_ram { 0x2 } else { 0 });
    wait(efd);
    let status = c.pread(dev, region(0) + 0x24, 4).unwrap();
    assert_eq!(u32::from_le_bytes(status.try_into().unwrap()) & 0x100, 0x100, "the DMA interrupt");
    assert_eq!(c.pwrite(dev, region(0) + 0x64, &0x100u32.to_le_bytes()), Ok(4));
    // DATA_NONE | ACTION_UNMASK, INTx.
    let unmask = IoctlArg::Bytes(words(&[20, 0x11, 0, 0, 1]));
    assert_eq!(c.ioctl(dev, DEVICE_SET_IRQS, unmask).map(|r| r.0).map_err(|e| e.0), Ok(0));
}

/// `VFIO_GROUP_SET_CONTAINER` of `group` to a container or an iommufd.
pub fn set_container(c: &Client, group: &OwnedFd, target: &OwnedFd) {
    let set = c.ioctl_fds(group, GROUP_SET_CONTAINER, IoctlArg::Bytes(words(&[0])), &[target.as_fd()], vec![]);
    assert_eq!(set.map(|r| r.0).map_err(|e| e.0), Ok(0));
}

/// `VFIO_GROUP_GET_DEVICE_FD`.
pub fn device_fd(c: &Client, group: &OwnedFd, bdf: &str) -> Result<OwnedFd, i32> {
    match c.ioctl(group, GROUP_GET_DEVICE_FD, IoctlArg::Str(bdf.into())) {
        Ok((_, _, fd)) => Ok(fd.expect("a device fd")),
        Err((e, _)) => Err(e),
    }
}
