//! Client and host sessions paired in memory: every negotiation option, every protocol version,
//! and every injected fault tripping exactly the check it names.

use crate::proto::check::{Check, CheckId};
use crate::proto::client::message::{ResponseBuf, decode_response, encode_request};
use crate::proto::client::session::{CallReply, ClientRpcOptions, ClientSession};
use crate::proto::faults::{Fault, FaultSet};
use crate::proto::host::message::{
    HostRandom, ResponseParams, decode_request, encode_response_with_faults,
};
use crate::proto::host::session::{HostRpcConfig, HostSession};
use crate::wire::Guid;
use crate::wire::kms::{RequestBase, Version, Workstation, epid_to_wire};
use crate::wire::ndr::Syntax;
use crate::wire::rpc::split_pdu;

fn base(version: Version, n: u8) -> RequestBase {
    RequestBase {
        cmid: Guid::new_v4([n; 16]),
        workstation: Workstation::new("pair.test"),
        ..RequestBase::example(version)
    }
}

/// Feeds every PDU in `bytes` to the host; returns its output.
fn to_host(host: &mut HostSession, faults: FaultSet, epid: &str, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut epid_wire = Vec::new();
    epid_to_wire(epid, &mut epid_wire);
    let mut count = 0;
    let mut activate = |req: &[u8], out: &mut Vec<u8>| {
        let (r, _) = decode_request(req, None).map_err(|_| crate::wire::HResult::INVALID_DATA)?;
        count += 1;
        let params = ResponseParams {
            epid: &epid_wire,
            hwid: [1, 2, 3, 4, 5, 6, 7, 8],
            count,
            activation_interval: 120,
            renewal_interval: 10080,
        };
        let random = HostRandom {
            salt: [9; 16],
            iv: [8; 16],
        };
        encode_response_with_faults(&r, &params, &random, faults, out);
        Ok(())
    };
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut closed = false;
    while let Some((pdu, tail)) = split_pdu(rest).unwrap() {
        let step = host.handle(pdu, &mut activate, &mut out);
        closed |= step.close;
        rest = tail;
    }
    (out, closed)
}

/// One whole exchange of `requests` activations; returns every check made and the syntaxes.
fn exchange(
    opts: ClientRpcOptions,
    faults: FaultSet,
    version: Version,
    requests: u8,
    epid: &str,
) -> (Vec<Check>, Vec<Syntax>, Vec<&'static str>) {
    let mut host = HostSession::new(
        HostRpcConfig {
            faults,
            ..HostRpcConfig::default()
        },
        0x1234,
    );
    let mut client = ClientSession::new(opts);
    let mut all: Vec<Check> = Vec::new();
    let mut wire = Vec::new();
    client.bind(&mut wire);
    let (reply, closed) = to_host(&mut host, faults, epid, &wire);
    let mut bound = client.handle_bind_reply(&reply).unwrap();
    all.extend(bound.checks.iter().copied());
    let mut accepted = bound.accepted.clone();
    if closed {
        return (all, vec![], accepted);
    }
    if bound.needs_alter_context {
        wire.clear();
        client.alter_context(&mut wire);
        let (reply, _) = to_host(&mut host, faults, epid, &wire);
        bound = client.handle_bind_reply(&reply).unwrap();
        all.extend(bound.checks.iter().copied());
        accepted.extend(bound.accepted);
    }
    let mut syntaxes = Vec::new();
    for n in 0..requests {
        let b = base(version, n + 1);
        let mut kms = Vec::new();
        let sent = encode_request(&b, [n; 16], &mut kms);
        wire.clear();
        client.request(&kms, &mut wire);
        let (reply, _) = to_host(&mut host, faults, epid, &wire);
        let mut outcome = None;
        let mut rest = &reply[..];
        while let Some((pdu, tail)) = split_pdu(rest).unwrap() {
            outcome = client.handle_reply(pdu).unwrap();
            rest = tail;
        }
        let outcome = outcome.expect("a whole reply");
        syntaxes.push(outcome.syntax);
        all.extend(client.reply_checks().iter().copied());
        if let CallReply::Response = outcome.reply {
            let mut buf = ResponseBuf::default();
            let (_, checks) = decode_response(&sent, client.response_body(), &mut buf).unwrap();
            all.extend(checks.iter().copied());
        }
    }
    (all, syntaxes, accepted)
}

const EPID: &str = "03612-00206-569-992245-03-1033-20348.0000-3282026";
/// An LCID of five digits makes the V4 response length 162, which NDR pads by two bytes.
const EPID_ODD: &str = "03612-00206-569-992245-03-14337-20348.0000-3282026";

#[test]
fn every_option_combination_negotiates_like_windows() {
    for ndr64 in [false, true] {
        for btfn in [false, true] {
            for multiplex in [false, true] {
                for version in [Version::V4, Version::V5, Version::V6] {
                    let opts = ClientRpcOptions {
                        ndr64,
                        btfn,
                        multiplex,
                        ..ClientRpcOptions::default()
                    };
                    let (checks, syntaxes, accepted) =
                        exchange(opts, FaultSet::NONE, version, 3, EPID);
                    let what = format!("ndr64={ndr64} btfn={btfn} mpx={multiplex} {version}");
                    assert!(checks.iter().all(|c| c.passed), "{what}: {checks:?}");
                    // vlmcs prints the same sequence against vlmcsd (captures/*.txt).
                    let mut expect = Vec::new();
                    if ndr64 {
                        expect.push("NDR64");
                    }
                    if btfn {
                        expect.push("BTFN");
                    }
                    if !ndr64 {
                        expect.insert(0, "NDR32");
                    } else {
                        expect.push("NDR32");
                    }
                    assert_eq!(accepted, expect, "{what}");
                    let second = if ndr64 { Syntax::Ndr64 } else { Syntax::Ndr32 };
                    assert_eq!(syntaxes, [Syntax::Ndr32, second, second], "{what}");
                }
            }
        }
    }
}

#[test]
fn every_fault_trips_exactly_its_check() {
    for &fault in Fault::ALL {
        let Some(check) = fault.check() else { continue };
        let version = match fault {
            Fault::WrongMac | Fault::NdrPadding => Version::V4,
            Fault::WrongIvs | Fault::BadPadding | Fault::WrongHash => Version::V5,
            _ => Version::V6,
        };
        let epid = if fault == Fault::NdrPadding {
            EPID_ODD
        } else {
            EPID
        };
        let (checks, _, _) = exchange(
            ClientRpcOptions::default(),
            FaultSet::NONE.with(fault),
            version,
            1,
            epid,
        );
        // The same check may fail on several replies (bind and alter_context); no other may.
        let mut failed: Vec<CheckId> = checks.iter().filter(|c| !c.passed).map(|c| c.id).collect();
        failed.dedup();
        assert_eq!(failed, [check], "{fault}: {checks:?}");
    }
}

#[test]
fn v6_only_faults_also_trip_on_v6() {
    for fault in [Fault::WrongIvs, Fault::BadPadding, Fault::WrongHash] {
        let (checks, _, _) = exchange(
            ClientRpcOptions::default(),
            FaultSet::NONE.with(fault),
            Version::V6,
            1,
            EPID,
        );
        let failed: Vec<CheckId> = checks.iter().filter(|c| !c.passed).map(|c| c.id).collect();
        assert_eq!(failed, [fault.check().unwrap()], "{fault}");
    }
}

#[test]
fn behaviour_faults() {
    // NDR64 refused: the client falls back to NDR32 without an alter_context.
    let (checks, syntaxes, accepted) = exchange(
        ClientRpcOptions::default(),
        FaultSet::NONE.with(Fault::Ndr64Refused),
        Version::V6,
        2,
        EPID,
    );
    assert!(checks.iter().all(|c| c.passed));
    assert_eq!(accepted, ["NDR32", "BTFN"]);
    assert_eq!(syntaxes, [Syntax::Ndr32, Syntax::Ndr32]);
    // Close after bind: no call is made.
    let (_, syntaxes, _) = exchange(
        ClientRpcOptions::default(),
        FaultSet::NONE.with(Fault::CloseAfterBind),
        Version::V6,
        1,
        EPID,
    );
    assert!(syntaxes.is_empty());
}

#[test]
fn small_fragments_are_split_and_reassembled() {
    let opts = ClientRpcOptions {
        max_frag: 100,
        ..ClientRpcOptions::default()
    };
    let (checks, _, _) = exchange(opts, FaultSet::NONE, Version::V6, 2, EPID);
    assert!(checks.iter().all(|c| c.passed), "{checks:?}");
}

/// A hex file of `captures/genuine/` as bytes.
fn genuine(hex: &str) -> Vec<u8> {
    let hex: String = hex.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The association group the host answered the genuine Windows 11 client with.
const GENUINE_ASSOC_GROUP: u32 = 0x5b8e_c84a;

/// Byte for byte what a real Windows 11 client sent (`captures/genuine/`): the bind exactly;
/// the alter_context exactly, once the host's bind_ack assigned the same association group;
/// the request's RPC framing exactly around the same KMS bytes. Nothing needs to differ: call
/// ids, sizes and flags are Windows'; only the KMS bytes (random salt, machine ID, time) would.
#[test]
fn bind_alter_context_and_request_framing_match_a_genuine_windows_client() {
    let bind = genuine(include_str!("../../captures/genuine/bind.hex"));
    let alter = genuine(include_str!("../../captures/genuine/alter.hex"));
    let request = genuine(include_str!("../../captures/genuine/request.hex"));

    let mut client = ClientSession::new(ClientRpcOptions::default());
    let mut out = Vec::new();
    client.bind(&mut out);
    assert_eq!(out, bind, "bind");

    // A host that, as a Windows host or vlmcsd with NDR64 does, turns NDR32 down in favour of
    // NDR64, with the genuine host's association group.
    let mut host = HostSession::new(HostRpcConfig::default(), GENUINE_ASSOC_GROUP);
    let (ack, _) = to_host(&mut host, FaultSet::NONE, "x", &out);
    let outcome = client.handle_bind_reply(&ack).unwrap();
    assert_eq!(outcome.assoc_group, GENUINE_ASSOC_GROUP);
    assert!(outcome.needs_alter_context);
    out.clear();
    client.alter_context(&mut out);
    assert_eq!(out, alter, "alter_context");

    // The genuine request's KMS bytes, framed by our client: the same PDU.
    let (pdu, rest) = split_pdu(&request).unwrap().unwrap();
    assert!(rest.is_empty());
    let parsed = crate::wire::rpc::Pdu::parse(pdu).unwrap();
    let stub = match parsed.body {
        crate::wire::rpc::Body::Request(r) => r.stub,
        other => panic!("{other:?}"),
    };
    let kms = crate::wire::ndr::ActivationRequest::parse(Syntax::Ndr32, stub)
        .unwrap()
        .body;
    let (alter_ack, _) = to_host(&mut host, FaultSet::NONE, "x", &out);
    client.handle_bind_reply(&alter_ack).unwrap();
    out.clear();
    client.request(kms, &mut out);
    assert_eq!(out, request, "request framing");

    // And the KMS request itself says what a fresh, virtual Windows client says.
    let (req, _) = decode_request(kms, None).unwrap();
    assert_eq!(
        req.base.license_status,
        crate::proto::lifecycle::STATUS_NOTIFICATION
    );
    assert_eq!(req.base.binding_expiration, 0);
    assert_eq!(req.base.vm_info, 1);
    assert_ne!(
        req.base.client_time.0 % crate::wire::kms::FileTime::TICKS_PER_SEC,
        0
    );
}
