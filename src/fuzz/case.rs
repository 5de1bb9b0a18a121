//! Fuzz cases: a valid session prefix (a bind), then the PDUs under test, each case made by
//! mutating one layer of a valid activation: the RPC header, the fragment sequence, the bind's
//! item lists, the NDR stub, the KMS plaintext (encrypted and MAC'd correctly afterwards so
//! that it reaches the host's KMS parser), or raw bytes. Sans-IO: the time is passed in and
//! the randomness comes from [`Rng`].

use core::fmt;

use crate::proto::client::message::{SentRequest, encode_request};
use crate::wire::Guid;
use crate::wire::kms::{FileTime, RequestBase, Version, WORKSTATION_UNITS, Workstation};
use crate::wire::ndr::{ActivationRequest, Syntax};
use crate::wire::rpc::{
    Bind, Body, ContextItem, Flags, HEADER_LEN, HeaderRepr, KMS_INTERFACE, NDR32, NDR64,
    PacketType, Pdu, Request, SyntaxId, emit_fragmented_request,
};

use super::rng::Rng;

/// The layer a case mutates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// Common header fields of the request PDU.
    RpcHeader,
    /// The request's fragment sequence.
    Fragments,
    /// The bind's (or an alter_context's) item lists.
    Bind,
    /// The NDR stub's counts, lengths and alignment.
    Ndr,
    /// The KMS request's plaintext fields.
    Kms,
    /// Random bytes anywhere in the request PDU.
    Raw,
}

impl Layer {
    /// Every layer, in the order cases cycle through them.
    pub const ALL: [Layer; 6] = [
        Layer::RpcHeader,
        Layer::Fragments,
        Layer::Bind,
        Layer::Ndr,
        Layer::Kms,
        Layer::Raw,
    ];

    /// The layer's name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::RpcHeader => "rpc-header",
            Layer::Fragments => "fragments",
            Layer::Bind => "bind",
            Layer::Ndr => "ndr",
            Layer::Kms => "kms",
            Layer::Raw => "raw",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A valid request a case starts from: a built-in example or one read from a capture.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    /// The request's plaintext.
    pub base: RequestBase,
}

impl Seed {
    /// The built-in seeds: the example request in each protocol version.
    pub fn builtin() -> Vec<Seed> {
        [Version::V4, Version::V5, Version::V6]
            .into_iter()
            .map(|v| Seed {
                base: RequestBase::example(v),
            })
            .collect()
    }
}

/// Context id of the NDR32 context in the prefix bind.
pub const CTX_NDR32: u16 = 0;
/// Context id of the NDR64 context in the prefix bind.
pub const CTX_NDR64: u16 = 1;
/// Call id of the prefix bind.
pub const BIND_CALL_ID: u32 = 1;
/// Call id of the request under test.
pub const REQUEST_CALL_ID: u32 = 2;
/// KMS's opnum (RequestActivation).
const OPNUM: u16 = 0;
/// The request PDU's fixed part after the common header: alloc_hint, context id, opnum.
const REQUEST_FIXED: usize = 8;

/// One fuzz case: what is sent on one fresh connection.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case's number in its run (with the seed, it regenerates the case).
    pub index: u64,
    /// The layer mutated.
    pub layer: Layer,
    /// What was changed, for a person.
    pub mutation: String,
    /// Sent first; one reply (or the close) is awaited before the rest.
    pub prefix: Vec<u8>,
    /// Sent back to back after the prefix's reply; then the connection is half-closed.
    pub pdus: Vec<Vec<u8>>,
    /// The unmutated prefix and PDUs, when the mutation kept their lengths (minimisation
    /// reverts bytes towards them).
    pub original: Option<(Vec<u8>, Vec<Vec<u8>>)>,
    /// The KMS request as encrypted, when a response to it can be verified (the version was
    /// left alone).
    pub sent: Option<SentRequest>,
}

impl Case {
    /// Every call id the case sends (replies must carry one of them).
    pub fn call_ids(&self) -> Vec<u32> {
        std::iter::once(&self.prefix)
            .chain(&self.pdus)
            .filter(|p| p.len() >= HEADER_LEN)
            .map(|p| u32::from_le_bytes([p[12], p[13], p[14], p[15]]))
            .collect()
    }

    /// Bytes that differ from the unmutated case (0 when lengths changed).
    pub fn changed_bytes(&self) -> usize {
        let Some((prefix, pdus)) = &self.original else {
            return 0;
        };
        let diff = |a: &[u8], b: &[u8]| a.iter().zip(b).filter(|(x, y)| x != y).count();
        diff(prefix, &self.prefix)
            + pdus
                .iter()
                .zip(&self.pdus)
                .map(|(a, b)| diff(a, b))
                .sum::<usize>()
    }
}

/// A bind (or alter_context) PDU.
pub fn bind_pdu(bind: &Bind, packet_type: PacketType, call_id: u32) -> Vec<u8> {
    let body = if packet_type == PacketType::AlterContext {
        Body::AlterContext(bind.clone())
    } else {
        Body::Bind(bind.clone())
    };
    let mut out = Vec::with_capacity(128);
    Pdu {
        header: HeaderRepr::new(packet_type, call_id),
        body,
        auth: &[],
    }
    .emit(&mut out);
    out
}

/// A bind offering the KMS interface in one transfer syntax on `context_id`. One item only:
/// a host that is offered NDR32 and NDR64 together may accept either (Windows and ours take
/// NDR64 and reject NDR32), and a case's bytes are fixed before it is sent.
fn bind_of(context_id: u16, transfer: SyntaxId) -> Bind {
    Bind {
        max_xmit_frag: crate::wire::rpc::WINDOWS_MAX_FRAG,
        max_recv_frag: crate::wire::rpc::WINDOWS_MAX_FRAG,
        assoc_group: 0,
        reserved: [0; 3],
        contexts: vec![ContextItem {
            context_id,
            reserved: 0,
            abstract_syntax: KMS_INTERFACE,
            transfer_syntaxes: vec![transfer],
        }],
    }
}

/// The bind of a valid session: NDR32 on context 0, which every host accepts.
pub fn valid_bind() -> Bind {
    bind_of(CTX_NDR32, NDR32)
}

/// The bind of a valid NDR64 session: NDR64 on context 1.
pub fn ndr64_bind() -> Bind {
    bind_of(CTX_NDR64, NDR64)
}

/// A single-fragment request PDU around `stub`.
pub fn request_pdu(call_id: u32, context_id: u16, stub: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + REQUEST_FIXED + stub.len());
    Pdu {
        header: HeaderRepr::new(PacketType::Request, call_id),
        body: Body::Request(Request {
            alloc_hint: stub.len() as u32,
            context_id,
            opnum: OPNUM,
            object: None,
            stub,
        }),
        auth: &[],
    }
    .emit(&mut out);
    out
}

/// The seed's request, re-stamped for a new machine at `now`, encrypted: the message and what
/// verifies its response.
pub fn fresh_message(base: &RequestBase, now: FileTime, rng: &mut Rng) -> (Vec<u8>, SentRequest) {
    let mut cmid = [0u8; 16];
    rng.fill(&mut cmid);
    // A version-4 random GUID, as Windows makes machine IDs.
    cmid[7] = (cmid[7] & 0x0f) | 0x40;
    cmid[8] = (cmid[8] & 0x3f) | 0x80;
    let base = base.restamped(Guid(cmid), base.workstation, now);
    let mut iv = [0u8; 16];
    rng.fill(&mut iv);
    let mut msg = Vec::with_capacity(300);
    let sent = encode_request(&base, iv, &mut msg);
    (msg, sent)
}

/// The stub of a request in `syntax`.
fn stub(syntax: Syntax, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 16);
    ActivationRequest::new(syntax, msg).emit(&mut out);
    out
}

/// A valid activation on a fresh connection (the liveness probe, and the starting point of
/// every case).
pub fn valid_case(seed: &Seed, now: FileTime, rng: &mut Rng) -> Case {
    let (msg, sent) = fresh_message(&seed.base, now, rng);
    Case {
        index: 0,
        layer: Layer::Kms,
        mutation: "none".into(),
        prefix: bind_pdu(&valid_bind(), PacketType::Bind, BIND_CALL_ID),
        pdus: vec![request_pdu(
            REQUEST_CALL_ID,
            CTX_NDR32,
            &stub(Syntax::Ndr32, &msg),
        )],
        original: None,
        sent: Some(sent),
    }
}

/// Case `index` of a run seeded with `seed`: the layer cycles, the rest is random.
pub fn generate(seed: u64, index: u64, seeds: &[Seed], now: FileTime) -> Case {
    let mut rng = Rng::for_case(seed, index);
    let layer = Layer::ALL[(index % Layer::ALL.len() as u64) as usize];
    let from = seeds[rng.below(seeds.len())];
    let mut case = valid_case(&from, now, &mut rng);
    case.index = index;
    case.layer = layer;
    let valid = (case.prefix.clone(), case.pdus.clone());
    let mut notes = Vec::new();
    match layer {
        Layer::RpcHeader => {
            let on_bind = rng.one_in(4);
            let pdu = if on_bind {
                &mut case.prefix
            } else {
                &mut case.pdus[0]
            };
            for _ in 0..1 + rng.below(2) {
                notes.push(mutate_header(pdu, &mut rng, !on_bind));
            }
            case.original = Some(valid);
        }
        Layer::Fragments => {
            let (pdus, note) = fragments(&case, &mut rng);
            case.pdus = pdus;
            notes.push(note);
        }
        Layer::Bind => {
            notes.push(mutate_bind(&mut case, &mut rng));
        }
        Layer::Ndr => {
            notes.push(mutate_ndr(&mut case, &from, now, &mut rng));
        }
        Layer::Kms => {
            notes.push(mutate_kms(&mut case, &from, now, &mut rng));
        }
        Layer::Raw => {
            let pdu = &mut case.pdus[0];
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let at = rng.below(pdu.len());
                pdu[at] = rng.byte();
            }
            notes.push(format!("{n} random bytes in the request PDU"));
            case.original = Some(valid);
        }
    }
    if layer != Layer::Kms {
        // The host decodes only what it can; a response can still be verified when the KMS
        // message went through untouched, but a mutated envelope may legitimately change it.
        case.sent = None;
    }
    case.mutation = notes.join("; ");
    case
}

/// Mutates one common-header field (or a request field) in place.
fn mutate_header(pdu: &mut [u8], rng: &mut Rng, is_request: bool) -> String {
    let len = pdu.len() as u16;
    let fields = if is_request { 11 } else { 8 };
    match rng.below(fields) {
        0 => {
            pdu[0] = {
                let any = rng.byte();
                rng.pick(&[4, 6, 0, 0xff, any])
            };
            format!("rpc_vers {}", pdu[0])
        }
        1 => {
            pdu[1] = {
                let any = rng.byte();
                rng.pick(&[1, 2, 0xff, any])
            };
            format!("rpc_vers_minor {}", pdu[1])
        }
        2 => {
            // Unknown types, and known ones where they do not belong.
            pdu[2] = {
                let any = rng.byte();
                rng.pick(&[
                    1, 4, 5, 6, 7, 8, 9, 10, 16, 20, 0xff, 0, 2, 3, 12, 13, 14, 15, 17, 18, 19, any,
                ])
            };
            format!("PDU type {}", pdu[2])
        }
        3 => {
            pdu[3] = if rng.one_in(2) {
                pdu[3] ^ (1 << rng.below(8))
            } else {
                rng.byte()
            };
            format!("pfc_flags 0x{:02x}", pdu[3])
        }
        4 => {
            let at = 4 + rng.below(4);
            pdu[at] = {
                let any = rng.byte();
                rng.pick(&[0x00, 0x01, 0x11, 0x20, 0xff, any])
            };
            format!("drep byte {} = 0x{:02x}", at - 4, pdu[at])
        }
        5 | 6 => {
            let v = rng.interesting_u16(len);
            pdu[8..10].copy_from_slice(&v.to_le_bytes());
            format!("frag_length {v} (PDU is {len} bytes)")
        }
        7 => {
            let v = {
                let any = rng.interesting_u16(len);
                rng.pick(&[len, len - 16, 8, 0xffff, any])
            };
            pdu[10..12].copy_from_slice(&v.to_le_bytes());
            format!("auth_length {v}")
        }
        8 => {
            let v = rng.interesting_u32(REQUEST_CALL_ID);
            pdu[12..16].copy_from_slice(&v.to_le_bytes());
            format!("call_id {v}")
        }
        9 => {
            let v = rng.interesting_u16(CTX_NDR64);
            pdu[20..22].copy_from_slice(&v.to_le_bytes());
            format!("p_cont_id {v}")
        }
        _ => {
            if rng.one_in(2) {
                let v = rng.interesting_u16(OPNUM);
                pdu[22..24].copy_from_slice(&v.to_le_bytes());
                format!("opnum {v}")
            } else {
                let v = rng.interesting_u32(len as u32);
                pdu[16..20].copy_from_slice(&v.to_le_bytes());
                format!("alloc_hint {v}")
            }
        }
    }
}

/// A fragment sequence for the case's request: many, missing first or last, overlapping,
/// interleaved or with lying flags.
fn fragments(case: &Case, rng: &mut Rng) -> (Vec<Vec<u8>>, String) {
    let whole = &case.pdus[0];
    let stub = &whole[HEADER_LEN + REQUEST_FIXED..];
    let max_frag = HEADER_LEN + REQUEST_FIXED + {
        let any = rng.below(stub.len());
        rng.pick(&[1, 2, 7, 16, 40, 100, 1 + any])
    };
    let mut bytes = Vec::new();
    emit_fragmented_request(
        &mut bytes,
        REQUEST_CALL_ID,
        Flags(0),
        CTX_NDR32,
        OPNUM,
        stub,
        max_frag,
    );
    let mut frags = split(&bytes);
    let n = frags.len();
    let note = match rng.below(8) {
        0 => format!("{n} fragments"),
        1 => {
            frags.remove(0);
            format!("{n} fragments, the first missing")
        }
        2 => {
            frags.pop();
            format!("{n} fragments, the last missing")
        }
        3 => {
            let i = rng.below(n);
            let f = frags[i].clone();
            frags.insert(i, f);
            format!("{n} fragments, fragment {i} twice")
        }
        4 if n > 1 => {
            let (i, j) = (rng.below(n), rng.below(n));
            frags.swap(i, j);
            format!("{n} fragments, {i} and {j} swapped")
        }
        5 => {
            let i = rng.below(n);
            frags[i][3] |= Flags::FIRST_FRAG.0 | Flags::LAST_FRAG.0;
            format!("{n} fragments, fragment {i} also says first and last")
        }
        6 => {
            let i = rng.below(n);
            let other = rng.interesting_u32(REQUEST_CALL_ID + 1);
            frags[i][12..16].copy_from_slice(&other.to_le_bytes());
            format!("{n} fragments, fragment {i} with call id {other}")
        }
        _ => {
            // Many calls begun and never finished.
            let count = 1 + rng.below(40);
            let first = frags[0].clone();
            frags = (0..count)
                .map(|k| {
                    let mut f = first.clone();
                    f[3] &= !Flags::LAST_FRAG.0;
                    f[12..16].copy_from_slice(&(REQUEST_CALL_ID + k as u32).to_le_bytes());
                    f
                })
                .collect();
            format!("{count} first fragments of different calls, none finished")
        }
    };
    (frags, note)
}

/// Splits well-framed PDUs (the fuzzer's own output) apart.
fn split(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while bytes.len() >= HEADER_LEN {
        let len =
            usize::from(u16::from_le_bytes([bytes[8], bytes[9]])).clamp(HEADER_LEN, bytes.len());
        out.push(bytes[..len].to_vec());
        bytes = &bytes[len..];
    }
    out
}

/// Mutates the bind's item lists (or adds an alter_context with mutated ones).
fn mutate_bind(case: &mut Case, rng: &mut Rng) -> String {
    let mut bind = valid_bind();
    let unknown = SyntaxId {
        uuid: {
            let mut u = [0u8; 16];
            rng.fill(&mut u);
            Guid(u)
        },
        version: rng.next_u64() as u32,
    };
    let note = match rng.below(8) {
        0 => {
            bind.contexts.clear();
            "no context items".to_string()
        }
        1 => {
            let n = 2 + rng.below(40);
            let item = bind.contexts[0].clone();
            bind.contexts = (0..n).map(|_| item.clone()).collect();
            format!("{n} items with the same context id")
        }
        2 => {
            bind.contexts[0].transfer_syntaxes.clear();
            "an item with no transfer syntax".into()
        }
        3 => {
            let n = 2 + rng.below(30);
            bind.contexts[0].transfer_syntaxes = (0..n).map(|_| unknown).collect();
            format!("an item with {n} unknown transfer syntaxes")
        }
        4 => {
            bind.contexts[0].abstract_syntax = unknown;
            "an unknown interface on context 0".into()
        }
        5 => {
            bind.max_xmit_frag = rng.interesting_u16(16);
            bind.max_recv_frag = rng.interesting_u16(16);
            format!(
                "max_xmit_frag {} max_recv_frag {}",
                bind.max_xmit_frag, bind.max_recv_frag
            )
        }
        6 => {
            // The item count lies: patched after encoding.
            let n = rng.pick(&[0u8, 3, 200, 255]);
            let mut pdu = bind_pdu(&bind, PacketType::Bind, BIND_CALL_ID);
            pdu[HEADER_LEN + 8] = n;
            case.prefix = pdu;
            return format!("n_context_elem says {n} for 1 item");
        }
        _ => {
            // A valid bind, then an alter_context with mutated items before the request.
            let mut alter = valid_bind();
            alter.contexts[0].transfer_syntaxes = vec![unknown, NDR64];
            let mut second = ndr64_bind().contexts[0].clone();
            second.context_id = rng.interesting_u16(CTX_NDR64);
            alter.contexts.push(second);
            alter.assoc_group = rng.next_u64() as u32;
            case.pdus.insert(
                0,
                bind_pdu(&alter, PacketType::AlterContext, REQUEST_CALL_ID + 1),
            );
            return "an alter_context with an unknown transfer syntax and changed context ids"
                .into();
        }
    };
    case.prefix = bind_pdu(&bind, PacketType::Bind, BIND_CALL_ID);
    format!("bind with {note}")
}

/// Rewrites the request's stub: counts disagreeing, truncated, extended or misaligned, or
/// NDR64 counts on the NDR32 context.
fn mutate_ndr(case: &mut Case, seed: &Seed, now: FileTime, rng: &mut Rng) -> String {
    let (msg, _) = fresh_message(&seed.base, now, rng);
    let len = msg.len() as u32;
    let (context, syntax) = if rng.one_in(3) {
        (CTX_NDR64, Syntax::Ndr64)
    } else {
        (CTX_NDR32, Syntax::Ndr32)
    };
    if syntax == Syntax::Ndr64 {
        case.prefix = bind_pdu(&ndr64_bind(), PacketType::Bind, BIND_CALL_ID);
    }
    let mut req = ActivationRequest::new(syntax, &msg);
    let mut out = Vec::new();
    let note = match rng.below(6) {
        0 | 1 => {
            req.max_count = u64::from(rng.interesting_u32(len));
            if rng.one_in(2) {
                req.size = req.max_count;
            }
            req.emit(&mut out);
            format!(
                "{} size {} max count {} for {len} bytes",
                syntax.name(),
                req.size,
                req.max_count
            )
        }
        2 => {
            req.size = u64::from(rng.interesting_u32(len));
            req.emit(&mut out);
            format!("{} size {} for {len} bytes", syntax.name(), req.size)
        }
        3 => {
            req.emit(&mut out);
            let keep = rng.below(out.len());
            out.truncate(keep);
            format!("{} stub cut to {keep} bytes", syntax.name())
        }
        4 => {
            req.emit(&mut out);
            let extra = 1 + rng.below(64);
            out.extend((0..extra).map(|_| rng.byte()));
            format!(
                "{} stub with {extra} bytes after the message",
                syntax.name()
            )
        }
        _ => {
            let pad = 1 + rng.below(7);
            out.extend((0..pad).map(|_| 0));
            req.emit(&mut out);
            format!("{} stub misaligned by {pad} bytes", syntax.name())
        }
    };
    case.pdus = vec![request_pdu(REQUEST_CALL_ID, context, &out)];
    note
}

/// Mutates the KMS plaintext, then encrypts and MACs it as a client would, so that the host's
/// KMS parser sees the mutation.
fn mutate_kms(case: &mut Case, seed: &Seed, now: FileTime, rng: &mut Rng) -> String {
    let mut base = seed.base;
    let mut verifiable = true;
    let random_guid = |rng: &mut Rng| {
        let mut g = [0u8; 16];
        rng.fill(&mut g);
        Guid(g)
    };
    let note = match rng.below(11) {
        0 => {
            base.version.minor = rng.interesting_u16(0);
            if rng.one_in(2) {
                base.version.major = {
                    let any = rng.interesting_u16(6);
                    rng.pick(&[0, 1, 3, 7, 0xffff, any])
                };
            }
            verifiable = false;
            format!("version {}.{}", base.version.major, base.version.minor)
        }
        1 => {
            base.vm_info = rng.interesting_u32(1);
            base.license_status = rng.interesting_u32(6);
            format!(
                "vm_info {} license status {}",
                base.vm_info, base.license_status
            )
        }
        2 => {
            base.binding_expiration = rng.interesting_u32(43200);
            format!("binding expiration {}", base.binding_expiration)
        }
        3 => {
            match rng.below(3) {
                0 => base.app_id = random_guid(rng),
                1 => base.sku_id = random_guid(rng),
                _ => {
                    base.kms_id = if rng.one_in(2) {
                        Guid::NIL
                    } else {
                        random_guid(rng)
                    }
                }
            }
            "application, SKU or KMS ID changed".into()
        }
        4 => {
            base.required_clients = rng.interesting_u32(25);
            format!("required clients {}", base.required_clients)
        }
        5 => {
            base.client_time = FileTime(match rng.below(4) {
                0 => 0,
                1 => u64::MAX,
                2 => now.0.wrapping_add(rng.next_u64() % (1 << 40)),
                _ => rng.next_u64(),
            });
            format!("client time {}", base.client_time.0)
        }
        6 => {
            base.previous_cmid = random_guid(rng);
            "previous machine ID set".into()
        }
        7 | 8 => {
            // Every unit non-zero: no terminator anywhere in the 64 units.
            let mut units = [0u16; WORKSTATION_UNITS];
            for u in &mut units {
                *u = {
                    let any = rng.next_u64();
                    rng.pick(&[0x41, 0xD800, 0xFFFF, 0x20, (any as u16).max(1)])
                };
            }
            base.workstation = Workstation(units);
            "workstation name without a NUL".into()
        }
        9 => {
            base.workstation = Workstation::new("");
            "empty workstation name".into()
        }
        _ => {
            // Sizes: the message cut or extended after encryption (the stub's counts follow).
            let (mut msg, _) = fresh_message(&base, now, rng);
            let new_len = match rng.below(3) {
                0 => rng.below(msg.len()),
                1 => msg.len() + 1 + rng.below(64),
                _ => msg.len() + 16,
            };
            msg.resize(new_len, 0);
            case.pdus = vec![request_pdu(
                REQUEST_CALL_ID,
                CTX_NDR32,
                &stub(Syntax::Ndr32, &msg),
            )];
            case.sent = None;
            return format!("KMS message of {new_len} bytes");
        }
    };
    let (msg, sent) = fresh_message(&base, now, rng);
    case.pdus = vec![request_pdu(
        REQUEST_CALL_ID,
        CTX_NDR32,
        &stub(Syntax::Ndr32, &msg),
    )];
    case.sent = verifiable.then_some(sent);
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_generation_is_deterministic_and_covers_every_layer() {
        let seeds = Seed::builtin();
        let now = FileTime::from_unix_secs(1_795_492_182);
        let mut layers = std::collections::BTreeSet::new();
        for i in 0..600 {
            let a = generate(9, i, &seeds, now);
            let b = generate(9, i, &seeds, now);
            assert_eq!((&a.prefix, &a.pdus), (&b.prefix, &b.pdus));
            assert!(!a.pdus.is_empty() || a.layer == Layer::Fragments);
            layers.insert(a.layer);
        }
        assert_eq!(layers.len(), Layer::ALL.len());
    }

    #[test]
    fn test_valid_case_parses() {
        let mut rng = Rng::for_case(1, 0);
        let case = valid_case(
            &Seed::builtin()[2],
            FileTime::from_unix_secs(1_795_492_182),
            &mut rng,
        );
        assert!(Pdu::parse(&case.prefix).is_ok());
        assert!(Pdu::parse(&case.pdus[0]).is_ok());
        assert_eq!(case.call_ids(), vec![BIND_CALL_ID, REQUEST_CALL_ID]);
    }
}
