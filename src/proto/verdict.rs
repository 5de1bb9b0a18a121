//! The verdict on one activation attempt: validated with the count it returned, or the one
//! [`Failure`] class it falls in. Load, replay and the exit statuses all count and judge
//! attempts with these values; names appear only when a failure is printed or serialized
//! (`timeout`, `fault:op_range_error`, `hresult:0xC004F042`, `check:hmac`, ...).

use core::cmp::Ordering;
use core::fmt;
use core::str::FromStr;

use crate::proto::check::{CheckId, Checks};
use crate::proto::client::message::{ResponseBuf, SentRequest, decode_response_into};
use crate::proto::client::session::{CallOutcome, CallReply};
use crate::wire::HResult;
use crate::wire::rpc::FaultStatus;

/// Why an activation attempt did not validate, as one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The TCP connection was refused.
    Refused,
    /// The host did not answer in time.
    Timeout,
    /// The connection was reset (or the host stopped reading).
    Reset,
    /// The host closed the connection, or a reply was cut short.
    Closed,
    /// Another socket error.
    Io,
    /// A reply that breaks the RPC rules (not DCE/RPC, bind refused, unexpected PDU).
    Protocol,
    /// The host answered the call with an RPC fault.
    Fault(FaultStatus),
    /// The host refused the activation with this status code.
    HResult(HResult),
    /// A response whose KMS body does not decrypt or decode.
    Undecodable,
    /// A response with no request to verify it against (a verbatim replay of a request the
    /// capture did not let us decrypt).
    Unverifiable,
    /// A response that decoded, but failed this check.
    Check(CheckId),
}

impl Failure {
    /// Sort key: the class, then its code.
    fn key(&self) -> (u8, u32) {
        match *self {
            Failure::Refused => (0, 0),
            Failure::Timeout => (1, 0),
            Failure::Reset => (2, 0),
            Failure::Closed => (3, 0),
            Failure::Io => (4, 0),
            Failure::Protocol => (5, 0),
            Failure::Fault(s) => (6, u32::from(s)),
            Failure::HResult(h) => (7, h.0),
            Failure::Undecodable => (8, 0),
            Failure::Unverifiable => (9, 0),
            Failure::Check(c) => (10, c as u32),
        }
    }
}

impl Ord for Failure {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Failure {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused => f.write_str("refused"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Reset => f.write_str("reset"),
            Failure::Closed => f.write_str("closed"),
            Failure::Io => f.write_str("io"),
            Failure::Protocol => f.write_str("protocol"),
            Failure::Fault(s) => write!(f, "fault:{s}"),
            Failure::HResult(h) => write!(f, "hresult:0x{:08X}", h.0),
            Failure::Undecodable => f.write_str("undecodable"),
            Failure::Unverifiable => f.write_str("unverifiable"),
            Failure::Check(c) => write!(f, "check:{}", c.name()),
        }
    }
}

/// A failure class name that is none of [`Failure`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a failure class (timeout, refused, reset, closed, io, protocol, undecodable, unverifiable, fault:NAME, hresult:0xXXXXXXXX, check:NAME)"
)]
pub struct UnknownFailure(pub String);

impl FromStr for Failure {
    type Err = UnknownFailure;

    fn from_str(s: &str) -> Result<Failure, UnknownFailure> {
        let unknown = || UnknownFailure(s.to_owned());
        let hex = |h: &str| {
            h.strip_prefix("0x")
                .and_then(|d| u32::from_str_radix(d, 16).ok())
        };
        Ok(match s {
            "refused" => Failure::Refused,
            "timeout" => Failure::Timeout,
            "reset" => Failure::Reset,
            "closed" => Failure::Closed,
            "io" => Failure::Io,
            "protocol" => Failure::Protocol,
            "undecodable" => Failure::Undecodable,
            "unverifiable" => Failure::Unverifiable,
            _ => {
                if let Some(name) = s.strip_prefix("fault:") {
                    Failure::Fault(match hex(name) {
                        Some(v) => FaultStatus::from(v),
                        None => name.parse().map_err(|_| unknown())?,
                    })
                } else if let Some(code) = s.strip_prefix("hresult:") {
                    Failure::HResult(HResult(hex(code).ok_or_else(unknown)?))
                } else if let Some(name) = s.strip_prefix("check:") {
                    Failure::Check(CheckId::from_name(name).ok_or_else(unknown)?)
                } else {
                    return Err(unknown());
                }
            }
        })
    }
}

impl serde::Serialize for Failure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Failure {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Failure, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The verdict on one call's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A response that passed every RPC and KMS check, with the count it returned.
    Validated {
        /// The host's count.
        count: u32,
    },
    /// A refusal, a fault, or a response that could not be verified.
    Failed(Failure),
    /// A response that decoded but failed checks, each reported to the judge's callback.
    ChecksFailed,
}

/// Judges a call's reply with every check `activate` makes. Each failed check is passed to
/// `failed_check` (a refusal's or fault's non-S_OK return value is its own class, not a second
/// one). `rpc_checks` are the checks made on the reply's RPC layer
/// ([`ClientSession::reply_checks`](crate::proto::client::session::ClientSession::reply_checks));
/// `sent` is the request the response answers, when it is known; `bind_failed`, the checks the
/// bind's answers failed when this call opened its connection (empty otherwise).
pub fn judge(
    outcome: &CallOutcome,
    bind_failed: &[CheckId],
    rpc_checks: &Checks,
    sent: Option<&SentRequest>,
    body: &[u8],
    buf: &mut ResponseBuf,
    mut failed_check: impl FnMut(CheckId),
) -> Verdict {
    // A bind answer that failed a check fails the call over the connection it opened.
    bind_failed.iter().copied().for_each(&mut failed_check);
    let refused_or_faulted = !matches!(outcome.reply, CallReply::Response);
    for c in rpc_checks.failed() {
        if !(refused_or_faulted && c.id == CheckId::ReturnValue) {
            failed_check(c.id);
        }
    }
    match outcome.reply {
        CallReply::Refused(h) => Verdict::Failed(Failure::HResult(h)),
        CallReply::Fault(s) => Verdict::Failed(Failure::Fault(s)),
        CallReply::Response => {
            let Some(sent) = sent else {
                return Verdict::Failed(Failure::Unverifiable);
            };
            let mut checks = Checks::new();
            match decode_response_into(sent, body, buf, &mut checks) {
                Err(_) => Verdict::Failed(Failure::Undecodable),
                Ok(resp) => {
                    for c in checks.failed() {
                        failed_check(c.id);
                    }
                    if checks.all_passed() && rpc_checks.all_passed() && bind_failed.is_empty() {
                        Verdict::Validated {
                            count: resp.base.count,
                        }
                    } else {
                        Verdict::ChecksFailed
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let all = [
            Failure::Refused,
            Failure::Timeout,
            Failure::Reset,
            Failure::Closed,
            Failure::Io,
            Failure::Protocol,
            Failure::Fault(FaultStatus::OpRangeError),
            Failure::Fault(FaultStatus::Unknown(0x1234_5678)),
            Failure::HResult(HResult(0xC004_F042)),
            Failure::Undecodable,
            Failure::Unverifiable,
            Failure::Check(CheckId::Hmac),
        ];
        for f in all {
            let name = f.to_string();
            assert_eq!(name.parse::<Failure>(), Ok(f), "{name}");
            let json = serde_json::to_string(&f).expect("serializes");
            assert_eq!(serde_json::from_str::<Failure>(&json).ok(), Some(f));
        }
        assert_eq!(
            Failure::HResult(HResult(0xC004_F042)).to_string(),
            "hresult:0xC004F042"
        );
        assert_eq!(Failure::Check(CheckId::Hmac).to_string(), "check:hmac");
        // Fault statuses go by their snake_case names, never the Rust variant's; the
        // variant's spelling is still read, as reports before issue 13 wrote it.
        let stub = Failure::Fault(FaultStatus::BadStubData);
        assert_eq!(stub.to_string(), "fault:bad_stub_data");
        assert_eq!("fault:BadStubData".parse::<Failure>(), Ok(stub));
        assert!("fault:".parse::<Failure>().is_err());
        assert!("hresult:42".parse::<Failure>().is_err());
        assert!("check:nonsense".parse::<Failure>().is_err());
        assert!("slow".parse::<Failure>().is_err());
    }

    #[test]
    fn classes_sort_by_kind_then_code() {
        let mut v = vec![
            Failure::Check(CheckId::Hmac),
            Failure::HResult(HResult(2)),
            Failure::HResult(HResult(1)),
            Failure::Timeout,
        ];
        v.sort();
        assert_eq!(
            v,
            [
                Failure::Timeout,
                Failure::HResult(HResult(1)),
                Failure::HResult(HResult(2)),
                Failure::Check(CheckId::Hmac)
            ]
        );
    }
}
