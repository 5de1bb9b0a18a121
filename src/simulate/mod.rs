//! `simulate`'s engine: a site of Windows KMS clients ([`Client`] with [`Discovery`]) and KMS
//! hosts over virtual days, deterministic for a scenario and seed. Events run in virtual time
//! from one queue keyed by [`FileTime`]; every exchange takes the whole byte path (RPC bind,
//! request encoded and encrypted by the client code, answered from its bytes, response
//! decrypted and verified with every check) with no shortcut model. A host is a bundled engine
//! in this process, or a host process over TCP ([`exchange::Remote`]): `serve --clock virtual
//! --control` with its clock moved to the simulation's before each exchange, or, in real time,
//! any KMS host on its own clock while the simulation waits for each attempt.
//!
//! Per machine only compact state is kept (its client, discovery, arrival time and indexes:
//! under 100 bytes); requests, names and machine IDs are derived from the seed when sent.

pub mod exchange;
pub mod report;
pub mod scenario;
pub mod threshold;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::catalog::{self, AppKind};
use crate::clock;
use crate::epid::YearDay;
use crate::host::control::ControlError;
use crate::proto::client::message::encode_request;
use crate::proto::discovery::{Discovery, SrvRecord};
use crate::proto::faults::FaultSet;
use crate::proto::host::config::HostConfig;
use crate::proto::host::engine::{KmsHost, Policy};
use crate::proto::host::message::HostRandom;
use crate::proto::lifecycle::{Answer, Client, ClientVerdict, State};
use crate::proto::verdict::Failure;
use crate::wire::Guid;
use crate::wire::kms::{FileTime, RequestBase, Version, Workstation};

use self::exchange::{Remote, RemoteError, Scratch};
use self::report::{
    Counts, DayReport, Event, FORMAT, GroupReport, HostDay, Minutes, MinutesBin, Report, Summary,
};
pub use self::scenario::{ClockMode, Scenario, ScenarioError};

/// Where virtual time starts: 2026-01-01 00:00 UTC (any fixed day would do; a fixed one keeps
/// reports byte-identical).
pub const START: FileTime = FileTime::from_unix_secs(1_767_225_600);
/// [`START`] as the day generated ePIDs carry.
const START_DAY: YearDay = YearDay { year: 2026, day: 1 };
const TICKS_PER_DAY: u64 = 86_400 * FileTime::TICKS_PER_SEC;
const TICKS_PER_MINUTE: u64 = 60 * FileTime::TICKS_PER_SEC;

/// The time `day` days (fractional) after `origin` (the run's start).
fn at_day(origin: FileTime, day: f64) -> FileTime {
    // Days are at most scenario::MAX_DAYS, so the product fits u64 exactly enough.
    FileTime(origin.0 + (day.max(0.0) * TICKS_PER_DAY as f64) as u64)
}

fn day_of(origin: FileTime, t: FileTime) -> f64 {
    t.0.saturating_sub(origin.0) as f64 / TICKS_PER_DAY as f64
}

/// Why a simulation did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The scenario is not valid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A host process cannot be reached or stopped answering its control port.
    #[error("hosts[{index}] ({name}): {source}")]
    Host {
        /// The host's index in the scenario.
        index: usize,
        /// Its name.
        name: String,
        /// What failed.
        source: RemoteError,
    },
    /// The async runtime for host processes could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
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

/// Where a host's answers come from.
#[derive(Debug)]
enum Backend {
    /// A bundled engine in this process.
    InProcess(Box<Policy>),
    /// A host process over TCP.
    Remote(Box<Remote>),
}

/// One host of the site: its engine and today's tally.
#[derive(Debug)]
struct SimHost {
    backend: Backend,
    requests: u64,
    sessions: u32,
    /// The highest count it returned today per application (Windows, Office 2010, Office
    /// 2013): a host process without a control port is known only by what it says.
    said: [u32; 3],
}

fn app_index(app: AppKind) -> usize {
    match app {
        AppKind::Windows => 0,
        AppKind::Office2010 => 1,
        AppKind::Office2013 => 2,
    }
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
    /// Where the run's time starts: [`START`] in virtual time, the wall clock's now in real
    /// time.
    origin: FileTime,
    /// Where it ends: its days, or its `minutes`.
    stop: FileTime,
    /// Drives the exchanges with host processes, when there are any.
    runtime: Option<tokio::runtime::Runtime>,
    /// What stopped the run early (a host process's control port failing).
    fatal: Option<SimulateError>,
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
    /// Sets up the site of `scenario` (its hosts' engines or connections, every machine's
    /// first boot).
    pub fn new(scenario: Scenario) -> Result<Simulation, SimulateError> {
        let mut rng = StdRng::seed_from_u64(scenario.seed);
        let runtime = if scenario.hosts.iter().any(|h| h.target.is_some()) {
            Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(SimulateError::Runtime)?,
            )
        } else {
            None
        };
        let mut hosts = Vec::new();
        for (i, h) in scenario.hosts.iter().enumerate() {
            let backend = match (&h.target, &runtime) {
                (Some(t), Some(rt)) => {
                    let remote = rt
                        .block_on(Remote::open(&t.kms, t.control.as_ref()))
                        .map_err(|source| SimulateError::Host {
                            index: i,
                            name: h.name.clone(),
                            source,
                        })?;
                    Backend::Remote(Box::new(remote))
                }
                _ => {
                    let config = HostConfig {
                        key_groups: h.key_groups.clone(),
                        ..HostConfig::default()
                    };
                    let engine = KmsHost::new(config, START_DAY, mix(scenario.seed ^ i as u64))
                        .map_err(|e| ScenarioError(format!("hosts[{i}]: {e}")))?;
                    Backend::InProcess(Box::new(Policy::new(engine, FaultSet::NONE)))
                }
            };
            hosts.push(SimHost {
                backend,
                requests: 0,
                sessions: 0,
                said: [0; 3],
            });
        }
        let origin = match scenario.clock {
            ClockMode::Virtual => START,
            ClockMode::Real => clock::now_filetime(),
        };
        let stop = match scenario.minutes {
            Some(m) => FileTime(origin.0 + u64::from(m) * TICKS_PER_MINUTE),
            None => at_day(origin, f64::from(scenario.days)),
        };
        let mut machines = Vec::new();
        for (gi, g) in scenario.groups.iter().enumerate() {
            let threshold = g.sku.class.threshold();
            for m in 0..g.count {
                let span = g.arrive.to - g.arrive.from;
                let arrive = at_day(origin, g.arrive.from + span * rng.random::<f64>());
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
            origin,
            stop,
            runtime,
            fatal: None,
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
    pub fn run(mut self, mut progress: impl FnMut(Progress)) -> Result<Report, SimulateError> {
        let mut days = Vec::new();
        for day in 0..self.scenario.days {
            let end = at_day(self.origin, f64::from(day + 1)).min(self.stop);
            while let Some(&Reverse((t, m))) = self.queue.peek() {
                if t >= end.0 {
                    break;
                }
                self.queue.pop();
                self.wait_until(FileTime(t));
                self.step(FileTime(t), m as usize);
                if let Some(e) = self.fatal.take() {
                    return Err(e);
                }
            }
            self.wait_until(end);
            days.push(self.snapshot(day, end));
            if let Some(e) = self.fatal.take() {
                return Err(e);
            }
            progress(Progress {
                day: day + 1,
                exchanges: self.exchanges,
            });
            if end >= self.stop {
                break;
            }
        }
        Ok(self.finish(days))
    }

    /// In real time, sleeps until the wall clock reaches `t` (bounded by the scenario's
    /// `minutes`); in virtual time, nothing.
    fn wait_until(&self, t: FileTime) {
        if self.scenario.clock == ClockMode::Real {
            let ticks = t.0.saturating_sub(clock::now_filetime().0);
            std::thread::sleep(std::time::Duration::from_nanos(ticks.saturating_mul(100)));
        }
    }

    /// Records the first error that stops the run.
    fn fail(&mut self, h: usize, source: ControlError) {
        if self.fatal.is_none() {
            self.fatal = Some(SimulateError::Host {
                index: h,
                name: self.scenario.hosts[h].name.clone(),
                source: RemoteError::Control(source),
            });
        }
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
        match self.group_absent(g, day_of(self.origin, now)) {
            Some(back) if back.is_finite() => {
                // Powered off: the overdue attempt is made when it comes back.
                self.queue
                    .push(Reverse((at_day(self.origin, back).0, m as u32)));
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
            let day = (day_of(self.origin, now) as u32, a as u32, b as u32);
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
        if next < self.stop {
            self.queue.push(Reverse((next.0, m as u32)));
        }
    }

    /// Discovery and the exchange with the host it finds.
    fn attempt(&mut self, now: FileTime, m: usize) -> Answer {
        let day = day_of(self.origin, now);
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
            let base = self.request(now, m);
            match self.exchange(h, &base, now) {
                Some(answer) => {
                    self.machines[m].discovery.handle_response(h);
                    return answer;
                }
                None if self.fatal.is_some() => return Answer::Failed(Failure::Io),
                None => self.machines[m].discovery.handle_no_response(h),
            }
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

    /// One whole exchange with host `h`; `None` when it does not respond.
    fn exchange(&mut self, h: usize, base: &RequestBase, now: FileTime) -> Option<Answer> {
        let random = HostRandom {
            salt: self.rng.random(),
            iv: self.rng.random(),
        };
        let iv: [u8; 16] = self.rng.random();
        let s = &mut self.scratch;
        s.kms.clear();
        let sent = encode_request(base, iv, &mut s.kms);
        let host = &mut self.hosts[h];
        let answer = match &mut host.backend {
            Backend::InProcess(policy) => {
                host.sessions = host.sessions.wrapping_add(1);
                let id = 0x1000 + host.sessions;
                exchange::in_process(policy, id, &random, &sent, now, s)
            }
            Backend::Remote(remote) => {
                let rt = self.runtime.as_ref()?;
                if let Err(e) = rt.block_on(remote.set_time(now)) {
                    self.fail(h, e);
                    return None;
                }
                let answer = rt.block_on(remote.exchange(&s.kms, &sent, &mut s.buf))?;
                if let (Answer::Count { count, .. }, Some(app)) =
                    (answer, catalog::application(&base.app_id))
                {
                    let said = &mut host.said[app_index(app.kind)];
                    *said = (*said).max(count);
                }
                answer
            }
        };
        self.exchanges += 1;
        host.requests += 1;
        Some(answer)
    }

    /// The state at the end of `day`.
    fn snapshot(&mut self, day: u32, end: FileTime) -> DayReport {
        let mut r = DayReport {
            day: day + 1,
            requests: std::mem::take(&mut self.attempts_today),
            ..DayReport::default()
        };
        let now = FileTime(end.0 - 1);
        let d = day_of(self.origin, now);
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
        let mut failed = None;
        for (h, host) in self.hosts.iter_mut().enumerate() {
            let [windows, office2010, office2013] = match &mut host.backend {
                Backend::InProcess(policy) => {
                    let engine = policy.host();
                    [AppKind::Windows, AppKind::Office2010, AppKind::Office2013]
                        .map(|a| engine.count(a, end))
                }
                Backend::Remote(remote) => {
                    let counts = match &self.runtime {
                        Some(rt) => rt.block_on(remote.counts(end)),
                        None => Ok(None),
                    };
                    match counts {
                        Ok(Some(c)) => c,
                        Ok(None) => host.said,
                        Err(e) => {
                            failed.get_or_insert((h, e));
                            [0; 3]
                        }
                    }
                }
            };
            r.hosts.push(HostDay {
                name: self.scenario.hosts[h].name.clone(),
                requests: host.requests,
                counts: Counts {
                    windows,
                    office2010,
                    office2013,
                },
            });
            host.requests = 0;
            host.said = [0; 3];
        }
        if let Some((h, e)) = failed {
            self.fail(h, e);
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
        let end_day = day_of(self.origin, self.stop);
        events.retain(|e| e.day <= end_day);
        events.sort_by(|a, b| a.day.total_cmp(&b.day));
        let last = FileTime(self.stop.0 - 1);
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
                first_activation_bins: MinutesBin::of(&mins),
            });
        }
        let activated_at_end = at_end.iter().sum();
        let never_activated = groups.iter().map(|g| g.never_activated).sum();
        Report {
            format: FORMAT.to_owned(),
            seed: self.scenario.seed,
            days_simulated: self.scenario.days,
            clock: self.scenario.clock,
            minutes: self.scenario.minutes,
            days,
            groups,
            events,
            thresholds: Vec::new(),
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
pub fn run(scenario: Scenario, progress: impl FnMut(Progress)) -> Result<Report, SimulateError> {
    Simulation::new(scenario)?.run(progress)
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
