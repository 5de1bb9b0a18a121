//! What stops a subcommand, typed: a bad option, a file that cannot be read or written, a host
//! that does not start, a target that gives no address. Each says which exit status it calls
//! for; `main` prints it once, as `kmsharness SUBCOMMAND: ERROR`.

use std::path::PathBuf;

use crate::exit::Exit;
use crate::host::StartError;
use crate::load::mix::MixFileError;
use crate::load::{LoadError, MergeError};
use crate::net::discovery::{ResolveError, TargetError};
use crate::replay::ReplayError;

/// Why a subcommand stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option's value is wrong.
    #[error("{option} {value}: {expected}")]
    BadValue {
        /// The option, e.g. `--rate`.
        option: &'static str,
        /// The value given, as given.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// Two options that exclude each other.
    #[error("{0} cannot be combined with {1}")]
    Conflict(&'static str, &'static str),
    /// Another usage or configuration problem, in words.
    #[error("{0}")]
    Usage(String),
    /// `--target` does not parse.
    #[error("--target: {0}")]
    Target(#[from] TargetError),
    /// The target gives no address.
    #[error("{target}: {source}")]
    Resolve {
        /// The target as given.
        target: String,
        /// Why.
        source: ResolveError,
    },
    /// No address of the target accepted a connection.
    #[error("{target}: no connection{}", last.as_ref().map_or_else(String::new, |e| format!(": {e}")))]
    Unreachable {
        /// The target as given.
        target: String,
        /// The last connection error.
        last: Option<crate::net::raw::ConnectError>,
    },
    /// A local file cannot be read.
    #[error("{}cannot read {}: {source}", option_prefix(option), path.display())]
    Read {
        /// The option that named it, if any (`--mix`).
        option: Option<&'static str>,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A local file cannot be written.
    #[error("{}cannot write {}: {source}", option_prefix(option), path.display())]
    Write {
        /// The option that named it, if any (`--json`, `--record`).
        option: Option<&'static str>,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file that was read is not what it must be (a report, a mix, a capture).
    #[error("{}: {message}", path.display())]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The report could not be printed (stdout closed or full).
    #[error("cannot print the report: {0}")]
    Print(#[source] std::io::Error),
    /// The async runtime did not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The bundled host did not start.
    #[error(transparent)]
    Host(#[from] StartError),
    /// A mix file is wrong.
    #[error("--mix {0}")]
    Mix(#[from] MixFileError),
    /// A load run failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Reports do not merge.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// `--case` or `--category` names nothing.
    #[error(transparent)]
    Selection(#[from] crate::conform::runner::SelectionError),
    /// The conformance vectors do not load.
    #[error(transparent)]
    Vectors(#[from] crate::conform::vector::LoadError),
    /// A replay failed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// A fuzz run could not start.
    #[error(transparent)]
    Fuzz(#[from] crate::fuzz::FuzzError),
    /// `simulate` could not reach a host process.
    #[error(transparent)]
    Simulate(Box<crate::simulate::SimulateError>),
}

fn option_prefix(option: &Option<&'static str>) -> String {
    option.map_or_else(String::new, |o| format!("{o}: "))
}

impl Error {
    /// The exit status this error calls for.
    pub fn exit(&self) -> Exit {
        match self {
            Error::BadValue { .. }
            | Error::Conflict(..)
            | Error::Usage(_)
            | Error::Target(_)
            | Error::Content { .. }
            | Error::Mix(_)
            | Error::Merge(_)
            | Error::Selection(_) => Exit::Usage,
            // A vector directory or file that cannot be read is a missing input, as in every
            // other subcommand; one that reads but is wrong is a usage error.
            Error::Vectors(crate::conform::vector::LoadError::Io { .. }) => Exit::LocalIo,
            Error::Vectors(_) => Exit::Usage,
            Error::Resolve { .. } | Error::Unreachable { .. } => Exit::Connection,
            Error::Read { .. } | Error::Write { .. } | Error::Print(_) | Error::Runtime(_) => {
                Exit::LocalIo
            }
            Error::Host(e) => e.exit(),
            Error::Load(LoadError::Host(e)) => e.exit(),
            Error::Load(_) => Exit::LocalIo,
            Error::Replay(ReplayError::Host(e)) => e.exit(),
            Error::Replay(_) => Exit::LocalIo,
            Error::Fuzz(crate::fuzz::FuzzError::Host(e)) => e.exit(),
            Error::Fuzz(crate::fuzz::FuzzError::Dead { .. }) => Exit::Connection,
            Error::Fuzz(
                crate::fuzz::FuzzError::Out { .. } | crate::fuzz::FuzzError::Runtime(_),
            ) => Exit::LocalIo,
            Error::Fuzz(crate::fuzz::FuzzError::Spawn(_)) => Exit::Usage,
            Error::Simulate(e) => match **e {
                crate::simulate::SimulateError::Scenario(_) => Exit::Usage,
                crate::simulate::SimulateError::Runtime(_) => Exit::LocalIo,
                _ => Exit::Connection,
            },
        }
    }

    /// A file that cannot be read, named by `option`.
    pub fn read(option: &'static str, path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Read {
            option: Some(option),
            path: path.to_owned(),
            source,
        }
    }

    /// A file that cannot be written, named by `option`.
    pub fn write(option: &'static str, path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Write {
            option: Some(option),
            path: path.to_owned(),
            source,
        }
    }
}
