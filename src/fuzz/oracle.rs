//! The oracles: what a host's answer to a case must look like. Sans-IO: the driver hands over
//! the reply PDUs and how the connection ended; sanitizer and panic lines are read here too.

use crate::proto::client::message::{ResponseBuf, decode_response};
use crate::wire::ndr::{ActivationResponse, Syntax};
use crate::wire::rpc::{Body, PacketType, Pdu};

use super::case::{CTX_NDR64, Case};

/// How the host ended a case's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// It closed (or reset) the connection after our half-close, as it should.
    Closed,
    /// Neither a reply nor a close within the case timeout after our half-close.
    Hang,
    /// Bytes that do not frame as DCE/RPC.
    Garbage(String),
    /// No connection could be made.
    NoConnection(String),
}

/// What a case brought back.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Every whole reply PDU, in order.
    pub replies: Vec<Vec<u8>>,
    /// How it ended.
    pub end: End,
}

/// A broken rule: a signature (for deduplication) and the detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Short and stable: the same bug gives the same signature.
    pub signature: String,
    /// What was seen.
    pub detail: String,
}

impl Verdict {
    fn new(signature: impl Into<String>, detail: impl Into<String>) -> Verdict {
        Verdict {
            signature: signature.into(),
            detail: detail.into(),
        }
    }
}

/// Judges the host's answer to `case` by the protocol's rules.
pub fn judge(case: &Case, ex: &Exchange) -> Option<Verdict> {
    match &ex.end {
        End::Hang => {
            return Some(Verdict::new(
                "hang",
                "neither a reply nor a close within the case timeout after the client's half-close",
            ));
        }
        End::Garbage(what) => return Some(Verdict::new("reply not DCE/RPC", what.clone())),
        End::NoConnection(what) => return Some(Verdict::new("no connection", what.clone())),
        End::Closed => {}
    }
    let ids = case.call_ids();
    for (i, bytes) in ex.replies.iter().enumerate() {
        let pdu = match Pdu::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                return Some(Verdict::new(
                    format!("reply undecodable: {}", e.field()),
                    format!("reply {i}: {e}"),
                ));
            }
        };
        let t = pdu.header.packet_type;
        let allowed = matches!(
            t,
            PacketType::BindAck
                | PacketType::BindNak
                | PacketType::AlterContextResp
                | PacketType::Response
                | PacketType::Fault
                | PacketType::Shutdown
        );
        if !allowed {
            return Some(Verdict::new(
                format!("reply of type {}", u8::from(t)),
                format!(
                    "reply {i} is a {} PDU, which a server never sends",
                    crate::wire::rpc::pdu_name(t)
                ),
            ));
        }
        if t != PacketType::Shutdown
            && pdu.header.call_id != 0
            && !ids.contains(&pdu.header.call_id)
        {
            return Some(Verdict::new(
                "reply call id not sent",
                format!(
                    "reply {i} carries call id {}, sent were {ids:?}",
                    pdu.header.call_id
                ),
            ));
        }
        if let (Some(sent), Body::Response(r)) = (&case.sent, &pdu.body) {
            let syntax = if r.context_id == CTX_NDR64 {
                Syntax::Ndr64
            } else {
                Syntax::Ndr32
            };
            let stub = match ActivationResponse::parse(syntax, r.stub) {
                Ok(s) => s,
                Err(e) => {
                    return Some(Verdict::new(
                        format!("response stub undecodable: {}", e.field()),
                        format!("reply {i}: {e}"),
                    ));
                }
            };
            if stub.hresult.0 == 0 {
                let mut buf = ResponseBuf::default();
                if let Err(e) = decode_response(sent, stub.body, &mut buf) {
                    return Some(Verdict::new(
                        format!("KMS response undecodable: {}", e.field()),
                        format!("reply {i}: {e}"),
                    ));
                }
            }
        }
    }
    None
}

/// Whether a liveness probe's answer is a granted, verified activation; else why not.
pub fn judge_probe(case: &Case, ex: &Exchange) -> Result<(), String> {
    if let Some(v) = judge(case, ex) {
        return Err(format!("{}: {}", v.signature, v.detail));
    }
    let Some(sent) = &case.sent else {
        return Err("probe without a request".into());
    };
    for bytes in &ex.replies {
        let Ok(pdu) = Pdu::parse(bytes) else { continue };
        if let Body::Response(r) = &pdu.body {
            let stub =
                ActivationResponse::parse(Syntax::Ndr32, r.stub).map_err(|e| e.to_string())?;
            if stub.hresult.0 != 0 {
                return Err(format!("activation refused with {}", stub.hresult));
            }
            let mut buf = ResponseBuf::default();
            let (_, checks) =
                decode_response(sent, stub.body, &mut buf).map_err(|e| e.to_string())?;
            return match checks.failed().next() {
                Some(c) => Err(format!("check failed: {}", c.id)),
                None => Ok(()),
            };
        }
        if let Body::Fault(f) = &pdu.body {
            return Err(format!("fault 0x{:08x}", u32::from(f.status)));
        }
    }
    Err(format!("no response ({} replies)", ex.replies.len()))
}

/// The signature of a line a host printed on stderr that reports a bug: AddressSanitizer's
/// (and other sanitizers') `ERROR:` lines, a Rust panic, a failed C assertion.
pub fn stderr_signature(line: &str) -> Option<String> {
    if let Some(at) = line.find("ERROR: ") {
        let rest = &line[at + "ERROR: ".len()..];
        if rest.contains("Sanitizer") {
            let kind: String = rest
                .split(" on ")
                .next()
                .unwrap_or(rest)
                .chars()
                .take(80)
                .collect();
            return Some(kind.trim().to_string());
        }
    }
    if let Some(at) = line.find("panicked at ") {
        let loc = line[at + "panicked at ".len()..].trim_end_matches(':');
        return Some(format!("panic at {loc}"));
    }
    if line.contains("runtime error:") {
        let at = line.find("runtime error:").unwrap_or(0);
        return Some(format!(
            "UndefinedBehaviorSanitizer {}",
            &line[at..].chars().take(80).collect::<String>()
        ));
    }
    if line.contains("Assertion") && line.contains("failed") {
        return Some(format!(
            "assertion: {}",
            line.chars().take(100).collect::<String>()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_stderr_signatures() {
        assert_eq!(
            stderr_signature("==12==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x6")
                .as_deref(),
            Some("AddressSanitizer: heap-buffer-overflow")
        );
        assert_eq!(
            stderr_signature(
                "thread 'tokio-runtime-worker' panicked at src/proto/host/engine.rs:10:5:"
            )
            .as_deref(),
            Some("panic at src/proto/host/engine.rs:10:5")
        );
        assert!(stderr_signature("kmsharness serve: listening on 127.0.0.1:1688").is_none());
    }
}
