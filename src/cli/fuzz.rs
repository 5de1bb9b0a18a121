//! `kmsharness fuzz`: options, validation into a [`FuzzConfig`], running, printing.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::capture::plan::Plan;
use crate::exit::Exit;
use crate::fuzz::case::{Case, Seed};
use crate::fuzz::{Finding, FuzzConfig, Target};

use super::Error;

/// Lines of the oracle's output `--replay` prints.
const REPLAY_DETAIL_LINES: usize = 8;

/// Longest `--duration` accepted.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Options of `fuzz`.
#[derive(Debug, Clone, Args)]
pub struct FuzzOpts {
    /// Host to fuzz (`host[:port]`); only loopback addresses unless --allow-remote. Without
    /// it and --spawn, the bundled host runs in-process (a self-test).
    #[arg(long, short = 't', conflicts_with = "spawn")]
    pub target: Option<String>,
    /// Start the host with this command line, `{port}` replaced by a free loopback port;
    /// its exit status, signals and stderr (sanitizer `ERROR:` lines, panics, assertions)
    /// are watched, and it is restarted after a crash.
    #[arg(long, value_name = "CMD")]
    pub spawn: Option<String>,
    /// Allow a --target that is not a loopback address (fuzzing can crash a host).
    #[arg(long)]
    pub allow_remote: bool,
    /// Stop after this long.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub duration: String,
    /// Stop after this many cases.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub cases: u64,
    /// Seed of the case generator (default: random, printed in the report).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// At most R cases per second.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Start from the requests in these captures as well as the built-in ones.
    #[arg(long, value_name = "PCAP", num_args = 1..)]
    pub corpus: Vec<PathBuf>,
    /// Keep each finding here: a pcap of the exchange, a JSON description, the oracle's output.
    #[arg(long, value_name = "DIR", default_value = "fuzz-findings")]
    pub out: PathBuf,
    /// Write the JSON report (format kmsharness-fuzz/1) to FILE; `-` writes it to stdout.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Wait this long for a reply or a close after each case (longer: a hang).
    #[arg(long = "case-timeout", default_value = "1s", value_name = "DURATION")]
    pub case_timeout: String,
    /// A liveness probe (a valid activation) after every N cases.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub batch: u64,
    /// Instead of fuzzing, re-send a saved finding (its `.json` in --out) byte for byte to the
    /// target and judge it again: exit 1 when it shows again, 0 when not.
    #[arg(long, value_name = "FINDING.json")]
    pub replay: Option<PathBuf>,
}

/// The saved finding `--replay` names, as a case to send.
fn replay_case(path: &std::path::Path) -> Result<Case, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::read("--replay", path, e))?;
    let content = |message: String| Error::Content {
        path: path.to_path_buf(),
        message,
    };
    let finding: Finding = serde_json::from_str(&text).map_err(|e| {
        content(format!(
            "not a fuzz finding (the .json beside its .pcap): {e}"
        ))
    })?;
    crate::fuzz::case_of(&finding).map_err(|e| content(e.to_string()))
}

/// Runs `fuzz`: exit 0 no findings, 1 findings (with `--replay`: 0 when the finding did not
/// show again, 1 when it did).
pub fn main(opts: &FuzzOpts) -> Result<Exit, Error> {
    let duration = super::timeout(
        "--duration",
        &opts.duration,
        MAX_DURATION,
        "a duration of at most 7 days",
    )?;
    let case_timeout = super::timeout(
        "--case-timeout",
        &opts.case_timeout,
        Duration::from_secs(60),
        "a duration of at most 60 s",
    )?;
    super::at_least_one("--cases", opts.cases)?;
    super::at_least_one("--batch", opts.batch)?;
    if let Some(r) = opts.rate
        && !(r > 0.0 && r.is_finite())
    {
        return Err(Error::BadValue {
            option: "--rate",
            value: r.to_string(),
            expected: "a number of cases per second above 0",
        });
    }
    let mut seeds = Seed::builtin();
    for path in &opts.corpus {
        let bytes = std::fs::read(path).map_err(|e| Error::read("--corpus", path, e))?;
        let plan = Plan::from_capture(&bytes)
            .map_err(|e| Error::Usage(format!("--corpus {}: {e}", path.display())))?;
        seeds.extend(plan.bases().map(|base| Seed { base }));
    }
    if let Some(json) = &opts.json {
        super::check_writable("--json", json)?;
    }
    let replay = opts.replay.as_deref().map(replay_case).transpose()?;
    let runtime = super::runtime(None)?;
    runtime.block_on(async {
        let (target, label) = match (&opts.target, &opts.spawn) {
            (Some(t), _) => {
                let addrs = super::resolve_target(Some(t)).await?.unwrap_or_default();
                let Some(addr) = addrs.first().copied() else {
                    return Err(Error::Usage(format!("--target {t}: no address")));
                };
                if !addr.ip().is_loopback() && !opts.allow_remote {
                    return Err(Error::Usage(format!(
                        "--target {t} is not a loopback address: fuzzing can crash a host; add --allow-remote to fuzz it anyway"
                    )));
                }
                (Target::Addr(addr), t.clone())
            }
            (None, Some(cmd)) => (Target::Spawn(cmd.clone()), cmd.clone()),
            (None, None) => (Target::Embedded, "embedded".to_string()),
        };
        let config = FuzzConfig {
            target,
            target_label: label,
            duration,
            cases: opts.cases,
            seed: opts.seed.unwrap_or_else(rand::random),
            rate: opts.rate,
            seeds,
            case_timeout,
            batch: opts.batch,
            out: Some(opts.out.clone()),
            minimise_budget: 48,
        };
        if let Some(case) = replay {
            let verdict = crate::fuzz::replay(&config, &case)
                .await
                .map_err(Error::Fuzz)?;
            let path = opts.replay.as_deref().unwrap_or(std::path::Path::new(""));
            super::print_text(false, |w| match &verdict {
                Some(v) => {
                    writeln!(
                        w,
                        "{}: reproduced against {}: {}",
                        path.display(),
                        config.target_label,
                        v.signature
                    )?;
                    // The oracle's output can be a whole backtrace: its first lines here.
                    for line in v.detail.lines().take(REPLAY_DETAIL_LINES) {
                        writeln!(w, "  {line}")?;
                    }
                    Ok(())
                }
                None => writeln!(
                    w,
                    "{}: did not reproduce against {}",
                    path.display(),
                    config.target_label
                ),
            })?;
            return Ok(if verdict.is_some() {
                Exit::ChecksFailed
            } else {
                Exit::Success
            });
        }
        let report = crate::fuzz::run(&config, super::shutdown_signal())
            .await
            .map_err(Error::Fuzz)?;
        let to_stderr = opts.json.as_deref().is_some_and(super::is_stdout);
        super::print_text(to_stderr, |w| crate::fuzz::print_text(&report, w))?;
        if let Some(json) = &opts.json {
            super::write_json("--json", json, &report)?;
        }
        Ok(if report.interrupted {
            Exit::Interrupted
        } else if report.findings.is_empty() {
            Exit::Success
        } else {
            Exit::ChecksFailed
        })
    })
}
