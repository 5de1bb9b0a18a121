//! The `kmsharness` command line: parse → validated config → run → exit status.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use kmsharness::cli;
use kmsharness::cli::activate::ActivateOpts;
use kmsharness::cli::conform::ConformOpts;
use kmsharness::cli::inspect::InspectOpts;
use kmsharness::cli::load::{LoadOpts, ReportCommand};
use kmsharness::cli::replay::ReplayOpts;
use kmsharness::cli::serve::ServeOpts;
use kmsharness::exit::Exit;

/// Validate and benchmark Microsoft KMS hosts.
#[derive(Debug, Parser)]
#[command(version = VERSION, about, after_help = EXIT_HELP)]
struct Opts {
    #[command(subcommand)]
    command: Command,
}

/// `--version`: the crate version and the git commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KMSHARNESS_COMMIT"),
    ")"
);

const EXIT_HELP: &str = "Exit status: 0 every check passed; 1 a check failed; 2 usage or \
configuration error; 3 no connection; 4 RPC failure (fault, bind rejected, undecodable); \
5 the host refused with an HRESULT; 6 local file error; 130 interrupted.";

#[derive(Debug, Subcommand)]
enum Command {
    /// One client's exchanges with a host: every field decoded and every check shown.
    Activate(ActivateOpts),
    /// The bundled reference host.
    Serve(ServeOpts),
    /// A fleet of fake clients against a host (the bundled one by default); latency
    /// histograms and throughput.
    Load(LoadOpts),
    /// Work with load reports.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Decode a pcap/pcapng capture: every message explained and verified.
    Inspect(InspectOpts),
    /// Replay a capture's requests against a host (the bundled one by default).
    Replay(ReplayOpts),
    /// Run the conformance vectors against a host (the bundled one by default).
    Conform(ConformOpts),
    /// Print a shell completion script (e.g. `kmsharness completions bash >
    /// /etc/bash_completion.d/kmsharness`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; `kmsharness man | man -l -`).
    Man,
}

/// Writes `shell`'s completion script for every subcommand and option.
fn completions(shell: clap_complete::Shell) -> Result<Exit, cli::Error> {
    cli::print(|w| {
        clap_complete::generate(shell, &mut Opts::command(), "kmsharness", w);
        Ok(())
    })?;
    Ok(Exit::Success)
}

/// Writes the manual page, generated from the same definitions as `--help`.
fn man() -> Result<Exit, cli::Error> {
    cli::print(|w| clap_mangen::Man::new(Opts::command()).render(w))?;
    Ok(Exit::Success)
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    let (name, result) = match &opts.command {
        Command::Activate(a) => ("activate", cli::activate::main(a)),
        Command::Serve(s) => ("serve", cli::serve::main(s)),
        Command::Load(l) => ("load", cli::load::main(l)),
        Command::Report(r) => ("report merge", cli::load::report_main(r)),
        Command::Inspect(i) => ("inspect", cli::inspect::main(i)),
        Command::Replay(r) => ("replay", cli::replay::main(r)),
        Command::Conform(c) => ("conform", cli::conform::main(c)),
        Command::Completions { shell } => ("completions", completions(*shell)),
        Command::Man => ("man", man()),
    };
    cli::finish(name, result).into()
}
