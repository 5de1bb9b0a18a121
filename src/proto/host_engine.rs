//! One KMS request through the reference host, sans-IO: decrypt and check it, let the host's
//! policy and client table decide, then build the (possibly faulty) response. The table update
//! is the only step that needs exclusive access; the crypto around it runs in parallel.

use crate::wire::HResult;
use crate::wire::kms::FileTime;

use super::checks::Checks;
use super::faults::{Fault, FaultSet};
use super::host::{
    HostRandom, ReceivedRequest, ResponseParams, decode_request, encode_response_with_faults,
};
use super::kms_host::{Decision, KmsHost, Refusal};

/// Largest ePID a grant carries, in bytes (the protocol's 128-byte buffer).
const MAX_EPID: usize = 128;

/// A grant copied out of the host, so the lock on the host can be released before encryption.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    epid: [u8; MAX_EPID],
    epid_len: usize,
    /// Hardware ID.
    pub hwid: [u8; 8],
    /// Count returned.
    pub count: u32,
    /// Activation interval, minutes.
    pub activation_interval: u32,
    /// Renewal interval, minutes.
    pub renewal_interval: u32,
}

impl Grant {
    /// The response fields, borrowing the ePID.
    pub fn params(&self) -> ResponseParams<'_> {
        ResponseParams {
            epid: &self.epid[..self.epid_len],
            hwid: self.hwid,
            count: self.count,
            activation_interval: self.activation_interval,
            renewal_interval: self.renewal_interval,
        }
    }
}

/// The decision part that needs the host table: the only step under the shared lock.
#[derive(Debug)]
pub struct Policy {
    host: KmsHost,
    faults: FaultSet,
    stuck_count: Option<u32>,
}

impl Policy {
    /// Wraps a configured host with the faults to inject.
    pub fn new(host: KmsHost, faults: FaultSet) -> Policy {
        Policy {
            host,
            faults,
            stuck_count: None,
        }
    }

    /// The host (for counts and state).
    pub fn host(&self) -> &KmsHost {
        &self.host
    }

    /// Decides on a decoded request.
    pub fn decide(
        &mut self,
        req: &ReceivedRequest,
        checks: &Checks,
        now: FileTime,
    ) -> Result<Grant, Refusal> {
        match self.host.handle(req, checks, now) {
            Decision::Refuse(r) => Err(r),
            Decision::Grant(p) => {
                let mut epid = [0u8; MAX_EPID];
                let epid_len = p.epid.len().min(MAX_EPID);
                epid[..epid_len].copy_from_slice(&p.epid[..epid_len]);
                let mut count = p.count;
                if self.faults.has(Fault::CountStuck) {
                    count = *self.stuck_count.get_or_insert(count);
                }
                Ok(Grant {
                    epid,
                    epid_len,
                    hwid: p.hwid,
                    count,
                    activation_interval: p.activation_interval,
                    renewal_interval: p.renewal_interval,
                })
            }
        }
    }
}

/// What happened to one request, for logging.
#[derive(Debug, Clone, Copy)]
pub enum Handled {
    /// Answered with a response.
    Granted {
        /// The request.
        request: ReceivedRequest,
        /// The count returned.
        count: u32,
    },
    /// Refused by policy.
    Refused {
        /// The request.
        request: ReceivedRequest,
        /// Why.
        refusal: Refusal,
    },
    /// Could not be decoded at all.
    Undecodable,
}

/// Runs one request through `policy` (called with the lock held only for the table step):
/// decode, decide, encode. Returns what happened and, for the wire, the response or HRESULT.
pub fn activate(
    request: &[u8],
    now: FileTime,
    random: &HostRandom,
    faults: FaultSet,
    decide: impl FnOnce(&ReceivedRequest, &Checks) -> Result<Grant, Refusal>,
    out: &mut Vec<u8>,
) -> (Handled, Result<(), HResult>) {
    let Ok((req, checks)) = decode_request(request, Some(now)) else {
        return (Handled::Undecodable, Err(HResult::INVALID_DATA));
    };
    match decide(&req, &checks) {
        Err(refusal) => (
            Handled::Refused {
                request: req,
                refusal,
            },
            Err(refusal.hresult),
        ),
        Ok(grant) => {
            encode_response_with_faults(&req, &grant.params(), random, faults, out);
            (
                Handled::Granted {
                    request: req,
                    count: grant.count,
                },
                Ok(()),
            )
        }
    }
}
