//! The client's side of one KMS message exchange: build and encrypt a request; decrypt, decode
//! and verify the response with every check vlmcs makes.

use crate::crypto::{self, v4, v5, v6};
use crate::wire::codec::{Error, Reader, Result};
use crate::wire::kms::{
    Format, MAX_EPID_BYTES, RequestBase, ResponseBase, ResponseTrailer, V6_TRAILER_LEN, Version,
    response_len, split_envelope,
};

use crate::proto::check::{Check, CheckId, Checks, Value};

/// The AES key schedule a format uses (V4 messages are not encrypted: its MAC key).
pub fn cipher_for(format: Format) -> &'static crypto::rijndael::Rijndael {
    match format {
        Format::V4 => v4::cipher(),
        Format::V5 => v5::cipher(),
        Format::V6 => v6::cipher(),
    }
}

/// What a client remembers of a request in order to verify the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentRequest {
    /// Version in the envelope (V5/V6) or base (V4).
    pub version: Version,
    /// The request base as sent.
    pub base: RequestBase,
    /// The IV as sent on the wire (zeros for V4).
    pub iv: [u8; 16],
    /// The wire IV decrypted with the message key: what a host "decrypts" the IV block to when
    /// it decrypts the whole message with a null IV, and what V5/V6 responses refer back to.
    pub decrypted_iv: [u8; 16],
}

/// Builds the KMS request for `base` and appends it to `out`. The format follows the major
/// version in `base` (so deliberately wrong versions still produce a decodable body); `iv` is
/// the random IV for V5/V6.
pub fn encode_request(base: &RequestBase, iv: [u8; 16], out: &mut Vec<u8>) -> SentRequest {
    let format = base.version.format();
    let start = out.len();
    let mut decrypted_iv = [0u8; 16];
    match format {
        Format::V4 => {
            base.emit(out);
            let mac = v4::mac(&out[start..]);
            out.extend_from_slice(&mac);
        }
        Format::V5 | Format::V6 => {
            let cipher = cipher_for(format);
            out.extend_from_slice(&base.version.to_wire().to_le_bytes());
            out.extend_from_slice(&iv);
            let body = out.len();
            base.emit(out);
            crypto::pad(out, body);
            cipher.cbc_encrypt(&iv, &mut out[body..]);
            decrypted_iv = iv;
            cipher.decrypt_block(&mut decrypted_iv);
        }
    }
    SentRequest {
        version: base.version,
        base: *base,
        iv: if format == Format::V4 { [0; 16] } else { iv },
        decrypted_iv,
    }
}

/// Largest KMS response this crate decodes: a 128-byte ePID in a V6 response is 300 bytes.
pub const MAX_RESPONSE_LEN: usize = 512;

/// Scratch space a response is decrypted into; reused between messages to avoid allocation.
#[derive(Debug, Clone)]
pub struct ResponseBuf(pub [u8; MAX_RESPONSE_LEN]);

impl Default for ResponseBuf {
    fn default() -> Self {
        ResponseBuf([0; MAX_RESPONSE_LEN])
    }
}

/// A decoded response, borrowing its ePID from the buffer it was decrypted into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedResponse<'a> {
    /// Message format (from the request).
    pub format: Format,
    /// Version in the envelope (V5/V6) or base (V4).
    pub version: Version,
    /// The response IV as it came on the wire (V5/V6).
    pub iv: [u8; 16],
    /// The IV field after decryption (V5/V6).
    pub decrypted_iv: [u8; 16],
    /// The response base.
    pub base: ResponseBase<'a>,
    /// The V5/V6 trailer.
    pub trailer: Option<ResponseTrailer>,
    /// The V4 MAC as received.
    pub mac: Option<[u8; 16]>,
    /// Plaintext bytes after the expected layout (before padding); a correct host sends none.
    pub extra: usize,
}

/// Decrypts, decodes and verifies `msg`, the KMS response to `sent`.
///
/// Fails only when the message cannot be decoded at all (too short, not whole blocks, an ePID
/// size beyond the message); every other problem is a failed check in the returned list.
pub fn decode_response<'a>(
    sent: &SentRequest,
    msg: &[u8],
    buf: &'a mut ResponseBuf,
) -> Result<(ReceivedResponse<'a>, Checks)> {
    let mut checks = Checks::new();
    let received = decode_response_into(sent, msg, buf, &mut checks)?;
    Ok((received, checks))
}

/// [`decode_response`], its checks written into `checks` (appended, replacing any with the
/// same id): a load worker's verdict keeps its list in place instead of moving 1.4 KB out by
/// value.
pub fn decode_response_into<'a>(
    sent: &SentRequest,
    msg: &[u8],
    buf: &'a mut ResponseBuf,
    checks: &mut Checks,
) -> Result<ReceivedResponse<'a>> {
    let format = sent.version.format();
    if msg.len() > MAX_RESPONSE_LEN {
        return Err(Error::invalid(
            "KMS response",
            0,
            format!(
                "{} bytes exceed the {MAX_RESPONSE_LEN}-byte limit",
                msg.len()
            ),
        ));
    }
    // Whether the plaintext's end is known: V4 has no padding; V5/V6 when the padding is valid.
    let (outer, plain_len, iv, end_known) = match format {
        Format::V4 => {
            buf.0[..msg.len()].copy_from_slice(msg);
            (None, msg.len(), [0u8; 16], true)
        }
        Format::V5 | Format::V6 => {
            let (outer, rest) = split_envelope(msg)?;
            if rest.len() < 16 || !rest.len().is_multiple_of(16) {
                return Err(Error::invalid(
                    "KMS response ciphertext",
                    4,
                    format!("{} bytes is not a whole number of blocks", rest.len()),
                ));
            }
            let plain = &mut buf.0[..rest.len()];
            plain.copy_from_slice(rest);
            let mut iv = [0u8; 16];
            iv.copy_from_slice(&rest[..16]);
            // A null IV: the first block decrypts to the response's IV field itself.
            cipher_for(format).cbc_decrypt(&[0; 16], plain);
            let unpadded = crypto::unpadded_len(plain);
            let len = match unpadded {
                Ok(len) => {
                    checks.push(Check::new(
                        CheckId::Decrypt,
                        true,
                        Value::Text("PKCS#7 padding"),
                        Value::Num(plain[plain.len() - 1].into()),
                    ));
                    len
                }
                Err(e) => {
                    checks.push(Check::new(
                        CheckId::Decrypt,
                        false,
                        Value::Text("PKCS#7 padding"),
                        Value::Text(match e {
                            crypto::PadError::BadLength { .. } => "bad pad length byte",
                            crypto::PadError::BadByte { .. } => "pad bytes differ",
                            _ => "not whole blocks",
                        }),
                    ));
                    rest.len()
                }
            };
            (Some(outer), len, iv, unpadded.is_ok())
        }
    };
    let buf: &'a [u8] = &buf.0[..plain_len];
    let mut r = Reader::new(buf);
    let decrypted_iv = if format == Format::V4 {
        [0; 16]
    } else {
        r.array("response IV")?
    };
    let base = ResponseBase::parse(&mut r).map_err(|e| e.at(outer.map_or(0, |_| 4)))?;
    let (trailer, mac) = match format {
        Format::V4 => (None, Some(r.array::<16>("V4 MAC")?)),
        _ => (Some(ResponseTrailer::parse(&mut r, format)?), None),
    };
    // With bad padding the pad bytes are still in the plaintext: they are the decrypt
    // check's failure, not bytes after the layout.
    let extra = if end_known { r.remaining() } else { 0 };
    let received = ReceivedResponse {
        format,
        version: outer.unwrap_or(base.version),
        iv,
        decrypted_iv,
        base,
        trailer,
        mac,
        extra,
    };
    verify(sent, &received, buf, msg.len(), checks);
    Ok(received)
}

fn verify(
    sent: &SentRequest,
    resp: &ReceivedResponse<'_>,
    plain: &[u8],
    wire_len: usize,
    checks: &mut Checks,
) {
    let base = &resp.base;
    // All four versions must agree; report the first that does not.
    let versions = [sent.base.version, resp.version, base.version];
    let mismatch = versions.into_iter().find(|v| *v != sent.version);
    checks.push(Check::new(
        CheckId::Version,
        mismatch.is_none(),
        Value::Version(sent.version),
        Value::Version(mismatch.unwrap_or(base.version)),
    ));
    checks.push(Check::equal(
        CheckId::MachineId,
        Value::Guid(sent.base.cmid),
        Value::Guid(base.cmid),
    ));
    checks.push(Check::equal(
        CheckId::Timestamp,
        Value::Time(sent.base.client_time),
        Value::Time(base.client_time),
    ));
    let epid_len = base.epid.len();
    checks.push(Check::new(
        CheckId::EpidLength,
        (2..=MAX_EPID_BYTES).contains(&epid_len) && epid_len.is_multiple_of(2),
        Value::Text("even, 2..=128 bytes"),
        Value::Num(epid_len as u64),
    ));
    let units = epid_len / 2;
    let first_nul = base.epid_units().position(|u| u == 0);
    checks.push(Check::new(
        CheckId::EpidTermination,
        units > 0 && first_nul == Some(units - 1),
        Value::Num(units.saturating_sub(1) as u64),
        first_nul.map_or(Value::Text("no terminator"), |p| Value::Num(p as u64)),
    ));
    // Bytes after the layout are under no MAC or HMAC; a host that pads less to hide some
    // keeps the wire size, so the size alone does not show them.
    let expected_len = response_len(resp.format, epid_len);
    checks.push(Check::new(
        CheckId::ResponseSize,
        wire_len == expected_len && resp.extra == 0,
        Value::Num(expected_len as u64),
        if wire_len == expected_len && resp.extra > 0 {
            Value::Text("that size, with bytes after the layout inside the padding")
        } else {
            Value::Num(wire_len as u64)
        },
    ));
    match (resp.format, resp.mac, resp.trailer) {
        (Format::V4, Some(mac), _) => {
            let end = base.len();
            checks.push(Check::equal(
                CheckId::Mac,
                Value::Bytes16(v4::mac(&plain[..end])),
                Value::Bytes16(mac),
            ));
        }
        (_, _, Some(trailer)) => {
            let salt = crypto::xor16(&sent.decrypted_iv, &trailer.salt_xor);
            checks.push(Check::equal(
                CheckId::Hash,
                Value::Bytes32(crypto::sha256(&salt)),
                Value::Bytes32(trailer.hash),
            ));
            match trailer.v6 {
                None => checks.push(Check::equal(
                    CheckId::Ivs,
                    Value::Bytes16(sent.iv),
                    Value::Bytes16(resp.iv),
                )),
                Some(v6t) => {
                    checks.push(Check::equal(
                        CheckId::Ivs,
                        Value::Bytes16(sent.decrypted_iv),
                        Value::Bytes16(v6t.xored_ivs),
                    ));
                    checks.push(Check::new(
                        CheckId::IvNotIdentical,
                        resp.iv != sent.iv,
                        Value::Text("a fresh response IV"),
                        Value::Bytes16(resp.iv),
                    ));
                    let signed = &plain[..16 + base.len() + V6_TRAILER_LEN - v6::HMAC_LEN];
                    let expected = v6::slot_hmac(base.client_time.0, 0, signed);
                    // The neighbouring slots are tried only when the exact one fails.
                    let ok = expected == v6t.hmac
                        || [-1i8, 1].into_iter().any(|slot| {
                            v6::slot_hmac(base.client_time.0, slot, signed) == v6t.hmac
                        });
                    checks.push(Check::new(
                        CheckId::Hmac,
                        ok,
                        Value::Bytes16(expected),
                        Value::Bytes16(v6t.hmac),
                    ));
                }
            }
        }
        _ => {}
    }
}
