//! `fuzz`: a stateful, structure-aware fuzzer for KMS hosts. Each case ([`case`]) is a fresh
//! connection: a bind (the valid session prefix, or a mutated one), then the PDUs under test,
//! then a half-close. The [`oracle`] judges the replies and how the connection ended; every
//! batch ends with a liveness probe (a valid activation); a host started with `--spawn`
//! ([`target`]) is watched for crashes and sanitizer reports and restarted. Findings are
//! minimised (fewest PDUs, fewest changed bytes), deduplicated by signature and kept in a
//! directory as a pcap, a JSON description and the oracle's output.

pub mod case;
pub mod oracle;
pub mod rng;
pub mod target;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::capture::Direction;
use crate::capture::record::{self, Flow, Recorder};
use crate::clock::now_filetime;
use crate::net::raw::{Closed, RawConn, Received};

use self::case::{Case, Layer, Seed};
use self::oracle::{End, Exchange, Verdict};
use self::target::Spawned;

/// Report format identifier of `fuzz --json`.
pub const REPORT_FORMAT: &str = "kmsharness-fuzz/1";

/// Where the cases go.
#[derive(Debug, Clone)]
pub enum Target {
    /// A host at this address.
    Addr(SocketAddr),
    /// A command started on a free loopback port (`{port}` in it).
    Spawn(String),
    /// The bundled host in this process (a self-test).
    Embedded,
}

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct FuzzConfig {
    /// The host.
    pub target: Target,
    /// The target as given, for the report.
    pub target_label: String,
    /// Stop after this long.
    pub duration: Duration,
    /// Stop after this many cases.
    pub cases: u64,
    /// The run's seed (with a case number, it names a case).
    pub seed: u64,
    /// At most this many cases per second.
    pub rate: Option<f64>,
    /// Requests to start from.
    pub seeds: Vec<Seed>,
    /// Wait this long for a reply or a close after a case.
    pub case_timeout: Duration,
    /// A liveness probe after every this many cases.
    pub batch: u64,
    /// Keep findings here.
    pub out: Option<PathBuf>,
    /// Re-runs a finding's minimisation may take.
    pub minimise_budget: u32,
}

/// One finding, deduplicated by signature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[schemars(description = "One finding: the first case that showed a signature, minimised.")]
pub struct Finding {
    /// What broke, stably named.
    pub signature: String,
    /// The first case that showed it.
    pub case: u64,
    /// Its layer.
    pub layer: String,
    /// Its mutation.
    pub mutation: String,
    /// What the oracle saw.
    pub detail: String,
    /// Cases that showed the same signature.
    pub hits: u64,
    /// PDUs after the prefix, minimised.
    pub pdus: usize,
    /// Bytes changed from the valid exchange, minimised (0 when the lengths changed).
    pub changed_bytes: usize,
    /// Whether a re-run showed it again.
    pub reproduced: bool,
    /// The finding's files (pcap, JSON, oracle output), when `--out` was given.
    pub files: Option<String>,
    /// The exchange, hex-encoded: the prefix PDU then each PDU sent.
    pub sent_hex: Vec<String>,
    /// The command that re-sends the exchange byte for byte to the same target and judges it
    /// again (`kmsharness fuzz --replay FILE.json ...`), when the finding was saved.
    #[serde(default)]
    pub reproduce: Option<String>,
}

/// The report of a run.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(
    title = "kmsharness fuzz report",
    description = "The JSON report of `kmsharness fuzz --json FILE` (format kmsharness-fuzz/1): \
        cases run per layer, the rate, liveness probes, and the findings deduplicated by \
        signature.",
    extend("$id" = "https://github.com/kmsharness/kmsharness/docs/fuzz-report.schema.json")
)]
pub struct FuzzReport {
    /// `kmsharness-fuzz/1`.
    #[schemars(extend("const" = "kmsharness-fuzz/1"))]
    pub format: String,
    /// The target as given (or `embedded`).
    pub target: String,
    /// The seed.
    pub seed: u64,
    /// Cases run.
    pub cases: u64,
    /// Cases run per layer.
    pub per_layer: BTreeMap<String, u64>,
    /// Seconds the run took.
    pub duration_secs: f64,
    /// Cases per second.
    pub rate: f64,
    /// Liveness probes made and failed.
    pub probes: u64,
    /// Probes that failed.
    pub probe_failures: u64,
    /// Times a spawned host was (re)started.
    pub host_starts: u64,
    /// Findings, one per signature.
    pub findings: Vec<Finding>,
    /// Whether Ctrl-C cut the run short.
    pub interrupted: bool,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    /// A spawned host did not start.
    #[error(transparent)]
    Spawn(#[from] target::SpawnError),
    /// The bundled host did not start.
    #[error(transparent)]
    Host(#[from] crate::host::StartError),
    /// The host does not answer a valid activation before any case.
    #[error("the host at {addr} does not answer a valid activation: {why}")]
    Dead {
        /// The host.
        addr: SocketAddr,
        /// What the probe saw.
        why: String,
    },
    /// The bundled host's own runtime could not start.
    #[error("cannot start the bundled host's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The findings directory.
    #[error("--out {}: {source}", path.display())]
    Out {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Panics of the bundled host's tasks, when it runs in this process.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The name of the threads the bundled host runs on in a self-test: a runtime of its own, so
/// that the panic hook counts the host's panics and not the fuzzer's own.
const HOST_THREAD: &str = "kmsharness-fuzz-host";

/// The host a run talks to.
enum Host {
    Addr(SocketAddr),
    Spawned(Spawned),
    Embedded(crate::host::RunningHost, tokio::runtime::Runtime),
}

impl Host {
    fn addr(&self) -> SocketAddr {
        match self {
            Host::Addr(a) => *a,
            Host::Spawned(s) => s.addr,
            Host::Embedded(h, _) => h.addrs[0],
        }
    }

    /// A crash or bug report since the last call.
    async fn check(&mut self, grace: Duration) -> Option<(String, String)> {
        match self {
            Host::Spawned(s) => s.check(grace).await.map(|r| (r.signature, r.output)),
            Host::Embedded(..) => {
                let mut p = PANICS
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let first = p.first().cloned();
                let all = p.join("\n");
                p.clear();
                first.map(|f| (f, all))
            }
            Host::Addr(_) => None,
        }
    }

    async fn restart_if_dead(&mut self) -> Result<bool, FuzzError> {
        if let Host::Spawned(s) = self
            && s.exited()
        {
            s.restart().await?;
            return Ok(true);
        }
        Ok(false)
    }
}

/// Sends one case on a fresh connection and reads what comes back.
pub async fn run_case(
    addr: SocketAddr,
    case: &Case,
    timeout: Duration,
) -> (Exchange, Option<SocketAddr>) {
    let mut conn = match RawConn::connect(addr, timeout).await {
        Ok(c) => c,
        Err(e) => {
            return (
                Exchange {
                    replies: vec![],
                    end: End::NoConnection(e.to_string()),
                },
                None,
            );
        }
    };
    let local = conn.local_addr();
    let mut replies = Vec::new();
    let closed = |replies| {
        (
            Exchange {
                replies,
                end: End::Closed,
            },
            local,
        )
    };
    if conn.send(&case.prefix).await.is_err() {
        return closed(replies);
    }
    match conn.next_pdu(timeout).await {
        Received::Pdu(p) => replies.push(p),
        Received::Closed(_) => return closed(replies),
        // A mutated bind may be waited on by a host expecting more: send the rest anyway.
        Received::Silent => {}
        Received::Garbage(e) => {
            return (
                Exchange {
                    replies,
                    end: End::Garbage(e.to_string()),
                },
                local,
            );
        }
    }
    let rest: Vec<u8> = case.pdus.concat();
    if conn.send(&rest).await.is_err() {
        return closed(replies);
    }
    conn.shutdown().await;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.next_pdu(left).await {
            Received::Pdu(p) => replies.push(p),
            Received::Closed(Closed::Clean | Closed::Broken(_)) => return closed(replies),
            Received::Closed(Closed::Unusable) => return closed(replies),
            Received::Silent => {
                return (
                    Exchange {
                        replies,
                        end: End::Hang,
                    },
                    local,
                );
            }
            Received::Garbage(e) => {
                return (
                    Exchange {
                        replies,
                        end: End::Garbage(e.to_string()),
                    },
                    local,
                );
            }
        }
    }
}

/// Runs `case` and judges it with every oracle; the verdict, the exchange and the client's
/// address.
async fn try_case(
    host: &mut Host,
    case: &Case,
    config: &FuzzConfig,
    grace: Duration,
) -> Result<(Option<Verdict>, Exchange, Option<SocketAddr>), FuzzError> {
    host.restart_if_dead().await?;
    let (ex, local) = run_case(host.addr(), case, config.case_timeout).await;
    let mut verdict = oracle::judge(case, &ex);
    if let Some((signature, output)) = host.check(grace).await {
        verdict = Some(Verdict {
            signature,
            detail: output,
        });
    }
    Ok((verdict, ex, local))
}

/// Shrinks `case` while `signature` still shows: drop PDUs, then revert changed bytes.
async fn minimise(
    host: &mut Host,
    mut case: Case,
    signature: &str,
    config: &FuzzConfig,
) -> Result<(Case, bool), FuzzError> {
    let grace = Duration::from_millis(150);
    let mut budget = config.minimise_budget;
    let shows = |v: &Option<Verdict>| v.as_ref().is_some_and(|v| v.signature == signature);
    let (v, _, _) = try_case(host, &case, config, grace).await?;
    if !shows(&v) {
        return Ok((case, false));
    }
    let mut i = 0;
    while i < case.pdus.len() && case.pdus.len() > 1 && budget > 0 {
        budget -= 1;
        let mut smaller = case.clone();
        smaller.pdus.remove(i);
        smaller.original = None;
        let (v, _, _) = try_case(host, &smaller, config, grace).await?;
        if shows(&v) {
            case = smaller;
        } else {
            i += 1;
        }
    }
    if let Some((prefix, pdus)) = case.original.clone() {
        // Byte positions that differ, as (PDU index or None for the prefix, offset).
        let mut diffs = Vec::new();
        for (k, (a, b)) in std::iter::once((&prefix, &case.prefix))
            .chain(pdus.iter().zip(&case.pdus))
            .enumerate()
        {
            diffs.extend(
                a.iter()
                    .zip(b.iter())
                    .enumerate()
                    .filter(|(_, (x, y))| x != y)
                    .map(|(o, _)| (k, o)),
            );
        }
        for (k, o) in diffs {
            if budget == 0 {
                break;
            }
            budget -= 1;
            let mut smaller = case.clone();
            let (from, to) = if k == 0 {
                (&prefix, &mut smaller.prefix)
            } else {
                (&pdus[k - 1], &mut smaller.pdus[k - 1])
            };
            to[o] = from[o];
            let (v, _, _) = try_case(host, &smaller, config, grace).await?;
            if shows(&v) {
                case = smaller;
            }
        }
    }
    Ok((case, true))
}

/// Writes a finding's pcap, JSON and oracle output as `stem` with their extensions, and sets
/// its `files` (the stem) and `reproduce`.
fn save(
    stem: &std::path::Path,
    finding: &mut Finding,
    config: &FuzzConfig,
    case: &Case,
    ex: &Exchange,
    server: SocketAddr,
    client: Option<SocketAddr>,
) -> std::io::Result<()> {
    if let Some(dir) = stem.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let name = stem.display().to_string();
    finding.reproduce = Some(reproduce_command(config, &name));
    finding.files = Some(name);
    let recorder = Recorder::create(&stem.with_extension("pcap"))?;
    let client = client.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 49152)));
    let mut flow = Flow::start(recorder.clone(), client, server);
    flow.data(Direction::ToServer, &case.prefix, record::now());
    let mut replies = ex.replies.iter();
    if let Some(r) = replies.next() {
        flow.data(Direction::ToClient, r, record::now());
    }
    flow.data(Direction::ToServer, &case.pdus.concat(), record::now());
    for r in replies {
        flow.data(Direction::ToClient, r, record::now());
    }
    flow.close(Direction::ToServer, record::now());
    drop(flow);
    recorder.finish()?;
    let text = serde_json::to_vec_pretty(&*finding).map_err(std::io::Error::other)?;
    std::fs::write(stem.with_extension("json"), text)?;
    std::fs::write(
        stem.with_extension("txt"),
        format!("{}\n{}\n", finding.signature, finding.detail),
    )?;
    Ok(())
}

/// Starts (or names) the host a run talks to: the address, the spawned command, or the
/// bundled host in this process with a panic hook that records its tasks' panics.
async fn start_host(config: &FuzzConfig) -> Result<Host, FuzzError> {
    Ok(match &config.target {
        Target::Addr(a) => Host::Addr(*a),
        Target::Spawn(cmd) => Host::Spawned(Spawned::start(cmd).await?),
        Target::Embedded => {
            // Every host key group, so that requests taken from captures reach the KMS logic.
            let mut setup = crate::host::HostSetup::loopback();
            setup.host.key_groups = crate::catalog::host_key_groups().collect();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(HOST_THREAD)
                .enable_all()
                .build()
                .map_err(FuzzError::Runtime)?;
            let h = runtime
                .spawn(crate::host::start(setup))
                .await
                .map_err(|e| FuzzError::Runtime(std::io::Error::other(e)))??;
            PANICS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
            let previous = Arc::new(std::panic::take_hook());
            let prev = previous.clone();
            std::panic::set_hook(Box::new(move |info| {
                let loc = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                let is_host = std::thread::current().name() == Some(HOST_THREAD);
                if is_host {
                    PANICS
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(format!("panic at {}", loc.unwrap_or_default()));
                } else {
                    prev(info);
                }
            }));
            Host::Embedded(h, runtime)
        }
    })
}

/// Stops what [`start_host`] started.
async fn stop_host(host: Host) {
    match host {
        Host::Spawned(s) => s.stop().await,
        Host::Embedded(h, runtime) => {
            let _ = std::panic::take_hook();
            let _ = runtime.spawn(h.stop()).await;
            // Not dropped here: dropping a runtime blocks, which an async context may not.
            runtime.shutdown_background();
        }
        Host::Addr(_) => {}
    }
}

/// The command line that re-sends a saved finding (`stem` without its extension) to the run's
/// target: `kmsharness fuzz --replay STEM.json` with the run's `-t` or `--spawn`.
fn reproduce_command(config: &FuzzConfig, stem: &str) -> String {
    let quote = |s: &str| shlex::try_quote(s).map_or_else(|_| s.to_owned(), |q| q.into_owned());
    let target = match &config.target {
        Target::Addr(_) => format!(" -t {}", quote(&config.target_label)),
        Target::Spawn(cmd) => format!(" --spawn {}", quote(cmd)),
        Target::Embedded => String::new(),
    };
    format!(
        "kmsharness fuzz --replay {}{target}",
        quote(&format!("{stem}.json"))
    )
}

/// Why a saved finding cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A `sent_hex` item is not hex.
    #[error("sent_hex[{index}] is not an even number of hex digits")]
    BadHex {
        /// Its index.
        index: usize,
    },
    /// `sent_hex` is empty.
    #[error("sent_hex is empty: no exchange to send")]
    Empty,
}

/// The case a saved finding describes: its exchange as sent, byte for byte.
pub fn case_of(finding: &Finding) -> Result<Case, ReplayError> {
    let mut pdus = Vec::with_capacity(finding.sent_hex.len());
    for (index, h) in finding.sent_hex.iter().enumerate() {
        pdus.push(hex::decode(h).map_err(|_| ReplayError::BadHex { index })?);
    }
    if pdus.is_empty() {
        return Err(ReplayError::Empty);
    }
    let prefix = pdus.remove(0);
    let layer = Layer::ALL
        .into_iter()
        .find(|l| l.name() == finding.layer)
        .unwrap_or(Layer::Raw);
    Ok(Case {
        index: finding.case,
        layer,
        mutation: finding.mutation.clone(),
        prefix,
        pdus,
        original: None,
        // The request's key is not saved: a response is judged by the RPC rules only.
        sent: None,
    })
}

/// Re-sends `case` to the configured target, byte for byte, and judges it with every oracle
/// (the host's own reports included); the verdict, or `None` when it did not show.
pub async fn replay(config: &FuzzConfig, case: &Case) -> Result<Option<Verdict>, FuzzError> {
    let mut host = start_host(config).await?;
    let (verdict, _, _) = try_case(&mut host, case, config, Duration::from_millis(300)).await?;
    stop_host(host).await;
    Ok(verdict)
}

/// Runs the fuzzer until `config.cases` or `config.duration`, or `interrupt`.
pub async fn run(
    config: &FuzzConfig,
    interrupt: impl std::future::Future<Output = ()>,
) -> Result<FuzzReport, FuzzError> {
    let mut host = start_host(config).await?;
    let mut rng = rng::Rng::for_case(config.seed, u64::MAX);
    let probe_seed = config.seeds[0];
    let probe = case::valid_case(&probe_seed, now_filetime(), &mut rng);
    let (ex, _) = run_case(
        host.addr(),
        &probe,
        config.case_timeout.max(Duration::from_secs(2)),
    )
    .await;
    if let Err(why) = oracle::judge_probe(&probe, &ex) {
        return Err(FuzzError::Dead {
            addr: host.addr(),
            why,
        });
    }
    tokio::pin!(interrupt);
    let start = Instant::now();
    let mut per_layer: BTreeMap<String, u64> = Layer::ALL
        .iter()
        .map(|l| (l.name().to_string(), 0))
        .collect();
    let mut findings: Vec<Finding> = Vec::new();
    let (mut probes, mut probe_failures) = (0u64, 0u64);
    let mut interrupted = false;
    let mut done = 0u64;
    let mut previous: Option<Case> = None;
    while done < config.cases && start.elapsed() < config.duration {
        if let Some(rate) = config.rate {
            let due = start + Duration::from_secs_f64(done as f64 / rate);
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                () = &mut interrupt => { interrupted = true; break; }
            }
        }
        let case = case::generate(config.seed, done, &config.seeds, now_filetime());
        *per_layer.entry(case.layer.name().to_string()).or_default() += 1;
        done += 1;
        let (ex, _) = tokio::select! {
            r = run_case(host.addr(), &case, config.case_timeout) => r,
            () = &mut interrupt => { interrupted = true; break; }
        };
        let mut verdict = oracle::judge(&case, &ex);
        let mut culprit = case.clone();
        if let Some((signature, detail)) = host.check(Duration::ZERO).await {
            verdict = Some(Verdict { signature, detail });
        }
        if let (End::NoConnection(_), Some(prev)) = (&ex.end, &previous) {
            // The host went away after the previous case: that one is the suspect.
            culprit = prev.clone();
            if let Some((signature, detail)) = host.check(Duration::from_millis(300)).await {
                verdict = Some(Verdict { signature, detail });
            }
        }
        if done.is_multiple_of(config.batch) && verdict.is_none() {
            probes += 1;
            let probe = case::valid_case(&probe_seed, now_filetime(), &mut rng);
            let (ex, _) = run_case(host.addr(), &probe, config.case_timeout).await;
            if let Err(why) = oracle::judge_probe(&probe, &ex) {
                probe_failures += 1;
                verdict = Some(match host.check(Duration::from_millis(300)).await {
                    Some((signature, detail)) => Verdict { signature, detail },
                    None => Verdict {
                        signature: "liveness probe failed".into(),
                        detail: why,
                    },
                });
            }
        }
        previous = Some(case);
        let Some(verdict) = verdict else { continue };
        if let Some(f) = findings
            .iter_mut()
            .find(|f| f.signature == verdict.signature)
        {
            f.hits += 1;
            host.restart_if_dead().await?;
            continue;
        }
        let (small, reproduced) = minimise(&mut host, culprit, &verdict.signature, config).await?;
        let (_, ex, local) =
            try_case(&mut host, &small, config, Duration::from_millis(150)).await?;
        let mut finding = Finding {
            signature: verdict.signature.clone(),
            case: small.index,
            layer: small.layer.name().to_string(),
            mutation: small.mutation.clone(),
            detail: verdict.detail.clone(),
            hits: 1,
            pdus: small.pdus.len(),
            changed_bytes: small.changed_bytes(),
            reproduced,
            files: None,
            sent_hex: std::iter::once(&small.prefix)
                .chain(&small.pdus)
                .map(hex::encode)
                .collect(),
            reproduce: None,
        };
        if let Some(dir) = &config.out {
            save(
                &dir.join(format!("finding-{:03}", findings.len() + 1)),
                &mut finding,
                config,
                &small,
                &ex,
                host.addr(),
                local,
            )
            .map_err(|source| FuzzError::Out {
                path: dir.clone(),
                source,
            })?;
        }
        findings.push(finding);
        host.restart_if_dead().await?;
    }
    let elapsed = start.elapsed();
    let host_starts = match &host {
        Host::Spawned(s) => s.starts,
        _ => 0,
    };
    stop_host(host).await;
    Ok(FuzzReport {
        format: REPORT_FORMAT.into(),
        target: config.target_label.clone(),
        seed: config.seed,
        cases: done,
        per_layer,
        duration_secs: elapsed.as_secs_f64(),
        rate: done as f64 / elapsed.as_secs_f64().max(1e-9),
        probes,
        probe_failures,
        host_starts,
        findings,
        interrupted,
    })
}

/// The report as text.
pub fn print_text(r: &FuzzReport, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    writeln!(w, "fuzz {} (seed {})", r.target, r.seed)?;
    writeln!(
        w,
        "  {} cases in {:.1} s ({:.0} cases/s); {} liveness probes, {} failed",
        r.cases, r.duration_secs, r.rate, r.probes, r.probe_failures
    )?;
    let layers: Vec<String> = r
        .per_layer
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    writeln!(w, "  per layer: {}", layers.join(", "))?;
    if r.host_starts > 0 {
        writeln!(w, "  host started {} times", r.host_starts)?;
    }
    if r.findings.is_empty() {
        writeln!(w, "  no findings")?;
    }
    for f in &r.findings {
        writeln!(
            w,
            "  FINDING {} ({} hits; first case {}, layer {})",
            f.signature, f.hits, f.case, f.layer
        )?;
        writeln!(w, "    mutation: {}", f.mutation)?;
        writeln!(
            w,
            "    minimised to {} PDU(s) after the bind, {} changed byte(s){}",
            f.pdus,
            f.changed_bytes,
            if f.reproduced {
                ""
            } else {
                "; did not reproduce"
            }
        )?;
        if let Some(files) = &f.files {
            writeln!(w, "    files: {files}.pcap .json .txt")?;
        }
        if let Some(cmd) = &f.reproduce {
            writeln!(w, "    reproduce: {cmd}")?;
        }
    }
    if r.interrupted {
        writeln!(w, "  interrupted")?;
    }
    Ok(())
}
