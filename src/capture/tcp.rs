//! TCP reassembly: segments grouped into connections by address pair, each direction rebuilt
//! into one byte stream, with holes, retransmissions and conflicting overlaps accounted for.
//!
//! Work happens in two passes. While the file is read, segments are only sorted into
//! connections and their sequence numbers unwrapped to 64 bits. When the file is done, each
//! direction is laid out: the stream start is known then even if the SYN was captured after the
//! data (reordering), and for every byte the first packet that carried it wins.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Gap {
    /// Offset in [`Stream::data`] where the hole lies.
    pub offset: usize,
    /// Bytes missing (a count in sequence space; it can exceed memory sizes on 32-bit hosts).
    pub len: u64,
}

/// A run of stream bytes and the packet that first delivered them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Conflict {
    /// Offset in [`Stream::data`] of the disputed range.
    pub offset: usize,
    /// Length of the disputed range.
    pub len: usize,
    /// The packet record whose differing bytes were dropped.
    pub record: usize,
}

/// One direction of a connection, rebuilt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Stream {
    /// Stream offset of `data`'s first byte: 0 for a whole stream, where an earlier part ended
    /// for a later part of a connection handed on in parts ([`Reader::in_parts`]). Every offset
    /// below (gaps, segments, conflicts) is a stream offset, so it means the same in any part.
    ///
    /// [`Reader::in_parts`]: super::Reader::in_parts
    pub base: usize,
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

    /// Holds nothing: no bytes, gaps, conflicts, duplicates or stray bytes.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
            && self.gaps.is_empty()
            && self.conflicts.is_empty()
            && self.duplicate_bytes == 0
            && self.stray_bytes == 0
    }

    /// Stream offset just past `data`.
    pub fn end(&self) -> usize {
        self.base + self.data.len()
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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
pub enum Direction {
    /// Client to server ([`Connection::to_server`]).
    ToServer,
    /// Server to client ([`Connection::to_client`]).
    ToClient,
}

/// A run of stream bytes in capture time; see [`Connection::events`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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

/// A connection, or a part of one handed on before it ended ([`Reader::in_parts`]): its
/// streams hold the bytes laid out since the previous part (see [`Stream::base`]), its flags and
/// times what was known when the part was cut.
///
/// [`Reader::in_parts`]: super::Reader::in_parts
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Which connection (first-packet order, from 0); the same in each of its parts.
    pub id: u64,
    /// Its addresses, flags and the bytes of this part.
    pub conn: Connection,
    /// The connection ended with this part; no more parts of it follow.
    pub last: bool,
}

/// How many packet records a closed connection (both FINs, or a RST) is kept open after closing
/// before it is laid out and handed on: the last ACK and retransmitted FINs follow within a few
/// records, and they still count as the connection's own.
pub(crate) const CLOSE_LINGER_RECORDS: usize = 2048;

/// Bytes of one direction kept for layout. A connection that never ends and keeps sending would
/// otherwise grow without bound; bytes past this are dropped and show as a [`Gap`] where they
/// should have been, so the stream is reported as incomplete rather than silently cut.
pub(crate) const MAX_STREAM_BYTES: usize = 64 << 20;

/// Segments of one direction kept for layout (their bookkeeping costs memory even when they
/// carry no captured bytes); later ones are dropped like bytes past [`MAX_STREAM_BYTES`].
pub(crate) const MAX_STREAM_SEGMENTS: usize = 1 << 18;

/// In parts mode, a side still holding this share of [`Tracker::part_bytes`] after its
/// contiguous prefix was handed on (a hole no retransmission filled, with bytes piling up
/// behind it) is handed on through the hole, which becomes a [`Gap`].
const FORCE_THROUGH_HOLE_DIVISOR: usize = 2;

/// Address pairs of finished connections remembered so that a straggler (a last ACK or a retransmitted FIN)
/// arriving after its connection was handed on does not open a phantom connection.
const EMITTED_REMEMBERED: usize = 4096;

/// First pass: sorts segments into connections as the file is read, and lays each one out
/// once it is finished (see [`Tracker::pop`]).
///
/// Memory is bounded by the connections open at once, each capped at [`MAX_STREAM_BYTES`] per
/// direction, plus the connections that closed in the last [`CLOSE_LINGER_RECORDS`] records,
/// plus those waiting behind an older connection still open ([`Tracker::max_waiting`]).
#[derive(Debug)]
pub(crate) struct Tracker {
    /// Connections not yet laid out, by creation number (first-packet order).
    pending: BTreeMap<u64, Pending>,
    next_id: u64,
    /// Latest connection for each unordered address pair.
    by_pair: HashMap<(SocketAddr, SocketAddr), u64>,
    /// Closed connections in closing order, with the record that closed them.
    closing: VecDeque<(usize, u64)>,
    /// Connections finished (closed and lingered, or superseded on their address pair),
    /// waiting for every older one to finish so that they are handed on in first-packet order.
    done: BTreeSet<u64>,
    /// At most this many finished connections wait behind an older open one; past it, the
    /// oldest finished one is handed on out of order.
    pub max_waiting: usize,
    /// Keep payload bytes and lay connections out; when false, connections are only counted.
    pub keep_bytes: bool,
    /// Hand a connection on in parts whenever its two sides hold this many payload bytes
    /// (`usize::MAX`: never, each connection whole).
    pub part_bytes: usize,
    /// Laid out, not yet taken.
    ready: VecDeque<Part>,
    /// Connections handed on (or, without `keep_bytes`, counted) so far.
    pub emitted: usize,
    /// Address pairs of finished connections, oldest first.
    emitted_pairs: VecDeque<(SocketAddr, SocketAddr)>,
    emitted_set: HashSet<(SocketAddr, SocketAddr)>,
    /// Most connections held at once (pending and ready).
    pub peak_held: usize,
}

impl Default for Tracker {
    fn default() -> Tracker {
        Tracker {
            pending: BTreeMap::new(),
            next_id: 0,
            by_pair: HashMap::new(),
            closing: VecDeque::new(),
            done: BTreeSet::new(),
            max_waiting: usize::MAX,
            keep_bytes: true,
            part_bytes: usize::MAX,
            ready: VecDeque::new(),
            emitted: 0,
            emitted_pairs: VecDeque::new(),
            emitted_set: HashSet::new(),
            peak_held: 0,
        }
    }
}

/// A connection before layout. Side 0 sent the first packet seen.
#[derive(Debug)]
struct Pending {
    id: u64,
    addrs: [SocketAddr; 2],
    sides: [Side; 2],
    /// (side 0 is the client, a SYN was seen), fixed when the first part was handed on so that
    /// every part agrees.
    roles: Option<(bool, bool)>,
    rst_seen: bool,
    first_ts: Timestamp,
    last_ts: Timestamp,
}

/// One sender's segments, with sequence numbers unwrapped to 64 bits.
#[derive(Debug, Default)]
struct Side {
    /// The last sequence number unwrapped and its 64-bit position. Neighbouring packets lie
    /// within 2^31 of each other in sequence space, so chaining from the latest one unwraps
    /// streams of any length.
    anchor: Option<(u32, i64)>,
    /// Position of the first SYN, and whether it carried ACK.
    syn: Option<(i64, u32, bool)>,
    /// Position just past the last byte, from the first FIN.
    fin: Option<i64>,
    segments: Vec<Piece>,
    /// The captured payloads of `segments`, back to back.
    bytes: Vec<u8>,
    /// Furthest position any segment reached on the wire (snap length may have cut the bytes).
    wire_end: Option<i64>,
    /// Where the next part starts, once one was handed on.
    cursor: Option<Cursor>,
}

/// Where a side's next part starts.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// Sequence position of its first byte.
    pos: i64,
    /// Its stream offset.
    offset: usize,
    /// The stream's first position, as fixed by the first part.
    origin: i64,
}

/// Bytes at a 64-bit sequence position, and the packet that carried them.
#[derive(Debug, Clone, Copy)]
struct Piece {
    at: i64,
    /// Where its bytes sit in [`Side::bytes`].
    start: usize,
    len: usize,
    ts: Timestamp,
    record: usize,
}

impl Side {
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

    fn piece_bytes(&self, p: &Piece) -> &[u8] {
        self.bytes
            .get(p.start..p.start.saturating_add(p.len))
            .unwrap_or_default()
    }
}

impl Pending {
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

impl Tracker {
    pub fn push(&mut self, seg: &Segment<'_>, ts: Timestamp, record: usize) {
        let pair = if seg.src <= seg.dst {
            (seg.src, seg.dst)
        } else {
            (seg.dst, seg.src)
        };
        let is_syn = seg.flags & flags::SYN != 0;
        let latest = self.by_pair.get(&pair).copied();
        let existing = latest.filter(|i| {
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
        let id = match existing {
            Some(i) => i,
            None => {
                if latest.is_none()
                    && !is_syn
                    && seg.wire_len == 0
                    && self.emitted_set.contains(&pair)
                {
                    // A straggler of a connection already handed on.
                    self.advance(record);
                    return;
                }
                if let Some(old) = latest {
                    // Superseded on its address pair: nothing more can join it.
                    self.mark_done(old);
                }
                let id = self.next_id;
                self.next_id += 1;
                self.pending.insert(
                    id,
                    Pending {
                        id,
                        addrs: [seg.src, seg.dst],
                        sides: [Side::default(), Side::default()],
                        roles: None,
                        rst_seen: false,
                        first_ts: ts,
                        last_ts: ts,
                    },
                );
                self.by_pair.insert(pair, id);
                id
            }
        };
        let keep_bytes = self.keep_bytes;
        if let Some(conn) = self.pending.get_mut(&id) {
            let was_closed = conn.closed();
            add_segment(conn, seg, ts, record, keep_bytes);
            if !was_closed && conn.closed() {
                self.closing.push_back((record, id));
            }
            let held = conn.sides.iter().map(|s| s.bytes.len()).sum::<usize>();
            if keep_bytes && held >= self.part_bytes {
                let part = conn.part(self.part_bytes / FORCE_THROUGH_HOLE_DIVISOR);
                // Both sides waiting behind holes give nothing yet.
                if !part.conn.to_server.is_empty() || !part.conn.to_client.is_empty() {
                    self.ready.push_back(part);
                }
            }
        }
        self.peak_held = self.peak_held.max(self.pending.len() + self.ready.len());
        self.advance(record);
    }

    /// Marks connections whose linger has passed as done, and lays out those that may go.
    fn advance(&mut self, record: usize) {
        while let Some(&(closed_at, id)) = self.closing.front() {
            if record.saturating_sub(closed_at) < CLOSE_LINGER_RECORDS {
                break;
            }
            self.closing.pop_front();
            self.mark_done(id);
        }
        loop {
            let next = match self.pending.first_key_value() {
                Some((&first, _)) if self.done.contains(&first) => first,
                _ if self.done.len() > self.max_waiting => match self.done.first() {
                    Some(&oldest) => oldest,
                    None => break,
                },
                _ => break,
            };
            self.done.remove(&next);
            self.release(next);
        }
    }

    /// Nothing more joins connection `id`: later packets on its address pair start a new one
    /// (or, if they carry nothing, are dropped as its stragglers). Done when it is marked
    /// finished rather than when it is handed on, so that how connections are grouped does not
    /// depend on the order they are handed on in.
    fn mark_done(&mut self, id: u64) {
        self.done.insert(id);
        let Some(conn) = self.pending.get(&id) else {
            return;
        };
        let [a, b] = conn.addrs;
        let pair = if a <= b { (a, b) } else { (b, a) };
        if self.by_pair.get(&pair) == Some(&id) {
            self.by_pair.remove(&pair);
        }
        if self.emitted_set.insert(pair) {
            self.emitted_pairs.push_back(pair);
            if self.emitted_pairs.len() > EMITTED_REMEMBERED
                && let Some(old) = self.emitted_pairs.pop_front()
            {
                self.emitted_set.remove(&old);
            }
        }
    }

    /// Lays out (or counts) one connection and forgets it.
    fn release(&mut self, id: u64) {
        let Some(conn) = self.pending.remove(&id) else {
            return;
        };
        self.emitted += 1;
        if self.keep_bytes {
            self.ready.push_back(Part {
                id,
                last: true,
                conn: conn.finish(),
            });
        }
    }

    /// A connection laid out and ready, in first-packet order (unless more than
    /// [`Tracker::max_waiting`] waited behind an older one still open); in parts mode, also
    /// the parts of connections still open, as they are cut.
    pub fn pop(&mut self) -> Option<Part> {
        self.ready.pop_front()
    }

    /// The input ended: every connection still held is finished.
    pub fn finish_all(&mut self) {
        self.closing.clear();
        self.done.clear();
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            self.release(id);
        }
    }
}

/// Adds one segment's flags and bytes to its connection.
fn add_segment(
    conn: &mut Pending,
    seg: &Segment<'_>,
    ts: Timestamp,
    record: usize,
    keep_bytes: bool,
) {
    conn.first_ts = conn.first_ts.min(ts);
    conn.last_ts = conn.last_ts.max(ts);
    if seg.flags & flags::RST != 0 {
        // A RST's sequence number and any payload (some stacks put a diagnostic there) are
        // not stream data.
        conn.rst_seen = true;
        return;
    }
    let is_syn = seg.flags & flags::SYN != 0;
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
        let room = side.bytes.len().saturating_add(seg.payload.len()) <= MAX_STREAM_BYTES
            && side.segments.len() < MAX_STREAM_SEGMENTS;
        // Past the caps the bytes are dropped; `wire_end` still records that they existed, so
        // layout reports the hole. Without `keep_bytes` the bytes are not needed at all.
        if room {
            let start = side.bytes.len();
            let len = if keep_bytes { seg.payload.len() } else { 0 };
            if keep_bytes {
                side.bytes.extend_from_slice(seg.payload);
            }
            side.segments.push(Piece {
                at: data_at,
                start,
                len,
                ts,
                record,
            });
        }
        side.wire_end = Some(side.wire_end.map_or(wire_end, |e| e.max(wire_end)));
    }
    if is_fin && side.fin.is_none() {
        side.fin = Some(wire_end);
    }
}

impl Pending {
    /// (side 0 is the client, a SYN without ACK was seen).
    fn roles(&self) -> (bool, bool) {
        if let Some(roles) = self.roles {
            return roles;
        }
        let [a, b] = self.addrs;
        let pure_syn = |s: &Side| matches!(s.syn, Some((_, _, false)));
        let syn_ack = |s: &Side| matches!(s.syn, Some((_, _, true)));
        let [side_a, side_b] = &self.sides;
        if pure_syn(side_a) {
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
        }
    }

    /// The connection's facts so far, around the two streams given as (side 0, side 1).
    fn connection(&self, streams: [Stream; 2]) -> Connection {
        let (a_is_client, syn_seen) = self.roles();
        let [a, b] = self.addrs;
        let [sa, sb] = streams;
        let [fa, fb] = [self.sides[0].fin.is_some(), self.sides[1].fin.is_some()];
        let (to_server, to_client, fin_seen) = if a_is_client {
            (sa, sb, (fa, fb))
        } else {
            (sb, sa, (fb, fa))
        };
        Connection {
            client: if a_is_client { a } else { b },
            server: if a_is_client { b } else { a },
            syn_seen,
            fin_seen,
            rst_seen: self.rst_seen,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            to_server,
            to_client,
        }
    }

    /// Cuts a part of a connection still open: each side's bytes up to its first hole (and
    /// through it, when more than `force_above` bytes wait behind it). The roles are fixed
    /// here for every later part.
    fn part(&mut self, force_above: usize) -> Part {
        self.roles = Some(self.roles());
        let streams = [
            self.sides[0].take_part(force_above),
            self.sides[1].take_part(force_above),
        ];
        Part {
            id: self.id,
            conn: self.connection(streams),
            last: false,
        }
    }

    fn finish(self) -> Connection {
        let streams = [self.sides[0].take_rest(), self.sides[1].take_rest()];
        self.connection(streams)
    }
}

impl Side {
    /// Lays out and forgets the bytes from the cursor up to the first hole, or, when more than
    /// `force_above` bytes would still be held, every byte held (holes becoming gaps).
    fn take_part(&mut self, force_above: usize) -> Stream {
        let Some(from) = self.cursor.or_else(|| {
            self.start().map(|origin| Cursor {
                pos: origin,
                offset: 0,
                origin,
            })
        }) else {
            return Stream::default();
        };
        let mut order: Vec<(i64, i64)> = self
            .segments
            .iter()
            .map(|p| (p.at, p.at + p.len as i64))
            .collect();
        order.sort_unstable();
        let mut contiguous = from.pos;
        for (at, end) in order {
            if at > contiguous {
                break;
            }
            contiguous = contiguous.max(end);
        }
        let held_after = self
            .segments
            .iter()
            .filter(|p| p.at >= contiguous)
            .map(|p| p.len)
            .sum::<usize>();
        let limit = if held_after > force_above {
            i64::MAX
        } else {
            contiguous
        };
        let (stream, next) = layout(self, from, |p| p.at < limit, false);
        self.cursor = Some(next);
        // What stays: the pieces past the limit, their bytes moved to the front of the buffer
        // (which keeps its capacity, so the next part fills memory already mapped).
        let mut kept: Vec<Piece> = self
            .segments
            .iter()
            .filter(|p| p.at >= limit)
            .copied()
            .collect();
        let mut bytes = Vec::with_capacity(kept.iter().map(|p| p.len).sum());
        for p in &mut kept {
            let start = bytes.len();
            bytes.extend_from_slice(self.piece_bytes(p));
            p.start = start;
        }
        self.segments = kept;
        self.bytes.clear();
        self.bytes.extend_from_slice(&bytes);
        stream
    }

    /// Lays out everything still held, as the connection's last part.
    fn take_rest(&self) -> Stream {
        let from = self.cursor.or_else(|| {
            self.start().map(|origin| Cursor {
                pos: origin,
                offset: 0,
                origin,
            })
        });
        match from {
            Some(from) => layout(self, from, |_| true, true).0,
            None => Stream::default(),
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

/// Lays out the pieces of one direction that `take` selects, from `from` on: first copy of
/// every byte wins, holes become [`Gap`]s. `last`: no part follows, so bytes known to exist past
/// the last run (up to the FIN, or cut by the snap length) are a gap. Returns the stream and
/// where the next part would start.
///
/// Bytes before `from` are stray when they lie before the stream's start, and duplicates when
/// an earlier part already handed them on (their content can no longer be compared).
fn layout(
    side: &Side,
    from: Cursor,
    take: impl Fn(&Piece) -> bool,
    last: bool,
) -> (Stream, Cursor) {
    let mut stream = Stream {
        base: from.offset,
        ..Stream::default()
    };
    let start = from.pos;
    let end_limit = side.fin;
    let mut runs: BTreeMap<i64, Run<'_>> = BTreeMap::new();
    // (position, length, record) of disagreeing overlaps; mapped to data offsets at the end.
    let mut conflicts: Vec<(i64, usize, usize)> = Vec::new();

    for piece in side.segments.iter().filter(|p| take(p)) {
        let mut at = piece.at;
        let mut bytes = side.piece_bytes(piece);
        // Bytes before the stream start (only possible once a SYN fixed it), handed on in an
        // earlier part, or past the FIN.
        if at < start {
            let cut = usize::try_from(start - at)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let stray = usize::try_from(from.origin.saturating_sub(at).max(0))
                .unwrap_or(usize::MAX)
                .min(cut);
            stream.stray_bytes += stray as u64;
            stream.duplicate_bytes += (cut - stray) as u64;
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
                offset: stream.end(),
                len: (at - expected).unsigned_abs(),
            });
        }
        starts.push((at, stream.end()));
        stream.segments.push(SegmentInfo {
            offset: stream.end(),
            len: run.bytes.len(),
            ts: run.ts,
            record: run.record,
        });
        stream.data.extend_from_slice(run.bytes);
        expected = at + run.bytes.len() as i64;
    }
    // Bytes known to exist past the last run: up to the FIN, or up to what the snap length cut.
    let known_end = end_limit.or(side.wire_end).unwrap_or(expected);
    if last && known_end > expected {
        stream.gaps.push(Gap {
            offset: stream.end(),
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
    let next = Cursor {
        pos: expected,
        offset: stream.end(),
        origin: from.origin,
    };
    (stream, next)
}

/// Adds the parts of `bytes` (at position `at`) that no earlier run covers; compares the parts
/// that one does.
fn insert_first_seen<'a>(
    runs: &mut BTreeMap<i64, Run<'a>>,
    conflicts: &mut Vec<(i64, usize, usize)>,
    stream: &mut Stream,
    at: i64,
    bytes: &'a [u8],
    piece: &Piece,
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
