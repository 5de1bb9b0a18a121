//! `inspect`: a capture file explained. Every TCP connection is recognised as KMS by its content
//! (the client's first PDU is a DCE/RPC bind to the KMS interface, or, in a capture that began
//! after the bind, an activation request whose stub holds a KMS request) or forced by port,
//! decoded as a conversation ([`crate::capture::conversation`]: binds with their acks, requests decrypted
//! and checked as a host would, replies decrypted and verified as a client would), and folded
//! into a per-capture [`Summary`].
//!
//! Three parts: the report model ([`model`]: what the `--json` document and the text printer
//! show), the work ([`work`]: a capture turned into the model) and the tally (the summary's
//! counts). The work streams connection by connection: [`Inspection`] yields one
//! [`ConnectionReport`] at a time and keeps only the tallies, so the printers
//! (`crate::report::inspect`) can write each connection as it is decoded. [`inspect`] collects
//! everything into one [`InspectReport`].

pub mod model;
mod tally;
pub mod work;

pub use crate::proto::summary::{Outcome, RequestSummary, ResponseSummary};
pub use model::{
    BindReport, CaptureInfo, ClientSummary, ConnectionReport, ContextReport, DecodeProblem,
    ErrorSummary, ExchangeReport, FileError, FileErrorKind, GapReport, HostSummary,
    InspectDocument, InspectReport, NamedCount, OutcomeCounts, ProductCount, Recognition, Side,
    Sides, SkippedRecord, Summary, TcpInfo, Utc, hex,
};
pub use work::{Inspection, inspect, inspect_in_parts};

/// Format identifier of the `--json` document.
pub const REPORT_FORMAT: &str = "kmsharness-inspect/1";

/// At most this many distinct ePIDs are listed per host in the summary (py-kms makes a new one
/// per request); `distinct_epids` still counts them all.
pub const EPIDS_LISTED: usize = 10;

/// What `inspect` needs besides the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InspectConfig {
    /// Decode connections with this port at either end as KMS even when their client stream
    /// does not start with a KMS bind or a KMS activation request.
    pub port: Option<u16>,
    /// Only the summary is wanted: connection reports come without their binds and exchanges
    /// (each is still decoded, checked and tallied), so that memory does not grow with a
    /// connection's length.
    pub summary_only: bool,
}
