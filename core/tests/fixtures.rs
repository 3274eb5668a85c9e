//! The shared fixtures of `checker-sdk/fixtures/transactions.json` (written by the
//! Python SDK, read by both test suites): canonical bytes, txIds, created ids,
//! concerned shards and checker requests must match byte for byte.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use shardspace_core::{CheckerRequest, Envelope, Limits, ShardMap};

#[derive(Deserialize)]
struct Case {
    name: String,
    envelope: Value,
    canonical: String,
    #[serde(rename = "txId")]
    tx_id: String,
    outputs: Vec<String>,
    shards: std::collections::BTreeMap<String, Vec<u32>>,
    #[serde(rename = "checkerRequest")]
    checker_request: CheckerRequest,
}

fn cases() -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../checker-sdk/fixtures/transactions.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).expect("transactions.json holds a list of cases")
}

#[test]
fn every_fixture_encodes_to_the_same_bytes_and_ids() {
    let cases = cases();
    assert!(cases.len() >= 12, "only {} cases", cases.len());
    for case in cases {
        let name = &case.name;
        let envelope = Envelope::from_json(case.envelope.to_string().as_bytes(), &Limits::default())
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        let transaction = &envelope.transaction;
        assert_eq!(transaction.canonical(), case.canonical, "{name}: canonical bytes");
        assert_eq!(transaction.tx_id().to_hex(), case.tx_id, "{name}: txId");
        let created: Vec<String> = transaction.created_objects().iter().map(|object| object.id.to_hex()).collect();
        assert_eq!(created, case.outputs, "{name}: created ids");
        for (count, expected) in &case.shards {
            let map = ShardMap::new(count.parse().unwrap()).unwrap();
            let shards: Vec<u32> = map.concerned_shards(transaction).into_iter().map(|shard| shard.0).collect();
            assert_eq!(&shards, expected, "{name}: shards of {count}");
        }
        assert_eq!(CheckerRequest::from_envelope(&envelope).unwrap(), case.checker_request, "{name}: checker request");
    }
}
