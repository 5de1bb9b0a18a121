//! The fuzz targets' bodies: each takes arbitrary bytes and drives one decoder or session the
//! way kmsharness does on untrusted input. Shared by the libFuzzer binaries (fuzz-targets/src/bin)
//! and the main crate's corpus replay test (tests/fuzz_corpus.rs), so a corpus file that once
//! found a bug fails `cargo test` if it comes back. A target fails only by panicking.
#![allow(dead_code)]

use std::io::Cursor;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use kmsharness::capture::Reader as CaptureReader;
use kmsharness::catalog;
use kmsharness::epid::{Epid, YearDay};
use kmsharness::inspect::{InspectConfig, Inspection};
use kmsharness::net::framing::PduReader;
use kmsharness::proto::client::message::{
    ResponseBuf, SentRequest, cipher_for, decode_response, encode_request,
};
use kmsharness::proto::client::session::{CallReply, ClientRpcOptions, ClientSession};
use kmsharness::proto::faults::FaultSet;
use kmsharness::proto::host::config::HostConfig;
use kmsharness::proto::host::engine::{self, KmsHost, Policy};
use kmsharness::proto::host::message::{HostRandom, decode_request};
use kmsharness::proto::host::session::{HostRpcConfig, HostSession};
use kmsharness::report::inspect as report;
use kmsharness::wire::codec::Reader;
use kmsharness::wire::kms::{
    FileTime, Format, RequestBase, ResponseBase, ResponseTrailer, Version, peek_version,
    split_envelope,
};
use kmsharness::wire::ndr::{ActivationRequest, ActivationResponse, Syntax};
use kmsharness::wire::reassembly::Reassembler;
use kmsharness::wire::rpc::{Body, Pdu, frame_len, split_pdu};
use kmsharness::wire::{Guid, HResult};

/// A target's body: fails only by panicking.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("rpc_pdu", rpc_pdu),
    ("ndr_stub", ndr_stub),
    ("kms_request", kms_request),
    ("kms_response", kms_response),
    ("epid", epid),
    ("capture", capture),
    ("host_session", host_session),
    ("client_session", client_session),
];

/// The three protocol versions a client sends, each with its own cipher and MAC.
const VERSIONS: [Version; 3] = [Version::V4, Version::V5, Version::V6];

/// A fixed host time for decoding (2024-01-01): decoders compare client time with it.
const NOW: FileTime = FileTime::from_unix_secs(1_704_067_200);

/// PDU framing and every RPC PDU decoder: the input is a byte stream split into PDUs as a
/// connection's reader does; each PDU is decoded, re-encoded (which must give its bytes back)
/// and reassembled into calls, whose stubs go through the NDR decoders.
pub fn rpc_pdu(data: &[u8]) {
    let _ = frame_len(data);
    let mut reassembler = Reassembler::new();
    let mut rest = data;
    while let Ok(Some((pdu, tail))) = split_pdu(rest) {
        rest = tail;
        let Ok(parsed) = Pdu::parse(pdu) else {
            continue;
        };
        let mut out = Vec::with_capacity(pdu.len());
        parsed.emit(&mut out);
        assert_eq!(out, pdu, "a decoded PDU re-encodes to its own bytes");
        if let Body::BindAck(ack) = &parsed.body {
            let _ = format!("{ack:?}");
        }
        if let Ok(Some(call)) = reassembler.push(&parsed) {
            ndr_stub(&call.stub);
        }
    }
    // Whatever did not split is still decoded as one PDU.
    let _ = Pdu::parse(rest);
}

/// The activation stub in both transfer syntaxes, as request and as response.
pub fn ndr_stub(data: &[u8]) {
    let _ = ActivationRequest::infer_syntax(data);
    for syntax in [Syntax::Ndr32, Syntax::Ndr64] {
        if let Ok(req) = ActivationRequest::parse(syntax, data) {
            let _ = req.counts_agree();
            let _ = req.declared_message();
            let mut out = Vec::new();
            req.emit(&mut out);
        }
        if let Ok(resp) = ActivationResponse::parse(syntax, data) {
            let _ = resp.counts_agree();
            let _ = resp.pad_is_zero();
            let _ = resp.hresult.name();
            let mut out = Vec::new();
            resp.emit(&mut out);
        }
    }
}

/// A host decoding a KMS request, as sent and (so that mutations reach the fields inside the
/// encryption) with everything after the version word taken as plaintext and encrypted with
/// the version's key; a decoded request then goes through the reference host's policy, and
/// its response through the client's decoder.
pub fn kms_request(data: &[u8]) {
    let _ = peek_version(data);
    let _ = RequestBase::parse(data);
    let _ = decode_request(data, None);
    host_activate(data);
    if let Ok((version, body)) = split_envelope(data)
        && version.format() != Format::V4
    {
        let mut msg = data[..4].to_vec();
        msg.extend_from_slice(&encrypted(version.format(), body));
        host_activate(&msg);
    }
}

/// A client decoding a KMS response to a request of each version (each with its own key), the
/// input taken both as the response's bytes and as its plaintext, encrypted with that key.
pub fn kms_response(data: &[u8]) {
    let _ = ResponseBase::parse(&mut Reader::new(data));
    for format in [Format::V4, Format::V5, Format::V6] {
        let _ = ResponseTrailer::parse(&mut Reader::new(data), format);
    }
    let mut buf = ResponseBuf::default();
    SENT.with(|sent| {
        for (version, sent) in VERSIONS.iter().zip(sent) {
            let _ = decode_response(sent, data, &mut buf);
            if version.format() != Format::V4 {
                let mut msg = version.to_wire().to_le_bytes().to_vec();
                msg.extend_from_slice(&encrypted(version.format(), data));
                let _ = decode_response(sent, &msg, &mut buf);
            }
        }
    });
}

/// ePID text (as a response or a config file carries it) and GUID text: a parsed ePID prints
/// back to text that parses to itself, and is validated against every host key group.
pub fn epid(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(e) = text.parse::<Epid>() {
        let printed = e.to_string();
        assert_eq!(
            printed.parse::<Epid>().ok(),
            Some(e),
            "ePID text round-trips"
        );
        let _ = e.activation_date();
        let _ = e.validate(None);
        for group in catalog::host_key_groups() {
            let _ = e.validate(Some(group));
        }
    }
    let _ = text.parse::<Guid>();
}

/// `inspect`'s whole path over a capture file: the counting pass and the streaming pass over
/// pcap or pcapng, TCP reassembly in parts, conversation decoding, the text or JSON report.
pub fn capture(data: &[u8]) {
    let mut first = CaptureReader::new(Cursor::new(data))
        .count_only()
        .max_waiting(0);
    for _ in first.by_ref() {}
    let count = first.connections();
    let facts = first.into_capture();
    // Text or JSON report by the length's parity: both are covered, each run decodes once.
    let json = data.len() % 2 == 1;
    // Parts as small as a few hundred bytes, so that PDUs cut between parts are covered too.
    let part_bytes = 64 + data.len() % 1024;
    let connections = CaptureReader::new(Cursor::new(data))
        .max_waiting(4)
        .in_parts(part_bytes)
        .parts();
    let mut inspection = Inspection::streaming(
        facts,
        count,
        connections,
        InspectConfig {
            port: Some(1688),
            summary_only: false,
        },
    );
    let mut sink = std::io::sink();
    if json {
        if let Ok(mut j) = report::JsonWriter::begin(&mut sink, "fuzz.pcap", inspection.capture()) {
            for c in inspection.by_ref() {
                let _ = j.connection(&mut sink, &c);
            }
            let (_, summary, exit) = inspection.finish();
            let _ = j.end(&mut sink, &summary, exit);
        }
    } else {
        let _ = report::text_header(&mut sink, "fuzz.pcap", inspection.capture());
        for c in inspection.by_ref() {
            let _ = report::text_connection(&mut sink, &c);
        }
        let info = inspection.capture().clone();
        let (_, summary, exit) = inspection.finish();
        let _ = report::text_footer(&mut sink, &info, &summary, exit);
    }
}

/// The reference host's connection handling fed the input as what a client sent: PDUs framed
/// as `serve` frames them (bind-sized until bound), each answered by the session and, for an
/// activation, by the host's policy.
pub fn host_session(data: &[u8]) {
    let mut host = reference_host();
    let mut session = HostSession::new(HostRpcConfig::default(), 0x1234);
    let mut reader = PduReader::new();
    let mut stream = data;
    let mut out = Vec::new();
    loop {
        reader.set_max(session.max_pdu());
        let Ok(pdu) = ready(reader.next(&mut stream)) else {
            break;
        };
        out.clear();
        let step = session.handle(
            pdu,
            &mut |req: &[u8], out: &mut Vec<u8>| host.activate(req, out),
            &mut out,
        );
        if !out.is_empty() {
            // What the host sends must itself be well-formed RPC.
            assert!(matches!(split_pdu(&out), Ok(Some(_))), "host reply frames");
        }
        if step.close {
            break;
        }
    }
}

/// The client's side of one activation fed the input as the host's replies: the first byte
/// picks the client's options and protocol version, the rest is the byte stream the host
/// sent, framed as `activate` frames it; the bind (and alter_context) replies, then the
/// response PDUs, then the KMS response they carry, are each decoded and checked.
pub fn client_session(data: &[u8]) {
    let Some((&options, stream)) = data.split_first() else {
        return;
    };
    let version = VERSIONS[usize::from(options & 3) % VERSIONS.len()];
    let mut session = ClientSession::new(ClientRpcOptions {
        ndr64: options & 4 == 0,
        btfn: options & 8 == 0,
        multiplex: options & 16 == 0,
        ..ClientRpcOptions::default()
    });
    let mut reader = PduReader::new();
    let mut stream = stream;
    let mut out = Vec::new();
    session.bind(&mut out);
    let Ok(reply) = ready(reader.next(&mut stream)) else {
        return;
    };
    let Ok(bind) = session.handle_bind_reply(reply) else {
        return;
    };
    if bind.needs_alter_context {
        out.clear();
        session.alter_context(&mut out);
        let Ok(reply) = ready(reader.next(&mut stream)) else {
            return;
        };
        if session.handle_bind_reply(reply).is_err() {
            return;
        }
    }
    let mut kms = Vec::new();
    let sent = encode_request(&RequestBase::example(version), [0x5a; 16], &mut kms);
    out.clear();
    session.request(&kms, &mut out);
    loop {
        let Ok(pdu) = ready(reader.next(&mut stream)) else {
            return;
        };
        match session.handle_reply(pdu) {
            Ok(None) => {}
            Ok(Some(outcome)) => {
                if outcome.reply == CallReply::Response {
                    let mut buf = ResponseBuf::default();
                    let _ = decode_response(&sent, session.response_body(), &mut buf);
                }
                return;
            }
            Err(_) => return,
        }
    }
}

/// The reference host's KMS engine with the default configuration, at a fixed time and with
/// fixed "random" values, so a run is reproducible.
#[derive(Clone)]
struct Host {
    policy: Policy,
}

thread_local! {
    /// One configured host: each input starts from a clone of it (configuring a host
    /// generates its ePIDs, which cost more than the input's own work).
    static FRESH_HOST: Host = {
        let today = YearDay { year: 2024, day: 1 };
        let host = match KmsHost::new(HostConfig::default(), today, 0x0123_4567_89ab_cdef) {
            Ok(h) => h,
            Err(e) => panic!("the default host configuration is valid: {e}"),
        };
        Host {
            policy: Policy::new(host, FaultSet::NONE),
        }
    };
    /// A request of each of [`VERSIONS`] as `activate` would have sent it.
    static SENT: Vec<SentRequest> = VERSIONS
        .iter()
        .map(|&version| {
            let mut out = Vec::new();
            encode_request(&RequestBase::example(version), [0x5a; 16], &mut out)
        })
        .collect();
}

/// A host in its configured state, with no client counted.
fn reference_host() -> Host {
    FRESH_HOST.with(Host::clone)
}

impl Host {
    fn activate(&mut self, request: &[u8], out: &mut Vec<u8>) -> Result<(), HResult> {
        let random = HostRandom {
            salt: [0x11; 16],
            iv: [0x22; 16],
        };
        let policy = &mut self.policy;
        let (_, result) = engine::activate(
            request,
            NOW,
            &random,
            FaultSet::NONE,
            |req, checks| policy.decide(req, checks, NOW),
            out,
        );
        result
    }
}

/// Runs `request` through the reference host; a granted request's response must decode on
/// the client's side against the request the host received.
fn host_activate(request: &[u8]) {
    let mut host = reference_host();
    let mut out = Vec::new();
    if host.activate(request, &mut out).is_ok()
        && let Ok((received, _)) = decode_request(request, Some(NOW))
    {
        let mut buf = ResponseBuf::default();
        let decoded = decode_response(&received.as_sent(), &out, &mut buf);
        assert!(
            decoded.is_ok(),
            "the host's own response decodes: {:?}",
            decoded.err()
        );
    }
}

/// `plain` padded and encrypted with the format's key and a null IV, as V5/V6 messages are
/// decrypted (the first block decrypts to the message's IV field).
fn encrypted(format: Format, plain: &[u8]) -> Vec<u8> {
    let mut body = plain.to_vec();
    kmsharness::crypto::pad(&mut body, 0);
    cipher_for(format).cbc_encrypt(&[0; 16], &mut body);
    body
}

/// Polls a future that reads only from memory: such a read never waits, so one poll finishes
/// it (anything else is a bug in the target and fails it).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a read from memory never waits"),
    }
}
