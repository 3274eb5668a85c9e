//! The JSON shapes of outcomes, objects and the cluster, as the API answers them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};
use shardspace_core::sbac::{ObjectStatus, ObjectView, TxView, VoteKind};
use shardspace_core::{Envelope, ObjectId, ShardId, TxId};
use shardspace_node::cluster_client::Outcome;

/// One shard's part in a transaction.
#[derive(Clone, Debug, Serialize)]
pub struct ShardResult {
    pub attempt: u32,
    pub vote: &'static str,
    pub reason: Option<&'static str>,
    /// `commit`, `abort`, or `null` while undecided.
    pub decision: Option<&'static str>,
}

/// A transaction's outcome: `commit`, `abort` (with the first shard's reason) or `pending`.
#[derive(Clone, Debug, Serialize)]
pub struct TxOutcome {
    #[serde(rename = "txId")]
    pub tx: String,
    pub outcome: &'static str,
    pub reason: Option<&'static str>,
    pub attempt: u32,
    /// The ids of the objects the transaction creates (dependencies' included), when known.
    pub outputs: Vec<String>,
    pub shards: BTreeMap<String, ShardResult>,
    /// For an abort of `checker_rejected`: the checker's own reason, asked again by a dry run
    /// (a checker is a function of the envelope), when f+1 replicas gave it in time.
    #[serde(rename = "checkerReason", skip_serializing_if = "Option::is_none")]
    pub checker_reason: Option<String>,
    /// The transaction itself (Chainspace's shape), when a read asked the replicas for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<Value>,
}

/// `commit` (also for any attempt of a committed transaction), `abort`, or none while undecided.
pub fn decision_of(view: &TxView) -> Option<&'static str> {
    view.committed.map(|_| "commit").or(view.decision.map(|commit| if commit { "commit" } else { "abort" }))
}

fn shard_result(view: &TxView) -> ShardResult {
    let (vote, reason) = match view.vote {
        VoteKind::Accept => ("accept", None),
        VoteKind::Abort(reason) => ("abort", Some(reason.as_str())),
    };
    ShardResult { attempt: view.committed.unwrap_or(view.attempt).0, vote, reason, decision: decision_of(view) }
}

impl TxOutcome {
    /// From every concerned shard's record (`outputs` from the envelope, when the API has it).
    pub fn from_records(tx: TxId, records: &BTreeMap<ShardId, TxView>, envelope: Option<&Envelope>) -> Self {
        let shards: BTreeMap<String, ShardResult> =
            records.iter().map(|(shard, view)| (shard.0.to_string(), shard_result(view))).collect();
        let committed = !records.is_empty() && records.values().all(|view| view.committed.is_some());
        let aborted = records.values().any(|view| view.committed.is_none() && view.decision == Some(false));
        let outcome = if committed {
            "commit"
        } else if aborted {
            "abort"
        } else {
            "pending"
        };
        let reason = if committed { None } else { shards.values().find_map(|result| result.reason) };
        let attempt = shards.values().map(|result| result.attempt).max().unwrap_or(0);
        let outputs = envelope
            .map(|envelope| envelope.transaction.created_objects().iter().map(|o| o.id.to_hex()).collect())
            .unwrap_or_default();
        Self { tx: tx.to_hex(), outcome, reason, attempt, outputs, shards, checker_reason: None, transaction: None }
    }

    pub fn from_outcome(outcome: &Outcome, envelope: &Envelope) -> Self {
        Self::from_records(outcome.tx, &outcome.shards, Some(envelope))
    }

    pub fn committed(&self) -> bool {
        self.outcome == "commit"
    }
}

/// An object as `/v1/objects/{id}` shows it.
pub fn object_json(id: ObjectId, shard: ShardId, view: &ObjectView) -> Value {
    let (status, holder, consumed_by) = match &view.status {
        ObjectStatus::Active => ("active", None, None),
        ObjectStatus::Locked { tx, .. } => ("locked", Some(tx.to_hex()), None),
        ObjectStatus::Inactive { consumed_by } => ("inactive", None, Some(consumed_by.to_hex())),
    };
    json!({
        "id": id.to_hex(),
        "shard": shard.0,
        "value": view.value,
        "contract": view.contract,
        "createdBy": view.created_by.to_hex(),
        "status": status,
        "lockedBy": holder,
        "consumedBy": consumed_by,
    })
}
