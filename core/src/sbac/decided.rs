//! The shard's decided log: one entry per attempt decided here, in the order the shard's
//! BFT log decided them. Every honest replica appends the same entries at the same
//! positions (execution is deterministic), entries never change, and checkpoints sign the
//! log with the rest of the state: a reader believes an entry once f+1 replicas give it
//! identically at its position, and resumes from a position (issue 19's event feed).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::messages::{Attempt, VoteKind};
use super::table::Source;
use crate::ids::{ObjectId, ShardId, TxId};
use crate::transaction::Transaction;

/// Where an entry stands in a shard's decided log: 0 for the first decided attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position(pub u64);

impl fmt::Display for Position {
    /// Sixteen hex digits: text that sorts as the numbers do (the store's keys are text).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for Position {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(text, 16).map(Position)
    }
}

/// One decided attempt, as this shard decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedEntry {
    pub tx: TxId,
    pub attempt: Attempt,
    pub committed: bool,
    /// The shards the transaction concerns, in order: the first one lists it in the
    /// cluster's feed, so that a reader of every shard's log sees it once.
    pub concerned: Vec<ShardId>,
    /// The contract and method of the transaction (not of its dependencies).
    pub contract: String,
    pub method: String,
    /// This shard's vote, with its reason when it voted abort.
    pub vote: VoteKind,
    /// The concerned shards whose certificate said abort (none when this shard decided alone).
    pub aborted_by: Vec<ShardId>,
    /// The objects the transaction consumes and creates, its dependencies' included.
    pub inputs: Vec<ObjectId>,
    pub outputs: Vec<ObjectId>,
}

impl DecidedEntry {
    /// The entry of `transaction`'s attempt decided here.
    pub fn of(
        transaction: &Transaction,
        (tx, attempt, committed): (TxId, Attempt, bool),
        concerned: Vec<ShardId>,
        vote: VoteKind,
        aborted_by: Vec<ShardId>,
    ) -> Self {
        let mut inputs = Vec::new();
        transaction.visit(&mut |node| inputs.extend(node.input_ids.iter().copied()));
        let outputs = transaction.created_objects().iter().map(|object| object.id).collect();
        let (contract, method) = (transaction.contract_id.clone(), transaction.method_id.clone());
        Self { tx, attempt, committed, concerned, contract, method, vote, aborted_by, inputs, outputs }
    }

    /// The shard whose log lists this entry in the cluster's feed: the first concerned one.
    pub fn home(&self) -> Option<ShardId> {
        self.concerned.first().copied()
    }
}

/// Where a replica keeps its decided log (`ShardApp::saved_in`).
pub type DecidedSource = Arc<dyn Source<Position, DecidedEntry>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_as_text_sort_as_numbers_and_read_back() {
        let positions = [Position(0), Position(9), Position(10), Position(255), Position(u64::MAX)];
        let texts: Vec<String> = positions.iter().map(Position::to_string).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(sorted, texts);
        for (position, text) in positions.iter().zip(&texts) {
            assert_eq!(text.parse::<Position>().unwrap(), *position);
        }
    }
}
