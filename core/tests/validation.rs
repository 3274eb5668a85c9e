//! Structural validation: one test per `TxError` kind, each hitting its limit or rule.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use serde_json::{Value, json};
use shardspace_core::{Envelope, Limits, Transaction, TxError};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn transaction() -> Value {
    json!({"contractID": "bank", "methodID": "transfer", "inputIDs": [A], "referenceInputIDs": [B],
           "parameters": [1, "x", {"k": [true, null]}], "returns": [], "outputs": ["o"], "dependencies": []})
}

fn envelope(transaction: Value) -> Value {
    json!({"transaction": transaction, "store": {A: "a", B: "b"}})
}

fn parse(envelope: &Value) -> Result<Envelope, TxError> {
    Envelope::from_json(envelope.to_string().as_bytes(), &Limits::default())
}

fn kind_of(envelope: &Value) -> &'static str {
    match parse(envelope) {
        Ok(_) => panic!("accepted {envelope}"),
        Err(error) => {
            assert!(!error.hint().is_empty() && !error.to_string().is_empty(), "{error:?}");
            error.kind()
        }
    }
}

fn with(field: &str, value: Value) -> Value {
    let mut transaction = transaction();
    transaction[field] = value;
    envelope(transaction)
}

#[test]
fn a_well_formed_envelope_is_accepted() {
    let parsed = parse(&envelope(transaction())).unwrap();
    assert_eq!(parsed.transaction.contract_id, "bank");
    assert_eq!(parsed.store.len(), 2);
}

#[test]
fn malformed_json_is_refused() {
    let error = Envelope::from_json(b"{\"transaction\": ", &Limits::default()).unwrap_err();
    assert_eq!(error.kind(), "malformed_json");
    let trailing = format!("{} x", envelope(transaction()));
    assert_eq!(Envelope::from_json(trailing.as_bytes(), &Limits::default()).unwrap_err().kind(), "malformed_json");
}

#[test]
fn a_missing_field_is_named_with_its_path() {
    let mut transaction = transaction();
    transaction.as_object_mut().unwrap().remove("returns");
    let error = parse(&envelope(transaction)).unwrap_err();
    assert_eq!(error, TxError::MissingField { path: "transaction".into(), field: "returns".into() });
}

#[test]
fn null_for_a_list_is_a_wrong_type_naming_the_field() {
    let error = parse(&with("outputs", Value::Null)).unwrap_err();
    assert_eq!(error.kind(), "wrong_type");
    assert!(error.to_string().contains("transaction.outputs"), "{error}");
}

#[test]
fn an_unknown_field_is_refused() {
    // An extra field would change Python's txId and not ours: refuse it.
    assert_eq!(kind_of(&with("extra", json!(1))), "unknown_field");
}

#[test]
fn a_bad_id_is_refused_with_its_path() {
    let error = parse(&with("inputIDs", json!([A.to_uppercase()]))).unwrap_err();
    assert_eq!(error.kind(), "bad_id");
    assert!(error.to_string().contains("transaction.inputIDs[0]"), "{error}");
}

#[test]
fn a_contract_name_that_is_not_path_safe_is_refused() {
    assert_eq!(kind_of(&with("contractID", json!("../admin"))), "bad_name");
    assert_eq!(kind_of(&with("methodID", json!(""))), "bad_name");
    assert_eq!(kind_of(&with("methodID", json!(".."))), "bad_name");
    assert_eq!(kind_of(&with("contractID", json!("-x"))), "bad_name");
    assert_eq!(kind_of(&with("contractID", json!("bank%2F"))), "bad_name");
    assert_eq!(kind_of(&with("methodID", json!("m".repeat(65)))), "bad_name");
}

#[test]
fn floats_and_huge_integers_are_refused() {
    let float: Value = serde_json::from_str("[{\"x\": [1.5]}]").unwrap();
    assert_eq!(kind_of(&with("parameters", float)), "float_number");
    let huge: Value = serde_json::from_str("[18446744073709551616]").unwrap();
    assert_eq!(kind_of(&with("parameters", huge)), "number_out_of_range");
    let bounds = json!([-9223372036854775808i64, 18446744073709551615u64]);
    parse(&with("parameters", bounds)).unwrap();
}

#[test]
fn each_count_limit_is_enforced() {
    let limits = Limits::default();
    let ids = |count: usize| (0..count).map(|i| format!("{i:064x}")).collect::<Vec<_>>();
    let store = |ids: &[String]| ids.iter().map(|id| (id.clone(), json!("v"))).collect::<serde_json::Map<_, _>>();

    let inputs = ids(limits.inputs_max + 1);
    let mut transaction = transaction();
    transaction["inputIDs"] = json!(inputs);
    transaction["referenceInputIDs"] = json!([]);
    assert_eq!(kind_of(&json!({"transaction": transaction, "store": store(&inputs)})), "too_many_inputs");

    let references = ids(limits.references_max + 1);
    let mut transaction = transaction.clone();
    transaction["inputIDs"] = json!([]);
    transaction["referenceInputIDs"] = json!(references);
    assert_eq!(kind_of(&json!({"transaction": transaction, "store": store(&references)})), "too_many_references");

    let outputs = vec!["o"; limits.outputs_max + 1];
    assert_eq!(kind_of(&with("outputs", json!(outputs))), "too_many_outputs");

    let bare = json!({"contractID": "c", "methodID": "m", "inputIDs": [], "referenceInputIDs": [],
                      "parameters": [], "returns": [], "outputs": [], "dependencies": []});
    let dependencies = vec![bare.clone(); limits.dependencies_max + 1];
    assert_eq!(kind_of(&with("dependencies", json!(dependencies))), "too_many_dependencies");

    let mut nested = bare.clone();
    for _ in 0..=limits.dependency_depth_max {
        let mut parent = bare.clone();
        parent["dependencies"] = json!([nested]);
        nested = parent;
    }
    assert_eq!(kind_of(&json!({"transaction": nested, "store": {}})), "dependencies_too_deep");
}

#[test]
fn value_and_envelope_sizes_are_enforced() {
    let limits = Limits::default();
    let big = "v".repeat(limits.value_bytes_max + 1);
    assert_eq!(kind_of(&with("outputs", json!([big]))), "value_too_large");
    let mut in_store = envelope(transaction());
    in_store["store"][A] = json!(big);
    assert_eq!(kind_of(&in_store), "value_too_large");

    let small = Limits { envelope_bytes_max: 100, ..Limits::default() };
    let error = Envelope::from_json(envelope(transaction()).to_string().as_bytes(), &small).unwrap_err();
    assert_eq!(error.kind(), "envelope_too_large");
}

#[test]
fn an_object_consumed_twice_or_both_read_and_consumed_is_refused() {
    assert_eq!(kind_of(&with("inputIDs", json!([A, A]))), "duplicate_input");
    let mut dependency = transaction();
    dependency["referenceInputIDs"] = json!([]);
    assert_eq!(kind_of(&with("dependencies", json!([dependency]))), "duplicate_input");
    assert_eq!(kind_of(&with("referenceInputIDs", json!([A]))), "input_also_reference");
}

#[test]
fn the_store_holds_exactly_what_the_transaction_reads() {
    let mut missing = envelope(transaction());
    missing["store"].as_object_mut().unwrap().remove(B);
    assert_eq!(kind_of(&missing), "missing_from_store");
    let mut extra = envelope(transaction());
    extra["store"][format!("{:064x}", 9)] = json!("x");
    assert_eq!(kind_of(&extra), "unexpected_in_store");
}

#[test]
fn a_bare_transaction_parses_and_validates() {
    let parsed = Transaction::from_json(transaction().to_string().as_bytes(), &Limits::default()).unwrap();
    assert_eq!(parsed.input_ids.len(), 1);
    assert_eq!(Transaction::from_json(b"[]", &Limits::default()).unwrap_err().kind(), "wrong_type");
}
