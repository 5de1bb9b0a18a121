//! Capture reading: a pcap or pcapng file's bytes in, TCP connections with rebuilt byte streams out.
//!
//! The module is sans-IO: [`read`] takes the whole file as a slice, so the caller decides how the
//! bytes are obtained (file, memory map, test fixture). Three layers do the work:
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
use std::time::Duration;

use serde::Serialize;

pub use file::Format;
pub use packet::linktype;
pub use tcp::{Conflict, Connection, Direction, Event, Gap, SegmentInfo, Stream};

/// Nanoseconds in one second.
const NANOS_PER_SEC: u32 = 1_000_000_000;

/// When a packet was captured: time since the Unix epoch, as the capture file recorded it.
///
/// Kept as whole seconds plus nanoseconds (always below 10^9) so that ordering and equality are
/// exact whatever the file's own resolution was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    /// Packet record number (from 1).
    pub record: usize,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// Everything read from one capture file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Capture {
    /// The file format, once the magic was recognised.
    pub format: Option<Format>,
    /// TCP connections in the order of their first packet.
    pub connections: Vec<Connection>,
    /// Packet records read, whatever they held.
    pub packets: usize,
    /// Packet records that were TCP-like but could not be used; see [`Capture::skips`].
    pub skipped: usize,
    /// Each skipped record and why.
    pub skips: Vec<Skip>,
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

/// Reads a whole pcap or pcapng file (told apart by magic) into TCP connections.
///
/// Never fails outright: see [`Capture::error`] for a file that stopped early and
/// [`Capture::into_result`] to turn that into an `Err`.
pub fn read(bytes: &[u8]) -> Capture {
    let mut capture = Capture::default();
    let mut records = match file::Records::open(bytes) {
        Ok(records) => records,
        Err(e) => {
            capture.error = Some(e);
            return capture;
        }
    };
    capture.format = Some(records.format());
    let mut tracker = tcp::Tracker::default();
    for entry in &mut records {
        match entry {
            Err(e) => {
                capture.error = Some(e);
                break;
            }
            Ok(file::Entry::Skipped(skip)) => {
                capture.packets += 1;
                capture.skips.push(skip);
            }
            Ok(file::Entry::Packet(rec)) => {
                capture.packets += 1;
                match packet::decode(rec.linktype, rec.data) {
                    Ok(Some(segment)) => tracker.push(&segment, rec.ts, rec.number),
                    Ok(None) => capture.other += 1,
                    Err(reason) => capture.skips.push(Skip {
                        record: rec.number,
                        reason,
                    }),
                }
            }
        }
    }
    capture.skipped = capture.skips.len();
    capture.connections = tracker.finish();
    capture
}
