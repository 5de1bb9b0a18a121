//! `inspect`: a capture file explained. Every TCP connection is recognised as KMS by its content
//! (the client's first PDU is a DCE/RPC bind to the KMS interface) or forced by port, decoded as
//! a conversation ([`crate::capture::conversation`]: binds with their acks, requests decrypted
//! and checked as a host would, replies decrypted and verified as a client would), and folded
//! into a per-capture [`Summary`].
//!
//! The work streams connection by connection: [`Inspection`] yields one [`ConnectionReport`] at
//! a time and keeps only the summary's tallies, so the printers can write each connection as it
//! is decoded. [`inspect`] collects everything into one [`InspectReport`].
//!
//! Every report type serializes to its part of the `--json` document (format
//! [`REPORT_FORMAT`]); the field docs below are the schema, and `docs/inspect.md` shows the
//! whole document.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::capture::conversation::{self, ActivationExchange, BindExchange, Reply};
use crate::capture::{
    self, Capture, CaptureError, Connection, Direction, Format, Stream, Timestamp,
};
use crate::catalog;
use crate::cli::exit::Exit;
use crate::proto::checks::{CheckId, Checks};
use crate::wire::kms::{self, FileTime, Version, Workstation};
use crate::wire::ndr::Syntax;
use crate::wire::rpc::{
    AckResult, Body, FaultStatus, Flags, KMS_INTERFACE, PacketType, Pdu, split_pdu,
};
use crate::wire::{Guid, HResult};

/// Format identifier of the `--json` document.
pub const REPORT_FORMAT: &str = "kmsharness-inspect/1";

/// At most this many distinct ePIDs are listed per host in the summary (py-kms makes a new one
/// per request); `distinct_epids` still counts them all.
pub const EPIDS_LISTED: usize = 10;

/// What `inspect` needs besides the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InspectConfig {
    /// Decode connections with this port at either end as KMS even when their client stream
    /// does not start with a KMS bind (a capture that began mid-connection).
    pub port: Option<u16>,
}

// ---------------------------------------------------------------------------------------------
// Report types

/// One end of a connection: who sent the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The client (the side that sent the SYN, or inferred).
    Client,
    /// The server (the KMS host).
    Server,
}

impl Side {
    fn of(direction: Direction) -> Side {
        match direction {
            Direction::ToServer => Side::Client,
            Direction::ToClient => Side::Server,
        }
    }

    /// "client" or "server".
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// A value per direction: what the client sent and what the server sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Sides<T> {
    /// Sent by the client.
    pub from_client: T,
    /// Sent by the server.
    pub from_server: T,
}

/// Why the file is not a capture, or where it is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileErrorKind {
    /// Not a capture this tool reads: too short, bad magic, or an unsupported pcap link type.
    NotACapture,
    /// A capture cut short or corrupt part-way; everything before the damage is reported.
    Damaged,
}

/// The problem that stopped reading the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileError {
    /// `not_a_capture` or `damaged`.
    pub kind: FileErrorKind,
    /// The packet record number (from 1, as Wireshark numbers frames) where the damage is.
    pub record: Option<usize>,
    /// Byte offset in the file where that record or block starts.
    pub offset: Option<usize>,
    /// What is wrong, one line.
    pub message: String,
}

impl FileError {
    fn from_capture(e: &CaptureError) -> FileError {
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
}

/// A packet record left out of reassembly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedRecord {
    /// Packet record number (from 1).
    pub record: usize,
    /// Why (IP fragment, header cut short, unsupported link type...).
    pub reason: String,
}

/// How the file was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureInfo {
    /// `pcap` or `pcapng`; null when the file was not recognised.
    pub format: Option<&'static str>,
    /// The pcap file's link type (LINKTYPE_ value); null for pcapng (per interface).
    pub linktype: Option<u32>,
    /// Packet records read.
    pub packets: usize,
    /// Packet records that were not TCP (ARP, UDP, ICMP...), ignored.
    pub not_tcp: usize,
    /// TCP-like records that could not be used, with the reason.
    pub skipped_records: Vec<SkippedRecord>,
    /// TCP connections found.
    pub connections: usize,
    /// The problem that stopped reading, if the file did not end cleanly.
    pub error: Option<FileError>,
}

/// How a connection was recognised as KMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recognition {
    /// The client's first PDU is a bind (or alter_context) to the KMS interface.
    Bind,
    /// Forced by `--port`.
    Port,
}

/// TCP-level facts of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcpInfo {
    /// The SYN was captured (else the roles were inferred from a SYN-ACK or from ports).
    pub syn_seen: bool,
    /// Each side sent FIN.
    pub fin_seen: Sides<bool>,
    /// Either side sent RST.
    pub rst_seen: bool,
    /// Stream bytes captured per direction (holes excluded).
    pub bytes: Sides<usize>,
    /// Bytes seen again with the same content (retransmissions).
    pub duplicate_bytes: Sides<u64>,
    /// Overlapping segments whose bytes disagreed with the first copy (the first was kept).
    pub conflicts: Sides<usize>,
}

/// A hole in a stream: bytes the sender sent that the capture lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GapReport {
    /// Whose stream has the hole.
    pub from: Side,
    /// Offset in that stream where the hole lies.
    pub offset: usize,
    /// Bytes missing.
    pub len: u64,
    /// Packet record carrying the last byte before the hole (null at the stream start).
    pub record_before: Option<usize>,
    /// Packet record carrying the first byte after it (null at the stream end).
    pub record_after: Option<usize>,
}

/// Why decoding a stream stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecodeProblem {
    /// Whose stream.
    pub from: Side,
    /// Offset in that stream.
    pub offset: usize,
    /// Packet record holding that byte, when there is one.
    pub record: Option<usize>,
    /// True when the stop is a gap in the capture rather than bytes that do not decode.
    pub gap: bool,
    /// What is wrong.
    pub message: String,
}

/// One proposed presentation context and the host's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ContextReport {
    /// Context id.
    pub context_id: u16,
    /// The first transfer syntax offered: `NDR32`, `NDR64`, `BTFN`, or `unknown`.
    pub offered: &'static str,
    /// Its UUID.
    pub offered_uuid: Guid,
    /// `acceptance`, `user_rejection`, `provider_rejection`, `negotiate_ack`, `unknown`; null
    /// without an answer.
    pub result: Option<&'static str>,
    /// The raw reason field: a rejection reason, or the feature bits of a `negotiate_ack`.
    pub reason: Option<u16>,
    /// The rejection reason's name (`abstract_syntax_not_supported`,
    /// `proposed_transfer_syntaxes_not_supported`, `local_limit_exceeded`, `not_specified`).
    pub reason_name: Option<&'static str>,
}

/// A bind or alter_context and what the host answered.
#[derive(Debug, Clone, Serialize)]
pub struct BindReport {
    /// `bind` or `alter_context`.
    pub kind: &'static str,
    /// Call id.
    pub call_id: u32,
    /// Header flags, e.g. `0x13 (FIRST_FRAG|LAST_FRAG|CONC_MPX)`.
    #[serde(serialize_with = "ser::debug")]
    pub flags: Flags,
    /// `bind_ack`, `alter_context_resp`, `bind_nak`, or null when unanswered.
    pub reply: Option<&'static str>,
    /// The answer's header flags.
    #[serde(serialize_with = "ser::opt_debug")]
    pub reply_flags: Option<Flags>,
    /// Association group the host assigned.
    pub assoc_group: Option<u32>,
    /// Every proposed context with its result.
    pub contexts: Vec<ContextReport>,
    /// What the host accepted, in order, as vlmcs prints it: `NDR64`, `BTFN`, `NDR32`.
    pub accepted: Vec<&'static str>,
    /// RPC checks on the answer (`id`, `passed`, `expected`, `actual`).
    pub checks: Checks,
}

/// Every field of a decoded KMS request, with catalog names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RequestReport {
    /// Message format from the envelope's major version: `V4`, `V5` or `V6`.
    pub message_format: kms::Format,
    /// Protocol version in the envelope (V5/V6) or base (V4), e.g. `6.0`.
    #[serde(serialize_with = "ser::display")]
    pub version: Version,
    /// Version inside the (decrypted) request base.
    #[serde(serialize_with = "ser::display")]
    pub base_version: Version,
    /// The VM field (1 = the client is a virtual machine).
    pub vm_info: u32,
    /// License status (0 unlicensed, 1 licensed, 2 OOB grace, 3 OOT grace, 4 non-genuine
    /// grace, 5 notification, 6 extended grace).
    pub license_status: u32,
    /// Its name, when in range.
    pub license_status_name: Option<&'static str>,
    /// Minutes left in the current license state.
    pub binding_expiration: u32,
    /// Application ID.
    pub app_id: Guid,
    /// Its name from the catalog (`Windows`, `Office 2010`, `Office 2013 and later`).
    pub application: Option<&'static str>,
    /// SKU (activation) ID.
    pub sku_id: Guid,
    /// The edition's name from the catalog.
    pub product: Option<&'static str>,
    /// KMS counted ID.
    pub kms_id: Guid,
    /// The product group's name from the catalog.
    pub kms_item: Option<&'static str>,
    /// Client machine ID.
    pub cmid: Guid,
    /// Previous client machine ID.
    pub previous_cmid: Guid,
    /// Client time, UTC, `YYYY-MM-DD HH:MM:SS`.
    #[serde(serialize_with = "ser::display")]
    pub client_time: FileTime,
    /// The same as a raw FILETIME (100 ns ticks since 1601).
    #[serde(serialize_with = "ser::filetime_raw")]
    pub client_time_filetime: FileTime,
    /// Workstation name.
    #[serde(serialize_with = "ser::display")]
    pub workstation: Workstation,
    /// Required client count (N count policy).
    pub required_clients: u32,
    /// The IV as sent (V5/V6), hex.
    #[serde(serialize_with = "ser::opt_hex")]
    pub iv: Option<[u8; 16]>,
    /// The MAC as sent (V4), hex.
    #[serde(serialize_with = "ser::opt_hex")]
    pub mac: Option<[u8; 16]>,
}

/// A decoded KMS response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseReport {
    /// Length of the KMS response, bytes.
    pub size: usize,
    /// Protocol version.
    #[serde(serialize_with = "ser::display")]
    pub version: Version,
    /// The host's extended PID.
    pub epid: String,
    /// Hardware ID (V6), hex upper-case as vlmcs prints it.
    #[serde(serialize_with = "ser::opt_hex_upper")]
    pub hwid: Option<[u8; 8]>,
    /// Echoed client machine ID.
    pub cmid: Guid,
    /// Echoed client time, UTC.
    #[serde(serialize_with = "ser::display")]
    pub client_time: FileTime,
    /// The host's current count of activated clients.
    pub count: u32,
    /// Renewal interval, minutes.
    pub renewal_interval: u32,
    /// Activation interval, minutes.
    pub activation_interval: u32,
}

/// How one activation call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A response came and every check (request, RPC, response) passed.
    Ok,
    /// A response came but a check failed.
    ChecksFailed,
    /// The host returned an HRESULT instead of a response.
    Refused,
    /// The host answered with an RPC fault.
    Fault,
    /// The request or the reply could not be decoded.
    Undecodable,
    /// No reply in the capture.
    Unanswered,
}

impl Outcome {
    /// The snake_case name used in JSON and text.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ChecksFailed => "checks_failed",
            Outcome::Refused => "refused",
            Outcome::Fault => "fault",
            Outcome::Undecodable => "undecodable",
            Outcome::Unanswered => "unanswered",
        }
    }
}

/// One activation call: the request, the reply and every check.
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeReport {
    /// 1-based number over the whole capture, in connection order then call order.
    pub index: usize,
    /// Call id.
    pub call_id: u32,
    /// Presentation context of the request.
    pub context_id: u16,
    /// Its transfer syntax, `NDR32` or `NDR64`; null when no bind in the capture accepted it.
    #[serde(serialize_with = "ser::opt_syntax")]
    pub syntax: Option<Syntax>,
    /// Fragments the request came in.
    pub fragments: usize,
    /// When the request was captured (RFC 3339, UTC).
    #[serde(serialize_with = "ser::opt_ts")]
    pub sent_at: Option<Timestamp>,
    /// When the reply was captured.
    #[serde(serialize_with = "ser::opt_ts")]
    pub replied_at: Option<Timestamp>,
    /// Time from request to reply, microseconds.
    pub latency_micros: Option<u64>,
    /// Length of the KMS request, bytes.
    pub request_size: usize,
    /// The decoded request; null when it could not be decoded.
    pub request: Option<RequestReport>,
    /// Why the request could not be decoded.
    pub request_error: Option<String>,
    /// The host-side checks on the request.
    pub request_checks: Checks,
    /// How the call ended.
    pub outcome: Outcome,
    /// The decoded response.
    pub response: Option<ResponseReport>,
    /// The HRESULT of a refusal, with its name, e.g. `0x8007000D (ERROR_INVALID_DATA)`.
    #[serde(serialize_with = "ser::opt_display")]
    pub hresult: Option<HResult>,
    /// The status of an RPC fault, with its name, e.g. `OpRangeError (0x1C010002)`.
    #[serde(serialize_with = "ser::opt_fault")]
    pub fault: Option<FaultStatus>,
    /// Why the reply could not be decoded.
    pub reply_error: Option<String>,
    /// RPC checks on the reply.
    pub rpc_checks: Checks,
    /// KMS checks on the response (empty without a response).
    pub response_checks: Checks,
}

impl ExchangeReport {
    /// Every failed check of the exchange: request, RPC, response.
    pub fn failed_checks(&self) -> impl Iterator<Item = CheckId> + '_ {
        self.request_checks
            .failed()
            .chain(self.rpc_checks.failed())
            .chain(self.response_checks.failed())
            .map(|c| c.id)
    }
}

/// One TCP connection, decoded or skipped.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionReport {
    /// 1-based, in the order of each connection's first packet.
    pub index: usize,
    /// Client address.
    pub client: SocketAddr,
    /// Server address.
    pub server: SocketAddr,
    /// How it was recognised as KMS (`bind` or `port`); null when skipped.
    pub kms: Option<Recognition>,
    /// Why it was not decoded as KMS; null when it was.
    pub skip_reason: Option<String>,
    /// First packet (RFC 3339, UTC).
    #[serde(serialize_with = "ser::ts")]
    pub first: Timestamp,
    /// Last packet.
    #[serde(serialize_with = "ser::ts")]
    pub last: Timestamp,
    /// From first to last packet, seconds.
    pub duration_secs: f64,
    /// TCP facts.
    pub tcp: TcpInfo,
    /// DCE/RPC PDUs framed per direction.
    pub pdus: Sides<usize>,
    /// Stream bytes not covered by framed PDUs, per direction (0 for a clean decode).
    pub undecoded_bytes: Sides<usize>,
    /// Holes in the streams.
    pub gaps: Vec<GapReport>,
    /// Binds and alter_contexts.
    pub binds: Vec<BindReport>,
    /// Activation calls.
    pub exchanges: Vec<ExchangeReport>,
    /// The first problem that stopped decoding (a gap or undecodable bytes), if any.
    pub error: Option<DecodeProblem>,
}

/// Per host (server address) in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostSummary {
    /// The host's address.
    pub address: SocketAddr,
    /// KMS connections to it.
    pub connections: usize,
    /// Activation calls.
    pub exchanges: usize,
    /// Calls answered with a KMS response.
    pub responses: usize,
    /// Lowest count it reported.
    pub count_min: Option<u32>,
    /// Highest count it reported.
    pub count_max: Option<u32>,
    /// Distinct ePIDs it sent.
    pub distinct_epids: usize,
    /// The first [`EPIDS_LISTED`] of them, sorted.
    pub epids: Vec<String>,
}

/// Per client address in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientSummary {
    /// The client's IP address (ports vary per connection).
    pub address: IpAddr,
    /// KMS connections from it.
    pub connections: usize,
    /// Activation calls.
    pub exchanges: usize,
    /// Distinct client machine IDs in its requests.
    pub distinct_cmids: usize,
}

/// Requests per product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductCount {
    /// SKU ID.
    pub sku_id: Guid,
    /// Edition name, or `unknown SKU` when the catalog does not know it.
    pub product: &'static str,
    /// Application name, when known.
    pub application: Option<&'static str>,
    /// Requests.
    pub requests: usize,
}

/// A name and how often it occurred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedCount {
    /// What (a check name, an HRESULT, a fault status, a problem class, a version).
    pub name: String,
    /// How often.
    pub count: usize,
}

/// Everything that went wrong, by class.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ErrorSummary {
    /// Failed checks by check name (request, bind, RPC and response checks).
    pub failed_checks: Vec<NamedCount>,
    /// HRESULT refusals by code.
    pub refusals: Vec<NamedCount>,
    /// RPC faults by status.
    pub faults: Vec<NamedCount>,
    /// Other problems by class: `capture_file` (the file is damaged), `gap`, `stream` (bytes
    /// that do not frame or parse as DCE/RPC), `request` and `reply` (undecodable KMS
    /// messages), `unanswered_request`, `unanswered_bind`.
    pub problems: Vec<NamedCount>,
}

impl ErrorSummary {
    /// Whether nothing went wrong.
    pub fn is_empty(&self) -> bool {
        self.failed_checks.is_empty()
            && self.refusals.is_empty()
            && self.faults.is_empty()
            && self.problems.is_empty()
    }
}

/// Count of calls per outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct OutcomeCounts {
    /// Answered, every check passed.
    pub ok: usize,
    /// Answered, a check failed.
    pub checks_failed: usize,
    /// HRESULT refusals.
    pub refused: usize,
    /// RPC faults.
    pub fault: usize,
    /// Undecodable request or reply.
    pub undecodable: usize,
    /// No reply captured.
    pub unanswered: usize,
}

/// The per-capture summary table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// TCP connections.
    pub connections: usize,
    /// Decoded as KMS.
    pub kms_connections: usize,
    /// Skipped as not KMS.
    pub skipped_connections: usize,
    /// Activation calls.
    pub exchanges: usize,
    /// Calls per outcome.
    pub outcomes: OutcomeCounts,
    /// Hosts (server addresses), sorted.
    pub hosts: Vec<HostSummary>,
    /// Clients (IP addresses), sorted.
    pub clients: Vec<ClientSummary>,
    /// Distinct client machine IDs over the capture.
    pub distinct_cmids: usize,
    /// Requests per product, most requested first.
    pub products: Vec<ProductCount>,
    /// Requests per protocol version (`name` is the version, e.g. `6.0`).
    pub versions: Vec<NamedCount>,
    /// What went wrong.
    pub errors: ErrorSummary,
}

/// A whole capture inspected, collected.
#[derive(Debug, Clone)]
pub struct InspectReport {
    /// How the file was read.
    pub capture: CaptureInfo,
    /// Every connection.
    pub connections: Vec<ConnectionReport>,
    /// The summary.
    pub summary: Summary,
    /// The exit status the capture calls for.
    pub exit: Exit,
}

impl InspectReport {
    /// Every exchange, in order.
    pub fn exchanges(&self) -> impl Iterator<Item = &ExchangeReport> {
        self.connections.iter().flat_map(|c| &c.exchanges)
    }
}

// ---------------------------------------------------------------------------------------------
// The work

/// Reads and inspects a whole capture into one report.
pub fn inspect(bytes: &[u8], config: InspectConfig) -> InspectReport {
    let mut inspection = Inspection::new(capture::read(bytes), config);
    let connections: Vec<ConnectionReport> = inspection.by_ref().collect();
    let (capture, summary, exit) = inspection.finish();
    InspectReport {
        capture,
        connections,
        summary,
        exit,
    }
}

/// A capture being inspected: an iterator of connection reports, then [`Inspection::finish`]
/// for the summary and exit status.
#[derive(Debug)]
pub struct Inspection {
    config: InspectConfig,
    info: CaptureInfo,
    connections: std::vec::IntoIter<Connection>,
    index: usize,
    exchanges: usize,
    tally: Tally,
    exit: Exit,
    sku_cache: Option<(Guid, Option<&'static catalog::Sku>)>,
}

impl Inspection {
    /// Starts inspecting a capture already read.
    pub fn new(capture: Capture, config: InspectConfig) -> Inspection {
        let (format, linktype) = match capture.format {
            Some(Format::Pcap { linktype, .. }) => (Some("pcap"), Some(linktype)),
            Some(Format::PcapNg) => (Some("pcapng"), None),
            None => (None, None),
        };
        let error = capture.error.as_ref().map(FileError::from_capture);
        let exit = match error.as_ref().map(|e| e.kind) {
            None => Exit::Success,
            Some(FileErrorKind::NotACapture) => Exit::Usage,
            Some(FileErrorKind::Damaged) => Exit::Rpc,
        };
        let mut tally = Tally::default();
        if error
            .as_ref()
            .is_some_and(|e| e.kind == FileErrorKind::Damaged)
        {
            tally.problem("capture_file");
        }
        let info = CaptureInfo {
            format,
            linktype,
            packets: capture.packets,
            not_tcp: capture.other,
            skipped_records: capture
                .skips
                .iter()
                .map(|s| SkippedRecord {
                    record: s.record,
                    reason: s.reason.to_string(),
                })
                .collect(),
            connections: capture.connections.len(),
            error,
        };
        Inspection {
            config,
            info,
            connections: capture.connections.into_iter(),
            index: 0,
            exchanges: 0,
            tally,
            exit,
            sku_cache: None,
        }
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
        let summary = self.tally.summary();
        (self.info, summary, self.exit)
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

    fn connection(&mut self, mut conn: Connection) -> ConnectionReport {
        self.index += 1;
        let recognition = recognise(&mut conn, self.config.port);
        let mut report = ConnectionReport {
            index: self.index,
            client: conn.client,
            server: conn.server,
            kms: recognition.as_ref().ok().copied(),
            skip_reason: recognition.as_ref().err().cloned(),
            first: conn.first_ts,
            last: conn.last_ts,
            duration_secs: conn.last_ts.saturating_since(conn.first_ts).as_secs_f64(),
            tcp: TcpInfo {
                syn_seen: conn.syn_seen,
                fin_seen: Sides {
                    from_client: conn.fin_seen.0,
                    from_server: conn.fin_seen.1,
                },
                rst_seen: conn.rst_seen,
                bytes: sides(&conn, |s| s.data.len()),
                duplicate_bytes: sides(&conn, |s| s.duplicate_bytes),
                conflicts: sides(&conn, |s| s.conflicts.len()),
            },
            pdus: Sides::default(),
            undecoded_bytes: sides(&conn, |s| s.data.len()),
            gaps: gaps(&conn),
            binds: Vec::new(),
            exchanges: Vec::new(),
            error: None,
        };
        self.tally.connections += 1;
        if recognition.is_err() {
            self.tally.skipped += 1;
            return report;
        }
        self.tally.kms_connections += 1;
        let conv = conversation::decode(&conn);
        report.pdus = Sides {
            from_client: conv.pdus.0,
            from_server: conv.pdus.1,
        };
        report.undecoded_bytes = Sides {
            from_client: conn.to_server.data.len().saturating_sub(conv.framed.0),
            from_server: conn.to_client.data.len().saturating_sub(conv.framed.1),
        };
        for _ in &report.gaps {
            self.tally.problem("gap");
        }
        if !report.gaps.is_empty() {
            self.fail(Exit::Rpc);
        }
        if let Some((direction, e)) = &conv.error {
            let stream = conn.stream(*direction);
            let offset = e.offset();
            let gap = stream.gaps.iter().any(|g| g.offset == offset) && e.field() == "stream";
            if !gap {
                self.tally.problem("stream");
            }
            self.fail(Exit::Rpc);
            report.error = Some(DecodeProblem {
                from: Side::of(*direction),
                offset,
                record: stream
                    .segment_at(offset)
                    .or_else(|| offset.checked_sub(1).and_then(|o| stream.segment_at(o)))
                    .map(|s| s.record),
                gap,
                message: e.to_string(),
            });
        }
        report.binds = conv.binds.iter().map(|b| self.bind(b)).collect();
        // Taken out of the table for the connection's calls, so that ePIDs already seen are
        // not copied again.
        let mut host = self.tally.hosts.remove(&conn.server).unwrap_or_default();
        host.connections += 1;
        let client = self.tally.clients.entry(conn.client.ip()).or_default();
        client.connections += 1;
        report.exchanges.reserve_exact(conv.activations.len());
        for ex in conv.activations {
            let r = self.exchange(ex, &mut host, conn.client.ip());
            report.exchanges.push(r);
        }
        self.tally.hosts.insert(conn.server, host);
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
        self.exchanges += 1;
        self.tally.exchanges += 1;
        host.exchanges += 1;
        let request = match &ex.request {
            Ok(req) => {
                let sku = self.sku(req.base.sku_id);
                Some(RequestReport {
                    message_format: req.format,
                    version: req.version,
                    base_version: req.base.version,
                    vm_info: req.base.vm_info,
                    license_status: req.base.license_status,
                    license_status_name: license_status_name(req.base.license_status),
                    binding_expiration: req.base.binding_expiration,
                    app_id: req.base.app_id,
                    application: sku
                        .and_then(|s| s.application())
                        .filter(|a| a.id == req.base.app_id)
                        .or_else(|| catalog::application(&req.base.app_id))
                        .map(|a| a.name),
                    sku_id: req.base.sku_id,
                    product: sku.map(|s| s.name),
                    kms_id: req.base.kms_id,
                    kms_item: sku
                        .and_then(|s| s.kms_item())
                        .filter(|k| k.id == req.base.kms_id)
                        .or_else(|| catalog::kms_item(&req.base.kms_id))
                        .map(|k| k.name),
                    cmid: req.base.cmid,
                    previous_cmid: req.base.previous_cmid,
                    client_time: req.base.client_time,
                    client_time_filetime: req.base.client_time,
                    workstation: req.base.workstation,
                    required_clients: req.base.required_clients,
                    iv: (req.format != kms::Format::V4).then_some(req.iv),
                    mac: req.mac,
                })
            }
            Err(_) => None,
        };
        let request_error = ex.request.as_ref().err().map(ToString::to_string);
        if let Some(r) = &request {
            self.tally.request(r, client);
        }
        let (mut outcome, response, response_checks, hresult, fault, reply_error) = match ex.reply {
            Reply::Response { summary, checks } => (
                Outcome::Ok,
                Some(ResponseReport {
                    size: summary.size,
                    version: summary.version,
                    epid: summary.epid,
                    hwid: summary.hwid,
                    cmid: summary.cmid,
                    client_time: summary.client_time,
                    count: summary.count,
                    renewal_interval: summary.renewal_interval,
                    activation_interval: summary.activation_interval,
                }),
                *checks,
                None,
                None,
                None,
            ),
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
            index: self.exchanges,
            call_id: ex.call_id,
            context_id: ex.context_id,
            syntax: ex.syntax,
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
            Outcome::Undecodable => {
                self.tally.outcomes.undecodable += 1;
                self.tally.problem(if report.request.is_none() {
                    "request"
                } else {
                    "reply"
                });
                self.fail(Exit::Rpc);
            }
            Outcome::Unanswered => {
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

impl Iterator for Inspection {
    type Item = ConnectionReport;

    fn next(&mut self) -> Option<ConnectionReport> {
        let conn = self.connections.next()?;
        Some(self.connection(conn))
    }
}

fn sides<T>(conn: &Connection, f: impl Fn(&Stream) -> T) -> Sides<T> {
    Sides {
        from_client: f(&conn.to_server),
        from_server: f(&conn.to_client),
    }
}

fn gaps(conn: &Connection) -> Vec<GapReport> {
    let mut out = Vec::new();
    for (side, stream) in [
        (Side::Client, &conn.to_server),
        (Side::Server, &conn.to_client),
    ] {
        for g in &stream.gaps {
            out.push(GapReport {
                from: side,
                offset: g.offset,
                len: g.len,
                record_before: g
                    .offset
                    .checked_sub(1)
                    .and_then(|o| stream.segment_at(o))
                    .map(|s| s.record),
                record_after: stream.segment_at(g.offset).map(|s| s.record),
            });
        }
    }
    out
}

/// What the first PDU of a stream is, for recognition.
enum FirstPdu {
    /// A bind or alter_context naming the KMS interface.
    KmsBind,
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
            _ => FirstPdu::Other(format!(
                "a DCE/RPC {}, not a bind",
                crate::wire::rpc::pdu_name(p.header.packet_type)
            )),
        },
    }
}

/// Decides whether a connection is KMS, swapping inferred roles when the content or `--port`
/// shows the other side is the host. `Err` holds the reason it is skipped.
fn recognise(conn: &mut Connection, port: Option<u16>) -> Result<Recognition, String> {
    let first = first_pdu(&conn.to_server);
    if matches!(first, FirstPdu::KmsBind) {
        return Ok(Recognition::Bind);
    }
    // Without a SYN the roles were guessed from ports; a KMS bind flowing the other way or the
    // forced port on the "client" side says the guess was wrong.
    if !conn.syn_seen {
        let swap = matches!(first_pdu(&conn.to_client), FirstPdu::KmsBind)
            || port.is_some_and(|p| conn.client.port() == p && conn.server.port() != p);
        if swap {
            swap_roles(conn);
            return Ok(if matches!(first_pdu(&conn.to_server), FirstPdu::KmsBind) {
                Recognition::Bind
            } else {
                Recognition::Port
            });
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
            " (the capture may begin mid-connection; --port {} decodes it)",
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

// ---------------------------------------------------------------------------------------------
// Names

/// The name of a license status value.
pub fn license_status_name(s: u32) -> Option<&'static str> {
    Some(match s {
        0 => "unlicensed",
        1 => "licensed",
        2 => "OOB grace",
        3 => "OOT grace",
        4 => "non-genuine grace",
        5 => "notification",
        6 => "extended grace",
        _ => return None,
    })
}

/// A capture timestamp in UTC: `2026-11-24 03:50:13.123456` (microseconds, or nanoseconds when
/// the capture has them); with `rfc3339`, `2026-11-24T03:50:13.123456Z`.
#[derive(Debug, Clone, Copy)]
pub struct Utc {
    /// The instant.
    pub ts: Timestamp,
    /// RFC 3339 form (`T` and `Z`).
    pub rfc3339: bool,
}

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s) = FileTime::from_unix_secs(self.ts.secs).to_utc();
        let sep = if self.rfc3339 { 'T' } else { ' ' };
        write!(f, "{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}")?;
        if self.ts.nanos.is_multiple_of(1000) {
            write!(f, ".{:06}", self.ts.nanos / 1000)?;
        } else {
            write!(f, ".{:09}", self.ts.nanos)?;
        }
        if self.rfc3339 {
            f.write_str("Z")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Summary

#[derive(Debug, Default)]
struct HostTally {
    connections: usize,
    exchanges: usize,
    responses: usize,
    count_min: Option<u32>,
    count_max: Option<u32>,
    epids: BTreeSet<String>,
}

impl HostTally {
    fn response(&mut self, r: &ResponseReport) {
        self.responses += 1;
        self.count_min = Some(self.count_min.map_or(r.count, |m| m.min(r.count)));
        self.count_max = Some(self.count_max.map_or(r.count, |m| m.max(r.count)));
        if !self.epids.contains(&r.epid) {
            self.epids.insert(r.epid.clone());
        }
    }
}

#[derive(Debug, Default)]
struct ClientTally {
    connections: usize,
    exchanges: usize,
    cmids: HashSet<Guid>,
}

#[derive(Debug, Default)]
struct Tally {
    connections: usize,
    kms_connections: usize,
    skipped: usize,
    exchanges: usize,
    outcomes: OutcomeCounts,
    hosts: BTreeMap<SocketAddr, HostTally>,
    clients: BTreeMap<IpAddr, ClientTally>,
    cmids: HashSet<Guid>,
    products: HashMap<Guid, usize>,
    versions: BTreeMap<Version, usize>,
    failed_checks: BTreeMap<CheckId, usize>,
    refusals: BTreeMap<HResult, usize>,
    faults: BTreeMap<u32, usize>,
    problems: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn problem(&mut self, what: &'static str) {
        *self.problems.entry(what).or_default() += 1;
    }

    fn failed_check(&mut self, id: CheckId) {
        *self.failed_checks.entry(id).or_default() += 1;
    }

    fn request(&mut self, r: &RequestReport, client: IpAddr) {
        let c = self.clients.entry(client).or_default();
        c.exchanges += 1;
        c.cmids.insert(r.cmid);
        self.cmids.insert(r.cmid);
        *self.products.entry(r.sku_id).or_default() += 1;
        *self.versions.entry(r.version).or_default() += 1;
    }

    fn summary(&mut self) -> Summary {
        let named = |name: String, count: usize| NamedCount { name, count };
        let mut products: Vec<ProductCount> = self
            .products
            .iter()
            .map(|(id, n)| {
                let sku = catalog::sku(id);
                ProductCount {
                    sku_id: *id,
                    product: sku.map_or("unknown SKU", |s| s.name),
                    application: sku.and_then(|s| s.application()).map(|a| a.name),
                    requests: *n,
                }
            })
            .collect();
        products.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then(a.product.cmp(b.product))
                .then(a.sku_id.cmp(&b.sku_id))
        });
        Summary {
            connections: self.connections,
            kms_connections: self.kms_connections,
            skipped_connections: self.skipped,
            exchanges: self.exchanges,
            outcomes: self.outcomes,
            hosts: self
                .hosts
                .iter()
                .map(|(addr, h)| HostSummary {
                    address: *addr,
                    connections: h.connections,
                    exchanges: h.exchanges,
                    responses: h.responses,
                    count_min: h.count_min,
                    count_max: h.count_max,
                    distinct_epids: h.epids.len(),
                    epids: h.epids.iter().take(EPIDS_LISTED).cloned().collect(),
                })
                .collect(),
            clients: self
                .clients
                .iter()
                .map(|(addr, c)| ClientSummary {
                    address: *addr,
                    connections: c.connections,
                    exchanges: c.exchanges,
                    distinct_cmids: c.cmids.len(),
                })
                .collect(),
            distinct_cmids: self.cmids.len(),
            products,
            versions: self
                .versions
                .iter()
                .map(|(v, n)| named(v.to_string(), *n))
                .collect(),
            errors: ErrorSummary {
                failed_checks: self
                    .failed_checks
                    .iter()
                    .map(|(id, n)| named(id.name().to_owned(), *n))
                    .collect(),
                refusals: self
                    .refusals
                    .iter()
                    .map(|(h, n)| named(h.to_string(), *n))
                    .collect(),
                faults: self
                    .faults
                    .iter()
                    .map(|(f, n)| named(format!("{:#}", FaultStatus::from(*f)), *n))
                    .collect(),
                problems: self
                    .problems
                    .iter()
                    .map(|(p, n)| named((*p).to_owned(), *n))
                    .collect(),
            },
        }
    }
}

/// serde helpers: the JSON forms of wire values.
mod ser {
    use std::fmt::{Debug, Display};

    use serde::Serializer;

    use crate::capture::Timestamp;
    use crate::wire::kms::FileTime;
    use crate::wire::ndr::Syntax;
    use crate::wire::rpc::FaultStatus;

    pub fn display<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn opt_display<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn debug<T: Debug, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:?}"))
    }

    pub fn opt_debug<T: Debug, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => debug(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn filetime_raw<S: Serializer>(v: &FileTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.0)
    }

    pub fn ts<S: Serializer>(v: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&super::Utc {
            ts: *v,
            rfc3339: true,
        })
    }

    pub fn opt_ts<S: Serializer>(v: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => ts(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn opt_syntax<S: Serializer>(v: &Option<Syntax>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(v.name()),
            None => s.serialize_none(),
        }
    }

    pub fn opt_fault<S: Serializer>(v: &Option<FaultStatus>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(&format_args!("{v:#}")),
            None => s.serialize_none(),
        }
    }

    struct Hex<'a>(&'a [u8], bool);

    impl Display for Hex<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.iter().try_for_each(|b| {
                if self.1 {
                    write!(f, "{b:02X}")
                } else {
                    write!(f, "{b:02x}")
                }
            })
        }
    }

    pub fn opt_hex<S: Serializer, const N: usize>(
        v: &Option<[u8; N]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(&Hex(v, false)),
            None => s.serialize_none(),
        }
    }

    pub fn opt_hex_upper<S: Serializer, const N: usize>(
        v: &Option<[u8; N]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(&Hex(v, true)),
            None => s.serialize_none(),
        }
    }

    /// Hex of any bytes, for the text printer.
    pub fn hex(b: &[u8], upper: bool) -> String {
        Hex(b, upper).to_string()
    }
}

/// Bytes as hex (lower-case, or upper-case as vlmcs prints hardware IDs).
pub fn hex(b: &[u8], upper: bool) -> String {
    ser::hex(b, upper)
}
