//! `simulate`: the scenarios of `vectors/scenarios/`, each asserting the outcome its comment
//! derives from the docs' rules; determinism; the report against its schema.

use std::path::Path;
use std::process::Command;

use kmsharness::simulate::report::{DayReport, Report};
use kmsharness::simulate::scenario::HostTarget;
use kmsharness::simulate::{Scenario, run};
use serde_json::Value;

use crate::support::schema::{self, Schema};

fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("vectors/scenarios")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    Scenario::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn simulate(name: &str) -> Report {
    run(scenario(name), |_| {}).unwrap()
}

/// Day `n` (1-based) of the report.
fn day(r: &Report, n: u32) -> &DayReport {
    &r.days[n as usize - 1]
}

fn windows_count(d: &DayReport, host: &str) -> u32 {
    d.hosts
        .iter()
        .find(|h| h.name == host)
        .unwrap()
        .counts
        .windows
}

#[test]
fn twenty_four_clients_never_activate_a_twenty_fifth_activates_all() {
    let r = simulate("threshold-24-then-25.toml");
    for n in 1..=3 {
        assert_eq!(day(&r, n).activated, 0, "day {n}");
        assert_eq!(windows_count(day(&r, n), "kms1"), 24, "day {n}");
    }
    // The 25th arrives at day 3 (minute 4320); each waiting client asks within 120 minutes.
    assert_eq!(day(&r, 4).activated, 25);
    let desktops = &r.groups[0];
    let m = desktops.first_activation_minutes.unwrap();
    assert!(m.max <= 3 * 1440 + 120, "{m:?}");
    assert!(m.p50 > 2 * 1440, "{m:?}");
    assert_eq!(r.summary.never_activated, 0);
}

#[test]
fn servers_activate_at_five_and_count_with_clients() {
    let r = simulate("servers-and-clients.toml");
    // Day 1: the five servers, not the clients (not yet arrived).
    assert_eq!(day(&r, 1).activated, 5);
    assert_eq!(windows_count(day(&r, 1), "kms1"), 5);
    // Clients see the servers in the count: 5 + 20 = 25, and all activate.
    assert_eq!(day(&r, 3).activated, 25);
    assert_eq!(windows_count(day(&r, 3), "kms1"), 25);
}

#[test]
fn sixty_clients_saturate_the_count_at_fifty() {
    let r = simulate("saturate-50.toml");
    assert!(r.days.iter().all(|d| windows_count(d, "kms1") <= 50));
    assert_eq!(windows_count(day(&r, 2), "kms1"), 50);
    assert_eq!(r.summary.activated_at_end, 60);
}

#[test]
fn cloned_image_never_reaches_the_threshold() {
    let r = simulate("cloned-image.toml");
    assert_eq!(r.summary.never_activated, 300);
    assert_eq!(windows_count(r.days.last().unwrap(), "kms1"), 12);
    assert_eq!(
        r.groups[0].never_activated_reason.as_deref(),
        Some("300 machines share 12 machine IDs: the host's count stayed at 12 < 25")
    );
}

#[test]
fn host_down_ten_days_moves_renewals_and_nobody_lapses() {
    let r = simulate("failover.toml");
    assert!(r.days.iter().all(|d| d.out_of_tolerance == 0));
    let moved: u64 = r
        .events
        .iter()
        .filter(|e| e.event == "failover" && e.host == "kms1" && e.to.as_deref() == Some("kms2"))
        .filter_map(|e| e.machines)
        .sum();
    assert_eq!(moved, 40);
    let kms2: u64 = (21..=30)
        .map(|n| {
            let d = day(&r, n);
            d.hosts.iter().find(|h| h.name == "kms2").unwrap().requests
        })
        .sum();
    assert!(kms2 >= 40, "{kms2}");
    assert_eq!(r.summary.activated_at_end, 40);
}

#[test]
fn no_host_after_activation_lapses_after_180_days() {
    let r = simulate("no-host-after-activation.toml");
    for n in 2..=180 {
        assert_eq!(day(&r, n).activated, 30, "day {n}");
        assert_eq!(day(&r, n).out_of_tolerance, 0, "day {n}");
    }
    assert_eq!(day(&r, 183).out_of_tolerance, 30);
    // Only one host, and it is down: every attempt after day 1.5 finds no host.
    assert!(day(&r, 100).failures.contains_key("timeout"));
}

#[test]
fn away_over_thirty_days_leave_the_count_and_renew_on_return() {
    let r = simulate("away-and-back.toml");
    assert_eq!(windows_count(day(&r, 9), "kms1"), 35);
    assert_eq!(windows_count(day(&r, 48), "kms1"), 25);
    assert_eq!(day(&r, 20).absent, 10);
    assert_eq!(windows_count(r.days.last().unwrap(), "kms1"), 35);
    assert_eq!(r.summary.activated_at_end, 35);
    assert!(r.days.iter().all(|d| d.out_of_tolerance == 0));
}

/// The JSON report without its wall-clock field.
fn without_rate(mut v: Value) -> Value {
    v["summary"]["exchanges_per_sec"] = Value::Null;
    v
}

fn cli_json(name: &str, seed: Option<&str>) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("vectors/scenarios")
        .join(name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kmsharness"));
    cmd.arg("simulate").arg(&path).args(["--json", "-"]);
    if let Some(s) = seed {
        cmd.args(["--seed", s]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The text report went to stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("simulated"));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn same_file_and_seed_give_the_same_report() {
    // Byte-identical but for summary.exchanges_per_sec (wall-clock), set aside here.
    let a = without_rate(cli_json("away-and-back.toml", None));
    let b = without_rate(cli_json("away-and-back.toml", None));
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    let c = without_rate(cli_json("away-and-back.toml", Some("99")));
    assert_eq!(c["seed"], 99);
    assert_ne!(a, c, "another seed, other arrivals");
    // In process, the same: the library's report carries rate 0.
    let x = serde_json::to_string(&simulate("failover.toml")).unwrap();
    let y = serde_json::to_string(&simulate("failover.toml")).unwrap();
    assert_eq!(x, y);
}

#[test]
fn simulate_report_schema_is_generated() {
    schema::assert_generated::<Report>("simulate-report.schema.json");
}

#[test]
fn simulate_report_fits_its_schema() {
    let v = cli_json("failover.toml", None);
    assert_eq!(v["format"], "kmsharness-simulate/1");
    Schema::load("simulate-report.schema.json").assert_fits("failover report", &v);
}

#[test]
fn scenario_errors_name_the_key() {
    let dir = std::env::temp_dir().join(format!("kmsharness-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "days = 5\n[[machines]]\nname = \"a\"\ncount = 1\nproduct = \"Windows 95\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kmsharness"))
        .arg("simulate")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("kmsharness simulate: "), "{err}");
    assert!(err.contains("machines[0].product"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The failover scenario against two `serve --clock virtual --control` processes over sockets,
/// each one's clock moved by the simulation through its control port, gives the per-day
/// outcome of the in-process run: the same states, attempts, failures, and each host's
/// requests and counts every day.
#[test]
fn host_processes_on_the_virtual_clock_give_the_in_process_outcome() {
    let in_process = simulate("failover.toml");
    let (_kms1, addr1, control1) = crate::process::serve_with_control(&[]);
    let (_kms2, addr2, control2) = crate::process::serve_with_control(&[]);
    let mut s = scenario("failover.toml");
    for (host, (addr, control)) in s
        .hosts
        .iter_mut()
        .zip([(addr1, control1), (addr2, control2)])
    {
        host.target = Some(HostTarget {
            kms: addr.parse().unwrap(),
            control: Some(control.parse().unwrap()),
        });
    }
    let over_sockets = run(s, |_| {}).unwrap();
    assert_eq!(over_sockets.days.len(), in_process.days.len());
    for (a, b) in over_sockets.days.iter().zip(&in_process.days) {
        assert_eq!(a, b, "day {}", b.day);
    }
    assert_eq!(over_sockets.groups, in_process.groups);
    assert_eq!(over_sockets.events, in_process.events);
    assert_eq!(over_sockets.summary.exchanges, in_process.summary.exchanges);
    // Not a trivial run: the second host took over.
    assert!(in_process.events.iter().any(|e| e.event == "failover"));
}

/// A target on the virtual clock without its control port is refused before anything runs,
/// naming the key; one whose control port does not answer stops the run with exit 3.
#[test]
fn a_host_process_needs_a_reachable_control_port() {
    let dir = crate::command_line::scratch("simulate-target");
    let run_file = |text: &str| {
        let path = dir.join("s.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_kmsharness"))
            .arg("simulate")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run_file("days = 1\n[[hosts]]\nname = \"k\"\ntarget = \"127.0.0.1:1688\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("hosts[0].control"), "{err}");
    // Nothing listens on port 1 of loopback.
    let (code, err) = run_file(
        "days = 1\n[[hosts]]\nname = \"k\"\ntarget = \"127.0.0.1:1688\"\ncontrol = \"127.0.0.1:1\"\n",
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("hosts[0] (k)") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The real-time scenario the README runs against vlmcsd and py-kms is valid as shipped.
#[test]
fn the_real_time_peer_scenario_parses() {
    let s = scenario("real-time-peer.toml");
    assert_eq!(s.clock, kmsharness::simulate::ClockMode::Real);
    assert_eq!(s.minutes, Some(2));
    assert!(s.hosts.iter().all(|h| h.target.is_some()));
}

/// `simulate ARGS` on a bundled scenario: exit code, stdout, stderr.
fn simulate_cli(name: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("vectors/scenarios")
        .join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_kmsharness"))
        .arg("simulate")
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn thresholds_gate_the_run_in_text_json_and_junit() {
    let dir = std::env::temp_dir().join(format!("kmsharness-sim-gate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let junit = dir.join("r.xml");
    // 24 clients then a 25th (vectors/scenarios/threshold-24-then-25.toml): none is
    // activated while the count is below 25, every one once it reaches it.
    let (code, stdout, stderr) = simulate_cli(
        "threshold-24-then-25.toml",
        &[
            "--threshold",
            "activated==0@day1",
            "--threshold",
            "activated>=100%",
            "--threshold",
            "never_activated<=0",
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("thresholds (all 3 passed)"), "{stdout}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    Schema::load("simulate-report.schema.json").assert_fits("report with thresholds", &v);
    let t = &v["thresholds"];
    assert_eq!(
        (&t[0]["metric"], &t[0]["day"]),
        (&"activated".into(), &1.into())
    );
    assert_eq!(
        (&t[1]["unit"], &t[1]["actual"]),
        (&"percent".into(), &100.0.into())
    );
    assert_eq!(t[2]["day"], Value::Null);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"4\" failures=\"0\""), "{xml}");
    crate::support::junit::validate("simulate_thresholds_pass", &xml);

    // The same run, a threshold that cannot hold: exit 1, FAILED in text, a JUnit failure.
    let (code, stdout, _) = simulate_cli(
        "threshold-24-then-25.toml",
        &[
            "--threshold",
            "activated>=1@day1",
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("activated>=1@day1"))
        .unwrap();
    assert!(line.contains("day 1") && line.ends_with("FAILED"), "{line}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(
        xml.contains("<failure message=\"activated = 0 at day 1, limit &gt;= 1\""),
        "{xml}"
    );
    crate::support::junit::validate("simulate_thresholds_fail", &xml);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_threshold_or_a_day_past_the_scenario_is_a_usage_error() {
    for (expr, says) in [
        ("licensed>1", "unknown metric"),
        ("activated>1@day0", "not a day"),
        ("never_activated<1@day2", "takes no @day"),
        ("activated>=100%@day999", "past the scenario's"),
    ] {
        let (code, _, stderr) = simulate_cli("failover.toml", &["--threshold", expr]);
        assert_eq!(code, Some(2), "{expr}: {stderr}");
        assert!(
            stderr.contains(&format!("--threshold {expr:?}")) && stderr.contains(says),
            "{expr}: {stderr}"
        );
    }
}

#[test]
fn html_page_shows_states_hosts_activation_times_and_events() {
    let dir = std::env::temp_dir().join(format!("kmsharness-sim-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("r.html");
    let (code, _, stderr) = simulate_cli("failover.toml", &["--html", html.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let page = std::fs::read_to_string(&html).unwrap();
    for part in [
        "Machines by state at the end of each day",
        "Count each host returns",
        "Requests each host answered per day",
        "Time from first boot to first activation",
        "Hosts down (bars)",
        "failover",
    ] {
        assert!(page.contains(part), "{part}");
    }
    assert_eq!(page.matches("<svg").count(), 5, "five plots");
    let _ = std::fs::remove_dir_all(&dir);
}
