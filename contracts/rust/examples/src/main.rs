//! `shardspace-example-checkers --port PORT`: serves the Rust checkers of every
//! example contract. The first line on stdout is the base URL (port 0 picks one).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::Parser;
use shardspace_checker::CheckerServer;

/// Serves the Rust checkers of the example contracts (hello, addition, bank, petition, dump).
#[derive(Debug, Parser)]
struct Flags {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let address = SocketAddr::new(flags.host, flags.port);
    let server = CheckerServer::bind(address, shardspace_example_checkers::contracts())
        .await
        .with_context(|| format!("cannot listen on {address}: is the port taken? try --port 0"))?;
    let url = server.url()?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{url}").and_then(|()| stdout.flush()).context("cannot write the URL to stdout")?;
    tracing::info!(%url, "serving the example contracts' Rust checkers");
    server.run(shutdown_signal()).await.context("the checker server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stop with Ctrl-C");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
