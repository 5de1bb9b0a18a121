//! The work of `inspect`: a capture's connections recognised, decoded as conversations and
//! turned into the report model one at a time, with the summary tallied as they go.

use std::net::IpAddr;

use std::collections::HashMap;

use crate::capture::conversation::{ActivationExchange, BindExchange, Decoder, Reply};
use crate::capture::{self, Capture, CaptureError, Connection, Format, Part, Stream};
use crate::catalog;
use crate::exit::Exit;
use crate::proto::check::Checks;
use crate::proto::host::message::decode_request;
use crate::proto::summary::{Outcome, RequestSummary};
use crate::wire::Guid;
use crate::wire::kms::peek_version;
use crate::wire::ndr::ActivationRequest;
use crate::wire::rpc::{
    AckResult, Body, Flags, KMS_INTERFACE, PacketType, Pdu, Request, split_pdu,
};

use super::InspectConfig;
use super::model::*;
use super::tally::{HostTally, Tally};

/// Reads and inspects a whole capture into one report.
pub fn inspect(bytes: &[u8], config: InspectConfig) -> InspectReport {
    let mut inspection = Inspection::new(capture::read(bytes), config);
    let connections: Vec<ConnectionReport> = inspection.by_ref().collect();
    inspection.into_report(connections)
}

/// Reads and inspects a whole capture into one report, handing each connection on in parts of
/// `part_bytes` ([`capture::Reader::in_parts`]) as `inspect --summary` does: the same report as
/// [`inspect`], decoded in memory bounded by the connections open at once.
pub fn inspect_in_parts(bytes: &[u8], config: InspectConfig, part_bytes: usize) -> InspectReport {
    let parts = capture::Reader::new(bytes).in_parts(part_bytes).parts();
    let mut inspection = Inspection::streaming(Capture::default(), 0, parts, config);
    let connections: Vec<ConnectionReport> = inspection.by_ref().collect();
    let reader = &mut inspection.source().0;
    let count = reader.connections();
    let facts = reader.take_capture();
    inspection.set_capture(facts, count);
    inspection.into_report(connections)
}

/// A capture being inspected: an iterator of connection reports, then [`Inspection::finish`]
/// for the summary and exit status.
///
/// The connections come from `I`: a capture already read ([`Inspection::new`]) or a
/// [`capture::Reader`] streaming them from a file ([`Inspection::streaming`]), in which case
/// each connection is forgotten once its report is taken. From a reader in parts
/// ([`capture::Reader::in_parts`]) each part is decoded as it comes and forgotten, and the
/// connection is reported with its last part.
#[derive(Debug)]
pub struct Inspection<I = WholeConnections> {
    config: InspectConfig,
    info: CaptureInfo,
    connections: I,
    index: usize,
    exchanges: usize,
    tally: Tally,
    exit: Exit,
    sku_cache: Option<(Guid, Option<&'static catalog::Sku>)>,
    /// Connections some parts of which were decoded, by [`Part::id`].
    open: HashMap<u64, Open>,
}

/// Connections already read, each one whole part.
pub type WholeConnections = std::iter::Map<
    std::iter::Zip<std::ops::RangeFrom<u64>, std::vec::IntoIter<Connection>>,
    fn((u64, Connection)) -> Part,
>;

/// A connection being decoded part by part.
#[derive(Debug)]
struct Open {
    report: ConnectionReport,
    /// None when it was not recognised as KMS.
    decoder: Option<Decoder>,
    /// Recognition found the roles the other way round; later parts are swapped too.
    swapped: bool,
    /// The last run of each direction's previous part: (stream offset just past it, its
    /// record), for the record before a gap at the start of a part.
    previous: [Option<(usize, usize)>; 2],
}

impl Inspection {
    /// Starts inspecting a capture already read.
    pub fn new(mut capture: Capture, config: InspectConfig) -> Inspection {
        let connections = std::mem::take(&mut capture.connections);
        let count = connections.len();
        let whole: fn((u64, Connection)) -> Part = |(id, conn)| Part {
            id,
            conn,
            last: true,
        };
        let parts = (0..).zip(connections).map(whole);
        Inspection::streaming(capture, count, parts, config)
    }
}

impl<I: Iterator<Item = Part>> Inspection<I> {
    /// Starts inspecting `connections` (`count` of them), of a file whose facts (format,
    /// records, skips, error; its `connections` are ignored) are already known, e.g. from a
    /// first [`capture::Reader::count_only`] pass, so that they can be reported first.
    pub fn streaming(
        capture: Capture,
        count: usize,
        connections: I,
        config: InspectConfig,
    ) -> Inspection<I> {
        let mut inspection = Inspection {
            config,
            info: CaptureInfo::default(),
            connections,
            index: 0,
            exchanges: 0,
            tally: Tally::default(),
            exit: Exit::Success,
            sku_cache: None,
            open: HashMap::new(),
        };
        inspection.set_capture(capture, count);
        inspection
    }

    /// Sets the file's facts (format, records, skips, error) and its connection count: for a
    /// single pass, once the reader has read the whole file and the connections were taken.
    pub fn set_capture(&mut self, capture: Capture, count: usize) {
        let (format, linktype) = match capture.format {
            Some(Format::Pcap { linktype, .. }) => (Some("pcap"), Some(linktype)),
            Some(Format::PcapNg) => (Some("pcapng"), None),
            None => (None, None),
        };
        let error = capture.error.as_ref().map(file_error);
        match error.as_ref().map(|e| e.kind) {
            None => {}
            Some(FileErrorKind::NotACapture) => self.fail(Exit::Usage),
            Some(FileErrorKind::Damaged) => {
                self.tally.problem("capture_file");
                self.fail(Exit::Rpc);
            }
        }
        self.info = CaptureInfo {
            format,
            linktype,
            packets: capture.packets,
            not_tcp: capture.other,
            skipped: capture.skipped,
            skip_reasons: capture.skip_reasons.into_iter().collect(),
            skipped_records: capture
                .skips
                .iter()
                .map(|s| SkippedRecord {
                    record: s.record,
                    reason: s.reason.to_string(),
                })
                .collect(),
            connections: count,
            error,
        };
    }

    /// The source of the connections, e.g. to read a single-pass reader's facts once it ran dry.
    pub fn source(&mut self) -> &mut I {
        &mut self.connections
    }

    /// How the file was read (known before any connection is reported).
    pub fn capture(&self) -> &CaptureInfo {
        &self.info
    }

    /// The exit status so far.
    pub fn exit(&self) -> Exit {
        self.exit
    }

    /// Ends the inspection (connections not yet taken are inspected and dropped): the capture
    /// facts, the summary and the exit status.
    pub fn finish(mut self) -> (CaptureInfo, Summary, Exit) {
        for _ in self.by_ref() {}
        // A capture with no KMS conversation proves nothing: the wrong file was given, and a CI
        // step checking it must not pass (the same status as a file that is not a capture).
        if self.tally.kms_connections == 0 {
            self.fail(Exit::Usage);
        }
        let summary = self.tally.summary();
        (self.info, summary, self.exit)
    }

    /// The whole report, around the connection reports already taken.
    fn into_report(self, connections: Vec<ConnectionReport>) -> InspectReport {
        let (capture, summary, exit) = self.finish();
        InspectReport {
            capture,
            connections,
            summary,
            exit,
        }
    }

    fn sku(&mut self, id: Guid) -> Option<&'static catalog::Sku> {
        match self.sku_cache {
            Some((cached, sku)) if cached == id => sku,
            _ => {
                let sku = catalog::sku(&id);
                self.sku_cache = Some((id, sku));
                sku
            }
        }
    }

    /// Decodes one part; the connection's report once its last part came.
    fn part(&mut self, part: Part) -> Option<ConnectionReport> {
        let Part { id, mut conn, last } = part;
        let mut open = match self.open.remove(&id) {
            Some(mut open) => {
                if open.swapped {
                    swap_roles(&mut conn);
                }
                open.report.last = conn.last_ts;
                open
            }
            None => self.first_part(&mut conn),
        };
        self.add_part(&mut open, &conn);
        if !last {
            self.open.insert(id, open);
            return None;
        }
        Some(self.last_part(open, &conn))
    }

    /// Recognises a connection from its first part and starts its report.
    fn first_part(&mut self, conn: &mut Connection) -> Open {
        let before = (conn.client, conn.server);
        let recognition = recognise(conn, self.config.port);
        let report = ConnectionReport {
            index: 0,
            client: conn.client,
            server: conn.server,
            kms: recognition.as_ref().ok().copied(),
            skip_reason: recognition.as_ref().err().cloned(),
            first: conn.first_ts,
            last: conn.last_ts,
            duration_secs: 0.0,
            tcp: TcpInfo {
                syn_seen: conn.syn_seen,
                fin_seen: Sides::default(),
                rst_seen: false,
                bytes: Sides::default(),
                duplicate_bytes: Sides::default(),
                conflicts: Sides::default(),
            },
            pdus: Sides::default(),
            undecoded_bytes: Sides::default(),
            gaps: Vec::new(),
            binds: Vec::new(),
            exchanges: Vec::new(),
            error: None,
        };
        self.tally.connections += 1;
        let decoder = if recognition.is_ok() {
            self.tally.kms_connections += 1;
            self.tally.hosts.entry(conn.server).or_default().connections += 1;
            self.tally
                .clients
                .entry(conn.client.ip())
                .or_default()
                .connections += 1;
            Some(Decoder::new())
        } else {
            self.tally.skipped += 1;
            None
        };
        Open {
            report,
            decoder,
            swapped: (conn.client, conn.server) != before,
            previous: [None, None],
        }
    }

    /// Counts one part's bytes and gaps, and decodes and tallies what it completes.
    fn add_part(&mut self, open: &mut Open, conn: &Connection) {
        let tcp = &mut open.report.tcp;
        tcp.bytes.from_client += conn.to_server.data.len();
        tcp.bytes.from_server += conn.to_client.data.len();
        tcp.duplicate_bytes.from_client += conn.to_server.duplicate_bytes;
        tcp.duplicate_bytes.from_server += conn.to_client.duplicate_bytes;
        tcp.conflicts.from_client += conn.to_server.conflicts.len();
        tcp.conflicts.from_server += conn.to_client.conflicts.len();
        for (i, (side, stream)) in [
            (Side::Client, &conn.to_server),
            (Side::Server, &conn.to_client),
        ]
        .into_iter()
        .enumerate()
        {
            let previous = open.previous.get(i).copied().flatten();
            for g in &stream.gaps {
                open.report.gaps.push(GapReport {
                    from: side,
                    offset: g.offset,
                    len: g.len,
                    record_before: g.offset.checked_sub(1).and_then(|o| {
                        stream
                            .segment_at(o)
                            .map(|s| s.record)
                            .or_else(|| previous.filter(|&(end, _)| end == g.offset).map(|p| p.1))
                    }),
                    record_after: stream.segment_at(g.offset).map(|s| s.record),
                });
            }
            if let Some(s) = stream.segments.last()
                && let Some(p) = open.previous.get_mut(i)
            {
                *p = Some((s.offset + s.len, s.record));
            }
        }
        let Some(decoder) = open.decoder.as_mut() else {
            return;
        };
        decoder.feed(conn);
        let conv = decoder.conversation();
        // Taken, not drained: a buffer kept per open connection would hold its largest part's
        // exchanges for as long as the connection lasts.
        let mut binds = std::mem::take(&mut conv.binds);
        let mut activations = std::mem::take(&mut conv.activations);
        self.decoded(&mut open.report, conn, &mut binds, &mut activations);
    }

    /// Tallies (and, unless only the summary is wanted, keeps) decoded binds and exchanges.
    fn decoded(
        &mut self,
        report: &mut ConnectionReport,
        conn: &Connection,
        binds: &mut Vec<BindExchange>,
        activations: &mut Vec<ActivationExchange>,
    ) {
        let keep = !self.config.summary_only;
        for b in binds.drain(..) {
            let r = self.bind(&b);
            if keep {
                report.binds.push(r);
            }
        }
        if activations.is_empty() {
            return;
        }
        // Taken out of the table for the part's calls, so that ePIDs already seen are not
        // copied again.
        let mut host = self.tally.hosts.remove(&conn.server).unwrap_or_default();
        if keep {
            report.exchanges.reserve(activations.len());
        }
        for ex in activations.drain(..) {
            let r = self.exchange(ex, &mut host, conn.client.ip());
            if keep {
                report.exchanges.push(r);
            }
        }
        self.tally.hosts.insert(conn.server, host);
    }

    /// Finishes a connection with its last part: what is still undecided (unanswered calls,
    /// the error that stopped decoding), and the report.
    fn last_part(&mut self, mut open: Open, conn: &Connection) -> ConnectionReport {
        self.index += 1;
        let r = &mut open.report;
        r.index = self.index;
        r.last = conn.last_ts;
        r.duration_secs = r.last.saturating_since(r.first).as_secs_f64();
        r.tcp.syn_seen = conn.syn_seen;
        r.tcp.fin_seen = Sides {
            from_client: conn.fin_seen.0,
            from_server: conn.fin_seen.1,
        };
        r.tcp.rst_seen = conn.rst_seen;
        r.undecoded_bytes = r.tcp.bytes;
        let Some(decoder) = open.decoder.take() else {
            return open.report;
        };
        let (conv, record) = decoder.finish();
        let r = &mut open.report;
        r.pdus = Sides {
            from_client: conv.pdus.0,
            from_server: conv.pdus.1,
        };
        r.undecoded_bytes = Sides {
            from_client: r.tcp.bytes.from_client.saturating_sub(conv.framed.0),
            from_server: r.tcp.bytes.from_server.saturating_sub(conv.framed.1),
        };
        for _ in &r.gaps {
            self.tally.problem("gap");
        }
        if !r.gaps.is_empty() {
            self.fail(Exit::Rpc);
        }
        if let Some((direction, e)) = &conv.error {
            let offset = e.offset();
            let side = Side::of(*direction);
            let gap = e.field() == "stream"
                && open
                    .report
                    .gaps
                    .iter()
                    .any(|g| g.from == side && g.offset == offset);
            if !gap {
                self.tally.problem("stream");
            }
            self.fail(Exit::Rpc);
            open.report.error = Some(DecodeProblem {
                from: side,
                offset,
                record,
                gap,
                message: e.to_string(),
            });
        }
        let (mut binds, mut activations) = (conv.binds, conv.activations);
        self.decoded(&mut open.report, conn, &mut binds, &mut activations);
        // Numbered as reported, so that the numbers follow the report's order even when the
        // parts of several connections were decoded interleaved.
        let mut report = open.report;
        for ex in &mut report.exchanges {
            self.exchanges += 1;
            ex.index = self.exchanges;
        }
        report
    }

    fn fail(&mut self, exit: Exit) {
        self.exit = self.exit.worst(exit);
    }

    fn bind(&mut self, b: &BindExchange) -> BindReport {
        let contexts = b
            .offered
            .iter()
            .enumerate()
            .map(|(i, (context_id, syntax))| {
                let res = b.results.get(i);
                ContextReport {
                    context_id: *context_id,
                    offered: syntax.name(),
                    offered_uuid: syntax.uuid,
                    result: res.map(|r| r.result.name().unwrap_or("unknown")),
                    reason: res.map(|r| r.reason),
                    reason_name: res
                        .filter(|r| {
                            matches!(
                                r.result,
                                AckResult::ProviderRejection | AckResult::UserRejection
                            )
                        })
                        .map(|r| r.provider_reason().name().unwrap_or("unknown")),
                }
            })
            .collect();
        for c in b.checks.failed() {
            self.tally.failed_check(c.id);
            self.fail(Exit::ChecksFailed);
        }
        if b.reply.is_none() {
            self.tally.problem("unanswered_bind");
            self.fail(Exit::ChecksFailed);
        } else if b.reply == Some(PacketType::BindNak) {
            self.fail(Exit::ChecksFailed);
        }
        BindReport {
            kind: crate::wire::rpc::pdu_name(b.kind),
            call_id: b.call_id,
            flags: b.flags.0,
            reply: b.reply.map(crate::wire::rpc::pdu_name),
            reply_flags: b.flags.1,
            assoc_group: b.assoc_group,
            contexts,
            accepted: b.accepted(),
            checks: b.checks,
        }
    }

    fn exchange(
        &mut self,
        ex: ActivationExchange,
        host: &mut HostTally,
        client: IpAddr,
    ) -> ExchangeReport {
        self.tally.exchanges += 1;
        host.exchanges += 1;
        let request = match &ex.request {
            Ok(req) => {
                let sku = self.sku(req.base.sku_id);
                Some(RequestSummary::received(req, sku))
            }
            Err(_) => None,
        };
        let request_error = ex.request.as_ref().err().map(ToString::to_string);
        if let Some(r) = &request {
            self.tally.request(r, client);
        }
        let (mut outcome, response, response_checks, hresult, fault, reply_error) = match ex.reply {
            Reply::Response { summary, checks } => {
                (Outcome::Ok, Some(summary), *checks, None, None, None)
            }
            Reply::Refused(h) => (Outcome::Refused, None, Checks::new(), Some(h), None, None),
            Reply::Fault(f) => (Outcome::Fault, None, Checks::new(), None, Some(f), None),
            Reply::Undecodable(e) => (
                Outcome::Undecodable,
                None,
                Checks::new(),
                None,
                None,
                Some(e.to_string()),
            ),
            Reply::Missing => (Outcome::Unanswered, None, Checks::new(), None, None, None),
        };
        // An undecodable request makes the reply undecodable too; say which.
        if request.is_none() && matches!(outcome, Outcome::Undecodable | Outcome::Ok) {
            outcome = Outcome::Undecodable;
        }
        let mut report = ExchangeReport {
            // Set when the connection is reported.
            index: 0,
            call_id: ex.call_id,
            context_id: ex.context_id,
            syntax: ex.syntax,
            syntax_inferred: ex.syntax_inferred,
            fragments: ex.fragments,
            sent_at: ex.sent_at,
            replied_at: ex.replied_at,
            latency_micros: match (ex.sent_at, ex.replied_at) {
                (Some(s), Some(r)) => Some(r.saturating_since(s).as_micros() as u64),
                _ => None,
            },
            request_size: ex.request_len,
            request,
            request_error,
            request_checks: ex.request_checks,
            outcome,
            response,
            hresult,
            fault,
            reply_error,
            rpc_checks: ex.rpc_checks,
            response_checks,
        };
        let mut failed = false;
        for id in report.failed_checks() {
            self.tally.failed_check(id);
            failed = true;
        }
        if report.outcome == Outcome::Ok && failed {
            report.outcome = Outcome::ChecksFailed;
        }
        match report.outcome {
            Outcome::Ok => self.tally.outcomes.ok += 1,
            Outcome::ChecksFailed => {
                self.tally.outcomes.checks_failed += 1;
                self.fail(Exit::ChecksFailed);
            }
            Outcome::Refused => {
                self.tally.outcomes.refused += 1;
                if let Some(h) = report.hresult {
                    *self.tally.refusals.entry(h).or_default() += 1;
                }
                self.fail(Exit::ChecksFailed);
            }
            Outcome::Fault => {
                self.tally.outcomes.fault += 1;
                if let Some(f) = report.fault {
                    *self.tally.faults.entry(u32::from(f)).or_default() += 1;
                }
                self.fail(Exit::ChecksFailed);
            }
            // A capture never ends in `rpc` or `connection` (those are live failures); were one
            // built, it would count with its nearest kin.
            Outcome::Undecodable | Outcome::Rpc => {
                self.tally.outcomes.undecodable += 1;
                self.tally.problem(if report.request.is_none() {
                    "request"
                } else {
                    "reply"
                });
                self.fail(Exit::Rpc);
            }
            Outcome::Unanswered | Outcome::Connection => {
                self.tally.outcomes.unanswered += 1;
                self.tally.problem("unanswered_request");
                self.fail(Exit::ChecksFailed);
            }
        }
        if failed {
            self.fail(Exit::ChecksFailed);
        }
        if let Some(r) = &report.response {
            host.response(r);
        }
        report
    }
}

impl<I: Iterator<Item = Part>> Iterator for Inspection<I> {
    type Item = ConnectionReport;

    fn next(&mut self) -> Option<ConnectionReport> {
        loop {
            let part = self.connections.next()?;
            if let Some(report) = self.part(part) {
                return Some(report);
            }
        }
    }
}

/// What the first PDU of a stream is, for recognition.
enum FirstPdu {
    /// A bind or alter_context naming the KMS interface.
    KmsBind,
    /// A whole activation request (opnum 0) whose stub holds a KMS request: the stream was
    /// captured after its bind.
    KmsRequest,
    /// Something else, described.
    Other(String),
}

fn first_pdu(stream: &Stream) -> FirstPdu {
    let data = &stream.data[..];
    if data.is_empty() {
        return FirstPdu::Other("no data".into());
    }
    if stream.gaps.first().is_some_and(|g| g.offset == 0) {
        return FirstPdu::Other("its first bytes are missing from the capture (a gap)".into());
    }
    let head = || {
        data.iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let pdu = match split_pdu(data) {
        Ok(Some((bytes, _))) => Pdu::parse(bytes),
        Ok(None) => {
            return FirstPdu::Other(format!(
                "{} bytes that are not a whole DCE/RPC PDU (starting {})",
                data.len(),
                head()
            ));
        }
        Err(_) => {
            return FirstPdu::Other(format!("bytes that are not DCE/RPC (starting {})", head()));
        }
    };
    match pdu {
        Err(e) => FirstPdu::Other(format!("a DCE/RPC PDU that does not parse: {e}")),
        Ok(p) => match &p.body {
            Body::Bind(b) | Body::AlterContext(b) => {
                if b.contexts
                    .iter()
                    .any(|c| c.abstract_syntax.uuid == KMS_INTERFACE.uuid)
                {
                    FirstPdu::KmsBind
                } else {
                    let iface = b.contexts.first().map_or_else(
                        || "no interface".to_owned(),
                        |c| {
                            format!(
                                "interface {} v{}.{}",
                                c.abstract_syntax.uuid,
                                c.abstract_syntax.version & 0xffff,
                                c.abstract_syntax.version >> 16
                            )
                        },
                    );
                    FirstPdu::Other(format!("a DCE/RPC bind to {iface}, not KMS"))
                }
            }
            Body::Request(r) if kms_request(p.header.flags, r) => FirstPdu::KmsRequest,
            Body::Request(r) => FirstPdu::Other(format!(
                "a DCE/RPC request, not a bind, nor a whole KMS activation request (opnum {})",
                r.opnum
            )),
            _ => FirstPdu::Other(format!(
                "a DCE/RPC {}, not a bind",
                crate::wire::rpc::pdu_name(p.header.packet_type)
            )),
        },
    }
}

/// Whether a request PDU is a KMS activation call, judged by its content alone: opnum 0, one
/// whole fragment, a stub whose NDR32 or NDR64 counts agree with its length, and in it a KMS
/// request of a known protocol version (4, 5 or 6) that decodes. One PDU is looked at, so the
/// cost is bounded by one fragment (at most one AES decryption).
fn kms_request(flags: Flags, r: &Request<'_>) -> bool {
    /// The KMS interface's only operation, `RequestActivation` (vlmcsd's `KMSServer.idl`).
    const ACTIVATION_OPNUM: u16 = 0;
    /// Protocol versions a real client sends (captures/README.md, observation 6).
    const KNOWN_MAJORS: core::ops::RangeInclusive<u16> = 4..=6;
    if r.opnum != ACTIVATION_OPNUM
        || !flags.contains(Flags::FIRST_FRAG)
        || !flags.contains(Flags::LAST_FRAG)
    {
        return false;
    }
    let Some(stub) = ActivationRequest::infer_syntax(r.stub)
        .and_then(|syntax| ActivationRequest::parse(syntax, r.stub).ok())
    else {
        return false;
    };
    peek_version(stub.body).is_ok_and(|v| KNOWN_MAJORS.contains(&v.major))
        && decode_request(stub.body, None).is_ok()
}

/// Decides whether a connection is KMS, swapping inferred roles when the content or `--port`
/// shows the other side is the host. `Err` holds the reason it is skipped.
fn recognise(conn: &mut Connection, port: Option<u16>) -> Result<Recognition, String> {
    let by_content = |first: &FirstPdu| match first {
        FirstPdu::KmsBind => Some(Recognition::Bind),
        FirstPdu::KmsRequest => Some(Recognition::Request),
        FirstPdu::Other(_) => None,
    };
    let first = first_pdu(&conn.to_server);
    if let Some(r) = by_content(&first) {
        return Ok(r);
    }
    // Without a SYN the roles were guessed from ports; a KMS bind or request flowing the other
    // way or the forced port on the "client" side says the guess was wrong.
    if !conn.syn_seen {
        let other_way = by_content(&first_pdu(&conn.to_client));
        let swap = other_way.is_some()
            || port.is_some_and(|p| conn.client.port() == p && conn.server.port() != p);
        if swap {
            swap_roles(conn);
            return Ok(other_way.unwrap_or(Recognition::Port));
        }
    }
    if port.is_some_and(|p| conn.server.port() == p || conn.client.port() == p) {
        return Ok(Recognition::Port);
    }
    let FirstPdu::Other(what) = first else {
        return Ok(Recognition::Bind);
    };
    let mut reason = format!("not KMS: the client stream starts with {what}");
    if what.contains("not a bind") || what.contains("missing") {
        reason.push_str(&format!(
            " (the capture may begin mid-connection; --port {} forces decoding)",
            conn.server.port()
        ));
    }
    Err(reason)
}

fn swap_roles(conn: &mut Connection) {
    std::mem::swap(&mut conn.client, &mut conn.server);
    std::mem::swap(&mut conn.to_server, &mut conn.to_client);
    conn.fin_seen = (conn.fin_seen.1, conn.fin_seen.0);
}

/// The model of the problem that stopped reading the file.
fn file_error(e: &CaptureError) -> FileError {
    let (kind, record, offset) = match e {
        CaptureError::TooShort { .. }
        | CaptureError::UnknownMagic { .. }
        | CaptureError::UnsupportedLinkType { .. } => (FileErrorKind::NotACapture, None, None),
        CaptureError::Truncated { record, offset, .. }
        | CaptureError::Malformed { record, offset, .. } => {
            (FileErrorKind::Damaged, Some(*record), Some(*offset))
        }
        _ => (FileErrorKind::Damaged, None, None),
    };
    FileError {
        kind,
        record,
        offset,
        message: e.to_string(),
    }
}
