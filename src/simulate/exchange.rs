//! One exchange of a simulated machine with a host, whole byte path either way: over an
//! in-memory connection to a bundled engine ([`in_process`]), or over TCP to a host process
//! ([`Remote`]), whose virtual clock is first moved to the simulation's through its control
//! port. Both judge the reply alike ([`answer_of`]): a response counts only when every RPC and
//! KMS check passes.

use crate::catalog::AppKind;
use crate::host::control::{ControlClient, ControlError};
use crate::net::client::{ClientConfig, Connection};
use crate::net::discovery::{IpPreference, Target, resolve};
use crate::proto::check::Checks;
use crate::proto::client::message::{ResponseBuf, SentRequest, decode_response};
use crate::proto::client::session::{
    BindOutcome, CallOutcome, CallReply, ClientRpcOptions, ClientSession, FIRST_CALL_ID,
};
use crate::proto::faults::FaultSet;
use crate::proto::host::engine::{Policy, activate};
use crate::proto::host::message::HostRandom;
use crate::proto::host::session::{Activate, HostRpcConfig, HostSession};
use crate::proto::lifecycle::{Answer, Intervals};
use crate::proto::verdict::Failure;
use crate::wire::kms::FileTime;
use crate::wire::rpc::split_pdu;

/// Reusable buffers of one exchange.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    pub wire: Vec<u8>,
    pub reply: Vec<u8>,
    pub kms: Vec<u8>,
    pub buf: ResponseBuf,
}

/// The first failed check of a bind or alter_context answer.
fn bind_failure(bound: &BindOutcome) -> Option<Failure> {
    bound.checks.failed().next().map(|c| Failure::Check(c.id))
}

/// What a client makes of a call's reply: the count and intervals of a response that passes
/// every check, else why not.
fn answer_of(
    outcome: &CallOutcome,
    rpc_checks: &Checks,
    sent: &SentRequest,
    body: &[u8],
    buf: &mut ResponseBuf,
) -> Answer {
    match outcome.reply {
        CallReply::Refused(h) => Answer::Failed(Failure::HResult(h)),
        CallReply::Fault(f) => Answer::Failed(Failure::Fault(f)),
        CallReply::Response => {
            if let Some(c) = rpc_checks.failed().next() {
                return Answer::Failed(Failure::Check(c.id));
            }
            match decode_response(sent, body, buf) {
                Err(_) => Answer::Failed(Failure::Undecodable),
                Ok((resp, checks)) => match checks.failed().next() {
                    Some(c) => Answer::Failed(Failure::Check(c.id)),
                    None => Answer::Count {
                        count: resp.base.count,
                        intervals: Some(Intervals {
                            activation: resp.base.activation_interval,
                            renewal: resp.base.renewal_interval,
                        }),
                    },
                },
            }
        }
    }
}

/// One exchange with a bundled engine at `now` over an in-memory connection: `scratch.kms`
/// holds the encrypted request (`sent`); `session_id` numbers the host's RPC session.
pub(super) fn in_process(
    policy: &mut Policy,
    session_id: u32,
    random: &HostRandom,
    sent: &SentRequest,
    now: FileTime,
    s: &mut Scratch,
) -> Answer {
    let mut session = HostSession::new(HostRpcConfig::default(), session_id);
    let mut serve = |req: &[u8], out: &mut Vec<u8>| {
        activate(
            req,
            now,
            random,
            FaultSet::NONE,
            |r, c| policy.decide(r, c, now),
            out,
        )
        .1
    };
    let mut client = ClientSession::new(ClientRpcOptions::default());
    // Feeds every whole PDU of `bytes` to the host, its replies into `out`; false once the
    // host closes.
    let to_host =
        |session: &mut HostSession, serve: &mut Activate<'_>, bytes: &[u8], out: &mut Vec<u8>| {
            out.clear();
            let mut rest = bytes;
            while let Ok(Some((pdu, tail))) = split_pdu(rest) {
                if session.handle(pdu, serve, out).close {
                    return false;
                }
                rest = tail;
            }
            true
        };
    s.wire.clear();
    client.bind(&mut s.wire);
    let open = to_host(&mut session, &mut serve, &s.wire, &mut s.reply);
    let Ok(bound) = client.handle_bind_reply(&s.reply) else {
        return Answer::Failed(Failure::Protocol);
    };
    if let Some(f) = bind_failure(&bound) {
        return Answer::Failed(f);
    }
    if !open {
        return Answer::Failed(Failure::Closed);
    }
    if bound.needs_alter_context {
        s.wire.clear();
        client.alter_context(&mut s.wire);
        to_host(&mut session, &mut serve, &s.wire, &mut s.reply);
        match client.handle_bind_reply(&s.reply) {
            Err(_) => return Answer::Failed(Failure::Protocol),
            Ok(b) => {
                if let Some(f) = bind_failure(&b) {
                    return Answer::Failed(f);
                }
            }
        }
    }
    s.wire.clear();
    client.request(&s.kms, &mut s.wire);
    to_host(&mut session, &mut serve, &s.wire, &mut s.reply);
    let mut outcome = None;
    let mut rest = &s.reply[..];
    while let Ok(Some((pdu, tail))) = split_pdu(rest) {
        match client.handle_reply(pdu) {
            Ok(Some(o)) => outcome = Some(o),
            Ok(None) => {}
            Err(_) => return Answer::Failed(Failure::Protocol),
        }
        rest = tail;
    }
    match outcome {
        None => Answer::Failed(Failure::Closed),
        Some(o) => answer_of(
            &o,
            client.reply_checks(),
            sent,
            client.response_body(),
            &mut s.buf,
        ),
    }
}

/// Why a host process cannot take part.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Its target or control port gives no address.
    #[error("{target}: {source}")]
    Resolve {
        /// The target as given.
        target: String,
        /// Why.
        source: crate::net::discovery::ResolveError,
    },
    /// Its control port failed.
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// The first address of `target`.
async fn address(target: &Target) -> Result<std::net::SocketAddr, RemoteError> {
    let resolve_error = |source| RemoteError::Resolve {
        target: target.to_string(),
        source,
    };
    let Target::Host { host, port } = target else {
        // The scenario takes host:port only; a domain never reaches here.
        return Err(resolve_error(
            crate::net::discovery::ResolveError::NoUsableHost {
                domain: target.to_string(),
            },
        ));
    };
    let addrs = resolve(host, *port, IpPreference::Any)
        .await
        .map_err(resolve_error)?;
    addrs.first().copied().ok_or_else(|| {
        resolve_error(crate::net::discovery::ResolveError::NoUsableHost {
            domain: target.to_string(),
        })
    })
}

/// A host process: its KMS address and, on the virtual clock, its control port.
#[derive(Debug)]
pub struct Remote {
    addr: std::net::SocketAddr,
    control: Option<ControlClient>,
    config: ClientConfig,
}

impl Remote {
    /// Resolves the host's addresses and connects its control port, checking that its clock
    /// can be moved (a `serve` on the system clock refuses `advance`).
    pub async fn open(kms: &Target, control: Option<&Target>) -> Result<Remote, RemoteError> {
        let addr = address(kms).await?;
        let control = match control {
            None => None,
            Some(c) => {
                let mut client = ControlClient::connect(address(c).await?).await?;
                client.command("advance 0").await?;
                Some(client)
            }
        };
        Ok(Remote {
            addr,
            control,
            config: ClientConfig::default(),
        })
    }

    /// Whether the host's clock is moved by the simulation.
    pub fn has_control(&self) -> bool {
        self.control.is_some()
    }

    /// Moves the host's clock to `now` (nothing for a host on its own clock).
    pub async fn set_time(&mut self, now: FileTime) -> Result<(), ControlError> {
        if let Some(c) = &mut self.control {
            c.set_time(now).await?;
        }
        Ok(())
    }

    /// The host's counts at `now`, through the control port; `None` without one.
    pub async fn counts(&mut self, now: FileTime) -> Result<Option<[u32; 3]>, ControlError> {
        let Some(c) = &mut self.control else {
            return Ok(None);
        };
        c.set_time(now).await?;
        let mut out = [0; 3];
        for (slot, app) in
            out.iter_mut()
                .zip([AppKind::Windows, AppKind::Office2010, AppKind::Office2013])
        {
            *slot = c.count(app).await?;
        }
        Ok(Some(out))
    }

    /// One exchange over a new TCP connection, the encrypted request `kms` (`sent`); `None`
    /// when the host does not respond (no connection), which sends the client on to another.
    pub async fn exchange(
        &mut self,
        kms: &[u8],
        sent: &SentRequest,
        buf: &mut ResponseBuf,
    ) -> Option<Answer> {
        let mut conn = Connection::connect(self.addr, self.config, FIRST_CALL_ID)
            .await
            .ok()?;
        let bound = match conn.bind().await {
            Err(e) => return Some(Answer::Failed(e.failure())),
            Ok(b) => b,
        };
        let bind =
            bind_failure(&bound.bind).or(bound.alter_context.as_ref().and_then(bind_failure));
        if let Some(f) = bind {
            return Some(Answer::Failed(f));
        }
        Some(match conn.call(kms).await {
            Err(e) => Answer::Failed(e.failure()),
            Ok(o) => answer_of(&o, conn.reply_checks(), sent, conn.response_body(), buf),
        })
    }
}
