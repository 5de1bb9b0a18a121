//! The per-application client tables behind the count a host returns: machine IDs by last
//! request, a cache of twice the highest required count that never shrinks, expiry after the
//! client lifetime. The tables follow Microsoft's description of the activation count cache
//! ("Activate clients running Windows", "Plan for KMS activation"); what the docs leave open
//! follows vlmcsd's behaviour, and each rule says which.

use std::collections::HashMap;

use crate::catalog::AppKind;
use crate::wire::Guid;
use crate::wire::kms::FileTime;

use super::message::MAX_REQUIRED_CLIENTS;

/// Docs: "the KMS host only caches twice the number of client IDs that are required to meet the
/// activation threshold" (activate-clients-running-windows.md, Activation count cache).
pub const CACHE_FACTOR: u32 = 2;
/// Smallest table: a request whose count policy is 0 still counts its own machine (vlmcsd
/// behaviour: it treats a policy below 1 as 1; the docs never see such a request).
pub const MIN_CAPACITY: u32 = 1;
/// Largest table: twice the largest count policy a host accepts (rule 3).
pub const MAX_CAPACITY: u32 = CACHE_FACTOR * MAX_REQUIRED_CLIENTS;
/// The three applications in table order.
pub(super) const APPS: [AppKind; 3] = [AppKind::Windows, AppKind::Office2010, AppKind::Office2013];
pub(super) const fn table_index(app: AppKind) -> usize {
    match app {
        AppKind::Windows => 0,
        AppKind::Office2010 => 1,
        AppKind::Office2013 => 2,
    }
}

/// Hash of the client tables: FxHash, which is fixed (the module stays free of randomness)
/// and costs a few instructions a key where SipHash cost more than the rest of the lookup
/// (callgrind: about 700 instructions per request). A client that chooses colliding machine
/// IDs can at worst make lookups linear in the table, which [`MAX_CAPACITY`] bounds, as with
/// any fixed hash.
type TableHasher = rustc_hash::FxBuildHasher;

/// One machine ID in a table.
#[derive(Debug, Clone, Copy)]
struct Slot {
    cmid: Guid,
    last_seen: FileTime,
    /// Arrival order: among equal times, the earlier request is the older.
    seq: u64,
    /// Where the slot sits in the heap.
    heap_pos: usize,
}

/// One application's client table: a map from machine ID to slot, and a min-heap of slots by
/// last request for eviction and expiry. All storage is reserved when the capacity grows, so
/// handling a request allocates nothing, and every step is O(log n) whatever the clock does.
#[derive(Debug, Default, Clone)]
pub(super) struct ClientTable {
    pub(super) capacity: u32,
    index: HashMap<Guid, usize, TableHasher>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    heap: Vec<usize>,
}

/// Whether an entry last seen at `last_seen` has left the count at `now`. Entries from the
/// host's future (its clock went back) are live.
fn expired(last_seen: FileTime, now: FileTime, lifetime_ticks: u64) -> bool {
    now.0.saturating_sub(last_seen.0) > lifetime_ticks
}

impl ClientTable {
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    fn key(&self, slot: usize) -> (FileTime, u64) {
        let s = &self.slots[slot];
        (s.last_seen, s.seq)
    }

    /// Raises the capacity (never lowers it: docs, "KMS never reduces the cache size") and
    /// reserves room for it.
    pub(super) fn grow(&mut self, capacity: u32) {
        if capacity <= self.capacity {
            return;
        }
        self.capacity = capacity;
        let cap = capacity as usize;
        self.slots.reserve(cap.saturating_sub(self.slots.len()));
        self.heap.reserve(cap.saturating_sub(self.heap.len()));
        self.free.reserve(cap.saturating_sub(self.free.len()));
        // The std map rehashes in place rather than allocating while it is at most half full,
        // so it gets twice the room (and one more for the insert that triggers a rehash).
        let room = 2 * cap + 2;
        self.index.reserve(room.saturating_sub(self.index.len()));
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.heap.swap(i, j);
        let (a, b) = (self.heap[i], self.heap[j]);
        self.slots[a].heap_pos = i;
        self.slots[b].heap_pos = j;
    }

    fn sift_up(&mut self, mut pos: usize) -> usize {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.key(self.heap[pos]) >= self.key(self.heap[parent]) {
                break;
            }
            self.swap(pos, parent);
            pos = parent;
        }
        pos
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let left = 2 * pos + 1;
            if left >= self.heap.len() {
                return;
            }
            let right = left + 1;
            let child = if right < self.heap.len()
                && self.key(self.heap[right]) < self.key(self.heap[left])
            {
                right
            } else {
                left
            };
            if self.key(self.heap[child]) >= self.key(self.heap[pos]) {
                return;
            }
            self.swap(pos, child);
            pos = child;
        }
    }

    /// Restores the heap order around `pos` after its key changed either way.
    fn fix(&mut self, pos: usize) {
        let pos = self.sift_up(pos);
        self.sift_down(pos);
    }

    /// Removes the entry at heap position `pos`.
    fn remove_at(&mut self, pos: usize) {
        let Some(last) = self.heap.len().checked_sub(1) else {
            return;
        };
        self.swap(pos, last);
        let Some(slot) = self.heap.pop() else { return };
        if pos < self.heap.len() {
            self.fix(pos);
        }
        self.index.remove(&self.slots[slot].cmid);
        self.free.push(slot);
    }

    /// Drops the entries whose 30 days are over, oldest first: docs, "If a KMS client computer
    /// doesn't renew its activation within 30 days, the KMS host removes the corresponding
    /// client ID from the table".
    pub(super) fn purge(&mut self, now: FileTime, lifetime_ticks: u64) {
        while let Some(&oldest) = self.heap.first() {
            if !expired(self.slots[oldest].last_seen, now, lifetime_ticks) {
                return;
            }
            self.remove_at(0);
        }
    }

    /// Records a request from `cmid` at `now`.
    pub(super) fn touch(&mut self, cmid: Guid, now: FileTime, seq: u64) {
        if let Some(&slot) = self.index.get(&cmid) {
            // A renewal: docs, "the cached client ID is removed from the table, a new record is
            // created, and the 30 day period begins again" — same count, fresh time.
            self.slots[slot].last_seen = now;
            self.slots[slot].seq = seq;
            self.fix(self.slots[slot].heap_pos);
            return;
        }
        if self.len() >= self.capacity as usize && !self.heap.is_empty() {
            // Full: docs, "only the 50 most recent client IDs are kept in the table, and a
            // client ID could be removed sooner than 30 days" — the oldest goes.
            self.remove_at(0);
        }
        let entry = Slot {
            cmid,
            last_seen: now,
            seq,
            heap_pos: self.heap.len(),
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = entry;
                slot
            }
            None => {
                self.slots.push(entry);
                self.slots.len() - 1
            }
        };
        self.heap.push(slot);
        self.sift_up(entry.heap_pos);
        self.index.insert(cmid, slot);
    }

    /// Entries live at `now` (O(n): a getter, not the request path).
    pub(super) fn live(&self, now: FileTime, lifetime_ticks: u64) -> u32 {
        let n = self
            .heap
            .iter()
            .filter(|&&s| !expired(self.slots[s].last_seen, now, lifetime_ticks))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The entries as (machine ID, last request), oldest (next to leave) first.
    pub(super) fn entries(&self) -> Vec<(Guid, FileTime)> {
        let mut slots: Vec<usize> = self.heap.clone();
        slots.sort_by_key(|&s| self.key(s));
        slots
            .into_iter()
            .map(|s| (self.slots[s].cmid, self.slots[s].last_seen))
            .collect()
    }
}
