//! Printing a conformance run: a table grouped by category for people, JSON for machines, and
//! JUnit XML for CI systems.

use std::io::{self, Write};

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use crate::conform::runner::{CaseResult, Status, SuiteReport};

fn mark(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "FAIL",
        Status::Skip => "skip",
    }
}

/// Categories in the order their first case appears.
fn categories(r: &SuiteReport) -> Vec<(&str, Vec<&CaseResult>)> {
    let mut out: Vec<(&str, Vec<&CaseResult>)> = Vec::new();
    for c in &r.cases {
        match out.iter_mut().find(|(name, _)| *name == c.category) {
            Some((_, v)) => v.push(c),
            None => out.push((&c.category, vec![c])),
        }
    }
    out
}

/// Writes the report as a table grouped by category, each failure with its expected and
/// actual values and its source, then the verdict.
pub fn text(w: &mut dyn Write, r: &SuiteReport) -> io::Result<()> {
    let s = &r.summary;
    writeln!(
        w,
        "kmsharness conform: {} (profile {}{})",
        r.target,
        r.profile,
        if r.state_changes {
            ", state changes allowed"
        } else {
            ""
        }
    )?;
    let width = r.cases.iter().map(|c| c.id.len()).max().unwrap_or(10);
    for (category, cases) in categories(r) {
        writeln!(w)?;
        let passed = cases.iter().filter(|c| c.status == Status::Pass).count();
        writeln!(w, "{category}  ({passed}/{} passed)", cases.len())?;
        for c in cases {
            writeln!(
                w,
                "  {}  {:<13}  {:<width$}  {}",
                mark(c.status),
                c.level.to_string(),
                c.id,
                c.title
            )?;
            if let Some(reason) = &c.skip_reason {
                writeln!(w, "        skipped: {reason}")?;
            }
            if let Some(f) = &c.failure {
                for m in &f.mismatches {
                    writeln!(w, "        step {} ({}): {}", f.step, f.kind, m.what)?;
                    writeln!(w, "          expected: {}", m.expected)?;
                    writeln!(w, "          actual:   {}", m.actual)?;
                }
                writeln!(w, "        source: {}", c.source)?;
            }
        }
    }
    writeln!(w)?;
    writeln!(
        w,
        "{} cases: {} passed, {} failed ({} must, {} should, {} informational), {} skipped in {:.1} s",
        s.total,
        s.passed,
        s.failed,
        s.must_failed,
        s.should_failed,
        s.informational_failed,
        s.skipped,
        r.seconds
    )?;
    writeln!(w, "looks like: {}", r.verdict.looks_like)?;
    for e in &r.verdict.evidence {
        writeln!(
            w,
            "  - {}: {}{}",
            e.case,
            e.observation,
            e.suggests
                .as_ref()
                .map_or(String::new(), |s| format!(" (points to {s})"))
        )?;
    }
    writeln!(
        w,
        "exit status {}: {}",
        r.exit_status,
        if r.exit_status == 0 {
            "no must case failed"
        } else {
            "a must case failed"
        }
    )
}

/// Writes the report as pretty JSON (format `kmsharness-conform/1`).
pub fn json(w: &mut dyn Write, r: &SuiteReport) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, r).map_err(io::Error::other)?;
    writeln!(w)
}

/// XML 1.0 cannot carry most control characters even escaped; a hostile host's strings may
/// contain them.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\t') {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

fn secs(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// Writes the report as JUnit XML: one test suite per category, one test case per case;
/// failures carry expected and actual values and the source, skips their reason.
pub fn junit(w: &mut dyn Write, r: &SuiteReport) -> io::Result<()> {
    let mut x = Writer::new_with_indent(&mut *w, b' ', 2);
    x.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let s = &r.summary;
    let mut root = BytesStart::new("testsuites");
    root.push_attribute((
        "name",
        clean(&format!("kmsharness conform: {}", r.target)).as_str(),
    ));
    root.push_attribute(("tests", s.total.to_string().as_str()));
    root.push_attribute(("failures", s.failed.to_string().as_str()));
    root.push_attribute(("skipped", s.skipped.to_string().as_str()));
    root.push_attribute(("time", format!("{:.3}", r.seconds).as_str()));
    x.write_event(Event::Start(root))?;
    for (category, cases) in categories(r) {
        let mut suite = BytesStart::new("testsuite");
        let failures = cases.iter().filter(|c| c.status == Status::Fail).count();
        let skipped = cases.iter().filter(|c| c.status == Status::Skip).count();
        let ms: u64 = cases.iter().map(|c| c.millis).sum();
        suite.push_attribute(("name", clean(category).as_str()));
        suite.push_attribute(("tests", cases.len().to_string().as_str()));
        suite.push_attribute(("failures", failures.to_string().as_str()));
        suite.push_attribute(("errors", "0"));
        suite.push_attribute(("skipped", skipped.to_string().as_str()));
        suite.push_attribute(("time", secs(ms).as_str()));
        x.write_event(Event::Start(suite))?;
        for c in cases {
            let mut case = BytesStart::new("testcase");
            case.push_attribute(("classname", clean(&c.family).as_str()));
            case.push_attribute(("name", clean(&format!("{} ({})", c.id, c.level)).as_str()));
            case.push_attribute(("time", secs(c.millis).as_str()));
            x.write_event(Event::Start(case))?;
            if let Some(reason) = &c.skip_reason {
                let mut skip = BytesStart::new("skipped");
                skip.push_attribute(("message", clean(reason).as_str()));
                x.write_event(Event::Empty(skip))?;
            }
            if let Some(f) = &c.failure {
                let first = f.mismatches.first().map_or(String::new(), |m| {
                    format!("{}: expected {}, got {}", m.what, m.expected, m.actual)
                });
                let mut fail = BytesStart::new("failure");
                fail.push_attribute(("message", clean(&first).as_str()));
                fail.push_attribute(("type", c.level.to_string().as_str()));
                x.write_event(Event::Start(fail))?;
                let mut body = format!("{}\nstep {} ({})\n", c.title, f.step, f.kind);
                for m in &f.mismatches {
                    body.push_str(&format!(
                        "{}\n  expected: {}\n  actual:   {}\n",
                        m.what, m.expected, m.actual
                    ));
                }
                body.push_str(&format!("source: {}", c.source));
                x.write_event(Event::Text(BytesText::new(&clean(&body))))?;
                x.write_event(Event::End(BytesEnd::new("failure")))?;
            }
            if !c.evidence.is_empty() {
                let lines: Vec<String> = c.evidence.iter().map(|e| e.observation.clone()).collect();
                x.write_event(Event::Start(BytesStart::new("system-out")))?;
                x.write_event(Event::Text(BytesText::new(&clean(&lines.join("\n")))))?;
                x.write_event(Event::End(BytesEnd::new("system-out")))?;
            }
            x.write_event(Event::End(BytesEnd::new("testcase")))?;
        }
        x.write_event(Event::End(BytesEnd::new("testsuite")))?;
    }
    x.write_event(Event::End(BytesEnd::new("testsuites")))?;
    writeln!(w)
}
