//! Third-party traffic: every capture in `captures/` (vlmcs against vlmcsd and py-kms) decodes
//! completely, every check passes, the decoded fields equal what vlmcs printed, py-kms's own
//! decryption of each request matches ours, and every PDU re-encodes to the captured bytes.

use std::path::{Path, PathBuf};

use kmsharness::capture::conversation::{self, Reply};
use kmsharness::capture::{self, Connection};
use kmsharness::epid::Epid;
use kmsharness::wire::kms::RequestBase;
use kmsharness::wire::rpc::{Pdu, split_pdu};

use crate::support::{pykms_log, vlmcs_txt};

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures")
}

/// Every third-party capture: (stem, pcap bytes, vlmcs output).
fn third_party() -> Vec<(String, Vec<u8>, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(captures_dir()).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "pcap") && stem.starts_with("vlmcs-") {
            let txt = std::fs::read_to_string(path.with_extension("txt")).unwrap();
            out.push((stem, std::fs::read(&path).unwrap(), txt));
        }
    }
    out.sort();
    assert_eq!(out.len(), 12, "the shared set has twelve captures");
    out
}

fn connections(stem: &str, pcap: &[u8]) -> Vec<Connection> {
    capture::read(pcap)
        .into_result()
        .unwrap_or_else(|e| panic!("{stem}: {e}"))
        .connections
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

#[test]
fn every_pdu_reencodes_to_the_captured_bytes() {
    let mut total = 0;
    for (stem, pcap, _) in third_party() {
        for conn in connections(&stem, &pcap) {
            for stream in [&conn.to_server.data, &conn.to_client.data] {
                let mut rest = &stream[..];
                while let Some((bytes, tail)) = split_pdu(rest).unwrap() {
                    let pdu = Pdu::parse(bytes).unwrap_or_else(|e| panic!("{stem}: {e}"));
                    let mut again = Vec::new();
                    pdu.emit(&mut again);
                    assert_eq!(again, bytes, "{stem}: {:?}", pdu.header);
                    total += 1;
                    rest = tail;
                }
                assert!(
                    rest.is_empty(),
                    "{stem}: undecoded bytes at the end of a stream"
                );
            }
        }
    }
    // 12 captures; binds, acks, alter_contexts, requests and responses.
    assert!(total > 250, "{total}");
}

#[test]
fn every_exchange_decodes_verifies_and_matches_vlmcs_output() {
    for (stem, pcap, txt) in third_party() {
        let printed = vlmcs_txt::parse(&txt).unwrap_or_else(|e| panic!("{stem}.txt: {e}"));
        let mut binds = Vec::new();
        let mut exchanges = Vec::new();
        for conn in connections(&stem, &pcap) {
            let conv = conversation::decode(&conn);
            assert!(conv.error.is_none(), "{stem}: {:?}", conv.error);
            binds.push(conv.binds);
            exchanges.extend(conv.activations);
        }

        // The bind outcome vlmcs printed, e.g. "... NDR64 ... BTFN ... NDR32 ... successful".
        assert_eq!(binds.len(), printed.bind_results.len(), "{stem}");
        for (conn_binds, line) in binds.iter().zip(&printed.bind_results) {
            let mut ours: Vec<&str> = Vec::new();
            for b in conn_binds {
                assert!(b.checks.all_passed(), "{stem}: bind {:?}", b.checks);
                ours.extend(b.accepted());
            }
            let theirs: Vec<&str> = line
                .split("...")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "successful")
                .collect();
            assert_eq!(ours, theirs, "{stem}: bind result");
        }

        assert_eq!(exchanges.len(), printed.requests.len(), "{stem}");
        assert_eq!(exchanges.len(), printed.responses.len(), "{stem}");
        for (i, ex) in exchanges.iter().enumerate() {
            let what = format!("{stem} request {}", i + 1);
            let req = ex
                .request
                .as_ref()
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                ex.request_checks.all_passed(),
                "{what}: {:?}",
                ex.request_checks
            );
            assert!(ex.rpc_checks.all_passed(), "{what}: {:?}", ex.rpc_checks);
            let Reply::Response { summary, checks } = &ex.reply else {
                panic!("{what}: {:?}", ex.reply)
            };
            assert!(checks.all_passed(), "{what}: {checks:?}");
            // Guard against vacuous passes: exactly the checks each version calls for ran.
            let made = |c: &kmsharness::proto::Checks| -> Vec<&str> {
                let mut v: Vec<&str> = c.iter().map(|c| c.id.name()).collect();
                v.sort_unstable();
                v
            };
            let kms_expected: &[&str] = match req.base.version.major {
                4 => &[
                    "epid_length",
                    "epid_termination",
                    "mac",
                    "machine_id",
                    "response_size",
                    "timestamp",
                    "version",
                ],
                5 => &[
                    "decrypt",
                    "epid_length",
                    "epid_termination",
                    "hash",
                    "ivs",
                    "machine_id",
                    "response_size",
                    "timestamp",
                    "version",
                ],
                _ => &[
                    "decrypt",
                    "epid_length",
                    "epid_termination",
                    "hash",
                    "hmac",
                    "iv_not_identical",
                    "ivs",
                    "machine_id",
                    "response_size",
                    "timestamp",
                    "version",
                ],
            };
            assert_eq!(made(checks), kms_expected, "{what}");
            assert_eq!(
                made(&ex.rpc_checks),
                [
                    "ndr_counts",
                    "ndr_padding",
                    "return_value",
                    "rpc_call_id",
                    "rpc_cancel_count",
                    "rpc_context_id",
                    "rpc_fragment_flags",
                    "rpc_multiplex_flag",
                    "rpc_packet_type"
                ],
                "{what}"
            );
            let request_expected: &[&str] = match req.base.version.major {
                4 => &[
                    "client_time",
                    "license_status",
                    "mac",
                    "machine_id_format",
                    "request_size",
                    "required_clients",
                    "version_supported",
                    "vm_flag",
                    "workstation",
                ],
                _ => &[
                    "client_time",
                    "decrypt",
                    "license_status",
                    "machine_id_format",
                    "request_size",
                    "required_clients",
                    "version",
                    "version_supported",
                    "vm_flag",
                    "workstation",
                ],
            };
            assert_eq!(made(&ex.request_checks), request_expected, "{what}");

            let p = &printed.requests[i];
            let b: &RequestBase = &req.base;
            assert_eq!((b.version.major, b.version.minor), p.version, "{what}");
            assert_eq!(b.vm_info == 1, p.virtual_machine, "{what}");
            assert_eq!(b.license_status, p.license_status, "{what}");
            assert_eq!(b.binding_expiration, p.remaining_minutes, "{what}");
            assert_eq!(b.app_id.to_string(), p.application_id, "{what}");
            assert_eq!(b.sku_id.to_string(), p.sku_id, "{what}");
            assert_eq!(b.kms_id.to_string(), p.kms_id, "{what}");
            assert_eq!(b.cmid.to_string(), p.cmid, "{what}");
            assert_eq!(b.previous_cmid.to_string(), p.previous_cmid, "{what}");
            assert_eq!(b.client_time.to_string(), p.timestamp, "{what}");
            assert_eq!(b.workstation.to_string(), p.workstation, "{what}");
            assert_eq!(b.required_clients, p.n_policy, "{what}");

            let r = &printed.responses[i];
            assert_eq!(summary.size as u32, r.size, "{what}");
            assert_eq!(
                (summary.version.major, summary.version.minor),
                r.version,
                "{what}"
            );
            assert_eq!(summary.epid, r.epid, "{what}");
            assert_eq!(summary.hwid.map(|h| hex_upper(&h)), r.hwid, "{what}");
            assert_eq!(summary.cmid.to_string(), r.cmid, "{what}");
            assert_eq!(summary.client_time.to_string(), r.timestamp, "{what}");
            assert_eq!(summary.count, r.active_clients, "{what}");
            assert_eq!(summary.renewal_interval, r.renewal_interval, "{what}");
            assert_eq!(summary.activation_interval, r.activation_interval, "{what}");

            // Each host's ePID is well formed and prints back identically.
            let epid: Epid = summary
                .epid
                .parse()
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(epid.to_string(), summary.epid);
        }
    }
}

#[test]
fn our_request_decryption_matches_pykms_decryption() {
    let mut compared = 0;
    for (stem, pcap, _) in third_party() {
        if !stem.starts_with("vlmcs-pykms") {
            continue;
        }
        let log =
            std::fs::read_to_string(captures_dir().join(format!("{stem}.server.log"))).unwrap();
        let theirs = pykms_log::decrypted_requests(&log);
        let ours: Vec<Vec<u8>> = connections(&stem, &pcap)
            .iter()
            .flat_map(|c| conversation::decode(c).activations)
            .map(|ex| {
                let mut bytes = Vec::new();
                ex.request.unwrap().base.emit(&mut bytes);
                bytes
            })
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{stem}");
        for (o, t) in ours.iter().zip(&theirs) {
            // py-kms dumps the base it parsed (236 bytes), without the PKCS#7 pad.
            assert_eq!(hex::encode(o), hex::encode(&t[..o.len()]), "{stem}");
            compared += 1;
        }
    }
    assert_eq!(compared, 3, "V4, V5 and V6 against py-kms");
}

/// py-kms's own client (`pykms_Client.py -m Windows7 / Windows8 / Windows10`, recorded by
/// `serve --record`): every request is granted with its every check passing, including the V4
/// request whose declared 256 bytes hold a 252-byte message (py-kms pads it).
#[test]
fn pykms_client_requests_are_granted() {
    for (v, major, len) in [("v4", 4, 256), ("v5", 5, 260), ("v6", 6, 260)] {
        let stem = format!("pykms-client-{v}");
        let pcap = std::fs::read(captures_dir().join(format!("{stem}.pcap"))).unwrap();
        let conns = connections(&stem, &pcap);
        assert_eq!(conns.len(), 1, "{stem}");
        let conv = conversation::decode(&conns[0]);
        assert_eq!(conv.activations.len(), 1, "{stem}");
        let ex = &conv.activations[0];
        let req = ex
            .request
            .as_ref()
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(req.version.major, major, "{stem}");
        assert_eq!(ex.request_len, len, "{stem}");
        assert!(
            ex.request_checks.all_passed(),
            "{stem}: {:?}",
            ex.request_checks
        );
        match &ex.reply {
            Reply::Response { summary, checks } => {
                assert!(checks.all_passed(), "{stem}");
                assert_eq!(summary.count, 1, "{stem}");
            }
            other => panic!("{stem}: {other:?}"),
        }
    }
}
