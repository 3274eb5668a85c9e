//! `shardspace tx inspect [FILE|-] [--shards N]`: what a transaction is, offline.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use shardspace_core::{Envelope, Limits, ShardMap, Transaction};

#[derive(Debug, clap::Args)]
pub struct Flags {
    /// A file holding an envelope or a bare transaction; `-` or nothing reads stdin.
    file: Option<PathBuf>,
    /// How many shards the cluster has.
    #[arg(long, default_value_t = 2)]
    shards: u32,
}

pub fn run(flags: &Flags) -> anyhow::Result<()> {
    let shard_map = ShardMap::new(flags.shards).context("--shards")?;
    let (name, bytes) = read_input(flags.file.as_ref())?;
    let transaction = parse(&bytes).with_context(|| format!("{name} is not a valid transaction"))?;
    let shards: Vec<u32> = shard_map.concerned_shards(&transaction).into_iter().map(|shard| shard.0).collect();
    let outputs: Vec<String> = transaction.created_objects().iter().map(|object| object.id.to_hex()).collect();
    let report = json!({"txId": transaction.tx_id().to_hex(), "outputs": outputs, "shards": shards});
    println!("{report}");
    Ok(())
}

/// Reads at most one byte over the envelope limit: enough for validation to refuse it.
fn read_input(file: Option<&PathBuf>) -> anyhow::Result<(String, Vec<u8>)> {
    let cap = u64::try_from(Limits::default().envelope_bytes_max).unwrap_or(u64::MAX).saturating_add(1);
    let mut bytes = Vec::new();
    match file.filter(|path| path.as_os_str() != "-") {
        Some(path) => {
            let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            file.take(cap).read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
            Ok((path.display().to_string(), bytes))
        }
        None => {
            std::io::stdin().take(cap).read_to_end(&mut bytes).context("cannot read stdin")?;
            Ok(("stdin".to_string(), bytes))
        }
    }
}

/// An envelope (an object with a `transaction` field) or a bare transaction.
fn parse(bytes: &[u8]) -> anyhow::Result<Transaction> {
    let limits = Limits::default();
    if bytes.len() > limits.envelope_bytes_max {
        bail!("the input is over {} bytes, the envelope limit", limits.envelope_bytes_max);
    }
    let is_envelope = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(fields)) => fields.contains_key("transaction"),
        Ok(_) => bail!("expected a JSON object: an envelope or a transaction"),
        Err(error) => bail!("malformed JSON: {error}"),
    };
    if is_envelope {
        return Ok(Envelope::from_json(bytes, &limits)?.transaction);
    }
    Ok(Transaction::from_json(bytes, &limits)?)
}
