//! `load --site N`: the requests a site of N Windows clients sends in real time. Each machine
//! asks when its lifecycle says (after the renewal interval once licensed, after the activation
//! interval while not), so the rate is the site's, not the generator's: a site in steady state
//! has its machines licensed at moments spread over the last renewal interval, so renewals
//! spread evenly over the next one; a boot storm starts every machine fresh, first boots
//! spread over the storm, each retrying every activation interval until the count lets it
//! activate. Times are FILETIMEs given by the caller; nothing here reads a clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::{RngExt, SeedableRng};

use crate::proto::lifecycle::{Client, DEFAULT_RENEWAL_MINUTES};
use crate::wire::kms::FileTime;

use super::fleet::Fleet;

/// FILETIME ticks per second.
const TICKS_PER_SEC: u64 = FileTime::TICKS_PER_SEC;

/// How a site's run begins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SitePacing {
    /// Every machine boots fresh within this time (a boot storm); `None` for a site in
    /// steady state.
    pub boot_storm: Option<Duration>,
    /// Seed of the machines' first attempts.
    pub seed: u64,
}

/// Requests per second of a site of `machines` in steady state: each licensed machine renews
/// once per renewal interval ("By default, KMS client computers attempt to renew their
/// activation every seven days", Activate clients running Windows).
pub fn steady_rate(machines: usize) -> f64 {
    machines as f64 / (f64::from(DEFAULT_RENEWAL_MINUTES) * 60.0)
}

/// The machines' next attempts, earliest first.
#[derive(Debug)]
pub struct Site {
    due: Mutex<BinaryHeap<Reverse<(u64, u32)>>>,
}

impl Site {
    /// Sets every machine of `fleet` up as the site starts at `now` and queues its first
    /// attempt: licensed with its renewal due at a random moment of the next renewal interval
    /// (steady state), or fresh, booting at a random moment of the storm.
    pub fn new(fleet: &Fleet, now: FileTime, pacing: SitePacing) -> Site {
        let mut rng = rand::rngs::StdRng::seed_from_u64(pacing.seed);
        let renewal_ticks = u64::from(DEFAULT_RENEWAL_MINUTES) * 60 * TICKS_PER_SEC;
        let mut due = Vec::with_capacity(fleet.len());
        for (i, m) in fleet.machines().iter().enumerate() {
            let threshold = m.required_clients;
            let at = match pacing.boot_storm {
                Some(storm) => {
                    let ticks = (storm.as_nanos() / 100) as u64;
                    let boot = FileTime(now.0 + rng.random_range(0..ticks.max(1)));
                    m.set_client(Client::new(threshold, boot));
                    boot
                }
                None => {
                    let wait = rng.random_range(0..renewal_ticks);
                    // Renewed one renewal interval before it next asks.
                    let renewed = FileTime((now.0 + wait).saturating_sub(renewal_ticks));
                    let next = FileTime(now.0 + wait);
                    m.set_client(Client::licensed(threshold, renewed, next));
                    next
                }
            };
            due.push(Reverse((at.0, i as u32)));
        }
        Site {
            due: Mutex::new(BinaryHeap::from(due)),
        }
    }

    /// The machine due first, and when; taken off the queue until [`Site::requeue`].
    pub fn next(&self) -> Option<(FileTime, u32)> {
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        due.pop().map(|Reverse((at, m))| (FileTime(at), m))
    }

    /// Queues machine `machine`'s next attempt at `at`.
    pub fn requeue(&self, machine: u32, at: FileTime) {
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        due.push(Reverse((at.0, machine)));
    }

    /// Machines queued (all but those in flight).
    pub fn len(&self) -> usize {
        self.due
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether every machine is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::load::mix::Mix;

    const NOW: FileTime = FileTime::from_unix_secs(1_800_000_000);

    #[test]
    fn test_steady_state_spreads_renewals_over_seven_days() {
        let fleet = Fleet::new(10_000, &Mix::default_mix(), 3);
        let site = Site::new(
            &fleet,
            NOW,
            SitePacing {
                boot_storm: None,
                seed: 3,
            },
        );
        let week = u64::from(DEFAULT_RENEWAL_MINUTES) * 60 * TICKS_PER_SEC;
        let mut per_day = [0u32; 7];
        let mut last = 0;
        while let Some((at, m)) = site.next() {
            assert!(at.0 >= last, "earliest first");
            last = at.0;
            let offset = at.0 - NOW.0;
            assert!(offset < week);
            per_day[(offset * 7 / week) as usize] += 1;
            // Every machine starts licensed, its license valid past its renewal.
            assert!(fleet.get(u64::from(m)).is_activated(at));
        }
        // About 10000/7 = 1429 a day; uniform within a few percent.
        for n in per_day {
            assert!((1300..1560).contains(&n), "{per_day:?}");
        }
        assert!((steady_rate(10_000) - 0.016_534).abs() < 1e-5);
    }

    #[test]
    fn test_boot_storm_starts_fresh_machines_within_the_storm() {
        let fleet = Fleet::new(500, &Mix::default_mix(), 3);
        let storm = Duration::from_secs(600);
        let site = Site::new(
            &fleet,
            NOW,
            SitePacing {
                boot_storm: Some(storm),
                seed: 3,
            },
        );
        let mut n = 0;
        while let Some((at, m)) = site.next() {
            assert!(at.0 - NOW.0 < 600 * TICKS_PER_SEC);
            let machine = fleet.get(u64::from(m));
            assert!(!machine.is_activated(at));
            assert_eq!(machine.next_attempt(), at);
            n += 1;
        }
        assert_eq!(n, 500);
        site.requeue(7, NOW);
        assert_eq!(site.next(), Some((NOW, 7)));
        assert!(site.is_empty());
    }
}
