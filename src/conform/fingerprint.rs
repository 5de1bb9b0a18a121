//! Fingerprints: the tells that set emulators apart from a genuine host, judged from what the
//! probes (in `steps`) observed, and the verdict weighed from every tell of a run. Pure: no
//! connection, no clock.

use serde::Serialize;

use crate::epid::{Epid, EpidIssue, YearDay};

/// One tell: which case saw it, what it was, and the implementation it points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
pub fn assoc_group_owner(group: u32) -> Option<&'static str> {
    CONSTANT_ASSOC_GROUPS
        .iter()
        .find(|(g, _)| *g == group)
        .map(|(_, who)| *who)
}

/// A tell a probe found: the observation that points away from a genuine host, and the
/// expectation of a genuine host it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tell {
    /// What was compared.
    pub what: &'static str,
    /// What a genuine host does.
    pub expected: &'static str,
    /// What this host did, as the mismatch shows it.
    pub actual: String,
    /// The observation, as the verdict's evidence shows it.
    pub observation: String,
    /// The implementation it points to, when it points to one.
    pub suggests: Option<&'static str>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The hardware ID of a V6 response: a tell if it is an emulator's published constant.
pub fn hwid_tell(hwid: Option<[u8; 8]>) -> Option<Tell> {
    let h = hwid?;
    let (_, who, what) = PUBLISHED_HWIDS.iter().find(|(x, ..)| *x == h)?;
    let shown = hex(&h);
    Some(Tell {
        what: "hardware ID",
        expected: "not an emulator's published constant",
        actual: format!("{shown} ({what})"),
        observation: format!("hardware ID {shown}: {what}"),
        suggests: Some(who),
    })
}

/// The ePID's build against whether the host accepted NDR64 (offered with NDR32, without
/// bind-time feature negotiation): a tell if they disagree.
pub fn epid_build_tell(epid: &Epid, ndr64_accepted: bool) -> Option<Tell> {
    let modern = epid.build >= FIRST_NDR64_BUILD;
    if modern == ndr64_accepted {
        return None;
    }
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
    Some(Tell {
        what: "ePID build against NDR64",
        expected: if modern {
            "NDR64 accepted"
        } else {
            "NDR64 refused"
        },
        actual: observation.clone(),
        observation,
        suggests,
    })
}

/// The ePID's activation date against `today` (the client's date): a tell if the day does
/// not exist, comes before the build's release, or lies in the future.
pub fn epid_date_tell(epid: &Epid, today: Option<YearDay>) -> Option<Tell> {
    let problem = match epid.activation_date() {
        None => format!("day {} does not exist in {}", epid.day, epid.year),
        Some(date) => {
            let before = epid.validate(None).into_iter().find_map(|i| match i {
                EpidIssue::BeforeRelease { .. } => Some(i.to_string()),
                _ => None,
            });
            // A day of slack for time zones.
            let future = today.is_some_and(|t| {
                date.year > t.year || (date.year == t.year && date.day > t.day + 1)
            });
            before.or_else(|| future.then(|| format!("activation date {date} is in the future")))?
        }
    };
    Some(Tell {
        what: "ePID activation date",
        expected: "a real date after the build's release and not in the future",
        actual: format!("{epid}: {problem}"),
        observation: format!("ePID {epid}: {problem}"),
        suggests: None,
    })
}

/// The association groups two connections' binds got: a tell if they are the same.
pub fn assoc_groups_tell(first: Option<u32>, second: Option<u32>) -> Option<Tell> {
    if first != second {
        return None;
    }
    let group = first.unwrap_or(0);
    let who = assoc_group_owner(group);
    let observation = format!(
        "two connections got the same association group 0x{group:08x}{}",
        who.map_or(String::new(), |w| format!(", {w}'s constant"))
    );
    Some(Tell {
        what: "association groups",
        expected: "a new one per connection",
        actual: observation.clone(),
        observation,
        suggests: who,
    })
}

/// The counts two new machines got, each with its required count: a tell if every count is
/// twice the policy (a host that echoes the request instead of counting).
pub fn count_tell(counts: &[(u32, u32)]) -> Option<Tell> {
    if counts.is_empty() || !counts.iter().all(|(n, c)| *c == 2 * n) {
        return None;
    }
    let policies: Vec<String> = counts.iter().map(|(n, _)| n.to_string()).collect();
    let got: Vec<String> = counts.iter().map(|(_, c)| c.to_string()).collect();
    let shown = format!(
        "two new machines with count policies {} got counts {}",
        policies.join(" and "),
        got.join(" and ")
    );
    Some(Tell {
        what: "count",
        expected: "the host's own count of machines",
        actual: format!("{shown} (twice the policy, whatever was counted)"),
        observation: format!("{shown}: the count mirrors twice the policy"),
        suggests: Some("emulator"),
    })
}

/// Which host the evidence points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
        assert_eq!(assoc_group_owner(0x1063_bf3f), Some("py-kms"));
    }

    #[test]
    fn test_tells() {
        assert_eq!(hwid_tell(None), None);
        assert_eq!(hwid_tell(Some([1; 8])), None);
        let t = hwid_tell(Some(PUBLISHED_HWIDS[0].0)).unwrap();
        assert_eq!(t.suggests, Some("vlmcsd"));
        assert!(
            t.observation.starts_with("hardware ID 3A1C049600B60076"),
            "{t:?}"
        );
        assert_eq!(assoc_groups_tell(Some(1), Some(2)), None);
        let t = assoc_groups_tell(Some(0x1063_bf3f), Some(0x1063_bf3f)).unwrap();
        assert_eq!(t.suggests, Some("py-kms"));
        assert_eq!(count_tell(&[(7, 3), (9, 4)]), None);
        let t = count_tell(&[(7, 14), (9, 18)]).unwrap();
        assert_eq!(
            t.actual,
            "two new machines with count policies 7 and 9 got counts 14 and 18 \
             (twice the policy, whatever was counted)"
        );
    }
}
