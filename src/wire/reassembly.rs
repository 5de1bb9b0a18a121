//! Reassembly of fragmented DCE/RPC calls (C706 12.6.3.1 `PFC_FIRST_FRAG`/`PFC_LAST_FRAG`): PDUs
//! in, whole calls out, per call id so that multiplexed calls may interleave (PFC_CONC_MPX).
//! Bounded in stub size and in calls in progress, since the fragments come from the network.

use super::rpc::{Body, FaultStatus, Flags, PacketType, Pdu, pdu_name};

/// A call whose fragments have all arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Request, response or fault.
    pub packet_type: PacketType,
    /// The call's identifier.
    pub call_id: u32,
    /// Presentation context.
    pub context_id: u16,
    /// Operation number (requests only; 0 otherwise).
    pub opnum: u16,
    /// Fault status (faults only).
    pub fault: Option<FaultStatus>,
    /// Number of fragments it came in.
    pub fragments: usize,
    /// FIRST_FRAG as the first fragment had it, LAST_FRAG as the last had it, and every other
    /// bit any fragment set: what a single-PDU call would carry.
    pub flags: Flags,
    /// The concatenated stub data.
    pub stub: Vec<u8>,
}

/// Why fragments could not be reassembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReassemblyError {
    /// A middle or last fragment arrived for a call that had no first fragment.
    #[error("call {call_id}: fragment without a first fragment")]
    NoFirstFragment {
        /// The call.
        call_id: u32,
    },
    /// A first fragment arrived for a call already in progress.
    #[error("call {call_id}: second first fragment")]
    DuplicateFirstFragment {
        /// The call.
        call_id: u32,
    },
    /// The reassembled stub would exceed the configured limit.
    #[error("call {call_id}: stub exceeds {limit} bytes")]
    TooLarge {
        /// The call.
        call_id: u32,
        /// The limit.
        limit: usize,
    },
    /// Too many calls were in progress at once.
    #[error("more than {limit} calls in progress")]
    TooManyCalls {
        /// The limit.
        limit: usize,
    },
    /// The PDU is not part of a call (bind, ack, ...).
    #[error("{0} PDUs are not call fragments")]
    NotACall(&'static str),
}

/// Reassembles fragmented requests and responses, per call id, so that multiplexed calls may
/// interleave their fragments (PFC_CONC_MPX).
#[derive(Debug)]
pub struct Reassembler {
    pending: Vec<Call>,
    max_stub: usize,
    max_calls: usize,
}

impl Reassembler {
    /// KMS messages are ~260 bytes; a stub much bigger than this is an attack, not a request.
    pub const DEFAULT_MAX_STUB: usize = 64 * 1024;
    /// Calls one connection may have in flight at once.
    pub const DEFAULT_MAX_CALLS: usize = 16;

    /// A reassembler with the default limits.
    pub fn new() -> Reassembler {
        Reassembler::with_limits(Self::DEFAULT_MAX_STUB, Self::DEFAULT_MAX_CALLS)
    }

    /// A reassembler with given limits.
    pub fn with_limits(max_stub: usize, max_calls: usize) -> Reassembler {
        Reassembler {
            pending: Vec::new(),
            max_stub,
            max_calls,
        }
    }

    /// Calls waiting for more fragments.
    pub fn in_progress(&self) -> usize {
        self.pending.len()
    }

    /// Feeds one PDU. Returns the whole call once its last fragment has arrived.
    pub fn push(&mut self, pdu: &Pdu<'_>) -> core::result::Result<Option<Call>, ReassemblyError> {
        let (context_id, opnum, fault, stub) = match &pdu.body {
            Body::Request(r) => (r.context_id, r.opnum, None, r.stub),
            Body::Response(r) => (r.context_id, 0, None, r.stub),
            Body::Fault(f) => (f.context_id, 0, Some(f.status), f.stub),
            _ => return Err(ReassemblyError::NotACall(pdu_name(pdu.header.packet_type))),
        };
        let call_id = pdu.header.call_id;
        let flags = pdu.header.flags;
        let slot = self.pending.iter().position(|c| c.call_id == call_id);
        let idx = match (flags.contains(Flags::FIRST_FRAG), slot) {
            (true, Some(_)) => {
                return Err(ReassemblyError::DuplicateFirstFragment { call_id });
            }
            (false, None) => return Err(ReassemblyError::NoFirstFragment { call_id }),
            (true, None) => {
                if flags.contains(Flags::LAST_FRAG) {
                    // The common case: the whole call in one PDU, no bookkeeping.
                    if stub.len() > self.max_stub {
                        return Err(ReassemblyError::TooLarge {
                            call_id,
                            limit: self.max_stub,
                        });
                    }
                    return Ok(Some(Call {
                        packet_type: pdu.header.packet_type,
                        call_id,
                        context_id,
                        opnum,
                        fault,
                        fragments: 1,
                        flags,
                        stub: stub.to_vec(),
                    }));
                }
                if self.pending.len() >= self.max_calls {
                    return Err(ReassemblyError::TooManyCalls {
                        limit: self.max_calls,
                    });
                }
                self.pending.push(Call {
                    packet_type: pdu.header.packet_type,
                    call_id,
                    context_id,
                    opnum,
                    fault,
                    fragments: 0,
                    flags: Flags(flags.0 & !Flags::LAST_FRAG.0),
                    stub: Vec::new(),
                });
                self.pending.len() - 1
            }
            (false, Some(i)) => i,
        };
        let call = &mut self.pending[idx];
        if call.stub.len() + stub.len() > self.max_stub {
            self.pending.swap_remove(idx);
            return Err(ReassemblyError::TooLarge {
                call_id,
                limit: self.max_stub,
            });
        }
        call.stub.extend_from_slice(stub);
        call.fragments += 1;
        call.flags = Flags(call.flags.0 | (flags.0 & !Flags::FIRST_FRAG.0));
        if flags.contains(Flags::LAST_FRAG) {
            Ok(Some(self.pending.swap_remove(idx)))
        } else {
            Ok(None)
        }
    }
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler::new()
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::rpc::{emit_fragmented_request, split_pdu};

    #[test]
    fn test_fragmented_roundtrip() {
        let stub: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        emit_fragmented_request(&mut out, 7, Flags::FIRST_LAST, 0, 0, &stub, 100);
        let mut rest = &out[..];
        let mut r = Reassembler::new();
        let mut done = None;
        let mut n = 0;
        while let Some((pdu, tail)) = split_pdu(rest).unwrap() {
            assert!(pdu.len() <= 100);
            n += 1;
            if let Some(call) = r.push(&Pdu::parse(pdu).unwrap()).unwrap() {
                done = Some(call);
            }
            rest = tail;
        }
        assert!(rest.is_empty());
        let call = done.unwrap();
        assert_eq!(call.stub, stub);
        assert_eq!(call.fragments, n);
        assert_eq!(call.call_id, 7);
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn test_reassembly_errors() {
        let mut out = Vec::new();
        emit_fragmented_request(&mut out, 9, Flags::FIRST_LAST, 0, 0, &[1; 200], 64);
        let (first, rest) = split_pdu(&out).unwrap().unwrap();
        let (second, _) = split_pdu(rest).unwrap().unwrap();
        let mut r = Reassembler::new();
        assert_eq!(
            r.push(&Pdu::parse(second).unwrap()),
            Err(ReassemblyError::NoFirstFragment { call_id: 9 })
        );
        r.push(&Pdu::parse(first).unwrap()).unwrap();
        assert_eq!(
            r.push(&Pdu::parse(first).unwrap()),
            Err(ReassemblyError::DuplicateFirstFragment { call_id: 9 })
        );
        let mut small = Reassembler::with_limits(50, 1);
        small.push(&Pdu::parse(first).unwrap()).unwrap();
        assert!(matches!(
            small.push(&Pdu::parse(second).unwrap()),
            Err(ReassemblyError::TooLarge { .. })
        ));
    }
}
