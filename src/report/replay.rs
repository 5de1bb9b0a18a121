//! Printing a replay report as text: what was replayed, totals, latency per phase, errors.

use std::io::{self, Write};

use crate::replay::{ReplayMode, ReplayReport};

/// Writes the report as text.
pub fn text(w: &mut dyn Write, r: &ReplayReport) -> io::Result<()> {
    let pacing = match r.speed {
        Some(1.0) => "at the captured pace".to_owned(),
        Some(s) => format!("at {s}x the captured pace"),
        None => "as fast as possible".to_owned(),
    };
    let mode = match r.mode {
        ReplayMode::Verbatim => "verbatim",
        ReplayMode::Restamp => "re-stamped",
    };
    writeln!(
        w,
        "kmsharness replay: {} against {}, {mode}, {pacing}",
        r.capture, r.target
    )?;
    writeln!(
        w,
        "  {} connections, {} requests over {:.3} s captured; {} round{}; {:.3} s{}",
        r.connections,
        r.requests,
        r.capture_secs,
        r.repeat,
        if r.repeat == 1 { "" } else { "s" },
        r.duration_secs,
        if r.interrupted { " (interrupted)" } else { "" }
    )?;
    writeln!(w)?;
    super::outcome_counts(w, &r.outcome)?;
    if r.skipped > 0 {
        writeln!(
            w,
            "  skipped      {:>12} (requests that do not decode cannot be re-stamped)",
            r.skipped
        )?;
    }
    if r.outcome.reconnects > 0 {
        writeln!(
            w,
            "  reconnects   {:>12} (the host closed connections the capture kept open)",
            r.outcome.reconnects
        )?;
    }
    super::latency_and_errors(w, &r.outcome)?;
    super::load::thresholds(w, &r.thresholds)
}
