//! `kmsharness inspect`: options, reading the file, and printing as the connections decode.

use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

use clap::Args;

use super::Error;
use crate::capture::{Capture, Part, Parts, Reader};
use crate::exit::Exit;
use crate::inspect::{FileErrorKind, InspectConfig, Inspection, Summary};
use crate::report::inspect::{JsonWriter, text_connection, text_footer, text_header};

const INSPECT_HELP: &str = "\
Every TCP connection whose client stream starts with a DCE/RPC bind to the KMS interface, or \
(a capture that began mid-connection) with a KMS activation request, is decoded, on any port: \
the bind and what the host accepted, every request decrypted and checked as a host would, every \
reply decrypted, verified and named (HRESULT refusals, RPC faults). Without a captured bind, \
NDR32 or NDR64 is inferred from each request stub's counts. Other connections are listed as \
skipped with the reason. A summary table closes the report.

Exit status:
  0  at least one KMS conversation; every KMS exchange decoded and every check passed
  1  the capture shows a failing exchange: a check failed, a refusal, an RPC fault, a rejected
     bind, or a request with no reply
  2  not a capture (too short, bad magic, unsupported link type), or a capture with no KMS
     traffic (one line on stderr says so: the wrong file)
  4  the capture could not be decoded completely: the file is cut short or corrupt (one line on
     stderr names the packet record; everything before it is reported), a gap in a stream, or
     bytes that do not decode as DCE/RPC or KMS
  6  the file cannot be read, or the report cannot be written";

/// Read buffer over the capture file.
const READ_BUFFER: usize = 1 << 16;

/// Finished connections that may wait behind an older one still open, to be printed in
/// first-packet order; past this they are printed in the order they finished, so that one
/// connection open for the whole capture does not make every later one stay in memory.
const MAX_WAITING: usize = 256;

/// Payload bytes a connection holds before what is laid out of it is decoded and forgotten:
/// large enough that ordinary connections come whole, small enough that a connection open for
/// the whole capture does not hold it.
const PART_BYTES: usize = 64 << 10;

/// Options of `inspect`.
#[derive(Debug, Clone, Args)]
#[command(after_help = INSPECT_HELP)]
pub struct InspectOpts {
    /// The capture: pcap or pcapng (Ethernet, Linux cooked SLL/SLL2, BSD loopback or raw IP;
    /// IPv4 and IPv6).
    pub capture: PathBuf,
    /// Also decode connections on this TCP port as KMS, even when their content is not
    /// recognised (neither a bind nor a KMS activation request comes first).
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Print one JSON document (format `kmsharness-inspect/1`, see docs/inspect.md).
    #[arg(long)]
    pub json: bool,
    /// Text: print only the capture header and the summary table (every exchange is still
    /// decoded and verified); for large captures: one pass over the file, in memory that does
    /// not grow with its length or with any connection's.
    #[arg(long, conflicts_with = "json")]
    pub summary: bool,
    /// Also write the report as a self-contained HTML page to FILE: connections, exchanges
    /// over time, hosts, products and errors.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Runs `inspect`: the report on stdout, one line on stderr when the file is unreadable, not a
/// capture, damaged, or holds no KMS traffic.
pub fn main(opts: &InspectOpts) -> Result<Exit, Error> {
    let file = opts.capture.display().to_string();
    super::check_html(opts.html.as_deref())?;
    let open = || {
        std::fs::File::open(&opts.capture)
            .map(|f| BufReader::with_capacity(READ_BUFFER, f))
            .map_err(|e| Error::Read {
                option: None,
                path: opts.capture.clone(),
                source: e,
            })
    };
    let config = InspectConfig {
        port: opts.port,
        summary_only: opts.summary && opts.html.is_none(),
    };
    let mut page = opts.html.as_ref().map(|_| Page::default());
    let inspection = if opts.summary {
        // Nothing is printed before the summary, so one pass does: the file's facts are taken
        // from the reader once it ran dry.
        let mut inspection =
            Inspection::streaming(Capture::default(), 0, parts(open()?, config), config);
        for c in inspection.by_ref() {
            if let Some(page) = page.as_mut() {
                page.keep(&c).map_err(Error::Print)?;
            }
        }
        let reader = &mut inspection.source().0;
        let count = reader.connections();
        let facts = reader.take_capture();
        inspection.set_capture(facts, count);
        inspection
    } else {
        // Two passes over the file, so that memory does not grow with its length and the
        // header (records, connections, skips, damage) still comes before the first
        // connection: the first only counts, keeping no payload; the second decodes each
        // connection as it comes and forgets it once printed.
        let mut first = Reader::new(open()?).count_only().max_waiting(0);
        for _ in first.by_ref() {}
        let count = first.connections();
        let facts = first.into_capture();
        Inspection::streaming(facts, count, parts(open()?, config), config)
    };
    if let Some(e) = &inspection.capture().error {
        match (e.kind, e.record) {
            (FileErrorKind::NotACapture, _) => {
                return Err(Error::Content {
                    path: opts.capture.clone(),
                    message: e.message.clone(),
                });
            }
            (FileErrorKind::Damaged, Some(r)) => super::note(format_args!(
                "kmsharness inspect: {file}: {}; everything before packet record {r} is reported",
                e.message
            )),
            (FileErrorKind::Damaged, None) => {
                super::note(format_args!("kmsharness inspect: {file}: {}", e.message));
            }
        }
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let (exit, summary) = print(
        &mut out,
        &file,
        inspection,
        Output {
            json: opts.json,
            summary_only: opts.summary,
            page: page.as_mut(),
        },
    )
    .and_then(|done| {
        out.flush()?;
        Ok(done)
    })
    .map_err(Error::Print)?;
    if let (Some(path), Some(page)) = (&opts.html, page) {
        let doc = serde_json::json!({
            "format": crate::inspect::REPORT_FORMAT,
            "file": file,
            "capture": page.capture,
            "connections": page.connections,
            "summary": summary,
            "exit_status": exit as u8,
            "exit": exit.name(),
        });
        super::write_html("--html", path, &crate::report::html::inspect(&doc))?;
    }
    if summary.kms_connections == 0 {
        super::note(format_args!(
            "kmsharness inspect: {file}: no KMS traffic ({}, none a KMS conversation)",
            plural(summary.connections, "TCP connection", "TCP connections")
        ));
    }
    Ok(exit)
}

/// The capture's connections: in parts of at most [`PART_BYTES`] when only the summary is
/// wanted (each part decoded, tallied and forgotten), else whole, since a connection's
/// exchanges print together and its payload is far smaller than their reports.
fn parts(file: BufReader<std::fs::File>, config: InspectConfig) -> Parts<BufReader<std::fs::File>> {
    let part_bytes = if config.summary_only {
        PART_BYTES
    } else {
        usize::MAX
    };
    Reader::new(file)
        .max_waiting(MAX_WAITING)
        .in_parts(part_bytes)
        .parts()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What `inspect` writes besides the report on stdout: for `--html`, what its page needs,
/// kept as the connections go by (each cut to what the page shows).
#[derive(Debug, Default)]
struct Page {
    capture: serde_json::Value,
    connections: Vec<serde_json::Value>,
}

impl Page {
    fn keep(&mut self, c: &crate::inspect::ConnectionReport) -> std::io::Result<()> {
        let v = serde_json::to_value(c).map_err(std::io::Error::other)?;
        self.connections
            .push(crate::report::html::slim_connection(&v));
        Ok(())
    }
}

/// How `inspect` prints.
struct Output<'a> {
    json: bool,
    summary_only: bool,
    page: Option<&'a mut Page>,
}

fn print<I: Iterator<Item = Part>>(
    w: &mut dyn Write,
    file: &str,
    mut inspection: Inspection<I>,
    mut out: Output<'_>,
) -> std::io::Result<(Exit, Summary)> {
    if out.json {
        let mut j = JsonWriter::begin(w, file, inspection.capture())?;
        for c in inspection.by_ref() {
            j.connection(w, &c)?;
            if let Some(page) = out.page.as_deref_mut() {
                page.keep(&c)?;
            }
        }
        let (info, summary, exit) = inspection.finish();
        j.end(w, &summary, exit)?;
        if let Some(page) = out.page {
            page.capture = serde_json::to_value(&info).map_err(std::io::Error::other)?;
        }
        Ok((exit, summary))
    } else {
        text_header(w, file, inspection.capture())?;
        for c in inspection.by_ref() {
            if !out.summary_only {
                text_connection(w, &c)?;
            }
            if let Some(page) = out.page.as_deref_mut() {
                page.keep(&c)?;
            }
        }
        let (info, summary, exit) = inspection.finish();
        text_footer(w, &info, &summary, exit)?;
        if let Some(page) = out.page {
            // The capture facts as they stand once every record was read.
            page.capture = serde_json::to_value(&info).map_err(std::io::Error::other)?;
        }
        Ok((exit, summary))
    }
}
