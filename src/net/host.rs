//! The host driver: TCP listeners, one task per connection driving a [`HostSession`], an idle
//! timeout, a deadline on each PDU read and each reply written, a connection limit and
//! graceful shutdown. The KMS logic is behind [`KmsService`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::capture::Direction;
use crate::capture::record::{self, Flow, Recorder};
use crate::proto::faults::Fault;
use crate::proto::host::session::{HostRpcConfig, HostSession};
use crate::wire::HResult;
use crate::wire::rpc::{FaultStatus, PacketType};

use super::framing::{Deadlines, PduReader, ReadError};

/// The KMS side of a host: a request's bytes in, a response's bytes out (or a refusal).
pub trait KmsService: Send + Sync + 'static {
    /// Handles one KMS request from `peer`, appending the response to `out`.
    fn activate(&self, peer: SocketAddr, request: &[u8], out: &mut Vec<u8>) -> Result<(), HResult>;

    /// A call from `peer` was answered with an RPC fault before it reached [`Self::activate`]
    /// (a stub that does not unmarshal, an unknown context or operation), so a log still has
    /// its line.
    fn faulted(&self, peer: SocketAddr, status: FaultStatus) {
        let _ = (peer, status);
    }
}

/// How the host listens and behaves on the wire.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// RPC behaviour and faults.
    pub rpc: HostRpcConfig,
    /// A connection idle this long is closed.
    pub idle_timeout: Duration,
    /// A PDU must arrive whole within this of its first byte, and each reply must be taken
    /// by the client within this; a slower peer is disconnected (a drip sender is never
    /// idle, a client that never reads never blocks a read).
    pub pdu_timeout: Duration,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Delay before each activation reply, when the `delay` fault is on.
    pub delay: Duration,
    /// Record every connection's traffic here (`serve --record`).
    pub record: Option<Arc<Recorder>>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1688))],
            rpc: HostRpcConfig::default(),
            idle_timeout: Duration::from_secs(30),
            pdu_timeout: DEFAULT_PDU_TIMEOUT,
            max_connections: 10_000,
            delay: Duration::from_millis(200),
            record: None,
        }
    }
}

/// Calls a client may send ahead of their replies, one after another, before the host stops
/// reading it: DCE/RPC lets a client have several calls outstanding, and this is the
/// number of calls a host reassembles at once (`proto::host::session`); a KMS client sends one
/// call and waits for its reply. A peer that keeps sending without waiting (one that never
/// reads, most likely) would otherwise have the host answer megabytes of requests into socket
/// buffers that nobody drains, at the expense of every other client. Past this the host
/// answers no further call: it shuts its side and closes the connection after the PDU timeout.
pub const MAX_PIPELINED_CALLS: u32 = 16;

/// Default of [`ListenConfig::pdu_timeout`]: a KMS PDU is a few hundred bytes, so a peer that
/// needs seconds for one is too slow or hostile.
pub const DEFAULT_PDU_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters a running host keeps.
#[derive(Debug, Default)]
pub struct HostStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused at the limit.
    pub refused: AtomicU64,
    /// PDUs handled.
    pub pdus: AtomicU64,
    /// Connections closed for bad input.
    pub bad_input: AtomicU64,
    /// Connections closed for a PDU or a reply that missed its deadline.
    pub too_slow: AtomicU64,
    /// Connections closed for sending more than [`MAX_PIPELINED_CALLS`] calls ahead of their
    /// replies.
    pub pipelined: AtomicU64,
}

/// Bound listeners, ready to serve.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<TcpListener>,
    config: ListenConfig,
    stats: Arc<HostStats>,
}

/// The first association group of a process: random, as Windows' are (the genuine Windows 11
/// capture's host answered 0x5b8ec84a), so two runs do not share a tell; each connection then
/// gets the next. Never 0, which in a bind asks for a new group.
fn first_assoc_group() -> u32 {
    rand::random::<u32>().max(1)
}

/// Connections the kernel holds for `accept`, as `listen(2)`'s backlog: the kernel caps it at
/// `net.core.somaxconn` (4096 by default since Linux 5.4). Tokio's `bind` asks for 1024, and a
/// crowd of hostile peers reconnecting at once filled that: a legitimate client's SYN was then
/// dropped and retried after 1 s and 3 s, its activation taking seconds.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr`, with the options `TcpListener::bind` sets (`SO_REUSEADDR`)
/// and a backlog of [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Server {
    /// Binds every configured address.
    pub async fn bind(config: ListenConfig) -> std::io::Result<Server> {
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let l = listen(*addr).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
            })?;
            listeners.push(l);
        }
        Ok(Server {
            listeners,
            config,
            stats: Arc::new(HostStats::default()),
        })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The counters.
    pub fn stats(&self) -> Arc<HostStats> {
        self.stats.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting and gives open connections
    /// a moment to finish.
    pub async fn run<S: KmsService>(self, service: Arc<S>, shutdown: impl Future<Output = ()>) {
        let limit = Arc::new(Semaphore::new(self.config.max_connections));
        let assoc = Arc::new(AtomicU32::new(first_assoc_group()));
        let config = Arc::new(self.config);
        let mut accepts = JoinSet::new();
        for listener in self.listeners {
            let (service, limit, assoc, config, stats) = (
                service.clone(),
                limit.clone(),
                assoc.clone(),
                config.clone(),
                self.stats.clone(),
            );
            accepts.spawn(accept_loop(listener, service, limit, assoc, config, stats));
        }
        shutdown.await;
        accepts.abort_all();
        while accepts.join_next().await.is_some() {}
    }
}

async fn accept_loop<S: KmsService>(
    listener: TcpListener,
    service: Arc<S>,
    limit: Arc<Semaphore>,
    assoc: Arc<AtomicU32>,
    config: Arc<ListenConfig>,
    stats: Arc<HostStats>,
) {
    let port = listener.local_addr().map_or(0, |a| a.port());
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let Ok((stream, peer)) = accepted else {
            // Out of descriptors or similar: back off briefly instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let rpc = HostRpcConfig { port, ..config.rpc };
        let group = match assoc.fetch_add(1, Ordering::Relaxed) {
            0 => assoc.fetch_add(1, Ordering::Relaxed),
            g => g,
        };
        let (service, config, stats) = (service.clone(), config.clone(), stats.clone());
        conns.spawn(async move {
            serve_connection(
                stream,
                peer,
                HostSession::new(rpc, group),
                &*service,
                &config,
                &stats,
            )
            .await;
            drop(permit);
        });
    }
}

async fn serve_connection<S: KmsService>(
    mut stream: TcpStream,
    peer: SocketAddr,
    mut session: HostSession,
    service: &S,
    config: &ListenConfig,
    stats: &HostStats,
) {
    let mut reader = PduReader::new();
    let mut out = Vec::with_capacity(1024);
    let delay = config.rpc.faults.has(Fault::Delay);
    let mut flow = match (&config.record, stream.local_addr()) {
        (Some(r), Ok(local)) => {
            let mut f = Flow::start(r.clone(), peer, local);
            // A connection cut off by shutdown is closed by the host.
            f.close_on_drop(Direction::ToClient);
            Some(f)
        }
        _ => None,
    };
    // Who closes first, for the recording: the host, unless the client did.
    let mut closer = Direction::ToClient;
    let deadlines = Deadlines {
        idle: config.idle_timeout,
        pdu: config.pdu_timeout,
    };
    // Calls in a row that arrived before the reply to the one before.
    let mut pipelined = 0u32;
    loop {
        // Before a bind, only a bind-sized PDU is buffered (the session's policy).
        reader.set_max(session.max_pdu());
        let pdu = match reader.next_within_deadlines(&mut stream, deadlines).await {
            Err(ReadError::Closed) => {
                closer = Direction::ToServer;
                break;
            }
            Err(ReadError::Idle(_)) => break,
            Err(ReadError::Slow(_)) => {
                stats.too_slow.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Err(ReadError::TooLarge { .. }) if config.rpc.faults.has(Fault::StallOnBadLength) => {
                stall().await
            }
            Err(ReadError::NotRpc(e))
                if e.field() == "frag_length" && config.rpc.faults.has(Fault::StallOnBadLength) =>
            {
                stall().await
            }
            Err(_) => {
                stats.bad_input.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Ok(pdu) => pdu,
        };
        if let Some(f) = &mut flow {
            f.data(Direction::ToServer, pdu, record::now());
        }
        stats.pdus.fetch_add(1, Ordering::Relaxed);
        out.clear();
        let step = session.handle(
            pdu,
            &mut |req: &[u8], out: &mut Vec<u8>| service.activate(peer, req, out),
            &mut out,
        );
        if let Some(status) = step.fault {
            service.faulted(peer, status);
        }
        if delay && step.reply == Some(PacketType::Response) {
            tokio::time::sleep(config.delay).await;
        }
        if let Some(f) = &mut flow {
            f.data(Direction::ToClient, &out, record::now());
        }
        // Whether the next call is already here (in the buffer, or readable at once) before
        // this reply is written: then it was sent ahead of the reply, for certain. Looked at
        // after the write, a waiting client that got the reply and answered at once would look
        // the same, and a busy host would cut fast clients that never pipeline. For a waiting
        // client the non-blocking read costs no system call: its call came in a read that did
        // not fill the buffer, after which tokio knows the socket is empty until the reactor
        // says otherwise.
        let answered = matches!(step.reply, Some(PacketType::Response | PacketType::Fault));
        let ahead =
            answered && (reader.holds_whole_pdu() || reader.fill_now(|b| stream.try_read_buf(b)));
        if !out.is_empty() {
            match write_within(&mut stream, &out, config.pdu_timeout).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    // The client does not take its replies: drop it rather than wait forever.
                    stats.too_slow.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        if answered {
            if ahead {
                pipelined += 1;
            } else {
                pipelined = 0;
            }
            if pipelined > MAX_PIPELINED_CALLS {
                // No further call is read. The host's side is shut at once, so a client that
                // sent its calls and reads its replies (a fuzzer, a batch tool) sees the end
                // after the last; the socket is held for the PDU timeout before it is closed,
                // so one that never reads does not come straight back for another round.
                stats.pipelined.fetch_add(1, Ordering::Relaxed);
                let _ = tokio::time::timeout(config.pdu_timeout, stream.shutdown()).await;
                tokio::time::sleep(config.pdu_timeout).await;
                break;
            }
        }
        if step.close {
            let _ = tokio::time::timeout(config.pdu_timeout, stream.shutdown()).await;
            break;
        }
    }
    if let Some(f) = &mut flow {
        f.close(closer, record::now());
    }
}

/// Writes `bytes` whole within `limit`. A reply of a few hundred bytes almost always fits the
/// socket's buffer at once: that write is made without a timer, and only the rest of a reply
/// the peer is not taking waits under one.
async fn write_within(
    stream: &mut TcpStream,
    bytes: &[u8],
    limit: Duration,
) -> Result<std::io::Result<()>, tokio::time::error::Elapsed> {
    let sent = match stream.try_write(bytes) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Ok(Err(e)),
    };
    match bytes.get(sent..) {
        None | Some([]) => Ok(Ok(())),
        Some(rest) => tokio::time::timeout(limit, stream.write_all(rest)).await,
    }
}

/// The `stall-on-bad-length` planted bug: the connection is held open and never read again.
async fn stall() -> &'static [u8] {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected loopback pair: the host's end, and a peer that is never read from here.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (host, _) = listener.accept().await.unwrap();
        (host, peer)
    }

    #[tokio::test]
    async fn a_reply_that_fits_is_written_whole_and_one_nobody_takes_times_out() {
        let (mut host, mut peer) = pair().await;
        let reply = [7u8; 300];
        let r = write_within(&mut host, &reply, Duration::from_secs(5)).await;
        assert!(matches!(r, Ok(Ok(()))), "{r:?}");
        let mut got = [0u8; 300];
        tokio::io::AsyncReadExt::read_exact(&mut peer, &mut got)
            .await
            .unwrap();
        assert_eq!(got, reply);
        // Far more than the two sockets' buffers hold, and the peer reads none of it: the
        // first write takes what fits, the rest waits under the limit and gives up.
        let flood = vec![1u8; 64 << 20];
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            write_within(&mut host, &flood, Duration::from_millis(200)),
        )
        .await
        .expect("the write's own limit, not this test's, ends it");
        assert!(r.is_err(), "{r:?}");
    }

    #[tokio::test]
    async fn a_write_to_a_closed_peer_fails_as_an_error_not_a_timeout() {
        let (mut host, peer) = pair().await;
        drop(peer);
        // The first write after the peer's close may still be taken; the reset follows.
        let mut last = Ok(Ok(()));
        for _ in 0..100 {
            last = write_within(&mut host, &[0u8; 300], Duration::from_secs(5)).await;
            if !matches!(last, Ok(Ok(()))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(matches!(last, Ok(Err(_))), "{last:?}");
    }
}
