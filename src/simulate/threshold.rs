//! Pass/fail thresholds on a simulation (`simulate --threshold EXPR`), in the k6 style of
//! `load --threshold`: `activated>=100%@day2`, `out_of_tolerance==0`, `never_activated<=5`,
//! `failures<1%@day30`. Parsed when the options are validated, checked against the scenario's
//! days before the run, evaluated against the [`Report`] at the end; pure.
//!
//! An expression is `METRIC OP LIMIT[%][@dayN]`:
//! - a state of a day's machines: `activated`, `not_activated`, `out_of_tolerance` (`oot`),
//!   `absent`; a count, or with `%` a percentage of the machines present that day (activated,
//!   not activated or out of tolerance; `absent` of all machines);
//! - `requests` that day, a count; `failures` that day (attempts that did not activate), a
//!   count or with `%` a percentage of that day's requests;
//! - `never_activated` over the whole run (a count, or `%` of all machines), which takes no day.
//!
//! `@dayN` (1 for the first day) picks the state at the end of day N; without it, the last day
//! simulated. `OP` is one of `<`, `<=`, `>`, `>=`, `==`. A threshold with nothing to measure (a
//! day not simulated, a percentage of nothing) fails.

use super::report::{DayReport, Report, ThresholdResult};
use crate::load::threshold::{Op, Unit, split_number};

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Machines present and licensed at the end of the day.
    Activated,
    /// Machines present and never activated.
    NotActivated,
    /// Machines present whose validity lapsed.
    OutOfTolerance,
    /// Machines not present.
    Absent,
    /// Activation attempts made that day.
    Requests,
    /// Attempts that did not activate that day.
    Failures,
    /// Machines never activated during the whole run.
    NeverActivated,
}

impl Metric {
    /// Every metric with its spellings, the report's name first.
    const NAMES: [(Metric, &'static [&'static str]); 7] = [
        (Metric::Activated, &["activated"]),
        (Metric::NotActivated, &["not_activated"]),
        (Metric::OutOfTolerance, &["out_of_tolerance", "oot"]),
        (Metric::Absent, &["absent"]),
        (Metric::Requests, &["requests"]),
        (Metric::Failures, &["failures"]),
        (Metric::NeverActivated, &["never_activated"]),
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        Metric::NAMES
            .iter()
            .find(|(m, _)| *m == self)
            .map_or("", |(_, names)| names[0])
    }

    fn parse(name: &str) -> Option<Metric> {
        Metric::NAMES
            .iter()
            .find(|(_, names)| names.contains(&name))
            .map(|(m, _)| *m)
    }

    /// Whether it is counted per day (and so takes `@dayN`).
    fn per_day(self) -> bool {
        self != Metric::NeverActivated
    }

    /// Whether it may be a percentage.
    fn has_percent(self) -> bool {
        self != Metric::Requests
    }

    /// Its count on `day`, and the count its percentage is of.
    fn of_day(self, d: &DayReport, machines: u64) -> (u64, u64) {
        let present = d.activated + d.not_activated + d.out_of_tolerance;
        match self {
            Metric::Activated => (d.activated, present),
            Metric::NotActivated => (d.not_activated, present),
            Metric::OutOfTolerance => (d.out_of_tolerance, present),
            Metric::Absent => (d.absent, machines),
            Metric::Requests => (d.requests, 0),
            Metric::Failures => (d.failures.values().sum(), d.requests),
            // Counted over the whole run, never per day (`per_day`).
            Metric::NeverActivated => (0, machines),
        }
    }
}

/// A parsed `simulate --threshold` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The expression as given.
    pub expr: String,
    /// What it measures.
    pub metric: Metric,
    /// A count, or a percentage.
    pub unit: Unit,
    /// The comparison.
    pub op: Op,
    /// The limit, in `unit`.
    pub limit: f64,
    /// The day (1-based) it is taken at; `None`: the last day simulated.
    pub day: Option<u32>,
}

/// Why an expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// No `<`, `<=`, `>`, `>=` or `==`.
    #[error("no comparison (<, <=, >, >= or ==)")]
    NoOperator,
    /// The metric is not one of those known.
    #[error(
        "unknown metric {0:?} (activated, not_activated, out_of_tolerance, absent, requests, \
         failures or never_activated)"
    )]
    UnknownMetric(String),
    /// The limit is not a number at least 0.
    #[error("limit {0:?} is not a number at least 0")]
    BadNumber(String),
    /// A unit other than `%`, or `%` where the metric has none.
    #[error("{metric} takes {expected}, not {unit:?}")]
    BadUnit {
        /// The unit given.
        unit: String,
        /// The metric.
        metric: &'static str,
        /// What it takes.
        expected: &'static str,
    },
    /// `@` not followed by `dayN` with N at least 1.
    #[error("{0:?} is not a day (expected @dayN, N from 1)")]
    BadDay(String),
    /// A day on a whole-run metric.
    #[error("{0} is counted over the whole run and takes no @day")]
    NotPerDay(&'static str),
}

impl core::str::FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(text: &str) -> Result<Threshold, ThresholdError> {
        let (name, op, rest) = Op::split(text).ok_or(ThresholdError::NoOperator)?;
        let (name, rest) = (name.trim(), rest.trim());
        let metric =
            Metric::parse(name).ok_or_else(|| ThresholdError::UnknownMetric(name.to_owned()))?;
        let (limit, day) = match rest.split_once('@') {
            None => (rest, None),
            Some((limit, day)) => {
                let n = day
                    .trim()
                    .strip_prefix("day")
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| ThresholdError::BadDay(format!("@{day}")))?;
                if !metric.per_day() {
                    return Err(ThresholdError::NotPerDay(metric.name()));
                }
                (limit.trim(), Some(n))
            }
        };
        let (limit, unit) =
            split_number(limit).map_err(|_| ThresholdError::BadNumber(limit.into()))?;
        let unit = match unit {
            "" => Unit::Count,
            "%" if metric.has_percent() => Unit::Percent,
            _ => {
                return Err(ThresholdError::BadUnit {
                    unit: unit.to_owned(),
                    metric: metric.name(),
                    expected: if metric.has_percent() {
                        "a count, or a percentage with %"
                    } else {
                        "a count"
                    },
                });
            }
        };
        Ok(Threshold {
            expr: text.trim().to_owned(),
            metric,
            unit,
            op,
            limit,
            day,
        })
    }
}

impl Threshold {
    /// The day it reads, given the days simulated.
    fn day_in(&self, days_simulated: u32) -> Option<u32> {
        self.metric
            .per_day()
            .then(|| self.day.unwrap_or(days_simulated))
    }

    /// Evaluates against a report.
    pub fn evaluate(&self, r: &Report) -> ThresholdResult {
        let day = self.day_in(r.days_simulated);
        // A day the report does not hold has nothing to measure.
        let counted = match day {
            None => Some((r.summary.never_activated, r.summary.machines)),
            Some(n) => r
                .days
                .iter()
                .find(|d| d.day == n)
                .map(|d| self.metric.of_day(d, r.summary.machines)),
        };
        let actual = counted.and_then(|(count, of)| match self.unit {
            Unit::Percent => (of > 0).then(|| count as f64 * 100.0 / of as f64),
            _ => Some(count as f64),
        });
        ThresholdResult {
            expr: self.expr.clone(),
            metric: self.metric.name().to_owned(),
            day,
            op: self.op,
            limit: self.limit,
            unit: self.unit,
            actual,
            passed: actual.is_some_and(|a| self.op.holds(a, self.limit)),
        }
    }
}

/// Evaluates every threshold against `r`, in the order given.
pub fn evaluate(thresholds: &[Threshold], r: &Report) -> Vec<ThresholdResult> {
    thresholds.iter().map(|t| t.evaluate(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::ClockMode;
    use crate::simulate::report::{FORMAT, Summary};

    fn t(text: &str) -> Threshold {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"))
    }

    #[test]
    fn test_parse() {
        let a = t("activated>=100%@day2");
        assert_eq!(
            (a.metric, a.unit, a.op, a.limit, a.day),
            (Metric::Activated, Unit::Percent, Op::Ge, 100.0, Some(2))
        );
        let o = t(" oot == 0 ");
        assert_eq!(
            (o.metric, o.unit, o.day),
            (Metric::OutOfTolerance, Unit::Count, None)
        );
        assert_eq!(o.expr, "oot == 0");
        assert_eq!(t("failures<1.5% @ day30").day, Some(30));
        assert_eq!(t("never_activated<=5").metric, Metric::NeverActivated);
        assert_eq!(t("requests>10@day1").unit, Unit::Count);
    }

    #[test]
    fn test_parse_bad_input() {
        let bad = |text: &str| text.parse::<Threshold>().expect_err(text);
        assert_eq!(bad("activated"), ThresholdError::NoOperator);
        assert!(matches!(
            bad("licensed>1"),
            ThresholdError::UnknownMetric(_)
        ));
        assert!(matches!(bad("p99<5ms"), ThresholdError::UnknownMetric(_)));
        assert_eq!(
            bad("activated>1@day0"),
            ThresholdError::BadDay("@day0".into())
        );
        assert_eq!(bad("activated>1@2"), ThresholdError::BadDay("@2".into()));
        assert_eq!(
            bad("never_activated<1@day2"),
            ThresholdError::NotPerDay("never_activated")
        );
        assert!(matches!(bad("requests<5%"), ThresholdError::BadUnit { .. }));
        assert!(matches!(
            bad("activated>5ms"),
            ThresholdError::BadUnit { .. }
        ));
        assert!(matches!(bad("activated>-1"), ThresholdError::BadNumber(_)));
        assert!(matches!(bad("activated>%"), ThresholdError::BadNumber(_)));
    }

    fn report() -> Report {
        let day = |day, activated, not_activated, absent, requests, failed| DayReport {
            day,
            activated,
            not_activated,
            out_of_tolerance: 0,
            absent,
            requests,
            failures: [("count below threshold".to_owned(), failed)]
                .into_iter()
                .collect(),
            hosts: Vec::new(),
        };
        Report {
            format: FORMAT.into(),
            seed: 1,
            days_simulated: 2,
            clock: ClockMode::Virtual,
            minutes: None,
            days: vec![day(1, 0, 30, 10, 40, 40), day(2, 30, 0, 10, 30, 0)],
            groups: Vec::new(),
            events: Vec::new(),
            thresholds: Vec::new(),
            summary: Summary {
                machines: 40,
                exchanges: 70,
                exchanges_per_sec: 0.0,
                activated_at_end: 30,
                never_activated: 10,
            },
        }
    }

    #[test]
    fn test_evaluate() {
        let r = report();
        let eval = |text: &str| t(text).evaluate(&r);
        let last = eval("activated>=100%");
        assert_eq!(
            (last.day, last.actual, last.passed),
            (Some(2), Some(100.0), true)
        );
        let first = eval("activated>=100%@day1");
        assert_eq!((first.actual, first.passed), (Some(0.0), false));
        assert_eq!(eval("failures==100%@day1").actual, Some(100.0));
        assert!(eval("failures==0").passed);
        assert_eq!(eval("absent<=25%").actual, Some(25.0));
        assert_eq!(eval("requests>=40@day1").actual, Some(40.0));
        let never = eval("never_activated<=25%");
        assert_eq!(
            (never.day, never.actual, never.passed),
            (None, Some(25.0), true)
        );
        assert!(!eval("never_activated==0").passed);
        let missing = eval("activated>0@day3");
        assert_eq!((missing.actual, missing.passed), (None, false));
    }
}
