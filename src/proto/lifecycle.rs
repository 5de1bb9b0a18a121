//! The life of one Windows KMS client over time, as `../shared/docs/` describes it: first
//! activation pending in out-of-box grace, licensed for the validity interval, renewed on the
//! renewal interval, out of tolerance when validity lapses without a renewal. Sans-IO: the time
//! is an argument of every call and nothing here reads a clock or opens a socket (no random
//! numbers are needed by these rules; discovery, which needs them, is [`super::discovery`]).
//!
//! Methods follow the sans-IO groups: getters ([`Client::state`], [`Client::license`],
//! [`Client::next_attempt`]), one input ([`Client::handle_answer`]), and the pure judge of one
//! answer ([`judge`]) that `activate` also reports.
//!
//! Which host a client asks (SRV priority, weight, the cached host) is
//! [`super::discovery::Discovery`]'s, kept beside this state by the caller.

use core::fmt;

use crate::proto::verdict::Failure;
use crate::wire::HResult;
use crate::wire::kms::FileTime;

/// "KMS activations are valid for 180 days (the *activation validity interval*)"
/// (Activate clients running Windows, "Key Management Service activation renewal").
pub const VALIDITY_DAYS: u64 = 180;

/// "By default, KMS client computers attempt to renew their activation every seven days"
/// (Activate clients running Windows, "Key Management Service activation renewal"), in minutes:
/// the renewal interval a client uses until a host returns its own.
pub const DEFAULT_RENEWAL_MINUTES: u32 = 7 * 24 * 60;

/// "If KMS activation fails, the client computer retries every two hours" (Activate clients
/// running Windows, "Key Management Service activation renewal"); while waiting for the
/// threshold "they connect to the KMS host every two hours" ("Key Management Service activation
/// thresholds"). In minutes: the activation interval a client uses until a host returns its own.
pub const DEFAULT_ACTIVATION_MINUTES: u32 = 2 * 60;

/// Out-of-box grace of a fresh install, days. Not in `../shared/docs/`: issue 10 gives it
/// ("first activation pending (out-of-box grace, 30 days)").
pub const GRACE_DAYS: u64 = 30;

/// What a client's own activation returns when the count is below its threshold
/// (SL_E_VL_NOT_ENOUGH_COUNT; issue 10: "the client's own result is 0xC004F038"). The docs say
/// the same in words: "Client computers that receive a count below the activation threshold
/// aren't activated" (Activate clients running Windows, "Key Management Service activation
/// thresholds").
pub const NOT_ENOUGH_COUNT: HResult = HResult(0xC004_F038);

/// License status of a licensed client (request field `license_status`).
pub const STATUS_LICENSED: u32 = 1;
/// License status during out-of-box grace.
pub const STATUS_OOB_GRACE: u32 = 2;
/// License status once validity lapsed (out-of-tolerance grace).
pub const STATUS_OOT_GRACE: u32 = 3;
/// License status once grace ran out without an activation (notification).
pub const STATUS_NOTIFICATION: u32 = 5;

/// FILETIME ticks per minute.
const TICKS_PER_MINUTE: u64 = 60 * FileTime::TICKS_PER_SEC;
/// Minutes per day.
const MINUTES_PER_DAY: u64 = 24 * 60;

fn after_minutes(t: FileTime, minutes: u64) -> FileTime {
    FileTime(t.0.saturating_add(minutes.saturating_mul(TICKS_PER_MINUTE)))
}

fn minutes_until(now: FileTime, end: FileTime) -> u32 {
    u32::try_from(end.0.saturating_sub(now.0) / TICKS_PER_MINUTE).unwrap_or(u32::MAX)
}

/// Where a client stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// First activation pending, in out-of-box grace.
    Grace,
    /// Activated, within the validity interval.
    Licensed,
    /// Activated once, but validity lapsed without a renewal.
    OutOfTolerance,
    /// Never activated, and the grace period ran out.
    GraceExpired,
}

/// The intervals a host returned, minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    /// Minutes before retrying while not activated or after a failure.
    pub activation: u32,
    /// Minutes between renewals once licensed.
    pub renewal: u32,
}

/// What came back for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A response passing every check, with the host's count and, when known, its intervals
    /// (`None`: the client keeps the intervals it has).
    Count {
        /// The host's count.
        count: u32,
        /// The intervals the response carried.
        intervals: Option<Intervals>,
    },
    /// A refusal, a fault, a response that failed a check, or no answer at all.
    Failed(Failure),
}

/// Whether one answer activates (or renews) a client, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientVerdict {
    /// "If the count meets or exceeds the activation threshold, the client computer is
    /// activated" (Activate clients running Windows, "Client discovery of the Key Management
    /// Service").
    Activated {
        /// The host's count.
        count: u32,
        /// The client's threshold.
        threshold: u32,
    },
    /// A count below the threshold: the client's own result is [`NOT_ENOUGH_COUNT`].
    BelowThreshold {
        /// The host's count.
        count: u32,
        /// The client's threshold.
        threshold: u32,
    },
    /// No usable answer: a refusal, a fault, a failed check or no answer.
    Failed(Failure),
}

impl ClientVerdict {
    /// Whether the client is activated (or renewed) by the answer.
    pub fn activated(&self) -> bool {
        matches!(self, ClientVerdict::Activated { .. })
    }
}

impl fmt::Display for ClientVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ClientVerdict::Activated { count, threshold } => {
                write!(
                    f,
                    "count {count} >= {threshold}: a Windows client is activated"
                )
            }
            ClientVerdict::BelowThreshold { count, threshold } => write!(
                f,
                "count {count} < {threshold}: a Windows client stays unactivated (0x{:08X})",
                NOT_ENOUGH_COUNT.0
            ),
            ClientVerdict::Failed(Failure::HResult(h)) => write!(
                f,
                "refused with 0x{:08X}: a Windows client stays unactivated",
                h.0
            ),
            ClientVerdict::Failed(failure) => {
                write!(
                    f,
                    "no usable answer ({failure}): a Windows client stays unactivated"
                )
            }
        }
    }
}

/// Serialized as `{"activated": bool, "reason": "..."}`.
impl serde::Serialize for ClientVerdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ClientVerdict", 2)?;
        st.serialize_field("activated", &self.activated())?;
        st.serialize_field("reason", &self.to_string())?;
        st.end()
    }
}

impl schemars::JsonSchema for ClientVerdict {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ClientVerdict".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": "Whether a Windows client would be activated by this answer, and why.",
            "properties": {
                "activated": { "type": "boolean" },
                "reason": {
                    "type": "string",
                    "description": "In words, e.g. `count 1 < 25: a Windows client stays unactivated (0xC004F038)`."
                }
            },
            "required": ["activated", "reason"],
            "additionalProperties": false
        })
    }
}

/// Judges one answer for a client whose threshold is `threshold` (the catalog's
/// `sku.class.threshold()`): "Clients will activate if the count is 25 or higher. Servers and
/// volume editions of Microsoft Office products will activate if the count is five or
/// greater" (Key Management Services (KMS) activation planning).
pub fn judge(threshold: u32, answer: Answer) -> ClientVerdict {
    match answer {
        Answer::Count { count, .. } if count >= threshold => {
            ClientVerdict::Activated { count, threshold }
        }
        Answer::Count { count, .. } => ClientVerdict::BelowThreshold { count, threshold },
        Answer::Failed(f) => ClientVerdict::Failed(f),
    }
}

/// Whether the client has ever been activated, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Never activated; grace ends then.
    Pending { grace_ends: FileTime },
    /// Activated; valid until then.
    Activated { valid_until: FileTime },
}

/// One machine's KMS client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    threshold: u32,
    phase: Phase,
    next_attempt: FileTime,
    intervals: Intervals,
}

impl Client {
    /// A fresh install booted at `booted`, whose product's threshold is `threshold`: its first
    /// attempt is due at once.
    pub fn new(threshold: u32, booted: FileTime) -> Client {
        Client {
            threshold,
            phase: Phase::Pending {
                grace_ends: after_minutes(booted, GRACE_DAYS * MINUTES_PER_DAY),
            },
            next_attempt: booted,
            intervals: Intervals {
                activation: DEFAULT_ACTIVATION_MINUTES,
                renewal: DEFAULT_RENEWAL_MINUTES,
            },
        }
    }

    /// A client of a site already running: last activated or renewed at `renewed`, so valid
    /// for the validity interval from then, and next asking at `next_attempt` (a site in
    /// steady state has its renewals spread over the renewal interval).
    pub fn licensed(threshold: u32, renewed: FileTime, next_attempt: FileTime) -> Client {
        Client {
            threshold,
            phase: Phase::Activated {
                valid_until: after_minutes(renewed, VALIDITY_DAYS * MINUTES_PER_DAY),
            },
            next_attempt,
            intervals: Intervals {
                activation: DEFAULT_ACTIVATION_MINUTES,
                renewal: DEFAULT_RENEWAL_MINUTES,
            },
        }
    }

    /// The count this client needs.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Where the client stands at `now`.
    pub fn state(&self, now: FileTime) -> State {
        match self.phase {
            Phase::Pending { grace_ends } if now < grace_ends => State::Grace,
            Phase::Pending { .. } => State::GraceExpired,
            Phase::Activated { valid_until } if now < valid_until => State::Licensed,
            Phase::Activated { .. } => State::OutOfTolerance,
        }
    }

    /// Whether the client is licensed at `now`.
    pub fn is_licensed(&self, now: FileTime) -> bool {
        self.state(now) == State::Licensed
    }

    /// The license status and minutes left that a request sent at `now` carries: grace
    /// minutes left, validity minutes left, or 0 once either ran out. (How long
    /// out-of-tolerance grace lasts is not in the docs; it is reported with 0 minutes.)
    ///
    /// A client never activated sends notification (5) with 0 minutes left, grace or not: the
    /// genuine Windows 11 Enterprise request (a fresh GVLK install) does, where vlmcs sends
    /// out-of-box grace (2) with 43200 minutes. The grace period still decides the state.
    pub fn license(&self, now: FileTime) -> (u32, u32) {
        match (self.state(now), self.phase) {
            (State::Licensed, Phase::Activated { valid_until }) => {
                (STATUS_LICENSED, minutes_until(now, valid_until))
            }
            (State::OutOfTolerance, _) => (STATUS_OOT_GRACE, 0),
            _ => (STATUS_NOTIFICATION, 0),
        }
    }

    /// When the client next asks a host.
    pub fn next_attempt(&self) -> FileTime {
        self.next_attempt
    }

    /// The intervals in use (the host's last, or the defaults).
    pub fn intervals(&self) -> Intervals {
        self.intervals
    }

    /// Takes the answer to an attempt made at `now`: a count at or above the threshold
    /// activates, or renews and restarts the validity interval ("After a client computer's
    /// activation is renewed, the activation validity interval begins again"); anything else
    /// leaves the license as it was. The next attempt follows after the renewal interval once
    /// activated, after the activation interval otherwise. A host's interval of 0 minutes is
    /// taken as 1, so that no host can make a client ask without pause.
    pub fn handle_answer(&mut self, now: FileTime, answer: Answer) -> ClientVerdict {
        if let Answer::Count {
            intervals: Some(i), ..
        } = answer
        {
            self.intervals = Intervals {
                activation: i.activation.max(1),
                renewal: i.renewal.max(1),
            };
        }
        let verdict = judge(self.threshold, answer);
        let wait = if verdict.activated() {
            self.phase = Phase::Activated {
                valid_until: after_minutes(now, VALIDITY_DAYS * MINUTES_PER_DAY),
            };
            self.intervals.renewal
        } else {
            self.intervals.activation
        };
        self.next_attempt = after_minutes(now, u64::from(wait));
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ProductClass;
    use crate::proto::check::CheckId;
    use crate::wire::rpc::FaultStatus;

    const T0: FileTime = FileTime::from_unix_secs(1_800_000_000);

    fn minutes(m: u64) -> FileTime {
        after_minutes(T0, m)
    }

    fn days(d: u64) -> FileTime {
        minutes(d * MINUTES_PER_DAY)
    }

    fn count(n: u32) -> Answer {
        Answer::Count {
            count: n,
            intervals: None,
        }
    }

    fn windows() -> Client {
        Client::new(ProductClass::ClientOs.threshold(), T0)
    }

    #[test]
    fn test_fresh_install_is_in_grace_and_asks_at_once() {
        // issue 10: "first activation pending (out-of-box grace, 30 days)".
        let c = windows();
        assert_eq!(c.state(T0), State::Grace);
        assert_eq!(c.next_attempt(), T0);
        // What the request says: notification, 0 minutes, as the genuine client sends.
        assert_eq!(c.license(T0), (STATUS_NOTIFICATION, 0));
        assert_eq!(c.license(days(1)), (STATUS_NOTIFICATION, 0));
    }

    #[test]
    fn test_grace_expires_if_never_activated() {
        let mut c = windows();
        assert_eq!(
            c.state(minutes(GRACE_DAYS * MINUTES_PER_DAY - 1)),
            State::Grace
        );
        assert_eq!(c.state(days(GRACE_DAYS)), State::GraceExpired);
        assert_eq!(c.license(days(GRACE_DAYS)), (STATUS_NOTIFICATION, 0));
        // A count that reaches the threshold still activates.
        assert!(c.handle_answer(days(31), count(25)).activated());
        assert_eq!(c.state(days(31)), State::Licensed);
    }

    #[test]
    fn test_count_below_threshold_does_not_activate() {
        // "Client computers that receive a count below the activation threshold aren't
        // activated" (Activate clients running Windows); the client's result is 0xC004F038.
        let mut c = windows();
        let v = c.handle_answer(T0, count(24));
        assert_eq!(
            v,
            ClientVerdict::BelowThreshold {
                count: 24,
                threshold: 25
            }
        );
        assert_eq!(
            v.to_string(),
            "count 24 < 25: a Windows client stays unactivated (0xC004F038)"
        );
        assert_eq!(c.state(T0), State::Grace);
    }

    #[test]
    fn test_thresholds_per_class() {
        // "Clients will activate if the count is 25 or higher. Servers and volume editions of
        // Microsoft Office products will activate if the count is five or greater" (KMS
        // activation planning).
        assert!(judge(ProductClass::ClientOs.threshold(), count(25)).activated());
        assert!(!judge(ProductClass::ClientOs.threshold(), count(24)).activated());
        for class in [ProductClass::ServerOs, ProductClass::Office] {
            assert!(judge(class.threshold(), count(5)).activated());
            assert!(!judge(class.threshold(), count(4)).activated());
        }
        let mut server = Client::new(ProductClass::ServerOs.threshold(), T0);
        assert!(server.handle_answer(T0, count(5)).activated());
        assert_eq!(server.state(T0), State::Licensed);
    }

    #[test]
    fn test_refusal_fault_or_no_answer_does_not_activate() {
        for f in [
            Failure::HResult(HResult(0xC004_F042)),
            Failure::Fault(FaultStatus::OpRangeError),
            Failure::Check(CheckId::Hmac),
            Failure::Timeout,
            Failure::Refused,
        ] {
            let mut c = windows();
            let v = c.handle_answer(T0, Answer::Failed(f));
            assert!(!v.activated(), "{f}");
            assert_eq!(c.state(T0), State::Grace, "{f}");
            assert_eq!(c.next_attempt(), minutes(120), "{f}");
        }
        assert_eq!(
            judge(25, Answer::Failed(Failure::HResult(HResult(0xC004_F042)))).to_string(),
            "refused with 0xC004F042: a Windows client stays unactivated"
        );
    }

    #[test]
    fn test_waiting_for_threshold_retries_after_activation_interval() {
        // "When KMS clients are waiting for the KMS to reach the activation threshold, they
        // connect to the KMS host every two hours" (Activate clients running Windows).
        let mut c = windows();
        c.handle_answer(T0, count(3));
        assert_eq!(c.next_attempt(), minutes(120));
        // The host's own activation interval replaces the default.
        c.handle_answer(
            minutes(120),
            Answer::Count {
                count: 4,
                intervals: Some(Intervals {
                    activation: 30,
                    renewal: 600,
                }),
            },
        );
        assert_eq!(c.next_attempt(), minutes(150));
        // And is kept for a failure that carries none.
        c.handle_answer(minutes(150), Answer::Failed(Failure::Timeout));
        assert_eq!(c.next_attempt(), minutes(180));
    }

    #[test]
    fn test_licensed_renews_after_renewal_interval() {
        // "By default, KMS client computers attempt to renew their activation every seven
        // days" (Activate clients running Windows).
        let mut c = windows();
        c.handle_answer(T0, count(25));
        assert_eq!(c.next_attempt(), days(7));
        assert_eq!(DEFAULT_RENEWAL_MINUTES, 10080);
        let mut host = windows();
        host.handle_answer(
            T0,
            Answer::Count {
                count: 30,
                intervals: Some(Intervals {
                    activation: 120,
                    renewal: 600,
                }),
            },
        );
        assert_eq!(host.next_attempt(), minutes(600));
    }

    #[test]
    fn test_failed_renewal_retries_after_activation_interval() {
        // "If KMS activation fails, the client computer retries every two hours" (Activate
        // clients running Windows); the license is untouched.
        let mut c = windows();
        c.handle_answer(T0, count(25));
        c.handle_answer(days(7), Answer::Failed(Failure::Timeout));
        assert_eq!(c.next_attempt(), after_minutes(days(7), 120));
        assert_eq!(c.state(days(7)), State::Licensed);
        // A renewal with a count below the threshold does not renew either.
        c.handle_answer(days(8), count(10));
        assert_eq!(c.state(days(VALIDITY_DAYS)), State::OutOfTolerance);
    }

    #[test]
    fn test_validity_is_180_days_and_lapses_without_renewal() {
        // "KMS activations are valid for 180 days" (Activate clients running Windows).
        let mut c = windows();
        c.handle_answer(T0, count(25));
        assert_eq!(c.license(T0), (STATUS_LICENSED, 180 * 24 * 60));
        assert_eq!(
            c.state(minutes(VALIDITY_DAYS * MINUTES_PER_DAY - 1)),
            State::Licensed
        );
        assert_eq!(c.state(days(VALIDITY_DAYS)), State::OutOfTolerance);
        assert_eq!(c.license(days(VALIDITY_DAYS)), (STATUS_OOT_GRACE, 0));
        // A later answer that reaches the threshold activates again.
        assert!(c.handle_answer(days(200), count(40)).activated());
        assert_eq!(c.state(days(200)), State::Licensed);
    }

    #[test]
    fn test_renewal_restarts_validity() {
        // "After a client computer's activation is renewed, the activation validity interval
        // begins again" (Activate clients running Windows).
        let mut c = windows();
        c.handle_answer(T0, count(25));
        c.handle_answer(days(100), count(25));
        assert_eq!(c.state(days(VALIDITY_DAYS + 50)), State::Licensed);
        assert_eq!(c.state(days(100 + VALIDITY_DAYS)), State::OutOfTolerance);
    }

    #[test]
    fn test_zero_interval_is_one_minute() {
        let mut c = windows();
        c.handle_answer(
            T0,
            Answer::Count {
                count: 1,
                intervals: Some(Intervals {
                    activation: 0,
                    renewal: 0,
                }),
            },
        );
        assert_eq!(c.next_attempt(), minutes(1));
    }

    #[test]
    fn test_verdict_json() {
        let v = judge(25, count(1));
        assert_eq!(
            serde_json::to_value(v).expect("serializes"),
            serde_json::json!({
                "activated": false,
                "reason": "count 1 < 25: a Windows client stays unactivated (0xC004F038)"
            })
        );
    }
}
