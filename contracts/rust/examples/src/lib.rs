//! The example contracts' Rust checkers, together: what `shardspace-example-checkers` serves.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use shardspace_checker::{CheckerServer, Contract};

/// Every example contract's checkers.
pub fn contracts() -> Vec<Contract> {
    vec![
        shardspace_contract_hello::contract(),
        shardspace_contract_addition::contract(),
        shardspace_contract_bank::contract(),
        shardspace_contract_petition::contract(),
        shardspace_contract_dump::contract(),
    ]
}

/// Serves every example contract's checker at `address` until `shutdown`; the first line on
/// stdout is the base URL (port 0 picks a free one).
pub async fn serve(address: SocketAddr, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let server = CheckerServer::bind(address, contracts())
        .await
        .with_context(|| format!("cannot listen on {address}: is the port taken? try --port 0"))?;
    let url = server.url()?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{url}").and_then(|()| stdout.flush()).context("cannot write the URL to stdout")?;
    tracing::info!(%url, "serving the example contracts' Rust checkers");
    server.run(shutdown).await.context("the checker server failed")?;
    tracing::info!("stopped");
    Ok(())
}
