//! Two shards of four real `shardspace node` processes, with the bank contract's
//! Python checker and the other example contracts' Rust checkers (`shardspace
//! checker`), driven straight through the replicas' request interface
//! (`ClusterClient`, which believes f+1 matching signed answers per shard):
//! accounts opened on both shards, a cross-shard transfer committed, a double
//! spend raced through both shards (exactly one commits, the loser's locks are
//! released), a resubmission answered from the record, a cross-shard `dump`,
//! and bad input refused or aborted with its reason while nothing changes. Then a
//! cross-contract call, `hello.greet_counted` counting with `addition.increment`
//! as its dependency, with every contract served by the Rust checker and then by
//! the Python one: committed, and aborted when either checker rejects. And a replica
//! paused while its shard commits: resumed, it drops what buffered meanwhile and catches up.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use shardspace_checker::TransactionBuilder;
use shardspace_contract_addition as addition;
use shardspace_contract_bank as bank;
use shardspace_contract_hello as hello;
use shardspace_core::sbac::{ATTEMPTS_AHEAD_MAX, AbortReason, AnswerBody, Attempt, ObjectStatus, ObjectView, VoteKind};
use shardspace_core::{Envelope, Object, ShardId};
use shardspace_node::client::{ClientReply, ClientRequest, RejectKind};
use shardspace_node::cluster_client::{ClusterClient, ClusterError, Outcome};
use shardspace_node::config::API_CLIENT;
use shardspace_testkit::cluster::{Checkers, DEADLINE, LocalCluster, Options};
use shardspace_testkit::processes::wait_until;

const SHARDS: u32 = 2;
const REPLICAS: u32 = 4;

/// The local cluster (no API: the test talks to the replicas' request interface).
struct Cluster {
    local: LocalCluster,
    client: ClusterClient,
}

impl Cluster {
    /// What one replica itself says about an object (signed, and checked against its shard).
    async fn replica_view(&self, shard: u32, replica: u32, object: &Object) -> Option<ObjectView> {
        let file = &self.local.file;
        let mut client = self.local.doors.connect(shard as usize, replica as usize).await.ok()?;
        let answer = client.read(ClientRequest::Object(object.id)).await.ok()?;
        answer.verify(&file.committees().unwrap()[shard as usize]).unwrap();
        match answer.body {
            AnswerBody::Object { object, .. } => object,
            AnswerBody::Transaction { .. } => panic!("asked for an object, told about a transaction"),
        }
    }
}

fn start_cluster() -> Cluster {
    let local = LocalCluster::start(Path::new(env!("CARGO_BIN_EXE_shardspace")), SHARDS, REPLICAS, false);
    let credentials = local.file.client_credentials(local.dir.path(), API_CLIENT).unwrap();
    let client = ClusterClient::new(&local.file, credentials, DEADLINE).unwrap();
    Cluster { local, client }
}

/// An account of `balance` owned by a fresh key, whose object lands on `shard`.
fn account_on(cluster: &Cluster, shard: ShardId, balance: i64) -> (SigningKey, Envelope, Object) {
    loop {
        let key = SigningKey::from_bytes(&rand::random());
        let envelope = bank::create_account(&bank::owner_of(&key), balance).unwrap();
        let output = envelope.transaction.own_outputs().remove(0);
        if cluster.client.map().shard_of(&output.id) == shard {
            return (key, envelope, output);
        }
    }
}

async fn submit(cluster: &Cluster, envelope: &Envelope, attempt: u32) -> Outcome {
    cluster.client.submit(envelope, Attempt(attempt)).await.unwrap()
}

/// The object once f+1 replicas of its shard sign a view for which `holds` is true. A read
/// right after an outcome may still come from replicas that lag behind the ones that
/// decided (f+1 honest replicas held that state), so it is asked again until the deadline.
async fn settled(cluster: &Cluster, object: &Object, holds: impl Fn(&ObjectView) -> bool) -> ObjectView {
    let found = std::sync::Mutex::new(None);
    wait_until(&format!("{} settles", object.id), DEADLINE, || async {
        let view = cluster.client.object(object.id).await.unwrap().filter(|view| holds(view));
        let done = view.is_some();
        *found.lock().unwrap() = view;
        done
    })
    .await;
    found.into_inner().unwrap().unwrap()
}

fn active(view: &ObjectView) -> bool {
    view.status == ObjectStatus::Active
}

fn balance(view: &ObjectView) -> i64 {
    bank::Account::parse(&view.value).unwrap().balance
}

/// Every concerned shard decided abort, and one voted abort for one of `reasons`.
fn assert_aborted_with(outcome: &Outcome, reasons: &[AbortReason]) {
    assert!(!outcome.committed(), "{outcome:?}");
    assert!(outcome.shards.values().all(|view| view.decision == Some(false)), "{outcome:?}");
    let voted = outcome.shards.values().any(|view| reasons.iter().any(|r| view.vote == VoteKind::Abort(*r)));
    assert!(voted, "no shard voted abort for {reasons:?}: {outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_of_real_processes_commit_across_shards_and_let_one_double_spend_through() {
    let mut cluster = start_cluster();
    let (zero, one) = (ShardId(0), ShardId(1));

    // Accounts on both shards, opened concurrently (each a single-shard transaction).
    let (key_a, open_a, a) = account_on(&cluster, zero, 100);
    let (_, open_b, b) = account_on(&cluster, one, 100);
    let (key_c, open_c, c) = account_on(&cluster, zero, 100);
    let (_, open_d, d) = account_on(&cluster, one, 100);
    let (_, open_e, e) = account_on(&cluster, one, 100);
    let opened = futures::future::join_all(
        [&open_a, &open_b, &open_c, &open_d, &open_e].map(|envelope| cluster.client.submit(envelope, Attempt(1))),
    )
    .await;
    for outcome in opened {
        let outcome = outcome.unwrap();
        assert!(outcome.committed(), "an account did not open: {outcome:?}");
        assert_eq!(outcome.shards.len(), 1);
    }
    settled(&cluster, &a, active).await;

    // A cross-shard transfer: A (shard 0) pays B (shard 1).
    let transfer = bank::transfer(&a, &b, 30, &key_a).unwrap();
    let outcome = submit(&cluster, &transfer, 1).await;
    assert!(outcome.committed(), "{outcome:?}");
    assert!(outcome.shards.contains_key(&zero) && outcome.shards.contains_key(&one), "{outcome:?}");
    let tx = transfer.transaction.tx_id();
    for consumed in [&a, &b] {
        settled(&cluster, consumed, |view| view.status == ObjectStatus::Inactive { consumed_by: tx }).await;
    }
    let outputs = transfer.transaction.own_outputs();
    let (new_a, new_b) = (settled(&cluster, &outputs[0], active).await, settled(&cluster, &outputs[1], active).await);
    assert_eq!((balance(&new_a), balance(&new_b)), (70, 130));
    assert_eq!(new_b.created_by, tx);

    // Resubmitted, it gets its recorded outcome; nothing runs again.
    assert_eq!(submit(&cluster, &transfer, 1).await.shards, outcome.shards);

    // A double spend: C pays D and, at the same time, E. Exactly one commits.
    let to_d = bank::transfer(&c, &d, 10, &key_c).unwrap();
    let to_e = bank::transfer(&c, &e, 20, &key_c).unwrap();
    let (first, second) = tokio::join!(submit(&cluster, &to_d, 1), submit(&cluster, &to_e, 1));
    assert_ne!(first.committed(), second.committed(), "not exactly one commit: {first:?} {second:?}");
    let (winner, loser, loser_payee) =
        if first.committed() { (&to_d, (&to_e, second), &e) } else { (&to_e, (&to_d, first), &d) };
    // Locked while the winner was pending, or spent if it was decided first.
    assert_aborted_with(&loser.1, &[AbortReason::InputLocked, AbortReason::InputInactive]);
    let consumed = ObjectStatus::Inactive { consumed_by: winner.transaction.tx_id() };
    settled(&cluster, &c, |view| view.status == consumed).await;
    // The loser's lock on its payee is released (I6), and its value unchanged.
    let payee = settled(&cluster, loser_payee, active).await;
    assert_eq!(balance(&payee), 100);
    // Run again as a new attempt, the loser aborts for good: C is spent.
    let again = submit(&cluster, loser.0, 2).await;
    assert_aborted_with(&again, &[AbortReason::InputInactive]);

    // The operator's read model in SQLite follows the shard's state.
    let database = cluster.local.dir.path().join("data/shard-0-replica-0/replica.sqlite");
    let row = |id: String| {
        let sqlite = rusqlite::Connection::open(&database).unwrap();
        let sql = "SELECT status, consumed_by FROM objects_now WHERE id = ?1";
        sqlite.query_row(sql, [id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))).ok()
    };
    wait_until("the read model shows C spent", DEADLINE, || {
        let expected = Some(("inactive".to_string(), Some(winner.transaction.tx_id().to_hex())));
        let found = row(c.id.to_hex());
        async move { found == expected }
    })
    .await;

    // A cross-shard `dump` through the Rust checker while one replica of shard 1 is down;
    // restarted from its disk, that replica catches up and answers like the others.
    cluster.local.kill_replica(1, 3);
    let dump = (0..)
        .map(|nonce: i64| {
            let builder = TransactionBuilder::new("dump", "anything").parameter(nonce);
            builder.output("\"one\"").output("\"two\"").build().unwrap()
        })
        .find(|dump| cluster.client.map().concerned_shards(&dump.transaction).len() == 2)
        .unwrap();
    let outcome = submit(&cluster, &dump, 1).await;
    assert!(outcome.committed() && outcome.shards.len() == 2, "{outcome:?}");
    for output in dump.transaction.own_outputs() {
        assert_eq!(settled(&cluster, &output, active).await.value, output.value);
    }
    cluster.local.start_replica(1, 3);
    let on_shard_one = dump.transaction.own_outputs().into_iter().find(|o| cluster.client.map().shard_of(&o.id) == one);
    let on_shard_one = on_shard_one.unwrap();
    wait_until("the restarted replica knows the dump's output", DEADLINE, || {
        let view = cluster.replica_view(1, 3, &on_shard_one);
        async move { view.await.is_some_and(|view| active(&view)) }
    })
    .await;

    // A client that tells shard 0 only: its replicas pass the envelope on to shard 1
    // after a while, and the transaction is decided by both shards.
    let told_one = (1_000..)
        .map(|nonce: i64| TransactionBuilder::new("dump", "anything").parameter(nonce).output("\"x\"").output("\"y\""))
        .map(|builder| builder.build().unwrap())
        .find(|dump| cluster.client.map().concerned_shards(&dump.transaction).len() == 2)
        .unwrap();
    let json = serde_json::to_string(&told_one).unwrap();
    let mut connections = Vec::new();
    for replica in 0..cluster.local.file.shards[0].replicas.len() {
        let mut client = cluster.local.doors.connect(0, replica).await.unwrap();
        client.send(&ClientRequest::Envelope { envelope: json.clone(), attempt: Attempt(1) }).await.unwrap();
        connections.push(client);
    }
    let tx = told_one.transaction.tx_id();
    for shard in [zero, one] {
        wait_until("both shards decide what one was told", DEADLINE, || {
            let view = cluster.client.transaction(shard, tx);
            async move { view.await.ok().flatten().is_some_and(|view| view.committed.is_some()) }
        })
        .await;
    }

    // Bad input: refused before ordering, or aborted with its reason; nothing changes.
    let mut replica = cluster.local.doors.connect(0, 0).await.unwrap();
    replica.send(&ClientRequest::Envelope { envelope: "{\"transaction\":".into(), attempt: Attempt(1) }).await.unwrap();
    match replica.receive().await.unwrap() {
        Some(ClientReply::Rejected { kind, .. }) => assert_eq!(kind, RejectKind::Invalid("malformed_json")),
        other => panic!("a malformed envelope got {other:?}"),
    }
    let unknown = TransactionBuilder::new("nosuch", "call").input(&outputs[0]).build().unwrap();
    match cluster.client.submit(&unknown, Attempt(1)).await {
        Err(ClusterError::Rejected { kind, .. }) => assert_eq!(kind, RejectKind::UnknownContract),
        other => panic!("an unknown contract got {other:?}"),
    }
    let far_ahead = Attempt(ATTEMPTS_AHEAD_MAX + 1);
    let skipped = cluster.client.submit(&bank::create_account(&bank::owner_of(&key_a), 5).unwrap(), far_ahead).await;
    assert!(
        matches!(&skipped, Err(ClusterError::Rejected { kind, .. }) if *kind == RejectKind::BadAttempt),
        "{skipped:?}"
    );
    // A store that inflates the payer's balance: the checker accepts the values it is
    // shown, and the payer's shard votes abort on the stored value.
    let payer = Object { id: outputs[0].id, value: new_a.value.replace("\"balance\":70", "\"balance\":900") };
    let key_new_a = key_a;
    let inflated = bank::transfer(&payer, &outputs[1], 500, &key_new_a).unwrap();
    assert_aborted_with(&submit(&cluster, &inflated, 1).await, &[AbortReason::ValueMismatch]);
    for (kept, expected) in [(&outputs[0], 70), (&outputs[1], 130)] {
        assert_eq!(balance(&settled(&cluster, kept, active).await), expected);
    }
}

/// A replica that lost its disk catches up from a checkpoint: a peer serves the records
/// as they were at that height, read from the versions its store keeps, and the wiped
/// replica checks them against the signed head before it takes them (docs/protocol.md
/// §7). Its peers restart on the way: they take up their saved state without replaying
/// the log, and keep no queue of the messages it missed nor any block below their stable
/// checkpoint, so records served are its only way back; they serve them at once, from
/// their disks, with no checkpoint made since the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_disk_catches_up_from_records_its_peers_serve() {
    let options = shardspace_testkit::cluster::Options {
        checkpoint_interval: Some(4),
        ..shardspace_testkit::cluster::Options::test(1, REPLICAS, false)
    };
    let local = LocalCluster::with(Path::new(env!("CARGO_BIN_EXE_shardspace")), &options).unwrap();
    let credentials = local.file.client_credentials(local.dir.path(), API_CLIENT).unwrap();
    let client = ClusterClient::new(&local.file, credentials, DEADLINE).unwrap();
    let mut cluster = Cluster { local, client };
    cluster.local.wipe_replica(0, 3).unwrap();
    let dumps: Vec<Envelope> = (0..24)
        .map(|nonce: i64| TransactionBuilder::new("dump", "anything").parameter(nonce).output("\"kept\"").build())
        .collect::<Result<_, _>>()
        .unwrap();
    for dump in &dumps[..12] {
        assert!(submit(&cluster, dump, 1).await.committed());
    }
    for replica in 0..3 {
        cluster.local.kill_replica(0, replica);
    }
    for replica in 0..3 {
        cluster.local.start_replica(0, replica);
    }
    cluster.local.start_replica(0, 3);
    for dump in &dumps[12..] {
        assert!(submit(&cluster, dump, 1).await.committed());
    }
    for dump in [&dumps[0], &dumps[23]] {
        let output = dump.transaction.own_outputs().remove(0);
        wait_until("the wiped replica holds the records of the first and last dump", DEADLINE, || {
            let view = cluster.replica_view(0, 3, &output);
            async move { view.await.is_some_and(|view| active(&view)) }
        })
        .await;
    }
    // It goes on from there like the others: with one of them down, it is needed for a quorum.
    cluster.local.kill_replica(0, 0);
    let after = TransactionBuilder::new("dump", "anything").parameter(99).output("\"after\"").build().unwrap();
    assert!(submit(&cluster, &after, 1).await.committed());
    let output = after.transaction.own_outputs().remove(0);
    wait_until("the caught-up replica decides what comes next", DEADLINE, || {
        let view = cluster.replica_view(0, 3, &output);
        async move { view.await.is_some_and(|view| active(&view)) }
    })
    .await;
}

/// A replica paused (SIGSTOP) while its shard commits, then resumed: it notices it did
/// not run (`node/src/freeze.rs`), resets the connections that buffered frames meanwhile
/// instead of handling that backlog, catches up, and is then needed for a quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_resumed_after_a_pause_drops_what_its_connections_buffered_and_catches_up() {
    let local = LocalCluster::start(Path::new(env!("CARGO_BIN_EXE_shardspace")), 1, REPLICAS, false);
    let credentials = local.file.client_credentials(local.dir.path(), API_CLIENT).unwrap();
    let client = ClusterClient::new(&local.file, credentials, DEADLINE).unwrap();
    let mut cluster = Cluster { local, client };
    let dumps: Vec<Envelope> = (0..12)
        .map(|nonce: i64| TransactionBuilder::new("dump", "anything").parameter(nonce).output("\"kept\"").build())
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(submit(&cluster, &dumps[0], 1).await.committed());
    let paused_at = tokio::time::Instant::now();
    cluster.local.pause_replica(0, 3).unwrap();
    for dump in &dumps[1..] {
        assert!(submit(&cluster, dump, 1).await.committed());
    }
    // Paused long enough to count as a freeze, however fast the commits went.
    tokio::time::sleep_until(paused_at + shardspace_node::freeze::FROZEN_AFTER * 2).await;
    cluster.local.resume_replica(0, 3).unwrap();
    let metrics = cluster.local.file.shards[0].replicas[3].metrics_address.clone().unwrap();
    let gauge = |text: &str, name: &str| {
        let line = text.lines().find(|line| line.starts_with(&format!("shardspace_replica_{name} ")));
        line.and_then(|line| line.split(' ').nth(1)?.parse::<u64>().ok()).unwrap_or(0)
    };
    wait_until("the resumed replica notices its freeze and resets a connection", DEADLINE, || async {
        let Ok(response) = reqwest::get(format!("http://{metrics}/metrics")).await else { return false };
        let text = response.text().await.unwrap_or_default();
        gauge(&text, "freezes") >= 1 && gauge(&text, "freeze_resets") >= 1
    })
    .await;
    let last = dumps[11].transaction.own_outputs().remove(0);
    wait_until("the resumed replica holds what its shard committed while it was paused", DEADLINE, || {
        let view = cluster.replica_view(0, 3, &last);
        async move { view.await.is_some_and(|view| active(&view)) }
    })
    .await;
    cluster.local.kill_replica(0, 0);
    let after = TransactionBuilder::new("dump", "anything").parameter(99).output("\"after\"").build().unwrap();
    assert!(submit(&cluster, &after, 1).await.committed());
}

/// `hello.greet_counted` counts its visitors with `addition`'s counter: its one dependency
/// is the `addition.increment` that consumes the count before and creates the visitor's.
/// Each replica asks the dependency's checker, then the greeting's (node/src/checking.rs);
/// a rejection by either aborts the whole transaction on every concerned shard, and the
/// counter it would have consumed stays active. Once with every contract served by the
/// Rust checker, once by the Python one: the same scenario, the same outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_is_checked_by_its_own_contract_and_its_rejection_aborts_the_call() {
    for checkers in [Checkers::Rust, Checkers::Python] {
        let options = Options { checkers, ..Options::test(SHARDS, REPLICAS, false) };
        let local = LocalCluster::with(Path::new(env!("CARGO_BIN_EXE_shardspace")), &options).unwrap();
        let credentials = local.file.client_credentials(local.dir.path(), API_CLIENT).unwrap();
        let client = ClusterClient::new(&local.file, credentials, DEADLINE).unwrap();
        // Dropped (every process killed) at the end of each turn, pass or fail: one cluster at a time.
        let cluster = Cluster { local, client };
        count_visitors(&cluster, checkers).await;
    }
}

async fn count_visitors(cluster: &Cluster, checkers: Checkers) {
    // The counter "0": `init` is one fixed transaction (one id), so it is made once per cluster.
    let init = addition::init().unwrap();
    assert!(submit(cluster, &init, 1).await.committed(), "{checkers:?}: init");
    let zero = init.transaction.own_outputs().remove(0);
    settled(cluster, &zero, active).await;

    // The first visitor: the counter "0" is consumed and "1" created by the dependency (an
    // `addition` object, whose txId is the dependency's), the greeting by `hello`.
    let increment = addition::increment(&zero).unwrap();
    let one = increment.transaction.own_outputs().remove(0);
    let greet = hello::greet_counted("ada", increment).unwrap();
    assert!(submit(cluster, &greet, 1).await.committed(), "{checkers:?}: ada, visitor 1");
    let tx = greet.transaction.tx_id();
    settled(cluster, &zero, |view| view.status == ObjectStatus::Inactive { consumed_by: tx }).await;
    let counter = settled(cluster, &one, active).await;
    assert_eq!((counter.value.as_str(), counter.contract.as_str()), ("1", "addition"), "{checkers:?}");
    assert_eq!(counter.created_by, greet.transaction.dependencies[0].tx_id(), "the dependency creates the counter");
    let greeting = greet.transaction.own_outputs().remove(0);
    assert_eq!(greeting.value, "hello, ada: visitor 1");
    let view = settled(cluster, &greeting, active).await;
    assert_eq!((view.value, view.contract.as_str(), view.created_by), (greeting.value, "hello", tx));

    // A lying dependency: "1" incremented to "3", greeted as visitor 3. The greeting's checker
    // would accept it (it reads the count); addition.increment's rejects it, so all abort.
    let mut lying = addition::increment(&one).unwrap();
    lying.transaction.outputs[0] = "3".into();
    let three = lying.transaction.own_outputs().remove(0);
    let greet_three = hello::greet_counted("ada", lying).unwrap();
    assert_eq!(greet_three.transaction.outputs[0], hello::greeting("ada", "3"));
    assert_aborted_with(&submit(cluster, &greet_three, 1).await, &[AbortReason::CheckerRejected]);
    // Active: each shard voted abort, so none holds a lock on it (I6).
    settled(cluster, &one, active).await;
    assert_eq!(cluster.client.object(three.id).await.unwrap(), None, "{checkers:?}: a counter \"3\" exists");

    // A true increment of "1", greeted as visitor 7: the greeting's own checker rejects it.
    let mut seventh = hello::greet_counted("ada", addition::increment(&one).unwrap()).unwrap();
    seventh.transaction.outputs[0] = hello::greeting("ada", "7");
    assert_aborted_with(&submit(cluster, &seventh, 1).await, &[AbortReason::CheckerRejected]);
    assert_eq!(settled(cluster, &one, active).await.value, "1");

    // The walk goes on after rejections: the second visitor is counted, the new counter and
    // the greeting on different shards (a cross-shard commit, whichever shard "ada"'s were on).
    let (greet, two) = greeting_across(cluster, "grace", &one);
    let outcome = submit(cluster, &greet, 1).await;
    assert!(outcome.committed() && outcome.shards.len() == 2, "{checkers:?}: {outcome:?}");
    let tx = greet.transaction.tx_id();
    settled(cluster, &one, |view| view.status == ObjectStatus::Inactive { consumed_by: tx }).await;
    assert_eq!(settled(cluster, &two, active).await.value, "2");
    let greeting = greet.transaction.own_outputs().remove(0);
    assert_eq!(greeting.value, hello::greeting(name_of(&greet), "2"));
    assert_eq!(settled(cluster, &greeting, active).await.value, greeting.value);
}

/// The name a `greet_counted` greets.
fn name_of(greet: &Envelope) -> &str {
    greet.transaction.parameters[0].as_str().unwrap()
}

/// A `greet_counted` that increments `counter`, and the new counter: the name is `name`, or
/// `name` and a number, the first whose greeting lands on the shard other than the new
/// counter's (as `account_on` picks keys), so that the call is decided across both shards.
fn greeting_across(cluster: &Cluster, name: &str, counter: &Object) -> (Envelope, Object) {
    let increment = addition::increment(counter).unwrap();
    let created = increment.transaction.own_outputs().remove(0);
    let names = std::iter::once(name.to_string()).chain((2..).map(|number| format!("{name} {number}")));
    for name in names.take(64) {
        let greet = hello::greet_counted(&name, increment.clone()).unwrap();
        let greeting = greet.transaction.own_outputs().remove(0);
        if cluster.client.map().shard_of(&greeting.id) != cluster.client.map().shard_of(&created.id) {
            return (greet, created);
        }
    }
    panic!("no name of 64 puts {name}'s greeting on the other shard than the counter {}", created.value);
}

/// A checker served as Chainspace's `chainspacecontract` serves one (testkit's fixture, written
/// from its contract.py: `transaction_to_solution` leaves each dependency without a
/// `dependencies` key, and its standard checker compares whole dependencies) accepts a call
/// with a dependency through the cluster; the request shape Shardspace sent before is refused
/// by it, which is why Chainspace's checkers failed on every method with a dependency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checker_in_chainspace_s_own_shape_accepts_a_call_with_a_dependency() {
    let fixture = shardspace_testkit::cluster::repo_root().join("testkit/fixtures/chainspace_checker.py");
    let mut command = std::process::Command::new(shardspace_testkit::cluster::python().unwrap());
    command.arg(&fixture).arg("0");
    let chainspace = shardspace_testkit::processes::Process::start(command);
    let url = chainspace.first_line.clone();
    let checker_urls = [("addition".to_string(), url.clone()), ("hello".to_string(), url.clone())].into();
    let options = Options { checker_urls, ..Options::test(SHARDS, REPLICAS, false) };
    let local = LocalCluster::with(Path::new(env!("CARGO_BIN_EXE_shardspace")), &options).unwrap();
    let credentials = local.file.client_credentials(local.dir.path(), API_CLIENT).unwrap();
    let client = ClusterClient::new(&local.file, credentials, DEADLINE).unwrap();
    let cluster = Cluster { local, client };

    let init = addition::init().unwrap();
    assert!(submit(&cluster, &init, 1).await.committed(), "addition.init");
    let zero = init.transaction.own_outputs().remove(0);
    let (greet, one) = greeting_across(&cluster, "ada", &zero);
    let outcome = submit(&cluster, &greet, 1).await;
    assert!(outcome.committed(), "{outcome:?}");
    assert_eq!(settled(&cluster, &one, active).await.value, "1");

    // A lying dependency ("1" counted as "3"): Chainspace's comparison says no.
    let mut lying = addition::increment(&one).unwrap();
    lying.transaction.outputs[0] = "3".into();
    let greet_three = hello::greet_counted("grace", lying).unwrap();
    assert_aborted_with(&submit(&cluster, &greet_three, 1).await, &[AbortReason::CheckerRejected]);

    // The fixture is faithful: the request as Shardspace inlined dependencies before (each
    // with `"dependencies": []`) is not the solution its standard checker expects.
    let request = shardspace_core::CheckerRequest::from_envelope(&greet).unwrap();
    let mut old_shape = serde_json::to_value(&request).unwrap();
    old_shape["dependencies"][0]["dependencies"] = serde_json::json!([]);
    let http = reqwest::Client::new();
    let answer: serde_json::Value =
        http.post(format!("{url}/hello/greet_counted")).json(&old_shape).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["success"], false, "{answer}");
    let answer: serde_json::Value =
        http.post(format!("{url}/hello/greet_counted")).json(&request).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["success"], true, "{answer}");
}

/// Hundreds of connections to a replica's request interface that send nothing or half a
/// frame: it used to stop taking clients at 256. The oldest silent one now makes room for
/// each new client, and each is closed anyway after 5 s without a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_silent_connections_to_a_replica_never_keep_its_clients_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let local = LocalCluster::start(Path::new(env!("CARGO_BIN_EXE_shardspace")), 1, REPLICAS, false);
    let address = local.client_addresses()[0][0].clone();
    let doors = local.doors;
    let mut held = Vec::new();
    for n in 0..400 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        if n % 2 == 1 {
            // A length prefix of 1,024 bytes, and 3 of them.
            stream.write_all(&[0, 0, 4, 0, 1, 2, 3]).await.unwrap();
        }
        held.push(stream);
    }
    let mut waits = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let asked = async { doors.connect(0, 0).await?.status().await };
        let status = tokio::time::timeout(Duration::from_secs(5), asked).await;
        assert!(matches!(status, Ok(Ok(_))), "a new client was not served: {status:?}");
        waits.push(started.elapsed());
    }
    waits.sort();
    assert!(waits[2] <= Duration::from_millis(100), "new clients waited {waits:?}");
    // A silent connection still open is closed once it has said nothing for 5 s.
    let last = held.last_mut().unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), last.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "a silent connection stayed open: {read:?}");
    eprintln!("with 400 silent connections to a replica, new clients waited {waits:?}");
}
