//! Byte layouts of DCE/RPC PDUs and KMS messages: typed views and parsed representations.
//!
//! Every decoder here takes untrusted bytes and returns a [`Error`] naming the field and offset
//! that failed; none panics.

pub mod codec;
pub mod enums;
pub mod guid;
pub mod hresult;
pub mod kms;
pub mod ndr;
pub mod reassembly;
pub mod rpc;

pub use codec::{Error, Result};
pub use guid::Guid;
pub use hresult::HResult;
