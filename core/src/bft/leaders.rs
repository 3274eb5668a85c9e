//! Who leads a round. A proposal that extends the certificate of the round just before
//! (the common case) is led by reputation: among the replicas that proposed or voted in
//! the last `ACTIVITY_ROUNDS` rounds, as the last `REPUTATION_WINDOW` blocks of the chain
//! it extends tell, in turn by round. A replica that is down or cut off signs no
//! certificate and proposes no block, so it drops out within a few rounds, whether rounds
//! succeed or fail; one that comes back and votes earns its turns again. A proposal
//! justified by a timeout certificate (a round failed) is led round-robin.
//!
//! Every honest replica computes the same leader for the same proposal: the chain it
//! extends is named by digests, and a block's digest binds its author and the signers
//! of the certificate it carries (`Block::digest`), so no copy of a block can tell
//! another story about who was active. See docs/protocol.md §3.11.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::messages::Block;
use super::types::{Digest, ReplicaId, Round};

/// Blocks of the chain whose authors and voters are the candidates for the next round.
/// Long enough that an active replica is rarely missing from all of it (each certificate
/// holds any 2f+1 of the votes), short enough that a replica that stopped drops out soon.
pub const REPUTATION_WINDOW: usize = 6;
/// How recent a proposal or vote must be to count, in rounds before the one being led.
/// With every replica active the leaders go round in turn, so each authored a block in the
/// last n rounds; a replica that stopped is out `ACTIVITY_ROUNDS` rounds after its last
/// vote, even while rounds fail and no block is added.
pub const ACTIVITY_ROUNDS: u64 = 4;

/// What one block says about who was active: its author, and the signers of the
/// certificate it carries (both bound by its digest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub block: Digest,
    pub round: Round,
    pub parent: Digest,
    pub parent_round: Round,
    pub author: ReplicaId,
    pub signers: Vec<ReplicaId>,
}

impl Activity {
    /// The activity of `body`, whose digest is `block`.
    pub fn of(block: Digest, body: &Block) -> Self {
        Self {
            block,
            round: body.round,
            parent: body.parent.block,
            parent_round: body.parent.round,
            author: body.author,
            signers: body.parent.signers(),
        }
    }
}

/// The leader of `round` round-robin over a committee of `size`.
pub fn round_robin(round: Round, size: usize) -> ReplicaId {
    let size = u64::try_from(size.max(1)).unwrap_or(u64::MAX);
    ReplicaId(u32::try_from(round.0 % size).unwrap_or(u32::MAX))
}

/// The leader of `round` for a proposal that extends `window` (the chain's last blocks,
/// newest first; shorter only where the chain starts): the replicas active in it before
/// `round` (`active_in`), in id order, take the rounds in turn; if they are fewer than
/// f+1, those `seen_in` the window; if those are too, round-robin over the committee.
pub fn by_reputation(round: Round, window: &[Activity], size: usize) -> ReplicaId {
    // Fewer than f+1 candidates may all be faulty (a Byzantine leader alone in the recent
    // rounds would lead every round): then everyone the window saw, else everyone.
    let enough = (size.saturating_sub(1) / 3) + 1;
    let active = Some(active_in(round, window))
        .filter(|active| active.len() >= enough)
        .or_else(|| Some(seen_in(window)).filter(|seen| seen.len() >= enough));
    let Some(active) = active else { return round_robin(round, size) };
    let turn = usize::try_from(round.0 % active.len() as u64).unwrap_or(0);
    active.into_iter().nth(turn).unwrap_or_else(|| round_robin(round, size))
}

/// The replicas that proposed a block of `window` (its first `REPUTATION_WINDOW` blocks) or
/// signed the certificate one carries, however long ago: a membership that does not change
/// from one round to the next (S-BAC spreads its submitters over it).
pub fn seen_in(window: &[Activity]) -> BTreeSet<ReplicaId> {
    let window = window.iter().take(REPUTATION_WINDOW);
    window.flat_map(|activity| activity.signers.iter().copied().chain([activity.author])).collect()
}

/// The replicas that proposed a block of `window` (its first `REPUTATION_WINDOW` blocks),
/// or signed the certificate one carries, in the `ACTIVITY_ROUNDS` rounds before `round`.
pub fn active_in(round: Round, window: &[Activity]) -> BTreeSet<ReplicaId> {
    let recent = |of: Round| of.0.saturating_add(ACTIVITY_ROUNDS) >= round.0;
    let mut active = BTreeSet::new();
    for activity in window.iter().take(REPUTATION_WINDOW) {
        if recent(activity.round) {
            active.insert(activity.author);
        }
        if recent(activity.parent_round) {
            active.extend(activity.signers.iter().copied());
        }
    }
    active
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of round 9 whose certificate is of round 8 (recent for rounds up to 12).
    fn activity(author: u32, signers: &[u32]) -> Activity {
        Activity {
            block: Digest::default(),
            round: Round(9),
            parent: Digest::default(),
            parent_round: Round(8),
            author: ReplicaId(author),
            signers: signers.iter().copied().map(ReplicaId).collect(),
        }
    }

    fn leaders(window: &[Activity], rounds: std::ops::Range<u64>) -> Vec<u32> {
        rounds.map(|round| by_reputation(Round(round), window, 4).0).collect()
    }

    #[test]
    fn with_everyone_active_the_leaders_take_their_turns_by_round() {
        let window = [activity(1, &[0, 1, 2]), activity(0, &[3, 0, 1])];
        assert_eq!(leaders(&window, 8..12), [0, 1, 2, 3]);
    }

    #[test]
    fn a_replica_that_neither_proposed_nor_voted_in_the_window_never_leads() {
        let window: Vec<Activity> = (0..REPUTATION_WINDOW as u32).map(|i| activity(i % 3, &[0, 1, 2])).collect();
        assert!(!leaders(&window, 9..13).contains(&3));
        // Active again once it appears in the window, as a voter only.
        let mut back = window.clone();
        back[0] = activity(0, &[0, 3, 1]);
        assert!(leaders(&back, 9..13).contains(&3));
    }

    #[test]
    fn activity_older_than_the_window_does_not_count() {
        let mut window: Vec<Activity> = (0..REPUTATION_WINDOW).map(|_| activity(0, &[0, 1, 2])).collect();
        window.push(activity(3, &[3, 1, 2]));
        assert!(!leaders(&window, 9..13).contains(&3));
    }

    #[test]
    fn a_replica_silent_for_activity_rounds_is_out_even_while_no_block_is_added() {
        // Replica 3 last voted for the block of round 8, and the chain has grown by one
        // block since (rounds failed): by round 13 its vote is too old to count.
        let chain = [
            Activity { round: Round(12), parent_round: Round(9), ..activity(0, &[0, 1, 2]) },
            Activity { round: Round(9), parent_round: Round(8), ..activity(1, &[1, 2, 3]) },
        ];
        assert!(active_in(Round(12), &chain).contains(&ReplicaId(3)));
        assert_eq!(active_in(Round(13), &chain), [0, 1, 2].map(ReplicaId).into());
        // With nobody recent any more, round-robin (a replica back leads again in turn).
        assert!(active_in(Round(17), &chain).is_empty());
        assert_eq!(by_reputation(Round(19), &chain, 4), ReplicaId(3));
    }

    #[test]
    fn fewer_than_f_plus_1_recent_replicas_never_lead_alone() {
        // Only replica 2 authored a recent block; the certificate it carries is old.
        let chain = [Activity { round: Round(20), parent_round: Round(9), ..activity(2, &[0, 1, 3]) }];
        assert_eq!(active_in(Round(21), &chain), [ReplicaId(2)].into());
        // One replica may be the faulty one: everyone the window saw takes turns instead.
        assert_eq!(leaders(&chain, 21..25), [1, 2, 3, 0]);
    }

    #[test]
    fn without_any_history_the_leaders_rotate_round_robin() {
        assert_eq!(leaders(&[], 4..9), [0, 1, 2, 3, 0]);
        assert_eq!(round_robin(Round(7), 4), ReplicaId(3));
    }
}
