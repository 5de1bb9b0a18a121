//! A connection's read deadline: moved on every PDU, reached almost never, so it is one timer
//! in the runtime's wheel, moved there only when it fires before the deadline it now stands for.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Where a timer that has no deadline yet waits: far enough never to fire in a run.
const UNSET: Duration = Duration::from_secs(365 * 24 * 3600);

/// A deadline that can be moved without touching the runtime's timer wheel.
///
/// Moving a registered tokio timer locks the wheel and re-files the entry; a new timeout per
/// read inserts and removes one. A host or client reading tens of thousands of PDUs a second
/// did that on every one. Here a later deadline is only noted; the timer, when it fires at the
/// earlier one, sees that the deadline has moved and waits again. An earlier deadline moves
/// the timer at once.
#[derive(Debug)]
pub struct LazyTimer {
    sleep: Pin<Box<Sleep>>,
    /// The deadline in force.
    target: Instant,
    /// When the timer is set to fire: never after `target`.
    armed: Instant,
}

impl Default for LazyTimer {
    fn default() -> Self {
        LazyTimer::new()
    }
}

impl LazyTimer {
    /// A timer with no deadline: [`expired`](Self::expired) waits until one is set and reached.
    pub fn new() -> LazyTimer {
        let far = Instant::now() + UNSET;
        LazyTimer {
            sleep: Box::pin(tokio::time::sleep_until(far)),
            target: far,
            armed: far,
        }
    }

    /// Sets the deadline to `at`, earlier or later than the one before.
    pub fn set(&mut self, at: Instant) {
        self.target = at;
        if at < self.armed {
            self.armed = at;
            self.sleep.as_mut().reset(at);
        }
    }

    /// Completes once the deadline in force is reached. Safe to drop and call again (in a
    /// `select!`): the timer keeps its place.
    pub async fn expired(&mut self) {
        loop {
            self.sleep.as_mut().await;
            if Instant::now() >= self.target {
                return;
            }
            self.armed = self.target;
            self.sleep.as_mut().reset(self.target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_is_kept_and_one_moved_earlier_wins() {
        let start = Instant::now();
        let mut t = LazyTimer::new();
        t.set(start + Duration::from_millis(10));
        // Later: the armed timer fires at 10 ms, sees the deadline moved, waits again.
        t.set(start + Duration::from_millis(30));
        t.expired().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(30));
        // Earlier than the armed 30 ms (already past): fires at once.
        t.set(start + Duration::from_millis(35));
        t.set(start + Duration::from_millis(32));
        t.expired().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(32));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_wait_keeps_the_timer_in_place() {
        let start = Instant::now();
        let mut t = LazyTimer::new();
        t.set(start + Duration::from_millis(20));
        let r = tokio::time::timeout(Duration::from_millis(5), t.expired()).await;
        assert!(r.is_err(), "the deadline is 20 ms away");
        t.expired().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_deadline_it_does_not_fire() {
        let mut t = LazyTimer::new();
        let r = tokio::time::timeout(Duration::from_secs(3600), t.expired()).await;
        assert!(r.is_err());
    }
}
