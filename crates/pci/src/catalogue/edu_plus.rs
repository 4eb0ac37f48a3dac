//! The register file of edu-plus's BAR0: edu's identification and liveness registers over
//! scratch storage.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use super::edu::{EDU_ID_MAGIC, EDU_REG_ID, EDU_REG_LIVENESS};
use crate::spec::RegisterBar;

/// The simplified edu register file behind edu-plus's BAR0.
///
/// Every byte is modelled on its own, so accesses of any width and alignment combine naturally:
/// - bytes 0x00..0x04 ([`EDU_REG_ID`]) read [`EDU_ID_MAGIC`] and ignore writes;
/// - bytes 0x04..0x08 ([`EDU_REG_LIVENESS`]) store what is written and read it inverted;
/// - every other byte is plain scratch storage.
///
/// It differs from QEMU's edu ([`super::EduRegisters`]) on purpose: the factorial, interrupt and
/// DMA offsets are scratch storage, any width is accepted, and a reset clears every byte, so
/// tests can use the BAR as plain storage with a reset that shows.
pub struct EduPlusRegisters {
    /// Raw stored bytes, one per BAR byte (the liveness bytes hold the uninverted value).
    /// Protected by: its own mutex; each access takes it once, so accesses are atomic.
    bytes: Mutex<Vec<u8>>,
}

impl EduPlusRegisters {
    /// A register file of `size` bytes, all stored bytes zero (so liveness reads all-ones).
    #[must_use]
    pub fn new(size: u64) -> Self {
        // A size past the address space cannot be stored; keep what can be.
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        Self { bytes: Mutex::new(vec![0; len]) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic elsewhere cannot leave the bytes inconsistent: every byte is valid on its own.
        self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for EduPlusRegisters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EduPlusRegisters").field("size", &self.lock().len()).finish_non_exhaustive()
    }
}

/// Where BAR byte `at` falls in the register map.
enum EduByte {
    /// Byte `n` of the identification register.
    Id(usize),
    /// A liveness byte (stored, read inverted).
    Liveness,
    /// Scratch storage.
    Scratch,
}

fn classify(at: usize) -> EduByte {
    const ID: usize = EDU_REG_ID as usize;
    const LIVENESS: usize = EDU_REG_LIVENESS as usize;
    // Both registers are 32 bits wide: ID covers bytes 0..4, liveness 4..8.
    match at {
        ID..4 => EduByte::Id(at - ID),
        LIVENESS..8 => EduByte::Liveness,
        _ => EduByte::Scratch,
    }
}

/// The byte offsets of an access starting at `offset`, as indexes; `None` once they no longer
/// fit (only a caller breaking the [`RegisterBar`] contract gets there).
fn byte_offsets(offset: u64) -> impl Iterator<Item = Option<usize>> {
    (0..).map(move |i| offset.checked_add(i).and_then(|at| usize::try_from(at).ok()))
}

impl RegisterBar for EduPlusRegisters {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let bytes = self.lock();
        for (at, out) in byte_offsets(offset).zip(data.iter_mut()) {
            // Outside the BAR the caller broke the contract: read zeros rather than panic.
            let Some(at) = at else {
                *out = 0;
                continue;
            };
            *out = match (classify(at), bytes.get(at).copied()) {
                (EduByte::Id(n), _) => EDU_ID_MAGIC.to_le_bytes()[n],
                (EduByte::Liveness, Some(stored)) => !stored,
                (EduByte::Scratch, Some(stored)) => stored,
                (_, None) => 0,
            };
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let mut bytes = self.lock();
        for (at, &value) in byte_offsets(offset).zip(data) {
            // Outside the BAR the write is dropped.
            let Some(at) = at else { continue };
            if matches!(classify(at), EduByte::Id(_)) {
                continue;
            }
            if let Some(stored) = bytes.get_mut(at) {
                *stored = value;
            }
        }
    }

    fn reset(&self) {
        self.lock().fill(0);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalogue::tests::read_u32;
    use crate::catalogue::EDU_BAR0_SIZE;

    #[test]
    fn edu_id_register_reads_the_magic_and_ignores_writes() {
        let edu = EduPlusRegisters::new(EDU_BAR0_SIZE);
        assert_eq!(read_u32(&edu, EDU_REG_ID), 0x0100_00ed);
        edu.write(EDU_REG_ID, &0xdead_beef_u32.to_le_bytes());
        assert_eq!(read_u32(&edu, EDU_REG_ID), EDU_ID_MAGIC);
        let mut byte = [0];
        edu.read(EDU_REG_ID, &mut byte);
        assert_eq!(byte, [0xed]);
    }

    #[test]
    fn edu_liveness_register_reads_back_the_inverse() {
        let edu = EduPlusRegisters::new(EDU_BAR0_SIZE);
        assert_eq!(read_u32(&edu, EDU_REG_LIVENESS), 0xffff_ffff);
        edu.write(EDU_REG_LIVENESS, &0x1234_5678_u32.to_le_bytes());
        assert_eq!(read_u32(&edu, EDU_REG_LIVENESS), !0x1234_5678);
        // An 8-byte read at 0 sees both registers.
        let mut data = [0; 8];
        edu.read(0, &mut data);
        assert_eq!(u64::from_le_bytes(data), (u64::from(!0x1234_5678_u32) << 32) | 0x0100_00ed);
    }

    #[test]
    fn edu_other_offsets_are_scratch_storage_and_reset_clears_them() {
        let edu = EduPlusRegisters::new(EDU_BAR0_SIZE);
        edu.write(0x100, &0x0102_0304_0506_0708_u64.to_le_bytes());
        edu.write(EDU_BAR0_SIZE - 2, &[0xaa, 0xbb]);
        let mut data = [0; 8];
        edu.read(0x100, &mut data);
        assert_eq!(u64::from_le_bytes(data), 0x0102_0304_0506_0708);
        edu.write(EDU_REG_LIVENESS, &[1, 2, 3, 4]);
        edu.reset();
        edu.read(0x100, &mut data);
        assert_eq!(data, [0; 8]);
        assert_eq!(read_u32(&edu, EDU_REG_LIVENESS), 0xffff_ffff);
        assert_eq!(read_u32(&edu, EDU_REG_ID), EDU_ID_MAGIC);
    }

    #[test]
    fn edu_accesses_past_the_bar_read_zero_and_do_not_panic() {
        let edu = EduPlusRegisters::new(0x10);
        edu.write(0xe, &[1, 2, 3, 4]);
        let mut data = [0xff; 4];
        edu.read(0xe, &mut data);
        assert_eq!(data, [1, 2, 0, 0]);
        edu.read(u64::MAX - 1, &mut data);
        assert_eq!(data, [0; 4]);
    }

    #[test]
    fn edu_registers_are_shared_safely_between_threads() {
        let edu = Arc::new(EduPlusRegisters::new(EDU_BAR0_SIZE));
        let threads: Vec<_> = (0..4_u64)
            .map(|t| {
                let edu = Arc::clone(&edu);
                std::thread::spawn(move || {
                    for i in 0..256_u64 {
                        let offset = 0x1000 * (t + 1) + 8 * i;
                        edu.write(offset, &(t * 1000 + i).to_le_bytes());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        for t in 0..4_u64 {
            for i in 0..256_u64 {
                let mut data = [0; 8];
                edu.read(0x1000 * (t + 1) + 8 * i, &mut data);
                assert_eq!(u64::from_le_bytes(data), t * 1000 + i);
            }
        }
    }
}
