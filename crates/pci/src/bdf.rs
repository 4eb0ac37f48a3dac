//! PCI addresses (domain, bus, device, function).

use std::fmt;
use std::str::FromStr;

use crate::error::PciError;

/// Highest device number on a bus (32 slots).
const MAX_DEVICE: u8 = 0x1f;
/// Highest function number of a device (8 functions).
const MAX_FUNCTION: u8 = 7;

/// A PCI address, shown the way the kernel names a device: `0000:00:03.0`.
///
/// The fields are public for pattern matching; [`Bdf::new`] and [`FromStr`] check the ranges.
///
/// # Examples
///
/// ```
/// use pci::Bdf;
///
/// let bdf: Bdf = "00:03.0".parse()?;
/// assert_eq!(bdf, Bdf::new(0, 0, 3, 0)?);
/// assert_eq!(bdf.to_string(), "0000:00:03.0");
/// # Ok::<(), pci::PciError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI segment (domain) number.
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, at most 0x1f.
    pub device: u8,
    /// Function number, at most 7.
    pub function: u8,
}

impl Bdf {
    /// Builds an address, checking the device and function ranges.
    ///
    /// # Errors
    ///
    /// - `EINVAL` ([`PciError::BdfDeviceOutOfRange`]): `device` is above 0x1f.
    /// - `EINVAL` ([`PciError::BdfFunctionOutOfRange`]): `function` is above 7.
    pub fn new(domain: u16, bus: u8, device: u8, function: u8) -> Result<Self, PciError> {
        if device > MAX_DEVICE {
            return Err(PciError::BdfDeviceOutOfRange { device });
        }
        if function > MAX_FUNCTION {
            return Err(PciError::BdfFunctionOutOfRange { function });
        }
        Ok(Self { domain, bus, device, function })
    }
}

impl fmt::Display for Bdf {
    /// Formats as the kernel's `pci_name()` does: `dddd:bb:dd.f`, lowercase hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.device, self.function)
    }
}

impl FromStr for Bdf {
    type Err = PciError;

    /// Parses `dddd:bb:dd.f` or, with domain 0, `bb:dd.f` (hex, as lspci prints them).
    ///
    /// # Errors
    ///
    /// - `EINVAL` ([`PciError::BdfSyntax`]): wrong shape, a non-hex digit, or too many digits.
    /// - `EINVAL` ([`PciError::BdfDeviceOutOfRange`], [`PciError::BdfFunctionOutOfRange`]):
    ///   a well-formed number outside the PCI range.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let syntax = || PciError::BdfSyntax { input: input.to_owned() };
        let (head, function) = input.rsplit_once('.').ok_or_else(syntax)?;
        let parts: Vec<&str> = head.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [bus, device] => ("0", *bus, *device),
            [domain, bus, device] => (*domain, *bus, *device),
            _ => return Err(syntax()),
        };
        let domain = parse_hex(domain, 4).ok_or_else(syntax)?;
        let bus = parse_hex(bus, 2).ok_or_else(syntax)?;
        let device = parse_hex(device, 2).ok_or_else(syntax)?;
        let function = parse_hex(function, 1).ok_or_else(syntax)?;
        // parse_hex bounded the digit counts, so these conversions cannot fail; they are checked
        // anyway rather than cast.
        Self::new(
            u16::try_from(domain).map_err(|_| syntax())?,
            u8::try_from(bus).map_err(|_| syntax())?,
            u8::try_from(device).map_err(|_| syntax())?,
            u8::try_from(function).map_err(|_| syntax())?,
        )
    }
}

/// Parses 1..=`max_digits` hex digits. Rejects signs and spaces, which `from_str_radix` would
/// partly accept.
fn parse_hex(text: &str, max_digits: usize) -> Option<u32> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_then_parse_round_trips() {
        for bdf in
            [Bdf::new(0, 0, 3, 0).unwrap(), Bdf::new(0xabcd, 0xff, 0x1f, 7).unwrap(), Bdf::new(1, 0x10, 0, 1).unwrap()]
        {
            let text = bdf.to_string();
            assert_eq!(text.parse::<Bdf>().unwrap(), bdf, "{text}");
        }
        assert_eq!(Bdf::new(0, 0, 3, 0).unwrap().to_string(), "0000:00:03.0");
        assert_eq!(Bdf::new(0xabcd, 0xff, 0x1f, 7).unwrap().to_string(), "abcd:ff:1f.7");
    }

    #[test]
    fn short_form_means_domain_zero() {
        let bdf: Bdf = "00:03.0".parse().unwrap();
        assert_eq!(bdf, Bdf { domain: 0, bus: 0, device: 3, function: 0 });
        let bdf: Bdf = "1a:1F.6".parse().unwrap();
        assert_eq!(bdf, Bdf { domain: 0, bus: 0x1a, device: 0x1f, function: 6 });
    }

    #[test]
    fn malformed_addresses_are_syntax_errors() {
        for input in [
            "",
            "00:03",
            "03.0",
            "0000:00:03:0",
            "0:0:0:0.0",
            "00:03.",
            ":03.0",
            "00:03.00",
            "00000:00:03.0",
            "000:100:03.0",
            "00:003.0",
            "+0:03.0",
            "00: 3.0",
            "00:0g.0",
            "00:03.0 ",
        ] {
            let error = input.parse::<Bdf>().unwrap_err();
            assert!(matches!(error, PciError::BdfSyntax { .. }), "{input:?}: {error}");
            assert_eq!(error.errno(), rustix::io::Errno::INVAL);
        }
    }

    #[test]
    fn device_and_function_ranges_are_enforced() {
        assert_eq!("00:20.0".parse::<Bdf>().unwrap_err(), PciError::BdfDeviceOutOfRange { device: 0x20 });
        assert_eq!("00:03.8".parse::<Bdf>().unwrap_err(), PciError::BdfFunctionOutOfRange { function: 8 });
        assert_eq!(
            Bdf::new(0, 0, 0x20, 0).unwrap_err().to_string(),
            "PCI device number 0x20 is out of range (at most 0x1f)"
        );
        assert!(Bdf::new(0, 0, 0, 8).is_err());
    }
}
