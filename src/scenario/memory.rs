//! Refuses a scenario whose RAM BARs the machine cannot hold, before any
//! device exists.
//!
//! Every page of a RAM BAR is allocated when its device is created (see
//! `mm::PhysMemory`), and `mm` refuses one BAR larger than the memory
//! available. That check alone would still build the first BARs of a
//! device, or the first devices of a scenario, before refusing a later one;
//! this one adds up each device's BARs, and the devices of the file, first.

use mm::budget::check_budget;

use super::parse::{Scenario, ScenarioError};

/// Checks each device's RAM BARs, then the total of the devices so far,
/// against `budget` (`mm::budget::memory_budget()`; `None` checks nothing).
///
/// # Errors
///
/// A [`ScenarioError`] at the line of the first device that does not fit,
/// alone or with the devices declared before it, naming the need, what is
/// available, the override and `ENOMEM`.
pub(super) fn check_fits(sc: &Scenario, budget: Option<u64>) -> Result<(), ScenarioError> {
    let mut total = 0u64;
    for d in &sc.devices {
        let own = d.spec.ram_bytes();
        total = total.saturating_add(own);
        let refuse = |context: &str, e: mm::MmError| ScenarioError {
            file: sc.file.clone(),
            line: d.line,
            msg: format!("device `{}`: {context}BARs {e} ({})", d.id, vfio::errno_name(e.errno())),
        };
        check_budget(own, budget).map_err(|e| refuse("", e))?;
        check_budget(total, budget).map_err(|e| refuse("with the devices before it, ", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse::parse;

    const TWO_DEVICES: &str = "[devices.a]\nbars = [{ index = 0, size = \"2G\", bits = 64 }]\n\n\
                               [devices.b]\nbars = [{ index = 0, size = \"1G\", bits = 64 }, \
                               { index = 2, size = \"1G\", bits = 64 }]\n";

    #[test]
    fn a_device_larger_than_the_budget_is_refused_at_its_line() {
        let sc = parse("t.toml", TWO_DEVICES).unwrap();
        let e = check_fits(&sc, Some(1 << 30)).unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert_eq!(
            e.msg,
            "device `a`: BARs need 2 GiB but only 1 GiB is available; \
             set VFIO_DMABUF_ALLOW_OVERCOMMIT=1 to try anyway (ENOMEM)"
        );
    }

    #[test]
    fn devices_that_fit_alone_but_not_together_are_refused_at_the_last() {
        let sc = parse("t.toml", TWO_DEVICES).unwrap();
        let e = check_fits(&sc, Some(3 << 30)).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.msg.starts_with("device `b`: with the devices before it, BARs need 4 GiB but only 3 GiB"), "{e}");
    }

    #[test]
    fn register_bars_and_an_absent_budget_ask_for_nothing() {
        let sc = parse("t.toml", "[devices.e]\ncatalogue = \"edu\"\n").unwrap();
        assert_eq!(sc.devices[0].spec.ram_bytes(), 0);
        assert!(check_fits(&sc, Some(0)).is_ok());
        let sc = parse("t.toml", TWO_DEVICES).unwrap();
        assert!(check_fits(&sc, Some(4 << 30)).is_ok());
        assert!(check_fits(&sc, None).is_ok());
    }
}
