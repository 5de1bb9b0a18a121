//! `kmsharness fuzz` end to end: nothing found on the healthy bundled host, and a planted bug
//! (`serve --fault panic-unterminated-workstation`) found in a spawned host within a bounded
//! number of cases.

use crate::load::kmsharness;

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
    let ran = kmsharness(&[
        "fuzz", "--spawn", &spawn, "--cases", "200", "--seed", "1", "--out", out,
    ]);
    let kept = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ran.code, Some(1), "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("panic"), "{}", ran.stdout);
    assert!(kept > 0, "a finding is kept in --out");
}
