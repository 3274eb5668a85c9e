//! What the tests at a replica's doors share: committees and keys, in-process peer and
//! client listeners, and dialers that make links (`secure.rs`) as a replica or a client.

#![allow(clippy::unwrap_used, dead_code)] // each test file uses some of these

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use shardspace_core::ShardId;
use shardspace_core::bft::{Committee, KeyPair, ReplicaId};
use shardspace_node::client::{CLIENT_FRAME_BYTES_MAX, ClientCommand, ClientListener};
use shardspace_node::freeze::Freezes;
use shardspace_node::network::{FRAME_BYTES_MAX, Frame, NetworkCounters, PeerId, PeerListener};
use shardspace_node::secure::{Credentials, SecureError, SecureLink, public_of};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

pub const CLUSTER: &str = "test";

pub fn committee(cluster: &str, shard: u32) -> (Committee, Vec<KeyPair>) {
    let keys: Vec<KeyPair> =
        (0..4).map(|i| KeyPair::from_seed(ReplicaId(i), [(shard * 10 + i) as u8 + 1; 32])).collect();
    (Committee::new(cluster, ShardId(shard), keys.iter().map(KeyPair::public).collect()), keys)
}

/// The link key of `keys`, in this test cluster.
pub fn credentials(keys: &KeyPair) -> Credentials {
    Credentials::new(keys.signing_key(), CLUSTER)
}

/// A key that is no replica's: a client's, or a stranger's.
pub fn outsider(seed: u8) -> KeyPair {
    KeyPair::from_seed(ReplicaId(0), [seed; 32])
}

/// The client key the in-process client listeners admit.
pub fn client_keys() -> KeyPair {
    outsider(200)
}

/// A listener's address, counters, what reaches its core, and its stop switch.
pub type Listening = (std::net::SocketAddr, Arc<NetworkCounters>, mpsc::Receiver<(PeerId, Frame)>, watch::Sender<bool>);

pub const LISTENER: PeerId = PeerId { shard: ShardId(0), replica: ReplicaId(0) };

/// The link key of the listener (replica 0 of shard 0).
pub fn listener_key() -> [u8; 32] {
    public_of(&committee(CLUSTER, 0).1[0].public())
}

/// A peer listener of replica 0 of shard 0 in a two-shard cluster, in process, with its
/// counters and what reaches its core.
pub async fn listener() -> Listening {
    listener_with(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), 16)
}

/// `listener`, on `socket`, whose core takes `core_queue` frames before the peers wait.
pub fn listener_with(socket: tokio::net::TcpListener, core_queue: usize) -> Listening {
    listener_freezing(socket, core_queue).0
}

/// `listener_with`, and the freezes it heeds.
pub fn listener_freezing(socket: tokio::net::TcpListener, core_queue: usize) -> (Listening, Arc<Freezes>) {
    let (own_committee, own_keys) = committee(CLUSTER, 0);
    let committees = vec![own_committee, committee(CLUSTER, 1).0];
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
        credentials: credentials(&own_keys[0]),
        tx_core,
        counters: counted,
        freezes: Arc::clone(&freezes),
    };
    tokio::spawn(listener.run(shutdown));
    ((address, counters, rx_core, stop), freezes)
}

/// Makes a link to the listener at `address` (replica 0 of shard 0) as the holder of `keys`.
pub async fn try_dial(address: std::net::SocketAddr, keys: &KeyPair) -> Result<SecureLink, SecureError> {
    dial_as(address, &credentials(keys), &listener_key(), FRAME_BYTES_MAX).await
}

pub async fn dial(address: std::net::SocketAddr, keys: &KeyPair) -> SecureLink {
    try_dial(address, keys).await.unwrap()
}

/// Makes a link to `address` with `credentials`, expecting the listener to hold `expected`.
pub async fn dial_as(
    address: std::net::SocketAddr,
    credentials: &Credentials,
    expected: &[u8; 32],
    frame_bytes_max: usize,
) -> Result<SecureLink, SecureError> {
    let stream = TcpStream::connect(address).await?;
    tokio::time::timeout(Duration::from_secs(10), credentials.dial(stream, expected, frame_bytes_max))
        .await
        .map_err(|_| SecureError::Closed)?
}

/// Waits until `condition` holds (the listener's counters say so), for at most 10 s.
pub async fn wait_for(condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "the counters never said so");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends a value as one frame.
pub async fn send<T: serde::Serialize>(link: &mut SecureLink, value: &T) {
    link.send(&postcard::to_stdvec(value).unwrap()).await.unwrap();
}

/// Waits until the other end has closed the link (with a deadline).
pub async fn closed(link: &mut SecureLink) -> bool {
    matches!(tokio::time::timeout(Duration::from_secs(10), link.receive()).await, Ok(Ok(None) | Err(_)))
}

/// A client listener in process, keyed as replica 0 of shard 0, admitting `client_keys()`;
/// its commands wait in a queue of `commands_max`, and the test plays the core.
pub async fn client_listener(
    commands_max: usize,
) -> (std::net::SocketAddr, mpsc::Receiver<ClientCommand>, watch::Sender<bool>, Arc<Freezes>) {
    client_listener_idle(commands_max, shardspace_node::client::IDLE_TIMEOUT).await
}

/// `client_listener`, closing connections idle for `idle_timeout`.
pub async fn client_listener_idle(
    commands_max: usize,
    idle_timeout: Duration,
) -> (std::net::SocketAddr, mpsc::Receiver<ClientCommand>, watch::Sender<bool>, Arc<Freezes>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx_core, rx_core) = mpsc::channel(commands_max);
    let (stop, shutdown) = watch::channel(false);
    let freezes = Freezes::watch(shutdown.clone());
    let (_, admitted) = watch::channel(Arc::new(BTreeSet::from([credentials(&client_keys()).public()])));
    let own = credentials(&committee(CLUSTER, 0).1[0]);
    let freezing = Arc::clone(&freezes);
    let clients = ClientListener { listener, tx_core, freezes: freezing, credentials: own, admitted, idle_timeout };
    tokio::spawn(clients.run(shutdown));
    (address, rx_core, stop, freezes)
}

/// A link to an in-process client listener as the client it admits.
pub async fn client_link(address: std::net::SocketAddr) -> SecureLink {
    dial_as(address, &credentials(&client_keys()), &listener_key(), CLIENT_FRAME_BYTES_MAX).await.unwrap()
}

/// A relay to `target` that flips one bit of the `record`-th record the dialer sends
/// (counting its handshake message as the first): its address.
pub async fn tampering_relay(target: std::net::SocketAddr, record: usize) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = relay.local_addr().unwrap();
    tokio::spawn(async move {
        let (inbound, _) = relay.accept().await.unwrap();
        let outbound = TcpStream::connect(target).await.unwrap();
        let (mut from_dialer, mut to_dialer) = inbound.into_split();
        let (mut from_listener, mut to_listener) = outbound.into_split();
        tokio::spawn(async move { tokio::io::copy(&mut from_listener, &mut to_dialer).await });
        // Records are a 4-byte length, then that many bytes.
        let mut count = 0;
        loop {
            let mut length = [0u8; 4];
            if from_dialer.read_exact(&mut length).await.is_err() {
                return;
            }
            let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
            if from_dialer.read_exact(&mut body).await.is_err() {
                return;
            }
            count += 1;
            if count == record {
                let last = body.len() - 1;
                body[last] ^= 1;
            }
            if to_listener.write_all(&length).await.is_err() || to_listener.write_all(&body).await.is_err() {
                return;
            }
        }
    });
    address
}
