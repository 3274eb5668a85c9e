//! `Core`: the one task that owns the replica's protocol state. It feeds every
//! input (peer messages, client requests, ticks) to the sans-IO `Replica` and
//! carries out the returned actions in order: the writes before a message or
//! a reply are committed to the store before that message or reply leaves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shardspace_core::bft::kv::{Executed, KvApp};
use shardspace_core::bft::{
    Action, Digest, DigestMap, Event, Height, PeerMessage, Replica, ReplicaId, Request, Severity, TimeMs,
};
use tokio::sync::{mpsc, watch};

use crate::client::{ClientCommand, ClientReply, Status};
use crate::network::PeerSender;
use crate::store::{Store, StoreError, Write};

/// How often the replica's clock ticks.
pub const TICK_MS: u64 = 10;
/// Requests whose submitter waits to hear they were decided.
pub const WAITING_MAX: usize = 200_000;
/// How long a submitter is remembered: a request never decided here (executed
/// before, or skipped by a snapshot) must not hold its place for ever.
pub const WAITING_MS_MAX: u64 = 120_000;
/// How often forgotten submitters are swept out.
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

#[derive(Debug)]
pub struct Core {
    pub replica: Replica<KvApp>,
    pub store: Store,
    pub peers: BTreeMap<ReplicaId, PeerSender>,
    /// Which client connection waits for which request, since when.
    pub waiting: DigestMap<(mpsc::Sender<ClientReply>, TimeMs)>,
    pub started: Instant,
}

impl Core {
    pub async fn run(
        mut self,
        mut rx_peers: mpsc::Receiver<(ReplicaId, PeerMessage)>,
        mut rx_clients: mpsc::Receiver<ClientCommand>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), CoreError> {
        let mut ticker = tokio::time::interval(Duration::from_millis(TICK_MS));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let event = tokio::select! {
                Some((from, message)) = rx_peers.recv() => Event::Message { from, message: Box::new(message) },
                Some(command) = rx_clients.recv() => match command {
                    ClientCommand::Submit { requests, tx_client } => {
                        self.submit(requests, tx_client).await?;
                        continue;
                    }
                    ClientCommand::Status(reply) => {
                        let _ = reply.send(self.status());
                        continue;
                    }
                },
                _ = ticker.tick() => {
                    let now = self.now();
                    if now.0 % SWEEP_EVERY_MS < TICK_MS {
                        self.sweep_waiting(now);
                    }
                    Event::Tick(now)
                }
                _ = shutdown.changed() => return Ok(()),
            };
            let actions = self.replica.handle(event);
            self.execute(actions).await?;
        }
    }

    fn now(&self) -> TimeMs {
        TimeMs(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn status(&self) -> Status {
        let app = self.replica.app();
        let tip = self.replica.tip();
        Status {
            replica: self.replica.id(),
            round: self.replica.round(),
            height: tip.height,
            executed: app.executed(),
            state: app.state(),
            pending: self.replica.mempool_len() as u64,
        }
    }

    async fn submit(&mut self, requests: Vec<Request>, tx_client: mpsc::Sender<ClientReply>) -> Result<(), CoreError> {
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
        let actions = self.replica.handle(Event::SubmitMany(accepted));
        self.execute(actions).await
    }

    /// Carries out actions in order; writes are committed before anything after them is said.
    async fn execute(&mut self, actions: Vec<Action<Executed>>) -> Result<(), CoreError> {
        let mut writes = Vec::new();
        let mut decided: DecidedBatch = Vec::new();
        for action in actions {
            match action {
                Action::PersistSafety(state) => writes.push(Write::Safety(state)),
                Action::PersistBlock(block) => writes.push(Write::Block(block)),
                Action::PersistDecided { height, block } => writes.push(Write::Decided { height: height.0, block }),
                Action::PersistCheckpoint(checkpoint) => writes.push(Write::Checkpoint(checkpoint)),
                Action::Send { to, message } => {
                    self.flush(&mut writes).await?;
                    if let Some(peer) = self.peers.get(&to) {
                        peer.send(&message);
                    }
                }
                Action::Broadcast(message) => {
                    self.flush(&mut writes).await?;
                    for peer in self.peers.values() {
                        peer.send(&message);
                    }
                }
                Action::Deliver(executed) => decided.push((executed.request, executed.height)),
                Action::Refused(digest) => {
                    if let Some((client, _)) = self.waiting.remove(&digest) {
                        let _ = client.try_send(ClientReply::Refused(vec![digest]));
                    }
                }
                Action::Dropped { from, error } => match error.severity() {
                    Severity::Byzantine => tracing::warn!(peer = %from, %error, "dropped a message from a peer"),
                    Severity::Stale => tracing::debug!(peer = %from, %error, "dropped a stale message"),
                },
                Action::Fatal(reason) => {
                    tracing::error!(reason, "stopping: the decided log cannot go on");
                    return Err(CoreError::Fatal(reason));
                }
            }
        }
        self.flush(&mut writes).await?;
        self.reply_decided(decided);
        Ok(())
    }

    async fn flush(&mut self, writes: &mut Vec<Write>) -> Result<(), CoreError> {
        if !writes.is_empty() {
            self.store.write(std::mem::take(writes)).await?;
        }
        Ok(())
    }

    /// Forgets submitters whose connection closed or who waited too long.
    fn sweep_waiting(&mut self, now: TimeMs) {
        self.waiting.retain(|_, (client, since)| !client.is_closed() && now.0 < since.0.saturating_add(WAITING_MS_MAX));
    }

    /// Tells each waiting client which of its requests were decided, one reply per connection.
    fn reply_decided(&mut self, decided: DecidedBatch) {
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
