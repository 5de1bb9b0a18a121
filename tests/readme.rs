//! The README's command blocks, run as written with loopback targets substituted: each
//! `kmsharness` line must exit as the README says (0 unless [`EXPECTED`] names its status), and a
//! line the test cannot run must be named in [`NOT_RUN`] with why, so a new or changed line
//! fails here until it works.
//!
//! Substitutions, the same for every line (a user would make them for their own site):
//! - targets (`kms.example.com[:1688]`, `127.0.0.1[:1688]`, none for `activate`) become one
//!   bundled host that the test starts on an ephemeral loopback port;
//! - `serve` lines listen on an ephemeral port (`-L ...:0`, `--control ...:0`), are checked to
//!   listen, then stopped with SIGTERM, which must end them with status 0;
//! - `load` runs are cut to one second (`-d 30s`, `-d 1m`, no `-d`) or 2000 requests, and
//!   open-loop rates to 200/s;
//! - files named in the README are made first: `site.pcap`, `big.pcap` and `midstream.pcap`
//!   are checked-in captures, `site.pcapng` the same capture rewritten as pcapng, `mix.toml`
//!   the README's own TOML block, `gen1.json` and `gen2.json` two short load reports,
//!   `vectors/catalog/` the repository's;
//! - `HOME` is a scratch directory, so `~/...` paths stay inside it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kmsharness");

/// Longest wait for one line: a guard against hangs only.
const GUARD: Duration = Duration::from_secs(120);

/// Lines that exit with a status other than 0 on purpose, as the README says beside them.
const EXPECTED: &[(&str, i32)] = &[
    ("kmsharness activate 127.0.0.1 -K 6.1 --json", 5),
    (
        "kmsharness replay site.pcap --verbatim -t 127.0.0.1:1688 --speed 10 --repeat 3 --json r.json",
        5,
    ),
];

/// Lines not run here, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "cargo run --release -- load",
        "the same as `kmsharness load`, run below; .ci/run builds in release",
    ),
    ("cargo test", "this test is part of it"),
    (
        "fuzz-targets/fuzz",
        "hours of fuzzing; tests/fuzz_corpus.rs replays its committed corpora instead",
    ),
    (
        "kmsharness --catalog py-kms/KmsDataBase.xml activate --list",
        "py-kms's database is not in this repository; src/catalog/file/tests.rs reads a \
         database of the same shape",
    ),
    (
        "cargo install --path .",
        "installs into ~/.cargo; the binary under test is the one cargo built",
    ),
    (
        "kmsharness load -t kms.example.com --site 100000 -d 8h",
        "a soak: cut to the test's 1 s, a 100,000-machine site sends 0.17 requests/s, so no \
         machine is due and load exits 1 (nothing validated); tests/load.rs runs --site",
    ),
    (
        "kmsharness activate .example.com",
        "needs the system resolver to publish _vlmcs._tcp SRV records; discovery is proven \
         against a loopback DNS responder in tests/network.rs",
    ),
];

/// A scratch directory for the whole walkthrough, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The command lines of the README's `sh` blocks, in order, comments stripped, with the
/// README's TOML blocks.
fn readme() -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let (mut lines, mut tomls) = (Vec::new(), Vec::new());
    let mut block: Option<&str> = None;
    let mut toml = String::new();
    for line in text.lines() {
        match (block, line.strip_prefix("```")) {
            (None, Some(lang)) => block = Some(lang.trim()),
            (Some(lang), Some(_)) => {
                if lang == "toml" {
                    tomls.push(std::mem::take(&mut toml));
                }
                block = None;
            }
            (Some("sh"), None) => {
                let command = line.split("  #").next().unwrap_or("").trim();
                if !command.is_empty() && !command.starts_with('#') {
                    lines.push(command.to_owned());
                }
            }
            (Some("toml"), None) => {
                toml.push_str(line);
                toml.push('\n');
            }
            _ => {}
        }
    }
    (lines, tomls)
}

/// A child killed on drop.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child's exit status, waited for at most [`GUARD`].
fn exit(child: &mut Reaped) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < GUARD {
        if let Some(status) = child.0.try_wait().ok()? {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Starts the test's own host and returns it with its address.
fn host() -> (Reaped, String) {
    let mut child = Reaped(
        Command::new(BIN)
            .args(["serve", "-q", "-L", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let addr = listening(&mut child).expect("the test's host listens");
    (child, addr)
}

/// Reads the child's stderr until `serve` says where it listens; keeps draining it after.
fn listening(child: &mut Reaped) -> Option<String> {
    let stderr = child.0.stderr.take()?;
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next()?.ok()?;
        if let Some(a) = line.strip_prefix("kmsharness serve: listening on ") {
            break a.split_whitespace().next()?.to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Some(addr)
}

/// The line with the substitutions of the module comment.
fn substitute(line: &str, host: &str) -> String {
    let mut words: Vec<String> = line
        .trim_end_matches('&')
        .trim()
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    let mut glued = words.join(" ");
    for from in [
        "kms.example.com:1688",
        "kms.example.com",
        "127.0.0.1:1688",
        "127.0.0.1:1689",
    ] {
        glued = glued.replace(from, host);
    }
    words = glued.split(' ').map(str::to_owned).collect();
    for w in &mut words {
        if w == "127.0.0.1" {
            *w = host.to_owned();
        }
    }
    match words.get(1).map(String::as_str) {
        Some("activate") => {
            let has_target = words.get(2).is_some_and(|w| !w.starts_with('-'));
            if !has_target {
                words.insert(2, host.to_owned());
            }
        }
        Some("load") => {
            let mut i = 0;
            while i + 1 < words.len() {
                match words[i].as_str() {
                    "-d" => words[i + 1] = "1s".to_owned(),
                    "-n" => words[i + 1] = "2000".to_owned(),
                    // Open-loop rates cut to 200/s: on a busy 2-core machine a debug build
                    // cannot open 2000 fresh connections a second, and the line would fail on
                    // the machine, not on what the README says.
                    "--rate" | "-r" => words[i + 1] = "200".to_owned(),
                    _ => {}
                }
                i += 1;
            }
            if !words.iter().any(|w| w == "-d" || w == "-n") {
                words.extend(["-d".to_owned(), "1s".to_owned()]);
            }
        }
        Some("serve") => {
            // Ephemeral ports for whatever it listens on, the default listener included.
            let mut listens = false;
            for i in 1..words.len() {
                if matches!(words[i - 1].as_str(), "-L" | "--control") {
                    if let Some(colon) = words[i].rfind(':') {
                        words[i].truncate(colon);
                    }
                    words[i].push_str(":0");
                    listens |= words[i - 1] == "-L";
                }
            }
            if !listens {
                words.insert(2, "-L".to_owned());
                words.insert(3, "127.0.0.1:0".to_owned());
            }
        }
        _ => {}
    }
    words.join(" ")
}

/// The pcap records of `pcap` (little-endian, microseconds) as a pcapng file with one
/// Ethernet interface.
fn to_pcapng(pcap: &[u8]) -> Vec<u8> {
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let padded = body.len().div_ceil(4) * 4;
        let total = (12 + padded) as u32;
        out.extend(kind.to_le_bytes());
        out.extend(total.to_le_bytes());
        out.extend(body);
        out.extend(std::iter::repeat_n(0, padded - body.len()));
        out.extend(total.to_le_bytes());
    }
    let u32_at = |at: usize| u32::from_le_bytes(pcap[at..at + 4].try_into().unwrap());
    assert_eq!(u32_at(0), 0xa1b2_c3d4, "a little-endian microsecond pcap");
    let linktype = u32_at(20) as u16;
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend(0x1a2b_3c4d_u32.to_le_bytes());
    shb.extend(1u16.to_le_bytes());
    shb.extend(0u16.to_le_bytes());
    shb.extend((-1i64).to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend(linktype.to_le_bytes());
    idb.extend(0u16.to_le_bytes());
    idb.extend(65535u32.to_le_bytes());
    block(&mut out, 1, &idb);
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let (secs, micros, incl, orig) =
            (u32_at(at), u32_at(at + 4), u32_at(at + 8), u32_at(at + 12));
        let data = &pcap[at + 16..at + 16 + incl as usize];
        let ts = u64::from(secs) * 1_000_000 + u64::from(micros);
        let mut epb = Vec::new();
        epb.extend(0u32.to_le_bytes());
        epb.extend(((ts >> 32) as u32).to_le_bytes());
        epb.extend((ts as u32).to_le_bytes());
        epb.extend(incl.to_le_bytes());
        epb.extend(orig.to_le_bytes());
        epb.extend(data);
        block(&mut out, 6, &epb);
        at += 16 + incl as usize;
    }
    out
}

/// Makes the files the README's lines read.
fn prepare(dir: &Path, tomls: &[String], host: &str) {
    let captures = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let site = captures.join("vlmcs-vlmcsd-v6-n30-one-connection.pcap");
    for name in ["site.pcap", "big.pcap", "midstream.pcap"] {
        std::fs::copy(&site, dir.join(name)).unwrap();
    }
    std::fs::write(
        dir.join("site.pcapng"),
        to_pcapng(&std::fs::read(&site).unwrap()),
    )
    .unwrap();
    let mix = tomls
        .iter()
        .find(|t| t.contains("[[products]]"))
        .expect("the README shows a mix file");
    std::fs::write(dir.join("mix.toml"), mix).unwrap();
    // The catalog files and `simulate`'s scenarios, which the README names by their
    // repository paths.
    for sub in ["vectors/catalog", "vectors/scenarios"] {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join(sub);
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(sub).join(path.file_name().unwrap())).unwrap();
        }
    }
    for dirs in [
        ".local/share/bash-completion/completions",
        ".local/share/man/man1",
    ] {
        std::fs::create_dir_all(dir.join(dirs)).unwrap();
    }
    for report in ["gen1.json", "gen2.json"] {
        let (code, out) = run(
            dir,
            &format!("kmsharness load -t {host} -d 1s --json {report}"),
        );
        assert_eq!(code, Some(0), "making {report}: {out}");
    }
}

/// Runs `line` with `sh -c` in `dir`, the built binary first on PATH; its status and output.
fn run(dir: &Path, line: &str) -> (Option<i32>, String) {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Reaped(
        Command::new("sh")
            .args(["-c", line])
            .current_dir(dir)
            .env("PATH", path)
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Lossy, so that a binary dump on stdout still shows in a failure message.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = r.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = drain(Box::new(child.0.stdout.take().unwrap()));
    let err = drain(Box::new(child.0.stderr.take().unwrap()));
    let status = exit(&mut child).unwrap_or_else(|| panic!("{line}: no exit within {GUARD:?}"));
    let output = format!(
        "stdout:\n{}\nstderr:\n{}",
        out.join().unwrap(),
        err.join().unwrap()
    );
    (status.code(), output)
}

/// Starts a `serve` line, checks it listens, stops it with SIGTERM and expects status 0.
fn serve_line(dir: &Path, line: &str) -> Result<(), String> {
    let bin_dir = Path::new(BIN).parent().unwrap();
    // `exec`, so that the shell's pid is the host's and SIGTERM reaches it.
    let mut child = Reaped(
        Command::new("sh")
            .args(["-c", &format!("exec {}/{line}", bin_dir.display())])
            .current_dir(dir)
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    if listening(&mut child).is_none() {
        let status = child.0.wait().unwrap();
        return Err(format!("{line}: ended ({status}) before it listened"));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status =
        exit(&mut child).ok_or_else(|| format!("{line}: no exit within {GUARD:?} of SIGTERM"))?;
    match status.code() {
        Some(0) => Ok(()),
        other => Err(format!("{line}: SIGTERM ended it with {other:?}, not 0")),
    }
}

#[test]
fn every_readme_command_does_what_the_readme_says() {
    let (lines, tomls) = readme();
    assert!(lines.len() > 20, "README command lines: {lines:?}");
    let dir = std::env::temp_dir().join(format!("kmsharness-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _scratch = Scratch(dir.clone());
    let (_host, addr) = host();
    prepare(&dir, &tomls, &addr);
    let ipv6 =
        crate::support::common::ipv6_loopback("every_readme_command_does_what_the_readme_says");
    let mut failures = Vec::new();
    for line in &lines {
        if let Some((_, why)) = NOT_RUN.iter().find(|(l, _)| line == l) {
            eprintln!("not run: {line}: {why}");
            continue;
        }
        assert!(
            line.starts_with("kmsharness "),
            "README line {line:?} is neither a kmsharness command nor in NOT_RUN"
        );
        let command = substitute(line, &addr);
        if command.starts_with("kmsharness serve") {
            if command.contains("[::1]") && !ipv6 {
                continue;
            }
            if let Err(e) = serve_line(&dir, &command) {
                failures.push(e);
            }
            continue;
        }
        let expected = EXPECTED
            .iter()
            .find(|(l, _)| line == l)
            .map_or(0, |&(_, code)| code);
        // `--fresh-host` says the host has seen no client yet: give it one that has not.
        let fresh = line.contains("--fresh-host").then(host);
        let command = match &fresh {
            Some((_, fresh_addr)) => command.replace(&addr, fresh_addr),
            None => command,
        };
        let (code, output) = run(&dir, &command);
        if code != Some(expected) {
            failures.push(format!(
                "README line {line:?}\n  run as {command:?}\n  exit {code:?}, README says {expected}\n{output}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
