//! Frame decoding down to TCP: link headers (Ethernet with VLAN tags, Linux cooked v1 and v2,
//! BSD loopback, raw IP), then IPv4 or IPv6 (walking extension headers), then the TCP header.
//!
//! The Ethernet, VLAN, IPv4, IPv6 and TCP headers are read with `etherparse`'s header slices;
//! what to make of them (which damage skips a packet and why, lengths of 0 from segmentation
//! offload, frames cut by the snap length) is decided here. Three small shims cover what it
//! lacks or refuses: Linux cooked v2 (SLL2), which it does not know; Linux cooked v1, whose
//! parser rejects ARPHRD_LOOPBACK, the hardware type `tcpdump -i any` writes for loopback
//! traffic (so both cooked headers are read here: a fixed length, then an EtherType); and BSD
//! null/loop, a 4-byte address family. The IPv6 extension-header walk is ours as well: it steps
//! over Mobility, HIP, Shim6 and the experimental headers, where etherparse's walk stops.
//!
//! Checksums are not verified: captures taken on the sending host (loopback above all) carry
//! checksums that the NIC or kernel would have filled in later, so they are routinely wrong.

use std::net::{IpAddr, SocketAddr};

use etherparse::err::{ipv4, ipv6, tcp};
use etherparse::{
    EtherType, Ethernet2HeaderSlice, IpNumber, Ipv4HeaderSlice, Ipv6HeaderSlice,
    SingleVlanHeaderSlice, TcpHeaderSlice,
};

use super::SkipReason;

/// LINKTYPE_ values this module decodes (<https://www.tcpdump.org/linktypes.html>).
pub mod linktype {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    pub const NULL: u32 = 0;
    /// Ethernet II / 802.3, possibly with 802.1Q tags.
    pub const ETHERNET: u32 = 1;
    /// Raw IP; the version nibble says 4 or 6.
    pub const RAW: u32 = 101;
    /// OpenBSD loopback: like [`NULL`] but the family is big-endian.
    pub const LOOP: u32 = 108;
    /// Linux "cooked" capture, version 1 (16-byte header).
    pub const LINUX_SLL: u32 = 113;
    /// Raw IPv4.
    pub const IPV4: u32 = 228;
    /// Raw IPv6.
    pub const IPV6: u32 = 229;
    /// Linux "cooked" capture, version 2 (20-byte header).
    pub const LINUX_SLL2: u32 = 276;
}

/// 802.1Q customer tag, 802.1ad service tag, and the pre-standard QinQ value still in use.
const VLAN_TAGS: [EtherType; 3] = [
    EtherType::VLAN_TAGGED_FRAME,
    EtherType::PROVIDER_BRIDGING,
    EtherType::VLAN_DOUBLE_TAGGED_FRAME,
];
/// Destination MAC, source MAC, EtherType.
const ETHERNET_HEADER_LEN: usize = etherparse::Ethernet2Header::LEN;
/// Tag control information plus the inner EtherType.
const VLAN_TAG_LEN: usize = etherparse::SingleVlanHeader::LEN;
/// packet type, ARPHRD, address length, 8 address bytes, protocol (pcap-linktype(7), SLL).
const SLL_HEADER_LEN: usize = 16;
const SLL_PROTOCOL_AT: usize = 14;
/// protocol, reserved, interface index, ARPHRD, packet type, address length, 8 address bytes.
const SLL2_HEADER_LEN: usize = 20;
const SLL2_PROTOCOL_AT: usize = 0;
/// BSD loopback address family field.
const NULL_HEADER_LEN: usize = 4;
/// AF_INET on every BSD, Linux and Windows.
const AF_INET: u32 = 2;
/// AF_INET6 differs per OS: Linux 10, Windows 23, NetBSD/OpenBSD 24, FreeBSD 28, Darwin 30.
const AF_INET6: [u32; 5] = [10, 23, 24, 28, 30];

const IPV4_MIN_HEADER_LEN: usize = etherparse::Ipv4Header::MIN_LEN;
/// Version 4, header length 5 words: the first byte of an IPv4 header without options.
const IPV4_NO_OPTIONS: u8 = 0x45;
const IPV6_HEADER_LEN: usize = etherparse::Ipv6Header::LEN;
/// IP protocol / IPv6 next-header numbers (IANA "Assigned Internet Protocol Numbers").
const IPPROTO_TCP: u8 = 6;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_ESP: u8 = 50;
const IPPROTO_AH: u8 = 51;
const IPPROTO_NONE: u8 = 59;
/// IPv6 extension headers sharing the (next header, length in 8-octet units minus one) layout
/// (RFC 8200 4.3-4.6, RFC 6275 mobility, RFC 7401 HIP, RFC 5533 shim6, RFC 3692 experiments).
const IPV6_GENERIC_EXTENSIONS: [u8; 8] = [0, 43, 60, 135, 139, 140, 253, 254];
/// IPv6 fragment header length and its offset / M-flag word layout (RFC 8200 4.5).
const IPV6_FRAGMENT_HEADER_LEN: usize = 8;
const IPV6_FRAGMENT_OFFSET_MASK: u16 = 0xFFF8;
const IPV6_MORE_FRAGMENTS: u16 = 0x0001;

const TCP_MIN_HEADER_LEN: usize = etherparse::TcpHeader::MIN_LEN;
/// Offsets of the data offset and flags bytes in the TCP header (RFC 9293 3.1).
const TCP_DATA_OFFSET_AT: usize = 12;
const TCP_FLAGS_AT: usize = 13;

/// TCP flag bits (RFC 9293 3.1).
pub(crate) mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// One TCP segment as it left its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub flags: u8,
    /// The payload bytes that were captured.
    pub payload: &'a [u8],
    /// The payload length on the wire; more than `payload.len()` when the snap length cut it.
    pub wire_len: usize,
}

/// Whether [`decode`] knows this link type.
pub(crate) fn is_supported(linktype: u32) -> bool {
    use linktype::*;
    matches!(
        linktype,
        NULL | ETHERNET | RAW | LOOP | LINUX_SLL | IPV4 | IPV6 | LINUX_SLL2
    )
}

/// The network layer a link header announced.
enum Network {
    V4,
    V6,
    /// Raw IP: read the version nibble.
    Either,
}

/// Decodes a frame. `Ok(None)` means "not TCP" (ARP, UDP, ...), which callers ignore;
/// `Err` means a TCP-capable frame that cannot be used, with the reason.
pub(crate) fn decode(link: u32, frame: &[u8]) -> Result<Option<Segment<'_>>, SkipReason> {
    let (network, ip) = match link {
        linktype::ETHERNET => match ethernet(frame)? {
            Some(found) => found,
            None => return Ok(None),
        },
        linktype::LINUX_SLL | linktype::LINUX_SLL2 => {
            let (name, header_len, protocol_at) = if link == linktype::LINUX_SLL {
                ("Linux cooked (SLL)", SLL_HEADER_LEN, SLL_PROTOCOL_AT)
            } else {
                ("Linux cooked v2 (SLL2)", SLL2_HEADER_LEN, SLL2_PROTOCOL_AT)
            };
            let ip = frame
                .get(header_len..)
                .ok_or(truncated(name, header_len, frame.len()))?;
            match be16(frame, protocol_at).map(EtherType) {
                Some(EtherType::IPV4) => (Network::V4, ip),
                Some(EtherType::IPV6) => (Network::V6, ip),
                _ => return Ok(None),
            }
        }
        linktype::NULL | linktype::LOOP => {
            let header = frame
                .get(..NULL_HEADER_LEN)
                .and_then(|h| <[u8; 4]>::try_from(h).ok())
                .ok_or(truncated("loopback", NULL_HEADER_LEN, frame.len()))?;
            let family = if link == linktype::LOOP {
                u32::from_be_bytes(header)
            } else {
                // The capturing host's byte order is unknown; families are small numbers, so
                // whichever reading is small is the right one.
                let le = u32::from_le_bytes(header);
                if le <= u32::from(u16::MAX) {
                    le
                } else {
                    u32::from_be_bytes(header)
                }
            };
            let ip = frame.get(NULL_HEADER_LEN..).unwrap_or_default();
            if family == AF_INET {
                (Network::V4, ip)
            } else if AF_INET6.contains(&family) {
                (Network::V6, ip)
            } else {
                return Ok(None);
            }
        }
        linktype::RAW => (Network::Either, frame),
        linktype::IPV4 => (Network::V4, frame),
        linktype::IPV6 => (Network::V6, frame),
        other => return Err(SkipReason::UnsupportedLinkType(other)),
    };
    let network = match network {
        Network::Either => match ip.first().map(|b| b >> 4) {
            Some(4) => Network::V4,
            Some(6) => Network::V6,
            Some(v) => {
                return Err(SkipReason::Malformed {
                    layer: "raw IP",
                    problem: format!("version {v} is neither 4 nor 6"),
                });
            }
            None => return Err(truncated("raw IP", 1, 0)),
        },
        known => known,
    };
    let transport = match network {
        Network::V6 => ipv6(ip)?,
        _ => ipv4(ip)?,
    };
    match transport {
        Some(t) => tcp(&t).map(Some),
        None => Ok(None),
    }
}

/// Walks the Ethernet header and any VLAN tags.
fn ethernet(frame: &[u8]) -> Result<Option<(Network, &[u8])>, SkipReason> {
    let header = Ethernet2HeaderSlice::from_slice(frame)
        .map_err(|_| truncated("Ethernet", ETHERNET_HEADER_LEN, frame.len()))?;
    let mut ethertype = header.ether_type();
    let mut at = ETHERNET_HEADER_LEN;
    // Each tag is 4 bytes, so the loop ends with the frame even if every tag is another tag.
    while VLAN_TAGS.contains(&ethertype) {
        let end = at + VLAN_TAG_LEN;
        let tag = frame
            .get(at..)
            .and_then(|rest| SingleVlanHeaderSlice::from_slice(rest).ok())
            .ok_or(truncated("802.1Q tag", end, frame.len()))?;
        ethertype = tag.ether_type();
        at = end;
    }
    let rest = frame.get(at..).unwrap_or_default();
    Ok(match ethertype {
        EtherType::IPV4 => Some((Network::V4, rest)),
        EtherType::IPV6 => Some((Network::V6, rest)),
        _ => None,
    })
}

/// The transport part of an IP packet that carries TCP.
struct Transport<'a> {
    src: IpAddr,
    dst: IpAddr,
    /// Captured transport bytes (headers and payload).
    bytes: &'a [u8],
    /// Transport length on the wire.
    wire_len: usize,
}

fn ipv4(ip: &[u8]) -> Result<Option<Transport<'_>>, SkipReason> {
    let mut fixed = [0; IPV4_MIN_HEADER_LEN];
    let (header, options_cut) = match Ipv4HeaderSlice::from_slice(ip) {
        Ok(h) => (h, false),
        // Options cut by the snap length: the fixed part, read as a header without options,
        // still says whether this is an unfragmented TCP packet, which decides between "not
        // TCP", "fragment" and "cut short" as for any other packet.
        Err(ipv4::HeaderSliceError::Len(e)) if e.required_len > IPV4_MIN_HEADER_LEN => {
            if let Some(f) = ip.get(..IPV4_MIN_HEADER_LEN) {
                fixed.copy_from_slice(f);
            }
            fixed[0] = IPV4_NO_OPTIONS;
            match Ipv4HeaderSlice::from_slice(&fixed) {
                Ok(h) => (h, true),
                Err(_) => return Err(truncated("IPv4", IPV4_MIN_HEADER_LEN, ip.len())),
            }
        }
        Err(ipv4::HeaderSliceError::Len(_)) => {
            return Err(truncated("IPv4", IPV4_MIN_HEADER_LEN, ip.len()));
        }
        Err(ipv4::HeaderSliceError::Content(e)) => return Err(ipv4_malformed(&e)),
    };
    // From the byte itself: the fixed-part view of a packet whose options are cut has the
    // fixed part's length, not the one the header claims.
    let header_len = ip.first().map_or(0, |b| usize::from(b & 0x0F) * 4);
    let total_len = usize::from(header.total_len());
    // A total length of 0 appears in captures of TCP segmentation offload, where the kernel
    // hands the NIC one oversized packet; the captured length is then the best there is.
    let total_len = if total_len == 0 { ip.len() } else { total_len };
    if total_len < header_len {
        return Err(malformed(
            "IPv4",
            format!("total length {total_len} is below header length {header_len}"),
        ));
    }
    if header.is_fragmenting_payload() {
        return Err(SkipReason::Fragment);
    }
    if header.protocol() != IpNumber::TCP {
        return Ok(None);
    }
    // Ethernet pads short frames to 60 bytes, so the total length, not the frame, sets the end.
    let bytes = ip
        .get(header_len..total_len.min(ip.len()))
        .filter(|_| !options_cut)
        .ok_or(truncated("IPv4 options", header_len, ip.len()))?;
    Ok(Some(Transport {
        src: IpAddr::V4(header.source_addr()),
        dst: IpAddr::V4(header.destination_addr()),
        bytes,
        wire_len: total_len - header_len,
    }))
}

/// The reason for an IPv4 header etherparse refused for its content, in our words.
fn ipv4_malformed(e: &ipv4::HeaderError) -> SkipReason {
    let problem = match e {
        ipv4::HeaderError::UnexpectedVersion { version_number } => {
            format!("version {version_number} is not 4")
        }
        ipv4::HeaderError::HeaderLengthSmallerThanHeader { ihl } => {
            format!("header length {} is below 20", usize::from(*ihl) * 4)
        }
    };
    malformed("IPv4", problem)
}

fn ipv6(ip: &[u8]) -> Result<Option<Transport<'_>>, SkipReason> {
    let header = Ipv6HeaderSlice::from_slice(ip).map_err(|e| match e {
        ipv6::HeaderSliceError::Len(_) => truncated("IPv6", IPV6_HEADER_LEN, ip.len()),
        ipv6::HeaderSliceError::Content(ipv6::HeaderError::UnexpectedVersion {
            version_number,
        }) => malformed("IPv6", format!("version {version_number} is not 6")),
    })?;
    let (payload_len, first_next) = (header.payload_length(), header.next_header().0);
    // Payload length 0 means a jumbogram (RFC 2675) or a segmentation-offload capture; either
    // way the captured length is the best bound there is.
    let wire_end = match usize::from(payload_len) {
        0 => ip.len(),
        n => IPV6_HEADER_LEN + n,
    };
    let captured_end = wire_end.min(ip.len());
    let mut next = first_next;
    let mut at = IPV6_HEADER_LEN;
    // Every extension header is at least 8 bytes, so `at` grows each round and the walk ends.
    loop {
        let ext_len = match next {
            IPPROTO_TCP => break,
            IPPROTO_NONE => return Ok(None),
            IPPROTO_ESP => return Err(SkipReason::UnsupportedIpv6Header(next)),
            IPPROTO_FRAGMENT => {
                let word = be16(ip, at + 2).ok_or(truncated(
                    "IPv6 fragment",
                    at + IPV6_FRAGMENT_HEADER_LEN,
                    ip.len(),
                ))?;
                // An atomic fragment (offset 0, no more fragments; RFC 6946) is a whole packet.
                if word & (IPV6_FRAGMENT_OFFSET_MASK | IPV6_MORE_FRAGMENTS) != 0 {
                    return Err(SkipReason::Fragment);
                }
                IPV6_FRAGMENT_HEADER_LEN
            }
            IPPROTO_AH => {
                // AH counts its length in 4-octet units minus two (RFC 4302 2.2).
                let units = ip
                    .get(at + 1)
                    .ok_or(truncated("IPv6 AH", at + 2, ip.len()))?;
                (usize::from(*units) + 2) * 4
            }
            n if IPV6_GENERIC_EXTENSIONS.contains(&n) => {
                let units = ip
                    .get(at + 1)
                    .ok_or(truncated("IPv6 extension", at + 2, ip.len()))?;
                (usize::from(*units) + 1) * 8
            }
            _ => return Ok(None),
        };
        let following = *ip
            .get(at)
            .ok_or(truncated("IPv6 extension", at + 1, ip.len()))?;
        at += ext_len;
        if at > captured_end {
            return Err(truncated("IPv6 extension", at, captured_end));
        }
        next = following;
    }
    let bytes = ip.get(at..captured_end).unwrap_or_default();
    Ok(Some(Transport {
        src: IpAddr::V6(header.source_addr()),
        dst: IpAddr::V6(header.destination_addr()),
        bytes,
        wire_len: wire_end.saturating_sub(at),
    }))
}

fn tcp<'a>(t: &Transport<'a>) -> Result<Segment<'a>, SkipReason> {
    let b = t.bytes;
    let data_offset_too_small = |data_offset: u8| {
        malformed(
            "TCP",
            format!("data offset {} is below 20", usize::from(data_offset) * 4),
        )
    };
    let header = TcpHeaderSlice::from_slice(b).map_err(|e| match e {
        tcp::HeaderSliceError::Len(e) if e.required_len > TCP_MIN_HEADER_LEN => {
            truncated("TCP options", e.required_len, b.len())
        }
        // Cut inside the fixed header but past the flags: the data offset is there, so it is
        // judged as for a whole header (kept from before etherparse did the reading).
        tcp::HeaderSliceError::Len(_) => match b.get(TCP_DATA_OFFSET_AT) {
            Some(&byte) if b.len() > TCP_FLAGS_AT => {
                let data_offset = byte >> 4;
                if usize::from(data_offset) * 4 < TCP_MIN_HEADER_LEN {
                    data_offset_too_small(data_offset)
                } else {
                    truncated("TCP options", usize::from(data_offset) * 4, b.len())
                }
            }
            _ => truncated("TCP", TCP_MIN_HEADER_LEN, b.len()),
        },
        tcp::HeaderSliceError::Content(tcp::HeaderError::DataOffsetTooSmall { data_offset }) => {
            data_offset_too_small(data_offset)
        }
    })?;
    let header_len = header.slice().len();
    let payload = b.get(header_len..).unwrap_or_default();
    // The flags byte as a whole (CWR down to FIN), which is how the reassembly reads them.
    let flags = header.slice().get(TCP_FLAGS_AT).copied().unwrap_or(0);
    Ok(Segment {
        src: SocketAddr::new(t.src, header.source_port()),
        dst: SocketAddr::new(t.dst, header.destination_port()),
        seq: header.sequence_number(),
        flags,
        payload,
        wire_len: t.wire_len.saturating_sub(header_len).max(payload.len()),
    })
}

fn truncated(layer: &'static str, needed: usize, available: usize) -> SkipReason {
    SkipReason::Truncated {
        layer,
        needed,
        available,
    }
}

fn malformed(layer: &'static str, problem: String) -> SkipReason {
    SkipReason::Malformed { layer, problem }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
