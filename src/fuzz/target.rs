//! The host under test: an address, or a command the fuzzer starts itself on a free loopback
//! port (`--spawn "CMD ... {port}"`), watched for its exit status, signals and stderr, and
//! restarted after a crash.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::oracle::stderr_signature;

/// Longest a spawned host may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(10);
/// Stderr lines kept as the oracle's output of a finding.
const TAIL_LINES: usize = 60;

/// Why a host could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The command line is empty or does not split like a shell's.
    #[error("--spawn {0:?}: not a command line")]
    BadCommand(String),
    /// The program could not be run.
    #[error("--spawn: cannot run {program}: {source}")]
    Exec {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited or never listened.
    #[error("--spawn: the host {0}")]
    NotListening(String),
}

/// A crash or a bug report a spawned host gave.
#[derive(Debug, Clone)]
pub struct HostReport {
    /// The signature: the sanitizer's or panic's, or the exit status.
    pub signature: String,
    /// The last stderr lines.
    pub output: String,
}

/// A host the fuzzer started.
#[derive(Debug)]
pub struct Spawned {
    argv: Vec<String>,
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    lines: mpsc::UnboundedReceiver<String>,
    tail: Vec<String>,
    /// How many times it was started.
    pub starts: u64,
}

impl Spawned {
    /// Splits `command` (shell words, `{port}` replaced) and starts it.
    pub async fn start(command: &str) -> Result<Spawned, SpawnError> {
        let argv = shlex::split(command)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| SpawnError::BadCommand(command.to_string()))?;
        let (child, addr, lines) = launch(&argv).await?;
        Ok(Spawned {
            argv,
            child,
            addr,
            lines,
            tail: Vec::new(),
            starts: 1,
        })
    }

    /// Stops the host and starts it again (on a new port).
    pub async fn restart(&mut self) -> Result<(), SpawnError> {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let (child, addr, lines) = launch(&self.argv).await?;
        (self.child, self.addr, self.lines) = (child, addr, lines);
        self.tail.clear();
        self.starts += 1;
        Ok(())
    }

    /// Whether the host process has exited. Reads no stderr, so that a report it printed is
    /// left for [`check`](Self::check) to judge.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Whether the host died or reported a bug since the last call; waits up to `grace` for
    /// a report to arrive (a sanitizer prints, then exits).
    pub async fn check(&mut self, grace: Duration) -> Option<HostReport> {
        let deadline = tokio::time::Instant::now() + grace;
        let mut signature = None;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                if signature.is_none() {
                    signature = stderr_signature(&line);
                }
                self.tail.push(line);
                if self.tail.len() > TAIL_LINES {
                    self.tail.remove(0);
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Collect the rest of its stderr (closed at exit).
                while let Ok(Some(line)) =
                    tokio::time::timeout(Duration::from_millis(300), self.lines.recv()).await
                {
                    if signature.is_none() {
                        signature = stderr_signature(&line);
                    }
                    self.tail.push(line);
                }
                let exit = describe(status);
                return Some(HostReport {
                    signature: signature.unwrap_or_else(|| format!("host {exit}")),
                    output: format!("{}\n[{exit}]", self.tail.join("\n")),
                });
            }
            if signature.is_some() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        signature.map(|signature| HostReport {
            signature,
            output: self.tail.join("\n"),
        })
    }

    /// Stops the host.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Exit status in words.
fn describe(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    match status.code() {
        Some(c) => format!("exited with status {c}"),
        None => "exited".into(),
    }
}

async fn launch(
    argv: &[String],
) -> Result<(Child, SocketAddr, mpsc::UnboundedReceiver<String>), SpawnError> {
    let port = free_port().map_err(|e| SpawnError::NotListening(format!("no free port: {e}")))?;
    let args: Vec<String> = argv
        .iter()
        .map(|a| a.replace("{port}", &port.to_string()))
        .collect();
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SpawnError::Exec {
            program: args[0].clone(),
            source,
        })?;
    let (tx, rx) = mpsc::unbounded_channel();
    if let Some(err) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = tokio::time::Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(SpawnError::NotListening(describe(status)));
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok((child, addr, rx));
        }
        if start.elapsed() > START_LIMIT {
            let _ = child.start_kill();
            return Err(SpawnError::NotListening(format!(
                "did not listen on {addr} within {START_LIMIT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port free now (bound and released; a race with other programs is possible and
/// shows as a start failure).
fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}
