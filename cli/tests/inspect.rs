//! `shardspace tx inspect` run as a process: the fixtures' ids and shards, from a
//! file or stdin, as an envelope or a bare transaction; bad input exits 2 with one line.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn inspect(arguments: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardspace"))
        .args(["tx", "inspect"])
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command may exit before it reads stdin (a missing file): a closed pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn fixtures() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../checker-sdk/fixtures/transactions.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn prints_the_fixtures_txid_outputs_and_shards() {
    for case in fixtures() {
        let envelope = case["envelope"].to_string();
        for shards in ["1", "2", "3", "10"] {
            let output = inspect(&["--shards", shards], envelope.as_bytes());
            assert!(output.status.success(), "{}: {}", case["name"], String::from_utf8_lossy(&output.stderr));
            let report: Value = serde_json::from_slice(&output.stdout).unwrap();
            let expected = json!({"txId": case["txId"], "outputs": case["outputs"], "shards": case["shards"][shards]});
            assert_eq!(report, expected, "{} with {shards} shards", case["name"]);
        }
    }
}

#[test]
fn reads_a_bare_transaction_from_a_file() {
    let case = &fixtures()[0];
    let file = std::env::temp_dir().join(format!("shardspace-inspect-{}.json", std::process::id()));
    std::fs::write(&file, case["envelope"]["transaction"].to_string()).unwrap();
    let output = inspect(&[file.to_str().unwrap(), "--shards", "3"], b"");
    std::fs::remove_file(&file).unwrap();
    assert!(output.status.success());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["txId"], case["txId"]);
    assert_eq!(report["shards"], case["shards"]["3"]);
}

#[test]
fn malformed_input_exits_2_with_one_line_naming_the_field() {
    let mut transaction = fixtures()[0]["envelope"]["transaction"].clone();
    transaction["inputIDs"] = json!(["not-an-id"]);
    let bad_id = transaction.to_string();
    let cases: [(&[u8], &str); 4] = [
        (b"{\"transaction\": ", "malformed JSON"),
        (br#"{"contractID": "c"}"#, "methodID"),
        (bad_id.as_bytes(), "inputIDs[0]"),
        (b"[1, 2]", "JSON object"),
    ];
    for (input, named) in cases {
        let output = inspect(&["-"], input);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(named), "{stderr:?} does not name {named}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn input_over_the_envelope_limit_exits_2() {
    let output = inspect(&["-"], &vec![b' '; shardspace_core::limits::ENVELOPE_BYTES_MAX + 1]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("envelope limit"));
}

#[test]
fn a_missing_file_and_zero_shards_exit_2() {
    let output = inspect(&["/nonexistent/tx.json"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/tx.json"));
    let output = inspect(&["--shards", "0"], b"{}");
    assert_eq!(output.status.code(), Some(2));
}
