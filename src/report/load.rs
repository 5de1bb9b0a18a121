//! Printing a load report as text: totals, throughput, latency percentiles per phase, errors.

use std::io::{self, Write};

use crate::load::LoadReport;
use crate::load::threshold::{ThresholdResult, Unit};
use crate::report::junit::Gate;

/// Writes the report as text.
pub fn text(w: &mut dyn Write, r: &LoadReport) -> io::Result<()> {
    let loop_kind = match (&r.site, r.rate) {
        (Some(site), _) => format!(
            "the traffic of a site of {} machines ({})",
            site.machines,
            match site.boot_storm_secs {
                Some(secs) => format!("all booting within {secs} s"),
                None => format!(
                    "steady state: {:.4} requests/s, renewals spread over 7 days",
                    site.steady_rate
                ),
            }
        ),
        (None, Some(rate)) => format!("open loop at {rate} activations/s"),
        (None, None) => "closed loop".to_owned(),
    };
    writeln!(
        w,
        "kmsharness load: {} against {}{}",
        loop_kind,
        r.target,
        if r.merged > 1 {
            format!(" ({} reports merged)", r.merged)
        } else {
            String::new()
        }
    )?;
    writeln!(
        w,
        "  {} clients, mode {}, {} connections, {:.1} s measured after {:.1} s warm-up{}",
        r.clients,
        r.mode,
        r.connections,
        r.duration_secs,
        r.warmup_secs,
        if r.interrupted { " (interrupted)" } else { "" }
    )?;
    writeln!(w)?;
    super::outcome_counts(w, &r.outcome)?;
    // What a Windows client makes of the answers, beside what the host did: on a fresh host a
    // fleet smaller than its products' thresholds gets valid answers and no activation.
    if r.site.is_none() {
        writeln!(
            w,
            "  machines     {:>12} of {} activated (count reached the product's threshold)",
            r.activated, r.clients
        )?;
    }
    if let Some(site) = &r.site {
        writeln!(
            w,
            "  licensed     {:>12} of {} machines at the end ({} activated during the run)",
            site.licensed_at_end, site.machines, r.activated
        )?;
        if r.outcome.sent == 0 {
            writeln!(
                w,
                "  (no machine was due: at {:.4} requests/s this site asks about once every {}; \
                 a larger --site, a longer -d or --boot-storm sends more)",
                site.steady_rate,
                humantime::format_duration(std::time::Duration::from_secs(
                    (1.0 / site.steady_rate.max(1e-9)).round() as u64
                ))
            )?;
        }
    }
    if let Some(c) = &r.cpu {
        writeln!(
            w,
            "  cpu          {:>12.2} s, {:.1} µs per activation{}",
            c.process_secs,
            c.micros_per_activation,
            if c.includes_embedded_host {
                " (generator and embedded host)"
            } else {
                " (generator)"
            }
        )?;
    }
    if let Some(s) = &r.schedule {
        let l = &s.lateness;
        writeln!(
            w,
            "  schedule     {:>12} not sent (due when every connection was busy); sent late by \
             p50 {} µs, p99 {} µs, max {} µs (the generator's own lateness)",
            s.not_sent, l.p50, l.p99, l.max
        )?;
    }
    if r.outcome.reconnects > 0 {
        writeln!(
            w,
            "  reconnects   {:>12} (the host closed reused connections)",
            r.outcome.reconnects
        )?;
    }
    super::latency_and_errors(w, &r.outcome)?;
    thresholds(w, &r.thresholds)
}

/// The `--threshold` lines of a `load` or `replay` report: each expression with its actual
/// value and `ok` or `FAILED`.
pub fn thresholds(w: &mut dyn Write, results: &[ThresholdResult]) -> io::Result<()> {
    if results.is_empty() {
        return Ok(());
    }
    writeln!(w)?;
    let failed = results.iter().filter(|t| !t.passed).count();
    if failed == 0 {
        writeln!(w, "  thresholds (all {} passed)", results.len())?;
    } else {
        writeln!(w, "  thresholds ({failed} of {} FAILED)", results.len())?;
    }
    let width = results.iter().map(|t| t.expr.len()).max().unwrap_or(0);
    for t in results {
        let actual = match t.actual {
            Some(a) => value(a, t.unit),
            None => "nothing measured".to_owned(),
        };
        writeln!(
            w,
            "    {:<width$}  {:<12} {:>18}  {}",
            t.expr,
            t.metric,
            actual,
            if t.passed { "ok" } else { "FAILED" }
        )?;
    }
    Ok(())
}

/// The JUnit cases of a `load` or `replay` run (`--junit`): the run itself, failed when its
/// exit status `run` (thresholds aside) is not 0, then each threshold with what it measured.
pub fn gates(run: crate::exit::Exit, results: &[ThresholdResult]) -> Vec<Gate> {
    let mut gates = vec![Gate::run(run)];
    gates.extend(results.iter().map(|t| Gate {
        name: t.expr.clone(),
        passed: t.passed,
        kind: "threshold",
        message: format!(
            "{} = {}, limit {} {}",
            t.metric,
            t.actual
                .map_or_else(|| "nothing measured".to_owned(), |a| value(a, t.unit)),
            t.op.symbol(),
            value(t.limit, t.unit)
        ),
    }));
    gates
}

/// A threshold's measured value with its unit, latencies in the largest unit that keeps them
/// at least 1.
fn value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Micros if v >= 1e6 => format!("{:.3} s", v / 1e6),
        Unit::Micros if v >= 1e3 => format!("{:.3} ms", v / 1e3),
        Unit::Micros => format!("{v:.0} µs"),
        Unit::Count => format!("{v:.0}"),
        Unit::Percent => format!("{v:.3}%"),
        Unit::PerSecond => format!("{v:.1}/s"),
    }
}
