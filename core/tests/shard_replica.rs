//! `ShardReplica` driven by hand, sans-IO: the limits of what one replica keeps for
//! clients and envelopes, of a page and of a pass-on sweep, are hit, refused with a
//! clear reply or carried over, and lose nothing; a
//! replica whose records cannot be read stops before it answers; a replica that is not
//! an attempt's designated submitter stands by, then stands in.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::sync::Arc;

use serde_json::json;
use shardspace_core::bft::{Application, Height};
use shardspace_core::bft::{Committee, Config, KeyPair, PeerMessage, Replica, ReplicaId, Request, Seal, TimeMs};
use shardspace_core::sbac::replica::{
    ClientId, ClientReply, ClientRequest, DECIDED_PAGE_MAX, ENVELOPE_MS_MAX, ENVELOPES_MAX, Frame, Input, Listing,
    Output, PAGE_MAX, PASS_ON_AFTER_MS, PASS_ON_MAX, PeerId, RejectKind, STANDBY_MS, SWEEP_EVERY_MS, WAITING_MAX,
    WAITING_MS_MAX,
};
use shardspace_core::sbac::{
    Attempt, CheckerAnswer, DecidedEntry, DecidedFilter, FieldMatch, ObjectFilter, ObjectRecord, ObjectStatus,
    Position, SCAN_MAX, ShardApp, ShardReplica, ShardReplicaConfig, ShardRequest, Source, StatusKind, TxRecord,
    Verdict, VerdictCertificate,
};
use shardspace_core::{Envelope, Limits, ObjectId, ShardId, ShardMap, Transaction, TxId};

fn keys() -> Vec<KeyPair> {
    (0..4).map(|r| KeyPair::from_seed(ReplicaId(r), [r as u8 + 1; 32])).collect()
}

fn committee(keys: &[KeyPair]) -> Committee {
    Committee::new("replica-test", ShardId(0), keys.iter().map(KeyPair::public).collect())
}

/// Replica `id` of a one-shard cluster, its records held in memory (or read from `source`).
fn replica(id: u32, source: Option<Arc<Failing>>) -> ShardReplica {
    let keys = keys();
    let committee = committee(&keys);
    let mut app = ShardApp::new(ShardId(0), vec![committee.clone()], keys[id as usize].clone(), Limits::default());
    if let Some(source) = source {
        app = app.saved_in(source.clone(), source.clone(), source);
    }
    let config = Config { mempool_requests_max: 2 * WAITING_MAX, ..Config::default() };
    let replica = Replica::new(committee.clone(), keys[id as usize].clone(), config, app);
    let contracts = ["bank".to_string()].into();
    ShardReplica::new(replica, ShardReplicaConfig { committees: vec![committee], limits: Limits::default(), contracts })
}

/// A transaction of `bank` creating one object: a new one for each `n`.
fn envelope(n: u64) -> Envelope {
    let transaction = Transaction {
        contract_id: "bank".into(),
        method_id: "open".into(),
        input_ids: vec![],
        reference_input_ids: vec![],
        parameters: vec![json!(n)],
        returns: vec![],
        outputs: vec![json!({ "n": n }).to_string()],
        dependencies: vec![],
    };
    Envelope { transaction, store: Default::default() }
}

fn submit(envelope: &Envelope) -> ClientRequest {
    ClientRequest::Envelope {
        envelope: serde_json::to_string(envelope).unwrap(),
        attempt: shardspace_core::sbac::Attempt(1),
    }
}

fn replies(outputs: &[Output], to: ClientId) -> Vec<&ClientReply> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Reply { client, reply } if *client == to => Some(reply),
            _ => None,
        })
        .collect()
}

fn checks(outputs: &[Output]) -> usize {
    outputs.iter().filter(|output| matches!(output, Output::Check { .. })).count()
}

#[test]
fn envelopes_beyond_envelopes_max_are_refused_busy_and_taken_once_there_is_room() {
    let mut replica = replica(0, None);
    let client = ClientId(1);
    for n in 0..ENVELOPES_MAX as u64 {
        let outputs = replica.handle(TimeMs(1), Input::Client { client, request: submit(&envelope(n)) });
        assert_eq!(checks(&outputs), 1, "envelope {n} is checked");
    }
    let late = envelope(ENVELOPES_MAX as u64);
    let outputs = replica.handle(TimeMs(2), Input::Client { client, request: submit(&late) });
    assert_eq!(checks(&outputs), 0);
    match replies(&outputs, client).as_slice() {
        [ClientReply::Rejected { kind, .. }] => assert_eq!(*kind, RejectKind::Busy),
        other => panic!("expected a busy refusal, got {other:?}"),
    }
    // Envelopes whose certificate never came are let go; the refused one is taken then.
    let later = TimeMs(2 + ENVELOPE_MS_MAX + SWEEP_EVERY_MS);
    replica.handle(later, Input::Tick);
    assert_eq!(replica.envelopes_len(), 0);
    let outputs = replica.handle(later, Input::Client { client, request: submit(&late) });
    assert_eq!(checks(&outputs), 1, "the refused envelope is taken once there is room");
}

#[test]
fn raw_requests_beyond_waiting_max_are_refused_to_their_client() {
    let mut replica = replica(0, None);
    let client = ClientId(7);
    let requests: Vec<Request> = (0..=WAITING_MAX as u64).map(|n| Request::new(n.to_be_bytes().to_vec())).collect();
    let last = requests[WAITING_MAX].digest();
    let outputs = replica.handle(TimeMs(1), Input::Client { client, request: ClientRequest::Submit(requests) });
    let refused: Vec<_> = replies(&outputs, client)
        .into_iter()
        .filter_map(|reply| match reply {
            ClientReply::Refused(digests) => Some(digests.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(refused, vec![last], "the one request past WAITING_MAX is refused, and only it");
}

#[test]
fn a_checker_that_gives_no_verdict_makes_a_verdict_of_its_own_for_the_shard_and_refuses_nobody() {
    let mut replica = replica(0, None);
    let (gone, staying) = (ClientId(1), ClientId(2));
    for client in [gone, staying] {
        let outputs = replica.handle(TimeMs(1), Input::Client { client, request: submit(&envelope(1)) });
        assert!(matches!(replies(&outputs, client).as_slice(), [ClientReply::Accepted { .. }]));
    }
    replica.handle(TimeMs(2), Input::ClientsGone(vec![gone]));
    // The checker kept failing past the bound: "no verdict" is sealed and shared like a
    // verdict (f+1 of them abort the attempt with `checker_error`); nobody is refused.
    let tx = envelope(1).transaction.tx_id();
    let outputs = replica.handle(
        TimeMs(3),
        Input::Checked(vec![shardspace_core::sbac::replica::Checked {
            tx,
            envelope: envelope(1).digest(),
            verdict: Err("the checker answered 503 for 2 s".into()),
        }]),
    );
    let shared: Vec<CheckerAnswer> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Multicast { frame: Frame::Verdict(verdict), .. } if verdict.tx == tx => Some(verdict.answer),
            _ => None,
        })
        .collect();
    assert_eq!(shared, [CheckerAnswer::Unavailable(shardspace_core::sbac::Attempt(1))], "{outputs:?}");
    assert!(replies(&outputs, gone).is_empty() && replies(&outputs, staying).is_empty(), "{outputs:?}");
    assert_eq!(replica.counters().checker_unavailable, 1);
}

/// A disk that fails every read.
#[derive(Debug, Default)]
struct Failing;

impl<K, V> Source<K, V> for Failing {
    fn get(&self, _: &K) -> Option<V> {
        None
    }
    fn keys_after(&self, _: Option<&K>, _: usize) -> Vec<K> {
        Vec::new()
    }
    fn fault(&self) -> Option<String> {
        Some("disk I/O error".into())
    }
}

#[test]
fn a_replica_whose_records_cannot_be_read_stops_instead_of_answering_none() {
    // Fail closed: a failed read answers "none" inside the state machine, which must never
    // become a signed "no such object"; the replica stops and says nothing more.
    let mut replica = replica(0, Some(Arc::new(Failing)));
    let client = ClientId(3);
    let outputs =
        replica.handle(TimeMs(1), Input::Client { client, request: ClientRequest::Object(ObjectId([1; 32])) });
    assert!(replies(&outputs, client).is_empty(), "a signed answer left: {outputs:?}");
    assert!(matches!(outputs.as_slice(), [Output::Stop(_)]), "{outputs:?}");
    assert!(replica.is_stopped());
    assert!(replica.handle(TimeMs(2), Input::Tick).is_empty(), "a stopped replica says nothing");
}

#[test]
fn a_later_attempt_takes_over_an_envelope_still_waiting_for_its_certificate() {
    let mut replica = replica(0, None);
    let client = ClientId(1);
    let envelope = envelope(9);
    let attempt = |n: u32| ClientRequest::Envelope {
        envelope: serde_json::to_string(&envelope).unwrap(),
        attempt: shardspace_core::sbac::Attempt(n),
    };
    let outputs = replica.handle(TimeMs(1), Input::Client { client, request: attempt(1) });
    assert_eq!(checks(&outputs), 1);
    // Attempt 2 of the same envelope before attempt 1 was certified: checked again, and the
    // "no verdict" its checkers give is attempt 2's, not attempt 1's.
    let outputs = replica.handle(TimeMs(2), Input::Client { client, request: attempt(2) });
    assert_eq!(checks(&outputs), 1, "the later attempt is checked again");
    assert_eq!(replica.counters().attempts_taken_over, 1);
    let tx = envelope.transaction.tx_id();
    let checked =
        shardspace_core::sbac::replica::Checked { tx, envelope: envelope.digest(), verdict: Err("503".into()) };
    let outputs = replica.handle(TimeMs(3), Input::Checked(vec![checked]));
    let shared: Vec<CheckerAnswer> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Multicast { frame: Frame::Verdict(verdict), .. } => Some(verdict.answer),
            _ => None,
        })
        .collect();
    assert_eq!(shared, [CheckerAnswer::Unavailable(shardspace_core::sbac::Attempt(2))]);
    // An older attempt arriving late changes nothing.
    let outputs = replica.handle(TimeMs(4), Input::Client { client, request: attempt(1) });
    assert_eq!(checks(&outputs), 0);
}

#[test]
fn a_replica_that_is_not_the_designated_submitter_stands_by_then_stands_in() {
    let keys = keys();
    let committee = committee(&keys);
    let envelope = envelope(5);
    let (tx, digest) = (envelope.transaction.tx_id(), envelope.digest());
    // A replica other than the attempt's designated one.
    // Nothing decided yet: every replica counts as active.
    let all: Vec<ReplicaId> = (0..4).map(ReplicaId).collect();
    let designated = shardspace_core::sbac::replica::designated_submitter(&tx, shardspace_core::sbac::Attempt(1), &all);
    let own = (designated.unwrap().0 + 1) % 4;
    let mut replica = replica(own, None);
    let client = ClientId(1);
    replica.handle(TimeMs(1), Input::Client { client, request: submit(&envelope) });
    // f+1 verdicts (its own and a peer's) certify the envelope.
    let checked = shardspace_core::sbac::replica::Checked { tx, envelope: digest, verdict: Ok((true, None)) };
    replica.handle(TimeMs(2), Input::Checked(vec![checked]));
    let peer = (own + 1) % 4;
    let verdict = Verdict::sign(&committee, &keys[peer as usize], tx, digest, CheckerAnswer::Valid);
    let from = PeerId { shard: ShardId(0), replica: ReplicaId(peer) };
    let submits = |outputs: &[Output]| {
        outputs
            .iter()
            .any(|output| matches!(output, Output::Multicast { frame: Frame::Bft(PeerMessage::Requests(_)), .. }))
    };
    let outputs = replica.handle(TimeMs(3), Input::Frame { from, frame: Frame::Verdict(verdict) });
    assert!(!submits(&outputs), "not the designated replica: it stands by");
    let outputs = replica.handle(TimeMs(3 + STANDBY_MS - 1), Input::Tick);
    assert!(!submits(&outputs), "still standing by");
    let outputs = replica.handle(TimeMs(3 + STANDBY_MS), Input::Tick);
    assert!(submits(&outputs), "the attempt is still unprepared: it stands in");
    assert_eq!(replica.counters().stand_in_submissions, 1);
}

#[test]
fn a_client_waiting_past_waiting_ms_max_is_forgotten_and_asking_again_waits_again() {
    let mut replica = replica(0, None);
    let client = ClientId(4);
    let outputs = replica.handle(TimeMs(1), Input::Client { client, request: submit(&envelope(9)) });
    assert!(matches!(replies(&outputs, client).as_slice(), [ClientReply::Accepted { .. }]));
    assert_eq!(replica.waiting_len(), 1);
    replica.handle(TimeMs(WAITING_MS_MAX), Input::Tick);
    assert_eq!(replica.waiting_len(), 1, "still within WAITING_MS_MAX");
    replica.handle(TimeMs(1 + WAITING_MS_MAX + SWEEP_EVERY_MS), Input::Tick);
    assert_eq!(replica.waiting_len(), 0, "forgotten past WAITING_MS_MAX");
    // The client asks again (as clients do once their own deadline passes): it waits again.
    let now = TimeMs(2 + WAITING_MS_MAX + SWEEP_EVERY_MS);
    let outputs = replica.handle(now, Input::Client { client, request: submit(&envelope(9)) });
    assert!(matches!(replies(&outputs, client).as_slice(), [ClientReply::Accepted { .. }]));
    assert_eq!(replica.waiting_len(), 1);
}

/// A disk holding `count` objects, as a replica's store serves them.
#[derive(Debug)]
struct Many {
    ids: Vec<ObjectId>,
}

impl Many {
    fn new(count: u32) -> Self {
        let mut ids: Vec<ObjectId> = (0..count)
            .map(|n| {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_be_bytes());
                id[4..8].copy_from_slice(&n.to_be_bytes());
                ObjectId(id)
            })
            .collect();
        ids.sort();
        Self { ids }
    }
}

impl Source<ObjectId, ObjectRecord> for Many {
    fn get(&self, id: &ObjectId) -> Option<ObjectRecord> {
        self.ids.binary_search(id).ok()?;
        Some(ObjectRecord {
            value: "\"v\"".into(),
            contract: "bank".into(),
            created_by: TxId([7; 32]),
            status: ObjectStatus::Active,
            readers: Default::default(),
        })
    }
    fn keys_after(&self, after: Option<&ObjectId>, limit: usize) -> Vec<ObjectId> {
        let start = after.map_or(0, |after| self.ids.partition_point(|id| id <= after));
        self.ids[start..].iter().take(limit).copied().collect()
    }
}

impl Source<TxId, TxRecord> for Many {
    fn get(&self, _: &TxId) -> Option<TxRecord> {
        None
    }
    fn keys_after(&self, _: Option<&TxId>, _: usize) -> Vec<TxId> {
        Vec::new()
    }
}

/// A decided log of as many entries as objects: entry n commits a `bank` transaction when n
/// is even, and aborts one of `dump` when odd.
impl Source<Position, DecidedEntry> for Many {
    fn get(&self, position: &Position) -> Option<DecidedEntry> {
        let n = usize::try_from(position.0).ok().filter(|n| *n < self.ids.len())?;
        Some(DecidedEntry {
            tx: TxId(self.ids[n].0),
            attempt: Attempt(1),
            committed: n % 2 == 0,
            concerned: vec![ShardId(0)],
            contract: if n % 2 == 0 { "bank" } else { "dump" }.into(),
            method: "m".into(),
            vote: shardspace_core::sbac::VoteKind::Accept,
            aborted_by: vec![],
            inputs: vec![],
            outputs: vec![],
        })
    }
    fn keys_after(&self, after: Option<&Position>, limit: usize) -> Vec<Position> {
        let start = after.map_or(0, |after| after.0 + 1);
        (start..self.ids.len() as u64).take(limit).map(Position).collect()
    }
}

/// A replica reading its records from `disk`.
fn replica_on(disk: &Arc<Many>) -> ShardReplica {
    let keys = keys();
    let committee = committee(&keys);
    let app = ShardApp::new(ShardId(0), vec![committee.clone()], keys[0].clone(), Limits::default()).saved_in(
        disk.clone(),
        disk.clone(),
        disk.clone(),
    );
    let replica = Replica::new(committee.clone(), keys[0].clone(), Config::default(), app);
    let contracts = ["bank".to_string()].into();
    ShardReplica::new(replica, ShardReplicaConfig { committees: vec![committee], limits: Limits::default(), contracts })
}

/// The one reply `request` gets from `replica`.
fn ask(replica: &mut ShardReplica, request: ClientRequest) -> ClientReply {
    let client = ClientId(5);
    let outputs = replica.handle(TimeMs(1), Input::Client { client, request });
    let replied = replies(&outputs, client);
    let [reply] = replied.as_slice() else { panic!("{outputs:?}") };
    (*reply).clone()
}

#[test]
fn the_decided_log_is_read_decided_page_max_at_a_time_and_searched_scan_max_at_a_time() {
    let count = DECIDED_PAGE_MAX + DECIDED_PAGE_MAX / 2;
    let disk = Arc::new(Many::new(count));
    let mut replica = replica_on(&disk);
    let mut read = Vec::new();
    let mut from = Position(0);
    loop {
        let ClientReply::DecidedLog { entries, .. } =
            ask(&mut replica, ClientRequest::Decided { from, limit: u32::MAX })
        else {
            panic!("not a log")
        };
        assert!(entries.len() <= DECIDED_PAGE_MAX as usize, "an answer of {}", entries.len());
        if entries.is_empty() {
            break;
        }
        from = Position(from.0 + entries.len() as u64);
        read.extend(entries.into_iter().map(|entry| entry.tx));
    }
    assert_eq!(read, disk.ids.iter().map(|id| TxId(id.0)).collect::<Vec<_>>(), "every entry once, in order");
    // Bank's commits are the even positions: a search answers them with their positions,
    // SCAN_MAX candidates at a time, and says how far it read.
    let filter = DecidedFilter { contract: Some("bank".into()), committed: Some(true) };
    let (mut found, mut from) = (Vec::new(), Position(0));
    loop {
        let request = ClientRequest::Search { from, filter: filter.clone(), limit: u32::MAX };
        let ClientReply::DecidedFound { found: page, .. } = ask(&mut replica, request) else { panic!("not found") };
        assert!(page.entries.len() <= SCAN_MAX, "a search of {}", page.entries.len());
        found.extend(page.entries.iter().map(|(position, _)| position.0));
        if page.searched_to <= from {
            break;
        }
        from = page.searched_to;
    }
    assert_eq!(found, (0..u64::from(count)).step_by(2).collect::<Vec<_>>());
}

#[test]
fn a_filtered_page_lists_what_holds_and_a_bad_filter_is_refused() {
    let disk = Arc::new(Many::new(10));
    let mut replica = replica_on(&disk);
    let list =
        |filter: ObjectFilter| ClientRequest::List { what: Listing::ObjectsWhere(filter), after: None, limit: 100 };
    let bank = ObjectFilter { contract: Some("bank".into()), status: Some(StatusKind::Active), field: None };
    let ClientReply::Page(page) = ask(&mut replica, list(bank)) else { panic!("not a page") };
    assert_eq!(page.objects.iter().map(|(id, _)| *id).collect::<Vec<_>>(), disk.ids);
    let consumed = ObjectFilter { status: Some(StatusKind::Inactive), ..ObjectFilter::default() };
    let ClientReply::Page(page) = ask(&mut replica, list(consumed)) else { panic!("not a page") };
    assert!(page.objects.is_empty() && page.scanned_to.is_none(), "{page:?}");
    let nameless =
        ObjectFilter { field: Some(FieldMatch { name: String::new(), equals: "v".into() }), ..ObjectFilter::default() };
    let ClientReply::Error(why) = ask(&mut replica, list(nameless)) else { panic!("a nameless field was listed") };
    assert!(why.contains("needs a name"), "{why}");
}

#[test]
fn a_page_holds_at_most_page_max_and_the_next_page_goes_on_from_its_last() {
    let count = PAGE_MAX + PAGE_MAX / 2;
    let disk = Arc::new(Many::new(count));
    let mut replica = replica_on(&disk);
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let request = ClientRequest::List { what: Listing::Objects, after, limit: u32::MAX };
        let ClientReply::Page(page) = ask(&mut replica, request) else { panic!("not a page") };
        assert!(page.objects.len() <= PAGE_MAX as usize, "a page of {}", page.objects.len());
        let Some((last, _)) = page.objects.last() else { break };
        after = Some(last.0);
        listed.extend(page.objects.iter().map(|(id, _)| *id));
    }
    assert_eq!(listed, disk.ids, "every object once, in id order, over pages of PAGE_MAX");
}

/// Replica 0 of shard 0 in a cluster of two shards, restarted with `count` attempts it
/// prepared and voted on that also concern shard 1, which never answers.
fn replica_with_undecided(count: usize) -> (ShardReplica, Vec<TxId>) {
    let keys: Vec<Vec<KeyPair>> = (0..2u8)
        .map(|shard| (0..4).map(|r| KeyPair::from_seed(ReplicaId(r), [shard * 10 + r as u8 + 1; 32])).collect())
        .collect();
    let committees: Vec<Committee> = (0..2)
        .map(|shard| {
            Committee::new("pass-on", ShardId(shard), keys[shard as usize].iter().map(KeyPair::public).collect())
        })
        .collect();
    let mut app = ShardApp::new(ShardId(0), committees.clone(), keys[0][0].clone(), Limits::default());
    let map = ShardMap::new(2).unwrap();
    let both = [ShardId(0), ShardId(1)].into();
    let two_outputs = |n: u64| {
        let mut envelope = envelope(n);
        envelope.transaction.outputs.push(json!({ "n": n, "second": true }).to_string());
        envelope
    };
    let envelopes =
        (0..100 * count as u64).map(two_outputs).filter(|envelope| map.concerned_shards(&envelope.transaction) == both);
    let mut txs = Vec::new();
    for (height, envelope) in envelopes.take(count).enumerate() {
        let (tx, digest) = (envelope.transaction.tx_id(), envelope.digest());
        let bytes = Verdict::signing_bytes(&committees[0], &tx, &digest, CheckerAnswer::Valid);
        let seals =
            (0..2).map(|r| (ReplicaId(r), Seal::sign_one(&committees[0], &keys[0][r as usize], &bytes))).collect();
        let verdict = VerdictCertificate { tx, envelope: digest, answer: CheckerAnswer::Valid, seals };
        let prepare =
            ShardRequest::Prepare { envelope: serde_json::to_string(&envelope).unwrap(), attempt: Attempt(1), verdict };
        app.execute(Height(height as u64 + 1), &Request::new(postcard::to_stdvec(&prepare).unwrap()));
        txs.push(tx);
    }
    assert_eq!(txs.len(), count, "not enough transactions of both shards");
    let replica = Replica::new(committees[0].clone(), keys[0][0].clone(), Config::default(), app);
    let contracts = ["bank".to_string()].into();
    let config = ShardReplicaConfig { committees, limits: Limits::default(), contracts };
    (ShardReplica::new(replica, config), txs)
}

/// The attempts a replica's outputs pass on.
fn passed_on(outputs: &[Output]) -> Vec<TxId> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Multicast { frame: Frame::Envelope { envelope, .. }, .. } => {
                Some(serde_json::from_str::<Envelope>(envelope).unwrap().transaction.tx_id())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn at_most_pass_on_max_envelopes_go_per_sweep_and_the_rest_go_at_the_next() {
    let (mut replica, mut txs) = replica_with_undecided(PASS_ON_MAX + 10);
    assert_eq!(replica.undecided_len(), PASS_ON_MAX + 10);
    let first = passed_on(&replica.handle(TimeMs(PASS_ON_AFTER_MS), Input::Tick));
    assert_eq!(first.len(), PASS_ON_MAX);
    let second = passed_on(&replica.handle(TimeMs(PASS_ON_AFTER_MS + SWEEP_EVERY_MS), Input::Tick));
    assert_eq!(second.len(), 10, "the rest go at the next sweep");
    let mut all: Vec<TxId> = first.into_iter().chain(second).collect();
    all.sort();
    txs.sort();
    assert_eq!(all, txs, "each undecided attempt passed on once");
}

#[test]
fn what_a_replica_says_in_one_call_is_sealed_under_one_signature() {
    let (mut replica, txs) = replica_with_undecided(8);
    let outputs = replica.handle(TimeMs(PASS_ON_AFTER_MS), Input::Tick);
    let votes: Vec<_> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Multicast { frame: Frame::Votes(votes), .. } => Some(votes.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(votes.len(), txs.len(), "each undecided attempt's vote goes again, all in one frame");
    let committee = replica.app().own_committee().clone();
    for vote in &votes {
        assert_eq!(vote.seal.root_signature, votes[0].seal.root_signature, "one root for the call");
        assert_eq!(vote.seal.path.len(), 3, "eight leaves: three levels");
        assert_eq!(vote.verify(&committee), Ok(()));
    }
    assert_eq!((replica.counters().seals, replica.counters().sealed), (1, 8));
    // A vote moved under another vote's seal does not verify.
    let moved = shardspace_core::sbac::SignedVote { seal: votes[1].seal.clone(), ..votes[0].clone() };
    assert!(moved.verify(&committee).is_err());
}

#[test]
fn verdicts_of_checks_answered_together_are_sealed_under_one_signature() {
    let committee = committee(&keys());
    let mut replica = replica(0, None);
    let envelopes = [envelope(21), envelope(22), envelope(23)];
    for envelope in &envelopes {
        replica.handle(TimeMs(1), Input::Client { client: ClientId(1), request: submit(envelope) });
    }
    let checked = envelopes
        .iter()
        .map(|envelope| shardspace_core::sbac::replica::Checked {
            tx: envelope.transaction.tx_id(),
            envelope: envelope.digest(),
            verdict: Ok((true, None)),
        })
        .collect();
    let outputs = replica.handle(TimeMs(2), Input::Checked(checked));
    let verdicts: Vec<&Verdict> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Multicast { frame: Frame::Verdict(verdict), .. } => Some(verdict),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts.len(), 3);
    for verdict in &verdicts {
        assert_eq!(verdict.seal.root_signature, verdicts[0].seal.root_signature, "one signature for the batch");
        assert_eq!(verdict.verify(&committee), Ok(()));
    }
    assert_eq!(replica.counters().seals, 1);
}

/// A dry run (`Check`) goes to the checkers for its client alone and changes nothing; one
/// that cannot be read is refused; one naming a contract without a checker here gets no
/// verdict, with why.
/// A reload that adds the contract (`set_contracts`) lets the next one through.
#[test]
fn a_dry_run_goes_to_the_checkers_alone_an_unreadable_one_is_refused_an_unknown_one_has_no_verdict() {
    let mut replica = replica(0, None);
    let client = ClientId(3);
    let check = |envelope: &Envelope| ClientRequest::Check { envelope: serde_json::to_string(envelope).unwrap() };
    let outputs = replica.handle(TimeMs(1), Input::Client { client, request: check(&envelope(1)) });
    match outputs.as_slice() {
        [Output::DryCheck { client: asking, tx, .. }] => {
            assert_eq!((*asking, *tx), (client, envelope(1).transaction.tx_id()));
        }
        other => panic!("expected one dry check, got {other:?}"),
    }
    assert_eq!(replica.envelopes_len(), 0, "a dry run is not an envelope being prepared");

    let unreadable = ClientRequest::Check { envelope: "{\"transaction\":".into() };
    let outputs = replica.handle(TimeMs(2), Input::Client { client, request: unreadable });
    assert!(matches!(
        replies(&outputs, client).as_slice(),
        [ClientReply::Rejected { kind: RejectKind::Invalid(_), .. }]
    ));

    let mut notes = envelope(2);
    notes.transaction.contract_id = "notes".into();
    let outputs = replica.handle(TimeMs(3), Input::Client { client, request: check(&notes) });
    match replies(&outputs, client).as_slice() {
        [ClientReply::Checked { tx, valid: None, reason: Some(reason) }] => {
            assert_eq!(*tx, notes.transaction.tx_id());
            assert!(reason.starts_with("unknown_contract: no checker for contract \"notes\""), "{reason}");
        }
        other => panic!("expected no verdict for an unknown contract, got {other:?}"),
    }
    replica.set_contracts(["bank".to_string(), "notes".to_string()].into());
    let outputs = replica.handle(TimeMs(4), Input::Client { client, request: check(&notes) });
    assert!(matches!(outputs.as_slice(), [Output::DryCheck { .. }]), "{outputs:?}");
}
