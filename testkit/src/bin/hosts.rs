//! `hosts` (`make hosts`): a cluster spread over hosts made of network namespaces on
//! this machine, for a person to try faults by hand. Two shards of four replicas:
//! replica r of each shard and its own bank checker on `host-r`, the API on `api`.
//! Reads commands on stdin (`help` lists them); everything it made is removed when it
//! ends, by `quit`, end of input, Ctrl-C or SIGTERM. Needs root.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use shardspace_testkit::host_cluster::{API_HOST, HostCluster, replica_host};

const HELP: &str = "commands:
  cut HOST                 cut HOST off from every other host
  partition A,B C,D,api    split the hosts into groups (a host in no group is cut off)
  block HOST SHARD         drop HOST's traffic to the client ports of SHARD's replicas
  heal                     remove every cut, partition and block
  kill N | start N         kill (SIGKILL) or start again what host-N runs, with its data
  hosts                    each host's namespace and address
  quit";

fn main() -> ExitCode {
    let bin = match std::env::args().nth(1) {
        Some(bin) => PathBuf::from(bin),
        None => {
            eprintln!("usage: hosts PATH/TO/shardspace");
            return ExitCode::from(2);
        }
    };
    if let Some(reason) = shardspace_testkit::hosts::unavailable() {
        eprintln!("hosts: {reason}");
        return ExitCode::from(2);
    }
    // Signals are caught from the start: one that comes while the hosts are being made ends
    // the program through the same cleanup as `quit`, once they are.
    let (tx_lines, lines) = std::sync::mpsc::channel();
    let stdin_lines = tx_lines.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if stdin_lines.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = stdin_lines.send(None);
    });
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let terminated = async {
                match terminate.as_mut() {
                    Some(terminate) => terminate.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated => {}
            }
        });
        let _ = tx_lines.send(None);
    });
    eprintln!("==> starting 2 shards × 4 replicas over 4 hosts, the API on its own host");
    let cluster = match HostCluster::start(&bin, 2, 4) {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("hosts: {error:#}");
            return ExitCode::from(1);
        }
    };
    let api = cluster.hosts.host(API_HOST);
    println!("API: {}", cluster.api_url());
    println!("cluster file: {}", cluster.path.display());
    println!("try: ip netns exec {} {} status --api {}", api.namespace, bin.display(), cluster.api_url());
    println!("{HELP}");
    while let Ok(Some(line)) = lines.recv() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let done = match words.as_slice() {
            ["quit"] | ["exit"] => break,
            [] => Ok(()),
            ["cut", host] => cluster.hosts.cut(host),
            ["partition", groups @ ..] => {
                let groups: Vec<Vec<&str>> = groups.iter().map(|group| group.split(',').collect()).collect();
                let groups: Vec<&[&str]> = groups.iter().map(Vec::as_slice).collect();
                cluster.hosts.partition(&groups)
            }
            ["block", host, shard] => match shard.parse::<u32>() {
                Ok(shard) if (shard as usize) < cluster.file.shards.len() => {
                    cluster.hosts.block(host, &cluster.client_addresses(shard))
                }
                _ => Err(anyhow::anyhow!("no shard {shard}")),
            },
            ["heal"] => cluster.hosts.heal(),
            ["kill", n] | ["start", n] => match n.parse::<u32>() {
                Ok(n) if n < 4 && words[0] == "kill" => {
                    cluster.kill_host(n);
                    Ok(())
                }
                Ok(n) if n < 4 => cluster.start_host(n),
                _ => Err(anyhow::anyhow!(
                    "no host {n}: `kill N` and `start N` take 0 to 3 ({} to {})",
                    replica_host(0),
                    replica_host(3)
                )),
            },
            ["hosts"] => {
                for host in &cluster.hosts.hosts {
                    println!("{:<8} {:<16} namespace {}", host.name, host.address, host.namespace);
                }
                Ok(())
            }
            _ => Err(anyhow::anyhow!("not a command: {line:?}\n{HELP}")),
        };
        match done {
            Ok(()) => println!("ok"),
            Err(error) => println!("error: {error:#}"),
        }
    }
    eprintln!("==> stopping and removing the hosts");
    drop(cluster);
    ExitCode::SUCCESS
}
