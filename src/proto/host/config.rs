//! What a reference host is: its host key groups, OS build, language, identity and policy
//! intervals, with the defaults a genuine host has and the errors of an impossible configuration.

use crate::catalog::{self, HostKeyGroup};
use crate::epid::{self, Epid, EpidIssue, HostBuild, YearDay};

use super::message::MAX_CLOCK_SKEW_SECS;
use super::state::StateError;

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
/// The OS build of the default host: Windows Server 2022, the release of the default key group
/// ([`catalog::DEFAULT_HOST_KEY_GROUP`]).
pub const DEFAULT_HOST_BUILD: u32 = 20348;
/// English (United States). Any LCID in [`epid::LCIDS`] makes a valid ePID; this is merely the
/// most common Windows installation language.
pub const DEFAULT_LCID: u16 = 1033;

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
            key_groups: catalog::default_host_key_groups(),
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
pub(super) fn default_host_build() -> &'static HostBuild {
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

pub(super) fn join(issues: &[EpidIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
