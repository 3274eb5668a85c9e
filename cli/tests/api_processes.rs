//! The client API in front of a real cluster (two shards of four `shardspace node`
//! processes, the Python and Rust checkers, `shardspace api`), driven over HTTP:
//! a cross-shard bank transfer with the Python SDK's client; 20 concurrent
//! transfers spending one account (exactly one commits); a committed transaction
//! resubmitted; one replica per shard killed; the whole cluster stopped and
//! started; bad input; the event stream; the Chainspace endpoints and the CLI.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use shardspace_checker::TransactionBuilder;
use shardspace_contract_bank as bank;
use shardspace_core::{Envelope, Object, ShardMap};
use shardspace_testkit::cluster::{DEADLINE, LocalCluster, Options, python, repo_root};
use shardspace_testkit::processes::{Process, wait_until};

const SHARDS: u32 = 2;
const REPLICAS: u32 = 4;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shardspace"))
}

struct Api {
    url: String,
    http: reqwest::Client,
}

impl Api {
    fn new(url: String) -> Self {
        Self { url, http: reqwest::Client::builder().timeout(Duration::from_secs(90)).build().unwrap() }
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self.http.post(format!("{}{path}", self.url)).body(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get_with_headers(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self.http.get(format!("{}{path}", self.url)).send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (status, headers, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.url)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn submit(&self, envelope: &Envelope) -> Value {
        let (status, body) = self.post("/v1/transactions", serde_json::to_vec(envelope).unwrap()).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The object once the API shows it with `status` (a read may come from replicas
    /// that lag behind the ones that decided, so it is asked again until the deadline).
    async fn object_with_status(&self, id: &str, status: &str) -> Value {
        let found = Mutex::new(Value::Null);
        wait_until(&format!("{id} becomes {status}"), DEADLINE, || async {
            let (code, body) = self.get(&format!("/v1/objects/{id}")).await;
            let done = code == 200 && body["status"] == status;
            *found.lock().unwrap() = body;
            done
        })
        .await;
        found.into_inner().unwrap()
    }
}

fn account_on(map: ShardMap, shard: u32, balance: i64) -> (SigningKey, Envelope, Object) {
    loop {
        let key = SigningKey::from_bytes(&rand::random());
        let envelope = bank::create_account(&bank::owner_of(&key), balance).unwrap();
        let output = envelope.transaction.own_outputs().remove(0);
        if map.shard_of(&output.id).0 == shard {
            return (key, envelope, output);
        }
    }
}

/// The Python SDK's client opens two accounts on different shards and moves 25 from one
/// to the other; prints the transfer's outcome as JSON.
const PYTHON_TRANSFER: &str = r#"
import json, os, sys
from pathlib import Path
from shardspace import Client, outputs
from shardspace.checker import load_module
from shardspace.encoding import shard_of

module = load_module(Path(sys.argv[2]))
client = Client(sys.argv[1])

def account_on(shard):
    while True:
        key, owner = module.new_keypair(os.urandom(32))
        envelope = module.bank.call("create_account", [], [], [owner, 100])
        if shard_of(outputs(envelope)[0].id, 2) == shard:
            return key, envelope

(alice_key, open_alice), (_, open_bob) = account_on(0), account_on(1)
for envelope in (open_alice, open_bob):
    assert client.submit(envelope)["outcome"] == "commit"
alice, bob = outputs(open_alice)[0], outputs(open_bob)[0]
transfer = module.bank.call("transfer", [alice, bob], [], [25], alice_key)
print(json.dumps(client.submit(transfer)))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_in_front_of_a_real_cluster() {
    let mut cluster = LocalCluster::start(bin(), SHARDS, REPLICAS, true);
    let api = Api::new(cluster.api_url());
    let map = ShardMap::new(SHARDS).unwrap();

    // The event stream, subscribed before anything is decided.
    let (seen, events) = Heard::open(&api, None).await;

    // A cross-shard bank transfer with the Python SDK's client.
    let bank_py = repo_root().join("contracts/python/bank/bank.py");
    let output = Command::new(python().unwrap())
        .args(["-c", PYTHON_TRANSFER, &api.url, &bank_py.to_string_lossy()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let outcome: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(outcome["outcome"], "commit", "{outcome}");
    assert_eq!(outcome["shards"].as_object().unwrap().len(), 2, "{outcome}");
    let new_bob = outcome["outputs"][1].as_str().unwrap().to_string();
    let bob = api.object_with_status(&new_bob, "active").await;
    assert_eq!(bank::Account::parse(bob["value"].as_str().unwrap()).unwrap().balance, 125);

    // Twenty concurrent transfers spend one account (on shard 0), each to its own payee
    // on shard 1: exactly one commits.
    let (key_a, open_a, a) = account_on(map, 0, 1000);
    let payees: Vec<(Envelope, Object)> = (0..20).map(|_| account_on(map, 1, 0)).map(|(_, e, o)| (e, o)).collect();
    let opened = futures::future::join_all(
        std::iter::once(&open_a).chain(payees.iter().map(|(e, _)| e)).map(|envelope| api.submit(envelope)),
    )
    .await;
    assert!(opened.iter().all(|outcome| outcome["outcome"] == "commit"), "{opened:?}");
    let b = payees[0].1.clone();
    let spends: Vec<Envelope> = payees
        .iter()
        .enumerate()
        .map(|(amount, (_, payee))| bank::transfer(&a, payee, amount as i64 + 1, &key_a).unwrap())
        .collect();
    let outcomes = futures::future::join_all(spends.iter().map(|spend| api.submit(spend))).await;
    let committed: Vec<&Value> = outcomes.iter().filter(|o| o["outcome"] == "commit").collect();
    assert_eq!(committed.len(), 1, "{outcomes:?}");
    for lost in outcomes.iter().filter(|o| o["outcome"] != "commit") {
        assert_eq!(lost["outcome"], "abort", "{lost}");
        assert!(["input_locked", "input_inactive"].contains(&lost["reason"].as_str().unwrap()), "{lost}");
    }
    // Resubmitted, the committed one gets its recorded outcome.
    let winner = spends.iter().find(|s| s.transaction.tx_id().to_hex() == committed[0]["txId"]).unwrap();
    let again = api.submit(winner).await;
    assert_eq!(
        (&again["outcome"], &again["attempt"], &again["shards"]),
        (&json!("commit"), &json!(1), &committed[0]["shards"])
    );
    // Resubmitted, a loser runs as a new attempt (its first abort is not given back as
    // the outcome: attempt 1 was decided before) and aborts for good: A is spent.
    let loser = spends.iter().find(|s| s.transaction.tx_id() != winner.transaction.tx_id()).unwrap();
    let retried = api.submit(loser).await;
    assert_eq!((&retried["outcome"], &retried["attempt"]), (&json!("abort"), &json!(2)), "{retried}");
    assert_eq!(retried["reason"], "input_inactive", "{retried}");
    let tx = winner.transaction.tx_id().to_hex();
    let (status, record) = api.get(&format!("/v1/transactions/{tx}")).await;
    assert_eq!((status, &record["outcome"]), (200, &json!("commit")), "{record}");
    queries(&api, &a, &bank::owner_of(&key_a), winner).await;
    // Each of the twenty decided attempts reached the event stream once (the winner too,
    // though it was answered twice).
    wait_until("every spend's event arrived", DEADLINE, || async { spends.iter().all(|spend| seen.has(spend)) }).await;
    let mut keys = seen.keys();
    let heard = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), heard, "an event came twice: {keys:?}");
    assert!(heard >= 20 + 21 + 3, "{keys:?}");
    events.abort();

    // `/metrics` on the API and on a replica.
    let text = api.http.get(format!("{}/metrics", api.url)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("shardspace_api_transactions_total{outcome=\"commit\"}"), "{text}");
    let metrics = cluster.file.shards[0].replicas[0].metrics_address.clone().unwrap();
    let text = reqwest::get(format!("http://{metrics}/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains("shardspace_replica_decisions_total{decision=\"commit\"}"), "{text}");

    // Bad input: a clear 4xx, or an abort with its reason; nothing changes, and it keeps serving.
    bad_input(&api, &a, &b, &key_a).await;

    // One replica per shard killed: transactions still commit.
    cluster.kill_replica(0, 1);
    cluster.kill_replica(1, 2);
    let dump = (0..)
        .map(|n: i64| {
            TransactionBuilder::new("dump", "put").parameter(n).output("\"a\"").output("\"b\"").build().unwrap()
        })
        .find(|dump| map.concerned_shards(&dump.transaction).len() == 2)
        .unwrap();
    assert_eq!(api.submit(&dump).await["outcome"], "commit");
    // A dry run ends once f+1 replicas of each shard agree, not at its deadline (30 s)
    // for the replica that is down; a rejected submission still gets its checker's reason.
    let steal = TransactionBuilder::new("bank", "steal").output("\"x\"").build().unwrap();
    let asked = std::time::Instant::now();
    let (code, dry_run) = api.post("/v1/transactions/check", serde_json::to_vec(&steal).unwrap()).await;
    assert_eq!((code, &dry_run["valid"]), (200, &json!(false)), "{dry_run}");
    assert!(asked.elapsed() < Duration::from_secs(10), "the dry run waited for the replica that is down: {dry_run}");
    let rejected = api.submit(&steal).await;
    assert_eq!((&rejected["checkerReason"], &rejected["reason"]), (&dry_run["reason"], &json!("checker_rejected")));
    cluster.start_replica(0, 1);
    cluster.start_replica(1, 2);

    // The whole cluster stopped and started: objects and outcomes survive.
    cluster.kill_all();
    cluster.start_replicas();
    cluster.start_api();
    let api = Api::new(cluster.api_url());
    let dump_output = dump.transaction.own_outputs()[0].id.to_hex();
    assert_eq!(api.object_with_status(&dump_output, "active").await["value"], "\"a\"");
    api.object_with_status(&a.id.to_hex(), "inactive").await;
    wait_until("the restarted cluster answers for the winner", DEADLINE, || async {
        api.get(&format!("/v1/transactions/{tx}")).await.1["outcome"] == "commit"
    })
    .await;
    let after_restart = (0..)
        .map(|n: i64| TransactionBuilder::new("dump", "put").parameter(1_000 + n).output("\"c\"").build().unwrap());
    assert_eq!(api.submit(&after_restart.take(1).next().unwrap()).await["outcome"], "commit");

    // Chainspace's endpoints and outcome strings, and the CLI.
    chainspace(&api).await;
}

/// Every page of a listing, along `next`, once `done` holds of the whole (replicas that
/// lag may not list the latest yet).
async fn listed(api: &Api, path: &str, items: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let found = Mutex::new(Vec::new());
    wait_until(&format!("{path} lists what is expected"), DEADLINE, || async {
        let (mut all, mut after) = (Vec::new(), String::new());
        for pages in 1.. {
            assert!(pages <= 100, "{path}: more than 100 pages");
            let (code, page) = api.get(&format!("{path}{after}")).await;
            assert_eq!(code, 200, "{page}");
            all.extend(page[items].as_array().unwrap().iter().cloned());
            if page["more"] != true {
                break;
            }
            after = format!("&after={}", page["next"].as_str().unwrap());
        }
        let done = done(&all);
        *found.lock().unwrap() = all;
        done
    })
    .await;
    found.into_inner().unwrap()
}

/// Issue 19's queries, after the twenty spends of one account: a bank owner's accounts,
/// a contract's active objects page by page, its aborted attempts, and bad queries.
async fn queries(api: &Api, spent: &Object, owner: &str, winner: &Envelope) {
    let of_owner = format!("/v1/objects?contract=bank&field=owner&equals={owner}");
    let accounts = listed(api, &format!("{of_owner}&status=active"), "objects", |all| all.len() == 1).await;
    let change = &winner.transaction.own_outputs()[0];
    assert_eq!(accounts[0]["id"], change.id.to_hex(), "the payer's change is its one active account");
    let consumed = listed(api, &format!("{of_owner}&status=inactive"), "objects", |all| all.len() == 1).await;
    assert_eq!(
        (&consumed[0]["id"], &consumed[0]["consumedBy"]),
        (&json!(spent.id.to_hex()), &json!(winner.transaction.tx_id().to_hex()))
    );
    // 2 accounts of the Python transfer, 19 payees not paid, and the winner's 2 outputs.
    let active = listed(api, "/v1/objects?contract=bank&status=active&limit=5", "objects", |all| all.len() >= 23).await;
    let mut ids: Vec<&str> = active.iter().map(|object| object["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 23, "{active:?}");
    assert!(ids.is_sorted(), "in id order across shards: {ids:?}");
    ids.dedup();
    assert_eq!(ids.len(), 23, "listed twice: {ids:?}");
    assert!(active.iter().all(|object| object["status"] == "active" && object["contract"] == "bank"), "{active:?}");
    // The 19 losers' first attempts and one's second, found by the decided logs' index.
    let aborts =
        listed(api, "/v1/transactions?contract=bank&outcome=abort&limit=7", "transactions", |all| all.len() >= 20)
            .await;
    let mut attempts: Vec<(String, u64)> = aborts
        .iter()
        .map(|entry| (entry["txId"].as_str().unwrap().into(), entry["attempt"].as_u64().unwrap()))
        .collect();
    assert_eq!(attempts.len(), 20, "{aborts:?}");
    attempts.sort();
    attempts.dedup();
    assert_eq!(attempts.len(), 20, "listed twice: {aborts:?}");
    assert!(aborts.iter().all(|entry| entry["outcome"] == "abort" && entry["contract"] == "bank"), "{aborts:?}");
    for bad in ["status=spent", "field=owner", "field=&equals=1", "after=zz", "limit=x"] {
        let (code, body) = api.get(&format!("/v1/objects?{bad}")).await;
        assert_eq!((code, &body["error"]["kind"]), (400, &json!("bad_query")), "{bad}: {body}");
    }
}

async fn bad_input(api: &Api, a: &Object, b: &Object, key: &SigningKey) {
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("not JSON", b"{\"transaction\":".to_vec(), 400, "malformed_json"),
        ("a missing field", br#"{"transaction":{"contractID":"dump"},"store":{}}"#.to_vec(), 400, "missing_field"),
        ("a wrong type", br#"{"transaction":5,"store":{}}"#.to_vec(), 400, "wrong_type"),
        ("an oversized body", vec![b' '; 1024 * 1024 + 16], 413, "body_too_large"),
    ];
    for (what, body, status, kind) in cases {
        let (code, answer) = api.post("/v1/transactions", body).await;
        assert_eq!((code, answer["error"]["kind"].as_str()), (status, Some(kind)), "{what}: {answer}");
        assert!(answer["error"]["hint"].as_str().is_some_and(|hint| !hint.is_empty()), "{what}: {answer}");
    }
    let unknown = TransactionBuilder::new("nosuch", "call").output("\"x\"").build().unwrap();
    let (code, answer) = api.post("/v1/transactions", serde_json::to_vec(&unknown).unwrap()).await;
    assert_eq!((code, answer["error"]["kind"].as_str()), (400, Some("unknown_contract")), "{answer}");

    let aborted = |reason: &'static str| {
        move |outcome: Value| {
            assert_eq!(
                (outcome["outcome"].as_str(), outcome["reason"].as_str()),
                (Some("abort"), Some(reason)),
                "{outcome}"
            )
        }
    };
    let (_, open, c) = account_on(ShardMap::new(SHARDS).unwrap(), 0, 10);
    assert_eq!(api.submit(&open).await["outcome"], "commit");
    // An unknown method: the checker refuses the request, a verdict against it.
    let no_method = TransactionBuilder::new("bank", "steal").input(&c).build().unwrap();
    let rejected = api.submit(&no_method).await;
    aborted("checker_rejected")(rejected.clone());
    // The checker's own reason comes with the abort, as the dry run gives it.
    let reason = rejected["checkerReason"].as_str().unwrap_or_else(|| panic!("no checkerReason: {rejected}"));
    let (code, dry_run) = api.post("/v1/transactions/check", serde_json::to_vec(&no_method).unwrap()).await;
    assert_eq!((code, &dry_run["valid"], dry_run["reason"].as_str()), (200, &json!(false), Some(reason)), "{dry_run}");
    // An input nobody created.
    let ghost = Object { id: shardspace_core::ObjectId([7; 32]), value: a.value.clone() };
    aborted("input_missing")(api.submit(&TransactionBuilder::new("dump", "x").input(&ghost).build().unwrap()).await);
    // An input already consumed (A paid in the race), with a fresh signature.
    aborted("input_inactive")(api.submit(&bank::transfer(a, b, 999, key).unwrap()).await);
    // A store value that differs from the stored one.
    let lie = Object { id: c.id, value: c.value.replace("\"balance\":10", "\"balance\":5000") };
    assert_ne!(lie.value, c.value);
    let reads_a_lie = TransactionBuilder::new("dump", "x").output("\"y\"").reference(&lie).build().unwrap();
    aborted("value_mismatch")(api.submit(&reads_a_lie).await);
    // Nothing changed, and the API serves on.
    assert_eq!(api.object_with_status(&c.id.to_hex(), "active").await["value"], json!(c.value));
    let (code, cluster) = api.get("/v1/cluster").await;
    assert_eq!((code, &cluster["healthy"]), (200, &json!(true)), "{cluster}");
    // Who leads each shard: the replica that f+1 of its replicas in the latest round name.
    wait_until("each shard's leader is named", DEADLINE, || async {
        let (_, cluster) = api.get("/v1/cluster").await;
        cluster["shards"].as_array().unwrap().iter().all(|shard| {
            let Some(leader) = shard["leader"].as_u64() else { return false };
            let named = shard["replicas"].as_array().unwrap().iter().filter(|replica| replica["leader"] == leader);
            leader < REPLICAS as u64 && named.count() >= 2
        })
    })
    .await;
}

async fn chainspace(api: &Api) {
    let dump = TransactionBuilder::new("dump", "put").parameter(77).output("\"cs\"").build().unwrap();
    let (code, body) = api.post("/api/1.0/transaction/process", serde_json::to_vec(&dump).unwrap()).await;
    assert_eq!(
        (code, &body["success"], &body["outcome"]),
        (200, &json!("True"), &json!("accepted_t_commit")),
        "{body}"
    );
    let ghost = Object { id: shardspace_core::ObjectId([9; 32]), value: "\"v\"".into() };
    let doomed = TransactionBuilder::new("dump", "put").input(&ghost).build().unwrap();
    let (code, body) = api.post("/api/1.0/transaction/process", serde_json::to_vec(&doomed).unwrap()).await;
    assert_eq!(
        (code, &body["success"], &body["outcome"]),
        (502, &json!("False"), &json!("prepared_t_abort")),
        "{body}"
    );
    let (code, body) = api.post("/api/1.0/transaction/process", b"nonsense".to_vec()).await;
    assert_eq!((code, &body["success"]), (400, &json!("False")), "{body}");
    // Chainspace's index, with and without the trailing slash.
    for path in ["/api/1.0/", "/api/1.0"] {
        let (code, index) = api.get(path).await;
        assert_eq!(
            (code, &index["service-name"], &index["version"]),
            (200, &json!("Chainspace Client API"), &json!("1.0"))
        );
        let objects = index["endpoints"]["objects"].as_str().unwrap();
        assert!(objects.starts_with("http://") && objects.ends_with("/api/1.0/objects"), "{index}");
    }
    // Chainspace's lists: bare arrays, the next page's address in a Link header.
    let (code, headers, body) = api.get_with_headers("/api/1.0/objects?limit=5").await;
    let objects = body.as_array().unwrap();
    assert_eq!((code, objects.len()), (200, 5), "{body}");
    assert!(
        objects
            .iter()
            .all(|object| object["id"].is_string()
                && ["active", "inactive"].contains(&object["status"].as_str().unwrap()))
    );
    let link = headers.get("link").and_then(|link| link.to_str().ok()).unwrap_or_default();
    assert!(link.contains("rel=\"next\"") && link.contains("after="), "{link}");
    let (code, heads) = api.get("/api/1.0/hashchain").await;
    assert_eq!((code, heads.as_array().map(Vec::len)), (200, Some(2)), "{heads}");
    assert!(heads[0]["id"].as_u64().unwrap() > 0 && heads[0]["digest"].as_str().unwrap().len() == 64, "{heads}");

    // Paged with every limit, the transaction log is that of one unpaged listing: a
    // cross-shard transaction's two records are never split by a page boundary, and listed once.
    let (_, _, all) = api.get_with_headers("/api/1.0/transactions?limit=1000").await;
    let all = all.as_array().unwrap().clone();
    let ids: Vec<&str> = all.iter().map(|entry| entry["transactionId"].as_str().unwrap()).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "listed once each, in id order");
    assert!(all.iter().all(|entry| entry["transactionJson"]["transaction"]["contractID"].is_string()), "{all:?}");
    let committed = dump.transaction.tx_id().to_hex();
    assert!(ids.contains(&committed.as_str()) && !ids.contains(&doomed.transaction.tx_id().to_hex().as_str()));
    for limit in 1..=all.len() + 1 {
        let (mut paged, mut after) = (Vec::new(), String::new());
        loop {
            let (code, headers, page) =
                api.get_with_headers(&format!("/api/1.0/transactions?limit={limit}{after}")).await;
            assert_eq!(code, 200, "{page}");
            paged.extend(page.as_array().unwrap().iter().cloned());
            let Some(next) = headers.get("x-next-after").and_then(|next| next.to_str().ok()) else { break };
            assert!(paged.len() <= all.len(), "limit {limit}: paging does not end");
            after = format!("&after={next}");
        }
        assert_eq!(paged, all, "limit {limit}");
    }

    // The CLI, against the same API.
    let file = tempfile::NamedTempFile::new().unwrap();
    let cli = TransactionBuilder::new("dump", "put").parameter(78).output("\"cli\"").build().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&cli).unwrap()).unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(bin()).args(args).args(["--api", &api.url]).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (code, out) = run(&["submit", &file.path().to_string_lossy()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("outcome: commit"), "{out}");
    let (code, out) = run(&["tx", &cli.transaction.tx_id().to_hex(), "--json"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["outcome"], "commit");
    let id = cli.transaction.own_outputs()[0].id.to_hex();
    let (code, out) = run(&["object", &id]);
    assert!(code == Some(0) && out.contains("value: \"cli\""), "{out}");
    let (code, out) = run(&["status"]);
    assert!(code == Some(0) && out.contains("healthy"), "{out}");
}

/// An API process of its own on a port the OS picks, with `limit` (a flag and its value).
fn api_with(cluster: &LocalCluster, limit: [&str; 2]) -> (Process, Api, String) {
    let mut command = Command::new(bin());
    command.args(["api", "--config", &cluster.path.to_string_lossy(), "--listen", "127.0.0.1:0"]);
    command.args(limit).env("RUST_LOG", "warn");
    let process = Process::start(command);
    let url = process.first_line.clone();
    let listen = url.strip_prefix("http://").unwrap_or_else(|| panic!("the API printed {url:?}")).to_string();
    (process, Api::new(url), listen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_bounds_pending_transactions_and_connections() {
    let cluster = LocalCluster::start(bin(), 1, REPLICAS, false);
    let (_pending_api, api, _) = api_with(&cluster, ["--pending-max", "1"]);

    // Several at once through one pending slot: some are told to retry.
    let dumps: Vec<Envelope> = (0..6)
        .map(|n: i64| TransactionBuilder::new("dump", "put").parameter(n).output("\"p\"").build().unwrap())
        .collect();
    let fresh = || reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let answers = futures::future::join_all(dumps.iter().map(|dump| {
        let (http, url) = (fresh(), api.url.clone());
        async move {
            let response = http.post(format!("{url}/v1/transactions")).body(serde_json::to_vec(dump).unwrap()).send();
            let response = response.await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    }))
    .await;
    assert!(
        answers.iter().any(|(code, body)| *code == 503 && body["error"]["kind"] == "too_many_pending"),
        "{answers:?}"
    );
    assert!(answers.iter().any(|(code, body)| *code == 200 && body["outcome"] == "commit"), "{answers:?}");

    // One connection allowed: an idle one gives way to a new client; a busy one does not,
    // and the new client is told so at once (503 busy) rather than left waiting.
    let (_connections_api, api, listen) = api_with(&cluster, ["--connections-max", "1"]);
    let mut idle = tokio::net::TcpStream::connect(&listen).await.unwrap();
    let served = fresh().get(format!("{}/api/1.0/", api.url)).send().await.unwrap();
    assert_eq!(served.status(), 200, "an idle connection kept a new client out");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut idle, &mut byte)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "the idle connection was closed to make room: {read:?}");
    // An event stream keeps its connection busy for as long as it is open.
    let stream = fresh().get(format!("{}/v1/events", api.url)).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let refused = fresh().get(format!("{}/api/1.0/", api.url)).send().await.unwrap();
    let status = refused.status().as_u16();
    let body: Value = refused.json().await.unwrap();
    assert_eq!((status, body["error"]["kind"].as_str()), (503, Some("busy")), "{body}");
    drop(stream);
    wait_until("the closed stream's place is free", DEADLINE, || async {
        fresh().get(format!("{}/api/1.0/", api.url)).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}

/// Hundreds of connections that send nothing or half a request line, as a slow-loris
/// client holds them, and connections that send headers past the limit or bytes that are
/// not HTTP: new clients are served within 100 ms all along, nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_half_sent_oversized_and_garbage_connections_never_keep_a_new_client_waiting() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = LocalCluster::start(bin(), 1, REPLICAS, false);
    let (_process, api, listen) = api_with(&cluster, ["--connections-max", "512"]);
    let mut held = Vec::new();
    for n in 0..700 {
        let mut stream = tokio::net::TcpStream::connect(&listen).await.unwrap();
        if n % 2 == 1 {
            stream.write_all(b"POST /v1/transac").await.unwrap();
        }
        held.push(stream);
    }
    let mut waits = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let (code, body) = api.get("/api/1.0/").await;
        assert_eq!(code, 200, "{body}");
        waits.push(started.elapsed());
    }
    waits.sort();
    assert!(waits[2] <= Duration::from_millis(100), "new clients waited {waits:?}");

    // Headers past the limit: 431, and the connection closed.
    let mut big = tokio::net::TcpStream::connect(&listen).await.unwrap();
    let header = format!("GET /api/1.0/ HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(100 * 1024));
    let _ = big.write_all(header.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), big.read_to_end(&mut answer)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 431"), "{}", String::from_utf8_lossy(&answer));

    // Random bytes without a line end: answered (400) or closed at once.
    let mut garbage = tokio::net::TcpStream::connect(&listen).await.unwrap();
    let noise: Vec<u8> = (0..2_000).map(|_| rand::random::<u8>()).filter(|b| *b != b'\n').collect();
    let _ = garbage.write_all(&noise).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1), garbage.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "random bytes held the connection open");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");

    // The API serves on, with all of that still open.
    let (code, cluster_view) = api.get("/v1/cluster").await;
    assert_eq!((code, &cluster_view["healthy"]), (200, &json!(true)), "{cluster_view}");
    // The newest half-sent request (too new to have been made room for) is closed once it
    // has not finished its headers in HEADER_READ_TIMEOUT (5 s).
    let half_sent = held.last_mut().unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), half_sent.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "a half-sent request was kept past the header timeout");
    eprintln!("with 700 idle or half-sent connections open, new clients waited {waits:?}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_not_decided_within_the_wait_deadline_gets_its_txid_back() {
    let mut cluster = LocalCluster::start(bin(), 1, REPLICAS, false);
    let (_api, api, _) = api_with(&cluster, ["--wait-seconds", "1"]);
    // No checker answers: the replicas try them for 2 s (`checker_timeout_ms`) before they
    // vote, longer than this API waits.
    cluster.kill_checkers();
    let dump = TransactionBuilder::new("dump", "put").output("\"late\"").build().unwrap();
    let (code, body) = api.post("/v1/transactions", serde_json::to_vec(&dump).unwrap()).await;
    assert_eq!((code, body["error"]["kind"].as_str()), (504, Some("timeout")), "{body}");
    assert_eq!(body["txId"], dump.transaction.tx_id().to_hex(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checker_that_is_down_gives_a_decided_checker_error_abort_and_a_later_attempt_commits() {
    let mut cluster = LocalCluster::start(bin(), 2, REPLICAS, true);
    let api = Api::new(cluster.api_url());
    cluster.kill_checkers();
    let dump = TransactionBuilder::new("dump", "put").output("\"while the checker is down\"").build().unwrap();
    let started = std::time::Instant::now();
    let aborted = api.submit(&dump).await;
    let waited = started.elapsed();
    // Decided, not left pending: every concerned shard recorded the abort, for checker_error.
    assert_eq!(
        (aborted["outcome"].as_str(), aborted["reason"].as_str()),
        (Some("abort"), Some("checker_error")),
        "{aborted}"
    );
    let shards = aborted["shards"].as_object().unwrap();
    assert!(
        shards.values().all(|shard| shard["decision"] == "abort" && shard["reason"] == "checker_error"),
        "{aborted}"
    );
    assert!(waited < Duration::from_secs(10), "decided only after {waited:?}");
    let tx = aborted["txId"].as_str().unwrap();
    let (code, record) = api.get(&format!("/v1/transactions/{tx}")).await;
    assert_eq!((code, record["outcome"].as_str()), (200, Some("abort")), "{record}");

    // The checker is back: the same transaction, submitted again, runs a new attempt and commits.
    cluster.start_checkers().unwrap();
    let committed = api.submit(&dump).await;
    assert_eq!(committed["outcome"], "commit", "{committed}");
    assert!(committed["attempt"].as_u64() > aborted["attempt"].as_u64(), "{committed}");
    eprintln!("checker down: decided abort after {waited:?} ({aborted}); checker back: {committed}");
}

/// An API instance whose key the replicas do not admit (made with `shardspace keys` while
/// they run) is refused by each of them: its client gets a 504 that names the refusal, its
/// log says which key and what to do, and nothing is ordered. Once the replicas restart
/// with the cluster file, the same API is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_the_replicas_do_not_list_is_refused_until_they_restart_with_it() {
    let mut cluster = LocalCluster::start(bin(), 1, REPLICAS, false);
    let config = cluster.path.to_string_lossy().into_owned();
    let keys = |name: &str| Command::new(bin()).args(["keys", "--config", &config, "--name", name]).output().unwrap();
    let made = keys("api-2");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let key_file = String::from_utf8(made.stdout).unwrap();
    assert!(Path::new(key_file.trim()).is_file(), "{key_file:?}");
    let again = keys("api-2");
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already lists a client"));

    let log = cluster.dir.path().join("api-2.log");
    let mut command = Command::new(bin());
    command.args(["api", "--config", &config, "--client", "api-2", "--listen", "127.0.0.1:0", "--wait-seconds", "3"]);
    let process = Process::start_logging_to(command, &log);
    let api = Api::new(process.first_line.clone());
    let dump = TransactionBuilder::new("dump", "put").output("\"refused\"").build().unwrap();
    let (code, body) = api.post("/v1/transactions", serde_json::to_vec(&dump).unwrap()).await;
    assert_eq!(code, 504, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("refused this API's key"), "{body}");
    assert!(body["error"]["hint"].as_str().unwrap_or_default().contains("[[clients]]"), "{body}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("does not admit the client key") && logged.contains("[[clients]]"), "{logged}");
    let (_, health) = api.get("/v1/cluster").await;
    assert_eq!(health["healthy"], false, "{health}");

    // The replicas restart with the file that lists it: the same API is served.
    for replica in 0..REPLICAS {
        cluster.kill_replica(0, replica);
        cluster.start_replica(0, replica);
    }
    let (code, body) = loop_until_committed(&api, &dump).await;
    assert_eq!((code, body["outcome"].as_str()), (200, Some("commit")), "{body}");
}

/// Submits `envelope` until an answer other than a timeout comes (the links back off
/// after refusals, up to 2 s), within the deadline.
async fn loop_until_committed(api: &Api, envelope: &Envelope) -> (u16, Value) {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let (code, body) = api.post("/v1/transactions", serde_json::to_vec(envelope).unwrap()).await;
        if code != 504 || std::time::Instant::now() > deadline {
            return (code, body);
        }
    }
}

/// A checker that takes requests and never answers, until its task is aborted (the checker
/// stopped): its base URL, and how many connections have sent it a request.
async fn silent_checker() -> (String, Arc<std::sync::atomic::AtomicUsize>, tokio::task::JoinHandle<()>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&asked);
    let serving = tokio::spawn(async move {
        // Owned here: aborting this task drops every connection, as a stopped process does.
        let mut held = tokio::task::JoinSet::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            held.spawn(async move {
                let mut buffer = [0u8; 4096];
                if stream.read(&mut buffer).await.is_ok_and(|read| read > 0) {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                std::future::pending::<()>().await;
                drop(stream);
            });
        }
    });
    (url, asked, serving)
}

/// A contract removed from the cluster file (SIGHUP) while a transaction of it is being
/// checked, then its checker stopped, as docs/contracts.md says to: the transaction is not
/// lost or left pending but decided, an abort for `checker_error` on every replica (no
/// verdict, never one against it); new ones are refused with `unknown_contract`, and the
/// other contracts commit as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_removed_under_a_transaction_in_flight_aborts_it_as_checker_error() {
    use std::sync::atomic::Ordering;
    let (url, asked, checker) = silent_checker().await;
    let checker_urls = [("gated".to_string(), url)].into();
    let options = Options { checker_urls, ..Options::test(1, REPLICAS, true) };
    let mut cluster = LocalCluster::with(bin(), &options).unwrap();
    let api = Api::new(cluster.api_url());
    let gated = TransactionBuilder::new("gated", "write").output("\"in flight\"").build().unwrap();
    let body = serde_json::to_vec(&gated).unwrap();
    let in_flight = {
        let (http, url, body) = (api.http.clone(), api.url.clone(), body.clone());
        tokio::spawn(async move {
            let response = http.post(format!("{url}/v1/transactions")).body(body).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        })
    };
    wait_until("the replicas ask the contract's checker", DEADLINE, || async { asked.load(Ordering::SeqCst) >= 1 })
        .await;

    let mut file = cluster.file.clone();
    file.checkers.remove("gated");
    cluster.reload(file).unwrap();
    let other = TransactionBuilder::new("gated", "write").output("\"after\"").build().unwrap();
    wait_until("the API refuses the removed contract", DEADLINE, || async {
        api.post("/v1/transactions", serde_json::to_vec(&other).unwrap()).await.1["error"]["kind"] == "unknown_contract"
    })
    .await;
    checker.abort();

    let (code, outcome) = in_flight.await.unwrap();
    assert_eq!(
        (code, outcome["outcome"].as_str(), outcome["reason"].as_str()),
        (200, Some("abort"), Some("checker_error")),
        "{outcome}"
    );
    let shards = outcome["shards"].as_object().unwrap();
    assert!(shards.values().all(|shard| shard["decision"] == "abort"), "{outcome}");
    // Submitted again, it is refused before anything is ordered.
    let (code, again) = api.post("/v1/transactions", body).await;
    assert_eq!((code, again["error"]["kind"].as_str()), (400, Some("unknown_contract")), "{again}");
    // Each replica refuses it too (not only the API): they all reloaded the file.
    for replica in 0..REPLICAS as usize {
        let mut link = cluster.doors.connect(0, replica).await.unwrap();
        let envelope = serde_json::to_string(&gated).unwrap();
        let attempt = shardspace_core::sbac::Attempt(2);
        link.send(&shardspace_node::client::ClientRequest::Envelope { envelope, attempt }).await.unwrap();
        let reply = tokio::time::timeout(DEADLINE, link.receive()).await.unwrap().unwrap();
        assert!(
            matches!(&reply, Some(shardspace_node::client::ClientReply::Rejected { kind, .. }) if kind.as_str() == "unknown_contract"),
            "replica {replica}: {reply:?}"
        );
    }
    let dump = TransactionBuilder::new("dump", "put").output("\"still served\"").build().unwrap();
    assert_eq!(api.submit(&dump).await["outcome"], "commit");
}

/// An event's id and what it is about: (txId, attempt).
type IdAndKey = (String, (String, u64));

/// The events one stream received, in order.
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<IdAndKey>>>);

impl Heard {
    /// Opens `/v1/events` on `api` (from `last_id` when given) and records what it hears.
    async fn open(api: &Api, last_id: Option<&str>) -> (Self, tokio::task::JoinHandle<()>) {
        let mut request = api.http.get(format!("{}/v1/events", api.url));
        if let Some(id) = last_id {
            request = request.header("Last-Event-ID", id);
        }
        let mut response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let heard = Self::default();
        let recording = heard.clone();
        let task = tokio::spawn(async move {
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    if !event.lines().any(|line| line == "event: decided") {
                        continue; // the stream's `start`, or a keep-alive
                    }
                    let id = event.lines().find_map(|line| line.strip_prefix("id: "));
                    let data = event.lines().find_map(|line| line.strip_prefix("data: "));
                    let (Some(id), Some(data)) = (id, data) else { continue };
                    let decided: Value = serde_json::from_str(data).unwrap();
                    let key = (decided["txId"].as_str().unwrap().to_string(), decided["attempt"].as_u64().unwrap());
                    recording.0.lock().unwrap().push((id.to_string(), key));
                }
            }
        });
        (heard, task)
    }

    fn keys(&self) -> Vec<(String, u64)> {
        self.0.lock().unwrap().iter().map(|(_, key)| key.clone()).collect()
    }

    fn has(&self, envelope: &Envelope) -> bool {
        self.keys().contains(&(envelope.transaction.tx_id().to_hex(), 1))
    }

    fn last_id(&self) -> String {
        self.0.lock().unwrap().last().map(|(id, _)| id.clone()).unwrap()
    }
}

/// Two API processes in front of one cluster, one transaction through each: both streams
/// show both, with the first shard's data. The first API is killed and started again: a
/// stream reopened there with the last id received gets what was decided meanwhile and
/// after, and nothing it had before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apis_stream_every_decision_and_a_restarted_one_resumes_from_the_last_event_id() {
    let mut cluster = LocalCluster::start(bin(), SHARDS, REPLICAS, true);
    let map = ShardMap::new(SHARDS).unwrap();
    let first = Api::new(cluster.api_url());
    let (_second_process, second, _) = api_with(&cluster, ["--wait-seconds", "30"]);
    let (before, before_task) = Heard::open(&first, None).await;
    let (all, _all_task) = Heard::open(&second, None).await;
    // Each across both shards: listed once, by shard 0.
    let mut across = (0..).map(|n: i64| {
        TransactionBuilder::new("dump", "put").parameter(n).output("\"a\"").output("\"b\"").build().unwrap()
    });
    let mut next = || across.by_ref().find(|dump| map.concerned_shards(&dump.transaction).len() == 2).unwrap();
    let (a, b, c, d) = (next(), next(), next(), next());
    assert_eq!(first.submit(&a).await["outcome"], "commit");
    assert_eq!(second.submit(&b).await["outcome"], "commit");
    wait_until("both streams show both transactions", DEADLINE, || async {
        [&before, &all].iter().all(|heard| heard.has(&a) && heard.has(&b))
    })
    .await;
    assert_eq!(before.keys().len(), 2, "each attempt once: {:?}", before.keys());

    let last_id = before.last_id();
    before_task.abort();
    cluster.stop_api();
    assert_eq!(second.submit(&c).await["outcome"], "commit", "decided while the first API is down");
    cluster.start_api();
    let first = Api::new(cluster.api_url());
    assert_eq!(first.submit(&d).await["outcome"], "commit");
    let (resumed, _resumed_task) = Heard::open(&first, Some(&last_id)).await;
    wait_until("the resumed stream has what was decided since", DEADLINE, || async {
        resumed.has(&c) && resumed.has(&d) && all.has(&d)
    })
    .await;
    let (had, got, every) = (before.keys(), resumed.keys(), all.keys());
    assert!(got.iter().all(|key| !had.contains(key)), "repeated after the restart: {got:?} (had {had:?})");
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "an event came twice: {got:?}");
    for key in &every {
        assert!(had.contains(key) || got.contains(key), "{key:?} was missed across the restart");
    }
    // The same decided attempts listed, filtered, and page by page along `next`.
    let tx_ids = |page: &Value| -> Vec<String> {
        let listed = page["transactions"].as_array().unwrap().iter();
        listed.map(|entry| entry["txId"].as_str().unwrap().to_string()).collect()
    };
    let mut expected: Vec<String> = [&a, &b, &c, &d].iter().map(|e| e.transaction.tx_id().to_hex()).collect();
    expected.sort();
    // A replica that lags may hold the search back for a moment (`more` with fewer listed).
    wait_until("the four are listed in one page", DEADLINE, || async {
        let (code, page) = first.get("/v1/transactions?contract=dump&outcome=commit").await;
        assert_eq!(code, 200, "{page}");
        let mut listed = tx_ids(&page);
        listed.sort();
        listed == expected && page["more"] == false
    })
    .await;
    let mut paged = Vec::new();
    let mut after = String::new();
    for _ in 0..10 {
        let (code, page) = second.get(&format!("/v1/transactions?contract=dump&limit=1{after}")).await;
        assert_eq!(code, 200, "{page}");
        if tx_ids(&page).is_empty() {
            break;
        }
        paged.extend(tx_ids(&page));
        after = format!("&after={}", page["next"].as_str().unwrap());
    }
    paged.sort();
    assert_eq!(paged, expected, "one a page, along next, on the other API");
    let (code, page) = first.get("/v1/transactions?outcome=abort").await;
    assert_eq!((code, tx_ids(&page).len()), (200, 0), "{page}");
    let (code, page) = first.get("/v1/transactions?after=7").await;
    assert_eq!((code, page["error"]["kind"].as_str()), (400, Some("bad_query")), "{page}");

    // A cursor of another shape is refused with why.
    let refused = first.http.get(format!("{}/v1/events", first.url)).header("Last-Event-ID", "1.2.3").send().await;
    let refused = refused.unwrap();
    let code = refused.status().as_u16();
    let body: Value = refused.json().await.unwrap();
    assert_eq!((code, body["error"]["kind"].as_str()), (400, Some("bad_event_id")), "{body}");

    // At most 64 streams at once (`SUBSCRIBERS_MAX`, the test's own among them): one more
    // is refused with why, and served once one leaves.
    let stream = || first.http.get(format!("{}/v1/events", first.url)).send();
    let mut open = Vec::new();
    let refused = loop {
        let response = stream().await.unwrap();
        if response.status() != 200 {
            break response;
        }
        open.push(response);
        assert!(open.len() <= 64, "more than 64 streams open at once");
    };
    let code = refused.status().as_u16();
    let body: Value = refused.json().await.unwrap();
    assert_eq!((code, body["error"]["kind"].as_str()), (503, Some("too_many_pending")), "{body}");
    open.pop();
    wait_until("a stream is served once another leaves", DEADLINE, || async {
        stream().await.is_ok_and(|response| response.status() == 200)
    })
    .await;
}
