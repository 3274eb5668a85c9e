//! The S-BAC simulator: several shards of replicas, each the production
//! `ShardReplica` (the one the node runs) over a simulated store, seeded network,
//! seeded checkers and simulated clients. This module only carries outputs out;
//! no protocol rule lives here. Faults: link loss, duplication, delay and
//! partitions; crashes between any two outputs of a step and restarts from the
//! store; a replica that loses its disk and catches up by state transfer;
//! checkers that are slow, down, failing or hanging; and one Byzantine replica per
//! shard in some seeds (`liar`), wrapping its real replica's outputs.
//!
//! Each seed has a faulty phase, with I1–I6 checked after every step
//! (`observer`), then a healed phase in which every attempt must be decided and
//! every client answered within a bound of simulated time. `coverage` counts how
//! often each protocol path was taken.

mod liar;
mod observer;
mod scenario;
mod store;
mod workload;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use shardspace_core::bft::{
    Committee, Config, KeyPair, PeerMessage, Replica, ReplicaId, TimeMs, snapshot_of, snapshot_parts,
};
use shardspace_core::sbac::replica::{
    Checked, ClientId, ClientReply, ClientRequest, Frame, Group, Input, Outbox, Output, PeerId, TICK_MS,
};
use shardspace_core::sbac::{ShardApp, ShardReplica, ShardReplicaConfig};
use shardspace_core::{Envelope, Limits, ShardId, ShardMap};

pub use observer::{Coverage, PATHS};
pub use scenario::{CATCH_UP_MS, GapReport, transfer_while_the_next_checkpoint_is_uncertified};
pub use workload::{LIVENESS_MS, SbacReport, run_sbac_seed};

use super::network::{LinkFaults, Network};
use super::timeline::Timeline;
use liar::Liar;
use observer::Observer;
use store::SimStore;

pub const REPLICAS: u32 = 4;
/// The contracts the simulated checkers serve.
pub const CONTRACTS: [&str; 1] = ["coins"];

/// What happens next.
#[derive(Debug)]
enum Scheduled {
    /// A frame between replicas (global ids).
    Deliver {
        from: u32,
        to: u32,
        frame: Frame,
    },
    /// A client's request to a replica.
    Request {
        client: ClientId,
        to: u32,
        request: ClientRequest,
    },
    /// A replica's checkers answer (to the incarnation that asked).
    Checked {
        node: u32,
        incarnation: u32,
        checked: Checked,
    },
    Tick(u32),
    /// A replica's group of writes is durable (for the incarnation that began it).
    Committed {
        node: u32,
        incarnation: u32,
    },
    Crash(u32),
    Restart(u32),
    /// Crashes the replica and gives it an empty disk.
    LoseDisk(u32),
    /// Cuts every link between these replicas and the rest, both ways.
    Isolate(Vec<u32>),
    Heal,
    /// A replica's checker behaves so from now on.
    Checker {
        node: u32,
        state: CheckerState,
    },
}

/// How one replica's checker behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CheckerState {
    #[default]
    Up,
    /// Answers with a 5xx: no verdict.
    Failing,
    /// Never answers.
    Hanging,
}

#[derive(Debug)]
struct Node {
    shard: ShardId,
    keys: KeyPair,
    /// `None` while crashed.
    replica: Option<ShardReplica>,
    /// Bumped at each restart: a checker's answer to an earlier incarnation is lost with it.
    incarnation: u32,
    store: SimStore,
    checker: CheckerState,
    liar: Option<Liar>,
    /// Group commit, as the node does it: the steps handled while `committing` is made
    /// durable gather in `outbox`; inputs past what a group may take wait in `inbox`.
    outbox: Outbox,
    committing: Option<Group>,
    inbox: VecDeque<Input>,
}

#[derive(Debug)]
pub struct SbacSimulation {
    rng: StdRng,
    timeline: Timeline<Scheduled>,
    nodes: Vec<Node>,
    committees: Vec<Committee>,
    pub map: ShardMap,
    network: Network,
    config: Config,
    pub observer: Observer,
    /// Replies each client heard, in order.
    pub replies: BTreeMap<ClientId, Vec<(u32, ClientReply)>>,
    next_client: u64,
    /// Probability that an honest replica crashes in the middle of carrying out a step.
    crash_mid_step: f64,
    /// After this time, no new fault starts.
    faults_until: u64,
}

/// A replica's global id: its shard's replicas are numbered from `shard * REPLICAS`.
pub fn global(shard: ShardId, replica: ReplicaId) -> u32 {
    shard.0 * REPLICAS + replica.0
}

fn seed_of(shard: u32, replica: u32) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&shard.to_be_bytes());
    seed[4..8].copy_from_slice(&replica.to_be_bytes());
    seed[31] = 0xa5;
    seed
}

impl SbacSimulation {
    /// `liars`: shards whose last replica is Byzantine (f = 1 per shard).
    pub fn new(seed: u64, shards: u32, links: LinkFaults, liars: &[u32]) -> Self {
        let keys: Vec<Vec<KeyPair>> = (0..shards)
            .map(|s| (0..REPLICAS).map(|r| KeyPair::from_seed(ReplicaId(r), seed_of(s, r))).collect())
            .collect();
        let committees: Vec<Committee> = (0..shards)
            .map(|s| Committee::new("sbac-sim", ShardId(s), keys[s as usize].iter().map(KeyPair::public).collect()))
            .collect();
        let config = Config {
            round_timeout_ms: 100,
            round_timeout_min_ms: 100,
            round_timeout_max_ms: 1_600,
            checkpoint_interval: 8,
            request_forward_after_ms: 200,
            sync_retry_ms: 150,
            status_interval_ms: 500,
            ..Config::default()
        };
        let mut simulation = Self {
            rng: StdRng::seed_from_u64(seed),
            timeline: Timeline::default(),
            nodes: Vec::new(),
            map: ShardMap::new(shards).expect("at least one shard"),
            committees: committees.clone(),
            network: Network::new(links),
            config,
            observer: Observer::new(shards),
            replies: BTreeMap::new(),
            next_client: 0,
            crash_mid_step: 0.0,
            faults_until: u64::MAX,
        };
        for shard in 0..shards {
            for replica in 0..REPLICAS {
                let own = keys[shard as usize][replica as usize].clone();
                let liar = (liars.contains(&shard) && replica == REPLICAS - 1).then(|| Liar::new(seed));
                let node = Node {
                    shard: ShardId(shard),
                    keys: own,
                    replica: None,
                    incarnation: 0,
                    store: SimStore::default(),
                    outbox: Outbox::default(),
                    committing: None,
                    inbox: VecDeque::new(),
                    checker: CheckerState::Up,
                    liar,
                };
                simulation.nodes.push(node);
                let index = simulation.nodes.len() as u32 - 1;
                simulation.start(index);
            }
        }
        for node in 0..simulation.nodes.len() as u32 {
            let offset = simulation.rng.random_range(0..TICK_MS);
            simulation.timeline.schedule(offset, Scheduled::Tick(node));
        }
        simulation
    }

    pub fn now(&self) -> u64 {
        self.timeline.now()
    }

    pub fn shards(&self) -> u32 {
        self.committees.len() as u32
    }

    pub fn is_liar(&self, node: u32) -> bool {
        self.nodes[node as usize].liar.is_some()
    }

    pub fn nodes(&self) -> u32 {
        self.nodes.len() as u32
    }

    pub fn shard_of_node(&self, node: u32) -> ShardId {
        self.nodes[node as usize].shard
    }

    fn schedule(&mut self, at: u64, event: Scheduled) {
        self.timeline.schedule(at, event);
    }

    /// Starts (or restarts) a replica from its store alone, as the node does.
    fn start(&mut self, index: u32) {
        let node = &mut self.nodes[index as usize];
        let records = node.store.records.clone();
        let app = ShardApp::new(node.shard, self.committees.clone(), node.keys.clone(), Limits::default()).saved_in(
            records.clone(),
            records.clone(),
            records,
        );
        let committee = self.committees[node.shard.0 as usize].clone();
        let persisted = node.store.persisted();
        let resumed = persisted.resume.is_some();
        match Replica::recover(committee, node.keys.clone(), self.config.clone(), app, persisted) {
            Ok(replica) => {
                let contracts = CONTRACTS.iter().map(|c| c.to_string()).collect::<BTreeSet<_>>();
                let config =
                    ShardReplicaConfig { committees: self.committees.clone(), limits: Limits::default(), contracts };
                node.replica = Some(ShardReplica::new(replica, config));
                node.incarnation += 1;
                if resumed {
                    self.observer.cover("restart from disk");
                }
            }
            Err(error) => {
                let shard = node.shard;
                self.observer.violation(format!("{shard} replica {index} cannot restart from its disk: {error}"));
            }
        }
    }

    /// With `SIM_TRACE` set, says what a fault did (to explain a failing seed).
    fn note(&self, what: &str, index: u32) {
        if std::env::var_os("SIM_TRACE").is_some() {
            let tip = self.nodes[index as usize].replica.as_ref().map(|replica| replica.replica().tip());
            eprintln!("{:>6} ms replica {index}: {what} (tip {tip:?})", self.timeline.now());
        }
    }

    fn crash(&mut self, index: u32) {
        self.note("crash", index);
        let node = &mut self.nodes[index as usize];
        // What was not durable, and the inputs not handled yet, die with the process.
        (node.outbox, node.committing, node.inbox) = (Outbox::default(), None, VecDeque::new());
        if let Some(replica) = node.replica.take() {
            self.observer.add_counters(replica.counters());
        }
    }

    /// Whether another replica of this node's shard is down (at most one at a time is made to fail).
    fn shard_has_one_down(&self, index: u32) -> bool {
        let shard = self.nodes[index as usize].shard;
        self.nodes.iter().enumerate().any(|(other, node)| {
            other as u32 != index && node.shard == shard && (node.replica.is_none() || node.liar.is_some())
        })
    }

    /// A new client id.
    pub fn client(&mut self) -> ClientId {
        self.next_client += 1;
        ClientId(self.next_client)
    }

    /// A client sends a request to one replica; one in twenty goes over a slow link, so that
    /// the replica's peers may certify a verdict before it has the envelope.
    pub fn request(&mut self, client: ClientId, to: u32, request: ClientRequest) {
        let delay =
            if self.rng.random_bool(0.05) { self.rng.random_range(20..60) } else { self.rng.random_range(1..5) };
        let at = self.timeline.now() + delay;
        self.schedule(at, Scheduled::Request { client, to, request });
    }

    /// Faults start only before `until`; from then on crashed replicas restart, links and
    /// checkers heal.
    pub fn set_faults(&mut self, crash_mid_step: f64, until: u64) {
        self.crash_mid_step = crash_mid_step;
        self.faults_until = until;
    }

    pub fn schedule_partition(&mut self, side: Vec<u32>, at: u64, heal_at: u64) {
        self.schedule(at, Scheduled::Isolate(side));
        self.schedule(heal_at, Scheduled::Heal);
    }

    pub fn schedule_crash(&mut self, node: u32, at: u64, restart_at: u64) {
        self.schedule(at, Scheduled::Crash(node));
        self.schedule(restart_at, Scheduled::Restart(node));
    }

    pub fn schedule_lost_disk(&mut self, node: u32, at: u64, restart_at: u64) {
        self.schedule(at, Scheduled::LoseDisk(node));
        self.schedule(restart_at, Scheduled::Restart(node));
    }

    pub fn schedule_checker(&mut self, node: u32, state: CheckerState, at: u64, until: u64) {
        self.schedule(at, Scheduled::Checker { node, state });
        self.schedule(until, Scheduled::Checker { node, state: CheckerState::Up });
    }

    /// Runs every event due by `until`.
    pub fn run_until(&mut self, until: u64) {
        while let Some(event) = self.timeline.next_until(until) {
            match event {
                Scheduled::Deliver { from, to, frame } => {
                    let from = PeerId { shard: self.nodes[from as usize].shard, replica: ReplicaId(from % REPLICAS) };
                    self.handle(to, Input::Frame { from, frame });
                }
                Scheduled::Request { client, to, request } => self.handle(to, Input::Client { client, request }),
                Scheduled::Checked { node, incarnation, checked } => {
                    if self.nodes[node as usize].incarnation == incarnation {
                        self.handle(node, Input::Checked(vec![checked]));
                    }
                }
                Scheduled::Committed { node, incarnation } => {
                    if self.nodes[node as usize].incarnation == incarnation {
                        self.committed(node);
                    }
                }
                Scheduled::Tick(node) => {
                    if let Some(forged) = self.forge(node) {
                        for input in forged {
                            self.handle(node, input);
                        }
                    }
                    self.handle(node, Input::Tick);
                    let next = self.timeline.now() + TICK_MS;
                    self.schedule(next, Scheduled::Tick(node));
                }
                Scheduled::Crash(node) => {
                    if self.timeline.now() < self.faults_until {
                        self.crash(node);
                    }
                }
                Scheduled::Restart(node) => {
                    if self.nodes[node as usize].replica.is_none() {
                        self.start(node);
                        self.note("restarted", node);
                    }
                }
                Scheduled::LoseDisk(node) => {
                    if self.timeline.now() < self.faults_until {
                        self.crash(node);
                        self.nodes[node as usize].store = SimStore::default();
                        self.observer.cover("lost disk");
                        self.note("lost its disk", node);
                    }
                }
                Scheduled::Isolate(side) => {
                    if self.timeline.now() < self.faults_until {
                        let side: Vec<ReplicaId> = side.into_iter().map(ReplicaId).collect();
                        let all: Vec<ReplicaId> = (0..self.nodes.len() as u32).map(ReplicaId).collect();
                        self.network.isolate(&side, &all);
                        self.observer.cover("partition");
                    }
                }
                Scheduled::Heal => self.network.heal(),
                Scheduled::Checker { node, state } => {
                    if state == CheckerState::Up || self.timeline.now() < self.faults_until {
                        self.nodes[node as usize].checker = state;
                    }
                }
            }
        }
    }

    /// Ends every fault: what follows must decide every attempt (liveness).
    pub fn heal_all(&mut self) {
        self.faults_until = self.faults_until.min(self.timeline.now());
        self.network.heal();
        self.network.faults = LinkFaults::perfect();
        for node in 0..self.nodes.len() as u32 {
            self.nodes[node as usize].checker = CheckerState::Up;
            if self.nodes[node as usize].replica.is_none() {
                self.start(node);
                self.note("restarted as faults heal", node);
            }
        }
    }

    /// Feeds an input to a replica. A Byzantine replica's outputs are carried out at once;
    /// an honest replica's join its outbox and go out by group commit (`commit`), as in the node.
    fn handle(&mut self, index: u32, input: Input) {
        let now = TimeMs(self.timeline.now());
        let node = &mut self.nodes[index as usize];
        let Some(replica) = node.replica.as_mut() else { return };
        let Some(liar) = node.liar.as_mut() else {
            if !node.outbox.takes_more(node.committing.as_ref()) {
                node.inbox.push_back(input);
                return;
            }
            let outputs = replica.handle(now, input);
            node.outbox.add(outputs);
            return self.commit(index);
        };
        liar.hear(&input);
        let outputs = replica.handle(now, input);
        let outputs = liar.twist(outputs, &self.committees, &node.keys, &mut self.rng);
        for output in outputs {
            self.carry_out(index, output);
        }
    }

    /// Starts making the outbox's group durable, unless a group is under way: it takes
    /// 1–3 ms of simulated time, in which the next steps gather. A group without writes
    /// is carried out at once.
    fn commit(&mut self, index: u32) {
        let node = &mut self.nodes[index as usize];
        if node.committing.is_some() || node.outbox.is_empty() {
            return;
        }
        let group = node.outbox.take();
        if group.steps > 1 {
            self.observer.cover("steps grouped in one commit");
        }
        if group.batches.is_empty() {
            return self.carry_out_group(index, group);
        }
        let (incarnation, at) = (node.incarnation, self.timeline.now() + self.rng.random_range(1..=3));
        node.committing = Some(group);
        self.schedule(at, Scheduled::Committed { node: index, incarnation });
    }

    /// A group's commit finished: its writes are durable, then its outputs go, then the
    /// next group starts and the inputs that waited are handled.
    fn committed(&mut self, index: u32) {
        let Some(group) = self.nodes[index as usize].committing.take() else { return };
        self.carry_out_group(index, group);
        while self.takes_more(index) {
            let Some(input) = self.nodes[index as usize].inbox.pop_front() else { break };
            self.handle(index, input);
        }
        self.commit(index);
    }

    fn takes_more(&self, index: u32) -> bool {
        let node = &self.nodes[index as usize];
        node.replica.is_some() && node.outbox.takes_more(node.committing.as_ref())
    }

    /// Makes a group's writes durable and carries out its outputs, in order; a faulty
    /// phase may crash the replica before its writes are durable (they are lost, and no
    /// output went) or between any two of its outputs.
    fn carry_out_group(&mut self, index: u32, group: Group) {
        let now = self.timeline.now();
        // The chance of a crash per step, over the group's steps.
        let chance = (self.crash_mid_step * group.steps.max(1) as f64).min(1.0);
        let crash_at = if now < self.faults_until && self.rng.random_bool(chance) && !self.shard_has_one_down(index) {
            Some(self.rng.random_range(0..=group.outputs.len()))
        } else {
            None
        };
        let writes: Vec<Output> = group.batches.into_iter().map(Output::Persist).collect();
        // Half of the crashes of a group with writes come before they are durable.
        let lost = crash_at.is_some() && !writes.is_empty() && self.rng.random_bool(0.5);
        if lost {
            self.note("crash before its writes were durable", index);
            self.crash(index);
            self.observer.cover("crash before a group commit");
            let restart = self.timeline.now() + self.rng.random_range(200..2_000);
            return self.schedule(restart, Scheduled::Restart(index));
        }
        for output in writes {
            self.carry_out(index, output);
        }
        // Only for a trace: what the crash cut short.
        let kinds: Vec<String> = if std::env::var_os("SIM_TRACE").is_some() {
            group.outputs.iter().map(|output| format!("{:.40}", format!("{output:?}"))).collect()
        } else {
            Vec::new()
        };
        for (position, output) in group.outputs.into_iter().enumerate() {
            if crash_at == Some(position) {
                self.note(&format!("crash before output {position} of {kinds:?}"), index);
                self.crash(index);
                self.observer.cover("crash between outputs");
                let restart = self.timeline.now() + self.rng.random_range(200..2_000);
                self.schedule(restart, Scheduled::Restart(index));
                return;
            }
            self.carry_out(index, output);
        }
    }

    fn carry_out(&mut self, index: u32, output: Output) {
        let honest = self.nodes[index as usize].liar.is_none();
        let shard = self.nodes[index as usize].shard;
        if honest {
            self.observer.output(index, shard, &output, &self.nodes[index as usize].store, &self.map);
        }
        match output {
            Output::Persist(writes) => self.nodes[index as usize].store.apply(writes),
            Output::Send { to, frame } => self.send(index, global(to.shard, to.replica), frame),
            Output::Multicast { shards, frame } => {
                for target in shards {
                    for replica in 0..REPLICAS {
                        let to = global(target, ReplicaId(replica));
                        if to != index {
                            self.send(index, to, frame.clone());
                        }
                    }
                }
            }
            Output::Check { tx, envelope } => self.check(index, tx, &envelope),
            // The simulated clients never ask for a dry run, which changes nothing.
            Output::DryCheck { .. } => {}
            Output::Reply { client, reply } => {
                self.observer.reply(index, honest, &reply, &self.committees);
                self.replies.entry(client).or_default().push((index, reply));
            }
            Output::ServeSnapshot { to, checkpoint } => {
                let height = checkpoint.certificate.point.height.0;
                let Some(body) = self.nodes[index as usize].store.snapshot_body(height) else { return };
                let Ok((head, _)) = snapshot_parts(&checkpoint.state) else { return };
                let state = snapshot_of(head, Some(&body));
                let frame = Frame::Bft(PeerMessage::Snapshot { certificate: checkpoint.certificate, state });
                self.observer.cover("snapshot served");
                self.send(index, global(shard, to), frame);
            }
            Output::Dropped { .. } => {}
            Output::Stop(stop) => {
                if honest {
                    self.observer.violation(format!("{shard} replica {index} stopped: {stop}"));
                }
                self.crash(index);
            }
        }
    }

    /// The replica's checker of `coins`: a call whose first parameter is odd is refused, and
    /// so is a transfer whose outputs do not hold what its inputs held (a mint has no
    /// inputs); it answers after a seeded delay, or fails, or hangs.
    fn check(&mut self, index: u32, tx: shardspace_core::TxId, envelope: &Envelope) {
        let node = &self.nodes[index as usize];
        let verdict = match node.checker {
            CheckerState::Hanging => {
                self.observer.cover("checker hangs");
                return;
            }
            CheckerState::Failing => {
                self.observer.cover("checker 5xx");
                Err("the checker answered 503".to_string())
            }
            CheckerState::Up => {
                let mut valid = true;
                envelope.transaction.visit(&mut |call| {
                    let odd = call.parameters.first().and_then(|p| p.as_i64()).is_some_and(|n| n % 2 == 1);
                    let held: u64 = call
                        .input_ids
                        .iter()
                        .filter_map(|id| envelope.store.get(id))
                        .map(|v| workload::amount(v))
                        .sum();
                    let given: u64 = call.outputs.iter().map(|v| workload::amount(v)).sum();
                    valid &= !odd && (call.input_ids.is_empty() || held == given);
                });
                if !envelope.transaction.dependencies.is_empty() {
                    self.observer.cover("dependency checked");
                }
                Ok((valid, (!valid).then(|| "fussy.m: odd".to_string())))
            }
        };
        let checked = Checked { tx, envelope: envelope.digest(), verdict };
        let incarnation = node.incarnation;
        let at = self.timeline.now() + self.rng.random_range(1..30);
        self.schedule(at, Scheduled::Checked { node: index, incarnation, checked });
    }

    fn send(&mut self, from: u32, to: u32, frame: Frame) {
        for delay in self.network.delays(ReplicaId(from), ReplicaId(to), &mut self.rng) {
            let at = self.timeline.now() + delay;
            self.schedule(at, Scheduled::Deliver { from, to, frame: frame.clone() });
        }
    }

    /// What the Byzantine replica slips in on its own.
    fn forge(&mut self, index: u32) -> Option<Vec<Input>> {
        let node = &mut self.nodes[index as usize];
        let liar = node.liar.as_mut()?;
        node.replica.as_ref()?;
        let (frames, inputs) = liar.forge(&self.committees, &node.keys, &mut self.rng);
        for (target, frame) in frames {
            for replica in 0..REPLICAS {
                let to = global(target, ReplicaId(replica));
                if to != index {
                    self.send(index, to, frame.clone());
                }
            }
        }
        Some(inputs)
    }

    /// Folds the live replicas' counters into the coverage, at the end of a seed.
    pub fn finish(&mut self) {
        for node in &self.nodes {
            if let Some(replica) = &node.replica {
                self.observer.add_counters(replica.counters());
            }
            if let Some(liar) = &node.liar {
                self.observer.add_liar(liar);
            }
        }
    }

    /// A replica, unless it is down.
    pub fn replica(&self, node: u32) -> Option<&ShardReplica> {
        self.nodes[node as usize].replica.as_ref()
    }

    pub fn checkpoint_interval(&self) -> u64 {
        self.config.checkpoint_interval
    }

    /// Cuts every link between these replicas and the rest, now.
    pub fn isolate_now(&mut self, side: Vec<u32>) {
        let side: Vec<ReplicaId> = side.into_iter().map(ReplicaId).collect();
        let all: Vec<ReplicaId> = (0..self.nodes.len() as u32).map(ReplicaId).collect();
        self.network.isolate(&side, &all);
    }

    pub fn heal_network(&mut self) {
        self.network.heal();
    }

    /// Crashes a replica now; it stays down until restarted or `heal_all`.
    pub fn crash_now(&mut self, node: u32) {
        self.crash(node);
    }

    /// The replicas (global ids) of a shard.
    pub fn replicas_of(&self, shard: ShardId) -> Vec<u32> {
        (0..REPLICAS).map(|replica| global(shard, ReplicaId(replica))).collect()
    }

    /// The honest replica of `shard` that has decided furthest (for the end-of-seed checks).
    pub fn furthest(&self, shard: ShardId) -> Option<&ShardReplica> {
        let replicas = self.nodes.iter().filter(|node| node.shard == shard && node.liar.is_none());
        replicas.filter_map(|node| node.replica.as_ref()).max_by_key(|replica| replica.replica().tip().height)
    }

    /// Honest live replicas of `shard`.
    pub fn honest(&self, shard: ShardId) -> impl Iterator<Item = &ShardReplica> {
        let replicas = self.nodes.iter().filter(move |node| node.shard == shard && node.liar.is_none());
        replicas.filter_map(|node| node.replica.as_ref())
    }
}
