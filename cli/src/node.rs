//! `shardspace node` and `shardspace config gen`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use shardspace_node::config::{ClusterFile, Layout, generate as generate_cluster};
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
    /// Replica k listens on base + 2k (peers) and base + 2k + 1 (clients).
    #[arg(long, default_value_t = 7300)]
    base_port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value = "local")]
    cluster: String,
}

pub fn generate(flags: &GenFlags) -> anyhow::Result<()> {
    let layout = Layout {
        cluster: flags.cluster.clone(),
        shards: flags.shards,
        replicas: flags.replicas,
        host: flags.host.clone(),
        base_port: flags.base_port,
    };
    anyhow::ensure!(flags.shards >= 1 && flags.replicas >= 1, "a cluster has at least one shard of one replica");
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
        let node = tokio::spawn(shardspace_node::run(config, shutdown, ready));
        if let Ok(bound) = bound.await {
            let mut stdout = std::io::stdout();
            writeln!(stdout, "listening peer={} client={}", bound.peer, bound.client)
                .and_then(|()| stdout.flush())
                .context("cannot write the addresses to stdout")?;
        }
        node.await.context("the replica task panicked")?.context("the replica stopped")
    })
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
