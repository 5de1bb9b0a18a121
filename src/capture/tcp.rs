//! TCP reassembly: segments grouped into connections by address pair, each direction rebuilt
//! into one byte stream, with holes, retransmissions and conflicting overlaps accounted for.
//!
//! Work happens in two passes. While the file is read, segments are only sorted into
//! connections and their sequence numbers unwrapped to 64 bits. When the file is done, each
//! direction is laid out: the stream start is known then even if the SYN was captured after the
//! data (reordering), and for every byte the first packet that carried it wins.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;

use serde::Serialize;

use super::Timestamp;
use super::packet::{Segment, flags};

/// The port a KMS host listens on (MS-KMSP 2.1: DCE/RPC over TCP port 1688). Used to tell the
/// server when no SYN was captured.
pub const KMS_PORT: u16 = 1688;

/// How far (in sequence space) a late-captured SYN may sit before its side's first byte and
/// still be taken as that connection's own; a quarter of the sequence space, far beyond any
/// window of data a capture can lose at a connection's start.
const SYN_REORDER_WINDOW: i64 = 1 << 30;

/// A hole in a rebuilt stream: `len` bytes the sender sent but the capture lacks.
///
/// The missing bytes would sit between `data[offset - 1]` and `data[offset]`; `data` itself
/// holds no filler, so code reading across `offset` must stop there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// Offset in [`Stream::data`] where the hole lies.
    pub offset: usize,
    /// Bytes missing (a count in sequence space; it can exceed memory sizes on 32-bit hosts).
    pub len: u64,
}

/// A run of stream bytes and the packet that first delivered them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SegmentInfo {
    /// Offset in [`Stream::data`].
    pub offset: usize,
    /// Number of bytes.
    pub len: usize,
    /// When that packet was captured.
    pub ts: Timestamp,
    /// Its packet record number in the file (from 1).
    pub record: usize,
}

/// Bytes that a later packet carried differently from the first copy; the first copy was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// Offset in [`Stream::data`] of the disputed range.
    pub offset: usize,
    /// Length of the disputed range.
    pub len: usize,
    /// The packet record whose differing bytes were dropped.
    pub record: usize,
}

/// One direction of a connection, rebuilt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stream {
    /// The bytes, in sequence order, with no filler for [`Stream::gaps`].
    pub data: Vec<u8>,
    /// Holes, in offset order.
    pub gaps: Vec<Gap>,
    /// Where each run of `data` came from, in offset order; the runs tile `data` exactly.
    pub segments: Vec<SegmentInfo>,
    /// Overlaps whose bytes disagreed with the first copy.
    pub conflicts: Vec<Conflict>,
    /// Bytes seen again with the same content (retransmissions, overlapping repacketisation).
    pub duplicate_bytes: u64,
    /// Bytes dropped for lying outside the stream: before the SYN's sequence number or past
    /// the FIN's.
    pub stray_bytes: u64,
}

impl Stream {
    /// The run that holds byte `offset`.
    pub fn segment_at(&self, offset: usize) -> Option<&SegmentInfo> {
        let i = self
            .segments
            .partition_point(|s| s.offset + s.len <= offset);
        self.segments.get(i).filter(|s| s.offset <= offset)
    }

    /// Whether `range` of `data` is free of holes, i.e. no [`Gap`] lies strictly inside it.
    pub fn is_contiguous(&self, range: Range<usize>) -> bool {
        !self
            .gaps
            .iter()
            .any(|g| g.offset > range.start && g.offset < range.end)
    }
}

/// Which way bytes travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Direction {
    /// Client to server ([`Connection::to_server`]).
    ToServer,
    /// Server to client ([`Connection::to_client`]).
    ToClient,
}

/// A run of stream bytes in capture time; see [`Connection::events`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The stream the bytes belong to.
    pub direction: Direction,
    /// Offset in that stream's `data`.
    pub offset: usize,
    /// Number of bytes.
    pub len: usize,
    /// When the packet that first delivered them was captured.
    pub ts: Timestamp,
    /// Its packet record number (from 1).
    pub record: usize,
}

impl Event {
    /// The byte range in the stream's `data`.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// One TCP connection with both directions rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// The side that sent the SYN; without a captured SYN, the side that is not the server by
    /// port (see [`Connection::syn_seen`]).
    pub client: SocketAddr,
    /// The other side.
    pub server: SocketAddr,
    /// Bytes from client to server.
    pub to_server: Stream,
    /// Bytes from server to client.
    pub to_client: Stream,
    /// A SYN without ACK was captured. When false the roles were inferred: from a SYN-ACK if
    /// one was captured, else the side on port 1688, else the side on the lower port, is the
    /// server.
    pub syn_seen: bool,
    /// (client sent FIN, server sent FIN).
    pub fin_seen: (bool, bool),
    /// Either side sent RST.
    pub rst_seen: bool,
    /// Earliest capture time of any of its packets.
    pub first_ts: Timestamp,
    /// Latest capture time of any of its packets.
    pub last_ts: Timestamp,
}

impl Connection {
    /// Every run of both streams in capture order (ties broken by record number, then offset),
    /// so that callers can tell which of two messages came first.
    pub fn events(&self) -> Vec<Event> {
        let tag = |direction, s: &SegmentInfo| Event {
            direction,
            offset: s.offset,
            len: s.len,
            ts: s.ts,
            record: s.record,
        };
        let mut events: Vec<Event> = self
            .to_server
            .segments
            .iter()
            .map(|s| tag(Direction::ToServer, s))
            .chain(
                self.to_client
                    .segments
                    .iter()
                    .map(|s| tag(Direction::ToClient, s)),
            )
            .collect();
        events.sort_by_key(|e| (e.ts, e.record, e.offset));
        events
    }

    /// The stream flowing in `direction`.
    pub fn stream(&self, direction: Direction) -> &Stream {
        match direction {
            Direction::ToServer => &self.to_server,
            Direction::ToClient => &self.to_client,
        }
    }
}

/// First pass: sorts segments into connections as the file is read.
#[derive(Debug, Default)]
pub(crate) struct Tracker<'a> {
    pending: Vec<Pending<'a>>,
    /// Latest connection for each unordered address pair.
    by_pair: HashMap<(SocketAddr, SocketAddr), usize>,
}

/// A connection before layout. Side 0 sent the first packet seen.
#[derive(Debug)]
struct Pending<'a> {
    addrs: [SocketAddr; 2],
    sides: [Side<'a>; 2],
    rst_seen: bool,
    first_ts: Timestamp,
    last_ts: Timestamp,
}

/// One sender's segments, with sequence numbers unwrapped to 64 bits.
#[derive(Debug, Default)]
struct Side<'a> {
    /// The last sequence number unwrapped and its 64-bit position. Neighbouring packets lie
    /// within 2^31 of each other in sequence space, so chaining from the latest one unwraps
    /// streams of any length.
    anchor: Option<(u32, i64)>,
    /// Position of the first SYN, and whether it carried ACK.
    syn: Option<(i64, u32, bool)>,
    /// Position just past the last byte, from the first FIN.
    fin: Option<i64>,
    segments: Vec<Piece<'a>>,
    /// Furthest position any segment reached on the wire (snap length may have cut the bytes).
    wire_end: Option<i64>,
}

/// Bytes at a 64-bit sequence position, and the packet that carried them.
#[derive(Debug, Clone, Copy)]
struct Piece<'a> {
    at: i64,
    bytes: &'a [u8],
    ts: Timestamp,
    record: usize,
}

impl Side<'_> {
    fn unwrap_seq(&mut self, seq: u32) -> i64 {
        let at = self.peek(seq);
        self.anchor = Some((seq, at));
        at
    }

    fn peek(&self, seq: u32) -> i64 {
        match self.anchor {
            None => 0,
            // The cast reinterprets the wrapped distance as signed, which is the point.
            Some((last_seq, last_at)) => last_at + i64::from(seq.wrapping_sub(last_seq) as i32),
        }
    }

    /// The first sequence position of the stream: after the SYN, else the lowest seen.
    fn start(&self) -> Option<i64> {
        match self.syn {
            Some((at, _, _)) => Some(at + 1),
            None => self.segments.iter().map(|p| p.at).min().or(self.fin),
        }
    }
}

impl<'a> Pending<'a> {
    fn closed(&self) -> bool {
        self.rst_seen || (self.sides[0].fin.is_some() && self.sides[1].fin.is_some())
    }

    /// Whether a SYN from `side` belongs to this connection (a retransmission, or a SYN that
    /// was captured after the data) rather than opening a new one on a reused address pair.
    ///
    /// Without an earlier SYN to compare with, a SYN that precedes everything its side sent,
    /// by less than [`SYN_REORDER_WINDOW`], is taken as this connection's own: stacks pick the
    /// ISN of a new connection on the same addresses above the old one (RFC 6528's clock
    /// component), so a new connection lands after, not just before, the old data.
    fn owns_syn(&self, side: usize, seq: u32) -> bool {
        let Some(s) = self.sides.get(side) else {
            return false;
        };
        match (s.syn, s.start()) {
            (Some((_, first_seq, _)), _) => first_seq == seq,
            (None, None) => true,
            (None, Some(start)) => {
                let next = s.peek(seq) + 1;
                next <= start && start - next < SYN_REORDER_WINDOW
            }
        }
    }
}

impl<'a> Tracker<'a> {
    pub fn push(&mut self, seg: &Segment<'a>, ts: Timestamp, record: usize) {
        let pair = if seg.src <= seg.dst {
            (seg.src, seg.dst)
        } else {
            (seg.dst, seg.src)
        };
        let is_syn = seg.flags & flags::SYN != 0;
        let existing = self.by_pair.get(&pair).copied().filter(|&i| {
            let Some(conn) = self.pending.get(i) else {
                return false;
            };
            let side = usize::from(seg.src != conn.addrs[0]);
            let reused = is_syn
                && seg.flags & flags::ACK == 0
                && conn.closed()
                && !conn.owns_syn(side, seg.seq);
            !reused
        });
        let index = match existing {
            Some(i) => i,
            None => {
                self.pending.push(Pending {
                    addrs: [seg.src, seg.dst],
                    sides: [Side::default(), Side::default()],
                    rst_seen: false,
                    first_ts: ts,
                    last_ts: ts,
                });
                let i = self.pending.len() - 1;
                self.by_pair.insert(pair, i);
                i
            }
        };
        let Some(conn) = self.pending.get_mut(index) else {
            return;
        };
        conn.first_ts = conn.first_ts.min(ts);
        conn.last_ts = conn.last_ts.max(ts);
        if seg.flags & flags::RST != 0 {
            // A RST's sequence number and any payload (some stacks put a diagnostic there) are
            // not stream data.
            conn.rst_seen = true;
            return;
        }
        let is_fin = seg.flags & flags::FIN != 0;
        if !is_syn && !is_fin && seg.wire_len == 0 {
            // Pure ACKs occupy no sequence space.
            return;
        }
        let side_index = usize::from(seg.src != conn.addrs[0]);
        let Some(side) = conn.sides.get_mut(side_index) else {
            return;
        };
        let at = side.unwrap_seq(seg.seq);
        if is_syn && side.syn.is_none() {
            side.syn = Some((at, seg.seq, seg.flags & flags::ACK != 0));
        }
        // SYN occupies one sequence number before the first data byte (RFC 9293 3.4).
        let data_at = at + i64::from(is_syn);
        let wire_end = data_at + i64::try_from(seg.wire_len).unwrap_or(i64::MAX >> 1);
        if seg.wire_len > 0 {
            side.segments.push(Piece {
                at: data_at,
                bytes: seg.payload,
                ts,
                record,
            });
            side.wire_end = Some(side.wire_end.map_or(wire_end, |e| e.max(wire_end)));
        }
        if is_fin && side.fin.is_none() {
            side.fin = Some(wire_end);
        }
    }

    /// Second pass: lays out every connection.
    pub fn finish(self) -> Vec<Connection> {
        self.pending.into_iter().map(Pending::finish).collect()
    }
}

impl Pending<'_> {
    fn finish(self) -> Connection {
        let [a, b] = self.addrs;
        let pure_syn = |s: &Side<'_>| matches!(s.syn, Some((_, _, false)));
        let syn_ack = |s: &Side<'_>| matches!(s.syn, Some((_, _, true)));
        let [side_a, side_b] = &self.sides;
        let (a_is_client, syn_seen) = if pure_syn(side_a) {
            (true, true)
        } else if pure_syn(side_b) {
            (false, true)
        } else if syn_ack(side_b) {
            (true, false)
        } else if syn_ack(side_a) {
            (false, false)
        } else if b.port() == KMS_PORT || a.port() == KMS_PORT {
            (b.port() == KMS_PORT, false)
        } else if a.port() != b.port() {
            (a.port() > b.port(), false)
        } else {
            (true, false)
        };
        let [client_side, server_side] = if a_is_client {
            self.sides
        } else {
            let [x, y] = self.sides;
            [y, x]
        };
        Connection {
            client: if a_is_client { a } else { b },
            server: if a_is_client { b } else { a },
            syn_seen,
            fin_seen: (client_side.fin.is_some(), server_side.fin.is_some()),
            rst_seen: self.rst_seen,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            to_server: layout(&client_side),
            to_client: layout(&server_side),
        }
    }
}

/// A run of first-seen bytes keyed by its start position.
#[derive(Debug, Clone, Copy)]
struct Run<'a> {
    bytes: &'a [u8],
    ts: Timestamp,
    record: usize,
}

/// Lays out one direction: first copy of every byte wins, holes become [`Gap`]s.
fn layout(side: &Side<'_>) -> Stream {
    let mut stream = Stream::default();
    let Some(start) = side.start() else {
        return stream;
    };
    let end_limit = side.fin;
    let mut runs: BTreeMap<i64, Run<'_>> = BTreeMap::new();
    // (position, length, record) of disagreeing overlaps; mapped to data offsets at the end.
    let mut conflicts: Vec<(i64, usize, usize)> = Vec::new();

    for piece in &side.segments {
        let mut at = piece.at;
        let mut bytes = piece.bytes;
        // Bytes before the stream start (only possible once a SYN fixed it) or past the FIN.
        if at < start {
            let cut = usize::try_from(start - at)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            stream.stray_bytes += cut as u64;
            bytes = bytes.get(cut..).unwrap_or_default();
            at = start;
        }
        if let Some(fin) = end_limit {
            let room = usize::try_from(fin.saturating_sub(at)).unwrap_or(0);
            if bytes.len() > room {
                stream.stray_bytes += (bytes.len() - room) as u64;
                bytes = bytes.get(..room).unwrap_or_default();
            }
        }
        if !bytes.is_empty() {
            insert_first_seen(&mut runs, &mut conflicts, &mut stream, at, bytes, piece);
        }
    }

    // Walk runs in order: concatenate, and record a gap wherever a run does not start where
    // the previous one ended.
    let mut expected = start;
    let mut starts: Vec<(i64, usize)> = Vec::with_capacity(runs.len());
    stream.segments.reserve_exact(runs.len());
    stream
        .data
        .reserve_exact(runs.values().map(|r| r.bytes.len()).sum());
    for (&at, run) in &runs {
        if at > expected {
            stream.gaps.push(Gap {
                offset: stream.data.len(),
                len: (at - expected).unsigned_abs(),
            });
        }
        starts.push((at, stream.data.len()));
        stream.segments.push(SegmentInfo {
            offset: stream.data.len(),
            len: run.bytes.len(),
            ts: run.ts,
            record: run.record,
        });
        stream.data.extend_from_slice(run.bytes);
        expected = at + run.bytes.len() as i64;
    }
    // Bytes known to exist past the last run: up to the FIN, or up to what the snap length cut.
    let known_end = end_limit.or(side.wire_end).unwrap_or(expected);
    if known_end > expected {
        stream.gaps.push(Gap {
            offset: stream.data.len(),
            len: (known_end - expected).unsigned_abs(),
        });
    }
    for (at, len, record) in conflicts {
        let i = starts.partition_point(|&(s, _)| s <= at);
        if let Some(&(run_at, run_offset)) = i.checked_sub(1).and_then(|i| starts.get(i)) {
            stream.conflicts.push(Conflict {
                offset: run_offset + usize::try_from(at - run_at).unwrap_or(0),
                len,
                record,
            });
        }
    }
    stream.conflicts.sort_by_key(|c| (c.offset, c.record));
    stream
}

/// Adds the parts of `bytes` (at position `at`) that no earlier run covers; compares the parts
/// that one does.
fn insert_first_seen<'a>(
    runs: &mut BTreeMap<i64, Run<'a>>,
    conflicts: &mut Vec<(i64, usize, usize)>,
    stream: &mut Stream,
    at: i64,
    bytes: &'a [u8],
    piece: &Piece<'a>,
) {
    let end = at + bytes.len() as i64;
    // Earlier runs overlapping [at, end): the one starting before `at`, if it reaches past it,
    // then every one starting inside.
    let before = runs
        .range(..at)
        .next_back()
        .filter(|(s, r)| **s + r.bytes.len() as i64 > at)
        .map(|(s, r)| (*s, *r));
    let overlapping: Vec<(i64, Run<'a>)> = before
        .into_iter()
        .chain(runs.range(at..end).map(|(s, r)| (*s, *r)))
        .collect();
    let mut cursor = at;
    let mut fresh: Vec<(i64, &'a [u8])> = Vec::new();
    for (run_at, run) in overlapping {
        let run_end = run_at + run.bytes.len() as i64;
        if run_at > cursor {
            fresh.push((cursor, slice(bytes, cursor - at, run_at - at)));
        }
        let from = run_at.max(cursor);
        let to = run_end.min(end);
        if to > from {
            let old = slice(run.bytes, from - run_at, to - run_at);
            let new = slice(bytes, from - at, to - at);
            if old == new {
                stream.duplicate_bytes += new.len() as u64;
            } else {
                conflicts.push((from, new.len(), piece.record));
            }
        }
        cursor = cursor.max(run_end);
    }
    if cursor < end {
        fresh.push((cursor, slice(bytes, cursor - at, end - at)));
    }
    for (s, b) in fresh {
        if !b.is_empty() {
            runs.insert(
                s,
                Run {
                    bytes: b,
                    ts: piece.ts,
                    record: piece.record,
                },
            );
        }
    }
}

/// `bytes[from..to]` for positions already known to lie inside `bytes`; empty otherwise.
fn slice(bytes: &[u8], from: i64, to: i64) -> &[u8] {
    match (usize::try_from(from), usize::try_from(to)) {
        (Ok(f), Ok(t)) => bytes.get(f..t).unwrap_or_default(),
        _ => &[],
    }
}
