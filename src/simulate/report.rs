//! The report of a simulation: its JSON form `kmsharness-simulate/1` (schema in
//! `docs/simulate-report.schema.json`) and its text form.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::scenario::ClockMode;
use crate::load::threshold::{Op, Unit};

/// The `format` field of the JSON report.
pub const FORMAT: &str = "kmsharness-simulate/1";

/// A whole simulation report. The same scenario and seed give the same report, byte for byte,
/// except `summary.exchanges_per_sec` (a wall-clock rate).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Report {
    /// Always `kmsharness-simulate/1`.
    #[schemars(extend("const" = "kmsharness-simulate/1"))]
    pub format: String,
    /// The seed every random choice came from.
    pub seed: u64,
    /// Days simulated.
    pub days_simulated: u32,
    /// `virtual`, or `real` for a run on the wall clock against hosts on their own clocks.
    pub clock: ClockMode,
    /// The run stopped this many minutes after its start (the scenario's `minutes`), if set.
    pub minutes: Option<u32>,
    /// The state at the end of each day.
    pub days: Vec<DayReport>,
    /// Each group of machines at the end.
    pub groups: Vec<GroupReport>,
    /// Hosts going down and up, failovers.
    pub events: Vec<Event>,
    /// The `--threshold` expressions, evaluated at the end (none without one).
    #[serde(default)]
    pub thresholds: Vec<ThresholdResult>,
    /// Totals.
    pub summary: Summary,
}

/// The state at the end of one day.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct DayReport {
    /// Day number, 1 for the first.
    pub day: u32,
    /// Machines present and licensed.
    pub activated: u64,
    /// Machines present and never activated (grace, or grace expired).
    pub not_activated: u64,
    /// Machines present whose validity lapsed without a renewal.
    pub out_of_tolerance: u64,
    /// Machines not yet arrived, away or decommissioned.
    pub absent: u64,
    /// Activation attempts made that day (each one discovery and at most one exchange).
    pub requests: u64,
    /// Attempts that did not activate, by reason (`count below threshold`, `timeout` when no
    /// host responded, or a failure class such as `hresult:0xC004F042`).
    pub failures: BTreeMap<String, u64>,
    /// Each host at the end of the day.
    pub hosts: Vec<HostDay>,
}

/// One host at the end of a day.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct HostDay {
    /// Its name.
    pub name: String,
    /// Requests it answered that day.
    pub requests: u64,
    /// Its counts: the host's own (an in-process engine, or a host process through its
    /// control port); for a host process without a control port, the highest count it returned
    /// that day.
    pub counts: Counts,
}

/// A host's count per application.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Counts {
    /// Windows.
    pub windows: u32,
    /// Office 2010.
    pub office2010: u32,
    /// Office 2013 and later.
    pub office2013: u32,
}

/// One group at the end.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct GroupReport {
    /// Its name.
    pub name: String,
    /// Its product (catalog name).
    pub product: String,
    /// Machines in it.
    pub machines: u64,
    /// Licensed at the end.
    pub activated_at_end: u64,
    /// Never activated during the whole run.
    pub never_activated: u64,
    /// Why, in words, when some never activated.
    pub never_activated_reason: Option<String>,
    /// Minutes from first boot to first activation, of those activated.
    pub first_activation_minutes: Option<Minutes>,
    /// The same as a distribution: machines per bin of minutes to first activation, every bin
    /// of [`FIRST_ACTIVATION_BINS`] in order (empty ones included).
    #[serde(default)]
    pub first_activation_bins: Vec<MinutesBin>,
}

/// Upper edges (exclusive, minutes) of the bins of time to first activation: 10 and 30
/// minutes, 1, 2 (the retry interval), 4, 8 hours, 1, 2, 7 (the renewal interval) and 30 days
/// (the host's count window), and the rest.
pub const FIRST_ACTIVATION_BINS: [Option<u32>; 11] = [
    Some(10),
    Some(30),
    Some(60),
    Some(120),
    Some(240),
    Some(480),
    Some(1440),
    Some(2880),
    Some(10_080),
    Some(43_200),
    None,
];

/// Machines whose first activation came within a bin of minutes after their first boot.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct MinutesBin {
    /// The bin's upper edge, exclusive; null for the last, open, bin. Its lower edge is the
    /// previous bin's upper one (0 for the first).
    pub below_minutes: Option<u32>,
    /// Machines in it.
    pub machines: u64,
}

impl MinutesBin {
    /// The bins of [`FIRST_ACTIVATION_BINS`] counting `minutes`.
    pub fn of(minutes: &[u32]) -> Vec<MinutesBin> {
        let mut bins: Vec<MinutesBin> = FIRST_ACTIVATION_BINS
            .iter()
            .map(|&below_minutes| MinutesBin {
                below_minutes,
                machines: 0,
            })
            .collect();
        for &m in minutes {
            if let Some(b) = bins
                .iter_mut()
                .find(|b| b.below_minutes.is_none_or(|edge| m < edge))
            {
                b.machines += 1;
            }
        }
        bins
    }
}

/// Percentiles of minutes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Minutes {
    /// Median.
    pub p50: u32,
    /// 90th percentile.
    pub p90: u32,
    /// Largest.
    pub max: u32,
}

impl Minutes {
    /// Of sorted values; `None` when empty.
    pub fn of(sorted: &[u32]) -> Option<Minutes> {
        let at = |q: usize| sorted[((sorted.len() - 1) * q).div_ceil(100)];
        (!sorted.is_empty()).then(|| Minutes {
            p50: at(50),
            p90: at(90),
            max: sorted[sorted.len() - 1],
        })
    }
}

/// Something that happened at a moment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Event {
    /// When, in days since the start (a failover: the day it happened on, 0-based).
    pub day: f64,
    /// `host down`, `host up` or `failover`.
    pub event: String,
    /// The host (a failover: the one machines left).
    pub host: String,
    /// A failover: the host they moved to.
    pub to: Option<String>,
    /// A failover: how many machines moved.
    pub machines: Option<u64>,
}

impl Event {
    /// A host going down or up.
    pub fn host(day: f64, event: &str, host: &str) -> Event {
        Event {
            day,
            event: event.to_owned(),
            host: host.to_owned(),
            to: None,
            machines: None,
        }
    }
}

/// Totals.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Summary {
    /// Machines in the scenario.
    pub machines: u64,
    /// Exchanges made (each a whole bind, request and verified response).
    pub exchanges: u64,
    /// Exchanges per second of wall-clock time: the one field that differs between two runs.
    pub exchanges_per_sec: f64,
    /// Licensed at the end.
    pub activated_at_end: u64,
    /// Never activated.
    pub never_activated: u64,
}

/// A threshold evaluated at the end of a simulation, as reports show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[schemars(
    description = "A `simulate --threshold` expression evaluated at the end of the run.",
    deny_unknown_fields
)]
pub struct ThresholdResult {
    /// The expression as given.
    #[schemars(description = "The expression as given, e.g. `activated>=100%@day2`.")]
    pub expr: String,
    /// What it measured.
    #[schemars(
        description = "What it measures: a state of the day's machines (`activated`, \
        `not_activated`, `out_of_tolerance`, `absent`), that day's `requests` or `failures`, or \
        `never_activated` over the whole run.",
        regex(
            pattern = r"^(activated|not_activated|out_of_tolerance|absent|requests|failures|never_activated)$"
        )
    )]
    pub metric: String,
    /// The day it was taken at.
    #[schemars(
        description = "The day (1 for the first) whose end it was taken at: the `@dayN` of the \
        expression, else the last day simulated; null for `never_activated`.",
        range(min = 1)
    )]
    pub day: Option<u32>,
    /// The comparison.
    pub op: Op,
    /// The limit, in `unit`.
    pub limit: f64,
    /// `count` or `percent`.
    #[schemars(
        description = "`count` (machines, requests or failures), or `percent`: of the \
        machines present that day (`absent` and `never_activated`: of all machines; `failures`: \
        of that day's requests)."
    )]
    pub unit: Unit,
    /// The measured value; null when there was nothing to measure.
    #[schemars(
        description = "The measured value, in `unit`; null when there was nothing to measure \
        (a day not simulated, a percentage of nothing), and the threshold then fails."
    )]
    pub actual: Option<f64>,
    /// Whether `actual OP limit` holds.
    #[schemars(
        description = "Whether `actual OP limit` holds; a failed one makes the exit \
        status 1."
    )]
    pub passed: bool,
}

/// The text report.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let span = match r.minutes {
        Some(m) => format!("{m} minutes"),
        None => format!("{} days", r.days_simulated),
    };
    let real = match r.clock {
        ClockMode::Real => " in real time",
        ClockMode::Virtual => "",
    };
    let _ = writeln!(
        out,
        "simulated {span}{real}, seed {}: {} machines, {} exchanges ({:.0}/s)",
        r.seed, r.summary.machines, r.summary.exchanges, r.summary.exchanges_per_sec
    );
    let _ = writeln!(
        out,
        "{:>5} {:>9} {:>9} {:>9} {:>9} {:>9}  hosts (requests/windows count)",
        "day", "activated", "not_act", "oot", "absent", "requests"
    );
    for d in &r.days {
        let hosts: Vec<String> = d
            .hosts
            .iter()
            .map(|h| format!("{} {}/{}", h.name, h.requests, h.counts.windows))
            .collect();
        let _ = writeln!(
            out,
            "{:>5} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
            d.day,
            d.activated,
            d.not_activated,
            d.out_of_tolerance,
            d.absent,
            d.requests,
            hosts.join(", ")
        );
    }
    for e in &r.events {
        match (&e.to, e.machines) {
            (Some(to), Some(n)) => {
                let _ = writeln!(
                    out,
                    "day {}: {} machines failed over from {} to {to}",
                    e.day, n, e.host
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "day {}: {} {}",
                    e.day,
                    e.host,
                    e.event.trim_start_matches("host ")
                );
            }
        }
    }
    for g in &r.groups {
        let _ = write!(
            out,
            "group {} ({}): {} machines, {} activated at the end, {} never activated",
            g.name, g.product, g.machines, g.activated_at_end, g.never_activated
        );
        if let Some(m) = g.first_activation_minutes {
            let _ = write!(
                out,
                "; first activation after {} min (p50), {} (p90), {} (max)",
                m.p50, m.p90, m.max
            );
        }
        out.push('\n');
        if let Some(reason) = &g.never_activated_reason {
            let _ = writeln!(out, "  never activated: {reason}");
        }
    }
    thresholds(&mut out, &r.thresholds);
    out
}

/// A threshold's value in its unit.
fn value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Percent => format!("{v:.2}%"),
        _ => format!("{v:.0}"),
    }
}

/// Where a threshold was taken: `day N`, or `whole run`.
pub fn taken_at(t: &ThresholdResult) -> String {
    t.day
        .map_or_else(|| "whole run".to_owned(), |d| format!("day {d}"))
}

/// What a threshold measured, in words: `activated = 93.00% at day 2, limit >= 100.00%`.
pub fn measured(t: &ThresholdResult) -> String {
    format!(
        "{} = {} at {}, limit {} {}",
        t.metric,
        t.actual
            .map_or_else(|| "nothing measured".to_owned(), |a| value(a, t.unit)),
        taken_at(t),
        t.op.symbol(),
        value(t.limit, t.unit)
    )
}

/// The `--threshold` lines: each expression with where it was taken, its value, and `ok` or
/// `FAILED`.
fn thresholds(out: &mut String, results: &[ThresholdResult]) {
    if results.is_empty() {
        return;
    }
    let failed = results.iter().filter(|t| !t.passed).count();
    if failed == 0 {
        let _ = writeln!(out, "thresholds (all {} passed)", results.len());
    } else {
        let _ = writeln!(out, "thresholds ({failed} of {} FAILED)", results.len());
    }
    let width = results.iter().map(|t| t.expr.len()).max().unwrap_or(0);
    for t in results {
        let actual = t
            .actual
            .map_or_else(|| "nothing measured".to_owned(), |a| value(a, t.unit));
        let _ = writeln!(
            out,
            "  {:<width$}  {:<16} {:<10} {:>16}  {}",
            t.expr,
            t.metric,
            taken_at(t),
            actual,
            if t.passed { "ok" } else { "FAILED" }
        );
    }
}
