//! The safety rules of 2-chain HotStuff (Jolteon, DiemBFT v4): when a replica
//! may vote or time out. The state here is persisted before any vote or
//! timeout leaves, so that a restarted replica never votes twice in a round.

use serde::{Deserialize, Serialize};

use super::messages::{QuorumCertificate, TimeoutCertificate};
use super::types::Round;

/// What a replica must remember across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyState {
    /// The highest round in which this replica voted or timed out: it never votes at or below it.
    pub last_voted_round: Round,
    /// The highest certificate this replica knows (its lock): it times out only with it.
    pub high_qc: QuorumCertificate,
}

impl Default for SafetyState {
    fn default() -> Self {
        Self { last_voted_round: Round(0), high_qc: QuorumCertificate::genesis() }
    }
}

impl SafetyState {
    /// Records a certificate seen anywhere; returns whether it is the new highest.
    pub fn observe(&mut self, qc: &QuorumCertificate) -> bool {
        if qc.round > self.high_qc.round {
            self.high_qc = qc.clone();
            return true;
        }
        false
    }

    /// May this replica vote for a block of `round` whose parent is certified in
    /// `parent_round`? Only once per round, and only extending the previous
    /// round's certificate or, after a timeout certificate, a certificate at
    /// least as high as any its signers held (which is what makes a decided
    /// block's certificate impossible to skip).
    pub fn safe_to_vote(&self, round: Round, parent_round: Round, tc: Option<&TimeoutCertificate>) -> bool {
        if round <= self.last_voted_round {
            return false;
        }
        let extends_previous = round == parent_round.next();
        let justified_by_timeout = tc.is_some_and(|tc| round == tc.round.next() && parent_round >= tc.high_qc_round());
        extends_previous || justified_by_timeout
    }

    /// Records a vote or timeout in `round`: no vote at or below it afterwards.
    pub fn record(&mut self, round: Round) {
        self.last_voted_round = self.last_voted_round.max(round);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bft::types::Digest;

    fn qc(round: u64) -> QuorumCertificate {
        QuorumCertificate { block: Digest([round as u8; 32]), round: Round(round), votes: Vec::new() }
    }

    fn tc(round: u64, reported: &[u64]) -> TimeoutCertificate {
        let signature = ed25519_dalek::Signature::from_bytes(&[0; 64]);
        let timeouts =
            reported.iter().enumerate().map(|(i, r)| (crate::bft::ReplicaId(i as u32), Round(*r), signature));
        let high = reported.iter().copied().max().unwrap_or(0);
        TimeoutCertificate { round: Round(round), timeouts: timeouts.collect(), high_qc: qc(high) }
    }

    #[test]
    fn votes_once_per_round_and_only_forward() {
        let mut state = SafetyState::default();
        assert!(state.safe_to_vote(Round(1), Round(0), None));
        state.record(Round(1));
        assert!(!state.safe_to_vote(Round(1), Round(0), None), "a second vote in round 1");
        assert!(state.safe_to_vote(Round(2), Round(1), None));
        assert!(!state.safe_to_vote(Round(3), Round(1), None), "skips a round without a timeout certificate");
    }

    #[test]
    fn after_a_timeout_certificate_the_parent_must_be_at_least_as_high_as_any_signer_held() {
        let state = SafetyState { last_voted_round: Round(4), high_qc: qc(3) };
        let certificate = tc(5, &[3, 2, 3]);
        assert!(state.safe_to_vote(Round(6), Round(3), Some(&certificate)));
        assert!(!state.safe_to_vote(Round(6), Round(2), Some(&certificate)), "extends a lower certificate");
        assert!(!state.safe_to_vote(Round(7), Round(3), Some(&certificate)), "the certificate is not for round 6");
    }

    #[test]
    fn observe_keeps_the_highest_certificate() {
        let mut state = SafetyState::default();
        assert!(state.observe(&qc(3)));
        assert!(!state.observe(&qc(2)));
        assert_eq!(state.high_qc.round, Round(3));
    }
}
