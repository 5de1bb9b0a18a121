//! The host's side of the protocol, sans-IO: one KMS message ([`message`]), one RPC connection
//! ([`session`]), and the reference host's decisions ([`engine`]) over its configuration
//! ([`config`]), refusal rules ([`policy`]), client tables ([`table`]) and saved state
//! ([`state`]).

pub mod config;
pub mod engine;
pub mod message;
pub mod policy;
pub mod session;
pub mod state;
pub mod table;

#[cfg(test)]
mod tests;
