//! A simulation scenario: the TOML file `simulate` reads, checked into a [`Scenario`] whose
//! every value is usable (catalog names resolved, periods ordered), with errors naming the key.

use serde::Deserialize;

use crate::catalog::{self, HostKeyGroup, Sku};
use crate::net::discovery::Target;
use crate::proto::discovery::{MAX_RECORDS, SrvRecord};

/// Longest simulation, days: ten years, far beyond the 180-day validity any question needs.
pub const MAX_DAYS: u32 = 3650;
/// Most machines one scenario declares: memory stays under 1 GiB (about 100 bytes each).
pub const MAX_MACHINES: u64 = 10_000_000;

/// Longest run in real time, minutes: a day, so that a real-time scenario is always bounded
/// (its clients' intervals are the host's, hours to days).
pub const MAX_REAL_MINUTES: u32 = 24 * 60;

/// SRV weight of a host that gives none: RFC 2782 leaves it to the administrator; 100 is what
/// `DnsDomainPublishList` examples use ("Priority and weight parameters can be added").
const DEFAULT_WEIGHT: u16 = 100;
/// Share of virtual machines when a group gives none (load's default, `load::fleet`).
const DEFAULT_VM: f64 = crate::load::fleet::DEFAULT_VM_SHARE;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    days: u32,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    clock: ClockMode,
    #[serde(default)]
    minutes: Option<u32>,
    #[serde(default)]
    hosts: Vec<RawHost>,
    #[serde(default)]
    machines: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: String,
    #[serde(default)]
    priority: u16,
    #[serde(default = "default_weight")]
    weight: u16,
    #[serde(default)]
    key_groups: Option<Vec<String>>,
    #[serde(default)]
    down: Vec<[f64; 2]>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    control: Option<String>,
}

/// Whose time a scenario runs on (`clock = "virtual"` or `"real"`, also in the report).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// Virtual time from 2026-01-01 00:00 UTC, as fast as the exchanges go: in-process hosts, and
    /// host processes whose clock is moved through their control port.
    #[default]
    Virtual,
    /// The wall clock: the simulation waits for each attempt, and host processes keep their
    /// own clock (any KMS host, vlmcsd or py-kms as well as `serve`).
    Real,
}

fn default_weight() -> u16 {
    DEFAULT_WEIGHT
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    count: u64,
    product: String,
    #[serde(default)]
    arrive: Option<[f64; 2]>,
    #[serde(default)]
    vm: Option<f64>,
    #[serde(default)]
    distinct_ids: Option<u64>,
    #[serde(default)]
    away: Vec<[f64; 2]>,
    #[serde(default)]
    leave: Option<f64>,
}

/// A period `[from, to)` in days since the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    /// First day (fractional days allowed).
    pub from: f64,
    /// End, excluded.
    pub to: f64,
}

impl Period {
    /// Whether `day` falls in the period.
    pub fn contains(&self, day: f64) -> bool {
        self.from <= day && day < self.to
    }
}

/// One KMS host of the site.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its name in the report.
    pub name: String,
    /// SRV priority and weight.
    pub srv: SrvRecord,
    /// Host key groups installed.
    pub key_groups: Vec<&'static HostKeyGroup>,
    /// When it does not respond.
    pub down: Vec<Period>,
    /// A host process to exchange with over TCP instead of an in-process engine.
    pub target: Option<HostTarget>,
}

/// Where a host process listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTarget {
    /// Its KMS port (`host:port`).
    pub kms: Target,
    /// Its control port (`serve --control`), through which its virtual clock is moved; `None`
    /// on its own clock.
    pub control: Option<Target>,
}

/// One group of machines.
#[derive(Debug, Clone)]
pub struct Group {
    /// Its name in the report.
    pub name: String,
    /// How many machines.
    pub count: u64,
    /// Their product.
    pub sku: &'static Sku,
    /// First boot spread uniformly over this period.
    pub arrive: Period,
    /// Share of virtual machines.
    pub vm: f64,
    /// Machine IDs among them (fewer than `count`: a cloned image).
    pub distinct_ids: u64,
    /// Powered off during these periods.
    pub away: Vec<Period>,
    /// Decommissioned on this day.
    pub leave: Option<f64>,
}

/// A checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Simulated days.
    pub days: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Virtual or real time.
    pub clock: ClockMode,
    /// The run stops this many minutes after the start, if given (real time needs it).
    pub minutes: Option<u32>,
    /// The hosts, in SRV record order.
    pub hosts: Vec<Host>,
    /// The machines.
    pub groups: Vec<Group>,
}

/// Why a scenario file cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScenarioError(pub String);

fn err(key: &str, what: impl std::fmt::Display) -> ScenarioError {
    ScenarioError(format!("{key}: {what}"))
}

/// A `host:port` (or `host`, port 1688) of a host process; not a `.domain`: the scenario's
/// hosts are the SRV records.
fn target(key: &str, text: &str) -> Result<Target, ScenarioError> {
    match text.parse::<Target>() {
        Ok(t @ Target::Host { .. }) => Ok(t),
        Ok(Target::Srv { .. }) => Err(err(
            key,
            format!(
                "{text:?} is a domain; give host:port (the scenario's hosts are its SRV records)"
            ),
        )),
        Err(e) => Err(err(key, e)),
    }
}

fn period(key: &str, [from, to]: [f64; 2]) -> Result<Period, ScenarioError> {
    if !(from.is_finite() && to.is_finite() && from >= 0.0 && from <= to) {
        return Err(err(
            key,
            format!("[{from}, {to}] is not a period [from, to) of days with 0 <= from <= to"),
        ));
    }
    Ok(Period { from, to })
}

impl Scenario {
    /// Parses and checks a scenario file's text.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ScenarioError(e.to_string()))?;
        let raw: RawScenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ScenarioError(format!("{path}: {}", e.into_inner().message()))
        })?;
        if raw.days == 0 || raw.days > MAX_DAYS {
            return Err(err("days", format!("must be 1 to {MAX_DAYS}")));
        }
        match (raw.clock, raw.minutes) {
            (_, Some(m)) if m == 0 || m > raw.days.saturating_mul(24 * 60) => {
                return Err(err(
                    "minutes",
                    "must be 1 to the scenario's days in minutes",
                ));
            }
            (ClockMode::Real, None) => {
                return Err(err(
                    "minutes",
                    format!("a run in real time needs its length, 1 to {MAX_REAL_MINUTES}"),
                ));
            }
            (ClockMode::Real, Some(m)) if m > MAX_REAL_MINUTES => {
                return Err(err(
                    "minutes",
                    format!("1 to {MAX_REAL_MINUTES} in real time"),
                ));
            }
            _ => {}
        }
        if raw.hosts.len() > MAX_RECORDS {
            return Err(err("hosts", format!("at most {MAX_RECORDS} hosts")));
        }
        let mut hosts = Vec::new();
        for (i, h) in raw.hosts.into_iter().enumerate() {
            let key = format!("hosts[{i}]");
            let named_key_groups = h.key_groups.is_some();
            let key_groups = match h.key_groups {
                None => catalog::default_host_key_groups(),
                Some(names) => names
                    .iter()
                    .map(|n| {
                        catalog::host_key_group(n).ok_or_else(|| {
                            err(
                                &format!("{key}.key_groups"),
                                format!("{n:?} is not a host key group of the catalog"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            let down = h
                .down
                .into_iter()
                .map(|p| period(&format!("{key}.down"), p))
                .collect::<Result<_, _>>()?;
            let host_target = match (&h.target, &h.control) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(err(&format!("{key}.control"), "needs the host's target"));
                }
                (Some(t), control) => Some(HostTarget {
                    kms: target(&format!("{key}.target"), t)?,
                    control: control
                        .as_deref()
                        .map(|c| target(&format!("{key}.control"), c))
                        .transpose()?,
                }),
            };
            if let Some(t) = &host_target {
                if named_key_groups {
                    return Err(err(
                        &format!("{key}.key_groups"),
                        "a host process has its own (serve --key-group); give them there",
                    ));
                }
                match (raw.clock, &t.control) {
                    (ClockMode::Virtual, None) => {
                        return Err(err(
                            &format!("{key}.control"),
                            "a host process on the virtual clock needs its control port \
                             (serve --clock virtual --control ADDR); one on its own clock needs \
                             clock = \"real\"",
                        ));
                    }
                    (ClockMode::Real, Some(_)) => {
                        return Err(err(
                            &format!("{key}.control"),
                            "in real time a host keeps its own clock; remove the control port",
                        ));
                    }
                    _ => {}
                }
            } else if raw.clock == ClockMode::Real {
                return Err(err(
                    &format!("{key}.target"),
                    "in real time every host is a process (host:port) on its own clock",
                ));
            }
            hosts.push(Host {
                name: h.name,
                srv: SrvRecord {
                    priority: h.priority,
                    weight: h.weight,
                },
                key_groups,
                down,
                target: host_target,
            });
        }
        let mut groups = Vec::new();
        let mut total = 0u64;
        for (i, g) in raw.machines.into_iter().enumerate() {
            let key = format!("machines[{i}]");
            let sku = catalog::lookup_sku(&g.product)
                .map_err(|e| err(&format!("{key}.product"), e.to_string()))?;
            if sku.application().is_none() {
                return Err(err(
                    &format!("{key}.product"),
                    format!("{:?} has no KMS application in the catalog", g.product),
                ));
            }
            total = total.saturating_add(g.count);
            if total > MAX_MACHINES {
                return Err(err(
                    &format!("{key}.count"),
                    format!("more than {MAX_MACHINES} machines in all"),
                ));
            }
            let distinct_ids = g.distinct_ids.unwrap_or(g.count);
            if distinct_ids == 0 && g.count > 0 || distinct_ids > g.count {
                return Err(err(
                    &format!("{key}.distinct_ids"),
                    format!("must be 1 to count ({})", g.count),
                ));
            }
            let vm = g.vm.unwrap_or(DEFAULT_VM);
            if !(0.0..=1.0).contains(&vm) {
                return Err(err(&format!("{key}.vm"), "a share from 0 to 1"));
            }
            let arrive = period(&format!("{key}.arrive"), g.arrive.unwrap_or([0.0, 0.0]))?;
            let away = g
                .away
                .into_iter()
                .map(|p| period(&format!("{key}.away"), p))
                .collect::<Result<_, _>>()?;
            if let Some(l) = g.leave
                && !(l.is_finite() && l >= 0.0)
            {
                return Err(err(&format!("{key}.leave"), "a day, 0 or later"));
            }
            groups.push(Group {
                name: g.name,
                count: g.count,
                sku,
                arrive,
                vm,
                distinct_ids,
                away,
                leave: g.leave,
            });
        }
        Ok(Scenario {
            days: raw.days,
            seed: raw.seed,
            clock: raw.clock,
            minutes: raw.minutes,
            hosts,
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_errors_name_the_key() {
        let e = |t: &str| Scenario::parse(t).expect_err("refused").0;
        assert!(e("days = 0").starts_with("days:"));
        assert!(e("days = 5\nsped = 1").contains("sped"));
        let bad_product = "days = 5\n[[machines]]\nname = \"a\"\ncount = 1\nproduct = \"Nope\"";
        assert!(
            e(bad_product).starts_with("machines[0].product:"),
            "{}",
            e(bad_product)
        );
        let bad_down = "days = 5\n[[hosts]]\nname = \"k\"\ndown = [[5, 1]]";
        assert!(e(bad_down).starts_with("hosts[0].down:"));
        let bad_type = "days = 5\n[[hosts]]\nname = \"k\"\npriority = \"x\"";
        assert!(e(bad_type).contains("hosts[0].priority"), "{}", e(bad_type));
        let no_control = "days = 5\n[[hosts]]\nname = \"k\"\ntarget = \"127.0.0.1:1688\"";
        assert!(
            e(no_control).starts_with("hosts[0].control:"),
            "{}",
            e(no_control)
        );
        let real_no_minutes = "days = 1\nclock = \"real\"";
        assert!(e(real_no_minutes).starts_with("minutes:"));
        let real_in_process = "days = 1\nclock = \"real\"\nminutes = 2\n[[hosts]]\nname = \"k\"";
        assert!(e(real_in_process).starts_with("hosts[0].target:"));
        let domain = "days = 1\nclock = \"real\"\nminutes = 2\n[[hosts]]\nname = \"k\"\n\
                      target = \".example.com\"";
        assert!(e(domain).starts_with("hosts[0].target:"), "{}", e(domain));
    }

    #[test]
    fn test_targets() {
        let s = Scenario::parse(
            "days = 1\n[[hosts]]\nname = \"k\"\ntarget = \"127.0.0.1:9\"\n\
             control = \"127.0.0.1:10\"",
        )
        .expect("parses");
        let t = s.hosts[0].target.as_ref().expect("a target");
        assert_eq!(t.kms.to_string(), "127.0.0.1:9");
        assert_eq!(
            t.control.as_ref().map(ToString::to_string).as_deref(),
            Some("127.0.0.1:10")
        );
        let s = Scenario::parse(
            "days = 1\nclock = \"real\"\nminutes = 3\n[[hosts]]\nname = \"k\"\n\
             target = \"localhost\"",
        )
        .expect("parses");
        assert_eq!(s.clock, ClockMode::Real);
        assert_eq!(
            s.hosts[0]
                .target
                .as_ref()
                .map(|t| t.kms.to_string())
                .as_deref(),
            Some("localhost:1688")
        );
    }

    #[test]
    fn test_defaults() {
        let s = Scenario::parse(
            "days = 5\n[[hosts]]\nname = \"k\"\n[[machines]]\nname = \"a\"\ncount = 3\n\
             product = \"Windows 10/11 Enterprise\"",
        )
        .expect("parses");
        assert_eq!(s.hosts[0].srv.weight, 100);
        assert_eq!(s.groups[0].distinct_ids, 3);
        assert_eq!(s.groups[0].arrive, Period { from: 0.0, to: 0.0 });
    }
}
