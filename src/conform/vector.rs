//! The conformance vector format: one JSON file per case family under `vectors/conform/`,
//! each a list of cases made of steps. `docs/conform-vectors.schema.json` is the same format as
//! a JSON Schema; a test keeps the two in step.
//!
//! Every field is parsed into its typed value when a file is read: hex into bytes, names into
//! editions, syntaxes, fault statuses and checks, milliseconds into durations. A misspelt
//! field or a value that does not parse is a [`LoadError`] naming the file, the case and the
//! field; running a case never parses anything.

use core::fmt;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::catalog::{self, Sku};
use crate::proto::check::CheckId;
use crate::wire::kms::Version;
use crate::wire::ndr::Syntax;
use crate::wire::rpc::{
    AckResult, ContextResult, FaultStatus, KMS_INTERFACE, NDR32, NDR64, RejectReason, SyntaxId,
};
use crate::wire::{Guid, HResult};

/// The `format` every vector file declares.
pub const VECTOR_FORMAT: &str = "kmsharness-conform-vectors/1";

/// One vector file: a family of cases.
#[derive(Debug, Clone)]
pub struct VectorFile {
    /// Always [`VECTOR_FORMAT`].
    pub format: String,
    /// The family name (the file's stem), used by `--category`.
    pub family: String,
    /// A title for reports.
    pub title: String,
    /// What the family covers.
    pub description: String,
    /// The cases, in the order state-changing ones run.
    pub cases: Vec<Case>,
}

/// How much a case matters for the exit status.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    Serialize,
    schemars::JsonSchema,
)]
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
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Deserialize,
    Serialize,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
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
    /// What the runner does, in order; the case stops at the first step that fails. Read
    /// one by one after the rest of the case (see [`parse`]), so that an error names its step.
    #[serde(skip)]
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
#[derive(Debug, Clone)]
pub enum Step {
    /// Open a TCP connection and send nothing.
    Connect(ConnStep),
    /// Connect and bind as Windows does (NDR32, NDR64, BTFN; alter_context for NDR32 when the
    /// bind granted NDR64 only). Fails the case if no transfer syntax results.
    Open(OpenStep),
    /// A bind or alter_context with explicit presentation contexts on an open connection.
    Bind(BindStep),
    /// One activation call (or `repeat` of them) with a request built from parameters.
    Activate(ActivateStep),
    /// Raw bytes: hex, or a template (a Windows bind, a request PDU) patched and cut.
    Send(SendStep),
    /// Wait for whatever the host does on a connection, sending nothing.
    Receive(ReceiveStep),
    /// Close a connection.
    Close(ConnStep),
    /// Pause.
    Wait(WaitStep),
    /// Move the host's virtual clock (and the clients' clocks with it).
    AdvanceClock(ClockStep),
    /// Many connections at once, each opening, binding and activating, all held open until
    /// every one is done.
    Concurrent(ConcurrentStep),
    /// A fingerprint probe: code-defined observations that tell emulators from genuine hosts.
    Fingerprint(FingerprintStep),
}

impl Step {
    /// The step's kind, as vectors name it (one of [`STEP_KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Connect(_) => "connect",
            Step::Open(_) => "open",
            Step::Bind(_) => "bind",
            Step::Activate(_) => "activate",
            Step::Send(_) => "send",
            Step::Receive(_) => "receive",
            Step::Close(_) => "close",
            Step::Wait(_) => "wait",
            Step::AdvanceClock(_) => "advance_clock",
            Step::Concurrent(_) => "concurrent",
            Step::Fingerprint(_) => "fingerprint",
        }
    }

    /// Reads the step of kind `kind` from its other fields.
    fn from_fields(kind: &str, fields: Value) -> Result<Step, (String, String)> {
        Ok(match kind {
            "connect" => Step::Connect(fields_of(fields)?),
            "open" => Step::Open(fields_of(fields)?),
            "bind" => Step::Bind(fields_of(fields)?),
            "activate" => Step::Activate(fields_of(fields)?),
            "send" => Step::Send(fields_of(fields)?),
            "receive" => Step::Receive(fields_of(fields)?),
            "close" => Step::Close(fields_of(fields)?),
            "wait" => Step::Wait(fields_of(fields)?),
            "advance_clock" => Step::AdvanceClock(fields_of(fields)?),
            "concurrent" => Step::Concurrent(fields_of(fields)?),
            "fingerprint" => Step::Fingerprint(fields_of(fields)?),
            // `case_of` lets through only the kinds of STEP_KINDS.
            other => return Err(("step".into(), format!("unknown step {other:?}"))),
        })
    }
}

/// Deserializes `T` from a JSON value; on failure, the path of the field at fault and why.
fn fields_of<T: for<'de> Deserialize<'de>>(value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.into_inner().to_string())
    })
}

/// A step that names only a connection (`connect`, `close`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnStep {
    /// Connection name.
    #[serde(default = "main_conn")]
    pub conn: String,
}

/// Connect and bind as Windows does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenStep {
    /// Connection name.
    #[serde(default = "main_conn")]
    pub conn: String,
    /// Offer NDR64.
    #[serde(default = "yes")]
    pub ndr64: bool,
    /// Offer bind-time feature negotiation.
    #[serde(default = "yes")]
    pub btfn: bool,
    /// Set PFC_CONC_MPX.
    #[serde(default = "yes")]
    pub multiplex: bool,
}

/// Wait for what the host does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveStep {
    /// Connection name.
    #[serde(default = "main_conn")]
    pub conn: String,
    /// What should happen.
    pub expect: Expect,
}

/// A pause.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitStep {
    /// How long (`ms` in the vector).
    #[serde(rename = "ms", deserialize_with = "millis")]
    pub pause: Duration,
}

/// A move of the virtual clock.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockStep {
    /// Seconds; negative moves back.
    pub secs: i64,
}

/// Many connections at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrentStep {
    /// How many.
    pub connections: u32,
    /// Longest time for all of them (`within_ms`).
    #[serde(rename = "within_ms", deserialize_with = "millis")]
    pub within: Duration,
}

/// A fingerprint probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FingerprintStep {
    /// Which probe.
    pub probe: Probe,
    /// Connection name.
    #[serde(default = "main_conn")]
    pub conn: String,
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

// ---------------------------------------------------------------------------------------------
// Field values written as text

/// A value written as a string in a vector; its error says what was wrong with the text.
trait Parse: Sized {
    fn parse(text: &str) -> Result<Self, String>;
}

/// Deserializes a string through [`Parse`].
fn parsed<'de, D: Deserializer<'de>, T: Parse>(d: D) -> Result<T, D::Error> {
    let text = <Cow<'de, str>>::deserialize(d)?;
    T::parse(&text).map_err(D::Error::custom)
}

/// [`parsed`] for an optional field (with `#[serde(default)]`: absent is `None`).
fn parsed_opt<'de, D: Deserializer<'de>, T: Parse>(d: D) -> Result<Option<T>, D::Error> {
    parsed(d).map(Some)
}

/// Milliseconds into a duration.
fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// [`millis`] for an optional field.
fn millis_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    millis(d).map(Some)
}

/// Implements `Deserialize` through [`Parse`] for a type of this module.
macro_rules! deserialize_parsed {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                parsed(d)
            }
        }
    )*};
}

/// `0x...` or plain hex, at most 32 bits.
pub fn parse_hex_u32(s: &str) -> Option<u32> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    u32::from_str_radix(t, 16).ok()
}

/// Bytes written as hex digits, spaces allowed between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hex(pub Vec<u8>);

impl Parse for Hex {
    fn parse(s: &str) -> Result<Hex, String> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return Err(format!("odd number of hex digits in {s:?}"));
        }
        digits
            .chunks(2)
            .map(|p| {
                let t = std::str::from_utf8(p).map_err(|e| e.to_string())?;
                u8::from_str_radix(t, 16).map_err(|_| format!("not hex: {t:?}"))
            })
            .collect::<Result<_, _>>()
            .map(Hex)
    }
}

impl Parse for HResult {
    fn parse(s: &str) -> Result<HResult, String> {
        parse_hex_u32(s)
            .map(HResult)
            .ok_or(format!("HRESULT {s:?}: expected hex, e.g. 0x8007000D"))
    }
}

impl Parse for Version {
    fn parse(s: &str) -> Result<Version, String> {
        s.parse()
    }
}

impl Parse for &'static Sku {
    fn parse(s: &str) -> Result<&'static Sku, String> {
        catalog::lookup_sku(s)
            .map_err(|why| format!("product {s:?}: {why} (see `kmsharness activate --list`)"))
    }
}

impl Parse for FaultStatus {
    fn parse(s: &str) -> Result<FaultStatus, String> {
        // The generated names match whatever the case and `_`/`-`, so `op_range_error` works.
        s.parse().map_err(|_| {
            let names: Vec<&str> = FaultStatus::ALL.iter().filter_map(|f| f.name()).collect();
            format!("fault status {s:?}: one of {}, or hex", names.join(", "))
        })
    }
}

impl Parse for RejectReason {
    fn parse(s: &str) -> Result<RejectReason, String> {
        s.parse().map_err(|_| {
            let names: Vec<&str> = RejectReason::ALL.iter().filter_map(|r| r.name()).collect();
            format!(
                "bind_nak reason {s:?}: one of {}, or a number",
                names.join(", ")
            )
        })
    }
}

/// A syntax identifier written `UUID vMAJOR[.MINOR]` (version 1.0 when omitted; a syntax
/// id's version word is major | minor << 16).
fn uuid_version(s: &str) -> Result<SyntaxId, String> {
    let (uuid, version) = s.split_once(" v").unwrap_or((s, "1"));
    let uuid: Guid = uuid
        .trim()
        .parse()
        .map_err(|e| format!("syntax {s:?}: {e}"))?;
    let (major, minor) = version.split_once('.').unwrap_or((version, "0"));
    let number = |n: &str| {
        n.parse::<u16>()
            .map(u32::from)
            .map_err(|_| format!("syntax {s:?}: version, e.g. v1.0"))
    };
    Ok(SyntaxId {
        uuid,
        version: number(major)? | number(minor)? << 16,
    })
}

/// A transfer syntax to offer: `ndr32`, `ndr64`, `btfn` (feature bits 0x3), `btfn:0xN`, or
/// `UUID vN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer(pub SyntaxId);

impl Parse for Transfer {
    fn parse(s: &str) -> Result<Transfer, String> {
        Ok(Transfer(match s {
            "ndr32" => NDR32,
            "ndr64" => NDR64,
            "btfn" => SyntaxId::btfn(0x3),
            other => match other.strip_prefix("btfn:") {
                Some(bits) => SyntaxId::btfn(
                    parse_hex_u32(bits)
                        .and_then(|v| u16::try_from(v).ok())
                        .ok_or(format!("bad feature bits in {other:?}"))?,
                ),
                None => uuid_version(other).map_err(|e| {
                    format!(
                        "transfer syntax {other:?}: ndr32, ndr64, btfn, btfn:0xN or UUID vN ({e})"
                    )
                })?,
            },
        }))
    }
}

/// The interface (abstract syntax) of a context: `kms` or `UUID vMAJOR.MINOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interface(pub SyntaxId);

impl Default for Interface {
    fn default() -> Interface {
        Interface(KMS_INTERFACE)
    }
}

impl Parse for Interface {
    fn parse(s: &str) -> Result<Interface, String> {
        match s {
            "kms" => Ok(Interface::default()),
            other => uuid_version(other).map(Interface),
        }
    }
}

/// The client machine of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Machine {
    /// The suite's fixed probe machine (the field absent).
    #[default]
    Probe,
    /// A new machine on every request (`*`).
    Fresh,
    /// A machine stable within the case, a fresh random ID per run.
    Named(String),
}

impl Parse for Machine {
    fn parse(s: &str) -> Result<Machine, String> {
        Ok(match s {
            "*" => Machine::Fresh,
            "" => return Err("machine name: empty (omit the field for the probe machine)".into()),
            name => Machine::Named(name.to_owned()),
        })
    }
}

/// What one context result must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultPattern {
    /// `*`: anything.
    Any,
    /// `accept`: accepted with any syntax.
    Accept,
    /// `reject`: rejected for any reason.
    Reject,
    /// `accept:ndr32`, `accept:ndr64`, `accept:UUID`: accepted with this syntax.
    AcceptSyntax(Guid),
    /// `reject:abstract_syntax` (1), `reject:transfer_syntaxes` (2), `reject:N`.
    RejectReason(u16),
    /// `negotiate_ack:N`: a bind-time feature negotiation answer with these bits.
    NegotiateAck(u16),
}

impl Parse for ResultPattern {
    fn parse(s: &str) -> Result<ResultPattern, String> {
        let bad = || {
            format!(
                "context result {s:?}: *, accept, reject, accept:ndr32, accept:ndr64, \
                 accept:UUID, reject:abstract_syntax, reject:transfer_syntaxes, reject:N \
                 or negotiate_ack:N"
            )
        };
        Ok(match s.split_once(':') {
            None => match s {
                "*" => ResultPattern::Any,
                "accept" => ResultPattern::Accept,
                "reject" => ResultPattern::Reject,
                _ => return Err(bad()),
            },
            Some(("accept", "ndr32")) => ResultPattern::AcceptSyntax(NDR32.uuid),
            Some(("accept", "ndr64")) => ResultPattern::AcceptSyntax(NDR64.uuid),
            Some(("accept", uuid)) => ResultPattern::AcceptSyntax(uuid.parse().map_err(|_| bad())?),
            Some(("reject", "abstract_syntax")) => ResultPattern::RejectReason(1),
            Some(("reject", "transfer_syntaxes")) => ResultPattern::RejectReason(2),
            Some(("reject", n)) => ResultPattern::RejectReason(n.parse().map_err(|_| bad())?),
            Some(("negotiate_ack", n)) => {
                ResultPattern::NegotiateAck(n.parse().map_err(|_| bad())?)
            }
            Some(_) => return Err(bad()),
        })
    }
}

impl ResultPattern {
    /// Whether a context result matches.
    pub fn matches(self, r: &ContextResult) -> bool {
        let rejected = matches!(
            r.result,
            AckResult::ProviderRejection | AckResult::UserRejection
        );
        match self {
            ResultPattern::Any => true,
            ResultPattern::Accept => r.result == AckResult::Acceptance,
            ResultPattern::Reject => rejected,
            ResultPattern::AcceptSyntax(uuid) => {
                r.result == AckResult::Acceptance && r.transfer_syntax.uuid == uuid
            }
            ResultPattern::RejectReason(n) => rejected && r.reason == n,
            ResultPattern::NegotiateAck(n) => r.result == AckResult::NegotiateAck && r.reason == n,
        }
    }
}

impl fmt::Display for ResultPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ResultPattern::Any => f.write_str("*"),
            ResultPattern::Accept => f.write_str("accept"),
            ResultPattern::Reject => f.write_str("reject"),
            ResultPattern::AcceptSyntax(u) if u == NDR32.uuid => f.write_str("accept:ndr32"),
            ResultPattern::AcceptSyntax(u) if u == NDR64.uuid => f.write_str("accept:ndr64"),
            ResultPattern::AcceptSyntax(u) => write!(f, "accept:{u}"),
            ResultPattern::RejectReason(1) => f.write_str("reject:abstract_syntax"),
            ResultPattern::RejectReason(2) => f.write_str("reject:transfer_syntaxes"),
            ResultPattern::RejectReason(n) => write!(f, "reject:{n}"),
            ResultPattern::NegotiateAck(n) => write!(f, "negotiate_ack:{n}"),
        }
    }
}

/// What a bind reply's secondary address must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondaryAddress {
    /// `port`: the target's port as a NUL-terminated string.
    Port,
    /// `empty`.
    Empty,
    /// `nonempty`.
    Nonempty,
    /// Any other text: exactly this.
    Literal(String),
}

impl Parse for SecondaryAddress {
    fn parse(s: &str) -> Result<SecondaryAddress, String> {
        Ok(match s {
            "port" => SecondaryAddress::Port,
            "empty" => SecondaryAddress::Empty,
            "nonempty" => SecondaryAddress::Nonempty,
            other => SecondaryAddress::Literal(other.to_owned()),
        })
    }
}

/// What a V6 response's hardware ID must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwidExpect {
    /// `present`: there, and not zero.
    Present,
    /// `absent`: no V6 trailer.
    Absent,
    /// 16 hex digits: exactly this.
    Exactly([u8; 8]),
}

impl Parse for HwidExpect {
    fn parse(s: &str) -> Result<HwidExpect, String> {
        match s {
            "present" => Ok(HwidExpect::Present),
            "absent" => Ok(HwidExpect::Absent),
            hex => Hex::parse(hex)
                .ok()
                .and_then(|h| <[u8; 8]>::try_from(h.0).ok())
                .map(HwidExpect::Exactly)
                .ok_or(format!(
                    "hardware ID {s:?}: present, absent or 16 hex digits"
                )),
        }
    }
}

deserialize_parsed!(
    Hex,
    Transfer,
    Interface,
    Machine,
    ResultPattern,
    SecondaryAddress,
    HwidExpect
);

/// A presentation context to propose.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    /// Context id.
    pub id: u16,
    /// `kms`, or `UUID vMAJOR.MINOR` for another interface.
    #[serde(default)]
    pub interface: Interface,
    /// Transfer syntaxes.
    pub transfer: Vec<Transfer>,
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
    pub offer: Vec<Transfer>,
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
    #[serde(default, deserialize_with = "parsed_opt")]
    pub version: Option<Version>,
    /// Catalog edition by name (default [`DEFAULT_PRODUCT`]).
    #[serde(default, deserialize_with = "parsed_opt")]
    pub product: Option<&'static Sku>,
    /// KMS ID override.
    #[serde(default)]
    pub kms_id: Option<Guid>,
    /// Application ID override.
    #[serde(default)]
    pub app_id: Option<Guid>,
    /// The client machine: a name stable within the case (a fresh random ID per run), `*` for
    /// a new machine on every request, or absent for the suite's fixed probe machine.
    #[serde(default)]
    pub machine: Machine,
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

/// Edition requested when a step names none: every Windows Server 2019 and later host key
/// activates it.
pub const DEFAULT_PRODUCT: &str = "Windows Server 2019 Standard";

impl RequestSpec {
    /// The edition requested: the named one, or [`DEFAULT_PRODUCT`] (`None` only if the
    /// catalog lost it, which a test rules out).
    pub fn sku(&self) -> Option<&'static Sku> {
        self.product.or_else(|| catalog::find_sku(DEFAULT_PRODUCT))
    }
}

/// The transfer syntax an activation call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallSyntax {
    /// NDR 2.0.
    Ndr32,
    /// NDR64.
    Ndr64,
}

impl CallSyntax {
    /// The syntax it names.
    pub fn syntax(self) -> Syntax {
        match self {
            CallSyntax::Ndr32 => Syntax::Ndr32,
            CallSyntax::Ndr64 => Syntax::Ndr64,
        }
    }
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
    pub syntax: Option<CallSyntax>,
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
    /// Bytes (zeros) sent after the KMS message in the stub, the declared size unchanged, as
    /// py-kms's V4 client and Wine clients do.
    #[serde(default)]
    pub stub_trailing: usize,
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
            stub_trailing: 0,
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
    /// Bytes to write there.
    pub hex: Hex,
}

/// A PDU built by the suite for a send step to patch and cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// Windows' bind (NDR32, NDR64, BTFN).
    Bind,
    /// A bind offering NDR32 only.
    BindNdr32,
    /// A V6 activation request PDU on context 0.
    Request,
}

/// What a send step sends before patching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Literal bytes (`hex`).
    Bytes(Vec<u8>),
    /// A template (`template`).
    Template(Template),
}

/// Raw bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawSendStep")]
pub struct SendStep {
    /// Connection name (connected, not bound, if it is not yet).
    pub conn: String,
    /// The bytes, or the template that makes them.
    pub payload: Payload,
    /// Repeat the bytes this many times.
    pub repeat: u32,
    /// Overwrites after templating.
    pub patch: Vec<Patch>,
    /// Send only the first N bytes.
    pub truncate: Option<usize>,
    /// Send one byte at a time with this pause between bytes (a slow sender).
    pub byte_delay: Option<Duration>,
    /// Half-close the connection after sending.
    pub shutdown: bool,
    /// What the host must do.
    pub expect: Expect,
}

/// [`SendStep`] as written, `hex` and `template` both optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSendStep {
    #[serde(default = "main_conn")]
    conn: String,
    #[serde(default)]
    hex: Option<Hex>,
    #[serde(default)]
    template: Option<Template>,
    #[serde(default = "one")]
    repeat: u32,
    #[serde(default)]
    patch: Vec<Patch>,
    #[serde(default)]
    truncate: Option<usize>,
    #[serde(default, deserialize_with = "millis_opt")]
    byte_delay_ms: Option<Duration>,
    #[serde(default)]
    shutdown: bool,
    #[serde(default)]
    expect: Expect,
}

impl TryFrom<RawSendStep> for SendStep {
    type Error = String;

    fn try_from(raw: RawSendStep) -> Result<SendStep, String> {
        let payload = match (raw.hex, raw.template) {
            (Some(h), None) => Payload::Bytes(h.0),
            (None, Some(t)) => Payload::Template(t),
            _ => return Err("give exactly one of hex and template".into()),
        };
        Ok(SendStep {
            conn: raw.conn,
            payload,
            repeat: raw.repeat.max(1),
            patch: raw.patch,
            truncate: raw.truncate,
            byte_delay: raw.byte_delay_ms,
            shutdown: raw.shutdown,
            expect: raw.expect,
        })
    }
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
#[serde(try_from = "RawCheckSel")]
pub enum CheckSel {
    /// `all` (and `bind`, the checks made on a bind reply, which are all of them there).
    All,
    /// `rpc`: the RPC checks of a call.
    Rpc,
    /// `kms`: the checks on the KMS response.
    Kms,
    /// `none`.
    None,
    /// These checks by name (see `proto::check::CheckId::name`).
    Names(Vec<CheckId>),
}

/// [`CheckSel`] as written.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawCheckSel {
    Group(String),
    Names(Vec<String>),
}

impl TryFrom<RawCheckSel> for CheckSel {
    type Error = String;

    fn try_from(raw: RawCheckSel) -> Result<CheckSel, String> {
        match raw {
            RawCheckSel::Group(g) => match g.as_str() {
                "all" | "bind" => Ok(CheckSel::All),
                "rpc" => Ok(CheckSel::Rpc),
                "kms" => Ok(CheckSel::Kms),
                "none" => Ok(CheckSel::None),
                other => Err(format!(
                    "unknown check group {other:?}: all, rpc, kms, bind or none"
                )),
            },
            RawCheckSel::Names(names) => names
                .iter()
                .map(|n| CheckId::from_name(n).ok_or(format!("unknown check {n:?}")))
                .collect::<Result<_, _>>()
                .map(CheckSel::Names),
        }
    }
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
    /// How long to wait for the reply, or how long silence must last (`within_ms`).
    #[serde(default, rename = "within_ms", deserialize_with = "millis_opt")]
    pub within: Option<Duration>,
    /// The reply (or close) must not come sooner (`min_ms`).
    #[serde(default, rename = "min_ms", deserialize_with = "millis_opt")]
    pub not_before: Option<Duration>,
    /// The reply must come within this much more than the connection's TCP handshake took
    /// (for repeated calls: the fastest; `max_ms`).
    #[serde(default, rename = "max_ms", deserialize_with = "millis_opt")]
    pub max_over_handshake: Option<Duration>,
    /// The HRESULT of a refusal, e.g. `0x8007000D` (applies when the reply is a refusal).
    #[serde(default, deserialize_with = "parsed_opt")]
    pub hresult: Option<HResult>,
    /// Fault status by name (`op_range_error`, `unknown_interface`, `protocol_error`, ...) or
    /// hex (applies when the reply is a fault).
    #[serde(default, deserialize_with = "parsed_opt")]
    pub fault_status: Option<FaultStatus>,
    /// bind_nak reason by name (`protocol_version_not_supported`) or number.
    #[serde(default, deserialize_with = "parsed_opt")]
    pub nak_reason: Option<RejectReason>,
    /// One per proposed context.
    #[serde(default)]
    pub results: Option<Vec<ResultPattern>>,
    /// PFC_CONC_MPX in the reply header.
    #[serde(default)]
    pub multiplex: Option<bool>,
    /// The reply header's flags byte, exactly.
    #[serde(default)]
    pub reply_flags: Option<u8>,
    /// Secondary address of a bind reply.
    #[serde(default)]
    pub secondary_address: Option<SecondaryAddress>,
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
    /// Hardware ID.
    #[serde(default)]
    pub hwid: Option<HwidExpect>,
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

impl Expect {
    /// Whether silence is an acceptable outcome (`silent` or `no_pdu`): then `within` is how
    /// long the host must stay quiet, not a limit on how soon it answers.
    pub fn accepts_silence(&self) -> bool {
        self.reply.as_ref().is_some_and(|r| {
            r.kinds()
                .iter()
                .any(|k| matches!(k, ReplyKind::Silent | ReplyKind::NoPdu))
        })
    }
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

// ---------------------------------------------------------------------------------------------
// Loading

/// Why vectors did not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file or directory.
        file: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not JSON, or its top level is not a vector file.
    #[error("{file}: {source}")]
    Json {
        /// The file.
        file: String,
        /// Where and why.
        source: serde_json::Error,
    },
    /// The file declares another format.
    #[error("{file}: format {found:?}, expected {VECTOR_FORMAT:?}")]
    Format {
        /// The file.
        file: String,
        /// What it declares.
        found: String,
    },
    /// A field of a case is missing, unknown or does not parse.
    #[error("{file}: case {case}: {field}: {message}")]
    Field {
        /// The file.
        file: String,
        /// The case's id (or its position when it has none).
        case: String,
        /// The field, e.g. `steps[2] (activate).expect.hresult`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A case breaks a rule of the format (its id, its profiles, its steps).
    #[error("{file}: case {case}: {message}")]
    Case {
        /// The file.
        file: String,
        /// The case's id.
        case: String,
        /// The rule.
        message: String,
    },
    /// Two files define the same case.
    #[error("case {case} is defined in both {first} and {second}")]
    Duplicate {
        /// The case's id.
        case: String,
        /// The first family.
        first: String,
        /// The second.
        second: String,
    },
}

/// A vector file's top level; the cases are read one by one so that errors can name them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    format: String,
    family: String,
    title: String,
    #[serde(default)]
    description: String,
    cases: Vec<Map<String, Value>>,
}

/// Reads one case from its JSON object (`index` is its position in the file).
fn case_of(file: &str, index: usize, mut fields: Map<String, Value>) -> Result<Case, LoadError> {
    let name = match fields.get("id") {
        Some(Value::String(id)) => id.clone(),
        _ => format!("#{}", index + 1),
    };
    let field_error = |field: String, message: String| LoadError::Field {
        file: file.to_owned(),
        case: name.clone(),
        field,
        message,
    };
    let steps = match fields.remove("steps") {
        Some(Value::Array(steps)) => steps,
        Some(_) => {
            return Err(field_error(
                "steps".into(),
                "expected a list of steps".into(),
            ));
        }
        None => return Err(field_error("steps".into(), "missing".into())),
    };
    let mut case: Case =
        fields_of(Value::Object(fields)).map_err(|(field, message)| field_error(field, message))?;
    for (i, step) in steps.into_iter().enumerate() {
        let at = format!("steps[{i}]");
        let Value::Object(mut step) = step else {
            return Err(field_error(
                at,
                "expected an object with a \"step\" field".into(),
            ));
        };
        let kind = match step.remove("step") {
            Some(Value::String(kind)) => kind,
            _ => return Err(field_error(format!("{at}.step"), "missing".into())),
        };
        if !STEP_KINDS.contains(&kind.as_str()) {
            let message = format!("unknown step {kind:?}; one of {}", STEP_KINDS.join(", "));
            return Err(field_error(format!("{at}.step"), message));
        }
        let step = Step::from_fields(&kind, Value::Object(step)).map_err(|(field, message)| {
            let field = match field.as_str() {
                "" => format!("{at} ({kind})"),
                f => format!("{at} ({kind}).{f}"),
            };
            field_error(field, message)
        })?;
        case.steps.push(step);
    }
    Ok(case)
}

/// Parses one vector file; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<VectorFile, LoadError> {
    let raw: RawFile = serde_json::from_str(text).map_err(|source| LoadError::Json {
        file: file.to_owned(),
        source,
    })?;
    if raw.format != VECTOR_FORMAT {
        return Err(LoadError::Format {
            file: file.to_owned(),
            found: raw.format,
        });
    }
    let prefix = format!("{}.", raw.family);
    let mut cases = Vec::with_capacity(raw.cases.len());
    for (i, fields) in raw.cases.into_iter().enumerate() {
        let case = case_of(file, i, fields)?;
        let rule = |message: String| LoadError::Case {
            file: file.to_owned(),
            case: case.id.clone(),
            message,
        };
        if !case.id.starts_with(&prefix) {
            return Err(rule(format!("the id must start with {prefix:?}")));
        }
        if case.profiles.is_empty() {
            return Err(rule("applies to no profile".into()));
        }
        if case.steps.is_empty() {
            return Err(rule("has no step".into()));
        }
        cases.push(case);
    }
    Ok(VectorFile {
        format: raw.format,
        family: raw.family,
        title: raw.title,
        description: raw.description,
        cases,
    })
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
pub fn load(dir: Option<&std::path::Path>) -> Result<Vec<VectorFile>, LoadError> {
    let mut files = Vec::new();
    match dir {
        None => {
            for (name, text) in BUILTIN {
                files.push(parse(&format!("{name}.json"), text)?);
            }
        }
        Some(dir) => {
            let mut paths: Vec<_> = std::fs::read_dir(dir)
                .map_err(|source| LoadError::Io {
                    file: dir.display().to_string(),
                    source,
                })?
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
                let text = std::fs::read_to_string(&p).map_err(|source| LoadError::Io {
                    file: p.display().to_string(),
                    source,
                })?;
                files.push(parse(&p.display().to_string(), &text)?);
            }
        }
    }
    let mut seen = BTreeMap::new();
    for f in &files {
        for c in &f.cases {
            if let Some(first) = seen.insert(c.id.clone(), f.family.clone()) {
                return Err(LoadError::Duplicate {
                    case: c.id.clone(),
                    first,
                    second: f.family.clone(),
                });
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod test {
    use super::*;

    /// A file of one case `x.a` with these steps.
    fn file_with(steps: &str) -> String {
        format!(
            r#"{{"format": "kmsharness-conform-vectors/1", "family": "x", "title": "x",
            "cases": [{{"id": "x.a", "title": "t", "source": "s", "level": "must",
            "profiles": ["genuine"], "state_changing": false, "steps": [{steps}]}}]}}"#
        )
    }

    #[test]
    fn test_every_shipped_vector_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors/conform");
        let on_disk = load(Some(&dir)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(on_disk.len(), BUILTIN.len());
        let builtin = load(None).unwrap_or_else(|e| panic!("{e}"));
        let cases: usize = builtin.iter().map(|f| f.cases.len()).sum();
        assert!(cases >= 60, "{cases} cases");
        assert!(catalog::find_sku(DEFAULT_PRODUCT).is_some());
    }

    #[test]
    fn test_values_parse_when_loaded() {
        let text = file_with(
            r#"{"step": "send", "hex": "05 00 0b", "patch": [{"offset": 1, "hex": "ff"}],
                "byte_delay_ms": 20},
               {"step": "bind", "offer": ["ndr32", "btfn:0x1"],
                "contexts": [{"id": 1, "interface": "12345678-1234-4321-8765-123456789abc v1.2",
                              "transfer": ["ndr64"]}],
                "expect": {"results": ["reject:transfer_syntaxes", "accept:ndr64", "*"],
                           "nak_reason": "4", "fault_status": "op_range_error",
                           "checks": ["hmac", "rpc_call_id"], "hwid": "3A1C049600B60076"}},
               {"step": "activate", "syntax": "ndr64",
                "request": {"version": "5.0", "product": "windows-server-2012-standard",
                            "machine": "*"},
                "expect": {"reply": "refused", "hresult": "0xC004F042", "max_ms": 100}},
               {"step": "wait", "ms": 5}"#,
        );
        let f = parse("x.json", &text).unwrap_or_else(|e| panic!("{e}"));
        let steps = &f.cases[0].steps;
        let Step::Send(s) = &steps[0] else {
            panic!("{:?}", steps[0])
        };
        assert_eq!(s.payload, Payload::Bytes(vec![5, 0, 0x0b]));
        assert_eq!(s.patch[0].hex, Hex(vec![0xff]));
        assert_eq!(s.byte_delay, Some(Duration::from_millis(20)));
        let Step::Bind(b) = &steps[1] else {
            panic!("{:?}", steps[1])
        };
        assert_eq!(b.offer, [Transfer(NDR32), Transfer(SyntaxId::btfn(1))]);
        assert_eq!(b.contexts[0].interface.0.version, 1 | 2 << 16);
        let e = &b.expect;
        assert_eq!(
            e.results
                .as_deref()
                .map(|r| r.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
            Some(vec![
                "reject:transfer_syntaxes".to_owned(),
                "accept:ndr64".into(),
                "*".into()
            ])
        );
        assert_eq!(
            e.nak_reason,
            Some(RejectReason::ProtocolVersionNotSupported)
        );
        assert_eq!(e.fault_status, Some(FaultStatus::OpRangeError));
        assert_eq!(
            e.checks,
            Some(CheckSel::Names(vec![CheckId::Hmac, CheckId::RpcCallId]))
        );
        assert_eq!(
            e.hwid,
            Some(HwidExpect::Exactly([
                0x3A, 0x1C, 0x04, 0x96, 0x00, 0xB6, 0x00, 0x76
            ]))
        );
        let Step::Activate(a) = &steps[2] else {
            panic!("{:?}", steps[2])
        };
        assert_eq!(a.syntax, Some(CallSyntax::Ndr64));
        assert_eq!(a.request.version, Some(Version { major: 5, minor: 0 }));
        assert_eq!(
            a.request.sku().map(|s| s.name),
            Some("Windows Server 2012 Standard")
        );
        assert_eq!(a.request.machine, Machine::Fresh);
        assert_eq!(a.expect.hresult, Some(HResult(0xC004_F042)));
        assert_eq!(
            a.expect.max_over_handshake,
            Some(Duration::from_millis(100))
        );
        assert!(matches!(&steps[3], Step::Wait(w) if w.pause == Duration::from_millis(5)));
    }

    #[test]
    fn test_malformed_field_names_file_case_and_field() {
        let cases = [
            (
                r#"{"step": "activate", "expect": {"hresult": "0xZZ"}}"#,
                "steps[0] (activate).expect.hresult",
                "HRESULT \"0xZZ\"",
            ),
            (
                r#"{"step": "open"}, {"step": "activate", "request": {"product": "Windows 3.1"}}"#,
                "steps[1] (activate).request.product",
                "product \"Windows 3.1\": not in the catalog",
            ),
            (
                r#"{"step": "send", "hex": "abc"}"#,
                "steps[0] (send).hex",
                "odd number of hex digits",
            ),
            (
                r#"{"step": "send", "hex": "00", "template": "bind"}"#,
                "steps[0] (send)",
                "exactly one of hex and template",
            ),
            (
                r#"{"step": "bind", "offer": ["ndr33"]}"#,
                "steps[0] (bind).offer[0]",
                "transfer syntax \"ndr33\": ndr32, ndr64",
            ),
            (
                r#"{"step": "bind", "expect": {"checks": ["hmak"]}}"#,
                "steps[0] (bind).expect.checks",
                "unknown check \"hmak\"",
            ),
            (
                r#"{"step": "receive", "expect": {"fault_status": "op_range"}}"#,
                "steps[0] (receive).expect.fault_status",
                "fault status \"op_range\"",
            ),
            (
                r#"{"step": "activate", "expect": {"hresullt": "0x8007000D"}}"#,
                "steps[0] (activate).expect.hresullt",
                "unknown field `hresullt`",
            ),
            (
                r#"{"step": "jump"}"#,
                "steps[0].step",
                "unknown step \"jump\"",
            ),
        ];
        for (steps, field, message) in cases {
            let err = parse("x.json", &file_with(steps)).unwrap_err();
            let shown = err.to_string();
            let prefix = format!("x.json: case x.a: {field}: ");
            assert!(shown.starts_with(&prefix), "{shown} (wanted {prefix})");
            assert!(shown.contains(message), "{shown} (wanted {message})");
            assert!(matches!(err, LoadError::Field { .. }), "{err:?}");
        }
        let bad_level = file_with(r#"{"step": "open"}"#).replace("\"must\"", "\"mustt\"");
        let shown = parse("x.json", &bad_level).unwrap_err().to_string();
        assert!(shown.starts_with("x.json: case x.a: level: "), "{shown}");
    }
}
