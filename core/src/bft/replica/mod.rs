//! `Replica`: one replica of a shard as a pure state machine. The shell feeds
//! it `Event`s (peer messages, client requests, clock ticks) and carries out the
//! returned `Action`s in order: persist actions complete before the sends that
//! follow them. No IO, no clock: time comes in with `Event::Tick`.
//!
//! The protocol is 2-chain HotStuff (Jolteon / DiemBFT v4) with leaders chosen by
//! reputation (`leaders.rs`): see `docs/protocol.md`.
//!
//! This module keeps the proposal, vote and commit flow; the pieces that own state
//! of their own are beside it: `pacemaker` (rounds, leaders, timeouts), `aggregator`
//! (votes into quorum certificates, timeouts into timeout certificates),
//! `synchronizer` (fetching blocks and snapshots, catch-up) and `checkpoints`.

mod aggregator;
mod checkpoints;
mod pacemaker;
mod synchronizer;

pub use synchronizer::{FETCH_ATTEMPTS_MAX, SYNC_ANSWERS_PER_SECOND_MAX};

use std::collections::BTreeSet;

use super::app::Application;
use super::committee::{Committee, KeyPair};
use super::error::{Halt, ProtocolError};
use super::leaders::{by_reputation, round_robin, seen_in};
use super::ledger::{CommitError, Ledger, Resume, StableCheckpoint, Tip};
use super::mempool::Mempool;
use super::messages::{Block, MessageLimits, PeerMessage, Proposal, QuorumCertificate, VerifiedCertificates, Vote};
use super::safety::SafetyState;
use super::types::{Digest, Height, ReplicaId, Request, Round, TimeMs};
use aggregator::VoteAggregator;
use checkpoints::CheckpointTracker;
use pacemaker::Pacemaker;
use synchronizer::Synchronizer;

/// Tuning and bounds of one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The first round timeout. It doubles with each round this replica gives up on and
    /// halves with each certificate of its round (progress), within the
    /// two bounds below: a shard whose rounds succeed waits `round_timeout_min_ms` for a
    /// leader that fails.
    pub round_timeout_ms: u64,
    /// The shortest round timeout.
    pub round_timeout_min_ms: u64,
    /// The longest round timeout.
    pub round_timeout_max_ms: u64,
    /// Requests waiting to be proposed; more are refused.
    pub mempool_requests_max: usize,
    /// A checkpoint every this many decided heights.
    pub checkpoint_interval: u64,
    /// Heights over which a request executes at most once.
    pub dedup_window_heights: u64,
    /// How long a client's request waits for this replica's own turn as leader
    /// before it is forwarded (once) to the leaders of the moment.
    pub request_forward_after_ms: u64,
    /// How long to wait for a block before asking another peer.
    pub sync_retry_ms: u64,
    /// Blocks being fetched at once.
    pub fetches_max: usize,
    /// How far ahead of its round a replica keeps votes and timeouts.
    pub future_rounds_max: u64,
    /// How often a replica tells one peer (in turn) its highest certificates, so
    /// that a replica which missed the last decisions of a quiet shard catches up.
    pub status_interval_ms: u64,
    /// A leader proposes a block that is not full this long after entering its round at
    /// the earliest (0: at once). Each round costs every replica signatures and a durable
    /// write whatever it carries, so under load fewer, fuller blocks leave more of the
    /// machine to the transactions (issue 6).
    pub propose_after_ms: u64,
    pub limits: MessageLimits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            round_timeout_ms: 1_000,
            round_timeout_min_ms: 250,
            round_timeout_max_ms: 30_000,
            mempool_requests_max: 100_000,
            checkpoint_interval: 1_000,
            dedup_window_heights: 1_000,
            request_forward_after_ms: 500,
            sync_retry_ms: 500,
            fetches_max: 64,
            future_rounds_max: 1_000,
            status_interval_ms: 1_000,
            propose_after_ms: 0,
            limits: MessageLimits::default(),
        }
    }
}

/// What happens to a replica.
#[derive(Clone, Debug)]
pub enum Event {
    /// A message from a peer of this shard (`from` is the authenticated sender).
    Message { from: ReplicaId, message: Box<PeerMessage> },
    /// A client request to order.
    Submit(Request),
    /// Client requests to order, taken in one step (one proposal check for the lot).
    SubmitMany(Vec<Request>),
    /// The clock moved.
    Tick(TimeMs),
}

/// What the shell must do, in order.
#[derive(Clone, Debug)]
pub enum Action<O> {
    Send {
        to: ReplicaId,
        message: PeerMessage,
    },
    /// To every other replica of the shard.
    Broadcast(PeerMessage),
    /// Make the safety state durable before carrying out the next action.
    PersistSafety(SafetyState),
    /// Store a block before voting for it: a certified block must survive its
    /// voters' crashes, or nobody could ever execute it. Blocks at or below
    /// the round of a later `PersistDecided` may be dropped unless decided.
    PersistBlock(Block),
    /// Append a decided block to the durable log.
    PersistDecided {
        height: Height,
        block: Block,
    },
    /// Store a stable checkpoint; decided blocks at or below its height may go.
    PersistCheckpoint(StableCheckpoint),
    /// Send the peer this checkpoint with its body, which the shell keeps (the application's
    /// `state_body` is `None`): as `PeerMessage::Snapshot`.
    ServeSnapshot {
        to: ReplicaId,
        checkpoint: StableCheckpoint,
    },
    /// An output of the application, for the shell.
    Deliver(O),
    /// The mempool is full: tell the client to come back later.
    Refused(Digest),
    /// A peer's message was dropped (for logs and counters).
    Dropped {
        from: ReplicaId,
        error: ProtocolError,
    },
    /// The decided log cannot go on (more than f faulty replicas): stop.
    Fatal(Halt),
}

/// What a restarted replica reads back from its disk.
#[derive(Clone, Debug, Default)]
pub struct Persisted {
    pub safety: SafetyState,
    pub checkpoint: Option<StableCheckpoint>,
    /// Decided blocks above the checkpoint, in height order.
    pub decided: Vec<Block>,
    /// Blocks stored before voting, not (yet) decided.
    pub undecided: Vec<Block>,
    /// The state saved at the last decided block, by a shell that keeps the application's
    /// body: taken up as it is, instead of restoring the checkpoint and replaying `decided`.
    pub resume: Option<Resume>,
}

#[derive(Debug)]
pub struct Replica<A: Application> {
    committee: Committee,
    keys: KeyPair,
    config: Config,
    ledger: Ledger<A>,
    /// Persisted before any vote or timeout leaves.
    safety: SafetyState,
    /// The round, its leader and its timer.
    pacemaker: Pacemaker,
    now: TimeMs,
    /// The last round this replica proposed in.
    proposed: Round,
    /// This replica's latest vote, for observers (a vote to itself never leaves as a message).
    last_vote: Option<(Round, Digest)>,
    /// Votes gathered as the next round's leader.
    votes: VoteAggregator,
    /// Rounds in which a proposal's block was stored: one per round, so that an
    /// equivocating leader cannot fill memory (certified blocks still arrive by sync).
    proposal_rounds: BTreeSet<Round>,
    mempool: Mempool,
    /// Own checkpoints and the signatures gathered on them.
    checkpoints: CheckpointTracker,
    /// Blocks being fetched, and the answers to peers behind.
    sync: Synchronizer,
    /// The highest certificate whose block or parent is still being fetched.
    waiting_certificate: Option<QuorumCertificate>,
    /// A proposal whose leader cannot be checked yet (a block of the chain it extends is
    /// being fetched): taken up again after each event. Only the latest is kept.
    pending_proposal: Option<(ReplicaId, Proposal)>,
    /// Certificates already verified (each proposal, timeout and catch-up carries one).
    verified: VerifiedCertificates,
    /// Set by a fork or a diverged state: the replica no longer acts.
    halted: bool,
}

type Out<O> = Vec<Action<O>>;

/// A replica whose decided tip is more than this many rounds below the highest certificate
/// it has seen is catching up (`Replica::is_behind`): a shard that runs decides two rounds
/// behind its certificates, and one whose rounds fail makes no new certificates.
const BEHIND_ROUNDS: u64 = 8;

/// Certificates remembered as verified.
const VERIFIED_CERTIFICATES_MAX: usize = 256;

impl<A: Application> Replica<A> {
    /// A replica with an empty disk.
    pub fn new(committee: Committee, keys: KeyPair, config: Config, app: A) -> Self {
        Self::recover(committee, keys, config, app, Persisted::default()).expect("an empty disk always recovers")
    }

    /// A replica restarted from what it persisted: the state saved at its last decided
    /// height if its shell keeps one, else the checkpoint, then the decided blocks replayed.
    pub fn recover(
        committee: Committee,
        keys: KeyPair,
        config: Config,
        app: A,
        persisted: Persisted,
    ) -> Result<Self, String> {
        let mut ledger = Ledger::new(app, config.dedup_window_heights, config.checkpoint_interval);
        let mut checkpoints = CheckpointTracker::new(committee.quorum(), config.checkpoint_interval);
        let (checkpoint, decided) = (persisted.checkpoint, persisted.decided);
        let replayed = match persisted.resume {
            Some(resume) => {
                ledger
                    .resume(checkpoint, resume, decided)
                    .map_err(|error| format!("the state saved at the last decided height does not resume: {error}"))?;
                Vec::new()
            }
            None => {
                if let Some(checkpoint) = checkpoint {
                    ledger
                        .restore(checkpoint)
                        .map_err(|error| format!("the persisted checkpoint does not restore: {error}"))?;
                }
                decided
            }
        };
        for block in replayed {
            let digest = block.digest();
            ledger.insert(block);
            let decided = ledger
                .commit(&digest)
                .map_err(|error| format!("the persisted decided log does not replay: {error:?}"))?;
            // Checkpoints replayed here may not be stable yet: keep them to sign again.
            for (point, state) in decided.into_iter().filter_map(|decision| decision.checkpoint) {
                checkpoints.add_own(point, state);
            }
        }
        for block in persisted.undecided {
            ledger.insert(block);
        }
        let safety = persisted.safety;
        // Rejoin the round it was in, not the next one: rounds advance only on
        // certificates (or f+1 timeouts), and a replica alone in a later round
        // could not help its peers form the timeout certificate they wait for.
        // It cannot vote there again (its last vote is persisted), but it can time out.
        let round = safety.high_qc.round.next().max(safety.last_voted_round);
        Ok(Self {
            mempool: Mempool::new(config.mempool_requests_max),
            pacemaker: Pacemaker::new(committee.clone(), &config, round),
            votes: VoteAggregator::new(committee.quorum()),
            sync: Synchronizer::new(keys.id, committee.size(), &config),
            checkpoints,
            proposed: safety.last_voted_round,
            committee,
            keys,
            ledger,
            safety,
            now: TimeMs(0),
            last_vote: None,
            proposal_rounds: BTreeSet::new(),
            waiting_certificate: None,
            pending_proposal: None,
            verified: VerifiedCertificates::new(VERIFIED_CERTIFICATES_MAX),
            halted: false,
            config,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn id(&self) -> ReplicaId {
        self.keys.id
    }

    pub fn round(&self) -> Round {
        self.pacemaker.round()
    }

    pub fn tip(&self) -> Tip {
        self.ledger.tip()
    }

    /// The last checkpoint that 2f+1 replicas signed, if any.
    pub fn stable(&self) -> Option<&StableCheckpoint> {
        self.ledger.stable()
    }

    pub fn app(&self) -> &A {
        self.ledger.app()
    }

    /// The requests executed at `height`, while it is in the de-duplication window (saved
    /// with each decided block by a shell that resumes without replaying).
    pub fn executed_at(&self, height: Height) -> Option<&[Digest]> {
        self.ledger.executed_at(height)
    }

    /// The whole de-duplication window (what a state transfer replaced it with).
    pub fn executed_window(&self) -> Vec<(Height, Vec<Digest>)> {
        self.ledger.executed_window()
    }

    /// For the shell's housekeeping of the application (taking its changes to save): what
    /// it does must not change the replicated state.
    pub fn app_mut(&mut self) -> &mut A {
        self.ledger.app_mut()
    }

    pub fn safety(&self) -> &SafetyState {
        &self.safety
    }

    /// Whether this replica is catching up: its decided tip is `BEHIND_ROUNDS` below the
    /// highest certificate it has seen (after a pause, a restart or a partition). What it
    /// would do from its stale view of the log (S-BAC's stand-ins and pass-on) waits. A
    /// heuristic: it also holds at every replica of a shard that certifies rounds but
    /// decides none (certificates of rounds not in a row), so nothing the protocol needs
    /// may wait on it (votes gated on it deadlocked the simulator at height 0).
    pub fn is_behind(&self) -> bool {
        self.safety.high_qc.round.0 > self.ledger.tip().round.0.saturating_add(BEHIND_ROUNDS)
    }

    pub fn is_halted(&self) -> bool {
        self.halted
    }

    /// This replica's latest vote (round and block), if it voted since it started.
    pub fn last_vote(&self) -> Option<(Round, Digest)> {
        self.last_vote
    }

    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }

    /// Timer and certificate state, for debugging.
    pub fn debug_state(&self) -> String {
        format!(
            "deadline {:?} own_timeout {} last_tc {:?} proposed {} fetching {:?} waiting {:?} timeouts {:?} tip {:?}",
            self.pacemaker.deadline().map(|d| d.0),
            self.pacemaker.has_timed_out(),
            self.pacemaker.last_tc().map(|tc| tc.round.0),
            self.proposed.0,
            self.sync.fetching().map(|(d, peer)| (d.to_string(), peer)).collect::<Vec<_>>(),
            self.waiting_certificate.as_ref().map(|qc| (
                qc.round.0,
                qc.block.to_string(),
                self.ledger.block(&qc.block).map(|b| (b.round.0, b.parent.round.0, b.parent.block.to_string()))
            )),
            self.pacemaker.timeout_counts().map(|(round, count)| (round.0, count)).collect::<Vec<_>>(),
            self.ledger.tip()
        )
    }

    /// The decided block at `height`, if still kept.
    pub fn decided_at(&self, height: Height) -> Option<&Block> {
        self.ledger.decided_at(height)
    }

    /// Feeds one event; returns what the shell must do, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Action<A::Output>> {
        let mut out = Vec::new();
        if self.halted {
            return out;
        }
        match event {
            Event::Tick(now) => self.on_tick(now, &mut out),
            Event::Submit(request) => self.on_submit(request, &mut out),
            Event::SubmitMany(requests) => requests.into_iter().for_each(|request| self.on_submit(request, &mut out)),
            Event::Message { from, message } => {
                if !self.committee.contains(from) {
                    out.push(Action::Dropped { from, error: ProtocolError::UnknownReplica { replica: from } });
                } else if let Some(error) = self.stale(&message) {
                    // Cheap checks first: a stale snapshot is not worth hashing.
                    out.push(Action::Dropped { from, error });
                } else if let Err(error) = message.verify(&self.committee, &self.config.limits, &mut self.verified) {
                    out.push(Action::Dropped { from, error });
                } else {
                    self.on_message(from, *message, &mut out);
                }
            }
        }
        if !self.halted {
            self.after_event(&mut out);
        }
        out
    }

    /// A message whose verification would be wasted, known without checking signatures.
    fn stale(&self, message: &PeerMessage) -> Option<ProtocolError> {
        match message {
            PeerMessage::Snapshot { certificate, .. } if certificate.point.height <= self.ledger.tip().height => {
                Some(ProtocolError::Unsolicited { what: "snapshot at or below the decided height" })
            }
            _ => None,
        }
    }

    fn on_message(&mut self, from: ReplicaId, message: PeerMessage, out: &mut Out<A::Output>) {
        match message {
            PeerMessage::Proposal(proposal) => self.on_proposal(from, proposal, out),
            PeerMessage::Vote(vote) => self.on_vote(from, vote, out),
            PeerMessage::Timeout(timeout) => self.on_timeout(from, timeout, out),
            PeerMessage::Requests(requests) => requests.into_iter().for_each(|request| self.admit(request)),
            PeerMessage::Catchup { high_qc, timeout_certificate } => {
                let behind = high_qc.round < self.safety.high_qc.round;
                self.on_certificate(&high_qc, from, out);
                if let Some(certificate) = timeout_certificate {
                    self.on_timeout_certificate(certificate, from, out);
                }
                if behind {
                    self.answer_catchup(from, out);
                }
            }
            PeerMessage::BlockRequest { block, height } => self.on_block_request(from, block, height, out),
            PeerMessage::Blocks(blocks) => self.on_blocks(from, blocks, out),
            PeerMessage::Checkpoint(checkpoint) => self.on_checkpoint(checkpoint, out),
            PeerMessage::Snapshot { certificate, state } => self.on_snapshot(from, certificate, state, out),
        }
    }

    // ---- requests and proposals ------------------------------------------------------------

    fn on_submit(&mut self, request: Request, out: &mut Out<A::Output>) {
        let digest = request.digest();
        let too_large = request.payload().len() > self.config.limits.request_bytes_max;
        if too_large || (!self.ledger.was_executed(&digest) && self.mempool.insert(request, self.now, false).is_err()) {
            out.push(Action::Refused(digest));
        }
    }

    /// A request forwarded by a peer: kept unless already executed, or the mempool is half full
    /// (the other half is for this replica's own clients, whom a faulty peer cannot crowd out).
    fn admit(&mut self, request: Request) {
        let room = self.mempool.len() < self.config.mempool_requests_max / 2;
        if room
            && !self.ledger.was_executed(&request.digest())
            && request.payload().len() <= self.config.limits.request_bytes_max
        {
            let _ = self.mempool.insert(request, self.now, true);
        }
    }

    /// Whether this replica knows of anything still to order.
    fn has_work(&self) -> bool {
        !self.mempool.is_empty() || self.ledger.has_undecided_requests(&self.safety.high_qc.block)
    }

    /// Moves the clock without acting on it (timeouts wait for `Event::Tick`): the shell
    /// calls it before each event, so that rounds are timed closer than the tick.
    pub fn advance_clock(&mut self, now: TimeMs) {
        self.now = self.now.max(now);
    }

    /// When this replica, as leader, will propose if nothing else happens first: the shell
    /// ticks it then (`propose_after_ms`).
    pub fn propose_due(&self) -> Option<TimeMs> {
        let round = self.pacemaker.round();
        let waiting = self.config.propose_after_ms > 0
            && self.current_leader() == Some(self.id())
            && self.proposed < round
            && self.safety.last_voted_round < round
            && (self.has_work() || self.ledger.has_requests_near(&self.safety.high_qc.block));
        waiting.then(|| self.pacemaker.round_entered().plus(self.config.propose_after_ms))
    }

    /// As leader of the current round, proposes once, if there is work and a justification.
    fn maybe_propose(&mut self, out: &mut Out<A::Output>) {
        let round = self.pacemaker.round();
        // Never twice in a round, and not in a round this replica already voted or timed out in
        // (after a restart, `last_voted_round` says so).
        let spent = self.proposed >= round || self.safety.last_voted_round >= round;
        let work = self.has_work() || self.ledger.has_requests_near(&self.safety.high_qc.block);
        if self.current_leader() != Some(self.id()) || spent || !work {
            return;
        }
        let full = self.mempool.len() >= self.config.limits.batch_requests_max;
        if !full && self.now.0 < self.pacemaker.round_entered().0.saturating_add(self.config.propose_after_ms) {
            return; // `on_tick` tries again
        }
        let parent = self.safety.high_qc.clone();
        let timeout_certificate = if parent.round.next() == round {
            None
        } else {
            match self.pacemaker.last_tc() {
                Some(certificate) if certificate.round.next() == round => Some(certificate.clone()),
                _ => return, // wait for the certificate of the round before
            }
        };
        let pending = self.ledger.pending_requests(&parent.block);
        let limits = &self.config.limits;
        let requests = self.mempool.batch(limits.batch_requests_max, limits.batch_bytes_max, &pending);
        let block = Block { round, author: self.id(), parent, requests };
        let signature = self.keys.sign(&Proposal::signing_bytes(&self.committee, &block.digest()));
        let proposal = Proposal { block, timeout_certificate, signature };
        self.proposed = round;
        // Vote first: the block and the safety state are persisted before the proposal leaves,
        // so a leader restarted in this round cannot propose a second block.
        self.on_proposal(self.id(), proposal.clone(), out);
        out.push(Action::Broadcast(PeerMessage::Proposal(proposal)));
    }

    fn on_proposal(&mut self, from: ReplicaId, proposal: Proposal, out: &mut Out<A::Output>) {
        self.on_certificate(&proposal.block.parent, from, out);
        if let Some(certificate) = &proposal.timeout_certificate {
            self.on_timeout_certificate(certificate.clone(), from, out);
        }
        let tip_round = self.ledger.tip().round;
        let (round, parent) = (proposal.block.round, &proposal.block.parent);
        if round <= tip_round || self.pacemaker.is_far_ahead(round) || self.proposal_rounds.contains(&round) {
            return;
        }
        match self.leader_after(round, &parent.block, parent.round) {
            Ok(leader) if leader == proposal.block.author => {}
            Ok(leader) => {
                let error = ProtocolError::WrongLeader { author: proposal.block.author, round, leader };
                out.push(Action::Dropped { from, error });
                return;
            }
            Err(missing) => {
                // Checked once the chain it extends is known here.
                self.fetch(missing, parent.round, from, out);
                if self.pending_proposal.as_ref().is_none_or(|(_, pending)| pending.block.round < round) {
                    self.pending_proposal = Some((from, proposal));
                }
                return;
            }
        }
        let Proposal { block, timeout_certificate, .. } = proposal;
        self.proposal_rounds.insert(block.round);
        self.proposal_rounds = self.proposal_rounds.split_off(&tip_round);
        let (digest, round, parent_round) = (block.digest(), block.round, block.parent.round);
        if parent_round > tip_round && !self.ledger.knows(&block.parent.block) {
            self.fetch(block.parent.block, parent_round, from, out);
        }
        self.ledger.insert(block);
        if round != self.pacemaker.round()
            || !self.safety.safe_to_vote(round, parent_round, timeout_certificate.as_ref())
        {
            return;
        }
        self.safety.record(round);
        if let Some(block) = self.ledger.block(&digest) {
            out.push(Action::PersistBlock(block.clone()));
        }
        out.push(Action::PersistSafety(self.safety.clone()));
        let signature = self.keys.sign(&QuorumCertificate::signing_bytes(&self.committee, &digest, round));
        let vote = Vote { block: digest, round, voter: self.id(), signature };
        self.last_vote = Some((round, digest));
        match self.leader_after(round.next(), &digest, round) {
            Ok(leader) if leader == self.id() => self.on_vote(self.id(), vote, out),
            Ok(leader) => out.push(Action::Send { to: leader, message: PeerMessage::Vote(vote) }),
            // The chain is not all known here (its blocks are being fetched): to everyone,
            // the next leader among them.
            Err(_) => {
                out.push(Action::Broadcast(PeerMessage::Vote(vote.clone())));
                self.on_vote(self.id(), vote, out);
            }
        }
    }

    fn on_vote(&mut self, from: ReplicaId, vote: Vote, out: &mut Out<A::Output>) {
        // A vote for a block not known here yet is kept: its round's leader may be this replica.
        if self.leader_after(vote.round.next(), &vote.block, vote.round).is_ok_and(|leader| leader != self.id()) {
            out.push(Action::Dropped { from, error: ProtocolError::Unsolicited { what: "vote" } });
            return;
        }
        if vote.round.next() < self.pacemaker.round() || self.pacemaker.is_far_ahead(vote.round) {
            return;
        }
        if let Some(certificate) = self.votes.add(vote) {
            self.on_certificate(&certificate, self.id(), out);
        }
    }

    /// After a round change: votes before the round before it can no longer certify
    /// anything here (`on_vote` ignores them).
    fn forget_old_votes(&mut self) {
        self.votes.forget_before(Round(self.pacemaker.round().0.saturating_sub(1)));
    }

    // ---- certificates and commits ----------------------------------------------------------------

    /// A verified certificate: it may raise the lock, advance the round, and decide blocks.
    fn on_certificate(&mut self, certificate: &QuorumCertificate, from: ReplicaId, out: &mut Out<A::Output>) {
        if certificate.is_genesis() {
            return;
        }
        self.safety.observe(certificate);
        if self.pacemaker.on_quorum_certificate(certificate.round, self.now) {
            self.forget_old_votes();
        }
        self.commit_certified(certificate, from, out);
    }

    /// The 2-chain rule: a certified block whose parent is from the round just
    /// before decides that parent, and with it every undecided ancestor.
    fn commit_certified(&mut self, certificate: &QuorumCertificate, from: ReplicaId, out: &mut Out<A::Output>) {
        if certificate.round <= self.ledger.tip().round {
            return;
        }
        let Some(block) = self.ledger.block(&certificate.block) else {
            self.wait_for(certificate, from, out);
            return;
        };
        if block.parent.is_genesis() {
            return;
        }
        if block.parent.round.next() != block.round {
            // Nothing to decide here, but the certificate this block carries may decide
            // its grandparent (a replica that fetched this block never saw that certificate).
            let parent = block.parent.clone();
            self.commit_certified(&parent, from, out);
            return;
        }
        let target = block.parent.block;
        if self.ledger.round_of(&target).is_some_and(|round| round <= self.ledger.tip().round) {
            return;
        }
        match self.ledger.commit(&target) {
            Ok(decided) => self.on_decided(decided, out),
            Err(CommitError::Missing(digest)) => {
                self.fetch(digest, certificate.round, from, out);
                self.wait_for(certificate, from, out);
            }
            Err(CommitError::Fork { block, tip }) => {
                self.halted = true;
                out.push(Action::Fatal(Halt::Fork { block, tip }));
            }
        }
    }

    /// Remembers the highest certificate that could not be acted on yet.
    fn wait_for(&mut self, certificate: &QuorumCertificate, from: ReplicaId, out: &mut Out<A::Output>) {
        if self.waiting_certificate.as_ref().is_none_or(|waiting| waiting.round < certificate.round) {
            self.waiting_certificate = Some(certificate.clone());
        }
        if !self.ledger.knows(&certificate.block) {
            self.fetch(certificate.block, certificate.round, from, out);
        }
    }

    fn on_decided(&mut self, decided: Vec<super::ledger::Decided<A::Output>>, out: &mut Out<A::Output>) {
        for decision in decided {
            for request in &decision.block.requests {
                self.mempool.remove(&request.digest());
            }
            out.push(Action::PersistDecided { height: decision.height, block: decision.block });
            out.extend(decision.outputs.into_iter().map(Action::Deliver));
            if let Some((point, state)) = decision.checkpoint {
                self.checkpoint(point, state, out);
            }
        }
    }

    // ---- ticks, and after every event -------------------------------------------------------------

    fn on_tick(&mut self, now: TimeMs, out: &mut Out<A::Output>) {
        self.now = now;
        if self.pacemaker.is_due(now) {
            self.time_out(out);
        }
        if let Some(peer) = self.sync.status_due(now) {
            out.push(Action::Send { to: peer, message: self.catchup() });
            // Checkpoint messages may have been lost: say the latest unstable one again.
            if let Some(point) = self.checkpoints.latest_own() {
                let checkpoint = self.sign_checkpoint(point);
                out.push(Action::Broadcast(PeerMessage::Checkpoint(checkpoint)));
            }
        }
        self.forward_requests(out);
        self.retry_fetches(out);
        self.maybe_propose(out);
    }

    /// Runs after every event: propose if leader, and keep the round timer armed while there is work.
    fn after_event(&mut self, out: &mut Out<A::Output>) {
        self.maybe_propose(out);
        if self.has_work() {
            self.pacemaker.arm(self.now);
        }
        if let Some(certificate) = self.waiting_certificate.take() {
            if self.ledger.knows(&certificate.block) {
                self.commit_certified(&certificate, self.id(), out);
            } else {
                self.waiting_certificate = Some(certificate);
            }
        }
        if let Some((from, proposal)) = self.pending_proposal.take() {
            let parent = &proposal.block.parent;
            if proposal.block.round < self.pacemaker.round() {
                // Its round is over: it can no longer be voted for.
            } else if self.ledger.window(&parent.block).is_ok() {
                self.on_proposal(from, proposal, out);
            } else {
                self.pending_proposal = Some((from, proposal));
            }
        }
    }

    // ---- leaders ----------------------------------------------------------------------------------

    /// The leader of `round` for a proposal whose parent is the block `parent` of
    /// `parent_round`: by reputation over the chain it extends when that block is from the
    /// round before, else (a round failed: the proposal carries a timeout certificate)
    /// round-robin. `Err` names a block of that chain that is not known here.
    pub fn leader_after(&self, round: Round, parent: &Digest, parent_round: Round) -> Result<ReplicaId, Digest> {
        let size = self.committee.size();
        if parent_round.next() != round {
            return Ok(round_robin(round, size));
        }
        Ok(by_reputation(round, &self.ledger.window(parent)?, size))
    }

    /// The replicas that proposed or voted in the last decided blocks (leader reputation's
    /// record, `leaders.rs`, without its aging by rounds, which would make the set flicker
    /// between replicas); every replica while that record is empty or not known here.
    pub fn active_replicas(&self) -> Vec<ReplicaId> {
        let window = self.ledger.window(&self.ledger.tip().block).unwrap_or_default();
        let active = seen_in(&window);
        if active.is_empty() { self.committee.replicas().collect() } else { active.into_iter().collect() }
    }

    /// Who this replica expects to lead its current round (`None` while a block of the chain
    /// its highest certificate extends is being fetched).
    pub fn current_leader(&self) -> Option<ReplicaId> {
        let high_qc = &self.safety.high_qc;
        self.leader_after(self.pacemaker.round(), &high_qc.block, high_qc.round).ok()
    }

    /// Who is expected to lead the round after the current one: the leader that votes of
    /// this round go to, once this replica voted in it; else a guess (round-robin).
    fn next_leader(&self) -> Option<ReplicaId> {
        let round = self.pacemaker.round();
        match self.last_vote {
            Some((voted, block)) if voted == round => self.leader_after(round.next(), &block, round).ok(),
            _ => Some(round_robin(round.next(), self.committee.size())),
        }
    }

    /// Sends waiting requests to the leaders of this round and the next, who propose them.
    fn forward_requests(&mut self, out: &mut Out<A::Output>) {
        if self.mempool.is_empty() {
            return;
        }
        let pending = self.ledger.pending_requests(&self.safety.high_qc.block);
        let limits = (self.config.limits.batch_requests_max, self.config.limits.batch_bytes_max);
        let due = self.mempool.due_for_forwarding(self.now, self.config.request_forward_after_ms, limits, &pending);
        if due.is_empty() {
            return;
        }
        let mut leaders: Vec<ReplicaId> = [self.current_leader(), self.next_leader()].into_iter().flatten().collect();
        leaders.dedup();
        for leader in leaders.into_iter().filter(|leader| *leader != self.id()) {
            out.push(Action::Send { to: leader, message: PeerMessage::Requests(due.clone()) });
        }
    }
}

/// A committee of `n` replicas with fixed keys, for the tests of this module's parts.
#[cfg(test)]
fn test_committee(n: u32) -> (Vec<KeyPair>, Committee) {
    let keys: Vec<KeyPair> = (0..n).map(|i| KeyPair::from_seed(ReplicaId(i), [i as u8 + 1; 32])).collect();
    let committee = Committee::new("test", crate::ShardId(0), keys.iter().map(KeyPair::public).collect());
    (keys, committee)
}
