//! HTML reports: one self-contained page per report (inline CSS and SVG plots drawn with
//! plotters' SVG backend, no script, no fetch), for `--html FILE` and `report html`. Every
//! string that came from a report is escaped: host-provided names are untrusted. One public
//! function per kind of report; a new kind (simulate) is one more function and one more arm of
//! [`render`].

use std::fmt::Write as _;

use plotters::prelude::*;
use serde_json::Value;

use crate::load::LoadReport;
use crate::load::stats::{Outcome, PhaseSummary};
use crate::replay::ReplayReport;

/// Plot size in pixels: the page's content width.
const PLOT_W: u32 = 1000;
/// Plot height in pixels.
const PLOT_H: u32 = 380;
/// Quantile iteration resolution: HdrHistogram's percentile distribution reports 5 ticks per
/// half distance to 100% (its `outputPercentileDistribution` default).
const TICKS_PER_HALF: u32 = 5;
/// Phase colours in report order (connect, bind, call, total).
const PHASE_COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
];

/// One plotted line: its label, colour and points.
type Line<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// Why a JSON document cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    /// Neither its `format` nor its shape names a kind of report.
    #[error("not a kmsharness report (format {0})")]
    UnknownKind(String),
    /// It names a kind but does not have its shape.
    #[error("not a {kind} report: {message}")]
    Shape {
        /// The kind its format named.
        kind: &'static str,
        /// What serde said.
        message: String,
    },
}

/// The kind of report a JSON document is: from its `format` field (`kmsharness-load/1`, …),
/// else from keys only that kind has.
pub fn kind_of(doc: &Value) -> Option<&'static str> {
    let format = doc.get("format").and_then(Value::as_str).unwrap_or("");
    for kind in ["load", "replay", "conform", "inspect"] {
        if format.starts_with(&format!("kmsharness-{kind}/")) {
            return Some(kind);
        }
    }
    let has = |k: &str| doc.get(k).is_some();
    if has("phases") && has("capture") {
        Some("replay")
    } else if has("phases") {
        Some("load")
    } else if has("verdict") && has("cases") {
        Some("conform")
    } else if has("connections") && has("summary") {
        Some("inspect")
    } else {
        None
    }
}

/// Renders any saved JSON report (load, merged load, replay, conform, inspect) as a page.
pub fn render(doc: &Value) -> Result<String, HtmlError> {
    let shape = |kind| {
        move |e: serde_json::Error| HtmlError::Shape {
            kind,
            message: e.to_string(),
        }
    };
    match kind_of(doc) {
        Some("load") => Ok(load(
            &serde_json::from_value(doc.clone()).map_err(shape("load"))?,
        )),
        Some("replay") => Ok(replay(
            &serde_json::from_value(doc.clone()).map_err(shape("replay"))?,
        )),
        Some("conform") => Ok(conform(doc)),
        Some("inspect") => Ok(inspect(doc)),
        _ => Err(HtmlError::UnknownKind(
            doc.get("format")
                .map_or_else(|| "missing".to_owned(), |f| f.to_string()),
        )),
    }
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;\
background:#f6f7f9;color:#1d2330}main{max-width:1040px;margin:0 auto;padding:24px}\
h1{font-size:1.5em;margin:0 0 4px}h2{font-size:1.15em;margin:28px 0 8px;border-bottom:1px solid #d5d9e0;\
padding-bottom:4px}.sub{color:#5a6272;margin:0 0 16px}section{background:#fff;border:1px solid #e1e4ea;\
border-radius:6px;padding:12px 16px;margin:12px 0}table{border-collapse:collapse;width:100%;font-size:.92em}\
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceef2;vertical-align:top}\
th{background:#f0f2f5;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}.skip{color:#8a6d00}\
.tiles{display:flex;flex-wrap:wrap;gap:10px}.tile{background:#fff;border:1px solid #e1e4ea;border-radius:6px;\
padding:8px 14px;min-width:120px}.tile b{display:block;font-size:1.4em}.tile span{color:#5a6272;font-size:.85em}\
code,pre{font-family:ui-monospace,Consolas,monospace;font-size:.9em}pre{white-space:pre-wrap;margin:2px 0}\
svg{max-width:100%;height:auto;display:block}.note{color:#5a6272;font-size:.9em}";

/// The page around a body.
fn page(title: &str, subtitle: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{t}</title><style>{STYLE}</style></head>\n<body><main>\
         <h1>{t}</h1><p class=\"sub\">{s}</p>\n{body}\n<p class=\"note\">Written by kmsharness {v}.</p>\
         </main></body></html>\n",
        t = escape(title),
        s = escape(subtitle),
        v = env!("CARGO_PKG_VERSION"),
    )
}

/// A row of headline figures.
fn tiles(items: &[(&str, String)]) -> String {
    let mut s = String::from("<div class=\"tiles\">");
    for (label, value) in items {
        let _ = write!(
            s,
            "<div class=\"tile\"><b>{}</b><span>{}</span></div>",
            escape(value),
            escape(label)
        );
    }
    s.push_str("</div>");
    s
}

/// A table of already-escaped cells; `numeric` columns are right-aligned.
fn table(head: &[&str], numeric: &[usize], rows: &[Vec<String>]) -> String {
    let class = |i: usize| {
        if numeric.contains(&i) {
            " class=\"n\""
        } else {
            ""
        }
    };
    let mut s = String::from("<table><tr>");
    for (i, h) in head.iter().enumerate() {
        let _ = write!(s, "<th{}>{}</th>", class(i), escape(h));
    }
    s.push_str("</tr>");
    for row in rows {
        s.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            let _ = write!(s, "<td{}>{c}</td>", class(i));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// A plot drawn by `draw` into an SVG string, or a note when plotters failed.
fn plot(
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> String {
    let mut svg = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut svg, (PLOT_W, PLOT_H)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    match result {
        Ok(()) => svg,
        Err(e) => format!("<p class=\"note\">plot not drawn: {}</p>", escape(&e)),
    }
}

/// Percentile label of a point on the 1/(1-p) axis: 1 → 0%, 10 → 90%, 100 → 99%, …; only
/// powers of ten are labelled, as in HdrHistogram's plotter.
fn percentile_label(x: f64) -> String {
    let exp = x.log10();
    if (exp - exp.round()).abs() > 1e-6 {
        return String::new();
    }
    let p = 100.0 * (1.0 - 1.0 / x);
    let digits = (exp.round() as usize).saturating_sub(2);
    format!("{p:.digits$}%")
}

/// The latency percentile spectrum of every phase with data, milliseconds against 1/(1-p).
fn spectrum(outcome: &Outcome) -> String {
    let mut lines: Vec<Line<'_>> = Vec::new();
    for (i, name) in ["connect", "bind", "call", "total"].iter().enumerate() {
        let Some(h) = outcome
            .phases
            .get(*name)
            .filter(|p| p.count > 0)
            .and_then(|p: &PhaseSummary| p.decode().ok())
        else {
            continue;
        };
        let mut pts = Vec::new();
        for v in h.iter_quantiles(TICKS_PER_HALF) {
            let q = v.quantile_iterated_to();
            if q >= 1.0 {
                break;
            }
            pts.push((
                1.0 / (1.0 - q),
                h.highest_equivalent(v.value_iterated_to()) as f64 / 1e3,
            ));
        }
        // The maximum sits at the right edge, one decade past the count's resolution.
        let right = (h.len() as f64).max(10.0);
        pts.push((right, h.max() as f64 / 1e3));
        lines.push((name, PHASE_COLOURS[i], pts));
    }
    if lines.is_empty() {
        return "<p class=\"note\">No latency recorded.</p>".into();
    }
    let x_max = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.0))
        .fold(10.0, f64::max);
    let x_max = 10f64.powf(x_max.log10().ceil());
    let y_max = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.1))
        .fold(0.001, f64::max)
        * 1.05;
    plot(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Latency by percentile", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d((1.0..x_max).log_scale(), 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_label_formatter(&|x| percentile_label(*x))
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(|e| e.to_string())?;
        for (name, colour, pts) in lines {
            chart
                .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| e.to_string())
    })
}

/// Activations answered per second, and failed per second where the report has that series.
fn throughput(outcome: &Outcome) -> String {
    let t = &outcome.timeline;
    if t.is_empty() {
        return "<p class=\"note\">No activations answered.</p>".into();
    }
    let failed = &outcome.failed_timeline;
    let y_max = t.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    let x_max = t.len() as f64;
    plot(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Activations per second", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("second of the run (warm-up included)")
            .y_desc("activations/s")
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(|e| e.to_string())?;
        let blue = PHASE_COLOURS[0];
        let steps = |series: &[u64]| -> Vec<(f64, f64)> {
            series
                .iter()
                .enumerate()
                .flat_map(|(i, v)| [(i as f64, *v as f64), (i as f64 + 1.0, *v as f64)])
                .collect()
        };
        chart
            .draw_series(
                AreaSeries::new(steps(t), 0.0, blue.mix(0.25)).border_style(blue.stroke_width(2)),
            )
            .map_err(|e| e.to_string())?
            .label("answered")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 18, y + 5)], blue.mix(0.5).filled())
            });
        if failed.iter().any(|v| *v > 0) {
            let red = PHASE_COLOURS[3];
            chart
                .draw_series(
                    AreaSeries::new(steps(failed), 0.0, red.mix(0.35))
                        .border_style(red.stroke_width(2)),
                )
                .map_err(|e| e.to_string())?
                .label("failed")
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], red.mix(0.5).filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| e.to_string())
    })
}

/// Latency table, error classes and thresholds: the part load and replay pages share.
fn outcome_sections(o: &Outcome, thresholds: &[crate::load::threshold::ThresholdResult]) -> String {
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
                    crate::proto::verdict::Failure::HResult(h) => h.name().unwrap_or(""),
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

/// Parameter rows: name and already formatted value.
fn parameters(rows: &[(&str, String)]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(k, v)| vec![escape(k), escape(v)])
        .collect();
    format!(
        "<h2>Run parameters</h2><section>{}</section>",
        table(&["parameter", "value"], &[], &rows)
    )
}

/// The page of a load report (single or merged).
pub fn load(r: &LoadReport) -> String {
    let o = &r.outcome;
    let mut body = tiles(&[
        ("activations sent", o.sent.to_string()),
        ("ok", o.ok.to_string()),
        ("failed", o.failed.to_string()),
        ("validated activations/s", format!("{:.0}", o.throughput)),
        (
            "machines activated",
            format!("{} of {}", r.activated, r.clients),
        ),
    ]);
    body.push_str(&outcome_sections(o, &r.thresholds));
    let mut params = vec![
        ("target", r.target.clone()),
        (
            "loop",
            r.rate
                .map_or("closed".into(), |x| format!("open, {x} activations/s")),
        ),
        ("mode", r.mode.to_string()),
        ("clients", r.clients.to_string()),
        ("connections", r.connections.to_string()),
        ("warm-up", format!("{:.1} s", r.warmup_secs)),
        ("measured", format!("{:.1} s", r.duration_secs)),
        (
            "started",
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(r.started_at.max(0.0)),
            )
            .to_string(),
        ),
        (
            "interrupted",
            if r.interrupted { "yes" } else { "no" }.into(),
        ),
        ("reports merged", r.merged.to_string()),
        ("reconnects", o.reconnects.to_string()),
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
                crate::replay::ReplayMode::Verbatim => "verbatim",
                crate::replay::ReplayMode::Restamp => "re-stamped",
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

/// A JSON value as display text: strings bare, others as JSON.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// A JSON number as u64 (0 when absent).
fn num(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

/// A verdict cell.
fn status_cell(status: &str) -> String {
    let class = match status {
        "pass" | "ok" => "pass",
        "skip" => "skip",
        _ => "fail",
    };
    format!("<span class=\"{class}\">{}</span>", escape(status))
}

/// The page of a conform report (its JSON document, format `kmsharness-conform/1`).
pub fn conform(doc: &Value) -> String {
    let s = &doc["summary"];
    let mut body = tiles(&[
        ("cases", num(s.get("total")).to_string()),
        ("passed", num(s.get("passed")).to_string()),
        ("failed", num(s.get("failed")).to_string()),
        ("skipped", num(s.get("skipped")).to_string()),
        ("must failed", num(s.get("must_failed")).to_string()),
        ("looks like", text(doc["verdict"].get("looks_like"))),
    ]);
    let empty = Vec::new();
    let cases = doc["cases"].as_array().unwrap_or(&empty);
    // Families in the order their first case appears.
    let mut families: Vec<(String, Vec<&Value>)> = Vec::new();
    for c in cases {
        let f = text(c.get("category"));
        match families.iter_mut().find(|(n, _)| *n == f) {
            Some((_, v)) => v.push(c),
            None => families.push((f, vec![c])),
        }
    }
    body.push_str("<h2>Cases by family</h2><section>");
    let rows: Vec<Vec<String>> = families
        .iter()
        .map(|(f, cs)| {
            let count = |st: &str| cs.iter().filter(|c| c["status"] == st).count();
            vec![
                escape(f),
                cs.len().to_string(),
                count("pass").to_string(),
                count("fail").to_string(),
                count("skip").to_string(),
            ]
        })
        .collect();
    body.push_str(&table(
        &["family", "cases", "passed", "failed", "skipped"],
        &[1, 2, 3, 4],
        &rows,
    ));
    body.push_str("</section>");
    body.push_str("<h2>Fingerprint</h2><section>");
    let _ = write!(
        body,
        "<p>Looks like <b>{}</b>.</p>",
        escape(&text(doc["verdict"].get("looks_like")))
    );
    let evidence = doc["verdict"]["evidence"].as_array().unwrap_or(&empty);
    if !evidence.is_empty() {
        let rows: Vec<Vec<String>> = evidence
            .iter()
            .map(|e| {
                vec![
                    format!("<code>{}</code>", escape(&text(e.get("case")))),
                    escape(&text(e.get("observation"))),
                    escape(&text(e.get("suggests"))),
                ]
            })
            .collect();
        body.push_str(&table(&["case", "observation", "points to"], &[], &rows));
    }
    body.push_str("</section>");
    let failed: Vec<&Value> = cases.iter().filter(|c| c["status"] == "fail").collect();
    if !failed.is_empty() {
        body.push_str("<h2>Failures</h2>");
        for c in failed {
            let _ = write!(
                body,
                "<section><p><span class=\"fail\">FAIL</span> <code>{}</code> ({}) — {}</p>",
                escape(&text(c.get("id"))),
                escape(&text(c.get("level"))),
                escape(&text(c.get("title")))
            );
            let f = &c["failure"];
            let rows: Vec<Vec<String>> = f["mismatches"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|m| {
                    vec![
                        format!("{} ({})", num(f.get("step")), escape(&text(f.get("kind")))),
                        escape(&text(m.get("what"))),
                        format!("<pre>{}</pre>", escape(&text(m.get("expected")))),
                        format!("<pre>{}</pre>", escape(&text(m.get("actual")))),
                    ]
                })
                .collect();
            body.push_str(&table(&["step", "what", "expected", "actual"], &[], &rows));
            let _ = write!(
                body,
                "<p class=\"note\">source: {}</p></section>",
                escape(&text(c.get("source")))
            );
        }
    }
    for (f, cs) in &families {
        let _ = write!(body, "<h2>{}</h2><section>", escape(f));
        let rows: Vec<Vec<String>> = cs
            .iter()
            .map(|c| {
                let mut title = escape(&text(c.get("title")));
                if let Some(r) = c.get("skip_reason").and_then(Value::as_str) {
                    let _ = write!(
                        title,
                        "<br><span class=\"note\">skipped: {}</span>",
                        escape(r)
                    );
                }
                vec![
                    status_cell(&text(c.get("status"))),
                    escape(&text(c.get("level"))),
                    format!("<code>{}</code>", escape(&text(c.get("id")))),
                    title,
                    num(c.get("millis")).to_string(),
                ]
            })
            .collect();
        body.push_str(&table(
            &["verdict", "level", "case", "title", "ms"],
            &[4],
            &rows,
        ));
        body.push_str("</section>");
    }
    body.push_str(&parameters(&[
        ("target", text(doc.get("target"))),
        ("profile", text(doc.get("profile"))),
        ("state changes allowed", text(doc.get("state_changes"))),
        ("strict", text(doc.get("strict"))),
        ("started", text(doc.get("started"))),
        (
            "took",
            format!("{:.1} s", doc["seconds"].as_f64().unwrap_or(0.0)),
        ),
        ("exit status", text(doc.get("exit_status"))),
    ]));
    page("kmsharness conform", &text(doc.get("target")), &body)
}

/// Seconds of an RFC 3339 time since the Unix epoch.
fn unix_secs(v: Option<&Value>) -> Option<f64> {
    let t = humantime::parse_rfc3339_weak(v?.as_str()?.trim_end_matches('Z')).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
}

/// Each exchange of an inspect report against time since the first packet, by outcome.
fn exchanges_over_time(connections: &[Value]) -> String {
    let start = connections
        .iter()
        .filter_map(|c| unix_secs(c.get("first")))
        .fold(f64::INFINITY, f64::min);
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for c in connections {
        for e in c["exchanges"].as_array().into_iter().flatten() {
            let Some(t) = unix_secs(e.get("sent_at")).or_else(|| unix_secs(c.get("first"))) else {
                continue;
            };
            let p = ((t - start).max(0.0), num(e.get("index")) as f64);
            if e["outcome"].get("status").and_then(Value::as_str) == Some("ok")
                || e["outcome"] == "ok"
            {
                ok.push(p);
            } else {
                bad.push(p);
            }
        }
    }
    if ok.is_empty() && bad.is_empty() {
        return "<p class=\"note\">No exchanges.</p>".into();
    }
    let x_max = ok.iter().chain(&bad).map(|p| p.0).fold(1e-3, f64::max) * 1.05;
    let y_max = ok.iter().chain(&bad).map(|p| p.1).fold(1.0, f64::max) + 1.0;
    plot(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Exchanges over time", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds since the first packet")
            .y_desc("exchange")
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(|e| e.to_string())?;
        for (pts, colour, label) in [
            (ok, PHASE_COLOURS[2], "ok"),
            (bad, PHASE_COLOURS[3], "failed"),
        ] {
            if pts.is_empty() {
                continue;
            }
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, colour.filled())))
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| e.to_string())
    })
}

/// The page of an inspect report (its JSON document, format `kmsharness-inspect/1`).
pub fn inspect(doc: &Value) -> String {
    let s = &doc["summary"];
    let o = &s["outcomes"];
    let mut body = tiles(&[
        ("connections", num(s.get("connections")).to_string()),
        ("KMS connections", num(s.get("kms_connections")).to_string()),
        ("exchanges", num(s.get("exchanges")).to_string()),
        ("ok", num(o.get("ok")).to_string()),
        (
            "distinct machines",
            num(s.get("distinct_cmids")).to_string(),
        ),
    ]);
    let empty = Vec::new();
    let conns = doc["connections"].as_array().unwrap_or(&empty);
    let _ = write!(
        body,
        "<h2>Exchanges</h2><section>{}",
        exchanges_over_time(conns)
    );
    if let Some(map) = o.as_object() {
        let rows: Vec<Vec<String>> = map
            .iter()
            .map(|(k, v)| vec![escape(&k.replace('_', " ")), text(Some(v))])
            .collect();
        body.push_str(&table(&["outcome", "calls"], &[1], &rows));
    }
    body.push_str("</section><h2>Connections</h2><section>");
    let rows: Vec<Vec<String>> = conns
        .iter()
        .map(|c| {
            let exchanges = c["exchanges"].as_array().map_or(0, Vec::len);
            let state = match (
                c.get("error").filter(|e| !e.is_null()),
                c.get("skip_reason").filter(|e| !e.is_null()),
            ) {
                (Some(e), _) => format!("<span class=\"fail\">{}</span>", escape(&text(Some(e)))),
                (None, Some(r)) => format!(
                    "<span class=\"skip\">skipped: {}</span>",
                    escape(&text(Some(r)))
                ),
                (None, None) => format!("KMS ({})", escape(&text(c.get("kms")))),
            };
            vec![
                num(c.get("index")).to_string(),
                escape(&text(c.get("client"))),
                escape(&text(c.get("server"))),
                escape(&text(c.get("first"))),
                format!("{:.3}", c["duration_secs"].as_f64().unwrap_or(0.0)),
                exchanges.to_string(),
                state,
            ]
        })
        .collect();
    body.push_str(&table(
        &[
            "#",
            "client",
            "server",
            "first packet",
            "seconds",
            "exchanges",
            "decoded as",
        ],
        &[0, 4, 5],
        &rows,
    ));
    body.push_str("</section><h2>Hosts</h2><section>");
    let rows: Vec<Vec<String>> = s["hosts"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|h| {
            vec![
                escape(&text(h.get("address"))),
                num(h.get("exchanges")).to_string(),
                num(h.get("responses")).to_string(),
                format!("{}–{}", text(h.get("count_min")), text(h.get("count_max"))),
                h["epids"]
                    .as_array()
                    .unwrap_or(&empty)
                    .iter()
                    .map(|e| format!("<code>{}</code>", escape(&text(Some(e)))))
                    .collect::<Vec<_>>()
                    .join("<br>"),
            ]
        })
        .collect();
    body.push_str(&table(
        &["host", "exchanges", "responses", "counts", "ePIDs"],
        &[1, 2],
        &rows,
    ));
    let rows: Vec<Vec<String>> = s["products"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|p| {
            vec![
                escape(&text(p.get("product"))),
                escape(&text(p.get("application"))),
                format!("<code>{}</code>", escape(&text(p.get("sku_id")))),
                num(p.get("requests")).to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        body.push_str("</section><h2>Products</h2><section>");
        body.push_str(&table(
            &["product", "application", "SKU ID", "requests"],
            &[3],
            &rows,
        ));
    }
    body.push_str("</section><h2>Errors</h2><section>");
    let mut rows = Vec::new();
    let errors = &s["errors"];
    for (class, label) in [
        ("failed_checks", "failed check"),
        ("refusals", "refusal"),
        ("faults", "RPC fault"),
        ("problems", "problem"),
    ] {
        for e in errors[class].as_array().unwrap_or(&empty) {
            rows.push(vec![
                escape(label),
                format!("<code>{}</code>", escape(&text(e.get("name")))),
                num(e.get("count")).to_string(),
            ]);
        }
    }
    if rows.is_empty() {
        body.push_str("<p class=\"pass\">No errors.</p>");
    } else {
        body.push_str(&table(&["kind", "name", "count"], &[2], &rows));
    }
    body.push_str("</section>");
    let cap = &doc["capture"];
    body.push_str(&parameters(&[
        ("file", text(doc.get("file"))),
        ("format", text(cap.get("format"))),
        ("link type", text(cap.get("linktype"))),
        ("packets", text(cap.get("packets"))),
        ("exit status", text(doc.get("exit_status"))),
    ]));
    page("kmsharness inspect", &text(doc.get("file")), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_strings_are_escaped() {
        let doc = serde_json::json!({
            "format": "kmsharness-conform/1",
            "target": "<script>alert(1)</script>",
            "summary": {"total": 1, "failed": 1},
            "verdict": {"looks_like": "<img src=x onerror=alert(1)>", "evidence": [
                {"case": "c", "observation": "</table><script>x()</script>", "suggests": null}
            ]},
            "cases": [{"id": "a", "category": "<b>", "title": "t", "level": "must", "status": "fail",
                "source": "s", "failure": {"step": 1, "kind": "k", "mismatches": [
                    {"what": "epid", "expected": "x", "actual": "<script>evil()</script>"}]}}]
        });
        let html = render(&doc).unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;evil()&lt;/script&gt;"));
    }

    #[test]
    fn percentile_axis_labels_decades() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(10000.0), "99.99%");
        assert_eq!(percentile_label(20.0), "");
    }

    #[test]
    fn kinds_from_format_or_shape() {
        assert_eq!(
            kind_of(&serde_json::json!({"format": "kmsharness-load/1"})),
            Some("load")
        );
        assert_eq!(
            kind_of(&serde_json::json!({"phases": {}, "capture": "x"})),
            Some("replay")
        );
        assert_eq!(
            kind_of(&serde_json::json!({"connections": [], "summary": {}})),
            Some("inspect")
        );
        assert!(matches!(
            render(&serde_json::json!({"format": 3})),
            Err(HtmlError::UnknownKind(_))
        ));
    }
}
