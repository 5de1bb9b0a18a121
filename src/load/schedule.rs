//! Who sends what when: tickets numbered from 0, scheduled at `start + i / rate` in open loop
//! (the scheduled time travels with the ticket so latency counts from when the request should
//! have started, free of coordinated omission) or as soon as a worker is free in closed loop;
//! every run is bounded by a deadline and/or a request count.
//!
//! Open-loop tickets are released by a pacer on an OS thread of its own ([`Shared::pace`]):
//! tokio's timer wheel has a 1 ms resolution, which would be the floor of every latency at
//! `--rate 1000` against a host that answers in 70 µs. The pacer sleeps to just before each
//! ticket's time and spins the rest, so a ticket is released within microseconds; a worker
//! claims released tickets in order and measures how late it started against the schedule
//! (the generator's own lateness, reported apart from the host's latency). Nothing is queued:
//! a counter of released tickets bounds memory whatever the overload, and tickets still
//! unclaimed when the run's time is up are counted as not sent instead of run late.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::capture::plan::{Plan, PlanError};
use crate::capture::record::Recorder;
use crate::net::client::ClientConfig;
use crate::wire::kms::{FileTime, RequestBase, Workstation};

use super::fleet::{Fleet, Machine};
use super::site::{Site, SitePacing};
use super::stats::histogram;

/// One unit of work.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    /// Sequence number.
    pub index: u64,
    /// The machine that asks (the sequence number round robin, or the site's machine due
    /// first); `None` when no machine of a site is due yet: wait until `scheduled` and ask
    /// again.
    pub machine: Option<u64>,
    /// When the request should start (open loop).
    pub scheduled: Option<Instant>,
    /// Where the activation's latency starts: `scheduled`, or, closed loop, when the ticket
    /// was taken (the clock read that checked it against the deadline, not a second one).
    pub begin: Instant,
    /// Whether it counts (false during warm-up).
    pub recorded: bool,
}

/// How long a worker waits to ask again when every machine of a site is in flight.
pub const SITE_IDLE_WAIT: Duration = Duration::from_millis(50);

/// How long before a ticket's time the pacer stops sleeping and spins: more than a thread's
/// wake-up from `nanosleep` overshoots (Linux's default timer slack is 50 µs, and a VM's
/// timer adds to it), so the release is late by the spin loop's granularity only.
const PACER_SPIN: Duration = Duration::from_micros(150);

/// The longest the pacer sleeps at a time, so that a stop (Ctrl-C) is seen promptly.
const PACER_MAX_SLEEP: Duration = Duration::from_millis(10);

/// Captured requests used as templates, re-stamped per machine.
#[derive(Debug, Clone)]
pub struct Templates {
    bases: Vec<RequestBase>,
}

impl Templates {
    /// Templates from decoded request bases (at least one).
    pub fn new(bases: Vec<RequestBase>) -> Option<Templates> {
        (!bases.is_empty()).then_some(Templates { bases })
    }

    /// How many templates there are.
    pub fn len(&self) -> usize {
        self.bases.len()
    }

    /// Whether there are none (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }

    /// Template `index` (round robin) with the machine's identity and the current time.
    pub fn restamp(&self, index: u64, machine: &Machine, now: FileTime) -> RequestBase {
        let t = &self.bases[(index % self.bases.len() as u64) as usize];
        t.restamped(machine.cmid, Workstation(machine.workstation.0), now)
    }

    /// The requests of a capture file's bytes as templates (see [`Plan`]).
    pub fn from_capture(bytes: &[u8]) -> Result<Templates, PlanError> {
        let bases = Plan::from_capture(bytes)?.bases().collect();
        Templates::new(bases).ok_or(PlanError::NoDecodableRequest)
    }
}

/// Which activations a load run records (`--record FILE --record-sample N`).
#[derive(Debug, Clone)]
pub struct Sampling {
    /// The pcap being written.
    pub recorder: Arc<Recorder>,
    /// Every `every`-th ticket (index 0, N, 2N, ...) is recorded.
    pub every: u64,
}

impl Sampling {
    /// Whether ticket `index` is recorded.
    pub fn takes(&self, index: u64) -> bool {
        index.is_multiple_of(self.every.max(1))
    }
}

/// State every worker shares.
#[derive(Debug)]
pub struct Shared {
    /// The machines.
    pub fleet: Fleet,
    /// Captured request templates, when requests come from a capture.
    pub templates: Option<Templates>,
    /// Host addresses (workers spread over them).
    pub addrs: Vec<std::net::SocketAddr>,
    /// Client options.
    pub client: ClientConfig,
    /// Local addresses connections leave from (`--source`); empty: the system's choice.
    pub sources: Vec<std::net::IpAddr>,
    /// A new connection per activation.
    pub fresh: bool,
    /// Activations recorded to a pcap, if any.
    pub record: Option<Sampling>,
    /// When the run started.
    pub start: Instant,
    /// The same moment as a FILETIME, to place a site's attempts on the run's clock.
    pub start_filetime: FileTime,
    /// A site's machines and their next attempts (`--site`).
    pub site: Option<Site>,
    warmup_end: Instant,
    deadline: Option<Instant>,
    max_requests: Option<u64>,
    interval_ns: Option<f64>,
    next: AtomicU64,
    /// Open loop: tickets the pacer has released (indices below it are due).
    released: AtomicU64,
    /// Open loop: the pacer has released its last ticket.
    paced_out: AtomicBool,
    /// Open loop: wakes a worker waiting for a ticket.
    ready: tokio::sync::Notify,
    /// Open loop: measured tickets claimed after the run's time was up.
    late_at_end: AtomicU64,
    recorded: AtomicU64,
    /// Set to stop early (Ctrl-C).
    pub stop: AtomicBool,
    /// Whether anyone reads the per-second latency histograms (a progress line or an interval
    /// log); when not, workers skip them: adding a histogram is far costlier than recording.
    pub intervals: bool,
    /// Tickets finished.
    pub done: AtomicU64,
    /// Tickets that failed.
    pub failed: AtomicU64,
    interval: Mutex<Histogram<u64>>,
}

/// Where a run stands (see [`Shared::progress`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// Warm-up, with this much left.
    WarmingUp {
        /// Time left.
        left: Duration,
    },
    /// A run of `total` measured activations.
    Count {
        /// Measured activations finished.
        done: u64,
        /// Measured activations wanted.
        total: u64,
        /// Measured time so far.
        measured: Duration,
    },
    /// A run of `total` measured time.
    Time {
        /// Measured time so far.
        measured: Duration,
        /// Measured time wanted.
        total: Duration,
    },
    /// Unbounded (until Ctrl-C).
    Open {
        /// Measured time so far.
        measured: Duration,
    },
}

impl Progress {
    /// What is left, estimated: by the rate so far for a count, exactly for a time.
    pub fn eta(&self) -> Option<Duration> {
        match *self {
            Progress::WarmingUp { .. } | Progress::Open { .. } => None,
            Progress::Time { measured, total } => Some(total.saturating_sub(measured)),
            Progress::Count {
                done,
                total,
                measured,
            } => (done > 0).then(|| measured.mul_f64((total - done) as f64 / done as f64)),
        }
    }
}

/// Bounds and pacing of a run.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Activations per second (open loop), or as fast as possible.
    pub rate: Option<f64>,
    /// Measured time after warm-up.
    pub duration: Option<Duration>,
    /// Measured activations.
    pub requests: Option<u64>,
    /// Unmeasured time at the start.
    pub warmup: Duration,
    /// A site's own pace (`--site`), instead of a rate or a closed loop.
    pub site: Option<SitePacing>,
}

impl Shared {
    /// Shared state for a run starting now.
    pub fn new(
        fleet: Fleet,
        templates: Option<Templates>,
        addrs: Vec<std::net::SocketAddr>,
        client: ClientConfig,
        fresh: bool,
        pacing: Pacing,
    ) -> Shared {
        let start = Instant::now();
        let start_filetime = crate::clock::now_filetime();
        let warmup_end = start + pacing.warmup;
        let site = pacing.site.map(|p| Site::new(&fleet, start_filetime, p));
        Shared {
            fleet,
            start_filetime,
            site,
            templates,
            addrs,
            client,
            sources: Vec::new(),
            fresh,
            record: None,
            start,
            warmup_end,
            deadline: pacing.duration.map(|d| warmup_end + d),
            max_requests: pacing.requests,
            interval_ns: pacing.rate.map(|r| 1e9 / r),
            next: AtomicU64::new(0),
            released: AtomicU64::new(0),
            paced_out: AtomicBool::new(false),
            ready: tokio::sync::Notify::new(),
            late_at_end: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            intervals: false,
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            interval: Mutex::new(histogram()),
        }
    }

    /// Whether tickets come from the pacer: open loop at a rate, not a site.
    pub fn paced(&self) -> bool {
        self.interval_ns.is_some() && self.site.is_none()
    }

    /// When open-loop ticket `index` is due.
    fn due(&self, index: u64, interval_ns: f64) -> Instant {
        self.start + Duration::from_nanos((index as f64 * interval_ns) as u64)
    }

    /// The first open-loop ticket due at or after `at`.
    fn first_due_at_or_after(&self, at: Instant, interval_ns: f64) -> u64 {
        let ns = at.saturating_duration_since(self.start).as_nanos() as f64;
        let mut i = (ns / interval_ns).ceil() as u64;
        // The float estimate may be one off either way; settle it on `due` itself.
        while i > 0 && self.due(i - 1, interval_ns) >= at {
            i -= 1;
        }
        while self.due(i, interval_ns) < at {
            i += 1;
        }
        i
    }

    /// How many open-loop tickets the run has: those due before the deadline, and no more
    /// measured ones than `-n` asks for; `u64::MAX` for a run bounded by Ctrl-C only.
    fn paced_total(&self, interval_ns: f64) -> u64 {
        let by_time = self
            .deadline
            .map(|d| self.first_due_at_or_after(d, interval_ns));
        let by_count = self.max_requests.map(|max| {
            self.first_due_at_or_after(self.warmup_end, interval_ns)
                .saturating_add(max)
        });
        by_time
            .into_iter()
            .chain(by_count)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The pacer: releases each open-loop ticket at its time, until the last one or a stop.
    /// Blocks; run it on a thread of its own (the caller's, not a runtime's).
    pub fn pace(&self) {
        let Some(interval_ns) = self.interval_ns.filter(|_| self.paced()) else {
            return;
        };
        let total = self.paced_total(interval_ns);
        let mut next = 0u64;
        while next < total && !self.stop.load(Ordering::Relaxed) {
            let at = self.due(next, interval_ns);
            let now = Instant::now();
            if now < at {
                let left = at - now;
                if left > PACER_SPIN {
                    std::thread::sleep((left - PACER_SPIN).min(PACER_MAX_SLEEP));
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            // Every ticket due by now goes at once: at high rates the pacer releases batches.
            let due_by_now = self
                .first_due_at_or_after(now + Duration::from_nanos(1), interval_ns)
                .min(total);
            next = due_by_now.max(next + 1);
            self.released.store(next, Ordering::Release);
            self.ready.notify_one();
        }
        self.paced_out.store(true, Ordering::Release);
        self.ready.notify_waiters();
    }

    /// Stops the run: no more tickets (Ctrl-C, or the end).
    pub fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.ready.notify_waiters();
    }

    /// The next open-loop ticket the pacer released, waiting for it; `None` when the run is
    /// over. A ticket claimed once the deadline has passed is not run but counted as not sent.
    pub async fn paced_ticket(&self) -> Option<Ticket> {
        let interval_ns = self.interval_ns?;
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            // Registered before the checks, so a release or a stop between them wakes it.
            notified.as_mut().enable();
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            let released = self.released.load(Ordering::Acquire);
            let index = self.next.load(Ordering::Relaxed);
            if index < released {
                if self
                    .next
                    .compare_exchange_weak(index, index + 1, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                // One wake-up per release may have been spent on a busy worker: pass it on.
                if index + 1 < released {
                    self.ready.notify_one();
                }
                let at = self.due(index, interval_ns);
                let recorded = at >= self.warmup_end;
                if self.deadline.is_some_and(|d| Instant::now() >= d) {
                    if recorded {
                        self.late_at_end.fetch_add(1, Ordering::Relaxed);
                    }
                    return None;
                }
                return Some(Ticket {
                    index,
                    machine: Some(index),
                    scheduled: Some(at),
                    begin: at,
                    recorded,
                });
            }
            if self.paced_out.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }

    /// Open loop, at the end of the run: measured tickets that were due and never sent
    /// (released and not claimed, or claimed after the deadline), as wrk2 and k6 count them
    /// instead of sending them late; `None` for other runs.
    pub fn not_sent(&self) -> Option<u64> {
        let interval_ns = self.interval_ns.filter(|_| self.paced())?;
        let claimed = self.next.load(Ordering::Acquire);
        let released = self.released.load(Ordering::Acquire);
        let first_measured = self.first_due_at_or_after(self.warmup_end, interval_ns);
        let unclaimed = released.saturating_sub(claimed.max(first_measured));
        Some(unclaimed + self.late_at_end.load(Ordering::Relaxed))
    }

    /// The next ticket, or `None` when the run is over.
    pub fn ticket(&self) -> Option<Ticket> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(site) = &self.site {
            return self.site_ticket(site);
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let scheduled = self
            .interval_ns
            .map(|ns| self.start + Duration::from_nanos((index as f64 * ns) as u64));
        let at = scheduled.unwrap_or_else(Instant::now);
        if self.deadline.is_some_and(|d| at >= d) {
            return None;
        }
        let recorded = at >= self.warmup_end;
        if recorded
            && let Some(max) = self.max_requests
            && self.recorded.fetch_add(1, Ordering::Relaxed) >= max
        {
            return None;
        }
        Some(Ticket {
            index,
            machine: Some(index),
            scheduled,
            begin: at,
            recorded,
        })
    }

    /// When a FILETIME falls on the run's clock.
    pub fn instant_of(&self, t: FileTime) -> Instant {
        let ticks = t.0.saturating_sub(self.start_filetime.0);
        self.start + Duration::from_nanos(ticks.saturating_mul(100))
    }

    /// The next ticket of a site: the machine due first, at its time; while every machine is
    /// in flight, a ticket to wait [`SITE_IDLE_WAIT`] and ask again.
    fn site_ticket(&self, site: &Site) -> Option<Ticket> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let Some((due, machine)) = site.next() else {
            let at = Instant::now() + SITE_IDLE_WAIT;
            if self.deadline.is_some_and(|d| at >= d) {
                return None;
            }
            return Some(Ticket {
                index,
                machine: None,
                scheduled: Some(at),
                begin: at,
                recorded: false,
            });
        };
        let at = self.instant_of(due);
        let over = self.deadline.is_some_and(|d| at >= d);
        let recorded = at >= self.warmup_end;
        if over
            || (recorded
                && self
                    .max_requests
                    .is_some_and(|max| self.recorded.fetch_add(1, Ordering::Relaxed) >= max))
        {
            site.requeue(machine, due);
            return None;
        }
        Some(Ticket {
            index,
            machine: Some(u64::from(machine)),
            scheduled: Some(at),
            begin: at,
            recorded,
        })
    }

    /// Adds a worker's recent latencies to the current interval, then clears them.
    pub fn flush_interval(&self, h: &mut Histogram<u64>) {
        let mut shared = self.interval.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = shared.add(&*h);
        h.reset();
    }

    /// Takes the current interval's histogram (for progress and the interval log).
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut shared = self.interval.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *shared, histogram())
    }

    /// When an activation still in flight at the end of a timed run (`-d`) is given up and
    /// counted as timed out: one read timeout after the deadline, so that a host that never
    /// finishes answering cannot hold the run open (`None` for a run bounded by count only,
    /// where every step has its own timeout).
    pub fn cutoff(&self) -> Option<Instant> {
        self.deadline.map(|d| d + self.client.read_timeout)
    }

    /// How far a measured run has come, for the progress line: `(done, total)` of a run bounded
    /// by count, the measured time elapsed and its length for one bounded by time, and whether
    /// warm-up is still on.
    pub fn progress(&self, now: Instant, done: u64) -> Progress {
        if now < self.warmup_end {
            return Progress::WarmingUp {
                left: self.warmup_end - now,
            };
        }
        let measured = now - self.warmup_end;
        match (self.max_requests, self.deadline) {
            (Some(total), _) => Progress::Count {
                done: done.min(total),
                total,
                measured,
            },
            (None, Some(deadline)) => Progress::Time {
                measured,
                total: deadline - self.warmup_end,
            },
            (None, None) => Progress::Open { measured },
        }
    }

    /// Whether the run can still issue tickets (for the progress display).
    pub fn finished(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
