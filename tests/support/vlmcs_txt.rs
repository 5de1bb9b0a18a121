//! Test support: parses what the third-party KMS client `vlmcs -v` prints, so tests can compare
//! a capture's decoded messages with what the client itself reported.
//!
//! The layout follows vlmcs (svn1113) as seen in `captures/*.txt`: per request a "Request
//! Parameters" block, then "Connecting to ..." and RPC bind lines when a connection is opened
//! (once for a run on one connection, once per request with `-T`), a "Sending activation
//! request" line, and a "Response from KMS server" block. With `-n 30` every block is printed
//! for every request. Field lines are `Name<padding>: value`; unknown names inside a block are
//! errors so that a change in vlmcs's output is noticed, not silently half-parsed.

/// Heading of the block vlmcs prints before sending each request.
const REQUEST_HEADING: &str = "Request Parameters";
/// Heading of the block vlmcs prints for each response it could decode.
const RESPONSE_HEADING: &str = "Response from KMS server";
const CONNECTING_PREFIX: &str = "Connecting to ";
const BIND_START: &str = "Performing RPC bind ...";
/// Bind outcome lines start with an ellipsis, e.g. `... NDR64 ... BTFN ... NDR32 ... successful`.
const BIND_RESULT_PREFIX: &str = "... ";
const SENDING_PREFIX: &str = "Sending activation request (KMS ";
/// vlmcs separates an address (or a bind step) from its outcome with this.
const ELLIPSIS: &str = " ... ";
/// Field names of a "Request Parameters" block, in vlmcs's order.
const REQUEST_FIELDS: [&str; 12] = [
    "Protocol version",
    "Client is a virtual machine",
    "Licensing status",
    "Remaining time (0 = forever)",
    "Application ID",
    "SKU ID (aka Activation ID)",
    "KMS ID (aka KMS counted ID)",
    "Client machine ID",
    "Previous client machine ID",
    "Client request timestamp (UTC)",
    "Workstation name",
    "N count policy (minimum clients)",
];
/// Field names of a "Response from KMS server" block; the hardware id only for V6.
const RESPONSE_FIELDS: [&str; 9] = [
    "Size of KMS Response",
    "Protocol version",
    "KMS host extended PID",
    "KMS host Hardware ID",
    "Client machine ID",
    "Client request timestamp (UTC)",
    "KMS host current active clients",
    "Renewal interval policy",
    "Activation interval policy",
];

/// Everything one `vlmcs -v` run printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VlmcsRun {
    /// "Request Parameters" blocks, in order.
    pub requests: Vec<RequestParams>,
    /// "Connecting to ADDR ... RESULT" lines, in order.
    pub connects: Vec<Connect>,
    /// Bind outcome lines as printed, e.g. `... NDR64 ... BTFN ... NDR32 ... successful`.
    pub bind_results: Vec<String>,
    /// "Sending activation request (KMS V6) 1 of 30" lines, in order.
    pub sends: Vec<Send>,
    /// "Response from KMS server" blocks, in order.
    pub responses: Vec<ResponseInfo>,
    /// Non-empty lines outside blocks that match nothing above (warnings, errors), trimmed.
    pub other_lines: Vec<String>,
}

/// One "Request Parameters" block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestParams {
    /// "Protocol version": (major, minor).
    pub version: (u16, u16),
    /// "Client is a virtual machine": Yes / No.
    pub virtual_machine: bool,
    /// "Licensing status", the number.
    pub license_status: u32,
    /// "Licensing status", the name vlmcs gives in parentheses, e.g. "OOB grace".
    pub license_status_name: String,
    /// "Remaining time (0 = forever)" in minutes.
    pub remaining_minutes: u32,
    /// "Application ID", lowercase GUID.
    pub application_id: String,
    /// The product name vlmcs prints after it, e.g. "Windows".
    pub application_name: String,
    /// "SKU ID (aka Activation ID)", lowercase GUID.
    pub sku_id: String,
    pub sku_name: String,
    /// "KMS ID (aka KMS counted ID)", lowercase GUID.
    pub kms_id: String,
    pub kms_name: String,
    /// "Client machine ID", lowercase GUID.
    pub cmid: String,
    /// "Previous client machine ID", lowercase GUID.
    pub previous_cmid: String,
    /// "Client request timestamp (UTC)" exactly as printed: `YYYY-MM-DD HH:MM:SS`.
    pub timestamp: String,
    /// "Workstation name".
    pub workstation: String,
    /// "N count policy (minimum clients)".
    pub n_policy: u32,
}

/// One "Response from KMS server" block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseInfo {
    /// "Size of KMS Response" in bytes (the hex form printed beside it is checked to agree).
    pub size: u32,
    /// "Protocol version": (major, minor).
    pub version: (u16, u16),
    /// "KMS host extended PID" as printed.
    pub epid: String,
    /// "KMS host Hardware ID", 16 uppercase hex digits; only V6 responses carry one.
    pub hwid: Option<String>,
    /// "Client machine ID" echoed by the host, lowercase GUID.
    pub cmid: String,
    /// "Client request timestamp (UTC)" echoed by the host, as printed.
    pub timestamp: String,
    /// "KMS host current active clients".
    pub active_clients: u32,
    /// "Renewal interval policy" in minutes.
    pub renewal_interval: u32,
    /// "Activation interval policy" in minutes.
    pub activation_interval: u32,
}

/// A "Connecting to ADDR ... RESULT" line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connect {
    /// As printed, e.g. `127.0.0.1:17001` or `[::1]:17003`.
    pub address: String,
    /// As printed, e.g. `successful`.
    pub result: String,
}

/// A "Sending activation request (KMS V6) 1 of 30" line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Send {
    /// The protocol named in parentheses, e.g. "V6".
    pub protocol: String,
    /// 1-based request number.
    pub index: u32,
    /// Requests in the run.
    pub total: u32,
}

/// Which block the parser is inside.
enum Block {
    Request,
    Response,
}

/// Field lines of a block being read: (name, value, line number).
type Fields<'a> = Vec<(&'a str, &'a str, usize)>;

/// Parses the whole output of one `vlmcs -v` run.
///
/// Errors name the 1-based line and what was wrong with it.
pub fn parse(text: &str) -> Result<VlmcsRun, String> {
    let mut run = VlmcsRun::default();
    let mut block: Option<(Block, Fields<'_>, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end();
        if let Some((kind, fields, start)) = &mut block {
            if fields.is_empty() && (line.is_empty() || line.bytes().all(|b| b == b'=')) {
                // The underline and the blank line between heading and fields.
                continue;
            }
            if !line.is_empty() {
                let (name, value) = line.split_once(':').ok_or_else(|| {
                    format!("line {line_no}: expected `name : value` in the block from line {start}, got {line:?}")
                })?;
                fields.push((name.trim(), value.trim(), line_no));
                continue;
            }
            let fields = std::mem::take(fields);
            finish_block(&mut run, kind, &fields, *start)?;
            block = None;
            continue;
        }
        if line == REQUEST_HEADING {
            block = Some((Block::Request, Vec::new(), line_no));
        } else if line == RESPONSE_HEADING {
            block = Some((Block::Response, Vec::new(), line_no));
        } else if let Some(rest) = line.strip_prefix(CONNECTING_PREFIX) {
            let (address, result) = rest
                .split_once(ELLIPSIS)
                .ok_or_else(|| format!("line {line_no}: connect line without \"...\": {line:?}"))?;
            run.connects.push(Connect {
                address: address.to_string(),
                result: result.trim().to_string(),
            });
        } else if line == BIND_START || line.is_empty() {
        } else if line.starts_with(BIND_RESULT_PREFIX) {
            run.bind_results.push(line.trim().to_string());
        } else if let Some(rest) = line.strip_prefix(SENDING_PREFIX) {
            run.sends
                .push(parse_send(rest).map_err(|e| format!("line {line_no}: {e}: {line:?}"))?);
        } else {
            run.other_lines.push(line.trim().to_string());
        }
    }
    // Output that ends without the blank line closing a block.
    if let Some((kind, fields, start)) = block
        && !fields.is_empty()
    {
        finish_block(&mut run, &kind, &fields, start)?;
    }
    Ok(run)
}

/// `V6) 1 of 30`
fn parse_send(rest: &str) -> Result<Send, String> {
    let (protocol, counts) = rest.split_once(')').ok_or("no closing parenthesis")?;
    let (index, total) = counts.trim().split_once(" of ").ok_or("no \"N of M\"")?;
    Ok(Send {
        protocol: protocol.to_string(),
        index: number(index)?,
        total: number(total)?,
    })
}

fn finish_block(
    run: &mut VlmcsRun,
    kind: &Block,
    fields: &Fields<'_>,
    start: usize,
) -> Result<(), String> {
    let known: &[&str] = match kind {
        Block::Request => &REQUEST_FIELDS,
        Block::Response => &RESPONSE_FIELDS,
    };
    let mut f = FieldSet::new(fields, start, known)?;
    match kind {
        Block::Request => {
            let (license_status, license_status_name) =
                f.take("Licensing status", number_and_name)?;
            let (application_id, application_name) = f.take("Application ID", guid_and_name)?;
            let (sku_id, sku_name) = f.take("SKU ID (aka Activation ID)", guid_and_name)?;
            let (kms_id, kms_name) = f.take("KMS ID (aka KMS counted ID)", guid_and_name)?;
            let request = RequestParams {
                version: f.take("Protocol version", version)?,
                virtual_machine: f.take("Client is a virtual machine", yes_no)?,
                license_status,
                license_status_name,
                remaining_minutes: f.take("Remaining time (0 = forever)", minutes)?,
                application_id,
                application_name,
                sku_id,
                sku_name,
                kms_id,
                kms_name,
                cmid: f.take("Client machine ID", guid)?,
                previous_cmid: f.take("Previous client machine ID", guid)?,
                timestamp: f.take("Client request timestamp (UTC)", timestamp)?,
                workstation: f.take("Workstation name", |v| Ok(v.to_string()))?,
                n_policy: f.take("N count policy (minimum clients)", number)?,
            };
            run.requests.push(request);
        }
        Block::Response => {
            let response = ResponseInfo {
                size: f.take("Size of KMS Response", size)?,
                version: f.take("Protocol version", version)?,
                epid: f.take("KMS host extended PID", non_empty)?,
                hwid: f.take_optional("KMS host Hardware ID", hwid)?,
                cmid: f.take("Client machine ID", guid)?,
                timestamp: f.take("Client request timestamp (UTC)", timestamp)?,
                active_clients: f.take("KMS host current active clients", number)?,
                renewal_interval: f.take("Renewal interval policy", number)?,
                activation_interval: f.take("Activation interval policy", number)?,
            };
            run.responses.push(response);
        }
    }
    Ok(())
}

/// The fields of one block, all known and none repeated, each taken once.
struct FieldSet<'a> {
    fields: Vec<(&'a str, &'a str, usize)>,
    start: usize,
}

impl<'a> FieldSet<'a> {
    fn new(fields: &Fields<'a>, start: usize, known: &[&str]) -> Result<FieldSet<'a>, String> {
        for (i, (name, _, line)) in fields.iter().enumerate() {
            if !known.contains(name) {
                return Err(format!("line {line}: unknown field {name:?}"));
            }
            if fields.iter().take(i).any(|(n, _, _)| n == name) {
                return Err(format!(
                    "line {line}: field {name:?} repeated in the block from line {start}"
                ));
            }
        }
        Ok(FieldSet {
            fields: fields.clone(),
            start,
        })
    }

    fn take_optional<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        let Some(i) = self.fields.iter().position(|(n, _, _)| *n == name) else {
            return Ok(None);
        };
        let (_, value, line) = self.fields.remove(i);
        parse(value)
            .map(Some)
            .map_err(|e| format!("line {line}: {name}: {e} in {value:?}"))
    }

    fn take<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, String> {
        let start = self.start;
        self.take_optional(name, parse)?
            .ok_or_else(|| format!("block from line {start}: field {name:?} missing"))
    }
}

fn number(v: &str) -> Result<u32, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{v:?} is not a number"))
}

/// `6.0`
fn version(v: &str) -> Result<(u16, u16), String> {
    let (major, minor) = v.split_once('.').ok_or("version without a dot")?;
    let part = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{p:?} is not a version number"))
    };
    Ok((part(major)?, part(minor)?))
}

fn yes_no(v: &str) -> Result<bool, String> {
    match v {
        "Yes" => Ok(true),
        "No" => Ok(false),
        _ => Err("expected Yes or No".into()),
    }
}

/// `43200 minutes`
fn minutes(v: &str) -> Result<u32, String> {
    number(v.strip_suffix(" minutes").ok_or("expected \"N minutes\"")?)
}

/// `value (name)`, the name possibly containing parentheses itself.
fn split_name(v: &str) -> Result<(&str, String), String> {
    let (value, name) = v.split_once(" (").ok_or("expected \"value (name)\"")?;
    let name = name.strip_suffix(')').ok_or("name not closed by ')'")?;
    Ok((value, name.to_string()))
}

/// `2 (OOB grace)`
fn number_and_name(v: &str) -> Result<(u32, String), String> {
    let (value, name) = split_name(v)?;
    Ok((number(value)?, name))
}

/// `55c92734-d682-4d71-983e-d6ec3f16059f (Windows)`
fn guid_and_name(v: &str) -> Result<(String, String), String> {
    let (value, name) = split_name(v)?;
    Ok((guid(value)?, name))
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, returned lowercase.
fn guid(v: &str) -> Result<String, String> {
    let groups: Vec<&str> = v.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let hex = groups
        .iter()
        .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    if lens != [8, 4, 4, 4, 12] || !hex {
        return Err("not a GUID".into());
    }
    Ok(v.to_ascii_lowercase())
}

/// `YYYY-MM-DD HH:MM:SS`, kept as printed.
fn timestamp(v: &str) -> Result<String, String> {
    const SHAPE: &[u8] = b"dddd-dd-dd dd:dd:dd";
    let ok = v.len() == SHAPE.len()
        && v.bytes().zip(SHAPE).all(|(b, &s)| {
            if s == b'd' {
                b.is_ascii_digit()
            } else {
                b == s
            }
        });
    if ok {
        Ok(v.to_string())
    } else {
        Err("expected YYYY-MM-DD HH:MM:SS".into())
    }
}

/// `260 (0x104)`: both forms must agree.
fn size(v: &str) -> Result<u32, String> {
    let (decimal, hex) = split_name(v)?;
    let n = number(decimal)?;
    let h = hex
        .strip_prefix("0x")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or("expected a 0x hex size in parentheses")?;
    if n == h {
        Ok(n)
    } else {
        Err(format!("decimal {n} and hex {h:#x} disagree"))
    }
}

/// 8 bytes as 16 hex digits, returned uppercase.
fn hwid(v: &str) -> Result<String, String> {
    if v.len() == 16 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(v.to_ascii_uppercase())
    } else {
        Err("expected 16 hex digits".into())
    }
}

fn non_empty(v: &str) -> Result<String, String> {
    if v.is_empty() {
        Err("empty".into())
    } else {
        Ok(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn captures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures")
    }

    fn read(name: &str) -> VlmcsRun {
        let text = std::fs::read_to_string(captures().join(name)).unwrap();
        parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The README's table row for one capture: (TCP connections, KMS requests, responses).
    fn readme_counts() -> BTreeMap<String, (usize, usize, usize)> {
        let text = std::fs::read_to_string(captures().join("README.md")).unwrap();
        text.lines()
            .filter(|l| l.starts_with("| `") && l.contains(".pcap`"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let stem = cells[1].trim_matches('`').strip_suffix(".pcap").unwrap();
                let (req, resp) = cells[7].split_once('/').unwrap();
                let n = |s: &str| s.trim().parse::<usize>().unwrap();
                (format!("{stem}.txt"), (n(cells[6]), n(req), n(resp)))
            })
            .collect()
    }

    /// The README's "Key decoded values" per file: ("request 1", [(key, value)]) and so on,
    /// plus ("bind", [("result", ...)]).
    /// (what, [(key, value)]) lines of one file's README section.
    type Described = Vec<(String, Vec<(String, String)>)>;

    fn readme_values() -> BTreeMap<String, Described> {
        let text = std::fs::read_to_string(captures().join("README.md")).unwrap();
        let mut out: BTreeMap<String, Described> = BTreeMap::new();
        let mut file = None;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("### ") {
                file = name
                    .trim()
                    .strip_suffix(".pcap")
                    .map(|s| format!("{s}.txt"));
                continue;
            }
            let Some(file) = &file else { continue };
            let entry = out.entry(file.clone()).or_default();
            if let Some(rest) = line.trim().strip_prefix("- vlmcs RPC bind result: `") {
                let bind = rest.split('`').next().unwrap();
                entry.push(("bind".into(), vec![("result".into(), bind.into())]));
            }
            for kind in ["request ", "response "] {
                let Some(at) = line.find(kind) else { continue };
                let after = &line[at + kind.len()..];
                let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
                let Some(mut rest) = after[digits.len()..].strip_prefix(": ") else {
                    continue;
                };
                if digits.is_empty() {
                    continue;
                }
                let mut pairs = Vec::new();
                while let Some((key, tail)) = rest.split_once(" `") {
                    let (value, tail) = tail.split_once('`').unwrap();
                    pairs.push((key.trim_start_matches(", ").to_string(), value.to_string()));
                    rest = tail;
                }
                entry.push((format!("{}{digits}", kind), pairs));
            }
        }
        out
    }

    fn txt_files() -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(captures())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".txt"))
            .collect();
        names.sort();
        assert!(!names.is_empty());
        names
    }

    #[test]
    fn every_txt_matches_the_readme_counts_and_is_self_consistent() {
        let counts = readme_counts();
        assert_eq!(txt_files(), counts.keys().cloned().collect::<Vec<_>>());
        for name in txt_files() {
            let run = read(&name);
            let (connections, requests, responses) = counts[&name];
            assert_eq!(run.requests.len(), requests, "{name}: requests");
            assert_eq!(run.responses.len(), responses, "{name}: responses");
            // vlmcs connects and binds once per TCP connection.
            assert_eq!(run.connects.len(), connections, "{name}: connects");
            assert_eq!(run.bind_results.len(), connections, "{name}: binds");
            assert!(
                run.bind_results.iter().all(|b| b.ends_with("successful")),
                "{name}"
            );
            assert!(
                run.connects.iter().all(|c| c.result == "successful"),
                "{name}"
            );
            assert_eq!(run.other_lines, Vec::<String>::new(), "{name}");
            let n = requests as u32;
            let sends: Vec<(u32, u32)> = run.sends.iter().map(|s| (s.index, s.total)).collect();
            assert_eq!(sends, (1..=n).map(|i| (i, n)).collect::<Vec<_>>(), "{name}");
            for (q, r) in run.requests.iter().zip(&run.responses) {
                assert_eq!(
                    (&r.cmid, &r.timestamp),
                    (&q.cmid, &q.timestamp),
                    "{name}: echoes"
                );
                assert_eq!(r.version, q.version, "{name}");
                assert_eq!(format!("V{}", q.version.0), run.sends[0].protocol, "{name}");
                // Only V6 responses carry a host hardware id.
                assert_eq!(r.hwid.is_some(), q.version.0 == 6, "{name}");
                assert_eq!(r.active_clients, 2 * q.n_policy, "{name}");
                assert_eq!(
                    (r.renewal_interval, r.activation_interval),
                    (10080, 120),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn every_txt_agrees_with_the_readme_key_values() {
        let values = readme_values();
        let mut checked = 0;
        for name in txt_files() {
            let run = read(&name);
            for (what, pairs) in &values[&name] {
                if what == "bind" {
                    assert_eq!(run.bind_results[0], pairs[0].1, "{name}");
                    continue;
                }
                let (kind, n) = what.split_once(' ').unwrap();
                let i: usize = n.parse::<usize>().unwrap() - 1;
                for (key, want) in pairs {
                    let got = if kind == "request" {
                        let q = &run.requests[i];
                        match key.as_str() {
                            "version" => format!("{}.{}", q.version.0, q.version.1),
                            "CMID" => q.cmid.clone(),
                            "previous CMID" => q.previous_cmid.clone(),
                            "request time (UTC)" => q.timestamp.clone(),
                            "workstation" => q.workstation.clone(),
                            "N count policy" => q.n_policy.to_string(),
                            "license status" => {
                                format!("{} ({})", q.license_status, q.license_status_name)
                            }
                            "remaining grace" => format!("{} minutes", q.remaining_minutes),
                            "VM" => (if q.virtual_machine { "Yes" } else { "No" }).to_string(),
                            other => panic!("{name}: README request key {other:?}"),
                        }
                    } else {
                        let r = &run.responses[i];
                        match key.as_str() {
                            "response size" => format!("{} ({:#x})", r.size, r.size),
                            "version" => format!("{}.{}", r.version.0, r.version.1),
                            "ePID" => r.epid.clone(),
                            "HwId" => r.hwid.clone().unwrap_or_default(),
                            "CMID" => r.cmid.clone(),
                            "echoed time (UTC)" => r.timestamp.clone(),
                            "active clients" => r.active_clients.to_string(),
                            "renewal (min)" => r.renewal_interval.to_string(),
                            "activation (min)" => r.activation_interval.to_string(),
                            other => panic!("{name}: README response key {other:?}"),
                        }
                    };
                    assert_eq!(&got, want, "{name} {what} {key}");
                    checked += 1;
                }
            }
        }
        // 12 files, at least one request and response each.
        assert!(checked > 12 * 15, "only {checked} README values found");
    }

    #[test]
    fn vlmcsd_v6_spot_values() {
        let run = read("vlmcs-vlmcsd-v6.txt");
        let q = &run.requests[0];
        assert_eq!(q.version, (6, 0));
        assert!(!q.virtual_machine);
        assert_eq!(
            (q.license_status, q.license_status_name.as_str()),
            (2, "OOB grace")
        );
        assert_eq!(q.remaining_minutes, 43200);
        assert_eq!(q.application_id, "55c92734-d682-4d71-983e-d6ec3f16059f");
        assert_eq!(q.application_name, "Windows");
        assert_eq!(q.sku_id, "8de8eb62-bbe0-40ac-ac17-f75595071ea3");
        assert_eq!(q.sku_name, "Windows Server 2019 ARM64");
        assert_eq!(q.kms_id, "8449b1fb-f0ea-497a-99ab-66ca96e9a0f5");
        assert_eq!(q.cmid, "04a4885a-acaa-4f7c-aa80-6998149ec6bc");
        assert_eq!(q.previous_cmid, "00000000-0000-0000-0000-000000000000");
        assert_eq!(q.timestamp, "2026-11-24 03:49:42");
        assert_eq!(q.workstation, "ceo-laptop.htc.co.uk");
        assert_eq!(q.n_policy, 5);
        assert_eq!(
            run.connects,
            vec![Connect {
                address: "127.0.0.1:17001".into(),
                result: "successful".into()
            }]
        );
        assert_eq!(
            run.bind_results,
            vec!["... NDR64 ... BTFN ... NDR32 ... successful"]
        );
        assert_eq!(
            run.sends,
            vec![Send {
                protocol: "V6".into(),
                index: 1,
                total: 1
            }]
        );
        let r = &run.responses[0];
        assert_eq!(r.size, 260);
        assert_eq!(r.version, (6, 0));
        assert_eq!(r.epid, "03612-00206-569-992245-03-14337-17763.0000-1622026");
        assert_eq!(r.hwid.as_deref(), Some("3A1C049600B60076"));
        assert_eq!(r.cmid, q.cmid);
        assert_eq!(r.timestamp, "2026-11-24 03:49:42");
        assert_eq!(r.active_clients, 10);
        assert_eq!((r.renewal_interval, r.activation_interval), (10080, 120));
    }

    #[test]
    fn pykms_v4_and_n30_runs() {
        let run = read("vlmcs-pykms-v4.txt");
        let r = &run.responses[0];
        assert_eq!((r.size, r.version, r.hwid.as_ref()), (160, (4, 0), None));
        assert_eq!(r.epid, "03612-00206-557-517312-03-1033-17763.0000-1962021");
        assert_eq!(run.bind_results, vec!["... NDR32 ... BTFN ... successful"]);

        // One connection: blocks for every request, but one connect and one bind.
        let run = read("vlmcs-vlmcsd-v6-n30-one-connection.txt");
        assert_eq!(
            (run.requests.len(), run.responses.len(), run.connects.len()),
            (30, 30, 1)
        );
        assert_eq!(run.requests[0].cmid, "fd6257e7-8a32-4a1c-b902-53d49bacdb2d");
        assert_eq!(run.requests[29].workstation, "www.microsoft.co.uk");
        assert_eq!(
            run.responses[29].cmid,
            "3d152513-0990-41fa-a7de-263b8fe1dcfb"
        );

        // -T: a connect and a bind per request.
        let run = read("vlmcs-vlmcsd-v6-n30-T-connection-per-request.txt");
        assert_eq!((run.connects.len(), run.bind_results.len()), (30, 30));
        assert_eq!(run.requests[29].workstation, "ftp.google.fr");
        let cmids: std::collections::HashSet<&str> =
            run.requests.iter().map(|q| q.cmid.as_str()).collect();
        assert_eq!(cmids.len(), 30, "every request has its own CMID");
    }

    #[test]
    fn damaged_text_is_an_error_naming_the_line() {
        let good = std::fs::read_to_string(captures().join("vlmcs-vlmcsd-v6.txt")).unwrap();
        let cases = [
            (
                "Workstation name",
                "Workstation label",
                "line 15: unknown field \"Workstation label\"",
            ),
            (
                "3A1C049600B60076",
                "3A1C0496",
                "line 30: KMS host Hardware ID: expected 16 hex digits",
            ),
            (
                "260 (0x104)",
                "260 (0x105)",
                "line 27: Size of KMS Response: decimal 260 and hex 0x105",
            ),
            (
                "04a4885a-acaa",
                "04a4885a-xcaa",
                "line 12: Client machine ID: not a GUID",
            ),
            (
                "2026-11-24 03:49:42\nWork",
                "2026-11-24T03:49:42\nWork",
                "line 14: Client request timestamp",
            ),
            (
                "Licensing status                : 2 (OOB grace)\n",
                "",
                "field \"Licensing status\" missing",
            ),
            (
                "Client is a virtual machine     : No",
                "Client is a virtual machine",
                "line 6: expected `name : value`",
            ),
            (
                "Renewal interval policy         : 10080\n",
                "Renewal interval policy : 1\nRenewal interval policy : 2\n",
                "repeated",
            ),
        ];
        for (from, to, want) in cases {
            assert!(good.contains(from), "{from}");
            let err = parse(&good.replacen(from, to, 1)).unwrap_err();
            assert!(err.contains(want), "{from:?} -> {to:?}: {err}");
        }
    }

    #[test]
    fn any_prefix_parses_or_errors_without_panicking() {
        let good =
            std::fs::read_to_string(captures().join("vlmcs-vlmcsd-v6-B0-no-btfn.txt")).unwrap();
        for (cut, _) in good.char_indices() {
            let _ = parse(&good[..cut]);
        }
        // Output cut inside a response block names the first field it lacks.
        let at = good.rfind("Renewal interval policy").unwrap();
        let err = parse(&good[..at]).unwrap_err();
        assert!(err.contains("\"Renewal interval policy\" missing"), "{err}");
    }
}
