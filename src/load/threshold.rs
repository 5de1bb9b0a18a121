//! Pass/fail thresholds on a run's outcome (`--threshold EXPR` on `load` and `replay`), k6-style:
//! `p99<5ms`, `call.p99.9<=20ms`, `errors<0.1%`, `errors<=10`, `rate>=2000`. Parsed when the
//! options are validated, evaluated against the report's [`Outcome`] at the end of the run;
//! pure (no clock, no I/O).
//!
//! An expression is `[PHASE.]METRIC OP LIMIT`:
//! - a latency statistic (`p50`, `p90`, `p99`, `p99.9`, `p99.99`, `min`, `mean`, `max`) of a
//!   phase (`connect`, `bind`, `call`, `total`; `total` when none is named), the limit with a
//!   unit (`us` or `µs`, `ms`, `s`);
//! - `errors`: failed activations (sent and not ok), a count or, with `%`, a percentage of sent;
//! - `rate`: validated activations per second (optionally written `/s`).
//!
//! `OP` is one of `<`, `<=`, `>`, `>=`, `==`. A threshold with nothing to measure (a latency
//! of a phase that recorded no value, a percentage of nothing sent) fails.

use serde::{Deserialize, Serialize};

use super::stats::{Outcome, Phase, PhaseSummary};

/// A latency statistic of one phase's histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
    /// 99.99th percentile.
    P9999,
    /// Smallest value.
    Min,
    /// Mean.
    Mean,
    /// Largest value.
    Max,
}

impl Stat {
    /// Every statistic, in the order the text report prints them.
    pub const ALL: [Stat; 8] = [
        Stat::P50,
        Stat::P90,
        Stat::P99,
        Stat::P999,
        Stat::P9999,
        Stat::Min,
        Stat::Mean,
        Stat::Max,
    ];

    /// Its name in expressions and reports.
    pub fn name(self) -> &'static str {
        match self {
            Stat::P50 => "p50",
            Stat::P90 => "p90",
            Stat::P99 => "p99",
            Stat::P999 => "p99.9",
            Stat::P9999 => "p99.99",
            Stat::Min => "min",
            Stat::Mean => "mean",
            Stat::Max => "max",
        }
    }

    fn of(self, p: &PhaseSummary) -> f64 {
        match self {
            Stat::P50 => p.p50 as f64,
            Stat::P90 => p.p90 as f64,
            Stat::P99 => p.p99 as f64,
            Stat::P999 => p.p999 as f64,
            Stat::P9999 => p.p9999 as f64,
            Stat::Min => p.min as f64,
            Stat::Mean => p.mean,
            Stat::Max => p.max as f64,
        }
    }
}

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A latency statistic of a phase, microseconds.
    Latency {
        /// The phase.
        phase: Phase,
        /// The statistic.
        stat: Stat,
    },
    /// Failed activations (sent and not ok), a count.
    Errors,
    /// Failed activations as a percentage of those sent.
    ErrorRate,
    /// Validated activations per second.
    Rate,
}

impl Metric {
    /// Its name in reports: `PHASE.STAT`, `errors`, `error_rate` or `rate`.
    pub fn name(self) -> String {
        match self {
            Metric::Latency { phase, stat } => format!("{}.{}", phase.name(), stat.name()),
            Metric::Errors => "errors".into(),
            Metric::ErrorRate => "error_rate".into(),
            Metric::Rate => "rate".into(),
        }
    }

    /// The unit of its limit and actual value in reports.
    pub fn unit(self) -> Unit {
        match self {
            Metric::Latency { .. } => Unit::Micros,
            Metric::Errors => Unit::Count,
            Metric::ErrorRate => Unit::Percent,
            Metric::Rate => Unit::PerSecond,
        }
    }

    /// Its value in `o`, or `None` when there is nothing to measure.
    pub fn value(self, o: &Outcome) -> Option<f64> {
        match self {
            Metric::Latency { phase, stat } => o
                .phases
                .get(phase.name())
                .filter(|p| p.count > 0)
                .map(|p| stat.of(p)),
            Metric::Errors => Some(o.failed as f64),
            Metric::ErrorRate => (o.sent > 0).then(|| o.failed as f64 * 100.0 / o.sent as f64),
            Metric::Rate => Some(o.throughput),
        }
    }
}

/// The unit of a threshold's limit and actual value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(
    description = "The unit of `limit` and `actual`: `us` (latency, microseconds), \
    `count` (failed activations), `percent` (failed activations per 100 sent), `per_second` \
    (validated activations per second)."
)]
pub enum Unit {
    /// Microseconds.
    #[serde(rename = "us")]
    Micros,
    /// A count.
    #[serde(rename = "count")]
    Count,
    /// Per 100.
    #[serde(rename = "percent")]
    Percent,
    /// Per second.
    #[serde(rename = "per_second")]
    PerSecond,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(description = "The comparison the actual value must satisfy against the limit.")]
pub enum Op {
    /// Below.
    #[serde(rename = "<")]
    Lt,
    /// At most.
    #[serde(rename = "<=")]
    Le,
    /// Above.
    #[serde(rename = ">")]
    Gt,
    /// At least.
    #[serde(rename = ">=")]
    Ge,
    /// Equal.
    #[serde(rename = "==")]
    Eq,
}

impl Op {
    /// Longest first, so that `<=` is not read as `<`.
    const SPELLINGS: [(&'static str, Op); 5] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];

    /// `text` split at its first comparison (the longest spelling where two start there):
    /// what is before it, the comparison, what is after it; `None` when it has none.
    pub(crate) fn split(text: &str) -> Option<(&str, Op, &str)> {
        let (at, len, op) = Op::SPELLINGS
            .iter()
            .filter_map(|&(s, op)| text.find(s).map(|at| (at, s.len(), op)))
            .min_by_key(|&(at, len, _)| (at, core::cmp::Reverse(len)))?;
        Some((&text[..at], op, &text[at + len..]))
    }

    /// Whether `actual OP limit`.
    pub fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit,
            Op::Eq => actual == limit,
        }
    }

    /// Its spelling.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }
}

/// A parsed `--threshold` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The expression as given.
    pub expr: String,
    /// What it measures.
    pub metric: Metric,
    /// The comparison.
    pub op: Op,
    /// The limit, in the metric's [`Unit`].
    pub limit: f64,
}

/// Why an expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// No `<`, `<=`, `>`, `>=` or `==`.
    #[error("no comparison (<, <=, >, >= or ==)")]
    NoOperator,
    /// The metric is not one of those known.
    #[error("unknown metric {0:?}")]
    UnknownMetric(String),
    /// The phase prefix is not one of those known.
    #[error("unknown phase {0:?} (connect, bind, call or total)")]
    UnknownPhase(String),
    /// `errors` or `rate` with a phase.
    #[error("{0} is counted over whole activations, not per phase")]
    NotPerPhase(&'static str),
    /// The limit is not a number at least 0.
    #[error("limit {0:?} is not a number at least 0")]
    BadNumber(String),
    /// A latency limit without a unit.
    #[error("a latency limit needs a unit (us, ms or s)")]
    MissingUnit,
    /// A unit the metric does not take.
    #[error("unit {unit:?} does not fit {metric} (expected {expected})")]
    BadUnit {
        /// The unit given.
        unit: String,
        /// The metric.
        metric: &'static str,
        /// What it takes.
        expected: &'static str,
    },
}

impl core::str::FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(text: &str) -> Result<Threshold, ThresholdError> {
        let (name, op, limit) = Op::split(text).ok_or(ThresholdError::NoOperator)?;
        let (name, limit) = (name.trim(), limit.trim());
        let (metric, limit) = parse_metric(name, limit)?;
        Ok(Threshold {
            expr: text.trim().to_owned(),
            metric,
            op,
            limit,
        })
    }
}

/// The metric named `name` and `limit` in its unit.
fn parse_metric(name: &str, limit: &str) -> Result<(Metric, f64), ThresholdError> {
    let (phase, stat_name) = match name.split_once('.') {
        Some(_) if is_stat(name) => (None, name),
        Some((p, rest)) => match Phase::ALL.into_iter().find(|ph| ph.name() == p) {
            Some(phase) => (Some(phase), rest),
            None if p.starts_with('p') && p[1..].bytes().all(|b| b.is_ascii_digit()) => {
                return Err(ThresholdError::UnknownMetric(name.to_owned()));
            }
            None => return Err(ThresholdError::UnknownPhase(p.to_owned())),
        },
        None => (None, name),
    };
    let (number, unit) = split_number(limit)?;
    match stat_name {
        "errors" | "rate" if phase.is_some() => {
            Err(ThresholdError::NotPerPhase(if stat_name == "errors" {
                "errors"
            } else {
                "rate"
            }))
        }
        "errors" => match unit {
            "" => Ok((Metric::Errors, number)),
            "%" => Ok((Metric::ErrorRate, number)),
            _ => Err(ThresholdError::BadUnit {
                unit: unit.to_owned(),
                metric: "errors",
                expected: "a count, or a percentage with %",
            }),
        },
        "rate" => match unit {
            "" | "/s" => Ok((Metric::Rate, number)),
            _ => Err(ThresholdError::BadUnit {
                unit: unit.to_owned(),
                metric: "rate",
                expected: "validated activations per second, optionally written /s",
            }),
        },
        _ => {
            let stat = Stat::ALL
                .into_iter()
                .find(|s| s.name() == stat_name)
                .ok_or_else(|| ThresholdError::UnknownMetric(name.to_owned()))?;
            let scale = match unit {
                "" => return Err(ThresholdError::MissingUnit),
                "us" | "µs" => 1.0,
                "ms" => 1e3,
                "s" => 1e6,
                _ => {
                    return Err(ThresholdError::BadUnit {
                        unit: unit.to_owned(),
                        metric: "a latency",
                        expected: "us, ms or s",
                    });
                }
            };
            let phase = phase.unwrap_or(Phase::Total);
            Ok((Metric::Latency { phase, stat }, number * scale))
        }
    }
}

fn is_stat(name: &str) -> bool {
    Stat::ALL.iter().any(|s| s.name() == name)
}

/// `800us` → (800, "us").
pub(crate) fn split_number(limit: &str) -> Result<(f64, &str), ThresholdError> {
    let end = limit
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(limit.len());
    let (number, unit) = limit.split_at(end);
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok((n, unit.trim())),
        _ => Err(ThresholdError::BadNumber(limit.to_owned())),
    }
}

/// A threshold evaluated at the end of a run, as reports show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[schemars(
    description = "A `--threshold` expression evaluated at the end of the run.",
    deny_unknown_fields
)]
pub struct ThresholdResult {
    /// The expression as given.
    #[schemars(description = "The expression as given, e.g. `p99<5ms` or `errors<0.1%`.")]
    pub expr: String,
    /// What it measured.
    #[schemars(
        description = "What it measures: `PHASE.STAT` (a latency statistic of a phase's \
        histogram: `p50`, `p90`, `p99`, `p99.9`, `p99.99`, `min`, `mean` or `max` of `connect`, \
        `bind`, `call` or `total`; `total` when the expression names no phase), `errors` (failed \
        activations, `failed`), `error_rate` (`failed` per 100 `sent`) or `rate` (`throughput`).",
        regex(
            pattern = r"^((connect|bind|call|total)\.(p50|p90|p99|p99\.9|p99\.99|min|mean|max)|errors|error_rate|rate)$"
        )
    )]
    pub metric: String,
    /// The comparison.
    pub op: Op,
    /// The limit, in `unit`.
    #[schemars(description = "The limit, in `unit` (a latency in ms or s is converted to µs).")]
    pub limit: f64,
    /// The unit of `limit` and `actual`.
    pub unit: Unit,
    /// The measured value, in `unit`; null when there was nothing to measure.
    #[schemars(
        description = "The measured value, in `unit`; null when there was nothing to measure \
        (a phase that recorded no value, a percentage of nothing sent), and the threshold then \
        fails."
    )]
    pub actual: Option<f64>,
    /// Whether `actual OP limit` holds.
    #[schemars(
        description = "Whether `actual OP limit` holds. A failed threshold makes the exit \
        status 1 unless a worse one applies."
    )]
    pub passed: bool,
}

impl Threshold {
    /// Evaluates against a run's outcome.
    pub fn evaluate(&self, o: &Outcome) -> ThresholdResult {
        let actual = self.metric.value(o);
        ThresholdResult {
            expr: self.expr.clone(),
            metric: self.metric.name(),
            op: self.op,
            limit: self.limit,
            unit: self.metric.unit(),
            actual,
            passed: actual.is_some_and(|a| self.op.holds(a, self.limit)),
        }
    }
}

/// Evaluates every threshold against `o`, in the order given.
pub fn evaluate(thresholds: &[Threshold], o: &Outcome) -> Vec<ThresholdResult> {
    thresholds.iter().map(|t| t.evaluate(o)).collect()
}

/// Whether any threshold failed.
pub fn any_failed(results: &[ThresholdResult]) -> bool {
    results.iter().any(|r| !r.passed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::Stats;
    use crate::proto::verdict::Failure;
    use std::time::Duration;

    fn t(text: &str) -> Threshold {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"))
    }

    fn latency(phase: Phase, stat: Stat) -> Metric {
        Metric::Latency { phase, stat }
    }

    #[test]
    fn test_parse_latency_units_and_phases() {
        let p99 = t("p99<5ms");
        assert_eq!(p99.metric, latency(Phase::Total, Stat::P99));
        assert_eq!((p99.op, p99.limit), (Op::Lt, 5000.0));
        assert_eq!(t("p99.9<20ms").metric, latency(Phase::Total, Stat::P999));
        assert_eq!(t("p99.99 < 1s").limit, 1e6);
        assert_eq!(t("p50<=800us").limit, 800.0);
        assert_eq!(t("p50<=800µs").limit, 800.0);
        assert_eq!(t("max<1s").metric, latency(Phase::Total, Stat::Max));
        assert_eq!(t("mean<1.5ms").limit, 1500.0);
        let call = t("call.p99<2ms");
        assert_eq!(call.metric, latency(Phase::Call, Stat::P99));
        assert_eq!(call.metric.name(), "call.p99");
        assert_eq!(
            t("connect.p99.9>=0.5ms").metric,
            latency(Phase::Connect, Stat::P999)
        );
        assert_eq!(t("bind.min>0us").op, Op::Gt);
        assert_eq!(t("total.max==60s").op, Op::Eq);
        assert_eq!(t(" p99<5ms ").expr, "p99<5ms");
    }

    #[test]
    fn test_parse_errors_and_rate() {
        let pct = t("errors<0.1%");
        assert_eq!((pct.metric, pct.limit), (Metric::ErrorRate, 0.1));
        assert_eq!(pct.metric.unit(), Unit::Percent);
        let count = t("errors<=10");
        assert_eq!(
            (count.metric, count.op, count.limit),
            (Metric::Errors, Op::Le, 10.0)
        );
        let rate = t("rate>=2000");
        assert_eq!(
            (rate.metric, rate.op, rate.limit),
            (Metric::Rate, Op::Ge, 2000.0)
        );
        assert_eq!(t("rate>=2000/s").limit, 2000.0);
    }

    #[test]
    fn test_parse_bad_input() {
        let bad = |text: &str| {
            text.parse::<Threshold>()
                .expect_err(&format!("{text:?} parsed"))
        };
        assert_eq!(bad("p99"), ThresholdError::NoOperator);
        assert_eq!(bad(""), ThresholdError::NoOperator);
        assert_eq!(bad("p98<5ms"), ThresholdError::UnknownMetric("p98".into()));
        assert_eq!(bad("<5ms"), ThresholdError::UnknownMetric(String::new()));
        assert_eq!(
            bad("dns.p99<5ms"),
            ThresholdError::UnknownPhase("dns".into())
        );
        assert_eq!(
            bad("p99.5<5ms"),
            ThresholdError::UnknownMetric("p99.5".into())
        );
        assert_eq!(
            bad("call.p98<5ms"),
            ThresholdError::UnknownMetric("call.p98".into())
        );
        assert_eq!(bad("call.errors<1"), ThresholdError::NotPerPhase("errors"));
        assert_eq!(bad("total.rate>1"), ThresholdError::NotPerPhase("rate"));
        assert_eq!(bad("p99<5"), ThresholdError::MissingUnit);
        assert!(matches!(bad("p99<5m"), ThresholdError::BadUnit { .. }));
        assert!(matches!(bad("p99<5%"), ThresholdError::BadUnit { .. }));
        assert!(matches!(bad("errors<5ms"), ThresholdError::BadUnit { .. }));
        assert!(matches!(bad("rate>5%"), ThresholdError::BadUnit { .. }));
        assert_eq!(bad("p99<ms"), ThresholdError::BadNumber("ms".into()));
        assert_eq!(bad("p99<-5ms"), ThresholdError::BadNumber("-5ms".into()));
        assert_eq!(
            bad("p99<1.2.3ms"),
            ThresholdError::BadNumber("1.2.3ms".into())
        );
        assert_eq!(bad("rate>="), ThresholdError::BadNumber(String::new()));
        assert!(matches!(bad("p99<<5ms"), ThresholdError::BadNumber(_)));
    }

    /// 100 sent, 98 ok with total latencies 1..=98 ms, 2 timed out, over 2 s.
    fn outcome() -> Outcome {
        let mut s = Stats::default();
        for ms in 1..=98 {
            s.record(Phase::Total, Duration::from_millis(ms));
            s.record(Phase::Call, Duration::from_micros(ms * 10));
        }
        s.sent = 100;
        s.ok = 98;
        s.error(Failure::Timeout);
        s.error(Failure::Timeout);
        Outcome::of(&s, 0, 2.0)
    }

    #[test]
    fn test_evaluate() {
        let o = outcome();
        let eval = |text: &str| t(text).evaluate(&o);
        let p99 = eval("p99<100ms");
        assert!(p99.passed, "{p99:?}");
        let actual = p99.actual.unwrap();
        assert!((97_000.0..=98_100.0).contains(&actual), "{p99:?}");
        assert_eq!((p99.unit, p99.metric.as_str()), (Unit::Micros, "total.p99"));
        assert!(!eval("p99<50ms").passed);
        assert!(eval("call.max<=1ms").passed);
        assert!(!eval("call.max<900us").passed);
        assert!(eval("min>=1ms").passed);
        assert!(eval("errors<=2").passed);
        assert!(!eval("errors<2").passed);
        let rate = eval("errors<3%");
        assert_eq!(rate.actual, Some(2.0));
        assert!(rate.passed);
        assert!(!eval("errors<0.1%").passed);
        assert_eq!(eval("rate>=2000").actual, Some(49.0));
        assert!(eval("rate>=49").passed);
        assert!(!eval("rate>49").passed);
        assert!(eval("rate==49").passed);
    }

    #[test]
    fn test_nothing_to_measure_fails() {
        let o = Outcome::of(&Stats::default(), 0, 1.0);
        let r = t("connect.p99<1s").evaluate(&o);
        assert_eq!((r.actual, r.passed), (None, false));
        assert_eq!(t("errors<1%").evaluate(&o).actual, None);
        assert!(t("errors<1").evaluate(&o).passed);
        let all = evaluate(&[t("errors<1"), t("p99<1s")], &o);
        assert!(any_failed(&all));
        assert!(!any_failed(&all[..1]));
    }
}
