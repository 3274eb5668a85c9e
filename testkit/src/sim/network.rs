//! The simulated network: per-link delay, loss, duplication (reordering comes
//! from random delays) and partitions, symmetric or one-way. Every choice comes
//! from the simulation's one seeded RNG.

use std::collections::BTreeSet;

use rand::RngExt;
use rand::rngs::StdRng;
use shardspace_core::bft::ReplicaId;

/// How links behave now.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkFaults {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message arrives twice.
    pub duplication: f64,
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    /// Probability that a message takes up to ten times the longest delay.
    pub straggler: f64,
}

impl LinkFaults {
    pub fn perfect() -> Self {
        Self { loss: 0.0, duplication: 0.0, delay_min_ms: 1, delay_max_ms: 5, straggler: 0.0 }
    }
}

#[derive(Debug)]
pub struct Network {
    pub faults: LinkFaults,
    /// Links that deliver nothing, as (from, to).
    blocked: BTreeSet<(ReplicaId, ReplicaId)>,
}

impl Network {
    pub fn new(faults: LinkFaults) -> Self {
        Self { faults, blocked: BTreeSet::new() }
    }

    /// Cuts `from → to` (one way).
    pub fn block(&mut self, from: ReplicaId, to: ReplicaId) {
        self.blocked.insert((from, to));
    }

    /// Cuts every link between `side` and the others, both ways.
    pub fn isolate(&mut self, side: &[ReplicaId], all: &[ReplicaId]) {
        for a in side {
            for b in all.iter().filter(|b| !side.contains(b)) {
                self.block(*a, *b);
                self.block(*b, *a);
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// The delays after which copies of one message arrive (none if lost).
    pub fn delays(&self, from: ReplicaId, to: ReplicaId, rng: &mut StdRng) -> Vec<u64> {
        if self.blocked.contains(&(from, to)) || rng.random_bool(self.faults.loss) {
            return Vec::new();
        }
        let copies = if rng.random_bool(self.faults.duplication) { 2 } else { 1 };
        (0..copies).map(|_| self.delay(rng)).collect()
    }

    fn delay(&self, rng: &mut StdRng) -> u64 {
        let (min, max) = (self.faults.delay_min_ms, self.faults.delay_max_ms.max(self.faults.delay_min_ms));
        let delay = rng.random_range(min..=max);
        if rng.random_bool(self.faults.straggler) { delay.saturating_mul(rng.random_range(2..=10)) } else { delay }
    }
}
