//! The command line: clap options, validated into the configs the library runs on.

pub mod activate;
pub mod conform;
pub mod exit;
pub mod inspect;
pub mod load;
pub mod replay;
pub mod serve;
pub mod target;
