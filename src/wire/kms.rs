//! KMS message layouts: the 236-byte request base, the V4 request and response, the V5/V6
//! envelopes and the response base with its variable-length ePID and V5/V6 trailers.
//!
//! These are plaintext layouts; [`crate::proto`] applies the ciphers and MACs.

use core::fmt;

use super::Guid;
use super::codec::{Error, Put, Reader, Result, array16, le32, le64};

/// A KMS protocol version: on the wire a u32 with the minor version in the low half.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, schemars::JsonSchema,
)]
pub struct Version {
    /// Major version: 4, 5 or 6 for real clients.
    pub major: u16,
    /// Minor version: 0 for real clients.
    pub minor: u16,
}

impl Version {
    /// Windows Vista/7, Server 2008 (R2), Office 2010.
    pub const V4: Version = Version { major: 4, minor: 0 };
    /// Windows 8, Server 2012, Office 2013.
    pub const V5: Version = Version { major: 5, minor: 0 };
    /// Windows 8.1 and later, Server 2012 R2 and later, Office 2016 and later.
    pub const V6: Version = Version { major: 6, minor: 0 };

    /// From the wire u32.
    pub const fn from_wire(v: u32) -> Version {
        Version {
            major: (v >> 16) as u16,
            minor: v as u16,
        }
    }

    /// To the wire u32.
    pub const fn to_wire(self) -> u32 {
        (self.major as u32) << 16 | self.minor as u32
    }

    /// The message format this version uses. Clients pick the format by major version alone
    /// (vlmcs sends a V4 body for 3.x and a V6 body for 7.x; py-kms decodes by major only).
    pub const fn format(self) -> Format {
        if self.major <= 4 {
            Format::V4
        } else if self.major == 5 {
            Format::V5
        } else {
            Format::V6
        }
    }

    /// Whether a genuine host accepts this version (exactly 4.0, 5.0 or 6.0, per the vlmcs
    /// manual and vlmcsd's behaviour).
    pub const fn is_supported(self) -> bool {
        self.minor == 0 && self.major >= 4 && self.major <= 6
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({self})")
    }
}

impl core::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let bad = || format!("invalid protocol version {s:?}: expected MAJOR.MINOR, e.g. 6.0");
        let (a, b) = s.split_once('.').unwrap_or((s, "0"));
        Ok(Version {
            major: a.trim().parse().map_err(|_| bad())?,
            minor: b.trim().parse().map_err(|_| bad())?,
        })
    }
}

/// The three message formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, schemars::JsonSchema)]
pub enum Format {
    /// Plain request base plus a V4 MAC.
    V4,
    /// AES-128-CBC with the V5 key; response trailer with salt and hash.
    V5,
    /// AES with the tweaked V6 key; trailer adds hardware ID, xored IVs and HMAC.
    V6,
}

/// A Windows FILETIME: 100-nanosecond intervals since 1601-01-01 UTC.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    schemars::JsonSchema,
)]
pub struct FileTime(pub u64);

impl FileTime {
    /// Seconds between 1601-01-01 and 1970-01-01.
    pub const UNIX_EPOCH_SECS: u64 = 11_644_473_600;
    /// FILETIME ticks per second.
    pub const TICKS_PER_SEC: u64 = 10_000_000;

    /// From seconds since the Unix epoch.
    pub const fn from_unix_secs(secs: u64) -> FileTime {
        FileTime((secs + Self::UNIX_EPOCH_SECS) * Self::TICKS_PER_SEC)
    }

    /// Whole seconds since the Unix epoch (negative before 1970).
    pub const fn unix_secs(self) -> i64 {
        (self.0 / Self::TICKS_PER_SEC) as i64 - Self::UNIX_EPOCH_SECS as i64
    }

    /// `(year, month, day, hour, minute, second)` in UTC.
    pub fn to_utc(self) -> (i64, u32, u32, u32, u32, u32) {
        let secs = self.unix_secs();
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(days);
        (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
    }
}

/// Gregorian date of a day count from 1970-01-01 (Howard Hinnant's days-to-civil algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl fmt::Display for FileTime {
    /// `YYYY-MM-DD HH:MM:SS` in UTC, as vlmcs prints request timestamps.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s) = self.to_utc();
        write!(f, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
    }
}

impl fmt::Debug for FileTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileTime({} = {self})", self.0)
    }
}

/// Capacity of the workstation name field in UTF-16 code units, terminator included.
pub const WORKSTATION_UNITS: usize = 64;

/// The workstation name field: 64 UTF-16 units, NUL-terminated, kept verbatim (including any
/// bytes after the terminator) so that re-encoding reproduces the request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Workstation(pub [u16; WORKSTATION_UNITS]);

impl Workstation {
    /// Encodes `name`, truncated to 63 units so that a terminator always fits.
    pub fn new(name: &str) -> Workstation {
        let mut units = [0u16; WORKSTATION_UNITS];
        for (slot, u) in units[..WORKSTATION_UNITS - 1]
            .iter_mut()
            .zip(name.encode_utf16())
        {
            *slot = u;
        }
        Workstation(units)
    }

    /// The units before the first NUL (all 64 when there is none).
    pub fn units(&self) -> &[u16] {
        let end = self
            .0
            .iter()
            .position(|&u| u == 0)
            .unwrap_or(WORKSTATION_UNITS);
        &self.0[..end]
    }

    /// Whether a NUL terminator is present.
    pub fn is_terminated(&self) -> bool {
        self.0.contains(&0)
    }
}

impl fmt::Display for Workstation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in char::decode_utf16(self.units().iter().copied()) {
            write!(f, "{}", c.unwrap_or(char::REPLACEMENT_CHARACTER))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Workstation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Workstation({:?})", self.to_string())
    }
}

/// Length of the request base.
pub const REQUEST_BASE_LEN: usize = request_field::WORKSTATION.end;
/// Length of a V4 request: base and MAC.
pub const V4_REQUEST_LEN: usize = REQUEST_BASE_LEN + 16;
/// Length of a V5 or V6 request: clear version, IV, and the base padded to 240 bytes.
pub const V6_REQUEST_LEN: usize = 4 + 16 + REQUEST_BASE_LEN.next_multiple_of(16);

/// Byte ranges of the request base (all integers little-endian).
///
/// ```text
///   0 +-----------------------+  version (u16 minor, u16 major)
///   4 | vm_info               |  1 = client is a virtual machine
///   8 | license_status        |  0 unlicensed … 6 extended grace
///  12 | binding_expiration    |  minutes left in the current state
///  16 | application ID (16)   |  Windows / Office 2010 / Office 2013+
///  32 | SKU ID (16)           |  "activation ID": the edition
///  48 | KMS ID (16)           |  "KMS counted ID": what the host grants by
///  64 | client machine ID (16)|  counted by the host
///  80 | required clients      |  "N count policy": 25 or 5
///  84 | client time (8)       |  FILETIME
///  92 | previous machine ID   |  zeros unless the CMID changed
/// 108 | workstation (128)     |  UTF-16LE, NUL-terminated
/// 236 +-----------------------+
/// ```
mod request_field {
    use core::ops::Range;
    pub const VERSION: Range<usize> = 0..4;
    pub const VM_INFO: Range<usize> = 4..8;
    pub const LICENSE_STATUS: Range<usize> = 8..12;
    pub const BINDING_EXPIRATION: Range<usize> = 12..16;
    pub const APP_ID: Range<usize> = 16..32;
    pub const SKU_ID: Range<usize> = 32..48;
    pub const KMS_ID: Range<usize> = 48..64;
    pub const CMID: Range<usize> = 64..80;
    pub const REQUIRED_CLIENTS: Range<usize> = 80..84;
    pub const CLIENT_TIME: Range<usize> = 84..92;
    pub const PREVIOUS_CMID: Range<usize> = 92..108;
    pub const WORKSTATION: Range<usize> = 108..236;
}

/// A typed view of a request base over a buffer.
#[derive(Debug, Clone)]
pub struct RequestBaseView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RequestBaseView<T> {
    /// Wraps a buffer that holds at least a whole request base.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let have = buffer.as_ref().len();
        if have < REQUEST_BASE_LEN {
            return Err(Error::Truncated {
                field: "KMS request base",
                offset: 0,
                need: REQUEST_BASE_LEN,
                have,
            });
        }
        Ok(RequestBaseView { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Protocol version inside the base.
    pub fn version(&self) -> Version {
        Version::from_wire(le32(self.b(), request_field::VERSION.start))
    }
    /// The VM flag.
    pub fn vm_info(&self) -> u32 {
        le32(self.b(), request_field::VM_INFO.start)
    }
    /// License status.
    pub fn license_status(&self) -> u32 {
        le32(self.b(), request_field::LICENSE_STATUS.start)
    }
    /// Minutes left in the current license state.
    pub fn binding_expiration(&self) -> u32 {
        le32(self.b(), request_field::BINDING_EXPIRATION.start)
    }
    /// Application ID.
    pub fn app_id(&self) -> Guid {
        Guid(array16(self.b(), request_field::APP_ID.start))
    }
    /// SKU (activation) ID.
    pub fn sku_id(&self) -> Guid {
        Guid(array16(self.b(), request_field::SKU_ID.start))
    }
    /// KMS counted ID.
    pub fn kms_id(&self) -> Guid {
        Guid(array16(self.b(), request_field::KMS_ID.start))
    }
    /// Client machine ID.
    pub fn cmid(&self) -> Guid {
        Guid(array16(self.b(), request_field::CMID.start))
    }
    /// Required client count (N count policy).
    pub fn required_clients(&self) -> u32 {
        le32(self.b(), request_field::REQUIRED_CLIENTS.start)
    }
    /// Client time.
    pub fn client_time(&self) -> FileTime {
        FileTime(le64(self.b(), request_field::CLIENT_TIME.start))
    }
    /// Previous client machine ID.
    pub fn previous_cmid(&self) -> Guid {
        Guid(array16(self.b(), request_field::PREVIOUS_CMID.start))
    }
    /// Workstation name field.
    pub fn workstation(&self) -> Workstation {
        let raw = &self.b()[request_field::WORKSTATION];
        Workstation(core::array::from_fn(|i| {
            u16::from_le_bytes([raw[2 * i], raw[2 * i + 1]])
        }))
    }
}

/// The parsed request base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBase {
    /// Protocol version (must equal the envelope's for V5/V6).
    pub version: Version,
    /// 1 when the client is a virtual machine.
    pub vm_info: u32,
    /// License status: 0 unlicensed, 1 licensed, 2 OOB grace, 3 OOT grace, 4 non-genuine
    /// grace, 5 notification, 6 extended grace.
    pub license_status: u32,
    /// Minutes until the current state expires.
    pub binding_expiration: u32,
    /// Application ID.
    pub app_id: Guid,
    /// SKU (activation) ID.
    pub sku_id: Guid,
    /// KMS counted ID.
    pub kms_id: Guid,
    /// Client machine ID.
    pub cmid: Guid,
    /// Required client count.
    pub required_clients: u32,
    /// Client time.
    pub client_time: FileTime,
    /// Previous client machine ID.
    pub previous_cmid: Guid,
    /// Workstation name.
    pub workstation: Workstation,
}

impl RequestBase {
    /// This request turned into a new one: the machine `cmid` named `workstation` asking at
    /// `now`, everything else (version, product, license state, counts) as it was. The one
    /// re-stamping step behind `load --from-capture` and `replay --restamp`; the caller picks
    /// the identity and reads the clock.
    pub fn restamped(&self, cmid: Guid, workstation: Workstation, now: FileTime) -> RequestBase {
        RequestBase {
            cmid,
            workstation,
            client_time: now,
            ..*self
        }
    }

    /// vlmcs's default request as captured in `captures/vlmcs-vlmcsd-v6.pcap` (Windows Server
    /// 2019 ARM64 SKU, N = 5, workstation `ceo-laptop.htc.co.uk`), with the given version: the
    /// one sample request the examples, tests and benches share.
    pub fn example(version: Version) -> RequestBase {
        RequestBase {
            version,
            vm_info: 0,
            license_status: 2,
            binding_expiration: 43200,
            app_id: Guid::from_str_const("55c92734-d682-4d71-983e-d6ec3f16059f"),
            sku_id: Guid::from_str_const("8de8eb62-bbe0-40ac-ac17-f75595071ea3"),
            kms_id: Guid::from_str_const("8449b1fb-f0ea-497a-99ab-66ca96e9a0f5"),
            cmid: Guid::from_str_const("04a4885a-acaa-4f7c-aa80-6998149ec6bc"),
            required_clients: 5,
            client_time: FileTime::from_unix_secs(1_795_492_182),
            previous_cmid: Guid::NIL,
            workstation: Workstation::new("ceo-laptop.htc.co.uk"),
        }
    }

    /// Parses the first 236 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<RequestBase> {
        let v = RequestBaseView::new_checked(buf)?;
        Ok(RequestBase {
            version: v.version(),
            vm_info: v.vm_info(),
            license_status: v.license_status(),
            binding_expiration: v.binding_expiration(),
            app_id: v.app_id(),
            sku_id: v.sku_id(),
            kms_id: v.kms_id(),
            cmid: v.cmid(),
            required_clients: v.required_clients(),
            client_time: v.client_time(),
            previous_cmid: v.previous_cmid(),
            workstation: v.workstation(),
        })
    }

    /// Appends the 236-byte encoding to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.put_u32(self.version.to_wire());
        out.put_u32(self.vm_info);
        out.put_u32(self.license_status);
        out.put_u32(self.binding_expiration);
        out.put_guid(&self.app_id);
        out.put_guid(&self.sku_id);
        out.put_guid(&self.kms_id);
        out.put_guid(&self.cmid);
        out.put_u32(self.required_clients);
        out.put_u64(self.client_time.0);
        out.put_guid(&self.previous_cmid);
        // The name's 128 bytes in one append, not 64 of two bytes each.
        let mut name = [0u8; 2 * WORKSTATION_UNITS];
        for (b, u) in name.chunks_exact_mut(2).zip(self.workstation.0) {
            b.copy_from_slice(&u.to_le_bytes());
        }
        out.put(&name);
    }
}

/// Largest ePID a response may carry, in bytes (64 UTF-16 units, terminator included: the
/// buffer size every client implementation we know of uses).
pub const MAX_EPID_BYTES: usize = 128;
/// Bytes of the response base around the ePID: version and ePID size before it; machine ID,
/// client time, count and two intervals after it.
pub const RESPONSE_BASE_FIXED: usize = 8 + 36;
/// V5 trailer: the salt XORed with IVs, and the SHA-256 of the salt.
pub const V5_TRAILER_LEN: usize = 16 + 32;
/// V6 trailer: the V5 trailer, hardware ID, XORed IVs and HMAC.
pub const V6_TRAILER_LEN: usize = V5_TRAILER_LEN + 8 + 16 + 16;

/// The response base, borrowing its ePID from the (decrypted) buffer.
///
/// ```text
/// +---------+----------+-----------------------+---------+--------+-------+-------+-------+
/// | version | pid size | ePID (UTF-16LE, NUL)  | CMID    | client | count | act.  | renew |
/// |  u32    |  u32     | pid size bytes        | 16      | time 8 | u32   | u32   | u32   |
/// +---------+----------+-----------------------+---------+--------+-------+-------+-------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseBase<'a> {
    /// Protocol version (echo of the request's).
    pub version: Version,
    /// The ePID bytes as declared by the size field.
    pub epid: &'a [u8],
    /// Client machine ID (echo).
    pub cmid: Guid,
    /// Client time (echo).
    pub client_time: FileTime,
    /// Current count of distinct clients the host has seen.
    pub count: u32,
    /// Minutes a client waits before retrying a failed activation.
    pub activation_interval: u32,
    /// Minutes between renewals.
    pub renewal_interval: u32,
}

impl<'a> ResponseBase<'a> {
    /// Parses a response base from the start of `r`.
    pub fn parse(r: &mut Reader<'a>) -> Result<ResponseBase<'a>> {
        let version = Version::from_wire(r.u32("response version")?);
        let at = r.position();
        let pid_size = r.u32("ePID size")?;
        if pid_size as usize > r.remaining() {
            return Err(Error::invalid(
                "ePID size",
                at,
                format!("{pid_size} bytes but only {} left", r.remaining()),
            ));
        }
        let epid = r.take(pid_size as usize, "ePID")?;
        Ok(ResponseBase {
            version,
            epid,
            cmid: r.guid("response CMID")?,
            client_time: FileTime(r.u64("response client time")?),
            count: r.u32("current count")?,
            activation_interval: r.u32("activation interval")?,
            renewal_interval: r.u32("renewal interval")?,
        })
    }

    /// Appends the encoding to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.put_u32(self.version.to_wire());
        out.put_u32(self.epid.len() as u32);
        out.put(self.epid);
        out.put_guid(&self.cmid);
        out.put_u64(self.client_time.0);
        out.put_u32(self.count);
        out.put_u32(self.activation_interval);
        out.put_u32(self.renewal_interval);
    }

    /// Encoded length.
    pub fn len(&self) -> usize {
        RESPONSE_BASE_FIXED + self.epid.len()
    }

    /// Never empty; present for symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The ePID's UTF-16 units (a trailing odd byte is ignored).
    pub fn epid_units(&self) -> impl Iterator<Item = u16> + '_ {
        self.epid
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    }

    /// The ePID as text, up to its terminator.
    pub fn epid_string(&self) -> String {
        char::decode_utf16(self.epid_units().take_while(|&u| u != 0))
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    }
}

/// Encodes `epid` as UTF-16LE with a NUL terminator, the form a response carries.
pub fn epid_to_wire(epid: &str, out: &mut Vec<u8>) {
    for u in epid.encode_utf16().chain(core::iter::once(0)) {
        out.put_u16(u);
    }
}

/// What follows the response base in a V5 or V6 response (before padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseTrailer {
    /// The host's random salt XORed with the decrypted request IV (V6 and vlmcsd V5; a V5
    /// host may also XOR in the response IV).
    pub salt_xor: [u8; 16],
    /// SHA-256 of the salt.
    pub hash: [u8; 32],
    /// V6 only: the rest.
    pub v6: Option<V6Trailer>,
}

/// The V6-only part of the trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Trailer {
    /// The host's hardware ID.
    pub hwid: [u8; 8],
    /// The decrypted request IV (equivalently the XOR of the request's wire IV and its
    /// decryption).
    pub xored_ivs: [u8; 16],
    /// HMAC-SHA256 (last 16 bytes) over everything from the response IV to here.
    pub hmac: [u8; 16],
}

impl ResponseTrailer {
    /// Parses a trailer of the given format.
    pub fn parse(r: &mut Reader<'_>, format: Format) -> Result<ResponseTrailer> {
        let salt_xor = r.array("salt XOR IVs")?;
        let hash = r.array("salt hash")?;
        let v6 = if format == Format::V6 {
            Some(V6Trailer {
                hwid: r.array("hardware ID")?,
                xored_ivs: r.array("XORed IVs")?,
                hmac: r.array("HMAC")?,
            })
        } else {
            None
        };
        Ok(ResponseTrailer { salt_xor, hash, v6 })
    }

    /// Appends the encoding to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.put(&self.salt_xor);
        out.put(&self.hash);
        if let Some(v6) = &self.v6 {
            out.put(&v6.hwid);
            out.put(&v6.xored_ivs);
            out.put(&v6.hmac);
        }
    }
}

/// Length of the KMS response a correct host sends for an ePID of `epid_len` bytes: what vlmcs
/// calls the "correct response size".
pub const fn response_len(format: Format, epid_len: usize) -> usize {
    let base = RESPONSE_BASE_FIXED + epid_len;
    match format {
        Format::V4 => base + 16,
        Format::V5 => 4 + padded(16 + base + V5_TRAILER_LEN),
        Format::V6 => 4 + padded(16 + base + V6_TRAILER_LEN),
    }
}

/// Length after PKCS#7 padding (always at least one pad byte).
pub const fn padded(len: usize) -> usize {
    (len / 16 + 1) * 16
}

/// The clear part of a V5/V6 message: version, then the rest (IV and ciphertext).
pub fn split_envelope(msg: &[u8]) -> Result<(Version, &[u8])> {
    let mut r = Reader::new(msg);
    let version = Version::from_wire(r.u32("version")?);
    Ok((version, r.rest()))
}

/// Reads the version at the start of any KMS message without consuming it.
pub fn peek_version(msg: &[u8]) -> Result<Version> {
    split_envelope(msg).map(|(v, _)| v)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_lengths() {
        assert_eq!(REQUEST_BASE_LEN, 236);
        assert_eq!(V4_REQUEST_LEN, 252);
        assert_eq!(V6_REQUEST_LEN, 260);
        // 49-character ePID + NUL = 100 bytes; 50 characters = 102 (LCID 14337 vs 1033).
        assert_eq!(response_len(Format::V6, 102), 260);
        assert_eq!(response_len(Format::V4, 102), 162);
        assert_eq!(response_len(Format::V4, 100), 160);
    }

    #[test]
    fn test_version() {
        assert_eq!(Version::from_wire(0x0006_0000), Version::V6);
        assert_eq!(Version::V4.to_wire(), 0x0004_0000);
        assert_eq!("6.1".parse::<Version>().unwrap().to_wire(), 0x0006_0001);
        assert_eq!("5".parse::<Version>().unwrap(), Version::V5);
        assert!("x.1".parse::<Version>().is_err());
        assert!(!Version { major: 6, minor: 1 }.is_supported());
        assert_eq!(Version { major: 3, minor: 0 }.format(), Format::V4);
        assert_eq!(Version { major: 7, minor: 0 }.format(), Format::V6);
    }

    #[test]
    fn test_filetime_display() {
        // 2026-11-24 03:49:42 UTC.
        let t = FileTime::from_unix_secs(1_795_492_182);
        assert_eq!(t.to_string(), "2026-11-24 03:49:42");
        assert_eq!(FileTime(0).to_string(), "1601-01-01 00:00:00");
    }

    #[test]
    fn test_workstation() {
        let w = Workstation::new("ceo-laptop.htc.co.uk");
        assert_eq!(w.to_string(), "ceo-laptop.htc.co.uk");
        assert!(w.is_terminated());
        let long = Workstation::new(&"x".repeat(100));
        assert_eq!(long.units().len(), 63);
    }

    #[test]
    fn test_restamped_changes_only_identity_and_time() {
        let base = RequestBase::example(Version::V6);
        let cmid = Guid::new_v4([7; 16]);
        let w = Workstation::new("new-machine");
        let now = FileTime(0x01DA_0000_0000_0000);
        let got = base.restamped(cmid, w, now);
        assert_eq!((got.cmid, got.workstation, got.client_time), (cmid, w, now));
        let back = RequestBase {
            cmid: base.cmid,
            workstation: base.workstation,
            client_time: base.client_time,
            ..got
        };
        assert_eq!(back, base);
    }

    #[test]
    fn test_request_base_roundtrip() {
        let base = RequestBase::example(Version::V6);
        let mut out = Vec::new();
        base.emit(&mut out);
        assert_eq!(out.len(), REQUEST_BASE_LEN);
        assert_eq!(RequestBase::parse(&out).unwrap(), base);
        for cut in 0..REQUEST_BASE_LEN {
            assert!(RequestBase::parse(&out[..cut]).is_err());
        }
    }

    #[test]
    fn test_response_base_roundtrip() {
        let mut epid = Vec::new();
        epid_to_wire(
            "03612-00206-569-992245-03-14337-17763.0000-1622026",
            &mut epid,
        );
        assert_eq!(epid.len(), 102);
        let base = ResponseBase {
            version: Version::V6,
            epid: &epid,
            cmid: Guid::from_str_const("04a4885a-acaa-4f7c-aa80-6998149ec6bc"),
            client_time: FileTime(1),
            count: 10,
            activation_interval: 120,
            renewal_interval: 10080,
        };
        let mut out = Vec::new();
        base.emit(&mut out);
        assert_eq!(out.len(), base.len());
        let mut r = Reader::new(&out);
        let back = ResponseBase::parse(&mut r).unwrap();
        assert_eq!(back, base);
        assert_eq!(
            back.epid_string(),
            "03612-00206-569-992245-03-14337-17763.0000-1622026"
        );
        for cut in 0..out.len() {
            assert!(ResponseBase::parse(&mut Reader::new(&out[..cut])).is_err());
        }
    }
}
