//! `kmsharness replay`: options, validation into a [`ReplayConfig`], running, printing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::capture::plan::Plan;
use crate::capture::record::Recorder;
use crate::load::threshold::{self, Threshold};
use crate::net::client::ClientConfig;
use crate::replay::{ReplayConfig, ReplayMode, exit_of};

use super::Error;
use crate::exit::Exit;

/// Largest speed factor accepted (a million times faster is already "as fast as possible").
pub const MAX_SPEED: f64 = 1_000_000.0;

/// Options of `replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayOpts {
    /// The capture (pcap or pcapng) whose client requests are sent again.
    #[arg(value_name = "CAPTURE")]
    pub capture: PathBuf,
    /// Host to send to (`host[:port]`, `[v6]:port`, `.domain`); without it, the bundled host
    /// runs in-process on a loopback port, holding every host key group, with the client-clock
    /// rule off.
    #[arg(long, short = 't')]
    pub target: Option<String>,
    /// Send each KMS request byte for byte, over as many connections as were captured (a new
    /// bind each; only RPC call ids differ).
    #[arg(long, conflicts_with = "restamp")]
    pub verbatim: bool,
    /// Re-encode each request with a fresh machine ID, the current time and a fresh IV, so that
    /// the host counts a new machine (the default).
    #[arg(long)]
    pub restamp: bool,
    /// Captured pacing divided by X: 2 replays twice as fast (default 1).
    #[arg(long, value_name = "X", conflicts_with = "max")]
    pub speed: Option<f64>,
    /// As fast as possible, up to --concurrency connections at once.
    #[arg(long)]
    pub max: bool,
    /// Replay the whole capture N times, one round after the other.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeat: u32,
    /// With --max, captured connections replayed at once.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub concurrency: usize,
    /// Reply timeout: a duration (500ms, 1m) or seconds (2.5).
    #[arg(long = "read-timeout", default_value = "5s", value_name = "DURATION")]
    pub read_timeout: String,
    /// Write the JSON report (format kmsharness-replay/1) to FILE; `-` writes it to stdout
    /// (the text report then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the report as a self-contained HTML page to FILE: latency percentile spectrum,
    /// throughput and errors per second, errors by class, run parameters.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the run's verdicts as JUnit XML to FILE (valid against Jenkins' xUnit schema):
    /// one case for the run itself and one per --threshold, a `<failure>` exactly when it
    /// fails the exit status.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the replayed exchanges to FILE as a pcap.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Pass/fail criterion evaluated at the end, repeatable, as on `load`: e.g. p99<5ms,
    /// call.p99.9<=20ms, errors<0.1%, errors<=10, rate>=2000. A failed one makes the exit
    /// status 1.
    #[arg(long, value_name = "EXPR")]
    pub threshold: Vec<String>,
}

impl ReplayOpts {
    /// The `--threshold` expressions, parsed.
    pub fn thresholds(&self) -> Result<Vec<Threshold>, Error> {
        super::load::parse_thresholds(&self.threshold)
    }

    /// Validates the options and reads the capture into a config (target resolution and the
    /// `--record` file happen in [`main`]).
    pub fn config(&self) -> Result<ReplayConfig, Error> {
        let speed = match (self.max, self.speed) {
            (true, _) => None,
            (false, None) => Some(1.0),
            (false, Some(s)) if s.is_finite() && s > 0.0 && s <= MAX_SPEED => Some(s),
            (false, Some(s)) => {
                return Err(Error::BadValue {
                    option: "--speed",
                    value: s.to_string(),
                    expected: "a factor above 0 and at most 1000000",
                });
            }
        };
        super::at_least_one("--repeat", u64::from(self.repeat))?;
        super::at_least_one("--concurrency", self.concurrency as u64)?;
        let read_timeout = super::timeout(
            "--read-timeout",
            &self.read_timeout,
            Duration::from_secs(86_400),
            "a duration above 0 and at most 24h, e.g. 5s, 500ms or 2.5 (seconds)",
        )?;
        let path = &self.capture;
        let bytes = std::fs::read(path).map_err(|e| Error::Read {
            option: None,
            path: path.clone(),
            source: e,
        })?;
        let plan = Plan::from_capture(&bytes).map_err(|e| Error::Content {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(ReplayConfig {
            plan: Arc::new(plan),
            capture_label: path.display().to_string(),
            target: None,
            target_label: self.target.clone().unwrap_or_else(|| "embedded".into()),
            mode: if self.verbatim {
                ReplayMode::Verbatim
            } else {
                ReplayMode::Restamp
            },
            speed,
            repeat: self.repeat,
            concurrency: self.concurrency,
            client: ClientConfig {
                read_timeout,
                ..ClientConfig::default()
            },
            record: None,
            keep_exchanges: false,
        })
    }
}

/// Runs `replay`.
pub fn main(opts: &ReplayOpts) -> Result<Exit, Error> {
    let thresholds = opts.thresholds()?;
    let mut config = opts.config()?;
    super::load::check_outputs(&[
        ("--json", opts.json.as_ref()),
        ("--junit", opts.junit.as_ref()),
    ])?;
    let started_at = super::now_rfc3339();
    let started = std::time::Instant::now();
    super::check_html(opts.html.as_deref())?;
    if let Some(w) = &config.plan.warning {
        super::note(format_args!(
            "kmsharness replay: {}: read up to a damaged record: {w}",
            opts.capture.display()
        ));
    }
    if config.plan.unreadable > 0 {
        super::note(format_args!(
            "kmsharness replay: {}: {} activation calls carry no readable KMS request and are left out",
            opts.capture.display(),
            config.plan.unreadable
        ));
    }
    if let Some(path) = &opts.record {
        config.record =
            Some(Recorder::create(path).map_err(|e| Error::write("--record", path, e))?);
    }
    let runtime = super::runtime(None)?;
    runtime.block_on(async {
        config.target = super::resolve_target(opts.target.as_deref()).await?;
        let interrupt = super::shutdown_signal();
        let mut run = crate::replay::run(&config, interrupt).await?;
        run.report.thresholds = threshold::evaluate(&thresholds, &run.report.outcome);
        let json_to_stdout = opts.json.as_deref().is_some_and(super::is_stdout);
        super::print_text(json_to_stdout, |w| {
            crate::report::replay::text(w, &run.report)
        })?;
        if let (Some(r), Some(path)) = (&config.record, &opts.record) {
            r.finish().map_err(|e| Error::write("--record", path, e))?;
        }
        if let Some(path) = &opts.json {
            super::write_json("--json", path, &run.report)?;
        }
        if let Some(path) = &opts.html {
            super::write_html("--html", path, &crate::report::html::replay(&run.report))?;
        }
        if let Some(path) = &opts.junit {
            let gated = crate::report::junit::GatedRun {
                command: "replay",
                subject: &run.report.capture,
                started: &started_at,
                seconds: started.elapsed().as_secs_f64(),
            };
            let gates = crate::report::load::gates(exit_of(&run.report), &run.report.thresholds);
            super::write_junit(path, &gated, &gates)?;
        }
        Ok(super::load::gate(
            exit_of(&run.report),
            &run.report.thresholds,
        ))
    })
}
