//! The JSON schemas under `docs/` for the outputs that have no other test module of their own:
//! `activate --json`, `activate --list --json` (also the catalog file format), `inspect --json`,
//! `conform --json` and `fuzz --json` (whose reports are validated in `tests/fuzz.rs`). Each checked-in schema must be what `schemars` generates from the
//! report type, and real outputs (from the binary, against the bundled host and the captures)
//! must fit it, as judged by the `jsonschema` crate.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::schema::{self, Schema};

const BIN: &str = env!("CARGO_BIN_EXE_kmsharness");

/// Runs the binary; its exit code and stdout as JSON.
fn json_of(args: &[&str]) -> (i32, Value) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn schemas_are_generated_from_the_report_types() {
    schema::assert_generated::<kmsharness::activate::ActivateReport>("activate-report.schema.json");
    schema::assert_generated::<kmsharness::inspect::InspectDocument>("inspect-report.schema.json");
    schema::assert_generated::<kmsharness::conform::SuiteReport>("conform-report.schema.json");
    schema::assert_generated::<kmsharness::fuzz::FuzzReport>("fuzz-report.schema.json");
    schema::assert_generated_input::<kmsharness::catalog::file::Document>("catalog.schema.json");
}

/// Every kind of ending `activate` reports fits: a validated answer, a refusal, an RPC fault,
/// failed checks, and no connection at all.
#[test]
fn activate_reports_fit_their_schema() {
    let schema = Schema::load("activate-report.schema.json");
    let (_healthy, addr) = crate::process::serve(&[]);
    let (code, v) = json_of(&["activate", &addr, "--json", "-n", "2"]);
    assert_eq!(code, 0, "{v}");
    schema.assert_fits("validated", &v);
    for (fault, status) in [
        ("wrong-hmac", 1),
        ("refuse-all", 5),
        ("wrong-packet-type", 1),
        ("close-after-bind", 3),
    ] {
        let (_host, addr) = crate::process::serve(&["--fault", fault]);
        let (code, v) = json_of(&["activate", &addr, "--json"]);
        assert_eq!(code, status, "{fault}: {v}");
        schema.assert_fits(fault, &v);
    }
    // Nothing listens on port 1 of loopback.
    let (code, v) = json_of(&[
        "activate",
        "127.0.0.1:1",
        "--json",
        "--connect-timeout",
        "2s",
    ]);
    assert_eq!(code, 3, "{v}");
    schema.assert_fits("no connection", &v);
    // The schema does forbid: an outcome outside the list, a missing field.
    let mut bad = v.clone();
    bad["exchanges"][0]["outcome"] = "Connection".into();
    assert!(!schema.violations(&bad).is_empty());
    let mut bad = v;
    bad["exchanges"][0]
        .as_object_mut()
        .unwrap()
        .remove("client_verdict");
    assert!(!schema.violations(&bad).is_empty());
}

/// The catalog listing fits the catalog file schema (it reads back as a catalog file), and so
/// does the shipped catalog of unverified products.
#[test]
fn the_catalog_listing_and_shipped_catalog_fit_the_catalog_schema() {
    let schema = Schema::load("catalog.schema.json");
    let (code, v) = json_of(&["activate", "--list", "--json"]);
    assert_eq!(code, 0);
    schema.assert_fits("activate --list --json", &v);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/vectors/catalog/unverified-2024-2025.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let toml: toml::Value = toml::from_str(&text).unwrap();
    schema.assert_fits(path, &serde_json::to_value(toml).unwrap());
    let mut bad = v;
    bad["skus"][0]["colour"] = "blue".into();
    assert!(!schema.violations(&bad).is_empty());
}

/// Every bundled capture's report fits.
#[test]
fn inspect_reports_of_every_capture_fit_their_schema() {
    let schema = Schema::load("inspect-report.schema.json");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/captures");
    let mut checked = 0;
    let paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    for path in paths {
        let (_, v) = json_of(&["inspect", path.to_str().unwrap(), "--json"]);
        schema.assert_fits(&path.display().to_string(), &v);
        checked += 1;
    }
    assert!(checked > 10);
}

/// A conform run against the bundled host, and one against a faulty host with failures and
/// evidence, fit.
#[test]
fn conform_reports_fit_their_schema() {
    let schema = Schema::load("conform-report.schema.json");
    let (code, v) = json_of(&["conform", "--category", "kms-messages", "--json"]);
    assert_eq!(code, 0, "{v}");
    schema.assert_fits("bundled host", &v);
    let (_host, addr) = crate::process::serve(&["--fault", "wrong-hmac"]);
    let (code, v) = json_of(&[
        "conform",
        "-t",
        &addr,
        "--category",
        "kms-messages",
        "--json",
    ]);
    assert_eq!(code, 1, "{v}");
    assert!(v["summary"]["failed"].as_u64().unwrap() > 0, "{v}");
    schema.assert_fits("faulty host", &v);
}
