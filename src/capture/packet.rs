//! Frame decoding down to TCP: link headers (Ethernet with VLAN tags, Linux cooked v1 and v2,
//! BSD loopback, raw IP), then IPv4 or IPv6 (walking extension headers), then the TCP header.
//!
//! Checksums are not verified: captures taken on the sending host (loopback above all) carry
//! checksums that the NIC or kernel would have filled in later, so they are routinely wrong.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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

/// EtherTypes (IEEE registry) that matter here.
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
/// 802.1Q customer tag, 802.1ad service tag, and the pre-standard QinQ value still in use.
const ETHERTYPE_VLAN_TAGS: [u16; 3] = [0x8100, 0x88A8, 0x9100];
/// Destination MAC, source MAC, EtherType.
const ETHERNET_HEADER_LEN: usize = 14;
/// Tag control information plus the inner EtherType.
const VLAN_TAG_LEN: usize = 4;
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

const IPV4_MIN_HEADER_LEN: usize = 20;
/// More Fragments flag and fragment offset mask in the IPv4 flags/offset word (RFC 791).
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
const IPV4_FRAGMENT_OFFSET: u16 = 0x1FFF;
const IPV6_HEADER_LEN: usize = 40;
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

const TCP_MIN_HEADER_LEN: usize = 20;

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
            match be16(frame, protocol_at) {
                Some(ETHERTYPE_IPV4) => (Network::V4, ip),
                Some(ETHERTYPE_IPV6) => (Network::V6, ip),
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
    let mut ethertype = be16(frame, ETHERNET_HEADER_LEN - 2).ok_or(truncated(
        "Ethernet",
        ETHERNET_HEADER_LEN,
        frame.len(),
    ))?;
    let mut at = ETHERNET_HEADER_LEN;
    // Each tag is 4 bytes, so the loop ends with the frame even if every tag is another tag.
    while ETHERTYPE_VLAN_TAGS.contains(&ethertype) {
        let end = at + VLAN_TAG_LEN;
        ethertype = be16(frame, end - 2).ok_or(truncated("802.1Q tag", end, frame.len()))?;
        at = end;
    }
    let rest = frame.get(at..).unwrap_or_default();
    Ok(match ethertype {
        ETHERTYPE_IPV4 => Some((Network::V4, rest)),
        ETHERTYPE_IPV6 => Some((Network::V6, rest)),
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
    let header =
        ip.get(..IPV4_MIN_HEADER_LEN)
            .ok_or(truncated("IPv4", IPV4_MIN_HEADER_LEN, ip.len()))?;
    let (first, proto) = (header.first().copied(), header.get(9).copied());
    let (Some(first), Some(proto)) = (first, proto) else {
        return Err(truncated("IPv4", IPV4_MIN_HEADER_LEN, ip.len()));
    };
    if first >> 4 != 4 {
        return Err(malformed(
            "IPv4",
            format!("version {} is not 4", first >> 4),
        ));
    }
    let header_len = usize::from(first & 0x0F) * 4;
    if header_len < IPV4_MIN_HEADER_LEN {
        return Err(malformed(
            "IPv4",
            format!("header length {header_len} is below 20"),
        ));
    }
    let total_len = usize::from(be16(ip, 2).unwrap_or(0));
    // A total length of 0 appears in captures of TCP segmentation offload, where the kernel
    // hands the NIC one oversized packet; the captured length is then the best there is.
    let total_len = if total_len == 0 { ip.len() } else { total_len };
    if total_len < header_len {
        return Err(malformed(
            "IPv4",
            format!("total length {total_len} is below header length {header_len}"),
        ));
    }
    let frag = be16(ip, 6).unwrap_or(0);
    if frag & (IPV4_MORE_FRAGMENTS | IPV4_FRAGMENT_OFFSET) != 0 {
        return Err(SkipReason::Fragment);
    }
    if proto != IPPROTO_TCP {
        return Ok(None);
    }
    // Ethernet pads short frames to 60 bytes, so the total length, not the frame, sets the end.
    let bytes = ip
        .get(header_len..total_len.min(ip.len()))
        .ok_or(truncated("IPv4 options", header_len, ip.len()))?;
    Ok(Some(Transport {
        src: IpAddr::V4(ipv4_addr(ip, 12)),
        dst: IpAddr::V4(ipv4_addr(ip, 16)),
        bytes,
        wire_len: total_len - header_len,
    }))
}

fn ipv6(ip: &[u8]) -> Result<Option<Transport<'_>>, SkipReason> {
    let version = ip.first().map(|b| b >> 4);
    let (Some(payload_len), Some(&first_next)) = (be16(ip, 4), ip.get(6)) else {
        return Err(truncated("IPv6", IPV6_HEADER_LEN, ip.len()));
    };
    if ip.len() < IPV6_HEADER_LEN {
        return Err(truncated("IPv6", IPV6_HEADER_LEN, ip.len()));
    }
    if version != Some(6) {
        return Err(malformed(
            "IPv6",
            format!("version {} is not 6", version.unwrap_or(0)),
        ));
    }
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
        src: IpAddr::V6(ipv6_addr(ip, 8)),
        dst: IpAddr::V6(ipv6_addr(ip, 24)),
        bytes,
        wire_len: wire_end.saturating_sub(at),
    }))
}

fn tcp<'a>(t: &Transport<'a>) -> Result<Segment<'a>, SkipReason> {
    let b = t.bytes;
    let (Some(sport), Some(dport), Some(seq), Some(&off), Some(&fl)) =
        (be16(b, 0), be16(b, 2), be32(b, 4), b.get(12), b.get(13))
    else {
        return Err(truncated("TCP", TCP_MIN_HEADER_LEN, b.len()));
    };
    let header_len = usize::from(off >> 4) * 4;
    if header_len < TCP_MIN_HEADER_LEN {
        return Err(malformed(
            "TCP",
            format!("data offset {header_len} is below 20"),
        ));
    }
    let payload = b
        .get(header_len..)
        .ok_or(truncated("TCP options", header_len, b.len()))?;
    Ok(Segment {
        src: SocketAddr::new(t.src, sport),
        dst: SocketAddr::new(t.dst, dport),
        seq,
        flags: fl,
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

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Callers have checked that the fixed header is present; a short slice gives the unspecified
/// address rather than a panic.
fn ipv4_addr(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(be32(b, at).unwrap_or(0))
}

fn ipv6_addr(b: &[u8], at: usize) -> Ipv6Addr {
    let bytes: Option<[u8; 16]> = b.get(at..at + 16).and_then(|s| s.try_into().ok());
    Ipv6Addr::from(bytes.unwrap_or([0; 16]))
}
