//! Capture file framing: classic pcap and pcapng records as (number, timestamp, link type, bytes).
//!
//! Classic pcap headers and records go through the `pcap-file` crate. pcapng blocks are framed
//! here instead, because pcap-file 2.0.0 takes Enhanced Packet Block timestamps as nanoseconds
//! whatever the interface's `if_tsresol` says (the pcapng default is microseconds), rejects a
//! 4-byte `if_tzone` option, and rejects option lists that end without `opt_endofopt`; all three
//! occur in files that Wireshark reads.

use std::io::{self, Chain, Cursor, Read};

use pcap_file::pcap::{PcapHeader, PcapParser};
use pcap_file::{Endianness, TsResolution};
use serde::Serialize;

use super::{CaptureError, Skip, SkipReason, Timestamp};

/// Classic pcap magic for microsecond timestamps (pcap-savefile(5)), as read in the writer's
/// byte order.
const PCAP_MAGIC_MICROS: u32 = 0xA1B2_C3D4;
/// Classic pcap magic for nanosecond timestamps (pcap-savefile(5)).
const PCAP_MAGIC_NANOS: u32 = 0xA1B2_3C4D;
/// Microsecond-resolution fractions count up to this, and scale to nanoseconds by the next.
const MICROS_PER_SEC: u32 = 1_000_000;
const NANOS_PER_MICRO: u32 = 1_000;
/// Classic pcap file header length (pcap-savefile(5)).
const PCAP_HEADER_LEN: usize = 24;
/// Classic pcap per-record header: ts_sec, ts_frac, incl_len, orig_len (pcap-savefile(5)).
const PCAP_RECORD_HEADER_LEN: usize = 16;
/// The link type proper is the low 16 bits of the header field; the bits above carry FCS
/// information (draft-ietf-opsawg-pcap, "LinkType and additional information").
const PCAP_LINKTYPE_MASK: u32 = 0xFFFF;

/// pcapng block type codes (draft-ietf-opsawg-pcapng, section 11.1).
mod block {
    /// Section Header Block; its type reads the same in both byte orders.
    pub const SECTION_HEADER: u32 = 0x0A0D_0D0A;
    /// Interface Description Block.
    pub const INTERFACE_DESCRIPTION: u32 = 0x0000_0001;
    /// Packet Block (obsolete, still written by old tools).
    pub const PACKET: u32 = 0x0000_0002;
    /// Simple Packet Block.
    pub const SIMPLE_PACKET: u32 = 0x0000_0003;
    /// Enhanced Packet Block.
    pub const ENHANCED_PACKET: u32 = 0x0000_0006;
}
/// Byte-order magic inside the Section Header Block body, as written by the file's writer.
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// The pcapng major version this reader understands (draft-ietf-opsawg-pcapng, 4.1).
const PCAPNG_MAJOR_VERSION: u16 = 1;
/// Block type plus leading total length.
const PCAPNG_BLOCK_HEADER_LEN: usize = 8;
/// Header, trailing total length, and an empty body.
const PCAPNG_MIN_BLOCK_LEN: usize = 12;
/// Block bodies and option values are padded to 32 bits (draft-ietf-opsawg-pcapng, 3.1).
const PCAPNG_ALIGN: usize = 4;
/// Interface Description Block option codes (draft-ietf-opsawg-pcapng, 4.2).
const OPT_END_OF_OPT: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;
/// `if_tsresol` high bit: the remaining bits are a power of two rather than of ten.
const TSRESOL_BINARY: u8 = 0x80;
/// Default `if_tsresol` when the option is absent: 10^-6 s.
const TSRESOL_DEFAULT: u8 = 6;
/// Fixed fields of an Enhanced Packet Block body before the packet data.
const EPB_FIXED_LEN: usize = 20;
/// Fixed fields of a (obsolete) Packet Block body before the packet data.
const PB_FIXED_LEN: usize = 20;
/// Fixed field of a Simple Packet Block body: the original length.
const SPB_FIXED_LEN: usize = 4;

/// The container format of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[non_exhaustive]
pub enum Format {
    /// Classic libpcap format.
    Pcap {
        /// Timestamps carry nanoseconds (magic 0xa1b23c4d) rather than microseconds.
        nanosecond: bool,
        /// The writer was big-endian.
        big_endian: bool,
        /// The file's link type (LINKTYPE_ value).
        linktype: u32,
    },
    /// pcapng, each interface with its own link type.
    PcapNg,
}

/// One packet record.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    /// Packet record number, from 1.
    pub number: usize,
    pub ts: Timestamp,
    pub linktype: u32,
    /// The captured bytes (possibly fewer than went on the wire).
    pub data: &'a [u8],
}

/// What one step of reading gives.
#[derive(Debug)]
pub(crate) enum Entry<'a> {
    Packet(Record<'a>),
    /// A packet record that cannot be handed on (e.g. on an undefined pcapng interface).
    Skipped(Skip),
}

/// The packet records of a capture file, read one at a time from a [`Read`]; reading ends
/// after the first error. Only the current record or block is held in memory, so a file of
/// any length is read in memory bounded by its largest record.
///
/// Not an [`Iterator`]: each record borrows the reader's buffer until the next call.
#[derive(Debug)]
pub(crate) struct Records<R> {
    input: Chain<Cursor<Vec<u8>>, R>,
    /// The current record or block.
    buf: Vec<u8>,
    /// Offset of the next record or block.
    pos: usize,
    /// Number of the next packet record.
    next_number: usize,
    kind: Kind,
    done: bool,
}

#[derive(Debug)]
enum Kind {
    Pcap(PcapHeader),
    PcapNg(PcapNgState),
}

#[derive(Debug, Default)]
struct PcapNgState {
    big_endian: bool,
    interfaces: Vec<Interface>,
    /// Simple Packet Blocks carry no timestamp; they are given the last one seen.
    last_ts: Timestamp,
}

/// What an Interface Description Block says that packets need.
#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u16,
    snaplen: u32,
    tsresol: u8,
    /// Seconds to add to every timestamp (`if_tsoffset`).
    tsoffset: i64,
}

/// Reads until `buf` holds `want` more bytes or the input ends; returns how many were added.
/// The buffer grows with what arrives, so a length field claiming gigabytes costs only the
/// bytes that are really there.
fn fill(input: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    let before = buf.len();
    input.take(want as u64).read_to_end(buf)?;
    Ok(buf.len() - before)
}

impl<R: Read> Records<R> {
    /// Recognises the format by magic and reads the file header.
    pub fn open(mut input: R) -> Result<Records<R>, CaptureError> {
        let mut head = Vec::with_capacity(PCAP_HEADER_LEN);
        fill(&mut input, &mut head, PCAP_HEADER_LEN).map_err(|e| read_error(&e, 1, 0))?;
        let Some(magic) = read_u32(&head, 0, true) else {
            return Err(CaptureError::TooShort { len: head.len() });
        };
        let is_pcap = [PCAP_MAGIC_MICROS, PCAP_MAGIC_NANOS]
            .iter()
            .any(|&m| magic == m || magic == m.swap_bytes());
        let (kind, pos, replay) = if magic == block::SECTION_HEADER {
            // The Section Header Block is parsed as the first block, like any later one.
            (Kind::PcapNg(PcapNgState::default()), 0, head)
        } else if is_pcap {
            let header = match PcapParser::new(&head) {
                Ok((_, parser)) => parser.header(),
                Err(_) => {
                    return Err(CaptureError::TruncatedHeader {
                        format: "pcap",
                        needed: PCAP_HEADER_LEN,
                        available: head.len(),
                    });
                }
            };
            let linktype = u32::from(header.datalink) & PCAP_LINKTYPE_MASK;
            if !super::packet::is_supported(linktype) {
                return Err(CaptureError::UnsupportedLinkType { linktype });
            }
            (Kind::Pcap(header), PCAP_HEADER_LEN, Vec::new())
        } else {
            return Err(CaptureError::UnknownMagic { magic });
        };
        Ok(Records {
            input: Cursor::new(replay).chain(input),
            buf: Vec::new(),
            pos,
            next_number: 1,
            kind,
            done: false,
        })
    }

    pub fn format(&self) -> Format {
        match &self.kind {
            Kind::Pcap(h) => Format::Pcap {
                nanosecond: h.ts_resolution == TsResolution::NanoSecond,
                big_endian: h.endianness == Endianness::Big,
                linktype: u32::from(h.datalink) & PCAP_LINKTYPE_MASK,
            },
            Kind::PcapNg(_) => Format::PcapNg,
        }
    }

    /// The next packet record, `None` at the end of the file or after an error.
    pub fn next(&mut self) -> Option<Result<Entry<'_>, CaptureError>> {
        if self.done {
            return None;
        }
        // Reading stops unless a record is returned (which clears this again).
        self.done = true;
        match &self.kind {
            Kind::Pcap(_) => self.next_pcap(),
            Kind::PcapNg(_) => self.next_pcapng(),
        }
    }

    fn next_pcap(&mut self) -> Option<Result<Entry<'_>, CaptureError>> {
        let Kind::Pcap(header) = &self.kind else {
            return None;
        };
        let number = self.next_number;
        let offset = self.pos;
        self.buf.clear();
        let got = match fill(&mut self.input, &mut self.buf, PCAP_RECORD_HEADER_LEN) {
            Ok(n) => n,
            Err(e) => return Some(Err(read_error(&e, number, offset))),
        };
        if got == 0 {
            return None;
        }
        let big = header.endianness == Endianness::Big;
        let field = |at| read_u32(&self.buf, at, big).unwrap_or(0);
        if got < PCAP_RECORD_HEADER_LEN {
            return Some(Err(CaptureError::Truncated {
                what: "pcap record header",
                record: number,
                offset,
                needed: PCAP_RECORD_HEADER_LEN as u64,
                available: got,
            }));
        }
        // Original lengths above the snap length are accepted: writers produce exactly that
        // when they cut a packet.
        let (ts_sec, ts_frac, incl) = (field(0), field(4), field(8));
        let data_got = match fill(&mut self.input, &mut self.buf, incl as usize) {
            Ok(n) => n,
            Err(e) => return Some(Err(read_error(&e, number, offset))),
        };
        if data_got < incl as usize {
            return Some(Err(CaptureError::Truncated {
                what: "pcap record data",
                record: number,
                offset,
                needed: PCAP_RECORD_HEADER_LEN as u64 + u64::from(incl),
                available: PCAP_RECORD_HEADER_LEN + data_got,
            }));
        }
        self.pos = offset
            .saturating_add(PCAP_RECORD_HEADER_LEN)
            .saturating_add(data_got);
        self.next_number += 1;
        self.done = false;
        // A fraction past one second is malformed; carrying it keeps timestamps ordered.
        let (carry, nanos) = match header.ts_resolution {
            TsResolution::MicroSecond => (
                ts_frac / MICROS_PER_SEC,
                ts_frac % MICROS_PER_SEC * NANOS_PER_MICRO,
            ),
            TsResolution::NanoSecond => (0, ts_frac),
        };
        Some(Ok(Entry::Packet(Record {
            number,
            ts: Timestamp::new(u64::from(ts_sec) + u64::from(carry), nanos),
            linktype: u32::from(header.datalink) & PCAP_LINKTYPE_MASK,
            data: self.buf.get(PCAP_RECORD_HEADER_LEN..).unwrap_or_default(),
        })))
    }

    /// Reads blocks until a packet block, or the end.
    fn next_pcapng(&mut self) -> Option<Result<Entry<'_>, CaptureError>> {
        loop {
            let offset = self.pos;
            let number = self.next_number;
            self.buf.clear();
            let got = match fill(&mut self.input, &mut self.buf, PCAPNG_MIN_BLOCK_LEN) {
                Ok(n) => n,
                Err(e) => return Some(Err(read_error(&e, number, offset))),
            };
            if got == 0 {
                return None;
            }
            let Kind::PcapNg(state) = &mut self.kind else {
                return None;
            };
            let truncated = |needed: u64, available: usize| CaptureError::Truncated {
                what: "pcapng block",
                record: number,
                offset,
                needed,
                available,
            };
            let malformed = |problem: String| CaptureError::Malformed {
                what: "pcapng block",
                record: number,
                offset,
                problem,
            };
            let head = &self.buf;
            let Some(block_type) = read_u32(head, 0, state.big_endian) else {
                return Some(Err(truncated(PCAPNG_MIN_BLOCK_LEN as u64, got)));
            };
            // A Section Header Block may switch byte order, so its own magic decides how to read
            // its length.
            let big_endian = if block_type == block::SECTION_HEADER {
                match read_u32(head, PCAPNG_BLOCK_HEADER_LEN, true) {
                    None => return Some(Err(truncated(PCAPNG_MIN_BLOCK_LEN as u64, got))),
                    Some(PCAPNG_BYTE_ORDER_MAGIC) => true,
                    Some(m) if m == PCAPNG_BYTE_ORDER_MAGIC.swap_bytes() => false,
                    Some(m) => {
                        return Some(Err(malformed(format!(
                            "section header byte-order magic {m:#010x} is neither \
                             1a2b3c4d nor 4d3c2b1a"
                        ))));
                    }
                }
            } else {
                state.big_endian
            };
            let Some(total) = read_u32(head, 4, big_endian) else {
                return Some(Err(truncated(PCAPNG_MIN_BLOCK_LEN as u64, got)));
            };
            let total_len = total as usize;
            if total_len < PCAPNG_MIN_BLOCK_LEN || !total_len.is_multiple_of(PCAPNG_ALIGN) {
                return Some(Err(malformed(format!(
                    "block type {block_type:#010x} has total length {total}, \
                     not a multiple of 4 of at least 12"
                ))));
            }
            let rest_got = match fill(&mut self.input, &mut self.buf, total_len - got) {
                Ok(n) => n,
                Err(e) => return Some(Err(read_error(&e, number, offset))),
            };
            if got + rest_got < total_len {
                return Some(Err(truncated(u64::from(total), got + rest_got)));
            }
            let block = &self.buf;
            let trailer_pos = total_len - PCAPNG_ALIGN;
            let trailer = read_u32(block, trailer_pos, big_endian);
            if trailer != Some(total) {
                return Some(Err(malformed(format!(
                    "block type {block_type:#010x}: trailing length {} differs from leading \
                     length {total}",
                    trailer.unwrap_or(0)
                ))));
            }
            self.pos = offset.saturating_add(total_len);

            match block_type {
                block::SECTION_HEADER => {
                    let body = block
                        .get(PCAPNG_BLOCK_HEADER_LEN..trailer_pos)
                        .unwrap_or_default();
                    let major = read_u16(body, 4, big_endian).unwrap_or(0);
                    if major != PCAPNG_MAJOR_VERSION {
                        return Some(Err(malformed(format!(
                            "section header version {major} is not {PCAPNG_MAJOR_VERSION}"
                        ))));
                    }
                    // Interfaces are numbered per section.
                    state.big_endian = big_endian;
                    state.interfaces.clear();
                }
                block::INTERFACE_DESCRIPTION => {
                    let body = block
                        .get(PCAPNG_BLOCK_HEADER_LEN..trailer_pos)
                        .unwrap_or_default();
                    let (Some(linktype), Some(snaplen)) =
                        (read_u16(body, 0, big_endian), read_u32(body, 4, big_endian))
                    else {
                        return Some(Err(malformed(format!(
                            "interface description body is {} bytes, needs 8",
                            body.len()
                        ))));
                    };
                    let mut iface = Interface {
                        linktype,
                        snaplen,
                        tsresol: TSRESOL_DEFAULT,
                        tsoffset: 0,
                    };
                    for (code, value) in options(body.get(8..).unwrap_or_default(), big_endian) {
                        match (code, value) {
                            (OPT_IF_TSRESOL, [r]) => iface.tsresol = *r,
                            (OPT_IF_TSOFFSET, v) => {
                                if let Some(o) = read_u64(v, 0, big_endian) {
                                    iface.tsoffset = o as i64;
                                }
                            }
                            _ => {}
                        }
                    }
                    state.interfaces.push(iface);
                }
                block::ENHANCED_PACKET | block::PACKET | block::SIMPLE_PACKET => {
                    self.next_number += 1;
                    self.done = false;
                    let body = self
                        .buf
                        .get(PCAPNG_BLOCK_HEADER_LEN..trailer_pos)
                        .unwrap_or_default();
                    return Some(Ok(packet_block(state, block_type, body, number)));
                }
                // Name resolution, statistics, journal, custom and unknown blocks carry no
                // packets; the format says readers skip what they do not know.
                _ => {}
            }
        }
    }
}

/// A read failure of the underlying file, as the problem that stopped reading.
fn read_error(e: &io::Error, record: usize, offset: usize) -> CaptureError {
    CaptureError::Malformed {
        what: "read",
        record,
        offset,
        problem: e.to_string(),
    }
}

/// Turns a framed packet block body into a record, or a skip if the record is unusable.
fn packet_block<'a>(
    state: &mut PcapNgState,
    block_type: u32,
    body: &'a [u8],
    number: usize,
) -> Entry<'a> {
    let be = state.big_endian;
    let skip = |reason| {
        Entry::Skipped(Skip {
            record: number,
            reason,
        })
    };
    let truncated = |needed: usize| {
        skip(SkipReason::Truncated {
            layer: "pcapng packet block",
            needed,
            available: body.len(),
        })
    };
    // (interface, timestamp ticks, captured length, data offset)
    let fields = match block_type {
        block::ENHANCED_PACKET => (
            read_u32(body, 0, be),
            read_u32(body, 4, be),
            read_u32(body, 8, be),
            read_u32(body, 12, be),
            EPB_FIXED_LEN,
        ),
        block::PACKET => (
            read_u16(body, 0, be).map(u32::from),
            read_u32(body, 4, be),
            read_u32(body, 8, be),
            read_u32(body, 12, be),
            PB_FIXED_LEN,
        ),
        _ => {
            // Simple Packet Block: interface 0, no timestamp, data up to the snap length.
            let Some(orig_len) = read_u32(body, 0, be) else {
                return truncated(SPB_FIXED_LEN);
            };
            let Some(iface) = state.interfaces.first() else {
                return skip(SkipReason::UnknownInterface(0));
            };
            let mut len = (orig_len as usize).min(body.len().saturating_sub(SPB_FIXED_LEN));
            if iface.snaplen != 0 {
                len = len.min(iface.snaplen as usize);
            }
            let data = body
                .get(SPB_FIXED_LEN..SPB_FIXED_LEN.saturating_add(len))
                .unwrap_or_default();
            return Entry::Packet(Record {
                number,
                ts: state.last_ts,
                linktype: u32::from(iface.linktype),
                data,
            });
        }
    };
    let (Some(iface_id), Some(ts_high), Some(ts_low), Some(caplen), fixed) = fields else {
        return truncated(EPB_FIXED_LEN);
    };
    let Some(iface) = state.interfaces.get(iface_id as usize).copied() else {
        return skip(SkipReason::UnknownInterface(iface_id));
    };
    let Some(data) = body.get(fixed..fixed.saturating_add(caplen as usize)) else {
        return skip(SkipReason::Malformed {
            layer: "pcapng packet block",
            problem: format!(
                "captured length {caplen} runs past the {}-byte block body",
                body.len()
            ),
        });
    };
    let ticks = (u64::from(ts_high) << 32) | u64::from(ts_low);
    let Some(ts) = ticks_to_timestamp(ticks, iface.tsresol, iface.tsoffset) else {
        return skip(SkipReason::TimestampResolution(iface.tsresol));
    };
    state.last_ts = ts;
    Entry::Packet(Record {
        number,
        ts,
        linktype: u32::from(iface.linktype),
        data,
    })
}

/// Converts pcapng timestamp units to a [`Timestamp`]; `None` if the resolution cannot be
/// represented in 64-bit arithmetic (10^-20 s and finer, 2^-64 s and finer).
fn ticks_to_timestamp(ticks: u64, tsresol: u8, tsoffset: i64) -> Option<Timestamp> {
    let exponent = u32::from(tsresol & !TSRESOL_BINARY);
    let (secs, nanos) = if tsresol & TSRESOL_BINARY != 0 {
        if exponent >= u64::BITS {
            return None;
        }
        let frac = ticks & ((1u64 << exponent) - 1);
        let nanos = (u128::from(frac) * u128::from(super::NANOS_PER_SEC)) >> exponent;
        (ticks >> exponent, u32::try_from(nanos).ok()?)
    } else {
        let per_sec = 10u64.checked_pow(exponent)?;
        let frac = ticks % per_sec;
        let nanos = u128::from(frac) * u128::from(super::NANOS_PER_SEC) / u128::from(per_sec);
        (ticks / per_sec, u32::try_from(nanos).ok()?)
    };
    let secs = if tsoffset >= 0 {
        secs.saturating_add(tsoffset.unsigned_abs())
    } else {
        secs.saturating_sub(tsoffset.unsigned_abs())
    };
    Some(Timestamp::new(secs, nanos))
}

/// The (code, value) pairs of a pcapng option list. Stops quietly at `opt_endofopt`, at the end
/// of the list, or at an option that runs past it: options only refine a block, so a damaged
/// list should not cost the packets.
fn options(mut list: &[u8], big_endian: bool) -> impl Iterator<Item = (u16, &[u8])> {
    core::iter::from_fn(move || {
        let code = read_u16(list, 0, big_endian)?;
        let len = usize::from(read_u16(list, 2, big_endian)?);
        if code == OPT_END_OF_OPT {
            return None;
        }
        let value = list.get(4..4 + len)?;
        let padded = (4 + len).next_multiple_of(PCAPNG_ALIGN);
        list = list.get(padded..).unwrap_or_default();
        Some((code, value))
    })
}

fn read_u16(bytes: &[u8], at: usize, big_endian: bool) -> Option<u16> {
    let b: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if big_endian {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    })
}

fn read_u32(bytes: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

fn read_u64(bytes: &[u8], at: usize, big_endian: bool) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(if big_endian {
        u64::from_be_bytes(b)
    } else {
        u64::from_le_bytes(b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_timestamp_resolutions() {
        // Default microseconds.
        assert_eq!(
            ticks_to_timestamp(1_795_492_213_881_357, 6, 0),
            Some(Timestamp::new(1_795_492_213, 881_357_000))
        );
        // Nanoseconds, as Wireshark writes for Linux captures.
        assert_eq!(
            ticks_to_timestamp(1_795_492_213_881_357_123, 9, 0),
            Some(Timestamp::new(1_795_492_213, 881_357_123))
        );
        // 2^-10 s units: 1.5 s is 1536 ticks.
        assert_eq!(
            ticks_to_timestamp(1536, 0x80 | 10, 0),
            Some(Timestamp::new(1, 500_000_000))
        );
        // Offsets in seconds, both signs.
        assert_eq!(
            ticks_to_timestamp(2_000_000, 6, 10),
            Some(Timestamp::new(12, 0))
        );
        assert_eq!(
            ticks_to_timestamp(2_000_000, 6, -10),
            Some(Timestamp::new(0, 0))
        );
        // Picoseconds still fit; 10^-20 does not.
        assert_eq!(
            ticks_to_timestamp(1_000_000_000_001_000, 12, 0),
            Some(Timestamp::new(1000, 1))
        );
        assert_eq!(ticks_to_timestamp(1, 20, 0), None);
        assert_eq!(ticks_to_timestamp(1, 0x80 | 64, 0), None);
        assert!(ticks_to_timestamp(u64::MAX, 0x80 | 63, 0).is_some());
    }

    #[test]
    fn option_lists_end_cleanly_on_damage() {
        // tsresol=9, then an option claiming 200 bytes.
        let list = [9, 0, 1, 0, 9, 0, 0, 0, 2, 0, 200, 0, 1, 2];
        let got: Vec<_> = options(&list, false).collect();
        assert_eq!(got, vec![(9, &[9u8][..])]);
        // No opt_endofopt at all.
        let got: Vec<_> = options(&list[..8], false).collect();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn unknown_magic_and_short_files() {
        assert_eq!(
            Records::open(&b""[..]).err(),
            Some(CaptureError::TooShort { len: 0 })
        );
        assert_eq!(
            Records::open(&b"GIF89a"[..]).err(),
            Some(CaptureError::UnknownMagic { magic: 0x4749_4638 })
        );
        assert_eq!(
            Records::open(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0][..]).err(),
            Some(CaptureError::TruncatedHeader {
                format: "pcap",
                needed: 24,
                available: 6
            })
        );
    }
}
