//! Sans-IO protocol logic: the client and host steps of a KMS exchange, each validation
//! reported as a named [`checks::Check`]. Time and randomness are arguments; nothing here
//! touches a socket or a clock.

pub mod checks;
pub mod client;
pub mod client_session;
pub mod faults;
pub mod host;
pub mod host_engine;
pub mod host_session;
pub mod kms_host;
pub mod rpc;
pub mod summary;

pub use checks::{Check, CheckId, Checks, Value};

#[cfg(test)]
mod pair_tests;
