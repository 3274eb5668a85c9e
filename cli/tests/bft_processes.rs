//! Four real `shardspace node` processes of one shard on loopback: requests are
//! decided; the leader is killed and decisions go on after a timeout; it is
//! restarted from its disk and catches up to the same log and state.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shardspace_core::bft::Request;
use shardspace_node::client::{ClientReply, ClientRequest, Doors, Status};
use shardspace_node::config::{API_CLIENT, ClusterFile, Layout, generate};
use shardspace_testkit::processes::{Process, free_port};
use tokio::time::Instant;

const REPLICAS: u32 = 4;
const DEADLINE: Duration = Duration::from_secs(60);

/// One replica process, killed when dropped (the test passing or not).
struct ReplicaProcess {
    _process: Process,
    client_address: String,
}

/// A one-shard cluster file with OS-chosen ports and short timeouts.
fn cluster(dir: &Path) -> PathBuf {
    let layout = Layout::one_host("test", 1, REPLICAS, "127.0.0.1", 1);
    let path = generate(&layout, dir).unwrap();
    let mut file = ClusterFile::load(&path).unwrap();
    for replica in &mut file.shards[0].replicas {
        replica.peer_address = format!("127.0.0.1:{}", free_port());
        replica.client_address = format!("127.0.0.1:{}", free_port());
        replica.metrics_address = None;
    }
    file.bft.round_timeout_ms = Some(300);
    file.bft.checkpoint_interval = Some(20);
    file.bft.durability = shardspace_node::config::Durability::Normal;
    std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
    path
}

fn start(config: &Path, replica: u32) -> ReplicaProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardspace"));
    command.args(["node", "--config", config.to_str().unwrap(), "--shard", "0", "--replica", &replica.to_string()]);
    command.env("RUST_LOG", "warn");
    let process = Process::start(command);
    let line = &process.first_line;
    let client_address = line.split("client=").nth(1).expect("listening peer=... client=...").to_string();
    ReplicaProcess { _process: process, client_address }
}

async fn wait_until<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    shardspace_testkit::processes::wait_until(what, DEADLINE, condition).await;
}

/// How the test reaches the replicas: as the cluster file's `api` client.
fn doors(config: &Path) -> Doors {
    let file = ClusterFile::load(config).unwrap();
    let credentials = file.client_credentials(config.parent().unwrap(), API_CLIENT).unwrap();
    Doors::new(&file, credentials)
}

async fn status(doors: &Doors, address: &str) -> Option<Status> {
    let mut client = doors.connect_to(address).await.ok()?;
    client.status().await.ok()
}

/// Submits `count` requests through `address` and waits until each is decided.
async fn submit_and_wait(doors: &Doors, address: &str, prefix: &str, count: usize) {
    let mut client = doors.connect_to(address).await.unwrap();
    let requests: Vec<Request> = (0..count).map(|i| Request::new(format!("{prefix}{i}=v"))).collect();
    client.send(&ClientRequest::Submit(requests)).await.unwrap();
    let mut decided = 0;
    let deadline = Instant::now() + DEADLINE;
    while decided < count {
        let reply = tokio::time::timeout_at(deadline, client.receive()).await.expect("requests decided in time");
        match reply.unwrap() {
            Some(ClientReply::Decided(batch)) => decided += batch.len(),
            other => panic!("unexpected reply {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replica_processes_decide_survive_a_killed_leader_and_catch_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = cluster(dir.path());
    let mut replicas: Vec<Option<ReplicaProcess>> = (0..REPLICAS).map(|i| Some(start(&config, i))).collect();
    let addresses: Vec<String> = replicas.iter().map(|r| r.as_ref().unwrap().client_address.clone()).collect();
    let doors = doors(&config);

    submit_and_wait(&doors, &addresses[1], "first", 200).await;

    // Kill the leader of the current round; the others time out and go on.
    let round = status(&doors, &addresses[1]).await.unwrap().round;
    let leader = (round.0 % u64::from(REPLICAS)) as usize;
    replicas[leader] = None;
    let survivor = &addresses[(leader + 1) % REPLICAS as usize];
    submit_and_wait(&doors, survivor, "second", 200).await;

    // Restart it from its disk: it catches up to the same height and state.
    replicas[leader] = Some(start(&config, leader as u32));
    submit_and_wait(&doors, survivor, "third", 50).await;
    // The shard goes quiet; the restarted replica must then agree with a survivor on the
    // decided height, the executed count and the state digest.
    wait_until("the restarted replica has the same log and state as a survivor", || async {
        let (restarted, same) = (status(&doors, &addresses[leader]).await, status(&doors, survivor).await);
        restarted.zip(same).is_some_and(|(restarted, same)| {
            (restarted.height, restarted.executed, restarted.state) == (same.height, same.executed, same.state)
        })
    })
    .await;
    assert!(status(&doors, survivor).await.unwrap().executed >= 450);
}
