//! `kmsharness conform`: options, validation and running (being written).

use clap::Args;

use super::exit::Exit;

/// Options of `conform`.
#[derive(Debug, Clone, Args)]
pub struct ConformOpts {}

/// Runs `conform`.
pub fn main(_opts: &ConformOpts) -> Exit {
    eprintln!("kmsharness conform: not available yet");
    Exit::Usage
}
