//! `kmsharness load` and `kmsharness report merge`: options, validation, running, printing.

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::capture::record::Recorder;
use crate::clock::parse_duration;
use crate::load::fleet::MAX_CLIENTS;
use crate::load::mix::Mix;
use crate::load::schedule::{Pacing, Sampling, Templates};
use crate::load::site::SitePacing;
use crate::load::threshold::{self, Threshold};
use crate::load::{LoadConfig, LoadReport, Mode};
use crate::net::client::ClientConfig;
use crate::proto::client::session::ClientRpcOptions;

use super::Error;
use crate::exit::Exit;

/// Default measured time when neither `--duration` nor `--requests` bounds the run.
pub const DEFAULT_DURATION_SECS: u64 = 10;
/// Longest run accepted (a load loop must stop by itself).
pub const MAX_DURATION_SECS: u64 = 24 * 3600;

/// Options of `load`.
#[derive(Debug, Clone, Args)]
pub struct LoadOpts {
    // Read and removed by `cli::config_file` before clap parses; declared for --help, the
    // completions and the manual page.
    /// TOML or JSON file of options under their long names (`clients = 500`, `mode =
    /// "reuse"`, `threshold = ["p99<5ms"]`); options on the command line win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Host to load (`host[:port]`, `[v6]:port`, `.domain`); without it, the bundled host runs
    /// in-process on a loopback port.
    #[arg(long, short = 't')]
    pub target: Option<String>,
    /// Simulated machines (at most 1000000: each is held in memory for the run).
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
    /// The traffic a site of N Windows clients sends in real time, instead of --rate or a
    /// closed loop: each machine asks when its client would (renewal every 7 days once
    /// licensed, a retry every 2 hours while not), starting from steady state (machines
    /// licensed, renewals spread over 7 days) or, with --boot-storm, fresh. N machines in all
    /// (at most 1000000).
    #[arg(long, value_name = "N", conflicts_with_all = ["rate", "clients"])]
    pub site: Option<usize>,
    /// With --site: every machine boots fresh within this time (e.g. 10m), as after a
    /// site-wide power cut or a new image rolled out.
    #[arg(long = "boot-storm", value_name = "DURATION", requires = "site")]
    pub boot_storm: Option<String>,
    /// Measured time, e.g. 30s, 2m or 1h30m (default 10s unless --requests is given).
    #[arg(long, short = 'd')]
    pub duration: Option<String>,
    /// Measured activations.
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// Unmeasured time at the start, e.g. 2s or 500ms.
    #[arg(long, default_value = "1s")]
    pub warmup: String,
    /// Use the KMS requests of a capture as templates, re-stamped per machine.
    #[arg(long = "from-capture", value_name = "FILE")]
    pub from_capture: Option<PathBuf>,
    /// Write the JSON report (format kmsharness-load/1) to FILE; `-` writes it to stdout (the
    /// text report then goes to stderr).
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
    /// Write an HdrHistogram interval log of total latency to FILE.
    #[arg(long = "hdr-log", value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
    /// Offer NDR64 in binds (0 or 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub ndr64: u8,
    /// Offer bind-time feature negotiation (0 or 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub btfn: u8,
    /// Reply timeout: a duration (500ms, 1m) or seconds (2.5).
    #[arg(long = "read-timeout", default_value = "5s", value_name = "DURATION")]
    pub read_timeout: String,
    /// Fleet seed (machine IDs, names, products).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of the machines that are virtual machines and set the request's VM flag, 0 to 1.
    #[arg(long = "vm-share", default_value_t = crate::load::fleet::DEFAULT_VM_SHARE)]
    pub vm_share: f64,
    /// Runtime threads (default: the number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Local address connections leave from, repeatable, or an IPv4 range `A-B`
    /// (`127.0.0.1-127.0.0.8`); workers take them in turn. One source and destination address
    /// pair allows about 28,000 connections per TIME_WAIT period (60 s on Linux): several
    /// sources multiply that for --mode fresh against one host.
    #[arg(long, value_name = "IP")]
    pub source: Vec<String>,
    /// Loopback addresses the bundled host listens on without --target (127.0.0.1 up), each a
    /// destination that workers take in turn, for the same reason as --source.
    #[arg(long, value_name = "N", default_value_t = crate::load::EMBEDDED_ADDRESSES)]
    pub embedded_addresses: u8,
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
    /// Pass/fail criterion evaluated at the end, repeatable: `[PHASE.]p50|p90|p99|p99.9|
    /// p99.99|min|mean|max` with us/ms/s (e.g. p99<5ms, call.p99.9<=20ms), `errors` as a count
    /// or percentage (errors<0.1%), `rate` in validated activations/s (rate>=2000). A failed
    /// one makes the exit status 1.
    #[arg(long, value_name = "EXPR")]
    pub threshold: Vec<String>,
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
        /// Write the merged JSON report here (`-`: stdout, the text report then on stderr).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Write a saved JSON report (load, merged load, replay, conform or inspect; the kind
    /// read from its "format") as one self-contained HTML page with plots.
    Html {
        /// The JSON report.
        report: PathBuf,
        /// Write the page here (`-`: stdout).
        #[arg(long, short = 'o', value_name = "FILE", required = true)]
        output: PathBuf,
    },
}

impl ReportCommand {
    /// Its name as errors print it.
    pub fn name(&self) -> &'static str {
        match self {
            ReportCommand::Merge { .. } => "report merge",
            ReportCommand::Html { .. } => "report html",
        }
    }
}

fn duration(option: &'static str, s: &str) -> Result<Duration, Error> {
    parse_duration(s)
        .filter(|d| d.as_secs() <= MAX_DURATION_SECS)
        .ok_or_else(|| Error::BadValue {
            option,
            value: format!("{s:?}"),
            expected: "a duration like 30s, 2m, 1h30m or 500ms (at most 24h)",
        })
}

/// What `--threshold` expects, for its errors.
pub const THRESHOLD_EXPECTED: &str = "expected [PHASE.]METRIC OP LIMIT: a latency \
    (p50, p90, p99, p99.9, p99.99, min, mean, max of connect, bind, call or total; total by \
    default) with us, ms or s; errors as a count or a percentage of sent; rate in validated \
    activations/s; OP one of <, <=, >, >=, == (e.g. p99<5ms, call.p99<2ms, errors<0.1%, \
    errors<=10, rate>=2000)";

/// Parses `--threshold` expressions; a bad one is a usage error naming it.
pub fn parse_thresholds(exprs: &[String]) -> Result<Vec<Threshold>, Error> {
    exprs
        .iter()
        .map(|e| {
            e.parse::<Threshold>().map_err(|why| {
                Error::Usage(format!("--threshold {e:?}: {why}; {THRESHOLD_EXPECTED}"))
            })
        })
        .collect()
}

/// Checks before a run that every output path given can be written (`-` for stdout aside).
pub fn check_outputs(outputs: &[(&'static str, Option<&PathBuf>)]) -> Result<(), Error> {
    for (option, path) in outputs {
        if let Some(path) = path {
            super::check_writable(option, path)?;
        }
    }
    Ok(())
}

/// Reads the request templates out of a capture.
fn templates(path: &PathBuf) -> Result<Templates, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::read("--from-capture", path, e))?;
    Templates::from_capture(&bytes).map_err(|e| Error::Content {
        path: path.clone(),
        message: e.to_string(),
    })
}

impl LoadOpts {
    /// The `--threshold` expressions, parsed.
    pub fn thresholds(&self) -> Result<Vec<Threshold>, Error> {
        parse_thresholds(&self.threshold)
    }

    /// Validates into a config (target resolution happens in [`main`]).
    pub fn config(&self) -> Result<LoadConfig, Error> {
        let (clients_option, clients) = match self.site {
            Some(n) => ("--site", n),
            None => ("--clients", self.clients),
        };
        super::at_least_one(clients_option, clients as u64)?;
        if clients > MAX_CLIENTS {
            return Err(Error::BadValue {
                option: clients_option,
                value: clients.to_string(),
                expected: "at most 1000000 (every machine is held in memory)",
            });
        }
        super::at_least_one("--connections", self.connections as u64)?;
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0 && r <= 10_000_000.0)
        {
            return Err(Error::BadValue {
                option: "--rate",
                value: r.to_string(),
                expected: "activations per second above 0 (at most 10,000,000)",
            });
        }
        let mut d = self
            .duration
            .as_deref()
            .map(|s| duration("--duration", s))
            .transpose()?;
        if d.is_none() && self.requests.is_none() {
            d = Some(Duration::from_secs(DEFAULT_DURATION_SECS));
        }
        if let Some(n) = self.requests {
            super::at_least_one("--requests", n)?;
        }
        super::at_least_one("--record-sample", self.record_sample)?;
        let mix = match &self.mix {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::read("--mix", p, e))?;
                Mix::parse(&p.display().to_string(), &text)?
            }
            None => Mix::default_mix(),
        };
        let read_timeout = super::timeout(
            "--read-timeout",
            &self.read_timeout,
            Duration::from_secs(MAX_DURATION_SECS),
            "a duration above 0 and at most 24h, e.g. 5s, 500ms or 2.5 (seconds)",
        )?;
        Ok(LoadConfig {
            target: None,
            target_label: self.target.clone().unwrap_or_else(|| "embedded".into()),
            clients,
            mix,
            mode: self.mode,
            connections: self.connections,
            pacing: Pacing {
                rate: self.rate,
                duration: d,
                requests: self.requests,
                warmup: duration("--warmup", &self.warmup)?,
                site: self
                    .site
                    .map(|_| -> Result<SitePacing, Error> {
                        Ok(SitePacing {
                            boot_storm: self
                                .boot_storm
                                .as_deref()
                                .map(|s| duration("--boot-storm", s))
                                .transpose()?,
                            seed: self.seed,
                        })
                    })
                    .transpose()?,
            },
            client: ClientConfig {
                rpc: ClientRpcOptions {
                    ndr64: self.ndr64 == 1,
                    btfn: self.btfn == 1,
                    ..ClientRpcOptions::default()
                },
                connect_timeout: Duration::from_secs(5),
                read_timeout,
                source: None,
            },
            sources: self
                .source
                .iter()
                .map(|s| sources(s))
                .collect::<Result<Vec<_>, _>>()?
                .concat(),
            embedded_addresses: match self.embedded_addresses {
                0 => {
                    return Err(Error::BadValue {
                        option: "--embedded-addresses",
                        value: "0".into(),
                        expected: "1 to 255 loopback addresses",
                    });
                }
                n => n,
            },
            seed: self.seed,
            vm_share: if (0.0..=1.0).contains(&self.vm_share) {
                self.vm_share
            } else {
                return Err(Error::BadValue {
                    option: "--vm-share",
                    value: self.vm_share.to_string(),
                    expected: "a share from 0 to 1",
                });
            },
            progress: !self.quiet && std::io::stderr().is_terminal(),
            templates: self.from_capture.as_ref().map(templates).transpose()?,
            hdr_log: self.hdr_log.clone(),
            threads: self
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        })
    }
}

/// Longest `--source` range: more addresses than this add nothing (each brings a whole
/// ephemeral port range) and would be a typo.
const MAX_SOURCES: u32 = 256;

/// The addresses of one `--source` value: an address, or an IPv4 range `A-B`.
fn sources(value: &str) -> Result<Vec<IpAddr>, Error> {
    let bad = |expected| Error::BadValue {
        option: "--source",
        value: value.to_owned(),
        expected,
    };
    let Some((a, b)) = value.split_once('-') else {
        return value
            .parse::<IpAddr>()
            .map(|ip| vec![ip])
            .map_err(|_| bad("an IP address or an IPv4 range such as 127.0.0.1-127.0.0.8"));
    };
    let (Ok(a), Ok(b)) = (a.parse::<Ipv4Addr>(), b.parse::<Ipv4Addr>()) else {
        return Err(bad("an IPv4 range such as 127.0.0.1-127.0.0.8"));
    };
    let (a, b) = (u32::from(a), u32::from(b));
    if b < a || b - a >= MAX_SOURCES {
        return Err(bad("a range of 1 to 256 addresses, the lower first"));
    }
    Ok((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))).collect())
}

/// The exit status a report calls for: 130 when interrupted, else its worst failure class (a
/// check 1, no connection 3, RPC 4, an HRESULT 5), else 1 when no measured activation was
/// validated (a host so slow that nothing was measured after the warm-up included) or a
/// threshold failed, else 0.
pub fn exit_of(report: &LoadReport) -> Exit {
    gate(run_exit(report), &report.thresholds)
}

/// The exit status of the run itself, thresholds aside.
fn run_exit(report: &LoadReport) -> Exit {
    Exit::of_run(
        report.interrupted,
        report.outcome.ok == 0,
        report.outcome.failed,
        report.outcome.errors.keys().copied(),
    )
}

/// `exit`, or 1 when it is 0 and a threshold failed.
pub fn gate(exit: Exit, thresholds: &[threshold::ThresholdResult]) -> Exit {
    if threshold::any_failed(thresholds) {
        exit.worst(Exit::ChecksFailed)
    } else {
        exit
    }
}

/// Runs `load`.
pub fn main(opts: &LoadOpts) -> Result<Exit, Error> {
    let thresholds = opts.thresholds()?;
    let mut config = opts.config()?;
    check_outputs(&[
        ("--json", opts.json.as_ref()),
        ("--hdr-log", opts.hdr_log.as_ref()),
        ("--junit", opts.junit.as_ref()),
    ])?;
    let started_at = super::now_rfc3339();
    let started = std::time::Instant::now();
    super::check_html(opts.html.as_deref())?;
    let record = match &opts.record {
        None => None,
        Some(path) => Some(Sampling {
            recorder: Recorder::create(path).map_err(|e| Error::write("--record", path, e))?,
            every: opts.record_sample,
        }),
    };
    let json_to_stdout = opts.json.as_deref().is_some_and(super::is_stdout);
    let runtime = super::runtime(Some(config.threads.max(1)))?;
    runtime.block_on(async {
        config.target = super::resolve_target(opts.target.as_deref()).await?;
        let interrupt = super::shutdown_signal();
        let recorder = record.as_ref().map(|s| s.recorder.clone());
        let mut report = crate::load::run_recorded(&config, interrupt, record).await?;
        report.thresholds = threshold::evaluate(&thresholds, &report.outcome);
        if let (Some(r), Some(path)) = (&recorder, &opts.record) {
            let sum = r.finish().map_err(|e| Error::write("--record", path, e))?;
            super::note(format_args!(
                "kmsharness load: recorded {} packets ({} bytes) to {}",
                sum.packets,
                sum.bytes,
                path.display()
            ));
        }
        super::print_text(json_to_stdout, |w| crate::report::load::text(w, &report))?;
        if let Some(path) = &opts.json {
            super::write_json("--json", path, &report)?;
        }
        if let Some(path) = &opts.html {
            super::write_html("--html", path, &crate::report::html::load(&report))?;
        }
        if let Some(path) = &opts.junit {
            let run = crate::report::junit::GatedRun {
                command: "load",
                subject: &report.target,
                started: &started_at,
                seconds: started.elapsed().as_secs_f64(),
            };
            let gates = crate::report::load::gates(run_exit(&report), &report.thresholds);
            super::write_junit(path, &run, &gates)?;
        }
        Ok(exit_of(&report))
    })
}

/// Runs `report merge`.
pub fn report_main(cmd: &ReportCommand) -> Result<Exit, Error> {
    let (reports, output) = match cmd {
        ReportCommand::Merge { reports, output } => (reports, output),
        ReportCommand::Html { report, output } => return report_html(report, output),
    };
    check_outputs(&[("-o", output.as_ref())])?;
    let mut parsed = Vec::new();
    for p in reports {
        let text = std::fs::read_to_string(p).map_err(|e| Error::Read {
            option: None,
            path: p.clone(),
            source: e,
        })?;
        let report = serde_json::from_str::<LoadReport>(&text).map_err(|e| Error::Content {
            path: p.clone(),
            message: format!("not a load report: {e}"),
        })?;
        parsed.push(report);
    }
    let merged = LoadReport::merge(&parsed)?;
    let json_to_stdout = output.as_deref().is_some_and(super::is_stdout);
    super::print_text(json_to_stdout, |w| crate::report::load::text(w, &merged))?;
    if let Some(path) = output {
        super::write_json("-o", path, &merged)?;
    }
    Ok(Exit::Success)
}

/// The largest report `report html` reads, bytes: an inspect report of a long capture runs to
/// hundreds of MiB; past this it is refused unread rather than exhausting memory.
const MAX_REPORT_LEN: u64 = 1 << 30;

/// Runs `report html`: a saved JSON report of any kind with a page, as one HTML file.
fn report_html(report: &Path, output: &Path) -> Result<Exit, Error> {
    use std::io::Read;
    super::check_writable("-o", output)?;
    let read = |e| Error::Read {
        option: None,
        path: report.to_owned(),
        source: e,
    };
    let mut text = String::new();
    std::fs::File::open(report)
        .map_err(read)?
        .take(MAX_REPORT_LEN + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    let content = |message: String| Error::Content {
        path: report.to_owned(),
        message,
    };
    if text.len() as u64 > MAX_REPORT_LEN {
        return Err(content(format!(
            "larger than {} MiB: not a report",
            MAX_REPORT_LEN >> 20
        )));
    }
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| content(format!("not JSON: {e}")))?;
    let html = crate::report::html::render(&doc).map_err(|e| content(e.to_string()))?;
    super::write_html("-o", output, &html)?;
    Ok(Exit::Success)
}
