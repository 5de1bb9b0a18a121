//! Printers: text for people, JSON for machines, generic over the writer.

pub mod activate;
pub mod conform;
pub mod inspect;
pub mod load;
pub mod replay;

use std::io::{self, Write};

use crate::load::stats::Outcome;

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
            writeln!(w, "    {k:<30} {v}")?;
        }
    }
    Ok(())
}
