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

/// Set (to any value) to make [`ipv6_loopback`] report `::1` missing, so that the skip path of
/// the IPv6 tests can be exercised on a machine that has it.
pub const NO_IPV6_ENV: &str = "KMSHARNESS_TEST_NO_IPV6";

/// Whether `::1` can be listened on; when it cannot (or [`NO_IPV6_ENV`] is set), writes
/// `SKIPPED: <test>: no ::1 on this machine` to stderr and returns false, and the test returns.
///
/// The harness has no "skipped" status and decides `#[ignore]` when the test is compiled, while
/// `::1` is a property of the machine the test runs on. So the IPv6 cases are test functions of
/// their own, named `..._ipv6`, that still count as passed when they skip, and the line goes to
/// the process's stderr directly (not through `eprintln!`, which the harness captures and drops
/// for a passing test): `cargo test` output shows every skip, and `grep -c '^SKIPPED:'` counts
/// them.
pub fn ipv6_loopback(test: &str) -> bool {
    let why = if std::env::var_os(NO_IPV6_ENV).is_some() {
        format!("{NO_IPV6_ENV} is set")
    } else {
        match std::net::TcpListener::bind("[::1]:0") {
            Ok(_) => return true,
            Err(e) => e.to_string(),
        }
    };
    let line = format!("SKIPPED: {test}: no ::1 on this machine ({why})\n");
    // Nothing to do if stderr itself is gone: the test still returns as skipped.
    let _ = io::stderr().write_all(line.as_bytes());
    false
}
