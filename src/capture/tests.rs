//! Tests of the whole reader against the shared captures and synthetic variants of them.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::packet::{flags, linktype};
use super::testutil::*;
use super::*;

/// DCE/RPC packet types (C706 12.6.4).
const PTYPE_REQUEST: u8 = 0;
const PTYPE_RESPONSE: u8 = 2;
const PTYPE_BIND: u8 = 11;
const PTYPE_BIND_ACK: u8 = 12;

fn read_ok(bytes: &[u8]) -> Capture {
    let capture = read(bytes);
    assert_eq!(capture.error, None);
    assert_eq!(capture.skips, vec![]);
    capture
}

/// Connections keyed by (client, server), streams only, for comparing two readings.
fn streams(c: &Capture) -> BTreeMap<(SocketAddr, SocketAddr), (Vec<u8>, Vec<u8>)> {
    c.connections
        .iter()
        .map(|k| {
            (
                (k.client, k.server),
                (k.to_server.data.clone(), k.to_client.data.clone()),
            )
        })
        .collect()
}

/// Compares two readings' streams, naming the first difference instead of dumping bytes.
#[track_caller]
fn assert_same_streams(got: &Capture, want: &Capture, what: &str) {
    let (got, want) = (streams(got), streams(want));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: connections"
    );
    for (key, (g, w)) in got.iter().map(|(k, g)| (k, (g, &want[k]))) {
        for (dir, a, b) in [("to_server", &g.0, &w.0), ("to_client", &g.1, &w.1)] {
            let first_diff = a.iter().zip(b.iter()).position(|(x, y)| x != y);
            assert!(
                a == b,
                "{what}: {key:?} {dir}: lengths {} vs {}, first difference at {first_diff:?}",
                a.len(),
                b.len()
            );
        }
    }
}

fn assert_tiles(s: &Stream) {
    let mut at = 0;
    for seg in &s.segments {
        assert_eq!(seg.offset, at, "segments tile the data");
        assert!(seg.len > 0);
        at += seg.len;
    }
    assert_eq!(at, s.data.len());
}

fn assert_clean(k: &Connection) {
    assert!(k.syn_seen, "{} -> {}: SYN", k.client, k.server);
    assert_eq!(
        k.fin_seen,
        (true, true),
        "{} -> {}: FINs",
        k.client,
        k.server
    );
    assert!(!k.rst_seen);
    for s in [&k.to_server, &k.to_client] {
        assert_eq!(s.gaps, vec![]);
        assert_eq!(s.conflicts, vec![]);
        assert_eq!(s.stray_bytes, 0);
        assert_tiles(s);
    }
}

#[test]
fn every_shared_capture_matches_its_readme() {
    let facts = readme();
    let files = pcap_files();
    assert_eq!(
        files.iter().map(|f| f.0.clone()).collect::<Vec<_>>(),
        facts.keys().cloned().collect::<Vec<_>>(),
        "README lists exactly the captures present"
    );
    for (name, bytes) in &files {
        let want = &facts[name];
        let c = read_ok(bytes);
        assert_eq!(
            c.format,
            Some(Format::Pcap {
                nanosecond: false,
                big_endian: false,
                linktype: 1
            })
        );
        assert_eq!(c.packets, want.packets, "{name}: packets");
        assert_eq!(c.other, 0, "{name}: non-TCP packets");
        assert_eq!(c.connections.len(), want.connections, "{name}: connections");
        for k in &c.connections {
            assert_clean(k);
            assert_eq!(
                k.server.port() / 1000,
                17,
                "{name}: hosts listened on 17001..17004"
            );
            assert_eq!(
                k.to_server.duplicate_bytes + k.to_client.duplicate_bytes,
                0,
                "{name}"
            );
            assert_eq!(
                &k.to_server.data[..3],
                &[5, 0, PTYPE_BIND],
                "{name}: starts with a bind"
            );
            assert_eq!(
                &k.to_client.data[..3],
                &[5, 0, PTYPE_BIND_ACK],
                "{name}: bind_ack"
            );
            assert!(k.first_ts <= k.last_ts);
        }
        let firsts: Vec<_> = c.connections.iter().map(|k| k.first_ts).collect();
        assert!(
            firsts.is_sorted(),
            "{name}: connections in order of first packet"
        );
    }
}

#[test]
fn rpc_pdus_tile_every_stream_and_match_readme_counts_and_order() {
    let facts = readme();
    for (name, bytes) in pcap_files() {
        let want = &facts[&name];
        let c = read_ok(&bytes);
        let (mut requests, mut responses) = (0, 0);
        // (time of the request's first byte, context id) across all connections.
        let mut contexts: Vec<(Timestamp, usize, u16)> = Vec::new();
        for k in &c.connections {
            let to_server = rpc_pdus(&k.to_server.data);
            let to_client = rpc_pdus(&k.to_client.data);
            // The n-th answer of a kind answers the n-th call of the matching kind (call ids
            // repeat: vlmcs binds, alters and asks with the same one).
            let asks = |kind: u8| to_server.iter().filter(move |p| p.ptype == kind);
            let mut calls: HashMap<u8, Vec<&Pdu>> = HashMap::new();
            for (ask, answer) in [
                (PTYPE_BIND, PTYPE_BIND_ACK),
                (14, 15),
                (PTYPE_REQUEST, PTYPE_RESPONSE),
            ] {
                calls.insert(answer, asks(ask).rev().collect());
            }
            for p in &to_server {
                if p.ptype == PTYPE_REQUEST {
                    requests += 1;
                    let seg = k.to_server.segment_at(p.range.start).unwrap();
                    contexts.push((seg.ts, seg.record, p.context_id.unwrap()));
                }
            }
            for p in &to_client {
                responses += usize::from(p.ptype == PTYPE_RESPONSE);
                // Every answer starts after the last byte of the call it answers arrived.
                let call = calls.get_mut(&p.ptype).unwrap().pop().unwrap();
                assert_eq!(call.call_id, p.call_id, "{name}");
                let asked = k.to_server.segment_at(call.range.end - 1).unwrap();
                let answered = k.to_client.segment_at(p.range.start).unwrap();
                assert!(
                    (asked.ts, asked.record) < (answered.ts, answered.record),
                    "{name}: call {} answered before it was asked",
                    p.call_id
                );
            }
        }
        assert_eq!(
            (requests, responses),
            (want.requests, want.responses),
            "{name}"
        );
        contexts.sort();
        let ids: String = contexts.iter().map(|c| c.2.to_string()).collect();
        assert_eq!(ids, want.context_ids, "{name}: context ids in time order");
    }
}

#[test]
fn events_interleave_both_directions_in_capture_order() {
    let c = read_ok(&capture("vlmcs-vlmcsd-v6-n30-one-connection.pcap"));
    let k = &c.connections[0];
    let events = k.events();
    assert_eq!(
        events.len(),
        k.to_server.segments.len() + k.to_client.segments.len()
    );
    assert!(
        events
            .windows(2)
            .all(|w| (w[0].ts, w[0].record) <= (w[1].ts, w[1].record))
    );
    // One connection, 30 requests: the PDU starts alternate client, server, client, ...
    let starts: Vec<Direction> = events
        .iter()
        .filter(|e| {
            let pdus = rpc_pdus(&k.stream(e.direction).data);
            pdus.iter().any(|p| e.range().contains(&p.range.start))
        })
        .map(|e| e.direction)
        .collect();
    // bind, bind_ack, alter_context, alter_context_resp, then 30 request/response pairs.
    assert_eq!(starts.len(), 2 * 32);
    for (i, d) in starts.iter().enumerate() {
        let want = if i % 2 == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        assert_eq!(*d, want, "event {i}");
    }
}

/// Rewrites a capture's segments: each payload is split into two overlapping halves, every
/// third packet is sent twice, each direction's sequence numbers are moved so that the stream
/// wraps past 2^32 early, and the order is shuffled.
fn mangle(segments: &[Tcp], rng: &mut Rng) -> Vec<Tcp> {
    let mut shift: HashMap<(SocketAddr, SocketAddr), u32> = HashMap::new();
    for t in segments {
        if t.flags & flags::SYN != 0 {
            // Put the ISN 40 bytes before the wrap, inside the 160-byte bind.
            shift.insert((t.src, t.dst), (u32::MAX - 40).wrapping_sub(t.seq));
        }
    }
    let mut out = Vec::new();
    for (i, t) in segments.iter().enumerate() {
        let mut t = t.clone();
        t.seq = t.seq.wrapping_add(shift[&(t.src, t.dst)]);
        if t.payload.len() >= 8 {
            let mid = t.payload.len() / 2;
            let mut first = t.clone();
            first.payload.truncate(mid + 3);
            first.flags &= !flags::FIN;
            let mut second = t.clone();
            second.seq = t.seq.wrapping_add(mid as u32);
            second.payload.drain(..mid);
            out.push(first);
            out.push(second);
        } else {
            out.push(t.clone());
        }
        if i % 3 == 0 {
            out.push(t);
        }
    }
    rng.shuffle(&mut out);
    out
}

#[test]
fn shuffled_duplicated_overlapping_wrapping_segments_rebuild_the_same_streams() {
    let mut rng = Rng::new(0x6b6d_7368);
    for (name, bytes) in pcap_files() {
        let original = read_ok(&bytes);
        for round in 0..3 {
            let mangled = pcap_of(&mangle(&tcp_segments(&bytes), &mut rng));
            let c = read_ok(&mangled);
            assert_same_streams(&c, &original, &format!("{name} round {round}"));
            for k in &c.connections {
                assert_clean(k);
                assert!(
                    k.to_server.duplicate_bytes > 0,
                    "{name}: overlaps were seen"
                );
            }
        }
    }
}

#[test]
fn conflicting_overlap_keeps_the_first_copy_and_is_reported() {
    let bytes = capture("vlmcs-vlmcsd-v6.pcap");
    let original = read_ok(&bytes);
    let segments = tcp_segments(&bytes);
    // The largest client payload: the KMS request.
    let (i, req) = segments
        .iter()
        .enumerate()
        .filter(|(_, t)| t.dst == original.connections[0].server)
        .max_by_key(|(_, t)| t.payload.len())
        .unwrap();
    let req_offset = {
        let k = &original.connections[0];
        k.to_server
            .segments
            .iter()
            .find(|s| s.record == i + 1)
            .unwrap()
            .offset
    };
    let mut forged = req.clone();
    forged.seq = req.seq.wrapping_add(10);
    forged.payload = req.payload[10..20].iter().map(|b| !b).collect();

    // Forged copy after the real one: the real bytes stay.
    let mut late = segments.clone();
    late.push(forged.clone());
    let c = read_ok(&pcap_of(&late));
    let s = &c.connections[0].to_server;
    assert_eq!(s.data, original.connections[0].to_server.data);
    assert_eq!(
        s.conflicts,
        vec![Conflict {
            offset: req_offset + 10,
            len: 10,
            record: late.len()
        }]
    );

    // Forged copy first: its bytes stay, and the real packet is the one reported.
    let mut early = segments.clone();
    early.insert(i, forged);
    let c = read_ok(&pcap_of(&early));
    let s = &c.connections[0].to_server;
    let mut want = original.connections[0].to_server.data.clone();
    for b in &mut want[req_offset + 10..req_offset + 20] {
        *b = !*b;
    }
    assert_eq!(s.data, want);
    assert_eq!(s.conflicts.len(), 1);
    assert_eq!(s.conflicts[0].record, i + 2);
    assert_eq!(s.segment_at(req_offset + 10).unwrap().record, i + 1);
}

#[test]
fn a_missing_segment_is_a_gap_never_glued() {
    let bytes = capture("vlmcs-vlmcsd-v6-B0-no-btfn.pcap");
    let original = read_ok(&bytes);
    let full = &original.connections[0].to_server;
    let segments = tcp_segments(&bytes);
    let data_records: Vec<usize> = full.segments.iter().map(|s| s.record).collect();
    // Drop the second client data segment (a middle one) and, separately, the last one.
    for (which, &record) in [
        (1, &data_records[1]),
        (data_records.len() - 1, data_records.last().unwrap()),
    ] {
        let lost = full.segments[which];
        let mut kept = segments.clone();
        kept.remove(record - 1);
        let c = read(&pcap_of(&kept));
        assert_eq!(c.error, None);
        let s = &c.connections[0].to_server;
        assert_eq!(
            s.gaps,
            vec![Gap {
                offset: lost.offset,
                len: lost.len as u64
            }]
        );
        let mut want = full.data.clone();
        want.drain(lost.offset..lost.offset + lost.len);
        assert_eq!(s.data, want);
        assert!(!s.is_contiguous(lost.offset - 1..lost.offset + 1));
        assert!(s.is_contiguous(0..lost.offset));
        assert_eq!(
            c.connections[0].to_client.data,
            original.connections[0].to_client.data
        );
        assert_eq!(c.connections[0].to_client.gaps, vec![]);
    }
}

#[test]
fn snap_length_cut_payload_is_a_gap() {
    let bytes = capture("vlmcs-vlmcsd-v6.pcap");
    let original = read_ok(&bytes);
    let full = &original.connections[0].to_server;
    let mut frames: Vec<Frame> = ethernet_frames(&tcp_segments(&bytes));
    let first = full.segments[0];
    // Keep Ethernet + IPv4 + TCP headers and 100 payload bytes of the bind.
    frames[first.record - 1].data.truncate(14 + 20 + 20 + 100);
    let c = read_ok(&write_pcap(linktype::ETHERNET, &frames, false, false));
    let s = &c.connections[0].to_server;
    assert_eq!(
        s.gaps,
        vec![Gap {
            offset: 100,
            len: first.len as u64 - 100
        }]
    );
    assert_eq!(s.data.len(), full.data.len() - (first.len - 100));
}

#[test]
fn without_a_syn_roles_come_from_ports() {
    let bytes = capture("vlmcs-vlmcsd-v6.pcap");
    let original = read_ok(&bytes);
    let k0 = &original.connections[0];
    let data_only: Vec<Tcp> = tcp_segments(&bytes)
        .into_iter()
        .filter(|t| t.flags & flags::SYN == 0)
        .collect();
    let c = read_ok(&pcap_of(&data_only));
    let k = &c.connections[0];
    assert!(!k.syn_seen);
    assert_eq!(
        (k.client, k.server),
        (k0.client, k0.server),
        "lower port is the server"
    );
    assert_eq!(k.to_server.data, k0.to_server.data);
    assert_eq!(k.to_client.data, k0.to_client.data);
    assert_eq!(k.to_server.gaps, vec![]);

    // Port 1688 wins over "lower port", even when the client's port is lower.
    let moved: Vec<Tcp> = data_only
        .iter()
        .cloned()
        .map(|mut t| {
            for a in [&mut t.src, &mut t.dst] {
                a.set_port(if a.port() == k0.server.port() {
                    1688
                } else {
                    1024
                });
            }
            t
        })
        .collect();
    let c = read_ok(&pcap_of(&moved));
    assert_eq!(c.connections[0].server.port(), 1688);
    assert_eq!(c.connections[0].to_server.data, k0.to_server.data);

    // A SYN-ACK alone still tells the roles, though `syn_seen` stays false.
    let with_syn_ack: Vec<Tcp> = tcp_segments(&bytes)
        .into_iter()
        .filter(|t| t.flags & (flags::SYN | flags::ACK) != flags::SYN)
        .map(|mut t| {
            for a in [&mut t.src, &mut t.dst] {
                a.set_port(if a.port() == k0.server.port() {
                    60000
                } else {
                    1024
                });
            }
            t
        })
        .collect();
    let c = read_ok(&pcap_of(&with_syn_ack));
    assert!(!c.connections[0].syn_seen);
    assert_eq!(c.connections[0].server.port(), 60000);
    assert_eq!(c.connections[0].to_server.gaps, vec![]);
}

#[test]
fn a_reused_address_pair_starts_a_new_connection() {
    let bytes = capture("vlmcs-vlmcsd-v6.pcap");
    let first = tcp_segments(&bytes);
    let later: Vec<Tcp> = first
        .iter()
        .cloned()
        .map(|mut t| {
            t.ts = Timestamp::new(t.ts.secs + 60, t.ts.nanos);
            t.seq = t.seq.wrapping_add(0x1234_5678);
            t
        })
        .collect();
    let c = read_ok(&pcap_of(&[first, later].concat()));
    assert_eq!(c.connections.len(), 2);
    assert_eq!(
        c.connections[0].to_server.data,
        c.connections[1].to_server.data
    );
    assert_eq!(
        c.connections[0].to_client.data,
        c.connections[1].to_client.data
    );
    assert_eq!(
        c.connections[1].first_ts.secs,
        c.connections[0].first_ts.secs + 60
    );
    for k in &c.connections {
        assert_clean(k);
    }
}

#[test]
fn rst_is_reported_and_its_payload_ignored() {
    let bytes = capture("vlmcs-vlmcsd-v6.pcap");
    let original = read_ok(&bytes);
    let mut segments = tcp_segments(&bytes);
    let last = segments.last().unwrap().clone();
    segments.push(Tcp {
        flags: flags::RST | flags::ACK,
        payload: b"reset".to_vec(),
        seq: 0,
        ..last
    });
    let c = read_ok(&pcap_of(&segments));
    assert!(c.connections[0].rst_seen);
    assert_eq!(streams(&c), streams(&original));
}

/// Link-layer wrappings of an IP packet, each with its link type.
fn wrappings(ethertype: u16, ip: &[u8]) -> Vec<(&'static str, u32, Vec<u8>)> {
    let v6 = ethertype == 0x86DD;
    let family_le: u32 = if v6 { 10 } else { 2 };
    let family_bsd: u32 = if v6 { 30 } else { 2 };
    let mut sll = vec![0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
    sll.extend(ethertype.to_be_bytes());
    sll.extend(ip);
    let mut sll2 = ethertype.to_be_bytes().to_vec();
    sll2.extend([0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
    sll2.extend(ip);
    let with = |header: [u8; 4]| [header.as_slice(), ip].concat();
    let mut out = vec![
        ("Ethernet", linktype::ETHERNET, ethernet(ethertype, &[], ip)),
        (
            "802.1Q",
            linktype::ETHERNET,
            ethernet(ethertype, &[0x8100], ip),
        ),
        (
            "QinQ",
            linktype::ETHERNET,
            ethernet(ethertype, &[0x88A8, 0x8100], ip),
        ),
        ("SLL", linktype::LINUX_SLL, sll),
        ("SLL2", linktype::LINUX_SLL2, sll2),
        ("null LE", linktype::NULL, with(family_le.to_le_bytes())),
        ("null BE", linktype::NULL, with(family_bsd.to_be_bytes())),
        ("loop", linktype::LOOP, with(family_bsd.to_be_bytes())),
        ("raw", linktype::RAW, ip.to_vec()),
    ];
    out.push(if v6 {
        ("raw IPv6", linktype::IPV6, ip.to_vec())
    } else {
        ("raw IPv4", linktype::IPV4, ip.to_vec())
    });
    out
}

fn to_v6(a: SocketAddr) -> SocketAddr {
    let IpAddr::V4(v4) = a.ip() else {
        panic!("IPv4")
    };
    SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port())
}

#[test]
fn every_link_type_and_ip_version_gives_the_same_streams() {
    let bytes = capture("vlmcs-vlmcsd-v6.pcap");
    let original = read_ok(&bytes);
    let segments = tcp_segments(&bytes);
    let v4: Vec<(u16, Vec<u8>)> = segments.iter().map(ip_packet).collect();
    // IPv6 with hop-by-hop, destination options, AH and an atomic fragment header before TCP.
    let exts = vec![
        (0u8, vec![1, 2, 0, 0, 0, 0]),
        (60, vec![1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        (
            51,
            vec![
                0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
            ],
        ),
        (44, vec![0, 0, 0, 0, 0, 7]),
    ];
    let v6: Vec<(u16, Vec<u8>)> = segments
        .iter()
        .map(|t| {
            let t6 = Tcp {
                src: to_v6(t.src),
                dst: to_v6(t.dst),
                ..t.clone()
            };
            (
                0x86DD,
                ipv6(t6.src.ip(), t6.dst.ip(), &exts, 6, &tcp_bytes(&t6)),
            )
        })
        .collect();
    let want4 = streams(&original);
    let want6: BTreeMap<_, _> = want4
        .iter()
        .map(|((c, s), v)| ((to_v6(*c), to_v6(*s)), v.clone()))
        .collect();
    for (packets, want) in [(&v4, &want4), (&v6, &want6)] {
        let count = wrappings(0x0800, &[]).len();
        for w in 0..count {
            let mut link = 0;
            let mut label = "";
            let frames: Vec<Frame> = packets
                .iter()
                .zip(&segments)
                .map(|((ethertype, ip), t)| {
                    let (name, lt, data) = wrappings(*ethertype, ip).swap_remove(w);
                    (link, label) = (lt, name);
                    Frame { ts: t.ts, data }
                })
                .collect();
            let c = read_ok(&write_pcap(link, &frames, false, false));
            assert_eq!(&streams(&c), want, "{label}");
            assert_clean(&c.connections[0]);
        }
    }
}

#[test]
fn pcap_variants_and_pcapng_give_the_same_streams_and_times() {
    let bytes = capture("vlmcs-vlmcsd-v6-n30-one-connection.pcap");
    let original = read_ok(&bytes);
    let frames = ethernet_frames(&tcp_segments(&bytes));
    let same = |c: &Capture, what: &str| {
        assert_eq!(streams(c), streams(&original), "{what}");
        let (a, b) = (&c.connections[0], &original.connections[0]);
        assert_eq!((a.first_ts, a.last_ts), (b.first_ts, b.last_ts), "{what}");
        assert_eq!(a.to_server.segments, b.to_server.segments, "{what}");
        assert_eq!(a.events(), b.events(), "{what}");
    };
    for (ns, be) in [(false, true), (true, false), (true, true)] {
        let c = read_ok(&write_pcap(linktype::ETHERNET, &frames, ns, be));
        assert_eq!(
            c.format,
            Some(Format::Pcap {
                nanosecond: ns,
                big_endian: be,
                linktype: 1
            })
        );
        same(&c, &format!("pcap ns={ns} be={be}"));
    }
    // The original microsecond times are exact in any decimal resolution from 10^-6 down.
    for (resol, be) in [
        (None, false),
        (Some(9), true),
        (Some(6), true),
        (Some(8), false),
    ] {
        let c = read_ok(&write_pcapng(1, &frames, resol, be));
        assert_eq!(c.format, Some(Format::PcapNg));
        assert_eq!(c.packets, frames.len());
        same(&c, &format!("pcapng tsresol={resol:?} be={be}"));
    }
    // 2^-30 s units round, so binary resolution is checked to the nanosecond.
    let c = read_ok(&write_pcapng(1, &frames, Some(0x80 | 30), false));
    assert_eq!(streams(&c), streams(&original));
    let drift = c.connections[0]
        .first_ts
        .saturating_since(original.connections[0].first_ts);
    assert!(drift.as_nanos() <= 1);
}

#[test]
fn non_tcp_is_ignored_and_unusable_tcp_is_skipped_with_reasons() {
    let t = tcp_segments(&capture("vlmcs-vlmcsd-v6.pcap"))[3].clone();
    let (src, dst) = (t.src.ip(), t.dst.ip());
    let (s6, d6) = (
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    );
    let tcp = tcp_bytes(&t);
    let frame = |ethertype, ip: Vec<u8>| Frame {
        ts: t.ts,
        data: ethernet(ethertype, &[], &ip),
    };
    let frames = vec![
        frame(0x0800, ipv4(src, dst, 17, 0, &[0; 12])), // 1: UDP
        frame(0x0806, vec![0; 28]),                     // 2: ARP
        frame(0x0800, ipv4(src, dst, 6, 0x2000, &tcp)), // 3: first fragment
        frame(0x0800, ipv4(src, dst, 6, 0x0010, &tcp[..8])), // 4: later fragment
        frame(
            0x86DD,
            ipv6(s6, d6, &[(44, vec![0, 8, 0, 0, 0, 1])], 6, &tcp),
        ), // 5: fragment
        frame(0x86DD, ipv6(s6, d6, &[], 50, &[0; 16])), // 6: ESP
        frame(0x86DD, ipv6(s6, d6, &[], 58, &[0; 8])),  // 7: ICMPv6
        frame(0x0800, ipv4(src, dst, 6, 0, &tcp[..12])), // 8: TCP header cut
        frame(0x0800, {
            let mut ip = ipv4(src, dst, 6, 0, &tcp);
            ip[0] = 0x44; // header length 16
            ip
        }), // 9
        frame(
            0x86DD,
            ipv6(s6, d6, &[(0, vec![0; 6])], 6, &tcp)[..50].to_vec(),
        ), // 10: cut
    ];
    let c = read(&write_pcap(linktype::ETHERNET, &frames, false, false));
    assert_eq!(c.error, None);
    assert_eq!((c.packets, c.other, c.skipped), (10, 3, 7));
    assert_eq!(c.connections, vec![]);
    let reasons: Vec<(usize, String)> = c
        .skips
        .iter()
        .map(|s| (s.record, s.reason.to_string()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (3, "IP fragment".into()),
            (4, "IP fragment".into()),
            (5, "IP fragment".into()),
            (6, "IPv6 next header 50 cannot be walked past".into()),
            (
                8,
                "TCP header cut short: needs 20 bytes, 12 captured".into()
            ),
            (9, "bad IPv4 header: header length 16 is below 20".into()),
            (
                10,
                "TCP header cut short: needs 20 bytes, 2 captured".into()
            ),
        ]
    );
}

#[test]
fn unsupported_link_types_are_named() {
    let frames = vec![Frame {
        ts: Timestamp::default(),
        data: vec![0; 40],
    }];
    let c = read(&write_pcap(105, &frames, false, false));
    assert_eq!(
        c.error,
        Some(CaptureError::UnsupportedLinkType { linktype: 105 })
    );
    assert_eq!(c.packets, 0);
    // In pcapng the interface decides, packet by packet.
    let c = read(&write_pcapng(105, &frames, None, false));
    assert_eq!(c.error, None);
    assert_eq!(
        c.skips,
        vec![Skip {
            record: 1,
            reason: SkipReason::UnsupportedLinkType(105)
        }]
    );
}

#[test]
fn truncation_at_every_offset_keeps_what_came_before() {
    for (name, bytes) in pcap_files() {
        let full = read_ok(&bytes);
        let ends = pcap_record_ends(&bytes);
        for cut in 0..=bytes.len().min(2048) {
            let c = read(&bytes[..cut]);
            let complete = ends.iter().filter(|&&e| e <= cut).count().saturating_sub(1);
            assert_eq!(c.packets, complete, "{name} cut at {cut}");
            match (cut, &c.error) {
                (0..4, Some(CaptureError::TooShort { len })) => assert_eq!(*len, cut),
                (4..24, Some(CaptureError::TruncatedHeader { available, .. })) => {
                    assert_eq!(*available, cut)
                }
                (_, None) => assert!(ends.contains(&cut), "{name}: clean end at {cut}"),
                (
                    _,
                    Some(CaptureError::Truncated {
                        record,
                        offset,
                        available,
                        ..
                    }),
                ) => {
                    assert_eq!(
                        (*record, *offset),
                        (complete + 1, ends[complete]),
                        "{name} cut at {cut}"
                    );
                    assert_eq!(*available, cut - ends[complete]);
                    assert!(
                        c.error
                            .as_ref()
                            .unwrap()
                            .to_string()
                            .contains(&format!("offset {offset}"))
                    );
                }
                (_, other) => panic!("{name} cut at {cut}: {other:?}"),
            }
            // Whatever was read is the start of the real conversation.
            for (k, whole) in c.connections.iter().zip(&full.connections) {
                assert!(whole.to_server.data.starts_with(&k.to_server.data));
                assert!(whole.to_client.data.starts_with(&k.to_client.data));
                assert_eq!(k.to_server.gaps, vec![]);
            }
        }
    }
}

#[test]
fn truncated_pcapng_keeps_what_came_before() {
    let bytes = capture("vlmcs-vlmcsd-v6.pcap");
    let full = read_ok(&bytes);
    let ng = write_pcapng(1, &ethernet_frames(&tcp_segments(&bytes)), Some(9), false);
    let mut clean_ends = 0;
    for cut in 0..ng.len() {
        let c = read(&ng[..cut]);
        match &c.error {
            None => clean_ends += 1,
            Some(CaptureError::TooShort { .. } | CaptureError::Truncated { .. }) => {}
            Some(other) => panic!("cut at {cut}: {other}"),
        }
        for (k, whole) in c.connections.iter().zip(&full.connections) {
            assert!(whole.to_server.data.starts_with(&k.to_server.data));
        }
    }
    // Clean ends: after the SHB, the IDB, the custom block and each packet but the last (the
    // whole file is not among the cuts).
    assert_eq!(clean_ends, 3 + 13);
    assert_eq!(streams(&read_ok(&ng)), streams(&full));
}

#[test]
fn damaged_pcapng_framing_is_reported_with_offsets() {
    let bytes = capture("vlmcs-vlmcsd-v6.pcap");
    let mut ng = write_pcapng(1, &ethernet_frames(&tcp_segments(&bytes)), None, false);
    // Break the trailing length of the third packet block.
    let mut at = 0;
    let mut starts = Vec::new();
    while at < ng.len() {
        starts.push(at);
        at += u32::from_le_bytes(ng[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    let third = starts[5];
    let len = u32::from_le_bytes(ng[third + 4..third + 8].try_into().unwrap()) as usize;
    ng[third + len - 1] ^= 0x40;
    let c = read(&ng);
    assert_eq!(c.packets, 2);
    let err = c.error.unwrap();
    assert!(matches!(err, CaptureError::Malformed { record: 3, offset, .. } if offset == third));
    assert!(err.to_string().contains("trailing length"), "{err}");
}

#[test]
fn mutated_files_never_panic() {
    let mut rng = Rng::new(42);
    let sources: Vec<Vec<u8>> = {
        let v6 = capture("vlmcs-vlmcsd-v6.pcap");
        let frames = ethernet_frames(&tcp_segments(&v6));
        vec![
            v6.clone(),
            capture("vlmcs-vlmcsd-v6-n30-one-connection.pcap"),
            write_pcapng(1, &frames, Some(9), false),
            write_pcapng(1, &frames, None, true),
        ]
    };
    for round in 0..4000 {
        let mut b = sources[round % sources.len()].clone();
        for _ in 0..1 + rng.below(6) {
            let i = rng.below(b.len());
            match rng.below(3) {
                0 => b[i] = rng.next() as u8,
                1 => b[i] ^= 1 << rng.below(8),
                _ => {
                    let v = (rng.next() as u32).to_le_bytes();
                    let end = (i + 4).min(b.len());
                    b[i..end].copy_from_slice(&v[..end - i]);
                }
            }
        }
        if rng.below(4) == 0 {
            b.truncate(rng.below(b.len() + 1));
        }
        let c = read(&b);
        for k in &c.connections {
            assert_tiles(&k.to_server);
            assert_tiles(&k.to_client);
            let _ = k.events();
        }
    }
}

#[test]
fn timestamps_order_and_convert() {
    let a = Timestamp::new(1, 1_500_000_000);
    assert_eq!(
        a,
        Timestamp {
            secs: 2,
            nanos: 500_000_000
        }
    );
    assert!(Timestamp::new(2, 0) < a);
    assert_eq!(a.to_string(), "2.500000000");
    assert_eq!(a.saturating_since(Timestamp::new(1, 0)).as_millis(), 1500);
    assert_eq!(Timestamp::new(1, 0).saturating_since(a).as_nanos(), 0);
    assert_eq!(Timestamp::from(a.as_duration()), a);
}

/// A capture whose binds (and alter_contexts, types 14 and 15) were not captured: every request
/// still decodes in its own syntax, inferred from the stub, and gives the same KMS body as with
/// the binds, for `inspect` and for the replay plan alike.
#[test]
fn without_the_binds_each_request_decodes_in_its_inferred_syntax() {
    const PTYPE_ALTER_CONTEXT: u8 = 14;
    const PTYPE_ALTER_CONTEXT_RESP: u8 = 15;
    // Request 1 on NDR32 (context 0), request 2 on NDR64 (context 1): captures/README.md.
    let bytes = capture("vlmcs-vlmcsd-v6-B0-no-btfn.pcap");
    let cut: Vec<Tcp> = tcp_segments(&bytes)
        .into_iter()
        .filter(|t| {
            t.flags & flags::SYN == 0
                && !t.payload.get(2).is_some_and(|p| {
                    [
                        PTYPE_BIND,
                        PTYPE_BIND_ACK,
                        PTYPE_ALTER_CONTEXT,
                        PTYPE_ALTER_CONTEXT_RESP,
                    ]
                    .contains(p)
                })
        })
        .collect();
    let full = conversation::decode(&read_ok(&bytes).connections[0]);
    let part = conversation::decode(&read_ok(&pcap_of(&cut)).connections[0]);
    assert!(part.binds.is_empty() && part.error.is_none());
    assert_eq!(part.activations.len(), 2);
    for (p, f) in part.activations.iter().zip(&full.activations) {
        assert_eq!((p.syntax, p.syntax_inferred), (f.syntax, true));
        assert!(!f.syntax_inferred);
        assert_eq!(p.body(), f.body());
        let (pr, fr) = (p.request.as_ref().unwrap(), f.request.as_ref().unwrap());
        assert_eq!(pr.version.to_string(), "6.0", "not 0.260");
        assert_eq!(pr.base, fr.base);
        assert!(matches!(p.reply, conversation::Reply::Response { .. }));
    }
    assert_eq!(
        full.activations
            .iter()
            .map(|a| a.syntax)
            .collect::<Vec<_>>(),
        [
            Some(crate::wire::ndr::Syntax::Ndr32),
            Some(crate::wire::ndr::Syntax::Ndr64)
        ]
    );
    let (pp, fp) = (
        plan::Plan::from_capture(&pcap_of(&cut)).unwrap(),
        plan::Plan::from_capture(&bytes).unwrap(),
    );
    let bodies = |p: &plan::Plan| -> Vec<Vec<u8>> {
        p.connections
            .iter()
            .flat_map(|c| c.requests.iter().map(|r| r.body.clone()))
            .collect()
    };
    assert_eq!(bodies(&pp), bodies(&fp));
}

/// A long connection: a SYN, then `segments` client segments of `len` bytes each (adjacent
/// pairs swapped every `swap_every`, one retransmitted every `again_every`), a server byte
/// answering every tenth, and FINs.
fn long_connection(segments: usize, len: usize, swap_every: usize, again_every: usize) -> Vec<Tcp> {
    let client: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let server: SocketAddr = "127.0.0.2:1688".parse().unwrap();
    let mut out = Vec::new();
    let mut ts = Timestamp::new(1_700_000_000, 0);
    let mut tick = || {
        ts = Timestamp::new(ts.secs, ts.nanos + 1000);
        ts
    };
    let syn = |ts, src, dst, seq, flags| Tcp {
        ts,
        src,
        dst,
        seq,
        flags,
        payload: Vec::new(),
    };
    let (client_isn, server_isn) = (0xffff_0000u32, 77u32);
    out.push(syn(tick(), client, server, client_isn, flags::SYN));
    out.push(syn(
        tick(),
        server,
        client,
        server_isn,
        flags::SYN | flags::ACK,
    ));
    let mut data = Vec::new();
    for i in 0..segments {
        let seq = client_isn.wrapping_add(1 + (i * len) as u32);
        let payload: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
        data.push(Tcp {
            ts: Timestamp::default(),
            src: client,
            dst: server,
            seq,
            flags: flags::ACK,
            payload,
        });
    }
    for i in (0..segments.saturating_sub(1)).step_by(swap_every) {
        data.swap(i, i + 1);
    }
    let mut answered = 0u32;
    for (i, mut t) in data.into_iter().enumerate() {
        t.ts = tick();
        let again = (i % again_every == again_every - 1).then(|| t.clone());
        out.push(t);
        if let Some(mut t) = again {
            t.ts = tick();
            out.push(t);
        }
        if i % 10 == 9 {
            out.push(Tcp {
                ts: tick(),
                src: server,
                dst: client,
                seq: server_isn.wrapping_add(1 + answered),
                flags: flags::ACK,
                payload: vec![answered as u8],
            });
            answered += 1;
        }
    }
    let end = client_isn.wrapping_add(1 + (segments * len) as u32);
    out.push(syn(tick(), client, server, end, flags::FIN | flags::ACK));
    out.push(syn(
        tick(),
        server,
        client,
        server_isn.wrapping_add(1 + answered),
        flags::FIN | flags::ACK,
    ));
    out
}

#[test]
fn a_long_connection_in_parts_is_the_whole_one_cut_and_each_part_is_bounded() {
    const LEN: usize = 1000;
    const PART: usize = 64 << 10;
    let bytes = pcap_of(&long_connection(3000, LEN, 7, 13));
    let whole = read_ok(&bytes);
    let whole = &whole.connections[0];
    assert!(whole.to_server.data.len() == 3000 * LEN && whole.to_server.gaps.is_empty());
    let mut reader = Reader::new(&bytes[..]).in_parts(PART);
    let mut parts = Vec::new();
    while let Some(p) = reader.next_part() {
        parts.push(p);
    }
    assert!(parts.len() > 40, "{} parts", parts.len());
    assert!(parts.iter().all(|p| p.id == 0));
    assert!(parts.last().unwrap().last && parts.iter().rev().skip(1).all(|p| !p.last));
    for (dir, want) in [
        (Direction::ToServer, &whole.to_server),
        (Direction::ToClient, &whole.to_client),
    ] {
        let mut data = Vec::new();
        let mut segments = Vec::new();
        let (mut duplicates, mut stray) = (0, 0);
        for p in &parts {
            let s = p.conn.stream(dir);
            // Each part starts where the previous one ended, and holds what one part may hold.
            assert_eq!(s.base, data.len());
            assert!(s.data.len() <= PART + LEN, "{}", s.data.len());
            assert!(s.gaps.is_empty() && s.conflicts.is_empty());
            data.extend_from_slice(&s.data);
            segments.extend_from_slice(&s.segments);
            duplicates += s.duplicate_bytes;
            stray += s.stray_bytes;
        }
        assert_eq!(data, want.data, "{dir:?}");
        assert_eq!(segments, want.segments, "{dir:?}");
        assert_eq!(
            (duplicates, stray),
            (want.duplicate_bytes, want.stray_bytes)
        );
    }
    let last = &parts.last().unwrap().conn;
    assert_eq!(
        (last.client, last.server, last.syn_seen, last.fin_seen),
        (whole.client, whole.server, whole.syn_seen, whole.fin_seen)
    );
}

#[test]
fn a_hole_no_retransmission_fills_is_handed_on_as_a_gap() {
    const LEN: usize = 1000;
    let mut segments = long_connection(400, LEN, 1000, 1000);
    // Drop the client's 100th data segment (after SYN, SYN-ACK and the server's 9 bytes).
    let lost = segments
        .iter()
        .position(|t| t.payload.first() == Some(&((99 * 31) as u8)) && t.payload.len() == LEN)
        .unwrap();
    segments.remove(lost);
    let bytes = pcap_of(&segments);
    let mut reader = Reader::new(&bytes[..]).in_parts(16 << 10);
    let mut gaps = Vec::new();
    let mut data = 0;
    while let Some(p) = reader.next_part() {
        gaps.extend(p.conn.to_server.gaps.iter().copied());
        data += p.conn.to_server.data.len();
    }
    assert_eq!(
        gaps,
        vec![Gap {
            offset: 99 * LEN,
            len: LEN as u64
        }]
    );
    assert_eq!(data, 399 * LEN);
}
