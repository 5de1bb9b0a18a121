//! `inspect` on real and synthetic captures: every shared capture decodes with no undecoded
//! byte and the right summary; cut captures give an error naming a record and a partial report
//! that is a prefix of the whole; JSON has the documented keys; non-KMS connections are skipped
//! with a reason and `--port` forces them; gaps are reported as gaps.

use std::path::{Path, PathBuf};
use std::process::Command;

use kmsharness::exit::Exit;
use kmsharness::inspect::{
    ExchangeReport, FileErrorKind, InspectConfig, InspectReport, Outcome, Recognition, Side,
    inspect, inspect_in_parts,
};
use kmsharness::report::inspect::{json, text};
use kmsharness::wire::ndr::Syntax;

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures")
}

/// The twelve third-party captures: (file name, bytes).
fn shared() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(captures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "pcap")
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("vlmcs-")
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert_eq!(out.len(), 12, "the shared set has twelve captures");
    out
}

fn capture(name: &str) -> Vec<u8> {
    std::fs::read(captures_dir().join(name)).unwrap()
}

fn all_checks_pass(e: &ExchangeReport) -> bool {
    e.failed_checks().next().is_none()
}

// ---------------------------------------------------------------------------------------------
// A minimal pcap reader and writer (classic little-endian pcap, Ethernet, IPv4, TCP).

/// The 24-byte file header and each record (16-byte header plus frame), as slices.
fn pcap_records(file: &[u8]) -> (&[u8], Vec<&[u8]>) {
    assert_eq!(file[..4], [0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let mut records = Vec::new();
    let mut at = 24;
    while at < file.len() {
        let incl = u32::from_le_bytes(file[at + 8..at + 12].try_into().unwrap()) as usize;
        records.push(&file[at..at + 16 + incl]);
        at += 16 + incl;
    }
    (&file[..24], records)
}

/// Offsets where records end (the clean cut points).
fn record_ends(file: &[u8]) -> Vec<usize> {
    let (head, records) = pcap_records(file);
    let mut at = head.len();
    let mut ends = vec![at];
    for r in records {
        at += r.len();
        ends.push(at);
    }
    ends
}

/// TCP flags and payload of an Ethernet/IPv4/TCP record.
fn tcp_of(record: &[u8]) -> (u8, &[u8]) {
    let frame = &record[16..];
    assert_eq!(frame[12..14], [0x08, 0x00], "IPv4");
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 15) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let tcp = &ip[ihl..total];
    let off = usize::from(tcp[12] >> 4) * 4;
    (tcp[13], &tcp[off..])
}

fn pcap_of(head: &[u8], records: &[&[u8]]) -> Vec<u8> {
    let mut out = head.to_vec();
    for r in records {
        out.extend_from_slice(r);
    }
    out
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;

/// One Ethernet/IPv4/TCP record written by hand.
fn tcp_record(
    secs: u32,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&src.1.to_be_bytes());
    tcp.extend_from_slice(&dst.1.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.push(5 << 4);
    tcp.push(flags);
    tcp.extend_from_slice(&65535u16.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    tcp.extend_from_slice(payload);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    ip.extend_from_slice(&src.0);
    ip.extend_from_slice(&dst.0);
    ip.extend_from_slice(&tcp);
    let mut frame = vec![0u8; 12];
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&ip);
    let mut rec = Vec::new();
    rec.extend_from_slice(&secs.to_le_bytes());
    rec.extend_from_slice(&0u32.to_le_bytes());
    rec.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    rec.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    rec.extend_from_slice(&frame);
    rec
}

/// A pcap file header: little-endian, microseconds, Ethernet.
fn pcap_header() -> Vec<u8> {
    let mut h = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&262_144u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h
}

/// An HTTP exchange on port 80: a TCP connection that is not KMS.
fn http_records() -> Vec<Vec<u8>> {
    let c = ([10, 0, 0, 1], 50_000);
    let s = ([10, 0, 0, 2], 80);
    let req = b"GET / HTTP/1.0\r\nHost: example\r\n\r\n";
    let resp = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    let (ci, si) = (1000u32, 5000u32);
    vec![
        tcp_record(1_800_000_000, c, s, ci, 0, SYN, b""),
        tcp_record(1_800_000_000, s, c, si, ci + 1, SYN | ACK, b""),
        tcp_record(1_800_000_000, c, s, ci + 1, si + 1, ACK, b""),
        tcp_record(1_800_000_000, c, s, ci + 1, si + 1, PSH | ACK, req),
        tcp_record(
            1_800_000_001,
            s,
            c,
            si + 1,
            ci + 1 + req.len() as u32,
            PSH | ACK,
            resp,
        ),
        tcp_record(
            1_800_000_001,
            s,
            c,
            si + 1 + resp.len() as u32,
            ci + 1 + req.len() as u32,
            FIN | ACK,
            b"",
        ),
        tcp_record(
            1_800_000_001,
            c,
            s,
            ci + 1 + req.len() as u32,
            si + 2 + resp.len() as u32,
            FIN | ACK,
            b"",
        ),
    ]
}

/// A small seeded generator (xorshift64*), for reproducible random cuts.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as usize % n
    }
}

// ---------------------------------------------------------------------------------------------

/// (connections, exchanges, protocol version) per shared capture, from captures/README.md.
fn expected(name: &str) -> (usize, usize, &'static str) {
    let version = if name.contains("-v4") {
        "4.0"
    } else if name.contains("-v5") {
        "5.0"
    } else {
        "6.0"
    };
    let (conns, calls) = if name.contains("n30-T") {
        (30, 30)
    } else if name.contains("n30-one") {
        (1, 30)
    } else if name.contains("-B0") || name.contains("-N0") || name.contains("-p-") {
        (1, 2)
    } else {
        (1, 1)
    };
    (conns, calls, version)
}

#[test]
fn every_shared_capture_inspects_with_no_undecoded_byte() {
    for (name, bytes) in shared() {
        let r = inspect(&bytes, InspectConfig::default());
        let (conns, calls, version) = expected(&name);
        assert_eq!(r.capture.error, None, "{name}");
        assert_eq!(r.capture.format, Some("pcap"), "{name}");
        assert!(r.capture.skipped_records.is_empty(), "{name}");
        assert_eq!(r.connections.len(), conns, "{name}");
        for c in &r.connections {
            assert_eq!(c.kms, Some(Recognition::Bind), "{name}");
            assert!(c.gaps.is_empty(), "{name}: {:?}", c.gaps);
            assert!(c.error.is_none(), "{name}: {:?}", c.error);
            assert_eq!(c.undecoded_bytes.from_client, 0, "{name}");
            assert_eq!(c.undecoded_bytes.from_server, 0, "{name}");
            assert!(c.pdus.from_client >= 2 && c.pdus.from_server >= 2, "{name}");
            assert!(c.tcp.syn_seen && c.tcp.fin_seen.from_client, "{name}");
            assert!(!c.binds.is_empty(), "{name}");
            for b in &c.binds {
                assert!(b.checks.all_passed(), "{name}: {:?}", b.checks);
                assert!(b.reply.is_some() && b.assoc_group.is_some(), "{name}");
            }
            for e in &c.exchanges {
                assert_eq!(e.outcome, Outcome::Ok, "{name} call {}", e.call_id);
                assert!(all_checks_pass(e), "{name}");
                assert!(e.request.is_some() && e.response.is_some(), "{name}");
                assert!(
                    !e.request_checks.is_empty() && !e.rpc_checks.is_empty(),
                    "{name}"
                );
                assert!(!e.response_checks.is_empty(), "{name}");
                assert!(e.latency_micros.is_some(), "{name}");
                let req = e.request.as_ref().unwrap();
                assert_eq!(req.product, Some("Windows Server 2019 ARM64"), "{name}");
                assert_eq!(req.application, Some("Windows"), "{name}");
                assert_eq!(req.kms_item, Some("Windows Server 2019"), "{name}");
                assert_eq!(req.version.to_string(), version, "{name}");
            }
        }
        let s = &r.summary;
        assert_eq!(r.exit, Exit::Success, "{name}: {:?}", s.errors);
        assert!(s.errors.is_empty(), "{name}: {:?}", s.errors);
        assert_eq!(s.connections, conns, "{name}");
        assert_eq!(s.kms_connections, conns, "{name}");
        assert_eq!(s.skipped_connections, 0, "{name}");
        assert_eq!(s.exchanges, calls, "{name}");
        assert_eq!(s.outcomes.ok, calls, "{name}");
        // vlmcs draws a random machine ID for every request.
        assert_eq!(s.distinct_cmids, calls, "{name}");
        assert_eq!(s.hosts.len(), 1, "{name}");
        let host = &s.hosts[0];
        assert_eq!((host.connections, host.exchanges), (conns, calls), "{name}");
        assert_eq!(host.responses, calls, "{name}");
        // Both hosts report twice the N count policy: 10 for the server product vlmcs sends.
        assert_eq!(
            (host.count_min, host.count_max),
            (Some(10), Some(10)),
            "{name}"
        );
        if name.contains("pykms") {
            assert_eq!(host.address.port(), 17002, "{name}");
        } else {
            // vlmcsd keeps one ePID per product for its lifetime.
            assert_eq!(host.distinct_epids, 1, "{name}");
        }
        assert_eq!(s.clients.len(), 1, "{name}");
        assert_eq!(s.clients[0].distinct_cmids, calls, "{name}");
        assert_eq!(s.clients[0].connections, conns, "{name}");
        assert_eq!(s.products.len(), 1, "{name}");
        assert_eq!(s.products[0].product, "Windows Server 2019 ARM64", "{name}");
        assert_eq!(s.products[0].requests, calls, "{name}");
        assert_eq!(s.versions.len(), 1, "{name}");
        assert_eq!(
            (s.versions[0].name.as_str(), s.versions[0].count),
            (version, calls)
        );
        let numbers: Vec<usize> = r.exchanges().map(|e| e.index).collect();
        assert_eq!(numbers, (1..=calls).collect::<Vec<_>>(), "{name}");
    }
}

#[test]
fn every_capture_in_the_directory_decodes_completely() {
    // The shared twelve and whatever the project recorded beside them.
    let mut seen = 0;
    for entry in std::fs::read_dir(captures_dir()).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .extension()
            .is_some_and(|e| e == "pcap" || e == "pcapng")
        {
            continue;
        }
        let name = path.display();
        let r = inspect(&std::fs::read(&path).unwrap(), InspectConfig::default());
        assert_eq!(r.exit, Exit::Success, "{name}: {:?}", r.summary.errors);
        assert!(r.summary.errors.is_empty(), "{name}");
        assert!(r.summary.exchanges > 0, "{name}");
        assert_eq!(r.summary.outcomes.ok, r.summary.exchanges, "{name}");
        for c in &r.connections {
            assert!(
                c.kms.is_some() && c.gaps.is_empty() && c.error.is_none(),
                "{name}"
            );
            assert_eq!(
                c.undecoded_bytes.from_client + c.undecoded_bytes.from_server,
                0
            );
        }
        seen += 1;
    }
    assert!(seen >= 12, "{seen}");
}

/// What a report says, as the JSON document shows it.
fn document(r: &InspectReport) -> serde_json::Value {
    let mut out = Vec::new();
    json(&mut out, "capture", r).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn connections_handed_on_in_parts_give_the_same_report_as_whole() {
    // Every capture in the directory, cut ones, one with a gap, and a mid-connection one:
    // decoded in parts as small as one segment, the report is the whole-connection one.
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(captures_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pcap") {
            inputs.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    let bytes = capture("vlmcs-vlmcsd-v6-N0-no-ndr64.pcap");
    let (head, records) = pcap_records(&bytes);
    let without: Vec<&[u8]> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 9)
        .map(|(_, r)| *r)
        .collect();
    inputs.push(("gap".into(), pcap_of(head, &without)));
    for cut in [200, 1000, bytes.len() - 7] {
        inputs.push((format!("cut at {cut}"), bytes[..cut].to_vec()));
    }
    inputs.push((
        "mid-connection".into(),
        mid_connection("vlmcs-vlmcsd-v6.pcap", 0),
    ));
    for (name, bytes) in &inputs {
        let whole = document(&inspect(bytes, InspectConfig::default()));
        for part_bytes in [1, 300, 5000] {
            let parts = document(&inspect_in_parts(
                bytes,
                InspectConfig::default(),
                part_bytes,
            ));
            assert_eq!(parts, whole, "{name} in parts of {part_bytes} bytes");
        }
    }
}

#[test]
fn summary_only_reports_drop_exchanges_but_tally_them() {
    let bytes = capture("vlmcs-vlmcsd-v6.pcap");
    let whole = inspect(&bytes, InspectConfig::default());
    let config = InspectConfig {
        summary_only: true,
        ..InspectConfig::default()
    };
    let summary = inspect_in_parts(&bytes, config, 300);
    assert!(summary.connections.iter().all(|c| c.exchanges.is_empty()));
    assert_eq!(summary.summary, whole.summary);
    assert_eq!(summary.exit, whole.exit);
}

#[test]
fn bind_outcomes_are_named() {
    let r = inspect(&capture("vlmcs-vlmcsd-v6.pcap"), InspectConfig::default());
    let binds = &r.connections[0].binds;
    assert_eq!(binds.len(), 2, "bind then alter_context");
    assert_eq!((binds[0].kind, binds[0].reply), ("bind", Some("bind_ack")));
    assert_eq!(binds[0].accepted, ["NDR64", "BTFN"]);
    let names: Vec<(&str, Option<&str>)> = binds[0]
        .contexts
        .iter()
        .map(|c| (c.offered, c.result))
        .collect();
    assert_eq!(
        names,
        [
            ("NDR32", Some("provider_rejection")),
            ("NDR64", Some("acceptance")),
            ("BTFN", Some("negotiate_ack"))
        ]
    );
    assert_eq!(
        binds[0].contexts[0].reason_name,
        Some("proposed_transfer_syntaxes_not_supported")
    );
    assert_eq!(
        (binds[1].kind, binds[1].reply),
        ("alter_context", Some("alter_context_resp"))
    );
    assert_eq!(binds[1].accepted, ["NDR32"]);

    let pykms = inspect(&capture("vlmcs-pykms-v6.pcap"), InspectConfig::default());
    let b = &pykms.connections[0].binds;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].accepted, ["NDR32", "BTFN"]);
    assert_eq!(
        b[0].assoc_group,
        Some(0x1063_bf3f),
        "py-kms's constant group"
    );
}

#[test]
fn cut_captures_report_a_record_and_a_prefix_never_panicking() {
    let mut rng = Rng(0x5eed_1688);
    let mut random_cuts = 0;
    for (name, bytes) in shared() {
        let full = inspect(&bytes, InspectConfig::default());
        let ends = record_ends(&bytes);
        let mut cuts: Vec<usize> = ends.clone();
        // 300 random offsets over the twelve files.
        for _ in 0..25 {
            cuts.push(rng.below(bytes.len()));
            random_cuts += 1;
        }
        for cut in cuts {
            let what = format!("{name} cut at {cut}");
            let part = inspect(&bytes[..cut], InspectConfig::default());
            match &part.capture.error {
                None => assert!(ends.contains(&cut), "{what}: no error"),
                Some(e) if cut < 24 => {
                    // Inside the file header: no record to name.
                    assert_ne!(e.message, "", "{what}");
                    assert_eq!(part.connections.len(), 0, "{what}");
                }
                Some(e) => {
                    assert!(!ends.contains(&cut), "{what}: error at a clean end");
                    assert_eq!(e.kind, FileErrorKind::Damaged, "{what}");
                    let record = e.record.expect("a record number");
                    let complete = ends.iter().filter(|&&end| end <= cut).count() - 1;
                    assert_eq!(record, complete + 1, "{what}");
                    assert!(
                        e.message.contains(&format!("packet record {record}")),
                        "{what}"
                    );
                    assert_eq!(part.exit, Exit::Rpc, "{what}");
                    assert_eq!(part.capture.packets, complete, "{what}");
                }
            }
            // The partial report is a prefix of the full one.
            assert!(part.connections.len() <= full.connections.len(), "{what}");
            let got: Vec<&ExchangeReport> = part.exchanges().collect();
            let want: Vec<&ExchangeReport> = full.exchanges().collect();
            assert!(got.len() <= want.len(), "{what}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.index, w.index, "{what}");
                assert_eq!(g.call_id, w.call_id, "{what}");
                let (gr, wr) = (g.request.as_ref().unwrap(), w.request.as_ref().unwrap());
                assert_eq!(gr, wr, "{what}");
                if let Some(resp) = &g.response {
                    assert_eq!(Some(resp), w.response.as_ref(), "{what}");
                    assert_eq!(g.outcome, Outcome::Ok, "{what}");
                } else {
                    assert_eq!(g.outcome, Outcome::Unanswered, "{what}");
                }
            }
            for (g, w) in part.connections.iter().zip(&full.connections) {
                assert_eq!((g.client, g.server), (w.client, w.server), "{what}");
            }
            // Both printers cope with every partial report.
            let mut out = Vec::new();
            text(&mut out, &name, &part).unwrap();
            out.clear();
            json(&mut out, &name, &part).unwrap();
            serde_json::from_slice::<serde_json::Value>(&out).unwrap();
        }
    }
    assert_eq!(random_cuts, 300);
}

#[test]
fn json_has_the_documented_keys_and_text_names_epid_and_ndr64() {
    let bytes = capture("vlmcs-vlmcsd-v6.pcap");
    let r = inspect(&bytes, InspectConfig::default());
    let mut out = Vec::new();
    json(&mut out, "v6.pcap", &r).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let sorted = |list: &[&str]| -> Vec<String> {
        let mut k: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&v),
        sorted(&[
            "format",
            "file",
            "capture",
            "connections",
            "summary",
            "exit_status",
            "exit"
        ])
    );
    assert_eq!(v["format"], "kmsharness-inspect/1");
    assert_eq!(v["file"], "v6.pcap");
    assert_eq!(v["exit_status"], 0);
    assert_eq!(v["exit"], "success");
    assert_eq!(
        keys(&v["capture"]),
        sorted(&[
            "format",
            "linktype",
            "packets",
            "not_tcp",
            "skipped",
            "skipped_records",
            "connections",
            "error"
        ])
    );
    let c = &v["connections"][0];
    assert_eq!(
        keys(c),
        sorted(&[
            "index",
            "client",
            "server",
            "kms",
            "skip_reason",
            "first",
            "last",
            "duration_secs",
            "tcp",
            "pdus",
            "undecoded_bytes",
            "gaps",
            "binds",
            "exchanges",
            "error"
        ])
    );
    assert_eq!(c["kms"], "bind");
    assert_eq!(c["binds"][0]["accepted"][0], "NDR64");
    assert_eq!(
        keys(&c["binds"][0]),
        sorted(&[
            "kind",
            "call_id",
            "flags",
            "reply",
            "reply_flags",
            "assoc_group",
            "contexts",
            "accepted",
            "checks"
        ])
    );
    let e = &c["exchanges"][0];
    assert_eq!(
        keys(e),
        sorted(&[
            "index",
            "call_id",
            "context_id",
            "syntax",
            "syntax_inferred",
            "fragments",
            "sent_at",
            "replied_at",
            "latency_micros",
            "request_size",
            "request",
            "request_error",
            "request_checks",
            "outcome",
            "response",
            "hresult",
            "fault",
            "reply_error",
            "rpc_checks",
            "response_checks"
        ])
    );
    assert_eq!(e["outcome"], "ok");
    assert_eq!(e["syntax"], "NDR32");
    assert_eq!(
        keys(&e["request"]),
        sorted(&[
            "message_format",
            "version",
            "base_version",
            "vm_info",
            "license_status",
            "license_status_name",
            "binding_expiration",
            "app_id",
            "application",
            "sku_id",
            "product",
            "kms_id",
            "kms_item",
            "cmid",
            "previous_cmid",
            "client_time",
            "client_time_filetime",
            "workstation",
            "required_clients",
            "iv",
            "mac"
        ])
    );
    assert_eq!(e["request"]["product"], "Windows Server 2019 ARM64");
    assert_eq!(
        keys(&e["response"]),
        sorted(&[
            "size",
            "version",
            "epid",
            "hwid",
            "cmid",
            "client_time",
            "count",
            "renewal_interval",
            "activation_interval"
        ])
    );
    let epid = "03612-00206-569-992245-03-14337-17763.0000-1622026";
    assert_eq!(e["response"]["epid"], epid);
    assert_eq!(e["response"]["hwid"], "3A1C049600B60076");
    assert_eq!(
        keys(&e["response_checks"][0]),
        sorted(&["id", "passed", "expected", "actual"])
    );
    assert_eq!(
        keys(&v["summary"]),
        sorted(&[
            "connections",
            "kms_connections",
            "skipped_connections",
            "exchanges",
            "outcomes",
            "hosts",
            "clients",
            "distinct_cmids",
            "products",
            "versions",
            "errors"
        ])
    );
    assert_eq!(
        keys(&v["summary"]["errors"]),
        sorted(&["failed_checks", "refusals", "faults", "problems"])
    );
    assert_eq!(v["summary"]["hosts"][0]["epids"][0], epid);

    let mut out = Vec::new();
    text(&mut out, "v6.pcap", &r).unwrap();
    let shown = String::from_utf8(out).unwrap();
    assert!(shown.contains(epid), "{shown}");
    assert!(shown.contains("NDR64"), "{shown}");
    assert!(
        shown.contains("Accepted: ... NDR64 ... BTFN ..."),
        "{shown}"
    );
    assert!(shown.contains("pass  hmac"), "{shown}");
    assert!(shown.contains("Windows Server 2019 ARM64"), "{shown}");
    assert!(shown.contains("Exit status 0"), "{shown}");
}

#[test]
fn a_non_kms_connection_is_skipped_and_port_forces_it() {
    let http: Vec<Vec<u8>> = http_records();
    let mut file = pcap_header();
    for r in &http {
        file.extend_from_slice(r);
    }
    let r = inspect(&file, InspectConfig::default());
    assert_eq!(r.capture.error, None);
    assert_eq!(r.connections.len(), 1);
    let c = &r.connections[0];
    assert_eq!(c.kms, None);
    let reason = c.skip_reason.as_deref().unwrap();
    assert!(reason.contains("not DCE/RPC"), "{reason}");
    assert!(reason.contains("47 45 54 20"), "{reason}");
    assert_eq!(c.server.port(), 80);
    assert_eq!(
        (r.summary.skipped_connections, r.summary.kms_connections),
        (1, 0)
    );
    assert_eq!(r.exit, Exit::Usage, "nothing was KMS: the wrong file");

    // Forced: decoded as KMS, and the bytes are reported as undecodable.
    let forced = inspect(
        &file,
        InspectConfig {
            port: Some(80),
            ..InspectConfig::default()
        },
    );
    let c = &forced.connections[0];
    assert_eq!(c.kms, Some(Recognition::Port));
    let e = c.error.as_ref().expect("an error");
    assert_eq!(
        (e.from, e.offset, e.record, e.gap),
        (Side::Client, 0, Some(4), false)
    );
    assert!(c.undecoded_bytes.from_client > 0);
    assert_eq!(forced.exit, Exit::Rpc);
    assert_eq!(forced.summary.errors.problems[0].name, "stream");

    // Beside a KMS capture: one decoded, one skipped; a different --port changes nothing.
    let kms = capture("vlmcs-vlmcsd-v6.pcap");
    let (_, kms_records) = pcap_records(&kms);
    let mut both = pcap_header();
    for r in &kms_records {
        both.extend_from_slice(r);
    }
    for r in &http {
        both.extend_from_slice(r);
    }
    for port in [None, Some(1688)] {
        let r = inspect(
            &both,
            InspectConfig {
                port,
                ..InspectConfig::default()
            },
        );
        assert_eq!(r.connections.len(), 2);
        assert_eq!(r.connections[0].kms, Some(Recognition::Bind));
        assert_eq!(r.connections[1].kms, None);
        assert_eq!(r.exit, Exit::Success);
        assert_eq!(r.summary.exchanges, 1);
    }
}

/// `name` without its SYNs and every bind, alter_context and their answers (packet types 11,
/// 12, 14, 15), and without the first `calls` requests and their responses (types 0 and 2):
/// it looks as if the capture began mid-connection.
fn mid_connection(name: &str, calls: usize) -> Vec<u8> {
    let bytes = capture(name);
    let (head, records) = pcap_records(&bytes);
    let (mut requests, mut responses) = (0, 0);
    let kept: Vec<&[u8]> = records
        .into_iter()
        .filter(|r| {
            let (flags, payload) = tcp_of(r);
            let ptype = (payload.len() > 2).then(|| payload[2]);
            let early_call = match ptype {
                Some(0) => {
                    requests += 1;
                    requests <= calls
                }
                Some(2) => {
                    responses += 1;
                    responses <= calls
                }
                _ => false,
            };
            let bind = matches!(ptype, Some(11 | 12 | 14 | 15));
            flags & SYN == 0 && !bind && !early_call
        })
        .collect();
    pcap_of(head, &kept)
}

#[test]
fn a_capture_that_begins_mid_connection_is_recognised_by_content_on_any_port() {
    let name = "vlmcs-vlmcsd-v6.pcap";
    let full = inspect(&capture(name), InspectConfig::default());
    let file = mid_connection(name, 0);
    let r = inspect(&file, InspectConfig::default());
    assert_eq!(r.connections.len(), 1);
    let c = &r.connections[0];
    assert_eq!(c.kms, Some(Recognition::Request), "{:?}", c.skip_reason);
    assert!(!c.tcp.syn_seen && c.binds.is_empty());
    assert_eq!(
        c.server.port(),
        17001,
        "not the KMS port: recognised by content"
    );
    assert_eq!(c.exchanges.len(), 1);
    let (got, want) = (&c.exchanges[0], full.exchanges().next().unwrap());
    assert_eq!(got.outcome, Outcome::Ok, "{got:?}");
    let req = got.request.as_ref().unwrap();
    assert_eq!(req.version.to_string(), "6.0");
    assert_eq!(req.workstation.to_string(), "ceo-laptop.htc.co.uk");
    assert_eq!(Some(req), want.request.as_ref());
    assert_eq!(got.response, want.response);
    assert_eq!(
        (got.syntax, got.syntax_inferred),
        (Some(Syntax::Ndr32), true)
    );
    assert!(all_checks_pass(got));
    assert_eq!(r.exit, Exit::Success);
    let mut out = Vec::new();
    text(&mut out, "mid.pcap", &r).unwrap();
    let shown = String::from_utf8(out).unwrap();
    assert!(
        shown.contains("recognised by its first activation request"),
        "{shown}"
    );
    assert!(
        shown.contains("over NDR32 (inferred from the stub"),
        "{shown}"
    );

    // --port still works (content wins when it recognises the connection).
    let forced = inspect(
        &file,
        InspectConfig {
            port: Some(17001),
            ..InspectConfig::default()
        },
    );
    assert_eq!(forced.connections[0].kms, Some(Recognition::Request));
    assert_eq!(forced.summary.outcomes.ok, 1);
}

#[test]
fn only_a_kms_activation_request_is_recognised_and_port_forces_the_rest() {
    // The same stream with its request's opnum changed to 1: a DCE/RPC request, but not the
    // activation call.
    let file = mid_connection("vlmcs-vlmcsd-v6.pcap", 0);
    let (head, records) = pcap_records(&file);
    let edited: Vec<Vec<u8>> = records
        .iter()
        .map(|r| {
            let mut r = r.to_vec();
            let (_, payload) = tcp_of(&r);
            if payload.len() > 24 && payload[2] == 0 {
                let at = r.len() - payload.len();
                r[at + 22] = 1;
            }
            r
        })
        .collect();
    let refs: Vec<&[u8]> = edited.iter().map(Vec::as_slice).collect();
    let file = pcap_of(head, &refs);
    let r = inspect(&file, InspectConfig::default());
    let c = &r.connections[0];
    assert_eq!(c.kms, None);
    let reason = c.skip_reason.as_deref().unwrap();
    assert!(
        reason.contains("nor a whole KMS activation request (opnum 1)"),
        "{reason}"
    );
    assert!(reason.contains("--port 17001"), "{reason}");
    assert_eq!(r.exit, Exit::Usage, "no KMS conversation");
    let forced = inspect(
        &file,
        InspectConfig {
            port: Some(17001),
            ..InspectConfig::default()
        },
    );
    assert_eq!(forced.connections[0].kms, Some(Recognition::Port));
    assert_eq!(forced.connections[0].exchanges.len(), 1);
}

#[test]
fn without_a_syn_a_wrong_role_guess_is_corrected_by_content_or_port() {
    let file = mid_connection("vlmcs-vlmcsd-v6-N0-no-ndr64.pcap", 0);
    let r = inspect(&file, InspectConfig::default());
    let c = &r.connections[0];
    assert_eq!(c.kms, Some(Recognition::Request));
    assert_eq!(c.server.port(), 17001);
    assert_eq!(r.summary.outcomes.ok, 2);
    // Without a SYN the roles are guessed (the lower port is the server). Move the client to
    // port 1000 so that the guess is wrong: the request flowing the other way corrects it.
    let client_port = c.client.port().to_be_bytes();
    let moved: Vec<u8> = {
        let (head, records) = pcap_records(&file);
        let mut out = head.to_vec();
        for r in records {
            let mut r = r.to_vec();
            for at in [16 + 34, 16 + 36] {
                if r[at..at + 2] == client_port {
                    r[at..at + 2].copy_from_slice(&1000u16.to_be_bytes());
                }
            }
            out.extend_from_slice(&r);
        }
        out
    };
    for port in [None, Some(17001)] {
        let corrected = inspect(
            &moved,
            InspectConfig {
                port,
                ..InspectConfig::default()
            },
        );
        let c = &corrected.connections[0];
        assert_eq!((c.client.port(), c.server.port()), (1000, 17001));
        assert_eq!(c.kms, Some(Recognition::Request));
        assert_eq!(corrected.summary.outcomes.ok, 2);
        assert_eq!(corrected.exit, Exit::Success);
    }
}

#[test]
fn an_ndr64_request_without_its_bind_decodes_as_in_the_full_capture() {
    // Request 1 on context 0 (NDR32), request 2 on context 1 (NDR64): captures/README.md.
    let name = "vlmcs-vlmcsd-v6-B0-no-btfn.pcap";
    let full = inspect(&capture(name), InspectConfig::default());
    let want: Vec<&ExchangeReport> = full.exchanges().collect();
    assert_eq!(
        want.iter()
            .map(|e| (e.context_id, e.syntax))
            .collect::<Vec<_>>(),
        [(0, Some(Syntax::Ndr32)), (1, Some(Syntax::Ndr64))]
    );
    assert!(want.iter().all(|e| !e.syntax_inferred));
    // Binds cut: both layouts inferred. Binds and the first call cut: the stream starts with
    // the NDR64 request, which is recognised as well.
    for calls in [0, 1] {
        let r = inspect(&mid_connection(name, calls), InspectConfig::default());
        let c = &r.connections[0];
        assert_eq!(c.kms, Some(Recognition::Request), "{:?}", c.skip_reason);
        assert_eq!(c.undecoded_bytes.from_client, 0);
        let got: Vec<&ExchangeReport> = r.exchanges().collect();
        assert_eq!(got.len(), 2 - calls);
        for (g, w) in got.iter().zip(&want[calls..]) {
            assert_eq!((g.context_id, g.syntax), (w.context_id, w.syntax));
            assert!(g.syntax_inferred);
            let req = g.request.as_ref().unwrap();
            assert_eq!(req.version.to_string(), "6.0", "not 0.260");
            assert_eq!(Some(req), w.request.as_ref());
            assert_eq!(g.response, w.response);
            assert_eq!(g.outcome, Outcome::Ok, "{g:?}");
            assert!(all_checks_pass(g), "{g:?}");
            for (gc, wc) in [
                (&g.request_checks, &w.request_checks),
                (&g.rpc_checks, &w.rpc_checks),
                (&g.response_checks, &w.response_checks),
            ] {
                assert_eq!(format!("{gc:?}"), format!("{wc:?}"));
            }
        }
        let last = got.last().unwrap().request.as_ref().unwrap();
        assert_eq!(last.workstation.to_string(), "mail.samsung.de");
        assert_eq!(r.exit, Exit::Success);
    }
}

#[test]
fn a_gap_is_reported_with_its_records_and_stops_decoding_there() {
    let bytes = capture("vlmcs-vlmcsd-v6-N0-no-ndr64.pcap");
    let (head, records) = pcap_records(&bytes);
    // Record 10 carries the second request.
    assert_eq!(tcp_of(records[9]).1.len(), 292);
    let kept: Vec<&[u8]> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 9)
        .map(|(_, r)| *r)
        .collect();
    let r = inspect(&pcap_of(head, &kept), InspectConfig::default());
    let c = &r.connections[0];
    assert_eq!(c.gaps.len(), 1, "{:?}", c.gaps);
    let g = &c.gaps[0];
    assert_eq!((g.from, g.len), (Side::Client, 292));
    // Numbered in the file as written: the old record 12 (client FIN) is now 11.
    assert_eq!((g.record_before, g.record_after), (Some(8), None));
    let e = c.error.as_ref().unwrap();
    assert!(e.gap && e.message.contains("292 bytes missing"), "{e:?}");
    assert_eq!(c.exchanges.len(), 1, "the exchange before the gap");
    assert_eq!(c.exchanges[0].outcome, Outcome::Ok);
    assert_eq!(r.exit, Exit::Rpc);
    assert_eq!(r.summary.errors.problems[0].name, "gap");
    let mut out = Vec::new();
    text(&mut out, "gap.pcap", &r).unwrap();
    let shown = String::from_utf8(out).unwrap();
    assert!(shown.contains("GAP"), "{shown}");
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kmsharness"))
        .arg("inspect")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn command_line_exit_statuses_and_one_stderr_line() {
    let dir = std::env::temp_dir().join(format!("kmsharness-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let whole = captures_dir().join("vlmcs-vlmcsd-v6.pcap");
    let (code, stdout, stderr) = run(&[whole.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("NDR64") && stderr.is_empty());

    let (code, stdout, _) = run(&[whole.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["summary"]["exchanges"], 1);

    // Cut inside record 9: records 1 to 8 are reported.
    let bytes = std::fs::read(&whole).unwrap();
    let ends = record_ends(&bytes);
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..ends[8] + 20]).unwrap();
    let (code, stdout, stderr) = run(&[cut.to_str().unwrap()]);
    assert_eq!(code, 4);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("packet record 9"), "{stderr}");
    assert!(stdout.contains("Connection 1"), "{stdout}");

    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file").unwrap();
    let (code, _, stderr) = run(&[junk.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a capture"), "{stderr}");

    let (code, _, stderr) = run(&[dir.join("absent.pcap").to_str().unwrap()]);
    assert_eq!(code, 6);
    assert!(stderr.contains("cannot read"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_capture_with_no_kms_traffic_says_so_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("kmsharness-nokms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let http = dir.join("http.pcap");
    let mut file = pcap_header();
    for r in http_records() {
        file.extend_from_slice(&r);
    }
    std::fs::write(&http, &file).unwrap();
    let empty = dir.join("empty.pcap");
    std::fs::write(&empty, pcap_header()).unwrap();
    for (path, conns) in [(&http, "1 TCP connection"), (&empty, "0 TCP connections")] {
        let path = path.to_str().unwrap();
        let line = format!(
            "kmsharness inspect: {path}: no KMS traffic ({conns}, none a KMS conversation)\n"
        );
        let (code, stdout, stderr) = run(&[path]);
        assert_eq!(code, 2, "{stdout}");
        assert_eq!(stderr, line);
        assert!(stdout.contains("Exit status 2 (usage)"), "{stdout}");
        let (code, stdout, stderr) = run(&[path, "--json"]);
        assert_eq!(code, 2);
        assert_eq!(stderr, line);
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            (v["exit_status"].as_u64(), v["exit"].as_str()),
            (Some(2), Some("usage"))
        );
    }
    // The same capture with a KMS conversation beside the HTTP one passes and says nothing.
    let both = dir.join("both.pcap");
    let mut file = capture("vlmcs-vlmcsd-v6.pcap");
    for r in http_records() {
        file.extend_from_slice(&r);
    }
    std::fs::write(&both, &file).unwrap();
    let (code, _, stderr) = run(&[both.to_str().unwrap()]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn inspect_report_helpers_agree() {
    // The collected report and the streaming pieces give the same JSON.
    let bytes = capture("vlmcs-vlmcsd-v6-n30-T-connection-per-request.pcap");
    let r: InspectReport = inspect(&bytes, InspectConfig::default());
    let mut collected = Vec::new();
    json(&mut collected, "f", &r).unwrap();
    let mut streamed = Vec::new();
    let mut inspection = kmsharness::inspect::Inspection::new(
        kmsharness::capture::read(&bytes),
        InspectConfig::default(),
    );
    let mut j =
        kmsharness::report::inspect::JsonWriter::begin(&mut streamed, "f", inspection.capture())
            .unwrap();
    for c in inspection.by_ref() {
        j.connection(&mut streamed, &c).unwrap();
    }
    let (_, summary, exit) = inspection.finish();
    j.end(&mut streamed, &summary, exit).unwrap();
    assert_eq!(collected, streamed);
    assert_eq!(r.summary.connections, 30);
    assert_eq!(r.summary.distinct_cmids, 30);
}

/// The V4 capture with the host's response (record 11) replaced by `pdu`; the host's later
/// sequence numbers move with it so that the stream stays whole.
fn with_reply(pdu: &[u8]) -> Vec<u8> {
    let bytes = capture("vlmcs-vlmcsd-v4.pcap");
    let (head, records) = pcap_records(&bytes);
    assert_eq!(
        tcp_of(records[10]).1.len(),
        204,
        "record 11 is the response"
    );
    let delta = 204u32.wrapping_sub(pdu.len() as u32);
    let server = 17001u16.to_be_bytes();
    let mut out = head.to_vec();
    for (i, r) in records.iter().enumerate() {
        let mut r = r.to_vec();
        let tcp = 16 + 14 + 20;
        if i == 10 {
            let payload = 16 + 14 + 20 + 32;
            r.truncate(payload);
            r.extend_from_slice(pdu);
            let frame = (r.len() - 16) as u32;
            r[8..12].copy_from_slice(&frame.to_le_bytes());
            r[12..16].copy_from_slice(&frame.to_le_bytes());
            let total = (r.len() - 16 - 14) as u16;
            r[16 + 14 + 2..16 + 14 + 4].copy_from_slice(&total.to_be_bytes());
        } else if i > 10 && r[tcp..tcp + 2] == server {
            let seq = u32::from_be_bytes(r[tcp + 4..tcp + 8].try_into().unwrap());
            r[tcp + 4..tcp + 8].copy_from_slice(&seq.wrapping_sub(delta).to_be_bytes());
        }
        out.extend_from_slice(&r);
    }
    out
}

/// A DCE/RPC PDU of call 2 with the given type, flags and body.
fn rpc_pdu(ptype: u8, body: &[u8]) -> Vec<u8> {
    let mut pdu = vec![5, 0, ptype, 0x03, 0x10, 0, 0, 0];
    pdu.extend_from_slice(&((16 + body.len()) as u16).to_le_bytes());
    pdu.extend_from_slice(&[0, 0, 2, 0, 0, 0]);
    pdu.extend_from_slice(body);
    pdu
}

#[test]
fn refusals_and_faults_are_named_and_fail_the_run() {
    // vlmcsd's answer to an unsupported version: size 0, null pointer, HRESULT 0x8007000D.
    let mut body = vec![12, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0x0d, 0, 0x07, 0x80]);
    let r = inspect(&with_reply(&rpc_pdu(2, &body)), InspectConfig::default());
    let c = &r.connections[0];
    assert!(c.error.is_none() && c.gaps.is_empty(), "{:?}", c.error);
    let e = &c.exchanges[0];
    assert_eq!(e.outcome, Outcome::Refused);
    assert_eq!(
        e.hresult.map(|h| h.to_string()).as_deref(),
        Some("0x8007000D (ERROR_INVALID_DATA)")
    );
    assert_eq!(r.summary.outcomes.refused, 1);
    assert_eq!(
        r.summary.errors.refusals[0].name,
        "0x8007000D (ERROR_INVALID_DATA)"
    );
    assert_eq!(r.exit, Exit::ChecksFailed);
    let mut out = Vec::new();
    text(&mut out, "refused.pcap", &r).unwrap();
    let shown = String::from_utf8(out).unwrap();
    assert!(
        shown.contains("REFUSED: the host returned 0x8007000D (ERROR_INVALID_DATA)"),
        "{shown}"
    );

    // An RPC fault: nca_s_op_rng_error.
    let mut body = vec![0, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&0x1C01_0002u32.to_le_bytes());
    body.extend_from_slice(&[0, 0, 0, 0]);
    let r = inspect(&with_reply(&rpc_pdu(3, &body)), InspectConfig::default());
    let e = &r.connections[0].exchanges[0];
    assert_eq!(e.outcome, Outcome::Fault);
    assert_eq!(
        r.summary.errors.faults[0].name,
        "op_range_error (0x1C010002)"
    );
    assert_eq!(r.exit, Exit::ChecksFailed);
    let mut out = Vec::new();
    json(&mut out, "fault.pcap", &r).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v["connections"][0]["exchanges"][0]["fault"],
        "op_range_error (0x1C010002)"
    );
    assert_eq!(v["exit_status"], 1);
}

#[test]
fn many_skipped_records_are_counted_not_listed_in_text() {
    // 5000 IPv4 fragments (more-fragments flag set) around one HTTP connection.
    let c = ([10, 0, 0, 1], 50_001);
    let s = ([10, 0, 0, 2], 80);
    let mut records = http_records();
    for i in 0..5000u32 {
        let mut r = tcp_record(1_800_000_001, c, s, i, 0, ACK, b"x");
        // 16 (record header) + 14 (Ethernet) + 6: the IPv4 flags byte.
        r[36] = 0x20;
        records.push(r);
    }
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let file = pcap_of(&pcap_header(), &refs);
    let dir = std::env::temp_dir().join(format!("kmsharness-inspect-skips-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fragments.pcap");
    std::fs::write(&path, &file).unwrap();
    let path = path.to_str().unwrap();
    for args in [&[path][..], &[path, "--summary"]] {
        let (_, stdout, stderr) = run(args);
        assert!(
            stdout.contains("Skipped packet records: 5000"),
            "{args:?}: {stdout}{stderr}"
        );
        assert!(stdout.contains("5000  IP fragment"), "{args:?}: {stdout}");
        let listed = stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("record "))
            .count();
        assert_eq!(listed, 10, "{args:?}: {stdout}");
        assert!(stdout.lines().count() < 200, "{args:?}");
    }
    // JSON keeps every record.
    let (_, stdout, _) = run(&[path, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v["capture"]["skipped_records"].as_array().unwrap().len(),
        5000
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
