//! Golden tests of the wire and disk formats: one sample of every `PeerMessage`
//! variant (`tests/golden/peer_messages.txt`), and of every S-BAC frame, client
//! request and reply, ordered request and saved record (`sbac_formats.txt`),
//! encoded with postcard, must match the bytes checked in. A change to an encoding
//! fails here first; wire enums are append-only (STYLE.md §2). After a
//! deliberate change, regenerate with `UPDATE_GOLDEN=1 cargo test -p shardspace-core --test formats`.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::path::Path;

use shardspace_core::ShardId;
use shardspace_core::bft::{
    Block, Checkpoint, CheckpointCertificate, CheckpointPoint, Committee, Digest, Height, KeyPair, PeerMessage,
    Proposal, QuorumCertificate, ReplicaId, Request, Round, Seal, Timeout, TimeoutCertificate, Vote,
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
    let encoded: String = samples().into_iter().map(|(name, message)| sample(name, &message)).collect();
    check_golden("peer_messages.txt", &encoded);
}

/// Encodes `value`, checks that it decodes to itself, and names its bytes.
fn sample<T>(name: &str, value: &T) -> String
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = postcard::to_stdvec(value).unwrap();
    let decoded: T = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(&decoded, value, "{name} does not round-trip");
    format!("{name} {}\n", hex::encode(bytes))
}

/// Compares `encoded` with the golden file `name` (or writes it, with `UPDATE_GOLDEN`).
fn check_golden(name: &str, encoded: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, encoded).unwrap();
    }
    let golden =
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let how = "a wire or on-disk format changed: if deliberate, keep enums append-only, bump the store's \
               SCHEMA_VERSION for a change to what is saved, and regenerate with \
               UPDATE_GOLDEN=1 cargo test -p shardspace-core --test formats";
    for (line, expected) in encoded.lines().zip(golden.lines()) {
        assert_eq!(line, expected, "{how}");
    }
    assert_eq!(encoded.lines().count(), golden.lines().count(), "a sample was added or removed: {how}");
}

/// One sample of every S-BAC wire type (frames between replicas, a client's requests and
/// the replies it hears, the requests a shard orders, which its decided log keeps on disk)
/// and of every record the store keeps (object and transaction records, the saved head).
#[test]
fn every_sbac_wire_and_disk_type_encodes_to_its_golden_bytes() {
    use std::collections::{BTreeMap, BTreeSet};

    use shardspace_core::sbac::replica::{ClientReply, ClientRequest, Frame, Listing, Page, RejectKind, Status};
    use shardspace_core::sbac::{
        AbortReason, AnswerBody, Attempt, AttemptRecord, Attempts, CheckerAnswer, DecidedEntry, DecidedFilter,
        FieldMatch, Found, ObjectFilter, ObjectRecord, ObjectStatus, ObjectView, Position, PreparedCertificate,
        ShardRequest, SignedAnswer, StateHead, StatusKind, TableHead, TxRecord, TxView, Verdict, VerdictCertificate,
        VoteBody, VoteKind,
    };
    use shardspace_core::{ObjectId, TxId};

    let keys: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed(ReplicaId(i), [i as u8 + 1; 32])).collect();
    let committee = Committee::new("golden", ShardId(0), keys.iter().map(KeyPair::public).collect());
    let (tx, envelope, object) = (TxId([3; 32]), [4; 32], ObjectId([5; 32]));
    // Sealed in a batch of three, so that the seals carry paths.
    let body = VoteBody { shard: ShardId(0), tx, attempt: Attempt(2), envelope, vote: VoteKind::Accept };
    let batch = [
        Verdict::signing_bytes(&committee, &tx, &envelope, CheckerAnswer::Valid),
        body.signing_bytes(&committee),
        committee.signing_bytes("other", &[b"x"]),
    ];
    let seals = Seal::sign_all(&committee, &keys[1], &batch);
    let verdict = Verdict { tx, envelope, answer: CheckerAnswer::Valid, replica: ReplicaId(1), seal: seals[0].clone() };
    let vote = body.sealed(ReplicaId(1), seals[1].clone());
    let prepare = ShardRequest::Prepare {
        envelope: "{\"store\":{},\"transaction\":{}}".into(),
        attempt: Attempt(2),
        verdict: VerdictCertificate {
            tx,
            envelope,
            answer: CheckerAnswer::Valid,
            seals: vec![(ReplicaId(1), verdict.seal.clone())],
        },
    };
    let decide = ShardRequest::Decide {
        tx,
        attempt: Attempt(2),
        certificates: vec![PreparedCertificate {
            shard: ShardId(0),
            tx,
            attempt: Attempt(2),
            envelope,
            accept: true,
            seals: vec![(ReplicaId(1), vote.seal.clone())],
        }],
    };
    let view = TxView {
        attempt: Attempt(2),
        vote: VoteKind::Abort(AbortReason::Superseded),
        decision: Some(false),
        committed: None,
    };
    let object_view = ObjectView {
        value: "{\"amount\":10}".into(),
        contract: "bank".into(),
        created_by: tx,
        status: ObjectStatus::Locked { tx, attempt: Attempt(2) },
    };
    let answer = SignedAnswer::sign(&committee, &keys[2], AnswerBody::Transaction { tx, record: Some(view.clone()) });
    let status = Status {
        shard: ShardId(0),
        replica: ReplicaId(3),
        round: Round(9),
        height: Height(8),
        executed: 7,
        state: Digest([6; 32]),
        pending: 5,
        leader: Some(ReplicaId(1)),
    };
    let record = ObjectRecord {
        value: "{\"amount\":10}".into(),
        contract: "bank".into(),
        created_by: tx,
        status: ObjectStatus::Inactive { consumed_by: tx },
        readers: BTreeSet::from([(tx, Attempt(1))]),
    };
    let mut attempts = Attempts::default();
    let attempt =
        AttemptRecord { envelope: "{}".into(), digest: envelope, vote: VoteKind::Accept, decision: Some(true) };
    attempts.insert(Attempt(1), attempt);
    let tx_record = TxRecord { concerned: vec![ShardId(0), ShardId(1)], attempts, committed: Some(Attempt(1)) };
    let head = StateHead {
        reserved: BTreeMap::from([(object, (tx, Attempt(2)))]),
        undecided: BTreeSet::from([(tx, Attempt(2))]),
        executed: 12,
        log_digest: Digest([8; 32]),
        objects: TableHead::default(),
        transactions: TableHead::default(),
        decided: TableHead::default(),
    };
    let decided = DecidedEntry {
        tx,
        attempt: Attempt(2),
        committed: false,
        concerned: vec![ShardId(0), ShardId(1)],
        contract: "bank".into(),
        method: "transfer".into(),
        vote: VoteKind::Accept,
        aborted_by: vec![ShardId(1)],
        inputs: vec![object],
        outputs: vec![ObjectId([4; 32])],
    };
    let page = Page {
        objects: vec![(object, object_view)],
        transactions: vec![(tx, view)],
        envelopes: vec![(tx, "{}".into())],
        cut: false,
        scanned_to: Some(object),
    };
    let encoded = [
        sample("ShardRequest::Prepare", &prepare),
        sample("ShardRequest::Decide", &decide),
        sample("Frame::Bft", &Frame::Bft(PeerMessage::Requests(vec![Request::new(b"r".to_vec())]))),
        sample("Frame::Verdict", &Frame::Verdict(verdict.clone())),
        sample(
            "Frame::Verdict no verdict",
            &Frame::Verdict(Verdict { answer: CheckerAnswer::Unavailable(Attempt(2)), ..verdict }),
        ),
        sample("Frame::Vote", &Frame::Vote(vote.clone())),
        sample("Frame::Envelope", &Frame::Envelope { envelope: "{}".into(), attempt: Attempt(3) }),
        sample("Frame::Votes", &Frame::Votes(vec![vote])),
        sample("ClientRequest::Submit", &ClientRequest::Submit(vec![Request::new(b"r".to_vec())])),
        sample("ClientRequest::Status", &ClientRequest::Status),
        sample("ClientRequest::Envelope", &ClientRequest::Envelope { envelope: "{}".into(), attempt: Attempt(1) }),
        sample("ClientRequest::Object", &ClientRequest::Object(object)),
        sample("ClientRequest::Transaction", &ClientRequest::Transaction(tx)),
        sample(
            "ClientRequest::List",
            &ClientRequest::List { what: Listing::Transactions, after: Some([1; 32]), limit: 10 },
        ),
        sample(
            "ClientRequest::List where",
            &ClientRequest::List {
                what: Listing::ObjectsWhere(ObjectFilter {
                    contract: Some("bank".into()),
                    status: Some(StatusKind::Active),
                    field: Some(FieldMatch { name: "owner".into(), equals: "ab".into() }),
                }),
                after: None,
                limit: 10,
            },
        ),
        sample("ClientReply::Decided", &ClientReply::Decided(vec![(Digest([2; 32]), Height(4))])),
        sample("ClientReply::Refused", &ClientReply::Refused(vec![Digest([2; 32])])),
        sample("ClientReply::Status", &ClientReply::Status(status)),
        sample("ClientReply::Error", &ClientReply::Error("bad frame".into())),
        sample("ClientReply::Accepted", &ClientReply::Accepted { tx, attempt: Attempt(1) }),
        sample(
            "ClientReply::Rejected",
            &ClientReply::Rejected { tx: Some(tx), kind: RejectKind::Busy, message: "try again".into() },
        ),
        sample("ClientReply::Answer", &ClientReply::Answer(answer.clone())),
        sample("ClientReply::Page", &ClientReply::Page(page)),
        sample("ClientReply::Record", &ClientReply::Record(answer)),
        sample("ClientRequest::Check", &ClientRequest::Check { envelope: "{}".into() }),
        sample(
            "ClientReply::Checked",
            &ClientReply::Checked { tx, valid: Some(false), reason: Some("notes.write: too long".into()) },
        ),
        sample("ClientRequest::Decided", &ClientRequest::Decided { from: Position(7), limit: 100 }),
        sample(
            "ClientRequest::Search",
            &ClientRequest::Search {
                from: Position(7),
                filter: DecidedFilter { contract: Some("bank".into()), committed: Some(true) },
                limit: 100,
            },
        ),
        sample(
            "ClientReply::DecidedFound",
            &ClientReply::DecidedFound {
                from: Position(7),
                filter: DecidedFilter::default(),
                found: Found { entries: vec![(Position(9), decided.clone())], searched_to: Position(12), length: 20 },
            },
        ),
        sample(
            "ClientReply::DecidedLog",
            &ClientReply::DecidedLog { from: Position(7), entries: vec![decided.clone()], length: 9 },
        ),
        sample("DecidedEntry", &decided),
        sample("ObjectRecord", &record),
        sample("TxRecord", &tx_record),
        sample("StateHead", &head),
    ]
    .concat();
    check_golden("sbac_formats.txt", &encoded);
}
