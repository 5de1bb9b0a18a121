//! Printing an `inspect` report: text for people (vlmcs-style blocks per exchange, every check,
//! then a summary table) and one JSON document for machines. Both stream: a header from the
//! capture facts, one connection at a time, then the summary.
//!
//! # The JSON document (`kmsharness-inspect/1`)
//!
//! One object, written as each connection is decoded (one connection per line):
//!
//! - `format`: `"kmsharness-inspect/1"`; `file`: the path given.
//! - `capture`: [`CaptureInfo`]: `format` (`pcap`/`pcapng`), `linktype`, `packets`, `not_tcp`,
//!   `skipped`, `skipped_records[]` (`record`, `reason`), `connections`, `error` (`kind`
//!   `not_a_capture`/`damaged`, `record`, `offset`, `message`) or null.
//! - `connections[]`: [`crate::inspect::ConnectionReport`]: `index`, `client`, `server`, `kms`
//!   (`bind`/`request`/`port`/null), `skip_reason`, `first`, `last` (RFC 3339 UTC), `duration_secs`, `tcp`
//!   (`syn_seen`, `fin_seen`, `rst_seen`, `bytes`, `duplicate_bytes`, `conflicts`, each per side
//!   as `{from_client, from_server}`), `pdus`, `undecoded_bytes`, `gaps[]` (`from`, `offset`,
//!   `len`, `record_before`, `record_after`), `binds[]` (`kind`, `call_id`, `flags`, `reply`,
//!   `reply_flags`, `assoc_group`, `contexts[]` (`context_id`, `offered`, `offered_uuid`,
//!   `result`, `reason`, `reason_name`), `accepted[]`, `checks[]`), `exchanges[]`, `error`
//!   (`from`, `offset`, `record`, `gap`, `message`) or null.
//! - `exchanges[]`: [`crate::inspect::ExchangeReport`]: `index`, `call_id`, `context_id`,
//!   `syntax`, `syntax_inferred`, `fragments`, `sent_at`, `replied_at`, `latency_micros`, `request_size`, `request`
//!   (every request field with catalog names: `message_format`, `version`, `base_version`,
//!   `vm_info`, `license_status`, `license_status_name`, `binding_expiration`, `app_id`,
//!   `application`, `sku_id`, `product`, `kms_id`, `kms_item`, `cmid`, `previous_cmid`,
//!   `client_time`, `client_time_filetime`, `workstation`, `required_clients`, `iv`, `mac`),
//!   `request_error`, `request_checks[]`, `outcome` (`ok`, `checks_failed`, `refused`, `fault`,
//!   `undecodable`, `unanswered`), `response` (`size`, `version`, `epid`, `hwid`, `cmid`,
//!   `client_time`, `count`, `renewal_interval`, `activation_interval`), `hresult`, `fault`,
//!   `reply_error`, `rpc_checks[]`, `response_checks[]`. A check is `{id, passed, expected,
//!   actual}`.
//! - `summary`: [`Summary`]: `connections`, `kms_connections`, `skipped_connections`,
//!   `exchanges`, `outcomes` (a count per outcome), `hosts[]` (`address`, `connections`,
//!   `exchanges`, `responses`, `count_min`, `count_max`, `distinct_epids`, `epids[]`),
//!   `clients[]` (`address`, `connections`, `exchanges`, `distinct_cmids`), `distinct_cmids`,
//!   `products[]` (`sku_id`, `product`, `application`, `requests`), `versions[]` (`name`,
//!   `count`), `errors` (`failed_checks[]`, `refusals[]`, `faults[]`, `problems[]`, each
//!   `{name, count}`).
//! - `exit_status` (number) and `exit` (its name).

use std::io::{self, Write};

use crate::exit::Exit;
use crate::inspect::{
    BindReport, CaptureInfo, ConnectionReport, ExchangeReport, FileErrorKind, InspectReport,
    Outcome, REPORT_FORMAT, Recognition, Summary, Utc, hex,
};
use crate::proto::check::Checks;

fn utc(ts: crate::capture::Timestamp) -> Utc {
    Utc { ts, rfc3339: false }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

// ---------------------------------------------------------------------------------------------
// Text

fn line(
    w: &mut dyn Write,
    indent: &str,
    name: &str,
    value: impl std::fmt::Display,
) -> io::Result<()> {
    writeln!(w, "{indent}{name:<32}: {value}")
}

fn checks(w: &mut dyn Write, indent: &str, list: &Checks) -> io::Result<()> {
    for c in list.iter() {
        if c.passed {
            writeln!(w, "{indent}pass  {:<20} {}", c.id.name(), c.actual)?;
        } else {
            writeln!(
                w,
                "{indent}FAIL  {:<20} expected {}, got {}",
                c.id.name(),
                c.expected,
                c.actual
            )?;
        }
    }
    Ok(())
}

/// Writes the lines that open a text report: the file and how it was read.
pub fn text_header(w: &mut dyn Write, file: &str, info: &CaptureInfo) -> io::Result<()> {
    let format = match (info.format, info.linktype) {
        (Some(f), Some(l)) => format!("{f}, link type {l}"),
        (Some(f), None) => f.to_owned(),
        (None, _) => "not a capture".to_owned(),
    };
    writeln!(
        w,
        "Capture {file} ({format}): {}, {}, {} skipped, {} not TCP",
        plural(info.packets, "packet record", "packet records"),
        plural(info.connections, "TCP connection", "TCP connections"),
        info.skipped,
        info.not_tcp
    )
}

fn bind(w: &mut dyn Write, b: &BindReport) -> io::Result<()> {
    let reply = match (b.reply, b.reply_flags) {
        (Some(r), Some(f)) => format!("{r} (flags {f:?})"),
        (Some(r), None) => r.to_owned(),
        (None, _) => "NO ANSWER in the capture".to_owned(),
    };
    write!(
        w,
        "\n  {} (call {}, flags {:?}) -> {reply}",
        b.kind, b.call_id, b.flags
    )?;
    match b.assoc_group {
        Some(g) => writeln!(w, ", association group 0x{g:08x}")?,
        None => writeln!(w)?,
    }
    for c in &b.contexts {
        write!(w, "    context {:<3} {:<7}", c.context_id, c.offered)?;
        match (c.result, c.reason) {
            (Some("negotiate_ack"), Some(bits)) => {
                writeln!(w, " negotiate_ack (features 0x{bits:04x})")?
            }
            (Some("acceptance"), _) => writeln!(w, " accepted")?,
            (Some(r), Some(reason)) => writeln!(
                w,
                " {r} (reason {reason}: {})",
                c.reason_name.unwrap_or("?")
            )?,
            (Some(r), None) => writeln!(w, " {r}")?,
            (None, _) => writeln!(w, " (no answer)")?,
        }
    }
    if b.reply.is_some() {
        let accepted = if b.accepted.is_empty() {
            "nothing".to_owned()
        } else {
            format!("... {} ...", b.accepted.join(" ... "))
        };
        writeln!(w, "    Accepted: {accepted}")?;
    }
    checks(w, "    ", &b.checks)
}

fn exchange(w: &mut dyn Write, e: &ExchangeReport) -> io::Result<()> {
    let syntax = match (e.syntax, e.syntax_inferred) {
        (None, _) => "an unbound context".to_owned(),
        (Some(s), false) => s.name().to_owned(),
        (Some(s), true) => format!("{} (inferred from the stub: no bind captured)", s.name()),
    };
    write!(
        w,
        "\n  Request {} (call {}, context {} over {syntax}, {})",
        e.index,
        e.call_id,
        e.context_id,
        plural(e.fragments, "fragment", "fragments")
    )?;
    match e.sent_at {
        Some(t) => writeln!(w, " at {} UTC", utc(t))?,
        None => writeln!(w)?,
    }
    let i = "    ";
    if let Some(r) = &e.request {
        let version = if r.version == r.base_version {
            format!("{} ({:?} message)", r.version, r.message_format)
        } else {
            format!(
                "{} ({:?} message; {} inside)",
                r.version, r.message_format, r.base_version
            )
        };
        line(w, i, "Protocol version", version)?;
        line(
            w,
            i,
            "Client is a virtual machine",
            match r.vm_info {
                0 => "No".to_owned(),
                1 => "Yes".to_owned(),
                n => format!("{n} (invalid)"),
            },
        )?;
        line(
            w,
            i,
            "Licensing status",
            format!(
                "{} ({})",
                r.license_status,
                r.license_status_name.unwrap_or("unknown")
            ),
        )?;
        line(
            w,
            i,
            "Remaining time (0 = forever)",
            format!("{} minutes", r.binding_expiration),
        )?;
        let named = |g, n: Option<&str>| format!("{g} ({})", n.unwrap_or("not in the catalog"));
        line(w, i, "Application ID", named(r.app_id, r.application))?;
        line(
            w,
            i,
            "SKU ID (aka Activation ID)",
            named(r.sku_id, r.product),
        )?;
        line(
            w,
            i,
            "KMS ID (aka KMS counted ID)",
            named(r.kms_id, r.kms_item),
        )?;
        line(w, i, "Client machine ID", r.cmid)?;
        line(w, i, "Previous client machine ID", r.previous_cmid)?;
        line(
            w,
            i,
            "Client request timestamp (UTC)",
            format!("{} (FILETIME {})", r.client_time, r.client_time.0),
        )?;
        line(w, i, "Workstation name", r.workstation)?;
        line(w, i, "N count policy (minimum clients)", r.required_clients)?;
        line(w, i, "Size of KMS request", e.request_size)?;
        if let Some(iv) = &r.iv {
            line(w, i, "Request IV", hex(iv, false))?;
        }
        if let Some(mac) = &r.mac {
            line(w, i, "Request MAC", hex(mac, false))?;
        }
    }
    if let Some(err) = &e.request_error {
        line(w, i, "Request", format!("UNDECODABLE: {err}"))?;
    }
    if !e.request_checks.is_empty() {
        writeln!(w, "   Request checks (as a host makes them)")?;
        checks(w, i, &e.request_checks)?;
    }
    let after = e
        .latency_micros
        .map(|us| format!(", {:.3} ms after the request", us as f64 / 1000.0))
        .unwrap_or_default();
    if let Some(s) = &e.response {
        writeln!(w, "   Response from the KMS host{after}")?;
        line(
            w,
            i,
            "Size of KMS Response",
            format!("{} (0x{:x})", s.size, s.size),
        )?;
        line(w, i, "Protocol version", s.version)?;
        line(w, i, "KMS host extended PID", &s.epid)?;
        if let Some(h) = &s.hwid {
            line(w, i, "KMS host Hardware ID", hex(h, true))?;
        }
        line(w, i, "Client machine ID", s.cmid)?;
        line(w, i, "Client request timestamp (UTC)", s.client_time)?;
        line(w, i, "KMS host current active clients", s.count)?;
        line(w, i, "Renewal interval policy", s.renewal_interval)?;
        line(w, i, "Activation interval policy", s.activation_interval)?;
    } else if e.outcome != Outcome::Unanswered {
        writeln!(w, "   Reply from the KMS host{after}")?;
    }
    if !e.rpc_checks.is_empty() || !e.response_checks.is_empty() {
        writeln!(w, "   Checks")?;
        checks(w, i, &e.rpc_checks)?;
        checks(w, i, &e.response_checks)?;
    }
    let verdict = match e.outcome {
        Outcome::Ok => "ok: every check passed".to_owned(),
        Outcome::ChecksFailed => "FAILED: see the checks above".to_owned(),
        Outcome::Refused => format!(
            "REFUSED: the host returned {}",
            e.hresult.map(|h| h.to_string()).unwrap_or_default()
        ),
        Outcome::Fault => format!(
            "RPC FAULT: {}",
            e.fault.map(|f| format!("{f:#}")).unwrap_or_default()
        ),
        Outcome::Undecodable | Outcome::Rpc => format!(
            "UNDECODABLE: {}",
            e.reply_error
                .as_deref()
                .or(e.request_error.as_deref())
                .unwrap_or("?")
        ),
        Outcome::Unanswered | Outcome::Connection => {
            "UNANSWERED: no reply in the capture".to_owned()
        }
    };
    writeln!(w, "   Result: {verdict}")
}

/// Writes one connection as text.
pub fn text_connection(w: &mut dyn Write, c: &ConnectionReport) -> io::Result<()> {
    let what = match (c.kms, &c.skip_reason) {
        (Some(Recognition::Bind), _) => "KMS (recognised by its bind)".to_owned(),
        (Some(Recognition::Request), _) => {
            "KMS (recognised by its first activation request: no bind captured)".to_owned()
        }
        (Some(Recognition::Port), _) => "KMS (forced by --port)".to_owned(),
        (None, Some(reason)) => format!("skipped: {reason}"),
        (None, None) => "skipped".to_owned(),
    };
    writeln!(
        w,
        "\nConnection {}: {} -> {}, {what}",
        c.index, c.client, c.server
    )?;
    let i = "  ";
    line(
        w,
        i,
        "Time (UTC)",
        format!(
            "{} .. {} ({:.3} ms)",
            utc(c.first),
            utc(c.last),
            c.duration_secs * 1000.0
        ),
    )?;
    let t = &c.tcp;
    let fin = match (t.fin_seen.from_client, t.fin_seen.from_server) {
        (true, true) => "FIN from both sides",
        (true, false) => "FIN from the client only",
        (false, true) => "FIN from the server only",
        (false, false) => "no FIN",
    };
    line(
        w,
        i,
        "TCP",
        format!(
            "{}, {fin}, {}; {} bytes from the client, {} from the server",
            if t.syn_seen {
                "SYN seen"
            } else {
                "no SYN (roles inferred)"
            },
            if t.rst_seen { "RST seen" } else { "no RST" },
            t.bytes.from_client,
            t.bytes.from_server
        ),
    )?;
    let dup = t.duplicate_bytes.from_client + t.duplicate_bytes.from_server;
    let conflicts = t.conflicts.from_client + t.conflicts.from_server;
    if dup > 0 || conflicts > 0 {
        line(
            w,
            i,
            "Retransmissions",
            format!(
                "{dup} duplicate bytes; {conflicts} overlaps with different bytes (first copy kept)"
            ),
        )?;
    }
    for g in &c.gaps {
        let records = match (g.record_before, g.record_after) {
            (Some(a), Some(b)) => format!("between records {a} and {b}"),
            (None, Some(b)) => format!("before record {b}"),
            (Some(a), None) => format!("after record {a}"),
            (None, None) => String::new(),
        };
        line(
            w,
            i,
            "GAP",
            format!(
                "{} bytes missing from the {} stream at byte {} ({records})",
                g.len,
                g.from.name(),
                g.offset
            ),
        )?;
    }
    if c.kms.is_none() {
        return Ok(());
    }
    let undecoded = c.undecoded_bytes.from_client + c.undecoded_bytes.from_server;
    line(
        w,
        i,
        "DCE/RPC PDUs",
        format!(
            "{} from the client, {} from the server; {}",
            c.pdus.from_client,
            c.pdus.from_server,
            if undecoded == 0 {
                "every byte framed".to_owned()
            } else {
                format!(
                    "{} bytes from the client and {} from the server NOT decoded",
                    c.undecoded_bytes.from_client, c.undecoded_bytes.from_server
                )
            }
        ),
    )?;
    if let Some(e) = &c.error {
        let record = e
            .record
            .map(|r| format!(" (record {r})"))
            .unwrap_or_default();
        line(
            w,
            i,
            "Decoding stopped",
            format!(
                "{} stream, byte {}{record}: {}",
                e.from.name(),
                e.offset,
                e.message
            ),
        )?;
    }
    for b in &c.binds {
        bind(w, b)?;
    }
    for e in &c.exchanges {
        exchange(w, e)?;
    }
    Ok(())
}

/// Writes what closes a text report: skipped records, the file's problem, the summary table
/// and the exit status.
pub fn text_footer(
    w: &mut dyn Write,
    info: &CaptureInfo,
    summary: &Summary,
    exit: Exit,
) -> io::Result<()> {
    skipped_text(w, info)?;
    if let Some(e) = &info.error {
        let what = match e.kind {
            FileErrorKind::NotACapture => "NOT A CAPTURE",
            FileErrorKind::Damaged => "CAPTURE DAMAGED",
        };
        writeln!(w, "\n{what}: {}", e.message)?;
        if let Some(r) = e.record {
            writeln!(
                w,
                "  everything before packet record {r} is reported; nothing after it"
            )?;
        }
    }
    summary_text(w, summary)?;
    writeln!(w, "\nExit status {} ({})", exit as u8, exit.name())
}

/// Skipped records listed one per line in text, at most; the rest are counted by reason (the
/// JSON report lists the first [`crate::capture::SKIPS_LISTED`]).
pub const SKIPPED_LISTED: usize = 10;

/// Skipped records in text: how many for each reason (most frequent first), then the first
/// [`SKIPPED_LISTED`]: a capture full of fragments would otherwise print a line per record.
fn skipped_text(w: &mut dyn Write, info: &CaptureInfo) -> io::Result<()> {
    let skipped = &info.skipped_records;
    if info.skipped == 0 {
        return Ok(());
    }
    writeln!(w, "\nSkipped packet records: {}", info.skipped)?;
    let mut by_reason: Vec<(&str, usize)> = info
        .skip_reasons
        .iter()
        .map(|(r, n)| (r.as_str(), *n))
        .collect();
    if by_reason.is_empty() {
        // A model built by hand, without the counts: count the listed ones.
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for s in skipped {
            *counts.entry(&s.reason).or_default() += 1;
        }
        by_reason = counts.into_iter().collect();
    }
    by_reason.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (reason, n) in by_reason {
        writeln!(w, "  {n:>8}  {reason}")?;
    }
    if info.skipped > SKIPPED_LISTED {
        writeln!(
            w,
            "  the first {SKIPPED_LISTED} (--json lists up to {}):",
            crate::capture::SKIPS_LISTED
        )?;
    }
    for s in skipped.iter().take(SKIPPED_LISTED) {
        writeln!(w, "  record {:<8} {}", s.record, s.reason)?;
    }
    Ok(())
}

fn summary_text(w: &mut dyn Write, s: &Summary) -> io::Result<()> {
    let i = "  ";
    writeln!(w, "\nSummary")?;
    line(
        w,
        i,
        "Connections",
        format!(
            "{} ({} KMS, {} skipped)",
            s.connections, s.kms_connections, s.skipped_connections
        ),
    )?;
    let o = &s.outcomes;
    line(
        w,
        i,
        "Activation calls",
        format!(
            "{} ({} ok, {} checks failed, {} refused, {} faults, {} undecodable, {} unanswered)",
            s.exchanges, o.ok, o.checks_failed, o.refused, o.fault, o.undecodable, o.unanswered
        ),
    )?;
    line(w, i, "Distinct client machine IDs", s.distinct_cmids)?;
    if !s.hosts.is_empty() {
        writeln!(
            w,
            "\n  {:<46} {:>5} {:>8} {:>9}  {:<13} ePIDs",
            "Host", "conns", "calls", "responses", "count"
        )?;
        for h in &s.hosts {
            let count = match (h.count_min, h.count_max) {
                (Some(a), Some(b)) => format!("{a}..{b}"),
                _ => "-".to_owned(),
            };
            let epids = match h.distinct_epids {
                0 => "-".to_owned(),
                1 => h.epids.join(""),
                n => format!("{n} distinct: {}, ...", h.epids.join(", ")),
            };
            writeln!(
                w,
                "  {:<46} {:>5} {:>8} {:>9}  {count:<13} {epids}",
                h.address.to_string(),
                h.connections,
                h.exchanges,
                h.responses
            )?;
        }
    }
    if !s.clients.is_empty() {
        writeln!(
            w,
            "\n  {:<46} {:>5} {:>8} {:>14}",
            "Client", "conns", "calls", "distinct CMIDs"
        )?;
        for c in &s.clients {
            writeln!(
                w,
                "  {:<46} {:>5} {:>8} {:>14}",
                c.address.to_string(),
                c.connections,
                c.exchanges,
                c.distinct_cmids
            )?;
        }
    }
    if !s.products.is_empty() {
        writeln!(w, "\n  {:<46} {:>8}  application", "Product", "requests")?;
        for p in &s.products {
            let name = if p.product == "unknown SKU" {
                format!("unknown SKU {}", p.sku_id)
            } else {
                p.product.to_owned()
            };
            writeln!(
                w,
                "  {name:<46} {:>8}  {}",
                p.requests,
                p.application.unwrap_or("-")
            )?;
        }
    }
    if !s.versions.is_empty() {
        writeln!(w, "\n  {:<46} {:>8}", "Protocol version", "requests")?;
        for v in &s.versions {
            writeln!(w, "  {:<46} {:>8}", v.name, v.count)?;
        }
    }
    let e = &s.errors;
    if e.is_empty() {
        writeln!(w, "\n  Errors: none")?;
    } else {
        writeln!(w, "\n  {:<14} {:<46} {:>8}", "Errors", "", "count")?;
        for (class, list) in [
            ("failed check", &e.failed_checks),
            ("refusal", &e.refusals),
            ("fault", &e.faults),
            ("problem", &e.problems),
        ] {
            for n in list {
                writeln!(w, "  {class:<14} {:<46} {:>8}", n.name, n.count)?;
            }
        }
    }
    Ok(())
}

/// Writes a collected report as text.
pub fn text(w: &mut dyn Write, file: &str, report: &InspectReport) -> io::Result<()> {
    text_header(w, file, &report.capture)?;
    for c in &report.connections {
        text_connection(w, c)?;
    }
    text_footer(w, &report.capture, &report.summary, report.exit)
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Writes the JSON document piece by piece: [`JsonWriter::begin`], a
/// [`JsonWriter::connection`] per connection, then [`JsonWriter::end`].
#[derive(Debug)]
pub struct JsonWriter {
    first: bool,
}

fn to_io(e: serde_json::Error) -> io::Error {
    io::Error::other(e)
}

impl JsonWriter {
    /// Opens the document: format, file and capture facts.
    pub fn begin(w: &mut dyn Write, file: &str, info: &CaptureInfo) -> io::Result<JsonWriter> {
        write!(w, "{{\"format\":")?;
        serde_json::to_writer(&mut *w, REPORT_FORMAT).map_err(to_io)?;
        write!(w, ",\"file\":")?;
        serde_json::to_writer(&mut *w, file).map_err(to_io)?;
        write!(w, ",\"capture\":")?;
        serde_json::to_writer(&mut *w, info).map_err(to_io)?;
        write!(w, ",\n\"connections\":[")?;
        Ok(JsonWriter { first: true })
    }

    /// Adds one connection (on its own line).
    pub fn connection(&mut self, w: &mut dyn Write, c: &ConnectionReport) -> io::Result<()> {
        w.write_all(if self.first { b"\n" } else { b",\n" })?;
        self.first = false;
        serde_json::to_writer(&mut *w, c).map_err(to_io)
    }

    /// Closes the document with the summary and the exit status.
    pub fn end(self, w: &mut dyn Write, summary: &Summary, exit: Exit) -> io::Result<()> {
        write!(w, "\n],\n\"summary\":")?;
        serde_json::to_writer(&mut *w, summary).map_err(to_io)?;
        writeln!(
            w,
            ",\n\"exit_status\":{},\"exit\":\"{}\"}}",
            exit as u8,
            exit.name()
        )
    }
}

/// Writes a collected report as one JSON document.
pub fn json(w: &mut dyn Write, file: &str, report: &InspectReport) -> io::Result<()> {
    let mut j = JsonWriter::begin(w, file, &report.capture)?;
    for c in &report.connections {
        j.connection(w, c)?;
    }
    j.end(w, &report.summary, report.exit)
}
