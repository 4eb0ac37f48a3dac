use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use rustix::io::Errno;

use super::*;
use crate::catalogue;
use crate::spec::NUM_BARS;

fn bdf() -> Bdf {
    Bdf::new(0, 0, 3, 0).unwrap()
}

fn edu_plus() -> PciFunction {
    PciFunction::new(bdf(), catalogue::edu_plus()).unwrap()
}

fn read16(function: &PciFunction, offset: u64) -> u16 {
    let mut data = [0; 2];
    function.config_read(offset, &mut data).unwrap();
    u16::from_le_bytes(data)
}

fn read32(function: &PciFunction, offset: u64) -> u32 {
    let mut data = [0; 4];
    function.config_read(offset, &mut data).unwrap();
    u32::from_le_bytes(data)
}

fn write16(function: &mut PciFunction, offset: u64, value: u16) -> ConfigWriteEffect {
    function.config_write(offset, &value.to_le_bytes()).unwrap()
}

fn write32(function: &mut PciFunction, offset: u64, value: u32) -> ConfigWriteEffect {
    function.config_write(offset, &value.to_le_bytes()).unwrap()
}

/// Writes all-ones to a BAR register and returns what it reads back.
fn probe(function: &mut PciFunction, offset: u64) -> u32 {
    write32(function, offset, u32::MAX);
    read32(function, offset)
}

/// A register BAR that counts its resets.
#[derive(Debug, Default)]
struct CountingBar {
    resets: AtomicUsize,
}

impl RegisterBar for CountingBar {
    fn read(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&self, _offset: u64, _data: &[u8]) {}
    fn reset(&self) {
        self.resets.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn identity_registers_read_as_the_spec_says() {
    let function = edu_plus();
    assert_eq!(read16(&function, regs::VENDOR_ID), 0x1234);
    assert_eq!(read16(&function, regs::DEVICE_ID), 0x11e8);
    assert_eq!(read32(&function, regs::REVISION_ID), 0x00ff_0010);
    let mut header = [0xff];
    function.config_read(regs::HEADER_TYPE, &mut header).unwrap();
    assert_eq!(header, [0]);
    assert_eq!(read16(&function, regs::STATUS), regs::STATUS_CAP_LIST);
    assert_eq!(read32(&function, regs::ROM_ADDRESS), 0);
}

#[test]
fn identity_registers_ignore_writes() {
    let mut function = edu_plus();
    write32(&mut function, regs::VENDOR_ID, 0);
    write32(&mut function, regs::REVISION_ID, 0);
    write16(&mut function, regs::STATUS, 0);
    write32(&mut function, regs::ROM_ADDRESS, u32::MAX);
    assert_eq!(read32(&function, regs::VENDOR_ID), 0x11e8_1234);
    assert_eq!(read32(&function, regs::REVISION_ID), 0x00ff_0010);
    assert_eq!(read16(&function, regs::STATUS), regs::STATUS_CAP_LIST);
    assert_eq!(read32(&function, regs::ROM_ADDRESS), 0);
}

#[test]
fn capability_list_walks_pm_then_pci_express() {
    let function = edu_plus();
    let mut pointer = [0];
    function.config_read(regs::CAPABILITY_LIST, &mut pointer).unwrap();
    assert_eq!(u64::from(pointer[0]), regs::PM_CAP);
    // PM: id 0x01, next 0x50; PMC version 3 with D1 and D2.
    assert_eq!(read16(&function, regs::PM_CAP), 0x5001);
    assert_eq!(read16(&function, regs::PM_PMC), 0x0603);
    // PCI Express: id 0x10, end of list; version 2 endpoint; FLR capable.
    assert_eq!(read16(&function, regs::EXP_CAP), 0x0010);
    assert_eq!(read16(&function, regs::EXP_FLAGS) & 0xf, 2);
    assert_eq!(read16(&function, regs::EXP_FLAGS) & regs::EXP_FLAGS_TYPE_MASK, 0);
    assert_ne!(read32(&function, regs::EXP_DEVCAP) & regs::EXP_DEVCAP_FLR, 0);
    // No extended capabilities.
    assert_eq!(read32(&function, 0x100), 0);
}

#[test]
fn a_new_function_has_memory_disabled_and_is_in_d0() {
    let function = edu_plus();
    assert_eq!(function.command(), 0);
    assert_eq!(function.power_state(), PowerState::D0);
    assert!(!function.memory_enabled());
    assert_eq!(function.bdf(), bdf());
    assert_eq!(function.spec().name, "edu-plus");
}

#[test]
fn command_keeps_only_its_writable_bits() {
    let mut function = edu_plus();
    write16(&mut function, regs::COMMAND, 0xffff);
    assert_eq!(function.command(), 0x0407);
    write16(&mut function, regs::COMMAND, regs::COMMAND_MEMORY | 0x0100);
    assert_eq!(function.command(), regs::COMMAND_MEMORY);
    // A byte write to the high half reaches INTX_DISABLE only.
    function.config_write(regs::COMMAND + 1, &[0xff]).unwrap();
    assert_eq!(function.command(), regs::COMMAND_MEMORY | regs::COMMAND_INTX_DISABLE);
}

#[test]
fn bar_probing_returns_the_size_mask_of_a_32bit_register_bar() {
    let mut function = edu_plus();
    // BAR0: 1 MiB, 32-bit, non-prefetchable.
    assert_eq!(read32(&function, regs::base_address(0)), 0);
    assert_eq!(probe(&mut function, regs::base_address(0)), 0xfff0_0000);
}

#[test]
fn bar_probing_returns_both_halves_of_a_64bit_prefetchable_bar() {
    let mut function = edu_plus();
    // BAR1: 64 MiB, 64-bit (type 0b10), prefetchable: flags 0xc.
    assert_eq!(read32(&function, regs::base_address(1)), 0xc);
    assert_eq!(probe(&mut function, regs::base_address(1)), 0xfc00_000c);
    assert_eq!(probe(&mut function, regs::base_address(2)), 0xffff_ffff);
}

#[test]
fn bar_probing_of_a_bar_above_4gib_puts_the_size_in_the_upper_half() {
    let mut spec = catalogue::multi_bar();
    spec.bars[4] = Some(BarSpec::ram(16 << 30).with_64bit());
    let mut function = PciFunction::new(bdf(), spec).unwrap();
    assert_eq!(probe(&mut function, regs::base_address(4)), 0x4);
    assert_eq!(probe(&mut function, regs::base_address(5)), 0xffff_fffc);
}

#[test]
fn bar_probing_reports_each_multi_bar_size() {
    let mut function = PciFunction::new(bdf(), catalogue::multi_bar()).unwrap();
    assert_eq!(probe(&mut function, regs::base_address(0)), 0xffff_c000);
    assert_eq!(probe(&mut function, regs::base_address(1)), 0xffff_f000);
    assert_eq!(probe(&mut function, regs::base_address(2)), 0xffe0_0004);
    assert_eq!(probe(&mut function, regs::base_address(3)), 0xffff_ffff);
    assert_eq!(probe(&mut function, regs::base_address(4)), 0xfe00_000c);
    assert_eq!(probe(&mut function, regs::base_address(5)), 0xffff_ffff);
}

#[test]
fn unused_bar_slots_read_zero_and_ignore_writes() {
    let mut function = edu_plus();
    for index in 3..NUM_BARS {
        assert_eq!(probe(&mut function, regs::base_address(index)), 0, "BAR{index}");
        assert!(function.bar(index).is_none());
        assert_eq!(function.bar_address(index), None);
    }
    assert!(function.bar(NUM_BARS).is_none());
}

#[test]
fn bar_addresses_are_stored_aligned_to_the_bar_size() {
    let mut function = edu_plus();
    write32(&mut function, regs::base_address(0), 0xfe01_2345);
    assert_eq!(read32(&function, regs::base_address(0)), 0xfe00_0000);
    assert_eq!(function.bar_address(0), Some(0xfe00_0000));
    write32(&mut function, regs::base_address(1), 0x1234_5678);
    write32(&mut function, regs::base_address(2), 0x0000_0080);
    assert_eq!(function.bar_address(1), Some(0x0000_0080_1000_0000));
}

#[test]
fn memory_enabled_needs_memory_bit_and_a_state_above_d3hot() {
    let mut function = edu_plus();
    for state in [PowerState::D0, PowerState::D1, PowerState::D2, PowerState::D3Hot] {
        for memory in [false, true] {
            write16(&mut function, regs::COMMAND, if memory { regs::COMMAND_MEMORY } else { 0 });
            function.set_power_state(state);
            assert_eq!(function.power_state(), state);
            let expected = memory && state != PowerState::D3Hot;
            assert_eq!(function.memory_enabled(), expected, "{state} memory={memory}");
        }
    }
}

#[test]
fn pmcsr_writes_move_between_power_states_and_report_it() {
    let mut function = edu_plus();
    let effect = write16(&mut function, regs::PM_CTRL, PowerState::D3Hot.pmcsr_bits());
    // D0 -> D3hot.
    assert_eq!(effect.power, Some((PowerState::D0, PowerState::D3Hot)));
    assert!(effect.revokes());
    assert_eq!(function.power_state(), PowerState::D3Hot);
    // Only the state bits are writable; No_Soft_Reset stays set.
    assert_eq!(read16(&function, regs::PM_CTRL), 0x000b);

    let effect = write16(&mut function, regs::PM_CTRL, PowerState::D0.pmcsr_bits());
    // D3hot -> D0.
    assert_eq!(effect.power, Some((PowerState::D3Hot, PowerState::D0)));
    assert!(!effect.revokes());

    let effect = write16(&mut function, regs::PM_CTRL, 0xfffe);
    // D0 -> D2: other bits are ignored; D2 does not revoke.
    assert_eq!(effect.power, Some((PowerState::D0, PowerState::D2)));
    assert!(!effect.revokes());

    let effect = write16(&mut function, regs::PM_CTRL, PowerState::D2.pmcsr_bits());
    // Same state: no change reported.
    assert_eq!(effect, ConfigWriteEffect::default());
}

#[test]
fn command_writes_report_memory_disable_and_enable() {
    let mut function = edu_plus();
    let effect = write16(&mut function, regs::COMMAND, regs::COMMAND_MEMORY);
    assert_eq!(effect, ConfigWriteEffect { memory_enable: true, ..Default::default() });
    let effect = write16(&mut function, regs::COMMAND, regs::COMMAND_MEMORY | regs::COMMAND_MASTER);
    assert_eq!(effect, ConfigWriteEffect::default());
    let effect = write16(&mut function, regs::COMMAND, regs::COMMAND_MASTER);
    assert_eq!(effect, ConfigWriteEffect { memory_disable: true, ..Default::default() });
    assert!(effect.revokes());
}

#[test]
fn classify_sees_a_dword_write_spanning_command_and_status() {
    let mut function = edu_plus();
    write16(&mut function, regs::COMMAND, regs::COMMAND_MEMORY);
    // COMMAND = 0 in the low half, STATUS = 0xffff in the high half.
    let data = 0xffff_0000_u32.to_le_bytes();
    let effect = function.classify_config_write(regs::COMMAND, &data).unwrap();
    assert_eq!(effect, ConfigWriteEffect { memory_disable: true, ..Default::default() });
    // Classification is a pure look-ahead.
    assert_eq!(function.command(), regs::COMMAND_MEMORY);
    assert_eq!(function.config_write(regs::COMMAND, &data).unwrap(), effect);
    assert_eq!(function.command(), 0);
    assert_eq!(read16(&function, regs::STATUS), regs::STATUS_CAP_LIST);
}

#[test]
fn classify_sees_an_unaligned_write_reaching_command_from_below() {
    let mut function = edu_plus();
    write16(&mut function, regs::COMMAND, regs::COMMAND_MEMORY);
    // Bytes 0x02..0x06: device ID (read-only) then COMMAND = 0.
    let effect = function.classify_config_write(regs::DEVICE_ID, &[0, 0, 0, 0]).unwrap();
    assert!(effect.memory_disable);
    // A byte at 0x05 alone does not touch MEMORY (bit 1 lives in byte 0x04).
    let effect = function.classify_config_write(regs::COMMAND + 1, &[0]).unwrap();
    assert_eq!(effect, ConfigWriteEffect::default());
}

#[test]
fn devctl_flr_resets_the_function_and_keeps_command_and_bars() {
    let counting = Arc::new(CountingBar::default());
    let mut spec = catalogue::edu_plus();
    spec.bars[0] = Some(BarSpec::registers(1 << 20, counting.clone()));
    let mut function = PciFunction::new(bdf(), spec).unwrap();
    write16(&mut function, regs::COMMAND, regs::COMMAND_MEMORY | regs::COMMAND_MASTER);
    write32(&mut function, regs::base_address(0), 0xfe00_0000);
    write32(&mut function, regs::base_address(2), 0x1);
    function.set_power_state(PowerState::D2);

    let flr = regs::EXP_DEVCTL_BCR_FLR.to_le_bytes();
    let predicted = function.classify_config_write(regs::EXP_DEVCTL, &flr).unwrap();
    assert_eq!(predicted, ConfigWriteEffect { flr: true, ..Default::default() });
    assert!(predicted.revokes());
    assert_eq!(counting.resets.load(Ordering::SeqCst), 0);

    assert_eq!(function.config_write(regs::EXP_DEVCTL, &flr).unwrap(), predicted);
    assert_eq!(counting.resets.load(Ordering::SeqCst), 1);
    assert_eq!(function.command(), regs::COMMAND_MEMORY | regs::COMMAND_MASTER);
    assert_eq!(function.bar_address(0), Some(0xfe00_0000));
    assert_eq!(function.bar_address(1), Some(1 << 32));
    assert_eq!(function.power_state(), PowerState::D0);
    assert!(function.memory_enabled());
    assert_eq!(read16(&function, regs::EXP_DEVCTL), 0);
}

#[test]
fn a_byte_write_of_the_flr_bit_also_resets() {
    let mut function = edu_plus();
    let edu = function.register_bar(0).unwrap().clone();
    edu.write(catalogue::EDU_REG_LIVENESS, &[0x55; 4]);
    let effect = function.config_write(regs::EXP_DEVCTL + 1, &[0x80]).unwrap();
    assert!(effect.flr);
    // The edu registers were reset: liveness reads !0 again.
    let mut data = [0; 4];
    edu.read(catalogue::EDU_REG_LIVENESS, &mut data);
    assert_eq!(data, [0xff; 4]);
    // Other DEVCTL bits neither reset nor stick.
    let effect = function.config_write(regs::EXP_DEVCTL, &0x7fff_u16.to_le_bytes()).unwrap();
    assert!(!effect.flr);
    assert_eq!(read16(&function, regs::EXP_DEVCTL), 0);
}

#[test]
fn reset_function_from_d3hot_ends_in_d0_with_memory_still_enabled() {
    let mut function = edu_plus();
    write16(&mut function, regs::COMMAND, regs::COMMAND_MEMORY);
    function.set_power_state(PowerState::D3Hot);
    assert!(!function.memory_enabled());
    function.reset_function();
    assert_eq!(function.power_state(), PowerState::D0);
    assert!(function.memory_enabled());
    assert_eq!(read16(&function, regs::PM_CTRL), regs::PM_CTRL_NO_SOFT_RESET);
}

#[test]
fn register_bar_is_only_given_for_register_bars() {
    let function = edu_plus();
    assert!(function.register_bar(0).is_some());
    assert!(function.register_bar(1).is_none());
    assert!(function.register_bar(2).is_none());
    assert!(function.register_bar(7).is_none());
}

#[test]
fn accesses_of_bad_width_or_past_the_space_are_einval() {
    let mut function = edu_plus();
    for len in [0, 3, 5, 8] {
        let mut data = vec![0; len];
        let error = function.config_read(0, &mut data).unwrap_err();
        assert_eq!(error, PciError::ConfigAccessWidth { len });
        assert_eq!(error.errno(), Errno::INVAL);
        assert!(function.config_write(0, &data).is_err());
        assert!(function.classify_config_write(0, &data).is_err());
    }
    for (offset, len) in [(0x1000, 1), (0xfff, 2), (0xffe, 4), (u64::MAX, 4), (u64::MAX - 1, 2)] {
        let mut data = vec![0; len];
        let error = function.config_read(offset, &mut data).unwrap_err();
        assert_eq!(error, PciError::ConfigAccessOutOfRange { offset, len });
        assert_eq!(error.errno(), Errno::INVAL);
        assert_eq!(function.config_write(offset, &data).unwrap_err().errno(), Errno::INVAL);
    }
    // The last bytes are reachable.
    let mut data = [0xff; 4];
    function.config_read(0xffc, &mut data).unwrap();
    assert_eq!(data, [0; 4]);
    function.config_read(0xfff, &mut data[..1]).unwrap();
}

#[test]
fn an_invalid_spec_is_refused_at_creation() {
    let error = PciFunction::new(bdf(), catalogue::tiny_odd()).unwrap_err();
    assert_eq!(error, PciError::BarSizeNotPowerOfTwo { index: 2, size: 0x3000 });
}

#[test]
fn a_function_can_be_shared_between_threads_behind_a_lock() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PciFunction>();
}

/// One config write of a proptest sequence: offsets run a little past the space and widths
/// include invalid ones, so the error paths are exercised too.
fn arbitrary_write() -> impl Strategy<Value = (u64, Vec<u8>)> {
    let offset = prop_oneof![0_u64..0x100, 0_u64..0x1010];
    let len = prop_oneof![Just(1_usize), Just(2), Just(4), 0_usize..9];
    (offset, len).prop_flat_map(|(offset, len)| (Just(offset), proptest::collection::vec(any::<u8>(), len)))
}

proptest! {
    #[test]
    fn arbitrary_config_writes_never_panic_or_change_read_only_bytes(
        writes in proptest::collection::vec(arbitrary_write(), 1..64),
    ) {
        let mut function = edu_plus();
        let pristine = function.config.clone();
        for (offset, data) in writes {
            let predicted = function.classify_config_write(offset, &data);
            let memory_before = function.command() & regs::COMMAND_MEMORY != 0;
            let applied = function.config_write(offset, &data);
            // The look-ahead always agrees with the write, errors included.
            prop_assert_eq!(&predicted, &applied);
            if let Ok(effect) = applied {
                let memory_after = function.command() & regs::COMMAND_MEMORY != 0;
                prop_assert_eq!(effect.memory_disable, memory_before && !memory_after);
                prop_assert_eq!(effect.memory_enable, !memory_before && memory_after);
            }
            // Every byte without a writable bit keeps its reset value.
            for at in 0..regs::CFG_SPACE_EXP_SIZE as usize {
                if pristine.is_read_only(at) {
                    prop_assert_eq!(function.config.byte(at), pristine.byte(at), "byte {:#x}", at);
                }
            }
            prop_assert_eq!(read16(&function, regs::VENDOR_ID), 0x1234);
            prop_assert_eq!(read16(&function, regs::DEVICE_ID), 0x11e8);
            prop_assert_eq!(read32(&function, regs::REVISION_ID), 0x00ff_0010);
            prop_assert_eq!(read16(&function, regs::STATUS), regs::STATUS_CAP_LIST);
            prop_assert_eq!(read16(&function, regs::EXP_DEVCTL), 0);
            prop_assert_eq!(function.command() & !0x0407, 0);
            // BAR flag bits never change: BAR0 32-bit, BAR1 64-bit prefetchable.
            prop_assert_eq!(read32(&function, regs::base_address(0)) & 0xf, 0);
            prop_assert_eq!(read32(&function, regs::base_address(1)) & 0xf, 0xc);
        }
    }
}
