//! Errors of the buffer core, each mapping to exactly one errno.

use rustix::io::Errno;

/// An error of the DMA-buffer core.
///
/// Every variant maps to one errno through [`Error::errno`], the value the kernel's
/// dma-buf core (or the exporter's dma-buf ops) returns for the same cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An export was requested with no ranges at all.
    #[error("buffer has no ranges")]
    NoRanges,
    /// A range has length zero.
    #[error("range {index} has zero length")]
    EmptyRange {
        /// Position of the offending range.
        index: usize,
    },
    /// A range's address or length is not page aligned.
    #[error("range {index} is not page aligned")]
    UnalignedRange {
        /// Position of the offending range.
        index: usize,
    },
    /// A range's end address does not fit in 64 bits.
    #[error("range {index} wraps past the end of the physical address space")]
    RangeOverflow {
        /// Position of the offending range.
        index: usize,
    },
    /// The sum of the range lengths does not fit in 64 bits.
    #[error("total buffer size overflows")]
    SizeOverflow,
    /// A name does not fit `DMA_BUF_NAME_LEN` bytes including its terminating NUL.
    #[error("name of {len} bytes is longer than {max} bytes", max = crate::DMA_BUF_NAME_LEN - 1)]
    NameTooLong {
        /// Length of the rejected name in bytes.
        len: usize,
    },
    /// A name contains a NUL byte, which a C string cannot carry.
    #[error("name contains a nul byte")]
    NameContainsNul,
    /// Open flags whose access mode is none of read-only, write-only and read-write.
    #[error("open flags {flags:#x} carry no valid access mode")]
    InvalidAccessMode {
        /// The rejected open flags.
        flags: u32,
    },
    /// The importer cannot do peer-to-peer DMA.
    #[error("importer does not support peer-to-peer dma")]
    NotPeerToPeer,
    /// The importer cannot be revoked in bounded time.
    #[error("importer cannot be revoked")]
    NotRevocable,
    /// The buffer is revoked (temporarily or for good).
    #[error("buffer is revoked")]
    Revoked,
    /// A revoke gave up waiting for importers to unmap.
    #[error("importers of buffer {id} still hold {outstanding} mappings after the revoke timeout")]
    ImporterTimeout {
        /// [`crate::DmaBuf::id`] of the buffer.
        id: u64,
        /// Importer mappings still live when the wait expired.
        outstanding: usize,
    },
    /// The number is not an open file descriptor.
    #[error("fd {fd} is not open")]
    BadFd {
        /// The rejected descriptor number.
        fd: i32,
    },
    /// The descriptor is open but is not a DMA-buffer handle.
    #[error("fd {fd} is not a dma-buf")]
    NotDmaBuf {
        /// The rejected descriptor number.
        fd: i32,
    },
    /// An mmap that the file's access mode does not allow.
    #[error("buffer file's access mode does not allow this mapping")]
    MmapAccess,
    /// An mmap window that reaches past the buffer's last page.
    #[error("mapping reaches past the end of the buffer")]
    MmapPastEnd,
    /// An mmap of a buffer whose exporter has no mmap operation.
    #[error("exporter does not support mmap")]
    NoMmap,
    /// The exporter refused an operation or could not complete it.
    ///
    /// A pass-through variant, like [`Error::Install`]: the errno is the exporter's own.
    #[error("{reason}")]
    Exporter {
        /// The exporter's errno.
        errno: Errno,
        /// What the exporter said.
        reason: String,
    },
    /// Creating or duplicating the descriptor of a handle failed.
    ///
    /// The one pass-through variant: its errno is the one the system returned
    /// (typically `EMFILE`, `ENFILE` or `ENOMEM`), as `dma_buf_fd()` passes on the
    /// error of the fd allocation.
    #[error("cannot install a dma-buf fd")]
    Install(#[source] Errno),
}

impl Error {
    /// The errno this error stands for.
    #[must_use]
    pub fn errno(&self) -> Errno {
        match self {
            // Kernel: validate_dmabuf_input() rejects empty, zero-length, unaligned
            // ranges and an overflowing sum with EINVAL.
            Self::NoRanges | Self::EmptyRange { .. } | Self::UnalignedRange { .. } | Self::SizeOverflow => Errno::INVAL,
            // Kernel: the exporter's physical-range fill uses EOVERFLOW for a wrapping range.
            Self::RangeOverflow { .. } => Errno::OVERFLOW,
            // Kernel: dma_buf_set_name() copies at most DMA_BUF_NAME_LEN bytes, EINVAL beyond.
            Self::NameTooLong { .. } | Self::NameContainsNul => Errno::INVAL,
            Self::InvalidAccessMode { .. } => Errno::INVAL,
            // Kernel: the exporter's attach op (spec §2.5).
            Self::NotPeerToPeer | Self::NotRevocable => Errno::OPNOTSUPP,
            Self::Revoked => Errno::NODEV,
            Self::ImporterTimeout { .. } => Errno::TIMEDOUT,
            // Kernel: dma_buf_get().
            Self::BadFd { .. } => Errno::BADF,
            Self::NotDmaBuf { .. } => Errno::INVAL,
            // Kernel: do_mmap() checks the file mode; dma_buf_mmap_internal() the window and
            // the presence of an mmap op.
            Self::MmapAccess => Errno::ACCESS,
            Self::MmapPastEnd | Self::NoMmap => Errno::INVAL,
            Self::Exporter { errno, .. } | Self::Install(errno) => *errno,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_errno() {
        let table = [
            (Error::NoRanges, Errno::INVAL),
            (Error::EmptyRange { index: 0 }, Errno::INVAL),
            (Error::UnalignedRange { index: 0 }, Errno::INVAL),
            (Error::RangeOverflow { index: 0 }, Errno::OVERFLOW),
            (Error::SizeOverflow, Errno::INVAL),
            (Error::NameTooLong { len: 40 }, Errno::INVAL),
            (Error::NameContainsNul, Errno::INVAL),
            (Error::InvalidAccessMode { flags: 3 }, Errno::INVAL),
            (Error::NotPeerToPeer, Errno::OPNOTSUPP),
            (Error::NotRevocable, Errno::OPNOTSUPP),
            (Error::Revoked, Errno::NODEV),
            (Error::ImporterTimeout { id: 1, outstanding: 2 }, Errno::TIMEDOUT),
            (Error::BadFd { fd: -1 }, Errno::BADF),
            (Error::NotDmaBuf { fd: 1 }, Errno::INVAL),
            (Error::MmapAccess, Errno::ACCESS),
            (Error::MmapPastEnd, Errno::INVAL),
            (Error::NoMmap, Errno::INVAL),
            (Error::Exporter { errno: Errno::NODEV, reason: "revoked".into() }, Errno::NODEV),
            (Error::Install(Errno::MFILE), Errno::MFILE),
        ];
        for (error, errno) in table {
            assert_eq!(error.errno(), errno, "{error}");
        }
    }

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let message = Error::NameTooLong { len: 40 }.to_string();
        assert_eq!(message, "name of 40 bytes is longer than 31 bytes");
        assert!(!message.ends_with('.'));
    }
}
