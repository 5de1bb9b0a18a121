//! `activate` against `serve` over loopback (issue 3, Proof): every protocol version, transfer
//! syntax, feature negotiation, multiplex flag, address family and connection mode; the count
//! semantics step by step on a virtual clock; every injected fault tripping exactly its check;
//! DNS SRV discovery against a responder started here; the host's robustness against malformed
//! and hostile input; the state file; the connection limit.
//!
//! Every host listens on port 0 of 127.0.0.1 or ::1, and every wait is bounded.

use crate::support::common::{bounded, ipv6_loopback};
use crate::support::dns;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use kmsharness::activate::{
    ActivateConfig, ActivateReport, ExchangeReport, Outcome, run_on, run_with,
};
use kmsharness::catalog::{self, AppKind};
use kmsharness::cli::activate::ActivateOpts;
use kmsharness::host::{HostSetup, RunningHost, start};
use kmsharness::net::discovery::Resolver;
use kmsharness::net::discovery::{Hosts, IpPreference, addresses_from_srv, srv_hosts};
use kmsharness::proto::check::{CheckId, Value};
use kmsharness::proto::client::session::{ClientRpcOptions, ClientSession};
use kmsharness::proto::faults::{Fault, FaultSet};
use kmsharness::wire::ndr::{ActivationRequest, Syntax};
use kmsharness::wire::rpc::{
    AckResult, Body, FaultStatus, HeaderRepr, KMS_INTERFACE, PacketType, Pdu, ProviderReason,
    RejectReason, Request, SyntaxId, split_pdu,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::{JoinSet, LocalSet};

// ---------------------------------------------------------------------------------------------
// Helpers

const DAY: i64 = 86_400;

/// `activate`'s command line, parsed as the binary parses it.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    opts: ActivateOpts,
}

/// The validated config of `activate TARGET ARGS...`.
fn activate_config(target: &str, args: &[&str]) -> ActivateConfig {
    let argv = ["activate", target].into_iter().chain(args.iter().copied());
    Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("activate {target} {args:?}: {e}"))
        .opts
        .config()
        .unwrap_or_else(|e| panic!("activate {target} {args:?}: {e}"))
}

/// Runs `activate ADDR ARGS...`.
async fn activate(addr: SocketAddr, args: &[&str]) -> ActivateReport {
    let config = activate_config(&addr.to_string(), args);
    bounded(
        &format!("activate {addr} {args:?}"),
        run_with(&config, &[addr]),
    )
    .await
}

/// The only exchange of a one-request run.
fn only(report: &ActivateReport) -> &ExchangeReport {
    assert_eq!(report.exchanges.len(), 1, "{report:#?}");
    &report.exchanges[0]
}

/// Every failing check of an exchange, bind checks included, each id once.
fn failing(e: &ExchangeReport) -> BTreeSet<CheckId> {
    let bind = e.bind.iter().flat_map(|b| b.checks.iter());
    bind.chain(e.checks.iter())
        .filter(|c| !c.passed)
        .map(|c| c.id)
        .collect()
}

/// The count each exchange's response carried.
fn counts(report: &ActivateReport) -> Vec<u32> {
    report
        .exchanges
        .iter()
        .map(|e| {
            assert_eq!(e.outcome, Outcome::Ok, "{e:#?}");
            e.response.as_ref().map_or(0, |r| r.count)
        })
        .collect()
}

/// Asserts an exchange was answered with every check passing.
fn assert_ok(e: &ExchangeReport, what: &str) {
    assert_eq!(e.outcome, Outcome::Ok, "{what}: {e:#?}");
    assert_eq!(failing(e), BTreeSet::new(), "{what}: {e:#?}");
    assert!(e.response.is_some(), "{what}: no response");
}

/// Asserts a normal activation against `addr` still succeeds.
async fn assert_still_serves(addr: SocketAddr, after: &str) {
    let report = activate(addr, &[]).await;
    assert_ok(only(&report), &format!("activation after {after}"));
}

/// A host on `listen` (port 0), otherwise the defaults.
fn serve_config(listen: &str) -> HostSetup {
    let mut config = HostSetup::default();
    config.listen.listen = vec![listen.parse().unwrap()];
    config
}

async fn start_host(config: HostSetup) -> RunningHost {
    bounded("start", start(config))
        .await
        .unwrap_or_else(|e| panic!("start: {e}"))
}

/// A fixed RFC 4122 version 4 machine ID, distinct per `n`.
fn cmid(n: u32) -> String {
    format!("{n:08x}-1234-4abc-8def-0123456789ab")
}

// ---------------------------------------------------------------------------------------------
// 1. The matrix

/// One case of the matrix: two requests with these options.
async fn matrix_case(
    addr: SocketAddr,
    version: u8,
    ndr64: bool,
    btfn: bool,
    multiplex: bool,
    new_connection: bool,
) {
    let name = format!(
        "{addr} V{version} NDR64={ndr64} BTFN={btfn} multiplex={multiplex} new-connection={new_connection}"
    );
    let (v, n, b) = (
        format!("-{version}"),
        u8::from(ndr64).to_string(),
        u8::from(btfn).to_string(),
    );
    let mut args = vec![v.as_str(), "-N", &n, "-B", &b, "-n", "2"];
    if !multiplex {
        args.push("-p");
    }
    if new_connection {
        args.push("-T");
    }
    let report = activate(addr, &args).await;
    assert_eq!(report.exchanges.len(), 2, "{name}");
    assert_eq!(report.exit_status, 0, "{name}");
    // As vlmcs prints them: the bind's answers in order, then the alter_context's.
    let accepted: Vec<&str> = match (ndr64, btfn) {
        (true, true) => vec!["NDR64", "BTFN", "NDR32"],
        (true, false) => vec!["NDR64", "NDR32"],
        (false, true) => vec!["NDR32", "BTFN"],
        (false, false) => vec!["NDR32"],
    };
    for (i, e) in report.exchanges.iter().enumerate() {
        let what = format!("{name}, request {}", i + 1);
        assert_ok(e, &what);
        assert!(!e.reconnected, "{what}");
        let r = e.response.as_ref().unwrap();
        assert_eq!(r.version.to_string(), format!("{version}.0"), "{what}");
        assert_eq!(r.cmid, e.request.cmid, "{what}");
        assert_eq!(r.client_time, e.request.client_time, "{what}");
        assert!((1..=10).contains(&r.count), "{what}: count {}", r.count);
        assert_eq!((r.activation_interval, r.renewal_interval), (120, 10080));
        assert_eq!(r.hwid.is_some(), version == 6, "{what}");
        let opened = i == 0 || new_connection;
        match (&e.bind, opened) {
            (Some(bind), true) => {
                assert_eq!(bind.accepted, accepted, "{what}");
                assert_eq!(bind.address, addr, "{what}");
                assert_eq!(bind.alter_context, ndr64, "{what}");
                let mpx = bind
                    .checks
                    .iter()
                    .find(|c| c.id == CheckId::RpcMultiplexFlag)
                    .unwrap_or_else(|| panic!("{what}: no multiplex check"));
                assert_eq!(mpx.expected, Value::Bool(multiplex), "{what}");
            }
            (None, false) => {}
            (bind, _) => panic!("{what}: bind {bind:?} on a connection opened: {opened}"),
        }
        // Windows' habit: the first call of a connection over NDR32, later ones over NDR64.
        let syntax = if ndr64 && !opened {
            Syntax::Ndr64
        } else {
            Syntax::Ndr32
        };
        assert_eq!(e.syntax, Some(syntax), "{what}");
    }
}

/// Every case of the matrix against one host listening on `listen`: 48 `activate` runs.
async fn matrix(listen: &str) {
    let host = start_host(serve_config(listen)).await;
    let addr = host.addr();
    // `run_with`'s future is not `Send` (it holds a thread-local RNG), so the cases run
    // concurrently on this thread while the host runs on the runtime's workers.
    let local = LocalSet::new();
    let mut cases = JoinSet::new();
    let _guard = local.enter();
    for version in [4, 5, 6] {
        for ndr64 in [false, true] {
            for btfn in [false, true] {
                for multiplex in [false, true] {
                    for new_connection in [false, true] {
                        cases.spawn_local(matrix_case(
                            addr,
                            version,
                            ndr64,
                            btfn,
                            multiplex,
                            new_connection,
                        ));
                    }
                }
            }
        }
    }
    let mut ran = 0;
    local
        .run_until(async {
            while let Some(case) = cases.join_next().await {
                case.unwrap();
                ran += 1;
            }
        })
        .await;
    assert_eq!(ran, 48);
    // 48 random machines, all server editions: the table holds 2 × 5.
    assert_eq!(host.service.count(AppKind::Windows), 10);
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_of_versions_syntaxes_features_and_connections_ipv4() {
    matrix("127.0.0.1:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_of_versions_syntaxes_features_and_connections_ipv6() {
    if !ipv6_loopback("network::matrix_of_versions_syntaxes_features_and_connections_ipv6") {
        return;
    }
    matrix("[::1]:0").await;
}

// ---------------------------------------------------------------------------------------------
// 2. Count semantics

/// A host with a virtual clock, Windows and Office 2016 host keys, and no clock-skew rule.
fn counting_host() -> HostSetup {
    let mut config = serve_config("127.0.0.1:0");
    config.virtual_clock = true;
    config.host.max_clock_skew_secs = None;
    config.host.key_groups = vec![
        catalog::default_host_key_group(),
        catalog::host_key_group("Volume License for Office 2016").unwrap(),
    ];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_semantics_step_by_step() {
    let host = start_host(counting_host()).await;
    let addr = host.addr();
    let clock = host.virtual_clock().unwrap().clone();
    let windows = || host.service.count(AppKind::Windows);
    let (a, b, c) = (cmid(1), cmid(2), cmid(3));

    // A new machine counts once, however often it asks.
    assert_eq!(counts(&activate(addr, &["-c", &a]).await), [1]);
    assert_eq!(counts(&activate(addr, &["-c", &a]).await), [1]);
    assert_eq!(windows(), 1);

    // Server editions (N = 5): the table holds 10, and the oldest leaves first.
    let twelve = counts(&activate(addr, &["-n", "12"]).await);
    assert_eq!(twelve, [2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10]);
    assert_eq!(windows(), 10);

    // A client OS (N = 25) raises the table to 50: the count goes on.
    let client = "Windows 10/11 Enterprise";
    assert_eq!(
        counts(&activate(addr, &["-l", client, "-c", &b]).await),
        [11]
    );
    assert_eq!(
        counts(&activate(addr, &["-l", client, "-n", "4"]).await),
        [12, 13, 14, 15]
    );
    // ... and never shrinks back: a server edition now sees the same table.
    assert_eq!(counts(&activate(addr, &["-n", "2"]).await), [16, 17]);
    assert_eq!(windows(), 17);

    // A renewal 20 days later refreshes the entry without counting it again.
    clock.advance(20 * DAY);
    assert_eq!(windows(), 17);
    assert_eq!(
        counts(&activate(addr, &["-l", client, "-c", &b]).await),
        [17]
    );
    // 31 days after the others, only the renewed machine is left.
    clock.advance(11 * DAY);
    assert_eq!(windows(), 1);
    assert_eq!(counts(&activate(addr, &["-c", &c]).await), [2]);
    assert_eq!(windows(), 2);
    // The renewed entry expires 30 days after its renewal.
    clock.advance(19 * DAY + 3600);
    assert_eq!(windows(), 1);
    assert_eq!(counts(&activate(addr, &["-c", &b]).await), [2]);

    // Office is counted apart from Windows.
    let office = counts(&activate(addr, &["-l", "Office Professional Plus 2016", "-n", "3"]).await);
    assert_eq!(office, [1, 2, 3]);
    assert_eq!(host.service.count(AppKind::Office2013), 3);
    assert_eq!(host.service.count(AppKind::Office2010), 0);
    assert_eq!(windows(), 2);

    // A KMS ID no configured key group activates: 0xC004F042, nothing counted.
    let report = activate(addr, &["-l", "Office Professional Plus 2010"]).await;
    let e = only(&report);
    assert_eq!(e.outcome, Outcome::Refused, "{e:#?}");
    let hresult = e.hresult.unwrap().to_string();
    assert!(hresult.starts_with("0xC004F042"), "{hresult}");
    assert_eq!(report.exit_status, 5);
    assert_eq!(host.service.count(AppKind::Office2010), 0);

    // An unsupported protocol version: 0x8007000D.
    let report = activate(addr, &["-K", "6.1"]).await;
    let e = only(&report);
    assert_eq!(e.outcome, Outcome::Refused, "{e:#?}");
    let hresult = e.hresult.unwrap().to_string();
    assert!(hresult.starts_with("0x8007000D"), "{hresult}");
    assert_eq!(windows(), 2);
    host.stop().await.unwrap();
}

/// The client verdict of every exchange: (activated, reason).
fn client_verdicts(report: &ActivateReport) -> Vec<(bool, String)> {
    report
        .exchanges
        .iter()
        .map(|e| (e.client_verdict.activated(), e.client_verdict.to_string()))
        .collect()
}

/// "Client computers that receive a count below the activation threshold aren't activated"
/// (Activate clients running Windows): `activate` says so for each exchange, in text and
/// JSON, while the host's correct answer still exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activate_says_whether_a_windows_client_would_activate() {
    let host = start_host(counting_host()).await;
    let addr = host.addr();
    let client = "Windows 10/11 Enterprise";
    let report = activate(addr, &["-l", client]).await;
    assert_eq!(report.exit_status, 0, "{report:#?}");
    assert_eq!(
        client_verdicts(&report),
        [(
            false,
            "count 1 < 25: a Windows client stays unactivated (0xC004F038)".to_owned()
        )]
    );
    let mut text = Vec::new();
    kmsharness::report::activate::text(&mut text, &report).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(
            "Client verdict: count 1 < 25: a Windows client stays unactivated (0xC004F038)"
        ),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["exchanges"][0]["client_verdict"],
        serde_json::json!({
            "activated": false,
            "reason": "count 1 < 25: a Windows client stays unactivated (0xC004F038)"
        })
    );

    // Servers activate at 5 ("Servers ... will activate if the count is five or greater").
    let servers = client_verdicts(&activate(addr, &["-n", "4"]).await);
    let activated: Vec<bool> = servers.iter().map(|v| v.0).collect();
    assert_eq!(activated, [false, false, false, true], "{servers:?}");
    assert_eq!(servers[3].1, "count 5 >= 5: a Windows client is activated");

    // A client OS activates once the count reaches 25.
    let clients = client_verdicts(&activate(addr, &["-l", client, "-n", "20"]).await);
    let activated: Vec<bool> = clients.iter().map(|v| v.0).collect();
    assert_eq!(activated[..19], [false; 19], "{clients:?}");
    assert!(activated[19], "{clients:?}");

    // A refusal activates nobody, and says with what.
    let report = activate(addr, &["-l", "Office Professional Plus 2010"]).await;
    let v = &only(&report).client_verdict;
    assert!(!v.activated());
    assert!(v.to_string().starts_with("refused with 0xC004F042"), "{v}");
    host.stop().await.unwrap();

    // No answer at all.
    let report = activate(addr, &[]).await;
    let v = &only(&report).client_verdict;
    assert!(!v.activated());
    assert!(v.to_string().starts_with("no usable answer"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_beyond_the_limit_is_refused() {
    let mut config = counting_host();
    config.host.max_clock_skew_secs = Some(4 * 3600);
    let host = start_host(config).await;
    let addr = host.addr();
    let clock = host.virtual_clock().unwrap().clone();
    assert_ok(only(&activate(addr, &[]).await), "in time");
    clock.advance(5 * 3600);
    let report = activate(addr, &[]).await;
    let e = only(&report);
    assert_eq!(e.outcome, Outcome::Refused, "{e:#?}");
    let hresult = e.hresult.unwrap().to_string();
    assert!(hresult.starts_with("0xC004F06C"), "{hresult}");
    clock.advance(-5 * 3600 + 3 * 3600);
    assert_ok(only(&activate(addr, &[]).await), "3 h off");
    assert_eq!(host.service.count(AppKind::Windows), 2);
    host.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 3. Faults

/// Protocol versions on which a fault shows.
fn fault_versions(fault: Fault) -> &'static [&'static str] {
    match fault {
        Fault::WrongMac | Fault::NdrPadding => &["-4"],
        Fault::WrongIvs | Fault::BadPadding | Fault::WrongHash => &["-5", "-6"],
        _ => &["-6"],
    }
}

fn fault_host(fault: Fault) -> HostSetup {
    let mut config = serve_config("127.0.0.1:0");
    config.faults = FaultSet::NONE.with(fault);
    if fault == Fault::NdrPadding {
        // A five-digit LCID makes the V4 response 2 bytes longer: not a multiple of 4, so the
        // stub has alignment bytes to spoil.
        config.host.lcid = 14337;
    }
    config
}

/// What one fault made `activate` report: (version, failing checks, outcome), or a mismatch.
async fn fault_case(fault: Fault, check: CheckId) -> Result<(), String> {
    let host = start_host(fault_host(fault)).await;
    let mut problems = Vec::new();
    for version in fault_versions(fault) {
        let report = activate(host.addr(), &[version]).await;
        let e = only(&report);
        let failed = failing(e);
        if failed != BTreeSet::from([check]) {
            problems.push(format!(
                "{fault} {version}: expected only {check} to fail, got {failed:?} (outcome {:?}, error {:?})",
                e.outcome, e.error
            ));
        }
        let outcome = if fault == Fault::RefuseAll {
            Outcome::Refused
        } else {
            Outcome::ChecksFailed
        };
        if e.outcome != outcome {
            problems.push(format!(
                "{fault} {version}: outcome {:?}, expected {outcome:?} (error {:?})",
                e.outcome, e.error
            ));
        }
    }
    host.stop().await.unwrap();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Faults that change the exchange instead of breaking a check, each with its own test below
/// or, for the two stub faults (which only a crafted stub shows), the conformance case that
/// guards it in `tests/conform.rs`. The planted bugs (`Fault::PLANTED`) are `tests/fuzz.rs`'s.
const BEHAVIOUR_FAULTS: [Fault; 6] = [
    Fault::Delay,
    Fault::CloseAfterBind,
    Fault::Ndr64Refused,
    Fault::CountStuck,
    Fault::StrictStub,
    Fault::StubRefusedNotFaulted,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_trips_exactly_its_check() {
    let local = LocalSet::new();
    let _guard = local.enter();
    let mut cases = JoinSet::new();
    for &fault in Fault::ALL.iter().filter(|f| !f.is_planted()) {
        match fault.check() {
            Some(check) => {
                cases.spawn_local(fault_case(fault, check));
            }
            None => assert!(
                BEHAVIOUR_FAULTS.contains(&fault),
                "fault {fault} trips no check and has no test"
            ),
        }
    }
    let mut problems = Vec::new();
    let mut ran = 0;
    local
        .run_until(async {
            while let Some(case) = cases.join_next().await {
                if let Err(p) = case.unwrap() {
                    problems.push(p);
                }
                ran += 1;
            }
        })
        .await;
    assert_eq!(
        ran,
        Fault::ALL.len() - BEHAVIOUR_FAULTS.len() - Fault::PLANTED.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_delay_delays_the_reply() {
    let mut config = fault_host(Fault::Delay);
    config.listen.delay = Duration::from_millis(300);
    let host = start_host(config).await;
    let report = activate(host.addr(), &[]).await;
    let e = only(&report);
    assert_ok(e, "delay");
    let micros = e.call_micros.unwrap();
    assert!(micros >= 300_000, "reply after {micros} µs");
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_close_after_bind_is_a_connection_failure() {
    let host = start_host(fault_host(Fault::CloseAfterBind)).await;
    // With NDR64 offered the host hangs up before the alter_context is answered ...
    let report = activate(host.addr(), &[]).await;
    let e = only(&report);
    assert_eq!(e.outcome, Outcome::Connection, "{e:#?}");
    assert!(e.bind.is_none(), "{e:#?}");
    let error = e.error.as_deref().unwrap();
    assert!(error.contains("bind: connection closed"), "{error}");
    assert_eq!(report.exit_status, 3);
    // ... and with NDR32 alone, before the call is answered.
    let report = activate(host.addr(), &["-N", "0"]).await;
    let e = only(&report);
    assert_eq!(e.outcome, Outcome::Connection, "{e:#?}");
    assert_eq!(e.bind.as_ref().unwrap().accepted, ["NDR32", "BTFN"]);
    let error = e.error.as_deref().unwrap();
    assert!(
        error.contains("activation call: connection closed"),
        "{error}"
    );
    assert_eq!(report.exit_status, 3);
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_ndr64_refused_leaves_ndr32() {
    let host = start_host(fault_host(Fault::Ndr64Refused)).await;
    let report = activate(host.addr(), &["-n", "2"]).await;
    assert_eq!(report.exchanges.len(), 2);
    let first = &report.exchanges[0];
    assert_ok(first, "ndr64-refused");
    let bind = first.bind.as_ref().unwrap();
    assert_eq!(bind.accepted, ["NDR32", "BTFN"]);
    assert!(!bind.alter_context);
    for e in &report.exchanges {
        assert_ok(e, "ndr64-refused");
        assert_eq!(e.syntax, Some(Syntax::Ndr32));
    }
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_count_stuck_keeps_the_count() {
    let host = start_host(fault_host(Fault::CountStuck)).await;
    let report = activate(host.addr(), &["-n", "3"]).await;
    assert_eq!(counts(&report), [1, 1, 1]);
    for e in &report.exchanges {
        assert_ok(e, "count-stuck");
    }
    let machines: BTreeSet<_> = report.exchanges.iter().map(|e| e.request.cmid).collect();
    assert_eq!(machines.len(), 3);
    host.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 4. DNS SRV discovery

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_discovery_falls_back_to_the_next_host() {
    let host = start_host(serve_config("127.0.0.1:0")).await;
    let live = host.addr();
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let srv = |priority, port| dns::Srv {
        priority,
        weight: 0,
        port,
        target: "localhost.".to_owned(),
    };
    let responder = dns::Responder::start(vec![(
        "_vlmcs._tcp.example.test.".to_owned(),
        vec![srv(10, live.port()), srv(0, dead.port())],
    )])
    .await;
    let resolver = Resolver::with_nameserver(responder.addr).unwrap();

    let addrs = bounded(
        "SRV lookup",
        addresses_from_srv("example.test", &resolver, IpPreference::V4),
    )
    .await
    .unwrap();
    assert_eq!(addrs, [dead, live]);

    let config = activate_config(".example.test", &["-4"]);
    let report = bounded("activate via SRV", run_with(&config, &addrs)).await;
    assert_eq!(report.target, ".example.test");
    let e = only(&report);
    assert_ok(e, "SRV fallback");
    assert_eq!(e.bind.as_ref().unwrap().address, live);

    let error = bounded(
        "NXDOMAIN lookup",
        addresses_from_srv("missing.test", &resolver, IpPreference::V4),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("_VLMCS._TCP.missing.test"), "{error}");
    assert!(error.contains("NXDOMAIN"), "{error}");
    // The labels go out in upper case, as genuine Windows clients send them.
    let asked = responder.asked.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .any(|n| n.starts_with("_VLMCS._TCP.example.test")),
        "{asked:?}"
    );
    host.stop().await.unwrap();
}

/// Discovery as a Windows client does it: the dead first target is given up for the next,
/// only the names reached are resolved (a lower-priority target that does not even resolve
/// costs nothing), and the host that answered is asked first next time, with no new lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_discovery_resolves_only_the_targets_reached_and_caches_the_host() {
    let host = start_host(serve_config("127.0.0.1:0")).await;
    let live = host.addr();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let record = |priority, port, target: &str| dns::Srv {
        priority,
        weight: 0,
        port,
        target: target.to_owned(),
    };
    let responder = dns::Responder::start(vec![(
        "_vlmcs._tcp.lazy.test.".to_owned(),
        vec![
            record(0, dead.port(), "localhost."),
            record(10, live.port(), "localhost."),
            record(20, 1688, "never-resolved.invalid."),
        ],
    )])
    .await;
    let resolver = Resolver::with_nameserver(responder.addr).unwrap();
    let mut hosts = bounded(
        "SRV lookup",
        srv_hosts("lazy.test", &resolver, IpPreference::V4),
    )
    .await
    .unwrap();
    let config = activate_config(".lazy.test", &["-4", "-n", "2"]);
    let report = bounded("activate via SRV", run_on(&config, &mut hosts, None)).await;
    for e in &report.exchanges {
        assert_ok(e, "SRV discovery");
    }
    assert_eq!(report.exchanges[0].bind.as_ref().unwrap().address, live);
    let Hosts::Srv(srv) = &hosts else {
        panic!("not an SRV list")
    };
    assert_eq!(srv.resolved(), ["localhost", "localhost"]);
    assert_eq!(srv.cached(), Some(live));
    // A second run starts at the cached host: no lookup, and the dead host is not tried.
    let report = bounded("activate again", run_on(&config, &mut hosts, None)).await;
    assert_ok(&report.exchanges[0], "cached host");
    let Hosts::Srv(srv) = &hosts else {
        panic!("not an SRV list")
    };
    assert_eq!(srv.resolved().len(), 2, "{:?}", srv.resolved());
    // No target resolves: the report says so, as a connection failure.
    let responder = dns::Responder::start(vec![(
        "_vlmcs._tcp.nowhere.test.".to_owned(),
        vec![record(0, 1688, "never-resolved.invalid.")],
    )])
    .await;
    let resolver = Resolver::with_nameserver(responder.addr).unwrap();
    let mut hosts = srv_hosts("nowhere.test", &resolver, IpPreference::V4)
        .await
        .unwrap();
    let config = activate_config(".nowhere.test", &["-4"]);
    let report = bounded(
        "activate, nothing resolves",
        run_on(&config, &mut hosts, None),
    )
    .await;
    let e = only(&report);
    assert_eq!(e.outcome, Outcome::Connection);
    let error = e.error.as_deref().unwrap();
    assert!(error.contains("never-resolved.invalid"), "{error}");
    host.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5. Robustness of `serve`

/// A host closing idle connections after `idle`.
async fn robust_host(idle: Duration) -> RunningHost {
    let mut config = serve_config("127.0.0.1:0");
    config.listen.idle_timeout = idle;
    start_host(config).await
}

const SHORT_IDLE: Duration = Duration::from_millis(300);
const LONG_IDLE: Duration = Duration::from_secs(20);
/// Longest wait for a reply or a close that should come at once.
const PROMPT: Duration = Duration::from_secs(10);

/// A raw connection: bytes out, whole PDUs in.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let stream = bounded("connect", TcpStream::connect(addr)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next whole PDU, or `None` once the host closed (or reset) the connection.
    async fn next_pdu(&mut self, within: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some((pdu, _)) = split_pdu(&self.buf).unwrap() {
                let pdu = pdu.to_vec();
                self.buf.drain(..pdu.len());
                return Some(pdu);
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("neither a reply nor a close within {within:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Asserts the host closes the connection within `within` without sending anything.
    async fn assert_closed(&mut self, within: Duration, what: &str) {
        let pdu = self.next_pdu(within).await;
        assert!(pdu.is_none(), "{what}: got a PDU {pdu:?}");
        assert!(self.buf.is_empty(), "{what}: got bytes {:?}", self.buf);
    }
}

/// A bind as `activate` sends it, and the session that sent it.
fn bind_bytes(options: ClientRpcOptions) -> (ClientSession, Vec<u8>) {
    let mut session = ClientSession::new(options);
    let mut out = Vec::new();
    session.bind(&mut out);
    (session, out)
}

/// NDR32 only, no feature negotiation: context 0 is accepted by the bind itself.
const NDR32_ONLY: ClientRpcOptions = ClientRpcOptions {
    ndr64: false,
    btfn: false,
    multiplex: true,
    max_frag: 5840,
};

/// A request PDU carrying a V6-sized activation stub.
fn request_bytes(call_id: u32, context_id: u16, opnum: u16) -> Vec<u8> {
    let body = [0x42u8; 260];
    let mut stub = Vec::new();
    ActivationRequest::new(Syntax::Ndr32, &body).emit(&mut stub);
    let mut out = Vec::new();
    Pdu {
        header: HeaderRepr::new(PacketType::Request, call_id),
        body: Body::Request(Request {
            alloc_hint: stub.len() as u32,
            context_id,
            opnum,
            object: None,
            stub: &stub,
        }),
        auth: &[],
    }
    .emit(&mut out);
    out
}

/// Binds NDR32 on a raw connection and checks the bind_ack accepts it.
async fn raw_bound(addr: SocketAddr) -> Raw {
    let mut raw = Raw::connect(addr).await;
    let (mut session, bind) = bind_bytes(NDR32_ONLY);
    raw.send(&bind).await;
    let ack = raw.next_pdu(PROMPT).await.expect("bind_ack");
    let outcome = session.handle_bind_reply(&ack).unwrap();
    assert_eq!(outcome.accepted, ["NDR32"]);
    raw
}

/// The status of a fault PDU answering `call_id`.
fn fault_status(pdu: &[u8], call_id: u32) -> FaultStatus {
    let pdu = Pdu::parse(pdu).unwrap();
    assert_eq!(pdu.header.call_id, call_id);
    match pdu.body {
        Body::Fault(f) => f.status,
        other => panic!("expected a fault, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_garbage_bytes_close_the_connection() {
    let host = robust_host(LONG_IDLE).await;
    let mut raw = Raw::connect(host.addr()).await;
    raw.send(&[0xde; 64]).await;
    raw.assert_closed(PROMPT, "garbage").await;
    assert_still_serves(host.addr(), "garbage").await;
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_lying_frag_length_waits_then_closes_at_idle_timeout() {
    let host = robust_host(SHORT_IDLE).await;
    let mut raw = Raw::connect(host.addr()).await;
    let (_, mut bind) = bind_bytes(ClientRpcOptions::default());
    // Under the 1024 bytes an unbound connection may announce (more is refused at once).
    bind[8..10].copy_from_slice(&1000u16.to_le_bytes());
    let started = Instant::now();
    raw.send(&bind[..100]).await;
    raw.assert_closed(PROMPT, "frag_length 1000, 100 bytes sent")
        .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed after {waited:?}"
    );
    assert_still_serves(host.addr(), "a lying frag_length").await;
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_oversized_frag_length_closes_at_once() {
    let host = robust_host(LONG_IDLE).await;
    let mut raw = Raw::connect(host.addr()).await;
    let (_, mut bind) = bind_bytes(ClientRpcOptions::default());
    bind[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
    raw.send(&bind).await;
    // Well before the 20 s idle timeout: the size alone ends it.
    raw.assert_closed(PROMPT, "frag_length 65535").await;
    assert_still_serves(host.addr(), "an oversized frag_length").await;
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_truncated_pdu_then_close() {
    let host = robust_host(LONG_IDLE).await;
    let mut raw = Raw::connect(host.addr()).await;
    let (_, bind) = bind_bytes(ClientRpcOptions::default());
    raw.send(&bind[..bind.len() / 2]).await;
    raw.stream.shutdown().await.unwrap();
    raw.assert_closed(PROMPT, "truncated bind").await;
    assert_still_serves(host.addr(), "a truncated PDU").await;
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_request_before_bind_gets_a_fault() {
    let host = robust_host(LONG_IDLE).await;
    let mut raw = Raw::connect(host.addr()).await;
    raw.send(&request_bytes(7, 0, 0)).await;
    let reply = raw.next_pdu(PROMPT).await.expect("a fault PDU");
    assert_eq!(fault_status(&reply, 7), FaultStatus::ProtocolError);
    assert_still_serves(host.addr(), "a request before any bind").await;
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_unknown_opnum_gets_op_rng_error() {
    let host = robust_host(LONG_IDLE).await;
    let mut raw = raw_bound(host.addr()).await;
    raw.send(&request_bytes(3, 0, 1)).await;
    let reply = raw.next_pdu(PROMPT).await.expect("a fault PDU");
    let status = fault_status(&reply, 3);
    assert_eq!(status, FaultStatus::OpRangeError);
    assert_eq!(u32::from(status), 0x1C01_0002);
    assert_still_serves(host.addr(), "opnum 1").await;
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_unknown_context_gets_unknown_interface() {
    let host = robust_host(LONG_IDLE).await;
    let mut raw = raw_bound(host.addr()).await;
    raw.send(&request_bytes(3, 9, 0)).await;
    let reply = raw.next_pdu(PROMPT).await.expect("a fault PDU");
    let status = fault_status(&reply, 3);
    assert_eq!(status, FaultStatus::UnknownInterface);
    assert_eq!(u32::from(status), 0x1C01_0003);
    assert_still_serves(host.addr(), "an unknown context id").await;
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_bind_for_unknown_interface_is_rejected() {
    let host = robust_host(LONG_IDLE).await;
    let mut raw = Raw::connect(host.addr()).await;
    let (_, bind) = bind_bytes(NDR32_ONLY);
    let mut pdu = Pdu::parse(&bind).unwrap();
    let Body::Bind(b) = &mut pdu.body else {
        unreachable!()
    };
    b.contexts[0].abstract_syntax = SyntaxId {
        uuid: "12345678-1234-4321-8765-123456789abc".parse().unwrap(),
        version: KMS_INTERFACE.version,
    };
    let mut bytes = Vec::new();
    pdu.emit(&mut bytes);
    raw.send(&bytes).await;
    let reply = raw.next_pdu(PROMPT).await.expect("a bind_ack");
    let reply = Pdu::parse(&reply).unwrap();
    let Body::BindAck(ack) = &reply.body else {
        panic!("expected a bind_ack, got {reply:?}")
    };
    assert_eq!(ack.results.len(), 1);
    assert_eq!(ack.results[0].result, AckResult::ProviderRejection);
    assert_eq!(ack.results[0].reason, 1);
    assert_eq!(
        ack.results[0].provider_reason(),
        ProviderReason::AbstractSyntaxNotSupported
    );
    assert_still_serves(host.addr(), "a bind for another interface").await;
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_bind_with_rpc_minor_version_7_gets_bind_nak() {
    let host = robust_host(LONG_IDLE).await;
    let mut raw = Raw::connect(host.addr()).await;
    let (_, mut bind) = bind_bytes(ClientRpcOptions::default());
    bind[1] = 7;
    raw.send(&bind).await;
    let reply = raw.next_pdu(PROMPT).await.expect("a bind_nak");
    let reply = Pdu::parse(&reply).unwrap();
    let Body::BindNak(nak) = &reply.body else {
        panic!("expected a bind_nak, got {reply:?}")
    };
    assert_eq!(nak.reason, RejectReason::ProtocolVersionNotSupported);
    assert_eq!(nak.versions, [(5, 0), (5, 1)]);
    assert_still_serves(host.addr(), "rpc_vers_minor 7").await;
    host.stop().await.unwrap();
}

/// Sends a bind one byte every 20 ms (72 bytes: about 1.5 s) and expects its bind_ack.
async fn slow_bind(addr: SocketAddr) -> Result<(), String> {
    let mut raw = Raw::connect(addr).await;
    let (mut session, bind) = bind_bytes(NDR32_ONLY);
    for (i, byte) in bind.iter().enumerate() {
        if let Err(e) = raw.stream.write_all(std::slice::from_ref(byte)).await {
            return Err(format!(
                "host hung up after {i} of {} bytes: {e}",
                bind.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ack = raw
        .next_pdu(PROMPT)
        .await
        .ok_or("closed instead of a bind_ack")?;
    let outcome = session.handle_bind_reply(&ack).map_err(|e| e.to_string())?;
    assert_eq!(outcome.accepted, ["NDR32"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_slow_sender_is_answered() {
    let host = robust_host(LONG_IDLE).await;
    slow_bind(host.addr()).await.unwrap();
    assert_still_serves(host.addr(), "a slow sender").await;
    host.stop().await.unwrap();
}

/// A connection that sends a byte every 20 ms is not idle: the host's idle timeout bounds each
/// wait for more bytes (`PduReader::next_within_deadlines` in src/net/framing.rs, called per
/// PDU by `serve_connection` in src/net/host.rs), that is the silence on the connection; the
/// time a whole PDU takes is bounded apart, by the PDU timeout (5 s by default). So a 300 ms
/// idle timeout lets a bind that takes 1.5 s through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_slow_sender_is_not_idle() {
    let host = robust_host(SHORT_IDLE).await;
    slow_bind(host.addr()).await.unwrap();
    assert_still_serves(host.addr(), "a slow sender").await;
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_idle_connection_is_closed_after_the_idle_timeout() {
    let host = robust_host(SHORT_IDLE).await;
    let started = Instant::now();
    let mut raw = Raw::connect(host.addr()).await;
    raw.assert_closed(PROMPT, "idle connection").await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed after {waited:?}"
    );
    assert_still_serves(host.addr(), "an idle connection").await;
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_500_concurrent_activations() {
    const CLIENTS: usize = 500;
    let host = robust_host(LONG_IDLE).await;
    let addr = host.addr();
    let config = Rc::new(activate_config(&addr.to_string(), &[]));
    let local = LocalSet::new();
    let _guard = local.enter();
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        let config = config.clone();
        clients.spawn_local(async move { run_with(&config, &[addr]).await });
    }
    let mut ok = 0;
    let mut problems = Vec::new();
    local
        .run_until(async {
            while let Some(report) = bounded("500 activations", clients.join_next()).await {
                let report = report.unwrap();
                let e = only(&report);
                if e.outcome == Outcome::Ok && failing(e).is_empty() {
                    ok += 1;
                } else {
                    problems.push(format!("{:?}: {:?}", e.outcome, e.error));
                }
            }
        })
        .await;
    assert_eq!(
        ok,
        CLIENTS,
        "{} failed, e.g. {:?}",
        problems.len(),
        problems.first()
    );
    assert_eq!(host.service.count(AppKind::Windows), 10);
    assert_still_serves(addr, "500 concurrent activations").await;
    host.stop().await.unwrap();
}

/// A host with a short PDU deadline and a long idle timeout.
async fn deadline_host(pdu: Duration) -> RunningHost {
    let mut config = serve_config("127.0.0.1:0");
    config.listen.idle_timeout = LONG_IDLE;
    config.listen.pdu_timeout = pdu;
    start_host(config).await
}

/// A sender that drips one byte every 50 ms is never silent for the idle timeout, but its PDU
/// is not whole within the PDU deadline, so the host hangs up; a real activation meanwhile
/// succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_drip_sender_is_cut_at_the_pdu_deadline() {
    const PDU: Duration = Duration::from_millis(500);
    let host = deadline_host(PDU).await;
    let addr = host.addr();
    // A bind announcing 1000 bytes: 50 s at this pace.
    let (_, mut bind) = bind_bytes(NDR32_ONLY);
    bind.resize(1000, 0);
    bind[8..10].copy_from_slice(&1000u16.to_le_bytes());
    let stream = bounded("connect", TcpStream::connect(addr)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let started = Instant::now();
    let total = bind.len();
    let drip = tokio::spawn(async move {
        for (i, byte) in bind.iter().enumerate() {
            if wr.write_all(std::slice::from_ref(byte)).await.is_err() {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bind.len()
    });
    assert_still_serves(addr, "during a drip").await;
    let mut buf = [0u8; 64];
    let read = bounded("the host's close", rd.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= PDU - Duration::from_millis(50),
        "closed after {waited:?}"
    );
    let sent = bounded("the drip", drip).await.unwrap();
    assert!(sent < total, "the whole dripped PDU went through");
    assert_still_serves(addr, "a drip sender").await;
    host.stop().await.unwrap();
}

/// A client that sends requests but never reads its replies would fill the socket buffers;
/// the host stops reading it once it is more than `MAX_PIPELINED_CALLS` calls ahead, and
/// drops the connection (the client's writes fail) instead of answering into buffers nobody
/// drains, or waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_client_that_never_reads_is_dropped() {
    let host = deadline_host(Duration::from_millis(500)).await;
    let addr = host.addr();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = bounded("connect", socket.connect(addr)).await.unwrap();
    bind_on(&mut stream).await;
    let batch: Vec<u8> = (0..100u32).flat_map(|i| request_bytes(i, 0, 0)).collect();
    assert_still_serves(addr, "while a client does not read").await;
    // At most 100,000 batches (30 MB each way is far beyond any socket buffer).
    let cut = bounded("the host's hang-up", async {
        for n in 0..100_000u32 {
            if stream.write_all(&batch).await.is_err() {
                return Some(n);
            }
        }
        None
    })
    .await;
    assert!(cut.is_some(), "the host took every request");
    assert_still_serves(addr, "a client that never reads").await;
    host.stop().await.unwrap();
}

/// Reads PDUs from `stream` until the host closes it; how many were responses or faults.
async fn replies_until_closed(stream: &mut TcpStream) -> usize {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match bounded("replies", stream.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let mut replies = 0;
    let mut rest = &got[..];
    while let Ok(Some((pdu, tail))) = split_pdu(rest) {
        if matches!(pdu[2], 2 | 3) {
            replies += 1;
        }
        rest = tail;
    }
    replies
}

/// A bound connection with NDR32 only, its bind_ack read.
async fn bound(addr: SocketAddr) -> TcpStream {
    let mut stream = bounded("connect", TcpStream::connect(addr)).await.unwrap();
    bind_on(&mut stream).await;
    stream
}

/// Binds `stream` with NDR32 only and reads the bind_ack.
async fn bind_on(stream: &mut TcpStream) {
    let (mut session, bind) = bind_bytes(NDR32_ONLY);
    stream.write_all(&bind).await.unwrap();
    let mut ack = Vec::new();
    while split_pdu(&ack).unwrap().is_none() {
        let mut chunk = [0u8; 512];
        let n = bounded("bind_ack", stream.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "closed instead of a bind_ack");
        ack.extend_from_slice(&chunk[..n]);
    }
    session.handle_bind_reply(&ack).unwrap();
}

/// Calls sent ahead of their replies are answered up to `MAX_PIPELINED_CALLS` in a row, again
/// and again while the client reads between its batches; one more in a row and the host reads
/// no further call: it answers 17 of 40 and shuts its side at once (the socket is closed
/// after the PDU timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_pipelined_calls_are_bounded() {
    use kmsharness::net::host::MAX_PIPELINED_CALLS;
    let limit = MAX_PIPELINED_CALLS as usize;
    let host = deadline_host(Duration::from_millis(300)).await;
    let addr = host.addr();
    let mut stream = bound(addr).await;
    for round in 0..3u32 {
        let batch: Vec<u8> = (0..limit as u32)
            .flat_map(|i| request_bytes(round * 100 + i, 0, 0))
            .collect();
        stream.write_all(&batch).await.unwrap();
        let mut got = Vec::new();
        let mut replies = 0;
        while replies < limit {
            let mut buf = [0u8; 4096];
            let n = bounded("a batch's replies", stream.read(&mut buf))
                .await
                .unwrap();
            assert!(n > 0, "round {round}: closed after {replies} replies");
            got.extend_from_slice(&buf[..n]);
            replies = 0;
            let mut rest = &got[..];
            while let Ok(Some((_, tail))) = split_pdu(rest) {
                replies += 1;
                rest = tail;
            }
        }
        assert_eq!(replies, limit, "round {round}");
    }
    let mut stream = bound(addr).await;
    let batch: Vec<u8> = (0..40u32).flat_map(|i| request_bytes(i, 0, 0)).collect();
    stream.write_all(&batch).await.unwrap();
    assert_eq!(replies_until_closed(&mut stream).await, limit + 1);
    assert_still_serves(addr, "a client far ahead of its replies").await;
    host.stop().await.unwrap();
}

/// Clients that wait for every reply are never taken for pipelining ones, however busy the host
/// and however fast they answer: 64 of them replaying a captured call back to back, 300 times
/// each, all get every reply. (The host once judged a call "ahead" if it was there just after
/// the reply was written: on a busy host a fast waiting client's next call often is, and 17 in
/// a row cut it — found by the bare replayer of `tests/figures.rs`.)
///
/// The host is a `serve` process and the clients run on more threads than there are cores, so
/// that the host's threads are preempted between a reply and what follows it, as on a loaded
/// machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn robust_waiting_clients_on_a_busy_host_are_not_cut_as_pipelining() {
    const CLIENTS: usize = 64;
    const CALLS: usize = 300;
    let (host, addr) = crate::process::serve(&[]);
    let addr: SocketAddr = addr.parse().unwrap();
    let ex = crate::support::bare::exchange();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let ex = ex.clone();
        tasks.spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            for pdu in &ex.setup {
                stream.write_all(pdu).await.unwrap();
                assert!(crate::support::bare::read_pdu(&mut stream).await, "setup");
            }
            for call in 0..CALLS {
                stream.write_all(&ex.request).await.unwrap();
                if !crate::support::bare::read_pdu(&mut stream).await {
                    return Some(call);
                }
            }
            None
        });
    }
    let mut cut = Vec::new();
    while let Some(r) = bounded("64 clients", tasks.join_next()).await {
        if let Some(call) = r.unwrap() {
            cut.push(call);
        }
    }
    assert!(cut.is_empty(), "connections cut after these calls: {cut:?}");
    drop(host);
}

/// Before a bind, a PDU larger than a bind is refused at once (not buffered until the idle
/// timeout), and fragments are answered with a fault instead of being reassembled; a bind
/// afterwards still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_unbound_connection_holds_one_small_pdu() {
    let host = robust_host(LONG_IDLE).await;
    let mut raw = Raw::connect(host.addr()).await;
    let (_, mut bind) = bind_bytes(NDR32_ONLY);
    bind[8..10].copy_from_slice(&4000u16.to_le_bytes());
    raw.send(&bind).await;
    // Well before the 20 s idle timeout.
    raw.assert_closed(PROMPT, "a 4000-byte PDU before a bind")
        .await;

    let mut raw = Raw::connect(host.addr()).await;
    for call in 1..=17u32 {
        let mut all = Vec::new();
        kmsharness::wire::rpc::emit_fragmented_request(
            &mut all,
            call,
            kmsharness::wire::rpc::Flags::FIRST_LAST,
            0,
            0,
            &[7; 400],
            224,
        );
        let (first, _) = split_pdu(&all).unwrap().unwrap();
        raw.send(first).await;
        let reply = raw.next_pdu(PROMPT).await.expect("a fault PDU");
        assert_eq!(fault_status(&reply, call), FaultStatus::ProtocolError);
    }
    let (mut session, bind) = bind_bytes(NDR32_ONLY);
    raw.send(&bind).await;
    let ack = raw.next_pdu(PROMPT).await.expect("bind_ack");
    assert_eq!(session.handle_bind_reply(&ack).unwrap().accepted, ["NDR32"]);
    assert_still_serves(host.addr(), "fragments before a bind").await;
    host.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 6. State file

/// A state file path unique to this test, removed (with its temporary sibling) on drop.
struct TempState(PathBuf);

impl TempState {
    fn new(tag: &str) -> TempState {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!(
            "kmsharness-network-{tag}-{}-{nanos}.json",
            std::process::id()
        );
        TempState(std::env::temp_dir().join(name))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempState {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(kmsharness::host::temp_path(&self.0));
    }
}

fn stateful(path: &Path) -> HostSetup {
    let mut config = serve_config("127.0.0.1:0");
    config.state = Some(path.to_owned());
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_file_keeps_the_table_across_restarts() {
    let state = TempState::new("restart");
    let host = start_host(stateful(state.path())).await;
    let report = activate(host.addr(), &["-n", "3"]).await;
    assert_eq!(counts(&report), [1, 2, 3]);
    let epid = report.exchanges[0].response.as_ref().unwrap().epid.clone();
    host.stop().await.unwrap();
    assert!(state.path().exists());

    let host = start_host(stateful(state.path())).await;
    assert_eq!(host.service.count(AppKind::Windows), 3);
    let report = activate(host.addr(), &[]).await;
    assert_eq!(counts(&report), [4]);
    // The host keeps its identity too.
    assert_eq!(only(&report).response.as_ref().unwrap().epid, epid);
    host.stop().await.unwrap();

    // A torn write: the first half of a valid file.
    let bytes = std::fs::read(state.path()).unwrap();
    std::fs::write(state.path(), &bytes[..bytes.len() / 2]).unwrap();
    let error = start(stateful(state.path())).await.unwrap_err().to_string();
    let shown = state.path().display().to_string();
    assert!(error.contains(&shown), "{error}");

    // Garbage.
    std::fs::write(state.path(), b"\x00\xffnot a state file{{").unwrap();
    let error = start(stateful(state.path())).await.unwrap_err().to_string();
    assert!(error.contains(&shown), "{error}");
    // Never a silent reset: the file is left as it was.
    assert_eq!(
        std::fs::read(state.path()).unwrap(),
        b"\x00\xffnot a state file{{"
    );
}

/// A running host writes its state periodically: a crash (no orderly stop) loses at most one
/// interval of the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_file_is_written_while_running() {
    let state = TempState::new("periodic");
    let mut config = stateful(state.path());
    config.state_interval = Duration::from_millis(50);
    let host = start_host(config.clone()).await;
    assert_eq!(counts(&activate(host.addr(), &["-n", "2"]).await), [1, 2]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !state.path().exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Read the file while the host still runs, as a restart after a crash would.
    let bytes = std::fs::read(state.path()).expect("state written while running");
    let restored = kmsharness::proto::host::state::decode_state(&bytes).unwrap();
    let twin = start_host(stateful(state.path())).await;
    assert_eq!(twin.service.count(AppKind::Windows), 2, "{restored:?}");
    twin.stop().await.unwrap();
    host.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 7. Connection limit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refuses_the_third_until_one_closes() {
    let mut config = serve_config("127.0.0.1:0");
    config.listen.max_connections = 2;
    let host = start_host(config).await;
    let addr = host.addr();
    // Two connections the host has accepted (each answered a bind), then left idle.
    let first = raw_bound(addr).await;
    let _second = raw_bound(addr).await;

    let report = activate(addr, &[]).await;
    let e = only(&report);
    assert_eq!(e.outcome, Outcome::Connection, "{e:#?}");
    let error = e.error.as_deref().unwrap();
    assert!(error.contains("bind"), "{error}");
    assert!(e.bind.is_none());

    drop(first);
    // The host frees the slot when it sees the close; bounded retries cover that moment.
    let mut last = None;
    for _ in 0..100 {
        let report = activate(addr, &[]).await;
        if only(&report).outcome == Outcome::Ok {
            last = Some(report);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = last.expect("no activation succeeded after a connection closed");
    assert_ok(only(&report), "after a slot freed");
    host.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// --grab

/// `activate --grab` writes a host's ePIDs and hardware ID as a serve config; a host started
/// from that file presents the same identity.
#[tokio::test]
async fn grab_writes_a_config_that_reproduces_the_host() {
    let mut config = serve_config("127.0.0.1:0");
    config.host.key_groups = [
        "Volume License for Windows Server 2022",
        "Volume License for Office LTSC 2021",
        "Volume License for Office 2010",
    ]
    .iter()
    .map(|g| catalog::host_key_group(g).unwrap())
    .collect();
    let original = start_host(config.clone()).await;
    let path = std::env::temp_dir().join(format!("kmsharness-grab-{}.toml", std::process::id()));
    let grab_config = activate_config(&original.addr().to_string(), &[]);
    let grab = bounded(
        "grab",
        kmsharness::activate::grab(
            &grab_config,
            &mut kmsharness::net::discovery::Hosts::Known(vec![original.addr()]),
        ),
    )
    .await;
    assert_eq!(grab.exit, kmsharness::exit::Exit::Success);
    std::fs::write(&path, &grab.toml).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let first = only(&activate(original.addr(), &[]).await)
        .response
        .clone()
        .unwrap();
    assert!(text.contains(&first.epid), "{text}");
    assert!(text.contains(&first.hwid_hex().unwrap()), "{text}");
    assert!(
        text.contains("office2010 = \"") && text.contains("office2013 = \""),
        "{text}"
    );

    // Serve the grabbed identity from another host.
    #[derive(Parser)]
    struct ServeCli {
        #[command(flatten)]
        opts: kmsharness::cli::serve::ServeOpts,
    }
    let path_arg = path.display().to_string();
    let mut copy = ServeCli::try_parse_from([
        "serve",
        "--config",
        &path_arg,
        "--key-group",
        "Volume License for Windows Server 2022",
        "--key-group",
        "Volume License for Office LTSC 2021",
        "--key-group",
        "Volume License for Office 2010",
        "-L",
        "127.0.0.1:0",
    ])
    .unwrap()
    .opts
    .config()
    .unwrap();
    copy.log = false;
    let twin = start_host(copy).await;
    let again = only(&activate(twin.addr(), &[]).await)
        .response
        .clone()
        .unwrap();
    assert_eq!((again.epid, again.hwid), (first.epid, first.hwid));
    let _ = std::fs::remove_file(&path);
    original.stop().await.unwrap();
    twin.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 6. Figures: `serve` under thousands of hostile connections (run by hand, see README)

/// One hostile connection's behaviour, repeated on a new connection whenever the host hangs up.
#[derive(Debug, Clone, Copy)]
enum Hostility {
    /// Connects and sends nothing.
    Silent,
    /// Sends a bind one byte a second.
    Drip,
    /// Sends a header announcing a 5000-byte PDU, 100 bytes of it, then nothing.
    Lying,
    /// Binds, then sends requests without ever reading a reply.
    NeverReads,
}

/// Misbehaves on one connection until the host hangs up or `until`.
async fn misbehave(addr: SocketAddr, how: Hostility, until: Instant) {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
    else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return;
    };
    let (mut session, bind) = bind_bytes(NDR32_ONLY);
    let left = until.saturating_duration_since(Instant::now());
    let _ = tokio::time::timeout(left, async {
        let mut buf = [0u8; 4096];
        match how {
            Hostility::Silent => {
                let _ = stream.read(&mut buf).await;
            }
            Hostility::Drip => {
                for byte in &bind {
                    if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Hostility::Lying => {
                let mut lie = bind.clone();
                lie[8..10].copy_from_slice(&5000u16.to_le_bytes());
                lie.truncate(100);
                if stream.write_all(&lie).await.is_ok() {
                    let _ = stream.read(&mut buf).await;
                }
            }
            Hostility::NeverReads => {
                if stream.write_all(&bind).await.is_err() {
                    return;
                }
                let mut ack = Vec::new();
                while split_pdu(&ack).ok().flatten().is_none() {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => ack.extend_from_slice(&buf[..n]),
                    }
                }
                if session.handle_bind_reply(&ack).is_err() {
                    return;
                }
                let batch: Vec<u8> = (0..50u32).flat_map(|i| request_bytes(i, 0, 0)).collect();
                while stream.write_all(&batch).await.is_ok() {}
            }
        }
    })
    .await;
}

/// The README's figure: `serve` (a separate process, default options) while 5,000 hostile
/// connections (a quarter each silent, dripping, lying about their length, never reading) are
/// held open and re-opened as the host hangs up, answering a legitimate activation at a time;
/// prints the activations' latency percentiles and the host's peak RSS. No timing is asserted
/// (figures are measured, not asserted); every legitimate activation must succeed. Run with
/// `cargo test --release --test tests figures_serve_under_hostile -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for the README: 5,000 connections for 30 s"]
async fn figures_serve_under_hostile_connections() {
    const HOSTILE: usize = 5000;
    const WINDOW: Duration = Duration::from_secs(30);
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (host, addr) = crate::process::serve(&["--max-connections", "10000"]);
    let addr: SocketAddr = addr.parse().unwrap();
    let until = Instant::now() + WINDOW;
    let kinds = [
        Hostility::Silent,
        Hostility::Drip,
        Hostility::Lying,
        Hostility::NeverReads,
    ];
    let mut tasks = JoinSet::new();
    for i in 0..HOSTILE {
        let how = kinds[i % kinds.len()];
        tasks.spawn(async move {
            while Instant::now() < until {
                misbehave(addr, how, until).await;
            }
        });
    }
    // Let the hostile connections pile up first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut micros = Vec::new();
    let config = activate_config(&addr.to_string(), &[]);
    while Instant::now() + Duration::from_secs(1) < until {
        let started = Instant::now();
        let report = bounded("a legitimate activation", run_with(&config, &[addr])).await;
        micros.push(started.elapsed().as_micros() as u64);
        assert_ok(only(&report), "a legitimate activation under hostile load");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", host.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or("?".to_owned(), |v| v.trim().to_owned())
    };
    while tasks.join_next().await.is_some() {}
    micros.sort_unstable();
    let pct = |p: f64| micros[((micros.len() - 1) as f64 * p) as usize];
    println!(
        "{HOSTILE} hostile connections, {} legitimate activations: p50 {} µs, p99 {} µs, max {} \
         µs; serve VmHWM {}, VmRSS {}",
        micros.len(),
        pct(0.5),
        pct(0.99),
        micros[micros.len() - 1],
        field("VmHWM:"),
        field("VmRSS:"),
    );
}
