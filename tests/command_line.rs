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

#[test]
fn activate_list_json_names_every_skus_source() {
    let (code, stdout, stderr) = kmsharness(&["activate", "--list", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(doc["format"], "kmsharness-catalog/1");
    let skus = doc["skus"].as_array().unwrap();
    assert!(skus.len() >= 170, "{}", skus.len());
    for s in skus {
        for field in ["id", "name", "kms_id", "kms_name", "application", "source"] {
            assert!(s[field].is_string(), "{field} in {s}");
        }
        assert!(s["protocol"].is_u64() && s["threshold"].is_u64(), "{s}");
        assert!(!s["activated_by"].as_array().unwrap().is_empty(), "{s}");
    }
    let by_name = |n: &str| skus.iter().find(|s| s["name"] == n).unwrap();
    let se = by_name("Windows 11 SE");
    assert!(
        se["source"]
            .as_str()
            .unwrap()
            .starts_with("unverified: only py-kms")
    );
    assert_eq!(se["threshold"], 25);
    let ltsc = by_name("Windows 10/11 Enterprise LTSC 2019/2021/2024");
    let groups: Vec<_> = ltsc["activated_by"].as_array().unwrap().iter().collect();
    assert!(groups.contains(&&serde_json::json!(
        "Volume License for Windows Server 2025"
    )));
    let ws = by_name("Windows Server 2022 Datacenter");
    assert_eq!(ws["threshold"], 5);
    assert_eq!(ws["kms_id"], "b74263e4-0f92-46c6-bcf8-c11d5efe2959");
    let hkg = doc["host_key_groups"].as_array().unwrap();
    let ws2022 = hkg
        .iter()
        .find(|g| g["name"] == "Volume License for Windows Server 2022")
        .unwrap();
    assert_eq!(ws2022["key_ids"], serde_json::json!([30000, 20029999]));
    // The plain listing is unchanged: one line a SKU.
    let (code, text, _) = kmsharness(&["activate", "--list"]);
    assert_eq!(code, 0);
    assert_eq!(text.lines().count(), skus.len());
}
