//! `shardspace checker`: serves the Rust checkers of the example contracts, so
//! that one binary (and one container image) runs replicas and checkers alike.
//! The first line on stdout is the base URL (port 0 picks one).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use shardspace_checker::CheckerServer;

#[derive(Debug, clap::Args)]
pub struct CheckerFlags {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
}

pub fn run(flags: &CheckerFlags) -> anyhow::Result<()> {
    crate::node::init_logs();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let address = SocketAddr::new(flags.host, flags.port);
        let server = CheckerServer::bind(address, shardspace_example_checkers::contracts())
            .await
            .with_context(|| format!("cannot listen on {address}: is the port taken? try --port 0"))?;
        let url = server.url()?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{url}").and_then(|()| stdout.flush()).context("cannot write the URL to stdout")?;
        tracing::info!(%url, "serving the example contracts' Rust checkers");
        server.run(crate::node::wait_for_signal()).await.context("the checker server failed")?;
        tracing::info!("stopped");
        Ok(())
    })
}
