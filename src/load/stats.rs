//! Measurements of a load run: one HdrHistogram per phase (microseconds, 3 significant digits),
//! errors by class, completions per second. One `Stats` per worker, merged at the end
//! (histograms are added, never averaged), and serialised so that reports of several
//! generator machines merge exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::proto::verdict::Failure;

/// Longest latency a histogram records: one minute, in microseconds.
pub const MAX_MICROS: u64 = 60_000_000;
/// Significant digits kept by every histogram.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    // Bounds are constants that the crate accepts (1 ≤ low, high ≥ 2·low, digits ≤ 5).
    Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_DIGITS)
        .unwrap_or_else(|e| unreachable!("histogram bounds: {e}"))
}

/// Phases timed for each activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// TCP connect (fresh connections only).
    Connect,
    /// RPC bind and alter_context (fresh connections only).
    Bind,
    /// The activation call: request sent to response verified.
    Call,
    /// From the scheduled start (open loop) or the actual start (closed loop) to the verified
    /// response: what a client waits.
    Total,
}

impl Phase {
    /// Every phase, in report order.
    pub const ALL: [Phase; 4] = [Phase::Connect, Phase::Bind, Phase::Call, Phase::Total];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Bind => "bind",
            Phase::Call => "call",
            Phase::Total => "total",
        }
    }
}

/// What one worker (or a merge of several) measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Per-phase histograms, indexed like [`Phase::ALL`].
    pub phases: [Histogram<u64>; 4],
    /// Activations started (counted ones, after warm-up).
    pub sent: u64,
    /// Activations answered with a response that passed every check.
    pub ok: u64,
    /// Failures by class.
    pub errors: BTreeMap<Failure, u64>,
    /// Answered requests (ok or not) per second of the run, from its start.
    pub timeline: Vec<u64>,
    /// Of those, failed activations per second of the run.
    pub failed_timeline: Vec<u64>,
    /// Machines an answer activated (warm-up included): a validated response whose count
    /// reached the product's threshold, to a machine that was not licensed.
    pub activated: u64,
    /// Open loop: how late each measured request started against its schedule, µs (the
    /// generator's own lateness, not the host's).
    pub lateness: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            phases: [histogram(), histogram(), histogram(), histogram()],
            sent: 0,
            ok: 0,
            errors: BTreeMap::new(),
            timeline: Vec::new(),
            failed_timeline: Vec::new(),
            activated: 0,
            lateness: histogram(),
        }
    }
}

impl Stats {
    /// Records a duration for a phase.
    pub fn record(&mut self, phase: Phase, d: Duration) {
        let micros = (d.as_micros() as u64).clamp(1, MAX_MICROS);
        // Saturating keeps an outlier beyond the bound from being lost.
        self.phases[phase as usize].saturating_record(micros);
    }

    /// Records how late an open-loop request started against its schedule.
    pub fn late(&mut self, d: Duration) {
        let micros = (d.as_micros() as u64).clamp(1, MAX_MICROS);
        self.lateness.saturating_record(micros);
    }

    /// Counts a failure (allocating only the first time a class is seen).
    pub fn error(&mut self, failure: Failure) {
        *self.errors.entry(failure).or_insert(0) += 1;
    }

    /// Counts an answer in second `sec` of the run, and a failure there when it `failed`.
    pub fn tick(&mut self, sec: usize, failed: bool) {
        bump(&mut self.timeline, sec);
        if failed {
            bump(&mut self.failed_timeline, sec);
        }
    }

    /// Adds another worker's stats to these.
    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.phases.iter_mut().zip(&other.phases) {
            // Same bounds everywhere; adding cannot fail.
            let _ = a.add(b);
        }
        let _ = self.lateness.add(&other.lateness);
        self.sent += other.sent;
        self.ok += other.ok;
        self.activated += other.activated;
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_insert(0) += v;
        }
        add_series(&mut self.timeline, &other.timeline);
        add_series(&mut self.failed_timeline, &other.failed_timeline);
    }

    /// Total errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Activations that failed (sent but not ok); one failed activation can carry several
    /// `check:` classes, so this is not the sum of `errors`.
    pub fn failed(&self) -> u64 {
        self.sent - self.ok
    }
}

/// Adds one to second `sec` of a per-second series, growing it as needed.
fn bump(series: &mut Vec<u64>, sec: usize) {
    if series.len() <= sec {
        series.resize(sec + 1, 0);
    }
    series[sec] += 1;
}

/// Adds a per-second series to another, second by second.
pub fn add_series(acc: &mut Vec<u64>, other: &[u64]) {
    if acc.len() < other.len() {
        acc.resize(other.len(), 0);
    }
    for (a, b) in acc.iter_mut().zip(other) {
        *a += b;
    }
}

/// What a run's activations came to: the part of a report `load` and `replay` share (each
/// flattens it into its own JSON object).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Outcome {
    /// Activations sent (after warm-up).
    #[schemars(description = "Activations sent after the warm-up. Always `ok + failed`.")]
    pub sent: u64,
    /// Answered with a response passing every check.
    #[schemars(
        description = "Activations answered with a response passing every check `activate` \
        makes (RPC and KMS). Equals the count of the `call` and `total` histograms."
    )]
    pub ok: u64,
    /// Sent and not ok.
    #[schemars(
        description = "Activations sent and not ok: `sent - ok`. Not the sum of `errors`, \
        since one activation can fail several checks."
    )]
    pub failed: u64,
    /// Failures by class (`timeout`, `refused`, `reset`, `closed`, `protocol`, `fault:…`,
    /// `hresult:0x…`, `check:<name>`, `undecodable`, `unverifiable`).
    #[schemars(
        description = "Failures by class, each with its number of occurrences: `timeout`, \
        `refused`, `reset`, `closed`, `io`, `protocol` (no connection or no usable reply), \
        `undecodable` (the KMS response could not be decrypted or parsed), `unverifiable` (replay \
        only: a verbatim request that does not decode leaves nothing to check the response \
        against), `fault:<status>` (an RPC fault PDU: the status's snake_case name, e.g. `fault:op_range_error`, or its hex value when \
        unknown), `hresult:0x<8 hex digits>` (the host refused the activation with this HRESULT, \
        e.g. `hresult:0xC004F042`), `check:<name>` (a named check failed, e.g. `check:hmac`; one \
        activation can count under several checks).",
        with = "BTreeMap<String, u64>",
        extend(
            "propertyNames" = {"pattern": "^(timeout|refused|reset|closed|io|protocol|undecodable|unverifiable|fault:([a-z0-9_]+|0x[0-9A-F]{8})|hresult:0x[0-9A-F]{8}|check:[a-z0-9_]+)$"},
            "additionalProperties" = {"type": "integer", "minimum": 1}
        )
    )]
    pub errors: BTreeMap<Failure, u64>,
    /// Connections re-opened because the host closed one that was to be reused.
    #[schemars(
        description = "Connections reopened because the host closed a reused one after a \
        response (py-kms does); the activation is then retried once on the new connection."
    )]
    pub reconnects: u64,
    /// Validated activations per second.
    #[schemars(
        description = "Validated activations per second: `ok / duration_secs`.",
        range(min = 0)
    )]
    pub throughput: f64,
    /// Latency per phase, microseconds (validated activations only).
    #[schemars(
        description = "Latency per phase, each an HdrHistogram (microseconds, 3 \
        significant digits, 1 µs to 60 s; longer values are counted at 60 s). Only activations \
        counted after the warm-up are recorded; `call` and `total` hold validated activations \
        only. `connect`: TCP connect, for every connection opened and bound (every activation in \
        fresh mode; once per worker, plus reconnects and reopenings after a failure, in reuse \
        mode), whatever the activation's outcome. `bind`: RPC bind (and alter_context), for the \
        same connections as `connect`. `call`: The activation call: request sent to response \
        received and verified. `total`: What a client waits: from the scheduled start (open loop, \
        so a stalled host shows here instead of lowering the rate: free of coordinated omission) \
        or the actual start (closed loop) to the verified response, connect and bind included.",
        extend(
            "required" = ["connect", "bind", "call", "total"],
            "propertyNames" = {"enum": ["connect", "bind", "call", "total"]}
        )
    )]
    pub phases: BTreeMap<String, PhaseSummary>,
    /// Answers per second since the start; warm-up seconds are there, empty.
    #[schemars(
        description = "Activations answered or failed in each second since the start of \
        the run, warm-up included (index 0 is the first second); only activations counted after \
        the warm-up are included, so the sum is `sent`. Merged reports add second by second."
    )]
    pub timeline: Vec<u64>,
    /// Failed activations per second since the start (absent in older reports).
    #[serde(default)]
    #[schemars(
        description = "Of `timeline`, the activations that failed in each second since the \
        start of the run (same indexing; absent in reports written before it was added, read \
        as empty). Merged reports add second by second."
    )]
    pub failed_timeline: Vec<u64>,
}

impl Outcome {
    /// The outcome of merged worker stats over `secs` measured seconds.
    pub fn of(stats: &Stats, reconnects: u64, secs: f64) -> Outcome {
        Outcome {
            sent: stats.sent,
            ok: stats.ok,
            failed: stats.failed(),
            errors: stats.errors.clone(),
            reconnects,
            throughput: stats.ok as f64 / secs.max(1e-9),
            phases: Phase::ALL
                .iter()
                .map(|p| {
                    (
                        p.name().to_owned(),
                        PhaseSummary::of(&stats.phases[*p as usize]),
                    )
                })
                .collect(),
            timeline: stats.timeline.clone(),
            failed_timeline: stats.failed_timeline.clone(),
        }
    }
}

/// A histogram summarised for a report, with its full data for merging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[schemars(
    description = "One phase's latency histogram, summarised, with its full data for \
        merging.",
    deny_unknown_fields
)]
pub struct PhaseSummary {
    /// Values recorded.
    #[schemars(description = "Values recorded.")]
    pub count: u64,
    /// Smallest, µs.
    #[schemars(description = "Smallest value, µs (0 when count is 0).")]
    pub min: u64,
    /// Mean, µs.
    #[schemars(description = "Mean, µs (0 when count is 0).", range(min = 0))]
    pub mean: f64,
    /// Median, µs.
    #[schemars(
        description = "Median, µs (HdrHistogram value at quantile 0.5: the highest value \
        equivalent to it at 3 significant digits)."
    )]
    pub p50: u64,
    /// 90th percentile, µs.
    #[schemars(description = "90th percentile, µs.")]
    pub p90: u64,
    /// 99th percentile, µs.
    #[schemars(description = "99th percentile, µs.")]
    pub p99: u64,
    /// 99.9th percentile, µs.
    #[schemars(description = "99.9th percentile, µs.")]
    pub p999: u64,
    /// 99.99th percentile, µs.
    #[schemars(description = "99.99th percentile, µs.")]
    pub p9999: u64,
    /// Largest, µs.
    #[schemars(
        description = "Largest value, µs (highest equivalent value at 3 significant \
        digits; 0 when count is 0)."
    )]
    pub max: u64,
    /// The histogram: HdrHistogram V2 + DEFLATE encoding, base64 (what `report merge` adds).
    #[schemars(description = "The whole histogram in HdrHistogram's V2 compressed (DEFLATE) \
        encoding, as standard base64 with padding: the same encoding as an interval log line, \
        readable by every HdrHistogram implementation. `report merge` decodes and adds these; the \
        other fields are derived from it.", extend("contentEncoding" = "base64"))]
    pub histogram: String,
}

impl PhaseSummary {
    /// Summarises a histogram.
    pub fn of(h: &Histogram<u64>) -> PhaseSummary {
        let mut bytes = Vec::new();
        let _ = V2DeflateSerializer::new().serialize(h, &mut bytes);
        let q = |p: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(p)
            }
        };
        PhaseSummary {
            count: h.len(),
            min: if h.is_empty() { 0 } else { h.min() },
            mean: if h.is_empty() { 0.0 } else { h.mean() },
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
            max: if h.is_empty() { 0 } else { h.max() },
            histogram: base64_encode(&bytes),
        }
    }

    /// The histogram back from its encoding.
    pub fn decode(&self) -> Result<Histogram<u64>, HistogramError> {
        let bytes = base64_decode(&self.histogram).ok_or(HistogramError::NotBase64)?;
        let mut h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(|e| HistogramError::Undecodable(format!("{e:?}")))?;
        h.auto(true);
        Ok(h)
    }
}

/// Why a report's histogram cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    /// The text is not standard base64.
    #[error("histogram is not base64")]
    NotBase64,
    /// The bytes are not a V2 (deflate) HdrHistogram encoding; hdrhistogram's own error.
    #[error("histogram does not decode: {0}")]
    Undecodable(String),
    /// Two histograms cannot be added (their ranges differ).
    #[error("histograms cannot be added: {0}")]
    Incompatible(String),
}

/// Standard base64 with padding (the encoding HdrHistogram interval logs use).
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes standard base64; `None` when it is not.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_merge_adds_histograms() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for v in 1..=100 {
            a.record(Phase::Call, Duration::from_micros(v));
            b.record(Phase::Call, Duration::from_micros(v + 100));
        }
        a.error(Failure::Timeout);
        b.error(Failure::Timeout);
        b.error(Failure::Check(crate::proto::check::CheckId::Hmac));
        a.tick(0, false);
        b.tick(2, true);
        a.merge(&b);
        assert_eq!(a.phases[Phase::Call as usize].len(), 200);
        assert_eq!(a.errors[&Failure::Timeout], 2);
        assert_eq!(a.timeline, [1, 0, 1]);
        assert_eq!(a.failed_timeline, [0, 0, 1]);
    }

    #[test]
    fn test_summary_roundtrip() {
        let mut s = Stats::default();
        for v in [10u64, 20, 30, 40, 1000] {
            s.record(Phase::Total, Duration::from_micros(v));
        }
        let sum = PhaseSummary::of(&s.phases[Phase::Total as usize]);
        assert_eq!((sum.count, sum.min, sum.max), (5, 10, 1000));
        let back = sum.decode().unwrap();
        assert_eq!(PhaseSummary::of(&back), sum);
    }

    #[test]
    fn test_base64() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            assert_eq!(base64_decode(&base64_encode(data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert!(base64_decode("!!").is_none());
    }
}
