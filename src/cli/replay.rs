//! `kmsharness replay`: options, validation into a [`ReplayConfig`], running, printing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::capture::plan::Plan;
use crate::capture::record::Recorder;
use crate::net::client::ClientConfig;
use crate::replay::{ReplayConfig, ReplayMode, ReplayReport, exit_of};

use super::exit::Exit;

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
    /// Reply timeout, seconds.
    #[arg(long = "read-timeout", default_value_t = 5.0)]
    pub read_timeout: f64,
    /// Write the JSON report (format kmsharness-replay/1) to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the replayed exchanges to FILE as a pcap.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

/// Why a config could not be made: the exit status and one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Usage (2) or local file (6).
    pub exit: Exit,
    /// What is wrong, naming the option or file.
    pub message: String,
}

fn usage(message: String) -> ConfigError {
    ConfigError {
        exit: Exit::Usage,
        message,
    }
}

impl ReplayOpts {
    /// Validates the options and reads the capture into a config (target resolution and the
    /// `--record` file happen in [`main`]).
    pub fn config(&self) -> Result<ReplayConfig, ConfigError> {
        let speed = match (self.max, self.speed) {
            (true, _) => None,
            (false, None) => Some(1.0),
            (false, Some(s)) if s.is_finite() && s > 0.0 && s <= MAX_SPEED => Some(s),
            (false, Some(s)) => {
                return Err(usage(format!(
                    "--speed {s}: expected a factor above 0 and at most {MAX_SPEED}"
                )));
            }
        };
        if self.repeat == 0 {
            return Err(usage("--repeat must be at least 1".into()));
        }
        if self.concurrency == 0 {
            return Err(usage("--concurrency must be at least 1".into()));
        }
        if !(self.read_timeout.is_finite()
            && self.read_timeout > 0.0
            && self.read_timeout < 86_400.0)
        {
            return Err(usage(format!(
                "--read-timeout {}: expected seconds above 0",
                self.read_timeout
            )));
        }
        let path = &self.capture;
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            exit: Exit::LocalIo,
            message: format!("{}: {e}", path.display()),
        })?;
        let plan =
            Plan::from_capture(&bytes).map_err(|e| usage(format!("{}: {e}", path.display())))?;
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
                read_timeout: Duration::from_secs_f64(self.read_timeout),
                ..ClientConfig::default()
            },
            record: None,
            keep_exchanges: false,
        })
    }
}

fn write_json(path: &PathBuf, report: &ReplayReport) -> Result<(), String> {
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())? + "\n";
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `replay`.
pub fn main(opts: &ReplayOpts) -> Exit {
    let mut config = match opts.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kmsharness replay: {}", e.message);
            return e.exit;
        }
    };
    if let Some(w) = &config.plan.warning {
        eprintln!(
            "kmsharness replay: {}: read up to a damaged record: {w}",
            opts.capture.display()
        );
    }
    if config.plan.unreadable > 0 {
        eprintln!(
            "kmsharness replay: {}: {} activation calls carry no readable KMS request and are left out",
            opts.capture.display(),
            config.plan.unreadable
        );
    }
    if let Some(path) = &opts.record {
        match Recorder::create(path) {
            Ok(r) => config.record = Some(r),
            Err(e) => {
                eprintln!("kmsharness replay: --record {}: {e}", path.display());
                return Exit::LocalIo;
            }
        }
    }
    let runtime = match super::runtime("replay", None) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    runtime.block_on(async {
        match super::resolve_target("replay", opts.target.as_deref()).await {
            Ok(t) => config.target = t,
            Err(exit) => return exit,
        }
        let interrupt = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let run = match crate::replay::run(&config, interrupt).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("kmsharness replay: {e}");
                return Exit::LocalIo;
            }
        };
        let _ = crate::report::replay::text(&mut std::io::stdout().lock(), &run.report);
        if let (Some(r), Some(path)) = (&config.record, &opts.record)
            && let Err(e) = r.finish()
        {
            eprintln!("kmsharness replay: --record {}: {e}", path.display());
            return Exit::LocalIo;
        }
        if let Some(path) = &opts.json
            && let Err(e) = write_json(path, &run.report)
        {
            eprintln!("kmsharness replay: {e}");
            return Exit::LocalIo;
        }
        exit_of(&run.report)
    })
}
