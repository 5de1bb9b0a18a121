//! Printing a conformance run: a table grouped by category for people, JSON for machines, and
//! JUnit XML for CI systems (written with quick-xml, valid against Jenkins' xUnit schema).

use std::io::{self, Write};

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, Event};

use super::junit::{clean, declaration, hostname, seconds, text_element};

use crate::conform::runner::{CaseResult, Status, SuiteReport};
use crate::conform::vector::Level;

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
        match (r.exit_status == 0, r.strict) {
            (true, false) => "no must case failed",
            (true, true) => "no must or should case failed (--strict)",
            (false, false) => "a must case failed",
            (false, true) => "a must or should case failed (--strict)",
        }
    )
}

/// Writes the report as pretty JSON (format `kmsharness-conform/1`).
pub fn json(w: &mut dyn Write, r: &SuiteReport) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, r).map_err(io::Error::other)?;
    writeln!(w)
}

/// The failure body: title, step, every mismatch, source.
fn failure_body(c: &CaseResult) -> (String, String) {
    let Some(f) = &c.failure else {
        return (String::new(), String::new());
    };
    let first = f.mismatches.first().map_or(String::new(), |m| {
        format!("{}: expected {}, got {}", m.what, m.expected, m.actual)
    });
    let mut body = format!("{}\nstep {} ({})\n", c.title, f.step, f.kind);
    for m in &f.mismatches {
        body.push_str(&format!(
            "{}\n  expected: {}\n  actual:   {}\n",
            m.what, m.expected, m.actual
        ));
    }
    body.push_str(&format!("source: {}", c.source));
    (first, body)
}

/// Writes the report as JUnit XML valid against the schema Jenkins' xUnit plugin checks
/// (`junit-10.xsd`, vendored in `tests/support/`): one test suite per category with its
/// timestamp and hostname, one test case per case. A case is a `<failure>` exactly when it
/// fails the exit status (a `must` case, or a `should` case under `--strict`); a failed case
/// that does not is `<skipped>` with its level and what did not hold, so CI shows it without
/// failing the build; skips carry their reason; cases with tells carry the observations in
/// `system-out`. Written with quick-xml: `quick-junit` puts a `skipped` attribute on
/// `testsuites`, which that schema rejects.
pub fn junit(w: &mut dyn Write, r: &SuiteReport) -> io::Result<()> {
    let host = hostname();
    let mut x = Writer::new_with_indent(w, b' ', 2);
    declaration(&mut x)?;
    let groups = categories(r);
    let count = |cases: &[&CaseResult], f: &dyn Fn(&CaseResult) -> bool| {
        cases.iter().filter(|c| f(c)).count().to_string()
    };
    let failed = |c: &CaseResult| r.fails_run(c);
    let skipped = |c: &CaseResult| !r.fails_run(c) && c.status != Status::Pass;
    let all: Vec<&CaseResult> = r.cases.iter().collect();
    let mut top = BytesStart::new("testsuites");
    top.push_attribute((
        "name",
        clean(&format!("kmsharness conform: {}", r.target)).as_str(),
    ));
    top.push_attribute(("tests", all.len().to_string().as_str()));
    top.push_attribute(("failures", count(&all, &failed).as_str()));
    top.push_attribute(("errors", "0"));
    top.push_attribute((
        "time",
        seconds((r.seconds.max(0.0) * 1000.0) as u64).as_str(),
    ));
    x.write_event(Event::Start(top))?;
    for (category, cases) in groups {
        let mut suite = BytesStart::new("testsuite");
        suite.push_attribute(("name", clean(category).as_str()));
        suite.push_attribute(("tests", cases.len().to_string().as_str()));
        suite.push_attribute(("failures", count(&cases, &failed).as_str()));
        suite.push_attribute(("errors", "0"));
        suite.push_attribute(("skipped", count(&cases, &skipped).as_str()));
        suite.push_attribute((
            "time",
            seconds(cases.iter().map(|c| c.millis).sum()).as_str(),
        ));
        suite.push_attribute(("timestamp", r.started.as_str()));
        suite.push_attribute(("hostname", clean(&host).as_str()));
        x.write_event(Event::Start(suite))?;
        for c in cases {
            let mut case = BytesStart::new("testcase");
            case.push_attribute(("name", clean(&format!("{} ({})", c.id, c.level)).as_str()));
            case.push_attribute(("classname", clean(&c.family).as_str()));
            case.push_attribute(("time", seconds(c.millis).as_str()));
            let level = c.level.to_string();
            let has_children = c.status != Status::Pass || !c.evidence.is_empty();
            if !has_children {
                x.write_event(Event::Empty(case))?;
                continue;
            }
            x.write_event(Event::Start(case))?;
            if let Some(reason) = &c.skip_reason {
                text_element(&mut x, "skipped", &[("message", reason)], reason)?;
            } else if c.status == Status::Fail {
                let (first, body) = failure_body(c);
                if r.fails_run(c) {
                    text_element(
                        &mut x,
                        "failure",
                        &[("message", &first), ("type", &level)],
                        &body,
                    )?;
                } else {
                    let message = format!(
                        "{level} case failed, which does not fail the run{}: {first}",
                        if c.level == Level::Should {
                            " without --strict"
                        } else {
                            ""
                        }
                    );
                    text_element(
                        &mut x,
                        "skipped",
                        &[("message", &message), ("type", &level)],
                        &body,
                    )?;
                }
            }
            if !c.evidence.is_empty() {
                let lines: Vec<&str> = c.evidence.iter().map(|e| e.observation.as_str()).collect();
                text_element(&mut x, "system-out", &[], &lines.join("\n"))?;
            }
            x.write_event(Event::End(BytesEnd::new("testcase")))?;
        }
        x.write_event(Event::End(BytesEnd::new("testsuite")))?;
    }
    x.write_event(Event::End(BytesEnd::new("testsuites")))?;
    x.get_mut().write_all(b"\n")
}
