//! `shardspace`: one binary, many subcommands (DESIGN.md §2). Thin: it parses
//! flags, sets up logging, loads configuration and calls the libraries.

mod api;
mod checker;
mod client;
mod contract;
mod inspect;
mod ledger;
mod node;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's malloc: a replica's checkpoints allocate and free buffers
/// the size of its state, and glibc then kept that memory (its mmap threshold rises with
/// each large free, and freed heap stays mapped), so resident memory climbed in steps at
/// every checkpoint; jemalloc gives freed pages back within seconds (issue 6, the soak).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Shardspace: a sharded object ledger.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one replica of the cluster.
    Node(node::NodeFlags),
    /// Serve the example contracts' Rust checkers.
    Checker(checker::CheckerFlags),
    /// Run the client API (HTTP, :5000 by default).
    Api(api::ApiFlags),
    /// Submit an envelope through the API and print its outcome.
    Submit(client::SubmitFlags),
    /// Print an object (its value and status, confirmed by f+1 replicas).
    Object(client::IdFlags),
    /// Print a transaction's outcome on each of its shards (`tx ID`), or work with a
    /// transaction offline (`tx inspect FILE`).
    Tx(TxFlags),
    /// Print the cluster's health: each shard and replica.
    Status(client::ApiTarget),
    /// Follow every transaction the cluster decides, as it is decided (`--after ID` goes on
    /// from an event printed before).
    Events(ledger::EventsFlags),
    /// List decided transactions, filtered, a page at a time (`--after` the `next` printed).
    Transactions(ledger::TransactionsFlags),
    /// Print an object, the transactions that created and consumed it, and the objects
    /// before and after it.
    History(ledger::HistoryFlags),
    /// List objects: of a contract, a status, or whose value has a field equal to a value
    /// (bank accounts of one owner: --contract bank --field owner --equals KEY).
    Objects(ledger::ObjectsFlags),
    /// Benchmark local clusters through the API; writes bench/results/<UTC time>.{json,md,png}.
    Bench(shardspace_testkit::bench::BenchFlags),
    /// Cluster files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Contracts of your own: `contract new` writes one to start from.
    #[command(subcommand)]
    Contract(contract::ContractCommand),
    /// Make a key for another client of the replicas (an API instance) and list it in the
    /// cluster file's [[clients]].
    Keys(node::KeysFlags),
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct TxFlags {
    #[command(subcommand)]
    command: Option<TxCommand>,
    /// The transaction's id: 64 lowercase hex digits.
    #[arg(required = true)]
    id: Option<String>,
    #[command(flatten)]
    target: client::ApiTarget,
}

#[derive(Debug, Subcommand)]
enum TxCommand {
    /// Prints the txId, the created objects' ids and the concerned shards of an
    /// envelope or a bare transaction, as JSON.
    Inspect(inspect::Flags),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Writes a cluster file and one key file per replica.
    Gen(node::GenFlags),
}

/// Exit code for input that cannot be used (a malformed transaction, a missing file).
pub const EXIT_BAD_INPUT: u8 = 2;

/// `shardspace bench`: this binary starts the clusters it measures.
fn bench(flags: &shardspace_testkit::bench::BenchFlags) -> anyhow::Result<()> {
    let bin = std::env::current_exe().map_err(|error| anyhow::anyhow!("cannot find this binary: {error}"))?;
    shardspace_testkit::bench::run(&bin, flags)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Tx(TxFlags { command: Some(TxCommand::Inspect(flags)), .. }) => inspect::run(&flags),
        Command::Tx(TxFlags { id, target, .. }) => {
            return client::run(|| client::transaction(id.as_deref().unwrap_or_default(), &target));
        }
        Command::Submit(flags) => return client::run(|| client::submit(&flags)),
        Command::Object(flags) => return client::run(|| client::object(&flags)),
        Command::Status(target) => return client::run(|| client::status(&target)),
        Command::Events(flags) => return ledger::events(&flags),
        Command::History(flags) => return ledger::history(&flags),
        Command::Transactions(flags) => return ledger::transactions(&flags),
        Command::Objects(flags) => return ledger::objects(&flags),
        Command::Node(flags) => node::run_node(&flags),
        Command::Checker(flags) => checker::run(&flags),
        Command::Api(flags) => api::run(&flags),
        Command::Config(ConfigCommand::Gen(flags)) => node::generate(&flags),
        Command::Keys(flags) => node::keys(&flags),
        Command::Contract(command) => contract::run(&command),
        Command::Bench(flags) => bench(&flags),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shardspace: {error:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
