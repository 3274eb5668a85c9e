//! A cluster spread over hosts made of network namespaces (testkit's `hosts` and
//! `host_cluster`): two shards of four replicas, replica r of each shard and its own
//! bank checker on host `host-r`, the API alone on host `api`, the test's client on
//! the API's host. Faults are cut links, not killed processes (but for the restart).
//!
//! Needs root, `ip` and `nft` (`make netns-deps`); where that is not so, each test
//! says SKIPPED and why on stderr (uncaptured, so `cargo test` shows it) and returns.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use shardspace_testkit::host_cluster::{API_HOST, BankLoad, HostCluster, Tally, bank_total, replica_host};
use shardspace_testkit::hosts;
use tokio::time::Instant;

const SHARDS: u32 = 2;
const REPLICAS: u32 = 4;
/// Pairs of accounts transferring at once: every transfer concerns both shards.
const PAIRS: usize = 4;
/// How long the healed cluster may take to hold one state on every replica.
const CATCH_UP: Duration = Duration::from_secs(60);

/// The cluster, or None (and a SKIPPED line that `cargo test` shows) where namespaces
/// cannot be made here: not root, or `ip`/`nft` missing (`make netns-deps` installs them).
fn start(test: &str) -> Option<HostCluster> {
    if let Some(reason) = hosts::unavailable() {
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
        return None;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_shardspace"));
    Some(HostCluster::start(bin, SHARDS, REPLICAS).unwrap_or_else(|error| panic!("{error:#}")))
}

/// Runs `work` on the API's host, on a runtime of its own.
fn on_api_host<T: Send>(cluster: &HostCluster, work: impl AsyncFnOnce() -> T + Send) -> T {
    let run = || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(work())
    };
    cluster.hosts.on(API_HOST, run).unwrap_or_else(|error| panic!("{error:#}"))
}

/// Every replica holds the same objects as its peers, and the accounts hold what was opened.
async fn assert_replicas_agree_and_no_coin_is_lost(cluster: &HostCluster, load: &BankLoad) -> usize {
    let shards = cluster.objects_replica_by_replica().await.unwrap_or_else(|error| panic!("{error:#}"));
    let total: i64 = shards.iter().map(|objects| bank_total(objects)).sum();
    assert_eq!(total, load.total(), "the balances of the active accounts");
    shards.iter().map(Vec::len).sum()
}

fn report(test: &str, figures: &str) {
    let _ = writeln!(std::io::stderr(), "{test}: {figures}");
}

#[test]
fn a_host_cut_off_under_cross_shard_load_catches_up_and_no_coin_is_lost() {
    let test = "a_host_cut_off_under_cross_shard_load_catches_up_and_no_coin_is_lost";
    let Some(cluster) = start(test) else { return };
    on_api_host(&cluster, async || {
        let mut load = BankLoad::open(&cluster.api_url(), SHARDS, PAIRS).await.unwrap();
        let before = load.run_for(Duration::from_secs(3)).await;
        assert!(before.committed > 0, "nothing committed before the cut: {before:?}");

        cluster.hosts.cut(&replica_host(0)).unwrap();
        let during = load.run_for(Duration::from_secs(8)).await;
        assert!(during.committed > 0, "nothing committed while one replica of each shard was cut off: {during:?}");

        cluster.hosts.heal().unwrap();
        let caught_up = cluster.converged(CATCH_UP).await.unwrap_or_else(|error| panic!("{error:#}"));
        let after = load.run_for(Duration::from_secs(3)).await;
        assert!(after.committed > 0, "nothing committed after the heal: {after:?}");
        cluster.converged(CATCH_UP).await.unwrap_or_else(|error| panic!("{error:#}"));
        let objects = assert_replicas_agree_and_no_coin_is_lost(&cluster, &load).await;
        report(
            test,
            &format!(
                "committed {} in 3 s before, {} in 8 s with host-0 cut off ({during:?}), {} in 3 s after; \
                 every replica held one state {caught_up:?} after the heal; {objects} objects compared on each \
                 replica; balances total {}",
                before.committed,
                during.committed,
                after.committed,
                load.total()
            ),
        );
    });
}

#[test]
fn a_partition_that_leaves_no_shard_a_quorum_commits_nothing_and_resumes_on_heal() {
    let test = "a_partition_that_leaves_no_shard_a_quorum_commits_nothing_and_resumes_on_heal";
    let Some(cluster) = start(test) else { return };
    on_api_host(&cluster, async || {
        let mut load = BankLoad::open(&cluster.api_url(), SHARDS, PAIRS).await.unwrap();
        assert!(load.run_for(Duration::from_secs(2)).await.committed > 0);
        cluster.converged(CATCH_UP).await.unwrap();

        // Two replicas of each shard on either side: 3 of 4 make a quorum, so neither has one.
        let (left, right) = ([replica_host(0), replica_host(1)], [replica_host(2), replica_host(3)]);
        let left: Vec<&str> = left.iter().map(String::as_str).collect();
        let right: Vec<&str> = right.iter().map(String::as_str).chain([API_HOST]).collect();
        cluster.hosts.partition(&[&left, &right]).unwrap();
        let executed_before = executed_on(&cluster, &[2, 3]).await;
        let during = load.run_for(Duration::from_secs(4)).await;
        assert_eq!(during.committed, 0, "a transfer committed without a quorum: {during:?}");
        assert_eq!(executed_on(&cluster, &[2, 3]).await, executed_before, "a replica executed without a quorum");

        cluster.hosts.heal().unwrap();
        let healed = Instant::now();
        let mut resumed = Tally::default();
        while resumed.committed < PAIRS && healed.elapsed() < Duration::from_secs(60) {
            let more = load.run_for(Duration::from_millis(200)).await;
            resumed.committed += more.committed;
            resumed.unknown += more.unknown;
        }
        let resumed_after = healed.elapsed();
        assert!(resumed.committed >= PAIRS, "commits did not resume within 60 s of the heal: {resumed:?}");
        cluster.converged(CATCH_UP).await.unwrap();
        let objects = assert_replicas_agree_and_no_coin_is_lost(&cluster, &load).await;
        report(
            test,
            &format!(
                "partitioned 2|2 per shard: {during:?}, executed unchanged; {PAIRS} commits {resumed_after:?} after \
                 the heal; {objects} objects equal on every replica; balances total {}",
                load.total()
            ),
        );
    });
}

/// Requests executed by each replica of each shard on hosts `host-{r}` for r in `replicas`.
async fn executed_on(cluster: &HostCluster, replicas: &[usize]) -> Vec<u64> {
    let mut executed = Vec::new();
    for shard in 0..SHARDS {
        let addresses = cluster.client_addresses(shard);
        for &replica in replicas {
            let address = addresses[replica].to_string();
            let mut client = cluster.doors.connect_at(&address, shard as usize, replica).await.unwrap();
            executed.push(client.status().await.unwrap().executed);
        }
    }
    executed
}

#[test]
fn the_api_cut_off_from_one_shard_says_so_and_leaves_no_transaction_half_decided() {
    let test = "the_api_cut_off_from_one_shard_says_so_and_leaves_no_transaction_half_decided";
    let Some(cluster) = start(test) else { return };
    on_api_host(&cluster, async || {
        let api = cluster.api_url();
        let mut load = BankLoad::open(&api, SHARDS, 1).await.unwrap();
        cluster.converged(CATCH_UP).await.unwrap();
        cluster.hosts.block(API_HOST, &cluster.client_addresses(1)).unwrap();

        // The next transfer concerns both shards; the API reaches shard 0 only.
        let envelope = load.next_envelope().unwrap();
        let http = reqwest::Client::new();
        let started = Instant::now();
        let response = http.post(format!("{api}/v1/transactions")).json(&envelope).send().await.unwrap();
        let (status, answer) = (response.status(), response.json::<Value>().await.unwrap());
        let waited = started.elapsed();
        assert!(!status.is_success(), "the API reached a shard it is cut off from: {answer}");
        assert_eq!((status.as_u16(), answer["error"]["kind"].as_str()), (504, Some("timeout")), "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("4 of the 4 replicas of shard 1"), "the error does not name shard 1: {answer}");
        let tx = answer["txId"].as_str().map(String::from);

        cluster.hosts.heal().unwrap();
        // Whatever the shards did meanwhile, they agree: both decided alike, or neither did.
        let tx = tx.unwrap_or_else(|| panic!("the error does not name the transaction: {answer}"));
        let record = http.get(format!("{api}/v1/transactions/{tx}")).send().await.unwrap();
        let record = if record.status().is_success() { record.json::<Value>().await.unwrap() } else { Value::Null };
        let decisions: Vec<Value> = record["shards"]
            .as_object()
            .map(|shards| shards.values().map(|s| s["decision"].clone()).collect())
            .unwrap_or_default();
        let decided: Vec<&Value> = decisions.iter().filter(|decision| !decision.is_null()).collect();
        assert!(decided.windows(2).all(|pair| pair[0] == pair[1]), "shards decided differently: {record}");
        assert!(decided.is_empty() || decided.len() == 2, "one shard decided, the other never will: {record}");

        // Sent again once healed, it is decided; the balances hold.
        let again = load.run_for(Duration::from_secs(2)).await;
        assert!(again.committed > 0, "no transfer committed after the heal: {again:?}");
        cluster.converged(CATCH_UP).await.unwrap();
        assert_replicas_agree_and_no_coin_is_lost(&cluster, &load).await;
        report(test, &format!("{status} after {waited:?}: {answer}; record after the heal: {record}"));
    });
}

#[test]
fn a_host_restarted_with_its_disk_catches_up_and_agrees_object_by_object() {
    let test = "a_host_restarted_with_its_disk_catches_up_and_agrees_object_by_object";
    let Some(cluster) = start(test) else { return };
    on_api_host(&cluster, async || {
        let mut load = BankLoad::open(&cluster.api_url(), SHARDS, PAIRS).await.unwrap();
        assert!(load.run_for(Duration::from_secs(2)).await.committed > 0);
        cluster.kill_host(1);
        let down = load.run_for(Duration::from_secs(4)).await;
        assert!(down.committed > 0, "nothing committed with host-1 down: {down:?}");
        cluster.start_host(1).unwrap();
        let caught_up = cluster.converged(CATCH_UP).await.unwrap_or_else(|error| panic!("{error:#}"));
        let after = load.run_for(Duration::from_secs(2)).await;
        assert!(after.committed > 0, "nothing committed after the restart: {after:?}");
        cluster.converged(CATCH_UP).await.unwrap();
        let objects = assert_replicas_agree_and_no_coin_is_lost(&cluster, &load).await;
        report(
            test,
            &format!(
                "{} committed with host-1 down; one state on every replica {caught_up:?} after its restart; \
                 {objects} objects equal on every replica",
                down.committed
            ),
        );
    });
}
