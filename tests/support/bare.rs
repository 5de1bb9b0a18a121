//! A bare loopback replayer, the limit `load` is measured against: a captured KMS request PDU
//! sent and a captured response PDU sent back, byte for byte, with no parsing beyond the PDU
//! length, no crypto, no timers, no histograms — what a client and a host on this machine's
//! loopback could reach if their own work cost nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kmsharness::capture;
use kmsharness::wire::rpc::split_pdu;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// DCE/RPC packet types (C706 12.6.4).
const PTYPE_REQUEST: u8 = 0;
const PTYPE_RESPONSE: u8 = 2;
const PTYPE_BIND: u8 = 11;
const PTYPE_BIND_ACK: u8 = 12;
const PTYPE_ALTER_CONTEXT: u8 = 14;
const PTYPE_ALTER_CONTEXT_RESP: u8 = 15;

/// One captured activation: the client's PDUs before its first request (bind, alter_context)
/// and that request, and the host's answers to them.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub setup: Vec<Arc<[u8]>>,
    pub bind_ack: Arc<[u8]>,
    pub alter_context_resp: Arc<[u8]>,
    pub request: Arc<[u8]>,
    pub response: Arc<[u8]>,
}

/// The first V6 activation of `captures/kmsharness-v6.pcap` (a vlmcs-shaped exchange recorded
/// by `kmsharness activate`; vlmcsd's and py-kms's answers are the same size).
pub fn exchange() -> Exchange {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/captures/kmsharness-v6.pcap");
    let cap = capture::read(&std::fs::read(path).unwrap());
    let conn = &cap.connections[0];
    let first = |data: &[u8], ptype: u8| -> Vec<u8> {
        let mut rest = data;
        while let Ok(Some((pdu, tail))) = split_pdu(rest) {
            if pdu[2] == ptype {
                return pdu.to_vec();
            }
            rest = tail;
        }
        panic!("no PDU of type {ptype} in the capture");
    };
    let mut setup = Vec::new();
    let mut rest = &conn.to_server.data[..];
    while let Ok(Some((pdu, tail))) = split_pdu(rest) {
        if pdu[2] == PTYPE_REQUEST {
            break;
        }
        setup.push(pdu.into());
        rest = tail;
    }
    Exchange {
        setup,
        bind_ack: first(&conn.to_client.data, PTYPE_BIND_ACK).into(),
        alter_context_resp: first(&conn.to_client.data, PTYPE_ALTER_CONTEXT_RESP).into(),
        request: first(&conn.to_server.data, PTYPE_REQUEST).into(),
        response: first(&conn.to_client.data, PTYPE_RESPONSE).into(),
    }
}

/// Answers every bind read on every connection with the captured bind_ack, every alter_context
/// with the captured alter_context_resp and every other whole PDU with the captured response,
/// until the task is dropped.
pub async fn serve(listener: TcpListener, ex: Exchange) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let ex = ex.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 16];
            let mut held = 0;
            loop {
                let Ok(n) = stream.read(&mut buf[held..]).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                held += n;
                let mut at = 0;
                while let Ok(Some((pdu, _))) = split_pdu(&buf[at..held]) {
                    at += pdu.len();
                    let answer = match pdu[2] {
                        PTYPE_BIND => &ex.bind_ack,
                        PTYPE_ALTER_CONTEXT => &ex.alter_context_resp,
                        _ => &ex.response,
                    };
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
                buf.copy_within(at..held, 0);
                held -= at;
            }
        });
    }
}

/// Runs `connections` clients, client `i` made by `client(i, window)`, each counting the
/// exchanges it completes inside the measured window (after `warmup`, for `measure`) and
/// stopping at its end: the count, and the process CPU seconds the window took.
async fn measured<F, C>(
    connections: usize,
    warmup: Duration,
    measure: Duration,
    client: C,
) -> (u64, f64)
where
    C: Fn(usize, Window) -> F,
    F: std::future::Future<Output = u64> + Send + 'static,
{
    let from = Instant::now() + warmup;
    let window = Window {
        from,
        until: from + measure,
    };
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..connections {
        let (run, done) = (client(i, window), done.clone());
        tasks.spawn(async move {
            done.fetch_add(run.await, Ordering::Relaxed);
        });
    }
    tokio::time::sleep_until(window.from.into()).await;
    let cpu_start = kmsharness::load::cpu::process_cpu_secs().unwrap_or(0.0);
    while tasks.join_next().await.is_some() {}
    let cpu = kmsharness::load::cpu::process_cpu_secs().unwrap_or(0.0) - cpu_start;
    (done.load(Ordering::Relaxed), cpu)
}

/// The measured part of a run.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

/// `connections` clients, each binding once (as the capture did) and then sending the request
/// and reading one whole PDU back in turn on one connection, for `warmup` and then `measure`:
/// the exchanges completed in `measure`, and the process CPU seconds it took.
pub async fn drive(
    addr: SocketAddr,
    connections: usize,
    ex: &Exchange,
    warmup: Duration,
    measure: Duration,
) -> (u64, f64) {
    measured(connections, warmup, measure, |_, window| {
        let ex = ex.clone();
        async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            for pdu in &ex.setup {
                stream.write_all(pdu).await.unwrap();
                assert!(
                    read_pdu(&mut stream).await,
                    "the host closed the connection"
                );
            }
            let mut mine = 0u64;
            loop {
                let now = Instant::now();
                if now >= window.until {
                    return mine;
                }
                stream.write_all(&ex.request).await.unwrap();
                assert!(
                    read_pdu(&mut stream).await,
                    "the host closed the connection"
                );
                if now >= window.from {
                    mine += 1;
                }
            }
        }
    })
    .await
}

/// `connections` clients, each opening a connection per exchange as `load --mode fresh` does
/// (connect, the captured setup PDUs, the request, each answered, then close), to the
/// addresses of `addrs` in turn, for `warmup` and then `measure`: the exchanges completed in
/// `measure`, and the process CPU seconds it took.
pub async fn drive_fresh(
    addrs: &[SocketAddr],
    connections: usize,
    ex: &Exchange,
    warmup: Duration,
    measure: Duration,
) -> (u64, f64) {
    measured(connections, warmup, measure, |i, window| {
        let (ex, addr) = (ex.clone(), addrs[i % addrs.len()]);
        async move {
            let mut mine = 0u64;
            loop {
                let now = Instant::now();
                if now >= window.until {
                    return mine;
                }
                // A refused or reset connection (ports or backlog exhausted) is retried.
                let Ok(mut stream) = TcpStream::connect(addr).await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let mut whole = true;
                for pdu in ex.setup.iter().chain([&ex.request]) {
                    if stream.write_all(pdu).await.is_err() || !read_pdu(&mut stream).await {
                        whole = false;
                        break;
                    }
                }
                if whole && now >= window.from {
                    mine += 1;
                }
            }
        }
    })
    .await
}

/// Reads one whole PDU (usually one read: the host answers with one write); false when the
/// host closed the connection first.
pub async fn read_pdu(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let mut held = 0;
    loop {
        let Ok(n) = stream.read(&mut buf[held..]).await else {
            return false;
        };
        if n == 0 {
            return false;
        }
        held += n;
        if let Ok(Some(_)) = split_pdu(&buf[..held]) {
            return true;
        }
    }
}
