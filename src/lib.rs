//! kmsharness: validate and benchmark Microsoft Key Management Service (KMS) hosts.
//!
//! The protocol core is sans-IO: [`wire`] (byte layouts), [`crypto`] (the KMS ciphers, MAC and
//! HMAC), [`proto`] (client and host message steps with named checks), [`epid`] and [`catalog`]
//! take and return bytes and values; they never touch sockets, clocks or randomness. Time and
//! random bytes are passed in. The layers above (network drivers, load, capture, conformance)
//! wrap them.
#![forbid(unsafe_code)]

pub mod activate;
pub mod capture;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod conform;
pub mod crypto;
pub mod epid;
pub mod exit;
pub mod fuzz;
pub mod host;
pub mod inspect;
pub mod load;
pub mod net;
pub mod proto;
pub mod replay;
pub mod report;
pub mod serve;
pub mod simulate;
pub mod wire;
