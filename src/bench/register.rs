//! Section 7 of `vfio-dmabuf bench`: register access.
//!
//! An access to a register page through a mapping traps into a signal
//! handler and is emulated against the device. Its cost is held to two
//! points measured in the same run:
//!
//! - the bare trap, the floor: a forked child whose SIGBUS handler only
//!   steps over the faulting 32-bit load or store, on a page carrying the
//!   same userfaultfd poison marker a register page carries
//!   ([`mm::baseline::bare_trap_ns`]);
//! - the region access: `pread`/`pwrite` of the same 32-bit register of
//!   edu-plus BAR0 through the device fd ([`DeviceFd::read`],
//!   [`DeviceFd::write`]), the path a driver takes without a mapping.
//!
//! The bare trap against the region access is an informative row. An
//! emulated access through a mapping is one [`RegisterSection::emulated`]
//! call, held to at most [`EMULATED_TARGET`] times the floor of its kind.

use pci::catalogue::{self, EDU_ID_MAGIC, EDU_REG_ID, EDU_REG_LIVENESS};
use pci::Bdf;
use vfio::{index_to_offset, DeviceFd, VfioPciDevice};

use super::{ns_per, row, timed, Options, Progress, Result, Row, Stat, Target};

/// Section number in the suite.
pub const SECTION: u32 = 7;

/// Progress steps this section reports.
pub(super) const STEPS: usize = 2;

/// Progress steps [`emulated_rows`] reports.
pub(super) const EMULATED_STEPS: usize = 1;

/// Largest ratio of an emulated access to the bare trap of the same kind.
pub const EMULATED_TARGET: f64 = 1.5;

/// The measured floors of the section and the rows so far.
#[derive(Debug, Clone)]
pub struct RegisterSection {
    opts: Options,
    /// Bare trapped 32-bit load, ns per access.
    pub load_floor: Stat,
    /// Bare trapped 32-bit store, ns per access.
    pub store_floor: Stat,
    rows: Vec<Row>,
}

impl RegisterSection {
    /// Adds the row of an emulated register access through a mapping:
    /// `access` performs one access (a load, or a store when `write`), and
    /// is timed over [`Options::register_accesses`] calls per run against
    /// the bare trap of the same kind, with a target of at most
    /// [`EMULATED_TARGET`] times it.
    ///
    /// # Errors
    ///
    /// The first error `access` returns.
    pub fn emulated(&mut self, what: &str, write: bool, access: impl FnMut() -> Result<()>) -> Result<()> {
        let ours = per_access(&self.opts, access)?;
        let (floor, name) = if write {
            (self.store_floor.clone(), "bare trapped store (handler only skips it)")
        } else {
            (self.load_floor.clone(), "bare trapped load (handler only skips it)")
        };
        self.rows.push(row(
            SECTION,
            what.into(),
            ours,
            floor,
            name,
            "ours / baseline",
            Some(Target::AtMost(EMULATED_TARGET)),
        ));
        Ok(())
    }

    /// The rows, in the order they were added.
    pub fn into_rows(self) -> Vec<Row> {
        self.rows
    }
}

/// Times `access` over [`Options::register_accesses`] calls, [`Options::runs`]
/// times; one sample per run, in ns per access.
///
/// # Errors
///
/// The first error `access` returns.
pub fn per_access(opts: &Options, mut access: impl FnMut() -> Result<()>) -> Result<Stat> {
    let n = opts.register_accesses.max(1);
    let mut samples = Vec::with_capacity(opts.runs);
    for _ in 0..opts.runs {
        samples.push(ns_per(timed(|| (0..n).try_for_each(|_| access()))?, n));
    }
    Ok(Stat::new("ns/access", samples))
}

/// The bare trap of one kind, one child per run.
fn bare_trap(opts: &Options, write: bool) -> Result<Stat> {
    let samples = (0..opts.runs)
        .map(|_| mm::baseline::bare_trap_ns(opts.register_accesses.max(1), write).map_err(|e| e.to_string()))
        .collect::<Result<Vec<f64>>>()?;
    Ok(Stat::new("ns/access", samples))
}

/// An edu-plus device of its own, for the region accesses.
fn edu_plus() -> Result<DeviceFd> {
    let bdf = Bdf::new(0, 0, 3, 0).map_err(|e| e.to_string())?;
    let vdev = VfioPciDevice::new(900, bdf, catalogue::edu_plus()).map_err(|e| e.to_string())?;
    Ok(vdev.open())
}

/// Adds the emulated rows: a 32-bit load of edu-plus BAR0's ID register and
/// a 32-bit store to its liveness register, each through a device-fd
/// mapping of BAR0 (every access traps and is emulated).
///
/// # Errors
///
/// A failed setup or mapping; an access that faults or reads a wrong ID.
pub(super) fn emulated_rows(section: &mut RegisterSection, p: &mut Progress) -> Result<()> {
    p.step("register access: emulated load and store through a mapping of edu-plus BAR0");
    let fd = edu_plus()?;
    let aspace = mm::AddressSpace::new().map_err(|e| e.to_string())?;
    let va =
        fd.mmap(&aspace, vfio::MmapArgs::shared(index_to_offset(0), page::PAGE_SIZE)).map_err(|e| e.to_string())?;
    section.emulated("emulated 32-bit load of edu-plus BAR0 ID through a mapping", false, || match mm::probe::read(
        va + EDU_REG_ID,
        mm::Width::U32,
    ) {
        Ok(v) if v == u64::from(EDU_ID_MAGIC) => Ok(()),
        Ok(v) => Err(format!("ID register reads {v:#x} through the mapping")),
        Err(e) => Err(e.to_string()),
    })?;
    let mut value = 0u64;
    section.emulated("emulated 32-bit store to edu-plus BAR0 liveness through a mapping", true, || {
        value = value.wrapping_add(1);
        mm::probe::write(va + EDU_REG_LIVENESS, mm::Width::U32, value).map_err(|e| e.to_string())
    })?;
    Ok(())
}

/// Measures the floors and the region accesses, with the informative rows.
///
/// # Errors
///
/// A failed setup, child or region access; a register that does not read
/// back what edu-plus defines.
pub(super) fn section(opts: Options, p: &mut Progress) -> Result<RegisterSection> {
    p.step("register access: bare trapped load and store (forked child)");
    let load_floor = bare_trap(&opts, false)?;
    let store_floor = bare_trap(&opts, true)?;

    p.step("register access: region pread and pwrite of edu-plus BAR0");
    let fd = edu_plus()?;
    let bar0 = index_to_offset(0);
    let mut word = [0u8; 4];
    fd.read(bar0 + EDU_REG_ID, &mut word).map_err(|e| e.to_string())?;
    if u32::from_le_bytes(word) != EDU_ID_MAGIC {
        return Err(format!("edu-plus ID register reads {:#x}", u32::from_le_bytes(word)));
    }
    let pread = per_access(&opts, || {
        let mut v = [0u8; 4];
        match fd.read(bar0 + EDU_REG_ID, &mut v) {
            Ok(4) => Ok(()),
            Ok(n) => Err(format!("short register read: {n} bytes")),
            Err(e) => Err(e.to_string()),
        }
    })?;
    let mut value = 0u32;
    let pwrite = per_access(&opts, || {
        value = value.wrapping_add(1);
        match fd.write(bar0 + EDU_REG_LIVENESS, &value.to_le_bytes()) {
            Ok(4) => Ok(()),
            Ok(n) => Err(format!("short register write: {n} bytes")),
            Err(e) => Err(e.to_string()),
        }
    })?;
    let rows = vec![
        row(
            SECTION,
            "bare trapped 32-bit load (handler only skips it)".into(),
            load_floor.clone(),
            pread,
            "region pread of edu-plus BAR0 ID register",
            "ours / baseline",
            None,
        ),
        row(
            SECTION,
            "bare trapped 32-bit store (handler only skips it)".into(),
            store_floor.clone(),
            pwrite,
            "region pwrite of edu-plus BAR0 liveness register",
            "ours / baseline",
            None,
        ),
    ];
    Ok(RegisterSection { opts, load_floor, store_floor, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Options {
        Options { runs: 1, register_accesses: 20, ..Options::quick() }
    }

    #[test]
    fn the_section_measures_both_floors_as_informative_rows() {
        let mut p = Progress { done: 0, total: STEPS, tty: false };
        let section = section(tiny(), &mut p).unwrap();
        assert_eq!(p.done, STEPS, "STEPS must match the steps reported");
        let rows = section.into_rows();
        assert_eq!(rows.len(), 2);
        for r in &rows {
            assert_eq!(r.section, SECTION);
            assert!(r.target.is_none() && r.met().is_none(), "{}", r.what);
            assert_eq!((r.ours.unit, r.baseline.unit), ("ns/access", "ns/access"));
            assert!(r.ours.median() > 0.0 && r.baseline.median() > 0.0, "{}", r.what);
        }
        assert!(rows[0].baseline_name.contains("pread") && rows[1].baseline_name.contains("pwrite"));
    }

    #[test]
    fn the_emulated_rows_go_through_a_mapping_of_the_register_bar() {
        let mut p = Progress { done: 0, total: STEPS + EMULATED_STEPS, tty: false };
        let mut section = section(tiny(), &mut p).unwrap();
        emulated_rows(&mut section, &mut p).unwrap();
        assert_eq!(p.done, STEPS + EMULATED_STEPS);
        let rows = section.into_rows();
        assert_eq!(rows.len(), 4);
        for r in &rows[2..] {
            assert!(r.what.starts_with("emulated 32-bit"), "{}", r.what);
            assert!(matches!(r.target, Some(Target::AtMost(x)) if x == EMULATED_TARGET));
            assert!(r.ours.median() > 0.0, "{}", r.what);
        }
    }

    #[test]
    fn an_emulated_row_is_one_call_held_to_the_floor_of_its_kind() {
        let mut p = Progress { done: 0, total: STEPS, tty: false };
        let mut section = section(tiny(), &mut p).unwrap();
        let mut calls = 0u64;
        section
            .emulated("emulated store", true, || {
                calls += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(calls, tiny().register_accesses, "one call per timed access");
        let store_floor = section.store_floor.median();
        let rows = section.into_rows();
        let r = rows.last().unwrap();
        assert_eq!((r.section, r.what.as_str()), (SECTION, "emulated store"));
        assert!(matches!(r.target, Some(Target::AtMost(x)) if x == EMULATED_TARGET));
        assert_eq!(r.baseline.median(), store_floor);
        assert!(r.baseline_name.contains("store"));
        assert_eq!(r.ratio, r.ours.median() / store_floor);
    }

    #[test]
    fn an_access_that_fails_fails_the_row() {
        let mut section = RegisterSection {
            opts: tiny(),
            load_floor: Stat::new("ns/access", vec![1.0]),
            store_floor: Stat::new("ns/access", vec![1.0]),
            rows: Vec::new(),
        };
        let err = section.emulated("emulated load", false, || Err("SIGBUS".into())).unwrap_err();
        assert_eq!(err, "SIGBUS");
        assert!(section.into_rows().is_empty());
    }
}
