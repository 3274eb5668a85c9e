//! Your own contract on the cluster, as `docs/contracts.md` tells it: this test runs every
//! `sh` block of its two "first contract" sections, as written, against a local cluster
//! started by `contrib/local-cluster.sh` (what `make start-all` runs; the guide's "Before
//! you start" is done here with free ports and a folder of the test's own). The contracts
//! are scaffolded in Python and in Rust, their own tests pass, `contract add` serves each
//! and has every replica and the API take it without a restart (same pids), a transaction
//! of each commits through the API and an invalid one aborts. The cluster is stopped by
//! the test, even when it fails.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use shardspace_checker::TransactionBuilder;
use shardspace_testkit::cluster::{python, repo_root};
use shardspace_testkit::processes::wait_until;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shardspace"))
}

/// A local cluster of `contrib/local-cluster.sh` in a folder of its own, on free ports;
/// stopped when dropped.
struct Local {
    var: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    api: String,
}

impl Local {
    fn start() -> Self {
        let var = tempfile::tempdir().unwrap();
        let base = free_ports(24);
        let [python_port, rust_port, api_port] = [free_ports(1), free_ports(1), free_ports(1)];
        let api = format!("http://127.0.0.1:{api_port}");
        let python = python().unwrap();
        let path = format!(
            "{}:{}:{}",
            bin().parent().unwrap().display(),
            Path::new(&python).parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let env = vec![
            ("SHARDSPACE_VAR", var.path().to_string_lossy().into_owned()),
            ("SHARDSPACE_BIN", bin().parent().unwrap().to_string_lossy().into_owned()),
            ("SHARDSPACE_PYTHON", python),
            ("SHARDSPACE_API", api.clone()),
            ("PATH", path),
            ("BASE_PORT", base.to_string()),
            ("CHECKER_PYTHON_PORT", python_port.to_string()),
            ("CHECKER_RUST_PORT", rust_port.to_string()),
            ("API_PORT", api_port.to_string()),
            ("START_WAIT_SECONDS", "120".into()),
            // The Rust contract is built as the checkout is, sharing its compiled dependencies.
            ("SHARDSPACE_CONTRACT_PROFILE", "dev".into()),
            ("CARGO_TARGET_DIR", repo_root().join("target").to_string_lossy().into_owned()),
        ];
        let local = Self { var, env, api };
        let started = local.script("start");
        assert!(started.status.success(), "make start-all failed:\n{}", String::from_utf8_lossy(&started.stdout));
        local
    }

    fn script(&self, what: &str) -> Output {
        let mut command = Command::new(repo_root().join("contrib/local-cluster.sh"));
        command.arg(what).envs(self.env.iter().map(|(key, value)| (*key, value)));
        command.output().unwrap()
    }

    /// `script`, with one more variable.
    fn script_with(&self, what: &str, (key, value): (&str, &str)) -> Output {
        let mut command = Command::new(repo_root().join("contrib/local-cluster.sh"));
        command.arg(what).envs(self.env.iter().map(|(key, value)| (*key, value))).env(key, value);
        command.output().unwrap()
    }

    /// Runs a block of the guide with bash (stopping at the first failing command), in
    /// `dir`; what it printed, stdout then stderr.
    fn run(&self, block: &str, dir: &Path) -> String {
        let mut command = Command::new("bash");
        command.args(["-e", "-o", "pipefail", "-c", block]).current_dir(dir);
        let output = command.envs(self.env.iter().map(|(key, value)| (*key, value))).output().unwrap();
        let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "the guide's block failed:\n{block}\n--- it printed:\n{printed}");
        printed
    }

    /// The pids of the replicas and the API, by service.
    fn cluster_pids(&self) -> Vec<(String, String)> {
        let mut pids: Vec<(String, String)> = std::fs::read_dir(self.var.path().join("run"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("shard-") || name == "api.pid")
            .map(|name| {
                let pid = std::fs::read_to_string(self.var.path().join("run").join(&name)).unwrap();
                (name, pid.trim().to_string())
            })
            .collect();
        pids.sort();
        pids
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.script("stop");
    }
}

/// The first of `count` consecutive ports that are free now.
fn free_ports(count: u16) -> u16 {
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let Some(last) = first.checked_add(count) else { continue };
        if (first..last).all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return first;
        }
    }
}

/// The `sh` blocks of the guide's section titled `title`.
fn blocks(guide: &str, title: &str) -> Vec<String> {
    let start = guide.find(&format!("\n## {title}\n")).unwrap_or_else(|| panic!("no section {title:?}"));
    let section = &guide[start + title.len() + 5..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section.split("```sh\n").skip(1).map(|rest| rest[..rest.find("\n```").unwrap()].to_string()).collect()
}

/// What the API says of a `write` call of `contract`.
fn submit_write(api: &str, contract: &str) -> Value {
    runtime().block_on(submitted_write(api, contract))
}

async fn submitted_write(api: &str, contract: &str) -> Value {
    let envelope = TransactionBuilder::new(contract, "write").parameter("early").output("early").build().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let body = serde_json::to_vec(&envelope).unwrap();
    let answer = client.post(format!("{api}/v1/transactions")).body(body).send().await.unwrap();
    answer.json().await.unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn the_contracts_guide_scaffolds_adds_and_commits_in_python_and_rust_on_a_running_cluster() {
    let guide = std::fs::read_to_string(repo_root().join("docs/contracts.md")).unwrap();
    let local = Local::start();
    let work = local.var.path().join("contracts");
    std::fs::create_dir_all(&work).unwrap();
    let pids = local.cluster_pids();
    assert_eq!(pids.len(), 9, "{pids:?}");
    let sections = [
        ("Your first contract in Python", "notes", "notes.write: a note holds 1 to 280 characters"),
        ("Your first contract in Rust", "ledgerbook", "ledgerbook.write: the note must hold the text given"),
    ];
    let mut timings = Vec::new();
    for (title, contract, also) in sections {
        let began = Instant::now();
        let mut printed = String::new();
        let mut first_commit = None;
        for block in blocks(&guide, title) {
            if block.contains("contract add") {
                // Not known before: refused before anything is ordered.
                let early = submit_write(&local.api, contract);
                assert_eq!(early["error"]["kind"], "unknown_contract", "{early}");
            }
            printed += &local.run(&block, &work);
            if first_commit.is_none() && printed.contains("outcome: commit") {
                first_commit = Some(began.elapsed());
            }
        }
        let told: &[&str] = &[
            "39 of 39 answers as the checker protocol says",
            "outcome: commit",
            "valid: false",
            &format!("reason: {also}"),
            "outcome: abort",
            "reason: checker_rejected",
            &format!("checkerReason: {also}"),
            "dry run: exit code 3",
            "submit: exit code 3",
        ];
        for expected in told {
            assert!(printed.contains(expected), "{title}: the guide's commands did not print {expected:?}:\n{printed}");
        }
        let first_commit = first_commit.unwrap();
        timings
            .push(format!("{contract}: {:.1} s from `contract new` to the first commit", first_commit.as_secs_f64()));
    }
    assert_eq!(local.cluster_pids(), pids, "a replica or the API was restarted");
    for (service, pid) in &pids {
        assert!(Path::new(&format!("/proc/{pid}")).exists(), "{service} (pid {pid}) is not running");
    }
    let status = local.script("status");
    let status = String::from_utf8_lossy(&status.stdout);
    for service in ["checker-notes", "checker-ledgerbook", "api"] {
        let line = status.lines().find(|line| line.starts_with(service)).unwrap_or_default();
        assert!(line.ends_with(" healthy"), "{service}: {line:?} in\n{status}");
    }

    // `make stop-all`, then `make start-all` with one more contract folder listed: the added
    // contracts are served again, the listed one is added, and each commits.
    let stopped = local.script("stop");
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stdout));
    local.run("shardspace contract new listed --lang python", &work);
    let listed = work.join("listed").to_string_lossy().into_owned();
    let restarted = local.script_with("start", ("SHARDSPACE_CONTRACTS", &listed));
    let said = String::from_utf8_lossy(&restarted.stdout);
    assert!(
        restarted.status.success() && said.contains("adding the contract at") && said.contains("added listed"),
        "{said}"
    );
    for contract in ["notes", "ledgerbook", "listed"] {
        let outcome = submit_write(&local.api, contract);
        assert_eq!(outcome["outcome"], "commit", "{contract} after the restart: {outcome}");
    }

    // Removed as the guide says: its line out of [checkers], then SIGHUP to the replicas
    // and the API; its transactions are refused from then on, the others go on.
    let cluster_file = local.var.path().join("cluster/cluster.toml");
    let text = std::fs::read_to_string(&cluster_file).unwrap();
    let without: Vec<&str> = text.lines().filter(|line| !line.starts_with("listed = ")).collect();
    assert_eq!(without.len() + 1, text.lines().count(), "{text}");
    std::fs::write(&cluster_file, without.join("\n") + "\n").unwrap();
    for (_, pid) in local.cluster_pids() {
        assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    }
    let refused = || async { submitted_write(&local.api, "listed").await["error"]["kind"] == "unknown_contract" };
    runtime().block_on(wait_until("listed refused after SIGHUP", Duration::from_secs(20), refused));
    assert_eq!(submit_write(&local.api, "notes")["outcome"], "commit");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{}\n", timings.join("; ")).as_bytes());
}
