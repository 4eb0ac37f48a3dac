//! PCI power states as the PMCSR register encodes them.

use std::fmt;
use std::str::FromStr;

use crate::error::PciError;
use crate::regs::PM_CTRL_STATE_MASK;

/// A device power state settable through PMCSR. Ordered like the kernel's `pci_power_t`, so
/// `state < PowerState::D3Hot` is the kernel's "not in D3" test. D3cold (power removed) cannot be
/// reached through config space and is not modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum PowerState {
    /// Fully on; the only state in which memory BARs decode.
    #[default]
    D0,
    /// Light sleep.
    D1,
    /// Deeper sleep.
    D2,
    /// Off but still powered; config space stays reachable, BARs do not.
    D3Hot,
}

impl PowerState {
    /// Decodes the `PowerState` field (bits 1:0) of a PMCSR value; other bits are ignored.
    #[must_use]
    pub const fn from_pmcsr(pmcsr: u16) -> Self {
        match pmcsr & PM_CTRL_STATE_MASK {
            0 => Self::D0,
            1 => Self::D1,
            2 => Self::D2,
            _ => Self::D3Hot,
        }
    }

    /// The `PowerState` field value (bits 1:0 of PMCSR) for this state.
    #[must_use]
    pub const fn pmcsr_bits(self) -> u16 {
        match self {
            Self::D0 => 0,
            Self::D1 => 1,
            Self::D2 => 2,
            Self::D3Hot => 3,
        }
    }
}

impl fmt::Display for PowerState {
    /// Prints the kernel's names (`pci_power_name()`): `D0`, `D1`, `D2`, `D3hot`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::D0 => "D0",
            Self::D1 => "D1",
            Self::D2 => "D2",
            Self::D3Hot => "D3hot",
        })
    }
}

impl FromStr for PowerState {
    type Err = PciError;

    /// Parses `D0`, `D1`, `D2` or `D3hot`, ignoring case.
    ///
    /// # Errors
    ///
    /// `EINVAL` ([`PciError::InvalidPowerState`]): any other text.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input.to_ascii_lowercase().as_str() {
            "d0" => Ok(Self::D0),
            "d1" => Ok(Self::D1),
            "d2" => Ok(Self::D2),
            "d3hot" => Ok(Self::D3Hot),
            _ => Err(PciError::InvalidPowerState { input: input.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [PowerState; 4] = [PowerState::D0, PowerState::D1, PowerState::D2, PowerState::D3Hot];

    #[test]
    fn pmcsr_bits_round_trip_and_ignore_other_bits() {
        for state in ALL {
            assert_eq!(PowerState::from_pmcsr(state.pmcsr_bits()), state);
            assert_eq!(PowerState::from_pmcsr(state.pmcsr_bits() | 0xfffc), state);
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_einval() {
        for state in ALL {
            assert_eq!(state.to_string().parse::<PowerState>().unwrap(), state);
        }
        assert_eq!("D3HOT".parse::<PowerState>().unwrap(), PowerState::D3Hot);
        let error = "D3cold".parse::<PowerState>().unwrap_err();
        assert_eq!(error.errno(), rustix::io::Errno::INVAL);
    }

    #[test]
    fn only_d3hot_is_at_or_above_d3hot() {
        let below: Vec<PowerState> = ALL.into_iter().filter(|s| *s < PowerState::D3Hot).collect();
        assert_eq!(below, [PowerState::D0, PowerState::D1, PowerState::D2]);
    }
}
