//! Scenario files: the format ([`parse`]) and the runner ([`run`]).

mod client;
mod fields;
mod memory;
pub mod parse;
pub mod procs;
mod procs_parse;
pub mod run;
