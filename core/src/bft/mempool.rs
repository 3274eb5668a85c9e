//! Requests waiting to be proposed, in arrival order, bounded. A request stays
//! until it is executed: a block that never commits does not lose it.

use std::collections::{BTreeMap, BTreeSet};

use super::types::{Digest, Request, TimeMs};

/// The mempool is full: the request was refused (the client may retry later).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolFull;

#[derive(Debug)]
struct Entry {
    request: Request,
    /// Arrival number: the key in `order`.
    sequence: u64,
    /// When this replica last forwarded it to the leaders.
    forwarded_at: Option<TimeMs>,
}

#[derive(Debug)]
pub struct Mempool {
    entries: BTreeMap<Digest, Entry>,
    /// Arrival order: sequence → digest.
    order: BTreeMap<u64, Digest>,
    next_sequence: u64,
    capacity: usize,
}

impl Mempool {
    pub fn new(capacity: usize) -> Self {
        Self { entries: BTreeMap::new(), order: BTreeMap::new(), next_sequence: 0, capacity }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a request; `Ok(false)` if it was already here.
    pub fn insert(&mut self, request: Request) -> Result<bool, MempoolFull> {
        let digest = request.digest();
        if self.entries.contains_key(&digest) {
            return Ok(false);
        }
        if self.entries.len() >= self.capacity {
            return Err(MempoolFull);
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.order.insert(sequence, digest);
        self.entries.insert(digest, Entry { request, sequence, forwarded_at: None });
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
            if batch.len() >= max || bytes + entry.request.payload.len() > bytes_max {
                break;
            }
            bytes += entry.request.payload.len();
            batch.push(entry.request.clone());
        }
        batch
    }

    /// Up to `max` requests (and `bytes_max` bytes) not forwarded since `now - resend_ms`, marked as forwarded now.
    pub fn due_for_forwarding(
        &mut self,
        now: TimeMs,
        resend_ms: u64,
        (max, bytes_max): (usize, usize),
        exclude: &BTreeSet<Digest>,
    ) -> Vec<Request> {
        let mut due = Vec::new();
        let mut bytes = 0;
        for digest in self.order.values() {
            let Some(entry) = self.entries.get_mut(digest) else { continue };
            if due.len() >= max || bytes + entry.request.payload.len() > bytes_max {
                break;
            }
            let stale = entry.forwarded_at.is_none_or(|at| now.0 >= at.0.saturating_add(resend_ms));
            if stale && !exclude.contains(digest) {
                entry.forwarded_at = Some(now);
                bytes += entry.request.payload.len();
                due.push(entry.request.clone());
            }
        }
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
        assert_eq!(mempool.insert(request(2)), Ok(true));
        assert_eq!(mempool.insert(request(1)), Ok(true));
        assert_eq!(mempool.insert(request(1)), Ok(false));
        assert_eq!(mempool.insert(request(3)), Err(MempoolFull));
        assert_eq!(mempool.batch(10, 100, &BTreeSet::new()), vec![request(2), request(1)]);
        assert_eq!(mempool.batch(10, 1, &BTreeSet::new()), vec![request(2)], "the byte bound");
        let exclude = BTreeSet::from([request(2).digest()]);
        assert_eq!(mempool.batch(10, 100, &exclude), vec![request(1)]);
        mempool.remove(&request(2).digest());
        assert_eq!(mempool.insert(request(3)), Ok(true));
        assert_eq!(mempool.len(), 2);
    }

    #[test]
    fn forwards_each_request_once_per_resend_interval() {
        let mut mempool = Mempool::new(10);
        mempool.insert(request(1)).unwrap();
        let none = BTreeSet::new();
        assert_eq!(mempool.due_for_forwarding(TimeMs(0), 100, (10, 100), &none).len(), 1);
        assert!(mempool.due_for_forwarding(TimeMs(50), 100, (10, 100), &none).is_empty());
        assert_eq!(mempool.due_for_forwarding(TimeMs(100), 100, (10, 100), &none).len(), 1);
    }
}
