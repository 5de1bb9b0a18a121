//! A capture's request plan: what its clients sent, per TCP connection, ready to be sent again
//! (`replay`) or used as templates (`load --from-capture`).
//!
//! Built from [`conversation::decode`], so PDUs are framed and fragments reassembled once, by the
//! same code `inspect` uses: per connection, the client's bind options and each KMS request body
//! exactly as captured, decoded where possible, with its time offset from the capture's start.

use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::client::session::ClientRpcOptions;
use crate::proto::host::message::ReceivedRequest;
use crate::wire::rpc::{Flags, NDR64, PacketType};

use super::{CaptureError, Timestamp, conversation};

/// Why a capture gives no plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The file is not a capture, or is damaged before any KMS request.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The capture holds no KMS request.
    #[error("no KMS request in this capture")]
    NoRequest,
    /// Its KMS requests do not decode, so they cannot serve as templates.
    #[error("no decodable KMS request in this capture")]
    NoDecodableRequest,
}

/// One captured KMS request.
#[derive(Debug, Clone)]
pub struct PlannedRequest {
    /// When its first byte was captured, from the start of the plan.
    pub at: Duration,
    /// The KMS request body, byte for byte.
    pub body: Vec<u8>,
    /// The request as a host decodes it, when it decodes.
    pub decoded: Option<ReceivedRequest>,
}

/// One captured TCP connection that carried KMS requests.
#[derive(Debug, Clone)]
pub struct PlannedConnection {
    /// The captured client.
    pub client: SocketAddr,
    /// The captured host.
    pub server: SocketAddr,
    /// When its first packet was captured, from the start of the plan.
    pub start: Duration,
    /// How the captured client bound (NDR64 and BTFN offered, multiplex flag); the defaults
    /// when the capture holds no bind.
    pub rpc: ClientRpcOptions,
    /// Its requests, in order.
    pub requests: Vec<PlannedRequest>,
}

/// What a capture's clients sent, ready to send again.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Connections with at least one request, in capture order.
    pub connections: Vec<PlannedConnection>,
    /// Activation calls whose KMS body could not be taken out of the RPC stub.
    pub unreadable: usize,
    /// The problem that stopped reading the capture early, if any (what came before it is in
    /// the plan).
    pub warning: Option<String>,
}

/// The client's bind options as captured.
fn rpc_options(conv: &conversation::Conversation) -> ClientRpcOptions {
    let defaults = ClientRpcOptions::default();
    match conv.binds.iter().find(|b| b.kind == PacketType::Bind) {
        None => defaults,
        Some(b) => ClientRpcOptions {
            ndr64: b.offered.iter().any(|(_, s)| *s == NDR64),
            btfn: b.offered.iter().any(|(_, s)| s.btfn_bits().is_some()),
            multiplex: b.flags.0.contains(Flags::CONC_MPX),
            ..defaults
        },
    }
}

impl Plan {
    /// Reads a pcap or pcapng file's bytes into a plan. Fails when the bytes are not a capture
    /// or hold no KMS request at all; a capture damaged part-way gives what came before the
    /// damage, with [`Plan::warning`] set.
    pub fn from_capture(bytes: &[u8]) -> Result<Plan, PlanError> {
        let cap = super::read(bytes);
        let mut plan = Plan {
            warning: cap.error.as_ref().map(ToString::to_string),
            ..Plan::default()
        };
        // (connection, its first packet, its requests' capture times)
        let mut found: Vec<(PlannedConnection, Timestamp, Vec<Timestamp>)> = Vec::new();
        for conn in &cap.connections {
            let conv = conversation::decode(conn);
            if conv.activations.is_empty() {
                continue;
            }
            let rpc = rpc_options(&conv);
            let mut requests = Vec::new();
            let mut times = Vec::new();
            for ex in conv.activations {
                let Some(at) = ex.body_at else {
                    plan.unreadable += 1;
                    continue;
                };
                times.push(ex.sent_at.unwrap_or(conn.first_ts));
                let mut body = ex.stub;
                // The stub is the exchange's own: dropping the NDR counts in place is cheaper
                // than copying the body out.
                body.drain(..at);
                requests.push(PlannedRequest {
                    at: Duration::ZERO,
                    body,
                    decoded: ex.request.ok(),
                });
            }
            if requests.is_empty() {
                continue;
            }
            let planned = PlannedConnection {
                client: conn.client,
                server: conn.server,
                start: Duration::ZERO,
                rpc,
                requests,
            };
            found.push((planned, conn.first_ts, times));
        }
        let Some(origin) = found.iter().map(|f| f.1).min() else {
            return Err(match cap.error {
                Some(e) => PlanError::Capture(e),
                None => PlanError::NoRequest,
            });
        };
        for (mut c, first, times) in found {
            c.start = first.saturating_since(origin);
            for (r, t) in c.requests.iter_mut().zip(times) {
                r.at = t.saturating_since(origin);
            }
            plan.connections.push(c);
        }
        Ok(plan)
    }

    /// Requests in the plan.
    pub fn requests(&self) -> usize {
        self.connections.iter().map(|c| c.requests.len()).sum()
    }

    /// Offset of the last request: how long one round takes at speed 1.
    pub fn span(&self) -> Duration {
        self.connections
            .iter()
            .flat_map(|c| c.requests.iter().map(|r| r.at))
            .max()
            .unwrap_or_default()
    }

    /// The decoded bases of every request, in plan order: the templates `load --from-capture`
    /// re-stamps.
    pub fn bases(&self) -> impl Iterator<Item = crate::wire::kms::RequestBase> + '_ {
        self.connections
            .iter()
            .flat_map(|c| &c.requests)
            .filter_map(|r| r.decoded.map(|d| d.base))
    }
}
