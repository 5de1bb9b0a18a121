//! The stub of the KMS activation call (opnum 0) in NDR32 and NDR64: a counted byte array in,
//! a counted byte array and an HRESULT out.
//!
//! The IDL (vlmcsd's `KMSServer.idl` describes it) is, in effect,
//! `HRESULT RequestActivation([in] DWORD requestSize, [in, size_is(requestSize)] BYTE *request,
//! [out] DWORD *responseSize, [out, size_is(, *responseSize)] BYTE **response)`.

use core::fmt;

use super::HResult;
use super::codec::{Error, Put, Reader, Result, pad_to};

/// Transfer syntax of a presentation context, which decides the width of counts and pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, schemars::JsonSchema)]
pub enum Syntax {
    /// NDR 2.0: 32-bit counts and pointers.
    #[serde(rename = "NDR32")]
    Ndr32,
    /// NDR64: 64-bit counts and pointers.
    #[serde(rename = "NDR64")]
    Ndr64,
}

impl Syntax {
    /// `NDR32` or `NDR64`, as vlmcs and the reports print it.
    pub const fn name(self) -> &'static str {
        match self {
            Syntax::Ndr32 => "NDR32",
            Syntax::Ndr64 => "NDR64",
        }
    }

    /// Width of a count or pointer in bytes.
    pub const fn word(self) -> usize {
        match self {
            Syntax::Ndr32 => 4,
            Syntax::Ndr64 => 8,
        }
    }

    /// Bytes the request stub adds around the KMS request.
    pub const fn request_overhead(self) -> usize {
        2 * self.word()
    }

    /// Bytes the response stub adds around a KMS response of `len` bytes.
    pub const fn response_overhead(self, len: usize) -> usize {
        3 * self.word() + pad_to(len, 4) + 4
    }

    fn read_word(self, r: &mut Reader<'_>, field: &'static str) -> Result<u64> {
        match self {
            Syntax::Ndr32 => r.u32(field).map(u64::from),
            Syntax::Ndr64 => r.u64(field),
        }
    }

    fn put_word(self, out: &mut Vec<u8>, v: u64) {
        match self {
            Syntax::Ndr32 => out.put_u32(v as u32),
            Syntax::Ndr64 => out.put_u64(v),
        }
    }
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The referent ID Windows (and every captured host) uses for the response pointer.
pub const RESPONSE_REFERENT: u64 = 0x0002_0000;

/// The activation call's input stub.
///
/// ```text
/// +----------------+----------------+-------------------------+
/// | request size   | max count      | KMS request bytes…      |
/// | u32 / u64      | u32 / u64      |                         |
/// +----------------+----------------+-------------------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationRequest<'a> {
    /// Transfer syntax the stub is in.
    pub syntax: Syntax,
    /// The `requestSize` argument.
    pub size: u64,
    /// The conformant array's max count (should equal `size`).
    pub max_count: u64,
    /// The KMS request: every byte after the two counts.
    pub body: &'a [u8],
}

impl<'a> ActivationRequest<'a> {
    /// A consistent stub around `body`.
    pub fn new(syntax: Syntax, body: &'a [u8]) -> Self {
        ActivationRequest {
            syntax,
            size: body.len() as u64,
            max_count: body.len() as u64,
            body,
        }
    }

    /// Parses a request stub. The counts are not required to agree with the body: that is a
    /// check ([`Self::counts_agree`]), so that a lying stub can still be shown.
    pub fn parse(syntax: Syntax, stub: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(stub);
        let size = syntax.read_word(&mut r, "requestSize")?;
        let max_count = syntax.read_word(&mut r, "request max_count")?;
        Ok(ActivationRequest {
            syntax,
            size,
            max_count,
            body: r.rest(),
        })
    }

    /// Whether both counts equal the number of bytes that arrived.
    pub fn counts_agree(&self) -> bool {
        self.size == self.body.len() as u64 && self.max_count == self.body.len() as u64
    }

    /// The KMS message the stub declares, as an NDR unmarshaller reads it: `max_count` bytes,
    /// which must equal `requestSize` (the array is `size_is(requestSize)`) and must have
    /// arrived. Bytes after them are not part of the call's arguments and are left unread, as
    /// NDR engines leave them: py-kms's V4 client sends 256 bytes for a 252-byte message.
    pub fn declared_message(&self) -> core::result::Result<&'a [u8], StubMismatch> {
        if self.size != self.max_count {
            return Err(StubMismatch::SizeIsMaxCount);
        }
        usize::try_from(self.max_count)
            .ok()
            .and_then(|n| self.body.get(..n))
            .ok_or(StubMismatch::Short)
    }

    /// The transfer syntax a request stub is laid out in, inferred from the stub alone (for a
    /// context whose bind was not captured): the syntax whose two counts both equal the bytes
    /// after them. At most one can: the first NDR32 count and the low half of the first NDR64
    /// count are the same four bytes, which cannot equal both `len - 8` and `len - 16`. `None`
    /// when neither layout agrees.
    pub fn infer_syntax(stub: &[u8]) -> Option<Syntax> {
        [Syntax::Ndr32, Syntax::Ndr64]
            .into_iter()
            .find(|&syntax| ActivationRequest::parse(syntax, stub).is_ok_and(|r| r.counts_agree()))
    }

    /// Appends the stub to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        self.syntax.put_word(out, self.size);
        self.syntax.put_word(out, self.max_count);
        out.put(self.body);
    }
}

/// Why a request stub holds no declared message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StubMismatch {
    /// `requestSize` and the array's max count differ.
    SizeIsMaxCount,
    /// The array ends after the stub does.
    Short,
}

/// The activation call's output stub.
///
/// ```text
/// success:
/// +-------------+-------------+-------------+------------------+-----+----------+
/// | resp. size  | referent ID | max count   | KMS response…    | pad | HRESULT  |
/// | u32 / u64   | u32 / u64   | u32 / u64   |                  | →4  | u32      |
/// +-------------+-------------+-------------+------------------+-----+----------+
/// refusal (null pointer):
/// +-------------+-------------+----------+
/// | 0           | 0           | HRESULT  |
/// +-------------+-------------+----------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationResponse<'a> {
    /// Transfer syntax the stub is in.
    pub syntax: Syntax,
    /// The `*responseSize` out argument.
    pub size: u64,
    /// Referent ID of the response pointer; 0 is a null pointer (no response body).
    pub referent: u64,
    /// The conformant array's max count, present when the pointer is not null.
    pub max_count: Option<u64>,
    /// The KMS response bytes (empty for a refusal).
    pub body: &'a [u8],
    /// Alignment bytes before the return value (NDR says zeros).
    pub pad: &'a [u8],
    /// The call's return value: S_OK, or why the host refused.
    pub hresult: HResult,
}

impl<'a> ActivationResponse<'a> {
    /// A successful stub around `body`.
    pub fn ok(syntax: Syntax, body: &'a [u8]) -> Self {
        const ZEROS: [u8; 3] = [0; 3];
        ActivationResponse {
            syntax,
            size: body.len() as u64,
            referent: RESPONSE_REFERENT,
            max_count: Some(body.len() as u64),
            body,
            pad: &ZEROS[..pad_to(body.len(), 4)],
            hresult: HResult::S_OK,
        }
    }

    /// A refusal: no response body, only the HRESULT.
    pub fn refusal(syntax: Syntax, hresult: HResult) -> Self {
        ActivationResponse {
            syntax,
            size: 0,
            referent: 0,
            max_count: None,
            body: &[],
            pad: &[],
            hresult,
        }
    }

    /// Parses a response stub; the whole stub must be consumed.
    pub fn parse(syntax: Syntax, stub: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(stub);
        let size = syntax.read_word(&mut r, "responseSize")?;
        let referent = syntax.read_word(&mut r, "response referent")?;
        let (max_count, body, pad) = if referent == 0 {
            (None, &[][..], &[][..])
        } else {
            let at = r.position();
            let max_count = syntax.read_word(&mut r, "response max_count")?;
            let len = usize::try_from(max_count).map_err(|_| {
                Error::invalid("response max_count", at, format!("{max_count} is absurd"))
            })?;
            let body = r.take(len, "KMS response")?;
            let pad = r.take(pad_to(r.position(), 4), "stub pad")?;
            (Some(max_count), body, pad)
        };
        let hresult = HResult(r.u32("return value")?);
        r.finish("activation response stub")?;
        Ok(ActivationResponse {
            syntax,
            size,
            referent,
            max_count,
            body,
            pad,
            hresult,
        })
    }

    /// Whether the size argument, max count and body length agree.
    pub fn counts_agree(&self) -> bool {
        match self.max_count {
            Some(mc) => mc == self.size && mc == self.body.len() as u64,
            None => self.size == 0,
        }
    }

    /// Whether the alignment bytes are zeros, as NDR requires.
    pub fn pad_is_zero(&self) -> bool {
        self.pad.iter().all(|&b| b == 0)
    }

    /// Appends the stub to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        self.syntax.put_word(out, self.size);
        self.syntax.put_word(out, self.referent);
        if let Some(mc) = self.max_count {
            self.syntax.put_word(out, mc);
            out.put(self.body);
            let need = pad_to(out.len(), 4);
            if self.pad.len() == need {
                out.put(self.pad);
            } else {
                out.resize(out.len() + need, 0);
            }
        }
        out.put_u32(self.hresult.0);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// vlmcsd's refusal of an unsupported version (shared captures README, observation 6).
    static REFUSAL_NDR32: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0x0d, 0, 0x07, 0x80];

    #[test]
    fn test_parse_refusal() {
        let r = ActivationResponse::parse(Syntax::Ndr32, &REFUSAL_NDR32).unwrap();
        assert_eq!(r.hresult, HResult::INVALID_DATA);
        assert!(r.body.is_empty());
        assert!(r.counts_agree());
        let mut out = Vec::new();
        r.emit(&mut out);
        assert_eq!(out, REFUSAL_NDR32);
        assert_eq!(
            ActivationResponse::refusal(Syntax::Ndr32, HResult::INVALID_DATA),
            r
        );
    }

    #[test]
    fn test_roundtrip_both_syntaxes() {
        for syntax in [Syntax::Ndr32, Syntax::Ndr64] {
            for len in [0usize, 1, 2, 3, 160, 162, 260] {
                let body = vec![0xa5; len];
                let stub = ActivationResponse::ok(syntax, &body);
                let mut out = Vec::new();
                stub.emit(&mut out);
                assert_eq!(out.len(), syntax.response_overhead(len) + len);
                let back = ActivationResponse::parse(syntax, &out).unwrap();
                assert_eq!(back, stub);
                assert!(back.counts_agree() && back.pad_is_zero());

                let req = ActivationRequest::new(syntax, &body);
                let mut out = Vec::new();
                req.emit(&mut out);
                assert_eq!(out.len(), syntax.request_overhead() + len);
                assert_eq!(ActivationRequest::parse(syntax, &out).unwrap(), req);
            }
        }
    }

    #[test]
    fn test_infer_request_syntax() {
        for syntax in [Syntax::Ndr32, Syntax::Ndr64] {
            for len in [0usize, 1, 4, 8, 252, 260] {
                let body = vec![0x5a; len];
                let mut out = Vec::new();
                ActivationRequest::new(syntax, &body).emit(&mut out);
                assert_eq!(ActivationRequest::infer_syntax(&out), Some(syntax), "{len}");
                // A count that lies, or a byte more or less, matches neither layout.
                for bad in [&out[..out.len() - 1], &[&out[..], &[0]].concat()[..]] {
                    assert_eq!(ActivationRequest::infer_syntax(bad), None, "{len}");
                }
            }
        }
        for short in [&[][..], &[0u8; 7][..], &[1, 0, 0, 0, 1, 0, 0, 0][..]] {
            assert_eq!(ActivationRequest::infer_syntax(short), None);
        }
    }

    #[test]
    fn test_impossible_len() {
        let body = [7u8; 10];
        let mut out = Vec::new();
        ActivationResponse::ok(Syntax::Ndr64, &body).emit(&mut out);
        for cut in 0..out.len() {
            assert!(ActivationResponse::parse(Syntax::Ndr64, &out[..cut]).is_err());
        }
        let mut huge = out.clone();
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(ActivationResponse::parse(Syntax::Ndr64, &huge).is_err());
    }
}
