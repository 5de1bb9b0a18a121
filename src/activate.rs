//! `activate`: one client's exchanges with a host, vlmcs-style: build each request, bind,
//! call, decrypt and verify, and report every field and every check.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use serde::Serialize;

use crate::capture::record::Recorder;
use crate::exit::Exit;
use crate::net::client::{BindReport, ClientConfig, Connection, NetError};
use crate::net::discovery::{Hosts, IpPreference, Target};
use crate::proto::check::Check;
use crate::proto::client::message::{ResponseBuf, decode_response, encode_request};
use crate::proto::client::names::{random_dns_name, random_netbios_name};
use crate::proto::client::session::CallReply;
use crate::proto::lifecycle::{self, Answer, ClientVerdict, Intervals};
pub use crate::proto::summary::Outcome;
use crate::proto::summary::{RequestSummary, ResponseSummary, ser};
use crate::proto::verdict::Failure;
use crate::wire::kms::{RequestBase, Version, Workstation};
use crate::wire::ndr::Syntax;
use crate::wire::rpc::FaultStatus;
use crate::wire::{Guid, HResult};

/// How the client machine ID is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmidSpec {
    /// A fresh random (RFC 4122 v4) ID per request, as vlmcs does by default.
    Random,
    /// The same ID for every request.
    Fixed(Guid),
}

/// How the workstation name is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkstationSpec {
    /// A random DNS-style name per request (vlmcs's default).
    RandomDns,
    /// A random NetBIOS-style name per request (vlmcs `-d`).
    RandomNetbios,
    /// This name.
    Fixed(String),
}

/// Everything `activate` needs, validated.
#[derive(Debug, Clone)]
pub struct ActivateConfig {
    /// Where to send.
    pub target: Target,
    /// Address family preference.
    pub prefer: IpPreference,
    /// Protocol version in the requests.
    pub version: Version,
    /// Application ID.
    pub app_id: Guid,
    /// SKU (activation) ID.
    pub sku_id: Guid,
    /// KMS counted ID.
    pub kms_id: Guid,
    /// Name of the product, for the report.
    pub product_name: String,
    /// Client machine ID.
    pub cmid: CmidSpec,
    /// Previous client machine ID.
    pub previous_cmid: Guid,
    /// Workstation name.
    pub workstation: WorkstationSpec,
    /// Required client count (N count policy).
    pub required_clients: u32,
    /// License status.
    pub license_status: u32,
    /// Minutes left in the current license state.
    pub binding_expiration: u32,
    /// Client is a virtual machine.
    pub vm: bool,
    /// Requests to send.
    pub requests: u32,
    /// A new TCP connection and bind for every request.
    pub new_connection_each: bool,
    /// RPC options and timeouts.
    pub client: ClientConfig,
}

/// The bind as reported.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BindInfo {
    /// The host address.
    pub address: SocketAddr,
    /// Syntaxes accepted, in order ("NDR64", "BTFN", "NDR32").
    pub accepted: Vec<&'static str>,
    /// Association group.
    pub assoc_group: u32,
    /// Whether an alter_context was needed.
    pub alter_context: bool,
    /// RPC checks on the bind reply (and alter_context reply).
    pub checks: Vec<Check>,
}

/// The exit status an exchange's outcome calls for.
pub fn exit_of(outcome: Outcome) -> Exit {
    match outcome {
        Outcome::Ok => Exit::Success,
        Outcome::ChecksFailed => Exit::ChecksFailed,
        Outcome::Refused => Exit::Refused,
        Outcome::Fault | Outcome::Undecodable | Outcome::Rpc => Exit::Rpc,
        Outcome::Unanswered | Outcome::Connection => Exit::Connection,
    }
}

/// One request, from parameters to verdict.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ExchangeReport {
    /// 1-based request number.
    pub index: u32,
    /// The request as sent.
    pub request: RequestSummary,
    /// The bind, when this request opened a connection.
    pub bind: Option<BindInfo>,
    /// Transfer syntax of the call.
    pub syntax: Option<Syntax>,
    /// How it ended: `ok`, `checks_failed`, `refused`, `fault`, `undecodable` (the KMS
    /// response), `rpc` (another RPC failure) or `connection`.
    pub outcome: Outcome,
    /// The HRESULT of a refusal, with its name, e.g. `0x8007000D (ERROR_INVALID_DATA)`.
    #[serde(serialize_with = "ser::opt_display")]
    #[schemars(with = "Option<String>")]
    pub hresult: Option<HResult>,
    /// The status of an RPC fault, with its code, e.g. `op_range_error (0x1C010002)`.
    #[serde(serialize_with = "ser::opt_fault")]
    #[schemars(with = "Option<String>")]
    pub fault: Option<FaultStatus>,
    /// What went wrong below the KMS layer.
    pub error: Option<String>,
    /// The decoded response.
    pub response: Option<ResponseSummary>,
    /// RPC and KMS checks on the reply.
    pub checks: Vec<Check>,
    /// Round-trip time of the call, microseconds.
    pub call_micros: Option<u64>,
    /// The host had closed the reused connection, so the request went over a new one (as
    /// vlmcs does; py-kms closes after every response).
    pub reconnected: bool,
    /// Whether a Windows client would be activated by this answer, and why: a validated
    /// response whose count reaches the product's threshold. Independent of `outcome` and the
    /// exit status, which judge the host.
    pub client_verdict: ClientVerdict,
}

/// The whole run.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ActivateReport {
    /// Report format identifier, for consumers.
    #[schemars(extend("const" = "kmsharness-activate/1"))]
    pub format: &'static str,
    /// The target as given.
    pub target: String,
    /// Every request.
    pub exchanges: Vec<ExchangeReport>,
    /// The exit status.
    pub exit_status: u8,
    /// Its name.
    pub exit: Exit,
}

/// Report format identifier of `--json` output.
pub const REPORT_FORMAT: &str = "kmsharness-activate/1";

impl ActivateConfig {
    /// The request base for one request.
    pub fn request_base<R: rand::Rng>(&self, rng: &mut R) -> RequestBase {
        RequestBase {
            version: self.version,
            vm_info: u32::from(self.vm),
            license_status: self.license_status,
            binding_expiration: self.binding_expiration,
            app_id: self.app_id,
            sku_id: self.sku_id,
            kms_id: self.kms_id,
            cmid: match self.cmid {
                CmidSpec::Random => Guid::new_v4(rng.random()),
                CmidSpec::Fixed(g) => g,
            },
            required_clients: self.required_clients,
            client_time: crate::clock::now_filetime(),
            previous_cmid: self.previous_cmid,
            workstation: Workstation::new(&match &self.workstation {
                WorkstationSpec::RandomDns => random_dns_name(rng),
                WorkstationSpec::RandomNetbios => random_netbios_name(rng),
                WorkstationSpec::Fixed(s) => s.clone(),
            }),
        }
    }
}

/// How long a client keeps at an SRV target that does not answer before it tries the next:
/// genuine clients give a dead host "several SYNs over about 2 s" (`captures/genuine/README.md`).
pub const DEAD_HOST_BUDGET: Duration = Duration::from_secs(2);

/// Pause before a refused connection is tried again within [`DEAD_HOST_BUDGET`], so that a
/// refusing host, like a silent one, gets several attempts spread over the budget.
pub const REFUSED_RETRY: Duration = Duration::from_millis(500);

/// Connects to `addr` and binds, recording the connection when asked.
async fn connect_and_bind(
    addr: SocketAddr,
    config: &ClientConfig,
    call_id: u32,
    record: Option<&Arc<Recorder>>,
) -> Result<Result<(Connection, BindReport), NetError>, NetError> {
    let mut conn = Connection::connect(addr, *config, call_id).await?;
    if let Some(r) = record {
        conn.record(r.clone());
    }
    // A failed bind is the host's answer: it ends the search rather than moving on.
    Ok(conn.bind().await.map(|bind| (conn, bind)))
}

/// When an SRV target is tried again, as an offset from the first attempt, after the attempt
/// that began at offset `began` failed with `failure`; `None` moves on to the next target. A
/// refused attempt is repeated [`REFUSED_RETRY`] after it began while that is inside
/// [`DEAD_HOST_BUDGET`]; a silent host has had its SYNs (the kernel retransmits within the one
/// attempt, bounded by the budget), and any other failure is the host's answer.
pub fn srv_retry_after(began: Duration, failure: Failure) -> Option<Duration> {
    let next = began + REFUSED_RETRY;
    (matches!(failure, Failure::Refused) && next < DEAD_HOST_BUDGET).then_some(next)
}

/// Connects to an SRV target as a Windows client does: attempts within [`DEAD_HOST_BUDGET`],
/// spaced by [`srv_retry_after`], each bounded by the connect timeout and the budget.
async fn connect_srv_target(
    addr: SocketAddr,
    config: &ClientConfig,
    call_id: u32,
    record: Option<&Arc<Recorder>>,
) -> Result<Result<(Connection, BindReport), NetError>, NetError> {
    let first = tokio::time::Instant::now();
    let mut began = Duration::ZERO;
    loop {
        let mut attempt = *config;
        attempt.connect_timeout = config
            .connect_timeout
            .min(DEAD_HOST_BUDGET.saturating_sub(began));
        match connect_and_bind(addr, &attempt, call_id, record).await {
            Ok(bound) => return Ok(bound),
            Err(e) => match srv_retry_after(began, e.failure()) {
                Some(next) => {
                    tokio::time::sleep_until(first + next).await;
                    began = next;
                }
                None => return Err(e),
            },
        }
    }
}

/// Connects to the first host that answers and binds: known addresses in order; for SRV
/// discovery the host that answered last, then each target in order, its name resolved only
/// when it is reached.
async fn open(
    hosts: &mut Hosts,
    config: &ClientConfig,
    call_id: u32,
    record: Option<&Arc<Recorder>>,
) -> Result<(Connection, BindReport), NetError> {
    let mut last = None;
    match hosts {
        Hosts::Known(addrs) => {
            for &addr in addrs.iter() {
                match connect_and_bind(addr, config, call_id, record).await {
                    Ok(bound) => return bound,
                    Err(e) => last = Some(e),
                }
            }
        }
        Hosts::Srv(srv) => {
            if let Some(addr) = srv.cached() {
                match connect_srv_target(addr, config, call_id, record).await {
                    Ok(bound) => return bound,
                    Err(e) => {
                        srv.set_cached(None);
                        last = Some(e);
                    }
                }
            }
            let mut unresolved = None;
            for index in 0..srv.targets().len() {
                let addrs = match srv.resolve(index).await {
                    Ok(a) => a,
                    Err(e) => {
                        unresolved = Some(e);
                        continue;
                    }
                };
                for addr in addrs {
                    match connect_srv_target(addr, config, call_id, record).await {
                        Ok(bound) => {
                            srv.set_cached(Some(addr));
                            return bound;
                        }
                        Err(e) => last = Some(e),
                    }
                }
            }
            if last.is_none()
                && let Some(e) = unresolved
            {
                return Err(NetError::NoHost(e));
            }
        }
    }
    Err(last.unwrap_or(NetError::Timeout {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        phase: crate::net::client::Phase::Connect,
        after: Duration::ZERO,
    }))
}

/// Runs the configured exchanges against already resolved addresses.
pub async fn run_with(config: &ActivateConfig, addrs: &[SocketAddr]) -> ActivateReport {
    run_recorded(config, addrs, None).await
}

/// [`run_with`], recording every connection into `record` (`--record FILE`).
pub async fn run_recorded(
    config: &ActivateConfig,
    addrs: &[SocketAddr],
    record: Option<&Arc<Recorder>>,
) -> ActivateReport {
    run_on(config, &mut Hosts::Known(addrs.to_vec()), record).await
}

/// Runs the configured exchanges against `hosts`, found as a Windows client finds them (see
/// [`Hosts`]); after the run, an SRV list holds the host that answered.
pub async fn run_on(
    config: &ActivateConfig,
    hosts: &mut Hosts,
    record: Option<&Arc<Recorder>>,
) -> ActivateReport {
    // Seeded from the thread-local generator; unlike it, Send across awaits.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(rand::random());
    let mut exchanges = Vec::new();
    let mut conn: Option<Connection> = None;
    let mut call_id = 2;
    let mut buf = ResponseBuf::default();
    for index in 1..=config.requests {
        let base = config.request_base(&mut rng);
        let mut kms = Vec::with_capacity(260);
        let sent = encode_request(&base, rng.random(), &mut kms);
        let mut report = ExchangeReport {
            index,
            request: RequestSummary::sent(&sent, &kms),
            bind: None,
            syntax: None,
            outcome: Outcome::Connection,
            hresult: None,
            fault: None,
            error: None,
            response: None,
            checks: Vec::new(),
            call_micros: None,
            reconnected: false,
            client_verdict: ClientVerdict::Failed(Failure::Closed),
        };
        let mut net_failure = None;
        if config.new_connection_each {
            conn = None;
        }
        let mut result = None;
        // At most one retry: when a reused connection turns out to be closed by the host.
        for attempt in 0..2 {
            let reused = conn.is_some();
            if conn.is_none() {
                match open(hosts, &config.client, call_id, record).await {
                    Ok((c, bind)) => {
                        let mut checks: Vec<Check> = bind.bind.checks.iter().copied().collect();
                        if let Some(a) = &bind.alter_context {
                            checks.extend(a.checks.iter().copied());
                        }
                        report.bind = Some(BindInfo {
                            address: c.addr(),
                            accepted: bind.accepted(),
                            assoc_group: bind.bind.assoc_group,
                            alter_context: bind.alter_context.is_some(),
                            checks,
                        });
                        call_id = c.call_id();
                        conn = Some(c);
                    }
                    Err(e) => {
                        result = Some(Err(e));
                        break;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { break };
            let start = std::time::Instant::now();
            let r = c.call(&kms).await;
            report.call_micros = Some(start.elapsed().as_micros() as u64);
            call_id = c.call_id();
            let hung_up = matches!(&r, Err(e) if e.host_hung_up());
            if hung_up && reused && attempt == 0 {
                conn = None;
                report.reconnected = true;
                continue;
            }
            result = Some(r);
            break;
        }
        let Some(result) = result else { continue };
        match result {
            Err(e) => {
                // Replies that are not DCE/RPC, or too large, are RPC failures (4), like a
                // rejected bind; only the connection's own failures are 3.
                report.outcome = match e.failure() {
                    Failure::Protocol => Outcome::Rpc,
                    _ => Outcome::Connection,
                };
                report.error = Some(e.to_string());
                net_failure = Some(e.failure());
                conn = None;
            }
            Ok(outcome) => {
                report.syntax = Some(outcome.syntax);
                if let Some(c) = &conn {
                    report.checks.extend(c.reply_checks().iter().copied());
                }
                match outcome.reply {
                    CallReply::Fault(status) => {
                        report.outcome = Outcome::Fault;
                        report.fault = Some(status);
                    }
                    CallReply::Refused(h) => {
                        report.outcome = Outcome::Refused;
                        report.hresult = Some(h);
                    }
                    CallReply::Response => match decode_response(&sent, body_of(&conn), &mut buf) {
                        Err(e) => {
                            report.outcome = Outcome::Undecodable;
                            report.error = Some(format!("undecodable KMS response: {e}"));
                        }
                        Ok((resp, checks)) => {
                            report.checks.extend(checks.iter().copied());
                            report.response =
                                Some(ResponseSummary::new(&resp, body_of(&conn).len()));
                            report.outcome = Outcome::Ok;
                        }
                    },
                }
                let bind_failed = report
                    .bind
                    .as_ref()
                    .is_some_and(|b| b.checks.iter().any(|c| !c.passed));
                if report.outcome == Outcome::Ok
                    && (bind_failed || report.checks.iter().any(|c| !c.passed))
                {
                    report.outcome = Outcome::ChecksFailed;
                }
            }
        }
        report.client_verdict = client_verdict(config, &report, net_failure);
        exchanges.push(report);
    }
    let exit = exchanges
        .iter()
        .map(|e| exit_of(e.outcome))
        .fold(Exit::Success, Exit::worst);
    ActivateReport {
        format: REPORT_FORMAT,
        target: config.target.to_string(),
        exchanges,
        exit_status: exit as u8,
        exit,
    }
}

/// The threshold of the configured product (the catalog's, or the request's N count policy for
/// a product the catalog does not know), and the verdict of a Windows client on the exchange.
fn client_verdict(
    config: &ActivateConfig,
    report: &ExchangeReport,
    net_failure: Option<Failure>,
) -> ClientVerdict {
    let threshold = crate::catalog::sku(&config.sku_id)
        .map_or(report.request.required_clients, |s| s.class.threshold());
    let failed_check = || {
        report
            .bind
            .iter()
            .flat_map(|b| b.checks.iter())
            .chain(report.checks.iter())
            .find(|c| !c.passed)
            .map_or(Failure::Protocol, |c| Failure::Check(c.id))
    };
    let answer = match (report.outcome, &report.response) {
        (Outcome::Ok, Some(r)) => Answer::Count {
            count: r.count,
            intervals: Some(Intervals {
                activation: r.activation_interval,
                renewal: r.renewal_interval,
            }),
        },
        (Outcome::ChecksFailed, _) => Answer::Failed(failed_check()),
        (Outcome::Refused, _) => {
            Answer::Failed(Failure::HResult(report.hresult.unwrap_or(HResult(0))))
        }
        (Outcome::Fault, _) => Answer::Failed(Failure::Fault(
            report.fault.unwrap_or(FaultStatus::Unknown(0)),
        )),
        (Outcome::Undecodable, _) => Answer::Failed(Failure::Undecodable),
        _ => Answer::Failed(net_failure.unwrap_or(Failure::Protocol)),
    };
    lifecycle::judge(threshold, answer)
}

fn body_of(conn: &Option<Connection>) -> &[u8] {
    conn.as_ref().map_or(&[], |c| c.response_body())
}

/// One product per application, to ask a host for each of its ePIDs (vlmcs -G does the same).
const GRAB_PRODUCTS: [(&str, &str); 3] = [
    ("windows", "8de8eb62-bbe0-40ac-ac17-f75595071ea3"),
    ("office2010", "6f327760-8c5c-417c-9b61-836a98287e0c"),
    ("office2013", "85dd8b5f-eaa4-4af3-a628-cce9e77c9a03"),
];

/// What `--grab` found.
#[derive(Debug, Clone)]
pub struct Grab {
    /// The host's ePIDs and hardware ID as a `serve --config` TOML file.
    pub toml: String,
    /// The worst exit status of the exchanges.
    pub exit: Exit,
    /// Applications the host gave no ePID for, with the exchange's outcome.
    pub missing: Vec<(&'static str, Option<Outcome>)>,
}

/// `--grab FILE`: asks the host once per application for its ePIDs and hardware ID.
pub async fn grab(config: &ActivateConfig, hosts: &mut Hosts) -> Grab {
    let mut toml = String::from(
        "# ePIDs and hardware ID grabbed from a KMS host by `kmsharness activate --grab`\n",
    );
    toml.push_str(&format!("# host: {}\n\n", config.target));
    let mut hwid = None;
    let mut epids = Vec::new();
    let mut worst = Exit::Success;
    let mut missing = Vec::new();
    for (app, sku) in GRAB_PRODUCTS {
        let Some(sku) = sku
            .parse::<Guid>()
            .ok()
            .and_then(|g| crate::catalog::sku(&g))
        else {
            continue;
        };
        let one = ActivateConfig {
            app_id: sku.application().map_or(Guid::NIL, |a| a.id),
            sku_id: sku.id,
            kms_id: sku.kms,
            product_name: sku.name.to_owned(),
            version: Version::V6,
            requests: 1,
            required_clients: sku.class.threshold(),
            ..config.clone()
        };
        let report = run_on(&one, hosts, None).await;
        worst = worst.worst(report.exit);
        if let Some(r) = report.exchanges.first().and_then(|e| e.response.as_ref()) {
            epids.push(format!("{app} = \"{}\"\n", r.epid));
            hwid = hwid.or(r.hwid_hex());
        } else {
            missing.push((app, report.exchanges.first().map(|e| e.outcome)));
        }
    }
    let epids_found = !epids.is_empty();
    if let Some(h) = hwid {
        toml.push_str(&format!("hwid = \"{h}\"\n"));
    }
    toml.push_str("\n[epids]\n");
    for e in epids {
        toml.push_str(&e);
    }
    Grab {
        toml,
        // A host holds the key groups it was given: an application it refuses is reported,
        // and the file is still a complete config for what it does hold.
        exit: if epids_found { Exit::Success } else { worst },
        missing,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A refusing SRV target gets attempts at 0, 0.5, 1.0 and 1.5 s, then the next target is
    /// tried: "several SYNs over about 2 s" (`captures/genuine/README.md`).
    #[test]
    fn test_refused_srv_target_is_retried_within_the_dead_host_budget() {
        let mut began = Duration::ZERO;
        let mut attempts = vec![began];
        while let Some(next) = srv_retry_after(began, Failure::Refused) {
            began = next;
            attempts.push(next);
        }
        let ms: Vec<u128> = attempts.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 500, 1000, 1500]);
    }

    /// A silent target has had its SYNs within the one attempt; a host that answered in any
    /// other way is not tried again.
    #[test]
    fn test_other_failures_move_on_at_once() {
        for f in [
            Failure::Timeout,
            Failure::Reset,
            Failure::Closed,
            Failure::Protocol,
        ] {
            assert_eq!(srv_retry_after(Duration::ZERO, f), None, "{f}");
        }
    }
}
