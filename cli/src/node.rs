//! `shardspace node`, `shardspace config gen` and `shardspace keys`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use shardspace_node::config::{CheckerPlace, ClusterFile, Layout, generate as generate_cluster};
use tokio::sync::{oneshot, watch};

#[derive(Debug, clap::Args)]
pub struct NodeFlags {
    /// The cluster file.
    #[arg(long)]
    config: PathBuf,
    /// The shard this replica belongs to.
    #[arg(long, default_value_t = 0)]
    shard: u32,
    /// The replica's id within its shard.
    #[arg(long)]
    replica: u32,
}

#[derive(Debug, clap::Args)]
pub struct GenFlags {
    #[arg(long, default_value_t = 2)]
    shards: u32,
    #[arg(long, default_value_t = 4)]
    replicas: u32,
    /// Where to write cluster.toml and keys/.
    #[arg(long)]
    dir: PathBuf,
    /// Replica k (counting across shards) listens on base + 2k (peers) and base + 2k + 1 (clients).
    #[arg(long, default_value_t = 7300)]
    base_port: u16,
    /// The hosts, names or IPs, comma-separated: replica k runs on host k mod H, so that
    /// with four hosts and four replicas per shard each host runs one replica of every shard.
    #[arg(long = "hosts", visible_alias = "host", value_delimiter = ',', default_value = "127.0.0.1")]
    hosts: Vec<String>,
    /// Replicas bind every interface (0.0.0.0) and advertise their host: behind NAT, in containers.
    #[arg(long)]
    listen_any: bool,
    /// A contract's checker, repeatable: `bank=7101` for a checker on each replica's own host
    /// at port 7101, or `bank=http://10.0.0.9:7101` for one checker every replica calls.
    #[arg(long = "checker", value_name = "CONTRACT=PORT|URL", value_parser = parse_checker)]
    checkers: Vec<(String, CheckerPlace)>,
    #[arg(long, default_value = "local")]
    cluster: String,
}

#[derive(Debug, clap::Args)]
pub struct KeysFlags {
    /// The cluster file the client is added to.
    #[arg(long)]
    config: PathBuf,
    /// The client's name, which `shardspace api --client NAME` takes.
    #[arg(long)]
    name: String,
}

/// `shardspace keys`: a key for another client (an API instance): writes `keys/NAME.key`
/// beside the cluster file and adds its `[[clients]]` entry.
pub fn keys(flags: &KeysFlags) -> anyhow::Result<()> {
    let key_file = shardspace_node::config::add_client(&flags.config, &flags.name)?;
    println!("{}", key_file.display());
    eprintln!(
        "client {:?} added to {}. Copy the cluster file to every replica's host and restart the replicas \
         (one at a time keeps the cluster up); copy the key file to the API's host only, then run \
         `shardspace api --config {} --client {}`.",
        flags.name,
        flags.config.display(),
        flags.config.display(),
        flags.name
    );
    Ok(())
}

fn parse_checker(text: &str) -> Result<(String, CheckerPlace), String> {
    let (contract, place) =
        text.split_once('=').ok_or_else(|| format!("{text:?} is not CONTRACT=PORT or CONTRACT=URL"))?;
    if !shardspace_core::is_name(contract) {
        return Err(format!("{contract:?} is not a contract name"));
    }
    Ok((contract.to_string(), place.parse()?))
}

pub fn generate(flags: &GenFlags) -> anyhow::Result<()> {
    anyhow::ensure!(flags.shards >= 1 && flags.replicas >= 1, "a cluster has at least one shard of one replica");
    let layout = Layout {
        cluster: flags.cluster.clone(),
        shards: flags.shards,
        replicas: flags.replicas,
        hosts: flags.hosts.clone(),
        listen_any: flags.listen_any,
        base_port: flags.base_port,
        checkers: flags.checkers.iter().cloned().collect(),
    };
    let path = generate_cluster(&layout, &flags.dir)?;
    println!("{}", path.display());
    Ok(())
}

pub fn run_node(flags: &NodeFlags) -> anyhow::Result<()> {
    init_logs();
    let cluster = ClusterFile::load(&flags.config)?;
    let base = flags.config.parent().map(PathBuf::from).unwrap_or_default();
    let config = cluster.node(&base, flags.shard, flags.replica)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (tx_shutdown, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = tx_shutdown.send(true);
        });
        let (ready, bound) = oneshot::channel();
        let (tx_reload, reloads) = tokio::sync::mpsc::channel(4);
        // Caught from now on: SIGHUP's default would end the process.
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let place = (flags.shard, flags.replica);
        tokio::spawn(reload_on_hangup(hangups, flags.config.clone(), base, place, tx_reload));
        let node = tokio::spawn(shardspace_node::run(config, shutdown, ready, reloads));
        if let Ok(bound) = bound.await {
            let mut stdout = std::io::stdout();
            writeln!(stdout, "listening peer={} client={}", bound.peer, bound.client)
                .and_then(|()| stdout.flush())
                .context("cannot write the addresses to stdout")?;
        }
        node.await.context("the replica task panicked")?.context("the replica stopped")
    })
}

/// Reads the cluster file again at each SIGHUP and hands this replica's configuration on;
/// a file that does not load is named and changes nothing.
async fn reload_on_hangup(
    hangups: std::io::Result<tokio::signal::unix::Signal>,
    path: PathBuf,
    base: PathBuf,
    (shard, replica): (u32, u32),
    tx_reload: tokio::sync::mpsc::Sender<shardspace_node::config::NodeConfig>,
) {
    let Ok(mut hangups) = hangups else {
        tracing::warn!("SIGHUP cannot be caught: the cluster file is read at start only");
        return;
    };
    while hangups.recv().await.is_some() {
        match ClusterFile::load(&path).and_then(|file| file.node(&base, shard, replica)) {
            Ok(config) => {
                tracing::info!(path = %path.display(), "cluster file reloaded (SIGHUP)");
                if tx_reload.send(config).await.is_err() {
                    return;
                }
            }
            Err(error) => tracing::error!(%error, "the cluster file was not reloaded: fix it and send SIGHUP again"),
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stop with Ctrl-C");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
