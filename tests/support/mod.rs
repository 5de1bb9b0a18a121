//! Helpers the integration test modules share: none of them is a test itself.

pub mod bare;
pub mod common;
pub mod dns;
pub mod junit;
pub mod pykms_log;
pub mod schema;
pub mod vlmcs_txt;
