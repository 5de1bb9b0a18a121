//! Build script: records the git commit the binary is built from, for `kmsharness --version`.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        // A build from a source archive has no repository to ask.
        .unwrap_or_else(|| "unknown commit".to_owned());
    println!("cargo:rustc-env=KMSHARNESS_COMMIT={commit}");
    // A new commit or checkout moves HEAD (or the branch it names).
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-changed=.git/packed-refs");
}
