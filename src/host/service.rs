//! The KMS side of a running host: each request through the engine on the host's clock, with
//! one log line per request; counts and state for the control port and the state file.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use rand::RngExt;

use crate::catalog::AppKind;
use crate::clock::Clock;
use crate::net::host::KmsService;
use crate::proto::faults::FaultSet;
use crate::proto::host::engine::{Handled, Policy, activate};
use crate::proto::host::message::HostRandom;
use crate::proto::host::state::encode_state;
use crate::wire::HResult;
use crate::wire::rpc::FaultStatus;

/// The KMS side of the running host.
#[derive(Debug)]
pub struct Service {
    policy: Mutex<Policy>,
    clock: Clock,
    faults: FaultSet,
    log: bool,
}

impl Service {
    pub(super) fn new(policy: Mutex<Policy>, clock: Clock, faults: FaultSet, log: bool) -> Service {
        Service {
            policy,
            clock,
            faults,
            log,
        }
    }

    /// Current count for an application.
    pub fn count(&self, app: AppKind) -> u32 {
        let now = self.clock.now();
        self.policy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .host()
            .count(app, now)
    }

    /// The host's state, as the state file holds it.
    pub fn state_bytes(&self) -> Vec<u8> {
        encode_state(
            &self
                .policy
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .host()
                .state(),
        )
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

impl KmsService for Service {
    fn activate(&self, peer: SocketAddr, request: &[u8], out: &mut Vec<u8>) -> Result<(), HResult> {
        let now = self.clock.now();
        let mut rng = rand::rng();
        let random = HostRandom {
            salt: rng.random(),
            iv: rng.random(),
        };
        let (handled, result) = activate(
            request,
            now,
            &random,
            self.faults,
            |req, checks| {
                self.policy
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .decide(req, checks, now)
            },
            out,
        );
        if self.log {
            match handled {
                Handled::Granted { request, count } => tracing::info!(
                    %peer, version = %request.version, cmid = %request.base.cmid,
                    kms_id = %request.base.kms_id, workstation = %request.base.workstation,
                    count, "activation granted"
                ),
                Handled::Refused { request, refusal } => tracing::info!(
                    %peer, version = %request.version, cmid = %request.base.cmid,
                    kms_id = %request.base.kms_id, hresult = %refusal.hresult,
                    rule = refusal.rule.name(), "activation refused"
                ),
                Handled::Undecodable(error) => tracing::info!(
                    %peer, bytes = request.len(), hresult = %HResult::INVALID_DATA, %error,
                    "undecodable request refused"
                ),
            }
        }
        result
    }

    fn faulted(&self, peer: SocketAddr, status: FaultStatus) {
        if self.log {
            tracing::info!(%peer, fault = %format_args!("{status:#}"), "call faulted before the KMS service");
        }
    }
}
