//! Running the suite: which cases apply, in which order (state-changing ones first and one at
//! a time, then the independent ones concurrently, then load-heavy ones alone), the bundled
//! host, and the report.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::VirtualClock;
use crate::exit::Exit;
use crate::host::{HostSetup, RunningHost};

use crate::net::raw;

use super::expect::Mismatch;
use super::fingerprint::{Evidence, Verdict, verdict};
use super::steps::{CaseRun, Env};
use super::vector::{Capability, Case, Level, Profile, VectorFile};

/// The report format identifier.
pub const REPORT_FORMAT: &str = "kmsharness-conform/1";

/// Idle timeout of the bundled host: short, so that the idle case finishes quickly.
pub const BUNDLED_IDLE: Duration = Duration::from_secs(2);

/// Longest any one case may take before it is failed (stretched by the time scale).
pub const CASE_DEADLINE: Duration = Duration::from_secs(120);

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The vector files, in order.
    pub vectors: Vec<VectorFile>,
    /// The profile to hold the host to.
    pub profile: Profile,
    /// Only these case ids (all when empty).
    pub cases: Vec<String>,
    /// Only these families (all when empty).
    pub categories: Vec<String>,
    /// Cases not to run (reported as skipped), whatever the selection.
    pub skip: Vec<String>,
    /// A failed `should` case fails the run too.
    pub strict: bool,
    /// Run state-changing cases against a real host.
    pub allow_state_changes: bool,
    /// The host has counted nobody yet.
    pub fresh_host: bool,
    /// TCP handshake limit.
    pub connect_timeout: Duration,
    /// Reply limit.
    pub read_timeout: Duration,
    /// Independent cases in flight at once.
    pub concurrency: usize,
    /// Factor (at least 1) on every limit a case sets on how soon the host answers: `max_ms`,
    /// `within_ms` where a reply must come, a concurrent step's `within_ms`, and the case
    /// deadline. Lower bounds (`min_ms`), pauses and silences that must last are kept as
    /// written: sleeping is only ever lengthened by a loaded machine. 1 holds the host to
    /// the suite as written; a test on a small, busy machine stretches it.
    pub time_scale: u32,
}

impl RunConfig {
    /// Defaults around a set of vectors.
    pub fn new(vectors: Vec<VectorFile>) -> RunConfig {
        RunConfig {
            vectors,
            profile: Profile::Genuine,
            cases: Vec::new(),
            categories: Vec::new(),
            skip: Vec::new(),
            strict: false,
            allow_state_changes: false,
            fresh_host: false,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            concurrency: 16,
            time_scale: 1,
        }
    }

    /// Checks the selection names real cases and families (the vectors themselves were
    /// checked when they loaded).
    pub fn validate(&self) -> Result<(), SelectionError> {
        let ids: Vec<&str> = self
            .vectors
            .iter()
            .flat_map(|f| f.cases.iter().map(|c| c.id.as_str()))
            .collect();
        for (option, list) in [("--case", &self.cases), ("--skip", &self.skip)] {
            for c in list {
                if !ids.contains(&c.as_str()) {
                    return Err(SelectionError::NoSuchCase {
                        option,
                        id: c.clone(),
                        nearest: nearest(c, &ids).join(", "),
                    });
                }
            }
        }
        for c in &self.categories {
            if !self.vectors.iter().any(|f| &f.family == c) {
                let names: Vec<&str> = self.vectors.iter().map(|f| f.family.as_str()).collect();
                return Err(SelectionError::NoSuchFamily {
                    family: c.clone(),
                    known: names.join(", "),
                });
            }
        }
        Ok(())
    }
}

/// How many near ids an unknown `--case` or `--skip` names.
const NEAREST: usize = 3;

/// The ids nearest to `given`: those containing it, else the closest by edit distance (a
/// typo), at most [`NEAREST`] of them.
fn nearest<'a>(given: &str, ids: &[&'a str]) -> Vec<&'a str> {
    let containing: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !given.is_empty() && id.contains(given))
        .take(NEAREST)
        .collect();
    if !containing.is_empty() {
        return containing;
    }
    let mut by_distance: Vec<(usize, &str)> = ids
        .iter()
        .map(|id| (strsim::levenshtein(given, id), *id))
        .collect();
    by_distance.sort();
    by_distance
        .into_iter()
        .take(NEAREST)
        .map(|(_, id)| id)
        .collect()
}

/// A `--case`, `--skip` or `--category` that names nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// No case has this id.
    #[error("{option} {id}: no such case; nearest: {nearest} (see --list)")]
    NoSuchCase {
        /// `--case` or `--skip`.
        option: &'static str,
        /// The id given.
        id: String,
        /// The nearest ids there are, comma-separated.
        nearest: String,
    },
    /// No family has this name.
    #[error("--category {family}: no such family; families: {known}")]
    NoSuchFamily {
        /// The name given.
        family: String,
        /// The families there are.
        known: String,
    },
}

/// The host the suite runs against.
#[derive(Debug, Clone)]
pub struct HostUnderTest {
    /// Its address.
    pub addr: SocketAddr,
    /// How reports name it.
    pub label: String,
    /// Its virtual clock, when it has one the runner can move.
    pub clock: Option<Arc<VirtualClock>>,
    /// Whether it has counted nobody yet.
    pub fresh: bool,
    /// Whether state changes are allowed regardless of the option (the bundled host).
    pub disposable: bool,
}

/// The bundled host's configuration: loopback, a free port, a virtual clock, a genuine
/// Windows Server 2022 host with an Office LTSC 2021 key, a short idle timeout.
pub fn bundled_config() -> HostSetup {
    let mut config = HostSetup::default();
    config.listen.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.listen.idle_timeout = BUNDLED_IDLE;
    config.virtual_clock = true;
    config
}

/// The host under test for a running bundled host.
pub fn bundled_target(host: &RunningHost) -> HostUnderTest {
    HostUnderTest {
        addr: host.addr(),
        label: format!("bundled host ({})", host.addr()),
        clock: host.virtual_clock().cloned(),
        fresh: true,
        disposable: true,
    }
}

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every step held.
    Pass,
    /// A step did not.
    Fail,
    /// Not run.
    Skip,
}

/// Why a case failed: the step and what did not hold.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Failure {
    /// 1-based step number.
    pub step: usize,
    /// The step's kind.
    pub kind: &'static str,
    /// What did not hold.
    pub mismatches: Vec<Mismatch>,
}

/// One case's result.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CaseResult {
    /// Case id.
    pub id: String,
    /// Family (file stem).
    pub family: String,
    /// Family title.
    pub category: String,
    /// Case title.
    pub title: String,
    /// Level.
    pub level: Level,
    /// Where the expectation comes from.
    pub source: String,
    /// Whether it changes host state.
    pub state_changing: bool,
    /// Outcome.
    pub status: Status,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// Why it failed.
    pub failure: Option<Failure>,
    /// Tells the case found.
    pub evidence: Vec<Evidence>,
    /// Time taken.
    pub millis: u64,
}

/// Counts by outcome.
#[derive(Debug, Clone, Copy, Default, Serialize, schemars::JsonSchema)]
pub struct Summary {
    /// Cases selected.
    pub total: usize,
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Failed `must` cases.
    pub must_failed: usize,
    /// Failed `should` cases.
    pub should_failed: usize,
    /// Failed `informational` cases.
    pub informational_failed: usize,
}

/// The whole run.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SuiteReport {
    /// [`REPORT_FORMAT`].
    #[schemars(extend("const" = "kmsharness-conform/1"))]
    pub format: &'static str,
    /// The host.
    pub target: String,
    /// The profile.
    pub profile: Profile,
    /// Whether state-changing cases were allowed.
    pub state_changes: bool,
    /// Seconds the run took.
    pub seconds: f64,
    /// Counts.
    pub summary: Summary,
    /// Which host this looks like, and why.
    pub verdict: Verdict,
    /// Every selected case, in vector order.
    pub cases: Vec<CaseResult>,
    /// Whether a failed `should` case fails the run (`--strict`).
    pub strict: bool,
    /// When the run started, RFC 3339 in UTC to the second.
    pub started: String,
    /// 0 when no case failed that fails the run (a `must` case, or with `strict` a `should`
    /// case), 1 otherwise.
    pub exit_status: u8,
}

/// Whether a failed case of `level` fails the run.
pub fn level_fails_run(level: Level, strict: bool) -> bool {
    match level {
        Level::Must => true,
        Level::Should => strict,
        Level::Informational => false,
    }
}

impl SuiteReport {
    /// The exit status.
    pub fn exit(&self) -> Exit {
        if self.exit_status == 0 {
            Exit::Success
        } else {
            Exit::ChecksFailed
        }
    }

    /// Whether this case's result fails the run (and so is a JUnit `<failure>`).
    pub fn fails_run(&self, case: &CaseResult) -> bool {
        case.status == Status::Fail && level_fails_run(case.level, self.strict)
    }

    /// The ids of the failed cases.
    pub fn failed_ids(&self) -> Vec<&str> {
        self.cases
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.id.as_str())
            .collect()
    }
}

/// Runs one case's steps until one fails.
pub async fn run_case(env: &Env, case: &Case) -> (Option<Failure>, Vec<Evidence>) {
    let mut run = CaseRun::new(env, &case.id);
    let steps = async {
        for (i, step) in case.steps.iter().enumerate() {
            let mismatches = run.step(step).await;
            if !mismatches.is_empty() {
                return Some(Failure {
                    step: i + 1,
                    kind: step.kind(),
                    mismatches,
                });
            }
        }
        None
    };
    let deadline = CASE_DEADLINE.saturating_mul(env.time_scale.max(1));
    let failure = match tokio::time::timeout(deadline, steps).await {
        Ok(f) => f,
        Err(_) => Some(Failure {
            step: 0,
            kind: "case",
            mismatches: vec![Mismatch::new(
                "case duration",
                format!("within {} s", deadline.as_secs()),
                "still running",
            )],
        }),
    };
    (failure, run.evidence)
}

/// Why a case does not run, if it does not.
fn skip_reason(case: &Case, config: &RunConfig, host: &HostUnderTest) -> Option<String> {
    if config.skip.contains(&case.id) {
        return Some("skipped by --skip".into());
    }
    if !case.profiles.contains(&config.profile) {
        return Some(format!("not in the {} profile", config.profile));
    }
    if case.state_changing && !host.disposable && !config.allow_state_changes {
        return Some("changes host state (use --allow-state-changes)".into());
    }
    for need in &case.requires {
        match need {
            Capability::VirtualClock if host.clock.is_none() => {
                return Some("needs a virtual clock (the bundled host has one)".into());
            }
            Capability::FreshHost if !(host.fresh || config.fresh_host) => {
                return Some("needs a host that has counted nobody yet (--fresh-host)".into());
            }
            _ => {}
        }
    }
    None
}

/// Runs the selected cases against `host`.
pub async fn run_suite(config: &RunConfig, host: &HostUnderTest) -> SuiteReport {
    let started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let env = Env {
        addr: host.addr,
        clock: host.clock.clone(),
        connect_timeout: config.connect_timeout,
        read_timeout: config.read_timeout,
        time_scale: config.time_scale.max(1),
    };
    let selected: Vec<(&VectorFile, &Case)> = config
        .vectors
        .iter()
        .flat_map(|f| f.cases.iter().map(move |c| (f, c)))
        // --case and --category add up: the named cases and every case of the named families.
        .filter(|(f, c)| {
            (config.cases.is_empty() && config.categories.is_empty())
                || config.cases.contains(&c.id)
                || config.categories.contains(&f.family)
        })
        .collect();
    let mut results: Vec<Option<CaseResult>> = vec![None; selected.len()];
    let blank = |f: &VectorFile, c: &Case| CaseResult {
        id: c.id.clone(),
        family: f.family.clone(),
        category: f.title.clone(),
        title: c.title.clone(),
        level: c.level,
        source: c.source.clone(),
        state_changing: c.state_changing,
        status: Status::Skip,
        skip_reason: None,
        failure: None,
        evidence: Vec::new(),
        millis: 0,
    };
    let mut sequential = Vec::new();
    let mut concurrent = Vec::new();
    let mut exclusive = Vec::new();
    for (i, (f, c)) in selected.iter().enumerate() {
        if let Some(reason) = skip_reason(c, config, host) {
            let mut r = blank(f, c);
            r.skip_reason = Some(reason);
            results[i] = Some(r);
        } else if c.state_changing {
            sequential.push(i);
        } else if c.exclusive {
            exclusive.push(i);
        } else {
            concurrent.push(i);
        }
    }
    let finish = |i: usize, failure: Option<Failure>, evidence: Vec<Evidence>, t: Duration| {
        let (f, c) = selected[i];
        let mut r = blank(f, c);
        r.status = if failure.is_some() {
            Status::Fail
        } else {
            Status::Pass
        };
        r.failure = failure;
        r.evidence = evidence;
        r.millis = t.as_millis() as u64;
        r
    };
    // State-changing cases first, in order: the counting cases need a host nobody else has
    // counted on yet, and each expects the state the previous one left.
    for i in sequential {
        let t = Instant::now();
        let (failure, evidence) = run_case(&env, selected[i].1).await;
        results[i] = Some(finish(i, failure, evidence, t.elapsed()));
    }
    // Independent cases concurrently, at most `concurrency` at a time.
    let limit = Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1)));
    let mut running = Vec::new();
    for i in concurrent {
        let env = env.clone();
        let case = selected[i].1.clone();
        let limit = limit.clone();
        running.push((
            i,
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                let t = Instant::now();
                let (failure, evidence) = run_case(&env, &case).await;
                (failure, evidence, t.elapsed())
            }),
        ));
    }
    for (i, handle) in running {
        let (failure, evidence, t) = match handle.await {
            Ok(r) => r,
            Err(e) => (
                Some(Failure {
                    step: 0,
                    kind: "case",
                    mismatches: vec![Mismatch::new("case", "to complete", e.to_string())],
                }),
                Vec::new(),
                Duration::ZERO,
            ),
        };
        results[i] = Some(finish(i, failure, evidence, t));
    }
    for i in exclusive {
        let t = Instant::now();
        let (failure, evidence) = run_case(&env, selected[i].1).await;
        results[i] = Some(finish(i, failure, evidence, t.elapsed()));
    }
    let cases: Vec<CaseResult> = results.into_iter().flatten().collect();
    let mut summary = Summary {
        total: cases.len(),
        ..Summary::default()
    };
    let mut evidence = Vec::new();
    for c in &cases {
        match c.status {
            Status::Pass => summary.passed += 1,
            Status::Skip => summary.skipped += 1,
            Status::Fail => {
                summary.failed += 1;
                match c.level {
                    Level::Must => summary.must_failed += 1,
                    Level::Should => summary.should_failed += 1,
                    Level::Informational => summary.informational_failed += 1,
                }
            }
        }
        evidence.extend(c.evidence.iter().cloned());
        if c.status == Status::Fail && c.evidence.is_empty() {
            let case = selected.iter().find(|(_, x)| x.id == c.id).map(|(_, x)| *x);
            if let Some(case) = case
                && (case.suggests.is_some() || case.level == Level::Informational)
            {
                let what = c
                    .failure
                    .as_ref()
                    .and_then(|f| f.mismatches.first())
                    .map_or(String::new(), |m| {
                        format!(": {} expected {}, got {}", m.what, m.expected, m.actual)
                    });
                evidence.push(Evidence {
                    case: c.id.clone(),
                    observation: format!("{}{what}", c.title),
                    suggests: case.suggests.clone(),
                });
            }
        }
    }
    let fails_run = summary.must_failed > 0 || (config.strict && summary.should_failed > 0);
    let exit_status = u8::from(fails_run);
    SuiteReport {
        format: REPORT_FORMAT,
        target: host.label.clone(),
        profile: config.profile,
        state_changes: host.disposable || config.allow_state_changes,
        seconds: started.elapsed().as_secs_f64(),
        summary,
        verdict: verdict(evidence),
        cases,
        strict: config.strict,
        started: started_at,
        exit_status,
    }
}

/// Whether the host accepts a TCP connection at all (else: exit status 3).
pub async fn reachable(addr: SocketAddr, timeout: Duration) -> Result<(), raw::ConnectError> {
    raw::reachable(addr, timeout).await
}
