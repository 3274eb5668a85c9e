//! Simulated time and the events scheduled on it: taken in time order, and
//! events at the same time in the order they were scheduled, so that a run is a
//! function of its seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

#[derive(Debug)]
pub struct Timeline<E> {
    now: u64,
    /// (time, sequence) of every pending event.
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, E>,
    next_sequence: u64,
}

impl<E> Default for Timeline<E> {
    fn default() -> Self {
        Self { now: 0, queue: BinaryHeap::new(), events: BTreeMap::new(), next_sequence: 0 }
    }
}

impl<E> Timeline<E> {
    /// Simulated milliseconds since the start.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Schedules `event` at `at` (never in the past).
    pub fn schedule(&mut self, at: u64, event: E) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.queue.push(Reverse((at.max(self.now), sequence)));
        self.events.insert(sequence, event);
    }

    /// The next event due by `until`, with the clock moved to it; `None`, with the
    /// clock moved to `until`, when there is none.
    pub fn next_until(&mut self, until: u64) -> Option<E> {
        while let Some(Reverse((at, sequence))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            if let Some(event) = self.events.remove(&sequence) {
                return Some(event);
            }
        }
        self.now = self.now.max(until);
        None
    }
}
