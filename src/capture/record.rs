//! Writing what the tool exchanged as a classic pcap file (`--record FILE`): synthetic
//! Ethernet (zero MACs), IPv4 or IPv6 and TCP framing around the exact bytes each side sent, so
//! that Wireshark opens the file cleanly and [`capture::read`](super::read) followed by
//! [`conversation::decode`](super::conversation::decode) gives back every message.
//!
//! Two parts, and no I/O of their own beyond the writer they are given:
//!
//! - [`Flow`], one per TCP connection: it keeps both directions' sequence numbers and turns
//!   [`Flow::open`] (three-way handshake), [`Flow::data`] (one segment per write, split at
//!   [`MSS`]) and [`Flow::close`] (FIN, FIN, ACK) into frames with correct sequence and
//!   acknowledgement numbers, IPv4 header checksums and TCP checksums. Time is an argument.
//! - [`Recorder`], shared as `Arc` by every flow of a run: the pcap writer behind a `Mutex`.
//!   Each flow call takes the lock once, however many frames it produced.
//!
//! The network drivers (`net::client`, `net::host`) hold an optional flow and call it once per
//! write or read, with the wall clock of that moment ([`now`]).
// This module only builds frames in its own buffers, at offsets it just wrote; it never parses
// input, which is what the parent module's indexing lint guards.
#![allow(clippy::indexing_slicing)]

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use etherparse::{
    EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, TcpHeader,
    TcpOptionElement,
};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};

use super::{Direction, Timestamp};

/// Largest TCP payload per recorded segment: Ethernet's 1500-byte MTU less IPv4 and TCP headers.
pub const MSS: usize = 1460;
/// Snap length announced in the file header; every recorded frame is far smaller.
pub const SNAPLEN: u32 = 65_535;
/// Receive window every recorded segment announces.
const WINDOW: u16 = 65_535;
/// Hop limit / TTL of recorded packets.
const TTL: u8 = 64;

const ETHERNET_HEADER_LEN: usize = Ethernet2Header::LEN;
const IPV4_HEADER_LEN: usize = Ipv4Header::MIN_LEN;
const IPV6_HEADER_LEN: usize = Ipv6Header::LEN;
const TCP_HEADER_LEN: usize = TcpHeader::MIN_LEN;
/// The MSS option (kind 2, length 4) carried by SYN and SYN-ACK.
const TCP_MSS_OPTION_LEN: usize = 4;

/// TCP header flag bits (RFC 9293).
pub mod tcp_flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// The acknowledgement field is significant.
    pub const ACK: u8 = 0x10;
}

/// The wall clock now, as a capture timestamp.
pub fn now() -> Timestamp {
    Timestamp::from(crate::clock::unix_now())
}

/// One TCP segment to frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Sequence number of the first payload byte (or of the SYN/FIN).
    pub seq: u32,
    /// Acknowledgement number (meaningful when [`tcp_flags::ACK`] is set).
    pub ack: u32,
    /// TCP flags, see [`tcp_flags`].
    pub flags: u8,
    /// IPv4 identification (ignored for IPv6).
    pub ip_id: u16,
    /// Payload.
    pub payload: &'a [u8],
}

/// An address as IPv6 (IPv4 ones mapped): a frame whose ends differ in family is written as
/// IPv6, so that it is always well formed.
fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// The TCP header of `seg`, checksum not yet set. SYNs carry an MSS option of [`MSS`].
fn tcp_header(seg: &Segment<'_>) -> TcpHeader {
    let bit = |b: u8| seg.flags & b != 0;
    let mut tcp = TcpHeader::new(seg.src.port(), seg.dst.port(), seg.seq, WINDOW);
    tcp.acknowledgment_number = seg.ack;
    (tcp.fin, tcp.syn, tcp.rst, tcp.psh) = (bit(0x01), bit(0x02), bit(0x04), bit(0x08));
    (tcp.ack, tcp.urg, tcp.ece, tcp.cwr) = (bit(0x10), bit(0x20), bit(0x40), bit(0x80));
    if tcp.syn {
        // Four bytes, well under the 40 a header can hold: this cannot fail.
        let _ = tcp.set_options(&[TcpOptionElement::MaximumSegmentSize(MSS as u16)]);
    }
    tcp
}

/// Appends `seg` to `out` as an Ethernet frame: zero MACs, an IPv4 header (with its checksum)
/// or an IPv6 header, and a TCP header with its checksum over the pseudo-header. SYNs carry an
/// MSS option of [`MSS`]. A payload too long for one IP packet (never one of [`Flow`]'s, which
/// split at [`MSS`]) is written with a zero TCP checksum.
pub fn emit_frame(seg: &Segment<'_>, out: &mut Vec<u8>) {
    let mut tcp = tcp_header(seg);
    let tcp_len = tcp.header_len() + seg.payload.len();
    let mut ethernet = Ethernet2Header {
        source: [0; 6],
        destination: [0; 6],
        ether_type: EtherType::IPV4,
    };
    match (seg.src.ip(), seg.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = Ipv4Header {
                total_len: (IPV4_HEADER_LEN + tcp_len) as u16,
                identification: seg.ip_id,
                dont_fragment: true,
                time_to_live: TTL,
                protocol: IpNumber::TCP,
                source: s.octets(),
                destination: d.octets(),
                ..Ipv4Header::default()
            };
            ip.header_checksum = ip.calc_header_checksum();
            tcp.checksum = tcp.calc_checksum_ipv4(&ip, seg.payload).unwrap_or(0);
            out.extend_from_slice(&ethernet.to_bytes());
            out.extend_from_slice(&ip.to_bytes());
        }
        (s, d) => {
            let ip = Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: tcp_len as u16,
                next_header: IpNumber::TCP,
                hop_limit: TTL,
                source: to_v6(s).octets(),
                destination: to_v6(d).octets(),
            };
            tcp.checksum = tcp.calc_checksum_ipv6(&ip, seg.payload).unwrap_or(0);
            ethernet.ether_type = EtherType::IPV6;
            out.extend_from_slice(&ethernet.to_bytes());
            out.extend_from_slice(&ip.to_bytes());
        }
    }
    out.extend_from_slice(&tcp.to_bytes());
    out.extend_from_slice(seg.payload);
}

/// Length of the Ethernet, IP and TCP headers [`emit_frame`] puts before a payload.
pub fn header_len(ipv6: bool, syn: bool) -> usize {
    ETHERNET_HEADER_LEN
        + if ipv6 {
            IPV6_HEADER_LEN
        } else {
            IPV4_HEADER_LEN
        }
        + TCP_HEADER_LEN
        + if syn { TCP_MSS_OPTION_LEN } else { 0 }
}

/// What a recorder wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordSummary {
    /// Packet records written.
    pub packets: u64,
    /// Bytes of the file, header included.
    pub bytes: u64,
}

struct Inner {
    writer: PcapWriter<SharedOut>,
    out: SharedOut,
    /// Latest timestamp written: records stay in time order even when two flows race for the
    /// lock with timestamps taken just before.
    last: Timestamp,
    summary: RecordSummary,
    /// The first write error; later writes are dropped.
    error: Option<io::Error>,
}

/// A pcap file being written, shared by every flow of a run.
pub struct Recorder {
    inner: Mutex<Inner>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Recorder")
            .field("summary", &inner.summary)
            .field("error", &inner.error)
            .finish_non_exhaustive()
    }
}

/// Size of a classic pcap file header and of a record header.
const PCAP_HEADER_LEN: u64 = 24;
const PCAP_RECORD_HEADER_LEN: u64 = 16;

fn pcap_error(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl Recorder {
    /// A recorder writing to `writer`: the pcap file header (little-endian, microsecond
    /// timestamps, Ethernet) is written now.
    pub fn new(writer: Box<dyn Write + Send>) -> io::Result<Recorder> {
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::MicroSecond,
            endianness: Endianness::Little,
        };
        let out = SharedOut(Arc::new(Mutex::new(writer)));
        let writer = PcapWriter::with_header(out.clone(), header).map_err(pcap_error)?;
        Ok(Recorder {
            inner: Mutex::new(Inner {
                writer,
                out,
                last: Timestamp::default(),
                summary: RecordSummary {
                    packets: 0,
                    bytes: PCAP_HEADER_LEN,
                },
                error: None,
            }),
        })
    }

    /// A recorder writing (buffered) to a new file at `path`.
    pub fn create(path: &Path) -> io::Result<Arc<Recorder>> {
        let file = std::fs::File::create(path)?;
        Ok(Arc::new(Recorder::new(Box::new(
            BufWriter::with_capacity(1 << 16, file),
        ))?))
    }

    /// Writes the frames `buf[ends[i-1]..ends[i]]`, all stamped `ts` (or the latest timestamp
    /// already written, if that is later).
    fn write_frames(&self, ts: Timestamp, buf: &[u8], ends: &[usize], flush: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.error.is_some() {
            return;
        }
        let ts = ts.max(inner.last);
        inner.last = ts;
        let mut start = 0;
        for &end in ends {
            let frame = &buf[start..end];
            start = end;
            let packet = PcapPacket::new(ts.as_duration(), frame.len() as u32, frame);
            if let Err(e) = inner.writer.write_packet(&packet) {
                inner.error = Some(pcap_error(e));
                return;
            }
            inner.summary.packets += 1;
            inner.summary.bytes += PCAP_RECORD_HEADER_LEN + frame.len() as u64;
        }
        if flush && let Err(e) = inner.out.flush_now() {
            inner.error = Some(e);
        }
    }

    /// Flushes what was written so far to the underlying writer.
    pub fn flush(&self) -> io::Result<()> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.out.flush_now()
    }

    /// Flushes, and reports what was written or the first error met.
    pub fn finish(&self) -> io::Result<RecordSummary> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = inner.error.take() {
            let again = io::Error::new(e.kind(), e.to_string());
            inner.error = Some(e);
            return Err(again);
        }
        inner.out.flush_now()?;
        Ok(inner.summary)
    }

    /// What was written so far.
    pub fn summary(&self) -> RecordSummary {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .summary
    }
}

/// The writer under the `PcapWriter`, reachable from outside it for flushing (the crate hands
/// its writer out only by value). Only ever locked while [`Recorder`]'s own lock is held, so it
/// is never contended.
#[derive(Clone)]
struct SharedOut(Arc<Mutex<Box<dyn Write + Send>>>);

impl SharedOut {
    fn flush_now(&self) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
    }
}

impl Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_now()
    }
}

/// One recorded TCP connection: both directions' next sequence numbers and the frames built
/// from each event, handed to the shared [`Recorder`].
pub struct Flow {
    recorder: Arc<Recorder>,
    client: SocketAddr,
    server: SocketAddr,
    /// Next sequence number of each direction, indexed by [`index`].
    next_seq: [u32; 2],
    /// IPv4 identification of each direction's next packet.
    ip_id: [u16; 2],
    opened: bool,
    closed: bool,
    paused: bool,
    /// The side that closes, stamped with the wall clock, if the flow is dropped unclosed.
    close_on_drop: Option<Direction>,
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl fmt::Debug for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("client", &self.client)
            .field("server", &self.server)
            .field("next_seq", &self.next_seq)
            .field("opened", &self.opened)
            .field("closed", &self.closed)
            .field("paused", &self.paused)
            .finish_non_exhaustive()
    }
}

fn index(d: Direction) -> usize {
    match d {
        Direction::ToServer => 0,
        Direction::ToClient => 1,
    }
}

fn other(d: Direction) -> Direction {
    match d {
        Direction::ToServer => Direction::ToClient,
        Direction::ToClient => Direction::ToServer,
    }
}

impl Flow {
    /// A connection from `client` to `server` whose initial sequence numbers are `isn`
    /// (client's, server's); nothing is written until [`Flow::open`].
    pub fn new(
        recorder: Arc<Recorder>,
        client: SocketAddr,
        server: SocketAddr,
        isn: [u32; 2],
    ) -> Flow {
        Flow {
            recorder,
            client,
            server,
            next_seq: isn,
            ip_id: [1, 1],
            opened: false,
            closed: false,
            paused: false,
            close_on_drop: None,
            buf: Vec::with_capacity(1024),
            ends: Vec::with_capacity(4),
        }
    }

    /// A connection with random initial sequence numbers, opened now: what the drivers call
    /// when a socket connects or is accepted.
    pub fn start(recorder: Arc<Recorder>, client: SocketAddr, server: SocketAddr) -> Flow {
        let mut flow = Flow::new(recorder, client, server, rand::random());
        flow.open(now());
        flow
    }

    /// Makes dropping the flow unclosed record a close by `by` at the wall-clock time of the
    /// drop: a driver whose task is cancelled, or whose connection is dropped anywhere, still
    /// leaves a complete connection in the file.
    pub fn close_on_drop(&mut self, by: Direction) {
        self.close_on_drop = Some(by);
    }

    /// The client's address.
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Whether [`Flow::close`] was recorded.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Stops (`true`) or resumes recording data. Paused data is left out as if it had never
    /// been sent: sequence numbers do not advance, so the file still holds a gap-free stream
    /// (load's sampling of a reused connection).
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    fn push(&mut self, from: Direction, flags: u8, payload: &[u8], advance: u32) {
        let (src, dst) = match from {
            Direction::ToServer => (self.client, self.server),
            Direction::ToClient => (self.server, self.client),
        };
        let i = index(from);
        let seg = Segment {
            src,
            dst,
            seq: self.next_seq[i],
            ack: if flags & tcp_flags::ACK != 0 {
                self.next_seq[1 - i]
            } else {
                0
            },
            flags,
            ip_id: self.ip_id[i],
            payload,
        };
        emit_frame(&seg, &mut self.buf);
        self.ends.push(self.buf.len());
        self.ip_id[i] = self.ip_id[i].wrapping_add(1);
        self.next_seq[i] = self.next_seq[i].wrapping_add(advance);
    }

    fn emit(&mut self, ts: Timestamp, flush: bool) {
        self.recorder.write_frames(ts, &self.buf, &self.ends, flush);
        self.buf.clear();
        self.ends.clear();
    }

    /// Records the three-way handshake at `ts`. Only the first call does anything.
    pub fn open(&mut self, ts: Timestamp) {
        if self.opened {
            return;
        }
        self.opened = true;
        use tcp_flags::{ACK, SYN};
        self.push(Direction::ToServer, SYN, &[], 1);
        self.push(Direction::ToClient, SYN | ACK, &[], 1);
        self.push(Direction::ToServer, ACK, &[], 0);
        self.emit(ts, false);
    }

    /// Records `bytes` sent in `direction` at `ts`: one segment per call, split at [`MSS`].
    /// Ignored while paused, before [`Flow::open`] and after [`Flow::close`].
    pub fn data(&mut self, direction: Direction, bytes: &[u8], ts: Timestamp) {
        if self.paused || !self.opened || self.closed || bytes.is_empty() {
            return;
        }
        use tcp_flags::{ACK, PSH};
        let mut chunks = bytes.chunks(MSS).peekable();
        while let Some(chunk) = chunks.next() {
            let flags = if chunks.peek().is_none() {
                ACK | PSH
            } else {
                ACK
            };
            self.push(direction, flags, chunk, chunk.len() as u32);
        }
        self.emit(ts, false);
    }

    /// Records the close at `ts`: a FIN from the side `by` sends on, the other side's FIN, and
    /// the last ACK. Only the first call does anything; the file is flushed, so a recording is
    /// complete up to its last closed connection even if the process is killed.
    pub fn close(&mut self, by: Direction, ts: Timestamp) {
        if !self.opened || self.closed {
            return;
        }
        self.closed = true;
        use tcp_flags::{ACK, FIN};
        self.push(by, FIN | ACK, &[], 1);
        self.push(other(by), FIN | ACK, &[], 1);
        self.push(by, ACK, &[], 0);
        self.emit(ts, true);
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        if let Some(by) = self.close_on_drop {
            self.close(by, now());
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    // The Internet checksum written out independently of etherparse, to check its output.

    /// The RFC 1071 one's-complement sum of `data`, folded into `acc` (not yet complemented).
    fn sum16(mut acc: u32, data: &[u8]) -> u32 {
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            acc += u32::from(u16::from_be_bytes([*last, 0]));
        }
        acc
    }

    /// Folds carries and complements: the Internet checksum of what `acc` summed.
    fn fold(mut acc: u32) -> u16 {
        while acc > 0xFFFF {
            acc = (acc & 0xFFFF) + (acc >> 16);
        }
        !(acc as u16)
    }

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn test_checksum_rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (complement 220d).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum16(0, &data)), !0xddf2);
    }

    #[test]
    fn test_emit_ipv4_header_checksum_verifies() {
        let seg = Segment {
            src: "127.0.0.1:50000".parse().unwrap(),
            dst: "127.0.0.2:1688".parse().unwrap(),
            seq: 1,
            ack: 2,
            flags: tcp_flags::ACK | tcp_flags::PSH,
            ip_id: 7,
            payload: b"hello",
        };
        let mut out = Vec::new();
        emit_frame(&seg, &mut out);
        assert_eq!(out.len(), header_len(false, false) + 5);
        // Summing a header that includes its checksum gives 0xFFFF, whose complement is 0.
        assert_eq!(fold(sum16(0, &out[14..34])), 0);
        // Likewise the TCP segment with its pseudo-header (addresses, protocol 6, length).
        let tcp = &out[34..];
        let pseudo = sum16(0, &out[26..34]) + 6 + tcp.len() as u32;
        assert_eq!(fold(sum16(pseudo, tcp)), 0);
    }

    #[test]
    fn test_flow_sequence_numbers() {
        let buf = Shared::default();
        let rec = Arc::new(Recorder::new(Box::new(buf.clone())).unwrap());
        let c: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let s: SocketAddr = "127.0.0.1:1688".parse().unwrap();
        let mut flow = Flow::new(rec.clone(), c, s, [100, u32::MAX]);
        let ts = Timestamp::new(1, 0);
        flow.open(ts);
        assert_eq!(flow.next_seq, [101, 0]);
        flow.data(Direction::ToServer, &[1; 3000], ts);
        assert_eq!(flow.next_seq, [3101, 0]);
        flow.set_paused(true);
        flow.data(Direction::ToClient, &[2; 10], ts);
        flow.set_paused(false);
        flow.data(Direction::ToClient, &[2; 10], ts);
        assert_eq!(flow.next_seq, [3101, 10]);
        flow.close(Direction::ToServer, ts);
        flow.close(Direction::ToClient, ts);
        assert_eq!(flow.next_seq, [3102, 11]);
        // 3 handshake, 3 segments for 3000 bytes, 1 reply, 3 for the close.
        assert_eq!(rec.finish().unwrap().packets, 10);
        let bytes = buf.0.lock().unwrap().clone();
        assert_eq!(rec.summary().bytes, bytes.len() as u64);
    }
}
