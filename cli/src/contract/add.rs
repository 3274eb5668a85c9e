//! `contract add`: a contract's checker beside the running local cluster, named in the
//! cluster file and taken by every replica and the API on SIGHUP.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::runtime;

#[derive(Debug, clap::Args)]
pub struct AddFlags {
    /// The contract's folder (as `contract new` writes it).
    dir: PathBuf,
    /// The local cluster's folder (`make start-all` keeps it in var/).
    #[arg(long, env = "SHARDSPACE_VAR", default_value = "var")]
    var: PathBuf,
    /// The port its checker listens on; a free one by default.
    #[arg(long)]
    port: Option<u16>,
    /// The API, which must come to know the contract.
    #[arg(long, env = "SHARDSPACE_API", default_value = "http://127.0.0.1:5000")]
    api: String,
}

/// The list of contracts added to the local cluster (`var/contracts.list`): one line each,
/// its checker's port and its folder, so that `make start-all` serves them again.
const ADDED: &str = "contracts.list";
/// How long a checker has to print its URL (a Rust one's build comes before).
const CHECKER_STARTUP: std::time::Duration = std::time::Duration::from_secs(600);

/// `contract add`: serves the contract's checker beside the local cluster (its pid in
/// `var/run/`, its log in `var/log/`), names it in the cluster file's `[checkers]`, and has
/// every replica and the API read the file again (SIGHUP): no restart, nothing lost.
pub fn add(flags: &AddFlags) -> anyhow::Result<()> {
    let dir = flags.dir.canonicalize().with_context(|| format!("no contract folder at {}", flags.dir.display()))?;
    let var = &flags.var;
    let cluster_file = var.join("cluster/cluster.toml");
    anyhow::ensure!(
        cluster_file.is_file(),
        "no local cluster at {}: start one with `make start-all` (or give its folder with --var)",
        var.display()
    );
    let _adding = one_add_at_a_time(var)?;
    let folder = dir.file_name().and_then(|name| name.to_str()).unwrap_or("contract").to_string();
    if let Some(other) = added_folders(var).into_iter().find(|other| *other != dir && other.ends_with(&folder)) {
        anyhow::bail!(
            "a contract folder named {folder:?} was added already, from {}: rename this one",
            other.display()
        );
    }
    let service = format!("checker-{folder}");
    // The new checker starts beside the old one (if this contract was added before), on a
    // port of its own; the old one stops once the cluster has moved to the new one.
    let port = match flags.port {
        Some(port) => port,
        None => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
    };
    let new_pid_file = var.join(format!("run/{service}.pid.new"));
    let (url, mut child) = start_detached(var, &service, &dir, port, &new_pid_file)?;
    let switched = (|| {
        let served = contracts_served(&url)?;
        anyhow::ensure!(!served.is_empty(), "the checker at {url} serves no contract");
        let checkers = served.iter().map(|name| (name.clone(), url.clone())).collect();
        shardspace_node::config::set_checkers(&cluster_file, &checkers)?;
        Ok(served)
    })();
    let served = match switched {
        Ok(served) => served,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&new_pid_file);
            return Err(error);
        }
    };
    remember(var, port, &dir)?;
    let signalled = hang_up(var)?;
    wait_known(&flags.api, &served)?;
    let pid_file = var.join(format!("run/{service}.pid"));
    stop_ours(&pid_file, &folder);
    std::fs::rename(&new_pid_file, &pid_file).with_context(|| format!("cannot write {}", pid_file.display()))?;
    println!(
        "added {} (checker {url}, pid file {}, log {}/log/{service}.log); {signalled} processes reloaded the \
         cluster file, and the API at {} takes its transactions",
        served.join(", "),
        pid_file.display(),
        var.display(),
        flags.api
    );
    Ok(())
}

/// An exclusive lock on `var/contracts.lock`, held until dropped: two `contract add` at once
/// on one cluster run one after the other, so that neither loses the other's line of
/// `contracts.list` or swaps pid files under it.
fn one_add_at_a_time(var: &Path) -> anyhow::Result<std::fs::File> {
    let path = var.join("contracts.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let cannot_lock = || format!("cannot lock {}", path.display());
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!("another `shardspace contract add` is running on this cluster: waiting for it to finish");
            lock.lock().with_context(cannot_lock)?;
        }
        Err(std::fs::TryLockError::Error(error)) => return Err(error).with_context(cannot_lock),
    }
    Ok(lock)
}

/// The folders of the contracts added before (`var/contracts.list`).
fn added_folders(var: &Path) -> Vec<PathBuf> {
    let list = std::fs::read_to_string(var.join(ADDED)).unwrap_or_default();
    list.lines().filter_map(|line| line.split_once('\t')).map(|(_, folder)| PathBuf::from(folder)).collect()
}

/// The pid in `pid_file`, if that process is alive and its command line holds `mark` (a pid
/// file left behind may name someone else's process now).
fn ours(pid_file: &Path, mark: &str) -> Option<String> {
    let pid = std::fs::read_to_string(pid_file).ok()?.trim().to_string();
    let command_line = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&command_line).contains(mark).then_some(pid)
}

/// Stops the process of `pid_file` if it is ours (its command line holds `mark`), and waits
/// (up to 10 s) until it has exited.
fn stop_ours(pid_file: &Path, mark: &str) {
    let Some(pid) = ours(pid_file, mark) else { return };
    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Adds `dir` (at `port`) to the list of added contracts, once.
fn remember(var: &Path, port: u16, dir: &Path) -> anyhow::Result<()> {
    let path = var.join(ADDED);
    let list = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines: Vec<String> = list
        .lines()
        .filter(|line| line.split_once('\t').is_none_or(|(_, folder)| Path::new(folder) != dir))
        .map(str::to_string)
        .collect();
    lines.push(format!("{port}\t{}", dir.display()));
    std::fs::write(&path, lines.join("\n") + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// Starts `shardspace contract serve DIR` in its own process group, its output in
/// `var/log/`, its pid in `var/run/`; its URL once it prints it.
fn start_detached(
    var: &Path,
    service: &str,
    dir: &Path,
    port: u16,
    pid_file: &Path,
) -> anyhow::Result<(String, std::process::Child)> {
    use std::os::unix::process::CommandExt;
    for folder in ["log", "run"] {
        std::fs::create_dir_all(var.join(folder))?;
    }
    let (out_path, log_path) = (var.join(format!("log/{service}.out")), var.join(format!("log/{service}.log")));
    let out = std::fs::File::create(&out_path).with_context(|| format!("cannot create {}", out_path.display()))?;
    let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let bin = std::env::current_exe().context("cannot find this binary")?;
    let mut child = std::process::Command::new(bin)
        .args(["contract", "serve", "--port", &port.to_string()])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start the checker")?;
    std::fs::write(pid_file, format!("{}\n", child.id()))?;
    let started = std::time::Instant::now();
    loop {
        let printed = std::fs::read_to_string(&out_path).unwrap_or_default();
        if let Some(url) = printed.lines().next().filter(|_| printed.contains('\n')) {
            return Ok((url.trim().to_string(), child));
        }
        if let Some(status) = child.try_wait()? {
            let _ = std::fs::remove_file(pid_file);
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
            anyhow::bail!("the checker of {} exited ({status}):\n{}", dir.display(), tail.join("\n"));
        }
        if started.elapsed() >= CHECKER_STARTUP {
            let _ = child.kill();
            let _ = std::fs::remove_file(pid_file);
        }
        anyhow::ensure!(
            started.elapsed() < CHECKER_STARTUP,
            "the checker of {} printed no URL within {CHECKER_STARTUP:?} (see {})",
            dir.display(),
            log_path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The contracts a checker serves (its `GET /`).
fn contracts_served(url: &str) -> anyhow::Result<Vec<String>> {
    let listing: serde_json::Value = runtime()?.block_on(async {
        let answer = reqwest::get(format!("{url}/")).await?;
        answer.json().await
    })?;
    let contracts =
        listing["contracts"].as_object().with_context(|| format!("{url}/ lists no contracts: {listing}"))?;
    Ok(contracts.keys().cloned().collect())
}

/// Sends SIGHUP to the local cluster's replicas and API; how many.
fn hang_up(var: &Path) -> anyhow::Result<usize> {
    let mut signalled = 0;
    for entry in std::fs::read_dir(var.join("run")).with_context(|| format!("no {}/run", var.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(service) = name.strip_suffix(".pid") else { continue };
        if !(service.starts_with("shard-") || service == "api") {
            continue;
        }
        let Some(pid) = ours(&var.join("run").join(&name), "shardspace") else { continue };
        let sent = std::process::Command::new("kill").args(["-HUP", &pid]).status();
        if sent.is_ok_and(|status| status.success()) {
            signalled += 1;
        }
    }
    Ok(signalled)
}

/// Waits until the API lists every contract of `served` (it reloads on SIGHUP).
fn wait_known(api: &str, served: &[String]) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    runtime()?.block_on(async {
        loop {
            let cluster: Option<serde_json::Value> = match reqwest::get(format!("{api}/v1/cluster")).await {
                Ok(answer) => answer.json().await.ok(),
                Err(_) => None,
            };
            let known = |name: &String| {
                cluster
                    .as_ref()
                    .and_then(|c| c["contracts"].as_array())
                    .is_some_and(|list| list.iter().any(|c| c == name))
            };
            if served.iter().all(known) {
                return Ok(());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the API at {api} does not list {} 20 s after SIGHUP: is it running, and with this cluster file?",
                served.join(", ")
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
}
