//! Gathering signed statements into certificates: votes into a `QuorumCertificate`
//! (kept by the next round's leader) and timeouts into a `TimeoutCertificate` (kept by
//! the pacemaker). Pure bookkeeping: signatures were checked before anything gets here,
//! and whether a round is still worth gathering is the caller's call.

use std::collections::BTreeMap;

use ed25519_dalek::Signature;

use crate::bft::{Digest, QuorumCertificate, ReplicaId, Round, Timeout, TimeoutCertificate, Vote};

/// Votes gathered by the leader of the next round, by round then voter.
#[derive(Debug)]
pub(super) struct VoteAggregator {
    quorum: usize,
    /// One vote per voter and round, the first: a second one (for another block) is ignored.
    votes: BTreeMap<Round, BTreeMap<ReplicaId, (Digest, Signature)>>,
}

impl VoteAggregator {
    pub fn new(quorum: usize) -> Self {
        Self { quorum, votes: BTreeMap::new() }
    }

    /// Adds a vote; returns the certificate when this vote is the one that completes a
    /// quorum for its block (once: later votes for the same block add nothing).
    pub fn add(&mut self, vote: Vote) -> Option<QuorumCertificate> {
        let voters = self.votes.entry(vote.round).or_default();
        if voters.contains_key(&vote.voter) {
            return None;
        }
        voters.insert(vote.voter, (vote.block, vote.signature));
        let votes: Vec<(ReplicaId, Signature)> = voters
            .iter()
            .filter(|(_, (block, _))| *block == vote.block)
            .map(|(voter, (_, signature))| (*voter, *signature))
            .collect();
        (votes.len() == self.quorum).then_some(QuorumCertificate { block: vote.block, round: vote.round, votes })
    }

    /// Drops the votes of rounds before `round`.
    pub fn forget_before(&mut self, round: Round) {
        self.votes.retain(|vote_round, _| *vote_round >= round);
    }
}

/// Timeouts gathered, by round then author.
#[derive(Debug, Default)]
pub(super) struct TimeoutAggregator {
    /// The latest timeout of each author: one author counts once however often it resends.
    timeouts: BTreeMap<Round, BTreeMap<ReplicaId, Timeout>>,
}

impl TimeoutAggregator {
    /// Adds a timeout; returns how many distinct replicas have timed out in its round.
    pub fn add(&mut self, timeout: Timeout) -> usize {
        let gathered = self.timeouts.entry(timeout.round).or_default();
        gathered.insert(timeout.author, timeout);
        gathered.len()
    }

    /// The certificate of what was gathered for `round`, with the highest certificate
    /// reported. The caller asks once a quorum is gathered (empty rounds give an empty one).
    pub fn certificate(&self, round: Round) -> TimeoutCertificate {
        let gathered =
            self.timeouts.get(&round).map(|timeouts| timeouts.values().collect::<Vec<_>>()).unwrap_or_default();
        let high_qc = gathered.iter().map(|timeout| &timeout.high_qc).max_by_key(|qc| qc.round).cloned();
        let timeouts =
            gathered.iter().map(|timeout| (timeout.author, timeout.high_qc.round, timeout.signature)).collect();
        TimeoutCertificate { round, timeouts, high_qc: high_qc.unwrap_or_else(QuorumCertificate::genesis) }
    }

    /// Drops the timeouts of rounds before `round`.
    pub fn forget_before(&mut self, round: Round) {
        self.timeouts.retain(|timeout_round, _| *timeout_round >= round);
    }

    /// How many timeouts each round has, for debugging.
    pub fn counts(&self) -> impl Iterator<Item = (Round, usize)> + '_ {
        self.timeouts.iter().map(|(round, gathered)| (*round, gathered.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(byte: u8) -> Signature {
        Signature::from_bytes(&[byte; 64])
    }

    fn vote(voter: u32, block: u8, round: u64) -> Vote {
        Vote { block: Digest([block; 32]), round: Round(round), voter: ReplicaId(voter), signature: signature(block) }
    }

    fn qc(round: u64) -> QuorumCertificate {
        QuorumCertificate { block: Digest([round as u8; 32]), round: Round(round), votes: Vec::new() }
    }

    fn timeout(author: u32, round: u64, high_qc_round: u64) -> Timeout {
        Timeout { round: Round(round), high_qc: qc(high_qc_round), author: ReplicaId(author), signature: signature(7) }
    }

    // n = 4, f = 1: a quorum is 2f+1 = 3.

    #[test]
    fn a_quorum_certificate_forms_at_the_quorum_and_only_once() {
        let mut votes = VoteAggregator::new(3);
        assert_eq!(votes.add(vote(0, 1, 5)), None);
        assert_eq!(votes.add(vote(1, 1, 5)), None, "2f votes are not a quorum");
        let certificate = votes.add(vote(2, 1, 5)).expect("2f+1 votes for one block certify it");
        assert_eq!((certificate.block, certificate.round), (Digest([1; 32]), Round(5)));
        let voters: Vec<ReplicaId> = certificate.votes.iter().map(|(voter, _)| *voter).collect();
        assert_eq!(voters, [ReplicaId(0), ReplicaId(1), ReplicaId(2)]);
        assert_eq!(votes.add(vote(3, 1, 5)), None, "the certificate was formed already");
    }

    #[test]
    fn a_second_vote_of_one_replica_counts_for_nothing_even_for_another_block() {
        let mut votes = VoteAggregator::new(3);
        assert_eq!(votes.add(vote(0, 1, 5)), None);
        assert_eq!(votes.add(vote(0, 1, 5)), None, "the same vote again");
        assert_eq!(votes.add(vote(0, 2, 5)), None, "an equivocation: the first vote stands");
        assert_eq!(votes.add(vote(1, 2, 5)), None);
        assert_eq!(votes.add(vote(2, 2, 5)), None, "replica 0's vote for block 2 was not counted");
        let certificate = votes.add(vote(3, 2, 5)).expect("three distinct voters for block 2");
        assert!(certificate.votes.iter().all(|(voter, _)| *voter != ReplicaId(0)));
    }

    #[test]
    fn votes_for_other_blocks_or_rounds_do_not_add_up() {
        let mut votes = VoteAggregator::new(3);
        assert_eq!(votes.add(vote(0, 1, 5)), None);
        assert_eq!(votes.add(vote(1, 2, 5)), None);
        assert_eq!(votes.add(vote(2, 1, 6)), None);
        assert_eq!(votes.add(vote(3, 3, 5)), None);
    }

    #[test]
    fn forgotten_rounds_start_over() {
        let mut votes = VoteAggregator::new(3);
        votes.add(vote(0, 1, 5));
        votes.add(vote(1, 1, 5));
        votes.forget_before(Round(5));
        assert!(votes.add(vote(2, 1, 5)).is_some(), "round 5 is kept");
        votes.add(vote(0, 1, 6));
        votes.add(vote(1, 1, 6));
        votes.forget_before(Round(7));
        assert_eq!(votes.add(vote(2, 1, 6)), None, "round 6 was forgotten: one vote of three");
    }

    #[test]
    fn timeouts_count_distinct_authors_per_round() {
        let mut timeouts = TimeoutAggregator::default();
        assert_eq!(timeouts.add(timeout(0, 4, 1)), 1);
        assert_eq!(timeouts.add(timeout(0, 4, 1)), 1, "a resent timeout counts once");
        assert_eq!(timeouts.add(timeout(1, 4, 2)), 2);
        assert_eq!(timeouts.add(timeout(2, 5, 2)), 1, "another round");
        assert_eq!(timeouts.add(timeout(2, 4, 3)), 3);
        assert_eq!(timeouts.counts().collect::<Vec<_>>(), [(Round(4), 3), (Round(5), 1)]);
    }

    #[test]
    fn a_timeout_certificate_holds_every_author_and_the_highest_certificate_reported() {
        let mut timeouts = TimeoutAggregator::default();
        timeouts.add(timeout(2, 4, 1));
        timeouts.add(timeout(0, 4, 3));
        timeouts.add(timeout(1, 4, 2));
        timeouts.add(timeout(1, 4, 1)); // replaces 1's earlier timeout: it counts once, as sent last
        let certificate = timeouts.certificate(Round(4));
        assert_eq!(certificate.round, Round(4));
        let signers: Vec<(ReplicaId, Round)> = certificate.timeouts.iter().map(|(a, r, _)| (*a, *r)).collect();
        assert_eq!(signers, [(ReplicaId(0), Round(3)), (ReplicaId(1), Round(1)), (ReplicaId(2), Round(1))]);
        assert_eq!(certificate.high_qc, qc(3));
        assert_eq!(certificate.high_qc_round(), Round(3), "what `verify` checks: the QC is the highest reported");
    }

    #[test]
    fn forgotten_timeouts_are_gone() {
        let mut timeouts = TimeoutAggregator::default();
        timeouts.add(timeout(0, 4, 1));
        timeouts.add(timeout(0, 5, 1));
        timeouts.forget_before(Round(5));
        assert_eq!(timeouts.counts().collect::<Vec<_>>(), [(Round(5), 1)]);
        assert!(timeouts.certificate(Round(4)).timeouts.is_empty());
        assert_eq!(timeouts.add(timeout(1, 4, 1)), 1, "round 4 starts over");
    }
}
