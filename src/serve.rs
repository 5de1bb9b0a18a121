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

/// One log line per request on stderr (`RUST_LOG` overrides the level), coloured only on a
/// terminal.
pub fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs a host with `setup` until `interrupt` completes, then stops it.
pub async fn run(
    setup: HostSetup,
    interrupt: impl std::future::Future<Output = ()>,
) -> Result<Stopped, StartError> {
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
