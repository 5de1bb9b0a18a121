//! The host's state file on disk: written atomically, periodically while it changes, and at
//! shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Service;

/// How often a running host writes its state file by default (besides at shutdown), so that a
/// crash loses at most this much of the client table.
pub const STATE_SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// Shortest save period accepted, so a zero interval cannot spin.
const MIN_SAVE_INTERVAL: Duration = Duration::from_millis(10);

/// The temporary file a save of `path` writes first: the whole file name with a suffix, so it
/// is never `path` itself (`x.tmp` with its extension swapped would be).
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".kmsharness-tmp");
    path.with_file_name(name)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced, renamed over
/// `path`, and (on unix) the directory synced so that the rename itself survives a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = temp_path(path);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    #[cfg(unix)]
    std::fs::File::open(parent(path))?.sync_all()?;
    Ok(())
}

/// Fails now, at start, if `path` could not be saved later: it is a directory, or its
/// directory is missing or not writable (the temporary file cannot be created there).
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory",
        ));
    }
    let tmp = temp_path(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    std::fs::remove_file(&tmp)
}

/// Writes the state to `path` every `every` when it changed, until the task is aborted.
pub(super) async fn save_while_running(path: PathBuf, service: Arc<Service>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(MIN_SAVE_INTERVAL));
    tick.tick().await;
    let mut last = Vec::new();
    loop {
        tick.tick().await;
        let bytes = service.state_bytes();
        if bytes != last {
            if let Err(e) = write_atomically(&path, &bytes) {
                tracing::warn!(path = %path.display(), "cannot save the state file: {e}");
            }
            last = bytes;
        }
    }
}
