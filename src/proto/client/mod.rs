//! The client's side of the protocol, sans-IO: one KMS message ([`message`]: build and encrypt a
//! request, decrypt and verify the response), one RPC connection ([`session`]), and the RPC-level
//! checks on a host's replies ([`checks`]).

pub mod checks;
pub mod message;
pub mod names;
pub mod session;
