//! The page of an `inspect` report: counts, exchanges over time by outcome, connections,
//! hosts and products, errors, and the capture's facts. It reads the report's JSON (format
//! `kmsharness-inspect/1`): `report html` the saved file, `inspect --html` the same document
//! built from each connection as it is decoded, slimmed by [`slim_connection`] to what the
//! page shows so that a long capture is not held whole.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::plot::{BAD, GOOD, Layer, stacked_bars};
use super::{escape, items, num, page, parameters, table, text, tiles};

/// Most connections listed in the table; the rest are counted in a note (the JSON report has
/// them all). A page of a million rows does not open.
const MAX_CONNECTION_ROWS: usize = 1000;
/// Bars of the exchanges-over-time plot.
const TIME_BINS: usize = 60;

/// The fields of a connection (and of its exchanges) the page reads; the rest (binds, checks,
/// decoded messages) are left out of what `inspect --html` keeps.
const CONNECTION_FIELDS: [&str; 8] = [
    "index",
    "client",
    "server",
    "kms",
    "skip_reason",
    "first",
    "duration_secs",
    "error",
];
const EXCHANGE_FIELDS: [&str; 3] = ["index", "sent_at", "outcome"];

/// A connection's JSON cut down to what the page reads.
pub fn slim_connection(c: &Value) -> Value {
    let pick = |v: &Value, fields: &[&str]| -> Map<String, Value> {
        fields
            .iter()
            .filter_map(|f| Some(((*f).to_owned(), v.get(*f)?.clone())))
            .collect()
    };
    let mut out = pick(c, &CONNECTION_FIELDS);
    let exchanges: Vec<Value> = items(c.get("exchanges"))
        .iter()
        .map(|e| Value::Object(pick(e, &EXCHANGE_FIELDS)))
        .collect();
    out.insert("exchanges".into(), Value::Array(exchanges));
    Value::Object(out)
}

/// Seconds of an RFC 3339 time since the Unix epoch.
fn unix_secs(v: Option<&Value>) -> Option<f64> {
    let t = humantime::parse_rfc3339_weak(v?.as_str()?.trim_end_matches('Z')).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
}

/// Exchanges per time bin since the first packet, ok ones apart from the others.
fn exchanges_over_time(connections: &[Value]) -> String {
    let mut times: Vec<(f64, bool)> = Vec::new();
    for c in connections {
        for e in items(c.get("exchanges")) {
            // An exchange without a time (none in practice) is put at its connection's start.
            if let Some(t) = unix_secs(e.get("sent_at")).or_else(|| unix_secs(c.get("first"))) {
                times.push((t, e.get("outcome").and_then(Value::as_str) == Some("ok")));
            }
        }
    }
    if times.is_empty() {
        return "<p class=\"note\">No exchanges.</p>".into();
    }
    let start = times.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
    let end = times.iter().map(|t| t.0).fold(f64::NEG_INFINITY, f64::max);
    // A capture of one instant still gets a visible bar.
    let width = ((end - start) / TIME_BINS as f64).max(1e-3);
    let bins = (((end - start) / width).floor() as usize + 1).min(TIME_BINS);
    let (mut ok, mut other) = (vec![0u64; bins], vec![0u64; bins]);
    for (t, is_ok) in times {
        let i = (((t - start) / width) as usize).min(bins - 1);
        if is_ok {
            ok[i] += 1;
        } else {
            other[i] += 1;
        }
    }
    stacked_bars(
        "Exchanges over time",
        "seconds since the first exchange",
        "exchanges",
        0.0,
        width,
        &[
            Layer {
                label: "ok",
                colour: GOOD,
                counts: ok,
            },
            Layer {
                label: "not ok",
                colour: BAD,
                counts: other,
            },
        ],
    )
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
    let conns = items(doc.get("connections"));
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
        .take(MAX_CONNECTION_ROWS)
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
    if conns.len() > MAX_CONNECTION_ROWS {
        let _ = write!(
            body,
            "<p class=\"note\">The first {MAX_CONNECTION_ROWS} of {} connections; the JSON \
             report has them all.</p>",
            conns.len()
        );
    }
    body.push_str("</section><h2>Hosts</h2><section>");
    let rows: Vec<Vec<String>> = items(s.get("hosts"))
        .iter()
        .map(|h| {
            vec![
                escape(&text(h.get("address"))),
                num(h.get("exchanges")).to_string(),
                num(h.get("responses")).to_string(),
                format!("{}–{}", text(h.get("count_min")), text(h.get("count_max"))),
                items(h.get("epids"))
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
    let rows: Vec<Vec<String>> = items(s.get("products"))
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
        for e in items(errors.get(class)) {
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
        ("packets not TCP", text(cap.get("not_tcp"))),
        ("packets skipped", text(cap.get("skipped"))),
        (
            "file damage",
            text(cap.get("error").and_then(|e| e.get("message"))),
        ),
        (
            "exit status",
            format!(
                "{} ({})",
                text(doc.get("exit_status")),
                text(doc.get("exit"))
            ),
        ),
    ]));
    page("kmsharness inspect", &text(doc.get("file")), &body)
}
