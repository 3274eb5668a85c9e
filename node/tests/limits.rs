//! Every limit at a replica's doors, hit: what is past it is refused clearly (a
//! connection told why and closed, a frame refused and counted) or waits its turn, and
//! what was within it is delivered whole and in order.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shardspace_core::bft::{PeerMessage, ReplicaId, Request};
use shardspace_core::sbac::Attempt;
use shardspace_core::{ShardId, TxId};
use shardspace_node::CLIENT_COMMANDS_MAX;
use shardspace_node::client::{
    CLIENT_CONNECTIONS_MAX, CLIENT_FRAME_BYTES_MAX, ClientCommand, ClientReply, ClientRequest, REFUSALS_MAX,
};
use shardspace_node::network::{
    CROSS_SHARD_FRAME_BYTES_MAX, FRAME_BYTES_MAX, Frame, HANDSHAKES_MAX, NetworkCounters, PEER_QUEUE_MAX, PeerId,
    PeerSender, decode,
};
use shardspace_node::secure::SecureLink;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

mod common;
use common::{
    CLUSTER, LISTENER, client_link, closed, committee, credentials, dial, listener, listener_key, listener_with, send,
    try_dial,
};

/// How long anything here may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long a test waits to see that something does *not* happen.
const QUIET: Duration = Duration::from_millis(500);

/// A numbered BFT frame, to see each one arrive once and in order.
fn numbered(n: u64) -> Frame {
    Frame::Bft(PeerMessage::Requests(vec![Request::new(n.to_be_bytes().to_vec())]))
}

fn number_of(frame: &Frame) -> u64 {
    match frame {
        Frame::Bft(PeerMessage::Requests(requests)) => {
            u64::from_be_bytes(requests[0].payload()[..8].try_into().unwrap())
        }
        other => panic!("not a numbered frame: {other:?}"),
    }
}

/// An envelope frame of about `bytes` bytes.
fn envelope_frame(bytes: usize) -> Frame {
    Frame::Envelope { envelope: "x".repeat(bytes), attempt: Attempt(1) }
}

#[tokio::test]
async fn connections_past_handshakes_max_wait_for_a_slot_and_are_then_served() {
    let (address, counters, mut rx_core, _stop) = listener().await;
    // Strangers that connect and never send their handshake hold every handshake slot.
    let mut silent = Vec::new();
    for _ in 0..HANDSHAKES_MAX {
        silent.push(TcpStream::connect(address).await.unwrap());
    }
    // A replica of the shard gets no answer while they do...
    let (_, keys) = committee(CLUSTER, 0);
    let mut dialing = tokio::spawn({
        let keys = keys[2].clone();
        async move { try_dial(address, &keys).await }
    });
    let answered = tokio::time::timeout(QUIET, &mut dialing).await;
    assert!(answered.is_err(), "a handshake past HANDSHAKES_MAX was answered: {answered:?}");
    // ...and gets one when one of them goes away; then it is served as any peer.
    drop(silent.pop());
    let mut link = tokio::time::timeout(DEADLINE, dialing).await.unwrap().unwrap().unwrap();
    send(&mut link, &numbered(7)).await;
    let (from, frame) = tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().unwrap();
    assert_eq!((from, number_of(&frame)), (PeerId { shard: ShardId(0), replica: ReplicaId(2) }, 7));
    assert_eq!(counters.handshakes_rejected.load(Ordering::Relaxed), 1, "the stranger that left is counted");
}

/// A handshake record is at most 64 KiB (Noise's largest message): a length past it
/// closes the connection before its bytes are read, and a peer still gets in.
#[tokio::test]
async fn a_handshake_record_past_its_bound_is_refused() {
    let (address, counters, mut rx_core, _stop) = listener().await;
    let mut stranger = TcpStream::connect(address).await.unwrap();
    stranger.write_all(&(1u32 << 16).to_be_bytes()).await.unwrap();
    let _ = stranger.write_all(&vec![0u8; 1 << 16]).await;
    common::wait_for(|| counters.handshakes_rejected.load(Ordering::Relaxed) > 0).await;
    let (_, keys) = committee(CLUSTER, 0);
    let mut link = dial(address, &keys[1]).await;
    send(&mut link, &numbered(1)).await;
    assert!(tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().is_some());
}

#[tokio::test]
async fn a_frame_past_cross_shard_frame_bytes_max_closes_only_another_shards_link() {
    let (address, counters, mut rx_core, _stop) = listener().await;
    let large = postcard::to_stdvec(&envelope_frame(CROSS_SHARD_FRAME_BYTES_MAX)).unwrap();
    assert!(large.len() > CROSS_SHARD_FRAME_BYTES_MAX && large.len() <= FRAME_BYTES_MAX);
    // From a replica of the shard, it is within FRAME_BYTES_MAX: taken.
    let (_, keys) = committee(CLUSTER, 0);
    let mut own = dial(address, &keys[1]).await;
    own.send(&large).await.unwrap();
    let (_, frame) = tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().unwrap();
    assert!(matches!(frame, Frame::Envelope { .. }));
    // From another shard's replica, the same frame is refused and the link closed.
    let (_, keys) = committee(CLUSTER, 1);
    let mut foreign = dial(address, &keys[1]).await;
    let _ = foreign.send(&large).await;
    assert!(closed(&mut foreign).await, "the connection stayed open");
    assert_eq!(counters.frames_rejected.load(Ordering::Relaxed), 1);
    assert!(rx_core.try_recv().is_err(), "the oversized frame reached the core");
    // Just within the limit, it is taken from another shard too.
    let mut foreign = dial(address, &keys[2]).await;
    send(&mut foreign, &envelope_frame(CROSS_SHARD_FRAME_BYTES_MAX - 16)).await;
    assert!(tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().is_some());
}

/// A peer's socket bound but not served yet, and replica 3's sender to it: the sender
/// connects and waits for the handshake's answer, so nothing leaves its queue until the
/// socket is served (`listener_with`).
async fn unserved_peer(
    stale_after: Duration,
) -> (tokio::net::TcpListener, PeerSender, Arc<NetworkCounters>, watch::Sender<bool>) {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap().to_string();
    let (_, keys) = committee(CLUSTER, 0);
    let counters = Arc::new(NetworkCounters::default());
    let (stop, shutdown) = watch::channel(false);
    let to = (LISTENER, listener_key());
    let sender = PeerSender::start(address, to, credentials(&keys[3]), counters.clone(), shutdown, stale_after);
    (socket, sender, counters, stop)
}

#[tokio::test]
async fn frames_past_peer_queue_max_are_dropped_and_counted_and_the_queued_ones_all_arrive_in_order() {
    // None grows stale here (`PEER_STALE_AFTER`), however slow the machine.
    let (socket, sender, counters, _stop_sender) = unserved_peer(DEADLINE).await;
    let extra = 25;
    for n in 0..(PEER_QUEUE_MAX + extra) as u64 {
        sender.send(&numbered(n));
    }
    assert_eq!(counters.sends_dropped.load(Ordering::Relaxed), extra as u64);
    // The peer starts serving: every queued frame arrives once, in order.
    let (_, _, mut rx_core, _stop) = listener_with(socket, PEER_QUEUE_MAX + extra);
    for n in 0..PEER_QUEUE_MAX as u64 {
        let (from, frame) = tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().unwrap();
        assert_eq!((from.replica, number_of(&frame)), (ReplicaId(3), n));
    }
    assert!(tokio::time::timeout(QUIET, rx_core.recv()).await.is_err(), "a dropped frame arrived");
}

#[tokio::test]
async fn a_core_queue_that_is_full_holds_the_peer_back_and_loses_nothing() {
    // The core's queue is shorter than what the peer sends, and the core is not reading:
    // the peer's link waits (TCP back-pressure) instead of dropping.
    let core_queue = 64;
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (address, counters, mut rx_core, _stop) = listener_with(socket, core_queue);
    let (_, keys) = committee(CLUSTER, 0);
    let mut link = dial(address, &keys[1]).await;
    let sent = (core_queue * 4) as u64;
    let writer = tokio::spawn(async move {
        for n in 0..sent {
            send(&mut link, &numbered(n)).await;
        }
        link
    });
    for n in 0..sent {
        let (_, frame) = tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().unwrap();
        assert_eq!(number_of(&frame), n);
    }
    let _frames = writer.await.unwrap();
    assert_eq!(counters.frames_rejected.load(Ordering::Relaxed), 0);
    // The node's queue is this one, longer (`shardspace_node::CORE_QUEUE_MAX`).
    const { assert!(shardspace_node::CORE_QUEUE_MAX >= PEER_QUEUE_MAX) };
}

#[tokio::test]
async fn frames_that_waited_past_peer_stale_after_for_a_peer_that_is_not_served_are_dropped_and_counted() {
    let stale_after = Duration::from_millis(200);
    let (socket, sender, counters, _stop_sender) = unserved_peer(stale_after).await;
    let queued = tokio::time::Instant::now();
    for n in 0..10 {
        sender.send(&numbered(n));
    }
    // Their age is what is tested: the peer is served only once they are past `stale_after`.
    tokio::time::sleep_until(queued + stale_after + Duration::from_millis(50)).await;
    let (_, _, mut rx_core, _stop) = listener_with(socket, 64);
    sender.send(&numbered(10));
    let (_, frame) = tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().unwrap();
    assert_eq!(number_of(&frame), 10, "the fresh frame, not the stale ones");
    assert_eq!(counters.sends_dropped.load(Ordering::Relaxed), 10);
    assert!(shardspace_node::network::PEER_STALE_AFTER >= Duration::from_secs(1), "longer than a round takes");
}

async fn client_listener(
    commands_max: usize,
) -> (std::net::SocketAddr, mpsc::Receiver<ClientCommand>, watch::Sender<bool>) {
    let (address, rx_core, stop, _) = common::client_listener(commands_max).await;
    (address, rx_core, stop)
}

async fn next_command(rx_core: &mut mpsc::Receiver<ClientCommand>) -> ClientCommand {
    tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().unwrap()
}

/// The next command must open a connection; its reply queue is kept (the connection
/// closes when the core lets go of it).
async fn opened(rx_core: &mut mpsc::Receiver<ClientCommand>) -> mpsc::Sender<ClientReply> {
    match next_command(rx_core).await {
        ClientCommand::Open { tx_client, .. } => tx_client,
        other => panic!("expected a connection to open, got {other:?}"),
    }
}

async fn next_reply(link: &mut SecureLink) -> Option<ClientReply> {
    let frame = tokio::time::timeout(DEADLINE, link.receive()).await.unwrap().ok()??;
    Some(decode(&frame).unwrap())
}

/// A link to the client listener, or `None` if it closed the connection before answering.
async fn try_client_link(address: std::net::SocketAddr) -> Option<SecureLink> {
    let keys = common::client_keys();
    let (expected, credentials) = (listener_key(), credentials(&keys));
    common::dial_as(address, &credentials, &expected, CLIENT_FRAME_BYTES_MAX).await.ok()
}

#[tokio::test]
async fn a_connection_past_client_connections_max_is_told_why_and_closed_and_a_later_one_is_served() {
    let (address, mut rx_core, _stop) = client_listener(4 * CLIENT_CONNECTIONS_MAX).await;
    // Connections that have asked something: none is silent, so none makes room.
    let mut open = Vec::new();
    for _ in 0..CLIENT_CONNECTIONS_MAX {
        let mut link = client_link(address).await;
        let replies = opened(&mut rx_core).await;
        send(&mut link, &ClientRequest::Status).await;
        assert!(matches!(next_command(&mut rx_core).await, ClientCommand::Request { .. }));
        open.push((link, replies));
    }
    let mut refused = client_link(address).await;
    match next_reply(&mut refused).await {
        Some(ClientReply::Error(reason)) => assert!(reason.contains("connections"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(closed(&mut refused).await);
    assert!(rx_core.try_recv().is_err(), "the refused connection reached the core");
    // Refusals being told at once are bounded too: connections that take their refusal
    // and stay hold the refusals' places (up to 5 s each), and one more is closed untold.
    let mut staying = vec![refused];
    for _ in 1..REFUSALS_MAX {
        let mut link = client_link(address).await;
        assert!(matches!(next_reply(&mut link).await, Some(ClientReply::Error(_))));
        staying.push(link);
    }
    let untold = match try_client_link(address).await {
        Some(mut link) => next_reply(&mut link).await,
        None => None,
    };
    assert_eq!(untold, None, "closed without a word past REFUSALS_MAX");
    // One closes: the next connection is served, and its requests reach the core.
    drop(open.pop());
    assert!(matches!(next_command(&mut rx_core).await, ClientCommand::Closed(_)));
    let mut later = client_link(address).await;
    let _replies = opened(&mut rx_core).await;
    send(&mut later, &ClientRequest::Status).await;
    let request = next_command(&mut rx_core).await;
    assert!(matches!(request, ClientCommand::Request { request: ClientRequest::Status, .. }), "{request:?}");
}

#[tokio::test]
async fn a_client_frame_past_client_frame_bytes_max_is_answered_with_an_error_and_closes_only_its_connection() {
    let (address, mut rx_core, _stop) = client_listener(4 * CLIENT_CONNECTIONS_MAX).await;
    let request = |bytes: usize| ClientRequest::Envelope { envelope: "x".repeat(bytes), attempt: Attempt(1) };
    // Just within the limit: it reaches the core whole.
    let mut client = client_link(address).await;
    let _replies = opened(&mut rx_core).await;
    let fits = request(CLIENT_FRAME_BYTES_MAX - 16);
    send(&mut client, &fits).await;
    match next_command(&mut rx_core).await {
        ClientCommand::Request { request, .. } => assert_eq!(request, fits),
        other => panic!("expected the request, got {other:?}"),
    }
    // Past it: an error naming the frame, the connection closed, nothing for the core.
    let mut client = client_link(address).await;
    client.set_frame_bytes_max(2 * CLIENT_FRAME_BYTES_MAX);
    let _replies_too = opened(&mut rx_core).await;
    let past = postcard::to_stdvec(&request(CLIENT_FRAME_BYTES_MAX)).unwrap();
    let _ = client.send(&past).await;
    match next_reply(&mut client).await {
        Some(ClientReply::Error(reason)) => assert!(reason.contains("frame"), "{reason}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(closed(&mut client).await);
    drop(client);
    assert!(matches!(next_command(&mut rx_core).await, ClientCommand::Closed(_)));
}

/// Clients that send faster than the core takes their requests fill the node's command
/// queue (`CLIENT_COMMANDS_MAX`) and are then held back by TCP: nothing is dropped, and each
/// client's requests reach the core whole and in order.
#[tokio::test]
async fn a_full_client_command_queue_holds_clients_back_and_loses_nothing() {
    let (address, mut rx_core, _stop) = client_listener(CLIENT_COMMANDS_MAX).await;
    let (clients, each) = (4, u32::try_from(CLIENT_COMMANDS_MAX).unwrap());
    let numbered = |n: u32| {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_be_bytes());
        ClientRequest::Transaction(TxId(id))
    };
    let mut writers = Vec::new();
    for _ in 0..clients {
        let mut link = client_link(address).await;
        writers.push(tokio::spawn(async move {
            for n in 0..each {
                send(&mut link, &numbered(n)).await;
            }
            link
        }));
    }
    // The core reads nothing until its queue is full.
    tokio::time::timeout(DEADLINE, async {
        while rx_core.len() < CLIENT_COMMANDS_MAX {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let (mut next, mut replies, mut received) = (BTreeMap::new(), Vec::new(), 0);
    while received < clients * each {
        match next_command(&mut rx_core).await {
            ClientCommand::Open { client, tx_client } => {
                replies.push(tx_client);
                next.insert(client, 0);
            }
            ClientCommand::Request { client, request: ClientRequest::Transaction(TxId(id)) } => {
                let expected = next.get_mut(&client).unwrap();
                assert_eq!(u32::from_be_bytes(id[..4].try_into().unwrap()), *expected, "{client:?}");
                *expected += 1;
                received += 1;
            }
            other => panic!("expected a numbered request, got {other:?}"),
        }
    }
    assert!(next.values().all(|count| *count == each));
    for writer in writers {
        let _frames = writer.await.unwrap();
    }
}

/// A connection that asked something and then neither asks nor hears anything for
/// `IDLE_TIMEOUT` is closed, its place freed; a request or a reply starts the wait again.
/// (`IDLE_TIMEOUT` itself is past `WAITING_MS_MAX`: nothing it asked is still awaited.)
#[tokio::test]
async fn a_connection_idle_past_idle_timeout_is_closed_and_traffic_keeps_one_open() {
    const {
        assert!(
            shardspace_node::client::IDLE_TIMEOUT.as_millis() > shardspace_core::sbac::replica::WAITING_MS_MAX as u128
        )
    };
    let idle = Duration::from_secs(2);
    let (address, mut rx_core, _stop, _) = common::client_listener_idle(64, idle).await;
    let mut link = client_link(address).await;
    let replies = opened(&mut rx_core).await;
    let started = tokio::time::Instant::now();
    send(&mut link, &ClientRequest::Status).await;
    assert!(matches!(next_command(&mut rx_core).await, ClientCommand::Request { .. }));
    // A reply half-way through: the wait starts again from it.
    tokio::time::sleep(idle / 2).await;
    replies.send(ClientReply::Refused(Vec::new())).await.unwrap();
    assert_eq!(next_reply(&mut link).await, Some(ClientReply::Refused(Vec::new())));
    assert!(closed(&mut link).await, "an idle connection stayed open");
    assert!(started.elapsed() >= idle * 3 / 2, "closed {:?} after its request", started.elapsed());
    assert!(matches!(next_command(&mut rx_core).await, ClientCommand::Closed(_)));
}

/// A replica's `/metrics` port is served with the API's bounds (`node/src/http.rs`):
/// hundreds of connections that send nothing or half a request never keep a scraper
/// waiting, and headers past `HEADER_BYTES_MAX` get 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_never_keep_a_scraper_of_metrics_waiting() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let freezes = shardspace_node::freeze::Freezes::watch(shutdown.clone());
    let metrics = Arc::new(shardspace_node::metrics::NodeMetrics::default());
    let counters = Arc::new(NetworkCounters::default());
    tokio::spawn(shardspace_node::metrics::serve(listener, metrics, counters, freezes, shutdown));
    let mut held = Vec::new();
    for n in 0..300 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        if n % 2 == 1 {
            stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        }
        held.push(stream);
    }
    let http = reqwest::Client::new();
    let mut waits = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let scraped = tokio::time::timeout(DEADLINE, http.get(format!("http://{address}/metrics")).send()).await;
        let response = scraped.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().contains("shardspace_replica_decided_height"));
        waits.push(started.elapsed());
    }
    waits.sort();
    assert!(waits[2] <= Duration::from_millis(100), "a scraper waited {waits:?}");
    let oversized = http.get(format!("http://{address}/metrics")).header("x-big", "a".repeat(70 * 1024)).send();
    assert_eq!(tokio::time::timeout(DEADLINE, oversized).await.unwrap().unwrap().status(), 431);
}

/// Strangers (keys the cluster file does not list) that finish their handshake and stay,
/// more of them than `CLIENT_CONNECTIONS_MAX`, hold no place: each is told why on the side
/// (bounded by `REFUSALS_MAX`), and a listed client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_past_client_connections_max_keep_no_listed_client_out() {
    let (address, mut rx_core, _stop) = client_listener(4 * CLIENT_CONNECTIONS_MAX).await;
    let stranger = credentials(&common::outsider(55));
    let mut strangers = Vec::new();
    for _ in 0..CLIENT_CONNECTIONS_MAX + 44 {
        let link = common::dial_as(address, &stranger, &listener_key(), CLIENT_FRAME_BYTES_MAX).await;
        strangers.push(link);
    }
    let mut link = client_link(address).await;
    send(&mut link, &ClientRequest::Status).await;
    let mut queues = Vec::new(); // kept: a connection whose reply queue is dropped closes
    loop {
        match next_command(&mut rx_core).await {
            ClientCommand::Request { request, .. } => break assert_eq!(request, ClientRequest::Status),
            ClientCommand::Open { tx_client, .. } => queues.push(tx_client),
            ClientCommand::Closed(_) => {}
        }
    }
    assert_eq!(queues.len(), 1, "a stranger's connection reached the core");
}
