//! How an access of any width and alignment reaches a device's register handlers.
//!
//! Devices modelled on QEMU answer an access the way QEMU's memory core delivers it, so widths
//! and alignments a register set does not accept behave as they do there. A BAR is a list of
//! register blocks; bytes outside every block are a hole. An access is served piece by piece:
//! 1. each piece stops at the end of the block (or hole) it starts in, is no wider than the
//!    block's largest valid width nor than the alignment of its offset within the block, and is
//!    a power of two wide;
//! 2. a piece whose width the block does not accept reads zero and drops a write;
//! 3. an accepted piece narrower than the handler's smallest width is widened: the handler runs
//!    at the same offset with its own width and the value is truncated (a write passes the
//!    zero-extended value); a piece wider than the handler's largest width is split into
//!    handler-wide calls, lower offsets holding lower bits (little-endian);
//! 4. a hole reads all-ones and ignores writes;
//! 5. past the end of the BAR (the caller broke the [`crate::RegisterBar`] contract) reads
//!    zero and drops writes.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::spec::RegisterBar;

/// Widths a register block takes, in bytes, as QEMU describes them per region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AccessRules {
    /// Smallest width an access may have (narrower pieces are refused).
    pub(crate) valid_min: u64,
    /// Largest width an access may have (wider accesses are cut into pieces first).
    pub(crate) valid_max: u64,
    /// Smallest width the handler is called with.
    pub(crate) impl_min: u64,
    /// Largest width the handler is called with.
    pub(crate) impl_max: u64,
}

/// A block of registers at `start..start + len` within the BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    /// Byte offset of the block within the BAR.
    pub(crate) start: u64,
    /// Length of the block in bytes.
    pub(crate) len: u64,
    /// Widths the block takes.
    pub(crate) rules: AccessRules,
}

/// A register BAR as a list of blocks plus the handlers behind them.
pub(crate) trait BlockMap {
    /// Length of the BAR in bytes.
    fn bar_len(&self) -> u64;
    /// The blocks, in ascending, non-overlapping order.
    fn blocks(&self) -> &'static [Block];
    /// Reads `size` bytes at `offset` within block `block`; `size` is within the block's handler
    /// widths. Bits above `size` bytes are discarded by the caller.
    fn block_read(&mut self, block: usize, offset: u64, size: u64) -> u64;
    /// Writes the low `size` bytes of `value` at `offset` within block `block`.
    fn block_write(&mut self, block: usize, offset: u64, size: u64, value: u64);
}

/// A register BAR whose whole state is one [`BlockMap`] behind one mutex. Such a device is a
/// [`RegisterBar`]: each access holds the mutex throughout, so accesses are atomic. Its reset
/// is the trait's default (nothing changes), as for the QEMU devices that have no reset handler.
pub(crate) trait LockedBlockMap {
    /// The register state.
    type Map: BlockMap;

    /// The mutex around the state.
    fn map(&self) -> &Mutex<Self::Map>;

    /// Locks the state. Each access leaves it consistent before it could panic, so a poisoned
    /// lock still guards valid registers.
    fn lock_map(&self) -> MutexGuard<'_, Self::Map> {
        self.map().lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: LockedBlockMap + Send + Sync + fmt::Debug> RegisterBar for T {
    fn read(&self, offset: u64, data: &mut [u8]) {
        read(&mut *self.lock_map(), offset, data);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        write(&mut *self.lock_map(), offset, data);
    }
}

/// Where a piece of an access lands.
enum Target {
    /// Block `index`, at `offset` within it.
    Block { index: usize, offset: u64 },
    /// A hole; nothing answers.
    Hole,
}

/// The target of byte `pos` and how many bytes from `pos` on it covers.
fn locate(blocks: &[Block], bar_len: u64, pos: u64) -> (Target, u64) {
    for (index, block) in blocks.iter().enumerate() {
        if pos < block.start {
            return (Target::Hole, block.start - pos);
        }
        let offset = pos - block.start;
        if offset < block.len {
            return (Target::Block { index, offset }, block.len - offset);
        }
    }
    (Target::Hole, bar_len - pos)
}

/// Width of the piece served at `offset` within a block, out of `remaining` bytes.
fn piece_width(remaining: u64, offset: u64, rules: &AccessRules) -> u64 {
    let mut max = rules.valid_max;
    // The lowest set bit of the offset is the widest naturally aligned access there.
    if offset != 0 {
        max = max.min(offset & offset.wrapping_neg());
    }
    let width = remaining.min(max).max(1);
    // Round down to a power of two.
    1 << (63 - width.leading_zeros())
}

/// Mask of the low `size` bytes.
fn byte_mask(size: u64) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1 << (8 * size)) - 1
    }
}

/// Handler width for a piece of `width` bytes.
fn handler_width(width: u64, rules: &AccessRules) -> u64 {
    width.min(rules.impl_max).max(rules.impl_min)
}

fn accepts(width: u64, rules: &AccessRules) -> bool {
    (rules.valid_min..=rules.valid_max).contains(&width)
}

/// One piece of an access: where it starts in the caller's buffer, how wide it is and what it hits.
struct Piece {
    at: usize,
    width: u64,
    target: Target,
}

/// The pieces of an access of `len` bytes at `offset`, in order; they stop at the end of the BAR
/// (or of the address space), so the bytes after the last piece are outside the BAR. Computed
/// on the fly, without allocating, since an access may be served from a signal handler.
struct Pieces {
    blocks: &'static [Block],
    bar_len: u64,
    offset: u64,
    len: usize,
    at: usize,
}

impl Iterator for Pieces {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        if self.at >= self.len {
            return None;
        }
        let pos = self.offset.checked_add(self.at as u64).filter(|pos| *pos < self.bar_len)?;
        let remaining = (self.len - self.at) as u64;
        let (target, covers) = locate(self.blocks, self.bar_len, pos);
        let width = match &target {
            Target::Block { index, offset } => piece_width(remaining.min(covers), *offset, &self.blocks[*index].rules),
            Target::Hole => remaining.min(covers),
        };
        let piece = Piece { at: self.at, width, target };
        // `width` is at most `remaining`, which came from a usize.
        self.at += width as usize;
        Some(piece)
    }
}

fn pieces<M: BlockMap + ?Sized>(map: &M, offset: u64, len: usize) -> Pieces {
    Pieces { blocks: map.blocks(), bar_len: map.bar_len(), offset, len, at: 0 }
}

/// Serves a read of `data.len()` bytes at `offset`.
pub(crate) fn read<M: BlockMap + ?Sized>(map: &mut M, offset: u64, data: &mut [u8]) {
    data.fill(0);
    for piece in pieces(map, offset, data.len()) {
        let out = &mut data[piece.at..piece.at + piece.width as usize];
        let (index, block_offset) = match piece.target {
            Target::Hole => {
                out.fill(0xff);
                continue;
            }
            Target::Block { index, offset } => (index, offset),
        };
        let rules = map.blocks()[index].rules;
        if !accepts(piece.width, &rules) {
            continue;
        }
        let size = handler_width(piece.width, &rules);
        let mut value = 0_u64;
        let mut done = 0;
        while done < piece.width {
            let part = map.block_read(index, block_offset + done, size) & byte_mask(size);
            value |= part << (8 * done);
            done += size;
        }
        out.copy_from_slice(&value.to_le_bytes()[..out.len()]);
    }
}

/// Serves a write of `data` at `offset`.
pub(crate) fn write<M: BlockMap + ?Sized>(map: &mut M, offset: u64, data: &[u8]) {
    for piece in pieces(map, offset, data.len()) {
        let Target::Block { index, offset: block_offset } = piece.target else { continue };
        let rules = map.blocks()[index].rules;
        if !accepts(piece.width, &rules) {
            continue;
        }
        let mut bytes = [0; 8];
        bytes[..piece.width as usize].copy_from_slice(&data[piece.at..piece.at + piece.width as usize]);
        let value = u64::from_le_bytes(bytes);
        let size = handler_width(piece.width, &rules);
        let mut done = 0;
        while done < piece.width {
            map.block_write(index, block_offset + done, size, (value >> (8 * done)) & byte_mask(size));
            done += size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BAR of 64 bytes: a block at 0x10..0x18 whose handler is 2 bytes wide and accepts 1..4,
    /// and one at 0x20..0x28 that only takes 4; each handler call is logged.
    struct Probe {
        calls: Vec<(usize, u64, u64, Option<u64>)>,
    }

    const RULES_BYTES: AccessRules = AccessRules { valid_min: 1, valid_max: 4, impl_min: 2, impl_max: 2 };
    const RULES_DWORD: AccessRules = AccessRules { valid_min: 4, valid_max: 4, impl_min: 1, impl_max: 4 };
    const BLOCKS: &[Block] =
        &[Block { start: 0x10, len: 8, rules: RULES_BYTES }, Block { start: 0x20, len: 8, rules: RULES_DWORD }];

    impl BlockMap for Probe {
        fn bar_len(&self) -> u64 {
            0x40
        }
        fn blocks(&self) -> &'static [Block] {
            BLOCKS
        }
        fn block_read(&mut self, block: usize, offset: u64, size: u64) -> u64 {
            self.calls.push((block, offset, size, None));
            // Each byte reads as its block offset plus 0xa0, beyond the handler width too.
            (0..8).map(|i| (0xa0 + offset + i) << (8 * i)).sum()
        }
        fn block_write(&mut self, block: usize, offset: u64, size: u64, value: u64) {
            self.calls.push((block, offset, size, Some(value)));
        }
    }

    fn probe() -> Probe {
        Probe { calls: Vec::new() }
    }

    #[test]
    fn narrow_accesses_are_widened_to_the_handler_width_at_the_same_offset() {
        let mut map = probe();
        let mut byte = [0];
        read(&mut map, 0x13, &mut byte);
        assert_eq!(map.calls, [(0, 3, 2, None)]);
        assert_eq!(byte, [0xa3]);
        write(&mut map, 0x13, &[0x5a]);
        assert_eq!(map.calls[1], (0, 3, 2, Some(0x5a)));
    }

    #[test]
    fn wide_accesses_are_split_low_offset_low_bits() {
        let mut map = probe();
        let mut data = [0; 4];
        read(&mut map, 0x14, &mut data);
        assert_eq!(map.calls, [(0, 4, 2, None), (0, 6, 2, None)]);
        assert_eq!(data, [0xa4, 0xa5, 0xa6, 0xa7]);
        write(&mut map, 0x14, &0x1122_3344_u32.to_le_bytes());
        assert_eq!(&map.calls[2..], [(0, 4, 2, Some(0x3344)), (0, 6, 2, Some(0x1122))]);
    }

    #[test]
    fn pieces_follow_alignment_and_stop_at_block_ends_where_holes_read_all_ones() {
        let mut map = probe();
        let mut data = [0; 8];
        // 0x16..0x1e: the block's last two bytes (one piece), then six bytes of hole.
        read(&mut map, 0x16, &mut data);
        assert_eq!(map.calls, [(0, 6, 2, None)]);
        assert_eq!(data, [0xa6, 0xa7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        write(&mut map, 0x0e, &[1, 2, 3, 4]);
        // Bytes 0x0e..0x10 are hole (dropped); 0x10..0x12 is one 2-byte piece.
        assert_eq!(map.calls[1..], [(0, 0, 2, Some(0x0403))]);
    }

    #[test]
    fn refused_widths_read_zero_and_drop_writes() {
        let mut map = probe();
        let mut data = [0xee; 2];
        read(&mut map, 0x20, &mut data);
        assert_eq!(data, [0, 0]);
        write(&mut map, 0x22, &[1, 2]);
        assert!(map.calls.is_empty());
        // An 8-byte access is cut into two accepted 4-byte pieces.
        let mut data = [0; 8];
        read(&mut map, 0x20, &mut data);
        assert_eq!(map.calls, [(1, 0, 4, None), (1, 4, 4, None)]);
        assert_eq!(data, [0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7]);
    }

    #[test]
    fn bytes_past_the_bar_read_zero_and_writes_there_are_dropped() {
        let mut map = probe();
        let mut data = [0xee; 4];
        read(&mut map, 0x3e, &mut data);
        assert_eq!(data, [0xff, 0xff, 0, 0]);
        read(&mut map, u64::MAX - 1, &mut data);
        assert_eq!(data, [0; 4]);
        write(&mut map, u64::MAX, &[1, 2, 3, 4]);
        assert!(map.calls.is_empty());
    }

    #[test]
    fn piece_widths_are_powers_of_two_bounded_by_alignment() {
        assert_eq!(piece_width(8, 2, &RULES_BYTES), 2);
        assert_eq!(piece_width(8, 4, &RULES_BYTES), 4);
        assert_eq!(piece_width(3, 0, &RULES_BYTES), 2);
        assert_eq!(piece_width(8, 0, &RULES_DWORD), 4);
        assert_eq!(piece_width(1, 0, &RULES_DWORD), 1);
    }
}
