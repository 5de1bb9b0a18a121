//! Workstation names as KMS clients send them: DNS-style (`laptop-4821.eng.example`, what
//! Windows sends) or NetBIOS-style (vlmcs's `-w` option), drawn from a random source the
//! caller passes in.

use rand::RngExt;

const DNS_HOSTS: &[&str] = &[
    "desktop", "laptop", "ws", "pc", "build", "dev", "mail", "web", "db", "app", "lab", "kiosk",
];
const DNS_DOMAINS: &[&str] = &[
    "corp", "office", "eng", "sales", "hq", "branch", "campus", "lab", "it", "finance",
];
const DNS_TLDS: &[&str] = &["example", "test", "internal", "local", "lan", "invalid"];

/// A random DNS-style workstation name, e.g. `laptop-4821.eng.example`.
pub fn random_dns_name<R: rand::Rng>(rng: &mut R) -> String {
    let pick = |rng: &mut R, list: &[&'static str]| list[rng.random_range(0..list.len())];
    let host = pick(rng, DNS_HOSTS);
    let n: u16 = rng.random_range(1..10000);
    let dom = pick(rng, DNS_DOMAINS);
    let tld = pick(rng, DNS_TLDS);
    format!("{host}-{n}.{dom}.{tld}")
}

/// A random NetBIOS-style name: up to 15 upper-case letters and digits.
pub fn random_netbios_name<R: rand::Rng>(rng: &mut R) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let len = rng.random_range(6..=15);
    (0..len)
        .map(|i| {
            let set = if i == 0 { &CHARS[..26] } else { CHARS };
            char::from(set[rng.random_range(0..set.len())])
        })
        .collect()
}
