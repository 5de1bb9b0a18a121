//! The reference host's state machine, sans-IO: its installed host keys, client tables and
//! policy ([`KmsHost`]), and one KMS request through it ([`activate`]): decrypt and check it, let
//! the policy and client table decide, then build the (possibly faulty) response. The table
//! update is the only step that needs exclusive access; the crypto around it runs in parallel.

use crate::catalog::{self, AppKind, HostKeyGroup};
use crate::epid::{self, Epid, EpidIssue, YearDay};
use crate::proto::check::{CheckId, Checks, Value};
use crate::proto::faults::{Fault, FaultSet};
use crate::wire::kms::{FileTime, epid_to_wire};
use crate::wire::{Guid, HResult};

use super::config::{ConfigError, HostConfig};
use super::message::{
    HostRandom, MAX_REQUIRED_CLIENTS, ReceivedRequest, ResponseParams, decode_request_into,
    encode_response_with_faults,
};
use super::policy::{Decision, Refusal, RefusalRule};
use super::state::{ClientState, EpidState, HostState, TableState};
use super::table::{APPS, CACHE_FACTOR, ClientTable, MIN_CAPACITY, table_index};

/// One installed host key: its group, its ePID and the ePID as a response carries it.
#[derive(Debug, Clone)]
struct Identity {
    group: &'static HostKeyGroup,
    epid: Epid,
    /// UTF-16LE with terminator, encoded once so that requests borrow it.
    wire: Vec<u8>,
}

impl Identity {
    fn new(group: &'static HostKeyGroup, epid: Epid) -> Identity {
        let mut wire = Vec::new();
        epid_to_wire(&epid.to_string(), &mut wire);
        Identity { group, epid, wire }
    }
}

/// A reference KMS host's state machine: feed it decoded requests with the host's clock, get
/// back what to answer. Cloning one copies its tables: a fuzz target starts each input from a
/// clone of one fresh host instead of configuring a new one.
#[derive(Debug, Clone)]
pub struct KmsHost {
    identities: Vec<Identity>,
    hwid: [u8; 8],
    activation_interval: u32,
    renewal_interval: u32,
    max_clock_skew_secs: Option<u64>,
    lifetime_ticks: u64,
    tables: [ClientTable; 3],
    /// Requests counted so far: orders entries whose times are equal.
    seq: u64,
}

/// SplitMix64 (Steele, Lea and Flood; Vigna's constants): spreads one seed over the values a
/// host generates, stable across Rust releases so generated identities are reproducible.
pub(super) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Checks that `epid` could be a key of `group`. Only the group and key ID count: a real host
/// may run a build or language newer than the tables, and its ePID must still be usable.
fn check_epid(group: &'static HostKeyGroup, epid: &Epid) -> Result<(), ConfigError> {
    let issues: Vec<EpidIssue> = epid
        .validate(Some(group))
        .into_iter()
        .filter(|i| {
            matches!(
                i,
                EpidIssue::GroupMismatch { .. } | EpidIssue::KeyIdOutOfRange { .. }
            )
        })
        .collect();
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::EpidGroupMismatch {
            name: group.name,
            epid: *epid,
            issues,
        })
    }
}

/// Checks the key groups and explicit ePIDs; returns the explicit ePID of each key group.
fn check_config(config: &HostConfig) -> Result<Vec<Option<Epid>>, ConfigError> {
    if config.key_groups.is_empty() {
        return Err(ConfigError::NoKeyGroups);
    }
    for (i, g) in config.key_groups.iter().enumerate() {
        if config.key_groups[..i].iter().any(|h| h.name == g.name) {
            return Err(ConfigError::DuplicateKeyGroup { name: g.name });
        }
    }
    let mut explicit: Vec<Option<Epid>> = vec![None; config.key_groups.len()];
    for (name, epid) in &config.epids {
        let position = catalog::host_key_group(name)
            .and_then(|found| config.key_groups.iter().position(|g| g.name == found.name));
        let Some(i) = position else {
            return Err(ConfigError::UnknownEpidGroup { name: name.clone() });
        };
        let group = config.key_groups[i];
        if explicit[i].is_some() {
            return Err(ConfigError::DuplicateEpid { name: group.name });
        }
        check_epid(group, epid)?;
        explicit[i] = Some(*epid);
    }
    Ok(explicit)
}

impl KmsHost {
    /// A host as configured. `today` is the activation date of generated ePIDs; `random` seeds
    /// the generated ePIDs and hardware ID (the same seed gives the same host).
    pub fn new(config: HostConfig, today: YearDay, random: u64) -> Result<KmsHost, ConfigError> {
        let explicit = check_config(&config)?;
        if explicit.iter().any(Option::is_none) {
            if !epid::is_known_lcid(config.lcid) {
                return Err(ConfigError::UnknownLcid { lcid: config.lcid });
            }
            if today < config.host_build.released {
                return Err(ConfigError::BeforeRelease {
                    build: config.host_build.build,
                    released: config.host_build.released,
                    today,
                });
            }
        }
        // One draw for the hardware ID, then one per key group, whether used or not, so that
        // an explicit ePID for one group leaves the others' unchanged.
        let mut seed = random;
        let drawn_hwid = splitmix64(&mut seed).to_le_bytes();
        let identities = config
            .key_groups
            .iter()
            .zip(explicit)
            .map(|(&group, explicit)| {
                let r = splitmix64(&mut seed);
                let epid = explicit.unwrap_or_else(|| {
                    Epid::generate(group, config.host_build, config.lcid, today, r)
                });
                Identity::new(group, epid)
            })
            .collect();
        Ok(KmsHost::assemble(
            &config,
            identities,
            config.hwid.unwrap_or(drawn_hwid),
        ))
    }

    /// A host as configured, continuing from a saved state: its ePIDs, hardware ID and client
    /// tables. Explicit ePIDs and hardware ID in `config` win over the saved ones; saved ePIDs
    /// of key groups no longer configured are dropped.
    pub fn restore(config: HostConfig, state: HostState) -> Result<KmsHost, ConfigError> {
        state.validate()?;
        let explicit = check_config(&config)?;
        let mut identities = Vec::with_capacity(config.key_groups.len());
        for (&group, explicit) in config.key_groups.iter().zip(explicit) {
            let saved = state
                .epids
                .iter()
                .find(|e| {
                    catalog::host_key_group(&e.key_group).is_some_and(|g| g.name == group.name)
                })
                .map(|e| e.epid);
            let Some(epid) = explicit.or(saved) else {
                return Err(ConfigError::MissingEpid { name: group.name });
            };
            check_epid(group, &epid)?;
            identities.push(Identity::new(group, epid));
        }
        let mut host = KmsHost::assemble(&config, identities, config.hwid.unwrap_or(state.hwid));
        for saved in &state.tables {
            let table = &mut host.tables[table_index(saved.app)];
            table.grow(saved.capacity);
            // Oldest first: arrival order breaks ties the way it did before the save.
            for client in &saved.clients {
                host.seq += 1;
                table.touch(client.cmid, client.last_seen, host.seq);
            }
        }
        Ok(host)
    }

    fn assemble(config: &HostConfig, identities: Vec<Identity>, hwid: [u8; 8]) -> KmsHost {
        KmsHost {
            identities,
            hwid,
            activation_interval: config.activation_interval,
            renewal_interval: config.renewal_interval,
            max_clock_skew_secs: config.max_clock_skew_secs,
            lifetime_ticks: config
                .client_lifetime_secs
                .saturating_mul(FileTime::TICKS_PER_SEC),
            tables: Default::default(),
            seq: 0,
        }
    }

    // --- getters ---

    /// Clients counted for `app` at `now`.
    pub fn count(&self, app: AppKind, now: FileTime) -> u32 {
        self.tables[table_index(app)].live(now, self.lifetime_ticks)
    }

    /// Machine IDs the `app` table holds at most (0 before its first request).
    pub fn capacity(&self, app: AppKind) -> u32 {
        self.tables[table_index(app)].capacity
    }

    /// The ePID that answers a request for `kms_id`: the first configured key group's that
    /// activates it.
    pub fn epid_for(&self, kms_id: &Guid) -> Option<&Epid> {
        self.identity_for(kms_id).map(|i| &self.identities[i].epid)
    }

    /// Each configured key group with its ePID, in configuration order.
    pub fn epids(&self) -> impl Iterator<Item = (&'static HostKeyGroup, &Epid)> {
        self.identities.iter().map(|i| (i.group, &i.epid))
    }

    /// The hardware ID sent in V6 responses.
    pub fn hwid(&self) -> [u8; 8] {
        self.hwid
    }

    /// A snapshot to save and [`restore`](KmsHost::restore) later.
    pub fn state(&self) -> HostState {
        HostState {
            hwid: self.hwid,
            epids: self
                .identities
                .iter()
                .map(|i| EpidState {
                    key_group: i.group.name.to_owned(),
                    epid: i.epid,
                })
                .collect(),
            tables: APPS
                .iter()
                .map(|&app| {
                    let table = &self.tables[table_index(app)];
                    TableState {
                        app,
                        capacity: table.capacity,
                        clients: table
                            .entries()
                            .into_iter()
                            .map(|(cmid, last_seen)| ClientState { cmid, last_seen })
                            .collect(),
                    }
                })
                .collect(),
        }
    }

    fn identity_for(&self, kms_id: &Guid) -> Option<usize> {
        self.identities
            .iter()
            .position(|i| i.group.activates_kms_id(kms_id))
    }

    // --- input ---

    /// Decides the answer to `req`, whose host-side `checks` come from
    /// [`decode_request`](super::host::decode_request), at host time `now`. A grant counts the
    /// client; a refusal leaves the tables as they were. Allocates nothing once the table of
    /// the request's application has reached its capacity.
    pub fn handle(
        &mut self,
        req: &ReceivedRequest,
        checks: &Checks,
        now: FileTime,
    ) -> Decision<'_> {
        let (identity, app) = match self.admit(req, checks, now) {
            Ok(admitted) => admitted,
            Err(refusal) => return Decision::Refuse(refusal),
        };
        let capacity = req
            .base
            .required_clients
            .saturating_mul(CACHE_FACTOR)
            .max(MIN_CAPACITY);
        self.seq += 1;
        let table = &mut self.tables[table_index(app)];
        table.grow(capacity);
        table.purge(now, self.lifetime_ticks);
        table.touch(req.base.cmid, now, self.seq);
        // The requester is in the table, so the count includes it (docs: "the host adds the
        // machine ID to its count and then returns the current count value").
        let count = u32::try_from(table.len()).unwrap_or(u32::MAX);
        Decision::Grant(ResponseParams {
            epid: &self.identities[identity].wire,
            hwid: self.hwid,
            count,
            activation_interval: self.activation_interval,
            renewal_interval: self.renewal_interval,
        })
    }

    /// Applies the refusal rules in order; on success, the identity that answers and the
    /// application whose table counts the client.
    fn admit(
        &self,
        req: &ReceivedRequest,
        checks: &Checks,
        now: FileTime,
    ) -> Result<(usize, AppKind), Refusal> {
        // Rule 1 (source: RefusalRule::UnsupportedVersion.source()).
        if !req.version.is_supported() {
            return Err(Refusal::new(
                RefusalRule::UnsupportedVersion,
                Some(CheckId::VersionSupported),
                Value::Text("4.0, 5.0 or 6.0"),
                Value::Version(req.version),
            ));
        }
        // Rule 2: only checks that were made count; a request built in memory has none.
        for id in [CheckId::Mac, CheckId::Decrypt, CheckId::Version] {
            if let Some(c) = checks.get(id)
                && !c.passed
            {
                return Err(Refusal::new(
                    RefusalRule::IntegrityFailed,
                    Some(id),
                    c.expected,
                    c.actual,
                ));
            }
        }
        // Rule 3.
        if req.base.required_clients > MAX_REQUIRED_CLIENTS {
            return Err(Refusal::new(
                RefusalRule::TooManyRequiredClients,
                Some(CheckId::RequiredClients),
                Value::Num(MAX_REQUIRED_CLIENTS.into()),
                Value::Num(req.base.required_clients.into()),
            ));
        }
        // Rule 4, in whole seconds as the host's request check measures it.
        if let Some(max) = self.max_clock_skew_secs {
            let skew = now.0.abs_diff(req.base.client_time.0) / FileTime::TICKS_PER_SEC;
            if skew > max {
                return Err(Refusal::new(
                    RefusalRule::ClockSkew,
                    Some(CheckId::ClientTime),
                    Value::Time(now),
                    Value::Time(req.base.client_time),
                ));
            }
        }
        // Rule 5: the key groups, then the application the KMS ID belongs to.
        let kms_id = req.base.kms_id;
        let Some(identity) = self.identity_for(&kms_id) else {
            return Err(Refusal::new(
                RefusalRule::KmsIdNotInKeyGroup,
                None,
                Value::Text("a KMS ID the host's key groups activate"),
                Value::Guid(kms_id),
            ));
        };
        // Key groups list only catalog KMS IDs; the group's own application is the fallback.
        let app = catalog::kms_item(&kms_id).map_or(self.identities[identity].group.app, |k| k.app);
        let app_id = app.application().id;
        if req.base.app_id != app_id {
            return Err(Refusal::new(
                RefusalRule::ApplicationMismatch,
                None,
                Value::Guid(app_id),
                Value::Guid(req.base.app_id),
            ));
        }
        Ok((identity, app))
    }
}

/// Largest ePID a grant carries, in bytes (the protocol's 128-byte buffer).
const MAX_EPID: usize = 128;

/// A grant copied out of the host, so the lock on the host can be released before encryption.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    epid: [u8; MAX_EPID],
    epid_len: usize,
    /// Hardware ID.
    pub hwid: [u8; 8],
    /// Count returned.
    pub count: u32,
    /// Activation interval, minutes.
    pub activation_interval: u32,
    /// Renewal interval, minutes.
    pub renewal_interval: u32,
}

impl Grant {
    /// The response fields, borrowing the ePID.
    pub fn params(&self) -> ResponseParams<'_> {
        ResponseParams {
            epid: &self.epid[..self.epid_len],
            hwid: self.hwid,
            count: self.count,
            activation_interval: self.activation_interval,
            renewal_interval: self.renewal_interval,
        }
    }
}

/// The decision part that needs the host table: the only step under the shared lock.
#[derive(Debug, Clone)]
pub struct Policy {
    host: KmsHost,
    faults: FaultSet,
    stuck_count: Option<u32>,
}

impl Policy {
    /// Wraps a configured host with the faults to inject.
    pub fn new(host: KmsHost, faults: FaultSet) -> Policy {
        Policy {
            host,
            faults,
            stuck_count: None,
        }
    }

    /// The host (for counts and state).
    pub fn host(&self) -> &KmsHost {
        &self.host
    }

    /// Decides on a decoded request.
    pub fn decide(
        &mut self,
        req: &ReceivedRequest,
        checks: &Checks,
        now: FileTime,
    ) -> Result<Grant, Refusal> {
        match self.host.handle(req, checks, now) {
            Decision::Refuse(r) => Err(r),
            Decision::Grant(p) => {
                let mut epid = [0u8; MAX_EPID];
                let epid_len = p.epid.len().min(MAX_EPID);
                epid[..epid_len].copy_from_slice(&p.epid[..epid_len]);
                let mut count = p.count;
                if self.faults.has(Fault::CountStuck) {
                    count = *self.stuck_count.get_or_insert(count);
                }
                Ok(Grant {
                    epid,
                    epid_len,
                    hwid: p.hwid,
                    count,
                    activation_interval: p.activation_interval,
                    renewal_interval: p.renewal_interval,
                })
            }
        }
    }
}

/// What happened to one request, for logging.
#[derive(Debug, Clone)]
pub enum Handled {
    /// Answered with a response.
    Granted {
        /// The request.
        request: ReceivedRequest,
        /// The count returned.
        count: u32,
    },
    /// Refused by policy.
    Refused {
        /// The request.
        request: ReceivedRequest,
        /// Why.
        refusal: Refusal,
    },
    /// Could not be decoded at all: why, naming the field and offset.
    Undecodable(crate::wire::codec::Error),
}

/// Runs one request through `policy` (called with the lock held only for the table step):
/// decode, decide, encode. Returns what happened and, for the wire, the response or HRESULT.
pub fn activate(
    request: &[u8],
    now: FileTime,
    random: &HostRandom,
    faults: FaultSet,
    decide: impl FnOnce(&ReceivedRequest, &Checks) -> Result<Grant, Refusal>,
    out: &mut Vec<u8>,
) -> (Handled, Result<(), HResult>) {
    let mut checks = Checks::new();
    let req = match decode_request_into(request, Some(now), &mut checks) {
        Ok(decoded) => decoded,
        Err(e) => return (Handled::Undecodable(e), Err(HResult::INVALID_DATA)),
    };
    // Planted for `fuzz` to find (never on by default): the one deliberate panic on wire data.
    assert!(
        !faults.has(Fault::PanicUnterminatedWorkstation) || req.base.workstation.is_terminated(),
        "planted bug: workstation name without a NUL"
    );
    match decide(&req, &checks) {
        Err(refusal) => (
            Handled::Refused {
                request: req,
                refusal,
            },
            Err(refusal.hresult),
        ),
        Ok(grant) => {
            encode_response_with_faults(&req, &grant.params(), random, faults, out);
            (
                Handled::Granted {
                    request: req,
                    count: grant.count,
                },
                Ok(()),
            )
        }
    }
}
