//! `kmsharness conform`: options, validation and running.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::conform::runner::{
    HostUnderTest, RunConfig, SuiteReport, bundled_config, bundled_target, reachable, run_suite,
};
use crate::conform::vector::{self, Profile};

use super::Error;
use crate::exit::Exit;
use crate::net::discovery::{IpPreference, Target};

/// Options of `conform`.
#[derive(Debug, Clone, Args)]
pub struct ConformOpts {
    // Read and removed by `cli::config_file` before clap parses; declared for --help, the
    // completions and the manual page.
    /// TOML or JSON file of options under their long names (`clients = 500`, `mode =
    /// "reuse"`, `threshold = ["p99<5ms"]`); options on the command line win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Host to test (`host[:port]`, `[v6]:port`, `.domain`); without it, the bundled host runs
    /// in-process with a virtual clock.
    #[arg(long, short = 't')]
    pub target: Option<String>,
    /// Hold the host to a genuine Microsoft host's behaviour, or to an emulator's (a host
    /// that grants regardless of counts: the wire protocol only).
    #[arg(long, value_enum, default_value_t = Profile::Genuine)]
    pub profile: Profile,
    /// Run only this case (repeatable).
    #[arg(long = "case", value_name = "ID")]
    pub cases: Vec<String>,
    /// Do not run this case (repeatable); it is reported as skipped.
    #[arg(long = "skip", value_name = "ID")]
    pub skip: Vec<String>,
    /// A failed `should` case fails the run too (exit status 1), not only a `must` case.
    #[arg(long)]
    pub strict: bool,
    /// Run only this family (repeatable): rpc-bind, rpc-calls, kms-messages, counting,
    /// product-policy, session, fingerprints, robustness.
    #[arg(long = "category", value_name = "NAME")]
    pub categories: Vec<String>,
    /// Run cases that change the host's state (counts, cache size) against a real host.
    #[arg(long)]
    pub allow_state_changes: bool,
    /// The target has counted no client yet (just started): run the cases that need that.
    #[arg(long)]
    pub fresh_host: bool,
    /// Print the report as JSON (format kmsharness-conform/1) on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write the report as a self-contained HTML page to FILE: cases by family with
    /// their verdicts, failures with expected, actual and source, the fingerprint verdict.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Read the vector files from DIR instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub vectors: Option<PathBuf>,
    /// List the cases and exit.
    #[arg(long)]
    pub list: bool,
    /// TCP handshake limit: a duration (500ms, 1m) or seconds (2.5).
    #[arg(
        long = "connect-timeout",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub connect_timeout: String,
    /// Reply limit: a duration (500ms, 1m) or seconds (2.5).
    #[arg(long = "read-timeout", default_value = "5s", value_name = "DURATION")]
    pub read_timeout: String,
}

impl ConformOpts {
    /// Validates into a run configuration (target resolution happens in [`main`]).
    pub fn config(&self) -> Result<RunConfig, Error> {
        let vectors = vector::load(self.vectors.as_deref())?;
        let mut config = RunConfig::new(vectors);
        config.profile = self.profile;
        config.cases = self.cases.clone();
        config.categories = self.categories.clone();
        config.skip = self.skip.clone();
        config.strict = self.strict;
        config.allow_state_changes = self.allow_state_changes;
        config.fresh_host = self.fresh_host;
        // Ten minutes: longer and a silent host stalls the run past any use.
        const MAX: Duration = Duration::from_secs(600);
        const EXPECTED: &str =
            "a duration above 0 and at most 10m, e.g. 5s, 500ms or 2.5 (seconds)";
        config.connect_timeout =
            super::timeout("--connect-timeout", &self.connect_timeout, MAX, EXPECTED)?;
        config.read_timeout = super::timeout("--read-timeout", &self.read_timeout, MAX, EXPECTED)?;
        config.validate()?;
        Ok(config)
    }
}

fn list(w: &mut dyn std::io::Write, config: &RunConfig) -> std::io::Result<()> {
    for f in &config.vectors {
        writeln!(w, "{} ({})", f.family, f.title)?;
        for c in &f.cases {
            let profiles: Vec<String> = c.profiles.iter().map(ToString::to_string).collect();
            writeln!(
                w,
                "  {:<48} {:<13} {:<16} {}{}",
                c.id,
                c.level.to_string(),
                profiles.join(","),
                c.title,
                if c.state_changing {
                    " [state-changing]"
                } else {
                    ""
                }
            )?;
        }
    }
    Ok(())
}

fn print(opts: &ConformOpts, report: &SuiteReport) -> Result<Exit, Error> {
    super::print(|w| {
        if opts.json {
            crate::report::conform::json(w, report)
        } else {
            crate::report::conform::text(w, report)
        }
    })?;
    if let Some(path) = &opts.junit {
        let mut bytes = Vec::new();
        crate::report::conform::junit(&mut bytes, report)
            .and_then(|()| std::fs::write(path, &bytes))
            .map_err(|e| Error::write("--junit", path, e))?;
    }
    if let Some(path) = &opts.html {
        // From the JSON document, so that this page and `report html` of `--json` are one.
        let doc = serde_json::to_value(report)
            .map_err(|e| Error::write("--html", path, std::io::Error::other(e)))?;
        super::write_html("--html", path, &crate::report::html::conform(&doc))?;
    }
    Ok(report.exit())
}

/// Runs `conform`.
pub fn main(opts: &ConformOpts) -> Result<Exit, Error> {
    let config = opts.config()?;
    if opts.list {
        super::print(|w| list(w, &config))?;
        return Ok(Exit::Success);
    }
    let target: Option<Target> = opts.target.as_deref().map(str::parse).transpose()?;
    // Before the run, not after it: a CI step with a wrong --junit path fails at once.
    if let Some(path) = &opts.junit {
        super::check_writable("--junit", path)?;
    }
    super::check_html(opts.html.as_deref())?;
    let runtime = super::runtime(None)?;
    runtime.block_on(async {
        match target {
            None => {
                let host = crate::host::start(bundled_config()).await?;
                let report = run_suite(&config, &bundled_target(&host)).await;
                let _ = host.stop().await;
                print(opts, &report)
            }
            Some(t) => {
                let addrs = crate::net::discovery::addresses(&t, IpPreference::Any)
                    .await
                    .map_err(|source| Error::Resolve {
                        target: t.to_string(),
                        source,
                    })?;
                let mut last = None;
                for addr in addrs {
                    match reachable(addr, config.connect_timeout).await {
                        Ok(()) => {
                            let host = HostUnderTest {
                                addr,
                                label: format!("{t} ({addr})"),
                                clock: None,
                                fresh: false,
                                disposable: false,
                            };
                            let report = run_suite(&config, &host).await;
                            return print(opts, &report);
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(Error::Unreachable {
                    target: t.to_string(),
                    last,
                })
            }
        }
    })
}
