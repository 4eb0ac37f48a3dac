//! Unmodified QEMU as a VFIO user: the distribution's `qemu-system-x86_64` (7.2) runs under
//! `vfio-dmabuf exec` with `-device vfio-pci,host=<BDF>` and reaches our emulated edu and
//! bochs-display through the real VFIO UAPI. The tests drive it over the qtest protocol, as a
//! guest would: config cycles through 0xcf8/0xcfc, BARs placed from 0xE0000000, loads and
//! stores at guest-physical addresses (so QEMU's own mapping of our buffers serves them),
//! COMMAND.MEMORY off and on, `system_reset` over QMP, interrupts and DMA.
//!
//! Every check runs twice: against QEMU's own model of the device (`qemu_model::…`: the ground
//! truth, and the proof that the harness itself works) and against ours (`vfio_exec::…`).
//! The expected values are QEMU's. Without QEMU installed the tests fail, naming the package
//! (`qemu-system-x86`); `.ci/run` installs it.
//!
//! The command line, as the distribution's build needs it (it has no qtest accelerator):
//! `qemu-system-x86_64 -M q35 -accel tcg -S -display none -nodefaults -qtest-log /dev/null
//! -qtest unix:SOCK -chardev socket,path=QMP,id=char0 -mon chardev=char0,mode=control
//! -device vfio-pci,host=<BDF>` (or `-device edu`), the device landing at 00:01.0.

#[path = "qemu/mod.rs"]
mod support;

use support::machine::{Backend, GuestRam};
use support::{bochs, edu};

/// Defines each test once per backend: `qemu_model::NAME` and `vfio_exec::NAME`.
macro_rules! on_both_backends {
    ($($name:ident => $check:expr;)*) => {
        /// QEMU's own device models.
        mod qemu_model {
            use super::*;
            $(#[test] fn $name() { ($check)(Backend::Qemu) })*
        }
        /// Our devices, served by `vfio-dmabuf exec` to QEMU's vfio-pci.
        mod vfio_exec {
            use super::*;
            $(#[test] fn $name() { ($check)(Backend::Vfio) })*
        }
    };
}

on_both_backends! {
    edu_identity_bar_and_id_register => edu::identity;
    edu_liveness_inverts_and_factorial_computes => edu::liveness_and_factorial;
    edu_memory_decode_off_hides_the_registers => edu::memory_decode_off_hides_the_registers;
    edu_system_reset_unassigns_the_bars_and_keeps_the_registers =>
        edu::system_reset_unassigns_the_bars_and_keeps_the_registers;
    edu_intx_follows_raise_and_acknowledge => edu::intx_follows_raise_and_acknowledge;
    edu_msi_writes_its_message_to_guest_ram => edu::msi_writes_its_message_to_guest_ram;
    edu_dma_round_trip_through_private_guest_ram =>
        |backend| edu::dma_moves_bytes_through_guest_ram(backend, GuestRam::Private);
    edu_dma_round_trip_through_a_shared_memfd_backend =>
        |backend| edu::dma_moves_bytes_through_guest_ram(backend, GuestRam::SharedMemfd);
    quit_ends_every_process_of_the_run => edu::quit_ends_every_process;
    bochs_identity_bars_and_dispi_id => bochs::identity;
    bochs_vram_is_plain_memory_at_every_width => bochs::vram_is_plain_memory;
    bochs_registers_store_and_filter => bochs::registers_store_and_filter;
    bochs_memory_decode_off_hides_both_bars => bochs::memory_decode_off_hides_both_bars;
    bochs_system_reset_unassigns_the_bars_and_keeps_vram => bochs::system_reset_unassigns_the_bars_and_keeps_vram;
}
