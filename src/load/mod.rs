//! `load`: a fleet of simulated clients against a host, closed or open loop, every response
//! verified; latency histograms per phase, throughput over time, errors by class.

pub mod cpu;
pub mod fleet;
pub mod mix;
pub mod progress;
pub mod schedule;
pub mod site;
pub mod stats;
pub mod threshold;
pub mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::host::{HostSetup, RunningHost};
use crate::net::client::ClientConfig;

use self::fleet::Fleet;
use self::mix::Mix;
use self::schedule::{Pacing, Sampling, Shared, Templates};
use self::stats::{Outcome, PhaseSummary, Stats};

/// Connection handling.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[schemars(
    description = "Connection handling: `fresh` opens a TCP connection and binds for every \
        activation, as real clients do; `reuse` sends many activations over each connection."
)]
pub enum Mode {
    /// A new TCP connection and RPC bind per activation, as real clients do.
    Fresh,
    /// Many activations per connection.
    Reuse,
}

impl core::fmt::Display for Mode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Mode::Fresh => "fresh",
            Mode::Reuse => "reuse",
        })
    }
}

/// Everything a load run needs, validated.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Host addresses; `None` starts the bundled host in-process on a loopback port.
    pub target: Option<Vec<SocketAddr>>,
    /// The target as the user gave it, for the report.
    pub target_label: String,
    /// Simulated machines.
    pub clients: usize,
    /// Their products.
    pub mix: Mix,
    /// Connection handling.
    pub mode: Mode,
    /// Concurrent workers (connections).
    pub connections: usize,
    /// Bounds and pacing.
    pub pacing: Pacing,
    /// Client options and timeouts.
    pub client: ClientConfig,
    /// Seed of the fleet (machine IDs, names, products).
    pub seed: u64,
    /// The share of machines that set the VM flag (0 to 1).
    pub vm_share: f64,
    /// Live progress line on stderr.
    pub progress: bool,
    /// Captured requests to use as templates.
    pub templates: Option<Templates>,
    /// HdrHistogram interval log of total latency.
    pub hdr_log: Option<PathBuf>,
    /// Threads of the async runtime.
    pub threads: usize,
    /// Local addresses connections leave from, taken in turn by the workers (`--source`).
    pub sources: Vec<std::net::IpAddr>,
    /// Loopback addresses the bundled host listens on (`--embedded-addresses`).
    pub embedded_addresses: u8,
}

/// Loopback addresses the bundled host listens on by default: each destination address brings
/// its own ephemeral port range, and one pair's range, held by TIME_WAIT, caps fresh
/// connections at about 14,000/s (measured on this project's 2-core machine). Linux answers on
/// all of 127.0.0.0/8; elsewhere only 127.0.0.1 is configured.
pub const EMBEDDED_ADDRESSES: u8 = if cfg!(target_os = "linux") { 4 } else { 1 };

/// Format identifier of load reports.
pub const REPORT_FORMAT: &str = "kmsharness-load/1";

/// CPU accounting of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[schemars(description = "CPU accounting of a run.", deny_unknown_fields)]
pub struct CpuReport {
    /// User plus system CPU seconds the process used during the measured interval.
    #[schemars(
        description = "User plus system CPU seconds the process used during the measured \
        interval, from the end of the warm-up to the end of the run (summed over merged \
        reports).",
        range(min = 0)
    )]
    pub process_secs: f64,
    /// Of that, per validated activation, microseconds.
    #[schemars(
        description = "CPU microseconds per validated activation: `process_secs * 1e6 / \
        max(ok, 1)`; how many generator cores a target rate needs.",
        range(min = 0)
    )]
    pub micros_per_activation: f64,
    /// Whether the bundled host ran in the same process (then its work is included).
    #[schemars(
        description = "Whether the bundled host ran in the same process, so its work is \
        included."
    )]
    pub includes_embedded_host: bool,
}

/// The report of a run (JSON schema: `docs/load-report.schema.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[schemars(
    title = "kmsharness load report",
    description = "The JSON report of `kmsharness load --json FILE` and of `kmsharness report \
        merge -o FILE` (format kmsharness-load/1). Counts cover the measured part of the run only \
        (after the warm-up). Latencies are in microseconds. Several reports of generators that \
        ran at the same time against one host merge exactly, because every phase carries its full \
        histogram.",
    extend("$id" = "https://github.com/kmsharness/kmsharness/docs/load-report.schema.json"),
    deny_unknown_fields
)]
pub struct LoadReport {
    /// `kmsharness-load/1`.
    #[schemars(
        description = "Format identifier; `report merge` rejects any other value.",
        extend("const" = "kmsharness-load/1")
    )]
    pub format: String,
    /// Target as given, or `embedded`.
    #[schemars(
        description = "The target as the user gave it (`host[:port]`, `[v6]:port`, \
        `.domain`), or `embedded` when the bundled host served the run. A merged report keeps the \
        first report's."
    )]
    pub target: String,
    /// Whether the bundled host served the run.
    #[schemars(
        description = "Whether the bundled host ran in-process on a loopback port (no \
        --target). Its CPU time is then part of `cpu.process_secs`."
    )]
    pub embedded: bool,
    /// Connection handling.
    #[schemars(
        description = "Connection handling: `fresh` opens a TCP connection and binds for \
        every activation, as real clients do; `reuse` sends many activations over each \
        connection."
    )]
    pub mode: Mode,
    /// Simulated machines.
    #[schemars(
        description = "Simulated machines in the fleet (summed over merged reports).",
        range(min = 1)
    )]
    pub clients: usize,
    /// Machines an answer activated.
    #[serde(default)]
    #[schemars(
        description = "Machines of the fleet an answer activated during the run (warm-up \
        included), as a Windows client judges it: a response passing every check whose count \
        reached the product's threshold (25 for Windows clients, 5 for servers and Office). A \
        fleet smaller than its threshold never activates on a fresh host. Summed over merged \
        reports.",
        range(min = 0)
    )]
    pub activated: u64,
    /// Workers.
    #[schemars(
        description = "Concurrent workers, each holding at most one connection (summed \
        over merged reports).",
        range(min = 1)
    )]
    pub connections: usize,
    /// Open-loop rate, or null for closed loop.
    #[schemars(
        description = "Open loop: scheduled activations per second (summed over merged \
        reports). Null for a closed loop (workers send as fast as the host answers), and for a \
        merge in which any report was closed loop.",
        extend("exclusiveMinimum" = 0)
    )]
    pub rate: Option<f64>,
    /// Warm-up, seconds.
    #[schemars(
        description = "Unmeasured time at the start, seconds: activations scheduled (open \
        loop) or started (closed loop) during it are sent but not counted.",
        range(min = 0)
    )]
    pub warmup_secs: f64,
    /// When the measured interval began: Unix seconds.
    #[schemars(
        description = "Wall time the measured interval began, Unix seconds. A merged report \
        holds the earliest; its throughput is taken over the union of the runs' intervals, so \
        two runs one after the other are not counted as one run at twice the rate.",
        range(min = 0)
    )]
    pub started_at: f64,
    /// Measured seconds (after warm-up).
    #[schemars(
        description = "Measured time, seconds: from the end of the warm-up to the last \
        worker's end. A merged report holds the longest.",
        range(min = 0)
    )]
    pub duration_secs: f64,
    /// Whether Ctrl-C cut the run short.
    #[schemars(
        description = "Whether Ctrl-C cut the run short (true if any merged report was); \
        the counts then cover what was sent until then."
    )]
    pub interrupted: bool,
    /// Counts, errors, throughput, latency and timeline.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// CPU time, when the platform reports it.
    #[schemars(
        description = "CPU time of the generator process during the run, or null where the \
        platform does not report it (or when a merged report lacks it)."
    )]
    pub cpu: Option<CpuReport>,
    /// Number of reports merged into this one (1 for a single run).
    #[schemars(
        description = "Number of single-run reports this one combines (1 for a single \
        run).",
        range(min = 1)
    )]
    pub merged: usize,
    /// `--threshold` expressions evaluated at the end of the run.
    #[serde(default)]
    #[schemars(
        description = "The `--threshold` expressions, in the order given, each evaluated \
        against this report at the end of the run; empty when none was given (and in a merged \
        report: thresholds apply to one run)."
    )]
    pub thresholds: Vec<threshold::ThresholdResult>,
    /// The site whose traffic the run sent (`--site`), or null.
    #[serde(default)]
    #[schemars(
        description = "The site whose traffic the run sent (`--site N`): null for a run \
        paced by `--rate` or closed loop. A merged report keeps the first report's."
    )]
    pub site: Option<SiteReport>,
    /// Open loop: how well the generator kept its schedule, or null.
    #[serde(default)]
    #[schemars(
        description = "Open loop at `--rate`: how well the generator kept its own schedule, \
        apart from the host's latency; null for a closed loop and a site."
    )]
    pub schedule: Option<ScheduleReport>,
}

/// How well an open-loop run kept its schedule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ScheduleReport {
    /// How late measured requests started against their scheduled time.
    #[schemars(
        description = "How late each measured request was sent against its scheduled time, \
        µs (recorded from 1 µs): the generator's own lateness. Latency histograms count from the \
        scheduled time, so this is part of them; when it is small against `call`, the \
        percentiles describe the host."
    )]
    pub lateness: PhaseSummary,
    /// Measured requests that were due and never sent.
    #[schemars(
        description = "Measured requests that were due before the run's time was up but not \
        sent, because every connection was busy (the host or the generator could not keep the \
        rate): counted instead of sent late, as wrk2 and k6 do, so `-d` bounds the run. Not \
        part of `sent`.",
        range(min = 0)
    )]
    pub not_sent: u64,
}

/// What a `--site` run was, and where its machines ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SiteReport {
    /// Machines of the site.
    #[schemars(description = "Machines of the site (`--site N`).", range(min = 1))]
    pub machines: usize,
    /// Seconds over which every machine booted fresh, or null for steady state.
    #[schemars(
        description = "`--boot-storm`: every machine booted fresh within this many seconds; \
        null for a site in steady state, its machines licensed and renewals spread over the \
        7-day renewal interval."
    )]
    pub boot_storm_secs: Option<f64>,
    /// Requests per second of the site in steady state.
    #[schemars(
        description = "Requests per second the site sends in steady state: machines / 7 \
        days (one renewal each per renewal interval; retries every 2 hours come on top while \
        machines are not activated).",
        range(min = 0)
    )]
    pub steady_rate: f64,
    /// Machines licensed at the end of the run.
    #[schemars(
        description = "Machines whose client was licensed when the run ended, as a Windows \
        client judges it.",
        range(min = 0)
    )]
    pub licensed_at_end: usize,
}

impl LoadReport {
    fn from_stats(
        config: &LoadConfig,
        stats: &Stats,
        measured: Measured,
        interrupted: bool,
        reconnects: u64,
        cpu: Option<CpuReport>,
    ) -> LoadReport {
        let secs = measured.duration.as_secs_f64().max(1e-9);
        LoadReport {
            format: REPORT_FORMAT.into(),
            target: config.target_label.clone(),
            embedded: config.target.is_none(),
            mode: config.mode,
            clients: config.clients,
            activated: stats.activated,
            connections: config.connections,
            rate: config.pacing.rate,
            warmup_secs: config.pacing.warmup.as_secs_f64(),
            started_at: measured.started_at,
            duration_secs: secs,
            interrupted,
            outcome: Outcome::of(stats, reconnects, secs),
            cpu,
            merged: 1,
            thresholds: Vec::new(),
            site: None,
            schedule: None,
        }
    }

    /// Merges reports of generators that ran against one host: histograms are added (not
    /// averaged), counts and timelines summed, throughput taken over the union of their
    /// measured intervals (from the earliest start to the latest end). Reports of different
    /// modes (fresh and reuse) measure different things and are refused.
    pub fn merge(reports: &[LoadReport]) -> Result<LoadReport, MergeError> {
        let Some(first) = reports.first() else {
            return Err(MergeError::Empty);
        };
        let mut out = first.clone();
        let mut phases: BTreeMap<String, hdrhistogram::Histogram<u64>> = BTreeMap::new();
        for (i, r) in reports.iter().enumerate() {
            if r.format != REPORT_FORMAT {
                return Err(MergeError::Format {
                    report: i + 1,
                    found: r.format.clone(),
                });
            }
            for (name, p) in &r.outcome.phases {
                let histogram = |source| MergeError::Histogram {
                    report: i + 1,
                    phase: name.clone(),
                    source,
                };
                let h = p.decode().map_err(histogram)?;
                match phases.get_mut(name) {
                    Some(acc) => acc.add(&h).map_err(|e| {
                        histogram(stats::HistogramError::Incompatible(format!("{e:?}")))
                    })?,
                    None => {
                        phases.insert(name.clone(), h);
                    }
                }
            }
            if i == 0 {
                continue;
            }
            out.outcome.sent += r.outcome.sent;
            out.outcome.ok += r.outcome.ok;
            out.outcome.failed += r.outcome.failed;
            out.outcome.reconnects += r.outcome.reconnects;
            out.clients += r.clients;
            out.activated += r.activated;
            out.connections += r.connections;
            out.interrupted |= r.interrupted;
            if r.mode != first.mode {
                return Err(MergeError::Modes {
                    report: i + 1,
                    first: first.mode,
                    found: r.mode,
                });
            }
            out.rate = match (out.rate, r.rate) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
            for (k, v) in &r.outcome.errors {
                *out.outcome.errors.entry(*k).or_insert(0) += v;
            }
            stats::add_series(&mut out.outcome.timeline, &r.outcome.timeline);
            stats::add_series(&mut out.outcome.failed_timeline, &r.outcome.failed_timeline);
            out.schedule = match (&out.schedule, &r.schedule) {
                (Some(a), Some(b)) => {
                    let decode = |s: &ScheduleReport| {
                        s.lateness.decode().map_err(|source| MergeError::Histogram {
                            report: i + 1,
                            phase: "lateness".into(),
                            source,
                        })
                    };
                    let mut h = decode(a)?;
                    let _ = h.add(decode(b)?);
                    Some(ScheduleReport {
                        lateness: PhaseSummary::of(&h),
                        not_sent: a.not_sent + b.not_sent,
                    })
                }
                _ => None,
            };
            out.cpu = match (&out.cpu, &r.cpu) {
                (Some(a), Some(b)) => Some(CpuReport {
                    process_secs: a.process_secs + b.process_secs,
                    micros_per_activation: 0.0,
                    includes_embedded_host: a.includes_embedded_host || b.includes_embedded_host,
                }),
                _ => None,
            };
        }
        out.outcome.phases = phases
            .iter()
            .map(|(k, h)| (k.clone(), PhaseSummary::of(h)))
            .collect();
        let begin = reports
            .iter()
            .map(|r| r.started_at)
            .fold(f64::INFINITY, f64::min);
        let end = reports
            .iter()
            .map(|r| r.started_at + r.duration_secs)
            .fold(f64::NEG_INFINITY, f64::max);
        out.started_at = begin;
        out.duration_secs = (end - begin).max(1e-9);
        out.outcome.throughput = out.outcome.ok as f64 / out.duration_secs;
        if let Some(c) = &mut out.cpu {
            c.micros_per_activation = c.process_secs * 1e6 / out.outcome.ok.max(1) as f64;
        }
        out.merged = reports.iter().map(|r| r.merged).sum();
        out.thresholds.clear();
        Ok(out)
    }
}

/// The measured interval of a run.
#[derive(Debug, Clone, Copy)]
struct Measured {
    /// Unix seconds at its start.
    started_at: f64,
    /// Its length.
    duration: Duration,
}

/// Why a load run could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bundled host did not start.
    #[error(transparent)]
    Host(#[from] crate::host::StartError),
    /// Neither a target nor the bundled host gave an address.
    #[error("no target address")]
    NoTarget,
    /// The open-loop pacer's thread could not be started.
    #[error("cannot start the pacer thread: {0}")]
    Pacer(std::io::Error),
    /// The interval log could not be written.
    #[error(transparent)]
    IntervalLog(#[from] progress::LogError),
}

/// Why reports cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// No report was given.
    #[error("nothing to merge")]
    Empty,
    /// A report is not a load report.
    #[error("report {report}: format {found:?} is not {REPORT_FORMAT}")]
    Format {
        /// Its position, from 1.
        report: usize,
        /// Its format tag.
        found: String,
    },
    /// Reports of different modes.
    #[error("report {report}: mode {found} cannot be merged with mode {first} (report 1)")]
    Modes {
        /// Its position, from 1.
        report: usize,
        /// The first report's mode.
        first: Mode,
        /// Its mode.
        found: Mode,
    },
    /// A report's histogram cannot be read or added.
    #[error("report {report}: phase {phase}: {source}")]
    Histogram {
        /// Its position, from 1.
        report: usize,
        /// The phase.
        phase: String,
        /// Why.
        source: stats::HistogramError,
    },
}

/// The bundled host as `load` starts it when no target is given: loopback, a free port, quiet,
/// the default key groups (which serve the default mix) and, for each product of `mix` they do
/// not activate, a group that does, so a self-test of any mix is not refused.
pub async fn start_embedded(mix: &Mix) -> Result<RunningHost, crate::host::StartError> {
    start_embedded_on(mix, 1).await
}

/// [`start_embedded`] listening on `addresses` loopback addresses, 127.0.0.1 up.
pub async fn start_embedded_on(
    mix: &Mix,
    addresses: u8,
) -> Result<RunningHost, crate::host::StartError> {
    let mut setup = HostSetup::loopback();
    setup.listen.listen = (1..=addresses.max(1))
        .map(|i| SocketAddr::from(([127, 0, 0, i], 0)))
        .collect();
    for share in mix.shares() {
        let groups = &mut setup.host.key_groups;
        if !groups.iter().any(|g| g.activates_sku(share.sku))
            && let Some(g) = share.sku.activated_by().next()
        {
            groups.push(g);
        }
    }
    crate::host::start(setup).await
}

/// Runs the load; `interrupt` completes on Ctrl-C (the partial report is still returned).
pub async fn run(
    config: &LoadConfig,
    interrupt: impl std::future::Future<Output = ()>,
) -> Result<LoadReport, LoadError> {
    run_recorded(config, interrupt, None).await
}

/// [`run`], recording the sampled activations (`--record FILE --record-sample N`).
pub async fn run_recorded(
    config: &LoadConfig,
    interrupt: impl std::future::Future<Output = ()>,
    record: Option<Sampling>,
) -> Result<LoadReport, LoadError> {
    let embedded = match &config.target {
        Some(_) => None,
        None => Some(start_embedded_on(&config.mix, config.embedded_addresses).await?),
    };
    let addrs = match (&config.target, &embedded) {
        (Some(a), _) => a.clone(),
        (None, Some(h)) => h.addrs.clone(),
        (None, None) => return Err(LoadError::NoTarget),
    };
    let fleet = Fleet::with_vm_share(
        config.clients,
        &config.mix,
        config.seed,
        crate::clock::now_filetime(),
        config.vm_share,
    );
    let mut shared = Shared::new(
        fleet,
        config.templates.clone(),
        addrs,
        config.client,
        config.mode == Mode::Fresh,
        config.pacing,
    );
    shared.record = record;
    shared.sources = config.sources.clone();
    shared.intervals = config.progress || config.hdr_log.is_some();
    let shared = Arc::new(shared);
    // CPU is counted over the measured interval only, as the activations it is divided by are:
    // the sample is taken when the warm-up ends (at once without one).
    let cpu_at_warmup_end = {
        let warmup_end = shared.start + config.pacing.warmup;
        tokio::spawn(async move {
            tokio::time::sleep_until(warmup_end.into()).await;
            cpu::process_cpu_secs()
        })
    };
    // The open-loop pacer keeps its schedule on a thread of its own (see `schedule`).
    let pacer = match shared.paced() {
        false => None,
        true => {
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name("pacer".into())
                .spawn(move || shared.pace());
            Some(thread.map_err(LoadError::Pacer)?)
        }
    };
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..config.connections {
        workers.spawn(worker::run(shared.clone(), i));
    }
    let display = progress::spawn(shared.clone(), config.progress, config.hdr_log.clone());
    let mut interrupted = false;
    let mut merged = Stats::default();
    let mut reconnects = 0;
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            done = workers.join_next() => match done {
                Some(Ok(r)) => {
                    merged.merge(&r.stats);
                    reconnects += r.reconnects;
                }
                Some(Err(_)) => {}
                None => break,
            },
            () = &mut interrupt, if !interrupted => {
                interrupted = true;
                shared.halt();
            }
        }
    }
    // A site's run lasts its whole duration: its workers end as soon as no machine is due
    // before the deadline, but the time until then was measured, quiet as it was.
    if let (Some(_), Some(d), false) = (config.pacing.site, config.pacing.duration, interrupted) {
        let deadline = shared.start + config.pacing.warmup + d;
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => {}
            () = &mut interrupt => interrupted = true,
        }
    }
    let end = Instant::now();
    shared.halt();
    if let Some(pacer) = pacer {
        let _ = pacer.join();
    }
    let log_error = display.finish().await;
    let warmup_end = shared.start + config.pacing.warmup;
    let duration = end.saturating_duration_since(warmup_end);
    let cpu_end = cpu::process_cpu_secs();
    // A run that ended inside its warm-up measured nothing, CPU included.
    let cpu_start = if cpu_at_warmup_end.is_finished() {
        cpu_at_warmup_end.await.ok().flatten()
    } else {
        cpu_at_warmup_end.abort();
        None
    };
    let cpu = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) => Some(CpuReport {
            process_secs: b - a,
            micros_per_activation: (b - a) * 1e6 / merged.ok.max(1) as f64,
            includes_embedded_host: embedded.is_some(),
        }),
        _ => None,
    };
    let site = config.pacing.site.map(|p| {
        let now = crate::clock::now_filetime();
        SiteReport {
            machines: config.clients,
            boot_storm_secs: p.boot_storm.map(|d| d.as_secs_f64()),
            steady_rate: site::steady_rate(config.clients),
            licensed_at_end: shared
                .fleet
                .machines()
                .iter()
                .filter(|m| m.is_activated(now))
                .count(),
        }
    });
    if let Some(h) = embedded {
        let _ = h.stop().await;
    }
    if let Some(e) = log_error {
        return Err(LoadError::IntervalLog(e));
    }
    // The wall time the measured interval began, for merging reports of runs that did not
    // overlap.
    let started_at = crate::clock::unix_now()
        .saturating_sub(Instant::now().saturating_duration_since(warmup_end))
        .as_secs_f64();
    let mut report = LoadReport::from_stats(
        config,
        &merged,
        Measured {
            started_at,
            duration,
        },
        interrupted,
        reconnects,
        cpu,
    );
    report.site = site;
    report.schedule = shared.not_sent().map(|not_sent| ScheduleReport {
        lateness: PhaseSummary::of(&merged.lateness),
        not_sent,
    });
    Ok(report)
}
