//! The expectations on a reply: what a step observed, and its comparison with a case's
//! (already parsed) expectations. Every expectation that does not hold becomes a [`Mismatch`]
//! with expected and actual values.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::proto::check::Check;
use crate::wire::HResult;
use crate::wire::rpc::{AckResult, ContextResult, FaultStatus, NDR32, NDR64, RejectReason};

use super::vector::{CheckSel, CountExpect, Expect, HwidExpect, ReplyKind, SecondaryAddress};

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Mismatch {
    /// What was compared.
    pub what: String,
    /// What a conforming host does.
    pub expected: String,
    /// What this host did.
    pub actual: String,
}

impl Mismatch {
    /// A mismatch from displayable parts.
    pub fn new(
        what: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Mismatch {
        Mismatch {
            what: what.into(),
            expected: expected.into(),
            actual: actual.into(),
        }
    }
}

/// A bind reply's contents.
#[derive(Debug, Clone, Default)]
pub struct BindObs {
    /// One result per answered context.
    pub results: Vec<ContextResult>,
    /// Association group.
    pub assoc_group: u32,
    /// Secondary address bytes.
    pub secondary: Vec<u8>,
    /// max_xmit_frag of the reply.
    pub max_xmit: u16,
    /// max_recv_frag of the reply.
    pub max_recv: u16,
    /// What the bind offered for both.
    pub offered_frag: u16,
}

/// A granted KMS response's fields.
#[derive(Debug, Clone, Default)]
pub struct KmsObs {
    /// The host's ePID.
    pub epid: String,
    /// V6 hardware ID.
    pub hwid: Option<[u8; 8]>,
    /// Current count.
    pub count: u32,
    /// Activation interval, minutes.
    pub activation_interval: u32,
    /// Renewal interval, minutes.
    pub renewal_interval: u32,
    /// The KMS ID the request carried.
    pub kms_id: crate::wire::Guid,
}

/// Everything one step saw.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The kind of reply, when it is one of the kinds expectations name.
    pub kind: Option<ReplyKind>,
    /// How the reply shows in a report (a PDU name, `closed`, an error).
    pub shown: String,
    /// Time from the request being sent to the whole reply (the fastest of repeated calls).
    pub elapsed: Duration,
    /// The connection's TCP handshake time.
    pub rtt: Duration,
    /// The reply header's flags.
    pub flags: Option<u8>,
    /// Fault status.
    pub fault_status: Option<u32>,
    /// bind_nak reason.
    pub nak_reason: Option<u16>,
    /// A bind reply.
    pub bind: Option<BindObs>,
    /// Named checks made on the reply.
    pub checks: Vec<Check>,
    /// HRESULT of a refusal.
    pub hresult: Option<HResult>,
    /// A granted response.
    pub kms: Option<KmsObs>,
    /// For `concurrent`: how many succeeded, and how many were tried.
    pub ok_of: Option<(u32, u32)>,
}

impl Observed {
    /// An observation of the given kind.
    pub fn of(kind: ReplyKind, shown: impl Into<String>) -> Observed {
        Observed {
            kind: Some(kind),
            shown: shown.into(),
            ..Observed::default()
        }
    }

    /// Something that is not a reply kind at all (an undecodable reply, a local error).
    pub fn error(shown: impl Into<String>) -> Observed {
        Observed {
            kind: None,
            shown: shown.into(),
            ..Observed::default()
        }
    }
}

/// What the comparison needs besides the observation.
#[derive(Debug)]
pub struct EvalCtx<'a> {
    /// Replies remembered by label.
    pub labels: &'a HashMap<String, KmsObs>,
    /// Association group of each connection's bind.
    pub assoc: &'a HashMap<String, u32>,
    /// The target's port (the expected secondary address).
    pub port: u16,
    /// Reply kinds accepted when the expectation names none.
    pub default_reply: &'a [ReplyKind],
    /// Factor on the limits a case sets on how soon the host answers (see
    /// `RunConfig::time_scale`).
    pub time_scale: u32,
}

/// A fault status as a report shows it: `op_range_error (0x1C010002)`, or the bare code.
pub fn show_fault(status: u32) -> String {
    format!("{:#}", FaultStatus::from(status))
}

/// A context result as the vectors write them.
pub fn show_result(r: &ContextResult) -> String {
    match r.result {
        AckResult::Acceptance if r.transfer_syntax == NDR32 => "accept:ndr32".into(),
        AckResult::Acceptance if r.transfer_syntax == NDR64 => "accept:ndr64".into(),
        AckResult::Acceptance => format!("accept:{}", r.transfer_syntax.uuid),
        AckResult::ProviderRejection | AckResult::UserRejection => match r.reason {
            1 => "reject:abstract_syntax".into(),
            2 => "reject:transfer_syntaxes".into(),
            n => format!("reject:{n}"),
        },
        AckResult::NegotiateAck => format!("negotiate_ack:{}", r.reason),
        AckResult::Unknown(v) => format!("result {v}"),
    }
}

/// The counts a [`CountExpect`] accepts (`None`: no exact value asked).
fn count_expected(
    c: &CountExpect,
    labels: &HashMap<String, KmsObs>,
) -> Result<Option<Vec<u32>>, String> {
    if let Some(eq) = c.eq {
        return Ok(Some(vec![eq]));
    }
    match &c.rel {
        None => Ok(None),
        Some(label) => {
            let base = labels
                .get(label)
                .ok_or_else(|| format!("no reply labelled {label:?} (a vector error)"))?;
            let v = (i64::from(base.count) + c.delta).max(0);
            let mut ok = vec![u32::try_from(v).unwrap_or(u32::MAX)];
            // A table that may be full (its count is at least the cap) need not grow.
            if c.cap.is_some_and(|cap| base.count >= cap) && !ok.contains(&base.count) {
                ok.push(base.count);
            }
            Ok(Some(ok))
        }
    }
}

fn hex8(b: &[u8; 8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Compares an observation with an expectation.
pub fn evaluate(expect: &Expect, obs: &Observed, ctx: &EvalCtx<'_>) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let kinds = expect
        .reply
        .as_ref()
        .map_or_else(|| ctx.default_reply.to_vec(), |r| r.kinds());
    if !kinds.is_empty() {
        let ok = obs.kind.is_some_and(|k| {
            kinds.contains(&k)
                || (kinds.contains(&ReplyKind::NoPdu)
                    && matches!(k, ReplyKind::Closed | ReplyKind::Silent))
        });
        if !ok {
            let names: Vec<String> = kinds.iter().map(ToString::to_string).collect();
            let mut actual = obs.shown.clone();
            if let Some(h) = obs.hresult {
                actual = format!("{actual} {h}");
            }
            if let Some(s) = obs.fault_status {
                actual = format!("{actual} {}", show_fault(s));
            }
            out.push(Mismatch::new("reply", names.join(" or "), actual));
            return out;
        }
    }
    if let Some(min) = expect.not_before
        && obs.elapsed < min
    {
        out.push(Mismatch::new(
            "reply time",
            format!("not before {} ms", min.as_millis()),
            format!("{} ms", obs.elapsed.as_millis()),
        ));
    }
    if let Some(max) = expect.max_over_handshake {
        let max = max.saturating_mul(ctx.time_scale.max(1));
        let over = obs.elapsed.saturating_sub(obs.rtt);
        if over > max {
            out.push(Mismatch::new(
                "reply time beyond the TCP handshake time",
                format!("at most {} ms", max.as_millis()),
                format!(
                    "{} ms (reply {:.1} ms, handshake {:.1} ms)",
                    over.as_millis(),
                    obs.elapsed.as_secs_f64() * 1e3,
                    obs.rtt.as_secs_f64() * 1e3
                ),
            ));
        }
    }
    if let (Some(want), Some(got)) = (expect.hresult, obs.hresult)
        && want != got
    {
        out.push(Mismatch::new("HRESULT", want.to_string(), got.to_string()));
    }
    if let (Some(want), Some(got)) = (expect.fault_status, obs.fault_status)
        && u32::from(want) != got
    {
        out.push(Mismatch::new(
            "fault status",
            show_fault(want.into()),
            show_fault(got),
        ));
    }
    if let (Some(want), Some(got)) = (expect.nak_reason, obs.nak_reason)
        && u16::from(want) != got
    {
        out.push(Mismatch::new(
            "bind_nak reason",
            format!("{want} ({})", u16::from(want)),
            format!("{} ({got})", RejectReason::from(got)),
        ));
    }
    if let Some(flags) = obs.flags {
        if let Some(m) = expect.multiplex {
            let got = flags & 0x10 != 0;
            if got != m {
                out.push(Mismatch::new(
                    "PFC_CONC_MPX in the reply",
                    if m { "set" } else { "clear" },
                    format!(
                        "{} (flags 0x{flags:02x})",
                        if got { "set" } else { "clear" }
                    ),
                ));
            }
        }
        if let Some(want) = expect.reply_flags
            && want != flags
        {
            out.push(Mismatch::new(
                "reply header flags",
                format!("0x{want:02x}"),
                format!("0x{flags:02x}"),
            ));
        }
    }
    if let Some(b) = &obs.bind {
        bind_fields(expect, b, ctx, &mut out);
    }
    if let Some(sel) = &expect.checks {
        select_checks(sel, &obs.checks, &mut out);
    }
    if let Some(k) = &obs.kms {
        kms_fields(expect, k, ctx, &mut out);
    }
    if let Some((ok, of)) = obs.ok_of {
        let want = expect.min_ok.unwrap_or(of);
        if ok < want {
            out.push(Mismatch::new(
                "connections answered",
                format!("at least {want} of {of}"),
                format!("{ok} of {of} ({})", obs.shown),
            ));
        }
    }
    out
}

fn bind_fields(expect: &Expect, b: &BindObs, ctx: &EvalCtx<'_>, out: &mut Vec<Mismatch>) {
    if let Some(want) = &expect.results {
        let got: Vec<String> = b.results.iter().map(show_result).collect();
        let ok =
            want.len() == b.results.len() && want.iter().zip(&b.results).all(|(p, r)| p.matches(r));
        if !ok {
            let want: Vec<String> = want.iter().map(ToString::to_string).collect();
            out.push(Mismatch::new(
                "context results",
                want.join(", "),
                if got.is_empty() {
                    "none".to_owned()
                } else {
                    got.join(", ")
                },
            ));
        }
    }
    if let Some(s) = &expect.secondary_address {
        let text: String = b
            .secondary
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| char::from(c))
            .collect();
        let (ok, want) = match s {
            SecondaryAddress::Port => (
                text == ctx.port.to_string() && b.secondary.last() == Some(&0),
                format!("\"{}\" NUL-terminated", ctx.port),
            ),
            SecondaryAddress::Empty => (b.secondary.is_empty(), "empty".to_owned()),
            SecondaryAddress::Nonempty => (!b.secondary.is_empty(), "non-empty".to_owned()),
            SecondaryAddress::Literal(other) => (text == *other, format!("\"{other}\"")),
        };
        if !ok {
            out.push(Mismatch::new(
                "secondary address",
                want,
                format!("{text:?} ({} bytes)", b.secondary.len()),
            ));
        }
    }
    if expect.assoc_group_nonzero == Some(true) && b.assoc_group == 0 {
        out.push(Mismatch::new("association group", "non-zero", "0"));
    }
    if let Some(other) = &expect.assoc_group_same_as {
        match ctx.assoc.get(other) {
            Some(&g) if g == b.assoc_group => {}
            Some(&g) => out.push(Mismatch::new(
                format!("association group (same as connection {other:?})"),
                format!("0x{g:08x}"),
                format!("0x{:08x}", b.assoc_group),
            )),
            None => out.push(Mismatch::new(
                "association group",
                format!("same as connection {other:?}"),
                "that connection has no bind (a vector error)",
            )),
        }
    }
    if let Some(other) = &expect.assoc_group_differs_from {
        match ctx.assoc.get(other) {
            Some(&g) if g != b.assoc_group => {}
            Some(&g) => out.push(Mismatch::new(
                format!("association group (unlike connection {other:?})"),
                format!("not 0x{g:08x}"),
                format!("0x{:08x}", b.assoc_group),
            )),
            None => out.push(Mismatch::new(
                "association group",
                format!("differs from connection {other:?}"),
                "that connection has no bind (a vector error)",
            )),
        }
    }
    if expect.max_frag_at_most_offered == Some(true)
        && (b.max_xmit > b.offered_frag || b.max_recv > b.offered_frag || b.max_xmit == 0)
    {
        out.push(Mismatch::new(
            "fragment sizes",
            format!("1..={} (what the bind offered)", b.offered_frag),
            format!("max_xmit {} max_recv {}", b.max_xmit, b.max_recv),
        ));
    }
}

fn select_checks(sel: &CheckSel, checks: &[Check], out: &mut Vec<Mismatch>) {
    let wanted: Vec<&Check> = match sel {
        CheckSel::None => return,
        CheckSel::Rpc => checks.iter().filter(|c| c.id.is_rpc()).collect(),
        CheckSel::Kms => checks.iter().filter(|c| !c.id.is_rpc()).collect(),
        CheckSel::All => checks.iter().collect(),
        CheckSel::Names(ids) => {
            let mut v = Vec::new();
            for id in ids {
                match checks.iter().find(|c| c.id == *id) {
                    Some(c) => v.push(c),
                    None => out.push(Mismatch::new(
                        format!("check {}", id.name()),
                        "made and passed",
                        "not made on this reply",
                    )),
                }
            }
            v
        }
    };
    for c in wanted.into_iter().filter(|c| !c.passed) {
        out.push(Mismatch::new(
            format!("check {}", c.id.name()),
            c.expected.to_string(),
            c.actual.to_string(),
        ));
    }
}

fn kms_fields(expect: &Expect, k: &KmsObs, ctx: &EvalCtx<'_>, out: &mut Vec<Mismatch>) {
    if let Some(want) = expect.activation_interval
        && want != k.activation_interval
    {
        out.push(Mismatch::new(
            "activation interval (minutes)",
            want.to_string(),
            k.activation_interval.to_string(),
        ));
    }
    if let Some(want) = expect.renewal_interval
        && want != k.renewal_interval
    {
        out.push(Mismatch::new(
            "renewal interval (minutes)",
            want.to_string(),
            k.renewal_interval.to_string(),
        ));
    }
    if let Some(h) = expect.hwid {
        let got = k.hwid.map_or("absent".to_owned(), |b| hex8(&b));
        let (ok, want) = match h {
            HwidExpect::Present => (k.hwid.is_some_and(|b| b != [0; 8]), "present".into()),
            HwidExpect::Absent => (k.hwid.is_none(), "absent".into()),
            HwidExpect::Exactly(want) => (k.hwid == Some(want), hex8(&want)),
        };
        if !ok {
            out.push(Mismatch::new("hardware ID", want, got));
        }
    }
    if expect.epid_well_formed == Some(true) || expect.epid_matches_product == Some(true) {
        match k.epid.parse::<crate::epid::Epid>() {
            Err(e) => out.push(Mismatch::new(
                "ePID",
                "a well-formed ePID",
                format!("{:?}: {e}", k.epid),
            )),
            Ok(epid) => {
                if expect.epid_well_formed == Some(true) {
                    let issues = epid.validate(None);
                    if !issues.is_empty() {
                        let shown: Vec<String> = issues.iter().map(ToString::to_string).collect();
                        out.push(Mismatch::new(
                            "ePID consistency",
                            "no inconsistency",
                            format!("{}: {}", k.epid, shown.join("; ")),
                        ));
                    }
                }
                if expect.epid_matches_product == Some(true) {
                    let ok = crate::catalog::host_key_groups_for_epid(epid.group_id, epid.key_id)
                        .any(|g| g.activates_kms_id(&k.kms_id));
                    if !ok {
                        let item = crate::catalog::kms_item(&k.kms_id)
                            .map_or_else(|| k.kms_id.to_string(), |i| i.name.to_owned());
                        out.push(Mismatch::new(
                            "ePID key group",
                            format!("a host key group that activates {item}"),
                            format!(
                                "{} (group {:05}, key {})",
                                k.epid, epid.group_id, epid.key_id
                            ),
                        ));
                    }
                }
            }
        }
    }
    if let Some(label) = &expect.epid_same_as {
        match ctx.labels.get(label) {
            Some(other) if other.epid == k.epid => {}
            Some(other) => out.push(Mismatch::new(
                format!("ePID (same as reply {label:?})"),
                other.epid.clone(),
                k.epid.clone(),
            )),
            None => out.push(Mismatch::new(
                "ePID",
                format!("same as reply {label:?}"),
                "no such reply (a vector error)",
            )),
        }
    }
    if let Some(c) = &expect.count {
        match count_expected(c, ctx.labels) {
            Err(e) => out.push(Mismatch::new("count", "-", e)),
            Ok(Some(want)) if !want.contains(&k.count) => {
                let shown: Vec<String> = want.iter().map(ToString::to_string).collect();
                let how = match &c.rel {
                    Some(l) if c.eq.is_none() => format!(
                        "{} (the count of reply {l:?} {:+}{})",
                        shown.join(" or "),
                        c.delta,
                        c.cap.map_or(String::new(), |cap| format!(
                            "; unchanged allowed from {cap}, a table that may be full"
                        ))
                    ),
                    _ => shown.join(" or "),
                };
                out.push(Mismatch::new("count", how, k.count.to_string()));
            }
            Ok(_) => {}
        }
        if let Some(min) = c.min
            && k.count < min
        {
            out.push(Mismatch::new(
                "count",
                format!("at least {min}"),
                k.count.to_string(),
            ));
        }
        if let Some(max) = c.max
            && k.count > max
        {
            out.push(Mismatch::new(
                "count",
                format!("at most {max}"),
                k.count.to_string(),
            ));
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_reply_kind_and_fields() {
        let labels = HashMap::new();
        let assoc = HashMap::new();
        let ctx = EvalCtx {
            labels: &labels,
            assoc: &assoc,
            port: 1688,
            default_reply: &[ReplyKind::Response],
            time_scale: 1,
        };
        let mut obs = Observed::of(ReplyKind::Refused, "refused");
        obs.hresult = Some(HResult::INVALID_DATA);
        let m = evaluate(&Expect::default(), &obs, &ctx);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].expected, "response");
        let e = Expect {
            reply: Some(super::super::vector::OneOrMany::One(ReplyKind::Refused)),
            hresult: Some(HResult(0xC004_F042)),
            ..Expect::default()
        };
        let m = evaluate(&e, &obs, &ctx);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].what, "HRESULT");
        let silent = Observed::of(ReplyKind::Silent, "silent");
        let e = Expect {
            reply: Some(super::super::vector::OneOrMany::One(ReplyKind::NoPdu)),
            ..Expect::default()
        };
        assert!(evaluate(&e, &silent, &ctx).is_empty());
    }

    #[test]
    fn test_count_relative_with_cap() {
        let mut labels = HashMap::new();
        labels.insert(
            "a".to_owned(),
            KmsObs {
                count: 50,
                ..KmsObs::default()
            },
        );
        let c = CountExpect {
            rel: Some("a".into()),
            delta: 1,
            cap: Some(50),
            ..CountExpect::default()
        };
        assert_eq!(count_expected(&c, &labels), Ok(Some(vec![51, 50])));
        labels.get_mut("a").unwrap().count = 3;
        assert_eq!(count_expected(&c, &labels), Ok(Some(vec![4])));
    }

    #[test]
    fn test_time_scale_stretches_only_upper_bounds() {
        let (labels, assoc) = (HashMap::new(), HashMap::new());
        let ctx = |time_scale| EvalCtx {
            labels: &labels,
            assoc: &assoc,
            port: 1688,
            default_reply: &[ReplyKind::Response],
            time_scale,
        };
        let mut obs = Observed::of(ReplyKind::Response, "a KMS response");
        obs.elapsed = Duration::from_millis(150);
        let e = Expect {
            max_over_handshake: Some(Duration::from_millis(100)),
            not_before: Some(Duration::from_millis(200)),
            ..Expect::default()
        };
        let whats = |scale| -> Vec<String> {
            evaluate(&e, &obs, &ctx(scale))
                .into_iter()
                .map(|m| m.what)
                .collect()
        };
        assert_eq!(
            whats(1),
            ["reply time", "reply time beyond the TCP handshake time"]
        );
        assert_eq!(whats(2), ["reply time"]);
    }
}
