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

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced, then renamed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
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
