//! Scenario files: the format ([`parse`]) and the runner ([`run`]).

mod fields;
mod memory;
pub mod parse;
pub mod run;
