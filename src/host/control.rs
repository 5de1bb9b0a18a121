//! The control port of a host: one command per line, one answer line each, so that tests and
//! simulations can read counts and move a virtual clock over a socket. Both ends are here: the
//! host's side ([`serve`]) and the client `simulate` drives a host process with
//! ([`ControlClient`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::catalog::AppKind;
use crate::clock::{Clock, parse_secs};
use crate::wire::kms::FileTime;

use super::Service;

/// The control protocol, one command per line, one answer line each:
/// `now` → `ok <FILETIME> <UTC>`; `advance <duration>` (virtual clock only) → `ok …`;
/// `count <windows|office2010|office2013>` → `ok <n>`; `save` → `ok`.
pub(super) async fn serve(listener: TcpListener, service: Arc<Service>) {
    while let Ok((stream, _)) = listener.accept().await {
        let service = service.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = control_command(&service, &line);
                if w.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The application words of `count`, as the host state file spells them.
const APPS: [(&str, AppKind); 3] = [
    ("windows", AppKind::Windows),
    ("office2010", AppKind::Office2010),
    ("office2013", AppKind::Office2013),
];

fn control_command(service: &Service, line: &str) -> String {
    let mut words = line.split_whitespace();
    let now = |s: &Service| {
        let t = s.clock().now();
        format!("ok {} {t}\n", t.0)
    };
    match (words.next(), words.next()) {
        (Some("now"), None) => now(service),
        (Some("advance"), Some(d)) => match (&service.clock(), parse_secs(d)) {
            (Clock::Virtual(v), Some(secs)) => {
                v.advance(secs);
                now(service)
            }
            (Clock::System, _) => {
                "error the host runs on the system clock (start it with --clock virtual)\n".into()
            }
            (_, None) => format!("error {d:?} is not a duration like 30d, 4h, 90m or 15s\n"),
        },
        (Some("count"), Some(app)) => {
            let app = APPS.iter().find(|(w, _)| *w == app).map(|&(_, a)| a);
            match app {
                Some(a) => format!("ok {}\n", service.count(a)),
                None => "error application must be windows, office2010 or office2013\n".into(),
            }
        }
        _ => "error commands: now | advance <duration> | count <application>\n".into(),
    }
}

/// Longest wait for a control connection or one answer line: a host process that stops
/// answering must not hold a simulation (the host answers from memory, in microseconds).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a control command got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Connecting, writing or reading failed.
    #[error("control port {addr}: {source}")]
    Io {
        /// The control port.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// No answer line within [`CONTROL_TIMEOUT`], or the connection closed before one.
    #[error("control port {addr}: no answer to {command:?} within {}s", CONTROL_TIMEOUT.as_secs())]
    NoAnswer {
        /// The control port.
        addr: SocketAddr,
        /// The command sent.
        command: String,
    },
    /// The host answered with an error, or with a line that is not the command's answer.
    #[error("control port {addr}: {command:?}: {answer}")]
    Refused {
        /// The control port.
        addr: SocketAddr,
        /// The command sent.
        command: String,
        /// The host's answer line.
        answer: String,
    },
}

/// A connection to a host's control port.
#[derive(Debug)]
pub struct ControlClient {
    addr: SocketAddr,
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl ControlClient {
    /// Connects to the control port at `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<ControlClient, ControlError> {
        let stream = tokio::time::timeout(CONTROL_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| ControlError::NoAnswer {
                addr,
                command: "connect".into(),
            })?
            .map_err(|source| ControlError::Io { addr, source })?;
        let _ = stream.set_nodelay(true);
        let (r, writer) = stream.into_split();
        Ok(ControlClient {
            addr,
            lines: BufReader::new(r).lines(),
            writer,
        })
    }

    /// Sends `command`; the answer after `ok `.
    pub async fn command(&mut self, command: &str) -> Result<String, ControlError> {
        let addr = self.addr;
        let no_answer = || ControlError::NoAnswer {
            addr,
            command: command.to_owned(),
        };
        self.writer
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(|source| ControlError::Io { addr, source })?;
        let line = tokio::time::timeout(CONTROL_TIMEOUT, self.lines.next_line())
            .await
            .map_err(|_| no_answer())?
            .map_err(|source| ControlError::Io { addr, source })?
            .ok_or_else(no_answer)?;
        match line.strip_prefix("ok") {
            Some(rest) => Ok(rest.trim_start().to_owned()),
            None => Err(ControlError::Refused {
                addr,
                command: command.to_owned(),
                answer: line,
            }),
        }
    }

    /// The host's clock, from the FILETIME that `now` and `advance` answer first.
    fn parse_time(&self, command: &str, answer: &str) -> Result<FileTime, ControlError> {
        answer
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .map(FileTime)
            .ok_or_else(|| ControlError::Refused {
                addr: self.addr,
                command: command.to_owned(),
                answer: answer.to_owned(),
            })
    }

    /// The host's clock now.
    pub async fn now(&mut self) -> Result<FileTime, ControlError> {
        let answer = self.command("now").await?;
        self.parse_time("now", &answer)
    }

    /// Moves the host's virtual clock to `to`, to the second (the control port's unit); the
    /// clock it reads afterwards. A host on the system clock refuses.
    pub async fn set_time(&mut self, to: FileTime) -> Result<FileTime, ControlError> {
        let now = self.now().await?;
        let ticks = i128::from(to.0) - i128::from(now.0);
        let secs = (ticks / i128::from(FileTime::TICKS_PER_SEC)) as i64;
        if secs == 0 {
            return Ok(now);
        }
        let command = format!("advance {secs}");
        let answer = self.command(&command).await?;
        self.parse_time(&command, &answer)
    }

    /// The host's count of `app` clients.
    pub async fn count(&mut self, app: AppKind) -> Result<u32, ControlError> {
        let word = APPS
            .iter()
            .find(|&&(_, a)| a == app)
            .map_or("windows", |w| w.0);
        let command = format!("count {word}");
        let answer = self.command(&command).await?;
        answer.trim().parse().map_err(|_| ControlError::Refused {
            addr: self.addr,
            command,
            answer,
        })
    }
}
