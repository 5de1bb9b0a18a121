//! The client against hostile hosts (issue 11 §3): hosts that bind properly and then stream
//! reply fragments without end (large ones, or empty ones dripped a byte at a time), and hosts
//! that answer with bytes that are not DCE/RPC or with a PDU header announcing more than the
//! client accepts. `activate` fails with its documented status within a bounded wait, `load -d`
//! ends by itself with a non-zero status, and printing to a closed pipe does not panic.
//!
//! Every host listens on port 0 of 127.0.0.1 and gives up after [`LIFE`] (longer than the
//! tests' hang guard, so a client that would wait for the host to give up fails the test
//! instead of passing); every await is bounded by [`bounded`].

use crate::support::common::bounded;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;
use kmsharness::activate::{ActivateConfig, ActivateReport, Outcome, run_with};
use kmsharness::cli::activate::ActivateOpts;
use kmsharness::cli::load::LoadOpts;
use kmsharness::exit::Exit;
use kmsharness::load::{self, LoadConfig, LoadReport};
use kmsharness::net::framing::PduReader;
use kmsharness::proto::host::session::{HostRpcConfig, HostSession};
use kmsharness::proto::verdict::Failure;
use kmsharness::wire::HResult;
use kmsharness::wire::rpc::{Body, Flags, Header, HeaderRepr, PacketType, Pdu, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a hostile host keeps misbehaving on one connection.
const LIFE: Duration = Duration::from_secs(300);

/// What the host does.
#[derive(Debug, Clone, Copy)]
enum Hostile {
    /// Binds, then answers the call with 4000-byte fragments, none of them the last (up to
    /// 10 000 of them, 40 MB).
    Stream,
    /// Binds, then answers the call with empty fragments, none the last, each written a byte
    /// at a time, 5 ms apart: every PDU comes well within any timeout, the reply never.
    Drip,
    /// Answers the bind with an HTTP error.
    Garbage,
    /// Binds, then answers the call with a PDU header announcing 60 000 bytes.
    Oversized,
    /// Binds and refuses the first call; resets the connection (SO_LINGER 0) when a second
    /// call comes on it: a host that closes after each answer, met by a request already on
    /// its way, as py-kms is.
    ResetReused,
}

/// A hostile host on a loopback port.
struct Host {
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn hostile(how: Hostile) -> Host {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        // Bounded by the test: the runtime ends with it, and `Drop` aborts it before.
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(LIFE, serve(s, how)).await;
            });
        }
    });
    Host { addr, accept }
}

/// A response fragment of call `call_id` without the last-fragment flag.
fn fragment(call_id: u32, first: bool, stub: &[u8]) -> Vec<u8> {
    let pdu = Pdu {
        header: HeaderRepr {
            flags: if first { Flags::FIRST_FRAG } else { Flags(0) },
            ..HeaderRepr::new(PacketType::Response, call_id)
        },
        body: Body::Response(Response {
            alloc_hint: 0,
            context_id: 0,
            cancel_count: 0,
            reserved: 0,
            stub,
        }),
        auth: &[],
    };
    let mut out = Vec::new();
    pdu.emit(&mut out);
    out
}

/// A valid PDU header whose fragment length says 60 000 bytes (over the client's limit).
fn oversized_header(call_id: u32) -> Vec<u8> {
    let mut h = fragment(call_id, true, &[]);
    h.truncate(16);
    h[8..10].copy_from_slice(&60_000u16.to_le_bytes());
    h
}

async fn serve(mut s: TcpStream, how: Hostile) {
    let mut reader = PduReader::new();
    let mut session = HostSession::new(HostRpcConfig::default(), 0x1234);
    // Whether a call on this connection was answered (`ResetReused`).
    let mut answered = false;
    loop {
        let Ok(pdu) = reader.next(&mut s).await else {
            return;
        };
        let pdu = pdu.to_vec();
        let Ok(header) = Header::new_checked(&pdu[..]) else {
            return;
        };
        let call_id = header.call_id();
        if let Hostile::Garbage = how {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            // Holds the connection open until the client gives up.
            let _ = s.read(&mut [0; 64]).await;
            return;
        }
        if header.packet_type() != PacketType::Request || matches!(how, Hostile::ResetReused) {
            if matches!(how, Hostile::ResetReused) && header.packet_type() == PacketType::Request {
                if answered {
                    let _ = s.set_zero_linger();
                    return;
                }
                answered = true;
            }
            let mut out = Vec::new();
            session.handle(
                &pdu,
                &mut |_: &[u8], _: &mut Vec<u8>| Err(HResult(0x8007_000D)),
                &mut out,
            );
            if s.write_all(&out).await.is_err() {
                return;
            }
            continue;
        }
        match how {
            Hostile::Stream => {
                let stub = [0x41; 4000];
                for i in 0..10_000 {
                    if s.write_all(&fragment(call_id, i == 0, &stub))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Hostile::Drip => {
                for i in 0..100_000 {
                    for b in fragment(call_id, i == 0, &[]) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        if s.write_all(&[b]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Hostile::Oversized => {
                let _ = s.write_all(&oversized_header(call_id)).await;
            }
            Hostile::Garbage | Hostile::ResetReused => {}
        }
        // Holds the connection open until the client gives up.
        let _ = s.read(&mut [0; 64]).await;
        return;
    }
}

#[derive(Parser)]
struct ActivateCli {
    #[command(flatten)]
    opts: ActivateOpts,
}

#[derive(Parser)]
struct LoadCli {
    #[command(flatten)]
    opts: LoadOpts,
}

fn activate_config(addr: SocketAddr, args: &[&str]) -> ActivateConfig {
    let target = addr.to_string();
    let argv = ["activate", &target]
        .into_iter()
        .chain(args.iter().copied());
    ActivateCli::try_parse_from(argv)
        .unwrap()
        .opts
        .config()
        .unwrap()
}

async fn activate(how: Hostile, args: &[&str]) -> ActivateReport {
    let host = hostile(how).await;
    let config = activate_config(host.addr, args);
    bounded(
        &format!("activate against {how:?}"),
        run_with(&config, &[host.addr]),
    )
    .await
}

fn load_cli(args: &[&str]) -> Result<LoadConfig, kmsharness::cli::Error> {
    let argv = std::iter::once("load").chain(args.iter().copied());
    LoadCli::try_parse_from(argv).unwrap().opts.config()
}

async fn load_against(how: Hostile, args: &[&str]) -> LoadReport {
    let host = hostile(how).await;
    let mut config = load_cli(args).unwrap();
    config.target = Some(vec![host.addr]);
    bounded(
        &format!("load against {how:?}"),
        load::run(&config, std::future::pending::<()>()),
    )
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// activate

#[tokio::test]
async fn endless_large_fragments_are_an_rpc_failure() {
    let report = activate(Hostile::Stream, &["--read-timeout", "60"]).await;
    let e = &report.exchanges[0];
    assert_eq!(e.outcome, Outcome::Rpc, "{e:#?}");
    assert!(e.error.as_deref().unwrap_or("").contains("limit"), "{e:#?}");
    assert_eq!(report.exit, Exit::Rpc);
}

#[tokio::test]
async fn dripped_fragments_time_out_as_a_whole() {
    let report = activate(Hostile::Drip, &["--read-timeout", "1"]).await;
    let e = &report.exchanges[0];
    assert_eq!(e.outcome, Outcome::Connection, "{e:#?}");
    assert!(
        e.error.as_deref().unwrap_or("").contains("timed out"),
        "{e:#?}"
    );
    // The call's whole reply had one second; the drip sends a fragment every 120 ms or so.
    assert!(e.call_micros.unwrap() >= 1_000_000, "{e:#?}");
    assert_eq!(report.exit, Exit::Connection);
}

#[tokio::test]
async fn a_reply_that_is_not_rpc_is_an_rpc_failure() {
    let report = activate(Hostile::Garbage, &["--read-timeout", "60"]).await;
    let e = &report.exchanges[0];
    assert_eq!(e.outcome, Outcome::Rpc, "{e:#?}");
    assert!(
        e.error
            .as_deref()
            .unwrap_or("")
            .contains("not a DCE/RPC PDU"),
        "{e:#?}"
    );
    assert_eq!(report.exit, Exit::Rpc);
    assert_eq!(report.exit_status, 4);
}

#[tokio::test]
async fn an_oversized_pdu_is_an_rpc_failure() {
    let report = activate(Hostile::Oversized, &["--read-timeout", "60"]).await;
    let e = &report.exchanges[0];
    assert_eq!(e.outcome, Outcome::Rpc, "{e:#?}");
    assert!(
        e.error.as_deref().unwrap_or("").contains("exceeds"),
        "{e:#?}"
    );
    assert_eq!(report.exit_status, 4);
}

// ---------------------------------------------------------------------------------------------
// load

#[tokio::test]
async fn load_against_endless_fragments_ends_and_fails() {
    let report = load_against(
        Hostile::Stream,
        &["-d", "2s", "-c", "1", "--read-timeout", "60"],
    )
    .await;
    assert_eq!(report.outcome.ok, 0);
    assert!(report.outcome.sent > 0);
    assert!(
        report.outcome.errors.contains_key(&Failure::Protocol),
        "{:?}",
        report.outcome.errors
    );
    assert_eq!(kmsharness::cli::load::exit_of(&report), Exit::Rpc);
}

/// A reused connection the host has reset is opened again and the call asked again, as when
/// it was closed: every call gets the host's answer (a refusal here), none counts as a reset.
#[tokio::test]
async fn load_reconnects_when_a_reused_connection_is_reset() {
    let report = load_against(
        Hostile::ResetReused,
        &[
            "--mode",
            "reuse",
            "-c",
            "1",
            "--requests",
            "6",
            "--warmup",
            "0s",
        ],
    )
    .await;
    assert_eq!(report.outcome.sent, 6, "{:?}", report.outcome.errors);
    assert!(
        !report.outcome.errors.contains_key(&Failure::Reset),
        "{:?}",
        report.outcome.errors
    );
    assert_eq!(
        report
            .outcome
            .errors
            .get(&Failure::HResult(HResult(0x8007_000D))),
        Some(&6),
        "{:?}",
        report.outcome.errors
    );
    assert!(
        report.outcome.reconnects >= 5,
        "{}",
        report.outcome.reconnects
    );
}

#[tokio::test]
async fn load_against_a_drip_keeps_its_duration() {
    // The read timeout is far beyond the run: the run still ends, one read timeout after
    // its deadline at the latest, and fails.
    let report = load_against(
        Hostile::Drip,
        &[
            "-d",
            "2s",
            "-c",
            "2",
            "--warmup",
            "0s",
            "--read-timeout",
            "3",
        ],
    )
    .await;
    assert_eq!(report.outcome.ok, 0);
    assert!(report.outcome.sent > 0);
    assert!(
        report.outcome.errors.contains_key(&Failure::Timeout),
        "{:?}",
        report.outcome.errors
    );
    assert_eq!(kmsharness::cli::load::exit_of(&report), Exit::Connection);
}

#[tokio::test]
async fn load_that_measured_nothing_fails() {
    // Every activation starts in the 1 s warm-up and ends, timed out, after the measured
    // second: nothing was measured, nothing validated, and the run does not pass.
    let report = load_against(
        Hostile::Drip,
        &[
            "-d",
            "1s",
            "-c",
            "1",
            "--warmup",
            "1s",
            "--read-timeout",
            "3",
        ],
    )
    .await;
    assert_eq!(report.outcome.ok, 0);
    assert_eq!(kmsharness::cli::load::exit_of(&report), Exit::ChecksFailed);
}

#[test]
fn load_refuses_a_fleet_beyond_memory() {
    let e = load_cli(&["--clients", "1000000000000"]).unwrap_err();
    assert_eq!(e.exit(), Exit::Usage);
    let msg = e.to_string();
    assert!(
        msg.contains("--clients") && msg.contains("at most"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    assert!(load_cli(&["--clients", "1000000"]).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Closed pipes

/// Runs the binary with `args`, stdout (or stderr) a pipe whose reader is already closed;
/// returns the exit code and what the other stream said.
fn closed(args: &[&str], close_stderr: bool) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kmsharness"));
    cmd.args(args).stdin(Stdio::null());
    if close_stderr {
        cmd.stderr(writer).stdout(Stdio::piped());
    } else {
        cmd.stdout(writer).stderr(Stdio::piped());
    }
    let out = cmd.output().unwrap();
    let other = if close_stderr { out.stdout } else { out.stderr };
    (
        out.status.code(),
        String::from_utf8_lossy(&other).into_owned(),
    )
}

#[test]
fn listing_to_a_closed_pipe_does_not_panic() {
    for args in [&["conform", "--list"][..], &["activate", "--list"]] {
        let (code, stderr) = closed(args, false);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(code, Some(Exit::LocalIo as i32), "{args:?}: {stderr}");
    }
}

#[test]
fn errors_to_a_closed_stderr_do_not_panic() {
    // The error line cannot be written; the status still says what happened.
    let (code, _) = closed(&["inspect", "/nonexistent/kmsharness-capture.pcap"], true);
    assert_ne!(code, Some(101));
    assert!(code.is_some_and(|c| c != 0));
}
