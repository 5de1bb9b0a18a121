//! Decodes one TCP connection's two byte streams as a KMS conversation: PDUs framed and parsed,
//! fragmented calls reassembled, binds paired with their acks, activation requests with their
//! responses, and every message decrypted and checked.

use crate::proto::check::Checks;
use crate::proto::client::checks::{ReplyHead, check_bind_reply, check_response};
use crate::proto::client::message::{ResponseBuf, decode_response};
use crate::proto::host::message::{ReceivedRequest, decode_request};
use crate::proto::summary::ResponseSummary;
use crate::wire::codec::Error;
use crate::wire::kms::FileTime;
use crate::wire::ndr::{ActivationRequest, ActivationResponse, Syntax};
use crate::wire::reassembly::{Call, Reassembler};
use crate::wire::rpc::{
    AckResult, Body, ContextResult, FaultStatus, Flags, NDR32, NDR64, PacketType, Pdu, SyntaxId,
    split_pdu,
};
use crate::wire::{Guid, HResult};

use super::{Connection, Direction, Stream, Timestamp};

/// A bind or alter_context and the host's answer.
#[derive(Debug, Clone)]
pub struct BindExchange {
    /// Bind or alter_context.
    pub kind: PacketType,
    /// Call id of the bind.
    pub call_id: u32,
    /// Header flags of the bind and of the answer.
    pub flags: (Flags, Option<Flags>),
    /// Proposed (context id, first transfer syntax) pairs.
    pub offered: Vec<(u16, SyntaxId)>,
    /// The answer's per-context results (empty for a nak or no answer).
    pub results: Vec<ContextResult>,
    /// Association group the host assigned.
    pub assoc_group: Option<u32>,
    /// Type of the answer, if one came.
    pub reply: Option<PacketType>,
    /// RPC checks on the answer.
    pub checks: Checks,
}

impl ActivationExchange {
    /// The KMS request body exactly as captured, when the stub holds one.
    pub fn body(&self) -> Option<&[u8]> {
        self.stub.get(self.body_at?..)
    }
}

impl BindExchange {
    /// Names of the syntaxes the host accepted (and BTFN if acknowledged), in result order,
    /// as vlmcs prints them after "Performing RPC bind".
    pub fn accepted(&self) -> Vec<&'static str> {
        self.offered
            .iter()
            .zip(&self.results)
            .filter(|(_, r)| matches!(r.result, AckResult::Acceptance | AckResult::NegotiateAck))
            .map(|((_, s), _)| s.name())
            .collect()
    }
}

/// What the host sent back for an activation request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A KMS response, decoded and verified.
    Response {
        /// Its fields.
        summary: ResponseSummary,
        /// KMS-level checks.
        checks: Box<Checks>,
    },
    /// The call returned an HRESULT instead of a response.
    Refused(HResult),
    /// An RPC fault.
    Fault(FaultStatus),
    /// The reply could not be decoded.
    Undecodable(Error),
    /// No reply in the capture.
    Missing,
}

/// One activation call.
#[derive(Debug, Clone)]
pub struct ActivationExchange {
    /// Call id.
    pub call_id: u32,
    /// Presentation context the request used.
    pub context_id: u16,
    /// Its transfer syntax: the one the context was accepted with, else (no captured bind
    /// accepted the context) the one the request stub is laid out in, if either layout fits.
    pub syntax: Option<Syntax>,
    /// [`ActivationExchange::syntax`] was inferred from the stub, not negotiated in the capture.
    pub syntax_inferred: bool,
    /// Fragments the request came in.
    pub fragments: usize,
    /// When the request's first byte was captured.
    pub sent_at: Option<Timestamp>,
    /// When the first byte of the reply's last fragment was captured (None without a reply).
    pub replied_at: Option<Timestamp>,
    /// The decoded request, or why it could not be decoded.
    pub request: Result<ReceivedRequest, Error>,
    /// Length of the KMS request.
    pub request_len: usize,
    /// The request's whole RPC stub, reassembled from its fragments.
    pub stub: Vec<u8>,
    /// Where the KMS request starts in [`ActivationExchange::stub`] (after the NDR counts);
    /// `None` when the stub is too short to hold them.
    pub body_at: Option<usize>,
    /// Host-side checks on the request.
    pub request_checks: Checks,
    /// The reply.
    pub reply: Reply,
    /// RPC checks on the reply.
    pub rpc_checks: Checks,
}

/// Everything decoded from one connection.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    /// Binds and alter_contexts, in order.
    pub binds: Vec<BindExchange>,
    /// Activation calls, in order.
    pub activations: Vec<ActivationExchange>,
    /// PDUs framed in each direction (client, server).
    pub pdus: (usize, usize),
    /// Bytes of each stream covered by those PDUs (client, server); framing stops at the first
    /// bytes that cannot be framed and at the first gap, so `framed < data.len()` means bytes
    /// were left undecoded and [`Conversation::error`] says why.
    pub framed: (usize, usize),
    /// The first problem that stopped decoding, with the direction it was in.
    pub error: Option<(Direction, Error)>,
}

/// PDUs with their stream offsets, the bytes they cover, and why framing stopped early.
type Framing<'a> = (Vec<(usize, &'a [u8])>, usize, Option<Error>);

/// Splits a stream into PDUs; stops at the first bytes that cannot be framed, and at the first
/// gap (bytes across a hole are never glued into one PDU). Returns the PDUs, the bytes they
/// cover, and why framing stopped early.
fn frame(stream: &Stream) -> Framing<'_> {
    let gap = stream.gaps.first();
    let data = match gap {
        Some(g) => stream.data.get(..g.offset).unwrap_or_default(),
        None => &stream.data[..],
    };
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(rest) = data.get(at..).filter(|r| !r.is_empty()) {
        match split_pdu(rest) {
            Ok(Some((pdu, _))) => {
                out.push((at, pdu));
                at += pdu.len();
            }
            // A PDU cut by the gap is the gap's fault, reported below.
            Ok(None) if gap.is_some() => break,
            Ok(None) => {
                let error = Error::Truncated {
                    field: "PDU",
                    offset: at,
                    need: 16,
                    have: data.len() - at,
                };
                return (out, at, Some(error));
            }
            Err(e) => return (out, at, Some(e.at(at))),
        }
    }
    let error = gap.map(|g| {
        Error::invalid(
            "stream",
            g.offset,
            format!(
                "{} bytes missing from the capture (a gap); {} bytes after it not decoded",
                g.len,
                stream.data.len() - g.offset
            ),
        )
    });
    (out, at, error)
}

fn syntax_of(s: &SyntaxId) -> Option<Syntax> {
    if *s == NDR32 {
        Some(Syntax::Ndr32)
    } else if *s == NDR64 {
        Some(Syntax::Ndr64)
    } else {
        None
    }
}

struct PendingCall<'a> {
    call: Call,
    pdu: Pdu<'a>,
    offset: usize,
    exchange: Option<ActivationExchange>,
}

/// Decodes a connection's streams.
pub fn decode(conn: &Connection) -> Conversation {
    let mut conv = Conversation::default();
    let (client, client_framed, client_err) = frame(&conn.to_server);
    let (server, server_framed, server_err) = frame(&conn.to_client);
    conv.pdus = (client.len(), server.len());
    conv.framed = (client_framed, server_framed);
    if let Some(e) = client_err {
        conv.error = Some((Direction::ToServer, e));
    } else if let Some(e) = server_err {
        conv.error = Some((Direction::ToClient, e));
    }

    // Client side: binds in order, and whole calls (reassembled) in order.
    let mut binds: Vec<Pdu<'_>> = Vec::new();
    // Sized up front: a pending call holds a whole exchange, so regrowing would copy them all.
    let mut calls: Vec<PendingCall<'_>> = Vec::with_capacity(client.len());
    let mut reassembler = Reassembler::new();
    let mut first_offset = std::collections::HashMap::new();
    for &(offset, bytes) in &client {
        let pdu = match Pdu::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                conv.error
                    .get_or_insert((Direction::ToServer, e.at(offset)));
                break;
            }
        };
        match &pdu.body {
            Body::Bind(_) | Body::AlterContext(_) => binds.push(pdu),
            Body::Request(_) => {
                first_offset.entry(pdu.header.call_id).or_insert(offset);
                match reassembler.push(&pdu) {
                    Ok(Some(call)) => calls.push(PendingCall {
                        offset: first_offset.remove(&call.call_id).unwrap_or(offset),
                        call,
                        pdu,
                        exchange: None,
                    }),
                    Ok(None) => {}
                    Err(e) => {
                        conv.error.get_or_insert((
                            Direction::ToServer,
                            Error::invalid("request fragment", offset, e.to_string()),
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    // Server side, in order: answers update the context table before later calls decode.
    let mut contexts: Vec<(u16, Syntax)> = Vec::new();
    let mut next_bind = 0;
    let mut server_reassembler = Reassembler::new();
    // Calls before this index all have their reply: keeps matching linear in the call count.
    let mut unanswered = 0;
    for &(offset, bytes) in &server {
        let pdu = match Pdu::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                conv.error
                    .get_or_insert((Direction::ToClient, e.at(offset)));
                break;
            }
        };
        match &pdu.body {
            Body::BindAck(_) | Body::AlterContextResp(_) | Body::BindNak(_) => {
                let Some(bind) = binds.get(next_bind) else {
                    continue;
                };
                next_bind += 1;
                let ex = bind_exchange(bind, Some(&pdu));
                for ((ctx, syntax), res) in ex.offered.iter().zip(&ex.results) {
                    if let (AckResult::Acceptance, Some(s)) = (res.result, syntax_of(syntax)) {
                        contexts.retain(|(c, _)| c != ctx);
                        contexts.push((*ctx, s));
                    }
                }
                conv.binds.push(ex);
            }
            Body::Response(_) | Body::Fault(_) => {
                let reply = match server_reassembler.push(&pdu) {
                    Ok(Some(call)) => call,
                    Ok(None) => continue,
                    Err(e) => {
                        conv.error.get_or_insert((
                            Direction::ToClient,
                            Error::invalid("response fragment", offset, e.to_string()),
                        ));
                        continue;
                    }
                };
                while calls.get(unanswered).is_some_and(|p| p.exchange.is_some()) {
                    unanswered += 1;
                }
                let Some(pending) = calls
                    .iter_mut()
                    .skip(unanswered)
                    .find(|p| p.exchange.is_none() && p.call.call_id == reply.call_id)
                else {
                    continue;
                };
                let replied_at = conn.to_client.segment_at(offset).map(|s| s.ts);
                let mut ex = activation(conn, &mut *pending, Some((&pdu, &reply)), &contexts);
                ex.replied_at = replied_at;
                pending.exchange = Some(ex);
            }
            _ => {}
        }
    }
    for bind in binds.iter().skip(next_bind) {
        conv.binds.push(bind_exchange(bind, None));
    }
    conv.activations.reserve_exact(calls.len());
    for mut pending in calls {
        let ex = match pending.exchange.take() {
            Some(ex) => ex,
            None => activation(conn, &mut pending, None, &contexts),
        };
        conv.activations.push(ex);
    }
    conv
}

fn bind_exchange(bind: &Pdu<'_>, reply: Option<&Pdu<'_>>) -> BindExchange {
    let offered = match &bind.body {
        Body::Bind(b) | Body::AlterContext(b) => b
            .contexts
            .iter()
            .map(|c| {
                let first = c.transfer_syntaxes.first().copied().unwrap_or(SyntaxId {
                    uuid: Guid::NIL,
                    version: 0,
                });
                (c.context_id, first)
            })
            .collect(),
        _ => Vec::new(),
    };
    let (results, assoc_group) = match reply.map(|r| &r.body) {
        Some(Body::BindAck(a) | Body::AlterContextResp(a)) => {
            (a.results.clone(), Some(a.assoc_group))
        }
        _ => (Vec::new(), None),
    };
    BindExchange {
        kind: bind.header.packet_type,
        call_id: bind.header.call_id,
        flags: (bind.header.flags, reply.map(|r| r.header.flags)),
        offered,
        results,
        assoc_group,
        reply: reply.map(|r| r.header.packet_type),
        checks: reply.map(|r| check_bind_reply(bind, r)).unwrap_or_default(),
    }
}

/// The exchange of a whole call; the call's stub moves into it (the plan of a capture sends it
/// again), so `pending` is left without one.
fn activation(
    conn: &Connection,
    pending: &mut PendingCall<'_>,
    reply: Option<(&Pdu<'_>, &Call)>,
    contexts: &[(u16, Syntax)],
) -> ActivationExchange {
    let call = &pending.call;
    let negotiated = contexts
        .iter()
        .find(|(c, _)| *c == call.context_id)
        .map(|(_, s)| *s);
    // A capture that began after the bind still shows which layout the stub has: NDR32 and
    // NDR64 counts have different widths, and only the right one agrees with the stub length.
    let syntax = negotiated.or_else(|| ActivationRequest::infer_syntax(&call.stub));
    let syntax_inferred = negotiated.is_none() && syntax.is_some();
    let sent_at = conn.to_server.segment_at(pending.offset).map(|s| s.ts);
    let now = sent_at.map(|t| FileTime::from_unix_secs(t.secs));
    let stub = ActivationRequest::parse(syntax.unwrap_or(Syntax::Ndr32), &call.stub);
    let body_at = stub.as_ref().ok().map(|s| call.stub.len() - s.body.len());
    let (request, request_len, request_checks) = match stub {
        Ok(stub) => match decode_request(stub.body, now) {
            Ok((req, checks)) => (Ok(req), stub.body.len(), checks),
            Err(e) => (Err(e), stub.body.len(), Checks::new()),
        },
        Err(e) => (Err(e), 0, Checks::new()),
    };
    let mut rpc_checks = Checks::new();
    let reply = match (reply, &request) {
        (None, _) => Reply::Missing,
        (Some((pdu, reply_call)), request) => {
            if let Some(status) = reply_call.fault {
                rpc_checks =
                    check_response(&pending.pdu, &ReplyHead::of(pdu), reply_call.flags, None);
                Reply::Fault(status)
            } else {
                match ActivationResponse::parse(syntax.unwrap_or(Syntax::Ndr32), &reply_call.stub) {
                    Err(e) => Reply::Undecodable(e),
                    Ok(stub) => {
                        rpc_checks = check_response(
                            &pending.pdu,
                            &ReplyHead::of(pdu),
                            reply_call.flags,
                            Some(&stub),
                        );
                        if stub.max_count.is_none() {
                            Reply::Refused(stub.hresult)
                        } else {
                            match request {
                                Err(e) => Reply::Undecodable(e.clone()),
                                Ok(req) => response(req, stub.body),
                            }
                        }
                    }
                }
            }
        }
    };
    ActivationExchange {
        call_id: call.call_id,
        context_id: call.context_id,
        syntax,
        syntax_inferred,
        fragments: call.fragments,
        sent_at,
        replied_at: None,
        request,
        request_len,
        stub: std::mem::take(&mut pending.call.stub),
        body_at,
        request_checks,
        reply,
        rpc_checks,
    }
}

fn response(req: &ReceivedRequest, body: &[u8]) -> Reply {
    let mut buf = ResponseBuf::default();
    match decode_response(&req.as_sent(), body, &mut buf) {
        Err(e) => Reply::Undecodable(e),
        Ok((resp, checks)) => Reply::Response {
            summary: ResponseSummary::new(&resp, body.len()),
            checks: Box::new(checks),
        },
    }
}
