//! The command line: clap options, validated into the configs the library runs on. Each
//! subcommand's `main` returns its exit status or an [`Error`], which `main.rs` prints once.

pub mod activate;
pub mod config_file;
pub mod conform;
pub mod error;
pub mod fuzz;
pub mod inspect;
pub mod load;
pub mod replay;
pub mod serve;
pub mod simulate;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

pub use self::error::Error;
use crate::exit::Exit;
use crate::net::discovery::{IpPreference, Target};

/// Reads `--catalog FILE` and makes its entries part of every catalog lookup for this run. A
/// missing or unreadable file is a local file error (exit 6), one that is not a catalog a usage
/// error (exit 2) naming the entry at fault; a file larger than any catalog is refused unread.
pub fn load_catalog(path: &Path) -> Result<(), Error> {
    use std::io::Read;
    let read = |e| Error::read("--catalog", path, e);
    let file = std::fs::File::open(path).map_err(read)?;
    let limit = crate::catalog::file::MAX_FILE_LEN;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > limit {
        return Err(Error::Content {
            path: path.to_owned(),
            message: format!("larger than {} MiB: not a catalog", limit >> 20),
        });
    }
    let origin = format!("--catalog {}", path.display());
    let ext = crate::catalog::file::parse(&text, &origin).map_err(|e| Error::Content {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    crate::catalog::install(ext)
        .map_err(|_| Error::Usage("--catalog: given more than once".to_owned()))
}

/// The exit status of a subcommand's result; an error is printed once on stderr, as
/// `kmsharness NAME: ERROR`.
pub fn finish(name: &str, result: Result<Exit, Error>) -> Exit {
    match result {
        Ok(exit) => exit,
        Err(e) => {
            note(format_args!("kmsharness {name}: {e}"));
            e.exit()
        }
    }
}

/// Writes one line on stderr. A closed stderr is ignored: nothing is left to report it on,
/// and the exit status still tells (`eprintln!` would panic instead).
pub fn note(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The async runtime a subcommand runs on (`threads` workers, or one per CPU).
pub fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime, Error> {
    let mut builder = if threads == Some(1) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if let Some(n) = threads.filter(|&n| n > 1) {
        builder.worker_threads(n);
    }
    builder.enable_all().build().map_err(Error::Runtime)
}

/// Completes on Ctrl-C (SIGINT) or, on unix, SIGTERM (what docker, systemd and `kill` send),
/// so that a stopped run still prints and writes what it has. The handlers are installed
/// when this is called (inside the runtime), not when the future is first polled, so a
/// signal that arrives while the run starts is not lost to the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    // No handler: this one never completes, the other may.
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Resolves an optional `--target` to addresses: `None` stays `None` (the bundled host).
pub async fn resolve_target(target: Option<&str>) -> Result<Option<Vec<SocketAddr>>, Error> {
    let Some(text) = target else { return Ok(None) };
    let target: Target = text.parse()?;
    crate::net::discovery::addresses(&target, IpPreference::Any)
        .await
        .map(Some)
        .map_err(|source| Error::Resolve {
            target: target.to_string(),
            source,
        })
}

/// A count option that must be at least 1.
pub fn at_least_one(option: &'static str, value: u64) -> Result<(), Error> {
    if value == 0 {
        return Err(Error::BadValue {
            option,
            value: "0".into(),
            expected: "at least 1",
        });
    }
    Ok(())
}

/// Whether an output path is `-`: standard output.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Writes a report as pretty JSON to `path`, or to stdout when it is `-` (named by `option`
/// in errors).
pub fn write_json(
    option: &'static str,
    path: &Path,
    report: &impl serde::Serialize,
) -> Result<(), Error> {
    let mut text = serde_json::to_vec_pretty(report)
        .map_err(|e| Error::write(option, path, std::io::Error::other(e)))?;
    text.push(b'\n');
    if is_stdout(path) {
        return print(|w| w.write_all(&text));
    }
    std::fs::write(path, text).map_err(|e| Error::write(option, path, e))
}

/// Writes an HTML page to `path`, or to stdout when it is `-` (named by `option` in errors).
pub fn write_html(option: &'static str, path: &Path, html: &str) -> Result<(), Error> {
    if is_stdout(path) {
        return print(|w| w.write_all(html.as_bytes()));
    }
    std::fs::write(path, html).map_err(|e| Error::write(option, path, e))
}

/// Writes the JUnit file of a gated run (`--junit FILE` of `load`, `replay`, `simulate`).
pub fn write_junit(
    path: &Path,
    run: &crate::report::junit::GatedRun<'_>,
    gates: &[crate::report::junit::Gate],
) -> Result<(), Error> {
    let mut bytes = Vec::new();
    crate::report::junit::gates(&mut bytes, run, gates)
        .and_then(|()| std::fs::write(path, &bytes))
        .map_err(|e| Error::write("--junit", path, e))
}

/// Now, RFC 3339 in UTC to the second: when a run started, for JUnit's `timestamp`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Checks before a run that `--html FILE` names a file that can be written: stdout (`-`)
/// already carries the text (or JSON) report, so it is refused there.
pub fn check_html(path: Option<&Path>) -> Result<(), Error> {
    let Some(path) = path else { return Ok(()) };
    if is_stdout(path) {
        return Err(Error::BadValue {
            option: "--html",
            value: "\"-\"".into(),
            expected: "a file (stdout carries the text report; `report html` writes a saved \
                report's page to stdout with -o -)",
        });
    }
    check_writable("--html", path)
}

/// Checks before a run that an output file can be written (its directory exists and is
/// writable, the file is not read-only or a directory), so that a run is not lost to a typo in
/// its output path: opens it for appending, creating it, and removes it again if it did not
/// exist. `-` (stdout) is always fine.
pub fn check_writable(option: &'static str, path: &Path) -> Result<(), Error> {
    if is_stdout(path) {
        return Ok(());
    }
    let existed = path.symlink_metadata().is_ok();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Error::write(option, path, e))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Prints a text report on stdout, or on stderr when `to_stderr` (stdout then carries the
/// JSON report of `--json -`); a closed or full stream is an [`Error::Print`].
pub fn print_text(
    to_stderr: bool,
    print_it: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), Error> {
    if !to_stderr {
        return print(print_it);
    }
    let mut err = std::io::stderr().lock();
    print_it(&mut err)
        .and_then(|()| err.flush())
        .map_err(Error::Print)
}

/// Prints to stdout through `print`; a closed or full stdout is an [`Error::Print`].
pub fn print(print: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    print(&mut out)
        .and_then(|()| out.flush())
        .map_err(Error::Print)
}

/// A timeout option's value: plain seconds (`10`, `2.5`, as these options took before) or a
/// humantime duration (`500ms`, `1m30s`), above zero and at most `max`; else a usage error
/// naming the option, with `expected` as the hint.
pub fn timeout(
    option: &'static str,
    text: &str,
    max: std::time::Duration,
    expected: &'static str,
) -> Result<std::time::Duration, Error> {
    crate::clock::parse_duration(text)
        .filter(|d| !d.is_zero() && *d <= max)
        .ok_or_else(|| Error::BadValue {
            option,
            value: format!("{text:?}"),
            expected,
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timeouts_take_seconds_and_humantime() {
        let max = Duration::from_secs(600);
        let t = |s| timeout("--read-timeout", s, max, "a duration");
        assert_eq!(t("10.0").ok(), Some(Duration::from_secs(10)));
        assert_eq!(t("10").ok(), Some(Duration::from_secs(10)));
        assert_eq!(t("2.5").ok(), Some(Duration::from_millis(2_500)));
        assert_eq!(t("500ms").ok(), Some(Duration::from_millis(500)));
        assert_eq!(t("1m30s").ok(), Some(Duration::from_secs(90)));
        for bad in ["0", "0s", "-1", "11m", "soon", "nan"] {
            let e = t(bad).expect_err(bad).to_string();
            assert!(e.contains("--read-timeout"), "{e}");
        }
    }
}
