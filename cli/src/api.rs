//! `shardspace api --config CLUSTER.toml [--client NAME]`: the client API (DESIGN.md
//! §7), which reaches the replicas as a client of the cluster file's `[[clients]]`. The
//! first line on stdout is its base URL.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use shardspace_api::{ApiConfig, ApiServer};
use shardspace_node::config::ClusterFile;

#[derive(Debug, clap::Args)]
pub struct ApiFlags {
    /// The cluster file.
    #[arg(long)]
    config: PathBuf,
    /// The client of the cluster file's `[[clients]]` this API is: its key file opens the
    /// replicas' request interface.
    #[arg(long, default_value = shardspace_node::config::API_CLIENT)]
    client: String,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// How long a submitter waits for an outcome before it is told to ask again (1 to 3600).
    #[arg(long, default_value_t = 30)]
    wait_seconds: u64,
    /// Transactions in flight at once.
    #[arg(long, default_value_t = 1_000)]
    pending_max: usize,
    /// Open connections at once.
    #[arg(long, default_value_t = 512)]
    connections_max: usize,
}

pub fn run(flags: &ApiFlags) -> anyhow::Result<()> {
    crate::node::init_logs();
    let cluster = ClusterFile::load(&flags.config)?;
    let base = flags.config.parent().map(std::path::PathBuf::from).unwrap_or_default();
    let credentials = cluster.client_credentials(&base, &flags.client)?;
    let config = ApiConfig {
        listen: flags.listen,
        wait: Duration::from_secs(flags.wait_seconds.clamp(1, 3_600)),
        pending_max: flags.pending_max,
        connections_max: flags.connections_max,
        ..ApiConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Caught before the URL is printed: SIGHUP's default would end the process.
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let server = ApiServer::bind(&cluster, credentials, config)
            .await
            .map_err(|error| anyhow::anyhow!("{}", error.message))?;
        let address = server.local_addr().context("the listener has no address")?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "http://{address}").and_then(|()| stdout.flush()).context("cannot write the URL")?;
        tracing::info!(%address, cluster = cluster.cluster, shards = cluster.shards.len(), "client API listening");
        tokio::spawn(reload_on_hangup(hangups, flags.config.clone(), server.api()));
        server.run(crate::node::wait_for_signal()).await.context("the API server failed")?;
        tracing::info!("client API stopped");
        Ok(())
    })
}

/// Reads the cluster file again at each SIGHUP and takes its contracts and checkers; a file
/// that does not load is named and changes nothing.
async fn reload_on_hangup(
    hangups: std::io::Result<tokio::signal::unix::Signal>,
    path: PathBuf,
    api: std::sync::Arc<shardspace_api::Api>,
) {
    let Ok(mut hangups) = hangups else {
        tracing::warn!("SIGHUP cannot be caught: the cluster file is read at start only");
        return;
    };
    while hangups.recv().await.is_some() {
        match ClusterFile::load(&path) {
            Ok(file) => {
                let changed = api.reload(&file);
                tracing::info!(path = %path.display(), changed, contracts = ?api.known().contracts, "cluster file reloaded (SIGHUP)");
            }
            Err(error) => tracing::error!(%error, "the cluster file was not reloaded: fix it and send SIGHUP again"),
        }
    }
}
