//! The built binary as a service manager runs it: SIGTERM stops `serve` (state written) and
//! `load` (report printed, 130); a state file that cannot be written stops the start with 6;
//! the open-file limit caps `--max-connections`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kmsharness");

/// Longest wait for a child to do what it should do at once: a guard against hangs only.
const GUARD: Duration = Duration::from_secs(120);

/// A scratch directory unique to this test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("kmsharness-process-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills the child on drop, so a failing test leaves no process behind.
pub(crate) struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reaped {
    /// The child's process ID.
    pub(crate) fn id(&self) -> u32 {
        self.0.id()
    }

    fn term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits (bounded) for the child's exit.
    fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < GUARD, "no exit within {GUARD:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until the child handles SIGTERM (Linux: its SigCgt mask has bit 15).
    #[cfg(target_os = "linux")]
    fn wait_for_sigterm_handler(&self) {
        let started = Instant::now();
        let status = format!("/proc/{}/status", self.0.id());
        loop {
            let text = std::fs::read_to_string(&status).unwrap_or_default();
            let caught = text
                .lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
                .unwrap_or(0);
            if caught & (1 << (15 - 1)) != 0 {
                return;
            }
            assert!(
                started.elapsed() < GUARD,
                "no SIGTERM handler within {GUARD:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts `serve -q -L 127.0.0.1:0 ARGS` and returns it with its listening address.
pub(crate) fn serve(args: &[&str]) -> (Reaped, String) {
    let mut full = vec!["-q", "-L", "127.0.0.1:0"];
    full.extend_from_slice(args);
    let (child, addr, lines) = serve_exactly(&full);
    // Keep draining stderr so the child never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

/// Starts `serve ARGS` on the virtual clock with a control port, both on loopback port 0;
/// returns it with its KMS and control addresses.
pub(crate) fn serve_with_control(args: &[&str]) -> (Reaped, String, String) {
    let mut full = vec![
        "-q",
        "-L",
        "127.0.0.1:0",
        "--clock",
        "virtual",
        "--control",
        "127.0.0.1:0",
    ];
    full.extend_from_slice(args);
    let (child, addr, mut lines) = serve_exactly(&full);
    let control = after(&mut lines, "kmsharness serve: control port on ");
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr, control)
}

/// The rest of a child's stderr, line by line.
type StderrLines = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// What follows `prefix` on the next line of `lines` that starts with it.
fn after(lines: &mut StderrLines, prefix: &str) -> String {
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("serve ended before it printed {prefix:?}"))
            .unwrap();
        if let Some(a) = line.strip_prefix(prefix) {
            return a.to_owned();
        }
    }
}

/// Starts `serve ARGS` and returns it with its listening address and the rest of its stderr,
/// which the caller must keep reading.
fn serve_exactly(args: &[&str]) -> (Reaped, String, StderrLines) {
    let mut child = Reaped(
        Command::new(BIN)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = after(&mut lines, "kmsharness serve: listening on ");
    (child, addr, lines)
}

fn activate(addr: &str) {
    let out = Command::new(BIN)
        .args(["activate", addr])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "activate: {out:?}");
}

fn clients(path: &Path) -> usize {
    let bytes = std::fs::read(path).expect("the state file");
    let state = kmsharness::proto::host::state::decode_state(&bytes).unwrap();
    state.tables.iter().map(|t| t.clients.len()).sum()
}

#[cfg(unix)]
#[test]
fn sigterm_stops_serve_and_writes_its_state() {
    let dir = Scratch::new("sigterm-serve");
    let state = dir.path("state.json");
    let state_arg = state.display().to_string();
    // A long save interval is not configurable here: the default (10 s) is longer than the
    // test, so only the shutdown writes the file.
    let (mut child, addr) = serve(&["--state", &state_arg]);
    activate(&addr);
    child.term();
    let status = child.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(clients(&state), 1);
}

#[cfg(target_os = "linux")]
#[test]
fn sigterm_cuts_load_short_with_its_report() {
    let mut child = Reaped(
        Command::new(BIN)
            .args(["load", "-d", "30s", "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    child.wait_for_sigterm_handler();
    let started = Instant::now();
    child.term();
    let status = child.wait();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "ran to its end"
    );
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}: {out}");
    assert!(out.contains("(interrupted)"), "{out}");
}

/// Runs `serve ARGS` to its end (it must stop at start) and returns its status and stderr.
fn serve_fails(args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "-q", "-L", "127.0.0.1:0"]).args(args);
    let child = Reaped(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut child = child;
    let status = child.wait();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err)
}

#[test]
fn unwritable_state_path_stops_the_start_with_6() {
    let dir = Scratch::new("unwritable");
    let missing = dir.path("missing/state.json");
    let (code, err) = serve_fails(&["--state", &missing.display().to_string()]);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("cannot write"), "{err}");
    let (code, err) = serve_fails(&["--state", &dir.0.display().to_string()]);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("directory"), "{err}");
}

#[cfg(unix)]
#[test]
fn state_file_named_tmp_is_saved_and_restored() {
    let dir = Scratch::new("tmp-name");
    let state = dir.path("x.tmp");
    let state_arg = state.display().to_string();
    let (mut child, addr) = serve(&["--state", &state_arg]);
    activate(&addr);
    child.term();
    assert_eq!(child.wait().code(), Some(0));
    assert_eq!(clients(&state), 1);
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[cfg(unix)]
#[test]
fn new_key_group_with_a_state_file_names_epid() {
    let dir = Scratch::new("key-group");
    let state = dir.path("state.json");
    let state_arg = state.display().to_string();
    let (mut child, _) = serve(&["--state", &state_arg]);
    child.term();
    assert_eq!(child.wait().code(), Some(0));
    let (code, err) = serve_fails(&[
        "--state",
        &state_arg,
        "--key-group",
        "Volume License for Windows Server 2022",
        "--key-group",
        // Not among the default groups the state was saved with.
        "Volume License for Office 2019",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--epid"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[cfg(unix)]
#[test]
fn max_connections_is_capped_below_the_file_limit() {
    let child = Reaped(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -n 300 && exec {BIN} serve -q -L 127.0.0.1:0 --max-connections 10000"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut child = child;
    let stderr = child.0.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut capped = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("capped") {
            capped = Some(line);
        } else if line.contains("listening on") {
            break;
        }
    }
    let capped = capped.expect("no line saying the limit capped --max-connections");
    assert!(capped.contains("10000 capped to 236"), "{capped}");
    child.term();
    child.wait();
}

/// `--catalog` reaches `serve` and `activate` alike: a Windows Server 2025 client, a product
/// only the shipped unverified catalog holds, is activated by a host holding that catalog's
/// Server 2025 key, and is an unknown product without the file.
#[test]
fn catalog_file_serves_and_activates_windows_server_2025() {
    let catalog = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/vectors/catalog/unverified-2024-2025.toml"
    );
    let (_host, addr) = serve(&[
        "--catalog",
        catalog,
        "--key-group",
        "Volume License for Windows Server 2025",
    ]);
    let run = |with_catalog: bool| {
        let mut cmd = Command::new(BIN);
        if with_catalog {
            cmd.args(["--catalog", catalog]);
        }
        cmd.args([
            "activate",
            &addr,
            "-l",
            "Windows Server 2025 Datacenter",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap()
    };
    let out = run(true);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = report.to_string();
    assert!(
        text.contains("c052f164-cdf6-409a-a0cb-853ba0f0f55a"),
        "{text}"
    );
    assert!(text.contains("\"count\":1"), "{text}");
    let out = run(false);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Windows Server 2025 Datacenter"),
        "{stderr}"
    );
}

/// `activate ADDR --json`, which must succeed; its first exchange.
fn first_exchange(addr: &str) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["activate", addr, "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["exchanges"][0].take()
}

/// Each host process starts its association groups at a random value (a constant one is an
/// emulator's tell: py-kms answers 0x1063bf3f on every connection), then counts up.
#[test]
fn association_groups_start_at_random_per_process() {
    let group = |addr: &str| -> u64 {
        let e = first_exchange(addr);
        e["bind"]["assoc_group"]
            .as_u64()
            .unwrap_or_else(|| panic!("no assoc_group in {e}"))
    };
    let (_a, addr_a) = serve(&[]);
    let (_b, addr_b) = serve(&[]);
    let (first_a, second_a, first_b) = (group(&addr_a), group(&addr_a), group(&addr_b));
    assert_eq!(
        second_a,
        first_a.wrapping_add(1) & 0xffff_ffff,
        "counts up per connection"
    );
    assert_ne!(first_a, first_b, "two processes, two random starts");
    for g in [first_a, first_b] {
        assert_ne!(g, 0);
        assert_ne!(g, 0x1063_0000, "the old constant start");
        assert_ne!(g, 0x1063_bf3f, "py-kms's constant");
    }
}

/// A build 26100 host (Windows Server 2025) generates its ePIDs for that build, and `--state`
/// keeps them across a restart: a genuine host's ePID does not change when its service does.
#[test]
fn epid_of_a_26100_host_survives_a_restart() {
    let dir = Scratch::new("epid-26100");
    let state = dir.path("state.json");
    let state_arg = state.display().to_string();
    let epid = |addr: &str| -> String {
        let e = first_exchange(addr);
        e["response"]["epid"]
            .as_str()
            .unwrap_or_else(|| panic!("no ePID in {e}"))
            .to_owned()
    };
    let args = ["--state", &state_arg, "--host-build", "26100"];
    let (mut first, addr) = serve(&args);
    let before = epid(&addr);
    assert!(before.contains("-26100.0000-"), "{before}");
    first.term();
    assert_eq!(first.wait().code(), Some(0));
    let (_second, addr) = serve(&args);
    assert_eq!(epid(&addr), before);
}

/// README's `host.toml`, the block that lists every key `serve --config` takes: each is
/// accepted (unknown keys are errors), and `quiet` and `record` take effect from the file.
#[test]
fn serve_config_takes_every_key_the_readme_lists() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("# host.toml: every key serve --config takes")
        .expect("README lists the serve config keys");
    let block = &readme[start..];
    let block = &block[..block.find("```").unwrap()];
    let dir = Scratch::new("serve-config");
    let (state, record) = (dir.path("hosts.json"), dir.path("serve.pcap"));
    let mut doc: toml::Table = toml::from_str(block).unwrap();
    let keys: Vec<String> = doc.keys().cloned().collect();
    assert!(keys.len() >= 21, "{keys:?}");
    // Loopback and scratch paths for this run; every other value as the README has it.
    doc.insert(
        "listen".into(),
        toml::Value::Array(vec!["127.0.0.1:0".into()]),
    );
    doc.insert("control".into(), "127.0.0.1:0".into());
    doc.insert("state".into(), state.display().to_string().into());
    doc.insert("record".into(), record.display().to_string().into());
    doc.insert("quiet".into(), true.into());
    let file = dir.path("host.toml");
    std::fs::write(&file, toml::to_string(&doc).unwrap()).unwrap();
    let file_arg = file.display().to_string();
    let (mut child, addr, lines) = serve_exactly(&["--config", &file_arg]);
    let reader = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    activate(&addr);
    child.term();
    assert_eq!(child.wait().code(), Some(0));
    let rest = reader.join().unwrap();
    assert!(
        rest.iter().all(|l| !l.contains("activation granted")),
        "quiet = true from the file: {rest:?}"
    );
    assert!(
        std::fs::metadata(&record).unwrap().len() > 24,
        "record from the file"
    );
    assert!(state.exists(), "state from the file");
}
