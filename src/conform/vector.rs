//! The conformance vector format: one JSON file per case family under `vectors/conform/`,
//! each a list of cases made of steps. `docs/conform-vectors.schema.json` is the same format as
//! a JSON Schema; a test keeps the two in step.
//!
//! Every field is checked when a file is read (`deny_unknown_fields`): a misspelt expectation
//! is an error, never a silently passing case.

use core::fmt;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `format` every vector file declares.
pub const VECTOR_FORMAT: &str = "kmsharness-conform-vectors/1";

/// One vector file: a family of cases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    /// Always [`VECTOR_FORMAT`].
    pub format: String,
    /// The family name (the file's stem), used by `--category`.
    pub family: String,
    /// A title for reports.
    pub title: String,
    /// What the family covers.
    #[serde(default)]
    pub description: String,
    /// The cases, in the order state-changing ones run.
    pub cases: Vec<Case>,
}

/// How much a case matters for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A genuine host always does this; a failure fails the run.
    Must,
    /// A genuine host does this; a failure is reported but does not fail the run.
    Should,
    /// A tell, reported as evidence for the verdict.
    Informational,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Must => "must",
            Level::Should => "should",
            Level::Informational => "informational",
        })
    }
}

/// What kind of host a case holds to its standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Behave like Microsoft's host: counts, refusals, clock rule.
    Genuine,
    /// A host that grants regardless of counts (vlmcsd, py-kms): the wire protocol only.
    Emulator,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Genuine => "genuine",
            Profile::Emulator => "emulator",
        })
    }
}

/// Something a case needs from the host beyond port 1688; without it the case is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// A clock the runner can move (the bundled host in-process).
    VirtualClock,
    /// The host has counted no client yet (the bundled host, or `--fresh-host`).
    FreshHost,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::VirtualClock => "virtual_clock",
            Capability::FreshHost => "fresh_host",
        })
    }
}

/// One conformance case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Stable identifier, `family.name`.
    pub id: String,
    /// One line saying what is checked.
    pub title: String,
    /// Where the expectation comes from: a sentence of `../shared/docs/`, a behaviour observed
    /// in a named implementation, or a section of the RPC specification.
    pub source: String,
    /// How much it matters.
    pub level: Level,
    /// Profiles the case applies to.
    pub profiles: Vec<Profile>,
    /// Whether the case changes what the host remembers (counts, cache size, clock).
    pub state_changing: bool,
    /// What the host must offer for the case to run.
    #[serde(default)]
    pub requires: Vec<Capability>,
    /// Run alone, after the concurrent batch (load-heavy cases).
    #[serde(default)]
    pub exclusive: bool,
    /// When the case fails, the implementation this points to (evidence for the verdict).
    #[serde(default)]
    pub suggests: Option<String>,
    /// What the runner does, in order; the case stops at the first step that fails.
    pub steps: Vec<Step>,
}

/// Default connection name.
fn main_conn() -> String {
    "main".to_owned()
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

/// One step of a case. `conn` names a connection within the case (default `main`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Open a TCP connection and send nothing.
    Connect {
        /// Connection name.
        #[serde(default = "main_conn")]
        conn: String,
    },
    /// Connect and bind as Windows does (NDR32, NDR64, BTFN; alter_context for NDR32 when the
    /// bind granted NDR64 only). Fails the case if no transfer syntax results.
    Open {
        /// Connection name.
        #[serde(default = "main_conn")]
        conn: String,
        /// Offer NDR64.
        #[serde(default = "yes")]
        ndr64: bool,
        /// Offer bind-time feature negotiation.
        #[serde(default = "yes")]
        btfn: bool,
        /// Set PFC_CONC_MPX.
        #[serde(default = "yes")]
        multiplex: bool,
    },
    /// A bind or alter_context with explicit presentation contexts on an open connection.
    Bind(BindStep),
    /// One activation call (or `repeat` of them) with a request built from parameters.
    Activate(ActivateStep),
    /// Raw bytes: hex, or a template (a Windows bind, a request PDU) patched and cut.
    Send(SendStep),
    /// Wait for whatever the host does on a connection, sending nothing.
    Receive {
        /// Connection name.
        #[serde(default = "main_conn")]
        conn: String,
        /// What should happen.
        expect: Expect,
    },
    /// Close a connection.
    Close {
        /// Connection name.
        #[serde(default = "main_conn")]
        conn: String,
    },
    /// Pause.
    Wait {
        /// Milliseconds.
        ms: u64,
    },
    /// Move the host's virtual clock (and the clients' clocks with it).
    AdvanceClock {
        /// Seconds; negative moves back.
        secs: i64,
    },
    /// Many connections at once, each opening, binding and activating, all held open until
    /// every one is done.
    Concurrent {
        /// How many.
        connections: u32,
        /// Longest time for all of them.
        within_ms: u64,
    },
    /// A fingerprint probe: code-defined observations that tell emulators from genuine hosts.
    Fingerprint {
        /// Which probe.
        probe: Probe,
        /// Connection name.
        #[serde(default = "main_conn")]
        conn: String,
    },
}

/// The fingerprint probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// A V6 response's hardware ID is not one of the constants emulators publish.
    PublishedHwid,
    /// The ePID's build agrees with the transfer syntaxes the host accepts (NDR64 since
    /// Windows 7 / Server 2008 R2, build 7600).
    EpidBuildVsNdr64,
    /// The ePID's activation date exists, is not before its build's release, and not in the
    /// future.
    EpidDate,
    /// Two connections get different association groups (not an emulator's constant).
    ConstantAssocGroup,
    /// The count does not simply mirror twice the request's required count (two new machines
    /// with unusual policies, 7 and 9).
    CountMirrorsPolicy,
}

/// A presentation context to propose.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    /// Context id.
    pub id: u16,
    /// `kms`, or `UUID vMAJOR.MINOR` for another interface.
    #[serde(default = "kms_interface")]
    pub interface: String,
    /// Transfer syntaxes: `ndr32`, `ndr64`, `btfn` (bits 0x3), `btfn:0xN`, or `UUID vN`.
    pub transfer: Vec<String>,
}

fn kms_interface() -> String {
    "kms".to_owned()
}

/// A bind or alter_context.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindStep {
    /// Connection name (connected if it is not yet).
    #[serde(default = "main_conn")]
    pub conn: String,
    /// `bind` or `alter_context`.
    #[serde(default)]
    pub pdu: BindPdu,
    /// Shorthand: one context per listed syntax, ids from 0 (`ndr32`, `ndr64`, `btfn`, ...).
    #[serde(default)]
    pub offer: Vec<String>,
    /// Explicit contexts (instead of `offer`).
    #[serde(default)]
    pub contexts: Vec<ContextSpec>,
    /// Set PFC_CONC_MPX.
    #[serde(default = "yes")]
    pub multiplex: bool,
    /// max_xmit_frag and max_recv_frag to announce.
    #[serde(default = "windows_max_frag")]
    pub max_frag: u16,
    /// rpc_vers_minor of the header.
    #[serde(default)]
    pub version_minor: u8,
    /// Call id (default: the connection's next).
    #[serde(default)]
    pub call_id: Option<u32>,
    /// What the reply must be.
    #[serde(default)]
    pub expect: Expect,
}

fn windows_max_frag() -> u16 {
    crate::wire::rpc::WINDOWS_MAX_FRAG
}

/// Which bind PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindPdu {
    /// bind (type 11).
    #[default]
    Bind,
    /// alter_context (type 14).
    AlterContext,
}

/// The KMS request of an activation step.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Protocol version, e.g. `6.0` (default: the product's).
    #[serde(default)]
    pub version: Option<String>,
    /// Catalog edition name (default `Windows Server 2019 Standard`, which every Windows Server
    /// 2019 and later host key activates).
    #[serde(default)]
    pub product: Option<String>,
    /// KMS ID override (a GUID).
    #[serde(default)]
    pub kms_id: Option<String>,
    /// Application ID override (a GUID).
    #[serde(default)]
    pub app_id: Option<String>,
    /// The client machine: a name stable within the case (a fresh random ID per run), `*` for
    /// a new machine on every request, or absent for the suite's fixed probe machine.
    #[serde(default)]
    pub machine: Option<String>,
    /// Required client count (default: the product's threshold).
    #[serde(default)]
    pub required_clients: Option<u32>,
    /// Seconds added to the client's clock.
    #[serde(default)]
    pub client_time_offset_secs: i64,
    /// License status (default 2, OOB grace).
    #[serde(default)]
    pub license_status: Option<u32>,
}

/// One activation call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateStep {
    /// Connection name (opened as Windows does if it is not yet).
    #[serde(default = "main_conn")]
    pub conn: String,
    /// The KMS request.
    #[serde(default)]
    pub request: RequestSpec,
    /// `ndr32` or `ndr64` (default: Windows' choice, NDR32 first and NDR64 later).
    #[serde(default)]
    pub syntax: Option<String>,
    /// Presentation context id override.
    #[serde(default)]
    pub context_id: Option<u16>,
    /// Operation number.
    #[serde(default)]
    pub opnum: u16,
    /// Call id override.
    #[serde(default)]
    pub call_id: Option<u32>,
    /// Header flags of the (first) request PDU (default FIRST|LAST).
    #[serde(default)]
    pub flags: Option<u8>,
    /// Split the request into fragments of at most this many bytes.
    #[serde(default)]
    pub fragment_size: Option<usize>,
    /// Added to the stub's declared size and max count (a lying stub length).
    #[serde(default)]
    pub stub_len_delta: i64,
    /// Repeat the call; expectations on fields apply to the last reply, timing to the fastest.
    #[serde(default = "one")]
    pub repeat: u32,
    /// Open a new connection (bound as Windows does) for every call, as Windows clients do:
    /// "the client computer sends a single request packet" per TCP session.
    #[serde(default)]
    pub reconnect: bool,
    /// Remember the (last) reply under this name for later comparisons.
    #[serde(default)]
    pub label: Option<String>,
    /// What the reply must be (default: a granted response).
    #[serde(default)]
    pub expect: Expect,
}

impl ActivateStep {
    /// A default activation (the probe machine, Windows Server 2019, V6) on `main`.
    pub fn plain() -> ActivateStep {
        ActivateStep {
            conn: main_conn(),
            request: RequestSpec::default(),
            syntax: None,
            context_id: None,
            opnum: 0,
            call_id: None,
            flags: None,
            fragment_size: None,
            stub_len_delta: 0,
            repeat: 1,
            reconnect: false,
            label: None,
            expect: Expect::default(),
        }
    }
}

/// A patch of raw bytes at an offset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    /// Byte offset.
    pub offset: usize,
    /// Bytes to write there, hex.
    pub hex: String,
}

/// Raw bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendStep {
    /// Connection name (connected, not bound, if it is not yet).
    #[serde(default = "main_conn")]
    pub conn: String,
    /// Literal bytes, hex.
    #[serde(default)]
    pub hex: Option<String>,
    /// Or a template: `bind` (Windows' bind), `bind_ndr32` (NDR32 only), `request` (a V6
    /// activation request PDU on context 0).
    #[serde(default)]
    pub template: Option<String>,
    /// Repeat the literal or template bytes this many times.
    #[serde(default = "one")]
    pub repeat: u32,
    /// Overwrites after templating.
    #[serde(default)]
    pub patch: Vec<Patch>,
    /// Send only the first N bytes.
    #[serde(default)]
    pub truncate: Option<usize>,
    /// Send one byte at a time with this pause between bytes (a slow sender).
    #[serde(default)]
    pub byte_delay_ms: Option<u64>,
    /// Half-close the connection after sending.
    #[serde(default)]
    pub shutdown: bool,
    /// What the host must do.
    #[serde(default)]
    pub expect: Expect,
}

/// What a reply may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// A KMS response (the activation was granted).
    Response,
    /// The call returned an HRESULT instead of a response.
    Refused,
    /// An RPC fault PDU.
    Fault,
    /// bind_ack.
    BindAck,
    /// bind_nak.
    BindNak,
    /// alter_context_resp.
    AlterContextResp,
    /// The host closed (or reset) the connection without a reply.
    Closed,
    /// Nothing within `within_ms`, the connection still open.
    Silent,
    /// No PDU: closed or silent.
    NoPdu,
}

impl fmt::Display for ReplyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplyKind::Response => "response",
            ReplyKind::Refused => "refused",
            ReplyKind::Fault => "fault",
            ReplyKind::BindAck => "bind_ack",
            ReplyKind::BindNak => "bind_nak",
            ReplyKind::AlterContextResp => "alter_context_resp",
            ReplyKind::Closed => "closed",
            ReplyKind::Silent => "silent",
            ReplyKind::NoPdu => "no_pdu",
        })
    }
}

/// One reply kind or several accepted ones.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// Exactly this.
    One(ReplyKind),
    /// Any of these.
    Many(Vec<ReplyKind>),
}

impl OneOrMany {
    /// The accepted kinds.
    pub fn kinds(&self) -> Vec<ReplyKind> {
        match self {
            OneOrMany::One(k) => vec![*k],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// Named checks to require, or a group of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CheckSel {
    /// `all`, `rpc` (the RPC checks of a call), `kms` (the checks on the KMS response),
    /// `bind` (the checks on a bind reply) or `none`.
    Group(String),
    /// These checks by name (see `proto::check::CheckId::name`).
    Names(Vec<String>),
}

/// Expected count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountExpect {
    /// Exactly this.
    #[serde(default)]
    pub eq: Option<u32>,
    /// At least.
    #[serde(default)]
    pub min: Option<u32>,
    /// At most.
    #[serde(default)]
    pub max: Option<u32>,
    /// Relative to the count of the reply labelled so: that count plus `delta`.
    #[serde(default)]
    pub rel: Option<String>,
    /// Added to the labelled count.
    #[serde(default)]
    pub delta: i64,
    /// When the labelled count is at least this, the table may be full: the count may also
    /// stay where it was.
    #[serde(default)]
    pub cap: Option<u32>,
}

/// Expectations on what a step observed. Every field is optional; those given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The kind of reply (default for `activate`: `response`; for `bind`: `bind_ack` or
    /// `alter_context_resp` as sent; otherwise anything).
    #[serde(default)]
    pub reply: Option<OneOrMany>,
    /// How long to wait for the reply, or how long silence must last (ms).
    #[serde(default)]
    pub within_ms: Option<u64>,
    /// The reply (or close) must not come sooner (ms).
    #[serde(default)]
    pub min_ms: Option<u64>,
    /// The reply must come within this many ms more than the connection's TCP handshake took
    /// (for repeated calls: the fastest).
    #[serde(default)]
    pub max_ms: Option<u64>,
    /// The HRESULT of a refusal, e.g. `0x8007000D` (applies when the reply is a refusal).
    #[serde(default)]
    pub hresult: Option<String>,
    /// Fault status by name (`op_range_error`, `unknown_interface`, `protocol_error`, ...) or
    /// hex (applies when the reply is a fault).
    #[serde(default)]
    pub fault_status: Option<String>,
    /// bind_nak reason by name (`protocol_version_not_supported`) or number.
    #[serde(default)]
    pub nak_reason: Option<String>,
    /// One per proposed context: `accept:ndr32`, `accept:ndr64`, `accept`, `reject`,
    /// `reject:abstract_syntax`, `reject:transfer_syntaxes`, `negotiate_ack:N`, `*`.
    #[serde(default)]
    pub results: Option<Vec<String>>,
    /// PFC_CONC_MPX in the reply header.
    #[serde(default)]
    pub multiplex: Option<bool>,
    /// The reply header's flags byte, exactly.
    #[serde(default)]
    pub reply_flags: Option<u8>,
    /// Secondary address of a bind reply: `port` (the target's port as a string), `empty`,
    /// `nonempty`.
    #[serde(default)]
    pub secondary_address: Option<String>,
    /// The association group is not zero.
    #[serde(default)]
    pub assoc_group_nonzero: Option<bool>,
    /// The association group equals that of this connection's bind.
    #[serde(default)]
    pub assoc_group_same_as: Option<String>,
    /// The association group differs from that of this connection's bind.
    #[serde(default)]
    pub assoc_group_differs_from: Option<String>,
    /// The reply's max_xmit_frag and max_recv_frag do not exceed what was offered.
    #[serde(default)]
    pub max_frag_at_most_offered: Option<bool>,
    /// Named checks that must pass.
    #[serde(default)]
    pub checks: Option<CheckSel>,
    /// Activation interval, minutes.
    #[serde(default)]
    pub activation_interval: Option<u32>,
    /// Renewal interval, minutes.
    #[serde(default)]
    pub renewal_interval: Option<u32>,
    /// Hardware ID: `present` (non-zero), `absent`, or 16 hex digits.
    #[serde(default)]
    pub hwid: Option<String>,
    /// The ePID parses as an ePID and has no inconsistency of its own.
    #[serde(default)]
    pub epid_well_formed: Option<bool>,
    /// The ePID's group and key ID belong to a host key group that activates the requested
    /// KMS ID.
    #[serde(default)]
    pub epid_matches_product: Option<bool>,
    /// The ePID equals the one in the reply labelled so.
    #[serde(default)]
    pub epid_same_as: Option<String>,
    /// The count.
    #[serde(default)]
    pub count: Option<CountExpect>,
    /// For `concurrent`: how many must succeed (default all).
    #[serde(default)]
    pub min_ok: Option<u32>,
}

/// The step kinds, as the schema names them (kept in step by a test).
pub const STEP_KINDS: &[&str] = &[
    "connect",
    "open",
    "bind",
    "activate",
    "send",
    "receive",
    "close",
    "wait",
    "advance_clock",
    "concurrent",
    "fingerprint",
];

/// Parses one vector file.
pub fn parse(name: &str, text: &str) -> Result<VectorFile, String> {
    let file: VectorFile = serde_json::from_str(text).map_err(|e| format!("{name}: {e}"))?;
    if file.format != VECTOR_FORMAT {
        return Err(format!(
            "{name}: format {:?}, expected {VECTOR_FORMAT:?}",
            file.format
        ));
    }
    for case in &file.cases {
        let prefix = format!("{}.", file.family);
        if !case.id.starts_with(&prefix) {
            return Err(format!(
                "{name}: case {} must start with {prefix:?}",
                case.id
            ));
        }
        if case.profiles.is_empty() {
            return Err(format!("{name}: case {} applies to no profile", case.id));
        }
        if case.steps.is_empty() {
            return Err(format!("{name}: case {} has no step", case.id));
        }
    }
    Ok(file)
}

/// The vector files built into the binary, in run order.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "counting",
        include_str!("../../vectors/conform/counting.json"),
    ),
    (
        "rpc-bind",
        include_str!("../../vectors/conform/rpc-bind.json"),
    ),
    (
        "rpc-calls",
        include_str!("../../vectors/conform/rpc-calls.json"),
    ),
    (
        "kms-messages",
        include_str!("../../vectors/conform/kms-messages.json"),
    ),
    (
        "product-policy",
        include_str!("../../vectors/conform/product-policy.json"),
    ),
    (
        "session",
        include_str!("../../vectors/conform/session.json"),
    ),
    (
        "fingerprints",
        include_str!("../../vectors/conform/fingerprints.json"),
    ),
    (
        "robustness",
        include_str!("../../vectors/conform/robustness.json"),
    ),
];

/// Loads the built-in vectors, or every `*.json` of `dir`.
pub fn load(dir: Option<&std::path::Path>) -> Result<Vec<VectorFile>, String> {
    let mut files = Vec::new();
    match dir {
        None => {
            for (name, text) in BUILTIN {
                files.push(parse(&format!("{name}.json"), text)?);
            }
        }
        Some(dir) => {
            let mut paths: Vec<_> = std::fs::read_dir(dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            paths.sort();
            // Built-in order first (counting leads: it needs a host nobody has counted on).
            paths.sort_by_key(|p| {
                let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                BUILTIN
                    .iter()
                    .position(|(n, _)| *n == stem)
                    .unwrap_or(usize::MAX)
            });
            for p in paths {
                let text =
                    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                files.push(parse(&p.display().to_string(), &text)?);
            }
        }
    }
    let mut seen = BTreeMap::new();
    for f in &files {
        for c in &f.cases {
            if let Some(other) = seen.insert(c.id.clone(), f.family.clone()) {
                return Err(format!(
                    "case {} is defined in both {other} and {}",
                    c.id, f.family
                ));
            }
        }
    }
    Ok(files)
}
