//! The page of a `conform` report: counts, cases by family with their verdicts, the failures
//! with what was expected, what came and where the expectation comes from, the fingerprint
//! verdict with its evidence, every case, and the run parameters. It reads the report's JSON
//! (format `kmsharness-conform/1`), the same for `--html` and for `report html`.

use std::fmt::Write as _;

use serde_json::Value;

use super::plot::{BAD, COLOURS, GOOD, Layer, category_bars};
use super::{escape, items, num, page, parameters, table, text, tiles};

/// A case's family: its file stem (`rpc-bind`) and title (`RPC bind`), and its cases in
/// vector order.
struct Family<'a> {
    stem: String,
    title: String,
    cases: Vec<&'a Value>,
}

impl Family<'_> {
    fn count(&self, status: &str) -> u64 {
        self.cases.iter().filter(|c| c["status"] == status).count() as u64
    }
}

/// Whether a failed case fails the run: a `must` case, or a `should` case under `--strict`
/// (as `conform::runner::level_fails_run` decides; the page reads it back from the report).
fn fails_run(case: &Value, strict: bool) -> bool {
    case["status"] == "fail" && (case["level"] == "must" || (strict && case["level"] == "should"))
}

/// A verdict cell: a failure that does not fail the run is shown as such.
fn status_cell(case: &Value, strict: bool) -> String {
    let status = text(case.get("status"));
    let (class, label) = match status.as_str() {
        "pass" => ("pass", "pass".to_owned()),
        "skip" => ("skip", "skip".to_owned()),
        _ if fails_run(case, strict) => ("fail", "FAIL".to_owned()),
        _ => ("skip", format!("{status} (does not fail the run)")),
    };
    format!("<span class=\"{class}\">{}</span>", escape(&label))
}

/// The page of a conform report (its JSON document, format `kmsharness-conform/1`).
pub fn conform(doc: &Value) -> String {
    let s = &doc["summary"];
    let strict = doc["strict"] == true;
    let looks_like = text(doc["verdict"].get("looks_like"));
    let mut body = tiles(&[
        ("cases", num(s.get("total")).to_string()),
        ("passed", num(s.get("passed")).to_string()),
        ("failed", num(s.get("failed")).to_string()),
        ("skipped", num(s.get("skipped")).to_string()),
        ("must cases failed", num(s.get("must_failed")).to_string()),
        ("looks like", looks_like.clone()),
    ]);
    let cases = items(doc.get("cases"));
    // Families in the order their first case appears (the vector order).
    let mut families: Vec<Family<'_>> = Vec::new();
    for c in cases {
        let stem = text(c.get("family"));
        match families.iter_mut().find(|f| f.stem == stem) {
            Some(f) => f.cases.push(c),
            None => families.push(Family {
                stem,
                title: text(c.get("category")),
                cases: vec![c],
            }),
        }
    }

    body.push_str("<h2>Cases by family</h2><section>");
    let labels: Vec<String> = families.iter().map(|f| f.stem.clone()).collect();
    let layer = |label, colour, status| Layer {
        label,
        colour,
        counts: families.iter().map(|f| f.count(status)).collect(),
    };
    body.push_str(&category_bars(
        "Cases by family",
        "cases",
        &labels,
        &[
            layer("passed", GOOD, "pass"),
            layer("failed", BAD, "fail"),
            layer("skipped", COLOURS[1], "skip"),
        ],
    ));
    let rows: Vec<Vec<String>> = families
        .iter()
        .map(|f| {
            vec![
                format!("{} (<code>{}</code>)", escape(&f.title), escape(&f.stem)),
                f.cases.len().to_string(),
                f.count("pass").to_string(),
                f.count("fail").to_string(),
                f.count("skip").to_string(),
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
    let _ = write!(body, "<p>Looks like <b>{}</b>.</p>", escape(&looks_like));
    let evidence = items(doc["verdict"].get("evidence"));
    if evidence.is_empty() {
        body.push_str("<p class=\"note\">No tell of an emulator was seen.</p>");
    } else {
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
                "<section><p>{} <code>{}</code> ({} case) — {}</p>",
                status_cell(c, strict),
                escape(&text(c.get("id"))),
                escape(&text(c.get("level"))),
                escape(&text(c.get("title")))
            );
            let f = &c["failure"];
            let rows: Vec<Vec<String>> = items(f.get("mismatches"))
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

    for f in &families {
        let _ = write!(
            body,
            "<h2>{} <code>{}</code></h2><section>",
            escape(&f.title),
            escape(&f.stem)
        );
        let rows: Vec<Vec<String>> = f
            .cases
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
                    status_cell(c, strict),
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
    let yes_no = |v: &Value| if *v == true { "yes" } else { "no" }.to_owned();
    body.push_str(&parameters(&[
        ("target", text(doc.get("target"))),
        ("profile", text(doc.get("profile"))),
        ("state changes allowed", yes_no(&doc["state_changes"])),
        (
            "strict (a failed should case fails the run)",
            yes_no(&doc["strict"]),
        ),
        ("started", text(doc.get("started"))),
        (
            "took",
            format!("{:.1} s", doc["seconds"].as_f64().unwrap_or(0.0)),
        ),
        ("exit status", text(doc.get("exit_status"))),
    ]));
    page("kmsharness conform", &text(doc.get("target")), &body)
}
