//! A cluster spread over hosts made of network namespaces (`hosts`): replica r of
//! every shard and a checker of its own (the bank contract's, in Python) on host
//! `host-r`, the client API alone on host `api`. The cluster file is the one
//! `shardspace config gen --hosts … --checker bank=PORT` writes, so each replica
//! calls its own host's checker. Processes go first when it is dropped, then the hosts.

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use shardspace_core::bft::Digest;
use shardspace_core::sbac::{ObjectStatus, ObjectView};
use shardspace_core::{ObjectId, ShardMap};
use shardspace_node::client::{Doors, Listing, PAGE_MAX};
use shardspace_node::config::{API_CLIENT, CheckerPlace, ClusterFile, Durability, Layout, generate};
use tokio::time::Instant;

use crate::bench::{BankPair, Stream, Target, open_account};
use crate::cluster::{python, start_node, start_python_checker_by};
use crate::hosts::Hosts;
use crate::processes::{Process, try_wait_until};

/// The host of the client API (and of the tests' own client).
pub const API_HOST: &str = "api";
/// Where the API listens on its host.
const API_PORT: u16 = 5000;
/// How long the API waits for an outcome: shorter than its default, for the tests' cuts.
pub const API_WAIT_SECONDS: u64 = 10;
/// Where each host's bank checker listens.
const CHECKER_PORT: u16 = 7101;

/// What the hosts run, by host.
#[derive(Debug, Default)]
struct Running {
    checker: Option<Process>,
    /// By shard.
    replicas: Vec<Option<Process>>,
}

#[derive(Debug)]
pub struct HostCluster {
    bin: PathBuf,
    /// By replica host: `running[r]` is on `host-r`. Declared before `hosts`: dropped first.
    /// Behind a lock, so that a test's client on a host's thread can restart hosts.
    running: std::sync::Mutex<Vec<Running>>,
    api: Option<Process>,
    pub file: ClusterFile,
    /// How to reach the replicas, as the `api` client.
    pub doors: Doors,
    pub path: PathBuf,
    pub hosts: Hosts,
    pub dir: tempfile::TempDir,
    /// Held for the cluster's life: one cluster of processes at a time per test binary.
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// The name of the host of replica `replica` (of every shard).
pub fn replica_host(replica: u32) -> String {
    format!("host-{replica}")
}

impl HostCluster {
    /// `shards` shards of `replicas` replicas over `replicas` hosts, and the API's host;
    /// round timeout 300 ms, durability `normal`.
    pub fn start(bin: &Path, shards: u32, replicas: u32) -> anyhow::Result<Self> {
        let turn = crate::cluster::turn();
        let names: Vec<String> = (0..replicas).map(replica_host).chain([API_HOST.to_string()]).collect();
        let hosts = Hosts::create(&names.iter().map(String::as_str).collect::<Vec<_>>())?;
        let dir = tempfile::tempdir().context("no temporary folder")?;
        let layout = Layout {
            cluster: "hosts".into(),
            shards,
            replicas,
            // By name, as a real deployment: each host resolves the others (`hosts`), and
            // replicas bind every interface since their host is a name.
            hosts: (0..replicas).map(replica_host).collect(),
            listen_any: false,
            base_port: 7300,
            checkers: [("bank".to_string(), CheckerPlace::OnEachHost(CHECKER_PORT))].into(),
        };
        let path = generate(&layout, dir.path())?;
        let mut file = ClusterFile::load(&path)?;
        file.bft.round_timeout_ms = Some(300);
        file.bft.durability = Durability::Normal;
        std::fs::write(&path, toml::to_string(&file)?).with_context(|| format!("cannot write {}", path.display()))?;
        let running = (0..replicas).map(|_| Running { checker: None, replicas: (0..shards).map(|_| None).collect() });
        let doors = Doors::new(&file, file.client_credentials(dir.path(), API_CLIENT)?);
        let mut cluster = Self {
            bin: bin.to_path_buf(),
            running: std::sync::Mutex::new(running.collect()),
            api: None,
            file,
            doors,
            path,
            hosts,
            dir,
            _turn: turn,
        };
        for replica in 0..replicas {
            cluster.start_host(replica)?;
        }
        cluster.start_api()?;
        Ok(cluster)
    }

    /// Starts what host `host-{replica}` runs and is not running: its checker, then its
    /// replicas (with the data they had).
    pub fn start_host(&self, replica: u32) -> anyhow::Result<()> {
        let host = replica_host(replica);
        let mut all = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let running = &mut all[replica as usize];
        if running.checker.is_none() {
            let (command, address) = (self.hosts.command(&host, python()?), self.hosts.host(&host).address);
            let checker = start_python_checker_by(command, &["bank"], &address.to_string(), CHECKER_PORT)
                .with_context(|| format!("the checker of {host}"))?;
            running.checker = Some(checker);
        }
        for shard in 0..running.replicas.len() {
            if running.replicas[shard].is_some() {
                continue;
            }
            let command = self.hosts.command(&host, &self.bin);
            let process =
                start_node(command, &self.path, shard as u32, replica).with_context(|| format!("on {host}"))?;
            running.replicas[shard] = Some(process);
        }
        Ok(())
    }

    /// Kills everything host `host-{replica}` runs (SIGKILL: the machine lost power; the
    /// data folders stay).
    pub fn kill_host(&self, replica: u32) {
        let mut all = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let running = &mut all[replica as usize];
        running.checker = None;
        running.replicas.iter_mut().for_each(|process| *process = None);
    }

    fn start_api(&mut self) -> anyhow::Result<()> {
        let mut command = self.hosts.command(API_HOST, &self.bin);
        command.args(["api", "--config", &self.path.to_string_lossy()]);
        command.args(["--listen", &self.api_address().to_string(), "--wait-seconds", &API_WAIT_SECONDS.to_string()]);
        command.env("RUST_LOG", "warn");
        let api = Process::try_start(command)?;
        anyhow::ensure!(api.first_line.starts_with("http://"), "the API printed {:?}", api.first_line);
        self.api = Some(api);
        Ok(())
    }

    /// The API's address on its host.
    pub fn api_address(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.hosts.host(API_HOST).address, API_PORT)
    }

    /// The API's base URL, reachable from a thread on any of the hosts.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_address())
    }

    /// Each replica's client address of `shard`: its host's name resolved here (the test's own
    /// threads read the machine's /etc/hosts, not the hosts' own).
    pub fn client_addresses(&self, shard: u32) -> Vec<SocketAddrV4> {
        let replicas = &self.file.shards[shard as usize].replicas;
        let address_of = |advertised: &str| {
            let (host, port) = advertised.rsplit_once(':')?;
            Some(SocketAddrV4::new(self.hosts.find(host).ok()?.address, port.parse().ok()?))
        };
        replicas.iter().filter_map(|replica| address_of(&replica.client_address)).collect()
    }
}

/// What one replica says of itself: requests executed and its state's digest.
async fn executed_and_state(
    doors: &Doors,
    address: SocketAddrV4,
    shard: usize,
    replica: usize,
) -> Option<(u64, Digest)> {
    let status = async { doors.connect_at(&address.to_string(), shard, replica).await?.status().await };
    let status = tokio::time::timeout(Duration::from_secs(2), status).await.ok()?.ok()?;
    Some((status.executed, status.state))
}

/// Every object one replica holds, page by page.
pub async fn objects_of(
    doors: &Doors,
    address: SocketAddrV4,
    shard: usize,
    replica: usize,
) -> anyhow::Result<Vec<(ObjectId, ObjectView)>> {
    let client = doors.connect_at(&address.to_string(), shard, replica).await;
    let mut client = client.with_context(|| format!("{address}"))?;
    let (mut objects, mut after) = (Vec::new(), None);
    loop {
        let page = client.list(Listing::Objects, after, PAGE_MAX).await.with_context(|| format!("{address}"))?;
        let full = page.objects.len() == PAGE_MAX as usize;
        after = page.objects.last().map(|(id, _)| id.0);
        objects.extend(page.objects);
        if !full {
            return Ok(objects);
        }
    }
}

impl HostCluster {
    /// Waits until every replica of every shard has executed as many requests as its
    /// peers and holds the same state digest; how long that took. On a thread on a host.
    pub async fn converged(&self, deadline: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let shards = self.file.shards.len() as u32;
        try_wait_until("every replica of each shard holds the same state", deadline, || async {
            for shard in 0..shards {
                let addresses = self.client_addresses(shard).into_iter().enumerate();
                let asked = addresses
                    .map(|(replica, address)| executed_and_state(&self.doors, address, shard as usize, replica));
                let states = futures::future::join_all(asked).await;
                if states.iter().any(Option::is_none) || states.windows(2).any(|pair| pair[0] != pair[1]) {
                    return false;
                }
            }
            true
        })
        .await?;
        Ok(start.elapsed())
    }

    /// Each shard's objects, once every replica of it lists the very same ones (ids,
    /// values, contracts, creators, statuses); an error naming the first difference.
    pub async fn objects_replica_by_replica(&self) -> anyhow::Result<Vec<Vec<(ObjectId, ObjectView)>>> {
        let mut shards = Vec::new();
        for shard in 0..self.file.shards.len() as u32 {
            let mut lists = Vec::new();
            for (replica, address) in self.client_addresses(shard).into_iter().enumerate() {
                lists.push(objects_of(&self.doors, address, shard as usize, replica).await?);
            }
            for (replica, list) in lists.iter().enumerate().skip(1) {
                if list != &lists[0] {
                    let differ = lists[0].iter().zip(list).position(|(a, b)| a != b);
                    anyhow::bail!(
                        "shard {shard}: replica {replica} lists {} objects, replica 0 lists {}; first difference at {differ:?}",
                        list.len(),
                        lists[0].len()
                    );
                }
            }
            shards.push(lists.swap_remove(0));
        }
        Ok(shards)
    }
}

/// The sum of the balances of the active bank accounts among `objects`.
pub fn bank_total(objects: &[(ObjectId, ObjectView)]) -> i64 {
    let active = objects.iter().filter(|(_, view)| view.contract == "bank" && view.status == ObjectStatus::Active);
    active.filter_map(|(_, view)| shardspace_contract_bank::Account::parse(&view.value).ok()).map(|a| a.balance).sum()
}

/// Transactions that ended each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub committed: usize,
    pub aborted: usize,
    /// No outcome: an error or the API's wait deadline (the transfer is sent again).
    pub unknown: usize,
}

/// Pairs of bank accounts, one on each of two shards, sending to each other through the
/// API: every transfer concerns both shards.
#[derive(Debug)]
pub struct BankLoad {
    target: Target,
    streams: Vec<Stream>,
}

impl BankLoad {
    /// Opens `pairs` pairs of accounts (each with `OPENING_BALANCE_MAX`) through the API at
    /// `api`; on a thread on a host.
    pub async fn open(api: &str, shards: u32, pairs: usize) -> anyhow::Result<Self> {
        let target = Target::new(api)?;
        let map = ShardMap::new(shards).context("no shards")?;
        let mut streams = Vec::new();
        for _ in 0..pairs {
            let opened = [open_account(map, 0)?, open_account(map, shards.min(2) - 1)?];
            for (envelope, _) in &opened {
                let committed = target.submit(&serde_json::to_value(envelope)?).await;
                anyhow::ensure!(committed == Some(true), "opening an account gave {committed:?}");
            }
            streams.push(Stream::Bank(Box::new(BankPair::new(opened, map, false))));
        }
        Ok(Self { target, streams })
    }

    /// The first pair's next transfer, as `run_for` will send it (again) unless it is settled.
    pub fn next_envelope(&mut self) -> anyhow::Result<serde_json::Value> {
        self.streams.first_mut().context("no accounts")?.next_body()
    }

    /// The total every account opened: what the balances must always sum to.
    pub fn total(&self) -> i64 {
        2 * self.streams.len() as i64 * shardspace_contract_bank::OPENING_BALANCE_MAX
    }

    /// Each pair transfers in a loop, one transfer in flight, for `length`.
    pub async fn run_for(&mut self, length: Duration) -> Tally {
        let until = Instant::now() + length;
        let target = &self.target;
        let runs = self.streams.iter_mut().map(|stream| async move {
            let mut tally = Tally::default();
            while Instant::now() < until {
                let committed = match stream.next_body() {
                    Ok(body) => target.submit(&body).await,
                    Err(_) => None,
                };
                stream.settled(committed);
                match committed {
                    Some(true) => tally.committed += 1,
                    Some(false) => tally.aborted += 1,
                    None => tally.unknown += 1,
                }
            }
            tally
        });
        futures::future::join_all(runs).await.into_iter().fold(Tally::default(), |sum, one| Tally {
            committed: sum.committed + one.committed,
            aborted: sum.aborted + one.aborted,
            unknown: sum.unknown + one.unknown,
        })
    }
}
