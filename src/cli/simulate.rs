//! `kmsharness simulate`: options, reading the scenario, running it and printing the report.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::Error;
use crate::exit::Exit;
use crate::simulate::{self, Scenario, report};

const SIMULATE_HELP: &str = "\
The scenario file (TOML) declares the days, the seed, the KMS hosts (SRV priority and weight, \
key groups, periods down) and groups of machines (count, catalog product, arrival, share of VMs, \
distinct machine IDs, periods away, day of leaving); see README \"simulate\" and \
vectors/scenarios/. Every exchange is a whole RPC bind and KMS request, encrypted, answered by a \
bundled host engine on the virtual clock (or a host process: target = \"host:port\" with \
control = \"host:port\" for serve --clock virtual --control; clock = \"real\" and minutes = N \
for any KMS host on its own clock), decrypted and verified. The same file and seed give the \
same JSON report, except summary.exchanges_per_sec (wall-clock).

Exit status:
  0  the simulation ran (whatever the site's outcome)
  2  the scenario is not valid (the message names the key)
  3  a host process (hosts[].target) or its control port cannot be reached, or stopped answering
  6  the scenario cannot be read, or the report cannot be written";

/// Options of `simulate`.
#[derive(Debug, Clone, Args)]
#[command(after_help = SIMULATE_HELP)]
pub struct SimulateOpts {
    /// The scenario (TOML).
    pub scenario: PathBuf,
    /// Also write the JSON report (format `kmsharness-simulate/1`) to FILE (`-`: stdout, the
    /// text report then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Seed of every random choice, instead of the scenario's `seed`.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// Runs `simulate`.
pub fn main(opts: &SimulateOpts) -> Result<Exit, Error> {
    let text = std::fs::read_to_string(&opts.scenario)
        .map_err(|e| Error::read("scenario", &opts.scenario, e))?;
    let mut scenario = Scenario::parse(&text)
        .map_err(|e| Error::Usage(format!("{}: {e}", opts.scenario.display())))?;
    if let Some(seed) = opts.seed {
        scenario.seed = seed;
    }
    if let Some(path) = &opts.json {
        super::check_writable("--json", path)?;
    }
    let days = scenario.days;
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut report = simulate::run(scenario, |p| {
        if tty {
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            let _ = write!(
                std::io::stderr().lock(),
                "\rday {}/{days}, {} exchanges, {:.0}/s ",
                p.day,
                p.exchanges,
                p.exchanges as f64 / secs
            );
        }
    })
    .map_err(|e| match e {
        simulate::SimulateError::Scenario(e) => {
            Error::Usage(format!("{}: {e}", opts.scenario.display()))
        }
        e => Error::Simulate(Box::new(e)),
    })?;
    if tty {
        let _ = writeln!(std::io::stderr().lock());
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    report.summary.exchanges_per_sec = (report.summary.exchanges as f64 / secs).round();
    let to_stderr = opts.json.as_deref().is_some_and(super::is_stdout);
    super::print_text(to_stderr, |w| w.write_all(report::text(&report).as_bytes()))?;
    if let Some(path) = &opts.json {
        super::write_json("--json", path, &report)?;
    }
    Ok(Exit::Success)
}
