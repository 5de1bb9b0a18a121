//! Test support shared by the integration test modules: a hang guard and an in-memory file.

use std::future::Future;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest any awaited step of a test may take: a guard against hangs, not a time bound on
/// the behaviour (a failing test fails instead of hanging CI).
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Awaits `future`, failing the test with `what` if it has not finished by [`DEADLINE`].
pub async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {DEADLINE:?}"))
}

/// An in-memory file a recorder writes and the test reads back.
#[derive(Clone, Default)]
pub struct Memory(pub Arc<Mutex<Vec<u8>>>);

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
