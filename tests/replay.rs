//! `replay` (issue 5): every capture in `captures/` replayed against the bundled host, verbatim
//! and re-stamped, with every response validated and the host's counts as expected (verbatim
//! sends the captured machine IDs again, re-stamping sends new ones); the captured pacing
//! scaled by `--speed`; `--repeat`; `--record` of a replay; option validation and exit statuses.
//!
//! Every host listens on port 0 of 127.0.0.1, and every await is bounded.

use crate::support::common::{Memory, bounded};
use crate::support::schema::{self, Schema};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use kmsharness::capture::plan::Plan;
use kmsharness::capture::record::{Flow, Recorder, now};
use kmsharness::capture::{self, Direction, Timestamp};
use kmsharness::catalog::{self, AppKind};
use kmsharness::cli::replay::ReplayOpts;
use kmsharness::exit::Exit;
use kmsharness::host::RunningHost;
use kmsharness::proto::client::message::encode_request;
use kmsharness::proto::client::session::{ClientRpcOptions, ClientSession};
use kmsharness::proto::verdict::Verdict;
use kmsharness::replay::{ReplayConfig, ReplayMode, ReplayRun, exit_of, run, start_embedded};
use kmsharness::wire::Guid;
use kmsharness::wire::kms::{RequestBase, Version};

// ---------------------------------------------------------------------------------------------
// Helpers

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    opts: ReplayOpts,
}

fn cli(args: &[&str]) -> Result<ReplayConfig, String> {
    let argv = ["replay"].into_iter().chain(args.iter().copied());
    let opts = Cli::try_parse_from(argv).map_err(|e| e.to_string())?.opts;
    opts.config().map_err(|e| e.to_string())
}

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures")
}

/// Every capture in `captures/`: the third-party set and the project's own recordings.
fn all_captures() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(captures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    out.sort();
    assert!(out.len() >= 18, "{out:?}");
    out
}

/// A temporary file, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        let p =
            std::env::temp_dir().join(format!("kmsharness-replay-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        TempFile(p)
    }
    fn with(name: &str, bytes: &[u8]) -> TempFile {
        let t = TempFile::new(name);
        std::fs::write(&t.0, bytes).unwrap();
        t
    }
    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Replays `config` against `host`, keeping every exchange.
async fn replay_against(host: &RunningHost, mut config: ReplayConfig) -> ReplayRun {
    config.target = Some(vec![host.addr()]);
    config.target_label = host.addr().to_string();
    config.keep_exchanges = true;
    bounded("replay", run(&config, std::future::pending::<()>()))
        .await
        .unwrap_or_else(|e| panic!("replay: {e}"))
}

async fn embedded() -> RunningHost {
    bounded("start", start_embedded()).await.unwrap()
}

/// The report without its base64 histograms, for assertion messages.
fn brief(r: &ReplayRun) -> String {
    let rep = &r.report;
    format!(
        "sent {} ok {} failed {} errors {:?} skipped {} reconnects {}",
        rep.outcome.sent,
        rep.outcome.ok,
        rep.outcome.failed,
        rep.outcome.errors,
        rep.skipped,
        rep.outcome.reconnects
    )
}

/// The captured machine IDs, in plan order.
fn captured_cmids(plan: &Plan) -> Vec<Guid> {
    plan.connections
        .iter()
        .flat_map(|c| &c.requests)
        .map(|r| r.decoded.unwrap().base.cmid)
        .collect()
}

fn app_of(plan: &Plan) -> AppKind {
    let r = plan.connections[0].requests[0].decoded.unwrap();
    catalog::application(&r.base.app_id).unwrap().kind
}

/// What a host counts after seeing `distinct` machines asking with at most `n` required:
/// its table holds twice the highest required count.
fn expected_count(distinct: usize, plan: &Plan) -> u32 {
    let n = plan
        .connections
        .iter()
        .flat_map(|c| &c.requests)
        .map(|r| r.decoded.unwrap().base.required_clients)
        .max()
        .unwrap();
    (distinct as u32).min(2 * n)
}

// ---------------------------------------------------------------------------------------------
// 1. Every capture, verbatim and re-stamped

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_capture_replays_verbatim_and_restamped_with_every_check_passing() {
    let schema = Schema::load(REPORT_SCHEMA);
    for path in all_captures() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let plan = {
            let c = cli(&[path.to_str().unwrap()]).unwrap();
            c.plan.clone()
        };
        let n = plan.requests();
        let captured = captured_cmids(&plan);
        let distinct: BTreeSet<Guid> = captured.iter().copied().collect();
        let app = app_of(&plan);

        // Verbatim: the captured requests byte for byte, over as many connections.
        let host = embedded().await;
        let c = cli(&[path.to_str().unwrap(), "--verbatim", "--max"]).unwrap();
        assert_eq!(c.mode, ReplayMode::Verbatim);
        let r = replay_against(&host, c).await;
        let what = format!("{name} verbatim");
        assert_eq!(
            (r.report.outcome.sent, r.report.outcome.ok),
            (n as u64, n as u64),
            "{what}: {}",
            brief(&r)
        );
        assert!(r.report.outcome.errors.is_empty(), "{what}: {}", brief(&r));
        assert_eq!(r.report.connections, plan.connections.len(), "{what}");
        assert_eq!(exit_of(&r.report), Exit::Success, "{what}");
        schema.assert_fits(&what, &serde_json::to_value(&r.report).unwrap());
        let sent: Vec<Guid> = r.exchanges.iter().map(|e| e.cmid.unwrap()).collect();
        assert_eq!(sent, captured, "{what}: the captured machine IDs");
        assert!(
            r.exchanges
                .iter()
                .all(|e| matches!(e.verdict, Verdict::Validated { .. })),
            "{what}"
        );
        let verbatim_count = host.service.count(app);
        assert_eq!(
            verbatim_count,
            expected_count(distinct.len(), &plan),
            "{what}"
        );
        host.stop().await.unwrap();

        // Re-stamped: new machines, so a fresh host counts every request.
        let host = embedded().await;
        let c = cli(&[path.to_str().unwrap(), "--max"]).unwrap();
        assert_eq!(c.mode, ReplayMode::Restamp, "the default");
        let r = replay_against(&host, c).await;
        let what = format!("{name} restamped");
        assert_eq!(
            (r.report.outcome.sent, r.report.outcome.ok),
            (n as u64, n as u64),
            "{what}: {}",
            brief(&r)
        );
        assert_eq!(exit_of(&r.report), Exit::Success, "{what}");
        schema.assert_fits(&what, &serde_json::to_value(&r.report).unwrap());
        let sent: BTreeSet<Guid> = r.exchanges.iter().map(|e| e.cmid.unwrap()).collect();
        assert_eq!(sent.len(), n, "{what}: distinct machine IDs");
        assert!(sent.is_disjoint(&distinct), "{what}: none captured");
        assert_eq!(host.service.count(app), expected_count(n, &plan), "{what}");
        host.stop().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Pacing and rounds

/// A capture made here with the recorder's own flow API: one connection, a bind and two V6
/// requests `gap` apart (the client's side only: replay needs nothing else).
fn two_requests(gap: Duration) -> Vec<u8> {
    let mem = Memory::default();
    let rec = Arc::new(Recorder::new(Box::new(mem.clone())).unwrap());
    let client: SocketAddr = "127.0.0.1:50001".parse().unwrap();
    let server: SocketAddr = "127.0.0.1:1688".parse().unwrap();
    let mut flow = Flow::new(rec.clone(), client, server, [1000, 9000]);
    let t0 = now();
    let at = |d: Duration| Timestamp::from(t0.as_duration() + d);
    flow.open(t0);
    let mut session = ClientSession::new(ClientRpcOptions {
        ndr64: false,
        ..ClientRpcOptions::default()
    });
    let mut out = Vec::new();
    session.bind(&mut out);
    flow.data(Direction::ToServer, &out, at(Duration::from_millis(1)));
    for (i, offset) in [Duration::from_millis(10), Duration::from_millis(10) + gap]
        .into_iter()
        .enumerate()
    {
        let mut base = RequestBase::example(Version::V6);
        base.cmid = Guid::new_v4([i as u8 + 1; 16]);
        base.client_time = kmsharness::clock::now_filetime();
        let mut kms = Vec::new();
        encode_request(&base, [i as u8; 16], &mut kms);
        out.clear();
        session.request(&kms, &mut out);
        flow.data(Direction::ToServer, &out, at(offset));
    }
    flow.close(Direction::ToServer, at(gap + Duration::from_millis(20)));
    drop(flow);
    rec.finish().unwrap();
    mem.0.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speed_scales_the_captured_pacing() {
    let gap = Duration::from_secs(2);
    let file = TempFile::with("gap.pcap", &two_requests(gap));
    let plan = Plan::from_capture(&std::fs::read(&file.0).unwrap()).unwrap();
    assert_eq!(plan.requests(), 2);
    let at: Vec<Duration> = plan.connections[0].requests.iter().map(|r| r.at).collect();
    assert_eq!(at[1] - at[0], gap, "the plan keeps the captured gap");
    let host = embedded().await;
    // Lower bounds follow from the pacing (the captured gap divided by the speed); the order of
    // the three runs shows the speed scales it. No absolute upper bound: machines differ.
    let mut took = Vec::new();
    for (args, low) in [
        (vec!["--speed", "4", "--verbatim"], 0.49),
        (vec!["--speed", "10"], 0.19),
        (vec!["--max"], 0.0),
    ] {
        let mut argv = vec![file.arg()];
        argv.extend(&args);
        let t = Instant::now();
        let r = replay_against(&host, cli(&argv).unwrap()).await;
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(
            (r.report.outcome.sent, r.report.outcome.ok),
            (2, 2),
            "{args:?}: {}",
            brief(&r)
        );
        assert!(
            secs >= low,
            "{args:?}: took {secs:.3} s, at least {low} expected"
        );
        took.push(secs);
    }
    assert!(
        took[0] > took[1] && took[1] > took[2],
        "speed 4, 10, max took {took:?}"
    );
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_sends_every_round_and_only_restamping_grows_the_count() {
    let path = captures_dir().join("vlmcs-vlmcsd-v6-N0-no-ndr64.pcap");
    let p = path.to_str().unwrap();
    for (mode, count) in [("--verbatim", 2), ("--restamp", 6)] {
        let host = embedded().await;
        let r = replay_against(&host, cli(&[p, mode, "--max", "--repeat", "3"]).unwrap()).await;
        assert_eq!(
            (r.report.outcome.sent, r.report.outcome.ok),
            (6, 6),
            "{mode}: {}",
            brief(&r)
        );
        assert_eq!(r.report.repeat, 3);
        let rounds: BTreeSet<u32> = r.exchanges.iter().map(|e| e.round).collect();
        assert_eq!(rounds, BTreeSet::from([0, 1, 2]));
        assert_eq!(host.service.count(AppKind::Windows), count, "{mode}");
        // The count each response carried grows with each new machine, and only then.
        let counts: Vec<u32> = r
            .exchanges
            .iter()
            .map(|e| match e.verdict {
                Verdict::Validated { count } => count,
                other => panic!("{other:?}"),
            })
            .collect();
        let want: Vec<u32> = match mode {
            "--verbatim" => vec![1, 2, 2, 2, 2, 2],
            _ => (1..=6).collect(),
        };
        assert_eq!(counts, want, "{mode}");
        host.stop().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Recording a replay, report, options

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_replay_replays_again() {
    let source = captures_dir().join("vlmcs-vlmcsd-v6-n30-T-connection-per-request.pcap");
    let out = TempFile::new("recorded.pcap");
    let host = embedded().await;
    let mut c = cli(&[source.to_str().unwrap(), "--verbatim", "--max", "-c", "4"]).unwrap();
    c.record = Some(Recorder::create(&out.0).unwrap());
    let rec = c.record.clone().unwrap();
    let r = replay_against(&host, c).await;
    assert_eq!(r.report.outcome.ok, 30, "{}", brief(&r));
    rec.finish().unwrap();
    host.stop().await.unwrap();
    // The recording holds the 30 connections with the same request bodies.
    let recorded = capture::read(&std::fs::read(&out.0).unwrap())
        .into_result()
        .unwrap();
    assert_eq!(recorded.connections.len(), 30);
    let again = Plan::from_capture(&std::fs::read(&out.0).unwrap()).unwrap();
    let original = cli(&[source.to_str().unwrap()]).unwrap().plan;
    let bodies = |p: &Plan| -> BTreeSet<Vec<u8>> {
        p.connections
            .iter()
            .flat_map(|c| c.requests.iter().map(|r| r.body.clone()))
            .collect()
    };
    assert_eq!(
        bodies(&again),
        bodies(&original),
        "verbatim bodies, byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_report_has_the_load_report_shape() {
    let path = captures_dir().join("kmsharness-v5.pcap");
    let host = embedded().await;
    let r = replay_against(&host, cli(&[path.to_str().unwrap(), "--max"]).unwrap()).await;
    host.stop().await.unwrap();
    let json: serde_json::Value = serde_json::to_value(&r.report).unwrap();
    Schema::load(REPORT_SCHEMA).assert_fits("replay --max", &json);
    assert_eq!(json["format"], "kmsharness-replay/1");
    assert_eq!(json["mode"], "restamp");
    assert_eq!(json["speed"], serde_json::Value::Null);
    for phase in ["connect", "bind", "call", "total"] {
        let p = &json["phases"][phase];
        assert!(p["histogram"].is_string(), "{phase}");
        assert!(p["p99"].is_u64(), "{phase}");
    }
    assert_eq!(json["phases"]["total"]["count"], 2);
    let mut text = Vec::new();
    kmsharness::report::replay::text(&mut text, &r.report).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("2 ok"), "{text}");
}

/// The replay report's checked-in schema.
const REPORT_SCHEMA: &str = "replay-report.schema.json";

#[test]
fn replay_report_schema_is_generated() {
    schema::assert_generated::<kmsharness::replay::ReplayReport>(REPORT_SCHEMA);
}

#[test]
fn options_are_validated() {
    let p = captures_dir().join("kmsharness-v4.pcap");
    let p = p.to_str().unwrap();
    assert!(cli(&[p]).is_ok());
    assert_eq!(cli(&[p]).unwrap().speed, Some(1.0));
    assert_eq!(cli(&[p, "--max"]).unwrap().speed, None);
    for bad in [
        vec![p, "--speed", "0"],
        vec![p, "--speed", "-1"],
        vec![p, "--speed", "NaN"],
        vec![p, "--speed", "2", "--max"],
        vec![p, "--verbatim", "--restamp"],
        vec![p, "--repeat", "0"],
        vec![p, "-c", "0"],
        vec![p, "--read-timeout", "0"],
    ] {
        assert!(cli(&bad).is_err(), "{bad:?}");
    }
    let opts = |args: &[&str]| {
        Cli::try_parse_from(["replay"].into_iter().chain(args.iter().copied()))
            .unwrap()
            .opts
    };
    let missing = opts(&["/nonexistent/capture.pcap"]).config().unwrap_err();
    assert_eq!(missing.exit(), Exit::LocalIo);
    let empty = TempFile::with("empty.pcap", b"");
    assert_eq!(
        opts(&[empty.arg()]).config().unwrap_err().exit(),
        Exit::Usage
    );
    // A capture with TCP but no KMS request.
    let no_kms = TempFile::with("nokms.pcap", &{
        let mem = Memory::default();
        let rec = Arc::new(Recorder::new(Box::new(mem.clone())).unwrap());
        let mut f = Flow::new(
            rec.clone(),
            "127.0.0.1:5".parse().unwrap(),
            "127.0.0.1:6".parse().unwrap(),
            [1, 2],
        );
        f.open(now());
        f.close(Direction::ToServer, now());
        drop(f);
        rec.finish().unwrap();
        mem.0.lock().unwrap().clone()
    });
    let e = opts(&[no_kms.arg()]).config().unwrap_err();
    assert_eq!(e.exit(), Exit::Usage);
    assert!(e.to_string().contains("no KMS request"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_classified_and_set_the_exit_status() {
    // Nothing listens on this port once the host is gone: every connection is refused.
    let host = embedded().await;
    let addr = host.addr();
    host.stop().await.unwrap();
    let mut c = cli(&[
        captures_dir().join("kmsharness-v6.pcap").to_str().unwrap(),
        "--max",
    ])
    .unwrap();
    c.target = Some(vec![addr]);
    c.target_label = addr.to_string();
    c.client.connect_timeout = Duration::from_secs(2);
    let r = bounded("replay", run(&c, std::future::pending::<()>()))
        .await
        .unwrap();
    assert_eq!(
        (r.report.outcome.sent, r.report.outcome.ok),
        (2, 0),
        "{}",
        brief(&r)
    );
    assert_eq!(
        r.report.outcome.errors.get(&"refused".parse().unwrap()),
        Some(&2),
        "{}",
        brief(&r)
    );
    assert_eq!(exit_of(&r.report), Exit::Connection);
}

/// A bind_ack that fails a check fails the first call over its connection, under the check's
/// name, as a response's failed check would (replay judged only the call's reply before); the
/// capture's second request, over the same connection, passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_bind_ack_fails_the_call_it_opened() {
    use kmsharness::proto::faults::{Fault, FaultSet};
    let mut setup = kmsharness::host::HostSetup::default();
    setup.listen.listen = vec!["127.0.0.1:0".parse().unwrap()];
    setup.faults = FaultSet::NONE.with(Fault::MultiplexNotEchoed);
    let host = bounded("start", kmsharness::host::start(setup))
        .await
        .unwrap();
    let c = cli(&[
        captures_dir().join("kmsharness-v6.pcap").to_str().unwrap(),
        "--max",
    ])
    .unwrap();
    let r = replay_against(&host, c).await;
    host.stop().await.unwrap();
    let o = &r.report.outcome;
    assert_eq!((o.sent, o.ok), (2, 1), "{}", brief(&r));
    assert_eq!(
        o.errors.get(&"check:rpc_multiplex_flag".parse().unwrap()),
        Some(&1),
        "{}",
        brief(&r)
    );
    let verdicts: Vec<_> = r.exchanges.iter().map(|e| e.verdict).collect();
    assert_eq!(verdicts[0], Verdict::ChecksFailed, "{}", brief(&r));
    assert!(
        matches!(verdicts[1], Verdict::Validated { .. }),
        "{}",
        brief(&r)
    );
}
