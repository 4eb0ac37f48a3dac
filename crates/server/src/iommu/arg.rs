//! Ioctl arguments as the kernel reads and writes them: VFIO's `argsz`
//! convention (`copy_from_user` of `minsz`, then `argsz < minsz` is
//! `EINVAL`) and iommufd's `size` convention (`copy_struct_from_user`).
//!
//! The process sends `min(argsz, MAX_DATA)` bytes of a struct argument, or
//! fewer when its memory ends first ([`wire::shape::ArgShape::Sized`]).
//! So fewer bytes than the struct's own size field says means the memory
//! ended there and a kernel copy reaching further would fault (`EFAULT`);
//! otherwise bytes that did not travel are readable and only matter on
//! paths that fail with `EINVAL` anyway (they read as zero here).

use rustix::io::Errno;
use wire::msg::IoctlArg;
use wire::MAX_DATA;

use super::IoctlOut;

/// The integer argument of a call that takes one (`VFIO_CHECK_EXTENSION`,
/// `VFIO_SET_IOMMU`). The shape table carries these as values; anything
/// else reads as 0, which no such call accepts.
pub(crate) fn value(arg: &IoctlArg) -> u64 {
    match arg {
        IoctlArg::Value(v) => *v,
        IoctlArg::Bytes(_) | IoctlArg::Str(_) => 0,
    }
}

/// A kernel-side copy of a struct: native-endian fields at byte offsets,
/// as the UAPI headers lay them out on x86-64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Raw(Vec<u8>);

impl Raw {
    /// `n` zero bytes.
    pub fn zeroed(n: usize) -> Self {
        Self(vec![0; n])
    }

    /// A copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn get<const N: usize>(&self, off: usize) -> [u8; N] {
        crate::args::bytes_at(&self.0, off)
    }

    /// The `u16` at `off` (0 beyond the end).
    pub fn u16(&self, off: usize) -> u16 {
        u16::from_ne_bytes(self.get(off))
    }

    /// The `u32` at `off` (0 beyond the end).
    pub fn u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.get(off))
    }

    /// The `u64` at `off` (0 beyond the end).
    pub fn u64(&self, off: usize) -> u64 {
        u64::from_ne_bytes(self.get(off))
    }

    /// Stores `data` at `off`, growing the struct if it is shorter.
    pub fn put(&mut self, off: usize, data: &[u8]) {
        crate::args::put_at(&mut self.0, off, data);
    }

    /// Stores a `u16` at `off`.
    pub fn put_u16(&mut self, off: usize, v: u16) {
        self.put(off, &v.to_ne_bytes());
    }

    /// Stores a `u32` at `off`.
    pub fn put_u32(&mut self, off: usize, v: u32) {
        self.put(off, &v.to_ne_bytes());
    }

    /// Stores a `u64` at `off`.
    pub fn put_u64(&mut self, off: usize, v: u64) {
        self.put(off, &v.to_ne_bytes());
    }

    /// Cuts it to `n` bytes.
    pub fn truncate(&mut self, n: usize) {
        self.0.truncate(n);
    }

    /// The bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

/// A struct argument as it travelled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserStruct<'a> {
    bytes: &'a [u8],
    /// The program's memory ends right after `bytes`.
    ended: bool,
}

impl<'a> UserStruct<'a> {
    /// The struct behind `arg` (none for a value argument: every copy of it
    /// faults).
    pub fn new(arg: &'a IoctlArg) -> Self {
        let bytes: &[u8] = match arg {
            IoctlArg::Bytes(b) => b,
            IoctlArg::Value(_) | IoctlArg::Str(_) => return Self { bytes: &[], ended: true },
        };
        let ended = bytes.len() < (Self::size_of(bytes) as usize).min(MAX_DATA);
        Self { bytes, ended }
    }

    /// The leading `argsz`/`size` field. Fewer than 4 bytes travel only
    /// when the field itself was below 4, under every struct's minimum, so
    /// their count stands in for it.
    fn size_of(bytes: &[u8]) -> u32 {
        match bytes.get(..4) {
            Some(b) => u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            None => bytes.len() as u32,
        }
    }

    /// The leading `argsz`/`size` field.
    pub fn size(&self) -> u32 {
        Self::size_of(self.bytes)
    }

    /// Whether a kernel copy of the first `n` bytes succeeds.
    pub fn readable(&self, n: usize) -> bool {
        !self.ended || n <= self.bytes.len()
    }

    /// The first `n` bytes as the program holds them (zero where they did
    /// not travel).
    pub fn head(&self, n: usize) -> Raw {
        let mut raw = Raw::zeroed(n);
        let have = n.min(self.bytes.len());
        raw.put(0, &self.bytes[..have]);
        raw
    }

    /// VFIO's `copy_from_user(&x, arg, minsz)`.
    ///
    /// # Errors
    ///
    /// `EFAULT` when the program's memory ends inside the first `minsz`
    /// bytes.
    pub fn vfio_copy_in(&self, minsz: usize) -> Result<Raw, Errno> {
        if !self.readable(minsz) {
            return Err(Errno::FAULT);
        }
        Ok(self.head(minsz))
    }

    /// `copy_to_user` of `out` over the start of the argument.
    ///
    /// # Errors
    ///
    /// `EFAULT` when the program's memory ends inside `out`.
    pub fn copy_out(&self, out: Raw) -> Result<IoctlOut, Errno> {
        if !self.readable(out.len()) {
            return Err(Errno::FAULT);
        }
        Ok(IoctlOut { ret: 0, out: out.into_vec() })
    }

    /// iommufd's `get_user(size)`, `size < min_size` check and
    /// `copy_struct_from_user(ksize)`: returns the kernel's struct (the
    /// program's bytes, zero-extended to `ksize`) and the program's size.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a size below `min_size`; `EFAULT` when the memory ends
    /// inside the struct; `E2BIG` for non-zero bytes past `ksize` (a newer
    /// struct using fields this kernel does not know).
    pub fn iommufd_copy_in(&self, min_size: usize, ksize: usize) -> Result<(Raw, usize), Errno> {
        let usize_ = self.size() as usize;
        if usize_ < min_size {
            return Err(Errno::INVAL);
        }
        if !self.readable(usize_) {
            return Err(Errno::FAULT);
        }
        // Past MAX_DATA the tail did not travel; it counts as zero.
        let tail = self.bytes.get(ksize..usize_.min(self.bytes.len())).unwrap_or(&[]);
        if tail.iter().any(|&b| b != 0) {
            return Err(Errno::TOOBIG);
        }
        let mut raw = Raw::zeroed(ksize);
        let have = usize_.min(ksize).min(self.bytes.len());
        raw.put(0, &self.bytes[..have]);
        Ok((raw, usize_))
    }
}

/// `iommufd_ucmd_respond`: the whole kernel struct goes back, cut to the
/// program's size when that is smaller.
pub(crate) fn iommufd_respond(mut raw: Raw, user_size: usize) -> IoctlOut {
    let n = user_size.min(raw.len());
    raw.truncate(n);
    IoctlOut { ret: 0, out: raw.into_vec() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[u32]) -> IoctlArg {
        IoctlArg::Bytes(w.iter().flat_map(|v| v.to_ne_bytes()).collect())
    }

    #[test]
    fn a_short_copy_faults_only_when_the_memory_ended() {
        // argsz says 32, 8 bytes travelled: the memory ended.
        assert_eq!(UserStruct::new(&words(&[32, 0])).vfio_copy_in(32), Err(Errno::FAULT));
        // argsz says 8: the kernel still reads 32 bytes, which are there.
        assert!(UserStruct::new(&words(&[8, 0])).vfio_copy_in(32).is_ok());
        assert_eq!(UserStruct::new(&IoctlArg::Value(0)).vfio_copy_in(4), Err(Errno::FAULT));
    }

    #[test]
    fn iommufd_size_rules() {
        let s = |w: &[u32]| UserStruct::new(&words(w)).iommufd_copy_in(8, 12).map(|(r, n)| (r.into_vec().len(), n));
        assert_eq!(s(&[4, 0]), Err(Errno::INVAL), "below the minimum");
        assert_eq!(s(&[8, 1]), Ok((12, 8)), "shorter is zero-extended");
        assert_eq!(s(&[16, 1, 2, 0]), Ok((12, 16)), "a zero tail is accepted");
        assert_eq!(s(&[16, 1, 2, 3]), Err(Errno::TOOBIG), "a non-zero tail is not");
        assert_eq!(s(&[16, 1]), Err(Errno::FAULT), "memory ended");
        assert_eq!(UserStruct::new(&IoctlArg::Bytes(vec![])).iommufd_copy_in(8, 12).err(), Some(Errno::INVAL));
    }
}
