//! Issue 13 §3 conventions, checked on the built binary's real outputs: no Rust Debug names
//! (`ClientOs`, `BadStubData`, `Some(…)`) in text or JSON, no colour on a stream that is not a
//! terminal (the `NO_COLOR` rule itself: `serve::colour`'s unit test).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_kmsharness");

/// Longest wait for a child's next line: a guard against hangs only.
const GUARD: Duration = Duration::from_secs(120);

/// CamelCase words the outputs rightly contain: product names (`MultiPoint`, `PowerPoint`,
/// `OneNote`, `InfoPath`) and the py-kms / vlmcsd data names the catalog cites as sources.
const ALLOWED: &[&str] = &[
    "MultiPoint",
    "PowerPoint",
    "OneNote",
    "InfoPath",
    "KmsDataBase",
    "KmsItem",
    "SkuItem",
    "AppItem",
    "AppItems",
    "CsvlkItem",
    "CsvlkData",
    "ClientLists",
    "HostBuild",
    "HwId",
    "WinChinaGov",
    "ServerRdsh",
    "DefaultKmsProtocol",
    "CreateResponseV6",
];

/// Shortest run of base64 characters taken for encoded data (the reports' HdrHistogram
/// snapshots) rather than words.
const BASE64_RUN: usize = 24;

/// The Rust-looking tokens in `text`: `Some(`, the word `None`, and CamelCase words (two or
/// more capitalised parts, as derived `Debug` prints a variant) that [`ALLOWED`] does not list.
fn rust_names(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    if text.contains("Some(") {
        found.push("Some(".to_owned());
    }
    let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let words = text
        .split(|c: char| !base64(c))
        .filter(|run| run.len() < BASE64_RUN)
        .flat_map(|run| run.split(|c: char| !c.is_ascii_alphanumeric()));
    for word in words {
        if word == "None" {
            found.push(word.to_owned());
        }
        if is_camel(word) && !ALLOWED.contains(&word) {
            found.push(word.to_owned());
        }
    }
    found
}

/// `OpRangeError`, `ClientOs`: an upper-case letter, lower-case letters, then at least one more
/// upper-case letter followed by a lower-case one. Hex digits (`0xC004F041`) and acronyms
/// (`NDR64`, `ThinPC`) are not CamelCase.
fn is_camel(word: &str) -> bool {
    let b = word.as_bytes();
    if b.len() < 4 || !b[0].is_ascii_uppercase() || !b[1].is_ascii_lowercase() {
        return false;
    }
    (2..b.len() - 1).any(|i| b[i].is_ascii_uppercase() && b[i + 1].is_ascii_lowercase())
}

#[test]
fn camel_case_detector() {
    assert!(is_camel("ClientOs"));
    assert!(is_camel("BadStubData"));
    assert!(!is_camel("NDR64"));
    assert!(!is_camel("ThinPC"));
    assert!(!is_camel("Windows"));
    assert!(!is_camel("C004F041"));
    assert_eq!(rust_names("mode Fresh (ChecksFailed)"), ["ChecksFailed"]);
    assert_eq!(rust_names("Some(Refused) None"), ["Some(", "None"]);
    assert!(rust_names("Windows Server 2012 MultiPoint Premium").is_empty());
}

/// Kills the child on drop, so a failing test leaves no process behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `serve` on a free port with `args`; its stderr lines arrive on the receiver.
fn serve(args: &[&str], env: &[(&str, &str)]) -> (Reaped, String, mpsc::Receiver<String>) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "-L", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Reaped(cmd.spawn().unwrap());
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(GUARD)
            .expect("serve ended before it listened");
        if let Some(a) = line.strip_prefix("kmsharness serve: listening on ") {
            break a.to_owned();
        }
    };
    (child, addr, rx)
}

/// Runs the binary with `args` and returns its stdout and stderr together.
fn run(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c != 2),
        "{args:?}: usage error or signal: {text}"
    );
    text
}

/// A scratch file path unique to this process.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "kmsharness-conventions-{}-{name}",
        std::process::id()
    ))
}

#[test]
fn no_rust_names_in_text_or_json_outputs() {
    const CAPTURE: &str = "captures/vlmcs-vlmcsd-v6.pcap";
    let (a, b) = (scratch("a.json"), scratch("b.json"));
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());
    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut check = |args: &[&str]| outputs.push((args.join(" "), run(args)));

    // Against the bundled host: every subcommand's text and JSON.
    check(&["load", "-n", "200", "--warmup", "0s", "--json", a_s]);
    check(&["load", "-n", "100", "--warmup", "0s", "--json", b_s]);
    check(&[
        "load", "--mode", "reuse", "-n", "200", "--warmup", "0s", "--json", "-",
    ]);
    check(&["report", "merge", a_s, b_s]);
    check(&["report", "merge", a_s, b_s, "-o", "-"]);
    check(&["replay", CAPTURE]);
    check(&["replay", CAPTURE, "--json", "-"]);
    check(&["conform"]);
    check(&["conform", "--json"]);
    check(&["activate", "--list"]);
    check(&["activate", "--list", "--json"]);
    check(&["inspect", CAPTURE]);
    check(&["inspect", CAPTURE, "--json"]);

    // Against hosts that refuse or break the rules: the failure paths print the most names.
    let mut logs = Vec::new();
    for fault in [
        "refuse-all",
        "wrong-hmac",
        "close-after-bind",
        "ndr64-refused",
    ] {
        let (_host, addr, log) = serve(&["--fault", fault], &[]);
        check(&["activate", &addr]);
        check(&["activate", &addr, "--json"]);
        check(&["activate", &addr, "-q"]);
        check(&[
            "load", "-t", &addr, "-n", "50", "--warmup", "0s", "--json", "-",
        ]);
        check(&["replay", CAPTURE, "-t", &addr]);
        check(&["conform", "-t", &addr, "--category", "kms-messages"]);
        logs.push((fault, log));
    }
    let mut logged = 0;
    for (fault, log) in logs {
        let lines: Vec<String> = log.try_iter().collect();
        logged += lines.len();
        outputs.push((format!("serve --fault {fault} log"), lines.join("\n")));
    }
    assert!(logged > 0, "serve logged no requests");
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);

    let leaks: Vec<String> = outputs
        .iter()
        .filter_map(|(what, text)| {
            let names = rust_names(text);
            (!names.is_empty()).then(|| format!("{what}: {names:?}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "Rust names in outputs:\n{}",
        leaks.join("\n")
    );
}

/// `serve`'s log lines on a pipe carry no escape sequence, whatever `NO_COLOR` says.
#[test]
fn serve_logs_without_colour_on_a_pipe() {
    for env in [&[][..], &[("NO_COLOR", "")][..], &[("NO_COLOR", "1")][..]] {
        let (_host, addr, log) = serve(&[], env);
        run(&["activate", &addr]);
        let line = log
            .recv_timeout(GUARD)
            .expect("a log line for the activation");
        assert!(line.contains("activation granted"), "{env:?}: {line}");
        assert!(!line.contains('\x1b'), "{env:?}: escape in {line:?}");
    }
}

/// Every duration option takes humantime forms and plain (also decimal) seconds; a bad one is a
/// usage error (2) naming the option.
#[test]
fn duration_options_take_humantime_and_seconds() {
    let status = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Nothing listens on port 1: a valid command line gets as far as connecting (3).
    for t in ["500ms", "10.0", "2", "1m30s"] {
        let (code, err) = status(&[
            "activate",
            "127.0.0.1:1",
            "--connect-timeout",
            t,
            "--read-timeout",
            t,
        ]);
        assert_eq!(code, Some(3), "activate timeouts {t}: {err}");
    }
    let (code, err) = status(&["activate", "127.0.0.1:1", "--read-timeout", "soon"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--read-timeout"), "{err}");
    let (code, err) = status(&[
        "load",
        "-n",
        "20",
        "-d",
        "1h30m",
        "--warmup",
        "500ms",
        "--read-timeout",
        "2.5",
    ]);
    assert_eq!(code, Some(0), "load: {err}");
    let (code, err) = status(&[
        "replay",
        "captures/vlmcs-vlmcsd-v6.pcap",
        "--read-timeout",
        "1500ms",
    ]);
    assert_eq!(code, Some(0), "replay: {err}");
    let (code, err) = status(&[
        "conform",
        "--connect-timeout",
        "2s",
        "--read-timeout",
        "4.5",
        "--list",
    ]);
    assert_eq!(code, Some(0), "conform: {err}");
    let (code, err) = status(&["conform", "--read-timeout", "2h", "--list"]);
    assert_eq!(code, Some(2), "conform over 10m: {err}");
}

/// `activate -q`: one line per request, as vlmcs without `-v`: number, product, version,
/// outcome, then the count and ePID, or the refusal's HRESULT with its name.
#[test]
fn activate_quiet_prints_one_line_per_request() {
    let (_host, addr, _log) = serve(&["-q"], &[]);
    let text = run(&[
        "activate",
        &addr,
        "-q",
        "-n",
        "3",
        "-l",
        "Windows 10/11 Enterprise",
    ]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!(
                "{} of 3  Windows 10/11 Enterprise  6.0  ok  count ",
                i + 1
            )),
            "{line}"
        );
        let epid = line.split("  ePID ").nth(1).expect("an ePID");
        assert_eq!(epid.split('-').count(), 8, "{line}");
    }
    let text = run(&["activate", &addr, "-q", "-K", "6.1"]);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("  refused"), "{text}");
    assert!(text.contains("0x8007000D (ERROR_INVALID_DATA)"), "{text}");
    let (_refusing, addr, _log) = serve(&["-q", "--fault", "refuse-all"], &[]);
    let text = run(&["activate", &addr, "-q"]);
    assert!(
        text.contains("refused  0xC004F041 (SL_E_VL_KEY_MANAGEMENT_SERVICE_NOT_ACTIVATED)"),
        "{text}"
    );
}
