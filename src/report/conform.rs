//! Printing a conformance run: a table grouped by category for people, JSON for machines, and
//! JUnit XML for CI systems (through `quick-junit`, the model and writer nextest uses).

use std::io::{self, Write};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite, XmlString};

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

/// XML 1.0 has no place for U+FFFE and U+FFFF, which [`XmlString`] lets through (it drops
/// the C0 controls and escape sequences); a hostile host's strings may contain them.
fn clean(s: &str) -> XmlString {
    XmlString::new(s.replace(['\u{FFFE}', '\u{FFFF}'], "\u{FFFD}"))
}

/// Writes the report as JUnit XML: one test suite per category, one test case per case;
/// failures carry expected and actual values and the source, skips their reason, cases with
/// tells the observations in `system-out`.
pub fn junit(w: &mut dyn Write, r: &SuiteReport) -> io::Result<()> {
    let mut report = Report::new(clean(&format!("kmsharness conform: {}", r.target)));
    report.set_time(Duration::from_secs_f64(r.seconds.max(0.0)));
    for (category, cases) in categories(r) {
        let mut suite = TestSuite::new(clean(category));
        suite.set_time(Duration::from_millis(cases.iter().map(|c| c.millis).sum()));
        for c in cases {
            let status = match (&c.skip_reason, &c.failure) {
                (Some(reason), _) => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(clean(reason));
                    s
                }
                (None, Some(f)) => {
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
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(clean(&first))
                        .set_type(c.level.to_string())
                        .set_description(clean(&body));
                    s
                }
                (None, None) => TestCaseStatus::success(),
            };
            let mut case = TestCase::new(clean(&format!("{} ({})", c.id, c.level)), status);
            case.set_classname(clean(&c.family))
                .set_time(Duration::from_millis(c.millis));
            if !c.evidence.is_empty() {
                let lines: Vec<&str> = c.evidence.iter().map(|e| e.observation.as_str()).collect();
                case.set_system_out(clean(&lines.join("\n")));
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.serialize(&mut *w).map_err(io::Error::other)
}
