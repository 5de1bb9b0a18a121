//! RPC-level checks on a host's replies: the bind_ack against its bind, and the response to
//! the activation call against its request (what vlmcs verifies before touching the KMS body).

use crate::wire::HResult;
use crate::wire::ndr::ActivationResponse;
use crate::wire::rpc::{AckResult, Body, Flags, HeaderRepr, NDR32, NDR64, PacketType, Pdu};

use crate::proto::check::{Check, CheckId, Checks, Value};

fn packet_type_name(t: PacketType) -> Value {
    Value::Text(crate::wire::rpc::pdu_name(t))
}

/// What the checks on a call's reply need of it: the header as it came (its real packet type,
/// even when the body was read as the response it should have been) and, for a response or
/// fault, its context id and cancel count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHead {
    /// The reply's (first fragment's) header.
    pub header: HeaderRepr,
    /// Context id and cancel count, when the body carries them.
    pub call: Option<(u16, u8)>,
}

impl ReplyHead {
    /// The head of a parsed reply PDU.
    pub fn of(pdu: &Pdu<'_>) -> ReplyHead {
        let call = match &pdu.body {
            Body::Response(r) => Some((r.context_id, r.cancel_count)),
            Body::Fault(f) => Some((f.context_id, f.cancel_count)),
            _ => None,
        };
        ReplyHead {
            header: pdu.header,
            call,
        }
    }
}

fn common(
    request: &Pdu<'_>,
    reply: &HeaderRepr,
    flags: Flags,
    expected_type: PacketType,
    checks: &mut Checks,
) {
    checks.push(Check::equal(
        CheckId::RpcPacketType,
        packet_type_name(expected_type),
        packet_type_name(reply.packet_type),
    ));
    checks.push(Check::equal(
        CheckId::RpcCallId,
        Value::Num(request.header.call_id.into()),
        Value::Num(reply.call_id.into()),
    ));
    checks.push(Check::new(
        CheckId::RpcFragmentFlags,
        flags.contains(Flags::FIRST_LAST),
        Value::Text("FIRST_FRAG on the first fragment, LAST_FRAG on the last"),
        Value::Num(flags.0.into()),
    ));
}

/// Checks a bind_ack (or alter_context_resp) against the bind (or alter_context) it answers.
pub fn check_bind_reply(request: &Pdu<'_>, reply: &Pdu<'_>) -> Checks {
    let mut checks = Checks::new();
    check_bind_reply_into(request, reply, &mut checks);
    checks
}

/// [`check_bind_reply`], written into `checks` (a session's boxed list: built in place rather
/// than returned and moved, 1.4 KB each time).
pub fn check_bind_reply_into(request: &Pdu<'_>, reply: &Pdu<'_>, checks: &mut Checks) {
    let (expected_type, proposed) = match &request.body {
        Body::Bind(b) => (PacketType::BindAck, b.contexts.len()),
        Body::AlterContext(b) => (PacketType::AlterContextResp, b.contexts.len()),
        _ => (PacketType::BindAck, 0),
    };
    common(
        request,
        &reply.header,
        reply.header.flags,
        expected_type,
        checks,
    );
    // The bind_ack mirrors the bind's multiplex flag; alter_context_resp never sets it
    // (Windows behaviour; vlmcs warns otherwise).
    let want_mpx =
        expected_type == PacketType::BindAck && request.header.flags.contains(Flags::CONC_MPX);
    checks.push(Check::equal(
        CheckId::RpcMultiplexFlag,
        Value::Bool(want_mpx),
        Value::Bool(reply.header.flags.contains(Flags::CONC_MPX)),
    ));
    let results = match &reply.body {
        Body::BindAck(a) | Body::AlterContextResp(a) => Some(&a.results),
        _ => None,
    };
    let accepted = results.is_some_and(|r| {
        r.iter().any(|res| {
            res.result == AckResult::Acceptance
                && (res.transfer_syntax == NDR32 || res.transfer_syntax == NDR64)
        })
    });
    let answered = results.map_or(0, |r| r.len());
    checks.push(Check::new(
        CheckId::RpcBindResults,
        answered == proposed && accepted,
        Value::Num(proposed as u64),
        if accepted {
            Value::Num(answered as u64)
        } else {
            Value::Text("no NDR syntax accepted")
        },
    ));
}

/// Checks the reply to an activation request PDU: its header and, when it is a response, its
/// stub (`stub` is the decoded activation response). `reply` is the head of the reply's first
/// fragment (or only PDU) and `flags` the flags of the whole reply (see
/// [`crate::wire::reassembly::Call::flags`]).
pub fn check_response(
    request: &Pdu<'_>,
    reply: &ReplyHead,
    flags: Flags,
    stub: Option<&ActivationResponse<'_>>,
) -> Checks {
    let mut checks = Checks::new();
    check_response_into(request, reply, flags, stub, &mut checks);
    checks
}

/// [`check_response`], its checks written into `checks` (appended, replacing any with the same
/// id): a client session keeps its reply's list in place instead of moving 1.4 KB by value.
pub fn check_response_into(
    request: &Pdu<'_>,
    reply: &ReplyHead,
    flags: Flags,
    stub: Option<&ActivationResponse<'_>>,
    checks: &mut Checks,
) {
    common(request, &reply.header, flags, PacketType::Response, checks);
    checks.push(Check::equal(
        CheckId::RpcMultiplexFlag,
        Value::Bool(false),
        Value::Bool(flags.contains(Flags::CONC_MPX)),
    ));
    let req_ctx = match &request.body {
        Body::Request(r) => r.context_id,
        _ => 0,
    };
    if let Some((context_id, cancel_count)) = reply.call {
        checks.push(Check::equal(
            CheckId::RpcContextId,
            Value::Num(req_ctx.into()),
            Value::Num(context_id.into()),
        ));
        checks.push(Check::equal(
            CheckId::RpcCancelCount,
            Value::Num(0),
            Value::Num(cancel_count.into()),
        ));
    }
    if let Some(stub) = stub {
        checks.push(Check::new(
            CheckId::NdrCounts,
            stub.counts_agree(),
            Value::Num(stub.body.len() as u64),
            Value::Num(stub.max_count.unwrap_or(stub.size)),
        ));
        checks.push(Check::new(
            CheckId::NdrPadding,
            stub.pad_is_zero(),
            Value::Text("zeros"),
            Value::Num(stub.pad.iter().map(|&b| u64::from(b)).sum()),
        ));
        checks.push(Check::equal(
            CheckId::ReturnValue,
            Value::HResult(HResult::S_OK),
            Value::HResult(stub.hresult),
        ));
    }
}
