//! The client driver: one TCP connection to a KMS host, driving a [`ClientSession`] with
//! timeouts on every step.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::capture::Direction;
use crate::capture::record::{self, Flow, Recorder};
use crate::proto::check::{CheckId, Checks};
use crate::proto::client::session::{
    BindOutcome, CallOutcome, ClientRpcOptions, ClientSession, RpcError,
};
use crate::proto::verdict::Failure;

use super::framing::{PduReader, ReadError};
use super::timer::LazyTimer;

/// Timeouts and RPC options of a client connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// How the client binds.
    pub rpc: ClientRpcOptions,
    /// Longest wait for the TCP handshake.
    pub connect_timeout: Duration,
    /// Longest wait for each whole reply, however many fragments (and bytes) it comes in: a
    /// deadline set when the request is sent, not a limit per read.
    pub read_timeout: Duration,
    /// The local address connections leave from (`load --source`), or the system's choice.
    pub source: Option<IpAddr>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            rpc: ClientRpcOptions::default(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            source: None,
        }
    }
}

/// The step an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// TCP connect.
    Connect,
    /// RPC bind (and alter_context).
    Bind,
    /// The activation call.
    Call,
}

impl core::fmt::Display for Phase {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::Bind => "bind",
            Phase::Call => "activation call",
        })
    }
}

/// Why an exchange failed below the KMS layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The host did not answer in time.
    #[error("{addr}: {phase} timed out after {after:?}")]
    Timeout {
        /// The host.
        addr: SocketAddr,
        /// Which step.
        phase: Phase,
        /// The limit.
        after: Duration,
    },
    /// A socket error (refused, reset, ...).
    #[error("{addr}: {phase}: {source}")]
    Io {
        /// The host.
        addr: SocketAddr,
        /// Which step.
        phase: Phase,
        /// The error.
        source: std::io::Error,
    },
    /// The connection ended or carried something that is not RPC.
    #[error("{addr}: {phase}: {source}")]
    Read {
        /// The host.
        addr: SocketAddr,
        /// Which step.
        phase: Phase,
        /// The error.
        source: ReadError,
    },
    /// The RPC exchange went wrong.
    #[error("{addr}: {phase}: {source}")]
    Rpc {
        /// The host.
        addr: SocketAddr,
        /// Which step.
        phase: Phase,
        /// The error.
        source: RpcError,
    },
    /// Discovery reached no host to connect to: no SRV target's name resolved.
    #[error("{0}")]
    NoHost(crate::net::discovery::ResolveError),
}

impl NetError {
    /// The step that failed.
    pub fn phase(&self) -> Phase {
        match self {
            NetError::Timeout { phase, .. }
            | NetError::Io { phase, .. }
            | NetError::Read { phase, .. }
            | NetError::Rpc { phase, .. } => *phase,
            NetError::NoHost(_) => Phase::Connect,
        }
    }

    /// Whether the host had hung up the connection before this call: the socket closed, or
    /// reset under the request or its reply (a host that closes after each response, as
    /// py-kms does, shows as either, depending on whether our request reached its socket
    /// first). Windows and vlmcs then open a new connection and ask again.
    pub fn host_hung_up(&self) -> bool {
        fn reset(e: &std::io::Error) -> bool {
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            )
        }
        match self {
            NetError::Read {
                source: ReadError::Closed,
                ..
            } => true,
            NetError::Read {
                source: ReadError::Io(e),
                ..
            } => reset(e),
            NetError::Io {
                phase: Phase::Call,
                source,
                ..
            } => reset(source),
            _ => false,
        }
    }

    /// The failure class it counts as: the connection's own failures (refused, reset,
    /// closed, timed out, a socket error) apart from replies that are not DCE/RPC, too large,
    /// or not the PDU expected ([`Failure::Protocol`]).
    pub fn failure(&self) -> Failure {
        fn io(e: &std::io::Error) -> Failure {
            match e.kind() {
                std::io::ErrorKind::ConnectionRefused => Failure::Refused,
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                    Failure::Reset
                }
                _ => Failure::Io,
            }
        }
        match self {
            NetError::Timeout { .. } => Failure::Timeout,
            NetError::Io { source, .. } => io(source),
            NetError::Read { source, .. } => match source {
                ReadError::Closed | ReadError::Truncated { .. } => Failure::Closed,
                ReadError::Idle(_) | ReadError::Slow(_) => Failure::Timeout,
                ReadError::Io(e) => io(e),
                ReadError::NotRpc(_) | ReadError::TooLarge { .. } => Failure::Protocol,
            },
            NetError::Rpc { .. } => Failure::Protocol,
            NetError::NoHost(_) => Failure::Io,
        }
    }
}

/// A bound connection.
#[derive(Debug)]
pub struct Connection {
    addr: SocketAddr,
    stream: TcpStream,
    session: ClientSession,
    reader: PduReader,
    out: Vec<u8>,
    config: ClientConfig,
    /// Where this connection's traffic is recorded, if it is (`--record`).
    flow: Option<Flow>,
    /// The read timeout, one timer for the connection's life (a new timeout per read would
    /// insert into and remove from the runtime's timer wheel on every call).
    timer: LazyTimer,
}

/// How the bind went, over both bind and alter_context.
#[derive(Debug, Clone)]
pub struct BindReport {
    /// The bind's outcome.
    pub bind: BindOutcome,
    /// The alter_context's outcome, when one was needed.
    pub alter_context: Option<BindOutcome>,
    /// Time from sending the bind to the last answer.
    pub elapsed: Duration,
}

impl BindReport {
    /// Accepted syntaxes in order, as vlmcs prints them.
    pub fn accepted(&self) -> Vec<&'static str> {
        let mut v = self.bind.accepted.clone();
        if let Some(a) = &self.alter_context {
            v.extend(a.accepted.iter().copied());
        }
        v
    }
}

/// A TCP connection to `addr`, from `source` when given. A port bound before `connect` would
/// be reserved for every destination, so the source's ports would run out as with one address
/// pair; on Linux the port is left to `connect` (`IP_BIND_ADDRESS_NO_PORT`), which needs only
/// the four-tuple to be unique: each source address then adds a whole ephemeral port range.
async fn open(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr).await;
    };
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    #[cfg(target_os = "linux")]
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::IpBindAddressNoPort,
        &true,
    )?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

impl Connection {
    /// Connects to `addr`; `first_call_id` continues vlmcs-style numbering across connections.
    pub async fn connect(
        addr: SocketAddr,
        config: ClientConfig,
        first_call_id: u32,
    ) -> Result<Connection, NetError> {
        let stream = tokio::time::timeout(config.connect_timeout, open(addr, config.source))
            .await
            .map_err(|_| NetError::Timeout {
                addr,
                phase: Phase::Connect,
                after: config.connect_timeout,
            })?
            .map_err(|source| NetError::Io {
                addr,
                phase: Phase::Connect,
                source,
            })?;
        // Requests are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            addr,
            stream,
            session: ClientSession::with_call_id(config.rpc, first_call_id),
            reader: PduReader::new(),
            out: Vec::with_capacity(512),
            timer: LazyTimer::new(),
            config,
            flow: None,
        })
    }

    /// Records this connection from now on: a handshake now, then every PDU sent and received,
    /// then the close.
    pub fn record(&mut self, recorder: Arc<Recorder>) {
        if let (Ok(local), Ok(peer)) = (self.stream.local_addr(), self.stream.peer_addr()) {
            let mut flow = Flow::start(recorder, local, peer);
            // The client closes first, unless the host's close was recorded before.
            flow.close_on_drop(Direction::ToServer);
            self.flow = Some(flow);
        }
    }

    /// Pauses (`false`) or resumes (`true`) recording: load samples activations on a reused
    /// connection this way.
    pub fn set_recording(&mut self, on: bool) {
        if let Some(f) = &mut self.flow {
            f.set_paused(!on);
        }
    }

    /// The host's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next call id.
    pub fn call_id(&self) -> u32 {
        self.session.call_id()
    }

    /// The KMS response body of the last successful call.
    pub fn response_body(&self) -> &[u8] {
        self.session.response_body()
    }

    /// The RPC checks made on the last call's reply.
    pub fn reply_checks(&self) -> &Checks {
        self.session.reply_checks()
    }

    /// Sends (and records) what `out` holds, then empties it.
    async fn send(&mut self, phase: Phase) -> Result<(), NetError> {
        let addr = self.addr;
        note(&mut self.flow, &self.out);
        self.stream
            .write_all(&self.out)
            .await
            .map_err(|source| NetError::Io {
                addr,
                phase,
                source,
            })?;
        self.out.clear();
        Ok(())
    }

    /// Sends the bind or alter_context in `out` and hands its answer to the session, straight
    /// from the reader's buffer (a separate field from the session: no copy).
    async fn bind_step(&mut self) -> Result<Result<BindOutcome, RpcError>, NetError> {
        self.send(Phase::Bind).await?;
        let deadline = Deadline::after(self.config.read_timeout);
        let pdu = read_pdu(
            &mut self.reader,
            &mut self.stream,
            &mut self.flow,
            &mut self.timer,
            self.addr,
            Phase::Bind,
            deadline,
        )
        .await?;
        Ok(self.session.handle_bind_reply(pdu))
    }

    /// Binds, and sends an alter_context for NDR32 when the bind did not grant it.
    pub async fn bind(&mut self) -> Result<BindReport, NetError> {
        let start = Instant::now();
        let addr = self.addr;
        let rpc = |source| NetError::Rpc {
            addr,
            phase: Phase::Bind,
            source,
        };
        self.session.bind(&mut self.out);
        let bind = self.bind_step().await?.map_err(rpc)?;
        let alter_context = if bind.needs_alter_context {
            self.session.alter_context(&mut self.out);
            Some(self.bind_step().await?.map_err(rpc)?)
        } else {
            None
        };
        Ok(BindReport {
            bind,
            alter_context,
            elapsed: start.elapsed(),
        })
    }

    /// Sends one KMS request and waits for the whole reply: every fragment of it arrives
    /// within one `read_timeout` of sending, or the call times out (a host streaming fragments
    /// cannot hold it longer), and the session caps the reply's size.
    pub async fn call(&mut self, kms_request: &[u8]) -> Result<CallOutcome, NetError> {
        let addr = self.addr;
        self.session.request(kms_request, &mut self.out);
        self.send(Phase::Call).await?;
        let deadline = Deadline::after(self.config.read_timeout);
        loop {
            // The reader's buffer and the session are separate fields: no copy needed.
            let pdu = read_pdu(
                &mut self.reader,
                &mut self.stream,
                &mut self.flow,
                &mut self.timer,
                addr,
                Phase::Call,
                deadline,
            )
            .await?;
            match self.session.handle_reply(pdu) {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => {}
                Err(source) => {
                    return Err(NetError::Rpc {
                        addr,
                        phase: Phase::Call,
                        source,
                    });
                }
            }
        }
    }
}

/// Records bytes about to be sent, when the connection is recorded.
fn note(flow: &mut Option<Flow>, sent: &[u8]) {
    if let Some(f) = flow {
        f.data(Direction::ToServer, sent, record::now());
    }
}

/// When a whole reply must have arrived, and the limit it came from (for the error).
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    after: Duration,
}

impl Deadline {
    fn after(after: Duration) -> Deadline {
        Deadline {
            at: tokio::time::Instant::now() + after,
            after,
        }
    }
}

async fn read_pdu<'r>(
    reader: &'r mut PduReader,
    stream: &mut TcpStream,
    flow: &mut Option<Flow>,
    timer: &mut LazyTimer,
    addr: SocketAddr,
    phase: Phase,
    deadline: Deadline,
) -> Result<&'r [u8], NetError> {
    let after = deadline.after;
    timer.set(deadline.at);
    let read = tokio::select! {
        biased;
        read = reader.next(stream) => read,
        () = timer.expired() => return Err(NetError::Timeout { addr, phase, after }),
    };
    if let Some(f) = flow {
        match &read {
            Ok(pdu) => f.data(Direction::ToClient, pdu, record::now()),
            Err(ReadError::Closed) => f.close(Direction::ToClient, record::now()),
            Err(_) => {}
        }
    }
    read.map_err(|source| NetError::Read {
        addr,
        phase,
        source,
    })
}

/// How long the steps of one activation took.
#[derive(Debug, Clone)]
pub struct CallTimes {
    /// The connection opened for it, if one was.
    pub opened: Option<Opened>,
    /// The call itself.
    pub call: Duration,
}

/// A connection opened and bound for an activation.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The TCP connect.
    pub connect: Duration,
    /// The bind, with its alter_context.
    pub bind: Duration,
    /// The RPC checks the bind_ack (or alter_context_resp) failed, in order: the host's
    /// answer is validated here as the call's reply is (empty, and unallocated, when it
    /// passed).
    pub failed_checks: Vec<CheckId>,
}

/// Connects and binds, recording the connection when `attach` says: the connection, how long
/// the connect and the bind took, and the checks the bind's answers failed.
async fn open_and_bind(
    addr: SocketAddr,
    client: ClientConfig,
    attach: Option<&Arc<Recorder>>,
) -> Result<(Connection, Opened), NetError> {
    let t0 = Instant::now();
    let mut c = Connection::connect(addr, client, 2).await?;
    let t1 = Instant::now();
    if let Some(r) = attach {
        c.record(r.clone());
    }
    let report = c.bind().await?;
    let failed_checks = std::iter::once(&report.bind)
        .chain(&report.alter_context)
        .flat_map(|b| b.checks.failed().map(|c| c.id))
        .collect();
    Ok((
        c,
        Opened {
            connect: t1 - t0,
            bind: t1.elapsed(),
            failed_checks,
        },
    ))
}

/// Sends `kms` over `conn`, opening a connection (connect and bind) first when there is none,
/// and once more over a new one when a reused connection turns out to have been closed or
/// reset by the host (py-kms closes after each response; Windows and vlmcs then simply
/// reconnect).
/// `attach` records newly opened connections; `recording` pauses or resumes a connection's
/// recording for this call.
pub async fn call_reconnecting(
    conn: &mut Option<Connection>,
    addr: SocketAddr,
    client: ClientConfig,
    attach: Option<&Arc<Recorder>>,
    recording: Option<bool>,
    kms: &[u8],
    reconnects: &mut u64,
) -> Result<(CallOutcome, CallTimes), NetError> {
    let mut opened = None;
    for attempt in 1..=2 {
        let reused = conn.is_some();
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                // Boxed: opening is the rare step on a reused connection, and its state, kept
                // inline, would make this future (moved into the caller's select on every
                // call) several times larger.
                let (c, times) = Box::pin(open_and_bind(addr, client, attach)).await?;
                opened = Some(times);
                conn.insert(c)
            }
        };
        if let Some(on) = recording {
            c.set_recording(on);
        }
        let t2 = Instant::now();
        match c.call(kms).await {
            Err(e) if reused && attempt == 1 && e.host_hung_up() => {
                *conn = None;
                *reconnects += 1;
            }
            Err(e) => return Err(e),
            Ok(o) => {
                let call = t2.elapsed();
                return Ok((o, CallTimes { opened, call }));
            }
        }
    }
    unreachable!("the second attempt always returns")
}
