//! The Rust and Python encoders agree: thousands of random transactions, written
//! with keys in reverse order and raw UTF-8, are encoded by `python -m
//! shardspace.encode` (the reference) and by `Transaction::canonical`; the bytes
//! and txIds must be identical. Python is `$SHARDSPACE_PYTHON` or `python3`.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::Value;
use shardspace_core::Transaction;

const CASES: usize = 3000;

/// Kills the child if the test fails half way.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// JSON with object keys in reverse order and non-ASCII left raw, so that
/// Python has to sort and escape for itself.
fn write_unsorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .rev()
                .map(|(key, item)| {
                    let mut entry = serde_json::to_string(key).expect("a string serialises");
                    entry.push(':');
                    write_unsorted(item, &mut entry);
                    entry
                })
                .collect();
            out.push('{');
            out.push_str(&entries.join(", "));
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push_str(" , ");
                }
                write_unsorted(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).expect("a JSON value serialises")),
    }
}

#[test]
fn rust_and_python_encoders_agree_on_random_transactions() {
    let mut runner = TestRunner::deterministic();
    let strategy = common::transaction();
    let transactions: Vec<Transaction> =
        (0..CASES).map(|_| strategy.new_tree(&mut runner).expect("a strategy yields a value").current()).collect();

    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var("SHARDSPACE_PYTHON").unwrap_or_else(|_| "python3".into());
    let child = Command::new(&python)
        .args(["-m", "shardspace.encode"])
        .env("PYTHONPATH", repository.join("checker-sdk/python"))
        .env("PYTHONUTF8", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {python} -m shardspace.encode: {error}"));
    let mut child = KillOnDrop(child);

    let mut input = String::new();
    for transaction in &transactions {
        write_unsorted(&serde_json::to_value(transaction).unwrap(), &mut input);
        input.push('\n');
    }
    let mut stdin = child.0.stdin.take().unwrap();
    // Write from another thread: Python answers as it reads, and both pipes are bounded.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));

    let mut answers = BufReader::new(child.0.stdout.take().unwrap()).lines();
    for (index, transaction) in transactions.iter().enumerate() {
        let answer = answers.next().unwrap_or_else(|| panic!("python stopped after {index} answers")).unwrap();
        let (tx_id, canonical) = answer.split_once(' ').unwrap_or(("", &answer));
        assert_eq!(canonical, transaction.canonical(), "case {index}: {transaction:?}");
        assert_eq!(tx_id, transaction.tx_id().to_hex(), "case {index}");
    }
    writer.join().unwrap().unwrap();
}
