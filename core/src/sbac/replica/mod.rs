//! `ShardReplica`: one replica of one shard, whole and sans-IO (DESIGN.md §12).
//! It owns the BFT `Replica` running the shard's `ShardApp` and everything that
//! coordinates the two around the ordered log (DESIGN.md §5): admission of an
//! attempt's envelope, the checks it asks for and the verdicts it signs and
//! gathers, the `Prepare` and `Decide` it submits (or stands by for), the votes it
//! signs and gathers, the pass-on of attempts that take long, and the clients
//! waiting for outcomes.
//!
//! One entry point: `handle(now, input) -> outputs`. Outputs are data, carried out
//! in order by a driver: the node (sockets, SQLite, HTTP checkers, timers) or the
//! simulator. A `Persist` is durable before any later output is carried out (both
//! drivers gather the outputs of consecutive steps into groups, one store commit each:
//! `Outbox`, group commit). Work
//! produced inside a step (a vote that completes a decision, a decision that
//! answers a client) is queued and drained in the same call, never by recursion.

mod admission;
mod gathering;
mod outbox;
mod sealing;
mod waiters;
mod wire;
mod writes;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use gathering::designated_submitter;
pub use outbox::{GROUP_RECORDS_MAX, GROUP_STEPS_MAX, Group, Outbox};
pub use wire::{
    Checked, ClientId, ClientReply, ClientRequest, DECIDED_PAGE_MAX, Frame, Listing, PAGE_ENVELOPE_BYTES_MAX, PAGE_MAX,
    Page, PeerId, RejectKind, Status,
};
pub use writes::{Plan, PlanContext, Write, plan};

use crate::bft::{
    Action, Committee, Event, Halt, Height, PeerMessage, ProtocolError, Replica, ReplicaId, Request, StableCheckpoint,
    TimeMs,
};
use crate::ids::{ObjectId, ShardId, TxId};
use crate::limits::Limits;
use crate::sbac::{
    AnswerBody, Attempt, Position, ShardApp, ShardOutput, ShardRequest, VerdictCertificate, VerdictCollector,
    VoteCollector,
};
use crate::shard::ShardMap;

use admission::Pending;
use sealing::Unsealed;
use waiters::Waiters;

/// Requests whose submitter waits to hear they were decided.
pub const WAITING_MAX: usize = 200_000;
/// How long a submitter is remembered: a request never decided here (executed before, or
/// skipped by a snapshot) must not hold its place for ever.
pub const WAITING_MS_MAX: u64 = 120_000;
/// Envelopes being checked, or checked and waiting for their verdict certificate.
pub const ENVELOPES_MAX: usize = 10_000;
/// How long a checked envelope waits for its shard's verdict certificate.
pub const ENVELOPE_MS_MAX: u64 = 60_000;
/// Gatherings of verdicts and of votes kept at once.
pub const COLLECTOR_CAPACITY: usize = 20_000;
/// An attempt undecided this long has its envelope passed on to every concerned replica.
pub const PASS_ON_AFTER_MS: u64 = 2_000;
/// Envelopes passed on per sweep.
pub const PASS_ON_MAX: usize = 64;
/// How long a replica that is not an attempt's designated submitter holds back the
/// attempt's `Prepare` or `Decide` before it submits its own (one submission, not one per
/// replica, each ordered and verified by every replica; a silent designated replica
/// delays the attempt by this much).
pub const STANDBY_MS: u64 = 500;
/// The longest a stand-in holds back: how long it waits is twice the time the shard lately
/// took from a vote to its decision, within `STANDBY_MS..=STANDBY_MS_MAX`. When the shard is
/// slow (overload), every designated request takes longer than `STANDBY_MS` to be ordered,
/// and fixed stand-ins added three copies of each, making it slower still.
pub const STANDBY_MS_MAX: u64 = 4_000;
/// Requests held back at once.
pub const STANDBY_MAX: usize = 20_000;
/// How often a driver ticks the replica (`Input::Tick`): the node and the simulator alike.
pub const TICK_MS: u64 = 10;
/// How often forgotten submitters are swept out and envelopes passed on.
pub const SWEEP_EVERY_MS: u64 = 1_000;

/// What a replica is told. Frames are most inputs: boxing them to shrink the rare others
/// would cost an allocation each.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Input {
    /// A frame from an authenticated replica of the cluster.
    Frame { from: PeerId, frame: Frame },
    /// A request of a client, whose replies go to `client`.
    Client { client: ClientId, request: ClientRequest },
    /// The checkers' answers on envelopes this replica asked about (`Output::Check`): those
    /// that came back together (one checker batch) go in one input, so that their verdicts
    /// are sealed under one signature.
    Checked(Vec<Checked>),
    /// Clients whose connection closed: nobody waits for their answers any more.
    ClientsGone(Vec<ClientId>),
    /// The clock moved.
    Tick,
}

/// What the driver must do, in order.
#[derive(Clone, Debug)]
pub enum Output {
    /// Make these durable, in one store transaction, before carrying out any later output.
    Persist(Vec<Write>),
    /// To one replica of the cluster.
    Send {
        to: PeerId,
        frame: Frame,
    },
    /// To every replica of each of these shards but this one.
    Multicast {
        shards: Vec<ShardId>,
        frame: Frame,
    },
    /// Ask the checkers about this envelope; the answer comes back as `Input::Checked`.
    Check {
        tx: TxId,
        envelope: crate::Envelope,
    },
    /// Ask the checkers about this envelope for `client` alone, a dry run, and answer it
    /// `ClientReply::Checked`: nothing is ordered, and the state machine hears nothing back.
    DryCheck {
        client: ClientId,
        tx: TxId,
        envelope: crate::Envelope,
    },
    Reply {
        client: ClientId,
        reply: ClientReply,
    },
    /// Send the peer this checkpoint with its body, read from the store's versions of the
    /// records (`Write::Records`), as `PeerMessage::Snapshot`; nothing if the store cannot
    /// read that height (it moved past it).
    ServeSnapshot {
        to: ReplicaId,
        checkpoint: StableCheckpoint,
    },
    /// A peer's frame was dropped (for logs and counters).
    Dropped {
        from: PeerId,
        error: ProtocolError,
    },
    /// The replica cannot go on safely: stop it, saying nothing more.
    Stop(Stop),
}

/// Why a replica stops.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    #[error("the shard's records cannot be read: {0}")]
    ReadFailed(String),
    #[error("the decided log cannot go on: {0}")]
    LogHalted(Halt),
}

/// How often each protocol path was taken: for metrics, and for the simulator's coverage
/// table (a path never taken over its seeds is a path never proven).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub votes_sent: u64,
    /// Roots signed (`sealing`), and the messages they sealed.
    pub seals: u64,
    pub sealed: u64,
    pub commits: u64,
    pub aborts: u64,
    pub envelopes_rejected: u64,
    pub checker_unavailable: u64,
    /// A `Prepare` or `Decide` submitted by a replica standing in for the designated one.
    pub stand_in_submissions: u64,
    /// A verdict certificate completed before its envelope came, used when it came.
    pub early_certificates_used: u64,
    /// A later attempt took over an envelope still waiting for its certificate.
    pub attempts_taken_over: u64,
    pub passed_on: u64,
    pub votes_again: u64,
    /// Envelopes answered from the record of a decided attempt.
    pub answered_from_record: u64,
    pub state_transfers: u64,
    pub snapshots_served: u64,
}

/// Who a replica is and what it may check.
#[derive(Clone, Debug)]
pub struct ShardReplicaConfig {
    /// Every shard's committee, by shard id.
    pub committees: Vec<Committee>,
    pub limits: Limits,
    /// Contracts with a checker here: an envelope calling another is refused (`unknown_contract`).
    pub contracts: BTreeSet<String>,
}

#[derive(Debug)]
pub struct ShardReplica {
    replica: Replica<ShardApp>,
    own: PeerId,
    map: ShardMap,
    limits: Limits,
    contracts: BTreeSet<String>,
    verdicts: VerdictCollector,
    votes: VoteCollector,
    /// Envelopes this replica checks, or checked, by transaction and envelope digest.
    envelopes: BTreeMap<(TxId, [u8; 32]), Pending>,
    /// Verdict certificates completed by peers' verdicts before this replica held the
    /// envelope: used when the envelope comes (else the next verdict would bring it again).
    early: BTreeMap<(TxId, [u8; 32]), VerdictCertificate>,
    /// Clients waiting for raw requests and for attempts' outcomes.
    waiters: Waiters,
    /// Attempts voted on here and not decided yet, with when they were last passed on.
    undecided: BTreeMap<(TxId, Attempt), TimeMs>,
    /// The height of the last decided block written: a checkpoint above it is a state transfer.
    decided_height: Height,
    /// S-BAC requests held back for the designated replica, in the order they fall due
    /// (nearly: the wait follows `decision_ms`, which moves slowly).
    standby: VecDeque<(TimeMs, ShardRequest)>,
    /// The time from a vote here to its attempt's decision, averaged (`standby_ms`).
    decision_ms: u64,
    last_sweep: TimeMs,
    now: TimeMs,
    counters: Counters,
    /// What executing the log produced in this call, not acted on yet.
    delivered: VecDeque<ShardOutput>,
    /// What this replica says in this call, sealed together before it goes out (`sealing`).
    unsealed: Vec<Unsealed>,
    /// This call's outputs.
    outputs: Vec<Output>,
    stopped: bool,
}

impl ShardReplica {
    pub fn new(replica: Replica<ShardApp>, config: ShardReplicaConfig) -> Self {
        let app = replica.app();
        let own = PeerId { shard: app.shard(), replica: replica.id() };
        let shards = u32::try_from(config.committees.len()).expect("fewer than 2^32 shards");
        let map = ShardMap::new(shards).expect("a cluster has at least one shard");
        let undecided = app.undecided().map(|key| (key, TimeMs(0))).collect();
        let verdicts = VerdictCollector::new(config.committees[own.shard.0 as usize].clone(), COLLECTOR_CAPACITY);
        Self {
            decided_height: replica.tip().height,
            replica,
            own,
            map,
            limits: config.limits,
            contracts: config.contracts,
            verdicts,
            votes: VoteCollector::new(config.committees, COLLECTOR_CAPACITY),
            envelopes: BTreeMap::new(),
            early: BTreeMap::new(),
            waiters: Waiters::default(),
            undecided,
            standby: VecDeque::new(),
            decision_ms: 0,
            last_sweep: TimeMs(0),
            now: TimeMs(0),
            counters: Counters::default(),
            delivered: VecDeque::new(),
            unsealed: Vec::new(),
            outputs: Vec::new(),
            stopped: false,
        }
    }

    pub fn own(&self) -> PeerId {
        self.own
    }

    pub fn replica(&self) -> &Replica<ShardApp> {
        &self.replica
    }

    pub fn app(&self) -> &ShardApp {
        self.replica.app()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The contracts with a checker here, from now on (the cluster file reloaded). An
    /// envelope already taken is checked as it would have been: a contract without a
    /// checker gives "no verdict", never a verdict against it.
    pub fn set_contracts(&mut self, contracts: BTreeSet<String>) {
        self.contracts = contracts;
    }

    pub fn contracts(&self) -> &BTreeSet<String> {
        &self.contracts
    }

    /// Attempts voted on here and not decided yet.
    pub fn undecided_len(&self) -> usize {
        self.undecided.len()
    }

    /// Clients waiting for a raw request to be decided or for an attempt's outcome.
    pub fn waiting_len(&self) -> usize {
        self.waiters.len()
    }

    /// Requests held back for their designated replica to submit first.
    pub fn standby_len(&self) -> usize {
        self.standby.len()
    }

    /// Envelopes being checked or waiting for their verdict certificate.
    pub fn envelopes_len(&self) -> usize {
        self.envelopes.len()
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// When the replica wants a `Tick` before the next regular one (a leader filling its block).
    pub fn due(&self) -> Option<TimeMs> {
        self.replica.propose_due()
    }

    /// Carries one input through, with everything it sets off, and returns what to do.
    pub fn handle(&mut self, now: TimeMs, input: Input) -> Vec<Output> {
        if self.stopped {
            return Vec::new();
        }
        self.now = self.now.max(now);
        match input {
            Input::Frame { from, frame } => self.on_frame(from, frame),
            Input::Client { client, request } => self.on_request(client, request),
            Input::Checked(checked) => checked.into_iter().for_each(|checked| self.on_checked(checked)),
            Input::ClientsGone(clients) => self.waiters.forget_clients(&clients),
            Input::Tick => self.on_tick(),
        }
        // What it says is sealed once the rest of the call is done: acting on its own sealed
        // verdicts and votes may set off more work, and that work is sealed in turn.
        loop {
            while let Some(output) = self.delivered.pop_front() {
                if self.stopped {
                    break;
                }
                self.on_output(output);
            }
            if self.stopped || self.unsealed.is_empty() {
                break;
            }
            self.seal();
        }
        self.unsealed.clear(); // a stopped replica says nothing more
        std::mem::take(&mut self.outputs)
    }

    fn on_tick(&mut self) {
        let now = self.now;
        if now.0 >= self.last_sweep.0.saturating_add(SWEEP_EVERY_MS) {
            self.last_sweep = now;
            self.waiters.sweep(now);
            self.envelopes.retain(|_, pending| now.0 < pending.since.0.saturating_add(ENVELOPE_MS_MAX));
            // A replica catching up sees as undecided what its peers decided long ago: what it
            // would pass on or stand in for would cost every replica for nothing.
            if !self.replica.is_behind() {
                self.pass_on();
            }
        }
        self.submit_due();
        self.step(Event::Tick(now));
    }

    fn on_frame(&mut self, from: PeerId, frame: Frame) {
        if from.shard != self.own.shard && !frame.crosses_shards() {
            let error =
                ProtocolError::Malformed { what: "frame", reason: "only votes and envelopes cross shards".into() };
            self.outputs.push(Output::Dropped { from, error });
            return;
        }
        match frame {
            Frame::Bft(message) => self.step(Event::Message { from: from.replica, message: Box::new(message) }),
            Frame::Verdict(verdict) => match self.verdicts.add(verdict) {
                Ok(Some(certificate)) => self.prepare(certificate),
                Ok(None) => {}
                Err(error) => self.outputs.push(Output::Dropped { from, error }),
            },
            Frame::Vote(vote) => self.on_vote(from, vote),
            Frame::Votes(votes) => votes.into_iter().for_each(|vote| self.on_vote(from, vote)),
            Frame::Envelope { envelope, attempt } => self.on_envelope(envelope, attempt, None),
        }
    }

    fn on_vote(&mut self, from: PeerId, vote: crate::sbac::SignedVote) {
        match self.votes.add(vote) {
            Ok(Some(certificates)) => self.decide(certificates),
            Ok(None) => {}
            Err(error) => self.outputs.push(Output::Dropped { from, error }),
        }
    }

    fn on_request(&mut self, client: ClientId, request: ClientRequest) {
        let reply = match request {
            ClientRequest::Submit(requests) => return self.submit_raw(client, requests),
            ClientRequest::Envelope { envelope, attempt } => return self.on_envelope(envelope, attempt, Some(client)),
            ClientRequest::Status => ClientReply::Status(self.status()),
            ClientRequest::Object(id) => return self.answer_read(client, self.app().answer_object(id)),
            ClientRequest::Transaction(tx) => return self.answer_read(client, self.app().answer_transaction(tx)),
            ClientRequest::List { what, after, limit } => match what.verify() {
                Ok(()) => ClientReply::Page(self.page(what, after, limit)),
                Err(why) => ClientReply::Error(why),
            },
            ClientRequest::Check { envelope } => return self.dry_check(client, &envelope),
            ClientRequest::Decided { from, limit } => self.decided_log(from, limit),
            ClientRequest::Search { from, filter, limit } => {
                let limit = limit.min(DECIDED_PAGE_MAX) as usize;
                let found =
                    crate::sbac::search(&self.app().state().decided, &filter, from, limit, PAGE_ENVELOPE_BYTES_MAX);
                ClientReply::DecidedFound { from, filter, found }
            }
        };
        // A read that failed answered "none": such an answer is never said, signed or not.
        if self.stop_if_unreadable() {
            return;
        }
        self.outputs.push(Output::Reply { client, reply });
    }

    /// A read's answer, sealed with the rest of the call.
    fn answer_read(&mut self, client: ClientId, body: AnswerBody) {
        // A read that failed answered "none": such an answer is never said, signed or not.
        if !self.stop_if_unreadable() {
            self.unsealed.push(Unsealed::Answer { clients: vec![client], body, read: true });
        }
    }

    fn status(&self) -> Status {
        let state = self.app().state();
        Status {
            shard: self.own.shard,
            replica: self.own.replica,
            round: self.replica.round(),
            height: self.replica.tip().height,
            executed: state.executed,
            state: state.log_digest,
            pending: self.replica.mempool_len() as u64,
            leader: self.replica.current_leader(),
        }
    }

    /// A page of the shard's objects or transaction records after `after`, in id order.
    fn page(&self, what: Listing, after: Option<[u8; 32]>, limit: u32) -> Page {
        let app = self.app();
        let limit = limit.min(PAGE_MAX) as usize;
        let mut page = Page::default();
        match what {
            Listing::Objects => {
                let ids = app.state().objects.keys_after(after.map(ObjectId).as_ref(), limit);
                let mut budget = PAGE_ENVELOPE_BYTES_MAX;
                for id in ids {
                    let Some(view) = app.object_view(&id) else { continue };
                    if view.value.len() > budget && !page.objects.is_empty() {
                        page.cut = true;
                        break;
                    }
                    budget = budget.saturating_sub(view.value.len());
                    page.objects.push((id, view));
                }
            }
            Listing::ObjectsWhere(filter) => {
                return crate::sbac::objects_page(&app.state().objects, &filter, after.map(ObjectId), limit);
            }
            Listing::Transactions => {
                let txs = app.state().transactions.keys_after(after.map(TxId).as_ref(), limit);
                let mut budget = PAGE_ENVELOPE_BYTES_MAX;
                for tx in txs {
                    let Some(record) = app.state().transactions.get(&tx) else { continue };
                    let Some(view) = record.view() else { continue };
                    // The envelope that committed, if one did (a later attempt may be recorded after it).
                    let listed = record.committed.unwrap_or(view.attempt);
                    let envelope = record.attempts.get(&listed).map(|attempt| &attempt.envelope);
                    match envelope {
                        Some(envelope) if envelope.len() <= budget => {
                            budget -= envelope.len();
                            page.envelopes.push((tx, envelope.clone()));
                        }
                        // Once one is left out, so are the rest: the envelopes are a prefix.
                        _ => budget = 0,
                    }
                    page.transactions.push((tx, view));
                }
            }
        }
        page
    }

    /// Entries of the decided log from `from` on, as many as `limit`, `DECIDED_PAGE_MAX` and
    /// `PAGE_ENVELOPE_BYTES_MAX` allow (one at least, whatever its size).
    fn decided_log(&self, from: Position, limit: u32) -> ClientReply {
        let decided = &self.app().state().decided;
        let limit = limit.min(DECIDED_PAGE_MAX) as usize;
        let after = from.0.checked_sub(1).map(Position);
        let mut entries = Vec::new();
        let mut budget = PAGE_ENVELOPE_BYTES_MAX;
        for (expected, position) in (from.0..).zip(decided.keys_after(after.as_ref(), limit)) {
            let Some(entry) = decided.get(&position).filter(|_| position.0 == expected) else { break };
            let size = postcard::experimental::serialized_size(&*entry).unwrap_or(usize::MAX);
            if size > budget && !entries.is_empty() {
                break;
            }
            budget = budget.saturating_sub(size);
            entries.push(entry.into_owned());
        }
        ClientReply::DecidedLog { from, entries, length: decided.len() }
    }

    fn submit_raw(&mut self, client: ClientId, requests: Vec<Request>) {
        let (accepted, refused) = self.waiters.wait_for_requests(client, requests, self.now);
        if !refused.is_empty() {
            self.outputs.push(Output::Reply { client, reply: ClientReply::Refused(refused) });
        }
        self.step(Event::SubmitMany(accepted));
    }

    /// Stops the replica if a read of its records failed: whatever the step read as
    /// missing may not be. True if it stopped.
    fn stop_if_unreadable(&mut self) -> bool {
        match self.app().read_fault() {
            Some(fault) => {
                self.stop(Stop::ReadFailed(fault));
                true
            }
            None => false,
        }
    }

    fn stop(&mut self, stop: Stop) {
        self.outputs.push(Output::Stop(stop));
        self.stopped = true;
    }

    /// Runs one event through the BFT replica and plans what it asks: its writes first,
    /// then its messages; what execution produced is acted on once they are out.
    fn step(&mut self, event: Event) {
        if self.stopped {
            return;
        }
        self.replica.advance_clock(self.now);
        let actions = self.replica.handle(event);
        let changes = self.replica.app_mut().take_changes();
        if self.stop_if_unreadable() {
            return;
        }
        let executed_at = |height: Height| self.replica.executed_at(height).map(<[_]>::to_vec);
        let executed_window = || self.replica.executed_window();
        let context = PlanContext {
            decided_height: self.decided_height,
            tip: self.replica.tip(),
            window: self.replica.config().dedup_window_heights,
            checkpoint_interval: self.replica.config().checkpoint_interval,
            executed_at: &executed_at,
            executed_window: &executed_window,
        };
        let plan = plan(actions, changes, &context);
        self.counters.state_transfers += u64::from(plan.transferred);
        self.decided_height = plan.decided_height;
        if let Some(reason) = plan.fatal {
            return self.stop(Stop::LogHalted(reason));
        }
        self.outputs.extend(plan.batches.into_iter().map(Output::Persist));
        for effect in plan.effects {
            self.act(effect);
        }
        self.waiters.reply_decided(plan.decided, &mut self.outputs);
    }

    fn act(&mut self, action: Action<ShardOutput>) {
        let own = self.own;
        match action {
            Action::Send { to, message } => {
                self.outputs
                    .push(Output::Send { to: PeerId { shard: own.shard, replica: to }, frame: Frame::Bft(message) });
            }
            Action::Broadcast(message) => self.broadcast(message),
            Action::ServeSnapshot { to, checkpoint } => {
                self.counters.snapshots_served += 1;
                self.outputs.push(Output::ServeSnapshot { to, checkpoint });
            }
            Action::Deliver(output) => self.delivered.push_back(output),
            Action::Refused(digest) => self.waiters.refused(digest, &mut self.outputs),
            Action::Dropped { from, error } => {
                self.outputs.push(Output::Dropped { from: PeerId { shard: own.shard, replica: from }, error });
            }
            // Planned into writes, or a stop.
            Action::PersistSafety(_)
            | Action::PersistBlock(_)
            | Action::PersistDecided { .. }
            | Action::PersistCheckpoint(_)
            | Action::Fatal(_) => {}
        }
    }

    fn broadcast(&mut self, message: PeerMessage) {
        self.outputs.push(Output::Multicast { shards: vec![self.own.shard], frame: Frame::Bft(message) });
    }
}
