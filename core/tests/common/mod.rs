//! Proptest strategies for transactions whose strings reach every corner of the
//! canonical encoding: control characters, DEL, quotes, backslashes, non-ASCII,
//! characters above U+FFFF, and keys that sort differently by UTF-16.

use proptest::prelude::*;
use serde_json::{Map, Value};
use shardspace_core::{ObjectId, Transaction};

const AWKWARD: &[char] = &[
    '"',
    '\\',
    '/',
    '\n',
    '\r',
    '\t',
    '\u{0}',
    '\u{8}',
    '\u{c}',
    '\u{1f}',
    ' ',
    '~',
    '\u{7f}',
    '\u{80}',
    'é',
    'ß',
    '\u{2028}',
    '日',
    '\u{ff61}',
    '\u{fffd}',
    '\u{ffff}',
    '😀',
    '\u{10000}',
    '\u{10ffff}',
];

pub fn text() -> impl Strategy<Value = String> {
    let character =
        prop_oneof![3 => proptest::char::range(' ', '~'), 2 => proptest::sample::select(AWKWARD), 1 => any::<char>()];
    proptest::collection::vec(character, 0..12).prop_map(|characters| characters.into_iter().collect())
}

pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1)].prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((text(), inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn object_id() -> impl Strategy<Value = ObjectId> {
    any::<[u8; 32]>().prop_map(ObjectId)
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,12}"
}

fn leaf_transaction() -> impl Strategy<Value = Transaction> {
    let ids = || proptest::collection::vec(object_id(), 0..4);
    let texts = || proptest::collection::vec(text(), 0..4);
    (name(), name(), ids(), ids(), proptest::collection::vec(json_value(), 0..4), texts(), texts()).prop_map(
        |(contract_id, method_id, input_ids, reference_input_ids, parameters, returns, outputs)| Transaction {
            contract_id,
            method_id,
            input_ids,
            reference_input_ids,
            parameters,
            returns,
            outputs,
            dependencies: Vec::new(),
        },
    )
}

pub fn transaction() -> impl Strategy<Value = Transaction> {
    leaf_transaction().prop_recursive(2, 6, 3, |inner| {
        (leaf_transaction(), proptest::collection::vec(inner, 0..3)).prop_map(|(mut transaction, dependencies)| {
            transaction.dependencies = dependencies;
            transaction
        })
    })
}
