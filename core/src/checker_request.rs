//! The checker request (DESIGN.md §4): a transaction with the values of its
//! inputs and references inlined in place of their ids, dependencies nested.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::TxError;
use crate::transaction::{Envelope, Store, Transaction};

/// The body of `POST {checker_url}/{contractID}/{methodID}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    pub dependencies: Vec<CheckerRequest>,
}

impl CheckerRequest {
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
