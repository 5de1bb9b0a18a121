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

/// A fresh scratch directory for this test process, named by `tag`.
pub(crate) fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kmsharness-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

/// The catalog file shipped for the products whose KMS IDs only py-kms gives.
const UNVERIFIED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/vectors/catalog/unverified-2024-2025.toml"
);

fn strip_origins(mut doc: serde_json::Value) -> serde_json::Value {
    for list in ["skus", "host_key_groups"] {
        let mut items = doc[list].as_array().unwrap().clone();
        for item in &mut items {
            item.as_object_mut().unwrap().remove("origin");
        }
        items.sort_by_key(|i| i["id"].as_str().or(i["name"].as_str()).map(str::to_owned));
        doc[list] = serde_json::Value::Array(items);
    }
    doc
}

#[test]
fn catalog_listing_reads_back_as_a_catalog_file() {
    let dir = scratch("catalog");
    let file = dir.join("catalog.json");
    let (code, listing, _) = kmsharness(&["activate", "--list", "--json"]);
    assert_eq!(code, 0);
    std::fs::write(&file, &listing).unwrap();
    let path = file.to_str().unwrap();
    let (code, again, stderr) = kmsharness(&["--catalog", path, "activate", "--list", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let again_doc: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert!(
        again_doc["skus"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["origin"] == format!("--catalog {path}")),
        "every entry now comes from the file"
    );
    assert_eq!(
        strip_origins(serde_json::from_str(&listing).unwrap()),
        strip_origins(again_doc)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn catalog_file_adds_products_every_subcommand_sees() {
    // Without the file the product is unknown; with it, listed.
    let (code, builtin_text, stderr) = kmsharness(&["activate", "--list"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!builtin_text.contains("Windows Server 2025 Datacenter"));
    let (code, text, stderr) = kmsharness(&["--catalog", UNVERIFIED, "activate", "--list"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(text.contains("Windows Server 2025 Datacenter"), "{text}");
    let builtin = builtin_text.lines().count();
    assert_eq!(
        text.lines().count(),
        builtin + 16,
        "4 Server 2025 and 12 Office LTSC 2024 SKUs"
    );
    // The option is global: after the subcommand too.
    let (code, json, _) = kmsharness(&["activate", "--list", "--json", "--catalog", UNVERIFIED]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let dc = doc["skus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Windows Server 2025 Datacenter")
        .expect("listed");
    assert_eq!(dc["threshold"], 5);
    assert!(
        dc["kms_source"].as_str().unwrap().starts_with("unverified"),
        "{dc}"
    );
    assert_eq!(
        dc["activated_by"],
        serde_json::json!(["Volume License for Windows Server 2025"])
    );
    // Load, with a mix naming a product only the file has, against the bundled host, which
    // takes the file's Office LTSC 2024 key to serve it: no refusal.
    let dir = scratch("catalog-mix");
    let mix = dir.join("mix.toml");
    std::fs::write(
        &mix,
        "[[products]]\nproduct = \"Office LTSC Professional Plus 2024\"\nweight = 1\n",
    )
    .unwrap();
    let (code, out, stderr) = kmsharness(&[
        "load",
        "--catalog",
        UNVERIFIED,
        "--mix",
        mix.to_str().unwrap(),
        "--clients",
        "10",
        "-n",
        "40",
        "-c",
        "2",
        "--warmup",
        "0s",
        "--json",
        "-",
    ]);
    assert_eq!(code, 0, "{stderr}\n{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Office activates at a count of 5: with 10 machines, each activated once 5 had asked.
    assert!(report["activated"].as_u64().unwrap() >= 5, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn catalog_file_errors_name_the_file_and_entry() {
    let (code, _, stderr) = kmsharness(&[
        "--catalog",
        "/nonexistent/catalog.toml",
        "activate",
        "--list",
    ]);
    assert_eq!(code, 6, "{stderr}");
    assert!(
        stderr.contains("--catalog: cannot read /nonexistent/catalog.toml"),
        "{stderr}"
    );
    let dir = scratch("catalog-bad");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[skus]]\nname = \"X\"\nid = \"00000000-0000-4000-8000-000000000001\"\nkms_id = \"00000000-0000-4000-8000-000000000002\"\n",
    )
    .unwrap();
    let (code, _, stderr) = kmsharness(&["--catalog", bad.to_str().unwrap(), "serve"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("kmsharness serve: "), "{stderr}");
    assert!(stderr.contains("skus[0] (\"X\"): kms_id"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An output that cannot be written stops a run before it starts (nothing is measured and
/// nothing printed), with exit 6 naming the option and the file.
#[test]
fn unwritable_outputs_fail_before_the_run() {
    for args in [
        &["conform", "--junit", "/nonexistent/dir/conform.xml"][..],
        &["load", "-d", "1s", "--json", "/nonexistent/dir/load.json"][..],
        &[
            "load",
            "-d",
            "1s",
            "--hdr-log",
            "/nonexistent/dir/load.hlog",
        ][..],
        &["load", "-d", "1s", "--record", "/nonexistent/dir/load.pcap"][..],
    ] {
        let (code, stdout, stderr) = kmsharness(args);
        assert_eq!(code, 6, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?} ran: {stdout}");
        assert!(
            stderr.contains("cannot write /nonexistent/dir/"),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// A missing input file is exit 6 in every subcommand, with one line naming it.
#[test]
fn a_missing_input_file_is_exit_6_everywhere() {
    let missing = "/nonexistent/input";
    for args in [
        &["load", "--mix", missing, "-d", "1s"][..],
        &["load", "--from-capture", missing, "-d", "1s"][..],
        &["replay", missing][..],
        &["inspect", missing][..],
        &["report", "merge", missing][..],
        &["serve", "--config", missing][..],
        &["conform", "--vectors", missing][..],
        &["--catalog", missing, "activate", "--list"][..],
    ] {
        let (code, _, stderr) = kmsharness(args);
        assert_eq!(code, 6, "{args:?}: {stderr}");
        assert!(stderr.contains(missing), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}

/// `load --config FILE` and `conform --config FILE` take any option under its long name; the
/// command line wins over the file.
#[test]
fn load_and_conform_take_their_options_from_a_config_file() {
    let dir = scratch("config");
    let load = dir.join("load.toml");
    std::fs::write(
        &load,
        "clients = 30\nrequests = 60\nconnections = 2\nwarmup = \"0s\"\nmode = \"reuse\"\nquiet = true\n",
    )
    .unwrap();
    let load = load.to_str().unwrap();
    let (code, out, stderr) = kmsharness(&["load", "--config", load, "--json", "-"]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["clients"], 30, "{out}");
    assert_eq!(report["mode"], "reuse", "{out}");
    let (code, out, stderr) =
        kmsharness(&["load", "--config", load, "--clients", "40", "--json", "-"]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["clients"], 40, "the command line wins: {out}");
    let conform = dir.join("conform.json");
    std::fs::write(
        &conform,
        r#"{"case": ["counting.cold-start"], "json": true}"#,
    )
    .unwrap();
    let (code, out, stderr) = kmsharness(&["conform", "--config", conform.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["cases"].as_array().unwrap().len(), 1, "{out}");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "clients = { a = 1 }\n").unwrap();
    let (code, _, stderr) = kmsharness(&["load", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("kmsharness load: ") && stderr.contains("clients"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
