//! Requests waiting to be proposed, in arrival order, bounded. A request stays
//! until it is executed: a block that never commits does not lose it.

use std::collections::{BTreeMap, BTreeSet};

use super::types::{Digest, DigestMap, Request, TimeMs};

/// The mempool is full: the request was refused (the client may retry later).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolFull;

#[derive(Debug)]
struct Entry {
    request: Request,
    /// Arrival number: the key in `order`.
    sequence: u64,
    arrived_at: TimeMs,
}

#[derive(Debug)]
pub struct Mempool {
    /// Lookups by digest (never iterated: its order is not deterministic).
    entries: DigestMap<Entry>,
    /// Arrival order: sequence → digest.
    order: BTreeMap<u64, Digest>,
    next_sequence: u64,
    /// Requests below this sequence were considered for forwarding already.
    forward_cursor: u64,
    capacity: usize,
}

impl Mempool {
    pub fn new(capacity: usize) -> Self {
        Self { entries: DigestMap::default(), order: BTreeMap::new(), next_sequence: 0, forward_cursor: 0, capacity }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a request that arrived at `now`; `Ok(false)` if it was already here.
    /// A request `forwarded` by a peer is not forwarded again.
    pub fn insert(&mut self, request: Request, now: TimeMs, forwarded: bool) -> Result<bool, MempoolFull> {
        let digest = request.digest();
        if self.entries.contains_key(&digest) {
            return Ok(false);
        }
        if self.entries.len() >= self.capacity {
            return Err(MempoolFull);
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if forwarded && self.forward_cursor == sequence {
            self.forward_cursor += 1;
        }
        self.order.insert(sequence, digest);
        self.entries
            .insert(digest, Entry { request, sequence, arrived_at: if forwarded { TimeMs(u64::MAX) } else { now } });
        Ok(true)
    }

    pub fn remove(&mut self, digest: &Digest) {
        if let Some(entry) = self.entries.remove(digest) {
            self.order.remove(&entry.sequence);
        }
    }

    /// Up to `max` requests and `bytes_max` bytes in arrival order, skipping those in `exclude` (already proposed).
    pub fn batch(&self, max: usize, bytes_max: usize, exclude: &BTreeSet<Digest>) -> Vec<Request> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for digest in self.order.values().filter(|digest| !exclude.contains(*digest)) {
            let Some(entry) = self.entries.get(digest) else { continue };
            if batch.len() >= max || bytes + entry.request.payload().len() > bytes_max {
                break;
            }
            bytes += entry.request.payload().len();
            batch.push(entry.request.clone());
        }
        batch
    }

    /// Requests from this replica's own clients that have waited `after_ms` without
    /// being proposed, each returned once (up to `max` and `bytes_max`): the leaders
    /// should propose them. Scans only from where the last call stopped.
    pub fn due_for_forwarding(
        &mut self,
        now: TimeMs,
        after_ms: u64,
        (max, bytes_max): (usize, usize),
        exclude: &BTreeSet<Digest>,
    ) -> Vec<Request> {
        let mut due = Vec::new();
        let mut bytes = 0;
        let mut cursor = self.forward_cursor;
        for (sequence, digest) in self.order.range(self.forward_cursor..) {
            let Some(entry) = self.entries.get(digest) else { continue };
            let from_a_peer = entry.arrived_at == TimeMs(u64::MAX);
            let young = !from_a_peer && now.0 < entry.arrived_at.0.saturating_add(after_ms);
            if young || due.len() >= max || bytes + entry.request.payload().len() > bytes_max {
                break;
            }
            cursor = sequence + 1;
            if !from_a_peer && !exclude.contains(digest) {
                bytes += entry.request.payload().len();
                due.push(entry.request.clone());
            }
        }
        self.forward_cursor = cursor;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(n: u8) -> Request {
        Request::new(vec![n])
    }

    #[test]
    fn keeps_arrival_order_dedups_and_refuses_beyond_capacity() {
        let mut mempool = Mempool::new(2);
        assert_eq!(mempool.insert(request(2), TimeMs(0), false), Ok(true));
        assert_eq!(mempool.insert(request(1), TimeMs(0), false), Ok(true));
        assert_eq!(mempool.insert(request(1), TimeMs(0), false), Ok(false));
        assert_eq!(mempool.insert(request(3), TimeMs(0), false), Err(MempoolFull));
        assert_eq!(mempool.batch(10, 100, &BTreeSet::new()), vec![request(2), request(1)]);
        assert_eq!(mempool.batch(10, 1, &BTreeSet::new()), vec![request(2)], "the byte bound");
        let exclude = BTreeSet::from([request(2).digest()]);
        assert_eq!(mempool.batch(10, 100, &exclude), vec![request(1)]);
        mempool.remove(&request(2).digest());
        assert_eq!(mempool.insert(request(3), TimeMs(0), false), Ok(true));
        assert_eq!(mempool.len(), 2);
    }

    #[test]
    fn forwards_a_waiting_request_once_and_never_a_forwarded_one() {
        let mut mempool = Mempool::new(10);
        mempool.insert(request(1), TimeMs(0), false).unwrap();
        mempool.insert(request(2), TimeMs(0), true).unwrap();
        let none = BTreeSet::new();
        assert!(mempool.due_for_forwarding(TimeMs(50), 100, (10, 100), &none).is_empty(), "too young");
        assert_eq!(mempool.due_for_forwarding(TimeMs(100), 100, (10, 100), &none), vec![request(1)]);
        assert!(mempool.due_for_forwarding(TimeMs(500), 100, (10, 100), &none).is_empty(), "once");
    }
}
