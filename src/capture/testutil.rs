//! Test support: the shared captures with their README facts, and builders for synthetic frames
//! and capture files (written here from the format specifications, independent of the reader).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::Timestamp;
use super::file::{Entry, Records};
use super::packet::{self, linktype};

/// The captures copied beside the crate (`captures/`), with their README.
pub fn captures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures")
}

/// Every third-party `*.pcap` in [`captures_dir`] (the shared set, `vlmcs-*`; the project's
/// own `kmsharness-*` recordings are proven in `tests/record.rs`), sorted by name.
pub fn pcap_files() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(captures_dir())
        .expect("captures directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vlmcs-"))
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("capture file"))
        })
        .collect();
    out.sort();
    assert!(
        !out.is_empty(),
        "no captures in {}",
        captures_dir().display()
    );
    out
}

pub fn capture(name: &str) -> Vec<u8> {
    std::fs::read(captures_dir().join(name)).expect("capture file")
}

/// What the captures README states about one file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadmeFacts {
    pub connections: usize,
    pub requests: usize,
    pub responses: usize,
    pub packets: usize,
    /// Presentation context id of each request in time order, e.g. "01".
    pub context_ids: String,
}

/// Facts per file name, from the README's table and per-file sections.
pub fn readme() -> BTreeMap<String, ReadmeFacts> {
    let text = std::fs::read_to_string(captures_dir().join("README.md")).expect("README.md");
    let mut facts: BTreeMap<String, ReadmeFacts> = BTreeMap::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("| `") && line.contains(".pcap`") {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_string();
            let (req, resp) = cells[7].split_once('/').expect("req / resp cell");
            let f = facts.entry(name).or_default();
            f.connections = cells[6].parse().expect("connections cell");
            f.requests = req.trim().parse().expect("requests");
            f.responses = resp.trim().parse().expect("responses");
        } else if let Some(name) = line.strip_prefix("### ") {
            section = Some(name.trim().to_string());
        } else if let Some(name) = &section {
            let f = facts.entry(name.clone()).or_default();
            if let Some(rest) = line.strip_prefix("- Packets: ") {
                f.packets = rest
                    .split(';')
                    .next()
                    .unwrap()
                    .trim()
                    .parse()
                    .expect("packets");
            } else if line.starts_with("- Presentation context id of each request") {
                let ids = line.rsplit('`').nth(1).expect("backquoted ids");
                f.context_ids = ids.to_string();
            }
        }
    }
    facts
}

/// A captured frame: when, and the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub ts: Timestamp,
    pub data: Vec<u8>,
}

/// Classic pcap, per pcap-savefile(5).
pub fn write_pcap(link: u32, frames: &[Frame], nanosecond: bool, big_endian: bool) -> Vec<u8> {
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend(u32b(if nanosecond { 0xA1B2_3C4D } else { 0xA1B2_C3D4 }));
    out.extend(u16b(2));
    out.extend(u16b(4));
    out.extend(u32b(0));
    out.extend(u32b(0));
    out.extend(u32b(262_144));
    out.extend(u32b(link));
    for f in frames {
        let frac = if nanosecond {
            f.ts.nanos
        } else {
            f.ts.nanos / 1000
        };
        out.extend(u32b(u32::try_from(f.ts.secs).unwrap()));
        out.extend(u32b(frac));
        out.extend(u32b(f.data.len() as u32));
        out.extend(u32b(f.data.len() as u32));
        out.extend(&f.data);
    }
    out
}

/// pcapng with one section, one interface and one Enhanced Packet Block per frame
/// (draft-ietf-opsawg-pcapng). `tsresol` None leaves the default (microseconds).
pub fn write_pcapng(link: u16, frames: &[Frame], tsresol: Option<u8>, big_endian: bool) -> Vec<u8> {
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let block = |out: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let total = body.len() as u32 + 12;
        out.extend(u32b(kind));
        out.extend(u32b(total));
        out.extend(&body);
        out.extend(u32b(total));
    };
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend(u32b(0x1A2B_3C4D));
    shb.extend(u16b(1));
    shb.extend(u16b(0));
    shb.extend([0xFF; 8]); // section length unknown
    block(&mut out, 0x0A0D_0D0A, &shb);
    let mut idb = Vec::new();
    idb.extend(u16b(link));
    idb.extend(u16b(0));
    idb.extend(u32b(0));
    // A 4-byte if_tzone option, which pcap-file 2.0.0 would reject, to show it is tolerated.
    idb.extend(u16b(10));
    idb.extend(u16b(4));
    idb.extend(u32b(0));
    if let Some(r) = tsresol {
        idb.extend(u16b(9));
        idb.extend(u16b(1));
        idb.extend([r, 0, 0, 0]);
    }
    idb.extend(u16b(0));
    idb.extend(u16b(0));
    block(&mut out, 1, &idb);
    // A custom block (type 0xBAD, draft-ietf-opsawg-pcapng 4.8) that readers step over.
    block(&mut out, 0x0000_0BAD, b"custom");
    let r = tsresol.unwrap_or(6);
    for f in frames {
        let ticks: u128 = if r & 0x80 != 0 {
            (u128::from(f.ts.secs) << (r & 0x7F))
                + ((u128::from(f.ts.nanos) << (r & 0x7F)) / 1_000_000_000)
        } else {
            let per = 10u128.pow(u32::from(r));
            u128::from(f.ts.secs) * per + u128::from(f.ts.nanos) * per / 1_000_000_000
        };
        let ticks = u64::try_from(ticks).unwrap();
        let mut epb = Vec::new();
        epb.extend(u32b(0));
        epb.extend(u32b((ticks >> 32) as u32));
        epb.extend(u32b(ticks as u32));
        epb.extend(u32b(f.data.len() as u32));
        epb.extend(u32b(f.data.len() as u32));
        epb.extend(&f.data);
        while !epb.len().is_multiple_of(4) {
            epb.push(0);
        }
        block(&mut out, 6, &epb);
    }
    out
}

/// A TCP segment to build frames from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcp {
    pub ts: Timestamp,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub flags: u8,
    pub payload: Vec<u8>,
}

/// The TCP segments of a capture, in file order (decoded with the module's own decoder; tests
/// that use these compare against the module's reading of the original file).
pub fn tcp_segments(file: &[u8]) -> Vec<Tcp> {
    let mut out = Vec::new();
    let mut records = Records::open(file).unwrap();
    while let Some(entry) = records.next() {
        let Entry::Packet(rec) = entry.unwrap() else {
            panic!("skipped record")
        };
        let seg = packet::decode(rec.linktype, rec.data).unwrap().unwrap();
        out.push(Tcp {
            ts: rec.ts,
            src: seg.src,
            dst: seg.dst,
            seq: seg.seq,
            flags: seg.flags,
            payload: seg.payload.to_vec(),
        });
    }
    out
}

/// A 20-byte TCP header (no options, checksum left zero, as loopback captures have it) and the
/// payload.
pub fn tcp_bytes(t: &Tcp) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(t.src.port().to_be_bytes());
    b.extend(t.dst.port().to_be_bytes());
    b.extend(t.seq.to_be_bytes());
    b.extend(0u32.to_be_bytes());
    b.push(5 << 4);
    b.push(t.flags);
    b.extend(65_535u16.to_be_bytes());
    b.extend([0, 0, 0, 0]);
    b.extend(&t.payload);
    b
}

pub fn ipv4(src: IpAddr, dst: IpAddr, proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 addresses")
    };
    let mut b = vec![0x45, 0];
    b.extend((20 + payload.len() as u16).to_be_bytes());
    b.extend([0, 0]);
    b.extend(frag.to_be_bytes());
    b.extend([64, proto, 0, 0]);
    b.extend(s.octets());
    b.extend(d.octets());
    b.extend(payload);
    b
}

/// IPv6 with an extension header chain given as (type, body) pairs; each body is padded to a
/// multiple of 8 with its 2-byte prefix (fragment headers are passed whole, 6 bytes).
pub fn ipv6(
    src: IpAddr,
    dst: IpAddr,
    exts: &[(u8, Vec<u8>)],
    proto: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
        panic!("IPv6 addresses")
    };
    let mut chain = Vec::new();
    let types: Vec<u8> = exts.iter().map(|e| e.0).chain([proto]).collect();
    for (i, (kind, body)) in exts.iter().enumerate() {
        let next = types[i + 1];
        if *kind == 44 {
            chain.push(next);
            chain.push(0);
            chain.extend(body);
        } else if *kind == 51 {
            let mut h = vec![next, 0];
            h.extend(body);
            while !h.len().is_multiple_of(8) {
                h.push(0);
            }
            h[1] = (h.len() / 4 - 2) as u8;
            chain.extend(h);
        } else {
            let mut h = vec![next, 0];
            h.extend(body);
            while !h.len().is_multiple_of(8) {
                h.push(0);
            }
            h[1] = (h.len() / 8 - 1) as u8;
            chain.extend(h);
        }
    }
    let mut b = vec![0x60, 0, 0, 0];
    b.extend(((chain.len() + payload.len()) as u16).to_be_bytes());
    b.push(types[0]);
    b.push(64);
    b.extend(s.octets());
    b.extend(d.octets());
    b.extend(chain);
    b.extend(payload);
    b
}

pub fn ethernet(ethertype: u16, tags: &[u16], payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 12];
    for &tpid in tags {
        b.extend(tpid.to_be_bytes());
        b.extend(0x0064u16.to_be_bytes()); // VLAN 100
    }
    b.extend(ethertype.to_be_bytes());
    b.extend(payload);
    // Ethernet minimum frame size without FCS, so short frames carry padding after IP.
    while b.len() < 60 {
        b.push(0);
    }
    b
}

/// The IP packet (v4 or v6, matching the addresses) carrying `t`, with its EtherType.
pub fn ip_packet(t: &Tcp) -> (u16, Vec<u8>) {
    let tcp = tcp_bytes(t);
    match t.src.ip() {
        IpAddr::V4(_) => (0x0800, ipv4(t.src.ip(), t.dst.ip(), 6, 0, &tcp)),
        IpAddr::V6(_) => (0x86DD, ipv6(t.src.ip(), t.dst.ip(), &[], 6, &tcp)),
    }
}

/// Frames for `segments` on Ethernet.
pub fn ethernet_frames(segments: &[Tcp]) -> Vec<Frame> {
    segments
        .iter()
        .map(|t| {
            let (ethertype, ip) = ip_packet(t);
            Frame {
                ts: t.ts,
                data: ethernet(ethertype, &[], &ip),
            }
        })
        .collect()
}

/// A classic pcap on Ethernet holding `segments`.
pub fn pcap_of(segments: &[Tcp]) -> Vec<u8> {
    write_pcap(linktype::ETHERNET, &ethernet_frames(segments), false, false)
}

/// A small deterministic PRNG (xorshift64*), so shuffles and mutations repeat run to run.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` for tests (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Offsets where classic pcap records end (the header end first), for truncation checks.
pub fn pcap_record_ends(file: &[u8]) -> Vec<usize> {
    let mut ends = vec![24];
    let mut at = 24;
    while at + 16 <= file.len() {
        let incl = u32::from_le_bytes(file[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + incl;
        ends.push(at);
    }
    assert_eq!(at, file.len());
    ends
}

/// A DCE/RPC connection-oriented PDU found in a stream (C706 12.6.3: the common header gives
/// version, type, data representation and fragment length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub ptype: u8,
    pub call_id: u32,
    pub range: std::ops::Range<usize>,
    /// Presentation context id, for requests.
    pub context_id: Option<u16>,
}

/// Splits a stream into DCE/RPC PDUs by their fragment lengths; panics unless they tile it.
pub fn rpc_pdus(data: &[u8]) -> Vec<Pdu> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let h = &data[at..];
        assert!(h.len() >= 16, "partial RPC header at {at}");
        assert_eq!((h[0], h[1]), (5, 0), "RPC version at {at}");
        assert_eq!(
            h[4] & 0xF0,
            0x10,
            "little-endian data representation at {at}"
        );
        let frag_len = usize::from(u16::from_le_bytes([h[8], h[9]]));
        assert!(
            frag_len >= 16 && frag_len <= h.len(),
            "fragment length {frag_len} at {at}"
        );
        let call_id = u32::from_le_bytes(h[12..16].try_into().unwrap());
        let context_id = (h[2] == 0).then(|| u16::from_le_bytes([h[20], h[21]]));
        out.push(Pdu {
            ptype: h[2],
            call_id,
            range: at..at + frag_len,
            context_id,
        });
        at += frag_len;
    }
    out
}
