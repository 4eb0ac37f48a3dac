//! Plain value types of the buffer core and the pure checks over them.

use std::fmt;

use page::{page_aligned, PhysAddr};
use rustix::fs::OFlags;

use crate::Error;

/// Room for a user-set buffer name, terminating NUL included.
///
/// Kernel: `DMA_BUF_NAME_LEN` in include/uapi/linux/dma-buf.h.
pub const DMA_BUF_NAME_LEN: usize = 32;

/// One physically contiguous piece of a buffer.
///
/// A buffer is the concatenation of its ranges in order; ranges may alias each other or
/// appear in any physical order. Analogous to Linux's `struct phys_vec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PhysVec {
    /// Physical (here: backing-store) address of the first byte, page aligned.
    pub paddr: PhysAddr,
    /// Length in bytes, page aligned and non-zero.
    pub len: u64,
}

/// A byte offset into a buffer: into the concatenation of its ranges, in order.
///
/// The address space between a mapping's `vm_pgoff` and a range's physical address:
/// `find_pfn` turns a faulting address into one, then walks the ranges to the physical
/// address it stands for. Kernel: the `vma_off`, `fault_offset` and `range_start_offset`
/// of the exporter's `find_pfn` (series v4 03/10).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BufOffset(pub u64);

impl BufOffset {
    /// `self + n`, or `None` on overflow.
    #[must_use]
    pub const fn checked_add(self, n: u64) -> Option<Self> {
        match self.0.checked_add(n) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// How far `self` lies past `base`, or `None` if it lies before.
    #[must_use]
    pub const fn offset_from(self, base: Self) -> Option<u64> {
        self.0.checked_sub(base.0)
    }
}

impl fmt::Debug for BufOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BufOffset({:#x})", self.0)
    }
}

impl fmt::Display for BufOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Revocation status of a buffer.
///
/// Kernel: the exporter's status enum (series v4 09/10); the values are the kernel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// Usable: attaches, importer maps and CPU faults may succeed.
    Ok = 0,
    /// Revoked until the exporter un-revokes it (memory disabled, D3, reset, ...).
    TempRevoked = 1,
    /// Revoked for good; no transition leaves this state.
    PermRevoked = 2,
}

impl Status {
    /// Every status, in numeric order (handy for exhaustive tests).
    pub const ALL: [Status; 3] = [Status::Ok, Status::TempRevoked, Status::PermRevoked];

    /// Whether the buffer refuses access in this state.
    #[must_use]
    pub fn is_revoked(self) -> bool {
        self != Status::Ok
    }

    /// Decodes the value stored in the buffer's atomic; only values written by
    /// `as u8` ever reach it.
    pub(crate) fn from_u8(value: u8) -> Status {
        match value {
            0 => Status::Ok,
            1 => Status::TempRevoked,
            _ => Status::PermRevoked,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::TempRevoked => "temp-revoked",
            Status::PermRevoked => "perm-revoked",
        })
    }
}

/// What a call to [`crate::DmaBuf::set_status`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// Nothing: same state requested, or the buffer is permanently revoked.
    NoOp,
    /// `Ok` to a revoked state: importers invalidated and drained, CPU mappings zapped.
    Revoked,
    /// `TempRevoked` to `PermRevoked`: status changed, nothing else (already torn down).
    Tightened,
    /// `TempRevoked` to `Ok`: status changed and CPU mappings zapped; nothing re-mapped.
    Unrevoked,
}

/// How the buffer's file was opened (the access-mode bits of its open flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessMode {
    /// `O_RDONLY`.
    ReadOnly,
    /// `O_WRONLY`.
    WriteOnly,
    /// `O_RDWR`.
    ReadWrite,
}

impl AccessMode {
    /// Decodes the access mode of open flags such as the `open_flags` of an export request;
    /// other bits (`O_CLOEXEC`, ...) are ignored.
    ///
    /// # Errors
    ///
    /// - `EINVAL` ([`Error::InvalidAccessMode`]): the access-mode bits are `O_ACCMODE` (3).
    ///
    /// Deviation: the kernel accepts 3 and creates a file that can neither be read nor
    /// written; such a buffer is useless, so we refuse it at export.
    pub fn from_open_flags(flags: u32) -> Result<AccessMode, Error> {
        let mode = OFlags::from_bits_retain(flags) & OFlags::ACCMODE;
        if mode == OFlags::RDONLY {
            Ok(AccessMode::ReadOnly)
        } else if mode == OFlags::WRONLY {
            Ok(AccessMode::WriteOnly)
        } else if mode == OFlags::RDWR {
            Ok(AccessMode::ReadWrite)
        } else {
            Err(Error::InvalidAccessMode { flags })
        }
    }

    /// Whether a read-side mapping (`PROT_READ`) is allowed.
    #[must_use]
    pub fn can_read(self) -> bool {
        matches!(self, AccessMode::ReadOnly | AccessMode::ReadWrite)
    }

    /// Whether a shared writable mapping (`PROT_WRITE` with `MAP_SHARED`) is allowed.
    #[must_use]
    pub fn can_write(self) -> bool {
        matches!(self, AccessMode::WriteOnly | AccessMode::ReadWrite)
    }
}

/// Checks a range list and returns the buffer size, the sum of the lengths.
///
/// # Errors
///
/// - `EINVAL`: no ranges ([`Error::NoRanges`]); a zero length ([`Error::EmptyRange`]);
///   address or length not page aligned ([`Error::UnalignedRange`]); the sum overflows
///   ([`Error::SizeOverflow`]).
/// - `EOVERFLOW` ([`Error::RangeOverflow`]): `paddr + len` of one range overflows.
pub fn validate_ranges(ranges: &[PhysVec]) -> Result<u64, Error> {
    if ranges.is_empty() {
        return Err(Error::NoRanges);
    }
    let mut size: u64 = 0;
    for (index, range) in ranges.iter().enumerate() {
        if range.len == 0 {
            return Err(Error::EmptyRange { index });
        }
        if !range.paddr.is_page_aligned() || !page_aligned(range.len) {
            return Err(Error::UnalignedRange { index });
        }
        if range.paddr.checked_add(range.len).is_none() {
            return Err(Error::RangeOverflow { index });
        }
        size = size.checked_add(range.len).ok_or(Error::SizeOverflow)?;
    }
    Ok(size)
}

/// Checks a name set through `DMA_BUF_SET_NAME`: it must fit [`DMA_BUF_NAME_LEN`] bytes
/// with its NUL.
///
/// # Errors
///
/// - `EINVAL`: too long ([`Error::NameTooLong`]) or contains NUL ([`Error::NameContainsNul`]).
pub fn validate_user_name(name: &str) -> Result<(), Error> {
    if name.len() >= DMA_BUF_NAME_LEN {
        return Err(Error::NameTooLong { len: name.len() });
    }
    validate_exporter_name(name)
}

/// Checks a name given by the exporter at export. No length limit: the kernel allocates
/// exporter names (`kasprintf`, series v4 06/10).
///
/// # Errors
///
/// - `EINVAL` ([`Error::NameContainsNul`]): the name contains NUL.
pub(crate) fn validate_exporter_name(name: &str) -> Result<(), Error> {
    if name.contains('\0') {
        return Err(Error::NameContainsNul);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use page::PAGE_SIZE;
    use proptest::prelude::*;

    fn range(paddr: u64, len: u64) -> PhysVec {
        PhysVec { paddr: PhysAddr(paddr), len }
    }

    #[test]
    fn status_displays_in_kernel_words() {
        let shown: Vec<String> = Status::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["ok", "temp-revoked", "perm-revoked"]);
    }

    #[test]
    fn status_round_trips_through_its_byte() {
        for status in Status::ALL {
            assert_eq!(Status::from_u8(status as u8), status);
        }
        assert_eq!(Status::TempRevoked as u8, 1);
    }

    #[test]
    fn access_mode_comes_from_the_accmode_bits_only() {
        let cloexec = OFlags::CLOEXEC.bits();
        assert_eq!(AccessMode::from_open_flags(0), Ok(AccessMode::ReadOnly));
        assert_eq!(AccessMode::from_open_flags(1 | cloexec), Ok(AccessMode::WriteOnly));
        assert_eq!(AccessMode::from_open_flags(2 | cloexec), Ok(AccessMode::ReadWrite));
        assert_eq!(AccessMode::from_open_flags(3).map_err(|e| e.errno()), Err(rustix::io::Errno::INVAL));
        assert!(AccessMode::ReadOnly.can_read() && !AccessMode::ReadOnly.can_write());
        assert!(!AccessMode::WriteOnly.can_read() && AccessMode::WriteOnly.can_write());
        assert!(AccessMode::ReadWrite.can_read() && AccessMode::ReadWrite.can_write());
    }

    #[test]
    fn validate_ranges_rejects_each_bad_input_with_its_errno() {
        use rustix::io::Errno;
        let table: [(&[PhysVec], Errno); 6] = [
            (&[], Errno::INVAL),
            (&[range(0, 0)], Errno::INVAL),
            (&[range(0x1000, 0x1001)], Errno::INVAL),
            (&[range(0x1800, 0x1000)], Errno::INVAL),
            (&[range(u64::MAX - 0xfff, 0x2000)], Errno::OVERFLOW),
            (&[range(0, 1 << 63), range(0, 1 << 63)], Errno::INVAL),
        ];
        for (ranges, errno) in table {
            assert_eq!(validate_ranges(ranges).map_err(|e| e.errno()), Err(errno), "{ranges:?}");
        }
    }

    #[test]
    fn validate_ranges_names_the_offending_range() {
        let ranges = [range(0, 0x1000), range(0x1000, 0)];
        assert_eq!(validate_ranges(&ranges), Err(Error::EmptyRange { index: 1 }));
    }

    #[test]
    fn validate_ranges_accepts_aliasing_ranges_in_any_order() {
        let ranges = [range(0x5000, 0x2000), range(0x1000, 0x1000), range(0x5000, 0x1000)];
        assert_eq!(validate_ranges(&ranges), Ok(0x4000));
    }

    #[test]
    fn user_name_fits_thirty_one_bytes() {
        assert_eq!(validate_user_name(&"a".repeat(31)), Ok(()));
        assert_eq!(validate_user_name(&"a".repeat(32)), Err(Error::NameTooLong { len: 32 }));
        assert_eq!(validate_user_name("a\0b"), Err(Error::NameContainsNul));
        assert_eq!(validate_exporter_name(&"a".repeat(64)), Ok(()));
    }

    proptest! {
        #[test]
        fn valid_ranges_sum_to_the_size(pages in proptest::collection::vec((0u64..1 << 40, 1u64..1 << 20), 1..8)) {
            let ranges: Vec<PhysVec> =
                pages.iter().map(|&(pfn, n)| range(pfn * PAGE_SIZE, n * PAGE_SIZE)).collect();
            let expected: u64 = ranges.iter().map(|r| r.len).sum();
            prop_assert_eq!(validate_ranges(&ranges), Ok(expected));
        }

        #[test]
        fn validate_ranges_agrees_with_wide_arithmetic(raw in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..4)) {
            let ranges: Vec<PhysVec> = raw.iter().map(|&(p, l)| range(p & !0xfff, l & !0xfff)).collect();
            let any_zero = ranges.iter().any(|r| r.len == 0);
            let wraps = ranges.iter().any(|r| u128::from(r.paddr.0) + u128::from(r.len) > u128::from(u64::MAX));
            let sum: u128 = ranges.iter().map(|r| u128::from(r.len)).sum();
            let valid = !any_zero && !wraps && sum <= u128::from(u64::MAX);
            match validate_ranges(&ranges) {
                Ok(size) => prop_assert!(valid && u128::from(size) == sum),
                Err(e) => prop_assert!(!valid, "{e}"),
            }
        }
    }
}
