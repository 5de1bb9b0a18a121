//! Carrying out one case's steps against a host: connections, binds, activation calls, raw
//! bytes and fingerprint probes, each turned into an [`Observed`] and compared with the step's
//! expectations (probes hand what they saw to [`fingerprint`] for judging). Every value comes
//! parsed from the vectors; sockets are `net::raw`'s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};

use crate::clock::VirtualClock;
use crate::epid::{Epid, YearDay};
use crate::net::raw::{RawConn, Received};
use crate::proto::client::checks::{ReplyHead, check_bind_reply, check_response};
use crate::proto::client::message::{ResponseBuf, decode_response, encode_request};
use crate::wire::Guid;
use crate::wire::kms::{FileTime, RequestBase, Version, Workstation};
use crate::wire::ndr::{ActivationRequest, ActivationResponse, Syntax};
use crate::wire::rpc::{
    AckResult, Bind, Body, ContextItem, Flags, Header, HeaderRepr, KMS_INTERFACE, NDR32, NDR64,
    PacketType, Pdu, Request, SyntaxId, emit_fragmented_request,
};

use super::expect::{BindObs, EvalCtx, KmsObs, Mismatch, Observed, evaluate};
use super::fingerprint::{self, Evidence, Tell};
use super::vector::{
    ActivateStep, BindPdu, BindStep, ConcurrentStep, DEFAULT_PRODUCT, Expect, Machine, Payload,
    Probe, ReplyKind, RequestSpec, SendStep, Step, Template, Transfer,
};

/// The machine ID every request without a named machine uses, so that a run adds at most one
/// client per application to a real host's table (and renews it on later runs).
pub const PROBE_CMID: Guid = Guid::from_str_const("6b6d7368-6172-4e65-8573-636f6e666f72");
/// The workstation name of the probe machine.
pub const PROBE_WORKSTATION: &str = "kmsharness-conform.invalid";
/// Windows numbers its first call 2 (every captured bind).
const FIRST_CALL_ID: u32 = 2;

/// Where the cases run.
#[derive(Debug, Clone)]
pub struct Env {
    /// The host.
    pub addr: SocketAddr,
    /// The host's virtual clock, when it runs in-process.
    pub clock: Option<Arc<VirtualClock>>,
    /// Longest TCP handshake.
    pub connect_timeout: Duration,
    /// Longest wait for a reply the host should send, when the step sets none.
    pub read_timeout: Duration,
    /// Factor on every limit a case sets on how soon the host answers (see
    /// `RunConfig::time_scale`).
    pub time_scale: u32,
}

impl Env {
    /// The clients' clock: the system clock, moved with the host's virtual clock.
    pub fn client_now(&self) -> FileTime {
        let offset = self.clock.as_ref().map_or(0, |c| c.offset_secs());
        let now = crate::clock::now_filetime();
        let moved = now.unix_secs().saturating_add(offset).max(0);
        FileTime::from_unix_secs(u64::try_from(moved).unwrap_or(0))
    }

    /// How long to wait for what `expect` is about: the step's `within_ms`, stretched by the
    /// time scale when it limits how soon a reply must come (not when it is how long silence
    /// must last), or the read timeout.
    pub fn reply_wait(&self, expect: &Expect) -> Duration {
        match expect.within {
            None => self.read_timeout,
            Some(w) if expect.accepts_silence() => w,
            Some(w) => w.saturating_mul(self.time_scale.max(1)),
        }
    }
}

/// One connection of a case.
#[derive(Debug)]
pub struct Conn {
    raw: RawConn,
    next_call_id: u32,
    /// Accepted presentation contexts.
    contexts: Vec<(u16, Syntax)>,
    calls: u32,
}

impl Conn {
    /// Connects.
    pub async fn connect(env: &Env) -> Result<Conn, String> {
        let raw = RawConn::connect(env.addr, env.connect_timeout)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Conn {
            raw,
            next_call_id: FIRST_CALL_ID,
            contexts: Vec::new(),
            calls: 0,
        })
    }

    /// TCP handshake time.
    pub fn rtt(&self) -> Duration {
        self.raw.handshake()
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.raw
            .send(bytes)
            .await
            .map_err(|e| format!("send failed: {e}"))
    }

    /// Waits up to `within` for the next PDU.
    async fn next(&mut self, within: Duration) -> Received {
        self.raw.next_pdu(within).await
    }

    fn take_call_id(&mut self, given: Option<u32>) -> u32 {
        let id = given.unwrap_or(self.next_call_id);
        self.next_call_id = id.wrapping_add(1);
        id
    }

    /// The syntax of a context, if it was accepted.
    fn syntax_of(&self, ctx: u16) -> Option<Syntax> {
        self.contexts
            .iter()
            .find(|(c, _)| *c == ctx)
            .map(|(_, s)| *s)
    }
}

/// The presentation contexts a bind step proposes.
fn context_items(step: &BindStep) -> Vec<ContextItem> {
    if !step.contexts.is_empty() {
        return step
            .contexts
            .iter()
            .map(|c| ContextItem {
                context_id: c.id,
                reserved: 0,
                abstract_syntax: c.interface.0,
                transfer_syntaxes: c.transfer.iter().map(|t| t.0).collect(),
            })
            .collect();
    }
    step.offer
        .iter()
        .enumerate()
        .map(|(i, t)| ContextItem {
            context_id: i as u16,
            reserved: 0,
            abstract_syntax: KMS_INTERFACE,
            transfer_syntaxes: vec![t.0],
        })
        .collect()
}

/// The state of one case as it runs.
#[derive(Debug)]
pub struct CaseRun<'e> {
    env: &'e Env,
    case_id: String,
    conns: HashMap<String, Conn>,
    machines: HashMap<String, Guid>,
    labels: HashMap<String, KmsObs>,
    assoc: HashMap<String, u32>,
    /// Tells found by fingerprint probes.
    pub evidence: Vec<Evidence>,
    rng: rand::rngs::StdRng,
}

impl<'e> CaseRun<'e> {
    /// A case about to run.
    pub fn new(env: &'e Env, case_id: &str) -> CaseRun<'e> {
        CaseRun {
            env,
            case_id: case_id.to_owned(),
            conns: HashMap::new(),
            machines: HashMap::new(),
            labels: HashMap::new(),
            assoc: HashMap::new(),
            evidence: Vec::new(),
            rng: rand::rngs::StdRng::seed_from_u64(rand::random()),
        }
    }

    /// Records a tell as evidence; the mismatch it makes of the probe's step.
    fn tell(&mut self, tell: Tell) -> Mismatch {
        self.evidence.push(Evidence {
            case: self.case_id.clone(),
            observation: tell.observation,
            suggests: tell.suggests.map(str::to_owned),
        });
        Mismatch::new(tell.what, tell.expected, tell.actual)
    }

    fn eval(&self, expect: &Expect, obs: &Observed, default: &[ReplyKind]) -> Vec<Mismatch> {
        let ctx = EvalCtx {
            labels: &self.labels,
            assoc: &self.assoc,
            port: self.env.addr.port(),
            default_reply: default,
            time_scale: self.env.time_scale,
        };
        evaluate(expect, obs, &ctx)
    }

    /// Carries out one step; the mismatches it found (empty when it passed).
    pub async fn step(&mut self, step: &Step) -> Vec<Mismatch> {
        match step {
            Step::Connect(s) => match Conn::connect(self.env).await {
                Ok(c) => {
                    self.conns.insert(s.conn.clone(), c);
                    Vec::new()
                }
                Err(e) => vec![Mismatch::new("connect", "a TCP connection", e)],
            },
            Step::Open(s) => match self.open(&s.conn, s.ndr64, s.btfn, s.multiplex).await {
                Ok(()) => Vec::new(),
                Err(e) => vec![e],
            },
            Step::Bind(b) => self.bind_step(b).await,
            Step::Activate(a) => self.activate_step(a).await,
            Step::Send(s) => self.send_step(s).await,
            Step::Receive(r) => {
                let within = self.env.reply_wait(&r.expect);
                let Some(c) = self.conns.get_mut(&r.conn) else {
                    return vec![no_conn(&r.conn)];
                };
                let start = Instant::now();
                let mut obs = observe_pdu(c.next(within).await);
                obs.elapsed = start.elapsed();
                self.eval(&r.expect, &obs, &[])
            }
            Step::Close(s) => {
                self.conns.remove(&s.conn);
                Vec::new()
            }
            Step::Wait(w) => {
                tokio::time::sleep(w.pause).await;
                Vec::new()
            }
            Step::AdvanceClock(a) => match &self.env.clock {
                Some(c) => {
                    c.advance(a.secs);
                    Vec::new()
                }
                None => vec![Mismatch::new(
                    "advance_clock",
                    "a host with a virtual clock",
                    "the host runs on its own clock",
                )],
            },
            Step::Concurrent(c) => self.concurrent(c).await,
            Step::Fingerprint(f) => match self.probe(f.probe, &f.conn).await {
                Ok(tells) => tells,
                Err(m) => vec![m],
            },
        }
    }

    /// Opens `conn` as Windows does unless it is open already.
    pub async fn ensure_open(&mut self, conn: &str) -> Result<(), Mismatch> {
        if self.conns.contains_key(conn) {
            return Ok(());
        }
        self.open(conn, true, true, true).await
    }

    /// Whether a call was made on `conn` already.
    pub fn conn_used(&self, conn: &str) -> bool {
        self.conns.get(conn).is_some_and(|c| c.calls > 0)
    }

    /// Whether `syntax` was negotiated on `conn`.
    pub fn has_syntax(&self, conn: &str, syntax: Syntax) -> bool {
        self.conns
            .get(conn)
            .is_some_and(|c| c.contexts.iter().any(|(_, s)| *s == syntax))
    }

    /// The association group of `conn`'s bind.
    pub fn assoc_of(&self, conn: &str) -> Option<u32> {
        self.assoc.get(conn).copied()
    }

    /// Connects and binds as Windows does.
    pub async fn open(
        &mut self,
        conn: &str,
        ndr64: bool,
        btfn: bool,
        multiplex: bool,
    ) -> Result<(), Mismatch> {
        let mut offer = vec![Transfer(NDR32)];
        if ndr64 {
            offer.push(Transfer(NDR64));
        }
        if btfn {
            offer.push(Transfer(SyntaxId::btfn(0x3)));
        }
        let step = BindStep {
            conn: conn.to_owned(),
            pdu: BindPdu::Bind,
            offer,
            contexts: Vec::new(),
            multiplex,
            max_frag: crate::wire::rpc::WINDOWS_MAX_FRAG,
            version_minor: 0,
            call_id: None,
            expect: Expect::default(),
        };
        self.conns.remove(conn);
        let (obs, _) = self.bind(&step).await;
        if !matches!(obs.kind, Some(ReplyKind::BindAck)) {
            return Err(Mismatch::new("bind", "bind_ack", obs.shown));
        }
        let has = |run: &Self, s| {
            run.conns
                .get(conn)
                .is_some_and(|c| c.contexts.iter().any(|(_, x)| *x == s))
        };
        if !has(self, Syntax::Ndr32) && has(self, Syntax::Ndr64) {
            let alter = BindStep {
                pdu: BindPdu::AlterContext,
                offer: vec![Transfer(NDR32)],
                ..step
            };
            let (obs, _) = self.bind(&alter).await;
            if !matches!(obs.kind, Some(ReplyKind::AlterContextResp)) {
                return Err(Mismatch::new(
                    "alter_context",
                    "alter_context_resp",
                    obs.shown,
                ));
            }
        }
        if !has(self, Syntax::Ndr32) && !has(self, Syntax::Ndr64) {
            return Err(Mismatch::new(
                "bind",
                "a KMS transfer syntax accepted",
                "none accepted",
            ));
        }
        Ok(())
    }

    async fn bind_step(&mut self, step: &BindStep) -> Vec<Mismatch> {
        let (obs, default) = self.bind(step).await;
        self.eval(&step.expect, &obs, &[default])
    }

    /// Sends a bind or alter_context and observes the reply; returns the reply kind a
    /// conforming host sends.
    async fn bind(&mut self, step: &BindStep) -> (Observed, ReplyKind) {
        let default = match step.pdu {
            BindPdu::Bind => ReplyKind::BindAck,
            BindPdu::AlterContext => ReplyKind::AlterContextResp,
        };
        let items = context_items(step);
        let within = self.env.reply_wait(&step.expect);
        if !self.conns.contains_key(&step.conn) {
            match Conn::connect(self.env).await {
                Ok(c) => {
                    self.conns.insert(step.conn.clone(), c);
                }
                Err(e) => return (Observed::error(e), default),
            }
        }
        let Some(c) = self.conns.get_mut(&step.conn) else {
            return (Observed::error("no connection"), default);
        };
        let call_id = c.take_call_id(step.call_id);
        let bind = Bind {
            max_xmit_frag: step.max_frag,
            max_recv_frag: step.max_frag,
            assoc_group: 0,
            reserved: [0; 3],
            contexts: items,
        };
        let pdu = Pdu {
            header: HeaderRepr {
                flags: Flags::FIRST_LAST.with(Flags::CONC_MPX, step.multiplex),
                version_minor: step.version_minor,
                ..HeaderRepr::new(
                    match step.pdu {
                        BindPdu::Bind => PacketType::Bind,
                        BindPdu::AlterContext => PacketType::AlterContext,
                    },
                    call_id,
                )
            },
            body: match step.pdu {
                BindPdu::Bind => Body::Bind(bind.clone()),
                BindPdu::AlterContext => Body::AlterContext(bind.clone()),
            },
            auth: &[],
        };
        let mut bytes = Vec::new();
        pdu.emit(&mut bytes);
        let start = Instant::now();
        if let Err(e) = c.send(&bytes).await {
            return (Observed::of(ReplyKind::Closed, e), default);
        }
        let got = c.next(within).await;
        let elapsed = start.elapsed();
        let raw = match &got {
            Received::Pdu(b) => Some(b.clone()),
            _ => None,
        };
        let mut obs = observe_pdu(got);
        obs.elapsed = elapsed;
        obs.rtt = c.rtt();
        if let (Some(b), Some(raw)) = (&mut obs.bind, raw) {
            b.offered_frag = step.max_frag;
            if let Ok(reply) = Pdu::parse(&raw) {
                obs.checks = check_bind_reply(&pdu, &reply).iter().copied().collect();
                for (item, res) in bind.contexts.iter().zip(&b.results) {
                    if res.result != AckResult::Acceptance {
                        continue;
                    }
                    let syntax = if res.transfer_syntax == NDR64 {
                        Syntax::Ndr64
                    } else if res.transfer_syntax == NDR32 {
                        Syntax::Ndr32
                    } else {
                        continue;
                    };
                    c.contexts.retain(|(id, _)| *id != item.context_id);
                    c.contexts.push((item.context_id, syntax));
                }
            }
            if obs.kind == Some(ReplyKind::BindAck) {
                self.assoc.insert(step.conn.clone(), b.assoc_group);
            }
        }
        (obs, default)
    }

    /// The client machine ID for a request.
    fn machine(&mut self, spec: &RequestSpec) -> Guid {
        match &spec.machine {
            Machine::Probe => PROBE_CMID,
            Machine::Fresh => Guid::new_v4(self.rng.random()),
            Machine::Named(name) => {
                let fresh = Guid::new_v4(self.rng.random());
                *self.machines.entry(name.clone()).or_insert(fresh)
            }
        }
    }

    /// Builds the KMS request base of an activation step.
    pub fn request_base(&mut self, spec: &RequestSpec) -> Result<RequestBase, String> {
        let sku = spec
            .sku()
            .ok_or(format!("the catalog has no {DEFAULT_PRODUCT:?}"))?;
        let version = spec.version.unwrap_or(Version {
            major: u16::from(sku.protocol().unwrap_or(6)),
            minor: 0,
        });
        let cmid = self.machine(spec);
        let workstation = if cmid == PROBE_CMID {
            PROBE_WORKSTATION.to_owned()
        } else {
            format!(
                "conform-{:04x}.kmsharness.invalid",
                self.rng.random::<u16>()
            )
        };
        let offset = spec.client_time_offset_secs;
        let now = self.env.client_now();
        let client_time = FileTime(
            (now.0 as i64).saturating_add(offset.saturating_mul(FileTime::TICKS_PER_SEC as i64))
                as u64,
        );
        Ok(RequestBase {
            version,
            vm_info: 0,
            license_status: spec.license_status.unwrap_or(2),
            binding_expiration: 43_200,
            app_id: spec
                .app_id
                .unwrap_or_else(|| sku.application().map_or(Guid::NIL, |a| a.id)),
            sku_id: sku.id,
            kms_id: spec.kms_id.unwrap_or(sku.kms),
            cmid,
            required_clients: spec
                .required_clients
                .unwrap_or_else(|| sku.class.threshold()),
            client_time,
            previous_cmid: Guid::NIL,
            workstation: Workstation::new(&workstation),
        })
    }

    async fn activate_step(&mut self, step: &ActivateStep) -> Vec<Mismatch> {
        if !self.conns.contains_key(&step.conn)
            && let Err(m) = self.open(&step.conn, true, true, true).await
        {
            return vec![m];
        }
        let mut fastest: Option<Duration> = None;
        let mut last = Observed::default();
        for i in 0..step.repeat.max(1) {
            if step.reconnect
                && (i > 0 || self.conn_used(&step.conn))
                && let Err(m) = self.open(&step.conn, true, true, true).await
            {
                return vec![m];
            }
            let obs = match self.activate_once(step).await {
                Ok(o) => o,
                Err(e) => return vec![Mismatch::new("activation request", "-", e)],
            };
            if obs.kind == Some(ReplyKind::Response) || obs.kind == Some(ReplyKind::Refused) {
                fastest = Some(fastest.map_or(obs.elapsed, |f| f.min(obs.elapsed)));
            }
            let last_one = i + 1 == step.repeat.max(1);
            if !last_one {
                // Earlier repetitions must at least be answered as the last one should be.
                let kinds = step
                    .expect
                    .reply
                    .as_ref()
                    .map_or(vec![ReplyKind::Response], |r| r.kinds());
                if !obs.kind.is_some_and(|k| kinds.contains(&k)) {
                    let mut m = self.eval(
                        &Expect {
                            reply: step.expect.reply.clone(),
                            hresult: step.expect.hresult,
                            ..Expect::default()
                        },
                        &obs,
                        &[ReplyKind::Response],
                    );
                    for x in &mut m {
                        x.what = format!("{} (request {} of {})", x.what, i + 1, step.repeat);
                    }
                    return m;
                }
            }
            last = obs;
        }
        if let Some(f) = fastest {
            last.elapsed = f;
        }
        let result = self.eval(&step.expect, &last, &[ReplyKind::Response]);
        if let (Some(label), Some(k)) = (&step.label, &last.kms) {
            self.labels.insert(label.clone(), k.clone());
        }
        result
    }

    /// One activation call; the observation of its reply.
    pub async fn activate_once(&mut self, step: &ActivateStep) -> Result<Observed, String> {
        let base = self.request_base(&step.request)?;
        let mut kms = Vec::with_capacity(260);
        let sent = encode_request(&base, self.rng.random(), &mut kms);
        let read_timeout = self.env.reply_wait(&step.expect);
        let c = self
            .conns
            .get_mut(&step.conn)
            .ok_or_else(|| format!("no connection {:?}", step.conn))?;
        let pick = |s: Syntax| c.contexts.iter().find(|(_, x)| *x == s).map(|(id, _)| *id);
        let asked = step.syntax.map(|s| s.syntax());
        let (context_id, syntax) = match (step.context_id, asked) {
            (Some(id), _) => (
                id,
                c.syntax_of(id).unwrap_or(asked.unwrap_or(Syntax::Ndr32)),
            ),
            (None, Some(s)) => {
                let id = pick(s).ok_or(format!("{s:?} was not negotiated on this connection"))?;
                (id, s)
            }
            (None, None) => {
                // Windows: the first call over NDR32, later ones over NDR64 when negotiated.
                let ndr32 = pick(Syntax::Ndr32);
                let ndr64 = pick(Syntax::Ndr64);
                match (ndr32, ndr64) {
                    (Some(a), _) if c.calls == 0 || ndr64.is_none() => (a, Syntax::Ndr32),
                    (_, Some(b)) => (b, Syntax::Ndr64),
                    (None, None) => (0, Syntax::Ndr32),
                    (Some(a), None) => (a, Syntax::Ndr32),
                }
            }
        };
        let declared = (kms.len() as i64 + step.stub_len_delta).max(0) as u64;
        let mut stub = Vec::with_capacity(kms.len() + 16 + step.stub_trailing);
        ActivationRequest {
            syntax,
            size: declared,
            max_count: declared,
            body: &kms,
        }
        .emit(&mut stub);
        stub.resize(stub.len() + step.stub_trailing, 0);
        let call_id = c.take_call_id(step.call_id);
        let flags = Flags(step.flags.unwrap_or(Flags::FIRST_LAST.0));
        let request_pdu = Pdu {
            header: HeaderRepr {
                flags,
                ..HeaderRepr::new(PacketType::Request, call_id)
            },
            body: Body::Request(Request {
                alloc_hint: stub.len() as u32,
                context_id,
                opnum: step.opnum,
                object: None,
                stub: &stub,
            }),
            auth: &[],
        };
        let mut bytes = Vec::new();
        match step.fragment_size {
            Some(max) => emit_fragmented_request(
                &mut bytes,
                call_id,
                Flags(flags.0 & !Flags::FIRST_LAST.0),
                context_id,
                step.opnum,
                &stub,
                max,
            ),
            None => request_pdu.emit(&mut bytes),
        }
        c.calls += 1;
        let start = Instant::now();
        if let Err(e) = c.send(&bytes).await {
            return Ok(Observed::of(ReplyKind::Closed, e));
        }
        let (mut obs, body) = read_call_reply(c, &request_pdu, syntax, read_timeout).await;
        obs.elapsed = start.elapsed();
        obs.rtt = c.rtt();
        if let Some(body) = body {
            let mut buf = ResponseBuf::default();
            match decode_response(&sent, &body, &mut buf) {
                Err(e) => {
                    obs.kind = None;
                    obs.shown = format!("an undecodable KMS response: {e}");
                }
                Ok((resp, checks)) => {
                    obs.checks.extend(checks.iter().copied());
                    obs.kms = Some(KmsObs {
                        epid: resp.base.epid_string(),
                        hwid: resp.trailer.and_then(|t| t.v6).map(|v| v.hwid),
                        count: resp.base.count,
                        activation_interval: resp.base.activation_interval,
                        renewal_interval: resp.base.renewal_interval,
                        kms_id: base.kms_id,
                    });
                }
            }
        }
        Ok(obs)
    }

    async fn send_step(&mut self, step: &SendStep) -> Vec<Mismatch> {
        if !self.conns.contains_key(&step.conn) {
            match Conn::connect(self.env).await {
                Ok(c) => {
                    self.conns.insert(step.conn.clone(), c);
                }
                Err(e) => return vec![Mismatch::new("connect", "a TCP connection", e)],
            }
        }
        let bytes = match self.raw_bytes(step) {
            Ok(b) => b,
            Err(e) => return vec![Mismatch::new("send", "-", format!("vector error: {e}"))],
        };
        let within = self.env.reply_wait(&step.expect);
        let Some(c) = self.conns.get_mut(&step.conn) else {
            return vec![no_conn(&step.conn)];
        };
        let start = Instant::now();
        let hung_up =
            match step.byte_delay {
                Some(pause) => c.raw.send_slowly(&bytes, pause).await.err().map(|(i, e)| {
                    format!("the host hung up after {i} of {} bytes: {e}", bytes.len())
                }),
                None => c.send(&bytes).await.err(),
            };
        if step.shutdown {
            c.raw.shutdown().await;
        }
        let sent_at = start.elapsed();
        let obs = match hung_up {
            Some(e) => Observed::of(ReplyKind::Closed, e),
            None => {
                let mut o = observe_pdu(c.next(within).await);
                o.elapsed = start.elapsed().saturating_sub(sent_at);
                o.rtt = c.rtt();
                o
            }
        };
        self.eval(&step.expect, &obs, &[])
    }

    fn raw_bytes(&mut self, step: &SendStep) -> Result<Vec<u8>, String> {
        let mut one = match &step.payload {
            Payload::Bytes(b) => b.clone(),
            Payload::Template(t) => self.template(&step.conn, *t)?,
        };
        for p in &step.patch {
            let end = p.offset + p.hex.0.len();
            if end > one.len() {
                return Err(format!(
                    "patch at {} runs past {} bytes",
                    p.offset,
                    one.len()
                ));
            }
            one[p.offset..end].copy_from_slice(&p.hex.0);
        }
        let mut bytes = Vec::with_capacity(one.len() * step.repeat as usize);
        for _ in 0..step.repeat {
            bytes.extend_from_slice(&one);
        }
        if let Some(n) = step.truncate {
            bytes.truncate(n);
        }
        Ok(bytes)
    }

    fn template(&mut self, conn: &str, template: Template) -> Result<Vec<u8>, String> {
        use crate::proto::client::session::{ClientRpcOptions, ClientSession};
        let mut out = Vec::new();
        match template {
            Template::Bind => ClientSession::new(ClientRpcOptions::default()).bind(&mut out),
            Template::BindNdr32 => ClientSession::new(ClientRpcOptions {
                ndr64: false,
                btfn: false,
                ..ClientRpcOptions::default()
            })
            .bind(&mut out),
            Template::Request => {
                let base = self.request_base(&RequestSpec::default())?;
                let mut kms = Vec::new();
                encode_request(&base, self.rng.random(), &mut kms);
                let mut stub = Vec::new();
                ActivationRequest::new(Syntax::Ndr32, &kms).emit(&mut stub);
                let call_id = self
                    .conns
                    .get_mut(conn)
                    .map_or(FIRST_CALL_ID, |c| c.take_call_id(None));
                Pdu {
                    header: HeaderRepr::new(PacketType::Request, call_id),
                    body: Body::Request(Request {
                        alloc_hint: stub.len() as u32,
                        context_id: 0,
                        opnum: 0,
                        object: None,
                        stub: &stub,
                    }),
                    auth: &[],
                }
                .emit(&mut out);
            }
        }
        Ok(out)
    }

    /// Opens `n` connections at once, each binding and activating; all stay open until every
    /// one is done.
    async fn concurrent(&mut self, step: &ConcurrentStep) -> Vec<Mismatch> {
        let (n, deadline) = (
            step.connections,
            step.within.saturating_mul(self.env.time_scale.max(1)),
        );
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let env = self.env.clone();
            set.spawn(async move {
                let mut run = CaseRun::new(&env, "concurrent");
                let result = match run.open("main", true, true, true).await {
                    Err(m) => Err(format!("{}: {}", m.what, m.actual)),
                    Ok(()) => match run.activate_once(&ActivateStep::plain()).await {
                        Ok(o) if o.kind == Some(ReplyKind::Response) => Ok(()),
                        Ok(o) => Err(o.shown),
                        Err(e) => Err(e),
                    },
                };
                // The connection goes back to the step, which holds it until all are done.
                (result, run.conns.remove("main"))
            });
        }
        let mut held = Vec::new();
        let mut ok = 0u32;
        let mut first_error = None;
        let collected = tokio::time::timeout(deadline, async {
            while let Some(r) = set.join_next().await {
                match r {
                    Ok((Ok(()), conn)) => {
                        ok += 1;
                        held.push(conn);
                    }
                    Ok((Err(e), conn)) => {
                        first_error.get_or_insert(e);
                        held.push(conn);
                    }
                    Err(e) => {
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
        })
        .await;
        let elapsed = start.elapsed();
        if collected.is_err() {
            set.abort_all();
            first_error.get_or_insert(format!("not all done within {} ms", deadline.as_millis()));
        }
        drop(held);
        let mut obs = Observed::error(format!(
            "{ok} answered in {} ms{}",
            elapsed.as_millis(),
            first_error.map_or(String::new(), |e| format!("; first failure: {e}"))
        ));
        obs.ok_of = Some((ok, n));
        self.eval(&Expect::default(), &obs, &[])
    }
}

// ---------------------------------------------------------------------------------------------
// Fingerprint probes: each makes its observations and hands them to `fingerprint` to judge.

impl CaseRun<'_> {
    /// Runs a probe on connection `conn` (opened as Windows does if needed): a mismatch per
    /// tell found, or the mismatch that stopped the probe.
    async fn probe(&mut self, probe: Probe, conn: &str) -> Result<Vec<Mismatch>, Mismatch> {
        let tell = match probe {
            Probe::PublishedHwid => {
                self.ensure_open(conn).await?;
                let obs = self.granted(conn, RequestSpec::default()).await?;
                fingerprint::hwid_tell(obs.hwid)
            }
            Probe::EpidBuildVsNdr64 => {
                self.open(conn, true, false, true).await?;
                let ndr64 = self.has_syntax(conn, Syntax::Ndr64);
                let epid = parse_epid(&self.granted(conn, RequestSpec::default()).await?)?;
                fingerprint::epid_build_tell(&epid, ndr64)
            }
            Probe::EpidDate => {
                self.ensure_open(conn).await?;
                let epid = parse_epid(&self.granted(conn, RequestSpec::default()).await?)?;
                let (y, m, d, ..) = self.env.client_now().to_utc();
                let today = YearDay::from_ymd(y as u16, m as u8, d as u8);
                fingerprint::epid_date_tell(&epid, today)
            }
            Probe::ConstantAssocGroup => {
                let second = format!("{conn}.second");
                self.open(conn, true, true, true).await?;
                self.open(&second, true, true, true).await?;
                fingerprint::assoc_groups_tell(self.assoc_of(conn), self.assoc_of(&second))
            }
            Probe::CountMirrorsPolicy => {
                self.ensure_open(conn).await?;
                let mut counts = Vec::new();
                for n in [7u32, 9] {
                    let request = RequestSpec {
                        machine: Machine::Fresh,
                        required_clients: Some(n),
                        ..RequestSpec::default()
                    };
                    counts.push((n, self.granted(conn, request).await?.count));
                }
                fingerprint::count_tell(&counts)
            }
        };
        Ok(tell.map(|t| self.tell(t)).into_iter().collect())
    }

    /// One granted activation on a new connection (as Windows clients make them, and as hosts
    /// that close after each response need).
    async fn granted(&mut self, conn: &str, request: RequestSpec) -> Result<KmsObs, Mismatch> {
        if self.conn_used(conn) {
            self.open(conn, true, true, true).await?;
        } else {
            self.ensure_open(conn).await?;
        }
        let step = ActivateStep {
            conn: conn.to_owned(),
            request,
            ..ActivateStep::plain()
        };
        let obs = self
            .activate_once(&step)
            .await
            .map_err(|e| Mismatch::new("activation", "-", e))?;
        match obs.kms {
            Some(k) if obs.kind == Some(ReplyKind::Response) => Ok(k),
            _ => Err(Mismatch::new("activation", "a KMS response", obs.shown)),
        }
    }
}

fn parse_epid(kms: &KmsObs) -> Result<Epid, Mismatch> {
    kms.epid
        .parse::<Epid>()
        .map_err(|e| Mismatch::new("ePID", "a well-formed ePID", format!("{:?}: {e}", kms.epid)))
}

fn no_conn(name: &str) -> Mismatch {
    Mismatch::new(
        format!("connection {name:?}"),
        "open",
        "not opened by an earlier step (a vector error)",
    )
}

/// Classifies whatever came back when nothing in particular was asked.
fn observe_pdu(got: Received) -> Observed {
    match got {
        Received::Closed(e) => Observed::of(ReplyKind::Closed, format!("the host {e}")),
        Received::Silent => Observed::of(ReplyKind::Silent, "silence"),
        Received::Garbage(e) => Observed::error(format!("bytes that are not RPC: {e}")),
        Received::Pdu(bytes) => {
            let pdu = match Pdu::parse(&bytes) {
                Ok(p) => p,
                Err(e) => return Observed::error(format!("an undecodable PDU: {e}")),
            };
            let name = crate::wire::rpc::pdu_name(pdu.header.packet_type);
            let mut obs = Observed::error(name);
            obs.flags = Some(pdu.header.flags.0);
            match &pdu.body {
                Body::BindAck(a) | Body::AlterContextResp(a) => {
                    obs.kind = Some(if pdu.header.packet_type == PacketType::BindAck {
                        ReplyKind::BindAck
                    } else {
                        ReplyKind::AlterContextResp
                    });
                    obs.bind = Some(BindObs {
                        results: a.results.clone(),
                        assoc_group: a.assoc_group,
                        secondary: a.secondary_address.to_vec(),
                        max_xmit: a.max_xmit_frag,
                        max_recv: a.max_recv_frag,
                        offered_frag: u16::MAX,
                    });
                }
                Body::BindNak(n) => {
                    obs.kind = Some(ReplyKind::BindNak);
                    obs.nak_reason = Some(u16::from(n.reason));
                }
                Body::Fault(f) => {
                    obs.kind = Some(ReplyKind::Fault);
                    obs.fault_status = Some(u32::from(f.status));
                    obs.shown = format!("fault {}", super::expect::show_fault(f.status.into()));
                }
                Body::Response(r) => match ActivationResponse::parse(Syntax::Ndr32, r.stub) {
                    Ok(s) if s.max_count.is_none() => {
                        obs.kind = Some(ReplyKind::Refused);
                        obs.hresult = Some(s.hresult);
                        obs.shown = format!("refused {}", s.hresult);
                    }
                    _ => obs.kind = Some(ReplyKind::Response),
                },
                _ => {}
            }
            obs
        }
    }
}

/// Reads the reply to an activation call (every fragment) and makes the RPC checks.
async fn read_call_reply(
    c: &mut Conn,
    request: &Pdu<'_>,
    syntax: Syntax,
    within: Duration,
) -> (Observed, Option<Vec<u8>>) {
    let mut stub = Vec::new();
    let mut first: Option<(HeaderRepr, u16, u8)> = None;
    let mut combined = Flags(0);
    loop {
        let bytes = match c.next(within).await {
            Received::Pdu(b) => b,
            other => {
                let mut o = observe_pdu(other);
                if first.is_some() {
                    o.shown = format!("{} after part of a fragmented reply", o.shown);
                    o.kind = None;
                }
                return (o, None);
            }
        };
        let Ok(header) = Header::new_checked(&bytes[..]) else {
            return (Observed::error("an undecodable reply header"), None);
        };
        let real = header.packet_type();
        if real == PacketType::Fault {
            return (observe_pdu(Received::Pdu(bytes)), None);
        }
        // Decode as the response it should be even when the type is wrong, so that the wrong
        // type shows as a failed check.
        let mut patched = bytes.clone();
        patched[2] = PacketType::Response.into();
        let pdu = match Pdu::parse(&patched) {
            Ok(p) => p,
            Err(e) => {
                let shown = format!("an undecodable {}: {e}", crate::wire::rpc::pdu_name(real));
                return (Observed::error(shown), None);
            }
        };
        let Body::Response(r) = &pdu.body else {
            return (Observed::error("an undecodable reply"), None);
        };
        let flags = header.flags();
        if first.is_none() {
            first = Some((
                HeaderRepr {
                    packet_type: real,
                    ..pdu.header
                },
                r.context_id,
                r.cancel_count,
            ));
            combined = flags;
        } else {
            combined = Flags(combined.0 | (flags.0 & !Flags::FIRST_FRAG.0));
        }
        stub.extend_from_slice(r.stub);
        if flags.contains(Flags::LAST_FRAG) || stub.len() > 64 * 1024 {
            break;
        }
    }
    let Some((h, ctx, cancel)) = first else {
        return (Observed::error("no reply"), None);
    };
    let as_received = ReplyHead {
        header: h,
        call: Some((ctx, cancel)),
    };
    let mut obs = Observed::error(crate::wire::rpc::pdu_name(h.packet_type));
    obs.flags = Some(combined.0);
    match ActivationResponse::parse(syntax, &stub) {
        Err(e) => {
            obs.shown = format!("an undecodable activation stub: {e}");
            obs.checks = check_response(request, &as_received, combined, None)
                .iter()
                .copied()
                .collect();
        }
        Ok(s) => {
            obs.checks = check_response(request, &as_received, combined, Some(&s))
                .iter()
                .copied()
                .collect();
            if s.max_count.is_none() {
                obs.kind = Some(ReplyKind::Refused);
                obs.hresult = Some(s.hresult);
                obs.shown = format!("refused {}", s.hresult);
            } else {
                obs.kind = Some(ReplyKind::Response);
                obs.shown = "a KMS response".into();
                return (obs, Some(s.body.to_vec()));
            }
        }
    }
    (obs, None)
}
