//! Bad input at the replica's doors: arbitrary bytes never panic a decoder; a peer
//! link with a garbage or stranger's handshake, a changed, undecodable or oversized
//! frame, or a replica of another shard sending what only the shard's own replicas
//! may, is closed and counted while nothing reaches the core; an unknown client key
//! is told why, and a replayed handshake gets nothing through.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proptest::prelude::*;
use shardspace_core::ShardId;
use shardspace_core::bft::{Committee, KeyPair, MessageLimits, PeerMessage, ReplicaId, VerifiedCertificates};
use shardspace_node::client::{CLIENT_FRAME_BYTES_MAX, ClientCommand, ClientReply, ClientRequest};
use shardspace_node::network::{FRAME_BYTES_MAX, Frame, PeerId, decode};
use shardspace_node::secure::{Credentials, public_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{
    CLUSTER, client_keys, client_link, client_listener, closed, committee, credentials, dial, dial_as, listener,
    listener_key, outsider, send, tampering_relay, try_dial, wait_for,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2_048)) {
        let keys: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed(ReplicaId(i), [i as u8 + 1; 32])).collect();
        let committee = Committee::new("test", ShardId(0), keys.iter().map(KeyPair::public).collect());
        if let Ok(Frame::Bft(message)) = decode::<Frame>(&bytes) {
            let _ = message.verify(&committee, &MessageLimits::default(), &mut VerifiedCertificates::new(8));
        }
        let _ = decode::<ClientRequest>(&bytes);
    }
}

/// Dialers that are not a replica of the cluster, or not as the listener expects: each
/// is refused during the handshake, counted, and nothing reaches the core.
#[tokio::test]
async fn garbage_unknown_foreign_and_mistaken_handshakes_are_refused_and_counted() {
    let (address, counters, mut rx_core, _stop) = listener().await;
    let (_, keys) = committee(CLUSTER, 0);
    // Garbage where the handshake's first record should be.
    let mut raw = tokio::net::TcpStream::connect(address).await.unwrap();
    raw.write_all(&[0, 0, 0, 7]).await.unwrap();
    raw.write_all(b"garbage").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer)).await.unwrap();
    assert!(read.is_err() || answer.is_empty(), "garbage got an answer: {answer:?}");
    // A key that is no replica's; the listener's own key; a replica of another cluster
    // (same key, another name); a replica that expects another key at this address.
    let in_another_cluster = Credentials::new(keys[1].signing_key(), "another cluster");
    let expecting_another = public_of(&keys[2].public());
    let attempts = [
        try_dial(address, &outsider(99)).await,
        try_dial(address, &keys[0]).await,
        dial_as(address, &in_another_cluster, &listener_key(), FRAME_BYTES_MAX).await,
        dial_as(address, &credentials(&keys[1]), &expecting_another, FRAME_BYTES_MAX).await,
    ];
    for (index, mut attempt) in attempts.into_iter().enumerate() {
        // A refused dialer hears nothing, or its link closes at once.
        if let Ok(link) = attempt.as_mut() {
            assert!(closed(link).await, "attempt {index}: the link stayed open");
        }
    }
    wait_for(|| counters.handshakes_rejected.load(Ordering::Relaxed) == 5).await;
    assert!(rx_core.try_recv().is_err(), "something reached the core");
}

#[tokio::test]
async fn after_a_good_handshake_a_bad_or_oversized_frame_closes_the_connection() {
    let (address, counters, mut rx_core, _stop) = listener().await;
    let (_, keys) = committee(CLUSTER, 0);
    let mut link = dial(address, &keys[1]).await;
    link.send(&[0xff, 0xff, 0xff]).await.unwrap();
    assert!(closed(&mut link).await);
    assert_eq!(counters.frames_rejected.load(Ordering::Relaxed), 1);

    let mut link = dial(address, &keys[1]).await;
    link.set_frame_bytes_max(2 * FRAME_BYTES_MAX);
    let _ = link.send(&vec![0u8; FRAME_BYTES_MAX + 1]).await;
    assert!(closed(&mut link).await);
    assert_eq!(counters.frames_rejected.load(Ordering::Relaxed), 2);
    assert!(rx_core.try_recv().is_err(), "something reached the core");
}

/// A frame changed on the way (one bit of its sealed record) does not open: the link is
/// closed, counted, and neither it nor anything after it reaches the core.
#[tokio::test]
async fn a_tampered_frame_closes_the_link_and_never_reaches_the_core() {
    let (address, counters, mut rx_core, _stop) = listener().await;
    let (_, keys) = committee(CLUSTER, 0);
    let relay = tampering_relay(address, 4).await;
    let mut link = dial(relay, &keys[1]).await;
    let message = |n: u8| Frame::Bft(PeerMessage::Requests(vec![shardspace_core::bft::Request::new(vec![n])]));
    send(&mut link, &message(1)).await; // the third record (after the handshake and the key confirmation): passed on
    let (_, first) = tokio::time::timeout(Duration::from_secs(10), rx_core.recv()).await.unwrap().unwrap();
    assert_eq!(first, message(1));
    send(&mut link, &message(2)).await; // the fourth: one bit flipped
    let _ = link.send(&postcard::to_stdvec(&message(3)).unwrap()).await;
    assert!(closed(&mut link).await, "the link stayed open");
    assert_eq!(counters.frames_rejected.load(Ordering::Relaxed), 1);
    assert!(rx_core.try_recv().is_err(), "a frame after the changed one reached the core");
}

#[tokio::test]
async fn a_well_formed_message_from_an_authenticated_peer_reaches_the_core() {
    let (address, _, mut rx_core, _stop) = listener().await;
    let (_, keys) = committee(CLUSTER, 0);
    let mut link = dial(address, &keys[2]).await;
    let message = Frame::Bft(PeerMessage::Requests(vec![shardspace_core::bft::Request::new(b"k=v".to_vec())]));
    send(&mut link, &message).await;
    let (from, received) = tokio::time::timeout(Duration::from_secs(10), rx_core.recv()).await.unwrap().unwrap();
    assert_eq!((from, received), (PeerId { shard: ShardId(0), replica: ReplicaId(2) }, message));
}

#[tokio::test]
async fn a_replica_of_another_shard_may_pass_on_an_envelope_but_not_speak_the_shards_own_protocol() {
    let (address, counters, mut rx_core, _stop) = listener().await;
    let (_, keys) = committee(CLUSTER, 1);
    let mut link = dial(address, &keys[3]).await;
    let envelope = Frame::Envelope { envelope: "{}".into(), attempt: shardspace_core::sbac::Attempt(1) };
    send(&mut link, &envelope).await;
    let (from, received) = tokio::time::timeout(Duration::from_secs(10), rx_core.recv()).await.unwrap().unwrap();
    assert_eq!((from, received), (PeerId { shard: ShardId(1), replica: ReplicaId(3) }, envelope));

    let bft = Frame::Bft(PeerMessage::Requests(vec![shardspace_core::bft::Request::new(b"k=v".to_vec())]));
    send(&mut link, &bft).await;
    assert!(closed(&mut link).await, "the connection stayed open");
    assert_eq!(counters.frames_rejected.load(Ordering::Relaxed), 1);
    assert!(rx_core.try_recv().is_err(), "the foreign BFT frame reached the core");
}

/// The request interface: a client whose key the cluster file does not list is told so
/// and closed; a handshake recorded and replayed gets nothing through; the client the
/// file lists is served.
#[tokio::test]
async fn an_unknown_client_key_is_told_why_and_a_replayed_handshake_gets_nothing_through() {
    let (address, mut rx_core, _stop, _) = client_listener(64).await;
    let stranger = credentials(&outsider(77));
    let mut link = dial_as(address, &stranger, &listener_key(), CLIENT_FRAME_BYTES_MAX).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), link.receive()).await.unwrap().unwrap().unwrap();
    match decode::<ClientReply>(&reply).unwrap() {
        ClientReply::Error(reason) => {
            assert!(reason.contains(&hex::encode(stranger.public())) && reason.contains("[[clients]]"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(closed(&mut link).await);

    // A client's first handshake message, recorded on the way, then replayed.
    let tap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tapped = tap.local_addr().unwrap();
    let dialing =
        tokio::spawn(async move { dial_as(tapped, &credentials(&client_keys()), &listener_key(), 1024).await });
    let (mut recorded_from, _) = tap.accept().await.unwrap();
    let mut recorded = vec![0u8; 4096];
    let length = recorded_from.read(&mut recorded).await.unwrap();
    drop(recorded_from);
    let _ = dialing.await;
    let mut replayer = tokio::net::TcpStream::connect(address).await.unwrap();
    replayer.write_all(&recorded[..length]).await.unwrap();
    let mut answer = [0u8; 4096];
    let answered = replayer.read(&mut answer).await.unwrap(); // the listener's answer, which it cannot use
    assert!(answered > 0, "the replayed first message was not answered");
    // What it sends next, shaped as a record, does not open: it cannot confirm the key, the
    // listener closes without a word (a request it could not read would get an error), and
    // no request reaches the core.
    replayer.write_all(&[0, 0, 0, 40]).await.unwrap();
    replayer.write_all(&[7u8; 40]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), replayer.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty(), "the replayer got {} more bytes", rest.len());
    while let Ok(command) = rx_core.try_recv() {
        assert!(!matches!(command, ClientCommand::Request { .. }), "a replayed handshake's request: {command:?}");
    }

    // The listed client is served.
    let mut link = client_link(address).await;
    send(&mut link, &ClientRequest::Status).await;
    let mut queues = Vec::new(); // kept: a connection whose reply queue is dropped closes
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx_core.recv()).await.unwrap().unwrap() {
            ClientCommand::Request { request, .. } => break assert_eq!(request, ClientRequest::Status),
            ClientCommand::Open { tx_client, .. } => queues.push(tx_client),
            ClientCommand::Closed(_) => {}
        }
    }
}

/// Where a test's log lines go.
#[derive(Clone, Default)]
struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_flood_of_garbage_handshakes_is_refused_each_time_and_warned_of_once_a_second() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let (address, counters, mut rx_core, _stop) = listener().await;
    // At least 1,000, and for over a second: the throttle is shared by the tests of this
    // binary, and another may have had the warning of the first second.
    let started = std::time::Instant::now();
    let mut sent = 0;
    while sent < 1_000 || started.elapsed() < Duration::from_millis(1_100) {
        let mut raw = tokio::net::TcpStream::connect(address).await.unwrap();
        raw.write_all(&[0, 0, 0, 7]).await.unwrap();
        raw.write_all(b"garbage").await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut rest)).await.unwrap();
        sent += 1;
    }
    let seconds = started.elapsed().as_secs() + 1;
    assert_eq!(counters.handshakes_rejected.load(Ordering::Relaxed), sent, "every one refused and counted");
    assert!(rx_core.try_recv().is_err(), "something reached the core");
    let log = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let warnings = log.lines().filter(|line| line.contains("peer handshake rejected")).count();
    assert!(warnings >= 1 && warnings as u64 <= seconds + 1, "{warnings} warnings in {seconds} s:\n{log}");
    assert!(log.contains("held_back="), "a warning says how many were held back: {log}");
}

/// A replica's sender whose peer address is answered by another key (a replica moved, or
/// an impostor at its address) never makes the link: nothing it queues is delivered there,
/// and the listener counts each failed handshake.
#[tokio::test]
async fn a_peer_sender_never_delivers_to_a_listener_that_is_not_the_peer_it_expects() {
    let (address, counters, mut rx_core, _stop) = listener().await;
    let (_, keys) = committee(CLUSTER, 0);
    let (sender_counters, (_stop_sender, shutdown)) =
        (Arc::new(shardspace_node::network::NetworkCounters::default()), tokio::sync::watch::channel(false));
    // It expects replica 2 of shard 0 at the address where replica 0 listens.
    let expected = (PeerId { shard: ShardId(0), replica: ReplicaId(2) }, public_of(&keys[2].public()));
    let sender = shardspace_node::network::PeerSender::start(
        address.to_string(),
        expected,
        credentials(&keys[1]),
        sender_counters,
        shutdown,
        Duration::from_secs(20),
    );
    sender.send(&Frame::Bft(PeerMessage::Requests(vec![shardspace_core::bft::Request::new(b"k=v".to_vec())])));
    wait_for(|| counters.handshakes_rejected.load(Ordering::Relaxed) >= 2).await;
    assert!(rx_core.try_recv().is_err(), "a frame reached a listener that is not the peer expected");
}
