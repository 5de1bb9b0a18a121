//! `kmsharness inspect`: options, validation and running (being written).

use clap::Args;

use super::exit::Exit;

/// Options of `inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectOpts {}

/// Runs `inspect`.
pub fn main(_opts: &InspectOpts) -> Exit {
    eprintln!("kmsharness inspect: not available yet");
    Exit::Usage
}
