//! The command line: clap options, validated into the configs the library runs on.

pub mod activate;
pub mod exit;
pub mod load;
pub mod serve;
pub mod target;
