//! KMS host discovery: the `_VLMCS._TCP` SRV lookup a Windows client makes, and the RFC 2782
//! priority and weight ordering it uses to choose among the hosts found.
//!
//! Also the target syntax of the client subcommands (`host[:port]`, `[v6]:port`, or `.domain`
//! for SRV discovery) and its resolution to addresses.
//!
//! [`lookup`] and [`resolve`] are the I/O here; [`order`] is pure and takes its randomness as an argument so
//! that a seeded generator makes it reproducible.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::rdata::SRV;
use hickory_resolver::proto::rr::{Name, RData};
use rand::seq::SliceRandom;
use rand::{Rng, RngExt};

use crate::proto::discovery::{SrvRecord, select_among};

/// Service and protocol labels KMS hosts publish under: "ensure that this security group is given
/// full control over the `_VLMCS._TCP` record" (Activate clients running Windows, "Domain Name
/// System server configuration"); the `_Service._Proto.Name` form is RFC 2782's. Spelt in upper
/// case as genuine Windows clients put it on the wire (measured by the public kmsrsos project;
/// DNS compares names without case, so any server answers it).
pub const SERVICE_LABELS: &str = "_VLMCS._TCP";

/// How long one lookup may wait for an answer. Short on purpose: a KMS client falls back to the
/// next host rather than waiting, and a harness must never hang on a silent name server.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Retries after a failed query. hickory's `ResolverOpts::attempts` counts *retries* (its
/// `RetryDnsHandle` sends `1 + attempts` times), so 0 means exactly one query.
const LOOKUP_RETRIES: usize = 0;

/// Where [`Resolver::system`] reads its configuration, for error messages.
#[cfg(windows)]
const SYSTEM_CONFIG_SOURCE: &str = "the Windows registry";
#[cfg(not(windows))]
const SYSTEM_CONFIG_SOURCE: &str = "/etc/resolv.conf";

/// One published KMS host: the target and parameters of a `_VLMCS._TCP` SRV record (RFC 2782,
/// "The format of the SRV RR").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SrvTarget {
    /// The host name to connect to, without the trailing dot.
    pub host: String,
    /// The TCP port of the KMS service (1688 unless the host was reconfigured).
    pub port: u16,
    /// Lower values are tried first.
    pub priority: u16,
    /// Relative share of selections among targets of equal priority.
    pub weight: u16,
}

impl SrvTarget {
    /// The target of a non-root SRV record.
    fn from_srv(srv: &SRV) -> Self {
        let mut host = srv.target.to_ascii();
        // Names from the wire are fully qualified; the host is meant for display and for a later
        // address lookup, where the trailing dot is noise.
        if host.ends_with('.') {
            host.pop();
        }
        Self {
            host,
            port: srv.port,
            priority: srv.priority,
            weight: srv.weight,
        }
    }
}

/// Why discovery found no KMS host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The name exists but has no SRV record: no KMS host publishes itself in this domain.
    #[error("no SRV records at {name}: no KMS host is published in this domain")]
    NoRecords {
        /// The query name, e.g. `_VLMCS._TCP.example.com`.
        name: String,
    },
    /// The only SRV target is "." (RFC 2782: "the service is decidedly not available at this
    /// domain").
    #[error("SRV target at {name} is \".\": the domain says KMS is decidedly not available")]
    NotAvailable {
        /// The query name.
        name: String,
    },
    /// The lookup itself failed; `message` says how (NXDOMAIN, timeout, server failure, ...).
    #[error("SRV lookup of {name} failed: {message}")]
    Resolve {
        /// The query name.
        name: String,
        /// What went wrong, in words.
        message: String,
    },
    /// No resolver could be set up, e.g. the system configuration is missing or unreadable.
    #[error("DNS resolver setup failed: {message}")]
    SystemConfig {
        /// What went wrong, naming the configuration source.
        message: String,
    },
}

/// A DNS resolver for discovery, with bounded timeouts.
#[derive(Debug, Clone)]
pub struct Resolver {
    inner: TokioResolver,
    /// Kept for error messages: hickory's timeout error does not say how long it waited.
    timeout: Duration,
}

impl Resolver {
    /// The system's resolver configuration (`/etc/resolv.conf` on Unix), with this module's
    /// timeout and retry count in place of the configured ones.
    pub fn system() -> Result<Self, DiscoveryError> {
        let setup_error = |e: NetError| DiscoveryError::SystemConfig {
            message: format!(
                "cannot use the system DNS configuration ({SYSTEM_CONFIG_SOURCE}): {e}"
            ),
        };
        let mut builder = TokioResolver::builder_tokio().map_err(setup_error)?;
        bound(builder.options_mut());
        let inner = builder.build().map_err(setup_error)?;
        Ok(Self {
            inner,
            timeout: LOOKUP_TIMEOUT,
        })
    }

    /// A resolver that asks one name server at `addr`, over UDP and (for truncated answers) TCP.
    pub fn with_nameserver(addr: SocketAddr) -> Result<Self, DiscoveryError> {
        let mut server = NameServerConfig::udp_and_tcp(addr.ip());
        for connection in &mut server.connections {
            connection.port = addr.port();
        }
        let config = ResolverConfig::from_name_servers(vec![server]);
        let mut options = ResolverOpts::default();
        bound(&mut options);
        // Only this server answers: a hosts file must not short-circuit the query.
        options.use_hosts_file = ResolveHosts::Never;
        let inner = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()
            .map_err(|e| DiscoveryError::SystemConfig {
                message: format!("cannot build a resolver for name server {addr}: {e}"),
            })?;
        Ok(Self {
            inner,
            timeout: LOOKUP_TIMEOUT,
        })
    }
}

/// Applies the time bounds every discovery resolver uses.
fn bound(options: &mut ResolverOpts) {
    options.timeout = LOOKUP_TIMEOUT;
    options.attempts = LOOKUP_RETRIES;
}

/// The SRV query name for `domain`, without the trailing dot: `_VLMCS._TCP.<domain>`. One leading
/// dot (".example.com", as domains are sometimes written) and one trailing dot are dropped.
pub fn query_name(domain: &str) -> String {
    format!("{SERVICE_LABELS}.{}", bare_domain(domain))
}

/// `domain` without one leading and one trailing dot.
fn bare_domain(domain: &str) -> &str {
    let domain = domain.strip_prefix('.').unwrap_or(domain);
    domain.strip_suffix('.').unwrap_or(domain)
}

/// Looks up the KMS hosts published for `domain` (SRV `_VLMCS._TCP.<domain>`), in the order the
/// server returned them; [`order`] chooses the order to try them in.
pub async fn lookup(domain: &str, resolver: &Resolver) -> Result<Vec<SrvTarget>, DiscoveryError> {
    let name = query_name(domain);
    if bare_domain(domain).is_empty() {
        return Err(DiscoveryError::Resolve {
            name,
            message: "the domain is empty".to_owned(),
        });
    }
    // Fully qualified, so the resolver's search list is not tried: the caller named the domain.
    // `from_str_relaxed` because the `_vlmcs` label is not a valid IDNA label.
    let fqdn = Name::from_str_relaxed(format!("{name}.")).map_err(|e| DiscoveryError::Resolve {
        name: name.clone(),
        message: format!("not a valid DNS name: {e}"),
    })?;

    let answer = match resolver.inner.srv_lookup(fqdn).await {
        Ok(answer) => answer,
        Err(NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, .. })))
            if response_code != ResponseCode::NXDomain =>
        {
            return Err(DiscoveryError::NoRecords { name });
        }
        Err(e) => {
            let message = describe(&e, resolver.timeout);
            return Err(DiscoveryError::Resolve { name, message });
        }
    };

    let mut targets = Vec::new();
    let mut saw_root = false;
    // The answer section may also hold CNAMEs met on the way; only SRV data names a host.
    for record in answer.answers() {
        if let RData::SRV(srv) = &record.data {
            if srv.target.is_root() {
                saw_root = true;
            } else {
                targets.push(SrvTarget::from_srv(srv));
            }
        }
    }
    match (targets.is_empty(), saw_root) {
        (true, true) => Err(DiscoveryError::NotAvailable { name }),
        (true, false) => Err(DiscoveryError::NoRecords { name }),
        // A "." beside real targets is malformed (RFC 2782 gives it meaning only alone); it names
        // nothing to connect to, so the real targets stand.
        (false, _) => Ok(targets),
    }
}

/// Words for a failed lookup, naming the kind of failure first.
fn describe(error: &NetError, timeout: Duration) -> String {
    match error {
        NetError::Timeout => format!(
            "timeout: no answer from the name server within {} s",
            timeout.as_secs_f32()
        ),
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: ResponseCode::NXDomain,
            ..
        })) => "NXDOMAIN: the name does not exist".to_owned(),
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => {
            "server failure (SERVFAIL) from the name server".to_owned()
        }
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => {
            "the name server refused the query (REFUSED)".to_owned()
        }
        NetError::Dns(DnsError::ResponseCode(code)) => format!(
            "the name server answered with error code {} ({code})",
            u16::from(*code)
        ),
        NetError::Io(e) => format!("network error talking to the name server: {e}"),
        NetError::NoConnections => "no name server could be reached".to_owned(),
        NetError::Proto(e) => format!("malformed DNS response: {e}"),
        other => other.to_string(),
    }
}

/// Orders `targets` the way RFC 2782 ("Usage rules") tells a client to try them: ascending
/// priority, and within one priority a weighted random order in which each next target is chosen
/// with probability proportional to its weight: [`select_among`] (the one RFC 2782 choice,
/// which `simulate` also uses) called until every target is taken.
pub fn order<R: Rng + ?Sized>(mut targets: Vec<SrvTarget>, rng: &mut R) -> Vec<SrvTarget> {
    // "arrange all SRV RRs (that have not been ordered yet) in any order, except that all those
    // with weight 0 are placed at the beginning of the list": a random arrangement keeps the order
    // among equal running sums (all-zero weights) from being fixed by the answer order.
    targets.shuffle(rng);
    let records: Vec<SrvRecord> = targets
        .iter()
        .map(|t| SrvRecord {
            priority: t.priority,
            weight: t.weight,
        })
        .collect();
    let mut taken = vec![false; targets.len()];
    let mut picks = Vec::with_capacity(targets.len());
    while let Some(i) = select_among(&records, |i| taken[i], rng.random()) {
        taken[i] = true;
        picks.push(i);
    }
    let mut slots: Vec<Option<SrvTarget>> = targets.into_iter().map(Some).collect();
    picks.into_iter().filter_map(|i| slots[i].take()).collect()
}

// Target syntax and resolution

/// The KMS port (Microsoft docs: "TCP port 1688").
pub const KMS_PORT: u16 = 1688;

/// Where to send requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A host name or address and a port.
    Host {
        /// Name or literal address.
        host: String,
        /// Port.
        port: u16,
    },
    /// Discover hosts through `_VLMCS._TCP.<domain>` SRV records.
    Srv {
        /// The domain.
        domain: String,
    },
}

/// Which address family to prefer when a name has both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpPreference {
    /// Whatever the resolver returns first.
    #[default]
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl core::fmt::Display for Target {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Target::Host { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Host { host, port } => write!(f, "{host}:{port}"),
            Target::Srv { domain } => write!(f, ".{domain}"),
        }
    }
}

/// Why a target does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Nothing was given.
    #[error("empty target")]
    Empty,
    /// `.` without a domain.
    #[error("target `.` needs a domain: `.example.com` looks up _VLMCS._TCP.example.com")]
    NoDomain,
    /// A port that is not 1 to 65535.
    #[error("target {target:?}: port {port:?} is not a number from 1 to 65535")]
    BadPort {
        /// The target as given.
        target: String,
        /// The port part.
        port: String,
    },
    /// `[` without `]`.
    #[error("target {0:?}: missing `]` after an IPv6 address")]
    UnclosedBracket(String),
    /// Something other than `:port` after `]`.
    #[error("target {0:?}: expected `:port` after `]`")]
    AfterBracket(String),
}

impl core::str::FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Target, TargetError> {
        let s = s.trim();
        if let Some(domain) = s.strip_prefix('.') {
            if domain.is_empty() {
                return Err(TargetError::NoDomain);
            }
            return Ok(Target::Srv {
                domain: domain.to_owned(),
            });
        }
        let bad_port = |p: &str| TargetError::BadPort {
            target: s.to_owned(),
            port: p.to_owned(),
        };
        if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| TargetError::UnclosedBracket(s.to_owned()))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p
                    .parse()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| bad_port(p))?,
                None if after.is_empty() => KMS_PORT,
                None => return Err(TargetError::AfterBracket(s.to_owned())),
            };
            return Ok(Target::Host {
                host: host.to_owned(),
                port,
            });
        }
        if s.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
            return Ok(Target::Host {
                host: s.to_owned(),
                port: KMS_PORT,
            });
        }
        match s.rsplit_once(':') {
            Some((host, p)) => Ok(Target::Host {
                host: host.to_owned(),
                port: p
                    .parse()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| bad_port(p))?,
            }),
            None if s.is_empty() => Err(TargetError::Empty),
            None => Ok(Target::Host {
                host: s.to_owned(),
                port: KMS_PORT,
            }),
        }
    }
}

/// Why a target gave no address to connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name lookup failed.
    #[error("cannot resolve {host:?}: {message}")]
    Lookup {
        /// The name.
        host: String,
        /// The resolver's words.
        message: String,
    },
    /// The name has addresses, but none of the wanted family.
    #[error("{host:?} has no {family} address")]
    NoAddress {
        /// The name.
        host: String,
        /// `IPv4`, `IPv6` or `usable`.
        family: &'static str,
    },
    /// SRV discovery failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// SRV records were found, but none of their targets resolved.
    #[error("no usable host for {SERVICE_LABELS}.{domain}")]
    NoUsableHost {
        /// The domain.
        domain: String,
    },
}

/// Resolves a host name (or literal) to addresses, filtered by family preference.
pub async fn resolve(
    host: &str,
    port: u16,
    prefer: IpPreference,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| ResolveError::Lookup {
            host: host.to_owned(),
            message: e.to_string(),
        })?
        .filter(|a| match prefer {
            IpPreference::Any => true,
            IpPreference::V4 => a.is_ipv4(),
            IpPreference::V6 => a.is_ipv6(),
        })
        .collect();
    if addrs.is_empty() {
        return Err(ResolveError::NoAddress {
            host: host.to_owned(),
            family: match prefer {
                IpPreference::V4 => "IPv4",
                IpPreference::V6 => "IPv6",
                IpPreference::Any => "usable",
            },
        });
    }
    Ok(addrs)
}

/// The host addresses to try, in order: resolved names, or SRV targets by priority and weight.
pub async fn addresses(
    target: &Target,
    prefer: IpPreference,
) -> Result<Vec<SocketAddr>, ResolveError> {
    match target {
        Target::Host { host, port } => resolve(host, *port, prefer).await,
        Target::Srv { domain } => addresses_from_srv(domain, &Resolver::system()?, prefer).await,
    }
}

/// Where a client connects. A host the user named is resolved at once ([`Hosts::Known`]);
/// SRV discovery ([`Hosts::Srv`]) resolves a target's name only when the client reaches it,
/// as a Windows client does, and keeps the host that answered for the next request.
#[derive(Debug, Clone)]
pub enum Hosts {
    /// Addresses to try in order.
    Known(Vec<SocketAddr>),
    /// SRV targets in RFC 2782 order.
    Srv(SrvHosts),
}

/// The SRV targets of one domain, in the order a client tries them, each resolved on first
/// use, and the host that last answered.
#[derive(Debug, Clone)]
pub struct SrvHosts {
    domain: String,
    targets: Vec<SrvTarget>,
    prefer: IpPreference,
    cached: Option<SocketAddr>,
    resolved: Vec<String>,
}

impl SrvHosts {
    /// Targets already in the order to try them (see [`order`]).
    pub fn new(domain: &str, targets: Vec<SrvTarget>, prefer: IpPreference) -> SrvHosts {
        SrvHosts {
            domain: domain.to_owned(),
            targets,
            prefer,
            cached: None,
            resolved: Vec::new(),
        }
    }

    /// The domain the records came from.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The targets, in the order they are tried.
    pub fn targets(&self) -> &[SrvTarget] {
        &self.targets
    }

    /// The host that answered last, tried first next time ("the client caches the responding
    /// host", `captures/genuine/README.md`).
    pub fn cached(&self) -> Option<SocketAddr> {
        self.cached
    }

    /// Keeps (or, with `None`, forgets) the host that answered.
    pub fn set_cached(&mut self, addr: Option<SocketAddr>) {
        self.cached = addr;
    }

    /// Every target name resolved so far, in order (a name resolved twice is listed twice).
    pub fn resolved(&self) -> &[String] {
        &self.resolved
    }

    /// The addresses of target `index`, looked up now.
    pub async fn resolve(&mut self, index: usize) -> Result<Vec<SocketAddr>, ResolveError> {
        let Some(t) = self.targets.get(index) else {
            return Err(ResolveError::NoUsableHost {
                domain: self.domain.clone(),
            });
        };
        self.resolved.push(t.host.clone());
        resolve(&t.host, t.port, self.prefer).await
    }
}

/// Where `target` is: a host name resolved now, or the SRV records of a domain in the order a
/// client tries them, their names left for [`SrvHosts::resolve`].
pub async fn hosts(target: &Target, prefer: IpPreference) -> Result<Hosts, ResolveError> {
    match target {
        Target::Host { host, port } => resolve(host, *port, prefer).await.map(Hosts::Known),
        Target::Srv { domain } => srv_hosts(domain, &Resolver::system()?, prefer).await,
    }
}

/// [`hosts`] for SRV discovery with a given resolver.
pub async fn srv_hosts(
    domain: &str,
    resolver: &Resolver,
    prefer: IpPreference,
) -> Result<Hosts, ResolveError> {
    let records = lookup(domain, resolver).await?;
    let ordered = order(records, &mut rand::rng());
    if ordered.is_empty() {
        return Err(ResolveError::NoUsableHost {
            domain: domain.to_owned(),
        });
    }
    Ok(Hosts::Srv(SrvHosts::new(domain, ordered, prefer)))
}

/// SRV discovery with a given resolver: every target's addresses, in RFC 2782 order.
pub async fn addresses_from_srv(
    domain: &str,
    resolver: &Resolver,
    prefer: IpPreference,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let records = lookup(domain, resolver).await?;
    let ordered = order(records, &mut rand::rng());
    let mut out = Vec::new();
    let mut last_err = None;
    for t in ordered {
        match resolve(&t.host, t.port, prefer).await {
            Ok(a) => out.extend(a),
            Err(e) => last_err = Some(e),
        }
    }
    if out.is_empty() {
        return Err(last_err.unwrap_or_else(|| ResolveError::NoUsableHost {
            domain: domain.to_owned(),
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::time::Instant;

    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Record, RecordType};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use tokio::net::UdpSocket;
    use tokio::task::JoinHandle;

    use super::*;

    /// Upper bound on any one network test, far above [`LOOKUP_TIMEOUT`]: a failing test fails
    /// instead of hanging.
    const TEST_DEADLINE: Duration = Duration::from_secs(10);

    fn target(host: &str, priority: u16, weight: u16) -> SrvTarget {
        SrvTarget {
            host: host.to_owned(),
            port: 1688,
            priority,
            weight,
        }
    }

    /// How often each host is chosen first over `runs` orderings from one seeded generator.
    fn first_pick_shares(targets: &[SrvTarget], runs: u32, seed: u64) -> Vec<(String, f64)> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut counts = vec![0u32; targets.len()];
        for _ in 0..runs {
            let first = order(targets.to_vec(), &mut rng).remove(0);
            let i = targets.iter().position(|t| *t == first).unwrap();
            counts[i] += 1;
        }
        targets
            .iter()
            .zip(counts)
            .map(|(t, c)| (t.host.clone(), f64::from(c) / f64::from(runs)))
            .collect()
    }

    #[test]
    fn test_order_priorities_ascend() {
        let targets = vec![
            target("c", 30, 5),
            target("a1", 10, 1),
            target("b", 20, 0),
            target("a2", 10, 100),
            target("a3", 10, 0),
        ];
        for seed in 0..200 {
            let ordered = order(targets.clone(), &mut StdRng::seed_from_u64(seed));
            let priorities: Vec<u16> = ordered.iter().map(|t| t.priority).collect();
            assert_eq!(priorities, [10, 10, 10, 20, 30], "seed {seed}");
            let mut hosts: Vec<&str> = ordered.iter().map(|t| t.host.as_str()).collect();
            hosts.sort_unstable();
            assert_eq!(
                hosts,
                ["a1", "a2", "a3", "b", "c"],
                "seed {seed}: not a permutation"
            );
        }
    }

    #[test]
    fn test_order_weights_set_first_pick_frequency() {
        let targets = [
            target("w10", 0, 10),
            target("w30", 0, 30),
            target("w60", 0, 60),
        ];
        let shares = first_pick_shares(&targets, 10_000, 2782);
        for ((host, share), expected) in shares.iter().zip([0.10, 0.30, 0.60]) {
            assert!(
                (share - expected).abs() <= 0.03,
                "{host}: chosen first {share:.3}, expected {expected:.2} +- 0.03"
            );
        }
    }

    #[test]
    fn test_order_all_zero_weights_pick_each() {
        let targets = [target("z1", 0, 0), target("z2", 0, 0), target("z3", 0, 0)];
        for (host, share) in first_pick_shares(&targets, 10_000, 7) {
            assert!(
                (share - 1.0 / 3.0).abs() <= 0.03,
                "{host}: chosen first {share:.3}"
            );
        }
    }

    #[test]
    fn test_order_zero_weight_beside_weighted_is_rare_but_possible() {
        // Running sums 0 and 10 over picks 0..=10: the weight-0 target wins only on a pick of 0.
        let targets = [target("zero", 0, 0), target("ten", 0, 10)];
        let shares = first_pick_shares(&targets, 10_000, 11);
        let zero = shares[0].1;
        assert!(
            zero > 0.0,
            "a weight-0 target must still be chosen sometimes"
        );
        assert!(
            (zero - 1.0 / 11.0).abs() <= 0.03,
            "zero chosen first {zero:.3}"
        );
    }

    #[test]
    fn test_order_deterministic_for_seed() {
        let targets: Vec<SrvTarget> = (0..8u16)
            .map(|i| target(&format!("h{i}"), i % 3, i * 7))
            .collect();
        let a = order(targets.clone(), &mut StdRng::seed_from_u64(42));
        let b = order(targets.clone(), &mut StdRng::seed_from_u64(42));
        assert_eq!(a, b);
        assert_eq!(order(Vec::new(), &mut StdRng::seed_from_u64(42)), []);
    }

    #[test]
    fn test_query_name() {
        assert_eq!(query_name("example.com"), "_VLMCS._TCP.example.com");
        assert_eq!(query_name(".example.com"), "_VLMCS._TCP.example.com");
        assert_eq!(query_name("example.com."), "_VLMCS._TCP.example.com");
    }

    #[test]
    fn test_error_display_is_one_line_naming_the_query() {
        let name = "_VLMCS._TCP.example.com".to_owned();
        let errors = [
            DiscoveryError::NoRecords { name: name.clone() },
            DiscoveryError::NotAvailable { name: name.clone() },
            DiscoveryError::Resolve {
                name: name.clone(),
                message: "NXDOMAIN: the name does not exist".to_owned(),
            },
        ];
        for error in errors {
            let text = error.to_string();
            assert!(text.contains(&name) && !text.contains('\n'), "{text}");
        }
    }

    // --- A loopback DNS responder for `lookup` ---

    /// The SRV records the responder publishes for `_vlmcs._tcp.example.test`.
    fn published() -> Vec<SrvTarget> {
        vec![
            target("kms1.example.test", 0, 60),
            target("kms2.example.test", 0, 40),
            SrvTarget {
                port: 11688,
                ..target("kms-backup.example.test", 10, 0)
            },
        ]
    }

    fn srv_record(owner: &Name, priority: u16, weight: u16, port: u16, host: &str) -> Record {
        let srv = SRV::new(priority, weight, port, Name::from_ascii(host).unwrap());
        Record::from_rdata(owner.clone(), 300, RData::SRV(srv))
    }

    /// The responder's zone: SRV answers, or the response code to send instead.
    fn zone(query: &Query) -> Result<Vec<Record>, ResponseCode> {
        let owner = query.name();
        let is = |name: &str| *owner == Name::from_ascii(name).unwrap();
        if is("_vlmcs._tcp.example.test.") && query.query_type() == RecordType::SRV {
            let records = published()
                .iter()
                .map(|t| srv_record(owner, t.priority, t.weight, t.port, &format!("{}.", t.host)))
                .collect();
            Ok(records)
        } else if is("_vlmcs._tcp.unavailable.test.") {
            Ok(vec![srv_record(owner, 0, 0, 0, ".")])
        } else if is("_vlmcs._tcp.empty.test.") {
            // The name exists with other data: NOERROR and an empty answer section.
            Ok(Vec::new())
        } else {
            Err(ResponseCode::NXDomain)
        }
    }

    /// A UDP DNS responder on 127.0.0.1; its task is aborted when this is dropped, so it ends
    /// with the test even when the test fails.
    struct Responder {
        addr: SocketAddr,
        task: JoinHandle<()>,
    }

    impl Drop for Responder {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Responder {
        /// Answers every query from [`zone`].
        async fn answering() -> Self {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = socket.local_addr().unwrap();
            let task = tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                        return;
                    };
                    // A query the responder cannot parse gets no answer, like a real server's drop.
                    let Some(reply) = respond(&buf[..len]) else {
                        continue;
                    };
                    let _ = socket.send_to(&reply, peer).await;
                }
            });
            Self { addr, task }
        }

        /// Holds the port open (so no ICMP unreachable comes back) and never answers.
        async fn silent() -> Self {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = socket.local_addr().unwrap();
            let task = tokio::spawn(async move {
                let _socket = socket;
                std::future::pending::<()>().await;
            });
            Self { addr, task }
        }
    }

    /// The wire response to one wire query.
    fn respond(query: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(query).ok()?;
        let mut response = Message::response(request.id, request.op_code);
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = request.recursion_desired;
        response.metadata.recursion_available = true;
        response.add_queries(request.queries.iter().cloned());
        let question = request.queries.first()?;
        match zone(question) {
            Ok(records) => {
                response.add_answers(records);
            }
            Err(code) => response.metadata.response_code = code,
        }
        response.to_vec().ok()
    }

    async fn bounded<F: Future>(future: F) -> F::Output {
        tokio::time::timeout(TEST_DEADLINE, future)
            .await
            .expect("test exceeded its deadline")
    }

    #[tokio::test]
    async fn test_lookup_returns_published_targets() {
        let responder = Responder::answering().await;
        let resolver = Resolver::with_nameserver(responder.addr).unwrap();
        let mut found = bounded(lookup("example.test", &resolver)).await.unwrap();
        let mut expected = published();
        found.sort_by(|a, b| a.host.cmp(&b.host));
        expected.sort_by(|a, b| a.host.cmp(&b.host));
        assert_eq!(found, expected);

        // A leading dot names the same domain.
        let again = bounded(lookup(".example.test", &resolver)).await.unwrap();
        assert_eq!(again.len(), 3);
    }

    #[tokio::test]
    async fn test_lookup_nxdomain_names_the_query() {
        let responder = Responder::answering().await;
        let resolver = Resolver::with_nameserver(responder.addr).unwrap();
        let error = bounded(lookup("other.test", &resolver)).await.unwrap_err();
        match &error {
            DiscoveryError::Resolve { name, message } => {
                assert_eq!(name, "_VLMCS._TCP.other.test");
                assert!(message.contains("NXDOMAIN"), "{message}");
            }
            other => panic!("expected Resolve, got {other:?}"),
        }
        assert!(error.to_string().contains("_VLMCS._TCP.other.test"));
    }

    #[tokio::test]
    async fn test_lookup_no_data_and_not_available() {
        let responder = Responder::answering().await;
        let resolver = Resolver::with_nameserver(responder.addr).unwrap();
        assert_eq!(
            bounded(lookup("empty.test", &resolver)).await,
            Err(DiscoveryError::NoRecords {
                name: "_VLMCS._TCP.empty.test".to_owned()
            })
        );
        assert_eq!(
            bounded(lookup("unavailable.test", &resolver)).await,
            Err(DiscoveryError::NotAvailable {
                name: "_VLMCS._TCP.unavailable.test".to_owned()
            })
        );
    }

    #[tokio::test]
    async fn test_lookup_empty_domain_is_rejected() {
        let responder = Responder::silent().await;
        let resolver = Resolver::with_nameserver(responder.addr).unwrap();
        let error = bounded(lookup(".", &resolver)).await.unwrap_err();
        assert!(matches!(error, DiscoveryError::Resolve { .. }), "{error}");
    }

    #[tokio::test]
    async fn test_lookup_silent_server_times_out() {
        let responder = Responder::silent().await;
        let resolver = Resolver::with_nameserver(responder.addr).unwrap();
        let started = Instant::now();
        let error = bounded(lookup("example.test", &resolver))
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        match &error {
            DiscoveryError::Resolve { name, message } => {
                assert_eq!(name, "_VLMCS._TCP.example.test");
                assert!(message.starts_with("timeout"), "{message}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(elapsed < LOOKUP_TIMEOUT * 2, "took {elapsed:?}");
    }

    #[test]
    fn target_syntax() {
        let t = |s: &str| s.parse::<Target>();
        assert_eq!(
            t("127.0.0.1").unwrap(),
            Target::Host {
                host: "127.0.0.1".into(),
                port: 1688
            }
        );
        assert_eq!(
            t("localhost:17001").unwrap(),
            Target::Host {
                host: "localhost".into(),
                port: 17001
            }
        );
        assert_eq!(
            t("[::1]:1689").unwrap(),
            Target::Host {
                host: "::1".into(),
                port: 1689
            }
        );
        assert_eq!(
            t("[::1]").unwrap(),
            Target::Host {
                host: "::1".into(),
                port: 1688
            }
        );
        assert_eq!(
            t("::1").unwrap(),
            Target::Host {
                host: "::1".into(),
                port: 1688
            }
        );
        assert_eq!(
            t(".example.test").unwrap(),
            Target::Srv {
                domain: "example.test".into()
            }
        );
        for bad in ["", ".", "host:0", "host:x", "[::1", "[::1]x"] {
            assert!(t(bad).is_err(), "{bad}");
        }
        assert_eq!(t("[::1]:1689").unwrap().to_string(), "[::1]:1689");
    }
}
