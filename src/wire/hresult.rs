//! HRESULT status codes a KMS host returns in place of a response, with their Windows names.

use core::fmt;

/// A 32-bit Windows status code. Debug and Display print the symbolic name when it is known.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct HResult(pub u32);

/// One named status code: the symbolic name from the Windows SDK and a short meaning.
struct Named {
    code: u32,
    name: &'static str,
    meaning: &'static str,
}

// Codes are Microsoft's (Windows SDK `slerror.h`, `winerror.h`); the KMS-relevant subset, as
// returned by hosts in the activation call's return value or reported by clients.
#[rustfmt::skip]
const NAMES: &[Named] = &[
    Named { code: 0x0000_0000, name: "S_OK", meaning: "success" },
    Named { code: 0x8007_000D, name: "ERROR_INVALID_DATA", meaning: "the request is invalid (unsupported protocol version or malformed request)" },
    Named { code: 0x8007_0005, name: "E_ACCESSDENIED", meaning: "access denied" },
    Named { code: 0x8007_0057, name: "E_INVALIDARG", meaning: "invalid argument" },
    Named { code: 0x8007_000E, name: "E_OUTOFMEMORY", meaning: "the host ran out of memory" },
    Named { code: 0x8000_4005, name: "E_FAIL", meaning: "unspecified failure" },
    Named { code: 0x8007_06BA, name: "RPC_S_SERVER_UNAVAILABLE", meaning: "the RPC server is unavailable" },
    Named { code: 0xC004_D104, name: "SL_REMAPPING_SP_STATUS_INVALIDARG", meaning: "the security processor reported invalid data (vlmcsd: client list full)" },
    Named { code: 0xC004_F038, name: "SL_E_VL_NOT_ENOUGH_COUNT", meaning: "the count reported by the KMS host is insufficient" },
    Named { code: 0xC004_F039, name: "SL_E_VL_BINDING_SERVICE_NOT_ENABLED", meaning: "the KMS host is not enabled" },
    Named { code: 0xC004_F041, name: "SL_E_VL_KEY_MANAGEMENT_SERVICE_NOT_ACTIVATED", meaning: "the KMS host itself is not activated" },
    Named { code: 0xC004_F042, name: "SL_E_VL_KEY_MANAGEMENT_SERVICE_ID_MISMATCH", meaning: "this KMS host cannot activate the requested product (KMS ID outside its host key group)" },
    Named { code: 0xC004_F050, name: "SL_E_INVALID_PRODUCT_KEY", meaning: "the product key is invalid" },
    Named { code: 0xC004_F056, name: "SL_E_VL_MACHINE_NOT_BOUND", meaning: "the product could not be activated using KMS" },
    Named { code: 0xC004_F06B, name: "SL_E_VL_KEY_MANAGEMENT_SERVICE_VM_NOT_SUPPORTED", meaning: "the KMS host does not run in a virtual machine" },
    Named { code: 0xC004_F06C, name: "SL_E_VL_INVALID_TIMESTAMP", meaning: "the request timestamp is too far from the host's clock" },
    Named { code: 0xC004_F074, name: "SL_E_VL_BINDING_SERVICE_UNAVAILABLE", meaning: "no KMS host could be contacted" },
];

impl HResult {
    /// Success.
    pub const S_OK: HResult = HResult(0);
    /// `ERROR_INVALID_DATA` as an HRESULT: what hosts return for unsupported versions and
    /// malformed or absurd requests.
    pub const INVALID_DATA: HResult = HResult(0x8007_000D);
    /// The requested product is outside the host's key group.
    pub const KMS_ID_MISMATCH: HResult = HResult(0xC004_F042);
    /// The client's clock is more than the allowed skew away from the host's.
    pub const INVALID_TIMESTAMP: HResult = HResult(0xC004_F06C);
    /// The host is not activated.
    pub const NOT_ACTIVATED: HResult = HResult(0xC004_F041);

    fn named(self) -> Option<&'static Named> {
        NAMES.iter().find(|n| n.code == self.0)
    }

    /// The symbolic name, when known.
    pub fn name(self) -> Option<&'static str> {
        self.named().map(|n| n.name)
    }

    /// A short meaning, when known.
    pub fn meaning(self) -> Option<&'static str> {
        self.named().map(|n| n.meaning)
    }

    /// Whether the severity bit marks a failure.
    pub const fn is_failure(self) -> bool {
        self.0 & 0x8000_0000 != 0
    }
}

impl fmt::Display for HResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "0x{:08X} ({name})", self.0),
            None => write!(f, "0x{:08X}", self.0),
        }
    }
}

impl fmt::Debug for HResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_names() {
        assert_eq!(
            HResult(0x8007000D).to_string(),
            "0x8007000D (ERROR_INVALID_DATA)"
        );
        assert_eq!(
            HResult::KMS_ID_MISMATCH.name(),
            Some("SL_E_VL_KEY_MANAGEMENT_SERVICE_ID_MISMATCH")
        );
        assert_eq!(HResult(0x1234).to_string(), "0x00001234");
        assert!(HResult::INVALID_TIMESTAMP.is_failure());
        assert!(!HResult::S_OK.is_failure());
    }

    #[test]
    fn test_codes_unique() {
        for (i, a) in NAMES.iter().enumerate() {
            for b in &NAMES[i + 1..] {
                assert_ne!(a.code, b.code, "{}", a.name);
            }
        }
    }
}
