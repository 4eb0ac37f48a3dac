//! Scenario files: the format ([`parse`]) and the runner ([`run`]).

pub mod parse;
pub mod run;
