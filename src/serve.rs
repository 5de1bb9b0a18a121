//! `serve`: the reference host run until interrupted: it starts, says where it listens, and at
//! the end stops gracefully, writing its state file and recording.

use std::io::Write;
use std::path::PathBuf;

use crate::host::{HostSetup, StartError};
use crate::proto::faults::Fault;

/// How a host run ended.
#[derive(Debug)]
pub enum Stopped {
    /// Everything was written.
    Clean,
    /// The state file could not be written at shutdown.
    StateNotSaved {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The recording could not be finished.
    RecordingNotWritten(std::io::Error),
}

/// Prints the fault catalogue (`serve --fault list`), one fault a line.
pub fn list_faults(w: &mut dyn Write) -> std::io::Result<()> {
    for f in Fault::ALL {
        let check = f.check().map_or("-", |c| c.name());
        writeln!(
            w,
            "{:<22} trips {:<18} {}",
            f.name(),
            check,
            f.description()
        )?;
    }
    Ok(())
}

/// The environment variable that turns colour off (<https://no-color.org>).
pub const NO_COLOR_ENV: &str = "NO_COLOR";

/// Whether to colour a stream: only a terminal, and only while `NO_COLOR` is unset or empty
/// (no-color.org: "when present and not an empty string, prevents the addition of ANSI
/// color").
pub fn colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// One log line per request on stderr (`RUST_LOG` overrides the level), coloured only on a
/// terminal and without `NO_COLOR` (see [`colour`]).
pub fn init_log() {
    let ansi = colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os(NO_COLOR_ENV).as_deref(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Open files kept free besides connections: listeners, the control port, the state and
/// recording files, stdio, the runtime's own descriptors.
pub const FILE_MARGIN: u64 = 64;

/// Raises the soft open-file limit (RLIMIT_NOFILE) to the hard one and returns the limit now
/// in force; `None` where there is none to raise or it cannot be read.
pub fn raise_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::increase_nofile_limit(u64::MAX).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// How many connections fit under an open-file limit of `limit` (one descriptor each, and
/// [`FILE_MARGIN`] kept free), at most `max`, at least 1.
pub fn connections_within(max: usize, limit: u64) -> usize {
    let room = usize::try_from(limit.saturating_sub(FILE_MARGIN)).unwrap_or(usize::MAX);
    max.min(room).max(1)
}

/// Runs a host with `setup` until `interrupt` completes, then stops it. The open-file limit
/// is raised first and `--max-connections` capped below it (said in one line), so that a
/// full host refuses connections instead of failing to accept or to save its state.
pub async fn run(
    mut setup: HostSetup,
    interrupt: impl std::future::Future<Output = ()>,
) -> Result<Stopped, StartError> {
    if let Some(limit) = raise_file_limit() {
        let max = setup.listen.max_connections;
        let fit = connections_within(max, limit);
        if fit < max {
            eprintln!(
                "kmsharness serve: --max-connections {max} capped to {fit} (open-file limit {limit})"
            );
            setup.listen.max_connections = fit;
        }
    }
    let recorder = setup.listen.record.clone();
    let state = setup.state.clone();
    let host = crate::host::start(setup).await?;
    for a in &host.addrs {
        eprintln!("kmsharness serve: listening on {a}");
    }
    if let Some(c) = host.control {
        eprintln!("kmsharness serve: control port on {c}");
    }
    interrupt.await;
    eprintln!("kmsharness serve: shutting down");
    let saved = host.stop().await;
    if let Some(r) = &recorder
        && let Err(e) = r.finish()
    {
        return Ok(Stopped::RecordingNotWritten(e));
    }
    Ok(match saved {
        Ok(()) => Stopped::Clean,
        Err(source) => Stopped::StateNotSaved {
            path: state.unwrap_or_default(),
            source,
        },
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
        assert!(!colour(false, Some(OsStr::new(""))));
    }

    #[test]
    fn test_connections_fit_under_the_file_limit() {
        assert_eq!(connections_within(10_000, 1_048_576), 10_000);
        assert_eq!(
            connections_within(10_000, 1024),
            1024 - FILE_MARGIN as usize
        );
        assert_eq!(connections_within(10, 1024), 10);
        assert_eq!(connections_within(10, 8), 1);
    }
}
