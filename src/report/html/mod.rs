//! HTML reports: one self-contained page per report (inline CSS and inline SVG plots drawn
//! with plotters' SVG backend; no script, no font or image fetched, so it opens from disk), for
//! `--html FILE` and `report html`. Every string that came from a report is escaped:
//! host-provided names and capture contents are untrusted.
//!
//! Each kind of report has its module holding its page function; [`Kind`] names the kinds
//! and [`render`] picks one from a saved report's `format`. A new kind is one more module, one
//! more variant with its format, and one more arm of [`render`].

mod conform;
mod inspect;
mod load;
mod plot;
mod simulate;

use std::fmt::Write as _;

use serde_json::Value;

pub use self::conform::conform;
pub use self::inspect::{inspect, slim_connection};
pub use self::load::{load, replay};
pub use self::simulate::simulate;

/// The kinds of report that have a page, each known by its JSON `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `load --json`, and `report merge` (same format).
    Load,
    /// `replay --json`.
    Replay,
    /// `conform --json`.
    Conform,
    /// `inspect --json`.
    Inspect,
    /// `simulate --json`.
    Simulate,
}

impl Kind {
    /// Every kind, in the order the README lists them.
    pub const ALL: [Kind; 5] = [
        Kind::Load,
        Kind::Replay,
        Kind::Conform,
        Kind::Inspect,
        Kind::Simulate,
    ];

    /// The `format` field of its JSON report.
    pub fn format(self) -> &'static str {
        match self {
            Kind::Load => crate::load::REPORT_FORMAT,
            Kind::Replay => crate::replay::REPORT_FORMAT,
            Kind::Conform => crate::conform::runner::REPORT_FORMAT,
            Kind::Inspect => crate::inspect::REPORT_FORMAT,
            Kind::Simulate => crate::simulate::report::FORMAT,
        }
    }

    /// Its subcommand's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Load => "load",
            Kind::Replay => "replay",
            Kind::Conform => "conform",
            Kind::Inspect => "inspect",
            Kind::Simulate => "simulate",
        }
    }

    /// The kind whose report has this `format`.
    pub fn of_format(format: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.format() == format)
    }
}

/// Why a JSON document cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    /// Its `format` is missing or names no kind of report that has a page.
    #[error(
        "format {found} has no HTML page (expected one of: {})",
        known_formats()
    )]
    UnknownFormat {
        /// The `format` value as found (JSON), or `missing`.
        found: String,
    },
    /// It names a kind but does not have its shape.
    #[error("not a {kind} report: {message}", kind = kind.name())]
    Shape {
        /// The kind its format named.
        kind: Kind,
        /// What serde said.
        message: String,
    },
}

fn known_formats() -> String {
    Kind::ALL.map(Kind::format).join(", ")
}

/// The kind of report a JSON document is, from its `format` field (`kmsharness-load/1`, …).
pub fn kind_of(doc: &Value) -> Result<Kind, HtmlError> {
    let format = doc.get("format");
    format
        .and_then(Value::as_str)
        .and_then(Kind::of_format)
        .ok_or_else(|| HtmlError::UnknownFormat {
            found: format.map_or_else(|| "missing".to_owned(), Value::to_string),
        })
}

/// Renders any saved JSON report (load, merged load, replay, conform, inspect, simulate) as a
/// page.
/// Load and replay reports are read into their types (their pages compute from the
/// histograms); conform and inspect pages read the JSON as it is, so that the page of a saved
/// report and of `--html` on the run are the same.
pub fn render(doc: &Value) -> Result<String, HtmlError> {
    let kind = kind_of(doc)?;
    let shape = |e: serde_json::Error| HtmlError::Shape {
        kind,
        message: e.to_string(),
    };
    Ok(match kind {
        Kind::Load => load(&serde_json::from_value(doc.clone()).map_err(shape)?),
        Kind::Replay => replay(&serde_json::from_value(doc.clone()).map_err(shape)?),
        Kind::Conform => {
            require_object(doc, &["summary", "verdict", "cases"]).map_err(shape)?;
            conform(doc)
        }
        Kind::Inspect => {
            require_object(doc, &["capture", "connections", "summary"]).map_err(shape)?;
            inspect(doc)
        }
        Kind::Simulate => simulate(&serde_json::from_value(doc.clone()).map_err(shape)?),
    })
}

/// The keys a page reads must be there: a document with the right `format` but missing them
/// is a broken report, said so rather than rendered as an empty page.
fn require_object(doc: &Value, keys: &[&'static str]) -> Result<(), serde_json::Error> {
    for k in keys {
        if doc.get(k).is_none_or(Value::is_null) {
            return Err(serde::de::Error::missing_field(k));
        }
    }
    Ok(())
}

/// Escapes text for HTML content and attribute values; control characters (other than tab and
/// newline) become U+FFFD so that a capture's bytes cannot break the page.
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
border-radius:6px;padding:12px 16px;margin:12px 0;overflow-x:auto}\
table{border-collapse:collapse;width:100%;font-size:.92em}\
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceef2;vertical-align:top}\
th{background:#f0f2f5;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}.skip{color:#8a6d00}\
.tiles{display:flex;flex-wrap:wrap;gap:10px}.tile{background:#fff;border:1px solid #e1e4ea;border-radius:6px;\
padding:8px 14px;min-width:120px}.tile b{display:block;font-size:1.4em}.tile span{color:#5a6272;font-size:.85em}\
code,pre{font-family:ui-monospace,Consolas,monospace;font-size:.9em}pre{white-space:pre-wrap;margin:2px 0}\
svg{max-width:100%;height:auto;display:block}.note{color:#5a6272;font-size:.9em}";

/// The page around a body (already HTML).
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

/// The run parameters section: names and formatted (not yet escaped) values.
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

/// A JSON value as display text: strings bare, null and absent empty, others as JSON.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// A JSON number as u64 (0 when absent or not one).
fn num(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

/// A JSON array's items (none when absent or not an array).
fn items(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Seconds since the Unix epoch as an RFC 3339 time to the second.
fn rfc3339(unix_secs: f64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(unix_secs.max(0.0));
    humantime::format_rfc3339_seconds(t).to_string()
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
            "cases": [{"id": "a", "family": "<b>", "category": "<b>", "title": "t",
                "level": "must", "status": "fail", "source": "s",
                "failure": {"step": 1, "kind": "k", "mismatches": [
                    {"what": "epid", "expected": "x", "actual": "<script>evil()</script>"}]}}]
        });
        let html = render(&doc).unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;evil()&lt;/script&gt;"));
        assert_eq!(escape("a\u{0}b\tc"), "a\u{FFFD}b\tc");
    }

    #[test]
    fn the_kind_comes_from_the_format_field() {
        for kind in Kind::ALL {
            let doc = serde_json::json!({ "format": kind.format() });
            assert_eq!(kind_of(&doc).unwrap(), kind);
        }
        let e = kind_of(&serde_json::json!({"format": "kmsharness-activate/1"})).unwrap_err();
        assert!(e.to_string().contains("kmsharness-load/1"), "{e}");
        let e = kind_of(&serde_json::json!({"phases": {}})).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        assert!(matches!(
            render(&serde_json::json!({"format": 3})),
            Err(HtmlError::UnknownFormat { .. })
        ));
    }

    #[test]
    fn a_report_missing_what_its_page_reads_is_refused() {
        for kind in Kind::ALL {
            let doc = serde_json::json!({ "format": kind.format() });
            assert!(
                matches!(render(&doc), Err(HtmlError::Shape { .. })),
                "{kind:?}"
            );
        }
    }
}
