//! DMA-buffer files: what `VFIO_DEVICE_FEATURE_DMA_BUF` returns. The file
//! holds a handle of the buffer; its mappings hold the buffer itself, so
//! closing the file leaves them working. Analogous to the dma-buf file of
//! Linux's `drivers/dma-buf/dma-buf.c` (`dma_buf_ioctl()`); mmap is in
//! `mapping`.

use dmabuf::DmaBufFd;
use rustix::io::Errno;
use wire::msg::IoctlArg;
use wire::nr::{DMA_BUF_IOCTL_SYNC, DMA_BUF_SET_NAME_A, DMA_BUF_SET_NAME_B};
use wire::ObjectKind;

use crate::args::{u64_at, Answer, IoctlResult};
use crate::server::Shared;

/// `DMA_BUF_SYNC_RW` and `DMA_BUF_SYNC_END`: the valid sync flags.
const DMA_BUF_SYNC_RW: u64 = 3;
const DMA_BUF_SYNC_END: u64 = 4;

/// An open buffer file.
#[derive(Debug)]
pub(crate) struct DmaBufFile {
    /// Immutable. The server's handle of the buffer: the core's features
    /// find the buffer by its number.
    handle: DmaBufFd,
}

impl DmaBufFile {
    pub(crate) fn new(handle: DmaBufFd) -> Self {
        Self { handle }
    }

    /// The handle.
    pub(crate) fn handle(&self) -> &DmaBufFd {
        &self.handle
    }

    /// The server's descriptor number of the buffer, for a feature payload.
    pub(crate) fn raw_fd(&self) -> i32 {
        self.handle.raw_fd()
    }

    /// `dma_buf_ioctl()`: `DMA_BUF_IOCTL_SYNC` (flags checked, no cache to
    /// maintain) and `DMA_BUF_SET_NAME`.
    ///
    /// # Errors
    ///
    /// `EINVAL` for bad sync flags or a bad name; `EFAULT` for an argument
    /// that could not be read; `ENOTTY` for anything else.
    pub(crate) fn ioctl(&self, shared: &Shared, request: u64, arg: &IoctlArg) -> IoctlResult {
        match (request, arg) {
            (DMA_BUF_IOCTL_SYNC, IoctlArg::Bytes(b)) => {
                if b.len() < 8 {
                    return Err(Errno::FAULT.into());
                }
                let flags = u64_at(b, 0);
                if flags & !(DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END) != 0 || flags & DMA_BUF_SYNC_RW == 0 {
                    return Err(Errno::INVAL.into());
                }
                Ok(Answer::zero())
            }
            (DMA_BUF_SET_NAME_A | DMA_BUF_SET_NAME_B, IoctlArg::Str(name)) => {
                self.handle.buffer().set_name(name).map_err(|e| e.errno())?;
                Ok(Answer::zero())
            }
            (DMA_BUF_IOCTL_SYNC | DMA_BUF_SET_NAME_A | DMA_BUF_SET_NAME_B, _) => Err(Errno::FAULT.into()),
            _ => {
                crate::names::log_unknown(shared, ObjectKind::DmaBuf, request);
                Err(Errno::NOTTY.into())
            }
        }
    }
}
