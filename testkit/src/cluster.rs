//! A whole local cluster of real processes for tests: the bank contract's
//! Python checker, the other example contracts' Rust checkers (`shardspace
//! checker`), shards of `shardspace node` replicas on OS-chosen ports, and
//! optionally the client API (`shardspace api`). Every process is killed when
//! the cluster is dropped; the data folder lives as long as the cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shardspace_node::config::{ClusterFile, Durability, Layout, generate};

use crate::processes::{Process, free_port};

/// The repository's root (testkit's parent folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The Python with the SDK installed: `$SHARDSPACE_PYTHON`, else the Makefile's venv.
pub fn python() -> String {
    std::env::var("SHARDSPACE_PYTHON").unwrap_or_else(|_| {
        let venv = repo_root().join(".venv/bin/python");
        assert!(venv.exists(), "no Python with the SDK: run `make venv` or set SHARDSPACE_PYTHON");
        venv.to_string_lossy().into_owned()
    })
}

/// One local cluster at a time per test binary: clusters started side by side take each
/// other's ports (between `free_port` and a replica's bind) and share two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Debug)]
pub struct LocalCluster {
    /// The `shardspace` binary.
    bin: PathBuf,
    checkers: Vec<Process>,
    /// By shard, then replica; `None` while stopped.
    replicas: Vec<Vec<Option<Process>>>,
    api: Option<Process>,
    /// The API's base URL, once started.
    api_url: String,
    pub path: PathBuf,
    pub file: ClusterFile,
    pub dir: tempfile::TempDir,
    /// Held for the cluster's life; dropped last.
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl LocalCluster {
    /// Starts the checkers and `shards` × `replicas` replicas (round timeout 300 ms,
    /// durability `normal`); the API too when `with_api`.
    pub fn start(bin: &Path, shards: u32, replicas: u32, with_api: bool) -> Self {
        // A test that failed while holding it poisons it; the next one may still go.
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut python_checker = Command::new(python());
        python_checker.args(["-m", "shardspace.checker", "--port", "0"]);
        python_checker.arg(repo_root().join("contracts/python/bank/bank.py"));
        let python_checker = Process::start(python_checker);
        let mut rust_checker = Command::new(bin);
        rust_checker.args(["checker", "--port", "0"]).env("RUST_LOG", "warn");
        let rust_checker = Process::start(rust_checker);
        for checker in [&python_checker, &rust_checker] {
            assert!(checker.first_line.starts_with("http://"), "a checker printed {:?}", checker.first_line);
        }

        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("no temporary folder: {error}"));
        let layout = Layout { cluster: "test".into(), shards, replicas, host: "127.0.0.1".into(), base_port: 1 };
        let path = generate(&layout, dir.path()).unwrap_or_else(|error| panic!("{error}"));
        let mut file = ClusterFile::load(&path).unwrap_or_else(|error| panic!("{error}"));
        for replica in file.shards.iter_mut().flat_map(|shard| shard.replicas.iter_mut()) {
            replica.peer_address = format!("127.0.0.1:{}", free_port());
            replica.client_address = format!("127.0.0.1:{}", free_port());
            replica.metrics_address = Some(format!("127.0.0.1:{}", free_port()));
        }
        file.bft.round_timeout_ms = Some(300);
        file.bft.durability = Durability::Normal;
        file.checkers.insert("bank".into(), python_checker.first_line.clone());
        for contract in ["dump", "hello", "addition", "petition"] {
            file.checkers.insert(contract.into(), rust_checker.first_line.clone());
        }
        let text = toml::to_string(&file).unwrap_or_else(|error| panic!("{error}"));
        std::fs::write(&path, text).unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));

        let stopped = (0..shards).map(|_| (0..replicas).map(|_| None).collect()).collect();
        let mut cluster = Self {
            bin: bin.to_path_buf(),
            checkers: vec![python_checker, rust_checker],
            replicas: stopped,
            api: None,
            api_url: String::new(),
            path,
            file,
            dir,
            _turn: turn,
        };
        cluster.start_replicas();
        if with_api {
            cluster.start_api();
        }
        cluster
    }

    pub fn start_replica(&mut self, shard: u32, replica: u32) {
        let mut command = Command::new(&self.bin);
        command.args(["node", "--config", &self.path.to_string_lossy()]);
        command.args(["--shard", &shard.to_string(), "--replica", &replica.to_string()]);
        command.env("RUST_LOG", "warn");
        let process = Process::start(command);
        // A port taken between `free_port` and the replica's bind shows here, not as a hang later.
        assert!(process.first_line.starts_with("listening"), "replica {shard}/{replica}: {:?}", process.first_line);
        self.replicas[shard as usize][replica as usize] = Some(process);
    }

    /// Kills one replica (SIGKILL: a crash).
    pub fn kill_replica(&mut self, shard: u32, replica: u32) {
        self.replicas[shard as usize][replica as usize] = None;
    }

    pub fn start_replicas(&mut self) {
        for shard in 0..self.replicas.len() as u32 {
            for replica in 0..self.replicas[shard as usize].len() as u32 {
                if self.replicas[shard as usize][replica as usize].is_none() {
                    self.start_replica(shard, replica);
                }
            }
        }
    }

    /// Kills the checkers: the replicas then get no verdicts.
    pub fn kill_checkers(&mut self) {
        self.checkers.clear();
    }

    /// Kills every replica and the API (the checkers stay).
    pub fn kill_all(&mut self) {
        self.api = None;
        for replica in self.replicas.iter_mut().flatten() {
            *replica = None;
        }
    }

    /// Starts the API on a port the OS picks (a new one at each start).
    pub fn start_api(&mut self) {
        let mut command = Command::new(&self.bin);
        command.args(["api", "--config", &self.path.to_string_lossy(), "--listen", "127.0.0.1:0"]);
        command.args(["--wait-seconds", "30"]).env("RUST_LOG", "warn");
        let api = Process::start(command);
        assert!(api.first_line.starts_with("http://"), "the API printed {:?}", api.first_line);
        self.api_url = api.first_line.clone();
        self.api = Some(api);
    }

    /// The API's base URL (it changes when the API starts again).
    pub fn api_url(&self) -> String {
        self.api_url.clone()
    }
}

/// How long a test waits for a cluster-wide condition.
pub const DEADLINE: Duration = Duration::from_secs(60);
