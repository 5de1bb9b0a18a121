//! The host's side of one KMS message exchange: decrypt and verify a request with the mirror of
//! the client's checks; build and encrypt the response.

use crate::crypto::{self, v4, v6};
use crate::wire::codec::{Error, Result};
use crate::wire::kms::{
    FileTime, Format, REQUEST_BASE_LEN, RequestBase, ResponseBase, ResponseTrailer, V4_REQUEST_LEN,
    V6_REQUEST_LEN, V6Trailer, Version, peek_version,
};

use crate::proto::check::{Check, CheckId, Checks, Value};
use crate::proto::client::message::{SentRequest, cipher_for};
use crate::proto::faults::{Fault, FaultSet};

/// How far a client's clock may be from the host's before a genuine host refuses it with
/// 0xC004F06C (vlmcsd's strict mode uses the same four hours).
pub const MAX_CLOCK_SKEW_SECS: u64 = 4 * 60 * 60;
/// Largest required client count a host accepts; vlmcsd refuses more with 0x8007000D.
pub const MAX_REQUIRED_CLIENTS: u32 = 1000;
/// Highest license status value Windows defines (6 = extended grace).
pub const MAX_LICENSE_STATUS: u32 = 6;

/// A decoded request, as a host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// Message format, from the major version of the first field.
    pub format: Format,
    /// Version in the envelope (V5/V6) or base (V4).
    pub version: Version,
    /// The decrypted request base.
    pub base: RequestBase,
    /// The IV as it came on the wire (V5/V6; zeros for V4).
    pub iv: [u8; 16],
    /// The wire IV decrypted with the message key (V5/V6).
    pub decrypted_iv: [u8; 16],
    /// The V4 MAC as received.
    pub mac: Option<[u8; 16]>,
}

impl ReceivedRequest {
    /// What the client that sent this request would remember of it: lets a third party (a
    /// capture decoder) verify the response.
    pub fn as_sent(&self) -> SentRequest {
        SentRequest {
            version: self.version,
            base: self.base,
            iv: self.iv,
            decrypted_iv: self.decrypted_iv,
        }
    }
}

/// Decrypts, decodes and checks a KMS request. `now`, when given, is the host's clock for the
/// client-time check.
///
/// Fails only when the message is too short to hold a request base; every other problem is a
/// failed check in the returned list.
pub fn decode_request(msg: &[u8], now: Option<FileTime>) -> Result<(ReceivedRequest, Checks)> {
    let mut checks = Checks::new();
    let request = decode_request_into(msg, now, &mut checks)?;
    Ok((request, checks))
}

/// [`decode_request`], its checks written into `checks` (appended, replacing any with the
/// same id): a host's step keeps its list in place instead of moving 1.4 KB out by value.
pub fn decode_request_into(
    msg: &[u8],
    now: Option<FileTime>,
    checks: &mut Checks,
) -> Result<ReceivedRequest> {
    let version = peek_version(msg)?;
    let format = version.format();
    let expected_len = match format {
        Format::V4 => V4_REQUEST_LEN,
        _ => V6_REQUEST_LEN,
    };
    if msg.len() < expected_len {
        return Err(Error::Truncated {
            field: match format {
                Format::V4 => "V4 request",
                _ => "V5/V6 request",
            },
            offset: 0,
            need: expected_len,
            have: msg.len(),
        });
    }
    // Longer requests are answered, the bytes after the message ignored: py-kms's V4 client
    // declares 256 bytes for its 252-byte message, Wine's RPC stack pads similarly, vlmcsd
    // accepts them on purpose, and nothing suggests a Windows host refuses them. The check
    // shows the length; only a shorter message (refused above) fails it.
    checks.push(Check::new(
        CheckId::RequestSize,
        msg.len() >= expected_len,
        Value::Text(match format {
            Format::V4 => "252 or more (bytes after the message ignored)",
            _ => "260 or more (bytes after the message ignored)",
        }),
        Value::Num(msg.len() as u64),
    ));
    let request = match format {
        Format::V4 => {
            let base = RequestBase::parse(msg)?;
            let mut mac = [0u8; 16];
            mac.copy_from_slice(&msg[REQUEST_BASE_LEN..V4_REQUEST_LEN]);
            checks.push(Check::equal(
                CheckId::Mac,
                Value::Bytes16(v4::mac(&msg[..REQUEST_BASE_LEN])),
                Value::Bytes16(mac),
            ));
            ReceivedRequest {
                format,
                version: base.version,
                base,
                iv: [0; 16],
                decrypted_iv: [0; 16],
                mac: Some(mac),
            }
        }
        Format::V5 | Format::V6 => {
            // Decrypt IV and body together with a null IV, as hosts do: the first block
            // yields the "decrypted request IV" the response refers back to.
            let mut plain = [0u8; V6_REQUEST_LEN - 4];
            plain.copy_from_slice(&msg[4..V6_REQUEST_LEN]);
            let mut iv = [0u8; 16];
            iv.copy_from_slice(&plain[..16]);
            cipher_for(format).cbc_decrypt(&[0; 16], &mut plain);
            let mut decrypted_iv = [0u8; 16];
            decrypted_iv.copy_from_slice(&plain[..16]);
            let body = &plain[16..];
            checks.push(Check::new(
                CheckId::Decrypt,
                crypto::unpadded_len(body) == Ok(REQUEST_BASE_LEN),
                Value::Num(REQUEST_BASE_LEN as u64),
                match crypto::unpadded_len(body) {
                    Ok(n) => Value::Num(n as u64),
                    Err(_) => Value::Text("invalid padding"),
                },
            ));
            let base = RequestBase::parse(body)?;
            checks.push(Check::equal(
                CheckId::Version,
                Value::Version(version),
                Value::Version(base.version),
            ));
            ReceivedRequest {
                format,
                version,
                base,
                iv,
                decrypted_iv,
                mac: None,
            }
        }
    };
    check_base(&request.base, version, now, checks);
    Ok(request)
}

fn check_base(base: &RequestBase, version: Version, now: Option<FileTime>, checks: &mut Checks) {
    checks.push(Check::new(
        CheckId::VersionSupported,
        version.is_supported(),
        Value::Text("4.0, 5.0 or 6.0"),
        Value::Version(version),
    ));
    checks.push(Check::new(
        CheckId::MachineIdFormat,
        base.cmid.is_rfc4122_v4(),
        Value::Text("RFC 4122 version 4 GUID"),
        Value::Guid(base.cmid),
    ));
    checks.push(Check::new(
        CheckId::VmFlag,
        base.vm_info <= 1,
        Value::Text("0 or 1"),
        Value::Num(base.vm_info.into()),
    ));
    checks.push(Check::new(
        CheckId::LicenseStatus,
        base.license_status <= MAX_LICENSE_STATUS,
        Value::Text("0..=6"),
        Value::Num(base.license_status.into()),
    ));
    let units = base.workstation.units().len();
    checks.push(Check::new(
        CheckId::Workstation,
        base.workstation.is_terminated() && units > 0,
        Value::Text("non-empty, NUL-terminated"),
        if base.workstation.is_terminated() {
            Value::Num(units as u64)
        } else {
            Value::Text("no terminator")
        },
    ));
    checks.push(Check::new(
        CheckId::RequiredClients,
        base.required_clients <= MAX_REQUIRED_CLIENTS,
        Value::Text("at most 1000"),
        Value::Num(base.required_clients.into()),
    ));
    if let Some(now) = now {
        let skew = now.0.abs_diff(base.client_time.0) / FileTime::TICKS_PER_SEC;
        checks.push(Check::new(
            CheckId::ClientTime,
            skew <= MAX_CLOCK_SKEW_SECS,
            Value::Time(now),
            Value::Time(base.client_time),
        ));
    }
}

/// The host's answer, before encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseParams<'e> {
    /// The ePID as UTF-16LE with its terminator (see [`crate::wire::kms::epid_to_wire`]).
    pub epid: &'e [u8],
    /// Hardware ID (V6 only).
    pub hwid: [u8; 8],
    /// Current count of distinct clients.
    pub count: u32,
    /// Minutes a client waits to retry a failed activation.
    pub activation_interval: u32,
    /// Minutes between renewals.
    pub renewal_interval: u32,
}

/// Randomness a host response needs, drawn by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostRandom {
    /// The salt whose hash the response carries (V5/V6).
    pub salt: [u8; 16],
    /// The response IV (V6; V5 reuses the request's).
    pub iv: [u8; 16],
}

/// Builds and encrypts the response to `req` and appends it to `out`.
pub fn encode_response(
    req: &ReceivedRequest,
    params: &ResponseParams<'_>,
    random: &HostRandom,
    out: &mut Vec<u8>,
) {
    encode_response_with_faults(req, params, random, FaultSet::NONE, out);
}

/// Longest ePID the oversize fault sends: one unit past the 64-unit buffer, terminated.
const OVERSIZE_EPID_UNITS: usize = 65;

/// [`encode_response`] with deliberate deviations (see [`super::faults`]); each one breaks
/// exactly the check it names and leaves the message otherwise consistent (a MAC or HMAC is
/// computed over the altered fields, so only the altered property is wrong).
pub fn encode_response_with_faults(
    req: &ReceivedRequest,
    params: &ResponseParams<'_>,
    random: &HostRandom,
    faults: FaultSet,
    out: &mut Vec<u8>,
) {
    let mut version = req.base.version;
    let mut envelope = req.version;
    if faults.has(Fault::WrongVersion) {
        version.minor ^= 1;
        envelope.minor ^= 1;
    }
    let mut cmid = req.base.cmid;
    if faults.has(Fault::MachineIdNotEchoed) {
        cmid.0[0] ^= 1;
    }
    let mut client_time = req.base.client_time;
    if faults.has(Fault::TimestampNotEchoed) {
        client_time.0 = client_time.0.wrapping_add(FileTime::TICKS_PER_SEC);
    }
    // Altered ePIDs live on the stack: the fault path allocates nothing either.
    let mut epid_buf = [0u8; 2 * OVERSIZE_EPID_UNITS];
    let epid: &[u8] = if faults.has(Fault::OversizeEpid) {
        for (i, b) in epid_buf[..2 * (OVERSIZE_EPID_UNITS - 1)]
            .iter_mut()
            .enumerate()
        {
            *b = if i % 2 == 0 { b'9' } else { 0 };
        }
        &epid_buf
    } else if faults.has(Fault::UnterminatedEpid) && params.epid.len() >= 4 {
        &params.epid[..params.epid.len() - 2]
    } else {
        params.epid
    };
    let base = ResponseBase {
        version,
        epid,
        cmid,
        client_time,
        count: params.count,
        activation_interval: params.activation_interval,
        renewal_interval: params.renewal_interval,
    };
    let start = out.len();
    match req.format {
        Format::V4 => {
            base.emit(out);
            let mut mac = v4::mac(&out[start..]);
            if faults.has(Fault::WrongMac) {
                mac[0] ^= 1;
            }
            out.extend_from_slice(&mac);
            if faults.has(Fault::ExtraBytes) {
                out.extend_from_slice(&[0; 16]);
            }
        }
        Format::V5 | Format::V6 => {
            out.extend_from_slice(&envelope.to_wire().to_le_bytes());
            let plain = out.len();
            // V5 answers under the request's own IV (clients check they are identical); V6
            // picks a fresh one (clients flag a reused one as an emulator's tell).
            let reuse_request_iv = match req.format {
                Format::V5 => !faults.has(Fault::WrongIvs),
                _ => faults.has(Fault::IdenticalIvs),
            };
            let iv = if reuse_request_iv {
                req.decrypted_iv
            } else {
                random.iv
            };
            out.extend_from_slice(&iv);
            base.emit(out);
            let mut hash = crypto::sha256(&random.salt);
            if faults.has(Fault::WrongHash) {
                hash[0] ^= 1;
            }
            let mut xored_ivs = req.decrypted_iv;
            if faults.has(Fault::WrongIvs) {
                xored_ivs[0] ^= 1;
            }
            let trailer = ResponseTrailer {
                salt_xor: crypto::xor16(&random.salt, &req.decrypted_iv),
                hash,
                v6: (req.format == Format::V6).then_some(V6Trailer {
                    hwid: params.hwid,
                    xored_ivs,
                    hmac: [0; 16],
                }),
            };
            trailer.emit(out);
            if req.format == Format::V6 {
                let hmac_at = out.len() - v6::HMAC_LEN;
                let mut tag = v6::slot_hmac(client_time.0, 0, &out[plain..hmac_at]);
                if faults.has(Fault::WrongHmac) {
                    tag[0] ^= 1;
                }
                out[hmac_at..].copy_from_slice(&tag);
            }
            if faults.has(Fault::ExtraBytes) {
                out.extend_from_slice(&[0; 16]);
            }
            crypto::pad(out, plain);
            if faults.has(Fault::BadPadding) {
                let last = out.len() - 1;
                out[last] = 0;
            }
            cipher_for(req.format).cbc_encrypt(&[0; 16], &mut out[plain..]);
        }
    }
}
