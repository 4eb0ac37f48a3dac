//! alu
