//! Unit tests of the IOMMU model: every errno path of the container,
//! iommufd and compatibility calls, the capability-chain layouts byte by
//! byte, and DMA through mappings into a fake process memory.

mod compat;
mod dma;
mod iommufd;
mod type1;

use std::sync::{Arc, Mutex};

use rustix::io::Errno;
use wire::msg::IoctlArg;

use super::{IoctlOut, PinFlags, ProcessMemory};

/// Where fake process memories start.
pub(super) const BASE: u64 = 0x7f00_0000_0000;

/// The last page of the 64-bit space (the selftests' `~0 & ~(page - 1)`):
/// two pages from there wrap.
pub(super) const LAST_PAGE: u64 = !(4096 - 1);

/// A process memory: `data` at `base`; nothing else is mapped.
#[derive(Debug)]
pub(super) struct FakeMem {
    base: u64,
    data: Mutex<Vec<u8>>,
    mm: Option<u64>,
    /// A range that pins as a BAR mmap would (`VM_PFNMAP`).
    pfnmap: Option<(u64, u64)>,
}

impl FakeMem {
    /// `len` zero bytes at `base`, of an unknown address space.
    pub fn new(base: u64, len: usize) -> Arc<Self> {
        Arc::new(Self { base, data: Mutex::new(vec![0; len]), mm: None, pfnmap: None })
    }

    /// As [`FakeMem::new`], of address space `mm`.
    pub fn with_mm(base: u64, len: usize, mm: u64) -> Arc<Self> {
        Arc::new(Self { base, data: Mutex::new(vec![0; len]), mm: Some(mm), pfnmap: None })
    }

    /// As [`FakeMem::new`], with `[start, start + len)` a BAR mmap.
    pub fn with_pfnmap(base: u64, len: usize, bar: (u64, u64)) -> Arc<Self> {
        Arc::new(Self { base, data: Mutex::new(vec![0; len]), mm: None, pfnmap: Some(bar) })
    }

    fn range(&self, vaddr: u64, len: usize) -> Result<std::ops::Range<usize>, Errno> {
        let data_len = self.data.lock().unwrap().len() as u64;
        let off = vaddr.checked_sub(self.base).ok_or(Errno::FAULT)?;
        let end = off.checked_add(len as u64).ok_or(Errno::FAULT)?;
        if end > data_len {
            return Err(Errno::FAULT);
        }
        Ok(off as usize..end as usize)
    }

    /// The bytes at `vaddr`.
    pub fn peek(&self, vaddr: u64, len: usize) -> Vec<u8> {
        let r = self.range(vaddr, len).expect("inside the fake memory");
        self.data.lock().unwrap()[r].to_vec()
    }

    /// Stores `data` at `vaddr`.
    pub fn poke(&self, vaddr: u64, data: &[u8]) {
        let r = self.range(vaddr, data.len()).expect("inside the fake memory");
        self.data.lock().unwrap()[r].copy_from_slice(data);
    }
}

impl ProcessMemory for FakeMem {
    fn read(&self, vaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let r = self.range(vaddr, buf.len())?;
        buf.copy_from_slice(&self.data.lock().unwrap()[r]);
        Ok(())
    }

    fn write(&self, vaddr: u64, data: &[u8]) -> Result<(), Errno> {
        let r = self.range(vaddr, data.len())?;
        self.data.lock().unwrap()[r].copy_from_slice(data);
        Ok(())
    }

    fn mm_id(&self) -> Option<u64> {
        self.mm
    }

    fn pin(&self, vaddr: u64, len: u64, flags: PinFlags) -> Result<(), Errno> {
        if let Some((s, l)) = self.pfnmap {
            let last = vaddr + len - 1;
            if vaddr < s + l && s <= last && !flags.allow_pfnmap {
                return Err(Errno::FAULT);
            }
        }
        super::dma::probe_readable(self, vaddr, len)
    }
}

/// `m` as the caller of an ioctl.
pub(super) fn caller(m: &Arc<FakeMem>) -> Arc<dyn ProcessMemory> {
    Arc::clone(m) as Arc<dyn ProcessMemory>
}

/// A struct argument under construction.
#[derive(Debug, Clone)]
pub(super) struct Buf(Vec<u8>);

impl Buf {
    /// `len` zero bytes.
    pub fn new(len: usize) -> Self {
        Self(vec![0; len])
    }

    fn put(mut self, off: usize, b: &[u8]) -> Self {
        if self.0.len() < off + b.len() {
            self.0.resize(off + b.len(), 0);
        }
        self.0[off..off + b.len()].copy_from_slice(b);
        self
    }

    /// With a `u16` at `off`.
    pub fn u16(self, off: usize, v: u16) -> Self {
        self.put(off, &v.to_ne_bytes())
    }

    /// With a `u32` at `off`.
    pub fn u32(self, off: usize, v: u32) -> Self {
        self.put(off, &v.to_ne_bytes())
    }

    /// With a `u64` at `off`.
    pub fn u64(self, off: usize, v: u64) -> Self {
        self.put(off, &v.to_ne_bytes())
    }

    /// The argument.
    pub fn arg(self) -> IoctlArg {
        IoctlArg::Bytes(self.0)
    }
}

/// The `u16` at `off` of copied-back bytes.
pub(super) fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes(b[off..off + 2].try_into().unwrap())
}

/// The `u32` at `off`.
pub(super) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
}

/// The `u64` at `off`.
pub(super) fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

/// The errno of a call that failed.
pub(super) fn errno(r: Result<IoctlOut, Errno>) -> Errno {
    match r {
        Ok(out) => out.errno().unwrap_or_else(|| panic!("expected a failure, got {out:?}")),
        Err(e) => e,
    }
}

#[test]
fn copy_then_fail_carries_the_errno_beside_the_bytes() {
    let out = IoctlOut::copy_then_fail(vec![1, 2], Errno::MSGSIZE);
    assert_eq!(out.errno(), Some(Errno::MSGSIZE));
    assert_eq!(out.out, vec![1, 2]);
    assert_eq!(IoctlOut::default().errno(), None);
}
