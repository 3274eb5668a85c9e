//! Contracts of one's own. `shardspace contract new NAME --lang python|rust [--dir DIR]`
//! writes a working contract to start from, in a folder of its own: its checker, the
//! client side that builds its transactions, its tests and a README (the templates are in
//! `cli/templates/contract/`). `contract serve DIR` serves its checker; `contract add DIR`
//! serves it beside the running local cluster and has the cluster take it, without a
//! restart (the cluster file's `[checkers]`, then SIGHUP to the replicas and the API).

use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(Debug, clap::Subcommand)]
pub enum ContractCommand {
    /// Write a new contract to start from: DIR/NAME, with its checker, client side and tests.
    New(NewFlags),
    /// Serve a contract's checker in the foreground (a Rust one is built first).
    Serve(ServeFlags),
    /// Serve a contract's checker beside the running local cluster and make every replica and
    /// the API know it, without a restart.
    Add(AddFlags),
    /// Run a contract's own tests, then the checker protocol against its checker.
    Test(TestFlags),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Python,
    Rust,
}

#[derive(Debug, clap::Args)]
pub struct NewFlags {
    /// The contract's name (lower case letters, digits and _, starting with a letter): its
    /// `contractID`, and its folder's name.
    name: String,
    #[arg(long, value_enum)]
    lang: Lang,
    /// Where its folder goes.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The Rust SDK (`checker-sdk/rust` of a Shardspace checkout) the crate depends on; by
    /// default the one this binary was built from.
    #[arg(long)]
    sdk: Option<PathBuf>,
}

pub fn run(command: &ContractCommand) -> anyhow::Result<()> {
    match command {
        ContractCommand::New(flags) => {
            let folder = new(flags)?;
            println!("{}", folder.display());
            Ok(())
        }
        ContractCommand::Serve(flags) => serve(flags),
        ContractCommand::Add(flags) => add(flags),
        ContractCommand::Test(flags) => test(flags),
    }
}

/// The files of each language's template: where each goes (`NAME` replaced), and its text.
const PYTHON: &[(&str, &str)] = &[
    ("NAME.py", include_str!("../templates/contract/python/contract.py")),
    ("test_NAME.py", include_str!("../templates/contract/python/test_contract.py")),
    ("README.md", include_str!("../templates/contract/python/README.md")),
];
const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/contract/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("../templates/contract/rust/src/lib.rs")),
    ("src/main.rs", include_str!("../templates/contract/rust/src/main.rs")),
    ("tests/contract.rs", include_str!("../templates/contract/rust/tests/contract.rs")),
    ("README.md", include_str!("../templates/contract/rust/README.md")),
    (".gitignore", "/target\n"),
];

/// Writes the contract's folder, `dir/name`; its path. Nothing is overwritten.
pub fn new(flags: &NewFlags) -> anyhow::Result<PathBuf> {
    let name = flags.name.as_str();
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(
        valid && shardspace_core::is_name(name),
        "{name:?} is not a contract name for a new contract: lower case letters, digits and _, starting with a \
         letter (it names a Python module and a Rust crate too)"
    );
    let folder = flags.dir.join(name);
    anyhow::ensure!(!folder.exists(), "{} exists already: choose another name or --dir", folder.display());
    let (files, sdk) = match flags.lang {
        Lang::Python => (PYTHON, PathBuf::new()),
        Lang::Rust => (RUST, sdk_path(flags.sdk.as_deref())?),
    };
    // As the content of a TOML string.
    let sdk_in_toml = sdk.to_string_lossy().replace('\\', "\\\\").replace('"', "\\\"");
    for (path, text) in files {
        let path = folder.join(path.replace("NAME", name));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = text.replace("__NAME__", name).replace("__SDK__", &sdk_in_toml);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The versions the SDK is built and tested with: its checkout's lock file, which cargo
    // trims to what the crate uses (and a build shares what the checkout compiled).
    let lock = sdk.join("../../Cargo.lock");
    if flags.lang == Lang::Rust && lock.is_file() {
        std::fs::copy(&lock, folder.join("Cargo.lock")).with_context(|| format!("cannot copy {}", lock.display()))?;
    }
    Ok(folder)
}

/// The Rust SDK's folder.
fn sdk_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../checker-sdk/rust");
    let sdk = given.map_or(built_from, Path::to_path_buf);
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the Rust SDK is not at {}: give the checker-sdk/rust folder of a Shardspace checkout with --sdk",
            sdk.display()
        )
    })?;
    anyhow::ensure!(sdk.join("Cargo.toml").is_file(), "{} holds no Cargo.toml: not the Rust SDK", sdk.display());
    Ok(sdk)
}

#[derive(Debug, clap::Args)]
pub struct ServeFlags {
    /// The contract's folder (as `contract new` writes it).
    dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
}

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

/// A contract folder's language: Rust if it holds a Cargo.toml.
fn lang_of(dir: &Path) -> Lang {
    if dir.join("Cargo.toml").is_file() { Lang::Rust } else { Lang::Python }
}

/// The Python that serves Python contracts: `SHARDSPACE_PYTHON`, else the checkout's
/// virtual environment (`make venv`), else `python3`.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("SHARDSPACE_PYTHON") {
        return python.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.is_file() { venv } else { "python3".into() }
}

/// Builds a Rust contract's crate; its checker binary. The release profile, unless
/// `SHARDSPACE_CONTRACT_PROFILE` names another (the tests build `dev`, sharing the
/// checkout's compiled dependencies through `CARGO_TARGET_DIR`).
fn build_rust(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    let parsed: toml::Table = text.parse().with_context(|| format!("{} is not TOML", manifest.display()))?;
    let package = parsed.get("package").and_then(|package| package.get("name")).and_then(toml::Value::as_str);
    let package = package.with_context(|| format!("{} names no [package] name", manifest.display()))?;
    let profile = std::env::var("SHARDSPACE_CONTRACT_PROFILE").unwrap_or_else(|_| "release".into());
    eprintln!("building {} (cargo build --profile {profile})", dir.display());
    let built = std::process::Command::new("cargo")
        .args(["build", "--profile", &profile, "--manifest-path"])
        .arg(&manifest)
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run cargo: is the Rust toolchain installed?")?;
    anyhow::ensure!(built.success(), "cargo build of {} failed (its errors are above)", dir.display());
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), PathBuf::from);
    let folder = if profile == "dev" { "debug" } else { profile.as_str() };
    Ok(target.join(folder).join(package))
}

/// The command that serves the contract in `dir` at `host:port`.
fn checker_command(dir: &Path, host: std::net::IpAddr, port: u16) -> anyhow::Result<std::process::Command> {
    let dir = dir.canonicalize().with_context(|| format!("no contract folder at {}", dir.display()))?;
    let mut command = match lang_of(&dir) {
        Lang::Rust => std::process::Command::new(build_rust(&dir)?),
        Lang::Python => {
            let mut command = std::process::Command::new(python());
            command.args(["-m", "shardspace.checker"]);
            command
        }
    };
    command.args(["--host", &host.to_string(), "--port", &port.to_string()]);
    if lang_of(&dir) == Lang::Python {
        command.arg(&dir);
    }
    Ok(command)
}

/// `contract serve`: builds (Rust) and becomes the contract's checker, in the foreground.
pub fn serve(flags: &ServeFlags) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut command = checker_command(&flags.dir, flags.host, flags.port)?;
    let error = command.exec();
    Err(anyhow::anyhow!("cannot run {command:?}: {error}"))
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
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

#[derive(Debug, clap::Args)]
pub struct TestFlags {
    /// The contract's folder (as `contract new` writes it).
    dir: PathBuf,
}

/// The shared fixtures' malformed requests (checker-sdk/fixtures): every checker answers them
/// alike, whatever its contract's rules.
const ERROR_CASES: &str = include_str!("../../checker-sdk/fixtures/checker_errors.json");

/// `contract test`: the contract's own tests, then a conformance pass of the checker protocol
/// (docs/checkers.md) against its checker, served for the pass: the shared fixtures'
/// malformed requests, unknown contracts and methods, wrong paths and verbs, and `/batch`,
/// each answered with the status and error kind every checker gives.
pub fn test(flags: &TestFlags) -> anyhow::Result<()> {
    let dir = flags.dir.canonicalize().with_context(|| format!("no contract folder at {}", flags.dir.display()))?;
    let mut own = match lang_of(&dir) {
        Lang::Python => {
            let mut command = std::process::Command::new(python());
            command.args(["-m", "pytest", "-q"]).arg(&dir);
            command
        }
        Lang::Rust => {
            let mut command = std::process::Command::new("cargo");
            command.args(["test", "--manifest-path"]).arg(dir.join("Cargo.toml"));
            command
        }
    };
    eprintln!("== its own tests: {own:?}");
    let passed = own.status().with_context(|| format!("cannot run {own:?}"))?;
    anyhow::ensure!(passed.success(), "the contract's own tests failed (above)");

    let mut command = checker_command(&dir, std::net::IpAddr::from([127, 0, 0, 1]), 0)?;
    let mut checker = Served(command.stdout(std::process::Stdio::piped()).spawn().context("cannot start the checker")?);
    let stdout = checker.0.stdout.take().context("the checker's stdout")?;
    let mut url = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut url)?;
    let url = url.trim().to_string();
    anyhow::ensure!(url.starts_with("http://"), "the checker printed {url:?}, not its URL");
    eprintln!("== the checker protocol, against {url}");
    let failures = runtime()?.block_on(conformance(&url))?;
    anyhow::ensure!(failures == 0, "{failures} answers are not what the checker protocol says (above)");
    Ok(())
}

/// A checker process, stopped when dropped.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs every case against the checker at `url`; how many answered otherwise.
async fn conformance(url: &str) -> anyhow::Result<usize> {
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(20)).build()?;
    let listing: serde_json::Value = http.get(format!("{url}/")).send().await?.json().await?;
    let contracts = listing["contracts"].as_object().with_context(|| format!("GET {url}/ lists no contracts"))?;
    let (contract, methods) = contracts.iter().next().context("the checker serves no contract")?;
    let method = methods.get(0).and_then(serde_json::Value::as_str).context("its contract has no method")?;
    let cases: Vec<serde_json::Value> = serde_json::from_str(ERROR_CASES)?;
    let mut checks: Vec<(String, reqwest::Method, String, String, u16, String)> = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap_or_default().to_string();
        // Which contract and method a path names matters there; the others hold for any.
        if name.starts_with("path_mismatch") {
            continue;
        }
        let path = case["path"].as_str().unwrap_or_default();
        let path = if name == "unknown_method_percent_encoded" {
            let mut letters = method.chars();
            let first = letters.next().unwrap_or('m');
            format!("/{contract}/%{:02x}{}", u32::from(first), letters.as_str())
        } else {
            let mut path = path.to_string();
            for example in ["bank", "dump", "hello"] {
                path = path.replacen(&format!("/{example}"), &format!("/{contract}"), 1);
            }
            for example in ["transfer", "put", "greet"] {
                path = path.replacen(&format!("/{example}"), &format!("/{method}"), 1);
            }
            path
        };
        let mut body = case["body"].as_str().unwrap_or_default().to_string();
        for example in ["\"bank\"", "\"dump\"", "\"hello\""] {
            body = body.replace(example, &format!("\"{contract}\""));
        }
        for example in ["\"transfer\"", "\"put\"", "\"greet\""] {
            body = body.replace(example, &format!("\"{method}\""));
        }
        let verb = reqwest::Method::from_bytes(case["method"].as_str().unwrap_or("POST").as_bytes())?;
        let status = u16::try_from(case["status"].as_u64().unwrap_or_default()).unwrap_or_default();
        checks.push((name, verb, path, body, status, case["kind"].as_str().unwrap_or_default().to_string()));
    }
    let batch = |body: &str| ("/batch".to_string(), body.to_string());
    for (name, (path, body), status, kind) in [
        ("batch_not_an_object", batch("[1]"), 400, "malformed_json"),
        ("batch_without_requests", batch("{}"), 400, "missing_field"),
        ("batch_requests_not_a_list", batch(r#"{"requests": "x"}"#), 400, "wrong_type"),
    ] {
        checks.push((name.into(), reqwest::Method::POST, path, body, status, kind.into()));
    }
    let mut failures = 0;
    for (name, verb, path, body, status, kind) in &checks {
        // The length always said, as replicas say it (an empty body too: else 411).
        let request = http.request(verb.clone(), format!("{url}{path}")).header("content-length", body.len());
        let answer = request.body(body.clone()).send().await?;
        let got_status = answer.status().as_u16();
        let got: serde_json::Value = answer.json().await.unwrap_or(serde_json::Value::Null);
        let got_kind = got["error"]["kind"].as_str().unwrap_or("-");
        if (got_status, got_kind) == (*status, kind.as_str()) {
            println!("ok      {name}: {verb} {path} -> {status} {kind}");
        } else {
            failures += 1;
            println!("FAILED  {name}: {verb} {path} -> {got_status} {got_kind}, the protocol says {status} {kind}");
        }
    }
    // A batch answers each request as its own call would.
    let unknown = serde_json::json!({"requests": [{"contractID": contract, "methodID": "no_such_method", "inputs": [],
        "referenceInputs": [], "parameters": [], "outputs": [], "returns": [], "dependencies": []}]});
    let answer: serde_json::Value = http.post(format!("{url}/batch")).json(&unknown).send().await?.json().await?;
    let result = &answer["results"][0];
    if (result["status"].as_u64(), result["error"]["kind"].as_str()) == (Some(404), Some("unknown_method")) {
        println!("ok      batch_of_an_unknown_method: its result is 404 unknown_method");
    } else {
        failures += 1;
        println!("FAILED  batch_of_an_unknown_method: {answer}, the protocol says a result of 404 unknown_method");
    }
    println!("{} of {} answers as the checker protocol says", checks.len() + 1 - failures, checks.len() + 1);
    Ok(failures)
}
