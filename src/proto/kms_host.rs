//! The reference host's KMS decisions, sans-IO: which requests a genuine host refuses and with
//! which HRESULT, the per-application client tables behind the count it returns, the ePIDs and
//! hardware ID it answers with, and a persistent snapshot of all that. Time and random numbers
//! are arguments; nothing here touches a socket, a clock or a randomness source.
//!
//! The tables follow Microsoft's description of the activation count cache
//! (activate-clients-running-windows.md, kms-activation-planning.md in the shared docs); what the
//! docs leave open follows vlmcsd's behaviour, and each rule says which.

use core::fmt;
use core::hash::BuildHasherDefault;
use std::collections::HashMap;
use std::hash::DefaultHasher;

use serde::{Deserialize, Serialize};

use super::checks::{CheckId, Checks, Value};
use super::host::{MAX_CLOCK_SKEW_SECS, MAX_REQUIRED_CLIENTS, ReceivedRequest, ResponseParams};
use crate::catalog::{self, AppKind, HostKeyGroup};
use crate::epid::{self, Epid, EpidIssue, HostBuild, YearDay};
use crate::wire::kms::{FileTime, epid_to_wire};
use crate::wire::{Guid, HResult};

// ---------------------------------------------------------------------------------------------
// Constants

/// Minutes a client waits before retrying a failed activation. Docs: "If KMS activation fails,
/// the client computer retries every two hours" (activate-clients-running-windows.md).
pub const DEFAULT_ACTIVATION_INTERVAL: u32 = 2 * 60;
/// Minutes between renewals. Docs: "By default, KMS client computers attempt to renew their
/// activation every seven days" (kms-activation-planning.md).
pub const DEFAULT_RENEWAL_INTERVAL: u32 = 7 * 24 * 60;
/// How long a client counts after its last request. Docs: "By default, each activation request
/// remains in the table for up to 30 days" and "The KMS only counts unique connections from the
/// past 30 days" (activate-clients-running-windows.md, kms-activation-planning.md).
pub const DEFAULT_CLIENT_LIFETIME_SECS: u64 = 30 * 24 * 60 * 60;
/// Docs: "the KMS host only caches twice the number of client IDs that are required to meet the
/// activation threshold" (activate-clients-running-windows.md, Activation count cache).
pub const CACHE_FACTOR: u32 = 2;
/// Smallest table: a request whose count policy is 0 still counts its own machine (vlmcsd
/// behaviour: it treats a policy below 1 as 1; the docs never see such a request).
pub const MIN_CAPACITY: u32 = 1;
/// Largest table: twice the largest count policy a host accepts (rule 3).
pub const MAX_CAPACITY: u32 = CACHE_FACTOR * MAX_REQUIRED_CLIENTS;
/// The OS build of the default host: Windows Server 2022, the release of the default key group
/// ([`catalog::DEFAULT_HOST_KEY_GROUP`]).
pub const DEFAULT_HOST_BUILD: u32 = 20348;
/// English (United States). Any LCID in [`epid::LCIDS`] makes a valid ePID; this is merely the
/// most common Windows installation language.
pub const DEFAULT_LCID: u16 = 1033;
/// The `format` tag of a host state file.
pub const STATE_FORMAT: &str = "kmsharness-host-state";
/// The `version` of the host state file layout this module reads and writes.
pub const STATE_VERSION: u64 = 1;

/// The three applications in table order.
const APPS: [AppKind; 3] = [AppKind::Windows, AppKind::Office2010, AppKind::Office2013];

const fn table_index(app: AppKind) -> usize {
    match app {
        AppKind::Windows => 0,
        AppKind::Office2010 => 1,
        AppKind::Office2013 => 2,
    }
}

/// The name of an application in a state file.
const fn app_key(app: AppKind) -> &'static str {
    match app {
        AppKind::Windows => "windows",
        AppKind::Office2010 => "office2010",
        AppKind::Office2013 => "office2013",
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// What a reference host is: its host keys, OS, language, identity and policy.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Host key groups (CSVLKs) installed, in priority order: when two groups activate a KMS
    /// ID, the first one's ePID answers.
    pub key_groups: Vec<&'static HostKeyGroup>,
    /// The host's OS build, for generated ePIDs.
    pub host_build: &'static HostBuild,
    /// The host's language, for generated ePIDs.
    pub lcid: u16,
    /// Explicit ePIDs by key group name (names compare as [`catalog::host_key_group`] does).
    /// Groups without one get a generated ePID.
    pub epids: Vec<(String, Epid)>,
    /// The hardware ID sent in V6 responses; `None` derives one from the random seed.
    pub hwid: Option<[u8; 8]>,
    /// Minutes before a client retries a failed activation.
    pub activation_interval: u32,
    /// Minutes between renewals.
    pub renewal_interval: u32,
    /// Largest distance between the client's clock and the host's (rule 4); `None` disables
    /// the rule.
    pub max_clock_skew_secs: Option<u64>,
    /// Seconds a client keeps counting after its last request.
    pub client_lifetime_secs: u64,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            key_groups: vec![catalog::default_host_key_group()],
            host_build: default_host_build(),
            lcid: DEFAULT_LCID,
            epids: Vec::new(),
            hwid: None,
            activation_interval: DEFAULT_ACTIVATION_INTERVAL,
            renewal_interval: DEFAULT_RENEWAL_INTERVAL,
            max_clock_skew_secs: Some(MAX_CLOCK_SKEW_SECS),
            client_lifetime_secs: DEFAULT_CLIENT_LIFETIME_SECS,
        }
    }
}

/// The [`DEFAULT_HOST_BUILD`] entry of [`epid::HOST_BUILDS`].
fn default_host_build() -> &'static HostBuild {
    // The build table is a static of this crate; a unit test pins the entry's presence.
    epid::host_build(DEFAULT_HOST_BUILD).expect("epid::HOST_BUILDS lists build 20348")
}

/// Why a host cannot be built from its configuration (or configuration and saved state).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No host key group is configured, so the host would refuse every request.
    #[error("no host key group configured: a host needs at least one")]
    NoKeyGroups,
    /// The same key group is listed twice.
    #[error("host key group \"{name}\" is configured twice")]
    DuplicateKeyGroup {
        /// The group's name.
        name: &'static str,
    },
    /// An explicit ePID names a key group that is not configured.
    #[error("an ePID is given for key group \"{name}\", which is not among the host's key groups")]
    UnknownEpidGroup {
        /// The name as given.
        name: String,
    },
    /// Two explicit ePIDs name the same key group.
    #[error("two ePIDs are given for key group \"{name}\"")]
    DuplicateEpid {
        /// The group's name.
        name: &'static str,
    },
    /// An ePID has a group or key ID that no key of its key group carries.
    #[error("ePID {epid} cannot belong to key group \"{name}\": {}", join(issues))]
    EpidGroupMismatch {
        /// The group's name.
        name: &'static str,
        /// The ePID.
        epid: Epid,
        /// What contradicts the group (group ID, key ID range).
        issues: Vec<EpidIssue>,
    },
    /// The LCID for generated ePIDs is not a Windows language identifier.
    #[error("LCID {lcid} is not a Windows language identifier (see epid::LCIDS)")]
    UnknownLcid {
        /// The LCID.
        lcid: u16,
    },
    /// The activation date of generated ePIDs precedes the host build's release.
    #[error(
        "activation date {today} precedes the release of build {build} ({released}): \
         generated ePIDs would not validate"
    )]
    BeforeRelease {
        /// The host build.
        build: u32,
        /// Its release.
        released: YearDay,
        /// The activation date given.
        today: YearDay,
    },
    /// Restoring: a configured key group has no ePID in the configuration nor in the state.
    #[error("key group \"{name}\" has no ePID in the configuration or the saved state")]
    MissingEpid {
        /// The group's name.
        name: &'static str,
    },
    /// Restoring: the saved state is inconsistent.
    #[error("saved host state: {0}")]
    State(#[from] StateError),
}

fn join(issues: &[EpidIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------
// Refusals

/// The rules by which a genuine host refuses a request, in the order they are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalRule {
    /// Rule 1: the protocol version is not exactly 4.0, 5.0 or 6.0.
    UnsupportedVersion,
    /// Rule 2: the V4 MAC or V5/V6 decryption failed, or the versions disagree.
    IntegrityFailed,
    /// Rule 3: the required client count (N count policy) is above 1000.
    TooManyRequiredClients,
    /// Rule 4: the client's clock is more than the allowed skew from the host's.
    ClockSkew,
    /// Rule 5: no configured key group activates the KMS ID.
    KmsIdNotInKeyGroup,
    /// Rule 5: the application ID is not the KMS ID's application.
    ApplicationMismatch,
}

impl RefusalRule {
    /// Every rule, in the order applied.
    pub const ALL: [RefusalRule; 6] = [
        RefusalRule::UnsupportedVersion,
        RefusalRule::IntegrityFailed,
        RefusalRule::TooManyRequiredClients,
        RefusalRule::ClockSkew,
        RefusalRule::KmsIdNotInKeyGroup,
        RefusalRule::ApplicationMismatch,
    ];

    /// The stable snake_case name used in reports and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            RefusalRule::UnsupportedVersion => "unsupported_version",
            RefusalRule::IntegrityFailed => "integrity_failed",
            RefusalRule::TooManyRequiredClients => "too_many_required_clients",
            RefusalRule::ClockSkew => "clock_skew",
            RefusalRule::KmsIdNotInKeyGroup => "kms_id_not_in_key_group",
            RefusalRule::ApplicationMismatch => "application_mismatch",
        }
    }

    /// The status code a host returns under this rule.
    pub const fn hresult(self) -> HResult {
        match self {
            RefusalRule::UnsupportedVersion
            | RefusalRule::IntegrityFailed
            | RefusalRule::TooManyRequiredClients => HResult::INVALID_DATA,
            RefusalRule::ClockSkew => HResult::INVALID_TIMESTAMP,
            RefusalRule::KmsIdNotInKeyGroup | RefusalRule::ApplicationMismatch => {
                HResult::KMS_ID_MISMATCH
            }
        }
    }

    /// Where the rule comes from: a Microsoft document, or vlmcsd's behaviour where the
    /// documents are silent.
    pub const fn source(self) -> &'static str {
        match self {
            RefusalRule::UnsupportedVersion => {
                "vlmcs manual (option -K): genuine hosts answer 0x8007000D to any protocol \
                 version other than 4.0, 5.0 and 6.0"
            }
            RefusalRule::IntegrityFailed => {
                "vlmcsd behaviour: a request it cannot process is answered with 0x8007000D \
                 (ERROR_INVALID_DATA); the docs do not cover damaged requests"
            }
            RefusalRule::TooManyRequiredClients => {
                "vlmcsd behaviour: a count policy above 1000 is refused with 0x8007000D; the \
                 docs only name policies of 5 and 25"
            }
            RefusalRule::ClockSkew => {
                "vlmcsd behaviour: a client time more than 4 hours from the host's is refused \
                 with 0xC004F06C (SL_E_VL_INVALID_TIMESTAMP); the docs do not give the limit"
            }
            RefusalRule::KmsIdNotInKeyGroup => {
                "kms-activation-planning.md, Activation versions table: a host key activates \
                 only the products listed for it; others get 0xC004F042 \
                 (SL_E_VL_KEY_MANAGEMENT_SERVICE_ID_MISMATCH)"
            }
            RefusalRule::ApplicationMismatch => {
                "vlmcsd behaviour: a KMS ID sent with another application's ID is refused with \
                 0xC004F042; the docs do not cover it"
            }
        }
    }
}

impl fmt::Display for RefusalRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request was refused, as plain values (nothing allocated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The status code returned in place of a response.
    pub hresult: HResult,
    /// The rule that refused.
    pub rule: RefusalRule,
    /// The request check behind the refusal, when one exists.
    pub check: Option<CheckId>,
    /// What the rule requires.
    pub expected: Value,
    /// What the request had.
    pub actual: Value,
}

impl Refusal {
    fn new(rule: RefusalRule, check: Option<CheckId>, expected: Value, actual: Value) -> Self {
        Refusal {
            hresult: rule.hresult(),
            rule,
            check,
            expected,
            actual,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.rule)?;
        if let Some(check) = self.check {
            write!(f, " (check {check})")?;
        }
        write!(
            f,
            ": expected {}, got {} -> {}",
            self.expected, self.actual, self.hresult
        )
    }
}

/// The host's answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Answer with a response built from these fields.
    Grant(ResponseParams<'a>),
    /// Answer with this status code instead of a response.
    Refuse(Refusal),
}

impl Decision<'_> {
    /// S_OK for a grant, the refusal's code otherwise.
    pub fn hresult(&self) -> HResult {
        match self {
            Decision::Grant(_) => HResult::S_OK,
            Decision::Refuse(r) => r.hresult,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client tables

/// Hash of the client tables. Fixed keys keep the module free of randomness; a client that
/// chooses colliding machine IDs can at worst make lookups linear in the table, which
/// [`MAX_CAPACITY`] bounds.
type TableHasher = BuildHasherDefault<DefaultHasher>;

/// One machine ID in a table.
#[derive(Debug, Clone, Copy)]
struct Slot {
    cmid: Guid,
    last_seen: FileTime,
    /// Arrival order: among equal times, the earlier request is the older.
    seq: u64,
    /// Where the slot sits in the heap.
    heap_pos: usize,
}

/// One application's client table: a map from machine ID to slot, and a min-heap of slots by
/// last request for eviction and expiry. All storage is reserved when the capacity grows, so
/// handling a request allocates nothing, and every step is O(log n) whatever the clock does.
#[derive(Debug, Default)]
struct ClientTable {
    capacity: u32,
    index: HashMap<Guid, usize, TableHasher>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    heap: Vec<usize>,
}

/// Whether an entry last seen at `last_seen` has left the count at `now`. Entries from the
/// host's future (its clock went back) are live.
fn expired(last_seen: FileTime, now: FileTime, lifetime_ticks: u64) -> bool {
    now.0.saturating_sub(last_seen.0) > lifetime_ticks
}

impl ClientTable {
    fn len(&self) -> usize {
        self.heap.len()
    }

    fn key(&self, slot: usize) -> (FileTime, u64) {
        let s = &self.slots[slot];
        (s.last_seen, s.seq)
    }

    /// Raises the capacity (never lowers it: docs, "KMS never reduces the cache size") and
    /// reserves room for it.
    fn grow(&mut self, capacity: u32) {
        if capacity <= self.capacity {
            return;
        }
        self.capacity = capacity;
        let cap = capacity as usize;
        self.slots.reserve(cap.saturating_sub(self.slots.len()));
        self.heap.reserve(cap.saturating_sub(self.heap.len()));
        self.free.reserve(cap.saturating_sub(self.free.len()));
        // The std map rehashes in place rather than allocating while it is at most half full,
        // so it gets twice the room (and one more for the insert that triggers a rehash).
        let room = 2 * cap + 2;
        self.index.reserve(room.saturating_sub(self.index.len()));
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.heap.swap(i, j);
        let (a, b) = (self.heap[i], self.heap[j]);
        self.slots[a].heap_pos = i;
        self.slots[b].heap_pos = j;
    }

    fn sift_up(&mut self, mut pos: usize) -> usize {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.key(self.heap[pos]) >= self.key(self.heap[parent]) {
                break;
            }
            self.swap(pos, parent);
            pos = parent;
        }
        pos
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let left = 2 * pos + 1;
            if left >= self.heap.len() {
                return;
            }
            let right = left + 1;
            let child = if right < self.heap.len()
                && self.key(self.heap[right]) < self.key(self.heap[left])
            {
                right
            } else {
                left
            };
            if self.key(self.heap[child]) >= self.key(self.heap[pos]) {
                return;
            }
            self.swap(pos, child);
            pos = child;
        }
    }

    /// Restores the heap order around `pos` after its key changed either way.
    fn fix(&mut self, pos: usize) {
        let pos = self.sift_up(pos);
        self.sift_down(pos);
    }

    /// Removes the entry at heap position `pos`.
    fn remove_at(&mut self, pos: usize) {
        let Some(last) = self.heap.len().checked_sub(1) else {
            return;
        };
        self.swap(pos, last);
        let Some(slot) = self.heap.pop() else { return };
        if pos < self.heap.len() {
            self.fix(pos);
        }
        self.index.remove(&self.slots[slot].cmid);
        self.free.push(slot);
    }

    /// Drops the entries whose 30 days are over, oldest first: docs, "If a KMS client computer
    /// doesn't renew its activation within 30 days, the KMS host removes the corresponding
    /// client ID from the table".
    fn purge(&mut self, now: FileTime, lifetime_ticks: u64) {
        while let Some(&oldest) = self.heap.first() {
            if !expired(self.slots[oldest].last_seen, now, lifetime_ticks) {
                return;
            }
            self.remove_at(0);
        }
    }

    /// Records a request from `cmid` at `now`.
    fn touch(&mut self, cmid: Guid, now: FileTime, seq: u64) {
        if let Some(&slot) = self.index.get(&cmid) {
            // A renewal: docs, "the cached client ID is removed from the table, a new record is
            // created, and the 30 day period begins again" — same count, fresh time.
            self.slots[slot].last_seen = now;
            self.slots[slot].seq = seq;
            self.fix(self.slots[slot].heap_pos);
            return;
        }
        if self.len() >= self.capacity as usize && !self.heap.is_empty() {
            // Full: docs, "only the 50 most recent client IDs are kept in the table, and a
            // client ID could be removed sooner than 30 days" — the oldest goes.
            self.remove_at(0);
        }
        let entry = Slot {
            cmid,
            last_seen: now,
            seq,
            heap_pos: self.heap.len(),
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = entry;
                slot
            }
            None => {
                self.slots.push(entry);
                self.slots.len() - 1
            }
        };
        self.heap.push(slot);
        self.sift_up(entry.heap_pos);
        self.index.insert(cmid, slot);
    }

    /// Entries live at `now` (O(n): a getter, not the request path).
    fn live(&self, now: FileTime, lifetime_ticks: u64) -> u32 {
        let n = self
            .heap
            .iter()
            .filter(|&&s| !expired(self.slots[s].last_seen, now, lifetime_ticks))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The entries, oldest (next to leave) first.
    fn entries(&self) -> Vec<ClientState> {
        let mut slots: Vec<usize> = self.heap.clone();
        slots.sort_by_key(|&s| self.key(s));
        slots
            .into_iter()
            .map(|s| ClientState {
                cmid: self.slots[s].cmid,
                last_seen: self.slots[s].last_seen,
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The host

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
/// back what to answer.
#[derive(Debug)]
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
fn splitmix64(state: &mut u64) -> u64 {
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
                        clients: table.entries(),
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

// ---------------------------------------------------------------------------------------------
// Saved state

/// Everything a host keeps between runs: identity and client tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostState {
    /// Hardware ID, as 16 hex digits.
    #[serde(with = "hwid_hex")]
    pub hwid: [u8; 8],
    /// The ePID of each key group.
    pub epids: Vec<EpidState>,
    /// The client tables (at most one per application).
    pub tables: Vec<TableState>,
}

/// A key group's ePID in a saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpidState {
    /// The key group's name (see [`catalog::HOST_KEY_GROUPS`]).
    pub key_group: String,
    /// Its ePID.
    pub epid: Epid,
}

/// One application's client table in a saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableState {
    /// The application: `windows`, `office2010` or `office2013`.
    #[serde(with = "app_name")]
    pub app: AppKind,
    /// Machine IDs the table holds at most.
    pub capacity: u32,
    /// The machine IDs, oldest last request first.
    pub clients: Vec<ClientState>,
}

/// One counted client in a saved state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientState {
    /// Client machine ID.
    pub cmid: Guid,
    /// Host time of its last request, as FILETIME ticks.
    #[serde(with = "filetime_ticks")]
    pub last_seen: FileTime,
}

impl HostState {
    /// Checks what serde cannot: names, uniqueness and capacities.
    pub fn validate(&self) -> Result<(), StateError> {
        for (i, e) in self.epids.iter().enumerate() {
            let Some(group) = catalog::host_key_group(&e.key_group) else {
                return Err(StateError::UnknownKeyGroup {
                    name: e.key_group.clone(),
                });
            };
            let seen = self.epids[..i].iter().any(|d| {
                catalog::host_key_group(&d.key_group).is_some_and(|g| g.name == group.name)
            });
            if seen {
                return Err(StateError::DuplicateEpid { name: group.name });
            }
        }
        for (i, t) in self.tables.iter().enumerate() {
            let app = t.app.application().name;
            if self.tables[..i].iter().any(|u| u.app == t.app) {
                return Err(StateError::DuplicateTable { app });
            }
            if t.capacity > MAX_CAPACITY {
                return Err(StateError::CapacityTooLarge {
                    app,
                    capacity: t.capacity,
                });
            }
            if t.clients.len() > t.capacity as usize {
                return Err(StateError::OverCapacity {
                    app,
                    clients: t.clients.len(),
                    capacity: t.capacity,
                });
            }
            let mut cmids: Vec<Guid> = t.clients.iter().map(|c| c.cmid).collect();
            cmids.sort_unstable();
            if let Some(pair) = cmids.windows(2).find(|w| w[0] == w[1]) {
                return Err(StateError::DuplicateClient { app, cmid: pair[0] });
            }
        }
        Ok(())
    }
}

/// Why bytes are not a usable host state file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The file has no content.
    #[error("host state file is empty")]
    Empty,
    /// The JSON ends before it is complete: a torn write.
    #[error("host state file is truncated: the JSON ends at line {line}, column {column}")]
    Truncated {
        /// Line where the text ends.
        line: usize,
        /// Column where the text ends.
        column: usize,
    },
    /// The text is not JSON.
    #[error("host state file is not valid JSON: {message}")]
    Syntax {
        /// The parser's message, with line and column.
        message: String,
    },
    /// The JSON is not an object.
    #[error("host state file is not a JSON object")]
    NotAnObject,
    /// A header field is missing.
    #[error("host state file has no `{0}` field")]
    MissingHeader(&'static str),
    /// The format tag is not [`STATE_FORMAT`].
    #[error("host state file has format {found}, expected \"{STATE_FORMAT}\"")]
    WrongFormat {
        /// The tag found, as JSON.
        found: String,
    },
    /// The layout version is not [`STATE_VERSION`].
    #[error("host state file has version {found}, this build reads version {STATE_VERSION}")]
    UnsupportedVersion {
        /// The version found, as JSON.
        found: String,
    },
    /// A field is missing, unknown or malformed (a bad GUID, ePID or hardware ID).
    #[error("host state file content: {0}")]
    Invalid(String),
    /// An ePID names a key group the catalog does not know.
    #[error("ePID saved for unknown key group \"{name}\"")]
    UnknownKeyGroup {
        /// The name found.
        name: String,
    },
    /// Two ePIDs name the same key group.
    #[error("two ePIDs saved for key group \"{name}\"")]
    DuplicateEpid {
        /// The group.
        name: &'static str,
    },
    /// Two tables for one application.
    #[error("two client tables saved for {app}")]
    DuplicateTable {
        /// The application's name.
        app: &'static str,
    },
    /// A capacity above [`MAX_CAPACITY`].
    #[error("{app} table capacity {capacity} exceeds the largest possible, {MAX_CAPACITY}")]
    CapacityTooLarge {
        /// The application's name.
        app: &'static str,
        /// The capacity.
        capacity: u32,
    },
    /// More clients than the table holds.
    #[error("{app} table lists {clients} clients but holds at most {capacity}")]
    OverCapacity {
        /// The application's name.
        app: &'static str,
        /// Clients listed.
        clients: usize,
        /// The capacity.
        capacity: u32,
    },
    /// A machine ID listed twice in one table.
    #[error("{app} table lists machine ID {cmid} twice")]
    DuplicateClient {
        /// The application's name.
        app: &'static str,
        /// The machine ID.
        cmid: Guid,
    },
}

/// The state file's envelope when writing.
#[derive(Serialize)]
struct StateFile<'a> {
    format: &'static str,
    version: u64,
    #[serde(flatten)]
    state: &'a HostState,
}

/// Encodes a state as the pretty-printed JSON of a state file, with its format tag and version.
pub fn encode_state(state: &HostState) -> Vec<u8> {
    let file = StateFile {
        format: STATE_FORMAT,
        version: STATE_VERSION,
        state,
    };
    // Every field serializes to a string, number or list, and a Vec never fails to write.
    let mut out = serde_json::to_vec_pretty(&file).expect("a host state always serializes");
    out.push(b'\n');
    out
}

/// Decodes a state file: the format tag and version first, then the content, then its
/// consistency ([`HostState::validate`]). Every problem is an error naming it; nothing is
/// defaulted.
pub fn decode_state(bytes: &[u8]) -> Result<HostState, StateError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(StateError::Empty);
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Eof => StateError::Truncated {
                line: e.line(),
                column: e.column(),
            },
            _ => StateError::Syntax {
                message: e.to_string(),
            },
        })?;
    let serde_json::Value::Object(mut fields) = value else {
        return Err(StateError::NotAnObject);
    };
    match fields.remove("format") {
        None => return Err(StateError::MissingHeader("format")),
        Some(serde_json::Value::String(s)) if s == STATE_FORMAT => {}
        Some(other) => {
            return Err(StateError::WrongFormat {
                found: other.to_string(),
            });
        }
    }
    match fields.remove("version") {
        None => return Err(StateError::MissingHeader("version")),
        Some(v) if v.as_u64() == Some(STATE_VERSION) => {}
        Some(other) => {
            return Err(StateError::UnsupportedVersion {
                found: other.to_string(),
            });
        }
    }
    let state = HostState::deserialize(serde_json::Value::Object(fields))
        .map_err(|e| StateError::Invalid(e.to_string()))?;
    state.validate()?;
    Ok(state)
}

/// The hardware ID as 16 hex digits.
mod hwid_hex {
    use core::fmt::Write;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(hwid: &[u8; 8], s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(16);
        for b in hwid {
            // Writing to a String cannot fail.
            let _ = write!(text, "{b:02x}");
        }
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 8], D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bad = || D::Error::custom(format!("hardware ID {text:?}: expected 16 hex digits"));
        if text.len() != 16 || !text.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 8];
        for (i, b) in out.iter_mut().enumerate() {
            let pair = text.get(2 * i..2 * i + 2).ok_or_else(bad)?;
            *b = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(out)
    }
}

/// An application by its state file name.
mod app_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::{APPS, AppKind, app_key};

    pub fn serialize<S: Serializer>(app: &AppKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(app_key(*app))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AppKind, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        APPS.into_iter()
            .find(|&a| app_key(a) == text)
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "application {text:?}: expected \"windows\", \"office2010\" or \"office2013\""
                ))
            })
    }
}

/// A FILETIME as its tick count.
mod filetime_ticks {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::wire::kms::FileTime;

    pub fn serialize<S: Serializer>(t: &FileTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(t.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FileTime, D::Error> {
        u64::deserialize(d).map(FileTime)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::proto::checks::Check;
    use crate::proto::client::{ResponseBuf, decode_response, encode_request};
    use crate::proto::host::{HostRandom, decode_request, encode_response};
    use crate::wire::kms::{RequestBase, Version, Workstation};

    const SEC: u64 = FileTime::TICKS_PER_SEC;
    const DAY: u64 = 86_400;
    /// 2026-06-11 00:00:00 UTC, the day of the ePID date below.
    const T0: FileTime = FileTime::from_unix_secs(1_781_136_000);
    const TODAY: YearDay = YearDay {
        year: 2026,
        day: 162,
    };

    const WS2019: Guid = Guid::from_str_const("8449b1fb-f0ea-497a-99ab-66ca96e9a0f5");
    const WIN10: Guid = Guid::from_str_const("58e2134f-8e11-4d17-9cb2-91069c151148");
    const OFFICE2016: Guid = Guid::from_str_const("85b5f61b-320b-4be3-814a-b76b2bfafc82");
    const OFFICE2010: Guid = Guid::from_str_const("e85af946-2e25-47b7-83e1-bebcebeac611");
    /// vlmcs's default product: Windows Server 2019 Datacenter.
    const VLMCS_DEFAULT_SKU: Guid = Guid::from_str_const("8de8eb62-bbe0-40ac-ac17-f75595071ea3");
    const WIN10_ENTERPRISE: Guid = Guid::from_str_const("73111121-5638-40f6-bc11-f1d7b0d64300");

    fn at(days: u64, secs: u64) -> FileTime {
        FileTime(T0.0 + (days * DAY + secs) * SEC)
    }

    fn cmid(i: u32) -> Guid {
        let mut b = [0x5a; 16];
        b[..4].copy_from_slice(&i.to_le_bytes());
        Guid::new_v4(b)
    }

    fn group(name: &str) -> &'static HostKeyGroup {
        catalog::host_key_group(name).unwrap()
    }

    /// A V6 request for `kms_id` in its catalog application, sent at host time `now`.
    fn base(kms_id: Guid, machine: Guid, n: u32, now: FileTime) -> RequestBase {
        let item = catalog::kms_item(&kms_id);
        RequestBase {
            version: Version::V6,
            vm_info: 0,
            license_status: 2,
            binding_expiration: 43200,
            app_id: item.map_or(AppKind::Windows, |k| k.app).application().id,
            sku_id: item
                .and_then(|k| k.skus().next())
                .map_or(Guid::NIL, |s| s.id),
            kms_id,
            cmid: machine,
            required_clients: n,
            client_time: now,
            previous_cmid: Guid::NIL,
            workstation: Workstation::new("pc.example.test"),
        }
    }

    /// Encodes and decodes `base` as a client and host would.
    fn received(base: &RequestBase) -> (ReceivedRequest, Checks) {
        let mut msg = Vec::new();
        encode_request(base, [7; 16], &mut msg);
        decode_request(&msg, None).unwrap()
    }

    fn default_host() -> KmsHost {
        KmsHost::new(HostConfig::default(), TODAY, 42).unwrap()
    }

    fn decide(host: &mut KmsHost, base: &RequestBase, now: FileTime) -> Result<u32, Refusal> {
        let (req, checks) = received(base);
        match host.handle(&req, &checks, now) {
            Decision::Grant(p) => Ok(p.count),
            Decision::Refuse(r) => Err(r),
        }
    }

    /// The count granted to `machine` asking for `kms_id` with policy `n` at `now`.
    fn ask(host: &mut KmsHost, kms_id: Guid, machine: Guid, n: u32, now: FileTime) -> u32 {
        decide(host, &base(kms_id, machine, n, now), now).unwrap_or_else(|r| panic!("refused: {r}"))
    }

    fn refusal(host: &mut KmsHost, base: &RequestBase, now: FileTime) -> Refusal {
        decide(host, base, now).expect_err("granted")
    }

    fn listed(host: &KmsHost, app: AppKind, machine: Guid) -> bool {
        host.state()
            .tables
            .iter()
            .filter(|t| t.app == app)
            .flat_map(|t| &t.clients)
            .any(|c| c.cmid == machine)
    }

    #[test]
    fn test_new_machine_counts_once() {
        let mut host = default_host();
        assert_eq!(host.count(AppKind::Windows, T0), 0);
        assert_eq!(host.capacity(AppKind::Windows), 0);
        assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(0, 0)), 1);
        assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(0, 10)), 1);
        assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(1, 0)), 1);
        assert_eq!(ask(&mut host, WS2019, cmid(2), 5, at(1, 1)), 2);
        assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(1, 2)), 2);
        assert_eq!(host.count(AppKind::Windows, at(1, 2)), 2);
    }

    #[test]
    fn test_server_requests_stop_at_ten() {
        let mut host = default_host();
        let counts: Vec<u32> = (0..12)
            .map(|i| ask(&mut host, WS2019, cmid(i), 5, at(0, u64::from(i))))
            .collect();
        assert_eq!(counts, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10]);
        assert_eq!(host.capacity(AppKind::Windows), 10);
        assert_eq!(host.count(AppKind::Windows, at(0, 20)), 10);
    }

    #[test]
    fn test_client_request_raises_capacity_for_good() {
        let mut host = default_host();
        for i in 0..10 {
            ask(&mut host, WS2019, cmid(i), 5, at(0, u64::from(i)));
        }
        assert_eq!(ask(&mut host, WIN10, cmid(100), 25, at(0, 10)), 11);
        assert_eq!(host.capacity(AppKind::Windows), 50);
        let mut last = 0;
        for i in 200..260 {
            last = ask(&mut host, WS2019, cmid(i), 5, at(0, u64::from(i)));
        }
        assert_eq!(last, 50);
        assert_eq!(host.capacity(AppKind::Windows), 50);
        // Even once every client has expired, the size stays.
        assert_eq!(ask(&mut host, WS2019, cmid(999), 5, at(90, 0)), 1);
        assert_eq!(host.capacity(AppKind::Windows), 50);
    }

    #[test]
    fn test_oldest_evicted_first() {
        let mut host = default_host();
        for i in 0..10 {
            ask(&mut host, WS2019, cmid(i), 5, at(0, u64::from(i)));
        }
        // Full: machine 0, the oldest, leaves for machine 10.
        assert_eq!(ask(&mut host, WS2019, cmid(10), 5, at(0, 10)), 10);
        assert!(!listed(&host, AppKind::Windows, cmid(0)));
        assert!(listed(&host, AppKind::Windows, cmid(1)));
        // Machine 1 renews: it is now the newest, so machine 2 is the oldest.
        assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(0, 11)), 10);
        // Machine 0 returns as a new client and pushes machine 2 out.
        assert_eq!(ask(&mut host, WS2019, cmid(0), 5, at(0, 12)), 10);
        assert!(listed(&host, AppKind::Windows, cmid(0)));
        assert!(listed(&host, AppKind::Windows, cmid(1)));
        assert!(!listed(&host, AppKind::Windows, cmid(2)));
        let order: Vec<Guid> = host.state().tables[0]
            .clients
            .iter()
            .map(|c| c.cmid)
            .collect();
        let expected: Vec<Guid> = [3, 4, 5, 6, 7, 8, 9, 10, 1, 0].map(cmid).to_vec();
        assert_eq!(order, expected);
    }

    #[test]
    fn test_equal_times_leave_in_arrival_order() {
        let mut host = default_host();
        for i in 0..10 {
            ask(&mut host, WS2019, cmid(i), 5, T0);
        }
        for i in 10..15 {
            ask(&mut host, WS2019, cmid(i), 5, T0);
            assert!(!listed(&host, AppKind::Windows, cmid(i - 10)));
            assert!(listed(&host, AppKind::Windows, cmid(i - 9)));
        }
    }

    #[test]
    fn test_expiry_after_thirty_days() {
        let mut host = default_host();
        assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(0, 0)), 1);
        assert_eq!(host.count(AppKind::Windows, at(30, 0)), 1);
        assert_eq!(host.count(AppKind::Windows, at(30, 1)), 0);
        // Another machine asking then sees only itself.
        assert_eq!(ask(&mut host, WS2019, cmid(2), 5, at(30, 1)), 1);
        // The expired machine counts as new when it asks again.
        assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(30, 2)), 2);
        assert_eq!(host.count(AppKind::Windows, at(60, 1)), 2);
        assert_eq!(host.count(AppKind::Windows, at(60, 2)), 1);
        assert_eq!(host.count(AppKind::Windows, at(60, 3)), 0);
    }

    #[test]
    fn test_renewal_extends_life() {
        let mut host = default_host();
        assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(0, 0)), 1);
        assert_eq!(ask(&mut host, WS2019, cmid(2), 5, at(0, 1)), 2);
        assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(29, 0)), 2);
        assert_eq!(host.count(AppKind::Windows, at(30, 2)), 1);
        assert_eq!(host.count(AppKind::Windows, at(58, 0)), 1);
        assert_eq!(host.count(AppKind::Windows, at(59, 0)), 1);
        assert_eq!(host.count(AppKind::Windows, at(59, 1)), 0);
        assert_eq!(ask(&mut host, WS2019, cmid(3), 5, at(58, 0)), 2);
    }

    #[test]
    fn test_client_and_server_editions_share_the_windows_count() {
        let mut host = default_host();
        let mut win10 = base(WIN10, cmid(1), 25, T0);
        win10.sku_id = WIN10_ENTERPRISE;
        assert_eq!(catalog::sku(&WIN10_ENTERPRISE).unwrap().kms, WIN10);
        assert_eq!(decide(&mut host, &win10, T0), Ok(1));
        assert_eq!(ask(&mut host, WS2019, cmid(2), 5, T0), 2);
        win10.cmid = cmid(3);
        assert_eq!(decide(&mut host, &win10, T0), Ok(3));
        assert_eq!(host.count(AppKind::Windows, T0), 3);
        assert_eq!(host.capacity(AppKind::Windows), 50);
    }

    #[test]
    fn test_office_counts_apart_from_windows() {
        let config = HostConfig {
            key_groups: vec![
                catalog::default_host_key_group(),
                group("Volume License for Office 2016"),
            ],
            ..HostConfig::default()
        };
        let mut host = KmsHost::new(config, TODAY, 7).unwrap();
        assert_eq!(ask(&mut host, WS2019, cmid(1), 5, T0), 1);
        assert_eq!(ask(&mut host, WS2019, cmid(2), 5, T0), 2);
        // The same machines running Office count again, in the Office table.
        assert_eq!(ask(&mut host, OFFICE2016, cmid(1), 5, T0), 1);
        assert_eq!(ask(&mut host, OFFICE2016, cmid(3), 5, T0), 2);
        assert_eq!(host.count(AppKind::Windows, T0), 2);
        assert_eq!(host.count(AppKind::Office2013, T0), 2);
        assert_eq!(host.count(AppKind::Office2010, T0), 0);
        assert_eq!(host.capacity(AppKind::Office2013), 10);
        // Each application answers with its own key group's ePID.
        let windows = *host.epid_for(&WS2019).unwrap();
        let office = *host.epid_for(&OFFICE2016).unwrap();
        assert_ne!(windows, office);
        assert_eq!(office.group_id, 206);
        let (req, checks) = received(&base(OFFICE2016, cmid(4), 5, T0));
        let Decision::Grant(p) = host.handle(&req, &checks, T0) else {
            panic!("refused");
        };
        let mut expected = Vec::new();
        epid_to_wire(&office.to_string(), &mut expected);
        assert_eq!(p.epid, expected);
        // No Office 2010 key: refused.
        let r = refusal(&mut host, &base(OFFICE2010, cmid(5), 5, T0), T0);
        assert_eq!(r.rule, RefusalRule::KmsIdNotInKeyGroup);
    }

    #[test]
    fn test_first_configured_group_answers() {
        let ws2019 = group("Volume License for Windows Server 2019");
        let config = HostConfig {
            key_groups: vec![ws2019, catalog::default_host_key_group()],
            ..HostConfig::default()
        };
        let host = KmsHost::new(config, TODAY, 7).unwrap();
        assert_eq!(host.epid_for(&WS2019).unwrap().group_id, 206);
        let ws2022 = Guid::from_str_const("b74263e4-0f92-46c6-bcf8-c11d5efe2959");
        assert_eq!(host.epid_for(&ws2022).unwrap().group_id, 4573);
        assert_eq!(host.epid_for(&OFFICE2016), None);
    }

    /// Whether the tables are exactly as before.
    fn unchanged(host: &KmsHost, before: &HostState) {
        assert_eq!(&host.state(), before);
    }

    fn busy_host() -> (KmsHost, HostState) {
        let mut host = default_host();
        for i in 0..3 {
            ask(&mut host, WS2019, cmid(i), 5, T0);
        }
        let state = host.state();
        (host, state)
    }

    #[test]
    fn test_refuse_unsupported_version() {
        let (mut host, before) = busy_host();
        for (major, minor) in [(6, 1), (5, 1), (4, 2), (3, 0), (7, 0), (0, 0)] {
            let mut b = base(WS2019, cmid(9), 5, T0);
            b.version = Version { major, minor };
            let r = refusal(&mut host, &b, T0);
            assert_eq!(r.rule, RefusalRule::UnsupportedVersion, "{major}.{minor}");
            assert_eq!(r.hresult, HResult(0x8007_000D));
            assert_eq!(r.actual, Value::Version(b.version));
        }
        unchanged(&host, &before);
        for v in [Version::V4, Version::V5, Version::V6] {
            let mut b = base(WS2019, cmid(9), 5, T0);
            b.version = v;
            assert_eq!(decide(&mut host, &b, T0), Ok(4), "{v}");
        }
    }

    #[test]
    fn test_refuse_integrity_failures() {
        let (mut host, before) = busy_host();
        let b = base(WS2019, cmid(9), 5, T0);

        // V4: a MAC that does not verify.
        let mut v4 = b;
        v4.version = Version::V4;
        let mut msg = Vec::new();
        encode_request(&v4, [0; 16], &mut msg);
        *msg.last_mut().unwrap() ^= 1;
        let (req, checks) = decode_request(&msg, None).unwrap();
        let Decision::Refuse(r) = host.handle(&req, &checks, T0) else {
            panic!("granted");
        };
        assert_eq!(
            (r.rule, r.check, r.hresult),
            (
                RefusalRule::IntegrityFailed,
                Some(CheckId::Mac),
                HResult(0x8007_000D)
            )
        );

        // V6: the last block damaged, so the padding is wrong.
        msg.clear();
        encode_request(&b, [7; 16], &mut msg);
        *msg.last_mut().unwrap() ^= 0x55;
        let (req, checks) = decode_request(&msg, None).unwrap();
        assert!(!checks.passed(CheckId::Decrypt));
        let Decision::Refuse(r) = host.handle(&req, &checks, T0) else {
            panic!("granted");
        };
        assert_eq!(r.rule, RefusalRule::IntegrityFailed);
        assert_eq!(r.check, Some(CheckId::Decrypt));

        // Envelope 6.0 around a base that says 5.0.
        let (req, mut checks) = received(&b);
        checks.push(Check::equal(
            CheckId::Version,
            Value::Version(Version::V6),
            Value::Version(Version::V5),
        ));
        let Decision::Refuse(r) = host.handle(&req, &checks, T0) else {
            panic!("granted");
        };
        assert_eq!(r.check, Some(CheckId::Version));
        assert_eq!(r.hresult, HResult::INVALID_DATA);
        unchanged(&host, &before);

        // Checks other than integrity do not refuse: a machine ID that is not version 4.
        let mut odd = b;
        odd.cmid = Guid([1; 16]);
        let (req, checks) = received(&odd);
        assert!(!checks.passed(CheckId::MachineIdFormat));
        assert!(matches!(host.handle(&req, &checks, T0), Decision::Grant(_)));
    }

    #[test]
    fn test_refuse_too_many_required_clients() {
        let (mut host, before) = busy_host();
        let r = refusal(&mut host, &base(WS2019, cmid(9), 1001, T0), T0);
        assert_eq!(r.rule, RefusalRule::TooManyRequiredClients);
        assert_eq!(r.hresult, HResult(0x8007_000D));
        assert_eq!(r.actual, Value::Num(1001));
        let r = refusal(&mut host, &base(WS2019, cmid(9), u32::MAX, T0), T0);
        assert_eq!(r.rule, RefusalRule::TooManyRequiredClients);
        unchanged(&host, &before);
        assert_eq!(host.capacity(AppKind::Windows), 10);
        assert_eq!(ask(&mut host, WS2019, cmid(9), 1000, T0), 4);
        assert_eq!(host.capacity(AppKind::Windows), MAX_CAPACITY);
    }

    #[test]
    fn test_zero_policy_still_counts_the_requester() {
        let mut host = default_host();
        assert_eq!(ask(&mut host, WS2019, cmid(1), 0, T0), 1);
        assert_eq!(host.capacity(AppKind::Windows), 1);
        assert_eq!(ask(&mut host, WS2019, cmid(2), 0, T0), 1);
        assert!(!listed(&host, AppKind::Windows, cmid(1)));
    }

    #[test]
    fn test_refuse_clock_skew() {
        let (mut host, before) = busy_host();
        let limit = 4 * 3600;
        for client in [at(0, limit + 1), FileTime(T0.0 - (limit + 1) * SEC)] {
            let r = refusal(&mut host, &base(WS2019, cmid(9), 5, client), T0);
            assert_eq!(r.rule, RefusalRule::ClockSkew);
            assert_eq!(r.hresult, HResult(0xC004_F06C));
            assert_eq!(r.expected, Value::Time(T0));
            assert_eq!(r.actual, Value::Time(client));
        }
        // Extremes do not overflow.
        for client in [FileTime(0), FileTime(u64::MAX)] {
            let r = refusal(&mut host, &base(WS2019, cmid(9), 5, client), T0);
            assert_eq!(r.rule, RefusalRule::ClockSkew);
        }
        unchanged(&host, &before);
        // Exactly four hours either way is fine.
        assert_eq!(
            decide(&mut host, &base(WS2019, cmid(9), 5, at(0, limit)), T0),
            Ok(4)
        );
        let early = FileTime(T0.0 - limit * SEC);
        assert_eq!(
            decide(&mut host, &base(WS2019, cmid(10), 5, early), T0),
            Ok(5)
        );

        // Disabled: any client time goes.
        let config = HostConfig {
            max_clock_skew_secs: None,
            ..HostConfig::default()
        };
        let mut lax = KmsHost::new(config, TODAY, 1).unwrap();
        assert_eq!(
            decide(&mut lax, &base(WS2019, cmid(1), 5, FileTime(0)), T0),
            Ok(1)
        );
    }

    #[test]
    fn test_refuse_kms_id_outside_key_groups() {
        let (mut host, before) = busy_host();
        let r = refusal(&mut host, &base(OFFICE2016, cmid(9), 5, T0), T0);
        assert_eq!(r.rule, RefusalRule::KmsIdNotInKeyGroup);
        assert_eq!(r.hresult, HResult(0xC004_F042));
        assert_eq!(r.actual, Value::Guid(OFFICE2016));
        // A KMS ID no catalog entry has.
        let unknown = Guid::from_str_const("01234567-89ab-4cde-8f01-23456789abcd");
        let r = refusal(&mut host, &base(unknown, cmid(9), 5, T0), T0);
        assert_eq!(r.rule, RefusalRule::KmsIdNotInKeyGroup);
        // Windows 10 China Government is not in the Server 2022 group.
        let gov = Guid::from_str_const("7ba0bf23-d0f5-4072-91d9-d55af5a481b6");
        let r = refusal(&mut host, &base(gov, cmid(9), 25, T0), T0);
        assert_eq!(r.rule, RefusalRule::KmsIdNotInKeyGroup);
        unchanged(&host, &before);
    }

    #[test]
    fn test_refuse_application_mismatch() {
        let (mut host, before) = busy_host();
        for app in [AppKind::Office2013, AppKind::Office2010] {
            let mut b = base(WS2019, cmid(9), 5, T0);
            b.app_id = app.application().id;
            let r = refusal(&mut host, &b, T0);
            assert_eq!(r.rule, RefusalRule::ApplicationMismatch);
            assert_eq!(r.hresult, HResult(0xC004_F042));
            assert_eq!(r.expected, Value::Guid(AppKind::Windows.application().id));
            assert_eq!(r.actual, Value::Guid(b.app_id));
        }
        let mut b = base(WS2019, cmid(9), 5, T0);
        b.app_id = Guid::NIL;
        assert_eq!(
            refusal(&mut host, &b, T0).rule,
            RefusalRule::ApplicationMismatch
        );
        unchanged(&host, &before);
    }

    #[test]
    fn test_rules_apply_in_order() {
        let mut host = default_host();
        // Everything wrong at once: each fix reveals the next rule.
        let mut b = base(OFFICE2016, cmid(1), 5000, FileTime(0));
        b.app_id = Guid::NIL;
        b.version = Version { major: 6, minor: 1 };
        let (mut req, mut checks) = received(&b);
        checks.push(Check::equal(CheckId::Mac, Value::Num(1), Value::Num(2)));
        let mut next = |req: &ReceivedRequest, checks: &Checks| match host.handle(req, checks, T0) {
            Decision::Refuse(r) => r.rule,
            Decision::Grant(_) => panic!("granted"),
        };
        assert_eq!(next(&req, &checks), RefusalRule::UnsupportedVersion);
        req.version = Version::V6;
        assert_eq!(next(&req, &checks), RefusalRule::IntegrityFailed);
        checks = Checks::new();
        assert_eq!(next(&req, &checks), RefusalRule::TooManyRequiredClients);
        req.base.required_clients = 5;
        assert_eq!(next(&req, &checks), RefusalRule::ClockSkew);
        req.base.client_time = T0;
        assert_eq!(next(&req, &checks), RefusalRule::KmsIdNotInKeyGroup);
        req.base.kms_id = WS2019;
        assert_eq!(next(&req, &checks), RefusalRule::ApplicationMismatch);
        req.base.app_id = AppKind::Windows.application().id;
        assert!(matches!(
            host.handle(&req, &checks, T0),
            Decision::Grant(ResponseParams { count: 1, .. })
        ));
    }

    #[test]
    fn test_rule_names_and_sources() {
        for (i, rule) in RefusalRule::ALL.iter().enumerate() {
            let name = rule.name();
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert_eq!(serde_json::to_string(rule).unwrap(), format!("\"{name}\""));
            assert!(!rule.source().is_empty());
            assert!(rule.hresult().is_failure());
            for other in &RefusalRule::ALL[i + 1..] {
                assert_ne!(name, other.name());
            }
        }
        let r = Refusal::new(
            RefusalRule::TooManyRequiredClients,
            Some(CheckId::RequiredClients),
            Value::Num(1000),
            Value::Num(1001),
        );
        assert_eq!(
            r.to_string(),
            "too_many_required_clients (check required_clients): expected 1000, got 1001 -> \
             0x8007000D (ERROR_INVALID_DATA)"
        );
        assert_eq!(Decision::Refuse(r).hresult(), HResult::INVALID_DATA);
    }

    #[test]
    fn test_default_host_grants_vlmcs_default_product() {
        let mut host = default_host();
        let sku = catalog::sku(&VLMCS_DEFAULT_SKU).unwrap();
        assert_eq!(sku.kms, WS2019);
        let epid = host.epid_for(&WS2019).copied().unwrap();
        assert_eq!(epid.group_id, 4573);
        let hwid = host.hwid();
        let mut buf = ResponseBuf::default();
        for (i, version) in [Version::V4, Version::V5, Version::V6]
            .into_iter()
            .enumerate()
        {
            let mut b = base(WS2019, cmid(1 + i as u32), 5, T0);
            b.sku_id = VLMCS_DEFAULT_SKU;
            b.version = version;
            let mut msg = Vec::new();
            let sent = encode_request(&b, [9; 16], &mut msg);
            let (req, checks) = decode_request(&msg, Some(T0)).unwrap();
            assert!(checks.all_passed(), "{checks:?}");
            let Decision::Grant(params) = host.handle(&req, &checks, T0) else {
                panic!("{version} refused");
            };
            assert_eq!(params.count, i as u32 + 1);
            assert_eq!(params.hwid, hwid);
            assert_eq!(params.activation_interval, 120);
            assert_eq!(params.renewal_interval, 10080);
            let mut response = Vec::new();
            let random = HostRandom {
                salt: [3; 16],
                iv: [4; 16],
            };
            encode_response(&req, &params, &random, &mut response);
            let (resp, checks) = decode_response(&sent, &response, &mut buf).unwrap();
            assert!(checks.all_passed(), "{version}: {checks:?}");
            assert_eq!(resp.base.epid_string(), epid.to_string());
            assert_eq!(resp.base.count, i as u32 + 1);
        }
        // An Office product is not the Windows key's to activate.
        let r = refusal(&mut host, &base(OFFICE2016, cmid(9), 5, T0), T0);
        assert_eq!(r.hresult, HResult(0xC004_F042));
    }

    #[test]
    fn test_generated_epids_validate() {
        let groups = [
            catalog::default_host_key_group(),
            group("Volume License for Windows Server 2019"),
            group("Volume License for Office 2016"),
            group("Volume License for Office 2010"),
        ];
        for build in [17763, 20348, 9600] {
            let config = HostConfig {
                key_groups: groups.to_vec(),
                host_build: epid::host_build(build).unwrap(),
                lcid: 1031,
                ..HostConfig::default()
            };
            let host = KmsHost::new(config.clone(), TODAY, 99).unwrap();
            let epids: Vec<_> = host.epids().collect();
            assert_eq!(epids.len(), groups.len());
            for ((g, e), expected) in epids.iter().zip(groups) {
                assert_eq!(g.name, expected.name);
                assert_eq!(e.validate(Some(g)), [], "{e}");
                assert_eq!((e.build, e.lcid), (build, 1031));
                assert_eq!(e.activation_date(), Some(TODAY));
            }
            // The same seed gives the same host; another seed another.
            let again = KmsHost::new(config.clone(), TODAY, 99).unwrap();
            assert_eq!(again.state(), host.state());
            let other = KmsHost::new(config, TODAY, 100).unwrap();
            assert_ne!(other.hwid(), host.hwid());
            assert_ne!(other.epid_for(&WS2019), host.epid_for(&WS2019));
        }
        assert_eq!(default_host_build().build, DEFAULT_HOST_BUILD);
        assert_eq!(default_host().epid_for(&WS2019).unwrap().build, 20348);
        assert_eq!(default_host().epid_for(&WS2019).unwrap().lcid, 1033);
    }

    #[test]
    fn test_explicit_epid_and_hwid() {
        let ws2019 = group("Volume License for Windows Server 2019");
        let captured: Epid = "03612-00206-569-992245-03-14337-17763.0000-1622026"
            .parse()
            .unwrap();
        let config = HostConfig {
            key_groups: vec![catalog::default_host_key_group(), ws2019],
            // Loose spelling, as a command line gives it.
            epids: vec![("volume-license-for-windows-server-2019".into(), captured)],
            hwid: Some([1, 2, 3, 4, 5, 6, 7, 8]),
            ..HostConfig::default()
        };
        let host = KmsHost::new(config.clone(), TODAY, 5).unwrap();
        assert_eq!(host.hwid(), [1, 2, 3, 4, 5, 6, 7, 8]);
        let epids: Vec<Epid> = host.epids().map(|(_, e)| *e).collect();
        assert_eq!(epids[1], captured);
        // The generated one is what the same seed gives without the explicit one.
        let plain = HostConfig {
            epids: Vec::new(),
            ..config
        };
        let generated = KmsHost::new(plain, TODAY, 5).unwrap();
        assert_eq!(generated.epids().next().unwrap().1, &epids[0]);
    }

    #[test]
    fn test_config_errors() {
        let ws2022 = catalog::default_host_key_group();
        let captured: Epid = "03612-00206-569-992245-03-14337-17763.0000-1622026"
            .parse()
            .unwrap();
        let try_new = |config: HostConfig| KmsHost::new(config, TODAY, 1).unwrap_err();

        let err = try_new(HostConfig {
            key_groups: Vec::new(),
            ..HostConfig::default()
        });
        assert_eq!(err, ConfigError::NoKeyGroups);

        let err = try_new(HostConfig {
            key_groups: vec![ws2022, ws2022],
            ..HostConfig::default()
        });
        assert_eq!(err, ConfigError::DuplicateKeyGroup { name: ws2022.name });

        // A Server 2019 ePID given for the Server 2022 key.
        let err = try_new(HostConfig {
            epids: vec![(ws2022.name.into(), captured)],
            ..HostConfig::default()
        });
        let ConfigError::EpidGroupMismatch { name, issues, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(*name, ws2022.name);
        assert_eq!(issues.len(), 2);
        assert!(err.to_string().contains("expected 04573"), "{err}");

        let err = try_new(HostConfig {
            epids: vec![("Volume License for Windows Server 2019".into(), captured)],
            ..HostConfig::default()
        });
        assert!(matches!(err, ConfigError::UnknownEpidGroup { .. }), "{err}");
        let err = try_new(HostConfig {
            epids: vec![("no such group".into(), captured)],
            ..HostConfig::default()
        });
        assert!(matches!(err, ConfigError::UnknownEpidGroup { .. }), "{err}");

        let ws2019 = group("Volume License for Windows Server 2019");
        let err = try_new(HostConfig {
            key_groups: vec![ws2019],
            epids: vec![
                (ws2019.name.into(), captured),
                (ws2019.name.into(), captured),
            ],
            ..HostConfig::default()
        });
        assert_eq!(err, ConfigError::DuplicateEpid { name: ws2019.name });

        let err = try_new(HostConfig {
            lcid: 1047,
            ..HostConfig::default()
        });
        assert_eq!(err, ConfigError::UnknownLcid { lcid: 1047 });

        let early = YearDay::new(2020, 1).unwrap();
        let err = KmsHost::new(HostConfig::default(), early, 1).unwrap_err();
        assert!(
            matches!(err, ConfigError::BeforeRelease { build: 20348, .. }),
            "{err}"
        );

        // Only generated ePIDs need a known LCID and a date after the release.
        let explicit_only = HostConfig {
            key_groups: vec![ws2019],
            epids: vec![(ws2019.name.into(), captured)],
            lcid: 1047,
            ..HostConfig::default()
        };
        assert!(KmsHost::new(explicit_only, early, 1).is_ok());
    }

    /// A host with clients in two tables, some expired, capacities raised.
    fn populated() -> (HostConfig, KmsHost) {
        let config = HostConfig {
            key_groups: vec![
                catalog::default_host_key_group(),
                group("Volume License for Office 2016"),
            ],
            ..HostConfig::default()
        };
        let mut host = KmsHost::new(config.clone(), TODAY, 11).unwrap();
        for i in 0..8 {
            ask(&mut host, WS2019, cmid(i), 5, at(u64::from(i) * 5, 0));
        }
        ask(&mut host, WIN10, cmid(50), 25, at(36, 0));
        for i in 0..12 {
            ask(&mut host, OFFICE2016, cmid(100 + i), 5, at(40, 0));
        }
        ask(&mut host, WS2019, cmid(1), 5, at(40, 1));
        (config, host)
    }

    #[test]
    fn test_state_round_trip() {
        let (config, mut host) = populated();
        let now = at(40, 2);
        let state = host.state();
        let bytes = encode_state(&state);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.contains("\"format\": \"kmsharness-host-state\""),
            "{text}"
        );
        assert!(text.contains("\"version\": 1"), "{text}");
        let decoded = decode_state(&bytes).unwrap();
        assert_eq!(decoded, state);
        let mut back = KmsHost::restore(config, decoded).unwrap();
        assert_eq!(back.state(), state);
        assert_eq!(back.hwid(), host.hwid());
        for app in APPS {
            assert_eq!(back.count(app, now), host.count(app, now), "{app:?}");
            assert_eq!(back.capacity(app), host.capacity(app), "{app:?}");
        }
        // Machines 0 and 2 are past their 30 days.
        assert_eq!(host.count(AppKind::Windows, now), 7);
        assert_eq!(host.count(AppKind::Office2013, now), 10);
        // Both go on identically: eviction order and expiry survive the trip.
        for step in 0..70u32 {
            let t = at(40, 3 + u64::from(step) * 40_000);
            let kms = if step % 3 == 0 { OFFICE2016 } else { WS2019 };
            let machine = cmid(step % 23);
            assert_eq!(
                ask(&mut back, kms, machine, 5, t),
                ask(&mut host, kms, machine, 5, t),
                "step {step}"
            );
        }
        assert_eq!(back.state(), host.state());
    }

    #[test]
    fn test_restore_identity_rules() {
        let (config, host) = populated();
        let state = host.state();
        // Explicit values in the configuration win over saved ones.
        let office = group("Volume License for Office 2016");
        let explicit = Epid::generate(office, default_host_build(), 1040, TODAY, 3);
        let config2 = HostConfig {
            epids: vec![(office.name.into(), explicit)],
            hwid: Some([9; 8]),
            ..config.clone()
        };
        let back = KmsHost::restore(config2, state.clone()).unwrap();
        assert_eq!(back.epid_for(&OFFICE2016), Some(&explicit));
        assert_eq!(back.epid_for(&WS2019), host.epid_for(&WS2019));
        assert_eq!(back.hwid(), [9; 8]);
        // A key group the state has no ePID for, and none given.
        let ws2019 = group("Volume License for Windows Server 2019");
        let config3 = HostConfig {
            key_groups: vec![ws2019],
            ..config.clone()
        };
        assert_eq!(
            KmsHost::restore(config3, state.clone()).unwrap_err(),
            ConfigError::MissingEpid { name: ws2019.name }
        );
        // A saved ePID that contradicts its group.
        let mut bad = state.clone();
        bad.epids[0].epid.group_id = 206;
        assert!(matches!(
            KmsHost::restore(config.clone(), bad).unwrap_err(),
            ConfigError::EpidGroupMismatch { .. }
        ));
        // An inconsistent state.
        let mut bad = state;
        bad.tables[0].capacity = 3;
        assert!(matches!(
            KmsHost::restore(config, bad).unwrap_err(),
            ConfigError::State(StateError::OverCapacity { clients: 7, .. })
        ));
    }

    #[test]
    fn test_decode_state_errors() {
        let (_, host) = populated();
        let good = encode_state(&host.state());
        let text = String::from_utf8(good.clone()).unwrap();

        assert_eq!(decode_state(b""), Err(StateError::Empty));
        assert_eq!(decode_state(b" \n"), Err(StateError::Empty));
        // Every torn write fails, most as truncated.
        let body = text.trim_end();
        for cut in 1..body.len() {
            let err = decode_state(&body.as_bytes()[..cut]).expect_err("prefix decoded");
            if cut > 1 && !body.is_char_boundary(cut) {
                continue;
            }
            assert!(
                matches!(
                    err,
                    StateError::Truncated { .. } | StateError::Syntax { .. }
                ),
                "cut {cut}: {err}"
            );
        }
        let half = decode_state(&good[..good.len() / 2]).unwrap_err();
        assert!(matches!(half, StateError::Truncated { .. }), "{half}");
        assert!(half.to_string().starts_with("host state file is truncated"));

        assert!(matches!(
            decode_state(b"hello"),
            Err(StateError::Syntax { .. })
        ));
        assert_eq!(decode_state(b"[1, 2]"), Err(StateError::NotAnObject));

        let replace = |from: &str, to: &str| {
            assert!(text.contains(from), "{from}");
            decode_state(text.replacen(from, to, 1).as_bytes()).unwrap_err()
        };
        let err = replace("kmsharness-host-state", "vlmcsd-client-list");
        assert_eq!(
            err.to_string(),
            "host state file has format \"vlmcsd-client-list\", expected \
             \"kmsharness-host-state\""
        );
        let err = replace("\"format\"", "\"fmt\"");
        assert_eq!(err, StateError::MissingHeader("format"));
        let err = replace("\"version\": 1", "\"version\": 2");
        assert_eq!(
            err.to_string(),
            "host state file has version 2, this build reads version 1"
        );
        let err = replace("\"version\": 1", "\"version\": \"1\"");
        assert!(
            matches!(err, StateError::UnsupportedVersion { .. }),
            "{err}"
        );

        // A bad GUID is named.
        let first = host.state().tables[0].clients[0].cmid.to_string();
        let err = replace(&first, "not-a-guid");
        assert!(matches!(err, StateError::Invalid(_)), "{err}");
        assert!(
            err.to_string().contains("invalid GUID \"not-a-guid\""),
            "{err}"
        );

        let err = replace("\"hwid\": \"", "\"hwid\": \"zz");
        assert!(err.to_string().contains("hardware ID"), "{err}");
        let err = replace("\"windows\"", "\"macos\"");
        assert!(err.to_string().contains("application \"macos\""), "{err}");
        let err = replace("\"capacity\"", "\"size\"");
        assert!(matches!(err, StateError::Invalid(_)), "{err}");
        let err = replace("\"epid\": \"0", "\"epid\": \"x");
        assert!(matches!(err, StateError::Invalid(_)), "{err}");

        // Consistency.
        let second = host.state().tables[0].clients[1].cmid.to_string();
        let err = replace(&second, &first);
        assert!(matches!(err, StateError::DuplicateClient { .. }), "{err}");
        let err = replace("\"capacity\": 50", "\"capacity\": 2");
        assert_eq!(
            err.to_string(),
            "Windows table lists 7 clients but holds at most 2"
        );
        let err = replace("\"capacity\": 50", "\"capacity\": 2001");
        assert!(matches!(err, StateError::CapacityTooLarge { .. }), "{err}");
        let err = replace("\"office2013\"", "\"windows\"");
        assert!(matches!(err, StateError::DuplicateTable { .. }), "{err}");
        let err = replace(
            "Volume License for Office 2016",
            "Volume License for Nothing",
        );
        assert!(matches!(err, StateError::UnknownKeyGroup { .. }), "{err}");
    }

    /// A plain model of one table: a list scanned in full on every step.
    #[derive(Default)]
    struct Model {
        capacity: u32,
        entries: Vec<(Guid, FileTime, u64)>,
    }

    impl Model {
        fn ask(&mut self, machine: Guid, n: u32, now: FileTime, seq: u64) -> u32 {
            self.capacity = self.capacity.max((2 * n).max(1));
            let lifetime = DEFAULT_CLIENT_LIFETIME_SECS * SEC;
            self.entries
                .retain(|e| now.0.saturating_sub(e.1.0) <= lifetime);
            if let Some(e) = self.entries.iter_mut().find(|e| e.0 == machine) {
                e.1 = now;
                e.2 = seq;
            } else {
                if self.entries.len() >= self.capacity as usize {
                    let oldest = (0..self.entries.len())
                        .min_by_key(|&i| (self.entries[i].1, self.entries[i].2))
                        .unwrap();
                    self.entries.remove(oldest);
                }
                self.entries.push((machine, now, seq));
            }
            self.entries.len() as u32
        }
    }

    #[test]
    fn test_matches_a_plain_model() {
        // A fixed pseudo-random walk: machines, policies, time steps of up to 4 days, and now
        // and then the host clock stepping back a day.
        let mut rng = 0x1234_5678_9abc_def0_u64;
        let mut next = || splitmix64(&mut rng);
        let config = HostConfig {
            max_clock_skew_secs: None,
            ..HostConfig::default()
        };
        let mut host = KmsHost::new(config, TODAY, 3).unwrap();
        let mut model = Model::default();
        let mut now = T0;
        for step in 0..20_000u64 {
            let r = next();
            now = if r % 17 == 0 {
                FileTime(now.0 - DAY * SEC)
            } else {
                FileTime(now.0 + (r >> 8) % (4 * DAY * SEC))
            };
            let machine = cmid(((r >> 40) % 120) as u32);
            let (kms, n) = match (r >> 32) % 50 {
                0 => (WIN10, 25),
                1 => (WS2019, 0),
                _ => (WS2019, 5),
            };
            let got = ask(&mut host, kms, machine, n, now);
            let want = model.ask(machine, n, now, step + 1);
            assert_eq!(got, want, "step {step}");
            assert_eq!(host.count(AppKind::Windows, now), want, "step {step}");
        }
        let mut expected = model.entries.clone();
        expected.sort_by_key(|e| (e.1, e.2));
        let listed: Vec<Guid> = host.state().tables[0]
            .clients
            .iter()
            .map(|c| c.cmid)
            .collect();
        assert_eq!(listed, expected.iter().map(|e| e.0).collect::<Vec<_>>());
    }

    #[test]
    fn test_large_table() {
        let mut host = default_host();
        let n = MAX_REQUIRED_CLIENTS;
        for i in 0..2 * n + 500 {
            let count = ask(&mut host, WS2019, cmid(i), n, at(0, u64::from(i)));
            assert_eq!(count, (i + 1).min(2 * n));
        }
        assert_eq!(host.count(AppKind::Windows, at(0, 5000)), MAX_CAPACITY);
        assert!(!listed(&host, AppKind::Windows, cmid(499)));
        assert!(listed(&host, AppKind::Windows, cmid(500)));
    }
}
