//! `kmsharness serve`: options, an optional TOML or JSON config file, and their validation into
//! a [`HostSetup`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::catalog;
use crate::clock::parse_secs;
use crate::epid::{self, Epid};
use crate::host::HostSetup;
use crate::proto::faults::{Fault, FaultSet};

use super::Error;
use crate::exit::Exit;

/// Options of `serve`; each overrides the config file's value.
#[derive(Debug, Clone, Args, Default)]
pub struct ServeOpts {
    /// Address to listen on (repeatable). Default 127.0.0.1:1688; any other address only when
    /// given explicitly.
    #[arg(short = 'L', long)]
    pub listen: Vec<SocketAddr>,
    /// TOML or JSON file with any of the settings below (see README).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Host key group to hold (repeatable), by the docs' name, e.g. "Volume License for
    /// Windows Server 2022". Default: Windows Server 2022's and Office LTSC 2021's.
    #[arg(long = "key-group")]
    pub key_groups: Vec<String>,
    /// Host OS build for generated ePIDs (6002, 7601, 9200, 9600, 14393, 17763, 20348, 26100).
    #[arg(long = "host-build")]
    pub host_build: Option<u32>,
    /// Host language (LCID) for generated ePIDs.
    #[arg(long)]
    pub lcid: Option<u16>,
    /// A fixed ePID for a key group or application: `GROUP=EPID`, `windows=EPID`,
    /// `office2010=EPID`, `office2013=EPID` (repeatable).
    #[arg(long = "epid", value_name = "NAME=EPID")]
    pub epids: Vec<String>,
    /// Hardware ID, 16 hex digits.
    #[arg(long)]
    pub hwid: Option<String>,
    /// Activation (retry) interval, minutes.
    #[arg(long = "activation-interval")]
    pub activation_interval: Option<u32>,
    /// Renewal interval, minutes.
    #[arg(long = "renewal-interval")]
    pub renewal_interval: Option<u32>,
    /// Largest allowed client clock skew (e.g. 4h), or `off`.
    #[arg(long = "max-clock-skew")]
    pub max_clock_skew: Option<String>,
    /// `system` or `virtual`: a virtual clock is advanced through the control port.
    #[arg(long)]
    pub clock: Option<String>,
    /// Control port (loopback): `now`, `advance 30d`, `count windows`.
    #[arg(long)]
    pub control: Option<SocketAddr>,
    /// Keep the client table in FILE across restarts (written atomically).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Close connections idle this long (e.g. 30s).
    #[arg(long = "idle-timeout")]
    pub idle_timeout: Option<String>,
    /// A PDU must arrive whole within this of its first byte, and each reply be taken within
    /// this, or the connection is closed (default 5s).
    #[arg(long = "pdu-timeout")]
    pub pdu_timeout: Option<String>,
    /// Connections served at once (capped below the open-file limit).
    #[arg(long = "max-connections")]
    pub max_connections: Option<usize>,
    /// Refuse NDR64 (like a pre-Windows 7 host).
    #[arg(long = "no-ndr64")]
    pub no_ndr64: bool,
    /// Do not answer bind-time feature negotiation.
    #[arg(long = "no-btfn")]
    pub no_btfn: bool,
    /// Inject a deviation (repeatable); `--fault list` prints them.
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<String>,
    /// Delay of the `delay` fault: milliseconds (200) or a duration (200ms, 1.5s, 1m).
    #[arg(long = "delay-ms", value_name = "MS|DURATION")]
    pub delay_ms: Option<String>,
    /// No per-request log lines.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write every connection's traffic to FILE as a pcap (synthetic Ethernet/IP/TCP framing,
    /// real timestamps); flushed as each connection closes.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

/// The config file: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<Vec<SocketAddr>>,
    key_groups: Option<Vec<String>>,
    host_build: Option<u32>,
    lcid: Option<u16>,
    epids: Option<std::collections::BTreeMap<String, String>>,
    hwid: Option<String>,
    activation_interval: Option<u32>,
    renewal_interval: Option<u32>,
    max_clock_skew: Option<String>,
    clock: Option<String>,
    control: Option<SocketAddr>,
    state: Option<PathBuf>,
    idle_timeout: Option<String>,
    pdu_timeout: Option<String>,
    max_connections: Option<usize>,
    ndr64: Option<bool>,
    btfn: Option<bool>,
    faults: Option<Vec<String>>,
    delay_ms: Option<u64>,
    quiet: Option<bool>,
    record: Option<PathBuf>,
}

fn load_file(path: &PathBuf) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::read("--config", path, e))?;
    let content = |message| Error::Content {
        path: path.clone(),
        message,
    };
    let json = path.extension().is_some_and(|e| e == "json");
    if json {
        serde_json::from_str(&text).map_err(|e| content(e.to_string()))
    } else {
        toml::from_str(&text).map_err(|e| content(e.message().to_owned()))
    }
}

/// Key groups an application name stands for in `--epid windows=…` and grab files.
fn groups_for(
    name: &str,
    held: &[&'static catalog::HostKeyGroup],
) -> Vec<&'static catalog::HostKeyGroup> {
    let app = match name.to_ascii_lowercase().as_str() {
        "windows" => Some(catalog::AppKind::Windows),
        "office2010" => Some(catalog::AppKind::Office2010),
        "office2013" => Some(catalog::AppKind::Office2013),
        _ => None,
    };
    match app {
        Some(app) => held.iter().copied().filter(|g| g.app == app).collect(),
        None => catalog::host_key_group(name).into_iter().collect(),
    }
}

impl ServeOpts {
    /// Validates options and config file into a [`HostSetup`].
    pub fn config(&self) -> Result<HostSetup, Error> {
        self.config_and_record().map(|(setup, _)| setup)
    }

    /// [`Self::config`] and the `--record` file (the option's, else the config file's).
    fn config_and_record(&self) -> Result<(HostSetup, Option<PathBuf>), Error> {
        let file = match &self.config {
            Some(p) => load_file(p)?,
            None => FileConfig::default(),
        };
        let setup = self.apply(&file).map_err(Error::Usage)?;
        Ok((setup, self.record.clone().or(file.record)))
    }

    /// The options over the config file's values; the error names the bad option.
    fn apply(&self, file: &FileConfig) -> Result<HostSetup, String> {
        let mut c = HostSetup {
            log: !(self.quiet || file.quiet == Some(true)),
            ..HostSetup::default()
        };
        let listen = if self.listen.is_empty() {
            file.listen.clone().unwrap_or_default()
        } else {
            self.listen.clone()
        };
        if !listen.is_empty() {
            c.listen.listen = listen;
        }
        let groups = if self.key_groups.is_empty() {
            file.key_groups.clone().unwrap_or_default()
        } else {
            self.key_groups.clone()
        };
        if !groups.is_empty() {
            c.host.key_groups = groups
                .iter()
                .map(|g| {
                    catalog::host_key_group(g).ok_or_else(|| {
                        format!(
                            "--key-group {g:?}: unknown; known groups: {}",
                            catalog::host_key_groups()
                                .map(|g| g.name)
                                .collect::<Vec<_>>()
                                .join("; ")
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(b) = self.host_build.or(file.host_build) {
            c.host.host_build = epid::host_build(b).ok_or_else(|| {
                let known: Vec<String> = epid::HOST_BUILDS
                    .iter()
                    .map(|h| h.build.to_string())
                    .collect();
                format!(
                    "--host-build {b}: unknown build; known: {}",
                    known.join(", ")
                )
            })?;
        }
        if let Some(l) = self.lcid.or(file.lcid) {
            if !epid::is_known_lcid(l) {
                return Err(format!("--lcid {l}: not a Windows LCID"));
            }
            c.host.lcid = l;
        }
        let mut epids: Vec<(String, String)> =
            file.epids.clone().unwrap_or_default().into_iter().collect();
        for e in &self.epids {
            let (k, v) = e
                .split_once('=')
                .ok_or_else(|| format!("--epid {e:?}: expected NAME=EPID"))?;
            epids.push((k.to_owned(), v.to_owned()));
        }
        for (name, text) in epids {
            let epid: Epid = text
                .parse()
                .map_err(|e| format!("ePID for {name:?}: {e}"))?;
            let groups = groups_for(&name, &c.host.key_groups);
            if groups.is_empty() {
                return Err(format!(
                    "ePID for {name:?}: names no held key group or application"
                ));
            }
            for g in groups {
                c.host.epids.retain(|(n, _)| n != g.name);
                c.host.epids.push((g.name.to_owned(), epid));
            }
        }
        if let Some(h) = self.hwid.clone().or(file.hwid.clone()) {
            let bytes = (h.len() == 16)
                .then(|| {
                    (0..8)
                        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16))
                        .collect::<Result<Vec<u8>, _>>()
                })
                .and_then(Result::ok)
                .ok_or_else(|| format!("--hwid {h:?}: expected 16 hex digits"))?;
            let mut hw = [0u8; 8];
            hw.copy_from_slice(&bytes);
            c.host.hwid = Some(hw);
        }
        if let Some(v) = self.activation_interval.or(file.activation_interval) {
            c.host.activation_interval = v;
        }
        if let Some(v) = self.renewal_interval.or(file.renewal_interval) {
            c.host.renewal_interval = v;
        }
        let clock = self
            .clock
            .clone()
            .or(file.clock.clone())
            .unwrap_or_else(|| "system".into());
        c.virtual_clock = match clock.as_str() {
            "system" => false,
            "virtual" => true,
            other => return Err(format!("--clock {other:?}: expected system or virtual")),
        };
        match self.max_clock_skew.clone().or(file.max_clock_skew.clone()) {
            Some(s) if s == "off" => c.host.max_clock_skew_secs = None,
            Some(s) => {
                let secs = parse_secs(&s).filter(|&v| v > 0).ok_or_else(|| {
                    format!("--max-clock-skew {s:?}: expected a duration like 4h, or off")
                })?;
                c.host.max_clock_skew_secs = Some(secs as u64);
            }
            // A virtual clock moves away from the clients' clocks by design; the rule is off
            // unless asked for.
            None if c.virtual_clock => c.host.max_clock_skew_secs = None,
            None => {}
        }
        c.control = self.control.or(file.control);
        c.state = self.state.clone().or(file.state.clone());
        if let Some(t) = self.idle_timeout.clone().or(file.idle_timeout.clone()) {
            let secs = parse_secs(&t)
                .filter(|&v| v > 0)
                .ok_or_else(|| format!("--idle-timeout {t:?}: expected a duration like 30s"))?;
            c.listen.idle_timeout = Duration::from_secs(secs as u64);
        }
        if let Some(t) = self.pdu_timeout.clone().or(file.pdu_timeout.clone()) {
            c.listen.pdu_timeout = crate::clock::parse_duration(&t)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("--pdu-timeout {t:?}: expected a duration like 5s"))?;
        }
        if let Some(m) = self.max_connections.or(file.max_connections) {
            if m == 0 {
                return Err("--max-connections must be at least 1".into());
            }
            c.listen.max_connections = m;
        }
        c.listen.rpc.ndr64 = !self.no_ndr64 && file.ndr64.unwrap_or(true);
        c.listen.rpc.btfn = !self.no_btfn && file.btfn.unwrap_or(true);
        let mut faults = FaultSet::NONE;
        for f in file.faults.iter().flatten().chain(&self.faults) {
            let fault: Fault = f.parse().map_err(|e| format!("--fault: {e}"))?;
            faults = faults.with(fault);
        }
        c.faults = faults;
        c.listen.rpc.faults = faults;
        if let Some(text) = &self.delay_ms {
            c.listen.delay = delay(text)
                .ok_or_else(|| format!("--delay-ms {text:?}: expected milliseconds (200) or a duration like 200ms or 1.5s"))?;
        } else if let Some(ms) = file.delay_ms {
            c.listen.delay = Duration::from_millis(ms);
        }
        Ok(c)
    }
}

/// The `--delay-ms` value: a plain number is milliseconds, as the option's name says; anything
/// else a duration (`200ms`, `1.5s`, `1m`).
fn delay(text: &str) -> Option<Duration> {
    match text.trim().parse::<u64>() {
        Ok(ms) => Some(Duration::from_millis(ms)),
        Err(_) => crate::clock::parse_duration(text),
    }
}

/// Runs `serve` until Ctrl-C or SIGTERM.
pub fn main(opts: &ServeOpts) -> Result<Exit, Error> {
    if opts.faults.iter().any(|f| f == "list") {
        super::print(|w| crate::serve::list_faults(w))?;
        return Ok(Exit::Success);
    }
    let (mut config, record) = opts.config_and_record()?;
    if let Some(path) = &record {
        let recorder = crate::capture::record::Recorder::create(path)
            .map_err(|e| Error::write("--record", path, e))?;
        config.listen.record = Some(recorder);
    }
    if config.log {
        crate::serve::init_log();
    }
    let runtime = super::runtime(None)?;
    runtime.block_on(async {
        let stopped = crate::serve::run(config, super::shutdown_signal()).await?;
        match stopped {
            crate::serve::Stopped::Clean => Ok(Exit::Success),
            crate::serve::Stopped::StateNotSaved { path, source } => Err(Error::Write {
                option: Some("--state"),
                path,
                source,
            }),
            crate::serve::Stopped::RecordingNotWritten(e) => Err(Error::write(
                "--record",
                opts.record.as_deref().unwrap_or(std::path::Path::new("")),
                e,
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_is_milliseconds_or_a_duration() {
        assert_eq!(delay("200"), Some(Duration::from_millis(200)));
        assert_eq!(delay("200ms"), Some(Duration::from_millis(200)));
        assert_eq!(delay("1.5"), Some(Duration::from_millis(1_500)));
        assert_eq!(delay("1m"), Some(Duration::from_secs(60)));
        assert_eq!(delay("later"), None);
    }
}
