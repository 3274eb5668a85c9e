//! Client side: builds an envelope from objects and parameters, with the output
//! ids that the ledger will give its outputs.

use serde_json::Value;
use shardspace_core::{Envelope, Limits, Object, Store, Transaction, TxError};

/// Builds one contract call. A dependency (another call, built the same way)
/// nests its transaction and merges its store.
#[derive(Clone, Debug)]
pub struct TransactionBuilder {
    transaction: Transaction,
    store: Store,
}

impl TransactionBuilder {
    pub fn new(contract_id: impl Into<String>, method_id: impl Into<String>) -> Self {
        let transaction = Transaction {
            contract_id: contract_id.into(),
            method_id: method_id.into(),
            input_ids: Vec::new(),
            reference_input_ids: Vec::new(),
            parameters: Vec::new(),
            returns: Vec::new(),
            outputs: Vec::new(),
            dependencies: Vec::new(),
        };
        Self { transaction, store: Store::new() }
    }

    /// Consumes `object`.
    pub fn input(mut self, object: &Object) -> Self {
        self.transaction.input_ids.push(object.id);
        self.store.insert(object.id, object.value.clone());
        self
    }

    /// Reads `object` without consuming it.
    pub fn reference(mut self, object: &Object) -> Self {
        self.transaction.reference_input_ids.push(object.id);
        self.store.insert(object.id, object.value.clone());
        self
    }

    pub fn parameter(mut self, parameter: impl Into<Value>) -> Self {
        self.transaction.parameters.push(parameter.into());
        self
    }

    /// Creates an object of value `value`.
    pub fn output(mut self, value: impl Into<String>) -> Self {
        self.transaction.outputs.push(value.into());
        self
    }

    pub fn returns(mut self, value: impl Into<String>) -> Self {
        self.transaction.returns.push(value.into());
        self
    }

    /// Nests another call, built by its own contract's client.
    pub fn dependency(mut self, dependency: Envelope) -> Self {
        self.transaction.dependencies.push(dependency.transaction);
        self.store.extend(dependency.store);
        self
    }

    /// The envelope, checked against the default limits.
    pub fn build(self) -> Result<Envelope, TxError> {
        let envelope = Envelope { transaction: self.transaction, store: self.store };
        envelope.validate(&Limits::default())?;
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_nests_its_transaction_and_merges_its_store() {
        let read = Object { id: "ab".repeat(32).parse().unwrap(), value: "r".into() };
        let consumed = Object { id: "cd".repeat(32).parse().unwrap(), value: "c".into() };
        let inner = TransactionBuilder::new("addition", "increment").input(&consumed).output("1").build().unwrap();
        let outer = TransactionBuilder::new("hello", "greet")
            .reference(&read)
            .parameter("world")
            .output("hello, world")
            .dependency(inner.clone())
            .build()
            .unwrap();
        assert_eq!(outer.transaction.dependencies, vec![inner.transaction.clone()]);
        assert_eq!(outer.store.len(), 2);
        let created = outer.transaction.created_objects();
        assert_eq!(created[1].id, inner.transaction.own_outputs()[0].id);
    }

    #[test]
    fn build_refuses_what_the_ledger_would_refuse() {
        let float = TransactionBuilder::new("dump", "m").parameter(1.5).build().unwrap_err();
        assert_eq!(float.kind(), "float_number");
    }
}
