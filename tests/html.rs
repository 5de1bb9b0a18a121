//! HTML reports in a real browser: each kind of page (load, merged load, replay, conform,
//! inspect, simulate), written by `report html` from a saved JSON report and by each
//! subcommand's `--html` on its run, is opened in headless Chromium
//! (Debian's `chromium`, installed by `.ci/run`), screenshotted, and must not be blank (the PNG
//! is not one colour) nor log a console error. Without a browser it writes a `SKIPPED:` line
//! to the process's stderr (shown by `cargo test`, as the IPv6 skips are) so that the README's
//! `cargo test` passes on a fresh machine, never silently; `KMSHARNESS_REQUIRE_BROWSER=1`
//! (which `.ci/run` sets) makes a missing browser a failure instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_kmsharness");
/// Set where a missing browser must fail the test (CI, which installs one).
const REQUIRE_ENV: &str = "KMSHARNESS_REQUIRE_BROWSER";

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kmsharness-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn browser() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

fn run(args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Screenshots `page`; the PNG's pixels and the browser's log.
fn screenshot(browser: &str, page: &Path, png: &Path) -> (Vec<u8>, String) {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1100,1400",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{}: {log}", page.display());
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (buf, log)
}

#[test]
fn every_kind_of_report_renders_in_a_browser() {
    let Some(browser) = browser() else {
        assert!(
            std::env::var_os(REQUIRE_ENV).is_none(),
            "no chromium installed (apt-get install chromium), and {REQUIRE_ENV} is set"
        );
        // Straight to stderr: the harness would drop an eprintln! of a passing test.
        let line = "SKIPPED: every_kind_of_report_renders_in_a_browser: no chromium installed \
                    (apt-get install chromium)\n";
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        return;
    };
    let dir = scratch();
    let p = |name: &str| dir.join(name).display().to_string();
    let capture = concat!(env!("CARGO_MANIFEST_DIR"), "/captures/kmsharness-v6.pcap");
    let load = |output: &str, file: &str| {
        run(&["load", "-n", "200", "--warmup", "0s", "-q", output, file]);
    };
    load("--json", &p("load.json"));
    run(&[
        "report",
        "merge",
        &p("load.json"),
        &p("load.json"),
        "-o",
        &p("merged.json"),
    ]);
    run(&["replay", capture, "--json", &p("replay.json")]);
    let conform = Command::new(BIN)
        .args(["conform", "--json"])
        .output()
        .unwrap();
    std::fs::write(p("conform.json"), conform.stdout).unwrap();
    let inspect = Command::new(BIN)
        .args(["inspect", "--json", capture])
        .output()
        .unwrap();
    std::fs::write(p("inspect.json"), inspect.stdout).unwrap();
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/vectors/scenarios/failover.toml"
    );
    run(&["simulate", scenario, "--json", &p("simulate.json")]);
    let mut pages = Vec::new();
    for kind in ["load", "merged", "replay", "conform", "inspect", "simulate"] {
        let page = dir.join(format!("{kind}.html"));
        run(&[
            "report",
            "html",
            &p(&format!("{kind}.json")),
            "-o",
            &page.display().to_string(),
        ]);
        pages.push((kind.to_owned(), page));
    }
    // And each subcommand's own --html, written on the run.
    let html = |kind: &str| p(&format!("{kind}-run.html"));
    load("--html", &html("load"));
    run(&["replay", capture, "--html", &html("replay")]);
    run(&["conform", "--html", &html("conform")]);
    run(&["inspect", capture, "--html", &html("inspect")]);
    run(&["simulate", scenario, "--html", &html("simulate")]);
    for kind in ["load", "replay", "conform", "inspect", "simulate"] {
        pages.push((format!("{kind} --html"), PathBuf::from(html(kind))));
    }
    for (kind, page) in pages {
        let html = std::fs::read_to_string(&page).unwrap();
        // Nothing to fetch: no source, link or script (the SVG namespace is only a name).
        for fetch in [" src=", "href=", "<script", "<link", "url("] {
            assert!(!html.contains(fetch), "{kind}: {fetch}");
        }
        assert!(html.contains("<svg"), "{kind}: no plot");
        let png = page.with_extension("png");
        let (pixels, log) = screenshot(browser, &page, &png);
        let first = &pixels[..4];
        assert!(
            pixels.chunks(4).any(|px| px != first),
            "{kind}: the screenshot is one colour"
        );
        // Chromium logs a page's console messages as `CONSOLE(...)` lines at --v=0.
        let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
        assert!(console.is_empty(), "{kind}: console messages: {console:#?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
