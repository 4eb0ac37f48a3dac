//! The vfio-pci ioctls of a usable device file: `GET_INFO`,
//! `GET_REGION_INFO`, `RESET`, `FEATURE`. Analogous to Linux's
//! `vfio_pci_core_ioctl()` and `vfio_ioctl_device_feature()`.

use std::os::fd::AsRawFd;

use vfio::uapi::{VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR, VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE};
use vfio::{DeviceFd, FeatureReply};
use wire::msg::IoctlArg;

use crate::args::{head, put_u32, sized, u32_at, Answer, ArgFds, IoctlResult, Slot};
use crate::dmabuf::DmaBufFile;
use crate::object::{Access, Object};
use crate::server::Shared;

const VFIO_DEVICE_FLAGS_RESET: u32 = 1 << 0;
const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;
/// `VFIO_PCI_NUM_REGIONS`: BAR0..5, ROM, config, VGA; no device regions.
const NUM_REGIONS: u32 = 9;
/// `VFIO_PCI_NUM_IRQS`: `INTx`, MSI, MSI-X, ERR, REQ.
const NUM_IRQS: u32 = 5;

/// `VFIO_DEVICE_GET_INFO`: a PCI device that can be reset, 9 regions and 5
/// interrupt indexes, no capabilities. The kernel copies back
/// `min(argsz, sizeof)` bytes of a struct it zeroed first.
pub(super) fn get_info(arg: &IoctlArg) -> IoctlResult {
    let b = sized(arg, 16)?;
    let argsz = u32_at(b, 0) as usize;
    let mut out = vec![0u8; argsz.min(24).min(b.len())];
    put_u32(&mut out, 0, u32_at(b, 0));
    put_u32(&mut out, 4, VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET);
    put_u32(&mut out, 8, NUM_REGIONS);
    put_u32(&mut out, 12, NUM_IRQS);
    Ok(Answer::out(out))
}

/// `VFIO_DEVICE_GET_REGION_INFO`, from the core's region info. Our
/// regions carry no capability (no MSI-X table shares a BAR, no sparse
/// mmap), so none is chained and `argsz` is never grown.
pub(super) fn get_region_info(fd: &DeviceFd, arg: &IoctlArg) -> IoctlResult {
    let b = sized(arg, 32)?;
    let info = fd.region_info(u32_at(b, 8))?;
    let mut out = head(b, 32);
    put_u32(&mut out, 4, info.flags);
    put_u32(&mut out, 8, info.index);
    put_u32(&mut out, 12, 0);
    out[16..24].copy_from_slice(&info.size.to_ne_bytes());
    out[24..32].copy_from_slice(&info.offset.to_ne_bytes());
    Ok(Answer::out(out))
}

/// `VFIO_DEVICE_RESET`: every device here can be reset.
pub(super) fn reset(fd: &DeviceFd) -> IoctlResult {
    fd.reset()?;
    Ok(Answer::zero())
}

/// `VFIO_DEVICE_FEATURE`: the header's size (`EINVAL` below 8 bytes), then
/// the core's feature with the raw payload. An fd in the payload (the
/// buffer of `DMA_BUF_REVOKE`/`_MEMATTR`, the wake-up eventfd of
/// `LOW_POWER_ENTRY_WITH_WAKEUP`) is replaced by the server's number for
/// the same file, so the core judges it as the kernel would: a buffer of
/// ours by its handle, any other open file by the received fd (not a
/// buffer: `EINVAL`; an eventfd: kept), a closed one by -1 (`EBADF`).
/// `DMA_BUF` returns a new buffer fd.
pub(super) fn feature(shared: &Shared, fd: &DeviceFd, arg: &IoctlArg, fds: &mut ArgFds) -> IoctlResult {
    let b = sized(arg, 8)?;
    let flags = u32_at(b, 4);
    let end = (u32_at(b, 0) as usize).min(b.len());
    let mut data = b[8..end].to_vec();
    // The received fd stays open until the call returns.
    let received = fds.take(8);
    let number = match &received {
        Slot::Absent => None,
        Slot::Bad => Some(-1),
        Slot::Fd(f) => {
            let feature = flags & 0xffff;
            let buffer = (feature == VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE
                || feature == VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR)
                .then(|| shared.objects.lookup(f))
                .flatten()
                .and_then(|file| match &file.object {
                    Object::DmaBuf(d) => Some(d.raw_fd()),
                    _ => None,
                });
            Some(buffer.unwrap_or(f.as_raw_fd()))
        }
    };
    if let (Some(n), true) = (number, data.len() >= 4) {
        data[..4].copy_from_slice(&n.to_ne_bytes());
    }
    let reply = fd.feature(flags, &data)?;
    drop(received);
    match reply {
        FeatureReply::Done => Ok(Answer::zero()),
        FeatureReply::DmaBuf(handle) => {
            let mode = handle.buffer().mode();
            let access = Access { read: mode.can_read(), write: mode.can_write() };
            let file = DmaBufFile::new(handle);
            let fd = shared.objects.install(Object::DmaBuf(std::sync::Arc::new(file)), access)?;
            Ok(Answer { ret: 0, out: Vec::new(), fd: Some(fd) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_info_copies_back_no_more_than_argsz() {
        let arg = IoctlArg::Bytes([20u32, 0, 0, 0, 0].iter().flat_map(|v| v.to_ne_bytes()).collect());
        let a = get_info(&arg).unwrap();
        assert_eq!(a.out.len(), 20);
        assert_eq!(u32_at(&a.out, 4), VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET);
        assert_eq!((u32_at(&a.out, 8), u32_at(&a.out, 12)), (9, 5));
    }
}
