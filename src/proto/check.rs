//! Named validation checks with expected and actual values: what a client verifies in a
//! response (vlmcs's checks and more) and the mirror checks a host makes on a request.
//!
//! Checks are plain values in a fixed-size list, so validating a message allocates nothing.

use core::fmt;

use crate::wire::kms::{FileTime, Version};
use crate::wire::{Guid, HResult};

/// Every check this crate can report, by stable name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CheckId {
    // --- RPC layer (response side) ---
    /// The reply is the PDU type the request calls for.
    RpcPacketType,
    /// The reply carries the request's call id.
    RpcCallId,
    /// The reply's context id is the request's.
    RpcContextId,
    /// Single-fragment PDU flags as Windows sends them (first and last fragment set).
    RpcFragmentFlags,
    /// The multiplex flag of a bind_ack echoes the bind's; other replies do not set it.
    RpcMultiplexFlag,
    /// The reply's cancel count is zero.
    RpcCancelCount,
    /// A bind_ack answers every proposed context and accepts a KMS transfer syntax.
    RpcBindResults,
    /// The NDR size, max count and body length agree.
    NdrCounts,
    /// The NDR alignment bytes are zeros.
    NdrPadding,
    /// The activation call returned S_OK.
    ReturnValue,
    // --- KMS response ---
    /// The response decrypts to correctly padded plaintext (V5/V6).
    Decrypt,
    /// Versions agree: request envelope, request base, response envelope, response base.
    Version,
    /// The response echoes the request's client machine ID.
    MachineId,
    /// The response echoes the request's client time.
    Timestamp,
    /// V4: the response MAC verifies.
    Mac,
    /// V5/V6: SHA-256 of the recovered salt equals the hash.
    Hash,
    /// V5: response IV equals request IV. V6: the XORed-IVs field equals the decrypted request IV.
    Ivs,
    /// V6: the response IV differs from the request IV (identical IVs betray an emulator).
    IvNotIdentical,
    /// V6: the HMAC verifies for the echoed time slot (tolerance ±1).
    Hmac,
    /// The ePID size is even, at least one character, and fits the 128-byte buffer.
    EpidLength,
    /// The ePID is NUL-terminated with no NUL before the terminator.
    EpidTermination,
    /// The response has the length its ePID size implies.
    ResponseSize,
    // --- KMS request (host side) ---
    /// The request has the length its version implies (252 for V4, 260 for V5/V6).
    RequestSize,
    /// The protocol version is one a genuine host accepts (4.0, 5.0, 6.0).
    VersionSupported,
    /// The client machine ID is an RFC 4122 version 4 GUID, as Windows generates.
    MachineIdFormat,
    /// The VM flag is 0 or 1.
    VmFlag,
    /// The license status is 0 to 6.
    LicenseStatus,
    /// The workstation name is non-empty and NUL-terminated.
    Workstation,
    /// The required client count is one a host accepts (at most 1000).
    RequiredClients,
    /// The client time is within 4 hours of the host's clock.
    ClientTime,
}

impl CheckId {
    /// Every check, in declaration order.
    pub const ALL: &'static [CheckId] = &[
        CheckId::RpcPacketType,
        CheckId::RpcCallId,
        CheckId::RpcContextId,
        CheckId::RpcFragmentFlags,
        CheckId::RpcMultiplexFlag,
        CheckId::RpcCancelCount,
        CheckId::RpcBindResults,
        CheckId::NdrCounts,
        CheckId::NdrPadding,
        CheckId::ReturnValue,
        CheckId::Decrypt,
        CheckId::Version,
        CheckId::MachineId,
        CheckId::Timestamp,
        CheckId::Mac,
        CheckId::Hash,
        CheckId::Ivs,
        CheckId::IvNotIdentical,
        CheckId::Hmac,
        CheckId::EpidLength,
        CheckId::EpidTermination,
        CheckId::ResponseSize,
        CheckId::RequestSize,
        CheckId::VersionSupported,
        CheckId::MachineIdFormat,
        CheckId::VmFlag,
        CheckId::LicenseStatus,
        CheckId::Workstation,
        CheckId::RequiredClients,
        CheckId::ClientTime,
    ];

    /// Whether this is a check on the RPC layer of a reply (header, stub, return value).
    pub fn is_rpc(self) -> bool {
        use CheckId::*;
        matches!(
            self,
            RpcPacketType
                | RpcCallId
                | RpcContextId
                | RpcFragmentFlags
                | RpcMultiplexFlag
                | RpcCancelCount
                | RpcBindResults
                | NdrCounts
                | NdrPadding
                | ReturnValue
        )
    }

    /// Whether this is a check a host makes on a request (the others are a client's, on
    /// replies).
    pub fn is_request_side(self) -> bool {
        use CheckId::*;
        matches!(
            self,
            RequestSize
                | VersionSupported
                | MachineIdFormat
                | VmFlag
                | LicenseStatus
                | Workstation
                | RequiredClients
                | ClientTime
        )
    }

    /// The check with this stable name.
    pub fn from_name(name: &str) -> Option<CheckId> {
        CheckId::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// The stable snake_case name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            CheckId::RpcPacketType => "rpc_packet_type",
            CheckId::RpcCallId => "rpc_call_id",
            CheckId::RpcContextId => "rpc_context_id",
            CheckId::RpcFragmentFlags => "rpc_fragment_flags",
            CheckId::RpcMultiplexFlag => "rpc_multiplex_flag",
            CheckId::RpcCancelCount => "rpc_cancel_count",
            CheckId::RpcBindResults => "rpc_bind_results",
            CheckId::NdrCounts => "ndr_counts",
            CheckId::NdrPadding => "ndr_padding",
            CheckId::ReturnValue => "return_value",
            CheckId::Decrypt => "decrypt",
            CheckId::Version => "version",
            CheckId::MachineId => "machine_id",
            CheckId::Timestamp => "timestamp",
            CheckId::Mac => "mac",
            CheckId::Hash => "hash",
            CheckId::Ivs => "ivs",
            CheckId::IvNotIdentical => "iv_not_identical",
            CheckId::Hmac => "hmac",
            CheckId::EpidLength => "epid_length",
            CheckId::EpidTermination => "epid_termination",
            CheckId::ResponseSize => "response_size",
            CheckId::RequestSize => "request_size",
            CheckId::VersionSupported => "version_supported",
            CheckId::MachineIdFormat => "machine_id_format",
            CheckId::VmFlag => "vm_flag",
            CheckId::LicenseStatus => "license_status",
            CheckId::Workstation => "workstation",
            CheckId::RequiredClients => "required_clients",
            CheckId::ClientTime => "client_time",
        }
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value shown as "expected" or "actual" in a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// Nothing to show.
    None,
    /// A flag.
    Bool(bool),
    /// A number.
    Num(u64),
    /// A version.
    Version(Version),
    /// A GUID.
    Guid(Guid),
    /// A FILETIME.
    Time(FileTime),
    /// 8 bytes (hardware ID).
    Bytes8([u8; 8]),
    /// 16 bytes (IV, MAC, HMAC).
    Bytes16([u8; 16]),
    /// 32 bytes (hash).
    Bytes32([u8; 32]),
    /// An HRESULT.
    HResult(HResult),
    /// A fixed description.
    Text(&'static str),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn hex(f: &mut fmt::Formatter<'_>, b: &[u8]) -> fmt::Result {
            b.iter().try_for_each(|x| write!(f, "{x:02x}"))
        }
        match self {
            Value::None => f.write_str("-"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Num(n) => write!(f, "{n}"),
            Value::Version(v) => write!(f, "{v}"),
            Value::Guid(g) => write!(f, "{g}"),
            Value::Time(t) => write!(f, "{t} ({})", t.0),
            Value::Bytes8(b) => hex(f, b),
            Value::Bytes16(b) => hex(f, b),
            Value::Bytes32(b) => hex(f, b),
            Value::HResult(h) => write!(f, "{h}"),
            Value::Text(t) => f.write_str(t),
        }
    }
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::None => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Num(n) => s.serialize_u64(*n),
            other => s.collect_str(other),
        }
    }
}

/// The JSON forms [`Value`]'s `Serialize` writes.
impl schemars::JsonSchema for Value {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CheckValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["null", "boolean", "integer", "string"],
            "description": "A checked value: null when absent, a boolean, a number, or its text \
                (GUIDs, times, versions, hex bytes, HRESULTs with their names)."
        })
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Check {
    /// Which check.
    pub id: CheckId,
    /// Whether it passed.
    pub passed: bool,
    /// What a correct peer sends.
    pub expected: Value,
    /// What this peer sent.
    pub actual: Value,
}

impl Check {
    /// A check that passes when `expected == actual`.
    pub fn equal(id: CheckId, expected: Value, actual: Value) -> Check {
        Check {
            id,
            passed: expected == actual,
            expected,
            actual,
        }
    }

    /// A check with an explicit verdict.
    pub fn new(id: CheckId, passed: bool, expected: Value, actual: Value) -> Check {
        Check {
            id,
            passed,
            expected,
            actual,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.passed { "pass" } else { "FAIL" };
        write!(f, "{mark} {:<20}", self.id.name())?;
        if !self.passed {
            write!(f, " expected {} got {}", self.expected, self.actual)?;
        }
        Ok(())
    }
}

/// Room for the checks of one layer of one message: each list holds RPC, KMS-response or
/// request checks, never all three, and the largest (V6 response) has 11.
const CAPACITY: usize = 16;

/// The checks made on one message, in the order they were made.
#[derive(Clone, Copy)]
pub struct Checks {
    items: [Check; CAPACITY],
    len: usize,
}

impl Default for Checks {
    fn default() -> Self {
        Checks::EMPTY
    }
}

impl fmt::Debug for Checks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Checks {
    /// No checks.
    pub const EMPTY: Checks = Checks {
        items: [Check {
            id: CheckId::Version,
            passed: true,
            expected: Value::None,
            actual: Value::None,
        }; CAPACITY],
        len: 0,
    };

    /// An empty list.
    pub fn new() -> Checks {
        Checks::default()
    }

    /// Records a check, replacing an earlier one with the same id.
    pub fn push(&mut self, check: Check) {
        if let Some(slot) = self.items[..self.len].iter_mut().find(|c| c.id == check.id) {
            *slot = check;
        } else {
            debug_assert!(self.len < CAPACITY, "more checks than one layer makes");
            if let Some(slot) = self.items.get_mut(self.len) {
                *slot = check;
                self.len += 1;
            }
        }
    }

    /// Forgets every check made.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Records every check of `other`.
    pub fn extend(&mut self, other: &Checks) {
        for c in other.iter() {
            self.push(*c);
        }
    }

    /// The checks made.
    pub fn iter(&self) -> impl Iterator<Item = &Check> {
        self.items[..self.len].iter()
    }

    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.iter().filter(|c| !c.passed)
    }

    /// Whether every check made passed.
    pub fn all_passed(&self) -> bool {
        self.failed().next().is_none()
    }

    /// The check with this id, if it was made.
    pub fn get(&self, id: CheckId) -> Option<&Check> {
        self.iter().find(|c| c.id == id)
    }

    /// Whether the check with this id was made and passed.
    pub fn passed(&self, id: CheckId) -> bool {
        self.get(id).is_some_and(|c| c.passed)
    }

    /// Number of checks made.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no check was made.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl serde::Serialize for Checks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// Written as the array of the checks made.
impl schemars::JsonSchema for Checks {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Checks".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <Vec<Check>>::json_schema(generator)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_push_replaces_and_reports() {
        let mut c = Checks::new();
        c.push(Check::equal(
            CheckId::MachineId,
            Value::Num(1),
            Value::Num(1),
        ));
        c.push(Check::equal(CheckId::Hash, Value::Num(1), Value::Num(2)));
        assert_eq!(c.len(), 2);
        assert!(!c.all_passed());
        c.push(Check::equal(CheckId::Hash, Value::Num(2), Value::Num(2)));
        assert_eq!(c.len(), 2);
        assert!(c.all_passed());
        assert!(c.passed(CheckId::MachineId));
        assert!(!c.passed(CheckId::Hmac));
        let failed = Check::equal(CheckId::Timestamp, Value::Num(3), Value::Num(4));
        let shown = failed.to_string();
        assert!(shown.starts_with("FAIL timestamp "), "{shown}");
        assert!(shown.ends_with(" expected 3 got 4"), "{shown}");
    }

    #[test]
    fn test_names_unique() {
        let all = CheckId::ALL;
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
            assert_eq!(
                serde_json::to_string(a).unwrap(),
                format!("\"{}\"", a.name())
            );
        }
    }
}
