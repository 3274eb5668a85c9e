//! The checkpoint tracker: this replica's own checkpoints not yet stable (with their
//! snapshots) and the signed checkpoints gathered from every replica. 2f+1 signatures
//! on its own point make that checkpoint stable; 2f+1 on anything else at that height
//! mean this replica's state diverged. `Replica` signs, broadcasts and persists: the
//! `impl Replica` below (`docs/protocol.md` §3.7).

use std::collections::BTreeMap;

use ed25519_dalek::Signature;

use super::{Action, Out, Replica};
use crate::bft::{
    Application, Checkpoint, CheckpointCertificate, CheckpointPoint, Halt, Height, PeerMessage, ReplicaId,
    SnapshotBytes, StableCheckpoint,
};

/// Own checkpoints kept until one at or above them is stable.
const OWN_CHECKPOINTS_MAX: usize = 2;

#[derive(Debug)]
pub(super) struct CheckpointTracker {
    quorum: usize,
    /// How far above the decided tip checkpoints are kept (twice the checkpoint interval).
    horizon_heights: u64,
    /// Checkpoints gathered, by height then signer.
    gathered: BTreeMap<Height, BTreeMap<ReplicaId, Checkpoint>>,
    /// This replica's own checkpoints not yet stable, with their snapshots.
    own: BTreeMap<Height, (CheckpointPoint, SnapshotBytes)>,
}

/// What the checkpoints gathered at one height amount to.
#[derive(Debug)]
pub(super) enum Stabilised {
    /// Not enough signatures either way (or no own point at that height yet).
    Waiting,
    /// 2f+1 signatures on this replica's own point: stable.
    Stable(StableCheckpoint),
    /// 2f+1 signatures on other points: this replica's state is not its peers'.
    Diverged,
}

impl CheckpointTracker {
    pub fn new(quorum: usize, checkpoint_interval: u64) -> Self {
        Self {
            quorum,
            horizon_heights: checkpoint_interval.saturating_mul(2),
            gathered: BTreeMap::new(),
            own: BTreeMap::new(),
        }
    }

    /// Keeps this replica's own point and its snapshot (only the last two).
    pub fn add_own(&mut self, point: CheckpointPoint, state: SnapshotBytes) {
        self.own.insert(point.height, (point, state));
        while self.own.len() > OWN_CHECKPOINTS_MAX {
            self.own.pop_first();
        }
    }

    /// The highest own point not yet stable (said again, as checkpoint messages may be lost).
    pub fn latest_own(&self) -> Option<CheckpointPoint> {
        self.own.values().next_back().map(|(point, _)| *point)
    }

    /// Keeps a verified checkpoint if its height is above the stable one and within the
    /// horizon above the decided tip; returns whether it was kept.
    pub fn gather(&mut self, checkpoint: Checkpoint, stable: Height, tip: Height) -> bool {
        let height = checkpoint.point.height;
        if height <= stable || height.0 > tip.0.saturating_add(self.horizon_heights) {
            return false;
        }
        self.gathered.entry(height).or_default().insert(checkpoint.author, checkpoint);
        true
    }

    /// Whether the checkpoint at `height` is stable now; once it is, everything at or
    /// below it is forgotten.
    pub fn stabilise(&mut self, height: Height) -> Stabilised {
        let (Some((point, state)), Some(gathered)) = (self.own.get(&height), self.gathered.get(&height)) else {
            return Stabilised::Waiting;
        };
        let signatures: Vec<(ReplicaId, Signature)> =
            gathered.values().filter(|c| c.point == *point).map(|c| (c.author, c.signature)).collect();
        if signatures.len() < self.quorum {
            let disagreeing = gathered.len() - signatures.len();
            return if disagreeing >= self.quorum { Stabilised::Diverged } else { Stabilised::Waiting };
        }
        let checkpoint =
            StableCheckpoint { certificate: CheckpointCertificate { point: *point, signatures }, state: state.clone() };
        self.gathered = self.gathered.split_off(&height.next());
        self.own = self.own.split_off(&height.next());
        Stabilised::Stable(checkpoint)
    }
}

impl<A: Application> Replica<A> {
    /// Signs and broadcasts this replica's point at a checkpoint height it just executed.
    pub(super) fn checkpoint(&mut self, point: CheckpointPoint, state: SnapshotBytes, out: &mut Out<A::Output>) {
        let checkpoint = self.sign_checkpoint(point);
        self.checkpoints.add_own(point, state);
        out.push(Action::Broadcast(PeerMessage::Checkpoint(checkpoint.clone())));
        self.on_checkpoint(checkpoint, out);
    }

    pub(super) fn on_checkpoint(&mut self, checkpoint: Checkpoint, out: &mut Out<A::Output>) {
        let height = checkpoint.point.height;
        let stable = self.ledger.stable().map_or(Height(0), |stable| stable.certificate.point.height);
        if self.checkpoints.gather(checkpoint, stable, self.ledger.tip().height) {
            self.try_stabilise(height, out);
        }
    }

    /// Makes the checkpoint at `height` stable once 2f+1 replicas sign this replica's own
    /// point; halts if 2f+1 sign something else.
    fn try_stabilise(&mut self, height: Height, out: &mut Out<A::Output>) {
        match self.checkpoints.stabilise(height) {
            Stabilised::Waiting => {}
            Stabilised::Stable(checkpoint) => {
                self.ledger.set_stable(checkpoint.clone());
                out.push(Action::PersistCheckpoint(checkpoint));
            }
            Stabilised::Diverged => {
                self.halted = true;
                out.push(Action::Fatal(Halt::StateDiverged { height }));
            }
        }
    }

    pub(super) fn sign_checkpoint(&self, point: CheckpointPoint) -> Checkpoint {
        let signature = self.keys.sign(&point.signing_bytes(&self.committee));
        Checkpoint { point, author: self.id(), signature }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Event, Persisted, test_committee};
    use super::*;
    use crate::bft::kv::KvApp;
    use crate::bft::{Block, Committee, Digest, KeyPair, QuorumCertificate, Request, Round, TimeMs};

    // n = 4, f = 1: a quorum is 2f+1 = 3.

    fn point(height: u64, state: u8) -> CheckpointPoint {
        CheckpointPoint {
            height: Height(height),
            block: Digest([1; 32]),
            round: Round(height),
            state: Digest([state; 32]),
        }
    }

    fn signed(keys: &[KeyPair], committee: &Committee, signer: usize, point: CheckpointPoint) -> Checkpoint {
        let signature = keys[signer].sign(&point.signing_bytes(committee));
        Checkpoint { point, author: ReplicaId(signer as u32), signature }
    }

    fn snapshot(byte: u8) -> SnapshotBytes {
        SnapshotBytes::from(vec![byte; 3])
    }

    /// Gathers each signer's checkpoint (the tip at 4, nothing stable) and what each one makes of height 4.
    fn gather_all(tracker: &mut CheckpointTracker, checkpoints: Vec<Checkpoint>) -> Vec<Stabilised> {
        let gather = |checkpoint| {
            assert!(tracker.gather(checkpoint, Height(0), Height(4)));
            tracker.stabilise(Height(4))
        };
        checkpoints.into_iter().map(gather).collect()
    }

    #[test]
    fn a_checkpoint_is_stable_at_2f_plus_1_signatures_on_this_replicas_own_point() {
        let (keys, committee) = test_committee(4);
        let mut tracker = CheckpointTracker::new(committee.quorum(), 4);
        tracker.add_own(point(4, 7), snapshot(7));
        let outcomes = gather_all(&mut tracker, [0, 1, 3].map(|i| signed(&keys, &committee, i, point(4, 7))).into());
        let [Stabilised::Waiting, Stabilised::Waiting, Stabilised::Stable(stable)] = outcomes.as_slice() else {
            panic!("stable at the third signature: {outcomes:?}")
        };
        assert_eq!(stable.certificate.point, point(4, 7));
        let signers: Vec<ReplicaId> = stable.certificate.signatures.iter().map(|(signer, _)| *signer).collect();
        assert_eq!(signers, [ReplicaId(0), ReplicaId(1), ReplicaId(3)]);
        assert_eq!(stable.certificate.verify(&committee), Ok(()), "a certificate any peer accepts");
        assert_eq!(stable.state, snapshot(7));
        // Everything at or below a stable checkpoint is forgotten.
        assert_eq!(tracker.latest_own(), None);
        assert!(matches!(tracker.stabilise(Height(4)), Stabilised::Waiting));
    }

    #[test]
    fn signatures_gathered_before_this_replica_reaches_the_height_count_once_it_does() {
        let (keys, committee) = test_committee(4);
        let mut tracker = CheckpointTracker::new(committee.quorum(), 4);
        let outcomes = gather_all(&mut tracker, [0, 1, 3].map(|i| signed(&keys, &committee, i, point(4, 7))).into());
        assert!(outcomes.iter().all(|outcome| matches!(outcome, Stabilised::Waiting)), "no own point yet");
        tracker.add_own(point(4, 7), snapshot(7));
        assert!(matches!(tracker.stabilise(Height(4)), Stabilised::Stable(_)));
    }

    #[test]
    fn the_state_diverged_when_2f_plus_1_sign_another_point() {
        let (keys, committee) = test_committee(4);
        let mut tracker = CheckpointTracker::new(committee.quorum(), 4);
        tracker.add_own(point(4, 7), snapshot(7));
        let mut checkpoints = vec![signed(&keys, &committee, 2, point(4, 7))];
        checkpoints.extend([0, 1, 3].map(|i| signed(&keys, &committee, i, point(4, 8))));
        let outcomes = gather_all(&mut tracker, checkpoints);
        let diverged: Vec<bool> = outcomes.iter().map(|outcome| matches!(outcome, Stabilised::Diverged)).collect();
        assert_eq!(diverged, [false, false, false, true], "f disagreeing, or 2f, is not enough");
    }

    #[test]
    fn checkpoints_are_kept_only_above_the_stable_height_and_up_to_twice_the_interval_above_the_tip() {
        let (keys, committee) = test_committee(4);
        let mut tracker = CheckpointTracker::new(committee.quorum(), 4);
        let kept: Vec<bool> = [4, 5, 18, 19]
            .map(|height| tracker.gather(signed(&keys, &committee, 0, point(height, 7)), Height(4), Height(10)))
            .into();
        assert_eq!(kept, [false, true, true, false]);
    }

    #[test]
    fn only_the_last_two_own_points_are_kept() {
        let (keys, committee) = test_committee(4);
        let mut tracker = CheckpointTracker::new(committee.quorum(), 4);
        for height in [4, 8, 12] {
            tracker.add_own(point(height, 7), snapshot(7));
        }
        assert_eq!(tracker.latest_own(), Some(point(12, 7)));
        let outcomes = gather_all(&mut tracker, [0, 1, 3].map(|i| signed(&keys, &committee, i, point(4, 7))).into());
        assert!(outcomes.iter().all(|outcome| matches!(outcome, Stabilised::Waiting)), "the point at 4 was dropped");
    }

    /// Replica 3, restarted from a disk holding one decided block, with a checkpoint at every
    /// height; and its own point at height 1, which it says again on its first tick.
    fn replica_at_a_checkpoint(keys: &[KeyPair], committee: &Committee) -> (Replica<KvApp>, CheckpointPoint) {
        let requests = vec![Request::new(b"k=v".to_vec())];
        let block = Block { round: Round(1), author: ReplicaId(1), parent: QuorumCertificate::genesis(), requests };
        let persisted = Persisted { decided: vec![block], ..Persisted::default() };
        let config = Config { checkpoint_interval: 1, ..Config::default() };
        let mut replica = Replica::recover(committee.clone(), keys[3].clone(), config, KvApp::default(), persisted)
            .expect("one block after the genesis replays");
        let said = replica.handle(Event::Tick(TimeMs(0)));
        let own = said.iter().find_map(|action| match action {
            Action::Broadcast(PeerMessage::Checkpoint(checkpoint)) => Some(checkpoint.point),
            _ => None,
        });
        (replica, own.expect("its own point, not stable yet, is said again"))
    }

    #[test]
    fn a_replica_persists_a_checkpoint_2f_plus_1_peers_sign_and_halts_if_they_sign_another_state() {
        let (keys, committee) = test_committee(4);
        let deliver = |replica: &mut Replica<KvApp>, point: CheckpointPoint| -> Vec<Vec<Action<_>>> {
            let message = |i| Box::new(PeerMessage::Checkpoint(signed(&keys, &committee, i, point)));
            (0..3).map(|i| replica.handle(Event::Message { from: ReplicaId(i as u32), message: message(i) })).collect()
        };

        let (mut replica, own) = replica_at_a_checkpoint(&keys, &committee);
        let steps = deliver(&mut replica, own);
        let persisted = |actions: &Vec<Action<_>>| actions.iter().any(|a| matches!(a, Action::PersistCheckpoint(_)));
        assert_eq!(steps.iter().map(persisted).collect::<Vec<_>>(), [false, false, true], "{steps:?}");

        let (mut replica, own) = replica_at_a_checkpoint(&keys, &committee);
        let steps = deliver(&mut replica, CheckpointPoint { state: Digest([9; 32]), ..own });
        let halted = |actions: &Vec<Action<_>>| {
            actions.iter().any(|a| matches!(a, Action::Fatal(Halt::StateDiverged { height: Height(1) })))
        };
        assert_eq!(steps.iter().map(halted).collect::<Vec<_>>(), [false, false, true], "{steps:?}");
        assert!(replica.is_halted());
        assert!(replica.handle(Event::Tick(TimeMs(5_000))).is_empty(), "a halted replica does nothing");
    }
}
