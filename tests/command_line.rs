//! The binary's own conventions: `--version` names the commit, shell completions and the
//! manual page are generated from the same definitions as `--help`.

use std::process::Command;

fn kmsharness(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kmsharness"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_names_the_build() {
    let (code, stdout, _) = kmsharness(&["--version"]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with(&format!("kmsharness {} (", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
}

#[test]
fn completions_and_manual_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, stdout, stderr) = kmsharness(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        for sub in ["activate", "serve", "load", "inspect", "replay", "conform"] {
            assert!(stdout.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let (code, stdout, _) = kmsharness(&["man"]);
    assert_eq!(code, 0);
    assert!(stdout.contains(".TH kmsharness 1"), "{stdout}");
    assert!(stdout.contains("conform"));
    let (code, _, stderr) = kmsharness(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{stderr}");
}
