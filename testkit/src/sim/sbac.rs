//! The S-BAC simulator: several shards of BFT replicas running `ShardApp`, with
//! the replica-side work of a real replica (calling the checker, certifying
//! verdicts, sending votes across shards, gathering certificates, submitting
//! decisions), over the same seeded faulty network. After every step it checks
//! I1 (no object consumed by two committed transactions), I2 (an attempt is
//! committed by every concerned shard or by none), I3 (honest replicas of a
//! shard decide the same blocks and the same outcomes) and I4 (an honest replica
//! never votes two ways on an attempt); at the end, that every transaction was
//! decided and no lock is left (I6).

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use shardspace_core::bft::{
    Action, Committee, Config, Digest, Event, Height, KeyPair, PeerMessage, Replica, ReplicaId, Request, TimeMs,
};
use shardspace_core::sbac::{
    Attempt, ObjectStatus, PreparedCertificate, ShardApp, ShardOutput, ShardRequest, SignedVote, Verdict,
    VerdictCertificate, VerdictCollector, VoteCollector,
};
use shardspace_core::{Envelope, Limits, Object, ShardId, ShardMap, Transaction, TxId};

use super::Disk;
use super::network::{LinkFaults, Network};
use super::timeline::Timeline;

const REPLICAS: u32 = 4;
/// Gatherings a replica keeps at once.
const COLLECTOR_CAPACITY: usize = 4_096;
/// How often a replica passes on the envelopes of attempts it prepared and has not seen decided.
const PASS_ON_EVERY_MS: u64 = 2_000;
/// Envelopes passed on at a time.
const PASS_ON_MAX: usize = 16;
/// Lines of trace kept to explain a failing seed.
const TRACE_MAX: usize = 100_000;

/// What travels between simulated replicas.
#[derive(Clone, Debug)]
enum Message {
    /// Inside a shard: the BFT protocol.
    Peer(Box<PeerMessage>),
    /// Inside a shard: a replica's signed checker verdict.
    Verdict(Verdict),
    /// Between shards: a replica's signed vote.
    Vote(SignedVote),
    /// From the client: an envelope to check and prepare, as one attempt.
    Envelope(String, Attempt),
}

#[derive(Debug)]
enum Scheduled {
    Deliver {
        from: u32,
        to: u32,
        message: Message,
    },
    Tick(u32),
    Crash(u32),
    Restart(u32),
    /// Cuts every link between these replicas (global ids) and the rest, both ways.
    Isolate(Vec<u32>),
    Heal,
}

/// One replica: the BFT replica of its shard, and its collectors.
#[derive(Debug)]
struct Node {
    shard: ShardId,
    keys: KeyPair,
    /// `None` while crashed.
    replica: Option<Replica<ShardApp>>,
    disk: Disk,
    verdicts: VerdictCollector,
    votes: VoteCollector,
    /// Envelopes this replica checked, by txId: the one a certificate is for.
    envelopes: BTreeMap<TxId, (String, Attempt)>,
    /// Whether this replica lies: it signs the opposite verdict and vote.
    liar: bool,
}

/// The outcome of one seed.
#[derive(Debug)]
pub struct SbacReport {
    pub seed: u64,
    pub shards: u32,
    /// Attempts with a dependency whose inputs live on a shard the outer call does not touch.
    pub third_shard_dependencies: usize,
    /// Attempts that read a reference.
    pub with_references: usize,
    pub violations: Vec<String>,
    pub committed: usize,
    pub aborted: usize,
    /// Requests the lying replica forged, and requests honest replicas refused.
    pub forged: u64,
    pub refused: usize,
}

#[derive(Debug)]
pub struct SbacSimulation {
    rng: StdRng,
    timeline: Timeline<Scheduled>,
    nodes: Vec<Node>,
    committees: Vec<Committee>,
    map: ShardMap,
    network: Network,
    config: Config,
    /// The decision of each attempt at each shard, by the first honest replica.
    decisions: BTreeMap<(TxId, Attempt, ShardId), bool>,
    /// The block decided at each height of each shard.
    blocks: BTreeMap<(ShardId, Height), Digest>,
    /// Each honest replica's first vote on each attempt (accept or not, and on which envelope).
    votes: BTreeMap<(u32, TxId, Attempt), (bool, [u8; 32])>,
    /// Which committed transaction consumed each object.
    consumed: BTreeMap<shardspace_core::ObjectId, TxId>,
    pub violations: Vec<String>,
    /// Requests honest replicas refused, and the decisions they submitted (for a failing seed).
    pub trace: Vec<String>,
    /// Decisions submitted so far: what the lying replica replays with the wrong attempt.
    submitted_decisions: Vec<(TxId, Attempt, Vec<PreparedCertificate>)>,
    /// Requests the lying replica slipped into its shard's log.
    pub forged_requests: u64,
}

/// The checkers of the simulated contracts, over every call of the transaction (its
/// dependencies too): `fussy` rejects an odd first parameter, the rest accept.
fn checker(envelope: &str) -> bool {
    let Ok(envelope) = serde_json::from_str::<Envelope>(envelope) else { return false };
    let mut valid = true;
    envelope.transaction.visit(&mut |call| {
        let odd = call.parameters.first().and_then(|p| p.as_i64()).is_some_and(|n| n % 2 == 1);
        valid &= !(call.contract_id == "fussy" && odd);
    });
    valid
}

fn global(shard: ShardId, replica: ReplicaId) -> u32 {
    shard.0 * REPLICAS + replica.0
}

impl SbacSimulation {
    /// `liars`: which shards have a lying replica (their last one): f = 1 per shard.
    pub fn new(seed: u64, shards: u32, links: LinkFaults, liars: &[u32]) -> Self {
        let keys: Vec<Vec<KeyPair>> = (0..shards)
            .map(|s| (0..REPLICAS).map(|r| KeyPair::from_seed(ReplicaId(r), seed_of(s, r))).collect())
            .collect();
        let committees: Vec<Committee> = (0..shards)
            .map(|s| Committee::new("sbac-sim", ShardId(s), keys[s as usize].iter().map(KeyPair::public).collect()))
            .collect();
        let config = Config {
            round_timeout_ms: 100,
            round_timeout_max_ms: 1_600,
            checkpoint_interval: 8,
            request_forward_after_ms: 200,
            sync_retry_ms: 150,
            status_interval_ms: 500,
            ..Config::default()
        };
        let mut nodes = Vec::new();
        for shard in 0..shards {
            for replica in 0..REPLICAS {
                let own = keys[shard as usize][replica as usize].clone();
                let app = ShardApp::new(ShardId(shard), committees.clone(), own.clone(), Limits::default());
                nodes.push(Node {
                    shard: ShardId(shard),
                    keys: own.clone(),
                    replica: Some(Replica::new(committees[shard as usize].clone(), own, config.clone(), app)),
                    disk: Disk::default(),
                    verdicts: VerdictCollector::new(committees[shard as usize].clone(), COLLECTOR_CAPACITY),
                    votes: VoteCollector::new(committees.clone(), COLLECTOR_CAPACITY),
                    envelopes: BTreeMap::new(),
                    // The last replica of shard 0 lies, when asked to: f = 1 per shard.
                    liar: liars.contains(&shard) && replica == REPLICAS - 1,
                });
            }
        }
        let mut simulation = Self {
            rng: StdRng::seed_from_u64(seed),
            timeline: Timeline::default(),
            nodes,
            map: ShardMap::new(shards).expect("at least one shard"),
            committees,
            network: Network::new(links),
            config,
            decisions: BTreeMap::new(),
            blocks: BTreeMap::new(),
            votes: BTreeMap::new(),
            consumed: BTreeMap::new(),
            violations: Vec::new(),
            trace: Vec::new(),
            submitted_decisions: Vec::new(),
            forged_requests: 0,
        };
        for node in 0..simulation.nodes.len() as u32 {
            let offset = simulation.rng.random_range(0..10);
            simulation.schedule(offset, Scheduled::Tick(node));
        }
        simulation
    }

    fn schedule(&mut self, at: u64, event: Scheduled) {
        self.timeline.schedule(at, event);
    }

    pub fn now(&self) -> u64 {
        self.timeline.now()
    }

    /// The client sends an attempt's envelope to every replica of every concerned shard.
    pub fn submit(&mut self, envelope: &Envelope, attempt: u32) {
        let shards: Vec<ShardId> = self.map.concerned_shards(&envelope.transaction).into_iter().collect();
        self.submit_to(envelope, attempt, &shards);
    }

    /// A client that sends an attempt to some concerned shards only (a faulty or malicious client).
    pub fn submit_to(&mut self, envelope: &Envelope, attempt: u32, shards: &[ShardId]) {
        let json = serde_json::to_string(envelope).expect("an envelope serialises");
        for shard in shards.iter().copied() {
            for replica in 0..REPLICAS {
                let to = global(shard, ReplicaId(replica));
                let message = Message::Envelope(json.clone(), Attempt(attempt));
                self.schedule(self.timeline.now() + 1, Scheduled::Deliver { from: u32::MAX, to, message });
            }
        }
    }

    pub fn run_until(&mut self, until: u64) {
        while let Some(event) = self.timeline.next_until(until) {
            match event {
                Scheduled::Deliver { to, message, from } => self.deliver(from, to, message),
                Scheduled::Crash(node) => self.nodes[node as usize].replica = None,
                Scheduled::Restart(node) => self.restart(node),
                Scheduled::Isolate(side) => {
                    let side: Vec<ReplicaId> = side.into_iter().map(ReplicaId).collect();
                    let all: Vec<ReplicaId> = (0..self.nodes.len() as u32).map(ReplicaId).collect();
                    self.network.isolate(&side, &all);
                }
                Scheduled::Heal => self.network.heal(),
                Scheduled::Tick(node) => {
                    if self.nodes[node as usize].liar {
                        self.forge(node);
                    }
                    if self.timeline.now() % PASS_ON_EVERY_MS < 10 {
                        self.pass_on_undecided(node);
                    }
                    self.step(node, Event::Tick(TimeMs(self.timeline.now())));
                    let next = self.timeline.now() + 10;
                    self.schedule(next, Scheduled::Tick(node));
                }
            }
        }
    }

    /// I6: once every attempt is decided, no shard holds a lock (judged at the honest
    /// replica of each shard that has decided furthest: others may still be catching up).
    fn leftover_locks(&self) -> Vec<String> {
        let mut furthest: BTreeMap<ShardId, &Replica<ShardApp>> = BTreeMap::new();
        for node in self.nodes.iter().filter(|node| !node.liar) {
            let Some(replica) = &node.replica else { continue };
            let best = furthest.entry(node.shard).or_insert(replica);
            if replica.tip().height > best.tip().height {
                *best = replica;
            }
        }
        let objects = furthest.values().flat_map(|replica| replica.app().state().objects.held());
        objects
            .filter(|(_, object)| matches!(object.status, ObjectStatus::Locked { .. }) || !object.readers.is_empty())
            .map(|(id, object)| {
                format!("I6: {id} is still locked after every attempt was decided: {:?}", object.status)
            })
            .take(3)
            .collect()
    }

    /// Whether every concerned shard decided each of these attempts.
    /// (A shard that never prepared an attempt, because its client did not tell it and an
    /// abort was decided elsewhere first, holds nothing and has nothing to decide.)
    pub fn decided(&self, attempts: &[(Envelope, u32)]) -> bool {
        attempts.iter().all(|(envelope, attempt)| {
            let (tx, attempt) = (envelope.transaction.tx_id(), Attempt(*attempt));
            let shards = self.map.concerned_shards(&envelope.transaction);
            let decided_at = |shard: &ShardId| self.decisions.contains_key(&(tx, attempt, *shard));
            let untouched = |shard: &ShardId| !self.prepared_at(*shard, tx, attempt);
            shards.iter().any(decided_at) && shards.iter().all(|shard| decided_at(shard) || untouched(shard))
        })
    }

    /// Whether any honest replica of `shard` recorded this attempt.
    fn prepared_at(&self, shard: ShardId, tx: TxId, attempt: Attempt) -> bool {
        let replicas = self.nodes.iter().filter(|node| node.shard == shard && !node.liar);
        replicas.filter_map(|node| node.replica.as_ref()).any(|replica| {
            replica.app().state().transactions.get(&tx).is_some_and(|record| record.attempts.contains_key(&attempt))
        })
    }

    /// Whether the attempt committed (at its first concerned shard).
    pub fn committed(&self, envelope: &Envelope, attempt: u32) -> Option<bool> {
        let tx = envelope.transaction.tx_id();
        let shard = *self.map.concerned_shards(&envelope.transaction).iter().next()?;
        self.decisions.get(&(tx, Attempt(attempt), shard)).copied()
    }

    /// What each replica of each concerned shard recorded about an attempt (for a failing seed).
    fn describe(&self, envelope: &Envelope, attempt: u32) -> String {
        let tx = envelope.transaction.tx_id();
        let shards = self.map.concerned_shards(&envelope.transaction);
        let records: Vec<String> = self
            .nodes
            .iter()
            .filter(|node| shards.contains(&node.shard))
            .map(|node| {
                let Some(replica) = &node.replica else {
                    return format!("{}/{}: crashed", node.shard.0, node.keys.id.0);
                };
                let record = replica.app().state().transactions.get(&tx);
                let attempt_record = record.as_ref().and_then(|r| r.attempts.get(&Attempt(attempt)));
                let summary = attempt_record.map(|a| (a.vote, a.decision));
                format!("{}/{}: {:?} h{}", node.shard.0, node.keys.id.0, summary, replica.tip().height.0)
            })
            .collect();
        format!("{tx} attempt {attempt} shards {shards:?}: {}", records.join(", "))
    }

    /// Restarts a crashed replica from its disk only.
    fn restart(&mut self, node: u32) {
        let index = node as usize;
        if self.nodes[index].replica.is_some() {
            return;
        }
        let (shard, keys) = (self.nodes[index].shard, self.nodes[index].keys.clone());
        let app = ShardApp::new(shard, self.committees.clone(), keys.clone(), Limits::default());
        let committee = self.committees[shard.0 as usize].clone();
        let persisted = self.nodes[index].disk.persisted();
        match Replica::recover(committee, keys, self.config.clone(), app, persisted) {
            Ok(replica) => self.nodes[index].replica = Some(replica),
            Err(error) => self.violations.push(format!("{shard} replica {node} cannot restart: {error}")),
        }
    }

    fn deliver(&mut self, from: u32, to: u32, message: Message) {
        let index = to as usize;
        if self.nodes[index].replica.is_none() {
            return;
        }
        match message {
            Message::Peer(message) => {
                let from = ReplicaId(from % REPLICAS);
                self.step(to, Event::Message { from, message });
            }
            Message::Envelope(json, attempt) => {
                // The replica calls its contract's checker and signs the verdict for its shard.
                let node = &mut self.nodes[index];
                let Ok(envelope) = serde_json::from_str::<Envelope>(&json) else { return };
                let tx = envelope.transaction.tx_id();
                // Prepared already: answer from the record (the votes may have been lost).
                let recorded = node.replica.as_ref().and_then(|replica| replica.app().recorded_vote(tx, attempt));
                if let Some((vote, concerned)) = recorded {
                    if !node.liar {
                        self.on_output(to, ShardOutput::Vote { vote, concerned }, false);
                    }
                    return;
                }
                let success = checker(&json) != node.liar;
                node.envelopes.insert(tx, (json, attempt));
                let committee = &self.committees[node.shard.0 as usize];
                let digest = envelope.digest();
                let signature = node.keys.sign(&Verdict::signing_bytes(committee, &tx, &digest, success));
                let verdict = Verdict { tx, envelope: digest, success, replica: node.keys.id, signature };
                for replica in 0..REPLICAS {
                    self.send(
                        to,
                        global(self.nodes[index].shard, ReplicaId(replica)),
                        Message::Verdict(verdict.clone()),
                    );
                }
            }
            Message::Verdict(verdict) => {
                let node = &mut self.nodes[index];
                let Ok(Some(certificate)) = node.verdicts.add(verdict) else { return };
                let Some((envelope, attempt)) = node.envelopes.get(&certificate.tx).cloned() else { return };
                let request = ShardRequest::Prepare { envelope, attempt, verdict: certificate };
                let payload = postcard::to_stdvec(&request).expect("encoding into memory cannot fail");
                self.step(to, Event::Submit(Request::new(payload)));
            }
            Message::Vote(vote) => {
                let Ok(Some(certificates)) = self.nodes[index].votes.add(vote.clone()) else { return };
                self.submit_decide(to, vote.tx, vote.attempt, certificates);
            }
        }
    }

    /// A replica holding an attempt it prepared but has not seen decided sends the
    /// envelope to every replica of every concerned shard, as a client would: a client that
    /// told one shard only must not leave that shard's locks held for ever (I6).
    fn pass_on_undecided(&mut self, node: u32) {
        let Some(replica) = &self.nodes[node as usize].replica else { return };
        let undecided: Vec<(String, Attempt, Vec<ShardId>)> = replica
            .app()
            .undecided()
            .filter_map(|(tx, attempt)| {
                let (envelope, concerned) = replica.app().prepared(&tx, attempt)?;
                Some((envelope, attempt, concerned))
            })
            .take(PASS_ON_MAX)
            .collect();
        for (json, attempt, concerned) in undecided {
            for shard in concerned {
                for replica in 0..REPLICAS {
                    self.send(node, global(shard, ReplicaId(replica)), Message::Envelope(json.clone(), attempt));
                }
            }
        }
    }

    /// The lying replica, which leads its shard's log one round in four, orders what an
    /// honest replica never would: decisions replayed into another attempt, and prepares
    /// whose verdict only it signed. Every shard must refuse them and change nothing.
    fn forge(&mut self, node: u32) {
        if !self.rng.random_bool(0.2) || self.submitted_decisions.is_empty() {
            return;
        }
        let pick = self.rng.random_range(0..self.submitted_decisions.len());
        let (tx, attempt, certificates) = self.submitted_decisions[pick].clone();
        let other = Attempt(if self.rng.random_bool(0.5) { attempt.0 + 1 } else { attempt.0.saturating_sub(1) });
        let mut requests = vec![ShardRequest::Decide { tx, attempt: other, certificates }];
        let liar = &self.nodes[node as usize];
        let known = liar.envelopes.get(&tx).cloned();
        let parsed = known.as_ref().and_then(|(json, _)| serde_json::from_str::<Envelope>(json).ok());
        if let (Some((envelope, attempt)), Some(parsed)) = (known, parsed) {
            let (committee, digest) = (&self.committees[liar.shard.0 as usize], parsed.digest());
            let signature = liar.keys.sign(&Verdict::signing_bytes(committee, &tx, &digest, true));
            let signatures = vec![(liar.keys.id, signature)];
            let verdict = VerdictCertificate { tx, envelope: digest, success: true, signatures };
            requests.push(ShardRequest::Prepare { envelope, attempt: Attempt(attempt.0 + 7), verdict });
        }
        for request in requests {
            self.forged_requests += 1;
            let payload = postcard::to_stdvec(&request).expect("encoding into memory cannot fail");
            self.step(node, Event::Submit(Request::new(payload)));
        }
    }

    fn submit_decide(&mut self, node: u32, tx: TxId, attempt: Attempt, certificates: Vec<PreparedCertificate>) {
        if self.submitted_decisions.len() < 256 {
            self.submitted_decisions.push((tx, attempt, certificates.clone()));
        }
        if self.trace.len() < TRACE_MAX {
            let kinds: Vec<(u32, bool)> = certificates.iter().map(|c| (c.shard.0, c.accept)).collect();
            self.trace.push(format!("{} node {node} submits decide {tx} {kinds:?}", self.timeline.now()));
        }
        let request = ShardRequest::Decide { tx, attempt, certificates };
        let payload = postcard::to_stdvec(&request).expect("encoding into memory cannot fail");
        self.step(node, Event::Submit(Request::new(payload)));
    }

    fn send(&mut self, from: u32, to: u32, message: Message) {
        for delay in self.network.delays(ReplicaId(from), ReplicaId(to), &mut self.rng) {
            let at = self.timeline.now() + delay;
            self.schedule(at, Scheduled::Deliver { from, to, message: message.clone() });
        }
    }

    fn step(&mut self, node: u32, event: Event) {
        let index = node as usize;
        let shard = self.nodes[index].shard;
        let liar = self.nodes[index].liar;
        let Some(replica) = self.nodes[index].replica.as_mut() else { return };
        let actions = replica.handle(event);
        for action in actions {
            if self.nodes[index].disk.apply(&action) && !matches!(action, Action::PersistDecided { .. }) {
                continue;
            }
            match action {
                Action::Send { to, message } => self.send(node, global(shard, to), Message::Peer(Box::new(message))),
                Action::Broadcast(message) => {
                    for replica in (0..REPLICAS).filter(|r| global(shard, ReplicaId(*r)) != node) {
                        self.send(node, global(shard, ReplicaId(replica)), Message::Peer(Box::new(message.clone())));
                    }
                }
                Action::PersistDecided { height, block } if !liar => {
                    let first = *self.blocks.entry((shard, height)).or_insert(block.digest());
                    if first != block.digest() {
                        self.violations.push(format!("I3: {shard} decided two blocks at height {}", height.0));
                    }
                }
                Action::Deliver(output) => self.on_output(node, output, liar),
                Action::Fatal(reason) if !liar => self.violations.push(format!("{shard} replica halted: {reason}")),
                _ => {}
            }
        }
    }

    fn on_output(&mut self, node: u32, output: ShardOutput, liar: bool) {
        let shard = self.nodes[node as usize].shard;
        match output {
            ShardOutput::Vote { vote, concerned } => {
                let mut vote = vote.sign(&self.committees[shard.0 as usize], &self.nodes[node as usize].keys);
                if liar {
                    // Signs the opposite vote: it must not be able to sway any certificate.
                    let committee = &self.committees[shard.0 as usize];
                    vote.vote = if vote.vote.is_accept() {
                        shardspace_core::sbac::VoteKind::Abort(shardspace_core::sbac::AbortReason::Malformed)
                    } else {
                        shardspace_core::sbac::VoteKind::Accept
                    };
                    vote.signature = self.nodes[node as usize].keys.sign(&SignedVote::signing_bytes(
                        committee,
                        &vote.tx,
                        vote.attempt,
                        &vote.envelope,
                        vote.vote,
                    ));
                }
                if liar && self.committees.len() > 1 {
                    // Also signs a vote in another shard's name: no replica may count it.
                    let other = ShardId((shard.0 + 1) % self.committees.len() as u32);
                    let mut forged = vote.clone();
                    forged.shard = other;
                    forged.vote = shardspace_core::sbac::VoteKind::Accept;
                    let bytes = SignedVote::signing_bytes(
                        &self.committees[other.0 as usize],
                        &forged.tx,
                        forged.attempt,
                        &forged.envelope,
                        forged.vote,
                    );
                    forged.signature = self.nodes[node as usize].keys.sign(&bytes);
                    for target in &concerned {
                        for replica in 0..REPLICAS {
                            self.send(node, global(*target, ReplicaId(replica)), Message::Vote(forged.clone()));
                        }
                    }
                } else if !liar {
                    // I4: an honest replica votes once per attempt: the same vote, whenever asked.
                    let said = (vote.vote.is_accept(), vote.envelope);
                    let first = *self.votes.entry((node, vote.tx, vote.attempt)).or_insert(said);
                    if first != said {
                        self.violations.push(format!(
                            "I4: {shard} replica {node} voted twice on attempt {} of {}",
                            vote.attempt.0, vote.tx
                        ));
                    }
                }
                if !liar && concerned.as_slice() == [shard] {
                    return; // decided with its vote (`ShardApp::decide_alone`), as `node::core` does
                }
                if let Some(certificates) =
                    self.nodes[node as usize].votes.expect(vote.tx, vote.attempt, vote.envelope, concerned.clone())
                {
                    self.submit_decide(node, vote.tx, vote.attempt, certificates);
                }
                for target in &concerned {
                    for replica in 0..REPLICAS {
                        self.send(node, global(*target, ReplicaId(replica)), Message::Vote(vote.clone()));
                    }
                }
            }
            ShardOutput::Decided { tx, attempt, committed } if !liar => {
                let first = *self.decisions.entry((tx, attempt, shard)).or_insert(committed);
                if first != committed {
                    self.violations.push(format!("I3: replicas of {shard} decided {tx} differently"));
                }
                // I2: every shard that decided this attempt decided the same.
                let split = self.decisions.iter().any(|((t, a, _), c)| *t == tx && *a == attempt && *c != committed);
                if split {
                    self.violations.push(format!(
                        "I2: attempt {} of {tx} committed by one shard and aborted by another",
                        attempt.0
                    ));
                }
                if committed {
                    self.record_consumption(node, tx);
                }
            }
            ShardOutput::Refused { reason } if !liar && self.trace.len() < TRACE_MAX => {
                self.trace.push(format!("{} {shard} refused: {reason}", self.timeline.now()));
            }
            _ => {}
        }
    }

    /// I1: no object consumed by two different committed transactions.
    fn record_consumption(&mut self, node: u32, tx: TxId) {
        let node = &self.nodes[node as usize];
        let Some(record) = node.replica.as_ref().and_then(|replica| replica.app().state().transactions.get(&tx)) else {
            return;
        };
        let Some(attempt) = record.committed.and_then(|attempt| record.attempts.get(&attempt)) else { return };
        let Ok(envelope) = serde_json::from_str::<Envelope>(&attempt.envelope) else { return };
        let mut inputs = Vec::new();
        envelope.transaction.visit(&mut |n| inputs.extend(n.input_ids.iter().copied()));
        for input in inputs.into_iter().filter(|id| self.map.shard_of(id) == node.shard) {
            let first = *self.consumed.entry(input).or_insert(tx);
            if first != tx {
                self.violations.push(format!("I1: {input} consumed by {first} and by {tx}"));
            }
        }
    }
}

fn seed_of(shard: u32, replica: u32) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&shard.to_be_bytes());
    seed[4..8].copy_from_slice(&replica.to_be_bytes());
    seed[31] = 0xa5;
    seed
}

fn envelope(contract: &str, inputs: &[Object], parameter: i64, outputs: Vec<String>) -> Envelope {
    let transaction = Transaction {
        contract_id: contract.into(),
        method_id: "m".into(),
        input_ids: inputs.iter().map(|o| o.id).collect(),
        reference_input_ids: vec![],
        parameters: vec![json!(parameter)],
        returns: vec![],
        outputs,
        dependencies: vec![],
    };
    Envelope { transaction, store: inputs.iter().map(|o| (o.id, o.value.clone())).collect() }
}

/// `outer` reading `reference` (a shared lock) and nesting `dependency` (whose inputs it also consumes).
fn nest(mut outer: Envelope, dependency: Option<Envelope>, reference: Option<&Object>) -> Envelope {
    if let Some(dependency) = dependency {
        outer.store.extend(dependency.store);
        outer.transaction.dependencies.push(dependency.transaction);
    }
    if let Some(reference) = reference {
        outer.transaction.reference_input_ids.push(reference.id);
        outer.store.insert(reference.id, reference.value.clone());
    }
    outer
}

/// One seed: create objects, then spend them with cross-shard transactions, double
/// spends and checker rejections, under the seed's network faults; every attempt
/// must be decided, with I1–I3 holding throughout.
pub fn run_sbac_seed(seed: u64) -> SbacReport {
    let mut plan = StdRng::seed_from_u64(seed ^ 0x5bac);
    let links = LinkFaults {
        loss: if plan.random_bool(0.5) { plan.random_range(0.0..0.1) } else { 0.0 },
        duplication: plan.random_range(0.0..0.1),
        delay_min_ms: 1,
        delay_max_ms: plan.random_range(2..40),
        straggler: plan.random_range(0.0..0.03),
    };
    // Two shards, or three (dependencies and references then often live on a third one).
    let shards = if plan.random_bool(0.3) { 3 } else { 2 };
    let liars: Vec<u32> = match plan.random_range(0..4) {
        0 | 1 => vec![],
        2 => vec![0],
        _ => (0..shards).collect(),
    };
    let mut simulation = SbacSimulation::new(seed, shards, links, &liars);
    if plan.random_bool(0.3) {
        // A whole shard, or one replica, cut off for a while, then healed.
        for _ in 0..plan.random_range(1..3) {
            let side: Vec<u32> = if plan.random_bool(0.5) {
                let shard = plan.random_range(0..shards);
                (0..REPLICAS).map(|replica| shard * REPLICAS + replica).collect()
            } else {
                vec![plan.random_range(0..shards * REPLICAS)]
            };
            let at = plan.random_range(0..4_000);
            simulation.schedule(at, Scheduled::Isolate(side));
            simulation.schedule(at + plan.random_range(200..2_000), Scheduled::Heal);
        }
    }
    if plan.random_bool(0.5) {
        // Honest replicas crash and come back from their disks.
        for _ in 0..plan.random_range(1..4) {
            let node = plan.random_range(0..simulation.nodes.len() as u32);
            if simulation.nodes[node as usize].liar {
                continue;
            }
            let at = plan.random_range(0..4_000);
            simulation.schedule(at, Scheduled::Crash(node));
            simulation.schedule(at + plan.random_range(200..2_000), Scheduled::Restart(node));
        }
    }
    let creation = envelope("fussy", &[], 0, (0..12).map(|i| format!("coin-{seed}-{i}")).collect());
    simulation.submit(&creation, 1);
    simulation.run_until(3_000);
    let coins = creation.transaction.own_outputs();
    let mut attempts = vec![(creation, 1)];
    // The shards each client tells (and tells again while undecided).
    let mut told: Vec<Vec<ShardId>> =
        vec![simulation.map.concerned_shards(&attempts[0].0.transaction).into_iter().collect()];
    for index in 0..plan.random_range(4..12) {
        // Two coins, possibly on two shards; coins are reused on purpose (double spends).
        let (a, b) = (plan.random_range(0..coins.len()), plan.random_range(0..coins.len()));
        let inputs: Vec<Object> =
            if a == b { vec![coins[a].clone()] } else { vec![coins[a].clone(), coins[b].clone()] };
        let spend = envelope("fussy", &inputs, plan.random_range(0..4), vec![format!("spent-{seed}-{index}")]);
        // Sometimes a dependency consuming a third coin, and a fourth coin read as a reference.
        let others: Vec<&Object> = coins.iter().filter(|coin| !inputs.contains(coin)).collect();
        let (c, r) = (plan.random_range(0..others.len()), plan.random_range(0..others.len()));
        let dependency = plan.random_bool(0.3).then(|| {
            let outputs = vec![format!("dependency-{seed}-{index}")];
            envelope("fussy", &[others[c].clone()], plan.random_range(0..4), outputs)
        });
        let reference = (plan.random_bool(0.2) && (dependency.is_none() || r != c)).then_some(others[r]);
        let spend = nest(spend, dependency, reference);
        if plan.random_bool(0.2) {
            // A client that tells only one of the concerned shards.
            let first = *simulation.map.concerned_shards(&spend.transaction).iter().next().expect("a concerned shard");
            simulation.submit_to(&spend, 1, &[first]);
            told.push(vec![first]);
        } else {
            simulation.submit(&spend, 1);
            told.push(simulation.map.concerned_shards(&spend.transaction).into_iter().collect());
        }
        attempts.push((spend, 1));
        let until = simulation.now() + plan.random_range(0..200);
        simulation.run_until(until);
    }
    // Like the client API, submit again what is still undecided: a shard asked again
    // answers from its record, so its votes travel again (messages may have been lost).
    let deadline = simulation.now() + 60_000;
    let mut retry_at = simulation.now() + 1_000;
    while simulation.now() < deadline && !simulation.decided(&attempts) {
        let next = simulation.now() + 100;
        simulation.run_until(next);
        if simulation.now() >= retry_at {
            retry_at = simulation.now() + 1_000;
            for ((envelope, attempt), shards) in attempts.iter().zip(&told) {
                if !simulation.decided(std::slice::from_ref(&(envelope.clone(), *attempt))) {
                    simulation.submit_to(envelope, *attempt, shards);
                }
            }
        }
    }
    let mut violations = simulation.violations.clone();
    if !simulation.decided(&attempts) {
        let undecided: Vec<String> = attempts
            .iter()
            .filter(|(envelope, attempt)| !simulation.decided(std::slice::from_ref(&(envelope.clone(), *attempt))))
            .map(|(envelope, attempt)| simulation.describe(envelope, *attempt))
            .collect();
        violations
            .push(format!("liveness: not decided by every concerned shard within 60 s: {}", undecided.join("; ")));
        let first = attempts
            .iter()
            .find(|(envelope, attempt)| !simulation.decided(std::slice::from_ref(&(envelope.clone(), *attempt))))
            .map(|(envelope, _)| envelope.transaction.tx_id().to_string())
            .unwrap_or_default();
        let lines: Vec<&String> = simulation.trace.iter().filter(|line| line.contains(&first)).take(40).collect();
        violations.push(lines.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n"));
    }
    if simulation.decided(&attempts) {
        violations.extend(simulation.leftover_locks());
    }
    let outcomes: Vec<Option<bool>> = attempts.iter().map(|(e, a)| simulation.committed(e, *a)).collect();
    let third_shard_dependencies = attempts
        .iter()
        .filter(|(envelope, _)| {
            let outer = Transaction { dependencies: vec![], ..envelope.transaction.clone() };
            let outer_shards = simulation.map.concerned_shards(&outer);
            envelope.transaction.dependencies.iter().any(|dependency| {
                dependency.input_ids.iter().any(|id| !outer_shards.contains(&simulation.map.shard_of(id)))
            })
        })
        .count();
    let with_references =
        attempts.iter().filter(|(envelope, _)| !envelope.transaction.reference_input_ids.is_empty()).count();
    SbacReport {
        seed,
        shards,
        third_shard_dependencies,
        with_references,
        violations,
        committed: outcomes.iter().filter(|o| **o == Some(true)).count(),
        aborted: outcomes.iter().filter(|o| **o == Some(false)).count(),
        forged: simulation.forged_requests,
        refused: simulation.trace.iter().filter(|line| line.contains("refused")).count(),
    }
}
