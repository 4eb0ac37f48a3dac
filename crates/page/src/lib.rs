//! Page geometry and the address spaces that meet in the fault path.
//!
//! What it is: the one home of the page constants (`PAGE_SHIFT`,
//! `PAGE_SIZE`, `PMD_ORDER`, `PUD_ORDER`, `HPAGE_PMD_SIZE`), the rounding
//! helpers (`PAGE_ALIGN`, `ALIGN_DOWN`, `PAGE_ALIGNED`), and one newtype per
//! address space a fault crosses on its way from a CPU access to a page:
//!
//! ```text
//! VirtAddr ──(vm_start, vm_pgoff: PgOff)──► buffer offset ──► PhysAddr ──(PHYS_PFN)──► Pfn
//! ```
//!
//! - [`VirtAddr`]: a user virtual address (a VMA's `vm_start`, a fault's
//!   `address`).
//! - [`PgOff`]: a `vm_pgoff`, the mmap offset counted in pages.
//! - [`PhysAddr`]: a physical address; in this project a byte offset into the
//!   memfd that holds device memory.
//! - [`Pfn`]: a page frame number, a [`PhysAddr`] shifted right by
//!   [`PAGE_SHIFT`].
//!
//! Each is `Copy`, a transparent `u64` inside (`.0`), printed in hex, and
//! they do not convert into one another implicitly: a PFN passed where a
//! physical address is wanted does not compile. Arithmetic that callers
//! supply is checked (`checked_add`), as the kernel's `check_add_overflow`
//! guards user-supplied offsets.
//!
//! What it is not: no syscalls, no locks, no dependencies; x86-64 with 4 KiB
//! base pages only.
//!
//! What it mirrors: Linux's `arch/x86/include/asm/page_types.h` and
//! `asm/page.h` (`PAGE_SHIFT`, `PAGE_SIZE`, `PAGE_ALIGN`),
//! `include/linux/pfn.h` (`PFN_PHYS`, `PHYS_PFN`, `PFN_UP`, `PFN_DOWN`),
//! `include/linux/align.h` (`ALIGN_DOWN`) and `include/linux/pgtable.h`
//! (`PMD_ORDER`, `PUD_ORDER`). Analogous to vm-memory's `GuestAddress` /
//! `MemoryRegionAddress` split.
#![forbid(unsafe_code)]

use std::fmt;

/// log2 of [`PAGE_SIZE`] (`PAGE_SHIFT`).
pub const PAGE_SHIFT: u32 = 12;
/// Size of a base page in bytes (x86-64, 4 KiB).
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Mask clearing the offset inside a page (`PAGE_MASK`).
pub const PAGE_MASK: u64 = !(PAGE_SIZE - 1);
/// Order of a PMD leaf: 2 MiB with 4 KiB pages (`PMD_ORDER`).
pub const PMD_ORDER: u32 = 9;
/// Order of a PUD leaf: 1 GiB with 4 KiB pages (`PUD_ORDER`).
pub const PUD_ORDER: u32 = 18;
/// Size of a PMD-level huge page (`HPAGE_PMD_SIZE`, 2 MiB).
pub const HPAGE_PMD_SIZE: u64 = PAGE_SIZE << PMD_ORDER;

/// `PAGE_ALIGN`—round `x` up to a multiple of [`PAGE_SIZE`]; `None` if that
/// overflows (the kernel macro wraps; a user length must not).
#[must_use]
pub const fn page_align(x: u64) -> Option<u64> {
    match x.checked_add(PAGE_SIZE - 1) {
        Some(v) => Some(v & PAGE_MASK),
        None => None,
    }
}

/// `PAGE_ALIGNED`—whether `x` is a multiple of [`PAGE_SIZE`].
#[must_use]
pub const fn page_aligned(x: u64) -> bool {
    x & (PAGE_SIZE - 1) == 0
}

/// `ALIGN_DOWN`—round `x` down to a multiple of `align` (a power of two).
#[must_use]
pub const fn align_down(x: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    x & !(align - 1)
}

/// Size in bytes of a page of `order` (`PAGE_SIZE << order`); `None` for an
/// order no `u64` can describe.
#[must_use]
pub const fn order_size(order: u32) -> Option<u64> {
    if order >= u64::BITS - PAGE_SHIFT {
        None
    } else {
        Some(PAGE_SIZE << order)
    }
}

/// `n << PAGE_SHIFT`, or `None` if bits would be lost.
const fn pages_to_bytes(n: u64) -> Option<u64> {
    if n > u64::MAX >> PAGE_SHIFT {
        None
    } else {
        Some(n << PAGE_SHIFT)
    }
}

/// Defines an address newtype with the common conversions and formatting.
macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value.
            #[must_use]
            pub const fn get(self) -> u64 {
                self.0
            }

            /// `self + n`, or `None` on overflow (`check_add_overflow`).
            #[must_use]
            pub fn checked_add(self, n: u64) -> Option<Self> {
                self.0.checked_add(n).map(Self)
            }

            /// `self - n`, or `None` on underflow.
            #[must_use]
            pub fn checked_sub(self, n: u64) -> Option<Self> {
                self.0.checked_sub(n).map(Self)
            }

            /// How far `self` lies above `base`, or `None` if it lies below.
            #[must_use]
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

/// Methods shared by the two byte addresses.
macro_rules! byte_address {
    ($name:ident) => {
        impl $name {
            /// `ALIGN_DOWN(self, size)`: the start of the naturally aligned
            /// block of `size` bytes (a power of two) holding `self`.
            #[must_use]
            pub const fn align_down(self, size: u64) -> Self {
                Self(align_down(self.0, size))
            }

            /// The start of the base page holding `self`.
            #[must_use]
            pub const fn page_down(self) -> Self {
                Self(self.0 & PAGE_MASK)
            }

            /// `PAGE_ALIGN(self)`: rounded up to a page boundary, `None` on
            /// overflow.
            #[must_use]
            pub fn page_align(self) -> Option<Self> {
                page_align(self.0).map(Self)
            }

            /// Whether `self` is a multiple of `size` (a power of two).
            #[must_use]
            pub const fn is_aligned(self, size: u64) -> bool {
                debug_assert!(size.is_power_of_two());
                self.0 & (size - 1) == 0
            }

            /// Whether `self` is on a page boundary (`PAGE_ALIGNED`).
            #[must_use]
            pub const fn is_page_aligned(self) -> bool {
                page_aligned(self.0)
            }
        }
    };
}

address_type!(
    /// A user virtual address: a VMA boundary or a faulting address.
    VirtAddr
);
byte_address!(VirtAddr);

address_type!(
    /// A physical address. In this project: a byte offset into the memfd
    /// that holds device memory (see `mm::PhysMemory`).
    PhysAddr
);
byte_address!(PhysAddr);

address_type!(
    /// A page frame number: a [`PhysAddr`] counted in pages.
    Pfn
);

address_type!(
    /// `vm_pgoff`: the offset passed to mmap, counted in pages (the region
    /// index of a device-fd offset included).
    PgOff
);

impl PhysAddr {
    /// `PHYS_PFN`: the frame holding this address (rounds down).
    #[must_use]
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
}

impl Pfn {
    /// `PFN_PHYS`: the physical address of the frame's first byte, or `None`
    /// if the shift would lose bits (the kernel macro silently does).
    #[must_use]
    pub fn phys(self) -> Option<PhysAddr> {
        pages_to_bytes(self.0).map(PhysAddr)
    }

    /// Whether the frame can start a page of `order` (its low `order` bits
    /// are clear), the alignment `vmf_insert_pfn_pmd()` needs.
    #[must_use]
    pub const fn is_aligned_to_order(self, order: u32) -> bool {
        order < u64::BITS && self.0 & ((1u64 << order) - 1) == 0
    }
}

impl PgOff {
    /// The byte offset this page offset stands for (`pgoff << PAGE_SHIFT`),
    /// or `None` if bits would be lost.
    #[must_use]
    pub const fn bytes(self) -> Option<u64> {
        pages_to_bytes(self.0)
    }

    /// The page offset of byte offset `off` (rounds down, as mmap(2)'s
    /// `offset >> PAGE_SHIFT`).
    #[must_use]
    pub const fn from_bytes(off: u64) -> Self {
        Self(off >> PAGE_SHIFT)
    }
}

/// `PHYS_PFN`—free-function spelling of [`PhysAddr::pfn`].
#[must_use]
pub const fn phys_pfn(paddr: PhysAddr) -> Pfn {
    paddr.pfn()
}

/// `PFN_PHYS`—free-function spelling of [`Pfn::phys`].
#[must_use]
pub fn pfn_phys(pfn: Pfn) -> Option<PhysAddr> {
    pfn.phys()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_describe_4k_pages_and_2m_and_1g_leaves() {
        assert_eq!(PAGE_SIZE, 4096);
        assert_eq!(HPAGE_PMD_SIZE, 2 << 20);
        assert_eq!(PAGE_SIZE << PUD_ORDER, 1 << 30);
        assert_eq!(order_size(PMD_ORDER), Some(HPAGE_PMD_SIZE));
        assert_eq!(order_size(52), None);
        assert_eq!(order_size(51), Some(1 << 63));
    }

    #[test]
    fn page_align_rounds_up_and_refuses_overflow() {
        assert_eq!(page_align(0), Some(0));
        assert_eq!(page_align(1), Some(PAGE_SIZE));
        assert_eq!(page_align(PAGE_SIZE), Some(PAGE_SIZE));
        assert_eq!(page_align(u64::MAX), None);
        assert_eq!(page_align(PAGE_MASK), Some(PAGE_MASK));
        assert!(page_aligned(0x3000) && !page_aligned(0x3001));
        assert_eq!(align_down(0x2f_ffff, HPAGE_PMD_SIZE), 0x20_0000);
    }

    #[test]
    fn phys_pfn_and_pfn_phys_round_trip_on_page_boundaries() {
        let p = PhysAddr((1 << 40) + 0x5123);
        assert_eq!(p.pfn(), Pfn(((1 << 40) >> 12) + 5));
        assert_eq!(phys_pfn(p), p.pfn());
        assert_eq!(p.pfn().phys(), Some(p.page_down()));
        assert_eq!(pfn_phys(Pfn(u64::MAX >> PAGE_SHIFT)), Some(PhysAddr(PAGE_MASK)));
        assert_eq!(pfn_phys(Pfn((u64::MAX >> PAGE_SHIFT) + 1)), None);
    }

    #[test]
    fn pfn_order_alignment_is_on_the_low_bits() {
        assert!(Pfn(512).is_aligned_to_order(PMD_ORDER));
        assert!(!Pfn(513).is_aligned_to_order(PMD_ORDER));
        assert!(Pfn(0).is_aligned_to_order(63));
        assert!(!Pfn(1).is_aligned_to_order(64));
    }

    #[test]
    fn checked_arithmetic_reports_overflow_instead_of_wrapping() {
        assert_eq!(VirtAddr(u64::MAX).checked_add(1), None);
        assert_eq!(VirtAddr(0x1000).checked_add(0x1000), Some(VirtAddr(0x2000)));
        assert_eq!(Pfn(0).checked_sub(1), None);
        assert_eq!(VirtAddr(0x5000).offset_from(VirtAddr(0x1000)), Some(0x4000));
        assert_eq!(VirtAddr(0x1000).offset_from(VirtAddr(0x5000)), None);
    }

    #[test]
    fn byte_addresses_round_to_pages_and_blocks() {
        let va = VirtAddr(0x7f00_0023_4567);
        assert_eq!(va.page_down(), VirtAddr(0x7f00_0023_4000));
        assert_eq!(va.page_align(), Some(VirtAddr(0x7f00_0023_5000)));
        assert_eq!(va.align_down(HPAGE_PMD_SIZE), VirtAddr(0x7f00_0020_0000));
        assert!(va.page_down().is_page_aligned() && !va.is_page_aligned());
        assert!(VirtAddr(0x40_0000).is_aligned(HPAGE_PMD_SIZE));
    }

    #[test]
    fn pgoff_counts_pages_of_the_mmap_offset() {
        assert_eq!(PgOff::from_bytes(0x100_0000_4fff), PgOff(0x1000_0004));
        assert_eq!(PgOff(0x1000_0004).bytes(), Some(0x100_0000_4000));
        assert_eq!(PgOff(u64::MAX).bytes(), None);
    }

    #[test]
    fn addresses_print_in_hex() {
        assert_eq!(VirtAddr(0x1000).to_string(), "0x1000");
        assert_eq!(format!("{:x}", Pfn(0x10_0000)), "100000");
        assert_eq!(format!("{:#x}", PhysAddr(255)), "0xff");
        assert_eq!(format!("{:?}", PgOff(16)), "PgOff(0x10)");
    }
}
