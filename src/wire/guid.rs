//! GUIDs as they travel in DCE/RPC and KMS bodies: 16 bytes, the first three fields little-endian.

use core::fmt;
use core::str::FromStr;

/// A GUID held in its wire form (Microsoft `GUID` struct layout).
///
/// ```text
///  0       4    6    8                16
/// +-------+----+----+-----------------+
/// | Data1 | D2 | D3 |      Data4      |
/// |  LE   | LE | LE |  bytes in order |
/// +-------+----+----+-----------------+
/// ```
///
/// The text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` prints Data1..Data3 as numbers, so
/// their bytes appear reversed relative to the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(pub [u8; 16]);

/// Why a GUID string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid GUID {text:?}: expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")]
pub struct GuidParseError {
    /// The text that was rejected.
    pub text: String,
}

/// Byte offset in the wire form for each hex digit pair of the text form, in text order.
const TEXT_TO_WIRE: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
/// Positions of the dashes in the 36-character text form.
const DASHES: [usize; 4] = [8, 13, 18, 23];

const fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

const fn parse_text(s: &[u8]) -> Option<[u8; 16]> {
    // Accept an optional pair of braces, as Windows tools print them.
    let (start, len) = if s.len() == 38 && s[0] == b'{' && s[37] == b'}' {
        (1, 36)
    } else {
        (0, s.len())
    };
    if len != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut pos = 0; // position within the 36 characters
    let mut byte = 0; // index into TEXT_TO_WIRE
    while pos < 36 {
        if pos == DASHES[0] || pos == DASHES[1] || pos == DASHES[2] || pos == DASHES[3] {
            if s[start + pos] != b'-' {
                return None;
            }
            pos += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (hex_value(s[start + pos]), hex_value(s[start + pos + 1]))
        else {
            return None;
        };
        out[TEXT_TO_WIRE[byte]] = hi << 4 | lo;
        byte += 1;
        pos += 2;
    }
    Some(out)
}

impl Guid {
    /// The all-zero GUID (used by KMS for "no previous machine ID").
    pub const NIL: Guid = Guid([0; 16]);

    /// Parses a GUID literal at compile time; for tables of constants.
    ///
    /// # Panics
    /// On a malformed literal, which in a `const` is a compile error.
    pub const fn from_str_const(s: &str) -> Guid {
        match parse_text(s.as_bytes()) {
            Some(b) => Guid(b),
            None => panic!("malformed GUID literal"),
        }
    }

    /// The GUID from its 16 wire bytes.
    pub const fn from_wire(bytes: [u8; 16]) -> Guid {
        Guid(bytes)
    }

    /// The 16 wire bytes.
    pub const fn as_wire(&self) -> &[u8; 16] {
        &self.0
    }

    /// Whether this is an RFC 4122 version 4 (random) GUID with the RFC variant bits, as
    /// Windows generates client machine IDs.
    pub const fn is_rfc4122_v4(&self) -> bool {
        self.0[7] >> 4 == 4 && self.0[8] >> 6 == 2
    }

    /// Turns 16 random bytes into a version 4 GUID (sets the version and variant bits).
    pub const fn new_v4(mut random: [u8; 16]) -> Guid {
        random[7] = (random[7] & 0x0f) | 0x40;
        random[8] = (random[8] & 0x3f) | 0x80;
        Guid(random)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &w) in TEXT_TO_WIRE.iter().enumerate() {
            if i == 4 || i == 6 || i == 8 || i == 10 {
                f.write_str("-")?;
            }
            write!(f, "{:02x}", self.0[w])?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl FromStr for Guid {
    type Err = GuidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_text(s.trim().as_bytes())
            .map(Guid)
            .ok_or_else(|| GuidParseError { text: s.to_owned() })
    }
}

impl serde::Serialize for Guid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A GUID is written as its lower-case text form.
impl schemars::JsonSchema for Guid {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Guid".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            "description": "A GUID in its text form, lower-case hex."
        })
    }
}

impl<'de> serde::Deserialize<'de> for Guid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// The KMS interface UUID as it appears in every captured bind (vlmcs, py-kms).
    static KMS_INTERFACE_WIRE: [u8; 16] = [
        0x75, 0x21, 0xc8, 0x51, 0x4e, 0x84, 0x50, 0x47, 0xb0, 0xd8, 0xec, 0x25, 0x55, 0x55, 0xbc,
        0x06,
    ];

    #[test]
    fn test_parse() {
        let g: Guid = "51c82175-844e-4750-b0d8-ec255555bc06".parse().unwrap();
        assert_eq!(g.0, KMS_INTERFACE_WIRE);
        let braced: Guid = "{51C82175-844E-4750-B0D8-EC255555BC06}".parse().unwrap();
        assert_eq!(braced, g);
    }

    #[test]
    fn test_display_roundtrip() {
        let g = Guid(KMS_INTERFACE_WIRE);
        assert_eq!(g.to_string(), "51c82175-844e-4750-b0d8-ec255555bc06");
        assert_eq!(
            Guid::from_str_const("51c82175-844e-4750-b0d8-ec255555bc06"),
            g
        );
    }

    #[test]
    fn test_rejects_malformed() {
        for bad in [
            "",
            "51c82175-844e-4750-b0d8-ec255555bc0",
            "51c82175-844e-4750-b0d8-ec255555bc0g",
            "51c82175+844e-4750-b0d8-ec255555bc06",
            "{51c82175-844e-4750-b0d8-ec255555bc06",
        ] {
            assert!(bad.parse::<Guid>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn test_v4() {
        let g = Guid::new_v4([0xff; 16]);
        assert!(g.is_rfc4122_v4());
        assert!(!Guid::NIL.is_rfc4122_v4());
        let cmid: Guid = "04a4885a-acaa-4f7c-aa80-6998149ec6bc".parse().unwrap();
        assert!(cmid.is_rfc4122_v4());
    }
}
