//! `verify` of every BFT message, one negative case per rule: what a message alone
//! can prove (signatures, quorums, distinct signers, rounds, sizes). Who may lead a
//! round is checked by the replica (`bft_leaders.rs`).

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use shardspace_core::ShardId;
use shardspace_core::bft::{
    Block, Checkpoint, CheckpointCertificate, CheckpointPoint, Committee, Digest, Height, KeyPair, MessageLimits,
    PeerMessage, Proposal, ProtocolError, QuorumCertificate, ReplicaId, Request, Round, Timeout, TimeoutCertificate,
    VerifiedCertificates, Vote, snapshot_of,
};

struct Shard {
    committee: Committee,
    keys: Vec<KeyPair>,
}

fn shard() -> Shard {
    let keys: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed(ReplicaId(i), [i as u8 + 7; 32])).collect();
    Shard { committee: Committee::new("test", ShardId(0), keys.iter().map(KeyPair::public).collect()), keys }
}

impl Shard {
    fn qc(&self, block: Digest, round: Round, signers: &[u32]) -> QuorumCertificate {
        let bytes = QuorumCertificate::signing_bytes(&self.committee, &block, round);
        let votes = signers.iter().map(|i| (ReplicaId(*i), self.keys[*i as usize].sign(&bytes))).collect();
        QuorumCertificate { block, round, votes }
    }

    fn timeout(&self, signer: u32, round: Round, high_qc: QuorumCertificate) -> Timeout {
        let bytes = Timeout::signing_bytes(&self.committee, round, high_qc.round);
        Timeout { round, author: ReplicaId(signer), signature: self.keys[signer as usize].sign(&bytes), high_qc }
    }

    fn tc(&self, round: Round, high_qc: &QuorumCertificate, signers: &[u32]) -> TimeoutCertificate {
        let timeouts = signers
            .iter()
            .map(|i| {
                let bytes = Timeout::signing_bytes(&self.committee, round, high_qc.round);
                (ReplicaId(*i), high_qc.round, self.keys[*i as usize].sign(&bytes))
            })
            .collect();
        TimeoutCertificate { round, timeouts, high_qc: high_qc.clone() }
    }

    fn proposal(&self, block: Block, timeout_certificate: Option<TimeoutCertificate>) -> PeerMessage {
        let signer = &self.keys[block.author.0 as usize];
        let signature = signer.sign(&Proposal::signing_bytes(&self.committee, &block.digest()));
        PeerMessage::Proposal(Proposal { block, timeout_certificate, signature })
    }

    fn verify(&self, message: &PeerMessage) -> Result<(), ProtocolError> {
        message.verify(&self.committee, &MessageLimits::default(), &mut VerifiedCertificates::new(0))
    }
}

fn block(round: u64, author: u32, parent: QuorumCertificate, requests: usize) -> Block {
    let requests = (0..requests).map(|i| Request::new(format!("r{i}"))).collect();
    Block { round: Round(round), author: ReplicaId(author), parent, requests }
}

/// Asserts that `result` is an error `matches` accepts.
fn rejects(result: Result<(), ProtocolError>, matches: impl Fn(&ProtocolError) -> bool, what: &str) {
    match result {
        Err(error) if matches(&error) => {}
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn a_well_formed_proposal_verifies_and_each_flaw_is_caught() {
    let shard = shard();
    let parent = shard.qc(Digest([1; 32]), Round(4), &[0, 1, 2]);
    // Who leads round 5 depends on the chain (`leaders.rs`), checked by the replica, not here.
    assert!(shard.verify(&shard.proposal(block(5, 1, parent.clone(), 3), None)).is_ok());
    rejects(
        shard.verify(&shard.proposal(block(6, 2, parent.clone(), 0), None)),
        |e| matches!(e, ProtocolError::Malformed { .. }),
        "skips a round without a TC",
    );
    let stale = shard.qc(Digest([1; 32]), Round(5), &[0, 1, 2]);
    rejects(
        shard.verify(&shard.proposal(block(5, 1, stale, 0), None)),
        |e| matches!(e, ProtocolError::Malformed { .. }),
        "round not after its parent",
    );
    let limits = MessageLimits::default();
    let big = shard.proposal(block(5, 1, parent.clone(), limits.batch_requests_max + 1), None);
    rejects(shard.verify(&big), |e| matches!(e, ProtocolError::TooLarge { .. }), "too many requests");
    // Requests each within request_bytes_max whose sum passes batch_bytes_max; one fewer fits.
    let heavy_block = |count: usize| {
        let mut block = block(5, 1, parent.clone(), 0);
        block.requests = (0..count).map(|i| Request::new(vec![i as u8; limits.request_bytes_max])).collect();
        shard.proposal(block, None)
    };
    let fitting = limits.batch_bytes_max / limits.request_bytes_max;
    rejects(
        shard.verify(&heavy_block(fitting + 1)),
        |e| matches!(e, ProtocolError::TooLarge { what: "block's bytes", .. }),
        "a block over batch_bytes_max",
    );
    assert_eq!(shard.verify(&heavy_block(fitting)), Ok(()), "a block at batch_bytes_max");
    let mut forged = shard.proposal(block(5, 1, parent.clone(), 1), None);
    if let PeerMessage::Proposal(proposal) = &mut forged {
        proposal.block.requests.push(Request::new("slipped in"));
    }
    rejects(shard.verify(&forged), |e| matches!(e, ProtocolError::BadSignature { .. }), "a changed block");
    let weak_parent = shard.qc(Digest([1; 32]), Round(4), &[0, 1]);
    rejects(
        shard.verify(&shard.proposal(block(5, 1, weak_parent, 0), None)),
        |e| matches!(e, ProtocolError::TooFewSignatures { .. }),
        "a parent certificate short of a quorum",
    );
}

#[test]
fn a_proposal_after_a_timeout_needs_the_certificate_of_the_round_before() {
    let shard = shard();
    let parent = shard.qc(Digest([1; 32]), Round(4), &[0, 1, 2]);
    let tc = shard.tc(Round(6), &parent, &[0, 1, 2]);
    assert!(shard.verify(&shard.proposal(block(7, 3, parent.clone(), 0), Some(tc.clone()))).is_ok());
    let old_tc = shard.tc(Round(5), &parent, &[0, 1, 2]);
    rejects(
        shard.verify(&shard.proposal(block(7, 3, parent.clone(), 0), Some(old_tc))),
        |e| matches!(e, ProtocolError::Malformed { .. }),
        "a TC for another round",
    );
    let thin = shard.tc(Round(6), &parent, &[0, 1]);
    rejects(
        shard.verify(&shard.proposal(block(7, 3, parent.clone(), 0), Some(thin))),
        |e| matches!(e, ProtocolError::TooFewSignatures { .. }),
        "a TC short of a quorum",
    );
    let mut twice = tc.clone();
    twice.timeouts[2] = twice.timeouts[1];
    rejects(
        shard.verify(&shard.proposal(block(7, 3, parent.clone(), 0), Some(twice))),
        |e| matches!(e, ProtocolError::DuplicateSigner { .. }),
        "a signer twice",
    );
    let mut lower = tc;
    lower.high_qc = QuorumCertificate::genesis();
    rejects(
        shard.verify(&shard.proposal(block(7, 3, parent, 0), Some(lower))),
        |e| matches!(e, ProtocolError::Malformed { .. }),
        "a TC whose certificate is not the highest reported",
    );
}

#[test]
fn votes_timeouts_and_certificates_are_checked() {
    let shard = shard();
    let bytes = QuorumCertificate::signing_bytes(&shard.committee, &Digest([2; 32]), Round(3));
    let vote =
        Vote { block: Digest([2; 32]), round: Round(3), voter: ReplicaId(0), signature: shard.keys[0].sign(&bytes) };
    assert!(shard.verify(&PeerMessage::Vote(vote.clone())).is_ok());
    let impostor = Vote { voter: ReplicaId(1), ..vote.clone() };
    rejects(
        shard.verify(&PeerMessage::Vote(impostor)),
        |e| matches!(e, ProtocolError::BadSignature { .. }),
        "a vote claiming another voter",
    );
    let stranger = Vote { voter: ReplicaId(9), ..vote };
    rejects(
        shard.verify(&PeerMessage::Vote(stranger)),
        |e| matches!(e, ProtocolError::UnknownReplica { .. }),
        "a voter outside the committee",
    );

    let high = shard.qc(Digest([1; 32]), Round(4), &[0, 1, 2]);
    assert!(shard.verify(&PeerMessage::Timeout(shard.timeout(2, Round(5), high.clone()))).is_ok());
    let not_earlier = shard.timeout(2, Round(4), high.clone());
    rejects(
        shard.verify(&PeerMessage::Timeout(not_earlier)),
        |e| matches!(e, ProtocolError::Malformed { .. }),
        "a timeout whose certificate is not earlier",
    );

    let mut genesis_with_votes = QuorumCertificate::genesis();
    genesis_with_votes.votes = high.votes.clone();
    let catchup = PeerMessage::Catchup { high_qc: genesis_with_votes, timeout_certificate: None };
    rejects(
        shard.verify(&catchup),
        |e| matches!(e, ProtocolError::Malformed { .. }),
        "a genesis certificate with votes",
    );
    let round_zero = QuorumCertificate { block: Digest([5; 32]), round: Round(0), votes: Vec::new() };
    let catchup = PeerMessage::Catchup { high_qc: round_zero, timeout_certificate: None };
    rejects(
        shard.verify(&catchup),
        |e| matches!(e, ProtocolError::Malformed { .. }),
        "a round-0 certificate that is not the genesis",
    );
}

#[test]
fn checkpoints_snapshots_and_batches_are_checked() {
    let shard = shard();
    let point =
        CheckpointPoint { height: Height(10), block: Digest([3; 32]), round: Round(9), state: Digest::of(b"head") };
    let signed = |i: u32| (ReplicaId(i), shard.keys[i as usize].sign(&point.signing_bytes(&shard.committee)));
    let checkpoint = Checkpoint { point, author: ReplicaId(0), signature: signed(0).1 };
    assert!(shard.verify(&PeerMessage::Checkpoint(checkpoint.clone())).is_ok());
    let moved = Checkpoint { point: CheckpointPoint { height: Height(11), ..point }, ..checkpoint };
    rejects(
        shard.verify(&PeerMessage::Checkpoint(moved)),
        |e| matches!(e, ProtocolError::BadSignature { .. }),
        "a checkpoint of another height",
    );

    let certificate = CheckpointCertificate { point, signatures: vec![signed(0), signed(1), signed(2)] };
    let snapshot =
        PeerMessage::Snapshot { certificate: certificate.clone(), state: snapshot_of(b"head", Some(b"body")) };
    assert!(shard.verify(&snapshot).is_ok());
    // The body is checked against the head as it is restored (core/tests/sbac.rs).
    let other_body =
        PeerMessage::Snapshot { certificate: certificate.clone(), state: snapshot_of(b"head", Some(b"other")) };
    assert!(shard.verify(&other_body).is_ok());
    let other_state =
        PeerMessage::Snapshot { certificate: certificate.clone(), state: snapshot_of(b"another head", Some(b"body")) };
    rejects(
        shard.verify(&other_state),
        |e| matches!(e, ProtocolError::Malformed { .. }),
        "a state that is not the certified one",
    );
    let headless = PeerMessage::Snapshot { certificate: certificate.clone(), state: snapshot_of(b"head", None) };
    rejects(shard.verify(&headless), |e| matches!(e, ProtocolError::Malformed { .. }), "a snapshot without its body");
    let garbage = PeerMessage::Snapshot { certificate: certificate.clone(), state: b"head".to_vec().into() };
    rejects(shard.verify(&garbage), |e| matches!(e, ProtocolError::Malformed { .. }), "bytes that are no snapshot");
    let thin = CheckpointCertificate { point, signatures: vec![signed(0), signed(1)] };
    let thin = PeerMessage::Snapshot { certificate: thin, state: snapshot_of(b"head", Some(b"body")) };
    rejects(
        shard.verify(&thin),
        |e| matches!(e, ProtocolError::TooFewSignatures { .. }),
        "a checkpoint certificate short of a quorum",
    );

    let limits = MessageLimits::default();
    let many = PeerMessage::Requests((0..=limits.batch_requests_max).map(|i| Request::new(format!("{i}"))).collect());
    rejects(shard.verify(&many), |e| matches!(e, ProtocolError::TooLarge { .. }), "a request batch over the limit");
    let heavy = PeerMessage::Requests(vec![Request::new(vec![0u8; limits.request_bytes_max + 1])]);
    rejects(shard.verify(&heavy), |e| matches!(e, ProtocolError::TooLarge { .. }), "a request over the limit");
    let parent = shard.qc(Digest([1; 32]), Round(4), &[0, 1, 2]);
    let blocks = PeerMessage::Blocks(vec![block(5, 1, parent, 0); limits.sync_blocks_max + 1]);
    rejects(shard.verify(&blocks), |e| matches!(e, ProtocolError::TooLarge { .. }), "a sync answer over the limit");
}
