//! The peer network of one shard: framed TCP (length-delimited, postcard,
//! TCP_NODELAY). `PeerListener` accepts connections, authenticates the peer
//! with a signed answer to a fresh challenge, and hands its messages to the
//! core; `PeerSender` keeps one outgoing connection per peer, behind a bounded
//! queue, and reconnects with backoff. A bad frame closes that one connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::Signature;
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shardspace_core::bft::{Committee, KeyPair, PeerMessage, ReplicaId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The largest frame between replicas (a sync answer of 16 full blocks fits).
pub const FRAME_BYTES_MAX: usize = 24 * 1024 * 1024;
/// Messages waiting for one peer; beyond it new ones are dropped (the protocol tolerates loss).
pub const PEER_QUEUE_MAX: usize = 4_096;
/// How long a peer has to answer the challenge.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(50);
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);

/// What the listener sends first: sign it to prove who you are.
#[derive(Debug, Serialize, Deserialize)]
struct Challenge {
    nonce: [u8; 32],
}

/// The dialer's answer.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    replica: ReplicaId,
    signature: Signature,
}

fn hello_bytes(committee: &Committee, nonce: &[u8; 32], listener: ReplicaId) -> Vec<u8> {
    committee.signing_bytes("hello", &[nonce, &listener.0.to_be_bytes()])
}

/// Counts of what the network dropped, for logs and metrics.
#[derive(Debug, Default)]
pub struct NetworkCounters {
    pub frames_rejected: AtomicU64,
    pub handshakes_rejected: AtomicU64,
    pub sends_dropped: AtomicU64,
}

fn framed(stream: TcpStream) -> Framed<TcpStream, LengthDelimitedCodec> {
    let codec = LengthDelimitedCodec::builder().max_frame_length(FRAME_BYTES_MAX).new_codec();
    Framed::new(stream, codec)
}

/// Decodes a whole frame: trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, String> {
    match postcard::take_from_bytes::<T>(frame) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
        Err(error) => Err(error.to_string()),
    }
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(postcard::to_stdvec(value).expect("encoding into memory cannot fail"))
}

/// Accepts peers' connections and forwards their messages to the core.
#[derive(Debug)]
pub struct PeerListener {
    pub listener: TcpListener,
    pub committee: Committee,
    pub own: ReplicaId,
    pub tx_core: mpsc::Sender<(ReplicaId, PeerMessage)>,
    pub counters: Arc<NetworkCounters>,
}

impl PeerListener {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let shared = Arc::new(self);
        loop {
            let accepted = tokio::select! {
                accepted = shared.listener.accept() => accepted,
                _ = shutdown.changed() => return,
            };
            match accepted {
                Ok((stream, address)) => {
                    let listener = Arc::clone(&shared);
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move { listener.serve(stream, address, shutdown).await });
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(RECONNECT_DELAY_MIN).await;
                }
            }
        }
    }

    async fn serve(&self, stream: TcpStream, address: SocketAddr, mut shutdown: watch::Receiver<bool>) {
        let _ = stream.set_nodelay(true);
        let mut frames = framed(stream);
        let peer = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(&mut frames)).await {
            Ok(Ok(peer)) => peer,
            Ok(Err(reason)) => {
                self.counters.handshakes_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%address, reason, "peer handshake rejected; connection closed");
                return;
            }
            Err(_) => {
                self.counters.handshakes_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%address, "peer did not answer the challenge in time; connection closed");
                return;
            }
        };
        tracing::debug!(%address, %peer, "peer connected");
        loop {
            let frame = tokio::select! {
                frame = frames.next() => frame,
                _ = shutdown.changed() => return,
            };
            let bytes = match frame {
                Some(Ok(bytes)) => bytes,
                Some(Err(error)) => {
                    self.counters.frames_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, %error, "bad frame from peer; connection closed");
                    return;
                }
                None => return,
            };
            match decode::<PeerMessage>(&bytes) {
                Ok(message) => {
                    if self.tx_core.send((peer, message)).await.is_err() {
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

    /// Sends a fresh challenge; the answer must be signed by a member of this shard.
    async fn handshake(&self, frames: &mut Framed<TcpStream, LengthDelimitedCodec>) -> Result<ReplicaId, String> {
        let nonce: [u8; 32] = rand::random();
        frames.send(encode(&Challenge { nonce })).await.map_err(|error| error.to_string())?;
        let frame = frames.next().await.ok_or("closed before answering")?.map_err(|error| error.to_string())?;
        let hello: Hello = decode(&frame)?;
        if hello.replica == self.own {
            return Err("a peer claims to be this replica".into());
        }
        self.committee
            .verify(hello.replica, &hello_bytes(&self.committee, &nonce, self.own), &hello.signature)
            .map_err(|error| error.to_string())?;
        Ok(hello.replica)
    }
}

/// The queue of messages to one peer, and the task that delivers them.
#[derive(Clone, Debug)]
pub struct PeerSender {
    tx_peer: mpsc::Sender<Bytes>,
    counters: Arc<NetworkCounters>,
}

impl PeerSender {
    /// Starts the task that connects to `peer` at `address`.
    pub fn start(
        address: String,
        peer: ReplicaId,
        keys: KeyPair,
        committee: Committee,
        counters: Arc<NetworkCounters>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (tx_peer, rx_messages) = mpsc::channel(PEER_QUEUE_MAX);
        let connection = Connection { address, peer, keys, committee };
        tokio::spawn(connection.run(rx_messages, shutdown));
        Self { tx_peer, counters }
    }

    /// Queues a message; drops it if the peer's queue is full.
    pub fn send(&self, message: &PeerMessage) {
        if self.tx_peer.try_send(encode(message)).is_err() {
            self.counters.sends_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Connection {
    address: String,
    peer: ReplicaId,
    keys: KeyPair,
    committee: Committee,
}

impl Connection {
    async fn run(self, mut rx_messages: mpsc::Receiver<Bytes>, mut shutdown: watch::Receiver<bool>) {
        let mut delay = RECONNECT_DELAY_MIN;
        loop {
            let connected = tokio::select! {
                connected = self.connect() => connected,
                _ = shutdown.changed() => return,
            };
            match connected {
                Ok(mut frames) => {
                    delay = RECONNECT_DELAY_MIN;
                    loop {
                        let message = tokio::select! {
                            message = rx_messages.recv() => message,
                            _ = shutdown.changed() => return,
                        };
                        let Some(message) = message else { return };
                        if let Err(error) = frames.send(message).await {
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

    async fn connect(&self) -> Result<Framed<TcpStream, LengthDelimitedCodec>, String> {
        let stream = TcpStream::connect(&self.address).await.map_err(|error| error.to_string())?;
        let _ = stream.set_nodelay(true);
        let mut frames = framed(stream);
        let answer = async {
            let frame = frames.next().await.ok_or("closed before the challenge")?.map_err(|e| e.to_string())?;
            let challenge: Challenge = decode(&frame)?;
            let signature = self.keys.sign(&hello_bytes(&self.committee, &challenge.nonce, self.peer));
            frames.send(encode(&Hello { replica: self.keys.id, signature })).await.map_err(|e| e.to_string())
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, answer)
            .await
            .map_err(|_| "the challenge did not come in time".to_string())??;
        Ok(frames)
    }
}
