//! The checker request (DESIGN.md §4): a transaction with the values of its
//! inputs and references inlined in place of their ids, dependencies nested.
//!
//! A dependency without dependencies of its own is inlined without a `dependencies`
//! key, as Chainspace's `transaction_to_solution` does: Chainspace's standard checker
//! compares each dependency with the solution its method computes, which has no such
//! key, so with it every method with a dependency was refused. A request that does
//! carry the key, empty, reads the same.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::TxError;
use crate::transaction::{Envelope, Store, Transaction};

/// The body of `POST {checker_url}/{contractID}/{methodID}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct CheckerRequest {
    #[serde(rename = "contractID")]
    pub contract_id: String,
    #[serde(rename = "methodID")]
    pub method_id: String,
    pub inputs: Vec<String>,
    #[serde(rename = "referenceInputs")]
    pub reference_inputs: Vec<String>,
    pub parameters: Vec<Value>,
    pub returns: Vec<String>,
    pub outputs: Vec<String>,
    #[serde(default)]
    pub dependencies: Vec<CheckerRequest>,
}

impl Serialize for CheckerRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields(true).serialize(serializer)
    }
}

/// A request's fields as sent: `dependencies` always at the top, in a dependency only
/// when it has some.
#[derive(Serialize)]
struct Fields<'a> {
    #[serde(rename = "contractID")]
    contract_id: &'a str,
    #[serde(rename = "methodID")]
    method_id: &'a str,
    inputs: &'a [String],
    #[serde(rename = "referenceInputs")]
    reference_inputs: &'a [String],
    parameters: &'a [Value],
    returns: &'a [String],
    outputs: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    dependencies: Option<Vec<Fields<'a>>>,
}

impl CheckerRequest {
    fn fields(&self, top: bool) -> Fields<'_> {
        let nested = || self.dependencies.iter().map(|dependency| dependency.fields(false)).collect();
        Fields {
            contract_id: &self.contract_id,
            method_id: &self.method_id,
            inputs: &self.inputs,
            reference_inputs: &self.reference_inputs,
            parameters: &self.parameters,
            returns: &self.returns,
            outputs: &self.outputs,
            dependencies: (top || !self.dependencies.is_empty()).then(nested),
        }
    }

    /// The request for the envelope's transaction, values taken from its store.
    pub fn from_envelope(envelope: &Envelope) -> Result<Self, TxError> {
        Self::build(&envelope.transaction, &envelope.store)
    }

    fn build(transaction: &Transaction, store: &Store) -> Result<Self, TxError> {
        let values = |ids: &[crate::ObjectId]| -> Result<Vec<String>, TxError> {
            let value = |id: &crate::ObjectId| store.get(id).cloned().ok_or(TxError::MissingFromStore { id: *id });
            ids.iter().map(value).collect()
        };
        let dependencies = transaction.dependencies.iter().map(|dependency| Self::build(dependency, store));
        Ok(Self {
            contract_id: transaction.contract_id.clone(),
            method_id: transaction.method_id.clone(),
            inputs: values(&transaction.input_ids)?,
            reference_inputs: values(&transaction.reference_input_ids)?,
            parameters: transaction.parameters.clone(),
            returns: transaction.returns.clone(),
            outputs: transaction.outputs.clone(),
            dependencies: dependencies.collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(dependencies: Vec<CheckerRequest>) -> CheckerRequest {
        CheckerRequest {
            contract_id: "c".into(),
            method_id: "m".into(),
            inputs: vec!["i".into()],
            reference_inputs: vec![],
            parameters: vec![serde_json::json!(1)],
            returns: vec![],
            outputs: vec!["o".into()],
            dependencies,
        }
    }

    #[test]
    fn a_dependency_without_dependencies_is_inlined_without_the_key_as_chainspace_does() {
        let leaf = request(vec![]);
        let middle = request(vec![leaf.clone()]);
        let top = request(vec![leaf.clone(), middle.clone()]);
        let json = serde_json::to_value(&top).unwrap();
        assert_eq!(json["dependencies"][0].get("dependencies"), None, "a leaf dependency has no key");
        assert_eq!(json["dependencies"][1]["dependencies"][0].get("dependencies"), None);
        assert_eq!(json["dependencies"][1]["dependencies"].as_array().map(Vec::len), Some(1), "a nested one keeps it");
        assert_eq!(
            serde_json::to_value(&leaf).unwrap()["dependencies"],
            serde_json::json!([]),
            "the top always has it"
        );
        assert_eq!(serde_json::from_value::<CheckerRequest>(json).unwrap(), top, "it reads back the same");
        let mut with_empty_key = serde_json::to_value(&top).unwrap();
        with_empty_key["dependencies"][0]["dependencies"] = serde_json::json!([]);
        assert_eq!(
            serde_json::from_value::<CheckerRequest>(with_empty_key).unwrap(),
            top,
            "an empty key reads the same"
        );
    }
}
