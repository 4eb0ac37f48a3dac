//! How long a cut-off and a restore of one frame take, for a 64 KiB and a
//! 2 MiB frame (mean over many rounds, each frame first written whole so
//! every page is in the page cache).
//!
//! `cargo run --release -p mm --example frame_cut`

use std::time::{Duration, Instant};

use mm::PhysMemory;
use page::PhysAddr;

fn main() -> Result<(), mm::MmError> {
    for frame_size in [64u64 << 10, 2 << 20] {
        let mem = PhysMemory::with_frames("frame-cut-bench", PhysAddr(0), frame_size, frame_size)?;
        mem.write(PhysAddr(0), &vec![0x5a; frame_size as usize])?;
        let rounds = 200u32;
        let (mut cut, mut restore) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            let t = Instant::now();
            mem.cut_off(0)?;
            cut += t.elapsed();
            let t = Instant::now();
            mem.restore(0)?;
            restore += t.elapsed();
        }
        println!(
            "frame {:>4} KiB: cut_off {:>8.1} us, restore {:>8.1} us (mean of {rounds})",
            frame_size >> 10,
            cut.as_secs_f64() * 1e6 / f64::from(rounds),
            restore.as_secs_f64() * 1e6 / f64::from(rounds)
        );
    }
    Ok(())
}
