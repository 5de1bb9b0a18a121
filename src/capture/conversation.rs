//! Decodes one TCP connection's two byte streams as a KMS conversation: PDUs framed and parsed,
//! fragmented calls reassembled, binds paired with their acks, activation requests with their
//! responses, and every message decrypted and checked. [`decode`] takes a whole connection;
//! [`Decoder`] takes it part by part ([`Reader::in_parts`](super::Reader::in_parts)), giving
//! what each part completes, so that a long connection never has to be held whole.

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

/// Calls whose reply has not come that a [`Decoder`] keeps; past this the oldest is given up
/// as unanswered, so that a host that never answers cannot make it hold a whole connection.
const MAX_UNANSWERED_CALLS: usize = 4096;

/// Binds waiting for their answer, kept at most; the oldest past this is given up as unanswered.
const MAX_UNANSWERED_BINDS: usize = 256;

/// Replies that matched no call yet, kept until the client's next bytes: a call can reach a
/// later part than its reply when the client stream had a hole. The oldest past this is dropped.
const MAX_EARLY_REPLIES: usize = 64;

/// Longest PDU a stream can hold: the header's 16-bit fragment length.
const MAX_PDU: usize = u16::MAX as usize;

/// Why framing of one direction stopped before its end.
#[derive(Debug, Clone)]
enum Stop {
    /// At a hole in the capture: the stream offset where it starts and its length.
    Gap { offset: usize, len: u64 },
    /// At bytes that cannot be framed.
    Error(Error),
}

/// One direction's framing state.
#[derive(Debug, Default)]
struct Framer {
    /// Stream offset of the first byte not yet framed.
    at: usize,
    /// Bytes from `at` on that do not make a whole PDU yet: a PDU cut by the end of a part.
    carry: Vec<u8>,
    /// When the first carried byte was captured (its packet record).
    carry_at: Option<(Timestamp, usize)>,
    /// PDUs framed.
    pdus: usize,
    /// Why framing stopped, the packet record at that byte, and the stream's end as last seen.
    stop: Option<Stop>,
    stop_record: Option<usize>,
    end: usize,
    /// A PDU of this direction did not parse: later ones are framed but not decoded.
    broken: bool,
    /// The last run of the previous part (stream offset just past it, its record), for the
    /// record of a byte just before this part.
    previous: Option<(usize, usize)>,
}

impl Framer {
    /// The packet record that carried byte `offset` of the stream, in `stream` (this part) or
    /// just before it.
    fn record_at(&self, stream: &Stream, offset: usize) -> Option<usize> {
        stream.segment_at(offset).map(|s| s.record).or_else(|| {
            self.previous
                .filter(|&(end, _)| end == offset + 1)
                .map(|(_, r)| r)
        })
    }
}

/// A request PDU waiting for its reply.
#[derive(Debug)]
struct PendingCall {
    call: Call,
    /// The request's last fragment, as sent (its header is what the reply is checked against).
    pdu: Vec<u8>,
    /// When its first fragment's first byte was captured.
    sent_at: Option<Timestamp>,
    /// Boxed: most calls wait with none, and the queue should not be sized for the largest.
    exchange: Option<Box<ActivationExchange>>,
}

/// A reply that came before any call it could answer.
#[derive(Debug)]
struct EarlyReply {
    head: ReplyHead,
    reply: Call,
    replied_at: Option<Timestamp>,
}

/// Decodes a connection as its bytes come, one [`Part`](super::Part) (or whole connection)
/// at a time: whatever was decoded can be taken from [`Decoder::conversation`] after each
/// [`Decoder::feed`], so that memory stays bounded by what one part holds, whatever the
/// connection's length. Fed a whole connection once, it gives what [`decode`] gives.
#[derive(Debug, Default)]
pub struct Decoder {
    conv: Conversation,
    /// Framing of the client's stream and of the server's.
    client: Framer,
    server: Framer,
    /// The first PDU-level problem (a PDU that does not parse, a bad fragment), reported when
    /// framing itself met none.
    problem: Option<(Direction, Error, Option<usize>)>,
    binds: std::collections::VecDeque<Vec<u8>>,
    calls: std::collections::VecDeque<PendingCall>,
    early: std::collections::VecDeque<EarlyReply>,
    reassembler: Reassembler,
    server_reassembler: Reassembler,
    /// Where and when each call being reassembled began.
    first_fragment: std::collections::HashMap<u32, Option<Timestamp>>,
    /// Accepted presentation contexts and their transfer syntax.
    contexts: Vec<(u16, Syntax)>,
}

impl Decoder {
    /// A decoder for a new connection.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes the bytes of one more part: the client's first, so that calls are known before
    /// the replies that answer them.
    pub fn feed(&mut self, conn: &Connection) {
        self.feed_side(Direction::ToServer, &conn.to_server);
        self.retry_early();
        self.feed_side(Direction::ToClient, &conn.to_client);
        self.release_answered();
    }

    /// What was decoded so far and not yet taken: take its `binds` and `activations` to keep
    /// memory bounded. Its counts and error are final only after [`Decoder::finish`].
    pub fn conversation(&mut self) -> &mut Conversation {
        &mut self.conv
    }

    /// The packet record of the byte where decoding stopped, once [`Decoder::finish`] set
    /// [`Conversation::error`].
    pub fn error_record(&self) -> Option<usize> {
        self.problem.as_ref().and_then(|p| p.2)
    }

    /// The connection ended: calls and binds still waiting have no reply; the first problem
    /// that stopped decoding is set.
    pub fn finish(mut self) -> (Conversation, Option<usize>) {
        for bind in std::mem::take(&mut self.binds) {
            if let Ok(pdu) = Pdu::parse(&bind) {
                self.conv.binds.push(bind_exchange(&pdu, None));
            }
        }
        while let Some(pending) = self.calls.pop_front() {
            self.give_up(pending);
        }
        let mut first = None;
        for dir in [Direction::ToServer, Direction::ToClient] {
            let f = &self.framer(dir);
            let error = match &f.stop {
                Some(Stop::Error(e)) => Some(e.clone()),
                Some(Stop::Gap { offset, len }) => Some(Error::invalid(
                    "stream",
                    *offset,
                    format!(
                        "{len} bytes missing from the capture (a gap); {} bytes after it not \
                         decoded",
                        f.end - offset
                    ),
                )),
                None if !f.carry.is_empty() => Some(Error::Truncated {
                    field: "PDU",
                    offset: f.at,
                    need: 16,
                    have: f.carry.len(),
                }),
                None => None,
            };
            if first.is_none()
                && let Some(e) = error
            {
                let record = match &f.stop {
                    Some(_) => f.stop_record,
                    None => f.carry_at.map(|(_, r)| r),
                };
                first = Some((dir, e, record));
            }
        }
        self.conv.pdus = (self.client.pdus, self.server.pdus);
        self.conv.framed = (self.client.at, self.server.at);
        let problem = first.or(self.problem.take());
        let record = problem.as_ref().and_then(|p| p.2);
        self.conv.error = problem.map(|(d, e, _)| (d, e));
        (self.conv, record)
    }

    fn framer(&mut self, dir: Direction) -> &mut Framer {
        match dir {
            Direction::ToServer => &mut self.client,
            Direction::ToClient => &mut self.server,
        }
    }

    fn feed_side(&mut self, dir: Direction, stream: &Stream) {
        let f = &mut self.framer(dir);
        f.end = f.end.max(stream.end());
        let previous = stream.segments.last().map(|s| (s.offset + s.len, s.record));
        if f.stop.is_some() || stream.data.is_empty() && stream.gaps.is_empty() {
            if previous.is_some() {
                f.previous = previous;
            }
            return;
        }
        let gap = stream.gaps.first().copied();
        let usable = gap
            .map_or(stream.end(), |g| g.offset)
            .saturating_sub(stream.base);
        let data = stream.data.get(..usable).unwrap_or_default();
        let mut rest = data;
        // A PDU begun in an earlier part: complete it first.
        let mut carry = std::mem::take(&mut self.framer(dir).carry);
        if !carry.is_empty() {
            let old = carry.len();
            let take = rest.len().min(MAX_PDU.saturating_sub(old));
            carry.extend_from_slice(rest.get(..take).unwrap_or_default());
            let at = self.framer(dir).at;
            match split_pdu(&carry) {
                Ok(Some((pdu, _))) => {
                    let used = pdu.len() - old;
                    let seg = self.framer(dir).carry_at;
                    self.framed(dir, pdu, at, seg);
                    rest = rest.get(used..).unwrap_or_default();
                    carry.clear();
                }
                Ok(None) => rest = rest.get(take..).unwrap_or_default(),
                Err(e) => {
                    let f = &mut self.framer(dir);
                    f.stop = Some(Stop::Error(e.at(at)));
                    f.stop_record = f.carry_at.map(|(_, r)| r);
                    f.carry = carry;
                    f.previous = previous;
                    return;
                }
            }
        }
        while !rest.is_empty() && carry.is_empty() {
            let at = self.framer(dir).at;
            match split_pdu(rest) {
                Ok(Some((pdu, tail))) => {
                    let seg = stream.segment_at(at).map(|s| (s.ts, s.record));
                    self.framed(dir, pdu, at, seg);
                    rest = tail;
                }
                Ok(None) => {
                    carry.extend_from_slice(rest);
                    self.framer(dir).carry_at = stream.segment_at(at).map(|s| (s.ts, s.record));
                    rest = &[];
                }
                Err(e) => {
                    let f = &mut self.framer(dir);
                    f.stop = Some(Stop::Error(e.at(at)));
                    f.stop_record = f.record_at(stream, at);
                    f.previous = previous;
                    return;
                }
            }
        }
        let f = &mut self.framer(dir);
        if let Some(g) = gap {
            // A PDU cut by the gap is the gap's fault.
            carry.clear();
            f.stop = Some(Stop::Gap {
                offset: g.offset,
                len: g.len,
            });
            f.stop_record = f
                .record_at(stream, g.offset)
                .or_else(|| g.offset.checked_sub(1).and_then(|o| f.record_at(stream, o)));
        }
        f.carry = carry;
        f.previous = previous;
    }

    /// One whole PDU framed at stream offset `at`, its first byte captured at `when`.
    fn framed(&mut self, dir: Direction, bytes: &[u8], at: usize, seg: Option<(Timestamp, usize)>) {
        let f = &mut self.framer(dir);
        f.pdus += 1;
        f.at = at + bytes.len();
        if f.broken {
            return;
        }
        let pdu = match Pdu::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                f.broken = true;
                self.problem
                    .get_or_insert((dir, e.at(at), seg.map(|s| s.1)));
                return;
            }
        };
        match dir {
            Direction::ToServer => self.client_pdu(&pdu, bytes, at, seg),
            Direction::ToClient => self.server_pdu(&pdu, at, seg),
        }
    }

    fn client_pdu(
        &mut self,
        pdu: &Pdu<'_>,
        bytes: &[u8],
        at: usize,
        seg: Option<(Timestamp, usize)>,
    ) {
        let when = seg.map(|s| s.0);
        match &pdu.body {
            Body::Bind(_) | Body::AlterContext(_) => {
                if self.binds.len() >= MAX_UNANSWERED_BINDS
                    && let Some(old) = self.binds.pop_front()
                    && let Ok(old) = Pdu::parse(&old)
                {
                    self.conv.binds.push(bind_exchange(&old, None));
                }
                self.binds.push_back(bytes.to_vec());
            }
            Body::Request(_) => {
                self.first_fragment
                    .entry(pdu.header.call_id)
                    .or_insert(when);
                match self.reassembler.push(pdu) {
                    Ok(Some(call)) => {
                        let sent_at = self.first_fragment.remove(&call.call_id).unwrap_or(when);
                        if self.calls.len() >= MAX_UNANSWERED_CALLS
                            && let Some(old) = self.calls.pop_front()
                        {
                            self.give_up(old);
                        }
                        self.calls.push_back(PendingCall {
                            call,
                            pdu: bytes.to_vec(),
                            sent_at,
                            exchange: None,
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.problem.get_or_insert((
                            Direction::ToServer,
                            Error::invalid("request fragment", at, e.to_string()),
                            seg.map(|s| s.1),
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    fn server_pdu(&mut self, pdu: &Pdu<'_>, at: usize, seg: Option<(Timestamp, usize)>) {
        let when = seg.map(|s| s.0);
        match &pdu.body {
            Body::BindAck(_) | Body::AlterContextResp(_) | Body::BindNak(_) => {
                let Some(bind) = self.binds.pop_front() else {
                    return;
                };
                let Ok(bind) = Pdu::parse(&bind) else {
                    return;
                };
                let ex = bind_exchange(&bind, Some(pdu));
                for ((ctx, syntax), res) in ex.offered.iter().zip(&ex.results) {
                    if let (AckResult::Acceptance, Some(s)) = (res.result, syntax_of(syntax)) {
                        self.contexts.retain(|(c, _)| c != ctx);
                        self.contexts.push((*ctx, s));
                    }
                }
                self.conv.binds.push(ex);
            }
            Body::Response(_) | Body::Fault(_) => {
                let reply = match self.server_reassembler.push(pdu) {
                    Ok(Some(call)) => call,
                    Ok(None) => return,
                    Err(e) => {
                        self.problem.get_or_insert((
                            Direction::ToClient,
                            Error::invalid("response fragment", at, e.to_string()),
                            seg.map(|s| s.1),
                        ));
                        return;
                    }
                };
                let early = EarlyReply {
                    head: ReplyHead::of(pdu),
                    reply,
                    replied_at: when,
                };
                if let Some(early) = self.answer(early) {
                    if self.early.len() >= MAX_EARLY_REPLIES {
                        self.early.pop_front();
                    }
                    self.early.push_back(early);
                }
            }
            _ => {}
        }
    }

    /// Matches a reply with the oldest unanswered call of its call id; gives it back if none.
    fn answer(&mut self, r: EarlyReply) -> Option<EarlyReply> {
        let Some(pending) = self
            .calls
            .iter_mut()
            .find(|p| p.exchange.is_none() && p.call.call_id == r.reply.call_id)
        else {
            return Some(r);
        };
        let mut ex = activation(pending, Some((&r.head, &r.reply)), &self.contexts);
        ex.replied_at = r.replied_at;
        pending.exchange = Some(Box::new(ex));
        None
    }

    fn retry_early(&mut self) {
        if self.early.is_empty() || self.calls.is_empty() {
            return;
        }
        let early = std::mem::take(&mut self.early);
        for r in early {
            if let Some(r) = self.answer(r) {
                self.early.push_back(r);
            }
        }
    }

    /// Hands on the answered calls at the front, in call order.
    fn release_answered(&mut self) {
        while self.calls.front().is_some_and(|p| p.exchange.is_some()) {
            if let Some(ex) = self.calls.pop_front().and_then(|p| p.exchange) {
                self.conv.activations.push(*ex);
            }
        }
    }

    /// A call that gets no reply: every call before it is handed on first, to keep call order.
    fn give_up(&mut self, mut pending: PendingCall) {
        let ex = match pending.exchange.take() {
            Some(ex) => *ex,
            None => activation(&mut pending, None, &self.contexts),
        };
        self.conv.activations.push(ex);
    }
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

/// Decodes a whole connection's streams.
pub fn decode(conn: &Connection) -> Conversation {
    let mut decoder = Decoder::new();
    decoder.feed(conn);
    decoder.finish().0
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
    pending: &mut PendingCall,
    reply: Option<(&ReplyHead, &Call)>,
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
    let sent_at = pending.sent_at;
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
    // The request was parsed once when it was framed; the same bytes parse again.
    let request_pdu = Pdu::parse(&pending.pdu).ok();
    let reply = match (reply, &request, &request_pdu) {
        (None, _, _) | (_, _, None) => Reply::Missing,
        (Some((head, reply_call)), request, Some(request_pdu)) => {
            if let Some(status) = reply_call.fault {
                rpc_checks = check_response(request_pdu, head, reply_call.flags, None);
                Reply::Fault(status)
            } else {
                match ActivationResponse::parse(syntax.unwrap_or(Syntax::Ndr32), &reply_call.stub) {
                    Err(e) => Reply::Undecodable(e),
                    Ok(stub) => {
                        rpc_checks =
                            check_response(request_pdu, head, reply_call.flags, Some(&stub));
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
