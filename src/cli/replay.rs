//! `kmsharness replay`: options, validation and running (being written).

use clap::Args;

use super::exit::Exit;

/// Options of `replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayOpts {}

/// Runs `replay`.
pub fn main(_opts: &ReplayOpts) -> Exit {
    eprintln!("kmsharness replay: not available yet");
    Exit::Usage
}
