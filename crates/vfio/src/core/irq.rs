//! The interrupt ioctls of the device fd, `VFIO_DEVICE_GET_IRQ_INFO` and
//! `VFIO_DEVICE_SET_IRQS`: argument checks and decoding, and the interrupt counts the function
//! declares; plus the DMA port of the device. Analogous to `vfio_pci_get_irq_count()`,
//! `vfio_pci_ioctl_get_irq_info()` and `vfio_pci_ioctl_set_irqs()` in Linux's
//! `vfio_pci_core.c`, and `vfio_set_irqs_validate_and_prepare()` in `vfio_main.c`. What each
//! action does is in `intrs`.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use pci::{regs, PciFunction};
use rustix::io::Errno;

use crate::core::{DeviceFd, VfioPciDevice};
use crate::error::{fail, VfioError};
use crate::intrs::{EventfdArg, IrqSetData};
use crate::uapi::*;

/// `offsetofend(struct vfio_irq_info, count)`.
const IRQ_INFO_MINSZ: usize = 16;
/// `offsetofend(struct vfio_irq_set, count)`: the header before the data.
pub const IRQ_SET_MINSZ: usize = 20;

/// The data of a `VFIO_DEVICE_SET_IRQS` call ([`DeviceFd::set_irqs`]), one entry per
/// interrupt from `start`; its kind must match the `VFIO_IRQ_SET_DATA_` flag.
#[derive(Debug)]
pub enum IrqData {
    /// `VFIO_IRQ_SET_DATA_NONE`.
    None,
    /// `VFIO_IRQ_SET_DATA_BOOL`.
    Bool(Vec<bool>),
    /// `VFIO_IRQ_SET_DATA_EVENTFD`: an eventfd, or `None` for -1 (detach).
    Eventfds(Vec<Option<OwnedFd>>),
}

/// The fixed part of `struct vfio_irq_set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IrqSetHeader {
    pub(crate) argsz: u32,
    pub(crate) flags: u32,
    pub(crate) index: u32,
    pub(crate) start: u32,
    pub(crate) count: u32,
}

/// `vfio_set_irqs_validate_and_prepare()`: checks a `SET_IRQS` header against the `num_irqs`
/// interrupts of its index; returns how many data bytes follow the header.
///
/// Kernel: `drivers/vfio/vfio_main.c`.
///
/// # Errors
///
/// `EINVAL`, in this order: `argsz` below the header, an index past `max_irq_type`,
/// `count >= U32_MAX - start`, unknown flag bits; `start` not below `num_irqs` (so any call on an
/// index with no interrupt) or `start + count` past it; not exactly one `DATA_` type; `argsz`
/// too small for `count` bools (1 byte) or eventfds (4 bytes).
pub(crate) fn set_irqs_validate_and_prepare(
    hdr: &IrqSetHeader,
    num_irqs: u32,
    max_irq_type: u32,
) -> Result<usize, VfioError> {
    let minsz = IRQ_SET_MINSZ as u32;
    if hdr.argsz < minsz
        || hdr.index >= max_irq_type
        || hdr.count >= u32::MAX - hdr.start
        || hdr.flags & !(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK) != 0
    {
        return fail(Errno::INVAL, "short argsz, index out of range, start + count overflows, or unknown flags");
    }
    // Both are below U32_MAX now, and so is their sum.
    if hdr.start >= num_irqs || hdr.start + hdr.count > num_irqs {
        return fail(Errno::INVAL, "start/count outside the interrupts of the index");
    }
    let size: u64 = match hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK {
        VFIO_IRQ_SET_DATA_NONE => 0,
        VFIO_IRQ_SET_DATA_BOOL => 1,
        VFIO_IRQ_SET_DATA_EVENTFD => 4,
        _ => return fail(Errno::INVAL, "not exactly one VFIO_IRQ_SET_DATA_ type"),
    };
    let data_size = u64::from(hdr.count) * size;
    if u64::from(hdr.argsz - minsz) < data_size {
        return fail(Errno::INVAL, "argsz too small for the data");
    }
    // At most count * 4 < 2^34 bytes, and argsz covers them: it fits a usize.
    Ok(data_size as usize)
}

/// `vfio_pci_get_irq_count()`: the interrupts `function` declares for `index`.
pub(crate) fn get_irq_count(function: &PciFunction, index: u32) -> u32 {
    let read = |offset: u64, width: usize| {
        let mut data = [0; 2];
        // Offsets inside the capabilities are valid config accesses.
        let _ = function.config_read(offset, &mut data[..width]);
        u16::from_le_bytes(data)
    };
    match index {
        VFIO_PCI_INTX_IRQ_INDEX => u32::from(read(regs::INTERRUPT_PIN, 1) != 0),
        VFIO_PCI_MSI_IRQ_INDEX => function.find_capability(regs::CAP_ID_MSI).map_or(0, |cap| {
            let flags = read(cap + regs::MSI_FLAGS, 2);
            1 << ((flags & regs::MSI_FLAGS_QMASK) >> 1)
        }),
        VFIO_PCI_MSIX_IRQ_INDEX => function
            .find_capability(regs::CAP_ID_MSIX)
            .map_or(0, |cap| u32::from(read(cap + regs::MSIX_FLAGS, 2) & regs::MSIX_FLAGS_QSIZE) + 1),
        VFIO_PCI_ERR_IRQ_INDEX => u32::from(is_pcie(function)),
        VFIO_PCI_REQ_IRQ_INDEX => 1,
        _ => 0,
    }
}

/// `pci_is_pcie()`.
fn is_pcie(function: &PciFunction) -> bool {
    function.find_capability(regs::CAP_ID_EXP).is_some()
}

fn u32_le(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

impl DeviceFd {
    /// `VFIO_DEVICE_GET_IRQ_INFO` for interrupt index `index`.
    ///
    /// `flags` has `EVENTFD` for every index, `MASKABLE | AUTOMASKED` for `INTx` and `NORESIZE`
    /// for the others; `count` is what the function declares: 1 for `INTx` when it has an
    /// Interrupt Pin, MSI's Multiple Message Capable vectors, the MSI-X table size (0 without
    /// the capability), 1 for ERR (a PCI Express function) and for REQ.
    ///
    /// # Errors
    ///
    /// `EINVAL` for an index past `VFIO_PCI_REQ_IRQ_INDEX` (or ERR on a function that is not PCI
    /// Express, which no catalogue device is).
    pub fn irq_info(&self, index: u32) -> Result<vfio_irq_info, VfioError> {
        let mut arg = [0; IRQ_INFO_MINSZ];
        arg[..4].copy_from_slice(&(IRQ_INFO_MINSZ as u32).to_ne_bytes());
        arg[8..12].copy_from_slice(&index.to_ne_bytes());
        let out = self.irq_info_raw(&arg)?;
        Ok(vfio_irq_info { argsz: u32_le(&out, 0), flags: u32_le(&out, 4), index, count: u32_le(&out, 12) })
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO` on the raw `struct vfio_irq_info` the caller passed: returns
    /// the 16 bytes to copy back over it (`argsz` as given, `flags`, `index`, `count`).
    ///
    /// # Errors
    ///
    /// `EFAULT` when `arg` is shorter than the 16-byte struct; `EINVAL` for `argsz` below 16 or
    /// an index as in [`DeviceFd::irq_info`].
    pub fn irq_info_raw(&self, arg: &[u8]) -> Result<Vec<u8>, VfioError> {
        self.device().enter()?;
        if arg.len() < IRQ_INFO_MINSZ {
            return fail(Errno::FAULT, "the argument is shorter than struct vfio_irq_info");
        }
        let (argsz, index) = (u32_le(arg, 0), u32_le(arg, 8));
        if (argsz as usize) < IRQ_INFO_MINSZ || index >= VFIO_PCI_NUM_IRQS {
            return fail(Errno::INVAL, "argsz below struct vfio_irq_info, or no such interrupt index");
        }
        let mem = self.device().lock_memory_read();
        if index == VFIO_PCI_ERR_IRQ_INDEX && !is_pcie(&mem.pci) {
            return fail(Errno::INVAL, "ERR is for PCI Express functions");
        }
        let count = get_irq_count(&mem.pci, index);
        drop(mem);
        let mut flags = VFIO_IRQ_INFO_EVENTFD;
        if index == VFIO_PCI_INTX_IRQ_INDEX {
            flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
        } else {
            // No dynamic MSI-X allocation: every index but INTx has a fixed size.
            flags |= VFIO_IRQ_INFO_NORESIZE;
        }
        let mut out = arg[..IRQ_INFO_MINSZ].to_vec();
        out[4..8].copy_from_slice(&flags.to_ne_bytes());
        out[12..16].copy_from_slice(&count.to_ne_bytes());
        Ok(out)
    }

    /// `VFIO_DEVICE_SET_IRQS`: `flags` is one `VFIO_IRQ_SET_DATA_` type and one
    /// `VFIO_IRQ_SET_ACTION_` type; the action applies to interrupts `start..start + count` of
    /// `index` with `data` (see the crate's `intrs` module doc for what each does).
    ///
    /// `argsz` is taken to be exactly the header plus `data`.
    ///
    /// # Errors
    ///
    /// The checks of the header, all `EINVAL`, in the kernel's order (`vfio_set_irqs_validate_and_prepare()`):
    /// unknown flag bits or an index past REQ; `start + count` past the interrupts of the index
    /// (any call on an index with none); not exactly one `DATA_` type; fewer `data` entries than
    /// `count`. `EINVAL` also when `data` is not of the kind the `DATA_` flag names. Then, by
    /// action:
    /// - `ENOTTY`: an action the index does not have (several actions at once; MASK/UNMASK of
    ///   MSI or MSI-X; anything but TRIGGER on ERR and REQ), or `INTx` MASK by eventfd;
    /// - `EINVAL`: enabling a type while another is enabled; `INTx` MASK/UNMASK/loopback while
    ///   `INTx` is off, or with start/count other than 0/1; MSI loopback while MSI is off; an
    ///   eventfd for a vector past those enabled; ERR/REQ `DATA_NONE` with no eventfd set, or
    ///   `DATA_BOOL`/`DATA_EVENTFD` with count 0;
    /// - `EBADF`/`EINVAL`: an eventfd that is not open / not an eventfd (a block of MSI vectors
    ///   is then undone, and an enable it was part of too);
    /// - `EBUSY`: an `INTx` unmask eventfd while one is set.
    pub fn set_irqs(&self, flags: u32, index: u32, start: u32, count: u32, data: IrqData) -> Result<(), VfioError> {
        let (entries, data) = match data {
            IrqData::None => (0, IrqSetData::None),
            IrqData::Bool(flags) => (flags.len(), IrqSetData::Bool(flags)),
            IrqData::Eventfds(fds) => (
                fds.len() * 4,
                IrqSetData::Eventfd(
                    fds.into_iter()
                        .map(|fd| fd.map_or(EventfdArg::Negative(-1), |fd| EventfdArg::Fd(Some(fd))))
                        .collect(),
                ),
            ),
        };
        let argsz = u32::try_from(IRQ_SET_MINSZ + entries).unwrap_or(u32::MAX);
        let hdr = IrqSetHeader { argsz, flags, index, start, count };
        self.set_irqs_checked(&hdr, |_| {
            let matches = matches!(
                (&data, flags & VFIO_IRQ_SET_DATA_TYPE_MASK),
                (IrqSetData::None, VFIO_IRQ_SET_DATA_NONE)
                    | (IrqSetData::Bool(_), VFIO_IRQ_SET_DATA_BOOL)
                    | (IrqSetData::Eventfd(_), VFIO_IRQ_SET_DATA_EVENTFD)
            );
            if !matches {
                return fail(Errno::INVAL, "the data is not of the kind the VFIO_IRQ_SET_DATA_ flag names");
            }
            Ok(truncate(data, count as usize))
        })
    }

    /// `VFIO_DEVICE_SET_IRQS` on the raw `struct vfio_irq_set` the caller passed (header and
    /// data, `argsz` bytes of it), with the eventfds it names already received: `fds` holds one
    /// entry per non-negative `s32` of a `DATA_EVENTFD` array, in order, `None` where the caller
    /// had no such open descriptor (`EBADF` where the kernel would look it up).
    ///
    /// # Errors
    ///
    /// `EFAULT` when `arg` is shorter than the header, or than the data the header announces;
    /// otherwise as [`DeviceFd::set_irqs`].
    pub fn set_irqs_raw(&self, arg: &[u8], fds: Vec<Option<OwnedFd>>) -> Result<(), VfioError> {
        if arg.len() < IRQ_SET_MINSZ {
            self.device().enter()?;
            return fail(Errno::FAULT, "the argument is shorter than struct vfio_irq_set");
        }
        let hdr = IrqSetHeader {
            argsz: u32_le(arg, 0),
            flags: u32_le(arg, 4),
            index: u32_le(arg, 8),
            start: u32_le(arg, 12),
            count: u32_le(arg, 16),
        };
        self.set_irqs_checked(&hdr, |data_size| {
            let Some(data) = arg.get(IRQ_SET_MINSZ..IRQ_SET_MINSZ + data_size) else {
                return fail(Errno::FAULT, "the argument is shorter than the data argsz announces");
            };
            let mut fds = fds.into_iter();
            Ok(match hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK {
                VFIO_IRQ_SET_DATA_BOOL => IrqSetData::Bool(data.iter().map(|b| *b != 0).collect()),
                VFIO_IRQ_SET_DATA_EVENTFD => IrqSetData::Eventfd(
                    data.chunks_exact(4)
                        .map(|s| match i32::from_ne_bytes(s.try_into().expect("4 bytes")) {
                            n if n < 0 => EventfdArg::Negative(n),
                            _ => EventfdArg::Fd(fds.next().flatten()),
                        })
                        .collect(),
                ),
                _ => IrqSetData::None,
            })
        })
    }

    /// `vfio_pci_ioctl_set_irqs()` once the argument is decoded: check the header against the
    /// device's count, let `decode` build the data from the data size, run the action under
    /// `igate`. Enabling MSI or MSI-X deasserts the pin, as the PCI core does.
    fn set_irqs_checked(
        &self,
        hdr: &IrqSetHeader,
        decode: impl FnOnce(usize) -> Result<IrqSetData, VfioError>,
    ) -> Result<(), VfioError> {
        let vdev = self.device();
        vdev.enter()?;
        let max = get_irq_count(&vdev.lock_memory_read().pci, hdr.index);
        let data_size = set_irqs_validate_and_prepare(hdr, max, VFIO_PCI_NUM_IRQS)?;
        let data = decode(data_size)?;
        let result = vdev.irqs.set_irqs_ioctl(hdr.flags, hdr.index, hdr.start, hdr.count, data);
        // Outside igate: the line calls into it.
        if matches!(vdev.irqs.irq_type(), VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_MSIX_IRQ_INDEX) {
            vdev.irq_line.set_intx(false);
        }
        result
    }
}

/// Keeps the first `count` entries, as the kernel copies only `count` of them.
fn truncate(data: IrqSetData, count: usize) -> IrqSetData {
    match data {
        IrqSetData::None => IrqSetData::None,
        IrqSetData::Bool(mut flags) => {
            flags.truncate(count);
            IrqSetData::Bool(flags)
        }
        IrqSetData::Eventfd(mut args) => {
            args.truncate(count);
            IrqSetData::Eventfd(args)
        }
    }
}

impl VfioPciDevice {
    /// Attaches the memory the device's DMA reaches (the IOMMU mappings of its container or
    /// IOAS), or detaches it with `None`. Transfers need COMMAND.MASTER set as well; without a
    /// port they reach nothing (edu logs and completes them). The port must not hold the device.
    pub fn set_dma_port(&self, port: Option<Arc<dyn pci::DmaPort>>) {
        self.bus_master.set_port(port);
    }

    /// The interrupt type `VFIO_DEVICE_SET_IRQS` enabled (`VFIO_PCI_INTX_IRQ_INDEX`, `_MSI_`,
    /// `_MSIX_`), if any.
    pub fn irq_type(&self) -> Option<u32> {
        Some(self.irqs.irq_type()).filter(|t| *t != VFIO_PCI_NUM_IRQS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: u32 = VFIO_IRQ_SET_DATA_NONE;
    const BOOL: u32 = VFIO_IRQ_SET_DATA_BOOL;
    const EVENTFD: u32 = VFIO_IRQ_SET_DATA_EVENTFD;
    const TRIGGER: u32 = VFIO_IRQ_SET_ACTION_TRIGGER;

    fn hdr(argsz: u32, flags: u32, index: u32, start: u32, count: u32) -> IrqSetHeader {
        IrqSetHeader { argsz, flags, index, start, count }
    }

    fn check(h: IrqSetHeader, num_irqs: u32) -> Result<usize, Errno> {
        set_irqs_validate_and_prepare(&h, num_irqs, VFIO_PCI_NUM_IRQS).map_err(|e| e.errno())
    }

    #[test]
    fn set_irqs_validation_follows_the_kernels_table() {
        let inval = Err(Errno::INVAL);
        // (header, interrupts of the index, result)
        let rows = [
            (hdr(20, NONE | TRIGGER, 0, 0, 1), 1, Ok(0)),
            (hdr(19, NONE | TRIGGER, 0, 0, 1), 1, inval),
            (hdr(20, NONE | TRIGGER, 5, 0, 0), 1, inval),
            (hdr(20, NONE | TRIGGER, 1, 1, u32::MAX - 1), 64, inval),
            (hdr(20, NONE | TRIGGER | 0x40, 0, 0, 1), 1, inval),
            (hdr(20, NONE | TRIGGER, 2, 0, 0), 0, inval),
            (hdr(20, NONE | TRIGGER, 1, 1, 0), 1, inval),
            (hdr(20, NONE | TRIGGER, 1, 0, 2), 1, inval),
            (hdr(20, TRIGGER, 0, 0, 1), 1, inval),
            (hdr(28, NONE | BOOL | TRIGGER, 0, 0, 1), 1, inval),
            (hdr(20, BOOL | TRIGGER, 0, 0, 1), 1, inval),
            (hdr(21, BOOL | TRIGGER, 0, 0, 1), 1, Ok(1)),
            (hdr(23, EVENTFD | TRIGGER, 0, 0, 1), 1, inval),
            (hdr(28, EVENTFD | TRIGGER, 1, 0, 2), 2, Ok(8)),
            (hdr(20, EVENTFD | TRIGGER, 1, 0, 0), 2, Ok(0)),
            // Several actions pass here; the dispatch refuses them (ENOTTY).
            (hdr(20, NONE | TRIGGER | VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1), 1, Ok(0)),
        ];
        for (h, num_irqs, expected) in rows {
            assert_eq!(check(h, num_irqs), expected, "{h:?} of {num_irqs}");
        }
    }

    #[test]
    fn counts_come_from_the_pin_and_capabilities() {
        let edu = PciFunction::new("00:03.0".parse().unwrap(), pci::catalogue::edu()).unwrap();
        let counts: Vec<u32> = (0..6).map(|index| get_irq_count(&edu, index)).collect();
        assert_eq!(counts, [1, 1, 0, 1, 1, 0]);
        let plus = PciFunction::new("00:03.0".parse().unwrap(), pci::catalogue::edu_plus()).unwrap();
        let counts: Vec<u32> = (0..5).map(|index| get_irq_count(&plus, index)).collect();
        assert_eq!(counts, [0, 0, 0, 1, 1]);
    }
}
