//! `kmsharness activate`: options (a superset of vlmcs's) and their validation.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::activate::{ActivateConfig, CmidSpec, WorkstationSpec};
use crate::capture::record::Recorder;
use crate::catalog;
use crate::net::client::ClientConfig;
use crate::proto::client::session::ClientRpcOptions;
use crate::wire::Guid;
use crate::wire::kms::Version;

use super::Error;
use crate::exit::Exit;
use crate::net::discovery::{IpPreference, Target};

/// vlmcs's default product: Windows Server 2019 ARM64 (its binary's real default, per the
/// shared captures README).
pub const DEFAULT_PRODUCT: &str = "8de8eb62-bbe0-40ac-ac17-f75595071ea3";
/// License status a fresh Windows client sends: 5 = notification (the genuine Windows 11
/// request; vlmcs sends 2, out-of-box grace: `-t 2` for its request).
pub const DEFAULT_LICENSE_STATUS: u32 = 5;
/// Minutes left that a fresh Windows client sends: 0 (the genuine request; vlmcs sends 43200,
/// 30 days: `-g 43200`).
pub const DEFAULT_BINDING_EXPIRATION: u32 = 0;

/// Options of `activate`.
#[derive(Debug, Clone, Args)]
pub struct ActivateOpts {
    /// Host: `host[:port]` (IPv6 in brackets), or `.domain` to find hosts via DNS SRV records
    /// `_VLMCS._TCP.domain`.
    #[arg(default_value = "127.0.0.1:1688")]
    pub target: String,
    /// Protocol version 4.
    #[arg(short = '4', group = "ver")]
    pub v4: bool,
    /// Protocol version 5.
    #[arg(short = '5', group = "ver")]
    pub v5: bool,
    /// Protocol version 6.
    #[arg(short = '6', group = "ver")]
    pub v6: bool,
    /// Any protocol version MAJOR.MINOR, e.g. 6.1 to send a deliberately wrong one.
    #[arg(short = 'K', long = "protocol", group = "ver", value_name = "X.Y")]
    pub protocol: Option<String>,
    /// Product by catalog name (e.g. "Windows 10 Enterprise") or SKU GUID; see `--list`.
    #[arg(short = 'l', long, default_value = DEFAULT_PRODUCT)]
    pub product: String,
    /// Application ID, overriding the product's.
    #[arg(short = 'a', long = "app-id")]
    pub app_id: Option<Guid>,
    /// KMS (counted) ID, overriding the product's.
    #[arg(short = 'k', long = "kms-id")]
    pub kms_id: Option<Guid>,
    /// SKU (activation) ID, overriding the product's.
    #[arg(short = 's', long = "sku-id")]
    pub sku_id: Option<Guid>,
    /// Client machine ID (default: random per request).
    #[arg(short = 'c', long)]
    pub cmid: Option<Guid>,
    /// Previous client machine ID.
    #[arg(
        short = 'o',
        long = "previous-cmid",
        default_value = "00000000-0000-0000-0000-000000000000"
    )]
    pub previous_cmid: Guid,
    /// Workstation name (default: random DNS-style per request).
    #[arg(short = 'w', long)]
    pub workstation: Option<String>,
    /// Random NetBIOS-style workstation names instead of DNS names.
    #[arg(short = 'd', long)]
    pub netbios: bool,
    /// Required client count (default: the product's threshold, 25 or 5).
    #[arg(short = 'r', long = "required-clients")]
    pub required_clients: Option<u32>,
    /// License status: 0 unlicensed, 1 licensed, 2 OOB grace, 3 OOT grace, 4 non-genuine
    /// grace, 5 notification, 6 extended grace.
    #[arg(short = 't', long = "license-status", default_value_t = DEFAULT_LICENSE_STATUS)]
    pub license_status: u32,
    /// Minutes left in the current license state.
    #[arg(short = 'g', long = "binding-expiration", default_value_t = DEFAULT_BINDING_EXPIRATION)]
    pub binding_expiration: u32,
    /// Say the client is a virtual machine.
    #[arg(short = 'm', long)]
    pub vm: bool,
    /// Offer NDR64 in the bind (0 or 1).
    #[arg(short = 'N', long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub ndr64: u8,
    /// Offer bind-time feature negotiation (0 or 1).
    #[arg(short = 'B', long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub btfn: u8,
    /// Do not set the multiplex flag in the bind.
    #[arg(short = 'p', long = "no-multiplex")]
    pub no_multiplex: bool,
    /// Number of requests.
    #[arg(short = 'n', long, default_value_t = 1)]
    pub requests: u32,
    /// A new TCP connection (and bind) for every request.
    #[arg(short = 'T', long = "new-connection")]
    pub new_connection: bool,
    /// IP version to use with host names: 4 or 6.
    #[arg(short = 'i', long = "ip", value_enum, default_value_t = IpFlag::Any)]
    pub ip: IpFlag,
    /// Connect timeout: a duration (500ms, 1m) or seconds (2.5).
    #[arg(
        long = "connect-timeout",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub connect_timeout: String,
    /// Reply timeout: a duration (500ms, 1m) or seconds (2.5).
    #[arg(long = "read-timeout", default_value = "10s", value_name = "DURATION")]
    pub read_timeout: String,
    /// Print the report as JSON (format `kmsharness-activate/1`).
    #[arg(long)]
    pub json: bool,
    /// One line per request (number, product, outcome, count and ePID, or the refusal's
    /// HRESULT, or the error) instead of the full dump.
    #[arg(short = 'q', long, conflicts_with = "json")]
    pub quiet: bool,
    /// Ask the host once per application and write its ePIDs and hardware ID to FILE, as a
    /// `serve --config` file (like vlmcs -G).
    #[arg(short = 'G', long, value_name = "FILE")]
    pub grab: Option<PathBuf>,
    /// List the product catalog and exit (with --json: one JSON document, format
    /// `kmsharness-catalog/1`, each SKU with its IDs, threshold, activating host key groups and
    /// source).
    #[arg(short = 'x', long)]
    pub list: bool,
    /// Write every exchange to FILE as a pcap (synthetic Ethernet/IP/TCP framing, real
    /// timestamps) that `inspect` and Wireshark read.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

/// `-i`: which address family to use with host names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IpFlag {
    /// Whatever the resolver returns first.
    Any,
    /// IPv4 only.
    #[value(name = "4")]
    V4,
    /// IPv6 only.
    #[value(name = "6")]
    V6,
}

impl From<IpFlag> for IpPreference {
    fn from(flag: IpFlag) -> IpPreference {
        match flag {
            IpFlag::Any => IpPreference::Any,
            IpFlag::V4 => IpPreference::V4,
            IpFlag::V6 => IpPreference::V6,
        }
    }
}

/// A timeout option: above zero, below a day.
fn seconds(option: &'static str, text: &str) -> Result<Duration, Error> {
    const MAX: Duration = Duration::from_secs(86_400);
    super::timeout(
        option,
        text,
        MAX,
        "a duration above 0 and at most 24h, e.g. 10s, 500ms or 2.5 (seconds)",
    )
}

impl ActivateOpts {
    /// Validates the options into a config; the error is one line naming the bad option.
    pub fn config(&self) -> Result<ActivateConfig, Error> {
        let target: Target = self.target.parse()?;
        let lookup = catalog::lookup_sku(&self.product);
        let sku = lookup.as_ref().ok().copied();
        // Explicit GUIDs may name a product the catalog does not know.
        let (app_id, sku_id, kms_id, name, threshold, protocol) = match (
            sku,
            self.app_id,
            self.sku_id,
            self.kms_id,
        ) {
            (Some(sku), app, s, k) => (
                app.unwrap_or_else(|| sku.application().map_or(Guid::NIL, |a| a.id)),
                s.unwrap_or(sku.id),
                k.unwrap_or(sku.kms),
                sku.name.to_owned(),
                sku.class.threshold(),
                sku.protocol().unwrap_or(6),
            ),
            (None, Some(app), Some(s), Some(k)) => (app, s, k, "custom product".to_owned(), 5, 6),
            (None, ..) => {
                let why = lookup.err().map_or_else(String::new, |e| e.to_string());
                return Err(Error::Usage(format!(
                    "--product {:?}: {why} (see `activate --list`); or give --app-id, --kms-id and --sku-id",
                    self.product
                )));
            }
        };
        let version = if self.v4 {
            Version::V4
        } else if self.v5 {
            Version::V5
        } else if self.v6 {
            Version::V6
        } else if let Some(p) = &self.protocol {
            p.parse()
                .map_err(|e: String| Error::Usage(format!("-K: {e}")))?
        } else {
            Version {
                major: u16::from(protocol),
                minor: 0,
            }
        };
        if self.license_status > u32::from(u16::MAX) {
            return Err(Error::BadValue {
                option: "--license-status",
                value: self.license_status.to_string(),
                expected: "at most 65535",
            });
        }
        super::at_least_one("--requests", u64::from(self.requests))?;
        Ok(ActivateConfig {
            target,
            prefer: self.ip.into(),
            version,
            app_id,
            sku_id,
            kms_id,
            product_name: name,
            cmid: self.cmid.map_or(CmidSpec::Random, CmidSpec::Fixed),
            previous_cmid: self.previous_cmid,
            workstation: match (&self.workstation, self.netbios) {
                (Some(w), _) => WorkstationSpec::Fixed(w.clone()),
                (None, true) => WorkstationSpec::RandomNetbios,
                (None, false) => WorkstationSpec::RandomDns,
            },
            required_clients: self.required_clients.unwrap_or(threshold),
            license_status: self.license_status,
            binding_expiration: self.binding_expiration,
            vm: self.vm,
            requests: self.requests,
            new_connection_each: self.new_connection,
            client: ClientConfig {
                rpc: ClientRpcOptions {
                    ndr64: self.ndr64 == 1,
                    btfn: self.btfn == 1,
                    multiplex: !self.no_multiplex,
                    ..ClientRpcOptions::default()
                },
                connect_timeout: seconds("--connect-timeout", &self.connect_timeout)?,
                read_timeout: seconds("--read-timeout", &self.read_timeout)?,
                source: None,
            },
        })
    }
}

/// Prints the catalog, one SKU a line.
fn list(w: &mut dyn std::io::Write) -> std::io::Result<()> {
    for sku in catalog::skus() {
        let kms = sku.kms_item().map_or("?", |k| k.name);
        writeln!(
            w,
            "{}  V{}  N={:<2}  {}  (KMS ID {}: {})",
            sku.id,
            sku.protocol().unwrap_or(0),
            sku.class.threshold(),
            sku.name,
            sku.kms,
            kms
        )?;
    }
    Ok(())
}

/// The catalog as one JSON document: every SKU with its product group, application, protocol,
/// threshold, the host key groups that activate it and where its IDs come from.
fn list_json(w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let skus: Vec<serde_json::Value> = catalog::skus()
        .map(|sku| {
            let item = sku.kms_item();
            serde_json::json!({
                "id": sku.id,
                "name": sku.name,
                "kms_id": sku.kms,
                "kms_name": item.map(|k| k.name),
                "kms_source": item.map(|k| k.source),
                "application": sku.application().map(|a| a.name),
                "application_id": sku.application().map(|a| a.id),
                "protocol": sku.protocol(),
                "class": sku.class,
                "threshold": sku.class.threshold(),
                "activated_by": sku.activated_by().map(|g| g.name).collect::<Vec<_>>(),
                "source": sku.source,
                "origin": catalog::origin_of_sku(sku),
            })
        })
        .collect();
    let groups: Vec<serde_json::Value> = catalog::host_key_groups()
        .map(|g| {
            serde_json::json!({
                "name": g.name,
                "application": g.app.application().name,
                "epid_group_id": g.epid_group_id,
                "key_ids": [g.key_ids.start(), g.key_ids.end()],
                "activates": g.kms_items().map(|k| k.name).collect::<Vec<_>>(),
                "source": g.source,
                "origin": catalog::origin_of_group(g),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "format": "kmsharness-catalog/1",
        "skus": skus,
        "host_key_groups": groups,
    });
    serde_json::to_writer_pretty(&mut *w, &doc)?;
    writeln!(w)
}

/// Runs `activate`: the report on stdout, its exit status.
pub fn main(opts: &ActivateOpts) -> Result<Exit, Error> {
    if opts.list {
        super::print(|w| if opts.json { list_json(w) } else { list(w) })?;
        return Ok(Exit::Success);
    }
    let config = opts.config()?;
    if opts.grab.is_some() && opts.record.is_some() {
        return Err(Error::Conflict("--record", "--grab"));
    }
    let runtime = super::runtime(Some(1))?;
    runtime.block_on(async {
        let mut hosts = crate::net::discovery::hosts(&config.target, config.prefer)
            .await
            .map_err(|source| Error::Resolve {
                target: config.target.to_string(),
                source,
            })?;
        if let Some(path) = &opts.grab {
            let grab = crate::activate::grab(&config, &mut hosts).await;
            for (app, outcome) in &grab.missing {
                let why = outcome.map_or("no exchange", |o| o.name());
                super::note(format_args!(
                    "kmsharness activate: no ePID for {app}: {why}"
                ));
            }
            std::fs::write(path, &grab.toml).map_err(|e| Error::write("--grab", path, e))?;
            return Ok(grab.exit);
        }
        let recorder = match &opts.record {
            Some(path) => {
                Some(Recorder::create(path).map_err(|e| Error::write("--record", path, e))?)
            }
            None => None,
        };
        let report = crate::activate::run_on(&config, &mut hosts, recorder.as_ref()).await;
        super::print(|w| {
            if opts.json {
                crate::report::activate::json(w, &report)
            } else if opts.quiet {
                crate::report::activate::quiet(w, &report)
            } else {
                crate::report::activate::text(w, &report)
            }
        })?;
        if let (Some(r), Some(path)) = (&recorder, &opts.record) {
            r.finish().map_err(|e| Error::write("--record", path, e))?;
        }
        Ok(report.exit)
    })
}
