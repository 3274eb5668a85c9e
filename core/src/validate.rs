//! Structural validation: what a transaction or envelope alone can prove before
//! it is ordered. JSON errors become `TxError`s naming the field's path; then
//! names, numbers, limits, duplicates and the store are checked.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;

use crate::canonical;
use crate::error::TxError;
use crate::ids::ObjectId;
use crate::limits::{Limits, NAME_CHARS_MAX};
use crate::transaction::{Envelope, Transaction};

/// Parses `bytes` as JSON into `T`, mapping every failure to a `TxError` with the field's path.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, TxError> {
    if bytes.len() > limits.envelope_bytes_max {
        return Err(TxError::EnvelopeTooLarge { bytes: bytes.len(), max: limits.envelope_bytes_max });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut deserializer).map_err(classify)?;
    deserializer.end().map_err(|error| TxError::MalformedJson { message: error.to_string() })?;
    Ok(parsed)
}

fn classify(error: serde_path_to_error::Error<serde_json::Error>) -> TxError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if !inner.is_data() {
        return TxError::MalformedJson { message: inner.to_string() };
    }
    // serde's own wording names the field between backquotes.
    let message = inner.to_string();
    let quoted = || message.split('`').nth(1).unwrap_or_default().to_string();
    if message.starts_with("missing field") {
        TxError::MissingField { path, field: quoted() }
    } else if message.starts_with("unknown field") {
        TxError::UnknownField { path, field: quoted() }
    } else if message.starts_with("bad id") {
        TxError::BadId { path, message }
    } else {
        TxError::WrongType { path, message }
    }
}

/// Checks a transaction and its dependencies against `limits`.
pub(crate) fn transaction(transaction: &Transaction, limits: &Limits) -> Result<(), TxError> {
    let depth = transaction.depth();
    if depth > limits.dependency_depth_max {
        return Err(TxError::TooDeep { depth, max: limits.dependency_depth_max });
    }
    check_node(transaction, "transaction", limits)?;
    check_objects_named_once(transaction)
}

/// Checks an envelope: its transaction, then that the store holds exactly what it reads.
pub(crate) fn envelope(envelope: &Envelope, limits: &Limits) -> Result<(), TxError> {
    transaction(&envelope.transaction, limits)?;
    let mut read = BTreeSet::new();
    envelope.transaction.visit(&mut |node| {
        read.extend(node.input_ids.iter().chain(&node.reference_input_ids));
    });
    for id in &read {
        if !envelope.store.contains_key(id) {
            return Err(TxError::MissingFromStore { id: *id });
        }
    }
    for (id, value) in &envelope.store {
        if !read.contains(id) {
            return Err(TxError::UnexpectedInStore { id: *id });
        }
        check_value(value, &format!("store.{}", id.to_hex()), limits)?;
    }
    Ok(())
}

/// Checks one transaction node, then its dependencies (`path` names it in errors).
fn check_node(node: &Transaction, path: &str, limits: &Limits) -> Result<(), TxError> {
    check_name(&node.contract_id, "contractID", path)?;
    check_name(&node.method_id, "methodID", path)?;
    let counts = [
        (node.input_ids.len(), limits.inputs_max, "inputIDs"),
        (node.reference_input_ids.len(), limits.references_max, "referenceInputIDs"),
        (node.outputs.len(), limits.outputs_max, "outputs"),
        (node.dependencies.len(), limits.dependencies_max, "dependencies"),
    ];
    for (count, max, field) in counts {
        if count > max {
            let path = path.to_string();
            return Err(match field {
                "inputIDs" => TxError::TooManyInputs { path, count, max },
                "referenceInputIDs" => TxError::TooManyReferences { path, count, max },
                "outputs" => TxError::TooManyOutputs { path, count, max },
                _ => TxError::TooManyDependencies { path, count, max },
            });
        }
    }
    for (index, value) in node.outputs.iter().enumerate() {
        check_value(value, &format!("{path}.outputs[{index}]"), limits)?;
    }
    for (index, parameter) in node.parameters.iter().enumerate() {
        canonical::check_numbers(parameter, &format!("{path}.parameters[{index}]"))?;
    }
    for (index, dependency) in node.dependencies.iter().enumerate() {
        check_node(dependency, &format!("{path}.dependencies[{index}]"), limits)?;
    }
    Ok(())
}

/// Whether `value` is a contract or method name: 1 to `NAME_CHARS_MAX` characters
/// of `A-Z a-z 0-9 _ . -`, the first alphanumeric. Names become a checker's URL
/// path, so they must be path-safe and never `.` or `..`.
pub fn is_name(value: &str) -> bool {
    let path_safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    let first_alphanumeric = value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_alphanumeric && value.len() <= NAME_CHARS_MAX && value.chars().all(path_safe)
}

fn check_name(value: &str, field: &'static str, path: &str) -> Result<(), TxError> {
    if is_name(value) {
        return Ok(());
    }
    let shown = value.chars().take(NAME_CHARS_MAX + 1).collect();
    Err(TxError::BadName { path: format!("{path}.{field}"), field, value: shown, max: NAME_CHARS_MAX })
}

fn check_value(value: &str, path: &str, limits: &Limits) -> Result<(), TxError> {
    if value.len() > limits.value_bytes_max {
        return Err(TxError::ValueTooLarge { path: path.to_string(), bytes: value.len(), max: limits.value_bytes_max });
    }
    Ok(())
}

/// An object is an input at most once across the whole transaction, and never
/// both an input and a reference: one transaction cannot consume it twice, nor
/// hold a shared and an exclusive lock on it at once.
fn check_objects_named_once(transaction: &Transaction) -> Result<(), TxError> {
    let mut inputs: BTreeSet<&ObjectId> = BTreeSet::new();
    let mut references: BTreeSet<&ObjectId> = BTreeSet::new();
    let mut duplicate = None;
    transaction.visit(&mut |node| {
        for id in &node.input_ids {
            if !inputs.insert(id) {
                duplicate.get_or_insert(TxError::DuplicateInput { id: *id });
            }
        }
        references.extend(&node.reference_input_ids);
    });
    if let Some(error) = duplicate {
        return Err(error);
    }
    match inputs.intersection(&references).next() {
        Some(id) => Err(TxError::InputAlsoReference { id: **id }),
        None => Ok(()),
    }
}
