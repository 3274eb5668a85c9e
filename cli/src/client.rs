//! The client commands against the API: `submit`, `object`, `tx`, `status`.
//! Readable output by default, the API's JSON with `--json`. Exit codes: 0
//! done (a transaction committed), 3 a transaction aborted, 2 bad input or a
//! 4xx answer, 1 the API cannot be reached or answered 5xx (try again later).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

/// Exit code of an aborted transaction.
const EXIT_ABORTED: u8 = 3;
/// Exit code when the API cannot be reached.
const EXIT_UNREACHABLE: u8 = 1;

#[derive(Debug, clap::Args)]
pub struct ApiTarget {
    /// The API's base URL.
    #[arg(long, env = "SHARDSPACE_API", default_value = "http://127.0.0.1:5000")]
    api: String,
    /// Print the API's JSON answer as it is.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SubmitFlags {
    /// The envelope ({"transaction": ..., "store": ...}) as JSON: a file, or - for stdin.
    file: PathBuf,
    /// Return at once instead of waiting for the outcome.
    #[arg(long)]
    no_wait: bool,
    /// Only ask the contracts' checkers, through every replica of its shards, and print
    /// their verdict and reason: nothing is ordered (exit 0 valid, 3 invalid, 1 no verdict).
    #[arg(long, conflicts_with = "no_wait")]
    dry_run: bool,
    #[command(flatten)]
    target: ApiTarget,
}

#[derive(Debug, clap::Args)]
pub struct IdFlags {
    /// The id: 64 lowercase hex digits.
    id: String,
    #[command(flatten)]
    target: ApiTarget,
}

/// An answer of the API: its status and JSON body.
pub struct Answer {
    status: u16,
    body: Value,
}

fn call(target: &ApiTarget, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<Answer> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
        let url = format!("{}{path}", target.api.trim_end_matches('/'));
        let mut request = client.request(method, &url);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.map_err(|error| Unreachable(format!("{url}: {error}")))?;
        let status = response.status().as_u16();
        let text = response.text().await.context("the answer did not arrive whole")?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    })
}

/// The API could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the API at {0} (is the cluster running? `make start-all` starts one)")]
struct Unreachable(String);

/// Runs a client command; prints its answer and returns the exit code.
pub fn run(command: impl FnOnce() -> anyhow::Result<(Answer, bool)>) -> ExitCode {
    match command() {
        Ok((answer, json)) => report(&answer, json),
        Err(error) if error.downcast_ref::<Unreachable>().is_some() => {
            eprintln!("shardspace: {error}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
        Err(error) => {
            eprintln!("shardspace: {error:#}");
            ExitCode::from(crate::EXIT_BAD_INPUT)
        }
    }
}

fn report(answer: &Answer, json: bool) -> ExitCode {
    if json {
        println!("{}", serde_json::to_string_pretty(&answer.body).unwrap_or_default());
    }
    if !(200..300).contains(&answer.status) && answer.body.get("error").is_none() {
        eprintln!("error {}: {}", answer.status, answer.body);
        return ExitCode::from(if answer.status >= 500 { EXIT_UNREACHABLE } else { crate::EXIT_BAD_INPUT });
    }
    if let Some(error) = answer.body.get("error") {
        if !json {
            let text = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or("").to_string();
            eprintln!("error {} {}: {}", answer.status, text("kind"), text("message"));
            if !text("hint").is_empty() {
                eprintln!("  hint: {}", text("hint"));
            }
            if let Some(tx) = answer.body.get("txId").and_then(Value::as_str) {
                eprintln!("  txId: {tx}");
            }
        }
        // Ours or passing (5xx): worth trying again later; the caller's (4xx): not as it is.
        return ExitCode::from(if answer.status >= 500 { EXIT_UNREACHABLE } else { crate::EXIT_BAD_INPUT });
    }
    if !json {
        if answer.body.get("shards").is_some_and(Value::is_array) {
            print_cluster(&answer.body);
        } else {
            print_readable(&answer.body);
        }
    }
    match (answer.body.get("outcome").and_then(Value::as_str), answer.body.get("valid")) {
        (Some("abort"), _) | (_, Some(Value::Bool(false))) => ExitCode::from(EXIT_ABORTED),
        (_, Some(Value::Null)) => ExitCode::from(EXIT_UNREACHABLE),
        _ => ExitCode::SUCCESS,
    }
}

/// `/v1/cluster` as a table: a line per shard, then one per replica.
fn print_cluster(cluster: &Value) {
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let health = |healthy: &Value| if healthy.as_bool() == Some(true) { "healthy" } else { "NOT HEALTHY" };
    println!("cluster {}: {}", text(&cluster["cluster"]), health(&cluster["healthy"]));
    for shard in cluster["shards"].as_array().into_iter().flatten() {
        println!(
            "shard {}: {} ({} of {} replicas up, quorum {})",
            text(&shard["id"]),
            health(&shard["healthy"]),
            text(&shard["up"]),
            shard["replicas"].as_array().map_or(0, Vec::len),
            text(&shard["quorum"])
        );
        for replica in shard["replicas"].as_array().into_iter().flatten() {
            let up = if replica["up"].as_bool() == Some(true) { "up" } else { "DOWN" };
            println!(
                "  replica {}  {:<22} {:<4} height {:<8} round {:<8} pending {}",
                text(&replica["id"]),
                text(&replica["address"]),
                up,
                text(&replica["height"]),
                text(&replica["round"]),
                text(&replica["pending"])
            );
        }
    }
    if let Some(checkers) = cluster["checkers"].as_object() {
        for (contract, url) in checkers {
            println!("checker {contract}: {}", text(url));
        }
    }
}

/// `key: value` lines, nested objects indented.
fn print_readable(body: &Value) {
    fn walk(value: &Value, indent: usize) {
        let pad = "  ".repeat(indent);
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match value {
                        Value::Object(_) => {
                            println!("{pad}{key}:");
                            walk(value, indent + 1);
                        }
                        Value::Array(items) if items.iter().any(Value::is_object) => {
                            println!("{pad}{key}:");
                            for item in items {
                                walk(item, indent + 1);
                                println!();
                            }
                        }
                        Value::Array(items) => {
                            let items: Vec<String> = items.iter().map(scalar).collect();
                            println!("{pad}{key}: {}", items.join(", "));
                        }
                        _ => println!("{pad}{key}: {}", scalar(value)),
                    }
                }
            }
            other => println!("{pad}{}", scalar(other)),
        }
    }
    fn scalar(value: &Value) -> String {
        match value {
            Value::String(text) => text.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        }
    }
    walk(body, 0);
}

pub fn submit(flags: &SubmitFlags) -> anyhow::Result<(Answer, bool)> {
    let mut body = Vec::new();
    if flags.file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut body).context("cannot read the envelope from stdin")?;
    } else {
        body = std::fs::read(&flags.file).with_context(|| format!("cannot read {}", flags.file.display()))?;
    }
    let path = match (flags.dry_run, flags.no_wait) {
        (true, _) => "/v1/transactions/check",
        (false, true) => "/v1/transactions?wait=false",
        (false, false) => "/v1/transactions",
    };
    Ok((call(&flags.target, reqwest::Method::POST, path, Some(body))?, flags.target.json))
}

pub fn object(flags: &IdFlags) -> anyhow::Result<(Answer, bool)> {
    let path = format!("/v1/objects/{}", flags.id);
    Ok((call(&flags.target, reqwest::Method::GET, &path, None)?, flags.target.json))
}

pub fn transaction(id: &str, target: &ApiTarget) -> anyhow::Result<(Answer, bool)> {
    let path = format!("/v1/transactions/{id}");
    Ok((call(target, reqwest::Method::GET, &path, None)?, target.json))
}

pub fn status(target: &ApiTarget) -> anyhow::Result<(Answer, bool)> {
    Ok((call(target, reqwest::Method::GET, "/v1/cluster", None)?, target.json))
}
