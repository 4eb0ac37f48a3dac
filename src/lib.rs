//! The `vfio-dmabuf` command: scenarios, the demo and inspect, on top of the
//! [`vfio`] crate.
//!
//! A scenario is a TOML file declaring emulated devices and a sequence of
//! steps (open, mmap, read, write, export, revoke, reset, ...) each with an
//! expectation; see `docs/scenarios.md`. The runner executes them against
//! real devices, real mappings and real faults.
#![forbid(unsafe_code)]

pub mod bench;
mod cc;
pub mod devices;
pub mod exec;
pub mod inspect;
pub mod report;
pub mod scenario;
pub mod serve;

/// The built-in seed scenario (the demo).
pub const SEED_SCENARIO: &str = include_str!("../scenarios/seed.toml");
