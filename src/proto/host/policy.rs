//! The rules by which a genuine host refuses a request, in the order they apply, each with the
//! HRESULT it answers and its source; and the host's decision on one request.

use core::fmt;

use serde::Serialize;

use crate::proto::check::{CheckId, Value};
use crate::wire::HResult;

use super::message::ResponseParams;

/// The rules by which a genuine host refuses a request, in the order they are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalRule {
    /// Rule 1: the protocol version is not exactly 4.0, 5.0 or 6.0.
    UnsupportedVersion,
    /// Rule 2: the V4 MAC or V5/V6 decryption failed, or the versions disagree.
    IntegrityFailed,
    /// Rule 3: the required client count (N count policy) is above 1000.
    TooManyRequiredClients,
    /// Rule 4: the client's clock is more than the allowed skew from the host's.
    ClockSkew,
    /// Rule 5: no configured key group activates the KMS ID.
    KmsIdNotInKeyGroup,
    /// Rule 5: the application ID is not the KMS ID's application.
    ApplicationMismatch,
}

impl RefusalRule {
    /// Every rule, in the order applied.
    pub const ALL: [RefusalRule; 6] = [
        RefusalRule::UnsupportedVersion,
        RefusalRule::IntegrityFailed,
        RefusalRule::TooManyRequiredClients,
        RefusalRule::ClockSkew,
        RefusalRule::KmsIdNotInKeyGroup,
        RefusalRule::ApplicationMismatch,
    ];

    /// The stable snake_case name used in reports and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            RefusalRule::UnsupportedVersion => "unsupported_version",
            RefusalRule::IntegrityFailed => "integrity_failed",
            RefusalRule::TooManyRequiredClients => "too_many_required_clients",
            RefusalRule::ClockSkew => "clock_skew",
            RefusalRule::KmsIdNotInKeyGroup => "kms_id_not_in_key_group",
            RefusalRule::ApplicationMismatch => "application_mismatch",
        }
    }

    /// The status code a host returns under this rule.
    pub const fn hresult(self) -> HResult {
        match self {
            RefusalRule::UnsupportedVersion
            | RefusalRule::IntegrityFailed
            | RefusalRule::TooManyRequiredClients => HResult::INVALID_DATA,
            RefusalRule::ClockSkew => HResult::INVALID_TIMESTAMP,
            RefusalRule::KmsIdNotInKeyGroup | RefusalRule::ApplicationMismatch => {
                HResult::KMS_ID_MISMATCH
            }
        }
    }

    /// Where the rule comes from: a Microsoft document, or vlmcsd's behaviour where the
    /// documents are silent.
    pub const fn source(self) -> &'static str {
        match self {
            RefusalRule::UnsupportedVersion => {
                "vlmcs manual (option -K): genuine hosts answer 0x8007000D to any protocol \
                 version other than 4.0, 5.0 and 6.0"
            }
            RefusalRule::IntegrityFailed => {
                "vlmcsd behaviour: a request it cannot process is answered with 0x8007000D \
                 (ERROR_INVALID_DATA); the docs do not cover damaged requests"
            }
            RefusalRule::TooManyRequiredClients => {
                "vlmcsd behaviour: a count policy above 1000 is refused with 0x8007000D; the \
                 docs only name policies of 5 and 25"
            }
            RefusalRule::ClockSkew => {
                "vlmcsd behaviour: a client time more than 4 hours from the host's is refused \
                 with 0xC004F06C (SL_E_VL_INVALID_TIMESTAMP); the docs do not give the limit"
            }
            RefusalRule::KmsIdNotInKeyGroup => {
                "kms-activation-planning.md, Activation versions table: a host key activates \
                 only the products listed for it; others get 0xC004F042 \
                 (SL_E_VL_KEY_MANAGEMENT_SERVICE_ID_MISMATCH)"
            }
            RefusalRule::ApplicationMismatch => {
                "vlmcsd behaviour: a KMS ID sent with another application's ID is refused with \
                 0xC004F042; the docs do not cover it"
            }
        }
    }
}

impl fmt::Display for RefusalRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request was refused, as plain values (nothing allocated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The status code returned in place of a response.
    pub hresult: HResult,
    /// The rule that refused.
    pub rule: RefusalRule,
    /// The request check behind the refusal, when one exists.
    pub check: Option<CheckId>,
    /// What the rule requires.
    pub expected: Value,
    /// What the request had.
    pub actual: Value,
}

impl Refusal {
    pub(super) fn new(
        rule: RefusalRule,
        check: Option<CheckId>,
        expected: Value,
        actual: Value,
    ) -> Self {
        Refusal {
            hresult: rule.hresult(),
            rule,
            check,
            expected,
            actual,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.rule)?;
        if let Some(check) = self.check {
            write!(f, " (check {check})")?;
        }
        write!(
            f,
            ": expected {}, got {} -> {}",
            self.expected, self.actual, self.hresult
        )
    }
}

/// The host's answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Answer with a response built from these fields.
    Grant(ResponseParams<'a>),
    /// Answer with this status code instead of a response.
    Refuse(Refusal),
}

impl Decision<'_> {
    /// S_OK for a grant, the refusal's code otherwise.
    pub fn hresult(&self) -> HResult {
        match self {
            Decision::Grant(_) => HResult::S_OK,
            Decision::Refuse(r) => r.hresult,
        }
    }
}
