//! `shardspace checker`: serves the Rust checkers of the example contracts, so
//! that one binary (and one container image) runs replicas and checkers alike.
//! The first line on stdout is the base URL (port 0 picks one).

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct CheckerFlags {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Print the contracts it serves, one a line, and exit (`make start-all` finds them so).
    #[arg(long)]
    list: bool,
}

pub fn run(flags: &CheckerFlags) -> anyhow::Result<()> {
    if flags.list {
        for contract in shardspace_example_checkers::contracts() {
            println!("{}", contract.name());
        }
        return Ok(());
    }
    crate::node::init_logs();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(shardspace_example_checkers::serve(
        SocketAddr::new(flags.host, flags.port),
        crate::node::wait_for_signal(),
    ))
}
