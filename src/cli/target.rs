//! Target syntax shared by the client subcommands: `host[:port]`, `[v6]:port`, or `.domain`
//! for DNS SRV discovery.

use std::net::{IpAddr, SocketAddr};

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
    /// Discover hosts through `_vlmcs._tcp.<domain>` SRV records.
    Srv {
        /// The domain.
        domain: String,
    },
}

/// Which address family to prefer when a name has both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpPreference {
    /// Whatever the resolver returns first.
    #[default]
    Any,
    /// IPv4 only.
    #[value(name = "4")]
    V4,
    /// IPv6 only.
    #[value(name = "6")]
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

impl core::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        let s = s.trim();
        if let Some(domain) = s.strip_prefix('.') {
            if domain.is_empty() {
                return Err(
                    "target `.` needs a domain: `.example.com` looks up _vlmcs._tcp.example.com"
                        .into(),
                );
            }
            return Ok(Target::Srv {
                domain: domain.to_owned(),
            });
        }
        let bad_port =
            |p: &str| format!("target {s:?}: port {p:?} is not a number from 1 to 65535");
        if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("target {s:?}: missing `]` after an IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p
                    .parse()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| bad_port(p))?,
                None if after.is_empty() => KMS_PORT,
                None => return Err(format!("target {s:?}: expected `:port` after `]`")),
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
            None if s.is_empty() => Err("empty target".into()),
            None => Ok(Target::Host {
                host: s.to_owned(),
                port: KMS_PORT,
            }),
        }
    }
}

/// Resolves a host name (or literal) to addresses, filtered by family preference.
pub async fn resolve(
    host: &str,
    port: u16,
    prefer: IpPreference,
) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .filter(|a| match prefer {
            IpPreference::Any => true,
            IpPreference::V4 => a.is_ipv4(),
            IpPreference::V6 => a.is_ipv6(),
        })
        .collect();
    if addrs.is_empty() {
        return Err(format!(
            "{host:?} has no {} address",
            match prefer {
                IpPreference::V4 => "IPv4",
                IpPreference::V6 => "IPv6",
                IpPreference::Any => "usable",
            }
        ));
    }
    Ok(addrs)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_parse() {
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
