//! `Replica`: one replica of a shard as a pure state machine. The shell feeds
//! it `Event`s (peer messages, client requests, clock ticks) and carries out the
//! returned `Action`s in order: persist actions complete before the sends that
//! follow them. No IO, no clock: time comes in with `Event::Tick`.
//!
//! The protocol is 2-chain HotStuff (Jolteon / DiemBFT v4) with round-robin
//! leaders: see `docs/protocol.md`.

use std::collections::BTreeMap;

use ed25519_dalek::Signature;

use super::app::Application;
use super::committee::{Committee, KeyPair};
use super::error::{Halt, ProtocolError};
use super::ledger::{CommitError, Ledger, Resume, StableCheckpoint, Tip, snapshot_of, snapshot_parts};
use super::mempool::Mempool;
use super::messages::{
    Block, Checkpoint, CheckpointCertificate, CheckpointPoint, MessageLimits, PeerMessage, Proposal, QuorumCertificate,
    Timeout, TimeoutCertificate, VerifiedCertificates, Vote,
};
use super::safety::SafetyState;
use super::types::{Digest, Height, ReplicaId, Request, Round, SnapshotBytes, TimeMs};

/// Tuning and bounds of one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The first round timeout; it doubles with each timeout in a row.
    pub round_timeout_ms: u64,
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

/// A block being fetched from peers.
#[derive(Clone, Copy, Debug)]
struct Fetch {
    asked_at: TimeMs,
    peer: ReplicaId,
    /// The round of the certificate that needs it: once decided past it, the fetch is moot.
    needed_for: Round,
    attempts: u32,
}

/// Attempts at fetching one block before giving up on it.
const FETCH_ATTEMPTS_MAX: u32 = 32;
/// Sync answers (blocks or a snapshot) one peer may get per second: a tiny
/// request must not buy a large answer without end.
const SYNC_ANSWERS_PER_SECOND_MAX: u32 = 64;

#[derive(Debug)]
pub struct Replica<A: Application> {
    committee: Committee,
    keys: KeyPair,
    config: Config,
    ledger: Ledger<A>,
    /// Persisted before any vote or timeout leaves.
    safety: SafetyState,
    round: Round,
    now: TimeMs,
    /// When this round times out; `None` while there is nothing to order.
    deadline: Option<TimeMs>,
    /// This replica's timeout for the current round, once sent (resent while stuck).
    own_timeout: Option<Timeout>,
    /// Timeouts in a row without progress: each doubles the round timeout.
    timeouts_in_a_row: u32,
    /// The highest timeout certificate: justifies a proposal after a failed round.
    last_tc: Option<TimeoutCertificate>,
    /// The last round this replica proposed in.
    proposed: Round,
    /// When this replica entered its current round (for `propose_after_ms`).
    round_entered: TimeMs,
    /// This replica's latest vote, for observers (a vote to itself never leaves as a message).
    last_vote: Option<(Round, Digest)>,
    /// Votes gathered as the next round's leader: one per voter and round (the first).
    votes: BTreeMap<Round, BTreeMap<ReplicaId, (Digest, Signature)>>,
    /// Rounds in which a proposal's block was stored: one per round, so that an
    /// equivocating leader cannot fill memory (certified blocks still arrive by sync).
    proposal_rounds: std::collections::BTreeSet<Round>,
    /// Timeouts gathered, by round.
    timeouts: BTreeMap<Round, BTreeMap<ReplicaId, Timeout>>,
    mempool: Mempool,
    /// Checkpoints gathered, by height then signer.
    checkpoints: BTreeMap<Height, BTreeMap<ReplicaId, Checkpoint>>,
    /// This replica's own checkpoints not yet stable, with their snapshots.
    own_checkpoints: BTreeMap<Height, (CheckpointPoint, SnapshotBytes)>,
    fetching: BTreeMap<Digest, Fetch>,
    /// The highest certificate whose block or parent is still being fetched.
    waiting_certificate: Option<QuorumCertificate>,
    /// Certificates already verified (each proposal, timeout and catch-up carries one).
    verified: VerifiedCertificates,
    /// When to tell a peer this replica's certificates next, and which peer.
    next_status: (TimeMs, ReplicaId),
    /// Per peer: the start of its current one-second window and the sync answers given in it.
    sync_budget: BTreeMap<ReplicaId, (TimeMs, u32)>,
    /// Per peer: when it was last sent a catch-up answer.
    catchup_sent: BTreeMap<ReplicaId, TimeMs>,
    /// Set by a fork: the replica no longer acts.
    halted: bool,
}

type Out<O> = Vec<Action<O>>;

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
        let mut own_checkpoints = BTreeMap::new();
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
                own_checkpoints.insert(point.height, (point, state));
            }
        }
        while own_checkpoints.len() > 2 {
            own_checkpoints.pop_first();
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
        let keys_id = keys.id;
        let safety_last_voted = safety.last_voted_round;
        Ok(Self {
            mempool: Mempool::new(config.mempool_requests_max),
            committee,
            keys,
            ledger,
            safety,
            round,
            now: TimeMs(0),
            deadline: None,
            own_timeout: None,
            timeouts_in_a_row: 0,
            last_tc: None,
            proposed: safety_last_voted,
            round_entered: TimeMs(0),
            last_vote: None,
            votes: BTreeMap::new(),
            proposal_rounds: std::collections::BTreeSet::new(),
            timeouts: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            own_checkpoints,
            fetching: BTreeMap::new(),
            waiting_certificate: None,
            verified: VerifiedCertificates::new(VERIFIED_CERTIFICATES_MAX),
            next_status: (TimeMs(0), keys_id),
            sync_budget: BTreeMap::new(),
            catchup_sent: BTreeMap::new(),
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
        self.round
    }

    pub fn tip(&self) -> Tip {
        self.ledger.tip()
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
            self.deadline.map(|d| d.0),
            self.own_timeout.is_some(),
            self.last_tc.as_ref().map(|tc| tc.round.0),
            self.proposed.0,
            self.fetching.iter().map(|(d, f)| (d.to_string(), f.peer)).collect::<Vec<_>>(),
            self.waiting_certificate.as_ref().map(|qc| (
                qc.round.0,
                qc.block.to_string(),
                self.ledger.block(&qc.block).map(|b| (b.round.0, b.parent.round.0, b.parent.block.to_string()))
            )),
            self.timeouts.iter().map(|(round, t)| (round.0, t.len())).collect::<Vec<_>>(),
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
        let waiting = self.config.propose_after_ms > 0
            && self.committee.leader(self.round) == self.id()
            && self.proposed < self.round
            && self.safety.last_voted_round < self.round
            && (self.has_work() || self.ledger.has_requests_near(&self.safety.high_qc.block));
        waiting.then(|| self.round_entered.plus(self.config.propose_after_ms))
    }

    /// As leader of the current round, proposes once, if there is work and a justification.
    fn maybe_propose(&mut self, out: &mut Out<A::Output>) {
        let round = self.round;
        // Never twice in a round, and not in a round this replica already voted or timed out in
        // (after a restart, `last_voted_round` says so).
        let spent = self.proposed >= round || self.safety.last_voted_round >= round;
        let work = self.has_work() || self.ledger.has_requests_near(&self.safety.high_qc.block);
        if self.committee.leader(round) != self.id() || spent || !work {
            return;
        }
        let full = self.mempool.len() >= self.config.limits.batch_requests_max;
        if !full && self.now.0 < self.round_entered.0.saturating_add(self.config.propose_after_ms) {
            return; // `on_tick` tries again
        }
        let parent = self.safety.high_qc.clone();
        let timeout_certificate = if parent.round.next() == round {
            None
        } else {
            match &self.last_tc {
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
        let Proposal { block, timeout_certificate, .. } = proposal;
        self.on_certificate(&block.parent, from, out);
        if let Some(certificate) = &timeout_certificate {
            self.on_timeout_certificate(certificate.clone(), from, out);
        }
        let tip_round = self.ledger.tip().round;
        let far_ahead = block.round.0 > self.round.0.saturating_add(self.config.future_rounds_max);
        if block.round <= tip_round || far_ahead || !self.proposal_rounds.insert(block.round) {
            return;
        }
        self.proposal_rounds = self.proposal_rounds.split_off(&tip_round);
        let (digest, round, parent_round) = (block.digest(), block.round, block.parent.round);
        if parent_round > tip_round && !self.ledger.knows(&block.parent.block) {
            self.fetch(block.parent.block, parent_round, from, out);
        }
        self.ledger.insert(block);
        if round != self.round || !self.safety.safe_to_vote(round, parent_round, timeout_certificate.as_ref()) {
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
        let next_leader = self.committee.leader(round.next());
        if next_leader == self.id() {
            self.on_vote(self.id(), vote, out);
        } else {
            out.push(Action::Send { to: next_leader, message: PeerMessage::Vote(vote) });
        }
    }

    fn on_vote(&mut self, from: ReplicaId, vote: Vote, out: &mut Out<A::Output>) {
        if self.committee.leader(vote.round.next()) != self.id() {
            out.push(Action::Dropped { from, error: ProtocolError::Unsolicited { what: "vote" } });
            return;
        }
        if vote.round.next() < self.round || vote.round.0 > self.round.0.saturating_add(self.config.future_rounds_max) {
            return;
        }
        let voters = self.votes.entry(vote.round).or_default();
        if voters.contains_key(&vote.voter) {
            return;
        }
        voters.insert(vote.voter, (vote.block, vote.signature));
        let votes: Vec<(ReplicaId, Signature)> = voters
            .iter()
            .filter(|(_, (block, _))| *block == vote.block)
            .map(|(voter, (_, signature))| (*voter, *signature))
            .collect();
        if votes.len() == self.committee.quorum() {
            let certificate = QuorumCertificate { block: vote.block, round: vote.round, votes };
            self.on_certificate(&certificate, self.id(), out);
        }
    }

    // ---- certificates, rounds and commits ------------------------------------------------------

    /// A verified certificate: it may raise the lock, advance the round, and decide blocks.
    fn on_certificate(&mut self, certificate: &QuorumCertificate, from: ReplicaId, out: &mut Out<A::Output>) {
        if certificate.is_genesis() {
            return;
        }
        self.safety.observe(certificate);
        if certificate.round >= self.round {
            self.timeouts_in_a_row = 0;
            self.enter_round(certificate.round.next());
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

    fn enter_round(&mut self, round: Round) {
        if round <= self.round {
            return;
        }
        self.round = round;
        self.round_entered = self.now;
        self.deadline = None;
        self.own_timeout = None;
        let keep_from = Round(round.0.saturating_sub(1));
        self.votes.retain(|vote_round, _| *vote_round >= keep_from);
        self.timeouts.retain(|timeout_round, _| *timeout_round >= round);
    }

    fn round_timeout_ms(&self) -> u64 {
        let factor = 1u64 << self.timeouts_in_a_row.min(16);
        self.config.round_timeout_ms.saturating_mul(factor).min(self.config.round_timeout_max_ms)
    }

    // ---- timeouts ---------------------------------------------------------------------------------

    fn on_tick(&mut self, now: TimeMs, out: &mut Out<A::Output>) {
        self.now = now;
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            self.time_out(out);
        }
        let (due, peer) = self.next_status;
        if now >= due && self.committee.size() > 1 {
            let peer = self.next_peer(peer);
            self.next_status = (now.plus(self.config.status_interval_ms), peer);
            out.push(Action::Send { to: peer, message: self.catchup() });
            // Checkpoint messages may have been lost: say the latest unstable one again.
            if let Some((point, _)) = self.own_checkpoints.values().next_back() {
                let signature = self.keys.sign(&point.signing_bytes(&self.committee));
                let checkpoint = Checkpoint { point: *point, author: self.id(), signature };
                out.push(Action::Broadcast(PeerMessage::Checkpoint(checkpoint)));
            }
        }
        self.forward_requests(out);
        self.retry_fetches(out);
        self.maybe_propose(out);
    }

    /// Gives up on the current round (or resends the timeout, if still stuck).
    fn time_out(&mut self, out: &mut Out<A::Output>) {
        self.deadline = Some(self.now.plus(self.round_timeout_ms()));
        let timeout = match &self.own_timeout {
            Some(timeout) => timeout.clone(),
            None => {
                self.timeouts_in_a_row = self.timeouts_in_a_row.saturating_add(1);
                self.safety.record(self.round);
                out.push(Action::PersistSafety(self.safety.clone()));
                let high_qc = self.safety.high_qc.clone();
                let bytes = Timeout::signing_bytes(&self.committee, self.round, high_qc.round);
                let timeout =
                    Timeout { round: self.round, high_qc, author: self.id(), signature: self.keys.sign(&bytes) };
                self.own_timeout = Some(timeout.clone());
                timeout
            }
        };
        out.push(Action::Broadcast(PeerMessage::Timeout(timeout.clone())));
        self.on_timeout(self.id(), timeout, out);
    }

    fn on_timeout(&mut self, from: ReplicaId, timeout: Timeout, out: &mut Out<A::Output>) {
        self.on_certificate(&timeout.high_qc, from, out);
        if timeout.round < self.round {
            // The sender is behind: show it the way forward.
            self.answer_behind(from, timeout.round, out);
            return;
        }
        if timeout.round.0 > self.round.0.saturating_add(self.config.future_rounds_max) {
            return;
        }
        let round = timeout.round;
        let gathered = self.timeouts.entry(round).or_default();
        gathered.insert(timeout.author, timeout);
        let count = gathered.len();
        if round > self.round && count >= self.committee.validity() {
            // f+1 replicas, one of them honest, have given up on a later round:
            // join them there (round synchronisation without a certificate).
            self.enter_round(round);
        }
        if round == self.round {
            // A peer has work in this round: run the timer even if this replica has none.
            self.deadline.get_or_insert(self.now.plus(self.round_timeout_ms()));
            // f+1 timeouts include an honest one: join them, so the round ends quickly.
            if count >= self.committee.validity() && self.own_timeout.is_none() {
                self.time_out(out);
            }
        }
        if count >= self.committee.quorum() {
            let certificate = self.timeout_certificate(round);
            self.on_timeout_certificate(certificate, self.id(), out);
        }
    }

    /// Answers a peer stuck timing out in `round`, which this replica has left: with
    /// a certificate that ends that round if it holds one, or else with its own
    /// timeout for that round, so that the peer can form the certificate. (Signing a
    /// timeout for a past round is safe: it reports the replica's highest certificate,
    /// which only grows, and does not lower the round it will vote in.)
    fn answer_behind(&mut self, to: ReplicaId, round: Round, out: &mut Out<A::Output>) {
        let certified = self.safety.high_qc.round >= round || self.last_tc.as_ref().is_some_and(|tc| tc.round >= round);
        if certified {
            self.answer_catchup(to, out);
            return;
        }
        let spacing = self.config.round_timeout_ms / 2;
        if self.catchup_sent.get(&to).is_some_and(|sent| self.now.0 < sent.0.saturating_add(spacing)) {
            return;
        }
        self.catchup_sent.insert(to, self.now);
        let high_qc = self.safety.high_qc.clone();
        let bytes = Timeout::signing_bytes(&self.committee, round, high_qc.round);
        let timeout = Timeout { round, high_qc, author: self.id(), signature: self.keys.sign(&bytes) };
        out.push(Action::Send { to, message: PeerMessage::Timeout(timeout) });
    }

    /// Answers a peer that is behind, at most once per half round timeout.
    fn answer_catchup(&mut self, to: ReplicaId, out: &mut Out<A::Output>) {
        let spacing = self.config.round_timeout_ms / 2;
        if self.catchup_sent.get(&to).is_some_and(|sent| self.now.0 < sent.0.saturating_add(spacing)) {
            return;
        }
        self.catchup_sent.insert(to, self.now);
        out.push(Action::Send { to, message: self.catchup() });
    }

    /// Whether `peer` may get another sync answer in this second.
    fn within_sync_budget(&mut self, peer: ReplicaId) -> bool {
        let now = self.now;
        let (window, used) = self.sync_budget.entry(peer).or_insert((now, 0));
        if now.0 >= window.0.saturating_add(1_000) {
            *window = now;
            *used = 0;
        }
        *used += 1;
        *used <= SYNC_ANSWERS_PER_SECOND_MAX
    }

    /// This replica's highest certificates, for a peer that may be behind.
    fn catchup(&self) -> PeerMessage {
        PeerMessage::Catchup { high_qc: self.safety.high_qc.clone(), timeout_certificate: self.last_tc.clone() }
    }

    fn timeout_certificate(&self, round: Round) -> TimeoutCertificate {
        let gathered =
            self.timeouts.get(&round).map(|timeouts| timeouts.values().collect::<Vec<_>>()).unwrap_or_default();
        let high_qc = gathered.iter().map(|timeout| &timeout.high_qc).max_by_key(|qc| qc.round).cloned();
        let timeouts =
            gathered.iter().map(|timeout| (timeout.author, timeout.high_qc.round, timeout.signature)).collect();
        TimeoutCertificate { round, timeouts, high_qc: high_qc.unwrap_or_else(QuorumCertificate::genesis) }
    }

    fn on_timeout_certificate(&mut self, certificate: TimeoutCertificate, from: ReplicaId, out: &mut Out<A::Output>) {
        self.on_certificate(&certificate.high_qc, from, out);
        if certificate.round < self.round {
            return;
        }
        let round = certificate.round.next();
        if self.last_tc.as_ref().is_none_or(|last| last.round < certificate.round) {
            self.last_tc = Some(certificate);
        }
        self.enter_round(round);
    }

    /// Runs after every event: propose if leader, and keep the round timer armed while there is work.
    fn after_event(&mut self, out: &mut Out<A::Output>) {
        self.maybe_propose(out);
        if self.deadline.is_none() && self.has_work() {
            self.deadline = Some(self.now.plus(self.round_timeout_ms()));
        }
        if let Some(certificate) = self.waiting_certificate.take() {
            if self.ledger.knows(&certificate.block) {
                self.commit_certified(&certificate, self.id(), out);
            } else {
                self.waiting_certificate = Some(certificate);
            }
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
        let mut leaders = vec![self.committee.leader(self.round), self.committee.leader(self.round.next())];
        leaders.dedup();
        for leader in leaders.into_iter().filter(|leader| *leader != self.id()) {
            out.push(Action::Send { to: leader, message: PeerMessage::Requests(due.clone()) });
        }
    }

    // ---- state transfer ---------------------------------------------------------------------------

    fn fetch(&mut self, digest: Digest, needed_for: Round, hint: ReplicaId, out: &mut Out<A::Output>) {
        let full = self.fetching.len() >= self.config.fetches_max;
        if self.ledger.knows(&digest) || self.fetching.contains_key(&digest) || full {
            return;
        }
        let peer = if hint == self.id() { self.next_peer(hint) } else { hint };
        self.fetching.insert(digest, Fetch { asked_at: self.now, peer, needed_for, attempts: 1 });
        let height = self.ledger.tip().height;
        out.push(Action::Send { to: peer, message: PeerMessage::BlockRequest { block: digest, height } });
    }

    fn next_peer(&self, after: ReplicaId) -> ReplicaId {
        let size = u32::try_from(self.committee.size()).expect("a committee size fits u32");
        let mut peer = ReplicaId((after.0 + 1) % size);
        if peer == self.id() {
            peer = ReplicaId((peer.0 + 1) % size);
        }
        peer
    }

    /// Asks another peer for each block not received in time; gives up on blocks no longer needed.
    fn retry_fetches(&mut self, out: &mut Out<A::Output>) {
        let (now, retry_ms, tip) = (self.now, self.config.sync_retry_ms, self.ledger.tip());
        let ledger = &self.ledger;
        self.fetching.retain(|digest, fetch| {
            fetch.needed_for > tip.round && fetch.attempts < FETCH_ATTEMPTS_MAX && !ledger.knows(digest)
        });
        let due: Vec<Digest> = self
            .fetching
            .iter()
            .filter(|(_, fetch)| now.0 >= fetch.asked_at.0.saturating_add(retry_ms))
            .map(|(digest, _)| *digest)
            .collect();
        for digest in due {
            let previous = self.fetching[&digest];
            let peer = self.next_peer(previous.peer);
            let attempts = previous.attempts + 1;
            self.fetching.insert(digest, Fetch { asked_at: now, peer, attempts, ..previous });
            out.push(Action::Send {
                to: peer,
                message: PeerMessage::BlockRequest { block: digest, height: tip.height },
            });
        }
    }

    fn on_block_request(&mut self, from: ReplicaId, digest: Digest, height: Height, out: &mut Out<A::Output>) {
        if !self.within_sync_budget(from) {
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

    fn on_blocks(&mut self, from: ReplicaId, blocks: Vec<Block>, out: &mut Out<A::Output>) {
        // Accept only what was asked for, then each accepted block's parent: blocks
        // whose digests a certificate vouches for.
        let mut expected: Option<Digest> = None;
        let mut missing_parent = None;
        let mut certificates = Vec::new();
        for block in blocks {
            let digest = block.digest();
            if self.fetching.remove(&digest).is_none() && expected != Some(digest) {
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

    fn on_snapshot(
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
        self.fetching.clear();
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

    // ---- checkpoints ------------------------------------------------------------------------------

    fn checkpoint(&mut self, point: CheckpointPoint, state: SnapshotBytes, out: &mut Out<A::Output>) {
        let signature = self.keys.sign(&point.signing_bytes(&self.committee));
        let checkpoint = Checkpoint { point, author: self.id(), signature };
        self.own_checkpoints.insert(point.height, (point, state));
        while self.own_checkpoints.len() > 2 {
            self.own_checkpoints.pop_first();
        }
        out.push(Action::Broadcast(PeerMessage::Checkpoint(checkpoint.clone())));
        self.on_checkpoint(checkpoint, out);
    }

    fn on_checkpoint(&mut self, checkpoint: Checkpoint, out: &mut Out<A::Output>) {
        let height = checkpoint.point.height;
        let stable_height = self.ledger.stable().map_or(Height(0), |stable| stable.certificate.point.height);
        let horizon = self.ledger.tip().height.0.saturating_add(self.config.checkpoint_interval.saturating_mul(2));
        if height <= stable_height || height.0 > horizon {
            return;
        }
        let gathered = self.checkpoints.entry(height).or_default();
        gathered.insert(checkpoint.author, checkpoint);
        self.try_stabilise(height, out);
    }

    /// Makes the checkpoint at `height` stable once 2f+1 replicas sign this replica's own point.
    fn try_stabilise(&mut self, height: Height, out: &mut Out<A::Output>) {
        let Some((point, state)) = self.own_checkpoints.get(&height).cloned() else { return };
        let Some(gathered) = self.checkpoints.get(&height) else { return };
        let signatures: Vec<(ReplicaId, Signature)> =
            gathered.values().filter(|c| c.point == point).map(|c| (c.author, c.signature)).collect();
        if signatures.len() < self.committee.quorum() {
            let disagreeing = gathered.len() - signatures.len();
            if disagreeing >= self.committee.quorum() {
                self.halted = true;
                out.push(Action::Fatal(Halt::StateDiverged { height }));
            }
            return;
        }
        let checkpoint = StableCheckpoint { certificate: CheckpointCertificate { point, signatures }, state };
        self.ledger.set_stable(checkpoint.clone());
        self.checkpoints = self.checkpoints.split_off(&height.next());
        self.own_checkpoints = self.own_checkpoints.split_off(&height.next());
        out.push(Action::PersistCheckpoint(checkpoint));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShardId;

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
