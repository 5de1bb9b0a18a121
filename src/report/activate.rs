//! Printing an `activate` report: vlmcs-style blocks, then every check with its verdict.

use std::io::{self, Write};

use crate::activate::{ActivateReport, ExchangeReport, Outcome};
use crate::proto::check::Check;

fn line(w: &mut dyn Write, name: &str, value: impl std::fmt::Display) -> io::Result<()> {
    writeln!(w, "{name:<32}: {value}")
}

fn checks(w: &mut dyn Write, list: &[Check]) -> io::Result<()> {
    for c in list {
        if c.passed {
            writeln!(w, "  pass  {:<20} {}", c.id.name(), c.actual)?;
        } else {
            writeln!(
                w,
                "  FAIL  {:<20} expected {}, got {}",
                c.id.name(),
                c.expected,
                c.actual
            )?;
        }
    }
    Ok(())
}

fn exchange(w: &mut dyn Write, e: &ExchangeReport, total: usize) -> io::Result<()> {
    let r = &e.request;
    writeln!(w, "\nRequest {} of {total}\n", e.index)?;
    line(w, "Protocol version", r.version)?;
    line(
        w,
        "Client is a virtual machine",
        if r.vm_info != 0 { "Yes" } else { "No" },
    )?;
    line(w, "Licensing status", r.license_status)?;
    line(
        w,
        "Remaining time (0 = forever)",
        format!("{} minutes", r.binding_expiration),
    )?;
    line(w, "Application ID", r.app_id)?;
    line(
        w,
        "SKU ID (aka Activation ID)",
        format!("{} ({})", r.sku_id, r.product.unwrap_or("custom product")),
    )?;
    line(w, "KMS ID (aka KMS counted ID)", r.kms_id)?;
    line(w, "Client machine ID", r.cmid)?;
    line(w, "Previous client machine ID", r.previous_cmid)?;
    line(w, "Client request timestamp (UTC)", r.client_time)?;
    line(w, "Workstation name", r.workstation)?;
    line(w, "N count policy (minimum clients)", r.required_clients)?;
    if let Some(b) = &e.bind {
        writeln!(
            w,
            "\nConnected to {}; RPC bind: ... {} ... (association group 0x{:08x})",
            b.address,
            b.accepted.join(" ... "),
            b.assoc_group
        )?;
        checks(w, &b.checks)?;
    }
    if let Some(s) = &e.response {
        let syntax = e.syntax.unwrap_or(crate::wire::ndr::Syntax::Ndr32);
        writeln!(w, "\nResponse from KMS host (over {syntax})\n")?;
        line(
            w,
            "Size of KMS Response",
            format!("{} (0x{:x})", s.size, s.size),
        )?;
        line(w, "Protocol version", s.version)?;
        line(w, "KMS host extended PID", &s.epid)?;
        if let Some(h) = s.hwid_hex() {
            line(w, "KMS host Hardware ID", h)?;
        }
        line(w, "Client machine ID", s.cmid)?;
        line(w, "Client request timestamp (UTC)", s.client_time)?;
        line(w, "KMS host current active clients", s.count)?;
        line(w, "Renewal interval policy", s.renewal_interval)?;
        line(w, "Activation interval policy", s.activation_interval)?;
    }
    if !e.checks.is_empty() {
        writeln!(w, "\nChecks")?;
        checks(w, &e.checks)?;
    }
    let verdict = match e.outcome {
        Outcome::Ok => "ok: every check passed".to_owned(),
        Outcome::ChecksFailed => "FAILED: see the checks above".to_owned(),
        Outcome::Refused => format!(
            "REFUSED: the host returned {}",
            e.hresult.map_or("?".to_owned(), |h| h.to_string())
        ),
        Outcome::Fault | Outcome::Undecodable | Outcome::Rpc => format!(
            "RPC FAILURE: {}",
            e.fault
                .map(|f| format!("{f:#}"))
                .or(e.error.clone())
                .as_deref()
                .unwrap_or("?")
        ),
        Outcome::Unanswered | Outcome::Connection => {
            format!("NO CONNECTION: {}", e.error.as_deref().unwrap_or("?"))
        }
    };
    writeln!(w, "\nResult: {verdict}")?;
    writeln!(w, "Client verdict: {}", e.client_verdict)?;
    if let Some(hint) = e.hresult.and_then(super::hint) {
        writeln!(w, "Hint: {hint}")?;
    }
    Ok(())
}

/// Writes the report as text.
pub fn text(w: &mut dyn Write, report: &ActivateReport) -> io::Result<()> {
    writeln!(w, "Target: {}", report.target)?;
    for e in &report.exchanges {
        exchange(w, e, report.exchanges.len())?;
    }
    let ok = report
        .exchanges
        .iter()
        .filter(|e| e.outcome == Outcome::Ok)
        .count();
    writeln!(
        w,
        "\n{ok} of {} requests ok; exit status {} ({})",
        report.exchanges.len(),
        report.exit_status,
        report.exit
    )
}

/// Writes one line per request (`activate -q`), as vlmcs without `-v` prints one line per
/// activation: the request number, product and protocol version, the outcome, then what the
/// outcome calls for: the count and ePID of a response (after the failed checks' names), the
/// HRESULT of a refusal with its name, the fault or error of anything else.
pub fn quiet(w: &mut dyn Write, report: &ActivateReport) -> io::Result<()> {
    let total = report.exchanges.len();
    for e in &report.exchanges {
        let r = &e.request;
        write!(
            w,
            "{} of {total}  {}  {}  {}",
            e.index,
            r.product.unwrap_or("custom product"),
            r.version,
            e.outcome.name()
        )?;
        let failed: Vec<&str> = (e.checks.iter().chain(e.bind.iter().flat_map(|b| &b.checks)))
            .filter(|c| !c.passed)
            .map(|c| c.id.name())
            .collect();
        // A refusal fails the return value check by definition: only a response that came
        // and failed names its checks.
        if e.outcome == Outcome::ChecksFailed && !failed.is_empty() {
            write!(w, " ({})", failed.join(", "))?;
        }
        if let Some(s) = &e.response {
            write!(w, "  count {}  ePID {}", s.count, s.epid)?;
        } else if let Some(h) = e.hresult {
            write!(w, "  {h}")?;
        } else if let Some(f) = e.fault {
            write!(w, "  {f:#}")?;
        } else if let Some(err) = &e.error {
            write!(w, "  {err}")?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// Writes the report as one JSON document.
pub fn json(w: &mut dyn Write, report: &ActivateReport) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, report).map_err(io::Error::other)?;
    writeln!(w)
}
