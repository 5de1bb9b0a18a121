//! Checking JUnit XML against the schema Jenkins' xUnit plugin uses (`xsd/junit-10.xsd`, see
//! `xsd/README.md`) with `xmllint --schema` from Debian's `libxml2-utils`, which `.ci/run`
//! installs. No well-kept Rust crate validates XML Schema, hence the external tool.

use std::io::Write;
use std::process::Command;

/// The vendored schema.
pub const JUNIT_XSD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/xsd/junit-10.xsd"
);

/// Validates `xml` against [`JUNIT_XSD`], failing the test with xmllint's complaint when it is
/// not valid. Returns false when xmllint is not installed, after writing
/// `SKIPPED: <test>: ...` to stderr (as [`super::common::ipv6_loopback`] does): a missing
/// validator is a visible skip, never a silent pass.
pub fn validate(test: &str, xml: &str) -> bool {
    let path = std::env::temp_dir().join(format!(
        "kmsharness-junit-{}-{}.xml",
        std::process::id(),
        test
    ));
    std::fs::write(&path, xml).unwrap();
    let out = Command::new("xmllint")
        .args(["--noout", "--schema", JUNIT_XSD])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    match out {
        Ok(out) => {
            assert!(
                out.status.success(),
                "JUnit XML not valid against {JUNIT_XSD}:\n{}\n{xml}",
                String::from_utf8_lossy(&out.stderr)
            );
            true
        }
        Err(e) => {
            let line =
                format!("SKIPPED: {test}: xmllint not runnable ({e}); install libxml2-utils\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            false
        }
    }
}
