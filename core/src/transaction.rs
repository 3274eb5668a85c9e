//! `Transaction` and `Envelope`, whose JSON is exactly DESIGN.md §3, with their
//! ids: the txId of a transaction and the ids of the objects it creates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical;
use crate::error::TxError;
use crate::ids::{ObjectId, TxId, sha256};
use crate::limits::Limits;
use crate::validate;

/// An object: an opaque UTF-8 value with its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    pub id: ObjectId,
    pub value: String,
}

/// One call of a contract method (DESIGN.md §3). Every field is required on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    #[serde(rename = "contractID")]
    pub contract_id: String,
    #[serde(rename = "methodID")]
    pub method_id: String,
    #[serde(rename = "inputIDs")]
    pub input_ids: Vec<ObjectId>,
    #[serde(rename = "referenceInputIDs")]
    pub reference_input_ids: Vec<ObjectId>,
    pub parameters: Vec<Value>,
    pub returns: Vec<String>,
    pub outputs: Vec<String>,
    pub dependencies: Vec<Transaction>,
}

/// The values of a transaction's inputs and references, by id.
pub type Store = BTreeMap<ObjectId, String>;

/// What a client sends: a transaction and the values it reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub transaction: Transaction,
    pub store: Store,
}

impl Transaction {
    /// Parses and validates a bare transaction (`limits.envelope_bytes_max` bounds its text).
    pub fn from_json(bytes: &[u8], limits: &Limits) -> Result<Self, TxError> {
        let transaction: Self = validate::parse_json(bytes, limits)?;
        validate::transaction(&transaction, limits)?;
        Ok(transaction)
    }

    /// The canonical encoding: what Python's `json.dumps(T, sort_keys=True, separators=(",", ":"))` writes.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        self.write_canonical(&mut out);
        out
    }

    /// Writes the fields in sorted key order (the order below is alphabetical).
    fn write_canonical(&self, out: &mut String) {
        let write_ids = |ids: &Vec<ObjectId>, out: &mut String| {
            canonical::write_seq(ids.iter(), out, |id, out| canonical::write_str(&id.to_hex(), out));
        };
        let write_strings = |strings: &Vec<String>, out: &mut String| {
            canonical::write_seq(strings.iter(), out, |text, out| canonical::write_str(text, out));
        };
        out.push_str("{\"contractID\":");
        canonical::write_str(&self.contract_id, out);
        out.push_str(",\"dependencies\":");
        canonical::write_seq(self.dependencies.iter(), out, |dependency, out| dependency.write_canonical(out));
        out.push_str(",\"inputIDs\":");
        write_ids(&self.input_ids, out);
        out.push_str(",\"methodID\":");
        canonical::write_str(&self.method_id, out);
        out.push_str(",\"outputs\":");
        write_strings(&self.outputs, out);
        out.push_str(",\"parameters\":");
        canonical::write_seq(self.parameters.iter(), out, canonical::write_value);
        out.push_str(",\"referenceInputIDs\":");
        write_ids(&self.reference_input_ids, out);
        out.push_str(",\"returns\":");
        write_strings(&self.returns, out);
        out.push('}');
    }

    /// SHA-256 of the canonical encoding.
    pub fn tx_id(&self) -> TxId {
        TxId(sha256(self.canonical().as_bytes()))
    }

    /// The objects this transaction's own outputs become, in index order.
    pub fn own_outputs(&self) -> Vec<Object> {
        let tx_id = self.tx_id();
        let objects = self.outputs.iter().enumerate();
        objects
            .map(|(index, value)| Object { id: ObjectId::of_output(&tx_id, value, index), value: value.clone() })
            .collect()
    }

    /// Every object this transaction creates: its own outputs, then each
    /// dependency's, depth first. A dependency's outputs take its own txId.
    pub fn created_objects(&self) -> Vec<Object> {
        let mut objects = Vec::new();
        self.visit(&mut |transaction| objects.extend(transaction.own_outputs()));
        objects
    }

    /// Calls `visit` on this transaction, then on each dependency, depth first.
    pub fn visit<'a>(&'a self, visit: &mut impl FnMut(&'a Transaction)) {
        visit(self);
        for dependency in &self.dependencies {
            dependency.visit(visit);
        }
    }

    /// The first contract this transaction calls (itself, then its dependencies, depth
    /// first) for which `known` is false.
    pub fn first_contract_not(&self, known: impl Fn(&str) -> bool) -> Option<&str> {
        let mut unknown = None;
        self.visit(&mut |call| {
            if unknown.is_none() && !known(&call.contract_id) {
                unknown = Some(call.contract_id.as_str());
            }
        });
        unknown
    }

    /// How deep dependencies nest: 0 for a transaction without any.
    pub fn depth(&self) -> usize {
        self.dependencies.iter().map(|dependency| 1 + dependency.depth()).max().unwrap_or(0)
    }
}

impl Envelope {
    /// Parses and validates an envelope: the only way client bytes become one.
    pub fn from_json(bytes: &[u8], limits: &Limits) -> Result<Self, TxError> {
        let envelope: Self = validate::parse_json(bytes, limits)?;
        validate::envelope(&envelope, limits)?;
        Ok(envelope)
    }

    /// The canonical encoding of the whole envelope (`{"store":{…},"transaction":T}`, keys
    /// sorted): what a verdict and a vote are about, the store's values included.
    pub fn canonical(&self) -> String {
        let mut out = String::from("{\"store\":{");
        for (position, (id, value)) in self.store.iter().enumerate() {
            if position > 0 {
                out.push(',');
            }
            canonical::write_str(&id.to_hex(), &mut out);
            out.push(':');
            canonical::write_str(value, &mut out);
        }
        out.push_str("},\"transaction\":");
        out.push_str(&self.transaction.canonical());
        out.push('}');
        out
    }

    /// SHA-256 of `canonical`: two envelopes of one transaction with different store values differ.
    pub fn digest(&self) -> [u8; 32] {
        sha256(self.canonical().as_bytes())
    }

    /// Checks an envelope built in code against `limits`, its encoded size included.
    pub fn validate(&self, limits: &Limits) -> Result<(), TxError> {
        let bytes = serde_json::to_vec(self).map(|json| json.len()).unwrap_or(usize::MAX);
        if bytes > limits.envelope_bytes_max {
            return Err(TxError::EnvelopeTooLarge { bytes, max: limits.envelope_bytes_max });
        }
        validate::envelope(self, limits)
    }
}
