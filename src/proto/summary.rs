//! The report model of one activation exchange, shared by every subcommand that reports one
//! (`activate` live, `inspect` from a capture): a request's fields with their catalog names, a
//! response's fields, and how the exchange ended. Pure data built from decoded wire values;
//! each serializes to the same JSON object in `kmsharness-activate/1` and
//! `kmsharness-inspect/1` (`docs/inspect.md` lists the fields).

use serde::Serialize;

use super::client::message::{ReceivedResponse, SentRequest};
use super::host::message::ReceivedRequest;
use crate::catalog::{self, Sku};
use crate::wire::Guid;
use crate::wire::kms::{self, FileTime, RequestBase, Version, Workstation};

/// Length of the MAC that ends a V4 request.
const V4_MAC_LEN: usize = 16;

/// Every field of a KMS request, with catalog names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RequestSummary {
    /// Message format from the envelope's major version: `V4`, `V5` or `V6`.
    pub message_format: kms::Format,
    /// Protocol version in the envelope (V5/V6) or base (V4), e.g. `6.0`.
    #[serde(serialize_with = "ser::display")]
    #[schemars(with = "String")]
    pub version: Version,
    /// Version inside the (decrypted) request base.
    #[serde(serialize_with = "ser::display")]
    #[schemars(with = "String")]
    pub base_version: Version,
    /// The VM field (1 = the client is a virtual machine).
    pub vm_info: u32,
    /// License status (0 unlicensed, 1 licensed, 2 OOB grace, 3 OOT grace, 4 non-genuine
    /// grace, 5 notification, 6 extended grace).
    pub license_status: u32,
    /// Its name, when in range.
    pub license_status_name: Option<&'static str>,
    /// Minutes left in the current license state.
    pub binding_expiration: u32,
    /// Application ID.
    pub app_id: Guid,
    /// Its name from the catalog (`Windows`, `Office 2010`, `Office 2013 and later`).
    pub application: Option<&'static str>,
    /// SKU (activation) ID.
    pub sku_id: Guid,
    /// The edition's name from the catalog.
    pub product: Option<&'static str>,
    /// KMS counted ID.
    pub kms_id: Guid,
    /// The product group's name from the catalog.
    pub kms_item: Option<&'static str>,
    /// Client machine ID.
    pub cmid: Guid,
    /// Previous client machine ID.
    pub previous_cmid: Guid,
    /// Client time, UTC, `YYYY-MM-DD HH:MM:SS`.
    #[serde(serialize_with = "ser::display")]
    #[schemars(with = "String")]
    pub client_time: FileTime,
    /// The same as a raw FILETIME (100 ns ticks since 1601).
    #[serde(serialize_with = "ser::filetime_raw")]
    #[schemars(with = "u64")]
    pub client_time_filetime: FileTime,
    /// Workstation name.
    #[serde(serialize_with = "ser::display")]
    #[schemars(with = "String")]
    pub workstation: Workstation,
    /// Required client count (N count policy).
    pub required_clients: u32,
    /// The IV as sent (V5/V6), hex.
    #[serde(serialize_with = "ser::opt_hex")]
    #[schemars(with = "Option<String>")]
    pub iv: Option<[u8; 16]>,
    /// The MAC as sent (V4), hex.
    #[serde(serialize_with = "ser::opt_hex")]
    #[schemars(with = "Option<String>")]
    pub mac: Option<[u8; 16]>,
}

impl RequestSummary {
    /// A request's fields; `sku` is the catalog's entry for `base.sku_id` (looked up by the
    /// caller, which may cache it: captures repeat the same SKU thousands of times).
    pub fn new(
        format: kms::Format,
        version: Version,
        base: &RequestBase,
        iv: [u8; 16],
        mac: Option<[u8; 16]>,
        sku: Option<&'static Sku>,
    ) -> RequestSummary {
        RequestSummary {
            message_format: format,
            version,
            base_version: base.version,
            vm_info: base.vm_info,
            license_status: base.license_status,
            license_status_name: license_status_name(base.license_status),
            binding_expiration: base.binding_expiration,
            app_id: base.app_id,
            application: sku
                .and_then(|s| s.application())
                .filter(|a| a.id == base.app_id)
                .or_else(|| catalog::application(&base.app_id))
                .map(|a| a.name),
            sku_id: base.sku_id,
            product: sku.map(|s| s.name),
            kms_id: base.kms_id,
            kms_item: sku
                .and_then(|s| s.kms_item())
                .filter(|k| k.id == base.kms_id)
                .or_else(|| catalog::kms_item(&base.kms_id))
                .map(|k| k.name),
            cmid: base.cmid,
            previous_cmid: base.previous_cmid,
            client_time: base.client_time,
            client_time_filetime: base.client_time,
            workstation: base.workstation,
            required_clients: base.required_clients,
            iv: (format != kms::Format::V4).then_some(iv),
            mac,
        }
    }

    /// A request as a host received it.
    pub fn received(req: &ReceivedRequest, sku: Option<&'static Sku>) -> RequestSummary {
        RequestSummary::new(req.format, req.version, &req.base, req.iv, req.mac, sku)
    }

    /// A request as this client sent it; `message` is the encoded KMS request (a V4 request
    /// ends with its MAC).
    pub fn sent(sent: &SentRequest, message: &[u8]) -> RequestSummary {
        let format = sent.version.format();
        let mac = (format == kms::Format::V4)
            .then(|| message.last_chunk::<V4_MAC_LEN>().copied())
            .flatten();
        let sku = catalog::sku(&sent.base.sku_id);
        RequestSummary::new(format, sent.version, &sent.base, sent.iv, mac, sku)
    }
}

/// The name of a license status value (MS-KMS license states, as slmgr names them).
pub fn license_status_name(s: u32) -> Option<&'static str> {
    Some(match s {
        0 => "unlicensed",
        1 => "licensed",
        2 => "OOB grace",
        3 => "OOT grace",
        4 => "non-genuine grace",
        5 => "notification",
        6 => "extended grace",
        _ => return None,
    })
}

/// The fields of a decoded KMS response, owned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ResponseSummary {
    /// Length of the KMS response, bytes.
    pub size: usize,
    /// Protocol version in the envelope (V5/V6) or base (V4).
    #[serde(serialize_with = "ser::display")]
    #[schemars(with = "String")]
    pub version: Version,
    /// The host's extended PID.
    pub epid: String,
    /// Hardware ID (V6), hex upper-case as vlmcs prints it.
    #[serde(serialize_with = "ser::opt_hex_upper")]
    #[schemars(with = "Option<String>")]
    pub hwid: Option<[u8; 8]>,
    /// Echoed client machine ID.
    pub cmid: Guid,
    /// Echoed client time, UTC.
    #[serde(serialize_with = "ser::display")]
    #[schemars(with = "String")]
    pub client_time: FileTime,
    /// The host's current count of activated clients.
    pub count: u32,
    /// Renewal interval, minutes.
    pub renewal_interval: u32,
    /// Activation interval, minutes.
    pub activation_interval: u32,
}

impl ResponseSummary {
    /// The fields of `resp`, a KMS response of `size` bytes.
    pub fn new(resp: &ReceivedResponse<'_>, size: usize) -> ResponseSummary {
        ResponseSummary {
            size,
            version: resp.version,
            epid: resp.base.epid_string(),
            hwid: resp.trailer.and_then(|t| t.v6).map(|v| v.hwid),
            cmid: resp.base.cmid,
            client_time: resp.base.client_time,
            count: resp.base.count,
            renewal_interval: resp.base.renewal_interval,
            activation_interval: resp.base.activation_interval,
        }
    }

    /// The hardware ID as the reports print it, upper-case hex.
    pub fn hwid_hex(&self) -> Option<String> {
        self.hwid.map(|h| ser::hex(&h, true))
    }
}

/// How one activation exchange ended. A live run and a capture end in different ways (a
/// capture cannot fail to connect; a live run is never unanswered without a timeout), so each
/// uses the variants that apply to it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A response came and every check passed.
    Ok,
    /// A response came but a check failed.
    ChecksFailed,
    /// The host returned an HRESULT instead of a response.
    Refused,
    /// The host answered with an RPC fault.
    Fault,
    /// The request or the reply could not be decoded.
    Undecodable,
    /// No reply in the capture.
    Unanswered,
    /// The RPC layer failed below the call: the bind was rejected, or a PDU was not the one
    /// expected.
    Rpc,
    /// No connection, or no answer in time.
    Connection,
}

impl Outcome {
    /// The snake_case name used in JSON and text.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ChecksFailed => "checks_failed",
            Outcome::Refused => "refused",
            Outcome::Fault => "fault",
            Outcome::Undecodable => "undecodable",
            Outcome::Unanswered => "unanswered",
            Outcome::Rpc => "rpc",
            Outcome::Connection => "connection",
        }
    }
}

/// serde helpers: the JSON forms of wire values, for the report models built on these.
pub mod ser {
    use std::fmt::{Display, Formatter, Result as FmtResult};

    use serde::Serializer;

    use crate::wire::kms::FileTime;
    use crate::wire::rpc::FaultStatus;

    /// A value by its `Display`.
    pub fn display<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// An optional value by its `Display`, or null.
    pub fn opt_display<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    /// A fault status with its code, `op_range_error (0x1C010002)`, or null.
    pub fn opt_fault<S: Serializer>(v: &Option<FaultStatus>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(&format_args!("{v:#}")),
            None => s.serialize_none(),
        }
    }

    /// A FILETIME as its raw tick count.
    pub fn filetime_raw<S: Serializer>(v: &FileTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.0)
    }

    struct Hex<'a>(&'a [u8], bool);

    impl Display for Hex<'_> {
        fn fmt(&self, f: &mut Formatter<'_>) -> FmtResult {
            self.0.iter().try_for_each(|b| {
                if self.1 {
                    write!(f, "{b:02X}")
                } else {
                    write!(f, "{b:02x}")
                }
            })
        }
    }

    /// Optional bytes as lower-case hex, or null.
    pub fn opt_hex<S: Serializer, const N: usize>(
        v: &Option<[u8; N]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(&Hex(v, false)),
            None => s.serialize_none(),
        }
    }

    /// Optional bytes as upper-case hex (as vlmcs prints hardware IDs), or null.
    pub fn opt_hex_upper<S: Serializer, const N: usize>(
        v: &Option<[u8; N]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(&Hex(v, true)),
            None => s.serialize_none(),
        }
    }

    /// Bytes as hex, for the text printers.
    pub fn hex(b: &[u8], upper: bool) -> String {
        Hex(b, upper).to_string()
    }
}
