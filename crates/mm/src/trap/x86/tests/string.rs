//! string
