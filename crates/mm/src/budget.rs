//! Whether the machine can hold an allocation, asked before making it.
//!
//! [`PhysMemory`](crate::PhysMemory) populates every page it holds when it
//! is created (see its module doc), so asking for more than the machine has
//! does not fail cleanly: `fallocate` keeps taking pages until the OOM
//! killer ends the process, or another one. Linux has no such check for a
//! memfd (the pages are charged one at a time, each of which fits), so the
//! callers ask here first and refuse with `ENOMEM` while nothing exists yet.
//!
//! The measure is `MemAvailable` of `/proc/meminfo`: the kernel's estimate
//! of what can be allocated without swapping, free pages plus page cache
//! and slab that can be reclaimed. Swap is not counted: every page is
//! populated up front and a BAR is expected to be resident, so memory that
//! only fits once swapped out would make each touch of the BAR a swap-in.
//!
//! Deliberately not handled: a memory cgroup limit lower than
//! `MemAvailable` (inside a container). Its usage figure counts page cache
//! that the limit would reclaim, so headroom read from it refuses too much;
//! the override covers that case.

use std::ffi::OsStr;

use crate::MmError;

/// Environment variable that turns the check off when set to `1`, for a
/// machine whose `MemAvailable` understates what it can give (swap, a
/// balloon, memory about to be freed).
pub const ALLOW_OVERCOMMIT_ENV: &str = "VFIO_DMABUF_ALLOW_OVERCOMMIT";

/// How much memory a new allocation may take now: `MemAvailable`, or
/// `None` (no limit) when [`ALLOW_OVERCOMMIT_ENV`] is `1` or the figure
/// cannot be read (no `/proc`, or a kernel older than 3.14 without the
/// field; then nothing can be said and nothing is refused).
pub fn memory_budget() -> Option<u64> {
    if overcommit_allowed(std::env::var_os(ALLOW_OVERCOMMIT_ENV).as_deref()) {
        return None;
    }
    match std::fs::read_to_string("/proc/meminfo") {
        Ok(text) => mem_available(&text),
        Err(e) => {
            tracing::debug!(%e, "cannot read /proc/meminfo; memory requests go unchecked");
            None
        }
    }
}

/// Refuses `need` bytes when they exceed `budget` (from [`memory_budget`]).
///
/// # Errors
///
/// [`MmError::NoMemory`] (`ENOMEM`), whose message gives both figures and
/// names the override.
pub fn check_budget(need: u64, budget: Option<u64>) -> Result<(), MmError> {
    match budget {
        Some(available) if need > available => Err(MmError::NoMemory { need, available }),
        _ => Ok(()),
    }
}

/// Whether the override variable's value turns the check off: exactly `1`.
fn overcommit_allowed(value: Option<&OsStr>) -> bool {
    value.is_some_and(|v| v == "1")
}

/// `MemAvailable` in bytes, from the text of `/proc/meminfo`.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kib = line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    kib.checked_mul(1024)
}

/// A byte count for people: whole units where exact (`64 MiB`, `1 TiB`),
/// else one decimal (`21.3 GiB`), in binary units.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let Some(exp) = (1..=UNITS.len()).rev().find(|e| n >> (10 * e) != 0) else { return format!("{n} B") };
    let shift = 10 * exp;
    let unit = UNITS[exp - 1];
    let whole = n >> shift;
    let rest = n - (whole << shift);
    if rest == 0 {
        return format!("{whole} {unit}");
    }
    // Tenths, rounded to nearest; 9.96 GiB reads as "10.0 GiB".
    let tenths = (u128::from(n) * 10 + (1u128 << (shift - 1))) >> shift;
    format!("{}.{} {unit}", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:       24683792 kB\nMemFree:        17222768 kB\nMemAvailable:   24026400 kB\n";
        assert_eq!(mem_available(text), Some(24_026_400 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots\n"), None);
    }

    #[test]
    fn a_need_beyond_the_budget_is_enomem_naming_both_figures_and_the_override() {
        let e = check_budget(1 << 40, Some(21_300 << 20)).unwrap_err();
        assert_eq!(e.errno(), rustix::io::Errno::NOMEM);
        assert_eq!(
            e.to_string(),
            "need 1 TiB but only 20.8 GiB is available; set VFIO_DMABUF_ALLOW_OVERCOMMIT=1 to try anyway"
        );
    }

    #[test]
    fn a_need_within_the_budget_or_without_one_passes() {
        assert!(check_budget(4096, Some(4096)).is_ok());
        assert!(check_budget(u64::MAX, None).is_ok());
    }

    #[test]
    fn only_the_value_1_turns_the_check_off() {
        assert!(overcommit_allowed(Some(OsStr::new("1"))));
        for v in ["0", "", "yes", "true"] {
            assert!(!overcommit_allowed(Some(OsStr::new(v))), "{v:?}");
        }
        assert!(!overcommit_allowed(None));
    }

    #[test]
    fn byte_counts_read_in_binary_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(4096), "4 KiB");
        assert_eq!(format_bytes(64 << 20), "64 MiB");
        assert_eq!(format_bytes(1 << 40), "1 TiB");
        assert_eq!(format_bytes(24_026_400 * 1024), "22.9 GiB");
        assert_eq!(format_bytes((10 << 30) - (1 << 20)), "10.0 GiB");
        assert_eq!(format_bytes(u64::MAX), "16.0 EiB");
    }
}
