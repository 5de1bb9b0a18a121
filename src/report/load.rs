//! Printing a load report as text: totals, throughput, latency percentiles per phase, errors.

use std::io::{self, Write};

use crate::load::LoadReport;

/// Writes the report as text.
pub fn text(w: &mut dyn Write, r: &LoadReport) -> io::Result<()> {
    let loop_kind = match r.rate {
        Some(rate) => format!("open loop at {rate} activations/s"),
        None => "closed loop".to_owned(),
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
    if r.outcome.reconnects > 0 {
        writeln!(
            w,
            "  reconnects   {:>12} (the host closed reused connections)",
            r.outcome.reconnects
        )?;
    }
    super::latency_and_errors(w, &r.outcome)
}
