//! Bad input at the replica's doors: arbitrary bytes never panic a decoder, and
//! a peer connection with a garbage, unsigned, foreign or oversized frame, or a
//! replica of another shard sending what only the shard's own replicas may, is
//! closed and counted while nothing reaches the core.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::SinkExt;
use proptest::prelude::*;
use shardspace_core::ShardId;
use shardspace_core::bft::{Committee, KeyPair, MessageLimits, PeerMessage, ReplicaId, VerifiedCertificates};
use shardspace_node::client::ClientRequest;
use shardspace_node::network::{FRAME_BYTES_MAX, Frame, PeerId, decode};

mod common;
use common::{answer, closed, committee, hello, listener};

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

/// What a dialer answers to a challenge nonce.
type Answer<'a> = Box<dyn FnOnce([u8; 32]) -> Vec<u8> + 'a>;

#[tokio::test]
async fn garbage_unsigned_foreign_and_unknown_handshakes_are_refused_and_counted() {
    let (address, counters, mut rx_core, _stop) = listener().await;
    let (here, keys) = committee("test", 0);
    let (other_shard, _) = committee("test", 1);
    let stranger = KeyPair::from_seed(ReplicaId(1), [99; 32]);
    let attempts: Vec<Answer> = vec![
        Box::new(|_| b"garbage".to_vec()),
        Box::new(|nonce| hello(0, 1, &stranger, &here, nonce)),
        Box::new(|nonce| hello(0, 1, &keys[1], &other_shard, nonce)),
        Box::new(|nonce| hello(1, 1, &keys[1], &other_shard, nonce)),
        Box::new(|nonce| hello(0, 9, &keys[1], &here, nonce)),
        Box::new(|nonce| hello(0, 0, &keys[0], &here, nonce)),
        Box::new(|nonce| hello(7, 1, &keys[1], &here, nonce)),
    ];
    let count = attempts.len() as u64;
    for attempt in attempts {
        let mut frames = answer(address, attempt).await;
        assert!(closed(&mut frames).await, "the connection stayed open");
    }
    assert_eq!(counters.handshakes_rejected.load(Ordering::Relaxed), count);
    assert!(rx_core.try_recv().is_err(), "something reached the core");
}

#[tokio::test]
async fn after_a_good_handshake_a_bad_or_oversized_frame_closes_the_connection() {
    let (address, counters, mut rx_core, _stop) = listener().await;
    let (here, keys) = committee("test", 0);
    let mut frames = answer(address, |nonce| hello(0, 1, &keys[1], &here, nonce)).await;
    frames.send(bytes::Bytes::from(vec![0xff, 0xff, 0xff])).await.unwrap();
    assert!(closed(&mut frames).await);
    assert_eq!(counters.frames_rejected.load(Ordering::Relaxed), 1);

    let mut frames = answer(address, |nonce| hello(0, 1, &keys[1], &here, nonce)).await;
    let _ = frames.send(bytes::Bytes::from(vec![0u8; FRAME_BYTES_MAX + 1])).await;
    assert!(closed(&mut frames).await);
    assert_eq!(counters.frames_rejected.load(Ordering::Relaxed), 2);
    assert!(rx_core.try_recv().is_err(), "something reached the core");
}

#[tokio::test]
async fn a_well_formed_message_from_an_authenticated_peer_reaches_the_core() {
    let (address, _, mut rx_core, _stop) = listener().await;
    let (here, keys) = committee("test", 0);
    let mut frames = answer(address, |nonce| hello(0, 2, &keys[2], &here, nonce)).await;
    let message = Frame::Bft(PeerMessage::Requests(vec![shardspace_core::bft::Request::new(b"k=v".to_vec())]));
    frames.send(bytes::Bytes::from(postcard::to_stdvec(&message).unwrap())).await.unwrap();
    let (from, received) = tokio::time::timeout(Duration::from_secs(10), rx_core.recv()).await.unwrap().unwrap();
    assert_eq!((from, received), (PeerId { shard: ShardId(0), replica: ReplicaId(2) }, message));
}

#[tokio::test]
async fn a_replica_of_another_shard_may_pass_on_an_envelope_but_not_speak_the_shards_own_protocol() {
    let (address, counters, mut rx_core, _stop) = listener().await;
    let (there, keys) = committee("test", 1);
    let mut frames = answer(address, |nonce| hello(1, 3, &keys[3], &there, nonce)).await;
    let envelope = Frame::Envelope { envelope: "{}".into(), attempt: shardspace_core::sbac::Attempt(1) };
    frames.send(bytes::Bytes::from(postcard::to_stdvec(&envelope).unwrap())).await.unwrap();
    let (from, received) = tokio::time::timeout(Duration::from_secs(10), rx_core.recv()).await.unwrap().unwrap();
    assert_eq!((from, received), (PeerId { shard: ShardId(1), replica: ReplicaId(3) }, envelope));

    let bft = Frame::Bft(PeerMessage::Requests(vec![shardspace_core::bft::Request::new(b"k=v".to_vec())]));
    frames.send(bytes::Bytes::from(postcard::to_stdvec(&bft).unwrap())).await.unwrap();
    assert!(closed(&mut frames).await, "the connection stayed open");
    assert_eq!(counters.frames_rejected.load(Ordering::Relaxed), 1);
    assert!(rx_core.try_recv().is_err(), "the foreign BFT frame reached the core");
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
        let mut frames = answer(address, Box::new(|_| b"garbage".to_vec())).await;
        assert!(closed(&mut frames).await, "the connection stayed open");
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
