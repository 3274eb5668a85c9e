//! The Shardspace replica process: actors around the sans-IO BFT replica of
//! `shardspace-core` (DESIGN.md §6, STYLE.md §1). `run` wires them: the SQLite
//! store thread, the peer listener and one sender per peer, the client
//! listener, and the `Core` task that owns the protocol state.

pub mod checker_client;
pub mod client;
pub mod config;
pub mod core;
pub mod network;
pub mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use shardspace_core::bft::Replica;
use shardspace_core::bft::kv::KvApp;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::client::ClientListener;
use crate::config::NodeConfig;
use crate::core::{Core, CoreError};
use crate::network::{NetworkCounters, PeerListener, PeerSender};
use crate::store::{Store, StoreError};

/// Messages from peers waiting for the core.
const CORE_QUEUE_MAX: usize = 10_000;
/// Client commands waiting for the core.
const CLIENT_COMMANDS_MAX: usize = 1_000;

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
}

/// Where a started replica listens.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub peer: SocketAddr,
    pub client: SocketAddr,
}

/// Runs one replica until `shutdown` turns true; `ready` hears where it listens.
pub async fn run(
    config: NodeConfig,
    shutdown: watch::Receiver<bool>,
    ready: oneshot::Sender<Bound>,
) -> Result<(), NodeError> {
    let store = Store::open(&config.data_dir, config.durability)?;
    let persisted = store.load().await?;
    let app = KvApp::default();
    let replica = Replica::recover(config.committee.clone(), config.keys.clone(), config.bft.clone(), app, persisted)
        .map_err(NodeError::Recover)?;
    let bind = |address: SocketAddr| async move {
        TcpListener::bind(address).await.map_err(|source| NodeError::Bind { address, source })
    };
    let (peer_listener, client_listener) = (bind(config.peer_address).await?, bind(config.client_address).await?);
    let bound = Bound {
        peer: peer_listener.local_addr().map_err(|source| NodeError::Bind { address: config.peer_address, source })?,
        client: client_listener
            .local_addr()
            .map_err(|source| NodeError::Bind { address: config.client_address, source })?,
    };
    let counters = Arc::new(NetworkCounters::default());
    let (tx_core, rx_peers) = mpsc::channel(CORE_QUEUE_MAX);
    let (tx_clients, rx_clients) = mpsc::channel(CLIENT_COMMANDS_MAX);
    let own = config.keys.id;
    let peers: BTreeMap<_, _> = config
        .peers
        .iter()
        .filter(|(id, _)| *id != own)
        .map(|(id, address)| {
            let sender = PeerSender::start(
                address.clone(),
                *id,
                config.keys.clone(),
                config.committee.clone(),
                Arc::clone(&counters),
                shutdown.clone(),
            );
            (*id, sender)
        })
        .collect();
    let listener =
        PeerListener { listener: peer_listener, committee: config.committee.clone(), own, tx_core, counters };
    tokio::spawn(listener.run(shutdown.clone()));
    tokio::spawn(ClientListener { listener: client_listener, tx_core: tx_clients }.run(shutdown.clone()));
    tracing::info!(shard = config.shard.0, replica = own.0, peer = %bound.peer, client = %bound.client, height = replica.tip().height.0, "replica started");
    let _ = ready.send(bound);
    let core = Core { replica, store, peers, waiting: Default::default(), started: Instant::now() };
    core.run(rx_peers, rx_clients, shutdown).await?;
    tracing::info!(shard = config.shard.0, replica = own.0, "replica stopped");
    Ok(())
}
