//! Capture reading: a pcap or pcapng file's bytes in, TCP connections with rebuilt byte streams out.
//!
//! [`Reader`] reads the file from any [`Read`] (a slice, a `BufReader` over a file) one record at
//! a time and hands on each TCP connection once it is finished, so memory does not grow with
//! the file's length (and, with [`Reader::in_parts`], in parts as it grows, so that it does not
//! grow with a connection's either); [`read`] collects a whole slice into one [`Capture`]. The module opens no
//! files itself. Three layers do the work:
//!
//! - `file`: pcap and pcapng framing, giving (timestamp, link type, frame bytes) per packet record;
//! - `packet`: link, IP and TCP headers, giving one TCP segment per frame;
//! - [`tcp`]: grouping segments into connections and rebuilding each direction's byte stream.
//!
//! Damaged input never panics and never throws away what was already decoded: a file cut short or
//! corrupted part-way gives a [`Capture`] holding everything before the damage, with the first
//! problem in [`Capture::error`]. Packets that are TCP-like but cannot be used (IP fragments, a
//! snap length that cut into the headers, an unsupported link type on one pcapng interface) are
//! counted in [`Capture::skipped`] and listed in [`Capture::skips`]; traffic that is simply not TCP
//! (ARP, UDP, ICMP) is counted in [`Capture::other`] and otherwise ignored.
// Parsing code indexes only through `get`, so malformed input cannot panic; tests may index freely.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod conversation;
mod file;
mod packet;
pub mod plan;
pub mod record;
pub mod tcp;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use core::fmt;
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use serde::Serialize;

pub use file::Format;
pub use packet::linktype;
pub use tcp::{Conflict, Connection, Direction, Event, Gap, Part, SegmentInfo, Stream};

/// Nanoseconds in one second.
const NANOS_PER_SEC: u32 = 1_000_000_000;

/// When a packet was captured: time since the Unix epoch, as the capture file recorded it.
///
/// Kept as whole seconds plus nanoseconds (always below 10^9) so that ordering and equality are
/// exact whatever the file's own resolution was.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    schemars::JsonSchema,
)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub secs: u64,
    /// Nanoseconds past `secs`, below 1,000,000,000.
    pub nanos: u32,
}

impl Timestamp {
    /// A timestamp from seconds and nanoseconds; nanoseconds past a whole second carry into
    /// `secs` (saturating), so a malformed record cannot produce an unordered value.
    pub fn new(secs: u64, nanos: u32) -> Timestamp {
        Timestamp {
            secs: secs.saturating_add(u64::from(nanos / NANOS_PER_SEC)),
            nanos: nanos % NANOS_PER_SEC,
        }
    }

    /// The same instant as a [`Duration`] since the Unix epoch.
    pub fn as_duration(self) -> Duration {
        Duration::new(self.secs, self.nanos)
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is not earlier.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        self.as_duration().saturating_sub(earlier.as_duration())
    }
}

impl From<Duration> for Timestamp {
    fn from(d: Duration) -> Timestamp {
        Timestamp::new(d.as_secs(), d.subsec_nanos())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.secs, self.nanos)
    }
}

/// The problem that stopped reading a capture file.
///
/// Offsets are byte offsets into the file. Packet record numbers count packet records from 1,
/// as Wireshark numbers frames; `record` is the number the damaged record has (or, for a pcapng
/// block that is not a packet, the number the next packet would have had).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, schemars::JsonSchema)]
#[non_exhaustive]
pub enum CaptureError {
    /// Fewer bytes than a file magic.
    #[error("file is {len} bytes long: too short to hold a pcap or pcapng magic")]
    TooShort {
        /// Length of the input.
        len: usize,
    },
    /// The first four bytes match neither format.
    #[error("not a capture file: magic {magic:#010x} is neither pcap nor pcapng")]
    UnknownMagic {
        /// The first four bytes, read big-endian.
        magic: u32,
    },
    /// The file header itself is incomplete.
    #[error("{format} file header is cut short: needs {needed} bytes, {available} present")]
    TruncatedHeader {
        /// "pcap" or "pcapng".
        format: &'static str,
        /// Bytes the header needs.
        needed: usize,
        /// Bytes the file has.
        available: usize,
    },
    /// A record or block runs past the end of the file.
    #[error(
        "truncated {what} at offset {offset} (packet record {record}): needs {needed} bytes, \
         {available} left"
    )]
    Truncated {
        /// "pcap record header", "pcap record data" or "pcapng block".
        what: &'static str,
        /// Packet record number (from 1).
        record: usize,
        /// Where the record or block starts.
        offset: usize,
        /// Bytes it claims, header included.
        needed: u64,
        /// Bytes left in the file from `offset`.
        available: usize,
    },
    /// A block's framing is inconsistent, so nothing after it can be located.
    #[error("bad {what} at offset {offset} (packet record {record}): {problem}")]
    Malformed {
        /// The structure at fault.
        what: &'static str,
        /// Packet record number (from 1).
        record: usize,
        /// Where it starts.
        offset: usize,
        /// What is wrong, with the values seen.
        problem: String,
    },
    /// A classic pcap file whose single link type this module cannot decode.
    #[error("pcap link type {linktype} is not supported")]
    UnsupportedLinkType {
        /// The LINKTYPE_ value from the file header.
        linktype: u32,
    },
}

/// Why one packet record was left out of reassembly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, schemars::JsonSchema)]
#[non_exhaustive]
pub enum SkipReason {
    /// An IPv4 or IPv6 fragment: reassembling IP fragments is out of scope.
    #[error("IP fragment")]
    Fragment,
    /// The captured bytes end inside a header (snap length, or a damaged record).
    #[error("{layer} header cut short: needs {needed} bytes, {available} captured")]
    Truncated {
        /// The header that did not fit.
        layer: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes there were.
        available: usize,
    },
    /// A header field holds an impossible value.
    #[error("bad {layer} header: {problem}")]
    Malformed {
        /// The header at fault.
        layer: &'static str,
        /// What is wrong, with the value seen.
        problem: String,
    },
    /// The record's link type (from a pcapng interface) is not one this module decodes.
    #[error("link type {0} is not supported")]
    UnsupportedLinkType(u32),
    /// An IPv6 header this module cannot walk past (ESP encrypts the rest).
    #[error("IPv6 next header {0} cannot be walked past")]
    UnsupportedIpv6Header(u8),
    /// A pcapng packet names an interface that no Interface Description Block defined.
    #[error("pcapng packet on undefined interface {0}")]
    UnknownInterface(u32),
    /// A pcapng interface declares a timestamp resolution too fine to represent.
    #[error("pcapng interface timestamp resolution code {0:#04x} is not representable")]
    TimestampResolution(u8),
}

/// One packet record that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Skip {
    /// Packet record number (from 1).
    pub record: usize,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// Everything read from one capture file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Capture {
    /// The file format, once the magic was recognised.
    pub format: Option<Format>,
    /// TCP connections in the order of their first packet.
    pub connections: Vec<Connection>,
    /// Packet records read, whatever they held.
    pub packets: usize,
    /// Packet records that were TCP-like but could not be used; see [`Capture::skips`].
    pub skipped: usize,
    /// Each skipped record and why: the first [`SKIPS_LISTED`].
    pub skips: Vec<Skip>,
    /// How many records were skipped for each reason (its text).
    pub skip_reasons: BTreeMap<String, usize>,
    /// Packet records that were not TCP at all (ARP, UDP, ICMP, ...), ignored.
    pub other: usize,
    /// The problem that stopped reading, if the file did not end cleanly.
    pub error: Option<CaptureError>,
}

impl Capture {
    /// `Ok(self)` if the whole file was read, else the error that stopped it (dropping the
    /// partial result), for callers that want all or nothing.
    pub fn into_result(self) -> Result<Capture, CaptureError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }
}

/// Skipped records listed in [`Capture::skips`] at most; [`Capture::skipped`] and
/// [`Capture::skip_reasons`] count every one.
pub const SKIPS_LISTED: usize = 10_000;

/// Distinct skip reasons counted in [`Capture::skip_reasons`]; later new reasons are counted
/// under [`OTHER_SKIP_REASONS`].
const SKIP_REASONS_COUNTED: usize = 100;

/// The reason under which skips past [`SKIP_REASONS_COUNTED`] distinct reasons are counted.
pub const OTHER_SKIP_REASONS: &str = "other reasons";

/// Reads a whole pcap or pcapng file (told apart by magic) into TCP connections.
///
/// Never fails outright: see [`Capture::error`] for a file that stopped early and
/// [`Capture::into_result`] to turn that into an `Err`. A thin wrapper over [`Reader`] that
/// collects everything, in first-packet order.
pub fn read(bytes: &[u8]) -> Capture {
    let mut reader = Reader::new(bytes);
    let connections: Vec<Connection> = reader.by_ref().collect();
    let mut capture = reader.into_capture();
    capture.connections = connections;
    capture
}

/// A capture read as a stream: an iterator of TCP connections, each handed on once it is
/// finished (closed by FIN from both sides or a RST, and a few records more for the last
/// ACKs; or at the end of the file), then [`Reader::into_capture`] for the file's facts.
///
/// Memory does not grow with the file's length: only the current record, the connections open
/// at once (each direction capped, the excess reported as a [`Gap`]) and the recently closed
/// ones are held. Connections come in the order of their first packet, except that at most
/// [`Reader::max_waiting`] finished ones wait behind an older one still open; past that they
/// are handed on in the order they finished.
#[derive(Debug)]
pub struct Reader<R> {
    records: Option<file::Records<R>>,
    tracker: tcp::Tracker,
    capture: Capture,
    ended: bool,
}

impl<R: Read> Reader<R> {
    /// Reads the file header; connections come from the iterator. With a slice or a file
    /// behind a `BufReader` (`Reader::new(BufReader::new(file))`).
    pub fn new(input: R) -> Reader<R> {
        let mut capture = Capture::default();
        let records = match file::Records::open(input) {
            Ok(records) => {
                capture.format = Some(records.format());
                Some(records)
            }
            Err(e) => {
                capture.error = Some(e);
                None
            }
        };
        Reader {
            ended: records.is_none(),
            records,
            tracker: tcp::Tracker::default(),
            capture,
        }
    }

    /// Lets at most `n` finished connections wait behind an older open one (default:
    /// unlimited, strict first-packet order). Bounds memory when one connection stays open for
    /// the whole capture.
    pub fn max_waiting(mut self, n: usize) -> Reader<R> {
        self.tracker.max_waiting = n;
        self
    }

    /// Hands each connection on in parts, so that memory does not grow with a connection's
    /// length either: whenever its two directions hold `bytes` of payload, the bytes laid out so
    /// far (each direction up to its first hole) go on as a [`Part`], and the rest when it ends.
    /// Read them with [`Reader::next_part`] or [`Reader::parts`]; a connection shorter than
    /// `bytes` comes as one part, laid out exactly as without this.
    ///
    /// A retransmission of bytes already handed on counts as duplicate without being compared,
    /// and a hole with more than `bytes / 2` waiting behind it is handed on as a [`Gap`].
    pub fn in_parts(mut self, bytes: usize) -> Reader<R> {
        self.tracker.part_bytes = bytes.max(1);
        self
    }

    /// Only counts connections, keeping no payload: the iterator yields nothing and
    /// [`Reader::connections`] says how many there were. For a first pass that learns the
    /// file's facts before any connection is reported.
    pub fn count_only(mut self) -> Reader<R> {
        self.tracker.keep_bytes = false;
        self
    }

    /// The file format, once recognised.
    pub fn format(&self) -> Option<Format> {
        self.capture.format
    }

    /// Connections handed on (or counted) so far.
    pub fn connections(&self) -> usize {
        self.tracker.emitted
    }

    /// The most connections held in memory at once so far.
    pub fn peak_held(&self) -> usize {
        self.tracker.peak_held
    }

    /// Reads the rest of the file (dropping connections not yet taken) and returns its facts:
    /// everything but [`Capture::connections`], which is left empty.
    pub fn into_capture(mut self) -> Capture {
        self.take_capture()
    }

    /// [`Reader::into_capture`] through a reference, for a reader an iterator adapter holds;
    /// the reader is left ended and empty.
    pub fn take_capture(&mut self) -> Capture {
        while !self.ended {
            self.step();
        }
        let mut capture = std::mem::take(&mut self.capture);
        capture.skipped = capture.skipped.max(capture.skips.len());
        capture
    }

    /// Reads one record.
    fn step(&mut self) {
        let Some(records) = self.records.as_mut() else {
            self.end();
            return;
        };
        let capture = &mut self.capture;
        match records.next() {
            None => self.end(),
            Some(Err(e)) => {
                capture.error = Some(e);
                self.end();
            }
            Some(Ok(file::Entry::Skipped(skip))) => {
                capture.packets += 1;
                add_skip(capture, skip);
            }
            Some(Ok(file::Entry::Packet(rec))) => {
                capture.packets += 1;
                match packet::decode(rec.linktype, rec.data) {
                    Ok(Some(segment)) => self.tracker.push(&segment, rec.ts, rec.number),
                    Ok(None) => capture.other += 1,
                    Err(reason) => add_skip(
                        capture,
                        Skip {
                            record: rec.number,
                            reason,
                        },
                    ),
                }
            }
        }
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.records = None;
            self.tracker.finish_all();
        }
    }
}

impl<R: Read> Reader<R> {
    /// The next connection or part of one (see [`Reader::in_parts`]).
    pub fn next_part(&mut self) -> Option<Part> {
        loop {
            if let Some(p) = self.tracker.pop() {
                return Some(p);
            }
            if self.ended {
                return None;
            }
            self.step();
        }
    }

    /// The reader as an iterator of [`Part`]s.
    pub fn parts(self) -> Parts<R> {
        Parts(self)
    }
}

/// A [`Reader`] yielding [`Part`]s; see [`Reader::parts`].
#[derive(Debug)]
pub struct Parts<R>(pub Reader<R>);

impl<R: Read> Iterator for Parts<R> {
    type Item = Part;

    fn next(&mut self) -> Option<Part> {
        self.0.next_part()
    }
}

/// Whole connections; in parts mode ([`Reader::in_parts`]) each part comes as if it were a
/// connection, so read parts with [`Reader::next_part`] there.
impl<R: Read> Iterator for Reader<R> {
    type Item = Connection;

    fn next(&mut self) -> Option<Connection> {
        self.next_part().map(|p| p.conn)
    }
}

fn add_skip(capture: &mut Capture, skip: Skip) {
    capture.skipped += 1;
    let reason = skip.reason.to_string();
    let known = capture.skip_reasons.contains_key(&reason);
    let key = if known || capture.skip_reasons.len() < SKIP_REASONS_COUNTED {
        reason
    } else {
        OTHER_SKIP_REASONS.to_owned()
    };
    *capture.skip_reasons.entry(key).or_default() += 1;
    if capture.skips.len() < SKIPS_LISTED {
        capture.skips.push(skip);
    }
}
