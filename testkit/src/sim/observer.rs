//! The invariants the simulator checks after every step, from what honest
//! replicas do (never from what they say about themselves):
//! - I3: honest replicas decide the same block at each height, and reach the
//!   same state after each executed request;
//! - a replica never votes for two blocks in one round, restarts included;
//! - an honest replica never sends what another honest replica must reject,
//!   and never halts.

use std::collections::{BTreeMap, BTreeSet};

use shardspace_core::bft::{Digest, Height, ReplicaId, Round};

use shardspace_core::bft::kv::Executed;

#[derive(Debug, Default)]
pub struct Observer {
    /// The block decided at each height, by the first honest replica to decide it.
    decided: BTreeMap<Height, Digest>,
    /// The request and state of each execution index.
    executions: BTreeMap<u64, (Digest, Digest)>,
    /// Each honest replica's vote in each round.
    votes: BTreeMap<(ReplicaId, Round), Digest>,
    /// Requests some honest replica executed.
    pub executed_requests: BTreeSet<Digest>,
    pub violations: Vec<String>,
    /// Messages honest replicas dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Snapshots honest replicas installed from peers (state transfer).
    pub snapshots_installed: u64,
}

impl Observer {
    pub fn decided(&mut self, replica: ReplicaId, height: Height, block: Digest, now: u64) {
        let first = *self.decided.entry(height).or_insert(block);
        if first != block {
            self.violation(
                now,
                format!("I3: {replica} decided {block} at height {}, another replica {first}", height.0),
            );
        }
    }

    pub fn executed(&mut self, replica: ReplicaId, executed: Executed, now: u64) {
        self.executed_requests.insert(executed.request);
        let first = *self.executions.entry(executed.index).or_insert((executed.request, executed.state));
        if first != (executed.request, executed.state) {
            let index = executed.index;
            self.violation(now, format!("I3: {replica}'s execution {index} differs from another replica's"));
        }
    }

    pub fn voted(&mut self, replica: ReplicaId, round: Round, block: Digest, now: u64) {
        let first = *self.votes.entry((replica, round)).or_insert(block);
        if first != block {
            self.violation(now, format!("{replica} voted twice in round {}: {first} and {block}", round.0));
        }
    }

    /// A replica restarted with a wiped disk is a new voter: it forgot its votes.
    pub fn forget_votes(&mut self, replica: ReplicaId) {
        self.votes.retain(|(voter, _), _| *voter != replica);
    }

    pub fn violation(&mut self, now: u64, message: String) {
        self.violations.push(format!("at {now} ms: {message}"));
    }

    pub fn highest_decided(&self) -> Height {
        self.decided.keys().next_back().copied().unwrap_or_default()
    }
}
