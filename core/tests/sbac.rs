//! The S-BAC shard state machine, driven by hand: every replica of two shards
//! executes the same requests in the same order (as their BFT logs would), votes
//! are real signatures, certificates are made of them. Each test checks one rule
//! of DESIGN.md §5 or one of its invariants (I1, I2, I4, I6).

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use serde_json::json;
use shardspace_core::bft::{Application, Committee, Height, KeyPair, ReplicaId, Request, Seal};
use shardspace_core::sbac::{
    ATTEMPTS_AHEAD_MAX, AbortReason, Attempt, CheckerAnswer, ObjectStatus, PreparedCertificate, ShardApp, ShardOutput,
    ShardRequest, ShardState, SignedVote, Verdict, VerdictCertificate, VerdictCollector, VoteBody, VoteCollector,
    VoteKind,
};
use shardspace_core::{Envelope, Limits, Object, ObjectId, ShardId, ShardMap, Transaction, TxId};

const SHARDS: u32 = 2;
const REPLICAS: u32 = 4;

struct Cluster {
    committees: Vec<Committee>,
    keys: Vec<Vec<KeyPair>>,
    /// Every replica of every shard.
    apps: Vec<Vec<ShardApp>>,
}

impl Cluster {
    fn new() -> Self {
        let keys: Vec<Vec<KeyPair>> = (0..SHARDS)
            .map(|s| (0..REPLICAS).map(|r| KeyPair::from_seed(ReplicaId(r), [(s * 16 + r + 1) as u8; 32])).collect())
            .collect();
        let committees: Vec<Committee> = (0..SHARDS)
            .map(|s| Committee::new("test", ShardId(s), keys[s as usize].iter().map(KeyPair::public).collect()))
            .collect();
        let apps = (0..SHARDS)
            .map(|s| {
                (0..REPLICAS as usize)
                    .map(|r| {
                        ShardApp::new(ShardId(s), committees.clone(), keys[s as usize][r].clone(), Limits::default())
                    })
                    .collect()
            })
            .collect();
        Self { committees, keys, apps }
    }

    fn map(&self) -> ShardMap {
        ShardMap::new(SHARDS).unwrap()
    }

    /// f+1 replicas of `shard` sign the checker's verdict on `envelope`.
    fn verdict(&self, shard: u32, envelope: &Envelope, success: bool) -> VerdictCertificate {
        self.certify(shard, envelope, success.into())
    }

    /// f+1 replicas of `shard` sign `answer` about `envelope`.
    fn certify(&self, shard: u32, envelope: &Envelope, answer: CheckerAnswer) -> VerdictCertificate {
        let committee = &self.committees[shard as usize];
        let (tx, digest) = (envelope.transaction.tx_id(), envelope.digest());
        let bytes = Verdict::signing_bytes(committee, &tx, &digest, answer);
        let seals = (0..answer.signers_needed(committee) as u32)
            .map(|r| (ReplicaId(r), Seal::sign_one(committee, &self.keys[shard as usize][r as usize], &bytes)))
            .collect();
        VerdictCertificate { tx, envelope: digest, answer, seals }
    }

    /// Orders `request` at every replica of `shard`; returns their outputs.
    fn order(&mut self, shard: u32, request: &ShardRequest) -> Vec<ShardOutput> {
        let request = Request::new(postcard::to_stdvec(request).unwrap());
        self.apps[shard as usize].iter_mut().flat_map(|app| app.execute(Height(1), &request)).collect()
    }

    /// Prepares an attempt at `shard`; returns the replicas' votes.
    fn prepare(&mut self, shard: u32, envelope: &Envelope, attempt: u32, checker: bool) -> Vec<SignedVote> {
        let request = ShardRequest::Prepare {
            envelope: serde_json::to_string(envelope).unwrap(),
            attempt: Attempt(attempt),
            verdict: self.verdict(shard, envelope, checker),
        };
        // A transaction of one shard is decided with its vote (`decide_alone`): that
        // decision follows the vote, and the votes are still what this helper returns.
        let mut votes = Vec::new();
        let mut last_vote = None;
        let request = Request::new(postcard::to_stdvec(&request).unwrap());
        for app in &mut self.apps[shard as usize] {
            for output in app.execute(Height(1), &request) {
                match output {
                    ShardOutput::Vote { vote, concerned } => {
                        last_vote = Some((vote.vote.is_accept(), concerned.len()));
                        votes.push(vote.sign(app.own_committee(), app.keys()));
                    }
                    ShardOutput::Decided { committed, .. } => {
                        let (accepted, concerned) = last_vote.expect("a decision follows its vote");
                        assert_eq!((committed, concerned), (accepted, 1), "decided at prepare: one shard, as voted");
                    }
                    other => panic!("expected a vote, got {other:?}"),
                }
            }
        }
        assert!(votes.iter().all(|vote| vote.vote == votes[0].vote), "replicas disagree (I3)");
        votes
    }

    /// Prepares at every concerned shard; returns each shard's certificate (from 2f+1 votes).
    fn prepare_all(&mut self, envelope: &Envelope, attempt: u32, checker: bool) -> Vec<PreparedCertificate> {
        let shards = self.map().concerned_shards(&envelope.transaction);
        shards.into_iter().map(|shard| certificate(&self.prepare(shard.0, envelope, attempt, checker))).collect()
    }

    /// Decides at every concerned shard; returns whether each committed.
    fn decide_all(&mut self, envelope: &Envelope, attempt: u32, certificates: &[PreparedCertificate]) -> Vec<bool> {
        let tx = envelope.transaction.tx_id();
        let request = ShardRequest::Decide { tx, attempt: Attempt(attempt), certificates: certificates.to_vec() };
        let shards = self.map().concerned_shards(&envelope.transaction);
        shards
            .into_iter()
            .flat_map(|shard| self.order(shard.0, &request))
            .map(|output| match output {
                ShardOutput::Decided { committed, .. } => committed,
                other => panic!("expected a decision, got {other:?}"),
            })
            .collect()
    }

    /// Runs an attempt through both phases; returns whether it committed everywhere (or panics on a split).
    fn run(&mut self, envelope: &Envelope, attempt: u32) -> bool {
        let certificates = self.prepare_all(envelope, attempt, true);
        let decisions = self.decide_all(envelope, attempt, &certificates);
        assert!(decisions.iter().all(|d| *d == decisions[0]), "a half-commit (I2): {decisions:?}");
        decisions[0]
    }

    fn status(&self, id: &ObjectId) -> Option<ObjectStatus> {
        let shard = self.map().shard_of(id).0 as usize;
        self.apps[shard][0].object(id).map(|object| object.status.clone())
    }
}

fn certificate(votes: &[SignedVote]) -> PreparedCertificate {
    let first = &votes[0];
    PreparedCertificate {
        shard: first.shard,
        tx: first.tx,
        attempt: first.attempt,
        envelope: first.envelope,
        accept: first.vote.is_accept(),
        seals: votes.iter().take(3).map(|vote| (vote.replica, vote.seal.clone())).collect(),
    }
}

fn transaction(contract: &str, inputs: &[&Object], references: &[&Object], outputs: Vec<String>) -> Envelope {
    let transaction = Transaction {
        contract_id: contract.into(),
        method_id: "m".into(),
        input_ids: inputs.iter().map(|o| o.id).collect(),
        reference_input_ids: references.iter().map(|o| o.id).collect(),
        parameters: vec![json!(1)],
        returns: vec![],
        outputs,
        dependencies: vec![],
    };
    let store = inputs.iter().chain(references).map(|o| (o.id, o.value.clone())).collect();
    Envelope { transaction, store }
}

/// Creates objects of `contract` until there is one on each shard; returns one per shard.
fn objects_on_each_shard(cluster: &mut Cluster, contract: &str, tag: &str) -> Vec<Object> {
    let envelope = transaction(contract, &[], &[], (0..8).map(|i| format!("{tag}{i}")).collect());
    assert!(cluster.run(&envelope, 1), "creating objects failed");
    let created = envelope.transaction.own_outputs();
    (0..SHARDS).map(|s| created.iter().find(|o| cluster.map().shard_of(&o.id).0 == s).unwrap().clone()).collect()
}

#[test]
fn a_cross_shard_transaction_consumes_its_inputs_and_creates_its_outputs() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let spend = transaction("bank", &[&objects[0], &objects[1]], &[], vec!["x".into(), "y".into()]);
    assert!(cluster.run(&spend, 1));
    let tx = spend.transaction.tx_id();
    assert_eq!(cluster.status(&objects[0].id), Some(ObjectStatus::Inactive { consumed_by: tx }));
    assert_eq!(cluster.status(&objects[1].id), Some(ObjectStatus::Inactive { consumed_by: tx }));
    for output in spend.transaction.own_outputs() {
        assert_eq!(cluster.status(&output.id), Some(ObjectStatus::Active));
    }
}

#[test]
fn of_two_transactions_spending_one_object_exactly_one_commits() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let first = transaction("bank", &[&objects[0]], &[], vec!["to alice".into()]);
    let second = transaction("bank", &[&objects[0]], &[], vec!["to bob".into()]);
    let first_certificates = cluster.prepare_all(&first, 1, true);
    let second_certificates = cluster.prepare_all(&second, 1, true);
    let second_votes = cluster.prepare(cluster.map().shard_of(&objects[0].id).0, &second, 1, true);
    assert_eq!(second_votes[0].vote, VoteKind::Abort(AbortReason::InputLocked), "answered from the record");
    assert!(cluster.decide_all(&first, 1, &first_certificates).iter().all(|c| *c));
    assert!(cluster.decide_all(&second, 1, &second_certificates).iter().all(|c| !*c));
    // I1: the object was consumed once, by the first.
    assert_eq!(cluster.status(&objects[0].id), Some(ObjectStatus::Inactive { consumed_by: first.transaction.tx_id() }));
}

#[test]
fn one_shard_voting_abort_aborts_everywhere_and_releases_every_lock() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let stale = Object { id: objects[1].id, value: "not the stored value".into() };
    let spend = transaction("bank", &[&objects[0], &stale], &[], vec!["x".into()]);
    let certificates = cluster.prepare_all(&spend, 1, true);
    assert_eq!(certificates.iter().filter(|c| !c.accept).count(), 1, "only the shard of the stale value aborts");
    let locked = ObjectStatus::Locked { tx: spend.transaction.tx_id(), attempt: Attempt(1) };
    assert_eq!(cluster.status(&objects[0].id), Some(locked));
    assert!(cluster.decide_all(&spend, 1, &certificates).iter().all(|c| !*c));
    // I6: the accepting shard let go of its lock.
    assert_eq!(cluster.status(&objects[0].id), Some(ObjectStatus::Active));
}

/// An id on `shard` that names no object.
fn unknown_id_on(cluster: &Cluster, shard: u32) -> ObjectId {
    (0u8..=255).map(|b| ObjectId([b; 32])).find(|id| cluster.map().shard_of(id).0 == shard).unwrap()
}

#[test]
fn each_prepare_rule_votes_abort_with_its_reason() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let shard = cluster.map().shard_of(&objects[0].id).0;
    let missing = Object { id: unknown_id_on(&cluster, shard), value: "v".into() };
    let forged = Object { value: "forged".into(), ..objects[0].clone() };
    let cases = [
        (transaction("bank", &[&objects[0]], &[], vec!["x".into()]), false, AbortReason::CheckerRejected),
        (transaction("dump", &[&objects[0]], &[], vec!["x".into()]), true, AbortReason::InputWrongContract),
        (transaction("bank", &[&forged], &[], vec![]), true, AbortReason::ValueMismatch),
        (transaction("bank", &[&missing], &[], vec![]), true, AbortReason::InputMissing),
        (transaction("bank", &[], &[&missing], vec!["y".into()]), true, AbortReason::ReferenceMissing),
    ];
    for (envelope, checker, reason) in cases {
        let votes = cluster.prepare(shard, &envelope, 1, checker);
        assert_eq!(votes[0].vote, VoteKind::Abort(reason), "{reason}");
    }
    // A reader's shared lock keeps an input from being consumed; an exclusive lock keeps it from being read.
    // (The lock holders read an object on the other shard too: a transaction of one shard is
    // decided as it is prepared, and holds no lock past it.)
    let elsewhere = &objects[(shard as usize + 1) % objects.len()];
    let reader = transaction("bank", &[], &[&objects[0], elsewhere], vec!["read".into()]);
    assert!(cluster.prepare(shard, &reader, 1, true)[0].vote.is_accept());
    let spender = transaction("bank", &[&objects[0]], &[], vec!["spent".into()]);
    assert_eq!(cluster.prepare(shard, &spender, 1, true)[0].vote, VoteKind::Abort(AbortReason::InputLocked));
    let other = objects_on_each_shard(&mut cluster, "bank", "b");
    let taker = transaction("bank", &[&other[shard as usize]], &[elsewhere], vec!["taken".into()]);
    assert!(cluster.prepare(shard, &taker, 1, true)[0].vote.is_accept());
    let late_reader = transaction("bank", &[], &[&other[shard as usize]], vec!["late".into()]);
    assert_eq!(cluster.prepare(shard, &late_reader, 1, true)[0].vote, VoteKind::Abort(AbortReason::ReferenceLocked));
    // A consumed object stays consumed.
    let certificates = cluster.prepare_all(&taker, 1, true);
    assert!(cluster.decide_all(&taker, 1, &certificates).iter().all(|c| *c));
    let again = transaction("bank", &[&other[shard as usize]], &[], vec!["again".into()]);
    assert_eq!(cluster.prepare(shard, &again, 1, true)[0].vote, VoteKind::Abort(AbortReason::InputInactive));
    let read_consumed = transaction("bank", &[], &[&other[shard as usize]], vec!["gone".into()]);
    assert_eq!(
        cluster.prepare(shard, &read_consumed, 1, true)[0].vote,
        VoteKind::Abort(AbortReason::ReferenceInactive)
    );
    // A committed transaction submitted again is answered from its record.
    let creator = transaction("bank", &[], &[], (0..8).map(|i| format!("a{i}")).collect());
    let answer = cluster.prepare(shard, &creator, 2, true);
    assert!(answer[0].vote.is_accept() && answer[0].attempt == Attempt(1), "the committed attempt's vote");
}

#[test]
fn a_vote_of_another_attempt_cannot_decide_this_one() {
    // Replay attack 1 (Sonnino et al.): votes of an earlier run replayed into a later one.
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let spend = transaction("bank", &[&objects[0], &objects[1]], &[], vec!["x".into()]);
    let first = cluster.prepare_all(&spend, 1, false); // attempt 1: the checker says no
    assert!(cluster.decide_all(&spend, 1, &first).iter().all(|c| !*c));
    let second = cluster.prepare_all(&spend, 2, true);
    let tx = spend.transaction.tx_id();
    let mixed = ShardRequest::Decide { tx, attempt: Attempt(2), certificates: first.clone() };
    for shard in 0..SHARDS {
        for output in cluster.order(shard, &mixed) {
            assert!(matches!(output, ShardOutput::Refused { .. }), "{output:?}");
        }
    }
    assert!(cluster.decide_all(&spend, 2, &second).iter().all(|c| *c));
}

/// A coin of `amount` (values are JSON, as a bank's would be; `tag` keeps ids apart).
fn coin(amount: u64, tag: &str) -> String {
    json!({ "amount": amount, "tag": tag }).to_string()
}

/// The value held by every object not yet consumed (active or locked; replica 0 of each shard).
fn active_total(cluster: &Cluster) -> u64 {
    let shards = cluster.apps.iter().map(|replicas| &replicas[0]);
    let objects =
        shards.flat_map(|app| app.state().objects.held().map(|(_, object)| object.clone()).collect::<Vec<_>>());
    let unspent = objects.filter(|object| !matches!(object.status, ObjectStatus::Inactive { .. }));
    unspent.filter_map(|object| serde_json::from_str::<serde_json::Value>(&object.value).ok()?["amount"].as_u64()).sum()
}

/// Mints coins of 10 until one is on each shard; returns one per shard (shard order).
fn coins_on_each_shard(cluster: &mut Cluster) -> Vec<Object> {
    let mint = transaction("bank", &[], &[], (0..8).map(|i| coin(10, &format!("minted{i}"))).collect());
    assert!(cluster.run(&mint, 1), "minting failed");
    let minted = mint.transaction.own_outputs();
    (0..SHARDS).map(|s| minted.iter().find(|o| cluster.map().shard_of(&o.id).0 == s).unwrap().clone()).collect()
}

/// A transfer of `inputs` into one coin holding their total, whose output lands on `shard`.
fn transfer_to(cluster: &Cluster, inputs: &[&Object], shard: u32) -> Envelope {
    let total = inputs
        .iter()
        .map(|o| serde_json::from_str::<serde_json::Value>(&o.value).unwrap()["amount"].as_u64().unwrap())
        .sum();
    (0..)
        .map(|n| transaction("bank", inputs, &[], vec![coin(total, &format!("out{n}"))]))
        .find(|envelope| cluster.map().shard_of(&envelope.transaction.own_outputs()[0].id).0 == shard)
        .unwrap()
}

#[test]
fn a_vote_of_one_run_replayed_into_another_mints_nothing() {
    // Replay attack, phase 1 (Sonnino et al. §IV): a shard's prepared-accept of one run of
    // a transaction replayed into a later run, in which that shard voted abort, to make
    // another shard commit alone. Guard: `check_certificates` refuses a certificate whose
    // attempt is not the one decided (`certificate.attempt != attempt`); without it this
    // test fails (checked by removing it): the payee's shard commits, and 10 is minted.
    let mut cluster = Cluster::new();
    let coins = coins_on_each_shard(&mut cluster);
    let minted = active_total(&cluster);
    let transfer = transfer_to(&cluster, &[&coins[0], &coins[1]], 1);
    let tx = transfer.transaction.tx_id();
    // Run 1: shard 0 accepts, shard 1's checker says no; it aborts everywhere.
    let run_1_shard_0 = certificate(&cluster.prepare(0, &transfer, 1, true));
    let run_1_shard_1 = certificate(&cluster.prepare(1, &transfer, 1, false));
    let aborted = cluster.decide_all(&transfer, 1, &[run_1_shard_0.clone(), run_1_shard_1]);
    assert!(aborted.iter().all(|c| !*c));
    // Shard 0's coin is spent elsewhere meanwhile.
    let elsewhere = transfer_to(&cluster, &[&coins[0]], 0);
    assert!(cluster.run(&elsewhere, 1));
    // Run 2: shard 0 votes abort (its coin is gone), shard 1 accepts.
    let run_2_shard_0 = certificate(&cluster.prepare(0, &transfer, 2, true));
    assert!(!run_2_shard_0.accept);
    let run_2_shard_1 = certificate(&cluster.prepare(1, &transfer, 2, true));
    assert!(run_2_shard_1.accept);
    // The attack: shard 0's accept of run 1 stands in for its abort of run 2.
    let replayed =
        ShardRequest::Decide { tx, attempt: Attempt(2), certificates: vec![run_1_shard_0, run_2_shard_1.clone()] };
    for output in cluster.order(1, &replayed) {
        assert!(matches!(output, ShardOutput::Refused { .. }), "the replayed vote was taken: {output:?}");
    }
    assert_eq!(active_total(&cluster), minted, "value was minted");
    // The honest decision of run 2: abort, and every lock released.
    assert!(cluster.decide_all(&transfer, 2, &[run_2_shard_0, run_2_shard_1]).iter().all(|c| !*c));
    assert_eq!(cluster.status(&coins[1].id), Some(ObjectStatus::Active));
    assert_eq!(active_total(&cluster), minted, "value was minted");
}

#[test]
fn a_commit_replayed_after_its_outputs_were_spent_mints_nothing() {
    // Replay attack, phase 2 (Sonnino et al. §IV): the `decide(commit)` of a transaction
    // replayed to the shard that only creates its outputs, once they were spent: Chainspace
    // created them again. Two guards, each enough alone: a shard decides an attempt once and
    // answers a replayed decision from the record (`ShardApp::decide`, `decision` already
    // set), and an output id that exists is never created again (`apply_commit`,
    // `contains_key`). With both removed this test fails (checked): the spent coin is
    // active again, and 10 is minted. (The test this replaces did not spend the outputs
    // first, so it passed even without either guard.)
    let mut cluster = Cluster::new();
    let coins = coins_on_each_shard(&mut cluster);
    let minted = active_total(&cluster);
    // Shard 0's coin goes to a coin on shard 1, which takes part in S-BAC for the output only.
    let transfer = transfer_to(&cluster, &[&coins[0]], 1);
    let certificates = cluster.prepare_all(&transfer, 1, true);
    assert!(cluster.decide_all(&transfer, 1, &certificates).iter().all(|c| *c));
    let output = transfer.transaction.own_outputs().remove(0);
    // The output is spent.
    let onwards = transfer_to(&cluster, &[&output], 1);
    assert!(cluster.run(&onwards, 1));
    assert_eq!(active_total(&cluster), minted);
    let before: Vec<_> = (0..SHARDS as usize).map(|s| objects_and_records(cluster.apps[s][0].state())).collect();
    // The attack: the old commit, replayed to the output's shard.
    let replay = ShardRequest::Decide { tx: transfer.transaction.tx_id(), attempt: Attempt(1), certificates };
    for output in cluster.order(1, &replay) {
        assert!(matches!(output, ShardOutput::Decided { committed: true, .. }), "answered from the record: {output:?}");
    }
    assert_eq!(cluster.status(&output.id), Some(ObjectStatus::Inactive { consumed_by: onwards.transaction.tx_id() }));
    assert_eq!(active_total(&cluster), minted, "value was minted");
    let after: Vec<_> = (0..SHARDS as usize).map(|s| objects_and_records(cluster.apps[s][0].state())).collect();
    assert_eq!(before, after, "a replayed decision changed the state");
}

#[test]
fn a_new_attempt_while_the_previous_is_undecided_is_superseded() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let shard = cluster.map().shard_of(&objects[0].id).0;
    let spend = transaction("bank", &[&objects[0]], &[], vec!["x".into()]);
    assert!(cluster.prepare(shard, &spend, 1, true)[0].vote.is_accept());
    let second = cluster.prepare(shard, &spend, 2, true);
    assert_eq!(second[0].vote, VoteKind::Abort(AbortReason::Superseded));
}

#[test]
fn forged_verdicts_and_certificates_are_refused_and_change_nothing() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let shard = cluster.map().shard_of(&objects[0].id).0;
    let spend = transaction("bank", &[&objects[0]], &[], vec!["x".into()]);
    let tx = spend.transaction.tx_id();
    let before = objects_and_records(cluster.apps[shard as usize][0].state());
    // A verdict certified by the other shard's replicas.
    let foreign = cluster.verdict(1 - shard, &spend, true);
    let request = ShardRequest::Prepare {
        envelope: serde_json::to_string(&spend).unwrap(),
        attempt: Attempt(1),
        verdict: foreign,
    };
    assert!(cluster.order(shard, &request).iter().all(|o| matches!(o, ShardOutput::Refused { .. })));
    // One signature short.
    let mut thin = cluster.verdict(shard, &spend, true);
    thin.seals.pop();
    let request =
        ShardRequest::Prepare { envelope: serde_json::to_string(&spend).unwrap(), attempt: Attempt(1), verdict: thin };
    assert!(cluster.order(shard, &request).iter().all(|o| matches!(o, ShardOutput::Refused { .. })));
    assert_eq!(objects_and_records(cluster.apps[shard as usize][0].state()), before);
    // A prepared certificate with too few votes.
    let mut certificates = cluster.prepare_all(&spend, 1, true);
    certificates[0].seals.truncate(2);
    let decide = ShardRequest::Decide { tx, attempt: Attempt(1), certificates };
    assert!(cluster.order(shard, &decide).iter().all(|o| matches!(o, ShardOutput::Refused { .. })));
    // An undecodable request.
    let garbage = Request::new(vec![0xff; 7]);
    assert!(matches!(cluster.apps[0][0].execute(Height(1), &garbage)[0], ShardOutput::Refused { .. }));
}

#[test]
fn a_snapshot_restores_the_same_state() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let spend = transaction("bank", &[&objects[0]], &[&objects[1]], vec!["x".into()]);
    assert!(cluster.run(&spend, 1));
    let (head, body) = (cluster.apps[0][0].state_head(Height(1)), cluster.apps[0][0].state_body().unwrap());
    let fresh = || ShardApp::new(ShardId(0), cluster.committees.clone(), cluster.keys[0][0].clone(), Limits::default());
    let mut restored = fresh();
    restored.restore(&head, &body).unwrap();
    assert_eq!(restored.state(), cluster.apps[0][0].state());
    // The head is what a checkpoint signs: a body it does not vouch for changes nothing.
    let other_body = cluster.apps[1][0].state_body().unwrap();
    assert_ne!(other_body, body);
    let mut refused = fresh();
    let error = refused.restore(&head, &other_body).unwrap_err();
    assert!(error.contains("do not match the digest"), "{error}");
    assert!(refused.restore(&head, &body[..body.len() - 1]).is_err(), "a truncated body");
    assert_eq!(refused.state(), fresh().state());
}

#[test]
fn the_vote_collector_makes_the_certificates_of_a_decision() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let spend = transaction("bank", &[&objects[0], &objects[1]], &[], vec!["x".into()]);
    let (tx, concerned) = (spend.transaction.tx_id(), cluster.map().concerned_shards(&spend.transaction));
    let mut collector = VoteCollector::new(cluster.committees.clone(), 16);
    let mut votes = Vec::new();
    for shard in &concerned {
        votes.extend(cluster.prepare(shard.0, &spend, 1, true));
    }
    let mut complete = None;
    for vote in votes {
        if let Some(certificates) = collector.add(vote).unwrap() {
            complete = Some(certificates);
        }
    }
    assert!(complete.is_none(), "certificates before the concerned shards are known");
    let certificates = collector.expect(tx, Attempt(1), spend.digest(), concerned.into_iter().collect()).unwrap();
    assert!(cluster.decide_all(&spend, 1, &certificates).iter().all(|c| *c));
}

#[test]
fn one_shards_abort_certificate_decides_without_waiting_for_the_others() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let stale = Object { value: "stale".into(), ..objects[1].clone() };
    let spend = transaction("bank", &[&objects[0], &stale], &[], vec!["x".into()]);
    let (tx, concerned) = (spend.transaction.tx_id(), cluster.map().concerned_shards(&spend.transaction));
    let aborting = cluster.map().shard_of(&stale.id);
    let mut collector = VoteCollector::new(cluster.committees.clone(), 16);
    assert!(collector.expect(tx, Attempt(1), spend.digest(), concerned.iter().copied().collect()).is_none());
    let mut certificates = None;
    for vote in cluster.prepare(aborting.0, &spend, 1, true) {
        certificates = collector.add(vote).unwrap().or(certificates);
    }
    let certificates = certificates.expect("an abort certificate from one shard");
    assert_eq!(certificates.len(), 1);
    let decide = ShardRequest::Decide { tx, attempt: Attempt(1), certificates };
    for output in cluster.order(aborting.0, &decide) {
        assert!(matches!(output, ShardOutput::Decided { committed: false, .. }), "{output:?}");
    }
}

#[test]
fn the_verdict_collector_certifies_f_plus_one_matching_verdicts() {
    let cluster = Cluster::new();
    let committee = cluster.committees[0].clone();
    let tx: TxId = "ef".repeat(32).parse().unwrap();
    let envelope = [3; 32];
    let verdict = |replica: u32, success: bool| {
        Verdict::sign(&committee, &cluster.keys[0][replica as usize], tx, envelope, success.into())
    };
    let mut collector = VerdictCollector::new(committee.clone(), 16);
    assert!(collector.add(verdict(0, true)).unwrap().is_none());
    assert!(collector.add(verdict(1, false)).unwrap().is_none(), "verdicts that differ do not add up");
    let forged = Verdict { replica: ReplicaId(3), ..verdict(2, true) };
    assert!(collector.add(forged).is_err(), "a verdict signed by another replica");
    let certificate = collector.add(verdict(2, true)).unwrap().unwrap();
    assert!(certificate.answer == CheckerAnswer::Valid && certificate.verify(&committee).is_ok());
    // Verdicts still arriving (late ones, or all again for a later attempt of the same
    // envelope) get the certificate again, without their signatures being checked.
    assert_eq!(collector.add(verdict(3, true)).unwrap(), Some(certificate.clone()));
    let late_forgery = Verdict { replica: ReplicaId(1), ..verdict(3, true) };
    assert_eq!(collector.add(late_forgery).unwrap(), Some(certificate));
    let other_envelope = Verdict { envelope: [4; 32], replica: ReplicaId(3), ..verdict(2, true) };
    assert!(collector.add(other_envelope).is_err(), "verdicts on other envelopes are still checked");
}

#[test]
fn no_verdict_aborts_its_own_attempt_only_and_the_next_attempt_can_commit() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let shard = cluster.map().shard_of(&objects[0].id).0;
    // Its output on its input's shard: decided there alone.
    let spend = (0..)
        .map(|n| transaction("bank", &[&objects[0]], &[], vec![format!("x{n}")]))
        .find(|spend| cluster.map().concerned_shards(&spend.transaction).len() == 1)
        .unwrap();
    let prepare = |attempt: u32, verdict: VerdictCertificate| ShardRequest::Prepare {
        envelope: serde_json::to_string(&spend).unwrap(),
        attempt: Attempt(attempt),
        verdict,
    };
    let no_verdict = cluster.certify(shard, &spend, CheckerAnswer::Unavailable(Attempt(1)));
    let outputs = cluster.order(shard, &prepare(1, no_verdict.clone()));
    let aborted = |output: &ShardOutput| matches!(output, ShardOutput::Vote { vote, .. } if vote.vote == VoteKind::Abort(AbortReason::CheckerError));
    assert!(outputs.iter().filter(|output| matches!(output, ShardOutput::Vote { .. })).all(aborted), "{outputs:?}");
    // Replayed into the next attempt (by a faulty submitter), it is refused: it says nothing of it.
    let replayed = cluster.order(shard, &prepare(2, no_verdict));
    assert!(replayed.iter().all(|output| matches!(output, ShardOutput::Refused { .. })), "{replayed:?}");
    // The checker is back: attempt 2 is voted on its own verdict.
    let valid = cluster.certify(shard, &spend, CheckerAnswer::Valid);
    let outputs = cluster.order(shard, &prepare(2, valid));
    let accepted = |output: &ShardOutput| matches!(output, ShardOutput::Vote { vote, .. } if vote.vote.is_accept());
    assert!(outputs.iter().any(accepted), "{outputs:?}");
}

#[test]
fn the_verdict_collector_gathers_a_later_verdict_after_a_certified_no_verdict() {
    let cluster = Cluster::new();
    let committee = cluster.committees[0].clone();
    let tx: TxId = "ab".repeat(32).parse().unwrap();
    let verdict = |replica: u32, answer: CheckerAnswer| {
        Verdict::sign(&committee, &cluster.keys[0][replica as usize], tx, [5; 32], answer)
    };
    let mut collector = VerdictCollector::new(committee.clone(), 16);
    let down = CheckerAnswer::Unavailable(Attempt(1));
    // A valid verdict gathered meanwhile, then "no verdict" from 2f+1 (f+1 is not enough:
    // f faulty replicas and one honest one with a slow checker must not abort).
    assert!(collector.add(verdict(3, CheckerAnswer::Valid)).unwrap().is_none());
    assert!(collector.add(verdict(0, down)).unwrap().is_none());
    assert!(collector.add(verdict(1, down)).unwrap().is_none(), "f+1 \"no verdict\" do not certify it");
    let certificate = collector.add(verdict(2, down)).unwrap().unwrap();
    assert_eq!(certificate.answer, down);
    assert!(certificate.verify(&committee).is_ok());
    // The valid verdict stayed; replica 0's verdict for attempt 2 replaces its "no verdict",
    // and with replica 3's makes the certificate of attempt 2.
    assert_eq!(collector.add(verdict(1, down)).unwrap().map(|c| c.answer), Some(down), "the same answer: certified");
    let certificate = collector.add(verdict(0, CheckerAnswer::Valid)).unwrap().unwrap();
    assert_eq!(certificate.answer, CheckerAnswer::Valid);
    assert!(certificate.verify(&committee).is_ok());
    // A verdict (valid or not) is never replaced: a replica's first one stands.
    let mut collector = VerdictCollector::new(committee.clone(), 16);
    assert!(collector.add(verdict(0, CheckerAnswer::Valid)).unwrap().is_none());
    assert!(collector.add(verdict(0, CheckerAnswer::Invalid)).unwrap().is_none());
    assert!(collector.add(verdict(1, CheckerAnswer::Invalid)).unwrap().is_none(), "replica 0's valid verdict stands");
}

#[test]
fn a_certificate_forgotten_by_the_verdict_collector_is_checked_again() {
    let cluster = Cluster::new();
    let committee = cluster.committees[0].clone();
    let verdict = |tx: TxId, replica: u32| {
        Verdict::sign(&committee, &cluster.keys[0][replica as usize], tx, [3; 32], CheckerAnswer::Valid)
    };
    let (first, second): (TxId, TxId) = ("01".repeat(32).parse().unwrap(), "02".repeat(32).parse().unwrap());
    let mut collector = VerdictCollector::new(committee.clone(), 1);
    for tx in [first, second] {
        assert!(collector.add(verdict(tx, 0)).unwrap().is_none());
        assert!(collector.add(verdict(tx, 1)).unwrap().is_some());
    }
    // Room for one certificate: the first one's is gone, so a forged verdict on it is checked.
    let forged = Verdict { replica: ReplicaId(2), ..verdict(first, 3) };
    assert!(collector.add(forged).is_err());
    assert!(collector.add(Verdict { replica: ReplicaId(2), ..verdict(second, 3) }).unwrap().is_some());
}

#[test]
fn shards_shown_different_stores_of_one_transaction_abort_it_and_release_their_locks() {
    // A client shows each shard the true value of its own object and an inflated value of
    // the other's: each checker sees a transaction that adds up, each value check passes.
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let honest = transaction("bank", &[&objects[0], &objects[1]], &[], vec!["merged".into()]);
    let lie_to = |shard: usize| {
        let mut envelope = honest.clone();
        envelope.store.insert(objects[1 - shard].id, "inflated".into());
        envelope
    };
    let shard_of = |object: &Object| ShardMap::new(SHARDS).unwrap().shard_of(&object.id).0;
    let (to_0, to_1) = (lie_to(0), lie_to(1));
    let votes_0 = cluster.prepare(shard_of(&objects[0]), &to_0, 1, true);
    let votes_1 = cluster.prepare(shard_of(&objects[1]), &to_1, 1, true);
    assert!(votes_0[0].vote.is_accept() && votes_1[0].vote.is_accept(), "each shard saw its own object right");
    assert_ne!(votes_0[0].envelope, votes_1[0].envelope, "the votes name different envelopes");
    // Each shard's gathering finds the other shard's certificate on another envelope: proof
    // that no shard can ever gather a commit, so it decides abort and lets go of its locks.
    let tx = honest.transaction.tx_id();
    let concerned: Vec<ShardId> = cluster.map().concerned_shards(&honest.transaction).into_iter().collect();
    for (shard, own, other, envelope) in
        [(shard_of(&objects[0]), &votes_0, &votes_1, &to_0), (shard_of(&objects[1]), &votes_1, &votes_0, &to_1)]
    {
        let mut collector = VoteCollector::new(cluster.committees.clone(), 16);
        assert!(collector.expect(tx, Attempt(1), envelope.digest(), concerned.clone()).is_none());
        let mut complete = None;
        for vote in own.iter().chain(other).cloned() {
            complete = complete.or(collector.add(vote).unwrap());
        }
        let certificates = complete.expect("the other envelope's certificate decides");
        assert!(certificates.iter().all(|c| c.envelope != envelope.digest()), "{certificates:?}");
        let decide = ShardRequest::Decide { tx, attempt: Attempt(1), certificates };
        for output in cluster.order(shard, &decide) {
            assert!(matches!(output, ShardOutput::Decided { committed: false, .. }), "{output:?}");
        }
    }
    for object in &objects[..2] {
        assert_eq!(cluster.status(&object.id), Some(ObjectStatus::Active), "a lock was left");
    }
    // And a verdict on one store cannot prepare another.
    let stale_verdict = cluster.verdict(shard_of(&objects[0]), &to_0, true);
    let request = ShardRequest::Prepare {
        envelope: serde_json::to_string(&honest).unwrap(),
        attempt: Attempt(2),
        verdict: stale_verdict,
    };
    assert!(cluster.order(shard_of(&objects[0]), &request).iter().all(|o| matches!(o, ShardOutput::Refused { .. })));
}

#[test]
fn attempts_count_from_one_and_may_not_run_far_ahead() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let shard = cluster.map().shard_of(&objects[0].id).0;
    let spend = transaction("bank", &[&objects[0]], &[], vec!["x".into()]);
    let request = ShardRequest::Prepare {
        envelope: serde_json::to_string(&spend).unwrap(),
        attempt: Attempt(0),
        verdict: cluster.verdict(shard, &spend, true),
    };
    let outputs = cluster.order(shard, &request);
    assert!(outputs.iter().all(|o| matches!(o, ShardOutput::Refused { .. })), "attempt 0: {outputs:?}");
    // Far ahead: voted down without locks, and it does not count as the latest.
    let far = cluster.prepare(shard, &spend, ATTEMPTS_AHEAD_MAX + 1, true);
    assert_eq!(far[0].vote, VoteKind::Abort(AbortReason::TooFarAhead));
    assert_eq!(cluster.status(&objects[0].id), Some(ObjectStatus::Active));
    assert!(cluster.prepare(shard, &spend, 1, true)[0].vote.is_accept());
}

#[test]
fn a_shard_that_missed_attempts_votes_on_a_later_one_and_an_older_one_is_superseded() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "b");
    let shard = cluster.map().shard_of(&objects[0].id).0;
    let spend = transaction("bank", &[&objects[0]], &[], vec!["y".into()]);
    // Attempts 1 and 2 aborted elsewhere before this shard prepared them: attempt 3 runs here
    // (and aborts: the checker says no).
    let certificates = cluster.prepare_all(&spend, 3, false);
    assert!(certificates.iter().all(|certificate| certificate.attempt == Attempt(3) && !certificate.accept));
    assert!(cluster.decide_all(&spend, 3, &certificates).iter().all(|committed| !committed));
    // A late attempt 2 cannot lock anything any more.
    let second = cluster.prepare(shard, &spend, 2, true);
    assert_eq!(second[0].vote, VoteKind::Abort(AbortReason::Superseded));
    assert_eq!(cluster.status(&objects[0].id), Some(ObjectStatus::Active));
}

#[test]
fn votes_for_made_up_attempts_cannot_evict_an_expected_gathering() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let spend = transaction("bank", &[&objects[0], &objects[1]], &[], vec!["x".into()]);
    let (tx, concerned) = (spend.transaction.tx_id(), cluster.map().concerned_shards(&spend.transaction));
    let mut collector = VoteCollector::new(cluster.committees.clone(), 4);
    assert!(collector.expect(tx, Attempt(1), spend.digest(), concerned.iter().copied().collect()).is_none());
    // One replica signs votes for attempts nobody prepared, more than the collector holds.
    let liar = &cluster.keys[1][3];
    for attempt in 1..=20 {
        let made_up = TxId([attempt as u8; 32]);
        let vote = VoteKind::Accept;
        let body = VoteBody { shard: ShardId(1), tx: made_up, attempt: Attempt(attempt), envelope: [0; 32], vote };
        let signed = body.sign(&cluster.committees[1], liar);
        assert!(collector.add(signed).unwrap().is_none());
    }
    let mut certificates = None;
    for shard in &concerned {
        for vote in cluster.prepare(shard.0, &spend, 1, true) {
            certificates = collector.add(vote).unwrap().or(certificates);
        }
    }
    assert!(certificates.is_some(), "the expected gathering was evicted");
}

#[test]
fn votes_after_the_certificates_are_dropped_unchecked_and_a_gathering_again_gets_the_certificates() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let spend = transaction("bank", &[&objects[0], &objects[1]], &[], vec!["x".into()]);
    let (tx, concerned) = (spend.transaction.tx_id(), cluster.map().concerned_shards(&spend.transaction));
    let concerned: Vec<ShardId> = concerned.into_iter().collect();
    let mut collector = VoteCollector::new(cluster.committees.clone(), 16);
    assert!(collector.expect(tx, Attempt(1), spend.digest(), concerned.clone()).is_none());
    let votes: Vec<Vec<SignedVote>> = concerned.iter().map(|shard| cluster.prepare(shard.0, &spend, 1, true)).collect();
    let mut certificates = None;
    for vote in votes.iter().flat_map(|of_shard| of_shard.iter().take(3)) {
        certificates = collector.add(vote.clone()).unwrap().or(certificates);
    }
    let certificates = certificates.expect("2f+1 votes of each shard make the certificates");
    // The fourth vote of a shard comes late, and so does a forgery: neither is checked nor
    // opens a gathering that would wait for eviction.
    let late = votes[0][3].clone();
    let forged = SignedVote { replica: ReplicaId(2), ..votes[1][3].clone() };
    assert_eq!(collector.add(late), Ok(None));
    assert_eq!(collector.add(forged), Ok(None), "dropped unchecked: the attempt is certified");
    // Gathering again (a pass-on) gives the certificates at once, to submit the `Decide` again.
    assert_eq!(collector.expect(tx, Attempt(1), spend.digest(), concerned), Some(certificates));
}

#[test]
fn a_certified_attempt_forgotten_by_the_vote_collector_has_its_votes_checked_again() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let spends: Vec<_> =
        (0..2).map(|n| transaction("bank", &[&objects[0], &objects[1]], &[], vec![format!("x{n}")])).collect();
    // Room for one certified attempt: the second one's certificates push out the first's.
    let mut collector = VoteCollector::new(cluster.committees.clone(), 1);
    let mut late = Vec::new();
    for spend in &spends {
        let tx = spend.transaction.tx_id();
        let concerned: Vec<ShardId> = cluster.map().concerned_shards(&spend.transaction).into_iter().collect();
        assert!(collector.expect(tx, Attempt(1), spend.digest(), concerned.clone()).is_none());
        let votes: Vec<Vec<SignedVote>> =
            concerned.iter().map(|shard| cluster.prepare(shard.0, spend, 1, true)).collect();
        let mut certified = false;
        for vote in votes.iter().flat_map(|of_shard| of_shard.iter().take(3)) {
            certified |= collector.add(vote.clone()).unwrap().is_some();
        }
        assert!(certified);
        late.push(SignedVote { replica: ReplicaId(2), ..votes[0][3].clone() });
    }
    assert!(collector.add(late[0].clone()).is_err(), "forgotten: a forged late vote is checked and refused");
    assert_eq!(collector.add(late[1].clone()), Ok(None), "still certified: dropped unchecked");
}

#[test]
fn an_output_reserved_by_a_pending_attempt_cannot_be_created_by_another() {
    // Two transactions whose (input-less) dependency creates the same object: only one may.
    let mut cluster = Cluster::new();
    let dependency = transaction("dump", &[], &[], vec!["shared".into()]).transaction;
    let with_dependency = |tag: &str| {
        let mut envelope = transaction("dump", &[], &[], vec![tag.to_string()]);
        envelope.transaction.dependencies = vec![dependency.clone()];
        envelope
    };
    let (first, second) = (with_dependency("first"), with_dependency("second"));
    let shared = dependency.own_outputs()[0].id;
    let shard = cluster.map().shard_of(&shared).0;
    assert!(cluster.prepare(shard, &first, 1, true)[0].vote.is_accept());
    assert_eq!(cluster.prepare(shard, &second, 1, true)[0].vote, VoteKind::Abort(AbortReason::OutputExists));
    assert!(cluster.run(&first, 1));
    assert_eq!(cluster.status(&shared), Some(ObjectStatus::Active));
}

/// The state without the count and digest of executed requests, which every request moves.
fn objects_and_records(state: &ShardState) -> ShardState {
    ShardState { executed: 0, log_digest: Default::default(), ..state.clone() }
}

#[test]
fn a_transaction_of_one_shard_is_decided_as_it_is_prepared() {
    let mut cluster = Cluster::new();
    let objects = objects_on_each_shard(&mut cluster, "bank", "a");
    let shard = cluster.map().shard_of(&objects[0].id).0;
    // A spend of objects[0] whose output lands on the same shard: it concerns that shard alone.
    let spend = (0..)
        .map(|n| transaction("bank", &[&objects[0]], &[], vec![format!("spent{n}")]))
        .find(|envelope| cluster.map().concerned_shards(&envelope.transaction).len() == 1)
        .unwrap();
    let outputs = cluster.order(
        shard,
        &ShardRequest::Prepare {
            envelope: serde_json::to_string(&spend).unwrap(),
            attempt: Attempt(1),
            verdict: cluster.verdict(shard, &spend, true),
        },
    );
    let decided = outputs.iter().filter(|output| matches!(output, ShardOutput::Decided { committed: true, .. }));
    assert_eq!(decided.count(), outputs.len() / 2, "every replica decided commit with its vote: {outputs:?}");
    // Consumed and created at once: no lock waits for a decision.
    let tx = spend.transaction.tx_id();
    assert_eq!(cluster.status(&objects[0].id), Some(ObjectStatus::Inactive { consumed_by: tx }));
    let created = spend.transaction.own_outputs().remove(0);
    assert_eq!(cluster.status(&created.id), Some(ObjectStatus::Active));
    // A Decide that still comes (from a replica of an older version, or a client) is answered from the record.
    let certificates = vec![certificate(&cluster.prepare(shard, &spend, 1, true))];
    assert!(cluster.decide_all(&spend, 1, &certificates).iter().all(|committed| *committed));
}
