//! Config-space register offsets and bits, with the names of `include/uapi/linux/pci_regs.h`
//! minus its `PCI_` prefix (`PCI_COMMAND_MEMORY` is [`COMMAND_MEMORY`]).
//!
//! The capability offsets ([`PM_CAP`], [`EXP_CAP`]) are this model's layout, not PCI constants;
//! absolute register offsets inside them ([`PM_CTRL`], [`EXP_DEVCTL`]) are given so callers need
//! not add them up. [`register_by_name`] resolves the names a scenario or command line uses.

/// Size of the config space: PCI Express extended space included. Kernel:
/// `PCI_CFG_SPACE_EXP_SIZE`.
pub const CFG_SPACE_EXP_SIZE: u64 = 4096;

/// Vendor ID (16 bits, read-only).
pub const VENDOR_ID: u64 = 0x00;
/// Device ID (16 bits, read-only).
pub const DEVICE_ID: u64 = 0x02;

/// Command register (16 bits).
pub const COMMAND: u64 = 0x04;
/// COMMAND: respond to I/O space accesses.
pub const COMMAND_IO: u16 = 0x0001;
/// COMMAND: respond to memory space accesses; clearing it disables every memory BAR.
pub const COMMAND_MEMORY: u16 = 0x0002;
/// COMMAND: the function may master the bus (issue DMA).
pub const COMMAND_MASTER: u16 = 0x0004;
/// COMMAND: legacy `INTx` interrupts disabled.
pub const COMMAND_INTX_DISABLE: u16 = 0x0400;

/// Status register (16 bits).
pub const STATUS: u64 = 0x06;
/// STATUS: the function's `INTx` is asserted (read-only; set whatever COMMAND's `INTx` disable
/// says).
pub const STATUS_INTERRUPT: u16 = 0x0008;
/// STATUS: a capability list starts at [`CAPABILITY_LIST`].
pub const STATUS_CAP_LIST: u16 = 0x0010;

/// Revision ID (8 bits), followed by the 24-bit class code.
pub const REVISION_ID: u64 = 0x08;
/// Class code: programming interface byte; subclass and base class follow.
pub const CLASS_PROG: u64 = 0x09;
/// Header type (8 bits); 0 for an ordinary function.
pub const HEADER_TYPE: u64 = 0x0e;

/// BAR0 register; BAR `i` is at `BASE_ADDRESS_0 + 4 * i` (see [`base_address`]).
pub const BASE_ADDRESS_0: u64 = 0x10;
/// BAR bit 0: I/O space BAR (0 for memory).
pub const BASE_ADDRESS_SPACE_IO: u32 = 0x01;
/// BAR bits 2:1: memory BAR type field.
pub const BASE_ADDRESS_MEM_TYPE_MASK: u32 = 0x06;
/// BAR type field value of a 64-bit BAR (the next register holds the upper half).
pub const BASE_ADDRESS_MEM_TYPE_64: u32 = 0x04;
/// BAR bit 3: prefetchable.
pub const BASE_ADDRESS_MEM_PREFETCH: u32 = 0x08;
/// The address bits of a memory BAR register.
pub const BASE_ADDRESS_MEM_MASK: u32 = !0x0f;

/// Expansion ROM BAR (32 bits); this model has no ROM, so it reads 0.
pub const ROM_ADDRESS: u64 = 0x30;
/// Pointer to the first capability (8 bits).
pub const CAPABILITY_LIST: u64 = 0x34;

/// Interrupt Line (8 bits): a number for software's use only; nothing here reads it.
pub const INTERRUPT_LINE: u64 = 0x3c;
/// Interrupt Pin (8 bits, read-only): 0 for none, 1..=4 for `INTA#`..`INTD#`.
pub const INTERRUPT_PIN: u64 = 0x3d;

/// Capability ID of power management.
pub const CAP_ID_PM: u8 = 0x01;
/// Capability ID of Message Signalled Interrupts.
pub const CAP_ID_MSI: u8 = 0x05;
/// Capability ID of MSI-X.
pub const CAP_ID_MSIX: u8 = 0x11;
/// Capability ID of PCI Express.
pub const CAP_ID_EXP: u8 = 0x10;

/// Offset of the power-management capability in this model.
pub const PM_CAP: u64 = 0x40;
/// Power Management Capabilities register (PMC, 16 bits, read-only).
pub const PM_PMC: u64 = PM_CAP + 2;
/// Power Management Control/Status register (PMCSR, 16 bits). Kernel: `PCI_PM_CTRL`.
pub const PM_CTRL: u64 = PM_CAP + 4;
/// PMCSR bits 1:0: the power state (0 = D0 .. 3 = D3hot).
pub const PM_CTRL_STATE_MASK: u16 = 0x0003;
/// PMCSR bit 3: leaving D3hot does not reset the function.
pub const PM_CTRL_NO_SOFT_RESET: u16 = 0x0008;
/// PMC: version 3 of the PM specification (bits 2:0).
pub const PM_CAP_VER_3: u16 = 0x0003;
/// PMC: D1 supported.
pub const PM_CAP_D1: u16 = 0x0200;
/// PMC: D2 supported.
pub const PM_CAP_D2: u16 = 0x0400;

/// Offset of the PCI Express capability in this model.
pub const EXP_CAP: u64 = 0x50;
/// PCI Express Capabilities register (16 bits, read-only). Kernel: `PCI_EXP_FLAGS`.
pub const EXP_FLAGS: u64 = EXP_CAP + 2;
/// `EXP_FLAGS`: capability version 2.
pub const EXP_FLAGS_VERS_2: u16 = 0x0002;
/// `EXP_FLAGS` bits 7:4: device/port type (0 = PCI Express endpoint).
pub const EXP_FLAGS_TYPE_MASK: u16 = 0x00f0;
/// Device Capabilities (32 bits, read-only).
pub const EXP_DEVCAP: u64 = EXP_CAP + 4;
/// `EXP_DEVCAP`: the function supports function-level reset.
pub const EXP_DEVCAP_FLR: u32 = 1 << 28;
/// Device Control (16 bits).
pub const EXP_DEVCTL: u64 = EXP_CAP + 8;
/// `EXP_DEVCTL`: Initiate Function-Level Reset; writing 1 resets the function, it reads 0.
pub const EXP_DEVCTL_BCR_FLR: u16 = 0x8000;
/// Device Status (16 bits).
pub const EXP_DEVSTA: u64 = EXP_CAP + 10;

/// Offset of the MSI capability in this model, when the device has one.
pub const MSI_CAP: u64 = 0x90;
/// MSI Message Control (16 bits), relative to the MSI capability. Kernel: `PCI_MSI_FLAGS`.
pub const MSI_FLAGS: u64 = 2;
/// MSI Message Control: MSI enable.
pub const MSI_FLAGS_ENABLE: u16 = 0x0001;
/// MSI Message Control bits 3:1: log2 of the vectors the function can send (Multiple Message
/// Capable). Kernel: `PCI_MSI_FLAGS_QMASK`.
pub const MSI_FLAGS_QMASK: u16 = 0x000e;
/// MSI Message Control bits 6:4: log2 of the vectors software enabled (Multiple Message Enable).
/// Kernel: `PCI_MSI_FLAGS_QSIZE`.
pub const MSI_FLAGS_QSIZE: u16 = 0x0070;
/// MSI Message Control: 64-bit message address.
pub const MSI_FLAGS_64BIT: u16 = 0x0080;
/// MSI Message Control: per-vector masking.
pub const MSI_FLAGS_MASKBIT: u16 = 0x0100;
/// MSI Message Address (low 32 bits), relative to the MSI capability.
pub const MSI_ADDRESS_LO: u64 = 4;

/// Offset of the MSI-X capability in this model, when the device has one.
pub const MSIX_CAP: u64 = 0xb0;
/// MSI-X Message Control (16 bits), relative to the MSI-X capability. Kernel: `PCI_MSIX_FLAGS`.
pub const MSIX_FLAGS: u64 = 2;
/// MSI-X Message Control bits 10:0: table size minus one. Kernel: `PCI_MSIX_FLAGS_QSIZE`.
pub const MSIX_FLAGS_QSIZE: u16 = 0x07ff;
/// MSI-X Message Control: function mask.
pub const MSIX_FLAGS_MASKALL: u16 = 0x4000;
/// MSI-X Message Control: MSI-X enable.
pub const MSIX_FLAGS_ENABLE: u16 = 0x8000;
/// MSI-X Table Offset/BIR (32 bits), relative to the MSI-X capability.
pub const MSIX_TABLE: u64 = 4;
/// MSI-X Pending Bit Array Offset/BIR (32 bits), relative to the MSI-X capability.
pub const MSIX_PBA: u64 = 8;

/// Offset of BAR register `index` (0..=5).
///
/// # Examples
///
/// ```
/// assert_eq!(pci::regs::base_address(2), 0x18);
/// ```
#[must_use]
pub const fn base_address(index: usize) -> u64 {
    BASE_ADDRESS_0 + 4 * index as u64
}

/// A config register a user may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedRegister {
    /// Upper-case name, e.g. `COMMAND`.
    pub name: &'static str,
    /// Byte offset in config space.
    pub offset: u64,
    /// Width in bytes: 1, 2 or 4.
    pub width: u8,
}

/// Every named register, in offset order. `PMCSR` and `DEVCTL` are the specification names of
/// [`PM_CTRL`] and [`EXP_DEVCTL`].
pub const REGISTERS: &[NamedRegister] = &[
    NamedRegister { name: "VENDOR_ID", offset: VENDOR_ID, width: 2 },
    NamedRegister { name: "DEVICE_ID", offset: DEVICE_ID, width: 2 },
    NamedRegister { name: "COMMAND", offset: COMMAND, width: 2 },
    NamedRegister { name: "STATUS", offset: STATUS, width: 2 },
    NamedRegister { name: "REVISION_ID", offset: REVISION_ID, width: 1 },
    // Revision and class share one dword; the class alone is 3 bytes, not an access width.
    NamedRegister { name: "CLASS_REVISION", offset: REVISION_ID, width: 4 },
    NamedRegister { name: "HEADER_TYPE", offset: HEADER_TYPE, width: 1 },
    NamedRegister { name: "BAR0", offset: base_address(0), width: 4 },
    NamedRegister { name: "BAR1", offset: base_address(1), width: 4 },
    NamedRegister { name: "BAR2", offset: base_address(2), width: 4 },
    NamedRegister { name: "BAR3", offset: base_address(3), width: 4 },
    NamedRegister { name: "BAR4", offset: base_address(4), width: 4 },
    NamedRegister { name: "BAR5", offset: base_address(5), width: 4 },
    NamedRegister { name: "ROM_ADDRESS", offset: ROM_ADDRESS, width: 4 },
    NamedRegister { name: "CAPABILITY_LIST", offset: CAPABILITY_LIST, width: 1 },
    NamedRegister { name: "INTERRUPT_LINE", offset: INTERRUPT_LINE, width: 1 },
    NamedRegister { name: "INTERRUPT_PIN", offset: INTERRUPT_PIN, width: 1 },
    NamedRegister { name: "PMC", offset: PM_PMC, width: 2 },
    NamedRegister { name: "PMCSR", offset: PM_CTRL, width: 2 },
    NamedRegister { name: "DEVCAP", offset: EXP_DEVCAP, width: 4 },
    NamedRegister { name: "DEVCTL", offset: EXP_DEVCTL, width: 2 },
    NamedRegister { name: "DEVSTA", offset: EXP_DEVSTA, width: 2 },
];

/// Looks a register up by name, ignoring case; `PM_CTRL` and `EXP_DEVCTL` are accepted as the
/// kernel spellings of `PMCSR` and `DEVCTL`.
///
/// # Examples
///
/// ```
/// let command = pci::regs::register_by_name("command").unwrap();
/// assert_eq!((command.offset, command.width), (pci::regs::COMMAND, 2));
/// ```
#[must_use]
pub fn register_by_name(name: &str) -> Option<NamedRegister> {
    let name = name.to_ascii_uppercase();
    let name = match name.as_str() {
        "PM_CTRL" => "PMCSR",
        "EXP_DEVCTL" => "DEVCTL",
        other => other,
    };
    REGISTERS.iter().find(|register| register.name == name).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_case_insensitively_with_kernel_aliases() {
        assert_eq!(register_by_name("PMCSR").unwrap().offset, 0x44);
        assert_eq!(register_by_name("pm_ctrl").unwrap().offset, 0x44);
        assert_eq!(register_by_name("DevCtl").unwrap().offset, 0x58);
        assert_eq!(register_by_name("EXP_DEVCTL").unwrap().width, 2);
        assert_eq!(register_by_name("BAR5").unwrap().offset, 0x24);
        assert_eq!(register_by_name("VENDOR_ID").unwrap().offset, 0);
        assert_eq!(register_by_name("BAR6"), None);
        assert_eq!(register_by_name(""), None);
    }

    #[test]
    fn every_named_register_is_an_aligned_valid_access() {
        for register in REGISTERS {
            assert!(matches!(register.width, 1 | 2 | 4), "{}", register.name);
            assert_eq!(register.offset % u64::from(register.width), 0, "{}", register.name);
            assert!(register.offset + u64::from(register.width) <= CFG_SPACE_EXP_SIZE);
        }
    }
}
