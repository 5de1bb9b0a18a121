//! The `kmsharness` command line: parse → validated config → run → exit status.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use kmsharness::cli;
use kmsharness::cli::activate::ActivateOpts;
use kmsharness::cli::conform::ConformOpts;
use kmsharness::cli::fuzz::FuzzOpts;
use kmsharness::cli::inspect::InspectOpts;
use kmsharness::cli::load::{LoadOpts, ReportCommand};
use kmsharness::cli::replay::ReplayOpts;
use kmsharness::cli::serve::ServeOpts;
use kmsharness::cli::simulate::SimulateOpts;
use kmsharness::exit::Exit;

/// Validate and benchmark Microsoft KMS hosts.
#[derive(Debug, Parser)]
#[command(version = VERSION, about, after_help = EXIT_HELP)]
struct Opts {
    /// Extend or override the built-in product catalog with FILE: the shape `activate --list
    /// --json` prints (JSON or TOML), or py-kms's KmsDataBase.xml as it is. Entries with a
    /// built-in SKU or KMS ID (or host key group name) replace it; the rest are added.
    #[arg(long, global = true, value_name = "FILE")]
    catalog: Option<std::path::PathBuf>,
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
configuration error (fuzz: 1 means findings); 3 no connection; 4 RPC failure (fault, bind rejected, undecodable); \
5 the host refused with an HRESULT; 6 local file error; 130 interrupted.";

#[derive(Debug, Subcommand)]
enum Command {
    /// One client's exchanges with a host: every field decoded and every check shown.
    Activate(ActivateOpts),
    /// The bundled reference host.
    Serve(ServeOpts),
    /// A fleet of fake clients against a host (the bundled one by default); latency
    /// histograms and throughput.
    // A later value of an option replaces an earlier one, so that the command line overrides
    // a `--config` file's values, which come first.
    #[command(args_override_self = true)]
    Load(LoadOpts),
    /// Work with saved reports: merge load reports, write any report as an HTML page.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Decode a pcap/pcapng capture: every message explained and verified.
    Inspect(InspectOpts),
    /// Replay a capture's requests against a host (the bundled one by default).
    Replay(ReplayOpts),
    /// Run the conformance vectors against a host (the bundled one by default).
    #[command(args_override_self = true)]
    Conform(ConformOpts),
    /// Fuzz a host (the bundled one by default): structure-aware cases at every layer after a
    /// valid bind, judged by oracles; findings minimised and kept with a pcap.
    Fuzz(FuzzOpts),
    /// A site of Windows clients and KMS hosts over virtual months, deterministic for a
    /// scenario and seed.
    Simulate(SimulateOpts),
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

/// The subcommand's name as errors print it.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Activate(_) => "activate",
        Command::Serve(_) => "serve",
        Command::Load(_) => "load",
        Command::Report(r) => r.name(),
        Command::Inspect(_) => "inspect",
        Command::Replay(_) => "replay",
        Command::Conform(_) => "conform",
        Command::Fuzz(_) => "fuzz",
        Command::Simulate(_) => "simulate",
        Command::Completions { .. } => "completions",
        Command::Man => "man",
    }
}

fn main() -> ExitCode {
    // `load --config FILE` and `conform --config FILE`: the file's options join the command
    // line before clap sees it.
    let args = match cli::config_file::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err((name, e)) => return cli::finish(name, Err(e)).into(),
    };
    let opts = Opts::parse_from(args);
    let name = command_name(&opts.command);
    if let Some(path) = &opts.catalog
        && let Err(e) = cli::load_catalog(path)
    {
        return cli::finish(name, Err(e)).into();
    }
    let result = match &opts.command {
        Command::Activate(a) => cli::activate::main(a),
        Command::Serve(s) => cli::serve::main(s),
        Command::Load(l) => cli::load::main(l),
        Command::Report(r) => cli::load::report_main(r),
        Command::Inspect(i) => cli::inspect::main(i),
        Command::Replay(r) => cli::replay::main(r),
        Command::Conform(c) => cli::conform::main(c),
        Command::Fuzz(f) => cli::fuzz::main(f),
        Command::Simulate(s) => cli::simulate::main(s),
        Command::Completions { shell } => completions(*shell),
        Command::Man => man(),
    };
    cli::finish(name, result).into()
}
