//! Printers: text for people, JSON for machines, generic over the writer.

pub mod activate;
pub mod conform;
pub mod html;
pub mod inspect;
pub mod junit;
pub mod load;
pub mod replay;

use std::io::{self, Write};

use crate::load::stats::Outcome;
use crate::proto::verdict::Failure;
use crate::wire::HResult;

/// What to change when a refusal comes from how the host is set up rather than from the
/// request: the HRESULTs the reference host answers for its key groups and its clock rule (see
/// `proto::host::policy`).
pub fn hint(hresult: HResult) -> Option<&'static str> {
    match hresult {
        // No held key group activates the KMS ID.
        HResult::KMS_ID_MISMATCH => Some(
            "the host holds no host key group that activates this product; \
             against `kmsharness serve`, add one with --key-group NAME (`activate --list` shows \
             each product's KMS ID; the README's serve section names the groups)",
        ),
        // The client clock is too far from the host's.
        HResult::INVALID_TIMESTAMP => Some(
            "the host refuses client times more than 4 hours from its own; replayed \
             captures carry their old times: replay re-stamps them unless --verbatim is given, or \
             start `kmsharness serve --max-clock-skew off`",
        ),
        _ => None,
    }
}

/// The counts and throughput lines of a `load` or `replay` outcome.
pub fn outcome_counts(w: &mut dyn Write, o: &Outcome) -> io::Result<()> {
    writeln!(
        w,
        "  activations  {:>12} sent  {:>12} ok  {:>10} failed",
        o.sent, o.ok, o.failed
    )?;
    writeln!(
        w,
        "  throughput   {:>12.0} validated activations/s",
        o.throughput
    )
}

/// The latency table (per phase: count and percentiles, µs) and the error classes of a `load`
/// or `replay` outcome.
pub fn latency_and_errors(w: &mut dyn Write, o: &Outcome) -> io::Result<()> {
    let (phases, errors) = (&o.phases, &o.errors);
    writeln!(w)?;
    writeln!(
        w,
        "  latency µs       count       p50       p90       p99     p99.9    p99.99       max"
    )?;
    for name in ["connect", "bind", "call", "total"] {
        let Some(p) = phases.get(name).filter(|p| p.count > 0) else {
            continue;
        };
        writeln!(
            w,
            "  {:<10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            name, p.count, p.p50, p.p90, p.p99, p.p999, p.p9999, p.max
        )?;
    }
    if !errors.is_empty() {
        writeln!(w)?;
        writeln!(w, "  errors")?;
        for (k, v) in errors {
            // The key is the JSON report's (hex, stable); the text adds the HRESULT's name.
            match k {
                Failure::HResult(h) if let Some(name) = h.name() => {
                    writeln!(w, "    {k:<30} {v}  {name}")?;
                }
                _ => writeln!(w, "    {k:<30} {v}")?,
            }
        }
        for k in errors.keys() {
            if let Failure::HResult(h) = k
                && let Some(hint) = hint(*h)
            {
                writeln!(w, "  hint ({h}): {hint}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::Stats;

    #[test]
    fn refusals_from_the_host_setup_come_with_the_option_that_changes_it() {
        let mut stats = Stats {
            sent: 2,
            ..Stats::default()
        };
        stats.error(Failure::HResult(HResult::KMS_ID_MISMATCH));
        stats.error(Failure::HResult(HResult::INVALID_TIMESTAMP));
        stats.error(Failure::Timeout);
        let mut out = Vec::new();
        latency_and_errors(&mut out, &Outcome::of(&stats, 0, 1.0)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("--key-group"), "{text}");
        assert!(text.contains("--max-clock-skew off"), "{text}");
        assert_eq!(text.matches("hint").count(), 2, "{text}");
        assert!(
            text.contains("SL_E_VL_KEY_MANAGEMENT_SERVICE_ID_MISMATCH"),
            "{text}"
        );
        assert_eq!(hint(HResult(0x8007_000D)), None);
    }
}
