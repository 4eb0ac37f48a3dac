//! edu's DMA engine: one thread per attached register file that moves the bytes of each started
//! transfer, then completes it.
//!
//! QEMU arms a timer when a transfer starts and copies when it fires; a driver polls command
//! bit 0 or waits for interrupt 0x100. Deviation: the engine copies as soon as it wakes, there
//! being no guest clock to time it by. It runs on a thread of its own rather than inside the
//! command write because that write may be served
//! from a signal handler (the trap of a register page, which must not allocate or block on
//! foreign locks) while the device layer holds `memory_lock`: the bus transfer reaches the
//! IOMMU and process memory, and must hold none of the device's locks.
//!
//! What a transfer does, in QEMU's terms (`edu_dma_timer`):
//! - direction 0 reads `cnt` bytes from bus address `src & EDU_DMA_MASK` into the buffer at
//!   `dst - EDU_DMA_START`; direction 1 writes `cnt` bytes from the buffer at
//!   `src - EDU_DMA_START` to bus address `dst & EDU_DMA_MASK`;
//! - then command bit 0 clears and 0x100 is raised if bit 2 is set, whatever the transfer met.
//!
//! Where QEMU has no error to give, neither do we; each case is logged and the transfer still
//! completes:
//! - a buffer range outside `EDU_DMA_START..EDU_DMA_START + EDU_DMA_SIZE` moves no byte.
//!   Deviation: QEMU v9.2 logs and copies out of bounds anyway; v7.2 aborts the whole emulator;
//! - a bus address above the mask loses its high bits (QEMU: the same, with a log line);
//! - a transfer the bus refuses (COMMAND.MASTER clear, no IOMMU mappings attached, an IOMMU
//!   fault) writes nothing to memory, and a read from memory leaves zeros in the buffer range,
//!   as an unmapped bus address reads in QEMU.

use std::sync::Arc;

use crate::dma::DmaError;

use super::edu::{EduDma, EduShared, EDU_DMA_DIR_TO_RAM, EDU_DMA_MASK, EDU_DMA_RUN, EDU_DMA_SIZE, EDU_DMA_START};

/// Starts the engine of `shared`; whether it runs. A thread that cannot be created is logged:
/// started transfers then stay in flight, as with no engine.
pub(super) fn spawn(shared: &Arc<EduShared>) -> bool {
    let shared = Arc::clone(shared);
    match std::thread::Builder::new().name("edu-dma".into()).spawn(move || run(&shared)) {
        Ok(_) => true,
        Err(error) => {
            tracing::error!(%error, "cannot start edu's DMA engine; transfers will not complete");
            false
        }
    }
}

/// One transfer, resolved against the buffer and the mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    /// Direction 1: from the buffer to memory.
    pub(super) to_ram: bool,
    /// The bus address, masked.
    pub(super) bus_addr: u64,
    /// Offset of the range in the buffer.
    pub(super) at: usize,
    /// Bytes to move.
    pub(super) len: usize,
}

/// Why a transfer moves no byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OutsideBuffer;

/// Resolves `dma` (QEMU's `edu_check_range` and `edu_clamp_addr`): the buffer range must lie
/// inside the buffer without overflowing; the bus address keeps the bits of the mask.
pub(super) fn plan(dma: &EduDma) -> Result<Plan, OutsideBuffer> {
    let to_ram = dma.cmd & EDU_DMA_DIR_TO_RAM != 0;
    let (buffer_addr, bus_raw) = if to_ram { (dma.src, dma.dst) } else { (dma.dst, dma.src) };
    let end = EDU_DMA_START + EDU_DMA_SIZE as u64;
    let at = buffer_addr.checked_sub(EDU_DMA_START).ok_or(OutsideBuffer)?;
    match buffer_addr.checked_add(dma.cnt) {
        Some(last) if last <= end => {}
        _ => return Err(OutsideBuffer),
    }
    let bus_addr = bus_raw & EDU_DMA_MASK;
    if bus_addr != bus_raw {
        tracing::warn!(addr = format_args!("{bus_raw:#x}"), "edu: DMA address beyond dma_mask, high bits dropped");
    }
    // Both are at most EDU_DMA_SIZE here.
    Ok(Plan { to_ram, bus_addr, at: at as usize, len: dma.cnt as usize })
}

/// The engine's loop: wait for a started transfer, move it with the state unlocked, complete
/// it; stop when the registers are dropped.
fn run(shared: &EduShared) {
    let mut bytes = vec![0_u8; EDU_DMA_SIZE];
    loop {
        // 1. Wait for a transfer in flight. Its registers cannot change while bit 0 is set, and
        //    only this thread clears it, so the snapshot stays the transfer's.
        let mut state = shared.lock();
        while !state.closed && state.dma.cmd & EDU_DMA_RUN == 0 {
            state = shared.kick.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if state.closed {
            return;
        }
        let dma = state.dma;
        let bus = state.bus.clone();
        let plan = match plan(&dma) {
            Ok(plan) => plan,
            Err(OutsideBuffer) => {
                tracing::warn!(?dma, "edu: DMA range outside the 4 KiB buffer; no byte moves");
                state.complete_dma();
                continue;
            }
        };
        let range = plan.at..plan.at + plan.len;
        let chunk = &mut bytes[..plan.len];
        if plan.to_ram {
            chunk.copy_from_slice(&state.buffer[range.clone()]);
        }
        // 2. Move the bytes with no lock of the device held.
        drop(state);
        let moved = match (&bus, plan.len) {
            (_, 0) => Ok(()),
            (None, _) => Err(DmaError::NoPort),
            (Some(bus), _) if plan.to_ram => bus.write(plan.bus_addr, chunk),
            (Some(bus), _) => bus.read(plan.bus_addr, chunk),
        };
        if let Err(error) = moved {
            tracing::warn!(?dma, %error, "edu: DMA transfer failed; completing it anyway");
            if !plan.to_ram {
                chunk.fill(0);
            }
        }
        // 3. Land a read in the buffer and complete, under the lock again.
        let mut state = shared.lock();
        if !plan.to_ram {
            state.buffer[range].copy_from_slice(chunk);
        }
        state.complete_dma();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dma(src: u64, dst: u64, cnt: u64, to_ram: bool) -> EduDma {
        EduDma { src, dst, cnt, cmd: EDU_DMA_RUN | if to_ram { EDU_DMA_DIR_TO_RAM } else { 0 } }
    }

    #[test]
    fn a_plan_takes_the_buffer_side_by_direction_and_masks_the_bus_side() {
        let plan_in = plan(&dma(0x1234_5000, 0x4_0010, 16, false)).unwrap();
        assert_eq!(plan_in, Plan { to_ram: false, bus_addr: 0x0234_5000, at: 0x10, len: 16 });
        let plan_out = plan(&dma(0x4_0000, 0x2000, 4096, true)).unwrap();
        assert_eq!(plan_out, Plan { to_ram: true, bus_addr: 0x2000, at: 0, len: 4096 });
        assert_eq!(plan(&dma(0x2000, 0x4_1000, 0, false)).unwrap().len, 0, "an empty range at the end is valid");
    }

    #[test]
    fn a_range_outside_the_buffer_or_overflowing_moves_nothing() {
        assert_eq!(plan(&dma(0x2000, 0x3_ffff, 1, false)), Err(OutsideBuffer));
        assert_eq!(plan(&dma(0x4_0001, 0x2000, 4096, true)), Err(OutsideBuffer));
        assert_eq!(plan(&dma(0x2000, 0x4_0000, u64::MAX, false)), Err(OutsideBuffer));
    }
}
