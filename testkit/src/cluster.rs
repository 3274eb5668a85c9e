//! A whole local cluster of real processes for tests: the bank contract's
//! Python checker, the other example contracts' Rust checkers (`shardspace
//! checker`), shards of `shardspace node` replicas on OS-chosen ports, and
//! optionally the client API (`shardspace api`). Every process is killed when
//! the cluster is dropped; the data folder lives as long as the cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use shardspace_node::client::Doors;
use shardspace_node::config::{API_CLIENT, ClusterFile, Durability, Layout, generate};

use crate::processes::{Process, free_port};

/// The repository's root (testkit's parent folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The Python with the SDK installed: `$SHARDSPACE_PYTHON`, else the Makefile's venv.
pub fn python() -> anyhow::Result<String> {
    if let Ok(python) = std::env::var("SHARDSPACE_PYTHON") {
        return Ok(python);
    }
    let venv = repo_root().join(".venv/bin/python");
    anyhow::ensure!(venv.exists(), "no Python with the SDK: run `make venv` or set SHARDSPACE_PYTHON");
    Ok(venv.to_string_lossy().into_owned())
}

/// One local cluster at a time per test binary: clusters started side by side take each
/// other's ports (between `free_port` and a replica's bind) and share two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits for this test binary's turn to run a cluster; the turn lasts while it is held.
pub(crate) fn turn() -> std::sync::MutexGuard<'static, ()> {
    // A test that failed while holding it poisons it; the next one may still go.
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug)]
pub struct LocalCluster {
    /// The `shardspace` binary.
    bin: PathBuf,
    checkers: Vec<Process>,
    /// The contracts the Python checker serves (none: no Python checker).
    python_contracts: &'static [&'static str],
    /// By shard, then replica; `None` while stopped.
    replicas: Vec<Vec<Option<Process>>>,
    api: Option<Process>,
    /// The API's base URL, once started.
    api_url: String,
    pub path: PathBuf,
    pub file: ClusterFile,
    /// How to reach each replica's request interface, as the cluster file's `api` client.
    pub doors: Doors,
    pub dir: tempfile::TempDir,
    /// Held for the cluster's life; dropped last.
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// Which checker process serves the example contracts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkers {
    /// `bank` in Python, the others in Rust (as `make start-all`, roughly).
    Mixed,
    /// Every contract by `shardspace checker`.
    Rust,
    /// Every contract by the Python SDK's checker server.
    Python,
}

/// What `LocalCluster::with` starts.
#[derive(Clone, Debug)]
pub struct Options {
    pub shards: u32,
    pub replicas: u32,
    pub with_api: bool,
    pub checkers: Checkers,
    pub durability: Durability,
    pub round_timeout_ms: u64,
    /// `bft.propose_after_ms` (the node's default when `None`).
    pub propose_after_ms: Option<u64>,
    /// `bft.checkpoint_interval` (the node's default when `None`).
    pub checkpoint_interval: Option<u64>,
    /// Contracts served by a checker the test runs itself: their base URLs.
    pub checker_urls: std::collections::BTreeMap<String, String>,
}

impl Options {
    /// What the tests use: mixed checkers, round timeout 300 ms, durability `normal`.
    pub fn test(shards: u32, replicas: u32, with_api: bool) -> Self {
        Self {
            shards,
            replicas,
            with_api,
            checkers: Checkers::Mixed,
            durability: Durability::Normal,
            round_timeout_ms: 300,
            propose_after_ms: None,
            checkpoint_interval: None,
            checker_urls: Default::default(),
        }
    }
}

/// The example contracts; those `Checkers::Mixed` serves in Python.
const CONTRACTS: [&str; 5] = ["bank", "dump", "hello", "addition", "petition"];
const MIXED_PYTHON: [&str; 1] = ["bank"];

impl LocalCluster {
    /// Starts the checkers and `shards` × `replicas` replicas (round timeout 300 ms,
    /// durability `normal`); the API too when `with_api`.
    pub fn start(bin: &Path, shards: u32, replicas: u32, with_api: bool) -> Self {
        Self::with(bin, &Options::test(shards, replicas, with_api)).unwrap_or_else(|error| panic!("{error:#}"))
    }

    /// Starts a cluster as `options` say.
    pub fn with(bin: &Path, options: &Options) -> anyhow::Result<Self> {
        let turn = turn();
        let python_contracts: &'static [&'static str] = match options.checkers {
            Checkers::Mixed => &MIXED_PYTHON,
            Checkers::Python => &CONTRACTS,
            Checkers::Rust => &[],
        };
        let python_checker = match python_contracts.is_empty() {
            true => None,
            false => Some(start_python_checker(python_contracts, 0)?),
        };
        let rust_checker = start_rust_checker(bin, 0)?;

        let dir = tempfile::tempdir().context("no temporary folder")?;
        let (shards, replicas) = (options.shards, options.replicas);
        let layout = Layout::one_host("test", shards, replicas, "127.0.0.1", 1);
        let path = generate(&layout, dir.path())?;
        let mut file = ClusterFile::load(&path)?;
        for replica in file.shards.iter_mut().flat_map(|shard| shard.replicas.iter_mut()) {
            replica.peer_address = format!("127.0.0.1:{}", free_port());
            replica.client_address = format!("127.0.0.1:{}", free_port());
            replica.metrics_address = Some(format!("127.0.0.1:{}", free_port()));
        }
        file.bft.round_timeout_ms = Some(options.round_timeout_ms);
        file.bft.durability = options.durability;
        file.bft.propose_after_ms = options.propose_after_ms;
        file.bft.checkpoint_interval = options.checkpoint_interval;
        for contract in CONTRACTS {
            let checker = match &python_checker {
                Some(python_checker) if python_contracts.contains(&contract) => python_checker,
                _ => &rust_checker,
            };
            file.checkers.insert(contract.into(), checker.first_line.clone());
        }
        file.checkers.extend(options.checker_urls.clone());
        let text = toml::to_string(&file)?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;

        let stopped = (0..shards).map(|_| (0..replicas).map(|_| None).collect()).collect();
        let doors = Doors::new(&file, file.client_credentials(dir.path(), API_CLIENT)?);
        let mut cluster = Self {
            bin: bin.to_path_buf(),
            checkers: python_checker.into_iter().chain([rust_checker]).collect(),
            python_contracts,
            replicas: stopped,
            api: None,
            api_url: String::new(),
            path,
            file,
            doors,
            dir,
            _turn: turn,
        };
        cluster.try_start_replicas()?;
        if options.with_api {
            cluster.try_start_api()?;
        }
        Ok(cluster)
    }

    /// The operating-system ids of every process of the cluster running now: checkers,
    /// replicas and the API.
    pub fn pids(&self) -> Vec<u32> {
        let replicas = self.replicas.iter().flatten().flatten();
        self.checkers.iter().chain(replicas).chain(&self.api).map(Process::pid).collect()
    }

    /// The replicas' process ids, by shard then replica (running ones only).
    pub fn replica_pids(&self) -> Vec<u32> {
        self.replicas.iter().flatten().flatten().map(Process::pid).collect()
    }

    pub fn start_replica(&mut self, shard: u32, replica: u32) {
        self.try_start_replica(shard, replica).unwrap_or_else(|error| panic!("{error:#}"));
    }

    fn try_start_replica(&mut self, shard: u32, replica: u32) -> anyhow::Result<()> {
        let process = start_node(Command::new(&self.bin), &self.path, shard, replica)?;
        self.replicas[shard as usize][replica as usize] = Some(process);
        Ok(())
    }

    /// Kills one replica (SIGKILL: a crash).
    pub fn kill_replica(&mut self, shard: u32, replica: u32) {
        self.replicas[shard as usize][replica as usize] = None;
    }

    /// Pauses one replica (SIGSTOP): it keeps its sockets open and answers nothing, as a
    /// machine that hangs. A paused replica is still killed when the cluster is dropped.
    pub fn pause_replica(&self, shard: u32, replica: u32) -> anyhow::Result<()> {
        self.signal(shard, replica, "STOP")
    }

    /// Resumes a paused replica (SIGCONT).
    pub fn resume_replica(&self, shard: u32, replica: u32) -> anyhow::Result<()> {
        self.signal(shard, replica, "CONT")
    }

    fn signal(&self, shard: u32, replica: u32, signal: &str) -> anyhow::Result<()> {
        let process = self.replicas[shard as usize][replica as usize].as_ref();
        let pid = process.with_context(|| format!("replica {shard}/{replica} is not running"))?.pid();
        let status = Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed: {status}");
        Ok(())
    }

    /// Writes `file` as the cluster file and has every running replica and the API read it
    /// again (SIGHUP), as an operator changing a running cluster does.
    pub fn reload(&mut self, file: ClusterFile) -> anyhow::Result<()> {
        std::fs::write(&self.path, toml::to_string(&file)?)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.file = file;
        let replicas = self.replicas.iter().flatten().flatten();
        for pid in replicas.chain(&self.api).map(Process::pid) {
            let status = Command::new("kill").args(["-HUP".to_string(), pid.to_string()]).status()?;
            anyhow::ensure!(status.success(), "kill -HUP {pid} failed: {status}");
        }
        Ok(())
    }

    /// The client address of each replica, by shard then replica.
    pub fn client_addresses(&self) -> Vec<Vec<String>> {
        let shards = self.file.shards.iter();
        shards.map(|shard| shard.replicas.iter().map(|replica| replica.client_address.clone()).collect()).collect()
    }

    /// Kills one replica and deletes its data directory: a replica that lost its disk.
    pub fn wipe_replica(&mut self, shard: u32, replica: u32) -> anyhow::Result<()> {
        self.kill_replica(shard, replica);
        let relative = &self.file.shards[shard as usize].replicas[replica as usize].data_dir;
        let base = self.path.parent().context("the cluster file has a folder")?;
        let data_dir = base.join(relative);
        std::fs::remove_dir_all(&data_dir).with_context(|| format!("cannot delete {}", data_dir.display()))
    }

    pub fn start_replicas(&mut self) {
        self.try_start_replicas().unwrap_or_else(|error| panic!("{error:#}"));
    }

    fn try_start_replicas(&mut self) -> anyhow::Result<()> {
        for shard in 0..self.replicas.len() as u32 {
            for replica in 0..self.replicas[shard as usize].len() as u32 {
                if self.replicas[shard as usize][replica as usize].is_none() {
                    self.try_start_replica(shard, replica)?;
                }
            }
        }
        Ok(())
    }

    /// Kills the checkers: the replicas then get no verdicts.
    pub fn kill_checkers(&mut self) {
        self.checkers.clear();
    }

    /// Starts the checkers again at the URLs the cluster file gives them.
    pub fn start_checkers(&mut self) -> anyhow::Result<()> {
        let port = |contract: &str| {
            let url = self.file.checkers.get(contract).context("no checker URL")?;
            url.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()).context("a checker URL without a port")
        };
        let python = match self.python_contracts.first() {
            Some(contract) => Some(start_python_checker(self.python_contracts, port(contract)?)?),
            None => None,
        };
        let rust_port = CONTRACTS.iter().find(|contract| !self.python_contracts.contains(contract));
        let rust = start_rust_checker(&self.bin, port(rust_port.context("no Rust contract")?)?)?;
        self.checkers = python.into_iter().chain([rust]).collect();
        Ok(())
    }

    /// Kills every replica and the API (the checkers stay).
    pub fn kill_all(&mut self) {
        self.api = None;
        for replica in self.replicas.iter_mut().flatten() {
            *replica = None;
        }
    }

    /// Stops the API (killed, as a crash would), leaving the replicas running.
    pub fn stop_api(&mut self) {
        self.api = None;
    }

    /// Starts the API on a port the OS picks (a new one at each start).
    pub fn start_api(&mut self) {
        self.try_start_api().unwrap_or_else(|error| panic!("{error:#}"));
    }

    fn try_start_api(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(&self.bin);
        command.args(["api", "--config", &self.path.to_string_lossy(), "--listen", "127.0.0.1:0"]);
        command.args(["--wait-seconds", "30"]).env("RUST_LOG", "warn");
        let api = Process::try_start(command)?;
        anyhow::ensure!(api.first_line.starts_with("http://"), "the API printed {:?}", api.first_line);
        self.api_url = api.first_line.clone();
        self.api = Some(api);
        Ok(())
    }

    /// The API's base URL (it changes when the API starts again).
    pub fn api_url(&self) -> String {
        self.api_url.clone()
    }
}

/// Replica `replica` of `shard` of the cluster file `config`, run by `command` (the
/// `shardspace` binary, or what launches it on a host), once it says it listens.
pub(crate) fn start_node(mut command: Command, config: &Path, shard: u32, replica: u32) -> anyhow::Result<Process> {
    command.args(["node", "--config", &config.to_string_lossy()]);
    command.args(["--shard", &shard.to_string(), "--replica", &replica.to_string()]);
    command.env("RUST_LOG", std::env::var("SHARDSPACE_TEST_LOG").unwrap_or("warn".into()));
    let process = Process::try_start(command)?;
    // A port taken between `free_port` and the replica's bind shows here, not as a hang later.
    let line = &process.first_line;
    anyhow::ensure!(line.starts_with("listening"), "replica {shard}/{replica} printed {line:?}");
    Ok(process)
}

/// The Python SDK's checker serving `contracts` on `port` (0: one the OS picks).
fn start_python_checker(contracts: &[&str], port: u16) -> anyhow::Result<Process> {
    start_python_checker_by(Command::new(python()?), contracts, "127.0.0.1", port)
}

/// As `start_python_checker`, on `host:port`, run by `command` (Python, or what launches
/// it on a host).
pub(crate) fn start_python_checker_by(
    mut command: Command,
    contracts: &[&str],
    host: &str,
    port: u16,
) -> anyhow::Result<Process> {
    command.args(["-m", "shardspace.checker", "--host", host, "--port", &port.to_string()]);
    for contract in contracts {
        command.arg(repo_root().join(format!("contracts/python/{contract}/{contract}.py")));
    }
    let checker = Process::try_start(command)?;
    anyhow::ensure!(checker.first_line.starts_with("http://"), "a checker printed {:?}", checker.first_line);
    Ok(checker)
}

/// `shardspace checker` on `port` (0: one the OS picks).
fn start_rust_checker(bin: &Path, port: u16) -> anyhow::Result<Process> {
    let mut command = Command::new(bin);
    command.args(["checker", "--port", &port.to_string()]).env("RUST_LOG", "warn");
    let checker = Process::try_start(command)?;
    anyhow::ensure!(checker.first_line.starts_with("http://"), "a checker printed {:?}", checker.first_line);
    Ok(checker)
}

/// How long a test waits for a cluster-wide condition.
pub const DEADLINE: Duration = Duration::from_secs(60);
