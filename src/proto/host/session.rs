//! The host's side of one RPC connection, sans-IO: whole PDUs in, reply PDUs out. It negotiates
//! presentation contexts (NDR32, NDR64, bind-time feature negotiation) as Windows does, answers
//! malformed or unexpected calls with faults, reassembles fragmented calls, and hands each
//! activation request to a caller-supplied function.

use crate::wire::HResult;
use crate::wire::ndr::{ActivationRequest, ActivationResponse, Syntax};
use crate::wire::reassembly::Reassembler;
use crate::wire::rpc::{
    AckResult, Bind, BindAck, BindNak, Body, ContextResult, Fault as FaultPdu, FaultStatus, Flags,
    HeaderRepr, KMS_INTERFACE, NDR32, NDR64, PacketType, Pdu, ProviderReason, RejectReason,
    Response, SyntaxId,
};

use crate::proto::faults::{Fault, FaultSet};

/// What the host supports and how it misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRpcConfig {
    /// Accept NDR64 (hosts on Windows 7 / Server 2008 R2 and later do).
    pub ndr64: bool,
    /// Answer bind-time feature negotiation.
    pub btfn: bool,
    /// TCP port the host listens on, sent as the bind_ack's secondary address.
    pub port: u16,
    /// Injected deviations.
    pub faults: FaultSet,
}

impl Default for HostRpcConfig {
    fn default() -> Self {
        HostRpcConfig {
            ndr64: true,
            btfn: true,
            port: 1688,
            faults: FaultSet::NONE,
        }
    }
}

/// Turns a KMS request into a KMS response (appended to the buffer) or an HRESULT refusal.
pub type Activate<'a> = dyn FnMut(&[u8], &mut Vec<u8>) -> Result<(), HResult> + 'a;

/// What the driver should do after a PDU was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Type of the reply appended to the output, if any.
    pub reply: Option<PacketType>,
    /// Close the connection after sending the output.
    pub close: bool,
    /// The status of a fault reply, so the driver can log a call the service never saw.
    pub fault: Option<FaultStatus>,
}

impl Step {
    const fn reply(t: PacketType) -> Step {
        Step {
            reply: Some(t),
            close: false,
            fault: None,
        }
    }
    const CLOSE: Step = Step {
        reply: None,
        close: true,
        fault: None,
    };
    const NOTHING: Step = Step {
        reply: None,
        close: false,
        fault: None,
    };
}

/// The host's state for one connection.
#[derive(Debug)]
pub struct HostSession {
    config: HostRpcConfig,
    assoc_group: u32,
    /// Accepted presentation contexts.
    contexts: Vec<(u16, Syntax)>,
    /// Largest fragment the client accepts (its max_recv_frag).
    client_max_recv: u16,
    reassembler: Reassembler,
    kms_out: Vec<u8>,
    stub: Vec<u8>,
}

/// Largest PDU a connection may send before it has bound a context: a bind or alter_context
/// offering KMS in every syntax is under 200 bytes, and a single-fragment request (answered
/// with a fault) about 300. So an unbound connection holds at most this much.
pub const MAX_UNBOUND_PDU: usize = 1024;

/// Largest PDU once bound (what the framing reader accepts at most; Windows caps fragments
/// at 5840).
pub const MAX_BOUND_PDU: usize = 16 * 1024;

/// Smallest fragment size a peer may announce (C706 12.6.3.1: 1432 for CO; we accept any
/// value above the response header so that tiny sizes can exercise fragmentation).
const MIN_FRAG: u16 = 64;

impl HostSession {
    /// A session for a new connection; `assoc_group` is the group a fresh bind gets.
    pub fn new(config: HostRpcConfig, assoc_group: u32) -> HostSession {
        HostSession {
            config,
            assoc_group,
            contexts: Vec::new(),
            client_max_recv: u16::MAX,
            reassembler: Reassembler::new(),
            kms_out: Vec::with_capacity(512),
            stub: Vec::with_capacity(512),
        }
    }

    /// The association group this connection belongs to.
    pub fn assoc_group(&self) -> u32 {
        self.assoc_group
    }

    /// Accepted contexts.
    pub fn contexts(&self) -> &[(u16, Syntax)] {
        &self.contexts
    }

    /// Whether a bind or alter_context has accepted a context: until then the connection is
    /// unauthenticated and held to one small PDU at a time, with no reassembly.
    pub fn is_bound(&self) -> bool {
        !self.contexts.is_empty()
    }

    /// Largest PDU the driver should accept next: [`MAX_UNBOUND_PDU`] before a bind, else
    /// [`MAX_BOUND_PDU`].
    pub fn max_pdu(&self) -> usize {
        if self.is_bound() {
            MAX_BOUND_PDU
        } else {
            MAX_UNBOUND_PDU
        }
    }

    /// Fragmented calls waiting for more fragments.
    pub fn calls_in_progress(&self) -> usize {
        self.reassembler.in_progress()
    }

    /// Handles one whole PDU (framed with [`crate::wire::rpc::split_pdu`]) and appends the
    /// reply to `out`. `activate` turns a KMS request into a KMS response (appended to its
    /// output buffer) or an HRESULT refusal.
    pub fn handle(&mut self, bytes: &[u8], activate: &mut Activate<'_>, out: &mut Vec<u8>) -> Step {
        if bytes.len() > self.max_pdu() {
            // A driver honouring `max_pdu` never hands over such a PDU; hang up regardless.
            return Step::CLOSE;
        }
        let pdu = match Pdu::parse(bytes) {
            Ok(p) => p,
            Err(_) => {
                // A frame we cannot parse: answer with a protocol-error fault when the header
                // says it was a call, otherwise hang up.
                let h = crate::wire::rpc::Header::new_unchecked(bytes);
                if h.check_len().is_ok() && h.packet_type() == PacketType::Request {
                    return self.fault(h.call_id(), 0, FaultStatus::ProtocolError, out);
                }
                return Step::CLOSE;
            }
        };
        match &pdu.body {
            Body::Bind(b) | Body::AlterContext(b) => self.bind(&pdu.header, b, out),
            Body::Request(r) => self.request(&pdu, r.context_id, r.opnum, activate, out),
            // Anything else from a client (acks, responses, cancels, shutdowns) ends it.
            _ => Step::CLOSE,
        }
    }

    fn bind(&mut self, header: &HeaderRepr, bind: &Bind, out: &mut Vec<u8>) -> Step {
        let is_bind = header.packet_type == PacketType::Bind;
        if header.version_minor > 1 {
            Pdu {
                header: HeaderRepr::new(PacketType::BindNak, header.call_id),
                body: Body::BindNak(BindNak {
                    reason: RejectReason::ProtocolVersionNotSupported,
                    versions: vec![(5, 0), (5, 1)],
                    rest: &[],
                    bare: false,
                }),
                auth: &[],
            }
            .emit(out);
            return Step::reply(PacketType::BindNak);
        }
        self.client_max_recv = bind.max_recv_frag.max(MIN_FRAG);
        let ndr64 = self.config.ndr64 && !self.config.faults.has(Fault::Ndr64Refused);
        let kms = |item: &crate::wire::rpc::ContextItem| {
            item.abstract_syntax.uuid == KMS_INTERFACE.uuid
                && item.abstract_syntax.version & 0xffff == KMS_INTERFACE.version
        };
        // Windows prefers NDR64: when the bind offers it (and the host takes it), NDR32 in the
        // same bind is turned down, and the client asks for NDR32 again with alter_context.
        let ndr64_offered = ndr64
            && bind
                .contexts
                .iter()
                .any(|c| kms(c) && c.transfer_syntaxes.contains(&NDR64));
        let nil = SyntaxId {
            uuid: crate::wire::Guid::NIL,
            version: 0,
        };
        let mut results = Vec::with_capacity(bind.contexts.len());
        for item in &bind.contexts {
            let reject = |reason: ProviderReason| ContextResult {
                result: AckResult::ProviderRejection,
                reason: reason.into(),
                transfer_syntax: nil,
            };
            if !kms(item) {
                results.push(reject(ProviderReason::AbstractSyntaxNotSupported));
                continue;
            }
            let mut result = reject(ProviderReason::ProposedTransferSyntaxesNotSupported);
            for ts in &item.transfer_syntaxes {
                let accepted = if *ts == NDR32 && !ndr64_offered {
                    Some(Syntax::Ndr32)
                } else if *ts == NDR64 && ndr64 {
                    Some(Syntax::Ndr64)
                } else {
                    None
                };
                if let Some(syntax) = accepted {
                    self.contexts.retain(|(c, _)| *c != item.context_id);
                    self.contexts.push((item.context_id, syntax));
                    result = ContextResult {
                        result: AckResult::Acceptance,
                        reason: 0,
                        transfer_syntax: *ts,
                    };
                    break;
                }
                if let (Some(bits), true) = (ts.btfn_bits(), self.config.btfn) {
                    // MS-RPCE 3.3.1.5.3: the server echoes the features it supports.
                    result = ContextResult {
                        result: AckResult::NegotiateAck,
                        reason: bits & 0x3,
                        transfer_syntax: nil,
                    };
                    break;
                }
            }
            results.push(result);
        }
        if self.config.faults.has(Fault::MissingBindResult) {
            results.pop();
        }
        let mut flags = Flags::FIRST_LAST;
        if is_bind {
            let mpx = header.flags.contains(Flags::CONC_MPX)
                ^ self.config.faults.has(Fault::MultiplexNotEchoed);
            flags = flags.with(Flags::CONC_MPX, mpx);
            if bind.assoc_group != 0 {
                self.assoc_group = bind.assoc_group;
            }
        }
        let mut port = [0u8; 6];
        let port_len = write_port(self.config.port, &mut port);
        let reply_type = if is_bind {
            PacketType::BindAck
        } else {
            PacketType::AlterContextResp
        };
        let ack = BindAck {
            max_xmit_frag: bind.max_xmit_frag,
            max_recv_frag: bind.max_recv_frag,
            assoc_group: self.assoc_group,
            // Windows sends its port for a bind and nothing for an alter_context.
            secondary_address: if is_bind { &port[..port_len] } else { &[] },
            pad: &[],
            reserved: [0; 3],
            results,
        };
        Pdu {
            header: HeaderRepr {
                flags,
                ..HeaderRepr::new(reply_type, header.call_id)
            },
            body: if is_bind {
                Body::BindAck(ack)
            } else {
                Body::AlterContextResp(ack)
            },
            auth: &[],
        }
        .emit(out);
        Step {
            reply: Some(reply_type),
            close: is_bind && self.config.faults.has(Fault::CloseAfterBind),
            fault: None,
        }
    }

    fn request(
        &mut self,
        pdu: &Pdu<'_>,
        context_id: u16,
        opnum: u16,
        activate: &mut Activate<'_>,
        out: &mut Vec<u8>,
    ) -> Step {
        let call_id = pdu.header.call_id;
        // Checked before reassembly: an unbound connection gets no buffer for fragments.
        if !self.is_bound() {
            return self.fault(call_id, context_id, FaultStatus::ProtocolError, out);
        }
        let whole =
            pdu.header.flags.contains(Flags::FIRST_LAST) && self.reassembler.in_progress() == 0;
        // Single-fragment calls (every real client) skip the reassembler: no copy.
        let reassembled;
        let stub: &[u8] = if whole {
            match &pdu.body {
                Body::Request(r) => r.stub,
                _ => &[],
            }
        } else {
            match self.reassembler.push(pdu) {
                Ok(Some(call)) => {
                    reassembled = call.stub;
                    &reassembled
                }
                Ok(None) => return Step::NOTHING,
                Err(_) => {
                    return self.fault(call_id, context_id, FaultStatus::ProtocolError, out);
                }
            }
        };
        let Some(&(_, syntax)) = self.contexts.iter().find(|(c, _)| *c == context_id) else {
            return self.fault(call_id, context_id, FaultStatus::UnknownInterface, out);
        };
        if opnum != 0 {
            return self.fault(call_id, context_id, FaultStatus::OpRangeError, out);
        }
        self.kms_out.clear();
        let faults = self.config.faults;
        if faults.has(Fault::AbortOnNdrCount)
            && ActivationRequest::parse(syntax, stub).is_ok_and(|r| r.max_count == 0xFFFF_FFFF)
        {
            // Planted for `fuzz` to find (never on by default): a host that dies on a count.
            std::process::abort();
        }
        let declared = ActivationRequest::parse(syntax, stub).ok().and_then(|req| {
            let message = req.declared_message().ok()?;
            // strict-stub: bytes after the message make the stub unacceptable too.
            (!faults.has(Fault::StrictStub) || message.len() == req.body.len()).then_some(message)
        });
        let result = match declared {
            Some(message) => activate(message, &mut self.kms_out),
            None if faults.has(Fault::StrictStub) || faults.has(Fault::StubRefusedNotFaulted) => {
                Err(HResult::INVALID_DATA)
            }
            // The arguments do not unmarshal: the RPC runtime, not the KMS service, answers,
            // with RPC_X_BAD_STUB_DATA (MS-RPCE 2.2.2.9; C706 chapter 14). The call never ran.
            None => return self.fault(call_id, context_id, FaultStatus::BadStubData, out),
        };
        let mut response = match result {
            Ok(()) => ActivationResponse::ok(syntax, &self.kms_out),
            Err(h) => ActivationResponse::refusal(syntax, h),
        };
        if faults.has(Fault::RefuseAll) {
            response = ActivationResponse::refusal(syntax, HResult::NOT_ACTIVATED);
        }
        const GARBAGE: [u8; 3] = [0xaa; 3];
        if faults.has(Fault::NdrPadding) && !response.pad.is_empty() {
            response.pad = &GARBAGE[..response.pad.len()];
        }
        if faults.has(Fault::NdrCountMismatch) {
            response.size += 1;
        }
        self.stub.clear();
        response.emit(&mut self.stub);
        let reply_type = if faults.has(Fault::WrongPacketType) {
            PacketType::AlterContextResp
        } else {
            PacketType::Response
        };
        let call_id = call_id.wrapping_add(u32::from(faults.has(Fault::WrongCallId)));
        let context_id = context_id.wrapping_add(u16::from(faults.has(Fault::WrongContextId)));
        let cancel_count = u8::from(faults.has(Fault::CancelCount));
        // Split the stub if the client announced small fragments.
        const RESPONSE_HEADER: usize = 24;
        let room = usize::from(self.client_max_recv)
            .saturating_sub(RESPONSE_HEADER)
            .max(8)
            & !7;
        let count = self.stub.len().div_ceil(room).max(1);
        for i in 0..count {
            let part = self
                .stub
                .get(i * room..((i + 1) * room).min(self.stub.len()))
                .unwrap_or_default();
            let mut flags = Flags(0)
                .with(Flags::FIRST_FRAG, i == 0)
                .with(Flags::LAST_FRAG, i + 1 == count);
            if faults.has(Fault::BadFragmentFlags) {
                flags = flags.with(Flags::FIRST_FRAG, false);
            }
            Pdu {
                header: HeaderRepr {
                    flags,
                    ..HeaderRepr::new(reply_type, call_id)
                },
                body: Body::Response(Response {
                    alloc_hint: (self.stub.len() - i * room) as u32,
                    context_id,
                    cancel_count,
                    reserved: 0,
                    stub: part,
                }),
                auth: &[],
            }
            .emit(out);
        }
        Step::reply(reply_type)
    }

    fn fault(
        &mut self,
        call_id: u32,
        context_id: u16,
        status: FaultStatus,
        out: &mut Vec<u8>,
    ) -> Step {
        Pdu {
            header: HeaderRepr {
                flags: Flags::FIRST_LAST | Flags::DID_NOT_EXECUTE,
                ..HeaderRepr::new(PacketType::Fault, call_id)
            },
            body: Body::Fault(FaultPdu {
                alloc_hint: 0,
                context_id,
                cancel_count: 0,
                reserved: 0,
                status,
                reserved2: Some(0),
                stub: &[],
            }),
            auth: &[],
        }
        .emit(out);
        Step {
            fault: Some(status),
            ..Step::reply(PacketType::Fault)
        }
    }
}

/// Writes `port` as a NUL-terminated decimal string; returns its length.
fn write_port(port: u16, buf: &mut [u8; 6]) -> usize {
    let mut digits = [0u8; 5];
    let mut n = 0;
    let mut p = port;
    loop {
        digits[n] = b'0' + (p % 10) as u8;
        n += 1;
        p /= 10;
        if p == 0 {
            break;
        }
    }
    for (i, d) in digits[..n].iter().rev().enumerate() {
        buf[i] = *d;
    }
    buf[n] = 0;
    n + 1
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::proto::client::session::{ClientRpcOptions, ClientSession};
    use crate::wire::rpc::{emit_fragmented_request, split_pdu};

    fn refuse(_: &[u8], _: &mut Vec<u8>) -> Result<(), HResult> {
        Err(HResult::INVALID_DATA)
    }

    /// Feeds every PDU in `bytes`; returns the steps and the output.
    fn feed(host: &mut HostSession, bytes: &[u8]) -> (Vec<Step>, Vec<u8>) {
        let mut out = Vec::new();
        let mut steps = Vec::new();
        let mut rest = bytes;
        while let Some((pdu, tail)) = split_pdu(rest).unwrap() {
            steps.push(host.handle(pdu, &mut refuse, &mut out));
            rest = tail;
        }
        (steps, out)
    }

    /// The first fragment of each of `calls` calls, 200 bytes of stub each.
    fn first_fragments(calls: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for call in 1..=calls {
            let mut all = Vec::new();
            emit_fragmented_request(&mut all, call, Flags::FIRST_LAST, 0, 0, &[7; 400], 224);
            let (first, _) = split_pdu(&all).unwrap().unwrap();
            out.extend_from_slice(first);
        }
        out
    }

    #[test]
    fn test_unbound_connection_gets_no_reassembly() {
        let mut host = HostSession::new(HostRpcConfig::default(), 1);
        assert!(!host.is_bound());
        assert_eq!(host.max_pdu(), MAX_UNBOUND_PDU);
        let calls = Reassembler::DEFAULT_MAX_CALLS as u32;
        let (steps, _) = feed(&mut host, &first_fragments(calls));
        assert_eq!(steps.len(), calls as usize);
        for step in steps {
            assert_eq!(step.reply, Some(PacketType::Fault));
        }
        assert_eq!(host.calls_in_progress(), 0);
    }

    #[test]
    fn test_unbound_connection_takes_only_small_pdus() {
        let mut host = HostSession::new(HostRpcConfig::default(), 1);
        let mut big = Vec::new();
        emit_fragmented_request(&mut big, 1, Flags::FIRST_LAST, 0, 0, &[7; 2000], 4096);
        assert!(big.len() > MAX_UNBOUND_PDU);
        let (steps, out) = feed(&mut host, &big);
        assert_eq!(steps, [Step::CLOSE]);
        assert!(out.is_empty());
    }

    #[test]
    fn test_bound_connection_keeps_the_reassembly_caps() {
        let mut host = HostSession::new(HostRpcConfig::default(), 1);
        let mut client = ClientSession::new(ClientRpcOptions::default());
        let mut bind = Vec::new();
        client.bind(&mut bind);
        assert!(bind.len() <= MAX_UNBOUND_PDU);
        let (steps, _) = feed(&mut host, &bind);
        assert_eq!(steps, [Step::reply(PacketType::BindAck)]);
        assert!(host.is_bound());
        assert_eq!(host.max_pdu(), MAX_BOUND_PDU);
        let calls = Reassembler::DEFAULT_MAX_CALLS as u32;
        let (steps, _) = feed(&mut host, &first_fragments(calls));
        assert!(steps.iter().all(|s| *s == Step::NOTHING), "{steps:?}");
        assert_eq!(host.calls_in_progress(), calls as usize);
        // One more is over the cap.
        let mut more = Vec::new();
        emit_fragmented_request(&mut more, 99, Flags::FIRST_LAST, 0, 0, &[7; 400], 224);
        let (first, _) = split_pdu(&more).unwrap().unwrap();
        let (steps, _) = feed(&mut host, first);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].reply, Some(PacketType::Fault));
    }

    /// A bound session and the NDR32 stub of a `declared`-byte message of which `arrived`
    /// bytes follow the counts.
    fn bound_with_stub(declared: u32, arrived: usize) -> (HostSession, Vec<u8>) {
        let mut host = HostSession::new(HostRpcConfig::default(), 1);
        // NDR32 only, so context 0 is accepted at once.
        let mut client = ClientSession::new(ClientRpcOptions {
            ndr64: false,
            ..ClientRpcOptions::default()
        });
        let mut bind = Vec::new();
        client.bind(&mut bind);
        feed(&mut host, &bind);
        let mut stub = Vec::new();
        stub.extend(declared.to_le_bytes());
        stub.extend(declared.to_le_bytes());
        stub.extend((0..arrived).map(|i| i as u8));
        let mut pdu = Vec::new();
        emit_fragmented_request(&mut pdu, 2, Flags::FIRST_LAST, 0, 0, &stub, 5840);
        (host, pdu)
    }

    #[test]
    fn test_bytes_after_the_declared_message_are_not_passed_on() {
        let (mut host, pdu) = bound_with_stub(252, 256);
        let mut seen = 0;
        let mut out = Vec::new();
        let step = host.handle(
            &pdu,
            &mut |msg: &[u8], _: &mut Vec<u8>| {
                seen = msg.len();
                Err(HResult::INVALID_DATA)
            },
            &mut out,
        );
        assert_eq!(step.reply, Some(PacketType::Response));
        assert_eq!(seen, 252);
    }

    #[test]
    fn test_a_stub_shorter_than_declared_is_faulted_before_the_service() {
        let (mut host, pdu) = bound_with_stub(268, 252);
        let mut called = false;
        let mut out = Vec::new();
        let step = host.handle(
            &pdu,
            &mut |_: &[u8], _: &mut Vec<u8>| {
                called = true;
                Ok(())
            },
            &mut out,
        );
        assert!(!called);
        assert_eq!(step.reply, Some(PacketType::Fault));
        assert_eq!(step.fault, Some(FaultStatus::BadStubData));
        let (reply, _) = split_pdu(&out).unwrap().unwrap();
        match Pdu::parse(reply).unwrap().body {
            Body::Fault(f) => assert_eq!(f.status, FaultStatus::BadStubData),
            other => panic!("{other:?}"),
        }
    }
}
