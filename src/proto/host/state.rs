//! The host's persistent snapshot: identity (ePIDs, hardware ID) and client tables, as the JSON
//! of a state file with a format tag and version, validated when read.

use serde::{Deserialize, Serialize};

use crate::catalog::{self, AppKind};
use crate::epid::Epid;
use crate::wire::Guid;
use crate::wire::kms::FileTime;

use super::table::MAX_CAPACITY;

/// The `format` tag of a host state file.
pub const STATE_FORMAT: &str = "kmsharness-host-state";
/// The `version` of the host state file layout this module reads and writes.
pub const STATE_VERSION: u64 = 1;

/// The name of an application in a state file.
const fn app_key(app: AppKind) -> &'static str {
    match app {
        AppKind::Windows => "windows",
        AppKind::Office2010 => "office2010",
        AppKind::Office2013 => "office2013",
    }
}

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

    use super::app_key;
    use crate::catalog::AppKind;
    use crate::proto::host::table::APPS;

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
