//! The command line: clap options, validated into the configs the library runs on.

pub mod activate;
pub mod conform;
pub mod exit;
pub mod inspect;
pub mod load;
pub mod replay;
pub mod serve;
pub mod target;

use std::net::SocketAddr;

use self::exit::Exit;
use self::target::{IpPreference, Target};

/// The async runtime a subcommand runs on (`threads` workers, or one per CPU), or exit status 6
/// with one line on stderr naming the subcommand.
pub fn runtime(cmd: &str, threads: Option<usize>) -> Result<tokio::runtime::Runtime, Exit> {
    let mut builder = if threads == Some(1) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if let Some(n) = threads.filter(|&n| n > 1) {
        builder.worker_threads(n);
    }
    builder.enable_all().build().map_err(|e| {
        eprintln!("kmsharness {cmd}: cannot start the async runtime: {e}");
        Exit::LocalIo
    })
}

/// Resolves an optional `--target` to addresses: `None` stays `None` (the bundled host), a bad
/// target is a usage error (2), an unresolvable one a connection error (3), each reported on one
/// line naming the subcommand.
pub async fn resolve_target(
    cmd: &str,
    target: Option<&str>,
) -> Result<Option<Vec<SocketAddr>>, Exit> {
    let Some(text) = target else { return Ok(None) };
    let target: Target = text.parse().map_err(|e| {
        eprintln!("kmsharness {cmd}: --target: {e}");
        Exit::Usage
    })?;
    crate::activate::addresses(&target, IpPreference::Any)
        .await
        .map(Some)
        .map_err(|e| {
            eprintln!("kmsharness {cmd}: {target}: {e}");
            Exit::Connection
        })
}
