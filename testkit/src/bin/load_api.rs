//! `load_api`: drives a running cluster's API with `dump` transactions from
//! closed-loop clients and reports committed transactions per second and the
//! latency from submit to outcome (p50, p99), each the median of `--runs` runs.
//! Single-shard (one output) or cross-shard (outputs on two shards). A first
//! measure for the client API; `make bench` (the benchmark issue) supersedes it.

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use shardspace_core::{ShardMap, Transaction};

#[derive(Debug, Parser)]
struct Flags {
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    api: String,
    /// Shards of the cluster (to place outputs).
    #[arg(long, default_value_t = 2)]
    shards: u32,
    /// Transactions whose outputs land on two shards.
    #[arg(long)]
    cross: bool,
    /// Clients, each with one transaction in flight.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// A `dump` transaction, unique by `nonce`, whose outputs land on one shard or on two.
fn dump(nonce: u64, map: ShardMap, cross: bool) -> Value {
    for salt in 0u64.. {
        let transaction = Transaction {
            contract_id: "dump".into(),
            method_id: "put".into(),
            input_ids: vec![],
            reference_input_ids: vec![],
            parameters: vec![json!(nonce), json!(salt)],
            returns: vec![],
            outputs: vec![format!("\"{nonce}\""), format!("\"{nonce}b\"")],
            dependencies: vec![],
        };
        if (map.concerned_shards(&transaction).len() == 2) == cross {
            return json!({"transaction": transaction, "store": {}});
        }
    }
    unreachable!("some salt places the outputs as asked")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let map = ShardMap::new(flags.shards)?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let run_id: u64 = rand::random::<u32>().into();
    let (mut rates, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..flags.runs {
        let deadline = Instant::now() + Duration::from_secs(flags.seconds);
        let clients = (0..flags.clients).map(|client| {
            let (http, url) = (http.clone(), format!("{}/v1/transactions", flags.api));
            async move {
                let (mut latencies, mut aborted) = (Vec::new(), 0usize);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let nonce = (run_id << 32) | ((run as u64) << 24) | ((client as u64) << 16) | n;
                    n += 1;
                    let body = dump(nonce, map, flags.cross);
                    let started = Instant::now();
                    let answer: Value = match http.post(&url).json(&body).send().await {
                        Ok(response) => response.json().await.unwrap_or(Value::Null),
                        Err(_) => Value::Null,
                    };
                    if started.elapsed() > Duration::from_secs(1) {
                        eprintln!("over 1 s: {:?} {}", started.elapsed(), answer);
                    }
                    if answer["outcome"] == "commit" {
                        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        aborted += 1;
                    }
                }
                (latencies, aborted)
            }
        });
        let started = Instant::now();
        let results = futures::future::join_all(clients).await;
        let elapsed = started.elapsed().as_secs_f64();
        let mut latencies: Vec<f64> = results.iter().flat_map(|(l, _)| l.iter().copied()).collect();
        let failed: usize = results.iter().map(|(_, a)| a).sum();
        latencies.sort_by(f64::total_cmp);
        let rate = latencies.len() as f64 / elapsed;
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        println!(
            "run {run}: {} committed in {elapsed:.1} s = {rate:.0} tx/s, p50 {p50:.1} ms, p99 {p99:.1} ms, {failed} not committed",
            latencies.len()
        );
        rates.push(rate);
        p50s.push(p50);
        p99s.push(p99);
    }
    let kind = if flags.cross { "cross-shard" } else { "single-shard" };
    println!(
        "{kind} dump, {} clients: {:.0} committed tx/s, p50 {:.1} ms, p99 {:.1} ms (medians of {} runs)",
        flags.clients,
        median(rates),
        median(p50s),
        median(p99s),
        flags.runs
    );
    Ok(())
}
