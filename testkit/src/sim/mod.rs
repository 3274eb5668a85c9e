//! The deterministic simulator of one shard: one thread, one seeded RNG,
//! simulated milliseconds. It drives real `Replica`s over a faulty network,
//! crashes and restarts them from what they persisted (sometimes between two
//! actions of one step), runs Byzantine replicas beside them, and checks the
//! invariants of `observer` after every step. A run is a function of its seed.

pub mod byzantine;
pub mod network;
pub mod observer;
pub mod plan;
pub mod sbac;
pub mod timeline;

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use shardspace_core::ShardId;
use shardspace_core::bft::{
    Action, Block, Committee, Config, Digest, Event, Height, KeyPair, PeerMessage, Persisted, Replica, ReplicaId,
    Request, SafetyState, Severity, StableCheckpoint, TimeMs,
};

use byzantine::{Behaviour, ByzantineNode};
use network::{LinkFaults, Network};
use observer::Observer;
use shardspace_core::bft::kv::KvApp;
use timeline::Timeline;

/// What the simulation is made of.
#[derive(Clone, Debug)]
pub struct Settings {
    pub seed: u64,
    pub replicas: u32,
    pub config: Config,
    pub links: LinkFaults,
    pub tick_ms: u64,
    /// Probability, per step of an honest replica, of crashing between two of its actions.
    pub crash_mid_step: f64,
    /// How long a client waits before sending an undecided request again.
    pub client_retry_ms: u64,
}

impl Settings {
    /// Four replicas, a perfect network, timeouts sized for simulated time.
    pub fn new(seed: u64) -> Self {
        let config = Config {
            round_timeout_ms: 100,
            round_timeout_min_ms: 100,
            round_timeout_max_ms: 1_600,
            checkpoint_interval: 4,
            dedup_window_heights: 100,
            request_forward_after_ms: 300,
            sync_retry_ms: 150,
            status_interval_ms: 500,
            ..Config::default()
        };
        Self {
            seed,
            replicas: 4,
            config,
            links: LinkFaults::perfect(),
            tick_ms: 10,
            crash_mid_step: 0.0,
            client_retry_ms: 1_000,
        }
    }
}

/// What a run of decisions cost (`Simulation::decide_one_by_one`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecisionCost {
    pub decisions: u64,
    /// Simulated milliseconds for all of them.
    pub ms: u64,
    /// Rounds the shard went through for all of them.
    pub rounds: u64,
}

impl DecisionCost {
    pub fn ms_per_decision(&self) -> f64 {
        self.ms as f64 / self.decisions.max(1) as f64
    }

    pub fn rounds_per_decision(&self) -> f64 {
        self.rounds as f64 / self.decisions.max(1) as f64
    }
}

/// Something that happens at a simulated time.
#[derive(Clone, Debug)]
pub enum Scheduled {
    Deliver {
        from: ReplicaId,
        to: ReplicaId,
        message: Box<PeerMessage>,
    },
    Tick(ReplicaId),
    ClientRetry,
    Crash(ReplicaId),
    Restart {
        replica: ReplicaId,
        empty_disk: bool,
    },
    /// Cuts every link between these replicas and the rest, both ways.
    Isolate(Vec<ReplicaId>),
    /// The replica can send but hears nothing.
    Deafen(ReplicaId),
    Heal,
    Links(LinkFaults),
}

/// What an honest replica has written to its disk.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub safety: SafetyState,
    pub checkpoint: Option<StableCheckpoint>,
    pub decided: BTreeMap<Height, Block>,
    /// Blocks stored before voting, by round then digest.
    pub undecided: BTreeMap<(shardspace_core::bft::Round, Digest), Block>,
}

impl Disk {
    /// Writes what a persist action asks; false for any other action.
    pub fn apply<O>(&mut self, action: &Action<O>) -> bool {
        match action {
            Action::PersistSafety(safety) => self.safety = safety.clone(),
            Action::PersistBlock(block) => {
                self.undecided.insert((block.round, block.digest()), block.clone());
            }
            Action::PersistDecided { height, block } => {
                self.undecided = self.undecided.split_off(&(block.round.next(), Digest::default()));
                self.decided.insert(*height, block.clone());
            }
            Action::PersistCheckpoint(checkpoint) => {
                self.decided = self.decided.split_off(&checkpoint.certificate.point.height.next());
                self.checkpoint = Some(checkpoint.clone());
            }
            _ => return false,
        }
        true
    }

    pub fn persisted(&self) -> Persisted {
        Persisted {
            safety: self.safety.clone(),
            checkpoint: self.checkpoint.clone(),
            decided: self.decided.values().cloned().collect(),
            undecided: self.undecided.values().cloned().collect(),
            resume: None,
        }
    }
}

#[derive(Debug)]
pub struct Honest {
    /// `None` while crashed.
    pub replica: Option<Replica<KvApp>>,
    pub disk: Disk,
    keys: KeyPair,
}

#[derive(Debug)]
pub enum Node {
    Honest(Box<Honest>),
    Byzantine(Box<ByzantineNode>),
}

#[derive(Debug)]
pub struct Simulation {
    pub settings: Settings,
    rng: StdRng,
    timeline: Timeline<Scheduled>,
    committee: Committee,
    pub nodes: Vec<Node>,
    network: Network,
    pub observer: Observer,
    /// Client requests not yet executed by an honest replica, with when they were last sent.
    pending: BTreeMap<Digest, (Request, u64)>,
    pub submitted: u64,
}

impl Simulation {
    pub fn new(settings: Settings) -> Self {
        let keys: Vec<KeyPair> = (0..settings.replicas).map(|i| KeyPair::from_seed(ReplicaId(i), seed_of(i))).collect();
        let committee = Committee::new("sim", ShardId(0), keys.iter().map(KeyPair::public).collect());
        let nodes = keys
            .into_iter()
            .map(|keys| {
                let replica = Replica::new(committee.clone(), keys.clone(), settings.config.clone(), KvApp::default());
                Node::Honest(Box::new(Honest { replica: Some(replica), disk: Disk::default(), keys }))
            })
            .collect();
        let mut simulation = Self {
            rng: StdRng::seed_from_u64(settings.seed),
            timeline: Timeline::default(),
            committee,
            nodes,
            network: Network::new(settings.links.clone()),
            observer: Observer::default(),
            pending: BTreeMap::new(),
            submitted: 0,
            settings,
        };
        for replica in simulation.replica_ids() {
            let offset = simulation.rng.random_range(0..simulation.settings.tick_ms.max(1));
            simulation.schedule(offset, Scheduled::Tick(replica));
        }
        let retry = simulation.settings.client_retry_ms;
        simulation.schedule(retry, Scheduled::ClientRetry);
        simulation
    }

    pub fn now(&self) -> u64 {
        self.timeline.now()
    }

    pub fn replica_ids(&self) -> Vec<ReplicaId> {
        self.committee.replicas().collect()
    }

    pub fn honest_ids(&self) -> Vec<ReplicaId> {
        let honest = self.nodes.iter().enumerate().filter(|(_, node)| matches!(node, Node::Honest(_)));
        honest.map(|(index, _)| replica_id(index)).collect()
    }

    /// Turns `replica` Byzantine, with these behaviours.
    pub fn make_byzantine(&mut self, replica: ReplicaId, behaviours: Vec<Behaviour>) {
        let keys = KeyPair::from_seed(replica, seed_of(replica.0));
        let inner = Replica::new(self.committee.clone(), keys.clone(), self.settings.config.clone(), KvApp::default());
        let all_keys =
            (0..self.settings.replicas).map(|i| KeyPair::from_seed(ReplicaId(i), seed_of(i)).public()).collect();
        let node = ByzantineNode::new(inner, keys, self.committee.clone(), all_keys, behaviours);
        self.nodes[replica.0 as usize] = Node::Byzantine(Box::new(node));
    }

    /// Schedules `event` at `at` simulated milliseconds.
    pub fn schedule(&mut self, at: u64, event: Scheduled) {
        self.timeline.schedule(at, event);
    }

    /// A client sends a new request to f+1 replicas (so a faulty one cannot hide it).
    pub fn submit(&mut self, payload: impl Into<Vec<u8>>) {
        let request = Request::new(payload);
        self.submitted += 1;
        self.pending.insert(request.digest(), (request.clone(), self.timeline.now()));
        self.send_to_replicas(request);
    }

    /// A client sends a new request to every replica (as S-BAC's replicas do).
    pub fn submit_everywhere(&mut self, payload: impl Into<Vec<u8>>) {
        let request = Request::new(payload);
        self.submitted += 1;
        self.pending.insert(request.digest(), (request.clone(), self.timeline.now()));
        for replica in self.replica_ids() {
            self.step(replica, Event::Submit(request.clone()));
        }
    }

    fn send_to_replicas(&mut self, request: Request) {
        let mut targets = self.replica_ids();
        let count = self.committee.validity();
        for _ in 0..count {
            let target = targets.remove(self.rng.random_range(0..targets.len()));
            self.step(target, Event::Submit(request.clone()));
        }
    }

    /// Requests submitted and not yet executed by any honest replica.
    pub fn undecided(&self) -> usize {
        self.pending.keys().filter(|digest| !self.observer.executed_requests.contains(*digest)).count()
    }

    /// Runs every event up to `until` (simulated ms).
    pub fn run_until(&mut self, until: u64) {
        while let Some(event) = self.timeline.next_until(until) {
            self.dispatch(event);
        }
    }

    /// Runs until every request is executed and every honest replica that is up
    /// has decided as far as the highest decided height; false at the deadline.
    pub fn run_until_settled(&mut self, deadline: u64) -> bool {
        while self.timeline.now() < deadline {
            let next = (self.timeline.now() + 50).min(deadline);
            self.run_until(next);
            if self.is_settled() {
                return true;
            }
        }
        self.is_settled()
    }

    fn is_settled(&self) -> bool {
        let highest = self.observer.highest_decided();
        let caught_up = self.nodes.iter().all(|node| match node {
            Node::Honest(honest) => honest.replica.as_ref().is_none_or(|replica| replica.tip().height >= highest),
            Node::Byzantine(_) => true,
        });
        self.undecided() == 0 && caught_up
    }

    fn dispatch(&mut self, event: Scheduled) {
        match event {
            Scheduled::Deliver { from, to, message } => self.step(to, Event::Message { from, message }),
            Scheduled::Tick(replica) => {
                self.step(replica, Event::Tick(TimeMs(self.timeline.now())));
                let next = self.timeline.now() + self.settings.tick_ms;
                self.schedule(next, Scheduled::Tick(replica));
            }
            Scheduled::ClientRetry => {
                self.retry_clients();
                let next = self.timeline.now() + self.settings.client_retry_ms;
                self.schedule(next, Scheduled::ClientRetry);
            }
            Scheduled::Crash(replica) => self.crash(replica),
            Scheduled::Restart { replica, empty_disk } => self.restart(replica, empty_disk),
            Scheduled::Isolate(side) => {
                let all = self.replica_ids();
                self.network.isolate(&side, &all);
            }
            Scheduled::Deafen(replica) => {
                for other in self.replica_ids().into_iter().filter(|other| *other != replica) {
                    self.network.block(other, replica);
                }
            }
            Scheduled::Heal => self.network.heal(),
            Scheduled::Links(faults) => self.network.faults = faults,
        }
    }

    fn retry_clients(&mut self) {
        let executed = &self.observer.executed_requests;
        self.pending.retain(|digest, _| !executed.contains(digest));
        let cutoff = self.timeline.now().saturating_sub(self.settings.client_retry_ms);
        let due: Vec<Digest> = self.pending.iter().filter(|(_, (_, sent))| *sent <= cutoff).map(|(d, _)| *d).collect();
        for digest in due {
            if let Some((request, sent)) = self.pending.get_mut(&digest) {
                *sent = self.timeline.now();
                let request = request.clone();
                self.send_to_replicas(request);
            }
        }
    }

    pub fn crash(&mut self, replica: ReplicaId) {
        if let Node::Honest(honest) = &mut self.nodes[replica.0 as usize] {
            honest.replica = None;
        }
    }

    pub fn restart(&mut self, replica: ReplicaId, empty_disk: bool) {
        let (committee, config, now) = (self.committee.clone(), self.settings.config.clone(), self.timeline.now());
        let Node::Honest(honest) = &mut self.nodes[replica.0 as usize] else { return };
        if honest.replica.is_some() {
            return;
        }
        if empty_disk {
            honest.disk = Disk::default();
            self.observer.forget_votes(replica);
        }
        match Replica::recover(committee, honest.keys.clone(), config, KvApp::default(), honest.disk.persisted()) {
            Ok(recovered) => honest.replica = Some(recovered),
            Err(error) => {
                let disk = &honest.disk;
                let checkpoint =
                    disk.checkpoint.as_ref().map(|c| (c.certificate.point.height.0, c.certificate.point.block));
                let decided: Vec<_> = disk.decided.iter().map(|(h, b)| (h.0, b.digest(), b.parent.block)).collect();
                self.observer.violation(now, format!("{replica} cannot restart from its disk: {error}; checkpoint {checkpoint:?}; decided {decided:?}"))
            }
        }
    }

    /// Feeds one event to one replica and carries out what it asks.
    fn step(&mut self, replica: ReplicaId, event: Event) {
        let index = replica.0 as usize;
        let sends = match &mut self.nodes[index] {
            Node::Byzantine(node) => node.handle(event, &mut self.rng),
            Node::Honest(honest) => {
                let Some(running) = honest.replica.as_mut() else { return };
                let actions = running.handle(event);
                let crash_at = (self.settings.crash_mid_step > 0.0
                    && self.rng.random_bool(self.settings.crash_mid_step))
                .then(|| self.rng.random_range(0..=actions.len()));
                let mut sends = Vec::new();
                let mut drops = Vec::new();
                let mut crashed = false;
                for (position, action) in actions.into_iter().enumerate() {
                    if crash_at == Some(position) {
                        honest.replica = None;
                        crashed = true;
                        break;
                    }
                    if let Action::Dropped { from, error } = action {
                        drops.push((from, error));
                        continue;
                    }
                    let fatal = matches!(action, Action::Fatal(_));
                    apply(
                        replica,
                        action,
                        honest,
                        &mut self.observer,
                        &mut sends,
                        &self.committee,
                        self.timeline.now(),
                    );
                    if fatal {
                        break; // a shell stops at Fatal: nothing after it is carried out
                    }
                }
                // Votes a replica keeps (as next leader) never leave as messages: observe them here.
                if let Some((round, block)) = honest.replica.as_ref().and_then(Replica::last_vote) {
                    self.observer.voted(replica, round, block, self.timeline.now());
                }
                if crashed {
                    // Back from its disk a little later.
                    let at = self.timeline.now() + self.rng.random_range(100..1_000);
                    self.schedule(at, Scheduled::Restart { replica, empty_disk: false });
                }
                for (from, error) in drops {
                    *self.observer.dropped.entry(error_name(&error)).or_default() += 1;
                    // An honest replica never sends what another must reject as malicious.
                    if error.severity() == Severity::Byzantine && matches!(self.nodes[from.0 as usize], Node::Honest(_))
                    {
                        self.observer
                            .violation(self.timeline.now(), format!("{replica} rejected honest {from}: {error}"));
                    }
                }
                sends
            }
        };
        for (to, message) in sends {
            self.send(replica, to, message);
        }
    }

    fn send(&mut self, from: ReplicaId, to: ReplicaId, message: PeerMessage) {
        for delay in self.network.delays(from, to, &mut self.rng) {
            let at = self.timeline.now() + delay;
            self.schedule(at, Scheduled::Deliver { from, to, message: Box::new(message.clone()) });
        }
    }

    /// Submits `count` requests one at a time, each when the one before was executed (a
    /// client that waits for its answer), and says what each decision cost: simulated time
    /// and rounds (the highest round of an honest replica that is up). Each request goes to
    /// every replica, as S-BAC's do (a request sent to a few waits for their turn as leader,
    /// `request_forward_after_ms`). `None` if one was not executed within `deadline_ms` of
    /// its submission.
    pub fn decide_one_by_one(&mut self, prefix: &str, count: u64, deadline_ms: u64) -> Option<DecisionCost> {
        let (started, first_round) = (self.now(), self.highest_honest_round());
        for index in 0..count {
            self.submit_everywhere(format!("{prefix}{index}=v"));
            let deadline = self.now() + deadline_ms;
            while self.undecided() > 0 {
                if self.now() >= deadline {
                    return None;
                }
                let next = self.now() + 1;
                self.run_until(next);
            }
        }
        let rounds = self.highest_honest_round().0.saturating_sub(first_round.0);
        Some(DecisionCost { decisions: count, ms: self.now() - started, rounds })
    }

    fn highest_honest_round(&self) -> shardspace_core::bft::Round {
        let rounds = self.nodes.iter().filter_map(|node| match node {
            Node::Honest(honest) => honest.replica.as_ref().map(Replica::round),
            Node::Byzantine(_) => None,
        });
        rounds.max().unwrap_or_default()
    }

    /// Whether a replica is honest.
    pub fn is_honest(&self, replica: ReplicaId) -> bool {
        matches!(self.nodes[replica.0 as usize], Node::Honest(_))
    }

    /// The decided height of each honest replica that is up.
    pub fn honest_heights(&self) -> Vec<(ReplicaId, Height)> {
        let running = self.nodes.iter().enumerate().filter_map(|(index, node)| match node {
            Node::Honest(honest) => honest.replica.as_ref().map(|replica| (replica_id(index), replica.tip().height)),
            Node::Byzantine(_) => None,
        });
        running.collect()
    }

    /// One line per replica: round, lock, decided height, mempool (for debugging a seed).
    pub fn describe(&self) -> String {
        let lines = self.nodes.iter().enumerate().map(|(index, node)| match node {
            Node::Honest(honest) => match &honest.replica {
                Some(replica) => format!(
                    "{}: round {} lock {} last voted {} height {} mempool {} {}",
                    replica_id(index),
                    replica.round().0,
                    replica.safety().high_qc.round.0,
                    replica.safety().last_voted_round.0,
                    replica.tip().height.0,
                    replica.mempool_len(),
                    replica.debug_state()
                ),
                None => format!("{}: crashed", replica_id(index)),
            },
            Node::Byzantine(_) => format!("{}: byzantine", replica_id(index)),
        });
        lines.collect::<Vec<_>>().join("\n")
    }

    /// The leader of the highest round an honest replica is in, as that replica sees it.
    pub fn current_leader(&self) -> ReplicaId {
        let replicas = self.nodes.iter().filter_map(|node| match node {
            Node::Honest(honest) => honest.replica.as_ref(),
            Node::Byzantine(_) => None,
        });
        let ahead = replicas.max_by_key(|replica| replica.round());
        ahead.and_then(Replica::current_leader).unwrap_or(ReplicaId(0))
    }

    /// How many lies the Byzantine replicas have told (messages beyond what an honest replica sends).
    pub fn lies(&self) -> u64 {
        self.byzantine().map(ByzantineNode::lies).sum()
    }

    /// How many conflicting proposals the Byzantine replicas have sent.
    pub fn equivocations(&self) -> u64 {
        self.byzantine().map(ByzantineNode::equivocations).sum()
    }

    fn byzantine(&self) -> impl Iterator<Item = &ByzantineNode> {
        self.nodes.iter().filter_map(|node| match node {
            Node::Byzantine(node) => Some(&**node),
            Node::Honest(_) => None,
        })
    }

    /// Whether an honest replica's disk holds a stable checkpoint.
    pub fn has_checkpoint_on_disk(&self, replica: ReplicaId) -> bool {
        matches!(&self.nodes[replica.0 as usize], Node::Honest(honest) if honest.disk.checkpoint.is_some())
    }

    /// The application of an honest replica that is up.
    pub fn app_of(&self, replica: ReplicaId) -> Option<&KvApp> {
        match &self.nodes[replica.0 as usize] {
            Node::Honest(honest) => honest.replica.as_ref().map(Replica::app),
            Node::Byzantine(_) => None,
        }
    }
}

/// Carries out one action of an honest replica: its disk, the observer, and what it sends.
fn apply(
    replica: ReplicaId,
    action: Action<shardspace_core::bft::kv::Executed>,
    honest: &mut Honest,
    observer: &mut Observer,
    sends: &mut Vec<(ReplicaId, PeerMessage)>,
    committee: &Committee,
    now: u64,
) {
    // Observe what the disk write means before making it.
    match &action {
        Action::PersistDecided { height, block } => observer.decided(replica, *height, block.digest(), now),
        Action::PersistCheckpoint(checkpoint)
            if !honest.disk.decided.contains_key(&checkpoint.certificate.point.height) =>
        {
            // A checkpoint of a height this replica never decided: it installed a peer's snapshot.
            observer.snapshots_installed += 1;
        }
        _ => {}
    }
    if honest.disk.apply(&action) {
        return;
    }
    match action {
        Action::Send { to, message } => {
            if let PeerMessage::Vote(vote) = &message {
                observer.voted(replica, vote.round, vote.block, now);
            }
            sends.push((to, message));
        }
        Action::Broadcast(message) => {
            sends.extend(committee.replicas().filter(|to| *to != replica).map(|to| (to, message.clone())));
        }
        Action::Deliver(executed) => observer.executed(replica, executed, now),
        Action::Fatal(reason) => observer.violation(now, format!("{replica} halted: {reason}")),
        _ => {}
    }
}

/// The variant name of an error: the key of the drop counters.
fn error_name(error: &shardspace_core::bft::ProtocolError) -> String {
    let debug = format!("{error:?}");
    debug.split([' ', '{', '(']).next().unwrap_or_default().to_string()
}

fn replica_id(index: usize) -> ReplicaId {
    ReplicaId(u32::try_from(index).expect("a simulated shard has few replicas"))
}

fn seed_of(replica: u32) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&replica.to_be_bytes());
    seed[31] = 0x5a;
    seed
}
