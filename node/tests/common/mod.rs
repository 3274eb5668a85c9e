//! What the tests at a replica's doors share: committees, an in-process peer listener,
//! and a dialer that answers its challenge as it is told.

#![allow(clippy::unwrap_used, dead_code)] // each test file uses some of these

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use shardspace_core::ShardId;
use shardspace_core::bft::{Committee, KeyPair, ReplicaId};
use shardspace_node::freeze::Freezes;
use shardspace_node::network::{FRAME_BYTES_MAX, Frame, Hello, NetworkCounters, PeerId, PeerListener, hello_bytes};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

pub fn committee(cluster: &str, shard: u32) -> (Committee, Vec<KeyPair>) {
    let keys: Vec<KeyPair> =
        (0..4).map(|i| KeyPair::from_seed(ReplicaId(i), [(shard * 10 + i) as u8 + 1; 32])).collect();
    (Committee::new(cluster, ShardId(shard), keys.iter().map(KeyPair::public).collect()), keys)
}

/// A listener's address, counters, what reaches its core, and its stop switch.
pub type Listening = (std::net::SocketAddr, Arc<NetworkCounters>, mpsc::Receiver<(PeerId, Frame)>, watch::Sender<bool>);

pub const LISTENER: PeerId = PeerId { shard: ShardId(0), replica: ReplicaId(0) };

/// A peer listener of replica 0 of shard 0 in a two-shard cluster, in process, with its
/// counters and what reaches its core.
pub async fn listener()
-> (std::net::SocketAddr, Arc<NetworkCounters>, mpsc::Receiver<(PeerId, Frame)>, watch::Sender<bool>) {
    listener_with(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), 16)
}

/// `listener`, on `socket`, whose core takes `core_queue` frames before the peers wait.
pub fn listener_with(socket: tokio::net::TcpListener, core_queue: usize) -> Listening {
    listener_freezing(socket, core_queue).0
}

/// `listener_with`, and the freezes it heeds.
pub fn listener_freezing(socket: tokio::net::TcpListener, core_queue: usize) -> (Listening, Arc<Freezes>) {
    let committees = vec![committee("test", 0).0, committee("test", 1).0];
    let address = socket.local_addr().unwrap();
    let counters = Arc::new(NetworkCounters::default());
    let (tx_core, rx_core) = mpsc::channel(core_queue);
    let (stop, shutdown) = watch::channel(false);
    let freezes = Freezes::watch(shutdown.clone());
    let counted = Arc::clone(&counters);
    let listener = PeerListener {
        listener: socket,
        committees,
        own: LISTENER,
        tx_core,
        counters: counted,
        freezes: Arc::clone(&freezes),
    };
    tokio::spawn(listener.run(shutdown));
    ((address, counters, rx_core, stop), freezes)
}

/// Connects, reads the challenge, and answers with `hello` (raw bytes of a frame).
pub async fn answer(
    address: std::net::SocketAddr,
    hello: impl FnOnce([u8; 32]) -> Vec<u8>,
) -> Framed<TcpStream, LengthDelimitedCodec> {
    let stream = TcpStream::connect(address).await.unwrap();
    let codec = LengthDelimitedCodec::builder().max_frame_length(FRAME_BYTES_MAX * 2).new_codec();
    let mut frames = Framed::new(stream, codec);
    let challenge = frames.next().await.unwrap().unwrap();
    let nonce: [u8; 32] = challenge[..32].try_into().unwrap();
    frames.send(bytes::Bytes::from(hello(nonce))).await.unwrap();
    frames
}

/// Waits until the listener has closed the connection (with a deadline).
pub async fn closed(frames: &mut Framed<TcpStream, LengthDelimitedCodec>) -> bool {
    matches!(tokio::time::timeout(Duration::from_secs(10), frames.next()).await, Ok(None | Some(Err(_))))
}

/// A dialer's answer claiming to be `shard`/`replica`, signed with `keys` in `committee`'s domain.
pub fn hello(shard: u32, replica: u32, keys: &KeyPair, committee: &Committee, nonce: [u8; 32]) -> Vec<u8> {
    let signature = keys.sign(&hello_bytes(committee, &nonce, LISTENER));
    let from = PeerId { shard: ShardId(shard), replica: ReplicaId(replica) };
    postcard::to_stdvec(&Hello { from, signature }).unwrap()
}
