//! Extended product ID (ePID) of a KMS host: strict parsing, canonical formatting, consistency
//! checks against the catalog, and deterministic generation from caller-supplied randomness.
//!
//! Layout, with the example `03612-00206-569-992245-03-14337-17763.0000-1622026`:
//!
//! ```text
//! 03612 - 00206 - 569-992245 - 03      - 14337 - 17763.0000     - 162 2026
//! platf.  group   key ID       channel   LCID    build.revision   day year
//! 5 dig.  5 dig.  3 + 6 dig.   2 dig.    unpadded unpadded.4 dig. 3 + 4 dig.
//! ```
//!
//! The host's OS build fixes the platform ID; the host key fixes the group and the key ID range
//! (see [`crate::catalog::HostKeyGroup`]); the date is the day the host was activated.

use core::fmt;
use core::str::FromStr;

use serde::Serialize;

use crate::catalog::HostKeyGroup;

/// License channel of a volume (CSVLK) host key: the literal `03` in every ePID vlmcsd and
/// py-kms emit, and the value Windows uses for volume licenses.
pub const VOLUME_CHANNEL: u8 = 3;

/// Digit counts of the fixed-width fields (vlmcsd kms.c pads the platform and group IDs to 5,
/// the key ID halves to 3 and 6, the day to 3 and the year to 4; the channel is `03`; the build
/// revision is always 4 digits in captured ePIDs).
const PLATFORM_ID_DIGITS: usize = 5;
const GROUP_ID_DIGITS: usize = 5;
const KEY_ID_HIGH_DIGITS: usize = 3;
const KEY_ID_LOW_DIGITS: usize = 6;
const CHANNEL_DIGITS: usize = 2;
const REVISION_DIGITS: usize = 4;
const DAY_DIGITS: usize = 3;
const YEAR_DIGITS: usize = 4;
/// The key ID prints as two groups; this divides the 9-digit number between them.
const KEY_ID_SPLIT: u32 = 1_000_000;
/// The date field prints as day then year; this divides the 7-digit number between them.
const YEAR_SPLIT: u32 = 10_000;
/// Dash-separated pieces of an ePID: the key ID spans two of them.
const PIECES: usize = 8;

// Largest values each fixed-width field can print without widening.
const MAX_5_DIGITS: u32 = 99_999;
const MAX_KEY_ID: u32 = 999_999_999;
const MAX_2_DIGITS: u32 = 99;
const MAX_4_DIGITS: u32 = 9_999;

// ---------------------------------------------------------------------------------------------
// Dates

/// A date as the ePID carries it: year and 1-based day of the year.
///
/// Ordering is chronological (year first, then day).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema,
)]
pub struct YearDay {
    /// Gregorian year.
    pub year: u16,
    /// Day of the year, 1 = January 1st.
    pub day: u16,
}

impl YearDay {
    /// The date, if `day` exists in `year`.
    pub const fn new(year: u16, day: u16) -> Option<YearDay> {
        if day >= 1 && day <= days_in_year(year) {
            Some(YearDay { year, day })
        } else {
            None
        }
    }

    /// The date of a calendar day, if it exists.
    pub const fn from_ymd(year: u16, month: u8, day: u8) -> Option<YearDay> {
        // Days before the first of each month in a common year.
        const BEFORE_MONTH: [u16; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        const MONTH_DAYS: [u8; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        if month < 1 || month > 12 || day < 1 {
            return None;
        }
        let index = (month - 1) as usize;
        let leap_day = (month == 2 && is_leap_year(year)) as u8;
        if day > MONTH_DAYS[index] + leap_day {
            return None;
        }
        let leap_shift = (month > 2 && is_leap_year(year)) as u16;
        YearDay::new(year, BEFORE_MONTH[index] + leap_shift + day as u16)
    }
}

impl fmt::Display for YearDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "day {} of {}", self.day, self.year)
    }
}

/// Whether `year` has a February 29th (Gregorian rules).
pub const fn is_leap_year(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// 365 or 366.
pub const fn days_in_year(year: u16) -> u16 {
    if is_leap_year(year) { 366 } else { 365 }
}

/// A calendar date for the tables; a bad literal fails the build.
const fn ymd(year: u16, month: u8, day: u8) -> YearDay {
    match YearDay::from_ymd(year, month, day) {
        Some(d) => d,
        None => panic!("invalid date literal"),
    }
}

// ---------------------------------------------------------------------------------------------
// Host builds and LCIDs

/// A Windows build that KMS hosts run, as it appears in the ePID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct HostBuild {
    /// OS build number, the seventh ePID field before the dot.
    pub build: u32,
    /// Platform ID that hosts of this build put first in their ePID.
    pub platform_id: u32,
    /// Display name.
    pub name: &'static str,
    /// General availability; a host cannot have been activated before it.
    pub released: YearDay,
}

/// Platform ID of Windows Vista / Server 2008 and Windows 7 / Server 2008 R2 hosts (vlmcsd
/// kmsdata HostBuilds).
const PLATFORM_NT6: u32 = 55041;
/// Platform ID of Windows 8 / Server 2012 hosts (vlmcsd kmsdata).
const PLATFORM_WIN8: u32 = 5426;
/// Platform ID of Windows 8.1 / Server 2012 R2 hosts (vlmcsd kmsdata).
const PLATFORM_WIN81: u32 = 6401;
/// Platform ID of Windows 10 and later hosts (vlmcsd kmsdata for 14393 and 17763; py-kms
/// KmsDataBase.xml WinBuild for 20348).
const PLATFORM_WIN10: u32 = 3612;

/// Server builds a KMS host is expected to run. Build numbers, platform IDs and release dates
/// observed in vlmcsd kmsdata (HostBuild records); builds 20348 and 26100 only in py-kms
/// KmsDataBase.xml.
pub static HOST_BUILDS: &[HostBuild] = &[
    HostBuild {
        build: 6002,
        platform_id: PLATFORM_NT6,
        name: "Windows Server 2008 SP2",
        released: ymd(2009, 5, 26),
    },
    HostBuild {
        build: 7601,
        platform_id: PLATFORM_NT6,
        name: "Windows Server 2008 R2 SP1",
        released: ymd(2011, 2, 22),
    },
    HostBuild {
        build: 9200,
        platform_id: PLATFORM_WIN8,
        name: "Windows Server 2012",
        released: ymd(2012, 10, 26),
    },
    HostBuild {
        build: 9600,
        platform_id: PLATFORM_WIN81,
        name: "Windows Server 2012 R2",
        released: ymd(2013, 10, 18),
    },
    HostBuild {
        build: 14393,
        platform_id: PLATFORM_WIN10,
        name: "Windows Server 2016",
        released: ymd(2016, 8, 2),
    },
    HostBuild {
        build: 17763,
        platform_id: PLATFORM_WIN10,
        name: "Windows Server 2019",
        released: ymd(2018, 10, 2),
    },
    HostBuild {
        build: 20348,
        platform_id: PLATFORM_WIN10,
        name: "Windows Server 2022",
        released: ymd(2021, 8, 18),
    },
    // Only py-kms KmsDataBase.xml WinBuild (platform ID and date); the date is Windows Server
    // 2025's general availability.
    HostBuild {
        build: 26100,
        platform_id: PLATFORM_WIN10,
        name: "Windows Server 2025",
        released: ymd(2024, 11, 1),
    },
];

/// The host build table entry for `build`.
pub fn host_build(build: u32) -> Option<&'static HostBuild> {
    HOST_BUILDS.iter().find(|b| b.build == build)
}

/// Windows language identifiers a host may report, ascending. Values observed in vlmcsd kms.c
/// (its list of LCIDs for random ePIDs), sorted here for binary search.
pub static LCIDS: &[u16] = &[
    1025, 1026, 1027, 1028, 1029, 1030, 1031, 1032, 1033, 1034, 1035, 1036, 1037, 1038, 1039, 1040,
    1041, 1042, 1043, 1044, 1045, 1046, 1048, 1049, 1050, 1051, 1052, 1053, 1054, 1056, 1057, 1058,
    1059, 1060, 1061, 1062, 1063, 1065, 1066, 1067, 1068, 1069, 1071, 1074, 1076, 1077, 1078, 1079,
    1080, 1081, 1082, 1083, 1086, 1087, 1088, 1089, 1091, 1092, 1093, 1094, 1095, 1097, 1098, 1099,
    1100, 1102, 1103, 1104, 1106, 1110, 1111, 1114, 1125, 1131, 1153, 2049, 2052, 2055, 2057, 2058,
    2060, 2064, 2067, 2068, 2070, 2074, 2077, 2092, 2107, 2110, 2115, 2155, 3073, 3076, 3079, 3081,
    3082, 3084, 3098, 3131, 3179, 4097, 4100, 4103, 4105, 4106, 4108, 4122, 4155, 5121, 5124, 5127,
    5129, 5130, 5132, 5146, 5179, 6145, 6153, 6154, 6156, 6170, 6203, 7169, 7177, 7178, 7194, 7227,
    8193, 8201, 8202, 8251, 9217, 9225, 9226, 9275, 10241, 10249, 10250, 11265, 11273, 11274,
    12289, 12297, 12298, 13313, 13321, 13322, 14337, 14346, 15361, 15370, 16385, 16394, 17418,
    18442, 19466, 20490,
];

/// Whether `lcid` is in [`LCIDS`].
pub fn is_known_lcid(lcid: u16) -> bool {
    LCIDS.binary_search(&lcid).is_ok()
}

// ---------------------------------------------------------------------------------------------
// The ePID

/// The fields of an ePID, for error and issue reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
pub enum EpidField {
    /// First field: depends on the host's OS build.
    PlatformId,
    /// Second field: the host key's group.
    GroupId,
    /// Third and fourth fields: the host key's ID.
    KeyId,
    /// Fifth field: license channel.
    Channel,
    /// Sixth field: the host's language.
    Lcid,
    /// Seventh field before the dot: the host's OS build.
    Build,
    /// Seventh field after the dot.
    BuildRevision,
    /// Last field: day of year and year of the host's activation.
    ActivationDate,
}

impl fmt::Display for EpidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EpidField::PlatformId => "platform ID",
            EpidField::GroupId => "group ID",
            EpidField::KeyId => "key ID",
            EpidField::Channel => "license channel",
            EpidField::Lcid => "LCID",
            EpidField::Build => "build",
            EpidField::BuildRevision => "build revision",
            EpidField::ActivationDate => "activation date",
        })
    }
}

/// Why a text is not a well-formed ePID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpidError {
    /// The text ended before this field.
    #[error("too few fields: the ePID ends before field `{0}`")]
    MissingField(EpidField),
    /// More dash-separated text follows the activation date.
    #[error("too many fields: unexpected `{0}` after the activation date")]
    ExtraField(String),
    /// A field is present but empty.
    #[error("ePID field `{0}` is empty")]
    Empty(EpidField),
    /// A field holds something other than ASCII digits.
    #[error("ePID field `{field}` is `{text}`: not a decimal number")]
    NotDecimal {
        /// The field.
        field: EpidField,
        /// Its text.
        text: String,
    },
    /// A fixed-width field has the wrong number of digits.
    #[error("ePID field `{field}` is `{text}`: expected exactly {expected} digits")]
    WrongWidth {
        /// The field.
        field: EpidField,
        /// Its text.
        text: String,
        /// Digits the format requires.
        expected: usize,
    },
    /// An unpadded field (LCID, build) starts with a zero, which a host never prints.
    #[error("ePID field `{field}` is `{text}`: leading zeros are not allowed")]
    LeadingZero {
        /// The field.
        field: EpidField,
        /// Its text.
        text: String,
    },
    /// An unpadded field's number does not fit its type.
    #[error("ePID field `{field}` is `{text}`: too large")]
    TooLarge {
        /// The field.
        field: EpidField,
        /// Its text.
        text: String,
    },
    /// The build field lacks its `.NNNN` revision.
    #[error("ePID field `build` is `{0}`: expected `<build>.<4-digit revision>`")]
    MissingRevision(String),
    /// The activation day does not exist in the activation year.
    #[error("ePID field `activation date`: day {day} is not in year {year}")]
    DayNotInYear {
        /// Day of year as written.
        day: u16,
        /// Year as written.
        year: u16,
    },
}

/// A KMS host's extended product ID.
///
/// [`FromStr`] accepts only the canonical text (exact digit counts, no leading zeros in the
/// unpadded fields, a real date), so `Display` reproduces any parsed text byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epid {
    /// Platform ID (depends on the host's OS build).
    pub platform_id: u32,
    /// Key group ID of the host key.
    pub group_id: u32,
    /// Key ID of the host key (9 digits, printed as 3 + 6).
    pub key_id: u32,
    /// License channel; 3 for volume keys.
    pub channel: u8,
    /// Language of the host.
    pub lcid: u16,
    /// OS build of the host.
    pub build: u32,
    /// Number after the build's dot.
    pub build_revision: u16,
    /// Day of year of the host's activation, 1-based.
    pub day: u16,
    /// Year of the host's activation.
    pub year: u16,
}

impl Epid {
    /// The activation date, if the day exists in the year.
    pub const fn activation_date(&self) -> Option<YearDay> {
        YearDay::new(self.year, self.day)
    }

    /// An ePID as a host with a key of `group` running `build` would report it.
    ///
    /// Deterministic: the key ID is `random` reduced into the group's key ID range (the modulo
    /// bias is below 2^-32 for every range in the catalog). Sans-IO: the caller supplies the
    /// activation date and the random number. No check is made that `activation` follows the
    /// build's release; [`Epid::validate`] reports it.
    pub fn generate(
        group: &HostKeyGroup,
        build: &HostBuild,
        lcid: u16,
        activation: YearDay,
        random: u64,
    ) -> Epid {
        let start = *group.key_ids.start();
        let span = u64::from(group.key_ids.end().saturating_sub(start)) + 1;
        // The remainder is below span, which fits u32; the fallback cannot be reached.
        let offset = u32::try_from(random % span).unwrap_or(0);
        Epid {
            platform_id: build.platform_id,
            group_id: group.epid_group_id,
            key_id: start.saturating_add(offset),
            channel: VOLUME_CHANNEL,
            lcid,
            build: build.build,
            build_revision: 0,
            day: activation.day,
            year: activation.year,
        }
    }

    /// Every inconsistency in this ePID: unknown build or LCID, platform ID not matching the
    /// build, non-volume channel, impossible date or one before the build's release, and, when
    /// `group` is given, a group or key ID that a key of that group cannot have. Empty when the
    /// ePID looks like one a real host of that group would send.
    pub fn validate(&self, group: Option<&HostKeyGroup>) -> Vec<EpidIssue> {
        let mut issues = Vec::new();

        let widths = [
            (EpidField::PlatformId, self.platform_id, MAX_5_DIGITS),
            (EpidField::GroupId, self.group_id, MAX_5_DIGITS),
            (EpidField::KeyId, self.key_id, MAX_KEY_ID),
            (EpidField::Channel, u32::from(self.channel), MAX_2_DIGITS),
            (
                EpidField::BuildRevision,
                u32::from(self.build_revision),
                MAX_4_DIGITS,
            ),
            (
                EpidField::ActivationDate,
                u32::from(self.year),
                MAX_4_DIGITS,
            ),
        ];
        for (field, actual, max) in widths {
            if actual > max {
                issues.push(EpidIssue::TooWide { field, max, actual });
            }
        }

        let known_build = host_build(self.build);
        match known_build {
            None => issues.push(EpidIssue::UnknownBuild { actual: self.build }),
            Some(b) if b.platform_id != self.platform_id => {
                issues.push(EpidIssue::PlatformMismatch {
                    build: b.build,
                    expected: b.platform_id,
                    actual: self.platform_id,
                });
            }
            Some(_) => {}
        }

        if !is_known_lcid(self.lcid) {
            issues.push(EpidIssue::UnknownLcid { actual: self.lcid });
        }

        if self.channel != VOLUME_CHANNEL {
            issues.push(EpidIssue::Channel {
                expected: VOLUME_CHANNEL,
                actual: self.channel,
            });
        }

        match (self.activation_date(), known_build) {
            (None, _) => issues.push(EpidIssue::DayNotInYear {
                day: self.day,
                year: self.year,
            }),
            (Some(date), Some(b)) if date < b.released => {
                issues.push(EpidIssue::BeforeRelease {
                    build: b.build,
                    released: b.released,
                    actual: date,
                });
            }
            (Some(_), _) => {}
        }

        if let Some(g) = group {
            if self.group_id != g.epid_group_id {
                issues.push(EpidIssue::GroupMismatch {
                    group: g.name,
                    expected: g.epid_group_id,
                    actual: self.group_id,
                });
            }
            if !g.key_ids.contains(&self.key_id) {
                issues.push(EpidIssue::KeyIdOutOfRange {
                    group: g.name,
                    min: *g.key_ids.start(),
                    max: *g.key_ids.end(),
                    actual: self.key_id,
                });
            }
        }

        issues
    }
}

impl fmt::Display for Epid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:05}-{:05}-{:03}-{:06}-{:02}-{}-{}.{:04}-{:03}{:04}",
            self.platform_id,
            self.group_id,
            self.key_id / KEY_ID_SPLIT,
            self.key_id % KEY_ID_SPLIT,
            self.channel,
            self.lcid,
            self.build,
            self.build_revision,
            self.day,
            self.year,
        )
    }
}

impl FromStr for Epid {
    type Err = EpidError;

    fn from_str(s: &str) -> Result<Epid, EpidError> {
        // One piece more than needed, so anything after the date stays in one piece to report.
        let mut pieces = s.splitn(PIECES + 1, '-');
        let mut next = |field| pieces.next().ok_or(EpidError::MissingField(field));

        let platform_id = fixed(
            next(EpidField::PlatformId)?,
            EpidField::PlatformId,
            PLATFORM_ID_DIGITS,
        )?;
        let group_id = fixed(
            next(EpidField::GroupId)?,
            EpidField::GroupId,
            GROUP_ID_DIGITS,
        )?;
        let key_high = fixed(
            next(EpidField::KeyId)?,
            EpidField::KeyId,
            KEY_ID_HIGH_DIGITS,
        )?;
        let key_low = fixed(next(EpidField::KeyId)?, EpidField::KeyId, KEY_ID_LOW_DIGITS)?;
        let channel_text = next(EpidField::Channel)?;
        let channel = fixed(channel_text, EpidField::Channel, CHANNEL_DIGITS)?;
        let lcid_text = next(EpidField::Lcid)?;
        let lcid = unpadded(lcid_text, EpidField::Lcid)?;
        let build_text = next(EpidField::Build)?;
        let date_text = next(EpidField::ActivationDate)?;
        if let Some(extra) = pieces.next() {
            return Err(EpidError::ExtraField(extra.to_owned()));
        }

        let (build, revision_text) = build_text
            .split_once('.')
            .ok_or_else(|| EpidError::MissingRevision(build_text.to_owned()))?;
        let build = unpadded(build, EpidField::Build)?;
        let revision = fixed(revision_text, EpidField::BuildRevision, REVISION_DIGITS)?;

        let date = fixed(
            date_text,
            EpidField::ActivationDate,
            DAY_DIGITS + YEAR_DIGITS,
        )?;

        // The fixed widths keep channel, revision, day and year far below their types' limits,
        // so these conversions cannot fail; the LCID is unpadded and can.
        let narrow = |value: u32, field, text: &str| {
            u16::try_from(value).map_err(|_| EpidError::TooLarge {
                field,
                text: text.to_owned(),
            })
        };
        let channel = u8::try_from(channel).map_err(|_| EpidError::TooLarge {
            field: EpidField::Channel,
            text: channel_text.to_owned(),
        })?;
        let epid = Epid {
            platform_id,
            group_id,
            key_id: key_high * KEY_ID_SPLIT + key_low,
            channel,
            lcid: narrow(lcid, EpidField::Lcid, lcid_text)?,
            build,
            build_revision: narrow(revision, EpidField::BuildRevision, revision_text)?,
            day: narrow(date / YEAR_SPLIT, EpidField::ActivationDate, date_text)?,
            year: narrow(date % YEAR_SPLIT, EpidField::ActivationDate, date_text)?,
        };
        if epid.activation_date().is_none() {
            return Err(EpidError::DayNotInYear {
                day: epid.day,
                year: epid.year,
            });
        }
        Ok(epid)
    }
}

/// Checks that `text` is all ASCII digits, naming `field` if not.
fn digits(text: &str, field: EpidField) -> Result<(), EpidError> {
    if text.is_empty() {
        return Err(EpidError::Empty(field));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EpidError::NotDecimal {
            field,
            text: text.to_owned(),
        });
    }
    Ok(())
}

/// A zero-padded field of exactly `width` digits (at most 9, so the value fits).
fn fixed(text: &str, field: EpidField, width: usize) -> Result<u32, EpidError> {
    digits(text, field)?;
    if text.len() != width {
        return Err(EpidError::WrongWidth {
            field,
            text: text.to_owned(),
            expected: width,
        });
    }
    Ok(text
        .bytes()
        .fold(0, |acc, b| acc * 10 + u32::from(b - b'0')))
}

/// An unpadded decimal field.
fn unpadded(text: &str, field: EpidField) -> Result<u32, EpidError> {
    digits(text, field)?;
    if text.len() > 1 && text.starts_with('0') {
        return Err(EpidError::LeadingZero {
            field,
            text: text.to_owned(),
        });
    }
    text.bytes()
        .try_fold(0u32, |acc, b| {
            acc.checked_mul(10)?.checked_add(u32::from(b - b'0'))
        })
        .ok_or_else(|| EpidError::TooLarge {
            field,
            text: text.to_owned(),
        })
}

impl serde::Serialize for Epid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Epid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Validation findings

/// One inconsistency found by [`Epid::validate`]: the field, what was expected, what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error, schemars::JsonSchema)]
pub enum EpidIssue {
    /// A number is too large for its fixed-width field, so the text would not be canonical.
    #[error("ePID field `{field}`: expected at most {max}, found {actual}")]
    TooWide {
        /// The field.
        field: EpidField,
        /// Largest value the field can print.
        max: u32,
        /// The value.
        actual: u32,
    },
    /// The build is not one a KMS host runs (not in [`HOST_BUILDS`]).
    #[error("ePID field `build`: expected a known KMS host build, found {actual}")]
    UnknownBuild {
        /// The build.
        actual: u32,
    },
    /// The platform ID is not the one hosts of this build report.
    #[error(
        "ePID field `platform ID`: expected {expected:05} for build {build}, found {actual:05}"
    )]
    PlatformMismatch {
        /// The (known) build.
        build: u32,
        /// Platform ID of that build.
        expected: u32,
        /// Platform ID in the ePID.
        actual: u32,
    },
    /// The LCID is not a Windows language identifier (not in [`LCIDS`]).
    #[error("ePID field `LCID`: expected a Windows language identifier, found {actual}")]
    UnknownLcid {
        /// The LCID.
        actual: u16,
    },
    /// The license channel is not the volume channel.
    #[error("ePID field `license channel`: expected {expected:02} (volume), found {actual:02}")]
    Channel {
        /// [`VOLUME_CHANNEL`].
        expected: u8,
        /// The channel.
        actual: u8,
    },
    /// The activation day does not exist in the activation year.
    #[error(
        "ePID field `activation date`: expected a day from 1 to {} of {year}, found day {day}",
        days_in_year(*year)
    )]
    DayNotInYear {
        /// Day of year.
        day: u16,
        /// Year.
        year: u16,
    },
    /// The host claims activation before its OS build was released.
    #[error(
        "ePID field `activation date`: expected {released} or later (release of build {build}), \
         found {actual}"
    )]
    BeforeRelease {
        /// The build.
        build: u32,
        /// Its release date.
        released: YearDay,
        /// The activation date.
        actual: YearDay,
    },
    /// The key group ID is not the expected host key group's.
    #[error("ePID field `group ID`: expected {expected:05} for \"{group}\", found {actual:05}")]
    GroupMismatch {
        /// Name of the expected host key group.
        group: &'static str,
        /// Its ePID group ID.
        expected: u32,
        /// Group ID in the ePID.
        actual: u32,
    },
    /// The key ID is outside the expected host key group's range.
    #[error("ePID field `key ID`: expected {min}..={max} for \"{group}\", found {actual}")]
    KeyIdOutOfRange {
        /// Name of the expected host key group.
        group: &'static str,
        /// Lowest key ID of the group.
        min: u32,
        /// Highest key ID of the group.
        max: u32,
        /// Key ID in the ePID.
        actual: u32,
    },
}

impl EpidIssue {
    /// The ePID field the issue is about.
    pub const fn field(&self) -> EpidField {
        match self {
            EpidIssue::TooWide { field, .. } => *field,
            EpidIssue::UnknownBuild { .. } => EpidField::Build,
            EpidIssue::PlatformMismatch { .. } => EpidField::PlatformId,
            EpidIssue::UnknownLcid { .. } => EpidField::Lcid,
            EpidIssue::Channel { .. } => EpidField::Channel,
            EpidIssue::DayNotInYear { .. } | EpidIssue::BeforeRelease { .. } => {
                EpidField::ActivationDate
            }
            EpidIssue::GroupMismatch { .. } => EpidField::GroupId,
            EpidIssue::KeyIdOutOfRange { .. } => EpidField::KeyId,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::catalog::{self, HOST_KEY_GROUPS};

    /// ePIDs seen in our captures (captures/README.md and the host logs): vlmcsd's Windows,
    /// Office 2010/2013/2016/2019 ePIDs, vlmcsd on build 7601, and py-kms's random ones.
    const CAPTURED: [&str; 9] = [
        "03612-00206-569-992245-03-14337-17763.0000-1622026",
        "03612-00096-203-070194-03-14337-17763.0000-1492026",
        "03612-00206-252-430612-03-14337-17763.0000-3412023",
        "03612-00206-457-812766-03-14337-17763.0000-1062019",
        "03612-00206-684-278163-03-14337-17763.0000-2442023",
        "55041-00206-563-913716-03-1040-7601.0000-0862025",
        "03612-00206-557-517312-03-1033-17763.0000-1962021",
        "03612-00206-566-285868-03-1033-17763.0000-2932018",
        "03612-00206-570-276937-03-1033-17763.0000-2312025",
    ];
    const VLMCSD_WINDOWS: &str = CAPTURED[0];

    fn parse(s: &str) -> Epid {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn group(name: &str) -> &'static HostKeyGroup {
        catalog::host_key_group(name).unwrap()
    }

    /// The field an error is about, for the malformed-input table.
    fn error_field(e: &EpidError) -> EpidField {
        match e {
            EpidError::MissingField(f) | EpidError::Empty(f) => *f,
            EpidError::NotDecimal { field, .. }
            | EpidError::WrongWidth { field, .. }
            | EpidError::LeadingZero { field, .. }
            | EpidError::TooLarge { field, .. } => *field,
            EpidError::MissingRevision(_) => EpidField::BuildRevision,
            EpidError::DayNotInYear { .. } | EpidError::ExtraField(_) => EpidField::ActivationDate,
        }
    }

    #[test]
    fn test_parse_fields() {
        let e = parse(VLMCSD_WINDOWS);
        assert_eq!(
            e,
            Epid {
                platform_id: 3612,
                group_id: 206,
                key_id: 569_992_245,
                channel: 3,
                lcid: 14337,
                build: 17763,
                build_revision: 0,
                day: 162,
                year: 2026,
            }
        );
        assert_eq!(
            e.activation_date(),
            Some(YearDay {
                year: 2026,
                day: 162
            })
        );
        let old = parse(CAPTURED[5]);
        assert_eq!((old.platform_id, old.lcid, old.build), (55041, 1040, 7601));
        assert_eq!((old.day, old.year), (86, 2025));
    }

    #[test]
    fn test_round_trip() {
        for s in CAPTURED {
            assert_eq!(parse(s).to_string(), s);
        }
        // A non-zero revision survives too.
        let s = "03612-00206-569-992245-03-1033-17763.1234-0012024";
        assert_eq!(parse(s).to_string(), s);
    }

    #[test]
    fn test_serde_as_text() {
        let e = parse(VLMCSD_WINDOWS);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, format!("\"{VLMCSD_WINDOWS}\""));
        assert_eq!(serde_json::from_str::<Epid>(&json).unwrap(), e);
        assert!(serde_json::from_str::<Epid>("\"03612\"").is_err());
    }

    #[test]
    fn test_malformed_names_the_field() {
        use EpidField::*;
        let cases: &[(&str, EpidField)] = &[
            // Missing fields.
            ("", PlatformId),
            ("03612", GroupId),
            ("03612-00206", KeyId),
            ("03612-00206-569", KeyId),
            ("03612-00206-569-992245", Channel),
            ("03612-00206-569-992245-03", Lcid),
            ("03612-00206-569-992245-03-14337", Build),
            ("03612-00206-569-992245-03-14337-17763.0000", ActivationDate),
            // Extra field.
            (
                "03612-00206-569-992245-03-14337-17763.0000-1622026-1",
                ActivationDate,
            ),
            // Non-digits.
            (
                "0361x-00206-569-992245-03-14337-17763.0000-1622026",
                PlatformId,
            ),
            (
                "03612-0020A-569-992245-03-14337-17763.0000-1622026",
                GroupId,
            ),
            ("03612-00206-5 9-992245-03-14337-17763.0000-1622026", KeyId),
            ("03612-00206-569-99224+-03-14337-17763.0000-1622026", KeyId),
            (
                "03612-00206-569-992245-0x-14337-17763.0000-1622026",
                Channel,
            ),
            ("03612-00206-569-992245-03-abc-17763.0000-1622026", Lcid),
            ("03612-00206-569-992245-03-+1033-17763.0000-1622026", Lcid),
            ("03612-00206-569-992245-03-14337-1776e.0000-1622026", Build),
            (
                "03612-00206-569-992245-03-14337-17763.00o0-1622026",
                BuildRevision,
            ),
            (
                "03612-00206-569-992245-03-14337-17763.0000-162202x",
                ActivationDate,
            ),
            (
                "03612-00206-569-992245-03-14337-17763.0000-１622026",
                ActivationDate,
            ),
            // Wrong digit counts.
            (
                "3612-00206-569-992245-03-14337-17763.0000-1622026",
                PlatformId,
            ),
            (
                "003612-00206-569-992245-03-14337-17763.0000-1622026",
                PlatformId,
            ),
            ("03612-206-569-992245-03-14337-17763.0000-1622026", GroupId),
            ("03612-00206-569992245-03-14337-17763.0000-1622026", KeyId),
            ("03612-00206-56-992245-03-14337-17763.0000-1622026", KeyId),
            ("03612-00206-569-99224-03-14337-17763.0000-1622026", KeyId),
            ("03612-00206-569-992245-3-14337-17763.0000-1622026", Channel),
            (
                "03612-00206-569-992245-003-14337-17763.0000-1622026",
                Channel,
            ),
            (
                "03612-00206-569-992245-03-14337-17763.000-1622026",
                BuildRevision,
            ),
            (
                "03612-00206-569-992245-03-14337-17763.00000-1622026",
                BuildRevision,
            ),
            (
                "03612-00206-569-992245-03-14337-17763.0000-162026",
                ActivationDate,
            ),
            (
                "03612-00206-569-992245-03-14337-17763.0000-16220260",
                ActivationDate,
            ),
            // Empty fields.
            ("03612--569-992245-03-14337-17763.0000-1622026", GroupId),
            ("03612-00206-569-992245-03--17763.0000-1622026", Lcid),
            ("03612-00206-569-992245-03-14337-.0000-1622026", Build),
            (
                "03612-00206-569-992245-03-14337-17763.-1622026",
                BuildRevision,
            ),
            (
                "03612-00206-569-992245-03-14337-17763.0000-",
                ActivationDate,
            ),
            // Padding where there is none, values too large.
            ("03612-00206-569-992245-03-01033-17763.0000-1622026", Lcid),
            ("03612-00206-569-992245-03-65536-17763.0000-1622026", Lcid),
            ("03612-00206-569-992245-03-14337-017763.0000-1622026", Build),
            (
                "03612-00206-569-992245-03-14337-4294967296.0000-1622026",
                Build,
            ),
            // Missing revision.
            (
                "03612-00206-569-992245-03-14337-17763-1622026",
                BuildRevision,
            ),
            // Dates that do not exist.
            (
                "03612-00206-569-992245-03-14337-17763.0000-0002026",
                ActivationDate,
            ),
            (
                "03612-00206-569-992245-03-14337-17763.0000-3672024",
                ActivationDate,
            ),
            (
                "03612-00206-569-992245-03-14337-17763.0000-3662026",
                ActivationDate,
            ),
            (
                "03612-00206-569-992245-03-14337-17763.0000-4002026",
                ActivationDate,
            ),
        ];
        for (text, field) in cases {
            let err = text.parse::<Epid>().expect_err(text);
            assert_eq!(error_field(&err), *field, "{text}: {err}");
        }
    }

    #[test]
    fn test_error_messages() {
        let err = |s: &str| s.parse::<Epid>().unwrap_err().to_string();
        assert_eq!(
            err("03612-00206-569-992245-03-abc-17763.0000-1622026"),
            "ePID field `LCID` is `abc`: not a decimal number"
        );
        assert_eq!(
            err("03612-00206-569-992245-03-14337-17763.0000-4002026"),
            "ePID field `activation date`: day 400 is not in year 2026"
        );
        assert_eq!(
            err("03612-00206-569-992245"),
            "too few fields: the ePID ends before field `license channel`"
        );
        assert_eq!(
            err("03612-00206-569-992245-03-14337-17763.0000-1622026-x-y"),
            "too many fields: unexpected `x-y` after the activation date"
        );
        assert_eq!(
            err("03612-206-569-992245-03-14337-17763.0000-1622026"),
            "ePID field `group ID` is `206`: expected exactly 5 digits"
        );
    }

    #[test]
    fn test_leap_days() {
        assert!(parse("03612-00206-569-992245-03-1033-17763.0000-3662024").year == 2024);
        assert!(parse("03612-00206-569-992245-03-1033-17763.0000-3662000").year == 2000);
        assert!(
            "03612-00206-569-992245-03-1033-17763.0000-3662100"
                .parse::<Epid>()
                .is_err()
        );
        assert!(parse("03612-00206-569-992245-03-1033-17763.0000-0012026").day == 1);
        assert_eq!(YearDay::from_ymd(2024, 12, 31), YearDay::new(2024, 366));
        assert_eq!(YearDay::from_ymd(2023, 3, 1), YearDay::new(2023, 60));
        assert_eq!(YearDay::from_ymd(2024, 3, 1), YearDay::new(2024, 61));
        assert_eq!(YearDay::from_ymd(2023, 2, 29), None);
        assert_eq!(YearDay::from_ymd(2023, 13, 1), None);
        assert_eq!(YearDay::from_ymd(2023, 4, 31), None);
    }

    #[test]
    fn test_host_build_table() {
        let released = |b: u32| host_build(b).unwrap().released;
        assert_eq!(released(17763), YearDay::new(2018, 275).unwrap());
        assert_eq!(released(7601), YearDay::new(2011, 53).unwrap());
        assert_eq!(host_build(17763).unwrap().platform_id, 3612);
        assert_eq!(host_build(9600).unwrap().platform_id, 6401);
        assert_eq!(host_build(9200).unwrap().platform_id, 5426);
        assert_eq!(host_build(6002).unwrap().platform_id, 55041);
        assert!(host_build(19045).is_none());
        for pair in HOST_BUILDS.windows(2) {
            assert!(pair[0].build < pair[1].build && pair[0].released < pair[1].released);
        }
    }

    #[test]
    fn test_lcid_table() {
        assert!(LCIDS.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        assert_eq!(LCIDS.len(), 158);
        for lcid in [1033, 1040, 14337, 2052, 1031] {
            assert!(is_known_lcid(lcid), "{lcid}");
        }
        assert!(!is_known_lcid(0));
        assert!(!is_known_lcid(1047));
    }

    #[test]
    fn test_validate_captured_vlmcsd_windows_epid() {
        let e = parse(VLMCSD_WINDOWS);
        let ws2019 = group("Volume License for Windows Server 2019");
        assert_eq!(e.validate(Some(ws2019)), []);
        assert_eq!(e.validate(None), []);
    }

    #[test]
    fn test_validate_all_captures_against_their_groups() {
        let expected_group = [
            "Volume License for Windows Server 2019",
            "Volume License for Office 2010",
            "Volume License for Office 2013",
            "Volume License for Office 2016",
            "Volume License for Office 2019",
            "Volume License for Windows Server 2019",
            "Volume License for Windows Server 2019",
            "Volume License for Windows Server 2019",
            "Volume License for Windows Server 2019",
        ];
        for (text, name) in CAPTURED.iter().zip(expected_group) {
            let e = parse(text);
            assert_eq!(e.validate(Some(group(name))), [], "{text} as {name}");
            let found: Vec<_> = catalog::host_key_groups_for_epid(e.group_id, e.key_id)
                .map(|g| g.name)
                .collect();
            assert_eq!(found, [name], "{text}");
        }
    }

    #[test]
    fn test_validate_reports_each_inconsistency() {
        let base = parse(VLMCSD_WINDOWS);
        let ws2022 = catalog::default_host_key_group();
        let ws2019 = group("Volume License for Windows Server 2019");
        let only = |e: Epid, g: &HostKeyGroup| -> EpidIssue {
            let issues = e.validate(Some(g));
            assert_eq!(issues.len(), 1, "{issues:?}");
            issues[0].clone()
        };

        let wrong_group = base.validate(Some(ws2022));
        let fields: Vec<_> = wrong_group.iter().map(EpidIssue::field).collect();
        assert_eq!(fields, [EpidField::GroupId, EpidField::KeyId]);
        assert_eq!(
            wrong_group[0].to_string(),
            "ePID field `group ID`: expected 04573 for \"Volume License for Windows Server 2022\", \
             found 00206"
        );

        let issue = only(
            Epid {
                key_id: 571_000_000,
                ..base
            },
            ws2019,
        );
        assert_eq!(issue.field(), EpidField::KeyId);
        assert_eq!(
            issue.to_string(),
            "ePID field `key ID`: expected 551000000..=570999999 for \"Volume License for Windows \
             Server 2019\", found 571000000"
        );

        let issue = only(
            Epid {
                platform_id: 6401,
                ..base
            },
            ws2019,
        );
        assert_eq!(
            issue,
            EpidIssue::PlatformMismatch {
                build: 17763,
                expected: 3612,
                actual: 6401
            }
        );
        assert_eq!(
            issue.to_string(),
            "ePID field `platform ID`: expected 03612 for build 17763, found 06401"
        );

        let issue = only(
            Epid {
                build: 19045,
                ..base
            },
            ws2019,
        );
        assert_eq!(issue, EpidIssue::UnknownBuild { actual: 19045 });

        let issue = only(Epid { lcid: 1047, ..base }, ws2019);
        assert_eq!(issue.field(), EpidField::Lcid);

        let issue = only(Epid { channel: 2, ..base }, ws2019);
        assert_eq!(
            issue.to_string(),
            "ePID field `license channel`: expected 03 (volume), found 02"
        );

        let issue = only(
            Epid {
                day: 366,
                year: 2026,
                ..base
            },
            ws2019,
        );
        assert_eq!(
            issue,
            EpidIssue::DayNotInYear {
                day: 366,
                year: 2026
            }
        );
        assert_eq!(issue.field(), EpidField::ActivationDate);

        let issue = only(
            Epid {
                day: 200,
                year: 2018,
                ..base
            },
            ws2019,
        );
        assert_eq!(
            issue.to_string(),
            "ePID field `activation date`: expected day 275 of 2018 or later (release of build \
             17763), found day 200 of 2018"
        );
        // The release day itself is fine.
        assert_eq!(
            Epid {
                day: 275,
                year: 2018,
                ..base
            }
            .validate(Some(ws2019)),
            []
        );

        // Too wide for its field, and so also not the build's platform ID.
        let issues = Epid {
            platform_id: 103_612,
            ..base
        }
        .validate(Some(ws2019));
        assert_eq!(issues.len(), 2);
        assert!(issues.iter().all(|i| i.field() == EpidField::PlatformId));
        let issue = only(
            Epid {
                build_revision: 10_000,
                ..base
            },
            ws2019,
        );
        assert_eq!(issue.field(), EpidField::BuildRevision);
    }

    #[test]
    fn test_generate_validates_and_round_trips() {
        let activation = YearDay::new(2026, 162).unwrap();
        let randoms = [0, 1, 0x0123_4567_89ab_cdef, u64::MAX, u64::MAX / 3];
        for g in HOST_KEY_GROUPS {
            for b in HOST_BUILDS {
                for r in randoms {
                    let e = Epid::generate(g, b, 1033, activation, r);
                    assert_eq!(e.validate(Some(g)), [], "{} on {}: {e}", g.name, b.name);
                    assert_eq!(parse(&e.to_string()), e);
                }
            }
        }
    }

    #[test]
    fn test_generate_is_deterministic_and_spans_the_range() {
        let g = catalog::host_key_group("Volume License for Windows Server 2019").unwrap();
        let b = host_build(17763).unwrap();
        let day = YearDay::new(2026, 162).unwrap();
        let e = Epid::generate(g, b, 14337, day, 42);
        assert_eq!(e, Epid::generate(g, b, 14337, day, 42));
        assert_eq!(
            e.to_string(),
            "03612-00206-551-000042-03-14337-17763.0000-1622026"
        );
        assert_eq!(
            Epid::generate(g, b, 14337, day, 0).key_id,
            *g.key_ids.start()
        );
        let span = u64::from(g.key_ids.end() - g.key_ids.start());
        assert_eq!(
            Epid::generate(g, b, 14337, day, span).key_id,
            *g.key_ids.end()
        );
        assert_eq!(
            Epid::generate(g, b, 14337, day, span + 1).key_id,
            *g.key_ids.start()
        );
        let ws2022 = catalog::default_host_key_group();
        let e = Epid::generate(ws2022, host_build(20348).unwrap(), 1033, day, 7);
        assert_eq!(
            e.to_string(),
            "03612-04573-000-030007-03-1033-20348.0000-1622026"
        );
    }

    #[test]
    fn test_ws2022_keys_skip_the_hole_below_30000() {
        // Windows Server 2022 and 2025 keys carry key IDs from 30000 up; 0..=29999 is no key's.
        let day = YearDay::new(2026, 162).unwrap();
        for name in [
            "Volume License for Windows Server 2022",
            "Volume License for Windows Server 2025",
        ] {
            let g = group(name);
            assert_eq!(*g.key_ids.start(), 30_000, "{name}");
            for r in [0, 1, 29_999, 30_000, u64::MAX] {
                let e = Epid::generate(g, host_build(26100).unwrap(), 1033, day, r);
                assert!(e.key_id >= 30_000, "{name}: {e}");
                assert_eq!(e.validate(Some(g)), [], "{name}: {e}");
            }
            let mut hole = Epid::generate(g, host_build(20348).unwrap(), 1033, day, 0);
            hole.key_id = 29_999;
            assert_eq!(hole.validate(Some(g)).len(), 1, "{name}: {hole}");
        }
        let e = parse("03612-04918-000-030000-03-1033-26100.0000-1622026");
        assert_eq!(
            e.validate(Some(group("Volume License for Windows Server 2025"))),
            []
        );
    }
}
