//! The client's side of one RPC connection, sans-IO: builds the bind (and alter_context) as
//! Windows does, checks the host's answers, wraps KMS requests in request PDUs and unwraps the
//! replies, reporting every RPC-level check.

use crate::wire::HResult;
use crate::wire::codec::Error;
use crate::wire::ndr::{ActivationRequest, ActivationResponse, Syntax};
use crate::wire::rpc::{
    AckResult, Bind, Body, ContextItem, FaultStatus, Flags, Header, HeaderRepr, KMS_INTERFACE,
    NDR32, NDR64, PacketType, Pdu, RejectReason, Request, SyntaxId, WINDOWS_MAX_FRAG,
};

use super::checks::{ReplyHead, check_bind_reply_into, check_response_into};
use crate::proto::check::Checks;

/// How the client binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRpcOptions {
    /// Offer NDR64 (Windows 7 and later do).
    pub ndr64: bool,
    /// Offer bind-time feature negotiation (Windows 7 and later do).
    pub btfn: bool,
    /// Set PFC_CONC_MPX in the bind (Windows does).
    pub multiplex: bool,
    /// Fragment sizes to announce.
    pub max_frag: u16,
}

impl Default for ClientRpcOptions {
    fn default() -> Self {
        ClientRpcOptions {
            ndr64: true,
            btfn: true,
            multiplex: true,
            max_frag: WINDOWS_MAX_FRAG,
        }
    }
}

/// Context ids the client proposes, as Windows numbers them.
const CTX_NDR32: u16 = 0;
const CTX_NDR64: u16 = 1;
/// Feature bits Windows offers in its BTFN item.
const BTFN_OFFER: u16 = 0x0003;
/// Largest reply stub gathered over a call's fragments. A KMS response is about 250 bytes
/// (its stub a little more); a host sending more than this is streaming, not answering.
pub const MAX_REPLY: usize = 64 * 1024;
/// Windows starts counting calls at 2 (seen in every captured bind, genuine or vlmcs).
pub const FIRST_CALL_ID: u32 = 2;

/// Why the RPC exchange could not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// A reply did not parse.
    #[error("undecodable {what}: {source}")]
    Decode {
        /// Which reply.
        what: &'static str,
        /// The decode error.
        source: Error,
    },
    /// The host rejected the bind as a whole.
    #[error("bind rejected by the host: {0:?}")]
    BindRejected(RejectReason),
    /// Neither NDR32 nor NDR64 was accepted.
    #[error("the host accepted no transfer syntax for the KMS interface")]
    NoTransferSyntax,
    /// A reply of a type that cannot answer what was sent.
    #[error("expected {expected}, got {got}")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// What came.
        got: &'static str,
    },
    /// A fragment arrived out of order.
    #[error("reply fragments out of order")]
    Fragments,
    /// The reply's fragments add up to more than [`MAX_REPLY`] bytes.
    #[error("reply fragments exceed the {MAX_REPLY}-byte limit")]
    TooLarge,
}

/// What a bind (and the alter_context that may follow) established.
#[derive(Debug, Clone)]
pub struct BindOutcome {
    /// RPC checks on the host's answer (boxed for the reason `reply_checks` is).
    pub checks: Box<Checks>,
    /// Syntaxes the host accepted, in answer order, as vlmcs prints them ("NDR64", "BTFN",
    /// "NDR32").
    pub accepted: Vec<&'static str>,
    /// The association group the host assigned.
    pub assoc_group: u32,
    /// Whether NDR32 still has to be negotiated with an alter_context before the first call.
    pub needs_alter_context: bool,
}

/// What came back for one activation call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallReply {
    /// A KMS response body, available from [`ClientSession::response_body`].
    Response,
    /// The call returned an HRESULT without a body.
    Refused(HResult),
    /// An RPC fault.
    Fault(FaultStatus),
}

/// The reply to a call. Its RPC checks stay in the session
/// ([`ClientSession::reply_checks`]), as its body does: the list is over a kilobyte, and an
/// outcome is handed up through every layer of a load worker's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOutcome {
    /// The reply.
    pub reply: CallReply,
    /// Transfer syntax the call used.
    pub syntax: Syntax,
}

/// The client's state for one connection.
#[derive(Debug)]
pub struct ClientSession {
    options: ClientRpcOptions,
    call_id: u32,
    ndr32: bool,
    ndr64: bool,
    calls_made: u32,
    /// The last bind, alter_context or request sent, for checking its reply.
    last_sent: Vec<u8>,
    /// The association group the host's bind_ack assigned (0 before it), which an
    /// alter_context carries, as Windows' does (the genuine capture's alter_context repeats
    /// its host's 0x5b8ec84a).
    assoc_group: u32,
    /// Syntax of the outstanding call.
    pending_syntax: Syntax,
    /// The first fragment of a reply still arriving: its header (real packet type), context id,
    /// cancel count, and the flags seen so far; its stub bytes gather in `partial_stub`.
    partial: Option<(HeaderRepr, u16, u8, Flags)>,
    partial_stub: Vec<u8>,
    /// Reused buffer for request stubs.
    stub: Vec<u8>,
    /// The last KMS response body.
    body: Vec<u8>,
    /// The RPC checks of the last whole reply. Boxed: the list is 1.4 KB, and a connection
    /// (with its session) is moved a dozen times on its way from connect to the worker that
    /// keeps it — every move a copy of it all (callgrind, fresh mode).
    reply_checks: Box<Checks>,
}

impl ClientSession {
    /// A fresh connection.
    pub fn new(options: ClientRpcOptions) -> ClientSession {
        ClientSession::with_call_id(options, FIRST_CALL_ID)
    }

    /// A fresh connection whose first call id is `call_id` (vlmcs keeps counting across
    /// connections when it reconnects).
    pub fn with_call_id(options: ClientRpcOptions, call_id: u32) -> ClientSession {
        ClientSession {
            options,
            call_id,
            ndr32: false,
            ndr64: false,
            calls_made: 0,
            assoc_group: 0,
            last_sent: Vec::with_capacity(512),
            pending_syntax: Syntax::Ndr32,
            partial: None,
            partial_stub: Vec::new(),
            stub: Vec::with_capacity(512),
            body: Vec::with_capacity(512),
            reply_checks: Box::new(Checks::new()),
        }
    }

    /// The next call id.
    pub fn call_id(&self) -> u32 {
        self.call_id
    }

    /// Whether NDR64 was negotiated.
    pub fn has_ndr64(&self) -> bool {
        self.ndr64
    }

    fn item(context_id: u16, syntax: SyntaxId) -> ContextItem {
        ContextItem {
            context_id,
            reserved: 0,
            abstract_syntax: KMS_INTERFACE,
            transfer_syntaxes: vec![syntax],
        }
    }

    fn emit_bind(
        &mut self,
        packet_type: PacketType,
        contexts: Vec<ContextItem>,
        out: &mut Vec<u8>,
    ) {
        // A bind asks for a new group; an alter_context names the one it joined.
        let assoc_group = match packet_type {
            PacketType::AlterContext => self.assoc_group,
            _ => 0,
        };
        let bind = Bind {
            max_xmit_frag: self.options.max_frag,
            max_recv_frag: self.options.max_frag,
            assoc_group,
            reserved: [0; 3],
            contexts,
        };
        let flags = Flags::FIRST_LAST.with(Flags::CONC_MPX, self.options.multiplex);
        let pdu = Pdu {
            header: HeaderRepr {
                flags,
                ..HeaderRepr::new(packet_type, self.call_id)
            },
            body: if packet_type == PacketType::Bind {
                Body::Bind(bind)
            } else {
                Body::AlterContext(bind)
            },
            auth: &[],
        };
        self.last_sent.clear();
        pdu.emit(&mut self.last_sent);
        out.extend_from_slice(&self.last_sent);
    }

    /// Appends the bind: NDR32 on context 0, then NDR64 and BTFN when enabled.
    pub fn bind(&mut self, out: &mut Vec<u8>) {
        let mut contexts = vec![Self::item(CTX_NDR32, NDR32)];
        if self.options.ndr64 {
            contexts.push(Self::item(CTX_NDR64, NDR64));
        }
        if self.options.btfn {
            contexts.push(Self::item(
                contexts.len() as u16,
                SyntaxId::btfn(BTFN_OFFER),
            ));
        }
        self.emit_bind(PacketType::Bind, contexts, out);
    }

    /// Appends an alter_context asking for NDR32 on context 0 (what Windows sends when the
    /// bind got NDR64 only).
    pub fn alter_context(&mut self, out: &mut Vec<u8>) {
        self.emit_bind(
            PacketType::AlterContext,
            vec![Self::item(CTX_NDR32, NDR32)],
            out,
        );
    }

    /// Handles the answer to the last bind or alter_context.
    pub fn handle_bind_reply(&mut self, bytes: &[u8]) -> Result<BindOutcome, RpcError> {
        let sent = Pdu::parse(&self.last_sent).map_err(|source| RpcError::Decode {
            what: "own bind",
            source,
        })?;
        let reply = Pdu::parse(bytes).map_err(|source| RpcError::Decode {
            what: "bind reply",
            source,
        })?;
        let mut checks = Box::new(Checks::new());
        check_bind_reply_into(&sent, &reply, &mut checks);
        let (ack, offered) = match (&reply.body, &sent.body) {
            (Body::BindNak(n), _) => return Err(RpcError::BindRejected(n.reason)),
            (
                Body::BindAck(a) | Body::AlterContextResp(a),
                Body::Bind(b) | Body::AlterContext(b),
            ) => (a, &b.contexts),
            _ => {
                return Err(RpcError::Unexpected {
                    expected: "bind_ack",
                    got: crate::wire::rpc::pdu_name(reply.header.packet_type),
                });
            }
        };
        let mut accepted = Vec::new();
        for (item, res) in offered.iter().zip(&ack.results) {
            let Some(ts) = item.transfer_syntaxes.first() else {
                continue;
            };
            match res.result {
                AckResult::Acceptance if *ts == NDR32 => self.ndr32 = true,
                AckResult::Acceptance if *ts == NDR64 => self.ndr64 = true,
                AckResult::NegotiateAck => {}
                _ => continue,
            }
            accepted.push(ts.name());
        }
        if !self.ndr32 && !self.ndr64 && sent.header.packet_type == PacketType::AlterContext {
            return Err(RpcError::NoTransferSyntax);
        }
        if sent.header.packet_type == PacketType::Bind {
            self.assoc_group = ack.assoc_group;
        }
        Ok(BindOutcome {
            checks,
            accepted,
            assoc_group: ack.assoc_group,
            needs_alter_context: !self.ndr32 && sent.header.packet_type == PacketType::Bind,
        })
    }

    /// Appends a request PDU carrying `kms` and returns its call id. Like Windows, the first
    /// call goes over NDR32 and later ones over NDR64 when it was negotiated.
    pub fn request(&mut self, kms: &[u8], out: &mut Vec<u8>) -> u32 {
        let (syntax, context_id) = if self.ndr64 && (self.calls_made > 0 || !self.ndr32) {
            (Syntax::Ndr64, CTX_NDR64)
        } else {
            (Syntax::Ndr32, CTX_NDR32)
        };
        let call_id = self.call_id;
        self.stub.clear();
        ActivationRequest::new(syntax, kms).emit(&mut self.stub);
        let pdu = Pdu {
            header: HeaderRepr::new(PacketType::Request, call_id),
            body: Body::Request(Request {
                alloc_hint: self.stub.len() as u32,
                context_id,
                opnum: 0,
                object: None,
                stub: &self.stub,
            }),
            auth: &[],
        };
        self.last_sent.clear();
        pdu.emit(&mut self.last_sent);
        out.extend_from_slice(&self.last_sent);
        self.pending_syntax = syntax;
        self.partial = None;
        self.calls_made += 1;
        self.call_id = self.call_id.wrapping_add(1);
        call_id
    }

    /// The KMS response body of the last [`CallReply::Response`].
    pub fn response_body(&self) -> &[u8] {
        &self.body
    }

    /// The RPC checks made on the last whole reply to a call.
    pub fn reply_checks(&self) -> &Checks {
        &self.reply_checks
    }

    /// Handles one PDU of the reply to the last request: `Ok(None)` while more fragments are
    /// due.
    pub fn handle_reply(&mut self, bytes: &[u8]) -> Result<Option<CallOutcome>, RpcError> {
        let header = Header::new_checked(bytes).map_err(|source| RpcError::Decode {
            what: "reply header",
            source,
        })?;
        let real_type = header.packet_type();
        // Decode the body as the response or fault it should be even when the header names
        // another type, so that the wrong type is reported as a failed check, not a crash.
        let body_type = match real_type {
            PacketType::Fault => PacketType::Fault,
            _ => PacketType::Response,
        };
        let patched;
        let body_bytes = if real_type == body_type {
            bytes
        } else {
            let mut p = bytes.to_vec();
            if let Some(b) = p.get_mut(2) {
                *b = body_type.into();
            }
            patched = p;
            &patched[..]
        };
        let reply = Pdu::parse(body_bytes).map_err(|source| RpcError::Decode {
            what: "reply",
            source,
        })?;
        let flags = header.flags();
        let (stub, fault, context_id, cancel_count) = match &reply.body {
            Body::Response(r) => (r.stub, None, r.context_id, r.cancel_count),
            Body::Fault(f) => (f.stub, Some(f.status), f.context_id, f.cancel_count),
            _ => return Err(RpcError::Fragments),
        };
        let mut gathered = std::mem::take(&mut self.partial_stub);
        let (first, whole, combined): ((HeaderRepr, u16, u8), &[u8], Flags) =
            match self.partial.take() {
                None if flags.contains(Flags::LAST_FRAG) => {
                    let h = HeaderRepr {
                        packet_type: real_type,
                        ..reply.header
                    };
                    ((h, context_id, cancel_count), stub, flags)
                }
                None => {
                    gathered.clear();
                    gathered.extend_from_slice(stub);
                    let h = HeaderRepr {
                        packet_type: real_type,
                        ..reply.header
                    };
                    self.partial = Some((
                        h,
                        context_id,
                        cancel_count,
                        flags.with(Flags::LAST_FRAG, false),
                    ));
                    self.partial_stub = gathered;
                    return Ok(None);
                }
                Some((h, ctx, cancel, f)) => {
                    if gathered.len() + stub.len() > MAX_REPLY {
                        gathered.clear();
                        self.partial_stub = gathered;
                        return Err(RpcError::TooLarge);
                    }
                    gathered.extend_from_slice(stub);
                    let f = Flags(f.0 | (flags.0 & !Flags::FIRST_FRAG.0));
                    if !flags.contains(Flags::LAST_FRAG) {
                        self.partial = Some((h, ctx, cancel, f));
                        self.partial_stub = gathered;
                        return Ok(None);
                    }
                    ((h, ctx, cancel), &gathered[..], f)
                }
            };
        let sent = Pdu::parse(&self.last_sent).map_err(|source| RpcError::Decode {
            what: "own request",
            source,
        })?;
        // The reply as the checks see it: its real header, its context id and cancel count.
        let (first_header, first_ctx, first_cancel) = first;
        let as_received = ReplyHead {
            header: first_header,
            call: Some((first_ctx, first_cancel)),
        };
        // A fault's status, or a response's decoded stub.
        let answer = match fault {
            Some(status) => Err(status),
            None => Ok(
                ActivationResponse::parse(self.pending_syntax, whole).map_err(|source| {
                    RpcError::Decode {
                        what: "activation response stub",
                        source,
                    }
                })?,
            ),
        };
        self.reply_checks.clear();
        check_response_into(
            &sent,
            &as_received,
            combined,
            answer.as_ref().ok(),
            &mut self.reply_checks,
        );
        let reply = match answer {
            Err(status) => CallReply::Fault(status),
            Ok(stub) if stub.max_count.is_some() => {
                self.body.clear();
                self.body.extend_from_slice(stub.body);
                CallReply::Response
            }
            Ok(stub) => CallReply::Refused(stub.hresult),
        };
        let outcome = CallOutcome {
            reply,
            syntax: self.pending_syntax,
        };
        gathered.clear();
        self.partial_stub = gathered;
        Ok(Some(outcome))
    }
}
