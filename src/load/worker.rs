//! The one generic load worker: takes tickets, builds each machine's request, connects and
//! binds (fresh mode) or reuses its connection, calls, verifies every check, records.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rand::RngExt;

use crate::clock::now_filetime;
use crate::net::client::{Connection, NetError, Phase as NetPhase, call_reconnecting};
use crate::proto::check::Checks;
use crate::proto::client::message::{ResponseBuf, encode_request};
use crate::proto::lifecycle::Answer;
use crate::proto::verdict::{Failure, Verdict, judge};

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
    // Every source and destination pair is used: workers go through the destinations first.
    let mut client = shared.client;
    if !shared.sources.is_empty() {
        let source = (addr_index / addrs.len()) % shared.sources.len();
        client.source = Some(shared.sources[source]);
    }
    // The run's cutoff as one timer, registered once: a timeout around every call would insert
    // into and remove from the runtime's timer wheel on each.
    let mut cutoff = shared
        .cutoff()
        .map(|at| (at, Box::pin(tokio::time::sleep_until(at.into()))));
    while let Some(Ticket {
        index,
        machine: machine_index,
        scheduled,
        begin,
        recorded,
    }) = if shared.paced() {
        shared.paced_ticket().await
    } else {
        shared.ticket()
    } {
        // A paced ticket is due when it is released; a site's waits for its machine's time.
        if let (Some(at), false) = (scheduled, shared.paced()) {
            tokio::time::sleep_until(at.into()).await;
        }
        let Some(machine_index) = machine_index else {
            continue;
        };
        let machine = shared.fleet.get(machine_index);
        // Warm-up activations are neither measured nor recorded.
        let sampled = shared
            .record
            .as_ref()
            .filter(|s| recorded && s.takes(index));
        // One clock read per activation: the request's time is also when its answer is taken
        // (the call's milliseconds do not move a license measured in days).
        let now = now_filetime();
        let base = match &shared.templates {
            Some(t) => t.restamp(index, machine, now),
            None => machine.request(now),
        };
        kms.clear();
        let sent = encode_request(&base, rng.random(), &mut kms);
        if recorded {
            stats.sent += 1;
            if let (Some(at), true) = (scheduled, shared.paced()) {
                stats.late(at.elapsed());
            }
        }
        // The attempt's failure class; `Some(None)` when only checks failed (each counted).
        let mut failed: Option<Option<Failure>> = None;
        // Fresh connections are recorded when their activation is sampled; reused ones always
        // (their bind), and then only their sampled activations.
        let attach = shared
            .record
            .as_ref()
            .filter(|_| sampled.is_some() || !shared.fresh)
            .map(|s| &s.recorder);
        let recording = shared.record.as_ref().map(|_| sampled.is_some());
        let call = call_reconnecting(
            &mut conn,
            addr,
            client,
            attach,
            recording,
            &kms,
            &mut out.reconnects,
        );
        let outcome = match cutoff.as_mut() {
            None => Some(call.await),
            Some((_, sleep)) => tokio::select! {
                biased;
                r = call => Some(r),
                () = sleep.as_mut() => None,
            },
        };
        let outcome = match (outcome, &cutoff) {
            (Some(r), _) => r,
            (None, cut) => Err(NetError::Timeout {
                addr,
                phase: conn.as_ref().map_or(NetPhase::Connect, |_| NetPhase::Call),
                after: cut.as_ref().map_or(Default::default(), |(at, _)| {
                    at.saturating_duration_since(begin)
                }),
            }),
        };
        let outcome = outcome.map(|(o, times)| {
            let bind_failed = match times.opened {
                Some(opened) => {
                    if recorded {
                        stats.record(Phase::Connect, opened.connect);
                        stats.record(Phase::Bind, opened.bind);
                    }
                    opened.failed_checks
                }
                None => Vec::new(),
            };
            (o, times.call, bind_failed)
        });
        // What the machine's client makes of the answer: only a validated response whose
        // count reaches its threshold activates it. (Load keeps its own pace, so the intervals
        // the host returned, which would time a real client's next attempt, are not passed.)
        let answer = match outcome {
            Err(e) => {
                failed = Some(Some(e.failure()));
                conn = None;
                Answer::Failed(e.failure())
            }
            Ok((o, call_time, bind_failed)) => {
                let (checks, body) = conn.as_ref().map_or((&Checks::EMPTY, &[][..]), |c| {
                    (c.reply_checks(), c.response_body())
                });
                let mut first_check = None;
                // The bind's answer is judged with the first call over its connection.
                let verdict = judge(
                    &o,
                    &bind_failed,
                    checks,
                    Some(&sent),
                    body,
                    &mut buf,
                    |id| {
                        first_check.get_or_insert(id);
                        if recorded {
                            stats.error(Failure::Check(id));
                        }
                    },
                );
                match verdict {
                    Verdict::Validated { count } => {
                        if recorded {
                            stats.ok += 1;
                            stats.record(Phase::Call, call_time);
                        }
                        Answer::Count {
                            count,
                            intervals: None,
                        }
                    }
                    Verdict::Failed(f) => {
                        failed = Some(Some(f));
                        Answer::Failed(f)
                    }
                    Verdict::ChecksFailed => {
                        failed = Some(None);
                        Answer::Failed(first_check.map_or(Failure::Protocol, Failure::Check))
                    }
                }
            }
        };
        if machine.answered(now, answer) {
            stats.activated += 1;
        }
        // A site's machine asks again when its client says (the renewal or activation
        // interval from now).
        if let Some(site) = &shared.site {
            site.requeue(machine_index as u32, machine.next_attempt());
        }
        if shared.fresh {
            conn = None;
        }
        let now = Instant::now();
        if recorded {
            match failed {
                // Latency histograms hold validated activations only: their count is the
                // success count, and failures are counted by class instead.
                None => {
                    let total = now.saturating_duration_since(begin);
                    stats.record(Phase::Total, total);
                    if shared.intervals {
                        interval.saturating_record(
                            (total.as_micros() as u64).clamp(1, super::stats::MAX_MICROS),
                        );
                    }
                }
                Some(Some(f)) => stats.error(f),
                Some(None) => {}
            }
            stats.tick(
                now.saturating_duration_since(shared.start).as_secs() as usize,
                failed.is_some(),
            );
        }
        // Progress counts measured work only, as the report does: warm-up is not "done".
        if recorded {
            shared.done.fetch_add(1, Ordering::Relaxed);
            if failed.is_some() {
                shared.failed.fetch_add(1, Ordering::Relaxed);
            }
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
