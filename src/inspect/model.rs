//! The report model of `inspect`: what a capture, its connections, their binds and activation
//! calls, and the summary look like once decoded. Every type serializes to its part of the
//! `--json` document (format [`super::REPORT_FORMAT`]); the field docs are the schema, and
//! `docs/inspect.md` shows the whole document. The request, the response and the outcome of a
//! call are the model `activate` reports too ([`crate::proto::summary`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::capture::{Direction, Timestamp};
use crate::exit::Exit;
use crate::proto::check::{CheckId, Checks};
use crate::proto::summary::{Outcome, RequestSummary, ResponseSummary};
use crate::wire::kms::FileTime;
use crate::wire::ndr::Syntax;
use crate::wire::rpc::{FaultStatus, Flags};
use crate::wire::{Guid, HResult};

/// One end of a connection: who sent the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The client (the side that sent the SYN, or inferred).
    Client,
    /// The server (the KMS host).
    Server,
}

impl Side {
    pub(super) fn of(direction: Direction) -> Side {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, schemars::JsonSchema)]
pub struct Sides<T> {
    /// Sent by the client.
    pub from_client: T,
    /// Sent by the server.
    pub from_server: T,
}

/// Why the file is not a capture, or where it is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileErrorKind {
    /// Not a capture this tool reads: too short, bad magic, or an unsupported pcap link type.
    NotACapture,
    /// A capture cut short or corrupt part-way; everything before the damage is reported.
    Damaged,
}

/// The problem that stopped reading the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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

/// A packet record left out of reassembly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct SkippedRecord {
    /// Packet record number (from 1).
    pub record: usize,
    /// Why (IP fragment, header cut short, unsupported link type...).
    pub reason: String,
}

/// How the file was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct CaptureInfo {
    /// `pcap` or `pcapng`; null when the file was not recognised.
    pub format: Option<&'static str>,
    /// The pcap file's link type (LINKTYPE_ value); null for pcapng (per interface).
    pub linktype: Option<u32>,
    /// Packet records read.
    pub packets: usize,
    /// Packet records that were not TCP (ARP, UDP, ICMP...), ignored.
    pub not_tcp: usize,
    /// TCP-like records that could not be used.
    pub skipped: usize,
    /// How many were skipped for each reason, in reason order (the text report's table).
    #[serde(skip)]
    pub skip_reasons: Vec<(String, usize)>,
    /// The first of them (at most [`crate::capture::SKIPS_LISTED`]), with the reason.
    pub skipped_records: Vec<SkippedRecord>,
    /// TCP connections found.
    pub connections: usize,
    /// The problem that stopped reading, if the file did not end cleanly.
    pub error: Option<FileError>,
}

/// How a connection was recognised as KMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Recognition {
    /// The client's first PDU is a bind (or alter_context) to the KMS interface.
    Bind,
    /// The client's first PDU is an activation request (opnum 0) whose stub holds a KMS
    /// request: a capture that began after the bind.
    Request,
    /// Forced by `--port`.
    Port,
}

/// TCP-level facts of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BindReport {
    /// `bind` or `alter_context`.
    pub kind: &'static str,
    /// Call id.
    pub call_id: u32,
    /// Header flags, e.g. `0x13 (FIRST_FRAG|LAST_FRAG|CONC_MPX)`.
    #[serde(serialize_with = "ser::debug")]
    #[schemars(with = "String")]
    pub flags: Flags,
    /// `bind_ack`, `alter_context_resp`, `bind_nak`, or null when unanswered.
    pub reply: Option<&'static str>,
    /// The answer's header flags.
    #[serde(serialize_with = "ser::opt_debug")]
    #[schemars(with = "Option<String>")]
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

/// One activation call: the request, the reply and every check.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ExchangeReport {
    /// 1-based number over the whole capture, in connection order then call order.
    pub index: usize,
    /// Call id.
    pub call_id: u32,
    /// Presentation context of the request.
    pub context_id: u16,
    /// Its transfer syntax, `NDR32` or `NDR64`: the one a captured bind accepted for the
    /// context, else the one the request stub's counts fit; null when neither is known.
    #[serde(serialize_with = "ser::opt_syntax")]
    #[schemars(with = "Option<String>")]
    pub syntax: Option<Syntax>,
    /// `syntax` was inferred from the stub's layout: no bind in the capture accepted the context.
    pub syntax_inferred: bool,
    /// Fragments the request came in.
    pub fragments: usize,
    /// When the request was captured (RFC 3339, UTC).
    #[serde(serialize_with = "ser::opt_ts")]
    #[schemars(with = "Option<String>")]
    pub sent_at: Option<Timestamp>,
    /// When the reply was captured.
    #[serde(serialize_with = "ser::opt_ts")]
    #[schemars(with = "Option<String>")]
    pub replied_at: Option<Timestamp>,
    /// Time from request to reply, microseconds.
    pub latency_micros: Option<u64>,
    /// Length of the KMS request, bytes.
    pub request_size: usize,
    /// The decoded request; null when it could not be decoded.
    pub request: Option<RequestSummary>,
    /// Why the request could not be decoded.
    pub request_error: Option<String>,
    /// The host-side checks on the request.
    pub request_checks: Checks,
    /// How the call ended.
    pub outcome: Outcome,
    /// The decoded response.
    pub response: Option<ResponseSummary>,
    /// The HRESULT of a refusal, with its name, e.g. `0x8007000D (ERROR_INVALID_DATA)`.
    #[serde(serialize_with = "ser::opt_display")]
    #[schemars(with = "Option<String>")]
    pub hresult: Option<HResult>,
    /// The status of an RPC fault, with its name, e.g. `op_range_error (0x1C010002)`.
    #[serde(serialize_with = "ser::opt_fault")]
    #[schemars(with = "Option<String>")]
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
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
    #[schemars(with = "String")]
    pub first: Timestamp,
    /// Last packet.
    #[serde(serialize_with = "ser::ts")]
    #[schemars(with = "String")]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
    /// The first [`super::EPIDS_LISTED`] of them, sorted.
    pub epids: Vec<String>,
}

/// Per client address in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct NamedCount {
    /// What (a check name, an HRESULT, a fault status, a problem class, a version).
    pub name: String,
    /// How often.
    pub count: usize,
}

/// Everything that went wrong, by class.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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

/// The `--json` document, field by field in the order
/// [`crate::report::inspect::JsonWriter`] streams it: the type its schema
/// (`docs/inspect-report.schema.json`) is generated from. The writer streams one connection at
/// a time rather than building this value, so that memory does not grow with the capture.
#[derive(Debug, schemars::JsonSchema)]
#[schemars(rename = "InspectReport")]
pub struct InspectDocument {
    /// `kmsharness-inspect/1`.
    #[schemars(extend("const" = "kmsharness-inspect/1"))]
    pub format: String,
    /// The capture file as given.
    pub file: String,
    /// How the file was read.
    pub capture: CaptureInfo,
    /// Every connection, one per line.
    pub connections: Vec<ConnectionReport>,
    /// The summary.
    pub summary: Summary,
    /// The exit status the capture calls for.
    pub exit_status: u8,
    /// Its name.
    pub exit: Exit,
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

/// serde helpers: the JSON forms of capture values (the wire values' are shared with
/// `activate`, in [`crate::proto::summary::ser`]).
mod ser {
    use std::fmt::Debug;

    use serde::Serializer;

    use crate::capture::Timestamp;
    pub use crate::proto::summary::ser::{opt_display, opt_fault};
    use crate::wire::ndr::Syntax;

    pub fn debug<T: Debug, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:?}"))
    }

    pub fn opt_debug<T: Debug, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => debug(v, s),
            None => s.serialize_none(),
        }
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
}

/// Bytes as hex (lower-case, or upper-case as vlmcs prints hardware IDs).
pub fn hex(b: &[u8], upper: bool) -> String {
    crate::proto::summary::ser::hex(b, upper)
}
