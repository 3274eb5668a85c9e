//! What a replica does with what executing the log produced: its vote goes to every
//! replica of every concerned shard and is gathered with theirs into the certificates
//! of a `Decide`; a decision answers the clients waiting for it. Who submits a
//! `Prepare` or `Decide` (the attempt's designated replica at once, the others after
//! `standby_ms`, at least `STANDBY_MS`, if it is still needed), and the pass-on of
//! attempts that take long.

use super::{
    Frame, Output, PASS_ON_AFTER_MS, PASS_ON_MAX, STANDBY_MAX, STANDBY_MS, STANDBY_MS_MAX, ShardReplica, Unsealed,
};
use crate::bft::TimeMs;
use crate::bft::{Event, PeerMessage, ReplicaId, Request};
use crate::ids::{ShardId, TxId};
use crate::sbac::{Attempt, PreparedCertificate, ShardOutput, ShardRequest, SignedVote};

/// How long a stand-in holds a request back, given the shard's recent time from a vote
/// to its decision: twice that, within `STANDBY_MS..=STANDBY_MS_MAX`.
pub fn standby_ms(decision_ms: u64) -> u64 {
    decision_ms.saturating_mul(2).clamp(STANDBY_MS, STANDBY_MS_MAX)
}

/// The running average of the time from a vote to its decision, with one more sample
/// (weight 1/8: a burst of slow decisions moves it within a few dozen).
pub fn with_decision_time(average_ms: u64, sample_ms: u64) -> u64 {
    (average_ms.saturating_mul(7).saturating_add(sample_ms)) / 8
}

/// The replica of an attempt's shard that submits its `Prepare` and `Decide` at once
/// (the others stand by): among `active`, the replicas active in the shard's last decided
/// blocks (`Replica::active_replicas`), so that a replica that is down is not waited on,
/// the one with the highest weight for this transaction and attempt (rendezvous hashing).
/// Replicas whose views of `active` differ by one replica for a moment (their tips differ
/// by a block) then disagree only on the attempts that replica would win, a share of
/// 1/n, where an index modulo the active count reshuffled nearly all of them: those may
/// both submit (the log takes the first) or both stand by (`standby_ms` later).
pub fn designated_submitter(tx: &TxId, attempt: Attempt, active: &[ReplicaId]) -> Option<ReplicaId> {
    let mut key = [0u8; 8];
    key.copy_from_slice(&tx.0[..8]);
    let key = u64::from_be_bytes(key) ^ u64::from(attempt.0).rotate_left(32);
    active.iter().copied().max_by_key(|replica| mix(key ^ u64::from(replica.0).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

/// SplitMix64's finalizer: every bit of the weight depends on every bit of its input.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl ShardReplica {
    /// Acts on what executing the log produced.
    pub(super) fn on_output(&mut self, output: ShardOutput) {
        match output {
            ShardOutput::Vote { vote, concerned } => {
                let (tx, attempt) = (vote.tx, vote.attempt);
                self.envelopes.remove(&(tx, vote.envelope));
                if concerned.as_slice() == [self.own.shard] {
                    return; // decided with its vote (`ShardApp::decide_alone`): nothing to gather
                }
                let decided = self.app().tx_view(&tx).is_some_and(|view| view.committed.is_some());
                if !decided {
                    self.undecided.entry((tx, attempt)).or_insert(self.now);
                }
                self.unsealed.push(Unsealed::Vote { body: vote, concerned, gather: true });
            }
            ShardOutput::Decided { tx, attempt, committed } => {
                // Voted here, since then (not taken up at a restart, when the time is 0).
                if let Some(since) = self.undecided.remove(&(tx, attempt)).filter(|since| *since > TimeMs(0)) {
                    let sample = self.now.0.saturating_sub(since.0);
                    self.decision_ms = with_decision_time(self.decision_ms, sample);
                }
                self.votes.forget(tx, attempt);
                if committed {
                    self.counters.commits += 1;
                } else {
                    self.counters.aborts += 1;
                }
                let clients = self.waiters.take_outcome(tx, attempt, committed);
                if clients.is_empty() {
                    return;
                }
                let body = self.app().answer_attempt(tx, attempt);
                if self.stop_if_unreadable() {
                    return;
                }
                self.unsealed.push(Unsealed::Answer { clients, body, read: false });
            }
            ShardOutput::Refused { .. } => {}
        }
    }

    /// Gathers this replica's own vote with the others for the attempt; submits the
    /// `Decide` once they are complete.
    pub(super) fn gather(&mut self, vote: SignedVote, concerned: Vec<ShardId>) {
        let mut complete = self.votes.expect(vote.tx, vote.attempt, vote.envelope, concerned);
        match self.votes.add(vote) {
            Ok(Some(certificates)) => complete = Some(certificates),
            Ok(None) => {}
            Err(error) => self.outputs.push(Output::Dropped { from: self.own, error }),
        }
        if let Some(certificates) = complete {
            self.decide(certificates);
        }
    }

    /// Sends this replica's recorded vote on an attempt again, and gathers votes for its
    /// decision again: after a restart (outputs are not delivered twice) or lost messages,
    /// this is what lets an undecided attempt be decided.
    pub(super) fn vote_again(&mut self, tx: TxId, attempt: Attempt) {
        let Some((body, concerned)) = self.app().recorded_vote(tx, attempt) else { return };
        self.counters.votes_again += 1;
        // Gathered once sealed, unless decided here by then (nothing to gather).
        self.unsealed.push(Unsealed::Vote { body, concerned, gather: true });
    }

    /// Certificates of every concerned shard (or one abort): order the `Decide`.
    pub(super) fn decide(&mut self, certificates: Vec<PreparedCertificate>) {
        let Some(first) = certificates.first() else { return };
        let (tx, attempt) = (first.tx, first.attempt);
        self.submit_or_stand_by(tx, attempt, ShardRequest::Decide { tx, attempt, certificates });
    }

    /// The designated replica of an attempt submits at once; the others hold the request back
    /// and submit it only if the attempt has not moved on by then.
    pub(super) fn submit_or_stand_by(&mut self, tx: TxId, attempt: Attempt, request: ShardRequest) {
        if designated_submitter(&tx, attempt, &self.replica.active_replicas()) == Some(self.own.replica) {
            return self.submit(&request);
        }
        if self.standby.len() >= STANDBY_MAX {
            self.standby.pop_front();
        }
        self.standby.push_back((self.now.plus(standby_ms(self.decision_ms)), request));
    }

    /// Submits held-back requests that fell due and are still needed.
    pub(super) fn submit_due(&mut self) {
        while self.standby.front().is_some_and(|(due, _)| *due <= self.now) {
            let Some((_, request)) = self.standby.pop_front() else { break };
            let app = self.app();
            let needed = match &request {
                ShardRequest::Prepare { verdict, attempt, .. } => app.attempt_view(&verdict.tx, *attempt).is_none(),
                ShardRequest::Decide { tx, attempt, .. } => {
                    app.attempt_view(tx, *attempt).is_none_or(|view| view.decision.is_none())
                }
            };
            if needed && !self.replica.is_behind() {
                self.counters.stand_in_submissions += 1;
                self.submit(&request);
            }
        }
    }

    /// Orders an S-BAC request. It also goes at once to every replica of the shard: a request
    /// waits in a mempool for its replica's turn as leader before it is forwarded
    /// (`request_forward_after_ms`), which suits a flood of client requests, not the few
    /// steps of a commit a client waits on; and a request in every mempool keeps every
    /// replica's round timer armed, so a replica whose view of the rounds lags cannot hold
    /// it alone while the others sit idle.
    fn submit(&mut self, request: &ShardRequest) {
        let payload = postcard::to_stdvec(request).expect("encoding into memory cannot fail");
        let request = Request::new(payload);
        self.broadcast(PeerMessage::Requests(vec![request.clone()]));
        self.step(Event::Submit(request));
    }

    /// Attempts undecided for a while: their envelope goes to every replica of every
    /// concerned shard (one that voted answers with its vote again; one that never saw it
    /// checks and prepares it), and this replica's own vote goes again.
    pub(super) fn pass_on(&mut self) {
        let now = self.now;
        let due: Vec<(TxId, Attempt)> = self
            .undecided
            .iter()
            .filter(|(_, since)| now.0 >= since.0.saturating_add(PASS_ON_AFTER_MS))
            .map(|(key, _)| *key)
            .take(PASS_ON_MAX)
            .collect();
        for (tx, attempt) in due {
            let app = self.app();
            let pending = app.state().undecided.contains(&(tx, attempt)).then(|| app.prepared(&tx, attempt));
            let Some(Some((envelope, concerned))) = pending else {
                self.undecided.remove(&(tx, attempt));
                continue;
            };
            self.counters.passed_on += 1;
            self.outputs.push(Output::Multicast { shards: concerned, frame: Frame::Envelope { envelope, attempt } });
            self.undecided.insert((tx, attempt), now);
            self.vote_again(tx, attempt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bft::{Committee, Config, KeyPair, Replica, ReplicaId};
    use crate::sbac::{ShardApp, ShardReplicaConfig};
    use crate::{Limits, ShardId};

    #[test]
    fn the_designated_submitter_is_always_an_active_replica_and_each_of_them_takes_a_share() {
        let active = [ReplicaId(0), ReplicaId(1), ReplicaId(3)];
        let mut shares = std::collections::BTreeMap::new();
        for n in 0u32..300 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&n.to_be_bytes());
            let designated = designated_submitter(&TxId(id), Attempt(1), &active).unwrap();
            *shares.entry(designated).or_insert(0) += 1;
        }
        assert_eq!(shares.keys().copied().collect::<Vec<_>>(), active, "replica 2 is down: never designated");
        assert!(shares.values().all(|share| (70..=130).contains(share)), "{shares:?}");
        assert_eq!(designated_submitter(&TxId([0; 32]), Attempt(1), &[]), None);
    }

    /// Two replicas whose views of the active replicas differ by one (their tips a block
    /// apart) agree on every attempt that replica would not win.
    #[test]
    fn views_that_differ_by_one_active_replica_disagree_only_on_that_replicas_share() {
        let all: Vec<ReplicaId> = (0..4).map(ReplicaId).collect();
        let without_2 = [ReplicaId(0), ReplicaId(1), ReplicaId(3)];
        let (mut disagree, mut won_by_2) = (0, 0);
        for n in 0u32..1_000 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&n.to_be_bytes());
            let (tx, attempt) = (TxId(id), Attempt(1 + n % 3));
            let full = designated_submitter(&tx, attempt, &all);
            if full == Some(ReplicaId(2)) {
                won_by_2 += 1;
            }
            if full != designated_submitter(&tx, attempt, &without_2) {
                disagree += 1;
                assert_eq!(full, Some(ReplicaId(2)), "only the attempts replica 2 wins move");
            }
        }
        assert_eq!(disagree, won_by_2);
        assert!((150..=350).contains(&disagree), "about a quarter: {disagree}");
    }

    #[test]
    fn stand_ins_wait_twice_the_recent_time_to_a_decision_within_their_bounds() {
        assert_eq!(standby_ms(0), STANDBY_MS, "a quick shard: the floor");
        let mut average = 0;
        for _ in 0..64 {
            average = with_decision_time(average, 1_500);
        }
        assert!((1_400..=1_500).contains(&average), "{average}");
        assert_eq!(standby_ms(average), average * 2, "an overloaded shard: twice its decision time");
        for _ in 0..64 {
            average = with_decision_time(average, 60_000);
        }
        assert_eq!(standby_ms(average), STANDBY_MS_MAX, "never past the cap");
        for _ in 0..64 {
            average = with_decision_time(average, 20);
        }
        assert_eq!(standby_ms(average), STANDBY_MS, "and back to the floor once quick again");
    }

    #[test]
    fn past_standby_max_the_oldest_held_request_goes_and_the_newest_are_kept() {
        let keys: Vec<KeyPair> = (0..4).map(|r| KeyPair::from_seed(ReplicaId(r), [r as u8 + 1; 32])).collect();
        let committee = Committee::new("standby", ShardId(0), keys.iter().map(KeyPair::public).collect());
        let app = ShardApp::new(ShardId(0), vec![committee.clone()], keys[0].clone(), Limits::default());
        let replica = Replica::new(committee.clone(), keys[0].clone(), Config::default(), app);
        let limits = Limits::default();
        let config = ShardReplicaConfig { committees: vec![committee], limits, contracts: Default::default() };
        let mut replica = ShardReplica::new(replica, config);
        // Decisions of attempts another replica submits: replica 0 holds each back. What it
        // holds is a copy of what the designated replica submits, so dropping the oldest
        // costs only that attempt's stand-in, never the attempt (pass-on still runs it).
        let tx_of = |n: u32| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&n.to_be_bytes());
            TxId(id)
        };
        let held: Vec<TxId> = (0u32..)
            .map(tx_of)
            .filter(|tx| designated_submitter(tx, Attempt(1), &replica.replica.active_replicas()) != Some(ReplicaId(0)))
            .take(STANDBY_MAX + 1)
            .collect();
        for tx in &held {
            let decide = ShardRequest::Decide { tx: *tx, attempt: Attempt(1), certificates: vec![] };
            replica.submit_or_stand_by(*tx, Attempt(1), decide);
        }
        assert_eq!(replica.standby_len(), STANDBY_MAX);
        let tx_held = |entry: Option<&(crate::bft::TimeMs, ShardRequest)>| match entry {
            Some((_, ShardRequest::Decide { tx, .. })) => *tx,
            other => panic!("expected a held decision, got {other:?}"),
        };
        assert_eq!(tx_held(replica.standby.front()), held[1], "the oldest went");
        assert_eq!(tx_held(replica.standby.back()), held[STANDBY_MAX], "the newest is kept");
    }
}
