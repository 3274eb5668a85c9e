//! The Shardspace replica process: actors around the sans-IO BFT replica of
//! `shardspace-core` running the shard's S-BAC application (DESIGN.md §5, §6,
//! STYLE.md §1). `run` wires them: the SQLite store thread, the peer listener
//! and one sender per replica of the cluster, the client listener, the checker
//! calls, and the `Core` task that owns the protocol state.

pub mod checker_client;
pub mod checking;
pub mod client;
pub mod cluster_client;
pub mod config;
pub mod core;
pub mod freeze;
pub mod http;
pub mod metrics;
pub mod network;
pub mod replica_link;
pub mod secure;
pub mod store;
pub mod throttle;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use shardspace_core::Limits;
use shardspace_core::bft::Replica;
use shardspace_core::sbac::{ShardApp, ShardReplica, ShardReplicaConfig};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::checker_client::{CheckerClient, CheckerClientLimits};
use crate::checking::Checkers;
use crate::client::ClientListener;
use crate::config::NodeConfig;
use crate::core::{Core, CoreError, CoreInputs};
use crate::freeze::Freezes;
use crate::metrics::NodeMetrics;
use crate::network::{NetworkCounters, PEER_STALE_AFTER, PeerId, PeerListener, PeerSender};
use crate::secure::Credentials;
use crate::store::{Store, StoreError};

/// Messages from peers waiting for the core.
pub const CORE_QUEUE_MAX: usize = 10_000;
/// Client commands waiting for the core.
pub const CLIENT_COMMANDS_MAX: usize = 1_000;
/// Checker verdicts waiting for the core.
pub const CHECKED_QUEUE_MAX: usize = 1_000;

/// Why a replica could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {address}: {source} (is the port taken?)")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the replica's disk does not replay: {0}")]
    Recover(String),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("cannot build the checker client: {0}")]
    CheckerClient(String),
}

/// Where a started replica listens.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub peer: SocketAddr,
    pub client: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// Runs one replica until `shutdown` turns true; `ready` hears where it listens. Each
/// configuration on `reloads` (the cluster file read again) changes the contracts'
/// checkers and the admitted clients at once; what else changed waits for a restart.
pub async fn run(
    config: NodeConfig,
    shutdown: watch::Receiver<bool>,
    ready: oneshot::Sender<Bound>,
    reloads: mpsc::Receiver<NodeConfig>,
) -> Result<(), NodeError> {
    let store = Store::open(&config.data_dir, config.durability)?;
    let persisted = store.load().await?;
    let limits = Limits::default();
    let records = store.records();
    let app = ShardApp::new(config.shard, config.committees.clone(), config.keys.clone(), limits.clone()).saved_in(
        records.clone(),
        records.clone(),
        records,
    );
    let replica = Replica::recover(config.committee.clone(), config.keys.clone(), config.bft.clone(), app, persisted)
        .map_err(NodeError::Recover)?;
    let bind = |address: SocketAddr| async move {
        TcpListener::bind(address).await.map_err(|source| NodeError::Bind { address, source })
    };
    let (peer_listener, client_listener) = (bind(config.peer_address).await?, bind(config.client_address).await?);
    let metrics_listener = match config.metrics_address {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let bound = Bound {
        metrics: metrics_listener.as_ref().and_then(|listener| listener.local_addr().ok()),
        peer: peer_listener.local_addr().map_err(|source| NodeError::Bind { address: config.peer_address, source })?,
        client: client_listener
            .local_addr()
            .map_err(|source| NodeError::Bind { address: config.client_address, source })?,
    };
    let counters = Arc::new(NetworkCounters::default());
    let (tx_core, rx_peers) = mpsc::channel(CORE_QUEUE_MAX);
    let (tx_clients, rx_clients) = mpsc::channel(CLIENT_COMMANDS_MAX);
    let own = PeerId { shard: config.shard, replica: config.keys.id };
    let credentials = Credentials::new(config.keys.signing_key(), &config.cluster);
    let peers: BTreeMap<_, _> = config
        .peers
        .iter()
        .filter(|(id, _)| *id != own)
        .map(|(id, address)| {
            let key = network::link_key(&config.committees, *id).expect("every peer is in a committee");
            let sender = PeerSender::start(
                address.clone(),
                (*id, key),
                credentials.clone(),
                Arc::clone(&counters),
                shutdown.clone(),
                PEER_STALE_AFTER,
            );
            (*id, sender)
        })
        .collect();
    let committees = config.committees.clone();
    let freezes = Freezes::watch(shutdown.clone());
    let listener = PeerListener {
        listener: peer_listener,
        committees: committees.clone(),
        own,
        credentials: credentials.clone(),
        tx_core,
        counters: Arc::clone(&counters),
        freezes: Arc::clone(&freezes),
    };
    tokio::spawn(listener.run(shutdown.clone()));
    let (tx_admitted, admitted) = watch::channel(admitted_keys(&config));
    let (tx_checkers, rx_checkers) = mpsc::channel(4);
    tokio::spawn(apply_reloads(config.clone(), reloads, tx_checkers, tx_admitted));
    let clients = ClientListener {
        listener: client_listener,
        tx_core: tx_clients,
        freezes: Arc::clone(&freezes),
        credentials: credentials.clone(),
        admitted,
        idle_timeout: crate::client::IDLE_TIMEOUT,
    };
    tokio::spawn(clients.run(shutdown.clone()));
    let (tx_checked, rx_checked) = mpsc::channel(CHECKED_QUEUE_MAX);
    let client = CheckerClient::new(CheckerClientLimits::giving_up_after(config.checker_timeout))
        .map_err(|error| NodeError::CheckerClient(error.to_string()))?;
    let checkers = Checkers::new(client, config.checkers.clone(), tx_checked);
    let metrics = Arc::new(NodeMetrics::default());
    if let Some(listener) = metrics_listener {
        tokio::spawn(metrics::serve(listener, Arc::clone(&metrics), Arc::clone(&counters), freezes, shutdown.clone()));
    }
    tracing::info!(shard = config.shard.0, replica = own.replica.0, peer = %bound.peer, client = %bound.client, height = replica.tip().height.0, "replica started");
    let _ = ready.send(bound);
    let replica_config = ShardReplicaConfig { committees, limits, contracts: checkers.contracts() };
    let core = Core::new(ShardReplica::new(replica, replica_config), store, peers, checkers, metrics);
    core.run(CoreInputs { rx_peers, rx_clients, rx_checked, rx_checkers }, shutdown).await?;
    tracing::info!(shard = config.shard.0, replica = own.replica.0, "replica stopped");
    Ok(())
}

/// The keys the request interface admits: the cluster's clients, and its replicas.
fn admitted_keys(config: &NodeConfig) -> Arc<std::collections::BTreeSet<[u8; 32]>> {
    let replicas = config.peers.iter().filter_map(|(id, _)| network::link_key(&config.committees, *id));
    Arc::new(config.clients.iter().copied().chain(replicas).collect())
}

/// Applies each reloaded configuration: the checkers and the admitted clients at once;
/// a change to anything else is named and waits for a restart.
async fn apply_reloads(
    mut running: NodeConfig,
    mut reloads: mpsc::Receiver<NodeConfig>,
    tx_checkers: mpsc::Sender<BTreeMap<String, String>>,
    tx_admitted: watch::Sender<Arc<std::collections::BTreeSet<[u8; 32]>>>,
) {
    while let Some(reloaded) = reloads.recv().await {
        let needs_restart = [
            ("the committees", running.committees != reloaded.committees),
            ("the replicas' addresses", running.peers != reloaded.peers),
            (
                "this replica's addresses",
                (running.peer_address, running.client_address) != (reloaded.peer_address, reloaded.client_address),
            ),
            ("the data folder", running.data_dir != reloaded.data_dir),
            ("this replica's key", running.keys.public() != reloaded.keys.public()),
            ("the BFT settings", (&running.bft, running.durability) != (&reloaded.bft, reloaded.durability)),
            ("checker_timeout_ms", running.checker_timeout != reloaded.checker_timeout),
            ("the metrics address", running.metrics_address != reloaded.metrics_address),
        ];
        for (what, _) in needs_restart.iter().filter(|(_, changed)| *changed) {
            tracing::warn!(what, "the cluster file changes {what}: not applied until this replica restarts");
        }
        if reloaded.checkers != running.checkers {
            let _ = tx_checkers.send(reloaded.checkers.clone()).await;
        }
        if reloaded.clients != running.clients {
            tracing::info!(clients = reloaded.clients.len(), "client keys reloaded from the cluster file");
            tx_admitted.send_replace(admitted_keys(&reloaded));
        }
        running.checkers = reloaded.checkers;
        running.clients = reloaded.clients;
    }
}
