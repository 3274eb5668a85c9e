//! The synchronizer: how a replica that is behind catches up, and how it helps peers
//! that are. It owns the blocks being fetched (one peer at a time, the next one after
//! `sync_retry_ms`), the per-peer budget of sync answers, the spacing of answers to a
//! peer behind, and whose turn it is to hear this replica's certificates. `Replica`
//! asks it and acts: the `impl Replica` below answers `BlockRequest`, accepts `Blocks`
//! and `Snapshot`, and sends `Catchup` (`docs/protocol.md` §3.8, §3.9).

use std::collections::BTreeMap;

use super::{Action, Config, Out, Replica};
use crate::bft::ledger::{snapshot_of, snapshot_parts};
use crate::bft::{
    Application, Block, CheckpointCertificate, Digest, Height, PeerMessage, ProtocolError, ReplicaId, Round,
    SnapshotBytes, StableCheckpoint, TimeMs,
};

/// Attempts at fetching one block before giving up on it.
pub const FETCH_ATTEMPTS_MAX: u32 = 32;
/// Sync answers (blocks or a snapshot) one peer may get per second: a tiny
/// request must not buy a large answer without end.
pub const SYNC_ANSWERS_PER_SECOND_MAX: u32 = 64;
/// The window of `SYNC_ANSWERS_PER_SECOND_MAX`.
const SYNC_BUDGET_WINDOW_MS: u64 = 1_000;

/// A block being fetched from peers.
#[derive(Clone, Copy, Debug)]
struct Fetch {
    asked_at: TimeMs,
    peer: ReplicaId,
    /// The round of the certificate that needs it: once decided past it, the fetch is moot.
    needed_for: Round,
    attempts: u32,
}

#[derive(Debug)]
pub(super) struct Synchronizer {
    /// This replica: never asked, never told.
    me: ReplicaId,
    /// The committee's size: peers are taken in turn over it.
    replicas: u32,
    fetches_max: usize,
    retry_ms: u64,
    /// How long a peer behind waits between two answers from this replica.
    answer_spacing_ms: u64,
    status_interval_ms: u64,
    /// Blocks asked for and not received yet, at most `fetches_max`.
    fetching: BTreeMap<Digest, Fetch>,
    /// Per peer: the start of its current one-second window and the sync answers given in it.
    sync_budget: BTreeMap<ReplicaId, (TimeMs, u32)>,
    /// Per peer: when it was last sent an answer for being behind.
    catchup_sent: BTreeMap<ReplicaId, TimeMs>,
    /// When to tell a peer this replica's certificates next, and which peer was told last.
    next_status: (TimeMs, ReplicaId),
}

impl Synchronizer {
    pub fn new(me: ReplicaId, replicas: usize, config: &Config) -> Self {
        Self {
            me,
            replicas: u32::try_from(replicas).expect("a committee size fits u32"),
            fetches_max: config.fetches_max,
            retry_ms: config.sync_retry_ms,
            answer_spacing_ms: config.round_timeout_ms / 2,
            status_interval_ms: config.status_interval_ms,
            fetching: BTreeMap::new(),
            sync_budget: BTreeMap::new(),
            catchup_sent: BTreeMap::new(),
            next_status: (TimeMs(0), me),
        }
    }

    /// The peer after `after` in turn, never this replica.
    pub fn next_peer(&self, after: ReplicaId) -> ReplicaId {
        next_in_turn(self.me, self.replicas, after)
    }

    /// Starts fetching a block this replica does not know; returns the peer to ask
    /// (`hint`, the peer that vouched for it, unless that is this replica), or `None` if
    /// it is fetched already or `fetches_max` blocks are.
    pub fn start_fetch(&mut self, block: Digest, needed_for: Round, hint: ReplicaId, now: TimeMs) -> Option<ReplicaId> {
        if self.fetching.contains_key(&block) || self.fetching.len() >= self.fetches_max {
            return None;
        }
        let peer = if hint == self.me { self.next_peer(hint) } else { hint };
        self.fetching.insert(block, Fetch { asked_at: now, peer, needed_for, attempts: 1 });
        Some(peer)
    }

    /// Gives up on the fetches no longer needed (decided past, the block known, or asked
    /// `FETCH_ATTEMPTS_MAX` times), then moves each one asked `sync_retry_ms` ago or more
    /// to the next peer: returns the blocks to ask for again, and whom.
    pub fn retry_fetches(
        &mut self,
        now: TimeMs,
        tip_round: Round,
        knows: impl Fn(&Digest) -> bool,
    ) -> Vec<(Digest, ReplicaId)> {
        self.fetching.retain(|digest, fetch| {
            fetch.needed_for > tip_round && fetch.attempts < FETCH_ATTEMPTS_MAX && !knows(digest)
        });
        let (me, replicas, retry_ms) = (self.me, self.replicas, self.retry_ms);
        let due = self.fetching.iter_mut().filter(|(_, fetch)| now.0 >= fetch.asked_at.0.saturating_add(retry_ms));
        let mut retried = Vec::new();
        for (digest, fetch) in due {
            fetch.peer = next_in_turn(me, replicas, fetch.peer);
            fetch.attempts += 1;
            fetch.asked_at = now;
            retried.push((*digest, fetch.peer));
        }
        retried
    }

    /// A block arrived: its fetch is over. Returns whether it was being fetched.
    pub fn received(&mut self, block: &Digest) -> bool {
        self.fetching.remove(block).is_some()
    }

    /// Forgets every fetch (a snapshot replaced the state they were for).
    pub fn clear_fetches(&mut self) {
        self.fetching.clear();
    }

    /// The blocks being fetched and whom each was asked last, for debugging.
    pub fn fetching(&self) -> impl Iterator<Item = (&Digest, ReplicaId)> {
        self.fetching.iter().map(|(digest, fetch)| (digest, fetch.peer))
    }

    /// Whether `peer` may get another sync answer in this second (counting this one).
    pub fn within_sync_budget(&mut self, peer: ReplicaId, now: TimeMs) -> bool {
        let (window, used) = self.sync_budget.entry(peer).or_insert((now, 0));
        if now.0 >= window.0.saturating_add(SYNC_BUDGET_WINDOW_MS) {
            *window = now;
            *used = 0;
        }
        *used = used.saturating_add(1);
        *used <= SYNC_ANSWERS_PER_SECOND_MAX
    }

    /// Whether a peer behind may be answered now: at most once per half base round
    /// timeout, so that its repeated timeouts and catch-ups cost little. Counts the answer.
    pub fn may_answer(&mut self, peer: ReplicaId, now: TimeMs) -> bool {
        if self.catchup_sent.get(&peer).is_some_and(|sent| now.0 < sent.0.saturating_add(self.answer_spacing_ms)) {
            return false;
        }
        self.catchup_sent.insert(peer, now);
        true
    }

    /// The peer whose turn it is to hear this replica's certificates, once every
    /// `status_interval_ms` (never, alone in its committee).
    pub fn status_due(&mut self, now: TimeMs) -> Option<ReplicaId> {
        let (due, told_last) = self.next_status;
        if now < due || self.replicas <= 1 {
            return None;
        }
        let peer = self.next_peer(told_last);
        self.next_status = (now.plus(self.status_interval_ms), peer);
        Some(peer)
    }
}

/// The replica after `after` in turn among `replicas`, skipping `me`.
fn next_in_turn(me: ReplicaId, replicas: u32, after: ReplicaId) -> ReplicaId {
    let mut peer = ReplicaId((after.0 + 1) % replicas);
    if peer == me {
        peer = ReplicaId((peer.0 + 1) % replicas);
    }
    peer
}

impl<A: Application> Replica<A> {
    /// Asks a peer for a block a certificate vouches for, unless known or fetched already.
    pub(super) fn fetch(&mut self, digest: Digest, needed_for: Round, hint: ReplicaId, out: &mut Out<A::Output>) {
        if self.ledger.knows(&digest) {
            return;
        }
        if let Some(peer) = self.sync.start_fetch(digest, needed_for, hint, self.now) {
            let height = self.ledger.tip().height;
            out.push(Action::Send { to: peer, message: PeerMessage::BlockRequest { block: digest, height } });
        }
    }

    /// Asks another peer for each block not received in time; gives up on blocks no longer needed.
    pub(super) fn retry_fetches(&mut self, out: &mut Out<A::Output>) {
        let (ledger, tip) = (&self.ledger, self.ledger.tip());
        for (block, peer) in self.sync.retry_fetches(self.now, tip.round, |digest| ledger.knows(digest)) {
            out.push(Action::Send { to: peer, message: PeerMessage::BlockRequest { block, height: tip.height } });
        }
    }

    pub(super) fn on_block_request(
        &mut self,
        from: ReplicaId,
        digest: Digest,
        height: Height,
        out: &mut Out<A::Output>,
    ) {
        if !self.sync.within_sync_budget(from, self.now) {
            // Over budget: ignored, not blamed (an honest replica far behind may ask this much).
            let error = ProtocolError::Unsolicited { what: "sync request over the budget" };
            out.push(Action::Dropped { from, error });
            return;
        }
        if self.ledger.block(&digest).is_some() {
            let blocks = self.ledger.chain_from(&digest, self.config.limits.sync_blocks_max);
            out.push(Action::Send { to: from, message: PeerMessage::Blocks(blocks) });
            return;
        }
        // The block is gone or unknown: a peer far behind needs the stable state instead.
        if let Some(stable) = self.ledger.stable().filter(|stable| stable.certificate.point.height > height) {
            let (certificate, state) = (stable.certificate.clone(), stable.state.clone());
            match snapshot_parts(&state) {
                Ok((_, Some(_))) => {
                    out.push(Action::Send { to: from, message: PeerMessage::Snapshot { certificate, state } })
                }
                _ => out.push(Action::ServeSnapshot { to: from, checkpoint: stable.clone() }),
            }
        }
    }

    pub(super) fn on_blocks(&mut self, from: ReplicaId, blocks: Vec<Block>, out: &mut Out<A::Output>) {
        // Accept only what was asked for, then each accepted block's parent: blocks
        // whose digests a certificate vouches for.
        let mut expected: Option<Digest> = None;
        let mut missing_parent = None;
        let mut certificates = Vec::new();
        for block in blocks {
            let digest = block.digest();
            if !self.sync.received(&digest) && expected != Some(digest) {
                out.push(Action::Dropped { from, error: ProtocolError::Unsolicited { what: "block" } });
                break;
            }
            let (parent, parent_round) = (block.parent.block, block.parent.round);
            certificates.push(block.parent.clone());
            self.ledger.insert(block);
            let needed = parent_round > self.ledger.tip().round && !self.ledger.knows(&parent);
            missing_parent = needed.then_some((parent, parent_round));
            expected = Some(parent);
            if !needed {
                break;
            }
        }
        if let Some((parent, round)) = missing_parent {
            self.fetch(parent, round, from, out);
        }
        // The certificates inside fetched blocks may decide what this replica missed, oldest first.
        for certificate in certificates.iter().rev() {
            self.on_certificate(certificate, from, out);
        }
    }

    pub(super) fn on_snapshot(
        &mut self,
        from: ReplicaId,
        certificate: CheckpointCertificate,
        state: SnapshotBytes,
        out: &mut Out<A::Output>,
    ) {
        if certificate.point.height <= self.ledger.tip().height {
            return;
        }
        let checkpoint = StableCheckpoint { certificate, state };
        if let Err(reason) = self.ledger.restore(checkpoint.clone()) {
            // The certificate signs the head only: a body that does not match it is the sender's lie.
            let error = ProtocolError::Malformed { what: "snapshot", reason: format!("it does not restore: {reason}") };
            out.push(Action::Dropped { from, error });
            return;
        }
        self.sync.clear_fetches();
        // A shell that keeps the body has just been given it to write: the checkpoint kept
        // here, and on disk, is then its head alone (the whole state must not stay in memory).
        let checkpoint = match snapshot_parts(&checkpoint.state) {
            Ok((head, Some(_))) if self.ledger.app().shell_keeps_body() => {
                let headed = StableCheckpoint { certificate: checkpoint.certificate, state: snapshot_of(head, None) };
                self.ledger.set_stable(headed.clone());
                headed
            }
            _ => checkpoint,
        };
        out.push(Action::PersistCheckpoint(checkpoint));
        if let Some(certificate) = self.waiting_certificate.take() {
            self.commit_certified(&certificate, self.id(), out);
        }
    }

    /// Answers a peer that is behind, at most once per half round timeout.
    pub(super) fn answer_catchup(&mut self, to: ReplicaId, out: &mut Out<A::Output>) {
        if self.sync.may_answer(to, self.now) {
            out.push(Action::Send { to, message: self.catchup() });
        }
    }

    /// This replica's highest certificates, for a peer that may be behind.
    pub(super) fn catchup(&self) -> PeerMessage {
        PeerMessage::Catchup {
            high_qc: self.safety.high_qc.clone(),
            timeout_certificate: self.pacemaker.last_tc().cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Event;
    use super::*;
    use crate::ShardId;
    use crate::bft::committee::{Committee, KeyPair};
    use crate::bft::ledger::Ledger;
    use crate::bft::{QuorumCertificate, Request};

    const ME: ReplicaId = ReplicaId(2);

    /// The synchronizer of replica 2 of 4: retries every 500 ms, answers a peer behind
    /// at most every 500 ms (half the round timeout), gossips every 1 000 ms.
    fn synchronizer(fetches_max: usize) -> Synchronizer {
        let config = Config {
            sync_retry_ms: 500,
            round_timeout_ms: 1_000,
            status_interval_ms: 1_000,
            fetches_max,
            ..Config::default()
        };
        Synchronizer::new(ME, 4, &config)
    }

    fn digest(byte: u8) -> Digest {
        Digest([byte; 32])
    }

    fn fetching(sync: &Synchronizer) -> Vec<(Digest, ReplicaId)> {
        sync.fetching().map(|(digest, peer)| (*digest, peer)).collect()
    }

    #[test]
    fn peers_are_taken_round_robin_skipping_this_replica() {
        let sync = synchronizer(8);
        let turns: Vec<u32> = [0, 1, 2, 3].into_iter().map(|after| sync.next_peer(ReplicaId(after)).0).collect();
        assert_eq!(turns, [1, 3, 3, 0]);
    }

    #[test]
    fn a_fetch_asks_the_peer_that_vouched_then_the_next_peer_after_each_retry_interval() {
        let mut sync = synchronizer(8);
        assert_eq!(sync.start_fetch(digest(1), Round(10), ReplicaId(1), TimeMs(0)), Some(ReplicaId(1)));
        let mut asked = Vec::new();
        for now in [499, 500, 999, 1_000, 1_500, 1_600] {
            asked.push(sync.retry_fetches(TimeMs(now), Round(0), |_| false));
        }
        let one = |peer| vec![(digest(1), ReplicaId(peer))];
        assert_eq!(asked, [vec![], one(3), vec![], one(0), one(1), vec![]]);
    }

    #[test]
    fn a_fetch_this_replica_vouched_for_itself_asks_the_next_peer() {
        let mut sync = synchronizer(8);
        assert_eq!(sync.start_fetch(digest(1), Round(10), ME, TimeMs(0)), Some(ReplicaId(3)));
    }

    #[test]
    fn a_fetch_is_dropped_once_the_block_arrives_is_known_or_is_decided_past() {
        let mut sync = synchronizer(8);
        for (byte, needed_for) in [(1, 5), (2, 10), (3, 10)] {
            sync.start_fetch(digest(byte), Round(needed_for), ReplicaId(0), TimeMs(0));
        }
        // The tip reached round 5 (block 1 is moot) and block 2 came some other way.
        assert!(sync.retry_fetches(TimeMs(0), Round(5), |block| *block == digest(2)).is_empty());
        assert_eq!(fetching(&sync), [(digest(3), ReplicaId(0))]);
        assert!(sync.received(&digest(3)));
        assert!(!sync.received(&digest(3)), "its fetch is over: the same block again is unsolicited");
        assert!(sync.retry_fetches(TimeMs(10_000), Round(5), |_| false).is_empty(), "nothing left to ask");
    }

    #[test]
    fn a_fetch_gives_up_after_fetch_attempts_max_requests() {
        let mut sync = synchronizer(8);
        sync.start_fetch(digest(1), Round(10), ReplicaId(0), TimeMs(0));
        let retries: usize =
            (1..=40).map(|tick| sync.retry_fetches(TimeMs(tick * 500), Round(0), |_| false).len()).sum();
        assert_eq!(retries + 1, FETCH_ATTEMPTS_MAX as usize);
        assert!(fetching(&sync).is_empty());
    }

    #[test]
    fn at_most_fetches_max_blocks_are_fetched_at_once_and_each_once() {
        let mut sync = synchronizer(2);
        assert!(sync.start_fetch(digest(1), Round(10), ReplicaId(0), TimeMs(0)).is_some());
        assert_eq!(sync.start_fetch(digest(1), Round(10), ReplicaId(1), TimeMs(0)), None, "fetched already");
        assert!(sync.start_fetch(digest(2), Round(10), ReplicaId(0), TimeMs(0)).is_some());
        assert_eq!(sync.start_fetch(digest(3), Round(10), ReplicaId(0), TimeMs(0)), None, "full");
        sync.received(&digest(1));
        assert!(sync.start_fetch(digest(3), Round(10), ReplicaId(0), TimeMs(0)).is_some());
        sync.clear_fetches();
        assert!(fetching(&sync).is_empty());
    }

    #[test]
    fn sync_answers_are_bounded_per_peer_and_second() {
        let mut sync = synchronizer(8);
        let served = (0..100).filter(|_| sync.within_sync_budget(ReplicaId(0), TimeMs(5))).count();
        assert_eq!(served, SYNC_ANSWERS_PER_SECOND_MAX as usize);
        assert!(sync.within_sync_budget(ReplicaId(1), TimeMs(5)), "another peer has its own budget");
        assert!(!sync.within_sync_budget(ReplicaId(0), TimeMs(1_004)), "the same second");
        assert!(sync.within_sync_budget(ReplicaId(0), TimeMs(1_005)), "a new second");
    }

    #[test]
    fn answers_to_a_peer_behind_are_spaced_by_half_the_round_timeout() {
        let mut sync = synchronizer(8);
        assert!(sync.may_answer(ReplicaId(0), TimeMs(100)));
        assert!(!sync.may_answer(ReplicaId(0), TimeMs(599)));
        assert!(sync.may_answer(ReplicaId(1), TimeMs(599)), "spaced per peer");
        assert!(sync.may_answer(ReplicaId(0), TimeMs(600)));
    }

    #[test]
    fn status_gossip_goes_to_the_next_peer_once_per_interval() {
        let mut sync = synchronizer(8);
        let told: Vec<Option<u32>> =
            [0, 999, 1_000, 2_000, 3_500, 4_000].map(|now| sync.status_due(TimeMs(now)).map(|p| p.0)).into();
        assert_eq!(told, [Some(3), None, Some(0), Some(1), Some(3), None]);
        let mut alone = Synchronizer::new(ReplicaId(0), 1, &Config::default());
        assert_eq!(alone.status_due(TimeMs(0)), None, "no peer to tell");
    }

    /// An application whose body repeats its head; a liar's body does not.
    #[derive(Debug, Default)]
    struct Echo {
        value: Vec<u8>,
        lies: bool,
    }

    impl Application for Echo {
        type Output = ();

        fn execute(&mut self, _height: Height, request: &Request) -> Vec<()> {
            self.value = request.payload().to_vec();
            Vec::new()
        }

        fn state_head(&mut self, _height: Height) -> Vec<u8> {
            self.value.clone()
        }

        fn state_body(&self) -> Option<Vec<u8>> {
            Some(if self.lies { b"a lie".to_vec() } else { self.value.clone() })
        }

        fn restore(&mut self, head: &[u8], body: &[u8]) -> Result<(), String> {
            if head != body {
                return Err("the body is not the one the head vouches for".into());
            }
            self.value = head.to_vec();
            Ok(())
        }
    }

    /// The snapshot at height 1 of a shard that decided one block, from an honest or a lying replica.
    fn snapshot(keys: &[KeyPair], committee: &Committee, lies: bool) -> (CheckpointCertificate, SnapshotBytes) {
        let mut ledger = Ledger::new(Echo { lies, ..Echo::default() }, 10, 1);
        let requests = vec![Request::new(b"state".to_vec())];
        let block = Block { round: Round(1), author: ReplicaId(0), parent: QuorumCertificate::genesis(), requests };
        let digest = block.digest();
        ledger.insert(block);
        let decided = ledger.commit(&digest).expect("the block extends the genesis");
        let (point, state) = decided[0].checkpoint.clone().expect("a checkpoint at every height");
        let sign = |i: usize| (ReplicaId(i as u32), keys[i].sign(&point.signing_bytes(committee)));
        (CheckpointCertificate { point, signatures: (0..3).map(sign).collect() }, state)
    }

    #[test]
    fn a_certified_snapshot_with_a_body_its_head_does_not_vouch_for_is_dropped_and_changes_nothing() {
        let keys: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed(ReplicaId(i), [i as u8 + 1; 32])).collect();
        let committee = Committee::new("test", ShardId(0), keys.iter().map(KeyPair::public).collect());
        let mut replica = Replica::new(committee.clone(), keys[3].clone(), Config::default(), Echo::default());
        let (certificate, lie) = snapshot(&keys, &committee, true);
        let (honest_certificate, truth) = snapshot(&keys, &committee, false);
        assert_eq!(certificate, honest_certificate, "the liar's head is the honest one: only its body differs");
        let deliver = |replica: &mut Replica<Echo>, state: SnapshotBytes| {
            let message = Box::new(PeerMessage::Snapshot { certificate: certificate.clone(), state });
            replica.handle(Event::Message { from: ReplicaId(0), message })
        };

        let actions = deliver(&mut replica, lie);
        let dropped = actions.iter().any(|action| {
            matches!(
                action,
                Action::Dropped { from: ReplicaId(0), error: ProtocolError::Malformed { what: "snapshot", .. } }
            )
        });
        assert!(dropped, "the lie is dropped as the sender's: {actions:?}");
        assert!(!actions.iter().any(|action| matches!(action, Action::PersistCheckpoint(_) | Action::Fatal(_))));
        assert_eq!((replica.tip().height, replica.app().value.as_slice()), (Height(0), b"".as_slice()));

        let actions = deliver(&mut replica, truth);
        assert!(actions.iter().any(|action| matches!(action, Action::PersistCheckpoint(_))), "{actions:?}");
        assert_eq!((replica.tip().height, replica.app().value.as_slice()), (Height(1), b"state".as_slice()));
    }
}
