//! Golden test of the wire format between replicas: one sample of every
//! `PeerMessage` variant, encoded with postcard, must match the bytes checked in
//! under `tests/golden/peer_messages.txt`. A change to a message's encoding
//! fails here first; wire enums are append-only (STYLE.md §2). After a
//! deliberate change, regenerate with `UPDATE_GOLDEN=1 cargo test -p shardspace-core --test formats`.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::path::Path;

use shardspace_core::ShardId;
use shardspace_core::bft::{
    Block, Checkpoint, CheckpointCertificate, CheckpointPoint, Committee, Digest, Height, KeyPair, PeerMessage,
    Proposal, QuorumCertificate, ReplicaId, Request, Round, Timeout, TimeoutCertificate, Vote,
};

fn samples() -> Vec<(&'static str, PeerMessage)> {
    let keys: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed(ReplicaId(i), [i as u8 + 1; 32])).collect();
    let committee = Committee::new("golden", ShardId(0), keys.iter().map(KeyPair::public).collect());
    let digest = Digest([7; 32]);
    let votes: Vec<_> = (0..3)
        .map(|i| {
            (ReplicaId(i), keys[i as usize].sign(&QuorumCertificate::signing_bytes(&committee, &digest, Round(4))))
        })
        .collect();
    let qc = QuorumCertificate { block: digest, round: Round(4), votes: votes.clone() };
    let block = Block {
        round: Round(6),
        author: ReplicaId(2),
        parent: qc.clone(),
        requests: vec![Request::new(b"k=v".to_vec())],
    };
    let timeout_signature = keys[1].sign(&Timeout::signing_bytes(&committee, Round(5), Round(4)));
    let tc = TimeoutCertificate {
        round: Round(5),
        timeouts: vec![(ReplicaId(1), Round(4), timeout_signature)],
        high_qc: qc.clone(),
    };
    let point = CheckpointPoint { height: Height(100), block: digest, round: Round(4), state: Digest([9; 32]) };
    let checkpoint_signature = keys[0].sign(&point.signing_bytes(&committee));
    vec![
        (
            "Proposal",
            PeerMessage::Proposal(Proposal {
                signature: keys[2].sign(&Proposal::signing_bytes(&committee, &block.digest())),
                block: block.clone(),
                timeout_certificate: Some(tc.clone()),
            }),
        ),
        (
            "Vote",
            PeerMessage::Vote(Vote { block: digest, round: Round(4), voter: ReplicaId(0), signature: votes[0].1 }),
        ),
        (
            "Timeout",
            PeerMessage::Timeout(Timeout {
                round: Round(5),
                high_qc: qc.clone(),
                author: ReplicaId(1),
                signature: timeout_signature,
            }),
        ),
        ("Requests", PeerMessage::Requests(vec![Request::new(b"a=1".to_vec()), Request::new(Vec::new())])),
        ("Catchup", PeerMessage::Catchup { high_qc: qc.clone(), timeout_certificate: Some(tc) }),
        ("BlockRequest", PeerMessage::BlockRequest { block: digest, height: Height(3) }),
        ("Blocks", PeerMessage::Blocks(vec![block])),
        (
            "Checkpoint",
            PeerMessage::Checkpoint(Checkpoint { point, author: ReplicaId(0), signature: checkpoint_signature }),
        ),
        (
            "Snapshot",
            PeerMessage::Snapshot {
                certificate: CheckpointCertificate { point, signatures: vec![(ReplicaId(0), checkpoint_signature)] },
                state: b"state".to_vec().into(),
            },
        ),
    ]
}

#[test]
fn every_peer_message_encodes_to_its_golden_bytes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/peer_messages.txt");
    let encoded: String = samples()
        .into_iter()
        .map(|(name, message)| {
            let bytes = postcard::to_stdvec(&message).unwrap();
            let decoded: PeerMessage = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(decoded, message, "{name} does not round-trip");
            format!("{name} {}\n", hex::encode(bytes))
        })
        .collect();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &encoded).unwrap();
    }
    let golden =
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    for (line, expected) in encoded.lines().zip(golden.lines()) {
        assert_eq!(line, expected, "the encoding changed");
    }
    assert_eq!(encoded.lines().count(), golden.lines().count(), "a message was added or removed");
}
