//! `Core`: the one task that drives the replica's sans-IO `ShardReplica`
//! (`shardspace_core::sbac::replica`, which holds every protocol rule). It feeds
//! it every input (peer frames, client requests, checker verdicts, ticks) and
//! carries out the outputs in order: writes committed to the store before any
//! later output, frames to peers, checks to the checkers, replies to clients,
//! checkpoint bodies to peers that catch up. Writes go by group commit: the steps
//! handled while the store makes one group durable form the next (`Outbox`, in
//! `core`, which says how large a group may grow). Nothing here decides anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardspace_core::ShardId;
use shardspace_core::bft::{PeerMessage, ReplicaId, Severity, StableCheckpoint, TimeMs, snapshot_of, snapshot_parts};
use shardspace_core::sbac::ShardReplica;
use shardspace_core::sbac::replica::{
    Checked, Counters, Frame, Group, Input, Outbox, Output, PeerId, SWEEP_EVERY_MS, Stop, TICK_MS,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::checking::Checkers;
use crate::client::{ClientCommand, ClientQueues};
use crate::metrics::{DecisionLabel, NodeMetrics};
use crate::network::{PeerSender, encode};
use crate::store::{Store, StoreError};

/// Why the core stopped.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("the replica stopped: {0}")]
    Stopped(#[from] Stop),
}

/// Where the core's inputs come from.
#[derive(Debug)]
pub struct CoreInputs {
    pub rx_peers: mpsc::Receiver<(PeerId, Frame)>,
    pub rx_clients: mpsc::Receiver<ClientCommand>,
    pub rx_checked: mpsc::Receiver<Checked>,
    /// Each contract's checker, when the cluster file is reloaded.
    pub rx_checkers: mpsc::Receiver<BTreeMap<String, String>>,
}

#[derive(Debug)]
pub struct Core {
    replica: ShardReplica,
    store: Store,
    /// Every other replica of the cluster, by shard and id.
    peers: BTreeMap<PeerId, PeerSender>,
    checkers: Checkers,
    /// Open client connections: where their replies go.
    clients: ClientQueues,
    metrics: Arc<NodeMetrics>,
    /// The counters as last added to the metrics.
    reported: Counters,
    started: Instant,
}

impl Core {
    pub fn new(
        replica: ShardReplica,
        store: Store,
        peers: BTreeMap<PeerId, PeerSender>,
        checkers: Checkers,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        let reported = replica.counters().clone();
        let (clients, started) = (ClientQueues::default(), Instant::now());
        Self { replica, store, peers, checkers, clients, metrics, reported, started }
    }

    pub async fn run(mut self, inputs: CoreInputs, mut shutdown: watch::Receiver<bool>) -> Result<(), CoreError> {
        let CoreInputs { mut rx_peers, mut rx_clients, mut rx_checked, mut rx_checkers } = inputs;
        let mut last_sweep = TimeMs(0);
        let mut ticker = tokio::time::interval(Duration::from_millis(TICK_MS));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // Group commit: while one group's writes are made durable, the next steps gather
        // in the outbox; their outputs go out once their own writes are durable in turn.
        let mut outbox = Outbox::default();
        let mut committing: Option<(Group, oneshot::Receiver<Result<(), StoreError>>)> = None;
        loop {
            if committing.is_none() && !outbox.is_empty() {
                let mut group = outbox.take();
                if group.batches.is_empty() {
                    self.carry_out(group.outputs)?;
                } else {
                    self.metrics.store_commits.inc();
                    self.metrics.committed_steps.inc_by(group.steps as u64);
                    let done = self.store.commit(std::mem::take(&mut group.batches)).await?;
                    committing = Some((group, done));
                }
            }
            let taking = outbox.takes_more(committing.as_ref().map(|(group, _)| group));
            // A leader waiting to fill its block (`propose_after_ms`) is ticked when it is due.
            let due = self.replica.due().map(|due| {
                let due = Duration::from_millis(due.0.saturating_sub(self.now().0));
                tokio::time::Instant::now() + due
            });
            let durable = async {
                match committing.as_mut() {
                    Some((_, done)) => done.await,
                    None => std::future::pending().await,
                }
            };
            let input = tokio::select! {
                written = durable => {
                    written.map_err(|_| StoreError::Stopped)??;
                    let (group, _) = committing.take().expect("the commit awaited was under way");
                    self.carry_out(group.outputs)?;
                    continue;
                }
                Some((from, frame)) = rx_peers.recv(), if taking => Input::Frame { from, frame },
                () = async { tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)).await }, if taking && due.is_some() => Input::Tick,
                Some(command) = rx_clients.recv(), if taking => match command {
                    ClientCommand::Open { client, tx_client } => {
                        self.clients.open(client, tx_client);
                        continue;
                    }
                    ClientCommand::Request { client, request } => Input::Client { client, request },
                    ClientCommand::Closed(client) => {
                        self.clients.close(client);
                        Input::ClientsGone(vec![client])
                    }
                },
                Some(checked) = rx_checked.recv(), if taking => Input::Checked(with_ready(checked, &mut rx_checked)),
                Some(checkers) = rx_checkers.recv() => {
                    let contracts: std::collections::BTreeSet<String> = checkers.keys().cloned().collect();
                    if &contracts != self.replica.contracts() {
                        tracing::info!(?contracts, "contracts reloaded from the cluster file");
                    }
                    self.replica.set_contracts(contracts);
                    self.checkers.set_urls(checkers);
                    continue;
                }
                _ = ticker.tick(), if taking => {
                    let now = self.now();
                    if now.0 >= last_sweep.0.saturating_add(SWEEP_EVERY_MS) {
                        last_sweep = now;
                        self.report();
                        let gone = self.clients.sweep_closed();
                        if !gone.is_empty() {
                            outbox.add(self.replica.handle(now, Input::ClientsGone(gone)));
                        }
                    }
                    Input::Tick
                }
                _ = shutdown.changed() => return Ok(()),
            };
            outbox.add(self.replica.handle(self.now(), input));
        }
    }

    fn now(&self) -> TimeMs {
        TimeMs(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Carries out a group's outputs, in order, once its writes are durable.
    fn carry_out(&mut self, outputs: Vec<Output>) -> Result<(), CoreError> {
        for output in outputs {
            match output {
                Output::Persist(_) => {
                    // The outbox takes every write into the group's transactions.
                    tracing::error!("a write outside its group's transactions (a bug): the replica stops");
                    return Err(CoreError::Store(StoreError::Stopped));
                }
                Output::Send { to, frame } => {
                    if let Some(peer) = self.peers.get(&to) {
                        peer.send(&frame);
                    }
                }
                Output::Multicast { shards, frame } => {
                    let frame = encode(&frame);
                    for shard in shards {
                        self.send_to_shard(shard, &frame);
                    }
                }
                Output::Check { envelope, .. } => self.checkers.start(&envelope),
                Output::DryCheck { client, tx, envelope } => {
                    if let Some(reply) = self.clients.queue(client) {
                        self.checkers.dry_run(tx, &envelope, reply);
                    }
                }
                Output::Reply { client, reply } => self.clients.reply(client, reply),
                Output::ServeSnapshot { to, checkpoint } => self.serve_snapshot(to, checkpoint),
                Output::Dropped { from, error } => match error.severity() {
                    Severity::Byzantine => tracing::warn!(peer = %from, %error, "dropped a message from a peer"),
                    Severity::Stale => tracing::debug!(peer = %from, %error, "dropped a stale message"),
                },
                Output::Stop(stop) => {
                    tracing::error!(%stop, "stopping the replica");
                    return Err(CoreError::Stopped(stop));
                }
            }
        }
        self.count();
        Ok(())
    }

    fn send_to_shard(&self, shard: ShardId, frame: &bytes::Bytes) {
        let replicas = self.peers.range(PeerId { shard, replica: ReplicaId(0) }..);
        for (_, peer) in replicas.take_while(|(id, _)| id.shard == shard) {
            peer.send_encoded(frame.clone());
        }
    }

    /// Sets the gauges of `/metrics` and adds what the counters gained.
    fn report(&mut self) {
        let gauge = |gauge: &prometheus_client::metrics::gauge::Gauge, value: u64| {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        let (replica, metrics) = (self.replica.replica(), &self.metrics);
        let state = replica.app().state();
        gauge(&metrics.height, replica.tip().height.0);
        gauge(&metrics.round, replica.round().0);
        gauge(&metrics.executed, state.executed);
        gauge(&metrics.mempool, replica.mempool_len() as u64);
        gauge(&metrics.undecided_attempts, self.replica.undecided_len() as u64);
        gauge(&metrics.envelopes_checking, self.replica.envelopes_len() as u64);
        gauge(&metrics.objects, state.objects.len());
        gauge(&metrics.transactions, state.transactions.len());
        if self.replica.counters().state_transfers > self.reported.state_transfers {
            tracing::info!(height = replica.tip().height.0, "state transferred from peers");
        }
        self.count();
    }

    /// Adds what the counters gained since the last time to the metrics.
    fn count(&mut self) {
        let (now, before, metrics) = (self.replica.counters(), &self.reported, &self.metrics);
        if now == before {
            return;
        }
        metrics.votes_sent.inc_by(now.votes_sent - before.votes_sent);
        metrics.checker_unavailable.inc_by(now.checker_unavailable - before.checker_unavailable);
        metrics.envelopes_rejected.inc_by(now.envelopes_rejected - before.envelopes_rejected);
        metrics.stand_in_submissions.inc_by(now.stand_in_submissions - before.stand_in_submissions);
        metrics.passed_on.inc_by(now.passed_on - before.passed_on);
        metrics.seals.inc_by(now.seals - before.seals);
        metrics.sealed_messages.inc_by(now.sealed - before.sealed);
        let decisions =
            |decision: &str| metrics.decisions.get_or_create(&DecisionLabel { decision: decision.into() }).clone();
        decisions("commit").inc_by(now.commits - before.commits);
        decisions("abort").inc_by(now.aborts - before.aborts);
        self.reported = now.clone();
    }

    /// Sends a peer that catches up the checkpoint with its body, read from the store's
    /// view of it off the core task. A peer gets nothing if the store keeps no such view
    /// (it asks another) or is reading one already (a peer must not buy many large reads).
    fn serve_snapshot(&self, to: ReplicaId, checkpoint: StableCheckpoint) {
        let own = self.replica.own();
        let Some(peer) = self.peers.get(&PeerId { shard: own.shard, replica: to }).cloned() else { return };
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
}

/// Checker answers taken into one input at most.
const CHECKED_PER_INPUT_MAX: usize = 256;

/// `first` and the answers already waiting behind it (a checker batch's arrive together):
/// their verdicts go in one input, sealed under one signature.
fn with_ready(first: Checked, rx_checked: &mut mpsc::Receiver<Checked>) -> Vec<Checked> {
    let mut checked = vec![first];
    while checked.len() < CHECKED_PER_INPUT_MAX {
        match rx_checked.try_recv() {
            Ok(more) => checked.push(more),
            Err(_) => break,
        }
    }
    checked
}
