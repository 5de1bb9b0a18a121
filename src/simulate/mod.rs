//! `simulate`'s engine: a site of Windows KMS clients ([`Client`] with [`Discovery`]) and
//! bundled host engines over virtual days, deterministic for a scenario and seed. Events run in
//! virtual time from one queue keyed by [`FileTime`]; every exchange takes the whole byte path
//! (RPC bind, request encoded and encrypted by the client code, answered by a host engine from
//! its bytes, response decrypted and verified with every check) with no shortcut model.
//!
//! Per machine only compact state is kept (its client, discovery, arrival time and indexes:
//! under 100 bytes); requests, names and machine IDs are derived from the seed when sent.

pub mod report;
pub mod scenario;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::catalog::AppKind;
use crate::epid::YearDay;
use crate::proto::client::message::{ResponseBuf, decode_response, encode_request};
use crate::proto::client::session::{CallReply, ClientRpcOptions, ClientSession};
use crate::proto::discovery::{Discovery, SrvRecord};
use crate::proto::faults::FaultSet;
use crate::proto::host::config::HostConfig;
use crate::proto::host::engine::{KmsHost, Policy, activate};
use crate::proto::host::message::HostRandom;
use crate::proto::host::session::{HostRpcConfig, HostSession};
use crate::proto::lifecycle::{Answer, Client, ClientVerdict, Intervals, State};
use crate::proto::verdict::Failure;
use crate::wire::Guid;
use crate::wire::kms::{FileTime, RequestBase, Version, Workstation};
use crate::wire::rpc::split_pdu;

use self::report::{
    Counts, DayReport, Event, FORMAT, GroupReport, HostDay, Minutes, Report, Summary,
};
pub use self::scenario::{Scenario, ScenarioError};

/// Where virtual time starts: 2026-01-01 00:00 UTC (any fixed day would do; a fixed one keeps
/// reports byte-identical).
pub const START: FileTime = FileTime::from_unix_secs(1_767_225_600);
/// [`START`] as the day generated ePIDs carry.
const START_DAY: YearDay = YearDay { year: 2026, day: 1 };
const TICKS_PER_DAY: u64 = 86_400 * FileTime::TICKS_PER_SEC;
const TICKS_PER_MINUTE: u64 = 60 * FileTime::TICKS_PER_SEC;

/// The time `day` days (fractional) after [`START`].
pub fn at_day(day: f64) -> FileTime {
    // Days are at most scenario::MAX_DAYS, so the product fits u64 exactly enough.
    FileTime(START.0 + (day.max(0.0) * TICKS_PER_DAY as f64) as u64)
}

fn day_of(t: FileTime) -> f64 {
    t.0.saturating_sub(START.0) as f64 / TICKS_PER_DAY as f64
}

/// SplitMix64: derives per-machine values (machine ID, name) from the seed without storing
/// them.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One simulated machine: everything else is derived when needed.
#[derive(Debug, Clone)]
struct Machine {
    client: Client,
    discovery: Discovery,
    arrive: FileTime,
    /// Minutes from arrival to the first activation; `u32::MAX` while never activated.
    first_activation: u32,
    group: u32,
    /// Index of its machine ID in the group (machines of a cloned image share one).
    id: u32,
    vm: bool,
}

/// One host of the site: its engine and today's tally.
#[derive(Debug)]
struct SimHost {
    policy: Policy,
    requests: u64,
    sessions: u32,
}

/// Why an attempt did not activate, as the day's `failures` count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Miss {
    Below,
    Failed(Failure),
}

/// Per-group tallies for the never-activated reason.
#[derive(Debug, Default, Clone)]
struct GroupTally {
    max_count: Option<u32>,
    last_failure: Option<Failure>,
}

/// Reusable buffers of one exchange.
#[derive(Debug, Default)]
struct Scratch {
    wire: Vec<u8>,
    reply: Vec<u8>,
    kms: Vec<u8>,
    buf: ResponseBuf,
}

/// What a run produced besides the report: for progress and rates.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Days done.
    pub day: u32,
    /// Exchanges so far.
    pub exchanges: u64,
}

/// A running simulation.
#[derive(Debug)]
pub struct Simulation {
    scenario: Scenario,
    records: Vec<SrvRecord>,
    hosts: Vec<SimHost>,
    machines: Vec<Machine>,
    queue: BinaryHeap<Reverse<(u64, u32)>>,
    rng: StdRng,
    scratch: Scratch,
    exchanges: u64,
    attempts_today: u64,
    misses: BTreeMap<Miss, u64>,
    tallies: Vec<GroupTally>,
    failovers: BTreeMap<(u32, u32, u32), u64>,
}

impl Simulation {
    /// Sets up the site of `scenario` (its hosts' engines, every machine's first boot).
    pub fn new(scenario: Scenario) -> Result<Simulation, ScenarioError> {
        let mut rng = StdRng::seed_from_u64(scenario.seed);
        let mut hosts = Vec::new();
        for (i, h) in scenario.hosts.iter().enumerate() {
            let config = HostConfig {
                key_groups: h.key_groups.clone(),
                ..HostConfig::default()
            };
            let engine = KmsHost::new(config, START_DAY, mix(scenario.seed ^ i as u64))
                .map_err(|e| ScenarioError(format!("hosts[{i}]: {e}")))?;
            hosts.push(SimHost {
                policy: Policy::new(engine, FaultSet::NONE),
                requests: 0,
                sessions: 0,
            });
        }
        let mut machines = Vec::new();
        for (gi, g) in scenario.groups.iter().enumerate() {
            let threshold = g.sku.class.threshold();
            for m in 0..g.count {
                let span = g.arrive.to - g.arrive.from;
                let arrive = at_day(g.arrive.from + span * rng.random::<f64>());
                machines.push(Machine {
                    client: Client::new(threshold, arrive),
                    discovery: Discovery::new(),
                    arrive,
                    first_activation: u32::MAX,
                    group: gi as u32,
                    id: (m % g.distinct_ids.max(1)) as u32,
                    vm: rng.random_bool(g.vm),
                });
            }
        }
        let queue = machines
            .iter()
            .enumerate()
            .map(|(i, m)| Reverse((m.arrive.0, i as u32)))
            .collect();
        let records = scenario.hosts.iter().map(|h| h.srv).collect();
        let tallies = vec![GroupTally::default(); scenario.groups.len()];
        Ok(Simulation {
            scenario,
            records,
            hosts,
            machines,
            queue,
            rng,
            scratch: Scratch::default(),
            exchanges: 0,
            attempts_today: 0,
            misses: BTreeMap::new(),
            tallies,
            failovers: BTreeMap::new(),
        })
    }

    /// Runs every day, calling `progress` after each; returns the report (its
    /// `summary.exchanges_per_sec` is 0: the caller, who owns a clock, fills it in).
    pub fn run(mut self, mut progress: impl FnMut(Progress)) -> Report {
        let mut days = Vec::new();
        for day in 0..self.scenario.days {
            let end = at_day(f64::from(day + 1));
            while let Some(&Reverse((t, m))) = self.queue.peek() {
                if t >= end.0 {
                    break;
                }
                self.queue.pop();
                self.step(FileTime(t), m as usize);
            }
            days.push(self.snapshot(day, end));
            progress(Progress {
                day: day + 1,
                exchanges: self.exchanges,
            });
        }
        self.finish(days)
    }

    fn group_absent(&self, g: usize, day: f64) -> Option<f64> {
        let group = &self.scenario.groups[g];
        if group.leave.is_some_and(|l| day >= l) {
            return Some(f64::INFINITY);
        }
        group.away.iter().find(|p| p.contains(day)).map(|p| p.to)
    }

    /// One machine's due attempt at `now`.
    fn step(&mut self, now: FileTime, m: usize) {
        let g = self.machines[m].group as usize;
        match self.group_absent(g, day_of(now)) {
            Some(back) if back.is_finite() => {
                // Powered off: the overdue attempt is made when it comes back.
                self.queue.push(Reverse((at_day(back).0, m as u32)));
                return;
            }
            Some(_) => return,
            None => {}
        }
        let before = self.machines[m].discovery.cached();
        let answer = self.attempt(now, m);
        self.attempts_today += 1;
        let after = self.machines[m].discovery.cached();
        if let (Some(a), Some(b)) = (before, after)
            && a != b
        {
            let day = (day_of(now) as u32, a as u32, b as u32);
            *self.failovers.entry(day).or_insert(0) += 1;
        }
        let machine = &mut self.machines[m];
        let verdict = machine.client.handle_answer(now, answer);
        let tally = &mut self.tallies[g];
        match verdict {
            ClientVerdict::Activated { .. } => {
                if machine.first_activation == u32::MAX {
                    let minutes = (now.0 - machine.arrive.0) / TICKS_PER_MINUTE;
                    machine.first_activation = u32::try_from(minutes).unwrap_or(u32::MAX - 1);
                }
            }
            ClientVerdict::BelowThreshold { count, .. } => {
                *self.misses.entry(Miss::Below).or_insert(0) += 1;
                tally.max_count = Some(tally.max_count.map_or(count, |c| c.max(count)));
            }
            ClientVerdict::Failed(f) => {
                *self.misses.entry(Miss::Failed(f)).or_insert(0) += 1;
                tally.last_failure = Some(f);
            }
        }
        let next = machine.client.next_attempt();
        if next < at_day(f64::from(self.scenario.days)) {
            self.queue.push(Reverse((next.0, m as u32)));
        }
    }

    /// Discovery and the exchange with the host it finds.
    fn attempt(&mut self, now: FileTime, m: usize) -> Answer {
        let day = day_of(now);
        loop {
            let random = self.rng.random::<u32>();
            let Some(h) = self.machines[m]
                .discovery
                .next_target(&self.records, random)
            else {
                // Nobody responded: the client waits its activation interval.
                return Answer::Failed(Failure::Timeout);
            };
            if self.scenario.hosts[h].down.iter().any(|p| p.contains(day)) {
                self.machines[m].discovery.handle_no_response(h);
                continue;
            }
            self.machines[m].discovery.handle_response(h);
            let base = self.request(now, m);
            return self.exchange(h, &base, now);
        }
    }

    /// The request machine `m` sends at `now`.
    fn request(&self, now: FileTime, m: usize) -> RequestBase {
        let machine = &self.machines[m];
        let group = &self.scenario.groups[machine.group as usize];
        let sku = group.sku;
        let key =
            mix(self.scenario.seed ^ (u64::from(machine.group) << 32 | u64::from(machine.id)));
        let mut cmid = [0u8; 16];
        cmid[..8].copy_from_slice(&key.to_le_bytes());
        cmid[8..].copy_from_slice(&mix(key).to_le_bytes());
        let (license_status, binding_expiration) = machine.client.license(now);
        // Clones share the image's name as well as its machine ID.
        let name = format!("{}-{}", group.name, machine.id);
        RequestBase {
            version: Version {
                major: u16::from(sku.protocol().unwrap_or(6)),
                minor: 0,
            },
            vm_info: u32::from(machine.vm),
            license_status,
            binding_expiration,
            app_id: sku.application().map_or(Guid::NIL, |a| a.id),
            sku_id: sku.id,
            kms_id: sku.kms,
            cmid: Guid::new_v4(cmid),
            required_clients: sku.class.threshold(),
            client_time: now,
            previous_cmid: Guid::NIL,
            workstation: Workstation::new(&name),
        }
    }

    /// One whole exchange with host `h` over an in-memory connection.
    fn exchange(&mut self, h: usize, base: &RequestBase, now: FileTime) -> Answer {
        self.exchanges += 1;
        let host = &mut self.hosts[h];
        host.requests += 1;
        host.sessions = host.sessions.wrapping_add(1);
        let random = HostRandom {
            salt: self.rng.random(),
            iv: self.rng.random(),
        };
        let iv: [u8; 16] = self.rng.random();
        let mut session = HostSession::new(HostRpcConfig::default(), 0x1000 + host.sessions);
        let policy = &mut host.policy;
        let mut serve = |req: &[u8], out: &mut Vec<u8>| {
            activate(
                req,
                now,
                &random,
                FaultSet::NONE,
                |r, c| policy.decide(r, c, now),
                out,
            )
            .1
        };
        let s = &mut self.scratch;
        let mut client = ClientSession::new(ClientRpcOptions::default());
        // Feeds every whole PDU of `bytes` to the host, its replies into `out`.
        let to_host = |session: &mut HostSession,
                       serve: &mut crate::proto::host::session::Activate<'_>,
                       bytes: &[u8],
                       out: &mut Vec<u8>|
         -> bool {
            out.clear();
            let mut rest = bytes;
            while let Ok(Some((pdu, tail))) = split_pdu(rest) {
                if session.handle(pdu, serve, out).close {
                    return false;
                }
                rest = tail;
            }
            true
        };
        s.wire.clear();
        client.bind(&mut s.wire);
        let open = to_host(&mut session, &mut serve, &s.wire, &mut s.reply);
        let Ok(bound) = client.handle_bind_reply(&s.reply) else {
            return Answer::Failed(Failure::Protocol);
        };
        if let Some(c) = bound.checks.failed().next() {
            return Answer::Failed(Failure::Check(c.id));
        }
        if !open {
            return Answer::Failed(Failure::Closed);
        }
        if bound.needs_alter_context {
            s.wire.clear();
            client.alter_context(&mut s.wire);
            to_host(&mut session, &mut serve, &s.wire, &mut s.reply);
            match client.handle_bind_reply(&s.reply) {
                Err(_) => return Answer::Failed(Failure::Protocol),
                Ok(b) => {
                    if let Some(c) = b.checks.failed().next() {
                        return Answer::Failed(Failure::Check(c.id));
                    }
                }
            }
        }
        s.kms.clear();
        let sent = encode_request(base, iv, &mut s.kms);
        s.wire.clear();
        client.request(&s.kms, &mut s.wire);
        to_host(&mut session, &mut serve, &s.wire, &mut s.reply);
        let mut outcome = None;
        let mut rest = &s.reply[..];
        while let Ok(Some((pdu, tail))) = split_pdu(rest) {
            match client.handle_reply(pdu) {
                Ok(Some(o)) => outcome = Some(o),
                Ok(None) => {}
                Err(_) => return Answer::Failed(Failure::Protocol),
            }
            rest = tail;
        }
        let Some(outcome) = outcome else {
            return Answer::Failed(Failure::Closed);
        };
        match outcome.reply {
            CallReply::Refused(h) => Answer::Failed(Failure::HResult(h)),
            CallReply::Fault(f) => Answer::Failed(Failure::Fault(f)),
            CallReply::Response => {
                if let Some(c) = outcome.checks.failed().next() {
                    return Answer::Failed(Failure::Check(c.id));
                }
                match decode_response(&sent, client.response_body(), &mut s.buf) {
                    Err(_) => Answer::Failed(Failure::Undecodable),
                    Ok((resp, checks)) => match checks.failed().next() {
                        Some(c) => Answer::Failed(Failure::Check(c.id)),
                        None => Answer::Count {
                            count: resp.base.count,
                            intervals: Some(Intervals {
                                activation: resp.base.activation_interval,
                                renewal: resp.base.renewal_interval,
                            }),
                        },
                    },
                }
            }
        }
    }

    /// The state at the end of `day`.
    fn snapshot(&mut self, day: u32, end: FileTime) -> DayReport {
        let mut r = DayReport {
            day: day + 1,
            requests: std::mem::take(&mut self.attempts_today),
            ..DayReport::default()
        };
        let now = FileTime(end.0 - 1);
        let d = day_of(now);
        let absent: Vec<bool> = (0..self.scenario.groups.len())
            .map(|g| self.group_absent(g, d).is_some())
            .collect();
        for m in &self.machines {
            if now < m.arrive || absent[m.group as usize] {
                r.absent += 1;
                continue;
            }
            match m.client.state(now) {
                State::Licensed => r.activated += 1,
                State::OutOfTolerance => r.out_of_tolerance += 1,
                State::Grace | State::GraceExpired => r.not_activated += 1,
            }
        }
        for (miss, n) in std::mem::take(&mut self.misses) {
            let key = match miss {
                Miss::Below => "count below threshold".to_owned(),
                Miss::Failed(f) => f.to_string(),
            };
            r.failures.insert(key, n);
        }
        for (h, host) in self.hosts.iter_mut().enumerate() {
            let engine = host.policy.host();
            r.hosts.push(HostDay {
                name: self.scenario.hosts[h].name.clone(),
                requests: host.requests,
                counts: Counts {
                    windows: engine.count(AppKind::Windows, end),
                    office2010: engine.count(AppKind::Office2010, end),
                    office2013: engine.count(AppKind::Office2013, end),
                },
            });
            host.requests = 0;
        }
        r
    }

    fn finish(self, days: Vec<DayReport>) -> Report {
        let mut events = Vec::new();
        for host in &self.scenario.hosts {
            for p in &host.down {
                events.push(Event::host(p.from, "host down", &host.name));
                events.push(Event::host(p.to, "host up", &host.name));
            }
        }
        for (&(day, from, to), &n) in &self.failovers {
            events.push(Event {
                day: f64::from(day),
                event: "failover".to_owned(),
                host: self.scenario.hosts[from as usize].name.clone(),
                to: Some(self.scenario.hosts[to as usize].name.clone()),
                machines: Some(n),
            });
        }
        // A period reaching past the end has no "up" within the run.
        events.retain(|e| e.day <= f64::from(self.scenario.days));
        events.sort_by(|a, b| a.day.total_cmp(&b.day));
        let end = at_day(f64::from(self.scenario.days));
        let last = FileTime(end.0 - 1);
        let mut groups: Vec<GroupReport> = Vec::new();
        let mut minutes: Vec<Vec<u32>> = vec![Vec::new(); self.scenario.groups.len()];
        let mut at_end = vec![0u64; self.scenario.groups.len()];
        for m in &self.machines {
            let g = m.group as usize;
            if m.first_activation != u32::MAX {
                minutes[g].push(m.first_activation);
            }
            if m.client.is_licensed(last) {
                at_end[g] += 1;
            }
        }
        for (g, group) in self.scenario.groups.iter().enumerate() {
            let mut mins = std::mem::take(&mut minutes[g]);
            mins.sort_unstable();
            let never = group.count - mins.len() as u64;
            let tally = &self.tallies[g];
            let threshold = group.sku.class.threshold();
            let reason = (never > 0).then(|| match (tally.max_count, tally.last_failure) {
                (None, Some(f)) => format!("{never} machines got no count from any host (last failure: {f})"),
                (None, None) => format!("{never} machines never made a request (absent or arriving too late)"),
                (Some(c), _) if group.distinct_ids < group.count => format!(
                    "{} machines share {} machine IDs: the host's count stayed at {c} < {threshold}",
                    group.count, group.distinct_ids
                ),
                (Some(c), _) => format!("the host's count stayed at {c} < {threshold}"),
            });
            groups.push(GroupReport {
                name: group.name.clone(),
                product: group.sku.name.to_owned(),
                machines: group.count,
                activated_at_end: at_end[g],
                never_activated: never,
                never_activated_reason: reason,
                first_activation_minutes: Minutes::of(&mins),
            });
        }
        let activated_at_end = at_end.iter().sum();
        let never_activated = groups.iter().map(|g| g.never_activated).sum();
        Report {
            format: FORMAT.to_owned(),
            seed: self.scenario.seed,
            days_simulated: self.scenario.days,
            days,
            groups,
            events,
            summary: Summary {
                machines: self.machines.len() as u64,
                exchanges: self.exchanges,
                exchanges_per_sec: 0.0,
                activated_at_end,
                never_activated,
            },
        }
    }
}

/// Runs `scenario` to its end.
pub fn run(scenario: Scenario, progress: impl FnMut(Progress)) -> Result<Report, ScenarioError> {
    Ok(Simulation::new(scenario)?.run(progress))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_machine_state_is_compact() {
        // 1,000,000 machines under 1 GiB with the queue: well under 1 KiB each.
        assert!(
            core::mem::size_of::<Machine>() <= 96,
            "{}",
            core::mem::size_of::<Machine>()
        );
    }
}
