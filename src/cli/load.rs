//! `kmsharness load` and `kmsharness report merge`: options, validation, running, printing.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::capture::record::Recorder;
use crate::load::mix::Mix;
use crate::load::schedule::{Pacing, Sampling, Templates};
use crate::load::{LoadConfig, LoadReport, Mode};
use crate::net::client::ClientConfig;
use crate::proto::client::session::ClientRpcOptions;
use crate::serve::parse_secs;

use super::exit::Exit;

/// Default measured time when neither `--duration` nor `--requests` bounds the run.
pub const DEFAULT_DURATION_SECS: u64 = 10;
/// Longest run accepted (a load loop must stop by itself).
pub const MAX_DURATION_SECS: i64 = 24 * 3600;

/// Options of `load`.
#[derive(Debug, Clone, Args)]
pub struct LoadOpts {
    /// Host to load (`host[:port]`, `[v6]:port`, `.domain`); without it, the bundled host runs
    /// in-process on a loopback port.
    #[arg(long, short = 't')]
    pub target: Option<String>,
    /// Simulated machines.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Product mix file (JSON or TOML: a `products` list of `{product, weight}`).
    #[arg(long, value_name = "FILE")]
    pub mix: Option<PathBuf>,
    /// `fresh`: a connection and bind per activation; `reuse`: many per connection.
    #[arg(long, value_enum, default_value_t = Mode::Fresh)]
    pub mode: Mode,
    /// Concurrent connections (workers).
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// Open loop: activations per second on a fixed schedule (latency counts from the
    /// scheduled start). Without it, closed loop: as fast as the host answers.
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Measured time, e.g. 30s or 2m (default 10s unless --requests is given).
    #[arg(long, short = 'd')]
    pub duration: Option<String>,
    /// Measured activations.
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// Unmeasured time at the start, e.g. 2s.
    #[arg(long, default_value = "1s")]
    pub warmup: String,
    /// Use the KMS requests of a capture as templates, re-stamped per machine.
    #[arg(long = "from-capture", value_name = "FILE")]
    pub from_capture: Option<PathBuf>,
    /// Write the JSON report (format kmsharness-load/1) to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write an HdrHistogram interval log of total latency to FILE.
    #[arg(long = "hdr-log", value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
    /// Offer NDR64 in binds (0 or 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub ndr64: u8,
    /// Offer bind-time feature negotiation (0 or 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub btfn: u8,
    /// Reply timeout, seconds.
    #[arg(long = "read-timeout", default_value_t = 5.0)]
    pub read_timeout: f64,
    /// Fleet seed (machine IDs, names, products).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Runtime threads (default: the number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress line even on a terminal.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write sampled activations to FILE as a pcap (synthetic Ethernet/IP/TCP framing, real
    /// timestamps); see --record-sample.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// With --record, record every Nth activation (tickets 0, N, 2N, ...; warm-up ones never):
    /// in fresh mode its whole connection, in reuse mode its request and response on a
    /// connection whose handshake and bind are always recorded. 1 records every measured one.
    #[arg(long = "record-sample", value_name = "N", default_value_t = DEFAULT_RECORD_SAMPLE)]
    pub record_sample: u64,
}

/// Activations per recorded one with `--record` (`--record-sample`): enough to show every
/// product and phase of a run while keeping a 10-second run's file to a few megabytes.
pub const DEFAULT_RECORD_SAMPLE: u64 = 100;

/// `report` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ReportCommand {
    /// Merge the JSON reports of several generators into one (histograms added).
    Merge {
        /// Reports to merge.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Write the merged JSON report here.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

fn duration(flag: &str, s: &str) -> Result<Duration, String> {
    let secs = parse_secs(s)
        .filter(|&v| (0..=MAX_DURATION_SECS).contains(&v))
        .ok_or_else(|| {
            format!("{flag} {s:?}: expected a duration like 30s, 2m or 1h (at most 24h)")
        })?;
    Ok(Duration::from_secs(secs as u64))
}

/// Reads the request templates out of a capture.
fn templates(path: &PathBuf) -> Result<Templates, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Templates::from_capture(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

impl LoadOpts {
    /// Validates into a config (target resolution happens in [`main`]).
    pub fn config(&self) -> Result<LoadConfig, String> {
        if self.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0 && r <= 10_000_000.0)
        {
            return Err(format!(
                "--rate {r}: expected activations per second above 0"
            ));
        }
        let mut d = self
            .duration
            .as_deref()
            .map(|s| duration("--duration", s))
            .transpose()?;
        if d.is_none() && self.requests.is_none() {
            d = Some(Duration::from_secs(DEFAULT_DURATION_SECS));
        }
        if self.requests == Some(0) {
            return Err("--requests must be at least 1".into());
        }
        if self.record_sample == 0 {
            return Err("--record-sample must be at least 1".into());
        }
        let mix = match &self.mix {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("--mix {}: {e}", p.display()))?;
                Mix::parse(&p.display().to_string(), &text)?
            }
            None => Mix::default_mix(),
        };
        if !(self.read_timeout.is_finite() && self.read_timeout > 0.0) {
            return Err(format!(
                "--read-timeout {}: expected seconds above 0",
                self.read_timeout
            ));
        }
        Ok(LoadConfig {
            target: None,
            target_label: self.target.clone().unwrap_or_else(|| "embedded".into()),
            clients: self.clients,
            mix,
            mode: self.mode,
            connections: self.connections,
            pacing: Pacing {
                rate: self.rate,
                duration: d,
                requests: self.requests,
                warmup: duration("--warmup", &self.warmup)?,
            },
            client: ClientConfig {
                rpc: ClientRpcOptions {
                    ndr64: self.ndr64 == 1,
                    btfn: self.btfn == 1,
                    ..ClientRpcOptions::default()
                },
                connect_timeout: Duration::from_secs(5),
                read_timeout: Duration::from_secs_f64(self.read_timeout),
            },
            seed: self.seed,
            progress: !self.quiet && std::io::stderr().is_terminal(),
            templates: self.from_capture.as_ref().map(templates).transpose()?,
            hdr_log: self.hdr_log.clone(),
            threads: self
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        })
    }
}

fn write_json(path: &PathBuf, report: &LoadReport) -> Result<(), String> {
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())? + "\n";
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The exit status a report calls for: 130 when interrupted, else its worst failure class (a
/// check 1, no connection 3, RPC 4, an HRESULT 5), else 0.
pub fn exit_of(report: &LoadReport) -> Exit {
    Exit::of_run(
        report.interrupted,
        report.outcome.failed,
        report.outcome.errors.keys(),
    )
}

/// Runs `load`.
pub fn main(opts: &LoadOpts) -> Exit {
    let mut config = match opts.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kmsharness load: {e}");
            return Exit::Usage;
        }
    };
    let runtime = match super::runtime("load", Some(config.threads.max(1))) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    runtime.block_on(async {
        match super::resolve_target("load", opts.target.as_deref()).await {
            Ok(t) => config.target = t,
            Err(exit) => return exit,
        }
        let interrupt = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let record = match &opts.record {
            None => None,
            Some(path) => match Recorder::create(path) {
                Ok(recorder) => Some(Sampling {
                    recorder,
                    every: opts.record_sample,
                }),
                Err(e) => {
                    eprintln!("kmsharness load: --record {}: {e}", path.display());
                    return Exit::LocalIo;
                }
            },
        };
        let recorder = record.as_ref().map(|s| s.recorder.clone());
        let report = match crate::load::run_recorded(&config, interrupt, record).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("kmsharness load: {e}");
                return Exit::LocalIo;
            }
        };
        if let (Some(r), Some(path)) = (&recorder, &opts.record) {
            match r.finish() {
                Ok(sum) => eprintln!(
                    "kmsharness load: recorded {} packets ({} bytes) to {}",
                    sum.packets,
                    sum.bytes,
                    path.display()
                ),
                Err(e) => {
                    eprintln!("kmsharness load: --record {}: {e}", path.display());
                    return Exit::LocalIo;
                }
            }
        }
        let _ = crate::report::load::text(&mut std::io::stdout().lock(), &report);
        if let Some(path) = &opts.json
            && let Err(e) = write_json(path, &report)
        {
            eprintln!("kmsharness load: {e}");
            return Exit::LocalIo;
        }
        exit_of(&report)
    })
}

/// Runs `report merge`.
pub fn report_main(cmd: &ReportCommand) -> Exit {
    let ReportCommand::Merge { reports, output } = cmd;
    let mut parsed = Vec::new();
    for p in reports {
        let text = match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("kmsharness report merge: {}: {e}", p.display());
                return Exit::LocalIo;
            }
        };
        match serde_json::from_str::<LoadReport>(&text) {
            Ok(r) => parsed.push(r),
            Err(e) => {
                eprintln!(
                    "kmsharness report merge: {}: not a load report: {e}",
                    p.display()
                );
                return Exit::Usage;
            }
        }
    }
    let merged = match LoadReport::merge(&parsed) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("kmsharness report merge: {e}");
            return Exit::Usage;
        }
    };
    let _ = crate::report::load::text(&mut std::io::stdout().lock(), &merged);
    if let Some(path) = output
        && let Err(e) = write_json(path, &merged)
    {
        eprintln!("kmsharness report merge: {e}");
        return Exit::LocalIo;
    }
    Exit::Success
}
