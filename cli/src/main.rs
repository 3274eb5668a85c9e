//! `shardspace`: one binary, many subcommands (DESIGN.md §2). Thin: it parses
//! flags, sets up logging, loads configuration and calls the libraries.

mod checker;
mod inspect;
mod node;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Shardspace: a sharded object ledger.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with transactions offline.
    #[command(subcommand)]
    Tx(TxCommand),
    /// Run one replica of the cluster.
    Node(node::NodeFlags),
    /// Serve the example contracts' Rust checkers.
    Checker(checker::CheckerFlags),
    /// Cluster files.
    #[command(subcommand)]
    Config(ConfigCommand),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Tx(TxCommand::Inspect(flags)) => inspect::run(&flags),
        Command::Node(flags) => node::run_node(&flags),
        Command::Checker(flags) => checker::run(&flags),
        Command::Config(ConfigCommand::Gen(flags)) => node::generate(&flags),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shardspace: {error:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
