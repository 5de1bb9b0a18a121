//! JUnit XML for CI systems, valid against the schema Jenkins' xUnit plugin checks
//! (`junit-10.xsd`, vendored in `tests/support/xsd/`): the helpers every JUnit writer shares,
//! and [`gates`], the file of a run gated by `--threshold` (`load`, `replay`, `simulate`).
//! Written with quick-xml: `quick-junit` puts a `skipped` attribute on `testsuites`, which
//! that schema rejects.

use std::io::{self, Write};

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

/// Characters XML 1.0 has no place for (the C0 controls but tab, line feed and carriage
/// return; U+FFFE and U+FFFF) become U+FFFD: a hostile host's strings may contain them.
pub(crate) fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            '\u{0}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Seconds with three decimals, the form the schema's `SUREFIRE_TIME` pattern accepts.
pub(crate) fn seconds(millis: u64) -> String {
    format!("{}.{:03}", millis / 1000, millis % 1000)
}

/// This machine's name for the `hostname` attribute: the kernel's, else `HOSTNAME`, else
/// `localhost` (std has no call for it, and the attribute is informational).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

/// An element with text content.
pub(crate) fn text_element(
    w: &mut Writer<&mut dyn Write>,
    name: &str,
    attrs: &[(&str, &str)],
    body: &str,
) -> io::Result<()> {
    let mut tag = BytesStart::new(name);
    for (k, v) in attrs {
        tag.push_attribute((*k, clean(v).as_str()));
    }
    w.write_event(Event::Start(tag))?;
    w.write_event(Event::Text(BytesText::new(&clean(body))))?;
    w.write_event(Event::End(BytesEnd::new(name)))
}

/// The XML declaration every file starts with.
pub(crate) fn declaration(w: &mut Writer<&mut dyn Write>) -> io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
}

/// One pass/fail verdict of a run, a test case of its JUnit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// The test case's name: `run`, or a threshold's expression.
    pub name: String,
    /// Whether it passed; a failed gate is a `<failure>`, and fails the exit status.
    pub passed: bool,
    /// What was measured (`total.p99 = 2.10 ms, limit < 5 ms`), in `system-out` when it passed
    /// and as the failure's message when not.
    pub message: String,
    /// The failure's `type`: `exit status` for the run, `threshold` for a threshold.
    pub kind: &'static str,
}

impl Gate {
    /// The run itself: passed when its exit status (thresholds aside) is 0.
    pub fn run(exit: crate::exit::Exit) -> Gate {
        Gate {
            name: "run".into(),
            passed: exit == crate::exit::Exit::Success,
            message: format!("exit status {} ({})", exit as i32, exit.name()),
            kind: "exit status",
        }
    }
}

/// What a gated run was, for its JUnit file.
#[derive(Debug, Clone, Copy)]
pub struct GatedRun<'a> {
    /// The subcommand: `load`, `replay` or `simulate`.
    pub command: &'a str,
    /// What it ran against (target, capture, scenario), in the suites' names.
    pub subject: &'a str,
    /// When it started, RFC 3339 in UTC to the second.
    pub started: &'a str,
    /// How long it took, seconds.
    pub seconds: f64,
}

/// Writes the JUnit file of a gated run: one test suite `kmsharness COMMAND` whose cases are
/// the run itself (`run`: a `<failure>` when its exit status, thresholds aside, is not 0) and
/// each threshold in the order given. A case is a `<failure>` exactly when it fails the exit
/// status, as in `conform --junit`.
pub fn gates(w: &mut dyn Write, run: &GatedRun<'_>, gates: &[Gate]) -> io::Result<()> {
    let mut x = Writer::new_with_indent(w, b' ', 2);
    declaration(&mut x)?;
    let name = clean(&format!("kmsharness {}: {}", run.command, run.subject));
    let tests = gates.len().to_string();
    let failures = gates.iter().filter(|g| !g.passed).count().to_string();
    let time = seconds((run.seconds.max(0.0) * 1000.0) as u64);
    let mut top = BytesStart::new("testsuites");
    top.push_attribute(("name", name.as_str()));
    top.push_attribute(("tests", tests.as_str()));
    top.push_attribute(("failures", failures.as_str()));
    top.push_attribute(("errors", "0"));
    top.push_attribute(("time", time.as_str()));
    x.write_event(Event::Start(top))?;
    let mut suite = BytesStart::new("testsuite");
    suite.push_attribute(("name", name.as_str()));
    suite.push_attribute(("tests", tests.as_str()));
    suite.push_attribute(("failures", failures.as_str()));
    suite.push_attribute(("errors", "0"));
    suite.push_attribute(("skipped", "0"));
    suite.push_attribute(("time", time.as_str()));
    suite.push_attribute(("timestamp", run.started));
    suite.push_attribute(("hostname", clean(&hostname()).as_str()));
    x.write_event(Event::Start(suite))?;
    let classname = format!("kmsharness.{}", run.command);
    for g in gates {
        let mut case = BytesStart::new("testcase");
        case.push_attribute(("name", clean(&g.name).as_str()));
        case.push_attribute(("classname", classname.as_str()));
        case.push_attribute(("time", "0.000"));
        x.write_event(Event::Start(case))?;
        if g.passed {
            text_element(&mut x, "system-out", &[], &g.message)?;
        } else {
            text_element(
                &mut x,
                "failure",
                &[("message", &g.message), ("type", g.kind)],
                &g.message,
            )?;
        }
        x.write_event(Event::End(BytesEnd::new("testcase")))?;
    }
    x.write_event(Event::End(BytesEnd::new("testsuite")))?;
    x.write_event(Event::End(BytesEnd::new("testsuites")))?;
    x.get_mut().write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_failed_gates_are_failures_and_passed_ones_say_what_held() {
        let mut out = Vec::new();
        let run = GatedRun {
            command: "load",
            subject: "embedded",
            started: "2026-12-04T01:00:00Z",
            seconds: 1.25,
        };
        let gates_in = [
            Gate {
                name: "run".into(),
                passed: true,
                message: "exit status 0".into(),
                kind: "exit status",
            },
            Gate {
                name: "p99<5ms".into(),
                passed: false,
                message: "total.p99 = 7 ms, limit < 5 ms\u{1}".into(),
                kind: "threshold",
            },
        ];
        gates(&mut out, &run, &gates_in).unwrap();
        let xml = String::from_utf8(out).unwrap();
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("<failure message=\"total.p99 = 7 ms, limit &lt; 5 ms\u{FFFD}\""));
        assert!(
            xml.contains("<system-out>exit status 0</system-out>"),
            "{xml}"
        );
        assert!(xml.contains("type=\"threshold\""), "{xml}");
        assert!(xml.contains("time=\"1.250\""), "{xml}");
    }
}
