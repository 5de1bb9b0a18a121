//! Fingerprints: the tells that set emulators apart from a genuine host, the probes that look
//! for them, and the verdict built from what the suite saw.

use serde::Serialize;

use crate::epid::{Epid, EpidIssue, YearDay};
use crate::wire::ndr::Syntax;

use super::checks::{Mismatch, Observed};
use super::steps::CaseRun;
use super::vector::{ActivateStep, Probe, ReplyKind, RequestSpec};

/// One tell: which case saw it, what it was, and the implementation it points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// The case.
    pub case: String,
    /// What was seen.
    pub observation: String,
    /// The implementation it points to, when it points to one.
    pub suggests: Option<String>,
}

/// Hardware IDs that emulators send unless told otherwise.
pub const PUBLISHED_HWIDS: &[([u8; 8], &str, &str)] = &[
    (
        [0x3A, 0x1C, 0x04, 0x96, 0x00, 0xB6, 0x00, 0x76],
        "vlmcsd",
        "vlmcsd's built-in default hardware ID (shared captures README: HwId 3A1C049600B60076)",
    ),
    (
        [0x36, 0x4F, 0x46, 0x3A, 0x88, 0x63, 0xD3, 0x5F],
        "py-kms",
        "py-kms's former default hardware ID (364F463A8863D35F, its -w option's help)",
    ),
];

/// Association groups an emulator answers every bind with.
pub const CONSTANT_ASSOC_GROUPS: &[(u32, &str)] = &[(0x1063_bf3f, "py-kms")];

/// First build whose hosts accept NDR64 (Windows 7 / Server 2008 R2).
pub const FIRST_NDR64_BUILD: u32 = 7600;

/// The implementation an association group points to, if it is an emulator's constant.
pub fn assoc_group_tell(group: u32) -> Option<&'static str> {
    CONSTANT_ASSOC_GROUPS
        .iter()
        .find(|(g, _)| *g == group)
        .map(|(_, who)| *who)
}

/// One activation on a new connection (as Windows clients make them, and as hosts that close
/// after each response need).
async fn granted(
    run: &mut CaseRun<'_>,
    conn: &str,
    request: RequestSpec,
) -> Result<Observed, Mismatch> {
    if run.conn_used(conn) {
        run.open(conn, true, true, true).await?;
    } else {
        run.ensure_open(conn).await?;
    }
    let step = ActivateStep {
        conn: conn.to_owned(),
        request,
        ..ActivateStep::plain()
    };
    let obs = run
        .activate_once(&step)
        .await
        .map_err(|e| Mismatch::new("activation", "-", e))?;
    if obs.kind != Some(ReplyKind::Response) || obs.kms.is_none() {
        return Err(Mismatch::new("activation", "a KMS response", obs.shown));
    }
    Ok(obs)
}

fn parse_epid(obs: &Observed) -> Result<Epid, Mismatch> {
    let text = obs.kms.as_ref().map(|k| k.epid.clone()).unwrap_or_default();
    text.parse::<Epid>()
        .map_err(|e| Mismatch::new("ePID", "a well-formed ePID", format!("{text:?}: {e}")))
}

/// Runs a probe on connection `conn` (opened as Windows does if needed).
pub async fn probe(run: &mut CaseRun<'_>, probe: Probe, conn: &str) -> Vec<Mismatch> {
    match probe_inner(run, probe, conn).await {
        Ok(m) => m,
        Err(m) => vec![m],
    }
}

async fn probe_inner(
    run: &mut CaseRun<'_>,
    probe: Probe,
    conn: &str,
) -> Result<Vec<Mismatch>, Mismatch> {
    let mut out = Vec::new();
    match probe {
        Probe::PublishedHwid => {
            run.ensure_open(conn).await?;
            let obs = granted(run, conn, RequestSpec::default()).await?;
            let hwid = obs.kms.as_ref().and_then(|k| k.hwid);
            if let Some(h) = hwid
                && let Some((_, who, what)) = PUBLISHED_HWIDS.iter().find(|(x, ..)| *x == h)
            {
                let shown: String = h.iter().map(|b| format!("{b:02X}")).collect();
                run.tell(format!("hardware ID {shown}: {what}"), Some(who));
                out.push(Mismatch::new(
                    "hardware ID",
                    "not an emulator's published constant",
                    format!("{shown} ({what})"),
                ));
            }
        }
        Probe::EpidBuildVsNdr64 => {
            run.open(conn, true, false, true).await?;
            let ndr64 = run.has_syntax(conn, Syntax::Ndr64);
            let epid = parse_epid(&granted(run, conn, RequestSpec::default()).await?)?;
            let modern = epid.build >= FIRST_NDR64_BUILD;
            if modern != ndr64 {
                let (observation, suggests) = if modern {
                    (
                        format!(
                            "the ePID claims build {} (NDR64 since build {FIRST_NDR64_BUILD}) \
                             yet the host refuses NDR64",
                            epid.build
                        ),
                        Some("py-kms"),
                    )
                } else {
                    (
                        format!(
                            "the ePID claims build {}, older than NDR64, yet the host accepts it",
                            epid.build
                        ),
                        None,
                    )
                };
                run.tell(observation.clone(), suggests);
                out.push(Mismatch::new(
                    "ePID build against NDR64",
                    if modern {
                        "NDR64 accepted"
                    } else {
                        "NDR64 refused"
                    },
                    observation,
                ));
            }
        }
        Probe::EpidDate => {
            run.ensure_open(conn).await?;
            let epid = parse_epid(&granted(run, conn, RequestSpec::default()).await?)?;
            let (y, m, d, ..) = run.env().client_now().to_utc();
            let today = YearDay::from_ymd(y as u16, m as u8, d as u8);
            let problem = match epid.activation_date() {
                None => Some(format!("day {} does not exist in {}", epid.day, epid.year)),
                Some(date) => {
                    let before = epid.validate(None).into_iter().find_map(|i| match i {
                        EpidIssue::BeforeRelease { .. } => Some(i.to_string()),
                        _ => None,
                    });
                    // A day of slack for time zones.
                    let future = today.is_some_and(|t| {
                        date.year > t.year || (date.year == t.year && date.day > t.day + 1)
                    });
                    before.or_else(|| {
                        future.then(|| format!("activation date {date} is in the future"))
                    })
                }
            };
            if let Some(p) = problem {
                run.tell(format!("ePID {epid}: {p}"), None);
                out.push(Mismatch::new(
                    "ePID activation date",
                    "a real date after the build's release and not in the future",
                    format!("{epid}: {p}"),
                ));
            }
        }
        Probe::ConstantAssocGroup => {
            let second = format!("{conn}.second");
            run.open(conn, true, true, true).await?;
            run.open(&second, true, true, true).await?;
            let (a, b) = (run.assoc_of(conn), run.assoc_of(&second));
            if a == b {
                let group = a.unwrap_or(0);
                let who = assoc_group_tell(group);
                let observation = format!(
                    "two connections got the same association group 0x{group:08x}{}",
                    who.map_or(String::new(), |w| format!(", {w}'s constant"))
                );
                run.tell(observation.clone(), who);
                out.push(Mismatch::new(
                    "association groups",
                    "a new one per connection",
                    observation,
                ));
            }
        }
        Probe::CountMirrorsPolicy => {
            run.ensure_open(conn).await?;
            let mut counts = Vec::new();
            for n in [7u32, 9] {
                let obs = granted(
                    run,
                    conn,
                    RequestSpec {
                        machine: Some("*".into()),
                        required_clients: Some(n),
                        ..RequestSpec::default()
                    },
                )
                .await?;
                counts.push((n, obs.kms.map_or(0, |k| k.count)));
            }
            if counts.iter().all(|(n, c)| *c == 2 * n) {
                let shown = format!(
                    "two new machines with count policies 7 and 9 got counts {} and {}",
                    counts[0].1, counts[1].1
                );
                run.tell(
                    format!("{shown}: the count mirrors twice the policy"),
                    Some("emulator"),
                );
                out.push(Mismatch::new(
                    "count",
                    "the host's own count of machines",
                    format!("{shown} (twice the policy, whatever was counted)"),
                ));
            }
        }
    }
    Ok(out)
}

/// Which host the evidence points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// `genuine`, `vlmcsd`, `py-kms` or `unknown emulator`.
    pub looks_like: String,
    /// Every tell seen.
    pub evidence: Vec<Evidence>,
}

/// Weighs the evidence: the implementation most tells point to; an emulator of unknown make
/// when the tells point nowhere in particular; genuine when there is no tell.
pub fn verdict(evidence: Vec<Evidence>) -> Verdict {
    let mut votes: Vec<(String, usize)> = Vec::new();
    for e in &evidence {
        if let Some(s) = &e.suggests
            && s != "emulator"
        {
            match votes.iter_mut().find(|(n, _)| n == s) {
                Some(v) => v.1 += 1,
                None => votes.push((s.clone(), 1)),
            }
        }
    }
    votes.sort_by_key(|v| std::cmp::Reverse(v.1));
    let looks_like = match (votes.first(), evidence.is_empty()) {
        (Some((name, n)), _) if votes.get(1).is_none_or(|(_, m)| m < n) => name.clone(),
        (_, true) => "genuine".to_owned(),
        _ => "unknown emulator".to_owned(),
    };
    Verdict {
        looks_like,
        evidence,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn e(s: Option<&str>) -> Evidence {
        Evidence {
            case: "x".into(),
            observation: "y".into(),
            suggests: s.map(str::to_owned),
        }
    }

    #[test]
    fn test_verdict() {
        assert_eq!(verdict(vec![]).looks_like, "genuine");
        assert_eq!(verdict(vec![e(None)]).looks_like, "unknown emulator");
        assert_eq!(
            verdict(vec![e(Some("emulator"))]).looks_like,
            "unknown emulator"
        );
        assert_eq!(
            verdict(vec![
                e(Some("py-kms")),
                e(Some("vlmcsd")),
                e(Some("py-kms"))
            ])
            .looks_like,
            "py-kms"
        );
        assert_eq!(
            verdict(vec![e(Some("py-kms")), e(Some("vlmcsd"))]).looks_like,
            "unknown emulator"
        );
        assert_eq!(assoc_group_tell(0x1063_bf3f), Some("py-kms"));
    }
}
