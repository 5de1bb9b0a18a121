//! `kmsharness conform`: options, validation and running.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::conform::runner::{
    HostUnderTest, RunConfig, SuiteReport, bundled_config, bundled_target, reachable, run_suite,
};
use crate::conform::vector::{self, Profile};

use super::exit::Exit;
use super::target::{IpPreference, Target};

/// Options of `conform`.
#[derive(Debug, Clone, Args)]
pub struct ConformOpts {
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
    /// Read the vector files from DIR instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub vectors: Option<PathBuf>,
    /// List the cases and exit.
    #[arg(long)]
    pub list: bool,
    /// TCP handshake limit, seconds.
    #[arg(long = "connect-timeout", default_value_t = 5.0)]
    pub connect_timeout: f64,
    /// Reply limit, seconds.
    #[arg(long = "read-timeout", default_value_t = 5.0)]
    pub read_timeout: f64,
}

impl ConformOpts {
    /// Validates into a run configuration (target resolution happens in [`main`]).
    pub fn config(&self) -> Result<RunConfig, String> {
        let vectors = vector::load(self.vectors.as_deref()).map_err(|e| e.to_string())?;
        let mut config = RunConfig::new(vectors);
        config.profile = self.profile;
        config.cases = self.cases.clone();
        config.categories = self.categories.clone();
        config.allow_state_changes = self.allow_state_changes;
        config.fresh_host = self.fresh_host;
        for (flag, v) in [
            ("--connect-timeout", self.connect_timeout),
            ("--read-timeout", self.read_timeout),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 600.0) {
                return Err(format!(
                    "{flag} {v}: expected seconds above 0 (at most 600)"
                ));
            }
        }
        config.connect_timeout = Duration::from_secs_f64(self.connect_timeout);
        config.read_timeout = Duration::from_secs_f64(self.read_timeout);
        config.validate()?;
        Ok(config)
    }
}

fn list(config: &RunConfig) {
    for f in &config.vectors {
        println!("{} ({})", f.family, f.title);
        for c in &f.cases {
            let profiles: Vec<String> = c.profiles.iter().map(ToString::to_string).collect();
            println!(
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
            );
        }
    }
}

fn print(opts: &ConformOpts, report: &SuiteReport) -> Exit {
    let out = &mut std::io::stdout().lock();
    let printed = if opts.json {
        crate::report::conform::json(out, report)
    } else {
        crate::report::conform::text(out, report)
    };
    if let Err(e) = printed {
        eprintln!("kmsharness conform: stdout: {e}");
        return Exit::LocalIo;
    }
    if let Some(path) = &opts.junit {
        let mut bytes = Vec::new();
        let written = crate::report::conform::junit(&mut bytes, report)
            .and_then(|()| std::fs::write(path, &bytes));
        if let Err(e) = written {
            eprintln!("kmsharness conform: {}: {e}", path.display());
            return Exit::LocalIo;
        }
    }
    report.exit()
}

/// Runs `conform`.
pub fn main(opts: &ConformOpts) -> Exit {
    let config = match opts.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kmsharness conform: {e}");
            return Exit::Usage;
        }
    };
    if opts.list {
        list(&config);
        return Exit::Success;
    }
    let target: Option<Target> = match opts.target.as_deref().map(str::parse).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("kmsharness conform: --target: {e}");
            return Exit::Usage;
        }
    };
    let runtime = match super::runtime("conform", None) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    runtime.block_on(async {
        match target {
            None => {
                let host = match crate::serve::start(bundled_config()).await {
                    Ok(h) => h,
                    Err(e) => {
                        eprintln!("kmsharness conform: bundled host: {e}");
                        return Exit::LocalIo;
                    }
                };
                let report = run_suite(&config, &bundled_target(&host)).await;
                let _ = host.stop().await;
                print(opts, &report)
            }
            Some(t) => {
                let addrs = match crate::activate::addresses(&t, IpPreference::Any).await {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("kmsharness conform: {t}: {e}");
                        return Exit::Connection;
                    }
                };
                let mut last = String::new();
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
                        Err(e) => last = e,
                    }
                }
                eprintln!("kmsharness conform: no connection: {last}");
                Exit::Connection
            }
        }
    })
}
