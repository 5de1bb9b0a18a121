//! `replay`: a capture's client requests sent again to a host (the bundled one by default),
//! with the capture's connection structure and pacing, every response verified as `activate`
//! verifies it, and a report like `load`'s.
//!
//! Two steps. [`Plan::from_capture`] (in [`crate::capture::plan`]) reads a capture into what a
//! client sent: per TCP connection, its bind options and each KMS request body exactly as
//! captured, decoded where possible, with its time offset. [`run`] replays the plan:
//!
//! - one connection (connect, bind, alter_context when needed) per captured connection, the
//!   captured requests over it in order; RPC call ids are this client's own;
//! - [`ReplayMode::Verbatim`] sends each KMS request body byte for byte; a V5/V6 response is then
//!   verified against the request as a host decrypts it ([`ReceivedRequest::as_sent`]);
//!   [`ReplayMode::Restamp`] re-encodes each request for a new machine (fresh machine ID, the
//!   current time, a fresh IV) with [`RequestBase::restamped`], the step `load
//!   --from-capture` uses;
//! - pacing: each connection opens and each request leaves at its captured offset divided by
//!   the speed, from the start of the round (latency counts from that scheduled time, free of
//!   coordinated omission), or as fast as possible with at most `concurrency` connections at
//!   once; rounds (`--repeat`) follow one another;
//! - every call is judged by [`crate::proto::verdict::judge`], the same verdict `load` gives, and
//!   measured into [`Stats`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::capture::plan::Plan;
use crate::capture::record::Recorder;
use crate::clock::now_filetime;
use crate::exit::Exit;
use crate::host::{HostSetup, RunningHost};
use crate::load::stats::{Outcome, Phase, Stats};
use crate::net::client::call_reconnecting;
use crate::net::client::{ClientConfig, Connection};
use crate::proto::check::Checks;
use crate::proto::client::message::{ResponseBuf, SentRequest, encode_request};
use crate::proto::verdict::{Failure, Verdict, judge};
use crate::wire::Guid;

/// Report format identifier of `replay --json`.
pub const REPORT_FORMAT: &str = "kmsharness-replay/1";

/// How captured requests are sent again.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ReplayMode {
    /// Each KMS request body byte for byte, as captured.
    Verbatim,
    /// Each request re-encoded for a new machine: fresh machine ID, current time, fresh IV.
    Restamp,
}

/// Everything a replay needs, validated.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// What to send.
    pub plan: Arc<Plan>,
    /// The capture as named by the user, for the report.
    pub capture_label: String,
    /// Host addresses (the first is used); `None` starts the bundled host in-process.
    pub target: Option<Vec<SocketAddr>>,
    /// The target as the user gave it, for the report.
    pub target_label: String,
    /// Verbatim or re-stamped requests.
    pub mode: ReplayMode,
    /// The captured pacing divided by this; `None` sends as fast as possible.
    pub speed: Option<f64>,
    /// Rounds: the whole plan this many times, one round after the other.
    pub repeat: u32,
    /// As fast as possible: connections replayed at once.
    pub concurrency: usize,
    /// Timeouts (the bind options of each connection come from the plan).
    pub client: ClientConfig,
    /// Record every connection into this pcap.
    pub record: Option<Arc<Recorder>>,
    /// Keep every exchange's result in [`ReplayRun::exchanges`] (tests; memory grows with the
    /// run).
    pub keep_exchanges: bool,
}

/// One request as replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Round, from 0.
    pub round: u32,
    /// Index of the connection in the plan.
    pub connection: usize,
    /// Index of the request in its connection.
    pub request: usize,
    /// The machine ID sent (`None` when a verbatim request does not decode).
    pub cmid: Option<Guid>,
    /// The verdict: the count of a response that passed every check, or why not.
    pub verdict: Verdict,
}

/// The report of a replay.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[schemars(
    title = "kmsharness replay report",
    description = "The JSON report of `kmsharness replay --json FILE` (format \
        kmsharness-replay/1): a capture's requests sent again to a host. Counts, errors, \
        latencies (microseconds) and timeline have the meaning and encoding of a load report's.",
    extend("$id" = "https://github.com/kmsharness/kmsharness/docs/replay-report.schema.json"),
    deny_unknown_fields
)]
pub struct ReplayReport {
    /// `kmsharness-replay/1`.
    #[schemars(extend("const" = "kmsharness-replay/1"))]
    pub format: String,
    /// The capture as given.
    pub capture: String,
    /// Target as given, or `embedded`.
    pub target: String,
    /// Whether the bundled host served the replay.
    pub embedded: bool,
    /// Verbatim or re-stamped.
    pub mode: ReplayMode,
    /// Speed factor of the pacing; null when as fast as possible.
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub speed: Option<f64>,
    /// Rounds asked for.
    #[schemars(range(min = 1))]
    pub repeat: u32,
    /// Captured connections (replayed once per round).
    pub connections: usize,
    /// Captured requests (replayed once per round).
    pub requests: usize,
    /// Seconds from the capture's first packet to its last request.
    #[schemars(range(min = 0))]
    pub capture_secs: f64,
    /// Requests not sent: in restamp mode, those that do not decode.
    pub skipped: u64,
    /// Seconds the replay took.
    #[schemars(range(min = 0))]
    pub duration_secs: f64,
    /// Whether Ctrl-C cut the replay short.
    pub interrupted: bool,
    /// Counts, errors, throughput, latency (connect, bind, call, total from the scheduled
    /// start) and timeline.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// `--threshold` expressions evaluated at the end of the replay.
    #[serde(default)]
    #[schemars(
        description = "The `--threshold` expressions, in the order given, each evaluated \
        against this report at the end of the replay; empty when none was given."
    )]
    pub thresholds: Vec<crate::load::threshold::ThresholdResult>,
}

/// A replay's report and, when asked for, every exchange.
#[derive(Debug, Clone)]
pub struct ReplayRun {
    /// The report.
    pub report: ReplayReport,
    /// Every exchange in (round, connection, request) order, if `keep_exchanges` was set.
    pub exchanges: Vec<Exchange>,
}

/// The bundled host as `replay` starts it: loopback, a free port, every host key group (a
/// capture may hold any product) and no client-clock rule (captured requests carry their
/// capture time, which a genuine host refuses once it is more than four hours old).
pub fn embedded_config() -> HostSetup {
    let mut config = HostSetup::default();
    config.listen.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.listen.idle_timeout = crate::host::EMBEDDED_IDLE;
    config.host.key_groups = crate::catalog::host_key_groups().collect();
    config.host.max_clock_skew_secs = None;
    config
}

/// Starts the host of [`embedded_config`].
pub async fn start_embedded() -> Result<RunningHost, crate::host::StartError> {
    crate::host::start(embedded_config()).await
}

/// What one connection's replay gives back.
#[derive(Debug, Default)]
struct ConnResult {
    stats: Stats,
    reconnects: u64,
    skipped: u64,
    exchanges: Vec<Exchange>,
}

/// State shared by every connection task of a run.
#[derive(Debug)]
struct Ctx {
    plan: Arc<Plan>,
    addr: SocketAddr,
    mode: ReplayMode,
    speed: Option<f64>,
    client: ClientConfig,
    record: Option<Arc<Recorder>>,
    keep: bool,
    start: Instant,
}

/// Sleeps until `at`, or less if the run is stopped; `false` when stopped.
async fn sleep_until(at: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep_until(at.into()) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

async fn replay_connection(
    ctx: Arc<Ctx>,
    index: usize,
    round: u32,
    origin: Instant,
    mut stop: watch::Receiver<bool>,
) -> ConnResult {
    let mut res = ConnResult::default();
    let Some(planned) = ctx.plan.connections.get(index) else {
        return res;
    };
    let scheduled = |d: Duration| ctx.speed.map(|s| origin + d.div_f64(s));
    if let Some(t) = scheduled(planned.start)
        && !sleep_until(t, &mut stop).await
    {
        return res;
    }
    let client = ClientConfig {
        rpc: planned.rpc,
        ..ctx.client
    };
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(rand::random());
    let mut conn: Option<Connection> = None;
    let mut kms = Vec::with_capacity(300);
    let mut buf = ResponseBuf::default();
    let stats = &mut res.stats;
    for (i, req) in planned.requests.iter().enumerate() {
        let at = scheduled(req.at);
        if let Some(t) = at
            && !sleep_until(t, &mut stop).await
        {
            break;
        }
        if *stop.borrow() {
            break;
        }
        let begin = at.unwrap_or_else(Instant::now);
        kms.clear();
        let sent: Option<SentRequest> = match (ctx.mode, req.decoded) {
            (ReplayMode::Verbatim, decoded) => {
                kms.extend_from_slice(&req.body);
                decoded.map(|d| d.as_sent())
            }
            (ReplayMode::Restamp, Some(d)) => {
                let base = d.base.restamped(
                    Guid::new_v4(rng.random()),
                    d.base.workstation,
                    now_filetime(),
                );
                Some(encode_request(&base, rng.random(), &mut kms))
            }
            (ReplayMode::Restamp, None) => {
                res.skipped += 1;
                continue;
            }
        };
        stats.sent += 1;
        let outcome = call_reconnecting(
            &mut conn,
            ctx.addr,
            client,
            ctx.record.as_ref(),
            None,
            &kms,
            &mut res.reconnects,
        )
        .await
        .map(|(o, times)| {
            let bind_failed = match times.opened {
                Some(opened) => {
                    stats.record(Phase::Connect, opened.connect);
                    stats.record(Phase::Bind, opened.bind);
                    opened.failed_checks
                }
                None => Vec::new(),
            };
            (o, times.call, bind_failed)
        });
        let verdict = match outcome {
            Err(e) => {
                conn = None;
                Verdict::Failed(e.failure())
            }
            Ok((o, call_time, bind_failed)) => {
                let (checks, body) = conn.as_ref().map_or((&Checks::EMPTY, &[][..]), |c| {
                    (c.reply_checks(), c.response_body())
                });
                let v = judge(
                    &o,
                    &bind_failed,
                    checks,
                    sent.as_ref(),
                    body,
                    &mut buf,
                    |id| {
                        stats.error(Failure::Check(id));
                    },
                );
                if matches!(v, Verdict::Validated { .. }) {
                    stats.ok += 1;
                    stats.record(Phase::Call, call_time);
                }
                v
            }
        };
        let now = Instant::now();
        let failed = !matches!(verdict, Verdict::Validated { .. });
        match verdict {
            Verdict::Validated { .. } => {
                stats.record(Phase::Total, now.saturating_duration_since(begin))
            }
            Verdict::Failed(f) => stats.error(f),
            Verdict::ChecksFailed => {}
        }
        stats.tick(
            now.saturating_duration_since(ctx.start).as_secs() as usize,
            failed,
        );
        if ctx.keep {
            res.exchanges.push(Exchange {
                round,
                connection: index,
                request: i,
                cmid: sent.map(|s| s.base.cmid),
                verdict,
            });
        }
    }
    res
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The bundled host did not start.
    #[error(transparent)]
    Host(#[from] crate::host::StartError),
    /// Neither a target nor the bundled host gave an address.
    #[error("no target address")]
    NoTarget,
}

/// Runs the replay; `interrupt` completes on Ctrl-C (the partial report is still returned).
pub async fn run(
    config: &ReplayConfig,
    interrupt: impl std::future::Future<Output = ()>,
) -> Result<ReplayRun, ReplayError> {
    let embedded = match &config.target {
        Some(_) => None,
        None => Some(start_embedded().await?),
    };
    let addr = match (&config.target, &embedded) {
        (Some(a), _) => a.first().copied(),
        (None, Some(h)) => Some(h.addr()),
        (None, None) => None,
    }
    .ok_or(ReplayError::NoTarget)?;
    let start = Instant::now();
    let ctx = Arc::new(Ctx {
        plan: config.plan.clone(),
        addr,
        mode: config.mode,
        speed: config.speed,
        client: config.client,
        record: config.record.clone(),
        keep: config.keep_exchanges,
        start,
    });
    let (stop, stopped) = watch::channel(false);
    let limit = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut merged = Stats::default();
    let (mut reconnects, mut skipped) = (0, 0);
    let mut exchanges = Vec::new();
    let mut interrupted = false;
    tokio::pin!(interrupt);
    for round in 0..config.repeat {
        let origin = Instant::now();
        let mut tasks = JoinSet::new();
        for index in 0..config.plan.connections.len() {
            let (ctx, stopped, limit) = (ctx.clone(), stopped.clone(), limit.clone());
            let paced = config.speed.is_some();
            tasks.spawn(async move {
                // Paced connections open on their schedule; unpaced ones as slots free up.
                let _permit = if paced {
                    None
                } else {
                    limit.acquire_owned().await.ok()
                };
                replay_connection(ctx, index, round, origin, stopped).await
            });
        }
        loop {
            tokio::select! {
                done = tasks.join_next() => match done {
                    Some(Ok(r)) => {
                        merged.merge(&r.stats);
                        reconnects += r.reconnects;
                        skipped += r.skipped;
                        exchanges.extend(r.exchanges);
                    }
                    Some(Err(_)) => {}
                    None => break,
                },
                () = &mut interrupt, if !interrupted => {
                    interrupted = true;
                    let _ = stop.send(true);
                }
            }
        }
        if interrupted {
            break;
        }
    }
    let duration = start.elapsed();
    if let Some(h) = embedded {
        let _ = h.stop().await;
    }
    exchanges.sort_by_key(|e| (e.round, e.connection, e.request));
    let secs = duration.as_secs_f64().max(1e-9);
    let report = ReplayReport {
        format: REPORT_FORMAT.into(),
        capture: config.capture_label.clone(),
        target: config.target_label.clone(),
        embedded: config.target.is_none(),
        mode: config.mode,
        speed: config.speed,
        repeat: config.repeat,
        connections: config.plan.connections.len(),
        requests: config.plan.requests(),
        capture_secs: config.plan.span().as_secs_f64(),
        skipped,
        duration_secs: secs,
        interrupted,
        outcome: Outcome::of(&merged, reconnects, secs),
        thresholds: Vec::new(),
    };
    Ok(ReplayRun { report, exchanges })
}

/// The exit status a report calls for: 130 when interrupted, else its worst failure class (a
/// check 1, no connection 3, RPC 4, an HRESULT 5), else 1 when something was sent and
/// nothing validated, else 0.
pub fn exit_of(report: &ReplayReport) -> Exit {
    Exit::of_run(
        report.interrupted,
        report.outcome.sent > 0 && report.outcome.ok == 0,
        report.outcome.failed,
        report.outcome.errors.keys().copied(),
    )
}
