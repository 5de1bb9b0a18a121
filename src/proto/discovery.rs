//! How a Windows KMS client finds a host among the SRV records DNS returns, sans-IO: the RFC
//! 2782 choice by priority, then weight, with the random number passed in; a host that does
//! not respond is removed from the list and another chosen; the host that responded is cached
//! and asked first on every later attempt until it fails to respond, when discovery runs again.
//!
//! Methods follow the sans-IO groups: a getter ([`Discovery::cached`]), one command
//! ([`Discovery::next_target`]) and two inputs ([`Discovery::handle_response`],
//! [`Discovery::handle_no_response`]). The caller owns the records (`net::discovery` resolves
//! them and orders them with [`select_among`], `simulate` declares them) and passes them to
//! each call.

/// Most records one client keeps track of: the hosts it removed during an attempt are one bit
/// each of a `u64`, so that a machine's discovery state stays 16 bytes. A site publishes a
/// handful of KMS hosts ("a single KMS host is sufficient" for most; issue 10's scenarios use
/// two or three).
pub const MAX_RECORDS: usize = 64;

/// The two SRV fields discovery uses (RFC 2782, "The format of the SRV RR").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrvRecord {
    /// "A client MUST attempt to contact the target host with the lowest-numbered priority it
    /// can reach" (RFC 2782).
    pub priority: u16,
    /// "A server selection mechanism. The weight field specifies a relative weight for entries
    /// with the same priority" (RFC 2782).
    pub weight: u16,
}

/// Chooses one of `records` not in `removed` (bit `i` set: record `i` is out), or `None` when
/// none is left. Among the lowest priority left, RFC 2782 "Usage rules": "arrange all SRV RRs
/// (that have not been ordered yet) in any order, except that all those with weight 0 are
/// placed at the beginning of the list. Compute the sum of the weights of those RRs, and with
/// each RR associate the running sum in the selected order. Then choose a uniform random
/// number between 0 and the sum computed (inclusive), and select the RR whose running sum value
/// is the first in the selected order which is greater than or equal to the random number
/// selected." `random` is that number's source, uniform over `u32`; it is scaled to
/// `0..=sum` by multiplication (no modulo bias beyond 2^-16 for 64 records of weight 65535).
pub fn select(records: &[SrvRecord], removed: u64, random: u32) -> Option<usize> {
    select_among(
        records,
        |i| i >= MAX_RECORDS || removed & (1 << i) != 0,
        random,
    )
}

/// [`select`] with the removed records given by `is_removed` instead of a bit mask, for a list
/// of any length (`net::discovery::order` orders a whole DNS answer by calling it until every
/// record is taken).
pub fn select_among(
    records: &[SrvRecord],
    is_removed: impl Fn(usize) -> bool,
    random: u32,
) -> Option<usize> {
    let live = |i: usize| !is_removed(i);
    let priority = (0..records.len())
        .filter(|&i| live(i))
        .map(|i| records[i].priority)
        .min()?;
    let group = || (0..records.len()).filter(|&i| live(i) && records[i].priority == priority);
    // Weight-0 records first, then the others, each in record order.
    let ordered = group()
        .filter(|&i| records[i].weight == 0)
        .chain(group().filter(|&i| records[i].weight != 0));
    let sum: u64 = group().map(|i| u64::from(records[i].weight)).sum();
    let pick = (u64::from(random) * (sum + 1)) >> 32;
    let mut running = 0u64;
    let mut last = None;
    for i in ordered {
        running += u64::from(records[i].weight);
        if running >= pick {
            return Some(i);
        }
        last = Some(i);
    }
    // Unreachable (the last running sum is `sum` >= `pick`); kept free of panics.
    last
}

/// One client's discovery state: the cached host, and the hosts removed during the current
/// attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Discovery {
    cached: Option<u8>,
    removed: u64,
}

impl Discovery {
    /// A client that has not found a host yet.
    pub const fn new() -> Discovery {
        Discovery {
            cached: None,
            removed: 0,
        }
    }

    // --- getters ---

    /// The cached host's record index, if one responded and has not failed since.
    pub fn cached(&self) -> Option<usize> {
        self.cached.map(usize::from)
    }

    // --- commands ---

    /// The record to contact next in this attempt: the cached host when there is one ("uses
    /// it for subsequent activation and renewal attempts"), else an RFC 2782 choice among the
    /// records not removed yet, drawing on `random` (Activate clients running Windows, "Client
    /// discovery of the Key Management Service": "it randomly chooses a KMS host from the list
    /// of service (SRV) resource records that DNS returns"). `None`: every record was tried and
    /// none responded, so the attempt failed; the list is whole again for the next attempt,
    /// which queries DNS anew.
    pub fn next_target(&mut self, records: &[SrvRecord], random: u32) -> Option<usize> {
        if let Some(c) = self.cached() {
            return Some(c);
        }
        let chosen = select(records, self.removed, random);
        if chosen.is_none() {
            self.removed = 0;
        }
        chosen
    }

    // --- input ---

    /// Record `i` responded (any answer: a count, a refusal, a fault): "When a KMS host
    /// responds, the KMS client computer caches the name of the KMS host".
    pub fn handle_response(&mut self, i: usize) {
        self.cached = u8::try_from(i)
            .ok()
            .filter(|&c| usize::from(c) < MAX_RECORDS);
        self.removed = 0;
    }

    /// Record `i` did not respond. The cached host: "If the cached KMS host doesn't respond on
    /// a subsequent renewal, the KMS client computer discovers a new KMS host by querying DNS
    /// for KMS service (SRV) resource records" — the cache is dropped and a fresh list taken,
    /// without the host that just failed (asked again in the same attempt, it would fail
    /// again). Any other: "the KMS
    /// client computer removes that KMS host from its list of service (SRV) resource records
    /// and randomly selects another KMS host from the list".
    pub fn handle_no_response(&mut self, i: usize) {
        if self.cached() == Some(i) {
            self.cached = None;
            self.removed = 0;
        }
        if i < MAX_RECORDS {
            self.removed |= 1 << i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(priority: u16, weight: u16) -> SrvRecord {
        SrvRecord { priority, weight }
    }

    /// Random numbers spread evenly over `u32`, `n` of them.
    fn spread(n: u32) -> impl Iterator<Item = u32> {
        (0..n).map(move |k| ((u64::from(k) << 32) / u64::from(n)) as u32)
    }

    #[test]
    fn test_lowest_priority_first() {
        // RFC 2782: "A client MUST attempt to contact the target host with the lowest-numbered
        // priority it can reach".
        let records = [rec(10, 100), rec(0, 1), rec(5, 1000)];
        for r in spread(100) {
            assert_eq!(select(&records, 0, r), Some(1));
        }
        // Once it is removed, the next priority.
        for r in spread(100) {
            assert_eq!(select(&records, 1 << 1, r), Some(2));
        }
        assert_eq!(select(&records, 0b111, 0), None);
        assert_eq!(select(&[], 0, 0), None);
    }

    #[test]
    fn test_weight_shares_within_a_priority() {
        // RFC 2782: "Larger weights SHOULD be given a proportionately higher probability of
        // being selected."
        let records = [rec(0, 300), rec(0, 100), rec(1, 1000)];
        let mut hits = [0u32; 3];
        for r in spread(4000) {
            hits[select(&records, 0, r).expect("a record")] += 1;
        }
        // 300/400 and 100/400 of the picks, within the rounding of the running sums.
        assert!((2990..=3010).contains(&hits[0]), "{hits:?}");
        assert!((990..=1010).contains(&hits[1]), "{hits:?}");
        assert_eq!(hits[2], 0);
    }

    #[test]
    fn test_zero_weights() {
        // RFC 2782: "Domain administrators SHOULD use Weight 0 when there isn't any server
        // selection to do"; "all those with weight 0 are placed at the beginning of the list":
        // with others of weight, a weight-0 record is chosen only for the number 0 of 0..=100.
        let records = [rec(0, 100), rec(0, 0)];
        let picks: Vec<_> = spread(1010).map(|r| select(&records, 0, r)).collect();
        let zero = picks.iter().filter(|&&p| p == Some(1)).count();
        // 1010/101 = 10, give or take the rounding at the edges.
        assert!((9..=11).contains(&zero), "{zero}");
        assert!(picks.iter().all(Option::is_some));
        // All zero: the first in order is always chosen (the sum is 0).
        let zeros = [rec(0, 0), rec(0, 0)];
        assert_eq!(select(&zeros, 0, u32::MAX), Some(0));
        assert_eq!(select(&zeros, 1, u32::MAX), Some(1));
    }

    #[test]
    fn test_no_response_removes_the_host_and_chooses_another() {
        // "If the KMS host that a client computer selects doesn't respond, the KMS client
        // computer removes that KMS host from its list of service (SRV) resource records and
        // randomly selects another KMS host from the list" (Activate clients running Windows).
        let records = [rec(0, 50), rec(0, 50), rec(1, 10)];
        let mut d = Discovery::new();
        let first = d.next_target(&records, 0).expect("a host");
        d.handle_no_response(first);
        let second = d.next_target(&records, 0).expect("another host");
        assert_ne!(second, first);
        assert!(second < 2);
        d.handle_no_response(second);
        assert_eq!(d.next_target(&records, 0), Some(2));
        d.handle_no_response(2);
        // Nobody responded: the attempt fails, and the next one starts from the whole list.
        assert_eq!(d.next_target(&records, 0), None);
        assert_eq!(d.next_target(&records, 0), Some(first));
    }

    #[test]
    fn test_responding_host_is_cached_until_it_fails() {
        // "When a KMS host responds, the KMS client computer caches the name of the KMS host
        // and uses it for subsequent activation and renewal attempts. If the cached KMS host
        // doesn't respond on a subsequent renewal, the KMS client computer discovers a new KMS
        // host by querying DNS" (Activate clients running Windows).
        let records = [rec(0, 100), rec(5, 100)];
        let mut d = Discovery::new();
        assert_eq!(d.next_target(&records, 7), Some(0));
        d.handle_no_response(0);
        assert_eq!(d.next_target(&records, 7), Some(1));
        d.handle_response(1);
        assert_eq!(d.cached(), Some(1));
        // Later attempts go to the cached host although a better priority is listed.
        for r in spread(10) {
            assert_eq!(d.next_target(&records, r), Some(1));
        }
        // It fails: discovery runs again and finds the priority-0 host.
        d.handle_no_response(1);
        assert_eq!(d.cached(), None);
        assert_eq!(d.next_target(&records, 7), Some(0));
        d.handle_response(0);
        assert_eq!(d.cached(), Some(0));
    }

    #[test]
    fn test_state_is_small() {
        // A simulated site holds one per machine.
        assert!(core::mem::size_of::<Discovery>() <= 16);
    }
}
