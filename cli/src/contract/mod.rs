//! Contracts of one's own. `shardspace contract new NAME --lang python|rust [--dir DIR]`
//! writes a working contract to start from, in a folder of its own: its checker, the
//! client side that builds its transactions, its tests and a README (the templates are in
//! `cli/templates/contract/`). `contract serve DIR` serves its checker; `contract add DIR`
//! serves it beside the running local cluster and has the cluster take it, without a
//! restart (the cluster file's `[checkers]`, then SIGHUP to the replicas and the API);
//! `contract test DIR` runs its own tests and the checker protocol's conformance pass.

use std::path::{Path, PathBuf};

use anyhow::Context;

mod add;
mod conformance;
mod scaffold;

pub use add::AddFlags;
pub use conformance::TestFlags;
pub use scaffold::NewFlags;

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

pub fn run(command: &ContractCommand) -> anyhow::Result<()> {
    match command {
        ContractCommand::New(flags) => {
            let folder = scaffold::new(flags)?;
            println!("{}", folder.display());
            Ok(())
        }
        ContractCommand::Serve(flags) => serve(flags),
        ContractCommand::Add(flags) => add::add(flags),
        ContractCommand::Test(flags) => conformance::test(flags),
    }
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

/// A runtime for the few HTTP calls of these commands.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}
