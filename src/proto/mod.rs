//! Sans-IO protocol logic: the client and host steps of a KMS exchange, each validation
//! reported as a named [`check::Check`]. Time and randomness are arguments; nothing here
//! touches a socket or a clock.

pub mod check;
pub mod client;
pub mod discovery;
pub mod faults;
pub mod host;
pub mod lifecycle;
pub mod summary;
pub mod verdict;

pub use check::{Check, CheckId, Checks, Value};

#[cfg(test)]
mod pair_tests;
