//! The one generic load worker: takes tickets, builds each machine's request, connects and
//! binds (fresh mode) or reuses its connection, calls, verifies every check, records.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::RngExt;

use crate::activate::now_filetime;
use crate::capture::record::Recorder;
use crate::net::client::{ClientConfig, Connection, NetError};
use crate::net::framing::ReadError;
use crate::proto::checks::CheckId;
use crate::proto::client::{ResponseBuf, SentRequest, decode_response, encode_request};
use crate::proto::client_session::{CallOutcome, CallReply};
use crate::wire::rpc::FaultStatus;

use super::schedule::{Shared, Ticket};
use super::stats::{Phase, Stats, histogram};

/// Records flushed to the shared interval histogram at most this often (ms).
const FLUSH_MS: u128 = 100;

/// What a worker hands back.
#[derive(Debug, Default)]
pub struct WorkerResult {
    /// Measurements.
    pub stats: Stats,
    /// Connections re-opened because the host had closed a reused one.
    pub reconnects: u64,
}

/// `fault:OpRangeError`, or `fault:0x1C0100FF` for a status without a name.
fn fault_class(status: FaultStatus) -> String {
    format!("fault:{status}")
}

/// Verifies a call's outcome with every check `activate` makes: the response's count when the
/// reply is a response passing every RPC and KMS check, else the failure class (`hresult:…`,
/// `fault:…`, `undecodable`, `unverifiable` when there is no request to verify against, or
/// empty when only checks failed). Each failed check is passed to `failed_check`. Load and
/// replay both judge their calls here.
pub fn judge(
    outcome: &CallOutcome,
    sent: Option<&SentRequest>,
    body: &[u8],
    buf: &mut ResponseBuf,
    mut failed_check: impl FnMut(CheckId),
) -> Result<u32, String> {
    let refused_or_faulted = !matches!(outcome.reply, CallReply::Response);
    for c in outcome.checks.failed() {
        // A refusal or fault is its own class; its non-S_OK return value is not a second one.
        if !(refused_or_faulted && c.id == CheckId::ReturnValue) {
            failed_check(c.id);
        }
    }
    match outcome.reply {
        CallReply::Refused(h) => Err(format!("hresult:0x{:08X}", h.0)),
        CallReply::Fault(s) => Err(fault_class(s)),
        CallReply::Response => {
            let Some(sent) = sent else {
                return Err("unverifiable".into());
            };
            match decode_response(sent, body, buf) {
                Err(_) => Err("undecodable".into()),
                Ok((resp, checks)) => {
                    for c in checks.failed() {
                        failed_check(c.id);
                    }
                    if checks.all_passed() && outcome.checks.all_passed() {
                        Ok(resp.base.count)
                    } else {
                        // Counted check by check.
                        Err(String::new())
                    }
                }
            }
        }
    }
}

/// How long the steps of one activation took.
#[derive(Debug, Clone, Copy)]
pub struct CallTimes {
    /// TCP connect and bind (with alter_context), when a connection was opened for it.
    pub opened: Option<(Duration, Duration)>,
    /// The call itself.
    pub call: Duration,
}

/// Sends `kms` over `conn`, opening a connection (connect and bind) first when there is none,
/// and once more over a new one when a reused connection turns out to have been closed by the
/// host (py-kms closes after each response; Windows and vlmcs then simply reconnect).
/// `attach` records newly opened connections; `recording` pauses or resumes a connection's
/// recording for this call.
pub async fn call_reconnecting(
    conn: &mut Option<Connection>,
    addr: SocketAddr,
    client: ClientConfig,
    attach: Option<&Arc<Recorder>>,
    recording: Option<bool>,
    kms: &[u8],
    reconnects: &mut u64,
) -> Result<(CallOutcome, CallTimes), NetError> {
    let mut opened = None;
    for attempt in 1..=2 {
        let reused = conn.is_some();
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let t0 = Instant::now();
                let mut c = Connection::connect(addr, client, 2).await?;
                let t1 = Instant::now();
                if let Some(r) = attach {
                    c.record(r.clone());
                }
                c.bind().await?;
                opened = Some((t1 - t0, t1.elapsed()));
                conn.insert(c)
            }
        };
        if let Some(on) = recording {
            c.set_recording(on);
        }
        let t2 = Instant::now();
        match c.call(kms).await {
            Err(NetError::Read {
                source: ReadError::Closed,
                ..
            }) if reused && attempt == 1 => {
                *conn = None;
                *reconnects += 1;
            }
            Err(e) => return Err(e),
            Ok(o) => {
                let call = t2.elapsed();
                return Ok((o, CallTimes { opened, call }));
            }
        }
    }
    unreachable!("the second attempt always returns")
}

/// Runs tickets until the schedule says stop.
pub async fn run(shared: Arc<Shared>, addr_index: usize) -> WorkerResult {
    let mut out = WorkerResult::default();
    let stats = &mut out.stats;
    let mut conn: Option<Connection> = None;
    let mut kms = Vec::with_capacity(300);
    let mut buf = ResponseBuf::default();
    // A seeded generator per worker: Send, unlike the thread-local one.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(rand::random());
    let mut interval = histogram();
    let mut last_flush = Instant::now();
    let addrs = &shared.addrs;
    let addr = addrs[addr_index % addrs.len()];
    while let Some(Ticket {
        index,
        scheduled,
        recorded,
    }) = shared.ticket()
    {
        if let Some(at) = scheduled {
            tokio::time::sleep_until(at.into()).await;
        }
        let begin = scheduled.unwrap_or_else(Instant::now);
        let machine = shared.fleet.get(index);
        // Warm-up activations are neither measured nor recorded.
        let sampled = shared
            .record
            .as_ref()
            .filter(|s| recorded && s.takes(index));
        let base = match &shared.templates {
            Some(t) => t.restamp(index, machine, now_filetime()),
            None => machine.request(now_filetime()),
        };
        kms.clear();
        let sent = encode_request(&base, rng.random(), &mut kms);
        if recorded {
            stats.sent += 1;
        }
        let mut failed: Option<String> = None;
        // Fresh connections are recorded when their activation is sampled; reused ones always
        // (their bind), and then only their sampled activations.
        let attach = shared
            .record
            .as_ref()
            .filter(|_| sampled.is_some() || !shared.fresh)
            .map(|s| &s.recorder);
        let recording = shared.record.as_ref().map(|_| sampled.is_some());
        let outcome = call_reconnecting(
            &mut conn,
            addr,
            shared.client,
            attach,
            recording,
            &kms,
            &mut out.reconnects,
        )
        .await
        .map(|(o, times)| {
            if let (true, Some((connect, bind))) = (recorded, times.opened) {
                stats.record(Phase::Connect, connect);
                stats.record(Phase::Bind, bind);
            }
            (o, times.call)
        });
        match outcome {
            Err(e) => {
                failed = Some(e.class().to_owned());
                conn = None;
            }
            Ok((o, call_time)) => {
                let body = conn.as_ref().map_or(&[][..], |c| c.response_body());
                let verdict = judge(&o, Some(&sent), body, &mut buf, |id| {
                    if recorded {
                        stats.error(&format!("check:{}", id.name()));
                    }
                });
                match verdict {
                    Ok(_) => {
                        machine.activated();
                        if recorded {
                            stats.ok += 1;
                            stats.record(Phase::Call, call_time);
                        }
                    }
                    Err(class) => failed = Some(class),
                }
            }
        }
        if shared.fresh {
            conn = None;
        }
        let now = Instant::now();
        if recorded {
            match failed.as_deref() {
                // Latency histograms hold validated activations only: their count is the
                // success count, and failures are counted by class instead.
                None => {
                    let total = now.saturating_duration_since(begin);
                    stats.record(Phase::Total, total);
                    interval.saturating_record(
                        (total.as_micros() as u64).clamp(1, super::stats::MAX_MICROS),
                    );
                }
                Some(class) if !class.is_empty() => stats.error(class),
                Some(_) => {}
            }
            stats.tick(now.saturating_duration_since(shared.start).as_secs() as usize);
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
        if failed.is_some() {
            shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        if shared.intervals
            && now.duration_since(last_flush).as_millis() >= FLUSH_MS
            && !interval.is_empty()
        {
            shared.flush_interval(&mut interval);
            last_flush = now;
        }
    }
    if shared.intervals && !interval.is_empty() {
        shared.flush_interval(&mut interval);
    }
    out
}
