//! `kmsharness simulate`: options, reading the scenario, running it and printing the report.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::Error;
use crate::exit::Exit;
use crate::report::junit::{Gate, GatedRun};
use crate::simulate::threshold::{self, Threshold};
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
  0  the simulation ran, and every --threshold held (without one: whatever the site's outcome)
  1  a --threshold failed
  2  the scenario or a --threshold is not valid (the message names the key or expression)
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
    /// Write the report as a self-contained HTML page to FILE: machines by state per day,
    /// counts and requests per host per day, time to first activation, events.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the run's verdicts as JUnit XML to FILE (valid against Jenkins' xUnit schema):
    /// one case for the run and one per --threshold, a `<failure>` when it fails.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Pass/fail criterion evaluated at the end, repeatable: `METRIC OP LIMIT[%][@dayN]` with
    /// METRIC activated, not_activated, out_of_tolerance (oot), absent, requests or failures
    /// at the end of day N (default: the last day), or never_activated over the run; e.g.
    /// activated>=100%@day2, oot==0, failures<1%. A failed one makes the exit status 1.
    #[arg(long, value_name = "EXPR")]
    pub threshold: Vec<String>,
}

/// What `--threshold` expects, for its errors.
const THRESHOLD_EXPECTED: &str = "expected METRIC OP LIMIT[%][@dayN], e.g. activated>=100%@day2, \
    oot==0, never_activated<=5 (see simulate --help)";

/// Parses `--threshold` expressions and checks their days against the scenario's.
fn thresholds(exprs: &[String], days: u32) -> Result<Vec<Threshold>, Error> {
    exprs
        .iter()
        .map(|e| {
            let t = e.parse::<Threshold>().map_err(|why| {
                Error::Usage(format!("--threshold {e:?}: {why}; {THRESHOLD_EXPECTED}"))
            })?;
            match t.day {
                Some(d) if d > days => Err(Error::Usage(format!(
                    "--threshold {e:?}: day {d} is past the scenario's {days} days"
                ))),
                _ => Ok(t),
            }
        })
        .collect()
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
    let gates = thresholds(&opts.threshold, scenario.days)?;
    for (option, path) in [("--json", &opts.json), ("--junit", &opts.junit)] {
        if let Some(path) = path {
            super::check_writable(option, path)?;
        }
    }
    super::check_html(opts.html.as_deref())?;
    let started_at = super::now_rfc3339();
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
    report.thresholds = threshold::evaluate(&gates, &report);
    let to_stderr = opts.json.as_deref().is_some_and(super::is_stdout);
    super::print_text(to_stderr, |w| w.write_all(report::text(&report).as_bytes()))?;
    if let Some(path) = &opts.json {
        super::write_json("--json", path, &report)?;
    }
    if let Some(path) = &opts.html {
        super::write_html("--html", path, &crate::report::html::simulate(&report))?;
    }
    if let Some(path) = &opts.junit {
        let run = GatedRun {
            command: "simulate",
            subject: &opts.scenario.display().to_string(),
            started: &started_at,
            seconds: secs,
        };
        let mut cases = vec![Gate::run(Exit::Success)];
        cases.extend(report.thresholds.iter().map(|t| Gate {
            name: t.expr.clone(),
            passed: t.passed,
            kind: "threshold",
            message: report::measured(t),
        }));
        super::write_junit(path, &run, &cases)?;
    }
    Ok(if report.thresholds.iter().any(|t| !t.passed) {
        Exit::ChecksFailed
    } else {
        Exit::Success
    })
}
