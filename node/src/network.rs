//! The peer network of the cluster: links of `secure.rs` (Noise IK over TCP,
//! TCP_NODELAY; frames are postcard) between every pair of replicas, keyed by the
//! replicas' keys of the cluster file. `PeerListener` accepts connections, admits
//! only the cluster's replicas (of any shard), and hands their frames to the core; `PeerSender` keeps one
//! outgoing connection per peer, behind a bounded queue, and reconnects with
//! backoff. Replicas of the same shard exchange every kind of frame; a replica
//! of another shard may send only S-BAC votes and envelopes. A bad frame closes
//! that one connection; a frame read across a freeze of this process resets it
//! (`freeze`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shardspace_core::bft::Committee;
pub use shardspace_core::sbac::replica::{Frame, PeerId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::freeze::Freezes;
use crate::secure::{Credentials, SecureError, SecureLink, public_of};

/// The largest frame between replicas (a sync answer of 16 full blocks fits).
pub const FRAME_BYTES_MAX: usize = 24 * 1024 * 1024;
/// Messages waiting for one peer; beyond it new ones are dropped (the protocol tolerates loss).
pub const PEER_QUEUE_MAX: usize = 4_096;
/// A frame that waited this long for its peer is dropped instead (counted as dropped): the
/// peer stopped reading (paused) and the rounds moved on; what still matters is asked for
/// again (blocks, checkpoints) or passed on (S-BAC votes), and a peer that resumes should
/// not spend itself on a backlog.
pub const PEER_STALE_AFTER: Duration = Duration::from_secs(2);
/// The largest frame from a replica of another shard (votes and envelopes only).
pub const CROSS_SHARD_FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;
/// The largest frame before the peer is known (none is sent before; the handshake's own
/// records are at most 64 KiB).
const HANDSHAKE_FRAME_BYTES_MAX: usize = 4 * 1024;
/// Connections in their handshake at once; more wait to be served.
pub const HANDSHAKES_MAX: usize = 64;
/// How long a peer has for its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(50);
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);
/// How long a connection attempt to a peer may take: over a cut network a SYN is never
/// answered, and the kernel would retry it for two minutes, at intervals up to 32 s, so a
/// link would stay down for as long after the network healed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long written bytes may stay unacknowledged before the connection is dropped (and
/// made again). Without it, frames sent over a cut network are retransmitted at intervals
/// that double up to two minutes, and a healed link waits for the next one.
pub const UNACKNOWLEDGED_MAX: Duration = Duration::from_secs(3);

/// Rejected handshakes, a flood of which would write a warning each: one a second, with a
/// count of those held back (`handshakes_rejected` in the metrics counts them all).
static HANDSHAKE_WARNINGS: crate::throttle::Throttle = crate::throttle::Throttle::new(Duration::from_secs(1));

/// Sets `UNACKNOWLEDGED_MAX` on a connection, and no Nagle delay.
pub fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let socket = socket2::SockRef::from(stream);
    if let Err(error) = socket.set_tcp_user_timeout(Some(UNACKNOWLEDGED_MAX)) {
        tracing::debug!(%error, "cannot set TCP_USER_TIMEOUT: a link over a cut network fails slowly");
    }
}

/// The replica whose key a link's other end holds, of any shard.
pub fn peer_of(committees: &[Committee], key: &[u8; 32]) -> Option<PeerId> {
    committees.iter().find_map(|committee| {
        let replica =
            committee.replicas().find(|replica| committee.key(*replica).is_some_and(|k| public_of(k) == *key))?;
        Some(PeerId { shard: committee.shard(), replica })
    })
}

/// The key a replica's links are made with (`secure::public_of` its listed key).
pub fn link_key(committees: &[Committee], peer: PeerId) -> Option<[u8; 32]> {
    committees.get(peer.shard.0 as usize)?.key(peer.replica).map(public_of)
}

/// Counts of what the network dropped, for logs and metrics.
#[derive(Debug, Default)]
pub struct NetworkCounters {
    pub frames_rejected: AtomicU64,
    pub handshakes_rejected: AtomicU64,
    pub sends_dropped: AtomicU64,
}

/// Decodes a whole frame: trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, String> {
    match postcard::take_from_bytes::<T>(frame) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
        Err(error) => Err(error.to_string()),
    }
}

pub fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(postcard::to_stdvec(value).expect("encoding into memory cannot fail"))
}

/// Accepts peers' connections and forwards their messages to the core.
#[derive(Debug)]
pub struct PeerListener {
    pub listener: TcpListener,
    /// Every shard's committee, by shard id.
    pub committees: Vec<Committee>,
    pub own: PeerId,
    /// This replica's key for its links.
    pub credentials: Credentials,
    pub tx_core: mpsc::Sender<(PeerId, Frame)>,
    pub counters: Arc<NetworkCounters>,
    pub freezes: Arc<Freezes>,
}

impl PeerListener {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let shared = Arc::new(self);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
        loop {
            let accepted = tokio::select! {
                accepted = shared.listener.accept() => accepted,
                _ = shutdown.changed() => return,
            };
            match accepted {
                Ok((stream, address)) => {
                    let listener = Arc::clone(&shared);
                    let shutdown = shutdown.clone();
                    let handshakes = Arc::clone(&handshakes);
                    tokio::spawn(async move { listener.serve(stream, address, handshakes, shutdown).await });
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(RECONNECT_DELAY_MIN).await;
                }
            }
        }
    }

    async fn serve(
        &self,
        stream: TcpStream,
        address: SocketAddr,
        handshakes: Arc<tokio::sync::Semaphore>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        tune(&stream);
        let mark = self.freezes.mark();
        // Until the peer is known, frames are small and handshakes few: a stranger cannot
        // make this replica reserve memory.
        let Ok(_handshaking) = handshakes.acquire().await else { return };
        let known = |key: &[u8; 32]| peer_of(&self.committees, key).is_some_and(|peer| peer != self.own);
        let accepting = self.credentials.accept(stream, HANDSHAKE_FRAME_BYTES_MAX, known);
        let reason = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accepting).await {
            Ok(Ok(link)) => Ok(link),
            Ok(Err(SecureError::Stranger(key))) => Err(format!("the key {key} is not a replica's of this cluster")),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no handshake within {HANDSHAKE_TIMEOUT:?}")),
        };
        let (mut link, peer) = match reason.map(|link| (peer_of(&self.committees, &link.remote), link)) {
            Ok((Some(peer), link)) => (link, peer),
            Ok((None, _)) => return,
            Err(reason) => {
                self.counters.handshakes_rejected.fetch_add(1, Ordering::Relaxed);
                if let Some(held_back) = HANDSHAKE_WARNINGS.allow() {
                    tracing::warn!(%address, reason, held_back, "peer handshake rejected; connection closed");
                }
                return;
            }
        };
        drop(_handshaking);
        let frame_bytes_max = if peer.shard == self.own.shard { FRAME_BYTES_MAX } else { CROSS_SHARD_FRAME_BYTES_MAX };
        link.set_frame_bytes_max(frame_bytes_max);
        tracing::debug!(%address, %peer, "peer connected");
        loop {
            let frame = tokio::select! {
                frame = link.receive() => frame,
                _ = shutdown.changed() => return,
            };
            let bytes = match frame {
                Ok(Some(bytes)) => bytes,
                Err(error) => {
                    self.counters.frames_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, %error, "bad frame from peer; connection closed");
                    return;
                }
                Ok(None) => return,
            };
            if self.freezes.frozen_since(mark) {
                tracing::debug!(%peer, "a frame read across a freeze: connection reset");
                self.freezes.reset(link.stream());
                return;
            }
            match decode::<Frame>(&bytes) {
                Ok(frame) if peer.shard != self.own.shard && !frame.crosses_shards() => {
                    self.counters.frames_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, "a replica of another shard sent a frame of this shard's own; connection closed");
                    return;
                }
                Ok(frame) => {
                    if self.tx_core.send((peer, frame)).await.is_err() {
                        return;
                    }
                }
                Err(reason) => {
                    self.counters.frames_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, reason, "undecodable frame from peer; connection closed");
                    return;
                }
            }
        }
    }
}

/// The queue of messages to one peer, and the task that delivers them.
#[derive(Clone, Debug)]
pub struct PeerSender {
    tx_peer: mpsc::Sender<(Instant, Bytes)>,
    counters: Arc<NetworkCounters>,
}

impl PeerSender {
    /// Starts the task that connects to `peer` at `address`; frames that waited longer
    /// than `stale_after` are dropped (`PEER_STALE_AFTER` in the node, shorter in tests).
    /// The link is made with `credentials` (this replica's), to the holder of `peer_key`.
    pub fn start(
        address: String,
        (peer, peer_key): (PeerId, [u8; 32]),
        credentials: Credentials,
        counters: Arc<NetworkCounters>,
        shutdown: watch::Receiver<bool>,
        stale_after: Duration,
    ) -> Self {
        let (tx_peer, rx_messages) = mpsc::channel(PEER_QUEUE_MAX);
        let connection = Connection { address, peer, peer_key, credentials, stale_after };
        tokio::spawn(connection.run(rx_messages, Arc::clone(&counters), shutdown));
        Self { tx_peer, counters }
    }

    /// Queues a frame; drops it if the peer's queue is full.
    pub fn send(&self, frame: &Frame) {
        self.send_encoded(encode(frame));
    }

    /// Queues a frame already encoded (one encoding for many peers).
    pub fn send_encoded(&self, bytes: Bytes) {
        if self.tx_peer.try_send((Instant::now(), bytes)).is_err() {
            self.counters.sends_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Connection {
    address: String,
    peer: PeerId,
    peer_key: [u8; 32],
    credentials: Credentials,
    stale_after: Duration,
}

impl Connection {
    async fn run(
        self,
        mut rx_messages: mpsc::Receiver<(Instant, Bytes)>,
        counters: Arc<NetworkCounters>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut delay = RECONNECT_DELAY_MIN;
        loop {
            let connected = tokio::select! {
                connected = self.connect() => connected,
                _ = shutdown.changed() => return,
            };
            match connected {
                Ok(mut link) => {
                    delay = RECONNECT_DELAY_MIN;
                    loop {
                        let message = tokio::select! {
                            message = rx_messages.recv() => message,
                            _ = shutdown.changed() => return,
                        };
                        let Some((queued_at, message)) = message else { return };
                        if queued_at.elapsed() > self.stale_after {
                            counters.sends_dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        if let Err(error) = link.send(&message).await {
                            tracing::debug!(peer = %self.peer, %error, "connection to peer lost; reconnecting");
                            break;
                        }
                    }
                }
                Err(reason) => tracing::debug!(peer = %self.peer, address = %self.address, reason, "cannot reach peer"),
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            delay = (delay * 2).min(RECONNECT_DELAY_MAX);
        }
    }

    async fn connect(&self) -> Result<SecureLink, String> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
            .await
            .map_err(|_| format!("no answer within {CONNECT_TIMEOUT:?}"))?
            .map_err(|error| error.to_string())?;
        tune(&stream);
        let dialing = self.credentials.dial(stream, &self.peer_key, FRAME_BYTES_MAX);
        tokio::time::timeout(HANDSHAKE_TIMEOUT, dialing)
            .await
            .map_err(|_| format!("no handshake within {HANDSHAKE_TIMEOUT:?}"))?
            .map_err(|error| error.to_string())
    }
}
