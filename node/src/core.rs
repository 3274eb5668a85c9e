//! `Core`: the one task that owns the replica's protocol state. It feeds every
//! input (peer frames, client commands, checker verdicts, ticks) to the sans-IO
//! `Replica` running the shard's `ShardApp`, and carries out the returned
//! actions in order: the writes before a message or a reply are committed to
//! the store before that message or reply leaves.
//!
//! Around the ordered log it does the replica-side work of S-BAC (DESIGN.md §5):
//! it asks the checkers about an envelope and signs the verdict for its shard;
//! f+1 matching verdicts make the `Prepare` it submits; the vote that executing
//! it produces goes to every replica of every concerned shard; the votes it
//! gathers make the `Decide` it submits; and it passes on, now and then, the
//! envelopes of attempts that take long to be decided.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardspace_core::bft::{
    Action, Committee, Digest, DigestMap, Event, Height, PeerMessage, Replica, ReplicaId, Request, Severity,
    StableCheckpoint, TimeMs, Tip, snapshot_of, snapshot_parts,
};
use shardspace_core::sbac::{
    ATTEMPTS_AHEAD_MAX, Attempt, PreparedCertificate, ShardApp, ShardOutput, ShardRequest, SignedVote, Verdict,
    VerdictCertificate, VerdictCollector, VoteBody, VoteCollector,
};
use shardspace_core::{Envelope, Limits, ObjectId, ShardId, ShardMap, TxId};
use tokio::sync::{mpsc, watch};

use crate::checking::{Checked, Checkers};
use crate::client::{ClientCommand, ClientReply, Listing, PAGE_MAX, Page, Status};
use crate::metrics::{DecisionLabel, NodeMetrics};
use crate::network::{Frame, PeerId, PeerSender, encode};
use crate::store::{Store, StoreError, Write};

/// How often the replica's clock ticks.
pub const TICK_MS: u64 = 10;
/// Requests whose submitter waits to hear they were decided.
pub const WAITING_MAX: usize = 200_000;
/// How long a submitter is remembered: a request never decided here (executed
/// before, or skipped by a snapshot) must not hold its place for ever.
pub const WAITING_MS_MAX: u64 = 120_000;
/// Envelopes being checked, or checked and waiting for their verdict certificate.
pub const ENVELOPES_MAX: usize = 10_000;
/// How long a checked envelope waits for its shard's verdict certificate.
const ENVELOPE_MS_MAX: u64 = 60_000;
/// Gatherings of verdicts and of votes kept at once.
const COLLECTOR_CAPACITY: usize = 20_000;
/// An attempt undecided this long has its envelope passed on to every concerned replica.
const PASS_ON_AFTER_MS: u64 = 2_000;
/// Envelopes passed on per sweep.
const PASS_ON_MAX: usize = 64;
/// How long a replica that is not an attempt's designated submitter holds back the
/// attempt's `Prepare` or `Decide` before it submits its own (one submission, not one per
/// replica, each ordered and verified by every replica; a silent designated replica
/// delays the attempt by this much).
const STANDBY_MS: u64 = 500;
/// Requests held back at once.
const STANDBY_MAX: usize = 20_000;
/// How often forgotten submitters are swept out and envelopes passed on.
const SWEEP_EVERY_MS: u64 = 1_000;

/// Requests decided, each with its height.
type DecidedBatch = Vec<(Digest, Height)>;

/// Why the core stopped.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("the decided log cannot go on: {0}")]
    Fatal(String),
}

/// An envelope this replica checks, or checked: what its shard's verdict certificate prepares.
#[derive(Debug)]
struct Pending {
    json: String,
    attempt: Attempt,
    since: TimeMs,
    /// Its `Prepare` was submitted or stood by already: the verdict collector gives the
    /// certificate again for each verdict still arriving, and once is enough.
    submitted: bool,
}

/// A client waiting for the outcome of an attempt.
type OutcomeWaiter = (mpsc::Sender<ClientReply>, TimeMs);

#[derive(Debug)]
pub struct Core {
    replica: Replica<ShardApp>,
    store: Store,
    own: PeerId,
    map: ShardMap,
    /// Every other replica of the cluster, by shard and id.
    peers: BTreeMap<PeerId, PeerSender>,
    checkers: Checkers,
    limits: Limits,
    verdicts: VerdictCollector,
    votes: VoteCollector,
    envelopes: BTreeMap<(TxId, [u8; 32]), Pending>,
    /// Verdict certificates completed by peers' verdicts before this replica held the
    /// envelope: used when the envelope comes (else the next verdict would bring it again).
    early: BTreeMap<(TxId, [u8; 32]), VerdictCertificate>,
    /// Which client connection waits for which raw request, since when.
    waiting: DigestMap<(mpsc::Sender<ClientReply>, TimeMs)>,
    outcomes: BTreeMap<(TxId, Attempt), Vec<OutcomeWaiter>>,
    /// Attempts voted on here and not decided yet, with when they were last passed on.
    undecided: BTreeMap<(TxId, Attempt), TimeMs>,
    /// The height of the last decided block written: a checkpoint above it is a state transfer.
    decided_height: Height,
    /// S-BAC requests held back for the designated replica, in the order they fall due.
    standby: std::collections::VecDeque<(TimeMs, ShardRequest)>,
    metrics: Arc<NodeMetrics>,
    started: Instant,
}

impl Core {
    pub fn new(
        replica: Replica<ShardApp>,
        store: Store,
        committees: Vec<Committee>,
        peers: BTreeMap<PeerId, PeerSender>,
        checkers: Checkers,
        limits: Limits,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        let app = replica.app();
        let own = PeerId { shard: app.shard(), replica: replica.id() };
        let shards = u32::try_from(committees.len()).unwrap_or(u32::MAX);
        let map = ShardMap::new(shards).unwrap_or(ShardMap::new(1).expect("one shard is a valid map"));
        let undecided = app.undecided().map(|key| (key, TimeMs(0))).collect();
        let verdicts = VerdictCollector::new(committees[own.shard.0 as usize].clone(), COLLECTOR_CAPACITY);
        Self {
            decided_height: replica.tip().height,
            replica,
            store,
            own,
            map,
            peers,
            checkers,
            limits,
            verdicts,
            votes: VoteCollector::new(committees, COLLECTOR_CAPACITY),
            envelopes: BTreeMap::new(),
            early: BTreeMap::new(),
            waiting: DigestMap::default(),
            outcomes: BTreeMap::new(),
            undecided,
            standby: Default::default(),
            metrics,
            started: Instant::now(),
        }
    }

    pub async fn run(
        mut self,
        mut rx_peers: mpsc::Receiver<(PeerId, Frame)>,
        mut rx_clients: mpsc::Receiver<ClientCommand>,
        mut rx_checked: mpsc::Receiver<Checked>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), CoreError> {
        let mut last_sweep = TimeMs(0);
        let mut ticker = tokio::time::interval(Duration::from_millis(TICK_MS));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            // A leader waiting to fill its block (`propose_after_ms`) is ticked when it is due.
            let propose_due = self.replica.propose_due().map(|due| {
                let due = Duration::from_millis(due.0.saturating_sub(self.now().0));
                tokio::time::Instant::now() + due
            });
            tokio::select! {
                Some((from, frame)) = rx_peers.recv() => self.on_frame(from, frame).await?,
                () = async { tokio::time::sleep_until(propose_due.unwrap_or_else(tokio::time::Instant::now)).await }, if propose_due.is_some() => {
                    self.step(Event::Tick(self.now())).await?;
                }
                Some(command) = rx_clients.recv() => self.on_command(command).await?,
                Some(checked) = rx_checked.recv() => self.on_checked(checked).await?,
                _ = ticker.tick() => {
                    let now = self.now();
                    if now.0 >= last_sweep.0.saturating_add(SWEEP_EVERY_MS) {
                        last_sweep = now;
                        self.sweep(now);
                        self.report();
                        self.pass_on(now).await?;
                    }
                    self.submit_due(now).await?;
                    self.step(Event::Tick(now)).await?;
                }
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    fn now(&self) -> TimeMs {
        TimeMs(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    async fn step(&mut self, event: Event) -> Result<(), CoreError> {
        self.replica.advance_clock(self.now());
        let actions = self.replica.handle(event);
        self.execute(actions).await
    }

    /// Orders an S-BAC request. It also goes at once to every replica of the shard: a request
    /// waits in a mempool for its replica's turn as leader before it is forwarded
    /// (`request_forward_after_ms`), which suits a flood of client requests, not the few
    /// steps of a commit a client waits on; and a request in every mempool keeps every
    /// replica's round timer armed, so a replica whose view of the rounds lags cannot hold
    /// it alone while the others sit idle.
    async fn submit(&mut self, request: &ShardRequest) -> Result<(), CoreError> {
        let payload = postcard::to_stdvec(request).expect("encoding into memory cannot fail");
        let request = Request::new(payload);
        self.broadcast(PeerMessage::Requests(vec![request.clone()]));
        self.step(Event::Submit(request)).await
    }

    async fn on_frame(&mut self, from: PeerId, frame: Frame) -> Result<(), CoreError> {
        match frame {
            Frame::Bft(message) => {
                self.step(Event::Message { from: from.replica, message: Box::new(message) }).await?;
            }
            Frame::Verdict(verdict) => match self.verdicts.add(verdict) {
                Ok(Some(certificate)) => self.prepare(certificate).await?,
                Ok(None) => {}
                Err(error) => tracing::warn!(peer = %from, %error, "dropped a verdict"),
            },
            Frame::Vote(vote) => match self.votes.add(vote) {
                Ok(Some(certificates)) => self.decide(certificates).await?,
                Ok(None) => {}
                Err(error) => tracing::warn!(peer = %from, %error, "dropped a vote"),
            },
            Frame::Envelope { envelope, attempt } => self.on_envelope(envelope, attempt, None).await?,
        }
        Ok(())
    }

    async fn on_command(&mut self, command: ClientCommand) -> Result<(), CoreError> {
        match command {
            ClientCommand::Submit { requests, tx_client } => self.submit_raw(requests, tx_client).await?,
            ClientCommand::Status(reply) => {
                let _ = reply.send(self.status());
            }
            ClientCommand::Envelope { envelope, attempt, tx_client } => {
                self.on_envelope(envelope, attempt, Some(tx_client)).await?;
            }
            ClientCommand::Object(id, reply) => {
                let _ = reply.send(self.replica.app().answer_object(id));
            }
            ClientCommand::Transaction(tx, reply) => {
                let _ = reply.send(self.replica.app().answer_transaction(tx));
            }
            ClientCommand::List { what, after, limit, reply } => {
                let _ = reply.send(self.page(what, after, limit));
            }
        }
        Ok(())
    }

    /// Sets the gauges of `/metrics`.
    fn report(&self) {
        let gauge = |gauge: &prometheus_client::metrics::gauge::Gauge, value: u64| {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        let state = self.replica.app().state();
        gauge(&self.metrics.height, self.replica.tip().height.0);
        gauge(&self.metrics.round, self.replica.round().0);
        gauge(&self.metrics.executed, state.executed);
        gauge(&self.metrics.mempool, self.replica.mempool_len() as u64);
        gauge(&self.metrics.undecided_attempts, self.undecided.len() as u64);
        gauge(&self.metrics.envelopes_checking, self.envelopes.len() as u64);
        gauge(&self.metrics.objects, state.objects.len());
        gauge(&self.metrics.transactions, state.transactions.len());
    }

    /// A page of the shard's objects or transaction records after `after`, in id order.
    fn page(&self, what: Listing, after: Option<[u8; 32]>, limit: u32) -> Page {
        let app = self.replica.app();
        let limit = limit.min(PAGE_MAX) as usize;
        let mut page = Page::default();
        match what {
            Listing::Objects => {
                let ids = app.state().objects.keys_after(after.map(ObjectId).as_ref(), limit);
                page.objects = ids.into_iter().filter_map(|id| Some((id, app.object_view(&id)?))).collect();
            }
            Listing::Transactions => {
                let txs = app.state().transactions.keys_after(after.map(TxId).as_ref(), limit);
                page.transactions = txs.into_iter().filter_map(|tx| Some((tx, app.tx_view(&tx)?))).collect();
            }
        }
        page
    }

    fn status(&self) -> Status {
        let state = self.replica.app().state();
        Status {
            shard: self.own.shard,
            replica: self.replica.id(),
            round: self.replica.round(),
            height: self.replica.tip().height,
            executed: state.executed,
            state: state.log_digest,
            pending: self.replica.mempool_len() as u64,
        }
    }

    async fn submit_raw(
        &mut self,
        requests: Vec<Request>,
        tx_client: mpsc::Sender<ClientReply>,
    ) -> Result<(), CoreError> {
        let now = self.now();
        let mut accepted = Vec::with_capacity(requests.len());
        let mut refused = Vec::new();
        for request in requests {
            let digest = request.digest();
            if self.waiting.len() < WAITING_MAX {
                self.waiting.insert(digest, (tx_client.clone(), now));
                accepted.push(request);
            } else {
                refused.push(digest);
            }
        }
        if !refused.is_empty() {
            let _ = tx_client.try_send(ClientReply::Refused(refused));
        }
        self.step(Event::SubmitMany(accepted)).await
    }

    /// An attempt's envelope, from a client or passed on by a peer: answered from the
    /// record if this shard voted on it, else checked (and refused here if it cannot be).
    async fn on_envelope(
        &mut self,
        json: String,
        attempt: Attempt,
        client: Option<mpsc::Sender<ClientReply>>,
    ) -> Result<(), CoreError> {
        let metrics = Arc::clone(&self.metrics);
        let reject = |tx: Option<TxId>, kind: &str, message: String| {
            metrics.envelopes_rejected.inc();
            if let Some(client) = &client {
                let _ = client.try_send(ClientReply::Rejected { tx, kind: kind.into(), message });
            }
        };
        let envelope = match Envelope::from_json(json.as_bytes(), &self.limits) {
            Ok(envelope) => envelope,
            Err(error) => {
                reject(None, error.kind(), format!("{error} ({})", error.hint()));
                return Ok(());
            }
        };
        let tx = envelope.transaction.tx_id();
        let app = self.replica.app();
        let latest = app.state().transactions.get(&tx).and_then(|record| record.latest()).map_or(0, |latest| latest.0);
        // A client is told; an envelope passed on by a shard that prepared it is voted on
        // even when far ahead here (it is voted down), so that that shard hears an abort.
        let far_ahead = attempt.0 > latest.saturating_add(ATTEMPTS_AHEAD_MAX);
        if attempt.0 == 0 || (far_ahead && client.is_some()) {
            let message = format!(
                "attempt {} of {tx}: attempts count from 1, at most {ATTEMPTS_AHEAD_MAX} ahead of the latest here ({latest})",
                attempt.0
            );
            reject(Some(tx), "bad_attempt", message);
            return Ok(());
        }
        if !self.map.concerned_shards(&envelope.transaction).contains(&self.own.shard) {
            reject(Some(tx), "wrong_shard", format!("{tx} has no object on {}: send it to its shards", self.own.shard));
            return Ok(());
        }
        let decided = app.attempt_view(&tx, attempt).is_some_and(|view| view.decision.is_some());
        if decided {
            // Answered from the record; the vote goes again too: the shard passing this on
            // may have lost the votes that would decide it there.
            if let Some(client) = &client {
                let _ = client.try_send(ClientReply::Answer(app.answer_attempt(tx, attempt)));
            }
            if let Some((vote, concerned)) = app.recorded_vote(tx, attempt) {
                self.send_vote(vote, &concerned);
            }
            return Ok(());
        }
        if app.recorded_vote(tx, attempt).is_some() {
            // Voted already (the votes may have been lost): say it again, and wait for the decision.
            self.accepted(tx, attempt, client);
            return self.vote_again(tx, attempt).await;
        }
        if let Some(contract) = self.checkers.unknown_contract(&envelope.transaction) {
            let message = format!("no checker for contract {contract:?} in the cluster file ({tx})");
            reject(Some(tx), "unknown_contract", message);
            return Ok(());
        }
        let key = (tx, envelope.digest());
        if !self.envelopes.contains_key(&key) {
            if self.envelopes.len() >= ENVELOPES_MAX {
                reject(Some(tx), "busy", format!("{ENVELOPES_MAX} transactions are being checked: try again soon"));
                return Ok(());
            }
            self.envelopes.insert(key, Pending { json, attempt, since: self.now(), submitted: false });
            self.checkers.start(&envelope);
        }
        self.accepted(tx, attempt, client);
        match self.early.remove(&key) {
            Some(certificate) => self.prepare(certificate).await,
            None => Ok(()),
        }
    }

    /// Tells the client its envelope was taken, and remembers that it waits for the outcome.
    fn accepted(&mut self, tx: TxId, attempt: Attempt, client: Option<mpsc::Sender<ClientReply>>) {
        if let Some(client) = client {
            let _ = client.try_send(ClientReply::Accepted { tx, attempt });
            let now = self.now();
            let waiters = self.outcomes.entry((tx, attempt)).or_default();
            if !waiters.iter().any(|(waiting, _)| waiting.same_channel(&client)) {
                waiters.push((client, now));
            }
        }
    }

    /// Sends this replica's recorded vote on an attempt again, and gathers votes for its
    /// decision again: after a restart (outputs are not delivered twice) or lost messages,
    /// this is what lets an undecided attempt be decided.
    async fn vote_again(&mut self, tx: TxId, attempt: Attempt) -> Result<(), CoreError> {
        let app = self.replica.app();
        let Some((vote, concerned)) = app.recorded_vote(tx, attempt) else { return Ok(()) };
        let vote = self.send_vote(vote, &concerned);
        if self.replica.app().attempt_view(&tx, vote.attempt).is_some_and(|view| view.decision.is_some()) {
            return Ok(()); // decided here: nothing to gather
        }
        let mut complete = self.votes.expect(vote.tx, vote.attempt, vote.envelope, concerned);
        if let Ok(Some(certificates)) = self.votes.add(vote) {
            complete = Some(certificates);
        }
        match complete {
            Some(certificates) => self.decide(certificates).await,
            None => Ok(()),
        }
    }

    /// The checkers answered: sign the verdict and share it with the shard.
    async fn on_checked(&mut self, checked: Checked) -> Result<(), CoreError> {
        let Some(pending) = self.envelopes.get(&(checked.tx, checked.envelope)) else { return Ok(()) };
        let success = match checked.verdict {
            Ok((success, reason)) => {
                tracing::debug!(tx = %checked.tx, success, reason, "checker verdict");
                success
            }
            Err(error) => {
                // No verdict, never a false: the attempt waits for a retry (a client or a pass-on).
                tracing::warn!(tx = %checked.tx, %error, "no checker verdict; the envelope is dropped here");
                self.metrics.checker_unavailable.inc();
                let attempt = pending.attempt;
                self.envelopes.remove(&(checked.tx, checked.envelope));
                for (client, _) in self.outcomes.remove(&(checked.tx, attempt)).unwrap_or_default() {
                    let message = format!("no verdict for {}: {error}", checked.tx);
                    let reply =
                        ClientReply::Rejected { tx: Some(checked.tx), kind: "checker_unavailable".into(), message };
                    let _ = client.try_send(reply);
                }
                return Ok(());
            }
        };
        let app = self.replica.app();
        let bytes = Verdict::signing_bytes(app.own_committee(), &checked.tx, &checked.envelope, success);
        let signature = app.keys().sign(&bytes);
        let verdict =
            Verdict { tx: checked.tx, envelope: checked.envelope, success, replica: self.own.replica, signature };
        let frame = encode(&Frame::Verdict(verdict.clone()));
        self.send_to_shard(self.own.shard, &frame);
        match self.verdicts.add(verdict) {
            Ok(Some(certificate)) => self.prepare(certificate).await,
            Ok(None) => Ok(()),
            Err(error) => {
                tracing::error!(%error, "this replica's own verdict does not verify: is its key the listed one?");
                Ok(())
            }
        }
    }

    /// f+1 matching verdicts: order the `Prepare` (if this replica holds the envelope).
    async fn prepare(&mut self, verdict: VerdictCertificate) -> Result<(), CoreError> {
        let key = (verdict.tx, verdict.envelope);
        let Some(pending) = self.envelopes.get_mut(&key) else {
            // A second certificate from late verdicts, once this envelope was prepared here
            // (its envelope then leaves `envelopes`), is not kept.
            let transactions = &self.replica.app().state().transactions;
            let prepared =
                transactions.get(&key.0).is_some_and(|record| record.attempts.values().any(|a| a.digest == key.1));
            if prepared {
                return Ok(());
            }
            if self.early.len() >= ENVELOPES_MAX {
                self.early.pop_first();
            }
            self.early.insert(key, verdict);
            return Ok(());
        };
        if std::mem::replace(&mut pending.submitted, true) {
            return Ok(());
        }
        let (tx, attempt) = (verdict.tx, pending.attempt);
        let request = ShardRequest::Prepare { envelope: pending.json.clone(), attempt, verdict };
        self.submit_or_stand_by(tx, attempt, request).await
    }

    /// Certificates of every concerned shard (or one abort): order the `Decide`.
    async fn decide(&mut self, certificates: Vec<PreparedCertificate>) -> Result<(), CoreError> {
        let Some(first) = certificates.first() else { return Ok(()) };
        let (tx, attempt) = (first.tx, first.attempt);
        self.submit_or_stand_by(tx, attempt, ShardRequest::Decide { tx, attempt, certificates }).await
    }

    /// The designated replica of an attempt submits at once; the others hold the request back
    /// and submit it only if the attempt has not moved on by then.
    async fn submit_or_stand_by(&mut self, tx: TxId, attempt: Attempt, request: ShardRequest) -> Result<(), CoreError> {
        let replicas = self.replica.app().own_committee().size() as u64;
        let designated = (u64::from(u32::from_be_bytes([tx.0[0], tx.0[1], tx.0[2], tx.0[3]])) + u64::from(attempt.0))
            % replicas.max(1);
        if designated == u64::from(self.own.replica.0) {
            return self.submit(&request).await;
        }
        if self.standby.len() >= STANDBY_MAX {
            self.standby.pop_front();
        }
        let due = self.now().plus(STANDBY_MS);
        self.standby.push_back((due, request));
        Ok(())
    }

    /// Submits held-back requests that fell due and are still needed.
    async fn submit_due(&mut self, now: TimeMs) -> Result<(), CoreError> {
        while self.standby.front().is_some_and(|(due, _)| *due <= now) {
            let Some((_, request)) = self.standby.pop_front() else { break };
            let app = self.replica.app();
            let needed = match &request {
                ShardRequest::Prepare { verdict, attempt, .. } => app.attempt_view(&verdict.tx, *attempt).is_none(),
                ShardRequest::Decide { tx, attempt, .. } => {
                    app.attempt_view(tx, *attempt).is_none_or(|view| view.decision.is_none())
                }
            };
            if needed {
                self.submit(&request).await?;
            }
        }
        Ok(())
    }

    /// Signs this replica's vote and sends it to every replica of the concerned shards.
    fn send_vote(&self, vote: VoteBody, concerned: &[ShardId]) -> SignedVote {
        let app = self.replica.app();
        let vote = vote.sign(app.own_committee(), app.keys());
        self.metrics.votes_sent.inc();
        let frame = encode(&Frame::Vote(vote.clone()));
        for shard in concerned {
            self.send_to_shard(*shard, &frame);
        }
        vote
    }

    fn send_to_shard(&self, shard: ShardId, frame: &Bytes) {
        let replicas = self.peers.range(PeerId { shard, replica: shardspace_core::bft::ReplicaId(0) }..);
        for (_, peer) in replicas.take_while(|(id, _)| id.shard == shard) {
            peer.send_encoded(frame.clone());
        }
    }

    /// Carries out actions; every write is committed, in one SQLite transaction (one
    /// fsync), before anything is said: saying something later than the state machine
    /// allowed is always safe, and one commit per step instead of one per message halves
    /// the store's work per round. The outputs of execution are acted on last, once the
    /// decided blocks behind them and the read-model rows they changed are committed.
    async fn execute(&mut self, actions: Vec<Action<ShardOutput>>) -> Result<(), CoreError> {
        let mut writes = Vec::new();
        let mut decided: DecidedBatch = Vec::new();
        let mut outputs = Vec::new();
        let (mut transferred, mut moved) = (false, false);
        let mut effects = Vec::new();
        let mut changes = self.replica.app_mut().take_changes().into_iter().peekable();
        if let Some(fault) = self.store.fault() {
            tracing::error!(fault, "stopping: the shard's records cannot be read");
            return Err(CoreError::Fatal(fault));
        }
        let window = self.replica.config().dedup_window_heights;
        for action in actions {
            match action {
                Action::PersistSafety(state) => writes.push(Write::Safety(state)),
                Action::PersistBlock(block) => writes.push(Write::Block(block)),
                Action::PersistDecided { height, block } => {
                    decided.extend(block.requests.iter().map(|request| (request.digest(), height)));
                    (self.decided_height, moved) = (height, true);
                    let tip = Tip { block: block.digest(), round: block.round, height };
                    writes.push(Write::Decided { height: height.0, block });
                    if let Some(digests) = self.replica.executed_at(height) {
                        let forget_below = height.0.saturating_sub(window).saturating_add(1);
                        writes.push(Write::Executed { height: height.0, digests: digests.to_vec(), forget_below });
                    }
                    // The changes up to a checkpoint commit before any later one, and the
                    // store keeps a view of them: the body of that checkpoint, for peers.
                    if let Some(cut) = changes.next_if(|cut| cut.until == Some(height)) {
                        writes.push(Write::Resume { tip, head: cut.head.clone() });
                        writes.push(Write::Records(cut));
                        writes.push(Write::Pin(height.0));
                        self.flush(&mut writes).await?;
                    }
                }
                Action::PersistCheckpoint(checkpoint) => {
                    if checkpoint.certificate.point.height > self.decided_height {
                        transferred = true;
                        self.decided_height = checkpoint.certificate.point.height;
                        tracing::info!(height = self.decided_height.0, "state transferred from peers");
                    }
                    writes.push(Write::Checkpoint(checkpoint));
                }
                Action::Fatal(reason) => {
                    tracing::error!(reason, "stopping: the decided log cannot go on");
                    return Err(CoreError::Fatal(reason));
                }
                effect => effects.push(effect),
            }
        }
        for rest in changes {
            let changed = rest.replace || !rest.objects.is_empty() || !rest.transactions.is_empty();
            // Each decided block, empty ones too, moves the height a restart takes up from.
            if changed || moved || transferred {
                writes.push(Write::Resume { tip: self.replica.tip(), head: rest.head.clone() });
                writes.push(Write::Records(rest));
            }
        }
        self.flush(&mut writes).await?;
        for action in effects {
            match action {
                Action::Send { to, message } => {
                    if let Some(peer) = self.peers.get(&PeerId { shard: self.own.shard, replica: to }) {
                        peer.send(&Frame::Bft(message));
                    }
                }
                Action::Broadcast(message) => self.broadcast(message),
                Action::ServeSnapshot { to, checkpoint } => self.serve_snapshot(to, checkpoint),
                Action::Deliver(output) => outputs.push(output),
                Action::Refused(digest) => {
                    if let Some((client, _)) = self.waiting.remove(&digest) {
                        let _ = client.try_send(ClientReply::Refused(vec![digest]));
                    }
                }
                Action::Dropped { from, error } => match error.severity() {
                    Severity::Byzantine => tracing::warn!(peer = %from, %error, "dropped a message from a peer"),
                    Severity::Stale => tracing::debug!(peer = %from, %error, "dropped a stale message"),
                },
                // Taken out above.
                Action::PersistSafety(_)
                | Action::PersistBlock(_)
                | Action::PersistDecided { .. }
                | Action::PersistCheckpoint(_)
                | Action::Fatal(_) => {}
            }
        }
        self.reply_decided(decided);
        for output in outputs {
            self.on_output(output).await?;
        }
        Ok(())
    }

    /// Sends a peer that catches up the checkpoint with its body, read from the store's
    /// view of it off the core task. A peer gets nothing if the store keeps no such view
    /// (it asks another) or is reading one already (a peer must not buy many large reads).
    fn serve_snapshot(&self, to: ReplicaId, checkpoint: StableCheckpoint) {
        let Some(peer) = self.peers.get(&PeerId { shard: self.own.shard, replica: to }).cloned() else { return };
        let store = self.store.clone();
        tokio::spawn(async move {
            let height = checkpoint.certificate.point.height;
            let body = match store.snapshot_body(height.0).await {
                Ok(Some(body)) => body,
                Ok(None) => {
                    tracing::debug!(peer = %to, height = height.0, "no view of that checkpoint to serve");
                    return;
                }
                Err(error) => {
                    tracing::warn!(peer = %to, height = height.0, %error, "could not read a checkpoint's body");
                    return;
                }
            };
            let Ok((head, _)) = snapshot_parts(&checkpoint.state) else { return };
            let state = snapshot_of(head, Some(&body));
            let certificate = checkpoint.certificate;
            peer.send(&Frame::Bft(PeerMessage::Snapshot { certificate, state }));
            tracing::info!(peer = %to, height = height.0, bytes = body.len(), "served a checkpoint's state");
        });
    }

    fn broadcast(&self, message: PeerMessage) {
        let frame = encode(&Frame::Bft(message));
        self.send_to_shard(self.own.shard, &frame);
    }

    /// Acts on what executing the log produced.
    async fn on_output(&mut self, output: ShardOutput) -> Result<(), CoreError> {
        match output {
            ShardOutput::Vote { vote, concerned } => {
                let (tx, attempt) = (vote.tx, vote.attempt);
                self.envelopes.remove(&(tx, vote.envelope));
                if concerned.as_slice() == [self.own.shard] {
                    return Ok(()); // decided with its vote (`ShardApp::decide_alone`): nothing to gather
                }
                let vote = self.send_vote(vote, &concerned);
                let decided = self.replica.app().tx_view(&tx).is_some_and(|view| view.committed.is_some());
                if !decided {
                    let now = self.now();
                    self.undecided.entry((tx, attempt)).or_insert(now);
                }
                let mut complete = self.votes.expect(tx, attempt, vote.envelope, concerned);
                match self.votes.add(vote) {
                    Ok(Some(certificates)) => complete = Some(certificates),
                    Ok(None) => {}
                    Err(error) => tracing::error!(%error, "this replica's own vote does not verify"),
                }
                if let Some(certificates) = complete {
                    Box::pin(self.decide(certificates)).await?;
                }
                Ok(())
            }
            ShardOutput::Decided { tx, attempt, committed } => {
                self.undecided.remove(&(tx, attempt));
                tracing::debug!(%tx, attempt = attempt.0, committed, "decided");
                self.votes.forget(tx, attempt);
                let decision = if committed { "commit" } else { "abort" };
                self.metrics.decisions.get_or_create(&DecisionLabel { decision: decision.into() }).inc();
                let answer = self.replica.app().answer_attempt(tx, attempt);
                let mut waiters = self.outcomes.remove(&(tx, attempt)).unwrap_or_default();
                if committed {
                    // Committed for good: every later attempt has this outcome too.
                    let later: Vec<_> =
                        self.outcomes.range((tx, attempt)..).take_while(|(k, _)| k.0 == tx).map(|(k, _)| *k).collect();
                    for key in later {
                        waiters.extend(self.outcomes.remove(&key).unwrap_or_default());
                    }
                }
                for (client, _) in waiters {
                    let _ = client.try_send(ClientReply::Answer(answer.clone()));
                }
                Ok(())
            }
            ShardOutput::Refused { reason } => {
                tracing::debug!(reason, "the shard refused an ordered request");
                Ok(())
            }
        }
    }

    async fn flush(&mut self, writes: &mut Vec<Write>) -> Result<(), CoreError> {
        if !writes.is_empty() {
            self.store.write(std::mem::take(writes)).await?;
        }
        Ok(())
    }

    /// Forgets submitters whose connection closed or who waited too long, and stale envelopes.
    fn sweep(&mut self, now: TimeMs) {
        let fresh = |since: TimeMs, max: u64| now.0 < since.0.saturating_add(max);
        self.waiting.retain(|_, (client, since)| !client.is_closed() && fresh(*since, WAITING_MS_MAX));
        self.outcomes.retain(|_, waiters| {
            waiters.retain(|(client, since)| !client.is_closed() && fresh(*since, WAITING_MS_MAX));
            !waiters.is_empty()
        });
        self.envelopes.retain(|_, pending| fresh(pending.since, ENVELOPE_MS_MAX));
    }

    /// Attempts undecided for a while: their envelope goes to every replica of every
    /// concerned shard (one that voted answers with its vote again; one that never saw it
    /// checks and prepares it), and this replica's own vote goes again.
    async fn pass_on(&mut self, now: TimeMs) -> Result<(), CoreError> {
        let due: Vec<(TxId, Attempt)> = self
            .undecided
            .iter()
            .filter(|(_, since)| now.0 >= since.0.saturating_add(PASS_ON_AFTER_MS))
            .map(|(key, _)| *key)
            .take(PASS_ON_MAX)
            .collect();
        for (tx, attempt) in due {
            let app = self.replica.app();
            let pending = app.state().undecided.contains(&(tx, attempt)).then(|| app.prepared(&tx, attempt));
            let Some(Some((envelope, concerned))) = pending else {
                self.undecided.remove(&(tx, attempt));
                continue;
            };
            let frame = encode(&Frame::Envelope { envelope, attempt });
            for shard in &concerned {
                self.send_to_shard(*shard, &frame);
            }
            tracing::debug!(%tx, attempt = attempt.0, "passed on an undecided attempt");
            self.undecided.insert((tx, attempt), now);
            self.vote_again(tx, attempt).await?;
        }
        Ok(())
    }

    /// Tells each waiting client which of its raw requests were decided, one reply per connection.
    fn reply_decided(&mut self, decided: DecidedBatch) {
        if self.waiting.is_empty() {
            return;
        }
        let mut by_client: Vec<(mpsc::Sender<ClientReply>, DecidedBatch)> = Vec::new();
        for (digest, height) in decided {
            let Some((client, _)) = self.waiting.remove(&digest) else { continue };
            match by_client.iter_mut().find(|(sender, _)| sender.same_channel(&client)) {
                Some((_, batch)) => batch.push((digest, height)),
                None => by_client.push((client, vec![(digest, height)])),
            }
        }
        for (client, batch) in by_client {
            let _ = client.try_send(ClientReply::Decided(batch));
        }
    }
}
