//! `kmsharness fuzz` end to end: nothing found on the healthy bundled host, and each planted
//! bug of `serve` (`--fault panic-unterminated-workstation`, `stall-on-bad-length`,
//! `abort-on-ndr-count`) found in a spawned host within a bounded number of cases.

use serde_json::Value;

use crate::load::kmsharness;
use crate::support::schema::Schema;

#[test]
fn fuzz_finds_nothing_on_the_healthy_bundled_host() {
    let dir = std::env::temp_dir().join(format!("kmsharness-fuzz-ok-{}", std::process::id()));
    let out = dir.to_str().unwrap();
    let ran = kmsharness(&["fuzz", "--cases", "300", "--seed", "1", "--out", out]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
}

#[test]
fn fuzz_finds_a_planted_panic_in_a_spawned_host() {
    let dir = std::env::temp_dir().join(format!("kmsharness-fuzz-bug-{}", std::process::id()));
    let out = dir.to_str().unwrap();
    let spawn = format!(
        "{} serve --fault panic-unterminated-workstation -L 127.0.0.1:{{port}}",
        env!("CARGO_BIN_EXE_kmsharness")
    );
    let json = dir.with_extension("json");
    let ran = kmsharness(&[
        "fuzz",
        "--spawn",
        &spawn,
        "--cases",
        "200",
        "--seed",
        "1",
        "--out",
        out,
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(ran.code, Some(1), "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("panic"), "{}", ran.stdout);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    Schema::load("fuzz-report.schema.json").assert_fits("a report with a finding", &report);
    let finding = &report["findings"][0];
    let saved = format!("{}.json", finding["files"].as_str().unwrap());
    assert!(
        finding["reproduce"]
            .as_str()
            .is_some_and(|r| r.starts_with("kmsharness fuzz --replay ") && r.contains("--spawn")),
        "{finding}"
    );
    // The saved finding re-sent byte for byte: it shows again on the host with the bug, and
    // not on a healthy one.
    let again = kmsharness(&["fuzz", "--replay", &saved, "--spawn", &spawn]);
    assert_eq!(again.code, Some(1), "{}\n{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("reproduced") && again.stdout.contains("panic"));
    let healthy = format!(
        "{} serve -L 127.0.0.1:{{port}}",
        env!("CARGO_BIN_EXE_kmsharness")
    );
    let clean = kmsharness(&["fuzz", "--replay", &saved, "--spawn", &healthy]);
    assert_eq!(clean.code, Some(0), "{}\n{}", clean.stdout, clean.stderr);
    assert!(
        clean.stdout.contains("did not reproduce"),
        "{}",
        clean.stdout
    );
    let not_a_finding = kmsharness(&["fuzz", "--replay", json.to_str().unwrap()]);
    assert_eq!(not_a_finding.code, Some(2), "{}", not_a_finding.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&json);
}

/// `fuzz --spawn` of `serve` with `fault`, seed 1, at most `cases`: its exit code, stdout and
/// the number of files kept.
fn fuzz_planted(fault: &str, cases: &str) -> (Option<i32>, String, usize) {
    let dir = std::env::temp_dir().join(format!("kmsharness-fuzz-{fault}-{}", std::process::id()));
    let out = dir.to_str().unwrap();
    let spawn = format!(
        "{} serve --fault {fault} -L 127.0.0.1:{{port}}",
        env!("CARGO_BIN_EXE_kmsharness")
    );
    let ran = kmsharness(&[
        "fuzz", "--spawn", &spawn, "--cases", cases, "--seed", "1", "--out", out,
    ]);
    let kept = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    (ran.code, format!("{}\n{}", ran.stdout, ran.stderr), kept)
}

#[test]
fn fuzz_finds_a_planted_stall_on_a_lying_length() {
    // Seed 1 lies about a fragment length in case 42; the host then never reads again.
    let (code, out, kept) = fuzz_planted("stall-on-bad-length", "60");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FINDING hang"), "{out}");
    assert!(out.contains("frag_length"), "the mutation is named: {out}");
    assert!(kept > 0, "a finding is kept in --out");
}

#[test]
fn fuzz_finds_a_planted_abort_on_an_ndr_count() {
    // Seed 1 sets the NDR counts to 0xFFFFFFFF in case 15; the host aborts (SIGABRT), is
    // restarted, and the fuzzer goes on.
    let (code, out, kept) = fuzz_planted("abort-on-ndr-count", "40");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FINDING host killed by signal 6"), "{out}");
    assert!(out.contains("host started"), "{out}");
    assert!(kept > 0, "a finding is kept in --out");
}

#[test]
fn the_vlmcsd_asan_finding_replays_byte_for_byte() {
    // Found against vlmcsd under AddressSanitizer (vectors/README.md): the same bytes trip the
    // planted workstation bug of `serve`, and a healthy `serve` answers them.
    let finding = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/vectors/fuzz/vlmcsd-asan-workstation.json"
    );
    let serve = |fault: &str| {
        format!(
            "{} serve {fault} -L 127.0.0.1:{{port}}",
            env!("CARGO_BIN_EXE_kmsharness")
        )
    };
    let planted = serve("--fault panic-unterminated-workstation");
    let ran = kmsharness(&["fuzz", "--replay", finding, "--spawn", &planted]);
    assert_eq!(ran.code, Some(1), "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("reproduced"), "{}", ran.stdout);
    let ran = kmsharness(&["fuzz", "--replay", finding, "--spawn", &serve("")]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
}
