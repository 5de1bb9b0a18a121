//! The only tokio code: drivers for client and host sockets, and host discovery.

pub mod client;
pub mod discovery;
pub mod framing;
pub mod host;
pub mod raw;
pub mod timer;
