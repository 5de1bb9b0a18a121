//! Deviations the reference host can inject (`serve --fault NAME`): one per check a client
//! makes, so that every check is shown to fail when it should, plus a few behaviours (delay,
//! close after bind, NDR64 refused) that exercise a client's handling rather than a check.

use core::fmt;
use core::str::FromStr;

use crate::proto::check::CheckId;
use crate::wire::enums::{UnknownName, find_name};

/// Declares the fault list once: name, the check it trips (if any), and what it does.
macro_rules! faults {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $check:expr, $what:literal; )+) => {
        /// One injectable deviation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Fault {
            $( $(#[$doc])* $variant, )+
        }

        impl Fault {
            /// Every fault, in declaration order.
            pub const ALL: &'static [Fault] = &[$(Fault::$variant,)+];

            /// The name `--fault` takes.
            pub const fn name(self) -> &'static str {
                match self { $(Fault::$variant => $name,)+ }
            }

            /// The check a client makes that this fault must (and alone must) make fail;
            /// `None` for behaviours that change the exchange rather than break a check.
            pub const fn check(self) -> Option<CheckId> {
                match self { $(Fault::$variant => $check,)+ }
            }

            /// What the host does differently.
            pub const fn description(self) -> &'static str {
                match self { $(Fault::$variant => $what,)+ }
            }
        }
    };
}

faults! {
    /// Corrupts the PKCS#7 padding of V5/V6 responses.
    BadPadding = "bad-padding", Some(CheckId::Decrypt), "V5/V6: the response's pad bytes are wrong";
    /// Answers with a different protocol version.
    WrongVersion = "wrong-version", Some(CheckId::Version), "the response's versions say x.1 instead of the request's";
    /// Does not echo the client machine ID.
    MachineIdNotEchoed = "machine-id-not-echoed", Some(CheckId::MachineId), "the response carries a different client machine ID";
    /// Does not echo the client time.
    TimestampNotEchoed = "timestamp-not-echoed", Some(CheckId::Timestamp), "the response carries a client time one second off";
    /// V4: a wrong MAC.
    WrongMac = "wrong-mac", Some(CheckId::Mac), "V4: the response MAC is wrong";
    /// V5/V6: a wrong salt hash.
    WrongHash = "wrong-hash", Some(CheckId::Hash), "V5/V6: the salt hash is wrong";
    /// V5: a fresh IV; V6: wrong XORed IVs.
    WrongIvs = "wrong-ivs", Some(CheckId::Ivs), "V5: a response IV unlike the request's; V6: wrong XORed-IVs field";
    /// V6: reuses the request's IV.
    IdenticalIvs = "identical-ivs", Some(CheckId::IvNotIdentical), "V6: the response IV equals the request IV";
    /// V6: a wrong HMAC.
    WrongHmac = "wrong-hmac", Some(CheckId::Hmac), "V6: the HMAC is wrong";
    /// An ePID longer than the 128-byte buffer.
    OversizeEpid = "oversize-epid", Some(CheckId::EpidLength), "the ePID is 130 bytes, over the 128-byte limit";
    /// An ePID without its terminator.
    UnterminatedEpid = "unterminated-epid", Some(CheckId::EpidTermination), "the ePID has no NUL terminator";
    /// Extra bytes after the response.
    ExtraBytes = "extra-bytes", Some(CheckId::ResponseSize), "the response is 16 bytes longer than its layout";
    /// The count never moves.
    CountStuck = "count-stuck", None, "the current count is always the first value it returned";
    /// A reply of the wrong PDU type.
    WrongPacketType = "wrong-packet-type", Some(CheckId::RpcPacketType), "the activation reply is an alter_context_resp PDU";
    /// A reply with another call id.
    WrongCallId = "wrong-call-id", Some(CheckId::RpcCallId), "the activation reply carries call id + 1";
    /// A reply with another context id.
    WrongContextId = "wrong-context-id", Some(CheckId::RpcContextId), "the activation reply carries context id + 1";
    /// A reply missing the first-fragment flag.
    BadFragmentFlags = "bad-fragment-flags", Some(CheckId::RpcFragmentFlags), "the activation reply lacks FIRST_FRAG";
    /// The bind_ack does not mirror the multiplex flag.
    MultiplexNotEchoed = "multiplex-not-echoed", Some(CheckId::RpcMultiplexFlag), "the bind_ack flips the bind's PFC_CONC_MPX";
    /// A reply with a non-zero cancel count.
    CancelCount = "cancel-count", Some(CheckId::RpcCancelCount), "the activation reply's cancel count is 1";
    /// A bind_ack that leaves out a result.
    MissingBindResult = "missing-bind-result", Some(CheckId::RpcBindResults), "the bind_ack answers one context fewer than proposed";
    /// NDR counts that disagree.
    NdrCountMismatch = "ndr-count-mismatch", Some(CheckId::NdrCounts), "the stub's size argument is one more than its max count";
    /// Non-zero NDR alignment bytes.
    NdrPadding = "ndr-padding", Some(CheckId::NdrPadding), "the stub's alignment bytes are not zero (shows when the response length is not a multiple of 4)";
    /// Refuses every request.
    RefuseAll = "refuse-all", Some(CheckId::ReturnValue), "every activation returns 0xC004F041 instead of a response";
    /// Refuses NDR64 in binds.
    Ndr64Refused = "ndr64-refused", None, "NDR64 is rejected in binds (a pre-2008 R2 host)";
    /// Answers slowly.
    Delay = "delay", None, "each activation reply is sent after a delay (default 200 ms)";
    /// Hangs up after the bind.
    CloseAfterBind = "close-after-bind", None, "the connection is closed right after the bind_ack";
    /// Refuses stubs with bytes after the declared message, as a strict unmarshaller might.
    StrictStub = "strict-stub", None, "a stub with bytes after the declared KMS message is refused with 0x8007000D";
    /// Answers a stub that does not unmarshal with a KMS HRESULT instead of an RPC fault.
    StubRefusedNotFaulted = "stub-refused-not-faulted", None, "a stub whose counts do not fit gets a 0x8007000D refusal, not the bad-stub-data fault";
    /// A planted bug for `fuzz` to find: the connection task panics.
    PanicUnterminatedWorkstation = "panic-unterminated-workstation", None, "planted bug: a request whose workstation name has no NUL panics the connection task";
    /// A planted bug for `fuzz` to find: the connection hangs.
    StallOnBadLength = "stall-on-bad-length", None, "planted bug: a fragment length under 16 or over the limit makes the connection stop reading and never close";
    /// A planted bug for `fuzz` to find: the process dies.
    AbortOnNdrCount = "abort-on-ndr-count", None, "planted bug: a request stub whose max count is 0xFFFFFFFF aborts the whole process";
}

impl Fault {
    /// The planted bugs: no check catches them (they crash, hang or kill the host); `fuzz`
    /// must find each (`tests/fuzz.rs`), and the conformance and check tests leave them out.
    pub const PLANTED: &'static [Fault] = &[
        Fault::PanicUnterminatedWorkstation,
        Fault::StallOnBadLength,
        Fault::AbortOnNdrCount,
    ];

    /// Whether this is one of [`Fault::PLANTED`].
    pub fn is_planted(self) -> bool {
        Fault::PLANTED.contains(&self)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--fault` named something that does not exist (lists the known names).
pub type UnknownFault = UnknownName;

impl FromStr for Fault {
    type Err = UnknownFault;
    /// A name as [`crate::wire::enums::same_name`] matches it, the lookup wire enums use.
    fn from_str(s: &str) -> Result<Fault, UnknownFault> {
        find_name(s, Fault::ALL, Fault::name)
            .ok_or_else(|| UnknownName::new("fault", s, Fault::ALL.iter().map(|f| f.name())))
    }
}

/// A set of faults, as a bit mask (copied freely on the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultSet(u64);

impl FaultSet {
    /// No faults: a correct host.
    pub const NONE: FaultSet = FaultSet(0);

    /// Whether `f` is in the set.
    pub const fn has(self, f: Fault) -> bool {
        self.0 & (1 << f as u64) != 0
    }

    /// The set with `f` added.
    #[must_use]
    pub const fn with(self, f: Fault) -> FaultSet {
        FaultSet(self.0 | 1 << f as u64)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The faults in the set.
    pub fn iter(self) -> impl Iterator<Item = Fault> {
        Fault::ALL.iter().copied().filter(move |f| self.has(*f))
    }
}

impl FromIterator<Fault> for FaultSet {
    fn from_iter<I: IntoIterator<Item = Fault>>(iter: I) -> FaultSet {
        iter.into_iter().fold(FaultSet::NONE, FaultSet::with)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_names_roundtrip_and_unique() {
        assert!(Fault::ALL.len() < 64);
        for (i, f) in Fault::ALL.iter().enumerate() {
            assert_eq!(f.name().parse::<Fault>().unwrap(), *f);
            for g in &Fault::ALL[i + 1..] {
                assert_ne!(f.name(), g.name());
                if f.check().is_some() {
                    assert_ne!(f.check(), g.check(), "{f} and {g} trip the same check");
                }
            }
        }
        let err = "nope".parse::<Fault>().unwrap_err();
        assert!(err.to_string().contains("wrong-hmac"));
    }

    #[test]
    fn test_set() {
        let s: FaultSet = [Fault::WrongHmac, Fault::Delay].into_iter().collect();
        assert!(s.has(Fault::WrongHmac) && s.has(Fault::Delay) && !s.has(Fault::WrongMac));
        assert_eq!(s.iter().count(), 2);
    }

    #[test]
    fn test_every_response_check_has_a_fault() {
        // The request-side checks are a host's; every other check must be breakable by one
        // fault of the reference host.
        for id in CheckId::ALL.iter().filter(|c| !c.is_request_side()) {
            assert!(
                Fault::ALL.iter().any(|f| f.check() == Some(*id)),
                "no fault trips {id}"
            );
        }
    }
}
