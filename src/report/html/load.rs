//! The pages of `load` and `replay` reports (merged load reports included): headline figures,
//! the latency percentile spectrum per phase, throughput and failures per second, errors by
//! class, thresholds and the run parameters.

use std::fmt::Write as _;

use super::plot::{spectrum, throughput};
use super::{escape, page, parameters, rfc3339, table, tiles};
use crate::load::LoadReport;
use crate::load::stats::Outcome;
use crate::load::threshold::ThresholdResult;
use crate::proto::verdict::Failure;
use crate::replay::{ReplayMode, ReplayReport};

/// Latency table, error classes and thresholds: the part load and replay pages share.
fn outcome_sections(o: &Outcome, thresholds: &[ThresholdResult]) -> String {
    let mut s = String::new();
    let _ = write!(s, "<h2>Latency</h2><section>{}", spectrum(o));
    let rows: Vec<Vec<String>> = ["connect", "bind", "call", "total"]
        .iter()
        .filter_map(|n| o.phases.get(*n).filter(|p| p.count > 0).map(|p| (n, p)))
        .map(|(n, p)| {
            vec![
                escape(n),
                p.count.to_string(),
                p.p50.to_string(),
                p.p90.to_string(),
                p.p99.to_string(),
                p.p999.to_string(),
                p.p9999.to_string(),
                p.max.to_string(),
            ]
        })
        .collect();
    s.push_str(&table(
        &[
            "phase (µs)",
            "count",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "p99.99",
            "max",
        ],
        &[1, 2, 3, 4, 5, 6, 7],
        &rows,
    ));
    let _ = write!(
        s,
        "</section><h2>Throughput</h2><section>{}</section>",
        throughput(o)
    );
    s.push_str("<h2>Errors by class</h2><section>");
    if o.errors.is_empty() {
        s.push_str("<p class=\"pass\">No errors.</p>");
    } else {
        let rows: Vec<Vec<String>> = o
            .errors
            .iter()
            .map(|(k, v)| {
                let name = match k {
                    Failure::HResult(h) => h.name().unwrap_or(""),
                    _ => "",
                };
                vec![
                    format!("<code>{}</code>", escape(&k.to_string())),
                    escape(name),
                    v.to_string(),
                ]
            })
            .collect();
        s.push_str(&table(&["class", "name", "count"], &[2], &rows));
        for k in o.errors.keys() {
            if let Failure::HResult(h) = k
                && let Some(hint) = crate::report::hint(*h)
            {
                let _ = write!(s, "<p class=\"note\">hint ({h}): {}</p>", escape(hint));
            }
        }
    }
    s.push_str("</section>");
    if !thresholds.is_empty() {
        s.push_str("<h2>Thresholds</h2><section>");
        let rows: Vec<Vec<String>> = thresholds
            .iter()
            .map(|t| {
                vec![
                    format!("<code>{}</code>", escape(&t.expr)),
                    escape(&t.metric.to_string()),
                    t.actual
                        .map_or_else(|| "nothing measured".into(), |a| format!("{a:.3}")),
                    if t.passed {
                        "<span class=\"pass\">ok</span>".into()
                    } else {
                        "<span class=\"fail\">FAILED</span>".into()
                    },
                ]
            })
            .collect();
        s.push_str(&table(
            &["threshold", "metric", "actual", "result"],
            &[2],
            &rows,
        ));
        s.push_str("</section>");
    }
    s
}

/// The page of a load report (single or merged).
pub fn load(r: &LoadReport) -> String {
    let o = &r.outcome;
    let mut body = tiles(&[
        ("activations sent", o.sent.to_string()),
        ("ok", o.ok.to_string()),
        ("failed", o.failed.to_string()),
        ("validated activations/s", format!("{:.0}", o.throughput)),
        match &r.site {
            None => (
                "machines activated",
                format!("{} of {}", r.activated, r.clients),
            ),
            Some(site) => (
                "machines licensed at the end",
                format!("{} of {}", site.licensed_at_end, site.machines),
            ),
        },
    ]);
    body.push_str(&outcome_sections(o, &r.thresholds));
    let mut params = vec![
        ("target", r.target.clone()),
        (
            "loop",
            match (&r.site, r.rate) {
                (Some(site), _) => match site.boot_storm_secs {
                    Some(secs) => format!(
                        "a site of {} machines, all booting within {secs} s",
                        site.machines
                    ),
                    None => format!(
                        "a site of {} machines in steady state ({:.4} requests/s)",
                        site.machines, site.steady_rate
                    ),
                },
                (None, Some(rate)) => format!("open, {rate} activations/s"),
                (None, None) => "closed".into(),
            },
        ),
        ("mode", r.mode.to_string()),
        ("clients", r.clients.to_string()),
        ("connections", r.connections.to_string()),
        ("warm-up", format!("{:.1} s", r.warmup_secs)),
        ("measured", format!("{:.1} s", r.duration_secs)),
        ("started", rfc3339(r.started_at)),
        (
            "interrupted",
            if r.interrupted { "yes" } else { "no" }.into(),
        ),
        ("reports merged", r.merged.to_string()),
        ("reconnects", o.reconnects.to_string()),
        ("machines activated during the run", r.activated.to_string()),
    ];
    if let Some(c) = &r.cpu {
        params.push((
            "cpu",
            format!(
                "{:.2} s, {:.1} µs per activation",
                c.process_secs, c.micros_per_activation
            ),
        ));
    }
    body.push_str(&parameters(&params));
    page(
        "kmsharness load",
        &format!(
            "against {}{}",
            r.target,
            if r.merged > 1 {
                format!(", {} reports merged", r.merged)
            } else {
                String::new()
            }
        ),
        &body,
    )
}

/// The page of a replay report.
pub fn replay(r: &ReplayReport) -> String {
    let o = &r.outcome;
    let mut body = tiles(&[
        ("activations sent", o.sent.to_string()),
        ("ok", o.ok.to_string()),
        ("failed", o.failed.to_string()),
        ("skipped", r.skipped.to_string()),
        ("validated activations/s", format!("{:.0}", o.throughput)),
    ]);
    body.push_str(&outcome_sections(o, &r.thresholds));
    body.push_str(&parameters(&[
        ("capture", r.capture.clone()),
        ("target", r.target.clone()),
        (
            "mode",
            match r.mode {
                ReplayMode::Verbatim => "verbatim",
                ReplayMode::Restamp => "re-stamped",
            }
            .into(),
        ),
        (
            "pacing",
            r.speed.map_or("as fast as possible".into(), |s| {
                format!("{s}x the captured pace")
            }),
        ),
        ("rounds", r.repeat.to_string()),
        ("captured connections", r.connections.to_string()),
        ("captured requests", r.requests.to_string()),
        ("captured span", format!("{:.3} s", r.capture_secs)),
        ("replay took", format!("{:.3} s", r.duration_secs)),
        (
            "interrupted",
            if r.interrupted { "yes" } else { "no" }.into(),
        ),
        ("reconnects", o.reconnects.to_string()),
    ]));
    page(
        "kmsharness replay",
        &format!("{} against {}", r.capture, r.target),
        &body,
    )
}
